//! Small scenarios against a real local deployment: Prosody (testkit), our bridge and our focus
//! binaries (built here), loadtest participants on loopback: three 2021 clients for a 5 s window,
//! and four current clients (AV1 SVC, stage and tile view; with and without SSRC rewriting).

use std::path::PathBuf;
use std::time::Duration;

use loadtest::deployment::{LocalDeployment, LocalOptions};
use loadtest::dialect::Client;
use loadtest::receiver::Kind;
use loadtest::scenario::{self, ScenarioConfig};

/// The workspace's `bridge` and `focus` binaries, built into this test's profile directory.
fn binaries() -> PathBuf {
    testkit::build_workspace_binaries(
        std::path::Path::new(env!("CARGO_BIN_EXE_loadtest")),
        &[("bridge", "bridge"), ("focus", "focus")],
    )
}

#[test]
fn e2e_three_participants_join_connect_and_receive_everyone() {
    let cfg = ScenarioConfig {
        conferences: 1,
        participants: 3,
        senders: 3,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        join_timeout: Duration::from_secs(20),
        cooldown: Duration::from_secs(1),
        ..ScenarioConfig::default()
    };
    let (report, logs) = run_local(&cfg, &[]);

    let s = &report.summary;
    assert_eq!(s.participants, 3);
    assert_eq!(s.connected, 3, "{:?}\n{logs}", s.failures);
    assert!(s.failures.is_empty(), "{:?}\n{logs}", s.failures);
    let endpoints: Vec<String> = report
        .participants
        .iter()
        .map(|p| p.endpoint.clone())
        .collect();
    for p in &report.participants {
        let t = &p.timings;
        for (what, v) in [
            ("conference ready", t.conference_ready_ms),
            ("MUC joined", t.muc_joined_ms),
            ("session-initiate", t.session_initiate_ms),
            ("session-accept acked", t.session_accept_acked_ms),
            ("ICE connected", t.ice_connected_ms),
            ("DTLS connected", t.dtls_connected_ms),
            ("bridge channel open", t.channel_open_ms),
            ("first media", t.first_media_ms),
            ("everyone's media", t.all_media_ms),
        ] {
            assert!(v.is_some(), "{}: no {what}", p.endpoint);
        }
        assert!(p.srtp_profile.is_some());
        assert!(
            p.missing.is_empty(),
            "{}: missing {:?}",
            p.endpoint,
            p.missing
        );
        assert!(p.window_s >= 4.5, "window {}", p.window_s);
        assert!(
            p.timings
                .join_ms
                .is_some_and(|ms| ms > 0.0 && ms < 20_000.0),
            "{:?}",
            p.timings
        );
        // Audio and video from every other participant, decrypted (SRTP authenticated, VP8 payload
        // descriptors and keyframe sizes parsed), < 2 % loss on loopback.
        for other in endpoints.iter().filter(|e| **e != p.endpoint) {
            for kind in [Kind::Audio, Kind::Video] {
                let tracks: Vec<_> = p
                    .tracks
                    .iter()
                    .filter(|t| t.owner == *other && t.kind == kind && t.packets > 0)
                    .collect();
                assert!(
                    !tracks.is_empty(),
                    "{} got no {kind:?} from {other}",
                    p.endpoint
                );
                for t in tracks {
                    assert!(
                        t.loss_pct < 2.0,
                        "{} ← {other} {kind:?}: {:.2} % loss ({} of {})",
                        p.endpoint,
                        t.loss_pct,
                        t.lost,
                        t.expected
                    );
                    let min_pps = match kind {
                        Kind::Audio => 40.0,
                        Kind::Video => 10.0,
                    };
                    assert!(
                        t.pps >= min_pps,
                        "{} ← {other} {kind:?}: {:.1} pps",
                        p.endpoint,
                        t.pps
                    );
                    if kind == Kind::Video {
                        assert!(t.keyframes >= 1 && t.height.is_some(), "{t:?}");
                        assert!(t.fps >= 15.0, "{t:?}");
                    }
                }
            }
        }
        // The bridge channel works both ways: we sent constraints, the bridge sent us messages.
        assert!(p.channel.sent >= 1);
        assert!(!p.channel.by_class.is_empty(), "{:?}", p.channel);
        // Every sender sent audio (50 pps) and at least its 180p encoding (the bridge switches off
        // the encodings nobody watches), and the bridge's RTCP (sender reports for what it
        // forwards) reached us decrypted.
        assert!(p.sent_pps > 70.0, "sent {:.0} pps", p.sent_pps);
        assert!(p.sent_kbps > 100.0, "sent {:.0} kbps", p.sent_kbps);
        assert!(p.sent_layers >= 1, "{p:?}");
        assert!(p.received_pps > 100.0 && p.received_kbps > 100.0, "{p:?}");
        assert!(p.rtcp.sender_reports > 0, "{:?}", p.rtcp);
        assert_eq!(p.transport_drops.srtp_auth, 0);
        assert_eq!(p.receive_drops.malformed, 0);
    }
    assert!(report.succeeded());
    // Somebody is on somebody's stage at 720p, so one sender keeps all three encodings.
    assert!(
        report.participants.iter().any(|p| p.sent_layers == 3),
        "{:?}",
        report
            .participants
            .iter()
            .map(|p| p.sent_layers)
            .collect::<Vec<_>>()
    );
    // The server side was measured: the bridge's own stats, CPU and memory of the bridge and the
    // focus from /proc, plausible for a 2-core machine and a 3-person call.
    let sv = &report.server;
    let b = sv.bridge.expect("bridge stats sampled");
    assert!((b.endpoints - 3.0).abs() < 0.5, "{b:?}");
    assert!(
        b.packets_sent_pps > 100.0 && b.packets_received_pps > 100.0,
        "{b:?}"
    );
    let max_cpu = 100.0 * f64::from(sv.cpus.max(1)) + 10.0;
    let bridge = sv.processes.get("bridge").expect("bridge process sampled");
    assert!(
        bridge.cpu_pct > 0.0 && bridge.cpu_pct < max_cpu,
        "{bridge:?}"
    );
    assert!(
        bridge.rss_max_mib > 1.0 && bridge.rss_max_mib < 1024.0,
        "{bridge:?}"
    );
    let focus = sv
        .run_processes
        .get("focus")
        .expect("focus process sampled");
    // The focus works during the joins (conference, Jingle, COLIBRI): CPU over the run.
    assert!(
        focus.cpu_seconds > 0.0 && focus.cpu_pct < max_cpu,
        "{focus:?}"
    );
    assert!(
        focus.rss_max_mib > 1.0 && focus.rss_max_mib < 1024.0,
        "{focus:?}"
    );
    assert!(sv.processes.contains_key("focus") && sv.processes.contains_key("loadtest"));
    let c = &s.costs;
    assert!(c.bridge_cpu_cores > 0.0 && c.bridge_rss_mib > 1.0, "{c:?}");
    assert!(
        c.focus_run_cpu_seconds > 0.0 && c.focus_run_rss_max_mib > 1.0,
        "{c:?}"
    );
    assert!(c.bridge_us_per_sent_packet > 0.0);
    // Over time: a point per sampling step, with both processes in it.
    assert!(
        sv.timeline.len() >= 5,
        "{} timeline points",
        sv.timeline.len()
    );
    assert!(
        sv.timeline
            .iter()
            .all(|p| p.processes.contains_key("bridge") && p.processes.contains_key("focus")),
        "{:?}",
        sv.timeline
    );
    assert!(sv.timeline.iter().any(|p| p.bridge_endpoints == Some(3.0)));
    // Both renderings carry the figures.
    let md = report.markdown();
    assert!(
        md.contains("| participants joined | 3 of 3 (0 with failures) |"),
        "{md}"
    );
    assert!(md.contains("## Timeline"), "{md}");
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["summary"]["connected"], 3);
}

