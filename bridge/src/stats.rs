//! Statistics: what the media plane counts, turned into JVB's `/colibri/stats` keys, brewery presence
//! stats and `jitsi_jvb_*` Prometheus metrics.
//!
//! Flow: a [`StatsSource`] (the seam the media plane and the XMPP side fill) is sampled every
//! `stats.interval` (5 s, as JVB); a [`StatsAggregator`] (sans-IO) turns consecutive samples into a
//! [`StatsSnapshot`] with rates over that window; [`StatsHandle::current`] overlays the live fields
//! (lifecycle flags, health, timestamp, threads) so `/colibri/stats`, `/metrics` and presence always show
//! the current drain/shutdown state while traffic figures refresh every interval.
//!
//! **Stress.** `stress_level = (incoming + outgoing packet rate) / stats.max_packet_rate` (default
//! media workers × [`PACKET_RATE_PER_WORKER`]: the bridge's measured capacity, where JVB's
//! packet-rate `load-threshold` default is 50 000 pps for the whole JVM). JVB defaults to CPU usage / 0.9 instead; we use the
//! packet rate because (1) the per-packet crypto and forwarding is what costs us, so load is
//! proportional to it; (2) CPU usage in a container on a host-network node is shared with neighbours
//! and throttled by cgroup quotas, which makes it noisy and not comparable across nodes; (3) it is
//! deterministic, so it is testable and usable as an autoscaling metric. Set `max_packet_rate` to the
//! rate at which the node is saturated (see the benches). The value is not clamped: > 1 is overload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;
use tokio::sync::watch;

use crate::health::HealthRegistry;
use crate::lifecycle::{LifecycleHandle, LifecycleStatus};

/// Number of `conference_sizes` buckets: index `i` counts conferences with `i` endpoints, the last
/// bucket counts conferences of that size or larger (as JVB's legacy stats did).
pub const CONFERENCE_SIZE_BUCKETS: usize = 22;

/// The presence stats jicofo reads (JVB's default `stats-filter` whitelist).
pub const PRESENCE_WHITELIST: &[&str] = &[
    "average_participant_stress",
    "current_timestamp",
    "drain",
    "graceful_shutdown",
    "healthy",
    "region",
    "relay_id",
    "release",
    "shutting_down",
    "stress_level",
    "version",
];

/// Drop reasons pre-registered at 0 in `/metrics` (the label set is open: any other reason string
/// is counted too): the transport's, by their stable names. The forwarding core's reasons appear
/// once the media plane reports them.
pub const KNOWN_DROP_REASONS: &[&str] = &[
    "unknown_protocol",
    "unknown_address",
    "stun_malformed",
    "stun_unknown_ufrag",
    "stun_bad_integrity",
    "stun_bad_fingerprint",
    "stun_unexpected",
    "dtls_error",
    "unvalidated_address",
    "rtp_malformed",
    "srtp_not_ready",
    "srtp_auth",
    "srtp_replay",
    "sctp_error",
    "source_filtered",
    "ssrc_unsignalled",
    "ssrc_limit",
    "datagram_too_long",
];

/// One reading of the bridge's counters and current state. Counters are cumulative since start;
/// the aggregator computes rates from consecutive samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatsSample {
    /// Endpoints (local + relayed) in each current conference.
    pub conference_sizes: Vec<u32>,
    /// Endpoints connected to this bridge (what graceful shutdown waits for).
    pub local_endpoints: u64,
    pub endpoints_sending_audio: u64,
    pub endpoints_sending_video: u64,
    /// Average round-trip time toward the endpoints whose reports measured one, ms.
    pub rtt_aggregate_ms: f64,
    /// Average interarrival jitter of the streams being received, ms.
    pub jitter_aggregate_ms: f64,
    /// Endpoints that negotiated audio / video (JVB's `audiochannels`, `videochannels`).
    pub audio_channels: u64,
    pub video_channels: u64,
    /// Video streams being forwarded (sum over receivers; JVB's `videostreams`).
    pub video_streams: u64,
    /// Counters the loss rates are computed from over each interval: packets expected from and
    /// lost by senders; report blocks from receivers and their fraction-lost sum (1/256 units).
    pub packets_expected: u64,
    pub packets_lost: u64,
    pub report_blocks: u64,
    pub reported_loss_q8: u64,
    pub conferences_failed: u64,
    pub conferences_partially_failed: u64,

    pub packets_received: u64,
    pub packets_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub ice_succeeded: u64,
    pub ice_failed: u64,
    pub endpoints_dtls_failed: u64,
    pub ice_restarts: IceRestarts,
    pub conferences_created: u64,
    pub conferences_completed: u64,
    pub conference_seconds: u64,
    /// Endpoints ever created (JVB `total_participants`).
    pub endpoints_created: u64,
    pub dominant_speaker_changes: u64,
    pub data_channel_messages_received: u64,
    pub data_channel_messages_sent: u64,
    pub colibri_web_socket_messages_received: u64,
    pub colibri_web_socket_messages_sent: u64,
    /// Packets dropped as bad input, by reason (see [`KNOWN_DROP_REASONS`]; open set).
    pub dropped_packets: BTreeMap<String, u64>,
    /// Media workers (threads forwarding media), and datagrams one of them received for another's
    /// endpoints and handed over (`transport/handoff.rs`).
    pub media_workers: u64,
    pub datagrams_handed_off: u64,
    /// The media sockets' batched I/O, summed over the workers.
    pub udp: UdpIo,

    pub muc_clients_configured: u64,
    pub muc_clients_connected: u64,
    pub mucs_configured: u64,
    pub mucs_joined: u64,
}

