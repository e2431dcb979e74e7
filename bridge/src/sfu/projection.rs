//! The forwarding decision point per (receiver, source). A [`Projection`] knows which layer of the
//! source the receiver should get ([`Target`], set by the allocation) and decides, packet by packet,
//! what to forward and how to rewrite it so the receiver sees **one continuous stream** under the
//! source's primary SSRC: no sequence gaps except real loss, monotonic timestamps, and (VP8)
//! consecutive PictureIDs and TL0PICIDX across every switch.
//!
//! Three contexts, chosen by what the packets carry:
//! - **audio**: one stream; packets the bridge drops for everyone (silence, force-mute, padding) are
//!   hidden by a [`SeqRewriter`].
//! - **VP8** (PictureID and TID present): decisions per *frame*. A [`SwitchFilter`] picks the
//!   encoding (switches only on keyframes, brief §7.4) and drops frames above the target temporal
//!   layer; a small ring of recent frames of the forwarded encoding ([`Vp8Stream`]) gives each
//!   accepted frame its sequence-number and PictureID offsets, collapsing dropped frames and leaving
//!   gaps only where packets may still arrive.
//! - **generic** (H264, VP8 without PictureID, others): the same switch filter on keyframes, linear
//!   sequence/timestamp offsets per forwarded segment.
//!
//! On a switch (another encoding, or resuming after a suspension) the new segment continues the
//! output: sequence = last + 1 (+ 1 more if the previous frame was cut short), timestamp = last +
//! 3000 × max(1, elapsed / 33 ms), PictureID and TL0PICIDX + 1.

use std::time::{Duration, Instant};

use super::codec::VideoInfo;
use super::keyframe::RateLimit;
use super::vp8::{self, Vp8Header};

/// Highest temporal layer index; a target with it accepts every temporal layer.
pub const ALL_TEMPORAL: u8 = 7;
/// Keyframes arriving within this window of the first one belong to one group (the browser sends
/// keyframes on all encodings together).
const KEYFRAME_GROUP: Duration = Duration::from_millis(300);
/// Recent frames tracked per forwarded VP8 stream (≈ 1 s at 30 fps).
const RING: usize = 32;

/// Which layer of a source a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing (not in last-N, maxHeight 0, not enough bandwidth, or not allocated yet).
    Suspended,
    /// Encoding `encoding` (0 = the first SIM SSRC) up to temporal layer `temporal`.
    Layer { encoding: u8, temporal: u8 },
}

impl Target {
    /// Every temporal layer of `encoding`.
    pub fn encoding(encoding: u8) -> Self {
        Target::Layer {
            encoding,
            temporal: ALL_TEMPORAL,
        }
    }

    pub fn encoding_id(&self) -> Option<u8> {
        match self {
            Target::Layer { encoding, .. } => Some(*encoding),
            Target::Suspended => None,
        }
    }

    /// JVB layer index, -1 when suspended.
    pub fn index(&self) -> i32 {
        match *self {
            Target::Layer { encoding, temporal } => {
                i32::from(super::layers::layer_index(encoding, temporal.min(7)))
            }
            Target::Suspended => -1,
        }
    }
}

/// `a` is newer than `b` in 16-bit sequence space.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// `a - b` in sequence space, signed.
fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// `a` is newer than `b` in 32-bit timestamp space.
fn ts_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// Keeps egress sequence numbers contiguous across packets the bridge drops on purpose.
///
/// `forward(seq)` maps an ingress sequence number to the egress one; `skip(seq)` records a dropped
/// packet: if it would have been the newest, the offset grows so the next forwarded packet follows
/// the last one sent. A packet that arrives late from before the last skip point cannot be placed
/// without colliding with already-used numbers and is refused (`None`).
#[derive(Debug, Clone, Default)]
pub struct SeqRewriter {
    delta: u16,
    highest_out: Option<u16>,
    /// The ingress sequence number at which `delta` last changed.
    boundary: Option<u16>,
}

