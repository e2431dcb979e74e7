//! Tests with real descriptors (Chromium 156 sending VP9 `L3T3_KEY`, `../testdata/`), malformed
//! input, and deterministic simulations of receivers whose targets change (K-SVC in flexible mode
//! as Chromium sends it, full SVC in non-flexible mode, simulcast).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::descriptor::{self, Descriptor};
use super::*;
use crate::sfu::av1::tests::{
    Captured, DecoderModel, Forwarded, LinkSender, LinkUnit, SIM_PAYLOAD, follows_a_changing_link,
    layered, load,
};
use crate::sfu::av1::{self, DdSource};
use crate::sfu::codec::FrameDesc;
use crate::sfu::projection::{
    DdConfig, DdPacket, DdProjection, DdTarget, Layered, Vp9Config, Vp9Packet, Vp9Projection,
    Vp9Target,
};

fn chrome_vp9() -> Vec<Captured> {
    load(include_str!("../testdata/chrome156_vp9_l3t3_key.txt"))
}

/// The captured payload: the stored prefix, padded to a length that leaves payload after the
/// descriptor (the bytes after the prefix are not needed by the forwarding path).
fn payload(p: &Captured) -> Vec<u8> {
    let mut v = p.payload.clone();
    v.resize(p.payload_len.max(v.len()), 0);
    v
}

#[test]
fn chrome_l3t3_key_descriptors() {
    let pk = chrome_vp9();
    let mut src = Vp9Source::new();
    let (mut ss_seen, mut keyframes) = (0, 0);
    let mut last: Option<Vp9Info> = None;
    for p in &pk {
        if p.payload_len == 0 {
            continue; // padding
        }
        let pl = payload(p);
        let info = src
            .parse(&pl)
            .unwrap_or_else(|e| panic!("seq {}: {e}", p.seq));
        let h = info.header;
        // Chromium 156: flexible mode, 15-bit PictureID, layer indices, switching-up points.
        assert!(
            h.flexible && h.picture_id_15 && h.has_layers && h.switching_up,
            "seq {}",
            p.seq
        );
        assert_eq!(h.tl0picidx, None);
        if h.starts_keyframe() {
            keyframes += 1;
            assert!(h.has_ss(), "the keyframe's first packet carries the SS");
        }
        if h.has_ss() {
            ss_seen += 1;
            let ss = src.scalability().unwrap();
            assert!(
                ss.gof_len.is_none(),
                "no picture group description in flexible mode"
            );
            let res = ss.resolutions.unwrap();
            if ss.spatial_layers == 3 {
                assert_eq!(&res[..3], &[(320, 180), (640, 360), (1280, 720)]);
                assert_eq!(ss.height(2), Some(720));
            }
        }
        if h.inter_picture {
            // Delta frames: no inter-layer dependency, not referred to by upper layers (K-SVC),
            // P_DIFF by temporal layer: T0 → 4, T1 → 2, T2 → 1.
            assert!(!h.inter_layer && h.not_ref_for_upper, "seq {}", p.seq);
            assert_eq!(
                h.refs(),
                &[[4u8, 2, 1][usize::from(h.tid)]],
                "seq {}",
                p.seq
            );
        } else if h.sid > 0 {
            assert!(h.inter_layer, "keyframe upper layers predict from below");
        }
        // The marker ends the picture: the top spatial layer's last packet.
        if p.marker {
            assert!(h.end);
            assert_eq!(h.sid + 1, src.spatial_layers(), "seq {}", p.seq);
        }
        if let Some(l) = last
            && !h.begin
        {
            assert_eq!(
                l.frame_index, info.frame_index,
                "continuation of a layer frame"
            );
        }
        last = Some(info);
    }
    assert!(keyframes >= 2 && ss_seen >= 2, "{keyframes} {ss_seen}");
    // Chromium also sends the Dependency Descriptor with VP9 (the same L3T3_KEY structure as for
    // AV1): a VP9 stream can be forwarded by either projection.
    let mut dd = DdSource::new();
    let n = pk
        .iter()
        .filter_map(|p| p.dd.as_ref())
        .map(|d| dd.parse(d).unwrap())
        .count();
    assert!(n > 800);
    assert_eq!(dd.current().unwrap().decode_target_count, 9);
}

