//! A simulated browser: sends like Chrome with VP8 simulcast (3 encodings, 3 temporal layers, real
//! payload descriptors and keyframe headers, transport-wide sequence numbers, RTX answers to NACKs,
//! keyframes on PLI/FIR, encodings switched on and off by the bridge's sender constraints) and Opus
//! with audio levels; receives like Chrome: transport-cc feedback for everything that arrives,
//! NACKs for what its link lost, RTX recovery, a jitter buffer and a VP8 reference model that
//! renders decodable frames, measures freezes and asks for a keyframe (PLI) when it cannot decode.
//! The RTCP it sends is built with the bridge crate's own writers (transport-cc feedback generator,
//! NACK generator, PLI).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use bridge::sfu::nack_gen::{NackConfig, NackGenerator};
use bridge::sfu::rtcp::{self, Compound, Packet};
use bridge::sfu::rtp::RtpPacket;
use bridge::sfu::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};
use bridge::sfu::vp8;
use bridge::sfu::{EndpointHandle, EndpointParams, MediaKind, MediaSourceDesc};
use signaling::rtp_description::{PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup};

use super::Rng;

pub const OPUS: u8 = 111;
pub const VP8: u8 = 100;
pub const RTX: u8 = 96;
pub const AUDIO_LEVEL_ID: u8 = 1;
pub const TCC_ID: u8 = 5;
/// Largest RTP payload a packet carries.
const MTU_PAYLOAD: usize = 1100;
const FRAME_INTERVAL: Duration = Duration::from_nanos(33_333_333);
/// Temporal layer of frame n (keyframes aside): the 3-layer VP8 pattern.
const TL_PATTERN: [u8; 4] = [0, 2, 1, 2];
/// Share of an encoding's bitrate per temporal layer (libwebrtc's 3-layer split: 40/20/40 %).
const TL_SHARE: [f64; 3] = [0.4, 0.2, 0.4];
/// How long the jitter buffer waits for a missing frame before giving up on it.
const MAX_FRAME_WAIT: Duration = Duration::from_millis(400);
const PLI_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub id: String,
    /// SSRC plan base: audio base+1, simulcast base+10.., RTX base+20...
    pub base: u32,
    /// Simulcast encodings `(width, height, bitrate at 30 fps)`, lowest first; empty = no video.
    pub encodings: Vec<(u16, u16, u64)>,
    /// Loudness schedule: from each instant offset on, `Some(level)` speech around that RFC 6464
    /// level or `None` silence.
    pub speech: Vec<(Duration, Option<u8>)>,
}

impl ClientConfig {
    /// Chrome's default camera simulcast: 320x180 @ 150 kbps, 640x360 @ 450 kbps, 1280x720 @ 1.5 Mbps.
    pub fn camera(id: &str, base: u32) -> Self {
        ClientConfig {
            id: id.to_owned(),
            base,
            encodings: vec![
                (320, 180, 150_000),
                (640, 360, 450_000),
                (1280, 720, 1_500_000),
            ],
            speech: vec![(Duration::ZERO, None)],
        }
    }

    pub fn receive_only(id: &str, base: u32) -> Self {
        ClientConfig {
            encodings: Vec::new(),
            ..Self::camera(id, base)
        }
    }

    pub fn speaking(mut self, from: Duration, level: Option<u8>) -> Self {
        self.speech.push((from, level));
        self.speech.sort_by_key(|s| s.0);
        self
    }

    pub fn audio_ssrc(&self) -> u32 {
        self.base + 1
    }
    pub fn sim_ssrc(&self, e: usize) -> u32 {
        self.base + 10 + e as u32
    }
    pub fn rtx_ssrc(&self, e: usize) -> u32 {
        self.base + 20 + e as u32
    }
    pub fn video_name(&self) -> String {
        format!("{}-v0", self.id)
    }
}

