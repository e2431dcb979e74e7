//! One timer table for a sans-IO state machine with many timers: a binary heap of
//! `(deadline, key)` with lazy invalidation, so the next deadline is a peek and arming a timer is
//! O(log n) — however many endpoints, conferences or generators own timers.
//!
//! The owner of a timer keeps its armed deadline in a [`Deadline`] next to the state that
//! needs it (an uplink's feedback generators, a receiver's estimator, a conference's periodic
//! work, a transport). The table never removes entries: an entry whose deadline is no longer the
//! one its owner recorded is stale and is dropped when it reaches the top ([`TimerTable::pop_due`]
//! returns it, [`Deadline::fire`] says no). Owners on hot paths only ever *lower* their deadline
//! ([`TimerTable::lower`]): a deadline that moved later is left armed and fires early, the owner
//! finds nothing due and arms the real one. That bounds the heap to about one live entry per
//! timer plus the lowered ones still in flight, and keeps per-packet cost at one comparison.
//!
//! Same idea as quinn-proto's timer table and the lazily invalidated timer heaps of event loops;
//! the one used here is generic over the key so the forwarding core and the port share it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::time::Instant;

/// The deadline an owner has armed in a [`TimerTable`] (`None`: nothing armed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn get(&self) -> Option<Instant> {
        self.0
    }

    /// A popped entry `(key, at)` is this owner's current deadline: disarms and returns true.
    /// False for a stale entry (the owner re-armed or disarmed since).
    pub fn fire(&mut self, at: Instant) -> bool {
        if self.0 == Some(at) {
            self.0 = None;
            true
        } else {
            false
        }
    }

    /// Forgets the armed deadline (its heap entry becomes stale).
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

struct Entry<K> {
    at: Instant,
    /// Insertion order: ties fire first-armed first.
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.seq == other.seq
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    /// Reversed: `BinaryHeap` is a max-heap, the earliest deadline must be on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The heap. Keys name what fires (see each user's key type).
pub struct TimerTable<K> {
    heap: BinaryHeap<Entry<K>>,
    seq: u64,
}

impl<K> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K> TimerTable<K> {
    fn push(&mut self, at: Instant, key: K) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            key,
        });
    }

    /// Arms exactly `at` (or disarms with `None`): for deadlines that move both ways but rarely.
    pub fn set(&mut self, slot: &mut Deadline, key: K, at: Option<Instant>) {
        if slot.0 == at {
            return;
        }
        slot.0 = at;
        if let Some(t) = at {
            self.push(t, key);
        }
    }

    /// Arms `at` if it is earlier than what `slot` has armed (or nothing is). A later deadline
    /// keeps the armed one, which then fires early: the hot-path form (see the module docs).
    #[inline]
    pub fn lower(&mut self, slot: &mut Deadline, key: K, at: Option<Instant>) {
        if let Some(t) = at
            && slot.0.is_none_or(|armed| t < armed)
        {
            slot.0 = Some(t);
            self.push(t, key);
        }
    }

    /// The earliest entry's deadline (it may be stale: waking for it is harmless).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|e| e.at)
    }

    /// The next entry due at `now`, earliest first. The caller asks the owner whether it is
    /// current ([`Deadline::fire`]).
    pub fn pop_due(&mut self, now: Instant) -> Option<(K, Instant)> {
        if self.heap.peek()?.at > now {
            return None;
        }
        self.heap.pop().map(|e| (e.key, e.at))
    }

    /// Drops every entry `keep` refuses (e.g. all timers of something that is gone), so an idle
    /// owner of the table reports no deadline. O(entries): for rare events only.
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.heap.retain(|e| keep(&e.key));
    }

    /// Entries in the heap, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn earliest_first_and_stale_entries_are_recognised() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t: TimerTable<u32> = TimerTable::default();
        let (mut a, mut b) = (Deadline::default(), Deadline::default());
        t.set(&mut a, 1, Some(ms(30)));
        t.set(&mut b, 2, Some(ms(10)));
        assert_eq!(t.next_deadline(), Some(ms(10)));
        // Lowering pushes; raising with `lower` keeps the armed (earlier) deadline.
        t.lower(&mut a, 1, Some(ms(20)));
        t.lower(&mut a, 1, Some(ms(25)));
        t.lower(&mut a, 1, None);
        assert_eq!(a.get(), Some(ms(20)));
        assert_eq!(t.len(), 3);
        assert_eq!(t.pop_due(ms(5)), None);
        let mut fired = Vec::new();
        while let Some((k, at)) = t.pop_due(ms(40)) {
            let slot = if k == 1 { &mut a } else { &mut b };
            if slot.fire(at) {
                fired.push((k, at));
            }
        }
        // The entry at 30 was superseded by the one at 20.
        assert_eq!(fired, vec![(2, ms(10)), (1, ms(20))]);
        assert!(t.is_empty() && a.get().is_none() && b.get().is_none());
        // `set` re-arms later (a new entry), `disarm` makes the entry stale.
        t.set(&mut a, 1, Some(ms(50)));
        t.set(&mut a, 1, Some(ms(60)));
        a.disarm();
        while let Some((_, at)) = t.pop_due(ms(100)) {
            assert!(!a.fire(at));
        }
        // `retain` forgets what is gone.
        t.set(&mut a, 1, Some(ms(200)));
        t.set(&mut b, 2, Some(ms(300)));
        t.retain(|k| *k != 1);
        assert_eq!(t.next_deadline(), Some(ms(300)));
    }

    #[test]
    fn ties_fire_in_arming_order() {
        let t0 = Instant::now();
        let mut t: TimerTable<u32> = TimerTable::default();
        let mut slots = [Deadline::default(); 3];
        for (k, s) in slots.iter_mut().enumerate() {
            t.set(s, k as u32, Some(t0));
        }
        let order: Vec<u32> = std::iter::from_fn(|| t.pop_due(t0).map(|(k, _)| k)).collect();
        assert_eq!(order, vec![0, 1, 2]);
    }
}
