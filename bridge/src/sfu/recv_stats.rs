//! Per-SSRC receive statistics (RFC 3550 appendix A.1, A.3, A.8) from which the bridge's receiver
//! reports toward senders are built: extended highest sequence number, cumulative and fractional
//! loss, interarrival jitter, and LSR/DLSR from the sender's last SR.

use std::time::{Duration, Instant};

use super::rtcp::ReportBlock;

const MAX_DROPOUT: u16 = 3000;
const MAX_MISORDER: u16 = 100;

#[derive(Debug, Clone)]
pub struct ReceiveStats {
    clock_rate: u32,
    /// Arrival times are measured from here (in RTP clock units) for the jitter estimate.
    epoch: Instant,
    started: bool,
    base_seq: u32,
    max_seq: u16,
    /// Shifted count of sequence number wraps (multiples of 65536).
    cycles: u32,
    bad_seq: Option<u16>,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    last_transit: Option<i64>,
    /// Jitter × 16 (RFC 3550 A.8 fixed point).
    jitter_q4: u64,
    /// Middle 32 bits of the NTP time of the last SR, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// Packets received since the last report (only active SSRCs are reported).
    active_since_report: bool,
    /// Expected and lost packets of the interval the last report block covered.
    last_interval: (u32, u32),
    /// When the last packet arrived (whether the stream is being sent).
    last_arrival: Option<Instant>,
}

impl ReceiveStats {
    pub fn new(now: Instant, clock_rate: u32) -> Self {
        ReceiveStats {
            clock_rate: clock_rate.max(1),
            epoch: now,
            started: false,
            base_seq: 0,
            max_seq: 0,
            cycles: 0,
            bad_seq: None,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            last_transit: None,
            jitter_q4: 0,
            last_sr: None,
            active_since_report: false,
            last_interval: (0, 0),
            last_arrival: None,
        }
    }

    pub fn set_clock_rate(&mut self, clock_rate: u32) {
        if clock_rate != 0 && clock_rate != self.clock_rate {
            self.clock_rate = clock_rate;
            self.last_transit = None;
        }
    }

    fn init(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.cycles = 0;
        self.bad_seq = None;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.started = true;
    }

