//! The bridge's whole per-packet media path, crypto included: one SRTP-protected ingress packet is
//! decrypted (in place, in a reused buffer, as the endpoint does), routed by the forwarding core,
//! rewritten, and SRTP-encrypted once per receiver (each receiver has its own keys) into a reused
//! buffer (as the port's transmit pool does), for N = 1, 10 and 50 receivers. The kernel send is not
//! included (`udp_send` measures it); `port_path` adds the demux and the port's queues.
//! Run: `cargo bench -p benches --bench media_path`.

use std::collections::HashMap;
use std::hint::black_box;

use benches::{Fixture, OPUS, VP8, rtp_packet, srtp_pair, ssrcs};
use bridge::sfu::{EndpointHandle, Output};
use bridge::transport::SrtpProfile;
use bridge::transport::srtp::SrtpSession;
use bytes::BytesMut;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

const VIDEO_PAYLOAD: usize = 1160; // ≈1200-byte packets, as Chrome sends video
const AUDIO_PAYLOAD: usize = 80;

/// A full cycle of sequence numbers, SRTP-protected in order, so the ingress stream replays without
/// a gap at the wrap (a fresh receiving session restarts the replay window there).
fn protected_cycle(profile: SrtpProfile, template: &[u8], ts_step: u32) -> Vec<Vec<u8>> {
    let (mut tx, _) = srtp_pair(profile);
    let mut p = template.to_vec();
    (0..=u16::MAX)
        .map(|seq| {
            benches::set_seq_ts(&mut p, seq, u32::from(seq).wrapping_mul(ts_step));
            tx.encrypt_rtp(&p).expect("encrypt").to_vec()
        })
        .collect()
}

fn bench_path(c: &mut Criterion, profile: SrtpProfile, name: &str, audio: bool) {
    let mut g = c.benchmark_group(format!("media_path_{name}"));
    let (audio_ssrc, sim, _) = ssrcs(0);
    let template = if audio {
        rtp_packet(OPUS, 0, 0, audio_ssrc, true, AUDIO_PAYLOAD)
    } else {
        rtp_packet(VP8, 0, 0, sim[0], false, VIDEO_PAYLOAD)
    };
    let ingress = protected_cycle(profile, &template, if audio { 960 } else { 3000 });
    for receivers in [1usize, 10, 50] {
        let mut f = Fixture::new(receivers);
        let mut egress: HashMap<EndpointHandle, SrtpSession> = f
            .receivers
            .iter()
            .map(|r| (*r, srtp_pair(profile).0))
            .collect();
        let mut rx = srtp_pair(profile).1;
        let mut rx_buf = BytesMut::with_capacity(2048);
        let mut tx_buf = Vec::with_capacity(1500);
        let mut i = 0usize;
        let mut sent = 0usize;
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new(if audio { "audio" } else { "video_1200B" }, receivers),
            &receivers,
            |b, _| {
                b.iter(|| {
                    if i == ingress.len() {
                        i = 0;
                        rx = srtp_pair(profile).1;
                    }
                    rx_buf.clear();
                    rx_buf.extend_from_slice(black_box(&ingress[i]));
                    let n = rx.decrypt_rtp_in_place(&mut rx_buf).expect("decrypt");
                    i += 1;
                    f.sfu
                        .handle_rtp(f.now, f.sender, &rx_buf[..n], &mut |out: Output<'_>| {
                            if let Output::Rtp { to, packet } = out
                                && let Some(s) = egress.get_mut(&to)
                            {
                                s.encrypt_rtp_into(packet, &mut tx_buf).expect("encrypt");
                                black_box(&tx_buf);
                                sent += 1;
                            }
                        });
                })
            },
        );
        // Every receiver got every packet: the path measured is the full fan-out.
        assert!(sent >= receivers, "no packet reached the receivers");
    }
    g.finish();
}

fn media_path(c: &mut Criterion) {
    for (profile, name) in [
        (SrtpProfile::AeadAes128Gcm, "gcm"),
        (SrtpProfile::Aes128CmHmacSha1_80, "cm_sha1_80"),
    ] {
        bench_path(c, profile, name, false);
    }
    bench_path(c, SrtpProfile::AeadAes128Gcm, "gcm", true);
}

criterion_group!(benches, media_path);
criterion_main!(benches);
