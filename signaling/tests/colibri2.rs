//! COLIBRI2 payloads: realistic requests as Jicofo builds them, the bridge's answers, every error reason,
//! and malformed input.

use signaling::ParseError;
use signaling::XmlElement;
use signaling::colibri2::*;
use signaling::ice_udp::{CandidateType, Setup};
use signaling::rtp_description::hdrext;
use signaling::sources::{Semantics, SsrcGroup, VideoType};
use signaling::xml::{self, MAX_STANZA_BYTES};

const ENDPOINT_CREATE: &str = include_str!("samples/colibri2/endpoint_create.xml");
const SESSION_ACCEPT_UPDATE: &str = include_str!("samples/colibri2/session_accept_update.xml");
const CONFERENCE_MODIFIED: &str = include_str!("samples/colibri2/conference_modified.xml");

const MEETING: &str = "3f7c1d2e-8a4b-4c6d-9e0f-1a2b3c4d5e6f";

/// parse → serialise → parse gives the same value (and serialising again gives the same text).
fn roundtrip<T: XmlElement + PartialEq + std::fmt::Debug>(text: &str) -> T {
    let v = T::from_xml(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let written = v.to_xml();
    let again = T::from_xml(&written).unwrap_or_else(|e| panic!("reparse: {e}\n{written}"));
    assert_eq!(v, again);
    assert_eq!(again.to_xml(), written);
    v
}

/// Compares XML structurally (minidom writes attributes in its own order and quote style).
fn assert_same_xml(actual: &str, expected: &str) {
    assert_eq!(
        xml::parse_element(actual).unwrap(),
        xml::parse_element(expected).unwrap(),
        "\nactual:   {actual}\nexpected: {expected}"
    );
}

fn modify_err(text: &str) -> ParseError {
    ConferenceModify::from_xml(text).expect_err(text)
}

// ---------------------------------------------------------------------------------------------------------
// Requests

#[test]
fn jicofo_endpoint_create_roundtrips() {
    let m: ConferenceModify = roundtrip(ENDPOINT_CREATE);
    assert_eq!(m.meeting_id, MEETING);
    assert_eq!(m.name.as_deref(), Some("dailystandup@muc.meet.jitsi"));
    assert!(m.create && !m.expire && m.rtcstats_enabled);
    assert_eq!(m.endpoints.len(), 1);

    let ep = m.endpoint("ab12cd34").unwrap();
    assert!(ep.create && !ep.expire);
    assert_eq!(ep.stats_id.as_deref(), Some("Rosalind-q7Z"));
    assert_eq!(ep.muc_role, None);
    assert!(ep.has_capability(capability::SOURCE_NAMES));
    assert!(ep.has_capability(capability::PRIVATE_ADDRESS_CONNECTIVITY));
    assert!(!ep.has_capability(capability::SSRC_REWRITING));

    let audio = ep.media(MediaType::Audio).unwrap();
    assert_eq!(audio.rtp.payload_types.len(), 2);
    assert_eq!(audio.rtp.payload_types[0].name, "opus");
    assert!(audio.rtp.payload_types[0].has_rtcp_fb("transport-cc", None));
    assert_eq!(audio.rtp.hdrext_id(hdrext::AUDIO_LEVEL), Some(1));
    assert!(audio.rtp.extmap_allow_mixed);
    let video = ep.media(MediaType::Video).unwrap();
    let rtx: Vec<_> = video
        .rtp
        .payload_types
        .iter()
        .filter_map(|p| p.apt().map(|apt| (p.id, apt)))
        .collect();
    assert_eq!(rtx, vec![(96, 100), (99, 107)]);
    assert_eq!(
        video.rtp.hdrext_id(hdrext::AV1_DEPENDENCY_DESCRIPTOR),
        Some(11)
    );

    let transport = ep.transport.as_ref().unwrap();
    assert!(transport.ice_controlling);
    assert!(transport.ice_udp.is_none());
    assert_eq!(transport.sctp, Some(Sctp::default()));
    // Jicofo sends the (still empty) source set on create.
    assert_eq!(ep.sources, Some(Sources::default()));
    assert_eq!(ep.force_mute, None);
}

#[test]
fn session_accept_update_carries_transport_and_complete_sources() {
    let m: ConferenceModify = roundtrip(SESSION_ACCEPT_UPDATE);
    assert!(!m.create);
    assert_eq!(m.name, None);
    let ep = &m.endpoints[0];
    assert!(!ep.create);
    assert_eq!(ep.initial_last_n, Some(5));

    let t = ep.transport.as_ref().unwrap();
    assert!(!t.ice_controlling);
    let ice = t.ice_udp.as_ref().unwrap();
    assert_eq!(ice.ufrag.as_deref(), Some("kP4e"));
    assert_eq!(ice.pwd.as_deref(), Some("Xb8oQ1mZr5vT2nWc9yLd0sFh"));
    assert_eq!(ice.fingerprint().unwrap().setup, Some(Setup::Active));
    assert_eq!(ice.candidates.len(), 2);
    assert_eq!(ice.candidates[1].candidate_type, CandidateType::Srflx);

    let sources = ep.sources.as_ref().unwrap();
    assert_eq!(sources.media_sources.len(), 2);
    let a0 = sources.media_source("ab12cd34-a0").unwrap();
    assert_eq!(a0.media_type, MediaType::Audio);
    assert_eq!(a0.sources.len(), 1);
    let v0 = sources.media_source("ab12cd34-v0").unwrap();
    assert_eq!(v0.media_type, MediaType::Video);
    assert_eq!(v0.sources.len(), 6);
    assert!(
        v0.sources
            .iter()
            .all(|s| s.video_type == Some(VideoType::Camera))
    );
    assert_eq!(
        v0.ssrc_groups[0],
        SsrcGroup::new(Semantics::Sim, vec![1757014965, 2902185123, 411983390])
    );
    let fids: Vec<_> = v0
        .ssrc_groups
        .iter()
        .filter(|g| g.semantics == Semantics::Fid)
        .map(|g| g.ssrcs.clone())
        .collect();
    assert_eq!(
        fids,
        vec![
            vec![1757014965, 1211503826],
            vec![2902185123, 3990521047],
            vec![411983390, 688240177]
        ]
    );
    assert_eq!(sources.ssrcs().count(), 7);
}

#[test]
fn batch_expire_roundtrips() {
    let m: ConferenceModify = roundtrip(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}">
             <endpoint id="ab12cd34" expire="true"/>
             <endpoint id="ef56ab78" expire="true"/>
             <endpoint id="01c2d3e4" expire="true"/>
           </conference-modify>"#
    ));
    assert_eq!(
        m.endpoints,
        vec![
            Endpoint::expired("ab12cd34"),
            Endpoint::expired("ef56ab78"),
            Endpoint::expired("01c2d3e4")
        ]
    );
    // Built from the typed value, the flags are written only when true.
    let mut built = ConferenceModify::new(MEETING);
    built.endpoints.push(Endpoint::expired("ab12cd34"));
    assert_same_xml(
        &built.to_xml(),
        &format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="ab12cd34" expire="true"/></conference-modify>"#
        ),
    );
}

