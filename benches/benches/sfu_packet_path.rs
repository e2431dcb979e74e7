//! Per-packet costs of the forwarding core (no SRTP): RTP parse, SSRC lookup, routing decision,
//! RTP rewrite, RTCP handling, and the whole ingress → N-egress path for N = 1, 10, 50.
//!
//! `cargo bench -p benches -- --quick` for a short run.

use std::hint::black_box;
use std::time::Duration;

use benches::{Fixture, OPUS, TCC_ID, VP8, rtp_packet, set_seq_ts, ssrcs};
use bridge::sfu::model::SsrcMap;
use bridge::sfu::rtcp::{self, Compound};
use bridge::sfu::rtp::{self, ExtMap, Rewrite, RtpPacket};
use bridge::sfu::{Output, SfuConfig};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use signaling::bridge_channel::BridgeChannelMessage;

const VIDEO_PAYLOAD: usize = 1160; // ≈1200-byte packets, as Chrome sends video
const AUDIO_PAYLOAD: usize = 80;

/// Consumes outputs the way a transport would look at them, without copying.
fn sink(n: &mut usize) -> impl FnMut(Output<'_>) + '_ {
    move |o| {
        if let Output::Rtp { packet, .. } | Output::Rtcp { packet, .. } = o {
            *n += black_box(packet.len());
        }
    }
}

fn rtp_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp_parse");
    let video = rtp_packet(VP8, 1, 1, 11, false, VIDEO_PAYLOAD);
    let audio = rtp_packet(OPUS, 1, 1, 12, true, AUDIO_PAYLOAD);
    g.bench_function("video_1200B", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(&video)).unwrap();
            black_box((p.ssrc(), p.sequence_number(), p.transport_cc_seq(TCC_ID)))
        })
    });
    g.bench_function("audio_with_level", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(&audio)).unwrap();
            black_box((p.ssrc(), p.audio_level(benches::AUDIO_LEVEL_ID)))
        })
    });
    g.finish();
}

fn ssrc_lookup(c: &mut Criterion) {
    // A 50-endpoint conference registers 7 SSRCs per endpoint.
    let mut m: SsrcMap<u32> = SsrcMap::default();
    for i in 0..50 {
        let (a, sim, rtx) = ssrcs(i);
        for s in [a].iter().chain(&sim).chain(&rtx) {
            m.insert(*s, i);
        }
    }
    let probe = ssrcs(37).1[0];
    c.bench_function("ssrc_lookup/350_entries", |b| {
        b.iter(|| black_box(m.get(black_box(&probe))))
    });
}

/// SSRC lookup + receive statistics + the per-receiver decision for 10 receivers, with no egress:
/// every receiver has the source suspended (lastN 0).
fn routing_decision(c: &mut Criterion) {
    let mut f = Fixture::new(10);
    let mut n = 0usize;
    for r in f.receivers.clone() {
        f.sfu.handle_channel_message(
            f.now,
            r,
            r#"{"colibriClass":"LastNChangedEvent","lastN":0}"#,
            &mut sink(&mut n),
        );
    }
    let (_, sim, _) = ssrcs(0);
    let mut pkt = rtp_packet(VP8, 0, 0, sim[0], false, VIDEO_PAYLOAD);
    let mut seq = 0u16;
    c.bench_function("routing_decision/10_receivers_suspended", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            set_seq_ts(&mut pkt, seq, u32::from(seq) * 3000);
            f.sfu.handle_rtp(f.now, f.sender, &pkt, &mut sink(&mut n));
        })
    });
    black_box(n);
}

fn rtp_rewrite(c: &mut Criterion) {
    let video = rtp_packet(VP8, 1, 1, 11, false, VIDEO_PAYLOAD);
    let p = RtpPacket::parse(&video).unwrap();
    let ext = ExtMap {
        keep: [(4, 4), (0, 0)],
        tcc_out: TCC_ID,
        allow_two_byte: true,
        mid: Default::default(),
    };
    let mut out = Vec::with_capacity(1500);
    let mut tcc = 0u16;
    c.bench_function("rtp_rewrite/video_1200B", |b| {
        b.iter(|| {
            tcc = tcc.wrapping_add(1);
            let rw = Rewrite {
                ssrc: 99,
                seq: 7,
                timestamp: 8,
                payload_type: VP8,
                ext: &ext,
                tcc_seq: tcc,
                replace: None,
            };
            rtp::write_forwarded(black_box(&p), &rw, &mut out);
            black_box(out.len())
        })
    });
}

