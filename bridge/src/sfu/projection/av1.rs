//! The per (receiver, source) forwarding decision for streams with a Dependency Descriptor (AV1
//! SVC or simulcast; also VP9 and H264 when they carry one): which frames the receiver gets for
//! the layer the allocation chose, and the rewrite that keeps its stream continuous.
//!
//! **Target.** A `(spatial, temporal)` layer of an encoding ([`DdTarget`]); each structure maps it
//! to the decode target (DT) with the highest layers not above it that the sender produces.
//!
//! **Per frame** (decided at its first packet seen, kept for all its packets):
//! - encodings change only on keyframes, with JVB's keyframe-group rules
//!   ([`crate::sfu::projection::SwitchFilter`]);
//! - a frame is forwarded when it is part of the current DT (its DTI is not "not present") and
//!   *decodable*: none of the frames it refers to (`fdiffs`) was dropped for this receiver;
//! - the current DT moves to the target at a frame that is decodable and either a switch point
//!   for the target (DTI `S`) or where the chain protecting the target is intact (A.7): every
//!   previous frame of that chain was forwarded. Temporal switches and spatial down-switches in
//!   full SVC happen that way without a keyframe; when the target's chain is broken (a spatial
//!   up-switch; a structure without chains and no switch template) the projection asks for a
//!   keyframe ([`DdProjection::needs_keyframe`]);
//! - **K-SVC** (`L3T3_KEY`, Chromium's default in Jitsi Meet): the upper spatial layers do not
//!   refer to the lower ones after the keyframe, so a receiver at 720p would not get the 180p
//!   frames and a down-switch would need a keyframe. With [`DdConfig::keep_lower_chains`] (the
//!   default) the receiver also gets the frames of the chains protecting lower spatial layers (in
//!   Chromium's structures: their temporal-base frames), which keeps those chains intact: a
//!   down-switch then happens at the next frame, no keyframe, for ~17 % more bytes at 720p
//!   (measured on Chromium 156's L3T3_KEY: see `tests/` of this module). `DdSource::forwarded_to`
//!   applies the same rule for the per-DT bitrate the allocation needs.
//!
//! **Rewrite** (what the receiver must see continuous, libwebrtc's `RtpVideoStreamReceiver2` drops
//! keyframes whose frame number is older than the structure it has): sequence numbers without
//! gaps for dropped frames ([`FrameRing`]); frame numbers shifted by one offset per segment (the
//! gaps of dropped frames stay: the frame diffs of forwarded frames refer to them by number);
//! template ids shifted so every structure the receiver sees has a template range that does not
//! overlap the previous one (A.8.3, as JVB's `Av1DDFrameProjection`); the active decode target
//! mask: the DTs the receiver can decode from what it gets, sent in every packet while that is not
//! every DT (A.4's "in every packet" technique: robust to loss, 1–2 bytes); the RTP marker on the
//! last packet of each frame of the DT's top spatial layer (libwebrtc takes the marker as "last
//! spatial layer of the temporal unit": without it a receiver below the top layer never decodes).

use std::time::Instant;

use super::layered::{
    Known, LayerTarget, Layered, LayeredConfig, LayeredPacket, admit, known_frame, record_frame,
    start_ring,
};
use super::stream::Rewritten;
use super::switch::SwitchFilter;
use crate::sfu::av1::descriptor::{DdError, Dti, MAX_TEMPLATES, Structure};
use crate::sfu::av1::source::{DdInfo, DdSource};
use crate::sfu::codec::{PayloadRewrite, StreamState};
use crate::sfu::frames::{Continuity, FrameRing, RING};

/// Which layers of a source a receiver should get.
pub type DdTarget = LayerTarget;

/// Projection policy (`keep_lower_chains`: the frames of the chains protecting lower spatial
/// layers, see the module docs).
pub type DdConfig = LayeredConfig;

/// One packet as the projection sees it (`source`: the encoding's descriptor state, the
/// structures).
pub type DdPacket<'a> = LayeredPacket<'a, DdInfo, DdSource>;

/// How a forwarded packet is rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdRewrite {
    pub seq: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub frame_number: u16,
    pub template_id: u8,
    /// For a packet carrying a structure: the `template_id_offset` to write.
    pub structure_offset: Option<u8>,
    pub active_decode_targets: Option<u32>,
    /// The packet starts a keyframe.
    pub keyframe: bool,
}

