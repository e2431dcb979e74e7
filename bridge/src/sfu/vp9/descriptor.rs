//! The VP9 RTP payload descriptor (RFC 9628 §4.2): parse, the in-place rewrite of PictureID and
//! TL0PICIDX, and a writer for test senders.
//!
//! ```text
//!  I|P|L|F|B|E|V|Z          required   I: PictureID present, P: inter-picture predicted,
//!  M|PictureID(7)           if I         L: layer indices present, F: flexible mode,
//!  PictureID(8)             if I and M   B/E: begins/ends a layer frame, V: SS present,
//!  TID(3)|U|SID(3)|D        if L         Z: not a reference for upper spatial layers
//!  TL0PICIDX                if L and !F  U: switching up point, D: inter-layer dependency
//!  P_DIFF(7)|N              if P and F, up to 3 times (N: another follows)
//!  SS                       if V:  N_S(3)|Y|G|-|-|-, [WIDTH(16) HEIGHT(16)] × (N_S+1) if Y,
//!                                  [N_G(8), N_G × (TID(3)|U|R(2)|-|-, R × P_DIFF(8))] if G
//! ```
//! [`parse`] validates everything up to the end of the descriptor and that a payload follows
//! (libwebrtc drops a VP9 packet without one), never panics and does not allocate; [`rewrite`]
//! checks the offsets against the payload before it writes a byte. Chromium 156 sends VP9
//! `L3T3_KEY` in flexible mode with 15-bit PictureIDs, the SS (with resolutions, no G) on the
//! keyframe's first packet, Z on every delta frame and D only on the keyframe's upper layers.

use thiserror::Error;

/// Spatial layers the descriptor can express (3-bit SID / N_S).
pub const MAX_SPATIAL_LAYERS: usize = 8;
/// Reference indices per frame in flexible mode.
pub const MAX_REFS: usize = 3;
/// GOF entries kept from an SS (more are validated, not kept).
pub const MAX_GOF: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Vp9Error {
    #[error("VP9 payload descriptor runs past the end of the payload")]
    Truncated,
    #[error("VP9 packet without payload after its descriptor")]
    Empty,
    #[error("VP9 flexible-mode reference indices without a PictureID")]
    RefsWithoutPictureId,
    #[error("VP9 descriptor with more than 3 reference indices")]
    TooManyRefs,
    #[error(
        "VP9 packet without PictureID or with a spatial layer above 3: not projectable per layer"
    )]
    NotProjectable,
    #[error("VP9 payload descriptor longer than 255 bytes")]
    TooLong,
    #[error("VP9 descriptor does not match the payload being rewritten")]
    Mismatch,
}

/// What the forwarding path needs from one VP9 packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vp9Header {
    /// P: the frame refers to earlier pictures.
    pub inter_picture: bool,
    /// F: flexible mode (reference indices in every packet, no TL0PICIDX).
    pub flexible: bool,
    /// B: first packet of a layer frame.
    pub begin: bool,
    /// E: last packet of a layer frame.
    pub end: bool,
    /// Z: not used as a reference by the upper spatial layers of this picture.
    pub not_ref_for_upper: bool,
    pub picture_id: Option<u16>,
    pub picture_id_15: bool,
    /// L: layer indices present.
    pub has_layers: bool,
    pub tid: u8,
    /// U: switching up point (no earlier frame of this or a higher temporal layer is referred to).
    pub switching_up: bool,
    pub sid: u8,
    /// D: refers to the lower spatial layer of the same picture.
    pub inter_layer: bool,
    pub tl0picidx: Option<u8>,
    pub ref_count: u8,
    /// P_DIFF: `picture_id - p_diff` is a referred picture (same spatial layer).
    pub pdiffs: [u8; MAX_REFS],
    /// Where the SS starts (valid if `ss_len > 0`).
    pub ss_offset: u8,
    pub ss_len: u8,
    pub picture_id_offset: u8,
    pub tl0_offset: u8,
    /// The VP9 payload starts here.
    pub descriptor_len: u8,
}

