//! One endpoint of a conference, in both roles: as a sender (its negotiated parameters, sources,
//! force-mute, activity) and as a receiver (its constraints, forwarded set, one projection per
//! source it may receive, its transport-wide sequence counter and retransmission cache).

use std::collections::HashMap;
use std::time::Instant;

use super::EndpointHandle;
use super::channel::ConstraintsUpdate;
use super::model::{MediaKind, MediaParams};
use super::projection::Projection;
use super::rtx_cache::SentLog;

/// A receiver's video preferences (from `ReceiverVideoConstraints`, `LastNChangedEvent`, COLIBRI2
/// `initial-last-n`).
#[derive(Debug, Clone)]
pub struct ReceiverSettings {
    /// -1 = unlimited.
    pub last_n: i32,
    /// maxHeight for sources without an explicit constraint; < 0 unlimited, 0 = off.
    pub default_max_height: i32,
    /// Per source name (modern) or per endpoint id (2021) maxHeight.
    pub constraints: HashMap<String, i32>,
    pub on_stage: Vec<String>,
    pub selected: Vec<String>,
}

impl ReceiverSettings {
    pub fn new(last_n: i32, default_max_height: i32) -> Self {
        ReceiverSettings {
            last_n,
            default_max_height,
            constraints: HashMap::new(),
            on_stage: Vec::new(),
            selected: Vec::new(),
        }
    }

    /// Applies a partial update; returns whether anything changed.
    pub fn apply(&mut self, u: ConstraintsUpdate) -> bool {
        let before = (
            self.last_n,
            self.default_max_height,
            self.constraints.clone(),
            self.on_stage.clone(),
            self.selected.clone(),
        );
        if let Some(n) = u.last_n {
            self.last_n = n;
        }
        if let Some(h) = u.default_max_height {
            self.default_max_height = h;
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
        before
            != (
                self.last_n,
                self.default_max_height,
                self.constraints.clone(),
                self.on_stage.clone(),
                self.selected.clone(),
            )
    }

    /// The maxHeight that applies to `source` owned by `owner`.
    pub fn max_height(&self, source: &str, owner: &str) -> i32 {
        self.constraints
            .get(source)
            .or_else(|| self.constraints.get(owner))
            .copied()
            .unwrap_or(self.default_max_height)
    }

    /// 0 = on stage, 1 = selected, 2 = the rest.
    pub fn priority(&self, source: &str, owner: &str) -> u8 {
        let has = |v: &Vec<String>| v.iter().any(|s| s == source || s == owner);
        if has(&self.on_stage) {
            0
        } else if has(&self.selected) {
            1
        } else {
            2
        }
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