impl DdRewrite {
    /// Writes the forwarded packet's descriptor (its original was `info`, resolved against
    /// `structure`) into `out`; returns its length. Custom fields are kept as they were.
    pub fn write_descriptor(
        &self,
        info: &DdInfo,
        structure: &Structure,
        out: &mut [u8],
    ) -> Result<usize, DdError> {
        info.write_rewritten(
            structure,
            self.frame_number,
            self.template_id,
            self.structure_offset,
            self.active_decode_targets,
            out,
        )
    }
}

/// What a decode target was resolved from: `(generation, active decode targets, spatial,
/// temporal)`.
type ResolveKey = (u32, u32, u8, u8);

/// The forwarded segment: one encoding from a keyframe on, with constant offsets.
#[derive(Debug, Clone, Copy)]
struct Segment {
    encoding: u8,
    ts_delta: u32,
    /// Egress frame number = ingress + `fn_delta`.
    fn_delta: u16,
    /// Egress template id = ingress + `template_delta` (mod 64).
    template_delta: u8,
}

/// Per (receiver, source) state of a stream with a Dependency Descriptor.
#[derive(Debug, Clone)]
pub struct DdProjection {
    config: DdConfig,
    target: Option<DdTarget>,
    filter: SwitchFilter,
    segment: Option<Segment>,
    /// The decode target being forwarded (index in the source's current structure).
    current_dt: Option<u8>,
    /// `(spatial, temporal)` of `current_dt`, to find it again in a new structure.
    current_layers: (u8, u8),
    /// Structure generation `current_dt` refers to.
    dt_generation: u32,
    ring: FrameRing,
    out: Continuity,
    /// Last egress frame number.
    last_frame_number: Option<u16>,
    /// `(template_id_offset, template_count)` of the last structure the receiver got.
    receiver_structure: Option<(u8, u8)>,
    /// The source's structure generation the receiver has (it got that structure).
    receiver_generation: Option<u32>,
    /// The frame index with which the receiver got it: earlier frames it resolves against the
    /// structure before (as libwebrtc's receiver, and `DdSource`).
    receiver_structure_at: Option<u64>,
    /// The last [`Self::resolve`] of the target.
    want_cache: Option<(ResolveKey, Option<u8>)>,
    /// The sender's frame numbers jumped: nothing until a keyframe.
    resync: bool,
    /// A DT switch is pending that only a keyframe can complete.
    dt_needs_keyframe: bool,
}

impl DdProjection {
    pub fn new(config: DdConfig) -> Self {
        DdProjection {
            config,
            target: None,
            filter: SwitchFilter::default(),
            segment: None,
            current_dt: None,
            current_layers: (0, 0),
            dt_generation: 0,
            ring: FrameRing::default(),
            out: Continuity::default(),
            last_frame_number: None,
            receiver_structure: None,
            receiver_generation: None,
            receiver_structure_at: None,
            want_cache: None,
            resync: false,
            dt_needs_keyframe: false,
        }
    }

    /// `(encoding, decode target)` being forwarded.
    pub fn current(&self) -> Option<(u8, u8)> {
        Some((self.segment?.encoding, self.current_dt?))
    }

    /// The decode target of `structure` for the target layers: the active DT with the highest
    /// `(spatial, temporal)` not above them, else the lowest active DT.
    fn resolve(structure: &Structure, active: u32, spatial: u8, temporal: u8) -> Option<u8> {
        let n = usize::from(structure.decode_target_count);
        let mut best: Option<(u8, u8, u8)> = None;
        let mut lowest: Option<(u8, u8, u8)> = None;
        for dt in 0..n {
            if active & (1 << dt) == 0 {
                continue;
            }
            let (s, t) = structure.layer_of(dt);
            let cand = (s, t, dt as u8);
            if lowest.is_none_or(|l| (s, t) < (l.0, l.1)) {
                lowest = Some(cand);
            }
            if s <= spatial && t <= temporal && best.is_none_or(|b| (s, t) > (b.0, b.1)) {
                best = Some(cand);
            }
        }
        best.or(lowest).map(|b| b.2)
    }

