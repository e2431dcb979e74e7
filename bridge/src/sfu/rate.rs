//! Per-sender budget for bridge-channel messages the conference relays to others
//! (`EndpointMessage`, `EndpointStats`): one sender must not make the bridge send unbounded text
//! to every receiver. Two token buckets, messages and bytes, refilled from the input's `now`.

use std::time::{Duration, Instant};

/// Relayed messages per second a sender may sustain, and its burst.
pub const RELAY_MESSAGES_PER_SEC: u32 = 50;
pub const RELAY_MESSAGE_BURST: u32 = 200;
/// Relayed bytes per second a sender may sustain, and its burst.
pub const RELAY_BYTES_PER_SEC: u32 = 128 * 1024;
pub const RELAY_BYTE_BURST: u32 = 512 * 1024;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn full(rate: u32, burst: u32) -> Self {
        Bucket {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
        }
    }

    fn refill(&mut self, elapsed: Duration) {
        self.tokens = (self.tokens + self.rate * elapsed.as_secs_f64()).min(self.burst);
    }
}

/// A sender's relay budget.
#[derive(Debug, Clone, Copy)]
pub struct RelayBudget {
    messages: Bucket,
    bytes: Bucket,
    at: Instant,
}

impl RelayBudget {
    pub fn new(now: Instant) -> Self {
        RelayBudget {
            messages: Bucket::full(RELAY_MESSAGES_PER_SEC, RELAY_MESSAGE_BURST),
            bytes: Bucket::full(RELAY_BYTES_PER_SEC, RELAY_BYTE_BURST),
            at: now,
        }
    }

    /// Takes one message of `len` bytes from the budget; `false` (nothing taken): over it.
    pub fn take(&mut self, now: Instant, len: usize) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = self.at.max(now);
        self.messages.refill(elapsed);
        self.bytes.refill(elapsed);
        let len = len as f64;
        if self.messages.tokens < 1.0 || self.bytes.tokens < len {
            return false;
        }
        self.messages.tokens -= 1.0;
        self.bytes.tokens -= len;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut b = RelayBudget::new(t0);
        let passed = (0..1000).filter(|_| b.take(t0, 10)).count();
        assert_eq!(passed, RELAY_MESSAGE_BURST as usize);
        // One second later: the sustained rate.
        let t1 = t0 + Duration::from_secs(1);
        let passed = (0..1000).filter(|_| b.take(t1, 10)).count();
        assert_eq!(passed, RELAY_MESSAGES_PER_SEC as usize);
    }

    #[test]
    fn large_messages_are_limited_by_bytes() {
        let t0 = Instant::now();
        let mut b = RelayBudget::new(t0);
        let big = 64 * 1024;
        let passed = (0..100).filter(|_| b.take(t0, big)).count();
        assert_eq!(passed, (RELAY_BYTE_BURST as usize) / big);
        assert!(!b.take(t0 + Duration::from_millis(100), big));
        assert!(b.take(t0 + Duration::from_millis(600), big));
    }
}
