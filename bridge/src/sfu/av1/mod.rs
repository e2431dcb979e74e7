//! The Dependency Descriptor RTP header extension (AV1 RTP specification, appendix A) and the
//! forwarding built on it: [`descriptor`] (wire format: parse, write), [`source`] (per sender
//! stream: the structure, active decode targets, per-packet frame info), [`projection`] (per
//! receiver: which frames it gets for its layer target, and the rewrite that keeps its stream
//! continuous).
//!
//! The descriptor is codec-agnostic: Chromium sends it with AV1 and, when negotiated, with VP9 and
//! H264 too. Per packet the core calls [`DdSource::parse`] once (a malformed descriptor is a typed
//! [`DdError`]: drop and count), then, for each receiver, [`DdProjection::forward`] and, if the
//! packet goes out, [`DdRewrite::write_descriptor`] into the egress packet's extension.
//! `DdSource::forwarded_to` gives the decode targets whose receivers get the packet (per-decode-
//! target bitrates) and `DdSource::decode_targets` their layers and resolutions (the allocation).

mod bits;
pub mod descriptor;
pub mod source;

#[cfg(test)]
pub(crate) mod tests;

pub use descriptor::{DdError, Descriptor, Dti, Dtis, FrameDeps, Resolution, Structure, URI};
pub use source::{DdInfo, DdSource, DecodeTarget};
