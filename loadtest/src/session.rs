//! The signalling side of a participant, as lib-jitsi-meet does it (the 2021 client or the current
//! one, [`Client`]), in pure functions: the
//! conference request, the MUC presence, the disco#info answer (with its XEP-0115 caps hash), the
//! `session-accept` built from the focus's `session-initiate` (codecs and header extensions chosen
//! from the offer, our ICE-UDP transport with `setup="active"`, our sources), the sources of the
//! others (session-initiate, source-add, source-remove) and the bridge-channel messages we send.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bridge::transport::signal::{
    AdvertisedAddress, local_candidates, remote_candidates, remote_transport,
};
use bridge::transport::{EndpointTransport, RemoteTransport};
use minidom::Element;
use ring::digest;
use signaling::bridge_channel::{
    BridgeChannelMessage, LastNChanged, ReceiverVideoConstraints, SourceVideoType, VideoConstraints,
};
use signaling::focus_iq::{ConferenceRequest, Property};
use signaling::ice_udp::{CandidateType, IceUdpTransport, SctpMap};
use signaling::jingle::{
    Action, Content, Creator, Group, Jingle, Reason, ReasonCondition, RtpDescription, Senders,
};
use signaling::ns;
use signaling::rtp_description::{MediaType, PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::source_map::{ConferenceSourceMap, JVB_OWNER};
use signaling::sources::{Semantics, Source, SsrcGroup, VideoType};
use signaling::xml::{Builder, XmlElement};
use signaling::xmpp::BareJid;

use crate::dialect::Client;
use crate::receiver::{Kind, RemoteSource};

/// XEP-0115 node lib-jitsi-meet advertises.
pub const CAPS_NODE: &str = "https://jitsi.org/jitsi-meet";
const NS_CAPS: &str = "http://jabber.org/protocol/caps";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_NICK: &str = "http://jabber.org/protocol/nick";

/// The features the 2021 participant advertises (the 2021 client's set with RTX and transport-cc,
/// plus source names, which we signal).
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/disco#info",
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:xmpp:jingle:transports:dtls-sctp:1",
    "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:apps:rtp:video",
    "http://jitsi.org/json-encoded-sources",
    "urn:ietf:rfc:4588",
    "http://jitsi.org/tcc",
    "urn:ietf:rfc:5761",
    "urn:ietf:rfc:5888",
    "http://jitsi.org/source-name",
    "http://jitsi.org/receive-multiple-video-streams",
];

/// What the current client advertises beyond the 2021 Chromium client's features
/// ([`testkit::CLIENT_2021_FEATURES`]: Jingle, DTLS, RTX, REMB and transport-cc), per lib-jitsi-meet
/// `modules/xmpp/xmpp.ts`: no more rtcp-mux and bundle, source names and multi-stream always,
/// visitors and start-muted from room metadata.
pub const FEATURES_CURRENT_ADDED: &[&str] = &[
    "http://jitsi.org/source-name",
    "http://jitsi.org/receive-multiple-video-streams",
    "http://jitsi.org/visitors-1",
    "http://jitsi.org/start-muted-room-metadata",
];

/// The flag-enabled feature of SSRC rewriting (`flags.ssrcRewritingEnabled`).
pub const FEATURE_SSRC_REWRITING: &str = "http://jitsi.org/ssrc-rewriting-1";

/// The features `client` advertises.
pub fn features(client: &Client) -> Vec<&'static str> {
    if !client.is_current() {
        return FEATURES.to_vec();
    }
    let mut f = vec![NS_DISCO_INFO];
    f.extend_from_slice(testkit::CLIENT_2021_FEATURES);
    f.extend_from_slice(FEATURES_CURRENT_ADDED);
    if client.rewrites_ssrcs() {
        f.push(FEATURE_SSRC_REWRITING);
    }
    f
}

