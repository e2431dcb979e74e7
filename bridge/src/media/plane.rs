//! [`Plane`]: the sans-IO glue between the port's transports and the forwarding core, run
//! synchronously inside the media worker (no sockets, no tokio here; unit-tested through
//! `colibri.rs`).
//!
//! Wiring, per event: transport `Connected`/`SelectedChanged` → sfu `Activity`; `DtlsConnected` →
//! sfu `Connected`; `Failed` → sfu `Failed` (the sfu expires the endpoint); `Rtp`/`Rtcp` →
//! `handle_rtp`/`handle_rtcp`; data channel open/message/closed → the sfu's channel inputs. Sfu
//! outputs ([`Out`]): `Rtp`/`Rtcp` → SRTP-protect and queue on the receiver's transport; `Text` →
//! its data channel (or colibri-ws); `EndpointExpired` → the transport is closed (DTLS
//! close_notify) and removed.
//!
//! State: the sfu (which owns every endpoint's and conference's identity), what the shell adds per
//! endpoint ([`ShellEndpoint`]: colibri-ws password and connection, transport milestones for the
//! statistics) and per conference ([`ShellConference`]: its colibri-ws id), keyed by the sfu's
//! handles — the same [`Key`] the port keys transports by — and the traffic counters.

use std::collections::HashMap;
use std::time::Instant;

use crate::random::TokenRng;
use crate::sfu::{
    self, ConferenceHandle, EndpointHandle, Output, Sfu, SfuConfig, Sink,
    TransportEvent as SfuEvent,
};
use crate::transport::{PortState, SendError, TransportEvent as NetEvent};

use super::env::MediaEnv;
use super::ws_link::{WsConn, WsDirectory};

/// The endpoint key of the port and of the shell's tables: the sfu's handle (Copy + Hash), so no
/// string lookups per packet.
pub type Key = EndpointHandle;

/// What the shell keeps per endpoint besides the sfu's record and the port's transport.
#[derive(Debug)]
pub struct ShellEndpoint {
    /// colibri-ws password (24 characters), stable for the endpoint's life.
    pub ws_password: String,
    /// Its colibri-ws conference id (the [`WsDirectory`] entry to remove when it goes).
    pub ws_conference: String,
    /// The one colibri-ws connection (a newer one replaces and closes it; dropping it closes it).
    pub ws: Option<WsConn>,
    /// Milestones for the ICE/DTLS failure statistics.
    pub ice_connected: bool,
    pub dtls_connected: bool,
}

/// What the shell keeps per conference besides the sfu's record.
#[derive(Debug)]
pub struct ShellConference {
    /// The id in colibri-ws URLs (JVB uses its internal conference id there, not the meeting id).
    pub ws_id: String,
}

/// Traffic and event counters of the media worker (plain integers: one task owns them).
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub ice_succeeded: u64,
    pub ice_failed: u64,
    pub dtls_failed: u64,
    /// In-place ICE restarts (JVB's `ice_restarts_*` counters, `IceTransport.kt`).
    pub ice_restarts: crate::stats::IceRestarts,
    pub conference_seconds: u64,
    pub ws_messages_in: u64,
    pub ws_messages_out: u64,
    /// Bridge-channel messages dropped because the receiver's backlog (SCTP unacknowledged
    /// bytes or colibri-ws queue) was full.
    pub channel_backlog_drops: u64,
    /// Inputs whose handling panicked (each removed its conference; `worker.rs`).
    pub handler_panics: u64,
}

/// A data-channel message that makes [`Plane::on_transport_event`] panic (unit tests of the
/// worker's fault isolation).
#[cfg(test)]
pub(crate) const TEST_PANIC: &str = "\u{0}test-panic";

/// Everything a media worker owns besides its port: the forwarding core and the shell's tables.
pub struct Plane {
    pub sfu: Sfu,
    pub env: MediaEnv,
    pub endpoints: HashMap<Key, ShellEndpoint>,
    pub conferences: HashMap<ConferenceHandle, ShellConference>,
    pub traffic: Traffic,
    /// colibri-ws credentials, shared with the WebSocket server.
    pub ws_directory: WsDirectory,
    /// Secrets handed to clients (colibri-ws ids and passwords); seeded by the shell.
    tokens: TokenRng,
    events: Vec<sfu::Event>,
    /// This plane's media worker (its index on the port; in the colibri-ws directory).
    pub worker: usize,
    /// Meeting ids of conferences that expired since the worker last looked (it tells the
    /// placement, `placement.rs`).
    pub expired_meetings: Vec<String>,
}

/// The sfu's sink while the worker runs a call into it: sends go straight to the receivers'
/// transports (encrypted into their transmit queues, flushed by the port after the callback).
pub(crate) struct Out<'a> {
    now: Instant,
    port: &'a mut PortState<Key>,
    traffic: &'a mut Traffic,
    events: &'a mut Vec<sfu::Event>,
    endpoints: &'a HashMap<Key, ShellEndpoint>,
}

