//! Sent-packet history and the feedback adapter: the bridge remembers, per transport-wide
//! sequence number it stamped, when it sent the packet, how big it was and which probe cluster
//! it belonged to; a transport-cc feedback is turned into per-packet `(send time, arrival time)`
//! results on one timeline.
//!
//! Arrival times in a feedback are relative to its reference time (64 ms ticks, 24-bit, wraps).
//! The adapter keeps a running offset: the first feedback's reference maps to the local time it
//! was received, later ones add the (wrap-aware) difference of reference times. Only differences
//! of arrival times matter to the estimators, so the offset's absolute value is irrelevant.

use crate::sfu::tcc_feedback::{PacketStatus, REFERENCE_TICK_US, TransportFeedback};

/// History slots: at 20 Mbps of 1200-byte packets (≈2100/s) this is ≈4 s, longer than any
/// sensible feedback delay.
const SLOTS: usize = 8192;

#[derive(Debug, Clone, Copy)]
struct Sent {
    /// Extended sequence number (-1 = empty slot).
    seq: i64,
    send_us: i64,
    size: u32,
    cluster: u32,
    /// Already reported in a feedback (received or lost).
    reported: bool,
    /// Reported as received.
    received: bool,
}

const EMPTY: Sent = Sent {
    seq: -1,
    send_us: 0,
    size: 0,
    cluster: 0,
    reported: false,
    received: false,
};

/// One packet's fate as far as a feedback tells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacketResult {
    pub seq: i64,
    pub send_us: i64,
    /// None = reported lost.
    pub arrival_us: Option<i64>,
    pub size: u32,
    /// Probe cluster id, 0 = not a probe.
    pub cluster: u32,
}

/// Counts of one feedback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedbackCounts {
    /// First reports of packets as lost.
    pub lost: u32,
    /// Packets reported received (first time).
    pub received: u32,
    /// Statuses about packets not (or no longer) in the history.
    pub unknown: u32,
}

#[derive(Debug, Clone)]
pub struct SentHistory {
    ring: Vec<Sent>,
    highest: i64,
    started: bool,
    last_ref_ticks: Option<u32>,
    offset_us: i64,
}

impl Default for SentHistory {
    fn default() -> Self {
        SentHistory {
            ring: vec![EMPTY; SLOTS],
            highest: 0,
            started: false,
            last_ref_ticks: None,
            offset_us: 0,
        }
    }
}

impl SentHistory {
    fn unwrap(&self, seq: u16) -> i64 {
        if !self.started {
            return i64::from(seq) + (1 << 20);
        }
        self.highest + i64::from(seq.wrapping_sub(self.highest as u16) as i16)
    }

    fn slot_mut(&mut self, seq: i64) -> Option<&mut Sent> {
        self.ring
            .get_mut(seq.rem_euclid(SLOTS as i64) as usize)
            .filter(|s| s.seq == seq)
    }

    pub fn on_sent(&mut self, now_us: i64, seq: u16, size: u32, cluster: u32) {
        let ext = self.unwrap(seq);
        if !self.started || ext > self.highest {
            self.highest = ext;
            self.started = true;
        }
        if let Some(s) = self.ring.get_mut(ext.rem_euclid(SLOTS as i64) as usize) {
            *s = Sent {
                seq: ext,
                send_us: now_us,
                size,
                cluster,
                reported: false,
                received: false,
            };
        }
    }

    /// Adapts `fb` into `out` (cleared first; in sequence order). Packets already reported as
    /// received are skipped (feedback windows may overlap).
    pub fn on_feedback(
        &mut self,
        now_us: i64,
        fb: &TransportFeedback<'_>,
        out: &mut Vec<PacketResult>,
    ) -> FeedbackCounts {
        out.clear();
        let mut counts = FeedbackCounts::default();
        match self.last_ref_ticks {
            None => self.offset_us = now_us,
            Some(last) => {
                // Signed difference of two 24-bit tick counters.
                let d = ((fb.reference_ticks.wrapping_sub(last) << 8) as i32) >> 8;
                self.offset_us += i64::from(d) * REFERENCE_TICK_US;
            }
        }
        self.last_ref_ticks = Some(fb.reference_ticks);
        if !self.started {
            counts.unknown = u32::from(fb.status_count);
            return counts;
        }
        let mut t = self.offset_us;
        for (seq, status) in fb.packets() {
            let arrival = match status {
                PacketStatus::NotReceived => None,
                PacketStatus::Received { delta } => {
                    t += i64::from(delta) * crate::sfu::tcc_feedback::DELTA_TICK_US;
                    Some(t)
                }
            };
            let ext = self.unwrap(seq);
            let Some(s) = self.slot_mut(ext) else {
                counts.unknown += 1;
                continue;
            };
            if s.received {
                continue;
            }
            match arrival {
                None if s.reported => continue,
                None => counts.lost += 1,
                Some(_) => {
                    counts.received += 1;
                    s.received = true;
                }
            }
            s.reported = true;
            out.push(PacketResult {
                seq: ext,
                send_us: s.send_us,
                arrival_us: arrival,
                size: s.size,
                cluster: s.cluster,
            });
        }
        counts
    }
}
