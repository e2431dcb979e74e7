//! The client side of the bridge channel: SCTP over DTLS (RFC 8261, port 5000 both ends) and one
//! WebRTC data channel opened with DCEP (RFC 8832), as lib-jitsi-meet creates it:
//! label `JVB data channel`, protocol `http://jitsi.org/protocols/colibri`, reliable and ordered.
//! Messages are UTF-8 JSON with PPID 51.
//!
//! The DCEP OPEN encoding is the bridge's (`bridge::transport::sctp`).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bridge::transport::sctp::{DcepOpen, encode_dcep_open};
use bytes::Bytes;
use rtc_sctp::{
    Association, AssociationHandle, ClientConfig, DatagramEvent, Endpoint, EndpointConfig, Event,
    Payload, PayloadProtocolIdentifier as Ppi, TransportConfig,
};
use rtc_shared::TransportProtocol;

/// lib-jitsi-meet's bridge channel.
pub const CHANNEL_LABEL: &str = "JVB data channel";
pub const CHANNEL_PROTOCOL: &str = "http://jitsi.org/protocols/colibri";
const DCEP_ACK: u8 = 0x02;
/// The DTLS client opens even stream ids (RFC 8832 §6).
const STREAM: u16 = 0;
const MAX_MESSAGE: usize = 256 * 1024;

const PLACEHOLDER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 5000));

/// What the channel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The bridge acknowledged our DATA_CHANNEL_OPEN.
    Open,
    Text(String),
    Lost(String),
}

/// An SCTP association (client) carrying the bridge channel.
pub struct SctpClient {
    endpoint: Endpoint,
    assoc: Option<(AssociationHandle, Association)>,
    opened: bool,
    acked: bool,
    events: VecDeque<ChannelEvent>,
    outgoing: VecDeque<Bytes>,
    /// Messages written before the channel was acknowledged (sent in order after OPEN anyway: the
    /// stream is ordered, so DCEP OPEN precedes them).
    pub errors: u64,
}

impl Default for SctpClient {
    fn default() -> Self {
        Self::new()
    }
}

fn transport_config() -> TransportConfig {
    TransportConfig::default()
        .with_sctp_port(5000)
        .with_max_message_size(MAX_MESSAGE as u32)
        .with_max_num_inbound_streams(1024)
        .with_max_num_outbound_streams(1024)
}

impl SctpClient {
    pub fn new() -> Self {
        SctpClient {
            endpoint: Endpoint::new(
                PLACEHOLDER,
                TransportProtocol::UDP,
                Arc::new(EndpointConfig::new()),
                None,
            ),
            assoc: None,
            opened: false,
            acked: false,
            events: VecDeque::new(),
            outgoing: VecDeque::new(),
            errors: 0,
        }
    }

    /// Sends INIT (call once DTLS is connected).
    pub fn connect(&mut self, now: Instant) -> Result<(), String> {
        if self.assoc.is_some() {
            return Ok(());
        }
        let (h, a) = self
            .endpoint
            .connect(now, ClientConfig::new(transport_config()), PLACEHOLDER)
            .map_err(|e| e.to_string())?;
        self.assoc = Some((h, a));
        self.drive(now);
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.acked
    }

    /// Feeds one SCTP packet (decrypted DTLS application data).
    pub fn handle(&mut self, now: Instant, packet: Bytes) {
        match self.endpoint.handle(now, PLACEHOLDER, None, packet) {
            Some((h, DatagramEvent::AssociationEvent(ev))) => match &mut self.assoc {
                Some((ours, a)) if *ours == h => a.handle_event(ev),
                _ => self.errors += 1,
            },
            _ => self.errors += 1,
        }
        self.drive(now);
    }

