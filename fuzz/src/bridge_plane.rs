//! The bridge's media-task state (forwarding core, transports, the shell's tables) as the COLIBRI2
//! handler sees it, with the process-wide certificate generated once, and a conference of two
//! endpoints created by a real `conference-modify`.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bridge::colibri;
use bridge::lifecycle::Admission;
use bridge::media::{Key, MediaEnv, Plane};
use bridge::random::TokenRng;
use bridge::sfu::SfuConfig;
use bridge::transport::signal::{AdvertisedAddress, local_candidates};
use bridge::transport::{DropCounters, PortState, SrtpProfile};
use signaling::colibri2::ConferenceModify;
use signaling::ice_udp::CandidateType;
use signaling::xml::XmlElement;

use crate::stun_util::identity;

pub const MEETING_ID: &str = "0b7e0000-fuzz-meeting";
pub const ROOM: &str = "fuzzroom@conference.meet.example";
pub const WS_BASE: &str = "wss://meet.example/colibri-ws/jvb-1";

/// An environment like `MediaEnv::new` builds, without generating a certificate each time.
pub fn media_env() -> MediaEnv {
    let bound: SocketAddr = "127.0.0.1:10000".parse().expect("addr");
    let advertised = vec![
        AdvertisedAddress {
            addr: bound,
            typ: CandidateType::Host,
            related: None,
        },
        AdvertisedAddress {
            addr: "203.0.113.9:10000".parse().expect("addr"),
            typ: CandidateType::Srflx,
            related: Some(bound),
        },
    ];
    MediaEnv {
        identity: identity().clone(),
        counters: Arc::new(DropCounters::new()),
        srtp_profiles: vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
        bound,
        interfaces: vec![bound.ip()],
        candidates: local_candidates(&advertised),
        advertised,
        colibri_ws_base: Some(WS_BASE.into()),
    }
}

/// A media-task state with no conference.
pub fn empty_plane() -> (Plane, PortState<Key>) {
    let env = media_env();
    let port = PortState::new(env.counters.clone());
    (
        Plane::new(SfuConfig::default(), env, TokenRng::new([9; 32])),
        port,
    )
}

/// The two `conference-modify` requests that create conference `meeting` with endpoints
/// `aaaa1111` and `bbbb2222` (Opus + VP8 simulcast with RTX, transport-cc, ICE-controlling
/// transports with SCTP), as the focus sends them: one endpoint per request, the first one creating
/// the conference (JVB refuses media for several endpoints in one request).
pub fn create_requests(meeting: &str) -> [String; 2] {
    let endpoint = |id: &str, base: u32| {
        let (a, v) = (base + 1, base + 10);
        format!(
            r#"<endpoint id="{id}" create="true" stats-id="{id}-stats">
  <media type="audio">
    <payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="111" name="opus" clockrate="48000" channels="2"><rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="transport-cc"/></payload-type>
    <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="1" uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"/>
    <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="5" uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"/>
  </media>
  <media type="video">
    <payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="100" name="VP8" clockrate="90000"><rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="nack"/><rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="nack" subtype="pli"/><rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="transport-cc"/></payload-type>
    <payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="96" name="rtx" clockrate="90000"><parameter name="apt" value="100"/></payload-type>
    <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="5" uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"/>
  </media>
  <transport ice-controlling="true"><sctp/></transport>
  <sources>
    <media-source type="audio" id="{id}-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{a}" name="{id}-a0"/></media-source>
    <media-source type="video" id="{id}-v0">
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{v0}" name="{id}-v0"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{v1}" name="{id}-v0"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{v2}" name="{id}-v0"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{r0}" name="{id}-v0"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{r1}" name="{id}-v0"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{r2}" name="{id}-v0"/>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="SIM"><source ssrc="{v0}"/><source ssrc="{v1}"/><source ssrc="{v2}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v0}"/><source ssrc="{r0}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v1}"/><source ssrc="{r1}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v2}"/><source ssrc="{r2}"/></ssrc-group>
    </media-source>
  </sources>
  <capability name="source-names"/>
</endpoint>"#,
            v0 = v,
            v1 = v + 1,
            v2 = v + 2,
            r0 = v + 10,
            r1 = v + 11,
            r2 = v + 12,
        )
    };
    [
        format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{meeting}" name="{ROOM}" create="true">{}</conference-modify>"#,
            endpoint("aaaa1111", 1000)
        ),
        format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{meeting}">{}</conference-modify>"#,
            endpoint("bbbb2222", 2000)
        ),
    ]
}

/// A media-task state with [`MEETING_ID`] and its two endpoints.
pub fn two_endpoint_plane(now: Instant) -> (Plane, PortState<Key>) {
    static REQUESTS: OnceLock<Vec<ConferenceModify>> = OnceLock::new();
    let requests = REQUESTS.get_or_init(|| {
        create_requests(MEETING_ID)
            .iter()
            .map(|xml| ConferenceModify::from_xml(xml).expect("fixture request parses"))
            .collect()
    });
    let (mut plane, mut port) = empty_plane();
    for req in requests {
        colibri::conference_modify(&mut plane, &mut port, now, req, Admission::Accept)
            .expect("fixture request succeeds");
    }
    (plane, port)
}

/// Panics unless the forwarding core, the transports and the shell agree on what exists.
pub fn check_consistent(plane: &Plane, port: &PortState<Key>) {
    let stats = plane.sfu.stats();
    let transports = port.keys().count();
    assert_eq!(
        stats.endpoints,
        plane.endpoints.len(),
        "core and shell disagree on the endpoints"
    );
    assert_eq!(
        stats.endpoints, transports,
        "core and transports disagree on the endpoints"
    );
    assert_eq!(
        stats.conferences,
        plane.conferences.len(),
        "core and shell disagree on the conferences"
    );
    for key in port.keys() {
        assert!(
            plane.endpoints.contains_key(key),
            "transport without endpoint {key:?}"
        );
    }
}
