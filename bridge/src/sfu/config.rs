//! The core's tunables. Defaults follow JVB's `reference.conf` where one exists
//! (jitsi-videobridge `jvb/src/main/resources/reference.conf`).

use std::time::Duration;

use super::allocation;
use super::bwe;
use super::dsi;
use super::speaker;

/// Tunables of the forwarding core.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// An endpoint with no incoming activity for this long expires (`entity-expiration.timeout`).
    pub endpoint_expire_timeout: Duration,
    /// An endpoint that sent no media for this long is announced inactive to the others
    /// (`max-inactivity-limit`).
    pub inactivity_limit: Duration,
    /// Before the first packet, the limit is this (first-transfer timeout).
    pub first_transfer_timeout: Duration,
    /// Receiver reports toward senders.
    pub rr_interval: Duration,
    /// Expiry and connectivity checks.
    pub housekeeping_interval: Duration,
    /// maxHeight for receivers that have not sent `ReceiverVideoConstraints` yet (and the default
    /// for sources without a constraint until they say otherwise). JVB 2026 uses 0 (no video until
    /// the client asks); 180 keeps simple clients that never send constraints working.
    pub initial_max_height: i32,
    /// maxHeight assumed when a receiver's first `ReceiverVideoConstraints` has no
    /// `defaultConstraints` (`cc.default-max-height-px`).
    pub default_max_height: i32,
    /// Bridge-wide last-N bound (`cc.jvb-last-n`), -1 = none.
    pub last_n_limit: i32,
    /// At most this many video streams per receiver (`ssrc-limit.video`), -1 = none; also the
    /// size of an SSRC-rewriting receiver's video pool (`ssrc_slots`).
    pub max_video_ssrcs: i32,
    /// The size of an SSRC-rewriting receiver's audio pool (`ssrc-limit.audio`), -1 = unbounded.
    pub max_audio_ssrcs: i32,
    /// Allocate within the bandwidth estimate (`cc.trust-bwe`); false = as if unlimited.
    pub trust_bwe: bool,
    /// Run a send-side bandwidth estimator (and probing) for receivers that negotiated
    /// transport-cc.
    pub bandwidth_estimation: bool,
    /// The estimator's bounds and probing settings.
    pub bwe: bwe::BweConfig,
    /// Downlink estimate a receiver without an estimator (no transport-cc) starts with, before
    /// REMB or the shell says anything; `None` = unlimited.
    pub initial_bwe_bps: Option<u64>,
    /// Re-allocate when the estimate moved by more than this fraction (`cc.bwe-change-threshold`).
    pub bwe_change_threshold: f64,
    /// Re-allocate at least this often (`cc.max-time-between-calculations`).
    pub max_time_between_allocations: Duration,
    /// On-stage preference and oversending (`cc.onstage-preferred-*`, `cc.*oversend*`).
    pub alloc: allocation::AllocConfig,
    /// Honour a receiver's `assumedBandwidthBps` up to this (`cc.assumed-bandwidth-limit`);
    /// `None` = ignore it.
    pub assumed_bandwidth_limit: Option<u64>,
    /// Drop audio silence (level 127) after `forwarded_silence_packets` consecutive ones
    /// (`jmt.audio.level.discard-silence`).
    pub discard_silence: bool,
    /// Silent packets forwarded before discarding starts (comfort noise), JVB: 3.
    pub forwarded_silence_packets: u32,
    /// Ingress packets kept per video source for retransmissions (see [`rtx_cache`]).
    pub rtx_store_packets: usize,
    /// Sent-packet log entries kept per receiver for answering NACKs.
    pub rtx_log_packets: usize,
    /// Packets sent longer ago than this are not resent.
    pub rtx_max_age: Duration,
    /// The same packet is not resent twice within this interval (duplicate NACKs).
    pub nack_min_resend_interval: Duration,
    /// Retransmissions to a receiver may use at most this share of its bandwidth estimate.
    pub max_retransmission_share: f64,
    /// `EndpointStats` go to every endpoint below this conference size, else only to those that
    /// receive the sender's video.
    pub stats_filter_threshold: usize,
    /// Makes each conference's dominant speaker detector, given [`Self::silence_timeout`] (JVB's
    /// DSI algorithm: [`dsi`]).
    pub speaker_detector: fn(Option<Duration>) -> Box<dyn speaker::SpeakerDetector>,
    /// Silence detection (JVB `speech-activity.silence-detection-timeout`; `None`: off, JVB's
    /// default): see [`speaker::SpeakerDetector::in_silence`].
    pub silence_timeout: Option<Duration>,
    /// Seed of the core's PRNG (feedback SSRCs, initial RTX sequence numbers). The shell passes a
    /// random value; tests a fixed one.
    pub seed: u64,
}

impl Default for SfuConfig {
    fn default() -> Self {
        SfuConfig {
            endpoint_expire_timeout: Duration::from_secs(60),
            inactivity_limit: Duration::from_secs(8),
            first_transfer_timeout: Duration::from_secs(15),
            rr_interval: Duration::from_millis(500),
            housekeeping_interval: Duration::from_secs(1),
            initial_max_height: 180,
            default_max_height: 180,
            last_n_limit: -1,
            max_video_ssrcs: 50,
            max_audio_ssrcs: 50,
            trust_bwe: true,
            bandwidth_estimation: true,
            // JVB pads toward the estimate every 15 ms whenever the allocation wants more; a
            // probe every second after one found the capacity keeps upswitches within seconds of
            // a link improving.
            // Start where browsers start (300 kbps) and probe up, rather than at JVB's 2.5 Mbps:
            // a receiver on a slow link then never sees the first seconds' overload and freeze.
            bwe: bwe::BweConfig {
                initial_bps: 300_000,
                probe: bwe::ProbeConfig {
                    backoff_us: 1_000_000,
                    ..bwe::ProbeConfig::default()
                },
                ..bwe::BweConfig::default()
            },
            initial_bwe_bps: None,
            bwe_change_threshold: 0.15,
            max_time_between_allocations: Duration::from_secs(5),
            alloc: allocation::AllocConfig::default(),
            assumed_bandwidth_limit: None,
            discard_silence: true,
            forwarded_silence_packets: 3,
            rtx_store_packets: 512,
            rtx_log_packets: 1024,
            rtx_max_age: Duration::from_secs(3),
            nack_min_resend_interval: Duration::from_millis(10),
            max_retransmission_share: 0.5,
            stats_filter_threshold: 20,
            speaker_detector: dsi::DominantSpeakerIdentification::for_sfu,
            silence_timeout: None,
            seed: 0x5eed_0fb4_1d6e,
        }
    }
}
