//! Uplink transport-cc feedback: the bridge records when each packet carrying the sender's
//! transport-wide sequence number arrived (padding-only probes included — they are what the
//! sender's prober measures) and returns feedback so the sender's browser can run its own GCC.
//!
//! Timing follows JVB (`jitsi-media-transform/src/main/kotlin/org/jitsi/nlj/transform/node/incoming/TccGeneratorNode.kt`): feedback every 100 ms, or 20 ms after the last one when a
//! packet with the marker bit (end of a frame) arrived. As in JVB the marker rule is checked when
//! packets arrive, never by a timer: a timer per sender 20 ms after each feedback was most of the
//! bridge's timer wake-ups (≈ 80 % of them at 1 × 5, loadtest/REPORT.md) and the next packet of
//! a sending browser is a few ms away. The timer only covers the 100 ms interval, so a sender that
//! pauses still hears about its last packets. Arrival times live in a fixed ring indexed
//! by the unwrapped sequence number and are kept after being reported, so a late (reordered)
//! packet re-opens the window and the re-sent range carries the right times for the packets
//! around it. No allocation once the builder is warm.
//!
//! ## Wiring (conference)
//! One generator per sending endpoint whose media parameters carry the transport-cc extension,
//! `TccFeedbackGenerator::new(feedback.video_ssrc, GeneratorConfig::default())`. In `on_rtp`,
//! right after the SSRC ownership check — before the RTX (`role != Media`) return and the
//! padding-only drop, since probes must be acknowledged — call
//! `on_packet(now, pkt.transport_cc_seq(sender_ext.transport_cc)?, pkt.ssrc(), pkt.marker())`;
//! when it returns true, `poll_feedback(now, buf)` and emit `Output::Rtcp { to: sender, buf }`
//! (use a buffer other than the forwarding scratch). Add `poll_timeout()` to the conference's
//! `next_timeout` and poll it in `on_timeout` too, so feedback still goes out when packets stop.

use std::time::{Duration, Instant};

use super::FeedbackBuilder;

/// History slots; at 2000 packets/s (≈20 Mbps) this is half a second.
const RING: usize = 1024;
/// A forward jump larger than this is a new stream, not loss.
const MAX_FORWARD_JUMP: i64 = 3000;

#[derive(Debug, Clone, Copy)]
pub struct GeneratorConfig {
    pub interval: Duration,
    /// Minimum spacing when a marker packet arrived.
    pub marker_interval: Duration,
    /// Upper bound of one feedback packet; more statuses go into further packets.
    pub max_packet_bytes: usize,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            interval: Duration::from_millis(100),
            marker_interval: Duration::from_millis(20),
            max_packet_bytes: 1200,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Extended sequence number this slot holds (-1 = empty).
    seq: i64,
    arrival_us: i64,
}

/// Transport-cc feedback generator for one sending endpoint (TCC numbers are transport-wide, so
/// one per endpoint, not per SSRC).
#[derive(Debug, Clone)]
pub struct TccFeedbackGenerator {
    cfg: GeneratorConfig,
    sender_ssrc: u32,
    media_ssrc: u32,
    epoch: Option<Instant>,
    ring: Vec<Slot>,
    /// First extended sequence number of the next feedback.
    start: i64,
    /// Highest extended sequence number seen (`start > highest` = nothing pending).
    highest: i64,
    started: bool,
    last_sent: Option<Instant>,
    marker_pending: bool,
    feedback_count: u8,
    builder: FeedbackBuilder,
    /// Packets too old to report or duplicates (for stats).
    pub ignored: u64,
}

impl TccFeedbackGenerator {
    /// `sender_ssrc`: the bridge's feedback SSRC (`jvb-v0`).
    pub fn new(sender_ssrc: u32, cfg: GeneratorConfig) -> Self {
        TccFeedbackGenerator {
            cfg,
            sender_ssrc,
            media_ssrc: 0,
            epoch: None,
            ring: vec![
                Slot {
                    seq: -1,
                    arrival_us: 0
                };
                RING
            ],
            start: 0,
            highest: -1,
            started: false,
            last_sent: None,
            marker_pending: false,
            feedback_count: 0,
            builder: FeedbackBuilder::new(cfg.max_packet_bytes),
            ignored: 0,
        }
    }

