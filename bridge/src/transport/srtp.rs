//! SRTP/SRTCP contexts of one endpoint, keyed from the DTLS handshake (RFC 5764 §4.2).
//!
//! Thin wrapper over `rtc-srtp`. Each protect/unprotect returns a freshly allocated `BytesMut`
//! (one allocation per packet, the crate's API); see README.md for the measured cost.

use bytes::BytesMut;
use rtc_dtls::state::State;
use rtc_srtp::config::{Config, LABEL_EXTRACTOR_DTLS_SRTP};
use rtc_srtp::context::Context;
use rtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};

use super::dtls::SrtpProfile;
use super::role::Role;
use rtc_dtls::crypto_provider::RTCCryptoProvider;

/// Replay window (packets). Generous because video bursts reorder on the way.
const REPLAY_WINDOW: usize = 1024;

/// Why an SRTP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    #[error("keying: {0}")]
    Keying(String),
    #[error("{0}")]
    Crypto(String),
    /// The replay window already accepted this packet's index, or it is older than the window.
    #[error("replayed packet")]
    Replay,
}

/// Replays apart from the other failures (they are counted apart: `srtp_replay`).
fn unprotect_error(e: rtc_shared::error::Error) -> SrtpError {
    use rtc_shared::error::Error;
    match e {
        Error::SrtpSsrcDuplicated(..) | Error::SrtcpSsrcDuplicated(..) => SrtpError::Replay,
        e => SrtpError::Crypto(e.to_string()),
    }
}

/// Inbound (decrypt) and outbound (encrypt) contexts.
pub struct SrtpSession {
    profile: SrtpProfile,
    /// Protects what we send (our side's write key).
    local: Context,
    /// Unprotects what the peer sends (the peer's write key).
    remote: Context,
}

impl SrtpSession {
    /// Derives both contexts from a completed DTLS association in which we played `role`: the
    /// client write key protects what the DTLS client sends (RFC 5764 §4.2).
    pub fn from_dtls(
        state: &State,
        provider: &dyn RTCCryptoProvider,
        role: Role,
    ) -> Result<Self, SrtpError> {
        let profile = SrtpProfile::from_dtls(state.srtp_protection_profile())
            .ok_or_else(|| SrtpError::Keying("no supported SRTP profile negotiated".into()))?;
        let mut cfg = Config {
            profile: profile.to_srtp(),
            ..Config::default()
        };
        let len = cfg.keying_material_len();
        let km = state
            .export_keying_material(LABEL_EXTRACTOR_DTLS_SRTP, &[], len)
            .map_err(|e| SrtpError::Keying(e.to_string()))?;
        cfg.set_session_keys_from_keying_material(km.as_ref(), role == Role::Client)
            .map_err(|e| SrtpError::Keying(e.to_string()))?;
        Self::from_keys(profile, &cfg.keys, provider)
    }

    /// Builds the contexts from explicit keys (tests, benchmarks).
    pub fn from_keys(
        profile: SrtpProfile,
        keys: &rtc_srtp::config::SessionKeys,
        provider: &dyn RTCCryptoProvider,
    ) -> Result<Self, SrtpError> {
        let p = profile.to_srtp();
        let local = Context::new(
            &keys.local_master_key,
            &keys.local_master_salt,
            p,
            None,
            None,
            provider.crypto(),
        )
        .map_err(|e| SrtpError::Keying(e.to_string()))?;
        let remote = Context::new(
            &keys.remote_master_key,
            &keys.remote_master_salt,
            p,
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
            provider.crypto(),
        )
        .map_err(|e| SrtpError::Keying(e.to_string()))?;
        Ok(Self {
            profile,
            local,
            remote,
        })
    }

    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    pub fn decrypt_rtp(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        self.remote.decrypt_rtp(packet).map_err(unprotect_error)
    }

    pub fn decrypt_rtcp(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        self.remote.decrypt_rtcp(packet).map_err(unprotect_error)
    }

    pub fn encrypt_rtp(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        self.local
            .encrypt_rtp(packet)
            .map_err(|e| SrtpError::Crypto(e.to_string()))
    }

    pub fn encrypt_rtcp(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        self.local
            .encrypt_rtcp(packet)
            .map_err(|e| SrtpError::Crypto(e.to_string()))
    }
}

