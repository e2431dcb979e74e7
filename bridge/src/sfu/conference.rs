//! One conference: endpoints, sources, the SSRC table, and everything that happens per packet, per
//! RTCP compound, per channel message and per timer tick.

use std::time::{Duration, Instant};

use signaling::sources::VideoType;

use super::allocation::{self, Allocation, LayerInfo, ReceiverInput, SourceInput};
use super::bwe::{ProbeSend, SendSideBwe};
use super::channel::{self, ChannelError, ClientMessage};
use super::codec::{self, VideoInfo};
use super::counters::{DropReason, Stat};
use super::endpoint::{Endpoint, ReceiverSettings, TransportState, next_tcc};
use super::keyframe::RateLimit;
use super::layers::{RateTracker, SourceLayers};
use super::model::{
    MediaKind, MediaParams, MediaSource, MediaSourceDesc, SeqWindow, SsrcEntry, SsrcMap, SsrcRole,
};
use super::nack_gen::{Arrival, NackConfig, NackGenerator};
use super::projection::{Projection, Rewritten, Target, VideoPacket};
use super::recv_stats::ReceiveStats;
use super::rtcp::{self, Compound, Packet, ReportBlock};
use super::rtp::{self, ExtMap, Rewrite, RtpPacket};
use super::rtx_cache::{NEVER, PacketStore, SentEntry, SentLog};
use super::speaker::SpeakerDetector;
use super::tcc_feedback::TransportFeedback;
use super::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};
use super::vp8;
use super::{
    ConferenceHandle, Ctx, EndpointHandle, EndpointParams, EndpointUpdate, Event, ExpireReason,
    FeedbackSources, Output, SfuConfig, SfuError, Sink, TransportEvent,
};

/// Most recent dominant speakers kept (JVB keeps 10).
const RECENT_SPEAKERS: usize = 10;
/// How often layer activity (an encoding starting or stopping) is checked.
const LAYER_CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// A probe packet that could not be sent (nothing to copy or pad) is retried after this.
const PROBE_RETRY: Duration = Duration::from_millis(20);
/// How often receivers whose allocation wants more than their estimate may start a probe.
const PROBE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

pub(crate) struct Conference {
    pub handle: ConferenceHandle,
    pub meeting_id: String,
    pub name: Option<String>,
    pub feedback: FeedbackSources,
    endpoints: Vec<Option<Endpoint>>,
    ep_gens: Vec<u32>,
    sources: Vec<Option<MediaSource>>,
    src_gens: Vec<u32>,
    ssrcs: SsrcMap<SsrcEntry>,
    speaker: Box<dyn SpeakerDetector>,
    /// Endpoints that were dominant, most recent first.
    recent_speakers: Vec<u32>,
    /// Endpoints in the order they joined.
    join_order: Vec<u32>,
    created_at: Instant,
    /// Set once the conference had an endpoint (or waited the expiry timeout without one): from
    /// then on it expires as soon as it is empty.
    had_endpoints: bool,
    next_rr: Instant,
    next_speaker: Instant,
    next_housekeeping: Instant,
    /// Periodic re-allocation.
    next_alloc: Instant,
    /// Layer activity check.
    next_layer_check: Instant,
    /// A re-allocation is due (layers changed on the packet path; run from the timer).
    realloc_at: Option<Instant>,
    /// Earliest deadline of the per-endpoint machinery (feedback and NACK generators, bandwidth
    /// estimators and probes, a pending re-allocation); lowered as they schedule work,
    /// recomputed by each timer run. The shell learns it through `Sfu::poll_timeout`.
    pub wake_at: Option<Instant>,
    /// Probing check (the allocation wants more than the estimate).
    next_probe_check: Instant,
    /// Reused by receiver-report generation.
    rr_blocks: Vec<(u32, MediaKind, ReportBlock)>,
}

impl Conference {
    pub fn new(
        handle: ConferenceHandle,
        meeting_id: &str,
        name: Option<&str>,
        feedback: FeedbackSources,
        now: Instant,
        cfg: &SfuConfig,
    ) -> Self {
        let speaker: Box<dyn SpeakerDetector> = (cfg.speaker_detector)();
        let next_speaker = now + speaker.interval();
        Conference {
            handle,
            meeting_id: meeting_id.to_owned(),
            name: name.map(str::to_owned),
            feedback,
            endpoints: Vec::new(),
            ep_gens: Vec::new(),
            sources: Vec::new(),
            src_gens: Vec::new(),
            ssrcs: SsrcMap::default(),
            speaker,
            recent_speakers: Vec::new(),
            join_order: Vec::new(),
            created_at: now,
            had_endpoints: false,
            next_rr: now + cfg.rr_interval,
            next_speaker,
            next_housekeeping: now + cfg.housekeeping_interval,
            next_alloc: now + cfg.max_time_between_allocations,
            next_layer_check: now + LAYER_CHECK_INTERVAL,
            realloc_at: None,
            wake_at: None,
            next_probe_check: now + PROBE_CHECK_INTERVAL,
            rr_blocks: Vec::new(),
        }
    }

    // ------------------------------------------------------------------------------ lookups

    pub fn endpoint(&self, h: EndpointHandle) -> Option<&Endpoint> {
        if h.conf != self.handle {
            return None;
        }
        self.endpoints
            .get(h.idx as usize)?
            .as_ref()
            .filter(|e| e.handle == h)
    }

    fn endpoint_mut(&mut self, h: EndpointHandle) -> Option<&mut Endpoint> {
        if h.conf != self.handle {
            return None;
        }
        self.endpoints
            .get_mut(h.idx as usize)?
            .as_mut()
            .filter(|e| e.handle == h)
    }

    fn ep(&self, idx: u32) -> Option<&Endpoint> {
        self.endpoints.get(idx as usize)?.as_ref()
    }

    fn src(&self, idx: u32) -> Option<&MediaSource> {
        self.sources.get(idx as usize)?.as_ref()
    }

    pub fn find_endpoint(&self, id: &str) -> Option<EndpointHandle> {
        self.endpoints
            .iter()
            .flatten()
            .find(|e| e.id == id)
            .map(|e| e.handle)
    }

    pub fn endpoint_count(&self) -> usize {
        self.endpoints.iter().flatten().count()
    }

    pub fn active_endpoint_count(&self) -> usize {
        self.endpoints
            .iter()
            .flatten()
            .filter(|e| e.last_media.is_some() && e.active)
            .count()
    }

    pub fn source_count(&self) -> usize {
        self.sources.iter().flatten().count()
    }

    pub fn should_expire(&self) -> bool {
        self.endpoint_count() == 0 && self.had_endpoints
    }

    pub fn next_timeout(&self) -> Instant {
        let t = self
            .next_rr
            .min(self.next_speaker)
            .min(self.next_housekeeping)
            .min(self.next_alloc)
            .min(self.next_layer_check)
            .min(self.next_probe_check);
        self.wake_at.map_or(t, |r| r.min(t))
    }

    // ------------------------------------------------------------------------------ commands