    fn drive(&mut self, now: Instant) {
        let Some((h, a)) = &mut self.assoc else {
            return;
        };
        let h = *h;
        while let Some(ev) = a.poll_endpoint_event() {
            self.endpoint.handle_event(h, ev);
        }
        while let Some(ev) = a.poll() {
            match ev {
                Event::Connected if !self.opened => {
                    self.opened = true;
                    let open = encode_dcep_open(&DcepOpen {
                        channel_type: 0, // DATA_CHANNEL_RELIABLE (ordered)
                        priority: 256,
                        reliability: 0,
                        label: CHANNEL_LABEL.into(),
                        protocol: CHANNEL_PROTOCOL.into(),
                    });
                    let sent = a
                        .open_stream(STREAM, Ppi::Dcep)
                        .and_then(|mut s| s.write_with_ppi(now, &open, Ppi::Dcep));
                    if sent.is_err() {
                        self.errors += 1;
                    }
                }
                Event::AssociationLost { reason, .. } => {
                    self.events
                        .push_back(ChannelEvent::Lost(reason.to_string()));
                }
                Event::HandshakeFailed { reason } => {
                    self.events
                        .push_back(ChannelEvent::Lost(reason.to_string()));
                }
                _ => {}
            }
        }
        // The bridge answers on our stream; it opens none of its own.
        while a.accept_stream().is_some() {}
        if let Ok(mut s) = a.stream(STREAM) {
            while let Ok(Some(chunks)) = s.read_sctp() {
                let Ok(data) = chunks.to_payload(MAX_MESSAGE) else {
                    self.errors += 1;
                    continue;
                };
                match chunks.ppi {
                    Ppi::Dcep if data.first() == Some(&DCEP_ACK) && !self.acked => {
                        self.acked = true;
                        self.events.push_back(ChannelEvent::Open);
                    }
                    Ppi::String => self.events.push_back(ChannelEvent::Text(
                        String::from_utf8_lossy(&data).into_owned(),
                    )),
                    Ppi::StringEmpty => self.events.push_back(ChannelEvent::Text(String::new())),
                    _ => {}
                }
            }
        }
        while let Some(t) = a.poll_transmit(now) {
            if let Payload::RawEncode(packets) = t.message {
                self.outgoing.extend(packets);
            }
        }
    }

    /// Sends a text message on the bridge channel.
    pub fn send_text(&mut self, now: Instant, text: &str) -> Result<(), String> {
        if !self.acked {
            return Err("bridge channel not open".into());
        }
        let Some((_, a)) = &mut self.assoc else {
            return Err("no association".into());
        };
        a.stream(STREAM)
            .and_then(|mut s| s.write_with_ppi(now, text.as_bytes(), Ppi::String))
            .map_err(|e| e.to_string())?;
        self.drive(now);
        Ok(())
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

    /// Next SCTP packet for DTLS.
    pub fn poll_packet(&mut self) -> Option<Bytes> {
        self.outgoing.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ChannelEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::transport::sctp::{SctpEvent, SctpTransport};

    fn pump(
        now: Instant,
        client: &mut SctpClient,
        server: &mut SctpTransport,
    ) -> (Vec<ChannelEvent>, Vec<SctpEvent>) {
        let (mut ce, mut se) = (Vec::new(), Vec::new());
        for _ in 0..30 {
            let mut moved = false;
            while let Some(p) = client.poll_packet() {
                server.handle(now, p).unwrap();
                moved = true;
            }
            while let Some(p) = server.poll_packet() {
                client.handle(now, p);
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                se.push(e);
            }
            while let Some(e) = client.poll_event() {
                ce.push(e);
            }
            if !moved {
                break;
            }
        }
        (ce, se)
    }

    /// Our client against the bridge's SCTP server: INIT, DCEP OPEN/ACK, text both ways.
    #[test]
    fn opens_the_bridge_channel_against_the_bridge_sctp_server() {
        let now = Instant::now();
        let mut client = SctpClient::new();
        let mut server = SctpTransport::new();
        client.connect(now).unwrap();
        let (client_events, server_events) = pump(now, &mut client, &mut server);
        assert!(client.is_open());
        assert_eq!(client_events, vec![ChannelEvent::Open]);
        assert!(matches!(
            &server_events[..],
            [SctpEvent::ChannelOpen { label, protocol, .. }]
                if label == CHANNEL_LABEL && protocol == CHANNEL_PROTOCOL
        ));
        let stream = server.open_channel().unwrap();
        client
            .send_text(now, r#"{"colibriClass":"ReceiverVideoConstraints"}"#)
            .unwrap();
        server
            .send_text(now, stream, r#"{"colibriClass":"ForwardedSources"}"#)
            .unwrap();
        let (client_events, server_events) = pump(now, &mut client, &mut server);
        assert!(
            matches!(&server_events[..], [SctpEvent::Text { text, .. }] if text.contains("ReceiverVideoConstraints"))
        );
        assert_eq!(
            client_events,
            vec![ChannelEvent::Text(
                r#"{"colibriClass":"ForwardedSources"}"#.into()
            )]
        );
        assert_eq!(client.errors, 0);
    }
}
