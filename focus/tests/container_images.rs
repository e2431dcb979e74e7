//! Our images, built from `manifests/docker/*.Dockerfile` with podman and run for real: the drop-in
//! claim proven with containers, not only with binaries. A missing runtime library, a wrong path, a
//! user without rights to a file, an entrypoint that ignores a variable, a wrong HEALTHCHECK: each makes
//! a test here fail.
//!
//! - The images are built by `manifests/docker/build-local.sh` from the binaries of this test's profile
//!   (or of `CONTAINER_TEST_BINARIES=DIR`), on a Debian base made by debootstrap, in a podman store of
//!   its own under `<target>/containers` (see `images`).
//! - Containers run as Kubernetes runs them (`--network host`, read-only root, no capabilities, no
//!   privilege escalation, the image's own user), on loopback only, against a real Prosody on the host
//!   whose name the env gives (`--add-host NAME:127.0.0.1`), with the environment of
//!   `manifests/env/*.env` or a docker-jitsi-meet `.env`: only the values a loopback test must change are
//!   changed (free ports, loopback addresses, no STUN; see the files' headers).
//! - Every variable of `manifests/env/*.env` has a row in [`BRIDGE_VARS`] / [`FOCUS_VARS`] saying how
//!   the tests prove the image reads it ([`Proof`]); a variable without one fails
//!   `container_variable_tables_cover_the_manifests_env`.
//!
//! Run one at a time (`e2e_` names: nextest's heavy group); `scripts/test.sh` runs them as the CI's
//! "containers" step.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::browser::Participants;
use common::{client_proxy_config, free_port, free_udp_port, init_tracing};
use serde_json::Value;
use service::http_request;
use testkit::{FOCUS_PASSWORD, JVB_PASSWORD, Prosody, ProsodyOptions, manifest_env};

type Env = Vec<(String, String)>;

/// Where docker-jitsi-meet's Prosody puts the focus's client_proxy (our stand-in lives beside the
/// harness's own `focus.meet.jitsi` component).
const PROXY: &str = "proxy.meet.jitsi";
/// The node address of the manifests (`${HOST_IP}`): the bridge's REST, media and advertised address.
/// Not 127.0.0.1, so that a REST server that ignored `JVB_REST_HOST` would show.
const HOST_IP: &str = "127.0.0.2";
/// `JICOFO_REST_HOST` of the loopback test (the manifests' 0.0.0.0 would listen on every interface).
const FOCUS_REST_HOST: &str = "127.0.0.3";
/// The user our images run as (manifests' `runAsUser` too).
const IMAGE_UID: &str = "10001";
/// Longest wait for a container to report healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------------
// How each variable the manifests set is proven to be read

