//! Bridge-channel messages: the JSON objects a client and the bridge exchange over the WebRTC data channel
//! (or colibri-ws). The `colibriClass` field selects the type.
//!
//! Both generations of the protocol are modelled, because our reference client (lib-jitsi-meet, Dec 2021)
//! speaks the old one and current clients the new one:
//!
//! | purpose | 2021 client | current client |
//! |---|---|---|
//! | what the bridge forwards | `LastNEndpointsChangeEvent` (endpoint IDs) | `ForwardedSources` (source names) |
//! | how much the sender should send | `SenderVideoConstraints` (`videoConstraints.idealHeight`) | `SenderSourceConstraints` |
//! | what the receiver wants | `ReceiverVideoConstraints` with `selectedEndpoints`/`onStageEndpoints`, plus `ReceiverVideoConstraint` and `SelectedEndpointsChangedEvent` | `ReceiverVideoConstraints` with `selectedSources`/`onStageSources` |
//!
//! Parsing never panics: an unknown `colibriClass` becomes [`BridgeChannelMessage::Unknown`] with every
//! field kept, anything else that does not fit becomes a [`ParseError`]. Messages larger than
//! [`MAX_MESSAGE_BYTES`] are refused before any parsing.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ParseError;
use crate::sources::VideoType;

/// The largest message we parse from a peer: 64 KiB. The biggest legitimate messages are `EndpointStats`
/// (a few KiB in large calls) and `ReceiverVideoConstraints` listing every source of a big conference
/// (≈ 50 bytes per source); 64 KiB leaves an order of magnitude of headroom while bounding what one
/// message can make us allocate.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// One bridge-channel message, in either direction. Variant names are the `colibriClass` values.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "colibriClass")]
pub enum BridgeChannelMessage {
    // ---- client → bridge ----
    /// What the receiver wants to see and at which resolution (partial update).
    ReceiverVideoConstraints(ReceiverVideoConstraints),
    /// 2021 client: one maximum frame height for everything it receives.
    ReceiverVideoConstraint(ReceiverVideoConstraint),
    /// The receiver's last-N (still sent by clients alongside `ReceiverVideoConstraints`).
    LastNChangedEvent(LastNChanged),
    /// 2021 client: endpoints the user selected (pinned/large video).
    SelectedEndpointsChangedEvent(SelectedEndpointsChanged),
    /// Older single-endpoint form of the above, accepted by the 2021 bridge.
    SelectedEndpointChangedEvent(SelectedEndpointChanged),
    /// Video type of one of the sender's sources (`none`/`disabled` = muted).
    SourceVideoTypeMessage(SourceVideoType),
    /// Deprecated per-endpoint video type (sent by clients without source-name signalling).
    VideoTypeMessage(EndpointVideoType),
    /// Which audio sources the receiver wants.
    ReceiverAudioSubscription(ReceiverAudioSubscription),
    /// Sent by old clients when the channel opens; the bridge answers `ServerHello`.
    ClientHello,

    // ---- both directions (relayed by the bridge) ----
    EndpointMessage(EndpointMessage),
    EndpointStats(EndpointStats),

    // ---- bridge → client ----
    ServerHello(ServerHello),
    /// Source names the bridge currently forwards to this receiver.
    ForwardedSources(ForwardedSources),
    /// 2021 client: endpoint IDs the bridge currently forwards video of (drives its "video inactive" UI).
    LastNEndpointsChangeEvent(LastNEndpointsChange),
    DominantSpeakerEndpointChangeEvent(DominantSpeakerChange),
    /// How high the sender should encode one of its sources.
    SenderSourceConstraints(SenderSourceConstraints),
    /// 2021 client: how high the sender should encode its (only) video.
    SenderVideoConstraints(SenderVideoConstraints),
    EndpointConnectivityStatusChangeEvent(EndpointConnectivityStatus),
    ConnectionStats(ConnectionStats),
    /// SSRC-rewriting: which source each video send slot carries.
    VideoSourcesMap(VideoSourcesMap),
    /// SSRC-rewriting: which source each audio send slot carries.
    AudioSourcesMap(AudioSourcesMap),
    SyntheticSourceSendingChangeEvent(SyntheticSourceSendingChange),

