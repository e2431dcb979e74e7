//! The conference request over HTTP (`POST /conference-request/v1`), which the current lib-jitsi-meet
//! sends instead of the `<conference>` IQ when `conferenceRequestUrl` is configured.
//!
//! The JSON mirrors the IQ (jicofo `ConferenceRequest.kt`, lib-jitsi-meet `moderator.js`):
//! `{"room", "machineUid", "sessionId", "properties": {…}}` in, `{"room", "ready", "focusJid",
//! "sessionId", "identity", "vnode", "properties": {…}}` out (empty fields left out). The client sends
//! property values as JSON strings, numbers or booleans; they are read as strings, as Jackson does.
//! A JWT comes in `Authorization: Bearer …`.
//!
//! Errors as Jicofo answers them: `not-authorized` → 403, `not-acceptable` → 400
//! `Bad request: invalid-session`, anything else (a malformed body, an invalid or refused room) → 400
//! `Bad request: …`.

use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use signaling::focus_iq::{ConferenceRequest, ConferenceResponse, Property};

use crate::core::{Condition, StanzaError};

/// Why a request body cannot be used: answered 400 with this text after `Bad request: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// The HTTP status and body of an error, as Jicofo's `ExceptionHandler` writes them.
pub fn error_response(message: &str) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, format!("Bad request: {message}"))
}

/// Reads the JSON body; `bearer` is the `Authorization` header's token.
pub fn parse_request(body: &[u8], bearer: Option<&str>) -> Result<ConferenceRequest, BadRequest> {
    let v: Value = serde_json::from_slice(body).map_err(|e| BadRequest(e.to_string()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| BadRequest("expected a JSON object".into()))?;
    let string = |key: &str| -> Result<Option<String>, BadRequest> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(BadRequest(format!("'{key}' must be a string, not {other}"))),
        }
    };
    let room = string("room")?.ok_or_else(|| BadRequest("No 'room' specified.".into()))?;
    let room = room
        .parse::<jid::BareJid>()
        .ok()
        .filter(|r| r.node().is_some())
        .ok_or_else(|| BadRequest(format!("Invalid room name: {room}")))?;
    let mut request = ConferenceRequest::new(room);
    request.machine_uid = string("machineUid")?;
    request.session_id = string("sessionId")?;
    request.token = bearer
        .map(|b| b.strip_prefix("Bearer ").unwrap_or(b).to_owned())
        .filter(|t| !t.is_empty());
    match obj.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (name, value) in props {
                let value = match value {
                    Value::String(s) => s.clone(),
                    Value::Bool(_) | Value::Number(_) => value.to_string(),
                    Value::Null => continue,
                    other => {
                        return Err(BadRequest(format!(
                            "property '{name}' must be a string, number or boolean, not {other}"
                        )));
                    }
                };
                request.properties.push(Property::new(name.clone(), value));
            }
        }
        Some(other) => {
            return Err(BadRequest(format!(
                "'properties' must be an object, not {other}"
            )));
        }
    }
    Ok(request)
}

/// The JSON answer for the focus's `<conference>` result.
pub fn response_json(r: &ConferenceResponse) -> Value {
    let mut out = Map::new();
    out.insert("room".into(), json!(r.room.to_string()));
    out.insert("ready".into(), json!(r.ready));
    for (key, value) in [
        ("focusJid", &r.focus_jid),
        ("sessionId", &r.session_id),
        ("identity", &r.identity),
        ("vnode", &r.vnode),
    ] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            out.insert(key.into(), json!(v));
        }
    }
    let props: Map<String, Value> = r
        .properties
        .iter()
        .map(|p| (p.name.clone(), json!(p.value)))
        .collect();
    // The client reads `properties.authentication` unconditionally: always present.
    out.insert("properties".into(), Value::Object(props));
    Value::Object(out)
}