#[test]
fn chrome_descriptors_reencode_byte_exact() {
    for p in chrome_vp9().iter().filter(|p| p.payload_len > 0).take(300) {
        let pl = payload(p);
        let h = descriptor::parse(&pl).unwrap();
        let ss = descriptor::parse_ss(&pl, &h).unwrap();
        let refs: Vec<u8> = h.refs().to_vec();
        let res: Vec<(u16, u16)> = ss
            .and_then(|s| {
                s.resolutions
                    .map(|r| r[..usize::from(s.spatial_layers)].to_vec())
            })
            .unwrap_or_default();
        let d = Descriptor {
            inter_picture: h.inter_picture,
            flexible: h.flexible,
            begin: h.begin,
            end: h.end,
            not_ref_for_upper: h.not_ref_for_upper,
            picture_id: h.picture_id.map(|p| (p, h.picture_id_15)),
            layers: Some((h.tid, h.switching_up, h.sid, h.inter_layer)),
            tl0picidx: h.tl0picidx,
            pdiffs: Box::leak(refs.into_boxed_slice()),
            ss: ss.map(|_| &*Box::leak(res.into_boxed_slice())),
        };
        let mut out = Vec::new();
        d.write(&mut out);
        assert_eq!(
            &out[..],
            &pl[..usize::from(h.descriptor_len)],
            "seq {}",
            p.seq
        );
    }
}

#[test]
fn rewrite_in_place_keeps_widths_and_checks_first() {
    let mut v = Vec::new();
    Descriptor {
        picture_id: Some((0x1234, true)),
        layers: Some((1, true, 0, false)),
        tl0picidx: Some(7),
        begin: true,
        ..Descriptor::default()
    }
    .write(&mut v);
    v.extend_from_slice(b"frame");
    let h = descriptor::parse(&v).unwrap();
    assert_eq!(
        (h.picture_id, h.tl0picidx, h.tid, h.sid),
        (Some(0x1234), Some(7), 1, 0)
    );
    descriptor::rewrite(&mut v, &h, 0x7ffe, 200).unwrap();
    let q = descriptor::parse(&v).unwrap();
    assert_eq!((q.picture_id, q.tl0picidx), (Some(0x7ffe), Some(200)));
    // A 7-bit PictureID stays 7 bits.
    let mut v = Vec::new();
    Descriptor {
        picture_id: Some((5, false)),
        begin: true,
        ..Descriptor::default()
    }
    .write(&mut v);
    v.push(0);
    let h = descriptor::parse(&v).unwrap();
    descriptor::rewrite(&mut v, &h, 0x1ff, 0).unwrap();
    assert_eq!(descriptor::parse(&v).unwrap().picture_id, Some(0x7f));
    // A payload that is not the one parsed: an error, and not a byte changed.
    let mut other = vec![0x00u8, 1, 2, 3];
    let before = other.clone();
    assert_eq!(
        descriptor::rewrite(&mut other, &h, 1, 1),
        Err(Vp9Error::Mismatch)
    );
    assert_eq!(other, before);
    let mut short = v[..1].to_vec();
    assert_eq!(
        descriptor::rewrite(&mut short, &h, 1, 1),
        Err(Vp9Error::Mismatch)
    );
}

