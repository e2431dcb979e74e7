//! SCTP over DTLS (RFC 8261) and WebRTC data channels (RFC 8831, DCEP RFC 8832), either end.
//!
//! [`Role::Server`] (the bridge) is the passive side: the browser sends INIT (port 5000) and opens
//! the bridge channel with DATA_CHANNEL_OPEN (label "JVB data channel"); we answer
//! DATA_CHANNEL_ACK. [`Role::Client`] (a participant) sends INIT once DTLS is up and opens the
//! channel described by its [`ChannelSpec`] on stream 0 (the DTLS client uses even stream ids,
//! RFC 8832 §6), as lib-jitsi-meet does. Messages are UTF-8 JSON with PPID 51 (WebRTC String).
//! SCTP is `rtc-sctp`; DCEP is here (two message types, not worth a dependency).
//!
//! Randomness: our code chooses nothing at random here (stream 0, fixed DCEP fields). rtc-sctp
//! draws the verification tag, the initial TSN and the state cookie from `rand`'s thread-local
//! generator; its `EndpointConfig::aid_generator` hook takes a trait the crate does not export,
//! so none of that can be injected (README.md).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rtc_sctp::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig,
    EndpointEvent, Event, Payload, PayloadProtocolIdentifier as Ppi, ServerConfig, TransportConfig,
};
use rtc_shared::TransportProtocol;

use super::role::Role;

const DCEP_OPEN: u8 = 0x03;
const DCEP_ACK: u8 = 0x02;
/// Largest inbound message we accept (bridge-channel JSON is small).
const MAX_MESSAGE: usize = 256 * 1024;
/// JVB allows one channel per endpoint; accept a few to be lenient, bounded.
const MAX_CHANNELS: usize = 8;
/// The stream a DTLS client opens its channel on (even ids, RFC 8832 §6).
const CLIENT_STREAM: u16 = 0;

/// lib-jitsi-meet's bridge channel (`modules/RTC/BridgeChannel.js`).
pub const BRIDGE_CHANNEL_LABEL: &str = "JVB data channel";
pub const BRIDGE_CHANNEL_PROTOCOL: &str = "http://jitsi.org/protocols/colibri";

/// The channel a [`Role::Client`] opens once SCTP is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    pub label: String,
    pub protocol: String,
}

impl Default for ChannelSpec {
    /// The bridge channel, reliable and ordered, as lib-jitsi-meet opens it.
    fn default() -> Self {
        Self {
            label: BRIDGE_CHANNEL_LABEL.into(),
            protocol: BRIDGE_CHANNEL_PROTOCOL.into(),
        }
    }
}

/// A DATA_CHANNEL_OPEN, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcepOpen {
    pub channel_type: u8,
    pub priority: u16,
    pub reliability: u32,
    pub label: String,
    pub protocol: String,
}

/// Parses a DATA_CHANNEL_OPEN message (RFC 8832 §5.1).
pub fn parse_dcep_open(b: &[u8]) -> Option<DcepOpen> {
    if b.first() != Some(&DCEP_OPEN) || b.len() < 12 {
        return None;
    }
    let label_len = usize::from(u16::from_be_bytes([b[8], b[9]]));
    let proto_len = usize::from(u16::from_be_bytes([b[10], b[11]]));
    let label = b.get(12..12 + label_len)?;
    let protocol = b.get(12 + label_len..12 + label_len + proto_len)?;
    Some(DcepOpen {
        channel_type: b[1],
        priority: u16::from_be_bytes([b[2], b[3]]),
        reliability: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        label: String::from_utf8_lossy(label).into_owned(),
        protocol: String::from_utf8_lossy(protocol).into_owned(),
    })
}

