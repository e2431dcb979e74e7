//! A local Janus (Debian `janus` 1.1.x) for side-by-side runs: a temporary configuration (a copy
//! of `/etc/janus` with only the VideoRoom plugin and the plain-HTTP transport, both on
//! 127.0.0.1), started as a child process and stopped (SIGINT, then SIGKILL) when dropped.
//!
//! Janus 1.1.2 leaves out every interface flagged `IFF_LOOPBACK` when it lists its ICE addresses
//! (`src/ice.c`, `janus_ice_setup_local` upstream), so on its own it would offer the machine's
//! other addresses. The process gets a tiny `getifaddrs` wrapper (`LD_PRELOAD`, compiled here
//! with `cc`) that clears that flag, and `ice_enforce_list = "127.0.0.1"`: its only candidate is
//! then 127.0.0.1, which the participants check in every SDP (`Sdp::remote_transport`).
//!
//! In the split namespaces (`crate::netns`) Janus runs in the SFU's namespace on the veth address
//! instead: the HTTP API and `ice_enforce_list` name that address, which is no loopback
//! interface, so the shim is not needed there.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::deployment::{Proc, SfuPlace};

/// The `getifaddrs` wrapper preloaded into Janus (see the module comment).
const LOOPBACK_SHIM: &str = r#"#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
/* Clears IFF_LOOPBACK so that Janus lists 127.0.0.1 as an ICE address (loadtest only). */
int getifaddrs(struct ifaddrs **ifap) {
    static int (*real)(struct ifaddrs **);
    if (!real) real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    if (!real) return -1;
    int r = real(ifap);
    if (r == 0)
        for (struct ifaddrs *i = *ifap; i; i = i->ifa_next) i->ifa_flags &= ~IFF_LOOPBACK;
    return r;
}
"#;

/// How to start Janus.
#[derive(Debug, Clone)]
pub struct JanusOptions {
    /// The `janus` executable.
    pub binary: PathBuf,
    /// Where the packaged configuration is copied from.
    pub config_source: PathBuf,
    /// UDP ports for ICE (`media.rtp_port_range`).
    pub rtp_ports: (u16, u16),
    /// `general.debug_level` (4 = Janus's default, info).
    pub debug_level: u8,
    /// Where Janus runs (CPUs, namespace, its address).
    pub place: SfuPlace,
}

impl Default for JanusOptions {
    fn default() -> Self {
        JanusOptions {
            binary: PathBuf::from("janus"),
            config_source: PathBuf::from("/etc/janus"),
            rtp_ports: (40000, 49999),
            debug_level: 4,
            place: SfuPlace::default(),
        }
    }
}

/// A running Janus on 127.0.0.1 (or its split-namespace address).
pub struct JanusServer {
    // Dropped (stopped) before `dir` is removed.
    proc: Proc,
    /// `http://<address>:<port>/janus`.
    pub url: String,
    dir: tempfile::TempDir,
}

/// Janus's library directory (`plugins`, `transports`, … below it), as the package installs it.
fn lib_dir() -> anyhow::Result<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("janus"))
                .collect()
        })
        .unwrap_or_default();
    candidates.push(PathBuf::from("/usr/lib/janus"));
    candidates.push(PathBuf::from("/opt/janus/lib/janus"));
    candidates
        .into_iter()
        .find(|p| p.join("plugins/libjanus_videoroom.so").is_file())
        .context("Janus's VideoRoom plugin not found (scripts/install-deps.sh installs `janus`)")
}

/// `.so` files of `dir` other than `keep`, comma-separated (a `disable = …` list).
fn others(dir: &Path, keep: &str) -> String {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".so") && n != keep)
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v.join(",")
}