fn rtcp_handling(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtcp");
    // What a Chrome receiver sends every ~100 ms–1 s: RR + SDES + REMB / transport-cc.
    let mut compound = Vec::new();
    rtcp::write_rr(
        &mut compound,
        0x1234,
        &[rtcp::ReportBlock {
            ssrc: ssrcs(0).1[0],
            ..Default::default()
        }],
    );
    rtcp::write_sdes_cname(&mut compound, 0x1234, "abcdefgh12345678");
    rtcp::write_remb(&mut compound, 0x1234, 2_000_000, &[ssrcs(0).1[0]]);
    rtcp::write_tcc_raw(
        &mut compound,
        0x1234,
        ssrcs(0).1[0],
        100,
        20,
        &[0x20, 20, 4, 4, 4, 4],
    );
    g.bench_function("parse_compound", |b| {
        b.iter(|| {
            let c = Compound::parse(black_box(&compound)).unwrap();
            black_box(c.packets().count())
        })
    });

    let mut f = Fixture::new(10);
    let mut n = 0usize;
    let r0 = f.receivers[0];
    g.bench_function("terminate_receiver_feedback", |b| {
        b.iter(|| {
            f.sfu
                .handle_rtcp(f.now, r0, black_box(&compound), &mut sink(&mut n))
        })
    });

    // SR from the sender, forwarded rewritten to 10 receivers.
    let (_, sim, _) = ssrcs(0);
    let mut pkt = rtp_packet(VP8, 0, 0, sim[0], false, VIDEO_PAYLOAD);
    for s in 0..10u16 {
        set_seq_ts(&mut pkt, s, 0);
        f.sfu.handle_rtp(f.now, f.sender, &pkt, &mut sink(&mut n));
    }
    let mut sr = Vec::new();
    rtcp::write_sr(
        &mut sr,
        &rtcp::SenderInfo {
            ssrc: sim[0],
            ntp: 1 << 40,
            rtp_timestamp: 1234,
            packet_count: 10,
            octet_count: 12000,
        },
        &[],
    );
    rtcp::write_sdes_cname(&mut sr, sim[0], "sendercname12345");
    g.bench_function("forward_sr_to_10", |b| {
        b.iter(|| {
            f.sfu
                .handle_rtcp(f.now, f.sender, black_box(&sr), &mut sink(&mut n))
        })
    });

    // PLI from a receiver: lookup, throttle check, PLI toward the sender (throttled after the
    // first: this measures the common case of a request that is suppressed).
    let mut pli = Vec::new();
    rtcp::write_pli(&mut pli, 0x1234, sim[0]);
    g.bench_function("pli_throttled", |b| {
        b.iter(|| {
            f.sfu
                .handle_rtcp(f.now, r0, black_box(&pli), &mut sink(&mut n))
        })
    });

    // NACK for one packet answered with RTX from the cache: a keyframe packet, answered however
    // often it is asked for (delta-frame packets are answered within the retransmission share of
    // the receiver's estimate, and time stands still here).
    let cfg = SfuConfig {
        nack_min_resend_interval: Duration::ZERO,
        ..Default::default()
    };
    let mut f1 = Fixture::with_config(1, cfg);
    for s in 0..200u16 {
        set_seq_ts(&mut pkt, s, u32::from(s) * 3000);
        f1.sfu
            .handle_rtp(f1.now, f1.sender, &pkt, &mut sink(&mut n));
    }
    let mut nack = Vec::new();
    let key = benches::KEYFRAME_INTERVAL * benches::PACKETS_PER_FRAME;
    rtcp::write_nack(&mut nack, 0x1234, sim[0], &[key + 1]);
    let r = f1.receivers[0];
    g.bench_function("nack_to_rtx", |b| {
        b.iter(|| {
            f1.sfu
                .handle_rtcp(f1.now, r, black_box(&nack), &mut sink(&mut n))
        })
    });
    g.finish();
    black_box(n);
}

/// The whole core path per ingress packet: parse, lookup, stats, per-receiver decision, rewrite
/// into the receiver's retransmission cache slot (video) or scratch buffer (audio), hand to sink.
fn ingress_to_egress(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingress_to_egress");
    for receivers in [1usize, 10, 50] {
        let mut f = Fixture::new(receivers);
        let (audio, sim, _) = ssrcs(0);
        let mut video = rtp_packet(VP8, 0, 0, sim[0], false, VIDEO_PAYLOAD);
        let mut audio_pkt = rtp_packet(OPUS, 0, 0, audio, true, AUDIO_PAYLOAD);
        let mut n = 0usize;
        let mut seq = 0u16;
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new("video_1200B", receivers),
            &receivers,
            |b, _| {
                b.iter(|| {
                    seq = seq.wrapping_add(1);
                    set_seq_ts(&mut video, seq, u32::from(seq) * 3000);
                    f.sfu.handle_rtp(f.now, f.sender, &video, &mut sink(&mut n));
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("audio", receivers), &receivers, |b, _| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                set_seq_ts(&mut audio_pkt, seq, u32::from(seq) * 960);
                f.sfu
                    .handle_rtp(f.now, f.sender, &audio_pkt, &mut sink(&mut n));
            })
        });
        black_box(n);
    }
    g.finish();
}

/// Not per packet, but on every data-channel message: decode + relay an EndpointMessage to 10.
fn channel_relay(c: &mut Criterion) {
    let mut f = Fixture::new(10);
    let msg = r#"{"colibriClass":"EndpointMessage","to":"","msgPayload":{"type":"e2e-ping-request","id":1}}"#;
    assert!(BridgeChannelMessage::parse(msg).is_ok());
    let mut n = 0usize;
    let mut s = |o: Output<'_>| {
        if let Output::Text { text, .. } = o {
            n += text.len();
        }
    };
    c.bench_function("channel/endpoint_message_broadcast_10", |b| {
        b.iter(|| {
            f.sfu
                .handle_channel_message(f.now, f.sender, black_box(msg), &mut s)
        })
    });
}

criterion_group!(
    benches,
    rtp_parse,
    ssrc_lookup,
    routing_decision,
    rtp_rewrite,
    rtcp_handling,
    ingress_to_egress,
    channel_relay
);
criterion_main!(benches);
