//! Projection scenarios: a simulated simulcast sender, receivers switching layers, loss.

use std::time::{Duration, Instant};

use super::seq::ts_newer;
use super::*;
use crate::sfu::codec::{Codec, PayloadRewrite, inspect};
use crate::sfu::vp8;

#[test]
fn skipped_packets_leave_no_gap() {
    let mut r = SeqRewriter::default();
    assert_eq!(r.forward(100), Some(100));
    assert_eq!(r.forward(101), Some(101));
    r.skip(102);
    r.skip(103);
    assert_eq!(r.forward(104), Some(102));
    assert_eq!(r.forward(105), Some(103));
    // A late packet from before the skip point is refused rather than colliding.
    assert_eq!(r.forward(101), None);
    // Reordering after the boundary is fine.
    assert_eq!(r.forward(107), Some(105));
    assert_eq!(r.forward(106), Some(104));
    assert_eq!(r.highest_out(), Some(105));
    r.rebase(9000, 106);
    assert_eq!(r.forward(9001), Some(107));
    assert_eq!(r.forward(8999), None);
    assert_eq!(r.forward(9000), Some(106));
}

#[test]
fn pause_and_resume_across_wraparound() {
    let mut r = SeqRewriter::default();
    assert_eq!(r.forward(65534), Some(65534));
    for s in 65535..=65535u16 {
        r.skip(s);
    }
    for s in 0..500u16 {
        r.skip(s);
    }
    assert_eq!(r.forward(500), Some(65535));
    assert_eq!(r.forward(501), Some(0));
}

#[test]
fn skip_before_anything_forwarded_is_a_no_op() {
    let mut r = SeqRewriter::default();
    r.skip(5);
    assert_eq!(r.forward(6), Some(6));
}

// ---------------------------------------------------------------------------- VP8 scenarios

/// A simulated simulcast sender: 3 encodings, 30 fps, temporal pattern 0-2-1-2, `ppf` packets per
/// frame, independent sequence/PictureID/TL0PICIDX/timestamp spaces per encoding.
struct Sender {
    seq: [u16; 3],
    pic: [u16; 3],
    tl0: [u8; 3],
    ts: [u32; 3],
    frame: u64,
}

struct Pkt {
    enc: u8,
    seq: u16,
    ts: u32,
    marker: bool,
    payload: Vec<u8>,
}

impl Sender {
    fn new() -> Self {
        Sender {
            seq: [1000, 20000, 40000],
            pic: [100, 5000, 32000],
            tl0: [10, 100, 200],
            ts: [1_000_000, 2_000_000, 3_000_000],
            frame: 0,
        }
    }

    /// The next frame of every encoding (keyframes if `key`).
    fn frame(&mut self, key: bool, ppf: usize) -> Vec<Pkt> {
        let tid = if key {
            0
        } else {
            [0u8, 2, 1, 2][(self.frame % 4) as usize]
        };
        self.frame += 1;
        let mut out = Vec::new();
        for e in 0..3 {
            if tid == 0 {
                self.tl0[e] = self.tl0[e].wrapping_add(1);
            }
            self.pic[e] = (self.pic[e] + 1) & 0x7fff;
            self.ts[e] = self.ts[e].wrapping_add(3000);
            for k in 0..ppf {
                let mut payload = Vec::new();
                vp8::Descriptor {
                    start_of_partition: k == 0,
                    partition_id: 0,
                    non_reference: tid == 2,
                    picture_id: Some((self.pic[e], true)),
                    tl0picidx: Some(self.tl0[e]),
                    tid: Some((tid, tid > 0)),
                    key_idx: None,
                }
                .write(&mut payload);
                if k == 0 {
                    vp8::write_frame_header(&mut payload, key, 320 << e, 180 << e);
                }
                out.push(Pkt {
                    enc: e as u8,
                    seq: self.seq[e],
                    ts: self.ts[e],
                    marker: k + 1 == ppf,
                    payload,
                });
                self.seq[e] = self.seq[e].wrapping_add(1);
            }
        }
        out
    }
}

/// What a receiver saw: (seq, ts, pic, tl0, tid, encoding it came from).
#[derive(Default)]
struct Seen(Vec<(u16, u32, u16, u8, u8, u8)>);

