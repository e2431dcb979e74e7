//! STUN (RFC 8489) as ICE uses it (RFC 8445): Binding requests/responses with short-term
//! credentials, MESSAGE-INTEGRITY (HMAC-SHA1) and FINGERPRINT (CRC-32).
//!
//! Only what the bridge needs: parsing is zero-copy over the datagram and validates the framing
//! completely before anything else looks at it; encoding writes into a caller-owned buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ring::hmac;

/// The fixed cookie that marks STUN (RFC 8489 §6).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
const HEADER_LEN: usize = 20;
const FINGERPRINT_XOR: u32 = 0x5354_554e;
const MI_LEN: usize = 20;

/// Attribute types used here.
pub mod attr {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const SOFTWARE: u16 = 0x8022;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
}

/// Message class (the two class bits of the message type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// The Binding method, the only one ICE uses.
pub const METHOD_BINDING: u16 = 0x001;

/// Why a datagram is not a well-formed STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    TooShort,
    #[error("not STUN (top bits or magic cookie)")]
    NotStun,
    #[error("length field does not match the datagram")]
    BadLength,
    #[error("attribute runs past the end of the message")]
    TruncatedAttribute,
    #[error("attribute after FINGERPRINT, or after MESSAGE-INTEGRITY other than FINGERPRINT")]
    MisplacedAttribute,
    #[error("malformed attribute value")]
    BadAttribute,
}

/// A parsed STUN message borrowing the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    pub class: Class,
    pub method: u16,
    pub transaction_id: [u8; 12],
    /// Offset of the MESSAGE-INTEGRITY attribute header, if present.
    integrity_at: Option<usize>,
    /// Offset of the FINGERPRINT attribute header, if present.
    fingerprint_at: Option<usize>,
}

/// One attribute: type and value (without padding).
#[derive(Debug, Clone, Copy)]
pub struct Attribute<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Cheap check used by the demux: could this datagram be STUN at all?
pub fn looks_like_stun(b: &[u8]) -> bool {
    b.len() >= HEADER_LEN && b[0] < 4 && be32(b, 4) == Some(MAGIC_COOKIE)
}

impl<'a> Message<'a> {
    /// Parses and validates the framing of `raw` (which must be exactly one message).
    pub fn parse(raw: &'a [u8]) -> Result<Self, StunError> {
        if raw.len() < HEADER_LEN {
            return Err(StunError::TooShort);
        }
        let typ = be16(raw, 0).ok_or(StunError::TooShort)?;
        if typ & 0xC000 != 0 || be32(raw, 4) != Some(MAGIC_COOKIE) {
            return Err(StunError::NotStun);
        }
        let len = usize::from(be16(raw, 2).ok_or(StunError::TooShort)?);
        if len % 4 != 0 || HEADER_LEN + len != raw.len() {
            return Err(StunError::BadLength);
        }
        let class = match ((typ >> 7) & 0x2) | ((typ >> 4) & 0x1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        let method = (typ & 0x000F) | ((typ & 0x00E0) >> 1) | ((typ & 0x3E00) >> 2);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&raw[8..20]);

        let mut integrity_at = None;
        let mut fingerprint_at = None;
        let mut at = HEADER_LEN;
        while at < raw.len() {
            let t = be16(raw, at).ok_or(StunError::TruncatedAttribute)?;
            let l = usize::from(be16(raw, at + 2).ok_or(StunError::TruncatedAttribute)?);
            let end = at + 4 + l;
            if end > raw.len() {
                return Err(StunError::TruncatedAttribute);
            }
            if fingerprint_at.is_some() {
                return Err(StunError::MisplacedAttribute);
            }
            if integrity_at.is_some() && t != attr::FINGERPRINT {
                return Err(StunError::MisplacedAttribute);
            }
            match t {
                attr::MESSAGE_INTEGRITY => {
                    if l != MI_LEN {
                        return Err(StunError::BadAttribute);
                    }
                    integrity_at = Some(at);
                }
                attr::FINGERPRINT => {
                    if l != 4 {
                        return Err(StunError::BadAttribute);
                    }
                    fingerprint_at = Some(at);
                }
                _ => {}
            }
            at += 4 + pad4(l);
        }
        if at != raw.len() {
            return Err(StunError::TruncatedAttribute);
        }
        Ok(Self {
            raw,
            class,
            method,
            transaction_id,
            integrity_at,
            fingerprint_at,
        })
    }