    // ---- bridge ↔ bridge (relay) ----
    AddReceiver(AddReceiver),
    RemoveReceiver(RemoveReceiver),

    /// A `colibriClass` we do not model, with every field kept so it can be logged or forwarded.
    #[serde(untagged)]
    Unknown(UnknownMessage),
}

impl BridgeChannelMessage {
    /// Parses one message (UTF-8 JSON text as received on the channel).
    ///
    /// Errors: [`ParseError::Oversized`] above [`MAX_MESSAGE_BYTES`]; [`ParseError::Json`] for text that is
    /// not a JSON object with a string `colibriClass`, or whose fields do not fit the class (the message
    /// names the class and the field); [`ParseError::Invalid`] for values outside their range.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::Oversized {
                what: "bridge-channel message",
                size: text.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        // First pass reads only the class (other fields are skipped without allocating); the second
        // parses the text into the class's own type, so duplicate and mistyped fields are caught.
        let header: Header<'_> =
            serde_json::from_str(text).map_err(|e| ParseError::Json(e.to_string()))?;
        let class = header
            .class
            .ok_or_else(|| ParseError::Json("message has no colibriClass".into()))?;
        let class: &str = &class;

        fn typed<'a, T: Deserialize<'a>>(class: &str, text: &'a str) -> Result<T, ParseError> {
            serde_json::from_str(text).map_err(|e| ParseError::Json(format!("{class}: {e}")))
        }
        use BridgeChannelMessage as M;
        let msg = match class {
            "ReceiverVideoConstraints" => {
                let m: ReceiverVideoConstraints = typed(class, text)?;
                m.validate()?;
                M::ReceiverVideoConstraints(m)
            }
            "ReceiverVideoConstraint" => M::ReceiverVideoConstraint(typed(class, text)?),
            "LastNChangedEvent" => M::LastNChangedEvent(typed(class, text)?),
            "SelectedEndpointsChangedEvent" => {
                M::SelectedEndpointsChangedEvent(typed(class, text)?)
            }
            "SelectedEndpointChangedEvent" => M::SelectedEndpointChangedEvent(typed(class, text)?),
            "SourceVideoTypeMessage" => M::SourceVideoTypeMessage(typed(class, text)?),
            "VideoTypeMessage" => M::VideoTypeMessage(typed(class, text)?),
            "ReceiverAudioSubscription" => M::ReceiverAudioSubscription(typed(class, text)?),
            "ClientHello" => {
                let _: IgnoreFields = typed(class, text)?;
                M::ClientHello
            }
            "EndpointMessage" => {
                let mut m: EndpointMessage = typed(class, text)?;
                m.extra.remove(CLASS_FIELD);
                M::EndpointMessage(m)
            }
            "EndpointStats" => {
                let mut m: EndpointStats = typed(class, text)?;
                m.fields.remove(CLASS_FIELD);
                M::EndpointStats(m)
            }
            "ServerHello" => M::ServerHello(typed(class, text)?),
            "ForwardedSources" => M::ForwardedSources(typed(class, text)?),
            "LastNEndpointsChangeEvent" => M::LastNEndpointsChangeEvent(typed(class, text)?),
            "DominantSpeakerEndpointChangeEvent" => {
                M::DominantSpeakerEndpointChangeEvent(typed(class, text)?)
            }
            "SenderSourceConstraints" => M::SenderSourceConstraints(typed(class, text)?),
            "SenderVideoConstraints" => M::SenderVideoConstraints(typed(class, text)?),
            "EndpointConnectivityStatusChangeEvent" => {
                M::EndpointConnectivityStatusChangeEvent(typed(class, text)?)
            }
            "ConnectionStats" => M::ConnectionStats(typed(class, text)?),
            "VideoSourcesMap" => M::VideoSourcesMap(typed(class, text)?),
            "AudioSourcesMap" => M::AudioSourcesMap(typed(class, text)?),
            "SyntheticSourceSendingChangeEvent" => {
                M::SyntheticSourceSendingChangeEvent(typed(class, text)?)
            }
            "AddReceiver" => {
                let m: AddReceiver = typed(class, text)?;
                m.video_constraints
                    .validate("AddReceiver.videoConstraints")?;
                M::AddReceiver(m)
            }
            "RemoveReceiver" => M::RemoveReceiver(typed(class, text)?),
            other => {
                let mut fields: Map<String, Value> = typed(other, text)?;
                fields.remove(CLASS_FIELD);
                M::Unknown(UnknownMessage {
                    class: other.to_owned(),
                    fields,
                })
            }
        };
        Ok(msg)
    }

    /// Serialises the message as compact JSON, `colibriClass` first, field names exactly as Jitsi
    /// clients read them.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string and no Serialize impl here
        // returns an error.
        serde_json::to_string(self).expect("bridge-channel messages always serialise")
    }

    /// The `colibriClass` of this message (for logs and per-class counters).
    pub fn class(&self) -> &str {
        use BridgeChannelMessage as M;
        match self {
            M::ReceiverVideoConstraints(_) => "ReceiverVideoConstraints",
            M::ReceiverVideoConstraint(_) => "ReceiverVideoConstraint",
            M::LastNChangedEvent(_) => "LastNChangedEvent",
            M::SelectedEndpointsChangedEvent(_) => "SelectedEndpointsChangedEvent",
            M::SelectedEndpointChangedEvent(_) => "SelectedEndpointChangedEvent",
            M::SourceVideoTypeMessage(_) => "SourceVideoTypeMessage",
            M::VideoTypeMessage(_) => "VideoTypeMessage",
            M::ReceiverAudioSubscription(_) => "ReceiverAudioSubscription",
            M::ClientHello => "ClientHello",
            M::EndpointMessage(_) => "EndpointMessage",
            M::EndpointStats(_) => "EndpointStats",
            M::ServerHello(_) => "ServerHello",
            M::ForwardedSources(_) => "ForwardedSources",
            M::LastNEndpointsChangeEvent(_) => "LastNEndpointsChangeEvent",
            M::DominantSpeakerEndpointChangeEvent(_) => "DominantSpeakerEndpointChangeEvent",
            M::SenderSourceConstraints(_) => "SenderSourceConstraints",
            M::SenderVideoConstraints(_) => "SenderVideoConstraints",
            M::EndpointConnectivityStatusChangeEvent(_) => "EndpointConnectivityStatusChangeEvent",
            M::ConnectionStats(_) => "ConnectionStats",
            M::VideoSourcesMap(_) => "VideoSourcesMap",
            M::AudioSourcesMap(_) => "AudioSourcesMap",
            M::SyntheticSourceSendingChangeEvent(_) => "SyntheticSourceSendingChangeEvent",
            M::AddReceiver(_) => "AddReceiver",
            M::RemoveReceiver(_) => "RemoveReceiver",
            M::Unknown(u) => &u.class,
        }
    }
}