impl Vp9Header {
    /// The first packet of a keyframe: an intra base-layer frame (what libwebrtc's receiver
    /// calls a keyframe: neither P nor D).
    pub fn starts_keyframe(&self) -> bool {
        self.begin && !self.inter_picture && !self.inter_layer && self.sid == 0
    }

    /// A frame of a keyframe picture (intra or inter-layer only): no earlier picture needed.
    pub fn intra_picture(&self) -> bool {
        !self.inter_picture
    }

    pub fn has_ss(&self) -> bool {
        self.ss_len > 0
    }

    pub fn refs(&self) -> &[u8] {
        &self.pdiffs[..usize::from(self.ref_count)]
    }

    /// PictureID modulus mask.
    pub fn picture_id_mask(&self) -> u16 {
        if self.picture_id_15 { 0x7fff } else { 0x7f }
    }
}

/// One entry of the SS's picture group description.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GofEntry {
    pub tid: u8,
    pub switching_up: bool,
    pub ref_count: u8,
    pub pdiffs: [u8; MAX_REFS],
}

/// The scalability structure (SS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScalabilityStructure {
    pub spatial_layers: u8,
    /// `(width, height)` per spatial layer, when Y was set.
    pub resolutions: Option<[(u16, u16); MAX_SPATIAL_LAYERS]>,
    /// N_G, when G was set.
    pub gof_len: Option<u8>,
    /// The first [`MAX_GOF`] entries.
    pub gof: [GofEntry; MAX_GOF],
}

impl ScalabilityStructure {
    /// Height of spatial layer `sid`, if the SS has resolutions.
    pub fn height(&self, sid: u8) -> Option<u16> {
        self.resolutions
            .and_then(|r| r.get(usize::from(sid)).map(|x| x.1))
            .filter(|_| sid < self.spatial_layers)
    }
}

#[inline]
fn byte(p: &[u8], at: usize) -> Result<u8, Vp9Error> {
    p.get(at).copied().ok_or(Vp9Error::Truncated)
}

/// Parses the payload descriptor of an RTP payload (without padding).
pub fn parse(p: &[u8]) -> Result<Vp9Header, Vp9Error> {
    let b0 = byte(p, 0)?;
    let mut h = Vp9Header {
        inter_picture: b0 & 0x40 != 0,
        flexible: b0 & 0x10 != 0,
        begin: b0 & 0x08 != 0,
        end: b0 & 0x04 != 0,
        not_ref_for_upper: b0 & 0x01 != 0,
        has_layers: b0 & 0x20 != 0,
        ..Vp9Header::default()
    };
    let mut off = 1usize;
    if b0 & 0x80 != 0 {
        let p0 = byte(p, off)?;
        h.picture_id_offset = off as u8;
        if p0 & 0x80 != 0 {
            let p1 = byte(p, off + 1)?;
            h.picture_id = Some((u16::from(p0 & 0x7f) << 8) | u16::from(p1));
            h.picture_id_15 = true;
            off += 2;
        } else {
            h.picture_id = Some(u16::from(p0));
            off += 1;
        }
    }
    if h.has_layers {
        let l = byte(p, off)?;
        h.tid = l >> 5;
        h.switching_up = l & 0x10 != 0;
        h.sid = (l >> 1) & 0x07;
        h.inter_layer = l & 0x01 != 0;
        off += 1;
        if !h.flexible {
            h.tl0picidx = Some(byte(p, off)?);
            h.tl0_offset = off as u8;
            off += 1;
        }
    }
    if h.inter_picture && h.flexible {
        if h.picture_id.is_none() {
            return Err(Vp9Error::RefsWithoutPictureId);
        }
        loop {
            let r = byte(p, off)?;
            off += 1;
            if usize::from(h.ref_count) == MAX_REFS {
                return Err(Vp9Error::TooManyRefs);
            }
            h.pdiffs[usize::from(h.ref_count)] = r >> 1;
            h.ref_count += 1;
            if r & 1 == 0 {
                break;
            }
        }
    }
    let mut ss_start = None;
    if b0 & 0x02 != 0 {
        ss_start = Some(off);
        off = ss_end(p, off)?;
    }
    if off > usize::from(u8::MAX) {
        // Offsets are kept in a byte; no browser sends such a descriptor.
        return Err(Vp9Error::TooLong);
    }
    if let Some(start) = ss_start {
        h.ss_offset = start as u8;
        h.ss_len = (off - start) as u8;
    }
    if off >= p.len() {
        return Err(Vp9Error::Empty);
    }
    h.descriptor_len = off as u8;
    Ok(h)
}

