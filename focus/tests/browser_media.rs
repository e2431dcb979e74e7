//! End to end with everything real: lib-jitsi-meet (2021) in headless Chromium with fake camera and
//! microphone, Prosody, the `focus` binary and the `bridge` binary on loopback. Media is judged from the
//! receivers' own `getStats()`.

mod common;

use std::time::{Duration, Instant};

use common::browser::{Participants, Seen, seen, sessions, wait_media};
use common::{BridgeProcess, FocusProcess, TestClient, el, start_prosody, wait_for_bridges};
use serde_json::Value;
use signaling::jingle::Jingle;
use signaling::ns;
use signaling::source_map::ConferenceSourceMap;
use signaling::xml::XmlElement;
use signaling::xmpp::{BareJid, DefinedCondition, Event, IqError, Jid, MucJoin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_three_participants_then_one_leaves_then_a_fourth_joins() {
    let prosody = start_prosody();
    let _bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));

    let mut p = Participants::start(&prosody, "threeway").await;
    for id in ["a", "b", "c"] {
        p.join(id).await;
    }
    let a = p.joined("a").await;
    let b = p.joined("b").await;
    let c = p.joined("c").await;
    let took = wait_media(
        &mut p,
        &[("a", &a), ("b", &b), ("c", &c)],
        Duration::from_secs(90),
        None,
    )
    .await;
    println!("three participants: media both ways between all pairs after {took:?}");
    let s = focus.stats();
    assert_eq!(
        (s["conferences"].as_u64(), s["participants"].as_u64()),
        (Some(1), Some(3))
    );

    // c leaves: a's and b's remote tracks of c end.
    p.leave("c").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = p.stats().await;
        let gone = |page: &str| {
            let removed = s[page]["removed"].as_array().cloned().unwrap_or_default();
            let has = |t: &str| {
                removed
                    .iter()
                    .any(|r| r["participant"] == c.as_str() && r["type"] == t)
            };
            has("audio") && has("video") && s[page]["remote"][c.as_str()].is_null()
        };
        if gone("a") && gone("b") {
            break;
        }
        assert!(Instant::now() < deadline, "c's tracks did not end: {s}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // a and b still exchange media.
    wait_media(
        &mut p,
        &[("a", &a), ("b", &b)],
        Duration::from_secs(20),
        None,
    )
    .await;

    // d joins: everybody gets d's tracks and d everybody's.
    p.join("d").await;
    let d = p.joined("d").await;
    let took = wait_media(
        &mut p,
        &[("a", &a), ("b", &b), ("d", &d)],
        Duration::from_secs(90),
        None,
    )
    .await;
    println!("fourth participant: media with everybody after {took:?}");
    assert_eq!(focus.stats()["participants"], 3);
    p.quit().await;
}

