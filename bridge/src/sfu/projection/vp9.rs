//! The per (receiver, source) forwarding decision for VP9 from its payload descriptor: SVC (one
//! encoding with spatial and temporal layers, full or K-SVC) and simulcast (several encodings),
//! like the VP8 projection, per *layer frame* (PictureID, SID).
//!
//! - Encodings change only on keyframes ([`crate::sfu::projection::SwitchFilter`]).
//! - A layer frame is forwarded when its layers are within the current ones — its SID is the
//!   current spatial layer, or below it and referred to by the layer above (Z clear), or below it,
//!   of temporal layer 0, with [`Vp9Config::keep_lower_chains`] — and it is *decodable*: the
//!   frames it refers to were not dropped for this receiver (flexible mode: P_DIFFs; non-flexible:
//!   the previous frame of its spatial layer with an equal or lower TID, or lower with U; D: the
//!   layer below in the same picture).
//! - The spatial layer moves toward the target at a decodable frame of a layer in between: down at
//!   once in full SVC (the lower layers are forwarded as references), in K-SVC (`L3T3_KEY`: the
//!   upper layers refer to the lower ones only in the keyframe) thanks to `keep_lower_chains`;
//!   up only at a keyframe (or a layer sync frame): until then [`Vp9Projection::needs_keyframe`].
//!   The temporal layer follows the target directly: frames above it are dropped at once, and
//!   going up the first decodable frames of the higher layers are the switch.
//! - Rewrite: sequence numbers without gaps for dropped frames ([`FrameRing`]); PictureID and
//!   TL0PICIDX shifted by one offset per segment (continuous across encoding switches; the gaps
//!   of dropped pictures stay, since P_DIFFs refer to pictures by number), as JVB's
//!   `Vp9AdaptiveSourceProjectionContext`; the RTP marker on the last packet of the current
//!   spatial layer's frames (Chromium marks only the end of the whole picture, the top layer:
//!   libwebrtc receivers take the marker as the end of the temporal unit).

use std::time::Instant;

use super::layered::{
    Known, LayerTarget, Layered, LayeredConfig, LayeredPacket, admit, known_frame, record_frame,
    start_ring,
};
use super::stream::Rewritten;
use super::switch::SwitchFilter;
use crate::sfu::codec::{PayloadRewrite, StreamState};
use crate::sfu::frames::{Continuity, FrameRing};
use crate::sfu::vp9::descriptor::{self, Vp9Error, Vp9Header};
use crate::sfu::vp9::source::{Vp9Info, Vp9Source};

/// Pictures searched back for a non-flexible frame's reference.
const NESTING_SEARCH: u64 = 32;

/// Which layers of a source a receiver should get.
pub type Vp9Target = LayerTarget;

/// Projection policy (`keep_lower_chains`: the temporal-base frames of the spatial layers below
/// the current one).
pub type Vp9Config = LayeredConfig;

/// One packet as the projection sees it.
pub type Vp9Packet<'a> = LayeredPacket<'a, Vp9Info, Vp9Source>;

/// How a forwarded packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Rewrite {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub picture_id: u16,
    pub tl0picidx: u8,
    pub keyframe: bool,
}

impl Vp9Rewrite {
    /// Writes PictureID and TL0PICIDX into the forwarded copy of the payload.
    pub fn apply(&self, payload: &mut [u8], h: &Vp9Header) -> Result<(), Vp9Error> {
        descriptor::rewrite(payload, h, self.picture_id, self.tl0picidx)
    }
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    encoding: u8,
    ts_delta: u32,
    /// Egress PictureID = ingress + `pid_delta` (in the sender's PictureID width).
    pid_delta: u16,
    tl0_delta: u8,
}

/// Per (receiver, source) state of a VP9 stream.
#[derive(Debug, Clone)]
pub struct Vp9Projection {
    config: Vp9Config,
    target: Option<Vp9Target>,
    filter: SwitchFilter,
    segment: Option<Segment>,
    spatial: u8,
    temporal: u8,
    ring: FrameRing,
    out: Continuity,
    /// Last egress PictureID and TL0PICIDX.
    last_pic: Option<u16>,
    last_tl0: Option<u8>,
    spatial_needs_keyframe: bool,
}

impl Vp9Projection {
    pub fn new(config: Vp9Config) -> Self {
        Vp9Projection {
            config,
            target: None,
            filter: SwitchFilter::default(),
            segment: None,
            spatial: 0,
            temporal: 0,
            ring: FrameRing::default(),
            out: Continuity::default(),
            last_pic: None,
            last_tl0: None,
            spatial_needs_keyframe: false,
        }
    }

    /// `(encoding, spatial, temporal)` being forwarded.
    pub fn current(&self) -> Option<(u8, u8, u8)> {
        Some((self.segment?.encoding, self.spatial, self.temporal))
    }

