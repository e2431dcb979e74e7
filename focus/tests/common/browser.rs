//! lib-jitsi-meet participants in headless Chromium, driven through `e2e/ljm-peer.js`.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::{Prosody, e2e_dir};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use super::netns::NetNs;

/// The browser driver process.
pub struct Participants {
    child: Child,
    stdin: ChildStdin,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events read while waiting for another one.
    backlog: std::collections::VecDeque<Value>,
    _config: tempfile::NamedTempFile,
}

impl Participants {
    /// Starts Chromium for participants of `room` on `prosody` (installs the npm harness if needed).
    pub async fn start(prosody: &Prosody, room: &str) -> Participants {
        Self::start_with(Self::config(prosody, room)).await
    }

    /// The page configuration [`Participants::start`] uses; `"conference"` may be added (options of
    /// `initJitsiConference`, i.e. config.js's).
    pub fn config(prosody: &Prosody, room: &str) -> Value {
        json!({
            "domain": prosody.domain(),
            "muc": prosody.muc_domain(),
            "focus": prosody.focus_domain(),
            "serviceUrl": prosody.websocket_url(),
            "room": room,
            "resolution": 180,
        })
    }

    /// Starts the driver with a page configuration (see `e2e/ljm-peer.js`).
    pub async fn start_with(cfg: Value) -> Participants {
        Self::start_in(cfg, None).await
    }

    /// Starts the driver inside `netns` (its Chromium then sees only that namespace's network).
    pub async fn start_in(cfg: Value, netns: Option<&NetNs>) -> Participants {
        tokio::task::block_in_place(testkit::ensure_browser_harness).expect("browser harness");
        let config = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(config.path(), cfg.to_string()).expect("write config");
        let mut command = match netns {
            Some(ns) => ns.tokio_command("node"),
            None => Command::new("node"),
        };
        let mut child = command
            .arg(e2e_dir().join("ljm-peer.js"))
            .arg(config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node e2e/ljm-peer.js");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        let _ = tx.send(v);
                    }
                    Err(_) => eprintln!("[driver] {line}"),
                }
            }
        });
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // Page logs are verbose; keep warnings and errors.
                let l = line.to_ascii_lowercase();
                if l.contains("error")
                    || l.contains("warn")
                    || l.contains("fail")
                    || l.starts_with("[driver]")
                    || l.trim_start().starts_with("at ")
                {
                    eprintln!("[browser] {line}");
                }
            }
        });
        Participants {
            child,
            stdin,
            events,
            backlog: std::collections::VecDeque::new(),
            _config: config,
        }
    }

    async fn send(&mut self, cmd: Value) {
        let line = format!("{cmd}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("driver stdin");
        self.stdin.flush().await.expect("flush");
    }

    /// Waits for an event `pick` accepts (errors fail the test).
    async fn wait(
        &mut self,
        what: &str,
        timeout: Duration,
        mut pick: impl FnMut(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.backlog.iter().position(&mut pick)
            && let Some(v) = self.backlog.remove(i)
        {
            return v;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(v)) => {
                    if v["event"] == "error" {
                        panic!(
                            "browser driver error while waiting for {what}: {}",
                            v["message"]
                        );
                    }
                    if pick(&v) {
                        return v;
                    }
                    // Kept for a later wait (joins finish in any order).
                    self.backlog.push_back(v);
                }
                Ok(None) => panic!("browser driver exited while waiting for {what}"),
                Err(_) => panic!("timed out waiting for {what}"),
            }
        }
    }

    /// Starts joining (returns at once; see [`Participants::joined`]).
    pub async fn join(&mut self, id: &str) {
        self.send(json!({"cmd": "join", "id": id})).await;
    }

    /// `ids` join the configured room; waits until each receives audio and video from every other one
    /// (see [`wait_media`], at most 90 s). Returns their endpoint ids and how long media took.
    pub async fn join_with_media(&mut self, ids: &[&str]) -> (Vec<String>, Duration) {
        for id in ids {
            self.join(id).await;
        }
        let mut endpoints = Vec::new();
        for id in ids {
            endpoints.push(self.joined(id).await);
        }
        let pages: Vec<(&str, &str)> = ids
            .iter()
            .zip(&endpoints)
            .map(|(id, e)| (*id, e.as_str()))
            .collect();
        let took = wait_media(self, &pages, Duration::from_secs(90), None).await;
        (endpoints, took)
    }

    /// Starts joining `room` (another room than the configured one).
    pub async fn send_join(&mut self, id: &str, room: &str) {
        self.send(json!({"cmd": "join", "id": id, "room": room}))
            .await;
    }

    /// Waits until `id` has joined; returns its endpoint ID.
    pub async fn joined(&mut self, id: &str) -> String {
        let v = self
            .wait(&format!("{id} joined"), Duration::from_secs(60), |v| {
                v["event"] == "joined" && v["id"] == id
            })
            .await;
        v["endpoint"].as_str().unwrap_or_default().to_owned()
    }

    /// Starts joining with page settings of its own (e.g. `{"resolution": 720}` for its camera).
    pub async fn join_with(&mut self, id: &str, settings: Value) {
        let mut cmd = json!({"cmd": "join", "id": id});
        if let (Some(c), Some(s)) = (cmd.as_object_mut(), settings.as_object()) {
            for (k, v) in s {
                c.insert(k.clone(), v.clone());
            }
        }
        self.send(cmd).await;
    }

    /// Starts joining with page settings merged into the configuration (`e2e/ljm-peer.js`'s `page`:
    /// `{"id": user, "password": …}` to log in, `"anonymousdomain"`, `"waitForHost"`), from the page
    /// origin `origin` (another origin is another browser's storage, e.g. `"localhost"`). With
    /// `expect_fail`, a failed join is reported to [`Participants::join_failed`].
    pub async fn join_page(
        &mut self,
        id: &str,
        page: Value,
        origin: Option<&str>,
        expect_fail: bool,
    ) {
        self.send(json!({
            "cmd": "join", "id": id, "page": page, "origin": origin, "expectFail": expect_fail,
        }))
        .await;
    }

    /// Waits until a join started with `expect_fail` failed; returns the page's error message.
    pub async fn join_failed(&mut self, id: &str) -> String {
        let v = self
            .wait(&format!("{id} join failed"), Duration::from_secs(60), |v| {
                (v["event"] == "join-failed" || v["event"] == "joined") && v["id"] == id
            })
            .await;
        assert_eq!(v["event"], "join-failed", "{id} joined: {v}");
        v["message"].as_str().unwrap_or_default().to_owned()
    }

    /// Calls the page function `window[fun](...args)` of `id` (one of `e2e/pages/ljm.js`'s
    /// `ljm*` functions); returns its result.
    pub async fn call(&mut self, id: &str, fun: &str, args: Value) -> Value {
        self.send(json!({"cmd": "call", "id": id, "fn": fun, "args": args}))
            .await;
        let v = self
            .wait(&format!("{id}.{fun}"), Duration::from_secs(30), |v| {
                v["event"] == "called" && v["id"] == id && v["fn"] == fun
            })
            .await;
        v["result"].clone()
    }

    /// Opens a page that joins by itself (the demo page).
    pub async fn open(&mut self, id: &str, url: &str) {
        self.send(json!({"cmd": "open", "id": id, "url": url}))
            .await;
        self.wait(&format!("{id} opened"), Duration::from_secs(30), |v| {
            v["event"] == "opened" && v["id"] == id
        })
        .await;
    }

    /// `ljmStats()` of every page, by id.
    pub async fn stats(&mut self) -> Value {
        self.send(json!({"cmd": "stats"})).await;
        let v = self
            .wait("stats", Duration::from_secs(30), |v| v["event"] == "stats")
            .await;
        v["pages"].clone()
    }

    pub async fn leave(&mut self, id: &str) {
        self.send(json!({"cmd": "leave", "id": id})).await;
        self.wait(&format!("{id} left"), Duration::from_secs(30), |v| {
            v["event"] == "left" && v["id"] == id
        })
        .await;
    }

    pub async fn screenshot(&mut self, id: &str, path: &std::path::Path) {
        self.send(json!({"cmd": "screenshot", "id": id, "path": path}))
            .await;
        self.wait("screenshot", Duration::from_secs(30), |v| {
            v["event"] == "screenshot" && v["id"] == id
        })
        .await;
    }

    pub async fn quit(mut self) {
        self.send(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await;
    }
}