#[test]
fn malformed_descriptors_are_typed_errors() {
    assert_eq!(descriptor::parse(&[]), Err(Vp9Error::Truncated));
    assert_eq!(descriptor::parse(&[0x08]), Err(Vp9Error::Empty));
    // P and F without a PictureID.
    assert_eq!(
        descriptor::parse(&[0x58, 0x02, 0]),
        Err(Vp9Error::RefsWithoutPictureId)
    );
    // Four reference indices.
    assert_eq!(
        descriptor::parse(&[0xd8, 0x05, 0x03, 0x05, 0x07, 0x09, 0]),
        Err(Vp9Error::TooManyRefs)
    );
    // An SS announcing resolutions that are not there.
    assert_eq!(
        descriptor::parse(&[0x8a, 0x05, 0x50, 0x01, 0x40]),
        Err(Vp9Error::Truncated)
    );
    assert_eq!(
        Vp9Source::new().parse(&[0x08, 0xaa]),
        Err(Vp9Error::NotProjectable)
    );
    // Every prefix of every captured descriptor: an error or a shorter valid packet, no panic;
    // random bytes through source, projection and rewrite: no panic.
    for p in chrome_vp9().iter().filter(|p| p.payload_len > 0).take(200) {
        let pl = payload(p);
        for k in 0..pl.len().min(24) {
            if let Ok(h) = descriptor::parse(&pl[..k]) {
                assert!(usize::from(h.descriptor_len) < k);
                let _ = descriptor::parse_ss(&pl[..k], &h);
            }
        }
    }
    let mut x: u32 = 0x2545_f491;
    let mut src = Vp9Source::new();
    let mut proj = Vp9Projection::new(Vp9Config::default());
    proj.set_target(Some(Vp9Target {
        encoding: 0,
        spatial: 2,
        temporal: 2,
    }));
    let now = Instant::now();
    for i in 0..20_000u32 {
        let mut b = [0u8; 32];
        for v in b.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = x as u8;
        }
        let len = x as usize % 33;
        if let Ok(info) = src.parse(&b[..len]) {
            let pkt = Vp9Packet {
                encoding: 0,
                seq: i as u16,
                timestamp: i * 3000,
                marker: false,
                info: &info,
                source: &src,
            };
            if let Some(rw) = proj.forward(now, &pkt) {
                let mut c = b;
                rw.apply(&mut c[..len], &info.header).unwrap();
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Receiver model: checks that what a projection sends is a stream a VP9 decoder can follow.

#[derive(Default)]
pub(crate) struct Receiver {
    last_seq: Option<u16>,
    /// Highest egress PictureID seen (15-bit space), per new picture.
    last_pic: Option<u16>,
    pictures: u64,
    /// (picture, sid) → (complete, timestamp)
    frames: BTreeMap<(u64, u8), (bool, u32)>,
    pic_index: crate::sfu::frames::Unwrapper,
    pub(crate) shown: Vec<(u32, u8)>,
    pub(crate) keyframes: usize,
    tl0: Option<u8>,
}

impl Receiver {
    pub(crate) fn on_packet(&mut self, seq: u16, ts: u32, marker: bool, payload: &[u8]) {
        if let Some(l) = self.last_seq {
            assert_eq!(
                seq,
                l.wrapping_add(1),
                "sequence numbers must be contiguous"
            );
        }
        self.last_seq = Some(seq);
        let h = descriptor::parse(payload).expect("forwarded descriptor parses");
        let pid = h.picture_id.unwrap();
        let pic = self.pic_index.unwrap(u32::from(pid), 15);
        if let Some(l) = self.last_pic
            && pid != l
        {
            let step = pid.wrapping_sub(l) & 0x7fff;
            assert!(step < 0x4000, "PictureID went backwards: {l} → {pid}");
        }
        if self.last_pic != Some(pid) {
            self.pictures += 1;
        }
        self.last_pic = Some(pid);
        if let Some(t) = h.tl0picidx {
            if let Some(l) = self.tl0 {
                assert!(t.wrapping_sub(l) < 2, "TL0PICIDX jumped: {l} → {t}");
            }
            self.tl0 = Some(t);
        }
        let key = (pic, h.sid);
        if h.begin {
            let decodable = (!h.inter_layer
                || self.frames.get(&(pic, h.sid - 1)).is_some_and(|f| f.0))
                && (!h.inter_picture
                    || if h.flexible {
                        h.refs().iter().all(|&d| {
                            self.frames
                                .get(&(pic - u64::from(d), h.sid))
                                .is_some_and(|f| f.0)
                        })
                    } else {
                        // Non-flexible (temporal nesting): some earlier frame of the layer.
                        self.frames
                            .range(..key)
                            .rev()
                            .any(|(k, f)| k.1 == h.sid && f.0)
                    });
            assert!(
                decodable,
                "picture {pid} S{} T{} refers to frames not received ({:?}, D={})",
                h.sid,
                h.tid,
                h.refs(),
                h.inter_layer
            );
            self.keyframes += usize::from(h.starts_keyframe());
            self.frames.insert(key, (false, ts));
        }
        let f = self.frames.get_mut(&key).expect("the layer frame began");
        if h.end {
            f.0 = true;
        }
        if marker {
            assert!(h.end, "marker only at the end of a layer frame");
            let top = self
                .frames
                .range((pic, 0)..=(pic, 7))
                .filter(|(_, f)| f.0)
                .map(|(k, _)| k.1)
                .max()
                .unwrap();
            self.shown.push((ts, top));
        }
    }
}

#[test]
fn chrome_capture_through_projections_is_decodable_for_every_target() {
    let pk = chrome_vp9();
    let now = Instant::now();
    for keep_lower in [true, false] {
        for (spatial, temporal) in [(2, 2), (2, 1), (1, 2), (0, 2), (0, 0)] {
            let mut src = Vp9Source::new();
            let mut proj = Vp9Projection::new(Vp9Config {
                keep_lower_chains: keep_lower,
            });
            proj.set_target(Some(Vp9Target {
                encoding: 0,
                spatial,
                temporal,
            }));
            let mut rx = Receiver::default();
            for p in &pk {
                if p.payload_len == 0 {
                    proj.skip(0, p.seq);
                    continue;
                }
                let mut pl = payload(p);
                let info = src.parse(&pl).unwrap();
                let pkt = Vp9Packet {
                    encoding: 0,
                    seq: p.seq,
                    timestamp: p.ts,
                    marker: p.marker,
                    info: &info,
                    source: &src,
                };
                if let Some(rw) = proj.forward(now, &pkt) {
                    rw.apply(&mut pl, &info.header).unwrap();
                    rx.on_packet(rw.seq, rw.timestamp, rw.marker, &pl);
                }
            }
            let late: Vec<u8> = rx
                .shown
                .iter()
                .skip(rx.shown.len() / 2)
                .map(|s| s.1)
                .collect();
            assert!(late.len() > 10, "S{spatial}T{temporal}: {}", late.len());
            assert!(
                late.iter().all(|&s| s == spatial),
                "target S{spatial}T{temporal} keep_lower {keep_lower}: shown {late:?}"
            );
        }
    }
}

/// A VP9 SVC sender: 3 spatial layers, temporal pattern 0-2-1-2, 15-bit PictureIDs.
pub(crate) struct Sender {
    /// K-SVC in flexible mode (Chromium's L3T3_KEY) or full SVC in non-flexible mode.
    pub(crate) ksvc_flexible: bool,
    pub(crate) pid: u16,
    pub(crate) tl0: u8,
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    pub(crate) since_key: u64,
}

pub(crate) struct SimPacket {
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    pub(crate) marker: bool,
    pub(crate) payload: Vec<u8>,
}

const RES: &[(u16, u16)] = &[(320, 180), (640, 360), (1280, 720)];

impl Sender {
    pub(crate) fn picture(&mut self, keyframe: bool) -> Vec<SimPacket> {
        if keyframe {
            self.since_key = 0;
        } else {
            self.since_key += 1;
        }
        self.pid = self.pid.wrapping_add(1) & 0x7fff;
        self.ts = self.ts.wrapping_add(3000);
        let tid: u8 = if keyframe {
            0
        } else {
            [0, 2, 1, 2][(self.since_key % 4) as usize]
        };
        if tid == 0 {
            self.tl0 = self.tl0.wrapping_add(1);
        }
        let mut out = Vec::new();
        for sid in 0..3u8 {
            let packets = if tid == 0 { usize::from(sid) + 1 } else { 1 };
            for k in 0..packets {
                let pdiffs: &'static [u8] = match tid {
                    0 => &[4],
                    1 => &[2],
                    _ => &[1],
                };
                let d = Descriptor {
                    inter_picture: !keyframe,
                    flexible: self.ksvc_flexible,
                    begin: k == 0,
                    end: k == packets - 1,
                    // K-SVC: only the keyframe's lower layers are referred to from above;
                    // full SVC: every lower layer is.
                    not_ref_for_upper: sid == 2 || (self.ksvc_flexible && !keyframe),
                    picture_id: Some((self.pid, true)),
                    layers: Some((tid, true, sid, sid > 0 && (keyframe || !self.ksvc_flexible))),
                    tl0picidx: (!self.ksvc_flexible).then_some(self.tl0),
                    pdiffs: if self.ksvc_flexible { pdiffs } else { &[] },
                    ss: (keyframe && sid == 0 && k == 0).then_some(RES),
                };
                let mut payload = Vec::new();
                d.write(&mut payload);
                payload.extend_from_slice(&[0xab; 8]);
                self.seq = self.seq.wrapping_add(1);
                out.push(SimPacket {
                    seq: self.seq,
                    ts: self.ts,
                    marker: sid == 2 && k == packets - 1,
                    payload,
                });
            }
        }
        out
    }
}

/// Per phase of a plan: (picture, spatial layer shown).
type Shown = Vec<Vec<(u64, u8)>>;

/// Runs a sender through a projection whose target follows `plan`; returns the receiver, the
/// pictures at which keyframes were requested and what was shown per phase.
fn simulate(
    ksvc_flexible: bool,
    plan: &[(u64, u8, u8)],
    pictures: u64,
) -> (Receiver, Vec<u64>, Shown) {
    let start = Instant::now();
    let mut sender = Sender {
        ksvc_flexible,
        pid: 0x7ff0, // wraps
        tl0: 250,
        seq: 65000,
        ts: 0,
        since_key: 0,
    };
    let mut src = Vp9Source::new();
    let mut proj = Vp9Projection::new(Vp9Config::default());
    let mut rx = Receiver::default();
    let mut keyframe_at: Option<Instant> = None;
    let mut requests = Vec::new();
    let mut shown = vec![Vec::new(); plan.len()];
    for n in 0..pictures {
        let now = start + Duration::from_millis(n * 33);
        let phase = plan.iter().rposition(|p| p.0 <= n).unwrap();
        proj.set_target(Some(Vp9Target {
            encoding: 0,
            spatial: plan[phase].1,
            temporal: plan[phase].2,
        }));
        let keyframe = n == 0 || keyframe_at.is_some_and(|k| k <= now);
        if keyframe {
            keyframe_at = None;
        }
        let before = rx.shown.len();
        for mut p in sender.picture(keyframe) {
            let info = src.parse(&p.payload).unwrap();
            let pkt = Vp9Packet {
                encoding: 0,
                seq: p.seq,
                timestamp: p.ts,
                marker: p.marker,
                info: &info,
                source: &src,
            };
            if let Some(rw) = proj.forward(now, &pkt) {
                rw.apply(&mut p.payload, &info.header).unwrap();
                rx.on_packet(rw.seq, rw.timestamp, rw.marker, &p.payload);
            }
        }
        for &(_, s) in &rx.shown[before..] {
            shown[phase].push((n, s));
        }
        if proj.needs_keyframe().is_some() && keyframe_at.is_none() {
            requests.push(n);
            keyframe_at = Some(now + Duration::from_millis(100));
        }
    }
    (rx, requests, shown)
}

fn latency(shown: &Shown, plan: &[(u64, u8, u8)], phase: usize, want: u8) -> u64 {
    shown[phase]
        .iter()
        .find(|x| x.1 == want)
        .map_or(u64::MAX, |x| x.0 - plan[phase].0)
}

#[test]
fn simulated_l3t3_key_flexible_switches_without_keyframes_down_and_bounded_up() {
    let plan = [
        (0u64, 2u8, 2u8),
        (61, 0, 2),  // 720p → 180p (mid temporal pattern)
        (122, 2, 2), // back to 720p: a keyframe (K-SVC)
        (201, 2, 1), // 30 → 15 fps
        (263, 1, 2), // 720p → 360p
    ];
    let (rx, requests, shown) = simulate(true, &plan, 320);
    assert!(
        !requests.is_empty() && requests.iter().all(|&r| (122..201).contains(&r)),
        "keyframe requests at {requests:?}"
    );
    assert!(latency(&shown, &plan, 1, 0) <= 4);
    assert!(latency(&shown, &plan, 2, 2) <= 5);
    assert!(latency(&shown, &plan, 4, 1) <= 4);
    for (phase, want) in [(1, 0), (2, 2), (3, 2), (4, 1)] {
        let from = latency(&shown, &plan, phase, want) + plan[phase].0;
        assert!(
            shown[phase].iter().all(|x| x.0 <= from || x.1 == want),
            "phase {phase}: {:?}",
            shown[phase]
        );
    }
    let rate = |p: usize| shown[p].len() as f64 / (plan[p + 1].0 - plan[p].0) as f64;
    assert!(
        rate(2) > 0.8 && (0.4..0.6).contains(&rate(3)),
        "{} {}",
        rate(2),
        rate(3)
    );
    assert_eq!(rx.keyframes, 2);
}

#[test]
fn simulated_full_svc_non_flexible_switches_spatially_down_at_once() {
    // Full SVC (inter-layer prediction in every picture), non-flexible mode with TL0PICIDX.
    let plan = [
        (0u64, 2u8, 2u8),
        (41, 1, 2),
        (83, 0, 0),
        (121, 0, 2),
        (162, 2, 2),
    ];
    let (rx, requests, shown) = simulate(false, &plan, 220);
    assert!(latency(&shown, &plan, 1, 1) <= 1);
    assert!(latency(&shown, &plan, 2, 0) <= 1);
    // Up again: spatial needs a keyframe, temporal does not.
    assert!(requests.iter().all(|&r| r >= 162), "{requests:?}");
    assert!(latency(&shown, &plan, 4, 2) <= 5);
    let rate = |p: usize| shown[p].len() as f64 / (plan[p + 1].0 - plan[p].0) as f64;
    assert!((0.2..0.3).contains(&rate(2)), "7.5 fps: {}", rate(2));
    assert!(rate(3) > 0.8, "{}", rate(3));
    assert!(rx.tl0.is_some());
}

#[test]
fn simulcast_switch_keeps_picture_ids_and_tl0picidx_continuous() {
    // Three L1T3 encodings in non-flexible mode with their own PictureID and TL0PICIDX spaces.
    let start = Instant::now();
    let mut srcs = [Vp9Source::new(), Vp9Source::new(), Vp9Source::new()];
    let mut proj = Vp9Projection::new(Vp9Config::default());
    let mut rx = Receiver::default();
    let mut pids = [100u16, 9000, 30000];
    let mut tl0s = [0u8, 77, 200];
    let mut seqs = [1u16, 20000, 40000];
    let mut last_key = [0u64; 3];
    let mut switches = Vec::new();
    for n in 0..90u64 {
        let now = start + Duration::from_millis(n * 33);
        let target = match n {
            0..30 => 0,
            30..60 => 2,
            _ => 1,
        };
        proj.set_target(Some(Vp9Target {
            encoding: target,
            spatial: 0,
            temporal: 2,
        }));
        for e in 0..3usize {
            let key = n == 0 || (n == 33 && e == 2) || (n == 64 && e == 1);
            if key {
                last_key[e] = n;
            }
            let tid = if key {
                0
            } else {
                [0u8, 2, 1, 2][((n - last_key[e]) % 4) as usize]
            };
            pids[e] = pids[e].wrapping_add(1) & 0x7fff;
            if tid == 0 {
                tl0s[e] = tl0s[e].wrapping_add(1);
            }
            seqs[e] = seqs[e].wrapping_add(1);
            let mut pl = Vec::new();
            Descriptor {
                inter_picture: !key,
                begin: true,
                end: true,
                picture_id: Some((pids[e], true)),
                layers: Some((tid, tid > 0, 0, false)),
                tl0picidx: Some(tl0s[e]),
                ss: key.then_some(&RES[e..=e]),
                ..Descriptor::default()
            }
            .write(&mut pl);
            pl.push(0);
            let info = srcs[e].parse(&pl).unwrap();
            let pkt = Vp9Packet {
                encoding: e as u8,
                seq: seqs[e],
                timestamp: n as u32 * 3000 + e as u32,
                marker: true,
                info: &info,
                source: &srcs[e],
            };
            let before = proj.current().map(|c| c.0);
            if let Some(rw) = proj.forward(now, &pkt) {
                rw.apply(&mut pl, &info.header).unwrap();
                rx.on_packet(rw.seq, rw.timestamp, rw.marker, &pl);
                if before != Some(e as u8) {
                    switches.push((n, e, rw.picture_id, rw.tl0picidx));
                }
            }
        }
    }
    assert_eq!(
        switches.iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
        vec![(0, 0), (33, 2), (64, 1)]
    );
    // One picture per frame period, PictureIDs and TL0PICIDX without jumps; at 33 encoding 0's
    // picture went before encoding 2's keyframe arrived (two pictures); while the down-switch to
    // encoding 1 waits for its keyframe (60-63) only encoding 2's base layer goes (one of four).
    assert_eq!(rx.pictures, 90 + 1 - 3);
    assert_eq!(rx.keyframes, 3);
}

#[test]
fn chrome_vp9_with_dependency_descriptor_through_the_dd_projection() {
    // The same capture forwarded by the Dependency Descriptor projection (a receiver that
    // negotiated the extension): decodable at 360p, and the marker follows the DD's layers.
    let pk = chrome_vp9();
    let mut src = DdSource::new();
    let mut proj = DdProjection::new(DdConfig::default());
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: 1,
        temporal: 2,
    }));
    let now = Instant::now();
    let mut out = [0u8; av1::descriptor::MAX_LEN];
    let mut rx = Receiver::default();
    let mut forwarded = 0;
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
            rw.write_descriptor(&info, src.structure(info.generation).unwrap(), &mut out)
                .unwrap();
            // The VP9 descriptor rides along unchanged: PictureIDs pass through.
            let pl = payload(p);
            rx.on_packet(rw.seq, rw.timestamp, rw.marker, &pl);
            forwarded += 1;
        }
    }
    assert!(forwarded > 200);
    let late: Vec<u8> = rx
        .shown
        .iter()
        .skip(rx.shown.len() / 2)
        .map(|s| s.1)
        .collect();
    assert!(late.iter().all(|&s| s == 1), "{late:?}");
}