#[test]
fn force_mute_batch_roundtrips() {
    let m: ConferenceModify = roundtrip(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}">
             <endpoint id="ab12cd34"><force-mute audio="true" video="true"/></endpoint>
             <endpoint id="ef56ab78"><force-mute audio="true"/></endpoint>
             <endpoint id="01c2d3e4"><force-mute/></endpoint>
           </conference-modify>"#
    ));
    let mutes: Vec<_> = m.endpoints.iter().map(|e| e.force_mute.unwrap()).collect();
    assert_eq!(
        mutes,
        vec![
            ForceMute {
                audio: true,
                video: true
            },
            ForceMute {
                audio: true,
                video: false
            },
            ForceMute {
                audio: false,
                video: false
            }
        ]
    );
    assert!(
        m.endpoints
            .iter()
            .all(|e| e.transport.is_none() && e.media.is_empty())
    );
}

#[test]
fn conference_expire_roundtrips() {
    let text = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}" expire="true"/>"#
    );
    let m: ConferenceModify = roundtrip(&text);
    assert!(m.expire);
    assert!(m.endpoints.is_empty());
    let mut built = ConferenceModify::new(MEETING);
    built.expire = true;
    assert_same_xml(&built.to_xml(), &text);
}

#[test]
fn rtcstats_disabled_visitor_ice_restart_and_diarize() {
    let m: ConferenceModify = roundtrip(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}" name="lobby@muc.meet.jitsi" create="true" rtcstats-enabled="false">
             <endpoint id="9f8e7d6c" create="true" stats-id="Guest-1" muc-role="visitor" diarize="true">
               <transport ice-controlling="true"><sctp/></transport>
               <capability name="source-names"/>
             </endpoint>
             <endpoint id="ab12cd34" stats-id="Rosalind-q7Z"><transport ice-restart="true"/></endpoint>
           </conference-modify>"#
    ));
    assert!(!m.rtcstats_enabled);
    assert_eq!(
        xml::parse_element(&m.to_xml())
            .unwrap()
            .attr("rtcstats-enabled"),
        Some("false")
    );
    assert_eq!(m.endpoints[0].muc_role, Some(MucRole::Visitor));
    assert!(m.endpoints[0].diarize);
    assert!(m.endpoints[1].transport.as_ref().unwrap().ice_restart);
    // Default (enabled) is not written.
    assert!(!ConferenceModify::new(MEETING).to_xml().contains("rtcstats"));
}

