//! The media plane shell: one UDP [`Port`] whose handler owns the forwarding core ([`Sfu`]) and
//! routes between it and the endpoints' transports in the socket's own task — no channel hop and
//! no lock per packet (see `README.md` here for the threading choice and how it scales).
//!
//! ```text
//!  XMPP (COLIBRI2) ──MediaCommand + oneshot──▶ ┌──────────── media task ───────────────┐
//!  colibri-ws      ──MediaCommand────────────▶ │ Port (socket, demux, transports)       │
//!  STUN discovery  ──MediaCommand────────────▶ │   └─ MediaHandler ─ Plane { Sfu, metas } │
//!                                              └─────────┬──────────────────────────────┘
//!                                 every 500 ms: StatsSample ▼ (Mutex, read by /colibri/stats)
//! ```
//!
//! Wiring between the two sans-IO machines (per event, synchronously):
//! transport `Connected`/`SelectedChanged` → sfu `Activity`; `DtlsConnected` → sfu `Connected`;
//! `Failed` → sfu `Failed` (the sfu expires the endpoint); `Rtp`/`Rtcp` → `handle_rtp`/`handle_rtcp`;
//! data channel open/message/closed → the sfu's channel inputs. Sfu outputs: `Rtp`/`Rtcp` → SRTP
//! protect and queue on the receiver's transport; `Text` → its data channel (or colibri-ws);
//! `EndpointExpired` → the transport is closed (DTLS close_notify) and removed.

pub mod candidates;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};
use service::HostPort;
use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use signaling::ice_udp::Candidate;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::{self, Config};
use crate::health::{Health, HealthRegistry};
use crate::lifecycle::Admission;
use crate::sfu::{
    self, ConferenceHandle, EndpointHandle, Output, Sfu, SfuConfig, Sink, Stat,
    TransportEvent as SfuEvent,
};
use crate::stats::StatsSample;
use crate::transport::signal::{AdvertisedAddress, local_candidates};
use crate::transport::{
    DropCounters, DtlsIdentity, Port, PortHandler, PortState, SrtpProfile,
    TransportEvent as NetEvent,
};

/// The endpoint key of the port: the sfu's handle (Copy + Hash), so no string lookups per packet.
pub type Key = EndpointHandle;

/// The health component name of the UDP port.
pub const HEALTH_COMPONENT: &str = "udp";

/// How often the media task publishes its counters for `/colibri/stats` and `/metrics`.
pub const STATS_EXPORT_INTERVAL: Duration = Duration::from_millis(500);

/// What the media plane needs from the configuration.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    pub bind: SocketAddr,
    pub advertise_ips: Vec<config::AdvertisedAddress>,
    pub advertise_private_candidates: bool,
    /// Empty = STUN disabled.
    pub stun_servers: Vec<HostPort>,
    pub srtp_profiles: Vec<config::SrtpProfile>,
    pub endpoint_expire_timeout: Duration,
    /// `ws[s]://host[:port]/colibri-ws/<server-id>` when colibri-ws is enabled: each endpoint's
    /// transport then carries `<web-socket url="<base>/<conference-id>/<endpoint-id>?pwd=…"/>`.
    pub colibri_ws_base: Option<String>,
    /// Receive/send buffer to ask for (0 = kernel default).
    pub udp_buffer_size: u32,
}

impl MediaSettings {
    pub fn from_config(c: &Config) -> MediaSettings {
        MediaSettings {
            bind: SocketAddr::new(c.media.host, c.media.port),
            advertise_ips: c.media.advertise_ips.clone(),
            advertise_private_candidates: c.media.advertise_private_candidates,
            stun_servers: c.media.stun_servers.clone(),
            srtp_profiles: c.media.srtp_profiles.clone(),
            endpoint_expire_timeout: c.expiry.endpoint_timeout,
            colibri_ws_base: c.colibri_ws.url_base(&c.xmpp.muc_nickname),
            udp_buffer_size: c.media.udp_buffer_size,
        }
    }
}

fn srtp_profile(p: config::SrtpProfile) -> SrtpProfile {
    match p {
        config::SrtpProfile::AeadAes128Gcm => SrtpProfile::AeadAes128Gcm,
        config::SrtpProfile::Aes128CmHmacSha1_80 => SrtpProfile::Aes128CmHmacSha1_80,
    }
}