const CLASS_FIELD: &str = "colibriClass";

/// First-pass view of a message: only its class.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(rename = "colibriClass", borrow, default)]
    class: Option<Cow<'a, str>>,
}

/// Accepts any JSON object (for classes without fields).
#[derive(Deserialize)]
struct IgnoreFields {}

// ---------------------------------------------------------------------------------------------------------
// Shared pieces

/// A resolution/frame-rate limit, as in `defaultConstraints` and `constraints` of
/// `ReceiverVideoConstraints`. `maxHeight` is the smaller video dimension in pixels; -1 = unlimited, 0 = do
/// not send. `maxFrameRate` absent or -1 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoConstraints {
    pub max_height: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_rate: Option<f64>,
}

impl VideoConstraints {
    pub const UNLIMITED: VideoConstraints = VideoConstraints {
        max_height: -1,
        max_frame_rate: None,
    };

    pub fn max_height(max_height: i32) -> Self {
        VideoConstraints {
            max_height,
            max_frame_rate: None,
        }
    }

    /// Same ranges the reference bridge enforces.
    fn validate(&self, what: &'static str) -> Result<(), ParseError> {
        if self.max_height < -1 {
            return Err(ParseError::invalid(
                what,
                format!("maxHeight {} must be -1, 0 or positive", self.max_height),
            ));
        }
        if let Some(fps) = self.max_frame_rate
            && !(fps == -1.0 || fps >= 0.0)
        {
            return Err(ParseError::invalid(
                what,
                format!("maxFrameRate {fps} must be -1 or non-negative"),
            ));
        }
        Ok(())
    }
}

