//! SSRC rewriting: a receiver that advertised it (COLIBRI2 endpoint capability `ssrc-rewriting`,
//! the client's `http://jitsi.org/ssrc-rewriting-1`) gets every other endpoint's media on a
//! bounded pool of bridge-chosen SSRCs per media kind instead of the senders' own, and learns
//! which source each one carries from `VideoSourcesMap` / `AudioSourcesMap` on the bridge channel
//! (jitsi-videobridge `jvb/src/main/kotlin/org/jitsi/videobridge/SsrcCache.kt`; lib-jitsi-meet
//! `modules/xmpp/JingleSessionPC.ts` `processSourceMap` adds a new SSRC to its remote description
//! and re-owns a known one in place).
//!
//! A [`SlotPool`] holds up to `capacity` [`Slot`]s (JVB `videobridge.ssrc-limit.video` / `.audio`,
//! 50 each): an SSRC (video: with an RTX SSRC), a `mid` for `rtp-mid-demux`, the source it
//! currently carries and what the receiver last saw on it ([`Tail`]). Video sources are mapped
//! when the allocation runs (the forwarded ones first), audio sources on their first packet (as
//! JVB: whoever speaks takes a slot); when the pool is full the least recently used slot changes
//! owner. A source removed (or its endpoint gone) frees its slot; a free slot is reused before a
//! new SSRC is made, so the client's tracks stay bounded.
//!
//! The receiver's decoder must not notice a change of owner: the new owner's projection (fresh,
//! starting at a keyframe) is shifted by constant [`Deltas`] computed at its first packet, so that
//! its sequence numbers continue the slot's, its timestamps advance by the wall-clock time since
//! the slot's last packet, and the codec's picture IDs / TL0PICIDX (VP8, VP9) or frame numbers
//! (AV1) continue too. The RTX stream's sequence numbers continue through the slot. Everything
//! here is plain arithmetic on the packet path: no allocation.

use std::time::Instant;

use crate::random::Rng;

use super::codec::PayloadRewrite;
use super::model::MediaKind;
use super::projection::stream::Rewritten;
use super::rtp::SdesMid;

/// Which source a slot carries: the source table index and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub source: u32,
    pub generation: u32,
}

/// What the receiver last got on a slot: where the next owner continues.
#[derive(Debug, Clone, Copy)]
pub struct Tail {
    pub seq: u16,
    pub timestamp: u32,
    pub at: Instant,
    /// VP8/VP9 PictureID (15-bit space) and TL0PICIDX of the newest packet, if it had them.
    pub picture_id: Option<u16>,
    pub tl0picidx: Option<u8>,
    /// AV1 Dependency Descriptor frame number.
    pub frame_number: Option<u16>,
}

/// One bridge-chosen SSRC (and RTX SSRC) of a receiver.
#[derive(Debug, Clone)]
pub struct Slot {
    pub ssrc: u32,
    /// Video: the RTX SSRC announced with it (audio: 0).
    pub rtx: u32,
    /// `a<n>` / `v<n>` when the receiver demuxes by mid.
    pub mid: SdesMid,
    pub owner: Option<Owner>,
    /// The current mapping was sent to the receiver (its channel was open).
    pub announced: bool,
    pub tail: Option<Tail>,
    /// Next RTX sequence number on this slot's RTX SSRC (kept while no projection holds it).
    pub rtx_seq: u16,
    last_used: u64,
}

/// A projection's link to the slot it is forwarded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLink {
    pub index: u16,
    /// Set at the first packet forwarded on this mapping.
    pub deltas: Option<Deltas>,
}

/// Added to what the projection computed (its own continuous stream) to continue the slot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deltas {
    pub seq: u16,
    pub timestamp: u32,
    pub picture_id: u16,
    pub tl0picidx: u8,
    pub frame_number: u16,
}

impl SlotLink {
    pub fn new(index: usize) -> Self {
        SlotLink {
            index: index as u16,
            deltas: None,
        }
    }