fn audio_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(OPUS, "opus", 48000, Some(2)).with_rtcp_fb("transport-cc", None),
        ],
        header_extensions: vec![
            RtpHdrExt::new(AUDIO_LEVEL_ID, hdrext::AUDIO_LEVEL),
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
        ],
        extmap_allow_mixed: true,
    }
}

fn video_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(VP8, "VP8", 90000, None)
                .with_rtcp_fb("nack", None)
                .with_rtcp_fb("nack", Some("pli"))
                .with_rtcp_fb("ccm", Some("fir"))
                .with_rtcp_fb("transport-cc", None),
            PayloadType::new(RTX, "rtx", 90000, None).with_parameter("apt", "100"),
        ],
        header_extensions: vec![RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC)],
        extmap_allow_mixed: true,
    }
}

/// What COLIBRI2 would tell the bridge about this client.
pub fn endpoint_params(cfg: &ClientConfig) -> EndpointParams {
    let mut sources = vec![MediaSourceDesc {
        kind: MediaKind::Audio,
        name: format!("{}-a0", cfg.id),
        sources: vec![Source::named(cfg.audio_ssrc(), &format!("{}-a0", cfg.id))],
        groups: vec![],
    }];
    if !cfg.encodings.is_empty() {
        let n = cfg.encodings.len();
        let sims: Vec<u32> = (0..n).map(|e| cfg.sim_ssrc(e)).collect();
        let mut groups = vec![SsrcGroup::new(Semantics::Sim, sims.clone())];
        for e in 0..n {
            groups.push(SsrcGroup::new(
                Semantics::Fid,
                vec![cfg.sim_ssrc(e), cfg.rtx_ssrc(e)],
            ));
        }
        sources.push(MediaSourceDesc {
            kind: MediaKind::Video,
            name: cfg.video_name(),
            sources: sims
                .iter()
                .copied()
                .chain((0..n).map(|e| cfg.rtx_ssrc(e)))
                .map(|s| Source::named(s, &cfg.video_name()))
                .collect(),
            groups,
        });
    }
    EndpointParams {
        id: cfg.id.clone(),
        stats_id: None,
        audio: audio_params(),
        video: video_params(),
        sources,
        ..Default::default()
    }
}

/// Something the client sends.
#[derive(Debug)]
pub enum Outgoing {
    Rtp(Vec<u8>),
    Rtcp(Vec<u8>),
    Text(String),
}

#[derive(Debug)]
struct Encoding {
    ssrc: u32,
    rtx_ssrc: u32,
    width: u16,
    height: u16,
    bitrate: u64,
    active: bool,
    seq: u16,
    pic: u16,
    tl0: u8,
    ts: u32,
    rtx_seq: u16,
    /// Recently sent packets, for NACK answers.
    history: VecDeque<(u16, Vec<u8>)>,
}

/// One received packet of a video stream (after RTX recovery).
#[derive(Debug, Clone, Copy)]
pub struct RxPacket {
    pub ts: u32,
    pub pic: u16,
    pub tl0: u8,
    pub tid: u8,
    pub start: bool,
    pub marker: bool,
    pub keyframe: bool,
    pub size: Option<(u16, u16)>,
    pub at: Instant,
    pub recovered: bool,
}

#[derive(Debug, Default)]
struct RxFrame {
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    seqs: BTreeSet<i64>,
    tid: u8,
    tl0: u8,
    keyframe: bool,
    height: Option<u16>,
    first_at: Option<Instant>,
}

impl RxFrame {
    fn complete(&self) -> bool {
        match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) if b >= a => self.seqs.len() as i64 == b - a + 1,
            _ => false,
        }
    }
}

