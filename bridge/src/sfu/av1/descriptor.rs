//! The Dependency Descriptor RTP header extension's wire format (AV1 RTP specification, appendix
//! A.8; `https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension`).
//!
//! ```text
//!  mandatory (3 bytes)   start_of_frame(1) end_of_frame(1) frame_dependency_template_id(6)
//!                        frame_number(16)
//!  extended (if > 3 B)   structure_present(1) active_decode_targets_present(1) custom_dtis(1)
//!                        custom_fdiffs(1) custom_chains(1)
//!                        [template_dependency_structure] [active_decode_targets_bitmask(DtCnt)]
//!  frame definition      [frame_dtis: 2 bits per decode target] [frame_fdiffs: size(2) diff(4·size)…]
//!                        [frame_chains: 8 bits per chain]   then zero padding to the byte
//! ```
//! A frame's spatial and temporal id, decode target indications (DTIs), frame diffs and chain diffs
//! come from the template `frame_dependency_template_id` names in the latest *template dependency
//! structure* (sent on the first packet of every keyframe), each overridable by the custom fields.
//!
//! [`parse`] validates the whole descriptor (every field, template range, limits) before it
//! returns, so a packet either resolves completely or is a typed [`DdError`]; it allocates nothing
//! (a structure is parsed into a caller-provided [`Structure`]). [`write()`] encodes a descriptor into
//! a caller's buffer: the rewrite of a forwarded packet and the descriptors of our test senders.
//!
//! Limits of this implementation (the syntax has none): at most 8 frame diffs per frame or
//! template (an AV1 frame has 7 reference slots), 4 spatial and 8 temporal layers (AV1's OBU
//! extension header cannot express more). libwebrtc's writer stays well inside them.

use super::bits::{BitReader, BitWriter};
pub use super::error::DdError;

/// The extension's URI for `a=extmap` / COLIBRI2 `rtp-hdrext`.
pub const URI: &str =
    "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
/// `frame_dependency_template_id` is 6 bits.
pub const MAX_TEMPLATES: usize = 64;
/// `dt_cnt_minus_one` is 5 bits.
pub const MAX_DECODE_TARGETS: usize = 32;
/// `chain_cnt` is at most the number of decode targets.
pub const MAX_CHAINS: usize = 32;
/// Frame diffs kept per frame or template (an AV1 frame refers to at most 7 others).
pub const MAX_FDIFFS: usize = 8;
pub const MAX_SPATIAL_LAYERS: usize = 4;
pub const MAX_TEMPORAL_LAYERS: usize = 8;
/// The longest descriptor an RTP header extension element can carry (two-byte form).
pub const MAX_LEN: usize = 255;
/// The mandatory fields' length.
pub const MANDATORY_LEN: usize = 3;

/// Decode target indication: how a frame relates to one decode target (table A.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Dti {
    /// `-`: not part of the decode target.
    NotPresent = 0,
    /// `D`: part of it, no later frame of the decode target refers to it.
    Discardable = 1,
    /// `S`: part of it, and if decodable every later frame of the decode target is too.
    Switch = 2,
    /// `R`: part of it.
    Required = 3,
}

impl Dti {
    fn from_bits(v: u32) -> Dti {
        match v & 3 {
            0 => Dti::NotPresent,
            1 => Dti::Discardable,
            2 => Dti::Switch,
            _ => Dti::Required,
        }
    }
}

/// The DTIs of up to 32 decode targets, two bits each (decode target `i` at bits `2i..2i+2`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Dtis(pub u64);

impl Dtis {
    #[inline]
    pub fn get(self, dt: usize) -> Dti {
        if dt >= MAX_DECODE_TARGETS {
            return Dti::NotPresent;
        }
        Dti::from_bits((self.0 >> (2 * dt)) as u32)
    }

    #[inline]
    pub fn with(self, dt: usize, dti: Dti) -> Dtis {
        if dt >= MAX_DECODE_TARGETS {
            return self;
        }
        let shift = 2 * dt;
        Dtis((self.0 & !(3u64 << shift)) | ((dti as u64) << shift))
    }