    /// The projection's rewrite `r` as sent on `slot` at `now`: the deltas of this mapping
    /// (computed now if this is its first packet; `clock` is the media clock rate, `min_step` the
    /// least timestamp advance over the previous owner's last packet), and the slot's tail
    /// advanced.
    #[inline]
    pub fn apply(
        &mut self,
        slot: &mut Slot,
        mut r: Rewritten,
        now: Instant,
        clock: u32,
        min_step: u32,
    ) -> Rewritten {
        let d = *self.deltas.get_or_insert_with(|| {
            Deltas::continuing(slot.tail.as_ref(), &r, now, clock, min_step)
        });
        r.seq = r.seq.wrapping_add(d.seq);
        r.timestamp = r.timestamp.wrapping_add(d.timestamp);
        let (mut picture_id, mut tl0picidx, mut frame_number) = (None, None, None);
        match &mut r.payload {
            PayloadRewrite::None => {}
            PayloadRewrite::Vp8 {
                picture_id: p,
                tl0picidx: t,
            }
            | PayloadRewrite::Vp9 {
                picture_id: p,
                tl0picidx: t,
                ..
            } => {
                *p = p.wrapping_add(d.picture_id) & 0x7fff;
                *t = t.wrapping_add(d.tl0picidx);
                picture_id = Some(*p);
                tl0picidx = Some(*t);
            }
            PayloadRewrite::Av1 {
                frame_number: f, ..
            } => {
                *f = f.wrapping_add(d.frame_number);
                frame_number = Some(*f);
            }
        }
        let newer = slot
            .tail
            .is_none_or(|t| r.seq != t.seq && r.seq.wrapping_sub(t.seq) < 0x8000);
        if newer {
            let old = slot.tail;
            slot.tail = Some(Tail {
                seq: r.seq,
                timestamp: r.timestamp,
                at: now,
                picture_id: picture_id.or(old.and_then(|t| t.picture_id)),
                tl0picidx: tl0picidx.or(old.and_then(|t| t.tl0picidx)),
                frame_number: frame_number.or(old.and_then(|t| t.frame_number)),
            });
        }
        r
    }
}

impl Deltas {
    /// The deltas that make `first` (the new owner's first packet) follow `tail`.
    fn continuing(
        tail: Option<&Tail>,
        first: &Rewritten,
        now: Instant,
        clock: u32,
        min_step: u32,
    ) -> Deltas {
        let Some(t) = tail else {
            return Deltas::default();
        };
        let elapsed_ms = now.saturating_duration_since(t.at).as_millis();
        let step = (elapsed_ms.saturating_mul(u128::from(clock)) / 1000)
            .min(u128::from(u32::MAX / 2)) as u32;
        let next_ts = t.timestamp.wrapping_add(step.max(min_step));
        let mut d = Deltas {
            seq: t.seq.wrapping_add(1).wrapping_sub(first.seq),
            timestamp: next_ts.wrapping_sub(first.timestamp),
            ..Deltas::default()
        };
        match first.payload {
            PayloadRewrite::Vp8 {
                picture_id,
                tl0picidx,
            }
            | PayloadRewrite::Vp9 {
                picture_id,
                tl0picidx,
                ..
            } => {
                if let Some(p) = t.picture_id {
                    d.picture_id = p.wrapping_add(1).wrapping_sub(picture_id) & 0x7fff;
                }
                if let Some(l) = t.tl0picidx {
                    d.tl0picidx = l.wrapping_add(1).wrapping_sub(tl0picidx);
                }
            }
            PayloadRewrite::Av1 { frame_number, .. } => {
                if let Some(f) = t.frame_number {
                    d.frame_number = f.wrapping_add(1).wrapping_sub(frame_number);
                }
            }
            PayloadRewrite::None => {}
        }
        d
    }
}

/// A receiver's slots for one media kind. See the module docs.
#[derive(Debug, Clone)]
pub struct SlotPool {
    kind: MediaKind,
    capacity: usize,
    slots: Vec<Slot>,
    tick: u64,
}

/// What [`SlotPool::assign`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub index: usize,
    /// The source that had the slot before (the least recently used one).
    pub evicted: Option<Owner>,
}

impl SlotPool {
    pub fn new(kind: MediaKind, capacity: usize) -> Self {
        SlotPool {
            kind,
            capacity,
            slots: Vec::new(),
            tick: 0,
        }
    }

