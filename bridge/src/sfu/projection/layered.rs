//! The adapter between a [`Projection`](super::Projection) and a codec context that knows the
//! stream's layer structure and keeps its own segment, frame ring and continuity (AV1 with the
//! Dependency Descriptor: `av1.rs`; VP9: `vp9.rs`). Both forward toward `(encoding, spatial,
//! temporal)` layers ([`svc_layers`] maps the allocation's [`Target`] to them) and read the
//! sender stream's codec state ([`StreamState`]); what differs is behind [`Layered`].

use std::time::Instant;

use super::stream::{CodecStream, OutState, Rewritten, Segment, VideoPacket};
use super::switch::SwitchFilter;
use super::target::Target;
use crate::sfu::codec::StreamState;
use crate::sfu::frames::{Continuity, FrameRing};

/// Which layers of a source a receiver should get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerTarget {
    /// The simulcast encoding (0 for SVC's single encoding).
    pub encoding: u8,
    pub spatial: u8,
    pub temporal: u8,
}

/// Projection policy of a layered context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayeredConfig {
    /// Also forward the frames that keep the lower spatial layers decodable (AV1: the chains
    /// protecting them; VP9: their temporal-base frames), so a K-SVC down-switch needs no
    /// keyframe, for ~17 % more bytes at 720p (measured on Chromium 156's `L3T3_KEY`).
    pub keep_lower_chains: bool,
}

impl Default for LayeredConfig {
    fn default() -> Self {
        LayeredConfig {
            keep_lower_chains: true,
        }
    }
}

/// One packet as a layered context sees it: the RTP fields it rewrites, the descriptor parsed at
/// ingress (`info`) and the sender stream's state it is resolved against (`source`).
#[derive(Debug, Clone, Copy)]
pub struct LayeredPacket<'a, I, S> {
    pub encoding: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub info: &'a I,
    pub source: &'a S,
}

/// The switch filter's verdict on the first packet of a new frame, before the codec's own rules.
pub(super) struct Admission {
    pub target: LayerTarget,
    /// The filter accepts the frame's encoding.
    pub accepted: bool,
    /// The frame belongs to the encoding being forwarded.
    pub in_segment: bool,
    /// A keyframe that starts forwarding its encoding (a switch, or the first one).
    pub starts_encoding: bool,
}

/// Runs the switch filter for the first packet of a new frame of `encoding` (`segment`: the
/// encoding being forwarded). `None` when nothing is targeted: the filter is told the source is
/// suspended and the context must drop its segment.
pub(super) fn admit(
    filter: &mut SwitchFilter,
    now: Instant,
    target: Option<LayerTarget>,
    encoding: u8,
    keyframe: bool,
    segment: Option<u8>,
) -> Option<Admission> {
    let Some(target) = target else {
        filter.accept(now, encoding, 0, false, Target::Suspended);
        return None;
    };
    let before = filter.current();
    let accepted = filter.accept(
        now,
        encoding,
        0,
        keyframe,
        Target::encoding(target.encoding),
    );
    let in_segment = segment == Some(encoding);
    Some(Admission {
        target,
        accepted,
        in_segment,
        starts_encoding: keyframe && (!in_segment || before != Some(encoding)),
    })
}

/// What the frame ring knows of a packet's frame.
pub(super) enum Known {
    /// A frame of the segment already forwarded: this packet too, with that delta.
    Forward(u16),
    /// A frame already dropped, or too old for the ring.
    Drop,
    /// A frame to decide about.
    New,
}

/// Looks up the frame `index` of a packet `(seq, start of frame, end of frame)` (`in_segment`:
/// of the encoding being forwarded).
pub(super) fn known_frame(
    ring: &mut FrameRing,
    in_segment: bool,
    index: u64,
    (seq, start, end): (u16, bool, bool),
) -> Known {
    if !in_segment {
        return Known::New;
    }
    if let Some(f) = ring.on_packet(index, seq, start, end) {
        return if f.accepted {
            Known::Forward(f.seq_delta)
        } else {
            Known::Drop
        };
    }
    if ring.in_window(index) {
        Known::New
    } else {
        Known::Drop
    }
}

/// Records the decision on a new frame (`tag`: the codec's bookkeeping); for an accepted frame,
/// returns the sequence-number delta that places it in the receiver's stream right after what it
/// got before (no gaps for dropped frames).
#[allow(clippy::too_many_arguments)]
pub(super) fn record_frame(
    ring: &mut FrameRing,
    out: &Continuity,
    index: u64,
    seq: u16,
    start: bool,
    end: bool,
    accepted: bool,
    tag: u32,
) -> Option<u16> {
    let f = ring.insert(index, seq, start, end);
    f.accepted = accepted;
    f.tag = tag;
    if !accepted {
        return None;
    }
    let delta = ring
        .place(index)
        .unwrap_or_else(|| seq.wrapping_sub(out.next_segment_seq(seq)));
    if let Some(f) = ring.get_mut(index) {
        f.seq_delta = delta;
    }
    Some(delta)
}

/// Starts a segment at the keyframe `index` whose first packet becomes egress sequence number
/// `first`: the ring restarts there; returns the packet's sequence-number delta.
pub(super) fn start_ring(
    ring: &mut FrameRing,
    out: &mut Continuity,
    index: u64,
    (seq, start, end): (u16, bool, bool),
    tag: u32,
    first: u16,
) -> u16 {
    out.segment_start = Some(first);
    ring.reset(index);
    let f = ring.insert(index, seq, start, end);
    f.accepted = true;
    f.tag = tag;
    let delta = seq.wrapping_sub(first);
    f.seq_delta = delta;
    delta
}

