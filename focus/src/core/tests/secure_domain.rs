//! Secure domain through the core: who may create a room, the answers lib-jitsi-meet reads, and owners.

use super::*;
use crate::core::auth::{AuthConfig, AuthKind};
use signaling::focus_iq::ConferenceResponse;

const HOST: &str = "alice@meet.example/tab1";
const GUEST: &str = "x7y8z9@guest.meet.example/tab2";
const PROXY: &str = "focus.meet.example";

fn secure() -> Harness {
    Harness::with(|c| {
        c.auth = Some(AuthConfig::new(AuthKind::Xmpp, "meet.example"));
        c.client_proxy = Some(PROXY.into());
    })
}

fn request(h: &mut Harness, link: Link, from: &str, attrs: &str) -> String {
    h.iq(
        link,
        from,
        IqKind::Set,
        &format!(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM}" {attrs}/>"#),
    )
}

/// The focus joins and configures `room`, which it is creating.
fn finish_join_of(h: &mut Harness, room: &str) {
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" from="{room}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{FOCUS}"/><status code="110"/><status code="201"/></x></presence>"#
    ));
    h.answer_room_config(room);
}

fn finish_join(h: &mut Harness) {
    finish_join_of(h, ROOM);
}

/// Whether the focus has started joining `room`.
fn joins(h: &Harness, room: &str) -> bool {
    h.out.iter().any(|o| {
        matches!(o, Output::Presence { presence, .. }
            if presence.attr("to") == Some(&format!("{room}/focus")))
    })
}

fn joins_room(h: &Harness) -> bool {
    joins(h, ROOM)
}

fn member(h: &mut Harness, nick: &str, jid: &str) {
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" from="{ROOM}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="{jid}"/></x></presence>"#
    ));
}

fn owner_grants(h: &mut Harness) -> Vec<String> {
    h.requests(|r| r.payload.is("query", muc::NS_MUC_ADMIN))
        .into_iter()
        .map(|r| {
            let item = r.payload.children().next().unwrap();
            assert_eq!(item.attr("affiliation"), Some("owner"));
            item.attr("jid").unwrap().to_owned()
        })
        .collect()
}

/// The host creates the room; returns its session id.
fn host_creates_room(h: &mut Harness) -> String {
    let id = request(h, Link::Component, HOST, r#"machine-uid="host-machine""#);
    assert!(
        joins_room(h),
        "an authenticated user makes the focus create the room"
    );
    finish_join(h);
    let answer = h.reply_to(&id).expect("result").expect("payload");
    let r = ConferenceResponse::from_element(&answer).unwrap();
    assert!(r.ready);
    assert_eq!(r.bool_property("authentication"), Some(true));
    assert_eq!(r.bool_property("externalAuth"), Some(false));
    assert_eq!(r.identity.as_deref(), Some("alice@meet.example"));
    r.session_id
        .expect("a session id for the authenticated user")
}

#[test]
fn a_guest_cannot_create_a_room_and_joins_once_the_host_did() {
    let mut h = secure();
    let id = request(
        &mut h,
        Link::Component,
        GUEST,
        r#"machine-uid="guest-machine""#,
    );
    // not-authorized: lib-jitsi-meet's AUTHENTICATION_REQUIRED, the app waits for the host.
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAuthorized));
    assert!(!joins_room(&h));
    assert_eq!(h.focus.stats(h.now).conferences, 0);

    host_creates_room(&mut h);
    let id = request(
        &mut h,
        Link::Component,
        GUEST,
        r#"machine-uid="guest-machine""#,
    );
    let answer = h.reply_to(&id).unwrap().unwrap();
    let r = ConferenceResponse::from_element(&answer).unwrap();
    assert!(r.ready);
    assert_eq!(r.bool_property("authentication"), Some(true));
    assert_eq!(r.session_id, None);
    assert_eq!(r.identity, None);
}

#[test]
fn authenticated_members_are_owners_and_guests_are_not() {
    let mut h = secure();
    host_creates_room(&mut h);
    h.take();
    member(&mut h, "aaaa1111", HOST);
    assert_eq!(owner_grants(&mut h), vec!["alice@meet.example".to_owned()]);
    member(&mut h, "bbbb2222", GUEST);
    assert!(owner_grants(&mut h).is_empty(), "no auto-owner for guests");
    // The host leaves: the guest is not made owner.
    h.leave_member(ROOM, "aaaa1111");
    assert!(owner_grants(&mut h).is_empty());
}

