//! Endpoints and sources come, change and go (COLIBRI2), and their transports connect or fail.

use std::time::Instant;

use crate::sfu::api::{
    EndpointHandle, EndpointParams, EndpointUpdate, Event, ExpireReason, Output, SfuError, Sink,
    TransportEvent,
};
use crate::sfu::bwe::SendSideBwe;
use crate::sfu::context::Ctx;
use crate::sfu::counters::{DropReason, Stat};
use crate::sfu::downlink::Downlink;
use crate::sfu::endpoint::{Endpoint, TransportState};
use crate::sfu::model::{MediaKind, MediaParams, MediaSourceDesc, SeqWindow};
use crate::sfu::rate::RelayBudget;
use crate::sfu::recv_stats::ReceiveStats;
use crate::sfu::rtx_cache::SentLog;
use crate::sfu::settings::ReceiverSettings;
use crate::sfu::source::MediaSource;
use crate::sfu::ssrc_slots::SsrcRewriting;
use crate::sfu::uplink::{SsrcEntry, SsrcRole, Uplink};

use super::{Conference, SsrcClaim};

impl Conference {
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
        let video = MediaParams::from_rtp(&p.video);
        let mut downlink = Downlink::new(
            handle,
            ReceiverSettings::new(p.initial_last_n.unwrap_or(-1), cfg.initial_max_height),
            SentLog::new(cfg.rtx_log_packets, cfg.rtx_max_age, now),
            cfg.initial_bwe_bps,
        );
        if p.ssrc_rewriting {
            let cap = |n: i32| usize::try_from(n).unwrap_or(usize::MAX);
            downlink.rewriting = Some(Box::new(SsrcRewriting::new(
                cap(cfg.max_audio_ssrcs),
                cap(cfg.max_video_ssrcs),
                p.rtp_mid_demux,
            )));
        }
        if cfg.bandwidth_estimation && video.ext.transport_cc != 0 {
            let b = SendSideBwe::new(now, cfg.bwe);
            downlink.bwe_bps = Some(b.poll_estimate());
            downlink.bwe = Some(b);
        }
        self.endpoints[idx] = Some(Endpoint {
            handle,
            id: p.id,
            stats_id: p.stats_id,
            visitor: p.visitor,
            audio: MediaParams::from_rtp(&p.audio),
            video,
            force_mute_audio: p.force_mute.audio,
            force_mute_video: p.force_mute.video,
            transport: TransportState::default(),
            created_at: now,
            last_activity: now,
            last_media: None,
            active: true,
            uplink: Uplink::new(handle, self.feedback.video_ssrc),
            downlink,
            relay_budget: RelayBudget::new(now),
        });
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
            ep.downlink.settings.last_n = n;
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
        let existing: Vec<u32> = ep.uplink.sources.clone();
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
            ep.uplink.sources = keep;
        }
    }

    /// Registers a source: a slot in the source table and its SSRCs in the owner's uplink table.
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
        let Some(Some(ep)) = self.endpoints.get_mut(owner as usize) else {
            return None;
        };
        let claims = &mut self.ssrc_claims;
        let mut claim = |ssrc: u32, enc: usize, role: SsrcRole, media_ssrc: u32| {
            if claims.get(&ssrc).is_some_and(|c| c.owner != owner) {
                ctx.counters.drop(DropReason::SsrcConflict);
                return;
            }
            claims.insert(
                ssrc,
                SsrcClaim {
                    owner,
                    source: idx as u32,
                },
            );
            ep.uplink.ssrcs.insert(
                ssrc,
                SsrcEntry {
                    source: idx as u32,
                    encoding: enc as u8,
                    role,
                    kind: d.kind,
                    media_ssrc,
                    stats: ReceiveStats::new(now, default_clock),
                    seen: SeqWindow::default(),
                    nack: None,
                },
            );
        };
        for (i, e) in encodings.iter().enumerate() {
            claim(e.ssrc, i, SsrcRole::Media, e.ssrc);
            if let Some(r) = e.rtx {
                claim(r, i, SsrcRole::Rtx, e.ssrc);
            }
            if let Some(f) = e.fec {
                claim(f, i, SsrcRole::Fec, e.ssrc);
            }
        }
        let video_type = d.video_type();
        self.sources[idx] = Some(MediaSource::new(
            self.src_gens[idx],
            owner,
            d.name,
            d.kind,
            video_type,
            encodings,
            ctx.cfg.rtx_store_packets,
        ));
        Some(idx as u32)
    }

    fn remove_source(&mut self, idx: u32) {
        let Some(m) = self.sources.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        if let Some(g) = self.src_gens.get_mut(idx as usize) {
            *g = g.wrapping_add(1);
        }
        let mut owner = self
            .endpoints
            .get_mut(m.owner as usize)
            .and_then(Option::as_mut);
        for e in &m.encodings {
            for s in [Some(e.ssrc), e.rtx, e.fec].into_iter().flatten() {
                if self.ssrc_claims.get(&s).is_some_and(|c| c.owner == m.owner) {
                    self.ssrc_claims.remove(&s);
                    if let Some(o) = owner.as_deref_mut() {
                        o.uplink.ssrcs.remove(&s);
                    }
                }
            }
        }
        for ep in self.endpoints.iter_mut().flatten() {
            ep.downlink.drop_projection(idx);
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

    pub(super) fn remove_endpoint_idx(
        &mut self,
        idx: u32,
        reason: ExpireReason,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(ep) = self.endpoints.get(idx as usize).and_then(Option::as_ref) else {
            return;
        };
        // Its sources first (their SSRCs are in its uplink table), then the endpoint.
        for s in ep.uplink.sources.clone() {
            self.remove_source(s);
        }
        let Some(ep) = self.endpoints.get_mut(idx as usize).and_then(Option::take) else {
            return;
        };
        if let Some(g) = self.ep_gens.get_mut(idx as usize) {
            *g = g.wrapping_add(1);
        }
        if !ep.transport.connected {
            self.never_connected += 1;
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
                        .downlink
                        .projections
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| Some((i as u32, p.as_ref()?.target.encoding_id()?)))
                        .collect();
                    self.any_connected = true;
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
                self.on_channel_open(now, h.idx, ctx, sink);
            }
            TransportEvent::DataChannelClosed => ep.transport.data_channel_open = false,
            TransportEvent::Failed => {
                self.remove_endpoint(now, h, ExpireReason::TransportFailed, ctx, sink);
            }
        }
    }
}
