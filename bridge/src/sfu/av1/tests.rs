//! Tests with real descriptors (Chromium 156 sending AV1 `L3T3_KEY`, `../testdata/`), the
//! specification's example structures (A.10.2), malformed input, and a deterministic simulation
//! of a receiver whose target changes.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::descriptor::{self, Fields, MAX_LEN, Parsed, mask_of};
use super::*;
use crate::sfu::projection::{
    DdConfig, DdPacket, DdProjection, DdTarget, LayerTarget, Layered, LayeredPacket,
};

/// One captured RTP packet (see the header of the files in `../testdata/`).
pub(crate) struct Captured {
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub dd: Option<Vec<u8>>,
    pub payload_len: usize,
    pub payload: Vec<u8>,
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn load(text: &str) -> Vec<Captured> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            Captured {
                seq: f[0].parse().unwrap(),
                ts: f[1].parse().unwrap(),
                marker: f[2] == "1",
                dd: (f[3] != "-").then(|| hex(f[3])),
                payload_len: f[4].parse().unwrap(),
                payload: if f[5] == "-" { Vec::new() } else { hex(f[5]) },
            }
        })
        .collect()
}

fn chrome_av1() -> Vec<Captured> {
    load(include_str!("../testdata/chrome156_av1_l3t3_key.txt"))
}

/// Re-encodes a parsed descriptor exactly as it came (same structure offset, same optional parts).
fn reencode(d: &Descriptor, s: &Structure, out: &mut [u8]) -> usize {
    let chains = usize::from(s.chain_count);
    let explicit_active = d.active_decode_targets.filter(|_| !d.structure_attached);
    descriptor::write(
        &Fields {
            start_of_frame: d.start_of_frame,
            end_of_frame: d.end_of_frame,
            template_id: d.template_id,
            frame_number: d.frame_number,
            structure: Some(s),
            attach_structure: d.structure_attached.then_some(s.template_id_offset),
            active_decode_targets: explicit_active.or(d
                .active_decode_targets
                .filter(|&m| d.structure_attached && m != s.all_decode_targets())),
            custom_dtis: d.custom_dtis.then_some(d.frame.dtis),
            custom_fdiffs: d.custom_fdiffs.then(|| d.frame.fdiffs()),
            custom_chains: d.custom_chains.then(|| &d.frame.chain_fdiffs[..chains]),
        },
        out,
    )
    .unwrap()
}

#[test]
fn chrome_l3t3_key_descriptors_parse_and_resolve() {
    let pk = chrome_av1();
    let mut src = DdSource::new();
    let (mut structures, mut frames_seen) = (0, 0);
    let mut by_frame: HashMap<u16, (u8, u16)> = HashMap::new();
    let mut padding = 0;
    for (i, p) in pk.iter().enumerate() {
        let Some(dd) = &p.dd else {
            assert_eq!(p.payload_len, 0, "only padding comes without a descriptor");
            padding += 1;
            continue;
        };
        let info = src
            .parse(dd)
            .unwrap_or_else(|e| panic!("seq {}: {e}", p.seq));
        let d = info.descriptor;
        if d.structure_attached {
            structures += 1;
            assert!(d.start_of_frame);
            let s = src.current().unwrap();
            // Chromium's L3T3_KEY structure: 9 decode targets (spatial × 3 + temporal), one
            // chain per spatial layer, 15 templates, resolutions 180p/360p/720p.
            assert_eq!(s.decode_target_count, 9);
            assert_eq!(s.chain_count, 3);
            assert_eq!(s.template_count, 15);
            assert_eq!(&s.protected_by[..9], &[0, 0, 0, 1, 1, 1, 2, 2, 2]);
            for dt in 0..9 {
                assert_eq!(s.layer_of(dt), ((dt / 3) as u8, (dt % 3) as u8));
            }
            let res: Vec<(u16, u16)> = (0..3)
                .map(|sp| s.resolution(sp).map(|r| (r.width, r.height)).unwrap())
                .collect();
            assert_eq!(res, vec![(320, 180), (640, 360), (1280, 720)]);
            // K-SVC: a steady-state 720p frame refers only to the 720p frame 12 frames back.
            let s2t0 = s.templates()[11];
            assert_eq!(
                (s2t0.spatial, s2t0.temporal, s2t0.fdiffs()),
                (2, 0, &[12u16][..])
            );
            assert_eq!(s2t0.dtis.get(6), Dti::Switch);
            assert_eq!(s2t0.dtis.get(2), Dti::NotPresent);
            // Chains: 720p decode targets are protected by chain 2, which never includes a
            // steady-state 180p frame; the 180p temporal base is chain 0.
            assert!(s.part_of_chain(&s.templates()[1], 0, 0x1ff));
            assert!(!s.part_of_chain(&s.templates()[1], 2, 0x1ff));
            assert!(s.part_of_chain(&s.templates()[11], 2, 0x1ff));
            assert_eq!(
                s.contained_in(8),
                0b111_000_000,
                "720p@30 contains only 720p DTs"
            );
            assert_eq!(s.contained_in(5), 0b000_111_000);
            assert_eq!(s.contained_in(1), 0b000_000_011);
        }
        if d.start_of_frame {
            frames_seen += 1;
        }
        // All packets of a frame name the same template; sof/eof bracket the frame.
        let e = by_frame
            .entry(d.frame_number)
            .or_insert((d.template_id, p.seq));
        assert_eq!(e.0, d.template_id, "seq {}", p.seq);
        if !d.start_of_frame {
            let prev = pk[..i].iter().rev().find_map(|q| q.dd.as_ref()).unwrap();
            assert_eq!(
                descriptor::parse_mandatory(prev).unwrap().frame_number,
                d.frame_number
            );
        }
        // The marker ends a temporal unit: the next media packet has another timestamp.
        if p.marker {
            assert!(d.end_of_frame);
            if let Some(next) = pk[i + 1..].iter().find(|q| q.dd.is_some()) {
                assert_ne!(next.ts, p.ts, "seq {}", p.seq);
            }
        }
    }
    assert!(structures >= 2, "{structures}");
    // Every keyframe repeated the same structure: it stayed the current one.
    assert_eq!(src.generation(), 1);
    assert!(frames_seen > 200 && padding > 0, "{frames_seen} {padding}");
    // The encoder started with two spatial layers: the first keyframe says so (A.4).
    let mut src = DdSource::new();
    let first = src.parse(pk[0].dd.as_ref().unwrap()).unwrap();
    assert_eq!(first.descriptor.active_decode_targets, Some(0b111_111));
    assert_eq!(src.active_decode_targets(), 0b111_111);
    let targets: Vec<DecodeTarget> = src.decode_targets().collect();
    assert_eq!(targets.len(), 9);
    assert!(targets[5].active && !targets[6].active);
    assert_eq!(targets[8].resolution.map(|r| r.height), Some(720));
}

#[test]
fn chrome_descriptors_reencode_byte_exact() {
    // Our writer produces exactly libwebrtc's bytes for every descriptor of the capture: the
    // structure, custom diffs and chains, active decode targets included.
    let mut src = DdSource::new();
    let mut out = [0u8; MAX_LEN];
    let mut n_ext = 0;
    for p in chrome_av1() {
        let Some(dd) = p.dd else { continue };
        let info = src.parse(&dd).unwrap();
        let s = src.structure(info.generation).unwrap();
        let n = reencode(&info.descriptor, s, &mut out);
        assert_eq!(&out[..n], &dd[..], "seq {}", p.seq);
        n_ext += usize::from(dd.len() > 3);
    }
    assert!(n_ext > 5);
}

#[test]
fn patched_descriptors_resolve_to_the_same_frames() {
    // A retransmission patches the sender's descriptor (frame number, template id, the offset of
    // an attached structure): a receiver parsing the patched stream sees the same frames.
    let mut orig = DdSource::new();
    let mut patched = DdSource::new();
    let shift = 41u8;
    let mut checked = 0;
    for p in chrome_av1() {
        let Some(dd) = p.dd else { continue };
        let a = orig.parse(&dd).unwrap();
        let mut buf = dd.clone();
        let fnum = a.descriptor.frame_number.wrapping_add(20_000);
        descriptor::patch(&mut buf, (a.descriptor.template_id + shift) % 64, fnum).unwrap();
        assert_eq!(buf.len(), dd.len());
        let b = patched.parse(&buf).unwrap();
        assert_eq!(b.descriptor.frame_number, fnum);
        assert_eq!(b.descriptor.frame, a.descriptor.frame, "seq {}", p.seq);
        assert_eq!(
            b.descriptor.structure_attached,
            a.descriptor.structure_attached
        );
        if a.descriptor.structure_attached {
            let (sa, sb) = (orig.current().unwrap(), patched.current().unwrap());
            assert_eq!(sb.template_id_offset, (sa.template_id_offset + shift) % 64);
        }
        checked += 1;
    }
    assert!(checked > 100);
    assert_eq!(
        descriptor::patch(&mut [0x80, 1], 3, 4),
        Err(DdError::Truncated)
    );
}