impl SeqRewriter {
    pub fn forward(&mut self, seq: u16) -> Option<u16> {
        if let Some(b) = self.boundary
            && seq_newer(b, seq)
        {
            return None;
        }
        let out = seq.wrapping_sub(self.delta);
        match self.highest_out {
            Some(h) if !seq_newer(out, h) => {}
            _ => self.highest_out = Some(out),
        }
        Some(out)
    }

    pub fn skip(&mut self, seq: u16) {
        if let Some(h) = self.highest_out {
            let out = seq.wrapping_sub(self.delta);
            if seq_newer(out, h) {
                self.delta = seq.wrapping_sub(h);
                self.boundary = Some(seq);
            }
        }
    }

    /// Starts a new segment: `seq` maps to `out`, older ingress numbers are refused.
    pub fn rebase(&mut self, seq: u16, out: u16) {
        self.delta = seq.wrapping_sub(out);
        self.highest_out = Some(out.wrapping_sub(1));
        self.boundary = Some(seq);
    }

    pub fn highest_out(&self) -> Option<u16> {
        self.highest_out
    }
}

/// Chooses the encoding to forward (JVB's quality filter rules, brief §7.4): encodings change only on
/// keyframes; the first keyframe of a group is taken if its encoding is not above the target, later
/// keyframes of the group only if they move toward the target; while an up-switch is pending the
/// current encoding goes at full frame rate, while a down-switch is pending only its base layer.
#[derive(Debug, Clone, Default)]
pub struct SwitchFilter {
    /// The target encoding last seen.
    wanted: Option<u8>,
    /// The encoding being forwarded.
    current: Option<u8>,
    needs_keyframe: bool,
    /// Arrival of the first keyframe of the latest keyframe group.
    group_at: Option<Instant>,
    /// While a down-switch is pending, forward nothing of the current encoding.
    pub drain: bool,
}

impl SwitchFilter {
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The encoding a keyframe is needed for, if any.
    pub fn needs_keyframe(&self) -> Option<u8> {
        if self.needs_keyframe {
            self.wanted
        } else {
            None
        }
    }

    /// Forgets the current encoding (the next frame must be a keyframe).
    pub fn reset(&mut self) {
        self.current = None;
    }

    fn out_of_group(&self, now: Instant) -> bool {
        self.group_at
            .is_none_or(|t| now.saturating_duration_since(t) > KEYFRAME_GROUP)
    }

    /// Decides about one frame (or, for the generic context, one packet) of `encoding`.
    pub fn accept(
        &mut self,
        now: Instant,
        encoding: u8,
        tid: u8,
        keyframe: bool,
        target: Target,
    ) -> bool {
        let Target::Layer {
            encoding: t_enc,
            temporal: t_tid,
        } = target
        else {
            self.wanted = None;
            self.current = None;
            self.needs_keyframe = false;
            return false;
        };
        if self.wanted != Some(t_enc) {
            self.wanted = Some(t_enc);
            self.needs_keyframe = self.current != Some(t_enc);
        }
        if self.current.is_none() {
            self.needs_keyframe = true;
        }
        if keyframe {
            return self.on_keyframe(now, encoding, t_enc);
        }
        let Some(cur) = self.current else {
            return false;
        };
        // Outside a switching window a packet of an encoding closer to the target shows that a
        // switch is possible: ask (again) for a keyframe.
        if ((encoding > cur && cur < t_enc) || (encoding < cur && cur > t_enc))
            && self.out_of_group(now)
        {
            self.needs_keyframe = true;
        }
        if encoding != cur {
            return false;
        }
        if cur > t_enc {
            // Pending down-switch: the base layer keeps the picture moving until the keyframe,
            // unless even that does not fit the link (then it would only delay the keyframe).
            tid == 0 && !self.drain
        } else if cur < t_enc {
            true
        } else {
            tid <= t_tid
        }
    }

