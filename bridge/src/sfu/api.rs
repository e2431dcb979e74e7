//! What goes into and comes out of the core: handles, commands' parameters, outputs, events,
//! errors. Plain data; the logic is in [`super::Sfu`] and the modules it routes to.

use std::time::Instant;

use signaling::rtp_description::RtpParameters;
use thiserror::Error;

use super::model::MediaSourceDesc;

/// Names a conference inside one [`Sfu`](super::Sfu). Stale handles (expired conference) are rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConferenceHandle {
    pub(crate) idx: u32,
    pub(crate) generation: u32,
}

/// Names an endpoint inside one [`Sfu`](super::Sfu); the transport keeps it next to the endpoint's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointHandle {
    pub(crate) conf: ConferenceHandle,
    pub(crate) idx: u32,
    pub(crate) generation: u32,
}

impl EndpointHandle {
    pub fn conference(&self) -> ConferenceHandle {
        self.conf
    }
    /// Slot index, stable for the endpoint's life (usable to index a shell-side table).
    pub fn index(&self) -> u32 {
        self.idx
    }
}

/// The bridge's own feedback sources of a conference, announced in the COLIBRI2 answer as
/// `media-source jvb-a0` / `jvb-v0` and used as the sender SSRC of the RTCP it generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackSources {
    pub audio_ssrc: u32,
    pub video_ssrc: u32,
}

impl FeedbackSources {
    pub const AUDIO_NAME: &'static str = "jvb-a0";
    pub const VIDEO_NAME: &'static str = "jvb-v0";
}

/// Why an endpoint went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpireReason {
    /// COLIBRI2 `expire="true"` (or the whole conference was expired).
    Requested,
    /// No incoming activity for `endpoint_expire_timeout`.
    Inactivity,
    /// ICE/DTLS failed or consent was lost.
    TransportFailed,
    /// Handling an input of its conference panicked: the conference was removed to isolate it.
    Fault,
}

/// Something the shell may want to act on (tear down transports, log, update stats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    EndpointExpired {
        endpoint: EndpointHandle,
        meeting_id: String,
        endpoint_id: String,
        reason: ExpireReason,
    },
    ConferenceExpired {
        conference: ConferenceHandle,
        meeting_id: String,
        /// When it was created (the shell sums conference lifetimes for its statistics).
        created_at: Instant,
    },
    DominantSpeakerChanged {
        conference: ConferenceHandle,
        endpoint_id: String,
        previous: Vec<String>,
    },
    ConnectivityChanged {
        endpoint: EndpointHandle,
        endpoint_id: String,
        active: bool,
    },
}

/// One output. Byte and text payloads borrow the core's buffers for the duration of the
/// [`Sink::emit`] call.
#[derive(Debug)]
pub enum Output<'a> {
    /// Plaintext RTP to send (SRTP-protect) to `to`.
    Rtp {
        to: EndpointHandle,
        packet: &'a [u8],
    },
    /// Plaintext RTCP compound to send (SRTCP-protect) to `to`.
    Rtcp {
        to: EndpointHandle,
        packet: &'a [u8],
    },
    /// A bridge-channel message (UTF-8 JSON, PPID 51) to send to `to`.
    Text {
        to: EndpointHandle,
        text: &'a str,
    },
    Event(Event),
}

/// Receives outputs while a call into the core runs.
pub trait Sink {
    fn emit(&mut self, out: Output<'_>);

    /// [`Output::Rtp`] of the packet in `packet`, a buffer the sink may take whole: it then leaves
    /// another in its place (empty, any capacity). The port's sink encrypts the buffer where it is
    /// and queues it, so a forwarded packet is written once, by the core, where it is sent from.
    /// The default lends the bytes to [`Sink::emit`].
    fn emit_rtp_buffer(&mut self, to: EndpointHandle, packet: &mut Vec<u8>) {
        self.emit(Output::Rtp { to, packet });
    }
}

impl<F: FnMut(Output<'_>)> Sink for F {
    fn emit(&mut self, out: Output<'_>) {
        self(out)
    }
}

/// An owned copy of an [`Output`], for tests and simple shells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedOutput {
    Rtp { to: EndpointHandle, packet: Vec<u8> },
    Rtcp { to: EndpointHandle, packet: Vec<u8> },
    Text { to: EndpointHandle, text: String },
    Event(Event),
}