    /// Bit `i` set for every decode target `i < count` the frame is part of.
    #[inline]
    pub fn present(self, count: usize) -> u32 {
        compress_pairs(self.0 | (self.0 >> 1)) & mask_of(count)
    }

    /// Bit `i` set for every decode target `i < count` the frame is a switch or required for
    /// (what A.6's `PartOfActiveChain` looks at).
    #[inline]
    pub fn strong(self, count: usize) -> u32 {
        compress_pairs(self.0 >> 1) & mask_of(count)
    }

    /// Parses DTI symbols as the specification's tables write them (`"SSR-D"`); for tests and
    /// test senders.
    pub fn from_symbols(s: &str) -> Dtis {
        s.chars().enumerate().fold(Dtis(0), |d, (i, c)| {
            d.with(
                i,
                match c {
                    'D' => Dti::Discardable,
                    'S' => Dti::Switch,
                    'R' => Dti::Required,
                    _ => Dti::NotPresent,
                },
            )
        })
    }
}

/// A frame's dependency definition: its layer, DTIs, frame diffs and chain diffs. Templates are
/// this too (their diffs are smaller on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDeps {
    pub spatial: u8,
    pub temporal: u8,
    pub dtis: Dtis,
    pub fdiff_count: u8,
    /// `frame_number - fdiff` is a frame this one refers to.
    pub fdiffs: [u16; MAX_FDIFFS],
    /// Per chain, `frame_number - chain_fdiff` is the previous frame of that chain (0: none
    /// needed). As many as the structure's `chain_count`.
    pub chain_fdiffs: [u8; MAX_CHAINS],
}

impl Default for FrameDeps {
    fn default() -> Self {
        FrameDeps::EMPTY
    }
}

impl FrameDeps {
    pub const EMPTY: FrameDeps = FrameDeps {
        spatial: 0,
        temporal: 0,
        dtis: Dtis(0),
        fdiff_count: 0,
        fdiffs: [0; MAX_FDIFFS],
        chain_fdiffs: [0; MAX_CHAINS],
    };

    pub fn fdiffs(&self) -> &[u16] {
        &self.fdiffs[..usize::from(self.fdiff_count)]
    }

    /// Builds a template or frame definition (tests and test senders): `dtis` as symbols.
    pub fn new(spatial: u8, temporal: u8, dtis: &str, fdiffs: &[u16], chains: &[u8]) -> Self {
        let mut f = FrameDeps {
            spatial,
            temporal,
            dtis: Dtis::from_symbols(dtis),
            ..FrameDeps::default()
        };
        for (i, d) in fdiffs.iter().take(MAX_FDIFFS).enumerate() {
            f.fdiffs[i] = *d;
            f.fdiff_count = i as u8 + 1;
        }
        for (i, c) in chains.iter().take(MAX_CHAINS).enumerate() {
            f.chain_fdiffs[i] = *c;
        }
        f
    }
}

/// A render resolution (`max_render_width_minus_1 + 1` × `… height …`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resolution {
    pub width: u16,
    pub height: u16,
}

/// The template dependency structure (A.8.2 `template_dependency_structure`), with the per decode
/// target layers derived as the specification's `decode_target_layers()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure {
    pub template_id_offset: u8,
    pub decode_target_count: u8,
    pub chain_count: u8,
    pub template_count: u8,
    pub templates: [FrameDeps; MAX_TEMPLATES],
    /// `decode_target_protected_by` (valid when `chain_count > 0`).
    pub protected_by: [u8; MAX_DECODE_TARGETS],
    pub max_spatial: u8,
    pub max_temporal: u8,
    /// Per spatial layer, when `resolutions_present_flag` was set.
    pub resolutions: Option<[Resolution; MAX_SPATIAL_LAYERS]>,
    /// Highest spatial id among the frames of each decode target.
    pub dt_spatial: [u8; MAX_DECODE_TARGETS],
    /// Highest temporal id among the frames of each decode target.
    pub dt_temporal: [u8; MAX_DECODE_TARGETS],
    /// Per decode target, [`Structure::contained_in`].
    contained: [u32; MAX_DECODE_TARGETS],
}

