//! The SRTP/SRTCP replay window of one remote SSRC (RFC 3711 §3.3.2), as a ring of bits.
//!
//! rtc-srtp's own window (`rtc_shared::replay_detector::WrappedSlidingWindowDetector`) keeps the
//! bits in a heap vector it shifts by the packet's advance on every in-order packet: with the
//! 1024-packet window we use, a 16-word shift per decrypted packet (`FixedBigInt::lsh` was 1–2 %
//! of the bridge's CPU at 10 × 5, loadtest/REPORT.md). Here the bit of index `i` lives at
//! `i mod WINDOW`, so moving the window forward clears only the bits it passes over (usually
//! one), and the words are inline in the per-SSRC state. Decisions are the same as upstream's
//! for every input (`matches_rtc_shared_on_random_traffic` below compares them).

use rtc_shared::replay_detector::ReplayDetector;

/// Window size in packets. Generous because video bursts reorder on the way (Chromium's
/// receive window is 1024 too, `pc/srtp_session.cc` upstream). A power of two that divides
/// both index spaces, so an index's ring position survives the wrap.
pub const WINDOW: usize = 1024;
const WORDS: usize = WINDOW / 64;

/// SRTP: the 16-bit sequence number (the rollover counter is tracked apart).
pub const MAX_SRTP_INDEX: u64 = u16::MAX as u64;
/// SRTCP: the 31-bit index.
pub const MAX_SRTCP_INDEX: u64 = 0x7FFF_FFFF;

/// A sliding replay window over a wrapping index space `0..=max`.
pub struct ReplayWindow {
    max: u64,
    /// The newest accepted index (before the first packet: the one just below it).
    latest: u64,
    started: bool,
    /// Bit `i mod WINDOW`: index `i` was accepted (only meaningful within the window).
    bits: [u64; WORDS],
    /// What the last `check` let through, for `accept`.
    pending: Option<u64>,
}

impl ReplayWindow {
    pub fn new(max: u64) -> Self {
        debug_assert!((max + 1).is_multiple_of(WINDOW as u64));
        ReplayWindow {
            max,
            latest: 0,
            started: false,
            bits: [0; WORDS],
            pending: None,
        }
    }

    /// How far `index` is behind the newest accepted one (negative: ahead), on the circle.
    fn behind(&self, index: u64) -> i64 {
        let span = self.max as i64 + 1;
        let mut d = self.latest as i64 - index as i64;
        if d > self.max as i64 / 2 {
            d -= span;
        } else if d <= -(self.max as i64 / 2) {
            d += span;
        }
        d
    }

    fn bit(&self, index: u64) -> bool {
        let p = (index % WINDOW as u64) as usize;
        self.bits[p / 64] & (1 << (p % 64)) != 0
    }

    fn set(&mut self, index: u64) {
        let p = (index % WINDOW as u64) as usize;
        self.bits[p / 64] |= 1 << (p % 64);
    }

    /// Clears the ring positions of the `n` indices after `latest` (they enter the window).
    fn clear_after_latest(&mut self, n: u64) {
        if n >= WINDOW as u64 {
            self.bits = [0; WORDS];
            return;
        }
        let mut p = ((self.latest + 1) % WINDOW as u64) as usize;
        let mut left = n as usize;
        while left > 0 {
            let (word, bit) = (p / 64, p % 64);
            let take = left.min(64 - bit);
            let mask = if take == 64 {
                u64::MAX
            } else {
                ((1u64 << take) - 1) << bit
            };
            self.bits[word] &= !mask;
            left -= take;
            p = (p + take) % WINDOW;
        }
    }
}

impl ReplayDetector for ReplayWindow {
    fn check(&mut self, index: u64) -> bool {
        self.pending = None;
        if index > self.max {
            return false;
        }
        if !self.started {
            self.latest = if index == 0 { self.max } else { index - 1 };
            self.started = true;
        }
        let behind = self.behind(index);
        if behind >= WINDOW as i64 || (behind >= 0 && self.bit(index)) {
            return false;
        }
        self.pending = Some(index);
        true
    }

    fn accept(&mut self) {
        let Some(index) = self.pending.take() else {
            return;
        };
        let behind = self.behind(index);
        if behind < 0 {
            self.clear_after_latest(behind.unsigned_abs());
            self.latest = index;
        }
        self.set(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::ChaCha20Rng;
    use rand::{RngExt, SeedableRng};
    use rtc_shared::replay_detector::WrappedSlidingWindowDetector;

    fn both(max: u64) -> (ReplayWindow, WrappedSlidingWindowDetector) {
        (
            ReplayWindow::new(max),
            WrappedSlidingWindowDetector::new(WINDOW, max),
        )
    }

    #[test]
    fn in_order_reordered_replayed_and_too_old() {
        let mut w = ReplayWindow::new(MAX_SRTP_INDEX);
        for i in 100..200 {
            assert!(w.check(i));
            w.accept();
        }
        assert!(!w.check(150), "replay inside the window");
        assert!(w.check(250));
        w.accept();
        assert!(w.check(220), "late but new");
        w.accept();
        assert!(!w.check(220), "the late one again");
        assert!(w.check(1300));
        w.accept();
        assert!(!w.check(250), "older than the window");
        assert!(w.check(1299));
        w.accept();
        // A check that is not accepted (e.g. the tag failed) leaves the window as it was.
        assert!(w.check(1301));
        assert!(w.check(1301));
    }

    #[test]
    fn wraps_at_the_top_of_the_index_space() {
        let mut w = ReplayWindow::new(MAX_SRTP_INDEX);
        for i in (65_000..=65_535).chain(0..600) {
            assert!(w.check(i), "{i}");
            w.accept();
        }
        assert!(!w.check(65_535), "replay across the wrap");
        assert!(!w.check(10), "replay after the wrap");
        assert!(!w.check(65_000), "older than the window across the wrap");
    }

    /// The same answers as rtc-shared's window (which the bridge used before) on long random
    /// traffic: in-order runs, jumps, reordering, duplicates, tag failures (checked, not
    /// accepted), across the wrap of both index spaces.
    #[test]
    fn matches_rtc_shared_on_random_traffic() {
        for max in [MAX_SRTP_INDEX, MAX_SRTCP_INDEX] {
            for seed in 0..20u64 {
                let mut rng = ChaCha20Rng::seed_from_u64(seed);
                let (mut ours, mut theirs) = both(max);
                let mut next: u64 = rng.random_range(0..=max);
                for step in 0..20_000 {
                    let index = match rng.random_range(0..100) {
                        0..70 => {
                            next = (next + 1) % (max + 1);
                            next
                        }
                        70..80 => (next + max + 1 - rng.random_range(0..1100)) % (max + 1),
                        80..88 => {
                            next = (next + rng.random_range(2..1500)) % (max + 1);
                            next
                        }
                        88..93 => next,
                        93..97 => (next + max + 1 - rng.random_range(0..40)) % (max + 1),
                        _ => rng.random_range(0..=max),
                    };
                    let (a, b) = (ours.check(index), theirs.check(index));
                    assert_eq!(a, b, "max {max} seed {seed} step {step} index {index}");
                    if a && rng.random_range(0..50) != 0 {
                        ours.accept();
                        theirs.accept();
                    }
                }
            }
        }
    }
}