fn spec_l1t3() -> Structure {
    // A.10.2.1: decode targets 30/15/7.5 fps, one chain.
    Structure::new(
        1,
        3,
        &[
            FrameDeps::new(0, 0, "SSS", &[], &[0]),
            FrameDeps::new(0, 0, "SSS", &[4], &[4]),
            FrameDeps::new(0, 1, "SD-", &[2], &[2]),
            FrameDeps::new(0, 2, "D--", &[1], &[1]),
            FrameDeps::new(0, 2, "D--", &[1], &[3]),
        ],
        &[0, 0, 0],
        None,
    )
}

fn spec_l3t3() -> Structure {
    // A.10.2.2 (full SVC): DTs HD30 HD15 HD7.5 VGA30 VGA15 VGA7.5 QVGA30 QVGA15 QVGA7.5.
    Structure::new(
        1,
        9,
        &[
            FrameDeps::new(0, 0, "SSSSSSSSS", &[], &[0, 0, 0]),
            FrameDeps::new(0, 0, "RRRRRRSSS", &[12], &[12, 11, 10]),
            FrameDeps::new(0, 1, "RR-RR-SD-", &[6], &[6, 5, 4]),
            FrameDeps::new(0, 2, "R--R--D--", &[3], &[3, 2, 1]),
            FrameDeps::new(0, 2, "R--R--D--", &[3], &[9, 8, 7]),
            FrameDeps::new(1, 0, "SSSSSS---", &[1], &[1, 1, 1]),
            FrameDeps::new(1, 0, "RRRSSS---", &[12, 1], &[1, 1, 1]),
            FrameDeps::new(1, 1, "RR-SD----", &[6, 1], &[7, 6, 5]),
            FrameDeps::new(1, 2, "R--D-----", &[3, 1], &[4, 3, 2]),
            FrameDeps::new(1, 2, "R--D-----", &[3, 1], &[10, 9, 8]),
            FrameDeps::new(2, 0, "SSS------", &[1], &[2, 1, 1]),
            FrameDeps::new(2, 0, "SSS------", &[12, 1], &[2, 1, 1]),
            FrameDeps::new(2, 1, "SD-------", &[6, 1], &[8, 7, 6]),
            FrameDeps::new(2, 2, "D--------", &[3, 1], &[5, 4, 3]),
            FrameDeps::new(2, 2, "D--------", &[3, 1], &[11, 10, 9]),
        ],
        &[2, 2, 2, 1, 1, 1, 0, 0, 0],
        Some(&[
            Resolution {
                width: 320,
                height: 180,
            },
            Resolution {
                width: 640,
                height: 360,
            },
            Resolution {
                width: 1280,
                height: 720,
            },
        ]),
    )
}

fn spec_l3t3_key_shift() -> Structure {
    // A.10.2.3 (K-SVC with temporal shift).
    Structure::new(
        1,
        9,
        &[
            FrameDeps::new(0, 0, "SSSSSSSSS", &[], &[0, 0, 0]),
            FrameDeps::new(0, 0, "------SSS", &[3], &[3, 2, 1]),
            FrameDeps::new(0, 0, "------SSS", &[12], &[12, 8, 1]),
            FrameDeps::new(0, 1, "------SD-", &[6], &[6, 2, 7]),
            FrameDeps::new(0, 2, "------D--", &[3], &[3, 5, 4]),
            FrameDeps::new(0, 2, "------D--", &[3], &[9, 5, 10]),
            FrameDeps::new(0, 2, "------D--", &[3], &[3, 11, 4]),
            FrameDeps::new(1, 0, "SSSSSS---", &[1], &[1, 1, 1]),
            FrameDeps::new(1, 0, "---SSS---", &[6], &[4, 6, 5]),
            FrameDeps::new(1, 0, "---SSS---", &[12], &[4, 12, 5]),
            FrameDeps::new(1, 1, "---SD----", &[6], &[10, 6, 11]),
            FrameDeps::new(1, 2, "---D-----", &[3], &[1, 3, 2]),
            FrameDeps::new(1, 2, "---D-----", &[3], &[7, 3, 8]),
            FrameDeps::new(1, 2, "---D-----", &[3], &[1, 9, 2]),
            FrameDeps::new(2, 0, "SSS------", &[1], &[2, 1, 1]),
            FrameDeps::new(2, 0, "SSS------", &[12], &[11, 7, 12]),
            FrameDeps::new(2, 1, "SD-------", &[6], &[5, 1, 6]),
            FrameDeps::new(2, 2, "D--------", &[3], &[2, 4, 3]),
            FrameDeps::new(2, 2, "D--------", &[3], &[8, 4, 9]),
            FrameDeps::new(2, 2, "D--------", &[3], &[2, 10, 3]),
        ],
        &[2, 2, 2, 1, 1, 1, 0, 0, 0],
        None,
    )
}

#[test]
fn spec_structures_round_trip_and_derive_layers() {
    for (name, s, layers) in [
        ("L1T3", spec_l1t3(), vec![(0, 2), (0, 1), (0, 0)]),
        (
            "L3T3",
            spec_l3t3(),
            vec![
                (2, 2),
                (2, 1),
                (2, 0),
                (1, 2),
                (1, 1),
                (1, 0),
                (0, 2),
                (0, 1),
                (0, 0),
            ],
        ),
        (
            "L3T3_KEY_SHIFT",
            spec_l3t3_key_shift(),
            vec![
                (2, 2),
                (2, 1),
                (2, 0),
                (1, 2),
                (1, 1),
                (1, 0),
                (0, 2),
                (0, 1),
                (0, 0),
            ],
        ),
    ] {
        // decode_target_layers() of A.8.2 gives each column's layer.
        for (dt, want) in layers.iter().enumerate() {
            assert_eq!(s.layer_of(dt), *want, "{name} DT{dt}");
        }
        // Keyframe descriptor carrying the structure, then one per template.
        let mut buf = [0u8; MAX_LEN];
        let n = descriptor::write(
            &Fields {
                structure: Some(&s),
                attach_structure: Some(s.template_id_offset),
                ..Fields::mandatory(true, false, s.template_id_offset, 100)
            },
            &mut buf,
        )
        .unwrap();
        let mut scratch = Structure::default();
        let Parsed::WithStructure(d) = descriptor::parse(&buf[..n], None, &mut scratch).unwrap()
        else {
            panic!("{name}: structure not found")
        };
        assert_eq!(scratch, s, "{name}");
        assert_eq!(d.active_decode_targets, Some(s.all_decode_targets()));
        for (i, t) in s.templates().iter().enumerate() {
            let id = (usize::from(s.template_id_offset) + i) as u8 % 64;
            let n = descriptor::write(&Fields::mandatory(true, true, id, 101 + i as u16), &mut buf)
                .unwrap();
            assert_eq!(n, 3);
            let Parsed::Frame(f) = descriptor::parse(&buf[..n], Some(&s), &mut scratch).unwrap()
            else {
                panic!()
            };
            assert_eq!(f.frame, *t, "{name} template {i}");
        }
    }
    // L3T3 full SVC: the 720p decode targets contain the 360p and 180p ones (inter-layer
    // prediction), K-SVC's do not.
    let full = spec_l3t3();
    assert_eq!(full.contained_in(0), mask_of(9));
    assert_eq!(spec_l3t3_key_shift().contained_in(0), 0b000_000_111);
}