/// Encodes a DATA_CHANNEL_OPEN.
pub fn encode_dcep_open(o: &DcepOpen) -> Vec<u8> {
    let mut v = vec![DCEP_OPEN, o.channel_type];
    v.extend_from_slice(&o.priority.to_be_bytes());
    v.extend_from_slice(&o.reliability.to_be_bytes());
    v.extend_from_slice(&(o.label.len() as u16).to_be_bytes());
    v.extend_from_slice(&(o.protocol.len() as u16).to_be_bytes());
    v.extend_from_slice(o.label.as_bytes());
    v.extend_from_slice(o.protocol.as_bytes());
    v
}

/// What the SCTP/DCEP layer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SctpEvent {
    ChannelOpen {
        stream: u16,
        label: String,
        protocol: String,
    },
    Text {
        stream: u16,
        text: String,
    },
    Binary {
        stream: u16,
        len: usize,
    },
    ChannelClosed {
        stream: u16,
    },
    AssociationLost(String),
}

#[derive(Debug)]
struct Channel {
    stream: u16,
    open: bool,
    /// Opened by us (we sent DATA_CHANNEL_OPEN and wait for the ACK): label and protocol.
    ours: Option<ChannelSpec>,
}

/// The SCTP association of one endpoint, fed with DTLS application data.
pub struct SctpTransport {
    role: Role,
    channel: ChannelSpec,
    endpoint: Endpoint,
    assoc: Option<(AssociationHandle, Association)>,
    channels: Vec<Channel>,
    events: VecDeque<SctpEvent>,
    outgoing: VecDeque<Bytes>,
    lost: bool,
    /// The association told the endpoint it drained (the endpoint released it then; releasing
    /// it again would free a slot the endpoint may have reused).
    drained: bool,
}

const PLACEHOLDER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 5000));

/// Error from SCTP processing (counted by the caller).
#[derive(Debug, thiserror::Error)]
#[error("sctp: {0}")]
pub struct SctpError(pub String);

fn transport_config() -> TransportConfig {
    TransportConfig::default()
        .with_sctp_port(5000)
        .with_max_message_size(MAX_MESSAGE as u32)
        .with_max_num_inbound_streams(1024)
        .with_max_num_outbound_streams(1024)
}

impl SctpTransport {
    /// A server accepts the peer's association; a client [`connect`](Self::connect)s and then
    /// opens `channel`.
    pub fn new(role: Role, channel: ChannelSpec) -> Self {
        let server =
            (role == Role::Server).then(|| Arc::new(ServerConfig::new(transport_config())));
        let endpoint = Endpoint::new(
            PLACEHOLDER,
            TransportProtocol::UDP,
            Arc::new(EndpointConfig::new()),
            server,
        );
        Self {
            role,
            channel,
            endpoint,
            assoc: None,
            channels: Vec::new(),
            events: VecDeque::new(),
            outgoing: VecDeque::new(),
            lost: false,
            drained: false,
        }
    }

    /// A client sends INIT (once DTLS is connected); a server does nothing.
    pub fn connect(&mut self, now: Instant) -> Result<(), SctpError> {
        if self.role == Role::Server || self.assoc.is_some() {
            return Ok(());
        }
        let a = self
            .endpoint
            .connect(now, ClientConfig::new(transport_config()), PLACEHOLDER)
            .map_err(|e| SctpError(e.to_string()))?;
        self.assoc = Some(a);
        self.drive(now);
        Ok(())
    }

    /// Feeds one SCTP packet (decrypted DTLS application data).
    pub fn handle(&mut self, now: Instant, packet: Bytes) -> Result<(), SctpError> {
        match self.endpoint.handle(now, PLACEHOLDER, None, packet) {
            Some((h, DatagramEvent::NewAssociation(a))) => {
                if let Some((old, _)) = self.assoc.take() {
                    // A second INIT (peer restarted SCTP): the new association replaces the old
                    // one, and the endpoint forgets the old one too — it keeps every association
                    // it created until told it drained, so each INIT grew its tables and after
                    // 100 000 (rtc-sctp's `concurrent_associations`) it refused every INIT.
                    if !self.drained {
                        self.endpoint.handle_event(old, EndpointEvent::drained());
                    }
                    self.close_all_channels();
                }
                self.assoc = Some((h, a));
                self.lost = false;
                self.drained = false;
            }
            Some((h, DatagramEvent::AssociationEvent(ev))) => match &mut self.assoc {
                Some((ch, a)) if *ch == h => a.handle_event(ev),
                _ => return Err(SctpError("packet for unknown association".into())),
            },
            Some(_) => return Err(SctpError("unexpected SCTP datagram event".into())),
            None => return Err(SctpError("malformed or unexpected SCTP packet".into())),
        }
        self.drive(now);
        Ok(())
    }

