//! Zero-copy RTP (RFC 3550) header view, RFC 8285 header extensions, and the writer that builds the
//! packet a receiver gets (rewritten SSRC/seq/timestamp/PT, extensions stripped and renumbered).
//!
//! [`RtpPacket::parse`] validates the whole header once (fixed part, CSRCs, extension block and every
//! extension element, padding), so the accessors afterwards cannot fail and never index out of bounds.
//! Nothing here allocates.

use thiserror::Error;

/// Fixed RTP header length.
pub const FIXED_HEADER_LEN: usize = 12;
/// `defined by profile` value of the one-byte extension header form (RFC 8285 §4.2).
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// The two-byte form uses `0x100` in the upper 12 bits; the low 4 bits are "appbits".
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Why bytes are not an RTP packet we can forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("shorter than the fixed RTP header")]
    TooShort,
    #[error("RTP version is not 2")]
    BadVersion,
    #[error("CSRC list runs past the end of the packet")]
    CsrcOverflow,
    #[error("header extension runs past the end of the packet")]
    ExtensionOverflow,
    #[error("malformed header extension element")]
    BadExtensionElement,
    #[error("padding length is zero or longer than the payload")]
    BadPadding,
}

/// Layout of the header extension block, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtForm {
    /// RFC 8285 one-byte elements (ids 1–14, 1–16 bytes of data).
    OneByte,
    /// RFC 8285 two-byte elements (ids 1–255, 0–255 bytes of data).
    TwoByte,
    /// Some other profile-specific extension: kept opaque, never interpreted.
    Other(u16),
}

/// A validated, borrowed RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    /// Offset of the extension element data (after the 4-byte extension header).
    ext_start: usize,
    /// End of the extension block (= start of the payload).
    header_len: usize,
    ext_form: Option<ExtForm>,
    /// End of the payload (= start of the padding).
    payload_end: usize,
}

impl<'a> RtpPacket<'a> {
    /// Validates `buf` as an RTP packet. Every header extension element is checked here so that the
    /// iterators later are infallible.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        let b0 = buf[0];
        if b0 >> 6 != 2 {
            return Err(RtpError::BadVersion);
        }
        let cc = usize::from(b0 & 0x0f);
        let mut off = FIXED_HEADER_LEN + 4 * cc;
        if off > buf.len() {
            return Err(RtpError::CsrcOverflow);
        }
        let mut ext_start = off;
        let mut ext_form = None;
        if b0 & 0x10 != 0 {
            let hdr = buf.get(off..off + 4).ok_or(RtpError::ExtensionOverflow)?;
            let profile = u16::from_be_bytes([hdr[0], hdr[1]]);
            let words = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
            ext_start = off + 4;
            let end = ext_start + 4 * words;
            let data = buf.get(ext_start..end).ok_or(RtpError::ExtensionOverflow)?;
            let form = if profile == ONE_BYTE_PROFILE {
                ExtForm::OneByte
            } else if profile & 0xfff0 == TWO_BYTE_PROFILE {
                ExtForm::TwoByte
            } else {
                ExtForm::Other(profile)
            };
            // Walk once to validate.
            let mut it = ExtIter { data, pos: 0, form };
            while it.next_checked()?.is_some() {}
            ext_form = Some(form);
            off = end;
        }
        let mut payload_end = buf.len();
        if b0 & 0x20 != 0 {
            let pad = usize::from(buf[buf.len() - 1]);
            if pad == 0 || off + pad > buf.len() {
                return Err(RtpError::BadPadding);
            }
            payload_end -= pad;
        }
        Ok(RtpPacket {
            buf,
            ext_start,
            header_len: off,
            ext_form,
            payload_end,
        })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }
    pub fn version(&self) -> u8 {
        self.buf[0] >> 6
    }
    pub fn has_padding(&self) -> bool {
        self.buf[0] & 0x20 != 0
    }
    pub fn has_extension(&self) -> bool {
        self.ext_form.is_some()
    }
    pub fn csrc_count(&self) -> usize {
        usize::from(self.buf[0] & 0x0f)
    }
    pub fn marker(&self) -> bool {
        self.buf[1] & 0x80 != 0
    }
    pub fn payload_type(&self) -> u8 {
        self.buf[1] & 0x7f
    }
    pub fn sequence_number(&self) -> u16 {
        u16::from_be_bytes([self.buf[2], self.buf[3]])
    }
    pub fn timestamp(&self) -> u32 {
        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
    }
    pub fn ssrc(&self) -> u32 {
        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
    }
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + 'a {
        let end = FIXED_HEADER_LEN + 4 * self.csrc_count();
        self.buf[FIXED_HEADER_LEN..end]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
    }
    /// Header length including CSRCs and the extension block.
    pub fn header_len(&self) -> usize {
        self.header_len
    }
    pub fn ext_form(&self) -> Option<ExtForm> {
        self.ext_form
    }
    /// The payload without padding.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len..self.payload_end]
    }
    /// Number of padding bytes at the end (0 without the P bit).
    pub fn padding_len(&self) -> usize {
        self.buf.len() - self.payload_end
    }
    /// True for packets that carry only padding (e.g. bandwidth probes).
    pub fn is_padding_only(&self) -> bool {
        self.payload_end == self.header_len
    }

    /// The RFC 8285 extension elements (`(id, data)`); empty for packets without extensions or with a
    /// profile other than one-byte/two-byte.
    pub fn extensions(&self) -> ExtIter<'a> {
        let (data, form) = match self.ext_form {
            Some(form @ (ExtForm::OneByte | ExtForm::TwoByte)) => {
                (&self.buf[self.ext_start..self.header_len], form)
            }
            _ => (&self.buf[0..0], ExtForm::OneByte),
        };
        ExtIter { data, pos: 0, form }
    }

    /// The data of extension element `id` (first occurrence).
    pub fn extension(&self, id: u8) -> Option<&'a [u8]> {
        if id == 0 {
            return None;
        }
        self.extensions().find(|(i, _)| *i == id).map(|(_, d)| d)
    }

    /// RFC 6464 client-to-mixer audio level under extension `id`: `(voice activity, level)` where level
    /// is 0–127 = −dBov (127 = silence).
    pub fn audio_level(&self, id: u8) -> Option<(bool, u8)> {
        let d = self.extension(id)?;
        let b = *d.first()?;
        Some((b & 0x80 != 0, b & 0x7f))
    }

    /// Transport-wide sequence number (draft-holmer-rmcat-transport-wide-cc-extensions-01) under `id`.
    pub fn transport_cc_seq(&self, id: u8) -> Option<u16> {
        match self.extension(id)? {
            [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }
}

/// Iterator over RFC 8285 extension elements of a validated packet.
#[derive(Debug, Clone)]
pub struct ExtIter<'a> {
    data: &'a [u8],
    pos: usize,
    form: ExtForm,
}

