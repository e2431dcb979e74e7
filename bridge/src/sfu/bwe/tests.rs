//! End-to-end tests of the estimator on a simulated path, in virtual time: the bridge sends at
//! the estimate (a greedy video sender) through a drop-tail bottleneck of a given capacity and
//! propagation delay; the receiver records arrivals with the real feedback generator, whose
//! bytes go back (after the reverse delay) through the real parser into the estimator.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;
use crate::sfu::rtcp::{Compound, Packet};
use crate::sfu::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};

struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Link {
    capacity_bps: f64,
    delay_us: i64,
    /// Drop-tail: a packet that would wait longer than this is dropped.
    max_queue_us: i64,
    loss: f64,
    /// Extra random delay per packet, 0..jitter (order kept: a packet never overtakes).
    jitter_us: i64,
    last_arrival_us: i64,
    busy_until_us: i64,
}

impl Link {
    fn send(&mut self, now_us: i64, size: usize, rng: &mut Rng) -> Option<i64> {
        if rng.unit() < self.loss {
            return None;
        }
        let start = self.busy_until_us.max(now_us);
        if start - now_us > self.max_queue_us {
            return None;
        }
        self.busy_until_us = start + (size as f64 * 8e6 / self.capacity_bps) as i64;
        let jitter = (rng.unit() * self.jitter_us as f64) as i64;
        let arrival = (self.busy_until_us + self.delay_us + jitter).max(self.last_arrival_us);
        self.last_arrival_us = arrival;
        Some(arrival)
    }
}

struct Sim {
    t0: Instant,
    now_us: i64,
    bwe: SendSideBwe,
    link: Link,
    rng: Rng,
    feedback_gen: TccFeedbackGenerator,
    seq: u16,
    budget_bytes: f64,
    /// (arrival µs, tcc seq) on the way to the receiver.
    in_flight: VecDeque<(i64, u16)>,
    /// (delivery µs, feedback bytes) on the way back.
    feedback: VecDeque<(i64, Vec<u8>)>,
    /// The application's own limit (None = always sends the estimate).
    source_max_bps: Option<f64>,
    /// Probe toward this rate every 100 ms (None = no probing).
    desired_bps: Option<u64>,
    /// Estimate every 100 ms: (ms, bps).
    trace: Vec<(i64, u64)>,
    overuse_seen: bool,
}

const PACKET: usize = 1200;

impl Sim {
    fn new(capacity_bps: f64) -> Self {
        let t0 = Instant::now();
        let mut bwe = SendSideBwe::new(t0, BweConfig::default());
        bwe.on_rtt(Duration::from_millis(60));
        Sim {
            t0,
            now_us: 0,
            bwe,
            link: Link {
                capacity_bps,
                delay_us: 30_000,
                max_queue_us: 400_000,
                loss: 0.0,
                jitter_us: 0,
                last_arrival_us: 0,
                busy_until_us: 0,
            },
            rng: Rng(0x1234_5678_9abc_def1),
            feedback_gen: TccFeedbackGenerator::new(0xfeed, GeneratorConfig::default()),
            seq: 0,
            budget_bytes: 0.0,
            in_flight: VecDeque::new(),
            feedback: VecDeque::new(),
            source_max_bps: None,
            desired_bps: None,
            trace: Vec::new(),
            overuse_seen: false,
        }
    }

    fn at(&self, us: i64) -> Instant {
        self.t0 + Duration::from_micros(us as u64)
    }

    fn send(&mut self, size: usize, cluster: Option<u32>) {
        let now = self.at(self.now_us);
        self.bwe.on_packet_sent(now, self.seq, size, cluster);
        if let Some(arr) = self.link.send(self.now_us, size, &mut self.rng) {
            self.in_flight.push_back((arr, self.seq));
        }
        self.seq = self.seq.wrapping_add(1);
    }

