//! NACK generation toward senders (JVB `jitsi-media-transform/src/main/kotlin/org/jitsi/nlj/rtcp/RetransmissionRequester.kt`): per incoming video SSRC, sequence-number gaps
//! up to 100 packets behind the newest are requested with generic NACKs (RFC 4585 PID+BLP),
//! each missing packet at once and then every 150 ms (or about an RTT when configured), at most
//! 10 times; a packet that arrives (directly or recovered from RTX) or falls more than 100
//! behind is forgotten. A jump larger than the window is a stream discontinuity, not loss.
//!
//! One [`NackGenerator`] per media SSRC, in a fixed 128-slot table: no allocation, O(1) per packet.
//!
//! ## Wiring (conference)
//! One generator per incoming *video media* SSRC whose payload type negotiated `nack` (e.g. an
//! `Option<NackGenerator>` in the SSRC table entry). In `on_rtp`: for a media packet (padding-only
//! included — it consumes a sequence number) call `on_packet(now, seq)`; for an RTX packet, read
//! the original sequence number (first two payload bytes), find the media SSRC through the FID
//! pair and call `on_packet(now, osn)` on that SSRC's generator (→ `Arrival::Recovered`). On
//! `Arrival::Gap(_)` call `poll_nack(now, feedback.video_ssrc, buf)` and emit the RTCP to the
//! sender; add `poll_timeout()` to `next_timeout` and poll in `on_timeout` for re-requests.

use std::time::{Duration, Instant};

use super::rtcp;

const SLOTS: usize = 128;

#[derive(Debug, Clone, Copy)]
pub struct NackConfig {
    /// How far behind the newest packet a missing one is still requested (≤ 127).
    pub max_missing: u16,
    /// Re-request interval.
    pub interval: Duration,
    /// Use max(RTT + 10 ms, 20 ms) (capped by `interval`) once an RTT is known.
    pub rtt_based: bool,
    /// Requests per missing packet.
    pub max_requests: u8,
}

impl Default for NackConfig {
    fn default() -> Self {
        NackConfig {
            max_missing: 100,
            interval: Duration::from_millis(150),
            rtt_based: false,
            max_requests: 10,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Missing {
    seq: u16,
    live: bool,
    requests: u8,
    next_at: Instant,
}

/// What an arriving packet meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In order (or the first packet).
    InOrder,
    /// After a gap: this many packets became missing.
    Gap(u16),
    /// A packet we were requesting arrived (retransmission or reordering).
    Recovered,
    /// Older than the newest, not requested (duplicate or beyond the window).
    Old,
    /// A jump beyond the window: pending requests were dropped.
    Reset,
}

/// Tracks missing packets of one SSRC and writes NACKs for them.
#[derive(Debug, Clone)]
pub struct NackGenerator {
    cfg: NackConfig,
    media_ssrc: u32,
    highest: Option<u16>,
    slots: [Option<Missing>; SLOTS],
    live: usize,
    rtt: Option<Duration>,
    /// Packets requested at least once and then recovered.
    pub recovered: u64,
    /// Packets given up on (max requests or fell out of the window).
    pub given_up: u64,
}

impl NackGenerator {
    pub fn new(media_ssrc: u32, cfg: NackConfig) -> Self {
        let cfg = NackConfig {
            max_missing: cfg.max_missing.min(SLOTS as u16 - 1),
            ..cfg
        };
        NackGenerator {
            cfg,
            media_ssrc,
            highest: None,
            slots: [None; SLOTS],
            live: 0,
            rtt: None,
            recovered: 0,
            given_up: 0,
        }
    }

    pub fn media_ssrc(&self) -> u32 {
        self.media_ssrc
    }

    /// Latest RTT toward the sender (from RR/SR round trips); used when `rtt_based`.
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    fn interval(&self) -> Duration {
        match (self.cfg.rtt_based, self.rtt) {
            (true, Some(r)) => (r + Duration::from_millis(10))
                .max(Duration::from_millis(20))
                .min(self.cfg.interval),
            _ => self.cfg.interval,
        }
    }

    /// Number of packets currently being requested.
    pub fn missing_count(&self) -> usize {
        self.live
    }

    fn remove(&mut self, seq: u16) -> bool {
        let slot = &mut self.slots[usize::from(seq) % SLOTS];
        if slot.is_some_and(|m| m.live && m.seq == seq) {
            *slot = None;
            self.live -= 1;
            true
        } else {
            false
        }
    }

    fn clear(&mut self) {
        self.slots = [None; SLOTS];
        self.live = 0;
    }

    /// A packet of this SSRC arrived: `seq` is its sequence number, or for an RTX packet the
    /// original sequence number carried in its first two payload bytes.
    pub fn on_packet(&mut self, now: Instant, seq: u16) -> Arrival {
        let Some(high) = self.highest else {
            self.highest = Some(seq);
            return Arrival::InOrder;
        };
        let diff = seq.wrapping_sub(high);
        if diff == 0 {
            return Arrival::Old;
        }
        if diff >= 0x8000 {
            // Older than the newest.
            if self.remove(seq) {
                self.recovered += 1;
                return Arrival::Recovered;
            }
            return Arrival::Old;
        }
        self.highest = Some(seq);
        if diff == 1 {
            self.expire_behind(seq);
            return Arrival::InOrder;
        }
        if diff > self.cfg.max_missing {
            self.given_up += self.live as u64;
            self.clear();
            return Arrival::Reset;
        }
        for i in 1..diff {
            let m = high.wrapping_add(i);
            let slot = &mut self.slots[usize::from(m) % SLOTS];
            if slot.is_some_and(|o| o.live) {
                // An entry old enough to share the slot is beyond the window.
                self.given_up += 1;
                self.live -= 1;
            }
            *slot = Some(Missing {
                seq: m,
                live: true,
                requests: 0,
                next_at: now,
            });
            self.live += 1;
        }
        self.expire_behind(seq);
        Arrival::Gap(diff - 1)
    }

    /// Forgets entries more than `max_missing` behind `high`.
    fn expire_behind(&mut self, high: u16) {
        if self.live == 0 {
            return;
        }
        for slot in self.slots.iter_mut() {
            if let Some(m) = slot
                && m.live
                && high.wrapping_sub(m.seq) > self.cfg.max_missing
            {
                *slot = None;
                self.live -= 1;
                self.given_up += 1;
            }
        }
    }

    /// When the next NACK is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.live == 0 {
            return None;
        }
        self.slots
            .iter()
            .flatten()
            .filter(|m| m.live)
            .map(|m| m.next_at)
            .min()
    }

