//! One endpoint's transport: ICE + DTLS + SRTP + SCTP/DCEP behind a single sans-IO object, in
//! either [`Role`] — the bridge's side of a participant ([`Role::Server`]) or a participant's
//! side toward the bridge ([`Role::Client`], what `loadtest` runs).
//!
//! Feed it every datagram for it (`handle_datagram`), drive its timers (`poll_timeout` /
//! `handle_timeout`), drain `poll_transmit` and `poll_event`. It never touches a socket or a
//! clock, and what it chooses at random comes from the injected [`TransportRng`] (README.md lists
//! what rtc-dtls and rtc-sctp still draw from the OS themselves).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::counters::{DropCounters, DropReason};
use super::demux::{PacketKind, classify};
use super::dtls::{
    DtlsIdentity, DtlsOutput, DtlsSession, DtlsSetupError, Fingerprint, SrtpProfile, matches_any,
};
use super::ice::{IceConfig, IceCredentials, IceEvent, IceRole, IceState, RemoteCandidate};
use super::restart::{IceGenerations, IceRestart, RemoteFor, Retired};
use super::rng::TransportRng;
use super::role::Role;
use super::sctp::{ChannelSpec, SctpEvent, SctpTransport};
use super::srtp::{SrtpError, SrtpSession, rtcp_sender_ssrc, rtp_ssrc};
use super::ssrc_filter::{FilterDrop, SsrcFilter};

/// Bridge-channel bytes that may wait for the peer's SCTP acknowledgement; a message past it is
/// refused ([`SendError::Backlogged`]), so a receiver that stops reading costs at most this.
pub const MAX_CHANNEL_BACKLOG: usize = 1024 * 1024;

/// The receive buffer's size (bytes): one reservation covers several packets before the buffer
/// is reclaimed, and any datagram the port receives ([`super::udp::MAX_DATAGRAM`]).
const RX_BUFFER: usize = super::udp::MAX_DATAGRAM;

/// A STUN transaction id that makes [`EndpointTransport::handle_datagram`] panic (unit tests of
/// the port's fault isolation).
#[cfg(test)]
pub(crate) const TEST_PANIC_TRANSACTION: [u8; 12] = [0xDE; 12];

/// Per-endpoint transport configuration.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// Which side we play in DTLS and SCTP. The bridge is [`Role::Server`].
    pub role: Role,
    /// ICE mode, role and timers: the bridge is controlling (full) or lite, a participant
    /// controlled ([`TransportConfig::client`]) unless the bridge is lite.
    pub ice: IceConfig,
    /// SRTP profiles for DTLS-SRTP. As server, the enabled set (the browser's order decides
    /// between them; restrict to one to force it); as client, the offer in preference order.
    pub srtp_profiles: Vec<SrtpProfile>,
    /// DTLS must complete within this long after ICE connects (JVB: 30 s).
    pub dtls_timeout: Duration,
    /// The data channel a client opens once SCTP is up (a server accepts whatever the peer opens).
    pub channel: ChannelSpec,
}

impl Default for TransportConfig {
    /// The bridge's side.
    fn default() -> Self {
        Self {
            role: Role::Server,
            ice: IceConfig::default(),
            srtp_profiles: vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
            dtls_timeout: Duration::from_secs(30),
            channel: ChannelSpec::default(),
        }
    }
}

impl TransportConfig {
    /// A participant's side toward a full (controlling) bridge, as a browser: full ICE
    /// controlled, DTLS client offering GCM then CM_SHA1 (Chromium's order), the bridge channel.
    pub fn client() -> Self {
        Self {
            role: Role::Client,
            ice: IceConfig {
                role: IceRole::Controlled,
                ..IceConfig::default()
            },
            ..Self::default()
        }
    }
}

/// The peer's transport as signalled (COLIBRI2 endpoint transport / Jingle transport).
#[derive(Debug, Clone)]
pub struct RemoteTransport {
    pub ice: IceCredentials,
    pub fingerprints: Vec<Fingerprint>,
    pub candidates: Vec<RemoteCandidate>,
}

