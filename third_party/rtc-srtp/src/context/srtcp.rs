use super::*;
use crate::key_derivation::SRTCP_INDEX_SIZE;
use shared::{error::Result, marshal::Unmarshal};

use bytes::BytesMut;

impl Context {
    /// Bytes that protecting adds to an RTCP packet (SRTCP index and tag): the room
    /// `encrypt_rtcp_in_place` needs after the packet (patched, PATCHED.md).
    pub fn rtcp_overhead(&self) -> usize {
        SRTCP_INDEX_SIZE + self.cipher.rtcp_auth_tag_len() + self.cipher.aead_auth_tag_len()
    }

    /// Verifies and decrypts the SRTCP packet `buf` in place, in a buffer the caller owns;
    /// returns the length of the RTCP compound packet now at `buf[..n]` (patched, PATCHED.md).
    /// After a failed authentication the payload bytes of `buf` may have been overwritten
    /// (AEAD profiles): drop the packet.
    pub fn decrypt_rtcp_in_place(&mut self, buf: &mut [u8]) -> Result<usize> {
        // A received SRTCP packet must be at least the minimum valid size for the
        // negotiated profile: the RTCP header through the SSRC (read at bytes
        // 4..8), the trailing SRTCP index, and the auth tag that `get_rtcp_index`
        // and the cipher read from the end (the HMAC tag for AES-CM, the AEAD tag
        // for GCM). A shorter packet from the network would otherwise index out
        // of bounds and panic (a remotely triggerable DoS). This is self-
        // contained: it does not rely on the individual ciphers' own guards.
        let min_len = 8
            + SRTCP_INDEX_SIZE
            + self.cipher.rtcp_auth_tag_len()
            + self.cipher.aead_auth_tag_len();
        if buf.len() < min_len {
            return Err(Error::ErrTooShortRtcp);
        }

        rtcp::Header::unmarshal(&mut &buf[..])?;

        let index = self.cipher.get_rtcp_index(buf);
        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);

        // One lookup of the SSRC's state, held across the cipher call (PATCHED.md §3).
        let state = srtcp_state(
            &mut self.srtcp_ssrc_states,
            &self.new_srtcp_replay_detector,
            ssrc,
        );
        if let Some(replay_detector) = &mut state.replay_detector
            && !replay_detector.check(index as u64)
        {
            return Err(Error::SrtcpSsrcDuplicated(ssrc, index));
        }

        let n = self.cipher.decrypt_rtcp(buf, index, ssrc)?;

        if let Some(replay_detector) = &mut state.replay_detector {
            replay_detector.accept();
        }

        Ok(n)
    }

    /// DecryptRTCP decrypts a RTCP packet with an encrypted payload (into a new buffer; see
    /// [`Context::decrypt_rtcp_in_place`]).
    pub fn decrypt_rtcp(&mut self, encrypted: &[u8]) -> Result<BytesMut> {
        let mut buf = BytesMut::from(encrypted);
        let n = self.decrypt_rtcp_in_place(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Encrypts the RTCP compound packet `buf[..len]` in place, in a buffer the caller owns, and
    /// appends the SRTCP index and tag: `buf` needs [`Context::rtcp_overhead`] bytes of room
    /// after `len`. Returns the length of the SRTCP packet now at `buf[..n]` (patched,
    /// PATCHED.md).
    pub fn encrypt_rtcp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        if len < 8 {
            return Err(Error::ErrTooShortRtcp);
        }
        if buf.len() < len + self.rtcp_overhead() {
            return Err(Error::ErrBufferTooSmall);
        }

        rtcp::Header::unmarshal(&mut &buf[..len])?;

        let ssrc = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);

        let index = {
            let state = self.get_srtcp_ssrc_state(ssrc);
            state.srtcp_index += 1;
            if state.srtcp_index > MAX_SRTCP_INDEX {
                state.srtcp_index = 0;
            }
            state.srtcp_index
        };

        self.cipher.encrypt_rtcp(buf, len, index, ssrc)
    }

    /// EncryptRTCP encrypts an RTCP packet into a new buffer (see
    /// [`Context::encrypt_rtcp_in_place`]).
    pub fn encrypt_rtcp(&mut self, decrypted: &[u8]) -> Result<BytesMut> {
        let mut buf = self.protect_buffer(decrypted, self.rtcp_overhead());
        let n = self.encrypt_rtcp_in_place(&mut buf, decrypted.len())?;
        buf.truncate(n);
        Ok(buf)
    }
}
