//! Media transport of the bridge on one UDP port: ICE, DTLS-SRTP, SCTP/DCEP.
//!
//! Sans-IO: [`EndpointTransport`] is one endpoint's state machine (ICE agent, DTLS server, SRTP
//! contexts, SCTP association with the bridge channel); [`Demux`] maps each datagram of the
//! shared port to an endpoint (RFC 7983 first byte, STUN USERNAME ufrag, then source address);
//! [`DropCounters`] counts what was dropped and why. [`shell::Port`] is the thin tokio shell that
//! owns the socket. See `README.md` in this directory for the design choices and measurements.
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
pub mod ice;
pub mod sctp;
pub mod shell;
pub mod signal;
pub mod srtp;
pub mod stun;

pub use counters::{DropCounters, DropReason};
pub use demux::{Demux, PacketKind, classify};
pub use dtls::{DtlsIdentity, Fingerprint, SrtpProfile};
pub use endpoint::{
    EndpointTransport, RemoteTransport, SendError, Transmit, TransportConfig, TransportEvent,
};
pub use ice::{IceConfig, IceCredentials, IceMode, IceState, RemoteCandidate};
pub use shell::{Port, PortHandler, PortState};
