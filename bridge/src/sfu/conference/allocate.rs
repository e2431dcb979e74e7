//! Layer selection: per receiver, which layer of which source ([`allocation::allocate`], a pure
//! function of the inputs collected here), applied to the receiver's projections; the forwarded
//! set announced to it; and, over all receivers, what each sender is asked to encode.

use std::time::Instant;

use signaling::sources::VideoType;

use crate::sfu::allocation::{self, Allocation, LayerInfo, ReceiverInput, SourceInput};
use crate::sfu::api::{EndpointHandle, Output, Sink};
use crate::sfu::channel;
use crate::sfu::config::SfuConfig;
use crate::sfu::context::{ConferenceTimer, Ctx};
use crate::sfu::counters::Stat;
use crate::sfu::layers::TEMPORAL_LAYERS;
use crate::sfu::model::MediaKind;
use crate::sfu::projection::{Projection, Target};
use crate::sfu::sender_constraints::{Announcement, Due, Told, Verdict, layers_follow};
use crate::sfu::source::MediaSource;
use crate::sfu::uplink::earliest;

use super::{Conference, max_height};

impl Conference {
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
                ep.uplink.sources.iter().any(|&si| {
                    self.src(si)
                        .and_then(|s| s.layers.as_ref())
                        .is_some_and(|l| l.active_mask(now_ms) != 0)
                })
            })
        };
        v.sort_by_key(|&e| !sends_video(e));
        v
    }

    /// Re-decides every (receiver, source) projection target, announces changed forwarded sets and
    /// sender constraints. Runs on membership, source, constraint, layer and dominant-speaker
    /// changes and every `max_time_between_allocations` — never per packet.
    pub(super) fn reallocate(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        self.run_allocation(now, None, ctx, sink);
    }

    /// Allocation for every receiver (`only` = None) or one receiver (its bandwidth changed).
    pub(super) fn run_allocation(
        &mut self,
        now: Instant,
        only: Option<u32>,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        if only.is_none() {
            let next = now + ctx.cfg.max_time_between_allocations;
            self.arm(ConferenceTimer::Allocation, Some(next), ctx);
        }
        let now_ms = self.ms(now);
        let order = self.speaker_order(now_ms);
        // Layer snapshots of every video source, owners in speaker order.
        let mut layers: Vec<LayerInfo> = Vec::new();
        let mut video: Vec<(u32, u32, std::ops::Range<usize>)> = Vec::new();
        for &e in &order {
            let Some(owner) = self.ep(e) else { continue };
            for &si in &owner.uplink.sources {
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
            let s = &recv.downlink.settings;
            let rin = ReceiverInput {
                last_n: effective_last_n(s.last_n, cfg),
                on_stage: &s.on_stage,
                selected: &s.selected,
                default_constraints: s.default_constraints,
                constraints: &s.constraints,
                bandwidth_bps: recv.downlink.available_bandwidth(cfg.trust_bwe),
            };
            results.push((
                r,
                allocation::allocate(&inputs, &rin, &cfg.alloc),
                recv.downlink.bwe_bps,
            ));
        }
        // SSRC rewriting: video slots first (only sources with one get a projection).
        for (r, alloc, _) in &results {
            self.map_video(*r, alloc, ctx, sink);
        }
        let all: Vec<SourceRef<'_>> = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = s.as_ref()?;
                let p = s.primary()?;
                Some(SourceRef {
                    index: i as u32,
                    generation: s.generation,
                    ssrc: p.ssrc,
                    rtx: p.rtx,
                    owner: s.owner,
                    kind: s.kind,
                    name: &s.name,
                })
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
            let bandwidth = recv.downlink.available_bandwidth(ctx.cfg.trust_bwe);
            let connected = recv.transport.connected;
            let d = &mut recv.downlink;
            let rewrites = d.rewriting.is_some();
            for &SourceRef {
                index: si,
                generation,
                ssrc,
                rtx,
                owner,
                kind,
                name,
            } in &all
            {
                if owner == r {
                    continue;
                }
                let want = match kind {
                    MediaKind::Audio if d.settings.audio.wants(name) => Target::encoding(0),
                    MediaKind::Audio => Target::Suspended,
                    MediaKind::Video => alloc
                        .get(si)
                        .and_then(|a| a.target)
                        .map_or(Target::Suspended, |l| Target::layer(l.encoding, l.temporal)),
                };
                let i = si as usize;
                if d.projections.len() <= i {
                    d.projections.resize_with(i + 1, || None);
                }
                let slot = &mut d.projections[i];
                if slot.as_ref().is_none_or(|p| p.source_gen != generation) {
                    if rewrites {
                        // Mapped in `map_video` / on its first packet (audio), or not at all.
                        continue;
                    }
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
                        if connected && p.switch_needs_keyframe(e) {
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
                let mut a = d.forwarded.clone();
                let mut b = fwd.clone();
                a.sort_unstable();
                b.sort_unstable();
                a != b
            };
            d.forwarded = fwd;
            d.allocation = alloc;
            d.allocated_bwe_bps = bwe;
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
            if let Some(Some(recv)) = self.endpoints.get_mut(r as usize) {
                let connected = recv.transport.connected;
                recv.downlink.maybe_probe(now, connected, ctx);
            }
        } else {
            self.update_sender_constraints(now, ctx, sink);
        }
    }

    /// What each sender needs to encode: per video source the largest effective maxHeight any
    /// receiver has for it (0 if nobody wants it, -1 unlimited), per source
    /// (`SenderSourceConstraints`) and per endpoint (2021 dialect, `SenderVideoConstraints`).
    /// Only the sender's own signalled sources are named. The messages go out after a hold-off
    /// ([`Conference::flush_sender_constraints`]).
    fn update_sender_constraints(&mut self, now: Instant, ctx: &mut Ctx, sink: &mut impl Sink) {
        // (owner, source, generation, height)
        let mut wanted: Vec<(u32, u32, u32, i32)> = Vec::new();
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
                if let Some(a) = r.downlink.allocation.get(si as u32) {
                    h = max_height(h, a.effective.max_height);
                }
            }
            wanted.push((s.owner, si as u32, s.generation, h));
        }
        for ep in self.endpoints.iter_mut().flatten() {
            let me = ep.handle.idx;
            let up = &mut ep.uplink;
            let mine = || wanted.iter().filter(|w| w.0 == me);
            // Sources it no longer publishes are forgotten (a slot reused by another source
            // starts over).
            up.source_constraints
                .retain(|(si, g, _)| mine().any(|w| w.1 == *si && w.2 == *g));
            let mut all: Option<i32> = None;
            for &(_, si, g, h) in mine() {
                let i = match up
                    .source_constraints
                    .iter()
                    .position(|(s, sg, _)| *s == si && *sg == g)
                {
                    Some(i) => i,
                    None => {
                        up.source_constraints.push((si, g, Default::default()));
                        up.source_constraints.len() - 1
                    }
                };
                up.source_constraints[i].2.want(now, h);
                all = Some(all.map_or(h, |a| max_height(a, h)));
            }
            if let Some(h) = all {
                up.video_constraints.want(now, h);
            }
        }
        self.flush_sender_constraints(now, ctx, sink);
    }

    /// Sends the sender constraints that are due (to endpoints whose channel is open), verifies
    /// those whose time has come against the layers the bridge receives (nudging the ones not
    /// followed), and arms the timer for the next.
    pub(super) fn flush_sender_constraints(
        &mut self,
        now: Instant,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let now_ms = self.ms(now);
        let Conference {
            endpoints, sources, ..
        } = self;
        let src = |si: u32| sources.get(si as usize).and_then(Option::as_ref);
        let mut next: Option<Instant> = None;
        for ep in endpoints.iter_mut().flatten() {
            if !ep.transport.data_channel_open {
                continue;
            }
            let to = ep.handle;
            let up = &mut ep.uplink;
            for (si, _, a) in up.source_constraints.iter_mut() {
                let Some(s) = src(*si) else { continue };
                while let Some(told) = poll_announcement(a, now, |h| source_follows(s, h, now_ms)) {
                    let m = channel::sender_source_constraints(&s.name, told.max_height());
                    ctx.counters.inc(Stat::SenderConstraintsSent);
                    ctx.counters.inc(Stat::ChannelMessagesSent);
                    sink.emit(Output::Text { to, text: &m });
                }
                next = earliest(next, a.next_due());
            }
            let mine: Vec<u32> = up.source_constraints.iter().map(|c| c.0).collect();
            let a = &mut up.video_constraints;
            let follows = |h: i32| {
                mine.iter()
                    .filter_map(|si| src(*si))
                    .map(|s| source_follows(s, h, now_ms))
                    .max()
                    .unwrap_or(Verdict::Unknown)
            };
            while let Some(told) = poll_announcement(a, now, follows) {
                let m = channel::sender_video_constraints(told.ideal_height());
                ctx.counters.inc(Stat::SenderConstraintsSent);
                ctx.counters.inc(Stat::ChannelMessagesSent);
                sink.emit(Output::Text { to, text: &m });
            }
            next = earliest(next, a.next_due());
        }
        self.arm(ConferenceTimer::SenderConstraints, next, ctx);
    }

    /// The receiver's current allocation, for the shell and tests.
    pub fn allocation(&self, h: EndpointHandle) -> Option<&Allocation> {
        Some(&self.endpoint(h)?.downlink.allocation)
    }

    /// Layers whose activity changed (an encoding stopped or started): allocate again.
    pub(super) fn check_layers(&mut self, now: Instant, ctx: &mut Ctx) {
        let now_ms = self.ms(now);
        let mut changed: Vec<(u32, u32)> = Vec::new(); // (owner, source)
        for (si, s) in self.sources.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            if let Some(l) = s.layers.as_ref() {
                let m = l.active_mask(now_ms);
                if m != s.active_mask {
                    s.active_mask = m;
                    changed.push((s.owner, si as u32));
                }
            }
        }
        if changed.is_empty() {
            return;
        }
        self.reallocate_soon(now, ctx);
        // Does the sender still follow what it was told?
        let mut due: Option<Instant> = None;
        for (owner, si) in changed {
            let Some(Some(o)) = self.endpoints.get_mut(owner as usize) else {
                continue;
            };
            let up = &mut o.uplink;
            for (_, _, a) in up.source_constraints.iter_mut().filter(|c| c.0 == si) {
                due = earliest(due, a.recheck(now));
            }
            due = earliest(due, up.video_constraints.recheck(now));
        }
        self.arm_earlier(ConferenceTimer::SenderConstraints, due, ctx);
    }

    /// Sends receiver `r` its forwarded set in both dialects (modern `ForwardedSources` with source
    /// names, 2021 `LastNEndpointsChangeEvent` with endpoint ids).
    pub(super) fn send_forwarded(&self, r: u32, ctx: &mut Ctx, sink: &mut impl Sink) {
        let Some(recv) = self.ep(r) else { return };
        if !recv.transport.data_channel_open {
            return;
        }
        let mut names: Vec<&str> = Vec::new();
        let mut owners: Vec<&str> = Vec::new();
        for &si in &recv.downlink.forwarded {
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
}

/// The next message of `a` due at `now`: a pending value, or a nudge when its verification
/// (`follows` of the told height) says the sender's layers do not follow.
fn poll_announcement(
    a: &mut Announcement,
    now: Instant,
    follows: impl Fn(i32) -> Verdict,
) -> Option<Told> {
    match a.poll(now) {
        Due::Nothing => None,
        Due::Send(t) => Some(t),
        Due::Verify(h) => a.verified(now, follows(h)),
    }
}

/// Whether the layers the bridge receives of `s` follow a constraint of `height`.
fn source_follows(s: &MediaSource, height: i32, now_ms: u64) -> Verdict {
    let Some(l) = s.layers.as_ref() else {
        return Verdict::Unknown;
    };
    let mask = l.active_mask(now_ms);
    let per_encoding = (1u64 << TEMPORAL_LAYERS) - 1;
    let encodings: Vec<(i32, bool)> = l
        .encodings
        .iter()
        .enumerate()
        .map(|(e, enc)| {
            let active =
                e * TEMPORAL_LAYERS < 64 && (mask >> (e * TEMPORAL_LAYERS)) & per_encoding != 0;
            (enc.height, active)
        })
        .collect();
    layers_follow(height, &encodings)
}

/// Last-N after the bridge's limits (`jvb-last-n` and the video SSRC limit); < 0 = unlimited.
fn effective_last_n(client: i32, cfg: &SfuConfig) -> i32 {
    [client, cfg.last_n_limit, cfg.max_video_ssrcs]
        .into_iter()
        .filter(|n| *n >= 0)
        .min()
        .unwrap_or(-1)
}

/// What a receiver's projections need of one source, read once per allocation round.
#[derive(Clone, Copy)]
struct SourceRef<'a> {
    index: u32,
    generation: u32,
    ssrc: u32,
    rtx: Option<u32>,
    owner: u32,
    kind: MediaKind,
    name: &'a str,
}
