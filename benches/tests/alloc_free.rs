//! The forwarding path does not allocate per packet: a counting global allocator watches
//! `handle_rtp` (video and audio, 1 and 50 receivers, on the senders' SSRCs and with SSRC
//! rewriting) and NACK → RTX after warm-up, the SVC codec paths (`bridge::sfu::av1`,
//! `bridge::sfu::vp9`) on Chromium-like streams, and the port's whole path with SRTP: demux →
//! SRTP decrypt → forward → N × SRTP encrypt → flush.

use std::time::{Duration, Instant};

use benches::port::PortFixture;
use benches::svc;
use benches::{
    Fixture, KEYFRAME_INTERVAL, OPUS, PACKETS_PER_FRAME, VP8, rtp_packet, set_seq_ts, ssrcs,
};
use bridge::sfu::av1::DdSource;
use bridge::sfu::av1::descriptor::MAX_LEN;
use bridge::sfu::projection::{DdConfig, DdPacket, DdProjection, DdTarget, Layered};
use bridge::sfu::projection::{Vp9Config, Vp9Packet, Vp9Projection, Vp9Target};
use bridge::sfu::rtcp;
use bridge::sfu::vp9::Vp9Source;
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
    // Receivers as the senders' SSRCs, then on the bridge's own (SSRC rewriting: the slots are
    // given and announced during the warm-up).
    for (receivers, rewriting) in [(1usize, false), (50, false), (1, true), (50, true)] {
        let mut f = if rewriting {
            Fixture::ssrc_rewriting(receivers)
        } else {
            Fixture::new(receivers)
        };
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
            "{n} allocations for 10000 ingress packets to {receivers} receivers \
             (SSRC rewriting: {rewriting})"
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

#[test]
fn svc_codec_paths_allocate_nothing_per_packet_once_warm() {
    let t0 = Instant::now();
    // AV1 L3T3_KEY with the Dependency Descriptor: parse, a receiver at 360p (active decode
    // target mask written), keyframes with their structure included.
    let structure = svc::chrome_av1_structure();
    let stream = svc::av1_stream(&structure, 1500);
    let mut src = DdSource::new();
    let mut proj = DdProjection::new(DdConfig::default());
    proj.set_target(Some(DdTarget {
        encoding: 0,
        spatial: 1,
        temporal: 2,
    }));
    let mut out = [0u8; MAX_LEN];
    let mut forwarded = 0;
    let mut before = 0;
    for (i, p) in stream.iter().enumerate() {
        if i == stream.len() / 2 {
            before = allocs();
        }
        let info = src.parse(&p.dd).expect("dd");
        let pkt = DdPacket {
            encoding: 0,
            seq: p.seq,
            timestamp: p.ts,
            marker: p.marker,
            info: &info,
            source: &src,
        };
        if let Some(rw) = proj.forward(t0 + Duration::from_millis(i as u64 * 11), &pkt) {
            let s = src.structure(info.generation).expect("structure");
            std::hint::black_box(rw.write_descriptor(&info, s, &mut out).expect("write"));
            forwarded += 1;
        }
    }
    assert_eq!(allocs() - before, 0, "AV1 Dependency Descriptor path");
    assert!(forwarded > 1000);

    // VP9 L3T3_KEY: parse, a receiver at 180p, PictureID rewrite on the egress copy.
    let stream = svc::vp9_stream(1500);
    let mut src = Vp9Source::new();
    let mut proj = Vp9Projection::new(Vp9Config::default());
    proj.set_target(Some(Vp9Target {
        encoding: 0,
        spatial: 0,
        temporal: 2,
    }));
    let mut copy = vec![0u8; 1500];
    let mut forwarded = 0;
    for (i, p) in stream.iter().enumerate() {
        if i == stream.len() / 2 {
            before = allocs();
        }
        let info = src.parse(&p.payload).expect("vp9");
        let pkt = Vp9Packet {
            encoding: 0,
            seq: p.seq,
            timestamp: p.ts,
            marker: p.marker,
            info: &info,
            source: &src,
        };
        if let Some(rw) = proj.forward(t0 + Duration::from_millis(i as u64 * 11), &pkt) {
            let c = &mut copy[..p.payload.len()];
            c.copy_from_slice(&p.payload);
            rw.apply(c, &info.header).expect("rewrite");
            forwarded += 1;
        }
    }
    assert_eq!(allocs() - before, 0, "VP9 path");
    assert!(forwarded > 1000);
}

/// A port with connected endpoints (real DTLS-SRTP keys, AES-GCM as Chromium negotiates it): once
/// warm, a datagram's whole path — demux, SRTP decrypt in the endpoint's buffer, the forwarding
/// core, SRTP encrypt for each receiver into the port's transmit buffers, the flush's drain and
/// recycle — allocates nothing. Conferences of 10 and of 50 on a port of 100 endpoints, senders
/// taking turns.
#[test]
fn port_path_with_srtp_allocates_nothing_per_datagram_once_warm() {
    for size in [10usize, 50] {
        let mut f = PortFixture::new(100, size);
        let mut senders = std::mem::take(&mut f.senders);
        let n = senders.len();
        // Ingress encrypted beforehand (the participants' side allocates). Each stream's first
        // keyframe is its 128th packet (receivers start there), then 512 fill the caches.
        let warm = n * 800;
        let mut ingress: Vec<_> = (0..warm + 4000)
            .map(|i| {
                let s = &mut senders[i % n];
                (s.addr, s.next_datagram())
            })
            .collect();
        let measured = ingress.split_off(warm);
        // Warm-up: every receiver's retransmission cache ring, the endpoints' receive buffers,
        // the transmit pool, the queues.
        for (from, d) in &ingress {
            f.datagram(*from, d);
        }
        let sent_before = f.sent;
        let before = allocs();
        for (from, d) in &measured {
            f.datagram(*from, d);
        }
        let a = allocs() - before;
        let sent = f.sent - sent_before;
        assert!(
            sent >= (measured.len() * (size - 1)) as u64,
            "{sent} datagrams sent for {} in, conferences of {size}",
            measured.len()
        );
        assert_eq!(
            a,
            0,
            "{a} allocations for {} datagrams, conferences of {size}",
            measured.len()
        );
    }
}