    /// Appends one generic NACK (sender SSRC = the bridge's `jvb-v0`) for every missing packet
    /// due at `now` to `out`; returns how many sequence numbers it requests (0 = nothing written).
    pub fn poll_nack(&mut self, now: Instant, sender_ssrc: u32, out: &mut Vec<u8>) -> usize {
        let Some(high) = self.highest else { return 0 };
        if self.live == 0 {
            return 0;
        }
        // Due sequence numbers, oldest first (ordered by distance behind the newest).
        let mut due = [0u16; SLOTS];
        let mut n = 0;
        let interval = self.interval();
        for back in (1..=self.cfg.max_missing).rev() {
            let seq = high.wrapping_sub(back);
            let idx = usize::from(seq) % SLOTS;
            let Some(m) = self.slots[idx].as_mut() else {
                continue;
            };
            if !m.live || m.seq != seq || m.next_at > now {
                continue;
            }
            due[n] = seq;
            n += 1;
            m.requests += 1;
            m.next_at = now + interval;
            if m.requests >= self.cfg.max_requests {
                self.slots[idx] = None;
                self.live -= 1;
                self.given_up += 1;
            }
        }
        if n > 0 {
            rtcp::write_nack(out, sender_ssrc, self.media_ssrc, &due[..n]);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::rtcp::{Compound, Packet};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn nacked(bytes: &[u8]) -> Vec<u16> {
        let c = Compound::parse(bytes).unwrap();
        let mut v = Vec::new();
        for p in c.packets() {
            let Packet::Nack(n) = p else { panic!() };
            assert_eq!((n.sender_ssrc, n.media_ssrc), (0xfeed, 0x1234));
            v.extend(n.lost());
        }
        v
    }

    #[test]
    fn gap_is_requested_at_once_then_every_150ms_at_most_10_times() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(0x1234, NackConfig::default());
        let mut out = Vec::new();
        assert_eq!(g.on_packet(t0, 10), Arrival::InOrder);
        assert_eq!(g.on_packet(t0, 13), Arrival::Gap(2));
        assert_eq!(g.poll_timeout(), Some(t0));
        assert_eq!(g.poll_nack(t0, 0xfeed, &mut out), 2);
        assert_eq!(nacked(&out), vec![11, 12]);
        out.clear();
        assert_eq!(g.poll_nack(t0 + ms(149), 0xfeed, &mut out), 0);
        assert!(out.is_empty());
        assert_eq!(g.poll_timeout(), Some(t0 + ms(150)));
        // 11 arrives (retransmission): only 12 remains.
        assert_eq!(g.on_packet(t0 + ms(100), 11), Arrival::Recovered);
        let mut count = 1;
        let mut t = t0;
        loop {
            t += ms(150);
            out.clear();
            if g.poll_nack(t, 0xfeed, &mut out) == 0 {
                break;
            }
            assert_eq!(nacked(&out), vec![12]);
            count += 1;
        }
        assert_eq!(count, 10);
        assert_eq!(g.missing_count(), 0);
        assert_eq!((g.recovered, g.given_up), (1, 1));
        // Arriving after giving up: just old.
        assert_eq!(g.on_packet(t, 12), Arrival::Old);
    }

    #[test]
    fn wraparound_and_nack_packing() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(0x1234, NackConfig::default());
        g.on_packet(t0, 65530);
        // Lost: 65531..=65535, 0..=1 except 65533 arrives late later.
        assert_eq!(g.on_packet(t0, 2), Arrival::Gap(7));
        assert_eq!(g.on_packet(t0, 65533), Arrival::Recovered);
        let mut out = Vec::new();
        assert_eq!(g.poll_nack(t0, 0xfeed, &mut out), 6);
        assert_eq!(nacked(&out), vec![65531, 65532, 65534, 65535, 0, 1]);
        // One FCI entry covers them all.
        assert_eq!(out.len(), 16);
    }