impl Default for Structure {
    fn default() -> Self {
        Structure {
            template_id_offset: 0,
            decode_target_count: 0,
            chain_count: 0,
            template_count: 0,
            templates: [FrameDeps::default(); MAX_TEMPLATES],
            protected_by: [0; MAX_DECODE_TARGETS],
            max_spatial: 0,
            max_temporal: 0,
            resolutions: None,
            dt_spatial: [0; MAX_DECODE_TARGETS],
            dt_temporal: [0; MAX_DECODE_TARGETS],
            contained: [0; MAX_DECODE_TARGETS],
        }
    }
}

impl Structure {
    /// Builds a structure from templates (tests, test senders). `protected_by` may be empty (no
    /// chains); `chain_count` is one more than its largest entry.
    pub fn new(
        template_id_offset: u8,
        decode_target_count: u8,
        templates: &[FrameDeps],
        protected_by: &[u8],
        resolutions: Option<&[Resolution]>,
    ) -> Structure {
        let mut s = Structure {
            template_id_offset: template_id_offset % MAX_TEMPLATES as u8,
            decode_target_count: decode_target_count.clamp(1, MAX_DECODE_TARGETS as u8),
            template_count: templates.len().min(MAX_TEMPLATES) as u8,
            ..Structure::default()
        };
        for (i, t) in templates.iter().take(MAX_TEMPLATES).enumerate() {
            s.templates[i] = *t;
            s.max_spatial = s.max_spatial.max(t.spatial);
            s.max_temporal = s.max_temporal.max(t.temporal);
        }
        if !protected_by.is_empty() {
            for (i, c) in protected_by.iter().take(MAX_DECODE_TARGETS).enumerate() {
                s.protected_by[i] = *c;
            }
            s.chain_count = protected_by.iter().max().map_or(0, |m| m + 1);
        }
        if let Some(r) = resolutions {
            let mut all = [Resolution::default(); MAX_SPATIAL_LAYERS];
            for (i, x) in r.iter().take(MAX_SPATIAL_LAYERS).enumerate() {
                all[i] = *x;
            }
            s.resolutions = Some(all);
        }
        s.derive_layers();
        s
    }

    pub fn templates(&self) -> &[FrameDeps] {
        &self.templates[..usize::from(self.template_count)]
    }

    /// The template a `frame_dependency_template_id` names.
    #[inline]
    pub fn template(&self, template_id: u8) -> Result<&FrameDeps, DdError> {
        let idx = (usize::from(template_id) + MAX_TEMPLATES - usize::from(self.template_id_offset))
            % MAX_TEMPLATES;
        if idx >= usize::from(self.template_count) {
            return Err(DdError::TemplateOutOfRange);
        }
        Ok(&self.templates[idx])
    }

    /// Whether `template_id` lies in this structure's range.
    pub fn has_template(&self, template_id: u8) -> bool {
        self.template(template_id).is_ok()
    }

    /// The chain protecting decode target `dt` (none without chains).
    #[inline]
    pub fn chain_of(&self, dt: usize) -> Option<usize> {
        (self.chain_count > 0 && dt < usize::from(self.decode_target_count))
            .then(|| usize::from(self.protected_by[dt]))
    }

    /// `(spatial, temporal)` of decode target `dt`.
    pub fn layer_of(&self, dt: usize) -> (u8, u8) {
        let dt = dt.min(MAX_DECODE_TARGETS - 1);
        (self.dt_spatial[dt], self.dt_temporal[dt])
    }

    /// The render resolution of spatial layer `spatial`, if the structure has them.
    pub fn resolution(&self, spatial: u8) -> Option<Resolution> {
        self.resolutions
            .and_then(|r| r.get(usize::from(spatial)).copied())
    }

