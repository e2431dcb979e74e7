//! Layer switching with real browsers and no lib-jitsi-meet (issue 10, "Must show", first item):
//! the real `bridge` binary, this test as the focus over a real Prosody (COLIBRI2 allocation, as in
//! browser_bridge.rs), and two headless Chromium participants (e2e/pages/svc-peer.html):
//!
//! - A publishes a 1280x720 fake camera the way the current lib-jitsi-meet does on Chromium: three
//!   SSRCs in a SIM group (SDP munging), codec chosen with setCodecPreferences / encoding.codec, and
//!   for AV1 and VP9 full SVC on the first encoding (`L3T3_KEY` at 720p, the others inactive); VP8
//!   is 3-layer simulcast. The page applies the bridge's `SenderSourceConstraints` as that client
//!   does (L1T3 scaled to 180p for a 180 request, L3T3_KEY for 720; VP8 layers on and off).
//!   `*_sender_keeps_l3t3_key`: the page ignores them and stays at `L3T3_KEY` 720p, so the bridge
//!   alone takes B down to the 180p spatial layer of the SVC stream.
//! - B receives only. It puts A's camera on stage with source-based `ReceiverVideoConstraints`
//!   limited to 180p, raises it to 720p, then lowers it to 180p again.
//! - `*_ssrc_rewriting`: B's endpoint is created with the `ssrc-rewriting` capability and gets no
//!   SSRC of A's up front; as lib-jitsi-meet (`JingleSessionPC.processSourceMap`) it adds the
//!   SSRCs (and video RTX) of the bridge's `VideoSourcesMap` / `AudioSourcesMap` for A's sources
//!   to its remote description, and everything below is asserted on those SSRCs. The VP8 one
//!   also has `rtp-mid-demux`: B negotiates sdes:mid, puts A's sources on the m-lines named by
//!   the maps' mids, and its getStats must show A's streams on those m-lines.
//! - The focus offers what Jicofo offers by default: AV1 41, VP8 100, VP9 101 with RTX, nack/pli/fir
//!   and transport-cc, the Dependency Descriptor as extension 11 and `extmap-allow-mixed` (without
//!   it Chromium sends no Dependency Descriptor: the descriptor with its structure needs the
//!   two-byte header form).
//!
//! Asserted per codec (AV1; VP9; VP8): B limited to 180p never decodes more and decodes 180p
//! (frames and getStats `frameHeight`); 720p within [`RAISE_WITHIN`] of the raise and getStats
//! `frameHeight` 720 after it; ≤ 180p within [`LOWER_WITHIN`] of the lowering and none above
//! after it, getStats 180; no gap over [`MAX_GAP`] between decoded frames from the first 180p
//! frame to the end; what A sends in each phase (outbound-rtp: codec, `scalabilityMode`
//! `L3T3_KEY` at 720p / `L1T3` at 180p on the first SSRC of the SIM group, or the VP8 encodings
//! on); keyframe requests bounded (B's PLIs, the PLIs/FIRs A received — all the bridge's — and
//! the bridge's throttled requests); B receives A's audio.
//!
//! Decoded frames are logged in B's page by a MediaStreamTrackProcessor on the remote track (each
//! frame's arrival time, media timestamp and height); the gap is measured on the frames' media
//! timestamps, which a busy page's late reads cannot stretch (its wall-clock gap is printed too).
//! Media stays on 127.0.0.1, so Chromium runs with `--allow-loopback-in-peer-connection`, as in
//! browser_bridge.rs.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use serde_json::{Value, json};
use signaling::colibri2::{Endpoint, MediaSource, Sources, Transport, capability};
use signaling::ice_udp::IceUdpTransport;
use signaling::rtp_description::{MediaType, PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup};
use testkit::Prosody;

/// Jicofo's default video payload types (jicofo-common reference.conf) and the Dependency
/// Descriptor's extension id.
const AV1_PT: u8 = 41;
const AV1_RTX_PT: u8 = 42;
const VP9_PT: u8 = 101;
const VP9_RTX_PT: u8 = 97;
const DD_ID: u8 = 11;

