//! Issue 11, the focus side: requests and presences from participants (or from anybody Prosody lets
//! into a room) cannot take the focus out of the brewery, make it treat an occupant as a bridge, or
//! grow its memory without bound. Same harness as the other core tests.

use super::*;

impl Harness {
    /// The focus's own presence in `room` (re-created after a Prosody restart) and the configuration.
    fn focus_in_room(&mut self, room: &str) {
        self.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{room}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{FOCUS}"/><status code="110"/><status code="201"/></x></presence>"#
        ));
        self.answer_room_config(room);
    }
}

fn conference_iq(room: &str) -> String {
    format!(
        r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{room}" machine-uid="m1"/>"#
    )
}

fn presences_to(out: &[Output], to: &str) -> usize {
    out.iter()
        .filter(
            |o| matches!(o, Output::Presence { presence, .. } if presence.attr("to") == Some(to)),
        )
        .count()
}

fn own_brewery_presence(kind: &str) -> String {
    format!(
        r#"<presence xmlns="jabber:client" from="{BREWERY}/focus"{kind}><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator"/><status code="110"/></x></presence>"#
    )
}

/// The account of issue 11: an anonymous conference request for the brewery room made the focus join
/// it again as a conference room, time out, leave it — and lose every bridge. It is refused now, with
/// an XMPP error, and the focus sends nothing to the brewery.
#[test]
fn a_conference_request_for_the_brewery_or_an_internal_room_is_refused() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.take();
    for room in [
        BREWERY.to_owned(),
        // Any other room of the internal MUC service.
        "jibribrewery@internal.auth.meet.example".to_owned(),
        // Another domain, or another service of ours.
        "room1@conference.evil.example".to_owned(),
        "room1@meet.example".to_owned(),
        "room1@lobby.meet.example".to_owned(),
    ] {
        let id = h.iq(
            Link::Component,
            "anon@meet.example/x",
            IqKind::Set,
            &conference_iq(&room),
        );
        let reply = h.reply_to(&id);
        assert_eq!(
            condition(&reply),
            Some(Condition::Forbidden),
            "{room}: {reply:?}"
        );
        let out = h.take();
        assert!(
            !out.iter().any(|o| matches!(o, Output::Presence { .. })),
            "{room}: no presence sent: {out:?}"
        );
    }
    // Nothing happens at the join timeout either: still in the brewery, the bridge still usable.
    h.advance(Duration::from_secs(60));
    let out = h.take();
    assert_eq!(
        presences_to(&out, &format!("{BREWERY}/focus")),
        0,
        "{out:?}"
    );
    let s = h.focus.stats(h.now);
    assert!(s.brewery_joined);
    assert_eq!(s.bridge_selector.operational_bridge_count, 1);
    assert_eq!(s.total_conference_requests_refused, 5);
    assert_eq!(s.conferences, 0);
    // A room of the conference service still works.
    h.create_room(ROOM);
    assert_eq!(h.focus.stats(h.now).conferences, 1);
}

/// Own unavailable presence (kicked, room destroyed…): the focus joins again, keeps its bridges, and
/// retries with a growing delay while the join is refused or unanswered.
#[test]
fn the_focus_joins_the_brewery_again_whenever_it_finds_itself_out() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.take();
    let me = format!("{BREWERY}/focus");
    h.presence(&own_brewery_presence(r#" type="unavailable""#));
    assert!(!h.focus.stats(h.now).brewery_joined);
    // Its bridge is still remembered as operational, but out of the brewery the focus is unhealthy.
    assert_eq!(
        h.focus
            .stats(h.now)
            .bridge_selector
            .operational_bridge_count,
        1
    );
    assert!(!h.focus.is_healthy(h.now));
    h.advance(REJOIN_FIRST_DELAY - Duration::from_millis(1));
    assert_eq!(presences_to(&h.take(), &me), 0);
    h.advance(Duration::from_millis(1));
    assert_eq!(presences_to(&h.take(), &me), 1, "joins again");
    // The join is refused: next attempt after 2 s.
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" from="{BREWERY}/focus" type="error"><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></presence>"#
    ));
    h.advance(Duration::from_millis(1999));
    assert_eq!(presences_to(&h.take(), &me), 0);
    h.advance(Duration::from_millis(1));
    assert_eq!(presences_to(&h.take(), &me), 1);
    // Unanswered: given up at the join timeout, then tried again 4 s later.
    h.advance(Duration::from_secs(15) + Duration::from_secs(4));
    assert_eq!(presences_to(&h.take(), &me), 1);
    // The bridge is announced, then our own presence: joined, nothing moved.
    h.add_bridge("jvb1", 0.1);
    h.presence(&own_brewery_presence(""));
    let s = h.focus.stats(h.now);
    assert!(s.brewery_joined);
    assert_eq!(s.total_brewery_rejoins, 1);
    assert_eq!(s.bridge_selector.operational_bridge_count, 1);
    assert!(h.focus.is_healthy(h.now));
    assert!(h.jingles("session-terminate").is_empty());
    // Once in, no further joins.
    h.advance(Duration::from_secs(120));
    assert_eq!(presences_to(&h.take(), &me), 0);
}