    /// Every decode target as a bitmask.
    pub fn all_decode_targets(&self) -> u32 {
        mask_of(usize::from(self.decode_target_count))
    }

    /// The decode targets whose frames are all part of decode target `dt` (a receiver getting
    /// `dt` can decode each of them): what a forwarder announces as active (JVB's
    /// `getDtBitmaskForDt`).
    #[inline]
    pub fn contained_in(&self, dt: usize) -> u32 {
        self.contained.get(dt).copied().unwrap_or(0)
    }

    /// A.6 `PartOfActiveChain`: `frame` belongs to chain `chain` (no decode target protected by
    /// it has a `-` or `D` indication), and the chain protects an active decode target.
    pub fn part_of_chain(&self, frame: &FrameDeps, chain: usize, active: u32) -> bool {
        let n = usize::from(self.decode_target_count);
        let mut protects_active = false;
        for dt in 0..n {
            if usize::from(self.protected_by[dt]) != chain {
                continue;
            }
            if matches!(frame.dtis.get(dt), Dti::NotPresent | Dti::Discardable) {
                return false;
            }
            protects_active |= active & (1 << dt) != 0;
        }
        self.chain_count > 0 && protects_active
    }

    /// JVB's heuristic for structures without chains: some template (with a dependency) is a
    /// switch point to `to` and part of `from`.
    pub fn has_switch_template(&self, from: usize, to: usize) -> bool {
        self.templates().iter().any(|t| {
            t.fdiff_count > 0
                && t.dtis.get(from) != Dti::NotPresent
                && t.dtis.get(to) == Dti::Switch
        })
    }

    fn derive_layers(&mut self) {
        let n = usize::from(self.decode_target_count);
        for dt in 0..n {
            let mut m = mask_of(n);
            for t in &self.templates[..usize::from(self.template_count)] {
                if t.dtis.get(dt) == Dti::NotPresent {
                    m &= !t.dtis.present(n);
                }
            }
            self.contained[dt] = m;
        }
        for dt in 0..n {
            let (mut s, mut t) = (0, 0);
            for tpl in &self.templates[..usize::from(self.template_count)] {
                if tpl.dtis.get(dt) != Dti::NotPresent {
                    s = s.max(tpl.spatial);
                    t = t.max(tpl.temporal);
                }
            }
            self.dt_spatial[dt] = s;
            self.dt_temporal[dt] = t;
        }
    }

