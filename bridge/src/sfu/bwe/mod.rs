//! Send-side bandwidth estimation for the downlink (bridge → one receiver), GoogCC-style, from the
//! transport-cc feedback the receiver returns for the bridge's own transport-wide sequence
//! numbers (JVB `jitsi-media-transform/src/main/kotlin/org/jitsi/nlj/rtp/bandwidthestimation2/`). One [`SendSideBwe`] per receiving endpoint; sans-IO, fed `now`.
//!
//! ```text
//!  on_packet_sent ──▶ history (seq → send time, size, probe cluster)
//!  on_transport_feedback ──▶ adapter ──▶ per packet (send, arrival)
//!        ├─▶ acknowledged bitrate (Bayesian, 150 ms windows)
//!        ├─▶ probe clusters ──▶ probe result
//!        ├─▶ inter-arrival groups (5 ms) ─▶ trendline (overuse?) ─▶ AIMD ─┐
//!        └─▶ loss counts ─▶ loss controller (cap) ─────────────────────────┴─▶ min ─▶ poll_estimate
//! ```
//!
//! The delay-based part follows libwebrtc's GoogCC design (as JVB's `bandwidthestimation2` port
//! does): trendline window 20, smoothing 0.9, gain 4, adaptive threshold (k_up 0.0087, k_down
//! 0.039, 6–600), overuse after 10 ms and two consecutive detections; AIMD with 8 %/s
//! multiplicative increase while the link capacity is unknown, additive near it, decrease to
//! 0.85 × acknowledged bitrate; increases capped at 1.5 × acknowledged + 10 kbps. Loss: > 10 %
//! decrease, < 2 % allow increase (see [`loss`]). Bounds: 2.5 Mbps initial, 30 kbps – 20 Mbps.
//!
//! Probing ([`probe`]): when the allocator wants more than the estimate, [`probe_request`]
//! returns a cluster; the shell then sends padding/RTX when [`poll_probe`] says so and reports
//! every packet with [`on_packet_sent`]. A successful probe sets the estimate directly.
//!
//! Measured (`cargo bench -p benches --bench bwe -- --quick`, release, shared 2-core machine,
//! medians): `on_packet_sent` 18 ns; `on_transport_feedback` for a 100-packet feedback (parse
//! included) 5.9 µs, i.e. ≈ 60 ns per acknowledged packet. No allocation once warm
//! (`benches/tests/alloc_free_cc.rs`).
//!
//! ## Wiring (conference)
//! One estimator per receiving endpoint that negotiated transport-cc (its `ext.transport_cc`
//! is set): `SendSideBwe::new(now, BweConfig::default())`.
//! - Every packet stamped with the receiver's TCC number (`next_tcc` in the forwarding loop, the
//!   NACK/RTX resend path, probes): after `write_forwarded`, `on_packet_sent(now, tcc,
//!   packet_len, None)` (probe packets: `Some(cluster)`).
//! - `on_rtcp`, `Packet::TransportCc(t)`: `TransportFeedback::from_rtcp(&t)` →
//!   `on_transport_feedback(now, &fb)` (count a malformed one as dropped); then if
//!   `poll_estimate()` moved more than 15 % from the value the last allocation used, re-run the
//!   allocation with it.
//! - Allocation: when its ideal rate exceeds `poll_estimate()`, `probe_request(now, ideal)`
//!   (each run and every ~100 ms); then, at `poll_timeout()` (add it to `next_timeout`), `while
//!   let Some(p) = poll_probe(now)` send an RTX copy of a recent packet from the receiver's sent
//!   log (or RTP padding on the video SSRC, ≤ 255 padding bytes a packet) with a fresh TCC number
//!   and report it with `on_packet_sent(now, tcc, len, Some(p.cluster))`.
//! - `handle_timeout(now)` at `poll_timeout()` or with the housekeeping tick; `on_rtt(rtt)` when
//!   an RTT to the receiver is known (default 200 ms).
//!
//! Not modelled (yet): ALR detection, congestion window pushback, loss-based v2, a feedback
//! timeout (the estimate holds if feedback stops).
//!
//! [`probe_request`]: SendSideBwe::probe_request
//! [`poll_probe`]: SendSideBwe::poll_probe
//! [`on_packet_sent`]: SendSideBwe::on_packet_sent

