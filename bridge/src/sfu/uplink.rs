//! The endpoint as a sender (uplink): the SSRCs it sends with and the feedback the bridge owes it.
//!
//! State per sender: its SSRC table (per SSRC the source and encoding it belongs to, receive
//! statistics for receiver reports, a window of received sequence numbers that drops duplicates,
//! and for video a NACK generator), its transport-cc feedback generator, the source slots it
//! publishes and what it was last asked to encode. Code: the first stage of the packet path,
//! [`Uplink::arrive`] (SSRC lookup, transport-wide arrival, statistics) and [`Uplink::accept`]
//! (gap tracking → NACKs, duplicate drop), the unwrapping of the sender's own retransmissions,
//! and the uplink's timer ([`Uplink::on_timer`]: feedback and NACKs that are due). Nothing here
//! looks at another endpoint.

use std::time::Instant;

use crate::timer::Deadline;

use super::api::{EndpointHandle, Output, Sink};
use super::context::{Ctx, TimerKey};
use super::counters::{DropReason, Stat};
use super::model::{MediaKind, MediaParams, SeqWindow, SsrcMap};
use super::nack_gen::{self, NackConfig, NackGenerator};
use super::recv_stats::ReceiveStats;
use super::rtcp::ReportBlock;
use super::rtp::{self, RtpPacket};
use super::sender_constraints::Announcement;
use super::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};

/// What an SSRC is within its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SsrcRole {
    Media,
    Rtx,
    Fec,
}

/// One SSRC of a sender: one hash lookup per packet gives source, encoding and the receive state.
#[derive(Debug)]
pub struct SsrcEntry {
    pub source: u32,
    pub encoding: u8,
    pub role: SsrcRole,
    pub kind: MediaKind,
    /// The encoding's media SSRC (an RTX packet is unwrapped into it).
    pub media_ssrc: u32,
    pub stats: ReceiveStats,
    /// Recently received sequence numbers (media SSRCs): drops duplicates, e.g. a sender's RTX
    /// answer to a packet that arrived after all.
    pub seen: SeqWindow,
    /// Requests missing packets from the sender (video media SSRCs that negotiated NACK).
    pub nack: Option<NackGenerator>,
}

/// A packet the SSRC table knows, after [`Uplink::arrive`].
#[derive(Debug, Clone, Copy)]
pub struct Arrived {
    pub role: SsrcRole,
    pub kind: MediaKind,
    pub media_ssrc: u32,
}

/// A media packet (original or unwrapped from RTX) the uplink passed on, after [`Uplink::accept`].
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    pub source: u32,
    pub encoding: u8,
    pub kind: MediaKind,
}

/// Per-sender state. See the module docs.
#[derive(Debug)]
pub struct Uplink {
    /// The endpoint this is the uplink of (where feedback goes, what its timer is keyed by).
    me: EndpointHandle,
    /// The conference's `jvb-v0`: sender SSRC of the feedback.
    feedback_ssrc: u32,
    pub ssrcs: SsrcMap<SsrcEntry>,
    /// Source slots this endpoint publishes.
    pub sources: Vec<u32>,
    /// Transport-cc feedback toward this endpoint (created on its first transport-wide number).
    pub tcc_gen: Option<TccFeedbackGenerator>,
    /// What it is asked to encode per published video source (`SenderSourceConstraints`), by
    /// source slot and generation.
    pub source_constraints: Vec<(u32, u32, Announcement)>,
    /// The same over all its video sources, for the 2021 client (`SenderVideoConstraints`).
    pub video_constraints: Announcement,
    /// The armed deadline of [`TimerKey::Uplink`].
    pub timer: Deadline,
}

impl Uplink {
    pub fn new(me: EndpointHandle, feedback_ssrc: u32) -> Self {
        Uplink {
            me,
            feedback_ssrc,
            ssrcs: SsrcMap::default(),
            sources: Vec::new(),
            tcc_gen: None,
            source_constraints: Vec::new(),
            video_constraints: Announcement::default(),
            timer: Deadline::default(),
        }
    }

    /// Ingress stage 1: finds the SSRC in this sender's table, records the transport-wide arrival
    /// (sending feedback at once when a frame ended) and the receive statistics. `None`: not one
    /// of this sender's SSRCs (the router tells unknown from foreign).
    pub fn arrive(
        &mut self,
        now: Instant,
        pkt: &RtpPacket<'_>,
        audio: &MediaParams,
        video: &MediaParams,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> Option<Arrived> {
        let Uplink {
            me,
            feedback_ssrc,
            ssrcs,
            tcc_gen,
            timer,
            ..
        } = self;
        let (me, feedback_ssrc) = (*me, *feedback_ssrc);
        let entry = ssrcs.get_mut(&pkt.ssrc())?;
        let params = match entry.kind {
            MediaKind::Audio => audio,
            MediaKind::Video => video,
        };
        // Uplink transport-cc: every packet carrying the sender's transport-wide number counts,
        // retransmissions and padding probes included (they are what its estimator measures).
        let tcc_id = params.ext.transport_cc;
        if tcc_id != 0
            && let Some(tseq) = pkt.transport_cc_seq(tcc_id)
        {
            let generator = tcc_gen.get_or_insert_with(|| {
                TccFeedbackGenerator::new(feedback_ssrc, GeneratorConfig::default())
            });
            if generator.on_packet(now, tseq, pkt.ssrc(), pkt.marker()) {
                ctx.scratch2.clear();
                if generator.poll_feedback(now, &mut ctx.scratch2) > 0 {
                    ctx.counters.inc(Stat::TccFeedbackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: me,
                        packet: &ctx.scratch2,
                    });
                }
            }
            ctx.timers
                .lower(timer, TimerKey::Uplink(me), generator.poll_timeout());
        }
        if let Some(c) = params.clock_rate(pkt.payload_type()) {
            entry.stats.set_clock_rate(c);
        }
        entry
            .stats
            .on_packet(now, pkt.sequence_number(), pkt.timestamp());
        Some(Arrived {
            role: entry.role,
            kind: entry.kind,
            media_ssrc: entry.media_ssrc,
        })
    }

