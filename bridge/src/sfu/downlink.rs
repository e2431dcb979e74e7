//! The endpoint as a receiver (downlink): what it gets and how.
//!
//! State per receiver: its preferences ([`ReceiverSettings`]), the last allocation and the
//! forwarded set, one [`Projection`] per source it may receive (indexed by source slot), the
//! bridge's transport-wide sequence counter toward it, the log of what was sent (for NACKs), its
//! bandwidth estimate and estimator, probing state and the retransmission budget. Code: the last
//! stage of the packet path, [`Downlink::forward`] (decide, rewrite, log, send one copy), the
//! answers to its NACKs ([`Downlink::retransmit`]), sender reports projected onto its streams,
//! probing ([`Downlink::maybe_probe`], [`Downlink::on_timer`]).
//!
//! An SSRC-rewriting receiver ([`SsrcRewriting`], `ssrc_slots.rs`) has projections only for the
//! sources on its slots; [`Downlink::forward`] adds the slot's deltas to what the projection
//! computed and forwards only on slots it was told about.
//!
//! What a downlink needs from elsewhere is passed in: the receiver's negotiated parameters, the
//! conference's source table (for the retransmission store) and a lookup of a source owner's
//! negotiated header extensions.

use std::time::{Duration, Instant};

use crate::timer::Deadline;

use super::allocation::Allocation;
use super::api::{EndpointHandle, Output, Sink};
use super::av1::descriptor::MAX_LEN;
use super::bwe::{ProbeSend, SendSideBwe};
use super::codec::{FrameDesc, PayloadRewrite};
use super::context::{Ctx, TimerKey};
use super::counters::{DropReason, Stat};
use super::layers::RateTracker;
use super::link_quality::LinkQuality;
use super::model::{HdrExtIds, MediaKind, MediaParams};
use super::projection::{Projection, Rewritten, Target, VideoPacket};
use super::rtcp;
use super::rtp::{self, ExtMap, ForwardedHeader, Rewrite, RtpPacket, SdesMid};
use super::rtx_cache::{NEVER, PacketStore, SentEntry, SentLog, StoreRef};
use super::settings::ReceiverSettings;
use super::source::MediaSource;
use super::ssrc_slots::{Owner, SsrcRewriting};
use crate::random::Rng;

/// A probe packet that could not be sent (nothing to copy or pad) is retried after this.
const PROBE_RETRY: Duration = Duration::from_millis(20);

/// One ingress media packet as every receiver's downlink sees it: computed once by the router,
/// read by each [`Downlink::forward`].
#[derive(Debug, Clone, Copy)]
pub struct Forwarding<'a> {
    pub pkt: &'a RtpPacket<'a>,
    pub kind: MediaKind,
    pub source: u32,
    pub source_gen: u32,
    /// The sender's negotiated header extension ids (which extensions are kept, under which id).
    pub sender_ext: HdrExtIds,
    /// Encoding, sequence number, timestamp, marker and the codec's frame info.
    pub video: VideoPacket<'a>,
    /// Payload plus padding length: the egress payload starts this far from the end.
    pub tail_len: usize,
}

/// Per-packet state of one fan-out, shared by the receivers' [`Downlink::forward`] calls.
#[derive(Debug)]
pub struct FanOut<'s> {
    /// The source's retransmission store (video).
    pub store: Option<&'s mut PacketStore>,
    /// Where the packet was stored, once a receiver that may NACK it got it.
    pub stored: Option<StoreRef>,
    /// The highest encoding a receiver needs a keyframe of.
    pub keyframe_for: Option<u8>,
    /// The egress header last built, for the next receivers with the same extension plan.
    pub header: ForwardedHeader,
}