fn feed(
    p: &mut Projection,
    now: Instant,
    pkts: &[Pkt],
    seen: &mut Seen,
    lose: &dyn Fn(&Pkt) -> bool,
) {
    for k in pkts {
        if lose(k) {
            continue;
        }
        let info = inspect(Codec::Vp8, &k.payload);
        let vp = VideoPacket {
            encoding: k.enc,
            seq: k.seq,
            timestamp: k.ts,
            marker: k.marker,
            info: &info,
            stream: None,
        };
        if let Some(r) = p.video(now, &vp) {
            let PayloadRewrite::Vp8 {
                picture_id: pic,
                tl0picidx: tl0,
            } = r.payload
            else {
                panic!("not a VP8 rewrite: {r:?}");
            };
            seen.0.push((r.seq, r.timestamp, pic, tl0, info.tid, k.enc));
        }
    }
}

/// Every invariant a receiver relies on: consecutive sequence numbers, non-decreasing timestamps,
/// PictureIDs that step by 0 or 1, TL0PICIDX that steps by 0 or 1.
fn assert_continuous(seen: &Seen) {
    for w in seen.0.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert_eq!(b.0, a.0.wrapping_add(1), "seq {a:?} -> {b:?}");
        assert!(!ts_newer(a.1, b.1), "ts went back {a:?} -> {b:?}");
        let dp = b.2.wrapping_sub(a.2) & 0x7fff;
        assert!(dp <= 1, "pic {a:?} -> {b:?}");
        let dt = b.3.wrapping_sub(a.3);
        assert!(dt <= 1, "tl0 {a:?} -> {b:?}");
    }
}

fn proj() -> Projection {
    Projection::new_video(0, 1, None, 0)
}

#[test]
fn vp8_up_and_down_switches_are_seamless() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    let mut seen = Seen::default();
    let none = |_: &Pkt| false;
    p.target = Target::encoding(0);
    let mut now = t0;
    // Before any keyframe: nothing, and a keyframe is wanted for encoding 0.
    feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    assert!(seen.0.is_empty());
    assert_eq!(p.needs_keyframe(), Some(0));
    feed(&mut p, now, &s.frame(true, 3), &mut seen, &none);
    assert_eq!(p.needs_keyframe(), None);
    assert_eq!(p.current_encoding(), Some(0));
    for _ in 0..20 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    }
    assert!(seen.0.iter().all(|x| x.5 == 0));
    // Up to encoding 2: full frame rate of 0 until the keyframe, then 2.
    p.target = Target::encoding(2);
    now += Duration::from_millis(33);
    feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    assert_eq!(p.needs_keyframe(), Some(2));
    now += Duration::from_millis(33);
    feed(&mut p, now, &s.frame(true, 3), &mut seen, &none);
    assert_eq!(p.current_encoding(), Some(2));
    for _ in 0..20 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    }
    // Down to encoding 1 at 15 fps (TL ≤ 1): while pending only TL0 of 2.
    p.target = Target::layer(1, 1);
    let n = seen.0.len();
    for _ in 0..8 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    }
    assert!(seen.0[n..].iter().all(|x| x.5 == 2 && x.4 == 0));
    now += Duration::from_millis(33);
    feed(&mut p, now, &s.frame(true, 3), &mut seen, &none);
    let n = seen.0.len();
    for _ in 0..20 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    }
    assert!(seen.0[n..].iter().all(|x| x.5 == 1 && x.4 <= 1));
    assert_continuous(&seen);
    // Suspended, then resumed on the same encoding: still continuous.
    p.target = Target::Suspended;
    for _ in 0..10 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    }
    let n = seen.0.len();
    p.target = Target::encoding(1);
    for _ in 0..3 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &none);
    }
    assert_eq!(seen.0.len(), n, "no resume before a keyframe");
    now += Duration::from_millis(33);
    feed(&mut p, now, &s.frame(true, 2), &mut seen, &none);
    assert!(seen.0.len() > n);
    assert_continuous(&seen);
    // Timestamps advanced with real time across the pause (≈ 14 frames × 3000).
    let (a, b) = (seen.0[n - 1].1, seen.0[n].1);
    assert!(b.wrapping_sub(a) >= 13 * 3000, "{a} {b}");
}

