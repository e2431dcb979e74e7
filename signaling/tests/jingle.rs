//! Jingle stanzas as our focus sends them and as lib-jitsi-meet (7d34d537, Chrome) sends them: round
//! trips, the fields the focus relies on, and typed errors for malformed input.

mod common;

use common::{mutations, payload, roundtrip};
use signaling::ice_udp::{CandidateType, Setup};
use signaling::jingle::{
    Action, BridgeSession, Content, Creator, Group, Jingle, Reason, ReasonCondition, Senders,
    StartMuted,
};
use signaling::rtp_description::{MediaType, hdrext};
use signaling::source_map::{ConferenceSourceMap, JVB_OWNER, SourceEncoding};
use signaling::sources::{Semantics, SsrcGroup, VideoType};
use signaling::xml::MAX_STANZA_BYTES;
use signaling::{ParseError, XmlElement};

const SESSION_INITIATE: &str = include_str!("samples/session-initiate.xml");
const SESSION_ACCEPT: &str = include_str!("samples/session-accept.xml");
const SOURCE_ADD: &str = include_str!("samples/source-add.xml");
const SOURCE_REMOVE: &str = include_str!("samples/source-remove.xml");
const TRANSPORT_INFO: &str = include_str!("samples/transport-info.xml");
const SESSION_TERMINATE: &str = include_str!("samples/session-terminate.xml");
const SESSION_INFO_ICE_FAILED: &str = include_str!("samples/session-info-ice-failed.xml");
const SESSION_INFO_ICE_RESTART: &str = include_str!("samples/session-info-ice-restart.xml");
const SOURCE_ADD_FROM_FOCUS_XML: &str = include_str!("samples/source-add-from-focus-xml.xml");
const SOURCE_ADD_FROM_FOCUS_JSON: &str = include_str!("samples/source-add-from-focus-json.xml");

const ALL_SAMPLES: [&str; 10] = [
    SESSION_INITIATE,
    SESSION_ACCEPT,
    SOURCE_ADD,
    SOURCE_REMOVE,
    TRANSPORT_INFO,
    SESSION_TERMINATE,
    SESSION_INFO_ICE_FAILED,
    SESSION_INFO_ICE_RESTART,
    SOURCE_ADD_FROM_FOCUS_XML,
    SOURCE_ADD_FROM_FOCUS_JSON,
];

fn jingle(sample: &str) -> Jingle {
    roundtrip(&payload(sample))
}

#[test]
fn every_sample_roundtrips() {
    for sample in ALL_SAMPLES {
        jingle(sample);
    }
}

