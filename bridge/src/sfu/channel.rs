//! The bridge-channel messages as the core sees them (brief §3.2): what a client's message means for
//! the core, and the messages the core sends. Decoding and encoding of the JSON is kept in this one
//! module so the wire types (`signaling::bridge_channel`) can be swapped in without touching the
//! conference logic.

use serde_json::{Map, Value, json};
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

/// What a client sent.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    ReceiverVideoConstraints(ConstraintsUpdate),
    LastN(i32),
    /// Relay to `to` ("" = everyone else); `body` is the whole message, `from` still unset.
    EndpointMessage {
        to: String,
        body: Map<String, Value>,
    },
    /// Relay to the others; `body` is the whole message.
    EndpointStats(Map<String, Value>),
    SourceVideoType {
        source: String,
        video_type: VideoType,
    },
    /// Deprecated per-endpoint form (applies to the endpoint's video sources).
    VideoType(VideoType),
    /// Messages the bridge accepts and ignores (ClientHello, ReceiverAudioSubscription…).
    Ignored(String),
}

/// Why a text message was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelError {
    Malformed,
    UnknownClass,
}

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| {
        a.iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    })
}

fn int(v: &Value) -> Option<i32> {
    v.as_i64()
        .map(|n| n.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
}

fn max_height(v: &Value) -> i32 {
    v.get("maxHeight").and_then(int).unwrap_or(-1)
}

/// Decodes a client message.
pub fn decode(text: &str) -> Result<ClientMessage, ChannelError> {
    let v: Value = serde_json::from_str(text).map_err(|_| ChannelError::Malformed)?;
    let Value::Object(obj) = v else {
        return Err(ChannelError::Malformed);
    };
    let class = obj
        .get("colibriClass")
        .and_then(Value::as_str)
        .ok_or(ChannelError::Malformed)?;
    Ok(match class {
        "ReceiverVideoConstraints" => {
            let mut u = ConstraintsUpdate {
                last_n: obj.get("lastN").and_then(int),
                default_max_height: obj.get("defaultConstraints").map(max_height),
                ..Default::default()
            };
            if let Some(Value::Object(c)) = obj.get("constraints") {
                u.constraints = Some(c.iter().map(|(k, v)| (k.clone(), max_height(v))).collect());
            }
            // Modern source names win over the 2021 endpoint-id form when both are present.
            u.on_stage = obj
                .get("onStageSources")
                .or(obj.get("onStageEndpoints"))
                .and_then(strings);
            u.selected = obj
                .get("selectedSources")
                .or(obj.get("selectedEndpoints"))
                .and_then(strings);
            ClientMessage::ReceiverVideoConstraints(u)
        }
        "LastNChangedEvent" => ClientMessage::LastN(
            obj.get("lastN")
                .and_then(int)
                .ok_or(ChannelError::Malformed)?,
        ),
        "EndpointMessage" => {
            let to = obj
                .get("to")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            ClientMessage::EndpointMessage { to, body: obj }
        }
        "EndpointStats" => ClientMessage::EndpointStats(obj),
        "SourceVideoTypeMessage" => {
            let source = obj
                .get("sourceName")
                .and_then(Value::as_str)
                .ok_or(ChannelError::Malformed)?
                .to_owned();
            let video_type = obj
                .get("videoType")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or(ChannelError::Malformed)?;
            ClientMessage::SourceVideoType { source, video_type }
        }
        "VideoTypeMessage" => ClientMessage::VideoType(
            obj.get("videoType")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
                .ok_or(ChannelError::Malformed)?,
        ),
        "ClientHello"
        | "ReceiverAudioSubscription"
        | "SelectedEndpointsChangedEvent"
        | "ReceiverVideoConstraint"
        | "PinnedEndpointsChangedEvent"
        | "SelectedEndpointChangedEvent" => ClientMessage::Ignored(class.to_owned()),
        _ => return Err(ChannelError::UnknownClass),
    })
}

/// Sets `from` and serialises a relayed EndpointMessage / EndpointStats.
pub fn relay(body: &Map<String, Value>, from: &str, out: &mut String) {
    let mut b = body.clone();
    b.insert("from".into(), Value::String(from.to_owned()));
    *out = Value::Object(b).to_string();
}

pub fn forwarded_sources(names: &[&str]) -> String {
    json!({"colibriClass": "ForwardedSources", "forwardedSources": names}).to_string()
}

/// The 2021 dialect: the endpoints whose video is forwarded.
pub fn last_n_endpoints(ids: &[&str]) -> String {
    json!({"colibriClass": "LastNEndpointsChangeEvent", "lastNEndpoints": ids}).to_string()
}

pub fn dominant_speaker(endpoint: &str, previous: &[&str]) -> String {
    json!({
        "colibriClass": "DominantSpeakerEndpointChangeEvent",
        "dominantSpeakerEndpoint": endpoint,
        "previousSpeakers": previous,
        "silence": false,
    })
    .to_string()
}

pub fn connectivity(endpoint: &str, active: bool) -> String {
    json!({
        "colibriClass": "EndpointConnectivityStatusChangeEvent",
        "endpoint": endpoint,
        "active": if active { "true" } else { "false" },
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            decode(r#"{"colibriClass":"LastNChangedEvent"}"#),
            Err(ChannelError::Malformed)
        );
    }

    #[test]
    fn relay_sets_from() {
        let ClientMessage::EndpointMessage { to, body } = decode(
            r#"{"colibriClass":"EndpointMessage","to":"","from":"spoofed","msgPayload":{"a":1}}"#,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(to, "");
        let mut s = String::new();
        relay(&body, "real", &mut s);
        let v: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["from"], "real");
        assert_eq!(v["msgPayload"]["a"], 1);
    }
}
