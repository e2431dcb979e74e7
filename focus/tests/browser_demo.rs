//! The main job as a user meets it: `scripts/run.sh`, then its URL opened in two tabs of a browser
//! **without** test flags. A stock browser uses no loopback address for WebRTC, so these tests run
//! run.sh and Chromium inside a network namespace of their own whose veth pair plays the machine's
//! network (nothing leaves the namespace; it is removed at the end).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::browser::Participants;
use common::netns::NetNs;
use serde_json::{Value, json};

/// `scripts/run.sh` running inside a namespace, with the binaries under test.
struct RunSh {
    child: Child,
    url: String,
    banner: String,
    fake_target: tempfile::TempDir,
}

impl RunSh {
    fn start(ns: &NetNs, env: &[(&str, &str)]) -> RunSh {
        let bridge = common::bridge_binary();
        // run.sh takes release binaries from $CARGO_TARGET_DIR/release: point that at the binaries
        // under test (the focus binary sits next to the bridge's).
        let fake_target = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(bridge.parent().unwrap(), fake_target.path().join("release"))
            .unwrap();
        let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut cmd = ns.command("bash");
        cmd.arg(repo.join("scripts/run.sh"))
            .env("CARGO_TARGET_DIR", fake_target.path())
            .env("RUN_NO_BUILD", "1")
            .env_remove("RUN_MEDIA_IP")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start scripts/run.sh");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            let mut url = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[run.sh] {line}");
                banner.push_str(&line);
                banner.push('\n');
                if url.is_none() {
                    url = line
                        .split_whitespace()
                        .find(|w| w.starts_with("http://127.0.0.1:") && w.contains("room="))
                        .map(str::to_owned);
                }
                // The banner ends with the Ctrl-C hint.
                if url.is_some() && line.contains("Ctrl-C") {
                    let _ = tx.send((url.take(), std::mem::take(&mut banner)));
                }
            }
            let _ = tx.send((url, banner));
        });
        let (url, banner) = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("run.sh printed its banner");
        let url = url.unwrap_or_else(|| panic!("run.sh printed no demo URL:\n{banner}"));
        RunSh {
            child,
            url,
            banner,
            fake_target,
        }
    }

    /// Ctrl-C: run.sh stops everything it started and exits 130.
    fn stop(mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        assert_eq!(
            status.code(),
            Some(130),
            "run.sh exits 130 on Ctrl-C: {status:?}"
        );
        let leftovers = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "ps -eo args | grep -F '{}' | grep -v grep || true",
                self.fake_target.path().display()
            ))
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&leftovers.stdout).trim().is_empty(),
            "processes left running: {}",
            String::from_utf8_lossy(&leftovers.stdout)
        );
    }
}

impl Drop for RunSh {
    fn drop(&mut self) {
        // A failed assertion: don't leave the deployment running in the namespace.
        if let Ok(None) = self.child.try_wait() {
            let _ = std::process::Command::new("kill")
                .arg("-INT")
                .arg(self.child.id().to_string())
                .status();
            let _ = self.child.wait();
        }
    }
}

/// A stock browser (no loopback flag) in the namespace.
async fn stock_browser(ns: &NetNs) -> Participants {
    Participants::start_in(json!({ "stockBrowser": true }), Some(ns)).await
}

/// `ljmMediaStatus()` of a tab: what its status line and tiles say.
async fn media_status(p: &mut Participants, tab: &str) -> Value {
    p.call(tab, "ljmMediaStatus", json!([])).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_run_sh_demo_in_a_stock_browser() {
    common::init_tracing();
    let ns = NetNs::create();
    let run = RunSh::start(&ns, &[("RUN_ROOM", "selftalk")]);
    println!("demo page: {}", run.url);
    // Like JVB, the bridge advertises the machine's own (non-loopback) addresses.
    for addr in &ns.addresses {
        assert!(
            run.banner.contains(addr.as_str()),
            "run.sh advertises {addr}:\n{}",
            run.banner
        );
    }
    assert!(
        !run.banner.contains("udp 127.0.0.1"),
        "loopback advertised:\n{}",
        run.banner
    );

    let mut p = stock_browser(&ns).await;
    p.open("tab1", &run.url).await;
    p.open("tab2", &run.url).await;
    let deadline = Instant::now() + Duration::from_secs(90);
    let shot = std::env::temp_dir().join(format!("jitsi-rs-demo-{}.png", std::process::id()));
    loop {
        let s = p.stats().await;
        // Each tab: its own preview plus the other tab's video, both playing.
        let playing = |tab: &str| {
            let me = s[tab]["me"].as_str().unwrap_or_default().to_owned();
            let videos = s[tab]["videos"].as_array().cloned().unwrap_or_default();
            // Playing, and showing a picture (the fake camera's green frame, not black).
            let shows =
                |v: &Value| v["playing"] == true && v["luma"].as_f64().unwrap_or(0.0) > 20.0;
            let remote_playing = videos
                .iter()
                .any(|v| shows(v) && v["id"] != "video-local" && v["id"] != format!("video-{me}"));
            let local_playing = videos.iter().any(|v| v["id"] == "video-local" && shows(v));
            // What the page tells the user: connected, and the other tab's tile decoding.
            let status = &s[tab]["mediaStatus"];
            let tiles_connected = status["tiles"]
                .as_object()
                .is_some_and(|t| !t.is_empty() && t.values().all(|v| v == "connected"));
            remote_playing && local_playing && status["state"] == "connected" && tiles_connected
        };
        if playing("tab1") && playing("tab2") {
            break;
        }
        assert!(Instant::now() < deadline, "demo videos not playing: {s}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let status = media_status(&mut p, "tab1").await;
    println!("tab1 says: {status}");
    // The media really went over the namespace's veth addresses, not loopback.
    let text = status["text"].as_str().unwrap_or_default();
    assert!(
        ns.addresses.iter().any(|a| text.contains(a.as_str())) && !text.contains("127.0.0.1"),
        "connected over the machine's addresses: {status}"
    );
    p.screenshot("tab1", &shot).await;
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "screenshot looks empty"
    );
    println!("demo screenshot with two participants: {}", shot.display());
    p.quit().await;
    run.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_demo_page_says_why_when_the_media_port_is_blocked() {
    common::init_tracing();
    let ns = NetNs::create();
    let media_port: u16 = 10000;
    // A firewall that drops the bridge's media port: what users hit most.
    ns.block_udp_port(media_port);
    let run = RunSh::start(
        &ns,
        &[
            ("RUN_ROOM", "blocked"),
            ("RUN_MEDIA_PORT", &media_port.to_string()),
        ],
    );
    let mut p = stock_browser(&ns).await;
    p.open("tab1", &run.url).await;
    p.open("tab2", &run.url).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let status = loop {
        let s = media_status(&mut p, "tab1").await;
        let explained = (s["state"] == "stalled" || s["state"] == "failed")
            && s["text"].as_str().is_some_and(|t| {
                t.contains("could not reach the bridge's media port")
                    && t.contains(&format!(":{media_port}"))
            });
        let tile_says = s["tiles"].as_object().is_some_and(|t| {
            !t.is_empty()
                && t.values()
                    .all(|v| v.as_str().is_some_and(|v| v.starts_with("no media")))
        });
        if explained && tile_says {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the page does not say why media fails: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "after {:.1} s the page says: {status}",
        started.elapsed().as_secs_f64()
    );
    // Nothing decoded, nothing claims to be connected.
    let s = p.stats().await;
    assert_ne!(s["tab1"]["ice"], "connected", "{s}");
    p.quit().await;
    run.stop();
}