    fn close_all_channels(&mut self) {
        for c in self.channels.drain(..) {
            if c.open {
                self.events
                    .push_back(SctpEvent::ChannelClosed { stream: c.stream });
            }
        }
    }

    /// Pulls events, stream data and packets out of the association.
    fn drive(&mut self, now: Instant) {
        let Some((h, a)) = &mut self.assoc else {
            return;
        };
        let h = *h;
        while let Some(ev) = a.poll_endpoint_event() {
            self.drained |= ev.is_drained();
            self.endpoint.handle_event(h, ev);
        }
        while let Some(ev) = a.poll() {
            match ev {
                Event::AssociationLost { reason, .. } | Event::HandshakeFailed { reason } => {
                    // A client's channel that never opened closes too, as an RTCDataChannel
                    // fires `close` (open channels close in `close_all_channels`).
                    let pending = self.role == Role::Client
                        && !self.lost
                        && !self.channels.iter().any(|c| c.ours.is_some() && c.open);
                    self.lost = true;
                    self.events
                        .push_back(SctpEvent::AssociationLost(reason.to_string()));
                    if pending {
                        self.events.push_back(SctpEvent::ChannelClosed {
                            stream: CLIENT_STREAM,
                        });
                    }
                }
                Event::Connected
                    if self.role == Role::Client
                        && !self.channels.iter().any(|c| c.ours.is_some()) =>
                {
                    let open = encode_dcep_open(&DcepOpen {
                        channel_type: 0, // DATA_CHANNEL_RELIABLE (ordered)
                        priority: 256,
                        reliability: 0,
                        label: self.channel.label.clone(),
                        protocol: self.channel.protocol.clone(),
                    });
                    if a.open_stream(CLIENT_STREAM, Ppi::Dcep)
                        .and_then(|mut s| s.write_with_ppi(now, &open, Ppi::Dcep))
                        .is_ok()
                    {
                        self.channels.push(Channel {
                            stream: CLIENT_STREAM,
                            open: false,
                            ours: Some(self.channel.clone()),
                        });
                    } else {
                        self.events.push_back(SctpEvent::AssociationLost(
                            "could not open the data channel".into(),
                        ));
                    }
                }
                _ => {}
            }
        }
        while let Some(mut s) = a.accept_stream() {
            let id = s.stream_identifier();
            let _ = s.set_default_payload_type(Ppi::Dcep);
            if self.channels.len() < MAX_CHANNELS && !self.channels.iter().any(|c| c.stream == id) {
                self.channels.push(Channel {
                    stream: id,
                    open: false,
                    ours: None,
                });
            }
        }
        // Read every known stream until empty.
        let mut acks = Vec::new();
        for c in &mut self.channels {
            let Ok(mut s) = a.stream(c.stream) else {
                continue;
            };
            while let Ok(Some(chunks)) = s.read_sctp() {
                let Ok(data) = chunks.to_payload(MAX_MESSAGE) else {
                    continue;
                };
                match chunks.ppi {
                    Ppi::Dcep => match (&c.ours, data.first()) {
                        // The peer opens a channel: acknowledge (again, if it repeats).
                        (None, _) => {
                            if let Some(open) = parse_dcep_open(&data) {
                                acks.push(c.stream);
                                if !c.open {
                                    c.open = true;
                                    self.events.push_back(SctpEvent::ChannelOpen {
                                        stream: c.stream,
                                        label: open.label,
                                        protocol: open.protocol,
                                    });
                                }
                            }
                        }
                        // The peer acknowledges the channel we opened.
                        (Some(spec), Some(&DCEP_ACK)) if !c.open => {
                            c.open = true;
                            self.events.push_back(SctpEvent::ChannelOpen {
                                stream: c.stream,
                                label: spec.label.clone(),
                                protocol: spec.protocol.clone(),
                            });
                        }
                        _ => {}
                    },
                    // Data on a stream whose DATA_CHANNEL_OPEN never came belongs to no
                    // channel: dropped, as JVB's DataChannelStack does (found by fuzz/sctp).
                    Ppi::String | Ppi::StringEmpty | Ppi::Binary | Ppi::BinaryEmpty if !c.open => {}
                    Ppi::String | Ppi::StringEmpty => {
                        let text = if chunks.ppi == Ppi::StringEmpty {
                            String::new()
                        } else {
                            String::from_utf8_lossy(&data).into_owned()
                        };
                        self.events.push_back(SctpEvent::Text {
                            stream: c.stream,
                            text,
                        });
                    }
                    Ppi::Binary | Ppi::BinaryEmpty => {
                        self.events.push_back(SctpEvent::Binary {
                            stream: c.stream,
                            len: data.len(),
                        });
                    }
                    _ => {}
                }
            }
        }
        for stream in acks {
            if let Ok(mut s) = a.stream(stream) {
                let _ = s.write_with_ppi(now, &[DCEP_ACK], Ppi::Dcep);
            }
        }
        // Streams reset by the peer disappear from the association.
        let ids = a.stream_ids();
        let mut closed = Vec::new();
        self.channels.retain(|c| {
            let alive = ids.contains(&c.stream);
            if !alive && c.open {
                closed.push(c.stream);
            }
            alive
        });
        for stream in closed {
            self.events.push_back(SctpEvent::ChannelClosed { stream });
        }
        while let Some(t) = a.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.message {
                self.outgoing.extend(packets);
            }
        }
        if self.lost {
            self.close_all_channels();
        }
    }

    /// Sends a text message (PPID 51) on `stream`.
    pub fn send_text(&mut self, now: Instant, stream: u16, text: &str) -> Result<(), SctpError> {
        let Some((_, a)) = &mut self.assoc else {
            return Err(SctpError("no association".into()));
        };
        if !self.channels.iter().any(|c| c.stream == stream && c.open) {
            return Err(SctpError(format!("channel {stream} not open")));
        }
        let mut s = a.stream(stream).map_err(|e| SctpError(e.to_string()))?;
        let r = if text.is_empty() {
            s.write_with_ppi(now, &[0], Ppi::StringEmpty)
        } else {
            s.write_with_ppi(now, text.as_bytes(), Ppi::String)
        };
        r.map_err(|e| SctpError(e.to_string()))?;
        self.drive(now);
        Ok(())
    }

    /// Bytes written on `stream` and not yet acknowledged by the peer (0 without an association).
    pub fn buffered_amount(&mut self, stream: u16) -> usize {
        let Some((_, a)) = &mut self.assoc else {
            return 0;
        };
        a.stream(stream)
            .and_then(|s| s.buffered_amount())
            .unwrap_or(0)
    }

    /// The first open channel (the bridge channel), if any.
    pub fn open_channel(&self) -> Option<u16> {
        self.channels.iter().find(|c| c.open).map(|c| c.stream)
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, a)) = &mut self.assoc
            && a.poll_timeout().is_some_and(|t| t <= now)
        {
            a.handle_timeout(now);
        }
        self.drive(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.assoc.as_ref().and_then(|(_, a)| a.poll_timeout())
    }

    /// Next SCTP packet to hand to DTLS.
    pub fn poll_packet(&mut self) -> Option<Bytes> {
        self.outgoing.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<SctpEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dcep_open_roundtrip_and_truncation() {
        let o = DcepOpen {
            channel_type: 0,
            priority: 0,
            reliability: 0,
            label: "JVB data channel".into(),
            protocol: "http://jitsi.org/protocols/colibri".into(),
        };
        let b = encode_dcep_open(&o);
        assert_eq!(parse_dcep_open(&b), Some(o));
        for n in 0..b.len() {
            assert_eq!(parse_dcep_open(&b[..n]), None);
        }
        assert_eq!(parse_dcep_open(&[DCEP_ACK]), None);
    }

    #[test]
    fn garbage_sctp_is_an_error_not_a_panic() {
        let mut s = SctpTransport::new(Role::Server, ChannelSpec::default());
        let now = Instant::now();
        assert!(s.handle(now, Bytes::from_static(&[])).is_err());
        assert!(
            s.handle(
                now,
                Bytes::from_static(&[0x13, 0x88, 0x13, 0x88, 0, 0, 0, 1])
            )
            .is_err()
        );
        let mut x: u32 = 7;
        for len in 0..200usize {
            let v: Vec<u8> = (0..len)
                .map(|_| {
                    x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (x >> 16) as u8
                })
                .collect();
            let _ = s.handle(now, Bytes::from(v));
        }
    }

    fn pump(
        now: Instant,
        client: &mut SctpTransport,
        server: &mut SctpTransport,
    ) -> Vec<SctpEvent> {
        let mut events = Vec::new();
        for _ in 0..30 {
            let mut moved = false;
            while let Some(p) = client.poll_packet() {
                server.handle(now, p).unwrap();
                moved = true;
            }
            while let Some(p) = server.poll_packet() {
                client.handle(now, p).unwrap();
                moved = true;
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = server.poll_event() {
            events.push(e);
        }
        events
    }

    /// Client INIT, DCEP OPEN/ACK, text both ways (the empty string too).
    #[test]
    fn client_opens_the_bridge_channel_on_the_server() {
        let now = Instant::now();
        let mut client = SctpTransport::new(Role::Client, ChannelSpec::default());
        let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
        client.connect(now).unwrap();
        let server_events = pump(now, &mut client, &mut server);
        assert!(matches!(
            &server_events[..],
            [SctpEvent::ChannelOpen { stream: 0, label, protocol }]
                if label == BRIDGE_CHANNEL_LABEL && protocol == BRIDGE_CHANNEL_PROTOCOL
        ));
        assert_eq!(
            client.poll_event(),
            Some(SctpEvent::ChannelOpen {
                stream: 0,
                label: BRIDGE_CHANNEL_LABEL.into(),
                protocol: BRIDGE_CHANNEL_PROTOCOL.into(),
            })
        );
        assert_eq!(client.open_channel(), Some(0));
        assert_eq!(server.open_channel(), Some(0));
        client
            .send_text(now, 0, r#"{"colibriClass":"ReceiverVideoConstraints"}"#)
            .unwrap();
        server
            .send_text(now, 0, r#"{"colibriClass":"ForwardedSources"}"#)
            .unwrap();
        server.send_text(now, 0, "").unwrap();
        let server_events = pump(now, &mut client, &mut server);
        assert!(
            matches!(&server_events[..], [SctpEvent::Text { text, .. }] if text.contains("ReceiverVideoConstraints"))
        );
        assert_eq!(
            client.poll_event(),
            Some(SctpEvent::Text {
                stream: 0,
                text: r#"{"colibriClass":"ForwardedSources"}"#.into()
            })
        );
        assert_eq!(
            client.poll_event(),
            Some(SctpEvent::Text {
                stream: 0,
                text: String::new()
            })
        );
        // A server never initiates.
        server.connect(now).unwrap();
        assert!(server.poll_packet().is_none());
    }

    /// A client whose INIT is never answered gives up after rtc-sctp's retransmissions, and its
    /// channel reports closed (the endpoint turns that into `DataChannelClosed`).
    #[test]
    fn an_unanswered_client_reports_its_channel_closed() {
        let t0 = Instant::now();
        let mut client = SctpTransport::new(Role::Client, ChannelSpec::default());
        client.connect(t0).unwrap();
        let mut now = t0;
        let mut events = Vec::new();
        while let Some(t) = client.poll_timeout() {
            assert!(
                t >= now && t < t0 + Duration::from_secs(600),
                "{:?}",
                t - t0
            );
            now = t;
            client.handle_timeout(now);
            while client.poll_packet().is_some() {}
            while let Some(e) = client.poll_event() {
                events.push(e);
            }
        }
        assert!(
            matches!(
                &events[..],
                [
                    SctpEvent::AssociationLost(_),
                    SctpEvent::ChannelClosed { stream: 0 }
                ]
            ),
            "{events:?}"
        );
        assert_eq!(client.open_channel(), None);
    }

    /// A browser-side association (rtc-sctp client) exchanging packets with `server`.
    struct Peer {
        endpoint: Endpoint,
        assoc: (AssociationHandle, Association),
    }

    impl Peer {
        fn connect(now: Instant) -> Self {
            let mut endpoint = Endpoint::new(
                PLACEHOLDER,
                TransportProtocol::UDP,
                Arc::new(EndpointConfig::new()),
                None,
            );
            let cfg = rtc_sctp::ClientConfig::new(TransportConfig::default().with_sctp_port(5000));
            let assoc = endpoint.connect(now, cfg, PLACEHOLDER).unwrap();
            Peer { endpoint, assoc }
        }

        fn send(&mut self, now: Instant, stream: u16, ppi: Ppi, data: &[u8]) {
            let a = &mut self.assoc.1;
            let mut s = match a.stream(stream) {
                Ok(s) => s,
                Err(_) => a.open_stream(stream, ppi).unwrap(),
            };
            s.write_with_ppi(now, data, ppi).unwrap();
        }

        /// Moves packets both ways until both sides are quiet.
        fn pump(&mut self, server: &mut SctpTransport, now: Instant) {
            for _ in 0..16 {
                let mut moved = false;
                while let Some(t) = self.assoc.1.poll_transmit(now) {
                    if let Payload::RawEncode(packets) = t.message {
                        for p in packets {
                            let _ = server.handle(now, p);
                            moved = true;
                        }
                    }
                }
                while let Some(p) = server.poll_packet() {
                    self.receive(now, p);
                    moved = true;
                }
                if !moved {
                    break;
                }
            }
        }

        /// A packet from the bridge.
        fn receive(&mut self, now: Instant, p: Bytes) {
            let (h, a) = &mut self.assoc;
            if let Some((ch, DatagramEvent::AssociationEvent(ev))) =
                self.endpoint.handle(now, PLACEHOLDER, None, p)
                && ch == *h
            {
                a.handle_event(ev);
            }
            while let Some(ev) = a.poll_endpoint_event() {
                self.endpoint.handle_event(*h, ev);
            }
            while a.poll().is_some() {}
        }
    }

    fn events(s: &mut SctpTransport) -> Vec<SctpEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// Regression (fuzz/sctp, input `02 14 2f 2f b3 b3`): messages on a stream that was never
    /// opened with DATA_CHANNEL_OPEN surfaced as bridge-channel messages.
    #[test]
    fn data_before_data_channel_open_is_dropped() {
        let now = Instant::now();
        let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
        let mut peer = Peer::connect(now);
        peer.pump(&mut server, now);
        assert_eq!(events(&mut server), vec![]);

        peer.send(now, 1, Ppi::Binary, &[0xb3, 0xb3]);
        peer.send(now, 1, Ppi::String, b"{}");
        peer.pump(&mut server, now);
        assert_eq!(events(&mut server), vec![], "data on an unopened stream");
        assert_eq!(server.open_channel(), None);
        assert_eq!(open_and_talk(&mut peer, &mut server, now, 1), talked(1));
    }

    /// Writes a valid CRC-32c into an SCTP packet.
    fn checksum(p: &mut [u8]) {
        p[8..12].fill(0);
        let sum = crc32c::crc32c(p);
        p[8..12].copy_from_slice(&sum.to_le_bytes());
    }

    /// An SCTP packet from port 5000 to 5000 with `vtag`, one chunk and a valid CRC-32c.
    fn raw_packet(vtag: u32, chunk_type: u8, value: &[u8]) -> Bytes {
        let mut p = vec![0x13, 0x88, 0x13, 0x88];
        p.extend_from_slice(&vtag.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p.extend_from_slice(&[chunk_type, 0]);
        p.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
        p.extend_from_slice(value);
        while !p.len().is_multiple_of(4) {
            p.push(0);
        }
        checksum(&mut p);
        Bytes::from(p)
    }

    /// An association established by a browser-like peer (rtc-sctp client, which announces
    /// FORWARD-TSN support), whose INIT says its first TSN is `initial_tsn` if given; returns the
    /// tag the bridge expects from the peer, and the peer (whose DATA the bridge takes only if its
    /// TSN was left alone).
    fn established(
        server: &mut SctpTransport,
        now: Instant,
        initial_tsn: Option<u32>,
    ) -> (u32, Peer) {
        let mut peer = Peer::connect(now);
        let mut init = None;
        while let Some(t) = peer.assoc.1.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.message {
                init = init.or(packets.into_iter().next());
            }
        }
        let mut init = init.expect("INIT").to_vec();
        assert_eq!(init[12], 1, "INIT");
        // Header 12, chunk header 4, initiate tag, a_rwnd, stream counts: the initial TSN at 28.
        if let Some(tsn) = initial_tsn {
            init[28..32].copy_from_slice(&tsn.to_be_bytes());
            checksum(&mut init);
        }
        server.handle(now, Bytes::from(init)).unwrap();
        let ack = server.poll_packet().expect("INIT-ACK");
        assert_eq!(ack[12], 2, "INIT-ACK");
        let tag = u32::from_be_bytes([ack[16], ack[17], ack[18], ack[19]]);
        peer.receive(now, ack);
        peer.pump(server, now);
        assert_eq!(events(server), vec![]);
        (tag, peer)
    }

    /// The cumulative TSN of the SACK the bridge answers with (delayed SACKs included).
    fn sack_cumulative_tsn(server: &mut SctpTransport, now: Instant) -> u32 {
        server.handle_timeout(now + std::time::Duration::from_secs(1));
        let p = std::iter::from_fn(|| server.poll_packet())
            .find(|p| p.len() >= 20 && p[12] == 3)
            .expect("SACK");
        u32::from_be_bytes([p[16], p[17], p[18], p[19]])
    }

    /// Regression (fuzz/sctp timeout): a FORWARD-TSN 2^31 − 1 ahead made rtc-sctp step through
    /// every TSN to it — a stalled media task in release; here, in a debug build, ≈ 1 minute and
    /// then `attempt to add with overflow` once the cumulative TSN reached 2^32 − 1.
    #[test]
    fn forward_tsn_far_ahead_is_cheap() {
        let now = Instant::now();
        let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
        let (tag, _peer) = established(&mut server, now, Some(0x8000_0001));
        server
            .handle(now, raw_packet(tag, 192, &u32::MAX.to_be_bytes()))
            .unwrap();
        assert_eq!(sack_cumulative_tsn(&mut server, now), u32::MAX);
    }

    /// Regression: the same walk overflowed (`attempt to add with overflow`) crossing TSN 2^32 − 1.
    #[test]
    fn forward_tsn_across_the_wrap() {
        let now = Instant::now();
        let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
        let (tag, _peer) = established(&mut server, now, Some(0xffff_fff0));
        server
            .handle(now, raw_packet(tag, 192, &0x10u32.to_be_bytes()))
            .unwrap();
        assert_eq!(sack_cumulative_tsn(&mut server, now), 0x10);
    }

    /// The peer opens the bridge channel on `stream` and sends `{}`; what the bridge reports.
    fn open_and_talk(
        peer: &mut Peer,
        server: &mut SctpTransport,
        now: Instant,
        stream: u16,
    ) -> Vec<SctpEvent> {
        let open = DcepOpen {
            channel_type: 0,
            priority: 256,
            reliability: 0,
            label: BRIDGE_CHANNEL_LABEL.into(),
            protocol: String::new(),
        };
        peer.send(now, stream, Ppi::Dcep, &encode_dcep_open(&open));
        peer.send(now, stream, Ppi::String, b"{}");
        peer.pump(server, now);
        events(server)
    }

    /// What [`open_and_talk`] reports when the association works.
    fn talked(stream: u16) -> Vec<SctpEvent> {
        vec![
            SctpEvent::ChannelOpen {
                stream,
                label: BRIDGE_CHANNEL_LABEL.into(),
                protocol: String::new(),
            },
            SctpEvent::Text {
                stream,
                text: "{}".into(),
            },
        ]
    }

    /// Regression (fuzz/sctp, input `crash-df05e9ae…`): an ERROR or ABORT chunk whose cause claims
    /// more bytes than the chunk holds panicked in rtc-sctp's parser (`range end out of bounds`) —
    /// in the media task, from any participant with a DTLS session. The packet is dropped now and
    /// the association carries on.
    #[test]
    fn an_error_cause_longer_than_its_chunk_is_dropped() {
        let now = Instant::now();
        let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
        let (tag, mut peer) = established(&mut server, now, None);
        for (chunk_type, value) in [
            (9u8, &[0x00, 0x01, 0x00, 0x2f][..]), // ERROR, a cause of 47 bytes in 4
            (6, &[0x00, 0x0d, 0x01, 0x00][..]),   // ABORT, a cause of 256 bytes in 4
        ] {
            let _ = server.handle(now, raw_packet(tag, chunk_type, value));
            assert_eq!(events(&mut server), vec![]);
        }
        assert_eq!(open_and_talk(&mut peer, &mut server, now, 1), talked(1));
    }

    /// Regression (issue 11): a second INIT replaced our association, but rtc-sctp's endpoint kept
    /// the old one (its tag and its slot) until told it drained, which nothing did — memory grew
    /// with every INIT, and after 100 000 the endpoint refused every INIT, so the participant could
    /// never restart SCTP. Now the endpoint holds one association however many INITs come.
    #[test]
    fn repeated_inits_release_the_associations_they_replace() {
        let now = Instant::now();
        let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
        let mut client = SctpTransport::new(Role::Client, ChannelSpec::default());
        client.connect(now).unwrap();
        let init = client.poll_packet().expect("INIT").to_vec();
        assert_eq!(init[12], 1, "INIT");
        // One more than rtc-sctp's `concurrent_associations`.
        for n in 1..=100_001u32 {
            // Header 12, chunk header 4: the initiate tag at 16.
            let mut p = init.clone();
            p[16..20].copy_from_slice(&n.to_be_bytes());
            checksum(&mut p);
            if let Err(e) = server.handle(now, Bytes::from(p)) {
                panic!("INIT {n}: {e}");
            }
            let ack = server.poll_packet().expect("INIT-ACK");
            assert_eq!(ack[12], 2, "INIT-ACK for INIT {n}");
            assert_eq!(server.poll_packet(), None);
        }
        // A real peer (re)starts after all that, and talks.
        let mut peer = Peer::connect(now);
        peer.pump(&mut server, now);
        assert_eq!(open_and_talk(&mut peer, &mut server, now, 1), talked(1));
    }
}
