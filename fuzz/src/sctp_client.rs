//! The browser's side of the SCTP association (rtc-sctp, client), run against the bridge's
//! [`SctpTransport`] with packets handed over directly (what DTLS carries as application data), and
//! the header fix-up that lets fuzzed packets into an established association: the association's
//! verification tag and a valid CRC-32c.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bridge::transport::Role;
use bridge::transport::sctp::{ChannelSpec, DcepOpen, SctpTransport, encode_dcep_open};
use bytes::Bytes;
use rtc_sctp::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Payload,
    PayloadProtocolIdentifier as Ppi, TransportConfig,
};
use rtc_shared::TransportProtocol;

const CLIENT: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 5000));
const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 5000));
/// The stream the client opens the bridge channel on (Chrome uses 1 as the DTLS client).
pub const CHANNEL_STREAM: u16 = 1;

/// How far the client gets before the fuzzed packets arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Nothing: the bridge has no association.
    Nothing,
    /// The client's INIT was answered (INIT-ACK), no COOKIE-ECHO yet.
    InitSent,
    /// The four-way handshake completed.
    Established,
    /// Established, and the bridge channel opened with DATA_CHANNEL_OPEN (and acknowledged).
    ChannelOpen,
}

/// The client endpoint, its association, and the bridge's verification tag once known.
pub struct SctpClient {
    endpoint: Endpoint,
    assoc: (AssociationHandle, Association),
    /// The tag the bridge expects in packets to it (its INIT-ACK's Initiate Tag).
    pub server_tag: Option<u32>,
}

impl SctpClient {
    pub fn connect(now: Instant) -> Self {
        let mut endpoint = Endpoint::new(
            CLIENT,
            TransportProtocol::UDP,
            Arc::new(EndpointConfig::new()),
            None,
        );
        let transport = TransportConfig::default()
            .with_sctp_port(5000)
            .with_max_num_inbound_streams(1024)
            .with_max_num_outbound_streams(1024);
        let assoc = endpoint
            .connect(now, ClientConfig::new(transport), SERVER)
            .expect("sctp connect");
        SctpClient {
            endpoint,
            assoc,
            server_tag: None,
        }
    }

    /// Packets the client wants to send.
    pub fn transmits(&mut self, now: Instant) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(t) = self.assoc.1.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.message {
                out.extend(packets);
            }
        }
        out
    }

    /// A packet from the bridge.
    pub fn receive(&mut self, now: Instant, p: Bytes) {
        if self.server_tag.is_none() && p.len() >= 20 && p[12] == 2 {
            self.server_tag = Some(u32::from_be_bytes([p[16], p[17], p[18], p[19]]));
        }
        let (h, a) = &mut self.assoc;
        if let Some((ch, DatagramEvent::AssociationEvent(ev))) =
            self.endpoint.handle(now, SERVER, None, p)
            && ch == *h
        {
            a.handle_event(ev);
        }
        while let Some(ev) = a.poll_endpoint_event() {
            self.endpoint.handle_event(*h, ev);
        }
        while a.poll().is_some() {}
    }

    /// Sends `data` on `stream` with `ppi` (opening the stream on first use).
    pub fn send(&mut self, now: Instant, stream: u16, ppi: Ppi, data: &[u8]) -> bool {
        let a = &mut self.assoc.1;
        let s = match a.stream(stream) {
            Ok(s) => Ok(s),
            Err(_) => a.open_stream(stream, ppi),
        };
        match s {
            Ok(mut s) => s.write_with_ppi(now, data, ppi).is_ok(),
            Err(_) => false,
        }
    }
}

/// Exchanges packets between the client and the bridge until both are quiet (bounded).
pub fn pump(client: &mut SctpClient, server: &mut SctpTransport, now: Instant) {
    for _ in 0..16 {
        let out = client.transmits(now);
        let mut moved = !out.is_empty();
        for p in out {
            let _ = server.handle(now, p);
        }
        while let Some(p) = server.poll_packet() {
            client.receive(now, p);
            moved = true;
        }
        if !moved {
            break;
        }
    }
}

/// The bridge's transport with the client brought to `stage`. `None` client for [`Stage::Nothing`].
pub fn setup(stage: Stage, now: Instant) -> (SctpTransport, Option<SctpClient>) {
    let mut server = SctpTransport::new(Role::Server, ChannelSpec::default());
    if stage == Stage::Nothing {
        return (server, None);
    }
    let mut client = SctpClient::connect(now);
    if stage == Stage::InitSent {
        for p in client.transmits(now) {
            let _ = server.handle(now, p);
        }
        while let Some(p) = server.poll_packet() {
            if client.server_tag.is_none() && p.len() >= 20 && p[12] == 2 {
                client.server_tag = Some(u32::from_be_bytes([p[16], p[17], p[18], p[19]]));
            }
        }
        return (server, Some(client));
    }
    pump(&mut client, &mut server, now);
    if stage == Stage::ChannelOpen {
        let open = encode_dcep_open(&DcepOpen {
            channel_type: 0,
            priority: 256,
            reliability: 0,
            label: "JVB data channel".into(),
            protocol: String::new(),
        });
        client.send(now, CHANNEL_STREAM, Ppi::Dcep, &open);
        pump(&mut client, &mut server, now);
    }
    while server.poll_event().is_some() {}
    (server, Some(client))
}

/// Writes `tag` as the packet's verification tag (if given) and recomputes its checksum.
pub fn fix_header(packet: &mut [u8], tag: Option<u32>) {
    if packet.len() < 12 {
        return;
    }
    if let Some(t) = tag {
        packet[4..8].copy_from_slice(&t.to_be_bytes());
    }
    packet[8..12].fill(0);
    let sum = crc32c::crc32c(packet);
    packet[8..12].copy_from_slice(&sum.to_le_bytes());
}
