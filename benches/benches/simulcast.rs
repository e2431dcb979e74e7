//! Simulcast costs: the allocation (one receiver with 49 sources; a whole 50-endpoint conference;
//! one receiver's bandwidth change inside it) and the per-packet VP8 work (descriptor parse, the
//! projection's decision, the descriptor rewrite, and all of it with the egress packet build).
//!
//! `cargo bench -p benches --bench simulcast -- --warm-up-time 1 --measurement-time 5` (release, this
//! shared 2-core machine, medians): one receiver with 49 sources 7.3 µs at 5 Mbps, 6.5 µs at 1 Mbps;
//! a whole 50-endpoint conference (a constraint change: JSON parse, 50 receivers × 49 sources
//! allocated, forwarded sets and sender constraints announced) 315 µs; one receiver's bandwidth
//! change in it 17.6 µs. Per VP8 packet: descriptor parse 20 ns, PictureID/TL0PICIDX rewrite 2 ns,
//! projection decision 18 ns, decision + egress packet build + descriptor rewrite 61 ns.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::{Fixture, TCC_ID, VP8, ssrcs};
use bridge::sfu::allocation::{
    self, AllocConfig, LayerInfo, ReceiverInput, SourceInput, VideoConstraints,
};
use bridge::sfu::codec::{self, Codec};
use bridge::sfu::projection::{Projection, Target, VideoPacket};
use bridge::sfu::rtp::{self, ExtMap, Rewrite, RtpPacket};
use bridge::sfu::vp8;
use bridge::sfu::{Output, SfuConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use signaling::sources::VideoType;

/// Chrome-like measured layers of a 3-encoding simulcast source (150/450/1500 kbps, 40/20/40 %).
fn layers() -> Vec<LayerInfo> {
    let mut v = Vec::new();
    for (e, rate) in [150_000u64, 450_000, 1_500_000].iter().enumerate() {
        for (t, share) in [40u64, 60, 100].iter().enumerate() {
            v.push(LayerInfo {
                encoding: e as u8,
                temporal: t as u8,
                height: 180 << e,
                fps: 7.5 * (1 << t) as f32,
                bitrate_bps: rate * share / 100,
            });
        }
    }
    v
}

fn allocation_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("allocation");

    // Pure function: one receiver, 49 sources in speaker order, one on stage.
    let names: Vec<(String, String)> = (0..49)
        .map(|i| (format!("ep{i:04}-v0"), format!("ep{i:04}")))
        .collect();
    let l = layers();
    let inputs: Vec<SourceInput<'_>> = names
        .iter()
        .enumerate()
        .map(|(i, (n, o))| SourceInput {
            slot: i as u32,
            name: n,
            owner: o,
            video_type: VideoType::Camera,
            layers: &l,
        })
        .collect();
    let mut constraints = HashMap::new();
    constraints.insert("ep0007-v0".to_string(), VideoConstraints::max_height(720));
    let on_stage = vec!["ep0007-v0".to_string()];
    let cfg = AllocConfig::default();
    for (label, bw) in [("5mbps", 5_000_000u64), ("1mbps", 1_000_000)] {
        let rin = ReceiverInput {
            last_n: -1,
            on_stage: &on_stage,
            selected: &[],
            default_constraints: VideoConstraints::max_height(180),
            constraints: &constraints,
            bandwidth_bps: bw,
        };
        g.bench_function(format!("one_receiver_49_sources_{label}"), |b| {
            b.iter(|| black_box(allocation::allocate(black_box(&inputs), &rin, &cfg)))
        });
    }

    // Inside the core: a 50-endpoint conference, every endpoint sending 3-encoding simulcast with
    // measured layers.
    let mut f = Fixture::with_config(49, SfuConfig::default());
    let mut sink = |_: Output<'_>| {};
    let mut pkts: Vec<Vec<(u32, Vec<u8>)>> = Vec::new();
    for i in 0..50u32 {
        let (_, sim, _) = ssrcs(i);
        pkts.push(
            sim.iter()
                .enumerate()
                .map(|(e, s)| (*s, benches::rtp_packet(VP8, 0, 0, *s, false, 200 << e)))
                .collect(),
        );
    }
    let all: Vec<_> = std::iter::once(f.sender)
        .chain(f.receivers.iter().copied())
        .collect();
    // 1.5 s of media (one packet per encoding per 20 ms) so every layer is measured.
    for step in 0..75u16 {
        f.now += Duration::from_millis(20);
        for (i, h) in all.iter().enumerate() {
            for (_, p) in pkts[i].iter_mut() {
                benches::set_seq_ts(p, step, u32::from(step) * 1800);
                f.sfu.handle_rtp(f.now, *h, p, &mut sink);
            }
        }
    }
    f.sfu.handle_timeout(f.now, &mut sink);
    let r = f.receivers[3];
    let msgs = [
        r#"{"colibriClass":"ReceiverVideoConstraints","onStageSources":["ep0007-v0"],"defaultConstraints":{"maxHeight":180},"constraints":{"ep0007-v0":{"maxHeight":720}}}"#,
        r#"{"colibriClass":"ReceiverVideoConstraints","onStageSources":["ep0009-v0"],"defaultConstraints":{"maxHeight":180},"constraints":{"ep0009-v0":{"maxHeight":720}}}"#,
    ];
    let mut k = 0usize;
    g.bench_function("conference_50_endpoints_full", |b| {
        b.iter(|| {
            k += 1;
            // A changed constraint re-allocates for every receiver (and the sender constraints).
            f.sfu
                .handle_channel_message(f.now, r, msgs[k % 2], &mut sink);
        })
    });
    let mut k = 0u64;
    g.bench_function("conference_50_endpoints_one_receiver_bwe", |b| {
        b.iter(|| {
            k += 1;
            // Alternating estimates (more than 15 % apart) re-allocate for that receiver.
            let bps = if k.is_multiple_of(2) {
                1_000_000
            } else {
                3_000_000
            };
            f.sfu.set_bandwidth_estimate(f.now, r, bps, &mut sink);
        })
    });
    g.finish();
}

