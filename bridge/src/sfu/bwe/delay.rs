//! Delay-based estimation (GoogCC): packets are grouped into send bursts (5 ms), the change of
//! one-way delay between consecutive groups is accumulated and smoothed, and a linear regression
//! over the last 20 groups gives the delay trend. A trend above an adaptive threshold for long
//! enough means the bottleneck queue is growing (overuse); below its negative, draining
//! (underuse). The verdict drives [`Aimd`].

use std::collections::VecDeque;

use super::aimd::{Aimd, BandwidthUsage};
use super::history::PacketResult;

const GROUP_US: i64 = 5_000;
const BURST_DELTA_US: i64 = 5_000;
const MAX_BURST_US: i64 = 100_000;
const ARRIVAL_OFFSET_THRESHOLD_US: i64 = 3_000_000;
const REORDERED_RESET: u32 = 3;
/// Feedback gap after which the grouping starts over.
const STREAM_TIMEOUT_US: i64 = 2_000_000;

#[derive(Debug, Clone, Copy, Default)]
struct Group {
    size: u64,
    first_send_us: i64,
    send_us: i64,
    first_arrival_us: i64,
    complete_us: i64,
    last_system_us: i64,
    valid: bool,
}

/// Send-burst grouping and inter-group deltas.
#[derive(Debug, Clone, Default)]
pub struct InterArrival {
    current: Group,
    prev: Group,
    reordered: u32,
}

/// Deltas between two consecutive groups, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Deltas {
    pub send_ms: f64,
    pub arrival_ms: f64,
}

impl InterArrival {
    fn belongs_to_burst(&self, arrival_us: i64, send_us: i64) -> bool {
        let arrival_delta = arrival_us - self.current.complete_us;
        let send_delta = send_us - self.current.send_us;
        if send_delta == 0 {
            return true;
        }
        let propagation_delta = arrival_delta - send_delta;
        propagation_delta < 0
            && arrival_delta <= BURST_DELTA_US
            && arrival_us - self.current.first_arrival_us < MAX_BURST_US
    }

    fn new_group(&self, arrival_us: i64, send_us: i64) -> bool {
        if !self.current.valid || self.belongs_to_burst(arrival_us, send_us) {
            return false;
        }
        send_us - self.current.first_send_us > GROUP_US
    }

    /// Adds one received packet (in arrival order); returns the deltas when a group completed.
    pub fn compute(
        &mut self,
        send_us: i64,
        arrival_us: i64,
        system_us: i64,
        size: u32,
    ) -> Option<Deltas> {
        let mut out = None;
        if !self.current.valid {
            self.current.send_us = send_us;
            self.current.first_send_us = send_us;
            self.current.first_arrival_us = arrival_us;
        } else if self.current.first_send_us > send_us {
            // Reordered packet from an older group.
            return None;
        } else if self.new_group(arrival_us, send_us) {
            if self.prev.valid {
                let send_delta = self.current.send_us - self.prev.send_us;
                let arrival_delta = self.current.complete_us - self.prev.complete_us;
                let system_delta = self.current.last_system_us - self.prev.last_system_us;
                if arrival_delta - system_delta >= ARRIVAL_OFFSET_THRESHOLD_US {
                    // The receiver's clock jumped.
                    *self = InterArrival::default();
                    return None;
                }
                if arrival_delta < 0 {
                    self.reordered += 1;
                    if self.reordered >= REORDERED_RESET {
                        *self = InterArrival::default();
                    }
                    return None;
                }
                self.reordered = 0;
                out = Some(Deltas {
                    send_ms: send_delta as f64 / 1000.0,
                    arrival_ms: arrival_delta as f64 / 1000.0,
                });
            }
            self.prev = self.current;
            self.current = Group {
                first_send_us: send_us,
                send_us,
                first_arrival_us: arrival_us,
                ..Group::default()
            };
        } else {
            self.current.send_us = self.current.send_us.max(send_us);
        }
        self.current.size += u64::from(size);
        self.current.complete_us = arrival_us;
        self.current.last_system_us = system_us;
        self.current.valid = true;
        out
    }
}

const WINDOW: usize = 20;
const SMOOTHING: f64 = 0.9;
const THRESHOLD_GAIN: f64 = 4.0;
const K_UP: f64 = 0.0087;
const K_DOWN: f64 = 0.039;
const OVERUSE_TIME_MS: f64 = 10.0;
const MIN_DELTAS: u32 = 60;
const MAX_ADAPT_OFFSET_MS: f64 = 15.0;

