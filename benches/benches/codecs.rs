//! Per-packet costs of the SVC codec building blocks (issue 10): the AV1 Dependency Descriptor
//! (`bridge::sfu::av1`) and the VP9 payload descriptor (`bridge::sfu::vp9`). "parse" is the once
//! per ingress packet work ([`DdSource::parse`], [`Vp9Source::parse`]); "rewrite" the per
//! receiver work: the projection's decision and the descriptor written for the egress packet.
//! Streams are Chromium 156's `L3T3_KEY` (AV1: its captured structure and template order; VP9: its
//! flexible-mode descriptors) at 30 fps, three spatial layers, 1-3 packets per frame.
//!
//! `cargo bench -p benches --bench codecs -- --warm-up-time 1 --measurement-time 3` (release,
//! this shared 2-core machine, medians): see the report in the commit that added this file.

use std::hint::black_box;
use std::time::{Duration, Instant};

use benches::svc::{av1_stream, captured, vp9_stream};
use bridge::sfu::av1::DdSource;
use bridge::sfu::av1::descriptor::MAX_LEN;
use bridge::sfu::projection::{DdConfig, DdPacket, DdProjection, DdTarget, Layered};
use bridge::sfu::projection::{Vp9Config, Vp9Packet, Vp9Projection, Vp9Target};
use bridge::sfu::vp8;
use bridge::sfu::vp9::Vp9Source;
use bridge::sfu::vp9::descriptor as vp9d;
use criterion::{Criterion, criterion_group, criterion_main};

/// The VP8 descriptor parse of `benches/benches/simulcast.rs` (20 ns on a quiet machine), measured
/// in the same run: this machine is shared, and the ratio to it is what carries over.
fn reference_bench(c: &mut Criterion) {
    let mut p = Vec::new();
    vp8::Descriptor {
        start_of_partition: true,
        partition_id: 0,
        non_reference: false,
        picture_id: Some((0x1234, true)),
        tl0picidx: Some(7),
        tid: Some((1, true)),
        key_idx: None,
    }
    .write(&mut p);
    vp8::write_frame_header(&mut p, false, 0, 0);
    p.resize(1160, 0x5a);
    c.bench_function("reference/vp8_parse_descriptor", |b| {
        b.iter(|| black_box(vp8::parse(black_box(&p))))
    });
}