#[test]
fn session_initiate_carries_the_whole_offer() {
    let j = jingle(SESSION_INITIATE);
    assert_eq!(j.action, Action::SessionInitiate);
    assert_eq!(j.sid, "9cnd1l8u2l3ta");
    assert_eq!(j.initiator.as_deref(), Some("focus@auth.meet.jitsi/focus"));
    let names: Vec<_> = j.contents.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["audio", "video", "data"]);
    for c in &j.contents {
        assert_eq!(c.creator, Some(Creator::Initiator));
        assert_eq!(c.senders, Some(Senders::Both));
    }

    let audio = j
        .content("audio")
        .and_then(|c| c.description.as_ref())
        .unwrap();
    assert_eq!(audio.media, MediaType::Audio);
    assert_eq!(audio.maxptime, Some(60));
    assert!(audio.rtcp_mux);
    assert!(audio.rtp.extmap_allow_mixed);
    let opus = &audio.rtp.payload_types[0];
    assert_eq!(
        (opus.id, opus.name.as_str(), opus.channels),
        (111, "opus", Some(2))
    );
    assert_eq!(opus.parameter("useinbandfec"), Some("1"));
    assert!(opus.has_rtcp_fb("transport-cc", None));
    assert_eq!(audio.rtp.hdrext_id(hdrext::AUDIO_LEVEL), Some(1));

    let video = j
        .content("video")
        .and_then(|c| c.description.as_ref())
        .unwrap();
    let pts: Vec<_> = video
        .rtp
        .payload_types
        .iter()
        .map(|p| (p.id, p.name.as_str(), p.apt()))
        .collect();
    assert_eq!(
        pts,
        [
            (41, "AV1", None),
            (42, "rtx", Some(41)),
            (100, "VP8", None),
            (96, "rtx", Some(100)),
            (107, "H264", None),
            (99, "rtx", Some(107)),
            (101, "VP9", None),
            (97, "rtx", Some(101)),
        ]
    );
    let vp8 = &video.rtp.payload_types[2];
    for (t, s) in [
        ("ccm", Some("fir")),
        ("nack", None),
        ("nack", Some("pli")),
        ("transport-cc", None),
    ] {
        assert!(vp8.has_rtcp_fb(t, s), "VP8 lacks rtcp-fb {t} {s:?}");
    }
    assert_eq!(
        video.rtp.payload_types[4].parameter("profile-level-id"),
        Some("42e01f")
    );
    assert_eq!(
        video.rtp.hdrext_id(hdrext::AV1_DEPENDENCY_DESCRIPTOR),
        Some(11)
    );
    assert_eq!(video.rtp.hdrext_id(hdrext::TRANSPORT_CC), Some(5));
    assert!(video.sources.is_empty(), "sources travel as JSON");

    let t = j.transport().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("5fk2p1hq0c8gvm"));
    assert!(t.rtcp_mux);
    assert_eq!(t.fingerprint().unwrap().setup, Some(Setup::Actpass));
    assert_eq!(t.candidates.len(), 2);
    assert_eq!(t.candidates[1].candidate_type, CandidateType::Srflx);
    let data = j.content("data").unwrap();
    assert_eq!(data.media(), Some(MediaType::Application));
    let sctp = data
        .transport
        .as_ref()
        .and_then(|t| t.sctpmap.as_ref())
        .unwrap();
    assert_eq!(
        (sctp.number, sctp.protocol.as_str(), sctp.streams),
        (5000, "webrtc-datachannel", Some(1024))
    );

    assert_eq!(j.bundle(), Some(&Group::bundle(["audio", "video", "data"])));
    assert_eq!(
        j.bridge_session,
        Some(BridgeSession::new(
            "e4c1b2a3-5d6f-4e7a-8b9c-0d1e2f3a4b5c",
            Some("eu-west")
        ))
    );
    assert_eq!(
        j.start_muted,
        Some(StartMuted {
            audio: true,
            video: false
        })
    );

    let sources = ConferenceSourceMap::from_jingle(&j, None).unwrap();
    let owners: Vec<_> = sources.owners().collect();
    assert_eq!(owners, ["7f3e9a1c", JVB_OWNER]);
    let jvb = sources.get(JVB_OWNER).unwrap();
    assert_eq!(
        jvb.video.sources[0].msid(),
        Some("mixedmslabel mixedlabelvideo0")
    );
    assert_eq!(jvb.audio.sources[0].name.as_deref(), Some("jvb-a0"));
    let peer = sources.get("7f3e9a1c").unwrap();
    assert_eq!(peer.video.sources.len(), 3);
    assert_eq!(peer.video.sources[2].video_type, Some(VideoType::Desktop));
    assert_eq!(
        peer.video.groups,
        [SsrcGroup::new(Semantics::Fid, vec![1573462089, 2238451903])]
    );
}

#[test]
fn session_initiate_built_through_the_api_matches_the_sample() {
    let sample = jingle(SESSION_INITIATE);
    let sources = ConferenceSourceMap::from_jingle(&sample, None).unwrap();

    let mut built = Jingle::new(Action::SessionInitiate, "9cnd1l8u2l3ta");
    built.initiator = Some("focus@auth.meet.jitsi/focus".into());
    built.contents = sample
        .contents
        .iter()
        .map(|c| Content::offer(&c.name, c.description.clone(), c.transport.clone().unwrap()))
        .collect();
    built.groups = vec![Group::bundle(built.contents.iter().map(|c| c.name.clone()))];
    built.bridge_session = Some(BridgeSession::new(
        "e4c1b2a3-5d6f-4e7a-8b9c-0d1e2f3a4b5c",
        Some("eu-west"),
    ));
    built.start_muted = Some(StartMuted {
        audio: true,
        video: false,
    });
    built.set_sources(&sources, SourceEncoding::Json);

    let reparsed = Jingle::from_xml(&built.to_xml()).unwrap();
    assert_eq!(reparsed, built);
    assert_eq!(
        ConferenceSourceMap::from_jingle(&reparsed, None).unwrap(),
        sources
    );
    // Everything but the JSON text (key order may differ) is the sample.
    assert_eq!(
        Jingle {
            json_message: None,
            ..reparsed
        },
        Jingle {
            json_message: None,
            ..sample
        }
    );
}