/// Per-receiver state. See the module docs.
#[derive(Debug)]
pub struct Downlink {
    /// The endpoint this is the downlink of (where its copies go, what its timer is keyed by).
    me: EndpointHandle,
    pub settings: ReceiverSettings,
    /// Video sources currently forwarded to this receiver, in priority order.
    pub forwarded: Vec<u32>,
    /// Per source slot: the projection of that source toward this receiver.
    pub projections: Vec<Option<Projection>>,
    /// The bridge's own transport-wide sequence number toward this receiver.
    pub tcc_seq: u16,
    /// What was sent to this receiver (for NACKs).
    pub sent: SentLog,
    /// Downlink bandwidth estimate (bandwidth estimator, REMB, or the shell), bps.
    pub bwe_bps: Option<u64>,
    /// The bandwidth the last allocation used (re-run when the estimate moves by more than the
    /// threshold).
    pub allocated_bwe_bps: Option<u64>,
    /// The last allocation for this receiver (forwarded layers, target and ideal bitrates).
    pub allocation: Allocation,
    /// The send-side bandwidth estimator toward this receiver (if it negotiated transport-cc).
    pub bwe: Option<SendSideBwe>,
    /// Probing paused until then (the last probe packet could not be built).
    pub probe_hold: Option<Instant>,
    /// Retransmissions sent to this receiver (bounded by a share of its estimate).
    pub rtx_rate: RateTracker,
    /// The armed deadline of [`TimerKey::Downlink`].
    pub timer: Deadline,
    /// RTT and loss as this receiver's reports describe them.
    pub link: LinkQuality,
    /// SSRC rewriting (the endpoint's `ssrc-rewriting` capability): its slot pools. Its
    /// projections then exist only for sources that have a slot.
    pub rewriting: Option<Box<SsrcRewriting>>,
}

impl Downlink {
    pub fn new(
        me: EndpointHandle,
        settings: ReceiverSettings,
        sent: SentLog,
        bwe_bps: Option<u64>,
    ) -> Self {
        Downlink {
            me,
            settings,
            forwarded: Vec::new(),
            projections: Vec::new(),
            tcc_seq: 1,
            sent,
            bwe_bps,
            allocated_bwe_bps: None,
            allocation: Allocation::default(),
            bwe: None,
            probe_hold: None,
            rtx_rate: RateTracker::default(),
            timer: Deadline::default(),
            link: LinkQuality::default(),
            rewriting: None,
        }
    }

    /// Removes the projection of `source` (the source went away): its slot, if it has one, is
    /// freed for the next source with where its RTX stream stands.
    pub fn drop_projection(&mut self, source: u32) {
        let Some(p) = self
            .projections
            .get_mut(source as usize)
            .and_then(Option::take)
        else {
            return;
        };
        if let (Some(rw), Some(link)) = (self.rewriting.as_deref_mut(), p.slot) {
            let pool = rw.pool_mut(p.kind());
            let mine = pool
                .get(link.index)
                .and_then(|s| s.owner)
                .is_some_and(|o| o.source == source && o.generation == p.source_gen);
            if mine {
                pool.release(link.index, p.rtx_seq);
            }
        }
    }

    /// SSRC rewriting: puts `owner` (a source of `kind`) on a slot, the least recently used one
    /// if the pool is full (`keep`: sources not to take it from), and makes its projection
    /// there. The previous owner's projection goes (its RTX sequence stays with the slot).
    /// Returns the slot, `None` if the receiver does not rewrite or every slot is kept.
    pub fn map_source(
        &mut self,
        kind: MediaKind,
        owner: Owner,
        keep: &[u32],
        rng: &mut Rng,
        taken: impl Fn(u32) -> bool,
    ) -> Option<usize> {
        let rw = self.rewriting.as_deref_mut()?;
        let a = rw.assign(kind, owner, keep, rng, taken)?;
        let i = a.index;
        if let Some(ev) = a.evicted
            && let Some(p) = self
                .projections
                .get_mut(ev.source as usize)
                .and_then(Option::take)
            && let Some(slot) = rw.pool_mut(kind).get_mut(i as u16)
        {
            slot.rtx_seq = p.rtx_seq;
        }
        let slot = rw.pool(kind).get(i as u16)?;
        let (ssrc, rtx, rtx_seq) = (slot.ssrc, slot.rtx, slot.rtx_seq);
        let si = owner.source as usize;
        if self.projections.len() <= si {
            self.projections.resize_with(si + 1, || None);
        }
        let fresh = self.projections[si].as_ref().is_none_or(|p| {
            p.source_gen != owner.generation || p.slot.is_none_or(|l| usize::from(l.index) != i)
        });
        if fresh {
            self.projections[si] = Some(
                match kind {
                    MediaKind::Audio => {
                        Projection::new_audio(owner.generation, ssrc, None, rtx_seq)
                    }
                    MediaKind::Video => {
                        Projection::new_video(owner.generation, ssrc, Some(rtx), rtx_seq)
                    }
                }
                .on_slot(i),
            );
        }
        Some(i)
    }