    /// The whole datagram.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Iterates over attributes in order (framing was validated by `parse`).
    pub fn attributes(&self) -> impl Iterator<Item = Attribute<'a>> + 'a {
        let raw = self.raw;
        let mut at = HEADER_LEN;
        std::iter::from_fn(move || {
            let t = be16(raw, at)?;
            let l = usize::from(be16(raw, at + 2)?);
            let value = raw.get(at + 4..at + 4 + l)?;
            at += 4 + pad4(l);
            Some(Attribute { typ: t, value })
        })
    }

    /// First attribute of type `typ`.
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// USERNAME as UTF-8, if present and valid.
    pub fn username(&self) -> Option<&'a str> {
        std::str::from_utf8(self.get(attr::USERNAME)?).ok()
    }

    pub fn priority(&self) -> Option<u32> {
        self.get(attr::PRIORITY)
            .and_then(|v| be32(v, 0).filter(|_| v.len() == 4))
    }

    pub fn use_candidate(&self) -> bool {
        self.get(attr::USE_CANDIDATE).is_some()
    }

    fn u64_attr(&self, typ: u16) -> Option<u64> {
        let v = self.get(typ)?;
        let arr: [u8; 8] = v.try_into().ok()?;
        Some(u64::from_be_bytes(arr))
    }

    /// ICE-CONTROLLING tie-breaker.
    pub fn ice_controlling(&self) -> Option<u64> {
        self.u64_attr(attr::ICE_CONTROLLING)
    }

    /// ICE-CONTROLLED tie-breaker.
    pub fn ice_controlled(&self) -> Option<u64> {
        self.u64_attr(attr::ICE_CONTROLLED)
    }

    /// ERROR-CODE as a number (class * 100 + number).
    pub fn error_code(&self) -> Option<u16> {
        let v = self.get(attr::ERROR_CODE)?;
        if v.len() < 4 {
            return None;
        }
        Some(u16::from(v[2] & 0x7) * 100 + u16::from(v[3]))
    }

    /// XOR-MAPPED-ADDRESS, decoded.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        let v = self.get(attr::XOR_MAPPED_ADDRESS)?;
        let family = *v.get(1)?;
        let port = be16(v, 2)? ^ (MAGIC_COOKIE >> 16) as u16;
        match family {
            0x01 if v.len() == 8 => {
                let a = be32(v, 4)? ^ MAGIC_COOKIE;
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port))
            }
            0x02 if v.len() == 20 => {
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(&self.transaction_id);
                let mut a = [0u8; 16];
                for (i, b) in a.iter_mut().enumerate() {
                    *b = v[4 + i] ^ key[i];
                }
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
            }
            _ => None,
        }
    }

    pub fn has_integrity(&self) -> bool {
        self.integrity_at.is_some()
    }

    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint_at.is_some()
    }

    /// Verifies MESSAGE-INTEGRITY with a short-term key (the ICE password). False if absent.
    pub fn verify_integrity(&self, key: &[u8]) -> bool {
        let Some(at) = self.integrity_at else {
            return false;
        };
        let Some(expected) = self.raw.get(at + 4..at + 4 + MI_LEN) else {
            return false;
        };
        let Some(covered) = self.raw.get(..at) else {
            return false;
        };
        let tag = integrity(covered, at + 4 + MI_LEN - HEADER_LEN, key);
        constant_time_eq(tag.as_ref(), expected)
    }

    /// Verifies FINGERPRINT. False if absent.
    pub fn verify_fingerprint(&self) -> bool {
        let Some(at) = self.fingerprint_at else {
            return false;
        };
        let (Some(covered), Some(value)) = (self.raw.get(..at), be32(self.raw, at + 4)) else {
            return false;
        };
        fingerprint(covered, at + 8 - HEADER_LEN) == value
    }
}

/// HMAC-SHA1 over `covered` (header + attributes before MI) with the header length field
/// replaced by `len_field`, as RFC 8489 §14.5 requires.
fn integrity(covered: &[u8], len_field: usize, key: &[u8]) -> hmac::Tag {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(&covered[..2]);
    ctx.update(&(len_field as u16).to_be_bytes());
    ctx.update(&covered[4..]);
    ctx.sign()
}

/// Compares MACs without an early exit.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn fingerprint(covered: &[u8], len_field: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&covered[..2]);
    h.update(&(len_field as u16).to_be_bytes());
    h.update(&covered[4..]);
    h.finalize() ^ FINGERPRINT_XOR
}

