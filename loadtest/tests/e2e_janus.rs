//! `loadtest --sfu janus` for real: Debian's Janus (VideoRoom plugin) started by the loadtest on
//! a temporary loopback configuration, three synthetic participants publishing Opus + VP8
//! simulcast and each subscribing to the two others (one multistream subscriber PeerConnection),
//! a 4 s window.

use std::time::Duration;

use loadtest::deployment::Target;
use loadtest::janus::{JanusOptions, JanusServer};
use loadtest::receiver::Kind;
use loadtest::scenario::{self, ScenarioConfig};

#[test]
fn e2e_janus_three_participants_publish_and_receive_everyone() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "loadtest=info,rtc_dtls=error,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mut janus = JanusServer::start(&JanusOptions::default())
        .expect("start Janus (scripts/install-deps.sh installs the `janus` package)");
    let target = Target::janus(janus.url.clone(), janus.pid()).expect("target");
    let cfg = ScenarioConfig {
        conferences: 1,
        participants: 3,
        senders: 3,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(2),
        join_timeout: Duration::from_secs(15),
        cooldown: Duration::from_millis(500),
        ..ScenarioConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(scenario::run(&cfg, &target)).expect("scenario");
    println!("{}", report.text());
    let exited = janus.exited();
    let log = janus.log_tail(4000);
    assert!(exited.is_none(), "{exited:?}");

    let s = &report.summary;
    assert_eq!(s.participants, 3);
    assert_eq!(s.connected, 3, "{:?}\n{log}", s.failures);
    assert!(s.failures.is_empty(), "{:?}\n{log}", s.failures);
    let endpoints: Vec<String> = report
        .participants
        .iter()
        .map(|p| p.endpoint.clone())
        .collect();
    for p in &report.participants {
        let t = &p.timings;
        for (what, v) in [
            ("joined the room", t.muc_joined_ms),
            ("Janus's answer", t.session_initiate_ms),
            ("ICE connected", t.ice_connected_ms),
            ("DTLS connected", t.dtls_connected_ms),
            ("first media", t.first_media_ms),
            ("everyone's media", t.all_media_ms),
        ] {
            assert!(v.is_some(), "{}: no {what}", p.endpoint);
        }
        assert!(p.srtp_profile.is_some());
        assert_eq!(p.sessions, 2, "publisher and subscriber PeerConnections");
        assert!(
            p.missing.is_empty(),
            "{}: missing {:?}",
            p.endpoint,
            p.missing
        );
        assert!(p.window_s >= 3.5, "window {}", p.window_s);
        assert!(
            t.join_ms.is_some_and(|ms| ms > 0.0 && ms < 15_000.0),
            "{t:?}"
        );
        // Audio and video from both others, decrypted (SRTP authenticated, VP8 payload
        // descriptors and keyframe sizes parsed), < 2 % loss on loopback.
        let mut heights = Vec::new();
        for other in endpoints.iter().filter(|e| **e != p.endpoint) {
            for kind in [Kind::Audio, Kind::Video] {
                let tracks: Vec<_> = p
                    .tracks
                    .iter()
                    .filter(|t| t.owner == *other && t.kind == kind && t.packets > 0)
                    .collect();
                assert_eq!(
                    tracks.len(),
                    1,
                    "{} ← {other} {kind:?}: {tracks:?}",
                    p.endpoint
                );
                let t = tracks[0];
                assert!(
                    t.loss_pct < 2.0,
                    "{} ← {other} {kind:?}: {:.2} % loss ({} of {})",
                    p.endpoint,
                    t.loss_pct,
                    t.lost,
                    t.expected
                );
                match kind {
                    Kind::Audio => assert!(t.pps >= 40.0, "{t:?}"),
                    Kind::Video => {
                        assert!(t.pps >= 10.0, "{t:?}");
                        assert!(t.keyframes >= 1 && t.fps >= 15.0, "{t:?}");
                        heights.push(t.height.expect("a keyframe gives the height"));
                    }
                }
            }
        }
        // The receive pattern of the bridge runs: the lowest other endpoint id on stage at 720p,
        // the other at 180p (Janus's simulcast substreams 2 and 0).
        heights.sort_unstable();
        assert_eq!(heights, vec![180, 720], "{}", p.endpoint);
        // Every sender sent audio and all three encodings (Janus has no sender constraints), and
        // Janus's RTCP reached us decrypted: sender reports on the subscriber PeerConnection,
        // transport-cc feedback on the publisher one.
        assert!(p.sent_pps > 250.0, "sent {:.0} pps", p.sent_pps);
        assert_eq!(p.sent_layers, 3);
        assert!(p.rtcp.sender_reports > 0, "{:?}", p.rtcp);
        assert!(p.rtcp.transport_cc > 0, "{:?}", p.rtcp);
        assert_eq!(p.transport_drops.srtp_auth, 0);
        assert_eq!(p.receive_drops.malformed, 0);
        assert_eq!(p.receive_drops.unknown_ssrc, 0);
    }
    assert!(report.succeeded());

    // Janus's process was sampled the same way as our bridge's.
    let c = &s.costs;
    assert_eq!(c.sfu, "janus");
    assert!(c.sfu_cpu_cores > 0.0 && c.sfu_rss_mib > 1.0, "{c:?}");
    assert!(
        c.sfu_us_per_forwarded_packet > 0.0 && c.sfu_us_per_packet_in_out > 0.0,
        "{c:?}"
    );
    assert!(report.server.processes.contains_key("janus"));
    drop(janus);
}
