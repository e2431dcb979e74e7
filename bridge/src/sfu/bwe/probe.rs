//! Probing: when the allocation wants more than the estimate, send a short burst (a *cluster*,
//! ≥ 5 packets and ≥ 15 ms worth of bytes) at a higher rate and see how fast it arrives. If it
//! arrives as fast as it was sent, the link has at least that much capacity and the estimate jumps
//! there instead of creeping up at 8 %/s; if it arrives slower, the receive rate is the capacity.
//!
//! Every packet sent while a cluster is active belongs to it (media included), so the cluster's
//! rate is the total send rate and the shell only tops it up with padding or RTX
//! ([`Prober::poll`] says how much and when). Results follow GoogCC's probe bitrate estimator:
//! at least 80 % of the cluster's packets and bytes must be acknowledged, send and receive
//! intervals must be positive and under 1 s, a receive rate more than twice the send rate is
//! invalid, and a receive rate under 90 % of the send rate means the link saturated (the result
//! is then 95 % of the receive rate).

use super::history::PacketResult;

/// A burst to send at `bitrate_bps`: the first `min_packets` packets and `min_bytes` bytes sent
/// after [`SendSideBwe::probe_request`](super::SendSideBwe::probe_request) returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeCluster {
    pub id: u32,
    pub bitrate_bps: u64,
    pub min_packets: u32,
    pub min_bytes: u32,
}

