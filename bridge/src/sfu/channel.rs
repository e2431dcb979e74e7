//! The bridge-channel messages as the core sees them (jitsi-videobridge `jvb/src/main/kotlin/org/jitsi/videobridge/message/BridgeChannelMessage.kt`): what a client's message means for
//! the core ([`ClientMessage`], decoded from `signaling::bridge_channel`), and the messages the core
//! sends. The JSON wire types live in `signaling::bridge_channel`; this module only maps them.

use signaling::bridge_channel::{
    AudioSourceMapping, AudioSourcesMap, BridgeChannelMessage as M, ConnectionStats,
    DominantSpeakerChange, EndpointConnectivityStatus, EndpointMessage, EndpointStats,
    ForwardedSources, LastNEndpointsChange, SenderSourceConstraints, SenderVideoConstraints,
    VideoSourceMapping, VideoSourcesMap,
};
use signaling::sources::VideoType;

use super::allocation::VideoConstraints;
use super::model::MediaKind;

/// A partial update of a receiver's video constraints (2021 endpoint-based and modern source-based
/// forms merged: ids in `on_stage`/`selected`/`constraints` are endpoint ids or source names, and the
/// lookup tries both).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConstraintsUpdate {
    pub last_n: Option<i32>,
    pub default_constraints: Option<VideoConstraints>,
    pub constraints: Option<Vec<(String, VideoConstraints)>>,
    pub on_stage: Option<Vec<String>>,
    pub selected: Option<Vec<String>>,
    /// `assumedBandwidthBps` (honoured only if the bridge is configured to).
    pub assumed_bandwidth_bps: Option<i64>,
}

fn constraints(c: signaling::bridge_channel::VideoConstraints) -> VideoConstraints {
    VideoConstraints {
        max_height: c.max_height,
        max_frame_rate: c.max_frame_rate.unwrap_or(-1.0),
    }
}

