//! DTLS 1.2 for DTLS-SRTP (RFC 5763/5764) over `rtc-dtls`, as server or client.
//!
//! The bridge is the DTLS server (it offers `actpass`, the browser answers `active`); a
//! participant ([`Role::Client`]) starts the handshake once ICE has selected a pair. One
//! self-signed ECDSA certificate per process (the bridge) or per participant; its SHA-256
//! fingerprint goes into the transport description. The peer's certificate is checked against the
//! fingerprint(s) it signalled once the handshake completes (before any key is used), by the
//! endpoint transport.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rtc_dtls::config::{ClientAuthType, ConfigBuilder, ExtendedMasterSecretType, HandshakeConfig};
use rtc_dtls::crypto::Certificate;
use rtc_dtls::crypto_provider::RTCCryptoProvider;
use rtc_dtls::endpoint::{Endpoint, EndpointEvent};
use rtc_dtls::extension::extension_use_srtp::SrtpProtectionProfile;
use rtc_dtls::state::State;
use rtc_shared::TransportProtocol;

use super::role::Role;

/// The SRTP protection profiles the bridge can negotiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// SRTP_AEAD_AES_128_GCM (RFC 7714): preferred, cheapest per packet.
    AeadAes128Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80 (RFC 5764): the profile every peer supports.
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    pub(crate) fn to_dtls(self) -> SrtpProtectionProfile {
        match self {
            SrtpProfile::AeadAes128Gcm => SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm,
            SrtpProfile::Aes128CmHmacSha1_80 => SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80,
        }
    }

    pub(crate) fn from_dtls(p: SrtpProtectionProfile) -> Option<Self> {
        match p {
            SrtpProtectionProfile::Srtp_Aead_Aes_128_Gcm => Some(SrtpProfile::AeadAes128Gcm),
            SrtpProtectionProfile::Srtp_Aes128_Cm_Hmac_Sha1_80 => {
                Some(SrtpProfile::Aes128CmHmacSha1_80)
            }
            _ => None,
        }
    }

    pub(crate) fn to_srtp(self) -> rtc_srtp::protection_profile::ProtectionProfile {
        use rtc_srtp::protection_profile::ProtectionProfile as P;
        match self {
            SrtpProfile::AeadAes128Gcm => P::AeadAes128Gcm,
            SrtpProfile::Aes128CmHmacSha1_80 => P::Aes128CmHmacSha1_80,
        }
    }

    /// The name used in SDP/RFC registries.
    pub fn name(self) -> &'static str {
        match self {
            SrtpProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
            SrtpProfile::Aes128CmHmacSha1_80 => "SRTP_AES128_CM_HMAC_SHA1_80",
        }
    }
}

/// Errors building the DTLS side.
#[derive(Debug, thiserror::Error)]
pub enum DtlsSetupError {
    #[error("crypto provider: {0}")]
    Crypto(String),
    #[error("certificate generation: {0}")]
    Certificate(String),
    #[error("DTLS configuration: {0}")]
    Config(String),
}

/// A certificate fingerprint as signalled (`hash="sha-256"`, `AB:CD:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub algorithm: String,
    pub value: String,
}