pub mod ack_bitrate;
pub mod aimd;
pub mod delay;
pub mod history;
pub mod loss;
pub mod probe;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use crate::sfu::tcc_feedback::TransportFeedback;

use ack_bitrate::AckedBitrate;
pub use aimd::BandwidthUsage;
use delay::DelayBasedBwe;
use history::{PacketResult, SentHistory};
use loss::LossController;
use probe::Prober;
pub use probe::{ProbeCluster, ProbeConfig, ProbeSend};

#[derive(Debug, Clone, Copy)]
pub struct BweConfig {
    pub initial_bps: u64,
    pub min_bps: u64,
    pub max_bps: u64,
    pub probe: ProbeConfig,
}

impl Default for BweConfig {
    fn default() -> Self {
        BweConfig {
            initial_bps: 2_500_000,
            min_bps: 30_000,
            max_bps: 20_000_000,
            probe: ProbeConfig::default(),
        }
    }
}

/// Bandwidth estimator for one receiver. See the module docs.
#[derive(Debug, Clone)]
pub struct SendSideBwe {
    cfg: BweConfig,
    epoch: Instant,
    history: SentHistory,
    results: Vec<PacketResult>,
    acked: AckedBitrate,
    delay: DelayBasedBwe,
    loss: LossController,
    prober: Prober,
    rtt: Duration,
    target_bps: f64,
    /// Feedback packets that failed to match anything we sent (stats).
    pub unknown_statuses: u64,
}

impl SendSideBwe {
    pub fn new(now: Instant, cfg: BweConfig) -> Self {
        let (start, min, max) = (
            cfg.initial_bps as f64,
            cfg.min_bps as f64,
            cfg.max_bps as f64,
        );
        SendSideBwe {
            cfg,
            epoch: now,
            history: SentHistory::default(),
            results: Vec::with_capacity(256),
            acked: AckedBitrate::default(),
            delay: DelayBasedBwe::new(start, min, max),
            loss: LossController::default(),
            prober: Prober::new(cfg.probe),
            rtt: Duration::from_millis(200),
            target_bps: start.clamp(min, max),
            unknown_statuses: 0,
        }
    }

    fn us(&self, now: Instant) -> i64 {
        i64::try_from(now.saturating_duration_since(self.epoch).as_micros()).unwrap_or(i64::MAX)
    }

    fn instant(&self, us: i64) -> Instant {
        self.epoch + Duration::from_micros(us.max(0) as u64)
    }

    /// Every packet sent to this receiver that carries the bridge's transport-cc number `tcc_seq`
    /// (media, RTX, padding), with its size on the wire (RTP header + payload) and the probe
    /// cluster it was sent for, if any. While a cluster is active, every packet counts for it.
    pub fn on_packet_sent(
        &mut self,
        now: Instant,
        tcc_seq: u16,
        size: usize,
        probe_cluster: Option<u32>,
    ) {
        let now_us = self.us(now);
        let size = u32::try_from(size).unwrap_or(u32::MAX);
        let cluster = probe_cluster.or(self.prober.active_cluster()).unwrap_or(0);
        if cluster != 0 {
            self.prober.on_sent(now_us, cluster, size);
        }
        self.history.on_sent(now_us, tcc_seq, size, cluster);
    }

