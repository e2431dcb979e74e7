//! One RTP stream's Dependency Descriptor state, kept once per sender stream (not per receiver):
//! the latest template dependency structure (and the one before it, for packets that arrive late
//! around a keyframe), the decode targets the sender says are active, and the frame number
//! unwrapped. [`DdSource::parse`] turns each packet's descriptor into a [`DdInfo`] every receiver's
//! projection then reads.
//!
//! A structure is parsed into scratch space and only replaces the current one once the whole
//! descriptor validated, so a malformed keyframe packet changes nothing. Nothing allocates after
//! [`DdSource::new`].

use super::descriptor::{
    self, DdError, Descriptor, Fields, MAX_CHAINS, MAX_DECODE_TARGETS, Resolution, Structure,
    mask_of,
};
use crate::sfu::frames::Unwrapper;

/// A packet's descriptor as the projections need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdInfo {
    pub descriptor: Descriptor,
    /// The frame number extended to 64 bits (decode order across wraps).
    pub frame_index: u64,
    /// Which structure the descriptor was resolved against (see [`DdSource::structure`]).
    pub generation: u32,
    /// The chains this frame is part of (A.6 `PartOfActiveChain`, active chains only), bit per
    /// chain.
    pub chains: u32,
}

impl DdInfo {
    /// The first packet of a keyframe: the only packets that carry a structure.
    pub fn starts_keyframe(&self) -> bool {
        self.descriptor.structure_attached
    }

    /// Writes this packet's descriptor as a receiver gets it (resolved against `structure`):
    /// frame number and template id as given, `structure` attached at `structure_offset`, the
    /// active decode targets; custom fields kept as they were. Its length.
    pub fn write_rewritten(
        &self,
        structure: &Structure,
        frame_number: u16,
        template_id: u8,
        structure_offset: Option<u8>,
        active_decode_targets: Option<u32>,
        out: &mut [u8],
    ) -> Result<usize, DdError> {
        let d = &self.descriptor;
        let chains = usize::from(structure.chain_count);
        descriptor::write(
            &Fields {
                start_of_frame: d.start_of_frame,
                end_of_frame: d.end_of_frame,
                template_id,
                frame_number,
                structure: Some(structure),
                attach_structure: structure_offset,
                active_decode_targets,
                custom_dtis: d.custom_dtis.then_some(d.frame.dtis),
                custom_fdiffs: d.custom_fdiffs.then(|| d.frame.fdiffs()),
                custom_chains: d.custom_chains.then(|| &d.frame.chain_fdiffs[..chains]),
            },
            out,
        )
    }
}

/// One decode target as the allocation sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeTarget {
    pub index: u8,
    pub spatial: u8,
    pub temporal: u8,
    /// Render resolution of its spatial layer, if the structure has resolutions.
    pub resolution: Option<Resolution>,
    /// The sender says it is being produced.
    pub active: bool,
}

/// A sender stream's Dependency Descriptor state.
#[derive(Debug, Clone)]
pub struct DdSource {
    current: Option<Box<Structure>>,
    previous: Option<Box<Structure>>,
    scratch: Box<Structure>,
    generation: u32,
    /// Decode targets the sender produces (A.4), valid for the current structure.
    active: u32,
    /// Per chain, the decode targets it protects (current structure).
    chain_dts: [u32; MAX_CHAINS],
    /// Per decode target, the chains protecting decode targets of lower spatial layers.
    lower_chains: [u32; MAX_DECODE_TARGETS],
    frames: Unwrapper,
    /// Frame index of the keyframe that brought the current structure.
    keyframe_index: Option<u64>,
    /// Spatial layers of the current structure (0 before any).
    spatial_layers: u8,
}

impl Default for DdSource {
    fn default() -> Self {
        DdSource::new()
    }
}

impl DdSource {
    pub fn new() -> Self {
        DdSource {
            current: None,
            previous: None,
            scratch: Box::default(),
            generation: 0,
            active: 0,
            chain_dts: [0; MAX_CHAINS],
            lower_chains: [0; MAX_DECODE_TARGETS],
            frames: Unwrapper::default(),
            keyframe_index: None,
            spatial_layers: 0,
        }
    }