/// Trendline overuse detector.
#[derive(Debug, Clone)]
pub struct Trendline {
    num_deltas: u32,
    first_arrival_ms: Option<f64>,
    accumulated_ms: f64,
    smoothed_ms: f64,
    /// (arrival ms since first, smoothed delay ms)
    hist: VecDeque<(f64, f64)>,
    pub threshold: f64,
    prev_trend: f64,
    last_update_ms: Option<f64>,
    time_over_using: f64,
    overuse_counter: u32,
    usage: BandwidthUsage,
}

impl Default for Trendline {
    fn default() -> Self {
        Trendline {
            num_deltas: 0,
            first_arrival_ms: None,
            accumulated_ms: 0.0,
            smoothed_ms: 0.0,
            hist: VecDeque::with_capacity(WINDOW + 1),
            threshold: 12.5,
            prev_trend: 0.0,
            last_update_ms: None,
            time_over_using: -1.0,
            overuse_counter: 0,
            usage: BandwidthUsage::Normal,
        }
    }
}

fn slope(hist: &VecDeque<(f64, f64)>) -> Option<f64> {
    let n = hist.len() as f64;
    let (sx, sy) = hist
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (xa, ya) = (sx / n, sy / n);
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in hist {
        num += (x - xa) * (y - ya);
        den += (x - xa) * (x - xa);
    }
    (den != 0.0).then(|| num / den)
}

impl Trendline {
    pub fn usage(&self) -> BandwidthUsage {
        self.usage
    }

    /// The last trend (slope of smoothed delay over arrival time; ≈ (send − capacity)/capacity).
    pub fn trend(&self) -> f64 {
        self.prev_trend
    }

    pub fn update(&mut self, d: Deltas, arrival_us: i64) {
        let arrival_ms = arrival_us as f64 / 1000.0;
        let delta_ms = d.arrival_ms - d.send_ms;
        self.num_deltas = (self.num_deltas + 1).min(1000);
        let first = *self.first_arrival_ms.get_or_insert(arrival_ms);
        self.accumulated_ms += delta_ms;
        self.smoothed_ms = SMOOTHING * self.smoothed_ms + (1.0 - SMOOTHING) * self.accumulated_ms;
        self.hist.push_back((arrival_ms - first, self.smoothed_ms));
        if self.hist.len() > WINDOW {
            self.hist.pop_front();
        }
        let mut trend = self.prev_trend;
        if self.hist.len() == WINDOW {
            trend = slope(&self.hist).unwrap_or(trend);
        }
        self.detect(trend, d.send_ms, arrival_ms);
    }

    fn detect(&mut self, trend: f64, send_delta_ms: f64, now_ms: f64) {
        if self.num_deltas < 2 {
            self.usage = BandwidthUsage::Normal;
            return;
        }
        let modified = f64::from(self.num_deltas.min(MIN_DELTAS)) * trend * THRESHOLD_GAIN;
        if modified > self.threshold {
            if self.time_over_using < 0.0 {
                self.time_over_using = send_delta_ms / 2.0;
            } else {
                self.time_over_using += send_delta_ms;
            }
            self.overuse_counter += 1;
            if self.time_over_using > OVERUSE_TIME_MS
                && self.overuse_counter > 1
                && trend >= self.prev_trend
            {
                self.time_over_using = 0.0;
                self.overuse_counter = 0;
                self.usage = BandwidthUsage::Overusing;
            }
        } else if modified < -self.threshold {
            self.time_over_using = -1.0;
            self.overuse_counter = 0;
            self.usage = BandwidthUsage::Underusing;
        } else {
            self.time_over_using = -1.0;
            self.overuse_counter = 0;
            self.usage = BandwidthUsage::Normal;
        }
        self.prev_trend = trend;
        self.update_threshold(modified, now_ms);
    }

    /// The threshold follows |trend| slowly up and faster down (adaptive gamma), so a competing
    /// TCP flow's standing queue does not starve us and noise does not trigger overuse.
    fn update_threshold(&mut self, modified: f64, now_ms: f64) {
        let last = *self.last_update_ms.get_or_insert(now_ms);
        if modified.abs() > self.threshold + MAX_ADAPT_OFFSET_MS {
            // A spike (e.g. sudden capacity drop): don't adapt to it.
            self.last_update_ms = Some(now_ms);
            return;
        }
        let k = if modified.abs() < self.threshold {
            K_DOWN
        } else {
            K_UP
        };
        let dt = (now_ms - last).min(100.0);
        self.threshold =
            (self.threshold + k * (modified.abs() - self.threshold) * dt).clamp(6.0, 600.0);
        self.last_update_ms = Some(now_ms);
    }
}

/// Outcome of one feedback for the delay-based estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayResult {
    pub updated: bool,
    pub probe: bool,
    pub target_bps: f64,
}