/// After a reconnect (Prosody restarted) the focus may be back in the brewery before the bridges: a
/// bridge that shows up within the grace keeps its conferences; one that does not is dropped and its
/// participants moved.
#[test]
fn bridges_missing_after_a_brewery_rejoin_get_a_grace_period() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.add_bridge("jvb2", 0.5);
    // The connection drops and comes back (Prosody restarted): the room is joined again with both
    // members, and the focus is back in the brewery before either bridge.
    let reconnect = |h: &mut Harness| {
        h.input(Input::Offline(Link::Client));
        h.input(Input::Online(Link::Client));
        h.join_member(ROOM, "aaaa1111");
        h.join_member(ROOM, "bbbb2222");
        h.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{ROOM}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{FOCUS}"/><status code="110"/></x></presence>"#
        ));
        h.answer_room_config(ROOM);
        h.take();
    };
    reconnect(&mut h);
    h.presence(&own_brewery_presence(""));
    h.advance(BRIDGE_REJOIN_GRACE - Duration::from_secs(1));
    assert!(
        h.jingles("session-terminate").is_empty(),
        "nobody moved yet"
    );
    assert_eq!(h.focus.stats(h.now).bridge_selector.bridge_count, 2);
    // jvb1 (the conference's) comes back in time, jvb2 does not.
    h.add_bridge("jvb1", 0.1);
    h.advance(Duration::from_secs(2));
    assert!(
        h.jingles("session-terminate").is_empty(),
        "jvb1 kept its conference"
    );
    assert_eq!(
        h.focus.stats(h.now).bridge_selector.bridge_count,
        1,
        "jvb2 given up"
    );
    assert_eq!(h.focus.stats(h.now).conferences, 1);

    // Again, and now jvb1 does not come back: its participants move to jvb2.
    h.add_bridge("jvb2", 0.5);
    reconnect(&mut h);
    h.add_bridge("jvb2", 0.5);
    h.presence(&own_brewery_presence(""));
    h.advance(BRIDGE_REJOIN_GRACE + Duration::from_secs(1));
    assert_eq!(h.jingles("session-terminate").len(), 2);
    let allocs = h.answer_allocations();
    assert!(!allocs.is_empty() && allocs.iter().all(|(b, _, _)| b.ends_with("/jvb2")));
}

/// Only occupants whose real JID is a trusted (auth-domain) account are bridges: an anonymous user in
/// the brewery publishing `<stats>` is ignored, so it is never sent a conference.
#[test]
fn stats_from_occupants_that_are_not_bridge_accounts_are_ignored() {
    let mut h = Harness::new();
    for (nick, item) in [
        // An anonymous user of the main domain.
        (
            "evil1",
            r#"<item affiliation="none" role="participant" jid="x1@meet.example/r"/>"#,
        ),
        // A look-alike domain.
        (
            "evil2",
            r#"<item affiliation="none" role="participant" jid="jvb@auth.meet.example.evil/r"/>"#,
        ),
        // Real JID hidden.
        ("evil3", r#"<item affiliation="none" role="participant"/>"#),
    ] {
        h.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{BREWERY}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user">{item}</x>
            <stats xmlns="http://jitsi.org/protocol/colibri"><stat name="stress_level" value="0"/><stat name="drain" value="false"/></stats></presence>"#
        ));
    }
    let s = h.focus.stats(h.now);
    assert_eq!(s.bridge_selector.bridge_count, 0);
    assert_eq!(s.total_untrusted_brewery_presences, 3);
    assert!(!h.focus.is_healthy(h.now));
    // A conference waits for a real bridge instead of using one of them.
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    assert!(
        h.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2))
            .is_empty()
    );
    h.add_bridge("jvb1", 0.1);
    h.advance(Duration::from_secs(6));
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2);
    assert!(allocs.iter().all(|(b, _, _)| b.ends_with("/jvb1")));
}

