//! DATA_CHANNEL_OPEN (RFC 8832, `bridge/src/transport/sctp.rs`), the message a browser opens the
//! bridge channel with. Input: one DCEP message.
//!
//! Properties: parsing never panics; a parsed message encodes to one that parses to the same value,
//! and no proper prefix of the encoding parses. (Labels are read as lossy UTF-8, so one that grows
//! past the 16-bit length field when invalid bytes become U+FFFD cannot be encoded again: skipped.)
#![no_main]

use bridge::transport::sctp::{encode_dcep_open, parse_dcep_open};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(open) = parse_dcep_open(data) else {
        return;
    };
    if open.label.len() > usize::from(u16::MAX) || open.protocol.len() > usize::from(u16::MAX) {
        return;
    }
    let bytes = encode_dcep_open(&open);
    assert_eq!(
        parse_dcep_open(&bytes).as_ref(),
        Some(&open),
        "DCEP round trip"
    );
    for n in 0..bytes.len() {
        assert_eq!(parse_dcep_open(&bytes[..n]), None, "prefix {n} parses");
    }
});