    pub fn kind(&self) -> MediaKind {
        self.kind
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    #[inline]
    pub fn get(&self, i: u16) -> Option<&Slot> {
        self.slots.get(usize::from(i))
    }

    #[inline]
    pub fn get_mut(&mut self, i: u16) -> Option<&mut Slot> {
        self.slots.get_mut(usize::from(i))
    }

    /// Marks slot `i` as just used (the packet path: the LRU order).
    #[inline]
    pub fn touch(&mut self, i: u16) {
        self.tick += 1;
        let t = self.tick;
        if let Some(s) = self.slots.get_mut(usize::from(i)) {
            s.last_used = t;
        }
    }

    /// The slot `owner` has.
    pub fn of(&self, owner: Owner) -> Option<usize> {
        self.slots.iter().position(|s| s.owner == Some(owner))
    }

    /// The slot whose SSRC or RTX SSRC is `ssrc` (the receiver's feedback names them).
    pub fn by_ssrc(&self, ssrc: u32) -> Option<&Slot> {
        self.slots
            .iter()
            .find(|s| s.ssrc == ssrc || (s.rtx != 0 && s.rtx == ssrc))
    }

    /// Whether `ssrc` is one of this pool's SSRCs.
    pub fn uses(&self, ssrc: u32) -> bool {
        self.by_ssrc(ssrc).is_some()
    }

    /// A slot for `owner`: the one it has, else a free one, else a new one while below capacity,
    /// else the least recently used one whose owner is not in `keep` (`None` if every slot is
    /// kept). A new slot takes SSRCs from `new_ssrc` (which must not return SSRCs in use);
    /// `mid_demux` gives it a mid.
    pub fn assign(
        &mut self,
        owner: Owner,
        keep: &[u32],
        mid_demux: bool,
        mut new_ssrc: impl FnMut(&Self) -> u32,
    ) -> Option<Assigned> {
        if let Some(i) = self.of(owner) {
            self.touch(i as u16);
            return Some(Assigned {
                index: i,
                evicted: None,
            });
        }
        let free = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owner.is_none())
            .min_by_key(|(_, s)| s.last_used)
            .map(|(i, _)| i);
        let (index, evicted) = if let Some(i) = free {
            (i, None)
        } else if self.slots.len() < self.capacity {
            let ssrc = new_ssrc(self);
            let rtx = match self.kind {
                MediaKind::Video => {
                    let mut r = new_ssrc(self);
                    while r == ssrc {
                        r = new_ssrc(self);
                    }
                    r
                }
                MediaKind::Audio => 0,
            };
            let prefix = match self.kind {
                MediaKind::Audio => 'a',
                MediaKind::Video => 'v',
            };
            let mid = if mid_demux {
                SdesMid::new(prefix, self.slots.len())
            } else {
                SdesMid::default()
            };
            self.slots.push(Slot {
                ssrc,
                rtx,
                mid,
                owner: None,
                announced: false,
                tail: None,
                rtx_seq: (ssrc >> 16) as u16,
                last_used: 0,
            });
            (self.slots.len() - 1, None)
        } else {
            let i = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.owner.is_none_or(|o| !keep.contains(&o.source)))
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i)?;
            (i, self.slots[i].owner)
        };
        let s = &mut self.slots[index];
        s.owner = Some(owner);
        s.announced = false;
        self.touch(index as u16);
        Some(Assigned { index, evicted })
    }

    /// Frees slot `i` (its source went away or it was given to another), keeping its SSRCs and
    /// tail for the next owner; `rtx_seq` is where its RTX stream stands.
    pub fn release(&mut self, i: u16, rtx_seq: u16) {
        if let Some(s) = self.slots.get_mut(usize::from(i)) {
            s.owner = None;
            s.announced = false;
            s.rtx_seq = rtx_seq;
        }
    }
}

/// A receiver's SSRC rewriting state: one pool per media kind.
#[derive(Debug, Clone)]
pub struct SsrcRewriting {
    pub audio: SlotPool,
    pub video: SlotPool,
    /// Stamp the slots' mids (`rtp-mid-demux`; only if the receiver negotiated sdes:mid).
    pub mid_demux: bool,
}

impl SsrcRewriting {
    pub fn new(audio: usize, video: usize, mid_demux: bool) -> Self {
        SsrcRewriting {
            audio: SlotPool::new(MediaKind::Audio, audio),
            video: SlotPool::new(MediaKind::Video, video),
            mid_demux,
        }
    }

    #[inline]
    pub fn pool(&self, kind: MediaKind) -> &SlotPool {
        match kind {
            MediaKind::Audio => &self.audio,
            MediaKind::Video => &self.video,
        }
    }

    #[inline]
    pub fn pool_mut(&mut self, kind: MediaKind) -> &mut SlotPool {
        match kind {
            MediaKind::Audio => &mut self.audio,
            MediaKind::Video => &mut self.video,
        }
    }