fn hex_colon(d: &[u8]) -> String {
    let mut s = String::with_capacity(d.len() * 3);
    for (i, b) in d.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// Digest of a DER certificate in the signalled notation, or None for an unknown hash.
pub fn fingerprint_of(der: &[u8], algorithm: &str) -> Option<String> {
    use ring::digest;
    let alg = match algorithm.to_ascii_lowercase().as_str() {
        "sha-256" => &digest::SHA256,
        "sha-384" => &digest::SHA384,
        "sha-512" => &digest::SHA512,
        "sha-1" => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        _ => return None,
    };
    Some(hex_colon(digest::digest(alg, der).as_ref()))
}

/// Whether `der` matches any of `fingerprints` (JVB accepts sha-512/384/256/1).
pub fn matches_any(der: &[u8], fingerprints: &[Fingerprint]) -> bool {
    fingerprints.iter().any(|f| {
        fingerprint_of(der, &f.algorithm).is_some_and(|v| v.eq_ignore_ascii_case(f.value.trim()))
    })
}

/// The bridge's DTLS identity: one per process, shared by every endpoint.
#[derive(Clone)]
pub struct DtlsIdentity {
    certificate: Certificate,
    fingerprint: Fingerprint,
    provider: Arc<dyn RTCCryptoProvider>,
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DtlsIdentity")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl DtlsIdentity {
    /// Generates a fresh self-signed ECDSA P-256 certificate.
    pub fn generate() -> Result<Self, DtlsSetupError> {
        Self::generate_named("jitsi-bridge")
    }

    /// [`DtlsIdentity::generate`] with another subject name (the load generator's participants
    /// use the same kind of certificate as a browser's peer connection).
    pub fn generate_named(subject: &str) -> Result<Self, DtlsSetupError> {
        let provider = rtc_dtls::crypto_provider::default_provider()
            .map_err(|e| DtlsSetupError::Crypto(e.to_string()))?;
        let certificate =
            Certificate::generate_self_signed(vec![subject.to_owned()], provider.crypto())
                .map_err(|e| DtlsSetupError::Certificate(e.to_string()))?;
        let der = certificate
            .certificate
            .first()
            .ok_or_else(|| DtlsSetupError::Certificate("empty chain".into()))?;
        let value = fingerprint_of(der.as_ref(), "sha-256")
            .ok_or_else(|| DtlsSetupError::Certificate("sha-256 unavailable".into()))?;
        Ok(Self {
            certificate,
            fingerprint: Fingerprint {
                algorithm: "sha-256".into(),
                value,
            },
            provider,
        })
    }

    /// The SHA-256 fingerprint to signal (`setup="actpass"`).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub fn provider(&self) -> &Arc<dyn RTCCryptoProvider> {
        &self.provider
    }

    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// A handshake configuration for `role` offering `profiles`, with `provider` (this identity's
    /// operations with the transport's injected randomness, [`TransportRng::dtls_provider`]).
    ///
    /// As server, rtc-dtls picks the first profile of the *client's* list that we enable, so the
    /// set of enabled profiles is what this controls (Chromium lists GCM before CM_SHA1); as
    /// client, `profiles` is the offered list in preference order.
    ///
    /// [`TransportRng::dtls_provider`]: super::rng::TransportRng::dtls_provider
    pub(crate) fn handshake_config(
        &self,
        role: Role,
        profiles: &[SrtpProfile],
        provider: Arc<dyn RTCCryptoProvider>,
    ) -> Result<Arc<HandshakeConfig>, DtlsSetupError> {
        let mut b = ConfigBuilder::default()
            .with_crypto_provider(provider)
            .with_certificates(vec![self.certificate.clone()])
            .with_srtp_protection_profiles(profiles.iter().map(|p| p.to_dtls()).collect())
            .with_extended_master_secret(ExtendedMasterSecretType::Require)
            // No CA chain: the peer's self-signed certificate is compared with its signalled
            // fingerprint after the handshake instead.
            .with_insecure_skip_verify(true)
            .with_mtu(1200);
        if role == Role::Server {
            // We need the browser's certificate to compare it with its fingerprint.
            b = b.with_client_auth(ClientAuthType::RequireAnyClientCert);
        }
        let cfg = match role {
            Role::Server => b.build(false, None),
            Role::Client => b.build(true, Some(PLACEHOLDER)),
        }
        .map_err(|e| DtlsSetupError::Config(e.to_string()))?;
        Ok(Arc::new(cfg))
    }
}

/// What the DTLS layer reports to the endpoint.
#[derive(Debug)]
pub enum DtlsOutput {
    Connected,
    ApplicationData(BytesMut),
    Closed,
}