impl StatsSample {
    /// Adds another media worker's sample: counters and gauges sum, conferences append, the RTT
    /// and jitter averages are weighted by endpoints.
    pub fn merge(&mut self, o: &StatsSample) {
        let (a, b) = (self.local_endpoints as f64, o.local_endpoints as f64);
        let mean = |x: f64, y: f64| {
            if a + b > 0.0 {
                (x * a + y * b) / (a + b)
            } else {
                0.0
            }
        };
        self.rtt_aggregate_ms = mean(self.rtt_aggregate_ms, o.rtt_aggregate_ms);
        self.jitter_aggregate_ms = mean(self.jitter_aggregate_ms, o.jitter_aggregate_ms);
        self.conference_sizes.extend_from_slice(&o.conference_sizes);
        for (reason, n) in &o.dropped_packets {
            *self.dropped_packets.entry(reason.clone()).or_default() += n;
        }
        let StatsSample {
            local_endpoints,
            endpoints_sending_audio,
            endpoints_sending_video,
            audio_channels,
            video_channels,
            video_streams,
            packets_expected,
            packets_lost,
            report_blocks,
            reported_loss_q8,
            conferences_failed,
            conferences_partially_failed,
            packets_received,
            packets_sent,
            bytes_received,
            bytes_sent,
            ice_succeeded,
            ice_failed,
            endpoints_dtls_failed,
            ice_restarts,
            conferences_created,
            conferences_completed,
            conference_seconds,
            endpoints_created,
            dominant_speaker_changes,
            data_channel_messages_received,
            data_channel_messages_sent,
            colibri_web_socket_messages_received,
            colibri_web_socket_messages_sent,
            media_workers,
            datagrams_handed_off,
            udp,
            muc_clients_configured,
            muc_clients_connected,
            mucs_configured,
            mucs_joined,
            // Merged above.
            conference_sizes: _,
            rtt_aggregate_ms: _,
            jitter_aggregate_ms: _,
            dropped_packets: _,
        } = o;
        self.local_endpoints += local_endpoints;
        self.endpoints_sending_audio += endpoints_sending_audio;
        self.endpoints_sending_video += endpoints_sending_video;
        self.audio_channels += audio_channels;
        self.video_channels += video_channels;
        self.video_streams += video_streams;
        self.packets_expected += packets_expected;
        self.packets_lost += packets_lost;
        self.report_blocks += report_blocks;
        self.reported_loss_q8 += reported_loss_q8;
        self.conferences_failed += conferences_failed;
        self.conferences_partially_failed += conferences_partially_failed;
        self.packets_received += packets_received;
        self.packets_sent += packets_sent;
        self.bytes_received += bytes_received;
        self.bytes_sent += bytes_sent;
        self.ice_succeeded += ice_succeeded;
        self.ice_failed += ice_failed;
        self.endpoints_dtls_failed += endpoints_dtls_failed;
        self.ice_restarts.add(ice_restarts);
        self.conferences_created += conferences_created;
        self.conferences_completed += conferences_completed;
        self.conference_seconds += conference_seconds;
        self.endpoints_created += endpoints_created;
        self.dominant_speaker_changes += dominant_speaker_changes;
        self.data_channel_messages_received += data_channel_messages_received;
        self.data_channel_messages_sent += data_channel_messages_sent;
        self.colibri_web_socket_messages_received += colibri_web_socket_messages_received;
        self.colibri_web_socket_messages_sent += colibri_web_socket_messages_sent;
        self.media_workers += media_workers;
        self.datagrams_handed_off += datagrams_handed_off;
        self.udp.add(udp);
        self.muc_clients_configured += muc_clients_configured;
        self.muc_clients_connected += muc_clients_connected;
        self.mucs_configured += mucs_configured;
        self.mucs_joined += mucs_joined;
    }
}

/// In-place ICE restarts by outcome, as JVB counts them: started (a new generation was
/// signalled), rejected (the transport cannot restart), not established (nothing to restart yet,
/// the transport kept), succeeded (the new generation took over), superseded (a newer restart
/// replaced one the peer had answered), failed (abandoned; the established pair kept).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IceRestarts {
    pub started: u64,
    pub rejected: u64,
    pub not_established: u64,
    pub succeeded: u64,
    pub superseded: u64,
    pub failed: u64,
}

impl IceRestarts {
    fn add(&mut self, o: &IceRestarts) {
        let IceRestarts {
            started,
            rejected,
            not_established,
            succeeded,
            superseded,
            failed,
        } = o;
        self.started += started;
        self.rejected += rejected;
        self.not_established += not_established;
        self.succeeded += succeeded;
        self.superseded += superseded;
        self.failed += failed;
    }
}

/// What the media sockets' system calls did (`transport::udp::IoCounters`), cumulative: how many
/// datagrams each `recvmmsg` / `sendmmsg` carried and how many went as UDP GSO or came as GRO
/// messages. Not in JVB's stats; it shows what a forwarded packet costs in kernel crossings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UdpIo {
    /// `recvmmsg` calls that returned datagrams, and the datagrams they returned.
    #[serde(rename = "total_udp_recv_calls")]
    pub recv_calls: u64,
    #[serde(rename = "total_udp_datagrams_received")]
    pub datagrams_received: u64,
    /// Received messages that carried several datagrams (GRO).
    #[serde(rename = "total_udp_gro_messages")]
    pub gro_messages: u64,
    /// `sendmmsg` calls, and the datagrams they sent.
    #[serde(rename = "total_udp_send_calls")]
    pub send_calls: u64,
    #[serde(rename = "total_udp_datagrams_sent")]
    pub datagrams_sent: u64,
    /// Sent messages that carried several datagrams (GSO).
    #[serde(rename = "total_udp_gso_messages")]
    pub gso_messages: u64,
    /// Times the kernel refused GSO and a socket went on without it.
    #[serde(rename = "total_udp_gso_fallbacks")]
    pub gso_fallbacks: u64,
    /// Datagrams the kernel refused to send.
    #[serde(rename = "total_udp_send_errors")]
    pub send_errors: u64,
    /// Times a send found the send buffer full and waited for room (the link is saturated).
    #[serde(rename = "total_udp_send_buffer_full")]
    pub send_buffer_full: u64,
}

impl UdpIo {
    fn add(&mut self, o: &UdpIo) {
        let UdpIo {
            recv_calls,
            datagrams_received,
            gro_messages,
            send_calls,
            datagrams_sent,
            gso_messages,
            gso_fallbacks,
            send_errors,
            send_buffer_full,
        } = o;
        self.recv_calls += recv_calls;
        self.datagrams_received += datagrams_received;
        self.gro_messages += gro_messages;
        self.send_calls += send_calls;
        self.datagrams_sent += datagrams_sent;
        self.gso_messages += gso_messages;
        self.gso_fallbacks += gso_fallbacks;
        self.send_errors += send_errors;
        self.send_buffer_full += send_buffer_full;
    }
}

/// The seam the rest of the bridge fills: called once per stats interval (and by the lifecycle while
/// draining, through [`local_endpoints`](Self::local_endpoints)). Must be cheap and non-blocking.
pub trait StatsSource: Send + Sync + 'static {
    fn sample(&self) -> StatsSample;

    /// Current local endpoints; override if cheaper than a full sample.
    fn local_endpoints(&self) -> u64 {
        self.sample().local_endpoints
    }
}