    fn set_dt(&mut self, structure: &Structure, dt: Option<u8>) {
        self.current_dt = dt;
        if let Some(dt) = dt {
            self.current_layers = structure.layer_of(usize::from(dt));
        }
    }

    fn new_frame(
        &mut self,
        filter: &mut SwitchFilter,
        now: Instant,
        p: &DdPacket<'_>,
    ) -> Option<DdRewrite> {
        let info = p.info;
        let d = &info.descriptor;
        let idx = info.frame_index;
        let keyframe = info.starts_keyframe();
        let segment = self.segment.map(|s| s.encoding);
        let Some(a) = admit(filter, now, self.target, p.encoding, keyframe, segment) else {
            self.segment = None;
            self.current_dt = None;
            self.dt_needs_keyframe = false;
            return None;
        };
        let (target, in_segment) = (a.target, a.in_segment);
        if !a.accepted {
            if in_segment {
                self.ring
                    .insert(idx, p.seq, d.start_of_frame, d.end_of_frame);
            }
            return None;
        }
        let structure = p.source.structure(info.generation)?;
        let active = p.source.active_decode_targets();
        // Frame numbers that jump further than the frames tracked: the sender restarted, or a
        // long stretch was lost. Only a keyframe can follow (as a new segment, so that the
        // receiver's frame numbers keep growing).
        let jump = in_segment && self.ring.newest().is_some_and(|n| idx > n + RING as u64);
        let new_segment = a.starts_encoding || (keyframe && (self.current_dt.is_none() || jump));
        if new_segment {
            return self.start_segment(now, p, target, structure, active);
        }
        if jump {
            self.resync = true;
            return None;
        }
        if !in_segment || self.current_dt.is_none() || info.generation != p.source.generation() {
            // Not forwarding this encoding yet (waiting for its keyframe), or a late frame of a
            // replaced structure: drop, collapsing its sequence numbers.
            if in_segment {
                self.ring
                    .insert(idx, p.seq, d.start_of_frame, d.end_of_frame);
            }
            return None;
        }
        if keyframe {
            // A keyframe (maybe with a new structure) decodes on its own: take the target now.
            self.set_dt(
                structure,
                Self::resolve(structure, active, target.spatial, target.temporal),
            );
            self.dt_generation = info.generation;
        } else if self.dt_generation != info.generation {
            // A new structure whose keyframe this receiver did not get: the same layers in it.
            let (s, t) = self.current_layers;
            self.set_dt(structure, Self::resolve(structure, active, s, t));
            self.dt_generation = info.generation;
        }
        let mut cur = usize::from(self.current_dt?);
        let want = if p.encoding == target.encoding {
            let key = (info.generation, active, target.spatial, target.temporal);
            let dt = match self.want_cache {
                Some((k, dt)) if k == key => dt,
                _ => {
                    let dt = Self::resolve(structure, active, target.spatial, target.temporal);
                    self.want_cache = Some((key, dt));
                    dt
                }
            };
            dt.map_or(cur, usize::from)
        } else {
            cur
        };

        // Decodability and chains, from what this receiver got.
        // Unknown frames (not seen yet) may still arrive and be forwarded: only frames seen and
        // dropped, or before the segment, make a frame undecodable.
        let decodable = d.frame.fdiffs().iter().all(|&fd| {
            idx.checked_sub(u64::from(fd))
                .is_some_and(|k| self.ring.in_window(k) && self.ring.accepted(k) != Some(false))
        });
        let mut chains_ok = 0u32;
        for c in 0..usize::from(structure.chain_count) {
            let fd = d.frame.chain_fdiffs[c];
            let ok = fd == 0
                || idx.checked_sub(u64::from(fd)).is_some_and(|k| {
                    self.ring
                        .get(k)
                        .is_some_and(|f| f.accepted && f.tag & (1 << c) != 0)
                });
            if ok {
                chains_ok |= 1 << c;
            }
        }
        let chain_intact = |dt: usize| -> bool {
            structure
                .chain_of(dt)
                .is_some_and(|c| chains_ok & (1 << c) != 0)
        };

        if want != cur && decodable && (d.frame.dtis.get(want) == Dti::Switch || chain_intact(want))
        {
            cur = want;
            self.set_dt(structure, Some(want as u8));
        }
        self.dt_needs_keyframe = want != cur
            && match structure.chain_of(want) {
                Some(_) => !chain_intact(want),
                None => !structure.has_switch_template(cur, want),
            };

        let dti = d.frame.dtis.get(cur);
        let pending_down = self.segment.is_some_and(|s| s.encoding > target.encoding);
        let wanted = if pending_down {
            // An encoding down-switch is pending: only what the DT cannot do without.
            matches!(dti, Dti::Switch | Dti::Required)
        } else {
            dti != Dti::NotPresent
                || (self.config.keep_lower_chains && info.chains & p.source.lower_chains(cur) != 0)
        };
        // The receiver must have the frame's structure, or get it with the frame's first packet.
        let resolvable = self.structure_for_receiver(p).is_some();
        let accepted = wanted && decodable && resolvable;
        let (start, end) = (d.start_of_frame, d.end_of_frame);
        let delta = record_frame(
            &mut self.ring,
            &self.out,
            idx,
            p.seq,
            start,
            end,
            accepted,
            chains_ok,
        )?;
        self.rewrite(now, p, delta)
    }

