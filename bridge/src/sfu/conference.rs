//! One conference: endpoints, sources, the SSRC table, and everything that happens per packet, per
//! RTCP compound, per channel message and per timer tick.

use std::time::{Duration, Instant};

use signaling::sources::VideoType;

use super::channel::{self, ChannelError, ClientMessage};
use super::counters::{DropReason, Stat};
use super::endpoint::{Endpoint, ReceiverSettings, TransportState, next_tcc};
use super::keyframe::RateLimit;
use super::model::{
    MediaKind, MediaParams, MediaSource, MediaSourceDesc, SsrcEntry, SsrcMap, SsrcRole,
};
use super::projection::{Projection, Target};
use super::recv_stats::ReceiveStats;
use super::rtcp::{self, Compound, Packet, ReportBlock};
use super::rtp::{self, ExtMap, Rewrite, RtpPacket};
use super::rtx_cache::{NEVER, PacketStore, SentEntry, SentLog};
use super::speaker::SpeakerDetector;
use super::{
    ConferenceHandle, Ctx, EndpointHandle, EndpointParams, EndpointUpdate, Event, ExpireReason,
    FeedbackSources, Output, SfuConfig, SfuError, Sink, TransportEvent,
};

/// Most recent dominant speakers kept (JVB keeps 10).
const RECENT_SPEAKERS: usize = 10;

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
        self.next_rr
            .min(self.next_speaker)
            .min(self.next_housekeeping)
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
        };
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
            encodings,
            fir_seq: 0,
            keyframe_limit: RateLimit::per_source(),
            store: (d.kind == MediaKind::Video)
                .then(|| PacketStore::new(ctx.cfg.rtx_store_packets)),
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
        let Some(Some(sender)) = self.endpoints.get(from.idx as usize) else {
            return;
        };
        let kind = entry.kind;
        let sparams = sender.params(kind);
        if let Some(c) = sparams.clock_rate(pkt.payload_type()) {
            entry.stats.set_clock_rate(c);
        }
        entry
            .stats
            .on_packet(now, pkt.sequence_number(), pkt.timestamp());
        if entry.role != SsrcRole::Media {
            ctx.counters.drop(DropReason::RtpSenderRepair);
            return;
        }
        let (source, encoding) = (entry.source, entry.encoding);
        let sender_ext = sparams.ext;
        let seq = pkt.sequence_number();
        // Dropped for everyone: receivers still see contiguous sequence numbers.
        let drop_reason = if pkt.is_padding_only() {
            Some(DropReason::RtpPaddingOnly)
        } else if sender.force_muted(kind) {
            Some(DropReason::RtpForceMuted)
        } else {
            None
        };
        if let Some(reason) = drop_reason {
            ctx.counters.drop(reason);
            for r in self.endpoints.iter_mut().flatten() {
                if let Some(p) = r.projection_mut(source)
                    && p.last_encoding == Some(encoding)
                {
                    p.seq.skip(seq);
                }
            }
            return;
        }
        if kind == MediaKind::Audio
            && sender_ext.audio_level != 0
            && let Some((_, level)) = pkt.audio_level(sender_ext.audio_level)
        {
            self.speaker.on_level(now, from.idx, level);
        }
        let Some(Some(src)) = self.sources.get_mut(source as usize) else {
            return;
        };
        let src_gen = src.generation;
        let pt = pkt.payload_type();
        // Stored once for all receivers, on the first one that may NACK it.
        let mut stored = None;
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
                ..
            } = r;
            let Some(Some(proj)) = projections.get_mut(source as usize) else {
                continue;
            };
            if proj.source_gen != src_gen {
                continue;
            }
            if !proj.accepts(encoding) {
                // Keep the receiver's view contiguous if this is the stream it had been getting.
                if proj.last_encoding == Some(encoding) {
                    proj.seq.skip(seq);
                }
                continue;
            }
            if !transport.connected {
                continue;
            }
            let rparams = match kind {
                MediaKind::Audio => &*audio,
                MediaKind::Video => &*video,
            };
            if !rparams.has_pt(pt) {
                ctx.counters.drop(DropReason::RtpPayloadTypeNotNegotiated);
                proj.seq.skip(seq);
                continue;
            }
            let Some(out_seq) = proj.seq.forward(seq) else {
                ctx.counters.drop(DropReason::RtpLateAfterSkip);
                continue;
            };
            let ext = ext_map(&sender_ext, rparams, kind);
            let tcc = if ext.tcc_out != 0 {
                next_tcc(tcc_seq)
            } else {
                0
            };
            let rw = Rewrite {
                ssrc: proj.egress_ssrc,
                seq: out_seq,
                timestamp: pkt.timestamp().wrapping_add(proj.ts_delta),
                payload_type: pt,
                ext: &ext,
                tcc_seq: tcc,
            };
            proj.packets_sent += 1;
            proj.last_encoding = Some(encoding);
            proj.last_sent_at = Some(now);
            if rparams.has_nack(pt)
                && let Some(store) = src.store.as_mut()
            {
                let at = *stored.get_or_insert_with(|| store.put(buf));
                let sent_ms = sent.ms(now);
                sent.push(SentEntry {
                    ssrc: rw.ssrc,
                    seq: out_seq,
                    video: kind == MediaKind::Video,
                    timestamp: rw.timestamp,
                    source,
                    source_gen: src_gen,
                    stored: at,
                    sent_ms,
                    resent_ms: NEVER,
                });
            }
            rtp::write_forwarded(&pkt, &rw, &mut ctx.scratch);
            ctx.counters.inc(Stat::RtpSent);
            ctx.counters
                .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
            sink.emit(Output::Rtp {
                to: *handle,
                packet: &ctx.scratch,
            });
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
                // Terminated: RR (about our streams), SDES, BYE, REMB, transport-cc (issue 5
                // feeds it to the bandwidth estimator), XR, APP and anything else.
                Packet::ReceiverReport(_)
                | Packet::Sdes
                | Packet::Bye(_)
                | Packet::Remb(_)
                | Packet::TransportCc(_)
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
                if p.source_gen != src_gen || !p.accepts(encoding) || p.packets_sent == 0 {
                    continue;
                }
                ctx.scratch.clear();
                rtcp::write_sr(
                    &mut ctx.scratch,
                    &rtcp::SenderInfo {
                        ssrc: p.egress_ssrc,
                        ntp: sr.ntp(),
                        rtp_timestamp: sr.rtp_timestamp().wrapping_add(p.ts_delta),
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
        let encoding = match proj.target {
            Target::Encoding(e) => e,
            Target::Suspended => 0,
        };
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
        for seq in nack.lost() {
            // Look up and rebuild with shared borrows only…
            let Some(r) = self.ep(from.idx) else { return };
            let Some((i, e)) = r.sent.find(now, nack.media_ssrc, seq) else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let now_ms = r.sent.ms(now);
            if e.resent_ms != NEVER && now_ms.wrapping_sub(e.resent_ms) < min_gap {
                ctx.counters.drop(DropReason::NackRecentlyResent);
                continue;
            }
            let Some(src) = self.src(e.source).filter(|s| s.generation == e.source_gen) else {
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
            let kind = if e.video {
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
                .filter(|p| p.source_gen == e.source_gen)
                .and_then(|p| {
                    let ssrc = p.egress_rtx_ssrc?;
                    let pt = params.rtx_pt_for(orig.payload_type())?;
                    Some((ssrc, pt, p.rtx_seq))
                });
            match rtx {
                Some((rtx_ssrc, rtx_pt, rtx_seq)) => {
                    rtp::write_forwarded(&orig, &rw, &mut ctx.scratch2);
                    let Ok(sent_pkt) = RtpPacket::parse(&ctx.scratch2) else {
                        continue;
                    };
                    rtp::write_rtx(&sent_pkt, rtx_ssrc, rtx_pt, rtx_seq, &mut ctx.scratch);
                    ctx.counters.inc(Stat::RetransmissionsRtx);
                }
                None => {
                    rtp::write_forwarded(&orig, &rw, &mut ctx.scratch);
                    ctx.counters.inc(Stat::RetransmissionsPlain);
                }
            }
            // …then advance the counters.
            let Some(Some(r)) = self.endpoints.get_mut(from.idx as usize) else {
                return;
            };
            if ext.tcc_out != 0 {
                next_tcc(&mut r.tcc_seq);
            }
            if rtx.is_some()
                && let Some(p) = r.projection_mut(e.source)
            {
                p.rtx_seq = p.rtx_seq.wrapping_add(1);
            }
            if let Some(entry) = r.sent.get_mut(i) {
                entry.resent_ms = now_ms;
            }
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

    /// Endpoints in speaker order: recent dominant speakers first, then the others by join order.
    fn speaker_order(&self) -> Vec<u32> {
        let mut v = self.recent_speakers.clone();
        v.extend(
            self.join_order
                .iter()
                .filter(|e| !self.recent_speakers.contains(e)),
        );
        v
    }

    /// The video sources receiver `r` should get: candidates by priority (on-stage, selected,
    /// others) then speaker order; maxHeight 0 excludes a source; last-N bounds the count.
    fn compute_forwarded(&self, r: u32, order: &[u32], cfg: &SfuConfig) -> Vec<u32> {
        let Some(recv) = self.ep(r) else {
            return Vec::new();
        };
        let s = &recv.settings;
        let mut cands: Vec<(u8, usize, u32)> = Vec::new();
        for (pos, &e) in order.iter().enumerate() {
            if e == r {
                continue;
            }
            let Some(owner) = self.ep(e) else { continue };
            for &si in &owner.sources {
                let Some(src) = self.src(si) else { continue };
                if src.kind != MediaKind::Video || src.video_type == VideoType::None {
                    continue;
                }
                cands.push((s.priority(&src.name, &owner.id), pos, si));
            }
        }
        cands.sort_by_key(|(p, pos, _)| (*p, *pos));
        let last_n = match (s.last_n, cfg.last_n_limit) {
            (a, b) if a < 0 => b,
            (a, b) if b < 0 => a,
            (a, b) => a.min(b),
        };
        let mut out = Vec::new();
        for (_, _, si) in cands {
            let Some(src) = self.src(si) else { continue };
            let Some(owner) = self.ep(src.owner) else {
                continue;
            };
            if s.max_height(&src.name, &owner.id) == 0 {
                continue;
            }
            if last_n >= 0 && out.len() >= last_n as usize {
                break;
            }
            out.push(si);
        }
        out
    }

    /// Re-decides every (receiver, source) projection target and announces changed forwarded sets.
    /// Runs on membership, source, constraint and dominant-speaker changes — never per packet.
    fn reallocate(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        let order = self.speaker_order();
        let receivers: Vec<u32> = self
            .endpoints
            .iter()
            .flatten()
            .map(|e| e.handle.idx)
            .collect();
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
        let mut keyframes: Vec<(u32, u8)> = Vec::new();
        for r in receivers {
            let fwd = self.compute_forwarded(r, &order, &ctx.cfg);
            let Some(Some(recv)) = self.endpoints.get_mut(r as usize) else {
                continue;
            };
            for &(si, generation, ssrc, rtx, owner, kind) in &all {
                if owner == r {
                    continue;
                }
                let want = match kind {
                    MediaKind::Audio => Target::Encoding(0),
                    MediaKind::Video if fwd.contains(&si) => Target::Encoding(0),
                    MediaKind::Video => Target::Suspended,
                };
                let i = si as usize;
                if recv.projections.len() <= i {
                    recv.projections.resize_with(i + 1, || None);
                }
                let slot = &mut recv.projections[i];
                if slot.as_ref().is_none_or(|p| p.source_gen != generation) {
                    *slot = Some(Projection::new(
                        generation,
                        ssrc,
                        rtx,
                        ctx.rng.next_u32() as u16,
                    ));
                }
                if let Some(p) = slot {
                    if p.target != want
                        && kind == MediaKind::Video
                        && let Target::Encoding(e) = want
                        && recv.transport.connected
                    {
                        keyframes.push((si, e));
                    }
                    p.target = want;
                }
            }
            let changed = {
                let mut a = recv.forwarded.clone();
                let mut b = fwd.clone();
                a.sort_unstable();
                b.sort_unstable();
                a != b
            };
            recv.forwarded = fwd;
            if changed {
                self.send_forwarded(r, ctx, sink);
            }
        }
        keyframes.sort_unstable();
        keyframes.dedup();
        for (si, e) in keyframes {
            self.request_keyframe(now, si, e, ctx, sink);
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
                if ep.settings.apply(u) {
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
                        .filter_map(|(i, p)| match p.as_ref()?.target {
                            Target::Encoding(e) => Some((i as u32, e)),
                            Target::Suspended => None,
                        })
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
    }

    /// Connectivity status (8 s without media → inactive, announced to the others) and expiry
    /// (no activity for the expire timeout).
    fn housekeeping(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
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

/// Next deadline of a periodic timer, skipping missed periods.
fn advance(deadline: Instant, now: Instant, period: Duration) -> Instant {
    let next = deadline + period;
    if next <= now { now + period } else { next }
}
