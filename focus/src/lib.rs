//! The conference focus: a Jicofo replacement that unmodified lib-jitsi-meet clients use through Prosody.
//!
//! [`core`] is the sans-IO conference logic (fed `(now, input)`, returns outputs); the rest is the thin
//! async shell around it: configuration ([`config`]), XMPP sessions and the event loop ([`shell`]), the
//! REST API on 8888 ([`api`], [`metrics`]).

pub mod api;
pub mod conference_http;
pub mod config;
pub mod core;
pub mod docker_env;
pub mod metrics;
pub mod shell;