/// What a receiver saw of one forwarded video stream (one SSRC).
#[derive(Debug, Default)]
pub struct StreamView {
    /// Every packet by extended sequence number.
    pub packets: BTreeMap<i64, RxPacket>,
    highest: Option<i64>,
    frames: BTreeMap<i64, RxFrame>,
    pic_highest: Option<i64>,
    last_decoded: Option<i64>,
    pub decoder_ok: bool,
    last_tl0: Option<u8>,
    height: u16,
    /// Rendered frames: (time, height, temporal layer).
    pub renders: Vec<(Instant, u16, u8)>,
    /// Frames given up on, frames undecodable.
    pub skipped: u32,
    pub broken: u32,
    last_pli: Option<Instant>,
    pub plis: u32,
}

fn unwrap16(highest: Option<i64>, v: u16) -> i64 {
    match highest {
        None => i64::from(v) + (1 << 20),
        Some(h) => h + i64::from(v.wrapping_sub(h as u16) as i16),
    }
}

fn unwrap15(highest: Option<i64>, v: u16) -> i64 {
    match highest {
        None => i64::from(v) + (1 << 20),
        Some(h) => {
            let d = (i64::from(v) - h).rem_euclid(0x8000);
            if d >= 0x4000 { h + d - 0x8000 } else { h + d }
        }
    }
}

