//! DTLS 1.2 client side of DTLS-SRTP (RFC 5763/5764) over `rtc-dtls`: the participant answers the
//! bridge's `actpass` with `setup="active"`, so it starts the handshake once ICE has selected a pair,
//! checks the bridge's certificate against the fingerprint from the session-initiate, and keys SRTP
//! as the client (client write key protects what we send).
//!
//! Fingerprint matching and the SRTP contexts are the bridge's (`bridge::transport::{dtls, srtp}`).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bridge::transport::dtls::{DtlsIdentity, Fingerprint, SrtpProfile, matches_any};
use bridge::transport::srtp::SrtpSession;
use bytes::BytesMut;
use rtc_dtls::config::{ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto_provider::RTCCryptoProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_dtls::state::State;
use rtc_shared::TransportProtocol;
use rtc_srtp::config::{Config as SrtpConfig, LABEL_EXTRACTOR_DTLS_SRTP};

/// Why the DTLS side could not be set up or keyed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtlsError {
    #[error("crypto provider: {0}")]
    Crypto(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("DTLS configuration: {0}")]
    Config(String),
    #[error("DTLS: {0}")]
    Protocol(String),
    #[error("the bridge's certificate does not match the signalled fingerprint")]
    FingerprintMismatch,
    #[error("SRTP keying: {0}")]
    Keying(String),
}

/// A participant's certificate (one per participant, as a browser has one per peer connection):
/// the same kind of identity as the bridge's.
#[derive(Debug, Clone)]
pub struct ClientIdentity(DtlsIdentity);

impl ClientIdentity {
    /// A fresh self-signed ECDSA P-256 certificate and its SHA-256 fingerprint.
    pub fn generate() -> Result<Self, DtlsError> {
        DtlsIdentity::generate_named("loadtest")
            .map(ClientIdentity)
            .map_err(|e| DtlsError::Certificate(e.to_string()))
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        self.0.fingerprint()
    }

    pub fn provider(&self) -> &Arc<dyn RTCCryptoProvider> {
        self.0.provider()
    }

    fn client_config(&self, profiles: &[SrtpProfile]) -> Result<Arc<HandshakeConfig>, DtlsError> {
        let cfg = ConfigBuilder::default()
            .with_crypto_provider(self.provider().clone())
            .with_certificates(vec![self.0.certificate().clone()])
            .with_srtp_protection_profiles(profiles.iter().map(|p| to_dtls(*p)).collect())
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            // No CA chain: the bridge's self-signed certificate is checked against the signalled
            // fingerprint after the handshake instead.
            .with_insecure_skip_verify(true)
            .with_mtu(1200)
            .build(true, Some(PLACEHOLDER))
            .map_err(|e| DtlsError::Config(e.to_string()))?;
        Ok(Arc::new(cfg))
    }
}

fn to_dtls(p: SrtpProfile) -> SrtpProtectionProfile {
    match p {
        SrtpProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
        SrtpProfile::Aes128CmHmacSha1_80 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
    }
}

fn from_dtls(p: SrtpProtectionProfile) -> Option<SrtpProfile> {
    match p {
        SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Some(SrtpProfile::AeadAes128Gcm),
        SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
            Some(SrtpProfile::Aes128CmHmacSha1_80)
        }
        _ => None,
    }
}

/// The SRTP contexts of a DTLS client: keys exported from the association (RFC 5764 §4.2), client
/// write key local.
pub fn srtp_from_client_state(
    state: &State,
    provider: &dyn RTCCryptoProvider,
) -> Result<(SrtpSession, SrtpProfile), DtlsError> {
    let profile = from_dtls(state.srtp_protection_profile())
        .ok_or_else(|| DtlsError::Keying("no supported SRTP profile negotiated".into()))?;
    let mut cfg = SrtpConfig {
        profile: match profile {
            SrtpProfile::AeadAes128Gcm => {
                rtc_srtp::protection_profile::ProtectionProfile::AeadAes128Gcm
            }
            SrtpProfile::Aes128CmHmacSha1_80 => {
                rtc_srtp::protection_profile::ProtectionProfile::Aes128CmHmacSha1_80
            }
        },
        ..SrtpConfig::default()
    };
    let km = state
        .export_keying_material(LABEL_EXTRACTOR_DTLS_SRTP, &[], cfg.keying_material_len())
        .map_err(|e| DtlsError::Keying(e.to_string()))?;
    cfg.set_session_keys_from_keying_material(km.as_ref(), true)
        .map_err(|e| DtlsError::Keying(e.to_string()))?;
    let session = SrtpSession::from_keys(profile, &cfg.keys, provider)
        .map_err(|e| DtlsError::Keying(e.to_string()))?;
    Ok((session, profile))
}