/// Validates an SS at `off`; returns where it ends.
fn ss_end(p: &[u8], mut off: usize) -> Result<usize, Vp9Error> {
    let v = byte(p, off)?;
    off += 1;
    let n_s = usize::from(v >> 5) + 1;
    if v & 0x10 != 0 {
        off += 4 * n_s;
        if off > p.len() {
            return Err(Vp9Error::Truncated);
        }
    }
    if v & 0x08 != 0 {
        let n_g = byte(p, off)?;
        off += 1;
        for _ in 0..n_g {
            let e = byte(p, off)?;
            off += 1 + usize::from((e >> 2) & 3);
        }
        if off > p.len() {
            return Err(Vp9Error::Truncated);
        }
    }
    Ok(off)
}

/// Reads the SS of a packet `h` was parsed from.
pub fn parse_ss(p: &[u8], h: &Vp9Header) -> Result<Option<ScalabilityStructure>, Vp9Error> {
    if !h.has_ss() {
        return Ok(None);
    }
    let mut off = usize::from(h.ss_offset);
    let v = byte(p, off)?;
    off += 1;
    let mut ss = ScalabilityStructure {
        spatial_layers: (v >> 5) + 1,
        ..ScalabilityStructure::default()
    };
    if v & 0x10 != 0 {
        let mut r = [(0u16, 0u16); MAX_SPATIAL_LAYERS];
        for x in r.iter_mut().take(usize::from(ss.spatial_layers)) {
            let b = p.get(off..off + 4).ok_or(Vp9Error::Truncated)?;
            *x = (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            );
            off += 4;
        }
        ss.resolutions = Some(r);
    }
    if v & 0x08 != 0 {
        let n_g = byte(p, off)?;
        off += 1;
        ss.gof_len = Some(n_g);
        for i in 0..usize::from(n_g) {
            let e = byte(p, off)?;
            off += 1;
            let mut g = GofEntry {
                tid: e >> 5,
                switching_up: e & 0x10 != 0,
                ref_count: (e >> 2) & 3,
                ..GofEntry::default()
            };
            for k in 0..usize::from(g.ref_count) {
                g.pdiffs[k] = byte(p, off)?;
                off += 1;
            }
            if i < MAX_GOF {
                ss.gof[i] = g;
            }
        }
    }
    Ok(Some(ss))
}