impl StreamView {
    fn on_packet(&mut self, seq: u16, p: RxPacket) {
        let ext = unwrap16(self.highest, seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        if self.packets.insert(ext, p).is_some() {
            return; // duplicate
        }
        let pic = unwrap15(self.pic_highest, p.pic);
        if self.pic_highest.is_none_or(|h| pic > h) {
            self.pic_highest = Some(pic);
        }
        if self.last_decoded.is_some_and(|d| pic <= d) {
            return; // too late for the decoder
        }
        let f = self.frames.entry(pic).or_default();
        f.seqs.insert(ext);
        f.first_at.get_or_insert(p.at);
        f.tid = p.tid;
        f.tl0 = p.tl0;
        if p.start {
            f.first_seq = Some(ext);
            f.keyframe = p.keyframe;
            if let Some((_, h)) = p.size {
                f.height = Some(h);
            }
        }
        if p.marker {
            f.last_seq = Some(ext);
        }
    }

    /// Decodes what can be decoded; returns true if a keyframe is needed (PLI).
    fn decode(&mut self, now: Instant) -> bool {
        // A complete keyframe ahead: decode from it, dropping whatever older frames still wait
        // (as libwebrtc's frame buffer does).
        if let Some(k) = self
            .frames
            .iter()
            .rev()
            .find(|(p, f)| f.keyframe && f.complete() && self.last_decoded.is_none_or(|d| **p > d))
            .map(|(p, _)| *p)
            && self.last_decoded.is_some_and(|d| k > d + 1)
        {
            let stale: Vec<i64> = self.frames.range(..k).map(|(p, _)| *p).collect();
            self.skipped += stale.len() as u32;
            for p in stale {
                self.frames.remove(&p);
            }
            self.last_decoded = Some(k - 1);
        }
        loop {
            let next = match self.last_decoded {
                Some(d) => d + 1,
                None => {
                    // Start at the first complete keyframe.
                    let Some((&p, _)) =
                        self.frames.iter().find(|(_, f)| f.keyframe && f.complete())
                    else {
                        return !self.frames.is_empty();
                    };
                    let stale: Vec<i64> = self.frames.range(..p).map(|(k, _)| *k).collect();
                    for k in stale {
                        self.frames.remove(&k);
                    }
                    p
                }
            };
            match self.frames.get(&next) {
                Some(f) if f.complete() => {
                    let f = self.frames.remove(&next).unwrap_or_default();
                    self.last_decoded = Some(next);
                    if f.keyframe {
                        self.decoder_ok = true;
                        self.last_tl0 = Some(f.tl0);
                        if let Some(h) = f.height {
                            self.height = h;
                        }
                        self.renders.push((now, self.height, f.tid));
                    } else if !self.decoder_ok {
                        self.skipped += 1;
                    } else if f.tid == 0 {
                        if self.last_tl0.map(|t| t.wrapping_add(1)) == Some(f.tl0) {
                            self.last_tl0 = Some(f.tl0);
                            self.renders.push((now, self.height, 0));
                        } else {
                            self.decoder_ok = false;
                            self.broken += 1;
                        }
                    } else if self.last_tl0 == Some(f.tl0) {
                        self.renders.push((now, self.height, f.tid));
                    } else {
                        self.skipped += 1;
                    }
                }
                other => {
                    // Missing or incomplete: wait for retransmissions, but not forever.
                    let since = match other {
                        Some(f) => f.first_at,
                        None => self
                            .frames
                            .range(next..)
                            .next()
                            .and_then(|(_, f)| f.first_at),
                    };
                    let later = self.frames.range(next + 1..).next().is_some();
                    match since {
                        Some(t) if later && now.saturating_duration_since(t) > MAX_FRAME_WAIT => {
                            self.frames.remove(&next);
                            self.last_decoded = Some(next);
                            self.skipped += 1;
                        }
                        _ => break,
                    }
                }
            }
        }
        !self.decoder_ok && !self.frames.is_empty()
    }

    /// Longest time without a rendered frame between `from` and `to` (counting from the first
    /// render at or after `from`).
    pub fn longest_freeze(&self, from: Instant, to: Instant) -> Duration {
        let mut prev: Option<Instant> = None;
        let mut worst = Duration::ZERO;
        for &(t, _, _) in self.renders.iter().filter(|r| r.0 >= from && r.0 <= to) {
            if let Some(p) = prev {
                worst = worst.max(t - p);
            }
            prev = Some(t);
        }
        if let Some(p) = prev {
            worst = worst.max(to.saturating_duration_since(p));
        }
        worst
    }

    /// Frames rendered between `from` and `to`.
    pub fn rendered(
        &self,
        from: Instant,
        to: Instant,
    ) -> impl Iterator<Item = &(Instant, u16, u8)> {
        self.renders.iter().filter(move |r| r.0 >= from && r.0 < to)
    }

    /// The first render at or after `from` with a height `pred` accepts.
    pub fn first_render(&self, from: Instant, pred: impl Fn(u16) -> bool) -> Option<Instant> {
        self.renders
            .iter()
            .find(|r| r.0 >= from && pred(r.1))
            .map(|r| r.0)
    }

    /// The receiver's view of the stream is one continuous RTP stream: between consecutive
    /// received packets (in sequence order), every missing sequence number was lost on the link
    /// (`lost`), timestamps never go back, and PictureID/TL0PICIDX advance by at most one per
    /// sequence number step. Returns the violations found (empty = good) and the gap count.
    pub fn check_continuity(&self, ssrc: u32, lost: &HashSet<(u32, u16)>) -> (Vec<String>, usize) {
        let mut errors = Vec::new();
        let mut gaps = 0;
        let mut prev: Option<(i64, &RxPacket)> = None;
        for (&s, p) in &self.packets {
            if let Some((ps, pp)) = prev {
                let d = s - ps;
                for missing in ps + 1..s {
                    gaps += 1;
                    if !lost.contains(&(ssrc, missing as u16)) {
                        errors.push(format!(
                            "seq {} missing but not lost on the link (between {} and {})",
                            missing as u16, ps as u16, s as u16
                        ));
                    }
                }
                let dts = p.ts.wrapping_sub(pp.ts) as i32;
                if dts < 0 {
                    errors.push(format!(
                        "timestamp went back at seq {}: {} -> {}",
                        s as u16, pp.ts, p.ts
                    ));
                }
                let dpic = i64::from(p.pic.wrapping_sub(pp.pic) & 0x7fff);
                if dpic > d {
                    errors.push(format!(
                        "PictureID jumped by {dpic} over {d} sequence numbers at seq {} ({} -> {})",
                        s as u16, pp.pic, p.pic
                    ));
                }
                let dtl0 = i64::from(p.tl0.wrapping_sub(pp.tl0));
                if dtl0 > d {
                    errors.push(format!(
                        "TL0PICIDX jumped by {dtl0} over {d} sequence numbers at seq {}",
                        s as u16
                    ));
                }
            }
            prev = Some((s, p));
        }
        (errors, gaps)
    }
}

pub struct Client {
    pub cfg: ClientConfig,
    pub handle: EndpointHandle,
    pub uplink: super::Link,
    pub downlink: super::Link,
    t0: Instant,
    rng: Rng,
    out: Vec<Outgoing>,
    // ---------------------------------------------------------------------------- sending
    tcc_seq: u16,
    audio_seq: u16,
    audio_ts: u32,
    next_audio: Instant,
    encs: Vec<Encoding>,
    frame_no: u64,
    next_frame: Instant,
    keyframe_pending: bool,
    /// From SenderSourceConstraints / SenderVideoConstraints (-1 = no limit).
    pub max_height: i32,
    pub keyframes_sent: u32,
    pub nacks_answered: u32,
    // ---------------------------------------------------------------------------- receiving
    tcc_gen: TccFeedbackGenerator,
    nacks: HashMap<u32, NackGenerator>,
    rtx_to_media: HashMap<u32, u32>,
    remote_video: HashSet<u32>,
    pub streams: BTreeMap<u32, StreamView>,
    /// Bridge-channel messages received.
    pub texts: Vec<(Instant, serde_json::Value)>,
    pub audio_packets: u64,
    pub rtx_received: u64,
    pub padding_received: u64,
}

impl Client {
    pub fn new(
        cfg: ClientConfig,
        handle: EndpointHandle,
        uplink: super::Link,
        downlink: super::Link,
        now: Instant,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let encs = cfg
            .encodings
            .iter()
            .enumerate()
            .map(|(e, &(width, height, bitrate))| Encoding {
                ssrc: cfg.sim_ssrc(e),
                rtx_ssrc: cfg.rtx_ssrc(e),
                width,
                height,
                bitrate,
                active: true,
                seq: rng.next_u64() as u16,
                pic: (rng.next_u64() as u16) & 0x7fff,
                tl0: rng.next_u64() as u8,
                ts: rng.next_u64() as u32,
                rtx_seq: rng.next_u64() as u16,
                history: VecDeque::new(),
            })
            .collect();
        let audio_ssrc = cfg.audio_ssrc();
        Client {
            cfg,
            handle,
            uplink,
            downlink,
            t0: now,
            out: Vec::new(),
            tcc_seq: rng.next_u64() as u16,
            audio_seq: rng.next_u64() as u16,
            audio_ts: rng.next_u64() as u32,
            next_audio: now + Duration::from_millis(rng.next_u64() % 20),
            encs,
            frame_no: 0,
            next_frame: now + Duration::from_millis(rng.next_u64() % 33),
            keyframe_pending: true,
            max_height: -1,
            keyframes_sent: 0,
            nacks_answered: 0,
            tcc_gen: TccFeedbackGenerator::new(audio_ssrc, GeneratorConfig::default()),
            nacks: HashMap::new(),
            rtx_to_media: HashMap::new(),
            remote_video: HashSet::new(),
            streams: BTreeMap::new(),
            texts: Vec::new(),
            audio_packets: 0,
            rtx_received: 0,
            padding_received: 0,
            rng,
        }
    }