    /// Runs `ms` milliseconds of virtual time in 1 ms steps.
    fn run(&mut self, ms: i64) {
        let end = self.now_us + ms * 1000;
        while self.now_us < end {
            self.now_us += 1000;
            let now = self.at(self.now_us);
            // Media at the estimate (or the source's limit).
            let mut rate = self.bwe.poll_estimate() as f64;
            if let Some(m) = self.source_max_bps {
                rate = rate.min(m);
            }
            self.budget_bytes += rate / 8.0 / 1000.0;
            while self.budget_bytes >= PACKET as f64 {
                self.budget_bytes -= PACKET as f64;
                self.send(PACKET, None);
            }
            // Probing.
            if let Some(d) = self.desired_bps
                && self.now_us % 100_000 == 0
            {
                self.bwe.probe_request(now, d);
            }
            while let Some(p) = self.bwe.poll_probe(now) {
                self.send(p.bytes, Some(p.cluster));
            }
            // Receiver.
            while let Some(&(arr, s)) = self.in_flight.front() {
                if arr > self.now_us {
                    break;
                }
                self.in_flight.pop_front();
                self.feedback_gen.on_packet(self.at(arr), s, 0x5eed, false);
            }
            let mut out = Vec::new();
            if self.feedback_gen.poll_feedback(now, &mut out) > 0 {
                self.feedback
                    .push_back((self.now_us + self.link.delay_us, out));
            }
            // Feedback back at the bridge.
            while let Some((t, _)) = self.feedback.front() {
                if *t > self.now_us {
                    break;
                }
                let Some((_, bytes)) = self.feedback.pop_front() else {
                    break;
                };
                let c = Compound::parse(&bytes).unwrap();
                for p in c.packets() {
                    if let Packet::TransportCc(t) = p {
                        let fb = TransportFeedback::from_rtcp(&t).unwrap();
                        self.bwe.on_transport_feedback(now, &fb);
                    }
                }
                self.overuse_seen |= self.bwe.usage() == BandwidthUsage::Overusing;
            }
            self.bwe.handle_timeout(now);
            if self.now_us % 100_000 == 0 {
                self.trace
                    .push((self.now_us / 1000, self.bwe.poll_estimate()));
            }
        }
    }

    /// Mean estimate over the trace window [from_ms, to_ms].
    fn mean(&self, from_ms: i64, to_ms: i64) -> f64 {
        let v: Vec<f64> = self
            .trace
            .iter()
            .filter(|(t, _)| (from_ms..=to_ms).contains(t))
            .map(|(_, b)| *b as f64)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    }

    /// First trace time ≥ `from_ms` after which the estimate stays within [lo, hi] until `to_ms`.
    fn settled_at(&self, from_ms: i64, to_ms: i64, lo: f64, hi: f64) -> Option<i64> {
        let window: Vec<_> = self
            .trace
            .iter()
            .filter(|(t, _)| (from_ms..=to_ms).contains(t))
            .collect();
        let last_out = window
            .iter()
            .rposition(|(_, b)| !(lo..=hi).contains(&(*b as f64)));
        match last_out {
            None => window.first().map(|(t, _)| *t),
            Some(i) => window.get(i + 1).map(|(t, _)| *t),
        }
    }
}

#[test]
fn converges_near_capacity_on_steady_links() {
    // Below the 2.5 Mbps start (overuse drives it down) and above it (ramp up).
    for capacity in [1_000_000.0, 1_500_000.0, 4_000_000.0] {
        let mut sim = Sim::new(capacity);
        sim.run(15_000);
        let mean = sim.mean(8_000, 15_000);
        eprintln!(
            "capacity {capacity}: mean {mean:.0} over 8-15 s, within ±20 % from {:?} ms",
            sim.settled_at(0, 15_000, 0.8 * capacity, 1.2 * capacity)
        );
        assert!(
            (0.8 * capacity..=1.2 * capacity).contains(&mean),
            "capacity {capacity}: mean {mean}"
        );
        let settled = sim
            .settled_at(0, 15_000, 0.8 * capacity, 1.2 * capacity)
            .unwrap_or(i64::MAX);
        assert!(
            settled <= 8_000,
            "capacity {capacity}: settled at {settled} ms"
        );
        if capacity < 2_500_000.0 {
            assert!(sim.overuse_seen);
        }
    }
}

