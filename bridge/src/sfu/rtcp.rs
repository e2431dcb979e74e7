//! RTCP compound packets (RFC 3550, 4585, 5104): zero-copy parsing into typed views and writers for
//! what the bridge emits (RR, SR, PLI, FIR, NACK, REMB, BYE).
//!
//! Written here rather than taken from `rtc-rtcp` because the bridge needs a lenient, allocation-free
//! walk: a compound is validated header by header once ([`Compound::parse`]), unknown packet types are
//! skipped instead of failing the compound, and each typed view borrows the input bytes. The sub-set
//! is small (the bridge terminates most feedback) so the code is short.

use thiserror::Error;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
pub const PT_RTPFB: u8 = 205;
pub const PT_PSFB: u8 = 206;
pub const PT_XR: u8 = 207;

pub const FMT_NACK: u8 = 1;
pub const FMT_TCC: u8 = 15;
pub const FMT_PLI: u8 = 1;
pub const FMT_FIR: u8 = 4;
pub const FMT_AFB: u8 = 15;

/// Why bytes are not an RTCP compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("shorter than an RTCP header")]
    TooShort,
    #[error("RTCP version is not 2")]
    BadVersion,
    #[error("RTCP length field runs past the end of the compound")]
    BadLength,
    #[error("RTCP packet type {0} is not an RTCP type")]
    NotRtcp(u8),
    #[error("RTCP packet type {pt} (fmt {fmt}) is too short for its content")]
    Truncated { pt: u8, fmt: u8 },
    #[error("padding in RTCP packet is invalid")]
    BadPadding,
}

/// A validated compound packet: every sub-packet header is known to fit.
#[derive(Debug, Clone, Copy)]
pub struct Compound<'a> {
    buf: &'a [u8],
}

impl<'a> Compound<'a> {
    /// Validates the headers of every packet in the compound. A malformed compound is rejected
    /// whole, so that no part of it is acted on.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtcpError> {
        if buf.len() < 4 {
            return Err(RtcpError::TooShort);
        }
        let mut it = RawIter { buf, pos: 0 };
        while let Some(r) = it.next_raw() {
            let raw = r?;
            // Validate the typed content too so that iteration later is infallible.
            Packet::from_raw(&raw)?;
        }
        Ok(Compound { buf })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The packets of the compound, in order.
    pub fn packets(&self) -> impl Iterator<Item = Packet<'a>> + 'a {
        let mut it = RawIter {
            buf: self.buf,
            pos: 0,
        };
        std::iter::from_fn(move || {
            loop {
                match it.next_raw()? {
                    Ok(raw) => {
                        if let Ok(p) = Packet::from_raw(&raw) {
                            return Some(p);
                        }
                    }
                    Err(_) => return None,
                }
            }
        })
    }
}

/// One packet of a compound, before interpretation.
#[derive(Debug, Clone, Copy)]
struct Raw<'a> {
    count: u8,
    pt: u8,
    /// Body after the 4-byte header, without padding.
    body: &'a [u8],
    /// Whole packet including header and padding.
    whole: &'a [u8],
}