/// A sink that copies every output (allocates: for tests and control paths).
#[derive(Debug, Default)]
pub struct Collect(pub Vec<OwnedOutput>);

impl Sink for Collect {
    fn emit(&mut self, out: Output<'_>) {
        self.0.push(match out {
            Output::Rtp { to, packet } => OwnedOutput::Rtp {
                to,
                packet: packet.to_vec(),
            },
            Output::Rtcp { to, packet } => OwnedOutput::Rtcp {
                to,
                packet: packet.to_vec(),
            },
            Output::Text { to, text } => OwnedOutput::Text {
                to,
                text: text.to_owned(),
            },
            Output::Event(e) => OwnedOutput::Event(e),
        });
    }
}

/// Transport state changes of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportEvent {
    /// ICE + DTLS established: SRTP keys ready, media may flow.
    Connected,
    /// The bridge channel (SCTP data channel or colibri-ws) opened.
    DataChannelOpen,
    /// The bridge channel closed (the endpoint stays).
    DataChannelClosed,
    /// ICE failed / consent lost / DTLS failed: the endpoint expires.
    Failed,
    /// Authenticated traffic that is neither media nor channel (e.g. STUN consent): keeps the
    /// endpoint from expiring.
    Activity,
}

/// COLIBRI2 `force-mute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForceMute {
    pub audio: bool,
    pub video: bool,
}

/// Everything COLIBRI2 says about a new endpoint.
#[derive(Debug, Clone, Default)]
pub struct EndpointParams {
    pub id: String,
    pub stats_id: Option<String>,
    /// `media type="audio"` payload types and header extensions.
    pub audio: RtpParameters,
    /// `media type="video"`.
    pub video: RtpParameters,
    /// The endpoint's complete source set.
    pub sources: Vec<MediaSourceDesc>,
    pub force_mute: ForceMute,
    /// `initial-last-n`.
    pub initial_last_n: Option<i32>,
    /// `muc-role="visitor"`: receives only, its messages are not relayed.
    pub visitor: bool,
    /// Capability `ssrc-rewriting`: it gets the others' media on bridge-chosen SSRCs announced
    /// over the bridge channel (`ssrc_slots`).
    pub ssrc_rewriting: bool,
    /// Capability `rtp-mid-demux` (with `ssrc_rewriting`): each slot has a mid, announced and
    /// stamped as sdes:mid.
    pub rtp_mid_demux: bool,
}

/// A COLIBRI2 update of an existing endpoint; `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub audio: Option<RtpParameters>,
    pub video: Option<RtpParameters>,
    /// The complete new source set (an empty Vec clears the sources).
    pub sources: Option<Vec<MediaSourceDesc>>,
    pub force_mute_audio: Option<bool>,
    pub force_mute_video: Option<bool>,
    pub initial_last_n: Option<i32>,
}

/// Errors of the command API (COLIBRI2 maps them to its error conditions).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SfuError {
    #[error("conference {0} already exists")]
    ConferenceExists(String),
    #[error("conference not found")]
    ConferenceNotFound,
    #[error("endpoint {0} already exists")]
    EndpointExists(String),
    #[error("endpoint not found")]
    EndpointNotFound,
}

/// What the core knows of an endpoint's identity (the shell logs it and checks COLIBRI2 requests
/// against it instead of keeping a copy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndpointInfo<'a> {
    pub id: &'a str,
    pub stats_id: Option<&'a str>,
    pub meeting_id: &'a str,
    pub visitor: bool,
}

/// A receiver's downlink estimate and what it is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DownlinkEstimate {
    pub estimate_bps: u64,
    pub delay_based_bps: u64,
    pub acknowledged_bps: Option<u64>,
    pub loss_fraction: f64,
    pub probes_started: u32,
    pub probes_succeeded: u32,
}

/// Point-in-time numbers for `/colibri/stats` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SfuStats {
    pub conferences: usize,
    pub endpoints: usize,
    /// Endpoints currently sending media.
    pub active_endpoints: usize,
    /// Largest conference (endpoints).
    pub largest_conference: usize,
    pub sources: usize,
}