/// `videoType` as clients write it (`camera`, `desktop`, `desktop_high_fps`, `none`); reading also accepts
/// the bridge's upper-case enum names and `disabled`.
mod video_type_lower {
    use super::*;

    pub fn serialize<S: Serializer>(v: &VideoType, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VideoType, D::Error> {
        let s = Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// `videoType` as the reference bridge writes it in source maps (Java enum names).
mod video_type_upper {
    use super::*;

    pub fn serialize<S: Serializer>(v: &VideoType, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match v {
            VideoType::Camera => "CAMERA",
            VideoType::Desktop => "DESKTOP",
            VideoType::DesktopHighFps => "DESKTOP_HIGH_FPS",
            VideoType::None => "DISABLED",
        })
    }

    pub use super::video_type_lower::deserialize;
}

/// A boolean written as the JSON string `"true"`/`"false"` (the bridge has always encoded
/// `EndpointConnectivityStatusChangeEvent.active` that way and clients compare with `=== 'true'`). Reading
/// also accepts a JSON boolean.
mod string_bool {
    use super::*;

    pub fn serialize<S: Serializer>(v: &bool, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if *v { "true" } else { "false" })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum StrOrBool<'a> {
            Bool(bool),
            Str(#[serde(borrow)] Cow<'a, str>),
        }
        match StrOrBool::deserialize(d)? {
            StrOrBool::Bool(b) => Ok(b),
            StrOrBool::Str(s) if s == "true" => Ok(true),
            StrOrBool::Str(s) if s == "false" => Ok(false),
            StrOrBool::Str(s) => Err(de::Error::invalid_value(
                de::Unexpected::Str(&s),
                &"\"true\" or \"false\"",
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Client → bridge

/// `ReceiverVideoConstraints`. Every field is a partial update: `None` means "absent, keep what you had",
/// `Some` (even an empty list) replaces. The endpoint-based fields are what the 2021 client sends (and
/// then `constraints` is keyed by endpoint ID); current clients send the source-based ones.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverVideoConstraints {
    /// Maximum number of videos to receive; -1 = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_n: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_sources: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stage_sources: Option<Vec<String>>,
    /// 2021 form of `selectedSources` (endpoint IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_endpoints: Option<Vec<String>>,
    /// 2021 form of `onStageSources` (endpoint IDs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_stage_endpoints: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_constraints: Option<VideoConstraints>,
    /// Per source name (or, from the 2021 client, per endpoint ID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<BTreeMap<String, VideoConstraints>>,
    /// Client-imposed bandwidth cap, honoured only if the bridge is configured to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assumed_bandwidth_bps: Option<i64>,
}

impl ReceiverVideoConstraints {
    fn validate(&self) -> Result<(), ParseError> {
        const E: &str = "ReceiverVideoConstraints";
        if let Some(n) = self.last_n
            && n < -1
        {
            return Err(ParseError::invalid(
                E,
                format!("lastN {n} must be -1 or non-negative"),
            ));
        }
        if let Some(c) = &self.default_constraints {
            c.validate("ReceiverVideoConstraints.defaultConstraints")?;
        }
        for c in self.constraints.iter().flat_map(|m| m.values()) {
            c.validate("ReceiverVideoConstraints.constraints")?;
        }
        Ok(())
    }
}

/// `ReceiverVideoConstraint` (singular, 2021): `maxFrameHeight` for all received video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverVideoConstraint {
    pub max_frame_height: i32,
}

/// `LastNChangedEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastNChanged {
    pub last_n: i32,
}

/// `SelectedEndpointsChangedEvent` (2021).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedEndpointsChanged {
    pub selected_endpoints: Vec<String>,
}

/// `SelectedEndpointChangedEvent` (pre-2021 single selection; `null` clears it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SelectedEndpointChanged {
    #[serde(default)]
    pub selected_endpoint: Option<String>,
}

/// `SourceVideoTypeMessage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceVideoType {
    pub source_name: String,
    #[serde(with = "video_type_lower")]
    pub video_type: VideoType,
    /// Only set between bridges; from a client the endpoint is the channel's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
}