struct RawIter<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> RawIter<'a> {
    fn next_raw(&mut self) -> Option<Result<Raw<'a>, RtcpError>> {
        let rest = self.buf.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let r = (|| {
            let hdr = rest.get(..4).ok_or(RtcpError::TooShort)?;
            if hdr[0] >> 6 != 2 {
                return Err(RtcpError::BadVersion);
            }
            let pt = hdr[1];
            if !(192..=223).contains(&pt) {
                return Err(RtcpError::NotRtcp(pt));
            }
            let len = 4 * (usize::from(u16::from_be_bytes([hdr[2], hdr[3]])) + 1);
            let whole = rest.get(..len).ok_or(RtcpError::BadLength)?;
            let mut body_end = len;
            if hdr[0] & 0x20 != 0 {
                let pad = usize::from(whole[len - 1]);
                if pad == 0 || pad > len - 4 {
                    return Err(RtcpError::BadPadding);
                }
                body_end -= pad;
            }
            Ok((
                Raw {
                    count: hdr[0] & 0x1f,
                    pt,
                    body: &whole[4..body_end],
                    whole,
                },
                len,
            ))
        })();
        match r {
            Ok((raw, len)) => {
                self.pos += len;
                Some(Ok(raw))
            }
            Err(e) => {
                self.pos = self.buf.len();
                Some(Err(e))
            }
        }
    }
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// A typed view of one RTCP packet.
#[derive(Debug, Clone, Copy)]
pub enum Packet<'a> {
    SenderReport(SenderReport<'a>),
    ReceiverReport(ReceiverReport<'a>),
    Sdes,
    Bye(Bye<'a>),
    Pli(Pli),
    Fir(Fir<'a>),
    Nack(Nack<'a>),
    Remb(Remb<'a>),
    TransportCc(TransportCc<'a>),
    Xr,
    /// APP, other feedback formats, unknown types: skipped by the bridge.
    Other {
        pt: u8,
        fmt: u8,
    },
}

impl<'a> Packet<'a> {
    fn from_raw(r: &Raw<'a>) -> Result<Self, RtcpError> {
        let trunc = RtcpError::Truncated {
            pt: r.pt,
            fmt: r.count,
        };
        let b = r.body;
        Ok(match (r.pt, r.count) {
            (PT_SR, rc) => {
                let need = 24 + 24 * usize::from(rc);
                if b.len() < need {
                    return Err(trunc);
                }
                Packet::SenderReport(SenderReport {
                    body: b,
                    whole: r.whole,
                    rc,
                })
            }
            (PT_RR, rc) => {
                let need = 4 + 24 * usize::from(rc);
                if b.len() < need {
                    return Err(trunc);
                }
                Packet::ReceiverReport(ReceiverReport { body: b, rc })
            }
            (PT_SDES, _) => Packet::Sdes,
            (PT_BYE, sc) => {
                if b.len() < 4 * usize::from(sc) {
                    return Err(trunc);
                }
                Packet::Bye(Bye {
                    ssrcs: &b[..4 * usize::from(sc)],
                })
            }
            (PT_RTPFB | PT_PSFB, _) if b.len() < 8 => return Err(trunc),
            (PT_RTPFB, FMT_NACK) => Packet::Nack(Nack {
                sender_ssrc: u32_at(b, 0),
                media_ssrc: u32_at(b, 4),
                fci: &b[8..b.len() - (b.len() - 8) % 4],
            }),
            (PT_RTPFB, FMT_TCC) => {
                if b.len() < 16 {
                    return Err(trunc);
                }
                Packet::TransportCc(TransportCc { body: b })
            }
            (PT_PSFB, FMT_PLI) => Packet::Pli(Pli {
                sender_ssrc: u32_at(b, 0),
                media_ssrc: u32_at(b, 4),
            }),
            (PT_PSFB, FMT_FIR) => Packet::Fir(Fir {
                sender_ssrc: u32_at(b, 0),
                fci: &b[8..b.len() - (b.len() - 8) % 8],
            }),
            (PT_PSFB, FMT_AFB) if b.get(8..12) == Some(b"REMB") => {
                if b.len() < 16 {
                    return Err(trunc);
                }
                let n = usize::from(b[12]);
                if b.len() < 16 + 4 * n {
                    return Err(trunc);
                }
                Packet::Remb(Remb { body: b })
            }
            (PT_XR, _) => Packet::Xr,
            (pt, fmt) => Packet::Other { pt, fmt },
        })
    }
}

/// An RFC 3550 report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Cumulative number of packets lost (24-bit signed on the wire).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    pub jitter: u32,
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

impl ReportBlock {
    fn parse(b: &[u8]) -> Self {
        let lost_raw = u32_at(b, 4) & 0x00ff_ffff;
        // Sign-extend the 24-bit value.
        let cumulative_lost = ((lost_raw << 8) as i32) >> 8;
        ReportBlock {
            ssrc: u32_at(b, 0),
            fraction_lost: b[4],
            cumulative_lost,
            extended_highest_seq: u32_at(b, 8),
            jitter: u32_at(b, 12),
            last_sr: u32_at(b, 16),
            delay_since_last_sr: u32_at(b, 20),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        let lost = (self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32) & 0x00ff_ffff;
        out.extend_from_slice(&((u32::from(self.fraction_lost) << 24) | lost).to_be_bytes());
        out.extend_from_slice(&self.extended_highest_seq.to_be_bytes());
        out.extend_from_slice(&self.jitter.to_be_bytes());
        out.extend_from_slice(&self.last_sr.to_be_bytes());
        out.extend_from_slice(&self.delay_since_last_sr.to_be_bytes());
    }
}

fn blocks(b: &[u8], rc: u8) -> impl Iterator<Item = ReportBlock> + '_ {
    b.chunks_exact(24)
        .take(usize::from(rc))
        .map(ReportBlock::parse)
}

#[derive(Debug, Clone, Copy)]
pub struct SenderReport<'a> {
    body: &'a [u8],
    whole: &'a [u8],
    rc: u8,
}

impl<'a> SenderReport<'a> {
    pub fn ssrc(&self) -> u32 {
        u32_at(self.body, 0)
    }
    /// 64-bit NTP timestamp.
    pub fn ntp(&self) -> u64 {
        (u64::from(u32_at(self.body, 4)) << 32) | u64::from(u32_at(self.body, 8))
    }
    /// The middle 32 bits of the NTP timestamp, as echoed in LSR.
    pub fn ntp_middle(&self) -> u32 {
        (self.ntp() >> 16) as u32
    }
    pub fn rtp_timestamp(&self) -> u32 {
        u32_at(self.body, 12)
    }
    pub fn packet_count(&self) -> u32 {
        u32_at(self.body, 16)
    }
    pub fn octet_count(&self) -> u32 {
        u32_at(self.body, 20)
    }
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        blocks(&self.body[24..], self.rc)
    }
    /// The packet as received.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.whole
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ReceiverReport<'a> {
    body: &'a [u8],
    rc: u8,
}

impl<'a> ReceiverReport<'a> {
    pub fn ssrc(&self) -> u32 {
        u32_at(self.body, 0)
    }
    pub fn report_blocks(&self) -> impl Iterator<Item = ReportBlock> + 'a {
        blocks(&self.body[4..], self.rc)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
}

impl<'a> Bye<'a> {
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| u32_at(c, 0))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pli {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct Fir<'a> {
    pub sender_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    /// `(ssrc, command sequence number)` entries.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u8)> + 'a {
        self.fci.chunks_exact(8).map(|c| (u32_at(c, 0), c[4]))
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Nack<'a> {
    pub sender_ssrc: u32,
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    /// The lost sequence numbers, expanded from the (PID, BLP) pairs.
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.fci.chunks_exact(4).flat_map(|c| {
            let pid = u16::from_be_bytes([c[0], c[1]]);
            let blp = u16::from_be_bytes([c[2], c[3]]);
            std::iter::once(pid).chain(
                (0..16u16)
                    .filter(move |i| blp & (1 << i) != 0)
                    .map(move |i| pid.wrapping_add(i + 1)),
            )
        })
    }
}

/// Receiver estimated maximum bitrate (draft-alvestrand-rmcat-remb).
#[derive(Debug, Clone, Copy)]
pub struct Remb<'a> {
    body: &'a [u8],
}

impl<'a> Remb<'a> {
    pub fn sender_ssrc(&self) -> u32 {
        u32_at(self.body, 0)
    }
    pub fn bitrate_bps(&self) -> u64 {
        let exp = u32::from(self.body[13] >> 2);
        let mantissa = (u32::from(self.body[13] & 0x03) << 16)
            | (u32::from(self.body[14]) << 8)
            | u32::from(self.body[15]);
        let v = u128::from(mantissa) << exp;
        u64::try_from(v).unwrap_or(u64::MAX)
    }
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let n = usize::from(self.body[12]);
        self.body[16..16 + 4 * n]
            .chunks_exact(4)
            .map(|c| u32_at(c, 0))
    }
}

/// Transport-wide congestion control feedback: only the header (issue 5 decodes the chunks).
#[derive(Debug, Clone, Copy)]
pub struct TransportCc<'a> {
    body: &'a [u8],
}