impl Sink for Out<'_> {
    fn emit(&mut self, out: Output<'_>) {
        match out {
            Output::Rtp { to, packet } => {
                if self.port.send_rtp(&to, packet).is_ok() {
                    self.traffic.packets_out += 1;
                    self.traffic.bytes_out += packet.len() as u64;
                }
            }
            Output::Rtcp { to, packet } => {
                if self.port.send_rtcp(&to, packet).is_ok() {
                    self.traffic.packets_out += 1;
                    self.traffic.bytes_out += packet.len() as u64;
                }
            }
            Output::Text { to, text } => {
                // The SCTP data channel when open, else colibri-ws; either bounded.
                let sent = match self.port.endpoint_mut(&to) {
                    Some(ep) if ep.has_data_channel() => ep.send_data_message(self.now, text),
                    _ => Err(SendError::NoDataChannel),
                };
                match sent {
                    Ok(()) => {}
                    Err(SendError::Backlogged) => self.traffic.channel_backlog_drops += 1,
                    Err(_) => {
                        if let Some(ws) = self.endpoints.get(&to).and_then(|m| m.ws.as_ref()) {
                            match ws.send_text(text) {
                                Ok(()) => self.traffic.ws_messages_out += 1,
                                Err(_) => self.traffic.channel_backlog_drops += 1,
                            }
                        }
                    }
                }
            }
            Output::Event(e) => self.events.push(e),
        }
    }

    fn emit_rtp_buffer(&mut self, to: EndpointHandle, packet: &mut Vec<u8>) {
        let len = packet.len() as u64;
        if self.port.send_rtp_buffer(&to, packet).is_ok() {
            self.traffic.packets_out += 1;
            self.traffic.bytes_out += len;
        }
    }
}

impl Plane {
    /// A plane with a fresh core. `tokens` makes the secrets handed to clients (the shell seeds it
    /// from the OS; tests with a constant).
    pub fn new(sfu_config: SfuConfig, env: MediaEnv, tokens: TokenRng) -> Plane {
        Plane {
            sfu: Sfu::new(sfu_config),
            env,
            endpoints: HashMap::new(),
            conferences: HashMap::new(),
            traffic: Traffic::default(),
            ws_directory: WsDirectory::default(),
            tokens,
            events: Vec::new(),
            worker: 0,
            expired_meetings: Vec::new(),
        }
    }

    /// The shell's part of a conference the sfu just created.
    pub fn add_conference(&mut self, conf: ConferenceHandle) {
        let ws_id = self.tokens.token(16);
        self.conferences.insert(conf, ShellConference { ws_id });
    }

    /// The shell's part of an endpoint the sfu just created.
    pub fn add_endpoint(&mut self, key: Key) {
        let ws_password = self.tokens.token(24);
        let ws_conference = self
            .conferences
            .get(&key.conference())
            .map(|c| c.ws_id.clone())
            .unwrap_or_default();
        if let Some(id) = self.sfu.endpoint_id(key) {
            self.ws_directory
                .insert(&ws_conference, id, &ws_password, self.worker);
        }
        self.endpoints.insert(
            key,
            ShellEndpoint {
                ws_password,
                ws_conference,
                ws: None,
                ice_connected: false,
                dtls_connected: false,
            },
        );
    }

    /// `<base>/<conference ws id>/<endpoint id>?pwd=<password>` for an endpoint's transport, when
    /// colibri-ws is on.
    pub fn ws_url(&self, key: Key) -> Option<String> {
        let base = self.env.colibri_ws_base.as_ref()?;
        let c = self.conferences.get(&key.conference())?;
        let m = self.endpoints.get(&key)?;
        let id = self.sfu.endpoint_id(key)?;
        Some(format!("{base}/{}/{id}?pwd={}", c.ws_id, m.ws_password))
    }

