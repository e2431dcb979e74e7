//! The bridge: a selective forwarding unit for Jitsi Meet.
//!
//! Layout (sans-IO cores, thin async shells; the packet path stage by stage is in
//! `media/README.md`, the workspace in `ARCHITECTURE.md`):
//! - `transport` — per-endpoint ICE / DTLS / SRTP / SCTP state machines, the RFC 7983 demux of the
//!   one UDP port, and the thin tokio shell that owns the socket (`transport::shell`);
//! - `sfu` — the forwarding core: conferences as routers between each endpoint's uplink (as a
//!   sender) and downlink (as a receiver), per-source projections with one context per codec, layer
//!   selection, RTCP, bandwidth estimation (no I/O);
//! - `media` — the shell that runs both in one worker task on the UDP port (`Plane`: the glue and the
//!   shell's own per-endpoint state);
//! - `colibri` (COLIBRI2 on the plane), `xmpp` (brewery, IQs), `colibri_ws` (optional WebSocket
//!   bridge channel) and the REST control plane (`api`, `control`, `lifecycle`, `health`, `stats`,
//!   `config`) drive it;
//! - `timer` (one timer table per state machine) and `random` (seeded generators; the OS only at
//!   the shell edge) serve the cores.

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
#[cfg(test)]
mod test_alloc;
pub mod timer;
pub mod transport;
pub mod xmpp;