impl<'a> TransportCc<'a> {
    pub fn sender_ssrc(&self) -> u32 {
        u32_at(self.body, 0)
    }
    pub fn media_ssrc(&self) -> u32 {
        u32_at(self.body, 4)
    }
    pub fn base_seq(&self) -> u16 {
        u16::from_be_bytes([self.body[8], self.body[9]])
    }
    pub fn status_count(&self) -> u16 {
        u16::from_be_bytes([self.body[10], self.body[11]])
    }
    /// Reference time in multiples of 64 ms (24-bit signed).
    pub fn reference_time(&self) -> i32 {
        ((u32_at(self.body, 12) & 0xffff_ff00) as i32) >> 8
    }
    pub fn feedback_count(&self) -> u8 {
        self.body[15]
    }
    /// The packet chunks and receive deltas, undecoded.
    pub fn chunks(&self) -> &'a [u8] {
        &self.body[16..]
    }
}

// ---------------------------------------------------------------------------------------------
// Writers. Each appends one packet to `out`.

fn header(out: &mut Vec<u8>, count: u8, pt: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0x80 | (count & 0x1f), pt, 0, 0]);
    at
}

fn finish(out: &mut [u8], at: usize) {
    let words = ((out.len() - at) / 4 - 1) as u16;
    out[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
}

/// Appends a receiver report. At most 31 blocks fit one RR: the caller chunks.
pub fn write_rr(out: &mut Vec<u8>, sender_ssrc: u32, blocks: &[ReportBlock]) {
    let n = blocks.len().min(31);
    let at = header(out, n as u8, PT_RR);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    for b in &blocks[..n] {
        b.write(out);
    }
    finish(out, at);
}

/// Sender info of an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderInfo {
    pub ssrc: u32,
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// Appends a sender report with `blocks` (at most 31).
pub fn write_sr(out: &mut Vec<u8>, info: &SenderInfo, blocks: &[ReportBlock]) {
    let n = blocks.len().min(31);
    let at = header(out, n as u8, PT_SR);
    out.extend_from_slice(&info.ssrc.to_be_bytes());
    out.extend_from_slice(&info.ntp.to_be_bytes());
    out.extend_from_slice(&info.rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&info.packet_count.to_be_bytes());
    out.extend_from_slice(&info.octet_count.to_be_bytes());
    for b in &blocks[..n] {
        b.write(out);
    }
    finish(out, at);
}

pub fn write_pli(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32) {
    let at = header(out, FMT_PLI, PT_PSFB);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    finish(out, at);
}

pub fn write_fir(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, seq: u8) {
    let at = header(out, FMT_FIR, PT_PSFB);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&[seq, 0, 0, 0]);
    finish(out, at);
}

