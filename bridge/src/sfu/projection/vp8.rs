//! The VP8 context: decisions per *frame* (PictureID and TID present). A small ring of recent frames
//! of the forwarded encoding gives each accepted frame its sequence-number and PictureID offsets,
//! collapsing dropped frames and leaving gaps only where packets may still arrive; PictureID and
//! TL0PICIDX stay consecutive across every switch.

use std::time::Instant;

use crate::sfu::codec::PayloadRewrite;
use crate::sfu::vp8::{self, Vp8Header};

use super::seq::{seq_diff, seq_newer};
use super::stream::{CodecStream, OutState, Rewritten, Segment, VideoPacket};
use super::switch::SwitchFilter;
use super::target::Target;

/// Recent frames tracked per forwarded VP8 stream (≈ 1 s at 30 fps).
const RING: usize = 32;

/// One tracked frame of the forwarded VP8 encoding.
#[derive(Debug, Clone, Copy, Default)]
struct Frame {
    valid: bool,
    /// Sender's PictureID (its own width).
    pic: u16,
    first_seq: u16,
    last_seq: u16,
    start_seen: bool,
    end_seen: bool,
    keyframe: bool,
    tid: u8,
    accepted: bool,
    /// Padding-only packets seen right after the frame's last packet.
    pad_after: u16,
    /// Egress = ingress - `seq_delta` (accepted frames).
    seq_delta: u16,
    /// Egress PictureID (15-bit space).
    out_pic: u16,
    /// Packets newer than this are refused (the frame was cut short by a switch).
    closed_at: Option<u16>,
}

impl Frame {
    /// A frame as its first packet `p` describes it (offsets not decided yet).
    fn first_packet(
        pic: u16,
        p: &VideoPacket<'_>,
        start: bool,
        keyframe: bool,
        tid: u8,
        accepted: bool,
    ) -> Frame {
        Frame {
            valid: true,
            pic,
            first_seq: p.seq,
            last_seq: p.seq,
            start_seen: start,
            end_seen: p.marker,
            keyframe,
            tid,
            accepted,
            ..Frame::default()
        }
    }

    fn out_first(&self) -> u16 {
        self.first_seq.wrapping_sub(self.seq_delta)
    }
    fn out_last(&self) -> u16 {
        self.last_seq.wrapping_sub(self.seq_delta)
    }
}

/// The forwarded VP8 encoding: recent frames and the segment's constant offsets.
#[derive(Debug, Clone)]
pub struct Vp8Stream {
    encoding: u8,
    /// PictureID mask of the sender's stream (0x7fff or 0x7f).
    mask: u16,
    frames: [Frame; RING],
    newest: u16,
    ts_delta: u32,
    tl0_delta: u8,
    /// Offsets of the most recently projected frame, for frames with no reference in the ring.
    last_seq_delta: u16,
    last_pic_delta: u16,
}

impl Vp8Stream {
    fn new(encoding: u8, mask: u16) -> Self {
        Vp8Stream {
            encoding,
            mask,
            frames: [Frame::default(); RING],
            newest: 0,
            ts_delta: 0,
            tl0_delta: 0,
            last_seq_delta: 0,
            last_pic_delta: 0,
        }
    }

    fn slot(&self, pic: u16) -> usize {
        usize::from(pic) % RING
    }

    fn get(&self, pic: u16) -> Option<&Frame> {
        let f = &self.frames[self.slot(pic)];
        (f.valid && f.pic == pic).then_some(f)
    }

    fn dist(&self, a: u16, b: u16) -> i32 {
        vp8::picture_id_delta(a, b, self.mask)
    }

    fn pic_add(&self, a: u16, d: i32) -> u16 {
        (i32::from(a) + d).rem_euclid(i32::from(self.mask) + 1) as u16
    }

