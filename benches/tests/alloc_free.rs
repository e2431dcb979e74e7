//! The forwarding path does not allocate per packet: a counting global allocator watches
//! `handle_rtp` (video and audio, 1 and 50 receivers) and NACK → RTX after warm-up.

use std::time::Duration;

use benches::{
    Fixture, KEYFRAME_INTERVAL, OPUS, PACKETS_PER_FRAME, VP8, rtp_packet, set_seq_ts, ssrcs,
};
use bridge::sfu::rtcp;
use bridge::sfu::{Output, SfuConfig, Stat};

mod counting;

use counting::allocs;

#[global_allocator]
static A: counting::Counting = counting::Counting;

#[test]
fn the_counter_sees_allocations_of_this_thread() {
    let before = allocs();
    let v: Vec<u8> = std::hint::black_box(Vec::with_capacity(100));
    assert!(allocs() > before);
    drop(v);
}

#[test]
fn forwarding_path_allocates_nothing_per_packet_once_warm() {
    for receivers in [1usize, 50] {
        let mut f = Fixture::new(receivers);
        let (audio, sim, _) = ssrcs(0);
        let mut video = rtp_packet(VP8, 0, 0, sim[0], false, 1160);
        let mut audio_pkt = rtp_packet(OPUS, 0, 0, audio, true, 80);
        let mut bytes = 0usize;
        let mut sink = |o: Output<'_>| {
            if let Output::Rtp { packet, .. } = o {
                bytes += packet.len();
            }
        };
        // Warm-up: fills every receiver's retransmission cache ring (512 slots) once, counting
        // from the first keyframe (forwarding starts there).
        let mut seq = 0u16;
        for _ in 0..600 + KEYFRAME_INTERVAL * PACKETS_PER_FRAME {
            seq = seq.wrapping_add(1);
            set_seq_ts(&mut video, seq, u32::from(seq) * 3000);
            f.sfu.handle_rtp(f.now, f.sender, &video, &mut sink);
            set_seq_ts(&mut audio_pkt, seq, u32::from(seq) * 960);
            f.sfu.handle_rtp(f.now, f.sender, &audio_pkt, &mut sink);
        }
        let sent_before = f.sfu.counters().get(Stat::RtpSent);
        let before = allocs();
        for _ in 0..5000 {
            seq = seq.wrapping_add(1);
            set_seq_ts(&mut video, seq, u32::from(seq) * 3000);
            f.sfu.handle_rtp(f.now, f.sender, &video, &mut sink);
            set_seq_ts(&mut audio_pkt, seq, u32::from(seq) * 960);
            f.sfu.handle_rtp(f.now, f.sender, &audio_pkt, &mut sink);
        }
        let n = allocs() - before;
        let sent = f.sfu.counters().get(Stat::RtpSent) - sent_before;
        assert_eq!(
            sent,
            2 * 5000 * receivers as u64,
            "everything was forwarded"
        );
        assert_eq!(
            n, 0,
            "{n} allocations for 10000 ingress packets to {receivers} receivers"
        );
        assert!(bytes > 0);
    }
}

#[test]
fn nack_answer_allocates_nothing() {
    let cfg = SfuConfig {
        nack_min_resend_interval: Duration::ZERO,
        ..Default::default()
    };
    let mut f = Fixture::with_config(1, cfg);
    let (_, sim, _) = ssrcs(0);
    let mut video = rtp_packet(VP8, 0, 0, sim[0], false, 1160);
    let mut sink = |_: Output<'_>| {};
    for s in 0..200u16 {
        set_seq_ts(&mut video, s, u32::from(s) * 3000);
        f.sfu.handle_rtp(f.now, f.sender, &video, &mut sink);
    }
    // Packets of the two keyframes (always answered) and of a delta frame (answered within the
    // retransmission share of the receiver's estimate, so only at first: time stands still).
    let key = KEYFRAME_INTERVAL * PACKETS_PER_FRAME;
    let mut nack = Vec::new();
    rtcp::write_nack(&mut nack, 1, sim[0], &[0, 1, 50, key]);
    let r = f.receivers[0];
    f.sfu.handle_rtcp(f.now, r, &nack, &mut sink);
    let before = allocs();
    for _ in 0..1000 {
        f.sfu.handle_rtcp(f.now, r, &nack, &mut sink);
    }
    assert_eq!(allocs() - before, 0);
    let rtx = f.sfu.counters().get(Stat::RetransmissionsRtx);
    assert!(rtx > 3 * 1001 && rtx < 4 * 1001, "{rtx} retransmissions");
}
