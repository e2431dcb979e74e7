//! Which layer of a source a receiver gets: set by the allocation, read by every codec context.

use crate::sfu::layers::layer_index;

/// Highest temporal layer index; a target with it accepts every temporal layer.
pub const ALL_TEMPORAL: u8 = 7;

/// Which layer of a source a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing (not in last-N, maxHeight 0, not enough bandwidth, or not allocated yet).
    Suspended,
    /// Encoding `encoding` (0 = the first SIM SSRC), up to spatial layer `spatial` (SVC codecs;
    /// 0 for VP8 simulcast and H264) and temporal layer `temporal`.
    Layer {
        encoding: u8,
        spatial: u8,
        temporal: u8,
    },
}

impl Target {
    /// Every temporal layer of `encoding` (its base spatial layer).
    pub fn encoding(encoding: u8) -> Self {
        Target::layer(encoding, ALL_TEMPORAL)
    }

    /// Encoding `encoding` up to temporal layer `temporal` (no spatial layers).
    pub fn layer(encoding: u8, temporal: u8) -> Self {
        Target::Layer {
            encoding,
            spatial: 0,
            temporal,
        }
    }

    pub fn encoding_id(&self) -> Option<u8> {
        match self {
            Target::Layer { encoding, .. } => Some(*encoding),
            Target::Suspended => None,
        }
    }

    /// JVB layer index, -1 when suspended.
    pub fn index(&self) -> i32 {
        match *self {
            Target::Layer {
                encoding,
                spatial,
                temporal,
            } => i32::from(layer_index(encoding, temporal.min(7)) | (u16::from(spatial & 7) << 3)),
            Target::Suspended => -1,
        }
    }
}