const RAISE_WITHIN: Duration = Duration::from_secs(3);
const LOWER_WITHIN: Duration = Duration::from_secs(1);
const MAX_GAP: Duration = Duration::from_millis(500);
/// Keyframe requests over the whole call: B's PLIs for A's video, and the PLIs/FIRs A received
/// (all from the bridge). A call needs a few (start, each up-switch of a K-SVC / simulcast
/// stream, the sender's re-configurations); the storm of issue 10 was hundreds.
const MAX_RECEIVER_PLIS: u64 = 5;
const MAX_SENDER_KEYFRAME_REQUESTS: u64 = 10;
/// The bridge's keyframe requests it suppressed (`/colibri/stats` `dropped_packets`
/// `keyframe_throttled`): every packet that arrives while a receiver waits for a keyframe asks
/// again, so a switch adds a few dozen; issue 10's storm was ≈ 650 in 20 s.
const MAX_KEYFRAME_THROTTLED: u64 = 150;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Codec {
    Av1,
    Vp9,
    Vp8,
}

impl Codec {
    fn name(self) -> &'static str {
        match self {
            Codec::Av1 => "AV1",
            Codec::Vp9 => "VP9",
            Codec::Vp8 => "VP8",
        }
    }
}

/// What A's page does with the bridge's `SenderSourceConstraints`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sender {
    /// Applies them as the current lib-jitsi-meet does.
    Follows,
    /// Ignores them: full SVC `L3T3_KEY` at 720p throughout (the client's initial configuration,
    /// kept e.g. while a constraint names a source it has no track for), so the bridge alone
    /// takes B down to the 180p spatial layer.
    KeepsL3T3Key,
}

/// What A should be sending while B asks for `height`: `(scalabilityMode, frameHeight range)` of
/// its one active encoding for AV1/VP9, the number of active encodings for VP8. A sender that
/// keeps `L3T3_KEY` encodes its top layer as its own bandwidth estimate allows: at 180p it must
/// send at least two spatial layers (the bridge has something to drop), at 720p all three.
fn expected_sender(
    codec: Codec,
    mode: Sender,
    height: u32,
) -> (&'static str, std::ops::RangeInclusive<u64>, usize) {
    match (codec, mode, height) {
        (Codec::Vp8, _, 180) => ("", 0..=0, 1),
        (Codec::Vp8, _, _) => ("", 0..=0, 3),
        (_, Sender::Follows, 180) => ("L1T3", 180..=180, 1),
        (_, Sender::KeepsL3T3Key, 180) => ("L3T3_KEY", 360..=720, 1),
        _ => ("L3T3_KEY", 720..=720, 1),
    }
}

/// Checks A's outbound video against [`expected_sender`].
fn check_sender(sa: &Value, codec: Codec, mode: Sender, height: u32, primary: u32) -> Result<()> {
    let out = outbound_video(sa);
    let sending: Vec<&Value> = out.iter().filter(|o| o["active"] == true).collect();
    let want_codec = format!("video/{}", codec.name());
    ensure!(
        !sending.is_empty() && sending.iter().all(|o| o["codec"] == want_codec.as_str()),
        "A does not send {want_codec}: {out:?}"
    );
    let (scalability, frame_height, encodings) = expected_sender(codec, mode, height);
    ensure!(
        sending.len() == encodings
            && sending
                .iter()
                .any(|o| o["ssrc"].as_u64() == Some(u64::from(primary))),
        "with B at {height}p A should send {encodings} encoding(s), the first SSRC's among them \
         (applied: {}): {out:?}",
        sa["applied"]
    );
    if codec != Codec::Vp8 {
        ensure!(
            sending[0]["scalabilityMode"] == scalability
                && frame_height.contains(&sending[0]["frameHeight"].as_u64().unwrap_or(0)),
            "with B at {height}p A should send {} {scalability} {frame_height:?}p (applied: {}): \
             {out:?}",
            codec.name(),
            sa["applied"]
        );
    }
    Ok(())
}

/// The video the focus offers and allocates, as Jicofo by default (without H264): AV1, VP8, VP9
/// with their RTX, nack/pli/fir and transport-cc on each, transport-cc and the Dependency Descriptor.
fn svc_video_rtp() -> RtpParameters {
    let fb = |pt: PayloadType| {
        pt.with_rtcp_fb("ccm", Some("fir"))
            .with_rtcp_fb("nack", None)
            .with_rtcp_fb("nack", Some("pli"))
            .with_rtcp_fb("transport-cc", None)
    };
    let rtx = |pt: u8, apt: u8| {
        PayloadType::new(pt, "rtx", 90000, None).with_parameter("apt", &apt.to_string())
    };
    RtpParameters {
        payload_types: vec![
            fb(PayloadType::new(AV1_PT, "AV1", 90000, None)),
            fb(PayloadType::new(VP8_PT, "VP8", 90000, None)),
            fb(PayloadType::new(VP9_PT, "VP9", 90000, None).with_parameter("profile-id", "0")),
            rtx(AV1_RTX_PT, AV1_PT),
            rtx(RTX_PT, VP8_PT),
            rtx(VP9_RTX_PT, VP9_PT),
        ],
        header_extensions: vec![
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
            RtpHdrExt::new(DD_ID, hdrext::AV1_DEPENDENCY_DESCRIPTOR),
        ],
        extmap_allow_mixed: true,
    }
}

