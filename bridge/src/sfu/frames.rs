//! Recent frames of one forwarded stream and the egress sequence numbers of those a receiver gets:
//! the part of a frame-based projection that codecs with explicit frame identities (the AV1
//! Dependency Descriptor's frame numbers, VP9's picture ID and spatial layer) share.
//!
//! Frames are keyed by an unwrapped *frame index* that grows in decode order. The first packet of a
//! frame seen decides for the whole frame ([`FrameRing::insert`]); an accepted frame gets a constant
//! offset `ingress seq − egress seq`, chosen so that the receiver sees no gap for the frames the
//! bridge drops and keeps a gap wherever packets may still arrive (JVB's `seqGap`,
//! `jvb/.../cc/av1/Av1DDAdaptiveSourceProjectionContext.kt`). A packet of a frame already decided
//! gets that frame's offset, whenever it arrives (retransmissions included).
//!
//! [`Continuity`] is where the receiver's view of the stream stands (last egress sequence number
//! and timestamp): a new segment (a keyframe after a switch of encoding or a suspension) continues
//! from there.

use std::time::Instant;

/// Frames tracked: 1.4 s of a 3-spatial-layer stream at 30 fps (AV1 frame numbers), 1 s of VP9
/// pictures (4 layer slots each). 3 KB per (receiver, source).
pub const RING: usize = 128;

/// `a` is newer than `b` in 16-bit sequence space.
#[inline]
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// `a - b` in 16-bit sequence space, signed.
#[inline]
pub fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// Extends 16-bit counters (frame numbers, PictureIDs scaled by layers) to a monotonic `u64`,
/// tolerating reordering of up to half the counter's range.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwrapper {
    last: Option<u64>,
}

impl Unwrapper {
    /// Unwraps `v` of a `bits`-bit counter (`bits <= 32`).
    pub fn unwrap(&mut self, v: u32, bits: u32) -> u64 {
        let i = self.peek(v, bits);
        self.update(i);
        i
    }

    /// What [`unwrap`](Self::unwrap) would return, without recording it.
    pub fn peek(&self, v: u32, bits: u32) -> u64 {
        let range = 1u64 << bits;
        let v = u64::from(v) & (range - 1);
        let Some(last) = self.last else {
            // Start far from zero so that reordered packets before the first one stay positive.
            return (range << 16) | v;
        };
        let base = last & !(range - 1);
        let mut cand = base | v;
        if cand + range / 2 < last {
            cand += range;
        } else if cand > last + range / 2 && cand >= range {
            cand -= range;
        }
        cand
    }

    /// Records an unwrapped value from [`peek`](Self::peek).
    pub fn update(&mut self, i: u64) {
        if self.last.is_none_or(|l| i > l) {
            self.last = Some(i);
        }
    }
}

/// One tracked frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct Frame {
    pub valid: bool,
    pub index: u64,
    pub first_seq: u16,
    pub last_seq: u16,
    pub start_seen: bool,
    pub end_seen: bool,
    /// Forwarded to the receiver.
    pub accepted: bool,
    /// Egress = ingress − `seq_delta` (accepted frames).
    pub seq_delta: u16,
    /// Packets dropped for everyone (padding) right after the frame's last packet.
    pub pad_after: u16,
    /// Codec state attached to the frame (the AV1 projection: the chains intact as of it).
    pub tag: u32,
}

/// The recent frames of the forwarded stream (one encoding, one segment).
#[derive(Debug, Clone)]
pub struct FrameRing {
    frames: Box<[Frame]>,
    newest: Option<u64>,
    /// Frames before this index belong to an earlier segment: refused.
    floor: u64,
}

impl Default for FrameRing {
    fn default() -> Self {
        FrameRing {
            frames: vec![Frame::default(); RING].into_boxed_slice(),
            newest: None,
            floor: 0,
        }
    }
}

impl FrameRing {
    #[inline]
    fn slot(index: u64) -> usize {
        (index % RING as u64) as usize
    }

