//! The harness the browser tests share (moved from browser_bridge.rs): the real `bridge` binary
//! ([`BridgeProc`]), this test acting as the focus over XMPP ([`Focus`]: brewery presence, COLIBRI2),
//! headless Chromium participants driven through e2e/bridge-peers.js ([`Peers`]), and the SDP the
//! test builds from the COLIBRI2 answers ([`offer_sdp`], [`parse_answer`]).
#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use service::{HttpResponse, http_request};
use signaling::brewery::Stats;
use signaling::colibri2::{
    Colibri2ErrorResponse, ConferenceModified, ConferenceModify, Endpoint, Media, MediaSource,
    Sctp, Sources, Transport, capability,
};
use signaling::ice_udp::{Candidate, Fingerprint, IceUdpTransport, Setup};
use signaling::ns;
use signaling::rtp_description::{MediaType, PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup};
use signaling::xml::XmlElement;
use signaling::xmpp::{self, BareJid, Event, IqError, Jid, MucJoin, XmppHandle};
use testkit::{JVB_PASSWORD, Prosody, e2e_dir, ensure_browser_harness};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};

pub const BIN: &str = env!("CARGO_BIN_EXE_bridge");
pub const OPUS_PT: u8 = 111;
pub const VP8_PT: u8 = 100;
pub const RTX_PT: u8 = 96;
pub const AUDIO_LEVEL_ID: u8 = 1;
pub const TCC_ID: u8 = 5;
pub const IQ_TIMEOUT: Duration = Duration::from_secs(15);
pub const NICK: &str = "jvb-test";

// ------------------------------------------------------------------------------------------------
// The bridge process