/// [`endpoint_create`] with [`svc_video_rtp`] for video.
fn svc_endpoint(id: &str) -> Endpoint {
    let mut e = endpoint_create(id);
    for m in &mut e.media {
        if m.media_type == MediaType::Video {
            m.rtp = svc_video_rtp();
        }
    }
    e
}

/// The sender's sources as its munged answer shows them.
#[derive(Debug)]
struct SimulcastSender {
    audio: u32,
    sim: Vec<u32>,
    fid: Vec<(u32, u32)>,
}

impl SimulcastSender {
    fn parse(sdp: &str) -> Result<SimulcastSender> {
        let (mut mid, mut audio, mut sim, mut fid) = (String::new(), None, Vec::new(), Vec::new());
        let ssrcs = |v: &str| -> Vec<u32> { v.split(' ').filter_map(|x| x.parse().ok()).collect() };
        for line in sdp.lines().map(str::trim) {
            if line.starts_with("m=") {
                mid.clear();
            } else if let Some(v) = line.strip_prefix("a=mid:") {
                mid = v.to_owned();
            } else if let Some(v) = line.strip_prefix("a=ssrc-group:SIM ")
                && mid == "video"
            {
                sim = ssrcs(v);
            } else if let Some(v) = line.strip_prefix("a=ssrc-group:FID ")
                && mid == "video"
                && let [p, r] = ssrcs(v)[..]
            {
                fid.push((p, r));
            } else if let Some(v) = line.strip_prefix("a=ssrc:")
                && mid == "audio"
            {
                audio = audio.or(v.split(' ').next().and_then(|s| s.parse().ok()));
            }
        }
        ensure!(
            sim.len() == 3,
            "no 3-SSRC SIM group in the sender's answer:\n{sdp}"
        );
        ensure!(
            sim.iter().all(|s| fid.iter().any(|(p, _)| p == s)),
            "SIM SSRCs without RTX: {sim:?} {fid:?}"
        );
        Ok(SimulcastSender {
            audio: audio.context("no audio SSRC in the sender's answer")?,
            sim,
            fid,
        })
    }

    fn rtx_of(&self, ssrc: u32) -> Option<u32> {
        self.fid.iter().find(|(p, _)| *p == ssrc).map(|(_, r)| *r)
    }

    /// The COLIBRI2 sources jicofo forwards from the client's session-accept: `<ep>-a0`, and
    /// `<ep>-v0` with the SIM group and a FID group per encoding.
    fn colibri(&self, endpoint: &str) -> Sources {
        let (a_name, v_name) = (format!("{endpoint}-a0"), format!("{endpoint}-v0"));
        let mut a = MediaSource::new(MediaType::Audio, a_name.clone());
        a.sources.push(Source::named(self.audio, &a_name));
        let mut v = MediaSource::new(MediaType::Video, v_name.clone());
        for &s in &self.sim {
            v.sources.push(Source::named(s, &v_name));
        }
        for &(p, r) in &self.fid {
            v.sources.push(Source::named(r, &v_name));
            v.ssrc_groups
                .push(SsrcGroup::new(Semantics::Fid, vec![p, r]));
        }
        v.ssrc_groups
            .push(SsrcGroup::new(Semantics::Sim, self.sim.clone()));
        Sources {
            media_sources: vec![a, v],
        }
    }

