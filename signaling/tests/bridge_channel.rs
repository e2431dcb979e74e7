//! Bridge-channel JSON: every class in both directions, the exact text the 2021 reference client reads,
//! the messages that client actually sends (written from its BridgeChannel / ReceiveVideoController
//! code), and malformed input.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use signaling::ParseError;
use signaling::bridge_channel::*;
use signaling::sources::VideoType;

use BridgeChannelMessage as M;

/// parse → to_json → parse must give the same value; returns the parsed message.
fn roundtrip(text: &str) -> BridgeChannelMessage {
    let m = BridgeChannelMessage::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let again = BridgeChannelMessage::parse(&m.to_json())
        .unwrap_or_else(|e| panic!("reparse of {}: {e}", m.to_json()));
    assert_eq!(m, again, "round trip changed {text}");
    m
}

/// Serialising `m` gives exactly `text`, and `text` parses back to `m`.
fn exact(m: BridgeChannelMessage, text: &str) {
    assert_eq!(m.to_json(), text);
    assert_eq!(BridgeChannelMessage::parse(text).unwrap(), m);
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn json_err(text: &str) -> String {
    match BridgeChannelMessage::parse(text) {
        Err(ParseError::Json(reason)) => reason,
        other => panic!("expected a JSON error for {text}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------
// What the 2021 client sends (lib-jitsi-meet 7d34d537)

#[test]
fn client_2021_stage_view_constraints_use_endpoint_ids() {
    // ReceiveVideoController in stage view: Object.assign({colibriClass}, constraints) with the endpoint
    // on stage, an empty selectedEndpoints and a per-endpoint maxHeight.
    let m = roundtrip(
        r#"{"colibriClass":"ReceiverVideoConstraints","constraints":{"ef56ab78":{"maxHeight":2160}},"defaultConstraints":{"maxHeight":180},"lastN":-1,"onStageEndpoints":["ef56ab78"],"selectedEndpoints":[]}"#,
    );
    let M::ReceiverVideoConstraints(c) = m else {
        panic!("wrong class {m:?}")
    };
    assert_eq!(c.last_n, Some(-1));
    assert_eq!(c.on_stage_endpoints, Some(strings(&["ef56ab78"])));
    // Present but empty is not the same as absent: it clears the selection.
    assert_eq!(c.selected_endpoints, Some(vec![]));
    assert_eq!(c.selected_sources, None);
    assert_eq!(c.on_stage_sources, None);
    assert_eq!(
        c.default_constraints,
        Some(VideoConstraints::max_height(180))
    );
    assert_eq!(
        c.constraints,
        Some(BTreeMap::from([(
            "ef56ab78".to_string(),
            VideoConstraints::max_height(2160)
        )]))
    );
    assert_eq!(c.assumed_bandwidth_bps, None);
}

#[test]
fn client_2021_initial_constraints_before_selection() {
    // Sent as soon as the channel opens: nothing selected yet.
    let m = roundtrip(
        r#"{"colibriClass":"ReceiverVideoConstraints","constraints":{},"defaultConstraints":{"maxHeight":180},"lastN":-1,"onStageEndpoints":[],"selectedEndpoints":[]}"#,
    );
    let M::ReceiverVideoConstraints(c) = m else {
        panic!()
    };
    assert_eq!(c.constraints, Some(BTreeMap::new()));
    assert_eq!(c.on_stage_endpoints, Some(vec![]));
}

#[test]
fn client_2021_legacy_messages() {
    assert_eq!(
        roundtrip(
            r#"{"colibriClass":"SelectedEndpointsChangedEvent","selectedEndpoints":["ef56ab78","01234567"]}"#
        ),
        M::SelectedEndpointsChangedEvent(SelectedEndpointsChanged {
            selected_endpoints: strings(&["ef56ab78", "01234567"])
        })
    );
    assert_eq!(
        roundtrip(r#"{"colibriClass":"ReceiverVideoConstraint","maxFrameHeight":720}"#),
        M::ReceiverVideoConstraint(ReceiverVideoConstraint {
            max_frame_height: 720
        })
    );
    assert_eq!(
        roundtrip(r#"{"colibriClass":"LastNChangedEvent","lastN":5}"#),
        M::LastNChangedEvent(LastNChanged { last_n: 5 })
    );
    assert_eq!(
        roundtrip(r#"{"colibriClass":"VideoTypeMessage","videoType":"desktop"}"#),
        M::VideoTypeMessage(EndpointVideoType {
            video_type: VideoType::Desktop,
            endpoint_id: None
        })
    );
    assert_eq!(
        roundtrip(
            r#"{"colibriClass":"SourceVideoTypeMessage","sourceName":"ab12cd34-v0","videoType":"none"}"#
        ),
        M::SourceVideoTypeMessage(SourceVideoType {
            source_name: "ab12cd34-v0".into(),
            video_type: VideoType::None,
            endpoint_id: None
        })
    );
    assert_eq!(
        roundtrip(r#"{"colibriClass":"SelectedEndpointChangedEvent","selectedEndpoint":null}"#),
        M::SelectedEndpointChangedEvent(SelectedEndpointChanged {
            selected_endpoint: None
        })
    );
}

#[test]
fn client_2021_endpoint_message_and_stats() {
    // BridgeChannel.sendMessage: {colibriClass, msgPayload, to}.
    let m = roundtrip(
        r#"{"colibriClass":"EndpointMessage","msgPayload":{"type":"e2e-ping-request","id":1},"to":""}"#,
    );
    let M::EndpointMessage(e) = &m else { panic!() };
    assert!(e.is_broadcast());
    assert_eq!(e.from, None);
    assert_eq!(
        e.msg_payload,
        Some(json!({"type": "e2e-ping-request", "id": 1}))
    );
    assert!(e.extra.is_empty());

    // ConnectionQuality._broadcastLocalStats: the stats object merged into the message.
    let m = roundtrip(
        r#"{"colibriClass":"EndpointStats","bitrate":{"upload":812,"download":1540,"audio":{"upload":40,"download":80},"video":{"upload":772,"download":1460}},"packetLoss":{"total":0.5,"upload":0,"download":1},"connectionQuality":100,"jvbRTT":12,"serverRegion":"eu-west","maxEnabledResolution":720}"#,
    );
    let M::EndpointStats(s) = m else { panic!() };
    assert_eq!(s.from, None);
    assert_eq!(s.fields.len(), 6);
    assert_eq!(s.fields["connectionQuality"], json!(100));
    assert_eq!(s.fields["bitrate"]["video"]["download"], json!(1460));
    assert!(!s.fields.contains_key("colibriClass"));
}

// ---------------------------------------------------------------------------------------------------------
// Exact text of what we send to the 2021 client (it reads these fields by name)

#[test]
fn exact_connectivity_status_with_string_boolean() {
    exact(
        M::EndpointConnectivityStatusChangeEvent(EndpointConnectivityStatus {
            endpoint: "ab12cd34".into(),
            active: true,
        }),
        r#"{"colibriClass":"EndpointConnectivityStatusChangeEvent","endpoint":"ab12cd34","active":"true"}"#,
    );
    exact(
        M::EndpointConnectivityStatusChangeEvent(EndpointConnectivityStatus {
            endpoint: "ab12cd34".into(),
            active: false,
        }),
        r#"{"colibriClass":"EndpointConnectivityStatusChangeEvent","endpoint":"ab12cd34","active":"false"}"#,
    );
    // A JSON boolean is accepted on input too.
    assert_eq!(
        BridgeChannelMessage::parse(
            r#"{"colibriClass":"EndpointConnectivityStatusChangeEvent","endpoint":"x","active":true}"#
        )
        .unwrap(),
        M::EndpointConnectivityStatusChangeEvent(EndpointConnectivityStatus {
            endpoint: "x".into(),
            active: true
        })
    );
}

#[test]
fn exact_2021_forwarding_and_sender_constraints() {
    exact(
        M::LastNEndpointsChangeEvent(LastNEndpointsChange {
            last_n_endpoints: strings(&["ab12cd34", "ef56ab78"]),
        }),
        r#"{"colibriClass":"LastNEndpointsChangeEvent","lastNEndpoints":["ab12cd34","ef56ab78"]}"#,
    );
    exact(
        M::SenderVideoConstraints(SenderVideoConstraints::new(360)),
        r#"{"colibriClass":"SenderVideoConstraints","videoConstraints":{"idealHeight":360}}"#,
    );
}

#[test]
fn exact_dominant_speaker() {
    exact(
        M::DominantSpeakerEndpointChangeEvent(DominantSpeakerChange {
            dominant_speaker_endpoint: "ab12cd34".into(),
            previous_speakers: strings(&["ef56ab78"]),
            silence: false,
        }),
        r#"{"colibriClass":"DominantSpeakerEndpointChangeEvent","dominantSpeakerEndpoint":"ab12cd34","previousSpeakers":["ef56ab78"],"silence":false}"#,
    );
    // Older bridges sent neither previousSpeakers nor silence.
    assert_eq!(
        roundtrip(
            r#"{"colibriClass":"DominantSpeakerEndpointChangeEvent","dominantSpeakerEndpoint":"ab12cd34"}"#
        ),
        M::DominantSpeakerEndpointChangeEvent(DominantSpeakerChange {
            dominant_speaker_endpoint: "ab12cd34".into(),
            previous_speakers: vec![],
            silence: false
        })
    );
}

#[test]
fn exact_relayed_endpoint_message_and_stats_carry_from() {
    let mut extra = Map::new();
    extra.insert("x-trace".into(), json!("k1"));
    exact(
        M::EndpointMessage(EndpointMessage {
            to: "".into(),
            from: Some("ab12cd34".into()),
            msg_payload: Some(json!({"id": 1})),
            extra,
        }),
        r#"{"colibriClass":"EndpointMessage","to":"","from":"ab12cd34","msgPayload":{"id":1},"x-trace":"k1"}"#,
    );
    let mut fields = Map::new();
    fields.insert("connectionQuality".into(), json!(87.5));
    exact(
        M::EndpointStats(EndpointStats {
            from: Some("ab12cd34".into()),
            fields,
        }),
        r#"{"colibriClass":"EndpointStats","from":"ab12cd34","connectionQuality":87.5}"#,
    );
}

#[test]
fn relaying_preserves_unmodelled_endpoint_message_fields() {
    // The bridge parses, sets `from`, and writes again: the extra field survives.
    let M::EndpointMessage(mut e) = BridgeChannelMessage::parse(
        r#"{"colibriClass":"EndpointMessage","to":"ef56ab78","msgPayload":{"type":"reaction","value":"+1"},"priority":"high"}"#,
    )
    .unwrap() else {
        panic!()
    };
    assert!(!e.is_broadcast());
    e.from = Some("ab12cd34".into());
    let out: Value = serde_json::from_str(&M::EndpointMessage(e).to_json()).unwrap();
    assert_eq!(
        out,
        json!({"colibriClass":"EndpointMessage","to":"ef56ab78","from":"ab12cd34",
               "msgPayload":{"type":"reaction","value":"+1"},"priority":"high"})
    );
}

#[test]
fn exact_current_bridge_to_client_messages() {
    exact(
        M::ForwardedSources(ForwardedSources {
            forwarded_sources: strings(&["ab12cd34-v0", "ef56ab78-v0"]),
        }),
        r#"{"colibriClass":"ForwardedSources","forwardedSources":["ab12cd34-v0","ef56ab78-v0"]}"#,
    );
    exact(
        M::SenderSourceConstraints(SenderSourceConstraints {
            source_name: "ef56ab78-v0".into(),
            max_height: 360,
        }),
        r#"{"colibriClass":"SenderSourceConstraints","sourceName":"ef56ab78-v0","maxHeight":360}"#,
    );
    exact(
        M::ServerHello(ServerHello { version: None }),
        r#"{"colibriClass":"ServerHello"}"#,
    );
    exact(
        M::ServerHello(ServerHello {
            version: Some("2.3.1".into()),
        }),
        r#"{"colibriClass":"ServerHello","version":"2.3.1"}"#,
    );
    exact(
        M::ConnectionStats(ConnectionStats {
            estimated_downlink_bandwidth: 2_500_000,
        }),
        r#"{"colibriClass":"ConnectionStats","estimatedDownlinkBandwidth":2500000}"#,
    );
    exact(
        M::SyntheticSourceSendingChangeEvent(SyntheticSourceSendingChange {
            source_name: "55555555-a0.hi".into(),
            sending: true,
            timestamp: 4_294_967_295,
        }),
        r#"{"colibriClass":"SyntheticSourceSendingChangeEvent","sourceName":"55555555-a0.hi","sending":true,"timestamp":4294967295}"#,
    );
}

#[test]
fn exact_source_maps() {
    exact(
        M::VideoSourcesMap(VideoSourcesMap {
            mapped_sources: vec![
                VideoSourceMapping {
                    source: "ab12cd34-v0".into(),
                    owner: Some("ab12cd34".into()),
                    ssrc: 1_757_014_965,
                    rtx: 2_011_234_567,
                    video_type: VideoType::Camera,
                    mid: None,
                },
                VideoSourceMapping {
                    source: "ef56ab78-v1".into(),
                    owner: None,
                    ssrc: 11,
                    rtx: 12,
                    video_type: VideoType::Desktop,
                    mid: Some("2".into()),
                },
            ],
        }),
        r#"{"colibriClass":"VideoSourcesMap","mappedSources":[{"source":"ab12cd34-v0","owner":"ab12cd34","ssrc":1757014965,"rtx":2011234567,"videoType":"CAMERA"},{"source":"ef56ab78-v1","owner":null,"ssrc":11,"rtx":12,"videoType":"DESKTOP","mid":"2"}]}"#,
    );
    exact(
        M::AudioSourcesMap(AudioSourcesMap {
            mapped_sources: vec![AudioSourceMapping {
                source: "ab12cd34-a0".into(),
                owner: Some("ab12cd34".into()),
                ssrc: 22,
                mid: None,
            }],
        }),
        r#"{"colibriClass":"AudioSourcesMap","mappedSources":[{"source":"ab12cd34-a0","owner":"ab12cd34","ssrc":22}]}"#,
    );
}

// ---------------------------------------------------------------------------------------------------------
// Current-client forms and the rest

#[test]
fn current_client_source_constraints_roundtrip() {
    let m = roundtrip(
        r#"{"colibriClass":"ReceiverVideoConstraints","lastN":6,"selectedSources":["A-v0","B-v0"],"onStageSources":["A-v1"],"defaultConstraints":{"maxHeight":180},"constraints":{"A-v1":{"maxHeight":720,"maxFrameRate":15.0},"C-v0":{"maxHeight":0}},"assumedBandwidthBps":1500000}"#,
    );
    let M::ReceiverVideoConstraints(c) = m else {
        panic!()
    };
    assert_eq!(c.last_n, Some(6));
    assert_eq!(c.selected_sources, Some(strings(&["A-v0", "B-v0"])));
    assert_eq!(c.on_stage_sources, Some(strings(&["A-v1"])));
    assert_eq!(c.selected_endpoints, None);
    let constraints = c.constraints.unwrap();
    assert_eq!(constraints["A-v1"].max_frame_rate, Some(15.0));
    assert_eq!(constraints["C-v0"].max_height, 0);
    assert_eq!(c.assumed_bandwidth_bps, Some(1_500_000));
}

#[test]
fn partial_update_keeps_absent_fields_absent() {
    let m = roundtrip(r#"{"colibriClass":"ReceiverVideoConstraints","lastN":2}"#);
    assert_eq!(
        m,
        M::ReceiverVideoConstraints(ReceiverVideoConstraints {
            last_n: Some(2),
            ..Default::default()
        })
    );
    // And nothing absent is written back.
    assert_eq!(
        m.to_json(),
        r#"{"colibriClass":"ReceiverVideoConstraints","lastN":2}"#
    );
}

#[test]
fn audio_subscription_current_and_legacy_forms() {
    assert_eq!(
        roundtrip(
            r#"{"colibriClass":"ReceiverAudioSubscription","all":true,"include":["t-a0.hi"],"exclude":["ab12cd34-a0"]}"#
        ),
        M::ReceiverAudioSubscription(ReceiverAudioSubscription {
            all: true,
            include: strings(&["t-a0.hi"]),
            exclude: strings(&["ab12cd34-a0"])
        })
    );
    let cases = [
        (
            r#"{"colibriClass":"ReceiverAudioSubscription","mode":"All"}"#,
            true,
            vec![],
            vec![],
        ),
        (
            r#"{"colibriClass":"ReceiverAudioSubscription","mode":"None"}"#,
            false,
            vec![],
            vec![],
        ),
        (
            r#"{"colibriClass":"ReceiverAudioSubscription","mode":"Include","list":["a-a0"]}"#,
            false,
            strings(&["a-a0"]),
            vec![],
        ),
        (
            r#"{"colibriClass":"ReceiverAudioSubscription","mode":"Exclude","list":["a-a0"]}"#,
            true,
            vec![],
            strings(&["a-a0"]),
        ),
    ];
    for (text, all, include, exclude) in cases {
        assert_eq!(
            roundtrip(text),
            M::ReceiverAudioSubscription(ReceiverAudioSubscription {
                all,
                include,
                exclude
            }),
            "{text}"
        );
    }
    assert!(
        json_err(r#"{"colibriClass":"ReceiverAudioSubscription","mode":"Some"}"#)
            .contains("unknown mode 'Some'")
    );
}

#[test]
fn hello_and_relay_messages_roundtrip() {
    exact(M::ClientHello, r#"{"colibriClass":"ClientHello"}"#);
    exact(
        M::AddReceiver(AddReceiver {
            bridge_id: "jvb2".into(),
            source_name: Some("ab12cd34-v0".into()),
            endpoint_id: None,
            video_constraints: VideoConstraints {
                max_height: 360,
                max_frame_rate: Some(30.0),
            },
        }),
        r#"{"colibriClass":"AddReceiver","bridgeId":"jvb2","sourceName":"ab12cd34-v0","videoConstraints":{"maxHeight":360,"maxFrameRate":30.0}}"#,
    );
    exact(
        M::RemoveReceiver(RemoveReceiver {
            bridge_id: "jvb2".into(),
            endpoint_id: "ab12cd34".into(),
        }),
        r#"{"colibriClass":"RemoveReceiver","bridgeId":"jvb2","endpointId":"ab12cd34"}"#,
    );
    // Relayed source video type carries the endpoint.
    exact(
        M::SourceVideoTypeMessage(SourceVideoType {
            source_name: "ab12cd34-v1".into(),
            video_type: VideoType::DesktopHighFps,
            endpoint_id: Some("ab12cd34".into()),
        }),
        r#"{"colibriClass":"SourceVideoTypeMessage","sourceName":"ab12cd34-v1","videoType":"desktop_high_fps","endpointId":"ab12cd34"}"#,
    );
}

#[test]
fn unknown_class_is_kept_with_all_fields() {
    let text = r#"{"colibriClass":"PinnedEndpointsChangedEvent","pinnedEndpoints":["ab12cd34"],"n":{"deep":[1,2,{"x":null}]}}"#;
    let m = roundtrip(text);
    let M::Unknown(u) = &m else { panic!("{m:?}") };
    assert_eq!(u.class, "PinnedEndpointsChangedEvent");
    assert_eq!(m.class(), "PinnedEndpointsChangedEvent");
    assert_eq!(u.fields["pinnedEndpoints"], json!(["ab12cd34"]));
    assert!(!u.fields.contains_key("colibriClass"));
    // Written back with the class first and the same content.
    assert!(
        m.to_json()
            .starts_with(r#"{"colibriClass":"PinnedEndpointsChangedEvent","#)
    );
    assert_eq!(
        serde_json::from_str::<Value>(&m.to_json()).unwrap(),
        serde_json::from_str::<Value>(text).unwrap()
    );
}

#[test]
fn unknown_fields_of_known_classes_are_ignored() {
    assert_eq!(
        BridgeChannelMessage::parse(
            r#"{"colibriClass":"ForwardedSources","forwardedSources":[],"futureField":{"a":1}}"#
        )
        .unwrap(),
        M::ForwardedSources(ForwardedSources {
            forwarded_sources: vec![]
        })
    );
}

// ---------------------------------------------------------------------------------------------------------
// Malformed input: typed errors, never a panic

#[test]
fn malformed_json_is_a_json_error() {
    for bad in [
        "",
        "{",
        "not json",
        r#"{"colibriClass":"LastNChangedEvent","lastN":3"#,
        r#"{"colibriClass":"LastNChangedEvent","lastN":3} trailing"#,
        "[1,2]",
        "null",
        r#""ForwardedSources""#,
        "42",
    ] {
        json_err(bad);
    }
}

#[test]
fn missing_or_mistyped_class_is_refused() {
    assert!(json_err(r#"{"lastN":3}"#).contains("no colibriClass"));
    assert!(json_err(r#"{"colibriClass":7}"#).contains("invalid type"));
    assert!(json_err(r#"{"colibriClass":null}"#).contains("no colibriClass"));
    assert!(
        json_err(r#"{"colibriClass":"LastNChangedEvent","colibriClass":"ClientHello","lastN":1}"#)
            .contains("duplicate field")
    );
}

#[test]
fn wrong_field_types_name_class_and_field() {
    let e = json_err(r#"{"colibriClass":"LastNChangedEvent","lastN":"5"}"#);
    assert!(e.starts_with("LastNChangedEvent:"), "{e}");
    assert!(e.contains("invalid type"), "{e}");

    let e = json_err(r#"{"colibriClass":"ReceiverVideoConstraints","selectedSources":"A-v0"}"#);
    assert!(e.starts_with("ReceiverVideoConstraints:"), "{e}");

    let e = json_err(
        r#"{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxFrameRate":30}}"#,
    );
    assert!(e.contains("missing field `maxHeight`"), "{e}");

    let e = json_err(r#"{"colibriClass":"SenderSourceConstraints","sourceName":"a-v0"}"#);
    assert!(e.contains("missing field `maxHeight`"), "{e}");

    let e = json_err(r#"{"colibriClass":"EndpointMessage","msgPayload":{}}"#);
    assert!(e.contains("missing field `to`"), "{e}");

    let e = json_err(
        r#"{"colibriClass":"EndpointConnectivityStatusChangeEvent","endpoint":"x","active":"yes"}"#,
    );
    assert!(e.contains("\"true\" or \"false\""), "{e}");

    let e = json_err(
        r#"{"colibriClass":"SourceVideoTypeMessage","sourceName":"x-v0","videoType":"screen"}"#,
    );
    assert!(e.contains("expected one of: camera"), "{e}");

    // SSRCs and RTP timestamps are 32-bit.
    let e = json_err(
        r#"{"colibriClass":"SyntheticSourceSendingChangeEvent","sourceName":"s","sending":false,"timestamp":4294967296}"#,
    );
    assert!(e.contains("invalid value"), "{e}");
    json_err(
        r#"{"colibriClass":"AudioSourcesMap","mappedSources":[{"source":"a","owner":null,"ssrc":-1}]}"#,
    );

    let e = json_err(r#"{"colibriClass":"ReceiverVideoConstraints","lastN":1,"lastN":2}"#);
    assert!(e.contains("duplicate field `lastN`"), "{e}");
}

#[test]
fn out_of_range_constraints_are_invalid() {
    for (text, needle) in [
        (
            r#"{"colibriClass":"ReceiverVideoConstraints","lastN":-7}"#,
            "lastN -7",
        ),
        (
            r#"{"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":-5}}"#,
            "maxHeight -5",
        ),
        (
            r#"{"colibriClass":"ReceiverVideoConstraints","constraints":{"a-v0":{"maxHeight":180,"maxFrameRate":-3}}}"#,
            "maxFrameRate -3",
        ),
        (
            r#"{"colibriClass":"AddReceiver","bridgeId":"b","videoConstraints":{"maxHeight":-2}}"#,
            "maxHeight -2",
        ),
    ] {
        match BridgeChannelMessage::parse(text) {
            Err(ParseError::Invalid { reason, .. }) => assert!(reason.contains(needle), "{reason}"),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn oversized_message_is_refused_before_parsing() {
    let payload = "x".repeat(MAX_MESSAGE_BYTES);
    let text = format!(r#"{{"colibriClass":"EndpointMessage","to":"","msgPayload":"{payload}"}}"#);
    assert_eq!(
        BridgeChannelMessage::parse(&text),
        Err(ParseError::Oversized {
            what: "bridge-channel message",
            size: text.len(),
            limit: MAX_MESSAGE_BYTES
        })
    );
    // Just under the limit is fine.
    let payload = "x".repeat(MAX_MESSAGE_BYTES - 100);
    let text = format!(r#"{{"colibriClass":"EndpointMessage","to":"","msgPayload":"{payload}"}}"#);
    assert!(BridgeChannelMessage::parse(&text).is_ok());
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let depth = 20_000;
    let text = format!(
        r#"{{"colibriClass":"EndpointStats","x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    json_err(&text);
    let text = format!(
        r#"{{"colibriClass":"Whatever","x":{}{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    json_err(&text);
}

#[test]
fn every_prefix_of_every_sample_parses_or_errors_without_panicking() {
    let samples = [
        r#"{"colibriClass":"ReceiverVideoConstraints","constraints":{"ef56ab78":{"maxHeight":2160}},"defaultConstraints":{"maxHeight":180},"lastN":-1,"onStageEndpoints":["ef56ab78"],"selectedEndpoints":[]}"#,
        r#"{"colibriClass":"EndpointMessage","to":"","from":"ab12cd34","msgPayload":{"id":1},"x-trace":"k1"}"#,
        r#"{"colibriClass":"VideoSourcesMap","mappedSources":[{"source":"ef56ab78-v1","owner":null,"ssrc":11,"rtx":12,"videoType":"DESKTOP","mid":"2"}]}"#,
        r#"{"colibriClass":"EndpointConnectivityStatusChangeEvent","endpoint":"ab12cd34","active":"true"}"#,
        r#"{"colibriClass":"ReceiverAudioSubscription","mode":"Include","list":["a-a0"]}"#,
        r#"{"colibriClass":"Pinned\u00e9","x":[1,{"y":"\ud83d\ude00"}]}"#,
    ];
    for s in samples {
        for end in 0..s.len() {
            if s.is_char_boundary(end) {
                let prefix = &s[..end];
                assert!(BridgeChannelMessage::parse(prefix).is_err(), "{prefix}");
            }
        }
        roundtrip(s);
    }
}

/// Relayed stats must reach the other endpoints bit-for-bit: numbers that need all 17 significant
/// digits survive parse → serialise → parse (found by the bridge_channel fuzz target).
#[test]
fn relayed_floats_survive_exactly() {
    let text = r#"{"colibriClass":"EndpointStats","from":"ab12cd34","jitter":1.2347777777777777e+106,"rtt":0.1}"#;
    let m = BridgeChannelMessage::parse(text).unwrap();
    let again = BridgeChannelMessage::parse(&m.to_json()).unwrap();
    assert_eq!(m, again);
    assert!(
        m.to_json().contains("1.2347777777777777e106")
            || m.to_json().contains("1.2347777777777777e+106")
    );
}