/// The source used while no media plane is wired into the binary: no conferences, no traffic. It is
/// an honest reading of a bridge that serves no media, not a placeholder for real numbers.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMedia;

impl StatsSource for NoMedia {
    fn sample(&self) -> StatsSample {
        StatsSample::default()
    }
}

/// Packets (in + out) per second one media worker carries at stress 1.0: its share of
/// `JVB_MAX_PACKET_RATE`'s default (workers × this). Measured on this project's 2-vCPU machine
/// (`loadtest/REPORT.md`): with busy neighbours ≈ 4.7 µs of bridge CPU per packet in or out at
/// 1 × 40 (≈ 210 000 packets/s per core) and ≈ 6.2 µs at 10 × 5 (≈ 160 000); quiet, ≈ 3.6 µs
/// (≈ 275 000) and ≈ 4.5 µs (≈ 220 000). 150 000 leaves headroom for the rest of the process
/// (XMPP, REST, stats, timers) and for busy or slower nodes: stress 0.8, where the focus stops
/// choosing a bridge, is ≈ 45–55 % of each worker's core on a quiet node and ≈ 55–75 % on a busy
/// one. See `media/README.md` for calibrating it on a node type.
pub const PACKET_RATE_PER_WORKER: u64 = 150_000;

/// Stats settings (TOML section `stats`).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsConfig {
    /// How often stats are sampled and rates computed (JVB: 5 s).
    pub interval: Duration,
    /// The whole bridge's packet rate (in + out, pps) that counts as stress 1.0 (default: media
    /// workers × [`PACKET_RATE_PER_WORKER`]).
    pub max_packet_rate: u64,
    /// Published as `average_participant_stress` (JVB default 0.01); jicofo uses it to predict load.
    pub average_participant_stress: f64,
    /// Published as `region` (JVB_OCTO_REGION).
    pub region: Option<String>,
    /// Published as `relay_id` (JVB_OCTO_RELAY_ID).
    pub relay_id: Option<String>,
    /// Published as `version`.
    pub version: String,
}

impl Default for StatsConfig {
    fn default() -> Self {
        StatsConfig {
            interval: Duration::from_secs(5),
            max_packet_rate: PACKET_RATE_PER_WORKER,
            average_participant_stress: 0.01,
            region: None,
            relay_id: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// `/colibri/stats` as JVB names it (flat JSON), also the source of presence stats and metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    pub conferences: u64,
    pub participants: u64,
    pub endpoints: u64,
    pub local_endpoints: u64,
    pub largest_conference: u64,
    pub conference_sizes: Vec<u64>,
    pub endpoints_sending_audio: u64,
    pub endpoints_sending_video: u64,
    /// kbps
    pub bit_rate_download: u64,
    /// kbps
    pub bit_rate_upload: u64,
    /// pps
    pub packet_rate_download: u64,
    /// pps
    pub packet_rate_upload: u64,
    pub stress_level: f64,
    pub average_participant_stress: f64,
    pub rtt_aggregate: f64,
    pub jitter_aggregate: f64,
    /// Loss fractions (0..1) over the last interval: from senders (sequence gaps), toward
    /// receivers (their reports), and their mean.
    pub incoming_loss: f64,
    pub outgoing_loss: f64,
    pub overall_loss: f64,
    /// The same two under the names the common Jitsi exporters read.
    pub loss_rate_download: f64,
    pub loss_rate_upload: f64,
    /// Deprecated in JVB, still read by dashboards.
    pub audiochannels: u64,
    pub videochannels: u64,
    pub videostreams: u64,
    /// We do not relay between bridges (no Octo): always 0, kept because tools (JVB's
    /// graceful_shutdown.sh) compute `participants - octo_endpoints`.
    pub octo_endpoints: u64,
    pub octo_conferences: u64,
    pub total_conferences_created: u64,
    pub total_conferences_completed: u64,
    pub total_conference_seconds: u64,
    /// Conferences that ended with no endpoint connected / with some endpoints never connected.
    pub total_failed_conferences: u64,
    pub total_partially_failed_conferences: u64,
    pub total_participants: u64,
    pub total_bytes_received: u64,
    pub total_bytes_sent: u64,
    pub total_packets_received: u64,
    pub total_packets_sent: u64,
    pub total_ice_failed: u64,
    pub total_ice_succeeded: u64,
    pub endpoints_ice_failed: u64,
    pub dtls_failed_endpoints: u64,
    /// In-place ICE restarts by outcome (JVB has them as `jitsi_jvb_ice_restarts_*` metrics only;
    /// here in `/colibri/stats` too).
    pub total_ice_restarts_started: u64,
    pub total_ice_restarts_rejected: u64,
    pub total_ice_restarts_not_established: u64,
    pub total_ice_restarts_succeeded: u64,
    pub total_ice_restarts_superseded: u64,
    pub total_ice_restarts_failed: u64,
    pub total_dominant_speaker_changes: u64,
    pub total_data_channel_messages_received: u64,
    pub total_data_channel_messages_sent: u64,
    pub total_colibri_web_socket_messages_received: u64,
    pub total_colibri_web_socket_messages_sent: u64,
    pub total_dropped_packets: u64,
    pub dropped_packets: BTreeMap<String, u64>,
    /// Media workers, and datagrams handed from the worker whose socket got them to the one
    /// owning their endpoint (not part of JVB's stats).
    pub media_workers: u64,
    pub total_datagrams_handed_off: u64,
    /// The media sockets' system calls (`total_udp_*`, not part of JVB's stats).
    #[serde(flatten)]
    pub udp: UdpIo,
    pub muc_clients_configured: u64,
    pub muc_clients_connected: u64,
    pub mucs_configured: u64,
    pub mucs_joined: u64,
    pub graceful_shutdown: bool,
    pub shutting_down: bool,
    pub drain: bool,
    pub healthy: bool,
    /// "yyyy-MM-dd HH:mm:ss.SSS", UTC.
    pub current_timestamp: String,
    pub threads: u64,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relay_id: Option<String>,
}

impl StatsSnapshot {
    /// Sets the fields that must never be stale: lifecycle flags, health, time, threads.
    pub fn apply_live(&mut self, lifecycle: LifecycleStatus, healthy: bool, now: SystemTime) {
        self.graceful_shutdown = lifecycle.graceful_shutdown;
        self.shutting_down = lifecycle.shutting_down;
        self.drain = lifecycle.drain;
        self.healthy = healthy;
        self.current_timestamp = format_timestamp(now);
        self.threads = thread_count();
    }

    /// The flat JSON object served at `/colibri/stats`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot serialise stats");
            serde_json::Value::Object(serde_json::Map::new())
        })
    }

    /// Every scalar stat as `(name, value)` text, in the form brewery presence uses
    /// (`<stat name=… value=…/>`); arrays/objects are left out.
    pub fn all_stats(&self) -> Vec<(String, String)> {
        let serde_json::Value::Object(map) = self.to_json() else {
            return Vec::new();
        };
        map.into_iter()
            .filter_map(|(k, v)| {
                let text = match v {
                    serde_json::Value::Bool(b) => b.to_string(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::String(s) => s,
                    _ => return None,
                };
                Some((k, text))
            })
            .collect()
    }

    /// The stats JVB publishes in brewery presence by default ([`PRESENCE_WHITELIST`]).
    pub fn presence_stats(&self) -> Vec<(String, String)> {
        self.all_stats()
            .into_iter()
            .filter(|(k, _)| PRESENCE_WHITELIST.contains(&k.as_str()))
            .collect()
    }
}

