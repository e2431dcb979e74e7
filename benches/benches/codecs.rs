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

use bridge::sfu::av1::descriptor::{self as dd, Fields, MAX_LEN};
use bridge::sfu::av1::{DdConfig, DdPacket, DdProjection, DdSource, DdTarget, Structure};
use bridge::sfu::vp9::descriptor::{self as vp9d, Descriptor};
use bridge::sfu::vp9::{Vp9Config, Vp9Packet, Vp9Projection, Vp9Source, Vp9Target};
use criterion::{Criterion, criterion_group, criterion_main};

/// Column `col` of the first packet lines of a capture in `bridge/src/sfu/testdata/`.
fn captured(col: usize) -> Vec<Vec<u8>> {
    include_str!("../../bridge/src/sfu/testdata/chrome156_av1_l3t3_key.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(' ').nth(col).filter(|h| *h != "-"))
        .map(|h| {
            (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

struct AvPacket {
    seq: u16,
    ts: u32,
    marker: bool,
    dd: Vec<u8>,
}

/// `tus` temporal units of Chromium's AV1 L3T3_KEY (structure from the capture), a keyframe every
/// 300.
fn av1_stream(structure: &Structure, tus: usize) -> Vec<AvPacket> {
    let mut v = Vec::new();
    let (mut fnum, mut seq, mut ts) = (0u16, 0u16, 0u32);
    for tu in 0..tus {
        let key = tu % 300 == 0;
        let tpls: [u8; 3] = if key {
            [0, 5, 10]
        } else {
            [[1, 6, 11], [3, 8, 13], [2, 7, 12], [4, 9, 14]][(tu % 300) % 4]
        };
        ts = ts.wrapping_add(3000);
        for (sp, &tpl) in tpls.iter().enumerate() {
            fnum = fnum.wrapping_add(1);
            let t = structure.templates()[usize::from(tpl)];
            let n = if t.temporal == 0 { sp + 1 } else { 1 };
            for k in 0..n {
                let mut buf = [0u8; MAX_LEN];
                let len = dd::write(
                    &Fields {
                        structure: Some(structure),
                        attach_structure: (key && sp == 0 && k == 0).then_some(0),
                        ..Fields::mandatory(k == 0, k == n - 1, tpl, fnum)
                    },
                    &mut buf,
                )
                .unwrap();
                seq = seq.wrapping_add(1);
                v.push(AvPacket {
                    seq,
                    ts,
                    marker: sp == 2 && k == n - 1,
                    dd: buf[..len].to_vec(),
                });
            }
        }
    }
    v
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
        let rw = bridge::sfu::av1::DdRewrite {
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

struct Vp9Pkt {
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
}

const RES: &[(u16, u16)] = &[(320, 180), (640, 360), (1280, 720)];

/// `pictures` pictures of VP9 L3T3_KEY as Chromium 156 sends it (flexible mode, 15-bit
/// PictureIDs, Z on delta frames, SS on keyframes), a keyframe every 300.
fn vp9_stream(pictures: usize) -> Vec<Vp9Pkt> {
    let mut v = Vec::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    for n in 0..pictures {
        let key = n % 300 == 0;
        let tid = if key {
            0
        } else {
            [0u8, 2, 1, 2][(n % 300) % 4]
        };
        let pid = (n as u16) & 0x7fff;
        ts = ts.wrapping_add(3000);
        for sid in 0..3u8 {
            let packets = if tid == 0 { usize::from(sid) + 1 } else { 1 };
            for k in 0..packets {
                let mut p = Vec::with_capacity(1200);
                Descriptor {
                    inter_picture: !key,
                    flexible: true,
                    begin: k == 0,
                    end: k == packets - 1,
                    not_ref_for_upper: sid == 2 || !key,
                    picture_id: Some((pid, true)),
                    layers: Some((tid, true, sid, key && sid > 0)),
                    tl0picidx: None,
                    pdiffs: [&[4u8][..], &[2], &[1]][usize::from(tid)],
                    ss: (key && sid == 0 && k == 0).then_some(RES),
                }
                .write(&mut p);
                p.resize(1100, 0x5a);
                seq = seq.wrapping_add(1);
                v.push(Vp9Pkt {
                    seq,
                    ts,
                    marker: sid == 2 && k == packets - 1,
                    payload: p,
                });
            }
        }
    }
    v
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

criterion_group!(benches, av1_benches, vp9_benches);
criterion_main!(benches);
