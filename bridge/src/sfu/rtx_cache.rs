//! What a NACK is answered from, without keeping one copy of every packet per receiver.
//!
//! - [`PacketStore`] (one per video source): the ingress packets as the sender sent them, in a ring
//!   of `capacity` slots (default 512, [`SfuConfig::rtx_store_packets`](super::SfuConfig)). A
//!   packet is stored once, however many receivers get it, and only if some receiver negotiated
//!   NACK for its payload type. Each slot owns a buffer that grows to the largest packet written
//!   into it and is then reused, so a warm store does not allocate. Memory per video source ≤
//!   capacity × largest packet (≈ 512 × 1.2 kB ≈ 600 kB); at a primary encoding's 50–250 packets/s
//!   that is 2–10 s of history.
//! - [`SentLog`] (one per receiver): for each packet sent to that receiver, the egress SSRC and
//!   sequence number, the store slot (with its generation, so an overwritten slot is detected) and
//!   the rewrite that was applied. Default 1024 entries × 36 bytes ≈ 36 kB per receiver.
//!
//! A NACK looks the (SSRC, seq) up in the receiver's log (scan, newest first: NACKs are rare next
//! to media), fetches the ingress packet from the source's store, and rebuilds exactly the packet
//! that was sent (then wraps it in RTX if negotiated). The forwarding path thus writes each
//! egress packet into one hot scratch buffer instead of a cold per-receiver ring: that is what
//! keeps the per-receiver cost flat as receivers are added (see the benches).

use std::time::{Duration, Instant};

use super::codec::PayloadRewrite;

#[derive(Debug, Default)]
struct StoredPacket {
    buf: Vec<u8>,
    /// Bumped each time the slot is overwritten.
    generation: u32,
}

/// Ring of ingress packets of one source.
#[derive(Debug)]
pub struct PacketStore {
    slots: Vec<StoredPacket>,
    capacity: usize,
    next: usize,
}

/// Where a packet was stored: slot index and the slot's generation at the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRef {
    pub slot: u32,
    pub generation: u32,
}

impl PacketStore {
    pub fn new(capacity: usize) -> Self {
        PacketStore {
            slots: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
        }
    }

    /// Copies `packet` into the next slot (evicting the oldest).
    pub fn put(&mut self, packet: &[u8]) -> StoreRef {
        if self.slots.len() < self.capacity {
            self.slots.push(StoredPacket {
                buf: Vec::with_capacity(1500),
                generation: 0,
            });
            self.next = self.slots.len() - 1;
        }
        let i = self.next;
        self.next = (self.next + 1) % self.capacity;
        let s = &mut self.slots[i];
        s.generation = s.generation.wrapping_add(1);
        s.buf.clear();
        s.buf.extend_from_slice(packet);
        StoreRef {
            slot: i as u32,
            generation: s.generation,
        }
    }

