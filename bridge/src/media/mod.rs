//! The media plane shell: one UDP [`Port`](crate::transport::Port) whose handler, a media worker,
//! owns the forwarding core ([`Sfu`](crate::sfu::Sfu)) and routes between it and the endpoints'
//! transports in the socket's own task — no channel hop and no lock per packet (see `README.md`
//! here for the packet path stage by stage, the threading choice and how it scales).
//!
//! ```text
//!  XMPP (COLIBRI2) ──MediaCommand + oneshot──▶ ┌──────────── media worker task ─────────────┐
//!  colibri-ws      ──MediaCommand────────────▶ │ Port (socket; PortState: demux, transports) │
//!  STUN discovery  ──MediaCommand────────────▶ │   └─ MediaWorker ─ Plane { Sfu, shell tables }│
//!                                              └─────────┬───────────────────────────────────┘
//!                                 every 500 ms: StatsSample ▼ (Mutex, read by /colibri/stats)
//! ```
//!
//! | file | job |
//! |---|---|
//! | `service.rs` | [`MediaPlane`]: bind, start and supervise the worker task (health `udp`), STUN discovery, OS-seeded randomness |
//! | `handle.rs` | [`MediaHandle`]: commands into the worker |
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
