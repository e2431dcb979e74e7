//! Moderator mute, A/V moderation, and the Jibri / Jigasi refusals, driven through the core.

use super::*;
use crate::core::moderation::{NS_AUDIO, NS_VIDEO};

const A: &str = "aaaa1111";
const B: &str = "bbbb2222";
const C: &str = "cccc3333";

/// A conference of `A` (a moderator), `B` and `C`, every session accepted.
fn moderated() -> Harness {
    moderated_with(|_| {})
}

fn moderated_with(tweak: impl FnOnce(&mut CoreConfig)) -> Harness {
    let (mut h, inits) = Harness::conference_with(ROOM, &[A, B, C], tweak);
    for (i, n) in [A, B, C].iter().enumerate() {
        let sid = sid_of(&inits, n);
        let accept = session_accept(n, &sid, 1000 * (i as u32 + 1));
        assert!(h.jingle_from(ROOM, n, &accept).is_ok());
    }
    h.bridge_updates();
    h.jingles("source-add");
    make_moderator(&mut h, A);
    h.take();
    h
}

fn make_moderator(h: &mut Harness, nick: &str) {
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" from="{ROOM}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{nick}@meet.example/res"/></x></presence>"#
    ));
}

fn mute_iq(ns: &str, target: &str, mute: bool) -> String {
    format!(r#"<mute xmlns="{ns}" jid="{ROOM}/{target}">{mute}</mute>"#)
}

/// `from` asks the focus to (un)mute `target`; returns the answer.
fn mute(
    h: &mut Harness,
    from: &str,
    ns: &str,
    target: &str,
    on: bool,
) -> Result<Option<Element>, StanzaError> {
    let id = h.iq(
        Link::Client,
        &format!("{ROOM}/{from}"),
        IqKind::Set,
        &mute_iq(ns, target, on),
    );
    h.reply_to(&id)
}

/// Mute notices sent to participants: (nick, namespace, actor).
fn notices(h: &mut Harness) -> Vec<(String, String, Option<String>)> {
    h.requests(|r| r.payload.name() == "mute")
        .into_iter()
        .map(|r| {
            assert_eq!(r.kind, IqKind::Set);
            assert_eq!(r.payload.text(), "true");
            (
                r.to.rsplit('/').next().unwrap().to_owned(),
                r.payload.ns(),
                r.payload.attr("actor").map(str::to_owned),
            )
        })
        .collect()
}

/// COLIBRI2 force-mutes sent to the bridge: (endpoint, audio, video).
fn force_mutes(h: &mut Harness) -> Vec<(String, bool, bool)> {
    h.bridge_updates()
        .into_iter()
        .filter_map(|(_, p)| {
            let ep = p.get_child("endpoint", ns::COLIBRI2)?;
            let fm = ep.get_child("force-mute", ns::COLIBRI2)?;
            Some((
                ep.attr("id")?.to_owned(),
                fm.attr("audio") == Some("true"),
                fm.attr("video") == Some("true"),
            ))
        })
        .collect()
}

#[test]
fn a_moderator_mutes_a_participant_on_the_client_and_on_the_bridge() {
    let mut h = moderated();
    assert!(mute(&mut h, A, NS_AUDIO, B, true).unwrap().is_none());
    assert_eq!(
        notices(&mut h),
        vec![(
            B.to_owned(),
            NS_AUDIO.to_owned(),
            Some(format!("{ROOM}/{A}"))
        )]
    );
    assert_eq!(force_mutes(&mut h), vec![(B.to_owned(), true, false)]);
    // Muting again changes nothing on the bridge (the client is told again).
    assert!(mute(&mut h, A, NS_AUDIO, B, true).is_ok());
    assert_eq!(notices(&mut h).len(), 1);
    assert!(force_mutes(&mut h).is_empty());
    // Video: the camera of a 2021 client (no desktop source) is its only video.
    assert!(mute(&mut h, A, NS_VIDEO, B, true).is_ok());
    assert_eq!(notices(&mut h)[0].1, NS_VIDEO);
    assert_eq!(force_mutes(&mut h), vec![(B.to_owned(), true, true)]);
}

#[test]
fn non_moderators_get_not_allowed_and_nobody_unmutes_another() {
    let mut h = moderated();
    let r = mute(&mut h, B, NS_AUDIO, A, true);
    assert_eq!(condition(&r), Some(Condition::NotAllowed));
    assert!(notices(&mut h).is_empty());
    assert!(force_mutes(&mut h).is_empty());
    // A moderator may not unmute someone else either.
    assert!(mute(&mut h, A, NS_AUDIO, B, true).is_ok());
    h.take();
    let r = mute(&mut h, A, NS_AUDIO, B, false);
    assert_eq!(condition(&r), Some(Condition::NotAllowed));
    // Anyone may mute itself.
    assert!(mute(&mut h, C, NS_AUDIO, C, true).is_ok());
    assert!(notices(&mut h).is_empty(), "no notice for oneself");
    assert_eq!(force_mutes(&mut h), vec![(C.to_owned(), true, false)]);
}

#[test]
fn self_unmute_lifts_the_force_mute() {
    let mut h = moderated();
    assert!(mute(&mut h, A, NS_AUDIO, B, true).is_ok());
    h.take();
    // What lib-jitsi-meet sends when the muted user unmutes.
    assert!(mute(&mut h, B, NS_AUDIO, B, false).is_ok());
    assert!(notices(&mut h).is_empty());
    assert_eq!(force_mutes(&mut h), vec![(B.to_owned(), false, false)]);
}

#[test]
fn bad_and_stray_mute_requests() {
    let mut h = moderated();
    let id = h.iq(
        Link::Client,
        &format!("{ROOM}/{A}"),
        IqKind::Set,
        r#"<mute xmlns="http://jitsi.org/jitmeet/audio">true</mute>"#,
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::BadRequest));
    // An unknown target, a target in another room, a muter who is not a participant.
    let r = mute(&mut h, A, NS_AUDIO, "dddd4444", true);
    assert_eq!(condition(&r), Some(Condition::InternalServerError));
    let id = h.iq(
        Link::Client,
        &format!("{ROOM}/{A}"),
        IqKind::Set,
        &format!(r#"<mute xmlns="{NS_AUDIO}" jid="other@conference.meet.example/{B}">true</mute>"#),
    );
    assert_eq!(
        condition(&h.reply_to(&id)),
        Some(Condition::InternalServerError)
    );
    let r = mute(&mut h, "eeee5555", NS_AUDIO, B, true);
    assert_eq!(condition(&r), Some(Condition::InternalServerError));
    // From outside any conference.
    let id = h.iq(
        Link::Client,
        "nowhere@conference.meet.example/x",
        IqKind::Set,
        &mute_iq(NS_AUDIO, B, true),
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::ItemNotFound));
    assert!(force_mutes(&mut h).is_empty());
}

