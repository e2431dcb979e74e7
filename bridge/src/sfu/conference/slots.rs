//! SSRC rewriting at the router (`sfu::ssrc_slots`): which sources get a receiver's slots (video
//! when its allocation runs, audio on a source's first packet), the `VideoSourcesMap` /
//! `AudioSourcesMap` it is told before the first packet of a new mapping, and the translation of
//! its keyframe requests back to the sender's source.

use crate::sfu::allocation::Allocation;
use crate::sfu::api::{EndpointHandle, Output, Sink};
use crate::sfu::channel::{self, MappedSource};
use crate::sfu::context::Ctx;
use crate::sfu::counters::Stat;
use crate::sfu::model::MediaKind;
use crate::sfu::projection::Target;
use crate::sfu::ssrc_slots::Owner;

use super::{Conference, SsrcClaim};

impl Conference {
    /// Receiver `r`'s video slots after an allocation: its forwarded sources first, then the
    /// other video sources in priority order while there is room (JVB maps those too, so that a
    /// source the receiver starts getting later already has its SSRC); a new mapping takes the
    /// least recently used slot of a source not in that list. New mappings are announced.
    pub(super) fn map_video(
        &mut self,
        r: u32,
        alloc: &Allocation,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(cap) = self
            .ep(r)
            .and_then(|e| e.downlink.rewriting.as_deref())
            .map(|rw| rw.video.capacity())
        else {
            return;
        };
        let mut wanted: Vec<u32> = alloc.forwarded().collect();
        for s in &alloc.sources {
            if !wanted.contains(&s.slot) {
                wanted.push(s.slot);
            }
        }
        wanted.truncate(cap);
        let Conference {
            endpoints,
            sources,
            ssrc_claims,
            ..
        } = self;
        let Some(Some(ep)) = endpoints.get_mut(r as usize) else {
            return;
        };
        for &si in &wanted {
            let Some(Some(src)) = sources.get(si as usize) else {
                continue;
            };
            let owner = Owner {
                source: si,
                generation: src.generation,
            };
            ep.downlink
                .map_source(MediaKind::Video, owner, &wanted, &mut ctx.rng, |s| {
                    ssrc_claims.contains_key(&s)
                });
        }
        self.announce_slots(r, MediaKind::Video, true, ctx, sink);
    }

    /// An audio packet of `source`: every SSRC-rewriting receiver that wants it and has no slot
    /// for it gets one now (JVB `AudioSsrcCache`: whoever speaks takes the least recently used
    /// slot), announced before the packet is forwarded. Only receivers whose channel is open:
    /// the others could not be told.
    pub(super) fn map_audio(
        &mut self,
        from: u32,
        source: u32,
        generation: u32,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        // Per audio packet: one pass of cheap checks, rewriting receivers first (most are not).
        for r in 0..self.endpoints.len() as u32 {
            if r == from {
                continue;
            }
            let needs = self.ep(r).is_some_and(|e| {
                e.downlink.rewriting.is_some()
                    && e.transport.connected
                    && e.transport.data_channel_open
                    && e.downlink
                        .projection(source)
                        .is_none_or(|p| p.source_gen != generation)
                    && self
                        .src(source)
                        .is_some_and(|s| e.downlink.settings.audio.wants(&s.name))
            });
            if !needs {
                continue;
            }
            let Conference {
                endpoints,
                ssrc_claims,
                ..
            } = self;
            let Some(Some(ep)) = endpoints.get_mut(r as usize) else {
                continue;
            };
            let owner = Owner { source, generation };
            let mapped = ep
                .downlink
                .map_source(MediaKind::Audio, owner, &[], &mut ctx.rng, |s| {
                    ssrc_claims.contains_key(&s)
                });
            if mapped.is_some()
                && let Some(p) = ep.downlink.projection_mut(source)
            {
                p.target = Target::encoding(0);
            }
            self.announce_slots(r, MediaKind::Audio, true, ctx, sink);
        }
    }

    /// Sends receiver `r` the `kind` slots' mappings (`only_new`: those it was not told yet) and
    /// marks them told. Nothing if its channel is closed: it is told everything when it opens.
    pub(super) fn announce_slots(
        &mut self,
        r: u32,
        kind: MediaKind,
        only_new: bool,
        ctx: &mut Ctx,
        sink: &mut impl Sink,
    ) {
        let Some(recv) = self.ep(r) else { return };
        if !recv.transport.data_channel_open {
            return;
        }
        let Some(rw) = recv.downlink.rewriting.as_deref() else {
            return;
        };
        let mut told: Vec<u16> = Vec::new();
        let mut entries: Vec<MappedSource<'_>> = Vec::new();
        for (i, slot) in rw.pool(kind).slots().iter().enumerate() {
            let Some(o) = slot.owner else { continue };
            if only_new && slot.announced {
                continue;
            }
            let Some(src) = self.src(o.source).filter(|s| s.generation == o.generation) else {
                continue;
            };
            entries.push(MappedSource {
                source: &src.name,
                owner: self.ep(src.owner).map_or("", |e| e.id.as_str()),
                ssrc: slot.ssrc,
                rtx: slot.rtx,
                video_type: src.video_type,
                mid: slot.mid.as_str(),
            });
            told.push(i as u16);
        }
        if entries.is_empty() {
            return;
        }
        let text = channel::sources_map(kind, &entries);
        let to = recv.handle;
        if let Some(Some(ep)) = self.endpoints.get_mut(r as usize)
            && let Some(rw) = ep.downlink.rewriting.as_deref_mut()
        {
            let pool = rw.pool_mut(kind);
            for i in told {
                if let Some(s) = pool.get_mut(i) {
                    s.announced = true;
                }
            }
        }
        ctx.counters.inc(Stat::ChannelMessagesSent);
        sink.emit(Output::Text { to, text: &text });
    }

    /// The source behind `ssrc` in receiver `from`'s feedback if it is one of its video slots
    /// (`None`: not a slot; a slot without owner claims nothing).
    pub(super) fn slot_claim(&self, from: EndpointHandle, ssrc: u32) -> Option<Option<SsrcClaim>> {
        let rw = self.endpoint(from)?.downlink.rewriting.as_deref()?;
        let slot = rw.video.by_ssrc(ssrc).or(rw.audio.by_ssrc(ssrc))?;
        Some(slot.owner.and_then(|o| {
            let s = self
                .src(o.source)
                .filter(|s| s.generation == o.generation)?;
            Some(SsrcClaim {
                owner: s.owner,
                source: o.source,
            })
        }))
    }
}
