//! The reconnect schedule: exponential, capped, with a little jitter so that many bridges that lost the
//! same Prosody do not all knock at the same instant.

use std::time::Duration;

/// Exponential backoff policy: `initial`, then ×`factor` per failed attempt, never above `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: u32,
    /// Each delay is spread over ±`jitter_percent` % (0 disables jitter).
    pub jitter_percent: u8,
}

impl Default for Backoff {
    /// 0.5 s, 1 s, 2 s, 4 s, 8 s, 10 s, 10 s … with ±10 % jitter.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
            factor: 2,
            jitter_percent: 10,
        }
    }
}

impl Backoff {
    /// The delay before reconnect attempt number `attempt` (0-based), without jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.factor.max(1);
        let mut d = self.initial;
        for _ in 0..attempt {
            if d >= self.max {
                break;
            }
            d = d.saturating_mul(factor);
        }
        d.min(self.max)
    }

    /// `delay(attempt)` spread by jitter; `unit` is a random number in `[0, 1)`.
    pub fn jittered(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.delay(attempt);
        if self.jitter_percent == 0 {
            return base;
        }
        let spread = f64::from(self.jitter_percent.min(100)) / 100.0;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.5
        };
        base.mul_f64(1.0 - spread + 2.0 * spread * unit)
    }
}

/// A random number in `[0, 1)` for jitter, from the standard library's per-process random hash keys.
pub(crate) fn random_unit() -> f64 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x5eed);
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn default_schedule_doubles_from_half_a_second_up_to_ten() {
        let b = Backoff::default();
        let got: Vec<Duration> = (0..8).map(|a| b.delay(a)).collect();
        assert_eq!(
            got,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(10_000),
                ms(10_000),
                ms(10_000)
            ]
        );
        // Far attempts neither overflow nor exceed the cap.
        assert_eq!(b.delay(u32::MAX), ms(10_000));
    }

    #[test]
    fn jitter_stays_within_the_spread() {
        let b = Backoff::default();
        assert_eq!(b.jittered(0, 0.0), ms(450));
        assert_eq!(b.jittered(0, 0.5), ms(500));
        assert!(b.jittered(0, 0.999_999) <= ms(550));
        assert_eq!(b.jittered(9, 0.0), ms(9000));
        // Garbage randomness cannot produce a garbage delay.
        assert_eq!(b.jittered(0, f64::NAN), ms(500));
        assert_eq!(b.jittered(0, 7.0), ms(550));
        let none = Backoff {
            jitter_percent: 0,
            ..b
        };
        assert_eq!(none.jittered(1, 0.0), ms(1000));
    }

    #[test]
    fn degenerate_policies_are_safe() {
        let flat = Backoff {
            initial: ms(300),
            max: ms(300),
            factor: 0,
            jitter_percent: 0,
        };
        assert_eq!(flat.delay(5), ms(300));
        let small_cap = Backoff {
            initial: ms(800),
            max: ms(500),
            factor: 3,
            jitter_percent: 0,
        };
        assert_eq!(small_cap.delay(0), ms(500));
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