impl<'a> ExtIter<'a> {
    fn next_checked(&mut self) -> Result<Option<(u8, &'a [u8])>, RtpError> {
        loop {
            let Some(&b) = self.data.get(self.pos) else {
                return Ok(None);
            };
            match self.form {
                ExtForm::Other(_) => return Ok(None),
                ExtForm::OneByte => {
                    if b == 0 {
                        self.pos += 1; // padding
                        continue;
                    }
                    let id = b >> 4;
                    if id == 15 {
                        // Reserved: stop processing the block (RFC 8285 §4.2).
                        self.pos = self.data.len();
                        return Ok(None);
                    }
                    let len = usize::from(b & 0x0f) + 1;
                    let start = self.pos + 1;
                    let d = self
                        .data
                        .get(start..start + len)
                        .ok_or(RtpError::BadExtensionElement)?;
                    self.pos = start + len;
                    return Ok(Some((id, d)));
                }
                ExtForm::TwoByte => {
                    if b == 0 {
                        self.pos += 1;
                        continue;
                    }
                    let len = usize::from(
                        *self
                            .data
                            .get(self.pos + 1)
                            .ok_or(RtpError::BadExtensionElement)?,
                    );
                    let start = self.pos + 2;
                    let d = self
                        .data
                        .get(start..start + len)
                        .ok_or(RtpError::BadExtensionElement)?;
                    self.pos = start + len;
                    return Ok(Some((b, d)));
                }
            }
        }
    }
}

impl<'a> Iterator for ExtIter<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        // The block was validated by `RtpPacket::parse`; an error cannot happen here, but if it did we
        // end the iteration rather than panic.
        self.next_checked().ok().flatten()
    }
}

/// In-place rewriting of a packet's fixed header. Construct only over bytes that passed
/// [`RtpPacket::parse`] (or at least are [`FIXED_HEADER_LEN`] long: `new` checks that).
pub struct RtpHeaderMut<'a> {
    buf: &'a mut [u8],
}

impl<'a> RtpHeaderMut<'a> {
    pub fn new(buf: &'a mut [u8]) -> Result<Self, RtpError> {
        if buf.len() < FIXED_HEADER_LEN {
            return Err(RtpError::TooShort);
        }
        Ok(RtpHeaderMut { buf })
    }
    pub fn set_marker(&mut self, m: bool) {
        self.buf[1] = (self.buf[1] & 0x7f) | if m { 0x80 } else { 0 };
    }
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7f);
    }
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
}