#[test]
fn spec_l2t1_switch_example() {
    // A.10.1.2: F106 is a switch indication for DT1 when its chain restarts (custom chains and
    // DTIs on top of a simple two-template structure).
    let s = Structure::new(
        0,
        2,
        &[
            FrameDeps::new(0, 0, "SS", &[2], &[2, 1]),
            FrameDeps::new(1, 0, "-R", &[2, 1], &[1, 1]),
        ],
        &[0, 1],
        None,
    );
    let mut buf = [0u8; MAX_LEN];
    let n = descriptor::write(
        &Fields {
            structure: Some(&s),
            custom_dtis: Some(Dtis::from_symbols("-S")),
            custom_fdiffs: Some(&[1]),
            custom_chains: Some(&[1, 0]),
            ..Fields::mandatory(true, true, 1, 106)
        },
        &mut buf,
    )
    .unwrap();
    let mut scratch = Structure::default();
    let Parsed::Frame(d) = descriptor::parse(&buf[..n], Some(&s), &mut scratch).unwrap() else {
        panic!()
    };
    assert_eq!(d.frame.dtis.get(1), Dti::Switch);
    assert_eq!(d.frame.fdiffs(), &[1]);
    assert_eq!(&d.frame.chain_fdiffs[..2], &[1, 0]);
    assert!(d.custom_dtis && d.custom_fdiffs && d.custom_chains);
    // Large custom diffs use the longer size classes.
    let n = descriptor::write(
        &Fields {
            structure: Some(&s),
            custom_fdiffs: Some(&[1, 17, 300, 4096]),
            ..Fields::mandatory(false, false, 0, 9)
        },
        &mut buf,
    )
    .unwrap();
    let Parsed::Frame(d) = descriptor::parse(&buf[..n], Some(&s), &mut scratch).unwrap() else {
        panic!()
    };
    assert_eq!(d.frame.fdiffs(), &[1, 17, 300, 4096]);
}