#[test]
fn chrome_session_accept_has_simulcast_and_rtx_groups() {
    let j = jingle(SESSION_ACCEPT);
    assert_eq!(j.action, Action::SessionAccept);
    assert_eq!(
        j.responder.as_deref(),
        Some("bluewhale42@muc.meet.jitsi/4a7c9e1f")
    );
    assert_eq!(j.contents.len(), 3);
    assert!(
        j.contents
            .iter()
            .all(|c| c.creator == Some(Creator::Responder))
    );

    let video = j
        .content("video")
        .and_then(|c| c.description.as_ref())
        .unwrap();
    assert_eq!(video.ssrc, Some(1757014965));
    assert_eq!(video.sources.len(), 6);
    assert!(
        video
            .sources
            .iter()
            .all(|s| s.name.as_deref() == Some("4a7c9e1f-v0"))
    );
    assert!(video.sources.iter().all(|s| s.msid()
        == Some("c1f3e5a7-9b2d-4f6e-8a0c-2e4d6f8a0b1c-1 3b5d7f9a-1c2e-4a6b-8d0f-2a4c6e8b0d1f-1")));
    assert!(
        video.sources.iter().all(|s| s.owner.is_none()),
        "the client names no owner"
    );
    let sim: Vec<_> = video
        .ssrc_groups
        .iter()
        .filter(|g| g.semantics == Semantics::Sim)
        .collect();
    let fid: Vec<_> = video
        .ssrc_groups
        .iter()
        .filter(|g| g.semantics == Semantics::Fid)
        .collect();
    assert_eq!(sim.len(), 1);
    assert_eq!(sim[0].ssrcs, [1757014965, 1380612478, 3217658093]);
    assert_eq!(fid.len(), 3);
    assert_eq!(fid[0].ssrcs, [1757014965, 2894712360]);
    assert_eq!(
        video.rtp.payload_types[0].channels,
        Some(1),
        "LJM writes channels=1 on video"
    );

    let t = j
        .content("audio")
        .and_then(|c| c.transport.as_ref())
        .unwrap();
    assert_eq!(t.fingerprint().unwrap().setup, Some(Setup::Active));
    assert_eq!(
        t.candidates[0].socket_addr(),
        Some("127.0.0.1:46243".parse().unwrap())
    );
    let data = j.content("data").unwrap();
    assert!(data.description.is_none());
    assert_eq!(
        data.transport
            .as_ref()
            .and_then(|t| t.sctpmap.as_ref())
            .map(|s| s.streams),
        Some(Some(0))
    );
    assert_eq!(j.bundle().map(|g| g.contents.len()), Some(3));
}

#[test]
fn client_source_add_and_remove_have_no_creator() {
    let add = jingle(SOURCE_ADD);
    let remove = jingle(SOURCE_REMOVE);
    assert_eq!(add.action, Action::SourceAdd);
    assert_eq!(remove.action, Action::SourceRemove);
    for j in [&add, &remove] {
        let c = &j.contents[0];
        assert_eq!(
            (c.creator, c.name.as_str(), c.senders),
            (None, "video", None)
        );
        let d = c.description.as_ref().unwrap();
        assert_eq!(
            d.sources.iter().map(|s| s.ssrc).collect::<Vec<_>>(),
            [2640913357, 1188237406]
        );
        assert_eq!(
            d.ssrc_groups,
            [SsrcGroup::new(Semantics::Fid, vec![2640913357, 1188237406])]
        );
    }
}