/// The `bridge` binary, killed on drop; stderr kept for failure messages.
pub struct BridgeProc {
    pub child: tokio::process::Child,
    pub rest: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl BridgeProc {
    pub async fn start(env: &[(String, String)], rest_port: u16) -> Result<BridgeProc> {
        // BRIDGE_TEST_BIN runs another build (e.g. a release binary, for CPU figures).
        let bin = std::env::var("BRIDGE_TEST_BIN").unwrap_or_else(|_| BIN.to_owned());
        let mut child = tokio::process::Command::new(bin)
            .env_clear()
            // JVB_MEDIA_WORKERS from the test's environment: the suite runs with 1, 2 or the default.
            .envs(std::env::var("JVB_MEDIA_WORKERS").map(|v| ("JVB_MEDIA_WORKERS", v)))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("spawning the bridge")?;
        let stderr = child.stderr.take().context("stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("BRIDGE_TEST_LOG").is_some() {
                    eprintln!("[bridge] {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut b = BridgeProc {
            child,
            rest: format!("http://127.0.0.1:{rest_port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = b.get("/about/version").await
                && r.status == 200
            {
                return Ok(b);
            }
            if let Some(st) = b.child.try_wait()? {
                bail!("bridge exited at start-up ({st}):\n{}", b.log_text());
            }
            if Instant::now() > deadline {
                bail!("bridge REST API did not come up:\n{}", b.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resident set size of the bridge process (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        let Some(pid) = self.child.id() else { return 0 };
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    /// Sets the scheduling priority of every thread of the bridge to `nice` (the browser tests run
    /// as root). For the garbage flood: it measures what the bridge does with garbage, not whether
    /// other work on a shared 2-core machine leaves it the CPU to keep reading its socket — a
    /// starved bridge's socket buffer overflows and the kernel drops call packets with the flood's.
    pub fn prioritize(&self, nice: libc::c_int) -> Result<()> {
        let pid = self.child.id().context("bridge exited")?;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let Some(tid) = task?.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            // SAFETY: setpriority(2) on one of the bridge's threads; no memory is passed.
            if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
                bail!("setpriority: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// CPU time (user + system) the bridge process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let Some(pid) = self.child.id() else {
            return Duration::ZERO;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|x| x.parse().ok())
            .collect();
        // USER_HZ is 100 on Linux.
        Duration::from_millis(f.iter().sum::<u64>() * 10)
    }

    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap();
        let start = log.len().saturating_sub(60);
        log[start..].join("\n")
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<HttpResponse> {
        let url = format!("{}{path}", self.rest);
        let method = method.to_owned();
        tokio::task::spawn_blocking(move || {
            let body = body.as_ref().map(|b| ("application/json", b.as_bytes()));
            http_request(&method, &url, body, Duration::from_secs(5))
        })
        .await?
        .map_err(|e| anyhow!("{e}"))
    }

    pub async fn get(&self, path: &str) -> Result<HttpResponse> {
        self.request("GET", path, None).await
    }

    /// `jitsi_jvb_dropped_packets_total` by reason, from `/metrics`.
    pub async fn metric_drops(&self) -> Result<BTreeMap<String, u64>> {
        let text = self.get("/metrics").await?.text();
        let mut out = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("jitsi_jvb_dropped_packets_total{reason=\"")
                && let Some((reason, value)) = rest.split_once("\"} ")
            {
                out.insert(reason.to_owned(), value.trim().parse().unwrap_or(0));
            }
        }
        Ok(out)
    }

    pub async fn colibri_stats(&self) -> Result<Value> {
        let r = self.get("/colibri/stats").await?;
        ensure!(r.status == 200, "/colibri/stats: {}", r.status);
        Ok(serde_json::from_slice(&r.body)?)
    }
}

/// Runs a browser test's `call` against a Prosody and a bridge (SRTP `profile`) started for it,
/// given the bridge's media port; the bridge's log tail is printed when the call fails.
pub async fn with_bridge(
    profile: &str,
    call: impl AsyncFnOnce(&Prosody, &BridgeProc, u16) -> Result<()>,
) -> Result<()> {
    ensure_browser_harness()?;
    let prosody = tokio::task::spawn_blocking(Prosody::start).await??;
    let (media_port, rest_port) = (testkit::free_udp_port()?, testkit::free_tcp_port()?);
    let bridge = BridgeProc::start(
        &bridge_env(&prosody, media_port, rest_port, profile),
        rest_port,
    )
    .await?;
    let r = call(&prosody, &bridge, media_port).await;
    if r.is_err() {
        eprintln!("--- bridge log (tail) ---\n{}", bridge.log_text());
    }
    r
}

// ------------------------------------------------------------------------------------------------
// The test as the focus

/// The latest brewery presence of the bridge.
#[derive(Debug, Clone)]
pub struct BridgePresence {
    pub occupant: Jid,
    pub stats: Stats,
}

pub struct Focus {
    pub xmpp: XmppHandle,
    pub presence: watch::Receiver<Option<BridgePresence>>,
}

impl Focus {
    pub async fn start(prosody: &Prosody, brewery: &str) -> Result<Focus> {
        let (xmpp, mut events) = xmpp::connect_client(prosody.focus_client_config());
        xmpp.wait_online(Duration::from_secs(20))
            .await
            .context("focus did not come online")?;
        let room = BareJid::new(brewery)?;
        let (tx, rx) = watch::channel(None);
        let watched = room.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let Event::Presence(p) = ev
                    && let Some(from) = p.from.clone()
                    && from.to_bare() == watched
                    && from.resource().is_some_and(|r| r.as_str() == NICK)
                {
                    if p.type_ == xmpp::parsers::presence::Type::Unavailable {
                        let _ = tx.send(None);
                        continue;
                    }
                    if let Some(stats) = p
                        .payloads
                        .iter()
                        .find(|e| e.is("stats", ns::COLIBRI))
                        .and_then(|e| Stats::from_element(e).ok())
                    {
                        let _ = tx.send(Some(BridgePresence {
                            occupant: from,
                            stats,
                        }));
                    }
                }
            }
        });
        xmpp.join_muc(MucJoin::new(room, "focus")).await?;
        Ok(Focus { xmpp, presence: rx })
    }

    /// A focus in `prosody`'s bridge brewery (`jvbbrewery@` the internal MUC, as jicofo joins
    /// it), once a bridge's presence there carries its stats (drain and stress level).
    pub async fn in_brewery(prosody: &Prosody) -> Result<Focus> {
        let brewery = format!("jvbbrewery@{}", prosody.internal_muc_domain());
        let mut focus = Focus::start(prosody, &brewery).await?;
        focus
            .wait_presence(Duration::from_secs(20), "the bridge's stats", |s| {
                s.drain().ok().flatten().is_some() && s.stress_level().ok().flatten().is_some()
            })
            .await?;
        Ok(focus)
    }

    pub async fn wait_presence(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Stats) -> bool,
    ) -> Result<BridgePresence> {
        let r = tokio::time::timeout(
            timeout,
            self.presence
                .wait_for(|p| p.as_ref().is_some_and(|p| pred(&p.stats))),
        )
        .await
        .map(|r| r.map(|p| p.clone()));
        match r {
            Ok(Ok(p)) => p.context("presence"),
            _ => bail!(
                "no bridge presence with {what} within {timeout:?}; last: {:?}",
                *self.presence.borrow()
            ),
        }
    }

    pub fn bridge(&self) -> Result<Jid> {
        Ok(self
            .presence
            .borrow()
            .as_ref()
            .context("bridge not in the brewery")?
            .occupant
            .clone())
    }

    /// Sends a COLIBRI2 request; Ok(Err) is the bridge's COLIBRI2 error.
    pub async fn colibri(
        &self,
        req: &ConferenceModify,
    ) -> Result<std::result::Result<ConferenceModified, Colibri2ErrorResponse>> {
        match self
            .xmpp
            .iq_set(self.bridge()?, req.to_element(), IQ_TIMEOUT)
            .await
        {
            Ok(r) => {
                let payload = r.payload.context("empty conference-modify result")?;
                Ok(Ok(ConferenceModified::from_element(&payload)?))
            }
            Err(IqError::ErrorReply(reply)) => {
                Ok(Err(Colibri2ErrorResponse::from_iq(&reply.stanza)?))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn colibri_ok(&self, req: &ConferenceModify) -> Result<ConferenceModified> {
        self.colibri(req)
            .await?
            .map_err(|e| anyhow!("COLIBRI2 error: {e:?}"))
    }
}

// ------------------------------------------------------------------------------------------------
// Browser peers

pub struct Peers {
    pub child: tokio::process::Child,
    pub stdin: tokio::process::ChildStdin,
    pub events: mpsc::UnboundedReceiver<Value>,
    pub stats: Arc<Mutex<HashMap<String, Value>>>,
}

impl Peers {
    pub async fn start() -> Result<Peers> {
        ensure_browser_harness()?;
        let mut child = tokio::process::Command::new("node")
            .arg(e2e_dir().join("bridge-peers.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning node e2e/bridge-peers.js")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        let stats: Arc<Mutex<HashMap<String, Value>>> = Arc::default();
        let (tx, events) = mpsc::unbounded_channel();
        let latest = Arc::clone(&stats);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("[peers] {line}");
                    continue;
                };
                if v["event"] == "stats" {
                    let peer = v["peer"].as_str().unwrap_or_default().to_owned();
                    latest.lock().unwrap().insert(peer, v);
                } else {
                    let _ = tx.send(v);
                }
            }
        });
        let mut p = Peers {
            child,
            stdin,
            events,
            stats,
        };
        p.expect_event("ready", None, Duration::from_secs(30))
            .await?;
        Ok(p)
    }

    pub async fn send(&mut self, cmd: Value) -> Result<()> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub async fn expect_event(
        &mut self,
        event: &str,
        peer: Option<&str>,
        timeout: Duration,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let v = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .with_context(|| format!("timed out waiting for {event} from {peer:?}"))?
                .context("browser peers exited")?;
            if v["event"] == "error" {
                bail!("browser peer error: {v}");
            }
            if v["event"] == event && peer.is_none_or(|p| v["peer"] == p) {
                return Ok(v);
            }
        }
    }

    pub async fn open(&mut self, peer: &str) -> Result<()> {
        self.send(json!({"cmd": "open", "peer": peer})).await?;
        self.expect_event("opened", Some(peer), Duration::from_secs(30))
            .await?;
        Ok(())
    }

    pub async fn offer(&mut self, peer: &str, sdp: &str) -> Result<String> {
        self.send(json!({"cmd": "offer", "peer": peer, "sdp": sdp}))
            .await?;
        let v = self
            .expect_event("answer", Some(peer), Duration::from_secs(30))
            .await?;
        Ok(v["sdp"].as_str().unwrap_or_default().to_owned())
    }

    /// `window[fn](arg)` in `peer`'s page; its value.
    pub async fn call(&mut self, peer: &str, f: &str, arg: Value) -> Result<Value> {
        self.send(json!({"cmd": "call", "peer": peer, "fn": f, "arg": arg}))
            .await?;
        let v = self
            .expect_event("result", Some(peer), Duration::from_secs(30))
            .await?;
        Ok(v["value"].clone())
    }

    pub async fn send_data(&mut self, peer: &str, text: &str) -> Result<()> {
        self.send(json!({"cmd": "send", "peer": peer, "text": text}))
            .await
    }

    pub fn stats(&self, peer: &str) -> Value {
        self.stats
            .lock()
            .unwrap()
            .get(peer)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// `peer`'s first stats taken after `after` (wall clock; the browser runs on this machine).
    pub async fn fresh_stats(&self, peer: &str, after: std::time::SystemTime) -> Result<Value> {
        let after_ms = after
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let st = self.stats(peer);
            if st["t"].as_u64().is_some_and(|t| t > after_ms) {
                return Ok(st);
            }
            ensure!(Instant::now() < deadline, "no fresh stats from {peer}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the peers' latest stats until `pred` holds.
    pub async fn wait(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Peers) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if pred(self) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; stats: {:#}",
                    json!(*self.stats.lock().unwrap())
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn quit(mut self) {
        let _ = self.send(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// The inbound-rtp entry of `peer` for `ssrc`.
pub fn inbound(stats: &Value, ssrc: u32) -> Option<Value> {
    stats["inbound"]
        .as_array()?
        .iter()
        .find(|s| s["ssrc"].as_u64() == Some(u64::from(ssrc)))
        .cloned()
}

pub fn field(stats: &Value, ssrc: u32, name: &str) -> u64 {
    inbound(stats, ssrc)
        .and_then(|s| s[name].as_u64())
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------------
// SDP from the bridge's COLIBRI2 transport, and the browser's answer back

/// One participant's sources as the answer showed them.
#[derive(Debug, Clone)]
pub struct PeerSources {
    pub endpoint: String,
    pub audio: u32,
    pub video: u32,
    pub video_rtx: Option<u32>,
}

impl PeerSources {
    /// The COLIBRI2 `<sources>` (complete set, named `<ep>-a0` / `<ep>-v0`, no msid).
    pub fn colibri(&self) -> Sources {
        let a_name = format!("{}-a0", self.endpoint);
        let v_name = format!("{}-v0", self.endpoint);
        let mut a = MediaSource::new(MediaType::Audio, a_name.clone());
        a.sources.push(Source::named(self.audio, &a_name));
        let mut v = MediaSource::new(MediaType::Video, v_name.clone());
        v.sources.push(Source::named(self.video, &v_name));
        if let Some(rtx) = self.video_rtx {
            v.sources.push(Source::named(rtx, &v_name));
            v.ssrc_groups
                .push(SsrcGroup::new(Semantics::Fid, vec![self.video, rtx]));
        }
        Sources {
            media_sources: vec![a, v],
        }
    }
}

pub fn audio_rtp() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(OPUS_PT, "opus", 48000, Some(2))
                .with_parameter("minptime", "10")
                .with_parameter("useinbandfec", "1")
                .with_rtcp_fb("transport-cc", None),
        ],
        header_extensions: vec![
            RtpHdrExt::new(AUDIO_LEVEL_ID, hdrext::AUDIO_LEVEL),
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
        ],
        extmap_allow_mixed: false,
    }
}

pub fn video_rtp() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(VP8_PT, "VP8", 90000, None)
                .with_rtcp_fb("ccm", Some("fir"))
                .with_rtcp_fb("nack", None)
                .with_rtcp_fb("nack", Some("pli"))
                .with_rtcp_fb("transport-cc", None),
            PayloadType::new(RTX_PT, "rtx", 90000, None).with_parameter("apt", "100"),
        ],
        header_extensions: vec![RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC)],
        extmap_allow_mixed: false,
    }
}

/// What jicofo sends to allocate a participant.
pub fn endpoint_create(id: &str) -> Endpoint {
    Endpoint {
        create: true,
        stats_id: Some(format!("stats-{id}")),
        media: vec![
            Media {
                media_type: MediaType::Audio,
                rtp: audio_rtp(),
            },
            Media {
                media_type: MediaType::Video,
                rtp: video_rtp(),
            },
        ],
        transport: Some(Transport {
            ice_controlling: true,
            sctp: Some(Sctp::default()),
            ..Transport::default()
        }),
        capabilities: vec![capability::SOURCE_NAMES.into()],
        ..Endpoint::new(id)
    }
}

pub fn modify(meeting: &str, create: bool, endpoints: Vec<Endpoint>) -> ConferenceModify {
    ConferenceModify {
        create,
        name: create.then(|| "room@conference.meet.example".to_owned()),
        endpoints,
        ..ConferenceModify::new(meeting)
    }
}

/// The `a=rtpmap` / `fmtp` / `rtcp-fb` / `extmap-allow-mixed` / `extmap` lines of `rtp`.
pub fn m_line_codecs(s: &mut String, rtp: &RtpParameters) {
    for pt in &rtp.payload_types {
        match pt.channels {
            Some(ch) => s.push_str(&format!(
                "a=rtpmap:{} {}/{}/{ch}\r\n",
                pt.id,
                pt.name,
                pt.clockrate.unwrap_or(90000)
            )),
            None => s.push_str(&format!(
                "a=rtpmap:{} {}/{}\r\n",
                pt.id,
                pt.name,
                pt.clockrate.unwrap_or(90000)
            )),
        }
        if !pt.parameters.is_empty() {
            let p: Vec<String> = pt
                .parameters
                .iter()
                .map(|p| format!("{}={}", p.name, p.value))
                .collect();
            s.push_str(&format!("a=fmtp:{} {}\r\n", pt.id, p.join(";")));
        }
        for fb in &pt.rtcp_fb {
            match &fb.subtype {
                Some(sub) => s.push_str(&format!("a=rtcp-fb:{} {} {sub}\r\n", pt.id, fb.fb_type)),
                None => s.push_str(&format!("a=rtcp-fb:{} {}\r\n", pt.id, fb.fb_type)),
            }
        }
    }
    if rtp.extmap_allow_mixed {
        s.push_str("a=extmap-allow-mixed\r\n");
    }
    for h in &rtp.header_extensions {
        s.push_str(&format!("a=extmap:{} {}\r\n", h.id, h.uri));
    }
}

/// The offer a participant gets: the bridge's transport on every m-line (BUNDLE), its own audio
/// and video (sendrecv), the data channel, and one sendonly m-line per remote source (Unified Plan,
/// as lib-jitsi-meet's interop layer turns the focus's sources into).
pub fn offer_sdp(t: &IceUdpTransport, remote: &[PeerSources]) -> Result<String> {
    offer_sdp_with(t, remote, &video_rtp())
}

/// [`offer_sdp`] with `video` (payload types, header extensions) on the video m-lines.
pub fn offer_sdp_with(
    t: &IceUdpTransport,
    remote: &[PeerSources],
    video: &RtpParameters,
) -> Result<String> {
    let video_pts: Vec<String> = video
        .payload_types
        .iter()
        .map(|pt| pt.id.to_string())
        .collect();
    let video_pts = video_pts.join(" ");
    let fp = t
        .fingerprint()
        .context("bridge transport without fingerprint")?;
    let mut mids = vec!["audio".to_owned(), "video".to_owned(), "data".to_owned()];
    for r in remote {
        mids.push(format!("{}-a0", r.endpoint));
        mids.push(format!("{}-v0", r.endpoint));
    }
    let mut s = String::new();
    s.push_str("v=0\r\no=- 1923518516 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
    s.push_str(&format!("a=group:BUNDLE {}\r\n", mids.join(" ")));
    s.push_str("a=msid-semantic: WMS *\r\n");
    let transport = |s: &mut String, mid: &str| {
        s.push_str("c=IN IP4 0.0.0.0\r\n");
        s.push_str(&format!(
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
            t.ufrag.as_deref().unwrap_or_default(),
            t.pwd.as_deref().unwrap_or_default()
        ));
        s.push_str(&format!(
            "a=fingerprint:{} {}\r\na=setup:actpass\r\n",
            fp.hash, fp.value
        ));
        s.push_str(&format!("a=mid:{mid}\r\n"));
        for c in &t.candidates {
            let mut line = format!(
                "a=candidate:{} {} {} {} {} {} typ {}",
                c.foundation, c.component, c.protocol, c.priority, c.ip, c.port, c.candidate_type
            );
            if let (Some(ra), Some(rp)) = (&c.rel_addr, c.rel_port) {
                line.push_str(&format!(" raddr {ra} rport {rp}"));
            }
            s.push_str(&line);
            s.push_str(" generation 0\r\n");
        }
        s.push_str("a=end-of-candidates\r\n");
    };
    s.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}\r\n"));
    transport(&mut s, "audio");
    s.push_str("a=sendrecv\r\na=rtcp-mux\r\n");
    m_line_codecs(&mut s, &audio_rtp());
    s.push_str(&format!("m=video 9 UDP/TLS/RTP/SAVPF {video_pts}\r\n"));
    transport(&mut s, "video");
    s.push_str("a=sendrecv\r\na=rtcp-mux\r\n");
    m_line_codecs(&mut s, video);
    s.push_str("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
    transport(&mut s, "data");
    s.push_str("a=sctp-port:5000\r\na=max-message-size:262144\r\n");
    for r in remote {
        let stream = format!("{}-stream", r.endpoint);
        s.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}\r\n"));
        transport(&mut s, &format!("{}-a0", r.endpoint));
        s.push_str("a=sendonly\r\na=rtcp-mux\r\n");
        m_line_codecs(&mut s, &audio_rtp());
        s.push_str(&format!("a=ssrc:{} cname:{}\r\n", r.audio, r.endpoint));
        s.push_str(&format!(
            "a=ssrc:{} msid:{stream} {}-a0\r\n",
            r.audio, r.endpoint
        ));
        s.push_str(&format!("m=video 9 UDP/TLS/RTP/SAVPF {video_pts}\r\n"));
        transport(&mut s, &format!("{}-v0", r.endpoint));
        s.push_str("a=sendonly\r\na=rtcp-mux\r\n");
        m_line_codecs(&mut s, video);
        let mut ssrcs = vec![r.video];
        if let Some(rtx) = r.video_rtx {
            s.push_str(&format!("a=ssrc-group:FID {} {rtx}\r\n", r.video));
            ssrcs.push(rtx);
        }
        for ssrc in ssrcs {
            s.push_str(&format!("a=ssrc:{ssrc} cname:{}\r\n", r.endpoint));
            s.push_str(&format!(
                "a=ssrc:{ssrc} msid:{stream} {}-v0\r\n",
                r.endpoint
            ));
        }
    }
    Ok(s)
}

/// The transport of a browser's answer as the focus turns it into COLIBRI2 (only loopback
/// candidates: the tests stay on 127.0.0.1).
pub fn parse_transport(sdp: &str) -> Result<IceUdpTransport> {
    let mut t = IceUdpTransport {
        rtcp_mux: true,
        ..IceUdpTransport::default()
    };
    for line in sdp.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            t.ufrag.get_or_insert_with(|| v.to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            t.pwd.get_or_insert_with(|| v.to_owned());
        } else if let Some(v) = line.strip_prefix("a=fingerprint:") {
            let (hash, value) = v.split_once(' ').context("bad fingerprint")?;
            if !t.fingerprints.iter().any(|f| f.value == value) {
                t.fingerprints.push(Fingerprint {
                    hash: hash.to_owned(),
                    setup: Some(Setup::Active),
                    cryptex: false,
                    value: value.to_owned(),
                });
            }
        } else if let Some(v) = line.strip_prefix("a=candidate:") {
            let f: Vec<&str> = v.split(' ').collect();
            if f.len() >= 8
                && f[2].eq_ignore_ascii_case("udp")
                && let (Ok(priority), Ok(ip), Ok(port)) = (
                    f[3].parse::<u32>(),
                    f[4].parse::<std::net::IpAddr>(),
                    f[5].parse::<u16>(),
                )
                && ip.is_loopback()
                && !t.candidates.iter().any(|c| c.port == port && c.ip == f[4])
            {
                t.candidates.push(Candidate::host_udp(
                    f[0],
                    &format!("c{}", t.candidates.len()),
                    ip,
                    port,
                    priority,
                ));
            }
        }
    }
    ensure!(
        t.ufrag.is_some() && t.pwd.is_some(),
        "answer without ICE credentials"
    );
    ensure!(
        !t.candidates.is_empty(),
        "answer without loopback candidates:\n{sdp}"
    );
    Ok(t)
}

/// The browser's answer as the focus turns it into COLIBRI2: transport ([`parse_transport`]) and
/// sources.
pub fn parse_answer(endpoint: &str, sdp: &str) -> Result<(IceUdpTransport, PeerSources)> {
    let t = parse_transport(sdp)?;
    let mut mid = String::new();
    let mut audio = None;
    let mut video = None;
    let mut rtx = None;
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            mid.clear();
        } else if let Some(v) = line.strip_prefix("a=mid:") {
            mid = v.to_owned();
        } else if let Some(v) = line.strip_prefix("a=ssrc-group:FID ")
            && mid == "video"
        {
            let s: Vec<u32> = v.split(' ').filter_map(|x| x.parse().ok()).collect();
            if let [v0, r0, ..] = s[..] {
                video = Some(v0);
                rtx = Some(r0);
            }
        } else if let Some(v) = line.strip_prefix("a=ssrc:")
            && let Some(Ok(ssrc)) = v.split(' ').next().map(str::parse::<u32>)
        {
            match mid.as_str() {
                "audio" => {
                    audio.get_or_insert(ssrc);
                }
                "video" => {
                    video.get_or_insert(ssrc);
                }
                _ => {}
            }
        }
    }
    Ok((
        t,
        PeerSources {
            endpoint: endpoint.to_owned(),
            audio: audio.context("no audio SSRC in the answer")?,
            video: video.context("no video SSRC in the answer")?,
            video_rtx: rtx,
        },
    ))
}

