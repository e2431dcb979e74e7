//! The Dependency Descriptor RTP header extension (AV1 RTP specification, appendix A):
//! [`descriptor`] (wire format: parse, write, patch), [`source`] (per sender stream: the
//! structure, active decode targets, per-packet frame info). The per-receiver forwarding built on
//! it (which frames a receiver gets for its layer target, and the rewrite that keeps its stream
//! continuous) is `DdProjection` in `sfu/projection/av1.rs`.
//!
//! The descriptor is codec-agnostic: Chromium sends it with AV1 and, when negotiated, with VP9 and
//! H264 too (the packet path reads it for AV1). Per packet the core calls [`DdSource::parse`] once
//! (a malformed descriptor is a typed [`DdError`]: drop and count), then, for each receiver,
//! `DdProjection::forward` and, if the packet goes out, [`DdInfo::write_rewritten`] into the egress
//! packet's extension.
//! `DdSource::forwarded_to` gives the decode targets whose receivers get the packet (per-decode-
//! target bitrates) and `DdSource::decode_targets` their layers and resolutions (the allocation).

mod bits;
pub mod descriptor;
mod error;
pub mod source;

#[cfg(test)]
pub(crate) mod tests;

pub use descriptor::{DdError, Descriptor, Dti, Dtis, FrameDeps, Resolution, Structure, URI};
pub use source::{DdInfo, DdSource, DecodeTarget};
