//! AIMD rate control (GoogCC): additive increase near the known link capacity, multiplicative
//! increase (8 %/s) while it is unknown, decrease to 0.85 × the acknowledged bitrate on overuse,
//! hold on underuse (queues draining). A link-capacity estimate (mean and normalised variance of
//! the throughput at past overuses) decides which increase mode applies.

/// The delay detector's verdict (what the AIMD control acts on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BandwidthUsage {
    Normal,
    Underusing,
    Overusing,
}

const BETA: f64 = 0.85;

/// Smoothed throughput at overuse events: where the link saturates.
#[derive(Debug, Clone, Default)]
pub struct LinkCapacity {
    estimate_kbps: Option<f64>,
    deviation_kbps: f64,
}

impl LinkCapacity {
    fn new() -> Self {
        LinkCapacity {
            estimate_kbps: None,
            deviation_kbps: 0.4,
        }
    }

    fn deviation(&self, est: f64) -> f64 {
        (self.deviation_kbps * est).sqrt()
    }

    pub fn upper_bps(&self) -> f64 {
        self.estimate_kbps
            .map_or(f64::INFINITY, |e| (e + 3.0 * self.deviation(e)) * 1000.0)
    }

    pub fn lower_bps(&self) -> f64 {
        self.estimate_kbps
            .map_or(0.0, |e| (e - 3.0 * self.deviation(e)).max(0.0) * 1000.0)
    }

    pub fn estimate_bps(&self) -> Option<f64> {
        self.estimate_kbps.map(|e| e * 1000.0)
    }

    fn reset(&mut self) {
        self.estimate_kbps = None;
    }

    fn update(&mut self, sample_bps: f64, alpha: f64) {
        let sample = (sample_bps / 1000.0).floor();
        let est = match self.estimate_kbps {
            None => sample,
            Some(e) => (1.0 - alpha) * e + alpha * sample,
        };
        self.estimate_kbps = Some(est);
        let norm = est.max(1.0);
        let err = est - sample;
        self.deviation_kbps =
            ((1.0 - alpha) * self.deviation_kbps + alpha * err * err / norm).clamp(0.4, 2.5);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Hold,
    Increase,
    Decrease,
}

#[derive(Debug, Clone)]
pub struct Aimd {
    min_bps: f64,
    max_bps: f64,
    current_bps: f64,
    latest_throughput_bps: f64,
    pub link: LinkCapacity,
    state: State,
    last_change_us: Option<i64>,
    pub rtt_ms: f64,
    last_decrease_bps: Option<f64>,
}

impl Aimd {
    pub fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        Aimd {
            min_bps,
            max_bps,
            current_bps: start_bps,
            latest_throughput_bps: start_bps,
            link: LinkCapacity::new(),
            state: State::Hold,
            last_change_us: None,
            rtt_ms: 200.0,
            last_decrease_bps: None,
        }
    }

    pub fn estimate_bps(&self) -> f64 {
        self.current_bps
    }

    fn clamp(&self, bps: f64) -> f64 {
        bps.clamp(self.min_bps, self.max_bps)
    }

    /// True if enough time passed since the last change to decrease again (one RTT, 10–200 ms),
    /// or the throughput collapsed below half the estimate.
    pub fn time_to_reduce_further(&self, now_us: i64, throughput_bps: f64) -> bool {
        let interval_us = (self.rtt_ms.clamp(10.0, 200.0) * 1000.0) as i64;
        if self
            .last_change_us
            .is_none_or(|t| now_us - t >= interval_us)
        {
            return true;
        }
        throughput_bps < 0.5 * self.current_bps
    }

    /// Overrides the estimate (probe result, or halving when overusing without throughput).
    pub fn set_estimate(&mut self, bps: f64, now_us: i64) {
        self.current_bps = self.clamp(bps);
        self.last_change_us = Some(now_us);
    }

    /// Increase rate near convergence: about one average packet per response time (RTT + 100 ms,
    /// twice), at least 4 kbps/s.
    fn near_max_increase_bps_per_s(&self) -> f64 {
        let frame_bytes = self.current_bps / 8.0 / 30.0;
        let packets = (frame_bytes / 1200.0).ceil().max(1.0);
        let avg_packet_bits = 8.0 * (frame_bytes / packets).floor();
        let response_s = 2.0 * (self.rtt_ms + 100.0) / 1000.0;
        (avg_packet_bits / response_s).max(4000.0)
    }