fn av1_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("av1_dd");
    let dds = captured(3);
    let keyframe = &dds[0];
    let custom = dds.iter().find(|d| d.len() == 8).unwrap().clone();
    let mut src = DdSource::new();
    src.parse(keyframe).unwrap();
    let structure = src.current().unwrap().clone();
    let plain = dds.iter().find(|d| d.len() == 3).unwrap().clone();

    g.bench_function("parse_3_bytes", |b| {
        b.iter(|| black_box(src.parse(black_box(&plain)).unwrap()))
    });
    g.bench_function("parse_custom_8_bytes", |b| {
        b.iter(|| black_box(src.parse(black_box(&custom)).unwrap()))
    });
    g.bench_function("parse_keyframe_92_bytes", |b| {
        b.iter(|| black_box(src.parse(black_box(keyframe)).unwrap()))
    });

    // The descriptor write alone: a receiver at 720p (mandatory fields) and at 360p (plus the
    // active decode target mask).
    let info = src.parse(&plain).unwrap();
    let mut out = [0u8; MAX_LEN];
    for (label, spatial) in [("write_720p", 2u8), ("write_360p_active_mask", 1)] {
        let mut proj = DdProjection::new(DdConfig::default());
        proj.set_target(Some(DdTarget {
            encoding: 0,
            spatial,
            temporal: 2,
        }));
        let kinfo = src.parse(keyframe).unwrap();
        let rw = proj
            .forward(
                Instant::now(),
                &DdPacket {
                    encoding: 0,
                    seq: 1,
                    timestamp: 0,
                    marker: false,
                    info: &kinfo,
                    source: &src,
                },
            )
            .unwrap();
        let rw = bridge::sfu::projection::DdRewrite {
            structure_offset: None,
            ..rw
        };
        g.bench_function(label, |b| {
            b.iter(|| black_box(rw.write_descriptor(black_box(&info), &structure, &mut out)))
        });
    }

    // Per packet and receiver: the projection's decision plus the descriptor written, over a
    // stream (parse once per packet, as the core will).
    let stream = av1_stream(&structure, 3000);
    let t0 = Instant::now();
    for (label, spatial, temporal) in [("project_720p30", 2u8, 2u8), ("project_180p15", 0, 1)] {
        let fresh = || {
            let mut p = DdProjection::new(DdConfig::default());
            p.set_target(Some(DdTarget {
                encoding: 0,
                spatial,
                temporal,
            }));
            (DdSource::new(), p)
        };
        let (mut s, mut p) = fresh();
        let mut i = 0usize;
        g.bench_function(format!("parse_and_{label}"), |b| {
            b.iter(|| {
                if i == stream.len() {
                    i = 0;
                    (s, p) = fresh();
                }
                let pk = &stream[i];
                i += 1;
                let info = s.parse(&pk.dd).unwrap();
                let r = p.forward(
                    t0 + Duration::from_millis(i as u64 * 11),
                    &DdPacket {
                        encoding: 0,
                        seq: pk.seq,
                        timestamp: pk.ts,
                        marker: pk.marker,
                        info: &info,
                        source: &s,
                    },
                );
                if let Some(rw) = r {
                    let st = s.structure(info.generation).unwrap();
                    black_box(rw.write_descriptor(&info, st, &mut out).unwrap());
                }
            })
        });
    }
    g.finish();
}

fn vp9_benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("vp9");
    let stream = vp9_stream(3000);
    let delta = &stream[20].payload;
    let mut src = Vp9Source::new();
    g.bench_function("parse_delta", |b| {
        b.iter(|| black_box(src.parse(black_box(delta)).unwrap()))
    });
    let key = &stream[0].payload;
    g.bench_function("parse_keyframe_with_ss", |b| {
        b.iter(|| black_box(src.parse(black_box(key)).unwrap()))
    });
    let h = vp9d::parse(delta).unwrap();
    let mut copy = delta.clone();
    let mut n = 0u16;
    g.bench_function("rewrite_picture_id", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            vp9d::rewrite(black_box(&mut copy), &h, n & 0x7fff, n as u8).unwrap();
        })
    });

    let t0 = Instant::now();
    for (label, spatial, temporal) in [("project_720p30", 2u8, 2u8), ("project_180p15", 0, 1)] {
        let fresh = || {
            let mut p = Vp9Projection::new(Vp9Config::default());
            p.set_target(Some(Vp9Target {
                encoding: 0,
                spatial,
                temporal,
            }));
            (Vp9Source::new(), p)
        };
        let (mut s, mut p) = fresh();
        let mut i = 0usize;
        let mut buf = vec![0u8; 1200];
        g.bench_function(format!("parse_and_{label}"), |b| {
            b.iter(|| {
                if i == stream.len() {
                    i = 0;
                    (s, p) = fresh();
                }
                let pk = &stream[i];
                i += 1;
                let info = s.parse(&pk.payload).unwrap();
                let r = p.forward(
                    t0 + Duration::from_millis(i as u64 * 11),
                    &Vp9Packet {
                        encoding: 0,
                        seq: pk.seq,
                        timestamp: pk.ts,
                        marker: pk.marker,
                        info: &info,
                        source: &s,
                    },
                );
                if let Some(rw) = r {
                    // The descriptor part of the egress copy (the core copies the payload anyway).
                    let d = usize::from(info.header.descriptor_len) + 1;
                    buf[..d].copy_from_slice(&pk.payload[..d]);
                    rw.apply(&mut buf[..d], &info.header).unwrap();
                    black_box(&buf);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, reference_bench, av1_benches, vp9_benches);
criterion_main!(benches);
