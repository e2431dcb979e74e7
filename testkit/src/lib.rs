//! Test support shared by the workspace's tests and the loadtest's local deployment.
//!
//! - [`Prosody`]: a real Prosody; the bridge's, the focus's and signaling's tests start one per test,
//!   each on its own free loopback ports, and can stop, kill and restart it on the same ports to
//!   exercise reconnects.
//! - [`free_tcp_port`], [`free_udp_port`]: loopback ports for the process under test.
//! - [`e2e_dir`], [`ensure_browser_harness`]: the Playwright / Chromium harness in `e2e/`.
//! - [`build_workspace_binaries`]: other crates' binaries, built next to the running test's.
//! - [`manifest_env`]: the environment the Kubernetes manifests give a container.
//! - [`client_2021_disco_info`]: the disco#info answer of the 2021 lib-jitsi-meet in Chromium.
//!
//! A dev-dependency of signaling, bridge and focus; a normal dependency of loadtest only, whose
//! `deployment` module starts the same local Prosody + bridge + focus for load runs.
//!
//! Prosody must be installed (`scripts/install-deps.sh` does it); without it [`Prosody::start`] fails
//! with [`HarnessError::NotInstalled`] — tests must not skip.
//!
//! The configuration follows what works with an unmodified lib-jitsi-meet: an anonymous main
//! VirtualHost, an `auth.` VirtualHost with registered users (`focus`, `jvb`), MUC components for
//! conferences and the brewery (rooms created on join, unlocked), the `focus.` XEP-0114 component,
//! WebSocket and BOSH on the HTTP port, no TLS unless asked for.
//!
//! The API is blocking (process management); from a current-thread tokio test, wrap calls in
//! `tokio::task::spawn_blocking` or use a multi-thread runtime.

use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

use signaling::xmpp::{BareJid, ClientConfig, ComponentConfig, ServerAddr};

/// How long Prosody may take to open its ports.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a SIGTERM may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Fresh-port retries when another process grabbed a port between our probe and Prosody's bind.
const START_ATTEMPTS: usize = 4;

/// Why the harness could not do what was asked.
#[derive(Debug, Error)]
pub enum HarnessError {
    #[error(
        "Prosody is not installed ({0} not found in PATH): run scripts/install-deps.sh \
         (apt-get install prosody lua-event lua-sec lua-unbound lua-zlib lua-dbi-sqlite3)"
    )]
    NotInstalled(&'static str),
    #[error("I/O error in the Prosody harness: {0}")]
    Io(#[from] io::Error),
    #[error("prosodyctl register {user}@{host} failed: {output}")]
    Register {
        user: String,
        host: String,
        output: String,
    },
    #[error("certificate generation (openssl) failed: {0}")]
    Certificate(String),
    #[error("Prosody did not start: {reason}\n--- prosody log (tail) ---\n{log}")]
    StartFailed { reason: String, log: String },
    #[error("Prosody is not running")]
    NotRunning,
    #[error("{path}: {reason}")]
    ManifestEnv { path: String, reason: String },
    #[error("browser harness: {0} (run scripts/install-deps.sh)")]
    BrowserHarness(String),
}

/// A user account to register before start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user: String,
    pub host: String,
    pub password: String,
}

/// Domains, accounts and options of a test Prosody.
#[derive(Debug, Clone)]
pub struct ProsodyOptions {
    /// Main (anonymous) VirtualHost: `meet.example`.
    pub domain: String,
    /// Authenticated VirtualHost for the focus and the bridges: `auth.<domain>`.
    pub auth_domain: String,
    /// Conference MUC service: `conference.<domain>`.
    pub muc_domain: String,
    /// Brewery MUC service: `internal.auth.<domain>`.
    pub internal_muc_domain: String,
    /// XEP-0114 component the focus connects as: `focus.<domain>`.
    pub focus_domain: String,
    pub component_secret: String,
    pub users: Vec<User>,
    /// Offer STARTTLS on c2s with a freshly generated self-signed certificate.
    pub tls: bool,
    /// Raw Lua appended to the global section (before any VirtualHost).
    pub extra_global_config: String,
}

