//! The forwarding decision point per (receiver, source). A [`Projection`] knows which layer of the
//! source the receiver should get ([`Target`], set by the allocation) and decides, packet by packet,
//! what to forward and how to rewrite it so the receiver sees **one continuous stream** under the
//! source's primary SSRC: no sequence gaps except real loss, monotonic timestamps, and (VP8)
//! consecutive PictureIDs and TL0PICIDX across every switch.
//!
//! Audio is one stream; packets the bridge drops for everyone (silence, force-mute, padding) are
//! hidden by a [`SeqRewriter`]. Video goes through a codec context, chosen per packet by the
//! descriptor the ingress parser found ([`FrameDesc`]), behind one interface ([`CodecStream`]):
//!
//! | file | context |
//! |---|---|
//! | `vp8.rs` | VP8 with PictureID and TID: decisions per *frame*; a ring of recent frames gives each accepted frame its sequence-number and PictureID offsets, collapsing dropped frames |
//! | `generic.rs` | H264, VP9 (for now), VP8 without PictureID, others: linear sequence/timestamp offsets per segment |
//! | `av1.rs` | AV1 with the Dependency Descriptor: decode targets (spatial and temporal), chains, switches without keyframes where the structure allows; rewrites sequence numbers, frame numbers, template ids, active decode targets |
//! | `vp9.rs` | VP9 with PictureID and layer indices: SVC (full and K-SVC, flexible and non-flexible) and simulcast, per layer frame; rewrites sequence numbers, PictureID, TL0PICIDX, the marker |
//!
//! Shared by all contexts: [`SwitchFilter`] (`switch.rs`: which encoding, switching only on
//! keyframes, and temporal layer dropping), [`OutState`] (`stream.rs`: where the receiver's stream
//! stands), sequence arithmetic (`seq.rs`). A new codec (VP9, AV1) is one more file implementing
//! [`CodecStream`]; see its docs for what else it touches.
//!
//! On a switch (another encoding, or resuming after a suspension) the new segment continues the
//! output: sequence = last + 1 (+ 1 more if the previous frame was cut short), timestamp = last +
//! 3000 × max(1, elapsed / 33 ms), PictureID and TL0PICIDX + 1.

use std::time::Instant;

use super::codec::{FrameDesc, VideoInfo};
use super::keyframe::RateLimit;
use super::model::MediaKind;
use super::ssrc_slots::SlotLink;

mod av1;
mod generic;
mod layered;
mod seq;
/// `pub(crate)`: the SSRC slots (`sfu/ssrc_slots.rs`) continue a [`Rewritten`] without depending
/// on this module, which depends on them.
pub(crate) mod stream;
mod switch;
mod target;
#[cfg(test)]
mod tests;
mod vp8;
mod vp9;

use generic::GenericStream;
use layered::LayeredStream;
use vp8::Vp8Stream;

type Av1Stream = LayeredStream<DdProjection>;
type Vp9Stream = LayeredStream<Vp9Projection>;

pub use av1::{DdConfig, DdPacket, DdProjection, DdRewrite, DdTarget};
pub use layered::{LayerTarget, Layered, LayeredConfig, LayeredPacket};
pub use seq::{SeqRewriter, seq_newer};
pub use stream::{CodecStream, OutState, Rewritten, Segment, VideoPacket};
pub use switch::SwitchFilter;
pub use target::{ALL_TEMPORAL, Target};
pub use vp9::{Vp9Config, Vp9Packet, Vp9Projection, Vp9Rewrite, Vp9Target};

/// Which codec context a packet selects (from its [`FrameDesc`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Generic,
    Vp8,
    Av1,
    Vp9,
}

impl Context {
    fn of(info: &VideoInfo) -> Context {
        match info.frame {
            FrameDesc::None => Context::Generic,
            FrameDesc::Vp8(_) => Context::Vp8,
            FrameDesc::Av1(_) => Context::Av1,
            FrameDesc::Vp9(_) => Context::Vp9,
        }
    }
}

/// The current segment: one slot per codec context, at most one of them filled (the context of
/// the latest packets).
#[derive(Debug, Clone, Default)]
struct Segments {
    generic: Option<GenericStream>,
    vp8: Option<Box<Vp8Stream>>,
    av1: Option<Box<Av1Stream>>,
    vp9: Option<Box<Vp9Stream>>,
}

impl Segments {
    fn current(&self) -> Option<&dyn Segment> {
        if let Some(g) = &self.generic {
            return Some(g);
        }
        if let Some(s) = &self.av1 {
            return Some(s);
        }
        if let Some(s) = &self.vp9 {
            return Some(s);
        }
        self.vp8.as_ref().map(|s| s as &dyn Segment)
    }

    fn current_mut(&mut self) -> Option<&mut dyn Segment> {
        if let Some(g) = &mut self.generic {
            return Some(g);
        }
        if let Some(s) = &mut self.av1 {
            return Some(s);
        }
        if let Some(s) = &mut self.vp9 {
            return Some(s);
        }
        self.vp8.as_mut().map(|s| s as &mut dyn Segment)
    }
}