/// Appends a generic NACK for `lost` (any order; packed into PID/BLP pairs).
pub fn write_nack(out: &mut Vec<u8>, sender_ssrc: u32, media_ssrc: u32, lost: &[u16]) {
    let at = header(out, FMT_NACK, PT_RTPFB);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    let mut i = 0;
    while let Some(&pid) = lost.get(i) {
        let mut blp = 0u16;
        i += 1;
        while let Some(&s) = lost.get(i) {
            let d = s.wrapping_sub(pid);
            if (1..=16).contains(&d) {
                blp |= 1 << (d - 1);
                i += 1;
            } else {
                break;
            }
        }
        out.extend_from_slice(&pid.to_be_bytes());
        out.extend_from_slice(&blp.to_be_bytes());
    }
    finish(out, at);
}

pub fn write_remb(out: &mut Vec<u8>, sender_ssrc: u32, bitrate_bps: u64, ssrcs: &[u32]) {
    let at = header(out, FMT_AFB, PT_PSFB);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(b"REMB");
    let mut exp = 0u32;
    let mut mantissa = bitrate_bps;
    while mantissa > 0x3ffff {
        mantissa >>= 1;
        exp += 1;
    }
    let n = ssrcs.len().min(255);
    out.push(n as u8);
    out.push(((exp as u8) << 2) | ((mantissa >> 16) as u8 & 0x03));
    out.push((mantissa >> 8) as u8);
    out.push(mantissa as u8);
    for s in &ssrcs[..n] {
        out.extend_from_slice(&s.to_be_bytes());
    }
    finish(out, at);
}

pub fn write_bye(out: &mut Vec<u8>, ssrcs: &[u32]) {
    let n = ssrcs.len().min(31);
    let at = header(out, n as u8, PT_BYE);
    for s in &ssrcs[..n] {
        out.extend_from_slice(&s.to_be_bytes());
    }
    finish(out, at);
}

