//! The entrypoint logic of our images: the `focus` and `bridge` binaries run with exactly the
//! environment the production manifests give their containers (`manifests/env/*.env`, generated from
//! the rendered manifests and checked fresh by `manifests/check.sh`), against a Prosody with
//! docker-jitsi-meet's domains, and must come up healthy and serve a conference request.

mod common;

use std::time::{Duration, Instant};

use common::{
    BridgeProcess, FocusProcess, TestClient, WAIT, client_proxy_config, free_port, free_udp_port,
    init_tracing,
};
use signaling::xmpp::Jid;
use testkit::{FOCUS_PASSWORD, JVB_PASSWORD, Prosody, ProsodyOptions, manifest_env};

/// Where docker-jitsi-meet's Prosody puts the focus's client_proxy (our stand-in lives beside the
/// harness's own `focus.meet.jitsi` component).
const PROXY: &str = "proxy.meet.jitsi";

fn wait_healthy(what: &str, get: impl Fn() -> Option<(u16, String)>, log: impl Fn() -> String) {
    let deadline = Instant::now() + WAIT;
    loop {
        match get() {
            Some((200, _)) => return,
            other => assert!(
                Instant::now() < deadline,
                "{what} /about/health: {other:?}\n{}",
                log()
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_manifest_env_focus_and_bridge_start_healthy() {
    init_tracing();
    // The domains the manifests name (docker-jitsi-meet's).
    let mut opts = ProsodyOptions::new("meet.jitsi").user("alice", "auth.meet.jitsi", "alice-pw");
    opts.muc_domain = "muc.meet.jitsi".into();
    opts.internal_muc_domain = "internal-muc.meet.jitsi".into();
    opts.extra_global_config = client_proxy_config(PROXY, "focus@auth.meet.jitsi");
    let prosody = Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)");
    let c2s = prosody.ports().c2s.to_string();

    let (bridge_rest, media_port) = (free_port(), free_udp_port());
    let bridge_env = manifest_env(
        "bridge",
        &[
            ("HOST_IP", "127.0.0.1"),
            ("POD_NAME", "shard-0-bridge-test"),
            ("SECRET_JVB_AUTH_PASSWORD", JVB_PASSWORD),
        ],
        &[
            ("XMPP_SERVER", "127.0.0.1".into()),
            ("XMPP_PORT", c2s.clone()),
            ("JVB_PORT", media_port.to_string()),
            ("JVB_REST_PORT", bridge_rest.to_string()),
            ("JVB_MEDIA_HOST", "127.0.0.1".into()),
            ("JVB_DISABLE_STUN", "true".into()),
        ],
    )
    .expect("manifests/env/bridge.env");
    let bridge = tokio::task::block_in_place(|| {
        BridgeProcess::start_exact(&bridge_env, "shard-0-bridge-test", bridge_rest, media_port)
    });

    let focus_rest = free_port();
    let focus_env = manifest_env(
        "focus",
        &[("SECRET_JICOFO_AUTH_PASSWORD", FOCUS_PASSWORD)],
        &[
            ("XMPP_SERVER", "127.0.0.1".into()),
            ("XMPP_PORT", c2s),
            ("JICOFO_REST_HOST", "127.0.0.1".into()),
            ("JICOFO_REST_PORT", focus_rest.to_string()),
        ],
    )
    .expect("manifests/env/focus.env");
    let focus =
        tokio::task::block_in_place(|| FocusProcess::start_exact(&focus_env, &[], focus_rest));

    // Healthy = the focus sees an operational bridge in the brewery the manifests name, and the
    // bridge is connected; the same paths the probes and the images' HEALTHCHECK use.
    tokio::task::block_in_place(|| {
        wait_healthy("bridge", || bridge.get("/about/health"), || bridge.log());
        wait_healthy("focus", || focus.get("/about/health"), || focus.log());
    });
    // The images' HEALTHCHECK commands, in the containers' environment.
    let healthcheck = |bin: &std::path::Path, env: &[(String, String)]| {
        let out = std::process::Command::new(bin)
            .arg("healthcheck")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run healthcheck");
        assert!(
            out.status.success(),
            "{} healthcheck: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    healthcheck(
        std::path::Path::new(env!("CARGO_BIN_EXE_focus")),
        &focus_env,
    );
    healthcheck(&common::bridge_binary(), &bridge_env);
    let stats = focus.stats();
    assert_eq!(
        stats["bridge_selector"]["operational_bridge_count"], 1,
        "{stats}"
    );

    // A client's conference request through the client_proxy reaches this focus and is answered.
    let alice = TestClient::connect(&prosody, "alice", "alice-pw").await;
    let conference = signaling::xml::Builder::new("conference", signaling::ns::FOCUS)
        .attr("room", "manifest-check@muc.meet.jitsi")
        .attr("machine-uid", "m-1")
        .build();
    let proxy: Jid = PROXY.parse().expect("JID");
    let answer = alice
        .handle
        .iq_set(proxy, conference, Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("conference IQ: {e}\n{}", focus.log()))
        .payload
        .expect("conference result payload");
    assert_eq!(answer.attr("ready"), Some("true"), "{answer:?}");
    assert_eq!(answer.attr("focusjid"), Some("focus@auth.meet.jitsi"));
    // LOG_FORMAT=json from the manifests: every log line the focus wrote is a JSON object.
    let log = focus.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the focus logged nothing");
    for l in lines {
        assert!(
            serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| v.is_object()),
            "not a JSON log line: {l}"
        );
    }
}
