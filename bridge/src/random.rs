//! Seedable randomness for the sans-IO parts. Nothing here reads the operating system: the shell
//! (`media::service`) seeds these from the OS once at start, tests seed them with constants, so
//! the cores stay deterministic under test.
//!
//! - [`Rng`]: a fast non-cryptographic generator (xorshift64*) for values that only need to differ:
//!   the bridge's feedback SSRCs, initial RTX sequence numbers.
//! - [`TokenRng`]: a deterministic random bit generator built on HMAC-SHA-256 (the construction of
//!   NIST SP 800-90A's HMAC_DRBG, without reseeding) for secrets handed to clients: colibri-ws
//!   passwords and conference ids. Its output cannot be predicted from earlier outputs, which a
//!   xorshift's can.

use ring::hmac;

/// xorshift64* (Vigna): one multiply and three shifts per value.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// HMAC_DRBG (SHA-256) state: `K` and `V` of SP 800-90A §10.1.2.
pub struct TokenRng {
    key: hmac::Key,
    v: [u8; 32],
}

impl std::fmt::Debug for TokenRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenRng")
    }
}

const TOKEN_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl TokenRng {
    /// Instantiates from 32 bytes of seed material (OS randomness in production).
    pub fn new(seed: [u8; 32]) -> Self {
        let mut r = TokenRng {
            key: hmac::Key::new(hmac::HMAC_SHA256, &[0u8; 32]),
            v: [1u8; 32],
        };
        r.update(&seed);
        r
    }

    /// SP 800-90A HMAC_DRBG_Update with `data`.
    fn update(&mut self, data: &[u8]) {
        for round in [0u8, 1] {
            let mut ctx = hmac::Context::with_key(&self.key);
            ctx.update(&self.v);
            ctx.update(&[round]);
            ctx.update(data);
            self.key = hmac::Key::new(hmac::HMAC_SHA256, ctx.sign().as_ref());
            let v = hmac::sign(&self.key, &self.v);
            self.v.copy_from_slice(v.as_ref());
        }
    }

    /// Fills `out` with generator output.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(32) {
            let v = hmac::sign(&self.key, &self.v);
            self.v.copy_from_slice(v.as_ref());
            chunk.copy_from_slice(&self.v[..chunk.len()]);
        }
        self.update(&[]);
    }

    /// Random `[A-Za-z0-9]` text of `len` characters (uniform: bytes ≥ 248 are redrawn).
    pub fn token(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        let mut buf = [0u8; 32];
        while s.len() < len {
            self.fill(&mut buf);
            for &b in &buf {
                if s.len() < len && usize::from(b) < TOKEN_CHARS.len() * 4 {
                    s.push(char::from(TOKEN_CHARS[usize::from(b) % TOKEN_CHARS.len()]));
                }
            }
        }
        s
    }

    /// A seed for an [`Rng`].
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_alphanumeric_deterministic_per_seed_and_distinct() {
        let mut a = TokenRng::new([7; 32]);
        let mut b = TokenRng::new([7; 32]);
        let t = a.token(24);
        assert_eq!(t.len(), 24);
        assert!(t.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(t, b.token(24));
        assert_ne!(a.token(24), t);
        assert_ne!(TokenRng::new([8; 32]).token(24), t);
        // Every character shows up over enough output (no stuck bits).
        let long = a.token(10_000);
        for c in TOKEN_CHARS {
            assert!(long.as_bytes().contains(c), "{}", char::from(*c));
        }
    }

    #[test]
    fn rng_is_deterministic_and_never_stuck_at_zero() {
        let mut r = Rng::new(0);
        let v: Vec<u32> = (0..4).map(|_| r.next_u32()).collect();
        assert!(v.iter().all(|x| *x != 0));
        assert_eq!(Rng::new(0).next_u32(), v[0]);
        assert!((0..1000).map(|_| r.unit()).all(|u| (0.0..1.0).contains(&u)));
    }
}