/// What the DTLS client reports.
#[derive(Debug)]
pub enum DtlsOutput {
    Connected,
    ApplicationData(BytesMut),
    Closed,
}

/// rtc-dtls keys associations by address; the real destination is the ICE-selected pair.
const PLACEHOLDER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 2), 9));

/// The DTLS client of one participant.
pub struct DtlsClient {
    endpoint: Endpoint,
    config: Arc<HandshakeConfig>,
    started: bool,
    connected: bool,
}

impl DtlsClient {
    /// A client offering `profiles` (in preference order, as Chromium: GCM first).
    pub fn new(identity: &ClientIdentity, profiles: &[SrtpProfile]) -> Result<Self, DtlsError> {
        Ok(DtlsClient {
            endpoint: Endpoint::new(PLACEHOLDER, TransportProtocol::UDP, None),
            config: identity.client_config(profiles)?,
            started: false,
            connected: false,
        })
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Sends the ClientHello.
    pub fn start(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        self.endpoint
            .connect(now, PLACEHOLDER, self.config.clone(), None)
            .map_err(|e| DtlsError::Protocol(e.to_string()))
    }

    /// Feeds one DTLS datagram.
    pub fn handle(
        &mut self,
        now: Instant,
        datagram: &[u8],
        out: &mut Vec<DtlsOutput>,
    ) -> Result<(), DtlsError> {
        if !self.started {
            return Err(DtlsError::Protocol(
                "DTLS datagram before ClientHello".into(),
            ));
        }
        let events = self
            .endpoint
            .read(now, PLACEHOLDER, None, BytesMut::from(datagram))
            .map_err(|e| DtlsError::Protocol(e.to_string()))?;
        for e in events {
            match e {
                EndpointEvent::HandshakeComplete => {
                    self.connected = true;
                    out.push(DtlsOutput::Connected);
                }
                EndpointEvent::ApplicationData(d) => out.push(DtlsOutput::ApplicationData(d)),
                EndpointEvent::PeerClosed => {
                    self.connected = false;
                    out.push(DtlsOutput::Closed);
                }
                #[allow(unreachable_patterns)]
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks the bridge's certificate against the signalled fingerprints and keys SRTP.
    pub fn verify_and_key(
        &self,
        fingerprints: &[Fingerprint],
        provider: &dyn RTCCryptoProvider,
    ) -> Result<(SrtpSession, SrtpProfile), DtlsError> {
        let state = self
            .endpoint
            .get_connection_state(PLACEHOLDER)
            .ok_or_else(|| DtlsError::Protocol("no association state".into()))?;
        let ok = state
            .peer_certificates
            .first()
            .is_some_and(|der| matches_any(der, fingerprints));
        if !ok {
            return Err(DtlsError::FingerprintMismatch);
        }
        srtp_from_client_state(state, provider)
    }

    /// Encrypts application data (SCTP packets).
    pub fn write(&mut self, now: Instant, data: &[u8]) -> Result<(), DtlsError> {
        self.endpoint
            .write(now, PLACEHOLDER, data)
            .map_err(|e| DtlsError::Protocol(e.to_string()))
    }

    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        self.endpoint.poll_transmit().map(|m| m.message)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsError> {
        if self
            .endpoint
            .poll_timeout(&PLACEHOLDER)
            .is_some_and(|t| t <= now)
        {
            self.endpoint
                .handle_timeout(PLACEHOLDER, now)
                .map_err(|e| DtlsError::Protocol(e.to_string()))?;
        }
        Ok(())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.started {
            return None;
        }
        self.endpoint.poll_timeout(&PLACEHOLDER)
    }

    /// close_notify.
    pub fn close(&mut self, now: Instant) {
        let _ = self.endpoint.stop(now, PLACEHOLDER);
        self.connected = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::transport::stun::{Builder, Class, METHOD_BINDING};
    use bridge::transport::{
        DropCounters, DtlsIdentity, EndpointTransport, IceConfig as BridgeIceConfig,
        IceCredentials, IceMode, RemoteTransport, TransportConfig, TransportEvent,
    };

    /// Our client against the bridge's real endpoint transport (lite ICE so a single check selects).
    #[test]
    fn handshake_with_the_bridge_endpoint_keys_srtp_both_ways() {
        let now = Instant::now();
        let us: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let bridge_identity = DtlsIdentity::generate().unwrap();
        let cfg = TransportConfig {
            ice: BridgeIceConfig {
                mode: IceMode::Lite,
                ..BridgeIceConfig::default()
            },
            ..TransportConfig::default()
        };
        let bridge_creds = IceCredentials {
            ufrag: "brdg".into(),
            pwd: "bridgepasswordbridgepass".into(),
        };
        let mut ep = EndpointTransport::new(
            bridge_creds.clone(),
            &bridge_identity,
            cfg,
            Arc::new(DropCounters::new()),
        )
        .unwrap();
        let identity = ClientIdentity::generate().unwrap();
        ep.set_remote(
            now,
            RemoteTransport {
                ice: IceCredentials {
                    ufrag: "ours".into(),
                    pwd: "ourpasswordourpassword00".into(),
                },
                fingerprints: vec![identity.fingerprint().clone()],
                candidates: vec![],
            },
        );
        // A nominating check from "us" so the lite bridge selects our address.
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[7; 12])
            .username("brdg:ours")
            .ice_controlling(1)
            .use_candidate()
            .integrity(bridge_creds.pwd.as_bytes())
            .fingerprint();
        ep.handle_datagram(now, us, &buf);
        while ep.poll_transmit().is_some() {}

        let mut client = DtlsClient::new(
            &identity,
            &[SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
        )
        .unwrap();
        client.start(now).unwrap();
        let mut out = Vec::new();
        let mut bridge_events = Vec::new();
        for _ in 0..20 {
            let mut moved = false;
            while let Some(d) = client.poll_transmit() {
                ep.handle_datagram(now, us, &d);
                moved = true;
            }
            while let Some(t) = ep.poll_transmit() {
                client.handle(now, &t.data, &mut out).unwrap();
                moved = true;
            }
            while let Some(e) = ep.poll_event() {
                bridge_events.push(e);
            }
            if !moved {
                break;
            }
        }
        assert!(client.is_connected());
        assert!(
            bridge_events.contains(&TransportEvent::DtlsConnected(SrtpProfile::AeadAes128Gcm)),
            "{bridge_events:?}"
        );
        // Fingerprint check: the right one keys, a wrong one is refused.
        let wrong = Fingerprint {
            algorithm: "sha-256".into(),
            value: ["AB"; 32].join(":"),
        };
        assert_eq!(
            client
                .verify_and_key(&[wrong], identity.provider().as_ref())
                .err(),
            Some(DtlsError::FingerprintMismatch)
        );
        let (mut srtp, profile) = client
            .verify_and_key(
                std::slice::from_ref(bridge_identity.fingerprint()),
                identity.provider().as_ref(),
            )
            .unwrap();
        assert_eq!(profile, SrtpProfile::AeadAes128Gcm);
        // Media both ways with the derived keys.
        let rtp = [0x80u8, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 1, 2, 3, 4];
        let enc = srtp.encrypt_rtp(&rtp).unwrap();
        ep.handle_datagram(now, us, &enc);
        assert_eq!(
            ep.poll_event(),
            Some(TransportEvent::Rtp(BytesMut::from(&rtp[..])))
        );
        let back = ep.protect(&rtp, false).unwrap();
        assert_eq!(&srtp.decrypt_rtp(&back.data).unwrap()[..], &rtp[..]);
    }
}
