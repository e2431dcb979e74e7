//! Side by side with Janus (Debian `janus` 1.1.x, VideoRoom plugin): a local Janus on loopback
//! ([`server`]), its HTTP API ([`api`]), the SDP of a VideoRoom participant ([`sdp`]) and the
//! participant shell ([`participant`]) that drives the same synthetic media as toward our bridge.

pub mod api;
pub mod participant;
pub mod sdp;
pub mod server;

pub use participant::JanusRoom;
pub use server::{JanusOptions, JanusServer};
