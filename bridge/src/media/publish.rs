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
use crate::stats::StatsSample;
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
        let lost = slot.io.handoff_dropped.load(Ordering::Relaxed);
        if lost > 0 {
            *s.dropped_packets
                .entry("handoff_full".to_owned())
                .or_default() += lost;
        }
        s.media_workers = 1;
        s.datagrams_handed_off = slot.io.handed_off.load(Ordering::Relaxed);
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