/// "Send a probe packet (padding or an RTX copy) of about `bytes` now, tagged `cluster`."
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSend {
    pub cluster: u32,
    pub bytes: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    pub min_packets: u32,
    pub duration_us: i64,
    /// Wait for a result this long after a cluster was sent.
    pub result_timeout_us: i64,
    /// After a probe found the capacity (or failed), no new probe for this long.
    pub backoff_us: i64,
    /// A cluster the shell stops feeding is abandoned after this long.
    pub abandon_us: i64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            min_packets: 5,
            duration_us: 15_000,
            result_timeout_us: 1_000_000,
            backoff_us: 5_000_000,
            abandon_us: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Active {
    cluster: ProbeCluster,
    start_us: i64,
    last_send_us: i64,
    sent_packets: u32,
    sent_bytes: u64,
}

#[derive(Debug, Clone, Copy)]
struct Aggregate {
    cluster: ProbeCluster,
    packets: u32,
    bytes: u64,
    first_send: i64,
    last_send: i64,
    first_recv: i64,
    last_recv: i64,
    size_last_send: u32,
    size_first_recv: u32,
}

const TRACKED: usize = 8;
const MIN_RECEIVED_RATIO: f64 = 0.8;
const MAX_VALID_RATIO: f64 = 2.0;
const MIN_RATIO_UNSATURATED: f64 = 0.9;
const TARGET_UTILIZATION: f64 = 0.95;
const MAX_PROBE_INTERVAL_US: i64 = 1_000_000;
const MAX_CLUSTER_HISTORY_US: i64 = 1_000_000;
/// A desired rate this much above the previous one ends a backoff.
const ALLOCATION_RAISE: f64 = 1.2;

#[derive(Debug, Clone)]
pub struct Prober {
    cfg: ProbeConfig,
    next_id: u32,
    active: Option<Active>,
    /// (cluster, time the cluster finished sending)
    awaiting: Option<(ProbeCluster, i64)>,
    backoff_until_us: i64,
    aggregates: [Option<Aggregate>; TRACKED],
    /// What the allocation wanted at the last request: a clearly higher wish (a receiver raised
    /// its constraints, a source went on stage) probes at once even while backing off, as GoogCC's
    /// probe controller does when the maximum allocated bitrate grows.
    last_desired_bps: f64,
    /// Clusters started / that produced a result (diagnostics).
    pub started: u32,
    pub succeeded: u32,
}

impl Prober {
    pub fn new(cfg: ProbeConfig) -> Self {
        Prober {
            cfg,
            next_id: 1,
            active: None,
            awaiting: None,
            backoff_until_us: i64::MIN,
            aggregates: [None; TRACKED],
            last_desired_bps: 0.0,
            started: 0,
            succeeded: 0,
        }
    }

    /// The cluster packets sent now belong to.
    pub fn active_cluster(&self) -> Option<u32> {
        self.active.map(|a| a.cluster.id)
    }

    /// Starts a cluster if one is useful and allowed now.
    pub fn request(
        &mut self,
        now_us: i64,
        desired_bps: f64,
        estimate_bps: f64,
        max_bps: f64,
        limited: bool,
    ) -> Option<ProbeCluster> {
        self.check_timeouts(now_us);
        let raised = desired_bps > self.last_desired_bps * ALLOCATION_RAISE;
        self.last_desired_bps = desired_bps;
        if limited || self.active.is_some() || self.awaiting.is_some() {
            return None;
        }
        if (now_us < self.backoff_until_us && !raised)
            || desired_bps <= estimate_bps * 1.05
            || estimate_bps >= max_bps
        {
            return None;
        }
        let bitrate = desired_bps
            .max(estimate_bps * 1.2)
            .min(estimate_bps * 2.0)
            .min(max_bps);
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let min_bytes = (bitrate * self.cfg.duration_us as f64 / 8e6).ceil();
        let cluster = ProbeCluster {
            id,
            bitrate_bps: bitrate as u64,
            min_packets: self.cfg.min_packets,
            min_bytes: min_bytes.min(f64::from(u32::MAX)) as u32,
        };
        self.active = Some(Active {
            cluster,
            start_us: now_us,
            last_send_us: now_us,
            sent_packets: 0,
            sent_bytes: 0,
        });
        self.aggregates[id as usize % TRACKED] = Some(Aggregate {
            cluster,
            packets: 0,
            bytes: 0,
            first_send: i64::MAX,
            last_send: i64::MIN,
            first_recv: i64::MAX,
            last_recv: i64::MIN,
            size_last_send: 0,
            size_first_recv: 0,
        });
        self.started += 1;
        Some(cluster)
    }

    fn finish(&mut self, now_us: i64) {
        if let Some(a) = self.active.take() {
            self.awaiting = Some((a.cluster, now_us));
        }
    }

    fn check_timeouts(&mut self, now_us: i64) {
        if let Some(a) = self.active
            && now_us - a.last_send_us > self.cfg.abandon_us
        {
            self.finish(now_us);
        }
        if let Some((_, done)) = self.awaiting
            && now_us - done > self.cfg.result_timeout_us
        {
            self.awaiting = None;
            self.backoff_until_us = now_us + self.cfg.backoff_us;
        }
    }

    /// A packet of `size` bytes was sent while `cluster` was active.
    pub fn on_sent(&mut self, now_us: i64, cluster: u32, size: u32) {
        let Some(a) = self.active.as_mut().filter(|a| a.cluster.id == cluster) else {
            return;
        };
        a.sent_packets += 1;
        a.sent_bytes += u64::from(size);
        a.last_send_us = now_us;
        if a.sent_packets >= a.cluster.min_packets && a.sent_bytes >= u64::from(a.cluster.min_bytes)
        {
            self.finish(now_us);
        }
    }

    fn next_send_us(a: &Active) -> i64 {
        a.start_us + (a.sent_bytes as f64 * 8e6 / a.cluster.bitrate_bps.max(1) as f64) as i64
    }

    /// When [`poll`](Self::poll) will next ask for a probe packet.
    pub fn poll_timeout_us(&self) -> Option<i64> {
        let a = self.active.as_ref()?;
        Some(Self::next_send_us(a).min(a.last_send_us + self.cfg.abandon_us + 1))
    }

    /// A probe packet due now, if any.
    pub fn poll(&mut self, now_us: i64) -> Option<ProbeSend> {
        self.check_timeouts(now_us);
        let a = self.active.as_ref()?;
        if now_us < Self::next_send_us(a) {
            return None;
        }
        let per_packet = u64::from(a.cluster.min_bytes) / u64::from(a.cluster.min_packets.max(1));
        Some(ProbeSend {
            cluster: a.cluster.id,
            bytes: per_packet.clamp(200, 1200) as usize,
        })
    }

    /// One acknowledged probe packet; returns the cluster's estimate once it is valid.
    pub fn on_result(&mut self, p: &PacketResult) -> Option<f64> {
        let arrival = p.arrival_us?;
        for slot in self.aggregates.iter_mut() {
            if slot.is_some_and(|g| {
                g.last_recv != i64::MIN && g.last_recv + MAX_CLUSTER_HISTORY_US < arrival
            }) {
                *slot = None;
            }
        }
        let g = self.aggregates[p.cluster as usize % TRACKED]
            .as_mut()
            .filter(|g| g.cluster.id == p.cluster)?;
        if p.send_us < g.first_send {
            g.first_send = p.send_us;
        }
        if p.send_us > g.last_send {
            g.last_send = p.send_us;
            g.size_last_send = p.size;
        }
        if arrival < g.first_recv {
            g.first_recv = arrival;
            g.size_first_recv = p.size;
        }
        g.last_recv = g.last_recv.max(arrival);
        g.bytes += u64::from(p.size);
        g.packets += 1;
        let c = g.cluster;
        if f64::from(g.packets) < f64::from(c.min_packets) * MIN_RECEIVED_RATIO
            || (g.bytes as f64) < f64::from(c.min_bytes) * MIN_RECEIVED_RATIO
        {
            return None;
        }
        let send_interval = g.last_send - g.first_send;
        let recv_interval = g.last_recv - g.first_recv;
        if send_interval <= 0
            || send_interval > MAX_PROBE_INTERVAL_US
            || recv_interval <= 0
            || recv_interval > MAX_PROBE_INTERVAL_US
        {
            return None;
        }
        // The last packet's send time and the first one's arrival do not cover their own bytes.
        let send_rate = (g.bytes - u64::from(g.size_last_send)) as f64 * 8e6 / send_interval as f64;
        let recv_rate =
            (g.bytes - u64::from(g.size_first_recv)) as f64 * 8e6 / recv_interval as f64;
        if recv_rate / send_rate > MAX_VALID_RATIO {
            return None;
        }
        let mut res = send_rate.min(recv_rate);
        if recv_rate < MIN_RATIO_UNSATURATED * send_rate {
            res = TARGET_UTILIZATION * recv_rate;
        }
        Some(res)
    }

    /// The result of a feedback's probe packets (the last estimate of one cluster), if any.
    pub fn on_feedback_result(&mut self, now_us: i64, cluster: u32, result_bps: f64) {
        self.succeeded += 1;
        let awaited = self
            .awaiting
            .filter(|(c, _)| c.id == cluster)
            .map(|(c, _)| c);
        if let Some(c) = awaited {
            self.awaiting = None;
            if result_bps < 0.9 * c.bitrate_bps as f64 {
                // Found the capacity: no point probing again soon.
                self.backoff_until_us = now_us + self.cfg.backoff_us;
            }
        }
    }

    pub fn handle_timeout(&mut self, now_us: i64) {
        self.check_timeouts(now_us);
    }
}