#[derive(Debug, Clone)]
pub struct DelayBasedBwe {
    inter_arrival: InterArrival,
    pub detector: Trendline,
    pub aimd: Aimd,
    last_seen_us: Option<i64>,
}

impl DelayBasedBwe {
    pub fn new(start_bps: f64, min_bps: f64, max_bps: f64) -> Self {
        DelayBasedBwe {
            inter_arrival: InterArrival::default(),
            detector: Trendline::default(),
            aimd: Aimd::new(start_bps, min_bps, max_bps),
            last_seen_us: None,
        }
    }

    pub fn estimate_bps(&self) -> f64 {
        self.aimd.estimate_bps()
    }

    /// `received`: the packets of one feedback reported received, sorted by arrival.
    pub fn on_feedback(
        &mut self,
        now_us: i64,
        received: &[PacketResult],
        acked_bps: Option<f64>,
        probe_bps: Option<f64>,
    ) -> DelayResult {
        let none = DelayResult {
            updated: false,
            probe: false,
            target_bps: self.aimd.estimate_bps(),
        };
        if received.is_empty() {
            return none;
        }
        if self
            .last_seen_us
            .is_none_or(|t| now_us - t > STREAM_TIMEOUT_US)
        {
            self.inter_arrival = InterArrival::default();
        }
        self.last_seen_us = Some(now_us);
        for p in received {
            let Some(arrival) = p.arrival_us else {
                continue;
            };
            if let Some(d) = self
                .inter_arrival
                .compute(p.send_us, arrival, now_us, p.size)
            {
                self.detector.update(d, arrival);
            }
        }
        let usage = self.detector.usage();
        if usage == BandwidthUsage::Overusing {
            if let Some(acked) = acked_bps {
                if self.aimd.time_to_reduce_further(now_us, acked) {
                    let t = self.aimd.update(usage, Some(acked), now_us);
                    return DelayResult {
                        updated: true,
                        probe: false,
                        target_bps: t,
                    };
                }
            } else if self
                .aimd
                .time_to_reduce_further(now_us, self.aimd.estimate_bps() / 2.0 - 1.0)
            {
                // Overusing before any throughput measurement: halve.
                let half = self.aimd.estimate_bps() / 2.0;
                self.aimd.set_estimate(half, now_us);
                return DelayResult {
                    updated: true,
                    probe: false,
                    target_bps: self.aimd.estimate_bps(),
                };
            }
            return none;
        }
        if let Some(p) = probe_bps {
            self.aimd.set_estimate(p, now_us);
            return DelayResult {
                updated: true,
                probe: true,
                target_bps: self.aimd.estimate_bps(),
            };
        }
        let t = self.aimd.update(usage, acked_bps, now_us);
        DelayResult {
            updated: true,
            probe: false,
            target_bps: t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_within_5ms_of_send_time_form_one_group() {
        let mut ia = InterArrival::default();
        // Groups of 3 packets sent 1 ms apart, groups 20 ms apart, arriving 1 ms later each.
        let mut deltas = Vec::new();
        for g in 0..5i64 {
            for p in 0..3i64 {
                let send = g * 20_000 + p * 1_000;
                if let Some(d) = ia.compute(send, send + 1_000, send + 2_000, 1000) {
                    deltas.push(d);
                }
            }
        }
        assert_eq!(deltas.len(), 3);
        for d in deltas {
            assert_eq!(
                d,
                Deltas {
                    send_ms: 20.0,
                    arrival_ms: 20.0
                }
            );
        }
    }

    #[test]
    fn growing_queue_is_overuse_and_draining_is_underuse() {
        let mut t = Trendline::default();
        // Constant delay: normal.
        for i in 0..100 {
            t.update(
                Deltas {
                    send_ms: 10.0,
                    arrival_ms: 10.0,
                },
                i * 10_000,
            );
            assert_eq!(t.usage(), BandwidthUsage::Normal);
        }
        // Each group arrives 1 ms later than sent spacing: queue grows 10 %.
        let mut seen = false;
        for i in 100..200 {
            t.update(
                Deltas {
                    send_ms: 10.0,
                    arrival_ms: 11.0,
                },
                i * 10_000 + (i - 100) * 1_000,
            );
            seen |= t.usage() == BandwidthUsage::Overusing;
        }
        assert!(seen);
        // Draining.
        let mut under = false;
        for i in 200..300 {
            t.update(
                Deltas {
                    send_ms: 10.0,
                    arrival_ms: 8.0,
                },
                i * 10_000,
            );
            under |= t.usage() == BandwidthUsage::Underusing;
        }
        assert!(under);
    }
}
