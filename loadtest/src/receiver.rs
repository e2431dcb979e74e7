//! What a participant receives from the bridge, measured per SSRC (packets, bytes, sequence gaps,
//! frames, keyframes and their resolution, jitter), and the feedback a browser returns so that the
//! bridge's estimator sees a healthy downlink: receiver reports once a second and transport-cc
//! feedback (the bridge's transport-cc generator, reused). A video stream that starts without a
//! keyframe gets a PLI, as a decoder would ask for one.
//!
//! AV1 (the payload type set with [`MediaReceiver::set_av1`]) is read through its Dependency
//! Descriptor with the bridge's parser, as a decoder would: the structure from keyframes, each
//! frame's spatial and temporal layer, whether the frames it refers to arrived (a frame that cannot
//! be decoded is counted), and per temporal unit the highest spatial layer that can be shown — its
//! resolution is the track's height.
//!
//! SSRCs are attributed to their owner from the Jingle sources (session-initiate, source-add) or,
//! with SSRC rewriting, from the bridge's source maps (an SSRC that changes owner starts a new
//! track); anything else (padding probes, RTX, unsignalled SSRCs) is counted apart.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bridge::sfu::av1::DdSource;
use bridge::sfu::recv_stats::ReceiveStats;
use bridge::sfu::rtcp::{ReportBlock, write_pli, write_rr};
use bridge::sfu::rtp::RtpPacket;
use bridge::sfu::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};
use serde::Serialize;

use crate::vp8::frame_start;

const RR_INTERVAL: Duration = Duration::from_secs(1);
const PLI_INTERVAL: Duration = Duration::from_secs(1);

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Audio,
    Video,
}

/// A signalled remote source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSource {
    pub owner: String,
    pub kind: Kind,
    pub name: Option<String>,
    /// RTP clock rate of the source's codec.
    pub clock_rate: u32,
}

/// Cumulative counters of one received SSRC; the difference of two snapshots is a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrackCounters {
    pub packets: u64,
    /// RTP payload bytes (what the bitrate is computed from).
    pub bytes: u64,
    /// Packets the sequence numbers say were sent (highest − first + 1).
    pub expected: u64,
    pub frames: u64,
    pub keyframes: u64,
}

impl TrackCounters {
    /// `self − earlier`, saturating.
    pub fn since(&self, earlier: &TrackCounters) -> TrackCounters {
        TrackCounters {
            packets: self.packets.saturating_sub(earlier.packets),
            bytes: self.bytes.saturating_sub(earlier.bytes),
            expected: self.expected.saturating_sub(earlier.expected),
            frames: self.frames.saturating_sub(earlier.frames),
            keyframes: self.keyframes.saturating_sub(earlier.keyframes),
        }
    }

    /// Packets missing from the sequence (never negative: duplicates do not hide loss elsewhere).
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.packets)
    }

    pub fn loss_fraction(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost() as f64 / self.expected as f64
        }
    }
}

/// Frames a receiver remembers to check references (an AV1 frame refers at most 12 frames back
/// in `L3T3_KEY`).
const AV1_FRAME_MEMORY: usize = 64;

/// What the Dependency Descriptors of an AV1 track say.
#[derive(Debug, Clone, Default)]
pub struct Av1Track {
    src: DdSource,
    /// Recent frames: (frame index, spatial layer, all packets up to its end arrived and its
    /// references were decodable).
    frames: VecDeque<(u64, u8, bool)>,
    /// The temporal unit being received: its timestamp and the highest decodable spatial layer
    /// so far.
    unit: Option<(u32, Option<u8>)>,
    /// The highest spatial layer of the last complete temporal unit.
    pub shown_spatial: Option<u8>,
    /// Temporal units shown, by their top spatial layer.
    pub units_by_spatial: [u64; 4],
    /// Frames whose references had not all arrived.
    pub undecodable_frames: u64,
    pub malformed_descriptors: u64,
}

