//! Moderation with the reference client: lib-jitsi-meet (2021) in headless Chromium, Prosody, the
//! `focus` and the `bridge` binaries. A moderator mutes one participant (its microphone is muted and
//! the others stop receiving its audio, even when a modified client turns it back on), then everyone's
//! camera; a non-moderator's attempt is refused; a muted user unmutes itself. Recording, live streaming
//! and dial-out are refused with the error the client shows as "unavailable".

mod common;

use std::time::{Duration, Instant};

use common::browser::{Participants, wait_media};
use common::{BridgeProcess, FocusProcess, start_prosody, wait_for_bridges};
use serde_json::{Value, json};

fn bytes(s: &Value, page: &str, sender: &str, kind: &str) -> f64 {
    s[page]["remote"][sender][kind]["bytesReceived"]
        .as_f64()
        .unwrap_or(0.0)
}

/// Calls `fun` on `page` until `ok` accepts its result.
async fn until(
    p: &mut Participants,
    page: &str,
    fun: &str,
    timeout: Duration,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = p.call(page, fun, json!([])).await;
        if ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{page}.{fun} never became what was expected: {v}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The focus's answer to `page`'s first request with this child and text (mute value).
async fn focus_answer(p: &mut Participants, page: &str, child: &str, text: &str) -> String {
    let v = until(p, page, "ljmFocusAnswers", Duration::from_secs(20), |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|r| r["child"] == child && r["text"] == text && !r["answer"].is_null())
        })
    })
    .await;
    let answers = v.as_array().cloned().unwrap_or_default();
    let r = answers
        .iter()
        .find(|r| r["child"] == child && r["text"] == text)
        .cloned()
        .unwrap_or_default();
    r["answer"].as_str().unwrap_or_default().to_owned()
}