    fn on_keyframe(&mut self, now: Instant, encoding: u8, wanted: u8) -> bool {
        self.needs_keyframe = false;
        if self.out_of_group(now) {
            // The first keyframe of a group is taken even below the target: it may be the only one.
            self.group_at = Some(now);
            if encoding <= wanted {
                self.current = Some(encoding);
                return true;
            }
            return false;
        }
        let cur = self.current;
        let up_or_same = cur.is_none_or(|c| c <= encoding) && encoding <= wanted;
        let down = encoding <= wanted && cur.is_some_and(|c| wanted < c);
        if up_or_same || down {
            self.current = Some(encoding);
            true
        } else {
            false
        }
    }
}

/// Where the receiver's view of the stream is: what the next segment continues from.
#[derive(Debug, Clone, Copy, Default)]
struct OutState {
    started: bool,
    last_seq: u16,
    last_ts: u32,
    /// 15-bit space.
    last_pic: u16,
    last_tl0: u8,
    /// When the newest frame was projected (for the timestamp of the next switch).
    last_frame_at: Option<Instant>,
    /// Egress sequence number the current segment started at (the last switch or resume).
    segment_start: Option<u16>,
}

impl OutState {
    fn on_sent(&mut self, seq: u16, ts: u32) {
        if !self.started || seq_newer(seq, self.last_seq) {
            self.last_seq = seq;
        }
        if !self.started || ts_newer(ts, self.last_ts) {
            self.last_ts = ts;
        }
        self.started = true;
    }

    /// The timestamp a new segment starts at.
    fn switch_ts(&self, now: Instant) -> u32 {
        let frames = self.last_frame_at.map_or(1, |t| {
            (now.saturating_duration_since(t).as_millis() / 33).max(1)
        });
        self.last_ts
            .wrapping_add(3000u32.wrapping_mul(frames.min(u128::from(u32::MAX / 3000)) as u32))
    }
}

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

/// The generic context's forwarded segment.
#[derive(Debug, Clone)]
struct GenericStream {
    encoding: u8,
    seq: SeqRewriter,
    ts_delta: u32,
}

#[derive(Debug, Clone)]
enum Mode {
    /// Nothing forwarded yet in this mode (or the segment ended).
    Idle,
    Generic(GenericStream),
    Vp8(Box<Vp8Stream>),
}

/// Video forwarding state of one projection.
#[derive(Debug, Clone)]
struct VideoState {
    filter: SwitchFilter,
    out: OutState,
    /// Whether packets use the VP8 frame-tracking context.
    vp8: bool,
    mode: Mode,
}

#[derive(Debug, Clone)]
enum State {
    Audio(SeqRewriter),
    Video(Box<VideoState>),
}

/// How a forwarded packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u16,
    pub timestamp: u32,
    /// `(PictureID, TL0PICIDX)` to write into the VP8 descriptor.
    pub vp8: Option<(u16, u8)>,
    /// The packet belongs to a keyframe (retransmitting it matters most).
    pub keyframe: bool,
}

/// One video packet as the projections see it.
#[derive(Debug, Clone, Copy)]
pub struct VideoPacket<'a> {
    pub encoding: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub info: &'a VideoInfo,
}

/// Per (receiver, source) forwarding state.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Generation of the source slot this projection belongs to (a reused slot resets it).
    pub source_gen: u32,
    pub target: Target,
    /// SSRC the receiver knows this source by (the primary SSRC, as signalled by the focus).
    pub egress_ssrc: u32,
    /// RTX SSRC the receiver knows (the primary's FID partner).
    pub egress_rtx_ssrc: Option<u32>,
    pub rtx_seq: u16,
    /// Per-receiver keyframe request limiter for this source.
    pub keyframe_limit: RateLimit,
    pub packets_sent: u64,
    pub last_sent_at: Option<Instant>,
    state: State,
}

impl Projection {
    pub fn new_audio(
        source_gen: u32,
        egress_ssrc: u32,
        egress_rtx_ssrc: Option<u32>,
        rtx_seq: u16,
    ) -> Self {
        Self::new(
            source_gen,
            egress_ssrc,
            egress_rtx_ssrc,
            rtx_seq,
            State::Audio(SeqRewriter::default()),
        )
    }