/// Why an offer could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("session-initiate has no ICE-UDP transport")]
    NoTransport,
    #[error("the bridge's transport lacks {0}")]
    IncompleteTransport(&'static str),
    #[error("the offer has no usable {0}")]
    NoCodec(&'static str),
    #[error("bad sources: {0}")]
    Sources(String),
}

/// An 8-hex-character endpoint id (the MUC nickname), as lib-jitsi-meet picks it.
pub fn endpoint_id(random: u32) -> String {
    format!("{random:08x}")
}

/// `<conference>` request for `room` to `focus.<domain>`: the 2021 client's properties (RTX,
/// start bitrate), or the current client's (`modules/xmpp/moderator.js`: rtcstats and the visitors
/// version only).
pub fn conference_request(room: &BareJid, machine_uid: &str, client: &Client) -> Element {
    let mut r = ConferenceRequest::new(room.clone());
    r.machine_uid = Some(machine_uid.to_owned());
    r.properties = if client.is_current() {
        vec![
            Property::new("rtcstatsEnabled", false),
            Property::new("visitors-version", 1),
        ]
    } else {
        vec![
            Property::new("disableRtx", false),
            Property::new("startBitrate", 800),
            Property::new("rtcstatsEnabled", false),
        ]
    };
    r.to_element()
}

fn client_el(name: &str, text: &str) -> Element {
    Builder::new(name, ns::JABBER_CLIENT).text(text).build()
}

/// The XEP-0115 verification string of our identity and `features` (sha-1, base64).
pub fn caps_ver(features: &[&str]) -> String {
    let mut features: Vec<&str> = features.to_vec();
    features.sort_unstable();
    let mut s = String::from("client/web//Jitsi Meet<");
    for f in features {
        s.push_str(f);
        s.push('<');
    }
    base64(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, s.as_bytes()).as_ref())
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(T[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The children of our MUC presence (besides `<x xmlns=muc>`): stats-id, caps, codec preference,
/// muted state and video type. The 2021 client sends the legacy `audiomuted` / `videomuted` /
/// `videoType` elements besides `SourceInfo`; the current one only `SourceInfo` and its codec list
/// (`modules/xmpp/SignalingLayerImpl.ts`, `JitsiConference.ts`).
pub fn presence_extra(
    endpoint: &str,
    display_name: &str,
    audio: bool,
    video: bool,
    client: &Client,
) -> Vec<Element> {
    let source_info = format!(
        r#"{{"{endpoint}-a0":{{"muted":{}}},"{endpoint}-v0":{{"muted":{},"videoType":"camera"}}}}"#,
        !audio, !video
    );
    let caps = Builder::new("c", NS_CAPS)
        .attr("hash", "sha-1")
        .attr("node", CAPS_NODE)
        .attr("ver", caps_ver(&features(client)))
        .build();
    if client.is_current() {
        let codecs = if client.sends_av1() { "av1,vp8" } else { "vp8" };
        return vec![
            client_el("stats-id", display_name),
            caps,
            client_el("jitsi_participant_codecList", codecs),
            client_el("SourceInfo", &source_info),
            Builder::new("nick", NS_NICK).text(display_name).build(),
        ];
    }
    vec![
        client_el("stats-id", display_name),
        caps,
        client_el("jitsi_participant_codecType", "vp8"),
        client_el("audiomuted", if audio { "false" } else { "true" }),
        client_el("videomuted", if video { "false" } else { "true" }),
        client_el("videoType", "camera"),
        client_el("SourceInfo", &source_info),
        Builder::new("nick", NS_NICK).text(display_name).build(),
    ]
}

/// The disco#info answer with `client`'s features (`node` echoed when the query named one).
pub fn disco_info(node: Option<&str>, client: &Client) -> Element {
    Builder::new("query", NS_DISCO_INFO)
        .opt_attr("node", node)
        .child(
            Builder::new("identity", NS_DISCO_INFO)
                .attr("category", "client")
                .attr("type", "web")
                .attr("name", "Jitsi Meet")
                .build(),
        )
        .children(features(client).into_iter().map(|f| {
            Builder::new("feature", NS_DISCO_INFO)
                .attr("var", f)
                .build()
        }))
        .build()
}

/// Whether `payload` is a disco#info query.
pub fn is_disco_info(payload: &Element) -> bool {
    payload.is("query", NS_DISCO_INFO)
}

/// What we understood of a session-initiate.
#[derive(Debug, Clone)]
pub struct Offer {
    pub sid: String,
    pub initiator: Option<String>,
    pub audio: Option<RtpParameters>,
    pub video: Option<RtpParameters>,
    /// A `data` content: the bridge channel goes over SCTP.
    pub data: bool,
    /// The bridge's transport: credentials, fingerprints, UDP candidates of every content
    /// (BUNDLE), highest priority first.
    pub bridge: RemoteTransport,
    /// Everybody's sources, including the bridge's feedback sources (`jvb`).
    pub sources: ConferenceSourceMap,
}

/// Reads a session-initiate.
pub fn parse_offer(j: &Jingle) -> Result<Offer, SessionError> {
    let t = j.transport().ok_or(SessionError::NoTransport)?;
    let mut bridge = remote_transport(t).map_err(|_| {
        SessionError::IncompleteTransport(if t.ufrag.is_none() { "ufrag" } else { "pwd" })
    })?;
    if bridge.fingerprints.is_empty() {
        return Err(SessionError::IncompleteTransport("fingerprint"));
    }
    // Every content's candidates (BUNDLE: normally the same ones), highest priority first.
    bridge.candidates = j
        .contents
        .iter()
        .filter_map(|c| c.transport.as_ref())
        .flat_map(|t| remote_candidates(&t.candidates))
        .collect();
    bridge
        .candidates
        .sort_by_key(|c| std::cmp::Reverse(c.priority));
    bridge.candidates.dedup_by_key(|c| c.addr);
    if bridge.candidates.is_empty() {
        return Err(SessionError::IncompleteTransport("a UDP candidate"));
    }
    let rtp = |m: MediaType| {
        j.contents
            .iter()
            .filter_map(|c| c.description.as_ref())
            .find(|d| d.media == m)
            .map(|d| d.rtp.clone())
    };
    let sources = ConferenceSourceMap::from_jingle(j, None)
        .map_err(|e| SessionError::Sources(e.to_string()))?;
    Ok(Offer {
        sid: j.sid.clone(),
        initiator: j.initiator.clone(),
        audio: rtp(MediaType::Audio),
        video: rtp(MediaType::Video),
        data: j.contents.iter().any(|c| c.name == "data"),
        bridge,
        sources,
    })
}

/// Payload types and header extension ids we use, chosen from the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub opus: PayloadType,
    pub vp8: PayloadType,
    pub rtx: Option<PayloadType>,
    /// AV1 and its RTX, when offered.
    pub av1: Option<PayloadType>,
    pub av1_rtx: Option<PayloadType>,
    pub audio_exts: Vec<RtpHdrExt>,
    pub video_exts: Vec<RtpHdrExt>,
}

impl Negotiated {
    pub fn audio_ext(&self, uri: &str) -> Option<u8> {
        self.audio_exts.iter().find(|e| e.uri == uri).map(|e| e.id)
    }

    pub fn video_ext(&self, uri: &str) -> Option<u8> {
        self.video_exts.iter().find(|e| e.uri == uri).map(|e| e.id)
    }

    /// The transport-cc id the bridge stamps on what it sends us (transport-wide: any media's).
    pub fn transport_cc(&self) -> Option<u8> {
        self.video_ext(hdrext::TRANSPORT_CC)
            .or_else(|| self.audio_ext(hdrext::TRANSPORT_CC))
    }

    /// The Dependency Descriptor's id, when offered.
    pub fn dependency_descriptor(&self) -> Option<u8> {
        self.video_ext(hdrext::AV1_DEPENDENCY_DESCRIPTOR)
    }

    /// AV1 with its Dependency Descriptor: what the current client sends when both are offered.
    pub fn av1_with_dd(&self) -> Option<(&PayloadType, u8)> {
        Some((self.av1.as_ref()?, self.dependency_descriptor()?))
    }
}

fn pick_exts(params: &RtpParameters, uris: &[&str]) -> Vec<RtpHdrExt> {
    params
        .header_extensions
        .iter()
        .filter(|e| uris.contains(&e.uri.as_str()))
        .map(|e| RtpHdrExt::new(e.id, &e.uri))
        .collect()
}

/// Opus, VP8 (+ its RTX), audio-level/transport-cc on audio, abs-send-time/transport-cc on video;
/// also AV1 (+ RTX) and the Dependency Descriptor when offered (used by the current client only).
pub fn negotiate(offer: &Offer) -> Result<Negotiated, SessionError> {
    let audio = offer.audio.as_ref().ok_or(SessionError::NoCodec("audio"))?;
    let video = offer.video.as_ref().ok_or(SessionError::NoCodec("video"))?;
    let opus = audio
        .payload_types
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("opus"))
        .cloned()
        .ok_or(SessionError::NoCodec("opus"))?;
    let vp8 = video
        .payload_types
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("vp8"))
        .cloned()
        .ok_or(SessionError::NoCodec("VP8"))?;
    let rtx_of = |id: u8| {
        video
            .payload_types
            .iter()
            .find(|p| p.apt() == Some(id))
            .cloned()
    };
    let rtx = rtx_of(vp8.id);
    let av1 = video
        .payload_types
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case("av1"))
        .cloned();
    let av1_rtx = av1.as_ref().and_then(|a| rtx_of(a.id));
    Ok(Negotiated {
        opus,
        vp8,
        rtx,
        av1,
        av1_rtx,
        audio_exts: pick_exts(audio, &[hdrext::AUDIO_LEVEL, hdrext::TRANSPORT_CC]),
        video_exts: pick_exts(
            video,
            &[
                hdrext::ABS_SEND_TIME,
                hdrext::TRANSPORT_CC,
                hdrext::AV1_DEPENDENCY_DESCRIPTOR,
            ],
        ),
    })
}

