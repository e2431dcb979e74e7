//! Shared by the focus's integration tests: a real Prosody (signaling::testing), the `focus` binary as
//! a child process, REST probes and XMPP test clients.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minidom::Element;
use signaling::service::http_request;
use signaling::testing::{Prosody, ProsodyOptions};
use signaling::xmpp::{Event, XmppEvents, XmppHandle, connect_client};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn options() -> ProsodyOptions {
    let auth = "auth.meet.example";
    ProsodyOptions::new("meet.example")
        .user("alice", auth, "alice-pw")
        .user("bob", auth, "bob-pw")
        .user("mallory", auth, "mallory-pw")
}

/// Prosody with the usual accounts plus test users `alice`, `bob`, `mallory` on the auth domain.
pub fn start_prosody() -> Prosody {
    init_tracing();
    Prosody::start_with(options()).expect("start Prosody (run scripts/install-deps.sh)")
}

/// The client_proxy component docker-jitsi-meet's Prosody has (a test stand-in of mod_client_proxy:
/// `tests/prosody-modules/mod_test_client_proxy.lua`).
pub const PROXY_DOMAIN: &str = "proxy.meet.example";

/// [`start_prosody`] plus a client_proxy component `proxy.meet.example` targeting `focus@auth…`.
pub fn start_prosody_with_client_proxy() -> Prosody {
    init_tracing();
    let mut opts = options();
    let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/prosody-modules");
    opts.extra_global_config = format!(
        "plugin_paths = {{ \"{}\" }}\nComponent \"{PROXY_DOMAIN}\" \"test_client_proxy\"\n  target_address = \"focus@auth.meet.example\"\n",
        modules.display()
    );
    Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)")
}

