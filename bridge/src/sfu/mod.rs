//! The bridge's forwarding core: a synchronous, sans-IO state machine.
//!
//! No sockets, no async, no locks, no clock and no entropy of its own: every entry point takes
//! `now` and a [`Sink`] that receives the outputs synchronously, while the call runs; randomness
//! comes from a seeded PRNG ([`SfuConfig::seed`]). Outputs borrow the core's buffers
//! ([`Output::Rtp`] hands out the rewritten packet in place), so the forwarding path does not
//! allocate per packet; a shell that needs to keep an output copies it (the transport encrypts into
//! its own buffer anyway).
//!
//! ```text
//!   COLIBRI2 ──create/update/expire──▶ ┌──────────┐ ──Output::Rtp/Rtcp(to, bytes)──▶ transport (encrypt, send)
//!   transport ──rtp/rtcp (decrypted)─▶ │   Sfu    │ ──Output::Text(to, json)───────▶ transport (data channel)
//!   transport ──data channel text───▶ │          │ ──Output::Event(..)────────────▶ shell (tear down, logs)
//!   transport ──TransportEvent──────▶ └──────────┘
//!   timer ─────handle_timeout(now)──▶   poll_timeout() says when (one timer table)
//! ```
//!
//! Inputs name endpoints by [`EndpointHandle`] (returned by [`Sfu::create_endpoint`]), so the per
//! packet path needs no string lookups. Conferences are independent: a shell that wants several
//! cores runs one `Sfu` per worker and pins each conference to one of them.
//!
//! ## Who owns what
//! | file | state | job |
//! |---|---|---|
//! | `mod.rs` | conferences by slot, meeting-id index | [`Sfu`]: the entry points, routing to conferences, the timer dispatch |
//! | `api.rs`, `config.rs` | — | handles, inputs, outputs, events, errors; tunables |
//! | `context.rs` | counters, egress buffers, PRNG, the timer table | what all conferences of a core share |
//! | `conference/` | endpoint, source and SSRC-claim tables, speaker detector, periodic deadlines | the router between uplinks and downlinks (see its docs) |
//! | `endpoint.rs` | identity, negotiated parameters, transport state, activity | the one endpoint record |
//! | `uplink.rs` | per sender: SSRC table (receive stats, duplicate window, NACK generator), transport-cc feedback generator, what it was asked to encode | ingress stages, feedback toward the sender |
//! | `sender_constraints.rs` | — | when a sender constraint goes out: hold-off, coalescing, re-send on channel open, verification and nudge |
//! | `source.rs` | per published source: encodings, per-encoding codec stream state (AV1 Dependency Descriptor structures, VP9 scalability structure), layer measurement, retransmission store, keyframe limiter | measurement stage |
//! | `downlink.rs`, `settings.rs` | per receiver: settings (constraints, last-N), allocation, forwarded set, projections, sent log, estimator | forward stage, NACK answers, probing |
//! | `projection/` | per (receiver, source): target, switch filter, codec context | the forwarding decision and rewrite, codec by codec |
//! | `codec.rs`, `vp8.rs`, `av1/`, `vp9/` | — | the codec interface; VP8 payload descriptor; AV1 Dependency Descriptor (parse, write, per-stream structures); VP9 payload descriptor and scalability structure |
//! | `allocation.rs`, `layers.rs` | — | layer selection (pure function), layer bitrates and heights |
//! | `bwe/`, `tcc_feedback/`, `nack_gen.rs`, `recv_stats.rs`, `rtx_cache.rs`, `keyframe.rs` | — | estimator, feedback formats and generators, RR statistics, retransmission store and log, keyframe throttle |
//! | `ssrc_slots.rs` | per SSRC-rewriting receiver: its pools of bridge-chosen SSRCs, who owns each, what it last carried | continuity across a change of owner, the maps the receiver is told |
//! | `speaker.rs`, `dsi.rs` | — | dominant speaker detection |
//! | `rtp.rs`, `rtcp.rs`, `channel.rs` | — | wire formats (RTP, RTCP, bridge-channel JSON) |
//!
//! ## Per packet
//! [`Sfu::handle_rtp`] → `Conference::on_rtp`: parse (every header extension validated once) →
//! **uplink** `arrive` (one hash lookup of the SSRC in the sender's table; transport-cc arrival;
//! receive statistics) → (sender RTX: unwrapped into its media packet) → `accept` (NACK gaps,
//! duplicate drop) → **source** measurement (audio level: speaker detection, silence discard;
//! video: [`codec::inspect_packet`] — keyframe, layers, the codec's frame descriptor — and the
//! layer's bitrate) → **router** `fan_out` → for each other endpoint its **downlink** `forward`: the
//! [`projection::Projection`] for that source decides (target layer, keyframe switch rules,
//! temporal layer, payload type negotiated) and rewrites (SSRC, sequence number, timestamp, codec
//! fields, header extensions renumbered, the bridge's transport-cc number, reported to that
//! receiver's estimator) into one reused scratch buffer, handed to the sink. Video packets a
//! receiver may NACK are stored once per source (not per receiver) and logged per receiver
//! ([`rtx_cache`]). Nothing allocates once the buffers are warm (`benches/tests/alloc_free.rs`
//! counts allocations and asserts zero).
//!
//! ## Timers
//! One [`TimerTable`](crate::timer::TimerTable) per core, keyed by what fires: a conference's
//! periodic jobs, an endpoint's uplink (feedback, NACKs), an endpoint's downlink (probes). Owners
//! keep their armed deadline; [`Sfu::poll_timeout`] is a heap peek and [`Sfu::handle_timeout`]
//! pops what is due, so neither scans conferences or endpoints.
//!
//! ## Layer selection
//! Each receiver's [`allocation::allocate`] runs on membership, source, constraint, layer activity
//! and speaker changes, when its bandwidth estimate moves by more than 15 %, and every 5 s; its
//! result sets the projections' targets, the forwarded set (`ForwardedSources` and
//! `LastNEndpointsChangeEvent`) and, over all receivers, what each sender is asked to encode
//! (`SenderSourceConstraints`, `SenderVideoConstraints`): held off 300 ms after a change and after
//! the previous message so that only the latest value goes out, re-sent when the sender's channel
//! opens, and nudged (`h + 1`, then `h`) when the layers the bridge receives do not follow it a few
//! seconds later ([`sender_constraints`]). Receivers that negotiated transport-cc
//! get a send-side estimator ([`bwe`]) fed by their feedback; when the allocation wants more than
//! the estimate, probe clusters of RTX copies (or RTX padding) test the link. The end-to-end
//! behaviour (links of limited capacity, loss, jitter; simulated browsers) is exercised by
//! `bridge/tests/sim_simulcast.rs`. An SVC sender (AV1 or VP9, one SSRC with spatial layers) is
//! measured per spatial layer, each an encoding of the allocation (`source.rs`); its codec context
//! maps the target back to a spatial/temporal layer and switches without a keyframe wherever the
//! structure allows (`projection/layered.rs`; scenario: `tests/svc.rs`).
//!
//! Measured (`cargo bench -p benches --bench sfu_packet_path -- --warm-up-time 1
//! --measurement-time 3`, release, this 2-core machine shared with other builds, medians): RTP
//! parse 25–29 ns; SSRC lookup 2 ns; rewrite of a 1200-byte packet 40 ns; NACK → RTX 0.33 µs;
//! ingress → N egress for a 1200-byte VP8 packet (delta frames, a keyframe every 64): N=1 230 ns,
//! N=10 1.2 µs, N=50 7.6 µs (≈ 150 ns per receiver: the 1200-byte copy, the VP8 frame decision and
//! PictureID/TL0PICIDX rewrite, the send-side estimator's record of the transport-cc number, the
//! sent log); audio N=1 148 ns, N=10 0.65 µs, N=50 4.4 µs. Layer selection and VP8 costs:
//! `benches/benches/simulcast.rs`. A first version wrote each receiver's copy into its own
//! 512-slot retransmission ring: 20 µs at N=50 (cold cache lines), hence the shared per-source
//! store and the compact (36-byte) per-receiver sent log.