    /// What a receiving client's remote description gets: the SIM group imploded into the first
    /// SSRC and its RTX (lib-jitsi-meet modules/sdp/SdpSimulcast.ts).
    fn as_remote(&self, endpoint: &str) -> PeerSources {
        PeerSources {
            endpoint: endpoint.to_owned(),
            audio: self.audio,
            video: self.sim[0],
            video_rtx: self.rtx_of(self.sim[0]),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Opens `peer` on the SVC page with `opts`.
async fn open_svc(peers: &mut Peers, peer: &str, opts: Value) -> Result<()> {
    peers
        .send(json!({"cmd": "open", "peer": peer, "page": "svc-peer.html", "opts": opts}))
        .await?;
    peers
        .expect_event("opened", Some(peer), Duration::from_secs(30))
        .await?;
    Ok(())
}

/// `window[fn](arg)` in `peer`'s page.
async fn page_call(peers: &mut Peers, peer: &str, f: &str, arg: Value) -> Result<Value> {
    peers
        .send(json!({"cmd": "call", "peer": peer, "fn": f, "arg": arg}))
        .await?;
    let v = peers
        .expect_event("result", Some(peer), Duration::from_secs(20))
        .await?;
    Ok(v["value"].clone())
}

/// One decoded frame at B: arrival (ms since the epoch), media timestamp (µs), height.
#[derive(Debug, Clone, Copy)]
struct Frame {
    t: u64,
    ts: f64,
    h: u64,
}

async fn frames_since(peers: &mut Peers, since: u64) -> Result<Vec<Frame>> {
    let v = page_call(peers, "b", "framesSince", json!(since)).await?;
    Ok(v.as_array()
        .context("framesSince")?
        .iter()
        .map(|f| Frame {
            t: f["t"].as_u64().unwrap_or(0),
            ts: f["ts"].as_f64().unwrap_or(0.0),
            h: f["h"].as_u64().unwrap_or(0),
        })
        .collect())
}

/// Polls B's decoded frames from `since` until one satisfies `pred`; returns it.
async fn first_frame(
    peers: &mut Peers,
    since: u64,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Frame) -> bool,
) -> Result<Frame> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(f) = frames_since(peers, since).await?.into_iter().find(&pred) {
            return Ok(f);
        }
        if Instant::now() > deadline {
            let tail: Vec<u64> = frames_since(peers, since)
                .await?
                .iter()
                .rev()
                .take(10)
                .map(|f| f.h)
                .collect();
            bail!(
                "no {what} within {timeout:?} (last heights {tail:?}); B: {}; A: {}",
                peers.stats("b")["inbound"],
                peers.stats("a")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A's sources as the bridge announced them to B (SSRC rewriting): the latest `VideoSourcesMap`
/// entry for `<A>-v0` and `AudioSourcesMap` entry for `<A>-a0`, owned by A. The audio one comes
/// with A's first audio packet.
/// With `rtp-mid-demux` also the mids announced for them (audio, video).
async fn mapped_sources(
    peers: &mut Peers,
    ep_a: &str,
    mid_demux: bool,
) -> Result<(PeerSources, Option<(String, String)>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let maps = page_call(peers, "b", "sourceMapsSince", json!(0)).await?;
        let latest = |kind: &str, source: String| {
            maps.as_array()
                .into_iter()
                .flatten()
                .rfind(|m| m["kind"] == kind && m["source"] == source.as_str())
                .cloned()
        };
        let v = latest("video", format!("{ep_a}-v0"));
        let a = latest("audio", format!("{ep_a}-a0"));
        if let (Some(v), Some(a)) = (&v, &a) {
            ensure!(
                v["owner"] == ep_a && a["owner"] == ep_a && v["videoType"] == "CAMERA",
                "unexpected mappings {v} {a}"
            );
            let ssrc = |x: &Value| x.as_u64().and_then(|n| u32::try_from(n).ok());
            let mids = match (a["mid"].as_str(), v["mid"].as_str()) {
                (Some(am), Some(vm)) if mid_demux => Some((am.to_owned(), vm.to_owned())),
                (None, None) if !mid_demux => None,
                _ => bail!(
                    "mids {} / {} with rtp-mid-demux {mid_demux}",
                    a["mid"],
                    v["mid"]
                ),
            };
            let sources = PeerSources {
                endpoint: ep_a.to_owned(),
                audio: ssrc(&a["ssrc"]).context("audio map without ssrc")?,
                video: ssrc(&v["ssrc"]).context("video map without ssrc")?,
                video_rtx: Some(ssrc(&v["rtx"]).context("video map without rtx")?),
            };
            return Ok((sources, mids));
        }
        ensure!(
            Instant::now() < deadline,
            "no VideoSourcesMap and AudioSourcesMap for A at B: {maps}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// B's `ReceiverVideoConstraints`, source-based as the current client sends them: A's camera on
/// stage at `height`.
fn on_stage(ep_a: &str, height: u32) -> String {
    let src = format!("{ep_a}-v0");
    json!({
        "colibriClass": "ReceiverVideoConstraints",
        "lastN": -1,
        "onStageSources": [src],
        "selectedSources": [],
        "defaultConstraints": {"maxHeight": 180},
        "constraints": {src: {"maxHeight": height}},
    })
    .to_string()
}

/// `peer`'s outbound video entries.
fn outbound_video(st: &Value) -> Vec<Value> {
    st["outbound"]
        .as_array()
        .map(|o| o.iter().filter(|s| s["kind"] == "video").cloned().collect())
        .unwrap_or_default()
}

/// The receiver's variant: B gets A's SSRCs from the focus (Jingle source-add), or B's endpoint
/// has the `ssrc-rewriting` capability and B learns A's media on the bridge's own SSRCs from
/// `VideoSourcesMap` / `AudioSourcesMap` only, adding them to its remote description as
/// lib-jitsi-meet does (`JingleSessionPC.processSourceMap`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Receiver {
    SenderSsrcs,
    SsrcRewriting,
    /// SSRC rewriting with `rtp-mid-demux` and sdes:mid negotiated: each of A's sources gets the
    /// m-line (mid) its map names, and B's Chromium demuxes by the mid the bridge stamps.
    SsrcRewritingMidDemux,
}

/// The sdes:mid extension id in B's offers (free in [`svc_video_rtp`] and `audio_rtp`).
const MID_ID: u8 = 10;

/// B's offer with sdes:mid on every RTP m-line and A's m-lines named by the bridge's mids.
fn with_mids(sdp: String, ep_a: &str, mids: Option<&(String, String)>) -> String {
    let mut s = sdp.replace(
        "a=rtcp-mux\r\n",
        &format!("a=rtcp-mux\r\na=extmap:{MID_ID} {}\r\n", hdrext::MID),
    );
    if let Some((a, v)) = mids {
        s = s
            .replace(&format!("{ep_a}-a0"), a)
            .replace(&format!("{ep_a}-v0"), v);
    }
    s
}

async fn run_svc(codec: Codec, sender: Sender) -> Result<()> {
    run_svc_with(codec, sender, Receiver::SenderSsrcs).await
}

async fn run_svc_with(codec: Codec, sender: Sender, receiver: Receiver) -> Result<()> {
    with_bridge("AEAD_AES_128_GCM", async |prosody, bridge, _| {
        svc_call(prosody, bridge, codec, sender, receiver).await
    })
    .await
}

async fn svc_call(
    prosody: &Prosody,
    bridge: &BridgeProc,
    codec: Codec,
    sender_mode: Sender,
    receiver: Receiver,
) -> Result<()> {
    let rewriting = receiver != Receiver::SenderSsrcs;
    let mid_demux = receiver == Receiver::SsrcRewritingMidDemux;
    let focus = Focus::in_brewery(prosody).await?;
    let (ep_a, ep_b) = ("aaaa1111", "bbbb2222");
    let src_a = format!("{ep_a}-v0");
    let mut peers = Peers::start().await?;
    let follow = sender_mode == Sender::Follows;
    let opts_a = json!({"send": true, "codec": codec.name(), "source": src_a, "follow": follow});
    open_svc(&mut peers, "a", opts_a).await?;
    open_svc(&mut peers, "b", json!({"send": false})).await?;

    let meeting = uuid_like();
    let ma = focus
        .colibri_ok(&modify(&meeting, true, vec![svc_endpoint(ep_a)]))
        .await?;
    let mut eb = svc_endpoint(ep_b);
    if rewriting {
        eb.capabilities.push(capability::SSRC_REWRITING.into());
    }
    if mid_demux {
        eb.capabilities.push(capability::RTP_MID_DEMUX.into());
        for m in &mut eb.media {
            m.rtp
                .header_extensions
                .push(RtpHdrExt::new(MID_ID, hdrext::MID));
        }
    }
    let b_offer = |t: &IceUdpTransport,
                   remote: &[PeerSources],
                   video: &RtpParameters,
                   mids: Option<&(String, String)>|
     -> Result<String> {
        let sdp = offer_sdp_with(t, remote, video)?;
        Ok(if mid_demux {
            with_mids(sdp, ep_a, mids)
        } else {
            sdp
        })
    };
    let mb = focus.colibri_ok(&modify(&meeting, false, vec![eb])).await?;
    let (ta, tb) = (answered_ice(&ma, ep_a)?, answered_ice(&mb, ep_b)?);
    let video = svc_video_rtp();
    let ans_a = peers.offer("a", &offer_sdp_with(&ta, &[], &video)?).await?;
    let ans_b = peers.offer("b", &b_offer(&tb, &[], &video, None)?).await?;
    ensure!(
        !mid_demux || ans_b.contains(&format!("a=extmap:{MID_ID} {}", hdrext::MID)),
        "B's answer does not accept sdes:mid:\n{ans_b}"
    );
    ensure!(
        ans_a.contains(&format!(
            "a=extmap:{DD_ID} {}",
            hdrext::AV1_DEPENDENCY_DESCRIPTOR
        )),
        "A's answer does not accept the Dependency Descriptor:\n{ans_a}"
    );
    let sender = SimulcastSender::parse(&ans_a)?;
    for (id, sdp, sources) in [
        (ep_a, &ans_a, Some(sender.colibri(ep_a))),
        (ep_b, &ans_b, None),
    ] {
        let mut e = Endpoint::new(id);
        e.transport = Some(Transport {
            ice_udp: Some(parse_transport(sdp)?),
            ..Transport::default()
        });
        e.sources = sources;
        focus.colibri_ok(&modify(&meeting, false, vec![e])).await?;
    }
    let primary = sender.sim[0];
    let mut mids = None;
    let remote_a = if rewriting {
        // No sources from the focus: B waits for the bridge's maps (its channel must open).
        peers
            .wait(Duration::from_secs(30), "B's bridge channel open", |p| {
                p.stats("b")["dc"] == "open"
            })
            .await?;
        let (mapped, m) = mapped_sources(&mut peers, ep_a, mid_demux).await?;
        mids = m;
        let all_a: Vec<u32> = sender
            .sim
            .iter()
            .chain(sender.fid.iter().map(|(_, r)| r))
            .copied()
            .chain([sender.audio])
            .collect();
        ensure!(
            ![mapped.audio, mapped.video]
                .into_iter()
                .chain(mapped.video_rtx)
                .any(|s| all_a.contains(&s)),
            "the bridge announced one of A's own SSRCs: {mapped:?} (A: {all_a:?})"
        );
        mapped
    } else {
        // source-add to B: A's sources.
        sender.as_remote(ep_a)
    };
    peers
        .offer(
            "b",
            &b_offer(&tb, std::slice::from_ref(&remote_a), &video, mids.as_ref())?,
        )
        .await?;
    // What B receives A's camera and microphone on.
    let (recv, recv_audio) = (remote_a.video, remote_a.audio);

    peers
        .wait(Duration::from_secs(30), "both bridge channels open", |p| {
            p.stats("a")["dc"] == "open" && p.stats("b")["dc"] == "open"
        })
        .await?;

    if sender_mode == Sender::KeepsL3T3Key {
        // A's own bandwidth estimate ramps first: B is limited while A encodes all three layers.
        peers
            .wait(Duration::from_secs(20), "A encoding 720p L3T3_KEY", |p| {
                outbound_video(&p.stats("a")).iter().any(|o| {
                    o["active"] == true
                        && o["scalabilityMode"] == "L3T3_KEY"
                        && o["frameHeight"] == 720
                })
            })
            .await?;
    }

    // 1. Limited to 180p.
    let t_start = now_ms();
    peers.send_data("b", &on_stage(ep_a, 180)).await?;
    let first180 = first_frame(
        &mut peers,
        t_start,
        Duration::from_secs(20),
        "decoded 180p frame at B",
        |f| f.h == 180,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Never more than asked for; 180p from a second after the first 180p frame on.
    let limited = frames_since(&mut peers, t_start).await?;
    ensure!(
        limited.iter().all(|f| f.h <= 180)
            && limited
                .iter()
                .filter(|f| f.t >= first180.t + 1000)
                .all(|f| f.h == 180)
            && limited.len() > 20,
        "B limited to 180p decodes heights {:?}",
        limited.iter().map(|f| f.h).collect::<Vec<_>>()
    );
    let st = peers.fresh_stats("b", SystemTime::now()).await?;
    ensure!(
        field(&st, recv, "frameHeight") == 180,
        "B's getStats at 180p: {}",
        inbound(&st, recv).unwrap_or_default()
    );
    let sa = peers.fresh_stats("a", SystemTime::now()).await?;
    check_sender(&sa, codec, sender_mode, 180, primary)?;

    // 2. Raised to 720p.
    let t_raise = now_ms();
    peers.send_data("b", &on_stage(ep_a, 720)).await?;
    let first720 = first_frame(
        &mut peers,
        t_raise,
        Duration::from_secs(10),
        "decoded 720p frame at B",
        |f| f.h == 720,
    )
    .await?;
    let raise_ms = first720.t.saturating_sub(t_raise);
    // When A first encoded a new 720p frame (the sender's part of the raise).
    let sent = page_call(
        &mut peers,
        "a",
        "sentSince",
        json!(t_raise.saturating_sub(200)),
    )
    .await?;
    let frames_at_720 = |sample: &Value, ssrc: &Value| -> Option<u64> {
        sample["encs"]
            .as_array()?
            .iter()
            .find(|e| &e["ssrc"] == ssrc && e["h"] == 720)?["frames"]
            .as_u64()
    };
    let sender720_ms = sent.as_array().and_then(|samples| {
        samples.windows(2).find_map(|w| {
            let t = w[1]["t"].as_u64()?;
            let encoding = w[1]["encs"].as_array()?.iter().any(|e| {
                frames_at_720(&w[1], &e["ssrc"]) > frames_at_720(&w[0], &e["ssrc"]).or(Some(0))
            });
            (encoding && t >= t_raise).then(|| t - t_raise)
        })
    });
    if sender720_ms.is_none_or(|ms| ms > 1500) {
        // Why A was late: its encodings' heights, limitation and target bitrate meanwhile.
        let why: Vec<String> = sent
            .as_array()
            .into_iter()
            .flatten()
            .step_by(5)
            .map(|x| {
                let t = x["t"].as_u64().unwrap_or(0).saturating_sub(t_raise);
                let e: Vec<String> = x["encs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|e| e["target"].as_f64() > Some(0.0))
                    .map(|e| {
                        format!(
                            "{}p {} {:.0}k",
                            e["h"],
                            e["limit"],
                            e["target"].as_f64().unwrap_or(0.0) / 1e3
                        )
                    })
                    .collect();
                format!("+{t}ms {e:?}")
            })
            .collect();
        eprintln!("A late to encode 720p: {why:?}");
    }
    // When A's page applied the bridge's 720 (Follows): the signalling part of the raise.
    let applied_ms = peers.stats("a")["applied"]
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|x| x["h"] == 720 && x["t"].as_u64() >= Some(t_raise))
        })
        .and_then(|x| x["t"].as_u64())
        .map(|t| t.saturating_sub(t_raise));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let st = peers.fresh_stats("b", SystemTime::now()).await?;
    ensure!(
        field(&st, recv, "frameHeight") == 720,
        "B's getStats after the raise: {}",
        inbound(&st, recv).unwrap_or_default()
    );
    let sa = peers.fresh_stats("a", SystemTime::now()).await?;
    check_sender(&sa, codec, sender_mode, 720, primary)?;
    let at720 = frames_since(&mut peers, first720.t).await?;
    let above_or_below: Vec<u64> = at720.iter().map(|f| f.h).filter(|h| *h != 720).collect();

    // 3. Lowered to 180p again.
    let t_lower = now_ms();
    peers.send_data("b", &on_stage(ep_a, 180)).await?;
    let back = first_frame(
        &mut peers,
        t_lower,
        Duration::from_secs(10),
        "decoded ≤180p frame at B after lowering",
        |f| f.h <= 180,
    )
    .await?;
    let lower_ms = back.t.saturating_sub(t_lower);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = frames_since(&mut peers, back.t).await?;
    ensure!(
        after.iter().all(|f| f.h <= 180),
        "B back above 180p after lowering: {:?}",
        after.iter().map(|f| f.h).collect::<Vec<_>>()
    );
    let st = peers.fresh_stats("b", SystemTime::now()).await?;
    ensure!(
        field(&st, recv, "frameHeight") == 180,
        "B's getStats after lowering: {}",
        inbound(&st, recv).unwrap_or_default()
    );

    // Gaps between decoded frames from the first 180p frame to now.
    let all = frames_since(&mut peers, first180.t).await?;
    let (mut media_gap, mut wall_gap) = (0f64, 0u64);
    for w in all.windows(2) {
        media_gap = media_gap.max((w[1].ts - w[0].ts) / 1000.0);
        wall_gap = wall_gap.max(w[1].t.saturating_sub(w[0].t));
    }
    let span = all.last().map_or(0, |f| f.t) - first180.t;

    // Keyframe requests.
    let sa = peers.fresh_stats("a", SystemTime::now()).await?;
    let sender_requests: u64 = outbound_video(&sa)
        .iter()
        .map(|o| o["pliCount"].as_u64().unwrap_or(0) + o["firCount"].as_u64().unwrap_or(0))
        .sum();
    let receiver_plis = field(&st, recv, "pliCount");
    let audio_packets = field(&st, recv_audio, "packets");
    let cs = bridge.colibri_stats().await?;
    let throttled = cs["dropped_packets"]["keyframe_throttled"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "{}: 720p {raise_ms} ms after the raise (A applied 720 after {applied_ms:?} ms, encoded \
         720p after {sender720_ms:?} ms), ≤180p \
         {lower_ms} ms after the lowering; {} frames \
         over {span} ms, max gap {media_gap:.0} ms (media time) / {wall_gap} ms (arrival); heights \
         other than 720 while at 720: {above_or_below:?}; PLIs from B {receiver_plis}, keyframe \
         requests to A {sender_requests}, bridge keyframe_throttled {throttled}; B's audio \
         packets {audio_packets} ({receiver:?}); B freezes {} \
         ({:.2} s), keyframes decoded {}; A applied {}",
        codec.name(),
        all.len(),
        field(&st, recv, "freezeCount"),
        inbound(&st, recv).map_or(0.0, |s| s["totalFreezesDuration"].as_f64().unwrap_or(0.0)),
        field(&st, recv, "keyFramesDecoded"),
        sa["applied"],
    );
    ensure!(
        raise_ms <= RAISE_WITHIN.as_millis() as u64,
        "720p only {raise_ms} ms after the raise"
    );
    ensure!(
        lower_ms <= LOWER_WITHIN.as_millis() as u64,
        "≤180p only {lower_ms} ms after the lowering"
    );
    ensure!(
        media_gap <= MAX_GAP.as_millis() as f64,
        "a {media_gap:.0} ms gap between decoded frames"
    );
    ensure!(
        receiver_plis <= MAX_RECEIVER_PLIS,
        "{receiver_plis} PLIs from B"
    );
    ensure!(
        sender_requests <= MAX_SENDER_KEYFRAME_REQUESTS,
        "{sender_requests} keyframe requests reached A"
    );
    if let Some((am, vm)) = &mids {
        // Chromium put A's media on the m-lines the bridge's mids name.
        let mid_of = |ssrc: u32| inbound(&st, ssrc).map(|s| s["mid"].clone());
        ensure!(
            mid_of(recv) == Some(json!(vm)) && mid_of(recv_audio) == Some(json!(am)),
            "B's inbound streams are not on the mapped m-lines {am}/{vm}: {}",
            st["inbound"]
        );
    }
    ensure!(
        audio_packets > 0,
        "B got no audio from A on SSRC {recv_audio}: {}",
        st["inbound"]
    );
    ensure!(
        throttled <= MAX_KEYFRAME_THROTTLED,
        "the bridge throttled {throttled} keyframe requests"
    );
    peers.quit().await;
    focus.xmpp.close();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_av1_l3t3_key() -> Result<()> {
    run_svc(Codec::Av1, Sender::Follows).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_vp9_l3t3_key() -> Result<()> {
    run_svc(Codec::Vp9, Sender::Follows).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_vp8_simulcast() -> Result<()> {
    run_svc(Codec::Vp8, Sender::Follows).await
}

/// The same with SSRC rewriting on for B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_av1_l3t3_key_ssrc_rewriting() -> Result<()> {
    run_svc_with(Codec::Av1, Sender::Follows, Receiver::SsrcRewriting).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_vp8_simulcast_ssrc_rewriting_mid_demux() -> Result<()> {
    run_svc_with(Codec::Vp8, Sender::Follows, Receiver::SsrcRewritingMidDemux).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_av1_sender_keeps_l3t3_key() -> Result<()> {
    run_svc(Codec::Av1, Sender::KeepsL3T3Key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_vp9_sender_keeps_l3t3_key() -> Result<()> {
    run_svc(Codec::Vp9, Sender::KeepsL3T3Key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_svc_vp9_l3t3_key_ssrc_rewriting() -> Result<()> {
    run_svc_with(Codec::Vp9, Sender::Follows, Receiver::SsrcRewriting).await
}