    /// The sdes:mid to stamp on what this receiver gets of `source` (SSRC rewriting with
    /// `rtp-mid-demux` and the extension negotiated), else none.
    fn slot_mid(&self, source: u32, params: &MediaParams) -> (u8, SdesMid) {
        let none = (0, SdesMid::default());
        if params.ext.mid == 0 {
            return none;
        }
        let Some(rw) = self.rewriting.as_deref().filter(|r| r.mid_demux) else {
            return none;
        };
        self.projection(source)
            .and_then(|p| Some((p.kind(), p.slot?)))
            .and_then(|(k, l)| rw.pool(k).get(l.index))
            .map_or(none, |s| (params.ext.mid, s.mid))
    }

    pub fn projection_mut(&mut self, source: u32) -> Option<&mut Projection> {
        self.projections
            .get_mut(source as usize)
            .and_then(Option::as_mut)
    }

    pub fn projection(&self, source: u32) -> Option<&Projection> {
        self.projections
            .get(source as usize)
            .and_then(Option::as_ref)
    }

    /// The bandwidth the allocation may use for this receiver.
    pub fn available_bandwidth(&self, trust_bwe: bool) -> u64 {
        if let Some(a) = self.settings.assumed_bandwidth_bps {
            return a;
        }
        if !trust_bwe {
            return u64::MAX;
        }
        self.bwe_bps.unwrap_or(u64::MAX)
    }

    /// A new estimate; true when it moved by more than `threshold` since the last allocation
    /// (the receiver's allocation should run again).
    pub fn on_estimate(&mut self, bps: u64, threshold: f64) -> bool {
        self.bwe_bps = Some(bps);
        match self.allocated_bwe_bps {
            None => true,
            Some(old) => (bps as f64 - old as f64).abs() > old as f64 * threshold,
        }
    }

