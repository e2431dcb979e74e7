//! RTP header and RFC 8285 header extensions (`bridge/src/sfu/rtp.rs`): the parser every decrypted
//! packet goes through, and the writers that build what receivers get from it. Input: 10 bytes of
//! rewrite settings (two kept extension mappings, the receiver's transport-cc id, two-byte allowed,
//! padding length, RTX payload type, transport-cc number), then the packet.
//!
//! Properties: parsing never panics and its views stay inside the packet; the forwarded packet, the
//! RTX packet and the padding probe built from it parse, carry the rewritten header fields, the same
//! payload (and padding), the kept extensions with their data and the bridge's transport-cc number;
//! unwrapping the RTX packet gives back the original; in-place header and transport-cc rewrites read
//! back.
#![no_main]

use bridge::sfu::rtp::{
    ExtMap, Rewrite, RtpHeaderMut, RtpPacket, set_transport_cc_seq, write_forwarded, write_padding,
    write_rtx, write_unwrapped_rtx,
};
use libfuzzer_sys::fuzz_target;

fn check_views(p: &RtpPacket<'_>, len: usize) {
    assert!(p.header_len() + p.padding_len() <= len);
    assert_eq!(p.header_len() + p.payload().len() + p.padding_len(), len);
    assert_eq!(p.csrcs().count(), p.csrc_count());
    let _ = (
        p.version(),
        p.marker(),
        p.payload_type(),
        p.sequence_number(),
        p.timestamp(),
        p.ssrc(),
        p.has_extension(),
        p.ext_form(),
        p.is_padding_only(),
    );
    for (id, d) in p.extensions() {
        let _ = (
            p.extension(id),
            p.audio_level(id),
            p.transport_cc_seq(id),
            d.len(),
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((cfg, raw)) = data.split_first_chunk::<10>() else {
        return;
    };
    let Ok(pkt) = RtpPacket::parse(raw) else {
        return;
    };
    check_views(&pkt, raw.len());

    let ext = ExtMap {
        keep: [(cfg[0], cfg[1]), (cfg[2], cfg[3])],
        tcc_out: cfg[4],
        allow_two_byte: cfg[5] & 1 != 0,
        mid: Default::default(),
    };
    let tcc_seq = u16::from_be_bytes([cfg[8], cfg[9]]);
    let rw = Rewrite {
        ssrc: pkt.ssrc() ^ 0x5a5a_5a5a,
        seq: pkt.sequence_number().wrapping_add(7),
        timestamp: pkt.timestamp().wrapping_add(3000),
        payload_type: cfg[7] & 0x7f,
        ext: &ext,
        tcc_seq,
        replace: None,
    };

    // The forwarded copy.
    let mut out = Vec::new();
    write_forwarded(&pkt, &rw, &mut out);
    let fwd = RtpPacket::parse(&out)
        .unwrap_or_else(|e| panic!("forwarded packet does not parse ({e}): {out:02x?}"));
    check_views(&fwd, out.len());
    assert_eq!(
        (
            fwd.ssrc(),
            fwd.sequence_number(),
            fwd.timestamp(),
            fwd.payload_type()
        ),
        (rw.ssrc, rw.seq, rw.timestamp, rw.payload_type)
    );
    assert_eq!(fwd.marker(), pkt.marker());
    assert!(fwd.csrcs().eq(pkt.csrcs()));
    assert_eq!(fwd.payload(), pkt.payload());
    assert_eq!(fwd.padding_len(), pkt.padding_len());
    let two = fwd.ext_form() == Some(bridge::sfu::rtp::ExtForm::TwoByte);
    let fits = |id: u8, len: usize| {
        if two {
            id != 0 && len <= 255
        } else {
            (1..=14).contains(&id) && (1..=16).contains(&len)
        }
    };
    // Mappings with distinct ids on both sides (and not the transport-cc id) must keep their data.
    let [(i0, o0), (i1, o1)] = ext.keep;
    let distinct = i0 != i1 && o0 != o1 && o0 != ext.tcc_out && o1 != ext.tcc_out;
    if distinct {
        for (i, o) in ext.keep {
            if i == 0 || o == 0 {
                continue;
            }
            if let Some(d) = pkt.extension(i)
                && fits(o, d.len())
            {
                assert_eq!(fwd.extension(o), Some(d), "extension {i} -> {o} lost");
            }
        }
    }
    if ext.tcc_out != 0 && fits(ext.tcc_out, 2) && o0 != ext.tcc_out && o1 != ext.tcc_out {
        assert_eq!(fwd.transport_cc_seq(ext.tcc_out), Some(tcc_seq));
    }

    // RTX of what was sent, and back.
    let rtx_ssrc = rw.ssrc.wrapping_add(1);
    let mut rtx = Vec::new();
    write_rtx(&fwd, rtx_ssrc, cfg[6] & 0x7f, 99, &mut rtx);
    let r = RtpPacket::parse(&rtx)
        .unwrap_or_else(|e| panic!("RTX packet does not parse ({e}): {rtx:02x?}"));
    assert_eq!((r.ssrc(), r.sequence_number()), (rtx_ssrc, 99));
    assert_eq!(&r.payload()[..2], &fwd.sequence_number().to_be_bytes());
    let mut back = Vec::new();
    assert!(write_unwrapped_rtx(&r, rw.ssrc, rw.payload_type, &mut back));
    let b = RtpPacket::parse(&back)
        .unwrap_or_else(|e| panic!("unwrapped RTX does not parse ({e}): {back:02x?}"));
    assert_eq!(
        (
            b.ssrc(),
            b.sequence_number(),
            b.timestamp(),
            b.payload_type(),
            b.marker()
        ),
        (
            fwd.ssrc(),
            fwd.sequence_number(),
            fwd.timestamp(),
            fwd.payload_type(),
            fwd.marker()
        )
    );
    assert_eq!(b.payload(), fwd.payload());
    assert!(b.extensions().eq(fwd.extensions()));

    // A padding-only probe with the same rewrite.
    let mut probe = Vec::new();
    write_padding(&rw, cfg[6], &mut probe);
    let p = RtpPacket::parse(&probe)
        .unwrap_or_else(|e| panic!("padding probe does not parse ({e}): {probe:02x?}"));
    assert!(p.is_padding_only());
    assert_eq!(p.padding_len(), usize::from(cfg[6].max(1)));
    if ext.tcc_out != 0 {
        assert_eq!(p.transport_cc_seq(ext.tcc_out), Some(tcc_seq));
    }

    // In-place rewrites.
    let mut copy = raw.to_vec();
    if let Ok(mut h) = RtpHeaderMut::new(&mut copy) {
        h.set_marker(!pkt.marker());
        h.set_payload_type(rw.payload_type);
        h.set_sequence_number(rw.seq);
        h.set_timestamp(rw.timestamp);
        h.set_ssrc(rw.ssrc);
    }
    let c = RtpPacket::parse(&copy).expect("header rewrite keeps the packet valid");
    assert_eq!(
        (
            c.marker(),
            c.payload_type(),
            c.sequence_number(),
            c.timestamp(),
            c.ssrc()
        ),
        (
            !pkt.marker(),
            rw.payload_type,
            rw.seq,
            rw.timestamp,
            rw.ssrc
        )
    );
    if let Some((id, _)) = pkt.extensions().find(|(id, d)| *id != 0 && d.len() >= 2) {
        let first_with_id = pkt.extension(id).map(<[u8]>::len).unwrap_or(0);
        if first_with_id >= 2 {
            assert!(set_transport_cc_seq(&mut copy, id, tcc_seq));
            let c = RtpPacket::parse(&copy).expect("transport-cc rewrite keeps the packet valid");
            assert_eq!(c.transport_cc_seq(id), Some(tcc_seq));
        }
    }
});