/// Random `[A-Za-z0-9]` text (colibri-ws passwords, conference ids).
pub fn random_token(len: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = vec![0u8; len];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        // The OS RNG is unavailable: mix the clock in rather than hand out a constant.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(37);
        }
    }
    bytes
        .iter()
        .map(|b| char::from(CHARS[usize::from(*b) % CHARS.len()]))
        .collect()
}

fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    let _ = SystemRandom::new().fill(&mut b);
    u64::from_le_bytes(b) ^ 0x9E37_79B9_7F4A_7C15
}

/// Process-wide media facts every endpoint shares.
pub struct MediaEnv {
    pub identity: DtlsIdentity,
    pub counters: Arc<DropCounters>,
    pub srtp_profiles: Vec<SrtpProfile>,
    /// The address the port is bound to (the real port when 0 was configured).
    pub bound: SocketAddr,
    pub interfaces: Vec<IpAddr>,
    pub advertised: Vec<AdvertisedAddress>,
    /// `advertised` as signalled candidates (recomputed when STUN adds a mapping).
    pub candidates: Vec<Candidate>,
    pub colibri_ws_base: Option<String>,
}

impl MediaEnv {
    /// An environment for `bound` with fresh credentials (unit tests and [`MediaPlane::start`]).
    pub fn new(settings: &MediaSettings, bound: SocketAddr) -> anyhow::Result<MediaEnv> {
        let interfaces = candidates::interface_addresses();
        let advertised = candidates::plan(
            bound,
            &settings.advertise_ips,
            settings.advertise_private_candidates,
            &interfaces,
        );
        Ok(MediaEnv {
            identity: DtlsIdentity::generate().context("generating the DTLS certificate")?,
            counters: Arc::new(DropCounters::new()),
            srtp_profiles: settings
                .srtp_profiles
                .iter()
                .copied()
                .map(srtp_profile)
                .collect(),
            bound,
            interfaces,
            candidates: local_candidates(&advertised),
            advertised,
            colibri_ws_base: settings.colibri_ws_base.clone(),
        })
    }

    fn add_stun_mapping(&mut self, public: IpAddr) {
        if candidates::add_stun_mapping(&mut self.advertised, self.bound, &self.interfaces, public)
        {
            self.candidates = local_candidates(&self.advertised);
            tracing::info!(candidates = ?self.advertised, "advertised candidates updated");
        }
    }
}

/// The colibri-ws connection of an endpoint: messages queued here are written to its socket.
pub type WsSender = mpsc::UnboundedSender<String>;

/// What the shell keeps per endpoint next to the sfu's and the transport's state.
#[derive(Debug)]
pub struct EndpointMeta {
    pub id: String,
    pub conference: ConferenceHandle,
    pub visitor: bool,
    /// colibri-ws password (24 characters), stable for the endpoint's life.
    pub ws_password: String,
    pub ws: Option<WsSender>,
    ice_connected: bool,
    dtls_connected: bool,
}

impl EndpointMeta {
    pub fn new(id: &str, conference: ConferenceHandle, visitor: bool) -> EndpointMeta {
        EndpointMeta {
            id: id.to_owned(),
            conference,
            visitor,
            ws_password: random_token(24),
            ws: None,
            ice_connected: false,
            dtls_connected: false,
        }
    }
}

/// What the shell keeps per conference.
#[derive(Debug)]
pub struct ConferenceMeta {
    pub meeting_id: String,
    /// The id in colibri-ws URLs (JVB uses its internal conference id there, not the meeting id).
    pub ws_id: String,
    pub created_at: Instant,
}

/// Traffic and event counters of the media task (plain integers: one task owns them).
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub ice_succeeded: u64,
    pub ice_failed: u64,
    pub dtls_failed: u64,
    pub conference_seconds: u64,
    pub ws_messages_in: u64,
    pub ws_messages_out: u64,
}

/// Everything the media task owns besides the port: the forwarding core and the shell's tables.
pub struct Plane {
    pub sfu: Sfu,
    pub env: MediaEnv,
    pub endpoints: HashMap<Key, EndpointMeta>,
    pub conferences: HashMap<ConferenceHandle, ConferenceMeta>,
    pub traffic: Traffic,
    events: Vec<sfu::Event>,
}

/// The sfu's sink while the media task runs a call into it: sends go straight to the receivers'
/// transports (encrypted into their transmit queues, flushed by the port after the callback).
pub(crate) struct Out<'a> {
    now: Instant,
    port: &'a mut PortState<Key>,
    traffic: &'a mut Traffic,
    events: &'a mut Vec<sfu::Event>,
    endpoints: &'a HashMap<Key, EndpointMeta>,
}