/// Runs `cfg` against a fresh local deployment (`focus_env` for the focus); the report, and the
/// deployment's log tails for failure messages.
fn run_local(
    cfg: &ScenarioConfig,
    focus_env: &[(&str, &str)],
) -> (loadtest::report::RunReport, String) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "loadtest=info,warn".into()),
        )
        .with_test_writer()
        .try_init();
    let mut opts = LocalOptions::next_to_current_exe().expect("options");
    opts.bin_dir = binaries();
    opts.focus_env = focus_env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut deployment = LocalDeployment::start(&opts).expect("local deployment");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt
        .block_on(scenario::run(cfg, &deployment.target()))
        .expect("scenario");
    println!("{}", report.text());
    let alive = deployment.check_alive();
    let logs = deployment.log_tails(4000);
    assert!(alive.is_ok(), "{alive:?}\n{logs}");
    (report, logs)
}

/// Two senders and two receivers of the current client: one receiver in stage view, the last in
/// tile view.
fn current_client_scenario(client: Client) -> ScenarioConfig {
    ScenarioConfig {
        conferences: 1,
        participants: 4,
        senders: 2,
        duration: Duration::from_secs(6),
        warmup: Duration::from_secs(3),
        join_timeout: Duration::from_secs(20),
        cooldown: Duration::from_secs(1),
        client,
        tile_viewers: 1,
        ..ScenarioConfig::default()
    }
}

