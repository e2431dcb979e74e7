//! Acknowledged bitrate: how fast the receiver actually got our packets, from their arrival times
//! and sizes. A Bayesian estimate over 150 ms windows (500 ms for the first sample): samples far
//! from the estimate weigh less, so one bursty window does not swing it. This is what the rate
//! controller backs off from on overuse (GoogCC's BitrateEstimator).

const INITIAL_WINDOW_MS: i64 = 500;
const WINDOW_MS: i64 = 150;
const UNCERTAINTY_SCALE: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct AckedBitrate {
    sum_bytes: u64,
    window_ms: i64,
    prev_ms: Option<i64>,
    estimate_kbps: Option<f64>,
    variance: f64,
}

impl Default for AckedBitrate {
    fn default() -> Self {
        AckedBitrate {
            sum_bytes: 0,
            window_ms: 0,
            prev_ms: None,
            estimate_kbps: None,
            variance: 50.0,
        }
    }
}

impl AckedBitrate {
    /// One received packet of `bytes` that arrived at `arrival_us` (in arrival order).
    pub fn update(&mut self, arrival_us: i64, bytes: u32) {
        let now_ms = arrival_us.div_euclid(1000);
        let rate_window = if self.estimate_kbps.is_none() {
            INITIAL_WINDOW_MS
        } else {
            WINDOW_MS
        };
        let Some(sample) = self.update_window(now_ms, bytes, rate_window) else {
            return;
        };
        let Some(est) = self.estimate_kbps else {
            self.estimate_kbps = Some(sample);
            return;
        };
        let uncertainty = UNCERTAINTY_SCALE * (est - sample).abs() / est.max(1e-3);
        let sample_var = uncertainty * uncertainty;
        let pred_var = self.variance + 5.0;
        let new = (sample_var * est + pred_var * sample) / (sample_var + pred_var);
        self.estimate_kbps = Some(new.max(0.0));
        self.variance = sample_var * pred_var / (sample_var + pred_var);
    }

    fn update_window(&mut self, now_ms: i64, bytes: u32, rate_window: i64) -> Option<f64> {
        if self.prev_ms.is_some_and(|p| now_ms < p) {
            // Time went backwards (clock reset): start over.
            self.prev_ms = None;
            self.sum_bytes = 0;
            self.window_ms = 0;
        }
        if let Some(p) = self.prev_ms {
            self.window_ms += now_ms - p;
            if now_ms - p > rate_window {
                // Nothing for a whole window: the old bytes are stale.
                self.sum_bytes = 0;
                self.window_ms %= rate_window;
            }
        }
        self.prev_ms = Some(now_ms);
        let mut sample = None;
        if self.window_ms >= rate_window {
            sample = Some(8.0 * self.sum_bytes as f64 / rate_window as f64);
            self.window_ms -= rate_window;
            self.sum_bytes = 0;
        }
        self.sum_bytes += u64::from(bytes);
        sample
    }

    /// Estimate in bps, once the first window completed.
    pub fn bitrate_bps(&self) -> Option<f64> {
        self.estimate_kbps.map(|k| k * 1000.0)
    }

    /// The raw rate of the window being filled (a fallback before the first estimate: an overuse
    /// in the first half second must back off from what actually arrives, not blindly halve).
    pub fn peek_bps(&self) -> Option<f64> {
        (self.window_ms >= 50).then(|| 8000.0 * self.sum_bytes as f64 / self.window_ms as f64)
    }

    /// Lets the estimate move fast for the next samples (after a probe or an application-limited
    /// period ended).
    pub fn expect_fast_change(&mut self) {
        self.variance += 200.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_the_arrival_rate_and_follows_changes() {
        let mut a = AckedBitrate::default();
        // 1 Mbps: 1250-byte packets every 10 ms.
        for i in 0..300 {
            a.update(i * 10_000, 1250);
        }
        let r = a.bitrate_bps().unwrap();
        assert!((950_000.0..1_050_000.0).contains(&r), "{r}");
        // Drops to 500 kbps: the estimate follows within a second.
        for i in 0..100 {
            a.update(3_000_000 + i * 20_000, 1250);
        }
        let r = a.bitrate_bps().unwrap();
        assert!((450_000.0..600_000.0).contains(&r), "{r}");
    }
}