    /// The packet stored under `r`, unless the slot has been reused since.
    pub fn get(&self, r: StoreRef) -> Option<&[u8]> {
        let s = self.slots.get(r.slot as usize)?;
        (s.generation == r.generation).then_some(s.buf.as_slice())
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// One packet sent to a receiver, enough to rebuild it (36 bytes: one is written per forwarded
/// packet per receiver, so it is kept small). The header-extension plan is recomputed from the
/// negotiated parameters when a NACK comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentEntry {
    pub ssrc: u32,
    pub timestamp: u32,
    /// Source slot (the store lives in the source).
    pub source: u32,
    pub stored: StoreRef,
    /// Milliseconds since the log's epoch (wrapping).
    pub sent_ms: u32,
    /// When last resent, or [`NEVER`].
    pub resent_ms: u32,
    pub seq: u16,
    /// Low 16 bits of the source slot's generation.
    pub source_gen: u16,
    /// The codec rewrite that was applied, packed (see [`SentEntry::rewrite`]): the codec in
    /// `flags`, its fields here.
    rewrite_a: u16,
    rewrite_b: u8,
    pub flags: u8,
}

impl SentEntry {
    pub const VIDEO: u8 = 1;
    /// `flags` bit: the rewrite is [`PayloadRewrite::Vp8`].
    const VP8: u8 = 2;
    /// A packet of a keyframe.
    pub const KEYFRAME: u8 = 4;
    /// `flags` bit: the rewrite is [`PayloadRewrite::Av1`] (frame number and template id kept;
    /// a retransmission patches the sender's descriptor with them, see
    /// [`PayloadRewrite::descriptor`]).
    const AV1: u8 = 8;
    /// With [`Self::AV1`] or [`Self::VP9`]: the marker bit the packet was sent with.
    const MARKER: u8 = 16;
    /// `flags` bit: the rewrite is [`PayloadRewrite::Vp9`].
    const VP9: u8 = 32;

    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn new(
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        source: u32,
        source_gen: u16,
        stored: StoreRef,
        sent_ms: u32,
        rewrite: PayloadRewrite,
        flags: u8,
    ) -> Self {
        let (codec, rewrite_a, rewrite_b) = match rewrite {
            PayloadRewrite::None => (0, 0, 0),
            PayloadRewrite::Vp8 {
                picture_id,
                tl0picidx,
            } => (Self::VP8, picture_id, tl0picidx),
            PayloadRewrite::Vp9 {
                picture_id,
                tl0picidx,
                marker,
            } => (
                Self::VP9 | if marker { Self::MARKER } else { 0 },
                picture_id,
                tl0picidx,
            ),
            PayloadRewrite::Av1 {
                frame_number,
                template_id,
                marker,
                ..
            } => (
                Self::AV1 | if marker { Self::MARKER } else { 0 },
                frame_number,
                template_id,
            ),
        };
        SentEntry {
            ssrc,
            timestamp,
            source,
            stored,
            sent_ms,
            resent_ms: NEVER,
            seq,
            source_gen,
            rewrite_a,
            rewrite_b,
            flags: (flags & !(Self::VP8 | Self::AV1 | Self::VP9 | Self::MARKER)) | codec,
        }
    }

    pub fn video(&self) -> bool {
        self.flags & Self::VIDEO != 0
    }

    /// The codec rewrite that was applied.
    pub fn rewrite(&self) -> PayloadRewrite {
        if self.flags & Self::VP8 != 0 {
            PayloadRewrite::Vp8 {
                picture_id: self.rewrite_a,
                tl0picidx: self.rewrite_b,
            }
        } else if self.flags & Self::VP9 != 0 {
            PayloadRewrite::Vp9 {
                picture_id: self.rewrite_a,
                tl0picidx: self.rewrite_b,
                marker: self.flags & Self::MARKER != 0,
            }
        } else if self.flags & Self::AV1 != 0 {
            PayloadRewrite::Av1 {
                frame_number: self.rewrite_a,
                template_id: self.rewrite_b,
                structure_offset: None,
                active_decode_targets: None,
                marker: self.flags & Self::MARKER != 0,
            }
        } else {
            PayloadRewrite::None
        }
    }
}

/// `resent_ms` of a packet never resent.
pub const NEVER: u32 = u32::MAX;

/// Ring of what was sent to one receiver.
#[derive(Debug)]
pub struct SentLog {
    entries: Vec<SentEntry>,
    capacity: usize,
    next: usize,
    max_age_ms: u32,
    epoch: Instant,
}

impl SentLog {
    pub fn new(capacity: usize, max_age: Duration, epoch: Instant) -> Self {
        SentLog {
            entries: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
            max_age_ms: u32::try_from(max_age.as_millis()).unwrap_or(u32::MAX),
            epoch,
        }
    }

    /// `now` on the log's millisecond clock.
    #[inline]
    pub fn ms(&self, now: Instant) -> u32 {
        now.saturating_duration_since(self.epoch).as_millis() as u32
    }