#[test]
fn transport_info_carries_trickled_candidates() {
    let j = jingle(TRANSPORT_INFO);
    assert_eq!(j.action, Action::TransportInfo);
    let c = &j.contents[0];
    assert_eq!(
        (c.creator, c.name.as_str()),
        (Some(Creator::Responder), "audio")
    );
    let t = c.transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("Qe3F"));
    assert_eq!(t.candidates.len(), 2);
    assert_eq!(t.candidates[0].rel_addr.as_deref(), Some("127.0.0.1"));
    assert_eq!(t.candidates[1].protocol, "tcp");
    assert_eq!(t.candidates[1].tcptype.as_deref(), Some("active"));
    assert_eq!(t.fingerprint().map(|f| f.hash.as_str()), Some("sha-256"));
}

#[test]
fn session_terminate_asks_for_a_restart() {
    let j = jingle(SESSION_TERMINATE);
    assert_eq!(j.action, Action::SessionTerminate);
    assert_eq!(
        j.reason,
        Some(Reason::new(
            ReasonCondition::ConnectivityError,
            Some("ICE FAILED")
        ))
    );
    let bs = j.bridge_session.unwrap();
    assert!(bs.restart);
    assert!(!bs.ice_restart);
    assert_eq!(bs.id, "e4c1b2a3-5d6f-4e7a-8b9c-0d1e2f3a4b5c");
}

#[test]
fn session_info_reports_ice_failure_or_asks_for_ice_restart() {
    let failed = jingle(SESSION_INFO_ICE_FAILED);
    assert_eq!(failed.action, Action::SessionInfo);
    assert_eq!(failed.ice_state.as_deref(), Some("failed"));
    assert!(!failed.bridge_session.as_ref().unwrap().ice_restart);

    let restart = jingle(SESSION_INFO_ICE_RESTART);
    assert_eq!(restart.ice_state, None);
    assert!(restart.bridge_session.as_ref().unwrap().ice_restart);
}

#[test]
fn focus_terminate_with_every_reason_roundtrips() {
    for name in [
        "alternative-session",
        "busy",
        "cancel",
        "connectivity-error",
        "decline",
        "expired",
        "failed-application",
        "failed-transport",
        "general-error",
        "gone",
        "incompatible-parameters",
        "media-error",
        "security-error",
        "success",
        "timeout",
        "unsupported-applications",
        "unsupported-transports",
        "jitsi-custom",
    ] {
        let mut j = Jingle::new(Action::SessionTerminate, "s1");
        j.reason = Some(Reason::new(ReasonCondition::parse(name), Some("moving")));
        let again = Jingle::from_xml(&j.to_xml()).unwrap();
        assert_eq!(again, j);
        assert_eq!(again.reason.unwrap().condition.as_str(), name);
    }
    assert_eq!(ReasonCondition::parse("expired"), ReasonCondition::Expired);
    // A hand-made condition that is no XML name is written as general-error instead of failing.
    let mut j = Jingle::new(Action::SessionTerminate, "s1");
    j.reason = Some(Reason::new(
        ReasonCondition::Other("not a name".into()),
        None,
    ));
    assert_eq!(
        Jingle::from_xml(&j.to_xml())
            .unwrap()
            .reason
            .unwrap()
            .condition,
        ReasonCondition::GeneralError
    );
}

