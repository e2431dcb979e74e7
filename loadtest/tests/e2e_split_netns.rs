//! `loadtest --split-netns` for real (root, iproute2): the `loadtest` binary creates the two
//! namespaces and the veth pair, runs Prosody, the focus and the participants in one and the SFU
//! (our bridge, then Janus) in the other, and removes both namespaces when it ends — normally and
//! on SIGINT.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The SFU's end of the veth pair (`loadtest::netns::SFU_ADDR`).
const SFU_ADDR: &str = "10.213.0.2";

/// The workspace's `bridge` and `focus` binaries, built into this test's profile directory.
fn binaries() -> PathBuf {
    testkit::build_workspace_binaries(
        Path::new(env!("CARGO_BIN_EXE_loadtest")),
        &[("bridge", "bridge"), ("focus", "focus")],
    )
}

fn namespaces() -> String {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The namespaces a `loadtest` process with this pid creates.
fn names(pid: u32) -> [String; 2] {
    [format!("lt-gen-{pid}"), format!("lt-sfu-{pid}")]
}

/// Runs `loadtest --split-netns` (1 × 3, 8 s window) through `sfu`; its JSON report.
fn run_split(sfu: &str) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("run.json");
    let child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--split-netns", "--sfu", sfu, "--sfu-cpus", "0"])
        .args(["--participants", "3", "--duration", "8s", "--warmup", "2s"])
        .args(["--join-timeout", "20s", "--bin-dir"])
        .arg(binaries())
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loadtest");
    let pid = child.id();
    let out = child.wait_with_output().expect("loadtest");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    let left = namespaces();
    for n in names(pid) {
        assert!(!left.contains(&n), "{n} left behind: {left}");
    }
    assert!(out.status.success(), "loadtest failed: {text}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("JSON report")).expect("JSON");

    let s = &report["summary"];
    assert_eq!(s["connected"], 3, "{text}");
    assert_eq!(s["failures"].as_array().map(Vec::len), Some(0), "{text}");
    assert_eq!(s["media"]["loss_pct_overall"].as_f64(), Some(0.0), "{text}");
    assert!(
        s["media"]["received_pps"].as_f64().unwrap_or(0.0) > 100.0,
        "{text}"
    );
    // Every candidate the SFU signalled is its end of the pair, none on loopback.
    for p in report["participants"].as_array().expect("participants") {
        let cands = p["sfu_candidates"].as_array().expect("sfu_candidates");
        assert!(!cands.is_empty(), "{p}");
        for c in cands {
            let ip = c
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .map(|(ip, _)| ip);
            assert_eq!(ip, Some(SFU_ADDR), "{c}");
        }
    }
    // The SFU's process was sampled (its own pid, not `ip` or `taskset`), and CPU 0's whole busy
    // time beside it.
    let c = &s["costs"];
    assert_eq!(c["sfu"], if sfu == "janus" { "janus" } else { "bridge" });
    let process_us = c["sfu_us_per_forwarded_packet"].as_f64().unwrap_or(0.0);
    let busy_us = c["sfu_cpu_busy_us_per_forwarded_packet"]
        .as_f64()
        .unwrap_or(0.0);
    assert!(process_us > 0.0 && busy_us > 0.0, "{c}");
    report
}

#[test]
fn e2e_split_netns_bridge_forwards_without_loss_on_its_own_address() {
    let report = run_split("jitsi");
    // The bridge's own counters were read at its address in the other namespace.
    assert!(
        report["server"]["bridge"]["packets_sent_pps"]
            .as_f64()
            .unwrap_or(0.0)
            > 100.0,
        "{}",
        report["server"]["bridge"]
    );
}

#[test]
fn e2e_split_netns_janus_forwards_without_loss_on_its_own_address() {
    // CI installs Janus (scripts/install-deps.sh), as for e2e_janus.
    run_split("janus");
}

/// Ctrl-C in a terminal: SIGINT to the whole process group (loadtest, Prosody, bridge, focus).
#[test]
fn e2e_split_netns_namespaces_are_removed_on_sigint() {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .process_group(0)
        .args(["--split-netns", "--sfu-cpus", "0", "--bin-dir"])
        .arg(binaries())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start loadtest");
    let pid = child.id();
    let [gen_ns, sfu_ns] = names(pid);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(namespaces().contains(&gen_ns) && namespaces().contains(&sfu_ns)) {
        assert!(child.try_wait().expect("wait").is_none(), "loadtest ended");
        assert!(Instant::now() < deadline, "namespaces never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Until the bridge is up: the focus waits for it.
    std::thread::sleep(Duration::from_secs(3));
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .expect("kill");
    assert!(status.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    // Everything it started ends too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("pgrep")
            .args(["-g", &pid.to_string()])
            .output()
            .expect("pgrep");
        if out.stdout.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = namespaces();
    assert!(
        !left.contains(&gen_ns) && !left.contains(&sfu_ns),
        "left behind: {left}"
    );
}