    pub fn new_video(
        source_gen: u32,
        egress_ssrc: u32,
        egress_rtx_ssrc: Option<u32>,
        rtx_seq: u16,
    ) -> Self {
        Self::new(
            source_gen,
            egress_ssrc,
            egress_rtx_ssrc,
            rtx_seq,
            State::Video(Box::new(VideoState {
                filter: SwitchFilter::default(),
                out: OutState::default(),
                vp8: false,
                mode: Mode::Idle,
            })),
        )
    }

    fn new(
        source_gen: u32,
        egress_ssrc: u32,
        egress_rtx_ssrc: Option<u32>,
        rtx_seq: u16,
        state: State,
    ) -> Self {
        Projection {
            source_gen,
            target: Target::Suspended,
            egress_ssrc,
            egress_rtx_ssrc,
            rtx_seq,
            keyframe_limit: RateLimit::per_receiver(),
            packets_sent: 0,
            last_sent_at: None,
            state,
        }
    }

    /// The encoding whose packets the receiver currently gets (audio: 0 once something was sent).
    pub fn current_encoding(&self) -> Option<u8> {
        match &self.state {
            State::Audio(s) => s.highest_out().map(|_| 0),
            State::Video(v) => v.filter.current(),
        }
    }

    /// While a down-switch is pending, drop the current encoding entirely (set by the allocation
    /// when even its base layer exceeds the receiver's bandwidth).
    pub fn set_drain(&mut self, drain: bool) {
        if let State::Video(v) = &mut self.state {
            v.filter.drain = drain;
        }
    }

    /// The encoding a keyframe is needed for (switch pending or nothing forwarded yet).
    pub fn needs_keyframe(&self) -> Option<u8> {
        match &self.state {
            State::Video(v) if self.target != Target::Suspended => v.filter.needs_keyframe(),
            _ => None,
        }
    }

    /// Whether a packet sent as `seq` belongs to a segment before the current one (another
    /// encoding, or before a suspension): the receiver has moved on to a keyframe since, so
    /// retransmitting it is useless.
    pub fn is_superseded(&self, seq: u16) -> bool {
        match &self.state {
            State::Video(v) => v.out.segment_start.is_some_and(|s| seq_newer(s, seq)),
            State::Audio(_) => false,
        }
    }

    /// Audio: the egress sequence number, or `None` to drop.
    #[inline]
    pub fn audio(&mut self, seq: u16) -> Option<u16> {
        if self.target == Target::Suspended {
            self.skip(0, seq);
            return None;
        }
        match &mut self.state {
            State::Audio(s) => s.forward(seq),
            State::Video(_) => None,
        }
    }

    /// A packet of `encoding` this receiver will not get although it belongs to the stream it may be
    /// getting (dropped for everyone, or a payload type it did not negotiate): keeps its view
    /// contiguous.
    pub fn skip(&mut self, encoding: u8, seq: u16) {
        match &mut self.state {
            State::Audio(s) => s.skip(seq),
            State::Video(v) => match &mut v.mode {
                Mode::Idle => {}
                Mode::Generic(g) => {
                    if g.encoding == encoding {
                        g.seq.skip(seq);
                    }
                }
                Mode::Vp8(s) => {
                    if s.encoding == encoding {
                        let newest = s.newest;
                        let i = s.slot(newest);
                        let f = &mut s.frames[i];
                        if f.valid
                            && f.pic == newest
                            && f.end_seen
                            && seq == f.last_seq.wrapping_add(1).wrapping_add(f.pad_after)
                        {
                            f.pad_after += 1;
                        }
                    }
                }
            },
        }
    }