#[test]
fn malformed_descriptors_are_typed_errors() {
    let s = spec_l3t3();
    let mut scratch = Structure::default();
    assert_eq!(
        descriptor::parse(&[0x80, 0], Some(&s), &mut scratch),
        Err(DdError::Truncated)
    );
    assert_eq!(
        descriptor::parse(&[0x80, 0, 1], None, &mut scratch),
        Err(DdError::NoStructure)
    );
    // Template id 0 with offset 1 and 15 templates: (0 + 64 - 1) % 64 = 63 ≥ 15.
    assert_eq!(
        descriptor::parse(&[0x80, 0, 1], Some(&s), &mut scratch),
        Err(DdError::TemplateOutOfRange)
    );
    // A structure on a packet that does not start a frame (libwebrtc drops those).
    let mut buf = [0u8; MAX_LEN];
    let n = descriptor::write(
        &Fields {
            structure: Some(&s),
            attach_structure: Some(1),
            ..Fields::mandatory(true, false, 1, 5)
        },
        &mut buf,
    )
    .unwrap();
    let mut bad = buf[..n].to_vec();
    bad[0] &= 0x7f;
    assert_eq!(
        descriptor::parse(&bad, None, &mut scratch),
        Err(DdError::StructureNotAtFrameStart)
    );
    // Every truncation of a structure is an error, not a panic, and leaves a source unchanged.
    let mut src = DdSource::new();
    src.parse(&buf[..n]).unwrap();
    let before = src.current().cloned();
    for k in 4..n {
        let r = src.parse(&buf[..k]);
        assert!(r.is_err(), "prefix {k} parsed");
    }
    assert_eq!(src.current().cloned(), before);
    // 65 templates.
    let mut w = [0u8; 64];
    let mut bw = super::bits::BitWriter::new(&mut w);
    bw.bits(24, 0x80_0000).unwrap();
    bw.bits(5, 0b10000).unwrap();
    bw.bits(6, 0).unwrap();
    bw.bits(5, 0).unwrap();
    for _ in 0..70 {
        bw.bits(2, 0).unwrap();
    }
    let n = bw.finish().unwrap();
    assert_eq!(
        descriptor::parse(&w[..n], None, &mut scratch),
        Err(DdError::TooManyTemplates)
    );
    // Garbage never panics.
    let mut x: u32 = 0x9e37_79b9;
    let mut src = DdSource::new();
    let mut proj = DdProjection::new(DdConfig::default());
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: 2,
        temporal: 2,
    }));
    let now = Instant::now();
    for i in 0..20_000u32 {
        let mut b = [0u8; 40];
        for v in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = x as u8;
        }
        let len = 3 + (x as usize % 38);
        if i % 7 == 0 {
            b[..n.min(40)].copy_from_slice(&buf[..n.min(40)]);
        }
        if let Ok(info) = src.parse(&b[..len]) {
            let p = DdPacket {
                encoding: 0,
                seq: i as u16,
                timestamp: i * 3000,
                marker: false,
                info: &info,
                source: &src,
            };
            if let Some(rw) = proj.forward(now, &p)
                && let Some(s) = src.structure(info.generation)
            {
                let mut out = [0u8; MAX_LEN];
                if let Ok(n) = rw.write_descriptor(&info, s, &mut out) {
                    let mut rx = DdSource::new();
                    if !info.descriptor.structure_attached {
                        continue;
                    }
                    rx.parse(&out[..n]).unwrap();
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Receiver model: parses what the projection sends with its own DdSource and checks that the
// stream is one a decoder can follow.

#[derive(Default)]
pub(crate) struct Receiver {
    src: DdSource,
    last_seq: Option<u16>,
    last_frame: Option<u64>,
    /// frame index → (spatial, complete, decodable, timestamp)
    frames: BTreeMap<u64, (u8, bool, bool, u32)>,
    /// Spatial layer shown per temporal unit that ended with a marker.
    pub(crate) shown: Vec<(u32, u8)>,
    pub(crate) keyframes: usize,
    pub(crate) packets: usize,
}

impl Receiver {
    pub(crate) fn on_packet(&mut self, seq: u16, ts: u32, marker: bool, dd: &[u8]) {
        self.packets += 1;
        if let Some(l) = self.last_seq {
            assert_eq!(
                seq,
                l.wrapping_add(1),
                "sequence numbers must be contiguous"
            );
        }
        self.last_seq = Some(seq);
        let info = self.src.parse(dd).expect("the forwarded descriptor parses");
        let d = info.descriptor;
        let idx = info.frame_index;
        if d.start_of_frame && !self.frames.contains_key(&idx) {
            if let Some(l) = self.last_frame {
                assert!(idx > l, "frame numbers must grow: {idx} after {l}");
            }
            self.last_frame = Some(idx);
            let decodable = d.structure_attached
                || d.frame.fdiffs().iter().all(|&fd| {
                    self.frames
                        .get(&(idx - u64::from(fd)))
                        .is_some_and(|f| f.1 && f.2)
                });
            assert!(
                decodable,
                "frame {} (S{}T{}) refers to {:?}, not all received",
                d.frame_number,
                d.frame.spatial,
                d.frame.temporal,
                d.frame.fdiffs()
            );
            self.keyframes += usize::from(d.structure_attached);
            self.frames
                .insert(idx, (d.frame.spatial, false, decodable, ts));
        }
        let f = self
            .frames
            .get_mut(&idx)
            .expect("first packet of the frame");
        if d.end_of_frame {
            f.1 = true;
        }
        if marker {
            assert!(d.end_of_frame, "marker only on the end of a frame");
            let top = self
                .frames
                .values()
                .filter(|f| f.3 == ts && f.1 && f.2)
                .map(|f| f.0)
                .max()
                .unwrap();
            self.shown.push((ts, top));
        }
    }
}

#[test]
fn chrome_capture_through_projections_is_decodable_for_every_target() {
    let pk = chrome_av1();
    let now = Instant::now();
    let mut results = Vec::new();
    for keep_lower in [true, false] {
        for (spatial, temporal) in [(2, 2), (2, 1), (1, 2), (0, 2), (0, 0)] {
            let mut src = DdSource::new();
            let mut proj = DdProjection::new(DdConfig {
                keep_lower_chains: keep_lower,
            });
            proj.set_target(Some(DdTarget {
                encoding: 0,
                spatial,
                temporal,
            }));
            let mut rx = Receiver::default();
            let mut out = [0u8; MAX_LEN];
            let mut bytes = 0usize;
            for p in &pk {
                let Some(dd) = &p.dd else {
                    proj.skip(0, p.seq);
                    continue;
                };
                let info = src.parse(dd).unwrap();
                let pkt = DdPacket {
                    encoding: 0,
                    seq: p.seq,
                    timestamp: p.ts,
                    marker: p.marker,
                    info: &info,
                    source: &src,
                };
                if let Some(rw) = proj.forward(now, &pkt) {
                    let s = src.structure(info.generation).unwrap();
                    let n = rw.write_descriptor(&info, s, &mut out).unwrap();
                    rx.on_packet(rw.seq, rw.timestamp, rw.marker, &out[..n]);
                    bytes += p.payload_len;
                }
            }
            // Each temporal unit the receiver completes shows the target's spatial layer (the
            // encoder's first second had only two layers).
            let late: Vec<u8> = rx
                .shown
                .iter()
                .skip(rx.shown.len() / 2)
                .map(|s| s.1)
                .collect();
            assert!(!late.is_empty());
            assert!(
                late.iter().all(|&s| s == spatial),
                "target S{spatial}T{temporal}: shown {late:?}"
            );
            let fps = rx.shown.len();
            results.push((keep_lower, spatial, temporal, fps, bytes));
        }
    }
    // Fewer temporal layers, fewer temporal units; keeping the lower chains costs bytes only
    // above the base spatial layer.
    let get = |k: bool, s: u8, t: u8| {
        results
            .iter()
            .find(|r| (r.0, r.1, r.2) == (k, s, t))
            .copied()
            .unwrap()
    };
    assert!(get(true, 2, 1).3 < get(true, 2, 2).3);
    assert_eq!(get(true, 0, 2).4, get(false, 0, 2).4);
    let (with, without) = (get(true, 2, 2).4, get(false, 2, 2).4);
    assert!(with > without);
    let overhead = (with - without) as f64 / without as f64;
    println!(
        "keep_lower_chains at 720p: +{:.1} % bytes",
        overhead * 100.0
    );
    assert!(overhead < 0.35, "{overhead}");
}

// ------------------------------------------------------------------------------------------
// Simulation: an L3T3_KEY sender as Chromium 156 (its structure and template order), a receiver
// whose target changes, keyframes on request after a round trip.

/// Chromium's L3T3_KEY structure, as captured.
pub(crate) fn chrome_structure() -> Structure {
    let pk = chrome_av1();
    let mut src = DdSource::new();
    src.parse(pk[0].dd.as_ref().unwrap()).unwrap();
    src.current().unwrap().clone()
}

pub(crate) struct Sender {
    pub(crate) structure: Structure,
    pub(crate) frame_number: u16,
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    /// Temporal units since the last keyframe.
    pub(crate) since_key: u64,
}

pub(crate) struct SimPacket {
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    pub(crate) marker: bool,
    pub(crate) dd: Vec<u8>,
}

impl Sender {
    /// One temporal unit: per spatial layer one frame of 1–3 packets, templates in Chromium's
    /// order (keyframe 0/5/10, then T2 3/8/13, T1 2/7/12, T2 4/9/14, T0 1/6/11).
    pub(crate) fn temporal_unit(&mut self, keyframe: bool) -> Vec<SimPacket> {
        if keyframe {
            self.since_key = 0;
        } else {
            self.since_key += 1;
        }
        let tpls: [u8; 3] = if keyframe {
            [0, 5, 10]
        } else {
            match self.since_key % 4 {
                1 => [3, 8, 13],
                2 => [2, 7, 12],
                3 => [4, 9, 14],
                _ => [1, 6, 11],
            }
        };
        self.ts = self.ts.wrapping_add(3000);
        let mut out = Vec::new();
        for (sp, &tpl) in tpls.iter().enumerate() {
            self.frame_number = self.frame_number.wrapping_add(1);
            let t = self.structure.templates()[usize::from(tpl)];
            let packets = if t.temporal == 0 { sp + 1 } else { 1 };
            for k in 0..packets {
                let mut buf = [0u8; MAX_LEN];
                let sof = k == 0;
                let eof = k == packets - 1;
                let attach = keyframe && sp == 0 && sof;
                let n = descriptor::write(
                    &Fields {
                        structure: Some(&self.structure),
                        attach_structure: attach.then_some(self.structure.template_id_offset),
                        ..Fields::mandatory(
                            sof,
                            eof,
                            (tpl + self.structure.template_id_offset) % 64,
                            self.frame_number,
                        )
                    },
                    &mut buf,
                )
                .unwrap();
                self.seq = self.seq.wrapping_add(1);
                out.push(SimPacket {
                    seq: self.seq,
                    ts: self.ts,
                    marker: eof && sp == 2,
                    dd: buf[..n].to_vec(),
                });
            }
        }
        out
    }
}

#[test]
fn simulated_l3t3_key_receiver_switches_without_keyframes_down_and_bounded_up() {
    let start = Instant::now();
    let mut sender = Sender {
        structure: chrome_structure(),
        frame_number: 65000, // wraps during the run
        seq: 65500,
        ts: 0,
        since_key: 0,
    };
    let mut src = DdSource::new();
    let mut proj = DdProjection::new(DdConfig::default());
    let mut rx = Receiver::default();
    let rtt = Duration::from_millis(100);
    let mut keyframe_at: Option<Instant> = None;
    let mut requests = Vec::new();
    // (from TU, target spatial, target temporal)
    let plan = [
        (0u64, 2u8, 2u8),
        (61, 0, 2),  // 720p → 180p (mid temporal pattern)
        (122, 2, 2), // 180p → 720p: needs a keyframe (K-SVC)
        (201, 2, 1), // 30 → 15 fps
        (263, 1, 2), // 720p → 360p
    ];
    let mut shown_by_phase: Vec<Vec<(u64, u8)>> = vec![Vec::new(); plan.len()];
    let mut out = [0u8; MAX_LEN];
    for tu in 0..320u64 {
        let now = start + Duration::from_millis(tu * 33);
        let phase = plan.iter().rposition(|p| p.0 <= tu).unwrap();
        let (_, s, t) = plan[phase];
        proj.set_target(Some(DdTarget {
            encoding: 0,
            spatial: s,
            temporal: t,
        }));
        let keyframe = tu == 0 || keyframe_at.is_some_and(|k| k <= now);
        if keyframe {
            keyframe_at = None;
        }
        let shown_before = rx.shown.len();
        for p in sender.temporal_unit(keyframe) {
            let info = src.parse(&p.dd).unwrap();
            let pkt = DdPacket {
                encoding: 0,
                seq: p.seq,
                timestamp: p.ts,
                marker: p.marker,
                info: &info,
                source: &src,
            };
            if let Some(rw) = proj.forward(now, &pkt) {
                let st = src.structure(info.generation).unwrap();
                let n = rw.write_descriptor(&info, st, &mut out).unwrap();
                rx.on_packet(rw.seq, rw.timestamp, rw.marker, &out[..n]);
            }
        }
        for &(_, sp) in &rx.shown[shown_before..] {
            shown_by_phase[phase].push((tu, sp));
        }
        if proj.needs_keyframe().is_some() && keyframe_at.is_none() {
            requests.push(tu);
            keyframe_at = Some(now + rtt);
        }
    }
    // Keyframes were asked for only for the up-switch to 720p, never for the down-switches or the
    // frame rate change.
    assert!(!requests.is_empty());
    assert!(
        requests.iter().all(|&r| (122..201).contains(&r)),
        "keyframe requests at {requests:?}"
    );
    let switch_latency = |phase: usize, want: u8| -> u64 {
        let from = plan[phase].0;
        shown_by_phase[phase]
            .iter()
            .find(|x| x.1 == want)
            .map(|x| x.0 - from)
            .unwrap_or(u64::MAX)
    };
    // Down-switches take effect within one temporal-base period (4 TUs), the up-switch within
    // the keyframe round trip plus a TU.
    assert!(switch_latency(1, 0) <= 4, "{}", switch_latency(1, 0));
    assert!(switch_latency(2, 2) <= 5, "{}", switch_latency(2, 2));
    assert!(switch_latency(4, 1) <= 4, "{}", switch_latency(4, 1));
    // Once switched, every shown TU is at the target layer.
    for (phase, want) in [(1, 0), (2, 2), (3, 2), (4, 1)] {
        let from = switch_latency(phase, want) + plan[phase].0;
        let bad: Vec<_> = shown_by_phase[phase]
            .iter()
            .filter(|x| x.0 > from && x.1 != want)
            .collect();
        assert!(bad.is_empty(), "phase {phase}: {bad:?}");
    }
    // 30 fps at full rate, 15 fps after the temporal down-switch.
    let rate = |phase: usize| {
        shown_by_phase[phase].len() as f64 / (plan[phase + 1].0 - plan[phase].0) as f64
    };
    assert!(rate(2) > 0.8, "{}", rate(2));
    assert!((0.4..0.6).contains(&rate(3)), "{}", rate(3));
    assert_eq!(rx.keyframes, 1 + requests.len().min(1));
}

#[test]
fn simulcast_switch_rewrites_frame_numbers_and_template_ids() {
    // Two L1T3 encodings (Firefox-style AV1 simulcast): switching from one to the other at a
    // keyframe continues the frame numbers and moves the template range so it does not overlap.
    let start = Instant::now();
    let s = spec_l1t3();
    let mut sources = [DdSource::new(), DdSource::new()];
    let mut proj = DdProjection::new(DdConfig::default());
    let mut rx = Receiver::default();
    let mut fns = [1000u16, 40000u16];
    let mut seqs = [10u16, 30000u16];
    let mut out = [0u8; MAX_LEN];
    let mut receiver_offsets = Vec::new();
    let mut last_key = [0u32; 2];
    for tu in 0..40u32 {
        let now = start + Duration::from_millis(u64::from(tu) * 33);
        let target = if tu < 20 { 0 } else { 1 };
        proj.set_target(Some(DdTarget {
            encoding: target,
            spatial: 0,
            temporal: 2,
        }));
        for enc in 0..2u8 {
            let e = usize::from(enc);
            let key = tu == 0 || (enc == 1 && tu == 22);
            if key {
                last_key[e] = tu;
            }
            // After the keyframe: T2, T1, T2, T0, … (templates 3, 2, 4, 1).
            let tpl = if key {
                0
            } else {
                [1, 3, 2, 4][((tu - last_key[e]) % 4) as usize]
            };
            fns[e] = fns[e].wrapping_add(1);
            seqs[e] = seqs[e].wrapping_add(1);
            let mut buf = [0u8; MAX_LEN];
            let n = descriptor::write(
                &Fields {
                    structure: Some(&s),
                    attach_structure: key.then_some(s.template_id_offset),
                    ..Fields::mandatory(true, true, tpl + s.template_id_offset, fns[e])
                },
                &mut buf,
            )
            .unwrap();
            let info = sources[e].parse(&buf[..n]).unwrap();
            let pkt = DdPacket {
                encoding: enc,
                seq: seqs[e],
                timestamp: tu * 3000 + u32::from(enc) * 77,
                marker: true,
                info: &info,
                source: &sources[e],
            };
            if let Some(rw) = proj.forward(now, &pkt) {
                let st = sources[e].structure(info.generation).unwrap();
                let n = rw.write_descriptor(&info, st, &mut out).unwrap();
                if let Some(off) = rw.structure_offset {
                    receiver_offsets.push(off);
                }
                rx.on_packet(rw.seq, rw.timestamp, rw.marker, &out[..n]);
                assert_eq!(proj.current().unwrap().0, enc);
            }
        }
    }
    assert_eq!(
        receiver_offsets,
        vec![1, 6],
        "second structure after the first's 5 templates"
    );
    assert_eq!(rx.keyframes, 2);
    assert!(rx.shown.len() > 30);
}

#[test]
fn active_decode_targets_follow_the_receivers_decode_target() {
    let s = spec_l3t3();
    let mut src = DdSource::new();
    let mut buf = [0u8; MAX_LEN];
    let n = descriptor::write(
        &Fields {
            structure: Some(&s),
            attach_structure: Some(1),
            ..Fields::mandatory(true, true, 1, 7)
        },
        &mut buf,
    )
    .unwrap();
    let info = src.parse(&buf[..n]).unwrap();
    let mut proj = DdProjection::new(DdConfig::default());
    // VGA at 15 fps is DT4; what it contains: VGA15, VGA7.5, QVGA15, QVGA7.5 (DTs 4, 5, 7, 8).
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: 1,
        temporal: 1,
    }));
    let rw = proj
        .forward(
            Instant::now(),
            &DdPacket {
                encoding: 0,
                seq: 1,
                timestamp: 0,
                marker: false,
                info: &info,
                source: &src,
            },
        )
        .unwrap();
    assert_eq!(proj.current(), Some((0, 4)));
    assert_eq!(rw.active_decode_targets, Some(0b110_110_000));
    let mut out = [0u8; MAX_LEN];
    let n = rw.write_descriptor(&info, &s, &mut out).unwrap();
    let mut rx = DdSource::new();
    let got = rx.parse(&out[..n]).unwrap();
    assert_eq!(got.descriptor.active_decode_targets, Some(0b110_110_000));
    assert_eq!(rx.active_decode_targets(), 0b110_110_000);
    // A mandatory-only descriptor grows by the flags and the 9-bit mask.
    assert_eq!(descriptor::len_with_active_mask(9), 5);
}

