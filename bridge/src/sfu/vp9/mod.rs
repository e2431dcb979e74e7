//! VP9 (RFC 9628): [`descriptor`] (the payload descriptor: parse, the PictureID/TL0PICIDX rewrite,
//! a writer), [`source`] (per sender stream: the scalability structure and PictureIDs in decode
//! order). The per-receiver SVC and simulcast layer selection and rewrite is `Vp9Projection` in
//! `sfu/projection/vp9.rs`.
//!
//! Per packet the core calls [`Vp9Source::parse`] once (a malformed descriptor is a typed
//! [`Vp9Error`]: drop and count), then, for each receiver, `Vp9Projection::forward` and, if the
//! packet goes out, [`descriptor::rewrite`] on the egress copy of the payload. A VP9 stream that also
//! carries a Dependency Descriptor can use `super::av1` instead; forwarded through this module its
//! Dependency Descriptor must be stripped (the receiver would follow it, as JVB strips it).

pub mod descriptor;
pub mod source;

#[cfg(test)]
pub(crate) mod tests;

pub use descriptor::{ScalabilityStructure, Vp9Error, Vp9Header};
pub use source::{Vp9Info, Vp9Source};
