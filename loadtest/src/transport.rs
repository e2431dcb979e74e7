//! A participant's media transport toward the bridge, one sans-IO object: ICE (controlled) → DTLS
//! client (started when the bridge nominates our pair) → SRTP keyed as the client → SCTP client
//! with the bridge channel. Datagrams are classified with the bridge's RFC 7983 demux.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bridge::transport::demux::{PacketKind, classify};
use bridge::transport::dtls::{Fingerprint, SrtpProfile};
use bridge::transport::endpoint::dtls_records_well_formed;
use bridge::transport::ice::IceCredentials;
use bridge::transport::srtp::{SrtpSession, rtcp_sender_ssrc, rtp_ssrc};
use bytes::{Bytes, BytesMut};
use serde::Serialize;

use crate::dtls::{ClientIdentity, DtlsClient, DtlsError, DtlsOutput};
use crate::ice::{ClientIce, IceConfig, IceEvent, IceState};
use crate::sctp::{ChannelEvent, SctpClient};

/// DTLS must complete this long after ICE connects.
const DTLS_TIMEOUT: Duration = Duration::from_secs(30);

/// The bridge's transport as the session-initiate gives it.
#[derive(Debug, Clone)]
pub struct BridgeTransport {
    pub ice: IceCredentials,
    pub fingerprints: Vec<Fingerprint>,
    /// UDP candidates, highest priority first.
    pub candidates: Vec<SocketAddr>,
}

/// What the transport reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportEvent {
    IceConnected(SocketAddr),
    IceDisconnected,
    DtlsConnected(SrtpProfile),
    ChannelOpen,
    ChannelMessage(String),
    Rtp(BytesMut),
    Rtcp(BytesMut),
    /// Terminal.
    Failed(String),
}

/// Datagrams refused, by reason (a healthy run has zeros except `before_keys`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransportDrops {
    pub unvalidated_address: u64,
    pub dtls: u64,
    /// SRTP before the keys were ready.
    pub before_keys: u64,
    pub srtp_auth: u64,
    pub malformed: u64,
    pub unknown: u64,
    pub sctp: u64,
    pub stun: u64,
}

/// Why a packet was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("not connected (no selected pair or no SRTP keys)")]
    NotConnected,
    #[error("malformed packet")]
    Malformed,
    #[error("{0}")]
    Protocol(String),
}

/// ICE + DTLS + SRTP + SCTP of one participant.
pub struct ClientTransport {
    ice: ClientIce,
    dtls: DtlsClient,
    identity: ClientIdentity,
    remote_fingerprints: Vec<Fingerprint>,
    srtp: Option<SrtpSession>,
    profile: Option<SrtpProfile>,
    sctp: SctpClient,
    dtls_deadline: Option<Instant>,
    failed: bool,
    events: VecDeque<TransportEvent>,
    transmits: VecDeque<(SocketAddr, Bytes)>,
    dtls_out: Vec<DtlsOutput>,
    drops: TransportDrops,
}

impl ClientTransport {
    /// Starts ICE toward `bridge` with our `local` credentials; DTLS offers `profiles`.
    pub fn new(
        now: Instant,
        local: IceCredentials,
        identity: &ClientIdentity,
        bridge: BridgeTransport,
        profiles: &[SrtpProfile],
        ice: IceConfig,
    ) -> Result<Self, DtlsError> {
        Ok(ClientTransport {
            ice: ClientIce::new(now, local, bridge.ice, bridge.candidates, ice),
            dtls: DtlsClient::new(identity, profiles)?,
            identity: identity.clone(),
            remote_fingerprints: bridge.fingerprints,
            srtp: None,
            profile: None,
            sctp: SctpClient::new(),
            dtls_deadline: None,
            failed: false,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            dtls_out: Vec::new(),
            drops: TransportDrops::default(),
        })
    }

    pub fn ice_state(&self) -> IceState {
        self.ice.state()
    }

    pub fn is_failed(&self) -> bool {
        self.failed
    }

    pub fn has_keys(&self) -> bool {
        self.srtp.is_some()
    }

    /// The SRTP profile DTLS negotiated.
    pub fn srtp_profile(&self) -> Option<SrtpProfile> {
        self.profile
    }

    pub fn channel_open(&self) -> bool {
        self.sctp.is_open()
    }

