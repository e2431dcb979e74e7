//! The packet path through the router, one named stage per hop:
//!
//! ```text
//! Conference::on_rtp ─▶ Uplink::arrive        SSRC lookup, transport-cc arrival, receive stats
//!                    ─▶ (RTX: Uplink::unwrap_rtx)
//! Conference::on_media ─▶ Uplink::accept      NACK gaps, duplicate drop
//!                      ─▶ MediaSource::measure / on_audio_level, speaker detector
//! Conference::fan_out ─▶ Downlink::forward    per receiver: project, rewrite, log, send
//!                     ─▶ keyframe request toward the sender if a receiver needs one
//! ```

use std::time::Instant;

use crate::sfu::api::{EndpointHandle, Sink};
use crate::sfu::codec::{self, Codec, FrameDesc, VideoInfo};
use crate::sfu::context::Ctx;
use crate::sfu::counters::{DropReason, Stat};
use crate::sfu::downlink::{FanOut, Forwarding};
use crate::sfu::model::MediaKind;
use crate::sfu::projection::VideoPacket;
use crate::sfu::rtp::RtpPacket;
use crate::sfu::uplink::{SsrcRole, Uplink};
use crate::sfu::vp9::Vp9Error;

use super::Conference;

impl Conference {
    /// A decrypted RTP packet from `from`.
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
        let Some(Some(sender)) = self.endpoints.get_mut(from.idx as usize) else {
            return;
        };
        let arrived = sender
            .uplink
            .arrive(now, &pkt, &sender.audio, &sender.video, ctx, sink);
        let Some(arrived) = arrived else {
            let reason = if self.ssrc_claims.contains_key(&pkt.ssrc()) {
                DropReason::RtpSsrcNotOwned
            } else {
                DropReason::RtpUnknownSsrc
            };
            ctx.counters.drop(reason);
            return;
        };
        match arrived.role {
            SsrcRole::Media => self.on_media(now, from, &pkt, ctx, sink),
            SsrcRole::Rtx if arrived.kind == MediaKind::Video => {
                // A retransmission the sender made: unwrapped into its media stream, where
                // duplicates are dropped.
                let mut unwrapped = std::mem::take(&mut ctx.ingress);
                let orig = match self.ep(from.idx) {
                    Some(s) => Uplink::unwrap_rtx(&pkt, &arrived, &s.video, &mut unwrapped, ctx),
                    None => None,
                };
                if let Some(orig) = orig {
                    self.on_media(now, from, &orig, ctx, sink);
                }
                ctx.ingress = unwrapped;
            }
            _ => ctx.counters.drop(DropReason::RtpSenderRepair),
        }
    }

    /// A media packet (original or unwrapped from RTX): accepted by the uplink, measured, then
    /// fanned out to every receiver.
    fn on_media(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        pkt: &RtpPacket<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let now_ms = self.ms(now);
        let Some(Some(sender)) = self.endpoints.get_mut(from.idx as usize) else {
            return;
        };
        // Missing packets are requested from the sender (video it negotiated NACK for).
        let nack = sender.video.nack != 0;
        let Some(acc) = sender.uplink.accept(now, pkt, nack, ctx, sink) else {
            return;
        };
        let (source, encoding, kind) = (acc.source, acc.encoding, acc.kind);
        let params = sender.params(kind);
        let sender_ext = params.ext;
        let codec = params.codec(pkt.payload_type());
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
        let mut layers_changed = false;
        match kind {
            MediaKind::Audio => {
                if sender_ext.audio_level != 0
                    && let Some((_, level)) = pkt.audio_level(sender_ext.audio_level)
                {
                    if !force_muted {
                        self.speaker.on_level(now, from.idx, level);
                    }
                    let silent = src.on_audio_level(level, ctx.cfg.forwarded_silence_packets);
                    if silent && ctx.cfg.discard_silence && drop_reason.is_none() {
                        drop_reason = Some(DropReason::RtpSilence);
                    }
                }
            }
            MediaKind::Video if drop_reason.is_none() => {
                info = codec::inspect_packet(codec, pkt);
                if codec == Codec::Av1
                    && sender_ext.dependency_descriptor != 0
                    && let Some(ext) = pkt.extension(sender_ext.dependency_descriptor)
                {
                    match src.parse_descriptor(encoding, ext) {
                        Ok(d) => info = codec::with_descriptor(info, d),
                        Err(_) => drop_reason = Some(DropReason::RtpMalformedDescriptor),
                    }
                } else if codec == Codec::Vp9 {
                    match src.parse_vp9(encoding, pkt.payload()) {
                        Ok(d) => info = codec::with_vp9(info, d),
                        // Without PictureID or layer indices: the generic context.
                        Err(Vp9Error::NotProjectable) => {}
                        Err(_) => drop_reason = Some(DropReason::RtpMalformedDescriptor),
                    }
                }
                if drop_reason.is_none() {
                    layers_changed = src.measure(now_ms, encoding, &info, pkt.as_bytes().len());
                }
            }
            MediaKind::Video => {}
        }
        let source_gen = src.generation;

        if layers_changed {
            self.reallocate_soon(now, ctx);
        }
        let seq = pkt.sequence_number();
        if let Some(reason) = drop_reason {
            ctx.counters.drop(reason);
            for r in self.endpoints.iter_mut().flatten() {
                if let Some(p) = r.downlink.projection_mut(source) {
                    p.skip(encoding, seq);
                }
            }
            return;
        }
        // The structures the AV1 context resolves frames against, read by every receiver.
        let stream = match (&info.frame, self.sources.get_mut(source as usize)) {
            (FrameDesc::Av1(_) | FrameDesc::Vp9(_), Some(Some(src))) => {
                src.lend_stream_state(encoding)
            }
            _ => None,
        };
        let m = Forwarding {
            pkt,
            kind,
            source,
            source_gen,
            sender_ext,
            video: VideoPacket {
                encoding,
                seq,
                timestamp: pkt.timestamp(),
                marker: pkt.marker(),
                info: &info,
                stream: stream.as_deref(),
            },
            tail_len: pkt.as_bytes().len() - pkt.header_len(),
        };
        if kind == MediaKind::Audio {
            // SSRC-rewriting receivers hear a new speaker on a slot announced first.
            self.map_audio(from.idx, source, source_gen, ctx, sink);
        }
        let keyframe_for = self.fan_out(now, from.idx, &m, ctx, sink);
        if let Some(s) = stream
            && let Some(Some(src)) = self.sources.get_mut(source as usize)
        {
            src.return_stream_state(encoding, s);
        }
        if let Some(e) = keyframe_for {
            self.request_keyframe(now, source, e, ctx, sink);
        }
    }

    /// The router's fan-out: one copy of `m` for every other connected endpoint, each decided by
    /// its downlink. Returns the highest encoding a receiver needs a keyframe of.
    pub(super) fn fan_out(
        &mut self,
        now: Instant,
        from: u32,
        m: &Forwarding<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> Option<u8> {
        // Stored once for all receivers, on the first one that may NACK it.
        let mut fan = FanOut {
            store: self
                .sources
                .get_mut(m.source as usize)
                .and_then(Option::as_mut)
                .and_then(|s| s.store.as_mut()),
            stored: None,
            keyframe_for: None,
            header: Default::default(),
        };
        for (ri, slot) in self.endpoints.iter_mut().enumerate() {
            if ri == from as usize {
                continue;
            }
            let Some(r) = slot else { continue };
            if !r.transport.connected {
                continue;
            }
            let params = match m.kind {
                MediaKind::Audio => &r.audio,
                MediaKind::Video => &r.video,
            };
            r.downlink.forward(now, params, m, &mut fan, ctx, sink);
        }
        fan.keyframe_for
    }
}
