//! Deterministic simulations (virtual time, no sockets) of the bridge core with simulcast senders
//! and receivers behind links of limited capacity: layer selection follows each receiver's
//! bandwidth estimate (built from its transport-cc feedback), switches are seamless, last-N and
//! maxHeight 0 are honoured and senders are told what to send. See `sim/` for the models.

mod sim;

use std::time::{Duration, Instant};

use bridge::sfu::SfuConfig;
use serde_json::json;
use sim::{ClientConfig, Link, World};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A fast, clean path (the senders' uplinks and unconstrained downlinks).
fn lan() -> Link {
    Link::new(None, ms(10))
}

/// Asserts every stream every client received is one continuous RTP stream (gaps only where
/// that client's downlink lost packets); returns the total of gaps (real losses not recovered).
fn assert_streams_continuous(w: &World) -> usize {
    let mut gaps = 0;
    for (i, c) in w.clients.iter().enumerate() {
        for (&ssrc, s) in &c.streams {
            let (errors, g) = s.check_continuity(ssrc, &w.downlink_lost[i]);
            assert!(
                errors.is_empty(),
                "{}'s view of {ssrc}: {} problems, first: {:?}",
                c.cfg.id,
                errors.len(),
                &errors[..errors.len().min(5)]
            );
            gaps += g;
        }
    }
    gaps
}

fn heights(w: &World, r: usize, s: usize, from: Instant, to: Instant) -> Vec<u16> {
    let mut h: Vec<u16> = w.clients[r]
        .stream_of(&w.clients[s].cfg)
        .map(|st| st.rendered(from, to).map(|x| x.1).collect())
        .unwrap_or_default();
    h.sort_unstable();
    h.dedup();
    h
}

/// Runs for `d`, printing every 500 ms what receiver `r` gets of sender `s` (with SIM_TRACE set).
fn trace(w: &mut World, r: usize, s: usize, d: Duration) {
    let end = w.now + d;
    let verbose = std::env::var_os("SIM_TRACE").is_some();
    let step = std::env::var("SIM_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    while w.now < end {
        let before = w.clients[r].downlink.bytes;
        let renders = w.clients[r]
            .stream_of(&w.clients[s].cfg)
            .map_or(0, |v| v.renders.len());
        w.run_for(ms(step));
        if !verbose {
            continue;
        }
        let a = w.sfu.allocation(w.clients[r].handle);
        let target = a
            .and_then(|a| a.sources.first())
            .and_then(|x| x.target)
            .map(|l| (l.encoding, l.temporal));
        let v = w.clients[r].stream_of(&w.clients[s].cfg);
        let e = w.sfu.downlink_estimate(w.clients[r].handle);
        eprintln!(
            "t={:5.1} link {:5} kbps queue {:3} ms drops {:4} | est {:?} | target {:?} ideal {} kbps | rendered {:3} (h {:?}) broken {} skipped {} plis {}",
            w.secs(w.now),
            (w.clients[r].downlink.bytes - before) * 8 * 1000 / step / 1000,
            w.clients[r].downlink.queue_delay(w.now).as_millis(),
            w.clients[r].downlink.lost_queue,
            e.map(|e| (
                e.estimate_bps / 1000,
                e.delay_based_bps / 1000,
                e.acknowledged_bps.map(|a| a / 1000),
                (e.loss_fraction * 100.0) as u32,
                e.probes_started,
                e.probes_succeeded
            )),
            target,
            a.map_or(0, |a| a.ideal_bps / 1000),
            v.map_or(0, |v| v.renders.len()) - renders,
            v.and_then(|v| v.renders.last()).map(|x| x.1),
            v.map_or(0, |v| v.broken),
            v.map_or(0, |v| v.skipped),
            v.map_or(0, |v| v.plis),
        );
    }
}

/// The receiver-side story of the issue: a receiver watching a simulcast sender on stage, behind a
/// link of 300 kbps, then 3 Mbps, then 500 kbps.
#[test]
fn sim_receiver_follows_its_link_capacity() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(42);
    let mut w = World::new(SfuConfig::default(), seed);
    let s = w.join(
        ClientConfig::camera("sender", 1000).speaking(Duration::ZERO, Some(30)),
        lan(),
        lan(),
    );
    let r = w.join(
        ClientConfig::receive_only("viewer", 2000),
        lan(),
        Link::new(Some(300_000), ms(25)).jitter(ms(5)).loss(0.001),
    );
    w.send_text(
        r,
        json!({"colibriClass":"ReceiverVideoConstraints","lastN":-1,
               "onStageSources":["sender-v0"],"defaultConstraints":{"maxHeight":180},
               "constraints":{"sender-v0":{"maxHeight":720}}}),
    );
    let t0 = w.now;

    // 1. 300 kbps: the 180p encoding from the start, no freeze.
    trace(&mut w, r, s, secs(20));
    let phase1_end = w.now;
    let view = w.clients[r].stream_of(&w.clients[s].cfg).expect("video");
    let first = view
        .renders
        .first()
        .map(|x| x.0)
        .expect("rendered something");
    let freeze1 = view.longest_freeze(first, phase1_end);
    let h1 = heights(&w, r, s, t0, phase1_end);
    eprintln!(
        "300 kbps: first frame after {} ms, heights {h1:?}, longest freeze {} ms, link queue drops {}",
        (first - t0).as_millis(),
        freeze1.as_millis(),
        w.clients[r].downlink.lost_queue
    );
    assert_eq!(h1, vec![180], "on the low layer");
    assert!(first - t0 <= secs(1), "first frame after {:?}", first - t0);
    assert!(freeze1 <= ms(500), "freeze {} ms", freeze1.as_millis());

    // 2. 3 Mbps: up to 720p within 5 s.
    w.clients[r].downlink.capacity_bps = Some(3_000_000);
    let raised = w.now;
    trace(&mut w, r, s, secs(15));
    let view = w.clients[r].stream_of(&w.clients[s].cfg).expect("video");
    let up = view.first_render(raised, |h| h >= 720).map(|t| t - raised);
    let freeze2 = view.longest_freeze(raised, w.now);
    eprintln!(
        "3 Mbps: 720p after {:?} ms, longest freeze {} ms",
        up.map(|d| d.as_millis()),
        freeze2.as_millis()
    );
    assert!(
        up.is_some_and(|d| d <= secs(5)),
        "reached 720p after {up:?}"
    );
    assert_eq!(heights(&w, r, s, w.now - secs(5), w.now), vec![720]);
    assert!(freeze2 <= ms(500), "freeze {} ms", freeze2.as_millis());

    // 3. Cut to 500 kbps: steps down within 2 s.
    w.clients[r].downlink.capacity_bps = Some(500_000);
    let cut = w.now;
    trace(&mut w, r, s, secs(15));
    let view = w.clients[r].stream_of(&w.clients[s].cfg).expect("video");
    // Stepped down: the lower layer reaches the receiver (its keyframe arrives). It renders once
    // the keyframe is complete: packets of it lost in the overflowing queue come by RTX first.
    let switched = view
        .packets
        .values()
        .filter(|p| p.at >= cut && p.keyframe && p.size.is_some_and(|(_, h)| h < 720))
        .map(|p| p.at)
        .min()
        .map(|t| t - cut);
    let rendered = view.first_render(cut, |h| h < 720).map(|t| t - cut);
    let freeze3 = view.longest_freeze(cut, w.now);
    let h3 = heights(&w, r, s, w.now - secs(5), w.now);
    eprintln!(
        "500 kbps: lower layer received after {:?} ms, rendered after {:?} ms, longest freeze {} ms, heights in the last 5 s {h3:?}",
        switched.map(|d| d.as_millis()),
        rendered.map(|d| d.as_millis()),
        freeze3.as_millis(),
    );
    assert!(
        switched.is_some_and(|d| d <= secs(2)),
        "stepped down after {switched:?}"
    );
    assert!(
        rendered.is_some_and(|d| d <= ms(2500)),
        "rendered after {rendered:?}"
    );
    assert!(h3.iter().all(|h| *h < 720), "{h3:?}");

    let gaps = assert_streams_continuous(&w);
    let c = &w.clients[r];
    eprintln!(
        "receiver: {} RTX packets ({} padding), {} PLIs, unrecovered gaps {gaps}; sender keyframes {}, NACKs answered {}; bridge counters: {:?}",
        c.rtx_received,
        c.padding_received,
        c.streams.values().map(|s| s.plis).sum::<u32>(),
        w.clients[s].keyframes_sent,
        w.clients[s].nacks_answered,
        w.sfu
            .counters()
            .stats()
            .filter(|(_, v)| *v > 0)
            .collect::<Vec<_>>()
    );
}

