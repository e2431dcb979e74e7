//! A DTLS client standing in for the browser (rtc-dtls, client side, with a certificate of its own),
//! and the loop that runs its handshake against an [`EndpointTransport`].

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bridge::transport::{DtlsIdentity, EndpointTransport, Fingerprint, PacketKind, classify};
use bytes::BytesMut;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType};
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_shared::TransportProtocol;

use crate::stun_util::PEER;

/// Where the client thinks the bridge is (only a key for its association table).
pub const BRIDGE: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 10000));

/// The client's certificate, generated once per process.
pub fn client_identity() -> &'static DtlsIdentity {
    static ID: OnceLock<DtlsIdentity> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate_named("peer").expect("client identity"))
}

/// The fingerprint the client signals.
pub fn client_fingerprint() -> Fingerprint {
    client_identity().fingerprint().clone()
}

/// The client side of one DTLS association.
pub struct DtlsClient {
    endpoint: Endpoint,
    pub connected: bool,
    /// Application data received from the bridge.
    pub received: Vec<BytesMut>,
}

impl DtlsClient {
    /// Starts the handshake (the ClientHello is queued).
    pub fn connect(now: Instant) -> Self {
        let id = client_identity();
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(id.provider().clone())
            .with_certificates(vec![id.certificate().clone()])
            .with_srtp_protection_profiles(vec![
                SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
                SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
            ])
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            .with_insecure_skip_verify(true)
            .build(true, Some(BRIDGE))
            .expect("client config");
        let mut endpoint = Endpoint::new(PEER, TransportProtocol::UDP, None);
        endpoint
            .connect(now, BRIDGE, Arc::new(cfg), None)
            .expect("connect");
        DtlsClient {
            endpoint,
            connected: false,
            received: Vec::new(),
        }
    }

    /// Datagrams the client wants to send.
    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        self.endpoint.poll_transmit().map(|t| t.message)
    }

    /// A datagram from the bridge.
    pub fn read(&mut self, now: Instant, data: &[u8]) {
        if let Ok(events) = self.endpoint.read(now, BRIDGE, None, BytesMut::from(data)) {
            for e in events {
                match e {
                    EndpointEvent::HandshakeComplete => self.connected = true,
                    EndpointEvent::ApplicationData(d) => self.received.push(d),
                    _ => {}
                }
            }
        }
    }

    /// Encrypts `data` as application data (fails before the handshake completed).
    pub fn write(&mut self, now: Instant, data: &[u8]) -> bool {
        self.endpoint.write(now, BRIDGE, data).is_ok()
    }
}

/// Moves datagrams between the client and the endpoint until neither has anything to send (at most
/// `rounds` round trips). `tamper` sees every client datagram before the endpoint does.
pub fn pump(
    ep: &mut EndpointTransport,
    client: &mut DtlsClient,
    now: Instant,
    rounds: usize,
    mut tamper: impl FnMut(&mut Vec<u8>),
) {
    for _ in 0..rounds {
        let mut moved = false;
        while let Some(t) = client.poll_transmit() {
            let mut d = t.to_vec();
            tamper(&mut d);
            ep.handle_datagram(now, PEER, &d);
            moved = true;
        }
        while let Some(t) = ep.poll_transmit() {
            if classify(&t.data) == PacketKind::Dtls {
                client.read(now, &t.data);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
}
