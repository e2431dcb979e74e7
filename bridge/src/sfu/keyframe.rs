//! Keyframe request throttling (JVB `jmt.keyframe.*` in `jitsi-media-transform/src/main/resources/reference.conf`,
//! `jitsi-media-transform/src/main/kotlin/org/jitsi/nlj/rtcp/KeyframeRequester.kt`): per (receiver, source) at most one
//! request per 200 ms and 3 per 10 s; per source at most one per 200 ms whoever asks.

use std::time::{Duration, Instant};

const MAX_WINDOW: usize = 4;

/// A "min interval + at most N in a window" limiter, with no allocation.
#[derive(Debug, Clone)]
pub struct RateLimit {
    min_interval: Duration,
    max_requests: usize,
    window: Duration,
    /// Times of the most recent accepted requests, newest first.
    recent: [Option<Instant>; MAX_WINDOW],
}

impl RateLimit {
    pub fn new(min_interval: Duration, max_requests: usize, window: Duration) -> Self {
        RateLimit {
            min_interval,
            max_requests: max_requests.clamp(1, MAX_WINDOW),
            window,
            recent: [None; MAX_WINDOW],
        }
    }

    /// JVB defaults for one receiver asking about one source.
    pub fn per_receiver() -> Self {
        RateLimit::new(Duration::from_millis(200), 3, Duration::from_secs(10))
    }

    /// JVB defaults for one source, whoever asks.
    pub fn per_source() -> Self {
        RateLimit::new(Duration::from_millis(200), 1, Duration::from_millis(200))
    }

    /// Would a request at `now` pass?
    pub fn would_accept(&self, now: Instant) -> bool {
        if let Some(last) = self.recent[0]
            && now.saturating_duration_since(last) < self.min_interval
        {
            return false;
        }
        let in_window = self
            .recent
            .iter()
            .flatten()
            .filter(|t| now.saturating_duration_since(**t) < self.window)
            .count();
        in_window < self.max_requests
    }

    /// Records a request at `now` (call only after [`would_accept`](Self::would_accept) said yes).
    pub fn record(&mut self, now: Instant) {
        self.recent.rotate_right(1);
        self.recent[0] = Some(now);
    }

    /// `would_accept` + `record`.
    pub fn accept(&mut self, now: Instant) -> bool {
        if self.would_accept(now) {
            self.record(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_receiver_limits() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut r = RateLimit::per_receiver();
        assert!(r.accept(ms(0)));
        assert!(!r.accept(ms(100))); // < 200 ms
        assert!(r.accept(ms(250)));
        assert!(r.accept(ms(500)));
        assert!(!r.accept(ms(900))); // 3 in 10 s already
        assert!(!r.accept(ms(9_900)));
        assert!(r.accept(ms(10_100))); // the first one left the window
    }

    #[test]
    fn per_source_limit() {
        let t0 = Instant::now();
        let mut r = RateLimit::per_source();
        assert!(r.accept(t0));
        assert!(!r.accept(t0 + Duration::from_millis(199)));
        assert!(r.accept(t0 + Duration::from_millis(200)));
    }
}
