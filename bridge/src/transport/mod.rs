//! Media transport on UDP: ICE, DTLS-SRTP, SCTP/DCEP — the bridge's side of every endpoint on
//! its shared port, and (same code, [`Role::Client`]) a participant's side toward the bridge,
//! which `loadtest` runs.
//!
//! Sans-IO: [`EndpointTransport`] is one endpoint's state machine (ICE agent, DTLS server or
//! client, SRTP contexts, SCTP association with the bridge channel), its randomness injected
//! ([`TransportRng`], seedable); [`Demux`] maps each datagram of the shared port to an endpoint
//! (RFC 7983 first byte, STUN USERNAME ufrag, then source address); [`DropCounters`] counts what
//! was dropped and why. [`shell::Port`] is the thin tokio shell that owns the socket. See
//! `README.md` in this directory for the design choices, what the rtc-* crates draw from the OS,
//! and measurements.
//!
//! Typical use (the bridge binary does this per COLIBRI2 endpoint):
//! 1. once per process: [`DtlsIdentity::generate`]; once per port: [`shell::Port::bind`];
//! 2. per endpoint: `EndpointTransport::new(IceCredentials::random(), &identity, cfg, counters)`,
//!    signal its ufrag/pwd, `identity.fingerprint()` (setup actpass) and the port's candidates,
//!    then `PortState::add_endpoint(id, ep)`;
//! 3. on the endpoint's transport update: `set_remote(RemoteTransport { ice, fingerprints,
//!    candidates })`;
//! 4. react to [`TransportEvent`]s (decrypted RTP/RTCP, data-channel messages, failures) and
//!    call `send_rtp` / `send_rtcp` / `send_data_message`.

pub mod counters;
pub mod demux;
pub mod dtls;
pub mod endpoint;
pub mod handoff;
pub mod ice;
pub mod replay;
pub mod restart;
pub mod rng;
pub mod role;
pub mod sctp;
pub mod shell;
pub mod signal;
pub mod srtp;
pub mod ssrc_filter;
pub mod stun;
#[cfg(test)]
mod tests;
pub mod tx_pool;
pub mod udp;

pub use counters::{DropCounters, DropReason};
pub use demux::{Demux, PacketKind, classify};
pub use dtls::{DtlsIdentity, Fingerprint, SrtpProfile};
pub use endpoint::{
    EndpointTransport, RemoteTransport, SendError, Transmit, TransportConfig, TransportEvent,
};
pub use handoff::{HandedOff, Routes, WorkerId};
pub use ice::{IceConfig, IceCredentials, IceMode, IceRole, IceState, RemoteCandidate};
pub use restart::{IceGenerations, IceRestart, RemoteFor, Retired};
pub use rng::TransportRng;
pub use role::Role;
pub use sctp::ChannelSpec;
pub use shell::{Handoff, Port, PortHandler, PortState, Routed};