/// `VideoTypeMessage` (deprecated, per endpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointVideoType {
    #[serde(with = "video_type_lower")]
    pub video_type: VideoType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
}

/// `ReceiverAudioSubscription`, normalised: receive every (non-synthetic) source if `all`, plus `include`,
/// minus `exclude` (which wins). The legacy form `mode` (`All`/`None`/`Include`/`Exclude`) + `list` is
/// read and converted; we always write the current form.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawAudioSubscription")]
pub struct ReceiverAudioSubscription {
    pub all: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Deserialize)]
struct RawAudioSubscription {
    all: Option<bool>,
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    mode: Option<String>,
    list: Option<Vec<String>>,
}

impl TryFrom<RawAudioSubscription> for ReceiverAudioSubscription {
    type Error = String;
    fn try_from(r: RawAudioSubscription) -> Result<Self, String> {
        let list = r.list.unwrap_or_default();
        Ok(match r.mode.as_deref() {
            None => ReceiverAudioSubscription {
                all: r.all.unwrap_or(false),
                include: r.include.unwrap_or_default(),
                exclude: r.exclude.unwrap_or_default(),
            },
            Some("All") => ReceiverAudioSubscription {
                all: true,
                ..Default::default()
            },
            Some("None") => ReceiverAudioSubscription::default(),
            Some("Include") => ReceiverAudioSubscription {
                all: false,
                include: list,
                exclude: Vec::new(),
            },
            Some("Exclude") => ReceiverAudioSubscription {
                all: true,
                include: Vec::new(),
                exclude: list,
            },
            Some(other) => {
                return Err(format!(
                    "unknown mode '{other}', expected All, None, Include or Exclude"
                ));
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Both directions

/// `EndpointMessage`: an opaque payload from one endpoint to another (`to` = endpoint ID) or to all
/// (`to` = ""). The bridge sets `from` before relaying. Fields other than `to`/`from`/`msgPayload` are
/// kept in `extra` and written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMessage {
    /// Required, as in the reference bridge; "" means broadcast.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub msg_payload: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EndpointMessage {
    pub fn is_broadcast(&self) -> bool {
        self.to.trim().is_empty()
    }
}

/// `EndpointStats`: a client's connection-quality report, relayed with `from` set by the bridge. Every
/// other field is kept verbatim.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EndpointStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------------------
// Bridge → client

/// `ServerHello`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerHello {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `ForwardedSources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardedSources {
    pub forwarded_sources: Vec<String>,
}

/// `LastNEndpointsChangeEvent` (2021): endpoints whose video is forwarded. The 2021 client treats every
/// remote video as forwarded until the first one arrives, then marks the others inactive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastNEndpointsChange {
    pub last_n_endpoints: Vec<String>,
}

/// `DominantSpeakerEndpointChangeEvent`. `previousSpeakers` is most recent first and excludes the
/// dominant speaker; `silence` is true when nobody is speaking (silence detection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DominantSpeakerChange {
    pub dominant_speaker_endpoint: String,
    #[serde(default)]
    pub previous_speakers: Vec<String>,
    #[serde(default)]
    pub silence: bool,
}

/// `SenderSourceConstraints`: encode `sourceName` at most `maxHeight` high (0 = stop sending it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderSourceConstraints {
    pub source_name: String,
    pub max_height: i32,
}