impl Sink for Out<'_> {
    fn emit(&mut self, out: Output<'_>) {
        match out {
            Output::Rtp { to, packet } => {
                if let Some(ep) = self.port.endpoint_mut(&to)
                    && ep.send_rtp(packet).is_ok()
                {
                    self.traffic.packets_out += 1;
                    self.traffic.bytes_out += packet.len() as u64;
                }
            }
            Output::Rtcp { to, packet } => {
                if let Some(ep) = self.port.endpoint_mut(&to)
                    && ep.send_rtcp(packet).is_ok()
                {
                    self.traffic.packets_out += 1;
                    self.traffic.bytes_out += packet.len() as u64;
                }
            }
            Output::Text { to, text } => {
                // The SCTP data channel when open, else colibri-ws.
                let sent = match self.port.endpoint_mut(&to) {
                    Some(ep) if ep.has_data_channel() => {
                        ep.send_data_message(self.now, text).is_ok()
                    }
                    _ => false,
                };
                if !sent
                    && let Some(ws) = self.endpoints.get(&to).and_then(|m| m.ws.as_ref())
                    && ws.send(text.to_owned()).is_ok()
                {
                    self.traffic.ws_messages_out += 1;
                }
            }
            Output::Event(e) => self.events.push(e),
        }
    }
}