    /// Packet path, last stage: this receiver's copy of `m`. The projection decides (target
    /// layer, keyframe switch rules, temporal layer) and computes the rewrite; the copy is built in
    /// `ctx.scratch` (SSRC, sequence number, timestamp, codec fields, header extensions renumbered,
    /// the bridge's transport-cc number; the header from the previous receiver's when their
    /// extension plans match, `fan.header`) and handed to the sink whole
    /// ([`Sink::emit_rtp_buffer`]: the port encrypts it there and leaves another buffer in
    /// `ctx.scratch`). Packets the receiver may NACK
    /// are stored once per source (in `fan`) and logged here. A keyframe the projection needs is
    /// noted in `fan`.
    #[inline]
    pub fn forward(
        &mut self,
        now: Instant,
        params: &MediaParams,
        m: &Forwarding<'_>,
        fan: &mut FanOut<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let me = self.me;
        let Downlink {
            projections,
            tcc_seq,
            sent,
            bwe,
            rewriting,
            ..
        } = self;
        let Some(Some(proj)) = projections.get_mut(m.source as usize) else {
            return;
        };
        if proj.source_gen != m.source_gen {
            return;
        }
        // SSRC rewriting: only on a slot whose mapping the receiver was told.
        if let Some(rw) = rewriting.as_deref()
            && !proj
                .slot
                .and_then(|l| rw.pool(m.kind).get(l.index))
                .is_some_and(|s| s.announced)
        {
            return;
        }
        let pt = m.pkt.payload_type();
        let (encoding, seq) = (m.video.encoding, m.video.seq);
        if !params.has_pt(pt) {
            if proj.target != Target::Suspended {
                ctx.counters.drop(DropReason::RtpPayloadTypeNotNegotiated);
            }
            proj.skip(encoding, seq);
            return;
        }
        let decision = match m.kind {
            MediaKind::Audio => {
                let d = proj.audio(seq).map(|s| Rewritten {
                    seq: s,
                    timestamp: m.pkt.timestamp(),
                    payload: PayloadRewrite::None,
                    keyframe: false,
                });
                if d.is_none() && proj.target != Target::Suspended {
                    ctx.counters.drop(DropReason::RtpLateAfterSkip);
                }
                d
            }
            MediaKind::Video => {
                let d = proj.video(now, &m.video);
                if let Some(e) = proj.needs_keyframe() {
                    fan.keyframe_for = Some(fan.keyframe_for.map_or(e, |k| k.max(e)));
                }
                d
            }
        };
        let Some(mut out) = decision else { return };
        let mut mid = (0, SdesMid::default());
        if let Some(rw) = rewriting.as_deref_mut()
            && let Some(link) = proj.slot.as_mut()
        {
            // Continue the slot: the receiver sees one stream whoever owns it.
            let mid_demux = rw.mid_demux;
            let pool = rw.pool_mut(m.kind);
            let Some(slot) = pool.get_mut(link.index) else {
                return;
            };
            let clock = params.clock_rate(pt).unwrap_or(match m.kind {
                MediaKind::Audio => 48_000,
                MediaKind::Video => 90_000,
            });
            let min_step = match m.kind {
                MediaKind::Audio => clock / 50,
                MediaKind::Video => clock / 30,
            };
            out = link.apply(slot, out, now, clock, min_step);
            if mid_demux && params.ext.mid != 0 {
                mid = (params.ext.mid, slot.mid);
            }
            pool.touch(link.index);
        }
        let mut ext = ext_map(&m.sender_ext, params, m.kind, out.payload.is_av1());
        ext.mid = mid;
        // AV1: the receiver's Dependency Descriptor, written whole.
        // (Initialized on that path only: the other packets skip zeroing its 255 bytes.)
        let mut dd;
        let replace = match (&m.video.info.frame, m.video.stream.and_then(|s| s.dd())) {
            (FrameDesc::Av1(info), Some(src)) if ext.keep[1].0 != 0 => {
                dd = [0u8; MAX_LEN];
                let Some(n) = src
                    .structure(info.generation)
                    .and_then(|s| out.payload.descriptor(&[], Some((info, s)), &mut dd))
                else {
                    ctx.counters.drop(DropReason::RtpMalformedDescriptor);
                    return;
                };
                Some((m.sender_ext.dependency_descriptor, &dd[..n]))
            }
            _ => None,
        };
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
            replace,
        };
        if params.has_nack(pt)
            && let Some(store) = fan.store.as_deref_mut()
        {
            let at = *fan
                .stored
                .get_or_insert_with(|| store.put(m.pkt.as_bytes()));
            let flags = if m.kind == MediaKind::Video {
                SentEntry::VIDEO
            } else {
                0
            } | if out.keyframe { SentEntry::KEYFRAME } else { 0 };
            sent.push(SentEntry::new(
                rw.ssrc,
                out.seq,
                rw.timestamp,
                m.source,
                m.source_gen as u16,
                at,
                sent.ms(now),
                out.payload,
                flags,
            ));
        }
        fan.header.write(m.pkt, &rw, &mut ctx.scratch);
        let payload_at = ctx.scratch.len().saturating_sub(m.tail_len);
        out.payload
            .apply(&m.video.info.frame, &mut ctx.scratch, payload_at);
        if ext.tcc_out != 0
            && let Some(b) = bwe.as_mut()
        {
            b.on_packet_sent(now, tcc, ctx.scratch.len(), None);
        }
        ctx.counters.inc(Stat::RtpSent);
        ctx.counters
            .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
        sink.emit_rtp_buffer(me, &mut ctx.scratch);
    }

    /// A sender report of `source` (its `encoding`) projected onto this receiver's stream: without
    /// report blocks, SSRC and RTP timestamp as the receiver knows them. False when the receiver
    /// does not get that encoding.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_sender_report(
        &mut self,
        now: Instant,
        source: u32,
        source_gen: u32,
        encoding: u8,
        sr: &rtcp::SenderReport<'_>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> bool {
        let me = self.me;
        let rewrites = self.rewriting.is_some();
        let Some(p) = self.projection_mut(source) else {
            return false;
        };
        if p.source_gen != source_gen || p.packets_sent == 0 {
            return false;
        }
        // Only the SR of the encoding this receiver gets, with that segment's offset.
        let Some(mut rtp_timestamp) = p.sr_timestamp(encoding, sr.rtp_timestamp()) else {
            return false;
        };
        // SSRC rewriting: on the slot's timeline (nothing sent on this mapping yet: no SR).
        if rewrites {
            let Some(d) = p.slot.and_then(|l| l.deltas) else {
                return false;
            };
            rtp_timestamp = rtp_timestamp.wrapping_add(d.timestamp);
        }
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
        self.link.on_sender_report_sent(now, sr.ntp());
        ctx.counters.inc(Stat::SenderReportsForwarded);
        ctx.counters.inc(Stat::RtcpSent);
        sink.emit(Output::Rtcp {
            to: me,
            packet: &ctx.scratch,
        });
        true
    }

    /// Answers this receiver's NACK: each lost packet is looked up in the sent log, rebuilt from
    /// the source's packet store exactly as it was sent, and resent as RTX (own sequence counter,
    /// original sequence number in front of the payload) if the receiver negotiated RTX for the
    /// payload type and the source has an RTX SSRC, else as it was. `conf_ms` is the conference
    /// clock the retransmission budget is measured on.
    #[allow(clippy::too_many_arguments)]
    pub fn retransmit(
        &mut self,
        now: Instant,
        conf_ms: u64,
        (audio, video): (&MediaParams, &MediaParams),
        nack: &rtcp::Nack<'_>,
        sources: &[Option<MediaSource>],
        sender_ext: impl Fn(u32, MediaKind) -> Option<HdrExtIds>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let me = self.me;
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
            let Some((i, e)) = self.sent.find(now, nack.media_ssrc, seq) else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let now_ms = self.sent.ms(now);
            // SSRC rewriting: a packet of a slot's previous owner (the new one started at a
            // keyframe) or of a mapping that ended.
            let remapped = self.rewriting.is_some()
                && !self.projection(e.source).is_some_and(|p| {
                    p.source_gen as u16 == e.source_gen && p.egress_ssrc == e.ssrc
                });
            if remapped
                || self.projection(e.source).is_some_and(|p| {
                    p.source_gen as u16 == e.source_gen && p.is_superseded(p.own_seq(e.seq))
                })
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
            if let Some(b) = self
                .bwe
                .as_ref()
                .filter(|_| e.flags & SentEntry::KEYFRAME == 0)
            {
                let budget = (b.poll_estimate() as f64 * ctx.cfg.max_retransmission_share) as u64;
                if self.rtx_rate.bps(conf_ms) > budget {
                    ctx.counters.drop(DropReason::NackRateLimited);
                    continue;
                }
            }
            let Some(src) = sources
                .get(e.source as usize)
                .and_then(Option::as_ref)
                .filter(|s| s.generation as u16 == e.source_gen)
            else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let Some(orig) = src.stored_packet(e.stored) else {
                ctx.counters.drop(DropReason::NackNotCached);
                continue;
            };
            let kind = if e.video() {
                MediaKind::Video
            } else {
                MediaKind::Audio
            };
            let Some(s_ext) = sender_ext(src.owner, kind) else {
                continue;
            };
            let params = match kind {
                MediaKind::Audio => audio,
                MediaKind::Video => video,
            };
            let mut ext = ext_map(&s_ext, params, kind, e.rewrite().is_av1());
            ext.mid = self.slot_mid(e.source, params);
            // A retransmission is a new packet on the wire: new transport-wide sequence number.
            let rw = Rewrite {
                ssrc: e.ssrc,
                seq: e.seq,
                timestamp: e.timestamp,
                payload_type: orig.payload_type(),
                ext: &ext,
                tcc_seq: self.tcc_seq,
                replace: None,
            };
            let rtx = self
                .projection(e.source)
                .filter(|p| p.source_gen as u16 == e.source_gen)
                .and_then(|p| {
                    let ssrc = p.egress_rtx_ssrc?;
                    let pt = params.rtx_pt_for(orig.payload_type())?;
                    Some((ssrc, pt, p.rtx_seq))
                });
            // Exactly as sent: the codec rewrite too.
            let tail_len = orig.as_bytes().len() - orig.header_len();
            match rtx {
                Some((rtx_ssrc, rtx_pt, rtx_seq)) => {
                    rebuild(&orig, &rw, e.rewrite(), tail_len, &mut ctx.scratch2);
                    let Ok(sent_pkt) = RtpPacket::parse(&ctx.scratch2) else {
                        continue;
                    };
                    rtp::write_rtx(&sent_pkt, rtx_ssrc, rtx_pt, rtx_seq, &mut ctx.scratch);
                    ctx.counters.inc(Stat::RetransmissionsRtx);
                }
                None => {
                    rebuild(&orig, &rw, e.rewrite(), tail_len, &mut ctx.scratch);
                    ctx.counters.inc(Stat::RetransmissionsPlain);
                }
            }
            if ext.tcc_out != 0 {
                let t = next_tcc(&mut self.tcc_seq);
                if let Some(b) = self.bwe.as_mut() {
                    b.on_packet_sent(now, t, ctx.scratch.len(), None);
                }
            }
            if rtx.is_some()
                && let Some(p) = self.projection_mut(e.source)
            {
                p.rtx_seq = p.rtx_seq.wrapping_add(1);
            }
            if let Some(entry) = self.sent.get_mut(i) {
                entry.resent_ms = now_ms;
            }
            self.rtx_rate.add(conf_ms, ctx.scratch.len() as u32);
            ctx.counters.inc(Stat::RtpSent);
            ctx.counters
                .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
            sink.emit(Output::Rtp {
                to: me,
                packet: &ctx.scratch,
            });
        }
    }

    /// When the estimator wants its probes sent; a cluster that could not be fed is retried a
    /// little later, not at once.
    pub fn probe_due(&self) -> Option<Instant> {
        let t = self.bwe.as_ref()?.poll_timeout()?;
        Some(self.probe_hold.map_or(t, |h| h.max(t)))
    }

    /// Re-arms the downlink timer after the estimator may have scheduled something earlier.
    pub fn rearm(&mut self, ctx: &mut Ctx) {
        let due = self.probe_due();
        ctx.timers
            .lower(&mut self.timer, TimerKey::Downlink(self.me), due);
    }

    /// Starts a probe cluster if the allocation wants more than the estimate.
    pub fn maybe_probe(&mut self, now: Instant, connected: bool, ctx: &mut Ctx) {
        let ideal = self.allocation.ideal_bps;
        if !connected || !self.allocation.has_non_ideal_layer() {
            return;
        }
        let Some(b) = self.bwe.as_mut() else { return };
        // Probe above the ideal rate: the estimate must exceed a layer's (fluctuating) measured
        // bitrate for the allocation to take it.
        let want = ideal.saturating_add(ideal / 4);
        if want > b.poll_estimate() && b.probe_request(now, want).is_some() {
            self.rearm(ctx);
        }
    }

    /// The downlink timer: sends the probe packets the estimator asks for now, then re-arms.
    #[allow(clippy::too_many_arguments)]
    pub fn on_timer(
        &mut self,
        now: Instant,
        connected: bool,
        video: &MediaParams,
        sources: &[Option<MediaSource>],
        sender_ext: impl Fn(u32, MediaKind) -> Option<HdrExtIds>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        if self.probe_due().is_some_and(|t| t <= now) {
            while let Some(b) = self.bwe.as_mut() {
                b.handle_timeout(now);
                let Some(p) = b.poll_probe(now) else { break };
                let sent =
                    connected && self.send_probe(now, p, video, sources, &sender_ext, ctx, sink);
                self.probe_hold = (!sent).then_some(now + PROBE_RETRY);
                if !sent {
                    break;
                }
            }
        }
        let due = self.probe_due();
        ctx.timers
            .set(&mut self.timer, TimerKey::Downlink(self.me), due);
    }

    /// One probe packet: an RTX copy of a recent video packet (as the receiver got it), or, with
    /// nothing to copy, RTP padding on the RTX stream of a forwarded video source. False when no
    /// probe can be sent (no RTX negotiated or nothing forwarded).
    #[allow(clippy::too_many_arguments)]
    fn send_probe(
        &mut self,
        now: Instant,
        p: ProbeSend,
        video: &MediaParams,
        sources: &[Option<MediaSource>],
        sender_ext: &impl Fn(u32, MediaKind) -> Option<HdrExtIds>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> bool {
        let ext_plan = |s: &HdrExtIds, av1: bool| ext_map(s, video, MediaKind::Video, av1);
        // A recent video packet of a forwarded source with RTX.
        let mut from_source = None;
        for (_, e) in self.sent.recent(now, 64) {
            if !e.video() {
                continue;
            }
            let Some(proj) = self
                .projection(e.source)
                .filter(|pr| pr.source_gen as u16 == e.source_gen)
            else {
                continue;
            };
            let Some(rtx_ssrc) = proj.egress_rtx_ssrc else {
                continue;
            };
            let Some(src) = sources.get(e.source as usize).and_then(Option::as_ref) else {
                continue;
            };
            let Some(orig) = src.stored_packet(e.stored) else {
                continue;
            };
            let Some(rtx_pt) = video.rtx_pt_for(orig.payload_type()) else {
                continue;
            };
            let Some(s_ext) = sender_ext(src.owner, MediaKind::Video) else {
                continue;
            };
            let mut ext = ext_plan(&s_ext, e.rewrite().is_av1());
            if ext.tcc_out == 0 {
                break;
            }
            ext.mid = self.slot_mid(e.source, video);
            let rw = Rewrite {
                ssrc: e.ssrc,
                seq: e.seq,
                timestamp: e.timestamp,
                payload_type: orig.payload_type(),
                ext: &ext,
                tcc_seq: self.tcc_seq,
                replace: None,
            };
            let tail_len = orig.as_bytes().len() - orig.header_len();
            rebuild(&orig, &rw, e.rewrite(), tail_len, &mut ctx.scratch2);
            let Ok(sent_pkt) = RtpPacket::parse(&ctx.scratch2) else {
                continue;
            };
            rtp::write_rtx(&sent_pkt, rtx_ssrc, rtx_pt, proj.rtx_seq, &mut ctx.scratch);
            from_source = Some(e.source);
            break;
        }
        if from_source.is_none() {
            // Padding on the RTX stream of a forwarded source.
            for &si in &self.forwarded {
                let Some(proj) = self.projection(si) else {
                    continue;
                };
                let (Some(rtx_ssrc), Some((_, rtx_pt))) = (proj.egress_rtx_ssrc, video.rtx.first())
                else {
                    continue;
                };
                let ext = ext_plan(&HdrExtIds::default(), false);
                if ext.tcc_out == 0 {
                    return false;
                }
                let rw = Rewrite {
                    ssrc: rtx_ssrc,
                    seq: proj.rtx_seq,
                    timestamp: 0,
                    payload_type: *rtx_pt,
                    ext: &ext,
                    tcc_seq: self.tcc_seq,
                    replace: None,
                };
                rtp::write_padding(&rw, p.bytes.clamp(1, 255) as u8, &mut ctx.scratch);
                from_source = Some(si);
                break;
            }
        }
        let Some(source) = from_source else {
            return false;
        };
        let me = self.me;
        // The probe in `ctx.scratch` advances the counters, then goes out.
        let t = next_tcc(&mut self.tcc_seq);
        if let Some(pr) = self.projection_mut(source) {
            pr.rtx_seq = pr.rtx_seq.wrapping_add(1);
        }
        if let Some(b) = self.bwe.as_mut() {
            b.on_packet_sent(now, t, ctx.scratch.len(), Some(p.cluster));
        }
        ctx.counters.inc(Stat::ProbePackets);
        ctx.counters.add(Stat::ProbeBytes, ctx.scratch.len() as u64);
        ctx.counters.inc(Stat::RtpSent);
        ctx.counters
            .add(Stat::RtpBytesSent, ctx.scratch.len() as u64);
        sink.emit(Output::Rtp {
            to: me,
            packet: &ctx.scratch,
        });
        true
    }
}