/// The DTLS association of one endpoint, either side. The rtc-dtls endpoint keys associations by
/// address; we use a fixed placeholder because the real destination is whatever ICE selected (it
/// may change).
pub struct DtlsSession {
    endpoint: Endpoint,
    /// The client's handshake configuration until [`DtlsSession::start`] uses it.
    client_config: Option<Arc<HandshakeConfig>>,
    started: bool,
    connected: bool,
}

const PLACEHOLDER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 9));

impl DtlsSession {
    /// A server answers the first ClientHello; a client waits for [`DtlsSession::start`].
    pub fn new(role: Role, config: Arc<HandshakeConfig>) -> Self {
        let (server, client_config) = match role {
            Role::Server => (Some(config), None),
            Role::Client => (None, Some(config)),
        };
        Self {
            endpoint: Endpoint::new(PLACEHOLDER, TransportProtocol::UDP, server),
            started: client_config.is_none(),
            client_config,
            connected: false,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the handshake is under way (always for a server; after `start` for a client).
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// A client sends its ClientHello (once); a server does nothing.
    pub fn start(&mut self, now: Instant) -> Result<(), String> {
        let Some(config) = self.client_config.take() else {
            return Ok(());
        };
        self.started = true;
        self.endpoint
            .connect(now, PLACEHOLDER, config, None)
            .map_err(|e| e.to_string())
    }

    /// Feeds one DTLS datagram; outputs are appended to `out`.
    pub fn handle(
        &mut self,
        now: Instant,
        datagram: &[u8],
        out: &mut Vec<DtlsOutput>,
    ) -> Result<(), String> {
        if !self.started {
            return Err("DTLS datagram before our ClientHello".into());
        }
        let events = self
            .endpoint
            .read(now, PLACEHOLDER, None, BytesMut::from(datagram))
            .map_err(|e| e.to_string())?;
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

    /// Encrypts and queues application data (SCTP packets).
    pub fn write(&mut self, now: Instant, data: &[u8]) -> Result<(), String> {
        self.endpoint
            .write(now, PLACEHOLDER, data)
            .map_err(|e| e.to_string())
    }

    pub fn poll_transmit(&mut self) -> Option<BytesMut> {
        self.endpoint.poll_transmit().map(|m| m.message)
    }

    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        if self
            .endpoint
            .poll_timeout(&PLACEHOLDER)
            .is_some_and(|t| t <= now)
        {
            self.endpoint
                .handle_timeout(PLACEHOLDER, now)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.endpoint.poll_timeout(&PLACEHOLDER)
    }

    /// Negotiated state (keys, profile, peer certificate) of the association.
    pub fn state(&self) -> Option<&State> {
        self.endpoint.get_connection_state(PLACEHOLDER)
    }

    /// Sends close_notify and forgets the association.
    pub fn close(&mut self, now: Instant) {
        let _ = self.endpoint.stop(now, PLACEHOLDER);
        self.connected = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_fingerprint_is_sha256_of_certificate() {
        let id = DtlsIdentity::generate().unwrap();
        let fp = id.fingerprint();
        assert_eq!(fp.algorithm, "sha-256");
        assert_eq!(fp.value.len(), 32 * 3 - 1);
        let der = id.certificate.certificate[0].as_ref();
        assert!(matches_any(der, std::slice::from_ref(fp)));
        let lower = Fingerprint {
            algorithm: "SHA-256".into(),
            value: fp.value.to_lowercase(),
        };
        assert!(matches_any(der, &[lower]));
        let wrong = Fingerprint {
            algorithm: "sha-256".into(),
            value: "00".repeat(32),
        };
        assert!(!matches_any(der, &[wrong]));
        let unknown = Fingerprint {
            algorithm: "md5".into(),
            value: fp.value.clone(),
        };
        assert!(!matches_any(der, &[unknown]));
        for role in [Role::Server, Role::Client] {
            let cfg = id.handshake_config(role, &[SrtpProfile::AeadAes128Gcm], id.provider.clone());
            assert!(cfg.is_ok());
        }
    }
}
