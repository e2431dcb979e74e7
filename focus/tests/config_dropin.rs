//! Drop-in configuration (issues 11 and 13): the defaults are the upstream jicofo image's, the room
//! and bridge trust rules follow the docker variables, and the docker variables the focus ignores are
//! named at start-up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use focus::config::{Config, Flags};
use focus::core::SelectionStrategy;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let mut m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    m.entry("JICOFO_AUTH_PASSWORD".into())
        .or_insert_with(|| "pw".into());
    move |k| m.get(k).cloned()
}

fn load(pairs: &[(&str, &str)]) -> Config {
    Config::load(&env(pairs), &Flags::default()).expect("configuration")
}

/// Every default against upstream: jicofo's `reference.conf` (jicofo, jicofo-common, jicofo-selector)
/// as docker-jitsi-meet's `jicofo.conf` template renders it with an empty environment.
#[test]
fn defaults_are_the_upstream_jicofo_images() {
    let c = load(&[]);
    // xmpp.client (template: hostname xmpp.meet.jitsi, domain auth.meet.jitsi, username focus,
    // client-proxy focus.<XMPP_DOMAIN>, conference-muc-jid muc.meet.jitsi).
    assert_eq!(
        (c.client.host.as_str(), c.client.port),
        ("xmpp.meet.jitsi", 5222)
    );
    assert_eq!(c.client.login_domain, "auth.meet.jitsi");
    assert_eq!(
        (c.client.username.as_str(), c.client.resource.as_str()),
        ("focus", "focus")
    );
    assert_eq!(c.client_proxy.as_deref(), Some("focus.meet.jitsi"));
    assert_eq!(c.muc_domain, "muc.meet.jitsi");
    assert_eq!(c.brewery_jid(), "jvbbrewery@internal-muc.meet.jitsi");
    assert_eq!(c.reply_timeout, Duration::from_secs(15));
    assert!(c.service.is_none());
    // conference
    let k = &c.conference;
    assert_eq!(k.min_participants, 2);
    assert_eq!(k.initial_timeout, Duration::from_secs(15));
    assert_eq!(k.single_participant_timeout, Duration::from_secs(20));
    assert_eq!((k.max_ssrcs_per_user, k.max_ssrc_groups_per_user), (20, 20));
    assert_eq!(
        (k.max_audio_senders, k.max_video_senders),
        (999_999, 999_999)
    );
    assert!(k.strip_simulcast && k.use_json_encoded_sources);
    // SSRC rewriting on, as Jicofo (our bridge rewrites SSRCs: bridge/src/sfu/ssrc_slots.rs).
    assert!(k.use_ssrc_rewriting);
    // use-rtp-mid-demux and enable-ice-restart (jicofo reference.conf); no docker variable.
    assert!(k.use_rtp_mid_demux && k.enable_ice_restart);
    assert!(k.enable_auto_owner);
    assert_eq!(k.restart_min_interval, Duration::from_secs(5));
    assert_eq!(k.restart_max_requests, 5);
    assert_eq!(k.restart_interval, Duration::from_secs(60));
    // bridge (jicofo-selector)
    let b = &c.bridge;
    assert_eq!(b.max_bridge_participants, 80);
    assert_eq!(b.average_participant_stress, 0.01);
    assert_eq!(b.stress_threshold, 0.8);
    assert_eq!(b.participant_rampup_interval, Duration::from_secs(20));
    assert_eq!(b.failure_reset_threshold, Duration::from_secs(60));
    assert_eq!(b.selection_strategy, SelectionStrategy::SingleBridge);
    assert!(b.health_checks_enabled && !b.health_checks_use_presence);
    assert_eq!(b.health_check_interval, Duration::from_secs(10));
    assert_eq!(b.presence_timeout, Duration::from_secs(45));
    assert!(b.region_groups.is_empty() && b.local_region.is_none());
    // codec (jicofo-common); mid and VLA off as the template renders ENABLE_VLA / JICOFO_ENABLE_MID.
    let v = &c.codecs;
    for (codec, pt, rtx) in [
        (&v.av1, 41, 42),
        (&v.vp8, 100, 96),
        (&v.vp9, 101, 97),
        (&v.h264, 107, 99),
    ] {
        assert!(codec.enabled && codec.enable_remb);
        assert_eq!((codec.pt, codec.rtx_pt), (pt, Some(rtx)));
    }
    assert!(v.opus.enabled && v.opus.pt == 111 && v.opus_minptime == 10 && v.opus_inband_fec);
    assert!(!v.opus_red.enabled && v.opus_red.pt == 112);
    assert!(v.telephone_event.enabled && v.telephone_event.pt == 126);
    let e = &v.extensions;
    for (ext, on, id) in [
        (&e.audio_level, true, 1),
        (&e.tof, false, 2),
        (&e.abs_send_time, true, 3),
        (&e.rid, false, 4),
        (&e.tcc, true, 5),
        (&e.video_content_type, false, 7),
        (&e.framemarking, false, 9),
        (&e.mid, false, 10),
        (&e.av1_dependency_descriptor, true, 11),
        (&e.video_layers_allocation, false, 12),
    ] {
        assert_eq!((ext.enabled, ext.id), (on, id));
    }
    assert!(v.extmap_allow_mixed);
    // Ours: every codec counts as forwarded by the bridge, so all four are offered, in Jicofo's order.
    assert_eq!(v.visitor_codecs(), "av1,vp8,h264,vp9");
    // rest: 127.0.0.1:8888, 0.0.0.0 with JICOFO_ENABLE_REST=1.
    assert_eq!(
        (c.rest.host, c.rest.port),
        (IpAddr::from([127, 0, 0, 1]), 8888)
    );
    assert_eq!(
        load(&[("JICOFO_ENABLE_REST", "1")]).rest.host,
        IpAddr::from([0, 0, 0, 0])
    );
    // The one deliberate difference: /about/health is served unless JICOFO_ENABLE_HEALTH_CHECKS=false
    // (Jicofo's health.enabled defaults to false; see `RestConfig::health`).
    assert!(c.rest.health);
    // ENABLE_JVB_XMPP_SERVER: the template's service connection defaults.
    let s = load(&[("ENABLE_JVB_XMPP_SERVER", "1")]);
    let svc = s.service.as_ref().unwrap();
    assert_eq!((svc.host.as_str(), svc.port), ("xmpp.jvb.meet.jitsi", 6222));
    assert_eq!(svc.login_domain, "auth.jvb.meet.jitsi");
    assert_eq!(s.brewery_jid(), "jvbbrewery@muc.jvb.meet.jitsi");
}