#[test]
fn unknown_actions_parse_so_the_focus_can_refuse_them() {
    for action in [
        "transport-accept",
        "transport-replace",
        "content-modify",
        "description-info",
    ] {
        let text = format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="{action}" sid="s1"><content name="video" creator="initiator"><max-frame-height xmlns="http://jitsi.org/jitmeet/video">180</max-frame-height></content></jingle>"#
        );
        let j = Jingle::from_xml(&text).unwrap();
        assert_eq!(j.action, Action::Other(action.to_owned()));
        assert_eq!(Jingle::from_xml(&j.to_xml()).unwrap(), j);
    }
    let legacy =
        Jingle::from_xml(r#"<jingle xmlns="urn:xmpp:jingle:1" action="addsource" sid="s1"/>"#)
            .unwrap();
    assert_eq!(legacy.action, Action::SourceAdd);
    let legacy =
        Jingle::from_xml(r#"<jingle xmlns="urn:xmpp:jingle:1" action="removesource" sid="s1"/>"#)
            .unwrap();
    assert_eq!(legacy.action, Action::SourceRemove);
}

#[test]
fn initial_last_n_in_the_video_content_is_kept() {
    let text = r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s1">
        <content creator="responder" name="video" senders="both">
          <initial-last-n xmlns="jitsi:colibri2" value="5"/>
          <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video"/>
        </content></jingle>"#;
    let j = Jingle::from_xml(text).unwrap();
    assert_eq!(j.initial_last_n(), Some(5));
    assert_eq!(j.content("video").unwrap().initial_last_n, Some(5));
    assert_eq!(Jingle::from_xml(&j.to_xml()).unwrap(), j);
}

#[test]
fn firefox_rid_sources_and_unknown_children_are_skipped() {
    let text = r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s1">
        <content creator="responder" name="video" senders="rejected">
          <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">
            <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="11"/>
            <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" rid="0"/>
            <rid-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="SIM"><source rid="0"/></rid-group>
            <rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="nack"/>
          </description>
        </content>
        <traceparent xmlns="http://jitsi.org/tracing" trace-id="1"/></jingle>"#;
    let j = Jingle::from_xml(text).unwrap();
    let c = &j.contents[0];
    assert_eq!(c.senders, Some(Senders::Rejected));
    let d = c.description.as_ref().unwrap();
    assert_eq!(d.sources.len(), 1);
    assert_eq!(d.rtcp_fb.len(), 1, "description-level rtcp-fb is kept");
    assert_eq!(Jingle::from_xml(&j.to_xml()).unwrap(), j);
}

fn err(text: &str) -> ParseError {
    Jingle::from_xml(text).expect_err("must be refused")
}

#[test]
fn missing_required_attributes_are_named() {
    assert_eq!(
        err(r#"<jingle xmlns="urn:xmpp:jingle:1" sid="s1"/>"#),
        ParseError::MissingAttribute {
            element: "jingle",
            attribute: "action"
        }
    );
    assert_eq!(
        err(r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept"/>"#),
        ParseError::MissingAttribute {
            element: "jingle",
            attribute: "sid"
        }
    );
    assert_eq!(
        err(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s1"><content creator="initiator"/></jingle>"#
        ),
        ParseError::MissingAttribute {
            element: "content",
            attribute: "name"
        }
    );
    assert_eq!(
        err(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s1"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1"/></content></jingle>"#
        ),
        ParseError::MissingAttribute {
            element: "description",
            attribute: "media"
        }
    );
    assert_eq!(
        err(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s1"><bridge-session xmlns="http://jitsi.org/protocol/focus" restart="true"/></jingle>"#
        ),
        ParseError::MissingAttribute {
            element: "bridge-session",
            attribute: "id"
        }
    );
    assert_eq!(
        err(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s1"><reason><text>bye</text></reason></jingle>"#
        ),
        ParseError::MissingChild {
            element: "reason",
            child: "condition"
        }
    );
}

#[test]
fn bad_values_are_named() {
    let bad_ssrc = SOURCE_ADD.replace(r#"ssrc="2640913357">"#, r#"ssrc="abc">"#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_ssrc)).unwrap_err(),
        ParseError::BadAttribute { element: "source", attribute: "ssrc", ref value, .. } if value == "abc"
    ));
    let big_ssrc = SOURCE_ADD.replace(
        r#"<source ssrc="1188237406"/>"#,
        r#"<source ssrc="4294967296"/>"#,
    );
    assert!(matches!(
        Jingle::from_element(&payload(&big_ssrc)).unwrap_err(),
        ParseError::BadAttribute {
            element: "source",
            attribute: "ssrc",
            ..
        }
    ));
    let bad_port = TRANSPORT_INFO.replace(r#"port="46243""#, r#"port="65536""#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_port)).unwrap_err(),
        ParseError::BadAttribute {
            element: "candidate",
            attribute: "port",
            ..
        }
    ));
    let bad_media = SOURCE_ADD.replace(r#"media="video""#, r#"media="text""#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_media)).unwrap_err(),
        ParseError::BadAttribute {
            element: "description",
            attribute: "media",
            ..
        }
    ));
    let bad_senders = SESSION_ACCEPT.replace(r#"senders="both""#, r#"senders="everyone""#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_senders)).unwrap_err(),
        ParseError::BadAttribute {
            element: "content",
            attribute: "senders",
            ..
        }
    ));
    let bad_creator = SESSION_ACCEPT.replace(r#"creator="responder""#, r#"creator="me""#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_creator)).unwrap_err(),
        ParseError::BadAttribute {
            element: "content",
            attribute: "creator",
            ..
        }
    ));
    let bad_restart = SESSION_TERMINATE.replace(r#"restart="true""#, r#"restart="please""#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_restart)).unwrap_err(),
        ParseError::BadAttribute {
            element: "bridge-session",
            attribute: "restart",
            ..
        }
    ));
    let bad_last_n = r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s1"><content name="video"><initial-last-n xmlns="jitsi:colibri2" value="-1"/></content></jingle>"#;
    assert!(matches!(
        err(bad_last_n),
        ParseError::BadAttribute {
            element: "initial-last-n",
            attribute: "value",
            ..
        }
    ));
    let bad_pt = SESSION_INITIATE.replace(r#"id="111""#, r#"id="256""#);
    assert!(matches!(
        Jingle::from_element(&payload(&bad_pt)).unwrap_err(),
        ParseError::BadAttribute {
            element: "payload-type",
            attribute: "id",
            ..
        }
    ));
}