    /// `Some(false)` only for a frame seen and dropped (or before the segment): unknown frames
    /// may still arrive and be forwarded.
    fn dropped(&self, index: Option<u64>) -> bool {
        match index {
            Some(k) => !self.ring.in_window(k) || self.ring.accepted(k) == Some(false),
            None => true,
        }
    }

    fn decodable(&self, info: &Vp9Info) -> bool {
        let h = &info.header;
        if h.inter_layer && h.sid > 0 && self.dropped(info.frame_of(0, h.sid - 1)) {
            return false;
        }
        if !h.inter_picture {
            return true;
        }
        if h.flexible {
            return h
                .refs()
                .iter()
                .all(|&d| !self.dropped(info.frame_of(u64::from(d), h.sid)));
        }
        // Non-flexible: temporal nesting, the previous frame of the layer with TID ≤ ours (< ours
        // at a switching-up point).
        let limit = if h.switching_up && h.tid > 0 {
            h.tid - 1
        } else {
            h.tid
        };
        for k in 1..=NESTING_SEARCH {
            let Some(i) = info.frame_of(k, h.sid) else {
                return true;
            };
            if !self.ring.in_window(i) {
                return false;
            }
            if let Some(f) = self.ring.get(i)
                && f.tag <= u32::from(limit)
            {
                return f.accepted;
            }
        }
        true
    }

    /// Whether the latest temporal-base frame of layer `sid` before this picture was forwarded.
    fn base_intact(&self, info: &Vp9Info, sid: u8) -> bool {
        for k in 1..=NESTING_SEARCH {
            let Some(i) = info.frame_of(k, sid) else {
                return false;
            };
            if !self.ring.in_window(i) {
                return false;
            }
            if let Some(f) = self.ring.get(i)
                && f.tag == 0
            {
                return f.accepted;
            }
        }
        false
    }

    fn new_frame(
        &mut self,
        filter: &mut SwitchFilter,
        now: Instant,
        p: &Vp9Packet<'_>,
    ) -> Option<Vp9Rewrite> {
        let info = p.info;
        let h = &info.header;
        let idx = info.frame_index;
        let keyframe = h.starts_keyframe();
        let segment = self.segment.map(|s| s.encoding);
        let Some(a) = admit(filter, now, self.target, p.encoding, keyframe, segment) else {
            self.segment = None;
            self.spatial_needs_keyframe = false;
            return None;
        };
        let (target, in_segment) = (a.target, a.in_segment);
        if a.accepted && a.starts_encoding {
            return self.start_segment(now, p, target);
        }
        if !a.accepted || !in_segment {
            if in_segment {
                self.ring.insert(idx, p.seq, h.begin, h.end).tag = u32::from(h.tid);
            }
            return None;
        }
        let layers = p.source.spatial_layers();
        let on_target = p.encoding == target.encoding;
        let want_s = if on_target {
            target.spatial.min(layers - 1)
        } else {
            self.spatial
        };
        self.temporal = if on_target { target.temporal } else { u8::MAX };
        let decodable = self.decodable(info);
        let s = h.sid;
        let toward = (self.spatial < s && s <= want_s) || (want_s <= s && s < self.spatial);
        if toward {
            if decodable {
                self.spatial = s;
            } else if !self.base_intact(info, s) {
                // Its temporal base was not forwarded: no later frame of the layer will be
                // decodable before a keyframe (a spatial up-switch; K-SVC down without
                // `keep_lower_chains`). Otherwise a later frame of the layer will do.
                self.spatial_needs_keyframe = true;
            }
        }
        if self.spatial == want_s {
            self.spatial_needs_keyframe = false;
        }
        let pending_down = self.segment.is_some_and(|g| g.encoding > target.encoding);
        let wanted = if pending_down {
            s == self.spatial && h.tid == 0
        } else {
            s <= self.spatial
                && h.tid <= self.temporal
                && (s == self.spatial
                    || !h.not_ref_for_upper
                    || (self.config.keep_lower_chains && h.tid == 0))
        };
        let accepted = wanted && decodable;
        let tag = u32::from(h.tid);
        let (out, ring) = (&self.out, &mut self.ring);
        let delta = record_frame(ring, out, idx, p.seq, h.begin, h.end, accepted, tag)?;
        self.rewrite(now, p, delta)
    }

