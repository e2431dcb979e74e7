//! What every codec context of a projection shares: the target it forwards toward ([`Target`]), one
//! packet as the contexts see it ([`VideoPacket`]), the receiver's view of the stream so far
//! ([`OutState`]), the rewrite a forwarded packet gets ([`Rewritten`]), and the interface a codec
//! context implements ([`CodecStream`]).

use std::time::Instant;

use crate::sfu::codec::{PayloadRewrite, StreamState, VideoInfo};
use crate::sfu::frames::Continuity;

use super::seq::{seq_newer, ts_newer};
use super::switch::SwitchFilter;
use super::target::Target;

/// Where the receiver's view of the stream is: what the next segment continues from.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutState {
    pub started: bool,
    pub last_seq: u16,
    pub last_ts: u32,
    /// 15-bit space.
    pub last_pic: u16,
    pub last_tl0: u8,
    /// When the newest frame was projected (for the timestamp of the next switch).
    pub last_frame_at: Option<Instant>,
    /// Egress sequence number the current segment started at (the last switch or resume).
    pub segment_start: Option<u16>,
}

impl OutState {
    pub fn on_sent(&mut self, seq: u16, ts: u32) {
        if !self.started || seq_newer(seq, self.last_seq) {
            self.last_seq = seq;
        }
        if !self.started || ts_newer(ts, self.last_ts) {
            self.last_ts = ts;
        }
        self.started = true;
    }

    /// Where a codec context that keeps its own [`Continuity`] (AV1, VP9) starts: where the
    /// previous context left the receiver's stream.
    pub fn continuity(&self) -> Continuity {
        Continuity {
            started: self.started,
            last_seq: self.last_seq,
            last_ts: self.last_ts,
            last_frame_at: self.last_frame_at,
            open_frame: false,
            segment_start: self.segment_start,
        }
    }

    /// Follows such a context after it forwarded a packet as `(seq, ts)`.
    pub fn follow(&mut self, c: &Continuity, seq: u16, ts: u32) {
        self.on_sent(seq, ts);
        self.last_frame_at = c.last_frame_at;
        self.segment_start = c.segment_start;
    }

    /// The timestamp a new segment starts at.
    pub fn switch_ts(&self, now: Instant) -> u32 {
        let frames = self.last_frame_at.map_or(1, |t| {
            (now.saturating_duration_since(t).as_millis() / 33).max(1)
        });
        self.last_ts
            .wrapping_add(3000u32.wrapping_mul(frames.min(u128::from(u32::MAX / 3000)) as u32))
    }
}

/// How a forwarded packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewritten {
    pub seq: u16,
    pub timestamp: u32,
    /// The codec-specific rewrite (VP8: PictureID and TL0PICIDX).
    pub payload: PayloadRewrite,
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
    /// The sender stream's codec state, when its codec keeps one (AV1: the Dependency
    /// Descriptor's structures; VP9: the scalability structure).
    pub stream: Option<&'a StreamState>,
}

/// One codec's forwarding context: the state of a forwarded segment (one encoding, from the
/// keyframe that started it) and the per-packet decision. The projection keeps at most one
/// segment, of the context the packets' descriptor selects, in that context's slot;
/// codec-independent parts (which encoding, when to switch: [`SwitchFilter`]; where the receiver's
/// stream stands: [`OutState`]) are passed in.
///
/// Adding a codec adds one implementation (a file next to `generic.rs` and `vp8.rs`), a variant of
/// [`FrameDesc`](crate::sfu::codec::FrameDesc) its ingress parser fills, and in `mod.rs` its slot
/// and the match arms that pick it. A VP9 context keys frames by PictureID like VP8 and filters by spatial
/// and temporal id; an AV1 one reads frame numbers and decode-target membership from the
/// Dependency Descriptor and rewrites the frame number (a header extension: its
/// [`PayloadRewrite::apply`] gets the whole egress packet).
pub trait CodecStream: Segment + Sized {
    /// What the context reads from each packet (parsed once at ingress, shared by all receivers).
    type Desc;

    /// Decides about one packet and computes its rewrite (`None`: drop). `slot` holds the
    /// receiver's current segment of this context, if any; a switch (another encoding, a resume)
    /// puts a new segment there.
    #[allow(clippy::too_many_arguments)]
    fn project(
        slot: &mut Option<Self>,
        filter: &mut SwitchFilter,
        out: &mut OutState,
        now: Instant,
        p: &VideoPacket<'_>,
        desc: &Self::Desc,
        target: Target,
    ) -> Option<Rewritten>;
}

/// What the projection asks of a current segment whatever its codec.
pub trait Segment {
    /// The encoding this segment forwards.
    fn encoding(&self) -> u8;

    /// A packet of the segment's encoding the receiver will not get although it belongs to its
    /// stream (dropped for everyone, or a payload type it did not negotiate).
    fn skip(&mut self, seq: u16);

    /// The egress RTP timestamp of ingress timestamp `ts` (sender reports).
    fn egress_timestamp(&self, ts: u32) -> u32;
}