/// What an endpoint transport reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    /// ICE selected a pair.
    Connected(SocketAddr),
    /// ICE moved to another remote address.
    SelectedChanged(SocketAddr),
    /// No consent for a while (recoverable; `Connected` follows if it comes back).
    Disconnected,
    /// Terminal: consent expired, ICE or DTLS failed, fingerprint mismatch.
    Failed(String),
    /// DTLS completed, the peer certificate matched its fingerprint, SRTP is keyed.
    DtlsConnected(SrtpProfile),
    /// An in-place ICE restart's new generation connected and carries the media now (DTLS and
    /// SRTP went on unchanged; `SelectedChanged` came first if the pair moved).
    IceRestarted {
        generation: u32,
    },
    /// An in-place ICE restart was abandoned (`reason`); the established pair stays.
    IceRestartFailed {
        generation: u32,
        reason: String,
    },
    /// A decrypted RTP packet (header + payload).
    Rtp(BytesMut),
    /// A decrypted RTCP compound packet.
    Rtcp(BytesMut),
    /// A data channel is open: the peer opened it (server) or acknowledged ours (client).
    DataChannelOpen {
        label: String,
        protocol: String,
    },
    DataChannelMessage(String),
    /// The channel closed: the peer reset its stream, the SCTP association was lost, or the peer
    /// closed DTLS (close_notify).
    DataChannelClosed,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: SocketAddr,
    pub data: Bytes,
}

/// Why a send was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    #[error("transport not connected (no selected pair or no SRTP keys)")]
    NotConnected,
    #[error("data channel not open")]
    NoDataChannel,
    #[error("malformed packet")]
    Malformed,
    /// The peer is not reading: [`MAX_CHANNEL_BACKLOG`] bytes already wait for its
    /// acknowledgement. The message is dropped (the caller counts it).
    #[error("data channel backlog full")]
    Backlogged,
    #[error("{0}")]
    Protocol(String),
}

/// Checks that a datagram is a sequence of complete DTLS records (RFC 6347 §4.1: 13-byte header,
/// content type 20..=25, version 1.0/1.2, length inside the datagram) before the DTLS stack sees
/// it, so truncated or garbage records are counted rather than silently discarded.
pub fn dtls_records_well_formed(mut d: &[u8]) -> bool {
    if d.is_empty() {
        return false;
    }
    while !d.is_empty() {
        let Some(h) = d.get(..13) else { return false };
        let content_ok = (20..=25).contains(&h[0]);
        let version_ok = h[1] == 0xFE && (h[2] == 0xFF || h[2] == 0xFD);
        let len = usize::from(u16::from_be_bytes([h[11], h[12]]));
        if !content_ok || !version_ok || d.len() < 13 + len {
            return false;
        }
        d = &d[13 + len..];
    }
    true
}

/// Whether every record of a well-formed DTLS datagram has content type `ct`.
fn all_records_of_type(mut d: &[u8], ct: u8) -> bool {
    while let Some(h) = d.get(..13) {
        if h[0] != ct {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([h[11], h[12]]));
        d = d.get(13 + len..).unwrap_or_default();
    }
    true
}

/// ICE + DTLS + SRTP + SCTP for one endpoint, either role.
pub struct EndpointTransport {
    cfg: TransportConfig,
    identity: DtlsIdentity,
    /// ICE: the current generation, and a restart's pending / retiring ones (`restart.rs`).
    ice: IceGenerations,
    dtls: DtlsSession,
    srtp: Option<SrtpSession>,
    /// Which SSRCs may reach `srtp` (the bridge's side; `None`: every SSRC, a participant's side).
    ssrc_filter: Option<SsrcFilter>,
    sctp: SctpTransport,
    remote_fingerprints: Vec<Fingerprint>,
    /// DTLS finished but the fingerprint is not signalled yet: verify when it arrives.
    dtls_unverified: bool,
    dtls_deadline: Option<Instant>,
    failed: bool,
    events: VecDeque<TransportEvent>,
    transmits: VecDeque<Transmit>,
    counters: Arc<DropCounters>,
    dtls_out: Vec<DtlsOutput>,
    /// Where SRTP/SRTCP is decrypted (in place); the events' packets are split off its front.
    rx: BytesMut,
}

impl EndpointTransport {
    /// A new endpoint with `local` ICE credentials (register `local.ufrag` with the demux), its
    /// randomness from the OS. What the bridge does per COLIBRI2 endpoint.
    pub fn new(
        local: IceCredentials,
        identity: &DtlsIdentity,
        cfg: TransportConfig,
        counters: Arc<DropCounters>,
    ) -> Result<Self, DtlsSetupError> {
        Self::with_rng(local, identity, cfg, counters, TransportRng::from_entropy())
    }