/// Password of the default `focus@auth.<domain>` account.
/// The features the 2021 lib-jitsi-meet in Chromium advertises.
pub const CLIENT_2021_FEATURES: &[&str] = &[
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:xmpp:jingle:transports:dtls-sctp:1",
    "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:apps:rtp:video",
    "http://jitsi.org/json-encoded-sources",
    "urn:ietf:rfc:4588",
    "http://jitsi.org/remb",
    "http://jitsi.org/tcc",
];

/// The 2021 client's answer to the focus's disco#info query (the `<query>` element, as XML).
pub fn client_2021_disco_info() -> String {
    let features: String = CLIENT_2021_FEATURES
        .iter()
        .map(|f| format!(r#"<feature var="{f}"/>"#))
        .collect();
    format!(
        r#"<query xmlns="http://jabber.org/protocol/disco#info"><identity category="client" type="web" name="https://jitsi.org/jitsi-meet"/>{features}</query>"#
    )
}

pub const FOCUS_PASSWORD: &str = "focus-password";
/// Password of the default `jvb@auth.<domain>` account.
pub const JVB_PASSWORD: &str = "jvb-password";

impl Default for ProsodyOptions {
    fn default() -> Self {
        Self::new("meet.example")
    }
}

impl ProsodyOptions {
    /// Options for `domain`, with the usual sub-domains and the `focus` and `jvb` accounts.
    pub fn new(domain: &str) -> Self {
        let auth = format!("auth.{domain}");
        ProsodyOptions {
            domain: domain.to_owned(),
            muc_domain: format!("conference.{domain}"),
            internal_muc_domain: format!("internal.{auth}"),
            focus_domain: format!("focus.{domain}"),
            component_secret: format!("secret-{}", uuid::Uuid::new_v4().simple()),
            users: vec![
                User {
                    user: "focus".into(),
                    host: auth.clone(),
                    password: FOCUS_PASSWORD.into(),
                },
                User {
                    user: "jvb".into(),
                    host: auth.clone(),
                    password: JVB_PASSWORD.into(),
                },
            ],
            auth_domain: auth,
            tls: false,
            extra_global_config: String::new(),
        }
    }

    /// Adds an account on `host`.
    pub fn user(mut self, user: &str, host: &str, password: &str) -> Self {
        self.users.push(User {
            user: user.into(),
            host: host.into(),
            password: password.into(),
        });
        self
    }

    pub fn with_tls(mut self) -> Self {
        self.tls = true;
        self
    }
}

/// The ports a test Prosody listens on (all on 127.0.0.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub c2s: u16,
    pub component: u16,
    pub http: u16,
}

/// A running (or stopped) Prosody owned by a test. Killed on drop.
#[derive(Debug)]
pub struct Prosody {
    opts: ProsodyOptions,
    dir: tempfile::TempDir,
    ports: Ports,
    child: Option<Child>,
}

impl Prosody {
    /// Starts a Prosody with [`ProsodyOptions::default`].
    pub fn start() -> Result<Prosody, HarnessError> {
        Self::start_with(ProsodyOptions::default())
    }

    /// Writes a config into a fresh temporary directory, registers the users and starts Prosody on
    /// free loopback ports; returns once every port is open.
    pub fn start_with(opts: ProsodyOptions) -> Result<Prosody, HarnessError> {
        let prosody = find_in_path("prosody").ok_or(HarnessError::NotInstalled("prosody"))?;
        find_in_path("prosodyctl").ok_or(HarnessError::NotInstalled("prosodyctl"))?;
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(&opts, &prosody) {
                Ok(p) => return Ok(p),
                Err(e @ HarnessError::StartFailed { .. }) => {
                    // Most likely a port was taken between our probe and Prosody's bind.
                    tracing::warn!(error = %e, "Prosody start failed; retrying on other ports");
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or(HarnessError::NotRunning))
    }

    fn try_start(opts: &ProsodyOptions, prosody: &Path) -> Result<Prosody, HarnessError> {
        let dir = tempfile::Builder::new().prefix("prosody-test-").tempdir()?;
        fs::create_dir_all(dir.path().join("data"))?;
        fs::create_dir_all(dir.path().join("certs"))?;
        if opts.tls {
            generate_certificate(dir.path(), opts)?;
        }
        let mut p = Prosody {
            opts: opts.clone(),
            dir,
            ports: free_ports()?,
            child: None,
        };
        p.write_config()?;
        for u in &opts.users {
            p.register(&u.user, &u.host, &u.password)?;
        }
        p.spawn(prosody)?;
        Ok(p)
    }

    /// Registers (or re-registers) an account with `prosodyctl`; works while running or stopped.
    pub fn register(&self, user: &str, host: &str, password: &str) -> Result<(), HarnessError> {
        let out = Command::new("prosodyctl")
            .arg("--config")
            .arg(self.config_path())
            .args(["register", user, host, password])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(HarnessError::Register {
                user: user.into(),
                host: host.into(),
                output: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(())
    }

    /// Graceful stop (SIGTERM: Prosody closes every stream with `system-shutdown`), SIGKILL after 5 s.
    pub fn stop(&mut self) -> Result<(), HarnessError> {
        let Some(child) = self.child.as_mut() else {
            return Err(HarnessError::NotRunning);
        };
        if child.try_wait()?.is_none() {
            let _ = send_signal(child.id(), "TERM");
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.child = None;
        Ok(())
    }

    /// Abrupt death (SIGKILL): connections drop without a stream close.
    pub fn kill(&mut self) -> Result<(), HarnessError> {
        if self.child.is_none() {
            return Err(HarnessError::NotRunning);
        }
        self.kill_child();
        Ok(())
    }

    /// Freezes the process (SIGSTOP): connections stay open but nothing answers, as with a hung
    /// server or a silently broken network path. Only keepalives can notice.
    pub fn freeze(&mut self) -> Result<(), HarnessError> {
        self.signal("STOP")
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&mut self) -> Result<(), HarnessError> {
        self.signal("CONT")
    }

    fn signal(&mut self, sig: &str) -> Result<(), HarnessError> {
        let child = self.child.as_mut().ok_or(HarnessError::NotRunning)?;
        if send_signal(child.id(), sig)? {
            Ok(())
        } else {
            Err(HarnessError::NotRunning)
        }
    }

    /// Starts a stopped or killed Prosody again, on the same ports and with the same data.
    pub fn start_again(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            return Ok(());
        }
        let prosody = find_in_path("prosody").ok_or(HarnessError::NotInstalled("prosody"))?;
        self.spawn(&prosody)
    }

    /// Stop, then start on the same ports.
    pub fn restart(&mut self) -> Result<(), HarnessError> {
        if self.is_running() {
            self.stop()?;
        }
        self.start_again()
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    pub fn options(&self) -> &ProsodyOptions {
        &self.opts
    }
    pub fn ports(&self) -> Ports {
        self.ports
    }
    pub fn domain(&self) -> &str {
        &self.opts.domain
    }
    pub fn auth_domain(&self) -> &str {
        &self.opts.auth_domain
    }
    pub fn muc_domain(&self) -> &str {
        &self.opts.muc_domain
    }
    pub fn internal_muc_domain(&self) -> &str {
        &self.opts.internal_muc_domain
    }
    pub fn focus_domain(&self) -> &str {
        &self.opts.focus_domain
    }
    pub fn component_secret(&self) -> &str {
        &self.opts.component_secret
    }
    /// `127.0.0.1:<c2s>`.
    pub fn c2s_addr(&self) -> ServerAddr {
        ServerAddr::new("127.0.0.1", self.ports.c2s)
    }
    /// `127.0.0.1:<component>`.
    pub fn component_addr(&self) -> ServerAddr {
        ServerAddr::new("127.0.0.1", self.ports.component)
    }
    /// `ws://127.0.0.1:<http>/xmpp-websocket` (subprotocol `xmpp`), for lib-jitsi-meet's `serviceUrl`.
    pub fn websocket_url(&self) -> String {
        format!("ws://127.0.0.1:{}/xmpp-websocket", self.ports.http)
    }
    /// `http://127.0.0.1:<http>/http-bind`.
    pub fn bosh_url(&self) -> String {
        format!("http://127.0.0.1:{}/http-bind", self.ports.http)
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("prosody.cfg.lua")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("prosody.log")
    }
    /// The last `max_bytes` of Prosody's log (for failure messages).
    pub fn log_tail(&self, max_bytes: u64) -> String {
        read_tail(&self.log_path(), max_bytes)
    }

    /// A client config for `user@<auth domain>` on this server (plaintext, loopback).
    pub fn client_config(&self, user: &str, password: &str) -> ClientConfig {
        let jid = BareJid::new(&format!("{user}@{}", self.opts.auth_domain))
            .unwrap_or_else(|e| panic!("test user '{user}' does not form a JID: {e}"));
        ClientConfig::new(jid, password, self.c2s_addr())
    }

    /// `focus@auth.<domain>`.
    pub fn focus_client_config(&self) -> ClientConfig {
        self.client_config("focus", FOCUS_PASSWORD)
    }

    /// `jvb@auth.<domain>`.
    pub fn jvb_client_config(&self) -> ClientConfig {
        self.client_config("jvb", JVB_PASSWORD)
    }

    /// The `focus.<domain>` component.
    pub fn focus_component_config(&self) -> ComponentConfig {
        let jid = BareJid::new(&self.opts.focus_domain)
            .unwrap_or_else(|e| panic!("focus domain is not a JID: {e}"));
        ComponentConfig::new(
            jid,
            self.opts.component_secret.clone(),
            self.component_addr(),
        )
    }

    fn write_config(&self) -> Result<(), HarnessError> {
        fs::write(self.config_path(), self.config_text())?;
        Ok(())
    }

    fn config_text(&self) -> String {
        let d = self.dir.path();
        let o = &self.opts;
        let p = self.ports;
        let path = |name: &str| lua_str(&d.join(name).to_string_lossy());
        let mut c = String::new();
        let _ = writeln!(c, "-- written by testkit");
        let _ = writeln!(c, "run_as_root = true");
        let _ = writeln!(c, "daemonize = false");
        let _ = writeln!(c, "pidfile = {}", path("prosody.pid"));
        let _ = writeln!(c, "data_path = {}", path("data"));
        let _ = writeln!(c, "certificates = {}", path("certs"));
        let _ = writeln!(c, "interfaces = {{ \"127.0.0.1\" }}");
        let _ = writeln!(c, "c2s_ports = {{ {} }}", p.c2s);
        let _ = writeln!(c, "c2s_direct_tls_ports = {{}}");
        let _ = writeln!(c, "component_ports = {{ {} }}", p.component);
        let _ = writeln!(c, "component_interfaces = {{ \"127.0.0.1\" }}");
        let _ = writeln!(c, "http_ports = {{ {} }}", p.http);
        let _ = writeln!(c, "http_interfaces = {{ \"127.0.0.1\" }}");
        let _ = writeln!(c, "https_ports = {{}}");
        let _ = writeln!(c, "legacy_ssl_ports = {{}}");
        let _ = writeln!(c, "s2s_ports = {{}}");
        let _ = writeln!(c, "s2s_direct_tls_ports = {{}}");
        let _ = writeln!(c, "c2s_require_encryption = false");
        let _ = writeln!(c, "allow_unencrypted_plain_auth = true");
        let _ = writeln!(c, "consider_bosh_secure = true");
        let _ = writeln!(c, "consider_websocket_secure = true");
        let _ = writeln!(
            c,
            "admins = {{ {} }}",
            lua_str(&format!("focus@{}", o.auth_domain))
        );
        let _ = writeln!(
            c,
            "modules_enabled = {{ \"roster\", \"saslauth\", \"tls\", \"disco\", \"ping\", \"register\", \
             \"bosh\", \"websocket\", \"smacks\", \"posix\" }}"
        );
        let _ = writeln!(c, "modules_disabled = {{ \"s2s\" }}");
        let _ = writeln!(
            c,
            "log = {{ {{ levels = {{ min = \"debug\" }}, to = \"file\", filename = {} }} }}",
            path("prosody.log")
        );
        if o.tls {
            let _ = writeln!(
                c,
                "ssl = {{ certificate = {}, key = {} }}",
                path("certs/test.crt"),
                path("certs/test.key")
            );
        }
        c.push_str(&o.extra_global_config);
        c.push('\n');
        let _ = writeln!(c, "VirtualHost {}", lua_str(&o.domain));
        let _ = writeln!(c, "  authentication = \"anonymous\"");
        let _ = writeln!(c, "VirtualHost {}", lua_str(&o.auth_domain));
        let _ = writeln!(c, "  authentication = \"internal_hashed\"");
        for muc in [&o.muc_domain, &o.internal_muc_domain] {
            let _ = writeln!(c, "Component {} \"muc\"", lua_str(muc));
            let _ = writeln!(c, "  restrict_room_creation = false");
            let _ = writeln!(c, "  muc_room_locking = false");
        }
        let _ = writeln!(c, "Component {}", lua_str(&o.focus_domain));
        let _ = writeln!(c, "  component_secret = {}", lua_str(&o.component_secret));
        c
    }

    fn spawn(&mut self, prosody: &Path) -> Result<(), HarnessError> {
        let log_path = self.log_path();
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let stdout = fs::File::create(self.dir.path().join("prosody.stdout"))?;
        let stderr = stdout.try_clone()?;
        let child = Command::new(prosody)
            .arg("-F")
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()?;
        self.child = Some(child);
        let wanted = [
            format!("Activated service 'c2s' on [127.0.0.1]:{}", self.ports.c2s),
            format!(
                "Activated service 'component' on [127.0.0.1]:{}",
                self.ports.component
            ),
            format!(
                "Activated service 'http' on [127.0.0.1]:{}",
                self.ports.http
            ),
        ];
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = read_from(&log_path, log_start);
            if log.contains("Failed to open server port") {
                return Err(self.start_failed("a port could not be opened"));
            }
            if wanted.iter().all(|w| log.contains(w.as_str())) {
                break;
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                let stdout =
                    fs::read_to_string(self.dir.path().join("prosody.stdout")).unwrap_or_default();
                self.child = None;
                return Err(self.start_failed(&format!("prosody exited with {status}: {stdout}")));
            }
            if Instant::now() >= deadline {
                return Err(self.start_failed("timed out waiting for the ports to open"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        // The log line is written just before the listener accepts; make sure it does.
        while std::net::TcpStream::connect(("127.0.0.1", self.ports.c2s)).is_err() {
            if Instant::now() >= deadline {
                return Err(self.start_failed("c2s port does not accept connections"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }

    fn start_failed(&self, reason: &str) -> HarnessError {
        HarnessError::StartFailed {
            reason: reason.into(),
            log: self.log_tail(4000),
        }
    }

    fn kill_child(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Prosody {
    fn drop(&mut self) {
        // SIGKILL works on a frozen (SIGSTOPped) process too.
        self.kill_child();
    }
}

/// `kill -SIG pid` through the shell's builtin (no unsafe code, no dependency on procps).
fn send_signal(pid: u32, sig: &str) -> io::Result<bool> {
    Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} {pid}"))
        .stdin(Stdio::null())
        .status()
        .map(|s| s.success())
}

/// A free TCP port on 127.0.0.1 (bound, then released for the process under test).
pub fn free_tcp_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free UDP port on 127.0.0.1 (bound, then released for the process under test).
pub fn free_udp_port() -> io::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The browser end-to-end harness directory (`e2e/`: Playwright drivers and pages).
pub fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../e2e")
}

/// Makes sure the browser harness is usable: its npm packages (`e2e/install.sh`, idempotent and
/// pinned) and Chromium. Once per process, so tests running in parallel threads do not race two
/// `npm ci`.
pub fn ensure_browser_harness() -> Result<(), HarnessError> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let r = DONE.get_or_init(|| {
        let st = Command::new("bash")
            .arg(e2e_dir().join("install.sh"))
            .status()
            .map_err(|e| format!("running e2e/install.sh: {e}"))?;
        if !st.success() {
            return Err("e2e/install.sh failed".into());
        }
        if !Path::new("/usr/bin/chromium").exists() && std::env::var_os("CHROMIUM_PATH").is_none() {
            return Err("chromium is not installed".into());
        }
        Ok(())
    });
    r.clone().map_err(HarnessError::BrowserHarness)
}

/// Three distinct free loopback ports (bound together, then released for Prosody).
fn free_ports() -> io::Result<Ports> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    let c = TcpListener::bind("127.0.0.1:0")?;
    Ok(Ports {
        c2s: a.local_addr()?.port(),
        component: b.local_addr()?.port(),
        http: c.local_addr()?.port(),
    })
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    find_in(&std::env::var_os("PATH")?, name)
}

fn find_in(path: &std::ffi::OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

fn generate_certificate(dir: &Path, opts: &ProsodyOptions) -> Result<(), HarnessError> {
    let san = [
        &opts.domain,
        &opts.auth_domain,
        &opts.muc_domain,
        &opts.internal_muc_domain,
    ]
    .iter()
    .map(|d| format!("DNS:{d}"))
    .collect::<Vec<_>>()
    .join(",");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout",
        ])
        .arg(dir.join("certs/test.key"))
        .arg("-out")
        .arg(dir.join("certs/test.crt"))
        .args(["-subj", &format!("/CN={}", opts.auth_domain)])
        .args(["-addext", &format!("subjectAltName={san}")])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| HarnessError::Certificate(format!("cannot run openssl: {e}")))?;
    if !out.status.success() {
        return Err(HarnessError::Certificate(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(())
}

/// A Lua string literal.
fn lua_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn read_from(path: &Path, offset: u64) -> String {
    let Ok(mut f) = fs::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut buf).is_err() {
        return String::new();
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Builds workspace binaries (`(package, bin)` pairs) next to `sibling`, an executable of the running
/// test (`env!("CARGO_BIN_EXE_…")`): same target directory and profile, so a release test run gets
/// release binaries. Returns the profile directory. Other crates' binaries have no
/// `CARGO_BIN_EXE_` variable, so tests that run them build them this way.
pub fn build_workspace_binaries(sibling: &Path, bins: &[(&str, &str)]) -> PathBuf {
    let profile_dir = sibling.parent().expect("profile dir").to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Not the variables cargo set for the test (CARGO_MANIFEST_DIR …): build scripts track some of
    // them and would rebuild their crates on every call.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("CARGO_") && k != "CARGO_HOME")
            || k.starts_with("RUSTC")
            || k == "OUT_DIR"
        {
            cmd.env_remove(&k);
        }
    }
    cmd.args(["build", "--quiet"]);
    for (package, bin) in bins {
        cmd.args(["-p", package, "--bin", bin]);
    }
    cmd.arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "building {bins:?} failed");
    profile_dir
}

/// The exact environment the manifests give a container: `manifests/env/<name>.env` (generated from
/// the rendered manifests by `manifests/policy_test.py`), with its `${…}` placeholders replaced from
/// `subs` (`("HOST_IP", "127.0.0.1")` replaces `${HOST_IP}`) and then `overrides` set: a loopback test
/// changes only what the file's header allows (own Prosody, free ports, no STUN). A placeholder left
/// unreplaced is an error, so a new one in the manifests cannot slip through untested.
pub fn manifest_env(
    name: &str,
    subs: &[(&str, &str)],
    overrides: &[(&str, String)],
) -> Result<Vec<(String, String)>, HarnessError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/env")
        .join(format!("{name}.env"));
    let fail = |reason: String| HarnessError::ManifestEnv {
        path: path.display().to_string(),
        reason,
    };
    let text = fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
    let mut env: Vec<(String, String)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| fail(format!("not KEY=VALUE: {line}")))?;
        let mut v = v.to_owned();
        for (placeholder, value) in subs {
            v = v.replace(&format!("${{{placeholder}}}"), value);
        }
        if v.contains("${") {
            return Err(fail(format!("unsubstituted placeholder in {line}")));
        }
        env.push((k.to_owned(), v));
    }
    for (k, v) in overrides {
        env.retain(|(name, _)| name != k);
        env.push(((*k).to_owned(), v.clone()));
    }
    Ok(env)
}

fn read_tail(path: &Path, max_bytes: u64) -> String {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    read_from(path, len.saturating_sub(max_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_strings_are_escaped() {
        assert_eq!(lua_str("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn default_domains_follow_the_jitsi_layout() {
        let o = ProsodyOptions::default();
        assert_eq!(o.auth_domain, "auth.meet.example");
        assert_eq!(o.muc_domain, "conference.meet.example");
        assert_eq!(o.internal_muc_domain, "internal.auth.meet.example");
        assert_eq!(o.focus_domain, "focus.meet.example");
        assert_eq!(o.users.len(), 2);
    }

    #[test]
    fn a_missing_prosody_is_reported_with_the_install_command() {
        assert!(find_in(std::ffi::OsStr::new("/nonexistent:/also-not"), "prosody").is_none());
        assert!(find_in(std::ffi::OsStr::new("/bin:/usr/bin"), "sh").is_some());
        let msg = HarnessError::NotInstalled("prosody").to_string();
        assert!(msg.contains("scripts/install-deps.sh"), "{msg}");
    }

    #[test]
    fn free_ports_are_distinct() {
        let p = free_ports().unwrap();
        assert!(p.c2s != p.component && p.component != p.http && p.c2s != p.http);
    }
}
