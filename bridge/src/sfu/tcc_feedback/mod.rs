//! Transport-wide congestion control feedback (draft-holmer-rmcat-transport-wide-cc-extensions-01,
//! RTPFB FMT 15): a zero-copy parser ([`TransportFeedback`]) and a builder ([`FeedbackBuilder`])
//! that reuses its buffers, plus the uplink feedback [`generator`].
//!
//! ```text
//!  0                   1                   2                   3
//!  |V=2|P|  FMT=15 |    PT=205     |           length              |
//!  |                     SSRC of packet sender                     |
//!  |                      SSRC of media source                     |
//!  |      base sequence number     |      packet status count      |
//!  |                 reference time                | fb pkt. count |
//!  |          packet chunk         |         packet chunk          |  ...
//!  |  recv delta   |  recv delta   |          recv delta           |  ... zero padding
//! ```
//!
//! Packet chunks are either a run length (`0 | symbol:2 | length:13`) or a status vector
//! (`1 | 0 | 14 × 1-bit symbols` or `1 | 1 | 7 × 2-bit symbols`). Symbols: 0 = not received,
//! 1 = received with a one-byte unsigned delta, 2 = received with a two-byte signed delta, 3 =
//! reserved. Deltas are in 250 µs ticks from the previous received packet (the first one from the
//! reference time, in 64 ms ticks).
//!
//! Parsing validates everything once (every chunk, every symbol, the delta bytes), so iteration
//! afterwards cannot fail. Building never allocates once the builder's buffers are warm.
//! Measured (release, medians): parse + iterate a 100-packet feedback 1.09 µs, build one 0.77 µs;
//! the generator costs ≈ 42 ns per packet including its feedback.

pub mod generator;

use thiserror::Error;

use super::rtcp::{self, FMT_TCC, PT_RTPFB};

/// One receive delta tick.
pub const DELTA_TICK_US: i64 = 250;
/// One reference time tick.
pub const REFERENCE_TICK_US: i64 = 64_000;
/// Reference time is a 24-bit tick counter: it wraps after this long (≈ 12.4 days).
pub const REFERENCE_WRAP_US: i64 = REFERENCE_TICK_US << 24;
/// Size of everything before the packet chunks (RTCP header, SSRCs, base, count, reference, fb count).
pub const HEADER_LEN: usize = 20;
const MAX_RUN_LENGTH: u16 = 0x1fff;

/// Why bytes are not a valid transport-cc feedback packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TccError {
    #[error("shorter than a transport-cc feedback header")]
    TooShort,
    #[error("not an RTPFB/15 (transport-cc) packet")]
    NotTransportCc,
    #[error("RTCP length field does not match the buffer")]
    BadLength,
    #[error("feedback reports no packets")]
    Empty,
    #[error("packet chunks end before {0} statuses are covered")]
    ChunksTruncated(u16),
    #[error("reserved status symbol at sequence offset {0}")]
    ReservedSymbol(u16),
    #[error("receive deltas need {need} bytes, {have} present")]
    DeltasTruncated { need: usize, have: usize },
}

/// What a feedback says about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketStatus {
    NotReceived,
    /// Received; `delta` in 250 µs ticks from the previous received packet (or the reference time).
    Received {
        delta: i16,
    },
}

/// A validated transport-cc feedback packet, borrowing the input.
#[derive(Debug, Clone, Copy)]
pub struct TransportFeedback<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    pub base_seq: u16,
    pub status_count: u16,
    /// Reference time in 64 ms ticks, the raw 24-bit value (0..2^24).
    pub reference_ticks: u32,
    pub feedback_count: u8,
    /// Exactly the packet chunk bytes.
    chunks: &'a [u8],
    /// Exactly the receive delta bytes.
    deltas: &'a [u8],
    received: u16,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes the statuses of one chunk (at most `limit` of them) into `out`; returns how many.
