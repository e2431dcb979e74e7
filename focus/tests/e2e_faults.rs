//! Fault tests of issue 11 (item 3) with everything real on loopback: Prosody, our bridge and focus
//! binaries, lib-jitsi-meet 2021 in headless Chromium, and browserless loadtest participants (which,
//! unlike the 2021 page, reconnect to Prosody and re-enter their room under the same nickname, as a
//! client with stream resumption would).
//!
//! - Prosody restarted mid-call: media keeps flowing, the bridge and the focus are back in the
//!   brewery, the focus back in its room with the same sessions, and participants joining afterwards
//!   get media.
//! - The focus killed and restarted mid-call: the participants (reloading as the Jitsi Meet app does
//!   when the focus leaves) get media again within a measured bound.
//! - The brewery-room request and rooms outside the conference service are refused with an XMPP error
//!   while another conference keeps its media, and the focus can still put new participants on the
//!   bridge afterwards.

mod common;

use std::time::{Duration, Instant};

use common::browser::{Participants, sessions, wait_media};
use common::{BridgeProcess, FocusProcess, TestClient, start_prosody, wait_for_bridges};
use loadtest::deployment::Target;
use loadtest::participant::{self, ParticipantReport, Phase};
use loadtest::receiver::Kind;
use loadtest::scenario::{ScenarioConfig, plan};
use serde_json::Value;
use testkit::Prosody;
use tokio::sync::{mpsc, watch};

/// Polls the focus's `/stats` until `ok`, failing after `timeout`.
async fn wait_focus(
    focus: &FocusProcess,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let s = tokio::task::block_in_place(|| focus.get("/stats"))
            .and_then(|(status, body)| (status == 200).then_some(body))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        if ok(&s) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "{what} after {timeout:?}: {s}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The conference of `room` as `/debug` shows it.
fn debug_conference(focus: &FocusProcess, room: &str) -> Value {
    let body = focus.get("/debug").map(|(_, b)| b).unwrap_or_default();
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    v["conferences"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["room"] == room).cloned())
        .unwrap_or(Value::Null)
}

fn target(prosody: &Prosody) -> Target {
    Target {
        server: prosody.c2s_addr(),
        domain: prosody.domain().to_owned(),
        muc_domain: prosody.muc_domain().to_owned(),
        focus: prosody.focus_domain().to_owned(),
        bridge_stats_url: None,
        pids: Vec::new(),
        janus_url: None,
    }
}

/// Prosody, a bridge, the focus and two 2021 clients in `room` exchanging media.
struct Call {
    prosody: Prosody,
    bridge: BridgeProcess,
    focus: FocusProcess,
    p: Participants,
    a: String,
    b: String,
}

impl Call {
    async fn start(room: &str) -> Call {
        let prosody = start_prosody();
        let bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
        let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
        tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
        let mut p = Participants::start(&prosody, room).await;
        let (endpoints, _) = p.join_with_media(&["a", "b"]).await;
        let [a, b] = <[String; 2]>::try_from(endpoints).expect("two endpoints");
        Call {
            prosody,
            bridge,
            focus,
            p,
            a,
            b,
        }
    }
}