/// `janus.jcfg`: the VideoRoom-only configuration, ICE on `opts.place.addr` only.
pub fn janus_config(conf: &Path, lib: &Path, opts: &JanusOptions) -> String {
    let plugins = lib.join("plugins");
    let transports = lib.join("transports");
    format!(
        r#"general: {{
	configs_folder = "{conf}"
	plugins_folder = "{plugins}"
	transports_folder = "{transports}"
	events_folder = "{lib}/events"
	loggers_folder = "{lib}/loggers"
	debug_level = {debug}
	session_timeout = 60
	server_name = "loadtest"
}}
certificates: {{
}}
media: {{
	rtp_port_range = "{lo}-{hi}"
}}
nat: {{
	nice_debug = false
	ice_lite = false
	ice_tcp = false
	full_trickle = false
	ignore_mdns = true
	ice_enforce_list = "{addr}"
}}
plugins: {{
	disable = "{disable_plugins}"
}}
transports: {{
	disable = "{disable_transports}"
}}
loggers: {{
	disable = "{disable_loggers}"
}}
events: {{
	broadcast = false
}}
"#,
        conf = conf.display(),
        plugins = plugins.display(),
        transports = transports.display(),
        lib = lib.display(),
        debug = opts.debug_level,
        addr = opts.place.addr,
        lo = opts.rtp_ports.0,
        hi = opts.rtp_ports.1,
        disable_plugins = others(&plugins, "libjanus_videoroom.so"),
        disable_transports = others(&transports, "libjanus_http.so"),
        disable_loggers = others(&lib.join("loggers"), ""),
    )
}

/// `janus.transport.http.jcfg`: plain HTTP on `ip`:`port`, no admin API.
pub fn http_config(ip: std::net::IpAddr, port: u16) -> String {
    format!(
        r#"general: {{
	json = "compact"
	base_path = "/janus"
	http = true
	port = {port}
	ip = "{ip}"
	https = false
}}
admin: {{
	admin_http = false
	admin_https = false
}}
"#
    )
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let e = e?;
        if e.file_type()?.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Compiles [`LOOPBACK_SHIM`] into `dir` and returns the library's path.
fn loopback_shim(dir: &Path) -> anyhow::Result<PathBuf> {
    let shim_c = dir.join("loopback-shim.c");
    let shim = dir.join("loopback-shim.so");
    std::fs::write(&shim_c, LOOPBACK_SHIM)?;
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&shim)
        .arg(&shim_c)
        .arg("-ldl")
        .output()
        .context("cc (the loopback shim for Janus needs a C compiler)")?;
    if !out.status.success() {
        bail!(
            "cc failed on the loopback shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(shim)
}

impl JanusServer {
    /// Writes the configuration, compiles the shim, starts Janus and waits for its HTTP API.
    pub fn start(opts: &JanusOptions) -> anyhow::Result<JanusServer> {
        let lib = lib_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("loadtest-janus-")
            .tempdir()?;
        let conf = dir.path().join("conf");
        copy_dir(&opts.config_source, &conf)?;
        std::fs::write(conf.join("janus.jcfg"), janus_config(&conf, &lib, opts))?;
        let port = testkit::free_tcp_port()?;
        let addr = opts.place.addr;
        std::fs::write(
            conf.join("janus.transport.http.jcfg"),
            http_config(addr, port),
        )?;
        // No static rooms: the scenario creates its own.
        std::fs::write(conf.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;

        let mut cmd = opts.place.command(&opts.binary);
        // Janus logs to stdout (the log file).
        cmd.arg("-F")
            .arg(&conf)
            .arg("-C")
            .arg(conf.join("janus.jcfg"));
        if addr.is_loopback() {
            cmd.env("LD_PRELOAD", loopback_shim(dir.path())?);
        }
        let mut server = JanusServer {
            proc: Proc::spawn("janus", cmd, dir.path().join("janus.log"))?,
            url: format!("http://{addr}:{port}/janus"),
            dir,
        };
        let info = format!("http://{addr}:{port}/janus/info");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(e) = server.exited() {
                bail!("{e}");
            }
            let ok = service::http_request("GET", &info, None, Duration::from_secs(2))
                .is_ok_and(|r| r.status == 200);
            if ok {
                break;
            }
            if Instant::now() > deadline {
                bail!("Janus did not answer on {info}\n{}", server.log_tail(3000));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        crate::netns::check_comm(server.pid(), "janus")?;
        Ok(server)
    }

    /// The Janus process (when started through `taskset`, taskset has exec'd it: same pid).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self, bytes: usize) -> String {
        self.proc.log_tail(bytes)
    }

    /// `Some(why)` once Janus has exited.
    pub fn exited(&mut self) -> Option<String> {
        self.proc.exited()
    }
}
