//! The transport's randomness, injected: one seedable CSPRNG per endpoint transport.
//!
//! What our transport code draws — ICE credentials ([`IceCredentials::generate`]), the ICE
//! tie-breaker, STUN transaction ids, the jitter of consent checks — and what rtc-dtls draws
//! through its crypto provider's `random()` (handshake randoms, the HelloVerifyRequest cookie,
//! AEAD explicit nonces, CBC IVs; see [`TransportRng::dtls_provider`]) comes from a
//! [`TransportRng`]. Production seeds it from the OS ([`TransportRng::from_entropy`]); a test
//! seeds it with a number ([`TransportRng::seeded`]) and gets the same bytes for the same seed.
//!
//! It is ChaCha20, not a small PRNG such as the sfu's xorshift: ICE passwords and the DTLS
//! randoms must stay unpredictable to someone who sees our other outputs (transaction ids are
//! sent in clear, and xorshift's state can be recovered from one output). What the rtc-* crates
//! draw outside this injection is listed in this directory's README.md.
//!
//! [`IceCredentials::generate`]: super::ice::IceCredentials::generate

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::ChaCha20Rng;
use rand::{Rng, SeedableRng};
use rtc_dtls::crypto_provider::{CryptoError, RTCCrypto, RTCCryptoProvider, RTCRandom};

/// A seedable cryptographically secure random source (ChaCha20). Not `Clone`: two copies would
/// repeat each other's values; [`TransportRng::fork`] gives an independent one.
#[derive(Debug)]
pub struct TransportRng(ChaCha20Rng);

impl TransportRng {
    /// Seeded from the OS (through `rand`'s thread-local generator, itself seeded and reseeded
    /// from the OS): what production uses.
    pub fn from_entropy() -> Self {
        TransportRng(ChaCha20Rng::from_rng(&mut rand::rng()))
    }

    /// Deterministic: the same seed gives the same sequence (tests, simulations).
    pub fn seeded(seed: u64) -> Self {
        TransportRng(ChaCha20Rng::seed_from_u64(seed))
    }

    /// An independent generator for a sub-component, seeded from this one (deterministic when
    /// this one is).
    pub fn fork(&mut self) -> Self {
        TransportRng(ChaCha20Rng::from_rng(&mut self.0))
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    pub fn fill(&mut self, dst: &mut [u8]) {
        self.0.fill_bytes(dst);
    }

    /// `d` scaled by a uniform factor in `[1 - spread, 1 + spread]` (e.g. 0.2 for RFC 7675's
    /// ±20 % consent-check jitter).
    pub fn jittered(&mut self, d: Duration, spread: f64) -> Duration {
        // 53 random bits → [0, 1).
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        d.mul_f64(1.0 - spread + 2.0 * spread * unit)
    }

    /// A crypto provider for rtc-dtls that does `inner`'s operations but draws its randomness
    /// (`RTCCryptoProvider::random`) from a generator forked from this one.
    pub fn dtls_provider(
        &mut self,
        inner: Arc<dyn RTCCryptoProvider>,
    ) -> Arc<dyn RTCCryptoProvider> {
        Arc::new(InjectedProvider {
            inner,
            random: InjectedRandom(Mutex::new(self.fork())),
        })
    }
}

/// rtc-dtls's `RTCRandom` over a [`TransportRng`]. rtc-dtls asks through `&self` from a shared
/// config, hence the mutex; it is taken per DTLS handshake message and per DTLS record (never
/// per SRTP packet) and is uncontended (one endpoint, one task).
struct InjectedRandom(Mutex<TransportRng>);

impl RTCRandom for InjectedRandom {
    fn fill(&self, output: &mut [u8]) -> Result<(), CryptoError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fill(output);
        Ok(())
    }
}

struct InjectedProvider {
    inner: Arc<dyn RTCCryptoProvider>,
    random: InjectedRandom,
}

impl RTCCryptoProvider for InjectedProvider {
    fn name(&self) -> &'static str {
        "transport-rng"
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        self.inner.crypto()
    }

    fn random(&self) -> &dyn RTCRandom {
        &self.random
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_other_seed_other_sequence() {
        let (mut a, mut b, mut c) = (
            TransportRng::seeded(7),
            TransportRng::seeded(7),
            TransportRng::seeded(8),
        );
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(xs, (0..4).map(|_| c.next_u64()).collect::<Vec<_>>());
        // Forks are deterministic too, and differ from the parent's stream.
        let (mut fa, mut fb) = (a.fork(), b.fork());
        assert_eq!(fa.next_u64(), fb.next_u64());
        assert_ne!(a.next_u64(), fa.next_u64());
        // Entropy-seeded generators differ.
        assert_ne!(
            TransportRng::from_entropy().next_u64(),
            TransportRng::from_entropy().next_u64()
        );
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut r = TransportRng::seeded(1);
        let d = Duration::from_secs(5);
        let (mut lo, mut hi) = (d, d);
        for _ in 0..10_000 {
            let j = r.jittered(d, 0.2);
            lo = lo.min(j);
            hi = hi.max(j);
        }
        assert!(
            lo >= Duration::from_secs(4) && lo < Duration::from_millis(4010),
            "{lo:?}"
        );
        assert!(
            hi <= Duration::from_secs(6) && hi > Duration::from_millis(5990),
            "{hi:?}"
        );
    }

    #[test]
    fn the_dtls_provider_draws_from_the_seed() {
        let inner = rtc_dtls::crypto_provider::default_provider().unwrap();
        let p = TransportRng::seeded(3).dtls_provider(inner.clone());
        let q = TransportRng::seeded(3).dtls_provider(inner);
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        p.random().fill(&mut x).unwrap();
        q.random().fill(&mut y).unwrap();
        assert_eq!(x, y);
        assert_ne!(x, [0u8; 32]);
    }
}