    fn start_segment(
        &mut self,
        now: Instant,
        p: &Vp9Packet<'_>,
        target: Vp9Target,
    ) -> Option<Vp9Rewrite> {
        let h = &p.info.header;
        let pid = h.picture_id?;
        let mask = h.picture_id_mask();
        let layers = p.source.spatial_layers();
        let pid_delta = self
            .last_pic
            .map_or(0, |l| l.wrapping_add(1).wrapping_sub(pid) & mask);
        let tl0_delta = match (self.last_tl0, h.tl0picidx) {
            (Some(l), Some(t)) => l.wrapping_add(1).wrapping_sub(t),
            _ => 0,
        };
        let first = self.out.next_segment_seq(p.seq);
        let ts = self.out.next_segment_ts(now, p.timestamp);
        self.segment = Some(Segment {
            encoding: p.encoding,
            ts_delta: ts.wrapping_sub(p.timestamp),
            pid_delta,
            tl0_delta,
        });
        let on_target = p.encoding == target.encoding;
        self.spatial = if on_target {
            target.spatial.min(layers - 1)
        } else {
            layers - 1
        };
        self.temporal = if on_target { target.temporal } else { u8::MAX };
        self.spatial_needs_keyframe = false;
        let idx = p.info.frame_index;
        let packet = (p.seq, h.begin, h.end);
        let tag = u32::from(h.tid);
        let delta = start_ring(&mut self.ring, &mut self.out, idx, packet, tag, first);
        self.rewrite(now, p, delta)
    }

    fn rewrite(&mut self, now: Instant, p: &Vp9Packet<'_>, seq_delta: u16) -> Option<Vp9Rewrite> {
        let seg = self.segment?;
        let h = &p.info.header;
        let mask = h.picture_id_mask();
        let seq = p.seq.wrapping_sub(seq_delta);
        let timestamp = p.timestamp.wrapping_add(seg.ts_delta);
        let picture_id = h.picture_id?.wrapping_add(seg.pid_delta) & mask;
        let tl0picidx = h.tl0picidx.unwrap_or(0).wrapping_add(seg.tl0_delta);
        if self
            .last_pic
            .is_none_or(|l| picture_id.wrapping_sub(l) & mask <= mask / 2)
        {
            self.last_pic = Some(picture_id);
        }
        if h.tl0picidx.is_some()
            && self
                .last_tl0
                .is_none_or(|l| tl0picidx.wrapping_sub(l) < 0x80)
        {
            self.last_tl0 = Some(tl0picidx);
        }
        let marker = p.marker || (h.end && h.sid == self.spatial);
        self.out.on_sent(now, seq, timestamp, h.end);
        Some(Vp9Rewrite {
            seq,
            timestamp,
            marker,
            picture_id,
            tl0picidx,
            keyframe: h.starts_keyframe() || (h.intra_picture() && h.begin),
        })
    }
}

/// The VP9 context of a [`Projection`](super::Projection).
impl Layered for Vp9Projection {
    type Info = Vp9Info;
    type Source = Vp9Source;
    type Rewrite = Vp9Rewrite;

    fn continuing(c: Continuity) -> Self {
        let mut p = Vp9Projection::new(Vp9Config::default());
        p.out = c;
        p
    }

    fn forward_with(
        &mut self,
        filter: &mut SwitchFilter,
        now: Instant,
        p: &Vp9Packet<'_>,
    ) -> Option<Vp9Rewrite> {
        let h = &p.info.header;
        let idx = p.info.frame_index;
        let in_segment = self.segment.is_some_and(|s| s.encoding == p.encoding);
        match known_frame(&mut self.ring, in_segment, idx, (p.seq, h.begin, h.end)) {
            Known::Forward(delta) => self.rewrite(now, p, delta),
            Known::Drop => None,
            Known::New => self.new_frame(filter, now, p),
        }
    }

    fn needs_keyframe_with(&self, filter: &SwitchFilter) -> Option<u8> {
        let t = self.target?;
        if let Some(e) = filter.needs_keyframe() {
            return Some(e);
        }
        (self.segment.is_none() || self.spatial_needs_keyframe).then_some(t.encoding)
    }

    fn set_target(&mut self, target: Option<LayerTarget>) {
        self.target = target;
    }

    fn source(stream: &StreamState) -> Option<&Vp9Source> {
        stream.vp9()
    }

    fn spatial_layers(source: &Vp9Source) -> u8 {
        source.spatial_layers()
    }

    fn segment(&self) -> Option<(u8, u32)> {
        self.segment.map(|s| (s.encoding, s.ts_delta))
    }

    fn continuity(&self) -> &Continuity {
        &self.out
    }

    fn own_filter(&mut self) -> &mut SwitchFilter {
        &mut self.filter
    }

    fn skip(&mut self, encoding: u8, seq: u16) {
        if self.segment.is_some_and(|s| s.encoding == encoding) {
            self.ring.on_padding(seq);
        }
    }
}

impl From<Vp9Rewrite> for Rewritten {
    fn from(r: Vp9Rewrite) -> Self {
        Rewritten {
            seq: r.seq,
            timestamp: r.timestamp,
            payload: PayloadRewrite::Vp9 {
                picture_id: r.picture_id,
                tl0picidx: r.tl0picidx,
                marker: r.marker,
            },
            keyframe: r.keyframe,
        }
    }
}