/// Our sources: audio `<ep>-a0`, video `<ep>-v0` (3 simulcast SSRCs or one) each with an RTX SSRC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalSources {
    pub endpoint: String,
    pub audio: Option<u32>,
    /// Simulcast SSRCs, lowest first (empty: no video).
    pub video: Vec<u32>,
    /// RTX SSRC of each video SSRC.
    pub rtx: Vec<u32>,
    /// MediaStream id shared by both tracks, as a browser's `msid` first part (2021 client).
    pub stream_id: String,
    /// The current client's source form: `msid` `<ep>-<type>-<idx>-<tpc> <track>-<tpc>` per
    /// track and `videoType` on video sources.
    pub current: bool,
}

impl LocalSources {
    /// Distinct non-zero SSRCs from `random`.
    pub fn new(
        endpoint: &str,
        audio: bool,
        video_layers: usize,
        mut random: impl FnMut() -> u32,
    ) -> Self {
        let mut used: Vec<u32> = Vec::new();
        let mut next = || loop {
            let s = random();
            if s != 0 && !used.contains(&s) {
                used.push(s);
                return s;
            }
        };
        let audio = audio.then(&mut next);
        let video: Vec<u32> = (0..video_layers).map(|_| next()).collect();
        let rtx: Vec<u32> = (0..video_layers).map(|_| next()).collect();
        LocalSources {
            endpoint: endpoint.to_owned(),
            audio,
            video,
            rtx,
            stream_id: format!("{endpoint}-stream"),
            current: false,
        }
    }

    /// The same sources in the current client's form.
    pub fn current(mut self) -> Self {
        self.current = true;
        self
    }

