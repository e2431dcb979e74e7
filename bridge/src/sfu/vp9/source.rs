//! One VP9 RTP stream's state, kept once per sender stream: the latest scalability structure (how
//! many spatial layers, their resolutions) and the PictureID unwrapped, so that every receiver's
//! projection gets layer frames in one decode-order index.

use super::descriptor::{self, ScalabilityStructure, Vp9Error, Vp9Header};
use crate::sfu::frames::Unwrapper;

/// Spatial layers a picture can have in the projection's frame index (WebRTC's scalability modes
/// go up to 3; the descriptor could say 8).
pub const INDEX_LAYERS: u64 = 4;

/// A packet's descriptor as the projections need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp9Info {
    pub header: Vp9Header,
    /// The PictureID extended to 64 bits.
    pub picture_index: u64,
    /// Decode order of layer frames: `picture_index × 4 + SID`.
    pub frame_index: u64,
}

impl Vp9Info {
    /// The frame index of spatial layer `sid` of the picture `pdiff` pictures back.
    pub fn frame_of(&self, pdiff: u64, sid: u8) -> Option<u64> {
        let pic = self.picture_index.checked_sub(pdiff)?;
        Some(pic * INDEX_LAYERS + u64::from(sid))
    }
}

/// A sender stream's VP9 state.
#[derive(Debug, Clone, Default)]
pub struct Vp9Source {
    ss: Option<ScalabilityStructure>,
    pictures: Unwrapper,
}

impl Vp9Source {
    pub fn new() -> Self {
        Vp9Source::default()
    }

    /// Parses one packet's payload descriptor (payload without padding). Only packets with a
    /// PictureID and a spatial layer below 4 can be projected per layer; others are an error here
    /// (`NotProjectable`: the core forwards them with its generic keyframe-switching context).
    pub fn parse(&mut self, payload: &[u8]) -> Result<Vp9Info, Vp9Error> {
        let header = descriptor::parse(payload)?;
        let Some(pid) = header.picture_id else {
            return Err(Vp9Error::NotProjectable);
        };
        if u64::from(header.sid) >= INDEX_LAYERS {
            return Err(Vp9Error::NotProjectable);
        }
        if header.has_ss() {
            self.ss = descriptor::parse_ss(payload, &header)?;
        }
        let bits = if header.picture_id_15 { 15 } else { 7 };
        let picture_index = self.pictures.unwrap(u32::from(pid), bits);
        Ok(Vp9Info {
            header,
            picture_index,
            frame_index: picture_index * INDEX_LAYERS + u64::from(header.sid),
        })
    }

    /// The latest scalability structure.
    pub fn scalability(&self) -> Option<&ScalabilityStructure> {
        self.ss.as_ref()
    }

    /// Spatial layers the sender announced (1 without an SS).
    pub fn spatial_layers(&self) -> u8 {
        self.ss.map_or(1, |s| s.spatial_layers.max(1))
    }
}