/// The `focus` binary running against `prosody`. Killed on drop; its log is printed if the test failed.
pub struct FocusProcess {
    child: Option<Child>,
    pub rest_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl FocusProcess {
    pub fn start(prosody: &Prosody, extra_env: &[(&str, &str)]) -> FocusProcess {
        Self::start_with(prosody, extra_env, true)
    }

    /// `component`: also connect as the XEP-0114 component `focus.<domain>`.
    pub fn start_with(
        prosody: &Prosody,
        extra_env: &[(&str, &str)],
        component: bool,
    ) -> FocusProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("focus.log");
        let rest_port = free_port();
        let out = std::fs::File::create(&log).expect("log file");
        let ports = prosody.ports();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_focus"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FOCUS_LOG", "focus=debug,signaling=info,info")
            .env("XMPP_SERVER", "127.0.0.1")
            .env("XMPP_PORT", ports.c2s.to_string())
            .env("XMPP_DOMAIN", prosody.domain())
            .env("XMPP_AUTH_DOMAIN", prosody.auth_domain())
            .env("XMPP_MUC_DOMAIN", prosody.muc_domain())
            .env("XMPP_INTERNAL_MUC_DOMAIN", prosody.internal_muc_domain())
            .env("JICOFO_AUTH_PASSWORD", signaling::testing::FOCUS_PASSWORD)
            .arg("--rest-port")
            .arg(rest_port.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        if component {
            cmd.env("JICOFO_COMPONENT_SECRET", prosody.component_secret())
                .env("XMPP_COMPONENT_PORT", ports.component.to_string());
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn focus");
        let f = FocusProcess {
            child: Some(child),
            rest_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while f.get("/about/version").is_none() {
            assert!(
                Instant::now() < deadline,
                "focus REST did not come up:\n{}",
                f.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        f
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.rest_port)
    }

    /// `(status, body)` of a GET, `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_request("GET", &self.url(path), None, Duration::from_secs(5))
            .ok()
            .map(|r| (r.status, r.text()))
    }

    pub fn stats(&self) -> serde_json::Value {
        let (status, body) = self.get("/stats").expect("/stats answers");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("/stats is JSON")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", child.id()))
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FocusProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(150).collect();
            eprintln!(
                "--- focus log tail ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// A test XMPP client whose events are forwarded to a channel.
pub struct TestClient {
    pub handle: XmppHandle,
    pub events: mpsc::UnboundedReceiver<Event>,
}

impl TestClient {
    pub async fn connect(prosody: &Prosody, user: &str, password: &str) -> TestClient {
        let (handle, events) = connect_client(prosody.client_config(user, password));
        handle
            .wait_online(WAIT)
            .await
            .unwrap_or_else(|| panic!("{user} did not come online"));
        TestClient {
            handle,
            events: forward(events),
        }
    }

    /// Waits for the first event `pick` accepts; other events are discarded.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&mut Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(mut ev)) => {
                    if let Some(v) = pick(&mut ev) {
                        return v;
                    }
                }
                Ok(None) => panic!("event stream ended while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }
}

fn forward(mut events: XmppEvents) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    rx
}

pub fn el(xml: &str) -> Element {
    xml.parse().unwrap_or_else(|e| panic!("bad XML {e}: {xml}"))
}

pub mod browser;

/// Builds the workspace's `bridge` binary next to the `focus` binary under test (same target dir and
/// profile) and returns its path.
pub fn bridge_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let focus = PathBuf::from(env!("CARGO_BIN_EXE_focus"));
            let profile_dir = focus.parent().expect("profile dir").to_path_buf();
            let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
            let release = profile_dir.file_name().is_some_and(|n| n == "release");
            let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            // Not the variables cargo set for this test (CARGO_MANIFEST_DIR …): build scripts track
            // some of them and would rebuild their crates on every call.
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                if (k.starts_with("CARGO_") && k != "CARGO_HOME")
                    || k.starts_with("RUSTC")
                    || k == "OUT_DIR"
                {
                    cmd.env_remove(&k);
                }
            }
            cmd.args([
                "build",
                "--quiet",
                "-p",
                "bridge",
                "--bin",
                "bridge",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target_dir);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build -p bridge");
            assert!(status.success(), "building the bridge failed");
            profile_dir.join("bridge")
        })
        .clone()
}

/// Our bridge binary running against `prosody`, joined to its brewery as `nick`.
pub struct BridgeProcess {
    child: Option<Child>,
    pub nick: String,
    pub rest_port: u16,
    pub media_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl BridgeProcess {
    pub fn start(prosody: &Prosody, nick: &str) -> BridgeProcess {
        Self::start_with(prosody, nick, &[])
    }

    pub fn start_with(prosody: &Prosody, nick: &str, extra_env: &[(&str, &str)]) -> BridgeProcess {
        let bin = bridge_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("bridge.log");
        let out = std::fs::File::create(&log).expect("log file");
        let rest_port = free_port();
        let media_port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("free UDP port");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XMPP_SERVER", "127.0.0.1")
            .env("XMPP_PORT", prosody.ports().c2s.to_string())
            .env("XMPP_DOMAIN", prosody.domain())
            .env("XMPP_AUTH_DOMAIN", prosody.auth_domain())
            .env("XMPP_INTERNAL_MUC_DOMAIN", prosody.internal_muc_domain())
            .env("JVB_AUTH_USER", "jvb")
            .env("JVB_AUTH_PASSWORD", signaling::testing::JVB_PASSWORD)
            .env("JVB_BREWERY_MUC", "jvbbrewery")
            .env("JVB_MUC_NICKNAME", nick)
            .env("JVB_PORT", media_port.to_string())
            .env("JVB_ADVERTISE_IPS", "127.0.0.1")
            .env("JVB_DISABLE_STUN", "true")
            .env("JVB_REST_HOST", "127.0.0.1")
            .env("JVB_REST_PORT", rest_port.to_string())
            .env("JVB_STATS_INTERVAL", "1s")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out);
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn bridge");
        BridgeProcess {
            child: Some(child),
            nick: nick.to_owned(),
            rest_port,
            media_port,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: the process vanishes without a word, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "--- bridge {} log tail ---\n{}",
                self.nick,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

/// Waits until the focus reports `n` operational bridges.
pub fn wait_for_bridges(focus: &FocusProcess, n: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = focus.stats();
        if s["bridge_selector"]["operational_bridge_count"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "focus does not see {n} bridges: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