    /// [`EndpointTransport::new`] drawing every random value from `rng` — ICE tie-breaker,
    /// transaction ids, consent jitter, and rtc-dtls's provider randomness — so a seeded `rng`
    /// makes our outputs reproducible (draw `local` from it too, [`IceCredentials::generate`]).
    pub fn with_rng(
        local: IceCredentials,
        identity: &DtlsIdentity,
        cfg: TransportConfig,
        counters: Arc<DropCounters>,
        mut rng: TransportRng,
    ) -> Result<Self, DtlsSetupError> {
        let provider = rng.dtls_provider(identity.provider().clone());
        let dtls_config = identity.handshake_config(cfg.role, &cfg.srtp_profiles, provider)?;
        Ok(Self {
            ice: IceGenerations::new(local, cfg.ice.clone(), counters.clone(), rng.fork()),
            dtls: DtlsSession::new(cfg.role, dtls_config),
            sctp: SctpTransport::new(cfg.role, cfg.channel.clone()),
            cfg,
            identity: identity.clone(),
            srtp: None,
            ssrc_filter: None,
            remote_fingerprints: Vec::new(),
            dtls_unverified: false,
            dtls_deadline: None,
            failed: false,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            counters,
            dtls_out: Vec::new(),
            rx: BytesMut::new(),
        })
    }

    pub fn role(&self) -> Role {
        self.cfg.role
    }

    /// The current ICE generation's credentials.
    pub fn local_credentials(&self) -> &IceCredentials {
        self.ice.local_credentials()
    }

    /// The credentials to signal: a pending ICE restart's, else the current ones.
    pub fn advertised_credentials(&self) -> &IceCredentials {
        self.ice.advertised_credentials()
    }

    /// The `ice-generation` to signal with [`advertised_credentials`](Self::advertised_credentials)
    /// (`None` before the first restart).
    pub fn ice_generation(&self) -> Option<u32> {
        self.ice.advertised_generation()
    }

    /// ICE generations: current, pending restart, retiring (tests and diagnostics).
    pub fn ice(&self) -> &IceGenerations {
        &self.ice
    }

    /// The fingerprint to signal for this endpoint (the identity's certificate).
    pub fn local_fingerprint(&self) -> &Fingerprint {
        self.identity.fingerprint()
    }

    /// Where this endpoint counts what it drops.
    pub fn counters(&self) -> &Arc<DropCounters> {
        &self.counters
    }

    pub fn ice_state(&self) -> IceState {
        self.ice.state()
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// The negotiated SRTP profile once DTLS is up (and the peer's fingerprint verified).
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.srtp.as_ref().map(|s| s.profile())
    }

    /// Whether ICE validated `addr` (an authenticated check from or answer by it).
    pub fn is_validated(&self, addr: SocketAddr) -> bool {
        self.ice.is_validated(addr)
    }

