//! Writing RTP packets as a browser sends them: fixed header plus RFC 8285 header extensions
//! (ssrc-audio-level, abs-send-time, transport-cc, the AV1 Dependency Descriptor; one-byte form,
//! two-byte when an element is longer than 16 bytes), into a reused buffer.
//!
//! Parsing is the bridge's (`bridge::sfu::rtp::RtpPacket`).

use std::time::Duration;

/// The fixed RTP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Largest one-byte extension element (RFC 8285 §4.2: 1..=16 bytes).
const MAX_ONE_BYTE_LEN: usize = 16;
/// Largest two-byte extension element (RFC 8285 §4.3: 0..=255 bytes).
const MAX_TWO_BYTE_LEN: usize = 255;

/// Clears `out` and writes the header with extensions `(id, data)`: the one-byte form (RFC 8285
/// §4.2) when every element fits it (ids 1..=14, 1..=16 bytes), otherwise the two-byte form (§4.3),
/// as Chromium does with `extmap-allow-mixed` for a Dependency Descriptor that carries its
/// structure. Elements that fit neither form (id 0 or 15 in one-byte, data over 255 bytes) are
/// skipped. The payload is appended by the caller.
pub fn write_header(out: &mut Vec<u8>, h: &RtpHeader, extensions: &[(u8, &[u8])]) {
    out.clear();
    let one_byte =
        |(id, d): &&(u8, &[u8])| (1..=14).contains(id) && (1..=MAX_ONE_BYTE_LEN).contains(&d.len());
    let two_byte = |(id, d): &&(u8, &[u8])| *id >= 1 && d.len() <= MAX_TWO_BYTE_LEN;
    let long = extensions
        .iter()
        .any(|e| !one_byte(&e) && (1..=14).contains(&e.0) && two_byte(&e));
    let has_ext = if long {
        extensions.iter().any(|e| two_byte(&e))
    } else {
        extensions.iter().any(|e| one_byte(&e))
    };
    out.push(0x80 | if has_ext { 0x10 } else { 0 });
    out.push((h.payload_type & 0x7f) | if h.marker { 0x80 } else { 0 });
    out.extend_from_slice(&h.sequence.to_be_bytes());
    out.extend_from_slice(&h.timestamp.to_be_bytes());
    out.extend_from_slice(&h.ssrc.to_be_bytes());
    if !has_ext {
        return;
    }
    let profile: [u8; 2] = if long { [0x10, 0x00] } else { [0xBE, 0xDE] };
    out.extend_from_slice(&[profile[0], profile[1], 0, 0]);
    let start = out.len();
    for (id, data) in extensions {
        if long && two_byte(&&(*id, *data)) {
            out.push(*id);
            out.push(data.len() as u8);
            out.extend_from_slice(data);
        } else if !long && one_byte(&&(*id, *data)) {
            out.push((id << 4) | (data.len() as u8 - 1));
            out.extend_from_slice(data);
        }
    }
    while !(out.len() - start).is_multiple_of(4) {
        out.push(0);
    }
    let words = ((out.len() - start) / 4) as u16;
    out[start - 2..start].copy_from_slice(&words.to_be_bytes());
}

/// ssrc-audio-level (RFC 6464): voice activity flag and level in -dBov (0 loudest, 127 silence).
pub fn audio_level(voice: bool, level_dbov: u8) -> [u8; 1] {
    [(if voice { 0x80 } else { 0 }) | level_dbov.min(127)]
}

/// abs-send-time: 24-bit 6.18 fixed-point seconds, wrapping every 64 s.
pub fn abs_send_time(since_epoch: Duration) -> [u8; 3] {
    let v = ((since_epoch.as_micros() << 18) / 1_000_000) as u32 & 0x00ff_ffff;
    let b = v.to_be_bytes();
    [b[1], b[2], b[3]]
}

/// transport-cc: the 16-bit transport-wide sequence number.
pub fn transport_cc(seq: u16) -> [u8; 2] {
    seq.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge::sfu::rtp::RtpPacket;

    #[test]
    fn the_bridge_parser_reads_what_we_write() {
        let mut out = Vec::new();
        let h = RtpHeader {
            payload_type: 111,
            marker: true,
            sequence: 65535,
            timestamp: 0xdead_beef,
            ssrc: 0x0102_0304,
        };
        write_header(
            &mut out,
            &h,
            &[
                (1, &audio_level(true, 30)),
                (5, &transport_cc(513)),
                (3, &abs_send_time(Duration::from_millis(1500))),
                (15, &[1]), // invalid id: skipped
            ],
        );
        out.extend_from_slice(&[9; 40]);
        let p = RtpPacket::parse(&out).unwrap();
        assert_eq!(p.payload_type(), 111);
        assert!(p.marker());
        assert_eq!(p.sequence_number(), 65535);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.audio_level(1), Some((true, 30)));
        assert_eq!(p.transport_cc_seq(5), Some(513));
        assert_eq!(
            p.extension(3),
            Some(&abs_send_time(Duration::from_millis(1500))[..])
        );
        assert_eq!(p.extension(15), None);
        assert_eq!(p.payload(), &[9; 40][..]);
        // 1.5 s in 6.18 fixed point.
        assert_eq!(
            abs_send_time(Duration::from_millis(1500)),
            [0x06, 0x00, 0x00]
        );
        // Wraps at 64 s.
        assert_eq!(
            abs_send_time(Duration::from_secs(64)),
            abs_send_time(Duration::ZERO)
        );
    }

    #[test]
    fn a_long_element_switches_to_the_two_byte_form() {
        let mut out = Vec::new();
        let long = [7u8; 40];
        let h = RtpHeader {
            payload_type: 41,
            marker: false,
            sequence: 9,
            timestamp: 3000,
            ssrc: 77,
        };
        write_header(&mut out, &h, &[(5, &transport_cc(2)), (11, &long)]);
        assert_eq!(&out[12..14], &[0x10, 0x00], "two-byte profile");
        out.extend_from_slice(&[1, 2, 3]);
        let p = RtpPacket::parse(&out).unwrap();
        assert_eq!(p.transport_cc_seq(5), Some(2));
        assert_eq!(p.extension(11), Some(&long[..]));
        assert_eq!(p.payload(), &[1, 2, 3]);
        // Short elements only: the one-byte form, as before.
        write_header(&mut out, &h, &[(5, &transport_cc(2)), (11, &long[..3])]);
        assert_eq!(&out[12..14], &[0xBE, 0xDE]);
        assert_eq!(
            RtpPacket::parse(&out).unwrap().extension(11),
            Some(&long[..3])
        );
    }

    #[test]
    fn without_extensions_the_header_is_12_bytes() {
        let mut out = vec![1, 2, 3];
        let h = RtpHeader {
            payload_type: 100,
            marker: false,
            sequence: 1,
            timestamp: 2,
            ssrc: 3,
        };
        write_header(&mut out, &h, &[]);
        assert_eq!(out.len(), 12);
        assert_eq!(out[0], 0x80);
        write_header(&mut out, &h, &[(0, &[1])]);
        assert_eq!(out.len(), 12, "invalid extensions only: no extension block");
    }
}