/// A client that advertises the real client's caps `ver` but answers disco#info without audio and
/// video must not change what the next clients are offered.
#[test]
fn forged_caps_answers_do_not_poison_other_clients_offers() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "evil0000");
    h.join_member(ROOM, "bbbb2222");
    for d in h.requests(|r| r.payload.is("query", muc::NS_DISCO_INFO)) {
        let answer = if d.to.ends_with("/evil0000") {
            el(
                r#"<query xmlns="http://jabber.org/protocol/disco#info"><feature var="urn:xmpp:jingle:1"/></query>"#,
            )
        } else {
            client_disco()
        };
        h.respond(d.id, Ok(Some(answer)));
    }
    h.answer_allocations();
    h.session_initiates();
    // A third client of the same build: its features come from the honest answer (no disco#info).
    h.join_member(ROOM, "cccc3333");
    assert_eq!(h.answer_discos(), 0);
    h.answer_allocations();
    let inits = h.session_initiates();
    let names: Vec<&str> = inits[0]
        .1
        .contents
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["audio", "video", "data"]);
}

/// Requests piling up for a room that is still being joined are bounded; the rest are told to retry.
#[test]
fn conference_requests_waiting_for_a_join_are_bounded() {
    let mut h = Harness::new();
    let mut ids = Vec::new();
    for _ in 0..MAX_WAITERS_PER_CONFERENCE + 10 {
        ids.push(h.iq(
            Link::Component,
            "u@meet.example/r",
            IqKind::Set,
            &conference_iq(ROOM),
        ));
    }
    let early = h.replies();
    assert_eq!(early.len(), 10, "the excess is answered at once");
    for (_, _, r) in &early {
        let answer = r.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(answer.attr("ready"), Some("false"));
    }
    h.focus_in_room(ROOM);
    let ready = h.replies();
    assert_eq!(ready.len(), MAX_WAITERS_PER_CONFERENCE);
    assert!(
        ready
            .iter()
            .all(|(_, _, r)| r.as_ref().unwrap().as_ref().unwrap().attr("ready") == Some("true"))
    );
}

/// Requests for ever new rooms make the focus join at most MAX_PENDING_CONFERENCES rooms nobody is in.
#[test]
fn rooms_nobody_joined_are_bounded() {
    let mut h = Harness::new();
    for i in 0..MAX_PENDING_CONFERENCES {
        h.iq(
            Link::Component,
            "u@meet.example/r",
            IqKind::Set,
            &conference_iq(&format!("r{i}@conference.meet.example")),
        );
    }
    h.take();
    let id = h.iq(
        Link::Component,
        "u@meet.example/r",
        IqKind::Set,
        &conference_iq("one-more@conference.meet.example"),
    );
    let answer = h.reply_to(&id).unwrap().unwrap();
    assert_eq!(answer.attr("ready"), Some("false"));
    let s = h.focus.stats(h.now);
    assert_eq!(s.conferences, MAX_PENDING_CONFERENCES);
    assert_eq!(s.total_conference_requests_deferred, 1);
    assert!(
        h.take()
            .iter()
            .all(|o| !matches!(o, Output::Presence { .. })),
        "no room joined"
    );
    // They time out (initial-timeout); then new rooms are served again.
    h.advance(Duration::from_secs(60));
    assert_eq!(h.focus.stats(h.now).conferences, 0);
    h.take();
    h.create_room(ROOM);
}

