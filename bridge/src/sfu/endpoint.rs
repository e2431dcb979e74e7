//! One endpoint of a conference, in both roles: as a sender (its negotiated parameters, sources,
//! force-mute, activity) and as a receiver (its constraints, forwarded set, one projection per
//! source it may receive, its transport-wide sequence counter and retransmission cache).

use std::collections::HashMap;
use std::time::Instant;

use super::EndpointHandle;
use super::allocation::{Allocation, VideoConstraints};
use super::bwe::SendSideBwe;
use super::channel::ConstraintsUpdate;
use super::layers::RateTracker;
use super::model::{MediaKind, MediaParams};
use super::projection::Projection;
use super::rtx_cache::SentLog;
use super::tcc_feedback::generator::TccFeedbackGenerator;

/// A receiver's video preferences (from `ReceiverVideoConstraints`, `LastNChangedEvent`, COLIBRI2
/// `initial-last-n`). Constraints and on-stage/selected entries are source names (current clients) or
/// endpoint ids (2021 client); lookups try both.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSettings {
    /// -1 = unlimited.
    pub last_n: i32,
    /// For sources without an explicit constraint.
    pub default_constraints: VideoConstraints,
    pub constraints: HashMap<String, VideoConstraints>,
    pub on_stage: Vec<String>,
    pub selected: Vec<String>,
    /// `assumedBandwidthBps` (already capped by the bridge's limit), if allowed and given.
    pub assumed_bandwidth_bps: Option<u64>,
    /// A `ReceiverVideoConstraints` was applied (after which a missing `defaultConstraints` means
    /// "keep", before it "use the default").
    ever_set: bool,
}

impl ReceiverSettings {
    pub fn new(last_n: i32, default_max_height: i32) -> Self {
        ReceiverSettings {
            last_n,
            default_constraints: VideoConstraints::max_height(default_max_height),
            constraints: HashMap::new(),
            on_stage: Vec::new(),
            selected: Vec::new(),
            assumed_bandwidth_bps: None,
            ever_set: false,
        }
    }

    /// Applies a partial update; returns whether anything changed. `default_max_height` replaces a
    /// missing `defaultConstraints` in the first message; `assumed_limit` caps (and enables)
    /// `assumedBandwidthBps`.
    pub fn apply(
        &mut self,
        u: ConstraintsUpdate,
        default_max_height: i32,
        assumed_limit: Option<u64>,
    ) -> bool {
        let before = self.clone();
        if let Some(n) = u.last_n {
            self.last_n = n;
        }
        match u.default_constraints {
            Some(d) => self.default_constraints = d,
            None if !self.ever_set => {
                self.default_constraints = VideoConstraints::max_height(default_max_height)
            }
            None => {}
        }
        if let Some(c) = u.constraints {
            self.constraints = c.into_iter().collect();
        }
        if let Some(s) = u.on_stage {
            self.on_stage = s;
        }
        if let Some(s) = u.selected {
            self.selected = s;
        }
        if let (Some(b), Some(limit)) = (u.assumed_bandwidth_bps, assumed_limit) {
            self.assumed_bandwidth_bps = u64::try_from(b).ok().map(|b| b.min(limit));
        }
        self.ever_set = true;
        let mut after = self.clone();
        after.ever_set = before.ever_set;
        after != before
    }

    /// The constraints that apply to `source` owned by `owner`.
    pub fn constraints_for(&self, source: &str, owner: &str) -> VideoConstraints {
        self.constraints
            .get(source)
            .or_else(|| self.constraints.get(owner))
            .copied()
            .unwrap_or(self.default_constraints)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportState {
    /// ICE + DTLS done: media can be sent.
    pub connected: bool,
    pub data_channel_open: bool,
}

#[derive(Debug)]
pub struct Endpoint {
    pub handle: EndpointHandle,
    pub id: String,
    pub stats_id: Option<String>,
    pub visitor: bool,
    pub audio: MediaParams,
    pub video: MediaParams,
    /// Source slots owned by this endpoint.
    pub sources: Vec<u32>,
    pub force_mute_audio: bool,
    pub force_mute_video: bool,
    pub transport: TransportState,
    pub created_at: Instant,
    /// Last incoming anything (media, RTCP, channel message, transport activity): drives expiry.
    pub last_activity: Instant,
    /// Last incoming RTP/RTCP: drives the connectivity status the others see.
    pub last_media: Option<Instant>,
    /// Connectivity status as last announced to the others.
    pub active: bool,
    pub settings: ReceiverSettings,
    /// Video sources currently forwarded to this receiver, in priority order.
    pub forwarded: Vec<u32>,
    /// Per source slot: the projection of that source toward this receiver.
    pub projections: Vec<Option<Projection>>,
    /// The bridge's own transport-wide sequence number toward this receiver.
    pub tcc_seq: u16,
    /// What was sent to this receiver (for NACKs).
    pub sent: SentLog,
    /// Downlink bandwidth estimate (bandwidth estimator, REMB, or the shell), bps.
    pub bwe_bps: Option<u64>,
    /// The bandwidth the last allocation used (re-run when the estimate moves by more than the
    /// threshold).
    pub allocated_bwe_bps: Option<u64>,
    /// The last allocation for this receiver (forwarded layers, target and ideal bitrates).
    pub allocation: Allocation,
    /// `idealHeight` last sent to this endpoint as a sender (`SenderVideoConstraints`).
    pub sent_ideal_height: Option<i32>,
    /// Uplink: transport-cc feedback toward this endpoint as a sender.
    pub tcc_gen: Option<TccFeedbackGenerator>,
    /// Downlink: the send-side bandwidth estimator toward this endpoint as a receiver (if it
    /// negotiated transport-cc).
    pub bwe: Option<SendSideBwe>,
    /// Probing paused until then (the last probe packet could not be built).
    pub probe_hold: Option<Instant>,
    /// Retransmissions sent to this receiver (bounded by a share of its estimate).
    pub rtx_rate: RateTracker,
}

impl Endpoint {
    pub fn params(&self, kind: MediaKind) -> &MediaParams {
        match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        }
    }

    pub fn force_muted(&self, kind: MediaKind) -> bool {
        match kind {
            MediaKind::Audio => self.force_mute_audio,
            MediaKind::Video => self.force_mute_video,
        }
    }

    pub fn projection_mut(&mut self, source: u32) -> Option<&mut Projection> {
        self.projections
            .get_mut(source as usize)
            .and_then(Option::as_mut)
    }

    pub fn projection(&self, source: u32) -> Option<&Projection> {
        self.projections
            .get(source as usize)
            .and_then(Option::as_ref)
    }
}

/// Advances a transport-wide sequence counter, returning the value to stamp.
#[inline]
pub fn next_tcc(counter: &mut u16) -> u16 {
    let v = *counter;
    *counter = counter.wrapping_add(1);
    v
}
