//! Synthetic media a participant sends, shaped like Chromium's: Opus-sized audio every 20 ms with
//! varying ssrc-audio-level (each sender "talks" in its own time slot so dominant-speaker detection
//! has something to do), and VP8 simulcast (3 encodings, 30 fps, 3 temporal layers in the 0-2-1-2
//! pattern) with real payload descriptors, frame headers, periodic keyframes carrying the
//! resolution, and keyframes on PLI/FIR. Every packet carries transport-cc; video carries
//! abs-send-time. Sender reports (SR + SDES CNAME) once a second per SSRC.
//!
//! Sans-IO: `handle_timeout(now, sink)` writes the packets that are due into a reused buffer and
//! hands them to `sink`; `poll_timeout` says when to call again.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bridge::sfu::rtcp::{SenderInfo, write_sdes_cname, write_sr};

use crate::av1::{KsvcEncoder, MAX_SPATIAL_LAYERS, layer_bitrate, spatial_layers_for};
use crate::rtp::{RtpHeader, abs_send_time, audio_level, transport_cc, write_header};
use crate::vp8::{Descriptor, write_frame_header};

/// Largest RTP payload of a video packet (Chromium keeps packets ≤ 1200 bytes with SRTP).
pub const MAX_VIDEO_PAYLOAD: usize = 1100;
const SR_INTERVAL: Duration = Duration::from_secs(1);
/// A keyframe request this soon after a keyframe is already satisfied.
const KEYFRAME_MIN_GAP: Duration = Duration::from_millis(100);
/// A keyframe is this many times the size of an average frame.
const KEYFRAME_FACTOR: f64 = 4.0;
/// The temporal pattern of 3 temporal layers: TID per frame and whether it is a layer-sync frame.
const TEMPORAL_PATTERN: [(u8, bool); 4] = [(0, false), (2, true), (1, true), (2, false)];
/// Relative frame size per TID (TL0 frames are bigger); the pattern averages to 1.
const TID_WEIGHT: [f64; 3] = [1.6, 1.0, 0.7];

/// Audio to send.
#[derive(Debug, Clone)]
pub struct AudioConfig {
    pub ssrc: u32,
    pub payload_type: u8,
    pub audio_level_ext: Option<u8>,
    pub transport_cc_ext: Option<u8>,
    /// Bytes of Opus payload per 20 ms packet (≈ 32 kbps at 80).
    pub payload_bytes: usize,
}

/// One simulcast encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerConfig {
    pub ssrc: u32,
    pub width: u16,
    pub height: u16,
    pub bitrate_bps: u32,
}

/// The video codec and how it is layered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// VP8 simulcast: one SSRC per layer of [`VideoConfig::layers`].
    Vp8,
    /// AV1 K-SVC on the first SSRC of [`VideoConfig::layers`] (the others are signalled but idle,
    /// as the current lib-jitsi-meet configures three encodings and activates one), with the
    /// Dependency Descriptor in extension `dd_ext` (`crate::av1`). Keyframes only when asked (PLI,
    /// FIR) or when the mode changes, as libwebrtc: no periodic ones.
    Av1 { dd_ext: u8 },
}

/// Video to send.
#[derive(Debug, Clone)]
pub struct VideoConfig {
    pub codec: VideoCodec,
    /// The codec's payload type.
    pub payload_type: u8,
    /// Lowest first (the SIM group's order).
    pub layers: Vec<LayerConfig>,
    pub fps: u32,
    pub keyframe_interval: Duration,
    pub transport_cc_ext: Option<u8>,
    pub abs_send_time_ext: Option<u8>,
}

/// Bytes of a frame of an encoding (or spatial layer) sending `bitrate_bps`: delta frames shrink
/// so that one keyframe per keyframe interval averages to the bitrate, and temporal base frames
/// are larger than the others ([`TID_WEIGHT`]).
fn frame_bytes(v: &VideoConfig, bitrate_bps: u32, keyframe: bool, tid: u8) -> usize {
    let fps = f64::from(v.fps.max(1));
    let avg = f64::from(bitrate_bps) / 8.0 / fps;
    let frames_per_key = (v.keyframe_interval.as_secs_f64() * fps).max(1.0);
    let delta = avg * frames_per_key / (frames_per_key - 1.0 + KEYFRAME_FACTOR);
    let size = if keyframe {
        delta * KEYFRAME_FACTOR
    } else {
        delta * TID_WEIGHT[usize::from(tid.min(2))]
    };
    (size as usize).max(20)
}

/// Jitsi's VP8 simulcast: 180p / 360p / 720p at ≈ 150 k / 500 k / 1.5 Mbps.
pub fn default_layers(ssrcs: [u32; 3]) -> Vec<LayerConfig> {
    let dims = [
        (320, 180, 150_000),
        (640, 360, 500_000),
        (1280, 720, 1_500_000),
    ];
    ssrcs
        .iter()
        .zip(dims)
        .map(|(&ssrc, (width, height, bitrate_bps))| LayerConfig {
            ssrc,
            width,
            height,
            bitrate_bps,
        })
        .collect()
}