impl DecoderModel for Receiver {
    fn receive(&mut self, (seq, ts, marker, payload): Forwarded) {
        self.on_packet(seq, ts, marker, &payload);
    }

    fn decoded(&self) -> (&[(u32, u8)], usize) {
        (&self.shown, self.keyframes)
    }
}

/// Chromium's VP9 `L3T3_KEY` (K-SVC, flexible mode) through the VP9 projection to the VP9
/// receiver model, in a changing-link run (`av1::tests::follows_a_changing_link`).
impl LinkSender<Vp9Projection> for Sender {
    fn unit(&mut self, proj: &mut Vp9Projection, u: &mut LinkUnit<'_>) {
        for mut p in self.picture(u.keyframe) {
            let info = u.source.parse_vp9(0, &p.payload).unwrap();
            let h = info.header;
            let size = SIM_PAYLOAD[usize::from(h.sid.min(2))];
            p.payload.resize(size.max(p.payload.len()), 0);
            let layers = (u.keyframe && h.sid == 0 && h.begin, h.tid, h.sid);
            let len = p.payload.len();
            u.forward(layers, FrameDesc::Vp9(info), len, |stream, now| {
                let src = stream.vp9().unwrap();
                let rw = proj.forward(now, &layered((p.seq, p.ts, p.marker), &info, src))?;
                rw.apply(&mut p.payload, &h).unwrap();
                Some((len, (rw.seq, rw.timestamp, rw.marker, p.payload)))
            });
        }
    }
}

/// Chromium's VP9 `L3T3_KEY` toward one receiver whose link goes from 2.5 Mb/s to 300 kb/s and
/// back: the bridge's measurement, allocation, estimator and probing, a FIFO bottleneck, the
/// receiver's transport-cc feedback (`av1::tests::LinkSim`).
#[test]
fn simulated_l3t3_key_flexible_receiver_follows_a_changing_link() {
    follows_a_changing_link(
        "VP9 L3T3_KEY",
        &mut Sender {
            ksvc_flexible: true,
            pid: 0x7f00, // wraps
            tl0: 200,
            seq: 64_000,
            ts: 0,
            since_key: 0,
        },
        &mut Vp9Projection::new(Vp9Config::default()),
        &mut Receiver::default(),
    );
}
