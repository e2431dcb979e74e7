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
use crate::sfu::frames::Continuity;

/// What a layered codec context provides to [`LayeredStream`].
pub trait Layered: Sized {
    /// The per-packet descriptor (parsed once at ingress).
    type Info;
    /// The sender stream's state the descriptor is resolved against.
    type Source;

    /// A context continuing the receiver's stream from `c`.
    fn continuing(c: Continuity) -> Self;
    fn source(stream: &StreamState) -> Option<&Self::Source>;
    fn spatial_layers(source: &Self::Source) -> u8;
    /// Sets the `(encoding, spatial, temporal)` layers to forward (`None`: nothing).
    fn set_layers(&mut self, layers: Option<(u8, u8, u8)>);
    /// Decides about one packet and computes its rewrite.
    fn forward(
        &mut self,
        filter: &mut SwitchFilter,
        now: Instant,
        p: &VideoPacket<'_>,
        info: &Self::Info,
        source: &Self::Source,
    ) -> Option<Rewritten>;
    fn continuity(&self) -> &Continuity;
    fn needs_keyframe(&self, filter: &SwitchFilter) -> Option<u8>;
    /// `(encoding, timestamp delta)` of the current segment.
    fn segment(&self) -> Option<(u8, u32)>;
    fn skip(&mut self, encoding: u8, seq: u16);
}

/// The `(encoding, spatial, temporal)` layers a layered context forwards for `target`. For an
/// SVC stream (several spatial layers, on whichever signalled encoding carries it) the allocation
/// sees each spatial layer as an encoding (`MediaSource::measure` measures them so):
/// `Target::Layer { encoding: s, temporal: t }` is spatial layer `s`, temporal layer `t` of the
/// packet's encoding.
pub fn svc_layers(target: Target, packet_encoding: u8, spatial_layers: u8) -> Option<(u8, u8, u8)> {
    let Target::Layer {
        encoding,
        spatial,
        temporal,
    } = target
    else {
        return None;
    };
    Some(if spatial_layers > 1 {
        (packet_encoding, encoding.max(spatial), temporal)
    } else {
        (encoding, spatial, temporal)
    })
}

/// A layered context in a projection's slot.
#[derive(Debug, Clone)]
pub struct LayeredStream<L>(L);

impl<L: Layered> LayeredStream<L> {
    /// The encoding a keyframe is needed for (a switch the structure allows only at a keyframe
    /// included).
    pub fn needs_keyframe(&self, filter: &SwitchFilter) -> Option<u8> {
        self.0.needs_keyframe(filter)
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
        s.0.set_layers(svc_layers(target, p.encoding, L::spatial_layers(source)));
        let r = s.0.forward(filter, now, p, desc, source)?;
        out.follow(s.0.continuity(), r.seq, r.timestamp);
        Some(r)
    }
}