#[inline]
fn decode_chunk(chunk: u16, limit: u16, out: &mut [u8; 14]) -> (u16, u8) {
    if chunk & 0x8000 == 0 {
        // Run length: the symbol is returned, `out` untouched.
        let sym = ((chunk >> 13) & 3) as u8;
        let len = (chunk & MAX_RUN_LENGTH).min(limit);
        (len, sym | 0x80)
    } else if chunk & 0x4000 == 0 {
        let n = limit.min(14);
        for (i, o) in out.iter_mut().take(usize::from(n)).enumerate() {
            *o = ((chunk >> (13 - i)) & 1) as u8;
        }
        (n, 0)
    } else {
        let n = limit.min(7);
        for (i, o) in out.iter_mut().take(usize::from(n)).enumerate() {
            *o = ((chunk >> (12 - 2 * i)) & 3) as u8;
        }
        (n, 0)
    }
}

impl<'a> TransportFeedback<'a> {
    /// Parses one whole RTCP packet (header included; trailing bytes after it are ignored).
    pub fn parse(packet: &'a [u8]) -> Result<Self, TccError> {
        if packet.len() < HEADER_LEN {
            return Err(TccError::TooShort);
        }
        if packet[0] >> 6 != 2 || packet[0] & 0x1f != FMT_TCC || packet[1] != PT_RTPFB {
            return Err(TccError::NotTransportCc);
        }
        let len = 4 * (usize::from(be16(packet, 2)) + 1);
        if len < HEADER_LEN {
            return Err(TccError::BadLength);
        }
        let whole = packet.get(..len).ok_or(TccError::BadLength)?;
        let mut end = len;
        if packet[0] & 0x20 != 0 {
            let pad = usize::from(whole[len - 1]);
            if pad == 0 || pad > len - HEADER_LEN {
                return Err(TccError::BadLength);
            }
            end -= pad;
        }
        Self::from_fields(
            be32(whole, 4),
            be32(whole, 8),
            be16(whole, 12),
            be16(whole, 14),
            be32(whole, 16) >> 8,
            whole[19],
            &whole[HEADER_LEN..end],
        )
    }

    /// Decodes the body of a transport-cc packet already validated by [`rtcp::Compound::parse`].
    pub fn from_rtcp(p: &rtcp::TransportCc<'a>) -> Result<Self, TccError> {
        Self::from_fields(
            p.sender_ssrc(),
            p.media_ssrc(),
            p.base_seq(),
            p.status_count(),
            (p.reference_time() as u32) & 0x00ff_ffff,
            p.feedback_count(),
            p.chunks(),
        )
    }

    fn from_fields(
        sender_ssrc: u32,
        media_ssrc: u32,
        base_seq: u16,
        status_count: u16,
        reference_ticks: u32,
        feedback_count: u8,
        rest: &'a [u8],
    ) -> Result<Self, TccError> {
        if status_count == 0 {
            return Err(TccError::Empty);
        }
        let mut covered: u16 = 0;
        let mut pos = 0;
        let mut need = 0usize;
        let mut received: u16 = 0;
        let mut syms = [0u8; 14];
        while covered < status_count {
            let Some(c) = rest.get(pos..pos + 2) else {
                return Err(TccError::ChunksTruncated(status_count));
            };
            pos += 2;
            let (n, run) = decode_chunk(
                u16::from_be_bytes([c[0], c[1]]),
                status_count - covered,
                &mut syms,
            );
            if run & 0x80 != 0 {
                let sym = run & 3;
                if sym == 3 && n > 0 {
                    return Err(TccError::ReservedSymbol(covered));
                }
                if sym != 0 {
                    received += n;
                }
                need += usize::from(sym) * usize::from(n);
            } else {
                for (i, &s) in syms.iter().take(usize::from(n)).enumerate() {
                    if s == 3 {
                        return Err(TccError::ReservedSymbol(covered + i as u16));
                    }
                    if s != 0 {
                        received += 1;
                    }
                    need += usize::from(s);
                }
            }
            covered += n;
        }
        let chunks = &rest[..pos];
        let have = rest.len() - pos;
        if have < need {
            return Err(TccError::DeltasTruncated { need, have });
        }
        Ok(TransportFeedback {
            sender_ssrc,
            media_ssrc,
            base_seq,
            status_count,
            reference_ticks,
            feedback_count,
            chunks,
            deltas: &rest[pos..pos + need],
            received,
        })
    }

