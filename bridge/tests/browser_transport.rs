//! The bridge transport against real headless Chromium on 127.0.0.1.
//!
//! A test page (e2e/pages/transport.html, driven by e2e/transport-peer.js) answers an SDP offer
//! made from OUR transport (ufrag/pwd, sha-256 fingerprint actpass, one host candidate on the
//! loopback port, BUNDLE of audio + video + application). It sends fake mic + camera and opens
//! the bridge channel like lib-jitsi-meet. The bridge side is `bridge::transport` driven by its
//! tokio `Port` shell, with a handler that loops the browser's video back under the SSRC the
//! offer signalled. While the call runs, another socket throws garbage, truncated STUN/DTLS/RTP
//! and wrong-credential STUN at the port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bridge::transport::stun::{Builder, Class, METHOD_BINDING};
use bridge::transport::{
    DropCounters, DropReason, DtlsIdentity, EndpointTransport, Fingerprint, IceConfig,
    IceCredentials, IceMode, Port, PortHandler, PortState, RemoteCandidate, RemoteTransport,
    SrtpProfile, TransportConfig, TransportEvent,
};
use serde_json::Value;
use testkit::{e2e_dir, ensure_browser_harness};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// SSRCs the offer signals for what the bridge sends to the browser.
const LOOP_VIDEO_SSRC: u32 = 0x1111_2222;
const BRIDGE_AUDIO_SSRC: u32 = 0x3333_4444;
const VP8_PT: u8 = 100;
const OPUS_PT: u8 = 111;
const EP: u32 = 1;

