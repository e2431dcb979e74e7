//! Sequence-number and timestamp arithmetic of the projections, and [`SeqRewriter`], which keeps a
//! receiver's sequence numbers contiguous across packets the bridge drops on purpose.

/// `a` is newer than `b` in 16-bit sequence space.
pub fn seq_newer(a: u16, b: u16) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000
}

/// `a - b` in sequence space, signed.
pub fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// `a` is newer than `b` in 32-bit timestamp space.
pub fn ts_newer(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
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

    /// Starts a new segment: `seq` maps to `out`, older ingress numbers are refused.
    pub fn rebase(&mut self, seq: u16, out: u16) {
        self.delta = seq.wrapping_sub(out);
        self.highest_out = Some(out.wrapping_sub(1));
        self.boundary = Some(seq);
    }

    pub fn highest_out(&self) -> Option<u16> {
        self.highest_out
    }
}