    /// Number of packets reported as received.
    pub fn received_count(&self) -> u16 {
        self.received
    }

    /// Reference time in µs (unwrapped only within one wrap period, see [`REFERENCE_WRAP_US`]).
    pub fn reference_time_us(&self) -> i64 {
        i64::from(self.reference_ticks) * REFERENCE_TICK_US
    }

    /// Every reported packet in sequence order.
    pub fn packets(&self) -> Statuses<'a> {
        Statuses {
            chunks: self.chunks,
            deltas: self.deltas,
            chunk_pos: 0,
            delta_pos: 0,
            seq: self.base_seq,
            remaining: self.status_count,
            syms: [0; 14],
            run: None,
            idx: 0,
            n: 0,
        }
    }

    /// The received packets with their arrival time in µs relative to the reference time.
    pub fn arrivals(&self) -> impl Iterator<Item = (u16, i64)> + 'a {
        let mut t = 0i64;
        self.packets().filter_map(move |(seq, s)| match s {
            PacketStatus::NotReceived => None,
            PacketStatus::Received { delta } => {
                t += i64::from(delta) * DELTA_TICK_US;
                Some((seq, t))
            }
        })
    }
}

/// Iterator over `(sequence number, status)` of a validated feedback.
#[derive(Debug, Clone)]
pub struct Statuses<'a> {
    chunks: &'a [u8],
    deltas: &'a [u8],
    chunk_pos: usize,
    delta_pos: usize,
    seq: u16,
    remaining: u16,
    syms: [u8; 14],
    /// Symbol of the current run-length chunk.
    run: Option<u8>,
    idx: u16,
    n: u16,
}

impl Iterator for Statuses<'_> {
    type Item = (u16, PacketStatus);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        while self.idx >= self.n {
            let c = self.chunks.get(self.chunk_pos..self.chunk_pos + 2)?;
            self.chunk_pos += 2;
            let (n, run) = decode_chunk(
                u16::from_be_bytes([c[0], c[1]]),
                self.remaining,
                &mut self.syms,
            );
            self.run = (run & 0x80 != 0).then_some(run & 3);
            self.n = n;
            self.idx = 0;
        }
        let sym = match self.run {
            Some(s) => s,
            None => self.syms[usize::from(self.idx)],
        };
        self.idx += 1;
        self.remaining -= 1;
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        let status = match sym {
            1 => {
                let d = *self.deltas.get(self.delta_pos)?;
                self.delta_pos += 1;
                PacketStatus::Received {
                    delta: i16::from(d),
                }
            }
            2 => {
                let d = self.deltas.get(self.delta_pos..self.delta_pos + 2)?;
                self.delta_pos += 2;
                PacketStatus::Received {
                    delta: i16::from_be_bytes([d[0], d[1]]),
                }
            }
            _ => PacketStatus::NotReceived,
        };
        Some((seq, status))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let r = usize::from(self.remaining);
        (r, Some(r))
    }
}

/// Encodes statuses into chunks: collects up to 14 symbols and emits the densest chunk that can
/// hold them (a run when all are equal, a 1-bit vector for 14 small/missing, else a 2-bit vector
/// of 7).
#[derive(Debug, Clone, Default)]
struct ChunkEncoder {
    syms: [u8; 14],
    count: u16,
    all_same: bool,
    has_large: bool,
}

impl ChunkEncoder {
    fn clear(&mut self) {
        self.count = 0;
        self.all_same = true;
        self.has_large = false;
    }

    fn can_add(&self, sym: u8) -> bool {
        if self.count < 7 {
            return true;
        }
        if self.count < 14 && !self.has_large && sym != 2 {
            return true;
        }
        self.all_same && self.syms[0] == sym && self.count < MAX_RUN_LENGTH
    }