#[test]
fn an_older_keyframes_structure_never_replaces_a_newer_one() {
    let a = spec_l1t3();
    let mut b = spec_l1t3();
    b.template_id_offset = 20;
    let mut c = spec_l1t3();
    c.template_id_offset = 40;
    let key = |s: &Structure, fn_: u16| {
        let mut buf = [0u8; MAX_LEN];
        let n = descriptor::write(
            &Fields {
                structure: Some(s),
                attach_structure: Some(s.template_id_offset),
                ..Fields::mandatory(true, true, s.template_id_offset, fn_)
            },
            &mut buf,
        )
        .unwrap();
        buf[..n].to_vec()
    };
    let mut src = DdSource::new();
    let ga = src.parse(&key(&a, 10)).unwrap().generation;
    let gb = src.parse(&key(&b, 20)).unwrap().generation;
    assert_ne!(ga, gb);
    // A retransmission of the first keyframe: resolved against the previous structure, the
    // current one stays.
    let late = src.parse(&key(&a, 10)).unwrap();
    assert_eq!(late.generation, ga);
    assert_eq!(src.current().unwrap().template_id_offset, 20);
    // An older keyframe with a structure never seen: refused.
    assert_eq!(src.parse(&key(&c, 5)), Err(DdError::StaleStructure));
    assert_eq!(src.generation(), gb);
}

#[test]
fn a_structure_the_receiver_missed_goes_with_its_next_frame() {
    // Two independent layers (simulcast-like): the keyframe of spatial layer 0 carries the
    // structure, a receiver of layer 1 does not need it, and must still learn the new structure.
    let layered = |offset: u8| {
        Structure::new(
            offset,
            2,
            &[
                FrameDeps::new(0, 0, "S-", &[], &[0, 0]),
                FrameDeps::new(1, 0, "-S", &[], &[0, 0]),
                FrameDeps::new(1, 0, "-S", &[1], &[1, 1]),
            ],
            &[0, 1],
            None,
        )
    };
    let (s1, s2) = (layered(0), layered(10));
    let mut src = DdSource::new();
    let mut rx = DdSource::new();
    let mut proj = DdProjection::new(DdConfig {
        keep_lower_chains: false,
    });
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: 1,
        temporal: 0,
    }));
    let now = Instant::now();
    let mut out = [0u8; MAX_LEN];
    let mut seq = 0u16;
    let mut send = |src: &mut DdSource, f: Fields<'_>| -> Option<(DdInfo, Vec<u8>)> {
        let mut buf = [0u8; MAX_LEN];
        let n = descriptor::write(&f, &mut buf).unwrap();
        let info = src.parse(&buf[..n]).unwrap();
        seq += 1;
        let rw = proj.forward(
            now,
            &DdPacket {
                encoding: 0,
                seq,
                timestamp: u32::from(seq),
                marker: true,
                info: &info,
                source: src,
            },
        )?;
        let n = rw
            .write_descriptor(&info, src.structure(info.generation).unwrap(), &mut out)
            .unwrap();
        Some((info, out[..n].to_vec()))
    };
    // Keyframe with s1 (a new segment takes it), then layer 1.
    let k1 = Fields {
        structure: Some(&s1),
        attach_structure: Some(0),
        ..Fields::mandatory(true, true, 0, 1)
    };
    rx.parse(&send(&mut src, k1).unwrap().1).unwrap();
    let (_, b) = send(&mut src, Fields::mandatory(true, true, 1, 2)).unwrap();
    rx.parse(&b).unwrap();
    // A new structure with the next keyframe: not for layer 1's receiver.
    let k2 = Fields {
        structure: Some(&s2),
        attach_structure: Some(10),
        ..Fields::mandatory(true, true, 10, 3)
    };
    assert!(send(&mut src, k2).is_none());
    // The end of a layer 1 frame whose first packet was lost: the structure cannot go with it,
    // and without it the receiver would misread it: dropped.
    assert!(send(&mut src, Fields::mandatory(false, true, 11, 4)).is_none());
    // Layer 1's next frame (new template ids): the structure is re-attached.
    let (info, b) = send(&mut src, Fields::mandatory(true, true, 11, 5)).unwrap();
    let got = rx.parse(&b).unwrap();
    assert!(got.descriptor.structure_attached);
    assert_eq!(got.descriptor.frame, info.descriptor.frame);
    assert_eq!(rx.current().unwrap().template_id_offset, 10);
    // And only once.
    let (_, b) = send(&mut src, Fields::mandatory(true, true, 12, 6)).unwrap();
    assert!(!rx.parse(&b).unwrap().descriptor.structure_attached);
}