/// Turns consecutive samples into snapshots (sans-IO: the caller supplies the time).
#[derive(Debug)]
pub struct StatsAggregator {
    config: StatsConfig,
    last: Option<(Instant, StatsSample)>,
}

impl StatsAggregator {
    pub fn new(config: StatsConfig) -> StatsAggregator {
        StatsAggregator { config, last: None }
    }

    /// A snapshot with no traffic yet (served before the first sample).
    pub fn initial(&self) -> StatsSnapshot {
        self.build(&StatsSample::default(), 0.0, 0.0, 0.0, 0.0)
    }

    /// Feeds a sample taken at `now`; rates are computed over the time since the previous sample.
    pub fn update(&mut self, now: Instant, sample: StatsSample) -> StatsSnapshot {
        let loss = match &self.last {
            Some((_, prev)) => Loss::between(prev, &sample),
            None => Loss::between(&StatsSample::default(), &sample),
        };
        let (pps_in, pps_out, bps_in, bps_out) = match &self.last {
            Some((then, prev)) => {
                let secs = now.saturating_duration_since(*then).as_secs_f64();
                if secs > 0.0 {
                    let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / secs;
                    (
                        rate(sample.packets_received, prev.packets_received),
                        rate(sample.packets_sent, prev.packets_sent),
                        rate(sample.bytes_received, prev.bytes_received) * 8.0,
                        rate(sample.bytes_sent, prev.bytes_sent) * 8.0,
                    )
                } else {
                    (0.0, 0.0, 0.0, 0.0)
                }
            }
            None => (0.0, 0.0, 0.0, 0.0),
        };
        let mut snapshot = self.build(&sample, pps_in, pps_out, bps_in, bps_out);
        loss.apply(&mut snapshot);
        self.last = Some((now, sample));
        snapshot
    }

    fn build(
        &self,
        s: &StatsSample,
        pps_in: f64,
        pps_out: f64,
        bps_in: f64,
        bps_out: f64,
    ) -> StatsSnapshot {
        let mut sizes = vec![0u64; CONFERENCE_SIZE_BUCKETS];
        for &n in &s.conference_sizes {
            let i = (n as usize).min(CONFERENCE_SIZE_BUCKETS - 1);
            if let Some(bucket) = sizes.get_mut(i) {
                *bucket += 1;
            }
        }
        let endpoints: u64 = s.conference_sizes.iter().map(|&n| u64::from(n)).sum();
        let max_rate = self.config.max_packet_rate.max(1) as f64;
        StatsSnapshot {
            conferences: s.conference_sizes.len() as u64,
            participants: endpoints,
            endpoints,
            local_endpoints: s.local_endpoints,
            largest_conference: s.conference_sizes.iter().copied().max().unwrap_or(0).into(),
            conference_sizes: sizes,
            endpoints_sending_audio: s.endpoints_sending_audio,
            endpoints_sending_video: s.endpoints_sending_video,
            bit_rate_download: (bps_in / 1000.0).round() as u64,
            bit_rate_upload: (bps_out / 1000.0).round() as u64,
            packet_rate_download: pps_in.round() as u64,
            packet_rate_upload: pps_out.round() as u64,
            stress_level: (pps_in + pps_out) / max_rate,
            average_participant_stress: self.config.average_participant_stress,
            rtt_aggregate: s.rtt_aggregate_ms,
            jitter_aggregate: s.jitter_aggregate_ms,
            incoming_loss: 0.0,
            outgoing_loss: 0.0,
            overall_loss: 0.0,
            loss_rate_download: 0.0,
            loss_rate_upload: 0.0,
            audiochannels: s.audio_channels,
            videochannels: s.video_channels,
            videostreams: s.video_streams,
            octo_endpoints: 0,
            octo_conferences: 0,
            total_conferences_created: s.conferences_created,
            total_conferences_completed: s.conferences_completed,
            total_conference_seconds: s.conference_seconds,
            total_failed_conferences: s.conferences_failed,
            total_partially_failed_conferences: s.conferences_partially_failed,
            total_participants: s.endpoints_created,
            total_bytes_received: s.bytes_received,
            total_bytes_sent: s.bytes_sent,
            total_packets_received: s.packets_received,
            total_packets_sent: s.packets_sent,
            total_ice_failed: s.ice_failed,
            total_ice_succeeded: s.ice_succeeded,
            endpoints_ice_failed: s.ice_failed,
            dtls_failed_endpoints: s.endpoints_dtls_failed,
            total_ice_restarts_started: s.ice_restarts.started,
            total_ice_restarts_rejected: s.ice_restarts.rejected,
            total_ice_restarts_not_established: s.ice_restarts.not_established,
            total_ice_restarts_succeeded: s.ice_restarts.succeeded,
            total_ice_restarts_superseded: s.ice_restarts.superseded,
            total_ice_restarts_failed: s.ice_restarts.failed,
            total_dominant_speaker_changes: s.dominant_speaker_changes,
            total_data_channel_messages_received: s.data_channel_messages_received,
            total_data_channel_messages_sent: s.data_channel_messages_sent,
            total_colibri_web_socket_messages_received: s.colibri_web_socket_messages_received,
            total_colibri_web_socket_messages_sent: s.colibri_web_socket_messages_sent,
            total_dropped_packets: s.dropped_packets.values().sum(),
            dropped_packets: s.dropped_packets.clone(),
            media_workers: s.media_workers,
            total_datagrams_handed_off: s.datagrams_handed_off,
            udp: s.udp,
            muc_clients_configured: s.muc_clients_configured,
            muc_clients_connected: s.muc_clients_connected,
            mucs_configured: s.mucs_configured,
            mucs_joined: s.mucs_joined,
            graceful_shutdown: false,
            shutting_down: false,
            drain: false,
            healthy: true,
            current_timestamp: String::new(),
            threads: 0,
            version: self.config.version.clone(),
            region: self.config.region.clone(),
            relay_id: self.config.relay_id.clone(),
        }
    }
}