    /// Runs `f` on the sfu with the media sink, then applies the events it produced (transport
    /// teardown of expired endpoints, conference bookkeeping).
    pub(crate) fn with_sfu<R>(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        f: impl FnOnce(&mut Sfu, &mut Out<'_>) -> R,
    ) -> R {
        let mut out = Out {
            now,
            port: &mut *port,
            traffic: &mut self.traffic,
            events: &mut self.events,
            endpoints: &self.endpoints,
        };
        let r = f(&mut self.sfu, &mut out);
        if !self.events.is_empty() {
            self.apply_events(now, port);
        }
        r
    }

    fn apply_events(&mut self, now: Instant, port: &mut PortState<Key>) {
        for e in std::mem::take(&mut self.events) {
            match e {
                sfu::Event::EndpointExpired {
                    endpoint,
                    meeting_id,
                    endpoint_id,
                    reason,
                } => {
                    port.remove_endpoint(now, &endpoint);
                    // Dropping its colibri-ws connection closes the socket (1001).
                    if let Some(m) = self.endpoints.remove(&endpoint) {
                        self.ws_directory.remove(&m.ws_conference, &endpoint_id);
                    }
                    tracing::info!(
                        meeting_id,
                        endpoint = endpoint_id,
                        ?reason,
                        "endpoint expired"
                    );
                }
                sfu::Event::ConferenceExpired {
                    conference,
                    meeting_id,
                    created_at,
                } => {
                    if self.conferences.remove(&conference).is_some() {
                        self.traffic.conference_seconds +=
                            now.saturating_duration_since(created_at).as_secs();
                    }
                    self.expired_meetings.push(meeting_id.clone());
                    tracing::info!(meeting_id, "conference expired");
                }
                sfu::Event::DominantSpeakerChanged { endpoint_id, .. } => {
                    tracing::debug!(endpoint = endpoint_id, "dominant speaker changed");
                }
                sfu::Event::ConnectivityChanged {
                    endpoint_id,
                    active,
                    ..
                } => {
                    tracing::debug!(endpoint = endpoint_id, active, "endpoint connectivity");
                }
            }
        }
    }

    /// The id of endpoint `key` for logs.
    fn id(&self, key: Key) -> &str {
        self.sfu.endpoint_id(key).unwrap_or("?")
    }

    /// A transport event of endpoint `key` (the per-packet path for `Rtp`/`Rtcp`).
    pub(crate) fn on_transport_event(
        &mut self,
        now: Instant,
        key: Key,
        event: NetEvent,
        port: &mut PortState<Key>,
    ) {
        #[cfg(test)]
        if matches!(&event, NetEvent::DataChannelMessage(t) if t == TEST_PANIC) {
            panic!("injected by a test");
        }
        match event {
            NetEvent::Rtp(p) => {
                self.traffic.packets_in += 1;
                self.traffic.bytes_in += p.len() as u64;
                self.with_sfu(now, port, |sfu, out| sfu.handle_rtp(now, key, &p, out));
            }
            NetEvent::Rtcp(p) => {
                self.traffic.packets_in += 1;
                self.traffic.bytes_in += p.len() as u64;
                self.with_sfu(now, port, |sfu, out| sfu.handle_rtcp(now, key, &p, out));
            }
            NetEvent::DataChannelMessage(text) => {
                self.with_sfu(now, port, |sfu, out| {
                    sfu.handle_channel_message(now, key, &text, out)
                });
            }
            NetEvent::Connected(addr) => {
                if let Some(m) = self.endpoints.get_mut(&key)
                    && !m.ice_connected
                {
                    m.ice_connected = true;
                    self.traffic.ice_succeeded += 1;
                    tracing::info!(endpoint = self.id(key), remote = %addr, "ICE connected");
                }
                self.sfu_event(now, key, SfuEvent::Activity, port);
            }
            NetEvent::SelectedChanged(addr) => {
                tracing::info!(endpoint = self.id(key), remote = %addr, "ICE selected another pair");
                self.sfu_event(now, key, SfuEvent::Activity, port);
            }
            NetEvent::IceRestarted { generation } => {
                self.traffic.ice_restarts.succeeded += 1;
                tracing::info!(
                    endpoint = self.id(key),
                    generation,
                    "ICE restart connected; the previous generation retires"
                );
                self.sfu_event(now, key, SfuEvent::Activity, port);
            }
            NetEvent::IceRestartFailed { generation, reason } => {
                self.traffic.ice_restarts.failed += 1;
                tracing::warn!(
                    endpoint = self.id(key),
                    generation,
                    reason,
                    "ICE restart abandoned; keeping the established pair"
                );
            }
            NetEvent::Disconnected => {
                tracing::info!(
                    endpoint = self.id(key),
                    "ICE consent missing (disconnected)"
                );
            }
            NetEvent::DtlsConnected(profile) => {
                if let Some(m) = self.endpoints.get_mut(&key) {
                    m.dtls_connected = true;
                    tracing::info!(
                        endpoint = self.id(key),
                        profile = profile.name(),
                        "DTLS connected"
                    );
                }
                self.sfu_event(now, key, SfuEvent::Connected, port);
            }
            NetEvent::Failed(reason) => {
                if let Some(m) = self.endpoints.get(&key) {
                    if !m.ice_connected {
                        self.traffic.ice_failed += 1;
                    } else if !m.dtls_connected {
                        self.traffic.dtls_failed += 1;
                    }
                    tracing::info!(endpoint = self.id(key), reason, "transport failed");
                }
                self.sfu_event(now, key, SfuEvent::Failed, port);
            }
            NetEvent::DataChannelOpen { label, protocol } => {
                tracing::debug!(label, protocol, "data channel open");
                self.sfu_event(now, key, SfuEvent::DataChannelOpen, port);
            }
            NetEvent::DataChannelClosed => {
                self.sfu_event(now, key, SfuEvent::DataChannelClosed, port);
            }
        }
    }

    pub(crate) fn sfu_event(
        &mut self,
        now: Instant,
        key: Key,
        ev: SfuEvent,
        port: &mut PortState<Key>,
    ) {
        self.with_sfu(now, port, |sfu, out| {
            sfu.handle_transport_event(now, key, ev, out)
        });
    }
}