/// What each `(page, sender, kind)` received during `window` (after `settle`).
async fn received_during(
    p: &mut Participants,
    settle: Duration,
    window: Duration,
    flows: &[(&str, &str, &str)],
) -> Vec<f64> {
    tokio::time::sleep(settle).await;
    let before = p.stats().await;
    tokio::time::sleep(window).await;
    let after = p.stats().await;
    flows
        .iter()
        .map(|(page, sender, kind)| {
            bytes(&after, page, sender, kind) - bytes(&before, page, sender, kind)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_moderator_mutes_one_then_everyone_and_only_the_user_unmutes() {
    let prosody = start_prosody();
    let _bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
    let mut p = Participants::start(&prosody, "moderated").await;
    // a joins first: the focus makes it the owner (moderator).
    p.join("a").await;
    let a = p.joined("a").await;
    until(&mut p, "a", "ljmLocal", Duration::from_secs(20), |v| {
        v["moderator"] == true
    })
    .await;
    p.join("b").await;
    p.join("c").await;
    let b = p.joined("b").await;
    let c = p.joined("c").await;
    let pages = [("a", a.as_str()), ("b", b.as_str()), ("c", c.as_str())];
    wait_media(&mut p, &pages, Duration::from_secs(90), None).await;
    assert_eq!(p.call("b", "ljmLocal", json!([])).await["moderator"], false);

    // The moderator mutes b's microphone: b's client mutes its track, and the focus answers result.
    p.call("a", "ljmMuteParticipant", json!([b, "audio"])).await;
    until(&mut p, "b", "ljmLocal", Duration::from_secs(20), |v| {
        v["local"]["audio"]["muted"] == true
    })
    .await;
    assert_eq!(focus_answer(&mut p, "a", "mute", "true").await, "result");
    // A modified b turns its microphone back on without asking: it sends audio, nobody gets it —
    // the bridge drops b's audio. b's video and c's audio still flow.
    assert_eq!(p.call("b", "ljmCheat", json!(["audio", true])).await, true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let sent_before = p.call("b", "ljmAudioSent", json!([])).await;
    let got = received_during(
        &mut p,
        Duration::from_millis(500),
        Duration::from_secs(3),
        &[
            ("a", &b, "audio"),
            ("c", &b, "audio"),
            ("a", &b, "video"),
            ("a", &c, "audio"),
        ],
    )
    .await;
    let sent_after = p.call("b", "ljmAudioSent", json!([])).await;
    assert!(
        sent_after.as_f64() > sent_before.as_f64(),
        "b sends audio: {sent_before} → {sent_after}"
    );
    assert_eq!(
        (got[0], got[1]),
        (0.0, 0.0),
        "nobody receives the muted b's audio: {got:?}"
    );
    assert!(
        got[2] > 0.0 && got[3] > 0.0,
        "the rest still flows: {got:?}"
    );

    // The modified client stops cheating: lib-jitsi-meet sees its microphone muted again.
    assert_eq!(
        p.call("b", "ljmCheat", json!(["audio", false])).await,
        false
    );

    // A non-moderator's attempt: not-allowed, and a keeps talking.
    p.call("c", "ljmMuteParticipant", json!([a, "audio"])).await;
    assert_eq!(
        focus_answer(&mut p, "c", "mute", "true").await,
        "not-allowed"
    );
    let la = p.call("a", "ljmLocal", json!([])).await;
    assert_eq!(la["local"]["audio"]["muted"], false, "{la}");
    let got = received_during(
        &mut p,
        Duration::ZERO,
        Duration::from_secs(2),
        &[("b", &a, "audio"), ("c", &a, "audio")],
    )
    .await;
    assert!(got.iter().all(|g| *g > 0.0), "a is still heard: {got:?}");

    // b unmutes itself (its client asks the focus, which lifts the bridge's mute): heard again.
    p.call("b", "ljmSetMuted", json!(["audio", false])).await;
    assert_eq!(focus_answer(&mut p, "b", "mute", "false").await, "result");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = p.stats().await;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = p.stats().await;
        let rising = |page: &str| bytes(&now, page, &b, "audio") > bytes(&last, page, &b, "audio");
        if rising("a") && rising("c") {
            break;
        }
        assert!(Instant::now() < deadline, "b is not heard again: {now}");
        last = now;
    }

    // "Mute everyone" (video): b's and c's cameras are muted and nobody receives their video.
    let muted = p.call("a", "ljmMuteEveryone", json!(["video"])).await;
    assert_eq!(muted.as_array().map(Vec::len), Some(2), "{muted}");
    for page in ["b", "c"] {
        until(&mut p, page, "ljmLocal", Duration::from_secs(20), |v| {
            v["local"]["video"]["muted"] == true
        })
        .await;
    }
    let got = received_during(
        &mut p,
        Duration::from_millis(1500),
        Duration::from_secs(3),
        &[
            ("a", &b, "video"),
            ("a", &c, "video"),
            ("b", &c, "video"),
            ("c", &b, "video"),
            ("b", &a, "video"),
            ("a", &c, "audio"),
        ],
    )
    .await;
    assert!(
        got[..4].iter().all(|g| *g == 0.0),
        "muted cameras are not received: {got:?}"
    );
    assert!(
        got[4] > 0.0 && got[5] > 0.0,
        "a's camera and c's microphone still flow: {got:?}"
    );
    let la = p.call("a", "ljmLocal", json!([])).await;
    assert_eq!(la["local"]["video"]["muted"], false, "{la}");
    p.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_recording_streaming_and_dial_out_are_refused_as_unavailable() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let mut p = Participants::start(&prosody, "norecording").await;
    p.join("a").await;
    p.joined("a").await;
    until(&mut p, "a", "ljmLocal", Duration::from_secs(20), |v| {
        v["moderator"] == true
    })
    .await;
    // What the Jitsi Meet app shows as "recording unavailable": the session error
    // service-unavailable, in the promise and in RECORDER_STATE_CHANGED.
    for mode in ["file", "stream"] {
        let r = p.call("a", "ljmStartRecording", json!([mode])).await;
        assert_eq!(r["started"], false, "{mode}: {r}");
        assert_eq!(r["condition"], "service-unavailable", "{mode}: {r}");
    }
    let s = p.stats().await;
    let states: Vec<&Value> = s["a"]["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == "recorder-state").collect())
        .unwrap_or_default();
    assert!(
        !states.is_empty() && states.iter().all(|e| e["error"] == "service-unavailable"),
        "{states:?}"
    );
    let r = p.call("a", "ljmDial", json!(["+15551234567"])).await;
    assert_eq!(r["dialled"], false, "{r}");
    assert_eq!(r["condition"], "service-unavailable", "{r}");
    // A participant who is not a moderator is told so.
    p.join("b").await;
    p.joined("b").await;
    let r = p.call("b", "ljmStartRecording", json!(["file"])).await;
    assert_eq!(r["condition"], "not-allowed", "{r}");
    assert_eq!(focus.stats()["conferences"], 1);
    p.quit().await;
}