    /// The remote address in use (selected pair).
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.ice.send_address()
    }

    /// Applies the peer's signalled transport (may be called again with more candidates).
    pub fn set_remote(&mut self, now: Instant, remote: RemoteTransport) {
        self.set_remote_generation(now, remote, None);
    }

    /// [`set_remote`](Self::set_remote) for a transport tagged with an `ice-generation` (the
    /// peer's answer to an in-place ICE restart) or not; see [`IceGenerations::set_remote`].
    pub fn set_remote_generation(
        &mut self,
        now: Instant,
        remote: RemoteTransport,
        generation: Option<u32>,
    ) -> RemoteFor {
        let to = self
            .ice
            .set_remote(now, remote.ice, &remote.candidates, generation);
        if to != RemoteFor::Stale && !remote.fingerprints.is_empty() {
            self.remote_fingerprints = remote.fingerprints;
            if self.dtls_unverified {
                self.verify_and_key(now);
            }
        }
        self.pump_ice(now);
        to
    }

    /// Starts an in-place ICE restart (new local credentials; DTLS and SRTP stay): see
    /// [`IceRestart`] and `restart.rs`. A failed transport cannot be restarted.
    pub fn restart_ice(&mut self, now: Instant) -> IceRestart {
        if self.failed {
            return IceRestart::Unavailable;
        }
        let r = self.ice.restart(now);
        self.pump_ice(now);
        r
    }

    /// Local ufrags and remote addresses of ICE generations dropped since the last call (the
    /// port unregisters them).
    pub fn take_retired_routes(&mut self) -> Option<Retired> {
        self.ice.take_retired()
    }

    /// Accepts SRTP only for `ssrcs` (what the endpoint signalled, RTX/FEC included) and SRTCP
    /// from those and a few unsignalled senders, checked before decryption
    /// ([`SsrcFilter`](super::ssrc_filter::SsrcFilter)). The first call turns the filter on; the
    /// bridge does so for every endpoint it creates (`colibri.rs`), then on every source change.
    pub fn set_signalled_ssrcs(&mut self, ssrcs: impl IntoIterator<Item = u32>) {
        self.ssrc_filter
            .get_or_insert_with(SsrcFilter::default)
            .set_signalled(ssrcs);
    }

    /// The SSRC filter, if on.
    pub fn ssrc_filter(&self) -> Option<&SsrcFilter> {
        self.ssrc_filter.as_ref()
    }

    /// Trickled candidates.
    pub fn add_remote_candidates(&mut self, now: Instant, candidates: &[RemoteCandidate]) {
        self.ice.add_remote_candidates(now, candidates);
        self.pump_ice(now);
    }

    /// Handles one datagram for this endpoint.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.failed {
            return;
        }
        #[cfg(test)]
        if data.get(8..20) == Some(&TEST_PANIC_TRANSACTION[..]) {
            panic!("injected by a test");
        }
        match classify(data) {
            PacketKind::Stun => {
                self.ice.handle_stun(now, from, data);
                self.pump_ice(now);
            }
            PacketKind::Dtls => {
                if !self.ice.is_validated(from) {
                    self.counters.count(DropReason::UnvalidatedAddress);
                    return;
                }
                if !dtls_records_well_formed(data) {
                    self.counters.count(DropReason::DtlsError);
                    return;
                }
                self.handle_dtls(now, data);
                self.ice.note_authenticated_traffic(now, from);
            }
            kind @ (PacketKind::Rtp | PacketKind::Rtcp) => {
                self.handle_srtp(now, from, data, kind == PacketKind::Rtcp);
            }
            PacketKind::Unknown => self.counters.count(DropReason::UnknownProtocol),
        }
    }

    /// SRTP/SRTCP: address and header checks, then decryption. Checks that need no keys (e.g.
    /// whether the SSRC was signalled) belong before `decrypt_*`, where they save the work.
    fn handle_srtp(&mut self, now: Instant, from: SocketAddr, data: &[u8], rtcp: bool) {
        if !self.ice.is_validated(from) {
            self.counters.count(DropReason::UnvalidatedAddress);
            return;
        }
        let ssrc = if rtcp {
            rtcp_sender_ssrc(data)
        } else {
            rtp_ssrc(data)
        };
        let Some(ssrc) = ssrc else {
            self.counters.count(DropReason::RtpMalformed);
            return;
        };
        let Some(srtp) = &mut self.srtp else {
            self.counters.count(DropReason::SrtpNotReady);
            return;
        };
        // Before decryption: rtc-srtp keeps state for every SSRC it sees, tag valid or not.
        if let Some(filter) = &mut self.ssrc_filter
            && let Err(why) = filter.check(ssrc, rtcp)
        {
            self.counters.count(match why {
                FilterDrop::Unsignalled => DropReason::SsrcUnsignalled,
                FilterDrop::Limit => DropReason::SsrcLimit,
            });
            return;
        }
        // Decrypted in place in the endpoint's receive buffer; the event takes the packet's
        // bytes off its front (`split`), and once the handler has dropped it the next packet
        // reclaims the same memory: no allocation per packet in steady state.
        let buf = &mut self.rx;
        buf.clear();
        buf.reserve(data.len().max(RX_BUFFER));
        buf.extend_from_slice(data);
        let r = if rtcp {
            srtp.decrypt_rtcp_in_place(buf)
        } else {
            srtp.decrypt_rtp_in_place(buf)
        };
        match r {
            Ok(n) => {
                buf.truncate(n);
                let p = buf.split();
                self.ice.note_authenticated_traffic(now, from);
                self.events.push_back(if rtcp {
                    TransportEvent::Rtcp(p)
                } else {
                    TransportEvent::Rtp(p)
                });
            }
            Err(SrtpError::Replay) => self.counters.count(DropReason::SrtpReplay),
            Err(_) => self.counters.count(DropReason::SrtpAuth),
        }
    }

    fn handle_dtls(&mut self, now: Instant, data: &[u8]) {
        let mut out = std::mem::take(&mut self.dtls_out);
        out.clear();
        let only_app_data = self.dtls.is_connected() && all_records_of_type(data, 23);
        if self.dtls.handle(now, data, &mut out).is_err() {
            self.counters.count(DropReason::DtlsError);
        } else if only_app_data
            && !out
                .iter()
                .any(|o| matches!(o, DtlsOutput::ApplicationData(_)))
        {
            // The DTLS stack silently discards records that fail authentication or carry a
            // stale epoch (RFC 6347 §4.1.2.7); count them here so they are visible.
            self.counters.count(DropReason::DtlsError);
        }
        for o in out.drain(..) {
            match o {
                DtlsOutput::Connected => {
                    self.dtls_unverified = true;
                    self.verify_and_key(now);
                }
                DtlsOutput::ApplicationData(d) => {
                    if self.srtp.is_none() {
                        // Not verified yet: SCTP will retransmit.
                        continue;
                    }
                    if self.sctp.handle(now, d.freeze()).is_err() {
                        self.counters.count(DropReason::SctpError);
                    }
                }
                DtlsOutput::Closed => {
                    self.events.push_back(TransportEvent::DataChannelClosed);
                }
            }
        }
        self.dtls_out = out;
        self.pump_dtls();
        self.pump_sctp(now);
    }

    /// Checks the peer certificate against its signalled fingerprint, keys SRTP, and (client)
    /// starts SCTP.
    fn verify_and_key(&mut self, now: Instant) {
        if self.remote_fingerprints.is_empty() {
            return; // wait for signalling
        }
        self.dtls_unverified = false;
        let Some(state) = self.dtls.state() else {
            self.fail(now, "DTLS state missing after handshake".into());
            return;
        };
        let cert_ok = state
            .peer_certificates
            .first()
            .is_some_and(|der| matches_any(der, &self.remote_fingerprints));
        if !cert_ok {
            self.fail(
                now,
                "DTLS peer certificate does not match the signalled fingerprint".into(),
            );
            return;
        }
        match SrtpSession::from_dtls(state, self.identity.provider().as_ref(), self.cfg.role) {
            Ok(s) => {
                let profile = s.profile();
                self.srtp = Some(s);
                self.dtls_deadline = None;
                self.events
                    .push_back(TransportEvent::DtlsConnected(profile));
                if let Err(e) = self.sctp.connect(now) {
                    self.fail(now, e.to_string());
                }
            }
            Err(e) => self.fail(now, format!("SRTP keying failed: {e}")),
        }
    }

    fn fail(&mut self, now: Instant, reason: String) {
        if self.failed {
            return;
        }
        self.failed = true;
        self.dtls.close(now);
        self.pump_dtls();
        self.srtp = None;
        self.events.push_back(TransportEvent::Failed(reason));
    }

    fn pump_ice(&mut self, now: Instant) {
        while let Some(t) = self.ice.poll_transmit() {
            self.transmits.push_back(Transmit {
                to: t.to,
                data: Bytes::from(t.data),
            });
        }
        while let Some(e) = self.ice.poll_event() {
            let ev = match e {
                IceEvent::Connected(a) => {
                    // A DTLS client says ClientHello once a pair is selected.
                    if !self.dtls.is_started() {
                        if let Err(e) = self.dtls.start(now) {
                            self.fail(now, format!("DTLS: {e}"));
                        }
                        self.pump_dtls();
                    }
                    TransportEvent::Connected(a)
                }
                IceEvent::SelectedChanged(a) => TransportEvent::SelectedChanged(a),
                IceEvent::Disconnected => TransportEvent::Disconnected,
                IceEvent::Restarted(generation) => TransportEvent::IceRestarted { generation },
                IceEvent::RestartFailed(generation, reason) => {
                    TransportEvent::IceRestartFailed { generation, reason }
                }
                IceEvent::Failed(r) => {
                    self.failed = true;
                    self.srtp = None;
                    TransportEvent::Failed(r)
                }
            };
            self.events.push_back(ev);
        }
    }

    fn pump_dtls(&mut self) {
        let to = self.ice.send_address();
        while let Some(p) = self.dtls.poll_transmit() {
            if let Some(to) = to {
                self.transmits.push_back(Transmit {
                    to,
                    data: p.freeze(),
                });
            }
        }
    }

    fn pump_sctp(&mut self, now: Instant) {
        let mut wrote = false;
        while let Some(p) = self.sctp.poll_packet() {
            if self.dtls.write(now, &p).is_ok() {
                wrote = true;
            }
        }
        if wrote {
            self.pump_dtls();
        }
        while let Some(e) = self.sctp.poll_event() {
            let ev = match e {
                SctpEvent::ChannelOpen {
                    label, protocol, ..
                } => TransportEvent::DataChannelOpen { label, protocol },
                SctpEvent::Text { text, .. } => TransportEvent::DataChannelMessage(text),
                SctpEvent::Binary { .. } => continue,
                SctpEvent::ChannelClosed { .. } => TransportEvent::DataChannelClosed,
                // Followed by ChannelClosed for every open channel.
                SctpEvent::AssociationLost(_) => continue,
            };
            self.events.push_back(ev);
        }
    }

    /// Advances every timer that is due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        self.ice.handle_timeout(now);
        self.pump_ice(now);
        if self.failed {
            return;
        }
        if self.dtls_deadline.is_none() && self.srtp.is_none() && self.ice.selected().is_some() {
            self.dtls_deadline = Some(now + self.cfg.dtls_timeout);
        }
        if let Some(d) = self.dtls_deadline
            && d <= now
            && self.srtp.is_none()
        {
            self.fail(now, "DTLS handshake did not complete".into());
            return;
        }
        if self.dtls.handle_timeout(now).is_err() {
            self.counters.count(DropReason::DtlsError);
        }
        self.pump_dtls();
        self.sctp.handle_timeout(now);
        self.pump_sctp(now);
    }

    /// The earliest instant `handle_timeout` must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed {
            return None;
        }
        [
            self.ice.poll_timeout(),
            self.dtls.poll_timeout(),
            self.sctp.poll_timeout(),
            self.dtls_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Encrypts an RTP packet and queues it to the selected address.
    pub fn send_rtp(&mut self, packet: &[u8]) -> Result<(), SendError> {
        let t = self.protect(packet, false)?;
        self.transmits.push_back(t);
        Ok(())
    }

    /// Encrypts an RTCP compound packet and queues it.
    pub fn send_rtcp(&mut self, packet: &[u8]) -> Result<(), SendError> {
        let t = self.protect(packet, true)?;
        self.transmits.push_back(t);
        Ok(())
    }

    /// Encrypts without queueing: the shell can send the returned datagram directly (saves the
    /// queue hop on the forwarding path).
    pub fn protect(&mut self, packet: &[u8], rtcp: bool) -> Result<Transmit, SendError> {
        let mut data = packet.to_vec();
        let to = self.protect_in_place(&mut data, rtcp)?;
        Ok(Transmit {
            to,
            data: data.into(),
        })
    }

    /// Encrypts the RTP packet or RTCP compound in `buf` where it is (the port's transmit buffers;
    /// a forwarded packet is built in the one it goes out in) and returns where to send it. On
    /// failure `buf` holds the packet as it was.
    pub fn protect_in_place(
        &mut self,
        buf: &mut Vec<u8>,
        rtcp: bool,
    ) -> Result<SocketAddr, SendError> {
        let to = self.ice.send_address().ok_or(SendError::NotConnected)?;
        let srtp = self.srtp.as_mut().ok_or(SendError::NotConnected)?;
        if rtcp {
            rtcp_sender_ssrc(buf).ok_or(SendError::Malformed)?;
            srtp.encrypt_rtcp_in_place(buf)
        } else {
            rtp_ssrc(buf).ok_or(SendError::Malformed)?;
            srtp.encrypt_rtp_in_place(buf)
        }
        .map_err(|e| SendError::Protocol(e.to_string()))?;
        Ok(to)
    }

    /// Sends a text message (PPID 51) on the open data channel (the bridge channel).
    pub fn send_data_message(&mut self, now: Instant, text: &str) -> Result<(), SendError> {
        let stream = self.sctp.open_channel().ok_or(SendError::NoDataChannel)?;
        if self.sctp.buffered_amount(stream) + text.len() > MAX_CHANNEL_BACKLOG {
            return Err(SendError::Backlogged);
        }
        self.sctp
            .send_text(now, stream, text)
            .map_err(|e| SendError::Protocol(e.to_string()))?;
        self.pump_sctp(now);
        Ok(())
    }

    pub fn has_data_channel(&self) -> bool {
        self.sctp.open_channel().is_some()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// Closes DTLS (close_notify) — used when the endpoint expires or the participant leaves.
    pub fn close(&mut self, now: Instant) {
        self.dtls.close(now);
        self.pump_dtls();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::dtls::fingerprint_of;
    use crate::transport::ice::IceMode;
    use crate::transport::stun::{Builder, Class, METHOD_BINDING};
    use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
    use rtc_dtls::crypto::Certificate;

    const PEER: &str = "127.0.0.1:40000";

    fn setup(mode: IceMode) -> (EndpointTransport, Arc<DropCounters>) {
        let counters = Arc::new(DropCounters::new());
        let identity = DtlsIdentity::generate().unwrap();
        let cfg = TransportConfig {
            ice: IceConfig {
                mode,
                ..IceConfig::default()
            },
            ..TransportConfig::default()
        };
        let local = IceCredentials {
            ufrag: "brdg".into(),
            pwd: "bridgepasswordbridgepass".into(),
        };
        (
            EndpointTransport::new(local, &identity, cfg, counters.clone()).unwrap(),
            counters,
        )
    }

    /// A nominating check from the (controlling) peer.
    fn check(ep: &EndpointTransport) -> Vec<u8> {
        let l = ep.local_credentials();
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[5; 12])
            .username(&format!("{}:peer", l.ufrag))
            .priority(1)
            .ice_controlling(u64::MAX)
            .use_candidate()
            .integrity(l.pwd.as_bytes())
            .fingerprint();
        buf
    }

    fn remote(fps: Vec<Fingerprint>) -> RemoteTransport {
        RemoteTransport {
            ice: IceCredentials {
                ufrag: "peer".into(),
                pwd: "peerpasswordpeerpassword".into(),
            },
            fingerprints: fps,
            candidates: vec![],
        }
    }

    #[test]
    fn dtls_framing_check() {
        assert!(dtls_records_well_formed(&[
            22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9
        ]));
        assert!(dtls_records_well_formed(&[
            23, 254, 253, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 21, 254, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!dtls_records_well_formed(&[]));
        assert!(!dtls_records_well_formed(&[
            22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 9
        ]));
        assert!(!dtls_records_well_formed(&[22, 254, 253, 0]));
        assert!(!dtls_records_well_formed(&[
            30, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
        assert!(!dtls_records_well_formed(&[
            22, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]));
    }

    #[test]
    fn bad_media_is_counted_by_reason() {
        let (mut ep, counters) = setup(IceMode::Lite);
        let now = Instant::now();
        let peer: SocketAddr = PEER.parse().unwrap();
        let rtp = [
            0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
        ];
        // Before ICE validated the address.
        ep.handle_datagram(now, peer, &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        ep.handle_datagram(now, peer, &rtp);
        assert_eq!(counters.get(DropReason::UnvalidatedAddress), 2);
        // Validate with a nominating check.
        ep.handle_datagram(now, peer, &check(&ep));
        assert_eq!(ep.poll_event(), Some(TransportEvent::Connected(peer)));
        assert_eq!(ep.poll_transmit().map(|t| t.to), Some(peer));
        ep.handle_datagram(now, peer, &[22, 254, 253, 0, 0, 0, 0]);
        assert_eq!(counters.get(DropReason::DtlsError), 1);
        ep.handle_datagram(now, peer, &rtp);
        assert_eq!(counters.get(DropReason::SrtpNotReady), 1);
        ep.handle_datagram(now, peer, &rtp[..8]);
        ep.handle_datagram(now, peer, &[0x80, 200, 0]);
        assert_eq!(counters.get(DropReason::RtpMalformed), 2);
        ep.handle_datagram(now, peer, &[0xC0, 1, 2]);
        ep.handle_datagram(now, peer, &[]);
        assert_eq!(counters.get(DropReason::UnknownProtocol), 2);
        assert_eq!(ep.send_rtp(&rtp), Err(SendError::NotConnected));
        assert_eq!(
            ep.send_data_message(now, "x"),
            Err(SendError::NoDataChannel)
        );
        assert!(!ep.is_failed());
    }

    #[test]
    fn dtls_timeout_fails_in_virtual_time() {
        let (mut ep, _) = setup(IceMode::Lite);
        let start = Instant::now();
        let peer: SocketAddr = PEER.parse().unwrap();
        ep.handle_datagram(start, peer, &check(&ep));
        let mut now = start;
        let mut failed = None;
        // Keep ICE consent alive with checks every 2 s; DTLS never starts.
        while now < start + Duration::from_secs(40) && failed.is_none() {
            now += Duration::from_secs(2);
            ep.handle_datagram(now, peer, &check(&ep));
            ep.handle_timeout(now);
            while let Some(e) = ep.poll_event() {
                if let TransportEvent::Failed(r) = e {
                    failed = Some((now.duration_since(start), r));
                }
            }
        }
        let (at, reason) = failed.expect("DTLS timeout");
        assert!(reason.contains("DTLS"), "{reason}");
        assert!(
            at >= Duration::from_secs(30) && at <= Duration::from_secs(32),
            "{at:?}"
        );
    }

    /// Runs a DTLS client (rtc-dtls, standing in for the browser) against the endpoint.
    fn handshake(
        ep: &mut EndpointTransport,
        now: Instant,
        client_profiles: Vec<SrtpProfile>,
    ) -> (Vec<TransportEvent>, Vec<u8>) {
        let peer: SocketAddr = PEER.parse().unwrap();
        let bridge: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
        let cert =
            Certificate::generate_self_signed(vec!["peer".to_owned()], provider.crypto()).unwrap();
        let der = cert.certificate[0].as_ref().to_vec();
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![cert])
            .with_srtp_protection_profiles(client_profiles.iter().map(|p| p.to_dtls()).collect())
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_insecure_skip_verify(true)
            .build(true, Some(bridge))
            .unwrap();
        let mut client =
            rtc_dtls::endpoint::Endpoint::new(peer, rtc_shared::TransportProtocol::UDP, None);
        ep.handle_datagram(now, peer, &check(ep));
        client.connect(now, bridge, Arc::new(cfg), None).unwrap();
        let mut events = Vec::new();
        for _ in 0..20 {
            let mut moved = false;
            while let Some(t) = client.poll_transmit() {
                ep.handle_datagram(now, peer, &t.message);
                moved = true;
            }
            while let Some(t) = ep.poll_transmit() {
                if classify(&t.data) == PacketKind::Dtls {
                    let _ = client.read(now, bridge, None, BytesMut::from(&t.data[..]));
                    moved = true;
                }
            }
            while let Some(e) = ep.poll_event() {
                events.push(e);
            }
            if !moved {
                break;
            }
        }
        (events, der)
    }

    #[test]
    fn dtls_handshake_verifies_fingerprint_and_keys_srtp() {
        let now = Instant::now();
        // The peer's fingerprint is only known after the handshake: it is verified then.
        let (mut ep, _) = setup(IceMode::Lite);
        ep.set_remote(now, remote(vec![]));
        let (events, der) = handshake(&mut ep, now, vec![SrtpProfile::Aes128CmHmacSha1_80]);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, TransportEvent::DtlsConnected(_))),
            "{events:?}"
        );
        let fp = Fingerprint {
            algorithm: "sha-256".into(),
            value: fingerprint_of(&der, "sha-256").unwrap(),
        };
        ep.set_remote(now, remote(vec![fp]));
        assert_eq!(
            ep.poll_event(),
            Some(TransportEvent::DtlsConnected(
                SrtpProfile::Aes128CmHmacSha1_80
            ))
        );
        assert_eq!(ep.srtp_profile(), Some(SrtpProfile::Aes128CmHmacSha1_80));
        // Now media can be protected toward the selected address.
        let t = ep
            .protect(&[0x80, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3], false)
            .unwrap();
        assert_eq!(t.to, PEER.parse::<SocketAddr>().unwrap());
        assert_eq!(t.data.len(), 15 + 10);
    }

    #[test]
    fn dtls_fingerprint_mismatch_fails_the_endpoint() {
        let now = Instant::now();
        let (mut ep, _) = setup(IceMode::Lite);
        let wrong = Fingerprint {
            algorithm: "sha-256".into(),
            value: ["AB"; 32].join(":"),
        };
        ep.set_remote(now, remote(vec![wrong]));
        let (events, _) = handshake(&mut ep, now, vec![SrtpProfile::AeadAes128Gcm]);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, TransportEvent::Failed(r) if r.contains("fingerprint"))),
            "{events:?}"
        );
        assert!(ep.is_failed());
        assert_eq!(ep.srtp_profile(), None);
    }

    #[test]
    fn gcm_is_chosen_when_the_client_prefers_it() {
        let now = Instant::now();
        let (mut ep, _) = setup(IceMode::Lite);
        ep.set_remote(now, remote(vec![]));
        let (events, der) = handshake(
            &mut ep,
            now,
            vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
        );
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, TransportEvent::Failed(_))),
            "{events:?}"
        );
        let fp = Fingerprint {
            algorithm: "sha-256".into(),
            value: fingerprint_of(&der, "sha-256").unwrap(),
        };
        ep.set_remote(now, remote(vec![fp]));
        assert_eq!(
            ep.poll_event(),
            Some(TransportEvent::DtlsConnected(SrtpProfile::AeadAes128Gcm))
        );
    }
}