/// Loss fractions over one stats interval, from the counters' growth.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Loss {
    incoming: f64,
    outgoing: f64,
}

impl Loss {
    fn between(prev: &StatsSample, now: &StatsSample) -> Loss {
        let ratio = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                (part as f64 / whole as f64).clamp(0.0, 1.0)
            }
        };
        let expected = now.packets_expected.saturating_sub(prev.packets_expected);
        let lost = now.packets_lost.saturating_sub(prev.packets_lost);
        let blocks = now.report_blocks.saturating_sub(prev.report_blocks);
        let q8 = now.reported_loss_q8.saturating_sub(prev.reported_loss_q8);
        Loss {
            incoming: ratio(lost, expected),
            outgoing: ratio(q8, blocks.saturating_mul(256)),
        }
    }

    fn apply(self, s: &mut StatsSnapshot) {
        s.incoming_loss = self.incoming;
        s.outgoing_loss = self.outgoing;
        s.overall_loss = (self.incoming + self.outgoing) / 2.0;
        s.loss_rate_download = self.incoming;
        s.loss_rate_upload = self.outgoing;
    }
}

/// Where the latest snapshot lives and how to read a live one.
#[derive(Clone)]
pub struct StatsHandle {
    latest: watch::Receiver<Arc<StatsSnapshot>>,
    lifecycle: LifecycleHandle,
    health: Arc<HealthRegistry>,
}

impl StatsHandle {
    /// The latest interval snapshot with the live fields applied: what `/colibri/stats` serves and
    /// what brewery presence should publish.
    pub fn current(&self) -> StatsSnapshot {
        let mut s = (**self.latest.borrow()).clone();
        s.apply_live(
            self.lifecycle.status(),
            self.health.check().is_healthy(),
            SystemTime::now(),
        );
        s
    }

    /// Wakes on every interval refresh.
    pub fn subscribe(&self) -> watch::Receiver<Arc<StatsSnapshot>> {
        self.latest.clone()
    }
}

/// The periodic sampler: the thin async shell around [`StatsAggregator`].
pub struct StatsDriver {
    aggregator: StatsAggregator,
    source: Arc<dyn StatsSource>,
    latest: watch::Sender<Arc<StatsSnapshot>>,
    interval: Duration,
}

/// Creates the stats handle and its driver (`driver.run().await`, forever).
pub fn stats(
    config: StatsConfig,
    source: Arc<dyn StatsSource>,
    lifecycle: LifecycleHandle,
    health: Arc<HealthRegistry>,
) -> (StatsHandle, StatsDriver) {
    let interval = config.interval;
    let aggregator = StatsAggregator::new(config);
    let (tx, rx) = watch::channel(Arc::new(aggregator.initial()));
    (
        StatsHandle {
            latest: rx,
            lifecycle,
            health,
        },
        StatsDriver {
            aggregator,
            source,
            latest: tx,
            interval,
        },
    )
}

impl StatsDriver {
    /// Samples immediately, then every interval.
    pub async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let sample = self.source.sample();
            let snapshot = self.aggregator.update(Instant::now(), sample);
            self.latest.send_replace(Arc::new(snapshot));
        }
    }
}

/// The `jitsi_jvb_*` Prometheus metrics, fed from snapshots.
pub struct BridgeMetrics {
    registry: Registry,
    gauges: Vec<(IntGauge, ReadU64)>,
    float_gauges: Vec<(Gauge, ReadF64)>,
    counters: Vec<(IntCounter, ReadU64)>,
    dropped: IntCounterVec,
}

/// Metric namespace, as JVB's.
pub const METRICS_NAMESPACE: &str = "jitsi_jvb";

type ReadU64 = fn(&StatsSnapshot) -> u64;
type ReadF64 = fn(&StatsSnapshot) -> f64;
type IntGaugeDef = (&'static str, &'static str, ReadU64);
type FloatGaugeDef = (&'static str, &'static str, ReadF64);

const INT_GAUGES: &[IntGaugeDef] = &[
    ("conferences", "Current number of conferences.", |s| {
        s.conferences
    }),
    (
        "endpoints",
        "Current number of endpoints (local and relayed).",
        |s| s.endpoints,
    ),
    (
        "current_endpoints",
        "Current number of endpoints (JVB's name).",
        |s| s.endpoints,
    ),
    (
        "local_endpoints",
        "Number of local endpoints that exist currently.",
        |s| s.local_endpoints,
    ),
    (
        "largest_conference",
        "The size of the largest conference (number of endpoints).",
        |s| s.largest_conference,
    ),
    (
        "endpoints_sending_audio",
        "The number of local endpoints sending audio.",
        |s| s.endpoints_sending_audio,
    ),
    (
        "endpoints_sending_video",
        "The number of local endpoints sending video.",
        |s| s.endpoints_sending_video,
    ),
    (
        "incoming_packet_rate",
        "Incoming RTP/RTCP packet rate in pps.",
        |s| s.packet_rate_download,
    ),
    (
        "outgoing_packet_rate",
        "Outgoing RTP/RTCP packet rate in pps.",
        |s| s.packet_rate_upload,
    ),
    (
        "incoming_bitrate",
        "Incoming RTP/RTCP bitrate in bps.",
        |s| s.bit_rate_download * 1000,
    ),
    (
        "outgoing_bitrate",
        "Outgoing RTP/RTCP bitrate in bps.",
        |s| s.bit_rate_upload * 1000,
    ),
    (
        "graceful_shutdown",
        "Whether the bridge is in graceful shutdown mode (not accepting new conferences).",
        |s| s.graceful_shutdown.into(),
    ),
    (
        "shutting_down",
        "Whether the bridge is shutting down.",
        |s| s.shutting_down.into(),
    ),
    ("drain_mode", "Whether the bridge is in drain mode.", |s| {
        s.drain.into()
    }),
    (
        "muc_clients_connected",
        "Number of XMPP connections (one per configured server) that are online.",
        |s| s.muc_clients_connected,
    ),
    (
        "mucs_joined",
        "Number of brewery rooms the bridge is in (one per configured server).",
        |s| s.mucs_joined,
    ),
    (
        "healthy",
        "Whether the bridge considers itself healthy.",
        |s| s.healthy.into(),
    ),
    (
        "thread_count",
        "Current number of OS threads of the process.",
        |s| s.threads,
    ),
    (
        "media_workers",
        "Number of media workers (threads forwarding media, one UDP socket each on the one port).",
        |s| s.media_workers,
    ),
];

