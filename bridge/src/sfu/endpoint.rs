//! The one endpoint record. The core owns an endpoint's identity (id, stats id, visitor role, its
//! conference through the handle) and what it negotiated; the transport (`transport::PortState`)
//! and the media shell (`media::plane::ShellEndpoint`) keep only their own state, keyed by the
//! same [`EndpointHandle`].
//!
//! The two roles of an endpoint keep their state apart: [`Uplink`] (as a sender: its SSRCs,
//! feedback toward it) and [`Downlink`] (as a receiver: its allocation, projections,
//! retransmissions, bandwidth estimate). What both roles read stays here: negotiated parameters,
//! transport state, activity.

use std::time::Instant;

use super::api::EndpointHandle;
use super::downlink::Downlink;
use super::model::{MediaKind, MediaParams};
use super::rate::RelayBudget;
use super::uplink::Uplink;

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
    /// `muc-role="visitor"`: receives only, sends no sources, its messages are not relayed.
    pub visitor: bool,
    /// Negotiated payload types, feedback and header extensions (both directions use them).
    pub audio: MediaParams,
    pub video: MediaParams,
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
    /// As a sender.
    pub uplink: Uplink,
    /// As a receiver.
    pub downlink: Downlink,
    /// What it may still have relayed to the others (`EndpointMessage`, `EndpointStats`).
    pub relay_budget: RelayBudget,
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
}
