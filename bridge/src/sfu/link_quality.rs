//! What the bridge measures about each endpoint's link, for `/colibri/stats` (`rtt_aggregate`,
//! `jitter_aggregate`, the loss rates) — JVB's meanings, `doc/statistics.md` of jitsi-videobridge.
//!
//! RTT toward a receiver (RFC 3550 §6.4.1): the bridge forwards senders' SRs with their NTP time;
//! the receiver's report block for that stream echoes its middle 32 bits (LSR) with the delay since
//! (DLSR), so RTT = arrival of the block − when that SR was forwarded − DLSR. Loss toward a
//! receiver is the fraction lost it reports; loss from a sender and jitter are the bridge's own
//! receive statistics (`recv_stats.rs`).

use std::time::{Duration, Instant};

use super::rtcp::ReportBlock;

/// SRs remembered per receiver: one a second per forwarded stream, and a report block echoes one
/// of the last few — 64 covers a receiver of a 50-person call between two of its reports.
const SR_LOG: usize = 64;

/// One receiver's link as its reports describe it.
#[derive(Debug, Clone, Default)]
pub struct LinkQuality {
    /// `(NTP middle 32 bits, when forwarded)` of the last SRs sent to this receiver (a ring).
    sent_srs: Vec<(u32, Instant)>,
    next: usize,
    /// Smoothed RTT (RFC 6298-style 1/8 gain), once measured.
    pub rtt: Option<Duration>,
}

impl LinkQuality {
    /// An SR with this NTP time was forwarded to the receiver now.
    pub fn on_sender_report_sent(&mut self, now: Instant, ntp: u64) {
        let entry = (ntp_middle(ntp), now);
        if self.sent_srs.len() < SR_LOG {
            self.sent_srs.push(entry);
        } else if let Some(slot) = self.sent_srs.get_mut(self.next) {
            *slot = entry;
        }
        self.next = (self.next + 1) % SR_LOG;
    }

    /// A report block from the receiver; returns the RTT it measured, if it echoes an SR we sent.
    pub fn on_report_block(&mut self, now: Instant, block: &ReportBlock) -> Option<Duration> {
        if block.last_sr == 0 {
            return None;
        }
        let &(_, sent) = self
            .sent_srs
            .iter()
            .find(|(lsr, _)| *lsr == block.last_sr)?;
        let dlsr = Duration::from_secs_f64(f64::from(block.delay_since_last_sr) / 65536.0);
        let sample = now.saturating_duration_since(sent).checked_sub(dlsr)?;
        let rtt = match self.rtt {
            Some(old) => (old * 7 + sample) / 8,
            None => sample,
        };
        self.rtt = Some(rtt);
        Some(sample)
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (what LSR carries).
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// The bridge's link measurements at one moment, summed over endpoints (`Sfu::link_stats`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkStats {
    /// Endpoints that sent audio / video in the last [`SENDING_WINDOW`].
    pub endpoints_sending_audio: u64,
    pub endpoints_sending_video: u64,
    /// Endpoints that negotiated audio / video (JVB's deprecated `audiochannels`, `videochannels`).
    pub audio_channels: u64,
    pub video_channels: u64,
    /// Video sources forwarded, summed over receivers.
    pub video_streams: u64,
    /// Sum and count of the receivers' RTTs (ms).
    pub rtt_ms_sum: f64,
    pub rtt_count: u64,
    /// Sum and count of the interarrival jitter (ms) of the streams being received.
    pub jitter_ms_sum: f64,
    pub jitter_count: u64,
}

/// How recent a packet must be for its endpoint to count as sending.
pub const SENDING_WINDOW: Duration = Duration::from_secs(3);

impl LinkStats {
    pub fn rtt_aggregate_ms(&self) -> f64 {
        average(self.rtt_ms_sum, self.rtt_count)
    }

    pub fn jitter_aggregate_ms(&self) -> f64 {
        average(self.jitter_ms_sum, self.jitter_count)
    }
}

fn average(sum: f64, n: u64) -> f64 {
    if n == 0 { 0.0 } else { sum / n as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(last_sr: u32, delay_since_last_sr: u32) -> ReportBlock {
        ReportBlock {
            ssrc: 1,
            fraction_lost: 0,
            cumulative_lost: 0,
            extended_highest_seq: 0,
            jitter: 0,
            last_sr,
            delay_since_last_sr,
        }
    }

    #[test]
    fn rtt_is_the_echo_delay_minus_the_receivers_hold_time() {
        let t0 = Instant::now();
        let mut q = LinkQuality::default();
        let ntp = 0x1234_5678_9abc_def0_u64;
        q.on_sender_report_sent(t0, ntp);
        // The receiver held the SR 250 ms (DLSR in 1/65536 s) and its report arrives 310 ms after
        // the SR left: 60 ms round trip.
        let rtt = q
            .on_report_block(
                t0 + Duration::from_millis(310),
                &block(ntp_middle(ntp), 16_384),
            )
            .unwrap();
        assert!(
            rtt.abs_diff(Duration::from_millis(60)) < Duration::from_millis(1),
            "{rtt:?}"
        );
        assert_eq!(q.rtt, Some(rtt));
        // No echo, an SR it never got, or a hold time longer than the elapsed time: no sample.
        assert_eq!(q.on_report_block(t0, &block(0, 0)), None);
        assert_eq!(q.on_report_block(t0, &block(7, 0)), None);
        assert_eq!(
            q.on_report_block(
                t0 + Duration::from_millis(100),
                &block(ntp_middle(ntp), 65_536)
            ),
            None
        );
    }

    #[test]
    fn the_ring_keeps_the_last_srs_only() {
        let t0 = Instant::now();
        let mut q = LinkQuality::default();
        for i in 0..(SR_LOG as u64 + 1) {
            q.on_sender_report_sent(t0, i << 16);
        }
        // SR 0 was overwritten by SR 64; SR 1 is still known.
        assert_eq!(q.on_report_block(t0, &block(0, 0)), None);
        assert!(q.on_report_block(t0, &block(1, 0)).is_some());
        assert_eq!(q.sent_srs.len(), SR_LOG);
    }
}
