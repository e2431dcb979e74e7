//! Helpers shared by the stanza tests: load a sample IQ, take its payload, round-trip typed values.

#![allow(dead_code)]

use std::fmt::Debug;

use signaling::XmlElement;
use signaling::xml::{self, Element};

/// The payload (first child element) of a sample IQ from `tests/samples/`.
pub fn payload(iq_text: &str) -> Element {
    let iq = xml::parse_element(iq_text).expect("sample is well-formed XML");
    assert!(iq.is("iq", "jabber:client"), "sample is an IQ");
    iq.children().next().cloned().expect("IQ has a payload")
}

/// Parses `el`, serialises, parses again: both values must be equal and the second serialisation
/// identical to the first.
pub fn roundtrip<T: XmlElement + PartialEq + Debug>(el: &Element) -> T {
    let value = T::from_element(el).expect("sample parses");
    let text = value.to_xml();
    let again = T::from_xml(&text).expect("serialised form parses");
    assert_eq!(value, again, "parse → serialise → parse changed the value");
    assert_eq!(again.to_xml(), text, "serialisation is not stable");
    value
}

/// Deterministic pseudo-random mutations of `text` (truncations, byte flips, deletions), for no-panic
/// checks.
pub fn mutations(text: &str, count: usize) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let interesting = b"<>\"'/=&;:0123456789-x ";
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let mut b = bytes.to_vec();
        let len = b.len().max(1) as u64;
        let pos = (next() % len) as usize;
        match i % 3 {
            0 => b.truncate(pos),
            1 => {
                if let Some(slot) = b.get_mut(pos) {
                    *slot = interesting[(next() % interesting.len() as u64) as usize];
                }
            }
            _ => {
                let end = (pos + (next() % 16) as usize).min(b.len());
                b.drain(pos..end);
            }
        }
        out.push(String::from_utf8_lossy(&b).into_owned());
    }
    out
}