impl Av1Track {
    /// One packet's descriptor; returns the (width, height) to show when a temporal unit ends,
    /// whether the packet started a keyframe, and whether it started a frame that cannot be
    /// decoded (a decoder then asks for a keyframe).
    fn on_packet(&mut self, ts: u32, marker: bool, dd: &[u8]) -> (Option<(u16, u16)>, bool, bool) {
        let Ok(info) = self.src.parse(dd) else {
            self.malformed_descriptors += 1;
            return (None, false, false);
        };
        let d = info.descriptor;
        let idx = info.frame_index;
        if self.unit.is_none_or(|u| u.0 != ts) {
            self.unit = Some((ts, None));
        }
        let mut broken = false;
        if d.start_of_frame && !self.frames.iter().any(|f| f.0 == idx) {
            let decodable = d.structure_attached
                || d.frame.fdiffs().iter().all(|&fd| {
                    self.frames
                        .iter()
                        .any(|f| f.0 == idx.wrapping_sub(u64::from(fd)) && f.2)
                });
            if !decodable {
                self.undecodable_frames += 1;
                broken = true;
            }
            if self.frames.len() == AV1_FRAME_MEMORY {
                self.frames.pop_front();
            }
            self.frames.push_back((idx, d.frame.spatial, decodable));
        }
        let complete_layer = self
            .frames
            .iter()
            .find(|f| f.0 == idx)
            .filter(|f| f.2 && d.end_of_frame)
            .map(|f| f.1);
        if let (Some(s), Some(u)) = (complete_layer, self.unit.as_mut()) {
            u.1 = Some(u.1.map_or(s, |t| t.max(s)));
        }
        let mut shown = None;
        if marker && let Some((_, Some(top))) = self.unit.take() {
            self.shown_spatial = Some(top);
            if let Some(c) = self.units_by_spatial.get_mut(usize::from(top)) {
                *c += 1;
            }
            shown = self
                .src
                .current()
                .and_then(|s| s.resolution(top))
                .map(|r| (r.width, r.height));
        }
        (shown, d.structure_attached, broken)
    }
}

/// One received SSRC.
#[derive(Debug, Clone)]
pub struct Track {
    /// Unique per receiver (an SSRC that changes owner is a new track).
    pub id: u64,
    pub ssrc: u32,
    pub source: RemoteSource,
    pub counters: TrackCounters,
    pub first_at: Instant,
    pub last_at: Instant,
    /// Resolution of the last keyframe (VP8) or of the last temporal unit shown (AV1).
    pub size: Option<(u16, u16)>,
    /// AV1: what the Dependency Descriptors said.
    pub av1: Option<Box<Av1Track>>,
    pub max_height: u16,
    first_ext_seq: i64,
    highest_ext_seq: i64,
    stats: ReceiveStats,
    awaiting_keyframe: bool,
    last_pli: Option<Instant>,
    pub plis_sent: u64,
}

impl Track {
    fn new(now: Instant, id: u64, ssrc: u32, source: RemoteSource) -> Self {
        let clock = source.clock_rate;
        Track {
            id,
            ssrc,
            awaiting_keyframe: source.kind == Kind::Video,
            source,
            counters: TrackCounters::default(),
            first_at: now,
            last_at: now,
            size: None,
            av1: None,
            max_height: 0,
            first_ext_seq: -1,
            highest_ext_seq: -1,
            stats: ReceiveStats::new(now, clock),
            last_pli: None,
            plis_sent: 0,
        }
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.stats.jitter()) * 1000.0 / f64::from(self.source.clock_rate.max(1))
    }

    /// `dd`: the AV1 Dependency Descriptor, for an AV1 packet.
    fn on_packet(
        &mut self,
        now: Instant,
        seq: u16,
        ts: u32,
        payload: &[u8],
        marker: bool,
        dd: Option<&[u8]>,
    ) {
        self.last_at = now;
        self.stats.on_packet(now, seq, ts);
        let ext = if self.highest_ext_seq < 0 {
            self.first_ext_seq = i64::from(seq);
            i64::from(seq)
        } else {
            let diff = i64::from(seq.wrapping_sub(self.highest_ext_seq as u16) as i16);
            self.highest_ext_seq + diff
        };
        if ext > self.highest_ext_seq {
            self.highest_ext_seq = ext;
        }
        let c = &mut self.counters;
        c.packets += 1;
        c.bytes += payload.len() as u64;
        c.expected = (self.highest_ext_seq - self.first_ext_seq + 1).max(0) as u64;
        if let Some(dd) = dd {
            let av1 = self.av1.get_or_insert_with(Box::default);
            let (shown, keyframe, broken) = av1.on_packet(ts, marker, dd);
            if keyframe {
                c.keyframes += 1;
                self.awaiting_keyframe = false;
            } else if broken {
                self.awaiting_keyframe = true;
            }
            if let Some((w, h)) = shown {
                self.size = Some((w, h));
                self.max_height = self.max_height.max(h);
            }
            if marker {
                c.frames += 1;
            }
        } else if self.source.kind == Kind::Video {
            if let Some(f) = frame_start(payload)
                && f.keyframe
            {
                c.keyframes += 1;
                self.awaiting_keyframe = false;
                if let Some((w, h)) = f.size {
                    self.size = Some((w, h));
                    self.max_height = self.max_height.max(h);
                }
            }
            if marker {
                c.frames += 1;
            }
        } else {
            // An audio frame is one packet.
            c.frames += 1;
        }
    }
}