/// Rebuilds a stored ingress packet as it was sent to a receiver: header rewrite `rw` and the
/// codec rewrite that was applied (AV1: the sender's Dependency Descriptor patched with the
/// receiver's frame number and template ids).
fn rebuild(
    orig: &RtpPacket<'_>,
    rw: &Rewrite<'_>,
    rewrite: PayloadRewrite,
    tail_len: usize,
    out: &mut Vec<u8>,
) {
    let mut dd = [0u8; MAX_LEN];
    let dd_id = rw.ext.keep[1].0;
    let replace = (dd_id != 0)
        .then(|| orig.extension(dd_id))
        .flatten()
        .and_then(|d| rewrite.descriptor(d, None, &mut dd))
        .map(|n| (dd_id, &dd[..n]));
    let rw = Rewrite {
        replace: replace.or(rw.replace),
        ..*rw
    };
    rtp::write_forwarded(orig, &rw, out);
    let payload_at = out.len().saturating_sub(tail_len);
    rewrite.apply_stored(orig, out, payload_at);
}

/// The per-(sender, receiver) header extension plan: keep audio level (audio) and video
/// orientation (video) under the receiver's ids, the Dependency Descriptor of a packet the AV1
/// context forwarded (`av1`: it is rewritten; any other context would forward a descriptor that
/// no longer matches the stream), and stamp the bridge's transport-cc if the receiver negotiated
/// it.
#[inline]
pub fn ext_map(sender: &HdrExtIds, r: &MediaParams, kind: MediaKind, av1: bool) -> ExtMap {
    let keep0 = match kind {
        MediaKind::Audio => (sender.audio_level, r.ext.audio_level),
        MediaKind::Video => (sender.video_orientation, r.ext.video_orientation),
    };
    let keep1 = if av1 && kind == MediaKind::Video && r.ext.dependency_descriptor != 0 {
        (sender.dependency_descriptor, r.ext.dependency_descriptor)
    } else {
        (0, 0)
    };
    ExtMap {
        keep: [keep0, keep1],
        tcc_out: r.ext.transport_cc,
        allow_two_byte: r.allow_mixed,
        mid: (0, Default::default()),
    }
}

/// Advances a transport-wide sequence counter, returning the value to stamp.
#[inline]
pub fn next_tcc(counter: &mut u16) -> u16 {
    let v = *counter;
    *counter = counter.wrapping_add(1);
    v
}