    /// Reads `template_dependency_structure()` into `self`; on error `self` is left in an
    /// unspecified (but safe) state, so callers parse into scratch space.
    fn read(&mut self, r: &mut BitReader<'_>) -> Result<(), DdError> {
        // Start clean so that equal structures compare equal whatever the scratch held (keyframes
        // only: the 5 KB clear is not on the per-packet path).
        *self = Structure::default();
        self.template_id_offset = r.bits(6)? as u8;
        let dt_cnt = r.bits(5)? as usize + 1;
        self.decode_target_count = dt_cnt as u8;
        // template_layers()
        let (mut s, mut t, mut count) = (0u8, 0u8, 0usize);
        let (mut max_s, mut max_t) = (0u8, 0u8);
        loop {
            if count >= MAX_TEMPLATES {
                return Err(DdError::TooManyTemplates);
            }
            self.templates[count] = FrameDeps {
                spatial: s,
                temporal: t,
                ..FrameDeps::default()
            };
            count += 1;
            match r.bits(2)? {
                0 => {}
                1 => {
                    t += 1;
                    if usize::from(t) >= MAX_TEMPORAL_LAYERS {
                        return Err(DdError::TooManyLayers);
                    }
                    max_t = max_t.max(t);
                }
                2 => {
                    t = 0;
                    s += 1;
                    if usize::from(s) >= MAX_SPATIAL_LAYERS {
                        return Err(DdError::TooManyLayers);
                    }
                }
                _ => break,
            }
        }
        max_s = max_s.max(s);
        self.template_count = count as u8;
        self.max_spatial = max_s;
        self.max_temporal = max_t;
        // template_dtis()
        for tpl in &mut self.templates[..count] {
            let mut d = Dtis(0);
            for dt in 0..dt_cnt {
                d = d.with(dt, Dti::from_bits(r.bits(2)?));
            }
            tpl.dtis = d;
        }
        // template_fdiffs()
        for tpl in &mut self.templates[..count] {
            let mut n = 0usize;
            while r.bit()? {
                if n >= MAX_FDIFFS {
                    return Err(DdError::TooManyFrameDiffs);
                }
                tpl.fdiffs[n] = r.bits(4)? as u16 + 1;
                n += 1;
            }
            tpl.fdiff_count = n as u8;
        }
        // template_chains()
        let chains = r.ns(dt_cnt as u32 + 1)? as usize;
        self.chain_count = chains as u8;
        if chains > 0 {
            for dt in 0..dt_cnt {
                self.protected_by[dt] = r.ns(chains as u32)? as u8;
            }
            for tpl in &mut self.templates[..count] {
                for c in 0..chains {
                    tpl.chain_fdiffs[c] = r.bits(4)? as u8;
                }
            }
        }
        self.derive_layers();
        // render_resolutions()
        self.resolutions = if r.bit()? {
            let mut all = [Resolution::default(); MAX_SPATIAL_LAYERS];
            for res in all.iter_mut().take(usize::from(max_s) + 1) {
                res.width = (r.bits(16)? + 1) as u16;
                res.height = (r.bits(16)? + 1) as u16;
            }
            Some(all)
        } else {
            None
        };
        Ok(())
    }

    /// Writes `template_dependency_structure()` with `template_id_offset` replaced by `offset`.
    fn write(&self, w: &mut BitWriter<'_>, offset: u8) -> Result<(), DdError> {
        let dt_cnt = usize::from(self.decode_target_count);
        let count = usize::from(self.template_count);
        if count == 0 || dt_cnt == 0 {
            return Err(DdError::BadIndex);
        }
        w.bits(6, u32::from(offset % MAX_TEMPLATES as u8))?;
        w.bits(5, dt_cnt as u32 - 1)?;
        let tpls = self.templates();
        for (i, t) in tpls.iter().enumerate() {
            let idc = match tpls.get(i + 1) {
                None => 3,
                Some(n) if n.spatial == t.spatial && n.temporal == t.temporal => 0,
                Some(n) if n.spatial == t.spatial && n.temporal == t.temporal + 1 => 1,
                Some(n) if n.spatial == t.spatial + 1 && n.temporal == 0 => 2,
                Some(_) => return Err(DdError::BadIndex),
            };
            w.bits(2, idc)?;
        }
        for t in tpls {
            for dt in 0..dt_cnt {
                w.bits(2, t.dtis.get(dt) as u32)?;
            }
        }
        for t in tpls {
            for &d in t.fdiffs() {
                if !(1..=16).contains(&d) {
                    return Err(DdError::BadIndex);
                }
                w.bit(true)?;
                w.bits(4, u32::from(d) - 1)?;
            }
            w.bit(false)?;
        }
        let chains = usize::from(self.chain_count);
        w.ns(dt_cnt as u32 + 1, chains as u32)?;
        if chains > 0 {
            for dt in 0..dt_cnt {
                w.ns(chains as u32, u32::from(self.protected_by[dt]))?;
            }
            for t in tpls {
                for c in 0..chains {
                    w.bits(4, u32::from(t.chain_fdiffs[c].min(15)))?;
                }
            }
        }
        match &self.resolutions {
            Some(all) => {
                w.bit(true)?;
                for r in all.iter().take(usize::from(self.max_spatial) + 1) {
                    w.bits(16, u32::from(r.width.max(1)) - 1)?;
                    w.bits(16, u32::from(r.height.max(1)) - 1)?;
                }
            }
            None => w.bit(false)?,
        }
        Ok(())
    }
}