/// What a receiver saw of one sender at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Seen {
    pub audio_bytes: f64,
    pub audio_samples: f64,
    pub video_bytes: f64,
    pub frames: f64,
}

pub fn seen(stats: &Value, page: &str, sender: &str) -> Option<Seen> {
    let r = &stats[page]["remote"][sender];
    if r["audio"].is_null() || r["video"].is_null() {
        return None;
    }
    let n = |v: &Value| v.as_f64().unwrap_or(0.0);
    Some(Seen {
        audio_bytes: n(&r["audio"]["bytesReceived"]),
        audio_samples: n(&r["audio"]["totalSamplesReceived"]),
        video_bytes: n(&r["video"]["bytesReceived"]),
        frames: n(&r["video"]["framesDecoded"]),
    })
}

/// Waits until every page in `pages` (id → its endpoint) receives audio and video from every other one:
/// audio bytes and decoded samples rising, video bytes rising and frames decoded. With `new_session`,
/// only counts a page once its Jingle session differs from the one given (after a move). Returns how
/// long it took.
pub async fn wait_media(
    p: &mut Participants,
    pages: &[(&str, &str)],
    timeout: Duration,
    new_session: Option<&HashMap<String, String>>,
) -> Duration {
    let start = Instant::now();
    let mut last: HashMap<(String, String), Seen> = HashMap::new();
    loop {
        let s = p.stats().await;
        let mut missing = Vec::new();
        for (page, me) in pages {
            let sid = s[*page]["sid"].as_str().unwrap_or_default().to_owned();
            let old = new_session.and_then(|m| m.get(*page));
            for (_, other) in pages.iter().filter(|(_, e)| e != me) {
                let key = ((*page).to_owned(), (*other).to_owned());
                let now = seen(&s, page, other);
                let ok = match (now, last.get(&key)) {
                    (Some(n), Some(prev)) => {
                        n.audio_bytes > prev.audio_bytes
                            && n.audio_samples > prev.audio_samples
                            && n.video_bytes > prev.video_bytes
                            && n.frames > 0.0
                            && old.is_none_or(|o| *o != sid)
                    }
                    _ => false,
                };
                if let Some(n) = now {
                    last.insert(key, n);
                }
                if !ok {
                    missing.push(format!("{page} <- {other}: {now:?}"));
                }
            }
        }
        if missing.is_empty() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "media not flowing after {timeout:?}: {missing:?}\n{s}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub fn sessions(stats: &Value, pages: &[&str]) -> HashMap<String, String> {
    pages
        .iter()
        .map(|p| {
            (
                (*p).to_owned(),
                stats[*p]["sid"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