#[test]
fn capacity_drop_is_followed_within_two_seconds() {
    let mut sim = Sim::new(3_000_000.0);
    sim.run(10_000);
    let before = sim.bwe.poll_estimate() as f64;
    assert!(before > 2_400_000.0, "{before}");
    sim.link.capacity_bps = 1_000_000.0;
    sim.run(4_000);
    // First time the estimate is at most 1.2 × the new capacity.
    let fell = sim
        .trace
        .iter()
        .find(|(t, b)| *t > 10_000 && (*b as f64) <= 1_200_000.0)
        .map(|(t, _)| t - 10_000);
    eprintln!("capacity 3 → 1 Mbps: estimate ≤ 1.2 Mbps after {fell:?} ms");
    assert!(fell.is_some_and(|t| t <= 2_000), "{fell:?}");
    let after = sim.mean(12_000, 14_000);
    assert!((600_000.0..=1_200_000.0).contains(&after), "{after}");
}

#[test]
fn growing_queue_is_detected_as_overuse_from_synthetic_feedback() {
    use crate::sfu::tcc_feedback::FeedbackBuilder;
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(t0, BweConfig::default());
    // Packets every 5 ms; one-way delay grows by 1 ms per packet (a queue filling at +20 %).
    let mut b = FeedbackBuilder::default();
    let mut out = Vec::new();
    let mut seq: u16 = 0;
    let mut overuse_at = None;
    for round in 0..20i64 {
        let base = seq;
        b.reset(1, 2, base, round * 100_000 + 50_000, round as u8);
        for i in 0..20i64 {
            let send_us = round * 100_000 + i * 5_000;
            bwe.on_packet_sent(t0 + Duration::from_micros(send_us as u64), seq, 1200, None);
            let n = round * 20 + i;
            assert!(b.add_received(seq, send_us + 50_000 + n * 1_000));
            seq = seq.wrapping_add(1);
        }
        out.clear();
        b.write(&mut out);
        let fb = TransportFeedback::parse(&out).unwrap();
        bwe.on_transport_feedback(
            t0 + Duration::from_micros((round * 100_000 + 120_000) as u64),
            &fb,
        );
        if bwe.usage() == BandwidthUsage::Overusing && overuse_at.is_none() {
            overuse_at = Some(round);
        }
    }
    // Detected within a second of the queue starting to grow, and backed off to 0.85 × the
    // acknowledged rate − 5 kbps: packets arrive 6 ms apart, 1200 B / 6 ms = 1.6 Mbps → 1.355.
    assert!(overuse_at.is_some_and(|r| r <= 10), "{overuse_at:?}");
    let est = bwe.poll_estimate();
    assert!((1_300_000..1_420_000).contains(&est), "{est}");
}

#[test]
fn loss_above_ten_percent_decreases_and_low_loss_allows_increase() {
    let mut sim = Sim::new(50_000_000.0);
    sim.link.loss = 0.2;
    sim.run(3_000);
    let est = sim.bwe.poll_estimate();
    eprintln!(
        "20 % loss: {est} bps after 3 s (loss fraction {:.2})",
        sim.bwe.loss_fraction()
    );
    assert!(est < 1_500_000, "{est}");
    assert!(sim.bwe.loss_fraction() > 0.1);
    // Loss gone: allowed to grow again.
    sim.link.loss = 0.0;
    sim.run(5_000);
    let later = sim.bwe.poll_estimate();
    assert!(later as f64 > est as f64 * 1.3, "{est} → {later}");

    // 1 % loss never triggers a decrease.
    let mut sim = Sim::new(50_000_000.0);
    sim.link.loss = 0.01;
    sim.run(3_000);
    assert!(
        sim.bwe.poll_estimate() > 2_500_000,
        "{}",
        sim.bwe.poll_estimate()
    );
}