#[test]
fn a_guest_of_the_same_machine_becomes_a_host_with_the_session() {
    let mut h = secure();
    let sid = host_creates_room(&mut h);
    member(&mut h, "bbbb2222", GUEST);
    h.take();
    // Logged in on the side (lib-jitsi-meet's authenticateAndUpgradeRole): the guest connection asks
    // again, through client_proxy, with the session of its machine.
    let proxied = format!("{PROXY}/{GUEST}");
    let id = request(
        &mut h,
        Link::Client,
        &proxied,
        &format!(r#"machine-uid="host-machine" session-id="{sid}""#),
    );
    let replies = h.replies();
    let (to, _, r) = replies.iter().find(|(_, i, _)| *i == id).unwrap();
    assert_eq!(to, &proxied, "answered to the proxied address");
    let r = ConferenceResponse::from_element(r.as_ref().unwrap().as_ref().unwrap()).unwrap();
    assert_eq!(r.identity.as_deref(), Some("alice@meet.example"));
    assert_eq!(
        owner_grants(&mut h),
        vec!["x7y8z9@guest.meet.example".to_owned()]
    );
    // Another machine cannot use the session; an unknown one is invalid.
    let id = request(
        &mut h,
        Link::Component,
        GUEST,
        &format!(r#"machine-uid="other" session-id="{sid}""#),
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAcceptable));
    let id = request(
        &mut h,
        Link::Component,
        GUEST,
        r#"machine-uid="guest-machine" session-id="nope""#,
    );
    let e = h.reply_to(&id).unwrap_err();
    assert_eq!(e.condition, Condition::NotAcceptable);
    assert!(e.to_element().has_child("session-invalid", ns::FOCUS));
}

#[test]
fn client_proxy_requests_are_judged_by_the_original_sender() {
    let mut h = secure();
    let id = request(
        &mut h,
        Link::Client,
        &format!("{PROXY}/{GUEST}"),
        r#"machine-uid="g""#,
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAuthorized));
    let id = request(
        &mut h,
        Link::Client,
        &format!("{PROXY}/{HOST}"),
        r#"machine-uid="h""#,
    );
    assert!(joins_room(&h));
    finish_join(&mut h);
    let r = h.reply_to(&id).unwrap().unwrap();
    assert_eq!(r.attr("identity"), Some("alice@meet.example"));
}

#[test]
fn without_a_secure_domain_anyone_creates_rooms_and_auto_owner_applies() {
    let mut h = Harness::new();
    let id = request(&mut h, Link::Component, GUEST, "");
    assert!(joins_room(&h));
    finish_join(&mut h);
    let r = ConferenceResponse::from_element(&h.reply_to(&id).unwrap().unwrap()).unwrap();
    assert_eq!(r.bool_property("authentication"), Some(false));
    member(&mut h, "bbbb2222", GUEST);
    assert_eq!(
        owner_grants(&mut h),
        vec!["x7y8z9@guest.meet.example".to_owned()]
    );
}

#[test]
fn login_url_and_logout_requests() {
    let mut h = secure();
    let sid = host_creates_room(&mut h);
    let id = h.iq(
        Link::Component,
        HOST,
        IqKind::Get,
        &format!(
            r#"<login-url xmlns="http://jitsi.org/protocol/focus" room="{ROOM}" machine-uid="host-machine"/>"#
        ),
    );
    let url = h.reply_to(&id).unwrap().unwrap();
    assert_eq!(url.attr("url"), Some("./room1?login=true"));
    let logout = format!(r#"<logout xmlns="http://jitsi.org/protocol/focus" session-id="{sid}"/>"#);
    let id = h.iq(Link::Component, HOST, IqKind::Set, &logout);
    assert!(h.reply_to(&id).is_ok());
    let id = h.iq(Link::Component, HOST, IqKind::Set, &logout);
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAcceptable));
}