/// Counters of what could not be attributed or parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReceiveDrops {
    pub malformed: u64,
    /// Padding-only packets (bandwidth probes).
    pub padding: u64,
    /// Packets of SSRCs nobody signalled (RTX, probes on feedback SSRCs…).
    pub unknown_ssrc: u64,
    /// AV1 packets without a Dependency Descriptor.
    pub av1_without_descriptor: u64,
}

/// The receive side of one participant.
pub struct MediaReceiver {
    sources: HashMap<u32, RemoteSource>,
    tracks: HashMap<u32, Track>,
    /// Tracks whose SSRC went to another source (SSRC rewriting).
    retired: Vec<Track>,
    next_track_id: u64,
    /// AV1 payload type and the Dependency Descriptor's extension id.
    av1: Option<(u8, u8)>,
    /// transport-cc extension id the bridge uses toward us.
    tcc_ext: Option<u8>,
    tcc: TccFeedbackGenerator,
    /// Our SSRC as the sender of RTCP (the audio SSRC, as Chromium).
    rtcp_ssrc: u32,
    next_rr: Instant,
    pub drops: ReceiveDrops,
    pub first_media_at: Option<Instant>,
    pub rtcp_sent: u64,
    buf: Vec<u8>,
    blocks: Vec<ReportBlock>,
}

impl MediaReceiver {
    pub fn new(now: Instant, rtcp_ssrc: u32, tcc_ext: Option<u8>) -> Self {
        MediaReceiver {
            sources: HashMap::new(),
            tracks: HashMap::new(),
            retired: Vec::new(),
            next_track_id: 0,
            av1: None,
            tcc_ext,
            tcc: TccFeedbackGenerator::new(rtcp_ssrc, GeneratorConfig::default()),
            rtcp_ssrc,
            next_rr: now + RR_INTERVAL,
            drops: ReceiveDrops::default(),
            first_media_at: None,
            rtcp_sent: 0,
            buf: Vec::with_capacity(1500),
            blocks: Vec::new(),
        }
    }

    /// AV1 arrives with `payload_type`, described by the Dependency Descriptor in extension
    /// `dd_ext`.
    pub fn set_av1(&mut self, payload_type: u8, dd_ext: u8) {
        self.av1 = Some((payload_type, dd_ext));
    }

    /// A signalled remote SSRC (session-initiate, source-add).
    pub fn add_source(&mut self, ssrc: u32, source: RemoteSource) {
        self.sources.insert(ssrc, source);
    }

    /// SSRC rewriting: `ssrc` carries `source` from now on. If it carried another owner's source
    /// before, that track ends (its counters stay in the report) and a new one starts.
    pub fn map_source(&mut self, ssrc: u32, source: RemoteSource) {
        if let Some(t) = self.tracks.get(&ssrc)
            && (t.source.owner != source.owner || t.source.kind != source.kind)
            && let Some(old) = self.tracks.remove(&ssrc)
        {
            self.retired.push(old);
        }
        if let Some(t) = self.tracks.get_mut(&ssrc) {
            t.source.name = source.name.clone();
        }
        self.sources.insert(ssrc, source);
    }

