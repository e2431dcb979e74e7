//! Simulcast layer selection with the real client: lib-jitsi-meet (2021) in headless Chromium, Prosody,
//! the `focus` and `bridge` binaries on loopback. A sender captures 1280x720 from the fake camera, so
//! Chromium encodes three simulcast layers (180p, 360p, 720p; lib-jitsi-meet munges the SIM group);
//! a receiver puts it on stage and asks for 180p, then 720p, then 180p again, the way the Jitsi Meet
//! app does (`selectParticipants` + `setReceiverVideoConstraint` → `ReceiverVideoConstraints`). The
//! receiver's own `getStats()` must show `frameHeight` following, with frames decoded all along.
//! The same in a three-party call, with the times the bridge's sender constraints allow: 720p within
//! 3 s of the stage request, back down within about 1 s.

mod common;

use std::time::{Duration, Instant};

use common::browser::Participants;
use common::{BridgeProcess, FocusProcess, start_prosody, wait_for_bridges};
use serde_json::{Value, json};

/// How often the receiver's statistics are read.
const POLL: Duration = Duration::from_millis(250);
/// Longest time without a newly decoded frame that still counts as playing.
const MAX_STALL: Duration = Duration::from_millis(1000);
/// Asked for 720p: the sender enables its high layer, the bridge's estimate of the receiver's link
/// grows (probing) and the switch waits for a keyframe. Typically 1–5 s here.
const UP_WITHIN: Duration = Duration::from_secs(12);
/// Asked for 180p again: only a keyframe of the low layer is needed. Typically 0.1–0.4 s.
const DOWN_WITHIN: Duration = Duration::from_secs(5);
/// On stage in a three-party call: the sender is told 720 after the bridge's hold-off (0.3 s) and
/// enables its encodings (lib-jitsi-meet's `setParameters`); once its high layer carries frames the
/// receiver switches on its first keyframe. Each within this.
const STAGE_UP_WITHIN: Duration = Duration::from_secs(3);
/// How long the sender's own bandwidth estimate may take to let its high layer through: Chromium's
/// business, not the bridge's (on this shared 2-core machine, under load, 1–20 s).
const SENDER_RAMP_WITHIN: Duration = Duration::from_secs(30);
/// Off stage again: the bridge switches the receiver down on the low layer's next keyframe.
const STAGE_DOWN_WITHIN: Duration = Duration::from_millis(1500);

/// One reading of what the receiver decodes of the sender's video.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    height: u64,
    frames: u64,
}

/// The receiver's view of the sender's video, sampled until a phase ends; keeps every sample so
/// stalls can be judged over the whole run.
struct Watch {
    receiver: &'static str,
    sender: String,
    samples: Vec<Sample>,
    last: Value,
}

impl Watch {
    fn new(receiver: &'static str, sender: &str) -> Watch {
        Watch {
            receiver,
            sender: sender.to_owned(),
            samples: Vec::new(),
            last: Value::Null,
        }
    }

    async fn sample(&mut self, p: &mut Participants) -> Sample {
        let s = p.stats().await;
        let v = &s[self.receiver]["remote"][self.sender.as_str()]["video"];
        let n = |k: &str| v[k].as_f64().unwrap_or(0.0) as u64;
        let sample = Sample {
            at: Instant::now(),
            height: n("frameHeight"),
            frames: n("framesDecoded"),
        };
        self.samples.push(sample);
        self.last = s;
        sample
    }