/// Minimal validation of an RTP header (RFC 3550 §5.1) before decryption: version 2, fixed
/// header, CSRCs and extension inside the packet. Returns the SSRC.
pub fn rtp_ssrc(p: &[u8]) -> Option<u32> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let cc = usize::from(p[0] & 0x0F);
    let mut len = 12 + 4 * cc;
    if p[0] & 0x10 != 0 {
        let ext = p.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    if len > p.len() {
        return None;
    }
    Some(u32::from_be_bytes([p[8], p[9], p[10], p[11]]))
}

/// Minimal validation of an RTCP compound packet header: version 2, at least 8 bytes. Returns
/// the sender SSRC of the first packet.
pub fn rtcp_sender_ssrc(p: &[u8]) -> Option<u32> {
    if p.len() < 8 || p[0] >> 6 != 2 {
        return None;
    }
    Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(swap: bool) -> rtc_srtp::config::SessionKeys {
        let (a, b) = (vec![1u8; 16], vec![2u8; 16]);
        let (sa, sb) = (vec![3u8; 14], vec![4u8; 14]);
        if swap {
            rtc_srtp::config::SessionKeys {
                local_master_key: b,
                local_master_salt: sb,
                remote_master_key: a,
                remote_master_salt: sa,
            }
        } else {
            rtc_srtp::config::SessionKeys {
                local_master_key: a,
                local_master_salt: sa,
                remote_master_key: b,
                remote_master_salt: sb,
            }
        }
    }

    fn gcm_keys(swap: bool) -> rtc_srtp::config::SessionKeys {
        let mut k = keys(swap);
        k.local_master_salt.truncate(12);
        k.remote_master_salt.truncate(12);
        k
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![
            0x80,
            96,
            (seq >> 8) as u8,
            seq as u8,
            0,
            0,
            0,
            1,
            0xDE,
            0xAD,
            0xBE,
            0xEF,
        ];
        p.extend(std::iter::repeat_n(0x55, 1000));
        p
    }

    #[test]
    fn roundtrip_both_profiles_and_reject_tampering() {
        let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
        for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
            let (ka, kb) = match profile {
                SrtpProfile::AeadAes128Gcm => (gcm_keys(false), gcm_keys(true)),
                SrtpProfile::Aes128CmHmacSha1_80 => (keys(false), keys(true)),
            };
            let mut a = SrtpSession::from_keys(profile, &ka, provider.as_ref()).unwrap();
            let mut b = SrtpSession::from_keys(profile, &kb, provider.as_ref()).unwrap();
            let plain = rtp(1);
            let enc = a.encrypt_rtp(&plain).unwrap();
            assert_ne!(&enc[12..], &plain[12..]);
            assert_eq!(&b.decrypt_rtp(&enc).unwrap()[..], &plain[..]);
            // Replay rejected, as a replay.
            assert!(matches!(b.decrypt_rtp(&enc), Err(SrtpError::Replay)));
            // Tampered rejected, as an authentication failure (and not taken for a replay).
            let mut bad = a.encrypt_rtp(&rtp(2)).unwrap().to_vec();
            bad[20] ^= 1;
            assert!(matches!(b.decrypt_rtp(&bad), Err(SrtpError::Crypto(_))));
            // Truncated rejected, no panic.
            let good = a.encrypt_rtp(&rtp(3)).unwrap();
            for n in 0..good.len() {
                let _ = b.decrypt_rtp(&good[..n]);
            }
            // RTCP.
            let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
            let enc = a.encrypt_rtcp(&rr).unwrap();
            assert_eq!(&b.decrypt_rtcp(&enc).unwrap()[..], &rr[..]);
            assert!(matches!(b.decrypt_rtcp(&enc), Err(SrtpError::Replay)));
            assert!(b.decrypt_rtcp(&enc[..enc.len() - 1]).is_err());
        }
    }

    #[test]
    fn header_checks() {
        assert_eq!(rtp_ssrc(&rtp(1)), Some(0xDEADBEEF));
        assert_eq!(rtp_ssrc(&rtp(1)[..11]), None);
        let mut p = rtp(1);
        p[0] = 0x40;
        assert_eq!(rtp_ssrc(&p), None);
        let mut p = rtp(1)[..16].to_vec();
        p[0] = 0x90; // extension bit, length points past the end
        p[14] = 0xFF;
        assert_eq!(rtp_ssrc(&p), None);
        assert_eq!(rtcp_sender_ssrc(&[0x80, 201, 0, 1, 0, 0, 0, 9]), Some(9));
        assert_eq!(rtcp_sender_ssrc(&[0x80, 201, 0]), None);
    }
}
