//! The media plane shell: N media workers, each a UDP [`Port`](crate::transport::Port) (its own
//! `SO_REUSEPORT` socket on the one public port) whose handler owns a forwarding core
//! ([`Sfu`](crate::sfu::Sfu)) and routes between it and its endpoints' transports on the worker's
//! own thread — no channel hop and no lock per packet; a datagram the kernel gave to another
//! worker's socket reaches the owner in a per-batch hand-off (see `README.md` here for the packet
//! path stage by stage, the threading and the measurements).
//!
//! ```text
//!  XMPP (COLIBRI2) ──MediaCommand + oneshot──▶ MediaHandle ─ conference's worker (placement.rs)
//!  colibri-ws      ──MediaCommand────────────▶ MediaHandle ─ endpoint's worker (WsDirectory)
//!  STUN discovery, stop ─────────────────────▶ MediaHandle ─ every worker
//!      ┌──── media worker i (thread media-i, current-thread runtime) ──────┐
//!      │ Port (socket i; PortState: demux, its transports) ◀─ hand-offs ─▶ │ other workers
//!      │   └─ MediaWorker ─ Plane { Sfu, shell tables }                    │
//!      └────────────┬──────────────────────────────────────────────────────┘
//!                   ▼ every 500 ms: StatsSample into slot i (read and merged by /colibri/stats)
//! ```
//!
//! | file | job |
//! |---|---|
//! | `service.rs` | [`MediaPlane`]: bind, start and supervise the worker task (health `udp`), STUN discovery, OS-seeded randomness |
//! | `handle.rs` | [`MediaHandle`]: commands into the workers, routed |
//! | `placement.rs` | which worker a conference lives on |
//! | `worker.rs` | [`MediaCommand`] and the worker (the port's handler: events, commands, timers) |
//! | `plane.rs` | [`Plane`]: the sans-IO glue between transports and the sfu, the shell's per-endpoint and per-conference tables |
//! | `ws.rs` | colibri-ws attach (password check), messages, close |
//! | `ws_link.rs` | colibri-ws connection types shared with the WebSocket server: [`WsDirectory`] (who may connect), [`WsConn`]/[`WsSocket`] (bounded output, close) |
//! | `publish.rs` | [`MediaStats`]: statistics export for `/colibri/stats` and `/metrics` |
//! | `settings.rs`, `env.rs` | [`MediaSettings`] from the configuration; [`MediaEnv`], the process-wide media facts |
//! | `candidates.rs` | which addresses are advertised; STUN binding query |

pub mod candidates;
pub mod env;
pub mod handle;
pub mod placement;
pub mod plane;
pub mod publish;
pub mod service;
pub mod settings;
pub mod worker;
pub mod ws;
pub mod ws_link;

pub use env::MediaEnv;
pub use handle::MediaHandle;
pub use plane::{Key, Plane, ShellConference, ShellEndpoint, Traffic};
pub use publish::{MediaStats, STATS_EXPORT_INTERVAL};
pub use service::{HEALTH_COMPONENT, MediaPlane};
pub use settings::MediaSettings;
pub use worker::MediaCommand;
pub use ws_link::{WsConn, WsDirectory, WsRefusal, WsSocket};