/// Bit 0 of every 2-bit pair of `x`, packed into 32 bits.
#[inline]
fn compress_pairs(x: u64) -> u32 {
    let mut x = x & 0x5555_5555_5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333_3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff_00ff_00ff;
    x = (x | (x >> 8)) & 0x0000_ffff_0000_ffff;
    x = (x | (x >> 16)) & 0x0000_0000_ffff_ffff;
    x as u32
}

/// `(1 << n) - 1` for `n <= 32`.
#[inline]
pub fn mask_of(n: usize) -> u32 {
    if n >= 32 { u32::MAX } else { (1u32 << n) - 1 }
}

/// The mandatory fields, readable without any structure.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mandatory {
    pub start_of_frame: bool,
    pub end_of_frame: bool,
    pub template_id: u8,
    pub frame_number: u16,
}

/// Reads the mandatory fields only.
#[inline]
pub fn parse_mandatory(buf: &[u8]) -> Result<Mandatory, DdError> {
    let b = buf.get(..MANDATORY_LEN).ok_or(DdError::Truncated)?;
    Ok(Mandatory {
        start_of_frame: b[0] & 0x80 != 0,
        end_of_frame: b[0] & 0x40 != 0,
        template_id: b[0] & 0x3f,
        frame_number: u16::from_be_bytes([b[1], b[2]]),
    })
}

/// Rewrites a descriptor in place (a retransmission of a packet forwarded with these values):
/// the frame number, the template id, and the `template_id_offset` of an attached structure moved
/// by the same amount as the template id (A.8.3: ids of one structure move together). Everything
/// else stays as sent, so the length does not change.
pub fn patch(buf: &mut [u8], template_id: u8, frame_number: u16) -> Result<(), DdError> {
    let m = parse_mandatory(buf)?;
    let delta = template_id.wrapping_sub(m.template_id) & 0x3f;
    buf[0] = (buf[0] & 0xc0) | (template_id & 0x3f);
    buf[1..3].copy_from_slice(&frame_number.to_be_bytes());
    // Extended fields: structure present flag, then four flags, then the 6-bit offset.
    if let Some(&flags) = buf.get(MANDATORY_LEN)
        && flags & 0x80 != 0
    {
        let next = *buf.get(MANDATORY_LEN + 1).ok_or(DdError::Truncated)?;
        let offset = ((flags & 0x07) << 3) | (next >> 5);
        let moved = offset.wrapping_add(delta) & 0x3f;
        buf[MANDATORY_LEN] = (flags & 0xf8) | (moved >> 3);
        buf[MANDATORY_LEN + 1] = (next & 0x1f) | ((moved & 0x07) << 5);
    }
    Ok(())
}

/// One packet's descriptor, resolved against a structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub start_of_frame: bool,
    pub end_of_frame: bool,
    pub template_id: u8,
    pub frame_number: u16,
    /// The packet carried a template dependency structure (the first packet of a keyframe).
    pub structure_attached: bool,
    /// `active_decode_targets_bitmask`, when the packet carried one.
    pub active_decode_targets: Option<u32>,
    pub custom_dtis: bool,
    pub custom_fdiffs: bool,
    pub custom_chains: bool,
    /// The frame's layer, DTIs, diffs and chains (template plus custom fields).
    pub frame: FrameDeps,
}

impl Descriptor {
    /// All fields cleared.
    pub const EMPTY: Descriptor = Descriptor {
        start_of_frame: false,
        end_of_frame: false,
        template_id: 0,
        frame_number: 0,
        structure_attached: false,
        active_decode_targets: None,
        custom_dtis: false,
        custom_fdiffs: false,
        custom_chains: false,
        frame: FrameDeps::EMPTY,
    };

    /// Bit `i` set for every decode target `i` the frame is part of.
    pub fn decode_targets(&self, structure: &Structure) -> u32 {
        self.frame
            .dtis
            .present(usize::from(structure.decode_target_count))
    }
}

/// What [`parse`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Resolved against the structure passed in.
    Frame(Descriptor),
    /// The packet carries a structure, now in the scratch structure, and was resolved against it.
    WithStructure(Descriptor),
}

