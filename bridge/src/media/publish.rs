//! Statistics publishing: the media worker's counters, read as a [`StatsSample`] for
//! `/colibri/stats`, `/metrics` and the brewery presence. The worker publishes every
//! [`STATS_EXPORT_INTERVAL`] (and at once after COLIBRI2 changes); readers take the latest sample
//! from a mutex written twice a second, plus the transport's live drop counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::sfu::Stat;
use crate::stats::StatsSample;
use crate::transport::DropCounters;

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

/// The media worker's counters as last published, plus the transport's live drop counters.
pub struct MediaStats {
    counters: Arc<DropCounters>,
    latest: Mutex<StatsSample>,
}

impl MediaStats {
    pub(crate) fn new(counters: Arc<DropCounters>) -> MediaStats {
        MediaStats {
            counters,
            latest: Mutex::new(StatsSample::default()),
        }
    }

    pub(crate) fn publish(&self, sample: StatsSample) {
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = sample;
    }

    /// The latest sample with the transport's drop counters added.
    pub fn sample(&self) -> StatsSample {
        let mut s = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (reason, n) in self.counters.snapshot() {
            *s.dropped_packets.entry(reason.to_owned()).or_default() += n;
        }
        s
    }

    pub fn local_endpoints(&self) -> u64 {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .local_endpoints
    }
}
