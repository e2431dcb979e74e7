//! The bridge-channel messages as the core sees them (brief §3.2): what a client's message means for
//! the core ([`ClientMessage`], decoded from `signaling::bridge_channel`), and the messages the core
//! sends. The JSON wire types live in `signaling::bridge_channel`; this module only maps them.

use signaling::bridge_channel::{
    BridgeChannelMessage as M, DominantSpeakerChange, EndpointConnectivityStatus, EndpointMessage,
    EndpointStats, ForwardedSources, LastNEndpointsChange,
};
use signaling::sources::VideoType;

/// A partial update of a receiver's video constraints (2021 endpoint-based and modern source-based
/// forms merged: ids in `on_stage`/`selected`/`constraints` are endpoint ids or source names, and the
/// lookup tries both).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConstraintsUpdate {
    pub last_n: Option<i32>,
    pub default_max_height: Option<i32>,
    pub constraints: Option<Vec<(String, i32)>>,
    pub on_stage: Option<Vec<String>>,
    pub selected: Option<Vec<String>>,
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
    /// Messages the bridge accepts and ignores (ClientHello, ReceiverAudioSubscription…).
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
                default_max_height: c.default_constraints.map(|d| d.max_height),
                constraints: c
                    .constraints
                    .map(|m| m.into_iter().map(|(k, v)| (k, v.max_height)).collect()),
                // Modern source names win over the 2021 endpoint-id form when both are present.
                on_stage: c.on_stage_sources.or(c.on_stage_endpoints),
                selected: c.selected_sources.or(c.selected_endpoints),
            })
        }
        // Pre-2021 single constraint: a maxHeight for everything.
        M::ReceiverVideoConstraint(c) => {
            ClientMessage::ReceiverVideoConstraints(ConstraintsUpdate {
                default_max_height: Some(c.max_frame_height),
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
        M::ClientHello | M::ReceiverAudioSubscription(_) | M::SelectedEndpointChangedEvent(_) => {
            ClientMessage::Ignored
        }
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

pub fn dominant_speaker(endpoint: &str, previous: &[&str]) -> String {
    M::DominantSpeakerEndpointChangeEvent(DominantSpeakerChange {
        dominant_speaker_endpoint: endpoint.to_owned(),
        previous_speakers: previous.iter().map(|s| (*s).to_owned()).collect(),
        silence: false,
    })
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
                default_max_height: Some(180),
                constraints: Some(vec![("ab".into(), 720)]),
                on_stage: Some(vec!["ab".into()]),
                selected: None,
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
        assert_eq!(u.constraints, Some(vec![("ab-v0".into(), 0)]));
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
        let v: Value = serde_json::from_str(&forwarded_sources(&["ab-v0"])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"colibriClass":"ForwardedSources","forwardedSources":["ab-v0"]})
        );
    }
}