    /// A keyframe of `p.encoding` starts a new segment continuing the receiver's stream.
    fn start_segment(
        &mut self,
        now: Instant,
        p: &DdPacket<'_>,
        target: DdTarget,
        structure: &Structure,
        active: u32,
    ) -> Option<DdRewrite> {
        let d = &p.info.descriptor;
        let idx = p.info.frame_index;
        let (spatial, temporal) = if p.encoding == target.encoding {
            (target.spatial, target.temporal)
        } else {
            // A step toward another encoding's target: all this one has.
            (u8::MAX, u8::MAX)
        };
        let dt = Self::resolve(structure, active, spatial, temporal)?;
        let fn_delta = self
            .last_frame_number
            .map_or(0, |last| last.wrapping_add(1).wrapping_sub(d.frame_number));
        let template_delta = self.receiver_structure.map_or(0, |(off, count)| {
            let next = (usize::from(off) + usize::from(count)) % MAX_TEMPLATES;
            ((next + MAX_TEMPLATES - usize::from(structure.template_id_offset)) % MAX_TEMPLATES)
                as u8
        });
        let first = self.out.next_segment_seq(p.seq);
        let ts = self.out.next_segment_ts(now, p.timestamp);
        self.segment = Some(Segment {
            encoding: p.encoding,
            ts_delta: ts.wrapping_sub(p.timestamp),
            fn_delta,
            template_delta,
        });
        self.set_dt(structure, Some(dt));
        self.dt_generation = p.info.generation;
        self.dt_needs_keyframe = false;
        self.resync = false;
        let packet = (p.seq, d.start_of_frame, d.end_of_frame);
        let delta = start_ring(&mut self.ring, &mut self.out, idx, packet, u32::MAX, first);
        self.rewrite(now, p, delta)
    }

    /// Whether the receiver can resolve this packet's descriptor: `Some(false)` it has the
    /// structure, `Some(true)` it gets it with this packet (the keyframe's own, or again with
    /// the first packet of the next frame it gets after missing a keyframe it did not need),
    /// `None` it cannot (not a frame start, a late packet of a replaced structure, or a frame
    /// before the one it got the structure with): such a packet would be misread.
    fn structure_for_receiver(&self, p: &DdPacket<'_>) -> Option<bool> {
        let d = &p.info.descriptor;
        let idx = p.info.frame_index;
        if self.receiver_structure_at.is_some_and(|at| idx < at) {
            return None;
        }
        let current = p.info.generation == p.source.generation();
        if d.structure_attached {
            return current.then_some(true);
        }
        if self.receiver_generation == Some(p.info.generation) {
            return Some(false);
        }
        (d.start_of_frame && current).then_some(true)
    }