    /// Expected time to regain the last decrease (diagnostics / probing decisions).
    pub fn expected_bandwidth_period_s(&self) -> f64 {
        match self.last_decrease_bps {
            None => 3.0,
            Some(d) => (d / self.near_max_increase_bps_per_s()).clamp(2.0, 50.0),
        }
    }

    /// One detector verdict with the current acknowledged throughput.
    pub fn update(
        &mut self,
        usage: BandwidthUsage,
        throughput_bps: Option<f64>,
        now_us: i64,
    ) -> f64 {
        let throughput = throughput_bps.unwrap_or(self.latest_throughput_bps);
        if let Some(t) = throughput_bps {
            self.latest_throughput_bps = t;
        }
        match usage {
            BandwidthUsage::Normal => {
                if self.state == State::Hold {
                    self.last_change_us = Some(now_us);
                    self.state = State::Increase;
                }
            }
            BandwidthUsage::Overusing => {
                if self.state != State::Decrease {
                    self.state = State::Decrease;
                }
            }
            BandwidthUsage::Underusing => self.state = State::Hold,
        }
        let mut new = None;
        match self.state {
            State::Hold => {}
            State::Increase => {
                if throughput > self.link.upper_bps() {
                    self.link.reset();
                }
                // Never run far ahead of what actually gets through.
                let limit = 1.5 * throughput + 10_000.0;
                if self.current_bps < limit {
                    let dt_s = self
                        .last_change_us
                        .map_or(0.0, |t| (now_us - t).max(0) as f64 / 1e6);
                    let inc = if self.link.estimate_bps().is_some() {
                        self.near_max_increase_bps_per_s() * dt_s
                    } else {
                        let alpha = 1.08f64.powf(dt_s.min(1.0));
                        (self.current_bps * (alpha - 1.0)).max(1000.0)
                    };
                    new = Some((self.current_bps + inc).min(limit));
                }
                self.last_change_us = Some(now_us);
            }
            State::Decrease => {
                let mut dec = throughput * BETA;
                if dec > 5000.0 {
                    dec -= 5000.0;
                }
                if dec > self.current_bps
                    && let Some(l) = self.link.estimate_bps()
                {
                    dec = l * BETA;
                }
                if dec < self.current_bps {
                    new = Some(dec);
                }
                if throughput < self.current_bps {
                    self.last_decrease_bps = Some(new.map_or(0.0, |n| self.current_bps - n));
                }
                if throughput < self.link.lower_bps() {
                    self.link.reset();
                }
                self.link.update(throughput, 0.05);
                self.state = State::Hold;
                self.last_change_us = Some(now_us);
            }
        }
        self.current_bps = self.clamp(new.unwrap_or(self.current_bps));
        self.current_bps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiplicative_then_additive_increase_and_decrease_on_overuse() {
        let mut a = Aimd::new(1_000_000.0, 30_000.0, 20_000_000.0);
        a.rtt_ms = 50.0;
        // Normal for 1 s with plenty of throughput: ≈ +8 %.
        let mut t = 0;
        for _ in 0..=10 {
            a.update(BandwidthUsage::Normal, Some(2_000_000.0), t);
            t += 100_000;
        }
        let r = a.estimate_bps();
        assert!((1_070_000.0..1_090_000.0).contains(&r), "{r}");
        // Overuse: 0.85 × throughput − 5 kbps.
        let r = a.update(BandwidthUsage::Overusing, Some(1_000_000.0), t);
        assert!((r - 845_000.0).abs() < 1.0, "{r}");
        assert!(a.link.estimate_bps().is_some());
        // Now near capacity: additive, slow (tens of kbps per second).
        t += 100_000;
        a.update(BandwidthUsage::Normal, Some(845_000.0), t);
        for _ in 0..10 {
            t += 100_000;
            a.update(BandwidthUsage::Normal, Some(845_000.0), t);
        }
        let inc = a.estimate_bps() - 845_000.0;
        assert!((4_000.0..60_000.0).contains(&inc), "{inc}");
        // Increase is capped by 1.5 × throughput + 10 kbps.
        let mut b = Aimd::new(1_000_000.0, 30_000.0, 20_000_000.0);
        for i in 0..100 {
            b.update(BandwidthUsage::Normal, Some(100_000.0), i * 100_000);
        }
        assert!(b.estimate_bps() <= 1_000_000.0);
        // Bounds.
        let mut c = Aimd::new(40_000.0, 30_000.0, 20_000_000.0);
        c.update(BandwidthUsage::Overusing, Some(10_000.0), 0);
        assert_eq!(c.estimate_bps(), 30_000.0);
        c.set_estimate(1e9, 0);
        assert_eq!(c.estimate_bps(), 20_000_000.0);
    }
}
