//! Shared by the focus's integration tests: a real Prosody (testkit), the `focus` binary as
//! a child process, REST probes and XMPP test clients.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use minidom::Element;
use service::http_request;
use signaling::xmpp::{Event, XmppEvents, XmppHandle, connect_client};
use testkit::{Prosody, ProsodyOptions};
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
    testkit::free_tcp_port().expect("a free TCP port")
}

pub fn free_udp_port() -> u16 {
    testkit::free_udp_port().expect("a free UDP port")
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
    opts.extra_global_config = client_proxy_config(PROXY_DOMAIN, "focus@auth.meet.example");
    Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)")
}

/// The secure domain's authenticated VirtualHost (docker's `XMPP_DOMAIN` with `ENABLE_AUTH=1`).
pub const SECURE_DOMAIN: &str = "meet.example";
/// Its anonymous guest VirtualHost (`XMPP_GUEST_DOMAIN`).
pub const GUEST_DOMAIN: &str = "guest.meet.example";

/// Prosody laid out as docker-jitsi-meet with `ENABLE_AUTH=1 AUTH_TYPE=internal ENABLE_GUESTS=1`:
/// `meet.example` authenticates users with passwords (internal_hashed; user `alice`, password
/// `alice-pw`), `guest.meet.example` admits anyone anonymously; rooms, the focus component and the
/// focus's and bridges' accounts as usual. Start the focus with [`secure_focus_env`].
pub fn start_secure_prosody() -> Prosody {
    init_tracing();
    let mut opts = ProsodyOptions::new(SECURE_DOMAIN);
    // The harness's anonymous host becomes the guest host.
    opts.domain = GUEST_DOMAIN.into();
    opts.extra_global_config =
        format!("VirtualHost \"{SECURE_DOMAIN}\"\n  authentication = \"internal_hashed\"\n");
    let opts = opts.user("alice", SECURE_DOMAIN, "alice-pw");
    Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)")
}

/// The jicofo image's environment for [`start_secure_prosody`].
pub fn secure_focus_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("XMPP_DOMAIN", SECURE_DOMAIN),
        ("ENABLE_AUTH", "1"),
        ("AUTH_TYPE", "internal"),
        ("ENABLE_GUESTS", "1"),
        ("XMPP_GUEST_DOMAIN", GUEST_DOMAIN),
    ]
}

/// Prosody configuration adding the client_proxy stand-in component `domain` in front of `target`.
pub fn client_proxy_config(domain: &str, target: &str) -> String {
    let modules = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/prosody-modules");
    format!(
        "plugin_paths = {{ \"{}\" }}\nComponent \"{domain}\" \"test_client_proxy\"\n  target_address = \"{target}\"\n",
        modules.display()
    )
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
        let ports = prosody.ports();
        let mut env: Vec<(String, String)> = [
            ("FOCUS_LOG", "focus=debug,signaling=info,info"),
            ("XMPP_SERVER", "127.0.0.1"),
            ("XMPP_PORT", &ports.c2s.to_string()),
            ("XMPP_DOMAIN", prosody.domain()),
            ("XMPP_AUTH_DOMAIN", prosody.auth_domain()),
            ("XMPP_MUC_DOMAIN", prosody.muc_domain()),
            ("XMPP_INTERNAL_MUC_DOMAIN", prosody.internal_muc_domain()),
            ("JICOFO_AUTH_PASSWORD", testkit::FOCUS_PASSWORD),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if component {
            env.push((
                "JICOFO_COMPONENT_SECRET".into(),
                prosody.component_secret().into(),
            ));
            env.push(("XMPP_COMPONENT_PORT".into(), ports.component.to_string()));
        }
        env.extend(extra_env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        let rest_port = free_port();
        Self::start_exact(&env, &["--rest-port", &rest_port.to_string()], rest_port)
    }

    /// The binary with exactly `env` (plus `PATH`) and `args`; returns once its REST API on
    /// `rest_port` answers.
    pub fn start_exact(env: &[(String, String)], args: &[&str], rest_port: u16) -> FocusProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("focus.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_focus"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn focus");
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

    /// SIGKILL: the process vanishes without leaving its rooms, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
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
            eprint_log_tail("focus", &self.log(), 150);
        }
    }
}