/// Parses a descriptor: against `current` unless it carries its own structure, which is read into
/// `scratch` (the caller then makes it current). Everything is validated before returning.
pub fn parse(
    buf: &[u8],
    current: Option<&Structure>,
    scratch: &mut Structure,
) -> Result<Parsed, DdError> {
    let mut d = Descriptor::EMPTY;
    Ok(if parse_into(buf, current, scratch, &mut d)? {
        Parsed::WithStructure(d)
    } else {
        Parsed::Frame(d)
    })
}

/// [`parse`] into `out` (no copies of the result on the per-packet path); returns whether the
/// packet carried a structure. On error `out` is unspecified.
#[inline]
pub fn parse_into(
    buf: &[u8],
    current: Option<&Structure>,
    scratch: &mut Structure,
    d: &mut Descriptor,
) -> Result<bool, DdError> {
    let m = parse_mandatory(buf)?;
    d.start_of_frame = m.start_of_frame;
    d.end_of_frame = m.end_of_frame;
    d.template_id = m.template_id;
    d.frame_number = m.frame_number;
    d.structure_attached = false;
    d.active_decode_targets = None;
    d.custom_dtis = false;
    d.custom_fdiffs = false;
    d.custom_chains = false;
    if buf.len() == MANDATORY_LEN {
        let s = current.ok_or(DdError::NoStructure)?;
        d.frame = *s.template(m.template_id)?;
        return Ok(false);
    }
    let mut r = BitReader::new(buf);
    r.bits(24)?;
    let has_structure = r.bit()?;
    let has_active = r.bit()?;
    d.custom_dtis = r.bit()?;
    d.custom_fdiffs = r.bit()?;
    d.custom_chains = r.bit()?;
    let s: &Structure = if has_structure {
        if !m.start_of_frame {
            return Err(DdError::StructureNotAtFrameStart);
        }
        scratch.read(&mut r)?;
        d.structure_attached = true;
        scratch
    } else {
        current.ok_or(DdError::NoStructure)?
    };
    let dt_cnt = usize::from(s.decode_target_count);
    if has_active {
        d.active_decode_targets = Some(r.bits(dt_cnt as u32)?);
    } else if has_structure {
        d.active_decode_targets = Some(mask_of(dt_cnt));
    }
    d.frame = *s.template(m.template_id)?;
    if d.custom_dtis {
        let mut dtis = Dtis(0);
        for dt in 0..dt_cnt {
            dtis = dtis.with(dt, Dti::from_bits(r.bits(2)?));
        }
        d.frame.dtis = dtis;
    }
    if d.custom_fdiffs {
        let mut n = 0usize;
        loop {
            let size = r.bits(2)?;
            if size == 0 {
                break;
            }
            if n >= MAX_FDIFFS {
                return Err(DdError::TooManyFrameDiffs);
            }
            d.frame.fdiffs[n] = (r.bits(4 * size)? + 1) as u16;
            n += 1;
        }
        d.frame.fdiff_count = n as u8;
    }
    if d.custom_chains {
        for c in 0..usize::from(s.chain_count) {
            d.frame.chain_fdiffs[c] = r.bits(8)? as u8;
        }
    }
    // The rest is zero padding (ignored, as the specification asks of receivers).
    Ok(has_structure)
}

/// What to write: the mandatory fields and which optional parts to include.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub start_of_frame: bool,
    pub end_of_frame: bool,
    pub template_id: u8,
    pub frame_number: u16,
    /// The structure the template id refers to (needed for anything beyond the mandatory fields).
    pub structure: Option<&'a Structure>,
    /// Attach `structure`, with its `template_id_offset` replaced by this.
    pub attach_structure: Option<u8>,
    pub active_decode_targets: Option<u32>,
    /// Frame definition fields to write explicitly (each `None` = as the template says).
    pub custom_dtis: Option<Dtis>,
    pub custom_fdiffs: Option<&'a [u16]>,
    pub custom_chains: Option<&'a [u8]>,
}