    fn slot(&self, seq: i64) -> Option<&Slot> {
        self.ring
            .get(seq.rem_euclid(RING as i64) as usize)
            .filter(|s| s.seq == seq)
    }

    fn unwrap(&self, seq: u16) -> i64 {
        if !self.started {
            return i64::from(seq) + (1 << 20);
        }
        let diff = seq.wrapping_sub(self.highest as u16) as i16;
        self.highest + i64::from(diff)
    }

    /// Records an arriving packet that carries transport-wide sequence number `seq`. Returns true
    /// when feedback is due: call [`poll_feedback`](Self::poll_feedback).
    pub fn on_packet(&mut self, now: Instant, seq: u16, media_ssrc: u32, marker: bool) -> bool {
        let epoch = *self.epoch.get_or_insert(now);
        let t = i64::try_from(now.saturating_duration_since(epoch).as_micros()).unwrap_or(i64::MAX);
        let ext = self.unwrap(seq);
        if !self.started {
            self.started = true;
            self.start = ext;
            self.highest = ext;
            self.last_sent = Some(now);
        } else if ext > self.highest {
            if ext - self.highest > MAX_FORWARD_JUMP {
                // New stream (sender restarted its counter): nothing before it is worth reporting.
                self.start = ext;
            } else if ext - self.start >= RING as i64 {
                // Nobody polled for too long: the oldest statuses are dropped.
                self.start = ext - RING as i64 + 1;
            }
            self.highest = ext;
        } else if self.highest - ext >= RING as i64 - 1 || self.slot(ext).is_some() {
            // Too old to report, or a duplicate.
            self.ignored += 1;
            return self.due(now);
        } else if ext < self.start {
            // Late packet: report again from it (the slots after it still hold their times).
            self.start = ext;
        }
        let i = ext.rem_euclid(RING as i64) as usize;
        if let Some(s) = self.ring.get_mut(i) {
            *s = Slot {
                seq: ext,
                arrival_us: t,
            };
        }
        self.media_ssrc = media_ssrc;
        self.marker_pending |= marker;
        self.due(now)
    }

    fn pending(&self) -> bool {
        self.started && self.start <= self.highest
    }

    fn due(&self, now: Instant) -> bool {
        if !self.pending() {
            return false;
        }
        let Some(last) = self.last_sent else {
            return true;
        };
        let since = now.saturating_duration_since(last);
        since >= self.cfg.interval
            || (self.marker_pending && since >= self.cfg.marker_interval)
            || self.highest - self.start >= (RING / 2) as i64
    }

