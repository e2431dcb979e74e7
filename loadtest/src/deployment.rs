//! Where the participants go: an existing deployment (XMPP address and domains), or a local one
//! started here on loopback — a real Prosody (`testkit`), our `bridge` and our `focus`
//! binaries (release builds for measurements) — with the process ids the sampler watches.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use signaling::xmpp::ServerAddr;
use testkit::{FOCUS_PASSWORD, JVB_PASSWORD, Prosody, ProsodyOptions};

/// The deployment the participants join.
#[derive(Debug, Clone)]
pub struct Target {
    /// Prosody c2s.
    pub server: ServerAddr,
    /// Anonymous VirtualHost (`meet.jitsi`).
    pub domain: String,
    /// Conference MUC service (`muc.meet.jitsi`).
    pub muc_domain: String,
    /// Where conference requests go (`focus.meet.jitsi`).
    pub focus: String,
    /// `http://host:port/colibri/stats` of the bridge, if reachable.
    pub bridge_stats_url: Option<String>,
    /// name → pid of server processes on this machine (sampled for CPU and memory).
    pub pids: Vec<(String, u32)>,
    /// Janus's HTTP API (`http://127.0.0.1:<port>/janus`): the participants join VideoRoom rooms
    /// there instead (the XMPP fields are then unused).
    pub janus_url: Option<String>,
}

impl Target {
    /// A local Janus (`loadtest --sfu janus`): its API and its process, sampled as `janus`.
    pub fn janus(url: String, pid: u32) -> anyhow::Result<Target> {
        Ok(Target {
            server: ServerAddr::parse("127.0.0.1", 5222)?,
            domain: "janus.invalid".into(),
            muc_domain: "janus.invalid".into(),
            focus: "janus.invalid".into(),
            bridge_stats_url: None,
            pids: vec![("janus".into(), pid)],
            janus_url: Some(url),
        })
    }
}

/// Where the SFU process (our bridge or Janus) runs: its CPUs, its network namespace and the
/// addresses on either side. Loopback by default; `crate::netns` for the split namespaces.
#[derive(Debug, Clone)]
pub struct SfuPlace {
    /// Run under `taskset -c <cpus>` (measurements pin the SFU away from the load generator).
    pub cpus: Option<String>,
    /// Prefix that starts the SFU in another network namespace (`ip netns exec NAME`).
    pub netns_prefix: Vec<String>,
    /// The SFU's address: where it listens (media, HTTP) and what it advertises.
    pub addr: IpAddr,
    /// The load generator's side as the SFU reaches it (Prosody for the bridge).
    pub gen_addr: IpAddr,
}

impl Default for SfuPlace {
    fn default() -> Self {
        let lo = IpAddr::from([127, 0, 0, 1]);
        SfuPlace {
            cpus: None,
            netns_prefix: Vec::new(),
            addr: lo,
            gen_addr: lo,
        }
    }
}

impl SfuPlace {
    /// The command that starts `bin` there. `ip netns exec` and `taskset` both exec the next
    /// program without forking: the child's pid is the SFU's own (checked after start-up with
    /// [`crate::netns::check_comm`]).
    pub fn command(&self, bin: &Path) -> Command {
        let mut argv: Vec<std::ffi::OsString> = self.netns_prefix.iter().map(Into::into).collect();
        if let Some(cpus) = &self.cpus {
            argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
        }
        argv.push(bin.into());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        cmd
    }
}

/// How to start the local deployment.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Directory holding the `bridge` and `focus` binaries.
    pub bin_dir: PathBuf,
    /// Extra environment for the bridge (e.g. `LOG_LEVEL`).
    pub bridge_env: Vec<(String, String)>,
    pub focus_env: Vec<(String, String)>,
    /// Prosody's log level: `info` at least (the harness waits for its "Activated service"
    /// lines); `debug` costs Prosody CPU during joins.
    pub prosody_log_level: String,
    /// Where the bridge runs (CPUs, namespace, addresses).
    pub bridge: SfuPlace,
}

impl LocalOptions {
    /// The binaries next to the running executable (cargo puts them in one profile directory).
    pub fn next_to_current_exe() -> anyhow::Result<LocalOptions> {
        let exe = std::env::current_exe().context("current executable")?;
        let dir = exe.parent().context("executable directory")?;
        // Test and bench executables live in <profile>/deps.
        let dir = if dir.file_name().is_some_and(|n| n == "deps") {
            dir.parent().unwrap_or(dir)
        } else {
            dir
        };
        Ok(LocalOptions {
            bin_dir: dir.to_path_buf(),
            bridge_env: Vec::new(),
            focus_env: Vec::new(),
            prosody_log_level: "info".into(),
            bridge: SfuPlace::default(),
        })
    }
}