/// The ICE-UDP transport the bridge answered for endpoint `id`.
pub fn answered_ice(m: &ConferenceModified, id: &str) -> Result<IceUdpTransport> {
    m.endpoint(id)
        .and_then(|e| e.transport.clone())
        .and_then(|t| t.ice_udp)
        .with_context(|| format!("no ice-udp transport for {id}"))
}

/// A two-party call set up as jicofo and lib-jitsi-meet do it: both endpoints allocated with
/// COLIBRI2 (the first creates the conference), the browsers' answers to offers built from the
/// bridge's transports, their transports and sources to the bridge, then each browser offered the
/// other's sources.
pub struct TwoParty {
    /// The bridge's transports for A and B, the browsers' transports, their sources.
    pub ta: IceUdpTransport,
    pub tb: IceUdpTransport,
    pub rta: IceUdpTransport,
    pub rtb: IceUdpTransport,
    pub sa: PeerSources,
    pub sb: PeerSources,
    /// The bridge's answers to A's and B's allocations, then to their transport and sources.
    pub allocated: [ConferenceModified; 2],
    pub updated: [ConferenceModified; 2],
}

pub async fn two_party_call(
    focus: &Focus,
    peers: &mut Peers,
    meeting: &str,
    (ep_a, ep_b): (&str, &str),
) -> Result<TwoParty> {
    let ma = focus
        .colibri_ok(&modify(meeting, true, vec![endpoint_create(ep_a)]))
        .await?;
    let mb = focus
        .colibri_ok(&modify(meeting, false, vec![endpoint_create(ep_b)]))
        .await?;
    let (ta, tb) = (answered_ice(&ma, ep_a)?, answered_ice(&mb, ep_b)?);
    let ans_a = peers.offer("a", &offer_sdp(&ta, &[])?).await?;
    let ans_b = peers.offer("b", &offer_sdp(&tb, &[])?).await?;
    let (rta, sa) = parse_answer(ep_a, &ans_a)?;
    let (rtb, sb) = parse_answer(ep_b, &ans_b)?;
    let mut updated = Vec::with_capacity(2);
    for (id, rt, s) in [(ep_a, &rta, &sa), (ep_b, &rtb, &sb)] {
        let mut e = Endpoint::new(id);
        e.transport = Some(Transport {
            ice_udp: Some(rt.clone()),
            ..Transport::default()
        });
        e.sources = Some(s.colibri());
        updated.push(focus.colibri_ok(&modify(meeting, false, vec![e])).await?);
    }
    let updated: [ConferenceModified; 2] = updated.try_into().expect("two updates");
    peers
        .offer("a", &offer_sdp(&ta, std::slice::from_ref(&sb))?)
        .await?;
    peers
        .offer("b", &offer_sdp(&tb, std::slice::from_ref(&sa))?)
        .await?;
    Ok(TwoParty {
        ta,
        tb,
        rta,
        rtb,
        sa,
        sb,
        allocated: [ma, mb],
        updated,
    })
}