    /// Whether `ssrc` is one of the receiver's slot SSRCs (new SSRCs must avoid them).
    pub fn uses(&self, ssrc: u32) -> bool {
        self.audio.uses(ssrc) || self.video.uses(ssrc)
    }

    /// [`SlotPool::assign`] in the `kind` pool; new SSRCs are random, non-zero, and neither the
    /// receiver's other slots' nor `taken` (the conference's senders').
    pub fn assign(
        &mut self,
        kind: MediaKind,
        owner: Owner,
        keep: &[u32],
        rng: &mut Rng,
        taken: impl Fn(u32) -> bool,
    ) -> Option<Assigned> {
        let mid = self.mid_demux;
        let (pool, other) = match kind {
            MediaKind::Audio => (&mut self.audio, &self.video),
            MediaKind::Video => (&mut self.video, &self.audio),
        };
        pool.assign(owner, keep, mid, |p| {
            loop {
                let s = rng.next_u32();
                if s != 0 && !p.uses(s) && !other.uses(s) && !taken(s) {
                    return s;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn owner(source: u32) -> Owner {
        Owner {
            source,
            generation: 0,
        }
    }

    fn counter() -> impl FnMut(&SlotPool) -> u32 {
        let mut n = 1000;
        move |_| {
            n += 1;
            n
        }
    }

    #[test]
    fn slots_are_made_up_to_capacity_then_the_least_recently_used_changes_owner() {
        let mut p = SlotPool::new(MediaKind::Video, 2);
        let mut ssrc = counter();
        let a = p.assign(owner(1), &[], true, &mut ssrc).unwrap();
        let b = p.assign(owner(2), &[], true, &mut ssrc).unwrap();
        assert_eq!((a.index, b.index), (0, 1));
        assert_eq!((p.slots()[0].ssrc, p.slots()[0].rtx), (1001, 1002));
        assert_eq!(p.slots()[1].mid.as_bytes(), b"v1");
        // Source 1 was used more recently than 2: 2's slot goes to 3.
        p.touch(0);
        let c = p.assign(owner(3), &[], true, &mut ssrc).unwrap();
        assert_eq!(c.index, 1);
        assert_eq!(c.evicted, Some(owner(2)));
        assert_eq!(p.slots().len(), 2);
        // A source that has a slot keeps it.
        assert_eq!(p.assign(owner(1), &[], true, &mut ssrc).unwrap().index, 0);
        // Kept owners are never evicted; with all kept, no slot.
        assert_eq!(p.assign(owner(4), &[1, 3], true, &mut ssrc), None);
        // A freed slot is reused before anything else.
        p.release(0, 77);
        let d = p.assign(owner(4), &[], true, &mut ssrc).unwrap();
        assert_eq!((d.index, d.evicted), (0, None));
        assert_eq!(p.slots()[0].rtx_seq, 77);
        assert_eq!(p.by_ssrc(1002).and_then(|s| s.owner), Some(owner(4)));
    }

    #[test]
    fn a_new_owner_continues_the_slot_sequence_timestamp_and_picture_id() {
        let t0 = Instant::now();
        let mut p = SlotPool::new(MediaKind::Video, 1);
        p.assign(owner(1), &[], false, counter());
        let slot = p.get_mut(0).unwrap();
        let vp8 = |seq: u16, ts: u32, pic: u16, tl0: u8| Rewritten {
            seq,
            timestamp: ts,
            payload: PayloadRewrite::Vp8 {
                picture_id: pic,
                tl0picidx: tl0,
            },
            keyframe: false,
        };
        // The first owner: unchanged (the slot is fresh).
        let mut l1 = SlotLink::new(0);
        assert_eq!(
            l1.apply(slot, vp8(500, 9000, 40, 3), t0, 90_000, 3000),
            vp8(500, 9000, 40, 3)
        );
        l1.apply(slot, vp8(501, 12000, 41, 4), t0, 90_000, 3000);
        // 100 ms later a source at seq 60000, ts 7, picture 30000 takes over.
        let mut l2 = SlotLink::new(0);
        let t1 = t0 + Duration::from_millis(100);
        let r = l2.apply(slot, vp8(60000, 7, 30000, 200), t1, 90_000, 3000);
        assert_eq!(r, vp8(502, 12000 + 9000, 42, 5));
        let r = l2.apply(slot, vp8(60001, 3007, 30001, 201), t1, 90_000, 3000);
        assert_eq!(r, vp8(503, 24000, 43, 6));
    }
}