#[test]
fn relay_and_connects_roundtrip() {
    let m: ConferenceModify = roundtrip(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}">
             <relay id="jvb-2" create="true" mesh-id="0">
               <media type="audio"><payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="111" name="opus" clockrate="48000" channels="2"/></media>
               <transport ice-controlling="false" use-unique-port="true"><sctp role="client"/></transport>
               <endpoints>
                 <endpoint id="77aa88bb" stats-id="Remote-1">
                   <sources><media-source type="audio" id="77aa88bb-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="12345" name="77aa88bb-a0"/></media-source></sources>
                 </endpoint>
               </endpoints>
             </relay>
             <connects>
               <connect url="wss://transcriber.example/ws" protocol="mediajson" type="transcriber" audio="true">
                 <http-header name="Authorization" value="Bearer abc"/>
                 <ping interval="10" timeout="30"/>
                 <exports><export name="ab12cd34-a0"/></exports>
               </connect>
             </connects>
           </conference-modify>"#
    ));
    let relay = &m.relays[0];
    assert_eq!(relay.id, "jvb-2");
    assert_eq!(relay.mesh_id.as_deref(), Some("0"));
    let t = relay.transport.as_ref().unwrap();
    assert!(t.use_unique_port);
    assert_eq!(t.sctp.unwrap().role, Some(SctpRole::Client));
    let remote = relay.endpoints.as_ref().unwrap();
    assert_eq!(remote[0].id, "77aa88bb");
    let connects = m.connects.as_ref().unwrap();
    assert_eq!(connects[0].connect_type, ConnectType::Transcriber);
    assert!(connects[0].audio && !connects[0].video);
    assert_eq!(
        connects[0].http_headers,
        vec![("Authorization".to_string(), "Bearer abc".to_string())]
    );
    assert_eq!(connects[0].ping, Some((10, 30)));
    assert_eq!(connects[0].exports, vec!["ab12cd34-a0".to_string()]);

    // An empty <connects/> (clear all exports) is distinct from no <connects>.
    let cleared: ConferenceModify = roundtrip(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><connects/></conference-modify>"#
    ));
    assert_eq!(cleared.connects, Some(vec![]));
}

#[test]
fn unknown_children_are_ignored() {
    // Jicofo may add a tracing extension; newer peers may add elements we don't know.
    let m = ConferenceModify::from_xml(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}">
             <traceparent xmlns="urn:example:trace" value="00-abc-def-01"/>
             <endpoint id="ab12cd34"><future xmlns="jitsi:colibri2"/></endpoint>
           </conference-modify>"#
    ))
    .unwrap();
    assert_eq!(m.endpoints, vec![Endpoint::new("ab12cd34")]);
}

// ---------------------------------------------------------------------------------------------------------
// Response