/// How a test proves that an image reads a variable the manifests give it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Proof {
    /// A check of the running container shows the value's effect; the check records the variable
    /// ([`Observed`]) and the call test fails if one listed here was not recorded.
    Observed,
    /// Changing the value changes `bridge --print-config` run through the image's entrypoint with the
    /// same environment, or the changed value is refused with a message naming the variable.
    Config,
    /// With this value the container stops at start with a message naming the variable.
    Refused(&'static str),
    /// A loopback test changes the value (see the header of `manifests/env/*.env`); the changed value
    /// is still given to the container.
    Loopback,
    /// Not used by this image: why (and why that is what the manifests' value asks for).
    Unused(&'static str),
}

use Proof::{Config, Loopback, Observed, Refused, Unused};

const TZ_UNUSED: &str =
    "log timestamps are UTC (RFC 3339) whatever TZ says, as the manifests' TZ=UTC asks";

/// Every variable of `manifests/env/bridge.env`.
const BRIDGE_VARS: &[(&str, &[Proof])] = &[
    // Off by default, as in the jitsi/jvb image: /colibri/stats answering proves it was read.
    (
        "COLIBRI_REST_ENABLED",
        &[Config, Observed, Refused("maybe")],
    ),
    ("JVB_ADVERTISE_IPS", &[Config]),
    // Redacted in --print-config: proven by the bridge logging in (the focus sees it).
    ("JVB_AUTH_PASSWORD", &[Observed]),
    ("JVB_AUTH_USER", &[Config]),
    ("JVB_BREWERY_MUC", &[Config]),
    ("JVB_MAX_PACKET_RATE", &[Config, Refused("0")]),
    ("JVB_MUC_NICKNAME", &[Config, Observed]),
    ("JVB_PORT", &[Config, Refused("ten-thousand"), Loopback]),
    ("JVB_REST_HOST", &[Config, Refused("localhost"), Observed]),
    ("JVB_REST_PORT", &[Config, Loopback, Observed]),
    // STUN itself is off in a loopback test (JVB_DISABLE_STUN=true).
    ("JVB_STUN_SERVERS", &[Config]),
    ("LOG_FORMAT", &[Config, Refused("xml"), Observed]),
    ("PUBLIC_URL", &[Config]),
    ("SHUTDOWN_REST_ENABLED", &[Config, Observed]),
    ("TZ", &[Unused(TZ_UNUSED)]),
    ("XMPP_AUTH_DOMAIN", &[Config]),
    ("XMPP_DOMAIN", &[Config]),
    ("XMPP_INTERNAL_MUC_DOMAIN", &[Config]),
    (
        "XMPP_MUC_DOMAIN",
        &[Unused(
            "the conference MUC is the focus's business; docker-jitsi-meet's jvb service is not given it, \
             and the bridge lists it among the variables without effect",
        )],
    ),
    ("XMPP_PORT", &[Config, Loopback, Observed]),
    ("XMPP_SERVER", &[Config, Observed]),
];

/// Every variable of `manifests/env/focus.env`.
const FOCUS_VARS: &[(&str, &[Proof])] = &[
    ("JICOFO_AUTH_PASSWORD", &[Refused(""), Observed]),
    // `true` serves /about/health (as Jicofo; `false` leaves it out). Observed: unhealthy (503)
    // without a bridge, healthy (200) once one is operational. `tests/config_dropin.rs` proves `false`.
    ("JICOFO_ENABLE_HEALTH_CHECKS", &[Refused("maybe"), Observed]),
    // Its effect (REST on all addresses) is decided by JICOFO_REST_HOST, which the manifests set too.
    ("JICOFO_ENABLE_REST", &[Refused("maybe")]),
    (
        "JICOFO_REST_HOST",
        &[Refused("localhost"), Loopback, Observed],
    ),
    ("JICOFO_REST_PORT", &[Refused("http"), Loopback, Observed]),
    ("JVB_BREWERY_MUC", &[Refused("jvb@brewery")]),
    ("LOG_FORMAT", &[Refused("xml"), Observed]),
    (
        "PUBLIC_URL",
        &[Unused(
            "not a jicofo variable: docker-jitsi-meet's jicofo service is not given it",
        )],
    ),
    ("TZ", &[Unused(TZ_UNUSED)]),
    ("XMPP_AUTH_DOMAIN", &[Refused("auth@meet.jitsi")]),
    ("XMPP_DOMAIN", &[Refused("meet@jitsi")]),
    (
        "XMPP_INTERNAL_MUC_DOMAIN",
        &[Refused("internal@meet.jitsi")],
    ),
    ("XMPP_MUC_DOMAIN", &[Refused("muc@meet.jitsi")]),
    ("XMPP_PORT", &[Refused("xmpp"), Loopback, Observed]),
    ("XMPP_SERVER", &[Refused("shard-0-prosody:xmpp"), Observed]),
];

/// Variables a live check has shown to be honoured, per image.
#[derive(Debug, Default)]
struct Observations {
    bridge: BTreeSet<&'static str>,
    focus: BTreeSet<&'static str>,
}

impl Observations {
    /// Fails unless every variable marked [`Proof::Observed`] was observed.
    fn assert_complete(&self) {
        for (image, table, seen) in [
            ("bridge", BRIDGE_VARS, &self.bridge),
            ("focus", FOCUS_VARS, &self.focus),
        ] {
            let missing: Vec<&str> = table
                .iter()
                .filter(|(name, p)| p.contains(&Observed) && !seen.contains(name))
                .map(|(name, _)| *name)
                .collect();
            assert!(
                missing.is_empty(),
                "{image}: no live check observed {missing:?}"
            );
        }
    }
}

/// The keys of `manifests/env/NAME.env`.
fn manifest_keys(name: &str) -> BTreeSet<String> {
    let path = repo().join("manifests/env").join(format!("{name}.env"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_owned()))
        .collect()
}

#[test]
fn container_variable_tables_cover_the_manifests_env() {
    for (image, table) in [("bridge", BRIDGE_VARS), ("focus", FOCUS_VARS)] {
        let keys = manifest_keys(image);
        let rows: BTreeSet<String> = table.iter().map(|(k, _)| (*k).to_owned()).collect();
        let untested: Vec<&String> = keys.difference(&rows).collect();
        let stale: Vec<&String> = rows.difference(&keys).collect();
        assert!(
            untested.is_empty() && stale.is_empty(),
            "manifests/env/{image}.env and the {image} table of {} differ: without a proof {untested:?}, \
             no longer set {stale:?}",
            file!()
        );
        for (k, p) in table {
            let proven = p.iter().any(|p| !matches!(p, Loopback | Unused(_)));
            let unused = p.iter().any(|p| matches!(p, Unused(_)));
            assert!(
                proven ^ unused,
                "{image} {k}: {p:?} (proven or unused, not both)"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// podman, images, containers

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// podman with a store of its own under the target directory and the settings these machines need.
#[derive(Debug, Clone)]
struct Podman {
    root: PathBuf,
}

impl Podman {
    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.env(
            "CONTAINERS_CONF",
            repo().join("manifests/docker/podman/containers.conf"),
        )
        .arg("--root")
        .arg(self.root.join("storage"))
        .arg("--runroot")
        .arg(self.root.join("run"))
        .stdin(Stdio::null());
        c
    }

    fn output(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("podman {args:?}: {e} (run scripts/install-deps.sh)"))
    }

    /// stdout of a command that must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

/// The two images, built for this test run.
struct Images {
    podman: Podman,
    bridge: String,
    focus: String,
    tag: String,
}

/// Builds (or reuses: unchanged layers are cached) `localhost/jitsi-rs-test/{bridge,focus}:<profile>`
/// with `manifests/docker/build-local.sh` from this profile's binaries (debug info stripped, as the
/// Dockerfiles' build stage does; the production path, `docker build`, builds release binaries), and
/// removes containers that earlier test processes left behind.
fn images() -> Images {
    init_tracing();
    let focus_bin = PathBuf::from(env!("CARGO_BIN_EXE_focus"));
    let profile_dir = focus_bin.parent().expect("profile dir").to_path_buf();
    let target = profile_dir.parent().expect("target dir").to_path_buf();
    let binaries = match std::env::var_os("CONTAINER_TEST_BINARIES") {
        Some(dir) => PathBuf::from(dir),
        None => {
            common::bridge_binary();
            profile_dir
        }
    };
    let tag = binaries
        .file_name()
        .map_or("local".into(), |n| n.to_string_lossy().into_owned());
    let podman = Podman {
        root: target.join("containers"),
    };
    let started = Instant::now();
    let mut cmd = Command::new(repo().join("manifests/docker/build-local.sh"));
    cmd.arg("--binaries")
        .arg(&binaries)
        .args(["--prefix", "localhost/jitsi-rs-test", "--tag", &tag])
        .env("PODMAN_ROOT", &podman.root)
        .env(
            "CONTAINERS_CONF",
            repo().join("manifests/docker/podman/containers.conf"),
        );
    let out = cmd.output().expect("run manifests/docker/build-local.sh");
    assert!(
        out.status.success(),
        "build-local.sh failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    println!("images ready after {:.1?}", started.elapsed());
    remove_stale_containers(&podman);
    Images {
        podman,
        bridge: format!("localhost/jitsi-rs-test/bridge:{tag}"),
        focus: format!("localhost/jitsi-rs-test/focus:{tag}"),
        tag,
    }
}

/// A container started detached; removed (killed) on drop, its log printed if the test failed.
struct Container {
    podman: Podman,
    name: String,
    started: Instant,
}

/// `podman run` options that mirror the manifests' securityContext and hostNetwork.
const RUN_AS_KUBERNETES: &[&str] = &[
    "--network",
    "host",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
];

fn env_args(env: &Env) -> Vec<String> {
    env.iter()
        .flat_map(|(k, v)| ["--env".to_owned(), format!("{k}={v}")])
        .collect()
}

fn unique_name(what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("jrs-test-{}-{n}-{what}", std::process::id())
}

impl Container {
    /// `podman run -d` of `image` with exactly `env` (plus the image's own ENV) and `hosts` mapped to
    /// 127.0.0.1.
    fn start(podman: &Podman, what: &str, image: &str, env: &Env, hosts: &[&str]) -> Container {
        let name = unique_name(what);
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--name".into(), name.clone()];
        args.extend(RUN_AS_KUBERNETES.iter().map(|s| (*s).to_owned()));
        // No systemd here for podman's periodic health timers: the tests run the image's HEALTHCHECK
        // command themselves (`podman healthcheck run`).
        args.extend(["--health-interval".into(), "disable".into()]);
        for h in hosts {
            args.push("--add-host".into());
            args.push(format!("{h}:127.0.0.1"));
        }
        args.extend(env_args(env));
        args.push(image.into());
        let started = Instant::now();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        podman.ok(&argv);
        Container {
            podman: podman.clone(),
            name,
            started,
        }
    }

    /// The image's HEALTHCHECK command, run now (`podman healthcheck run`): Ok iff it reports healthy.
    fn healthcheck(&self) -> Result<(), String> {
        let out = self.podman.output(&["healthcheck", "run", &self.name]);
        if out.status.success() {
            return Ok(());
        }
        let last = self.podman.ok(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}, failing streak {{.State.Health.FailingStreak}}",
            &self.name,
        ]);
        Err(format!(
            "{}{} ({last})",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }

    /// Time from `podman run` until the HEALTHCHECK command first reports healthy.
    fn wait_healthy(&self, within: Duration) -> Result<Duration, String> {
        loop {
            match self.healthcheck() {
                Ok(()) => return Ok(self.started.elapsed()),
                Err(e) if self.started.elapsed() > within => {
                    return Err(format!("{} not healthy after {within:?}: {e}", self.name));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn exec(&self, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend_from_slice(cmd);
        self.podman.output(&args)
    }

    fn spawn_exec(&self, cmd: &[&str]) -> Child {
        self.podman
            .cmd()
            .arg("exec")
            .arg(&self.name)
            .args(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("podman exec")
    }

    fn logs(&self) -> String {
        let out = self.podman.output(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `(status, exit code)`.
    fn state(&self) -> (String, i64) {
        let s = self.podman.ok(&[
            "inspect",
            "--format",
            "{{.State.Status}} {{.State.ExitCode}}",
            &self.name,
        ]);
        let (status, code) = s.split_once(' ').unwrap_or((&s, "-1"));
        (status.to_owned(), code.parse().unwrap_or(-1))
    }

    /// The exit code once the container has stopped, `None` if it still runs after `within`.
    fn wait_exit(&self, within: Duration) -> Option<i64> {
        let deadline = Instant::now() + within;
        loop {
            let (status, code) = self.state();
            if status == "exited" || status == "stopped" {
                return Some(code);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Host PID of the container's main process.
    fn pid(&self) -> u32 {
        self.podman
            .ok(&["inspect", "--format", "{{.State.Pid}}", &self.name])
            .parse()
            .expect("pid")
    }

    /// Host PIDs of every process in the container.
    fn pids(&self) -> Vec<u32> {
        self.podman
            .ok(&["top", &self.name, "hpid"])
            .lines()
            .skip(1)
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if std::thread::panicking() {
            common::eprint_log_tail(&self.name, &self.logs(), 60);
        }
        let _ = self
            .podman
            .output(&["rm", "--force", "--time", "0", &self.name]);
    }
}

/// `podman run --rm` in the foreground (the entrypoint with `args`): `(exit code, stdout, stderr)`,
/// or `None` if it still ran after `within` (then it is removed).
fn run_to_exit(
    podman: &Podman,
    image: &str,
    env: &Env,
    args: &[&str],
    within: Duration,
) -> Option<(i32, String, String)> {
    let name = unique_name("oneshot");
    let mut argv: Vec<String> = vec!["run".into(), "--rm".into(), "--name".into(), name.clone()];
    argv.extend(RUN_AS_KUBERNETES.iter().map(|s| (*s).to_owned()));
    argv.push("--no-healthcheck".into());
    argv.extend(env_args(env));
    argv.push(image.into());
    argv.extend(args.iter().map(|s| (*s).to_owned()));
    let mut child = podman
        .cmd()
        .args(&argv)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("podman run");
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().expect("wait podman run").is_some() {
            let out = child.wait_with_output().expect("podman run output");
            return Some((
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        if Instant::now() > deadline {
            let _ = podman.output(&["rm", "--force", "--time", "0", &name]);
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes containers left by a test process that died before its drops ran (their names carry the
/// process ID; containers of live test processes are left alone).
fn remove_stale_containers(podman: &Podman) {
    let names = podman.ok(&["ps", "--all", "--format", "{{.Names}}"]);
    for name in names.lines() {
        let Some(pid) = name
            .strip_prefix("jrs-test-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = podman.output(&["rm", "--force", "--time", "0", name]);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Environments

/// A Prosody with docker-jitsi-meet's domains (those the manifests name), a client_proxy in front of
/// `focus@auth.meet.jitsi` and STARTTLS with a self-signed certificate, as the jitsi/prosody image has
/// (the XMPP server is a host name here, not a loopback address, so the binaries use STARTTLS).
fn start_prosody() -> Prosody {
    let mut opts = ProsodyOptions::new("meet.jitsi").with_tls();
    opts.muc_domain = "muc.meet.jitsi".into();
    opts.internal_muc_domain = "internal-muc.meet.jitsi".into();
    opts.extra_global_config = client_proxy_config(PROXY, "focus@auth.meet.jitsi");
    Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)")
}

/// The bridge's and the focus's environments with their REST ports.
struct Envs {
    bridge: Env,
    focus: Env,
    bridge_rest: String,
    focus_rest: String,
    /// Names the environments give for the XMPP server (mapped to 127.0.0.1 in the containers).
    xmpp_hosts: Vec<&'static str>,
}

/// `manifests/env/*.env` as the production overlay's shard-0 gets it, with the loopback changes the
/// files' headers allow: the test Prosody's port, free ports, loopback addresses, no STUN.
/// `XMPP_SERVER` stays `shard-0-prosody` (mapped to 127.0.0.1 in the containers).
fn manifests_envs(c2s: u16) -> Envs {
    let (bridge_rest, media_port, focus_rest) = (free_port(), free_udp_port(), free_port());
    let bridge = manifest_env(
        "bridge",
        &[
            ("HOST_IP", HOST_IP),
            ("POD_NAME", "shard-0-bridge-7d4b9c5f6-x2x9k"),
            ("SECRET_JVB_AUTH_PASSWORD", JVB_PASSWORD),
        ],
        &[
            ("XMPP_PORT", c2s.to_string()),
            ("JVB_PORT", media_port.to_string()),
            ("JVB_REST_PORT", bridge_rest.to_string()),
            ("JVB_MEDIA_HOST", HOST_IP.into()),
            ("JVB_DISABLE_STUN", "true".into()),
        ],
    )
    .expect("manifests/env/bridge.env");
    let focus = manifest_env(
        "focus",
        &[("SECRET_JICOFO_AUTH_PASSWORD", FOCUS_PASSWORD)],
        &[
            ("XMPP_PORT", c2s.to_string()),
            ("JICOFO_REST_HOST", FOCUS_REST_HOST.into()),
            ("JICOFO_REST_PORT", focus_rest.to_string()),
        ],
    )
    .expect("manifests/env/focus.env");
    Envs {
        bridge,
        focus,
        bridge_rest: format!("http://{HOST_IP}:{bridge_rest}"),
        focus_rest: format!("http://{FOCUS_REST_HOST}:{focus_rest}"),
        xmpp_hosts: vec!["shard-0-prosody"],
    }
}

/// What docker-jitsi-meet's compose file (with our `docker-compose.override.yml`) gives the jvb and
/// jicofo containers for a `.env` made from its `env.example` by `gen-passwords.sh`, with
/// `JVB_ADVERTISE_IPS` set as the `.env` asks. Everything else comes from the images' defaults
/// (`XMPP_SERVER=xmpp.meet.jitsi`, the `meet.jitsi` domains, brewery, user names). Changed for
/// loopback: the ports (the Prosody's and free ones), REST and media on loopback, no STUN.
fn docker_jitsi_meet_envs(c2s: u16) -> Envs {
    let (bridge_rest, media_port, focus_rest) = (free_port(), free_udp_port(), free_port());
    // Both services: TZ from .env, the compose file's SENTRY_DSN literal (quotes included), our
    // override's LOG_FORMAT, and the test Prosody's port.
    let shared = [
        ("TZ", "UTC".to_owned()),
        ("SENTRY_DSN", "\"0\"".to_owned()),
        ("LOG_FORMAT", "json".to_owned()),
        ("XMPP_PORT", c2s.to_string()),
    ];
    let env = |own: &[(&str, String)]| -> Env {
        shared
            .iter()
            .chain(own)
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    };
    let bridge = env(&[
        // From .env.
        ("JVB_AUTH_PASSWORD", JVB_PASSWORD.into()),
        ("JVB_ADVERTISE_IPS", "127.0.0.1".into()),
        // Loopback: compose publishes 8080 on the host's 127.0.0.1 only; here the host is the network.
        ("JVB_REST_HOST", "127.0.0.1".into()),
        ("JVB_REST_PORT", bridge_rest.to_string()),
        ("JVB_PORT", media_port.to_string()),
        ("JVB_MEDIA_HOST", "127.0.0.1".into()),
        ("JVB_DISABLE_STUN", "true".into()),
    ]);
    let focus = env(&[
        ("JICOFO_AUTH_PASSWORD", FOCUS_PASSWORD.into()),
        // Our override file.
        ("JICOFO_ENABLE_REST", "1".into()),
        ("JICOFO_REST_HOST", "127.0.0.1".into()),
        ("JICOFO_REST_PORT", focus_rest.to_string()),
    ]);
    Envs {
        bridge,
        focus,
        bridge_rest: format!("http://127.0.0.1:{bridge_rest}"),
        focus_rest: format!("http://127.0.0.1:{focus_rest}"),
        xmpp_hosts: vec!["xmpp.meet.jitsi"],
    }
}

fn value<'a>(env: &'a Env, key: &str) -> &'a str {
    env.iter().find(|(k, _)| k == key).map_or_else(
        || panic!("{key} not in the environment"),
        |(_, v)| v.as_str(),
    )
}

fn with(env: &Env, key: &str, v: &str) -> Env {
    let mut e: Env = env.iter().filter(|(k, _)| k != key).cloned().collect();
    e.push((key.to_owned(), v.to_owned()));
    e
}

// ---------------------------------------------------------------------------------------------------
// Checks (each returns the problems it found, so the broken-variant test can assert they fire)

/// The container's main process is `binary` itself (no wrapper left running), runs as the image's
/// non-root user like every other process in it, and has every variable of `env` with its value: an
/// entrypoint that drops or rewrites one shows here.
fn process_problems(c: &Container, binary: &str, env: &Env) -> Vec<String> {
    let mut v = Vec::new();
    let pid = c.pid();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    if exe != Path::new("/usr/local/bin").join(binary) {
        v.push(format!("main process is {}, not {binary}", exe.display()));
    }
    for p in c.pids() {
        let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
        for field in ["Uid:", "Gid:"] {
            let ids: Vec<&str> = status
                .lines()
                .find(|l| l.starts_with(field))
                .map(|l| l.split_whitespace().skip(1).collect())
                .unwrap_or_default();
            if ids.is_empty() || ids.iter().any(|id| *id != IMAGE_UID) {
                v.push(format!(
                    "process {p}: {field} {ids:?}, expected {IMAGE_UID}"
                ));
            }
        }
    }
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let environ: Vec<String> = environ
        .split(|b| *b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    for (k, val) in env {
        let want = format!("{k}={val}");
        if !environ.contains(&want) {
            let got = environ.iter().find(|e| e.starts_with(&format!("{k}=")));
            v.push(format!(
                "{binary}'s environment lacks {want} (has {got:?}): the entrypoint does not pass {k}"
            ));
        }
    }
    v
}

/// Every line the container logged is a JSON object (`LOG_FORMAT=json`).
fn json_log_problems(c: &Container) -> Vec<String> {
    let log = c.logs();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return vec![format!("{} logged nothing", c.name)];
    }
    lines
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).map_or(true, |v| !v.is_object()))
        .take(3)
        .map(|l| format!("{}: not a JSON log line (LOG_FORMAT=json): {l}", c.name))
        .collect()
}

/// A different valid-looking value of the same shape.
fn perturbed(v: &str) -> String {
    match v {
        "true" => "false".into(),
        "false" => "true".into(),
        _ => {
            if let Ok(n) = v.parse::<u64>() {
                (n + 1).to_string()
            } else if v.parse::<std::net::Ipv4Addr>().is_ok() {
                "127.0.0.9".into()
            } else if let Some((scheme, rest)) = v.split_once("://") {
                format!("{scheme}://x{rest}")
            } else {
                format!("x{v}")
            }
        }
    }
}

/// For every [`Proof::Config`] variable of the bridge: `bridge --print-config` through the image's
/// entrypoint, with the manifests' variables of `env` and with that variable changed, must differ (or
/// the changed value be refused naming it). A variable the entrypoint drops or the binary ignores shows
/// as no difference. Only the manifests' variables: `--print-config` opens no socket, so the loopback
/// additions (STUN off, media on loopback) are left out where they would hide a variable's effect.
fn bridge_config_problems(podman: &Podman, image: &str, env: &Env) -> Vec<String> {
    let env: Env = env
        .iter()
        .filter(|(k, _)| BRIDGE_VARS.iter().any(|(name, _)| name == k))
        .cloned()
        .collect();
    let env = &env;
    let print = |env: &Env| {
        run_to_exit(
            podman,
            image,
            env,
            &["--print-config"],
            Duration::from_secs(30),
        )
        .expect("--print-config returns")
    };
    let (code, baseline, err) = print(env);
    if code != 0 {
        return vec![format!("bridge --print-config failed ({code}): {err}")];
    }
    let mut v = Vec::new();
    for (var, p) in BRIDGE_VARS {
        if !p.contains(&Config) {
            continue;
        }
        let changed = perturbed(value(env, var));
        let (code, out, err) = print(&with(env, var, &changed));
        let refused = code != 0 && err.contains(var);
        if code != 0 && !refused {
            v.push(format!(
                "{var}={changed}: --print-config fails without naming {var} (exit {code}): {}",
                err.trim()
            ));
        } else if code == 0 && out == baseline {
            v.push(format!(
                "{var}: the bridge's configuration is the same with {var}={changed} as with {var}={}: \
                 the image ignores {var}",
                value(env, var)
            ));
        }
    }
    v
}

/// For every [`Proof::Refused`] value of `table`: the container started with `env` but that value
/// stops within 20 s, non-zero, with a message naming the variable.
fn refusal_problems(
    podman: &Podman,
    image: &str,
    table: &[(&str, &[Proof])],
    env: &Env,
) -> Vec<String> {
    let mut v = Vec::new();
    for (var, proofs) in table {
        for p in *proofs {
            let Refused(bad) = p else { continue };
            let started = Instant::now();
            match run_to_exit(
                podman,
                image,
                &with(env, var, bad),
                &[],
                Duration::from_secs(20),
            ) {
                None => v.push(format!("{image} {var}={bad:?}: still running after 20 s")),
                Some((0, ..)) => v.push(format!("{image} {var}={bad:?}: exited 0")),
                Some((code, out, err)) => {
                    let said = format!("{out}{err}");
                    if !said.contains(var) {
                        v.push(format!(
                            "{image} {var}={bad:?}: exit {code} without naming {var}: {said}"
                        ));
                    } else {
                        println!(
                            "{var}={bad:?} stops the {} container in {:.1?} (exit {code}): {}",
                            if image.contains("/bridge") {
                                "bridge"
                            } else {
                                "focus"
                            },
                            started.elapsed(),
                            said.lines()
                                .find(|l| l.contains(var))
                                .unwrap_or_default()
                                .trim()
                        );
                    }
                }
            }
        }
    }
    v
}

fn get(url: &str) -> Option<(u16, String)> {
    http_request("GET", url, None, Duration::from_secs(5))
        .ok()
        .map(|r| (r.status, r.text()))
}

/// The REST API answers at `base` and not on 127.0.0.1 at the same port (`*_REST_HOST` is honoured).
fn rest_bound_problems(base: &str) -> Vec<String> {
    let mut v = Vec::new();
    if get(&format!("{base}/about/version")).is_none_or(|(s, _)| s != 200) {
        v.push(format!("nothing answers {base}/about/version"));
    }
    let port = base.rsplit(':').next().unwrap_or_default();
    let loopback = format!("http://127.0.0.1:{port}/about/version");
    if !base.contains("//127.0.0.1:") && get(&loopback).is_some() {
        v.push(format!(
            "{loopback} answers: REST is not bound to {base} only"
        ));
    }
    v
}

fn assert_none(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// The focus's `/stats`.
fn focus_stats(base: &str) -> Value {
    let (status, body) = get(&format!("{base}/stats")).expect("focus /stats answers");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("/stats is JSON")
}

/// Waits until the focus lists exactly one bridge as operational; returns that bridge's entry.
fn wait_operational_bridge(base: &str) -> Value {
    let deadline = Instant::now() + HEALTHY_WITHIN;
    loop {
        let s = focus_stats(base);
        if s["bridge_selector"]["operational_bridge_count"] == 1 {
            return s["bridge_selector"]["bridges"][0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "focus sees no operational bridge: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The preStop command of the bridge in `manifests/base/shard/bridge.yaml` (a flow-style list).
fn manifests_prestop() -> Vec<String> {
    let path = repo().join("manifests/base/shard/bridge.yaml");
    let text = std::fs::read_to_string(&path).expect("bridge.yaml");
    let after = text
        .split_once("preStop:")
        .unwrap_or_else(|| panic!("no preStop in {}", path.display()))
        .1;
    let line = after
        .lines()
        .find_map(|l| l.trim().strip_prefix("command:"))
        .expect("preStop exec command");
    let list = line
        .trim()
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .unwrap_or_else(|| panic!("preStop command is not a flow list: {line}"));
    list.split(',')
        .map(|s| s.trim().trim_matches('"').trim_matches('\'').to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// The call

/// Two lib-jitsi-meet participants in Chromium join `room` on `prosody` (the focus reached through
/// the client_proxy) and receive each other's audio and video.
async fn hold_call(prosody: &Prosody, room: &str) -> Participants {
    let mut cfg = Participants::config(prosody, room);
    cfg["focus"] = PROXY.into();
    let mut p = Participants::start_with(cfg).await;
    let (_, took) = p.join_with_media(&["a", "b"]).await;
    println!("call through the containers: audio and video both ways after {took:?}");
    p
}

/// Waits for a spawned `podman exec` to end; `(exit code, output)`.
fn wait_child(mut child: Child, within: Duration) -> Option<(i32, String)> {
    let deadline = Instant::now() + within;
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return Some((out.status.code().unwrap_or(-1), said));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bridge drains while a call runs: `drain_cmd` (run in the bridge container) keeps waiting while
/// the participants are connected, the focus sees the bridge in graceful shutdown, and the command
/// returns 0 once they left.
async fn drain_during_call(
    bridge: &Container,
    envs: &Envs,
    p: Participants,
    drain_cmd: &[&str],
) -> (String, Duration) {
    let child = bridge.spawn_exec(drain_cmd);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let b = &focus_stats(&envs.focus_rest)["bridge_selector"]["bridges"][0];
        if b["graceful_shutdown"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "focus does not see the drain: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, stats) = get(&format!("{}/colibri/stats", envs.bridge_rest)).expect("colibri stats");
    let stats: Value = serde_json::from_str(&stats).expect("JSON");
    assert!(
        stats["graceful_shutdown"] == true,
        "bridge not in graceful shutdown: {stats}"
    );
    let mut child = child;
    assert!(
        child.try_wait().expect("wait").is_none(),
        "{drain_cmd:?} returned while the call still runs (bridge stats: {stats})"
    );
    // The participants hang up.
    let mut p = p;
    p.leave("a").await;
    p.leave("b").await;
    let hung_up = Instant::now();
    let (code, said) = tokio::task::block_in_place(|| wait_child(child, Duration::from_secs(90)))
        .unwrap_or_else(|| panic!("{drain_cmd:?} still waiting 90 s after the call ended"));
    assert_eq!(code, 0, "{drain_cmd:?}: {said}");
    let took = hung_up.elapsed();
    p.quit().await;
    (said, took)
}

// ---------------------------------------------------------------------------------------------------
// Tests

/// The production overlay's environment (`manifests/env/*.env`): both images healthy by their own
/// HEALTHCHECK, every observable variable honoured, non-root, a call with media both ways, then the
/// manifests' preStop drains the bridge, the kubelet's SIGTERM follows and the bridge exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_container_manifests_env_call_health_and_drain() {
    let images = tokio::task::block_in_place(images);
    let podman = &images.podman;
    let prosody = start_prosody();
    let envs = manifests_envs(prosody.ports().c2s);
    let mut seen = Observations::default();

    // The focus first: without a bridge its health check must fail (JICOFO_ENABLE_HEALTH_CHECKS).
    let focus = Container::start(
        podman,
        "focus",
        &images.focus,
        &envs.focus,
        &envs.xmpp_hosts,
    );
    tokio::task::block_in_place(|| {
        let deadline = Instant::now() + HEALTHY_WITHIN;
        while get(&format!("{}/about/version", envs.focus_rest)).is_none() {
            assert!(
                Instant::now() < deadline,
                "focus REST never answered\n{}",
                focus.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (status, body) = get(&format!("{}/about/health", envs.focus_rest)).expect("health");
    assert_ne!(status, 200, "focus healthy without a bridge: {body}");
    assert!(
        focus.healthcheck().is_err(),
        "HEALTHCHECK healthy without a bridge"
    );

    let bridge = Container::start(
        podman,
        "bridge",
        &images.bridge,
        &envs.bridge,
        &envs.xmpp_hosts,
    );
    let (bridge_up, focus_up) = tokio::task::block_in_place(|| {
        let b = bridge
            .wait_healthy(HEALTHY_WITHIN)
            .unwrap_or_else(|e| panic!("{e}"));
        let f = focus
            .wait_healthy(HEALTHY_WITHIN)
            .unwrap_or_else(|e| panic!("{e}"));
        (b, f)
    });
    println!(
        "healthy by their HEALTHCHECK: bridge {bridge_up:.1?} after its start, focus {:.1?} after its \
         start (it needs the bridge)",
        focus_up
    );
    let (status, _) = get(&format!("{}/about/health", envs.focus_rest)).expect("health");
    assert_eq!(status, 200);
    seen.focus.insert("JICOFO_ENABLE_HEALTH_CHECKS");

    tokio::task::block_in_place(|| {
        assert_none(
            "bridge process",
            &process_problems(&bridge, "bridge", &envs.bridge),
        );
        assert_none(
            "focus process",
            &process_problems(&focus, "focus", &envs.focus),
        );
        assert_none("bridge REST", &rest_bound_problems(&envs.bridge_rest));
        assert_none("focus REST", &rest_bound_problems(&envs.focus_rest));
    });
    seen.bridge.extend(["JVB_REST_HOST", "JVB_REST_PORT"]);
    seen.focus.extend(["JICOFO_REST_HOST", "JICOFO_REST_PORT"]);
    let (status, body) = get(&format!("{}/colibri/stats", envs.bridge_rest)).expect("stats");
    assert_eq!(
        status, 200,
        "/colibri/stats with COLIBRI_REST_ENABLED=true: {body}"
    );
    seen.bridge.insert("COLIBRI_REST_ENABLED");

    // The focus found the bridge: both logged in to `shard-0-prosody` with their accounts, the bridge
    // under the pod's name.
    let entry = wait_operational_bridge(&envs.focus_rest);
    let nick = value(&envs.bridge, "JVB_MUC_NICKNAME");
    assert!(
        entry["jid"]
            .as_str()
            .is_some_and(|j| j.ends_with(&format!("/{nick}"))),
        "brewery occupant {entry} is not named JVB_MUC_NICKNAME={nick}"
    );
    seen.bridge.extend([
        "JVB_MUC_NICKNAME",
        "JVB_AUTH_PASSWORD",
        "XMPP_SERVER",
        "XMPP_PORT",
    ]);
    seen.focus
        .extend(["JICOFO_AUTH_PASSWORD", "XMPP_SERVER", "XMPP_PORT"]);

    let p = hold_call(&prosody, "container-manifests").await;
    // The bridge's own stats show the call (dashboards and drain scripts read them).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = get(&format!("{}/colibri/stats", envs.bridge_rest)).expect("stats");
        let s: Value = serde_json::from_str(&body).expect("JSON");
        if s["local_endpoints"] == 2 && s["participants"] == 2 && s["conferences"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/colibri/stats does not show the call: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = focus_stats(&envs.focus_rest);
    assert_eq!(
        (s["conferences"].as_u64(), s["participants"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );

    // Kubernetes deletes the pod: preStop, then SIGTERM.
    let prestop = manifests_prestop();
    let prestop: Vec<&str> = prestop.iter().map(String::as_str).collect();
    let (said, took) = drain_during_call(&bridge, &envs, p, &prestop).await;
    println!(
        "preStop {prestop:?} returned 0 {took:.1?} after the participants left: {}",
        said.trim()
    );
    seen.bridge.insert("SHUTDOWN_REST_ENABLED");
    podman.ok(&["kill", "--signal", "TERM", &bridge.name]);
    let stopped = Instant::now();
    let code = tokio::task::block_in_place(|| bridge.wait_exit(Duration::from_secs(120)));
    assert_eq!(
        code,
        Some(0),
        "bridge exit after preStop + SIGTERM\n{}",
        bridge.logs()
    );
    println!("bridge exited 0 {:.1?} after SIGTERM", stopped.elapsed());

    for c in [&bridge, &focus] {
        assert_none("logs", &json_log_problems(c));
    }
    seen.bridge.insert("LOG_FORMAT");
    seen.focus.insert("LOG_FORMAT");
    seen.assert_complete();
}

/// docker-jitsi-meet's environment (a generated `.env` and its compose file with our override): both
/// images healthy by their HEALTHCHECK and by the upstream images' health script path, a call, and the
/// upstream drain script path drains the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_container_docker_jitsi_meet_env_call_and_upstream_script_paths() {
    let images = tokio::task::block_in_place(images);
    let podman = &images.podman;
    let prosody = start_prosody();
    let envs = docker_jitsi_meet_envs(prosody.ports().c2s);
    // SHUTDOWN_REST_ENABLED and COLIBRI_REST_ENABLED are off by default in the jvb image; the drain
    // (POST /colibri/shutdown, then /colibri/stats until the bridge is empty) needs both, so .env
    // sets them.
    let bridge_env = with(
        &with(&envs.bridge, "SHUTDOWN_REST_ENABLED", "true"),
        "COLIBRI_REST_ENABLED",
        "true",
    );
    let bridge = Container::start(
        podman,
        "bridge",
        &images.bridge,
        &bridge_env,
        &envs.xmpp_hosts,
    );
    let focus = Container::start(
        podman,
        "focus",
        &images.focus,
        &envs.focus,
        &envs.xmpp_hosts,
    );
    let (b, f) = tokio::task::block_in_place(|| {
        (
            bridge
                .wait_healthy(HEALTHY_WITHIN)
                .unwrap_or_else(|e| panic!("{e}")),
            focus
                .wait_healthy(HEALTHY_WITHIN)
                .unwrap_or_else(|e| panic!("{e}")),
        )
    });
    println!("healthy by their HEALTHCHECK: bridge after {b:.1?}, focus after {f:.1?}");
    for c in [&bridge, &focus] {
        let out = c.exec(&["/usr/local/bin/healthcheck.sh"]);
        assert!(
            out.status.success(),
            "{} /usr/local/bin/healthcheck.sh: {}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tokio::task::block_in_place(|| {
        assert_none(
            "bridge process",
            &process_problems(&bridge, "bridge", &bridge_env),
        );
        assert_none(
            "focus process",
            &process_problems(&focus, "focus", &envs.focus),
        );
    });
    wait_operational_bridge(&envs.focus_rest);

    let p = hold_call(&prosody, "container-docker").await;
    // As a preStop hook written for jitsi/jvb calls it: -p and -t accepted and ignored (the bridge
    // exits by itself once drained), -h without a scheme as curl takes it, -s silent unless it fails.
    let script = "/usr/share/jitsi-videobridge/graceful_shutdown.sh";
    let rest = envs.bridge_rest.trim_start_matches("http://").to_owned();
    let drain = [script, "-p", "1", "-h", &rest, "-t", "3", "-s"];
    let (said, took) = drain_during_call(&bridge, &envs, p, &drain).await;
    assert_eq!(said.trim(), "", "{drain:?} is not silent");
    println!("{drain:?} returned 0, silently, {took:.1?} after the participants left");
    let (_, stats) = get(&format!("{}/colibri/stats", envs.bridge_rest)).expect("stats");
    let stats: Value = serde_json::from_str(&stats).expect("JSON");
    assert!(stats["shutting_down"] == true, "{stats}");
    // The health scripts report failure by their exit status, as probes read it.
    for (c, url) in [
        (&bridge, "http://127.0.0.1:9"),
        (&focus, "http://127.0.0.1:9/about/health"),
    ] {
        let out = c.exec(&["/usr/local/bin/healthcheck.sh", "--url", url]);
        assert!(
            !out.status.success(),
            "{} healthcheck.sh succeeded against a closed port",
            c.name
        );
    }
    for c in [&bridge, &focus] {
        assert_none("logs", &json_log_problems(c));
    }
}

/// A bad value of any variable the tables mark [`Proof::Refused`] stops the container at start with a
/// message naming it (the rest of the environment as the manifests give it).
#[test]
fn e2e_container_bad_variable_stops_the_container_naming_it() {
    let images = images();
    // No Prosody: configuration is checked before anything connects.
    let envs = manifests_envs(free_port());
    let mut problems = refusal_problems(&images.podman, &images.bridge, BRIDGE_VARS, &envs.bridge);
    problems.extend(refusal_problems(
        &images.podman,
        &images.focus,
        FOCUS_VARS,
        &envs.focus,
    ));
    assert_none("bad variables", &problems);
}

/// The checks that guard the images catch a broken one: a variant of the bridge image built here whose
/// entrypoint drops `LOG_FORMAT` (as a wrapper script that forgets a variable would) and whose
/// HEALTHCHECK calls curl (not in the image) fails the environment, configuration, log and health
/// checks, while the real image passes them in the same environment.
#[test]
fn e2e_container_checks_catch_a_broken_image_variant() {
    let images = images();
    let podman = &images.podman;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!(
            "FROM {}\n\
             HEALTHCHECK CMD [\"curl\", \"-fsS\", \"http://127.0.0.1:8080/about/health\"]\n\
             ENTRYPOINT [\"/usr/bin/env\", \"-u\", \"LOG_FORMAT\", \"/usr/local/bin/bridge\"]\n",
            images.bridge
        ),
    )
    .expect("write Dockerfile");
    let broken = format!("localhost/jitsi-rs-test/bridge-broken:{}", images.tag);
    let context = dir.path().to_string_lossy().into_owned();
    podman.ok(&[
        "build",
        "--quiet",
        "--format",
        "docker",
        "--pull=never",
        "-t",
        &broken,
        &context,
    ]);
    // No Prosody: the bridge's health reflects the bridge itself, not Prosody's reachability.
    let env = manifests_envs(free_port()).bridge;
    let check = |image: &str| -> Vec<String> {
        let c = Container::start(podman, "bridge", image, &env, &["shard-0-prosody"]);
        let mut v = Vec::new();
        if let Err(e) = c.wait_healthy(Duration::from_secs(10)) {
            v.push(format!("HEALTHCHECK: {e}"));
        }
        v.extend(process_problems(&c, "bridge", &env));
        v.extend(json_log_problems(&c));
        v.extend(bridge_config_problems(podman, image, &env));
        v
    };
    let good = check(&images.bridge);
    assert_none("the real bridge image", &good);
    let bad = check(&broken);
    println!("the broken variant fails with:\n  {}", bad.join("\n  "));
    let fired = |what: &str, pred: &dyn Fn(&str) -> bool| {
        assert!(
            bad.iter().any(|p| pred(p)),
            "no {what} problem for the broken variant: {bad:?}"
        );
    };
    fired("HEALTHCHECK", &|p| p.starts_with("HEALTHCHECK"));
    fired("environment", &|p| p.contains("does not pass LOG_FORMAT"));
    fired("configuration", &|p| {
        p.contains("the image ignores LOG_FORMAT")
    });
    fired("log format", &|p| p.contains("not a JSON log line"));
    let _ = podman.output(&["rmi", "--force", &broken]);
}