pub mod allocation;
pub mod api;
pub mod av1;
pub mod bwe;
pub mod channel;
pub mod codec;
mod conference;
pub mod config;
mod context;
pub mod counters;
mod downlink;
pub mod dsi;
mod endpoint;
pub mod frames;
pub mod keyframe;
pub mod layers;
pub mod link_quality;
pub mod model;
pub mod nack_gen;
pub mod projection;
pub mod rate;
pub mod recv_stats;
pub mod rtcp;
pub mod rtp;
pub mod rtx_cache;
pub mod sender_constraints;
mod settings;
mod source;
pub mod speaker;
pub mod ssrc_slots;
pub mod tcc_feedback;
mod uplink;
pub mod vp8;
pub mod vp9;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Instant;

pub use api::{
    Collect, ConferenceHandle, DownlinkEstimate, EndpointHandle, EndpointInfo, EndpointParams,
    EndpointUpdate, Event, ExpireReason, FeedbackSources, ForceMute, Output, OwnedOutput, SfuError,
    SfuStats, Sink, TransportEvent,
};
pub use config::SfuConfig;
pub use counters::{Counters, DropReason, Stat};
pub use link_quality::LinkStats;
pub use model::{MediaKind, MediaSourceDesc};

use conference::Conference;
use context::Ctx;

