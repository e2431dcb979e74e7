//! RTCP compound packets (`bridge/src/sfu/rtcp.rs`) and transport-cc feedback
//! (`bridge/src/sfu/tcc_feedback`): SR, RR, SDES, BYE, NACK, PLI, FIR, REMB, transport-cc, XR and
//! unknown types in any order. Input: one compound packet.
//!
//! Properties: parsing never panics; a compound that parses yields every sub-packet and every typed
//! view is total; each packet re-written by the bridge's writers parses back to the same content
//! (NACK: the same set of sequence numbers; REMB: the same bitrate up to the 18-bit mantissa);
//! transport-cc feedback decodes to exactly `status_count` statuses, and re-encoding its arrivals
//! with the bridge's feedback builder decodes to the same arrivals.
#![no_main]

use std::collections::BTreeSet;

use bridge::sfu::rtcp::{
    self, Compound, Packet, ReportBlock, SenderInfo, write_bye, write_fir, write_nack, write_pli,
    write_remb, write_rr, write_sr,
};
use bridge::sfu::tcc_feedback::{FeedbackBuilder, PacketStatus, TransportFeedback};
use libfuzzer_sys::fuzz_target;

fn only(out: &[u8]) -> Packet<'_> {
    let c = Compound::parse(out)
        .unwrap_or_else(|e| panic!("our own RTCP does not parse ({e}): {out:02x?}"));
    let mut ps = c.packets();
    let p = ps.next().expect("one packet");
    assert!(ps.next().is_none());
    p
}

fn check_tcc(t: &rtcp::TransportCc<'_>) {
    let _ = (
        t.sender_ssrc(),
        t.media_ssrc(),
        t.base_seq(),
        t.reference_time(),
        t.chunks(),
    );
    let Ok(f) = TransportFeedback::from_rtcp(t) else {
        return;
    };
    assert_eq!(f.packets().count(), usize::from(f.status_count));
    let received = f
        .packets()
        .filter(|(_, s)| matches!(s, PacketStatus::Received { .. }))
        .count();
    assert_eq!(received, usize::from(f.received_count()));
    let arrivals: Vec<(u16, i64)> = f.arrivals().collect();
    assert_eq!(arrivals.len(), received);

    // Re-encode what was received with the bridge's builder.
    let mut b = FeedbackBuilder::new(usize::MAX);
    let reference = f.reference_time_us();
    b.reset(
        f.sender_ssrc,
        f.media_ssrc,
        f.base_seq,
        reference,
        f.feedback_count,
    );
    let mut accepted = 0;
    for &(seq, t) in &arrivals {
        if !b.add_received(seq, reference + t) {
            break;
        }
        accepted += 1;
    }
    let mut out = Vec::new();
    if b.write(&mut out) {
        let back = TransportFeedback::parse(&out)
            .unwrap_or_else(|e| panic!("our own feedback does not parse ({e}): {out:02x?}"));
        assert_eq!(back.base_seq, f.base_seq);
        let again: Vec<(u16, i64)> = back.arrivals().collect();
        assert_eq!(&again[..], &arrivals[..accepted], "feedback round trip");
    } else {
        assert_eq!(accepted, 0);
    }
}

fn check_packet(p: Packet<'_>) {
    let mut out = Vec::new();
    match p {
        Packet::SenderReport(sr) => {
            let info = SenderInfo {
                ssrc: sr.ssrc(),
                ntp: sr.ntp(),
                rtp_timestamp: sr.rtp_timestamp(),
                packet_count: sr.packet_count(),
                octet_count: sr.octet_count(),
            };
            let _ = (sr.ntp_middle(), sr.as_bytes());
            let blocks: Vec<ReportBlock> = sr.report_blocks().collect();
            write_sr(&mut out, &info, &blocks);
            let Packet::SenderReport(back) = only(&out) else {
                panic!("SR became something else")
            };
            assert_eq!(back.ntp(), info.ntp);
            assert_eq!(
                (
                    back.ssrc(),
                    back.rtp_timestamp(),
                    back.packet_count(),
                    back.octet_count()
                ),
                (
                    info.ssrc,
                    info.rtp_timestamp,
                    info.packet_count,
                    info.octet_count
                )
            );
            assert!(back.report_blocks().eq(blocks.iter().copied()));
        }
        Packet::ReceiverReport(rr) => {
            let blocks: Vec<ReportBlock> = rr.report_blocks().collect();
            write_rr(&mut out, rr.ssrc(), &blocks);
            let Packet::ReceiverReport(back) = only(&out) else {
                panic!("RR became something else")
            };
            assert_eq!(back.ssrc(), rr.ssrc());
            assert!(back.report_blocks().eq(blocks.iter().copied()));
        }
        Packet::Bye(bye) => {
            let ssrcs: Vec<u32> = bye.ssrcs().collect();
            write_bye(&mut out, &ssrcs);
            let Packet::Bye(back) = only(&out) else {
                panic!("BYE became something else")
            };
            assert!(back.ssrcs().eq(ssrcs.iter().copied()));
        }
        Packet::Pli(pli) => {
            write_pli(&mut out, pli.sender_ssrc, pli.media_ssrc);
            let Packet::Pli(back) = only(&out) else {
                panic!("PLI became something else")
            };
            assert_eq!(back, pli);
        }
        Packet::Fir(fir) => {
            if let Some((ssrc, seq)) = fir.entries().next() {
                write_fir(&mut out, fir.sender_ssrc, ssrc, seq);
                let Packet::Fir(back) = only(&out) else {
                    panic!("FIR became something else")
                };
                assert_eq!(back.sender_ssrc, fir.sender_ssrc);
                assert!(back.entries().eq([(ssrc, seq)]));
            }
        }
        Packet::Nack(nack) => {
            let lost: Vec<u16> = nack.lost().collect();
            write_nack(&mut out, nack.sender_ssrc, nack.media_ssrc, &lost);
            let Packet::Nack(back) = only(&out) else {
                panic!("NACK became something else")
            };
            assert_eq!(
                (back.sender_ssrc, back.media_ssrc),
                (nack.sender_ssrc, nack.media_ssrc)
            );
            let a: BTreeSet<u16> = lost.iter().copied().collect();
            let b: BTreeSet<u16> = back.lost().collect();
            assert_eq!(a, b, "NACK round trip");
        }
        Packet::Remb(remb) => {
            let bps = remb.bitrate_bps();
            let ssrcs: Vec<u32> = remb.ssrcs().collect();
            write_remb(&mut out, remb.sender_ssrc(), bps, &ssrcs);
            let Packet::Remb(back) = only(&out) else {
                panic!("REMB became something else")
            };
            let again = back.bitrate_bps();
            assert!(
                again <= bps && again >= bps - (bps >> 17),
                "REMB {bps} -> {again}"
            );
            assert!(back.ssrcs().eq(ssrcs.iter().copied()));
        }
        Packet::TransportCc(t) => check_tcc(&t),
        Packet::Sdes | Packet::Xr | Packet::Other { .. } => {}
    }
}

fuzz_target!(|data: &[u8]| {
    // The standalone transport-cc parser sees the whole input too.
    if let Ok(f) = TransportFeedback::parse(data) {
        assert_eq!(f.packets().count(), usize::from(f.status_count));
    }
    let Ok(c) = Compound::parse(data) else {
        return;
    };
    assert_eq!(c.as_bytes(), data);
    for p in c.packets() {
        check_packet(p);
    }
});
