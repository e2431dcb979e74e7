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
//!   the rewrite that was applied. Default 1024 entries × 56 bytes ≈ 56 kB per receiver.
//!
//! A NACK looks the (SSRC, seq) up in the receiver's log (scan, newest first: NACKs are rare next
//! to media), fetches the ingress packet from the source's store, and rebuilds exactly the packet
//! that was sent (then wraps it in RTX if negotiated). The forwarding path thus writes each
//! egress packet into one hot scratch buffer instead of a cold per-receiver ring: that is what
//! keeps the per-receiver cost flat as receivers are added (see the benches).

use std::time::{Duration, Instant};

use super::rtp::ExtMap;

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

/// One packet sent to a receiver, enough to rebuild it.
#[derive(Debug, Clone, Copy)]
pub struct SentEntry {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    /// Source slot and its generation (the store lives in the source).
    pub source: u32,
    pub source_gen: u32,
    pub stored: StoreRef,
    pub ext: ExtMap,
    pub video: bool,
    pub sent_at: Instant,
    pub last_resent: Option<Instant>,
}

/// Ring of what was sent to one receiver.
#[derive(Debug)]
pub struct SentLog {
    entries: Vec<SentEntry>,
    capacity: usize,
    next: usize,
    max_age: Duration,
}

impl SentLog {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        SentLog {
            entries: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
            max_age,
        }
    }

    pub fn push(&mut self, e: SentEntry) {
        if self.entries.len() < self.capacity {
            self.entries.push(e);
            self.next = self.entries.len() % self.capacity;
        } else {
            self.entries[self.next] = e;
            self.next = (self.next + 1) % self.capacity;
        }
    }

    /// The newest entry for (`ssrc`, `seq`) sent within `max_age` of `now`.
    pub fn find_mut(&mut self, now: Instant, ssrc: u32, seq: u16) -> Option<&mut SentEntry> {
        let n = self.entries.len();
        let max_age = self.max_age;
        let newest = (self.next + n - 1) % n.max(1);
        let idx = (0..n).map(|k| (newest + n - k) % n).find(|&i| {
            let e = &self.entries[i];
            e.ssrc == ssrc && e.seq == seq && now.saturating_duration_since(e.sent_at) <= max_age
        })?;
        self.entries.get_mut(idx)
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

    fn entry(now: Instant, ssrc: u32, seq: u16) -> SentEntry {
        SentEntry {
            ssrc,
            seq,
            timestamp: 0,
            source: 0,
            source_gen: 0,
            stored: StoreRef {
                slot: 0,
                generation: 0,
            },
            ext: ExtMap::default(),
            video: true,
            sent_at: now,
            last_resent: None,
        }
    }

    #[test]
    fn log_is_bounded_and_ages_out() {
        let t0 = Instant::now();
        let mut l = SentLog::new(4, Duration::from_secs(1));
        for seq in 0..6u16 {
            l.push(entry(t0, 1, seq));
        }
        assert_eq!(l.len(), 4);
        assert!(l.find_mut(t0, 1, 0).is_none());
        assert!(l.find_mut(t0, 1, 1).is_none());
        assert_eq!(l.find_mut(t0, 1, 5).map(|e| e.seq), Some(5));
        assert_eq!(l.find_mut(t0, 1, 2).map(|e| e.seq), Some(2));
        assert!(l.find_mut(t0, 2, 5).is_none());
        assert!(l.find_mut(t0 + Duration::from_secs(2), 1, 5).is_none());
    }
}