/// A VP8 stream as Chrome sends one encoding: 4 packets per frame, temporal pattern 0-2-1-2,
/// 15-bit PictureIDs; the first frame is a keyframe.
fn vp8_stream(frames: usize, payload: usize) -> Vec<(Vec<u8>, u16, u32, bool)> {
    let mut v = Vec::new();
    let mut seq = 1000u16;
    let mut tl0 = 0u8;
    for f in 0..frames {
        let tid = if f == 0 { 0 } else { [0u8, 2, 1, 2][f % 4] };
        if tid == 0 {
            tl0 = tl0.wrapping_add(1);
        }
        let ts = 3000 * f as u32;
        for k in 0..4 {
            let mut p = Vec::new();
            vp8::Descriptor {
                start_of_partition: k == 0,
                partition_id: 0,
                non_reference: tid == 2,
                picture_id: Some(((f as u16) & 0x7fff, true)),
                tl0picidx: Some(tl0),
                tid: Some((tid, tid > 0)),
                key_idx: None,
            }
            .write(&mut p);
            if k == 0 {
                vp8::write_frame_header(&mut p, f == 0, 640, 360);
            }
            p.resize(payload, 0x5a);
            let mut pkt = vec![0x90, VP8 | if k == 3 { 0x80 } else { 0 }];
            pkt.extend_from_slice(&seq.to_be_bytes());
            pkt.extend_from_slice(&ts.to_be_bytes());
            pkt.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            pkt.extend_from_slice(&[0xBE, 0xDE, 0, 1, (TCC_ID << 4) | 1, 0, 7, 0]);
            pkt.extend_from_slice(&p);
            v.push((pkt, seq, ts, k == 3));
            seq = seq.wrapping_add(1);
        }
    }
    v
}

fn vp8_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("vp8");
    let stream = vp8_stream(1024, 1160);
    let parsed: Vec<RtpPacket<'_>> = stream
        .iter()
        .map(|(p, ..)| RtpPacket::parse(p).expect("rtp"))
        .collect();

    let mut i = 0usize;
    g.bench_function("parse_descriptor", |b| {
        b.iter(|| {
            i = (i + 1) % parsed.len();
            black_box(codec::inspect(Codec::Vp8, black_box(parsed[i].payload())))
        })
    });

    let mut buf = parsed[5].payload().to_vec();
    let h = vp8::parse(&buf).expect("vp8");
    let mut n = 0u16;
    g.bench_function("rewrite_descriptor", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            vp8::rewrite(black_box(&mut buf), &h, n & 0x7fff, n as u8);
        })
    });

    // The projection's per-packet decision (frame tracking, temporal filtering, offsets),
    // forwarding temporal layers 0-1 of the stream (TL2 frames dropped and collapsed).
    let infos: Vec<_> = parsed
        .iter()
        .map(|p| codec::inspect(Codec::Vp8, p.payload()))
        .collect();
    let t0 = Instant::now();
    let new_projection = || {
        let mut p = Projection::new_video(0, 0x1111, Some(0x2222), 0);
        p.target = Target::layer(0, 1);
        p
    };
    let mut proj = new_projection();
    let mut i = 0usize;
    g.bench_function("projection_decision", |b| {
        b.iter(|| {
            if i == stream.len() {
                i = 0;
                proj = new_projection();
            }
            let (_, seq, ts, marker) = stream[i];
            let vp = VideoPacket {
                encoding: 0,
                seq,
                timestamp: ts,
                marker,
                info: &infos[i],
                stream: None,
            };
            let now = t0 + Duration::from_millis(i as u64 * 8);
            i += 1;
            black_box(proj.video(now, &vp))
        })
    });

    // Everything the forwarding path does per packet and receiver for VP8: decision, egress
    // packet build (SSRC/seq/timestamp/extensions), PictureID/TL0PICIDX rewrite.
    let ext = ExtMap {
        keep: [(0, 0); 2],
        tcc_out: TCC_ID,
        allow_two_byte: false,
        mid: Default::default(),
    };
    let mut out = Vec::with_capacity(1600);
    let mut proj = new_projection();
    let mut i = 0usize;
    let mut tcc = 0u16;
    g.bench_function("forward_and_rewrite_per_packet", |b| {
        b.iter(|| {
            if i == stream.len() {
                i = 0;
                proj = new_projection();
            }
            let pkt = &parsed[i];
            let info = codec::inspect(Codec::Vp8, pkt.payload());
            let vp = VideoPacket {
                encoding: 0,
                seq: pkt.sequence_number(),
                timestamp: pkt.timestamp(),
                marker: pkt.marker(),
                info: &info,
                stream: None,
            };
            let now = t0 + Duration::from_millis(i as u64 * 8);
            i += 1;
            if let Some(r) = proj.video(now, &vp) {
                tcc = tcc.wrapping_add(1);
                rtp::write_forwarded(
                    pkt,
                    &Rewrite {
                        ssrc: proj.egress_ssrc,
                        seq: r.seq,
                        timestamp: r.timestamp,
                        payload_type: VP8,
                        ext: &ext,
                        tcc_seq: tcc,
                        replace: None,
                    },
                    &mut out,
                );
                let off = out.len() - (pkt.as_bytes().len() - pkt.header_len());
                r.payload.apply(&info.frame, &mut out, off);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(simulcast, allocation_benches, vp8_benches);
criterion_main!(simulcast);