/// The last `class` message a client got.
fn last_text<'a>(w: &'a World, c: usize, class: &str) -> Option<&'a serde_json::Value> {
    w.clients[c].texts_of(class).last().copied()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    s.sort();
    s
}

/// Whether `r` received any video packet of `s` in [from, to).
fn got_video(w: &World, r: usize, s: usize, from: Instant, to: Instant) -> usize {
    w.clients[r].stream_of(&w.clients[s].cfg).map_or(0, |v| {
        v.packets
            .values()
            .filter(|p| p.at >= from && p.at < to)
            .count()
    })
}

/// Four people, one viewer with last-N 1: the viewer gets the dominant speaker's video only, and
/// follows when someone else takes over.
#[test]
fn sim_last_n_1_forwards_only_the_dominant_speaker() {
    let mut w = World::new(SfuConfig::default(), 7);
    let link = || Link::new(Some(5_000_000), ms(20)).jitter(ms(3)).loss(0.001);
    let a = w.join(
        ClientConfig::camera("alice", 1000)
            .speaking(Duration::ZERO, Some(25))
            .speaking(secs(8), None),
        lan(),
        link(),
    );
    let b = w.join(
        ClientConfig::camera("bob", 2000).speaking(secs(8), Some(25)),
        lan(),
        link(),
    );
    let c = w.join(ClientConfig::camera("carol", 3000), lan(), link());
    let r = w.join(ClientConfig::receive_only("viewer", 4000), lan(), link());
    // The 2021 client's form of last-N.
    w.send_text(r, json!({"colibriClass":"LastNChangedEvent","lastN":1}));
    w.send_text(
        r,
        json!({"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":360}}),
    );
    let t0 = w.now;
    w.run_for(secs(7));

    let dom = last_text(&w, r, "DominantSpeakerEndpointChangeEvent").expect("speaker event");
    assert_eq!(dom["dominantSpeakerEndpoint"], "alice");
    let fwd = last_text(&w, r, "ForwardedSources").expect("forwarded set");
    assert_eq!(strings(&fwd["forwardedSources"]), vec!["alice-v0"]);
    let ln = last_text(&w, r, "LastNEndpointsChangeEvent").expect("2021 forwarded set");
    assert_eq!(strings(&ln["lastNEndpoints"]), vec!["alice"]);
    let (from, to) = (t0 + secs(4), w.now);
    let (ga, gb, gc) = (
        got_video(&w, r, a, from, to),
        got_video(&w, r, b, from, to),
        got_video(&w, r, c, from, to),
    );
    eprintln!(
        "alice speaking: viewer got {ga} packets of alice's video, {gb} of bob's, {gc} of carol's"
    );
    assert!(ga > 100 && gb == 0 && gc == 0);
    // Everyone else (no last-N) gets every other video.
    assert!(got_video(&w, c, a, from, to) > 0 && got_video(&w, c, b, from, to) > 0);

    // Bob takes over from 8 s.
    w.run_for(secs(8));
    let dom = last_text(&w, r, "DominantSpeakerEndpointChangeEvent").expect("speaker event");
    assert_eq!(dom["dominantSpeakerEndpoint"], "bob");
    assert_eq!(strings(&dom["previousSpeakers"]), vec!["alice"]);
    let fwd = last_text(&w, r, "ForwardedSources").expect("forwarded set");
    assert_eq!(strings(&fwd["forwardedSources"]), vec!["bob-v0"]);
    let switched_at = w.clients[r]
        .texts
        .iter()
        .find(|(t, v)| {
            *t >= t0 + secs(8)
                && v["colibriClass"] == "ForwardedSources"
                && strings(&v["forwardedSources"]) == vec!["bob-v0".to_string()]
        })
        .map(|(t, _)| *t)
        .expect("switch announced");
    eprintln!(
        "bob dominant: forwarded set switched {:.2} s after he started talking",
        (switched_at - t0 - secs(8)).as_secs_f64()
    );
    assert!(switched_at - t0 - secs(8) <= secs(3));
    let (from, to) = (w.now - secs(3), w.now);
    assert!(got_video(&w, r, b, from, to) > 100);
    assert_eq!(got_video(&w, r, a, from, to), 0);
    assert_eq!(got_video(&w, r, c, from, to), 0);
    let view = w.clients[r]
        .stream_of(&w.clients[b].cfg)
        .expect("bob's video");
    assert!(view.rendered(from, to).count() > 60, "bob's video plays");
    assert_streams_continuous(&w);
}