#[test]
fn probing_raises_the_estimate_quickly_when_capacity_is_available() {
    let capacity = 8_000_000.0;
    let mut probing = Sim::new(capacity);
    probing.desired_bps = Some(10_000_000);
    probing.run(6_000);
    let mut plain = Sim::new(capacity);
    plain.run(6_000);
    let reach = |s: &Sim| {
        s.trace
            .iter()
            .find(|(_, b)| *b as f64 >= 0.75 * capacity)
            .map(|(t, _)| *t)
    };
    eprintln!(
        "8 Mbps link from 2.5 Mbps: ≥ 6 Mbps after {:?} ms with probing ({:?} clusters started/with result), {:?} ms without",
        reach(&probing),
        probing.bwe.probe_stats(),
        reach(&plain)
    );
    assert!(
        reach(&probing).is_some_and(|t| t <= 1_500),
        "{:?}",
        reach(&probing)
    );
    assert!(
        reach(&plain).is_none_or(|t| t > 3_000),
        "{:?}",
        reach(&plain)
    );
    // And it does not overshoot the link for long.
    let mean = probing.mean(3_000, 6_000);
    assert!((0.7 * capacity..=1.2 * capacity).contains(&mean), "{mean}");
}

#[test]
fn no_probe_when_not_needed_or_while_limited() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(t0, BweConfig::default());
    // Desired below the estimate: nothing.
    assert_eq!(bwe.probe_request(t0, 2_000_000), None);
    // Above: a cluster at min(desired, 2 × estimate) with ≥ 5 packets and 15 ms of bytes.
    let c = bwe.probe_request(t0, 9_000_000).unwrap();
    assert_eq!(c.bitrate_bps, 5_000_000);
    assert_eq!((c.min_packets, c.min_bytes), (5, 9375));
    // One at a time.
    assert_eq!(bwe.probe_request(t0, 9_000_000), None);
    // The pacer asks for packets at the cluster rate; the cluster ends after min packets/bytes.
    let mut sent = 0;
    let mut t = t0;
    let mut seq = 0u16;
    for _ in 0..100 {
        while let Some(p) = bwe.poll_probe(t) {
            assert_eq!(p.cluster, c.id);
            bwe.on_packet_sent(t, seq, p.bytes, Some(p.cluster));
            seq += 1;
            sent += p.bytes;
        }
        t += Duration::from_millis(1);
    }
    assert!((9375..9375 + 2 * 1875).contains(&sent), "{sent}");
    assert_eq!(bwe.poll_timeout(), None);
    // Without a result, the next probe waits for the result timeout and then backs off.
    assert_eq!(
        bwe.probe_request(t0 + Duration::from_millis(500), 9_000_000),
        None
    );
    assert_eq!(
        bwe.probe_request(t0 + Duration::from_millis(1200), 9_000_000),
        None
    );
    assert!(
        bwe.probe_request(t0 + Duration::from_millis(6300), 9_000_000)
            .is_some()
    );
}

/// A receiver that raises its constraints (the allocation now wants clearly more) gets a probe at
/// once, even while the prober backs off after a failed probe; the same wish does not.
#[test]
fn a_raised_allocation_probes_at_once_despite_the_backoff() {
    let t0 = Instant::now();
    let mut bwe = SendSideBwe::new(t0, BweConfig::default());
    let c = bwe.probe_request(t0, 3_000_000).unwrap();
    let mut t = t0;
    let mut seq = 0u16;
    for _ in 0..50 {
        while let Some(p) = bwe.poll_probe(t) {
            bwe.on_packet_sent(t, seq, p.bytes, Some(c.id));
            seq += 1;
        }
        t += Duration::from_millis(1);
    }
    // No result: after the result timeout the prober backs off.
    let t = t0 + Duration::from_millis(1200);
    assert_eq!(bwe.probe_request(t, 3_000_000), None);
    assert_eq!(
        bwe.probe_request(t + Duration::from_secs(1), 3_000_000),
        None
    );
    // The receiver puts a source on stage: the allocation wants 3 × more.
    assert!(
        bwe.probe_request(t + Duration::from_secs(2), 9_000_000)
            .is_some()
    );
}

#[test]
fn converges_with_jitter_and_light_loss() {
    let capacity = 2_000_000.0;
    let mut sim = Sim::new(capacity);
    sim.link.jitter_us = 10_000;
    sim.link.loss = 0.01;
    sim.run(15_000);
    let mean = sim.mean(8_000, 15_000);
    eprintln!("2 Mbps, 0-10 ms jitter, 1 % loss: mean {mean:.0} over 8-15 s");
    assert!((0.75 * capacity..=1.2 * capacity).contains(&mean), "{mean}");
}