    /// Egress RTP timestamp for a sender report of `encoding` (`None`: that encoding is not what
    /// the receiver gets, drop the SR).
    pub fn sr_timestamp(&self, encoding: u8, ts: u32) -> Option<u32> {
        match &self.state {
            State::Audio(_) => Some(ts),
            State::Video(v) => match &v.mode {
                Mode::Generic(g) if g.encoding == encoding => Some(ts.wrapping_add(g.ts_delta)),
                Mode::Vp8(s) if s.encoding == encoding => Some(ts.wrapping_add(s.ts_delta)),
                _ => None,
            },
        }
    }

    /// Video: decides about one packet and computes its rewrite (`None` = drop).
    #[inline]
    pub fn video(&mut self, now: Instant, p: &VideoPacket<'_>) -> Option<Rewritten> {
        let target = self.target;
        let State::Video(v) = &mut self.state else {
            return None;
        };
        let is_vp8 = p.info.vp8.is_some();
        if is_vp8 != v.vp8 {
            // Another context: a new segment starting at a keyframe.
            v.vp8 = is_vp8;
            v.mode = Mode::Idle;
            v.filter.reset();
        }
        let r = match p.info.vp8 {
            Some(h) => vp8_packet(v, now, p, &h, target),
            None => generic_packet(v, now, p, target),
        }?;
        self.packets_sent += 1;
        self.last_sent_at = Some(now);
        Some(r)
    }
}

fn generic_packet(
    v: &mut VideoState,
    now: Instant,
    p: &VideoPacket<'_>,
    target: Target,
) -> Option<Rewritten> {
    let before = v.filter.current();
    // Unknown codecs: every packet may start a segment (nothing better to go by).
    let keyframe = p.info.keyframe.unwrap_or(true);
    if !v.filter.accept(now, p.encoding, 0, keyframe, target) {
        if let Mode::Generic(g) = &mut v.mode
            && g.encoding == p.encoding
        {
            g.seq.skip(p.seq);
        }
        return None;
    }
    let continuing = before == Some(p.encoding)
        && matches!(&v.mode, Mode::Generic(g) if g.encoding == p.encoding);
    if !continuing {
        let mut g = GenericStream {
            encoding: p.encoding,
            seq: SeqRewriter::default(),
            ts_delta: 0,
        };
        if v.out.started {
            g.seq.rebase(p.seq, v.out.last_seq.wrapping_add(1));
            g.ts_delta = v.out.switch_ts(now).wrapping_sub(p.timestamp);
        }
        v.out.segment_start = Some(if v.out.started {
            v.out.last_seq.wrapping_add(1)
        } else {
            p.seq
        });
        v.mode = Mode::Generic(g);
        v.out.last_frame_at = Some(now);
    }
    let Mode::Generic(g) = &mut v.mode else {
        return None;
    };
    let seq = g.seq.forward(p.seq)?;
    let ts = p.timestamp.wrapping_add(g.ts_delta);
    if v.out.started && ts_newer(ts, v.out.last_ts) {
        v.out.last_frame_at = Some(now);
    }
    v.out.on_sent(seq, ts);
    Some(Rewritten {
        seq,
        timestamp: ts,
        vp8: None,
        keyframe: p.info.is_keyframe(),
    })
}