const FLOAT_GAUGES: &[FloatGaugeDef] = &[
    (
        "stress",
        "Current stress: packet rate (in + out) / max_packet_rate.",
        |s| s.stress_level,
    ),
    (
        "average_participant_stress",
        "Stress one endpoint is assumed to add (published to the focus).",
        |s| s.average_participant_stress,
    ),
    (
        "average_rtt",
        "Average RTT across all local endpoints in ms.",
        |s| s.rtt_aggregate,
    ),
    (
        "incoming_loss_fraction",
        "Fraction of incoming RTP packets that are lost.",
        |s| s.incoming_loss,
    ),
    (
        "outgoing_loss_fraction",
        "Fraction of outgoing RTP packets that are lost.",
        |s| s.outgoing_loss,
    ),
    (
        "loss_fraction",
        "Fraction of RTP packets that are lost (incoming and outgoing combined).",
        |s| s.overall_loss,
    ),
];

const COUNTERS: &[IntGaugeDef] = &[
    (
        "datagrams_handed_off_total",
        "Datagrams a media worker's socket received for another worker's endpoint and handed over.",
        |s| s.total_datagrams_handed_off,
    ),
    (
        "udp_recv_calls_total",
        "recvmmsg calls on the media sockets that returned datagrams.",
        |s| s.udp.recv_calls,
    ),
    (
        "udp_datagrams_received_total",
        "Datagrams the media sockets received (GRO messages counted by their datagrams).",
        |s| s.udp.datagrams_received,
    ),
    (
        "udp_gro_messages_total",
        "Messages the media sockets received that carried several datagrams (UDP GRO).",
        |s| s.udp.gro_messages,
    ),
    (
        "udp_send_calls_total",
        "sendmmsg calls on the media sockets.",
        |s| s.udp.send_calls,
    ),
    (
        "udp_datagrams_sent_total",
        "Datagrams the media sockets sent.",
        |s| s.udp.datagrams_sent,
    ),
    (
        "udp_gso_messages_total",
        "Messages the media sockets sent that carried several datagrams (UDP GSO).",
        |s| s.udp.gso_messages,
    ),
    (
        "udp_gso_fallbacks_total",
        "Times the kernel refused UDP GSO and a media socket went on without it.",
        |s| s.udp.gso_fallbacks,
    ),
    (
        "udp_send_errors_total",
        "Datagrams the kernel refused to send on the media sockets.",
        |s| s.udp.send_errors,
    ),
    (
        "udp_send_buffer_full_total",
        "Times a media socket's send buffer was full and the worker waited for room.",
        |s| s.udp.send_buffer_full,
    ),
    (
        "packets_received_total",
        "Number of RTP/RTCP packets received.",
        |s| s.total_packets_received,
    ),
    (
        "packets_sent_total",
        "Number of RTP/RTCP packets sent.",
        |s| s.total_packets_sent,
    ),
    (
        "bytes_received_total",
        "Number of RTP/RTCP bytes received.",
        |s| s.total_bytes_received,
    ),
    ("bytes_sent_total", "Number of RTP/RTCP bytes sent.", |s| {
        s.total_bytes_sent
    }),
    (
        "ice_succeeded_total",
        "Number of endpoints whose ICE connection succeeded.",
        |s| s.total_ice_succeeded,
    ),
    (
        "ice_failed_total",
        "Number of endpoints whose ICE connection failed.",
        |s| s.total_ice_failed,
    ),
    (
        "endpoints_dtls_failed_total",
        "Number of endpoints whose ICE succeeded but DTLS did not.",
        |s| s.dtls_failed_endpoints,
    ),
    (
        "ice_restarts_started_total",
        "Number of ICE restarts started.",
        |s| s.total_ice_restarts_started,
    ),
    (
        "ice_restarts_rejected_total",
        "Number of ICE restart requests rejected because the endpoint's transport cannot restart \
         (failed or gone).",
        |s| s.total_ice_restarts_rejected,
    ),
    (
        "ice_restarts_not_established_total",
        "Number of ICE restart requests for a transport that was not established yet, for which \
         the existing transport was kept.",
        |s| s.total_ice_restarts_not_established,
    ),
    (
        "ice_restarts_succeeded_total",
        "Number of ICE restarts whose new generation connected and was cut over to.",
        |s| s.total_ice_restarts_succeeded,
    ),
    (
        "ice_restarts_superseded_total",
        "Number of ICE restarts superseded by a newer restart before they connected.",
        |s| s.total_ice_restarts_superseded,
    ),
    (
        "ice_restarts_failed_total",
        "Number of ICE restarts abandoned because the new generation did not connect.",
        |s| s.total_ice_restarts_failed,
    ),
    (
        "conferences_created_total",
        "The total number of conferences created.",
        |s| s.total_conferences_created,
    ),
    (
        "conferences_completed_total",
        "The total number of conferences completed/expired.",
        |s| s.total_conferences_completed,
    ),
    (
        "conference_seconds_total",
        "The total duration in seconds of all completed conferences.",
        |s| s.total_conference_seconds,
    ),
    (
        "endpoints_total",
        "The total number of endpoints created.",
        |s| s.total_participants,
    ),
    (
        "dominant_speaker_changes_total",
        "Number of times the dominant speaker in any conference changed.",
        |s| s.total_dominant_speaker_changes,
    ),
    (
        "data_channel_messages_received_total",
        "Number of messages received on endpoints' data channels.",
        |s| s.total_data_channel_messages_received,
    ),
    (
        "data_channel_messages_sent_total",
        "Number of messages sent on endpoints' data channels.",
        |s| s.total_data_channel_messages_sent,
    ),
    (
        "colibri_web_socket_messages_received_total",
        "Number of messages received on colibri web sockets.",
        |s| s.total_colibri_web_socket_messages_received,
    ),
    (
        "colibri_web_socket_messages_sent_total",
        "Number of messages sent on colibri web sockets.",
        |s| s.total_colibri_web_socket_messages_sent,
    ),
];