/// Which other endpoints' audio sources a receiver gets (jitsi-videobridge
/// `jvb/src/main/kotlin/org/jitsi/videobridge/AudioSubscription.kt`; lib-jitsi-meet
/// `modules/qualitycontrol/ReceiveAudioController.ts` sends it, e.g. `all: false` to mute remote
/// audio): `all` is the baseline, `include` adds named sources, `exclude` wins over both. Until a
/// receiver sends one it gets everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioSubscription {
    pub all: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Default for AudioSubscription {
    fn default() -> Self {
        AudioSubscription {
            all: true,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

impl AudioSubscription {
    /// Whether the audio source named `source` is forwarded to this receiver.
    pub fn wants(&self, source: &str) -> bool {
        if self.exclude.iter().any(|s| s == source) {
            return false;
        }
        self.all || self.include.iter().any(|s| s == source)
    }
}

/// What a client sent, as far as the core is concerned.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    ReceiverVideoConstraints(ConstraintsUpdate),
    LastN(i32),
    /// Relay to `to` ("" = everyone else) with `from` set by the bridge.
    EndpointMessage(EndpointMessage),
    /// Relay to the others with `from` set by the bridge.
    EndpointStats(EndpointStats),
    SourceVideoType {
        source: String,
        video_type: VideoType,
    },
    /// Deprecated per-endpoint form (applies to the endpoint's video sources).
    VideoType(VideoType),
    /// Which audio sources the receiver wants (`ReceiverAudioSubscription`, current and legacy forms).
    AudioSubscription(AudioSubscription),
    /// Messages the bridge accepts and ignores (ClientHello, SelectedEndpointChangedEvent).
    Ignored,
}

/// Why a text message was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    /// Not JSON, no `colibriClass`, or fields of the wrong shape.
    Malformed,
    /// A class the bridge does not accept from a client.
    UnknownClass,
}

/// Decodes a client message.
pub fn decode(text: &str) -> Result<ClientMessage, ChannelError> {
    let m = M::parse(text).map_err(|_| ChannelError::Malformed)?;
    Ok(match m {
        M::ReceiverVideoConstraints(c) => {
            ClientMessage::ReceiverVideoConstraints(ConstraintsUpdate {
                last_n: c.last_n,
                default_constraints: c.default_constraints.map(constraints),
                constraints: c
                    .constraints
                    .map(|m| m.into_iter().map(|(k, v)| (k, constraints(v))).collect()),
                // Modern source names win over the 2021 endpoint-id form when both are present.
                on_stage: c.on_stage_sources.or(c.on_stage_endpoints),
                selected: c.selected_sources.or(c.selected_endpoints),
                assumed_bandwidth_bps: c.assumed_bandwidth_bps,
            })
        }
        // Pre-2021 single constraint: a maxHeight for everything.
        M::ReceiverVideoConstraint(c) => {
            ClientMessage::ReceiverVideoConstraints(ConstraintsUpdate {
                default_constraints: Some(VideoConstraints::max_height(c.max_frame_height)),
                ..Default::default()
            })
        }
        M::SelectedEndpointsChangedEvent(s) => {
            ClientMessage::ReceiverVideoConstraints(ConstraintsUpdate {
                selected: Some(s.selected_endpoints),
                ..Default::default()
            })
        }
        M::LastNChangedEvent(l) => ClientMessage::LastN(l.last_n),
        M::EndpointMessage(m) => ClientMessage::EndpointMessage(m),
        M::EndpointStats(s) => ClientMessage::EndpointStats(s),
        M::SourceVideoTypeMessage(s) => ClientMessage::SourceVideoType {
            source: s.source_name,
            video_type: s.video_type,
        },
        M::VideoTypeMessage(v) => ClientMessage::VideoType(v.video_type),
        M::ReceiverAudioSubscription(a) => ClientMessage::AudioSubscription(AudioSubscription {
            all: a.all,
            include: a.include,
            exclude: a.exclude,
        }),
        M::ClientHello | M::SelectedEndpointChangedEvent(_) => ClientMessage::Ignored,
        _ => return Err(ChannelError::UnknownClass),
    })
}

/// Serialises a relayed EndpointMessage with `from` set (whatever the client put there).
pub fn relay_message(m: &EndpointMessage, from: &str) -> String {
    let mut m = m.clone();
    m.from = Some(from.to_owned());
    M::EndpointMessage(m).to_json()
}

/// Serialises relayed EndpointStats with `from` set.
pub fn relay_stats(s: &EndpointStats, from: &str) -> String {
    let mut s = s.clone();
    s.from = Some(from.to_owned());
    M::EndpointStats(s).to_json()
}

pub fn forwarded_sources(names: &[&str]) -> String {
    M::ForwardedSources(ForwardedSources {
        forwarded_sources: names.iter().map(|s| (*s).to_owned()).collect(),
    })
    .to_json()
}

/// The 2021 dialect: the endpoints whose video is forwarded.
pub fn last_n_endpoints(ids: &[&str]) -> String {
    M::LastNEndpointsChangeEvent(LastNEndpointsChange {
        last_n_endpoints: ids.iter().map(|s| (*s).to_owned()).collect(),
    })
    .to_json()
}

pub fn dominant_speaker(endpoint: &str, previous: &[&str], silence: bool) -> String {
    M::DominantSpeakerEndpointChangeEvent(DominantSpeakerChange {
        dominant_speaker_endpoint: endpoint.to_owned(),
        previous_speakers: previous.iter().map(|s| (*s).to_owned()).collect(),
        silence,
    })
    .to_json()
}

/// Tells a sender how high to encode one source (0 = stop sending it, -1 = unlimited).
pub fn sender_source_constraints(source: &str, max_height: i32) -> String {
    M::SenderSourceConstraints(SenderSourceConstraints {
        source_name: source.to_owned(),
        max_height,
    })
    .to_json()
}

/// The 2021 form, per endpoint: a height (that client ignores a negative one; see
/// [`Told::ideal_height`](super::sender_constraints::Told::ideal_height)).
pub fn sender_video_constraints(ideal_height: i32) -> String {
    M::SenderVideoConstraints(SenderVideoConstraints::new(ideal_height)).to_json()
}

/// The bridge's downlink estimate toward an endpoint.
pub fn connection_stats(bps: u64) -> String {
    M::ConnectionStats(ConnectionStats {
        estimated_downlink_bandwidth: bps,
    })
    .to_json()
}

/// One slot of an SSRC-rewriting receiver as announced (see [`sources_map`]).
#[derive(Debug, Clone, Copy)]
pub struct MappedSource<'a> {
    pub source: &'a str,
    pub owner: &'a str,
    pub ssrc: u32,
    /// Video: the slot's RTX SSRC.
    pub rtx: u32,
    pub video_type: VideoType,
    /// Empty without `rtp-mid-demux`.
    pub mid: &'a str,
}