    pub fn add_endpoint(
        &mut self,
        now: Instant,
        p: EndpointParams,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> Result<EndpointHandle, SfuError> {
        if self.find_endpoint(&p.id).is_some() {
            return Err(SfuError::EndpointExists(p.id));
        }
        let idx = match self.endpoints.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.endpoints.push(None);
                self.ep_gens.push(0);
                self.endpoints.len() - 1
            }
        };
        let handle = EndpointHandle {
            conf: self.handle,
            idx: idx as u32,
            generation: self.ep_gens[idx],
        };
        let cfg = &ctx.cfg;
        let ep = Endpoint {
            handle,
            id: p.id,
            stats_id: p.stats_id,
            visitor: p.visitor,
            audio: MediaParams::from_rtp(&p.audio),
            video: MediaParams::from_rtp(&p.video),
            sources: Vec::new(),
            force_mute_audio: p.force_mute.audio,
            force_mute_video: p.force_mute.video,
            transport: TransportState::default(),
            created_at: now,
            last_activity: now,
            last_media: None,
            active: true,
            settings: ReceiverSettings::new(p.initial_last_n.unwrap_or(-1), cfg.initial_max_height),
            forwarded: Vec::new(),
            projections: Vec::new(),
            tcc_seq: 1,
            sent: SentLog::new(cfg.rtx_log_packets, cfg.rtx_max_age, now),
            bwe_bps: cfg.initial_bwe_bps,
            allocated_bwe_bps: None,
            allocation: Allocation::default(),
            sent_ideal_height: None,
            tcc_gen: None,
            bwe: None,
            probe_hold: None,
            rtx_rate: RateTracker::default(),
        };
        let mut ep = ep;
        if cfg.bandwidth_estimation && ep.video.ext.transport_cc != 0 {
            let b = SendSideBwe::new(now, cfg.bwe);
            ep.bwe_bps = Some(b.poll_estimate());
            ep.bwe = Some(b);
        }
        self.endpoints[idx] = Some(ep);
        self.had_endpoints = true;
        self.join_order.push(idx as u32);
        self.speaker.add(idx as u32);
        if !p.visitor {
            self.set_sources(now, idx as u32, p.sources, ctx);
        }
        self.reallocate(now, ctx, sink);
        Ok(handle)
    }

    pub fn update_endpoint(
        &mut self,
        now: Instant,
        h: EndpointHandle,
        u: EndpointUpdate,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> Result<(), SfuError> {
        let ep = self.endpoint_mut(h).ok_or(SfuError::EndpointNotFound)?;
        if let Some(a) = &u.audio {
            ep.audio = MediaParams::from_rtp(a);
        }
        if let Some(v) = &u.video {
            ep.video = MediaParams::from_rtp(v);
        }
        if let Some(m) = u.force_mute_audio {
            ep.force_mute_audio = m;
        }
        if let Some(m) = u.force_mute_video {
            ep.force_mute_video = m;
        }
        if let Some(n) = u.initial_last_n {
            ep.settings.last_n = n;
        }
        let visitor = ep.visitor;
        if let Some(s) = u.sources
            && !visitor
        {
            self.set_sources(now, h.idx, s, ctx);
        }
        self.reallocate(now, ctx, sink);
        Ok(())
    }

    /// Replaces an endpoint's source set. Sources whose name, kind and encodings are unchanged keep
    /// their slot (and so every receiver's projection and the receive statistics); others are
    /// removed and re-added.
    fn set_sources(
        &mut self,
        now: Instant,
        owner: u32,
        descs: Vec<MediaSourceDesc>,
        ctx: &mut Ctx,
    ) {
        let Some(ep) = self.ep(owner) else { return };
        let existing: Vec<u32> = ep.sources.clone();
        let mut keep = Vec::new();
        let mut add = Vec::new();
        for d in descs {
            let encs = d.encodings();
            let same = existing.iter().copied().find(|&s| {
                self.src(s)
                    .is_some_and(|m| m.name == d.name && m.kind == d.kind && m.encodings == encs)
            });
            match same {
                Some(s) => {
                    if let Some(Some(m)) = self.sources.get_mut(s as usize) {
                        m.video_type = d.video_type();
                    }
                    keep.push(s);
                }
                None => add.push(d),
            }
        }
        for s in existing {
            if !keep.contains(&s) {
                self.remove_source(s);
            }
        }
        for d in add {
            if let Some(s) = self.add_source(now, owner, d, ctx) {
                keep.push(s);
            }
        }
        if let Some(Some(ep)) = self.endpoints.get_mut(owner as usize) {
            ep.sources = keep;
        }
    }

    fn add_source(
        &mut self,
        now: Instant,
        owner: u32,
        d: MediaSourceDesc,
        ctx: &mut Ctx,
    ) -> Option<u32> {
        let encodings = d.encodings();
        if encodings.is_empty() {
            return None;
        }
        let idx = match self.sources.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.sources.push(None);
                self.src_gens.push(0);
                self.sources.len() - 1
            }
        };
        let default_clock = match d.kind {
            MediaKind::Audio => 48_000,
            MediaKind::Video => 90_000,
        };
        let mut claim = |ssrc: u32, enc: usize, role: SsrcRole| {
            if self.ssrcs.get(&ssrc).is_some_and(|e| e.owner != owner) {
                ctx.counters.drop(DropReason::SsrcConflict);
                return;
            }
            self.ssrcs.insert(
                ssrc,
                SsrcEntry {
                    owner,
                    source: idx as u32,
                    encoding: enc as u8,
                    role,
                    kind: d.kind,
                    stats: ReceiveStats::new(now, default_clock),
                    seen: SeqWindow::default(),
                    nack: None,
                },
            );
        };
        for (i, e) in encodings.iter().enumerate() {
            claim(e.ssrc, i, SsrcRole::Media);
            if let Some(r) = e.rtx {
                claim(r, i, SsrcRole::Rtx);
            }
            if let Some(f) = e.fec {
                claim(f, i, SsrcRole::Fec);
            }
        }
        self.sources[idx] = Some(MediaSource {
            generation: self.src_gens[idx],
            owner,
            video_type: d.video_type(),
            name: d.name,
            kind: d.kind,
            fir_seq: 0,
            keyframe_limit: RateLimit::per_source(),
            store: (d.kind == MediaKind::Video)
                .then(|| PacketStore::new(ctx.cfg.rtx_store_packets)),
            layers: (d.kind == MediaKind::Video).then(|| SourceLayers::new(encodings.len())),
            sent_max_height: None,
            silence_run: 0,
            active_mask: 0,
            encodings,
        });
        Some(idx as u32)
    }

    fn remove_source(&mut self, idx: u32) {
        let Some(m) = self.sources.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        if let Some(g) = self.src_gens.get_mut(idx as usize) {
            *g = g.wrapping_add(1);
        }
        for e in &m.encodings {
            for s in [Some(e.ssrc), e.rtx, e.fec].into_iter().flatten() {
                if self.ssrcs.get(&s).is_some_and(|x| x.owner == m.owner) {
                    self.ssrcs.remove(&s);
                }
            }
        }
        for ep in self.endpoints.iter_mut().flatten() {
            if let Some(p) = ep.projections.get_mut(idx as usize) {
                *p = None;
            }
        }
    }

    pub fn remove_endpoint(
        &mut self,
        now: Instant,
        h: EndpointHandle,
        reason: ExpireReason,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        if self.endpoint(h).is_none() {
            return;
        }
        self.remove_endpoint_idx(h.idx, reason, ctx, sink);
        self.reallocate(now, ctx, sink);
    }

    fn remove_endpoint_idx(
        &mut self,
        idx: u32,
        reason: ExpireReason,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(ep) = self.endpoints.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        if let Some(g) = self.ep_gens.get_mut(idx as usize) {
            *g = g.wrapping_add(1);
        }
        for s in &ep.sources {
            self.remove_source(*s);
        }
        self.speaker.remove(idx);
        self.recent_speakers.retain(|e| *e != idx);
        self.join_order.retain(|e| *e != idx);
        ctx.counters.inc(Stat::EndpointsExpired);
        sink.emit(Output::Event(Event::EndpointExpired {
            endpoint: ep.handle,
            meeting_id: self.meeting_id.clone(),
            endpoint_id: ep.id,
            reason,
        }));
    }

    pub fn expire_all(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        for i in 0..self.endpoints.len() as u32 {
            self.remove_endpoint_idx(i, ExpireReason::Requested, ctx, sink);
        }
        self.had_endpoints = true;
        self.reallocate(now, ctx, sink);
    }

    // ------------------------------------------------------------------------------ RTP

    pub fn on_rtp(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        buf: &[u8],
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(sender) = self.endpoint_mut(from) else {
            ctx.counters.drop(DropReason::UnknownEndpoint);
            return;
        };
        sender.last_activity = now;
        sender.last_media = Some(now);
        ctx.counters.inc(Stat::RtpReceived);
        ctx.counters.add(Stat::RtpBytesReceived, buf.len() as u64);
        let pkt = match RtpPacket::parse(buf) {
            Ok(p) => p,
            Err(_) => {
                ctx.counters.drop(DropReason::RtpMalformed);
                return;
            }
        };
        let Some(entry) = self.ssrcs.get_mut(&pkt.ssrc()) else {
            ctx.counters.drop(DropReason::RtpUnknownSsrc);
            return;
        };
        if entry.owner != from.idx {
            ctx.counters.drop(DropReason::RtpSsrcNotOwned);
            return;
        }
        let Some(Some(sender)) = self.endpoints.get_mut(from.idx as usize) else {
            return;
        };
        let kind = entry.kind;
        // Uplink transport-cc: every packet carrying the sender's transport-wide number counts,
        // retransmissions and padding probes included (they are what its estimator measures).
        let tcc_id = sender.params(kind).ext.transport_cc;
        if tcc_id != 0
            && let Some(tseq) = pkt.transport_cc_seq(tcc_id)
        {
            let feedback_ssrc = self.feedback.video_ssrc;
            let generator = sender.tcc_gen.get_or_insert_with(|| {
                TccFeedbackGenerator::new(feedback_ssrc, GeneratorConfig::default())
            });
            if generator.on_packet(now, tseq, pkt.ssrc(), pkt.marker()) {
                ctx.scratch2.clear();
                if generator.poll_feedback(now, &mut ctx.scratch2) > 0 {
                    ctx.counters.inc(Stat::TccFeedbackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: sender.handle,
                        packet: &ctx.scratch2,
                    });
                }
            }
            wake(&mut self.wake_at, generator.poll_timeout());
        }
        let sender = &*sender;
        let sparams = sender.params(kind);
        if let Some(c) = sparams.clock_rate(pkt.payload_type()) {
            entry.stats.set_clock_rate(c);
        }
        entry
            .stats
            .on_packet(now, pkt.sequence_number(), pkt.timestamp());
        match entry.role {
            SsrcRole::Media => self.on_media(now, from, &pkt, ctx, sink),
            SsrcRole::Rtx if kind == MediaKind::Video => {
                // A retransmission the sender made (answering a NACK, or probing with old
                // packets): unwrapped into its media stream, where duplicates are dropped.
                if pkt.is_padding_only() {
                    ctx.counters.drop(DropReason::RtpPaddingOnly);
                    return;
                }
                let Some(apt) = sparams.apt_of(pkt.payload_type()) else {
                    ctx.counters.drop(DropReason::RtpSenderRepair);
                    return;
                };
                let (source, encoding) = (entry.source, entry.encoding);
                let media_ssrc = self
                    .sources
                    .get(source as usize)
                    .and_then(Option::as_ref)
                    .and_then(|s| s.encodings.get(usize::from(encoding)))
                    .map(|e| e.ssrc);
                let Some(media_ssrc) = media_ssrc else { return };
                let mut unwrapped = std::mem::take(&mut ctx.ingress);
                match rtp::write_unwrapped_rtx(&pkt, media_ssrc, apt, &mut unwrapped)
                    .then(|| RtpPacket::parse(&unwrapped).ok())
                    .flatten()
                {
                    Some(orig) => {
                        ctx.counters.inc(Stat::RtxUnwrapped);
                        self.on_media(now, from, &orig, ctx, sink);
                    }
                    None => ctx.counters.drop(DropReason::RtpSenderRepair),
                }
                ctx.ingress = unwrapped;
            }
            _ => ctx.counters.drop(DropReason::RtpSenderRepair),
        }
    }

    /// Milliseconds since the conference started (the layer measurement clock).
    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.created_at).as_millis() as u64
    }

    /// A media packet (original or unwrapped from RTX): measured, then projected to every receiver.
    fn on_media(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        pkt: &RtpPacket<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let now_ms = self.ms(now);
        let seq = pkt.sequence_number();
        let Some(entry) = self.ssrcs.get_mut(&pkt.ssrc()) else {
            return;
        };
        // Missing packets are requested from the sender (video it negotiated NACK for).
        if entry.kind == MediaKind::Video
            && let Some(Some(sender)) = self.endpoints.get(from.idx as usize)
            && sender.video.nack != 0
        {
            let ssrc = pkt.ssrc();
            let g = entry
                .nack
                .get_or_insert_with(|| NackGenerator::new(ssrc, NackConfig::default()));
            if let Arrival::Gap(_) = g.on_packet(now, seq) {
                ctx.scratch2.clear();
                if g.poll_nack(now, self.feedback.video_ssrc, &mut ctx.scratch2) > 0 {
                    ctx.counters.inc(Stat::NackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: sender.handle,
                        packet: &ctx.scratch2,
                    });
                }
            }
            wake(&mut self.wake_at, g.poll_timeout());
        }
        if !entry.seen.insert(seq) {
            ctx.counters.drop(DropReason::RtpDuplicate);
            return;
        }
        let (source, encoding, kind) = (entry.source, entry.encoding, entry.kind);
        let Some(Some(sender)) = self.endpoints.get(from.idx as usize) else {
            return;
        };
        let sparams = sender.params(kind);
        let sender_ext = sparams.ext;
        let codec = sparams.codec(pkt.payload_type());
        let force_muted = sender.force_muted(kind);
        let Some(Some(src)) = self.sources.get_mut(source as usize) else {
            return;
        };
        // Dropped for everyone: receivers still see contiguous sequence numbers.
        let mut drop_reason = if pkt.is_padding_only() {
            Some(DropReason::RtpPaddingOnly)
        } else if force_muted {
            Some(DropReason::RtpForceMuted)
        } else {
            None
        };
        let mut info = VideoInfo::default();
        match kind {
            MediaKind::Audio => {
                if sender_ext.audio_level != 0
                    && let Some((_, level)) = pkt.audio_level(sender_ext.audio_level)
                {
                    if !force_muted {
                        self.speaker.on_level(now, from.idx, level);
                    }
                    if level >= 127 {
                        src.silence_run = src.silence_run.saturating_add(1);
                        if ctx.cfg.discard_silence
                            && src.silence_run > ctx.cfg.forwarded_silence_packets
                            && drop_reason.is_none()
                        {
                            drop_reason = Some(DropReason::RtpSilence);
                        }
                    } else {
                        src.silence_run = 0;
                    }
                }
            }
            MediaKind::Video if drop_reason.is_none() => {
                info = codec::inspect(codec, pkt.payload());
                if let Some(l) = src.layers.as_mut() {
                    let started = l.on_packet(now_ms, encoding, info.tid, pkt.as_bytes().len());
                    let resized = info
                        .size
                        .is_some_and(|(_, h)| l.set_height(encoding, i32::from(h)));
                    if started || resized {
                        self.realloc_at.get_or_insert(now);
                        wake(&mut self.wake_at, Some(now));
                    }
                }
            }
            MediaKind::Video => {}
        }
        if let Some(reason) = drop_reason {
            ctx.counters.drop(reason);
            for r in self.endpoints.iter_mut().flatten() {
                if let Some(p) = r.projection_mut(source) {
                    p.skip(encoding, seq);
                }
            }
            return;
        }
        let src_gen = src.generation;
        let pt = pkt.payload_type();
        let vp = VideoPacket {
            encoding,
            seq,
            timestamp: pkt.timestamp(),
            marker: pkt.marker(),
            info: &info,
        };
        // Egress payload offset = egress length - (payload + padding length).
        let tail_len = pkt.as_bytes().len() - pkt.header_len();
        // Stored once for all receivers, on the first one that may NACK it.
        let mut stored = None;
        let mut keyframe_for: Option<u8> = None;
        for (ri, slot) in self.endpoints.iter_mut().enumerate() {
            if ri == from.idx as usize {
                continue;
            }
            let Some(r) = slot else { continue };
            let Endpoint {
                handle,
                audio,
                video,
                projections,
                tcc_seq,
                sent,
                transport,
                bwe,
                ..
            } = r;
            let Some(Some(proj)) = projections.get_mut(source as usize) else {
                continue;
            };
            if proj.source_gen != src_gen || !transport.connected {
                continue;
            }
            let rparams = match kind {
                MediaKind::Audio => &*audio,
                MediaKind::Video => &*video,
            };
            if !rparams.has_pt(pt) {
                if proj.target != Target::Suspended {
                    ctx.counters.drop(DropReason::RtpPayloadTypeNotNegotiated);
                }
                proj.skip(encoding, seq);
                continue;
            }
            let decision = match kind {
                MediaKind::Audio => {
                    let d = proj.audio(seq).map(|s| Rewritten {
                        seq: s,
                        timestamp: pkt.timestamp(),
                        vp8: None,
                        keyframe: false,
                    });
                    if d.is_none() && proj.target != Target::Suspended {
                        ctx.counters.drop(DropReason::RtpLateAfterSkip);
                    }
                    d
                }
                MediaKind::Video => {
                    let d = proj.video(now, &vp);
                    if let Some(e) = proj.needs_keyframe() {
                        keyframe_for = Some(keyframe_for.map_or(e, |k| k.max(e)));
                    }
                    d
                }
            };
            let Some(out) = decision else { continue };
            let ext = ext_map(&sender_ext, rparams, kind);
            let tcc = if ext.tcc_out != 0 {
                next_tcc(tcc_seq)
            } else {
                0
            };
            let rw = Rewrite {
                ssrc: proj.egress_ssrc,
                seq: out.seq,
                timestamp: out.timestamp,
                payload_type: pt,
                ext: &ext,
                tcc_seq: tcc,
            };
            if rparams.has_nack(pt)
                && let Some(store) = src.store.as_mut()
            {
                let at = *stored.get_or_insert_with(|| store.put(pkt.as_bytes()));
                let sent_ms = sent.ms(now);
                let (vp8_pic, vp8_tl0) = out.vp8.unwrap_or((0, 0));
                sent.push(SentEntry {
                    ssrc: rw.ssrc,
                    seq: out.seq,
                    timestamp: rw.timestamp,
                    source,
                    source_gen: src_gen as u16,
                    stored: at,
                    sent_ms,
                    resent_ms: NEVER,
                    vp8_pic,
                    vp8_tl0,
                    flags: if kind == MediaKind::Video {
                        SentEntry::VIDEO
                    } else {
                        0
                    } | if out.vp8.is_some() { SentEntry::VP8 } else { 0 }
                        | if out.keyframe { SentEntry::KEYFRAME } else { 0 },
                });
            }
            rtp::write_forwarded(pkt, &rw, &mut ctx.scratch);
            if let (Some((pic, tl0)), Some(h)) = (out.vp8, info.vp8.as_ref()) {
                let off = ctx.scratch.len() - tail_len;
                vp8::rewrite(&mut ctx.scratch[off..], h, pic, tl0);
            }
            if ext.tcc_out != 0
                && let Some(b) = bwe.as_mut()
            {
                b.on_packet_sent(now, tcc, ctx.scratch.len(), None);
            }
            ctx.counters.inc(Stat::RtpSent);
            ctx.counters
                .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
            sink.emit(Output::Rtp {
                to: *handle,
                packet: &ctx.scratch,
            });
        }
        if let Some(e) = keyframe_for {
            self.request_keyframe(now, source, e, ctx, sink);
        }
    }

    // ------------------------------------------------------------------------------ RTCP

    pub fn on_rtcp(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        buf: &[u8],
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(ep) = self.endpoint_mut(from) else {
            ctx.counters.drop(DropReason::UnknownEndpoint);
            return;
        };
        ep.last_activity = now;
        ep.last_media = Some(now);
        ctx.counters.inc(Stat::RtcpReceived);
        let compound = match Compound::parse(buf) {
            Ok(c) => c,
            Err(_) => {
                ctx.counters.drop(DropReason::RtcpMalformed);
                return;
            }
        };
        for p in compound.packets() {
            match p {
                Packet::SenderReport(sr) => self.on_sender_report(now, from, &sr, ctx, sink),
                Packet::Pli(pli) => {
                    ctx.counters.inc(Stat::PliReceived);
                    self.on_keyframe_request(now, from, pli.media_ssrc, ctx, sink);
                }
                Packet::Fir(fir) => {
                    ctx.counters.inc(Stat::FirReceived);
                    for (ssrc, _) in fir.entries() {
                        self.on_keyframe_request(now, from, ssrc, ctx, sink);
                    }
                }
                Packet::Nack(nack) => {
                    ctx.counters.inc(Stat::NackReceived);
                    self.on_nack(now, from, &nack, ctx, sink);
                }
                // REMB is the estimate of a receiver that did not negotiate transport-cc.
                Packet::Remb(remb) => {
                    ctx.counters.inc(Stat::RtcpTerminated);
                    let uses_tcc = self
                        .endpoint(from)
                        .is_some_and(|e| e.video.ext.transport_cc != 0);
                    if !uses_tcc {
                        self.on_bandwidth_estimate(now, from, remb.bitrate_bps(), ctx, sink);
                    }
                }
                // The receiver's feedback on the bridge's own transport-wide numbers drives its
                // downlink estimate.
                Packet::TransportCc(t) => {
                    ctx.counters.inc(Stat::RtcpTerminated);
                    let Ok(fb) = TransportFeedback::from_rtcp(&t) else {
                        ctx.counters.drop(DropReason::TccFeedbackMalformed);
                        continue;
                    };
                    let Some(ep) = self.endpoint_mut(from) else {
                        continue;
                    };
                    let Some(b) = ep.bwe.as_mut() else { continue };
                    b.on_transport_feedback(now, &fb);
                    let est = b.poll_estimate();
                    self.on_bandwidth_estimate(now, from, est, ctx, sink);
                }
                // Terminated: RR (about our streams), SDES, BYE, XR, APP and anything else.
                Packet::ReceiverReport(_)
                | Packet::Sdes
                | Packet::Bye(_)
                | Packet::Xr
                | Packet::Other { .. } => ctx.counters.inc(Stat::RtcpTerminated),
            }
        }
    }

    /// Records LSR for our RRs, then forwards the SR (without report blocks, SSRC and RTP timestamp
    /// as projected) to every receiver that gets this SSRC's stream.
    fn on_sender_report(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        sr: &rtcp::SenderReport<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(entry) = self.ssrcs.get_mut(&sr.ssrc()) else {
            ctx.counters.drop(DropReason::RtcpUnknownSsrc);
            return;
        };
        if entry.owner != from.idx {
            ctx.counters.drop(DropReason::RtpSsrcNotOwned);
            return;
        }
        entry.stats.on_sender_report(now, sr.ntp_middle());
        let (source, encoding, role) = (entry.source, entry.encoding, entry.role);
        let Some(src_gen) = self.src(source).map(|s| s.generation) else {
            return;
        };
        let mut forwarded = false;
        if role == SsrcRole::Media {
            for (ri, r) in self.endpoints.iter_mut().enumerate() {
                let Some(r) = r else { continue };
                if ri == from.idx as usize || !r.transport.connected {
                    continue;
                }
                let handle = r.handle;
                let Some(p) = r.projection_mut(source) else {
                    continue;
                };
                if p.source_gen != src_gen || p.packets_sent == 0 {
                    continue;
                }
                // Only the SR of the encoding this receiver gets, with that segment's offset.
                let Some(rtp_timestamp) = p.sr_timestamp(encoding, sr.rtp_timestamp()) else {
                    continue;
                };
                ctx.scratch.clear();
                rtcp::write_sr(
                    &mut ctx.scratch,
                    &rtcp::SenderInfo {
                        ssrc: p.egress_ssrc,
                        ntp: sr.ntp(),
                        rtp_timestamp,
                        packet_count: sr.packet_count(),
                        octet_count: sr.octet_count(),
                    },
                    &[],
                );
                forwarded = true;
                ctx.counters.inc(Stat::SenderReportsForwarded);
                ctx.counters.inc(Stat::RtcpSent);
                sink.emit(Output::Rtcp {
                    to: handle,
                    packet: &ctx.scratch,
                });
            }
        }
        if !forwarded {
            ctx.counters.drop(DropReason::SrNotProjected);
        }
    }

    /// A receiver's PLI/FIR for `media_ssrc` (an SSRC it knows: a forwarded source's primary):
    /// throttled per (receiver, source) and per source, then sent to the owner for the SSRC of the
    /// encoding this receiver currently gets.
    fn on_keyframe_request(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        media_ssrc: u32,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(entry) = self.ssrcs.get(&media_ssrc) else {
            ctx.counters.drop(DropReason::RtcpUnknownSsrc);
            return;
        };
        let (source, owner) = (entry.source, entry.owner);
        if owner == from.idx {
            ctx.counters.inc(Stat::RtcpTerminated);
            return;
        }
        let Some(src_ok) = self.src(source).map(|s| s.keyframe_limit.would_accept(now)) else {
            return;
        };
        let Some(Some(r)) = self.endpoints.get_mut(from.idx as usize) else {
            return;
        };
        let Some(proj) = r.projection_mut(source) else {
            ctx.counters.drop(DropReason::RtcpUnknownSsrc);
            return;
        };
        if !src_ok || !proj.keyframe_limit.would_accept(now) {
            ctx.counters.drop(DropReason::KeyframeThrottled);
            return;
        }
        proj.keyframe_limit.record(now);
        // The encoding this receiver is actually getting (a switch may be pending).
        let encoding = proj
            .current_encoding()
            .or(proj.target.encoding_id())
            .unwrap_or(0);
        self.send_keyframe_request(now, source, encoding, ctx, sink);
    }

    /// Asks a source's owner for a keyframe (PLI if it negotiated `nack pli`, else FIR), subject to
    /// the source-wide limit. Used for receiver requests (already checked per receiver) and for the
    /// bridge's own needs (a receiver starts getting a source).
    fn request_keyframe(
        &mut self,
        now: Instant,
        source: u32,
        encoding: u8,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(s) = self.src(source) else { return };
        if !s.keyframe_limit.would_accept(now) {
            ctx.counters.drop(DropReason::KeyframeThrottled);
            return;
        }
        self.send_keyframe_request(now, source, encoding, ctx, sink);
    }

    fn send_keyframe_request(
        &mut self,
        now: Instant,
        source: u32,
        encoding: u8,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(Some(s)) = self.sources.get_mut(source as usize) else {
            return;
        };
        let Some(enc) = s
            .encodings
            .get(usize::from(encoding))
            .or(s.encodings.first())
        else {
            return;
        };
        let media_ssrc = enc.ssrc;
        let Some(Some(owner)) = self.endpoints.get(s.owner as usize) else {
            return;
        };
        if !owner.transport.connected {
            return;
        }
        s.keyframe_limit.record(now);
        let sender_ssrc = self.feedback.video_ssrc;
        ctx.scratch.clear();
        if owner.video.pli || !owner.video.fir {
            rtcp::write_pli(&mut ctx.scratch, sender_ssrc, media_ssrc);
            ctx.counters.inc(Stat::PliSent);
        } else {
            s.fir_seq = s.fir_seq.wrapping_add(1);
            rtcp::write_fir(&mut ctx.scratch, sender_ssrc, media_ssrc, s.fir_seq);
            ctx.counters.inc(Stat::FirSent);
        }
        ctx.counters.inc(Stat::RtcpSent);
        sink.emit(Output::Rtcp {
            to: owner.handle,
            packet: &ctx.scratch,
        });
    }

    /// Answers a receiver's NACK: each lost packet is looked up in the receiver's sent log,
    /// rebuilt from the source's packet store exactly as it was sent, and resent as RTX (own sequence
    /// counter, original sequence number in front of the payload) if the receiver negotiated RTX for
    /// the payload type and the source has an RTX SSRC, else as it was.
    fn on_nack(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        nack: &rtcp::Nack<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let min_gap =
            u32::try_from(ctx.cfg.nack_min_resend_interval.as_millis()).unwrap_or(u32::MAX);
        // Newest first: when the retransmission budget runs out, the packets closest to being
        // played out are the ones that got through.
        let mut lost = [0u16; 256];
        let mut n = 0;
        for seq in nack.lost() {
            if let Some(slot) = lost.get_mut(n) {
                *slot = seq;
                n += 1;
            }
        }
        for &seq in lost[..n].iter().rev() {
            // Look up and rebuild with shared borrows only…
            let Some(r) = self.ep(from.idx) else { return };
            let Some((i, e)) = r.sent.find(now, nack.media_ssrc, seq) else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let now_ms = r.sent.ms(now);
            if r.projection(e.source)
                .is_some_and(|p| p.source_gen as u16 == e.source_gen && p.is_superseded(e.seq))
            {
                ctx.counters.drop(DropReason::NackSuperseded);
                continue;
            }
            if e.resent_ms != NEVER && now_ms.wrapping_sub(e.resent_ms) < min_gap {
                ctx.counters.drop(DropReason::NackRecentlyResent);
                continue;
            }
            // Retransmissions share the estimate: a congested receiver NACKs a lot, and answering
            // everything would only deepen the congestion. Keyframe packets always go: without
            // them the receiver cannot decode anything.
            if let Some(b) = r
                .bwe
                .as_ref()
                .filter(|_| e.flags & SentEntry::KEYFRAME == 0)
            {
                let budget = (b.poll_estimate() as f64 * ctx.cfg.max_retransmission_share) as u64;
                if r.rtx_rate.bps(self.ms(now)) > budget {
                    ctx.counters.drop(DropReason::NackRateLimited);
                    continue;
                }
            }
            let Some(src) = self
                .src(e.source)
                .filter(|s| s.generation as u16 == e.source_gen)
            else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let Some(orig) = src
                .store
                .as_ref()
                .and_then(|st| st.get(e.stored))
                .and_then(|b| RtpPacket::parse(b).ok())
            else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let kind = if e.video() {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            let Some(sender_ext) = self.ep(src.owner).map(|o| o.params(kind).ext) else {
                continue;
            };
            let params = r.params(kind);
            let ext = ext_map(&sender_ext, params, kind);
            // A retransmission is a new packet on the wire: new transport-wide sequence number.
            let rw = Rewrite {
                ssrc: e.ssrc,
                seq: e.seq,
                timestamp: e.timestamp,
                payload_type: orig.payload_type(),
                ext: &ext,
                tcc_seq: r.tcc_seq,
            };
            let rtx = r
                .projection(e.source)
                .filter(|p| p.source_gen as u16 == e.source_gen)
                .and_then(|p| {
                    let ssrc = p.egress_rtx_ssrc?;
                    let pt = params.rtx_pt_for(orig.payload_type())?;
                    Some((ssrc, pt, p.rtx_seq))
                });
            // Exactly as sent: the VP8 PictureID/TL0PICIDX rewrite too.
            let vp8 = e
                .vp8()
                .and_then(|v| Some((v, vp8::parse(orig.payload()).ok()?)));
            let tail_len = orig.as_bytes().len() - orig.header_len();
            match rtx {
                Some((rtx_ssrc, rtx_pt, rtx_seq)) => {
                    rtp::write_forwarded(&orig, &rw, &mut ctx.scratch2);
                    if let Some(((pic, tl0), h)) = vp8 {
                        let off = ctx.scratch2.len() - tail_len;
                        vp8::rewrite(&mut ctx.scratch2[off..], &h, pic, tl0);
                    }
                    let Ok(sent_pkt) = RtpPacket::parse(&ctx.scratch2) else {
                        continue;
                    };
                    rtp::write_rtx(&sent_pkt, rtx_ssrc, rtx_pt, rtx_seq, &mut ctx.scratch);
                    ctx.counters.inc(Stat::RetransmissionsRtx);
                }
                None => {
                    rtp::write_forwarded(&orig, &rw, &mut ctx.scratch);
                    if let Some(((pic, tl0), h)) = vp8 {
                        let off = ctx.scratch.len() - tail_len;
                        vp8::rewrite(&mut ctx.scratch[off..], &h, pic, tl0);
                    }
                    ctx.counters.inc(Stat::RetransmissionsPlain);
                }
            }
            // …then advance the counters.
            let Some(Some(r)) = self.endpoints.get_mut(from.idx as usize) else {
                return;
            };
            if ext.tcc_out != 0 {
                let t = next_tcc(&mut r.tcc_seq);
                if let Some(b) = r.bwe.as_mut() {
                    b.on_packet_sent(now, t, ctx.scratch.len(), None);
                }
            }
            if rtx.is_some()
                && let Some(p) = r.projection_mut(e.source)
            {
                p.rtx_seq = p.rtx_seq.wrapping_add(1);
            }
            if let Some(entry) = r.sent.get_mut(i) {
                entry.resent_ms = now_ms;
            }
            let at_ms = now.saturating_duration_since(self.created_at).as_millis() as u64;
            r.rtx_rate.add(at_ms, ctx.scratch.len() as u32);
            ctx.counters.inc(Stat::RtpSent);
            ctx.counters
                .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
            sink.emit(Output::Rtp {
                to: r.handle,
                packet: &ctx.scratch,
            });
        }
    }

    /// Receiver reports toward every connected sender: one compound per sender with an RR from
    /// `jvb-a0` for its audio SSRCs and one from `jvb-v0` for its video SSRCs (≤ 31 blocks each).
    fn send_receiver_reports(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        self.rr_blocks.clear();
        for (ssrc, e) in self.ssrcs.iter_mut() {
            if e.stats.is_active() {
                let b = e.stats.report_block(now, *ssrc);
                self.rr_blocks.push((e.owner, e.kind, b));
            }
        }
        if self.rr_blocks.is_empty() {
            return;
        }
        self.rr_blocks
            .sort_unstable_by_key(|(o, k, b)| (*o, *k == MediaKind::Video, b.ssrc));
        let mut i = 0;
        while let Some(&(owner, _, _)) = self.rr_blocks.get(i) {
            let end = self.rr_blocks[i..]
                .iter()
                .position(|(o, _, _)| *o != owner)
                .map_or(self.rr_blocks.len(), |n| i + n);
            let group = &self.rr_blocks[i..end];
            i = end;
            let Some(ep) = self.ep(owner) else { continue };
            if !ep.transport.connected {
                continue;
            }
            ctx.scratch.clear();
            let mut blocks: Vec<ReportBlock> = Vec::with_capacity(group.len());
            for kind in [MediaKind::Audio, MediaKind::Video] {
                blocks.clear();
                blocks.extend(
                    group
                        .iter()
                        .filter(|(_, k, _)| *k == kind)
                        .map(|(_, _, b)| *b),
                );
                let sender = match kind {
                    MediaKind::Audio => self.feedback.audio_ssrc,
                    MediaKind::Video => self.feedback.video_ssrc,
                };
                for chunk in blocks.chunks(31) {
                    rtcp::write_rr(&mut ctx.scratch, sender, chunk);
                }
            }
            ctx.counters.inc(Stat::ReceiverReportsSent);
            ctx.counters.inc(Stat::RtcpSent);
            sink.emit(Output::Rtcp {
                to: ep.handle,
                packet: &ctx.scratch,
            });
        }
    }

    // ------------------------------------------------------------------------------ allocation

    /// Endpoints in speaker order: recent dominant speakers first, then the others by join order;
    /// endpoints that send no video move after those that do.
    fn speaker_order(&self, now_ms: u64) -> Vec<u32> {
        let mut v = self.recent_speakers.clone();
        v.extend(
            self.join_order
                .iter()
                .filter(|e| !self.recent_speakers.contains(e)),
        );
        let sends_video = |e: u32| {
            self.ep(e).is_some_and(|ep| {
                ep.sources.iter().any(|&si| {
                    self.src(si)
                        .and_then(|s| s.layers.as_ref())
                        .is_some_and(|l| l.active_mask(now_ms) != 0)
                })
            })
        };
        v.sort_by_key(|&e| !sends_video(e));
        v
    }

    /// The bandwidth the allocation may use for receiver `r`.
    fn available_bandwidth(recv: &Endpoint, cfg: &SfuConfig) -> u64 {
        if let Some(a) = recv.settings.assumed_bandwidth_bps {
            return a;
        }
        if !cfg.trust_bwe {
            return u64::MAX;
        }
        recv.bwe_bps.unwrap_or(u64::MAX)
    }

    /// Re-decides every (receiver, source) projection target, announces changed forwarded sets and
    /// sender constraints. Runs on membership, source, constraint, layer and dominant-speaker
    /// changes and every `max_time_between_allocations` — never per packet.
    fn reallocate(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        self.run_allocation(now, None, ctx, sink);
    }

    /// Allocation for every receiver (`only` = None) or one receiver (its bandwidth changed).
    fn run_allocation(
        &mut self,
        now: Instant,
        only: Option<u32>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        if only.is_none() {
            self.realloc_at = None;
            self.next_alloc = now + ctx.cfg.max_time_between_allocations;
        }
        let now_ms = self.ms(now);
        let order = self.speaker_order(now_ms);
        // Layer snapshots of every video source, owners in speaker order.
        let mut layers: Vec<LayerInfo> = Vec::new();
        let mut video: Vec<(u32, u32, std::ops::Range<usize>)> = Vec::new();
        for &e in &order {
            let Some(owner) = self.ep(e) else { continue };
            for &si in &owner.sources {
                let Some(s) = self.src(si) else { continue };
                let Some(l) = s.layers.as_ref() else { continue };
                let start = layers.len();
                l.snapshot(now_ms, &mut layers);
                video.push((si, e, start..layers.len()));
            }
        }
        let receivers: Vec<u32> = match only {
            Some(r) => vec![r],
            None => self
                .endpoints
                .iter()
                .flatten()
                .map(|e| e.handle.idx)
                .collect(),
        };
        let cfg = &ctx.cfg;
        let mut results: Vec<(u32, Allocation, Option<u64>)> = Vec::with_capacity(receivers.len());
        for r in receivers {
            let Some(recv) = self.ep(r) else { continue };
            let inputs: Vec<SourceInput<'_>> = video
                .iter()
                .filter(|(_, owner, _)| *owner != r)
                .filter_map(|(si, owner, range)| {
                    let s = self.src(*si)?;
                    let o = self.ep(*owner)?;
                    Some(SourceInput {
                        slot: *si,
                        name: &s.name,
                        owner: &o.id,
                        video_type: if o.force_mute_video {
                            VideoType::None
                        } else {
                            s.video_type
                        },
                        layers: &layers[range.clone()],
                    })
                })
                .collect();
            let s = &recv.settings;
            let rin = ReceiverInput {
                last_n: effective_last_n(s.last_n, cfg),
                on_stage: &s.on_stage,
                selected: &s.selected,
                default_constraints: s.default_constraints,
                constraints: &s.constraints,
                bandwidth_bps: Self::available_bandwidth(recv, cfg),
            };
            results.push((
                r,
                allocation::allocate(&inputs, &rin, &cfg.alloc),
                recv.bwe_bps,
            ));
        }
        // (source, generation, primary, rtx, owner, kind)
        let all: Vec<(u32, u32, u32, Option<u32>, u32, MediaKind)> = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                let p = s.primary()?;
                Some((i as u32, s.generation, p.ssrc, p.rtx, s.owner, s.kind))
            })
            .collect();
        // Base layer bitrate per (source, encoding), for pending down-switches.
        let base_rate = |si: u32, e: u8| -> u64 {
            video
                .iter()
                .find(|(s, _, _)| *s == si)
                .and_then(|(_, _, range)| {
                    layers[range.clone()]
                        .iter()
                        .find(|l| l.encoding == e && l.temporal == 0)
                })
                .map_or(0, |l| l.bitrate_bps)
        };
        let mut keyframes: Vec<(u32, u8)> = Vec::new();
        for (r, alloc, bwe) in results {
            ctx.counters.inc(Stat::Allocations);
            let Some(Some(recv)) = self.endpoints.get_mut(r as usize) else {
                continue;
            };
            let bandwidth = Self::available_bandwidth(recv, &ctx.cfg);
            for &(si, generation, ssrc, rtx, owner, kind) in &all {
                if owner == r {
                    continue;
                }
                let want = match kind {
                    MediaKind::Audio => Target::encoding(0),
                    MediaKind::Video => {
                        alloc
                            .get(si)
                            .and_then(|a| a.target)
                            .map_or(Target::Suspended, |l| Target::Layer {
                                encoding: l.encoding,
                                temporal: l.temporal,
                            })
                    }
                };
                let i = si as usize;
                if recv.projections.len() <= i {
                    recv.projections.resize_with(i + 1, || None);
                }
                let slot = &mut recv.projections[i];
                if slot.as_ref().is_none_or(|p| p.source_gen != generation) {
                    let rtx_seq = ctx.rng.next_u32() as u16;
                    *slot = Some(match kind {
                        MediaKind::Audio => Projection::new_audio(generation, ssrc, rtx, rtx_seq),
                        MediaKind::Video => Projection::new_video(generation, ssrc, rtx, rtx_seq),
                    });
                }
                if let Some(p) = slot {
                    if kind == MediaKind::Video
                        && let Some(e) = want.encoding_id()
                        && p.target.encoding_id() != Some(e)
                    {
                        ctx.counters.inc(Stat::LayerSwitches);
                        if recv.transport.connected && p.current_encoding() != Some(e) {
                            keyframes.push((si, e));
                        }
                    }
                    p.target = want;
                    let drain = match (p.current_encoding(), want.encoding_id()) {
                        (Some(cur), Some(t)) if cur > t => base_rate(si, cur) > bandwidth,
                        _ => false,
                    };
                    p.set_drain(drain);
                }
            }
            let fwd: Vec<u32> = alloc.forwarded().collect();
            let changed = {
                let mut a = recv.forwarded.clone();
                let mut b = fwd.clone();
                a.sort_unstable();
                b.sort_unstable();
                a != b
            };
            recv.forwarded = fwd;
            recv.allocation = alloc;
            recv.allocated_bwe_bps = bwe;
            if changed {
                self.send_forwarded(r, ctx, sink);
            }
        }
        keyframes.sort_unstable();
        keyframes.dedup();
        for (si, e) in keyframes {
            self.request_keyframe(now, si, e, ctx, sink);
        }
        if let Some(r) = only {
            self.maybe_probe(now, r);
        } else {
            self.update_sender_constraints(ctx, sink);
        }
    }

    /// What each sender needs to encode: per video source the largest effective maxHeight any
    /// receiver has for it (0 if nobody wants it, -1 unlimited), announced when it changes as
    /// `SenderSourceConstraints`, and per endpoint (2021 dialect) as `SenderVideoConstraints`.
    fn update_sender_constraints(&mut self, ctx: &mut Ctx, sink: &mut impl Sink) {
        let mut changes: Vec<(u32, u32, i32)> = Vec::new(); // (owner, source, height)
        for (si, s) in self.sources.iter().enumerate() {
            let Some(s) = s else { continue };
            if s.kind != MediaKind::Video {
                continue;
            }
            let mut h = 0i32;
            for r in self.endpoints.iter().flatten() {
                if r.handle.idx == s.owner {
                    continue;
                }
                if let Some(a) = r.allocation.get(si as u32) {
                    h = max_height(h, a.effective.max_height);
                }
            }
            if s.sent_max_height != Some(h) {
                changes.push((s.owner, si as u32, h));
            }
        }
        for &(owner, si, h) in &changes {
            if let Some(Some(s)) = self.sources.get_mut(si as usize) {
                s.sent_max_height = Some(h);
            }
            let (Some(o), Some(s)) = (self.ep(owner), self.src(si)) else {
                continue;
            };
            if o.transport.data_channel_open {
                let m = channel::sender_source_constraints(&s.name, h);
                ctx.counters.inc(Stat::SenderConstraintsSent);
                ctx.counters.inc(Stat::ChannelMessagesSent);
                sink.emit(Output::Text {
                    to: o.handle,
                    text: &m,
                });
            }
        }
        let mut owners: Vec<u32> = changes.iter().map(|c| c.0).collect();
        owners.dedup();
        for owner in owners {
            let Some(o) = self.ep(owner) else { continue };
            let ideal = o
                .sources
                .iter()
                .filter_map(|&si| self.src(si))
                .filter_map(|s| s.sent_max_height)
                .fold(0, max_height);
            if o.sent_ideal_height == Some(ideal) {
                continue;
            }
            let open = o.transport.data_channel_open;
            let handle = o.handle;
            if let Some(Some(o)) = self.endpoints.get_mut(owner as usize) {
                o.sent_ideal_height = Some(ideal);
            }
            if open {
                let m = channel::sender_video_constraints(ideal);
                ctx.counters.inc(Stat::ChannelMessagesSent);
                sink.emit(Output::Text {
                    to: handle,
                    text: &m,
                });
            }
        }
    }

    /// A receiver's downlink estimate changed: re-allocate for it if it moved by more than the
    /// threshold since the last allocation.
    pub fn on_bandwidth_estimate(
        &mut self,
        now: Instant,
        h: EndpointHandle,
        bps: u64,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let threshold = ctx.cfg.bwe_change_threshold;
        let Some(ep) = self.endpoint_mut(h) else {
            ctx.counters.drop(DropReason::UnknownEndpoint);
            return;
        };
        ep.bwe_bps = Some(bps);
        let significant = match ep.allocated_bwe_bps {
            None => true,
            Some(old) => (bps as f64 - old as f64).abs() > old as f64 * threshold,
        };
        if significant {
            self.run_allocation(now, Some(h.idx), ctx, sink);
        }
    }

    /// The receiver's current allocation, for the shell and tests.
    pub fn allocation(&self, h: EndpointHandle) -> Option<&Allocation> {
        Some(&self.endpoint(h)?.allocation)
    }

    /// Layers whose activity changed (an encoding stopped or started): allocate again.
    fn check_layers(&mut self, now: Instant) {
        let now_ms = self.ms(now);
        let mut changed = false;
        for s in self.sources.iter_mut().flatten() {
            if let Some(l) = s.layers.as_ref() {
                let m = l.active_mask(now_ms);
                if m != s.active_mask {
                    s.active_mask = m;
                    changed = true;
                }
            }
        }
        if changed {
            self.realloc_at.get_or_insert(now);
            wake(&mut self.wake_at, Some(now));
        }
    }

    /// Sends receiver `r` its forwarded set in both dialects (modern `ForwardedSources` with source
    /// names, 2021 `LastNEndpointsChangeEvent` with endpoint ids).
    fn send_forwarded(&self, r: u32, ctx: &mut Ctx, sink: &mut impl Sink) {
        let Some(recv) = self.ep(r) else { return };
        if !recv.transport.data_channel_open {
            return;
        }
        let mut names: Vec<&str> = Vec::new();
        let mut owners: Vec<&str> = Vec::new();
        for &si in &recv.forwarded {
            let Some(s) = self.src(si) else { continue };
            names.push(&s.name);
            if let Some(o) = self.ep(s.owner)
                && !owners.contains(&o.id.as_str())
            {
                owners.push(&o.id);
            }
        }
        let m1 = channel::forwarded_sources(&names);
        let m2 = channel::last_n_endpoints(&owners);
        for m in [m1, m2] {
            ctx.counters.inc(Stat::ChannelMessagesSent);
            sink.emit(Output::Text {
                to: recv.handle,
                text: &m,
            });
        }
    }

    // ------------------------------------------------------------------------------ channel

    pub fn on_channel_message(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        text: &str,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(ep) = self.endpoint_mut(from) else {
            ctx.counters.drop(DropReason::UnknownEndpoint);
            return;
        };
        ep.last_activity = now;
        ctx.counters.inc(Stat::ChannelMessagesReceived);
        let msg = match channel::decode(text) {
            Ok(m) => m,
            Err(ChannelError::Malformed) => {
                ctx.counters.drop(DropReason::ChannelMalformed);
                return;
            }
            Err(ChannelError::UnknownClass) => {
                ctx.counters.drop(DropReason::ChannelUnknownClass);
                return;
            }
        };
        match msg {
            ClientMessage::ReceiverVideoConstraints(u) => {
                let cfg = &ctx.cfg;
                if ep
                    .settings
                    .apply(u, cfg.default_max_height, cfg.assumed_bandwidth_limit)
                {
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::LastN(n) => {
                if ep.settings.last_n != n {
                    ep.settings.last_n = n;
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::EndpointMessage(m) => {
                if ep.visitor {
                    return;
                }
                ctx.text = channel::relay_message(&m, &ep.id);
                if m.is_broadcast() {
                    self.broadcast_text(from.idx, ctx, sink, |_| true);
                } else {
                    match self.endpoints.iter().flatten().find(|e| e.id == m.to) {
                        None => ctx.counters.drop(DropReason::ChannelUnknownTarget),
                        Some(t) if !t.transport.data_channel_open => {
                            ctx.counters.drop(DropReason::ChannelNotOpen)
                        }
                        Some(t) => {
                            ctx.counters.inc(Stat::ChannelMessagesSent);
                            sink.emit(Output::Text {
                                to: t.handle,
                                text: &ctx.text,
                            });
                        }
                    }
                }
            }
            ClientMessage::EndpointStats(st) => {
                let sender_sources = ep.sources.clone();
                ctx.text = channel::relay_stats(&st, &ep.id);
                let filter = self.endpoint_count() >= ctx.cfg.stats_filter_threshold;
                self.broadcast_text(from.idx, ctx, sink, |r| {
                    !filter || r.forwarded.iter().any(|s| sender_sources.contains(s))
                });
            }
            ClientMessage::SourceVideoType { source, video_type } => {
                let owned = ep.sources.clone();
                let mut changed = false;
                for si in owned {
                    if let Some(Some(s)) = self.sources.get_mut(si as usize)
                        && s.name == source
                        && s.video_type != video_type
                    {
                        s.video_type = video_type;
                        changed = true;
                    }
                }
                if changed {
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::VideoType(video_type) => {
                let owned = ep.sources.clone();
                for si in owned {
                    if let Some(Some(s)) = self.sources.get_mut(si as usize)
                        && s.kind == MediaKind::Video
                    {
                        s.video_type = video_type;
                    }
                }
                self.reallocate(now, ctx, sink);
            }
            ClientMessage::Ignored => {}
        }
    }

    /// Sends `ctx.text` to every other endpoint with an open channel that `filter` accepts.
    fn broadcast_text(
        &self,
        except: u32,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
        filter: impl Fn(&Endpoint) -> bool,
    ) {
        for r in self.endpoints.iter().flatten() {
            if r.handle.idx == except || !filter(r) {
                continue;
            }
            if !r.transport.data_channel_open {
                ctx.counters.drop(DropReason::ChannelNotOpen);
                continue;
            }
            ctx.counters.inc(Stat::ChannelMessagesSent);
            sink.emit(Output::Text {
                to: r.handle,
                text: &ctx.text,
            });
        }
    }

    // ------------------------------------------------------------------------------ transport

    pub fn on_transport_event(
        &mut self,
        now: Instant,
        h: EndpointHandle,
        ev: TransportEvent,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(ep) = self.endpoint_mut(h) else {
            ctx.counters.drop(DropReason::UnknownEndpoint);
            return;
        };
        match ev {
            TransportEvent::Activity => ep.last_activity = now,
            TransportEvent::Connected => {
                ep.last_activity = now;
                if !ep.transport.connected {
                    ep.transport.connected = true;
                    // It missed every keyframe so far.
                    let wanted: Vec<(u32, u8)> = ep
                        .projections
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| Some((i as u32, p.as_ref()?.target.encoding_id()?)))
                        .collect();
                    for (si, e) in wanted {
                        if self.src(si).is_some_and(|s| s.kind == MediaKind::Video) {
                            self.request_keyframe(now, si, e, ctx, sink);
                        }
                    }
                }
            }
            TransportEvent::DataChannelOpen => {
                ep.last_activity = now;
                ep.transport.data_channel_open = true;
                self.on_channel_open(h.idx, ctx, sink);
            }
            TransportEvent::DataChannelClosed => ep.transport.data_channel_open = false,
            TransportEvent::Failed => {
                self.remove_endpoint(now, h, ExpireReason::TransportFailed, ctx, sink);
            }
        }
    }

    /// What a client needs when its channel opens: the dominant speaker, its forwarded set, and the
    /// endpoints currently inactive.
    fn on_channel_open(&self, r: u32, ctx: &mut Ctx, sink: &mut impl Sink) {
        let Some(recv) = self.ep(r) else { return };
        if let Some(msg) = self.dominant_speaker_message() {
            ctx.counters.inc(Stat::ChannelMessagesSent);
            sink.emit(Output::Text {
                to: recv.handle,
                text: &msg,
            });
        }
        self.send_forwarded(r, ctx, sink);
        // What it should send, as far as decided.
        for &si in &recv.sources {
            if let Some(s) = self.src(si)
                && let Some(h) = s.sent_max_height
            {
                let m = channel::sender_source_constraints(&s.name, h);
                ctx.counters.inc(Stat::SenderConstraintsSent);
                ctx.counters.inc(Stat::ChannelMessagesSent);
                sink.emit(Output::Text {
                    to: recv.handle,
                    text: &m,
                });
            }
        }
        if let Some(h) = recv.sent_ideal_height {
            let m = channel::sender_video_constraints(h);
            ctx.counters.inc(Stat::ChannelMessagesSent);
            sink.emit(Output::Text {
                to: recv.handle,
                text: &m,
            });
        }
        for other in self.endpoints.iter().flatten() {
            if other.handle.idx != r && !other.active {
                let m = channel::connectivity(&other.id, false);
                ctx.counters.inc(Stat::ChannelMessagesSent);
                sink.emit(Output::Text {
                    to: recv.handle,
                    text: &m,
                });
            }
        }
    }

    fn dominant_speaker_message(&self) -> Option<String> {
        let d = self.speaker.dominant()?;
        let dom = self.ep(d)?;
        let prev: Vec<&str> = self
            .recent_speakers
            .iter()
            .filter(|e| **e != d)
            .filter_map(|e| self.ep(*e).map(|x| x.id.as_str()))
            .collect();
        Some(channel::dominant_speaker(&dom.id, &prev))
    }

    // ------------------------------------------------------------------------------ timers

    pub fn on_timeout(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        if now >= self.next_rr {
            self.send_receiver_reports(now, ctx, sink);
            self.next_rr = advance(self.next_rr, now, ctx.cfg.rr_interval);
        }
        if now >= self.next_speaker {
            if let Some(d) = self.speaker.evaluate(now) {
                self.on_dominant_speaker(now, d, ctx, sink);
            }
            self.next_speaker = advance(self.next_speaker, now, self.speaker.interval());
        }
        if now >= self.next_housekeeping {
            self.housekeeping(now, ctx, sink);
            self.next_housekeeping =
                advance(self.next_housekeeping, now, ctx.cfg.housekeeping_interval);
        }
        if now >= self.next_layer_check {
            self.check_layers(now);
            self.next_layer_check = advance(self.next_layer_check, now, LAYER_CHECK_INTERVAL);
        }
        if now >= self.next_alloc || self.realloc_at.is_some_and(|t| now >= t) {
            self.reallocate(now, ctx, sink);
        }
        if now >= self.next_probe_check {
            for i in 0..self.endpoints.len() as u32 {
                self.maybe_probe(now, i);
            }
            self.next_probe_check = advance(self.next_probe_check, now, PROBE_CHECK_INTERVAL);
        }
        self.poll_transport(now, ctx, sink);
    }

    /// Due work of the per-endpoint generators and estimators; recomputes `wake_at`.
    fn poll_transport(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        let mut next = self.realloc_at;
        let feedback_ssrc = self.feedback.video_ssrc;
        for ep in self.endpoints.iter_mut().flatten() {
            if let Some(g) = ep.tcc_gen.as_mut() {
                if g.poll_timeout().is_some_and(|t| t <= now) {
                    ctx.scratch2.clear();
                    if g.poll_feedback(now, &mut ctx.scratch2) > 0 && ep.transport.connected {
                        ctx.counters.inc(Stat::TccFeedbackSent);
                        ctx.counters.inc(Stat::RtcpSent);
                        sink.emit(Output::Rtcp {
                            to: ep.handle,
                            packet: &ctx.scratch2,
                        });
                    }
                }
                wake(&mut next, g.poll_timeout());
            }
        }
        for e in self.ssrcs.values_mut() {
            let Some(g) = e.nack.as_mut() else { continue };
            if g.poll_timeout().is_some_and(|t| t <= now) {
                ctx.scratch2.clear();
                if g.poll_nack(now, feedback_ssrc, &mut ctx.scratch2) > 0
                    && let Some(Some(owner)) = self.endpoints.get(e.owner as usize)
                    && owner.transport.connected
                {
                    ctx.counters.inc(Stat::NackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: owner.handle,
                        packet: &ctx.scratch2,
                    });
                }
            }
            wake(&mut next, g.poll_timeout());
        }
        for i in 0..self.endpoints.len() {
            let due = |c: &Self| {
                let e = c.endpoints.get(i)?.as_ref()?;
                let t = e.bwe.as_ref()?.poll_timeout()?;
                // A cluster that could not be fed is retried a little later, not at once.
                Some(e.probe_hold.map_or(t, |h| h.max(t)))
            };
            if due(self).is_some_and(|t| t <= now) {
                self.send_probes(now, i as u32, ctx, sink);
            }
            wake(&mut next, due(self));
        }
        self.wake_at = next;
    }

    /// Starts a probe cluster toward receiver `r` if its allocation wants more than the estimate.
    fn maybe_probe(&mut self, now: Instant, r: u32) {
        let Some(Some(ep)) = self.endpoints.get_mut(r as usize) else {
            return;
        };
        let ideal = ep.allocation.ideal_bps;
        if !ep.transport.connected || !ep.allocation.has_non_ideal_layer() {
            return;
        }
        let Some(b) = ep.bwe.as_mut() else { return };
        // Probe above the ideal rate: the estimate must exceed a layer's (fluctuating) measured
        // bitrate for the allocation to take it.
        let want = ideal.saturating_add(ideal / 4);
        if want > b.poll_estimate() && b.probe_request(now, want).is_some() {
            wake(&mut self.wake_at, b.poll_timeout());
        }
    }

    /// Sends the probe packets receiver `r`'s estimator asks for now.
    fn send_probes(&mut self, now: Instant, r: u32, ctx: &mut Ctx, sink: &mut impl Sink) {
        loop {
            let Some(Some(ep)) = self.endpoints.get_mut(r as usize) else {
                return;
            };
            let Some(b) = ep.bwe.as_mut() else { return };
            b.handle_timeout(now);
            let Some(p) = b.poll_probe(now) else { return };
            let sent = self.send_probe(now, r, p, ctx, sink);
            if let Some(Some(ep)) = self.endpoints.get_mut(r as usize) {
                ep.probe_hold = (!sent).then_some(now + PROBE_RETRY);
            }
            if !sent {
                return;
            }
        }
    }

    /// One probe packet: an RTX copy of a recent video packet (as the receiver got it), or, with
    /// nothing to copy, RTP padding on the RTX stream of a forwarded video source. Returns false
    /// when no probe can be sent (no RTX negotiated or nothing forwarded).
    fn send_probe(
        &mut self,
        now: Instant,
        r: u32,
        p: ProbeSend,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> bool {
        let Some(recv) = self.ep(r) else { return false };
        if !recv.transport.connected {
            return false;
        }
        let params = &recv.video;
        let ext_plan =
            |sender_ext: &super::model::HdrExtIds| ext_map(sender_ext, params, MediaKind::Video);
        // A recent video packet of a forwarded source with RTX.
        let mut from_source = None;
        for (_, e) in recv.sent.recent(now, 64) {
            if !e.video() {
                continue;
            }
            let Some(proj) = recv
                .projection(e.source)
                .filter(|pr| pr.source_gen as u16 == e.source_gen)
            else {
                continue;
            };
            let Some(rtx_ssrc) = proj.egress_rtx_ssrc else {
                continue;
            };
            let Some(src) = self.src(e.source) else {
                continue;
            };
            let Some(orig) = src
                .store
                .as_ref()
                .and_then(|st| st.get(e.stored))
                .and_then(|b| RtpPacket::parse(b).ok())
            else {
                continue;
            };
            let Some(rtx_pt) = params.rtx_pt_for(orig.payload_type()) else {
                continue;
            };
            let Some(sender_ext) = self.ep(src.owner).map(|o| o.video.ext) else {
                continue;
            };
            let ext = ext_plan(&sender_ext);
            if ext.tcc_out == 0 {
                break;
            }
            let rw = Rewrite {
                ssrc: e.ssrc,
                seq: e.seq,
                timestamp: e.timestamp,
                payload_type: orig.payload_type(),
                ext: &ext,
                tcc_seq: recv.tcc_seq,
            };
            rtp::write_forwarded(&orig, &rw, &mut ctx.scratch2);
            if let Some((pic, tl0)) = e.vp8()
                && let Ok(h) = vp8::parse(orig.payload())
            {
                let off = ctx.scratch2.len() - (orig.as_bytes().len() - orig.header_len());
                vp8::rewrite(&mut ctx.scratch2[off..], &h, pic, tl0);
            }
            let Ok(sent_pkt) = RtpPacket::parse(&ctx.scratch2) else {
                continue;
            };
            rtp::write_rtx(&sent_pkt, rtx_ssrc, rtx_pt, proj.rtx_seq, &mut ctx.scratch);
            from_source = Some(e.source);
            break;
        }
        if from_source.is_none() {
            // Padding on the RTX stream of a forwarded source.
            for &si in &recv.forwarded {
                let Some(proj) = recv.projection(si) else {
                    continue;
                };
                let (Some(rtx_ssrc), Some((_, rtx_pt))) =
                    (proj.egress_rtx_ssrc, params.rtx.first())
                else {
                    continue;
                };
                let ext = ext_plan(&super::model::HdrExtIds::default());
                if ext.tcc_out == 0 {
                    return false;
                }
                let rw = Rewrite {
                    ssrc: rtx_ssrc,
                    seq: proj.rtx_seq,
                    timestamp: 0,
                    payload_type: *rtx_pt,
                    ext: &ext,
                    tcc_seq: recv.tcc_seq,
                };
                rtp::write_padding(&rw, p.bytes.clamp(1, 255) as u8, &mut ctx.scratch);
                from_source = Some(si);
                break;
            }
        }
        match from_source {
            Some(si) => {
                self.finish_probe(now, r, si, p, ctx, sink);
                true
            }
            None => false,
        }
    }

    /// Advances the counters for the probe packet in `ctx.scratch` and sends it.
    fn finish_probe(
        &mut self,
        now: Instant,
        r: u32,
        source: u32,
        p: ProbeSend,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(Some(ep)) = self.endpoints.get_mut(r as usize) else {
            return;
        };
        let t = next_tcc(&mut ep.tcc_seq);
        if let Some(pr) = ep.projection_mut(source) {
            pr.rtx_seq = pr.rtx_seq.wrapping_add(1);
        }
        if let Some(b) = ep.bwe.as_mut() {
            b.on_packet_sent(now, t, ctx.scratch.len(), Some(p.cluster));
        }
        ctx.counters.inc(Stat::ProbePackets);
        ctx.counters.add(Stat::ProbeBytes, ctx.scratch.len() as u64);
        ctx.counters.inc(Stat::RtpSent);
        ctx.counters
            .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
        sink.emit(Output::Rtp {
            to: ep.handle,
            packet: &ctx.scratch,
        });
    }

    fn on_dominant_speaker(&mut self, now: Instant, d: u32, ctx: &mut Ctx, sink: &mut impl Sink) {
        self.recent_speakers.retain(|e| *e != d);
        self.recent_speakers.insert(0, d);
        self.recent_speakers.truncate(RECENT_SPEAKERS);
        ctx.counters.inc(Stat::DominantSpeakerChanges);
        if let Some(msg) = self.dominant_speaker_message() {
            for r in self.endpoints.iter().flatten() {
                if r.transport.data_channel_open {
                    ctx.counters.inc(Stat::ChannelMessagesSent);
                    sink.emit(Output::Text {
                        to: r.handle,
                        text: &msg,
                    });
                }
            }
        }
        if let Some(dom) = self.ep(d) {
            let previous = self
                .recent_speakers
                .iter()
                .skip(1)
                .filter_map(|e| self.ep(*e).map(|x| x.id.clone()))
                .collect();
            sink.emit(Output::Event(Event::DominantSpeakerChanged {
                conference: self.handle,
                endpoint_id: dom.id.clone(),
                previous,
            }));
        }
        // Speaker order drives last-N.
        self.reallocate(now, ctx, sink);
        // Receivers are likely to switch to the new speaker's video: ask for a keyframe now.
        if self.endpoint_count() > 2 {
            let video: Vec<u32> = self
                .ep(d)
                .map(|e| e.sources.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|si| self.src(*si).is_some_and(|s| s.kind == MediaKind::Video))
                .collect();
            for si in video {
                self.request_keyframe(now, si, 0, ctx, sink);
            }
        }
    }

    /// Connectivity status (8 s without media → inactive, announced to the others) and expiry
    /// (no activity for the expire timeout).
    fn housekeeping(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        for ep in self.endpoints.iter_mut().flatten() {
            if let Some(b) = ep.bwe.as_mut() {
                b.handle_timeout(now);
            }
        }
        let cfg = &ctx.cfg;
        let mut changes: Vec<(u32, bool)> = Vec::new();
        let mut expired: Vec<EndpointHandle> = Vec::new();
        for ep in self.endpoints.iter_mut().flatten() {
            if now.saturating_duration_since(ep.last_activity) >= cfg.endpoint_expire_timeout {
                expired.push(ep.handle);
                continue;
            }
            let (since, limit) = match ep.last_media {
                Some(t) => (t, cfg.inactivity_limit),
                None => (ep.created_at, cfg.first_transfer_timeout),
            };
            let active = now.saturating_duration_since(since) < limit;
            if active != ep.active {
                ep.active = active;
                changes.push((ep.handle.idx, active));
            }
        }
        for (idx, active) in changes {
            let Some(ep) = self.ep(idx) else { continue };
            let handle = ep.handle;
            let id = ep.id.clone();
            ctx.text = channel::connectivity(&id, active);
            self.broadcast_text(idx, ctx, sink, |_| true);
            sink.emit(Output::Event(Event::ConnectivityChanged {
                endpoint: handle,
                endpoint_id: id,
                active,
            }));
        }
        let any = !expired.is_empty();
        for h in expired {
            self.remove_endpoint_idx(h.idx, ExpireReason::Inactivity, ctx, sink);
        }
        if any {
            self.reallocate(now, ctx, sink);
        }
        // A conference created but never joined expires like an idle endpoint.
        if !self.had_endpoints
            && now.saturating_duration_since(self.created_at) >= ctx.cfg.endpoint_expire_timeout
        {
            self.had_endpoints = true;
        }
    }
}

/// Builds the per-(sender, receiver) header extension plan: keep audio level (audio) and video
/// orientation (video) under the receiver's ids, and stamp the bridge's transport-cc if the receiver
/// negotiated it.
#[inline]
fn ext_map(sender: &super::model::HdrExtIds, r: &MediaParams, kind: MediaKind) -> ExtMap {
    let keep0 = match kind {
        MediaKind::Audio => (sender.audio_level, r.ext.audio_level),
        MediaKind::Video => (sender.video_orientation, r.ext.video_orientation),
    };
    ExtMap {
        keep: [keep0, (0, 0)],
        tcc_out: r.ext.transport_cc,
        allow_two_byte: r.allow_mixed,
    }
}

/// Lowers a deadline to `t` (if any).
fn wake(at: &mut Option<Instant>, t: Option<Instant>) {
    if let Some(t) = t
        && at.is_none_or(|a| t < a)
    {
        *at = Some(t);
    }
}

/// Combines two maxHeight values: unlimited (-1) wins, else the larger.
fn max_height(a: i32, b: i32) -> i32 {
    if a < 0 || b < 0 { -1 } else { a.max(b) }
}

/// Last-N after the bridge's limits (`jvb-last-n` and the video SSRC limit); < 0 = unlimited.
fn effective_last_n(client: i32, cfg: &SfuConfig) -> i32 {
    [client, cfg.last_n_limit, cfg.max_video_ssrcs]
        .into_iter()
        .filter(|n| *n >= 0)
        .min()
        .unwrap_or(-1)
}

/// Next deadline of a periodic timer, skipping missed periods.
fn advance(deadline: Instant, now: Instant, period: Duration) -> Instant {
    let next = deadline + period;
    if next <= now { now + period } else { next }
}
