//! Per-receiver retransmission cache: the packets exactly as the bridge sent them to this receiver
//! (after rewriting), so a NACK can be answered without asking the sender.
//!
//! Bounded: a ring of `capacity` slots (default 512 per receiver, see
//! [`SfuConfig::rtx_cache_packets`](super::SfuConfig::rtx_cache_packets)); each slot owns a buffer
//! that grows to the largest packet written into it and is then reused, so once warm the cache does
//! not allocate. Memory per receiver ≤ capacity × largest packet (≈ 512 × 1.2 kB ≈ 600 kB). At a
//! receiver's typical 250–500 video packets/s this keeps 1–2 s of history, longer than any useful
//! retransmission. Packets older than `max_age` are not resent. NACK lookups scan the ring
//! (newest first); NACKs are rare compared to media, and the scan is a few hundred compares.
//!
//! The slot buffer doubles as the egress buffer: the forwarding path writes the rewritten packet
//! straight into the slot and hands that slice to the output sink, so caching costs no extra copy.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Slot {
    pub buf: Vec<u8>,
    pub ssrc: u32,
    pub seq: u16,
    /// Source slot of the packet (finds the projection for RTX).
    pub source: u32,
    pub video: bool,
    pub sent_at: Option<Instant>,
    pub last_resent: Option<Instant>,
}

#[derive(Debug)]
pub struct RtxCache {
    slots: Vec<Slot>,
    capacity: usize,
    next: usize,
    max_age: Duration,
}

impl RtxCache {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        RtxCache {
            slots: Vec::new(),
            capacity: capacity.max(1),
            next: 0,
            max_age,
        }
    }

    /// The slot the next sent packet is written into (its previous content is evicted). The caller
    /// fills `buf`, `ssrc`, `seq`, `source`, `video` and sets `sent_at`.
    pub fn next_slot(&mut self) -> &mut Slot {
        if self.slots.len() < self.capacity {
            self.slots.push(Slot {
                buf: Vec::with_capacity(1500),
                ssrc: 0,
                seq: 0,
                source: 0,
                video: false,
                sent_at: None,
                last_resent: None,
            });
            self.next = self.slots.len() - 1;
        }
        let i = self.next;
        self.next = (self.next + 1) % self.capacity;
        let s = &mut self.slots[i];
        s.sent_at = None;
        s.last_resent = None;
        s
    }

    /// Index of the newest slot holding (`ssrc`, `seq`) sent within `max_age` of `now`.
    pub fn find(&self, now: Instant, ssrc: u32, seq: u16) -> Option<usize> {
        let n = self.slots.len();
        (0..n).map(|k| (self.next + n - 1 - k) % n).find(|&i| {
            let s = &self.slots[i];
            s.ssrc == ssrc
                && s.seq == seq
                && s.sent_at
                    .is_some_and(|t| now.saturating_duration_since(t) <= self.max_age)
        })
    }

    pub fn slot(&self, i: usize) -> Option<&Slot> {
        self.slots.get(i)
    }

    pub fn slot_mut(&mut self, i: usize) -> Option<&mut Slot> {
        self.slots.get_mut(i)
    }

    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.sent_at.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(c: &mut RtxCache, now: Instant, ssrc: u32, seq: u16) {
        let s = c.next_slot();
        s.buf.clear();
        s.buf.extend_from_slice(&seq.to_be_bytes());
        s.ssrc = ssrc;
        s.seq = seq;
        s.sent_at = Some(now);
    }

    #[test]
    fn bounded_ring_evicts_oldest_and_expires_by_age() {
        let t0 = Instant::now();
        let mut c = RtxCache::new(4, Duration::from_secs(1));
        for seq in 0..6u16 {
            put(&mut c, t0, 1, seq);
        }
        assert_eq!(c.len(), 4);
        assert!(c.find(t0, 1, 0).is_none());
        assert!(c.find(t0, 1, 1).is_none());
        let i = c.find(t0, 1, 5).unwrap();
        assert_eq!(c.slot(i).unwrap().buf, 5u16.to_be_bytes());
        assert!(c.find(t0, 2, 5).is_none());
        assert!(c.find(t0 + Duration::from_secs(2), 1, 5).is_none());
        // Buffers are reused: capacity stays.
        let cap = c.slot(i).unwrap().buf.capacity();
        put(&mut c, t0, 1, 6);
        assert!(c.slot(i).unwrap().buf.capacity() >= cap);
    }
}