    /// Starts a new segment at frame `index`: everything tracked is forgotten.
    pub fn reset(&mut self, index: u64) {
        for f in self.frames.iter_mut() {
            f.valid = false;
        }
        self.newest = None;
        self.floor = index;
    }

    pub fn newest(&self) -> Option<u64> {
        self.newest
    }

    /// The frame at `index`, if tracked.
    #[inline]
    pub fn get(&self, index: u64) -> Option<&Frame> {
        let f = &self.frames[Self::slot(index)];
        (f.valid && f.index == index && self.in_window(index)).then_some(f)
    }

    #[inline]
    pub fn get_mut(&mut self, index: u64) -> Option<&mut Frame> {
        let live = self.in_window(index);
        let f = &mut self.frames[Self::slot(index)];
        (f.valid && f.index == index && live).then_some(f)
    }

    /// Whether `index` can still be placed: not before the segment, not older than the ring.
    pub fn in_window(&self, index: u64) -> bool {
        index >= self.floor && self.newest.is_none_or(|n| index + RING as u64 > n)
    }

    /// Records a packet of a known frame; `None` if the frame is not tracked.
    #[inline]
    pub fn on_packet(&mut self, index: u64, seq: u16, start: bool, end: bool) -> Option<&Frame> {
        let f = self.get_mut(index)?;
        if seq_newer(f.first_seq, seq) {
            f.first_seq = seq;
        }
        if seq_newer(seq, f.last_seq) {
            f.last_seq = seq;
        }
        f.start_seen |= start;
        f.end_seen |= end;
        Some(f)
    }

    /// Tracks a new frame from its first packet seen (not yet accepted). The caller checked
    /// [`in_window`](Self::in_window).
    pub fn insert(&mut self, index: u64, seq: u16, start: bool, end: bool) -> &mut Frame {
        if let Some(n) = self.newest {
            if index > n {
                // Slots between the newest frame and this one now describe frames never seen.
                for k in (n + 1)..index.min(n + RING as u64) {
                    self.frames[Self::slot(k)].valid = false;
                }
                self.newest = Some(index);
            }
        } else {
            self.newest = Some(index);
        }
        let f = &mut self.frames[Self::slot(index)];
        *f = Frame {
            valid: true,
            index,
            first_seq: seq,
            last_seq: seq,
            start_seen: start,
            end_seen: end,
            ..Frame::default()
        };
        f
    }

    /// A packet the bridge drops for every receiver (padding-only): if it directly follows the
    /// newest frame, the receiver will not see a gap for it.
    pub fn on_padding(&mut self, seq: u16) {
        let Some(n) = self.newest else { return };
        if let Some(f) = self.get_mut(n)
            && f.end_seen
            && seq == f.last_seq.wrapping_add(1).wrapping_add(f.pad_after)
        {
            f.pad_after += 1;
        }
    }

    /// `Some(true)` if frame `index` was forwarded, `Some(false)` if it was seen and dropped,
    /// `None` if unknown (never seen, before the segment, or aged out).
    #[inline]
    pub fn accepted(&self, index: u64) -> Option<bool> {
        self.get(index).map(|f| f.accepted)
    }

    /// Sequence distance the receiver sees between the last packet of `f1` and the first of `f2`
    /// (`f1` before `f2`): dropped frames collapse, packets that may still arrive keep their place.
    fn seq_gap(f1: &Frame, f2: &Frame) -> i32 {
        let mut gap = seq_diff(f2.first_seq, f1.last_seq);
        if f1.end_seen {
            gap -= i32::from(f1.pad_after);
        }
        if !f1.accepted && !f2.accepted && f2.index == f1.index + 1 {
            return 0;
        }
        if !f1.accepted && !f1.end_seen && gap > 1 {
            gap -= 1;
        }
        if !f2.accepted && !f2.start_seen && gap > 1 {
            gap -= 1;
        }
        if !f1.accepted && gap > 0 {
            gap -= 1;
        }
        gap
    }

