//! The whole core path per ingress packet for an AV1 SVC sender (Chromium's `L3T3_KEY`, one SSRC,
//! Dependency Descriptor) to N = 1, 10, 50 receivers, next to VP8 simulcast's: parse, the
//! descriptor parsed once against the sender stream's structure, per-decode-target measurement,
//! each receiver's decode-target decision and rewrite (sequence number, frame number, template
//! ids, active decode targets written into the egress descriptor), hand to sink.
//!
//! `cargo bench -p benches --bench svc_path -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Duration;

use benches::svc::{self, AV1_FRAME_NUMBER_AT};
use benches::{Fixture, VP8, rtp_packet, set_seq_ts, ssrcs};
use bridge::sfu::{Output, SfuConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const VIDEO_PAYLOAD: usize = 1100;
/// Temporal units replayed (a keyframe every 300).
const TUS: usize = 600;

fn sink(n: &mut usize) -> impl FnMut(Output<'_>) + '_ {
    move |o| {
        if let Output::Rtp { packet, .. } | Output::Rtcp { packet, .. } = o {
            *n += black_box(packet.len());
        }
    }
}

/// Every receiver asks for the sender's source at `max_height`, with enough bandwidth for 720p
/// (an assumed bandwidth: the bench sends no transport-cc feedback).
fn constrain(f: &mut Fixture, max_height: u32) {
    let mut n = 0;
    let msg = format!(
        r#"{{"colibriClass":"ReceiverVideoConstraints","onStageSources":["ep0000-v0"],"defaultConstraints":{{"maxHeight":{max_height}}},"constraints":{{"ep0000-v0":{{"maxHeight":{max_height}}}}},"assumedBandwidthBps":10000000}}"#
    );
    for r in f.receivers.clone() {
        f.sfu
            .handle_channel_message(f.now, r, &msg, &mut sink(&mut n));
    }
}

/// The AV1 stream replayed without end: sequence numbers, timestamps and frame numbers keep
/// growing across replays.
struct Replay {
    packets: Vec<Vec<u8>>,
    at: usize,
    cycle: u32,
    seq: u16,
}

impl Replay {
    fn new() -> Self {
        let structure = svc::chrome_av1_structure();
        let packets = svc::av1_stream(&structure, TUS)
            .iter()
            .map(|p| svc::av1_rtp(p, ssrcs(0).1[0], VIDEO_PAYLOAD))
            .collect();
        Replay {
            packets,
            at: 0,
            cycle: 0,
            seq: 0,
        }
    }

    fn next(&mut self) -> &[u8] {
        if self.at == self.packets.len() {
            self.at = 0;
            self.cycle += 1;
            let frames = (TUS * 3) as u16;
            let ts = (TUS as u32) * 3000;
            for p in &mut self.packets {
                let f = u16::from_be_bytes([p[AV1_FRAME_NUMBER_AT], p[AV1_FRAME_NUMBER_AT + 1]]);
                p[AV1_FRAME_NUMBER_AT..AV1_FRAME_NUMBER_AT + 2]
                    .copy_from_slice(&f.wrapping_add(frames).to_be_bytes());
                let t = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
                p[4..8].copy_from_slice(&t.wrapping_add(ts).to_be_bytes());
            }
        }
        self.seq = self.seq.wrapping_add(1);
        let p = &mut self.packets[self.at];
        p[2..4].copy_from_slice(&self.seq.to_be_bytes());
        self.at += 1;
        p
    }
}

fn av1_fixture(receivers: usize, max_height: u32) -> (Fixture, Replay) {
    let mut f = Fixture::with_media(
        receivers,
        SfuConfig {
            assumed_bandwidth_limit: Some(100_000_000),
            ..SfuConfig::default()
        },
        svc::av1_params(),
        svc::svc_sources,
    );
    constrain(&mut f, max_height);
    let mut r = Replay::new();
    // Warm up over 4 s of media: layers measured, allocation settled, projections at the target.
    let mut n = 0;
    for i in 0..TUS * 2 {
        f.now += Duration::from_millis(33);
        if let Some(t) = f.sfu.poll_timeout()
            && t <= f.now
        {
            f.sfu.handle_timeout(f.now, &mut sink(&mut n));
        }
        for _ in 0..(r.packets.len() / TUS).max(1) {
            let p = r.next().to_vec();
            f.sfu.handle_rtp(f.now, f.sender, &p, &mut sink(&mut n));
        }
        if i == 0 {
            constrain(&mut f, max_height);
        }
    }
    // What the receivers get now, per ingress packet (printed with the figures).
    let mut copies = 0usize;
    let mut count = |o: Output<'_>| copies += usize::from(matches!(o, Output::Rtp { .. }));
    for _ in 0..r.packets.len() {
        let p = r.next().to_vec();
        f.sfu.handle_rtp(f.now, f.sender, &p, &mut count);
    }
    let per_packet = copies as f64 / r.packets.len() as f64;
    assert!(per_packet > 0.0, "the receivers get the stream");
    eprintln!("{receivers} receivers at {max_height}p: {per_packet:.2} copies per ingress packet");
    (f, r)
}

fn svc_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("svc_path");
    g.throughput(Throughput::Elements(1));
    for receivers in [1usize, 10, 50] {
        for (name, height) in [("av1_l3t3_key_720p", 720u32), ("av1_l3t3_key_180p", 180)] {
            let (mut f, mut r) = av1_fixture(receivers, height);
            let mut n = 0usize;
            g.bench_with_input(BenchmarkId::new(name, receivers), &receivers, |b, _| {
                b.iter(|| {
                    let p = r.next();
                    f.sfu.handle_rtp(f.now, f.sender, p, &mut sink(&mut n));
                })
            });
        }
        let mut f = Fixture::new(receivers);
        let (_, sim, _) = ssrcs(0);
        let mut video = rtp_packet(VP8, 0, 0, sim[0], false, VIDEO_PAYLOAD);
        let mut n = 0usize;
        let mut seq = 0u16;
        g.bench_with_input(
            BenchmarkId::new("vp8_simulcast", receivers),
            &receivers,
            |b, _| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    set_seq_ts(&mut video, seq, u32::from(seq) * 3000);
                    f.sfu.handle_rtp(f.now, f.sender, &video, &mut sink(&mut n));
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, svc_path);
criterion_main!(benches);