/// Overwrites, in place, the value of the two-byte transport-cc element `id` of a packet. Returns false
/// if the packet has no such element (or is not valid RTP).
pub fn set_transport_cc_seq(buf: &mut [u8], id: u8, seq: u16) -> bool {
    let Ok(p) = RtpPacket::parse(buf) else {
        return false;
    };
    let base = buf.as_ptr() as usize;
    let Some(d) = p.extension(id) else {
        return false;
    };
    if d.len() < 2 {
        return false;
    }
    let off = d.as_ptr() as usize - base;
    buf[off..off + 2].copy_from_slice(&seq.to_be_bytes());
    true
}

/// How to map a sender's header extension ids onto a receiver's. Built once per (sender, receiver)
/// media kind when parameters change; per packet it is a couple of comparisons.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtMap {
    /// `(ingress id, egress id)` pairs of the extensions we keep; 0 = unused slot.
    pub keep: [(u8, u8); 2],
    /// Receiver's transport-cc id: the bridge writes its own transport-wide sequence number there.
    pub tcc_out: u8,
    /// The receiver accepts two-byte elements (`extmap-allow-mixed`).
    pub allow_two_byte: bool,
    /// The receiver's sdes:mid id and the mid to stamp (SSRC rewriting with `rtp-mid-demux`); id
    /// 0 = none.
    pub mid: (u8, SdesMid),
}

/// An RTP `sdes:mid` value the bridge stamps (RFC 8843): a slot's `a<n>` / `v<n>`, at most 4 bytes
/// (pools hold at most a few hundred slots), kept inline so the packet path copies no string.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdesMid {
    len: u8,
    bytes: [u8; 4],
}