impl Plane {
    pub fn new(sfu_config: SfuConfig, env: MediaEnv) -> Plane {
        Plane {
            sfu: Sfu::new(sfu_config),
            env,
            endpoints: HashMap::new(),
            conferences: HashMap::new(),
            traffic: Traffic::default(),
            events: Vec::new(),
        }
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
                    self.endpoints.remove(&endpoint);
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
                } => {
                    if let Some(c) = self.conferences.remove(&conference) {
                        self.traffic.conference_seconds +=
                            now.saturating_duration_since(c.created_at).as_secs();
                    }
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

    /// Endpoints per live conference (conferences without endpoints count as 0).
    pub fn conference_sizes(&self) -> Vec<u32> {
        let mut sizes: HashMap<ConferenceHandle, u32> = HashMap::new();
        for c in self.conferences.keys() {
            sizes.insert(*c, 0);
        }
        for m in self.endpoints.values() {
            *sizes.entry(m.conference).or_default() += 1;
        }
        sizes.into_values().collect()
    }

    /// The endpoints of `conference`.
    pub fn endpoint_count(&self, conference: ConferenceHandle) -> usize {
        self.endpoints
            .values()
            .filter(|m| m.conference == conference)
            .count()
    }

    /// The media part of a stats sample (transport drops and XMPP are added by the readers).
    pub fn export(&self) -> StatsSample {
        let c = self.sfu.counters();
        let t = &self.traffic;
        let sizes = self.conference_sizes();
        let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
        for (reason, n) in c.drops() {
            *dropped.entry(reason.as_str().to_owned()).or_default() += n;
        }
        let channel_in = c.get(Stat::ChannelMessagesReceived);
        let channel_out = c.get(Stat::ChannelMessagesSent);
        StatsSample {
            local_endpoints: self.endpoints.len() as u64,
            conference_sizes: sizes,
            endpoints_sending_audio: 0,
            endpoints_sending_video: self.sfu.stats().active_endpoints as u64,
            packets_received: t.packets_in,
            packets_sent: t.packets_out,
            bytes_received: t.bytes_in,
            bytes_sent: t.bytes_out,
            ice_succeeded: t.ice_succeeded,
            ice_failed: t.ice_failed,
            endpoints_dtls_failed: t.dtls_failed,
            conferences_created: c.get(Stat::ConferencesCreated),
            conferences_completed: c.get(Stat::ConferencesExpired),
            conference_seconds: t.conference_seconds,
            endpoints_created: c.get(Stat::EndpointsCreated),
            dominant_speaker_changes: c.get(Stat::DominantSpeakerChanges),
            data_channel_messages_received: channel_in.saturating_sub(t.ws_messages_in),
            data_channel_messages_sent: channel_out.saturating_sub(t.ws_messages_out),
            colibri_web_socket_messages_received: t.ws_messages_in,
            colibri_web_socket_messages_sent: t.ws_messages_out,
            dropped_packets: dropped,
            ..StatsSample::default()
        }
    }

    /// A transport event of endpoint `key` (the per-packet path for `Rtp`/`Rtcp`).
    pub(crate) fn on_transport_event(
        &mut self,
        now: Instant,
        key: Key,
        event: NetEvent,
        port: &mut PortState<Key>,
    ) {
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
                    tracing::info!(endpoint = m.id, remote = %addr, "ICE connected");
                }
                self.sfu_event(now, key, SfuEvent::Activity, port);
            }
            NetEvent::SelectedChanged(addr) => {
                if let Some(m) = self.endpoints.get(&key) {
                    tracing::info!(endpoint = m.id, remote = %addr, "ICE selected another pair");
                }
                self.sfu_event(now, key, SfuEvent::Activity, port);
            }
            NetEvent::Disconnected => {
                if let Some(m) = self.endpoints.get(&key) {
                    tracing::info!(endpoint = m.id, "ICE consent missing (disconnected)");
                }
            }
            NetEvent::DtlsConnected(profile) => {
                if let Some(m) = self.endpoints.get_mut(&key) {
                    m.dtls_connected = true;
                    tracing::info!(endpoint = m.id, profile = profile.name(), "DTLS connected");
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
                    tracing::info!(endpoint = m.id, reason, "transport failed");
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

    fn sfu_event(&mut self, now: Instant, key: Key, ev: SfuEvent, port: &mut PortState<Key>) {
        self.with_sfu(now, port, |sfu, out| {
            sfu.handle_transport_event(now, key, ev, out)
        });
    }

    /// A colibri-ws connection asks to attach to `(conference ws id, endpoint id)` with `password`.
    fn ws_attach(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        conference_id: &str,
        endpoint_id: &str,
        password: &str,
        sender: WsSender,
    ) -> Result<Key, WsRefusal> {
        let conf = self
            .conferences
            .iter()
            .find(|(_, c)| c.ws_id == conference_id)
            .map(|(h, _)| *h)
            .ok_or(WsRefusal::NotFound)?;
        let key = self
            .sfu
            .find_endpoint(conf, endpoint_id)
            .ok_or(WsRefusal::NotFound)?;
        let meta = self.endpoints.get_mut(&key).ok_or(WsRefusal::NotFound)?;
        if !constant_time_eq(meta.ws_password.as_bytes(), password.as_bytes()) {
            return Err(WsRefusal::BadPassword);
        }
        meta.ws = Some(sender);
        self.sfu_event(now, key, SfuEvent::DataChannelOpen, port);
        Ok(key)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a colibri-ws connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRefusal {
    /// Unknown conference or endpoint (HTTP 404).
    NotFound,
    /// Wrong `pwd` (HTTP 401).
    BadPassword,
}

/// Requests into the media task.
pub enum MediaCommand {
    /// A COLIBRI2 `conference-modify`; `admission` is the lifecycle's answer for new conferences.
    Colibri {
        request: Box<ConferenceModify>,
        admission: Admission,
        reply: oneshot::Sender<Result<ConferenceModified, Colibri2ErrorResponse>>,
    },
    /// STUN found our public address.
    StunMapping(IpAddr),
    /// colibri-ws: a client connects.
    WsAttach {
        conference_id: String,
        endpoint_id: String,
        password: String,
        sender: WsSender,
        reply: oneshot::Sender<Result<Key, WsRefusal>>,
    },
    /// colibri-ws: a text message from the client.
    WsMessage {
        key: Key,
        text: String,
    },
    /// colibri-ws: the client went away.
    WsClosed {
        key: Key,
        sender: WsSender,
    },
    Stop,
}

struct MediaHandler {
    plane: Plane,
    shared: Arc<MediaStats>,
    next_export: Instant,
}

impl PortHandler<Key> for MediaHandler {
    type Command = MediaCommand;

    fn on_event(&mut self, now: Instant, key: &Key, event: NetEvent, port: &mut PortState<Key>) {
        self.plane.on_transport_event(now, *key, event, port);
    }

    fn on_command(&mut self, now: Instant, cmd: MediaCommand, port: &mut PortState<Key>) -> bool {
        match cmd {
            MediaCommand::Colibri {
                request,
                admission,
                reply,
            } => {
                let r = crate::colibri::conference_modify(
                    &mut self.plane,
                    port,
                    now,
                    &request,
                    admission,
                );
                if let Err(e) = &r {
                    tracing::info!(meeting_id = request.meeting_id, condition = %e.condition,
                        reason = ?e.reason, text = ?e.text, "conference-modify refused");
                }
                let _ = reply.send(r);
                // Stats (endpoint count) change with COLIBRI2: publish at once.
                self.export(now);
            }
            MediaCommand::StunMapping(ip) => self.plane.env.add_stun_mapping(ip),
            MediaCommand::WsAttach {
                conference_id,
                endpoint_id,
                password,
                sender,
                reply,
            } => {
                let r = self.plane.ws_attach(
                    now,
                    port,
                    &conference_id,
                    &endpoint_id,
                    &password,
                    sender,
                );
                let _ = reply.send(r);
            }
            MediaCommand::WsMessage { key, text } => {
                if self.plane.endpoints.contains_key(&key) {
                    self.plane.traffic.ws_messages_in += 1;
                    self.plane.with_sfu(now, port, |sfu, out| {
                        sfu.handle_channel_message(now, key, &text, out)
                    });
                }
            }
            MediaCommand::WsClosed { key, sender } => {
                let ours = self
                    .plane
                    .endpoints
                    .get(&key)
                    .and_then(|m| m.ws.as_ref())
                    .is_some_and(|s| s.same_channel(&sender));
                if ours {
                    if let Some(m) = self.plane.endpoints.get_mut(&key) {
                        m.ws = None;
                    }
                    if !port.endpoint(&key).is_some_and(|e| e.has_data_channel()) {
                        self.plane
                            .sfu_event(now, key, SfuEvent::DataChannelClosed, port);
                    }
                }
            }
            MediaCommand::Stop => return false,
        }
        true
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.plane.sfu.poll_timeout() {
            Some(t) => t.min(self.next_export),
            None => self.next_export,
        })
    }

    fn on_timeout(&mut self, now: Instant, port: &mut PortState<Key>) {
        if self.plane.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.plane
                .with_sfu(now, port, |sfu, out| sfu.handle_timeout(now, out));
        }
        if now >= self.next_export {
            self.export(now);
        }
    }
}

impl MediaHandler {
    fn export(&mut self, now: Instant) {
        self.shared.publish(self.plane.export());
        self.next_export = now + STATS_EXPORT_INTERVAL;
    }
}

/// The media task's counters as last published, plus the transport's live drop counters.
pub struct MediaStats {
    counters: Arc<DropCounters>,
    latest: Mutex<StatsSample>,
}

impl MediaStats {
    fn new(counters: Arc<DropCounters>) -> MediaStats {
        MediaStats {
            counters,
            latest: Mutex::new(StatsSample::default()),
        }
    }

    fn publish(&self, sample: StatsSample) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = sample;
    }

    /// The latest sample with the transport's drop counters added.
    pub fn sample(&self) -> StatsSample {
        let mut s = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (reason, n) in self.counters.snapshot() {
            *s.dropped_packets.entry(reason.to_owned()).or_default() += n;
        }
        s
    }

    pub fn local_endpoints(&self) -> u64 {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .local_endpoints
    }
}

/// A cloneable handle for sending requests to the media task.
#[derive(Clone)]
pub struct MediaHandle {
    tx: mpsc::Sender<MediaCommand>,
}

impl MediaHandle {
    /// A handle whose requests all fail (the media port could not be bound).
    pub fn unavailable() -> MediaHandle {
        let (tx, _) = mpsc::channel(1);
        MediaHandle { tx }
    }