/// `VideoSourcesMap` / `AudioSourcesMap` (jitsi-videobridge `SsrcCache.kt` `notifyMappings`):
/// which source each of the receiver's slots now carries.
pub fn sources_map(kind: MediaKind, entries: &[MappedSource<'_>]) -> String {
    let mid = |m: &str| (!m.is_empty()).then(|| m.to_owned());
    match kind {
        MediaKind::Video => M::VideoSourcesMap(VideoSourcesMap {
            mapped_sources: entries
                .iter()
                .map(|e| VideoSourceMapping {
                    source: e.source.to_owned(),
                    owner: Some(e.owner.to_owned()),
                    ssrc: e.ssrc,
                    rtx: e.rtx,
                    video_type: e.video_type,
                    mid: mid(e.mid),
                })
                .collect(),
        }),
        MediaKind::Audio => M::AudioSourcesMap(AudioSourcesMap {
            mapped_sources: entries
                .iter()
                .map(|e| AudioSourceMapping {
                    source: e.source.to_owned(),
                    owner: Some(e.owner.to_owned()),
                    ssrc: e.ssrc,
                    mid: mid(e.mid),
                })
                .collect(),
        }),
    }
    .to_json()
}

pub fn connectivity(endpoint: &str, active: bool) -> String {
    M::EndpointConnectivityStatusChangeEvent(EndpointConnectivityStatus {
        endpoint: endpoint.to_owned(),
        active,
    })
    .to_json()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn source_maps_are_written_as_jvb_writes_them() {
        let e = |source, mid| MappedSource {
            source,
            owner: "ab12cd34",
            ssrc: 1_234_567,
            rtx: 7_654_321,
            video_type: VideoType::Desktop,
            mid,
        };
        assert_eq!(
            sources_map(MediaKind::Video, &[e("ab12cd34-v1", "v3")]),
            r#"{"colibriClass":"VideoSourcesMap","mappedSources":[{"source":"ab12cd34-v1","owner":"ab12cd34","ssrc":1234567,"rtx":7654321,"videoType":"DESKTOP","mid":"v3"}]}"#
        );
        assert_eq!(
            sources_map(MediaKind::Audio, &[e("ab12cd34-a0", "")]),
            r#"{"colibriClass":"AudioSourcesMap","mappedSources":[{"source":"ab12cd34-a0","owner":"ab12cd34","ssrc":1234567}]}"#
        );
    }

    #[test]
    fn decodes_both_constraint_dialects() {
        let m = decode(
            r#"{"colibriClass":"ReceiverVideoConstraints","lastN":2,"onStageEndpoints":["ab"],
                "defaultConstraints":{"maxHeight":180},"constraints":{"ab":{"maxHeight":720}}}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::ReceiverVideoConstraints(ConstraintsUpdate {
                last_n: Some(2),
                default_constraints: Some(VideoConstraints::max_height(180)),
                constraints: Some(vec![("ab".into(), VideoConstraints::max_height(720))]),
                on_stage: Some(vec!["ab".into()]),
                selected: None,
                assumed_bandwidth_bps: None,
            })
        );
        let m = decode(
            r#"{"colibriClass":"ReceiverVideoConstraints","selectedSources":["ab-v0"],"constraints":{"ab-v0":{"maxHeight":0}}}"#,
        )
        .unwrap();
        let ClientMessage::ReceiverVideoConstraints(u) = m else {
            panic!()
        };
        assert_eq!(u.last_n, None);
        assert_eq!(u.selected, Some(vec!["ab-v0".into()]));
        assert_eq!(
            u.constraints,
            Some(vec![("ab-v0".into(), VideoConstraints::max_height(0))])
        );
        let m = decode(
            r#"{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":180,"maxFrameRate":15},"assumedBandwidthBps":500000}"#,
        )
        .unwrap();
        let ClientMessage::ReceiverVideoConstraints(u) = m else {
            panic!()
        };
        assert_eq!(
            u.default_constraints,
            Some(VideoConstraints {
                max_height: 180,
                max_frame_rate: 15.0
            })
        );
        assert_eq!(u.assumed_bandwidth_bps, Some(500_000));
    }

    #[test]
    fn rejects_garbage_and_unknown_classes() {
        assert_eq!(decode("nope"), Err(ChannelError::Malformed));
        assert_eq!(decode("[1]"), Err(ChannelError::Malformed));
        assert_eq!(decode(r#"{"x":1}"#), Err(ChannelError::Malformed));
        assert_eq!(
            decode(r#"{"colibriClass":"Whatever"}"#),
            Err(ChannelError::UnknownClass)
        );
        // A bridge-to-client class from a client.
        assert_eq!(
            decode(r#"{"colibriClass":"ForwardedSources","forwardedSources":[]}"#),
            Err(ChannelError::UnknownClass)
        );
        assert_eq!(
            decode(r#"{"colibriClass":"LastNChangedEvent"}"#),
            Err(ChannelError::Malformed)
        );
    }

    #[test]
    fn relay_sets_from() {
        let ClientMessage::EndpointMessage(m) = decode(
            r#"{"colibriClass":"EndpointMessage","to":"","from":"spoofed","msgPayload":{"a":1},"extra":2}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert!(m.is_broadcast());
        let v: Value = serde_json::from_str(&relay_message(&m, "real")).unwrap();
        assert_eq!(v["from"], "real");
        assert_eq!(v["msgPayload"]["a"], 1);
        assert_eq!(v["extra"], 2);
        assert_eq!(v["colibriClass"], "EndpointMessage");
    }

    #[test]
    fn outgoing_messages_use_the_wire_names() {
        let v: Value = serde_json::from_str(&connectivity("ab", false)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"colibriClass":"EndpointConnectivityStatusChangeEvent","endpoint":"ab","active":"false"})
        );
        let v: Value = serde_json::from_str(&last_n_endpoints(&["ab"])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"colibriClass":"LastNEndpointsChangeEvent","lastNEndpoints":["ab"]})
        );
        let v: Value = serde_json::from_str(&sender_source_constraints("ab-v0", 0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"colibriClass":"SenderSourceConstraints","sourceName":"ab-v0","maxHeight":0})
        );
        let v: Value = serde_json::from_str(&sender_video_constraints(360)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"colibriClass":"SenderVideoConstraints","videoConstraints":{"idealHeight":360}})
        );
        let v: Value = serde_json::from_str(&connection_stats(1_000_000)).unwrap();
        assert_eq!(v["estimatedDownlinkBandwidth"], 1_000_000);
        let v: Value = serde_json::from_str(&forwarded_sources(&["ab-v0"])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"colibriClass":"ForwardedSources","forwardedSources":["ab-v0"]})
        );
    }
}
