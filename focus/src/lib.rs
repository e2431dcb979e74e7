//! The conference focus: a Jicofo replacement that unmodified lib-jitsi-meet clients use through Prosody.
//!
//! [`core`] is the sans-IO conference logic (fed `(now, input)`, returns outputs); the rest is the thin
//! async shell around it: configuration, XMPP connections, REST.

pub mod config;
pub mod core;