    /// Queues a COLIBRI2 request (in order: call this from the task that receives the IQs) and
    /// returns a future for its answer.
    pub async fn conference_modify(
        &self,
        request: ConferenceModify,
        admission: Admission,
    ) -> impl Future<Output = Result<ConferenceModified, Colibri2ErrorResponse>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(MediaCommand::Colibri {
                request: Box::new(request),
                admission,
                reply,
            })
            .await;
        async move {
            if sent.is_err() {
                return Err(media_unavailable());
            }
            rx.await.unwrap_or_else(|_| Err(media_unavailable()))
        }
    }

    /// Sends a command (colibri-ws plumbing); false when the media task is gone.
    pub async fn send(&self, cmd: MediaCommand) -> bool {
        self.tx.send(cmd).await.is_ok()
    }
}

fn media_unavailable() -> Colibri2ErrorResponse {
    Colibri2ErrorResponse::new(
        signaling::colibri2::Condition::InternalServerError,
        None,
        Some("media plane not running".into()),
    )
}

/// The running media plane.
pub struct MediaPlane {
    /// The bound UDP address (the real port when 0 was configured).
    pub local_addr: SocketAddr,
    /// What the answers advertise (at start; STUN may add one later).
    pub advertised: Vec<AdvertisedAddress>,
    handle: MediaHandle,
    stats: Arc<MediaStats>,
    supervisor: JoinHandle<()>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl MediaPlane {
    /// Binds the port, starts the media task (and, in the background, STUN discovery) and reports
    /// the `udp` health component. A bind failure is reported as failed health and returned.
    pub async fn start(
        settings: MediaSettings,
        sfu_config: SfuConfig,
        health: Arc<HealthRegistry>,
    ) -> anyhow::Result<MediaPlane> {
        let mut port: Port<Key> =
            match Port::bind(settings.bind, Arc::new(DropCounters::new())).await {
                Ok(p) => p,
                Err(e) => {
                    let msg = format!("cannot bind UDP {}: {e}", settings.bind);
                    health.report(HEALTH_COMPONENT, Health::Failed(msg.clone()));
                    anyhow::bail!(msg);
                }
            };
        let bound = port.local_addr().context("UDP local address")?;
        if settings.udp_buffer_size > 0 {
            match port.set_buffer_sizes(settings.udp_buffer_size) {
                Ok((receive, send)) => {
                    if receive < settings.udp_buffer_size as usize / 2 {
                        tracing::warn!(
                            asked = settings.udp_buffer_size,
                            granted = receive,
                            "the kernel capped the media socket's receive buffer: raise net.core.rmem_max (or grant CAP_NET_ADMIN) to avoid drops in bursts"
                        );
                    }
                    tracing::info!(receive, send, "media socket buffers");
                }
                Err(e) => tracing::warn!(error = %e, "cannot size the media socket buffers"),
            }
        }
        let mut env = MediaEnv::new(&settings, bound)?;
        // The port's demux counts into the same counters as the endpoints.
        env.counters = Arc::clone(port.state_mut().counters());
        if bound.ip().is_loopback() {
            // Bound to loopback: only loopback peers can be answered; drop (and count) the rest,
            // e.g. checks a local browser sends from its other interfaces.
            port.state_mut()
                .set_source_filter(Some(|a| a.ip().is_loopback()));
        }
        if env.advertised.is_empty() {
            tracing::warn!(
                "no candidates to advertise: set JVB_ADVERTISE_IPS (or enable private candidates)"
            );
        }
        tracing::info!(addr = %bound, candidates = ?env.advertised,
            fingerprint = %env.identity.fingerprint().value, "media port bound");
        let advertised = env.advertised.clone();
        let stats = Arc::new(MediaStats::new(Arc::clone(&env.counters)));
        let mut sfu_config = sfu_config;
        sfu_config.endpoint_expire_timeout = settings.endpoint_expire_timeout;
        sfu_config.seed = random_seed();
        let handler = MediaHandler {
            plane: Plane::new(sfu_config, env),
            shared: Arc::clone(&stats),
            next_export: Instant::now(),
        };
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let _ = port.run(handler, rx).await;
        });
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let supervisor = {
            let health = Arc::clone(&health);
            let stopping = Arc::clone(&stopping);
            tokio::spawn(async move {
                let result = task.await;
                if !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    let why = match result {
                        Ok(()) => "media task ended".to_owned(),
                        Err(e) => format!("media task failed: {e}"),
                    };
                    tracing::error!("{why}");
                    health.report(HEALTH_COMPONENT, Health::Failed(why));
                }
            })
        };
        health.report(HEALTH_COMPONENT, Health::Healthy);
        let handle = MediaHandle { tx };
        if !settings.stun_servers.is_empty() {
            let servers = settings.stun_servers.clone();
            let h = handle.clone();
            tokio::spawn(async move {
                if let Some(ip) = candidates::discover_public_ip(&servers, bound.ip()).await {
                    h.send(MediaCommand::StunMapping(ip)).await;
                } else {
                    tracing::warn!(
                        "STUN discovery found no public address; advertising configured and local addresses only"
                    );
                }
            });
        }
        Ok(MediaPlane {
            local_addr: bound,
            advertised,
            handle,
            stats,
            supervisor,
            stopping,
        })
    }

    pub fn handle(&self) -> MediaHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the media task (endpoints get DTLS close_notify as the port drops).
    pub async fn stop(self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.send(MediaCommand::Stop).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.supervisor).await;
    }
}