/// `SenderVideoConstraints` (2021): `{"videoConstraints":{"idealHeight":N}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SenderVideoConstraints {
    pub video_constraints: IdealHeight,
}

impl SenderVideoConstraints {
    pub fn new(ideal_height: i32) -> Self {
        SenderVideoConstraints {
            video_constraints: IdealHeight { ideal_height },
        }
    }
}

/// The `videoConstraints` object of [`SenderVideoConstraints`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdealHeight {
    pub ideal_height: i32,
}

/// `EndpointConnectivityStatusChangeEvent`; `active` travels as the string `"true"`/`"false"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointConnectivityStatus {
    pub endpoint: String,
    #[serde(with = "string_bool")]
    pub active: bool,
}

/// `ConnectionStats`: the bridge's downlink estimate for this receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStats {
    /// Bits per second.
    pub estimated_downlink_bandwidth: u64,
}

/// One entry of `VideoSourcesMap.mappedSources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoSourceMapping {
    pub source: String,
    /// Written as `null` when unknown, as the reference bridge does.
    pub owner: Option<String>,
    pub ssrc: u32,
    pub rtx: u32,
    #[serde(with = "video_type_upper")]
    pub video_type: VideoType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
}

/// `VideoSourcesMap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoSourcesMap {
    pub mapped_sources: Vec<VideoSourceMapping>,
}

/// One entry of `AudioSourcesMap.mappedSources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioSourceMapping {
    pub source: String,
    pub owner: Option<String>,
    pub ssrc: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
}

/// `AudioSourcesMap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioSourcesMap {
    pub mapped_sources: Vec<AudioSourceMapping>,
}

/// `SyntheticSourceSendingChangeEvent`: a bridge-generated source started/stopped at RTP `timestamp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyntheticSourceSendingChange {
    pub source_name: String,
    pub sending: bool,
    pub timestamp: u32,
}

// ---------------------------------------------------------------------------------------------------------
// Bridge ↔ bridge

/// `AddReceiver` (relay): bridge `bridgeId` wants a source (current form: `sourceName`; 2021 form:
/// `endpointId`) with the given constraints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddReceiver {
    pub bridge_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
    pub video_constraints: VideoConstraints,
}

/// `RemoveReceiver` (relay).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveReceiver {
    pub bridge_id: String,
    pub endpoint_id: String,
}

// ---------------------------------------------------------------------------------------------------------
// Unknown

/// A message whose `colibriClass` we do not model. `fields` holds every other field as received.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnknownMessage {
    pub class: String,
    pub fields: Map<String, Value>,
}

impl Serialize for UnknownMessage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len() + 1))?;
        map.serialize_entry(CLASS_FIELD, &self.class)?;
        for (k, v) in self.fields.iter().filter(|(k, _)| *k != CLASS_FIELD) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_is_read_before_fields_and_reported() {
        let m = BridgeChannelMessage::parse(r#"{"lastN":3,"colibriClass":"LastNChangedEvent"}"#)
            .unwrap();
        assert_eq!(m.class(), "LastNChangedEvent");
        assert_eq!(
            m,
            BridgeChannelMessage::LastNChangedEvent(LastNChanged { last_n: 3 })
        );
    }

    #[test]
    fn escaped_class_names_are_decoded() {
        // `\u0043` is `C`: the borrowed fast path must fall back to an owned string.
        let m = BridgeChannelMessage::parse(r#"{"colibriClass":"\u0043lientHello"}"#).unwrap();
        assert_eq!(m, BridgeChannelMessage::ClientHello);
    }

    #[test]
    fn video_constraint_ranges_are_checked() {
        assert!(VideoConstraints::max_height(-1).validate("x").is_ok());
        assert!(VideoConstraints::max_height(0).validate("x").is_ok());
        assert!(VideoConstraints::max_height(-2).validate("x").is_err());
        let fps = VideoConstraints {
            max_height: 180,
            max_frame_rate: Some(-0.5),
        };
        assert!(fps.validate("x").is_err());
    }
}