    pub fn audio_name(&self) -> String {
        format!("{}-a0", self.endpoint)
    }

    pub fn video_name(&self) -> String {
        format!("{}-v0", self.endpoint)
    }

    fn source(&self, ssrc: u32, name: &str, kind: &str) -> Source {
        let mut s = Source::named(ssrc, name);
        let msid = if self.current {
            // lib-jitsi-meet `TraceablePeerConnection`: `<ep>-<type>-<idx>-<tpc id> <track>-<tpc id>`.
            format!(
                "{}-{kind}-0-1 {}-{kind}-track-1",
                self.endpoint, self.endpoint
            )
        } else {
            format!("{} {}-{kind}", self.stream_id, self.endpoint)
        };
        s.set_msid(Some(&msid));
        if self.current && kind == "video" {
            s.video_type = Some(VideoType::Camera);
        }
        s
    }

    /// Audio source(s) for the session-accept.
    pub fn audio_sources(&self) -> Vec<Source> {
        let name = self.audio_name();
        self.audio
            .iter()
            .map(|&s| self.source(s, &name, "audio"))
            .collect()
    }

    /// Video sources (every SSRC of the track, RTX included) and their SIM + FID groups.
    pub fn video_sources(&self) -> (Vec<Source>, Vec<SsrcGroup>) {
        let name = self.video_name();
        let mut sources = Vec::new();
        let mut groups = Vec::new();
        for &s in self.video.iter().chain(&self.rtx) {
            sources.push(self.source(s, &name, "video"));
        }
        if self.video.len() > 1 {
            groups.push(SsrcGroup::new(Semantics::Sim, self.video.clone()));
        }
        for (&v, &r) in self.video.iter().zip(&self.rtx) {
            groups.push(SsrcGroup::new(Semantics::Fid, vec![v, r]));
        }
        (sources, groups)
    }
}

/// Our ICE-UDP transport: credentials, fingerprint (`setup="active"`: `transport` is a client),
/// one host candidate (our socket).
pub fn local_transport(transport: &EndpointTransport, addr: SocketAddr) -> IceUdpTransport {
    let host = AdvertisedAddress {
        addr,
        typ: CandidateType::Host,
        related: None,
    };
    bridge::transport::signal::local_transport(transport, local_candidates(&[host]))
}

/// The session-accept for `offer`, as lib-jitsi-meet builds it from its SDP answer: contents
/// audio/video/data (creator responder, senders both), each with the BUNDLEd transport. The
/// current client (`local.current`) also accepts AV1 and its RTX, first when it sends AV1, with
/// the Dependency Descriptor and `extmap-allow-mixed`.
pub fn session_accept(
    offer: &Offer,
    neg: &Negotiated,
    local: &LocalSources,
    transport: &IceUdpTransport,
    responder: &str,
) -> Jingle {
    let mut j = Jingle::new(Action::SessionAccept, &offer.sid);
    j.initiator = offer.initiator.clone();
    j.responder = Some(responder.to_owned());
    let content = |name: &str, description: Option<RtpDescription>, t: IceUdpTransport| Content {
        creator: Some(Creator::Responder),
        name: name.to_owned(),
        senders: Some(Senders::Both),
        description,
        transport: Some(t),
        initial_last_n: None,
    };
    let mut audio = RtpDescription::new(MediaType::Audio);
    audio.ssrc = local.audio;
    audio.rtp.payload_types = vec![neg.opus.clone()];
    audio.rtp.header_extensions = neg.audio_exts.clone();
    audio.rtcp_mux = true;
    audio.sources = local.audio_sources();
    let mut video = RtpDescription::new(MediaType::Video);
    video.ssrc = local.video.first().copied();
    let vp8 = std::iter::once(neg.vp8.clone()).chain(neg.rtx.clone());
    video.rtp.payload_types = if local.current {
        let av1 = neg.av1.iter().chain(&neg.av1_rtx).cloned();
        av1.chain(vp8).collect()
    } else {
        vp8.collect()
    };
    video.rtp.header_extensions = neg
        .video_exts
        .iter()
        .filter(|e| local.current || e.uri != hdrext::AV1_DEPENDENCY_DESCRIPTOR)
        .cloned()
        .collect();
    video.rtp.extmap_allow_mixed = local.current && neg.dependency_descriptor().is_some();
    video.rtcp_mux = true;
    let (sources, groups) = local.video_sources();
    video.sources = sources;
    video.ssrc_groups = groups;
    j.contents
        .push(content("audio", Some(audio), transport.clone()));
    j.contents
        .push(content("video", Some(video), transport.clone()));
    let mut names = vec!["audio", "video"];
    if offer.data {
        let mut data_transport = transport.clone();
        data_transport.sctpmap = Some(SctpMap::webrtc_datachannel());
        j.contents.push(content("data", None, data_transport));
        names.push("data");
    }
    j.groups.push(Group::bundle(names));
    j
}

/// Our session-terminate when leaving.
pub fn session_terminate(sid: &str) -> Jingle {
    let mut j = Jingle::new(Action::SessionTerminate, sid);
    j.reason = Some(Reason::new(ReasonCondition::Success, Some("leaving")));
    j
}