/// Who talks when: the sender is loud during slot `index` of every `count` slots of `slot`.
#[derive(Debug, Clone, Copy)]
pub struct Speaking {
    pub index: u32,
    pub count: u32,
    pub slot: Duration,
}

impl Speaking {
    /// The audio level (-dBov) at `t` since the start: 20–35 while talking, 90–127 otherwise.
    pub fn level(&self, t: Duration, noise: u8) -> (bool, u8) {
        let count = self.count.max(1);
        let slot_ms = self.slot.as_millis().max(1);
        let current = ((t.as_millis() / slot_ms) % u128::from(count)) as u32;
        if current == self.index % count {
            (true, 20 + noise % 16)
        } else {
            (false, 90 + noise % 38)
        }
    }
}

/// Counters of what was sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SendCounters {
    pub audio_packets: u64,
    pub audio_bytes: u64,
    /// Per layer, lowest first (AV1: per spatial layer).
    pub video_packets: Vec<u64>,
    pub video_bytes: Vec<u64>,
    pub frames: Vec<u64>,
    pub keyframes: Vec<u64>,
    /// Keyframes sent because of PLI/FIR.
    pub requested_keyframes: u64,
    pub sender_reports: u64,
}

#[derive(Debug, Clone)]
struct Layer {
    cfg: LayerConfig,
    seq: u16,
    ts_offset: u32,
    picture_id: u16,
    tl0_pic_idx: u8,
    pattern_pos: usize,
    keyframe_pending: bool,
    last_keyframe: Option<Instant>,
    enabled: bool,
    packets: u32,
    octets: u32,
}

/// Where a packet goes.
pub trait PacketSink {
    fn rtp(&mut self, packet: &[u8]);
    fn rtcp(&mut self, packet: &[u8]);
}

/// The media generator of one participant.
pub struct MediaSender {
    audio: Option<AudioConfig>,
    video: Option<VideoConfig>,
    speaking: Speaking,
    cname: String,
    start: Instant,
    wall_start: SystemTime,
    next_audio: Option<Instant>,
    next_frame: Option<Instant>,
    next_sr: Instant,
    audio_seq: u16,
    audio_ts: u32,
    audio_packets: u32,
    audio_octets: u32,
    layers: Vec<Layer>,
    /// AV1: the SVC frame plan (the stream goes on `layers[0]`).
    svc: Option<KsvcEncoder>,
    frame_index: u64,
    tcc_seq: u16,
    /// xorshift state for payload bytes and level noise (no allocation, no syscalls).
    rng: u64,
    buf: Vec<u8>,
    pub counters: SendCounters,
}