    #[test]
    fn old_entries_fall_out_of_the_window_and_big_jumps_reset() {
        let t0 = Instant::now();
        let mut g = NackGenerator::new(0x1234, NackConfig::default());
        g.on_packet(t0, 0);
        g.on_packet(t0, 2); // 1 missing
        for s in 3..=101 {
            assert_eq!(g.on_packet(t0, s), Arrival::InOrder);
        }
        assert_eq!(g.missing_count(), 1); // 101 - 1 = 100: still inside
        g.on_packet(t0, 102);
        assert_eq!(g.missing_count(), 0);
        assert_eq!(g.given_up, 1);
        // Large gap (> 100): nothing requested.
        g.on_packet(t0, 110); // 7 missing
        assert_eq!(g.missing_count(), 7);
        assert_eq!(g.on_packet(t0, 400), Arrival::Reset);
        assert_eq!(g.missing_count(), 0);
        let mut out = Vec::new();
        assert_eq!(g.poll_nack(t0 + ms(500), 0xfeed, &mut out), 0);
        // Duplicate of the newest.
        assert_eq!(g.on_packet(t0, 400), Arrival::Old);
    }

    #[test]
    fn rtt_based_interval_and_random_loss_bookkeeping() {
        let t0 = Instant::now();
        let cfg = NackConfig {
            rtt_based: true,
            ..NackConfig::default()
        };
        let mut g = NackGenerator::new(0x1234, cfg);
        g.set_rtt(ms(40));
        g.on_packet(t0, 100);
        g.on_packet(t0, 102);
        let mut out = Vec::new();
        g.poll_nack(t0, 0xfeed, &mut out);
        assert_eq!(g.poll_timeout(), Some(t0 + ms(50)));

        // Random loss with later recovery: every lost packet is requested, and recovered ones
        // stop being requested; the live count never exceeds the window.
        let mut g = NackGenerator::new(0x1234, NackConfig::default());
        let mut x: u32 = 7;
        let mut lost = Vec::new();
        let mut requested = std::collections::HashSet::new();
        let mut t = t0;
        let mut seq: u16 = 65000;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            t += ms(5);
            if x.is_multiple_of(10) {
                lost.push(seq);
            } else {
                g.on_packet(t, seq);
            }
            if x.is_multiple_of(7)
                && let Some(s) = lost.pop()
            {
                g.on_packet(t, s);
            }
            seq = seq.wrapping_add(1);
            out.clear();
            g.poll_nack(t, 0xfeed, &mut out);
            if !out.is_empty() {
                requested.extend(nacked(&out));
            }
            assert!(g.missing_count() <= 100);
        }
        assert!(g.recovered > 100, "{}", g.recovered);
        // Every packet lost more than a window before the end was requested.
        for s in lost.iter().filter(|s| seq.wrapping_sub(**s) > 200) {
            assert!(requested.contains(s), "{s}");
        }
    }
}