#[test]
fn bridge_conference_modified_roundtrips() {
    let r: ConferenceModified = roundtrip(CONFERENCE_MODIFIED);
    let ep = r.endpoint("ab12cd34").unwrap();
    let t = ep.transport.as_ref().unwrap();
    let ice = t.ice_udp.as_ref().unwrap();
    assert!(ice.rtcp_mux);
    assert_eq!(ice.fingerprint().unwrap().setup, Some(Setup::Actpass));
    assert_eq!(ice.candidates[0].port, 10000);
    assert_eq!(
        ice.web_sockets,
        vec![
            "wss://meet.example.org/colibri-ws/jvb-1/5c0d8e3a91f4/ab12cd34?pwd=T4kQ9zLm2Xc7Rb1Vn8Ye5Wh3"
                .to_string()
        ]
    );
    assert_eq!(
        t.sctp,
        Some(Sctp {
            port: Some(5000),
            role: Some(SctpRole::Server)
        })
    );

    let feedback = r.sources.as_ref().unwrap();
    let a0 = feedback.media_source("jvb-a0").unwrap();
    assert_eq!(a0.media_type, MediaType::Audio);
    assert_eq!(a0.sources[0].ssrc, 2104887413);
    assert_eq!(a0.sources[0].name.as_deref(), Some("jvb-a0"));
    let v0 = feedback.media_source("jvb-v0").unwrap();
    assert_eq!(v0.media_type, MediaType::Video);
    assert_eq!(v0.sources[0].ssrc, 3730582091);
}

