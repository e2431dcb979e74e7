//! SRTP/SRTCP contexts of one endpoint, keyed from the DTLS handshake (RFC 5764 §4.2).
//!
//! Thin wrapper over `rtc-srtp`, patched to protect and unprotect in place in buffers the caller
//! owns (third_party/rtc-srtp/PATCHED.md): the media path decrypts into the endpoint's receive
//! buffer and encrypts into the port's reused transmit buffers, so no packet allocates.

use bytes::BytesMut;
use rtc_dtls::state::State;
use rtc_srtp::config::{Config, LABEL_EXTRACTOR_DTLS_SRTP};
use rtc_srtp::context::Context;
use rtc_srtp::option::ContextOption;

use super::dtls::SrtpProfile;
use super::replay::{MAX_SRTCP_INDEX, MAX_SRTP_INDEX, ReplayWindow};
use super::role::Role;
use rtc_dtls::crypto_provider::RTCCryptoProvider;

/// A fresh replay window per remote SSRC over the index space `0..=max` (`replay.rs`).
fn replay_window(max: u64) -> ContextOption {
    Box::new(move || Box::new(ReplayWindow::new(max)))
}

/// Why an SRTP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SrtpError {
    #[error("keying: {0}")]
    Keying(String),
    /// Authentication, replay, a malformed header, no room: the crate's error as is (building
    /// a message would allocate per dropped packet).
    #[error("{0}")]
    Crypto(#[from] rtc_shared::error::Error),
    /// The replay window already accepted this packet's index, or it is older than the window.
    #[error("replayed packet")]
    Replay,
}

/// Replays apart from the other failures (they are counted apart: `srtp_replay`).
fn unprotect_error(e: rtc_shared::error::Error) -> SrtpError {
    use rtc_shared::error::Error;
    match e {
        Error::SrtpSsrcDuplicated(..) | Error::SrtcpSsrcDuplicated(..) => SrtpError::Replay,
        e => SrtpError::Crypto(e),
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
            Some(replay_window(MAX_SRTP_INDEX)),
            Some(replay_window(MAX_SRTCP_INDEX)),
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

    /// Decrypts the SRTP packet `buf` in place; returns the RTP packet's length (`buf[..n]`).
    /// A packet that fails may have been overwritten: drop it.
    pub fn decrypt_rtp_in_place(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        self.remote
            .decrypt_rtp_in_place(buf)
            .map_err(unprotect_error)
    }

    /// Decrypts the SRTCP packet `buf` in place; returns the RTCP compound's length.
    pub fn decrypt_rtcp_in_place(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        self.remote
            .decrypt_rtcp_in_place(buf)
            .map_err(unprotect_error)
    }

    /// Encrypts `packet` into `out` (replacing its contents, reusing its capacity).
    pub fn encrypt_rtp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        out.clear();
        out.extend_from_slice(packet);
        self.encrypt_rtp_in_place(out)
    }

    /// Encrypts the RTP packet in `buf` where it is (the tag appended; `buf` grows only if it
    /// lacks the room): the forwarding path builds each receiver's copy in the transmit buffer it
    /// is sent from, so the packet is not copied again. On failure `buf` holds the packet as it was.
    pub fn encrypt_rtp_in_place(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ctx = &mut self.local;
        let overhead = ctx.rtp_overhead();
        protect_in_place(buf, overhead, |b, n| ctx.encrypt_rtp_in_place(b, n))
    }

    /// Encrypts an RTCP compound `packet` into `out` (replacing its contents).
    pub fn encrypt_rtcp_into(&mut self, packet: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        out.clear();
        out.extend_from_slice(packet);
        self.encrypt_rtcp_in_place(out)
    }

    /// [`SrtpSession::encrypt_rtp_in_place`] for an RTCP compound.
    pub fn encrypt_rtcp_in_place(&mut self, buf: &mut Vec<u8>) -> Result<(), SrtpError> {
        let ctx = &mut self.local;
        let overhead = ctx.rtcp_overhead();
        protect_in_place(buf, overhead, |b, n| ctx.encrypt_rtcp_in_place(b, n))
    }

    /// Decrypts into a new buffer (tests, benchmarks).
    pub fn decrypt_rtp(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        unprotect(packet, |b| self.decrypt_rtp_in_place(b))
    }

    /// Decrypts SRTCP into a new buffer (tests, benchmarks).
    pub fn decrypt_rtcp(&mut self, packet: &[u8]) -> Result<BytesMut, SrtpError> {
        unprotect(packet, |b| self.decrypt_rtcp_in_place(b))
    }

    /// Encrypts into a new buffer (tests, benchmarks, a participant's side).
    pub fn encrypt_rtp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::new();
        self.encrypt_rtp_into(packet, &mut out)?;
        Ok(out)
    }

    /// Encrypts RTCP into a new buffer (tests, benchmarks).
    pub fn encrypt_rtcp(&mut self, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = Vec::new();
        self.encrypt_rtcp_into(packet, &mut out)?;
        Ok(out)
    }
}