    /// When feedback will be due if nothing else arrives (the 100 ms interval; the marker rule
    /// waits for an arrival, see the module comment).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.pending() {
            return None;
        }
        Some(self.last_sent? + self.cfg.interval)
    }

    /// Appends the due feedback (one or more RTPFB/15 packets, a valid RTCP compound) to `out`;
    /// returns how many packets were written (0 if nothing is due).
    pub fn poll_feedback(&mut self, now: Instant, out: &mut Vec<u8>) -> usize {
        if !self.due(now) {
            return 0;
        }
        let mut written = 0;
        let mut open = false;
        for s in self.start..=self.highest {
            let Some(&Slot { arrival_us, .. }) = self.slot(s) else {
                continue;
            };
            if !open {
                // Base = the first sequence of the window, even if it was lost.
                let base = if written == 0 { self.start } else { s };
                self.builder.reset(
                    self.sender_ssrc,
                    self.media_ssrc,
                    base as u16,
                    arrival_us,
                    self.feedback_count,
                );
                open = true;
            }
            if !self.builder.add_received(s as u16, arrival_us) {
                if self.builder.write(out) {
                    written += 1;
                    self.feedback_count = self.feedback_count.wrapping_add(1);
                }
                self.builder.reset(
                    self.sender_ssrc,
                    self.media_ssrc,
                    s as u16,
                    arrival_us,
                    self.feedback_count,
                );
                // A fresh packet always takes its base packet.
                self.builder.add_received(s as u16, arrival_us);
            }
        }
        if open && self.builder.write(out) {
            written += 1;
            self.feedback_count = self.feedback_count.wrapping_add(1);
        }
        self.start = self.highest + 1;
        self.last_sent = Some(now);
        self.marker_pending = false;
        written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sfu::rtcp::{Compound, Packet};
    use crate::sfu::tcc_feedback::{PacketStatus, TransportFeedback};

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// All `(seq, received)` statuses in a feedback compound.
    fn decode(bytes: &[u8]) -> Vec<(u16, bool, u32)> {
        let c = Compound::parse(bytes).unwrap();
        let mut v = Vec::new();
        for p in c.packets() {
            let Packet::TransportCc(t) = p else { panic!() };
            let fb = TransportFeedback::from_rtcp(&t).unwrap();
            assert_eq!(fb.sender_ssrc, 0xb1d9e);
            for (seq, s) in fb.packets() {
                v.push((
                    seq,
                    matches!(s, PacketStatus::Received { .. }),
                    fb.media_ssrc,
                ));
            }
        }
        v
    }

    #[test]
    fn feedback_every_100ms_or_20ms_after_marker() {
        let t0 = Instant::now();
        let mut g = TccFeedbackGenerator::new(0xb1d9e, GeneratorConfig::default());
        let mut out = Vec::new();
        // 10 ms spacing, no marker: first feedback at 100 ms.
        let mut seq = 0u16;
        let mut first = None;
        for i in 0..20u64 {
            let now = t0 + ms(10 * i);
            if g.on_packet(now, seq, 42, false) && first.is_none() {
                first = Some(i * 10);
                assert_eq!(g.poll_feedback(now, &mut out), 1);
            }
            seq += 1;
        }
        assert_eq!(first, Some(100));
        let d = decode(&out);
        assert_eq!(d.len(), 11);
        assert!(d.iter().all(|(_, r, m)| *r && *m == 42));
        // Marker 30 ms after the last feedback: due immediately.
        out.clear();
        let now = t0 + ms(130);
        assert!(g.on_packet(now, seq, 42, true));
        assert_eq!(g.poll_feedback(now, &mut out), 1);
        assert_eq!(decode(&out).len(), 10); // 11..=19 plus this one
        // Marker 5 ms later: not yet, and no timer for it (only the 100 ms one).
        assert!(!g.on_packet(now + ms(5), seq + 1, 42, true));
        assert_eq!(g.poll_timeout(), Some(now + ms(100)));
        // The first arrival 20 ms or more after the feedback carries the pending marker out,
        // marked or not.
        assert!(!g.on_packet(now + ms(19), seq + 2, 42, false));
        assert!(g.on_packet(now + ms(21), seq + 3, 42, false));
        out.clear();
        assert_eq!(g.poll_feedback(now + ms(21), &mut out), 1);
        assert_eq!(decode(&out).len(), 3);
        assert_eq!(g.poll_timeout(), None);
        // A sender that pauses: its last packets are reported by the 100 ms timer.
        assert!(!g.on_packet(now + ms(30), seq + 4, 42, true));
        assert_eq!(g.poll_timeout(), Some(now + ms(121)));
        out.clear();
        assert_eq!(g.poll_feedback(now + ms(121), &mut out), 1);
        assert_eq!(decode(&out).len(), 1);
    }

    #[test]
    fn losses_wraparound_and_arrival_times() {
        let t0 = Instant::now();
        let mut g = TccFeedbackGenerator::new(0xb1d9e, GeneratorConfig::default());
        let mut out = Vec::new();
        // 65530 .. 65535, 0 .. 5 with 65533 and 2 lost.
        let seqs: Vec<u16> = (65530..=65535)
            .chain(0..=5)
            .filter(|s| *s != 65533 && *s != 2)
            .collect();
        for (i, s) in seqs.iter().enumerate() {
            g.on_packet(t0 + ms(3 * i as u64), *s, 7, false);
        }
        assert_eq!(g.poll_feedback(t0 + ms(100), &mut out), 1);
        let fb = TransportFeedback::parse(&out).unwrap();
        assert_eq!(fb.base_seq, 65530);
        assert_eq!(fb.status_count, 12);
        let st: Vec<_> = fb
            .packets()
            .map(|(s, p)| (s, matches!(p, PacketStatus::Received { .. })))
            .collect();
        assert_eq!(st[3], (65533, false));
        assert_eq!(st[8], (2, false));
        assert_eq!(st.iter().filter(|x| x.1).count(), 10);
        // Arrival spacing is 3 ms between consecutive received packets.
        let a: Vec<i64> = fb.arrivals().map(|(_, t)| t).collect();
        for w in a.windows(2) {
            assert_eq!(w[1] - w[0], 3000);
        }
        // Next window continues after 5.
        out.clear();
        g.on_packet(t0 + ms(150), 6, 7, false);
        assert_eq!(g.poll_feedback(t0 + ms(250), &mut out), 1);
        let fb = TransportFeedback::parse(&out).unwrap();
        assert_eq!((fb.base_seq, fb.status_count, fb.feedback_count), (6, 1, 1));
    }

    #[test]
    fn late_packet_is_reported_with_its_neighbours() {
        let t0 = Instant::now();
        let mut g = TccFeedbackGenerator::new(0xb1d9e, GeneratorConfig::default());
        let mut out = Vec::new();
        for s in [10u16, 11, 13] {
            g.on_packet(t0, s, 1, false);
        }
        g.poll_feedback(t0 + ms(100), &mut out);
        assert_eq!(
            decode(&out).iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            vec![(10, true), (11, true), (12, false), (13, true)]
        );
        out.clear();
        g.on_packet(t0 + ms(101), 12, 1, false);
        g.on_packet(t0 + ms(102), 14, 1, false);
        g.poll_feedback(t0 + ms(200), &mut out);
        assert_eq!(
            decode(&out).iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
            vec![(12, true), (13, true), (14, true)]
        );
        // Duplicates are ignored.
        g.on_packet(t0 + ms(203), 14, 1, false);
        assert_eq!(g.ignored, 1);
    }

    #[test]
    fn many_packets_split_into_several_feedbacks_within_the_size_limit() {
        let t0 = Instant::now();
        let cfg = GeneratorConfig {
            max_packet_bytes: 200,
            ..GeneratorConfig::default()
        };
        let mut g = TccFeedbackGenerator::new(0xb1d9e, cfg);
        for s in 0..400u16 {
            // Alternate small and large deltas so chunks are two-bit vectors (dense).
            let t = t0 + Duration::from_micros(u64::from(s) * 40_000 % 3_000_000 + u64::from(s));
            g.on_packet(t0.max(t), s, 1, false);
        }
        let mut out = Vec::new();
        let n = g.poll_feedback(t0 + Duration::from_secs(4), &mut out);
        assert!(n > 1, "{n}");
        let c = Compound::parse(&out).unwrap();
        let mut seqs = Vec::new();
        for p in c.packets() {
            let Packet::TransportCc(t) = p else { panic!() };
            assert!(4 + t.chunks().len() + 16 <= 200);
            let fb = TransportFeedback::from_rtcp(&t).unwrap();
            seqs.extend(
                fb.packets()
                    .filter(|p| matches!(p.1, PacketStatus::Received { .. }))
                    .map(|p| p.0),
            );
        }
        assert_eq!(seqs, (0..400).collect::<Vec<u16>>());
    }

    #[test]
    fn stream_restart_and_ancient_packets() {
        let t0 = Instant::now();
        let mut g = TccFeedbackGenerator::new(0xb1d9e, GeneratorConfig::default());
        g.on_packet(t0, 100, 1, false);
        g.on_packet(t0 + ms(1), 20_000, 1, false);
        let mut out = Vec::new();
        g.poll_feedback(t0 + ms(100), &mut out);
        let d = decode(&out);
        assert_eq!(d, vec![(20_000, true, 1)]);
        // Far in the past: ignored.
        g.on_packet(t0 + ms(101), 17_000, 1, false);
        assert_eq!(g.ignored, 1);
    }
}