/// A participant that never accepts its session while others keep changing sources: the queue of
/// changes for it stays bounded, and when it accepts it is told the net difference.
#[test]
fn source_changes_queued_for_a_pending_session_are_bounded() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let sid_b = sid_of(&inits, "bbbb2222");
    assert!(
        h.jingle_from(ROOM, "bbbb2222", &session_accept("bbbb2222", &sid_b, 2000))
            .is_ok()
    );
    let add_remove = |action: &str, ssrc: u32| {
        format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="{action}" sid="{sid_b}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">
            <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{ssrc}"><parameter name="msid" value="x{ssrc} y{ssrc}"/></source></description></content></jingle>"#
        )
    };
    // b removes its audio, then adds and removes fresh SSRCs many times, ending with one added.
    assert!(
        h.jingle_from(ROOM, "bbbb2222", &add_remove("source-remove", 2000))
            .is_ok()
    );
    for i in 0..(MAX_QUEUED_SOURCE_CHANGES as u32 * 3) {
        assert!(
            h.jingle_from(ROOM, "bbbb2222", &add_remove("source-add", 5000 + i))
                .is_ok()
        );
        assert!(
            h.jingle_from(ROOM, "bbbb2222", &add_remove("source-remove", 5000 + i))
                .is_ok()
        );
    }
    assert!(
        h.jingle_from(ROOM, "bbbb2222", &add_remove("source-add", 9999))
            .is_ok()
    );
    assert!(h.jingles("source-add").is_empty() && h.jingles("source-remove").is_empty());
    let sid_a = sid_of(&inits, "aaaa1111");
    assert!(
        h.jingle_from(ROOM, "aaaa1111", &session_accept("aaaa1111", &sid_a, 1000))
            .is_ok()
    );
    // a's offer had none of b's sources: it learns b's current ones in one source-add — its video and
    // 9999 — and nothing of the churn in between.
    let removes: Vec<_> = h
        .jingles("source-remove")
        .into_iter()
        .filter(|(n, _)| n == "aaaa1111")
        .collect();
    let adds: Vec<_> = h
        .jingles("source-add")
        .into_iter()
        .filter(|(n, _)| n == "aaaa1111")
        .collect();
    assert_eq!((removes.len(), adds.len()), (0, 1));
    let added: Vec<u32> = sources_of(&adds[0].1)
        .get("bbbb2222")
        .map(|s| s.sources().map(|(_, src)| src.ssrc).collect())
        .unwrap_or_default();
    assert!(added.contains(&9999) && added.contains(&2010), "{added:?}");
    assert!(
        !added.contains(&2000) && !added.iter().any(|s| (5000..9999).contains(s)),
        "{added:?}"
    );
}

/// No session terminated, no re-invitation, no endpoint expired on the bridge.
fn nothing_torn_down(h: &mut Harness) {
    assert!(h.jingles("session-terminate").is_empty());
    assert!(h.answer_allocations().is_empty());
    assert!(
        !h.bridge_updates()
            .iter()
            .any(|(_, p)| String::from(p).contains("expire")),
        "no endpoint expired"
    );
}

/// Prosody shutting down (SIGTERM) closes every session: the focus first hears every member and the
/// bridge leave, then its own stream ends. Nothing is torn down; after the restart everybody is back
/// (loadtest-style clients re-join under the same nickname) and keeps its session.
#[test]
fn departures_announced_by_a_shutting_down_prosody_are_not_acted_on() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.take();
    for from in [
        format!("{ROOM}/aaaa1111"),
        format!("{ROOM}/bbbb2222"),
        format!("{BREWERY}/jvb1"),
    ] {
        h.presence(&format!(
            r#"<presence xmlns="jabber:client" type="unavailable" from="{from}"><status>Disconnected: Received SIGTERM</status><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="none"/></x></presence>"#
        ));
    }
    h.input(Input::Offline(Link::Client));
    h.advance(Duration::from_secs(5));
    nothing_torn_down(&mut h);
    // Prosody is back.
    h.input(Input::Online(Link::Client));
    h.add_bridge("jvb1", 0.1);
    h.presence(&own_brewery_presence(""));
    h.focus_in_room(ROOM);
    h.advance(Duration::from_secs(3));
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.advance(MEMBER_REJOIN_GRACE * 2);
    nothing_torn_down(&mut h);
    let s = h.focus.stats(h.now);
    assert_eq!((s.participants, s.bridge_selector.bridge_count), (2, 1));
}

/// Without a disconnect, a departure takes effect after LEAVE_CONFIRM_DELAY.
#[test]
fn a_real_departure_takes_effect_after_the_confirm_delay() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222", "cccc3333"]);
    h.take();
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" type="unavailable" from="{ROOM}/cccc3333"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="none"/></x></presence>"#
    ));
    assert!(
        !h.bridge_updates()
            .iter()
            .any(|(_, p)| String::from(p).contains("cccc3333"))
    );
    h.advance(LEAVE_CONFIRM_DELAY);
    assert!(
        h.bridge_updates()
            .iter()
            .any(|(_, p)| String::from(p).contains("cccc3333"))
    );
    assert_eq!(h.focus.stats(h.now).participants, 2);
}

/// Prosody restarted: the focus re-joins, members come back after it, within the grace, under the same
/// nicknames — their sessions (and media) are kept, nobody is re-invited, no session-terminate.
#[test]
fn members_that_come_back_after_a_rejoin_keep_their_sessions() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.take();
    h.input(Input::Offline(Link::Client));
    h.input(Input::Online(Link::Client));
    // The room is new: only us.
    h.focus_in_room(ROOM);
    h.advance(Duration::from_secs(5));
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.advance(MEMBER_REJOIN_GRACE * 2);
    nothing_torn_down(&mut h);
    assert_eq!(
        h.focus
            .participants(&ROOM.parse::<BareJid>().unwrap())
            .len(),
        2
    );
}