/// A conference whose timer jobs panic (unit tests of the isolation in [`Sfu::handle_timeout`]).
#[cfg(test)]
pub(crate) const TEST_PANIC_TIMER_MEETING: &str = "test-panic-timer";

/// The live conference `h` names (the handle's generation must match).
fn conf_mut(confs: &mut [Option<Conference>], h: ConferenceHandle) -> Option<&mut Conference> {
    confs
        .get_mut(h.idx as usize)?
        .as_mut()
        .filter(|c| c.handle == h)
}

/// The forwarding core. See the module docs.
pub struct Sfu {
    ctx: Ctx,
    conferences: Vec<Option<Conference>>,
    gens: Vec<u32>,
    by_meeting: HashMap<String, u32>,
}

impl Sfu {
    pub fn new(cfg: SfuConfig) -> Self {
        Sfu {
            ctx: Ctx::new(cfg),
            conferences: Vec::new(),
            gens: Vec::new(),
            by_meeting: HashMap::new(),
        }
    }

    pub fn config(&self) -> &SfuConfig {
        &self.ctx.cfg
    }

    pub fn counters(&self) -> &Counters {
        &self.ctx.counters
    }

    fn conf(&self, h: ConferenceHandle) -> Option<&Conference> {
        self.conferences
            .get(h.idx as usize)?
            .as_ref()
            .filter(|c| c.handle == h)
    }

    // ---------------------------------------------------------------------------- commands