/// A child process that is stopped (SIGINT, then SIGKILL) when dropped, its output in a log file.
pub(crate) struct Proc {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: PathBuf,
    ) -> anyhow::Result<Proc> {
        let out = std::fs::File::create(&log).with_context(|| format!("{}", log.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let child = cmd
            .spawn()
            .with_context(|| format!("start {name} ({:?})", cmd.get_program()))?;
        Ok(Proc {
            name,
            child: Some(child),
            log,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// The tail of its log.
    pub(crate) fn log_tail(&self, bytes: usize) -> String {
        tail(&self.log, bytes)
    }

    /// `Some(why, with the log's tail)` once it has exited.
    pub(crate) fn exited(&mut self) -> Option<String> {
        let c = self.child.as_mut()?;
        match c.try_wait() {
            Ok(Some(status)) => Some(format!(
                "{} exited with {status}; log tail:\n{}",
                self.name,
                tail(&self.log, 3000)
            )),
            _ => None,
        }
    }

    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SIGINT: "exit now" for both binaries (SIGTERM asks the bridge to drain first).
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tail(path: &Path, bytes: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let start = text.len().saturating_sub(bytes);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

/// Prosody + bridge + focus on loopback. Everything stops when this is dropped.
pub struct LocalDeployment {
    // Drop order: focus, bridge, then Prosody.
    focus: Proc,
    bridge: Proc,
    prosody: Prosody,
    pub bridge_rest_port: u16,
    /// The bridge's REST (and media) address.
    pub bridge_addr: IpAddr,
    pub focus_rest_port: u16,
    dir: tempfile::TempDir,
}

impl LocalDeployment {
    /// Starts everything and waits until the focus reports itself healthy (it sees the bridge).
    pub fn start(opts: &LocalOptions) -> anyhow::Result<LocalDeployment> {
        let bridge_bin = opts.bin_dir.join("bridge");
        let focus_bin = opts.bin_dir.join("focus");
        for b in [&bridge_bin, &focus_bin] {
            if !b.is_file() {
                bail!(
                    "{} not found: build it with `cargo build --release -p bridge -p focus` \
                     (or pass --bin-dir)",
                    b.display()
                );
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("loadtest-deployment-")
            .tempdir()?;
        let mut popts = ProsodyOptions::new("meet.example");
        // The harness logs at debug level, which costs Prosody CPU during joins; a later `log`
        // assignment in the global section wins. The harness waits for "Activated service" lines
        // (info) in `prosody.log` next to the config, and the config's directory is only known
        // inside it: the config is Lua, so it names its own directory.
        popts.extra_global_config = format!(
            "log = {{ {{ levels = {{ min = \"{}\" }}, to = \"file\", \
             filename = (debug.getinfo(1, \"S\").source:match(\"^@(.*/)\") or \"./\") .. \"prosody.log\" }} }}\n",
            opts.prosody_log_level,
        );
        if !opts.bridge.gen_addr.is_loopback() {
            // The bridge reaches Prosody from the other namespace (`crate::netns`); a later
            // `interfaces` assignment in the global section wins over the harness's loopback one.
            // Off loopback the bridge requires STARTTLS (any certificate, as docker-jitsi-meet's
            // internal XMPP): Prosody gets the harness's self-signed one.
            popts = popts.with_tls();
            popts.extra_global_config += &format!(
                "interfaces = {{ \"127.0.0.1\", \"{}\" }}\n",
                opts.bridge.gen_addr
            );
        }
        let prosody =
            Prosody::start_with(popts).context("start Prosody (scripts/install-deps.sh)")?;
        let ports = prosody.ports();
        let bridge_rest_port = testkit::free_tcp_port()?;
        let media_port = testkit::free_udp_port()?;
        let place = &opts.bridge;
        let (sfu, gen_side) = (place.addr.to_string(), place.gen_addr.to_string());
        let mut cmd = place.command(&bridge_bin);
        cmd.env_clear()
            // JVB_MEDIA_WORKERS from our environment (tests run with 1, 2 or the default).
            .envs(std::env::var("JVB_MEDIA_WORKERS").map(|v| ("JVB_MEDIA_WORKERS", v)))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XMPP_SERVER", &gen_side)
            .env("XMPP_PORT", ports.c2s.to_string())
            .env("XMPP_DOMAIN", prosody.domain())
            .env("XMPP_AUTH_DOMAIN", prosody.auth_domain())
            .env("XMPP_INTERNAL_MUC_DOMAIN", prosody.internal_muc_domain())
            .env("JVB_AUTH_USER", "jvb")
            .env("JVB_AUTH_PASSWORD", JVB_PASSWORD)
            .env("JVB_BREWERY_MUC", "jvbbrewery")
            .env("JVB_MUC_NICKNAME", "jvb-loadtest")
            .env("JVB_PORT", media_port.to_string())
            .env("JVB_ADVERTISE_IPS", &sfu)
            .env("JVB_MEDIA_HOST", &sfu)
            .env("JVB_DISABLE_STUN", "true")
            .env("JVB_REST_HOST", &sfu)
            .env("JVB_REST_PORT", bridge_rest_port.to_string())
            // The reports read /colibri/stats (off by default, as in the jitsi/jvb image).
            .env("COLIBRI_REST_ENABLED", "true")
            .env("JVB_STATS_INTERVAL", "1s");
        for (k, v) in &opts.bridge_env {
            cmd.env(k, v);
        }
        let mut bridge = Proc::spawn("bridge", cmd, dir.path().join("bridge.log"))?;

        let focus_rest_port = testkit::free_tcp_port()?;
        let mut cmd = Command::new(&focus_bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("XMPP_SERVER", "127.0.0.1")
            .env("XMPP_PORT", ports.c2s.to_string())
            .env("XMPP_DOMAIN", prosody.domain())
            .env("XMPP_AUTH_DOMAIN", prosody.auth_domain())
            .env("XMPP_MUC_DOMAIN", prosody.muc_domain())
            .env("XMPP_INTERNAL_MUC_DOMAIN", prosody.internal_muc_domain())
            .env("JICOFO_AUTH_PASSWORD", FOCUS_PASSWORD)
            .env("JICOFO_COMPONENT_SECRET", prosody.component_secret())
            .env("XMPP_COMPONENT_PORT", ports.component.to_string())
            .arg("--rest-port")
            .arg(focus_rest_port.to_string());
        for (k, v) in &opts.focus_env {
            cmd.env(k, v);
        }
        let mut focus = Proc::spawn("focus", cmd, dir.path().join("focus.log"))?;

        let health = format!("http://127.0.0.1:{focus_rest_port}/about/health");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(e) = bridge.exited().or_else(|| focus.exited()) {
                bail!("{e}");
            }
            let ok = service::http_request("GET", &health, None, Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the focus did not become healthy (no bridge?)\n--- focus ---\n{}\n--- bridge ---\n{}",
                    tail(&focus.log, 3000),
                    tail(&bridge.log, 3000)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        crate::netns::check_comm(bridge.pid(), "bridge")?;
        Ok(LocalDeployment {
            focus,
            bridge,
            prosody,
            bridge_rest_port,
            bridge_addr: opts.bridge.addr,
            focus_rest_port,
            dir,
        })
    }

    /// Where participants connect, and what to sample.
    pub fn target(&self) -> Target {
        let prosody_pid = std::fs::read_to_string(self.prosody.dir().join("prosody.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let mut pids = vec![
            ("bridge".to_owned(), self.bridge.pid()),
            ("focus".to_owned(), self.focus.pid()),
        ];
        if let Some(p) = prosody_pid {
            pids.push(("prosody".to_owned(), p));
        }
        Target {
            server: self.prosody.c2s_addr(),
            domain: self.prosody.domain().to_owned(),
            muc_domain: self.prosody.muc_domain().to_owned(),
            focus: self.prosody.focus_domain().to_owned(),
            bridge_stats_url: Some(format!(
                "http://{}:{}/colibri/stats",
                self.bridge_addr, self.bridge_rest_port
            )),
            pids,
            janus_url: None,
        }
    }

    /// Logs of the bridge and focus (tails), for failure messages.
    pub fn log_tails(&self, bytes: usize) -> String {
        format!(
            "--- bridge ---\n{}\n--- focus ---\n{}",
            tail(&self.bridge.log, bytes),
            tail(&self.focus.log, bytes)
        )
    }

    /// Whether both binaries still run.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.bridge.exited().or_else(|| self.focus.exited()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