    #[inline]
    pub fn push(&mut self, e: SentEntry) {
        if self.entries.len() < self.capacity {
            self.entries.push(e);
            self.next = self.entries.len() % self.capacity;
        } else {
            self.entries[self.next] = e;
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// Index and copy of the newest entry for (`ssrc`, `seq`) sent within the max age.
    pub fn find(&self, now: Instant, ssrc: u32, seq: u16) -> Option<(usize, SentEntry)> {
        let n = self.entries.len();
        if n == 0 {
            return None;
        }
        let now_ms = self.ms(now);
        let newest = (self.next + n - 1) % n;
        (0..n).map(|k| (newest + n - k) % n).find_map(|i| {
            let e = self.entries[i];
            (e.ssrc == ssrc && e.seq == seq && now_ms.wrapping_sub(e.sent_ms) <= self.max_age_ms)
                .then_some((i, e))
        })
    }

    /// Up to `n` entries sent within the max age, newest first.
    pub fn recent(&self, now: Instant, n: usize) -> impl Iterator<Item = (usize, SentEntry)> + '_ {
        let len = self.entries.len();
        let now_ms = self.ms(now);
        let newest = (self.next + len).wrapping_sub(1) % len.max(1);
        (0..len.min(n))
            .map(move |k| (newest + len - k) % len)
            .filter_map(move |i| {
                let e = *self.entries.get(i)?;
                (now_ms.wrapping_sub(e.sent_ms) <= self.max_age_ms).then_some((i, e))
            })
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut SentEntry> {
        self.entries.get_mut(i)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_detects_overwritten_slots_and_reuses_buffers() {
        let mut s = PacketStore::new(2);
        let a = s.put(b"one");
        let b = s.put(b"two");
        assert_eq!(s.get(a), Some(&b"one"[..]));
        let c = s.put(b"three"); // evicts "one"
        assert_eq!(c.slot, a.slot);
        assert_eq!(s.get(a), None);
        assert_eq!(s.get(b), Some(&b"two"[..]));
        assert_eq!(s.get(c), Some(&b"three"[..]));
        assert_eq!(
            s.get(StoreRef {
                slot: 9,
                generation: 1
            }),
            None
        );
    }

    fn entry(l: &SentLog, now: Instant, ssrc: u32, seq: u16) -> SentEntry {
        let stored = StoreRef {
            slot: 0,
            generation: 0,
        };
        let rewrite = PayloadRewrite::Vp8 {
            picture_id: seq,
            tl0picidx: 3,
        };
        SentEntry::new(
            ssrc,
            seq,
            0,
            0,
            0,
            stored,
            l.ms(now),
            rewrite,
            SentEntry::VIDEO | SentEntry::KEYFRAME,
        )
    }

    #[test]
    fn an_entry_keeps_its_rewrite_in_36_bytes() {
        let t0 = Instant::now();
        let l = SentLog::new(4, Duration::from_secs(1), t0);
        let e = entry(&l, t0, 1, 77);
        assert_eq!(std::mem::size_of::<SentEntry>(), 36);
        assert!(e.video() && e.flags & SentEntry::KEYFRAME != 0);
        assert_eq!(
            e.rewrite(),
            PayloadRewrite::Vp8 {
                picture_id: 77,
                tl0picidx: 3
            }
        );
        assert_eq!(e.resent_ms, NEVER);
    }

    #[test]
    fn log_is_bounded_and_ages_out() {
        let t0 = Instant::now();
        let mut l = SentLog::new(4, Duration::from_secs(1), t0);
        for seq in 0..6u16 {
            let e = entry(&l, t0, 1, seq);
            l.push(e);
        }
        assert_eq!(l.len(), 4);
        assert!(l.find(t0, 1, 0).is_none());
        assert!(l.find(t0, 1, 1).is_none());
        assert_eq!(l.find(t0, 1, 5).map(|(_, e)| e.seq), Some(5));
        assert_eq!(l.find(t0, 1, 2).map(|(_, e)| e.seq), Some(2));
        assert!(l.find(t0, 2, 5).is_none());
        assert!(l.find(t0 + Duration::from_secs(2), 1, 5).is_none());
        assert_eq!(std::mem::size_of::<SentEntry>(), 36);
    }
}