#[test]
fn frame_numbers_that_jump_wait_for_a_keyframe_and_stay_monotonic() {
    let s = spec_l1t3();
    let mut src = DdSource::new();
    let mut proj = DdProjection::new(DdConfig::default());
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: 0,
        temporal: 2,
    }));
    let mut rx = Receiver::default();
    let now = Instant::now();
    let mut out = [0u8; MAX_LEN];
    let mut seq = 0u16;
    let mut send = |src: &mut DdSource, proj: &mut DdProjection, f: Fields<'_>| -> bool {
        let mut buf = [0u8; MAX_LEN];
        let n = descriptor::write(&f, &mut buf).unwrap();
        let info = src.parse(&buf[..n]).unwrap();
        seq += 1;
        let pkt = DdPacket {
            encoding: 0,
            seq,
            timestamp: u32::from(seq) * 3000,
            marker: true,
            info: &info,
            source: src,
        };
        let Some(rw) = proj.forward(now, &pkt) else {
            return false;
        };
        let n = rw
            .write_descriptor(&info, src.structure(info.generation).unwrap(), &mut out)
            .unwrap();
        rx.on_packet(rw.seq, rw.timestamp, rw.marker, &out[..n]);
        true
    };
    let key = |fnum: u16| Fields {
        structure: Some(&s),
        attach_structure: Some(1),
        ..Fields::mandatory(true, true, 1, fnum)
    };
    assert!(send(&mut src, &mut proj, key(100)));
    // T0 frames 4 apart.
    for k in 1..5u16 {
        assert!(send(
            &mut src,
            &mut proj,
            Fields::mandatory(true, true, 2, 100 + 4 * k)
        ));
    }
    // The sender's counter jumps by 30000: not forwardable until a keyframe.
    assert!(!send(
        &mut src,
        &mut proj,
        Fields::mandatory(true, true, 2, 30120)
    ));
    assert!(proj.needs_keyframe().is_some());
    assert!(send(&mut src, &mut proj, key(30124)));
    assert!(proj.needs_keyframe().is_none());
    assert!(send(
        &mut src,
        &mut proj,
        Fields::mandatory(true, true, 2, 30128)
    ));
    // The receiver's frame numbers kept growing (its Receiver asserts it) across the restart.
    assert_eq!(rx.keyframes, 2);
    // A receiver that never got a structure cannot resolve frames from before its keyframe.
    let mut fresh = DdSource::new();
    let mut buf = [0u8; MAX_LEN];
    let n = descriptor::write(&key(500), &mut buf).unwrap();
    fresh.parse(&buf[..n]).unwrap();
    let n = descriptor::write(&Fields::mandatory(true, true, 2, 490), &mut buf).unwrap();
    assert_eq!(fresh.parse(&buf[..n]), Err(DdError::NoStructure));
}

// ------------------------------------------------------------------------------------------
// Simulation of a changing link: one receiver's downlink in virtual time, built from the bridge's
// own pieces. The sender's packets go through the source's measurement (`MediaSource::measure`:
// per spatial layer and decode target bitrates), the allocation (`allocation::allocate`, the
// source on stage at 720p) with the estimate as the available bandwidth, and the projection; what
// the projection sends crosses a FIFO bottleneck whose capacity changes over time (no loss: the
// delay-based estimator reacts, and the decoder models need every packet), then reaches the
// receiver, whose transport-cc feedback (`TccFeedbackGenerator`) comes back after the propagation
// delay into the estimator (`SendSideBwe`). When the allocation wants more than the estimate, the
// estimator's probe clusters are sent as padding through the same link, as the downlink does.
// Shared with the VP9 tests.

use crate::sfu::allocation::{
    self, AllocConfig, Allocation, ReceiverInput, SourceInput, VideoConstraints,
};
use crate::sfu::bwe::{BweConfig, SendSideBwe};
use crate::sfu::codec::{FrameDesc, StreamState, VideoInfo};
use crate::sfu::layers::LayerInfo;
use crate::sfu::model::{Encoding, MediaKind};
use crate::sfu::rtcp::{Compound, Packet};
use crate::sfu::source::MediaSource;
use crate::sfu::tcc_feedback::TransportFeedback;
use crate::sfu::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};
use signaling::sources::VideoType;
use std::collections::VecDeque;

/// One-way propagation delay of the simulated path.
const PATH_DELAY_US: i64 = 25_000;
/// RTP + SRTP + UDP/IP overhead added to each payload on the link.
const PACKET_OVERHEAD: usize = 60;

/// A FIFO bottleneck: packets wait for the link, then propagate.
struct Bottleneck {
    capacity_bps: f64,
    busy_until_us: i64,
}

impl Bottleneck {
    /// When a packet of `size` bytes sent at `now_us` arrives.
    fn send(&mut self, now_us: i64, size: usize) -> i64 {
        let start = self.busy_until_us.max(now_us);
        self.busy_until_us = start + (size as f64 * 8e6 / self.capacity_bps) as i64;
        self.busy_until_us + PATH_DELAY_US
    }

    /// How long a packet sent at `now_us` would queue.
    fn queue_us(&self, now_us: i64) -> i64 {
        (self.busy_until_us - now_us).max(0)
    }
}

/// The downlink toward one receiver; `T` is what the receiver's decoder model gets per packet.
pub(crate) struct LinkSim<T> {
    t0: Instant,
    pub(crate) now_us: i64,
    pub(crate) bwe: SendSideBwe,
    link: Bottleneck,
    feedback_gen: TccFeedbackGenerator,
    tcc: u16,
    /// (arrival µs, tcc number, media for the receiver; None for probe padding).
    in_flight: VecDeque<(i64, u16, Option<T>)>,
    /// (delivery µs at the bridge, RTCP bytes).
    feedback: VecDeque<(i64, Vec<u8>)>,
    last_probe_request_us: Option<i64>,
    /// Media bytes received per millisecond of arrival: (ms, bytes).
    pub(crate) received: Vec<(i64, usize)>,
    pub(crate) probe_bytes: usize,
}

impl<T> LinkSim<T> {
    pub(crate) fn new(t0: Instant, capacity_bps: f64) -> Self {
        let mut bwe = SendSideBwe::new(t0, BweConfig::default());
        bwe.on_rtt(Duration::from_micros(2 * PATH_DELAY_US as u64));
        LinkSim {
            t0,
            now_us: 0,
            bwe,
            link: Bottleneck {
                capacity_bps,
                busy_until_us: 0,
            },
            feedback_gen: TccFeedbackGenerator::new(0xfeed, GeneratorConfig::default()),
            tcc: 0,
            in_flight: VecDeque::new(),
            feedback: VecDeque::new(),
            last_probe_request_us: None,
            received: Vec::new(),
            probe_bytes: 0,
        }
    }

    pub(crate) fn at(&self, us: i64) -> Instant {
        self.t0 + Duration::from_micros(us as u64)
    }

    pub(crate) fn now(&self) -> Instant {
        self.at(self.now_us)
    }

    pub(crate) fn set_capacity(&mut self, bps: f64) {
        self.link.capacity_bps = bps;
    }

    pub(crate) fn queue_ms(&self) -> i64 {
        self.link.queue_us(self.now_us) / 1000
    }

    /// A packet of `payload` bytes the bridge sends toward the receiver now.
    pub(crate) fn send(&mut self, payload: usize, cluster: Option<u32>, media: Option<T>) {
        let size = payload + PACKET_OVERHEAD;
        self.tcc = self.tcc.wrapping_add(1);
        self.bwe.on_packet_sent(self.now(), self.tcc, size, cluster);
        let arrival = self.link.send(self.now_us, size);
        if media.is_some() {
            self.received.push((arrival / 1000, payload));
        }
        self.in_flight.push_back((arrival, self.tcc, media));
    }

    /// The allocation's wish (its ideal rate, and whether a layer is below its ideal): above the
    /// estimate, probe toward 1.25 × the ideal rate, at most every 100 ms (`Downlink::maybe_probe`).
    pub(crate) fn want(&mut self, ideal_bps: u64, non_ideal: bool) {
        let want = ideal_bps.saturating_add(ideal_bps / 4);
        let due = self
            .last_probe_request_us
            .is_none_or(|t| self.now_us - t >= 100_000);
        if non_ideal && due && want > self.bwe.poll_estimate() {
            self.last_probe_request_us = Some(self.now_us);
            self.bwe.probe_request(self.now(), want);
        }
    }