/// An IQ error from the focus as Jicofo maps it to HTTP.
pub fn stanza_error_response(e: &StanzaError) -> (StatusCode, String) {
    match e.condition {
        Condition::NotAuthorized => (StatusCode::FORBIDDEN, "Error".into()),
        Condition::NotAcceptable => error_response("invalid-session"),
        _ => error_response(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::xml::XmlElement;

    /// What lib-jitsi-meet's `_createConferenceRequest` sends (config.js with startAudioMuted: 10, no
    /// rtcstats, a session id from an earlier answer).
    const CLIENT_BODY: &str = r#"{"machineUid":"c0ffee","properties":{"startAudioMuted":10,"startVideoMuted":10,"rtcstatsEnabled":false,"visitors-version":1},"room":"myroom@muc.meet.jitsi","sessionId":"s-1"}"#;

    #[test]
    fn the_clients_json_is_read_like_the_iq() {
        let r = parse_request(CLIENT_BODY.as_bytes(), Some("Bearer eyJ.x.y")).unwrap();
        assert_eq!(r.room.to_string(), "myroom@muc.meet.jitsi");
        assert_eq!(r.machine_uid.as_deref(), Some("c0ffee"));
        assert_eq!(r.session_id.as_deref(), Some("s-1"));
        assert_eq!(r.token.as_deref(), Some("eyJ.x.y"));
        assert_eq!(r.property("startAudioMuted"), Some("10"));
        assert_eq!(r.property("rtcstatsEnabled"), Some("false"));
        assert_eq!(r.property("visitors-version"), Some("1"));
        // The same request as the IQ the 2021 client sends.
        let iq = ConferenceRequest::from_element(&r.to_element()).unwrap();
        assert_eq!(iq, r);
        // No token header, unknown fields ignored.
        let r = parse_request(br#"{"room":"a@muc.meet.jitsi","whatever":[1]}"#, None).unwrap();
        assert_eq!((r.token, r.properties.len()), (None, 0));
    }

    #[test]
    fn bad_bodies_are_400_with_jicofos_texts() {
        for (body, text) in [
            (&b"not json"[..], "expected"),
            (b"[]", "expected a JSON object"),
            (b"{}", "No 'room' specified."),
            (br#"{"room":"no-local-part"}"#, "Invalid room name"),
            (br#"{"room":"a@b@c"}"#, "Invalid room name"),
            (br#"{"room":5}"#, "'room' must be a string"),
            (
                br#"{"room":"a@muc.x","properties":[]}"#,
                "'properties' must be an object",
            ),
            (
                br#"{"room":"a@muc.x","properties":{"p":{"x":1}}}"#,
                "property 'p'",
            ),
        ] {
            let e = parse_request(body, None).unwrap_err();
            assert!(e.0.contains(text), "{body:?}: {e:?}");
            let (status, msg) = error_response(&e.0);
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(msg.starts_with("Bad request: "));
        }
    }

    #[test]
    fn the_answer_is_what_the_client_reads() {
        let mut r = ConferenceResponse::ready(
            "myroom@muc.meet.jitsi".parse().unwrap(),
            "focus@auth.meet.jitsi",
        );
        let v = response_json(&r);
        assert_eq!(
            v,
            json!({"room": "myroom@muc.meet.jitsi", "ready": true, "focusJid": "focus@auth.meet.jitsi",
                   "properties": {"authentication": "false"}})
        );
        r.ready = false;
        r.session_id = Some("s-2".into());
        let v = response_json(&r);
        assert_eq!(v["ready"], false);
        assert_eq!(v["sessionId"], "s-2");
    }

    #[test]
    fn errors_map_as_jicofo_maps_them() {
        let e = StanzaError::new(Condition::NotAuthorized, "not authorized user domain");
        assert_eq!(
            stanza_error_response(&e),
            (StatusCode::FORBIDDEN, "Error".into())
        );
        let e = StanzaError::new(Condition::NotAcceptable, "session invalid");
        assert_eq!(
            stanza_error_response(&e),
            (
                StatusCode::BAD_REQUEST,
                "Bad request: invalid-session".into()
            )
        );
        let e = StanzaError::new(
            Condition::Forbidden,
            "jvbbrewery@internal is an internal room",
        );
        let (status, body) = stanza_error_response(&e);
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.starts_with("Bad request: forbidden"), "{body}");
    }
}