    /// The `seq_delta` for the newly accepted frame `index` (already inserted), placed relative to
    /// the nearest accepted frame before it (or after it, for a frame that arrived late). `None`
    /// when no accepted frame is tracked.
    pub fn place(&self, index: u64) -> Option<u16> {
        let me = *self.get(index)?;
        // Backwards to the previous accepted frame.
        let (mut later, mut sum) = (me, 0i32);
        let lowest = index.saturating_sub(RING as u64 - 1).max(self.floor);
        let mut k = index;
        while k > lowest {
            k -= 1;
            let Some(f) = self.get(k).copied() else {
                continue;
            };
            sum += Self::seq_gap(&f, &later);
            if f.accepted {
                let out = f
                    .last_seq
                    .wrapping_sub(f.seq_delta)
                    .wrapping_add(sum as u16);
                return Some(me.first_seq.wrapping_sub(out));
            }
            later = f;
        }
        // Forwards to the next accepted frame (this one arrived late).
        let newest = self.newest?;
        let (mut earlier, mut sum) = (me, 0i32);
        let mut k = index;
        while k < newest {
            k += 1;
            let Some(f) = self.get(k).copied() else {
                continue;
            };
            sum += Self::seq_gap(&earlier, &f);
            if f.accepted {
                let out = f
                    .first_seq
                    .wrapping_sub(f.seq_delta)
                    .wrapping_sub(sum as u16);
                return Some(me.last_seq.wrapping_sub(out));
            }
            earlier = f;
        }
        None
    }
}

/// Where the receiver's view of the stream stands: what the next segment continues from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Continuity {
    pub started: bool,
    pub last_seq: u16,
    pub last_ts: u32,
    /// When the newest frame was projected (for the timestamp of the next segment).
    pub last_frame_at: Option<Instant>,
    /// The last forwarded packet did not end its frame (a new segment leaves a gap for it).
    pub open_frame: bool,
    /// Egress sequence number the current segment started at.
    pub segment_start: Option<u16>,
}

impl Continuity {
    /// Records a forwarded packet.
    pub fn on_sent(&mut self, now: Instant, seq: u16, ts: u32, end_of_frame: bool) {
        if !self.started || seq_newer(seq, self.last_seq) {
            self.last_seq = seq;
            self.open_frame = !end_of_frame;
        }
        if !self.started || ts.wrapping_sub(self.last_ts) < 0x8000_0000 && ts != self.last_ts {
            self.last_ts = ts;
            self.last_frame_at = Some(now);
        }
        self.started = true;
    }

    /// The first egress sequence number of a new segment.
    pub fn next_segment_seq(&self, ingress_first: u16) -> u16 {
        if !self.started {
            return ingress_first;
        }
        self.last_seq
            .wrapping_add(1)
            .wrapping_add(u16::from(self.open_frame))
    }

    /// The timestamp a new segment starts at: one 30 fps frame per 33 ms since the last frame.
    pub fn next_segment_ts(&self, now: Instant, ingress_ts: u32) -> u32 {
        if !self.started {
            return ingress_ts;
        }
        let frames = self.last_frame_at.map_or(1, |t| {
            (now.saturating_duration_since(t).as_millis() / 33).clamp(1, 1_000_000)
        });
        self.last_ts
            .wrapping_add(3000u32.wrapping_mul(frames as u32))
    }