    /// Runs to `until_us` in 1 ms steps: arrivals (media handed to `deliver`), the receiver's
    /// feedback, feedback reaching the estimator, probe padding.
    pub(crate) fn advance(&mut self, until_us: i64, mut deliver: impl FnMut(T)) {
        while self.now_us < until_us {
            self.now_us = (self.now_us + 1000).min(until_us);
            let now = self.now();
            while self.in_flight.front().is_some_and(|f| f.0 <= self.now_us) {
                let Some((arrival, tcc, media)) = self.in_flight.pop_front() else {
                    break;
                };
                self.feedback_gen
                    .on_packet(self.at(arrival), tcc, 0x5eed, false);
                if let Some(m) = media {
                    deliver(m);
                }
            }
            let mut out = Vec::new();
            if self.feedback_gen.poll_feedback(now, &mut out) > 0 {
                self.feedback.push_back((self.now_us + PATH_DELAY_US, out));
            }
            while self.feedback.front().is_some_and(|f| f.0 <= self.now_us) {
                let Some((_, bytes)) = self.feedback.pop_front() else {
                    break;
                };
                for p in Compound::parse(&bytes).unwrap().packets() {
                    if let Packet::TransportCc(t) = p {
                        let fb = TransportFeedback::from_rtcp(&t).unwrap();
                        self.bwe.on_transport_feedback(now, &fb);
                    }
                }
            }
            self.bwe.handle_timeout(now);
            while let Some(p) = self.bwe.poll_probe(now) {
                self.probe_bytes += p.bytes;
                self.send(p.bytes, Some(p.cluster), None);
            }
        }
    }

    /// Media bitrate the receiver got over [from_ms, to_ms).
    pub(crate) fn received_bps(&self, from_ms: i64, to_ms: i64) -> f64 {
        let bytes: usize = self
            .received
            .iter()
            .filter(|(t, _)| (from_ms..to_ms).contains(t))
            .map(|(_, b)| *b)
            .sum();
        bytes as f64 * 8.0 * 1000.0 / (to_ms - from_ms).max(1) as f64
    }
}

/// A video source as the conference registers it (one SSRC).
pub(crate) fn video_source() -> MediaSource {
    MediaSource::new(
        0,
        0,
        "aaaa-v0".into(),
        MediaKind::Video,
        VideoType::Camera,
        vec![Encoding {
            ssrc: 1000,
            rtx: Some(1001),
            fec: None,
        }],
        0,
    )
}

/// The allocation of a receiver that has `source` on stage at 720p, with `bandwidth_bps`.
pub(crate) fn stage_allocation(
    source: &MediaSource,
    now_ms: u64,
    bandwidth_bps: u64,
) -> Allocation {
    let mut layers: Vec<LayerInfo> = Vec::new();
    if let Some(l) = &source.layers {
        l.snapshot(now_ms, &mut layers);
    }
    let on_stage = vec!["aaaa-v0".to_owned()];
    let constraints: HashMap<String, VideoConstraints> =
        [("aaaa-v0".to_owned(), VideoConstraints::max_height(720))].into();
    allocation::allocate(
        &[SourceInput {
            slot: 0,
            name: "aaaa-v0",
            owner: "aaaa",
            video_type: VideoType::Camera,
            layers: &layers,
        }],
        &ReceiverInput {
            last_n: -1,
            on_stage: &on_stage,
            selected: &on_stage,
            default_constraints: VideoConstraints::max_height(180),
            constraints: &constraints,
            bandwidth_bps,
        },
        &AllocConfig::default(),
    )
}

/// Link capacity over the run: 2.5 Mb/s, 300 kb/s from 8 s, 2.5 Mb/s again from 18 s.
pub(crate) fn changing_link(ms: i64) -> f64 {
    match ms {
        ..8_000 => 2_500_000.0,
        8_000..18_000 => 300_000.0,
        _ => 2_500_000.0,
    }
}

pub(crate) const LINK_PHASES_MS: [(i64, i64); 3] = [(0, 8_000), (8_000, 18_000), (18_000, 30_000)];

/// What a changing-link run saw, per temporal unit.
#[derive(Debug, Default)]
pub(crate) struct LinkRun {
    /// (ms, the allocation's target spatial layer, the estimate).
    pub(crate) targets: Vec<(i64, Option<u8>, u64)>,
    /// (ms of the temporal unit whose last packet arrived, spatial layer shown).
    pub(crate) shown: Vec<(i64, u8)>,
    /// Temporal units at which the projection asked for a keyframe.
    pub(crate) keyframe_requests: Vec<i64>,
    /// (ms, how long a packet sent then queues at the bottleneck, ms).
    pub(crate) queue: Vec<(i64, i64)>,
}

impl LinkRun {
    /// The spatial layers shown over [from_ms, to_ms).
    pub(crate) fn shown_in(&self, from_ms: i64, to_ms: i64) -> Vec<u8> {
        self.shown
            .iter()
            .filter(|s| (from_ms..to_ms).contains(&s.0))
            .map(|s| s.1)
            .collect()
    }

    /// The first time ≥ `from_ms` after which every temporal unit shown up to `to_ms` is at
    /// `want` (`None`: never settles).
    pub(crate) fn settled_at(
        &self,
        from_ms: i64,
        to_ms: i64,
        want: impl Fn(u8) -> bool,
    ) -> Option<i64> {
        let window: Vec<&(i64, u8)> = self
            .shown
            .iter()
            .filter(|s| (from_ms..to_ms).contains(&s.0))
            .collect();
        let last_bad = window.iter().rposition(|s| !want(s.1));
        match last_bad {
            None => window.first().map(|s| s.0),
            Some(i) => window.get(i + 1).map(|s| s.0),
        }
    }

    /// The allocation's target spatial layer at `ms`.
    pub(crate) fn target_at(&self, ms: i64) -> Option<u8> {
        self.targets
            .iter()
            .rev()
            .find(|t| t.0 <= ms)
            .and_then(|t| t.1)
    }

    /// The spatial layer the receiver last showed before `ms`.
    pub(crate) fn shown_before(&self, ms: i64) -> Option<u8> {
        self.shown.iter().rev().find(|s| s.0 < ms).map(|s| s.1)
    }

    pub(crate) fn estimate_at(&self, ms: i64) -> u64 {
        self.targets
            .iter()
            .rev()
            .find(|t| t.0 <= ms)
            .map_or(0, |t| t.2)
    }
}

/// Payload bytes per packet by spatial layer: with the senders' packet counts (a T0 frame of
/// spatial layer s has s + 1 packets, other frames one) ≈ 100 / 240 / 420 kbps per layer at 30 fps.
pub(crate) const SIM_PAYLOAD: [usize; 3] = [400, 800, 1150];

/// Checks the shared expectations of a changing-link run: 720p while the link is wide; a
/// down-switch within 2 s of the drop to 300 kb/s, the receiver's media then fitting the link and
/// the bottleneck's queue drained; 720p again within 6 s of the recovery. Keyframes are asked for
/// only to go up a spatial layer (K-SVC), never to go down, and the recovery takes at most three.
pub(crate) fn check_follows_the_link(
    name: &str,
    run: &LinkRun,
    received: impl Fn(i64, i64) -> f64,
) {
    let [a, b, c] = LINK_PHASES_MS;
    println!(
        "{name}: estimate {} / {} / {} kbps at the end of each phase; keyframe requests at {:?} ms",
        run.estimate_at(a.1 - 1) / 1000,
        run.estimate_at(b.1 - 1) / 1000,
        run.estimate_at(c.1 - 1) / 1000,
        run.keyframe_requests
    );
    let wide = run.settled_at(a.0, a.1, |s| s == 2);
    assert!(
        wide.is_some_and(|t| t <= 2_000),
        "{name}: 720p within 2 s at 2.5 Mb/s: {wide:?} {:?}",
        run.shown_in(a.0, a.1)
    );
    let down = run.settled_at(b.0, b.1, |s| s < 2);
    assert!(
        down.is_some_and(|t| t - b.0 <= 2_000),
        "{name}: down-switch after the drop to 300 kb/s: {down:?} {:?}",
        run.shown_in(b.0, b.1)
    );
    for &t in &run.keyframe_requests {
        let (target, shown) = (run.target_at(t), run.shown_before(t));
        assert!(
            shown.is_none() || target > shown,
            "{name}: a keyframe asked for at {t} ms without an up-switch (target {target:?}, \
             shown {shown:?}): a down-switch needs none"
        );
    }
    let queue = run
        .queue
        .iter()
        .filter(|q| (b.1 - 3_000..b.1).contains(&q.0))
        .map(|q| q.1)
        .max()
        .unwrap_or(0);
    assert!(
        queue < 150,
        "{name}: the bottleneck's queue drains: {queue} ms"
    );
    let low = received(b.1 - 5_000, b.1);
    assert!(
        low <= 300_000.0,
        "{name}: the receiver's media fits the narrow link: {low:.0} bps"
    );
    assert!(low > 50_000.0, "{name}: video keeps flowing: {low:.0} bps");
    let up = run.settled_at(c.0, c.1, |s| s == 2);
    assert!(
        up.is_some_and(|t| t - c.0 <= 6_000),
        "{name}: back to 720p after the link recovered: {up:?} {:?}",
        run.shown_in(c.0, c.1)
    );
    let up_requests = run.keyframe_requests.iter().filter(|&&t| t >= c.0).count();
    assert!(
        (1..=3).contains(&up_requests),
        "{name}: K-SVC's upper layers restart at a keyframe, one request not a storm: {:?}",
        run.keyframe_requests
    );
}

