#[cfg(test)]
mod context_test;
#[cfg(test)]
mod srtcp_test;
#[cfg(test)]
mod srtp_test;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use crypto::RTCCrypto;
use shared::replay_detector::*;

use crate::cipher::cipher_aead_aes_gcm::*;
use crate::cipher::cipher_aes_cm_hmac_sha1::*;
use crate::cipher::*;
use crate::option::*;
use crate::protection_profile::*;
use shared::error::{Error, Result};

/// SRTCP protection and unprotection.
pub mod srtcp;
/// SRTP protection and unprotection.
pub mod srtp;

const MAX_ROC: u32 = u32::MAX;
const SEQ_NUM_MEDIAN: u16 = 1 << 15;
const SEQ_NUM_MAX: u16 = u16::MAX;

/// Encrypt/Decrypt state for a single SRTP SSRC
#[derive(Default)]
pub(crate) struct SrtpSsrcState {
    ssrc: u32,
    index: u64,
    rollover_has_processed: bool,
    replay_detector: Option<Box<dyn ReplayDetector>>,
}

/// Encrypt/Decrypt state for a single SRTCP SSRC
#[derive(Default)]
pub(crate) struct SrtcpSsrcState {
    srtcp_index: usize,
    ssrc: u32,
    replay_detector: Option<Box<dyn ReplayDetector>>,
}

impl SrtpSsrcState {
    pub fn next_rollover_count(&self, sequence_number: u16) -> (u32, i32, bool) {
        let local_roc = (self.index >> 16) as u32;
        let local_seq = self.index as u16;

        let mut guess_roc = local_roc;

        let diff = if self.rollover_has_processed {
            let seq = (sequence_number as i32).wrapping_sub(local_seq as i32);
            // When local_roc is equal to 0, and entering seq-local_seq > SEQ_NUM_MEDIAN
            // judgment, it will cause guess_roc calculation error
            if self.index > SEQ_NUM_MEDIAN as _ {
                if local_seq < SEQ_NUM_MEDIAN {
                    if seq > SEQ_NUM_MEDIAN as i32 {
                        guess_roc = local_roc.wrapping_sub(1);
                        seq.wrapping_sub(SEQ_NUM_MAX as i32 + 1)
                    } else {
                        seq
                    }
                } else if local_seq - SEQ_NUM_MEDIAN > sequence_number {
                    guess_roc = local_roc.wrapping_add(1);
                    seq.wrapping_add(SEQ_NUM_MAX as i32 + 1)
                } else {
                    seq
                }
            } else {
                // local_roc is equal to 0
                seq
            }
        } else {
            0i32
        };

        (guess_roc, diff, (guess_roc == 0 && local_roc == MAX_ROC))
    }

    /// https://tools.ietf.org/html/rfc3550#appendix-A.1
    pub fn update_rollover_count(&mut self, sequence_number: u16, diff: i32) {
        if !self.rollover_has_processed {
            self.index |= sequence_number as u64;
            self.rollover_has_processed = true;
        } else {
            self.index = self.index.wrapping_add(diff as _);
        }
    }
}

/// Hashes the SSRC keys of the per-SSRC state maps (patched, PATCHED.md §3): one multiply and
/// a fold instead of SipHash-1-3. Every protected or unprotected packet looks its SSRC up once;
/// SipHash was a visible share of the bridge's per-packet CPU. The keys an attacker can choose
/// are bounded before they get here (the bridge decrypts only signalled SSRCs, at most a few
/// dozen per endpoint), so flooding a map with colliding keys is not a concern.
#[derive(Clone, Copy, Default)]
pub(crate) struct SsrcHash;

/// The [`Hasher`] of [`SsrcHash`].
#[derive(Default)]
pub(crate) struct SsrcHasher(u64);

impl Hasher for SsrcHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        let h = (self.0 ^ u64::from(n)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl BuildHasher for SsrcHash {
    type Hasher = SsrcHasher;

    fn build_hasher(&self) -> SsrcHasher {
        SsrcHasher::default()
    }
}

type SsrcMap<T> = HashMap<u32, T, SsrcHash>;

/// The per-SSRC states of one direction (patched, PATCHED.md §4): kept in a vector, found through
/// a map from SSRC to position, and the last one used remembered, so that consecutive packets
/// of one SSRC (every packet of a single stream, the packets of a video frame) skip the hash
/// lookup. A bridge protects each forwarded packet once per receiver, each with its own context.
pub(crate) struct SsrcStates<T> {
    states: Vec<T>,
    index: SsrcMap<usize>,
    /// The SSRC last looked up and its position in `states` (`usize::MAX`: none yet).
    last: (u32, usize),
}

impl<T> Default for SsrcStates<T> {
    fn default() -> Self {
        SsrcStates {
            states: Vec::new(),
            index: SsrcMap::default(),
            last: (0, usize::MAX),
        }
    }
}

impl<T> SsrcStates<T> {
    /// The state of `ssrc`, made by `make` on its first packet.
    fn get_or_insert_with(&mut self, ssrc: u32, make: impl FnOnce() -> T) -> &mut T {
        let (last, at) = self.last;
        if last == ssrc && at < self.states.len() {
            return &mut self.states[at];
        }
        let states = &mut self.states;
        let at = *self.index.entry(ssrc).or_insert_with(|| {
            states.push(make());
            states.len() - 1
        });
        self.last = (ssrc, at);
        &mut self.states[at]
    }

    fn get(&self, ssrc: u32) -> Option<&T> {
        self.index.get(&ssrc).and_then(|&i| self.states.get(i))
    }
}

/// The state of `ssrc` in `states`, created on its first packet. A free function over the one
/// field (not a `&mut self` method) so that a caller can hold it across a call on the cipher:
/// one lookup per packet (patched, PATCHED.md §3).
fn srtp_state<'a>(
    states: &'a mut SsrcStates<SrtpSsrcState>,
    new_replay_detector: &ContextOption,
    ssrc: u32,
) -> &'a mut SrtpSsrcState {
    // The replay detector (a boxed sliding-window detector backed by a heap-allocated bit
    // buffer) is only constructed on the first packet for a given SSRC.
    states.get_or_insert_with(ssrc, || SrtpSsrcState {
        ssrc,
        replay_detector: Some(new_replay_detector()),
        ..Default::default()
    })
}