/// Prints the last `lines` lines of a failed test's process log.
pub fn eprint_log_tail(what: &str, log: &str, lines: usize) {
    let tail: Vec<&str> = log.lines().rev().take(lines).collect();
    eprintln!(
        "--- {what} log tail ---\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
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

    /// An anonymous client of the main domain, as every browser logs in.
    pub async fn anonymous(prosody: &Prosody) -> TestClient {
        let jid = signaling::xmpp::BareJid::new(&format!("anonymous@{}", prosody.domain()))
            .expect("domain");
        let (handle, events) = connect_client(signaling::xmpp::ClientConfig::new(
            jid,
            "anonymous",
            prosody.c2s_addr(),
        ));
        handle.wait_online(WAIT).await.expect("anonymous login");
        TestClient {
            handle,
            events: forward(events),
        }
    }

    /// Sends the 2021 client's conference request for `room` to the focus component, retrying while
    /// the component is not connected yet; the answer's payload or the XMPP error.
    pub async fn conference_request(
        &self,
        prosody: &Prosody,
        room: &str,
    ) -> Result<Option<Element>, signaling::xmpp::IqError> {
        let component: signaling::xmpp::Jid = prosody.focus_domain().parse().expect("domain");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self
                .handle
                .iq_set(
                    component.clone(),
                    conference_iq(room),
                    Duration::from_secs(20),
                )
                .await;
            match &r {
                Err(e)
                    if e.condition()
                        == Some(&signaling::xmpp::DefinedCondition::ServiceUnavailable)
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                _ => return r.map(|ok| ok.payload),
            }
        }
    }

    /// Asks the focus for `room` until it answers ready, then joins it as `nick` with `extra`
    /// presence elements.
    pub async fn enter(&self, prosody: &Prosody, room: &str, nick: &str, extra: Vec<Element>) {
        let component: signaling::xmpp::Jid = prosody.focus_domain().parse().expect("domain");
        let request = el(&format!(
            r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{room}" machine-uid="m-{nick}"/>"#
        ));
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = self
                .handle
                .iq_set(component.clone(), request.clone(), Duration::from_secs(10))
                .await;
            if r.as_ref()
                .ok()
                .and_then(|r| r.payload.as_ref())
                .and_then(|p| p.attr("ready"))
                == Some("true")
            {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "not ready: {r:?}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let room = signaling::xmpp::BareJid::new(room).expect("room");
        self.handle
            .join_muc(signaling::xmpp::MucJoin::new(room, nick).with_extra(extra))
            .await
            .expect("join the room");
    }

    /// Asks for `room` and expects `forbidden` (a room the focus does not serve); returns how long the
    /// answer took.
    pub async fn conference_forbidden(&self, prosody: &Prosody, room: &str) -> Duration {
        let started = Instant::now();
        let e = self
            .conference_request(prosody, room)
            .await
            .expect_err("refused");
        assert_eq!(
            e.condition(),
            Some(&signaling::xmpp::DefinedCondition::Forbidden),
            "{room}: {e}"
        );
        started.elapsed()
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

/// The 2021 client's conference request for `room`.
pub fn conference_iq(room: &str) -> Element {
    el(&format!(
        r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{room}" machine-uid="m-1"/>"#
    ))
}

/// A bridge's `<stats xmlns='http://jitsi.org/protocol/colibri'>` presence extension with `stats`.
pub fn bridge_stats(stats: &[(&str, &str)]) -> Element {
    signaling::xml::Builder::new("stats", signaling::ns::COLIBRI)
        .children(stats.iter().map(|(n, v)| {
            signaling::xml::Builder::new("stat", signaling::ns::COLIBRI)
                .attr("name", *n)
                .attr("value", *v)
                .build()
        }))
        .build()
}

pub fn el(xml: &str) -> Element {
    xml.parse().unwrap_or_else(|e| panic!("bad XML {e}: {xml}"))
}

pub mod browser;
pub mod netns;
pub mod standin;

/// Builds the workspace's `bridge` binary next to the `focus` binary under test (same target dir and
/// profile) and returns its path.
pub fn bridge_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            testkit::build_workspace_binaries(
                std::path::Path::new(env!("CARGO_BIN_EXE_focus")),
                &[("bridge", "bridge")],
            )
            .join("bridge")
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
        let rest_port = free_port();
        let media_port = free_udp_port();
        let mut env: Vec<(String, String)> = [
            ("XMPP_SERVER", "127.0.0.1"),
            ("XMPP_PORT", &prosody.ports().c2s.to_string()),
            ("XMPP_DOMAIN", prosody.domain()),
            ("XMPP_AUTH_DOMAIN", prosody.auth_domain()),
            ("XMPP_INTERNAL_MUC_DOMAIN", prosody.internal_muc_domain()),
            ("JVB_AUTH_USER", "jvb"),
            ("JVB_AUTH_PASSWORD", testkit::JVB_PASSWORD),
            ("JVB_BREWERY_MUC", "jvbbrewery"),
            ("JVB_MUC_NICKNAME", nick),
            ("JVB_PORT", &media_port.to_string()),
            ("JVB_ADVERTISE_IPS", "127.0.0.1"),
            // Bound to loopback: no candidate on another interface for the browsers to try.
            ("JVB_MEDIA_HOST", "127.0.0.1"),
            ("JVB_DISABLE_STUN", "true"),
            ("JVB_REST_HOST", "127.0.0.1"),
            ("JVB_REST_PORT", &rest_port.to_string()),
            ("JVB_STATS_INTERVAL", "1s"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(extra_env.iter().map(|(k, v)| ((*k).into(), (*v).into())));
        Self::start_exact(&env, nick, rest_port, media_port)
    }

    /// The binary with exactly `env` (plus `PATH`); `rest_port` and `media_port` must be the ones
    /// `env` names.
    pub fn start_exact(
        env: &[(String, String)],
        nick: &str,
        rest_port: u16,
        media_port: u16,
    ) -> BridgeProcess {
        let bin = bridge_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("bridge.log");
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn bridge");
        BridgeProcess {
            child: Some(child),
            nick: nick.to_owned(),
            rest_port,
            media_port,
            log,
            _dir: dir,
        }
    }

    /// `(status, body)` of a GET on the bridge's REST API, `None` when nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.rest_port);
        http_request("GET", &url, None, Duration::from_secs(5))
            .ok()
            .map(|r| (r.status, r.text()))
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
            eprint_log_tail(&format!("bridge {}", self.nick), &self.log(), 60);
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