    /// A source-remove (or, with SSRC rewriting, a freed SSRC): stop attributing this SSRC (its
    /// track ends and keeps its counters).
    pub fn remove_source(&mut self, ssrc: u32) {
        self.sources.remove(&ssrc);
        if let Some(t) = self.tracks.remove(&ssrc) {
            self.retired.push(t);
        }
    }

    /// Every source of `owner` (it left the room).
    pub fn remove_owner(&mut self, owner: &str) {
        self.sources.retain(|_, s| s.owner != owner);
    }

    pub fn source(&self, ssrc: u32) -> Option<&RemoteSource> {
        self.sources.get(&ssrc)
    }

    /// Every signalled remote source.
    pub fn sources(&self) -> impl Iterator<Item = &RemoteSource> + '_ {
        self.sources.values()
    }

    /// Every track, current and retired.
    pub fn tracks(&self) -> impl Iterator<Item = &Track> + '_ {
        self.tracks.values().chain(&self.retired)
    }

    /// Owners we currently receive `kind` from (at least one packet).
    pub fn owners_receiving(&self, kind: Kind) -> impl Iterator<Item = &str> + '_ {
        self.tracks
            .values()
            .filter(move |t| t.source.kind == kind && t.counters.packets > 0)
            .map(|t| t.source.owner.as_str())
    }

    /// Cumulative counters per track id.
    pub fn snapshot(&self) -> HashMap<u64, TrackCounters> {
        self.tracks().map(|t| (t.id, t.counters)).collect()
    }

    /// A decrypted RTP packet from the bridge.
    pub fn on_rtp(&mut self, now: Instant, packet: &[u8]) {
        let Ok(p) = RtpPacket::parse(packet) else {
            self.drops.malformed += 1;
            return;
        };
        if let Some(id) = self.tcc_ext
            && let Some(seq) = p.transport_cc_seq(id)
        {
            self.tcc.on_packet(now, seq, p.ssrc(), p.marker());
        }
        if p.is_padding_only() {
            self.drops.padding += 1;
            return;
        }
        let ssrc = p.ssrc();
        let dd = match self.av1 {
            Some((pt, ext)) if p.payload_type() == pt => {
                let dd = p.extension(ext);
                if dd.is_none() {
                    self.drops.av1_without_descriptor += 1;
                }
                dd
            }
            _ => None,
        };
        let track = match self.tracks.get_mut(&ssrc) {
            Some(t) => t,
            None => {
                let Some(source) = self.sources.get(&ssrc) else {
                    self.drops.unknown_ssrc += 1;
                    return;
                };
                let id = self.next_track_id;
                self.next_track_id += 1;
                self.tracks
                    .entry(ssrc)
                    .or_insert_with(|| Track::new(now, id, ssrc, source.clone()))
            }
        };
        self.first_media_at.get_or_insert(now);
        track.on_packet(
            now,
            p.sequence_number(),
            p.timestamp(),
            p.payload(),
            p.marker(),
            dd,
        );
    }

    /// Sender reports from the bridge (for LSR/DLSR in our receiver reports).
    pub fn on_sender_report(&mut self, now: Instant, ssrc: u32, ntp_middle: u32) {
        if let Some(t) = self.tracks.get_mut(&ssrc) {
            t.stats.on_sender_report(now, ntp_middle);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        [Some(self.next_rr), self.tcc.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Feedback that is due: transport-cc, receiver reports, PLIs for streams without a keyframe.
    pub fn handle_timeout(&mut self, now: Instant, mut send: impl FnMut(&[u8])) {
        self.buf.clear();
        if self.tcc.poll_feedback(now, &mut self.buf) > 0 {
            send(&self.buf);
            self.rtcp_sent += 1;
        }
        if now < self.next_rr {
            return;
        }
        self.next_rr = now + RR_INTERVAL;
        self.blocks.clear();
        let mut plis: Vec<u32> = Vec::new();
        for t in self.tracks.values_mut() {
            if t.stats.is_active() {
                self.blocks.push(t.stats.report_block(now, t.ssrc));
            }
            if t.awaiting_keyframe
                && t.last_pli
                    .is_none_or(|l| now.saturating_duration_since(l) >= PLI_INTERVAL)
            {
                t.last_pli = Some(now);
                t.plis_sent += 1;
                plis.push(t.ssrc);
            }
        }
        self.buf.clear();
        if self.blocks.is_empty() {
            write_rr(&mut self.buf, self.rtcp_ssrc, &[]);
        }
        for chunk in self.blocks.chunks(31) {
            write_rr(&mut self.buf, self.rtcp_ssrc, chunk);
        }
        for ssrc in plis {
            write_pli(&mut self.buf, self.rtcp_ssrc, ssrc);
        }
        send(&self.buf);
        self.rtcp_sent += 1;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::rtp::{RtpHeader, transport_cc, write_header};
    use crate::vp8::{Descriptor, write_frame_header};
    use bridge::sfu::rtcp::{Compound, Packet};
    use bridge::sfu::tcc_feedback::TransportFeedback;

    fn video_packet(seq: u16, tcc: u16, keyframe: bool, start: bool) -> Vec<u8> {
        let mut out = Vec::new();
        write_header(
            &mut out,
            &RtpHeader {
                payload_type: 100,
                marker: true,
                sequence: seq,
                timestamp: u32::from(seq) * 3000,
                ssrc: 7,
            },
            &[(5, &transport_cc(tcc))],
        );
        Descriptor {
            start,
            picture_id: Some(seq),
            ..Descriptor::default()
        }
        .write(&mut out);
        write_frame_header(&mut out, keyframe, 10, 640, 360);
        out.extend_from_slice(&[0; 100]);
        out
    }

    fn receiver(now: Instant) -> MediaReceiver {
        video_receiver(now, 7, "abcd0123")
    }

    /// A receiver (SSRC 99, transport-cc extension 5) of `owner`'s camera on `ssrc`.
    pub(crate) fn video_receiver(now: Instant, ssrc: u32, owner: &str) -> MediaReceiver {
        let mut r = MediaReceiver::new(now, 99, Some(5));
        r.add_source(
            ssrc,
            RemoteSource {
                owner: owner.into(),
                kind: Kind::Video,
                name: Some(format!("{owner}-v0")),
                clock_rate: 90_000,
            },
        );
        r
    }

    #[test]
    fn counts_loss_from_sequence_gaps_and_sees_keyframe_resolution() {
        let t0 = Instant::now();
        let mut r = receiver(t0);
        let mut now = t0;
        // 200 packets, seq wrapping through 65535, every 20th missing; one keyframe at the start.
        let mut sent = 0;
        for i in 0u16..200 {
            now += Duration::from_millis(10);
            let seq = 65400u16.wrapping_add(i);
            if i % 20 == 10 {
                continue;
            }
            sent += 1;
            r.on_rtp(now, &video_packet(seq, i, i == 0, true));
        }
        let t = r.tracks().next().unwrap();
        assert_eq!(t.counters.packets, sent);
        assert_eq!(t.counters.expected, 200);
        assert_eq!(t.counters.lost(), 10);
        assert!((t.counters.loss_fraction() - 0.05).abs() < 1e-9);
        assert_eq!(t.counters.keyframes, 1);
        assert_eq!(t.size, Some((640, 360)));
        assert_eq!(
            r.owners_receiving(Kind::Video).collect::<Vec<_>>(),
            vec!["abcd0123"]
        );
        // A window: the difference of two snapshots.
        let a = r.snapshot()[&0];
        r.on_rtp(
            now,
            &video_packet(65400u16.wrapping_add(202), 202, false, true),
        );
        let b = r.snapshot()[&0];
        let w = b.since(&a);
        assert_eq!((w.packets, w.expected, w.lost()), (1, 3, 2));
        // Unknown SSRCs, padding and garbage are counted apart.
        let mut other = video_packet(1, 300, false, true);
        other[11] = 8;
        r.on_rtp(now, &other);
        r.on_rtp(now, &[0x80, 100, 0]);
        assert_eq!(r.drops.unknown_ssrc, 1);
        assert_eq!(r.drops.malformed, 1);
    }

    #[test]
    fn sends_transport_cc_feedback_receiver_reports_and_pli() {
        let t0 = Instant::now();
        let mut r = receiver(t0);
        let mut now = t0;
        // Delta frames only: the "decoder" asks for a keyframe.
        for i in 0u16..50 {
            now += Duration::from_millis(10);
            r.on_rtp(now, &video_packet(100 + i, 1000 + i, false, true));
        }
        let mut sent = Vec::new();
        r.handle_timeout(t0 + Duration::from_secs(1), |p| sent.push(p.to_vec()));
        let mut tcc_seen = 0;
        let mut rr_seen = false;
        let mut pli_seen = false;
        for p in &sent {
            for pkt in Compound::parse(p).unwrap().packets() {
                match pkt {
                    Packet::TransportCc(fb) => {
                        let f = TransportFeedback::from_rtcp(&fb).unwrap();
                        tcc_seen += f.received_count();
                    }
                    Packet::ReceiverReport(rr) => {
                        rr_seen = true;
                        let b: Vec<ReportBlock> = rr.report_blocks().collect();
                        assert_eq!(b.len(), 1);
                        assert_eq!(b[0].ssrc, 7);
                        assert_eq!(b[0].extended_highest_seq, 149);
                    }
                    Packet::Pli(p) => {
                        pli_seen = true;
                        assert_eq!(p.media_ssrc, 7);
                    }
                    _ => {}
                }
            }
        }
        assert_eq!(tcc_seen, 50, "every transport-cc number acknowledged");
        assert!(rr_seen && pli_seen, "{sent:?}");
        // A keyframe ends the PLIs.
        r.on_rtp(now, &video_packet(150, 1050, true, true));
        let mut sent = Vec::new();
        r.handle_timeout(t0 + Duration::from_secs(3), |p| sent.push(p.to_vec()));
        let pli_again = sent.iter().any(|p| {
            Compound::parse(p)
                .unwrap()
                .packets()
                .any(|k| matches!(k, Packet::Pli(_)))
        });
        assert!(!pli_again);
    }

    #[test]
    fn a_rewritten_ssrc_that_changes_owner_starts_a_new_track() {
        let t0 = Instant::now();
        let mut r = MediaReceiver::new(t0, 99, Some(5));
        let src = |owner: &str| RemoteSource {
            owner: owner.into(),
            kind: Kind::Video,
            name: Some(format!("{owner}-v0")),
            clock_rate: 90_000,
        };
        // Nothing signalled: not attributed.
        r.on_rtp(t0, &video_packet(1, 1, true, true));
        assert_eq!(r.drops.unknown_ssrc, 1);
        r.map_source(7, src("aaaa0001"));
        for i in 2..12u16 {
            r.on_rtp(t0, &video_packet(i, i, i == 2, true));
        }
        // The same owner again (a map repeated): the same track.
        r.map_source(7, src("aaaa0001"));
        r.on_rtp(t0, &video_packet(12, 12, false, true));
        // The slot goes to another participant.
        r.map_source(7, src("bbbb0002"));
        for i in 13..20u16 {
            r.on_rtp(t0, &video_packet(i, i, i == 13, true));
        }
        let mut tracks: Vec<(&str, u64)> = r
            .tracks()
            .map(|t| (t.source.owner.as_str(), t.counters.packets))
            .collect();
        tracks.sort_unstable();
        assert_eq!(tracks, vec![("aaaa0001", 11), ("bbbb0002", 7)]);
        assert_eq!(
            r.snapshot().len(),
            2,
            "window counters per track, not per SSRC"
        );
        // Freed: no longer attributed.
        r.remove_source(7);
        assert!(r.source(7).is_none());
        r.on_rtp(t0, &video_packet(20, 20, false, true));
        assert_eq!(r.drops.unknown_ssrc, 2);
        assert_eq!(r.tracks().count(), 2);
    }
}