/// Appends an SDES packet with one CNAME chunk.
pub fn write_sdes_cname(out: &mut Vec<u8>, ssrc: u32, cname: &str) {
    let at = header(out, 1, PT_SDES);
    out.extend_from_slice(&ssrc.to_be_bytes());
    let c = &cname.as_bytes()[..cname.len().min(255)];
    out.push(1);
    out.push(c.len() as u8);
    out.extend_from_slice(c);
    out.push(0); // end of items
    while !(out.len() - at).is_multiple_of(4) {
        out.push(0);
    }
    finish(out, at);
}

/// Appends a transport-cc feedback header with raw chunk bytes (used by tests; issue 5 builds real
/// feedback).
pub fn write_tcc_raw(
    out: &mut Vec<u8>,
    sender_ssrc: u32,
    media_ssrc: u32,
    base_seq: u16,
    count: u16,
    chunks: &[u8],
) {
    let at = header(out, FMT_TCC, PT_RTPFB);
    out.extend_from_slice(&sender_ssrc.to_be_bytes());
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&base_seq.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(chunks);
    while !(out.len() - at).is_multiple_of(4) {
        out.push(0);
    }
    finish(out, at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(ssrc: u32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 0x0001_0005,
            jitter: 77,
            last_sr: 0x1234_5678,
            delay_since_last_sr: 65536,
        }
    }

    #[test]
    fn compound_roundtrip_of_every_type() {
        let mut v = Vec::new();
        write_sr(
            &mut v,
            &SenderInfo {
                ssrc: 1,
                ntp: 0x0102_0304_0506_0708,
                rtp_timestamp: 9,
                packet_count: 10,
                octet_count: 11,
            },
            &[block(5)],
        );
        write_rr(&mut v, 2, &[block(6), block(7)]);
        write_sdes_cname(&mut v, 2, "abc");
        write_pli(&mut v, 2, 100);
        write_fir(&mut v, 2, 101, 7);
        write_nack(&mut v, 2, 102, &[10, 11, 13, 40]);
        write_remb(&mut v, 2, 1_500_000, &[100, 101]);
        write_tcc_raw(&mut v, 2, 0, 300, 5, &[0x20, 0x05, 1, 1, 1, 1, 1]);
        write_bye(&mut v, &[1, 2]);
        // An XR packet and an APP packet: skipped.
        v.extend_from_slice(&[0x80, PT_XR, 0, 1, 0, 0, 0, 2]);
        v.extend_from_slice(&[0x80, PT_APP, 0, 2, 0, 0, 0, 2, b'a', b'b', b'c', b'd']);

        let c = Compound::parse(&v).unwrap();
        let ps: Vec<_> = c.packets().collect();
        assert_eq!(ps.len(), 11);
        match ps[0] {
            Packet::SenderReport(sr) => {
                assert_eq!(sr.ssrc(), 1);
                assert_eq!(sr.ntp(), 0x0102_0304_0506_0708);
                assert_eq!(sr.ntp_middle(), 0x0304_0506);
                assert_eq!(
                    (sr.rtp_timestamp(), sr.packet_count(), sr.octet_count()),
                    (9, 10, 11)
                );
                assert_eq!(sr.report_blocks().collect::<Vec<_>>(), vec![block(5)]);
            }
            ref p => panic!("{p:?}"),
        }
        match ps[1] {
            Packet::ReceiverReport(rr) => {
                assert_eq!(rr.ssrc(), 2);
                assert_eq!(
                    rr.report_blocks().collect::<Vec<_>>(),
                    vec![block(6), block(7)]
                );
            }
            ref p => panic!("{p:?}"),
        }
        assert!(matches!(ps[2], Packet::Sdes));
        assert!(matches!(
            ps[3],
            Packet::Pli(Pli {
                sender_ssrc: 2,
                media_ssrc: 100
            })
        ));
        match ps[4] {
            Packet::Fir(f) => assert_eq!(f.entries().collect::<Vec<_>>(), vec![(101, 7)]),
            ref p => panic!("{p:?}"),
        }
        match ps[5] {
            Packet::Nack(n) => {
                assert_eq!(n.media_ssrc, 102);
                assert_eq!(n.lost().collect::<Vec<_>>(), vec![10, 11, 13, 40]);
            }
            ref p => panic!("{p:?}"),
        }
        match ps[6] {
            Packet::Remb(r) => {
                let br = r.bitrate_bps();
                assert!((1_499_000..=1_500_000).contains(&br), "{br}");
                assert_eq!(r.ssrcs().collect::<Vec<_>>(), vec![100, 101]);
            }
            ref p => panic!("{p:?}"),
        }
        match ps[7] {
            Packet::TransportCc(t) => {
                assert_eq!((t.base_seq(), t.status_count()), (300, 5));
            }
            ref p => panic!("{p:?}"),
        }
        match ps[8] {
            Packet::Bye(b) => assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![1, 2]),
            ref p => panic!("{p:?}"),
        }
        assert!(matches!(ps[9], Packet::Xr));
        assert!(matches!(ps[10], Packet::Other { pt: PT_APP, .. }));
    }

    #[test]
    fn nack_wraps_around_sequence_space() {
        let mut v = Vec::new();
        write_nack(&mut v, 1, 2, &[65534, 65535, 0, 1]);
        let c = Compound::parse(&v).unwrap();
        let Some(Packet::Nack(n)) = c.packets().next() else {
            panic!()
        };
        assert_eq!(n.lost().collect::<Vec<_>>(), vec![65534, 65535, 0, 1]);
        assert_eq!(v.len(), 16); // one FCI entry
    }

    #[test]
    fn malformed_compounds_are_rejected_whole() {
        assert_eq!(Compound::parse(&[]).unwrap_err(), RtcpError::TooShort);
        assert_eq!(
            Compound::parse(&[0x80, 200, 0]).unwrap_err(),
            RtcpError::TooShort
        );
        assert_eq!(
            Compound::parse(&[0x40, 201, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::BadVersion
        );
        assert_eq!(
            Compound::parse(&[0x80, 96, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::NotRtcp(96)
        );
        // Length says 3 words, only 1 present.
        assert_eq!(
            Compound::parse(&[0x80, 201, 0, 3, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::BadLength
        );
        // RR claims one block but carries none.
        assert_eq!(
            Compound::parse(&[0x81, 201, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::Truncated { pt: 201, fmt: 1 }
        );
        // PLI without media SSRC.
        assert_eq!(
            Compound::parse(&[0x81, 206, 0, 1, 0, 0, 0, 0]).unwrap_err(),
            RtcpError::Truncated { pt: 206, fmt: 1 }
        );
        // Good RR followed by garbage: whole compound rejected.
        let mut v = Vec::new();
        write_rr(&mut v, 1, &[]);
        v.extend_from_slice(&[0xff, 0xff]);
        assert!(Compound::parse(&v).is_err());
        // Bad padding.
        assert_eq!(
            Compound::parse(&[0xa0, 201, 0, 1, 0, 0, 0, 9]).unwrap_err(),
            RtcpError::BadPadding
        );
    }

    #[test]
    fn truncations_and_garbage_never_panic() {
        let mut v = Vec::new();
        write_sr(&mut v, &SenderInfo::default(), &[block(1)]);
        write_nack(&mut v, 1, 2, &[1, 2, 3]);
        write_remb(&mut v, 1, 100_000, &[1]);
        for n in 0..=v.len() {
            if let Ok(c) = Compound::parse(&v[..n]) {
                for p in c.packets() {
                    let _ = format!("{p:?}");
                }
            }
        }
        let mut x: u32 = 99;
        for _ in 0..5000 {
            let mut buf = [0u8; 48];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            buf[0] = 0x80 | (buf[0] & 0x3f);
            buf[1] = 200 + buf[1] % 8;
            buf[2] = 0;
            buf[3] %= 12;
            if let Ok(c) = Compound::parse(&buf[..4 * (usize::from(buf[3]) + 1)]) {
                for p in c.packets() {
                    if let Packet::Nack(n) = p {
                        let _ = n.lost().count();
                    }
                    if let Packet::Remb(r) = p {
                        let _ = (r.bitrate_bps(), r.ssrcs().count());
                    }
                }
            }
        }
    }
}
