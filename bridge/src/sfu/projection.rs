//! The forwarding decision point per (receiver, source): a [`Projection`] says which encoding of the
//! source this receiver gets (if any) and keeps the state that makes the receiver see one continuous
//! stream: a sequence-number rewriter that hides packets the bridge chose not to forward, a timestamp
//! offset, the egress SSRCs, and the RTX sequence counter.
//!
//! Issue 3 forwards only the primary encoding (or nothing); the simulcast allocator (issue 5) sets
//! [`Projection::target`] to other encodings and replaces the per-packet accept logic with a codec
//! aware one, keeping this state.

use std::time::Instant;

use super::keyframe::RateLimit;

/// Which encoding of a source a receiver gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing (not in last-N, maxHeight 0, or not yet allocated).
    Suspended,
    /// Encoding `n` (0 = primary, the first SIM SSRC).
    Encoding(u8),
}

/// `a` is newer than `b` in 16-bit sequence space.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// Keeps egress sequence numbers contiguous across packets the bridge drops on purpose.
///
/// `forward(seq)` maps an ingress sequence number to the egress one; `skip(seq)` records a dropped
/// packet: if it would have been the newest, the offset grows so the next forwarded packet follows
/// the last one sent. A packet that arrives late from before the last skip point cannot be placed
/// without colliding with already-used numbers and is refused (`None`).
#[derive(Debug, Clone, Default)]
pub struct SeqRewriter {
    delta: u16,
    highest_out: Option<u16>,
    /// The ingress sequence number at which `delta` last changed.
    boundary: Option<u16>,
}

impl SeqRewriter {
    pub fn forward(&mut self, seq: u16) -> Option<u16> {
        if let Some(b) = self.boundary
            && seq_newer(b, seq)
        {
            return None;
        }
        let out = seq.wrapping_sub(self.delta);
        match self.highest_out {
            Some(h) if !seq_newer(out, h) => {}
            _ => self.highest_out = Some(out),
        }
        Some(out)
    }

    pub fn skip(&mut self, seq: u16) {
        if let Some(h) = self.highest_out {
            let out = seq.wrapping_sub(self.delta);
            if seq_newer(out, h) {
                self.delta = seq.wrapping_sub(h);
                self.boundary = Some(seq);
            }
        }
    }

    pub fn highest_out(&self) -> Option<u16> {
        self.highest_out
    }
}

/// Per (receiver, source) forwarding state.
#[derive(Debug, Clone)]
pub struct Projection {
    /// Generation of the source slot this projection belongs to (a reused slot resets it).
    pub source_gen: u32,
    pub target: Target,
    pub seq: SeqRewriter,
    /// Egress timestamp = ingress + `ts_delta` (0 while only the primary encoding is forwarded; the
    /// same delta rewrites forwarded SRs).
    pub ts_delta: u32,
    /// SSRC the receiver knows this source by (the primary SSRC, as signalled by the focus).
    pub egress_ssrc: u32,
    /// RTX SSRC the receiver knows (the primary's FID partner).
    pub egress_rtx_ssrc: Option<u32>,
    pub rtx_seq: u16,
    /// Per-receiver keyframe request limiter for this source.
    pub keyframe_limit: RateLimit,
    pub packets_sent: u64,
    /// Encoding of the last forwarded packet (whose sequence space the rewriter follows).
    pub last_encoding: Option<u8>,
    pub last_sent_at: Option<Instant>,
}

impl Projection {
    pub fn new(
        source_gen: u32,
        egress_ssrc: u32,
        egress_rtx_ssrc: Option<u32>,
        rtx_seq: u16,
    ) -> Self {
        Projection {
            source_gen,
            target: Target::Suspended,
            seq: SeqRewriter::default(),
            ts_delta: 0,
            egress_ssrc,
            egress_rtx_ssrc,
            rtx_seq,
            keyframe_limit: RateLimit::per_receiver(),
            packets_sent: 0,
            last_encoding: None,
            last_sent_at: None,
        }
    }

    /// Whether a packet of `encoding` is forwarded under the current target.
    #[inline]
    pub fn accepts(&self, encoding: u8) -> bool {
        self.target == Target::Encoding(encoding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_packets_leave_no_gap() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.forward(100), Some(100));
        assert_eq!(r.forward(101), Some(101));
        r.skip(102);
        r.skip(103);
        assert_eq!(r.forward(104), Some(102));
        assert_eq!(r.forward(105), Some(103));
        // A late packet from before the skip point is refused rather than colliding.
        assert_eq!(r.forward(101), None);
        // Reordering after the boundary is fine.
        assert_eq!(r.forward(107), Some(105));
        assert_eq!(r.forward(106), Some(104));
        assert_eq!(r.highest_out(), Some(105));
    }

    #[test]
    fn pause_and_resume_across_wraparound() {
        let mut r = SeqRewriter::default();
        assert_eq!(r.forward(65534), Some(65534));
        for s in 65535..=65535u16 {
            r.skip(s);
        }
        for s in 0..500u16 {
            r.skip(s);
        }
        assert_eq!(r.forward(500), Some(65535));
        assert_eq!(r.forward(501), Some(0));
    }

    #[test]
    fn skip_before_anything_forwarded_is_a_no_op() {
        let mut r = SeqRewriter::default();
        r.skip(5);
        assert_eq!(r.forward(6), Some(6));
    }
}
