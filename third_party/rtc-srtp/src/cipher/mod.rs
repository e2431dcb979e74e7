pub mod cipher_aead_aes_gcm;
pub mod cipher_aes_cm_hmac_sha1;

use crypto::{CryptoError, RTCCrypto};

use shared::error::{Error, Result};

type Kdf = fn(&dyn RTCCrypto, u8, &[u8], &[u8], usize, usize) -> Result<Vec<u8>>;

pub(crate) fn crypto_error(error: CryptoError) -> Error {
    Error::Crypto(error.to_string())
}

///NOTE: Auth tag and AEAD auth tag are placed at the different position in SRTCP
///
///In non-AEAD cipher, the authentication tag is placed *after* the ESRTCP word
///(Encrypted-flag and SRTCP index).
///
///> AES_128_CM_HMAC_SHA1_80
///> | RTCP Header | Encrypted payload |E| SRTCP Index | Auth tag |
///>                                   ^               |----------|
///>                                   |                ^
///>                                   |                authTagLen=10
///>                                   aeadAuthTagLen=0
///
///In AEAD cipher, the AEAD authentication tag is embedded in the ciphertext.
///It is *before* the ESRTCP word (Encrypted-flag and SRTCP index).
///
///> AEAD_AES_128_GCM
///> | RTCP Header | Encrypted payload | AEAD auth tag |E| SRTCP Index |
///>                                   |---------------|               ^
///>                                    ^                              authTagLen=0
///>                                    aeadAuthTagLen=16
///
///See https://tools.ietf.org/html/rfc7714 for the full specifications.
///
/// Cipher represents a implementation of one
/// of the SRTP Specific ciphers.
///
/// Patched (PATCHED.md): every operation works in place on a buffer the caller owns. `buf[..len]`
/// holds the packet; protecting appends the tag (and SRTCP index) after it, so `buf` must have
/// that much room beyond `len`; unprotecting verifies, then decrypts in place and returns the
/// plaintext length. On an authentication failure the AES-CM ciphers leave `buf` untouched; the
/// AEAD ones may have overwritten its payload (drop the packet).
pub(crate) trait Cipher: Send {
    /// Get RTP authenticated tag length.
    fn rtp_auth_tag_len(&self) -> usize;

    /// Get RTCP authenticated tag length.
    fn rtcp_auth_tag_len(&self) -> usize;

    /// Get AEAD auth key length of the cipher.
    fn aead_auth_tag_len(&self) -> usize;

    /// Retrieved RTCP index.
    fn get_rtcp_index(&self, input: &[u8]) -> usize;

    /// Encrypts the RTP packet `buf[..len]` (header of `rtp.header_len` bytes) in place and appends
    /// the tag; returns the protected length.
    fn encrypt_rtp(&mut self, buf: &mut [u8], len: usize, rtp: RtpFields, roc: u32)
    -> Result<usize>;

    /// Verifies and decrypts the SRTP packet `buf` in place; returns the plaintext length.
    fn decrypt_rtp(&mut self, buf: &mut [u8], rtp: RtpFields, roc: u32) -> Result<usize>;

    /// Encrypts the RTCP packet `buf[..len]` in place and appends the SRTCP trailer; returns the
    /// protected length.
    fn encrypt_rtcp(
        &mut self,
        buf: &mut [u8],
        len: usize,
        srtcp_index: usize,
        ssrc: u32,
    ) -> Result<usize>;

    /// Verifies and decrypts the SRTCP packet `buf` in place; returns the plaintext length.
    fn decrypt_rtcp(&mut self, buf: &mut [u8], srtcp_index: usize, ssrc: u32) -> Result<usize>;
}

/// What the ciphers need of an RTP header: read from the packet's own bytes (no allocation),
/// so the header length is the one on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtpFields {
    pub(crate) header_len: usize,
    pub(crate) ssrc: u32,
    pub(crate) sequence_number: u16,
}

impl RtpFields {
    /// The fields of an already-parsed header (the `*_with_header` entry points).
    pub(crate) fn of(header: &rtp::Header) -> Self {
        use shared::marshal::MarshalSize;
        Self {
            header_len: header.marshal_size(),
            ssrc: header.ssrc,
            sequence_number: header.sequence_number,
        }
    }

    /// Reads the fixed header, the CSRC list and the extension header's length (RFC 3550 §5.1,
    /// §5.3.1) from `p`, failing like `rtp::Header::unmarshal` when they do not fit.
    pub(crate) fn parse(p: &[u8]) -> Result<Self> {
        if p.len() < 12 {
            return Err(Error::ErrHeaderSizeInsufficient);
        }
        let mut header_len = 12 + 4 * usize::from(p[0] & 0x0F);
        if p.len() < header_len {
            return Err(Error::ErrHeaderSizeInsufficient);
        }
        if p[0] & 0x10 != 0 {
            let Some(ext) = p.get(header_len..header_len + 4) else {
                return Err(Error::ErrHeaderSizeInsufficientForExtension);
            };
            header_len += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            if p.len() < header_len {
                return Err(Error::ErrHeaderSizeInsufficientForExtension);
            }
        }
        Ok(Self {
            header_len,
            ssrc: u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
            sequence_number: u16::from_be_bytes([p[2], p[3]]),
        })
    }
}