/// The focus serves rooms of XMPP_MUC_DOMAIN and of docker's breakout-room service only.
#[test]
fn conference_domains_follow_the_docker_variables() {
    let c = load(&[
        ("XMPP_DOMAIN", "meet.example"),
        ("XMPP_MUC_DOMAIN", "conference.meet.example"),
    ]);
    assert_eq!(
        c.conference_domains(),
        ["conference.meet.example", "breakout.meet.example"]
    );
    assert_eq!(
        c.breakout_domain().as_deref(),
        Some("breakout.meet.example")
    );
    let c = load(&[("ENABLE_BREAKOUT_ROOMS", "false")]);
    assert_eq!(c.conference_domains(), ["muc.meet.jitsi"]);
    assert_eq!(c.breakout_domain(), None);
    // Conference rooms in the brewery's service: refused at start-up, naming the variable.
    let err = Config::load(
        &env(&[("XMPP_MUC_DOMAIN", "internal-muc.meet.jitsi")]),
        &Flags::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("XMPP_MUC_DOMAIN"), "{err}");
    // TOML can name another breakout service or disable it.
    let mut c = load(&[]);
    c.apply_toml("[xmpp]\nbreakout-muc-domain = \"rooms.example\"\n", "t")
        .unwrap();
    assert_eq!(c.conference_domains(), ["muc.meet.jitsi", "rooms.example"]);
    c.apply_toml("[xmpp]\nbreakout-muc-domain = \"\"\n", "t")
        .unwrap();
    assert_eq!(c.conference_domains(), ["muc.meet.jitsi"]);
}

/// Bridges are accounts of the auth domain of the brewery connection, unless configured otherwise.
#[test]
fn bridge_account_domains_default_to_the_brewery_connections_auth_domain() {
    assert_eq!(load(&[]).bridge_domains(), ["auth.meet.jitsi"]);
    assert_eq!(
        load(&[("XMPP_AUTH_DOMAIN", "auth.meet.example")]).bridge_domains(),
        ["auth.meet.example"]
    );
    assert_eq!(
        load(&[
            ("ENABLE_JVB_XMPP_SERVER", "1"),
            ("JVB_XMPP_AUTH_DOMAIN", "auth.jvb.example")
        ])
        .bridge_domains(),
        ["auth.jvb.example"]
    );
    assert_eq!(
        load(&[("JICOFO_BRIDGE_TRUSTED_DOMAINS", "a.example, b.example")]).bridge_domains(),
        ["a.example", "b.example"]
    );
    let mut c = load(&[]);
    c.apply_toml("[bridge]\ntrusted-domains = [\"jvb.example\"]\n", "t")
        .unwrap();
    assert_eq!(c.bridge_domains(), ["jvb.example"]);
}

