//! The AV1 Dependency Descriptor on arbitrary input: a sequence of descriptors (each prefixed by
//! its length byte) goes through one sender stream's `DdSource` and a receiver's `DdProjection`
//! whose target comes from the first byte. Nothing may panic; every descriptor the projection
//! forwards, rewritten, must parse at a receiver that got the rewritten stream and resolve to the
//! same frame (layers, decode target indications, frame diffs, chains) with the new frame number,
//! carry the structure if the original did, and announce the decode targets the projection says.
#![no_main]

use std::time::{Duration, Instant};

use bridge::sfu::av1::DdSource;
use bridge::sfu::av1::descriptor::MAX_LEN;
use bridge::sfu::projection::{DdConfig, DdPacket, DdProjection, DdTarget, Layered};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else {
        return;
    };
    let now = Instant::now();
    let mut src = DdSource::new();
    let mut rx = DdSource::new();
    let mut proj = DdProjection::new(DdConfig {
        keep_lower_chains: sel & 0x80 != 0,
    });
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: sel & 3,
        temporal: (sel >> 2) & 7,
    }));
    let mut out = [0u8; MAX_LEN];
    let mut seq = 1000u16;
    let mut rx_ok = true;
    while let Some((&len, tail)) = rest.split_first() {
        let n = usize::from(len).min(tail.len());
        let (dd, tail) = tail.split_at(n);
        rest = tail;
        seq = seq.wrapping_add(1);
        let Ok(info) = src.parse(dd) else { continue };
        let pkt = DdPacket {
            encoding: 0,
            seq,
            timestamp: u32::from(seq) * 3000,
            marker: false,
            info: &info,
            source: &src,
        };
        let Some(rw) = proj.forward(now + Duration::from_millis(u64::from(seq)), &pkt) else {
            continue;
        };
        let Some(structure) = src.structure(info.generation) else {
            panic!("a forwarded packet's structure is gone");
        };
        let n = rw
            .write_descriptor(&info, structure, &mut out)
            .unwrap_or_else(|e| panic!("rewrite of a valid descriptor failed: {e}"));
        // Late packets of a replaced structure cannot resolve at the receiver (it has the new
        // one); everything else must.
        if info.generation != src.generation() || !rx_ok {
            continue;
        }
        match rx.parse(&out[..n]) {
            Ok(got) => {
                let (a, b) = (got.descriptor, info.descriptor);
                assert_eq!(a.frame_number, rw.frame_number);
                assert_eq!(
                    a.frame, b.frame,
                    "rewritten descriptor resolves to another frame"
                );
                assert_eq!(
                    (a.start_of_frame, a.end_of_frame),
                    (b.start_of_frame, b.end_of_frame)
                );
                // A structure goes with its keyframe, or with the next frame of a receiver that
                // did not get that keyframe.
                assert_eq!(a.structure_attached, rw.structure_offset.is_some());
                assert!(a.structure_attached || !b.structure_attached);
                if let Some(m) = rw.active_decode_targets {
                    assert_eq!(rx.active_decode_targets(), m);
                }
            }
            // The sender's stream itself may refer to templates it never defined; then the
            // receiver's view is as broken as the sender's and the comparison stops.
            Err(_) => rx_ok = false,
        }
    }
});