    /// Parses one packet's descriptor (the header extension element's bytes). A structure the
    /// packet carries becomes current, unless it comes with a frame older than the current
    /// structure's keyframe (a retransmission: as libwebrtc's receiver, an older keyframe's
    /// structure never replaces a newer one).
    pub fn parse(&mut self, ext: &[u8]) -> Result<DdInfo, DdError> {
        let m = descriptor::parse_mandatory(ext)?;
        let frame_index = self.frames.peek(u32::from(m.frame_number), 16);
        let mut info = DdInfo {
            descriptor: Descriptor::EMPTY,
            frame_index,
            generation: self.generation,
            chains: 0,
        };
        // A frame before the current structure's keyframe belongs to the previous structure.
        let before_keyframe = self.keyframe_index.is_some_and(|k| frame_index < k);
        let d = &mut info.descriptor;
        let structure = if before_keyframe {
            // (With no previous structure, a frame from before any keyframe received cannot be
            // resolved: `NoStructure`.)
            descriptor::parse_into(ext, self.previous.as_deref(), &mut self.scratch, d)
        } else {
            match descriptor::parse_into(ext, self.current.as_deref(), &mut self.scratch, d) {
                // A late packet of the previous structure's frames whose frame number does not
                // say so (the keyframe was lost).
                Err(DdError::TemplateOutOfRange) if self.previous.is_some() => {
                    let r =
                        descriptor::parse_into(ext, self.previous.as_deref(), &mut self.scratch, d);
                    if r.is_ok() {
                        info.generation = self.generation.wrapping_sub(1);
                    }
                    r
                }
                r => r,
            }
        }?;
        if before_keyframe && !structure {
            info.generation = self.generation.wrapping_sub(1);
        }
        if info.generation != self.generation {
            if structure {
                return Err(DdError::StaleStructure);
            }
            self.frames.update(frame_index);
            return Ok(info);
        }
        if structure && self.current.as_deref() != Some(&*self.scratch) {
            if before_keyframe {
                // An older keyframe's structure (a retransmission) never replaces a newer one.
                if self.previous.as_deref() == Some(&*self.scratch) {
                    info.generation = self.generation.wrapping_sub(1);
                    self.frames.update(frame_index);
                    return Ok(info);
                }
                return Err(DdError::StaleStructure);
            }
            let old = self.current.take();
            // Reuse the old previous box as the next scratch space: no allocation.
            let next_scratch = self.previous.take().unwrap_or_default();
            self.current = Some(std::mem::replace(&mut self.scratch, next_scratch));
            self.previous = old;
            self.generation = self.generation.wrapping_add(1);
            self.derive();
        }
        self.frames.update(frame_index);
        if structure {
            self.keyframe_index = Some(
                self.keyframe_index
                    .map_or(frame_index, |k| k.max(frame_index)),
            );
        }
        if let Some(m) = info.descriptor.active_decode_targets
            && !before_keyframe
        {
            self.active = m;
        }
        info.generation = self.generation;
        info.chains = self.chains_of(&info.descriptor);
        Ok(info)
    }

    /// The active chains `d`'s frame is part of.
    fn chains_of(&self, d: &Descriptor) -> u32 {
        let Some(s) = self.current.as_deref() else {
            return 0;
        };
        // Decode targets for which the frame is a switch or required.
        let strong = d.frame.dtis.strong(usize::from(s.decode_target_count));
        let mut m = 0u32;
        for c in 0..usize::from(s.chain_count) {
            let dts = self.chain_dts[c];
            if dts & !strong == 0 && dts & self.active != 0 {
                m |= 1 << c;
            }
        }
        m
    }

    fn derive(&mut self) {
        self.chain_dts = [0; MAX_CHAINS];
        self.lower_chains = [0; MAX_DECODE_TARGETS];
        self.spatial_layers = 0;
        let Some(s) = self.current.as_deref() else {
            return;
        };
        let n = usize::from(s.decode_target_count);
        self.active = mask_of(n);
        self.spatial_layers = s.dt_spatial[..n].iter().max().map_or(0, |m| m + 1);
        if s.chain_count > 0 {
            for dt in 0..n {
                let c = usize::from(s.protected_by[dt]);
                self.chain_dts[c] |= 1 << dt;
            }
            for dt in 0..n {
                for other in 0..n {
                    if s.dt_spatial[other] < s.dt_spatial[dt] {
                        self.lower_chains[dt] |= 1 << s.protected_by[other];
                    }
                }
            }
        }
    }

    /// Spatial layers of the current structure (0 before any): more than one is an SVC stream.
    pub fn spatial_layers(&self) -> u8 {
        self.spatial_layers
    }

    /// The structure a [`DdInfo`] was resolved against (the current one, or the previous one
    /// for late packets); `None` if it has been replaced twice since.
    pub fn structure(&self, generation: u32) -> Option<&Structure> {
        if generation == self.generation {
            self.current.as_deref()
        } else if generation == self.generation.wrapping_sub(1) {
            self.previous.as_deref()
        } else {
            None
        }
    }

    /// The latest structure.
    pub fn current(&self) -> Option<&Structure> {
        self.current.as_deref()
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The decode targets the sender produces, bit per decode target.
    pub fn active_decode_targets(&self) -> u32 {
        self.active
    }

    /// The chains protecting decode targets of lower spatial layers than `dt`'s.
    pub fn lower_chains(&self, dt: usize) -> u32 {
        self.lower_chains.get(dt).copied().unwrap_or(0)
    }

    /// Every decode target of the current structure with its layers and resolution.
    pub fn decode_targets(&self) -> impl Iterator<Item = DecodeTarget> + '_ {
        let s = self.current.as_deref();
        let n = s.map_or(0, |s| usize::from(s.decode_target_count));
        (0..n).filter_map(move |dt| {
            let s = s?;
            let (spatial, temporal) = s.layer_of(dt);
            Some(DecodeTarget {
                index: dt as u8,
                spatial,
                temporal,
                resolution: s.resolution(spatial),
                active: self.active & (1 << dt) != 0,
            })
        })
    }

    /// The decode targets whose receivers get this packet's frame (bit per decode target): those
    /// the frame is part of, plus, with `keep_lower_chains`, those above a lower spatial layer
    /// whose chain the frame belongs to (see `DdProjection`). The core measures each decode
    /// target's bitrate from this.
    pub fn forwarded_to(&self, info: &DdInfo, keep_lower_chains: bool) -> u32 {
        let Some(s) = self.structure(info.generation) else {
            return 0;
        };
        let n = usize::from(s.decode_target_count);
        let mut m = info.descriptor.decode_targets(s);
        if keep_lower_chains && info.chains != 0 {
            for dt in 0..n {
                if self.lower_chains[dt] & info.chains != 0 {
                    m |= 1 << dt;
                }
            }
        }
        m
    }
}