    fn add(&mut self, sym: u8) {
        if self.count == 0 {
            self.all_same = true;
        } else if self.syms[0] != sym {
            self.all_same = false;
        }
        if let Some(s) = self.syms.get_mut(usize::from(self.count)) {
            *s = sym;
        }
        self.has_large |= sym == 2;
        self.count += 1;
    }

    /// Emits one full chunk to make room (only called when `can_add` failed).
    fn emit(&mut self) -> u16 {
        if self.all_same {
            let c = (u16::from(self.syms[0]) << 13) | self.count;
            self.clear();
            return c;
        }
        if self.count == 14 && !self.has_large {
            let mut c = 0x8000;
            for (i, &s) in self.syms.iter().enumerate() {
                c |= u16::from(s) << (13 - i);
            }
            self.clear();
            return c;
        }
        // Two-bit vector of the first 7; the rest stay pending.
        let mut c = 0xc000;
        for (i, &s) in self.syms.iter().take(7).enumerate() {
            c |= u16::from(s) << (12 - 2 * i);
        }
        let rest = usize::from(self.count) - 7;
        let mut tail = [0u8; 14];
        tail[..rest].copy_from_slice(&self.syms[7..7 + rest]);
        self.clear();
        for &s in &tail[..rest] {
            self.add(s);
        }
        c
    }

    /// Encodes what is pending as the last chunk.
    fn encode_last(&self) -> Option<u16> {
        if self.count == 0 {
            return None;
        }
        if self.all_same {
            return Some((u16::from(self.syms[0]) << 13) | self.count);
        }
        if self.count <= 7 {
            let mut c = 0xc000;
            for (i, &s) in self.syms.iter().take(usize::from(self.count)).enumerate() {
                c |= u16::from(s) << (12 - 2 * i);
            }
            return Some(c);
        }
        let mut c = 0x8000;
        for (i, &s) in self.syms.iter().take(usize::from(self.count)).enumerate() {
            c |= u16::from(s) << (13 - i);
        }
        Some(c)
    }
}

/// Builds one transport-cc feedback packet. Reuse one builder: [`reset`](Self::reset) keeps the
/// buffers, so building is allocation-free once warm.
#[derive(Debug, Clone)]
pub struct FeedbackBuilder {
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    /// Reference time in ticks, already wrapped to 24 bits.
    reference_ticks: u32,
    feedback_count: u8,
    /// Time the last delta was computed from (µs, caller's clock).
    last_us: i64,
    count: u16,
    encoded: Vec<u16>,
    pending: ChunkEncoder,
    deltas: Vec<u8>,
    max_bytes: usize,
}

/// Largest RTCP packet the length field allows.
const MAX_RTCP_BYTES: usize = (1 << 16) * 4;

impl Default for FeedbackBuilder {
    fn default() -> Self {
        FeedbackBuilder::new(1200)
    }
}

impl FeedbackBuilder {
    /// `max_bytes`: the built packet (header, chunks, deltas, padding) never exceeds this.
    pub fn new(max_bytes: usize) -> Self {
        let mut b = FeedbackBuilder {
            sender_ssrc: 0,
            media_ssrc: 0,
            base_seq: 0,
            reference_ticks: 0,
            feedback_count: 0,
            last_us: 0,
            count: 0,
            encoded: Vec::new(),
            pending: ChunkEncoder::default(),
            deltas: Vec::new(),
            max_bytes: max_bytes.clamp(HEADER_LEN + 8, MAX_RTCP_BYTES),
        };
        b.pending.clear();
        b
    }