#[test]
fn picture_id_jumping_back_resyncs_on_the_next_keyframe() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    p.target = Target::layer(0, 2);
    let mut seen = Seen::default();
    let enc0 = |k: &Pkt| k.enc != 0;
    let mut now = t0;
    feed(&mut p, now, &s.frame(true, 2), &mut seen, &enc0);
    for _ in 0..10 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &enc0);
    }
    let n = seen.0.len();
    // The sender's encoder restarts: PictureID far back. Delta frames that far back are
    // stale; the keyframe starts a new segment and the stream goes on, continuous.
    s.pic[0] = s.pic[0].wrapping_sub(1000) & 0x7fff;
    now += Duration::from_millis(33);
    feed(&mut p, now, &s.frame(false, 2), &mut seen, &enc0);
    assert_eq!(seen.0.len(), n);
    now += Duration::from_millis(33);
    feed(&mut p, now, &s.frame(true, 2), &mut seen, &enc0);
    for _ in 0..10 {
        now += Duration::from_millis(33);
        feed(&mut p, now, &s.frame(false, 2), &mut seen, &enc0);
    }
    assert_eq!(
        seen.0.len(),
        n + 11 * 2,
        "forwarding resumed at the keyframe"
    );
    assert_continuous(&seen);
}

#[test]
fn first_keyframe_of_a_group_above_target_is_skipped_for_the_right_one() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    p.target = Target::encoding(1);
    let mut seen = Seen::default();
    // The group arrives highest encoding first.
    let mut pkts = s.frame(true, 1);
    pkts.reverse();
    feed(&mut p, t0, &pkts, &mut seen, &|_| false);
    assert_eq!(p.current_encoding(), Some(1));
    assert!(seen.0.iter().all(|x| x.5 == 1));
}

#[test]
fn temporal_layers_dropped_and_collapsed() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    p.target = Target::layer(0, 0);
    let mut seen = Seen::default();
    let only0 = |k: &Pkt| k.enc != 0;
    feed(&mut p, t0, &s.frame(true, 2), &mut seen, &only0);
    for i in 0..40 {
        feed(
            &mut p,
            t0 + Duration::from_millis(33 * i),
            &s.frame(false, 3),
            &mut seen,
            &only0,
        );
    }
    // 7.5 fps: keyframe + every 4th frame, 3 packets each; PictureIDs consecutive.
    assert_eq!(seen.0.len(), 2 + 10 * 3);
    assert!(seen.0.iter().all(|x| x.4 == 0));
    assert_continuous(&seen);
}

#[test]
fn loss_shows_as_gap_and_late_packets_fill_it() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    p.target = Target::layer(0, 1);
    let mut seen = Seen::default();
    let enc0 = |k: &Pkt| k.enc != 0;
    feed(&mut p, t0, &s.frame(true, 2), &mut seen, &enc0);
    let mut held = Vec::new();
    for i in 0..24 {
        let pkts: Vec<Pkt> = s
            .frame(false, 3)
            .into_iter()
            .filter(|k| k.enc == 0)
            .collect();
        // Lose the middle packet of every 5th frame; it arrives two frames later.
        let mut now_pkts = Vec::new();
        for (j, k) in pkts.into_iter().enumerate() {
            if i % 5 == 2 && j == 1 {
                held.push((i + 2, k));
            } else {
                now_pkts.push(k);
            }
        }
        let due: Vec<Pkt> = held
            .iter()
            .position(|(when, _)| *when == i)
            .map(|x| vec![held.remove(x).1])
            .unwrap_or_default();
        feed(&mut p, t0, &now_pkts, &mut seen, &|_| false);
        feed(&mut p, t0, &due, &mut seen, &|_| false);
    }
    // Sorted by sequence number, the receiver has a contiguous stream: every late packet landed
    // in the gap left for it, and the dropped TL2 frames left none.
    let mut v: Vec<u16> = seen.0.iter().map(|x| x.0).collect();
    let base = v[0];
    v.sort_unstable_by_key(|s| s.wrapping_sub(base));
    for w in v.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "{v:?}");
    }
    assert!(seen.0.iter().all(|x| x.4 <= 1));
}

