//! RTCP from an endpoint, and keyframe requests toward senders. Sender reports (from a sender) are
//! projected onto each receiver's stream; PLI/FIR and NACKs (from a receiver) go to the source's
//! owner (throttled) and to the receiver's downlink; REMB and transport-cc feedback move the
//! receiver's estimate; the rest is terminated here.

use std::time::Instant;

use crate::sfu::api::{EndpointHandle, Output, Sink};
use crate::sfu::context::Ctx;
use crate::sfu::counters::{DropReason, Stat};
use crate::sfu::rtcp::{self, Compound, Packet};
use crate::sfu::tcc_feedback::TransportFeedback;
use crate::sfu::uplink::SsrcRole;

use super::Conference;

impl Conference {
    /// A decrypted RTCP compound packet from `from`.
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
                Packet::SenderReport(sr) => {
                    self.on_report_blocks(now, from, sr.report_blocks(), ctx);
                    self.on_sender_report(now, from, &sr, ctx, sink);
                }
                // About the streams the bridge sends this endpoint: RTT and loss toward it.
                Packet::ReceiverReport(rr) => {
                    ctx.counters.inc(Stat::RtcpTerminated);
                    self.on_report_blocks(now, from, rr.report_blocks(), ctx);
                }
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
                    let conf_ms = self.ms(now);
                    let Some((r, peers, sources)) = self.split(from) else {
                        continue;
                    };
                    r.downlink.retransmit(
                        now,
                        conf_ms,
                        (&r.audio, &r.video),
                        &nack,
                        sources,
                        |owner, kind| peers.ext(owner, kind),
                        ctx,
                        sink,
                    );
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
                    let Some(b) = ep.downlink.bwe.as_mut() else {
                        continue;
                    };
                    b.on_transport_feedback(now, &fb);
                    let est = b.poll_estimate();
                    ep.downlink.rearm(ctx);
                    self.on_bandwidth_estimate(now, from, est, ctx, sink);
                }
                // Terminated: SDES, BYE, XR, APP and anything else.
                Packet::Sdes | Packet::Bye(_) | Packet::Xr | Packet::Other { .. } => {
                    ctx.counters.inc(Stat::RtcpTerminated)
                }
            }
        }
    }

    /// A receiver's report blocks about what the bridge sends it: the RTT they measure (echoed
    /// SRs) and the loss they report (`Stat::ReportedLossQ8` over `Stat::ReportBlocksReceived`).
    fn on_report_blocks(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        blocks: impl Iterator<Item = rtcp::ReportBlock>,
        ctx: &mut Ctx,
    ) {
        let Some(ep) = self.endpoint_mut(from) else {
            return;
        };
        for b in blocks {
            ctx.counters.inc(Stat::ReportBlocksReceived);
            ctx.counters
                .add(Stat::ReportedLossQ8, u64::from(b.fraction_lost));
            ep.downlink.link.on_report_block(now, &b);
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
        let Some(Some(sender)) = self.endpoints.get_mut(from.idx as usize) else {
            return;
        };
        let Some(entry) = sender.uplink.ssrcs.get_mut(&sr.ssrc()) else {
            let reason = if self.ssrc_claims.contains_key(&sr.ssrc()) {
                DropReason::RtpSsrcNotOwned
            } else {
                DropReason::RtcpUnknownSsrc
            };
            ctx.counters.drop(reason);
            return;
        };
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
                forwarded |= r
                    .downlink
                    .forward_sender_report(now, source, src_gen, encoding, sr, ctx, sink);
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
        // An SSRC-rewriting receiver names its slot: the source that owns it now.
        let claim = match self.slot_claim(from, media_ssrc) {
            Some(c) => c,
            None => self.ssrc_claims.get(&media_ssrc).copied(),
        };
        let Some(claim) = claim else {
            ctx.counters.drop(DropReason::RtcpUnknownSsrc);
            return;
        };
        if claim.owner == from.idx {
            ctx.counters.inc(Stat::RtcpTerminated);
            return;
        }
        let source = claim.source;
        let Some(src_ok) = self.src(source).map(|s| s.keyframe_limit.would_accept(now)) else {
            return;
        };
        let Some(Some(r)) = self.endpoints.get_mut(from.idx as usize) else {
            return;
        };
        let Some(proj) = r.downlink.projection_mut(source) else {
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
    pub(super) fn request_keyframe(
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
        if ep.downlink.on_estimate(bps, threshold) {
            self.run_allocation(now, Some(h.idx), ctx, sink);
        }
    }
}