fn offer_sdp(local: &IceCredentials, fp: &Fingerprint, port: SocketAddr, lite: bool) -> String {
    let mut s = String::new();
    s.push_str("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    s.push_str("a=group:BUNDLE audio video data\r\n");
    if lite {
        s.push_str("a=ice-lite\r\n");
    }
    s.push_str("a=msid-semantic: WMS *\r\n");
    let transport = |s: &mut String, mid: &str| {
        s.push_str("c=IN IP4 0.0.0.0\r\n");
        s.push_str(&format!(
            "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
            local.ufrag, local.pwd
        ));
        s.push_str(&format!(
            "a=fingerprint:{} {}\r\na=setup:actpass\r\n",
            fp.algorithm, fp.value
        ));
        s.push_str(&format!("a=mid:{mid}\r\n"));
        s.push_str(&format!(
            "a=candidate:1 1 udp 2130706431 {} {} typ host generation 0\r\n",
            port.ip(),
            port.port()
        ));
        s.push_str("a=end-of-candidates\r\n");
    };
    s.push_str(&format!("m=audio 9 UDP/TLS/RTP/SAVPF {OPUS_PT}\r\n"));
    transport(&mut s, "audio");
    s.push_str("a=sendrecv\r\na=rtcp-mux\r\n");
    s.push_str(&format!(
        "a=rtpmap:{OPUS_PT} opus/48000/2\r\na=fmtp:{OPUS_PT} minptime=10;useinbandfec=1\r\n"
    ));
    s.push_str(&format!("a=ssrc:{BRIDGE_AUDIO_SSRC} cname:bridge\r\n"));
    s.push_str(&format!(
        "a=ssrc:{BRIDGE_AUDIO_SSRC} msid:bridge-audio bridge-audio-track\r\n"
    ));
    s.push_str(&format!("m=video 9 UDP/TLS/RTP/SAVPF {VP8_PT}\r\n"));
    transport(&mut s, "video");
    s.push_str("a=sendrecv\r\na=rtcp-mux\r\n");
    s.push_str(&format!("a=rtpmap:{VP8_PT} VP8/90000\r\n"));
    for fb in ["ccm fir", "nack", "nack pli"] {
        s.push_str(&format!("a=rtcp-fb:{VP8_PT} {fb}\r\n"));
    }
    s.push_str(&format!("a=ssrc:{LOOP_VIDEO_SSRC} cname:bridge\r\n"));
    s.push_str(&format!(
        "a=ssrc:{LOOP_VIDEO_SSRC} msid:bridge-video bridge-video-track\r\n"
    ));
    s.push_str("m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n");
    transport(&mut s, "data");
    s.push_str("a=sctp-port:5000\r\na=max-message-size:262144\r\n");
    s
}

/// What the test needs from the browser's answer.
#[derive(Debug, Default)]
struct Answer {
    ice: Option<IceCredentials>,
    fingerprints: Vec<Fingerprint>,
    setup: Option<String>,
    candidates: Vec<RemoteCandidate>,
    ssrcs: BTreeMap<String, BTreeSet<u32>>,
}

fn parse_answer(sdp: &str) -> Result<Answer> {
    let mut a = Answer::default();
    let (mut ufrag, mut pwd) = (None, None);
    let mut media = String::new();
    for line in sdp.lines() {
        let line = line.trim();
        if let Some(m) = line.strip_prefix("m=") {
            media = m.split(' ').next().unwrap_or_default().to_owned();
        } else if let Some(v) = line.strip_prefix("a=ice-ufrag:") {
            ufrag.get_or_insert(v.to_owned());
        } else if let Some(v) = line.strip_prefix("a=ice-pwd:") {
            pwd.get_or_insert(v.to_owned());
        } else if let Some(v) = line.strip_prefix("a=fingerprint:") {
            let mut it = v.splitn(2, ' ');
            let f = Fingerprint {
                algorithm: it.next().unwrap_or_default().to_owned(),
                value: it.next().unwrap_or_default().to_owned(),
            };
            if !a.fingerprints.contains(&f) {
                a.fingerprints.push(f);
            }
        } else if let Some(v) = line.strip_prefix("a=setup:") {
            a.setup.get_or_insert(v.to_owned());
        } else if let Some(v) = line.strip_prefix("a=candidate:") {
            let f: Vec<&str> = v.split(' ').collect();
            if f.len() >= 8
                && f[2].eq_ignore_ascii_case("udp")
                && let (Ok(priority), Ok(ip), Ok(port)) = (
                    f[3].parse::<u32>(),
                    f[4].parse::<std::net::IpAddr>(),
                    f[5].parse::<u16>(),
                )
            {
                // Only loopback candidates are signalled to the bridge (it never checks
                // other addresses on its own initiative).
                if ip.is_loopback() {
                    let c = RemoteCandidate {
                        addr: SocketAddr::new(ip, port),
                        priority,
                    };
                    if !a.candidates.contains(&c) {
                        a.candidates.push(c);
                    }
                }
            }
        } else if let Some(v) = line.strip_prefix("a=ssrc:")
            && let Some(Ok(ssrc)) = v.split(' ').next().map(str::parse::<u32>)
        {
            a.ssrcs.entry(media.clone()).or_default().insert(ssrc);
        }
    }
    if let (Some(ufrag), Some(pwd)) = (ufrag, pwd) {
        a.ice = Some(IceCredentials { ufrag, pwd });
    }
    Ok(a)
}

/// What the bridge side observed.
#[derive(Debug, Default)]
struct Observed {
    connected: Option<SocketAddr>,
    dtls: Option<SrtpProfile>,
    rtp_ssrcs: BTreeMap<u32, u64>,
    rtcp_packets: u64,
    looped: u64,
    keyframe_requests: u64,
    dc_open: Option<(String, String)>,
    dc_messages: Vec<String>,
    failed: Option<String>,
    events: Vec<String>,
}

enum Cmd {
    SetRemote(RemoteTransport),
    SendData(String),
}

struct Handler {
    obs: Arc<Mutex<Observed>>,
    browser_video_ssrc: Arc<Mutex<Option<u32>>>,
}

fn set_ssrc(p: &mut [u8], ssrc: u32) {
    if let Some(s) = p.get_mut(8..12) {
        s.copy_from_slice(&ssrc.to_be_bytes());
    }
}

impl PortHandler<u32> for Handler {
    type Command = Cmd;

    fn on_event(
        &mut self,
        _now: Instant,
        key: &u32,
        event: TransportEvent,
        port: &mut PortState<u32>,
    ) {
        let mut obs = self.obs.lock().unwrap();
        match event {
            TransportEvent::Rtp(mut p) => {
                let ssrc = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                *obs.rtp_ssrcs.entry(ssrc).or_default() += 1;
                let pt = p[1] & 0x7F;
                let video = *self.browser_video_ssrc.lock().unwrap();
                if pt == VP8_PT && (video.is_none() || video == Some(ssrc)) {
                    // Loop the browser's camera back under the SSRC our offer signalled.
                    set_ssrc(&mut p, LOOP_VIDEO_SSRC);
                    if port.send_rtp(key, &p).is_ok() {
                        obs.looped += 1;
                    }
                }
            }
            TransportEvent::Rtcp(mut p) => {
                obs.rtcp_packets += 1;
                // Forward keyframe requests / NACKs for the looped stream to the real sender.
                let video = *self.browser_video_ssrc.lock().unwrap();
                let mut at = 0usize;
                let mut forward = false;
                while at + 12 <= p.len() {
                    let len = (usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]])) + 1) * 4;
                    let pt = p[at + 1];
                    let media = u32::from_be_bytes([p[at + 8], p[at + 9], p[at + 10], p[at + 11]]);
                    if (pt == 205 || pt == 206)
                        && media == LOOP_VIDEO_SSRC
                        && let Some(v) = video
                    {
                        p[at + 8..at + 12].copy_from_slice(&v.to_be_bytes());
                        forward = true;
                        if pt == 206 {
                            obs.keyframe_requests += 1;
                        }
                    }
                    at += len;
                }
                if forward && let Some(ep) = port.endpoint_mut(key) {
                    let _ = ep.send_rtcp(&p);
                }
            }
            TransportEvent::Connected(a) => {
                obs.connected = Some(a);
                obs.events.push(format!("connected {a}"));
            }
            TransportEvent::DtlsConnected(profile) => {
                obs.dtls = Some(profile);
                obs.events.push(format!("dtls {profile:?}"));
            }
            TransportEvent::DataChannelOpen { label, protocol } => {
                obs.events.push(format!("dc open {label} {protocol}"));
                obs.dc_open = Some((label, protocol));
                if let Some(ep) = port.endpoint_mut(key) {
                    let msg = r#"{"colibriClass":"ServerHello","from":"bridge-test"}"#;
                    if let Err(e) = ep.send_data_message(_now, msg) {
                        obs.events.push(format!("send failed: {e}"));
                    }
                }
            }
            TransportEvent::DataChannelMessage(m) => obs.dc_messages.push(m),
            TransportEvent::Failed(r) => {
                obs.events.push(format!("failed {r}"));
                obs.failed = Some(r);
            }
            other => obs.events.push(format!("{other:?}")),
        }
    }

    fn on_command(&mut self, now: Instant, cmd: Cmd, port: &mut PortState<u32>) -> bool {
        match cmd {
            Cmd::SetRemote(r) => {
                if let Some(ep) = port.endpoint_mut(&EP) {
                    ep.set_remote(now, r);
                }
            }
            Cmd::SendData(t) => {
                if let Some(ep) = port.endpoint_mut(&EP) {
                    let _ = ep.send_data_message(now, &t);
                }
            }
        }
        true
    }
}

