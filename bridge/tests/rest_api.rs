//! The REST API of the real `bridge` binary on a free loopback port (XMPP disabled): every endpoint's
//! status, content type and JVB names; drain; graceful shutdown to a clean exit 0; signals; the
//! `healthcheck` / `graceful-shutdown` subcommands. Plus one in-process test that drives the control
//! plane through its seams with a synthetic stats source (endpoints present without real peers).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bridge::config::Layer;
use bridge::control::ControlPlane;
use bridge::health::{Health, HealthRegistry};
use bridge::lifecycle::{Admission, ShutdownState};
use bridge::stats::{StatsSample, StatsSource};
use service::{Env, HttpResponse, http_request};

const BIN: &str = env!("CARGO_BIN_EXE_bridge");
const TIMEOUT: Duration = Duration::from_secs(5);

/// A bridge process on a free loopback REST port; killed on drop if still running.
struct Bridge {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Bridge {
    fn start(extra_env: &[(&str, &str)]) -> Bridge {
        let mut child = Command::new(BIN)
            .env_clear()
            // JVB_MEDIA_WORKERS from the test's environment: the suite runs with 1, 2 or the default.
            .envs(std::env::var("JVB_MEDIA_WORKERS").map(|v| ("JVB_MEDIA_WORKERS", v)))
            .env("JVB_DISABLE_XMPP", "true")
            .env("JVB_REST_HOST", "127.0.0.1")
            .env("JVB_REST_PORT", "0")
            // The media port: any free one, on loopback; no STUN (no network in tests).
            .env("JVB_PORT", "0")
            .env("JVB_MEDIA_HOST", "127.0.0.1")
            .env("JVB_DISABLE_STUN", "true")
            // Off by default, as in the jitsi/jvb image; these tests read /colibri/stats.
            .env("COLIBRI_REST_ENABLED", "true")
            .env("JVB_STATS_INTERVAL", "200ms")
            .env("JVB_SHUTTING_DOWN_DELAY", "1s")
            .env("HOSTNAME", "rest-test")
            .envs(extra_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn bridge");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("REST API listening")
                    && let Some(addr) = line.split("addr=").nth(1)
                {
                    let _ = tx.send(addr.trim().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(a) => a.parse().expect("addr"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "bridge did not report its REST address: {:?}",
                    log.lock().unwrap()
                );
            }
        };
        Bridge { child, addr, log }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> HttpResponse {
        http_request("GET", &self.url(path), None, TIMEOUT).expect("GET")
    }

    fn post(&self, path: &str, body: Option<&str>) -> HttpResponse {
        let body = body.map(|b| ("application/json", b.as_bytes()));
        http_request("POST", &self.url(path), body, TIMEOUT).expect("POST")
    }

    fn stats(&self) -> serde_json::Value {
        let r = self.get("/colibri/stats");
        assert_eq!(r.status, 200, "{}", r.text());
        serde_json::from_slice(&r.body).expect("stats JSON")
    }

    fn metrics(&self) -> String {
        self.get("/metrics").text()
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "bridge did not exit within {limit:?}; log: {:#?}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: sends a signal to our own child process; no memory is touched.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    fn subcommand(&self, args: &[&str]) -> std::process::Output {
        Command::new(BIN)
            .env_clear()
            .args(args)
            .arg("--url")
            .arg(format!("http://{}", self.addr))
            .output()
            .expect("run subcommand")
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[test]
fn every_endpoint_status_content_type_and_names() {
    let b = Bridge::start(&[("SHUTDOWN_REST_ENABLED", "true")]);

    // /about/health: 200, empty body, JSON content type (as JVB).
    let r = b.get("/about/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert!(r.body.is_empty());

    // /about/version
    let r = b.get("/about/version");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["os"], "Linux");
    assert!(v["name"].as_str().is_some_and(|n| !n.is_empty()));

    // /colibri/stats with JVB's key names and types.
    let r = b.get("/colibri/stats");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let s: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    for key in [
        "conferences",
        "participants",
        "endpoints",
        "local_endpoints",
        "largest_conference",
        "bit_rate_download",
        "bit_rate_upload",
        "packet_rate_download",
        "packet_rate_upload",
        "total_conferences_created",
        "total_conferences_completed",
        "total_participants",
        "total_bytes_received",
        "total_bytes_sent",
        "total_packets_received",
        "total_packets_sent",
        "total_ice_failed",
        "total_ice_succeeded",
        "total_dominant_speaker_changes",
        "total_data_channel_messages_received",
        "total_data_channel_messages_sent",
        "octo_endpoints",
        "threads",
        "total_dropped_packets",
    ] {
        assert!(s[key].is_u64(), "{key} missing or not an integer in {s}");
    }
    for key in ["stress_level", "average_participant_stress"] {
        assert!(s[key].is_f64(), "{key}: {s}");
    }
    for key in ["graceful_shutdown", "shutting_down", "drain", "healthy"] {
        assert!(s[key].is_boolean(), "{key}: {s}");
    }
    assert_eq!(s["healthy"], true);
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert!(s["conference_sizes"].is_array());
    assert!(s["dropped_packets"].is_object());
    let ts = s["current_timestamp"].as_str().unwrap();
    // "yyyy-MM-dd HH:mm:ss.SSS"
    assert_eq!(ts.len(), 23, "{ts}");
    assert_eq!(&ts[4..5], "-");
    assert_eq!(&ts[10..11], " ");
    assert_eq!(&ts[19..20], ".");

    // /metrics: Prometheus text 0.0.4, jitsi_jvb_* names, counters end in _total.
    let r = b.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for name in [
        "jitsi_jvb_conferences",
        "jitsi_jvb_endpoints",
        "jitsi_jvb_local_endpoints",
        "jitsi_jvb_largest_conference",
        "jitsi_jvb_stress",
        "jitsi_jvb_packets_received_total",
        "jitsi_jvb_packets_sent_total",
        "jitsi_jvb_bytes_received_total",
        "jitsi_jvb_bytes_sent_total",
        "jitsi_jvb_incoming_packet_rate",
        "jitsi_jvb_outgoing_packet_rate",
        "jitsi_jvb_incoming_bitrate",
        "jitsi_jvb_outgoing_bitrate",
        "jitsi_jvb_ice_succeeded_total",
        "jitsi_jvb_ice_failed_total",
        "jitsi_jvb_endpoints_dtls_failed_total",
        "jitsi_jvb_conferences_created_total",
        "jitsi_jvb_conferences_completed_total",
        "jitsi_jvb_dominant_speaker_changes_total",
        "jitsi_jvb_data_channel_messages_received_total",
        "jitsi_jvb_data_channel_messages_sent_total",
        "jitsi_jvb_graceful_shutdown",
        "jitsi_jvb_shutting_down",
        "jitsi_jvb_drain_mode",
        "jitsi_jvb_healthy",
        "jitsi_jvb_thread_count",
    ] {
        assert!(
            metric_value(&text, name).is_some(),
            "{name} missing from /metrics"
        );
    }
    assert!(text.contains("jitsi_jvb_dropped_packets_total{reason=\"unknown_protocol\"} 0"));
    assert!(text.contains("# TYPE jitsi_jvb_packets_received_total counter"));
    assert_eq!(metric_value(&text, "jitsi_jvb_healthy"), Some(1.0));
    assert!(metric_value(&text, "jitsi_jvb_thread_count").unwrap() >= 1.0);

    // /colibri/drain
    let r = b.get("/colibri/drain");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.text(), r#"{"drain":false}"#);

    // Unknown paths 404, wrong methods 405, bad JSON 400 with a message.
    for path in ["/", "/nope", "/colibri/v2/conferences", "/about"] {
        assert_eq!(b.get(path).status, 404, "{path}");
    }
    assert_eq!(b.post("/about/health", None).status, 405);
    assert_eq!(b.post("/colibri/stats", None).status, 405);
    assert_eq!(b.post("/colibri/drain", None).status, 405);
    assert_eq!(b.get("/colibri/drain/enable").status, 405);
    assert_eq!(b.get("/colibri/shutdown").status, 405);
    let r = http_request("DELETE", &b.url("/metrics"), None, TIMEOUT).unwrap();
    assert_eq!(r.status, 405);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")));
    for (body, message) in [
        ("{not json", "invalid JSON"),
        ("", "invalid JSON"),
        ("{}", "missing required field \"graceful-shutdown\""),
        (r#"{"graceful-shutdown": 7}"#, "must be true or false"),
    ] {
        let r = b.post("/colibri/shutdown", Some(body));
        assert_eq!(r.status, 400, "{body:?}");
        assert!(r.text().contains(message), "{body:?}: {}", r.text());
    }
    // None of that changed the state.
    let s = b.stats();
    assert_eq!(s["graceful_shutdown"], false);
    assert_eq!(s["shutting_down"], false);
}

#[test]
fn drain_mode_shows_in_stats_and_metrics() {
    let b = Bridge::start(&[]);
    assert_eq!(b.stats()["drain"], false);
    assert_eq!(
        metric_value(&b.metrics(), "jitsi_jvb_drain_mode"),
        Some(0.0)
    );

    let r = b.post("/colibri/drain/enable", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), r#"{"drain":true}"#);
    assert_eq!(b.get("/colibri/drain").text(), r#"{"drain":true}"#);
    assert_eq!(b.stats()["drain"], true);
    assert_eq!(
        metric_value(&b.metrics(), "jitsi_jvb_drain_mode"),
        Some(1.0)
    );

    assert_eq!(b.post("/colibri/drain/disable", None).status, 200);
    assert_eq!(b.stats()["drain"], false);
    assert_eq!(
        metric_value(&b.metrics(), "jitsi_jvb_drain_mode"),
        Some(0.0)
    );

    // Drain does not refuse anything by itself.
    assert_eq!(b.stats()["graceful_shutdown"], false);

    // Initial drain from config.
    let b2 = Bridge::start(&[("JVB_INITIAL_DRAIN", "true")]);
    assert_eq!(b2.stats()["drain"], true);
    assert_eq!(
        metric_value(&b2.metrics(), "jitsi_jvb_drain_mode"),
        Some(1.0)
    );
}

#[test]
fn graceful_shutdown_over_rest_then_exit_0() {
    let mut b = Bridge::start(&[
        ("SHUTDOWN_REST_ENABLED", "true"),
        ("JVB_SHUTTING_DOWN_DELAY", "2s"),
    ]);
    let requested = Instant::now();
    let r = b.post("/colibri/shutdown", Some(r#"{"graceful-shutdown": true}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["graceful_shutdown"], true);

    // No endpoints: GRACEFUL_SHUTDOWN is left at once for SHUTTING_DOWN; both flags are sticky.
    let s = b.stats();
    assert_eq!(s["graceful_shutdown"], true);
    assert_eq!(s["shutting_down"], true);
    let m = b.metrics();
    assert_eq!(metric_value(&m, "jitsi_jvb_graceful_shutdown"), Some(1.0));
    assert_eq!(metric_value(&m, "jitsi_jvb_shutting_down"), Some(1.0));
    // Still serving during the shutting-down delay (the focus reads the flags).
    assert_eq!(b.get("/about/health").status, 200);

    let status = b.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        requested.elapsed() >= Duration::from_millis(1900),
        "exited before the shutting-down delay: {:?}",
        requested.elapsed()
    );
    let log = b.log.lock().unwrap().join("\n");
    assert!(log.contains("SHUTTING_DOWN"), "{log}");
    assert!(log.contains("bridge stopped"), "{log}");
}

#[test]
fn non_graceful_rest_shutdown_also_waits_the_delay_then_exits_0() {
    let mut b = Bridge::start(&[("SHUTDOWN_REST_ENABLED", "1")]);
    // String form, as JVB's graceful_shutdown.sh sends it.
    let r = b.post(
        "/colibri/shutdown",
        Some(r#"{"graceful-shutdown": "false"}"#),
    );
    assert_eq!(r.status, 200);
    let s = b.stats();
    assert_eq!(s["graceful_shutdown"], false);
    assert_eq!(s["shutting_down"], true);
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn shutdown_api_is_off_unless_enabled() {
    let b = Bridge::start(&[]);
    let r = b.post("/colibri/shutdown", Some(r#"{"graceful-shutdown": true}"#));
    assert_eq!(r.status, 403);
    assert!(r.text().contains("SHUTDOWN_REST_ENABLED"), "{}", r.text());
    assert_eq!(b.stats()["graceful_shutdown"], false);
    // The subcommand reports the refusal with exit 1.
    let out = b.subcommand(&["graceful-shutdown"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
}

#[test]
fn colibri_stats_can_be_turned_off() {
    let mut b = Bridge::start(&[
        ("COLIBRI_REST_ENABLED", "false"),
        ("SHUTDOWN_REST_ENABLED", "true"),
    ]);
    let r = b.get("/colibri/stats");
    assert_eq!(r.status, 404);
    assert!(r.text().contains("COLIBRI_REST_ENABLED"));
    // /metrics still carries the state.
    assert_eq!(
        metric_value(&b.metrics(), "jitsi_jvb_shutting_down"),
        Some(0.0)
    );
    // Without /colibri/stats, `graceful-shutdown --wait` waits for the process to stop answering.
    let out = b.subcommand(&["graceful-shutdown", "--wait", "--interval", "100ms"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("stopped answering"), "{err}");
    assert_eq!(b.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn healthcheck_and_graceful_shutdown_subcommands() {
    let mut b = Bridge::start(&[
        ("SHUTDOWN_REST_ENABLED", "true"),
        ("JVB_SHUTTING_DOWN_DELAY", "2s"),
    ]);
    let out = b.subcommand(&["healthcheck"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = b.subcommand(&[
        "graceful-shutdown",
        "--wait",
        "--timeout",
        "30s",
        "--interval",
        "100ms",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("graceful shutdown requested"), "{err}");
    assert!(err.contains("no endpoints left"), "{err}");
    // It returned while the bridge is still in its shutting-down delay (so a preStop hook ends
    // cleanly); the bridge then exits 0 by itself.
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "returned only after the exit"
    );
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let out = b.subcommand(&["healthcheck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"));
    // Nothing running: nothing to do.
    let out = b.subcommand(&["graceful-shutdown", "--wait"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn subcommands_default_url_follows_jvb_rest_port() {
    let b = Bridge::start(&[]);
    let port = b.addr.port().to_string();
    let out = Command::new(BIN)
        .env_clear()
        .env("JVB_REST_PORT", &port)
        .env("JVB_REST_HOST", "0.0.0.0")
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigterm_is_a_graceful_shutdown_and_sigint_exits_at_once() {
    let mut b = Bridge::start(&[("JVB_SHUTTING_DOWN_DELAY", "1s")]);
    b.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = b.stats();
        if s["shutting_down"] == true {
            assert_eq!(
                s["graceful_shutdown"], true,
                "SIGTERM is a graceful request"
            );
            break;
        }
        assert!(Instant::now() < deadline, "SIGTERM had no effect: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.wait_exit(Duration::from_secs(20)).code(), Some(0));

    let mut b = Bridge::start(&[("JVB_SHUTTING_DOWN_DELAY", "1h")]);
    let sent = Instant::now();
    b.signal(libc::SIGINT);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(5));

    // A second SIGTERM during a long shutting-down delay exits at once.
    let mut b = Bridge::start(&[("JVB_SHUTTING_DOWN_DELAY", "1h")]);
    b.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.stats()["shutting_down"] != true {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

/// A preStop hook drains the bridge (POST /colibri/shutdown); the kubelet's SIGTERM that follows stops
/// it at once instead of after the shutting-down delay (JVB_SHUTTING_DOWN_DELAY, 60 s by default).
#[test]
fn sigterm_after_the_drain_exits_at_once() {
    let mut b = Bridge::start(&[
        ("SHUTDOWN_REST_ENABLED", "true"),
        ("JVB_SHUTTING_DOWN_DELAY", "1h"),
    ]);
    let r = b.post("/colibri/shutdown", Some(r#"{"graceful-shutdown": true}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.stats()["shutting_down"] != true {
        assert!(Instant::now() < deadline, "the idle bridge did not drain");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    b.signal(libc::SIGTERM);
    assert_eq!(b.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "SIGTERM after the drain took {:?}",
        sent.elapsed()
    );
}

/// XMPP down is visible but not a liveness failure (the manifests' liveness probe is
/// /about/health; a Prosody restart must not restart bridges and end their calls).
#[test]
fn health_is_degraded_not_failed_while_xmpp_is_not_connected() {
    let b = Bridge::start(&[
        ("JVB_DISABLE_XMPP", "false"),
        ("JVB_AUTH_PASSWORD", "pw"),
        // Nothing listens there: the connection keeps failing.
        ("XMPP_SERVER", "127.0.0.1:1"),
    ]);
    let r = b.get("/about/health");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("degraded") && r.text().contains("xmpp"),
        "{}",
        r.text()
    );
    assert_eq!(b.stats()["healthy"], true);
    assert_eq!(b.stats()["muc_clients_connected"], 0);
    assert_eq!(metric_value(&b.metrics(), "jitsi_jvb_healthy"), Some(1.0));
    assert_eq!(
        metric_value(&b.metrics(), "jitsi_jvb_mucs_joined"),
        Some(0.0)
    );
    let out = b.subcommand(&["healthcheck"]);
    assert_eq!(out.status.code(), Some(0));
}

/// A stand-in media plane for the in-process test: the same trait the real one implements.
struct Counters {
    endpoints: AtomicU64,
    packets: AtomicU64,
}

impl StatsSource for Counters {
    fn sample(&self) -> StatsSample {
        let n = self.endpoints.load(Ordering::SeqCst);
        StatsSample {
            conference_sizes: if n > 0 {
                vec![u32::try_from(n).unwrap_or(u32::MAX)]
            } else {
                vec![]
            },
            local_endpoints: n,
            packets_received: self.packets.load(Ordering::SeqCst),
            dropped_packets: [("truncated_stun".to_string(), 3)].into(),
            ..StatsSample::default()
        }
    }
}

#[test]
fn control_plane_in_process_graceful_shutdown_waits_for_endpoints() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut layer = Layer {
        disable_xmpp: Some(true),
        rest_port: Some(0),
        shutdown_api: Some(true),
        colibri_stats: Some(true),
        stats_interval: Some(Duration::from_millis(100)),
        shutting_down_delay: Some(Duration::from_millis(300)),
        ..Layer::default()
    };
    layer.rest_host = Some("127.0.0.1".parse().unwrap());
    let config = layer.resolve(&Env::default()).unwrap();
    let source = Arc::new(Counters {
        endpoints: AtomicU64::new(3),
        packets: AtomicU64::new(0),
    });
    let health = Arc::new(HealthRegistry::new());
    health.report("udp", Health::Healthy);
    let cp = rt
        .block_on(ControlPlane::start(
            &config,
            source.clone(),
            Arc::clone(&health),
        ))
        .unwrap();
    let base = format!("http://{}", cp.rest_addr);
    let get_stats = || -> serde_json::Value {
        let r = http_request("GET", &format!("{base}/colibri/stats"), None, TIMEOUT).unwrap();
        serde_json::from_slice(&r.body).unwrap()
    };

    // Samples reach /colibri/stats within an interval or two.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_stats()["participants"] != 3 {
        assert!(Instant::now() < deadline, "{}", get_stats());
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = get_stats();
    assert_eq!(s["conferences"], 1);
    assert_eq!(s["largest_conference"], 3);
    assert_eq!(s["dropped_packets"]["truncated_stun"], 3);
    // Rates: 1000 packets over the next window.
    source.packets.store(1000, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_stats()["packet_rate_download"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    let metrics = http_request("GET", &format!("{base}/metrics"), None, TIMEOUT)
        .unwrap()
        .text();
    assert!(metrics.contains("jitsi_jvb_dropped_packets_total{reason=\"truncated_stun\"} 3"));
    assert!(metrics.contains("jitsi_jvb_packets_received_total 1000"));

    // A component failing shows in health (500, naming it).
    health.report("udp", Health::Failed("bind failed".into()));
    let r = http_request("GET", &format!("{base}/about/health"), None, TIMEOUT).unwrap();
    assert_eq!(r.status, 500);
    assert!(r.text().contains("udp: bind failed"));
    health.report("udp", Health::Healthy);

    // Graceful shutdown with endpoints present: new conferences refused, not yet shutting down.
    assert_eq!(cp.lifecycle.admit_new_conference(), Admission::Accept);
    let r = http_request(
        "POST",
        &format!("{base}/colibri/shutdown"),
        Some(("application/json", br#"{"graceful-shutdown": true}"#)),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let s = get_stats();
    assert_eq!(s["graceful_shutdown"], true);
    assert_eq!(s["shutting_down"], false);
    assert_eq!(cp.lifecycle.status().state, ShutdownState::GracefulShutdown);
    assert_eq!(
        cp.lifecycle.admit_new_conference(),
        Admission::RefuseShuttingDown
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        get_stats()["shutting_down"],
        false,
        "endpoints are still there"
    );

    // The endpoints leave: SHUTTING_DOWN, then STOPPED after the delay.
    source.endpoints.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_stats()["shutting_down"] != true {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), cp.lifecycle.stopped())
            .await
            .expect("stopped after the delay");
    });
    rt.block_on(cp.close());
    let err = http_request("GET", &format!("{base}/about/health"), None, TIMEOUT).unwrap_err();
    assert!(matches!(err, service::HttpClientError::Unreachable { .. }));
}