/// JICOFO_BRIDGE_REGION_GROUPS, which the template pastes into `region-groups = [ … ]`.
#[test]
fn region_groups_from_the_docker_variable() {
    let c = load(&[(
        "JICOFO_BRIDGE_REGION_GROUPS",
        r#"["us-east", "us-west"], [eu-central,eu-west]"#,
    )]);
    assert_eq!(
        c.bridge.region_groups,
        vec![vec!["us-east", "us-west"], vec!["eu-central", "eu-west"]]
    );
    for bad in ["us-east", "[us-east", "[]"] {
        let err = Config::load(
            &env(&[("JICOFO_BRIDGE_REGION_GROUPS", bad)]),
            &Flags::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("JICOFO_BRIDGE_REGION_GROUPS"),
            "{err}"
        );
    }
}

/// The binary names, at start-up, every docker variable it ignores that Jicofo would act on.
#[test]
fn start_up_warns_about_each_ignored_docker_variable() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("focus.log");
    let out = std::fs::File::create(&log).unwrap();
    // Nothing listens on this port: the focus keeps reconnecting, which is fine for reading its log.
    let port = testkit::free_tcp_port().unwrap();
    let rest = testkit::free_tcp_port().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_focus"))
        .env_clear()
        .env("JICOFO_AUTH_PASSWORD", "pw")
        .env("XMPP_SERVER", format!("127.0.0.1:{port}"))
        .env("JICOFO_REST_PORT", rest.to_string())
        .env("ENABLE_RECORDING", "1")
        .env("JIBRI_BREWERY_MUC", "jibribrewery")
        .env("JIGASI_SIP_URI", "sip:dial@example.org")
        .env("ENABLE_TRANSCRIPTIONS", "0")
        .env("ENABLE_OCTO", "true")
        .env("SENTRY_DSN", "0")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ENABLE_OCTO") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = child.kill();
    let _ = child.wait();
    let warned = |name: &str| {
        text.lines()
            .any(|l| l.contains("WARN") && l.contains(&format!("{name} is ignored")))
    };
    for name in [
        "ENABLE_RECORDING",
        "JIBRI_BREWERY_MUC",
        "JIGASI_SIP_URI",
        "ENABLE_OCTO",
    ] {
        assert!(warned(name), "no warning for {name}:\n{text}");
    }
    for name in ["ENABLE_TRANSCRIPTIONS", "SENTRY_DSN"] {
        assert!(
            !warned(name),
            "{name} has the value Jicofo ignores too:\n{text}"
        );
    }
}

/// `JICOFO_ENABLE_HEALTH_CHECKS`: on unless turned off (our default; Jicofo's is off). Off, there is no
/// `/about/health` (404, as Jicofo leaves the path out) and `focus healthcheck` in the same environment
/// (the image's HEALTHCHECK, `healthcheck.sh`) only checks that the REST API answers.
#[test]
fn health_checks_follow_jicofo_enable_health_checks() {
    // Nothing listens on the XMPP port: the focus is up but not healthy.
    let xmpp = testkit::free_tcp_port().unwrap();
    for setting in [None, Some("true"), Some("false")] {
        let rest = testkit::free_tcp_port().unwrap();
        let mut env = vec![
            ("JICOFO_AUTH_PASSWORD", "pw".to_owned()),
            ("XMPP_SERVER", format!("127.0.0.1:{xmpp}")),
            ("JICOFO_REST_PORT", rest.to_string()),
        ];
        if let Some(v) = setting {
            env.push(("JICOFO_ENABLE_HEALTH_CHECKS", v.to_owned()));
        }
        let command = |args: &[&str]| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_focus"));
            c.env_clear()
                .envs(env.iter().map(|(k, v)| (k, v)))
                .args(args);
            c
        };
        let mut child = command(&[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let get = |path: &str| {
            service::http_request(
                "GET",
                &format!("http://127.0.0.1:{rest}{path}"),
                None,
                Duration::from_secs(5),
            )
            .ok()
            .map(|r| r.status)
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while get("/about/version") != Some(200) {
            assert!(std::time::Instant::now() < deadline, "REST never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        let health = get("/about/health");
        let check = command(&["healthcheck"]).output().unwrap();
        let _ = child.kill();
        let _ = child.wait();
        if setting == Some("false") {
            assert_eq!(health, Some(404), "not served with health checks off");
            assert!(
                check.status.success(),
                "healthcheck with health checks off: {}",
                String::from_utf8_lossy(&check.stderr)
            );
        } else {
            assert_eq!(
                health,
                Some(503),
                "{setting:?}: served, unhealthy without XMPP"
            );
            assert!(
                !check.status.success(),
                "{setting:?}: healthcheck succeeded"
            );
        }
    }
}