impl SdesMid {
    /// `<prefix><n>` (empty if it does not fit).
    pub fn new(prefix: char, n: usize) -> Self {
        let text = format!("{prefix}{n}");
        let mut m = SdesMid::default();
        if text.len() <= m.bytes.len() {
            m.bytes[..text.len()].copy_from_slice(text.as_bytes());
            m.len = text.len() as u8;
        }
        m
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl ExtMap {
    fn out_id(&self, id: u8) -> Option<u8> {
        self.keep
            .iter()
            .find(|(i, o)| *i == id && *i != 0 && *o != 0)
            .map(|(_, o)| *o)
    }
}

/// Per-receiver rewrite of a forwarded packet.
#[derive(Debug, Clone, Copy)]
pub struct Rewrite<'m> {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub ext: &'m ExtMap,
    /// Transport-wide sequence number to stamp (only used if `ext.tcc_out != 0`).
    pub tcc_seq: u16,
    /// A kept extension (by ingress id) written with these bytes instead of the sender's (the
    /// receiver's AV1 Dependency Descriptor).
    pub replace: Option<(u8, &'m [u8])>,
}

/// The bytes of kept element `id`: the replacement if it names `id`, else the sender's `d`.
#[inline]
fn replaced<'x>(replace: Option<(u8, &'x [u8])>, id: u8, d: &'x [u8]) -> &'x [u8] {
    match replace {
        Some((r, bytes)) if r == id => bytes,
        _ => d,
    }
}

/// Builds the packet a receiver gets into `out` (cleared first; no allocation once `out` has the
/// capacity): fixed header with the rewritten fields, the CSRCs, a new extension block holding only
/// the kept (renumbered) elements plus the bridge's transport-cc element, then payload and padding.
pub fn write_forwarded(pkt: &RtpPacket<'_>, rw: &Rewrite<'_>, out: &mut Vec<u8>) {
    write_forwarded_header(pkt, rw, out);
    out.extend_from_slice(&pkt.as_bytes()[pkt.header_len..]);
}

/// [`write_forwarded`] without the payload: the header's bytes, and where in them the
/// transport-cc value went (`None`: no transport-cc element).
fn write_forwarded_header(
    pkt: &RtpPacket<'_>,
    rw: &Rewrite<'_>,
    out: &mut Vec<u8>,
) -> Option<usize> {
    let src = pkt.as_bytes();
    out.clear();
    let cc = pkt.csrc_count();

    // Decide the element form: one-byte unless an element does not fit it and the receiver allows
    // two-byte elements; elements that fit neither are dropped.
    let mid = (rw.ext.mid.0 != 0 && !rw.ext.mid.1.is_empty()).then_some(rw.ext.mid);
    let mut need_two = rw.ext.tcc_out > 14 || mid.is_some_and(|(id, _)| id > 14);
    let mut any = rw.ext.tcc_out != 0 || mid.is_some();
    let element = |id: u8, d| replaced(rw.replace, id, d);
    for (id, d) in pkt.extensions() {
        if let Some(o) = rw.ext.out_id(id) {
            let d = element(id, d);
            any = true;
            if o > 14 || d.is_empty() || d.len() > 16 {
                need_two = true;
            }
        }
    }
    let two = need_two && rw.ext.allow_two_byte;

    let mut tcc_at = None;
    let b0 = (src[0] & 0xe0 & !0x10) | if any { 0x10 } else { 0 } | (cc as u8);
    out.push(b0);
    out.push((src[1] & 0x80) | (rw.payload_type & 0x7f));
    out.extend_from_slice(&rw.seq.to_be_bytes());
    out.extend_from_slice(&rw.timestamp.to_be_bytes());
    out.extend_from_slice(&rw.ssrc.to_be_bytes());
    out.extend_from_slice(&src[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 4 * cc]);

    if any {
        let hdr_at = out.len();
        let profile = if two {
            TWO_BYTE_PROFILE
        } else {
            ONE_BYTE_PROFILE
        };
        out.extend_from_slice(&profile.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        let data_at = out.len();
        let put = |out: &mut Vec<u8>, id: u8, d: &[u8]| {
            if two {
                if d.len() <= 255 {
                    out.push(id);
                    out.push(d.len() as u8);
                    out.extend_from_slice(d);
                }
            } else if (1..=14).contains(&id) && (1..=16).contains(&d.len()) {
                out.push((id << 4) | (d.len() as u8 - 1));
                out.extend_from_slice(d);
            }
        };
        for (id, d) in pkt.extensions() {
            if let Some(o) = rw.ext.out_id(id) {
                put(out, o, element(id, d));
            }
        }
        if rw.ext.tcc_out != 0 {
            let before = out.len();
            put(out, rw.ext.tcc_out, &rw.tcc_seq.to_be_bytes());
            tcc_at = (out.len() > before).then(|| out.len() - 2);
        }
        if let Some((id, m)) = mid {
            put(out, id, m.as_bytes());
        }
        while !(out.len() - data_at).is_multiple_of(4) {
            out.push(0);
        }
        let words = ((out.len() - data_at) / 4) as u16;
        out[hdr_at + 2..hdr_at + 4].copy_from_slice(&words.to_be_bytes());
    }
    tcc_at
}

/// The longest header [`ForwardedHeader`] keeps (CSRCs and the kept elements of a browser's
/// packet are far shorter); a longer one is built anew for every receiver.
const MAX_SHARED_HEADER: usize = 128;

/// The header [`write_forwarded`] built for one receiver of an ingress packet, reused for the
/// next receivers of that packet with the same extension plan and payload type (in a conference
/// of one client kind: all of them): their headers differ only in sequence number, timestamp,
/// SSRC and transport-cc value, which are patched in. Lives for one fan-out (one ingress packet);
/// a header with a replaced element (the receiver's own AV1 Dependency Descriptor) is not shared.
#[derive(Debug, Clone)]
pub struct ForwardedHeader {
    /// The plan and payload type the bytes were built for; `None`: nothing kept yet.
    key: Option<(ExtMap, u8)>,
    bytes: [u8; MAX_SHARED_HEADER],
    len: usize,
    tcc_at: Option<usize>,
}

impl Default for ForwardedHeader {
    fn default() -> Self {
        ForwardedHeader {
            key: None,
            bytes: [0; MAX_SHARED_HEADER],
            len: 0,
            tcc_at: None,
        }
    }
}

impl ForwardedHeader {
    /// [`write_forwarded`] of `pkt` (the ingress packet this was made for) into `out`: the same
    /// bytes, from the kept header when it fits `rw`.
    pub fn write(&mut self, pkt: &RtpPacket<'_>, rw: &Rewrite<'_>, out: &mut Vec<u8>) {
        let src = pkt.as_bytes();
        let key = (*rw.ext, rw.payload_type);
        let shareable = rw.replace.is_none();
        if shareable && self.key == Some(key) {
            out.clear();
            out.extend_from_slice(&self.bytes[..self.len]);
            out[2..4].copy_from_slice(&rw.seq.to_be_bytes());
            out[4..8].copy_from_slice(&rw.timestamp.to_be_bytes());
            out[8..12].copy_from_slice(&rw.ssrc.to_be_bytes());
            if let Some(at) = self.tcc_at {
                out[at..at + 2].copy_from_slice(&rw.tcc_seq.to_be_bytes());
            }
        } else {
            let tcc_at = write_forwarded_header(pkt, rw, out);
            if shareable && out.len() <= MAX_SHARED_HEADER {
                self.bytes[..out.len()].copy_from_slice(out);
                self.len = out.len();
                self.tcc_at = tcc_at;
                self.key = Some(key);
            }
        }
        out.extend_from_slice(&src[pkt.header_len..]);
    }
}

/// Builds an RTX packet (RFC 4588) from a packet as it was sent: same header and extensions, new SSRC,
/// payload type and sequence number, the original sequence number as the first two payload bytes, and
/// the original payload without its padding.
pub fn write_rtx(
    original: &RtpPacket<'_>,
    rtx_ssrc: u32,
    rtx_pt: u8,
    rtx_seq: u16,
    out: &mut Vec<u8>,
) {
    let src = original.as_bytes();
    out.clear();
    out.push(src[0] & !0x20);
    out.push((src[1] & 0x80) | (rtx_pt & 0x7f));
    out.extend_from_slice(&rtx_seq.to_be_bytes());
    out.extend_from_slice(&src[4..8]);
    out.extend_from_slice(&rtx_ssrc.to_be_bytes());
    out.extend_from_slice(&src[FIXED_HEADER_LEN..original.header_len]);
    out.extend_from_slice(&original.sequence_number().to_be_bytes());
    out.extend_from_slice(original.payload());
}

/// Rebuilds the original packet from a sender's RTX packet (RFC 4588): media SSRC, the original
/// sequence number (first two payload bytes) and payload type, same header extensions, the payload
/// after the OSN, no padding. Returns false (leaving `out` cleared) if the payload is too short.
pub fn write_unwrapped_rtx(
    rtx: &RtpPacket<'_>,
    media_ssrc: u32,
    pt: u8,
    out: &mut Vec<u8>,
) -> bool {
    out.clear();
    let p = rtx.payload();
    let Some(osn) = p.get(..2) else {
        return false;
    };
    let src = rtx.as_bytes();
    out.push(src[0] & !0x20);
    out.push((src[1] & 0x80) | (pt & 0x7f));
    out.extend_from_slice(osn);
    out.extend_from_slice(&src[4..8]);
    out.extend_from_slice(&media_ssrc.to_be_bytes());
    out.extend_from_slice(&src[FIXED_HEADER_LEN..rtx.header_len]);
    out.extend_from_slice(&p[2..]);
    true
}

/// Builds a padding-only packet (`padding` bytes of padding, 1–255) with the header fields of `rw`
/// and only its transport-cc element (bandwidth probes on an RTX stream).
pub fn write_padding(rw: &Rewrite<'_>, padding: u8, out: &mut Vec<u8>) {
    out.clear();
    let pad = padding.max(1);
    let id = rw.ext.tcc_out;
    out.push(0x80 | 0x20 | if id != 0 { 0x10 } else { 0 });
    out.push(rw.payload_type & 0x7f);
    out.extend_from_slice(&rw.seq.to_be_bytes());
    out.extend_from_slice(&rw.timestamp.to_be_bytes());
    out.extend_from_slice(&rw.ssrc.to_be_bytes());
    if id != 0 {
        if id <= 14 {
            out.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
            out.extend_from_slice(&[0, 1, (id << 4) | 1]);
            out.extend_from_slice(&rw.tcc_seq.to_be_bytes());
            out.push(0);
        } else {
            out.extend_from_slice(&TWO_BYTE_PROFILE.to_be_bytes());
            out.extend_from_slice(&[0, 1, id, 2]);
            out.extend_from_slice(&rw.tcc_seq.to_be_bytes());
        }
    }
    out.resize(out.len() + usize::from(pad) - 1, 0);
    out.push(pad);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a test packet with one-byte extensions.
    pub(crate) fn build(
        pt: u8,
        seq: u16,
        ts: u32,
        ssrc: u32,
        exts: &[(u8, &[u8])],
        payload: &[u8],
    ) -> Vec<u8> {
        let mut v = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        v[2..4].copy_from_slice(&seq.to_be_bytes());
        v[4..8].copy_from_slice(&ts.to_be_bytes());
        v[8..12].copy_from_slice(&ssrc.to_be_bytes());
        if !exts.is_empty() {
            v[0] |= 0x10;
            let mut data = Vec::new();
            for (id, d) in exts {
                data.push((id << 4) | (d.len() as u8 - 1));
                data.extend_from_slice(d);
            }
            while data.len() % 4 != 0 {
                data.push(0);
            }
            v.extend_from_slice(&ONE_BYTE_PROFILE.to_be_bytes());
            v.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
            v.extend_from_slice(&data);
        }
        v.extend_from_slice(payload);
        v
    }

    /// Audio level id 1, abs-send-time id 3, tcc id 5, video orientation id 4; payload "data".
    fn four_extensions() -> Vec<u8> {
        build(
            100,
            10,
            20,
            30,
            &[(1, &[0x85]), (3, &[1, 2, 3]), (5, &[0, 1]), (4, &[2])],
            b"data",
        )
    }

    /// Marker, payload type 0x60, 2 CSRCs (10, 11), one two-byte element `id` = [1, 2, 3],
    /// payload "xy", 3 bytes of padding.
    fn csrcs_two_byte_padding(id: u8) -> Vec<u8> {
        let mut v = vec![0xb2, 0xe0, 0, 7, 0, 0, 0, 9, 0, 0, 0, 3];
        v.extend_from_slice(&[0, 0, 0, 10, 0, 0, 0, 11]); // 2 CSRCs
        v.extend_from_slice(&[0x10, 0x00, 0, 2]); // two-byte profile, 2 words
        v.extend_from_slice(&[id, 3, 1, 2, 3, 0, 0, 0]); // len 3, then padding
        v.extend_from_slice(b"xy");
        v.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        v
    }

    #[test]
    fn parses_fixed_header_extensions_and_payload() {
        let b = build(
            111,
            0xabcd,
            0x01020304,
            0xdeadbeef,
            &[(1, &[0x80 | 42]), (5, &[0x12, 0x34])],
            b"hello",
        );
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(p.version(), 2);
        assert_eq!(p.payload_type(), 111);
        assert_eq!(p.sequence_number(), 0xabcd);
        assert_eq!(p.timestamp(), 0x01020304);
        assert_eq!(p.ssrc(), 0xdeadbeef);
        assert!(!p.marker());
        assert_eq!(p.ext_form(), Some(ExtForm::OneByte));
        assert_eq!(p.audio_level(1), Some((true, 42)));
        assert_eq!(p.transport_cc_seq(5), Some(0x1234));
        assert_eq!(p.extension(7), None);
        assert_eq!(p.payload(), b"hello");
        assert_eq!(p.extensions().count(), 2);
    }

    #[test]
    fn parses_csrcs_two_byte_extensions_and_padding() {
        let v = csrcs_two_byte_padding(20);
        let p = RtpPacket::parse(&v).unwrap();
        assert!(p.marker());
        assert_eq!(p.payload_type(), 0x60);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(p.ext_form(), Some(ExtForm::TwoByte));
        assert_eq!(p.extension(20), Some(&[1u8, 2, 3][..]));
        assert_eq!(p.payload(), b"xy");
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn malformed_packets_are_typed_errors() {
        assert_eq!(RtpPacket::parse(&[]).unwrap_err(), RtpError::TooShort);
        assert_eq!(
            RtpPacket::parse(&[0x80; 11]).unwrap_err(),
            RtpError::TooShort
        );
        let mut v = build(96, 1, 1, 1, &[], b"abc");
        v[0] = 0x40;
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), RtpError::BadVersion);
        v[0] = 0x8f; // 15 CSRCs, none present
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), RtpError::CsrcOverflow);
        let mut v = build(96, 1, 1, 1, &[(1, &[1])], b"");
        v.truncate(14);
        assert_eq!(
            RtpPacket::parse(&v).unwrap_err(),
            RtpError::ExtensionOverflow
        );
        let mut v = build(96, 1, 1, 1, &[(1, &[1])], b"");
        v[15] = 9; // extension length of 9 words
        assert_eq!(
            RtpPacket::parse(&v).unwrap_err(),
            RtpError::ExtensionOverflow
        );
        // An element whose length runs past the block.
        let mut v = build(96, 1, 1, 1, &[(1, &[1])], b"");
        v[16] = 0x1f; // id 1, 16 bytes
        assert_eq!(
            RtpPacket::parse(&v).unwrap_err(),
            RtpError::BadExtensionElement
        );
        let mut v = build(96, 1, 1, 1, &[], b"ab");
        v[0] |= 0x20;
        *v.last_mut().unwrap() = 0;
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), RtpError::BadPadding);
        *v.last_mut().unwrap() = 40;
        assert_eq!(RtpPacket::parse(&v).unwrap_err(), RtpError::BadPadding);
    }

    #[test]
    fn every_truncation_of_a_valid_packet_is_handled() {
        let b = build(100, 5, 6, 7, &[(1, &[1]), (3, &[1, 2, 3, 4])], b"payload");
        for n in 0..b.len() {
            // Must not panic; most prefixes are errors, some are valid shorter packets.
            let _ = RtpPacket::parse(&b[..n]);
        }
        // Random garbage never panics either.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut buf = [0u8; 40];
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            buf[0] = (buf[0] & 0x3f) | 0x80;
            if let Ok(p) = RtpPacket::parse(&buf) {
                let _ = p.extensions().count();
                let _ = p.payload();
            }
        }
    }

    #[test]
    fn in_place_rewrite() {
        let mut b = build(100, 5, 6, 7, &[(3, &[0, 9])], b"p");
        {
            let mut h = RtpHeaderMut::new(&mut b).unwrap();
            h.set_ssrc(99);
            h.set_sequence_number(1000);
            h.set_timestamp(2000);
            h.set_payload_type(101);
            h.set_marker(true);
        }
        assert!(set_transport_cc_seq(&mut b, 3, 0xbeef));
        let p = RtpPacket::parse(&b).unwrap();
        assert_eq!(
            (
                p.ssrc(),
                p.sequence_number(),
                p.timestamp(),
                p.payload_type(),
                p.marker()
            ),
            (99, 1000, 2000, 101, true)
        );
        assert_eq!(p.transport_cc_seq(3), Some(0xbeef));
        assert!(RtpHeaderMut::new(&mut [0u8; 5]).is_err());
    }

    #[test]
    fn forwarded_packet_keeps_mapped_extensions_and_stamps_tcc() {
        // Sender: audio level id 1, abs-send-time id 3, tcc id 5, video orientation 4.
        let b = four_extensions();
        let p = RtpPacket::parse(&b).unwrap();
        let map = ExtMap {
            keep: [(1, 7), (4, 4)],
            tcc_out: 9,
            allow_two_byte: false,
            mid: Default::default(),
        };
        let mut out = Vec::new();
        write_forwarded(
            &p,
            &Rewrite {
                ssrc: 31,
                seq: 11,
                timestamp: 21,
                payload_type: 100,
                ext: &map,
                tcc_seq: 77,
                replace: None,
            },
            &mut out,
        );
        let q = RtpPacket::parse(&out).unwrap();
        assert_eq!((q.ssrc(), q.sequence_number(), q.timestamp()), (31, 11, 21));
        let exts: Vec<_> = q.extensions().collect();
        assert_eq!(
            exts,
            vec![(7, &[0x85u8][..]), (4, &[2u8][..]), (9, &[0u8, 77][..])]
        );
        assert_eq!(q.payload(), b"data");

        // No kept extensions and no tcc: X bit cleared.
        let none = ExtMap::default();
        write_forwarded(
            &p,
            &Rewrite {
                ssrc: 1,
                seq: 1,
                timestamp: 1,
                payload_type: 100,
                ext: &none,
                tcc_seq: 0,
                replace: None,
            },
            &mut out,
        );
        let q = RtpPacket::parse(&out).unwrap();
        assert!(!q.has_extension());
        assert_eq!(q.header_len(), 12);
        assert_eq!(q.payload(), b"data");

        // Receiver id above 14 needs the two-byte form.
        let map = ExtMap {
            keep: [(1, 20), (0, 0)],
            tcc_out: 0,
            allow_two_byte: true,
            mid: Default::default(),
        };
        write_forwarded(
            &p,
            &Rewrite {
                ssrc: 1,
                seq: 1,
                timestamp: 1,
                payload_type: 100,
                ext: &map,
                tcc_seq: 0,
                replace: None,
            },
            &mut out,
        );
        let q = RtpPacket::parse(&out).unwrap();
        assert_eq!(q.ext_form(), Some(ExtForm::TwoByte));
        assert_eq!(q.extension(20), Some(&[0x85u8][..]));
    }

    /// Every receiver of a fan-out gets from [`ForwardedHeader`] exactly the bytes
    /// [`write_forwarded`] builds for it, whether its header was reused (same plan as an earlier
    /// receiver), rebuilt (another plan, a replaced element) or too long to keep.
    #[test]
    fn shared_header_gives_the_bytes_of_write_forwarded() {
        let one_byte = four_extensions();
        let two_byte = csrcs_two_byte_padding(1);
        let plain = build(96, 1, 2, 3, &[], b"payload");
        // 15 CSRCs and a 200-byte element: a header longer than the one kept.
        let mut long = vec![0x9f, 96, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        long.extend_from_slice(&[0xcc; 60]);
        long.extend_from_slice(&[0x10, 0x00, 0, 52, 1, 200]); // two-byte profile, 52 words
        long.extend_from_slice(&[7; 200]);
        long.extend_from_slice(&[4, 1, 9, 0, 0, 0]); // id 4, len 1, padding
        long.extend_from_slice(b"p");
        let mid = SdesMid::new('v', 3);
        let map = |keep: [(u8, u8); 2], tcc_out, allow_two_byte, mid| ExtMap {
            keep,
            tcc_out,
            allow_two_byte,
            mid,
        };
        let plans = [
            map([(1, 7), (4, 4)], 9, false, Default::default()),
            map([(1, 7), (4, 4)], 9, true, Default::default()),
            map([(1, 1), (0, 0)], 0, false, Default::default()),
            map([(1, 20), (2, 2)], 5, true, (10, mid)),
            map([(1, 2), (4, 4)], 20, false, (3, mid)),
            map([(1, 2), (4, 4)], 20, true, (3, mid)),
            ExtMap::default(),
        ];
        let replacement = [0xaa, 0xbb];
        // Receivers in turn: (plan, replace the kept element 1), repeats and alternations.
        let receivers = [
            (0, false),
            (0, false),
            (1, false),
            (0, false),
            (0, true),
            (0, false),
            (2, false),
            (3, false),
            (3, false),
            (4, false),
            (5, false),
            (5, false),
            (6, false),
            (6, false),
            (0, false),
        ];
        let mut longest = 0;
        for b in [&one_byte, &two_byte, &plain, &long] {
            let p = RtpPacket::parse(b).unwrap();
            let mut shared = ForwardedHeader::default();
            let (mut got, mut want) = (Vec::new(), Vec::new());
            for (i, &(plan, replace)) in receivers.iter().enumerate() {
                let i = i as u32;
                let rw = Rewrite {
                    ssrc: 1000 + i,
                    seq: 0xfff0 + i as u16,
                    timestamp: 0xffff_fff0 + i,
                    payload_type: p.payload_type(),
                    ext: &plans[plan],
                    tcc_seq: 500 + i as u16,
                    replace: replace.then_some((1, &replacement[..])),
                };
                shared.write(&p, &rw, &mut got);
                write_forwarded(&p, &rw, &mut want);
                assert_eq!(got, want, "packet {b:?}, receiver {i}");
                RtpPacket::parse(&got).unwrap();
                let header = got.len() - (b.len() - p.header_len());
                longest = longest.max(header);
            }
        }
        assert!(longest > MAX_SHARED_HEADER, "{longest}");
    }

    #[test]
    fn rtx_unwraps_to_the_original() {
        let orig = build(100, 4242, 20, 30, &[(1, &[0x85])], b"media");
        let p = RtpPacket::parse(&orig).unwrap();
        let mut rtx = Vec::new();
        write_rtx(&p, 555, 96, 7, &mut rtx);
        let r = RtpPacket::parse(&rtx).unwrap();
        let mut back = Vec::new();
        assert!(write_unwrapped_rtx(&r, 30, 100, &mut back));
        assert_eq!(back, orig);
        let short = build(96, 1, 1, 555, &[], b"x");
        assert!(!write_unwrapped_rtx(
            &RtpPacket::parse(&short).unwrap(),
            30,
            100,
            &mut back
        ));
    }

    #[test]
    fn padding_packets_parse_as_padding_only() {
        let map = ExtMap {
            keep: [(0, 0); 2],
            tcc_out: 5,
            allow_two_byte: false,
            mid: Default::default(),
        };
        let mut out = Vec::new();
        write_padding(
            &Rewrite {
                ssrc: 9,
                seq: 10,
                timestamp: 11,
                payload_type: 96,
                ext: &map,
                tcc_seq: 0x1234,
                replace: None,
            },
            200,
            &mut out,
        );
        let p = RtpPacket::parse(&out).unwrap();
        assert!(p.is_padding_only());
        assert_eq!(p.padding_len(), 200);
        assert_eq!(p.transport_cc_seq(5), Some(0x1234));
        assert_eq!(
            (p.ssrc(), p.sequence_number(), p.payload_type()),
            (9, 10, 96)
        );
    }

    #[test]
    fn rtx_packet_carries_original_sequence_number() {
        let mut b = build(100, 4242, 20, 30, &[(1, &[0x85])], b"media");
        b[0] |= 0x20;
        b.extend_from_slice(&[0, 0, 3]);
        let p = RtpPacket::parse(&b).unwrap();
        let mut out = Vec::new();
        write_rtx(&p, 555, 96, 7, &mut out);
        let r = RtpPacket::parse(&out).unwrap();
        assert_eq!(
            (
                r.ssrc(),
                r.payload_type(),
                r.sequence_number(),
                r.timestamp()
            ),
            (555, 96, 7, 20)
        );
        assert!(!r.has_padding());
        assert_eq!(&r.payload()[..2], &4242u16.to_be_bytes());
        assert_eq!(&r.payload()[2..], b"media");
        assert_eq!(r.extension(1), Some(&[0x85u8][..]));
    }
}