    pub fn drops(&self) -> TransportDrops {
        let ice = self.ice.drops;
        TransportDrops {
            stun: ice.malformed + ice.bad_integrity + ice.unexpected,
            sctp: self.drops.sctp + self.sctp.errors,
            ..self.drops
        }
    }

    /// One datagram from the socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        if self.failed {
            return;
        }
        match classify(data) {
            PacketKind::Stun => {
                self.ice.handle_stun(now, from, data);
                self.pump_ice(now);
            }
            PacketKind::Dtls => {
                if !self.ice.is_validated(from) {
                    self.drops.unvalidated_address += 1;
                } else if !dtls_records_well_formed(data) {
                    self.drops.dtls += 1;
                } else {
                    self.handle_dtls(now, data);
                }
            }
            kind @ (PacketKind::Rtp | PacketKind::Rtcp) => {
                if !self.ice.is_validated(from) {
                    self.drops.unvalidated_address += 1;
                    return;
                }
                let rtcp = kind == PacketKind::Rtcp;
                let ok = if rtcp {
                    rtcp_sender_ssrc(data).is_some()
                } else {
                    rtp_ssrc(data).is_some()
                };
                if !ok {
                    self.drops.malformed += 1;
                    return;
                }
                let Some(srtp) = &mut self.srtp else {
                    self.drops.before_keys += 1;
                    return;
                };
                let r = if rtcp {
                    srtp.decrypt_rtcp(data)
                } else {
                    srtp.decrypt_rtp(data)
                };
                match r {
                    Ok(p) => {
                        self.ice.note_authenticated_traffic(now, from);
                        self.events.push_back(if rtcp {
                            TransportEvent::Rtcp(p)
                        } else {
                            TransportEvent::Rtp(p)
                        });
                    }
                    Err(_) => self.drops.srtp_auth += 1,
                }
            }
            PacketKind::Unknown => self.drops.unknown += 1,
        }
    }

    fn handle_dtls(&mut self, now: Instant, data: &[u8]) {
        let mut out = std::mem::take(&mut self.dtls_out);
        out.clear();
        if self.dtls.handle(now, data, &mut out).is_err() {
            self.drops.dtls += 1;
        }
        for o in out.drain(..) {
            match o {
                DtlsOutput::Connected => self.key(now),
                DtlsOutput::ApplicationData(d) => {
                    if self.srtp.is_some() {
                        self.sctp.handle(now, d.freeze());
                    }
                }
                DtlsOutput::Closed => self.fail("the bridge closed DTLS".into()),
            }
        }
        self.dtls_out = out;
        self.pump_sctp(now);
        self.pump_dtls();
    }

    fn key(&mut self, now: Instant) {
        match self
            .dtls
            .verify_and_key(&self.remote_fingerprints, self.identity.provider().as_ref())
        {
            Ok((srtp, profile)) => {
                self.srtp = Some(srtp);
                self.profile = Some(profile);
                self.dtls_deadline = None;
                self.events
                    .push_back(TransportEvent::DtlsConnected(profile));
                if let Err(e) = self.sctp.connect(now) {
                    self.fail(format!("SCTP: {e}"));
                }
            }
            Err(e) => self.fail(e.to_string()),
        }
    }

    fn fail(&mut self, reason: String) {
        if !self.failed {
            self.failed = true;
            self.srtp = None;
            self.events.push_back(TransportEvent::Failed(reason));
        }
    }

    fn pump_ice(&mut self, now: Instant) {
        while let Some((to, d)) = self.ice.poll_transmit() {
            self.transmits.push_back((to, Bytes::from(d)));
        }
        while let Some(e) = self.ice.poll_event() {
            match e {
                IceEvent::Connected(addr) => {
                    self.events.push_back(TransportEvent::IceConnected(addr));
                    if !self.dtls.is_started() {
                        self.dtls_deadline = Some(now + DTLS_TIMEOUT);
                        if let Err(e) = self.dtls.start(now) {
                            self.fail(e.to_string());
                        }
                        self.pump_dtls();
                    }
                }
                IceEvent::Disconnected => self.events.push_back(TransportEvent::IceDisconnected),
                IceEvent::Failed(r) => self.fail(r),
            }
        }
    }

    fn pump_dtls(&mut self) {
        let Some(to) = self.ice.selected() else {
            return;
        };
        while let Some(p) = self.dtls.poll_transmit() {
            self.transmits.push_back((to, p.freeze()));
        }
    }

    fn pump_sctp(&mut self, now: Instant) {
        let mut wrote = false;
        while let Some(p) = self.sctp.poll_packet() {
            if self.dtls.write(now, &p).is_err() {
                self.drops.sctp += 1;
            }
            wrote = true;
        }
        if wrote {
            self.pump_dtls();
        }
        while let Some(e) = self.sctp.poll_event() {
            match e {
                ChannelEvent::Open => self.events.push_back(TransportEvent::ChannelOpen),
                ChannelEvent::Text(t) => self.events.push_back(TransportEvent::ChannelMessage(t)),
                ChannelEvent::Lost(r) => self.fail(format!("bridge channel lost: {r}")),
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed {
            return;
        }
        self.ice.handle_timeout(now);
        self.pump_ice(now);
        if self.dtls_deadline.is_some_and(|d| d <= now) && self.srtp.is_none() {
            self.fail("DTLS handshake did not complete".into());
            return;
        }
        if self.dtls.handle_timeout(now).is_err() {
            self.drops.dtls += 1;
        }
        self.pump_dtls();
        self.sctp.handle_timeout(now);
        self.pump_sctp(now);
    }

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

    /// Encrypts an RTP or RTCP packet for the selected pair (the caller sends it).
    pub fn protect(
        &mut self,
        packet: &[u8],
        rtcp: bool,
    ) -> Result<(SocketAddr, BytesMut), SendError> {
        let to = self.ice.selected().ok_or(SendError::NotConnected)?;
        let srtp = self.srtp.as_mut().ok_or(SendError::NotConnected)?;
        let r = if rtcp {
            rtcp_sender_ssrc(packet).ok_or(SendError::Malformed)?;
            srtp.encrypt_rtcp(packet)
        } else {
            rtp_ssrc(packet).ok_or(SendError::Malformed)?;
            srtp.encrypt_rtp(packet)
        };
        r.map(|d| (to, d))
            .map_err(|e| SendError::Protocol(e.to_string()))
    }

    /// Encrypts and queues.
    pub fn send(&mut self, packet: &[u8], rtcp: bool) -> Result<(), SendError> {
        let (to, d) = self.protect(packet, rtcp)?;
        self.transmits.push_back((to, d.freeze()));
        Ok(())
    }

    /// A text message on the bridge channel.
    pub fn send_text(&mut self, now: Instant, text: &str) -> Result<(), SendError> {
        self.sctp
            .send_text(now, text)
            .map_err(SendError::Protocol)?;
        self.pump_sctp(now);
        Ok(())
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// close_notify toward the bridge.
    pub fn close(&mut self, now: Instant) {
        self.dtls.close(now);
        self.pump_dtls();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::transport::{
        DropCounters, DtlsIdentity, EndpointTransport, IceConfig as BridgeIceConfig,
        RemoteCandidate, RemoteTransport, TransportConfig, TransportEvent as BridgeEvent,
    };
    use std::sync::Arc;

    /// The whole client transport against the bridge's whole endpoint transport (full ICE,
    /// controlling, as with lib-jitsi-meet) in virtual time: ICE, DTLS, SRTP both ways, the bridge
    /// channel both ways.
    #[test]
    fn connects_to_the_bridge_endpoint_transport() {
        let t0 = Instant::now();
        let us: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let bridge_addr: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let bridge_identity = DtlsIdentity::generate().unwrap();
        let bridge_creds = IceCredentials::random();
        let mut ep = EndpointTransport::new(
            bridge_creds.clone(),
            &bridge_identity,
            TransportConfig {
                ice: BridgeIceConfig::default(),
                ..TransportConfig::default()
            },
            Arc::new(DropCounters::new()),
        )
        .unwrap();
        let identity = ClientIdentity::generate().unwrap();
        let our_creds = IceCredentials::random();
        let mut client = ClientTransport::new(
            t0,
            our_creds.clone(),
            &identity,
            BridgeTransport {
                ice: bridge_creds,
                fingerprints: vec![bridge_identity.fingerprint().clone()],
                candidates: vec![bridge_addr],
            },
            &[SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
            IceConfig::default(),
        )
        .unwrap();
        ep.set_remote(
            t0,
            RemoteTransport {
                ice: our_creds,
                fingerprints: vec![identity.fingerprint().clone()],
                candidates: vec![RemoteCandidate {
                    addr: us,
                    priority: crate::ice::HOST_PRIORITY,
                }],
            },
        );
        let mut now = t0;
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        let step = |now: Instant,
                    client: &mut ClientTransport,
                    ep: &mut EndpointTransport,
                    ours: &mut Vec<TransportEvent>,
                    theirs: &mut Vec<BridgeEvent>| {
            client.handle_timeout(now);
            ep.handle_timeout(now);
            for _ in 0..50 {
                let mut moved = false;
                while let Some((to, d)) = client.poll_transmit() {
                    assert_eq!(to, bridge_addr);
                    ep.handle_datagram(now, us, &d);
                    moved = true;
                }
                while let Some(t) = ep.poll_transmit() {
                    assert_eq!(t.to, us);
                    client.handle_datagram(now, bridge_addr, &t.data);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
            while let Some(e) = client.poll_event() {
                ours.push(e);
            }
            while let Some(e) = ep.poll_event() {
                theirs.push(e);
            }
        };
        while now < t0 + Duration::from_secs(5) && !client.channel_open() {
            step(now, &mut client, &mut ep, &mut ours, &mut theirs);
            now += Duration::from_millis(5);
        }
        assert!(client.channel_open(), "{ours:?}");
        assert_eq!(
            &ours[..3],
            &[
                TransportEvent::IceConnected(bridge_addr),
                TransportEvent::DtlsConnected(SrtpProfile::AeadAes128Gcm),
                TransportEvent::ChannelOpen,
            ]
        );
        assert!(theirs.contains(&BridgeEvent::DtlsConnected(SrtpProfile::AeadAes128Gcm)));
        assert!(theirs.iter().any(|e| matches!(e, BridgeEvent::DataChannelOpen { label, .. } if label == "JVB data channel")));
        // Media and channel messages both ways.
        let rtp = [0x80u8, 100, 0, 9, 0, 0, 0, 1, 0, 0, 0, 42, 7, 7, 7];
        client.send(&rtp, false).unwrap();
        client
            .send_text(now, "{\"colibriClass\":\"LastNChangedEvent\",\"lastN\":-1}")
            .unwrap();
        ep.send_rtp(&rtp).unwrap();
        ep.send_data_message(
            now,
            "{\"colibriClass\":\"ForwardedSources\",\"forwardedSources\":[]}",
        )
        .unwrap();
        ours.clear();
        theirs.clear();
        step(now, &mut client, &mut ep, &mut ours, &mut theirs);
        assert!(theirs.contains(&BridgeEvent::Rtp(BytesMut::from(&rtp[..]))));
        assert!(
            theirs
                .iter()
                .any(|e| matches!(e, BridgeEvent::DataChannelMessage(m) if m.contains("LastN")))
        );
        assert!(ours.contains(&TransportEvent::Rtp(BytesMut::from(&rtp[..]))));
        assert!(ours.iter().any(
            |e| matches!(e, TransportEvent::ChannelMessage(m) if m.contains("ForwardedSources"))
        ));
        assert_eq!(client.drops(), TransportDrops::default());
    }
}

#[cfg(test)]
mod loss_tests {
    use super::*;
    use bridge::transport::{
        DropCounters, DtlsIdentity, EndpointTransport, IceConfig as BridgeIceConfig,
        RemoteCandidate, RemoteTransport, TransportConfig,
    };
    use std::sync::Arc;

    /// Client and bridge transports in virtual time; `drop(from_client, n)` says whether the n-th
    /// DTLS datagram in that direction is lost. Returns when the client's channel opened (or not).
    fn handshake(
        mut drop: impl FnMut(bool, usize) -> bool,
        limit: Duration,
    ) -> (bool, bool, Duration, usize, usize) {
        let t0 = Instant::now();
        let us: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let bridge_addr: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let bridge_identity = DtlsIdentity::generate().unwrap();
        let bridge_creds = IceCredentials::random();
        let mut ep = EndpointTransport::new(
            bridge_creds.clone(),
            &bridge_identity,
            TransportConfig {
                ice: BridgeIceConfig::default(),
                ..TransportConfig::default()
            },
            Arc::new(DropCounters::new()),
        )
        .unwrap();
        let identity = ClientIdentity::generate().unwrap();
        let our_creds = IceCredentials::random();
        let mut client = ClientTransport::new(
            t0,
            our_creds.clone(),
            &identity,
            BridgeTransport {
                ice: bridge_creds,
                fingerprints: vec![bridge_identity.fingerprint().clone()],
                candidates: vec![bridge_addr],
            },
            &[SrtpProfile::AeadAes128Gcm],
            IceConfig::default(),
        )
        .unwrap();
        ep.set_remote(
            t0,
            RemoteTransport {
                ice: our_creds,
                fingerprints: vec![identity.fingerprint().clone()],
                candidates: vec![RemoteCandidate {
                    addr: us,
                    priority: crate::ice::HOST_PRIORITY,
                }],
            },
        );
        let is_dtls = |d: &[u8]| d.first().is_some_and(|b| (20..=63).contains(b));
        let (mut n_up, mut n_down) = (0, 0);
        let mut now = t0;
        let mut bridge_dtls = false;
        while now < t0 + limit && !(client.channel_open() && bridge_dtls) {
            client.handle_timeout(now);
            ep.handle_timeout(now);
            for _ in 0..50 {
                let mut moved = false;
                while let Some((_, d)) = client.poll_transmit() {
                    moved = true;
                    if is_dtls(&d) {
                        n_up += 1;
                        if drop(true, n_up - 1) {
                            continue;
                        }
                    }
                    ep.handle_datagram(now, us, &d);
                }
                while let Some(t) = ep.poll_transmit() {
                    moved = true;
                    if is_dtls(&t.data) {
                        n_down += 1;
                        if drop(false, n_down - 1) {
                            continue;
                        }
                    }
                    client.handle_datagram(now, bridge_addr, &t.data);
                }
                if !moved {
                    break;
                }
            }
            while client.poll_event().is_some() {}
            while let Some(e) = ep.poll_event() {
                if matches!(e, bridge::transport::TransportEvent::DtlsConnected(_)) {
                    bridge_dtls = true;
                }
            }
            now += Duration::from_millis(5);
        }
        (client.channel_open(), bridge_dtls, now - t0, n_up, n_down)
    }

    /// Random loss of 10 % of the DTLS datagrams each way, 200 handshakes with fixed seeds: every
    /// one completes. Unpatched rtc-dtls 0.21.1 stalled ≈ 2.6 % of them for good (a repeated flight
    /// from the peer cleared the retransmission timer; third_party/rtc-dtls/PATCHED.md), so this
    /// fails with the upstream crate.
    #[test]
    fn handshakes_complete_under_random_loss() {
        let mut stalled = Vec::new();
        let mut slowest = Duration::ZERO;
        for seed in 1..=200u64 {
            // xorshift64*: a fixed loss pattern per seed.
            let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let lose = move |_: bool, _: usize| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                x.wrapping_mul(0x2545_F491_4F6C_DD1D) % 100 < 10
            };
            let (open, bridge, took, _, _) = handshake(lose, Duration::from_secs(40));
            if !(open && bridge) {
                stalled.push(seed);
            }
            slowest = slowest.max(took);
        }
        assert!(
            stalled.is_empty(),
            "{} of 200 handshakes did not complete in 40 s (seeds {stalled:?})",
            stalled.len()
        );
        // Retransmission backs off (1, 2, 4 … s), so even several losses finish well inside this.
        assert!(slowest < Duration::from_secs(30), "slowest {slowest:?}");
    }

    /// Any single lost DTLS datagram, either way, is recovered by retransmission.
    #[test]
    fn the_handshake_survives_any_single_lost_datagram() {
        let (open, bridge, clean, up, down) = handshake(|_, _| false, Duration::from_secs(5));
        assert!(open && bridge && clean < Duration::from_millis(100));
        // Three flights each way (ClientHello, HelloVerifyRequest, …, the server's Finished).
        assert!(up >= 3 && down >= 3, "{up} up, {down} down");
        let mut stuck = Vec::new();
        for from_client in [true, false] {
            for k in 0..up.max(down) {
                let r = handshake(|up, n| up == from_client && n == k, Duration::from_secs(20));
                // Recovered by one retransmission (1 s), not by luck after many.
                if !(r.0 && r.1) || r.2 > Duration::from_secs(3) {
                    stuck.push((
                        if from_client {
                            "client→bridge"
                        } else {
                            "bridge→client"
                        },
                        k,
                        r.0,
                        r.1,
                    ));
                }
            }
        }
        assert!(
            stuck.is_empty(),
            "(direction, lost datagram, client open, bridge connected): {stuck:?}"
        );
    }
}