#[test]
fn wrong_namespace_and_wrong_element_are_refused() {
    assert!(matches!(
        err(r#"<jingle xmlns="urn:xmpp:jingle:0" action="session-accept" sid="s1"/>"#),
        ParseError::WrongElement { expected: "jingle", ref found_ns, .. } if found_ns == "urn:xmpp:jingle:0"
    ));
    assert!(matches!(
        err(r#"<conference xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s1"/>"#),
        ParseError::WrongElement {
            expected: "jingle",
            ..
        }
    ));
    // A content in another namespace is not ours: ignored, not misread.
    let j = Jingle::from_xml(r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s1"><content xmlns="urn:example" /></jingle>"#).unwrap();
    assert!(j.contents.is_empty());
}

#[test]
fn malformed_and_oversized_xml_are_refused() {
    assert!(matches!(
        err(r#"<jingle xmlns="urn:xmpp:jingle:1" action="x" sid="s1">"#),
        ParseError::Xml(_)
    ));
    let huge = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s1"><json-message xmlns="http://jitsi.org/jitmeet">{}</json-message></jingle>"#,
        "x".repeat(MAX_STANZA_BYTES)
    );
    assert!(matches!(
        err(&huge),
        ParseError::Oversized { what: "stanza", .. }
    ));
    let many: String = (0..600)
        .map(|i| format!(r#"<content name="c{i}"/>"#))
        .collect();
    let text = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s1">{many}</jingle>"#
    );
    assert!(matches!(
        err(&text),
        ParseError::TooMany {
            element: "content",
            ..
        }
    ));
}

#[test]
fn mutated_samples_never_panic() {
    let mut parsed = 0;
    for sample in ALL_SAMPLES {
        for m in mutations(sample, 200) {
            if let Ok(el) = signaling::xml::parse_element(&m)
                && let Some(p) = el.children().next()
                && let Ok(j) = Jingle::from_element(p)
            {
                parsed += 1;
                // Whatever parsed must serialise and parse back to the same value.
                assert_eq!(Jingle::from_xml(&j.to_xml()).as_ref(), Ok(&j));
                let _ = ConferenceSourceMap::from_jingle(&j, Some("4a7c9e1f"));
            }
        }
    }
    assert!(
        parsed > 50,
        "mutations should often stay parsable, got {parsed}"
    );
}