    /// Starts a new packet: `base_seq` is the first sequence number reported, `reference_us` the
    /// time (caller's µs clock, ≥ 0) from which the first delta counts; it is floored to 64 ms.
    pub fn reset(
        &mut self,
        sender_ssrc: u32,
        media_ssrc: u32,
        base_seq: u16,
        reference_us: i64,
        feedback_count: u8,
    ) {
        self.sender_ssrc = sender_ssrc;
        self.media_ssrc = media_ssrc;
        self.base_seq = base_seq;
        let ticks = reference_us.div_euclid(REFERENCE_TICK_US);
        self.reference_ticks = (ticks.rem_euclid(1 << 24)) as u32;
        self.last_us = ticks * REFERENCE_TICK_US;
        self.feedback_count = feedback_count;
        self.count = 0;
        self.encoded.clear();
        self.pending.clear();
        self.deltas.clear();
    }

    /// Number of statuses so far.
    pub fn status_count(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn size_with(&self, extra_deltas: usize) -> usize {
        // Pending symbols need at most two chunks once flushed.
        let chunks = self.encoded.len() + 2;
        let raw = HEADER_LEN + 2 * chunks + self.deltas.len() + extra_deltas;
        raw.next_multiple_of(4)
    }

    fn push_symbol(&mut self, sym: u8) {
        if !self.pending.can_add(sym) {
            let c = self.pending.emit();
            self.encoded.push(c);
        }
        self.pending.add(sym);
        self.count += 1;
    }

    /// Adds a received packet. Sequence numbers must increase (gaps are reported as not
    /// received). Returns false, changing nothing, if it does not fit this packet: sequence not
    /// after the last one, delta beyond ±8 s, or the packet is full — then build this one and
    /// start another with this packet as base.
    pub fn add_received(&mut self, seq: u16, arrival_us: i64) -> bool {
        let offset = seq.wrapping_sub(self.base_seq);
        if offset < self.count || (self.count > 0 && offset >= 0x8000) {
            return false;
        }
        let gap = offset - self.count;
        if u32::from(self.count) + u32::from(gap) + 1 > u32::from(u16::MAX) {
            return false;
        }
        // Round to the nearest tick.
        let diff = arrival_us - self.last_us;
        let ticks = (diff + diff.signum() * DELTA_TICK_US / 2) / DELTA_TICK_US;
        let Ok(delta) = i16::try_from(ticks) else {
            return false;
        };
        let (sym, size) = if (0..=255).contains(&delta) {
            (1, 1)
        } else {
            (2, 2)
        };
        // Worst case a run of missing packets adds one or two chunks.
        let gap_chunks = if gap > 0 {
            2 + usize::from(gap) / usize::from(MAX_RUN_LENGTH)
        } else {
            0
        };
        if self.size_with(size) + 2 * gap_chunks > self.max_bytes {
            return false;
        }
        for _ in 0..gap {
            self.push_symbol(0);
        }
        self.push_symbol(sym);
        if size == 1 {
            self.deltas.push(delta as u8);
        } else {
            self.deltas.extend_from_slice(&delta.to_be_bytes());
        }
        self.last_us += i64::from(delta) * DELTA_TICK_US;
        true
    }

    /// Appends the packet to `out` (zero-padded to a multiple of 4 bytes, no padding bit). Nothing
    /// is written for an empty builder (a feedback must report at least one packet).
    pub fn write(&self, out: &mut Vec<u8>) -> bool {
        if self.count == 0 {
            return false;
        }
        let at = out.len();
        out.extend_from_slice(&[0x80 | FMT_TCC, PT_RTPFB, 0, 0]);
        out.extend_from_slice(&self.sender_ssrc.to_be_bytes());
        out.extend_from_slice(&self.media_ssrc.to_be_bytes());
        out.extend_from_slice(&self.base_seq.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(
            &((self.reference_ticks << 8) | u32::from(self.feedback_count)).to_be_bytes(),
        );
        for c in &self.encoded {
            out.extend_from_slice(&c.to_be_bytes());
        }
        if let Some(c) = self.pending.encode_last() {
            out.extend_from_slice(&c.to_be_bytes());
        }
        out.extend_from_slice(&self.deltas);
        while !(out.len() - at).is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - at) / 4 - 1) as u16;
        out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
        true
    }
}

#[cfg(test)]
mod tests;