impl BridgeMetrics {
    pub fn new() -> Result<BridgeMetrics, prometheus::Error> {
        let registry = Registry::new();
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(METRICS_NAMESPACE);
        let mut gauges = Vec::new();
        for &(name, help, read) in INT_GAUGES {
            let g = IntGauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            gauges.push((g, read));
        }
        let mut float_gauges = Vec::new();
        for &(name, help, read) in FLOAT_GAUGES {
            let g = Gauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            float_gauges.push((g, read));
        }
        let mut counters = Vec::new();
        for &(name, help, read) in COUNTERS {
            let c = IntCounter::with_opts(opts(name, help))?;
            registry.register(Box::new(c.clone()))?;
            counters.push((c, read));
        }
        let dropped = IntCounterVec::new(
            opts(
                "dropped_packets_total",
                "Packets dropped as bad input, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(dropped.clone()))?;
        for reason in KNOWN_DROP_REASONS {
            dropped.with_label_values(&[*reason]);
        }
        Ok(BridgeMetrics {
            registry,
            gauges,
            float_gauges,
            counters,
            dropped,
        })
    }

    /// Sets gauges and advances counters to the snapshot's totals.
    pub fn observe(&self, s: &StatsSnapshot) {
        for (g, read) in &self.gauges {
            g.set(i64::try_from(read(s)).unwrap_or(i64::MAX));
        }
        for (g, read) in &self.float_gauges {
            g.set(read(s));
        }
        for (c, read) in &self.counters {
            advance(c, read(s));
        }
        for (reason, &total) in &s.dropped_packets {
            advance(&self.dropped.with_label_values(&[reason.as_str()]), total);
        }
    }

    /// The registry (to add more collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Text exposition format 0.0.4.
    pub fn render(&self) -> String {
        service::encode_prometheus_text(&self.registry)
    }
}

fn advance(counter: &IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

/// Formats a wall-clock time as JVB's `current_timestamp`: "yyyy-MM-dd HH:mm:ss.SSS" in UTC.
pub fn format_timestamp(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        ms % 1000
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// OS threads of this process (Linux `/proc/self/status`; 0 where unavailable).
pub fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::ShutdownState;

    #[test]
    fn timestamps() {
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(format_timestamp(t), "2023-11-14 22:13:20.123");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(format_timestamp(t), "2000-02-29 00:00:00.000");
        let t = UNIX_EPOCH + Duration::from_millis(4_102_444_799_999);
        assert_eq!(format_timestamp(t), "2099-12-31 23:59:59.999");
    }

    /// One stress figure, three readers: `/colibri/stats` (operators), brewery presence (the
    /// focus's bridge selection) and `jitsi_jvb_stress` (the HPA) show the same value, the packet
    /// rate over `JVB_MAX_PACKET_RATE` (here the manifests' 150 000 at the 1 × 40 load).
    #[test]
    fn stress_is_the_same_in_colibri_stats_presence_and_metrics() {
        let mut agg = StatsAggregator::new(StatsConfig {
            max_packet_rate: 150_000,
            ..StatsConfig::default()
        });
        let t0 = Instant::now();
        agg.update(t0, StatsSample::default());
        let s = agg.update(
            t0 + Duration::from_secs(5),
            StatsSample {
                packets_received: 5 * 6_000,
                packets_sent: 5 * 129_000,
                ..Default::default()
            },
        );
        let want = 0.9;
        assert!((s.stress_level - want).abs() < 1e-9, "{}", s.stress_level);
        assert_eq!(s.to_json()["stress_level"].as_f64(), Some(s.stress_level));
        let presence: Vec<f64> = s
            .presence_stats()
            .into_iter()
            .filter(|(k, _)| k == "stress_level")
            .map(|(_, v)| v.parse().unwrap())
            .collect();
        assert_eq!(presence.len(), 1);
        assert!((presence[0] - want).abs() < 1e-9, "{presence:?}");
        let m = BridgeMetrics::new().unwrap();
        m.observe(&s);
        let metric: Vec<f64> = m
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("jitsi_jvb_stress "))
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(metric.len(), 1);
        assert!((metric[0] - want).abs() < 1e-9, "{metric:?}");
    }

    /// Two media workers' samples add up: counters, drops by reason, conferences; RTT and jitter
    /// averaged by endpoints.
    #[test]
    fn worker_samples_merge() {
        let mut a = StatsSample {
            local_endpoints: 3,
            conference_sizes: vec![3],
            packets_sent: 100,
            rtt_aggregate_ms: 10.0,
            media_workers: 1,
            datagrams_handed_off: 7,
            ..StatsSample::default()
        };
        a.dropped_packets.insert("unknown_address".into(), 2);
        let mut b = StatsSample {
            local_endpoints: 1,
            conference_sizes: vec![1],
            packets_sent: 50,
            rtt_aggregate_ms: 30.0,
            media_workers: 1,
            ..StatsSample::default()
        };
        b.dropped_packets.insert("unknown_address".into(), 3);
        b.dropped_packets.insert("handoff_full".into(), 1);
        a.merge(&b);
        assert_eq!(a.local_endpoints, 4);
        assert_eq!(a.conference_sizes, vec![3, 1]);
        assert_eq!(a.packets_sent, 150);
        assert_eq!(a.media_workers, 2);
        assert_eq!(a.datagrams_handed_off, 7);
        assert!(
            (a.rtt_aggregate_ms - 15.0).abs() < 1e-9,
            "{}",
            a.rtt_aggregate_ms
        );
        assert_eq!(a.dropped_packets["unknown_address"], 5);
        assert_eq!(a.dropped_packets["handoff_full"], 1);
        let mut empty = StatsSample::default();
        empty.merge(&StatsSample::default());
        assert_eq!(empty.rtt_aggregate_ms, 0.0);
    }

    #[test]
    fn rates_and_stress_over_the_window() {
        let mut agg = StatsAggregator::new(StatsConfig {
            max_packet_rate: 1000,
            region: Some("eu".into()),
            ..StatsConfig::default()
        });
        let t0 = Instant::now();
        let first = agg.update(
            t0,
            StatsSample {
                packets_received: 1000,
                bytes_received: 100_000,
                ..Default::default()
            },
        );
        assert_eq!(first.packet_rate_download, 0, "no window yet");
        let s = agg.update(
            t0 + Duration::from_secs(5),
            StatsSample {
                conference_sizes: vec![2, 3, 30],
                local_endpoints: 35,
                packets_received: 1000 + 5 * 300,
                packets_sent: 5 * 200,
                bytes_received: 100_000 + 5 * 125_000,
                bytes_sent: 5 * 250_000,
                dropped_packets: BTreeMap::from([
                    ("unknown_protocol".into(), 4),
                    ("rtp_malformed".into(), 1),
                ]),
                ..Default::default()
            },
        );
        assert_eq!(s.packet_rate_download, 300);
        assert_eq!(s.packet_rate_upload, 200);
        assert_eq!(s.bit_rate_download, 1000); // 125 kB/s = 1000 kbps
        assert_eq!(s.bit_rate_upload, 2000);
        assert!((s.stress_level - 0.5).abs() < 1e-9, "{}", s.stress_level);
        assert_eq!(s.conferences, 3);
        assert_eq!(s.endpoints, 35);
        assert_eq!(s.participants, 35);
        assert_eq!(s.largest_conference, 30);
        assert_eq!(s.conference_sizes.len(), CONFERENCE_SIZE_BUCKETS);
        assert_eq!(s.conference_sizes[2], 1);
        assert_eq!(s.conference_sizes[3], 1);
        assert_eq!(s.conference_sizes[CONFERENCE_SIZE_BUCKETS - 1], 1);
        assert_eq!(s.total_dropped_packets, 5);
        assert_eq!(s.region.as_deref(), Some("eu"));
    }

    #[test]
    fn loss_rates_cover_the_last_interval() {
        let t0 = Instant::now();
        let mut agg = StatsAggregator::new(StatsConfig::default());
        let first = StatsSample {
            packets_expected: 1000,
            packets_lost: 500,
            report_blocks: 10,
            reported_loss_q8: 0,
            ..StatsSample::default()
        };
        agg.update(t0, first.clone());
        // In this interval: 1000 expected, 20 lost; 4 report blocks saying 1/4, 1/4, 0, 0.
        let snap = agg.update(
            t0 + Duration::from_secs(5),
            StatsSample {
                packets_expected: 2000,
                packets_lost: 520,
                report_blocks: 14,
                reported_loss_q8: 128,
                ..first
            },
        );
        assert!((snap.loss_rate_download - 0.02).abs() < 1e-9, "{snap:?}");
        assert!((snap.loss_rate_upload - 0.125).abs() < 1e-9, "{snap:?}");
        assert_eq!(snap.incoming_loss, snap.loss_rate_download);
        assert!((snap.overall_loss - 0.0725).abs() < 1e-9);
        // Counters that went backwards (never, but a restart of the media task) read as no loss.
        let snap = agg.update(t0 + Duration::from_secs(10), StatsSample::default());
        assert_eq!((snap.loss_rate_download, snap.loss_rate_upload), (0.0, 0.0));
    }

    #[test]
    fn json_keys_and_presence() {
        let agg = StatsAggregator::new(StatsConfig::default());
        let mut s = agg.initial();
        s.apply_live(
            LifecycleStatus {
                state: ShutdownState::Running,
                drain: true,
                graceful_shutdown: false,
                shutting_down: false,
            },
            true,
            UNIX_EPOCH,
        );
        let json = s.to_json();
        for key in [
            "conferences",
            "participants",
            "endpoints",
            "local_endpoints",
            "largest_conference",
            "bit_rate_download",
            "bit_rate_upload",
            "packet_rate_download",
            "packet_rate_upload",
            "stress_level",
            "average_participant_stress",
            "total_conferences_created",
            "total_conferences_completed",
            "total_participants",
            "total_bytes_received",
            "total_bytes_sent",
            "total_packets_received",
            "total_packets_sent",
            "total_ice_failed",
            "total_ice_succeeded",
            "total_dominant_speaker_changes",
            "total_data_channel_messages_received",
            "total_data_channel_messages_sent",
            "graceful_shutdown",
            "shutting_down",
            "drain",
            "healthy",
            "current_timestamp",
            "threads",
            "version",
            "conference_sizes",
            "dropped_packets",
            "total_dropped_packets",
            "octo_endpoints",
            // What the common Jitsi exporter (prometheus-jitsi-meet-exporter) reads.
            "rtt_aggregate",
            "jitter_aggregate",
            "loss_rate_download",
            "loss_rate_upload",
            "audiochannels",
            "videochannels",
            "videostreams",
            "total_conference_seconds",
            "total_failed_conferences",
            "total_partially_failed_conferences",
            "total_colibri_web_socket_messages_received",
            "total_colibri_web_socket_messages_sent",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["drain"], true);
        assert_eq!(json["current_timestamp"], "1970-01-01 00:00:00.000");
        assert!(json.get("region").is_none(), "region only when configured");
        let presence = s.presence_stats();
        let names: Vec<&str> = presence.iter().map(|(k, _)| k.as_str()).collect();
        for key in [
            "stress_level",
            "drain",
            "graceful_shutdown",
            "shutting_down",
            "version",
        ] {
            assert!(names.contains(&key), "{key} not in presence {names:?}");
        }
        assert!(!names.contains(&"conferences"));
        assert!(presence.contains(&("drain".into(), "true".into())));
    }

    #[test]
    fn metrics_follow_snapshots() {
        let m = BridgeMetrics::new().unwrap();
        let text = m.render();
        assert!(text.contains("jitsi_jvb_dropped_packets_total{reason=\"srtp_auth\"} 0"));
        let mut s = StatsAggregator::new(StatsConfig::default()).initial();
        s.total_packets_received = 10;
        s.drain = true;
        s.stress_level = 0.25;
        s.dropped_packets.insert("weird_new_reason".into(), 7);
        m.observe(&s);
        s.total_packets_received = 25;
        m.observe(&s);
        // Counters never go backwards even if a source resets.
        s.total_packets_received = 3;
        m.observe(&s);
        let text = m.render();
        assert!(
            text.contains("# TYPE jitsi_jvb_packets_received_total counter"),
            "{text}"
        );
        assert!(
            text.contains("jitsi_jvb_packets_received_total 25"),
            "{text}"
        );
        assert!(text.contains("jitsi_jvb_drain_mode 1"), "{text}");
        assert!(text.contains("jitsi_jvb_stress 0.25"), "{text}");
        assert!(text.contains("jitsi_jvb_dropped_packets_total{reason=\"weird_new_reason\"} 7"));
        for line in text.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("jitsi_jvb_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
        }
    }

    #[test]
    fn thread_count_reads_proc() {
        assert!(thread_count() >= 1);
    }
}