/// Writes PictureID and TL0PICIDX into a payload `h` was parsed from (or a copy of it), keeping the
/// sender's field widths (a 7-bit PictureID gets `picture_id & 0x7f`). Fields the packet does not
/// carry are left alone. Checks every offset first: on error nothing was written.
pub fn rewrite(
    payload: &mut [u8],
    h: &Vp9Header,
    picture_id: u16,
    tl0picidx: u8,
) -> Result<(), Vp9Error> {
    let Some(&b0) = payload
        .get(..=usize::from(h.descriptor_len))
        .and_then(|p| p.first())
    else {
        return Err(Vp9Error::Mismatch);
    };
    if (b0 & 0x80 != 0) != h.picture_id.is_some()
        || (b0 & 0x20 != 0) != h.has_layers
        || (b0 & 0x10 != 0) != h.flexible
    {
        return Err(Vp9Error::Mismatch);
    }
    let pid_at = usize::from(h.picture_id_offset);
    let tl0_at = usize::from(h.tl0_offset);
    if h.picture_id.is_some() {
        let w = if h.picture_id_15 { 2 } else { 1 };
        if pid_at == 0 || pid_at + w > usize::from(h.descriptor_len) {
            return Err(Vp9Error::Mismatch);
        }
        let first = payload[pid_at];
        if (first & 0x80 != 0) != h.picture_id_15 {
            return Err(Vp9Error::Mismatch);
        }
    }
    if h.tl0picidx.is_some() && (tl0_at == 0 || tl0_at >= usize::from(h.descriptor_len)) {
        return Err(Vp9Error::Mismatch);
    }
    if h.picture_id.is_some() {
        if h.picture_id_15 {
            payload[pid_at] = 0x80 | ((picture_id >> 8) as u8 & 0x7f);
            payload[pid_at + 1] = picture_id as u8;
        } else {
            payload[pid_at] = picture_id as u8 & 0x7f;
        }
    }
    if h.tl0picidx.is_some() {
        payload[tl0_at] = tl0picidx;
    }
    Ok(())
}

/// A payload descriptor to write (test senders, simulations, benches).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Descriptor {
    pub inter_picture: bool,
    pub flexible: bool,
    pub begin: bool,
    pub end: bool,
    pub not_ref_for_upper: bool,
    /// `(PictureID, 15-bit form)`.
    pub picture_id: Option<(u16, bool)>,
    /// `(TID, U, SID, D)`.
    pub layers: Option<(u8, bool, u8, bool)>,
    /// Non-flexible mode only.
    pub tl0picidx: Option<u8>,
    /// Flexible mode with P only.
    pub pdiffs: &'static [u8],
    /// Spatial layer resolutions for an SS (`None`: no SS).
    pub ss: Option<&'static [(u16, u16)]>,
}

impl Descriptor {
    /// Appends the descriptor to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(
            if self.picture_id.is_some() { 0x80 } else { 0 }
                | if self.inter_picture { 0x40 } else { 0 }
                | if self.layers.is_some() { 0x20 } else { 0 }
                | if self.flexible { 0x10 } else { 0 }
                | if self.begin { 0x08 } else { 0 }
                | if self.end { 0x04 } else { 0 }
                | if self.ss.is_some() { 0x02 } else { 0 }
                | if self.not_ref_for_upper { 0x01 } else { 0 },
        );
        match self.picture_id {
            Some((p, true)) => {
                out.push(0x80 | ((p >> 8) as u8 & 0x7f));
                out.push(p as u8);
            }
            Some((p, false)) => out.push(p as u8 & 0x7f),
            None => {}
        }
        if let Some((tid, u, sid, d)) = self.layers {
            out.push((tid & 7) << 5 | u8::from(u) << 4 | (sid & 7) << 1 | u8::from(d));
            if !self.flexible {
                out.push(self.tl0picidx.unwrap_or(0));
            }
        }
        if self.inter_picture && self.flexible {
            let n = self.pdiffs.len().clamp(1, MAX_REFS);
            for i in 0..n {
                let d = self.pdiffs.get(i).copied().unwrap_or(1);
                out.push((d & 0x7f) << 1 | u8::from(i + 1 < n));
            }
        }
        if let Some(res) = self.ss {
            let n = res.len().clamp(1, MAX_SPATIAL_LAYERS);
            out.push(((n - 1) as u8) << 5 | if res.is_empty() { 0 } else { 0x10 });
            for (w, h) in res.iter().take(n) {
                out.extend_from_slice(&w.to_be_bytes());
                out.extend_from_slice(&h.to_be_bytes());
            }
        }
    }
}