fn vp8_packet(
    v: &mut VideoState,
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
    if let Mode::Vp8(s) = &mut v.mode
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
        return Some(emit(v, p, h, &f));
    }

    // A new frame: one decision for all its packets.
    let before = v.filter.current();
    let keyframe = start && h.keyframe;
    let accepted = v.filter.accept(now, p.encoding, tid, keyframe, target);
    let continuing = before == Some(p.encoding)
        && matches!(&v.mode, Mode::Vp8(s) if s.encoding == p.encoding && s.mask == mask);

    // A keyframe whose PictureID lies far behind everything tracked on this encoding: the
    // sender's PictureID jumped back (its encoder restarted). Without a new segment every later
    // frame would count as stale and the stream would stop for good.
    let resync = continuing
        && accepted
        && keyframe
        && matches!(&v.mode, Mode::Vp8(s) if s.dist(pic, s.newest) <= -(RING as i32 - 1));
    if !continuing || resync {
        if !accepted {
            return None;
        }
        // A new segment: continue the output where it stands.
        let mut s = Vp8Stream::new(p.encoding, mask);
        let mut out_first = p.seq;
        let mut out_pic = pic;
        let mut out_tl0 = h.tl0picidx.unwrap_or(0);
        let mut ts = p.timestamp;
        if v.out.started {
            let last_seq = v.out.last_seq;
            let cut_short = match &mut v.mode {
                Mode::Vp8(old) => match old
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
                _ => false,
            };
            out_first = v
                .out
                .last_seq
                .wrapping_add(1)
                .wrapping_add(u16::from(cut_short));
            out_pic = v.out.last_pic.wrapping_add(1) & 0x7fff;
            out_tl0 = v.out.last_tl0.wrapping_add(1);
            ts = v.out.switch_ts(now);
        }
        s.ts_delta = ts.wrapping_sub(p.timestamp);
        s.tl0_delta = out_tl0.wrapping_sub(h.tl0picidx.unwrap_or(0));
        v.out.segment_start = Some(out_first);
        s.newest = pic;
        let f = Frame {
            valid: true,
            pic,
            first_seq: p.seq,
            last_seq: p.seq,
            start_seen: start,
            end_seen: p.marker,
            keyframe,
            tid,
            accepted: true,
            pad_after: 0,
            seq_delta: p.seq.wrapping_sub(out_first),
            out_pic,
            closed_at: None,
        };
        s.last_seq_delta = f.seq_delta;
        s.last_pic_delta = pic.wrapping_sub(out_pic);
        let i = s.slot(pic);
        s.frames[i] = f;
        v.mode = Mode::Vp8(Box::new(s));
        v.out.last_frame_at = Some(now);
        return Some(emit(v, p, h, &f));
    }

    let Mode::Vp8(s) = &mut v.mode else {
        return None;
    };
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
    s.frames[i] = Frame {
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
    };
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
    v.out.last_frame_at = Some(now);
    Some(emit(v, p, h, &f))
}

/// The rewrite of a packet of accepted frame `f`; advances the output state.
fn emit(v: &mut VideoState, p: &VideoPacket<'_>, h: &Vp8Header, f: &Frame) -> Rewritten {
    let (ts_delta, tl0_delta) = match &v.mode {
        Mode::Vp8(s) => (s.ts_delta, s.tl0_delta),
        _ => (0, 0),
    };
    let seq = p.seq.wrapping_sub(f.seq_delta);
    let ts = p.timestamp.wrapping_add(ts_delta);
    let tl0 = h.tl0picidx.unwrap_or(0).wrapping_add(tl0_delta);
    let newest = !v.out.started || seq_newer(seq, v.out.last_seq);
    v.out.on_sent(seq, ts);
    if newest {
        v.out.last_pic = f.out_pic;
        v.out.last_tl0 = tl0;
    }
    Rewritten {
        seq,
        timestamp: ts,
        vp8: Some((f.out_pic, tl0)),
        keyframe: f.keyframe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::codec::{Codec, inspect};

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
            };
            if let Some(r) = p.video(now, &vp) {
                let (pic, tl0) = r.vp8.unwrap();
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
        p.target = Target::Layer {
            encoding: 1,
            temporal: 1,
        };
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
        p.target = Target::Layer {
            encoding: 0,
            temporal: 2,
        };
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
        p.target = Target::Layer {
            encoding: 0,
            temporal: 0,
        };
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
        p.target = Target::Layer {
            encoding: 0,
            temporal: 1,
        };
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
        p.target = Target::Layer {
            encoding: 0,
            temporal: 0,
        };
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
        };
        assert!(p.video(t0, &pkt(0, 10, 900, &delta)).is_none());
        let r = p.video(t0, &pkt(0, 11, 3900, &key)).unwrap();
        assert_eq!((r.seq, r.timestamp, r.vp8), (11, 3900, None));
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
}