    /// Learns another client's SSRCs (Jingle source-add): the primary SSRC is what the bridge
    /// forwards its video under, the primary's FID partner its retransmissions.
    pub fn learn_remote(&mut self, other: &ClientConfig) {
        if !other.encodings.is_empty() {
            self.remote_video.insert(other.sim_ssrc(0));
            self.rtx_to_media
                .insert(other.rtx_ssrc(0), other.sim_ssrc(0));
        }
    }

    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.out)
    }

    pub fn queue_text(&mut self, t: String) {
        self.out.push(Outgoing::Text(t));
    }

    /// The earliest time this client has something to do.
    pub fn next_due(&self) -> Instant {
        let mut t = self.next_audio;
        if !self.encs.is_empty() {
            t = t.min(self.next_frame);
        }
        if let Some(f) = self.tcc_gen.poll_timeout() {
            t = t.min(f);
        }
        for g in self.nacks.values() {
            if let Some(n) = g.poll_timeout() {
                t = t.min(n);
            }
        }
        // (The jitter buffer re-checks at every audio tick, 20 ms.)
        t
    }

    /// The stream of `other`'s video as this client receives it.
    pub fn stream_of(&self, other: &ClientConfig) -> Option<&StreamView> {
        self.streams.get(&other.sim_ssrc(0))
    }

    pub fn texts_of(&self, class: &str) -> Vec<&serde_json::Value> {
        self.texts
            .iter()
            .filter(|(_, v)| v["colibriClass"] == class)
            .map(|(_, v)| v)
            .collect()
    }

    fn speech_level(&self, now: Instant) -> u8 {
        let since = now.saturating_duration_since(self.t0);
        let base = self
            .cfg
            .speech
            .iter()
            .rev()
            .find(|(from, _)| *from <= since)
            .and_then(|(_, l)| *l);
        match base {
            None => 127,
            Some(b) => {
                let k = u32::from(self.audio_seq);
                if k % 25 >= 22 {
                    90
                } else {
                    b.saturating_add((k % 11) as u8).min(126)
                }
            }
        }
    }

    fn next_tcc(&mut self) -> u16 {
        let t = self.tcc_seq;
        self.tcc_seq = self.tcc_seq.wrapping_add(1);
        t
    }

    /// Periodic work: audio and video frames, feedback, NACKs, the decoder.
    pub fn tick(&mut self, now: Instant) {
        while self.next_audio <= now {
            self.send_audio(now);
            self.next_audio += Duration::from_millis(20);
        }
        if !self.encs.is_empty() {
            while self.next_frame <= now {
                self.send_frame(now);
                self.next_frame += FRAME_INTERVAL;
            }
        }
        self.receiver_work(now);
    }

    fn send_audio(&mut self, now: Instant) {
        let level = self.speech_level(now);
        self.audio_seq = self.audio_seq.wrapping_add(1);
        self.audio_ts = self.audio_ts.wrapping_add(960);
        let tcc = self.next_tcc();
        let mut p = rtp_header(
            OPUS,
            false,
            self.audio_seq,
            self.audio_ts,
            self.cfg.audio_ssrc(),
        );
        extensions(
            &mut p,
            &[
                (AUDIO_LEVEL_ID, &[0x80 | level]),
                (TCC_ID, &tcc.to_be_bytes()),
            ],
        );
        p.extend(std::iter::repeat_n(0xab, 60));
        self.out.push(Outgoing::Rtp(p));
    }

    fn send_frame(&mut self, _now: Instant) {
        let key = std::mem::take(&mut self.keyframe_pending);
        let tid = if key {
            0
        } else {
            TL_PATTERN[(self.frame_no % 4) as usize]
        };
        self.frame_no += 1;
        if key {
            self.keyframes_sent += 1;
        }
        for e in 0..self.encs.len() {
            let active = match self.max_height {
                h if h < 0 => true,
                0 => false,
                // As the 2021 client: the lowest encoding stays on whenever video is wanted.
                h => e == 0 || i32::from(self.encs[e].height) <= h,
            };
            let was_active = self.encs[e].active;
            self.encs[e].active = active;
            self.encs[e].ts = self.encs[e].ts.wrapping_add(3000);
            if !active {
                continue;
            }
            if !was_active && !key {
                // A re-enabled encoding starts with a keyframe (on all encodings, as libvpx does).
                self.keyframe_pending = true;
            }
            let r = self.encs[e].bitrate as f64;
            let size = if key {
                r / 8.0 / 30.0 * 6.0
            } else {
                let fps = if tid == 2 { 15.0 } else { 7.5 };
                TL_SHARE[usize::from(tid)] * r / 8.0 / fps
            };
            let size = (size * (0.8 + 0.4 * self.rng.unit())) as usize;
            let n = size.div_ceil(MTU_PAYLOAD).max(1);
            let per = (size / n).max(1);
            let enc = &mut self.encs[e];
            enc.pic = (enc.pic + 1) & 0x7fff;
            if tid == 0 {
                enc.tl0 = enc.tl0.wrapping_add(1);
            }
            for k in 0..n {
                let seq = enc.seq;
                enc.seq = enc.seq.wrapping_add(1);
                let tcc = self.tcc_seq;
                self.tcc_seq = self.tcc_seq.wrapping_add(1);
                let mut p = rtp_header(VP8, k + 1 == n, seq, enc.ts, enc.ssrc);
                extensions(&mut p, &[(TCC_ID, &tcc.to_be_bytes())]);
                vp8::Descriptor {
                    start_of_partition: k == 0,
                    partition_id: 0,
                    non_reference: tid == 2,
                    picture_id: Some((enc.pic, true)),
                    tl0picidx: Some(enc.tl0),
                    tid: Some((tid, tid > 0)),
                    key_idx: None,
                }
                .write(&mut p);
                if k == 0 {
                    vp8::write_frame_header(&mut p, key, enc.width, enc.height);
                }
                p.extend(std::iter::repeat_n(0x5a, per));
                enc.history.push_back((seq, p.clone()));
                if enc.history.len() > 1024 {
                    enc.history.pop_front();
                }
                self.out.push(Outgoing::Rtp(p));
            }
        }
    }

    /// RTP from the bridge.
    pub fn on_rtp(&mut self, now: Instant, data: &[u8]) {
        let Ok(p) = RtpPacket::parse(data) else {
            return;
        };
        if let Some(t) = p.transport_cc_seq(TCC_ID)
            && self.tcc_gen.on_packet(now, t, p.ssrc(), p.marker())
        {
            let mut buf = Vec::new();
            if self.tcc_gen.poll_feedback(now, &mut buf) > 0 {
                self.out.push(Outgoing::Rtcp(buf));
            }
        }
        let (ssrc, seq, payload, recovered) = match self.rtx_to_media.get(&p.ssrc()) {
            Some(&media) => {
                self.rtx_received += 1;
                let pl = p.payload();
                if pl.len() < 2 {
                    self.padding_received += 1;
                    return;
                }
                (media, u16::from_be_bytes([pl[0], pl[1]]), &pl[2..], true)
            }
            None => (p.ssrc(), p.sequence_number(), p.payload(), false),
        };
        if !self.remote_video.contains(&ssrc) {
            self.audio_packets += 1;
            return;
        }
        let Ok(h) = vp8::parse(payload) else {
            return;
        };
        // A keyframe makes everything before it unnecessary: stop asking for it (libwebrtc clears
        // its NACK list up to a keyframe).
        if h.keyframe && h.start_of_frame() {
            self.nacks.remove(&ssrc);
        }
        let g = self
            .nacks
            .entry(ssrc)
            .or_insert_with(|| NackGenerator::new(ssrc, NackConfig::default()));
        g.on_packet(now, seq);
        let rx = RxPacket {
            ts: p.timestamp(),
            pic: h.picture_id.unwrap_or(0),
            tl0: h.tl0picidx.unwrap_or(0),
            tid: h.tid.unwrap_or(0),
            start: h.start_of_frame(),
            marker: p.marker(),
            keyframe: h.keyframe,
            size: h.size,
            at: now,
            recovered,
        };
        self.streams.entry(ssrc).or_default().on_packet(seq, rx);
        self.receiver_work(now);
    }

    fn receiver_work(&mut self, now: Instant) {
        let own = self.cfg.audio_ssrc();
        if self.tcc_gen.poll_timeout().is_some_and(|t| t <= now) {
            let mut buf = Vec::new();
            if self.tcc_gen.poll_feedback(now, &mut buf) > 0 {
                self.out.push(Outgoing::Rtcp(buf));
            }
        }
        for g in self.nacks.values_mut() {
            if g.poll_timeout().is_some_and(|t| t <= now) {
                let mut buf = Vec::new();
                if g.poll_nack(now, own, &mut buf) > 0 {
                    self.out.push(Outgoing::Rtcp(buf));
                }
            }
        }
        let mut plis = Vec::new();
        for (&ssrc, s) in self.streams.iter_mut() {
            if s.decode(now) && s.last_pli.is_none_or(|t| now - t >= PLI_INTERVAL) {
                s.last_pli = Some(now);
                s.plis += 1;
                plis.push(ssrc);
            }
        }
        for ssrc in plis {
            let mut buf = Vec::new();
            rtcp::write_pli(&mut buf, own, ssrc);
            self.out.push(Outgoing::Rtcp(buf));
        }
    }

    /// RTCP from the bridge: as a sender, PLI/FIR/NACK; the rest is terminated.
    pub fn on_rtcp(&mut self, _now: Instant, data: &[u8]) {
        let Ok(c) = Compound::parse(data) else { return };
        let mut resend: Vec<(u32, u16)> = Vec::new();
        for p in c.packets() {
            match p {
                Packet::Pli(_) | Packet::Fir(_) => self.keyframe_pending = true,
                Packet::Nack(n) => resend.extend(n.lost().map(|s| (n.media_ssrc, s))),
                _ => {}
            }
        }
        for (ssrc, seq) in resend {
            let Some(e) = self.encs.iter().position(|e| e.ssrc == ssrc) else {
                continue;
            };
            let Some(orig) = self.encs[e]
                .history
                .iter()
                .find(|(s, _)| *s == seq)
                .map(|(_, p)| p.clone())
            else {
                continue;
            };
            let Ok(op) = RtpPacket::parse(&orig) else {
                continue;
            };
            let tcc = self.next_tcc();
            let enc = &mut self.encs[e];
            let mut p = rtp_header(RTX, op.marker(), enc.rtx_seq, op.timestamp(), enc.rtx_ssrc);
            enc.rtx_seq = enc.rtx_seq.wrapping_add(1);
            extensions(&mut p, &[(TCC_ID, &tcc.to_be_bytes())]);
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(op.payload());
            self.nacks_answered += 1;
            self.out.push(Outgoing::Rtp(p));
        }
    }

    /// A bridge-channel message.
    pub fn on_text(&mut self, now: Instant, text: &str) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return;
        };
        match v["colibriClass"].as_str() {
            Some("SenderSourceConstraints") if v["sourceName"] == self.cfg.video_name() => {
                if let Some(h) = v["maxHeight"].as_i64() {
                    self.max_height = h as i32;
                }
            }
            _ => {}
        }
        self.texts.push((now, v));
    }
}

fn rtp_header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(1200);
    v.push(0x80);
    v.push(pt | if marker { 0x80 } else { 0 });
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v
}

/// Appends a one-byte extension block and sets the X bit.
fn extensions(v: &mut Vec<u8>, exts: &[(u8, &[u8])]) {
    v[0] |= 0x10;
    let mut data = Vec::new();
    for (id, d) in exts {
        data.push((id << 4) | (d.len() as u8 - 1));
        data.extend_from_slice(d);
    }
    while data.len() % 4 != 0 {
        data.push(0);
    }
    v.extend_from_slice(&0xBEDEu16.to_be_bytes());
    v.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
    v.extend_from_slice(&data);
}