impl MediaSender {
    /// `seed` varies payloads and initial sequence numbers between participants.
    pub fn new(
        now: Instant,
        audio: Option<AudioConfig>,
        video: Option<VideoConfig>,
        speaking: Speaking,
        cname: &str,
        seed: u64,
    ) -> Self {
        let mut rng = seed | 1;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let layers: Vec<Layer> = video
            .as_ref()
            .map(|v| {
                v.layers
                    .iter()
                    .map(|&cfg| Layer {
                        cfg,
                        seq: next() as u16,
                        ts_offset: next() as u32,
                        picture_id: (next() as u16) & 0x7fff,
                        tl0_pic_idx: next() as u8,
                        pattern_pos: 0,
                        keyframe_pending: true,
                        last_keyframe: None,
                        enabled: true,
                        packets: 0,
                        octets: 0,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let svc = match video.as_ref().map(|v| v.codec) {
            Some(VideoCodec::Av1 { .. }) => {
                Some(KsvcEncoder::new(MAX_SPATIAL_LAYERS, next() as u16))
            }
            _ => None,
        };
        let n = if svc.is_some() {
            usize::from(MAX_SPATIAL_LAYERS)
        } else {
            layers.len()
        };
        MediaSender {
            next_audio: audio.as_ref().map(|_| now),
            next_frame: video.as_ref().map(|_| now),
            audio,
            video,
            speaking,
            cname: cname.to_owned(),
            start: now,
            wall_start: SystemTime::now(),
            next_sr: now + SR_INTERVAL,
            audio_seq: next() as u16,
            audio_ts: next() as u32,
            audio_packets: 0,
            audio_octets: 0,
            layers,
            svc,
            frame_index: 0,
            tcc_seq: next() as u16,
            rng,
            buf: Vec::with_capacity(1500),
            counters: SendCounters {
                video_packets: vec![0; n],
                video_bytes: vec![0; n],
                frames: vec![0; n],
                keyframes: vec![0; n],
                ..SendCounters::default()
            },
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Appends `n` pseudo-random bytes (encrypted media looks random anyway).
    fn fill(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let r = self.random().to_le_bytes();
            let k = left.min(8);
            self.buf.extend_from_slice(&r[..k]);
            left -= k;
        }
    }

    /// The SSRCs of the video encodings, lowest first.
    pub fn video_ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.layers.iter().map(|l| l.cfg.ssrc)
    }

    pub fn audio_ssrc(&self) -> Option<u32> {
        self.audio.as_ref().map(|a| a.ssrc)
    }

    /// PLI or FIR for `ssrc`: the next frame of that encoding is a keyframe.
    pub fn request_keyframe(&mut self, now: Instant, ssrc: u32) -> bool {
        let Some(l) = self.layers.iter_mut().find(|l| l.cfg.ssrc == ssrc) else {
            return false;
        };
        if let Some(enc) = self.svc.as_mut() {
            let recent = l
                .last_keyframe
                .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_MIN_GAP);
            if !recent && enc.request_keyframe() {
                self.counters.requested_keyframes += 1;
            }
            return true;
        }
        let recent = l
            .last_keyframe
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_MIN_GAP);
        if !recent && !l.keyframe_pending {
            l.keyframe_pending = true;
            self.counters.requested_keyframes += 1;
        }
        true
    }

    /// The bridge's SenderSourceConstraints: send only encodings up to `max_height` (0 = none,
    /// negative = all). A re-enabled encoding starts with a keyframe.
    /// AV1: the number of spatial layers lib-jitsi-meet configures for that height (a new mode
    /// starts with a keyframe).
    pub fn set_max_height(&mut self, max_height: i32) {
        if let Some(enc) = self.svc.as_mut() {
            enc.set_spatial_layers(spatial_layers_for(max_height));
            return;
        }
        let lowest = self.video_lowest_ssrc();
        for l in &mut self.layers {
            let on = max_height < 0 || (max_height > 0 && i32::from(l.cfg.height) <= max_height);
            // As Chromium: the lowest encoding stays on whenever video is wanted at all.
            let on = on || (max_height > 0 && l.cfg.ssrc == lowest);
            if on && !l.enabled {
                l.keyframe_pending = true;
            }
            l.enabled = on;
        }
    }

    fn video_lowest_ssrc(&self) -> u32 {
        self.video
            .as_ref()
            .and_then(|v| v.layers.first())
            .map(|l| l.ssrc)
            .unwrap_or(0)
    }

    /// Encodings currently sent.
    pub fn enabled_layers(&self) -> usize {
        if let Some(enc) = &self.svc {
            return usize::from(enc.spatial_layers());
        }
        self.layers.iter().filter(|l| l.enabled).count()
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_audio, self.next_frame, Some(self.next_sr)]
            .into_iter()
            .flatten()
            .min()
    }

    /// Sends everything due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl PacketSink) {
        while let Some(at) = self.next_audio
            && at <= now
        {
            self.send_audio(now, sink);
            // Catch up without bursting after a stall: skip missed slots.
            let next = at + Duration::from_millis(20);
            self.next_audio = Some(if next + Duration::from_millis(100) < now {
                now + Duration::from_millis(20)
            } else {
                next
            });
        }
        if let Some(at) = self.next_frame
            && at <= now
        {
            let fps = self.video.as_ref().map_or(30, |v| v.fps.max(1));
            let interval = Duration::from_secs(1) / fps;
            self.send_frame(now, sink);
            let next = at + interval;
            self.next_frame = Some(if next + interval * 3 < now {
                now + interval
            } else {
                next
            });
        }
        if self.next_sr <= now {
            self.send_reports(now, sink);
            self.next_sr = now + SR_INTERVAL;
        }
    }

    fn tcc(&mut self) -> [u8; 2] {
        self.tcc_seq = self.tcc_seq.wrapping_add(1);
        transport_cc(self.tcc_seq)
    }

    fn send_audio(&mut self, now: Instant, sink: &mut impl PacketSink) {
        let Some(a) = self.audio.clone() else {
            return;
        };
        let noise = self.random() as u8;
        let (voice, level) = self
            .speaking
            .level(now.saturating_duration_since(self.start), noise);
        let level_b = audio_level(voice, level);
        let tcc_b = self.tcc();
        let mut exts: [(u8, &[u8]); 2] = [(0, &[]), (0, &[])];
        let mut n = 0;
        if let Some(id) = a.audio_level_ext {
            exts[n] = (id, &level_b);
            n += 1;
        }
        if let Some(id) = a.transport_cc_ext {
            exts[n] = (id, &tcc_b);
            n += 1;
        }
        self.audio_seq = self.audio_seq.wrapping_add(1);
        self.audio_ts = self.audio_ts.wrapping_add(960);
        let header = RtpHeader {
            payload_type: a.payload_type,
            marker: false,
            sequence: self.audio_seq,
            timestamp: self.audio_ts,
            ssrc: a.ssrc,
        };
        let mut buf = std::mem::take(&mut self.buf);
        write_header(&mut buf, &header, &exts[..n]);
        self.buf = buf;
        // Silence compresses: Opus DTX-like smaller packets when not talking.
        let bytes = if voice {
            a.payload_bytes
        } else {
            a.payload_bytes / 2
        };
        self.fill(bytes.max(3));
        sink.rtp(&self.buf);
        self.audio_packets = self.audio_packets.wrapping_add(1);
        self.audio_octets = self.audio_octets.wrapping_add(bytes as u32);
        self.counters.audio_packets += 1;
        self.counters.audio_bytes += self.buf.len() as u64;
    }