    /// Whether an egress sequence number belongs to a segment before the current one.
    pub fn is_superseded(&self, seq: u16) -> bool {
        self.segment_start.is_some_and(|s| seq_newer(s, seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrapper_handles_wrap_and_reorder() {
        let mut u = Unwrapper::default();
        let a = u.unwrap(65534, 16);
        assert_eq!(u.unwrap(65535, 16), a + 1);
        assert_eq!(u.unwrap(0, 16), a + 2);
        assert_eq!(u.unwrap(65533, 16), a - 1, "reordered before the wrap");
        assert_eq!(u.unwrap(1, 16), a + 3);
        assert_eq!(u.unwrap(5, 16), a + 7);
        let mut u = Unwrapper::default();
        let a = u.unwrap(3, 7);
        assert_eq!(u.unwrap(127, 7), a - 4);
        assert_eq!(u.unwrap(4, 7), a + 1);
    }

    /// Frames of `n` packets each, consecutive sequence numbers from 100; `accept` says which.
    fn run(sizes: &[u16], accept: &[bool]) -> Vec<Option<u16>> {
        let mut ring = FrameRing::default();
        ring.reset(10);
        let mut seq = 100u16;
        let mut out = Vec::new();
        let mut first = true;
        for (i, (&n, &a)) in sizes.iter().zip(accept).enumerate() {
            let idx = 10 + i as u64;
            let f = ring.insert(idx, seq, true, n == 1);
            f.accepted = a;
            let delta = if a {
                let d = if first {
                    Some(seq.wrapping_sub(1000))
                } else {
                    ring.place(idx)
                };
                first = false;
                d
            } else {
                None
            };
            if let Some(d) = delta {
                ring.get_mut(idx).unwrap().seq_delta = d;
            }
            for k in 0..n {
                if k > 0 {
                    ring.on_packet(idx, seq, false, k == n - 1);
                }
                out.push(delta.map(|d| seq.wrapping_sub(d)));
                seq = seq.wrapping_add(1);
            }
        }
        out
    }

    #[test]
    fn dropped_frames_collapse() {
        let got = run(&[2, 3, 1, 2, 2], &[true, false, true, false, true]);
        let forwarded: Vec<u16> = got.iter().flatten().copied().collect();
        assert_eq!(forwarded, vec![1000, 1001, 1002, 1003, 1004]);
    }

    #[test]
    fn a_late_frame_is_placed_before_the_next_accepted_one() {
        let mut ring = FrameRing::default();
        ring.reset(0);
        let f = ring.insert(0, 10, true, true);
        f.accepted = true;
        f.seq_delta = 10u16.wrapping_sub(500);
        // Frame 2 (seq 13) arrives before frame 1 (seqs 11, 12).
        ring.insert(2, 13, true, true).accepted = true;
        let d2 = ring.place(2).unwrap();
        ring.get_mut(2).unwrap().seq_delta = d2;
        assert_eq!(
            13u16.wrapping_sub(d2),
            503,
            "a gap of two is kept for frame 1"
        );
        ring.insert(1, 12, false, true).accepted = true;
        let d1 = ring.place(1).unwrap();
        assert_eq!(12u16.wrapping_sub(d1), 502);
        assert_eq!(11u16.wrapping_sub(d1), 501);
    }

    #[test]
    fn padding_between_frames_is_hidden() {
        let mut ring = FrameRing::default();
        ring.reset(0);
        let f = ring.insert(0, 10, true, true);
        f.accepted = true;
        f.seq_delta = 10u16.wrapping_sub(500);
        ring.on_padding(11);
        ring.on_padding(12);
        ring.on_padding(14); // not adjacent: a real gap
        ring.insert(1, 15, true, true).accepted = true;
        assert_eq!(15u16.wrapping_sub(ring.place(1).unwrap()), 503);
    }

    #[test]
    fn window_and_floor() {
        let mut ring = FrameRing::default();
        ring.reset(100);
        assert!(!ring.in_window(99));
        ring.insert(100, 1, true, true);
        ring.insert(100 + RING as u64 + 5, 2, true, true);
        assert!(!ring.in_window(100));
        assert!(ring.get(100).is_none());
        assert_eq!(ring.accepted(100 + RING as u64 + 5), Some(false));
    }

    #[test]
    fn continuity_of_segments() {
        let now = Instant::now();
        let mut c = Continuity::default();
        assert_eq!(c.next_segment_seq(77), 77);
        c.on_sent(now, 500, 9000, false);
        assert_eq!(c.next_segment_seq(1), 502, "a gap for the unfinished frame");
        c.on_sent(now, 501, 9000, true);
        assert_eq!(c.next_segment_seq(1), 502);
        assert_eq!(
            c.next_segment_ts(now + std::time::Duration::from_millis(100), 0),
            9000 + 9000
        );
    }
}
