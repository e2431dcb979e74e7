//! The VP8 payload descriptor (`bridge/src/sfu/vp8.rs`, RFC 7741) and the per-codec packet
//! inspection of the forwarding path (`bridge/src/sfu/codec.rs`: VP8, and the VP9 descriptor and
//! H264 as far as keyframe detection reads them; the bridge reads no AV1 Dependency Descriptor
//! yet). Input: two bytes of new PictureID, one of new TL0PICIDX, then an RTP payload.
//!
//! Properties: parsing never panics and its offsets stay inside the descriptor; the in-place rewrite
//! changes exactly PictureID (in the sender's width) and TL0PICIDX; the descriptor written back from
//! the parsed fields parses to the same fields; PictureID distances are consistent; `inspect` agrees
//! with the parser.
#![no_main]

use bridge::sfu::codec::{Codec, FrameDesc, inspect};
use bridge::sfu::vp8::{self, Descriptor, Vp8Header, picture_id_delta};
use libfuzzer_sys::fuzz_target;

/// The fields a descriptor carries (offsets and lengths aside).
fn fields(h: &Vp8Header) -> impl PartialEq + std::fmt::Debug {
    (
        (h.start_of_partition, h.partition_id, h.non_reference),
        (h.picture_id, h.picture_id_15, h.tl0picidx),
        (h.tid, h.tid.map(|_| h.layer_sync), h.key_idx),
        (h.keyframe, h.size),
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((cfg, payload)) = data.split_first_chunk::<3>() else {
        return;
    };
    let new_pid = u16::from_be_bytes([cfg[0], cfg[1]]);
    let new_tl0 = cfg[2];
    for codec in [Codec::H264, Codec::Vp9, Codec::Other] {
        let _ = inspect(codec, payload);
    }
    let info = inspect(Codec::Vp8, payload);
    let Ok(h) = vp8::parse(payload) else {
        assert_eq!(info.keyframe, None);
        return;
    };
    assert_eq!(info.keyframe, Some(h.keyframe));
    assert_eq!(info.size, h.size);
    assert_eq!(matches!(info.frame, FrameDesc::Vp8(_)), h.projectable());
    let len = usize::from(h.descriptor_len);
    assert!(len <= payload.len());
    if h.picture_id.is_some() {
        let width = if h.picture_id_15 { 2 } else { 1 };
        assert!(usize::from(h.picture_id_offset) + width <= len);
    }
    if h.tl0picidx.is_some() {
        assert!(usize::from(h.tl0_offset) < len);
    }

    // Rewrite in place.
    let mut copy = payload.to_vec();
    vp8::rewrite(&mut copy, &h, new_pid, new_tl0);
    let r = vp8::parse(&copy).expect("a rewritten descriptor parses");
    assert_eq!(r.descriptor_len, h.descriptor_len);
    assert_eq!(
        r.picture_id,
        h.picture_id.map(|_| new_pid & h.picture_id_mask())
    );
    assert_eq!(r.tl0picidx, h.tl0picidx.map(|_| new_tl0));
    assert_eq!(
        (r.tid, r.key_idx, r.keyframe, r.size),
        (h.tid, h.key_idx, h.keyframe, h.size)
    );
    assert_eq!(
        &copy[len..],
        &payload[len..],
        "the rewrite touched the VP8 data"
    );

    // Write the parsed fields back.
    let mut written = Vec::new();
    Descriptor {
        start_of_partition: h.start_of_partition,
        partition_id: h.partition_id,
        non_reference: h.non_reference,
        picture_id: h.picture_id.map(|p| (p, h.picture_id_15)),
        tl0picidx: h.tl0picidx,
        tid: h.tid.map(|t| (t, h.layer_sync)),
        key_idx: h.key_idx,
    }
    .write(&mut written);
    written.extend_from_slice(&payload[len..]);
    let w = vp8::parse(&written).expect("a written descriptor parses");
    assert_eq!(fields(&w), fields(&h), "descriptor round trip");

    // PictureID distance: in range, and it gets from one to the other.
    if let (Some(a), Some(b)) = (h.picture_id, r.picture_id) {
        let mask = h.picture_id_mask();
        let d = picture_id_delta(a, b, mask);
        let half = i32::from(mask / 2) + 1;
        assert!((-half..half).contains(&d), "delta {d} for mask {mask:#x}");
        assert_eq!(
            (i32::from(b) + d).rem_euclid(i32::from(mask) + 1),
            i32::from(a & mask)
        );
    }
});