#[test]
fn sessions_end_after_their_lifetime() {
    let mut h = Harness::with(|c| {
        let mut a = AuthConfig::new(AuthKind::Xmpp, "meet.example");
        a.lifetime = Duration::from_secs(60);
        c.auth = Some(a);
    });
    let sid = host_creates_room(&mut h);
    member(&mut h, "aaaa1111", HOST);
    h.advance(Duration::from_secs(61));
    h.take();
    let id = request(
        &mut h,
        Link::Component,
        HOST,
        &format!(r#"machine-uid="host-machine" session-id="{sid}""#),
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAcceptable));
}

/// `POST /conference-request/v1` comes in as [`Link::Rest`] from the shell's `"http"`: there is no JID
/// to trust, so only a session id authenticates it, and it never rebinds the session.
#[test]
fn http_requests_are_authenticated_by_a_session_id_only() {
    let mut h = secure();
    // Without a session: a guest, whatever the `from` says (the shell's sender, or a JID-like one).
    for from in ["http", HOST] {
        let id = request(&mut h, Link::Rest, from, r#"machine-uid="host-machine""#);
        assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAuthorized));
        assert!(!joins_room(&h), "{from}");
    }
    assert_eq!(h.focus.auth.session_count(), 0);

    // The host's XMPP session id authenticates its HTTP request for a room nobody created yet.
    let sid = host_creates_room(&mut h);
    const ROOM2: &str = "room2@conference.meet.example";
    let id = h.iq(
        Link::Rest,
        "http",
        IqKind::Set,
        &format!(
            r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM2}" machine-uid="host-machine" session-id="{sid}"/>"#
        ),
    );
    assert!(
        joins(&h, ROOM2),
        "a valid session may create the room over HTTP"
    );
    finish_join_of(&mut h, ROOM2);
    let r = ConferenceResponse::from_element(&h.reply_to(&id).unwrap().unwrap()).unwrap();
    assert!(r.ready);
    assert_eq!(r.session_id.as_deref(), Some(sid.as_str()));
    assert_eq!(r.identity.as_deref(), Some("alice@meet.example"));
    // The session still names the host's XMPP JID: the host is made owner when it joins.
    assert_eq!(h.focus.auth.identity(HOST), Some("alice@meet.example"));
    h.take();
    member(&mut h, "aaaa1111", HOST);
    assert_eq!(owner_grants(&mut h), vec!["alice@meet.example".to_owned()]);

    // A session of another machine, or an unknown one: not-acceptable (HTTP 400 invalid-session).
    let id = request(
        &mut h,
        Link::Rest,
        "http",
        &format!(r#"machine-uid="other" session-id="{sid}""#),
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAcceptable));
    let id = request(
        &mut h,
        Link::Rest,
        "http",
        r#"machine-uid="host-machine" session-id="nope""#,
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAcceptable));
    // The room exists: an HTTP guest joins it, unauthenticated.
    let id = request(&mut h, Link::Rest, "http", r#"machine-uid="g""#);
    let r = ConferenceResponse::from_element(&h.reply_to(&id).unwrap().unwrap()).unwrap();
    assert!(r.ready);
    assert_eq!((r.session_id, r.identity), (None, None));
}

/// Breakout rooms are not authenticated (Jicofo `ConferenceIqHandler`): Prosody's breakout module
/// decides who moves there, and a guest may be the first to arrive.
#[test]
fn a_guest_may_open_a_breakout_room() {
    const BREAKOUT: &str = "b1@breakout.meet.example";
    let mut h = Harness::with(|c| {
        c.auth = Some(AuthConfig::new(AuthKind::Xmpp, "meet.example"));
        c.conference_domains.push("breakout.meet.example".into());
        c.breakout_domain = Some("breakout.meet.example".into());
    });
    let id = h.iq(
        Link::Component,
        GUEST,
        IqKind::Set,
        &format!(
            r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{BREAKOUT}" machine-uid="g"/>"#
        ),
    );
    assert!(
        joins(&h, BREAKOUT),
        "the focus joins the breakout room for a guest"
    );
    finish_join_of(&mut h, BREAKOUT);
    let r = ConferenceResponse::from_element(&h.reply_to(&id).unwrap().unwrap()).unwrap();
    assert!(r.ready);
    assert_eq!(r.bool_property("authentication"), Some(true));
    assert_eq!((r.session_id, r.identity), (None, None));
    assert_eq!(h.focus.auth.session_count(), 0);
    // The main room still needs a host.
    let id = request(&mut h, Link::Component, GUEST, r#"machine-uid="g""#);
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::NotAuthorized));
}