    /// Samples until `done` holds for the samples of the last `hold` (and at least one), or fails
    /// after `timeout`. Returns how long it took from the call until `done` first held for good.
    async fn until(
        &mut self,
        p: &mut Participants,
        what: &str,
        timeout: Duration,
        hold: Duration,
        done: impl Fn(&Sample) -> bool,
    ) -> Duration {
        let start = Instant::now();
        let mut since: Option<Instant> = None;
        loop {
            let s = self.sample(p).await;
            if done(&s) {
                let t = *since.get_or_insert(s.at);
                if s.at - t >= hold {
                    return t - start;
                }
            } else {
                since = None;
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not reached after {timeout:?}; last sample {s:?}; sender sends {}; receiver sees {}",
                self.last["s"]["outbound"],
                self.last[self.receiver]["remote"][self.sender.as_str()]["video"]
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The sender's encodings in the last sample: `(active, frameHeight, framesEncoded,
    /// framesPerSecond)` each.
    fn sender_encodings(&self) -> Vec<(bool, u64, u64, u64)> {
        self.last["s"]["outbound"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|o| {
                        (
                            o["active"].as_bool().unwrap_or(false),
                            o["frameHeight"].as_u64().unwrap_or(0),
                            o["framesEncoded"].as_u64().unwrap_or(0),
                            o["framesPerSecond"].as_f64().unwrap_or(0.0) as u64,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Samples until the sender's encodings satisfy `done`, or fails after `timeout`; returns how
    /// long it took.
    async fn until_sender(
        &mut self,
        p: &mut Participants,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[(bool, u64, u64, u64)]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            self.sample(p).await;
            let e = self.sender_encodings();
            if done(&e) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "{what}: not reached after {timeout:?}; the sender sends {}",
                self.last["s"]["outbound"]
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Samples until the receiver decodes the sender's video (at most 60 s).
    async fn decoding(&mut self, p: &mut Participants, what: &str) {
        self.until(p, what, Duration::from_secs(60), Duration::ZERO, |s| {
            s.frames > 0
        })
        .await;
    }

    /// Samples until the receiver has decoded at most `height` (and something) for 2 s, or
    /// fails after `timeout`; returns how long it took.
    async fn settles_at_most(
        &mut self,
        p: &mut Participants,
        what: &str,
        height: u64,
        timeout: Duration,
    ) -> Duration {
        self.until(p, what, timeout, Duration::from_secs(2), |s| {
            s.height > 0 && s.height <= height
        })
        .await
    }

    /// The longest time between two samples that show new decoded frames, from `from` on.
    fn longest_stall(&self, from: Instant) -> Duration {
        let mut worst = Duration::ZERO;
        let mut progress: Option<Sample> = None;
        for s in self.samples.iter().filter(|s| s.at >= from) {
            match progress {
                Some(p) if s.frames > p.frames => {
                    worst = worst.max(s.at - p.at);
                    progress = Some(*s);
                }
                Some(p) => worst = worst.max(s.at - p.at),
                None => progress = Some(*s),
            }
        }
        worst
    }

    /// The distinct heights decoded between `from` and `to`, in order of appearance.
    fn heights(&self, from: Instant, to: Instant) -> Vec<u64> {
        let mut h: Vec<u64> = Vec::new();
        for s in self.samples.iter().filter(|s| s.at >= from && s.at <= to) {
            if h.last() != Some(&s.height) {
                h.push(s.height);
            }
        }
        h
    }
}

/// Prosody, our bridge and our focus, ready for browsers (kept alive while the test runs).
struct Stack {
    prosody: testkit::Prosody,
    bridge: BridgeProcess,
    _focus: FocusProcess,
}

fn stack() -> Stack {
    let prosody = start_prosody();
    let bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
    Stack {
        prosody,
        bridge,
        _focus: focus,
    }
}

impl Stack {
    /// The bridge's keyframe-request counters (`/metrics` lines naming PLIs, FIRs and throttled
    /// requests), for the record.
    fn keyframe_counters(&self) -> Vec<String> {
        let text = self.bridge.get("/metrics").map(|r| r.1).unwrap_or_default();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| {
                ["pli", "fir", "keyframe", "dominant"]
                    .iter()
                    .any(|k| l.contains(k))
            })
            .map(str::to_owned)
            .collect()
    }
}

/// The sender `s` (720p camera at 15 fps) joins `room`, then each of `others`, one after the
/// other: the pages share Chromium's fake capture device, whose format is set by the first page
/// to open it (a receiver first would give the sender a 180p-based picture). At the fake device's
/// 20 fps, three encodings starve Chromium of CPU on a loaded 2-core machine and its own bandwidth
/// estimate then holds the high layer back. Returns the participants and the sender's endpoint.
async fn sender_first(st: &Stack, room: &str, others: &[&str]) -> (Participants, String) {
    let mut p = Participants::start(&st.prosody, room).await;
    p.join_with("s", json!({"resolution": 720, "frameRate": 15}))
        .await;
    let sender = p.joined("s").await;
    for id in others {
        p.join(id).await;
        p.joined(id).await;
    }
    (p, sender)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_simulcast_receiver_constraints_change_the_decoded_height() {
    let test_start = Instant::now();
    let st = stack();

    let (mut p, sender) = sender_first(&st, "simulcast", &["r"]).await;
    println!("[{:?}] joined", test_start.elapsed());

    let mut w = Watch::new("r", &sender);
    w.decoding(&mut p, "the receiver decodes the sender's video")
        .await;
    println!("[{:?}] video flowing", test_start.elapsed());

    // 1. On stage at 180p: the low layer.
    let t1 = Instant::now();
    p.call("r", "ljmReceive", json!([sender, 180])).await;
    let took = w
        .settles_at_most(&mut p, "180p on stage", 180, Duration::from_secs(15))
        .await;
    println!(
        "[{:?}] 180p asked: decoding {}p after {took:?}",
        test_start.elapsed(),
        w.samples.last().map_or(0, |s| s.height)
    );

    // 2. On stage at 720p: the sender is asked for its high layer, the receiver gets it.
    let t2 = Instant::now();
    p.call("r", "ljmReceive", json!([sender, 720])).await;
    let up = w
        .until(
            &mut p,
            "720p on stage",
            UP_WITHIN,
            Duration::from_secs(2),
            |s| s.height >= 720,
        )
        .await;
    println!(
        "[{:?}] 720p asked: decoding 720p after {up:?} (heights on the way {:?})",
        test_start.elapsed(),
        w.heights(t2, Instant::now())
    );
    let sent: Vec<u64> = w.last["s"]["outbound"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["frameHeight"].as_u64()).collect())
        .unwrap_or_default();
    println!("the sender encodes {sent:?}");
    assert!(
        sent.contains(&720) && sent.iter().any(|h| *h <= 180),
        "the sender encodes simulcast layers: {sent:?}"
    );

    // 3. Back to 180p: steps down.
    let t3 = Instant::now();
    p.call("r", "ljmReceive", json!([sender, 180])).await;
    let down = w
        .settles_at_most(&mut p, "back to 180p", 180, DOWN_WITHIN)
        .await;
    println!(
        "[{:?}] 180p asked again: decoding {}p after {down:?}",
        test_start.elapsed(),
        w.samples.last().map_or(0, |s| s.height)
    );

    // Frames decoded all along: no stall over the three phases and the switches between them.
    let stall = w.longest_stall(t1);
    let r = &w.last["r"]["remote"][sender.as_str()]["video"];
    println!(
        "heights: {:?} | {:?} | {:?}; longest stall {stall:?}; receiver: {} keyframes decoded, {} PLIs sent, {} freezes (Chromium's own count); {:?} in all",
        w.heights(t1, t2),
        w.heights(t2, t3),
        w.heights(t3, Instant::now()),
        r["keyFramesDecoded"],
        r["pliCount"],
        r["freezeCount"],
        test_start.elapsed(),
    );
    assert!(
        stall <= MAX_STALL,
        "video stalled for {stall:?} (samples every {POLL:?})"
    );
    p.quit().await;
}

/// A three-party call: the sender (720p camera) is put on stage by one receiver while the third
/// participant keeps it as a 180p thumbnail, twice. Each time the sender turns its
/// encodings on within [`STAGE_UP_WITHIN`] (the bridge's constraint, applied by the client), the
/// receiver decodes 720p within [`STAGE_UP_WITHIN`] of the sender's high layer flowing steadily,
/// and 180p again within [`STAGE_DOWN_WITHIN`] of leaving the stage, after which the sender turns
/// its upper encodings off; the thumbnail viewer keeps decoding all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_simulcast_on_stage_in_a_three_party_call_reaches_720p_within_3_s() {
    let test_start = Instant::now();
    let st = stack();

    let (mut p, sender) = sender_first(&st, "stage", &["r", "t"]).await;
    println!("[{:?}] joined", test_start.elapsed());

    let mut w = Watch::new("r", &sender);
    let mut thumb = Watch::new("t", &sender);
    w.decoding(&mut p, "the receiver decodes the sender's video")
        .await;
    thumb
        .decoding(&mut p, "the third participant decodes the sender's video")
        .await;
    // Both watch the sender as a thumbnail first.
    p.call("r", "ljmReceive", json!([sender, 180])).await;
    p.call("t", "ljmReceive", json!([sender, 180])).await;
    w.settles_at_most(&mut p, "180p thumbnail", 180, Duration::from_secs(15))
        .await;
    println!(
        "[{:?}] video flowing at 180p; bridge: {:?}",
        test_start.elapsed(),
        st.keyframe_counters()
    );

    let t_first = Instant::now();
    let thumb_frames = thumb.sample(&mut p).await.frames;
    let mut told = Vec::new();
    let mut ramps = Vec::new();
    let mut ups = Vec::new();
    let mut downs = Vec::new();
    for round in 0..2 {
        let t_up = Instant::now();
        p.call("r", "ljmReceive", json!([sender, 720])).await;
        // The bridge's sender constraint reached the client and was applied: every encoding on.
        let on = w
            .until_sender(
                &mut p,
                &format!("round {round}: the sender enables its encodings"),
                STAGE_UP_WITHIN,
                |e| e.len() == 3 && e.iter().all(|x| x.0),
            )
            .await;
        // Its own bandwidth estimate lets the high layer through (Chromium's ramp): 720p frames
        // at a steady rate (at least 5 per second over the last second).
        let ramp = w
            .until_sender(
                &mut p,
                &format!("round {round}: the sender's 720p layer carries frames"),
                SENDER_RAMP_WITHIN,
                |e| e.iter().any(|x| x.0 && x.1 >= 720 && x.3 >= 5),
            )
            .await;
        let t_layer = Instant::now();
        let up = w
            .until(
                &mut p,
                &format!("round {round}: 720p on stage"),
                STAGE_UP_WITHIN,
                Duration::ZERO,
                |s| s.height >= 720,
            )
            .await;
        // It stays there.
        w.until(
            &mut p,
            &format!("round {round}: 720p held"),
            Duration::from_secs(5),
            Duration::from_secs(1),
            |s| s.height >= 720,
        )
        .await;
        println!(
            "[{:?}] round {round}: encodings on after {on:?}, 720p layer after {:?}, decoded 720p {up:?} later ({:?} in all; heights {:?})",
            test_start.elapsed(),
            on + ramp,
            t_layer + up - t_up,
            w.heights(t_up, Instant::now())
        );
        told.push(on);
        ramps.push(on + ramp);
        ups.push(t_layer + up - t_up);
        let t_down = Instant::now();
        p.call("r", "ljmReceive", json!([sender, 180])).await;
        let down = w
            .until(
                &mut p,
                &format!("round {round}: back to 180p"),
                STAGE_DOWN_WITHIN,
                Duration::ZERO,
                |s| s.height > 0 && s.height <= 180,
            )
            .await;
        w.until(
            &mut p,
            &format!("round {round}: 180p held"),
            Duration::from_secs(5),
            Duration::from_secs(1),
            |s| s.height > 0 && s.height <= 180,
        )
        .await;
        // And the sender is told to stop its upper encodings.
        w.until_sender(
            &mut p,
            &format!("round {round}: the sender keeps only its low encoding"),
            STAGE_UP_WITHIN,
            |e| e.iter().filter(|x| x.0).count() == 1,
        )
        .await;
        println!(
            "[{:?}] round {round}: 180p after {down:?} (heights {:?})",
            test_start.elapsed(),
            w.heights(t_down, Instant::now())
        );
        downs.push(down);
    }
    let stall = w.longest_stall(t_first);
    let thumb_now = thumb.sample(&mut p).await;
    let r = &w.last["r"]["remote"][sender.as_str()]["video"];
    println!(
        "sender told and applied {told:?}; its 720p layer after {ramps:?}; 720p decoded after {ups:?}; back to 180p after {downs:?}; longest stall {stall:?}; receiver: {} keyframes decoded, {} PLIs, {} freezes; thumbnail viewer decoded {} frames at {}p meanwhile; {:?} in all",
        r["keyFramesDecoded"],
        r["pliCount"],
        r["freezeCount"],
        thumb_now.frames - thumb_frames,
        thumb_now.height,
        test_start.elapsed(),
    );
    assert!(
        stall <= MAX_STALL,
        "video stalled for {stall:?} (samples every {POLL:?})"
    );
    println!("bridge: {:?}", st.keyframe_counters());
    assert!(
        thumb_now.frames > thumb_frames,
        "the thumbnail viewer kept decoding"
    );
    p.quit().await;
}

/// Four participants join at once (the joins overlap: sources are added while others are still
/// setting up). However the source additions and the media race, no participant receives a video
/// stream on an SSRC it was not told about: every video stream its browser decodes is one of its
/// remote tracks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_four_party_join_no_video_stream_outside_the_remote_tracks() {
    let st = stack();
    let mut p = Participants::start(&st.prosody, "four").await;
    let ids = ["a", "b", "c", "d"];
    let (_endpoints, took) = p.join_with_media(&ids).await;
    println!("media between all four after {took:?}");
    // Let the streams run a little (late strays would show up here too).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = p.stats().await;
    let mut stray = Vec::new();
    for id in ids {
        let tracks: Vec<u64> = s[id]["remote"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|v| v["video"]["ssrc"].as_u64())
                    .collect()
            })
            .unwrap_or_default();
        let inbound = s[id]["inboundVideo"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!("{id}: remote video tracks {tracks:?}; inbound video {inbound:?}");
        for v in inbound {
            let ssrc = v["ssrc"].as_u64().unwrap_or(0);
            if !tracks.contains(&ssrc) && v["bytesReceived"].as_u64().unwrap_or(0) > 0 {
                stray.push(format!("{id}: {v}"));
            }
        }
    }
    assert!(
        stray.is_empty(),
        "video streams outside the remote tracks: {stray:?}"
    );
    p.quit().await;
}