    /// Sequence distance the receiver sees between the last packet of `f1` and the first of `f2`
    /// (`f1` before `f2`): dropped frames collapse, packets that may still arrive keep their place.
    fn seq_gap(f1: &Frame, f2: &Frame, mask: u16) -> i32 {
        let mut gap = seq_diff(f2.first_seq, f1.last_seq);
        if f1.end_seen {
            gap -= i32::from(f1.pad_after);
        }
        if !f1.accepted && !f2.accepted && vp8::picture_id_delta(f2.pic, f1.pic, mask) == 1 {
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

    fn pic_gap(&self, f1: &Frame, f2: &Frame) -> i32 {
        let g = self.dist(f2.pic, f1.pic);
        if !f1.accepted && g > 0 { g - 1 } else { g }
    }

    /// Temporal nesting: a TL>0 frame is decodable if the previous frame of an equal or lower layer
    /// was forwarded (unknown history counts as decodable).
    fn decodable(&self, pic: u16, tid: u8, keyframe: bool) -> bool {
        if keyframe || tid == 0 {
            return true;
        }
        let mut p = pic;
        for _ in 1..RING {
            let prev = self.pic_add(p, -1);
            let Some(f) = self.get(prev) else {
                return true;
            };
            if f.keyframe || f.tid <= tid {
                return f.accepted;
            }
            p = prev;
        }
        true
    }

    /// Offsets for the new accepted frame at `pic` from the nearest accepted frame in the ring.
    fn in_layer_offsets(&self, pic: u16) -> (u16, u16) {
        let Some(me) = self.get(pic).copied() else {
            return (self.last_seq_delta, self.last_pic_delta);
        };
        // Backwards to the previous accepted frame.
        let (mut later, mut seq_sum, mut pic_sum) = (me, 0i32, 0i32);
        let mut p = pic;
        for _ in 1..RING {
            p = self.pic_add(p, -1);
            let Some(f) = self.get(p).copied() else {
                continue;
            };
            seq_sum += Self::seq_gap(&f, &later, self.mask);
            pic_sum += self.pic_gap(&f, &later);
            if f.accepted {
                let out = (i32::from(f.out_last()) + seq_sum) as u16;
                let out_pic = (i32::from(f.out_pic) + pic_sum).rem_euclid(0x8000) as u16;
                return (me.first_seq.wrapping_sub(out), me.pic.wrapping_sub(out_pic));
            }
            later = f;
        }
        // Forwards to the next accepted frame (this frame arrived late).
        let (mut earlier, mut seq_sum, mut pic_sum) = (me, 0i32, 0i32);
        let mut p = pic;
        for _ in 1..RING {
            p = self.pic_add(p, 1);
            if self.dist(p, self.newest) > 0 {
                break;
            }
            let Some(f) = self.get(p).copied() else {
                continue;
            };
            seq_sum += Self::seq_gap(&earlier, &f, self.mask);
            pic_sum += self.pic_gap(&earlier, &f);
            if f.accepted {
                // `seq_sum` ends at f's first packet and starts at me's last (= first) packet.
                let out = (i32::from(f.out_first()) - seq_sum) as u16;
                let out_pic = (i32::from(f.out_pic) - pic_sum).rem_euclid(0x8000) as u16;
                return (me.last_seq.wrapping_sub(out), me.pic.wrapping_sub(out_pic));
            }
            earlier = f;
        }
        (self.last_seq_delta, self.last_pic_delta)
    }
}

/// Boxed: the ring is ≈ 1 kB and a segment is built once per switch.
impl CodecStream for Box<Vp8Stream> {
    /// The payload descriptor (with PictureID and TID: see [`Vp8Header::projectable`]).
    type Desc = Vp8Header;

    fn project(
        slot: &mut Option<Self>,
        filter: &mut SwitchFilter,
        out: &mut OutState,
        now: Instant,
        p: &VideoPacket<'_>,
        h: &Vp8Header,
        target: Target,
    ) -> Option<Rewritten> {
        project(slot, filter, out, now, p, h, target)
    }
}

impl Segment for Box<Vp8Stream> {
    fn encoding(&self) -> u8 {
        self.encoding
    }

    fn skip(&mut self, seq: u16) {
        // Padding right after the newest frame's last packet: the next frame follows it.
        let newest = self.newest;
        let i = self.slot(newest);
        let f = &mut self.frames[i];
        if f.valid
            && f.pic == newest
            && f.end_seen
            && seq == f.last_seq.wrapping_add(1).wrapping_add(f.pad_after)
        {
            f.pad_after += 1;
        }
    }

    fn egress_timestamp(&self, ts: u32) -> u32 {
        ts.wrapping_add(self.ts_delta)
    }
}

fn project(
    slot: &mut Option<Box<Vp8Stream>>,
    filter: &mut SwitchFilter,
    out: &mut OutState,
    now: Instant,
    p: &VideoPacket<'_>,
    h: &Vp8Header,
    target: Target,
) -> Option<Rewritten> {
    let pic = h.picture_id?;
    let mask = h.picture_id_mask();
    let tid = h.tid.unwrap_or(0);
    let start = h.start_of_frame();

    // A packet of a frame already seen on the forwarded encoding.
    if let Some(s) = slot.as_deref_mut()
        && s.encoding == p.encoding
        && s.mask == mask
        && s.get(pic).is_some()
    {
        let i = s.slot(pic);
        let f = &mut s.frames[i];
        if seq_newer(f.first_seq, p.seq) {
            f.first_seq = p.seq;
        }
        if seq_newer(p.seq, f.last_seq) {
            f.last_seq = p.seq;
        }
        f.start_seen |= start;
        f.end_seen |= p.marker;
        if !f.accepted || f.closed_at.is_some_and(|c| seq_newer(p.seq, c)) {
            return None;
        }
        let f = *f;
        return Some(s.emit(out, p, h, &f));
    }

    // A new frame: one decision for all its packets.
    let before = filter.current();
    let keyframe = start && h.keyframe;
    let accepted = filter.accept(now, p.encoding, tid, keyframe, target);
    let continuing = before == Some(p.encoding)
        && slot
            .as_deref()
            .is_some_and(|s| s.encoding == p.encoding && s.mask == mask);

    // A keyframe whose PictureID lies far behind everything tracked on this encoding: the
    // sender's PictureID jumped back (its encoder restarted). Without a new segment every later
    // frame would count as stale and the stream would stop for good.
    let resync = continuing
        && accepted
        && keyframe
        && slot
            .as_deref()
            .is_some_and(|s| s.dist(pic, s.newest) <= -(RING as i32 - 1));
    if !continuing || resync {
        if !accepted {
            return None;
        }
        // A new segment: continue the output where it stands.
        let mut s = Box::new(Vp8Stream::new(p.encoding, mask));
        let mut out_first = p.seq;
        let mut out_pic = pic;
        let mut out_tl0 = h.tl0picidx.unwrap_or(0);
        let mut ts = p.timestamp;
        if out.started {
            let last_seq = out.last_seq;
            // The previous VP8 segment (any encoding) may have a frame still open.
            let cut_short = match slot.as_deref_mut() {
                Some(old) => match old
                    .frames
                    .iter_mut()
                    .find(|f| f.valid && f.accepted && f.out_last() == last_seq)
                {
                    Some(f) if !f.end_seen => {
                        f.closed_at = Some(f.last_seq);
                        true
                    }
                    _ => false,
                },
                None => false,
            };
            out_first = out
                .last_seq
                .wrapping_add(1)
                .wrapping_add(u16::from(cut_short));
            out_pic = out.last_pic.wrapping_add(1) & 0x7fff;
            out_tl0 = out.last_tl0.wrapping_add(1);
            ts = out.switch_ts(now);
        }
        s.ts_delta = ts.wrapping_sub(p.timestamp);
        s.tl0_delta = out_tl0.wrapping_sub(h.tl0picidx.unwrap_or(0));
        out.segment_start = Some(out_first);
        s.newest = pic;
        let f = Frame {
            seq_delta: p.seq.wrapping_sub(out_first),
            out_pic,
            ..Frame::first_packet(pic, p, start, keyframe, tid, true)
        };
        s.last_seq_delta = f.seq_delta;
        s.last_pic_delta = pic.wrapping_sub(out_pic);
        let i = s.slot(pic);
        s.frames[i] = f;
        out.last_frame_at = Some(now);
        let r = s.emit(out, p, h, &f);
        *slot = Some(s);
        return Some(r);
    }

    let s = slot.as_deref_mut()?;
    let ahead = s.dist(pic, s.newest);
    if ahead <= -(RING as i32 - 1) {
        return None; // older than anything tracked
    }
    if ahead > 0 {
        // Slots between the newest frame and this one now describe frames never seen.
        let n = (ahead as usize).min(RING);
        for k in 1..=n {
            let q = s.pic_add(s.newest, k as i32);
            let i = s.slot(q);
            s.frames[i].valid = false;
        }
        s.newest = pic;
    }
    let accepted = accepted && s.decodable(pic, tid, keyframe);
    let i = s.slot(pic);
    s.frames[i] = Frame::first_packet(pic, p, start, keyframe, tid, accepted);
    if !accepted {
        return None;
    }
    let (seq_delta, pic_delta) = s.in_layer_offsets(pic);
    let f = &mut s.frames[i];
    f.seq_delta = seq_delta;
    f.out_pic = pic.wrapping_sub(pic_delta) & 0x7fff;
    let f = *f;
    s.last_seq_delta = seq_delta;
    s.last_pic_delta = pic_delta;
    out.last_frame_at = Some(now);
    Some(s.emit(out, p, h, &f))
}

impl Vp8Stream {
    /// The rewrite of a packet of accepted frame `f`; advances the output state.
    fn emit(&self, out: &mut OutState, p: &VideoPacket<'_>, h: &Vp8Header, f: &Frame) -> Rewritten {
        let seq = p.seq.wrapping_sub(f.seq_delta);
        let ts = p.timestamp.wrapping_add(self.ts_delta);
        let tl0 = h.tl0picidx.unwrap_or(0).wrapping_add(self.tl0_delta);
        let newest = !out.started || seq_newer(seq, out.last_seq);
        out.on_sent(seq, ts);
        if newest {
            out.last_pic = f.out_pic;
            out.last_tl0 = tl0;
        }
        Rewritten {
            seq,
            timestamp: ts,
            payload: PayloadRewrite::Vp8 {
                picture_id: f.out_pic,
                tl0picidx: tl0,
            },
            keyframe: f.keyframe,
        }
    }
}