    /// Accounts for one received packet.
    pub fn on_packet(&mut self, now: Instant, seq: u16, rtp_ts: u32) {
        self.active_since_report = true;
        self.last_arrival = Some(now);
        if !self.started {
            self.init(seq);
        } else {
            let udelta = seq.wrapping_sub(self.max_seq);
            if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(1 << 16);
                }
                self.max_seq = seq;
            } else if udelta <= u16::MAX - MAX_MISORDER {
                // A large jump: the source restarted, or this is a stray packet. Resync only when
                // the next packet confirms the jump (RFC 3550 A.1).
                if self.bad_seq == Some(seq) {
                    self.init(seq);
                } else {
                    self.bad_seq = Some(seq.wrapping_add(1));
                    return;
                }
            }
            // else: duplicate or reordered packet – counted below, max_seq unchanged.
        }
        self.received = self.received.wrapping_add(1);

        // Interarrival jitter (A.8), arrival time in RTP units.
        let elapsed = now.saturating_duration_since(self.epoch);
        let rate = u64::from(self.clock_rate);
        // u64 arithmetic (no u128 division on the per-packet path): nanos < 1e9, rate < 2^32.
        let arrival = (elapsed.as_secs().wrapping_mul(rate)
            + u64::from(elapsed.subsec_nanos()) * rate / 1_000_000_000)
            as i64;
        let transit = arrival.wrapping_sub(i64::from(rtp_ts));
        if let Some(prev) = self.last_transit {
            // Transit differences wrap with the 32-bit RTP timestamp.
            let d = i64::from((transit.wrapping_sub(prev)) as i32).unsigned_abs();
            let j = self.jitter_q4;
            self.jitter_q4 = (j + d).saturating_sub((j + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// Remembers the sender's last SR for LSR/DLSR.
    pub fn on_sender_report(&mut self, now: Instant, ntp_middle: u32) {
        self.last_sr = Some((ntp_middle, now));
    }

    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    pub fn packets_received(&self) -> u32 {
        self.received
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter()) * 1000.0 / f64::from(self.clock_rate)
    }

    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// `(expected, lost)` packets of the interval the last [`report_block`](Self::report_block)
    /// covered (RFC 3550 A.3; duplicates can make the loss negative, counted as 0).
    pub fn last_interval(&self) -> (u32, u32) {
        self.last_interval
    }

    /// Interarrival jitter in RTP timestamp units.
    pub fn jitter(&self) -> u32 {
        u32::try_from(self.jitter_q4 >> 4).unwrap_or(u32::MAX)
    }

    pub fn is_active(&self) -> bool {
        self.active_since_report
    }

    /// The report block for this SSRC; advances the "prior" counters used for the fraction lost.
    pub fn report_block(&mut self, now: Instant, ssrc: u32) -> ReportBlock {
        let ext_max = self.extended_highest_seq();
        let expected = ext_max.wrapping_sub(self.base_seq).wrapping_add(1);
        let lost = i64::from(expected) - i64::from(self.received);
        let cumulative_lost = lost.clamp(-0x80_0000, 0x7f_ffff) as i32;
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        self.last_interval = (
            expected_interval,
            u32::try_from(lost_interval.max(0)).unwrap_or(0),
        );
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((lsr, at)) => (lsr, to_q16(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        self.active_since_report = false;
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost,
            extended_highest_seq: ext_max,
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// A duration in units of 1/65536 s (DLSR).
fn to_q16(d: Duration) -> u32 {
    let v = d.as_nanos() * 65536 / 1_000_000_000;
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_fraction_from_a_stream_with_known_loss() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(t0, 90_000);
        // 100 packets, every 10th lost (10 lost), 20 ms apart, perfectly paced: jitter 0.
        let mut now = t0;
        for i in 0u16..100 {
            now = t0 + Duration::from_millis(20 * u64::from(i));
            if i % 10 != 5 {
                s.on_packet(now, 1000 + i, 1800 * u32::from(i));
            }
        }
        let rb = s.report_block(now, 42);
        assert_eq!(rb.extended_highest_seq, 1099);
        assert_eq!(rb.cumulative_lost, 10);
        assert_eq!(rb.fraction_lost, (10 * 256 / 100) as u8);
        assert_eq!(rb.jitter, 0);
        // Next interval without loss: fraction 0, cumulative unchanged.
        for i in 100u16..150 {
            now = t0 + Duration::from_millis(20 * u64::from(i));
            s.on_packet(now, 1000 + i, 1800 * u32::from(i));
        }
        let rb = s.report_block(now, 42);
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (0, 10));
    }

    #[test]
    fn wraparound_extends_the_sequence_number() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(t0, 48_000);
        for i in 0u32..20 {
            s.on_packet(t0, (65530 + i) as u16, i * 960);
        }
        assert_eq!(s.extended_highest_seq(), 65536 + 13);
        let rb = s.report_block(t0, 1);
        assert_eq!(rb.cumulative_lost, 0);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(t0, 90_000);
        // Timestamps advance 3000 (33.3 ms) but arrivals alternate 23.3 ms / 43.3 ms: |D| = 900 each.
        let mut arrival_us = 0u64;
        for i in 0u32..400 {
            s.on_packet(t0 + Duration::from_micros(arrival_us), i as u16, i * 3000);
            arrival_us += if i % 2 == 0 { 23_333 } else { 43_333 };
        }
        // Steady state of J += (|D| - J)/16 with |D| = 900 is 900.
        let j = s.jitter();
        assert!((880..=905).contains(&j), "jitter {j}");
    }

    #[test]
    fn lsr_dlsr_from_last_sender_report() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(t0, 90_000);
        s.on_packet(t0, 1, 1);
        s.on_sender_report(t0, 0xabcd_0123);
        let rb = s.report_block(t0 + Duration::from_millis(500), 1);
        assert_eq!(rb.last_sr, 0xabcd_0123);
        assert_eq!(rb.delay_since_last_sr, 32768);
    }

    #[test]
    fn large_jump_needs_confirmation() {
        let t0 = Instant::now();
        let mut s = ReceiveStats::new(t0, 90_000);
        s.on_packet(t0, 100, 0);
        s.on_packet(t0, 101, 0);
        s.on_packet(t0, 40_000, 0); // stray
        assert_eq!(s.extended_highest_seq(), 101);
        s.on_packet(t0, 40_001, 0); // confirmed: restart
        assert_eq!(s.extended_highest_seq(), 40_001);
        assert_eq!(s.report_block(t0, 1).cumulative_lost, 0);
    }
}