// ------------------------------------------------------------------------------------------------
// The bridge's environment

pub fn bridge_env(
    prosody: &Prosody,
    media_port: u16,
    rest_port: u16,
    profile: &str,
) -> Vec<(String, String)> {
    [
        ("XMPP_SERVER", format!("127.0.0.1:{}", prosody.ports().c2s)),
        ("XMPP_DOMAIN", prosody.domain().to_owned()),
        ("XMPP_AUTH_DOMAIN", prosody.auth_domain().to_owned()),
        (
            "XMPP_INTERNAL_MUC_DOMAIN",
            prosody.internal_muc_domain().to_owned(),
        ),
        ("JVB_AUTH_PASSWORD", JVB_PASSWORD.to_owned()),
        ("JVB_BREWERY_MUC", "jvbbrewery".to_owned()),
        ("JVB_MUC_NICKNAME", NICK.to_owned()),
        ("JVB_PORT", media_port.to_string()),
        ("JVB_MEDIA_HOST", "127.0.0.1".to_owned()),
        ("JVB_DISABLE_STUN", "true".to_owned()),
        ("JVB_REST_HOST", "127.0.0.1".to_owned()),
        ("JVB_REST_PORT", rest_port.to_string()),
        ("JVB_SRTP_PROFILES", profile.to_owned()),
        ("JVB_STATS_INTERVAL", "500ms".to_owned()),
        ("SHUTDOWN_REST_ENABLED", "true".to_owned()),
        ("COLIBRI_REST_ENABLED", "true".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!(
        "{:08x}-0000-4000-8000-{:012x}",
        (t & 0xffff_ffff) as u32,
        N.fetch_add(1, Ordering::Relaxed)
    )
}
