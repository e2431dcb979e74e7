//! The bridge channel: messages from an endpoint (constraints, last-N, endpoint messages and
//! statistics to relay, video type changes) and the messages the conference sends on its own
//! (what a client needs when its channel opens, dominant speaker changes).

use std::time::Instant;

use crate::sfu::api::{EndpointHandle, Event, Output, Sink};
use crate::sfu::channel::{self, ChannelError, ClientMessage};
use crate::sfu::context::Ctx;
use crate::sfu::counters::{DropReason, Stat};
use crate::sfu::endpoint::Endpoint;
use crate::sfu::model::MediaKind;

use super::{Conference, RECENT_SPEAKERS};

impl Conference {
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
                if ep.downlink.settings.apply(
                    u,
                    cfg.default_max_height,
                    cfg.assumed_bandwidth_limit,
                ) {
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::AudioSubscription(a) => {
                if ep.downlink.settings.audio != a {
                    ep.downlink.settings.audio = a;
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::LastN(n) => {
                if ep.downlink.settings.last_n != n {
                    ep.downlink.settings.last_n = n;
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::EndpointMessage(m) => {
                if ep.visitor {
                    return;
                }
                if !ep.relay_budget.take(now, text.len()) {
                    ctx.counters.drop(DropReason::ChannelRateLimited);
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
                if !ep.relay_budget.take(now, text.len()) {
                    ctx.counters.drop(DropReason::ChannelRateLimited);
                    return;
                }
                let sender_sources = ep.uplink.sources.clone();
                ctx.text = channel::relay_stats(&st, &ep.id);
                let filter = self.endpoint_count() >= ctx.cfg.stats_filter_threshold;
                self.broadcast_text(from.idx, ctx, sink, |r| {
                    !filter
                        || r.downlink
                            .forwarded
                            .iter()
                            .any(|s| sender_sources.contains(s))
                });
            }
            ClientMessage::SourceVideoType { source, video_type } => {
                let owned = ep.uplink.sources.clone();
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
                let owned = ep.uplink.sources.clone();
                let mut changed = false;
                for si in owned {
                    if let Some(Some(s)) = self.sources.get_mut(si as usize)
                        && s.kind == MediaKind::Video
                        && s.video_type != video_type
                    {
                        s.video_type = video_type;
                        changed = true;
                    }
                }
                // Allocation runs only when something changed: a client repeating its video type
                // costs no allocation (nor the messages it sends).
                if changed {
                    self.reallocate(now, ctx, sink);
                }
            }
            ClientMessage::Ignored => {}
        }
    }

    /// Sends `ctx.text` to every other endpoint with an open channel that `filter` accepts.
    pub(super) fn broadcast_text(
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

    /// What a client needs when its channel opens: the dominant speaker, its forwarded set, the
    /// endpoints currently inactive, and (again: whatever was sent before may be lost) what it
    /// should send.
    pub(super) fn on_channel_open(
        &mut self,
        now: Instant,
        r: u32,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
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
        // SSRC rewriting: every current mapping (what was sent before may be lost).
        self.announce_slots(r, MediaKind::Video, false, ctx, sink);
        self.announce_slots(r, MediaKind::Audio, false, ctx, sink);
        if let Some(Some(ep)) = self.endpoints.get_mut(r as usize) {
            for (_, _, a) in &mut ep.uplink.source_constraints {
                a.channel_opened(now);
            }
            ep.uplink.video_constraints.channel_opened(now);
        }
        self.flush_sender_constraints(now, ctx, sink);
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
        let silence = self.speaker.in_silence();
        Some(channel::dominant_speaker(&dom.id, &prev, silence))
    }

    /// `DominantSpeakerEndpointChangeEvent` to every endpoint with an open channel.
    pub(super) fn broadcast_dominant_speaker(&self, ctx: &mut Ctx, sink: &mut impl Sink) {
        let Some(msg) = self.dominant_speaker_message() else {
            return;
        };
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

    pub(super) fn on_dominant_speaker(
        &mut self,
        now: Instant,
        d: u32,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        self.recent_speakers.retain(|e| *e != d);
        self.recent_speakers.insert(0, d);
        self.recent_speakers.truncate(RECENT_SPEAKERS);
        ctx.counters.inc(Stat::DominantSpeakerChanges);
        self.broadcast_dominant_speaker(ctx, sink);
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
                .map(|e| e.uplink.sources.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|si| self.src(*si).is_some_and(|s| s.kind == MediaKind::Video))
                .collect();
            for si in video {
                self.request_keyframe(now, si, 0, ctx, sink);
            }
        }
    }
}