/// Prosody is stopped (SIGTERM: every stream closed) for 3 s and started again on the same ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_prosody_restart_mid_call() {
    let mut prosody = start_prosody();
    let bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));

    // Two browserless participants, both sending, in one room.
    let cfg = ScenarioConfig {
        conferences: 1,
        participants: 2,
        senders: 2,
        join_timeout: Duration::from_secs(40),
        room_prefix: "restart".into(),
        ..ScenarioConfig::default()
    };
    let plans = plan(&cfg, &target(&prosody)).expect("plan");
    let room = plans[0].room.to_string();
    let (phase_tx, phase_rx) = watch::channel(Phase::Joining);
    let (progress_tx, mut progress_rx) = mpsc::unbounded_channel();
    let tasks: Vec<_> = plans
        .into_iter()
        .map(|p| tokio::spawn(participant::run(p, phase_rx.clone(), progress_tx.clone())))
        .collect();
    for _ in 0..2 {
        let (i, r) = tokio::time::timeout(Duration::from_secs(60), progress_rx.recv())
            .await
            .expect("participants connect")
            .expect("progress");
        assert!(r.is_ok(), "participant {i}: {r:?}\n{}", focus.log());
    }
    // Media established (a keyframe round or two), then the measurement window opens.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let _ = phase_tx.send(Phase::Measuring);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let disconnects_before =
        tokio::task::block_in_place(|| focus.stats())["total_xmpp_disconnects"]
            .as_u64()
            .unwrap_or(0);
    let restart = Instant::now();
    tokio::task::block_in_place(|| {
        prosody.stop().expect("stop Prosody");
        std::thread::sleep(Duration::from_secs(3));
        prosody.start_again().expect("start Prosody again");
    });
    // The focus reconnected, is back in the brewery and in its room (state Joined, both participants
    // still there with their sessions).
    let back = wait_focus(
        &focus,
        "focus back in the brewery",
        Duration::from_secs(40),
        |s| {
            s["total_xmpp_disconnects"].as_u64() > Some(disconnects_before)
                && s["brewery_joined"] == true
                && s["bridge_selector"]["operational_bridge_count"] == 1
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let c = tokio::task::block_in_place(|| debug_conference(&focus, &room));
        let active = c["participants"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["active"] == true).count());
        // Both members came back under their nicknames (none still awaited), sessions active.
        let awaited = c["absent"].as_array().map(Vec::len);
        if c["state"] == "Joined" && c["members"] == 2 && active == Some(2) && awaited == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "focus not back in {room}: {c}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "Prosody restart (3 s down): focus back in the brewery {:.1} s after Prosody was up again, \
         in its room with both sessions {:.1} s after the stop",
        back.as_secs_f64(),
        restart.elapsed().as_secs_f64()
    );
    // Past the focus's grace for missing members and bridges: nothing was torn down.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let _ = phase_tx.send(Phase::Leaving);
    let mut reports: Vec<ParticipantReport> = Vec::new();
    for t in tasks {
        reports.push(
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("leave")
                .expect("task"),
        );
    }
    for r in &reports {
        // The Jingle session and its media went on through the restart: one session, every track
        // of the other participant received over the whole window with (almost) nothing lost.
        assert_eq!(
            r.sessions, 1,
            "{}: re-invited: {:?}",
            r.endpoint, r.failures
        );
        assert!(r.connected, "{}: {:?}", r.endpoint, r.failures);
        let unexpected: Vec<&String> = r
            .failures
            .iter()
            .filter(|f| !f.starts_with("XMPP disconnected"))
            .collect();
        assert!(unexpected.is_empty(), "{}: {unexpected:?}", r.endpoint);
        for kind in [Kind::Audio, Kind::Video] {
            let tracks: Vec<_> = r.tracks.iter().filter(|t| t.kind == kind).collect();
            assert!(
                !tracks.is_empty(),
                "{}: no {kind:?} received: {r:?}",
                r.endpoint
            );
            assert!(tracks.iter().all(|t| t.packets > 0));
        }
        println!(
            "{}: window {:.1} s across the restart, {:.0} packets/s received, loss {:.3} %",
            r.endpoint, r.window_s, r.received_pps, r.loss_pct
        );
        assert!(r.window_s > 15.0, "{}: window {}", r.endpoint, r.window_s);
        assert!(
            r.loss_pct < 1.0,
            "{}: {:.2} % lost across the restart",
            r.endpoint,
            r.loss_pct
        );
    }

    // Participants joining afterwards get media (the focus reaches the bridge through the brewery
    // again: COLIBRI2 allocations work).
    let mut p = Participants::start(&prosody, "after-restart").await;
    let (_, took) = p.join_with_media(&["a", "b"]).await;
    println!("after the Prosody restart: new participants have media after {took:?}");
    p.quit().await;
    drop(bridge);
}