    /// COLIBRI2 `create="true"`: a new conference for `meeting_id`.
    pub fn create_conference(
        &mut self,
        now: Instant,
        meeting_id: &str,
        name: Option<&str>,
    ) -> Result<ConferenceHandle, SfuError> {
        if self.by_meeting.contains_key(meeting_id) {
            return Err(SfuError::ConferenceExists(meeting_id.to_owned()));
        }
        let idx = match self.conferences.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                self.conferences.push(None);
                self.gens.push(0);
                self.conferences.len() - 1
            }
        };
        let handle = ConferenceHandle {
            idx: idx as u32,
            generation: self.gens[idx],
        };
        let mut feedback = FeedbackSources {
            audio_ssrc: 0,
            video_ssrc: 0,
        };
        while feedback.audio_ssrc == 0 {
            feedback.audio_ssrc = self.ctx.rng.next_u32();
        }
        while feedback.video_ssrc == 0 || feedback.video_ssrc == feedback.audio_ssrc {
            feedback.video_ssrc = self.ctx.rng.next_u32();
        }
        let c = Conference::new(handle, meeting_id, name, feedback, now, &mut self.ctx);
        self.conferences[idx] = Some(c);
        self.by_meeting.insert(meeting_id.to_owned(), idx as u32);
        self.ctx.counters.inc(Stat::ConferencesCreated);
        Ok(handle)
    }

    /// The conference for a COLIBRI2 `meeting-id`.
    pub fn find_conference(&self, meeting_id: &str) -> Option<ConferenceHandle> {
        let idx = *self.by_meeting.get(meeting_id)?;
        Some(self.conf_by_idx(idx)?.handle)
    }

    fn conf_by_idx(&self, idx: u32) -> Option<&Conference> {
        self.conferences.get(idx as usize)?.as_ref()
    }

    pub fn meeting_id(&self, conf: ConferenceHandle) -> Option<&str> {
        Some(&self.conf(conf)?.meeting_id)
    }

    /// The conference's `name` (room JID) as given at creation.
    pub fn conference_name(&self, conf: ConferenceHandle) -> Option<&str> {
        self.conf(conf)?.name.as_deref()
    }

    /// The conference's feedback SSRCs (`jvb-a0`, `jvb-v0`) for the COLIBRI2 answer.
    pub fn feedback_sources(&self, conf: ConferenceHandle) -> Option<FeedbackSources> {
        Some(self.conf(conf)?.feedback)
    }

    /// COLIBRI2 conference `expire="true"`: every endpoint expires, then the conference.
    pub fn expire_conference(
        &mut self,
        now: Instant,
        conf: ConferenceHandle,
        sink: &mut impl Sink,
    ) {
        let Some(c) = conf_mut(&mut self.conferences, conf) else {
            return;
        };
        c.expire_all(now, &mut self.ctx, sink);
        self.reap(conf.idx, sink);
    }

    /// COLIBRI2 endpoint `create="true"`.
    pub fn create_endpoint(
        &mut self,
        now: Instant,
        conf: ConferenceHandle,
        params: EndpointParams,
        sink: &mut impl Sink,
    ) -> Result<EndpointHandle, SfuError> {
        let c = conf_mut(&mut self.conferences, conf).ok_or(SfuError::ConferenceNotFound)?;
        let h = c.add_endpoint(now, params, &mut self.ctx, sink)?;
        self.ctx.counters.inc(Stat::EndpointsCreated);
        Ok(h)
    }

    /// The endpoint called `id` in `conf`.
    pub fn find_endpoint(&self, conf: ConferenceHandle, id: &str) -> Option<EndpointHandle> {
        self.conf(conf)?.find_endpoint(id)
    }

    pub fn endpoint_id(&self, ep: EndpointHandle) -> Option<&str> {
        Some(&self.conf(ep.conf)?.endpoint(ep)?.id)
    }

    /// The identity of endpoint `ep`.
    pub fn endpoint_info(&self, ep: EndpointHandle) -> Option<EndpointInfo<'_>> {
        let c = self.conf(ep.conf)?;
        let e = c.endpoint(ep)?;
        Some(EndpointInfo {
            id: &e.id,
            stats_id: e.stats_id.as_deref(),
            meeting_id: &c.meeting_id,
            visitor: e.visitor,
        })
    }

    /// The SSRCs endpoint `ep` sends that the conference accepted (its sources' media, RTX and
    /// FEC SSRCs): what its transport may decrypt (`transport::ssrc_filter`).
    pub fn endpoint_ssrcs(&self, ep: EndpointHandle) -> impl Iterator<Item = u32> + '_ {
        self.conf(ep.conf)
            .and_then(|c| c.endpoint(ep))
            .into_iter()
            .flat_map(|e| e.uplink.ssrcs.keys().copied())
    }

    /// The endpoints of conference `conf`.
    pub fn endpoints(&self, conf: ConferenceHandle) -> impl Iterator<Item = EndpointHandle> + '_ {
        self.conf(conf)
            .into_iter()
            .flat_map(Conference::endpoint_handles)
    }

    /// Endpoints in conference `conf` (0 for an unknown one).
    pub fn endpoint_count(&self, conf: ConferenceHandle) -> usize {
        self.conf(conf).map_or(0, Conference::endpoint_count)
    }

    /// Endpoints per live conference.
    pub fn conference_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.conferences
            .iter()
            .flatten()
            .map(Conference::endpoint_count)
    }

    /// COLIBRI2 endpoint update (sources, media, force-mute, initial-last-n).
    pub fn update_endpoint(
        &mut self,
        now: Instant,
        ep: EndpointHandle,
        update: EndpointUpdate,
        sink: &mut impl Sink,
    ) -> Result<(), SfuError> {
        let c = conf_mut(&mut self.conferences, ep.conf).ok_or(SfuError::ConferenceNotFound)?;
        c.update_endpoint(now, ep, update, &mut self.ctx, sink)
    }

    /// COLIBRI2 endpoint `expire="true"`. Expiring the last endpoint expires the conference.
    pub fn expire_endpoint(&mut self, now: Instant, ep: EndpointHandle, sink: &mut impl Sink) {
        let Some(c) = conf_mut(&mut self.conferences, ep.conf) else {
            return;
        };
        c.remove_endpoint(now, ep, ExpireReason::Requested, &mut self.ctx, sink);
        self.reap(ep.conf.idx, sink);
    }

    // ---------------------------------------------------------------------------- media

    /// Runs `f` on the conference of endpoint `h` (an input from it); counted as dropped if the
    /// conference is gone.
    #[inline]
    fn route(&mut self, h: EndpointHandle, f: impl FnOnce(&mut Conference, &mut Ctx)) {
        match conf_mut(&mut self.conferences, h.conf) {
            Some(c) => f(c, &mut self.ctx),
            None => self.ctx.counters.drop(DropReason::UnknownEndpoint),
        }
    }

    /// A decrypted RTP packet from `from`. Forwarded copies go to the sink as [`Output::Rtp`].
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        packet: &[u8],
        sink: &mut impl Sink,
    ) {
        self.route(from, |c, ctx| c.on_rtp(now, from, packet, ctx, sink));
    }

    /// A receiver's downlink bandwidth estimate (bps) from outside the core (the shell's
    /// estimator, tests). Re-allocates for it if the estimate moved by more than
    /// `bwe_change_threshold`.
    pub fn set_bandwidth_estimate(
        &mut self,
        now: Instant,
        ep: EndpointHandle,
        bps: u64,
        sink: &mut impl Sink,
    ) {
        self.route(ep, |c, ctx| {
            c.on_bandwidth_estimate(now, ep, bps, ctx, sink)
        });
    }

    /// The downlink bandwidth estimator's state for receiver `ep` (stats, diagnostics).
    pub fn downlink_estimate(&self, ep: EndpointHandle) -> Option<DownlinkEstimate> {
        let e = self.conf(ep.conf)?.endpoint(ep)?;
        let b = e.downlink.bwe.as_ref()?;
        let (probes_started, probes_succeeded) = b.probe_stats();
        Some(DownlinkEstimate {
            estimate_bps: b.poll_estimate(),
            delay_based_bps: b.delay_based_bps(),
            acknowledged_bps: b.acknowledged_bps(),
            loss_fraction: b.loss_fraction(),
            probes_started,
            probes_succeeded,
        })
    }

    /// The last allocation for receiver `ep`: per source the target and ideal layers, the
    /// effective constraints, and the target/ideal bitrates.
    pub fn allocation(&self, ep: EndpointHandle) -> Option<&allocation::Allocation> {
        self.conf(ep.conf)?.allocation(ep)
    }

    /// A decrypted RTCP compound packet from `from`.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        packet: &[u8],
        sink: &mut impl Sink,
    ) {
        self.route(from, |c, ctx| c.on_rtcp(now, from, packet, ctx, sink));
    }

    /// A bridge-channel text message from `from`.
    pub fn handle_channel_message(
        &mut self,
        now: Instant,
        from: EndpointHandle,
        text: &str,
        sink: &mut impl Sink,
    ) {
        self.route(from, |c, ctx| {
            c.on_channel_message(now, from, text, ctx, sink)
        });
    }

    /// A transport state change of `ep`.
    pub fn handle_transport_event(
        &mut self,
        now: Instant,
        ep: EndpointHandle,
        event: TransportEvent,
        sink: &mut impl Sink,
    ) {
        self.route(ep, |c, ctx| c.on_transport_event(now, ep, event, ctx, sink));
        self.reap(ep.conf.idx, sink);
    }

    // ---------------------------------------------------------------------------- time

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next (the earliest armed
    /// timer; O(1)).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ctx.timers.next_deadline()
    }

    /// Runs what is due: receiver reports, feedback and NACKs toward senders, probes, dominant
    /// speaker evaluation, connectivity status, expiry. Calling it early is harmless. Work that
    /// becomes due at `now` while this runs (a re-allocation after a layer check) runs too; a
    /// bounded number of timers fire per call, so a timer that keeps re-arming at `now` cannot
    /// keep it from returning.
    pub fn handle_timeout(&mut self, now: Instant, sink: &mut impl Sink) {
        let mut budget = self.ctx.timers.len() + 16;
        while budget > 0
            && let Some((key, at)) = self.ctx.timers.pop_due(now)
        {
            budget -= 1;
            let conf = key.conference();
            if let Some(c) = conf_mut(&mut self.conferences, conf) {
                // A panic in one conference's job removes that conference, not the others'.
                let ctx = &mut self.ctx;
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    #[cfg(test)]
                    if c.meeting_id == TEST_PANIC_TIMER_MEETING {
                        panic!("injected by a test");
                    }
                    c.on_timer(now, key, at, ctx, sink);
                }));
                if ran.is_err() {
                    // The shell logs the conference's expiry with reason `Fault`.
                    self.remove_faulted_conference(conf, sink);
                    continue;
                }
                self.reap(conf.idx, sink);
            }
        }
    }

    /// Removes conference `conf` after handling one of its inputs panicked, running none of its
    /// logic (its state may be half-updated): each endpoint expires ([`ExpireReason::Fault`], so
    /// the shell tears its transport down), then the conference. False if it is already gone.
    pub fn remove_faulted_conference(
        &mut self,
        conf: ConferenceHandle,
        sink: &mut impl Sink,
    ) -> bool {
        let Some(slot) = self.conferences.get_mut(conf.idx as usize) else {
            return false;
        };
        if !slot.as_ref().is_some_and(|c| c.handle == conf) {
            return false;
        }
        let Some(c) = slot.take() else { return false };
        let endpoints: Vec<(EndpointHandle, String)> = c
            .endpoint_handles()
            .filter_map(|h| Some((h, c.endpoint(h)?.id.clone())))
            .collect();
        for (endpoint, endpoint_id) in endpoints {
            self.ctx.counters.inc(Stat::EndpointsExpired);
            sink.emit(Output::Event(Event::EndpointExpired {
                endpoint,
                meeting_id: c.meeting_id.clone(),
                endpoint_id,
                reason: ExpireReason::Fault,
            }));
        }
        self.ctx.timers.retain(|k| k.conference() != conf);
        self.by_meeting.remove(&c.meeting_id);
        if let Some(g) = self.gens.get_mut(conf.idx as usize) {
            *g = g.wrapping_add(1);
        }
        self.ctx.counters.inc(Stat::ConferencesExpired);
        self.ctx.counters.inc(Stat::ConferencesFaulted);
        sink.emit(Output::Event(Event::ConferenceExpired {
            conference: c.handle,
            meeting_id: c.meeting_id,
            created_at: c.created_at,
        }));
        true
    }

    /// Removes a conference that has become empty, with its event.
    fn reap(&mut self, idx: u32, sink: &mut impl Sink) {
        let Some(slot) = self.conferences.get_mut(idx as usize) else {
            return;
        };
        if !slot.as_ref().is_some_and(Conference::should_expire) {
            return;
        }
        if let Some(c) = slot.take() {
            let gone = c.handle;
            self.ctx.timers.retain(|k| k.conference() != gone);
            self.by_meeting.remove(&c.meeting_id);
            self.gens[idx as usize] = self.gens[idx as usize].wrapping_add(1);
            self.ctx.counters.inc(Stat::ConferencesExpired);
            if let Some(outcome) = c.outcome() {
                self.ctx.counters.inc(outcome);
            }
            sink.emit(Output::Event(Event::ConferenceExpired {
                conference: c.handle,
                meeting_id: c.meeting_id,
                created_at: c.created_at,
            }));
        }
    }

    // ---------------------------------------------------------------------------- stats

    /// RTT, jitter and who is sending, over every endpoint (`/colibri/stats`).
    pub fn link_stats(&self, now: Instant) -> LinkStats {
        let mut s = LinkStats::default();
        for c in self.conferences.iter().flatten() {
            c.add_link_stats(now, &mut s);
        }
        s
    }

    pub fn stats(&self) -> SfuStats {
        let mut s = SfuStats::default();
        for c in self.conferences.iter().flatten() {
            let n = c.endpoint_count();
            s.conferences += 1;
            s.endpoints += n;
            s.largest_conference = s.largest_conference.max(n);
            s.active_endpoints += c.active_endpoint_count();
            s.sources += c.source_count();
        }
        s
    }
}