/// The packet in `buf` protected in place by `seal` (given `overhead` bytes of room after it).
/// On failure `buf` is cut back to the packet's length.
fn protect_in_place(
    buf: &mut Vec<u8>,
    overhead: usize,
    seal: impl FnOnce(&mut [u8], usize) -> rtc_shared::error::Result<usize>,
) -> Result<(), SrtpError> {
    let len = buf.len();
    buf.resize(len + overhead, 0);
    match seal(buf, len) {
        Ok(n) => {
            buf.truncate(n);
            Ok(())
        }
        Err(e) => {
            buf.truncate(len);
            Err(e.into())
        }
    }
}

fn unprotect(
    packet: &[u8],
    open: impl FnOnce(&mut [u8]) -> Result<usize, SrtpError>,
) -> Result<BytesMut, SrtpError> {
    let mut buf = BytesMut::from(packet);
    let n = open(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
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

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Sessions whose local and remote keys are those of the vectors file.
    fn vector_session(profile: SrtpProfile) -> SrtpSession {
        let provider = rtc_dtls::crypto_provider::default_provider().unwrap();
        let salt_len = match profile {
            SrtpProfile::AeadAes128Gcm => 12,
            SrtpProfile::Aes128CmHmacSha1_80 => 14,
        };
        let key: Vec<u8> = (0..16u8).map(|i| 0xE0 ^ i).collect();
        let salt: Vec<u8> = (0..salt_len).map(|i| 0x30 + i).collect();
        let keys = rtc_srtp::config::SessionKeys {
            local_master_key: key.clone(),
            local_master_salt: salt.clone(),
            remote_master_key: key,
            remote_master_salt: salt,
        };
        SrtpSession::from_keys(profile, &keys, provider.as_ref()).unwrap()
    }

    /// Known answers from the unpatched crate (testdata/srtp_unpatched_vectors.txt): both profiles,
    /// RTP with CSRCs and one- and two-byte header extensions, across the sequence-number wrap
    /// (rollover counter 1), and SRTCP compounds. The in-place encryption into a reused buffer
    /// gives the same bytes, and in-place decryption of those bytes gives the plaintext back.
    #[test]
    fn in_place_protection_matches_the_unpatched_crate() {
        let vectors = include_str!("testdata/srtp_unpatched_vectors.txt");
        for (name, profile) in [
            ("cm", SrtpProfile::Aes128CmHmacSha1_80),
            ("gcm", SrtpProfile::AeadAes128Gcm),
        ] {
            let mut tx = vector_session(profile);
            // The same keys, encrypting each RTP packet where it is (the forwarding path).
            let mut tx_in_place = vector_session(profile);
            let mut rx = vector_session(profile);
            let mut out = Vec::with_capacity(2048);
            let lines: Vec<Vec<&str>> = vectors
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| l.split(' ').collect::<Vec<_>>())
                .filter(|f| f[0] == name)
                .collect();
            assert_eq!(lines.len(), 12, "{name}");
            let mut checked = 0;
            for pair in lines.chunks(2) {
                let (p, e) = (&pair[0], &pair[1]);
                assert_eq!((p[1], p[2], p[3], e[3]), (e[1], e[2], "plain", "enc"));
                let (plain, enc) = (hex(p[4]), hex(e[4]));
                let rtcp = p[1] == "rtcp";
                if rtcp {
                    tx.encrypt_rtcp_into(&plain, &mut out).unwrap();
                } else {
                    tx.encrypt_rtp_into(&plain, &mut out).unwrap();
                }
                assert_eq!(&out[..], &enc[..], "{name} {} {}", p[1], p[2]);
                if !rtcp {
                    // A buffer holding just the packet: it grows for the tag.
                    let mut b = plain.clone();
                    b.shrink_to_fit();
                    tx_in_place.encrypt_rtp_in_place(&mut b).unwrap();
                    assert_eq!(b, enc, "{name} in place {}", p[2]);
                }
                let mut buf = enc.clone();
                let n = if rtcp {
                    rx.decrypt_rtcp_in_place(&mut buf).unwrap()
                } else {
                    rx.decrypt_rtp_in_place(&mut buf).unwrap()
                };
                assert_eq!(&buf[..n], &plain[..], "{name} {} {}", p[1], p[2]);
                // A replay of the same bytes is refused, in place too.
                let mut again = enc.clone();
                let replay = if rtcp {
                    rx.decrypt_rtcp_in_place(&mut again)
                } else {
                    rx.decrypt_rtp_in_place(&mut again)
                };
                assert!(replay.is_err(), "{name} {} {} replayed", p[1], p[2]);
                checked += 1;
            }
            assert_eq!(checked, 6);
        }
    }

    /// The patched crate authenticates SRTCP whatever its E flag says: a packet with the flag
    /// cleared (so "not encrypted") and a made-up tag is refused, not handed over as plaintext.
    #[test]
    fn srtcp_without_the_encryption_flag_is_still_authenticated() {
        let mut tx = vector_session(SrtpProfile::Aes128CmHmacSha1_80);
        let mut rx = vector_session(SrtpProfile::Aes128CmHmacSha1_80);
        let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 9];
        let mut forged = rr.to_vec();
        forged.extend_from_slice(&[0, 0, 0, 7]); // E = 0, index 7
        forged.extend_from_slice(&[0xAB; 10]); // not the tag
        assert!(rx.decrypt_rtcp_in_place(&mut forged.clone()).is_err());
        // A genuine one still passes.
        let enc = tx.encrypt_rtcp(&rr).unwrap();
        assert_eq!(&rx.decrypt_rtcp(&enc).unwrap()[..], &rr[..]);
    }

    /// In-place calls on a buffer that is too short, or with no room for the tag, fail cleanly;
    /// a packet that cannot be encrypted where it is stays as it was.
    #[test]
    fn in_place_calls_check_their_buffers() {
        for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
            let mut s = vector_session(profile);
            let plain = rtp(9);
            let mut short = plain[..8].to_vec();
            assert!(s.encrypt_rtp_in_place(&mut short).is_err());
            assert_eq!(short, &plain[..8]);
            let mut out = Vec::new();
            s.encrypt_rtp_into(&plain, &mut out).unwrap();
            for n in 0..out.len() {
                let mut b = out[..n].to_vec();
                assert!(s.decrypt_rtp_in_place(&mut b).is_err(), "{n}");
            }
            for n in 0..12 {
                let mut b = [0u8; 64];
                b[0] = 0x80;
                assert!(s.decrypt_rtcp_in_place(&mut b[..n]).is_err(), "{n}");
            }
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