/// The focus is killed (SIGKILL, as a crash or an OOM kill) and started again at once. The bridge
/// keeps the running conference, so the participants' media goes on; the 2021 client does not
/// reload by itself (its focus-left handling throws a TypeError in this build, so no
/// `conference.focusLeft` reaches the app). The new focus takes the room over at the next conference
/// request — here a third participant joining — and invites everybody again on a fresh bridge
/// conference. Bounds: media interruption for the two (none), and kill → all three exchanging media
/// through the new focus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_focus_restart_mid_call() {
    let Call {
        prosody,
        bridge: _bridge,
        mut focus,
        mut p,
        a,
        b,
    } = Call::start("focusrestart").await;
    let before = sessions(&p.stats().await, &["a", "b"]);

    let killed = Instant::now();
    focus.kill();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
    let serving = killed.elapsed();
    // Without a focus, the call goes on: both still receive each other, on the same session.
    let gap = wait_media(
        &mut p,
        &[("a", &a), ("b", &b)],
        Duration::from_secs(10),
        None,
    )
    .await;
    let s = p.stats().await;
    assert_eq!(sessions(&s, &["a", "b"]), before, "same Jingle sessions");
    // A third participant joins: the new focus creates the conference and everybody gets media
    // through it (a and b on a new session).
    let joining = Instant::now();
    p.join("c").await;
    let c = p.joined("c").await;
    let mut moved = before.clone();
    moved.insert("c".into(), String::new());
    wait_media(
        &mut p,
        &[("a", &a), ("b", &b), ("c", &c)],
        Duration::from_secs(90),
        Some(&moved),
    )
    .await;
    let took_over = joining.elapsed();
    let bound = killed.elapsed();
    println!(
        "focus restart: new focus serving {:.1} s after the kill; the two kept their media \
         (checked within {:.1} s); a new participant joined and all three have media through the new \
         focus {:.1} s later, {:.1} s after the kill",
        serving.as_secs_f64(),
        gap.as_secs_f64(),
        took_over.as_secs_f64(),
        bound.as_secs_f64()
    );
    let st = tokio::task::block_in_place(|| focus.stats());
    assert_eq!(st["participants"], 3, "{st}");
    assert_eq!(st["conferences"], 1, "{st}");
    // The bound this test states (see focus/README.md for the measured figures).
    assert!(
        took_over < Duration::from_secs(45),
        "media through the new focus only after {took_over:?}"
    );
    p.quit().await;
}

/// The request of issue 11 (the brewery room) and rooms outside the conference service, sent by an
/// anonymous client during a call: refused with an XMPP error; the call keeps its media past the
/// 15 s at which the focus used to leave the brewery, and a participant joining afterwards gets media.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_brewery_and_foreign_room_requests_are_refused_while_a_call_keeps_media() {
    let Call {
        prosody,
        bridge: _bridge,
        focus,
        mut p,
        a,
        b,
    } = Call::start("keepsmedia").await;

    let mallory = TestClient::anonymous(&prosody).await;
    for room in [
        format!("jvbbrewery@{}", prosody.internal_muc_domain()),
        format!("jigasibrewery@{}", prosody.internal_muc_domain()),
        "keepsmedia@conference.elsewhere.example".to_owned(),
    ] {
        mallory.conference_forbidden(&prosody, &room).await;
    }
    // Past the old 15 s join timeout: the call still has media, the focus is still in the brewery.
    tokio::time::sleep(Duration::from_secs(17)).await;
    wait_media(
        &mut p,
        &[("a", &a), ("b", &b)],
        Duration::from_secs(10),
        None,
    )
    .await;
    let s = tokio::task::block_in_place(|| focus.stats());
    assert_eq!(s["brewery_joined"], true, "{s}");
    assert_eq!(s["total_conference_requests_refused"], 3, "{s}");
    // A third participant gets a COLIBRI2 allocation through the brewery and media.
    p.join("c").await;
    let c = p.joined("c").await;
    wait_media(
        &mut p,
        &[("a", &a), ("b", &b), ("c", &c)],
        Duration::from_secs(90),
        None,
    )
    .await;
    p.quit().await;
}