/// Video forwarding state of one projection.
#[derive(Debug, Clone)]
struct VideoState {
    filter: SwitchFilter,
    out: OutState,
    context: Context,
    segments: Segments,
}

#[derive(Debug, Clone)]
enum State {
    Audio(SeqRewriter),
    Video(Box<VideoState>),
}

/// Per (receiver, source) forwarding state.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Generation of the source slot this projection belongs to (a reused slot resets it).
    pub source_gen: u32,
    pub target: Target,
    /// SSRC the receiver knows this source by (the primary SSRC, as signalled by the focus; with
    /// SSRC rewriting its slot's).
    pub egress_ssrc: u32,
    /// RTX SSRC the receiver knows (the primary's FID partner; with SSRC rewriting the slot's).
    pub egress_rtx_ssrc: Option<u32>,
    pub rtx_seq: u16,
    /// Per-receiver keyframe request limiter for this source.
    pub keyframe_limit: RateLimit,
    pub packets_sent: u64,
    pub last_sent_at: Option<Instant>,
    /// SSRC rewriting: the receiver's slot this source is forwarded on (its SSRCs are then the
    /// slot's), and the deltas that continue the slot ([`crate::sfu::ssrc_slots`]).
    pub slot: Option<SlotLink>,
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
                context: Context::Generic,
                segments: Segments::default(),
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
            slot: None,
            state,
        }
    }

    /// The projection on slot `index` of an SSRC-rewriting receiver.
    pub fn on_slot(mut self, index: usize) -> Self {
        self.slot = Some(SlotLink::new(index));
        self
    }

    /// The egress sequence number the projection itself computed for `seq` as sent (what the
    /// slot's deltas were added to).
    pub fn own_seq(&self, seq: u16) -> u16 {
        match self.slot.and_then(|l| l.deltas) {
            Some(d) => seq.wrapping_sub(d.seq),
            None => seq,
        }
    }

    pub fn kind(&self) -> MediaKind {
        match self.state {
            State::Audio(_) => MediaKind::Audio,
            State::Video(_) => MediaKind::Video,
        }
    }

    /// The encoding whose packets the receiver currently gets (audio: 0 once something was sent).
    pub fn current_encoding(&self) -> Option<u8> {
        match &self.state {
            State::Audio(s) => s.highest_out().map(|_| 0),
            State::Video(v) => v.filter.current(),
        }
    }

    /// Whether moving the target to encoding `e` needs a keyframe from the sender at once. The
    /// AV1 and VP9 contexts know the stream's structure (an SVC sender's spatial layers are the
    /// allocation's encodings, most switches need no keyframe): they ask for one themselves,
    /// with the next packet, when a switch needs it ([`Self::needs_keyframe`]).
    pub fn switch_needs_keyframe(&self, e: u8) -> bool {
        match &self.state {
            State::Video(v) if v.segments.av1.is_some() || v.segments.vp9.is_some() => false,
            _ => self.current_encoding() != Some(e),
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
            State::Video(v) if self.target != Target::Suspended => {
                match (&v.segments.av1, &v.segments.vp9) {
                    (Some(s), _) => s.needs_keyframe(&v.filter),
                    (_, Some(s)) => s.needs_keyframe(&v.filter),
                    _ => v.filter.needs_keyframe(),
                }
            }
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
            State::Video(v) => {
                if let Some(s) = v.segments.current_mut()
                    && s.encoding() == encoding
                {
                    s.skip(seq);
                }
            }
        }
    }

    /// Egress RTP timestamp for a sender report of `encoding` (`None`: that encoding is not what
    /// the receiver gets, drop the SR).
    pub fn sr_timestamp(&self, encoding: u8, ts: u32) -> Option<u32> {
        match &self.state {
            State::Audio(_) => Some(ts),
            State::Video(v) => v
                .segments
                .current()
                .filter(|s| s.encoding() == encoding)
                .map(|s| s.egress_timestamp(ts)),
        }
    }

    /// Video: decides about one packet and computes its rewrite (`None` = drop).
    #[inline]
    pub fn video(&mut self, now: Instant, p: &VideoPacket<'_>) -> Option<Rewritten> {
        let target = self.target;
        let State::Video(v) = &mut self.state else {
            return None;
        };
        let context = Context::of(p.info);
        if context != v.context {
            // Another context: a new segment starting at a keyframe.
            v.context = context;
            v.segments = Segments::default();
            v.filter.reset();
        }
        let VideoState {
            filter,
            out,
            segments,
            ..
        } = &mut **v;
        let r = match &p.info.frame {
            FrameDesc::Vp8(h) => {
                CodecStream::project(&mut segments.vp8, filter, out, now, p, h, target)
            }
            FrameDesc::None => {
                CodecStream::project(&mut segments.generic, filter, out, now, p, &(), target)
            }
            FrameDesc::Av1(d) => {
                CodecStream::project(&mut segments.av1, filter, out, now, p, d, target)
            }
            FrameDesc::Vp9(d) => {
                CodecStream::project(&mut segments.vp9, filter, out, now, p, d, target)
            }
        }?;
        self.packets_sent += 1;
        self.last_sent_at = Some(now);
        Some(r)
    }
}