#[test]
fn expired_endpoint_echo_and_empty_response() {
    let r: ConferenceModified = roundtrip(
        r#"<conference-modified xmlns="jitsi:colibri2"><endpoint id="ab12cd34" expire="true"/><endpoint id="ef56ab78"/></conference-modified>"#,
    );
    assert_eq!(
        r.endpoints,
        vec![Endpoint::expired("ab12cd34"), Endpoint::new("ef56ab78")]
    );
    let empty: ConferenceModified = roundtrip(r#"<conference-modified xmlns="jitsi:colibri2"/>"#);
    assert_eq!(empty, ConferenceModified::default());
}

#[test]
fn built_response_has_the_expected_shape() {
    let mut a0 = MediaSource::new(MediaType::Audio, "jvb-a0");
    a0.sources
        .push(signaling::sources::Source::named(22, "jvb-a0"));
    let r = ConferenceModified {
        endpoints: vec![Endpoint {
            transport: Some(Transport {
                sctp: Some(Sctp {
                    port: Some(5000),
                    role: Some(SctpRole::Server),
                }),
                ..Default::default()
            }),
            ..Endpoint::new("ab12cd34")
        }],
        relays: vec![],
        sources: Some(Sources {
            media_sources: vec![a0],
        }),
    };
    assert_same_xml(
        &r.to_xml(),
        r#"<conference-modified xmlns="jitsi:colibri2"><endpoint id="ab12cd34"><transport><sctp role="server" port="5000"/></transport></endpoint><sources><media-source type="audio" id="jvb-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="22" name="jvb-a0"/></media-source></sources></conference-modified>"#,
    );
    assert_eq!(ConferenceModified::from_xml(&r.to_xml()).unwrap(), r);
}

// ---------------------------------------------------------------------------------------------------------
// Errors

#[test]
fn every_error_reason_roundtrips_in_a_stanza_error() {
    let cases = [
        (
            Colibri2ErrorResponse::conference_not_found(MEETING),
            Condition::ItemNotFound,
            Reason::ConferenceNotFound,
        ),
        (
            Colibri2ErrorResponse::conference_already_exists(MEETING),
            Condition::Conflict,
            Reason::ConferenceAlreadyExists,
        ),
        (
            Colibri2ErrorResponse::graceful_shutdown(),
            Condition::ServiceUnavailable,
            Reason::GracefulShutdown,
        ),
        (
            Colibri2ErrorResponse::unknown_endpoint("ab12cd34"),
            Condition::ItemNotFound,
            Reason::UnknownEndpoint,
        ),
        (
            Colibri2ErrorResponse::feature_not_implemented("One relay per request"),
            Condition::FeatureNotImplemented,
            Reason::FeatureNotImplemented,
        ),
        (
            Colibri2ErrorResponse::new(
                Condition::InternalServerError,
                Some(Reason::Unspecified),
                None,
            ),
            Condition::InternalServerError,
            Reason::Unspecified,
        ),
    ];
    for (err, condition, reason) in cases {
        let text = err.to_xml();
        let el = xml::parse_element(&text).unwrap();
        let c2 = el
            .get_child("error", "jitsi:colibri2")
            .expect("colibri2 error child");
        assert_eq!(c2.attr("reason"), Some(reason.to_string().as_str()));
        assert!(el.has_child(condition.to_string(), "urn:ietf:params:xml:ns:xmpp-stanzas"));
        let back = Colibri2ErrorResponse::from_xml(&text).unwrap();
        assert_eq!(back, err);
        assert_eq!(back.condition, condition);
        assert_eq!(back.reason, Some(reason));
        assert_eq!(back.error_type, ErrorType::Cancel);
        // Inside a full IQ as the focus receives it.
        let iq = format!(
            r#"<iq xmlns="jabber:client" type="error" id="a1" from="jvbbrewery@internal-muc.meet.jitsi/jvb1">{text}</iq>"#
        );
        let parsed = Colibri2ErrorResponse::from_iq(&xml::parse_element(&iq).unwrap()).unwrap();
        assert_eq!(parsed, err);
    }
    // The reason strings are the lower-case enum names.
    let names: Vec<String> = [
        Reason::ConferenceNotFound,
        Reason::ConferenceAlreadyExists,
        Reason::FeatureNotImplemented,
        Reason::GracefulShutdown,
        Reason::UnknownEndpoint,
        Reason::Unspecified,
    ]
    .iter()
    .map(|r| r.to_string())
    .collect();
    assert_eq!(
        names,
        [
            "conference_not_found",
            "conference_already_exists",
            "feature_not_implemented",
            "graceful_shutdown",
            "unknown_endpoint",
            "unspecified"
        ]
    );
}

#[test]
fn unknown_endpoint_error_has_the_bridge_shape() {
    let e = Colibri2ErrorResponse::unknown_endpoint("ab12cd34");
    assert_same_xml(
        &e.to_xml(),
        r#"<error xmlns="jabber:client" type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">Endpoint not found for ID: ab12cd34</text><error xmlns="jitsi:colibri2" reason="unknown_endpoint"/><endpoint xmlns="jitsi:colibri2" id="ab12cd34"/></error>"#,
    );
    assert_eq!(e.endpoint_id.as_deref(), Some("ab12cd34"));
}

#[test]
fn error_can_be_written_for_a_component_stream() {
    let e = Colibri2ErrorResponse::graceful_shutdown();
    let el = e.to_element_in("jabber:component:accept");
    assert_eq!(el.ns(), "jabber:component:accept");
    let iq = format!(
        r#"<iq xmlns="jabber:component:accept" type="error" id="a3">{}</iq>"#,
        String::from(&el)
    );
    // No stray xmlns on the inner error, and it reads back.
    assert!(!iq.contains("jabber:client"));
    assert_eq!(
        Colibri2ErrorResponse::from_iq(&xml::parse_element(&iq).unwrap()).unwrap(),
        e
    );
}

#[test]
fn errors_without_colibri2_reason_are_read() {
    // From Prosody (bridge gone) or a bad-request from the bridge: no colibri2 child.
    let iq = xml::parse_element(
        r#"<iq xmlns="jabber:client" type="error" id="a2"><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>"#,
    )
    .unwrap();
    let e = Colibri2ErrorResponse::from_iq(&iq).unwrap();
    assert_eq!(e.condition, Condition::ServiceUnavailable);
    assert_eq!(e.reason, None);
    assert_eq!(e.text, None);

    let br = Colibri2ErrorResponse::bad_request("Source name support is mandatory.");
    assert_eq!(br.error_type, ErrorType::Modify);
    assert_eq!(Colibri2ErrorResponse::from_xml(&br.to_xml()).unwrap(), br);

    // A colibri2 error element without a reason reads as unspecified.
    let e = Colibri2ErrorResponse::from_xml(
        r#"<error xmlns="jabber:client" type="cancel"><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><error xmlns="jitsi:colibri2"/></error>"#,
    )
    .unwrap();
    assert_eq!(e.reason, Some(Reason::Unspecified));
    assert_eq!(e.condition, Condition::Other("undefined-condition".into()));
}

#[test]
fn malformed_errors_are_typed() {
    assert!(matches!(
        Colibri2Error::from_xml(r#"<error xmlns="jitsi:colibri2" reason="meltdown"/>"#),
        Err(ParseError::BadAttribute {
            element: "error",
            attribute: "reason",
            ..
        })
    ));
    assert_eq!(
        Colibri2ErrorResponse::from_xml(r#"<error xmlns="jabber:client" type="cancel"/>"#),
        Err(ParseError::MissingChild {
            element: "error",
            child: "condition"
        })
    );
    assert!(matches!(
        Colibri2ErrorResponse::from_xml(
            r#"<error xmlns="jabber:client" type="fatal"><conflict xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>"#
        ),
        Err(ParseError::BadAttribute {
            attribute: "type",
            ..
        })
    ));
    // The colibri2 <error> is not a stanza error.
    assert!(matches!(
        Colibri2ErrorResponse::from_xml(r#"<error xmlns="jitsi:colibri2" reason="unspecified"/>"#),
        Err(ParseError::WrongElement { .. })
    ));
    let result_iq =
        xml::parse_element(r#"<iq xmlns="jabber:client" type="result" id="a"/>"#).unwrap();
    assert!(Colibri2ErrorResponse::from_iq(&result_iq).is_err());
}

// ---------------------------------------------------------------------------------------------------------
// Malformed requests

#[test]
fn missing_required_attributes_are_named() {
    assert_eq!(
        modify_err(r#"<conference-modify xmlns="jitsi:colibri2" create="true"/>"#),
        ParseError::MissingAttribute {
            element: "conference-modify",
            attribute: "meeting-id"
        }
    );
    assert_eq!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint create="true"/></conference-modify>"#
        )),
        ParseError::MissingAttribute {
            element: "endpoint",
            attribute: "id"
        }
    );
    assert_eq!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="a"><media/></endpoint></conference-modify>"#
        )),
        ParseError::MissingAttribute {
            element: "media",
            attribute: "type"
        }
    );
    assert_eq!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="a"><sources><media-source type="audio"/></sources></endpoint></conference-modify>"#
        )),
        ParseError::MissingAttribute {
            element: "media-source",
            attribute: "id"
        }
    );
    assert_eq!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="a"><capability/></endpoint></conference-modify>"#
        )),
        ParseError::MissingAttribute {
            element: "capability",
            attribute: "name"
        }
    );
    assert_eq!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="a"><initial-last-n/></endpoint></conference-modify>"#
        )),
        ParseError::MissingAttribute {
            element: "initial-last-n",
            attribute: "value"
        }
    );
    // Empty identifiers are as bad as missing ones.
    assert!(matches!(
        modify_err(r#"<conference-modify xmlns="jitsi:colibri2" meeting-id=" "/>"#),
        ParseError::BadAttribute {
            element: "conference-modify",
            attribute: "meeting-id",
            ..
        }
    ));
}