/// The remote media SSRCs in `map` that we can receive: every audio source and the video sources
/// that are not the RTX half of an FID group, except our own and the bridge's feedback sources.
pub fn remote_sources(map: &ConferenceSourceMap, own: &str) -> Vec<(u32, RemoteSource)> {
    let mut out = Vec::new();
    for (owner, sources) in map.iter() {
        if owner == own || owner == JVB_OWNER {
            continue;
        }
        let rtx: Vec<u32> = sources
            .groups()
            .filter(|(_, g)| g.semantics == Semantics::Fid)
            .filter_map(|(_, g)| g.ssrcs.get(1).copied())
            .collect();
        for (media, s) in sources.sources() {
            let (kind, clock_rate) = match media {
                MediaType::Audio => (Kind::Audio, 48_000),
                MediaType::Video if !rtx.contains(&s.ssrc) => (Kind::Video, 90_000),
                _ => continue,
            };
            out.push((
                s.ssrc,
                RemoteSource {
                    owner: owner.to_owned(),
                    kind,
                    name: s.name.clone(),
                    clock_rate,
                },
            ));
        }
    }
    out
}

/// The 2021 client's `ReceiverVideoConstraints` in stage view: unlimited last-N, `on_stage` (an
/// endpoint id) at `stage_height`, everybody else at `thumbnail_height`.
pub fn receiver_constraints(
    on_stage: Option<&str>,
    stage_height: i32,
    thumbnail_height: i32,
) -> String {
    let mut constraints = BTreeMap::new();
    if let Some(ep) = on_stage {
        constraints.insert(ep.to_owned(), VideoConstraints::max_height(stage_height));
    }
    BridgeChannelMessage::ReceiverVideoConstraints(ReceiverVideoConstraints {
        last_n: Some(-1),
        selected_endpoints: Some(Vec::new()),
        on_stage_endpoints: Some(on_stage.map(|e| vec![e.to_owned()]).unwrap_or_default()),
        default_constraints: Some(VideoConstraints::max_height(thumbnail_height)),
        constraints: Some(constraints),
        ..ReceiverVideoConstraints::default()
    })
    .to_json()
}

/// The current client's `ReceiverVideoConstraints` (source names only, lib-jitsi-meet
/// `modules/qualitycontrol/ReceiveVideoController.ts`): unlimited last-N; in stage view the
/// `on_stage` source selected and on stage at `stage_height`, everybody else at
/// `thumbnail_height`; in tile view (`on_stage` `None`) nobody selected.
pub fn receiver_source_constraints(
    on_stage: Option<&str>,
    stage_height: i32,
    thumbnail_height: i32,
) -> String {
    let mut constraints = BTreeMap::new();
    if let Some(source) = on_stage {
        constraints.insert(
            source.to_owned(),
            VideoConstraints::max_height(stage_height),
        );
    }
    let staged: Vec<String> = on_stage.into_iter().map(str::to_owned).collect();
    BridgeChannelMessage::ReceiverVideoConstraints(ReceiverVideoConstraints {
        last_n: Some(-1),
        selected_sources: Some(staged.clone()),
        on_stage_sources: Some(staged),
        default_constraints: Some(VideoConstraints::max_height(thumbnail_height)),
        constraints: Some(constraints),
        ..ReceiverVideoConstraints::default()
    })
    .to_json()
}

/// `SourceVideoTypeMessage` for our camera (the current client sends it when the channel opens and
/// on every change, `JitsiConference.ts`).
pub fn source_video_type(source: &str) -> String {
    BridgeChannelMessage::SourceVideoTypeMessage(SourceVideoType {
        source_name: source.to_owned(),
        video_type: VideoType::Camera,
        endpoint_id: None,
    })
    .to_json()
}