    fn send_frame(&mut self, now: Instant, sink: &mut impl PacketSink) {
        // Taken out for the duration of the frame (no per-frame clone).
        let Some(v) = self.video.take() else {
            return;
        };
        if self.svc.is_some() {
            self.send_svc_unit(now, &v, sink);
        } else {
            self.send_frame_with(now, &v, sink);
        }
        self.video = Some(v);
    }

    /// The 90 kHz clock of a frame captured at `now` (before an SSRC's offset), and its
    /// abs-send-time.
    fn frame_clock(&self, now: Instant) -> (u32, [u8; 3]) {
        let elapsed = now.saturating_duration_since(self.start);
        let ts90 = (elapsed.as_micros() * 9 / 100) as u32;
        let abs = abs_send_time(
            self.wall_start
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                + elapsed,
        );
        (ts90, abs)
    }

    /// The header extensions of a video packet: abs-send-time, transport-cc, and (AV1) the
    /// Dependency Descriptor, those that are negotiated; and how many.
    fn video_exts<'a>(
        v: &VideoConfig,
        abs: &'a [u8; 3],
        tcc: &'a [u8; 2],
        dd: Option<(u8, &'a [u8])>,
    ) -> ([(u8, &'a [u8]); 3], usize) {
        let mut exts: [(u8, &[u8]); 3] = [(0, &[]), (0, &[]), (0, &[])];
        let mut n = 0;
        let all = [
            v.abs_send_time_ext.map(|id| (id, &abs[..])),
            v.transport_cc_ext.map(|id| (id, &tcc[..])),
            dd,
        ];
        for e in all.into_iter().flatten() {
            exts[n] = e;
            n += 1;
        }
        (exts, n)
    }

    fn send_frame_with(&mut self, now: Instant, v: &VideoConfig, sink: &mut impl PacketSink) {
        let (ts90, abs) = self.frame_clock(now);
        for li in 0..self.layers.len() {
            let Some(layer) = self.layers.get(li).cloned() else {
                continue;
            };
            if !layer.enabled {
                continue;
            }
            let periodic = layer
                .last_keyframe
                .is_none_or(|t| now.saturating_duration_since(t) >= v.keyframe_interval);
            let keyframe = layer.keyframe_pending || periodic;
            let pos = if keyframe { 0 } else { layer.pattern_pos };
            let (tid, sync) = TEMPORAL_PATTERN[pos % TEMPORAL_PATTERN.len()];
            let tl0 = if tid == 0 {
                layer.tl0_pic_idx.wrapping_add(1)
            } else {
                layer.tl0_pic_idx
            };
            let size = frame_bytes(v, layer.cfg.bitrate_bps, keyframe, tid);
            let packets = size.div_ceil(MAX_VIDEO_PAYLOAD).max(1);
            let per_packet = size.div_ceil(packets);
            let ts = ts90.wrapping_add(layer.ts_offset);
            let mut seq = layer.seq;
            let mut octets = 0u32;
            for p in 0..packets {
                seq = seq.wrapping_add(1);
                let tcc_b = self.tcc();
                let (exts, n) = Self::video_exts(v, &abs, &tcc_b, None);
                let header = RtpHeader {
                    payload_type: v.payload_type,
                    marker: p + 1 == packets,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: layer.cfg.ssrc,
                };
                let mut buf = std::mem::take(&mut self.buf);
                write_header(&mut buf, &header, &exts[..n]);
                let before = buf.len();
                Descriptor {
                    start: p == 0,
                    non_reference: tid == 2,
                    partition: 0,
                    picture_id: Some(layer.picture_id),
                    tl0_pic_idx: Some(tl0),
                    tid: Some(tid),
                    layer_sync: sync,
                    key_idx: None,
                }
                .write(&mut buf);
                if p == 0 {
                    let first_partition = (size / 4) as u32;
                    write_frame_header(
                        &mut buf,
                        keyframe,
                        first_partition,
                        layer.cfg.width,
                        layer.cfg.height,
                    );
                }
                let used = buf.len() - before;
                self.buf = buf;
                self.fill(per_packet.saturating_sub(used));
                let payload = (self.buf.len() - before) as u32;
                sink.rtp(&self.buf);
                octets = octets.wrapping_add(payload);
                if let Some(c) = self.counters.video_packets.get_mut(li) {
                    *c += 1;
                }
                if let Some(c) = self.counters.video_bytes.get_mut(li) {
                    *c += self.buf.len() as u64;
                }
            }
            if let Some(l) = self.layers.get_mut(li) {
                l.seq = seq;
                l.picture_id = (l.picture_id + 1) & 0x7fff;
                l.tl0_pic_idx = tl0;
                l.pattern_pos = (pos + 1) % TEMPORAL_PATTERN.len();
                l.packets = l.packets.wrapping_add(packets as u32);
                l.octets = l.octets.wrapping_add(octets);
                if keyframe {
                    l.keyframe_pending = false;
                    l.last_keyframe = Some(now);
                }
            }
            if let Some(c) = self.counters.frames.get_mut(li) {
                *c += 1;
            }
            if keyframe && let Some(c) = self.counters.keyframes.get_mut(li) {
                *c += 1;
            }
        }
        self.frame_index += 1;
    }

    /// One AV1 temporal unit: a frame per active spatial layer on the first SSRC, each packet with
    /// its Dependency Descriptor (two-byte extension form when it carries the structure), the
    /// marker on the last packet of the unit. Frame sizes follow the layer's bitrate, temporal
    /// layer and keyframes like the VP8 frames'.
    fn send_svc_unit(&mut self, now: Instant, v: &VideoConfig, sink: &mut impl PacketSink) {
        let (Some(mut enc), VideoCodec::Av1 { dd_ext }) = (self.svc.take(), v.codec) else {
            return;
        };
        let Some(mut layer) = self.layers.first().cloned() else {
            self.svc = Some(enc);
            return;
        };
        let (ts90, abs) = self.frame_clock(now);
        let ts = ts90.wrapping_add(layer.ts_offset);
        let n = enc.spatial_layers();
        let unit = enc.next_temporal_unit();
        let frames = unit.frames();
        let mut dd = [0u8; bridge::sfu::av1::descriptor::MAX_LEN];
        for (fi, f) in frames.iter().enumerate() {
            let keyframe = f.kind == crate::av1::FrameKind::Key;
            let size = frame_bytes(v, layer_bitrate(n, f.spatial), keyframe, f.temporal);
            let packets = size.div_ceil(MAX_VIDEO_PAYLOAD).max(1);
            let per_packet = size.div_ceil(packets);
            let last_frame = fi + 1 == frames.len();
            for p in 0..packets {
                let Ok(dd_len) = enc.write_descriptor(f, p == 0, p + 1 == packets, &mut dd) else {
                    continue;
                };
                layer.seq = layer.seq.wrapping_add(1);
                let tcc_b = self.tcc();
                let (exts, k) = Self::video_exts(v, &abs, &tcc_b, Some((dd_ext, &dd[..dd_len])));
                let header = RtpHeader {
                    payload_type: v.payload_type,
                    marker: last_frame && p + 1 == packets,
                    sequence: layer.seq,
                    timestamp: ts,
                    ssrc: layer.cfg.ssrc,
                };
                let mut buf = std::mem::take(&mut self.buf);
                write_header(&mut buf, &header, &exts[..k]);
                let before = buf.len();
                // AV1 aggregation header (RTP payload format for AV1 §4.4): Z (continues an OBU
                // of the previous packet), Y (continued in the next), W = 1 (one OBU element), N
                // (first packet of a coded video sequence).
                let z = u8::from(p > 0) << 7;
                let y = u8::from(p + 1 < packets) << 6;
                let new_sequence = u8::from(keyframe && f.spatial == 0 && p == 0) << 3;
                buf.push(z | y | (1 << 4) | new_sequence);
                self.buf = buf;
                self.fill(per_packet.saturating_sub(1));
                let payload = (self.buf.len() - before) as u32;
                sink.rtp(&self.buf);
                layer.packets = layer.packets.wrapping_add(1);
                layer.octets = layer.octets.wrapping_add(payload);
                let s = usize::from(f.spatial);
                if let Some(c) = self.counters.video_packets.get_mut(s) {
                    *c += 1;
                }
                if let Some(c) = self.counters.video_bytes.get_mut(s) {
                    *c += self.buf.len() as u64;
                }
            }
            if let Some(c) = self.counters.frames.get_mut(usize::from(f.spatial)) {
                *c += 1;
            }
            if keyframe {
                layer.last_keyframe = Some(now);
                if let Some(c) = self.counters.keyframes.get_mut(usize::from(f.spatial)) {
                    *c += 1;
                }
            }
        }
        // The SVC stream's SSRC reports while it sends; the idle encodings never do.
        layer.enabled = n > 0;
        for (i, l) in self.layers.iter_mut().enumerate() {
            if i == 0 {
                *l = layer.clone();
            } else {
                l.enabled = false;
            }
        }
        self.svc = Some(enc);
        self.frame_index += 1;
    }

    /// SR + SDES per sending SSRC.
    fn send_reports(&mut self, now: Instant, sink: &mut impl PacketSink) {
        let elapsed = now.saturating_duration_since(self.start);
        let wall = self
            .wall_start
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            + elapsed;
        // NTP: seconds since 1900 in 32.32 fixed point.
        let ntp_secs = wall.as_secs() + 2_208_988_800;
        let frac = (u64::from(wall.subsec_nanos()) << 32) / 1_000_000_000;
        let ntp = (ntp_secs << 32) | frac;
        let mut reports: Vec<SenderInfo> = Vec::with_capacity(1 + self.layers.len());
        if let Some(a) = &self.audio
            && self.audio_packets > 0
        {
            reports.push(SenderInfo {
                ssrc: a.ssrc,
                ntp,
                rtp_timestamp: self.audio_ts,
                packet_count: self.audio_packets,
                octet_count: self.audio_octets,
            });
        }
        let ts90 = (elapsed.as_micros() * 9 / 100) as u32;
        for l in self.layers.iter().filter(|l| l.enabled && l.packets > 0) {
            reports.push(SenderInfo {
                ssrc: l.cfg.ssrc,
                ntp,
                rtp_timestamp: ts90.wrapping_add(l.ts_offset),
                packet_count: l.packets,
                octet_count: l.octets,
            });
        }
        for info in reports {
            self.buf.clear();
            write_sr(&mut self.buf, &info, &[]);
            write_sdes_cname(&mut self.buf, info.ssrc, &self.cname);
            sink.rtcp(&self.buf);
            self.counters.sender_reports += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vp8::frame_start;
    use bridge::sfu::rtcp::{Compound, Packet};
    use bridge::sfu::rtp::RtpPacket;

    #[derive(Default)]
    struct Collect {
        rtp: Vec<Vec<u8>>,
        rtcp: Vec<Vec<u8>>,
    }

    impl PacketSink for Collect {
        fn rtp(&mut self, p: &[u8]) {
            self.rtp.push(p.to_vec());
        }
        fn rtcp(&mut self, p: &[u8]) {
            self.rtcp.push(p.to_vec());
        }
    }

    /// A test sender: `codec` on payload type `pt`, three simulcast layers (SSRCs 10–12) at
    /// 30 fps with a keyframe every 3 s, the first of `speakers` taking 1 s turns.
    fn test_sender(
        now: Instant,
        audio: Option<AudioConfig>,
        codec: VideoCodec,
        pt: u8,
        speakers: u32,
        seed: u64,
    ) -> MediaSender {
        let video = VideoConfig {
            codec,
            payload_type: pt,
            layers: default_layers([10, 11, 12]),
            fps: 30,
            keyframe_interval: Duration::from_secs(3),
            transport_cc_ext: Some(5),
            abs_send_time_ext: Some(3),
        };
        let speaking = Speaking {
            index: 0,
            count: speakers,
            slot: Duration::from_secs(1),
        };
        MediaSender::new(now, audio, Some(video), speaking, "cname", seed)
    }

    fn sender(now: Instant) -> MediaSender {
        let audio = AudioConfig {
            ssrc: 1,
            payload_type: 111,
            audio_level_ext: Some(1),
            transport_cc_ext: Some(5),
            payload_bytes: 80,
        };
        test_sender(now, Some(audio), VideoCodec::Vp8, 100, 2, 42)
    }

    /// A sender from `make` run for `secs` of virtual time from now: (the start, the sender, what
    /// it sent, the end).
    fn started(
        make: fn(Instant) -> MediaSender,
        secs: u64,
    ) -> (Instant, MediaSender, Collect, Instant) {
        let t0 = Instant::now();
        let mut s = make(t0);
        let mut out = Collect::default();
        let end = run(&mut s, t0, secs, &mut out);
        (t0, s, out, end)
    }

    /// Runs the sender for `secs` of virtual time.
    fn run(s: &mut MediaSender, t0: Instant, secs: u64, out: &mut Collect) -> Instant {
        let end = t0 + Duration::from_secs(secs);
        let mut now = t0;
        while now < end {
            s.handle_timeout(now, out);
            now = s.poll_timeout().unwrap().max(now);
        }
        end
    }

    #[test]
    fn rates_layers_and_keyframes_match_the_configuration() {
        let (_, s, out, _) = started(sender, 10);
        /// packets, payload bytes, keyframes, last keyframe size
        type PerSsrc = (u64, u64, u64, Option<(u16, u16)>);
        let mut per_ssrc: std::collections::HashMap<u32, PerSsrc> = Default::default();
        let mut tcc = Vec::new();
        let mut levels = Vec::new();
        for p in &out.rtp {
            let pkt = RtpPacket::parse(p).unwrap();
            tcc.push(pkt.transport_cc_seq(5).unwrap());
            let e = per_ssrc.entry(pkt.ssrc()).or_default();
            e.0 += 1;
            e.1 += pkt.payload().len() as u64;
            if pkt.ssrc() == 1 {
                levels.push(pkt.audio_level(1).unwrap());
            } else {
                assert!(pkt.extension(3).is_some(), "abs-send-time on video");
                if let Some(f) = frame_start(pkt.payload())
                    && f.keyframe
                {
                    e.2 += 1;
                    e.3 = f.size;
                }
            }
        }
        // Audio: 50 pps, levels alternate between talking and silence.
        let audio = per_ssrc[&1];
        assert!((495..=505).contains(&audio.0), "{audio:?}");
        assert!(levels.iter().any(|l| l.0 && l.1 < 40));
        assert!(levels.iter().any(|l| !l.0 && l.1 >= 90));
        // Video: each layer near its bitrate (payload bytes), keyframes every 3 s with the size.
        for (ssrc, kbps, size) in [
            (10, 150.0, (320, 180)),
            (11, 500.0, (640, 360)),
            (12, 1500.0, (1280, 720)),
        ] {
            let (packets, bytes, keys, dims) = per_ssrc[&ssrc];
            let rate = bytes as f64 * 8.0 / 10.0 / 1000.0;
            assert!((rate / kbps - 1.0).abs() < 0.1, "ssrc {ssrc}: {rate} kbps");
            assert!((4..=5).contains(&keys), "ssrc {ssrc}: {keys} keyframes");
            assert_eq!(dims, Some(size));
            assert!(packets >= 300, "at least one packet per frame");
        }
        // transport-cc numbers are contiguous across all SSRCs.
        for w in tcc.windows(2) {
            assert_eq!(w[1], w[0].wrapping_add(1));
        }
        // One SR (+SDES) per SSRC per second.
        assert!(out.rtcp.len() >= 4 * 9, "{}", out.rtcp.len());
        let c = Compound::parse(&out.rtcp[0]).unwrap();
        assert!(c.packets().any(|p| matches!(p, Packet::SenderReport(_))));
        assert_eq!(s.counters.audio_packets, audio.0);
    }

    #[test]
    fn descriptors_follow_the_temporal_pattern_and_pli_forces_a_keyframe() {
        let (_, mut s, out, now) = started(sender, 1);
        let frames: Vec<(u16, u8, u8, bool)> = out
            .rtp
            .iter()
            .filter_map(|p| {
                let pkt = RtpPacket::parse(p).ok()?;
                if pkt.ssrc() != 12 {
                    return None;
                }
                let h = bridge::sfu::vp8::parse(pkt.payload()).ok()?;
                if !h.start_of_partition {
                    return None;
                }
                Some((h.picture_id?, h.tl0picidx?, h.tid?, h.layer_sync))
            })
            .collect();
        let tids: Vec<u8> = frames.iter().take(8).map(|f| f.2).collect();
        assert_eq!(tids, vec![0, 2, 1, 2, 0, 2, 1, 2]);
        for w in frames.windows(2) {
            assert_eq!(
                w[1].0,
                (w[0].0 + 1) & 0x7fff,
                "PictureID increments per frame"
            );
            let tl0_step = if w[1].2 == 0 { 1 } else { 0 };
            assert_eq!(w[1].1, w[0].1.wrapping_add(tl0_step));
        }
        // PLI on the 720p SSRC: the next frame of that layer only is a keyframe.
        assert!(s.request_keyframe(now, 12));
        assert!(!s.request_keyframe(now, 99));
        // Up to the next video frame (one frame interval).
        let mut out = Collect::default();
        let until = now + Duration::from_millis(34);
        let mut t = now;
        while t < until {
            t = s.poll_timeout().unwrap();
            s.handle_timeout(t, &mut out);
        }
        let keys: Vec<u32> = out
            .rtp
            .iter()
            .filter_map(|p| {
                let pkt = RtpPacket::parse(p).ok()?;
                frame_start(pkt.payload())
                    .filter(|f| f.keyframe)
                    .map(|_| pkt.ssrc())
            })
            .collect();
        assert_eq!(keys, vec![12]);
        assert_eq!(s.counters.requested_keyframes, 1);
    }

    #[test]
    fn sender_constraints_switch_encodings_off_and_on() {
        let t0 = Instant::now();
        let mut s = sender(t0);
        s.set_max_height(180);
        assert_eq!(s.enabled_layers(), 1);
        s.set_max_height(0);
        assert_eq!(s.enabled_layers(), 0);
        s.set_max_height(360);
        assert_eq!(s.enabled_layers(), 2);
        s.set_max_height(-1);
        assert_eq!(s.enabled_layers(), 3);
        s.set_max_height(100);
        assert_eq!(
            s.enabled_layers(),
            1,
            "the lowest stays on when video is wanted"
        );
    }

    fn av1_sender(now: Instant) -> MediaSender {
        test_sender(now, None, VideoCodec::Av1 { dd_ext: 11 }, 41, 1, 7)
    }

    /// What a receiver of the AV1 stream sees, fed straight from the sender.
    fn av1_receiver(now: Instant) -> crate::receiver::MediaReceiver {
        let mut r = crate::receiver::tests::video_receiver(now, 10, "aaaa0001");
        r.set_av1(41, 11);
        r
    }

    #[test]
    fn av1_l3t3_key_stream_reads_back_as_720p_and_follows_sender_constraints() {
        let (t0, mut s, out, now) = started(av1_sender, 4);
        assert_eq!(s.enabled_layers(), 3);
        let mut rx = av1_receiver(t0);
        let mut bytes = 0usize;
        let mut two_byte = 0;
        for (i, p) in out.rtp.iter().enumerate() {
            let pkt = RtpPacket::parse(p).unwrap();
            assert_eq!(pkt.ssrc(), 10, "one SSRC carries every spatial layer");
            assert!(
                pkt.extension(11).is_some(),
                "every packet has its descriptor"
            );
            assert!(pkt.extension(3).is_some() && pkt.transport_cc_seq(5).is_some());
            two_byte += usize::from(p[12..14] == [0x10, 0x00]);
            bytes += pkt.payload().len();
            rx.on_rtp(t0 + Duration::from_millis(i as u64), p);
        }
        // Only the keyframe's first packet carries the structure (two-byte extension form).
        assert_eq!(two_byte, 1);
        // lib-jitsi-meet's 1 Mbps for L3T3_KEY, within 15 % (one keyframe in 4 s).
        let kbps = bytes as f64 * 8.0 / 4.0 / 1000.0;
        assert!((850.0..1150.0).contains(&kbps), "{kbps} kbps");
        assert_eq!(s.counters.keyframes, vec![1, 1, 1]);
        let f = &s.counters.frames;
        assert!(f.iter().all(|&n| (119..=121).contains(&n)), "{f:?}");
        // Per spatial layer, the higher the more.
        let b = &s.counters.video_bytes;
        assert!(b[0] < b[1] && b[1] < b[2], "{b:?}");
        let t = rx.tracks().next().unwrap();
        let av1 = t.av1.as_ref().unwrap();
        assert_eq!(av1.undecodable_frames, 0);
        assert_eq!(av1.malformed_descriptors, 0);
        assert_eq!(av1.shown_spatial, Some(2));
        assert_eq!(t.size, Some((1280, 720)));
        assert!(av1.units_by_spatial[2] >= 119, "{:?}", av1.units_by_spatial);
        assert_eq!(t.counters.keyframes, 1);

        // SenderSourceConstraints 180: L1T3 from a keyframe with the new structure.
        s.set_max_height(180);
        assert_eq!(s.enabled_layers(), 1);
        let mut out = Collect::default();
        let later = run(&mut s, now, 4, &mut out);
        let mut bytes = 0usize;
        for (i, p) in out.rtp.iter().enumerate() {
            bytes += RtpPacket::parse(p).unwrap().payload().len();
            rx.on_rtp(now + Duration::from_millis(i as u64), p);
        }
        let kbps = bytes as f64 * 8.0 / 4.0 / 1000.0;
        assert!((85.0..115.0).contains(&kbps), "{kbps} kbps at 180p");
        let t = rx.tracks().next().unwrap();
        assert_eq!(t.size, Some((320, 180)));
        assert_eq!(t.av1.as_ref().unwrap().undecodable_frames, 0);
        assert_eq!(t.counters.keyframes, 2);

        // A PLI on the stream's SSRC: a keyframe with the next temporal unit.
        assert!(s.request_keyframe(later, 10));
        assert_eq!(s.counters.requested_keyframes, 1);
        let mut out = Collect::default();
        run(&mut s, later, 1, &mut out);
        assert_eq!(s.counters.keyframes[0], 3);
        // maxHeight 0: the encoding is off.
        s.set_max_height(0);
        assert_eq!(s.enabled_layers(), 0);
    }

    #[test]
    fn a_lost_av1_frame_makes_the_receiver_ask_for_a_keyframe() {
        let (t0, _, out, _) = started(av1_sender, 1);
        let mut rx = av1_receiver(t0);
        // Drop the 720p layer's second T0 frame (its T1/T2 frames and the next T0 refer to it).
        let mut src = bridge::sfu::av1::DdSource::new();
        let mut t0_frames = 0;
        let mut dropping = false;
        for p in &out.rtp {
            let pkt = RtpPacket::parse(p).unwrap();
            let d = src.parse(pkt.extension(11).unwrap()).unwrap().descriptor;
            if d.start_of_frame {
                let s2t0 = d.frame.spatial == 2 && d.frame.temporal == 0;
                t0_frames += usize::from(s2t0);
                dropping = s2t0 && t0_frames == 2;
            }
            if !dropping {
                rx.on_rtp(t0, p);
            }
        }
        let t = rx.tracks().next().unwrap();
        let undecodable = t.av1.as_ref().unwrap().undecodable_frames;
        assert!(undecodable >= 2, "{undecodable}");
        let mut sent = Vec::new();
        rx.handle_timeout(t0 + Duration::from_secs(2), |p| sent.push(p.to_vec()));
        let plis: Vec<u32> = sent
            .iter()
            .flat_map(|p| {
                Compound::parse(p)
                    .unwrap()
                    .packets()
                    .filter_map(|k| match k {
                        Packet::Pli(pli) => Some(pli.media_ssrc),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(plis, vec![10]);
    }
}