impl<'a> Fields<'a> {
    /// The mandatory fields only.
    pub fn mandatory(sof: bool, eof: bool, template_id: u8, frame_number: u16) -> Self {
        Fields {
            start_of_frame: sof,
            end_of_frame: eof,
            template_id,
            frame_number,
            structure: None,
            attach_structure: None,
            active_decode_targets: None,
            custom_dtis: None,
            custom_fdiffs: None,
            custom_chains: None,
        }
    }
}

/// Encodes a descriptor into `out`, returning its length. The active decode target mask is left
/// out when a structure is attached and the mask is "all" (the structure implies it).
pub fn write(f: &Fields<'_>, out: &mut [u8]) -> Result<usize, DdError> {
    let active = match (f.active_decode_targets, f.attach_structure, f.structure) {
        (Some(m), Some(_), Some(s)) if m == s.all_decode_targets() => None,
        (a, _, _) => a,
    };
    let extended = f.attach_structure.is_some()
        || active.is_some()
        || f.custom_dtis.is_some()
        || f.custom_fdiffs.is_some()
        || f.custom_chains.is_some();
    if !extended {
        let b = out
            .get_mut(..MANDATORY_LEN)
            .ok_or(DdError::OutputTooSmall)?;
        b[0] = u8::from(f.start_of_frame) << 7
            | u8::from(f.end_of_frame) << 6
            | (f.template_id & 0x3f);
        b[1..3].copy_from_slice(&f.frame_number.to_be_bytes());
        return Ok(MANDATORY_LEN);
    }
    let s = f.structure.ok_or(DdError::NoStructure)?;
    if f.attach_structure.is_some() && !f.start_of_frame {
        return Err(DdError::StructureNotAtFrameStart);
    }
    let limit = out.len().min(MAX_LEN);
    let mut w = BitWriter::new(&mut out[..limit]);
    w.bit(f.start_of_frame)?;
    w.bit(f.end_of_frame)?;
    w.bits(6, u32::from(f.template_id & 0x3f))?;
    w.bits(16, u32::from(f.frame_number))?;
    w.bit(f.attach_structure.is_some())?;
    w.bit(active.is_some())?;
    w.bit(f.custom_dtis.is_some())?;
    w.bit(f.custom_fdiffs.is_some())?;
    w.bit(f.custom_chains.is_some())?;
    if let Some(offset) = f.attach_structure {
        s.write(&mut w, offset)?;
    }
    let dt_cnt = usize::from(s.decode_target_count);
    if let Some(m) = active {
        w.bits(dt_cnt as u32, m & mask_of(dt_cnt))?;
    }
    if let Some(d) = f.custom_dtis {
        for dt in 0..dt_cnt {
            w.bits(2, d.get(dt) as u32)?;
        }
    }
    if let Some(diffs) = f.custom_fdiffs {
        for &d in diffs {
            let v = u32::from(d.max(1)) - 1;
            if v >= 1 << 12 {
                return Err(DdError::BadIndex);
            }
            let size = if v < 1 << 4 {
                1
            } else if v < 1 << 8 {
                2
            } else {
                3
            };
            w.bits(2, size)?;
            w.bits(4 * size, v)?;
        }
        w.bits(2, 0)?;
    }
    if let Some(chains) = f.custom_chains {
        for c in 0..usize::from(s.chain_count) {
            w.bits(8, u32::from(chains.get(c).copied().unwrap_or(0)))?;
        }
    }
    // The flags alone make it longer than the mandatory 3 bytes, as "extended" requires.
    w.finish()
}

/// The length [`write()`] would produce for a descriptor with the active decode target mask (of a
/// structure with `dt_cnt` decode targets) and no other extended field: 3 bytes + the flags and
/// mask rounded up.
pub fn len_with_active_mask(dt_cnt: usize) -> usize {
    MANDATORY_LEN + (5 + dt_cnt).div_ceil(8)
}