    /// A transport-cc feedback from this receiver.
    pub fn on_transport_feedback(&mut self, now: Instant, feedback: &TransportFeedback<'_>) {
        let now_us = self.us(now);
        let counts = self
            .history
            .on_feedback(now_us, feedback, &mut self.results);
        self.unknown_statuses += u64::from(counts.unknown);
        // Received first, in arrival order; lost at the end.
        self.results
            .sort_unstable_by_key(|r| (r.arrival_us.is_none(), r.arrival_us.unwrap_or(0), r.seq));
        let n = self.results.partition_point(|r| r.arrival_us.is_some());
        let received = &self.results[..n];
        let mut probe: Option<(u32, f64)> = None;
        for r in received {
            if let Some(a) = r.arrival_us {
                self.acked.update(a, r.size);
            }
            if r.cluster != 0
                && let Some(bps) = self.prober.on_result(r)
            {
                probe = Some((r.cluster, bps));
            }
        }
        if let Some((cluster, bps)) = probe {
            self.prober.on_feedback_result(now_us, cluster, bps);
        }
        // A probe only ever raises the estimate; lower capacity shows up as delay anyway.
        let probe_bps = probe
            .map(|(_, b)| b)
            .filter(|b| *b > self.delay.estimate_bps());
        let acked = self.acked.bitrate_bps().or_else(|| self.acked.peek_bps());
        if probe_bps.is_some() {
            self.loss.on_probe_result();
        }
        let res = self.delay.on_feedback(now_us, received, acked, probe_bps);
        if res.probe {
            self.acked.expect_fast_change();
        }
        let rtt_us = i64::try_from(self.rtt.as_micros()).unwrap_or(i64::MAX);
        self.loss.on_feedback(
            now_us,
            counts.lost,
            counts.received,
            self.target_bps,
            rtt_us,
        );
        self.loss.update(now_us, self.delay.estimate_bps());
        self.recompute();
    }

    /// Latest round-trip time to this receiver (from RTCP RR/SR timing).
    pub fn on_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
        self.delay.aimd.rtt_ms = rtt.as_secs_f64() * 1000.0;
    }

    fn recompute(&mut self) {
        let mut t = self.delay.estimate_bps();
        if let Some(l) = self.loss.limit_bps() {
            t = t.min(l);
        }
        self.target_bps = t.clamp(self.cfg.min_bps as f64, self.cfg.max_bps as f64);
    }

    /// The current estimate (target send bitrate toward this receiver), bps.
    pub fn poll_estimate(&self) -> u64 {
        self.target_bps as u64
    }

    /// The allocation would like to send `desired_bps`: if that is above the estimate and probing
    /// is allowed (no overuse, not loss-limited, no cluster in flight, not backing off after a
    /// probe that found the capacity), a cluster is started and returned. Call it whenever the
    /// allocation's ideal rate exceeds the estimate (e.g. each allocation run or every 100 ms).
    pub fn probe_request(&mut self, now: Instant, desired_bps: u64) -> Option<ProbeCluster> {
        let now_us = self.us(now);
        let limited =
            self.delay.detector.usage() == BandwidthUsage::Overusing || self.loss.high_loss();
        self.prober.request(
            now_us,
            desired_bps as f64,
            self.target_bps,
            self.cfg.max_bps as f64,
            limited,
        )
    }

    /// A probe packet to send now (padding or an RTX copy of about `bytes`); report it with
    /// [`on_packet_sent`](Self::on_packet_sent)`(.., Some(cluster))`. Call until `None`.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ProbeSend> {
        let now_us = self.us(now);
        self.prober.poll(now_us)
    }

    /// When [`poll_probe`](Self::poll_probe) / [`handle_timeout`](Self::handle_timeout) want to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.prober.poll_timeout_us().map(|us| self.instant(us))
    }

    /// Time-driven work: probe timeouts, loss cap growth.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now_us = self.us(now);
        self.prober.handle_timeout(now_us);
        self.loss.update(now_us, self.delay.estimate_bps());
        self.recompute();
    }

    /// The delay detector's current verdict.
    pub fn usage(&self) -> BandwidthUsage {
        self.delay.detector.usage()
    }

    /// Acknowledged (received) bitrate, once measured.
    pub fn acknowledged_bps(&self) -> Option<u64> {
        self.acked.bitrate_bps().map(|b| b as u64)
    }

    /// Delay-based estimate alone.
    pub fn delay_based_bps(&self) -> u64 {
        self.delay.estimate_bps() as u64
    }

    /// Loss fraction of the last complete measurement (≥ 20 packets).
    pub fn loss_fraction(&self) -> f64 {
        self.loss.fraction
    }

    /// Probe clusters started / that produced a result.
    pub fn probe_stats(&self) -> (u32, u32) {
        (self.prober.started, self.prober.succeeded)
    }
}