/// maxHeight 0 (2021 endpoint-id form): nothing is forwarded, and the sender, whose only viewer
/// does not want its video, is told to stop (both dialects); asking for 360p again brings it back.
#[test]
fn sim_max_height_zero_forwards_nothing_and_tells_the_sender() {
    let mut w = World::new(SfuConfig::default(), 11);
    let s = w.join(ClientConfig::camera("sender", 1000), lan(), lan());
    let r = w.join(
        ClientConfig::receive_only("viewer", 2000),
        lan(),
        Link::new(Some(3_000_000), ms(20)).jitter(ms(3)),
    );
    w.send_text(
        r,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"sender":{"maxHeight":0}}}),
    );
    w.run_for(secs(1));
    let t_off = w.now;
    w.run_for(secs(4));
    let ssc = last_text(&w, s, "SenderSourceConstraints").expect("source constraints");
    assert_eq!(
        (&ssc["sourceName"], &ssc["maxHeight"]),
        (&json!("sender-v0"), &json!(0))
    );
    let svc = last_text(&w, s, "SenderVideoConstraints").expect("2021 constraints");
    assert_eq!(svc["videoConstraints"]["idealHeight"], 0);
    let fwd = last_text(&w, r, "ForwardedSources").expect("forwarded set");
    assert!(strings(&fwd["forwardedSources"]).is_empty());
    assert_eq!(got_video(&w, r, s, t_off, w.now), 0, "nothing forwarded");
    assert_eq!(w.clients[s].max_height, 0, "the sender stopped encoding");

    // 360p again: the sender is told, re-enables its encodings, the viewer sees 360p.
    w.send_text(
        r,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"sender":{"maxHeight":360}}}),
    );
    let on = w.now;
    w.run_for(secs(5));
    let ssc = last_text(&w, s, "SenderSourceConstraints").expect("source constraints");
    assert_eq!(ssc["maxHeight"], 360);
    let svc = last_text(&w, s, "SenderVideoConstraints").expect("2021 constraints");
    assert_eq!(svc["videoConstraints"]["idealHeight"], 360);
    let view = w.clients[r].stream_of(&w.clients[s].cfg).expect("video");
    let first360 = view.first_render(on, |h| h == 360).map(|t| t - on);
    eprintln!(
        "maxHeight 360 again: 360p rendered after {:?} ms",
        first360.map(|d| d.as_millis())
    );
    assert!(first360.is_some_and(|d| d <= secs(2)), "{first360:?}");
    assert_eq!(heights(&w, r, s, w.now - secs(2), w.now), vec![360]);
    assert_streams_continuous(&w);
}

