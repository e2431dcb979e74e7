//! The conference's timers, dispatched from the core's one timer table: periodic jobs
//! (receiver reports, dominant speaker, housekeeping, allocation, layer and probe checks) and the
//! uplink and downlink timers of its endpoints.

use std::time::Instant;

use crate::sfu::api::{EndpointHandle, Event, ExpireReason, Output, Sink};
use crate::sfu::channel;
use crate::sfu::context::{ConferenceTimer, Ctx, TimerKey};
use crate::sfu::counters::Stat;
use crate::sfu::model::MediaKind;
use crate::sfu::rtcp;

use super::{Conference, LAYER_CHECK_INTERVAL, PROBE_CHECK_INTERVAL, advance};

impl Conference {
    /// Timer `key` fired with deadline `at` (ignored if its owner re-armed since).
    pub fn on_timer(
        &mut self,
        now: Instant,
        key: TimerKey,
        at: Instant,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        match key {
            TimerKey::Conference(_, t) => {
                if self.timers[t.index()].fire(at) {
                    self.on_periodic(now, t, at, ctx, sink);
                }
            }
            TimerKey::Uplink(h) => {
                let Some(ep) = self.endpoint_mut(h) else {
                    return;
                };
                if ep.uplink.timer.fire(at) {
                    let connected = ep.transport.connected;
                    ep.uplink.on_timer(now, connected, ctx, sink);
                }
            }
            TimerKey::Downlink(h) => {
                let Some((r, peers, sources)) = self.split(h) else {
                    return;
                };
                if r.downlink.timer.fire(at) {
                    let connected = r.transport.connected;
                    r.downlink.on_timer(
                        now,
                        connected,
                        &r.video,
                        sources,
                        |owner, kind| peers.ext(owner, kind),
                        ctx,
                        sink,
                    );
                }
            }
        }
    }

    /// Periodic job `t`, due at `at`: runs it and arms the next period.
    fn on_periodic(
        &mut self,
        now: Instant,
        t: ConferenceTimer,
        at: Instant,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let next = match t {
            ConferenceTimer::ReceiverReports => {
                self.send_receiver_reports(now, ctx, sink);
                Some(advance(at, now, ctx.cfg.rr_interval))
            }
            ConferenceTimer::Speaker => {
                let was_silent = self.speaker.in_silence();
                if let Some(d) = self.speaker.evaluate(now) {
                    self.on_dominant_speaker(now, d, ctx, sink);
                } else if !was_silent && self.speaker.in_silence() {
                    self.broadcast_dominant_speaker(ctx, sink);
                }
                Some(advance(at, now, self.speaker.interval()))
            }
            ConferenceTimer::Housekeeping => {
                self.housekeeping(now, ctx, sink);
                Some(advance(at, now, ctx.cfg.housekeeping_interval))
            }
            ConferenceTimer::LayerCheck => {
                self.check_layers(now, ctx);
                Some(advance(at, now, LAYER_CHECK_INTERVAL))
            }
            ConferenceTimer::Allocation => {
                // Re-arms itself.
                self.reallocate(now, ctx, sink);
                None
            }
            ConferenceTimer::SenderConstraints => {
                // Re-arms itself.
                self.flush_sender_constraints(now, ctx, sink);
                None
            }
            ConferenceTimer::ProbeCheck => {
                for ep in self.endpoints.iter_mut().flatten() {
                    let connected = ep.transport.connected;
                    ep.downlink.maybe_probe(now, connected, ctx);
                }
                Some(advance(at, now, PROBE_CHECK_INTERVAL))
            }
        };
        if next.is_some() {
            self.arm(t, next, ctx);
        }
    }

    /// Receiver reports toward every connected sender: one compound per sender with an RR from
    /// `jvb-a0` for its audio SSRCs and one from `jvb-v0` for its video SSRCs (≤ 31 blocks each).
    fn send_receiver_reports(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        let mut blocks = std::mem::take(&mut self.rr_blocks);
        let mut kind_blocks: Vec<rtcp::ReportBlock> = Vec::new();
        for ep in self.endpoints.iter_mut().flatten() {
            // Computed for every sender (the statistics advance), sent to connected ones.
            let (expected, lost) = ep.uplink.report_blocks(now, &mut blocks);
            ctx.counters.add(Stat::PacketsExpected, expected);
            ctx.counters.add(Stat::PacketsLost, lost);
            if blocks.is_empty() || !ep.transport.connected {
                continue;
            }
            ctx.scratch.clear();
            for kind in [MediaKind::Audio, MediaKind::Video] {
                kind_blocks.clear();
                kind_blocks.extend(blocks.iter().filter(|(k, _)| *k == kind).map(|(_, b)| *b));
                let sender = match kind {
                    MediaKind::Audio => self.feedback.audio_ssrc,
                    MediaKind::Video => self.feedback.video_ssrc,
                };
                for chunk in kind_blocks.chunks(31) {
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
        self.rr_blocks = blocks;
    }

    /// Connectivity status (8 s without media → inactive, announced to the others) and expiry
    /// (no activity for the expire timeout).
    fn housekeeping(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        for ep in self.endpoints.iter_mut().flatten() {
            if let Some(b) = ep.downlink.bwe.as_mut() {
                b.handle_timeout(now);
                ep.downlink.rearm(ctx);
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