    /// A retransmission the sender made (answering a NACK, or probing with old packets), rebuilt
    /// into `out` as the media packet it repairs. `None` (counted) when it cannot be.
    pub fn unwrap_rtx<'b>(
        pkt: &RtpPacket<'_>,
        arrived: &Arrived,
        video: &MediaParams,
        out: &'b mut Vec<u8>,
        ctx: &mut Ctx,
    ) -> Option<RtpPacket<'b>> {
        if pkt.is_padding_only() {
            ctx.counters.drop(DropReason::RtpPaddingOnly);
            return None;
        }
        let Some(apt) = video.apt_of(pkt.payload_type()) else {
            ctx.counters.drop(DropReason::RtpSenderRepair);
            return None;
        };
        if !rtp::write_unwrapped_rtx(pkt, arrived.media_ssrc, apt, out) {
            ctx.counters.drop(DropReason::RtpSenderRepair);
            return None;
        }
        match RtpPacket::parse(out) {
            Ok(p) => {
                ctx.counters.inc(Stat::RtxUnwrapped);
                Some(p)
            }
            Err(_) => {
                ctx.counters.drop(DropReason::RtpSenderRepair);
                None
            }
        }
    }

    /// Ingress stage 2, for a media packet: missing packets before it are scheduled for NACKs
    /// (video, if the sender negotiated NACK), a duplicate is dropped.
    pub fn accept(
        &mut self,
        now: Instant,
        pkt: &RtpPacket<'_>,
        nack_negotiated: bool,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) -> Option<Accepted> {
        let (me, feedback_ssrc) = (self.me, self.feedback_ssrc);
        let Uplink { ssrcs, timer, .. } = self;
        let seq = pkt.sequence_number();
        let entry = ssrcs.get_mut(&pkt.ssrc())?;
        if entry.kind == MediaKind::Video && nack_negotiated {
            let ssrc = pkt.ssrc();
            let g = entry
                .nack
                .get_or_insert_with(|| NackGenerator::new(ssrc, NackConfig::default()));
            if let nack_gen::Arrival::Gap(_) = g.on_packet(now, seq) {
                ctx.scratch2.clear();
                if g.poll_nack(now, feedback_ssrc, &mut ctx.scratch2) > 0 {
                    ctx.counters.inc(Stat::NackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: me,
                        packet: &ctx.scratch2,
                    });
                }
                // Only a gap adds a deadline; arrivals that fill one only make it later.
                ctx.timers
                    .lower(timer, TimerKey::Uplink(me), g.poll_timeout());
            }
        }
        if !entry.seen.insert(seq) {
            ctx.counters.drop(DropReason::RtpDuplicate);
            return None;
        }
        Some(Accepted {
            source: entry.source,
            encoding: entry.encoding,
            kind: entry.kind,
        })
    }

    /// The uplink's timer: feedback and NACKs that are due (sent only while the sender's
    /// transport is up), then the next deadline.
    pub fn on_timer(&mut self, now: Instant, connected: bool, ctx: &mut Ctx, sink: &mut impl Sink) {
        let (me, feedback_ssrc) = (self.me, self.feedback_ssrc);
        let mut next: Option<Instant> = None;
        if let Some(g) = self.tcc_gen.as_mut() {
            if g.poll_timeout().is_some_and(|t| t <= now) {
                ctx.scratch2.clear();
                if g.poll_feedback(now, &mut ctx.scratch2) > 0 && connected {
                    ctx.counters.inc(Stat::TccFeedbackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: me,
                        packet: &ctx.scratch2,
                    });
                }
            }
            next = earliest(next, g.poll_timeout());
        }
        for e in self.ssrcs.values_mut() {
            let Some(g) = e.nack.as_mut() else { continue };
            if g.poll_timeout().is_some_and(|t| t <= now) {
                ctx.scratch2.clear();
                if g.poll_nack(now, feedback_ssrc, &mut ctx.scratch2) > 0 && connected {
                    ctx.counters.inc(Stat::NackSent);
                    ctx.counters.inc(Stat::RtcpSent);
                    sink.emit(Output::Rtcp {
                        to: me,
                        packet: &ctx.scratch2,
                    });
                }
            }
            next = earliest(next, g.poll_timeout());
        }
        ctx.timers.set(&mut self.timer, TimerKey::Uplink(me), next);
    }

    /// Report blocks for the receiver reports toward this sender, one per SSRC that is
    /// receiving, audio first, each kind by SSRC. Returns the packets its media streams were
    /// expected to send and lost in the intervals these blocks cover.
    pub fn report_blocks(
        &mut self,
        now: Instant,
        out: &mut Vec<(MediaKind, ReportBlock)>,
    ) -> (u64, u64) {
        out.clear();
        let (mut expected, mut lost) = (0u64, 0u64);
        for (ssrc, e) in self.ssrcs.iter_mut() {
            if e.stats.is_active() {
                out.push((e.kind, e.stats.report_block(now, *ssrc)));
                if e.role == SsrcRole::Media {
                    let (x, l) = e.stats.last_interval();
                    expected += u64::from(x);
                    lost += u64::from(l);
                }
            }
        }
        out.sort_unstable_by_key(|(k, b)| (*k == MediaKind::Video, b.ssrc));
        (expected, lost)
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