    fn rewrite(&mut self, now: Instant, p: &DdPacket<'_>, seq_delta: u16) -> Option<DdRewrite> {
        let seg = self.segment?;
        let d = &p.info.descriptor;
        let structure = p.source.structure(p.info.generation)?;
        let cur = usize::from(self.current_dt?);
        let seq = p.seq.wrapping_sub(seq_delta);
        let timestamp = p.timestamp.wrapping_add(seg.ts_delta);
        let frame_number = d.frame_number.wrapping_add(seg.fn_delta);
        let template_id =
            ((usize::from(d.template_id) + usize::from(seg.template_delta)) % MAX_TEMPLATES) as u8;
        let attach = self.structure_for_receiver(p)?;
        let structure_offset = attach.then(|| {
            let off = ((usize::from(structure.template_id_offset)
                + usize::from(seg.template_delta))
                % MAX_TEMPLATES) as u8;
            self.receiver_structure = Some((off, structure.template_count));
            self.receiver_generation = Some(p.info.generation);
            let idx = p.info.frame_index;
            self.receiver_structure_at =
                Some(self.receiver_structure_at.map_or(idx, |a| a.max(idx)));
            off
        });
        let all = structure.all_decode_targets();
        let mask = structure.contained_in(cur) & p.source.active_decode_targets();
        // Every packet while the receiver cannot decode every DT; and whenever the sender
        // signalled a change (so that "all again" reaches the receiver too).
        let active_decode_targets = (mask != all
            || (d.active_decode_targets.is_some() && !d.structure_attached))
            .then_some(mask);
        let top = structure.dt_spatial[cur.min(structure.dt_spatial.len() - 1)];
        let marker = p.marker || (d.end_of_frame && d.frame.spatial == top);
        if self
            .last_frame_number
            .is_none_or(|l| frame_number.wrapping_sub(l) < 0x8000)
        {
            self.last_frame_number = Some(frame_number);
        }
        self.out.on_sent(now, seq, timestamp, d.end_of_frame);
        Some(DdRewrite {
            seq,
            timestamp,
            marker,
            frame_number,
            template_id,
            structure_offset,
            active_decode_targets,
            keyframe: p.info.starts_keyframe(),
        })
    }
}

/// The Dependency Descriptor context of a [`Projection`](super::Projection).
impl Layered for DdProjection {
    type Info = DdInfo;
    type Source = DdSource;
    type Rewrite = DdRewrite;

    fn set_target(&mut self, target: Option<LayerTarget>) {
        self.target = target;
    }

    fn forward_with(
        &mut self,
        filter: &mut SwitchFilter,
        now: Instant,
        p: &DdPacket<'_>,
    ) -> Option<DdRewrite> {
        let info = p.info;
        let d = &info.descriptor;
        let idx = info.frame_index;
        let in_segment = self.segment.is_some_and(|s| s.encoding == p.encoding);
        let packet = (p.seq, d.start_of_frame, d.end_of_frame);
        match known_frame(&mut self.ring, in_segment, idx, packet) {
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
        if self.segment.is_none()
            || self.current_dt.is_none()
            || self.dt_needs_keyframe
            || self.resync
        {
            return Some(t.encoding);
        }
        None
    }

    fn continuing(c: Continuity) -> Self {
        let mut p = DdProjection::new(DdConfig::default());
        p.out = c;
        p
    }

    fn source(stream: &StreamState) -> Option<&DdSource> {
        stream.dd()
    }

    fn spatial_layers(source: &DdSource) -> u8 {
        source.spatial_layers()
    }

    fn continuity(&self) -> &Continuity {
        &self.out
    }

    fn segment(&self) -> Option<(u8, u32)> {
        self.segment.map(|s| (s.encoding, s.ts_delta))
    }

    fn skip(&mut self, encoding: u8, seq: u16) {
        if self.segment.is_some_and(|s| s.encoding == encoding) {
            self.ring.on_padding(seq);
        }
    }

    fn own_filter(&mut self) -> &mut SwitchFilter {
        &mut self.filter
    }
}

impl From<DdRewrite> for Rewritten {
    fn from(r: DdRewrite) -> Self {
        Rewritten {
            seq: r.seq,
            timestamp: r.timestamp,
            payload: PayloadRewrite::Av1 {
                frame_number: r.frame_number,
                template_id: r.template_id,
                structure_offset: r.structure_offset,
                active_decode_targets: r.active_decode_targets,
                marker: r.marker,
            },
            keyframe: r.keyframe,
        }
    }
}