#[test]
fn bad_values_are_named() {
    let wrap = |inner: &str| {
        format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="a">{inner}</endpoint></conference-modify>"#
        )
    };
    let cases: [(String, &str, &str); 8] = [
        (
            wrap(r#"<initial-last-n value="five"/>"#),
            "initial-last-n",
            "value",
        ),
        (
            wrap(r#"<transport><sctp port="70000"/></transport>"#),
            "sctp",
            "port",
        ),
        (
            wrap(r#"<transport><sctp role="peer"/></transport>"#),
            "sctp",
            "role",
        ),
        (
            wrap(r#"<transport ice-controlling="maybe"/>"#),
            "transport",
            "ice-controlling",
        ),
        (wrap(r#"<force-mute audio="yes"/>"#), "force-mute", "audio"),
        (wrap(r#"<media type="data"/>"#), "media", "type"),
        (
            wrap(
                r#"<sources><media-source type="video" id="a-v0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="-1"/></media-source></sources>"#,
            ),
            "source",
            "ssrc",
        ),
        (
            format!(
                r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint id="a" muc-role="king"/></conference-modify>"#
            ),
            "endpoint",
            "muc-role",
        ),
    ];
    for (text, element, attribute) in cases {
        match modify_err(&text) {
            ParseError::BadAttribute {
                element: e,
                attribute: a,
                ..
            } => assert_eq!((e, a), (element, attribute), "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    assert!(matches!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}" create="yes"/>"#
        )),
        ParseError::BadAttribute {
            element: "conference-modify",
            attribute: "create",
            ..
        }
    ));
    // Nested Jingle pieces report their own element.
    assert!(matches!(
        modify_err(&wrap(
            r#"<transport><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1"><candidate component="1" foundation="1" ip="127.0.0.1" port="x" priority="1" protocol="udp" type="host"/></transport></transport>"#
        )),
        ParseError::BadAttribute {
            element: "candidate",
            attribute: "port",
            ..
        }
    ));
}

#[test]
fn connect_urls_and_headers_are_checked() {
    let connect = |attrs: &str, inner: &str| {
        format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><connects><connect {attrs}>{inner}</connect></connects></conference-modify>"#
        )
    };
    assert!(matches!(
        modify_err(&connect(
            r#"url="http://x/ws" protocol="mediajson" type="recorder""#,
            ""
        )),
        ParseError::BadAttribute {
            element: "connect",
            attribute: "url",
            ..
        }
    ));
    assert!(matches!(
        modify_err(&connect(
            r#"url="wss://x/ws" protocol="rtp" type="recorder""#,
            ""
        )),
        ParseError::BadAttribute {
            attribute: "protocol",
            ..
        }
    ));
    assert!(matches!(
        modify_err(&connect(
            r#"url="wss://x/ws" protocol="mediajson" type="recorder""#,
            r#"<http-header name="X Bad" value="v"/>"#
        )),
        ParseError::BadAttribute {
            element: "http-header",
            ..
        }
    ));
    // Line breaks in header values are removed, not passed on.
    let m = ConferenceModify::from_xml(&connect(
        r#"url="wss://x/ws" protocol="mediajson" type="translator""#,
        "<http-header name=\"X-Token\" value=\"a&#13;&#10;Evil: 1\"/>",
    ))
    .unwrap();
    assert_eq!(
        m.connects.unwrap()[0].http_headers[0].1,
        "aEvil: 1".to_string()
    );
}

#[test]
fn wrong_namespace_and_element_are_refused() {
    assert!(matches!(
        modify_err(&format!(
            r#"<conference-modify xmlns="jitsi:colibri" meeting-id="{MEETING}"/>"#
        )),
        ParseError::WrongElement {
            expected: "conference-modify",
            ..
        }
    ));
    assert!(matches!(
        ConferenceModified::from_xml(&format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"/>"#
        )),
        Err(ParseError::WrongElement { .. })
    ));
    // A colibri2 endpoint child in the wrong namespace is simply not an endpoint.
    let m = ConferenceModify::from_xml(&format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}"><endpoint xmlns="urn:other" id="a"/></conference-modify>"#
    ))
    .unwrap();
    assert!(m.endpoints.is_empty());
}

#[test]
fn oversized_and_malformed_xml_are_refused() {
    let big = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}">{}</conference-modify>"#,
        r#"<endpoint id="a" expire="true"/>"#.repeat(MAX_STANZA_BYTES / 20)
    );
    assert!(matches!(
        modify_err(&big),
        ParseError::Oversized { what: "stanza", .. }
    ));
    assert!(matches!(
        modify_err(r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="x">"#),
        ParseError::Xml(_)
    ));
    // Too many endpoints in one request (well under the byte limit).
    let many = format!(
        r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{MEETING}">{}</conference-modify>"#,
        (0..600)
            .map(|i| format!(r#"<endpoint id="e{i}" expire="true"/>"#))
            .collect::<String>()
    );
    assert!(matches!(
        modify_err(&many),
        ParseError::TooMany {
            element: "endpoint",
            ..
        }
    ));
}

#[test]
fn truncated_samples_never_panic() {
    for sample in [ENDPOINT_CREATE, SESSION_ACCEPT_UPDATE, CONFERENCE_MODIFIED] {
        for end in (0..sample.len()).step_by(7) {
            if sample.is_char_boundary(end) {
                let _ = ConferenceModify::from_xml(&sample[..end]);
                let _ = ConferenceModified::from_xml(&sample[..end]);
            }
        }
    }
}