/// Writes a STUN message into a reusable buffer.
pub struct Builder<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> Builder<'b> {
    /// Starts a message of `class`/`method` with `transaction_id`, clearing `buf`.
    pub fn new(buf: &'b mut Vec<u8>, class: Class, method: u16, transaction_id: &[u8; 12]) -> Self {
        buf.clear();
        let c: u16 = match class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        let typ = (method & 0x000F)
            | ((method & 0x0070) << 1)
            | ((method & 0x0F80) << 2)
            | ((c & 0x1) << 4)
            | ((c & 0x2) << 7);
        buf.extend_from_slice(&typ.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(transaction_id);
        Self { buf }
    }

    fn set_len(&mut self, len: usize) {
        let l = (len as u16).to_be_bytes();
        self.buf[2] = l[0];
        self.buf[3] = l[1];
    }

    /// Appends an attribute, padding with zeros.
    pub fn attr(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = pad4(value.len()) - value.len();
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        let len = self.buf.len() - HEADER_LEN;
        self.set_len(len);
        self
    }

    pub fn username(&mut self, u: &str) -> &mut Self {
        self.attr(attr::USERNAME, u.as_bytes())
    }

    pub fn priority(&mut self, p: u32) -> &mut Self {
        self.attr(attr::PRIORITY, &p.to_be_bytes())
    }

    pub fn ice_controlling(&mut self, tie: u64) -> &mut Self {
        self.attr(attr::ICE_CONTROLLING, &tie.to_be_bytes())
    }

    pub fn ice_controlled(&mut self, tie: u64) -> &mut Self {
        self.attr(attr::ICE_CONTROLLED, &tie.to_be_bytes())
    }

    pub fn use_candidate(&mut self) -> &mut Self {
        self.attr(attr::USE_CANDIDATE, &[])
    }

    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.attr(attr::ERROR_CODE, &v)
    }

    /// XOR-MAPPED-ADDRESS of `addr`.
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let mut v = [0u8; 20];
        v[2..4].copy_from_slice(&port.to_be_bytes());
        let n = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 0x01;
                let a = u32::from(ip) ^ MAGIC_COOKIE;
                v[4..8].copy_from_slice(&a.to_be_bytes());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 0x02;
                let mut key = [0u8; 16];
                key[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
                key[4..].copy_from_slice(&self.buf[8..20]);
                for (i, b) in ip.octets().iter().enumerate() {
                    v[4 + i] = b ^ key[i];
                }
                20
            }
        };
        self.attr(attr::XOR_MAPPED_ADDRESS, &v[..n])
    }

    /// Appends MESSAGE-INTEGRITY keyed with `key` (must come after all other attributes except
    /// FINGERPRINT).
    pub fn integrity(&mut self, key: &[u8]) -> &mut Self {
        let covered_len = self.buf.len();
        let tag = integrity(
            &self.buf[..covered_len],
            covered_len + 4 + MI_LEN - HEADER_LEN,
            key,
        );
        self.attr(attr::MESSAGE_INTEGRITY, tag.as_ref())
    }

    /// Appends FINGERPRINT (must be last).
    pub fn fingerprint(&mut self) -> &mut Self {
        let covered_len = self.buf.len();
        let fp = fingerprint(&self.buf[..covered_len], covered_len + 8 - HEADER_LEN);
        self.attr(attr::FINGERPRINT, &fp.to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const PWD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

    // RFC 5769 §2.1 sample request.
    const REQ: &str = "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e207465737420636c69656e74\
                       002400046e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014\
                       9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf";
    // RFC 5769 §2.2 sample IPv4 response.
    const RESP4: &str = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000\
                         080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d780280004c07d\
                         4c96";
    // RFC 5769 §2.3 sample IPv6 response.
    const RESP6: &str = "010100482112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220002000\
                         140002a1470113a9faa5d3f179bc25f4b5bed2b9d900080014a382954e4be67bf11784c97c8292\
                         c275bfe3ed4180280004c8fb0b4c";

    #[test]
    fn rfc5769_request() {
        let raw = hex(REQ);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.method, METHOD_BINDING);
        assert_eq!(m.username(), Some("evtj:h6vY"));
        assert_eq!(m.priority(), Some(0x6e0001ff));
        assert_eq!(m.ice_controlled(), Some(0x932ff9b151263b36));
        assert_eq!(m.get(attr::SOFTWARE), Some(&b"STUN test client"[..]));
        assert!(m.verify_integrity(PWD));
        assert!(!m.verify_integrity(b"wrong"));
        assert!(m.verify_fingerprint());
    }

    #[test]
    fn rfc5769_responses() {
        let raw = hex(RESP4);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(
            m.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert!(m.verify_integrity(PWD));
        assert!(m.verify_fingerprint());

        let raw = hex(RESP6);
        let m = Message::parse(&raw).unwrap();
        assert_eq!(
            m.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        assert!(m.verify_integrity(PWD));
        assert!(m.verify_fingerprint());
    }

    #[test]
    fn build_reproduces_rfc5769_ipv4_response() {
        let tid: [u8; 12] = hex("b7e7a701bc34d686fa87dfae").try_into().unwrap();
        let mut buf = Vec::new();
        // The RFC pads SOFTWARE with a space; we pad with zeros, so compare after re-parsing and
        // check integrity/fingerprint of our own encoding instead of bytes.
        Builder::new(&mut buf, Class::Success, METHOD_BINDING, &tid)
            .attr(attr::SOFTWARE, b"test vector")
            .xor_mapped_address("192.0.2.1:32853".parse().unwrap())
            .integrity(PWD)
            .fingerprint();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.class, Class::Success);
        assert_eq!(
            m.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert!(m.verify_integrity(PWD));
        assert!(m.verify_fingerprint());
        // Same attribute bytes as the RFC except the padding byte of SOFTWARE.
        let rfc = hex(RESP4);
        assert_eq!(buf.len(), rfc.len());
        assert_eq!(&buf[..20], &rfc[..20]);
        assert_eq!(&buf[36..44], &rfc[36..44]);
    }

    #[test]
    fn roundtrip_request_with_ice_attributes() {
        let tid = [7u8; 12];
        let mut buf = Vec::new();
        Builder::new(&mut buf, Class::Request, METHOD_BINDING, &tid)
            .username("abc:def")
            .priority(0x6e00_01ff)
            .ice_controlling(42)
            .use_candidate()
            .integrity(b"pass")
            .fingerprint();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.transaction_id, tid);
        assert_eq!(m.username(), Some("abc:def"));
        assert_eq!(m.ice_controlling(), Some(42));
        assert!(m.use_candidate());
        assert!(m.verify_integrity(b"pass"));
        assert!(m.verify_fingerprint());
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        Builder::new(&mut buf, Class::Error, METHOD_BINDING, &tid)
            .error_code(487, "Role Conflict")
            .xor_mapped_address(v6)
            .fingerprint();
        let m = Message::parse(&buf).unwrap();
        assert_eq!(m.class, Class::Error);
        assert_eq!(m.error_code(), Some(487));
        assert_eq!(m.xor_mapped_address(), Some(v6));
    }

    #[test]
    fn tampering_breaks_integrity_and_fingerprint() {
        let mut raw = hex(REQ);
        raw[30] ^= 1; // inside SOFTWARE
        let m = Message::parse(&raw).unwrap();
        assert!(!m.verify_integrity(PWD));
        assert!(!m.verify_fingerprint());
    }

    #[test]
    fn malformed_inputs_are_errors_not_panics() {
        let raw = hex(REQ);
        for n in 0..raw.len() {
            assert!(Message::parse(&raw[..n]).is_err(), "prefix {n}");
        }
        let mut bad = raw.clone();
        bad[3] = 0xFF; // length
        assert_eq!(Message::parse(&bad).unwrap_err(), StunError::BadLength);
        let mut bad = raw.clone();
        bad[4] = 0; // cookie
        assert_eq!(Message::parse(&bad).unwrap_err(), StunError::NotStun);
        let mut bad = raw.clone();
        bad[22] = 0xFF; // first attribute length
        assert!(Message::parse(&bad).is_err());
        // Deterministic pseudo-random garbage with a valid header must never panic.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut g = raw.clone();
            for b in g.iter_mut().skip(20) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if x >> 28 == 0 {
                    *b = (x >> 16) as u8;
                }
            }
            if let Ok(m) = Message::parse(&g) {
                let _ = (
                    m.username(),
                    m.priority(),
                    m.xor_mapped_address(),
                    m.error_code(),
                );
                let _ = (m.verify_integrity(PWD), m.verify_fingerprint());
            }
        }
    }
}