/// `LastNChangedEvent` with unlimited last-N (the 2021 client sends it when the channel opens).
pub fn last_n_unlimited() -> String {
    BridgeChannelMessage::LastNChangedEvent(LastNChanged { last_n: -1 }).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::ice_udp::Setup;
    use signaling::jingle::BridgeSession;

    /// A session-initiate shaped like the focus's (composed for this test): bridge transport with
    /// one host candidate, Jicofo's codecs and extensions, another participant's sources as JSON.
    fn offer_xml() -> String {
        let other = r#"{"sources":{"11111111":[[{"s":101,"n":"11111111-v0","m":"s t"},{"s":102,"n":"11111111-v0","m":"s t"}],[["f",101,102]],[{"s":100,"n":"11111111-a0","m":"s a"}]],"jvb":[[{"s":9,"n":"jvb-v0","m":"mixedmslabel mixedlabelvideo0"}],[],[{"s":8,"n":"jvb-a0","m":"mixedmslabel mixedlabelaudio0"}]]}}"#;
        let t = r#"<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="bu" pwd="bridgepasswordbridgepass"><rtcp-mux/>
            <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="actpass">AB:CD:EF</fingerprint>
            <candidate component="1" foundation="1" generation="0" id="c1" ip="127.0.0.1" network="0" port="10000" priority="2130706431" protocol="udp" type="host"/>
            <candidate component="1" foundation="2" generation="0" id="c2" ip="127.0.0.1" port="10001" priority="1" protocol="tcp" type="host"/></transport>"#;
        format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-initiate" initiator="focus@auth.meet.example/focus" sid="s1">
             <content creator="initiator" name="audio" senders="both"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio" maxptime="60">
               <payload-type id="111" name="opus" clockrate="48000" channels="2"><parameter name="minptime" value="10"/>
                 <rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="transport-cc"/></payload-type>
               <payload-type id="126" name="telephone-event" clockrate="8000"/>
               <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="1" uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"/>
               <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="5" uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"/>
               <rtcp-mux/></description>{t}</content>
             <content creator="initiator" name="video" senders="both"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">
               <payload-type id="41" name="AV1" clockrate="90000"/>
               <payload-type id="100" name="VP8" clockrate="90000"><rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="nack" subtype="pli"/></payload-type>
               <payload-type id="96" name="rtx" clockrate="90000"><parameter name="apt" value="100"/></payload-type>
               <payload-type id="42" name="rtx" clockrate="90000"><parameter name="apt" value="41"/></payload-type>
               <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="3" uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"/>
               <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="5" uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"/>
               <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="11" uri="https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"/>
               <rtcp-mux/></description>{t}</content>
             <content creator="initiator" name="data" senders="both"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="application"/>{t}</content>
             <group xmlns="urn:xmpp:jingle:apps:grouping:0" semantics="BUNDLE"><content name="audio"/><content name="video"/><content name="data"/></group>
             <bridge-session xmlns="http://jitsi.org/protocol/focus" id="b1"/>
             <json-message xmlns="http://jitsi.org/jitmeet">{other}</json-message></jingle>"#
        )
    }

    /// `local`'s session-accept of `offer` over `t`, round-tripped through XML: what the focus
    /// parses.
    fn accepted(
        offer: &Offer,
        neg: &Negotiated,
        local: &LocalSources,
        t: &IceUdpTransport,
    ) -> Jingle {
        let accept = session_accept(
            offer,
            neg,
            local,
            t,
            "room@conference.meet.example/abcdef01",
        );
        Jingle::from_xml(&accept.to_xml()).unwrap()
    }

    /// A client transport's ICE-UDP description with the host candidate 127.0.0.1:40000.
    fn client_transport() -> IceUdpTransport {
        let identity = bridge::transport::DtlsIdentity::generate_named("loadtest").unwrap();
        let ours = EndpointTransport::new(
            bridge::transport::IceCredentials::random(),
            &identity,
            bridge::transport::TransportConfig::client(),
            std::sync::Arc::new(bridge::transport::DropCounters::new()),
        )
        .unwrap();
        local_transport(&ours, "127.0.0.1:40000".parse().unwrap())
    }

    #[test]
    fn answers_a_focus_offer_like_the_2021_client() {
        let j = Jingle::from_xml(&offer_xml()).unwrap();
        let offer = parse_offer(&j).unwrap();
        let addrs: Vec<SocketAddr> = offer.bridge.candidates.iter().map(|c| c.addr).collect();
        assert_eq!(
            addrs,
            vec!["127.0.0.1:10000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(offer.bridge.ice.ufrag, "bu");
        assert!(offer.data);
        let neg = negotiate(&offer).unwrap();
        assert_eq!((neg.opus.id, neg.vp8.id), (111, 100));
        assert_eq!(neg.rtx.as_ref().map(|r| r.id), Some(96));
        assert_eq!(neg.audio_ext(hdrext::AUDIO_LEVEL), Some(1));
        assert_eq!(neg.video_ext(hdrext::ABS_SEND_TIME), Some(3));
        assert_eq!(neg.transport_cc(), Some(5));
        assert_eq!(
            neg.dependency_descriptor(),
            Some(11),
            "the 2021 accept leaves it out"
        );

        let mut n = 0u32;
        let local = LocalSources::new("abcdef01", true, 3, || {
            n += 7;
            n
        });
        let back = accepted(&offer, &neg, &local, &client_transport());
        assert_eq!(back.action, Action::SessionAccept);
        assert_eq!(back.sid, "s1");
        let names: Vec<&str> = back.contents.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, vec!["audio", "video", "data"]);
        let tr = back.transport().unwrap();
        assert_eq!(tr.fingerprints[0].setup, Some(Setup::Active));
        assert_eq!(
            tr.candidates[0].socket_addr(),
            Some("127.0.0.1:40000".parse::<SocketAddr>().unwrap())
        );
        assert!(
            back.content("data")
                .unwrap()
                .transport
                .as_ref()
                .unwrap()
                .sctpmap
                .is_some()
        );
        assert_eq!(back.bundle().unwrap().contents.len(), 3);
        // Our sources, as the focus's source map reads them.
        let ours = ConferenceSourceMap::from_jingle(&back, Some("abcdef01")).unwrap();
        let mine = ours.get("abcdef01").unwrap();
        assert_eq!(mine.audio.sources.len(), 1);
        assert_eq!(mine.audio.sources[0].name.as_deref(), Some("abcdef01-a0"));
        assert_eq!(mine.video.sources.len(), 6);
        assert!(
            mine.video
                .sources
                .iter()
                .all(|s| s.name.as_deref() == Some("abcdef01-v0") && s.msid().is_some())
        );
        let sims: Vec<&SsrcGroup> = mine
            .video
            .groups
            .iter()
            .filter(|g| g.semantics == Semantics::Sim)
            .collect();
        assert_eq!(sims.len(), 1);
        assert_eq!(sims[0].ssrcs, local.video);
        assert_eq!(
            mine.video
                .groups
                .iter()
                .filter(|g| g.semantics == Semantics::Fid)
                .count(),
            3
        );
        signaling::source_map::validate_endpoint("abcdef01", mine).unwrap();

        // The other participant's sources: audio + primary video, not RTX, not the bridge's.
        let mut remote = remote_sources(&offer.sources, "abcdef01");
        remote.sort_by_key(|(s, _)| *s);
        let got: Vec<(u32, Kind, &str)> = remote
            .iter()
            .map(|(s, r)| (*s, r.kind, r.owner.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (100, Kind::Audio, "11111111"),
                (101, Kind::Video, "11111111")
            ]
        );
        let _ = BridgeSession::new("x", None);
    }

    #[test]
    fn offers_without_what_we_need_are_refused() {
        let xml = offer_xml().replace(r#"name="VP8""#, r#"name="H264""#);
        let offer = parse_offer(&Jingle::from_xml(&xml).unwrap()).unwrap();
        assert_eq!(negotiate(&offer), Err(SessionError::NoCodec("VP8")));
        let xml = offer_xml().replace(r#"ufrag="bu""#, "");
        assert_eq!(
            parse_offer(&Jingle::from_xml(&xml).unwrap()).err(),
            Some(SessionError::IncompleteTransport("ufrag"))
        );
        let xml = offer_xml().replace(r#"protocol="udp""#, r#"protocol="tcp""#);
        assert_eq!(
            parse_offer(&Jingle::from_xml(&xml).unwrap()).err(),
            Some(SessionError::IncompleteTransport("a UDP candidate"))
        );
    }

    #[test]
    fn presence_disco_and_caps_agree() {
        let extra = presence_extra("abcdef01", "loadtest-1", true, true, &Client::Y2021);
        let caps = extra.iter().find(|e| e.is("c", NS_CAPS)).unwrap();
        assert_eq!(caps.attr("ver"), Some(caps_ver(FEATURES).as_str()));
        let info = extra.iter().find(|e| e.name() == "SourceInfo").unwrap();
        let v: serde_json::Value = serde_json::from_str(&info.text()).unwrap();
        assert_eq!(v["abcdef01-v0"]["muted"], false);
        assert_eq!(v["abcdef01-v0"]["videoType"], "camera");
        let disco = disco_info(Some("n#v"), &Client::Y2021);
        assert!(is_disco_info(&disco));
        let vars: Vec<&str> = disco.children().filter_map(|c| c.attr("var")).collect();
        assert!(vars.contains(&"http://jitsi.org/tcc"));
        assert!(vars.contains(&"urn:xmpp:jingle:transports:dtls-sctp:1"));
        // base64 (RFC 4648 test vectors).
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(caps_ver(FEATURES).len(), 28);
        assert_eq!(endpoint_id(0xab), "000000ab");
    }

    #[test]
    fn bridge_channel_messages_parse_as_the_bridge_reads_them() {
        let m =
            BridgeChannelMessage::parse(&receiver_constraints(Some("11111111"), 720, 180)).unwrap();
        let BridgeChannelMessage::ReceiverVideoConstraints(c) = m else {
            panic!("{m:?}")
        };
        assert_eq!(c.last_n, Some(-1));
        assert_eq!(c.on_stage_endpoints, Some(vec!["11111111".to_owned()]));
        assert_eq!(
            c.default_constraints,
            Some(VideoConstraints::max_height(180))
        );
        assert_eq!(c.constraints.unwrap()["11111111"].max_height, 720);
        assert!(matches!(
            BridgeChannelMessage::parse(&last_n_unlimited()).unwrap(),
            BridgeChannelMessage::LastNChangedEvent(LastNChanged { last_n: -1 })
        ));
        let req = conference_request(
            &BareJid::new("r@conference.meet.example").unwrap(),
            "m1",
            &Client::Y2021,
        );
        let back = ConferenceRequest::from_element(&req).unwrap();
        assert_eq!(back.machine_uid.as_deref(), Some("m1"));
        assert_eq!(back.bool_property("rtcstatsEnabled"), Some(false));
        let t = session_terminate("s1");
        assert_eq!(
            Jingle::from_xml(&t.to_xml()).unwrap().action,
            Action::SessionTerminate
        );
    }

    #[test]
    fn the_current_client_answers_with_av1_the_descriptor_and_named_camera_sources() {
        let j = Jingle::from_xml(&offer_xml()).unwrap();
        let offer = parse_offer(&j).unwrap();
        let neg = negotiate(&offer).unwrap();
        let (av1, dd) = neg.av1_with_dd().unwrap();
        assert_eq!((av1.id, dd), (41, 11));
        assert_eq!(neg.av1_rtx.as_ref().map(|r| r.id), Some(42));
        let mut n = 100u32;
        let local = LocalSources::new("abcdef01", true, 3, || {
            n += 3;
            n
        })
        .current();
        let t = client_transport();
        let back = accepted(&offer, &neg, &local, &t);
        let video = back.content("video").unwrap().description.as_ref().unwrap();
        let names: Vec<&str> = video
            .rtp
            .payload_types
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, vec!["AV1", "rtx", "VP8", "rtx"], "AV1 preferred");
        assert_eq!(
            video.rtp.hdrext_id(hdrext::AV1_DEPENDENCY_DESCRIPTOR),
            Some(11)
        );
        assert!(video.rtp.extmap_allow_mixed);
        // Named sources with videoType on video, msid in the current client's form; what the
        // focus accepts from a participant.
        let map = ConferenceSourceMap::from_jingle(&back, Some("abcdef01")).unwrap();
        let mine = map.get("abcdef01").unwrap();
        assert!(mine.video.sources.iter().all(|s| {
            s.video_type == Some(VideoType::Camera)
                && s.name.as_deref() == Some("abcdef01-v0")
                && s.msid()
                    .is_some_and(|m| m.starts_with("abcdef01-video-0-1 "))
        }));
        assert!(mine.audio.sources.iter().all(|s| {
            s.video_type.is_none()
                && s.msid()
                    .is_some_and(|m| m.starts_with("abcdef01-audio-0-1 "))
        }));
        signaling::source_map::validate_endpoint("abcdef01", mine).unwrap();
        // The 2021 client accepts VP8 only, and no descriptor.
        let legacy_local = LocalSources {
            current: false,
            ..local.clone()
        };
        let old = session_accept(&offer, &neg, &legacy_local, &t, "r@c/abcdef01");
        let v = old.content("video").unwrap().description.as_ref().unwrap();
        assert!(v.rtp.payload_types.iter().all(|p| p.name != "AV1"));
        assert_eq!(v.rtp.hdrext_id(hdrext::AV1_DEPENDENCY_DESCRIPTOR), None);
        assert!(v.sources.iter().all(|s| s.video_type.is_none()));
    }

    #[test]
    fn the_current_client_speaks_source_names_to_the_bridge_and_focus() {
        let m = BridgeChannelMessage::parse(&receiver_source_constraints(
            Some("11111111-v0"),
            720,
            180,
        ))
        .unwrap();
        let BridgeChannelMessage::ReceiverVideoConstraints(c) = m else {
            panic!("{m:?}")
        };
        assert_eq!(c.on_stage_sources, Some(vec!["11111111-v0".to_owned()]));
        assert_eq!(c.selected_sources, Some(vec!["11111111-v0".to_owned()]));
        assert_eq!(c.on_stage_endpoints, None);
        assert_eq!(c.constraints.unwrap()["11111111-v0"].max_height, 720);
        assert_eq!(
            c.default_constraints,
            Some(VideoConstraints::max_height(180))
        );
        // Tile view: nobody selected, everybody a thumbnail.
        let BridgeChannelMessage::ReceiverVideoConstraints(c) =
            BridgeChannelMessage::parse(&receiver_source_constraints(None, 720, 180)).unwrap()
        else {
            panic!()
        };
        assert_eq!(c.on_stage_sources, Some(vec![]));
        assert!(c.constraints.unwrap().is_empty());
        let BridgeChannelMessage::SourceVideoTypeMessage(v) =
            BridgeChannelMessage::parse(&source_video_type("abcdef01-v0")).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (v.source_name.as_str(), v.video_type),
            ("abcdef01-v0", VideoType::Camera)
        );

        let current = Client {
            ssrc_rewriting: true,
            ..Client::CURRENT
        };
        let f = features(&current);
        assert!(f.contains(&FEATURE_SSRC_REWRITING));
        assert!(!f.contains(&"urn:ietf:rfc:5761") && !f.contains(&"urn:ietf:rfc:5888"));
        assert!(!features(&Client::CURRENT).contains(&FEATURE_SSRC_REWRITING));
        assert!(!features(&Client::Y2021).contains(&FEATURE_SSRC_REWRITING));
        let disco = disco_info(None, &current);
        let vars: Vec<&str> = disco.children().filter_map(|c| c.attr("var")).collect();
        assert!(vars.contains(&"http://jitsi.org/source-name"));
        assert!(vars.contains(&FEATURE_SSRC_REWRITING));
        let extra = presence_extra("abcdef01", "n", true, true, &current);
        let caps = extra.iter().find(|e| e.is("c", NS_CAPS)).unwrap();
        assert_eq!(caps.attr("ver"), Some(caps_ver(&f).as_str()));
        assert!(
            extra
                .iter()
                .all(|e| e.name() != "audiomuted" && e.name() != "videoType")
        );
        let codecs = extra
            .iter()
            .find(|e| e.name() == "jitsi_participant_codecList")
            .unwrap();
        assert_eq!(codecs.text(), "av1,vp8");
        let req = conference_request(&BareJid::new("r@c.example").unwrap(), "m", &current);
        let back = ConferenceRequest::from_element(&req).unwrap();
        assert_eq!(back.bool_property("rtcstatsEnabled"), Some(false));
        assert_eq!(back.bool_property("startBitrate"), None);
    }
}
