//! The focus `conference` IQ as lib-jitsi-meet (7d34d537 and newer) sends it and as our focus answers.

mod common;

use common::{mutations, payload, roundtrip};
use signaling::focus_iq::{ConferenceRequest, ConferenceResponse, Property};
use signaling::{ParseError, XmlElement};

const REQUEST_2021: &str = include_str!("samples/conference-request-2021.xml");
const REQUEST_MODERN: &str = include_str!("samples/conference-request-modern.xml");
const RESPONSE: &str = include_str!("samples/conference-response.xml");

#[test]
fn reference_client_request_roundtrips() {
    let r: ConferenceRequest = roundtrip(&payload(REQUEST_2021));
    assert_eq!(r.room.to_string(), "bluewhale42@muc.meet.jitsi");
    assert_eq!(
        r.machine_uid.as_deref(),
        Some("8e4f2a6c0b9d47e1a3c5f7092b4d6e81")
    );
    assert_eq!(r.token, None);
    assert_eq!(r.session_id, None);
    assert_eq!(r.properties.len(), 6);
    assert_eq!(r.bool_property("disableRtx"), Some(false));
    assert_eq!(r.bool_property("rtcstatsEnabled"), Some(false));
    assert_eq!(r.property("startAudioMuted"), Some("10"));
    assert_eq!(r.property("startBitrate"), Some("800"));
    assert_eq!(r.property("visitors-version"), None);
}

#[test]
fn modern_request_with_token_and_session_roundtrips() {
    let r: ConferenceRequest = roundtrip(&payload(REQUEST_MODERN));
    assert_eq!(
        r.session_id.as_deref(),
        Some("2f0c5a1e-8d3b-4c6f-a7e9-0b1d2c3e4f50")
    );
    assert!(r.token.as_deref().is_some_and(|t| t.starts_with("eyJ")));
    assert_eq!(r.property("visitors-version"), Some("1"));
    assert_eq!(r.bool_property("startAudioMuted"), Some(false));
}

#[test]
fn response_roundtrips_and_says_what_the_client_reads() {
    let r: ConferenceResponse = roundtrip(&payload(RESPONSE));
    assert!(r.ready);
    assert_eq!(r.focus_jid.as_deref(), Some("focus@auth.meet.jitsi"));
    assert_eq!(r.bool_property("authentication"), Some(false));
    assert_eq!(r.bool_property("visitors-supported"), Some(true));
    assert_eq!(r.bool_property("externalAuth"), None);
}

#[test]
fn built_response_writes_ready_and_focusjid_as_the_client_expects() {
    let room = "bluewhale42@muc.meet.jitsi".parse().unwrap();
    let mut r = ConferenceResponse::ready(room, "focus@auth.meet.jitsi");
    r.session_id = Some("s-1".into());
    r.properties.push(Property::new("sipGatewayEnabled", true));
    // The client reads these with string comparisons (`ready === 'true'`, `[value='true']`).
    let el = r.to_element();
    assert_eq!(el.attr("ready"), Some("true"));
    assert_eq!(el.attr("focusjid"), Some("focus@auth.meet.jitsi"));
    let auth = el
        .children()
        .find(|c| c.attr("name") == Some("authentication"))
        .unwrap();
    assert_eq!(auth.attr("value"), Some("false"));
    assert_eq!(ConferenceResponse::from_xml(&r.to_xml()).unwrap(), r);

    let mut not_ready = r.clone();
    not_ready.ready = false;
    assert_eq!(not_ready.to_element().attr("ready"), Some("false"));
    assert_eq!(
        ConferenceResponse::from_xml(&not_ready.to_xml()).unwrap(),
        not_ready
    );
}

#[test]
fn empty_optional_attributes_mean_absent() {
    let r = ConferenceRequest::from_xml(
        r#"<conference xmlns="http://jitsi.org/protocol/focus" room="a@muc.x" machine-uid="" token="" session-id=""/>"#,
    )
    .unwrap();
    assert_eq!((r.machine_uid, r.token, r.session_id), (None, None, None));
}

#[test]
fn malformed_requests_are_named() {
    let req = |t: &str| ConferenceRequest::from_xml(t).unwrap_err();
    assert_eq!(
        req(r#"<conference xmlns="http://jitsi.org/protocol/focus" machine-uid="m"/>"#),
        ParseError::MissingAttribute {
            element: "conference",
            attribute: "room"
        }
    );
    assert!(matches!(
        req(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="muc.meet.jitsi"/>"#),
        ParseError::BadAttribute { element: "conference", attribute: "room", ref reason, .. } if reason.contains("local part")
    ));
    assert!(matches!(
        req(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="a@b@c"/>"#),
        ParseError::BadAttribute {
            element: "conference",
            attribute: "room",
            ..
        }
    ));
    assert!(matches!(
        req(r#"<conference xmlns="http://jitsi.org/protocol/colibri" room="a@muc.x"/>"#),
        ParseError::WrongElement {
            expected: "conference",
            ..
        }
    ));
    assert_eq!(
        req(
            r#"<conference xmlns="http://jitsi.org/protocol/focus" room="a@muc.x"><property value="1"/></conference>"#
        ),
        ParseError::MissingAttribute {
            element: "property",
            attribute: "name"
        }
    );
    assert!(matches!(
        ConferenceResponse::from_xml(
            r#"<conference xmlns="http://jitsi.org/protocol/focus" room="a@muc.x" ready="maybe"/>"#
        )
        .unwrap_err(),
        ParseError::BadAttribute {
            element: "conference",
            attribute: "ready",
            ..
        }
    ));
    let huge = format!(
        r#"<conference xmlns="http://jitsi.org/protocol/focus" room="a@muc.x" token="{}"/>"#,
        "t".repeat(signaling::xml::MAX_STANZA_BYTES)
    );
    assert!(matches!(req(&huge), ParseError::Oversized { .. }));
}

#[test]
fn mutated_samples_never_panic() {
    for sample in [REQUEST_2021, REQUEST_MODERN, RESPONSE] {
        for m in mutations(sample, 400) {
            if let Ok(el) = signaling::xml::parse_element(&m)
                && let Some(p) = el.children().next()
            {
                if let Ok(r) = ConferenceRequest::from_element(p) {
                    assert_eq!(ConferenceRequest::from_xml(&r.to_xml()), Ok(r));
                }
                if let Ok(r) = ConferenceResponse::from_element(p) {
                    assert_eq!(ConferenceResponse::from_xml(&r.to_xml()), Ok(r));
                }
            }
        }
    }
}