/// One packet toward a changing-link run's receiver: sequence number, timestamp, marker and the
/// bytes its decoder model reads (AV1: the descriptor, VP9: the payload).
pub(crate) type Forwarded = (u16, u32, bool, Vec<u8>);

/// A receiver's decoder model in a changing-link run (it asserts that every frame it gets is
/// decodable).
pub(crate) trait DecoderModel {
    fn receive(&mut self, p: Forwarded);
    /// (timestamp, spatial layer) of every temporal unit shown; the keyframes received.
    fn decoded(&self) -> (&[(u32, u8)], usize);
}

impl DecoderModel for Receiver {
    fn receive(&mut self, (seq, ts, marker, dd): Forwarded) {
        self.on_packet(seq, ts, marker, &dd);
    }

    fn decoded(&self) -> (&[(u32, u8)], usize) {
        (&self.shown, self.keyframes)
    }
}

/// A codec's sender in a changing-link run, forwarded by its projection `P`.
pub(crate) trait LinkSender<P> {
    /// One temporal unit: each packet parsed into the unit's source and passed to
    /// [`LinkUnit::forward`].
    fn unit(&mut self, proj: &mut P, u: &mut LinkUnit<'_>);
}

/// One temporal unit of a changing-link run on its way through the bridge.
pub(crate) struct LinkUnit<'a> {
    pub(crate) now: Instant,
    pub(crate) keyframe: bool,
    now_ms: u64,
    pub(crate) source: &'a mut MediaSource,
    /// What the projection forwarded: (bytes on the wire, packet).
    sent: Vec<(usize, Forwarded)>,
}

impl LinkUnit<'_> {
    /// Measures a packet of `bytes` on the source's encoding 0 — `(keyframe, temporal, spatial)`
    /// — then has `forward` project it against the stream's state; what it returns goes to the
    /// receiver.
    pub(crate) fn forward(
        &mut self,
        (keyframe, tid, sid): (bool, u8, u8),
        frame: FrameDesc,
        bytes: usize,
        forward: impl FnOnce(&StreamState, Instant) -> Option<(usize, Forwarded)>,
    ) {
        let vi = VideoInfo {
            keyframe: Some(keyframe),
            tid,
            sid,
            frame,
            size: None,
        };
        self.source.measure(self.now_ms, 0, &vi, bytes);
        let stream = self.source.lend_stream_state(0).unwrap();
        self.sent.extend(forward(&stream, self.now));
        self.source.return_stream_state(0, stream);
    }
}

/// A packet of encoding 0 as a layered projection sees it.
pub(crate) fn layered<'a, I, S>(
    (seq, timestamp, marker): (u16, u32, bool),
    info: &'a I,
    source: &'a S,
) -> LayeredPacket<'a, I, S> {
    LayeredPacket {
        encoding: 0,
        seq,
        timestamp,
        marker,
        info,
        source,
    }
}

/// Runs `sender` through 30 s of [`changing_link`] (a temporal unit every 33 ms; the allocation
/// runs before each and sets `proj`'s target; a keyframe the projection asks for comes a round
/// trip later) and checks that `rx` follows the link ([`check_follows_the_link`]).
pub(crate) fn follows_a_changing_link<P: Layered>(
    name: &str,
    sender: &mut impl LinkSender<P>,
    proj: &mut P,
    rx: &mut impl DecoderModel,
) {
    let t0 = Instant::now();
    let mut source = video_source();
    let mut sim: LinkSim<Forwarded> = LinkSim::new(t0, changing_link(0));
    let mut run = LinkRun::default();
    let mut keyframe_at: Option<Instant> = None;
    // Which temporal unit an egress timestamp belongs to.
    let mut unit_ms: HashMap<u32, i64> = HashMap::new();
    let mut shown_before = 0;
    for tu in 0..(LINK_PHASES_MS[2].1 / 33) {
        let ms = tu * 33;
        sim.set_capacity(changing_link(ms));
        sim.advance(ms * 1000, |m| rx.receive(m));
        let (shown, _) = rx.decoded();
        for &(ts, s) in &shown[shown_before..] {
            run.shown.push((unit_ms.get(&ts).copied().unwrap_or(ms), s));
        }
        shown_before = shown.len();
        let now = sim.now();
        let alloc = stage_allocation(&source, ms as u64, sim.bwe.poll_estimate());
        let target = alloc.sources[0].target;
        // An SVC stream's spatial layers are the allocation's encodings.
        proj.set_target(target.map(|l| LayerTarget {
            encoding: 0,
            spatial: l.encoding,
            temporal: l.temporal,
        }));
        sim.want(alloc.ideal_bps, alloc.has_non_ideal_layer());
        run.targets
            .push((ms, target.map(|l| l.encoding), sim.bwe.poll_estimate()));
        run.queue.push((ms, sim.queue_ms()));
        let keyframe = tu == 0 || keyframe_at.is_some_and(|k| k <= now);
        if keyframe {
            keyframe_at = None;
        }
        let mut unit = LinkUnit {
            now,
            keyframe,
            now_ms: ms as u64,
            source: &mut source,
            sent: Vec::new(),
        };
        sender.unit(proj, &mut unit);
        for (bytes, media) in unit.sent {
            unit_ms.insert(media.1, ms);
            sim.send(bytes, None, Some(media));
        }
        if proj.needs_keyframe().is_some() && keyframe_at.is_none() {
            run.keyframe_requests.push(ms);
            keyframe_at = Some(now + Duration::from_micros(2 * PATH_DELAY_US as u64));
        }
    }
    check_follows_the_link(name, &run, |a, b| sim.received_bps(a, b));
    // Every frame the receiver got was decodable (its model asserts it), and it got no keyframe
    // beyond the first and those asked for.
    assert!(rx.decoded().1 <= 1 + run.keyframe_requests.len());
}

/// Chromium's AV1 `L3T3_KEY` structure with the sender's template order, through the Dependency
/// Descriptor projection to the descriptor-reading receiver model.
impl LinkSender<DdProjection> for Sender {
    fn unit(&mut self, proj: &mut DdProjection, u: &mut LinkUnit<'_>) {
        let mut out = [0u8; MAX_LEN];
        for p in self.temporal_unit(u.keyframe) {
            let info = u.source.parse_descriptor(0, &p.dd).unwrap();
            let frame = info.descriptor.frame;
            let payload = SIM_PAYLOAD[usize::from(frame.spatial.min(2))];
            let layers = (info.starts_keyframe(), frame.temporal, frame.spatial);
            u.forward(layers, FrameDesc::Av1(info), payload, |stream, now| {
                let dd = stream.dd().unwrap();
                let rw = proj.forward(now, &layered((p.seq, p.ts, p.marker), &info, dd))?;
                let st = dd.structure(info.generation).unwrap();
                let n = rw.write_descriptor(&info, st, &mut out).unwrap();
                Some((
                    payload + n,
                    (rw.seq, rw.timestamp, rw.marker, out[..n].to_vec()),
                ))
            });
        }
    }
}

#[test]
fn simulated_l3t3_key_receiver_follows_a_changing_link() {
    follows_a_changing_link(
        "AV1 L3T3_KEY",
        &mut Sender {
            structure: chrome_structure(),
            frame_number: 60_000, // wraps
            seq: 65_000,
            ts: 0,
            since_key: 0,
        },
        &mut DdProjection::new(DdConfig::default()),
        &mut Receiver::default(),
    );
}
