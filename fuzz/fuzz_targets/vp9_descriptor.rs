//! The VP9 payload descriptor on arbitrary input: a sequence of payloads (each prefixed by its
//! length byte) goes through one sender stream's `Vp9Source` and a receiver's `Vp9Projection`
//! whose target comes from the first byte. Nothing may panic; every forwarded payload, rewritten,
//! must parse to the same descriptor with the rewritten PictureID and TL0PICIDX.
#![no_main]

use std::time::{Duration, Instant};

use bridge::sfu::projection::{Layered, Vp9Config, Vp9Packet, Vp9Projection, Vp9Target};
use bridge::sfu::vp9::Vp9Source;
use bridge::sfu::vp9::descriptor;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut src = Vp9Source::new();
    let mut proj = Vp9Projection::new(Vp9Config {
        keep_lower_chains: sel & 0x80 != 0,
    });
    proj.set_target(Some(Vp9Target {
        encoding: 0,
        spatial: sel & 3,
        temporal: (sel >> 2) & 7,
    }));
    let mut seq = 7u16;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (payload, tail) = tail.split_at(n);
        rest = tail;
        seq = seq.wrapping_add(1);
        let Ok(info) = src.parse(payload) else {
            continue;
        };
        if let Ok(h) = descriptor::parse(payload) {
            let _ = descriptor::parse_ss(payload, &h);
        }
        let pkt = Vp9Packet {
            encoding: 0,
            seq,
            timestamp: u32::from(seq) * 3000,
            marker: seq % 3 == 0,
            info: &info,
            source: &src,
        };
        let Some(rw) = proj.forward(now + Duration::from_millis(u64::from(seq)), &pkt) else {
            continue;
        };
        let mut copy = payload.to_vec();
        rw.apply(&mut copy, &info.header)
            .unwrap_or_else(|e| panic!("rewrite of a parsed payload failed: {e}"));
        let got = descriptor::parse(&copy).expect("the rewritten payload parses");
        let mask = info.header.picture_id_mask();
        let mut want = info.header;
        want.picture_id = Some(rw.picture_id & mask);
        if want.tl0picidx.is_some() {
            want.tl0picidx = Some(rw.tl0picidx);
        }
        assert_eq!(
            got, want,
            "the rewrite changed more than PictureID/TL0PICIDX"
        );
        assert_eq!(
            &copy[usize::from(got.descriptor_len)..],
            &payload[usize::from(got.descriptor_len)..]
        );
    }
});