/// A layered codec context: what [`LayeredStream`] drives, and what tests, benchmarks and fuzz
/// targets drive directly (with the context's own switch filter: [`Layered::forward`]).
pub trait Layered: Sized {
    /// The per-packet descriptor (parsed once at ingress).
    type Info;
    /// The sender stream's state the descriptor is resolved against.
    type Source;
    /// The codec's rewrite of a forwarded packet.
    type Rewrite: Into<Rewritten>;

    /// A context continuing the receiver's stream from `c`.
    fn continuing(c: Continuity) -> Self;
    fn source(stream: &StreamState) -> Option<&Self::Source>;
    fn spatial_layers(source: &Self::Source) -> u8;
    /// Sets what the receiver should get (`None`: nothing).
    fn set_target(&mut self, target: Option<LayerTarget>);
    /// Decides about one packet and computes its rewrite (`None`: drop), with the switch filter
    /// kept outside (a [`Projection`](super::Projection)'s).
    fn forward_with(
        &mut self,
        filter: &mut SwitchFilter,
        now: Instant,
        p: &LayeredPacket<'_, Self::Info, Self::Source>,
    ) -> Option<Self::Rewrite>;
    /// The encoding a keyframe is needed for: an encoding switch, a resumption, or a layer switch
    /// the structure allows only at a keyframe.
    fn needs_keyframe_with(&self, filter: &SwitchFilter) -> Option<u8>;
    fn continuity(&self) -> &Continuity;
    /// `(encoding, timestamp delta)` of the current segment.
    fn segment(&self) -> Option<(u8, u32)>;
    /// A packet of `encoding` dropped for everyone (padding): hides it from the receiver.
    fn skip(&mut self, encoding: u8, seq: u16);
    /// The context's own switch filter (used when it is driven on its own).
    fn own_filter(&mut self) -> &mut SwitchFilter;

    /// [`Self::forward_with`] with the context's own switch filter.
    fn forward(
        &mut self,
        now: Instant,
        p: &LayeredPacket<'_, Self::Info, Self::Source>,
    ) -> Option<Self::Rewrite> {
        let mut filter = std::mem::take(self.own_filter());
        let r = self.forward_with(&mut filter, now, p);
        *self.own_filter() = filter;
        r
    }

    /// [`Self::needs_keyframe_with`] with the context's own switch filter.
    fn needs_keyframe(&mut self) -> Option<u8> {
        let filter = std::mem::take(self.own_filter());
        let r = self.needs_keyframe_with(&filter);
        *self.own_filter() = filter;
        r
    }
}

/// The `(encoding, spatial, temporal)` layers a layered context forwards for `target`. For an
/// SVC stream (several spatial layers, on whichever signalled encoding carries it) the allocation
/// sees each spatial layer as an encoding (`MediaSource::measure` measures them so):
/// `Target::Layer { encoding: s, temporal: t }` is spatial layer `s`, temporal layer `t` of the
/// packet's encoding.
pub fn svc_layers(target: Target, packet_encoding: u8, spatial_layers: u8) -> Option<LayerTarget> {
    let Target::Layer {
        encoding,
        spatial,
        temporal,
    } = target
    else {
        return None;
    };
    Some(if spatial_layers > 1 {
        LayerTarget {
            encoding: packet_encoding,
            spatial: encoding.max(spatial),
            temporal,
        }
    } else {
        LayerTarget {
            encoding,
            spatial,
            temporal,
        }
    })
}

/// A layered context in a projection's slot.
#[derive(Debug, Clone)]
pub struct LayeredStream<L>(L);

impl<L: Layered> LayeredStream<L> {
    /// The encoding a keyframe is needed for (a switch the structure allows only at a keyframe
    /// included).
    pub fn needs_keyframe(&self, filter: &SwitchFilter) -> Option<u8> {
        self.0.needs_keyframe_with(filter)
    }
}

impl<L: Layered> Segment for Box<LayeredStream<L>> {
    fn encoding(&self) -> u8 {
        self.0.segment().map_or(0, |s| s.0)
    }

    fn skip(&mut self, seq: u16) {
        let e = self.encoding();
        self.0.skip(e, seq);
    }

    fn egress_timestamp(&self, ts: u32) -> u32 {
        self.0.segment().map_or(ts, |s| ts.wrapping_add(s.1))
    }
}

/// Boxed: the frame ring is large and a context is built once per codec change.
impl<L: Layered> CodecStream for Box<LayeredStream<L>> {
    type Desc = L::Info;

    fn project(
        slot: &mut Option<Self>,
        filter: &mut SwitchFilter,
        out: &mut OutState,
        now: Instant,
        p: &VideoPacket<'_>,
        desc: &L::Info,
        target: Target,
    ) -> Option<Rewritten> {
        let source = L::source(p.stream?)?;
        // A new context continues the receiver's stream where the previous one left it.
        let s =
            slot.get_or_insert_with(|| Box::new(LayeredStream(L::continuing(out.continuity()))));
        s.0.set_target(svc_layers(target, p.encoding, L::spatial_layers(source)));
        let packet = LayeredPacket {
            encoding: p.encoding,
            seq: p.seq,
            timestamp: p.timestamp,
            marker: p.marker,
            info: desc,
            source,
        };
        let r: Rewritten = s.0.forward_with(filter, now, &packet)?.into();
        out.follow(s.0.continuity(), r.seq, r.timestamp);
        Some(r)
    }
}