/// Three senders, two viewers in tile view behind lossy, jittery links: every stream each viewer
/// gets stays one continuous RTP stream (gaps only for packets the link lost and NACK did not
/// recover), and video keeps playing.
#[test]
fn sim_lossy_links_keep_every_stream_continuous() {
    let mut w = World::new(SfuConfig::default(), 23);
    let lossy = || Link::new(Some(4_000_000), ms(30)).jitter(ms(15)).loss(0.02);
    let senders: Vec<usize> = ["ann", "ben", "cid"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            w.join(
                ClientConfig::camera(id, 1000 * (i as u32 + 1))
                    .speaking(secs(4 * i as u64), Some(30))
                    .speaking(secs(4 * i as u64 + 4), None),
                lan(),
                lossy(),
            )
        })
        .collect();
    let viewers: Vec<usize> = ["v1", "v2"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            w.join(
                ClientConfig::receive_only(id, 10_000 * (i as u32 + 1)),
                lan(),
                lossy(),
            )
        })
        .collect();
    for &v in &viewers {
        w.send_text(
            v,
            json!({"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":360}}),
        );
    }
    let t0 = w.now;
    w.run_for(secs(20));
    let gaps = assert_streams_continuous(&w);
    for &v in &viewers {
        for &s in &senders {
            let view = w.clients[v].stream_of(&w.clients[s].cfg).expect("video");
            let frames = view.rendered(t0 + secs(3), w.now).count();
            let freeze = view.longest_freeze(t0 + secs(3), w.now);
            eprintln!(
                "{} sees {}: {frames} frames in 17 s, longest freeze {} ms, heights {:?}",
                w.clients[v].cfg.id,
                w.clients[s].cfg.id,
                freeze.as_millis(),
                heights(&w, v, s, t0 + secs(3), w.now)
            );
            assert!(frames > 17 * 20, "{frames} frames");
            assert!(freeze <= secs(1), "freeze {} ms", freeze.as_millis());
        }
        assert!(w.clients[v].rtx_received > 0, "losses were repaired");
    }
    eprintln!(
        "unrecovered gaps {gaps}; link losses {:?}",
        viewers
            .iter()
            .map(|&v| w.clients[v].downlink.lost_random + w.clients[v].downlink.lost_queue)
            .collect::<Vec<_>>()
    );
}
