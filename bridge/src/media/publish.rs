//! Statistics publishing: the media workers' counters, read as one [`StatsSample`] for
//! `/colibri/stats`, `/metrics` and the brewery presence. Each worker publishes every
//! [`STATS_EXPORT_INTERVAL`] (and at once after COLIBRI2 changes) into its own slot; readers merge
//! the slots' latest samples (each a mutex written twice a second by one worker) with the
//! transports' live drop and hand-off counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::sfu::Stat;
use crate::stats::{StatsSample, UdpIo};
use crate::transport::DropCounters;
use crate::transport::udp::IoCounters;

use super::placement::WorkerLoad;
use super::plane::Plane;

/// How often the media worker publishes its counters for `/colibri/stats` and `/metrics`.
pub const STATS_EXPORT_INTERVAL: Duration = Duration::from_millis(500);

/// The media part of a stats sample (transport drops and XMPP are added by the readers).
pub fn export(plane: &Plane, now: Instant) -> StatsSample {
    let sfu = &plane.sfu;
    let c = sfu.counters();
    let t = &plane.traffic;
    let sfu_stats = sfu.stats();
    let link = sfu.link_stats(now);
    let mut dropped: BTreeMap<String, u64> = BTreeMap::new();
    for (reason, n) in c.drops() {
        *dropped.entry(reason.as_str().to_owned()).or_default() += n;
    }
    if t.channel_backlog_drops > 0 {
        *dropped
            .entry("channel_backlog_full".to_owned())
            .or_default() += t.channel_backlog_drops;
    }
    if t.handler_panics > 0 {
        *dropped.entry("handler_panic".to_owned()).or_default() += t.handler_panics;
    }
    let channel_in = c.get(Stat::ChannelMessagesReceived);
    let channel_out = c.get(Stat::ChannelMessagesSent);
    StatsSample {
        local_endpoints: sfu_stats.endpoints as u64,
        conference_sizes: sfu.conference_sizes().map(|n| n as u32).collect(),
        endpoints_sending_audio: link.endpoints_sending_audio,
        endpoints_sending_video: link.endpoints_sending_video,
        rtt_aggregate_ms: link.rtt_aggregate_ms(),
        jitter_aggregate_ms: link.jitter_aggregate_ms(),
        audio_channels: link.audio_channels,
        video_channels: link.video_channels,
        video_streams: link.video_streams,
        packets_expected: c.get(Stat::PacketsExpected),
        packets_lost: c.get(Stat::PacketsLost),
        report_blocks: c.get(Stat::ReportBlocksReceived),
        reported_loss_q8: c.get(Stat::ReportedLossQ8),
        conferences_failed: c.get(Stat::ConferencesFailed),
        conferences_partially_failed: c.get(Stat::ConferencesPartiallyFailed),
        packets_received: t.packets_in,
        packets_sent: t.packets_out,
        bytes_received: t.bytes_in,
        bytes_sent: t.bytes_out,
        ice_succeeded: t.ice_succeeded,
        ice_failed: t.ice_failed,
        endpoints_dtls_failed: t.dtls_failed,
        ice_restarts: t.ice_restarts,
        conferences_created: c.get(Stat::ConferencesCreated),
        conferences_completed: c.get(Stat::ConferencesExpired),
        conference_seconds: t.conference_seconds,
        endpoints_created: c.get(Stat::EndpointsCreated),
        dominant_speaker_changes: c.get(Stat::DominantSpeakerChanges),
        data_channel_messages_received: channel_in.saturating_sub(t.ws_messages_in),
        data_channel_messages_sent: channel_out.saturating_sub(t.ws_messages_out),
        colibri_web_socket_messages_received: t.ws_messages_in,
        colibri_web_socket_messages_sent: t.ws_messages_out,
        dropped_packets: dropped,
        ..StatsSample::default()
    }
}

/// One media worker's counters as last published, plus its transport's live counters.
struct WorkerSlot {
    counters: Arc<DropCounters>,
    io: Arc<IoCounters>,
    latest: Mutex<StatsSample>,
    /// Packets in + out per second over the last export interval (placement).
    packet_rate: AtomicU64,
}

/// Every media worker's counters as last published (one slot each, written by its worker),
/// merged for readers.
pub struct MediaStats {
    workers: Vec<WorkerSlot>,
}