/// [`srtp_state`] for SRTCP.
fn srtcp_state<'a>(
    states: &'a mut SsrcStates<SrtcpSsrcState>,
    new_replay_detector: &ContextOption,
    ssrc: u32,
) -> &'a mut SrtcpSsrcState {
    states.get_or_insert_with(ssrc, || SrtcpSsrcState {
        ssrc,
        replay_detector: Some(new_replay_detector()),
        ..Default::default()
    })
}

/// Context represents a SRTP cryptographic context
/// Context can only be used for one-way operations
/// it must either used ONLY for encryption or ONLY for decryption
pub struct Context {
    cipher: Box<dyn Cipher>,

    srtp_ssrc_states: SsrcStates<SrtpSsrcState>,
    srtcp_ssrc_states: SsrcStates<SrtcpSsrcState>,

    new_srtp_replay_detector: ContextOption,
    new_srtcp_replay_detector: ContextOption,
}

impl Context {
    /// Creates an SRTP context.
    ///
    /// The crypto implementation is supplied by the caller; this crate never resolves a default.
    /// Borrowed, not owned: it is only needed to build the keyed cipher/MAC objects below, which
    /// are what the context retains.
    pub fn new(
        master_key: &[u8],
        master_salt: &[u8],
        profile: ProtectionProfile,
        srtp_ctx_opt: Option<ContextOption>,
        srtcp_ctx_opt: Option<ContextOption>,
        crypto: &dyn RTCCrypto,
    ) -> Result<Context> {
        let key_len = profile.key_len();
        let salt_len = profile.salt_len();

        if master_key.len() != key_len {
            return Err(Error::SrtpMasterKeyLength(key_len, master_key.len()));
        } else if master_salt.len() != salt_len {
            return Err(Error::SrtpSaltLength(salt_len, master_salt.len()));
        }
        profile.ensure_crypto_supported(crypto)?;

        let cipher: Box<dyn Cipher> = match profile {
            ProtectionProfile::Aes128CmHmacSha1_32
            | ProtectionProfile::Aes128CmHmacSha1_80
            | ProtectionProfile::Aes256CmHmacSha1_80
            | ProtectionProfile::Aes256CmHmacSha1_32 => Box::new(CipherAesCmHmacSha1::new(
                profile,
                master_key,
                master_salt,
                crypto,
            )?),

            ProtectionProfile::AeadAes128Gcm | ProtectionProfile::AeadAes256Gcm => {
                // `CipherAeadAesGcm::new` selects AES-128 vs AES-256 from the
                // profile itself, so both GCM profiles share one arm.
                Box::new(CipherAeadAesGcm::new(
                    profile,
                    master_key,
                    master_salt,
                    crypto,
                )?)
            }
        };

        let srtp_ctx_opt = if let Some(ctx_opt) = srtp_ctx_opt {
            ctx_opt
        } else {
            srtp_no_replay_protection()
        };

        let srtcp_ctx_opt = if let Some(ctx_opt) = srtcp_ctx_opt {
            ctx_opt
        } else {
            srtcp_no_replay_protection()
        };

        Ok(Context {
            cipher,
            srtp_ssrc_states: SsrcStates::default(),
            srtcp_ssrc_states: SsrcStates::default(),
            new_srtp_replay_detector: srtp_ctx_opt,
            new_srtcp_replay_detector: srtcp_ctx_opt,
        })
    }

    fn get_srtp_ssrc_state(&mut self, ssrc: u32) -> &mut SrtpSsrcState {
        srtp_state(
            &mut self.srtp_ssrc_states,
            &self.new_srtp_replay_detector,
            ssrc,
        )
    }

    fn get_srtcp_ssrc_state(&mut self, ssrc: u32) -> &mut SrtcpSsrcState {
        srtcp_state(
            &mut self.srtcp_ssrc_states,
            &self.new_srtcp_replay_detector,
            ssrc,
        )
    }

    /// roc returns SRTP rollover counter value of specified SSRC.
    fn get_roc(&self, ssrc: u32) -> Option<u32> {
        self.srtp_ssrc_states
            .get(ssrc)
            .map(|s| (s.index >> 16) as _)
    }

    /// set_roc sets SRTP rollover counter value of specified SSRC.
    fn set_roc(&mut self, ssrc: u32, roc: u32) {
        let state = self.get_srtp_ssrc_state(ssrc);
        state.index = (roc as u64) << 16;
        state.rollover_has_processed = false;
    }

    /// index returns SRTCP index value of specified SSRC.
    fn get_index(&self, ssrc: u32) -> Option<usize> {
        self.srtcp_ssrc_states.get(ssrc).map(|s| s.srtcp_index)
    }

    /// set_index sets SRTCP index value of specified SSRC.
    fn set_index(&mut self, ssrc: u32, index: usize) {
        self.get_srtcp_ssrc_state(ssrc).srtcp_index = index % (MAX_SRTCP_INDEX + 1);
    }
}
