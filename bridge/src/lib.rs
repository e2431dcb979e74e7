//! The bridge: a selective forwarding unit for Jitsi Meet.
//!
//! Layout (sans-IO cores, thin async shells):
//! - `transport` — per-endpoint ICE / DTLS / SRTP / SCTP state machines and the RFC 7983 demux of the
//!   one UDP port;
//! - `sfu` — conferences, endpoints, sources; routing, RTCP, layer selection (no I/O);
//! - `media` — the shell that runs both in one task on the UDP port (see `media/README.md`);
//! - `colibri` (COLIBRI2 handling), `xmpp` (brewery, IQs), `colibri_ws` (optional WebSocket
//!   bridge channel) and the REST control plane drive it.

// Control plane: config, lifecycle, stats/metrics, health, REST API (see each module's docs).
pub mod api;
pub mod colibri;
pub mod colibri_ws;
pub mod config;
pub mod control;
pub mod health;
pub mod lifecycle;
pub mod media;
pub mod random;
pub mod sfu;
pub mod stats;
pub mod timer;
pub mod transport;
pub mod xmpp;