#[test]
fn a_reinvited_participant_stays_force_muted() {
    let mut h = moderated();
    assert!(mute(&mut h, A, NS_AUDIO, B, true).is_ok());
    h.take();
    // The bridge fails: everyone moves to another bridge, B's allocation carries the force-mute.
    h.add_bridge("jvb2", 0.2);
    h.remove_bridge("jvb1");
    let allocs: Vec<(String, bool)> = h
        .out
        .iter()
        .filter_map(|o| match o {
            Output::Request { payload, .. } if payload.is("conference-modify", ns::COLIBRI2) => {
                let ep = payload.get_child("endpoint", ns::COLIBRI2)?;
                let fm = ep
                    .get_child("force-mute", ns::COLIBRI2)
                    .is_some_and(|f| f.attr("audio") == Some("true"));
                Some((ep.attr("id")?.to_owned(), fm))
            }
            _ => None,
        })
        .collect();
    assert_eq!(allocs.len(), 3, "{allocs:?}");
    assert!(allocs.iter().all(|(ep, fm)| *fm == (ep == B)), "{allocs:?}");
}

fn av_message(h: &mut Harness, from: &str, json: &str) {
    h.input(Input::Message {
        link: Link::Client,
        message: el(&format!(
            r#"<message xmlns="jabber:client" from="{from}" to="{FOCUS}"><json-message xmlns="http://jitsi.org/jitmeet">{json}</json-message></message>"#
        )),
    });
}

fn with_av_component() -> Harness {
    moderated_with(|c| {
        c.av_moderation_component = Some("avmoderation.meet.example".into());
    })
}