#[test]
fn lost_packets_of_a_dropped_frame_leave_no_gap() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    p.target = Target::layer(0, 0);
    let mut seen = Seen::default();
    feed(&mut p, t0, &s.frame(true, 2), &mut seen, &|k| k.enc != 0);
    for _ in 0..16 {
        let pkts = s.frame(false, 3);
        // TL2 frames lose their first packet (never seen), TL1 frames their last.
        let lose = |k: &Pkt| {
            k.enc != 0
                || (k.payload[5] >> 6 == 2 && k.payload[0] & 0x10 != 0)
                || (k.payload[5] >> 6 == 1 && k.marker)
        };
        feed(&mut p, t0, &pkts, &mut seen, &lose);
    }
    assert_continuous(&seen);
}

#[test]
fn switch_cuts_an_incomplete_frame_with_a_one_number_gap() {
    let t0 = Instant::now();
    let mut s = Sender::new();
    let mut p = proj();
    p.target = Target::encoding(0);
    let mut seen = Seen::default();
    feed(&mut p, t0, &s.frame(true, 2), &mut seen, &|k| k.enc != 0);
    // A frame of encoding 0 whose last packet is still missing, then a switch to 1.
    feed(&mut p, t0, &s.frame(false, 3), &mut seen, &|k| {
        k.enc != 0 || k.marker
    });
    let before = seen.0.last().unwrap().0;
    p.target = Target::encoding(1);
    let now = t0 + Duration::from_secs(1);
    feed(&mut p, now, &s.frame(true, 2), &mut seen, &|k| k.enc != 1);
    let after = seen.0.last().unwrap();
    assert_eq!(after.5, 1);
    // First packet of the new encoding: two after the last one sent.
    let first_new = seen.0.iter().find(|x| x.5 == 1).unwrap().0;
    assert_eq!(first_new, before.wrapping_add(2));
}

#[test]
fn generic_context_switches_on_keyframes() {
    let t0 = Instant::now();
    let mut p = proj();
    p.target = Target::encoding(0);
    let key = VideoInfo {
        keyframe: Some(true),
        ..VideoInfo::default()
    };
    let delta = VideoInfo {
        keyframe: Some(false),
        ..VideoInfo::default()
    };
    let pkt = |enc, seq, ts, info| VideoPacket {
        encoding: enc,
        seq,
        timestamp: ts,
        marker: true,
        info,
        stream: None,
    };
    assert!(p.video(t0, &pkt(0, 10, 900, &delta)).is_none());
    let r = p.video(t0, &pkt(0, 11, 3900, &key)).unwrap();
    assert_eq!(
        (r.seq, r.timestamp, r.payload),
        (11, 3900, PayloadRewrite::None)
    );
    assert_eq!(p.video(t0, &pkt(0, 12, 6900, &delta)).unwrap().seq, 12);
    p.skip(0, 13);
    assert_eq!(p.video(t0, &pkt(0, 14, 9900, &delta)).unwrap().seq, 13);
    // Switch to encoding 1 on its keyframe: continues at 14, timestamp moves forward.
    p.target = Target::encoding(1);
    let later = t0 + Duration::from_millis(100);
    assert!(p.video(later, &pkt(1, 500, 77, &delta)).is_none());
    assert_eq!(p.video(later, &pkt(0, 15, 12900, &delta)).unwrap().seq, 14);
    let r = p.video(later, &pkt(1, 501, 3077, &key)).unwrap();
    assert_eq!(r.seq, 15);
    assert_eq!(r.timestamp, 12900 + 3000);
    assert!(p.video(later, &pkt(0, 16, 15900, &delta)).is_none());
    assert_eq!(p.sr_timestamp(1, 3077), Some(r.timestamp));
    assert_eq!(p.sr_timestamp(0, 1), None);
    // Unknown codec: no keyframe knowledge, forwarded right away.
    let mut q = proj();
    q.target = Target::encoding(0);
    let unknown = VideoInfo::default();
    assert_eq!(q.video(t0, &pkt(0, 7, 1, &unknown)).unwrap().seq, 7);
}

#[test]
fn audio_projection() {
    let mut p = Projection::new_audio(0, 9, None, 0);
    assert_eq!(p.audio(1), None);
    p.target = Target::encoding(0);
    assert_eq!(p.audio(2), Some(2));
    p.skip(0, 3);
    assert_eq!(p.audio(4), Some(3));
    assert_eq!(p.sr_timestamp(0, 77), Some(77));
    assert_eq!(p.current_encoding(), Some(0));
}
