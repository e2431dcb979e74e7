use super::*;

use bytes::BytesMut;

impl Context {
    /// Bytes that protecting adds to an RTP packet: the room `encrypt_rtp_in_place` needs after
    /// the packet (patched, PATCHED.md).
    pub fn rtp_overhead(&self) -> usize {
        self.cipher.rtp_auth_tag_len() + self.cipher.aead_auth_tag_len()
    }

    /// Verifies and decrypts the SRTP packet `buf` in place, in a buffer the caller owns;
    /// returns the length of the RTP packet now at `buf[..n]` (patched, PATCHED.md).
    ///
    /// # Errors
    ///
    /// Fails if authentication fails, if the packet is a replay, or if it is too short to hold
    /// its header and the profile's auth tag. After a failed authentication the payload bytes
    /// of `buf` may have been overwritten (AEAD profiles): drop the packet.
    pub fn decrypt_rtp_in_place(&mut self, buf: &mut [u8]) -> Result<usize> {
        let rtp = RtpFields::parse(buf)?;
        self.decrypt_rtp_fields(buf, rtp)
    }

    fn decrypt_rtp_fields(&mut self, buf: &mut [u8], rtp: RtpFields) -> Result<usize> {
        let auth_tag_len = self.cipher.rtp_auth_tag_len();
        if buf.len() < rtp.header_len + auth_tag_len {
            return Err(Error::ErrTooShortRtp);
        }

        // One lookup of the SSRC's state, held across the cipher call (PATCHED.md §3).
        let state = srtp_state(
            &mut self.srtp_ssrc_states,
            &self.new_srtp_replay_detector,
            rtp.ssrc,
        );
        let (roc, diff, _) = state.next_rollover_count(rtp.sequence_number);
        if let Some(replay_detector) = &mut state.replay_detector
            && !replay_detector.check(rtp.sequence_number as u64)
        {
            return Err(Error::SrtpSsrcDuplicated(rtp.ssrc, rtp.sequence_number));
        }

        let n = self.cipher.decrypt_rtp(buf, rtp, roc)?;
        if let Some(replay_detector) = &mut state.replay_detector {
            replay_detector.accept();
        }
        state.update_rollover_count(rtp.sequence_number, diff);

        Ok(n)
    }

    /// Decrypts an SRTP packet whose header has already been parsed.
    ///
    /// Saves re-parsing when the caller needed the header to route the packet. The header must
    /// be the one belonging to `encrypted`.
    ///
    /// # Errors
    ///
    /// Fails if authentication fails, if the packet is a replay, or if it is too short to hold
    /// the profile's auth tag.
    pub fn decrypt_rtp_with_header(
        &mut self,
        encrypted: &[u8],
        header: &rtp::Header,
    ) -> Result<BytesMut> {
        let mut buf = BytesMut::from(encrypted);
        let n = self.decrypt_rtp_fields(&mut buf, RtpFields::of(header))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// DecryptRTP decrypts a RTP packet with an encrypted payload (into a new buffer; see
    /// [`Context::decrypt_rtp_in_place`]).
    pub fn decrypt_rtp(&mut self, encrypted: &[u8]) -> Result<BytesMut> {
        let mut buf = BytesMut::from(encrypted);
        let n = self.decrypt_rtp_in_place(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Encrypts the RTP packet `buf[..len]` in place, in a buffer the caller owns, and appends
    /// the tag: `buf` needs [`Context::rtp_overhead`] bytes of room after `len`. Returns the
    /// length of the SRTP packet now at `buf[..n]` (patched, PATCHED.md).
    ///
    /// # Errors
    ///
    /// Fails if `buf` has no room for the tag, the header does not fit in `len`, or the
    /// context has protected 2^48 packets of this SSRC.
    pub fn encrypt_rtp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize> {
        let packet = buf.get(..len).ok_or(Error::ErrBufferTooSmall)?;
        let rtp = RtpFields::parse(packet)?;
        self.encrypt_rtp_fields(buf, len, rtp)
    }

    fn encrypt_rtp_fields(&mut self, buf: &mut [u8], len: usize, rtp: RtpFields) -> Result<usize> {
        if len < rtp.header_len || buf.len() < len + self.rtp_overhead() {
            return Err(Error::ErrBufferTooSmall);
        }
        // One lookup of the SSRC's state, held across the cipher call (PATCHED.md §3).
        let state = srtp_state(
            &mut self.srtp_ssrc_states,
            &self.new_srtp_replay_detector,
            rtp.ssrc,
        );
        let (roc, diff, ovf) = state.next_rollover_count(rtp.sequence_number);
        if ovf {
            // ... when 2^48 SRTP packets or 2^31 SRTCP packets have been secured with the same key
            // (whichever occurs before), the key management MUST be called to provide new master key(s)
            // (previously stored and used keys MUST NOT be used again), or the session MUST be terminated.
            // https://www.rfc-editor.org/rfc/rfc3711#section-9.2
            return Err(Error::ErrExceededMaxPackets);
        }

        let n = self.cipher.encrypt_rtp(buf, len, rtp, roc)?;
        state.update_rollover_count(rtp.sequence_number, diff);

        Ok(n)
    }

    /// Encrypts an RTP payload, using an already-parsed header.
    ///
    /// Saves re-parsing when the caller has just built the header. Returns the full protected
    /// packet, header included.
    ///
    /// # Errors
    ///
    /// Fails if the SRTP context has no key for this SSRC or the cipher rejects the input.
    pub fn encrypt_rtp_with_header(
        &mut self,
        plaintext: &[u8],
        header: &rtp::Header,
    ) -> Result<BytesMut> {
        let mut buf = self.protect_buffer(plaintext, self.rtp_overhead());
        let n = self.encrypt_rtp_fields(&mut buf, plaintext.len(), RtpFields::of(header))?;
        buf.truncate(n);
        Ok(buf)
    }

    /// EncryptRTP encrypts an RTP packet into a new buffer (see
    /// [`Context::encrypt_rtp_in_place`]).
    pub fn encrypt_rtp(&mut self, plaintext: &[u8]) -> Result<BytesMut> {
        let mut buf = self.protect_buffer(plaintext, self.rtp_overhead());
        let n = self.encrypt_rtp_in_place(&mut buf, plaintext.len())?;
        buf.truncate(n);
        Ok(buf)
    }

    /// `packet` followed by `overhead` zero bytes, in one allocation.
    pub(crate) fn protect_buffer(&self, packet: &[u8], overhead: usize) -> BytesMut {
        let mut buf = BytesMut::with_capacity(packet.len() + overhead);
        buf.extend_from_slice(packet);
        buf.resize(packet.len() + overhead, 0);
        buf
    }
}