/// config.js `startAudioMuted: 1, startVideoMuted: 1`: the first participant starts unmuted, the
/// second is told so in its session-initiate and lib-jitsi-meet mutes its microphone and camera;
/// it still receives the first one's media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_start_muted_after_the_first_participant() {
    let prosody = start_prosody();
    let _bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
    let mut cfg = Participants::config(&prosody, "startmuted");
    cfg["conference"] = serde_json::json!({"startAudioMuted": 1, "startVideoMuted": 1});
    let mut p = Participants::start_with(cfg).await;
    p.join("a").await;
    let a = p.joined("a").await;
    p.join("b").await;
    let b = p.joined("b").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let (la, lb) = loop {
        let la = p.call("a", "ljmLocal", serde_json::json!([])).await;
        let lb = p.call("b", "ljmLocal", serde_json::json!([])).await;
        if lb["startedMuted"] == true
            && lb["local"]["audio"]["muted"] == true
            && lb["local"]["video"]["muted"] == true
        {
            break (la, lb);
        }
        assert!(Instant::now() < deadline, "b was not started muted: {lb}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        (&lb["startAudioMuted"], &lb["startVideoMuted"]),
        (&Value::Bool(true), &Value::Bool(true)),
        "{lb}"
    );
    assert_eq!(
        (
            &la["startAudioMuted"],
            &la["startVideoMuted"],
            &la["local"]["audio"]["muted"],
            &la["local"]["video"]["muted"]
        ),
        (
            &Value::Bool(false),
            &Value::Bool(false),
            &Value::Bool(false),
            &Value::Bool(false)
        ),
        "the first participant starts unmuted: {la}"
    );
    // Muted at the start is not cut off: b receives a's audio and video.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first: Option<Seen> = None;
    loop {
        let s = p.stats().await;
        if let Some(now) = seen(&s, "b", &a) {
            match first {
                Some(f) if now.audio_samples > f.audio_samples && now.frames > f.frames => break,
                None if now.frames > 0.0 => first = Some(now),
                _ => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "b gets no media from a ({b}): {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    p.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_two_bridges_spread_conferences_and_a_killed_bridge_is_replaced() {
    let prosody = start_prosody();
    // Each endpoint counts for a lot of stress, so that spreading does not depend on the bridges'
    // CPU-based stress readings: the first conference's endpoints make its bridge the busier one.
    let stress = [("JVB_AVERAGE_PARTICIPANT_STRESS", "0.2")];
    let mut bridges = [
        tokio::task::block_in_place(|| BridgeProcess::start_with(&prosody, "jvb-1", &stress)),
        tokio::task::block_in_place(|| BridgeProcess::start_with(&prosody, "jvb-2", &stress)),
    ];
    // A large per-participant stress makes the spread independent of the bridges' own (CPU-based)
    // stress readings: the first conference's endpoints make its bridge the busier one.
    let focus = tokio::task::block_in_place(|| {
        FocusProcess::start(&prosody, &[("BRIDGE_AVG_PARTICIPANT_STRESS", "0.2")])
    });
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 2));

    let mut p = Participants::start(&prosody, "unused").await;
    // Two conferences of two.
    for (id, room) in [
        ("x1", "roomx"),
        ("x2", "roomx"),
        ("y1", "roomy"),
        ("y2", "roomy"),
    ] {
        p.send_join(id, room).await;
    }
    let x1 = p.joined("x1").await;
    let x2 = p.joined("x2").await;
    let y1 = p.joined("y1").await;
    let y2 = p.joined("y2").await;
    let x = [("x1", x1.as_str()), ("x2", x2.as_str())];
    let y = [("y1", y1.as_str()), ("y2", y2.as_str())];
    wait_media(&mut p, &x, Duration::from_secs(90), None).await;
    wait_media(&mut p, &y, Duration::from_secs(90), None).await;

    // Spread by stress: each bridge hosts one conference.
    let s = focus.stats();
    let per_bridge: Vec<(String, u64)> = s["bridge_selector"]["bridges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["jid"].as_str().unwrap().to_owned(),
                b["endpoints"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(per_bridge.len(), 2, "{s}");
    assert!(
        per_bridge.iter().all(|(_, n)| *n == 2),
        "conferences not spread: {per_bridge:?}"
    );

    // Which bridge hosts roomx? Kill it.
    let room_x = focus_bridge_of(&focus, &format!("roomx@{}", prosody.muc_domain()));
    let victim = bridges
        .iter()
        .position(|b| room_x.ends_with(&format!("/{}", b.nick)))
        .expect("roomx's bridge");
    let before = sessions(&p.stats().await, &["x1", "x2"]);
    let killed_at = Instant::now();
    bridges[victim].kill();
    let restored = wait_media(&mut p, &x, Duration::from_secs(60), Some(&before)).await;
    let restored_after = killed_at
        .elapsed()
        .min(restored + Duration::from_millis(250));
    println!(
        "bridge {} killed: media restored for its participants after {:.2} s",
        bridges[victim].nick,
        restored_after.as_secs_f64()
    );
    // Both conferences are now on the surviving bridge; roomy was never interrupted.
    wait_media(&mut p, &y, Duration::from_secs(10), None).await;
    let s = focus.stats();
    assert_eq!(s["bridge_selector"]["bridge_count"], 1, "{s}");
    assert_eq!(s["total_participants_moved"], 2, "{s}");
    assert!(
        restored_after < Duration::from_secs(30),
        "media took {restored_after:?} to come back"
    );
    p.quit().await;
}

/// The bridge the focus put a conference on (from `/debug`).
fn focus_bridge_of(focus: &FocusProcess, room: &str) -> String {
    let (status, body) = focus.get("/debug").expect("/debug answers");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["conferences"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["room"] == room))
        .and_then(|c| c["bridge"].as_str())
        .unwrap_or_else(|| panic!("{room} has no bridge: {v}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_bad_input_is_refused_and_the_conference_continues() {
    let test_start = Instant::now();
    let prosody = start_prosody();
    let _bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    println!("[{:?}] bridge started", test_start.elapsed());
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
    println!("[{:?}] focus sees the bridge", test_start.elapsed());
    let mut p = Participants::start(&prosody, "badroom").await;
    p.join("a").await;
    p.join("b").await;
    let a = p.joined("a").await;
    let b = p.joined("b").await;
    println!("[{:?}] a and b joined", test_start.elapsed());
    let pages = [("a", a.as_str()), ("b", b.as_str())];
    let took = wait_media(&mut p, &pages, Duration::from_secs(90), None).await;
    println!("media flowing after {took:?}");
    let t0 = Instant::now();

    let component: Jid = prosody.focus_domain().parse().unwrap();
    let room = format!("badroom@{}", prosody.muc_domain());
    let mut mallory = TestClient::connect(&prosody, "mallory", "mallory-pw").await;

    // 1. A conference IQ without room.
    let e = mallory
        .handle
        .iq_set(
            component.clone(),
            el(r#"<conference xmlns="http://jitsi.org/protocol/focus" machine-uid="x"/>"#),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert_eq!(e.condition(), Some(&DefinedCondition::BadRequest), "{e}");

    println!("[{:?}] conference IQ without room refused", t0.elapsed());
    // 2. A Jingle action from a non-participant (not even in the room).
    let e = mallory
        .handle
        .iq_set(
            format!("{room}/focus").parse::<Jid>().unwrap(),
            el(r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="x"/>"#),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, IqError::ErrorReply(_)), "{e}");

    // Mallory joins the room, is invited like anyone, and acknowledges the session-initiate.
    mallory
        .handle
        .join_muc(MucJoin::new(BareJid::new(&room).unwrap(), "bad0bad0"))
        .await
        .unwrap();
    let initiate = mallory
        .wait_for("session-initiate", |ev| match ev {
            Event::IqRequest(iq)
                if iq.is("jingle", ns::JINGLE)
                    && iq.payload.attr("action") == Some("session-initiate") =>
            {
                // Acknowledge it, as a client does (an unanswered IQ is refused, ending the session).
                match std::mem::replace(ev, Event::Closed) {
                    Event::IqRequest(iq) => {
                        let payload = iq.payload.clone();
                        iq.reply_result(None);
                        Some(payload)
                    }
                    _ => None,
                }
            }
            _ => None,
        })
        .await;
    let jingle = Jingle::from_element(&initiate).unwrap();
    let sid = jingle.sid.clone();
    let sources = ConferenceSourceMap::from_jingle(&jingle, None).unwrap();
    let stolen = sources
        .get(&a)
        .and_then(|s| s.audio.sources.first())
        .map(|s| s.ssrc)
        .expect("a's audio SSRC in mallory's offer");
    let focus_occupant: Jid = format!("{room}/focus").parse().unwrap();
    let send = |payload: String| {
        let h = mallory.handle.clone();
        let to = focus_occupant.clone();
        async move { h.iq_set(to, el(&payload), Duration::from_secs(10)).await }
    };

    println!("[{:?}] mallory invited", t0.elapsed());
    // 3. A source-add stealing a's SSRC.
    let e = send(format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="{sid}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{stolen}"><parameter name="msid" value="m t"/></source></description></content></jingle>"#
    ))
    .await
    .unwrap_err();
    assert_eq!(e.condition(), Some(&DefinedCondition::BadRequest), "{e}");
    // 4. An unknown action.
    let e = send(format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="content-modify" sid="{sid}"/>"#
    ))
    .await
    .unwrap_err();
    assert_eq!(
        e.condition(),
        Some(&DefinedCondition::FeatureNotImplemented),
        "{e}"
    );
    // 5. A malformed session-accept (no transport).
    let e = send(format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="{sid}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio"/></content></jingle>"#
    ))
    .await
    .unwrap_err();
    assert_eq!(e.condition(), Some(&DefinedCondition::BadRequest), "{e}");

    // The conference goes on: a and b still receive each other.
    println!("[{:?}] bad Jingle refused", t0.elapsed());
    wait_media(&mut p, &pages, Duration::from_secs(20), None).await;
    println!("[{:?}] a and b still receive each other", t0.elapsed());
    let s = focus.stats();
    assert_eq!(s["conferences"], 1, "{s}");
    assert!(s["total_jingle_errors"].as_u64().unwrap_or(0) >= 3, "{s}");
    p.quit().await;
    println!(
        "[{:?}] browsers closed ({:?} since the test started)",
        t0.elapsed(),
        test_start.elapsed()
    );
}