struct BrowserPeer {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    _cfg: tempfile::NamedTempFile,
}

impl BrowserPeer {
    async fn start(offer: &str) -> Result<Self> {
        let cfg = tempfile::NamedTempFile::new()?;
        std::fs::write(
            cfg.path(),
            serde_json::json!({ "offer": offer }).to_string(),
        )?;
        let mut child = tokio::process::Command::new("node")
            .arg(e2e_dir().join("transport-peer.js"))
            .arg(cfg.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning node e2e/transport-peer.js")?;
        let stdin = child.stdin.take().context("stdin")?;
        let stdout = child.stdout.take().context("stdout")?;
        Ok(Self {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            _cfg: cfg,
        })
    }

    async fn next(&mut self, timeout: Duration) -> Result<Value> {
        let line = tokio::time::timeout(timeout, self.lines.next_line())
            .await
            .context("timed out waiting for the browser")??
            .context("browser peer exited")?;
        let v: Value =
            serde_json::from_str(&line).with_context(|| format!("bad line from peer: {line}"))?;
        if v["event"] == "error" {
            bail!("browser peer error: {}", v["message"]);
        }
        Ok(v)
    }

    /// Reads stats lines until `pred` holds (returns that stats object) or `timeout`.
    async fn wait_stats(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for {what}; last stats: {last}");
            }
            let v = match self.next(left).await {
                Ok(v) => v,
                Err(e) => bail!("waiting for {what}: {e:#}; last stats: {last}"),
            };
            if v["event"] == "stats" {
                if pred(&v) {
                    return Ok(v);
                }
                last = v;
            }
        }
    }

    async fn send(&mut self, cmd: Value) -> Result<()> {
        self.stdin.write_all(format!("{cmd}\n").as_bytes()).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn quit(mut self) {
        let _ = self.send(serde_json::json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

fn frames_decoded(stats: &Value) -> u64 {
    stats["inbound"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["kind"] == "video")
                .filter_map(|s| s["framesDecoded"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Sends the hostile traffic of the "bad input" requirement from a separate socket.
async fn throw_garbage(port: SocketAddr, local: &IceCredentials) -> Result<()> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let mut stun = Vec::new();
    // Wrong password for the endpoint's real ufrag.
    Builder::new(&mut stun, Class::Request, METHOD_BINDING, &[7; 12])
        .username(&format!("{}:evil", local.ufrag))
        .priority(1)
        .ice_controlled(1)
        .integrity(b"definitely-not-the-password")
        .fingerprint();
    sock.send_to(&stun, port).await?;
    // Unknown ufrag.
    let mut unknown = Vec::new();
    Builder::new(&mut unknown, Class::Request, METHOD_BINDING, &[8; 12])
        .username("nobody:evil")
        .integrity(b"x")
        .fingerprint();
    sock.send_to(&unknown, port).await?;
    // Truncated STUN, garbage, truncated DTLS and RTP, an RTP-looking packet from nowhere.
    sock.send_to(&stun[..stun.len() - 7], port).await?;
    sock.send_to(&stun[..10], port).await?;
    sock.send_to(&[0xFF; 100], port).await?;
    sock.send_to(&[], port).await?;
    sock.send_to(&[22, 254, 253, 0, 0], port).await?;
    sock.send_to(&[0x80, VP8_PT, 0], port).await?;
    let mut rtp = vec![0x80, VP8_PT, 0, 1, 0, 0, 0, 1, 1, 2, 3, 4];
    rtp.extend_from_slice(&[0xAB; 200]);
    sock.send_to(&rtp, port).await?;

    // Now authenticate this socket as a second candidate of the endpoint (we know its password,
    // as an attacker on the path would not) and send broken DTLS/SRTP from that validated
    // address: it must reach the endpoint's DTLS and SRTP layers and be dropped there without
    // disturbing the call.
    let mut good = Vec::new();
    Builder::new(&mut good, Class::Request, METHOD_BINDING, &[9; 12])
        .username(&format!("{}:evil", local.ufrag))
        .priority(1)
        .ice_controlled(1)
        .integrity(local.pwd.as_bytes())
        .fingerprint();
    sock.send_to(&good, port).await?;
    let mut buf = [0u8; 1500];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf)).await??;
    let resp =
        bridge::transport::stun::Message::parse(&buf[..n]).map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(
        resp.class == Class::Success,
        "authenticated check not answered with success"
    );
    // DTLS application-data record with epoch 1 and random bytes (fails decryption), a
    // handshake record with a bogus body, and a truncated record.
    let mut dtls = vec![23, 254, 253, 0, 1, 0, 0, 0, 0, 0, 99, 0, 64];
    dtls.extend_from_slice(&[0x5A; 64]);
    sock.send_to(&dtls, port).await?;
    let mut hs = vec![22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 50, 0, 16];
    hs.extend_from_slice(&[1, 0, 0, 200, 0, 0, 0, 0, 0, 0, 0, 200, 1, 2, 3, 4]);
    sock.send_to(&hs, port).await?;
    sock.send_to(&[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 7], port)
        .await?;
    // SRTP that fails authentication, SRTCP too short, truncated RTP header.
    sock.send_to(&rtp, port).await?;
    sock.send_to(&[0x80, 200, 0, 6, 0, 0, 0, 1, 9, 9], port)
        .await?;
    sock.send_to(&[0x80, VP8_PT, 0, 1, 0, 0], port).await?;
    // Give the port time to process before counters are read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

async fn run_call(profile: SrtpProfile, mode: IceMode) -> Result<()> {
    ensure_browser_harness()?;
    let identity = DtlsIdentity::generate()?;
    let counters = Arc::new(DropCounters::new());
    let mut port: Port<u32> = Port::bind("127.0.0.1:0".parse()?, counters.clone()).await?;
    let port_addr = port.local_addr()?;
    let local = IceCredentials::random();
    let cfg = TransportConfig {
        ice: IceConfig {
            mode,
            ..IceConfig::default()
        },
        srtp_profiles: vec![profile],
        ..TransportConfig::default()
    };
    let ep = EndpointTransport::new(local.clone(), &identity, cfg, counters.clone())?;
    port.state_mut().add_endpoint(EP, ep);
    // Chromium also checks from its other host addresses toward our 127.0.0.1 candidate; keep
    // the test on loopback by refusing those (they are counted as source_filtered).
    port.state_mut()
        .set_source_filter(Some(|a| a.ip().is_loopback()));

    let obs = Arc::new(Mutex::new(Observed::default()));
    let browser_video_ssrc = Arc::new(Mutex::new(None));
    let handler = Handler {
        obs: obs.clone(),
        browser_video_ssrc: browser_video_ssrc.clone(),
    };
    let (tx, rx) = mpsc::channel(16);
    let port_task = tokio::spawn(port.run(handler, rx));

    let offer = offer_sdp(
        &local,
        identity.fingerprint(),
        port_addr,
        mode == IceMode::Lite,
    );
    let mut peer = BrowserPeer::start(&offer).await?;
    let answer_line = peer.next(Duration::from_secs(60)).await?;
    ensure!(
        answer_line["event"] == "answer",
        "expected the answer first, got {answer_line}"
    );
    let answer = parse_answer(answer_line["sdp"].as_str().unwrap_or_default())?;
    ensure!(
        answer.setup.as_deref() == Some("active"),
        "browser must be DTLS active: {:?}",
        answer.setup
    );
    ensure!(!answer.fingerprints.is_empty(), "answer has no fingerprint");
    let audio_ssrcs = answer.ssrcs.get("audio").cloned().unwrap_or_default();
    let video_ssrcs = answer.ssrcs.get("video").cloned().unwrap_or_default();
    ensure!(
        !audio_ssrcs.is_empty() && !video_ssrcs.is_empty(),
        "answer lacks SSRCs: {:?}",
        answer.ssrcs
    );
    // Without RTX negotiated the video m-line has one SSRC.
    *browser_video_ssrc.lock().unwrap() = video_ssrcs.iter().next().copied();
    let remote = RemoteTransport {
        ice: answer
            .ice
            .clone()
            .context("answer has no ICE credentials")?,
        fingerprints: answer.fingerprints.clone(),
        candidates: answer.candidates.clone(),
    };
    tx.send(Cmd::SetRemote(remote))
        .await
        .ok()
        .context("port stopped")?;

    // ICE + DTLS + data channel + media in both directions.
    let st = peer
        .wait_stats(
            Duration::from_secs(40),
            "data channel message from the bridge and decoded loopback video",
            |s| {
                s["dc"] == "open"
                    && !s["received"].as_array().is_none_or(|a| a.is_empty())
                    && frames_decoded(s) >= 10
            },
        )
        .await;
    let st = match st {
        Ok(s) => s,
        Err(e) => bail!("{e:#}\nbridge observed: {:?}", obs.lock().unwrap()),
    };
    ensure!(
        st["ice"] == "connected" || st["ice"] == "completed",
        "browser ICE state {}",
        st["ice"]
    );
    ensure!(
        st["dtls"]["state"] == "connected",
        "browser DTLS {}",
        st["dtls"]
    );
    ensure!(
        st["dtls"]["role"] == "client",
        "browser must be the DTLS client: {}",
        st["dtls"]
    );
    // getStats reports the RFC registry names, which SrtpProfile::name() uses.
    ensure!(
        st["dtls"]["srtpCipher"] == profile.name(),
        "browser SRTP cipher {}",
        st["dtls"]
    );
    let want_role = if mode == IceMode::Lite {
        "controlling"
    } else {
        "controlled"
    };
    ensure!(
        st["dtls"]["iceRole"] == want_role,
        "browser ICE role {}",
        st["dtls"]
    );
    // The browser's view: 127.0.0.1 on its side, our port on the other.
    let pair = st["pair"].to_string();
    let remote_pair = st["pair"]["remote"].as_str().unwrap_or_default();
    let local_pair = st["pair"]["local"].as_str().unwrap_or_default();
    ensure!(
        remote_pair.starts_with(&format!("{port_addr} ")),
        "browser's remote candidate is not our port: {pair}"
    );
    ensure!(
        local_pair.starts_with("127.0.0.1:"),
        "browser's local candidate is not loopback: {pair}"
    );
    let bridge_msg: Value = serde_json::from_str(st["received"][0].as_str().unwrap_or_default())?;
    ensure!(
        bridge_msg["colibriClass"] == "ServerHello",
        "browser got {bridge_msg}"
    );

    {
        let o = obs.lock().unwrap();
        ensure!(
            o.connected.is_some_and(|a| a.ip().is_loopback()),
            "bridge ICE: {:?}",
            o.events
        );
        ensure!(o.dtls == Some(profile), "bridge DTLS profile {:?}", o.dtls);
        ensure!(
            o.dc_open.as_ref().is_some_and(
                |(l, p)| l == "JVB data channel" && p == "http://jitsi.org/protocols/colibri"
            ),
            "data channel: {:?}",
            o.dc_open
        );
        let m: Value = serde_json::from_str(
            o.dc_messages
                .first()
                .context("no data channel message reached the bridge")?,
        )?;
        ensure!(
            m["colibriClass"] == "EndpointMessage" && m["msgPayload"]["hello"] == "from-browser",
            "got {m}"
        );
        for s in audio_ssrcs.iter().chain(video_ssrcs.iter()) {
            ensure!(
                o.rtp_ssrcs.get(s).copied().unwrap_or(0) > 0,
                "no RTP from browser SSRC {s}: {:?}",
                o.rtp_ssrcs
            );
        }
        ensure!(o.looped > 0);
        ensure!(o.failed.is_none(), "transport failed: {:?}", o.failed);
    }
    // Before the garbage phase the only acceptable drops are the filtered non-loopback checks and
    // media that raced ahead of signalling (the browser may finish DTLS before the bridge has its
    // fingerprint; keys are installed once it arrives).
    let benign = counters.get(DropReason::SourceFiltered) + counters.get(DropReason::SrtpNotReady);
    ensure!(
        counters.total() == benign,
        "drops before the garbage phase: {:?}",
        counters.snapshot()
    );

    // Bad input while the call runs.
    throw_garbage(port_addr, &local).await?;
    let snap = counters.snapshot();
    let c = |r: DropReason| counters.get(r);
    ensure!(
        c(DropReason::StunBadIntegrity) >= 1,
        "wrong credentials not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::StunUnknownUfrag) >= 1,
        "unknown ufrag not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::StunMalformed) >= 2,
        "truncated STUN not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::UnknownProtocol) >= 2,
        "garbage not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::UnknownAddress) >= 3,
        "unknown-address DTLS/RTP not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::DtlsError) >= 2,
        "broken DTLS from a validated address not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::SrtpAuth) >= 1,
        "unauthenticated SRTP not counted: {snap:?}"
    );
    ensure!(
        c(DropReason::RtpMalformed) >= 1,
        "truncated RTP not counted: {snap:?}"
    );

    // The call continues: more frames decoded, messages still flow both ways.
    let before = frames_decoded(&st);
    let rtp_before: u64 = obs.lock().unwrap().rtp_ssrcs.values().sum();
    peer.send(serde_json::json!({"cmd": "send", "text": "{\"colibriClass\":\"EndpointStats\",\"after\":\"garbage\"}"}))
        .await?;
    tx.send(Cmd::SendData(
        r#"{"colibriClass":"EndpointMessage","after":"garbage"}"#.into(),
    ))
    .await
    .ok();
    let st2 = peer
        .wait_stats(
            Duration::from_secs(20),
            "media and data after the garbage",
            |s| {
                frames_decoded(s) >= before + 30
                    && s["received"].as_array().is_some_and(|a| a.len() >= 2)
            },
        )
        .await?;
    ensure!(
        st2["ice"] == "connected" || st2["ice"] == "completed",
        "ICE after garbage: {}",
        st2["ice"]
    );
    {
        let o = obs.lock().unwrap();
        ensure!(
            o.rtp_ssrcs.values().sum::<u64>() > rtp_before + 50,
            "RTP stopped after the garbage"
        );
        // Sender/receiver reports come about once a second: by now there must be some.
        ensure!(o.rtcp_packets > 0, "no RTCP from the browser");
        ensure!(
            o.dc_messages
                .iter()
                .any(|m| m.contains("after") && m.contains("garbage")),
            "{:?}",
            o.dc_messages
        );
        ensure!(o.failed.is_none(), "transport failed: {:?}", o.failed);
        eprintln!(
            "call ok: profile {profile:?}, ice {mode:?}, pair {pair}, frames decoded {}, rtp {:?}, keyframe requests {}, drops {:?}",
            frames_decoded(&st2),
            o.rtp_ssrcs,
            o.keyframe_requests,
            counters.snapshot()
        );
    }
    peer.quit().await;
    drop(tx);
    let _ = tokio::time::timeout(Duration::from_secs(5), port_task).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_full_ice_gcm() -> Result<()> {
    run_call(SrtpProfile::AeadAes128Gcm, IceMode::Full).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_full_ice_cm_sha1() -> Result<()> {
    run_call(SrtpProfile::Aes128CmHmacSha1_80, IceMode::Full).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_ice_lite_gcm() -> Result<()> {
    run_call(SrtpProfile::AeadAes128Gcm, IceMode::Lite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_ice_lite_cm_sha1() -> Result<()> {
    run_call(SrtpProfile::Aes128CmHmacSha1_80, IceMode::Lite).await
}