#[test]
fn enabling_av_moderation_mutes_everyone_but_its_moderator_who_may_not_unmute() {
    let mut h = with_av_component();
    // Only the av_moderation component is trusted.
    av_message(
        &mut h,
        "mallory@meet.example/x",
        &format!(
            r#"{{"type":"av_moderation","room":"{ROOM}","enabled":true,"mediaType":"audio","actor":"{ROOM}/{A}"}}"#
        ),
    );
    assert!(notices(&mut h).is_empty());
    av_message(
        &mut h,
        "avmoderation.meet.example",
        &format!(
            r#"{{"type":"av_moderation","room":"{ROOM}","enabled":true,"mediaType":"audio","actor":"{ROOM}/{A}"}}"#
        ),
    );
    let mut told: Vec<String> = notices(&mut h).into_iter().map(|n| n.0).collect();
    told.sort();
    assert_eq!(told, vec![B.to_owned(), C.to_owned()]);
    let mut muted = force_mutes(&mut h);
    muted.sort();
    assert_eq!(
        muted,
        vec![(B.to_owned(), true, false), (C.to_owned(), true, false)]
    );
    // B may not unmute itself; the moderator may unmute (and mute) itself.
    let r = mute(&mut h, B, NS_AUDIO, B, false);
    assert_eq!(condition(&r), Some(Condition::NotAllowed));
    assert!(mute(&mut h, A, NS_AUDIO, A, true).is_ok());
    assert!(mute(&mut h, A, NS_AUDIO, A, false).is_ok());
    h.take();
    // Approved (whitelisted) by a moderator, B may unmute; C still may not.
    av_message(
        &mut h,
        "avmoderation.meet.example",
        &format!(
            r#"{{"type":"av_moderation","room":"{ROOM}","whitelists":{{"audio":["{ROOM}/{B}"]}}}}"#
        ),
    );
    assert!(mute(&mut h, B, NS_AUDIO, B, false).is_ok());
    assert_eq!(force_mutes(&mut h), vec![(B.to_owned(), false, false)]);
    let r = mute(&mut h, C, NS_AUDIO, C, false);
    assert_eq!(condition(&r), Some(Condition::NotAllowed));
    // Video moderation does not touch audio; disabling moderation lets C unmute.
    av_message(
        &mut h,
        "avmoderation.meet.example",
        &format!(
            r#"{{"type":"av_moderation","room":"{ROOM}","enabled":false,"mediaType":"audio","actor":"{ROOM}/{A}"}}"#
        ),
    );
    assert!(mute(&mut h, C, NS_AUDIO, C, false).is_ok());
}

#[test]
fn malformed_av_moderation_messages_are_ignored() {
    let mut h = with_av_component();
    for json in [
        "not json",
        r#"{"type":"av_moderation","enabled":true,"mediaType":"audio"}"#,
        r#"{"type":"av_moderation","room":"nowhere@conference.meet.example","enabled":true,"mediaType":"audio"}"#,
        r#"{"type":"av_moderation","room":"ROOM","enabled":true,"mediaType":"smell"}"#,
    ] {
        av_message(
            &mut h,
            "avmoderation.meet.example",
            &json.replace("ROOM", ROOM),
        );
    }
    assert!(notices(&mut h).is_empty());
    assert!(force_mutes(&mut h).is_empty());
    assert!(mute(&mut h, B, NS_AUDIO, B, false).is_ok());
}

fn room_iq(h: &mut Harness, from: &str, payload: &str) -> Result<Option<Element>, StanzaError> {
    let id = h.iq(
        Link::Client,
        &format!("{ROOM}/{from}"),
        IqKind::Set,
        payload,
    );
    h.reply_to(&id)
}

#[test]
fn recording_streaming_and_dial_out_are_refused_as_unavailable() {
    let mut h = moderated();
    let record = r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="file" app_data="{}"/>"#;
    let r = room_iq(&mut h, A, record);
    assert_eq!(condition(&r), Some(Condition::ServiceUnavailable));
    let stream = r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="stream" streamid="k-e-y"/>"#;
    let r = room_iq(&mut h, A, stream);
    assert_eq!(condition(&r), Some(Condition::ServiceUnavailable));
    let r = room_iq(&mut h, B, record);
    assert_eq!(condition(&r), Some(Condition::NotAllowed));
    let dial = format!(
        r#"<dial xmlns="urn:xmpp:rayo:1" to="+15551234" from="fromnumber"><header name="JvbRoomName" value="{ROOM}"/></dial>"#
    );
    let r = room_iq(&mut h, A, &dial);
    assert_eq!(condition(&r), Some(Condition::ServiceUnavailable));
    let r = room_iq(&mut h, B, &dial);
    assert_eq!(condition(&r), Some(Condition::Forbidden));
    // Nothing else happened: no bridge or client requests.
    assert!(h.requests(|_| true).is_empty());
}

#[test]
fn moderator_checks_can_be_turned_off() {
    let (mut h, _) = Harness::conference_with(ROOM, &[A, B], |c| {
        c.conference.enable_moderator_checks = false;
    });
    h.take();
    let record =
        r#"<jibri xmlns="http://jitsi.org/protocol/jibri" action="start" recording_mode="file"/>"#;
    let r = room_iq(&mut h, B, record);
    assert_eq!(condition(&r), Some(Condition::ServiceUnavailable));
}