/// What every participant of [`current_client_scenario`] must have received: audio from both
/// senders, AV1 video decodable from its Dependency Descriptors, the on-stage sender at its 720p
/// spatial layer in stage view and every thumbnail at 180p.
fn check_current_client_media(report: &loadtest::report::RunReport, logs: &str) {
    let s = &report.summary;
    assert_eq!(s.connected, 4, "{:?}\n{logs}", s.failures);
    assert!(s.failures.is_empty(), "{:?}\n{logs}", s.failures);
    let senders: Vec<&str> = report
        .participants
        .iter()
        .filter(|p| p.sender)
        .map(|p| p.endpoint.as_str())
        .collect();
    assert_eq!(senders.len(), 2);
    let tile_viewer = report.participants.iter().max_by_key(|p| p.index).unwrap();
    for p in &report.participants {
        assert!(
            p.missing.is_empty(),
            "{}: missing {:?}",
            p.endpoint,
            p.missing
        );
        // Stage view puts the lowest endpoint id among the other senders on stage.
        let on_stage = (p.index != tile_viewer.index)
            .then(|| senders.iter().filter(|e| **e != p.endpoint).min().copied())
            .flatten();
        for other in senders.iter().filter(|e| **e != p.endpoint) {
            let audio: Vec<_> = p
                .tracks
                .iter()
                .filter(|t| t.owner == *other && t.kind == Kind::Audio && t.packets > 0)
                .collect();
            assert!(
                audio.iter().any(|t| t.pps >= 40.0 && t.loss_pct < 2.0),
                "{} ← {other}: audio {audio:?}",
                p.endpoint
            );
            let video: Vec<_> = p
                .tracks
                .iter()
                .filter(|t| t.owner == *other && t.kind == Kind::Video && t.packets > 0)
                .collect();
            assert_eq!(video.len(), 1, "{} ← {other}: {video:?}", p.endpoint);
            let v = video[0];
            assert_eq!(v.codec, "av1", "{v:?}");
            assert_eq!(v.undecodable_frames, 0, "{} ← {other}: {v:?}", p.endpoint);
            // No keyframe-request storm: a stream starts with a keyframe, and the decoder never
            // has to ask again (at most one request a second while it waits).
            assert!(v.plis <= 2, "{} ← {other}: {v:?}", p.endpoint);
            assert!(v.loss_pct < 2.0 && v.fps >= 20.0, "{v:?}");
            let (want_height, want_spatial) = if on_stage == Some(*other) {
                (720, 2)
            } else {
                (180, 0)
            };
            assert_eq!(
                (v.height, v.spatial),
                (Some(want_height), Some(want_spatial)),
                "{} ← {other} (on stage: {on_stage:?}): {v:?}",
                p.endpoint
            );
        }
        assert_eq!(p.receive_drops.malformed, 0);
        assert_eq!(p.receive_drops.av1_without_descriptor, 0);
        // Constraints, and from a sender its camera's video type.
        assert!(
            p.channel.sent > u64::from(p.sender),
            "{}: {:?}",
            p.endpoint,
            p.channel
        );
        assert!(
            p.channel.by_class.contains_key("ForwardedSources"),
            "{:?}",
            p.channel
        );
        if p.sender {
            // Somebody has each sender on stage: the bridge asked for 720p, all three spatial
            // layers go out (L3T3_KEY).
            assert_eq!(p.channel.sender_max_height, Some(720), "{:?}", p.channel);
            assert!(p.channel.by_class.contains_key("SenderSourceConstraints"));
            assert_eq!(p.sent_layers, 3, "{}", p.endpoint);
        }
    }
    let text = report.text();
    assert!(
        text.contains("lib-jitsi-meet current dialect, video av1"),
        "{text}"
    );
    assert!(
        text.contains("av1 720p (S2)") && text.contains("av1 180p (S0)"),
        "{text}"
    );
    assert!(report.succeeded());
}

/// The current lib-jitsi-meet's dialect against our focus and bridge: source names only,
/// source-based constraints, AV1 `L3T3_KEY` with the Dependency Descriptor.
#[test]
fn e2e_current_client_av1_svc_on_stage_at_720p_thumbnails_at_180p() {
    let (report, logs) = run_local(&current_client_scenario(Client::CURRENT), &[]);
    check_current_client_media(&report, &logs);
    for p in &report.participants {
        // Without SSRC rewriting the focus signals the others' sources in Jingle.
        assert!(
            p.jingle_sources >= 2,
            "{}: {}",
            p.endpoint,
            p.jingle_sources
        );
    }
}

/// The same with SSRC rewriting (the focus enables it, the clients ask for it): no remote sources
/// in Jingle, the bridge's `VideoSourcesMap` / `AudioSourcesMap` say which source each of its
/// SSRCs carries. Needs the bridge to rewrite SSRCs.
#[test]
fn e2e_current_client_with_ssrc_rewriting_learns_sources_from_the_bridge() {
    let client = Client {
        ssrc_rewriting: true,
        ..Client::CURRENT
    };
    let (report, logs) = run_local(
        &current_client_scenario(client),
        &[("JICOFO_CONF_SSRC_REWRITING", "true")],
    );
    assert!(report.text().contains("SSRC rewriting on"));
    for p in &report.participants {
        assert_eq!(p.jingle_sources, 0, "{}: sources in Jingle", p.endpoint);
        assert!(
            p.channel.mapped_video >= 1 && p.channel.mapped_audio >= 1,
            "{}: {:?}\n{logs}",
            p.endpoint,
            p.channel
        );
    }
    check_current_client_media(&report, &logs);
}
