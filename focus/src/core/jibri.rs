//! Recording, live streaming, dial-out and transcription: requests for Jibri and Jigasi, which this
//! deployment does not run. The focus answers them the way Jicofo answers when no instance is
//! available, so the client shows "unavailable" instead of waiting (jicofo
//! `jicofo/src/main/kotlin/org/jitsi/jicofo/jibri/{BaseJibri,JibriRecorder}.kt`,
//! `xmpp/JigasiIqHandler.kt`):
//!
//! - `<jibri xmlns='http://jitsi.org/protocol/jibri' action='start' recording_mode='file|stream'…>`
//!   (recording, live streaming, SIP video gateway): `service-unavailable` ("no Jibris available"),
//!   which lib-jitsi-meet's `JibriSession` stores as the session error `service-unavailable` and the
//!   Jitsi Meet app shows as "recording/live streaming unavailable". A malformed start is
//!   `bad-request`, a stop `item-not-found` (no such session), an unknown action `bad-request`.
//! - `<dial xmlns='urn:xmpp:rayo:1' to='…'>` (dial-out, and transcription through the
//!   `jitsi_meet_transcribe` destination): `service-unavailable`; a `JvbRoomName` header naming another
//!   room is `forbidden`.
//! - With moderator checks on (Jicofo's default), a non-moderator gets `not-allowed` for Jibri and
//!   `forbidden` for dial requests, someone not in the room `forbidden`, before anything else.

use minidom::Element;

use super::stanza::{Condition, StanzaError};

pub const NS_JIBRI: &str = "http://jitsi.org/protocol/jibri";
pub const NS_RAYO: &str = "urn:xmpp:rayo:1";

/// Who sent the request: `None` = not a member of the room, `Some(is moderator)`.
pub type Requester = Option<bool>;

/// The answer to a Jibri request from a client of the conference.
pub fn answer_jibri(
    request: &Element,
    requester: Requester,
    moderator_checks: bool,
) -> StanzaError {
    if moderator_checks {
        match requester {
            None => return StanzaError::new(Condition::Forbidden, "not a member of the room"),
            Some(false) => {
                return StanzaError::new(Condition::NotAllowed, "only moderators may record");
            }
            Some(true) => {}
        }
    }
    let attr = |name| request.attr(name).filter(|v| !v.trim().is_empty());
    match request.attr("action") {
        Some("start") => {
            let stream_id = attr("streamid");
            let sip = attr("sip_address");
            let file = request.attr("recording_mode") == Some("file");
            if sip.is_none() && stream_id.is_none() && !file {
                StanzaError::new(Condition::BadRequest, "Stream ID is empty or undefined")
            } else if stream_id.is_some() && file {
                StanzaError::new(
                    Condition::BadRequest,
                    "Stream ID is provided for a FILE recording.",
                )
            } else {
                StanzaError::new(Condition::ServiceUnavailable, "no Jibris available")
            }
        }
        Some("stop") => StanzaError::new(Condition::ItemNotFound, "Unknown session"),
        other => StanzaError::new(
            Condition::BadRequest,
            format!("undefined action {}", other.unwrap_or("(none)")),
        ),
    }
}

/// The answer to a Rayo dial request from a client of the conference `room`.
pub fn answer_dial(
    request: &Element,
    room: &str,
    requester: Requester,
    moderator_checks: bool,
) -> StanzaError {
    if moderator_checks && requester != Some(true) {
        return StanzaError::new(Condition::Forbidden, "only moderators may dial out");
    }
    let room_header = request
        .children()
        .filter(|c| c.is("header", NS_RAYO))
        .find(|c| c.attr("name") == Some("JvbRoomName"))
        .and_then(|c| c.attr("value"));
    if room_header.is_some_and(|r| !r.eq_ignore_ascii_case(room)) {
        return StanzaError::new(Condition::Forbidden, "JvbRoomName names another room");
    }
    StanzaError::new(
        Condition::ServiceUnavailable,
        "no Jigasi instances available (dial-out and transcription are not supported)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    #[test]
    fn recording_and_streaming_are_unavailable_for_moderators() {
        let file = el(
            r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="file" app_data="{}"/>"#,
        );
        let e = answer_jibri(&file, Some(true), true);
        assert_eq!(e.condition, Condition::ServiceUnavailable);
        // The client reads the first child of <error> as the session error.
        let x = e.to_element();
        assert_eq!(x.children().next().unwrap().name(), "service-unavailable");

        let stream = el(
            r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="stream" streamid="abcd-efgh"/>"#,
        );
        assert_eq!(
            answer_jibri(&stream, Some(true), true).condition,
            Condition::ServiceUnavailable
        );
        let no_key = el(
            r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="stream"/>"#,
        );
        assert_eq!(
            answer_jibri(&no_key, Some(true), true).condition,
            Condition::BadRequest
        );
        let stop = el(r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="stop"/>"#);
        assert_eq!(
            answer_jibri(&stop, Some(true), true).condition,
            Condition::ItemNotFound
        );
        let odd = el(r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="pause"/>"#);
        assert_eq!(
            answer_jibri(&odd, Some(true), true).condition,
            Condition::BadRequest
        );
    }

    #[test]
    fn moderator_checks_come_first() {
        let file = el(
            r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="file"/>"#,
        );
        assert_eq!(
            answer_jibri(&file, Some(false), true).condition,
            Condition::NotAllowed
        );
        assert_eq!(
            answer_jibri(&file, None, true).condition,
            Condition::Forbidden
        );
        assert_eq!(
            answer_jibri(&file, Some(false), false).condition,
            Condition::ServiceUnavailable
        );
        let dial = el(
            r#"<dial xmlns="urn:xmpp:rayo:1" to="+1555" from="fromnumber"><header name="JvbRoomName" value="r@muc"/></dial>"#,
        );
        assert_eq!(
            answer_dial(&dial, "r@muc", Some(false), true).condition,
            Condition::Forbidden
        );
    }

    #[test]
    fn dial_out_and_transcription_are_unavailable() {
        let dial = el(
            r#"<dial xmlns="urn:xmpp:rayo:1" to="jitsi_meet_transcribe" from="fromnumber"><header name="JvbRoomName" value="r@muc"/></dial>"#,
        );
        assert_eq!(
            answer_dial(&dial, "r@muc", Some(true), true).condition,
            Condition::ServiceUnavailable
        );
        assert_eq!(
            answer_dial(&dial, "other@muc", Some(true), true).condition,
            Condition::Forbidden
        );
    }
}