impl MediaStats {
    /// Slots for workers with these drop and I/O counters.
    pub(crate) fn new(workers: Vec<(Arc<DropCounters>, Arc<IoCounters>)>) -> MediaStats {
        MediaStats {
            workers: workers
                .into_iter()
                .map(|(counters, io)| WorkerSlot {
                    counters,
                    io,
                    latest: Mutex::new(StatsSample::default()),
                    packet_rate: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Worker `w` publishes its sample and packet rate.
    pub(crate) fn publish(&self, w: usize, sample: StatsSample, packet_rate: u64) {
        if let Some(slot) = self.workers.get(w) {
            *slot.latest.lock().unwrap_or_else(PoisonError::into_inner) = sample;
            slot.packet_rate.store(packet_rate, Ordering::Relaxed);
        }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Worker `w`'s latest sample with its transport's live counters.
    pub fn worker_sample(&self, w: usize) -> StatsSample {
        let Some(slot) = self.workers.get(w) else {
            return StatsSample::default();
        };
        let mut s = slot
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (reason, n) in slot.counters.snapshot() {
            *s.dropped_packets.entry(reason.to_owned()).or_default() += n;
        }
        let io = &slot.io;
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (reason, n) in [
            ("handoff_full", read(&io.handoff_dropped)),
            ("datagram_too_long", read(&io.truncated)),
        ] {
            if n > 0 {
                *s.dropped_packets.entry(reason.to_owned()).or_default() += n;
            }
        }
        s.media_workers = 1;
        s.datagrams_handed_off = read(&io.handed_off);
        s.udp = UdpIo {
            recv_calls: read(&io.recv_calls),
            datagrams_received: read(&io.datagrams_received),
            gro_messages: read(&io.gro_messages),
            send_calls: read(&io.send_calls),
            datagrams_sent: read(&io.datagrams_sent),
            gso_messages: read(&io.gso_messages),
            gso_fallbacks: read(&io.gso_disabled),
            send_errors: read(&io.send_errors),
            send_buffer_full: read(&io.send_buffer_full),
        };
        s
    }

    /// Every worker's transport batch counters (syscalls, GSO, hand-offs).
    pub fn io(&self, w: usize) -> Option<&Arc<IoCounters>> {
        self.workers.get(w).map(|s| &s.io)
    }

    /// All workers' latest samples merged, with the transports' live counters.
    pub fn sample(&self) -> StatsSample {
        let mut s = StatsSample::default();
        for w in 0..self.workers.len() {
            s.merge(&self.worker_sample(w));
        }
        s
    }

    pub fn local_endpoints(&self) -> u64 {
        self.workers
            .iter()
            .map(|w| {
                w.latest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .local_endpoints
            })
            .sum()
    }

    /// Each worker's load for placing a new conference.
    pub fn loads(&self) -> Vec<WorkerLoad> {
        self.workers
            .iter()
            .map(|w| WorkerLoad {
                endpoints: w
                    .latest
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .local_endpoints,
                packet_rate: w.packet_rate.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{BridgeMetrics, StatsAggregator, StatsConfig};

    /// The sockets' batch counters of every worker reach `/colibri/stats` and `/metrics`, summed;
    /// datagrams the kernel truncated are counted as a drop.
    #[test]
    fn socket_batch_counters_are_exported() {
        let ios: Vec<Arc<IoCounters>> = (0..2).map(|_| Arc::default()).collect();
        let stats = MediaStats::new(
            ios.iter()
                .map(|io| (Arc::new(DropCounters::default()), Arc::clone(io)))
                .collect(),
        );
        for (i, io) in ios.iter().enumerate() {
            let k = i as u64 + 1;
            io.recv_calls.store(10 * k, Ordering::Relaxed);
            io.datagrams_received.store(100 * k, Ordering::Relaxed);
            io.gro_messages.store(k, Ordering::Relaxed);
            io.send_calls.store(20 * k, Ordering::Relaxed);
            io.datagrams_sent.store(1000 * k, Ordering::Relaxed);
            io.gso_messages.store(3 * k, Ordering::Relaxed);
            io.truncated.store(k, Ordering::Relaxed);
            io.send_buffer_full.store(k, Ordering::Relaxed);
        }
        let s = stats.sample();
        assert_eq!(
            s.udp,
            UdpIo {
                recv_calls: 30,
                datagrams_received: 300,
                gro_messages: 3,
                send_calls: 60,
                datagrams_sent: 3000,
                gso_messages: 9,
                gso_fallbacks: 0,
                send_errors: 0,
                send_buffer_full: 3,
            }
        );
        assert_eq!(s.dropped_packets.get("datagram_too_long"), Some(&3));

        let mut agg = StatsAggregator::new(StatsConfig::default());
        let snap = agg.update(Instant::now(), s);
        assert_eq!(snap.to_json()["total_udp_datagrams_sent"], 3000);
        assert_eq!(snap.to_json()["total_udp_send_calls"], 60);
        let m = BridgeMetrics::new().unwrap();
        m.observe(&snap);
        let text = m.render();
        for line in [
            "jitsi_jvb_udp_recv_calls_total 30",
            "jitsi_jvb_udp_datagrams_received_total 300",
            "jitsi_jvb_udp_gro_messages_total 3",
            "jitsi_jvb_udp_send_calls_total 60",
            "jitsi_jvb_udp_datagrams_sent_total 3000",
            "jitsi_jvb_udp_gso_messages_total 9",
            "jitsi_jvb_udp_gso_fallbacks_total 0",
            "jitsi_jvb_udp_send_buffer_full_total 3",
            "jitsi_jvb_dropped_packets_total{reason=\"datagram_too_long\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
