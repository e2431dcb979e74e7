//! Per-packet cost of the transport's media path: SRTP protect/unprotect of a 1200-byte RTP
//! packet for both profiles — into a new buffer, and in place in a reused one (what the port
//! does) — and the port demux decision for an RTP datagram.
//! Run: `cargo bench -p benches --bench transport`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use benches::srtp_pair;
use bridge::transport::{Demux, DropCounters, SrtpProfile};
use criterion::{Criterion, criterion_group, criterion_main};

fn rtp(seq: u16, len: usize) -> Vec<u8> {
    let mut p = vec![
        0x80,
        100,
        (seq >> 8) as u8,
        seq as u8,
        0,
        0,
        0x10,
        0,
        0x12,
        0x34,
        0x56,
        0x78,
    ];
    p.resize(len, 0xA5);
    p
}

fn srtp(c: &mut Criterion) {
    for profile in [SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80] {
        let name = match profile {
            SrtpProfile::AeadAes128Gcm => "gcm",
            SrtpProfile::Aes128CmHmacSha1_80 => "cm_sha1_80",
        };
        let (mut tx, _) = srtp_pair(profile);
        let mut seq = 0u16;
        let mut p = rtp(0, 1200);
        c.bench_function(&format!("srtp_encrypt_1200B_{name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                black_box(tx.encrypt_rtp(black_box(&p)).expect("encrypt"))
            })
        });
        let mut out = Vec::with_capacity(1500);
        c.bench_function(&format!("srtp_encrypt_into_1200B_{name}"), |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                tx.encrypt_rtp_into(black_box(&p), &mut out)
                    .expect("encrypt");
                black_box(&out);
            })
        });
        // Pre-encrypt a long in-order run so decrypt passes replay protection.
        // A fresh sender: the one above has wrapped its rollover counter many times.
        let (mut tx, mut rx) = srtp_pair(profile);
        let n = 60_000u16;
        let packets: Vec<_> = (1..=n)
            .map(|s| tx.encrypt_rtp(&rtp(s, 1200)).expect("encrypt"))
            .collect();
        let mut i = 0usize;
        c.bench_function(&format!("srtp_decrypt_1200B_{name}"), |b| {
            b.iter(|| {
                // Wrap around with a fresh receiver so every packet is new to the replay window.
                if i == packets.len() {
                    i = 0;
                    rx = srtp_pair(profile).1;
                }
                let out = rx.decrypt_rtp(black_box(&packets[i])).expect("decrypt");
                i += 1;
                black_box(out)
            })
        });
        let mut buf = bytes::BytesMut::with_capacity(2048);
        let mut i = 0usize;
        rx = srtp_pair(profile).1;
        c.bench_function(&format!("srtp_decrypt_in_place_1200B_{name}"), |b| {
            b.iter(|| {
                if i == packets.len() {
                    i = 0;
                    rx = srtp_pair(profile).1;
                }
                buf.clear();
                buf.extend_from_slice(black_box(&packets[i]));
                let n = rx.decrypt_rtp_in_place(&mut buf).expect("decrypt");
                i += 1;
                black_box(&buf[..n]);
            })
        });
    }
}

/// The part of an SRTP call an in-place implementation would save: allocating the output
/// buffer and copying the packet into it (rtc-srtp does exactly this before sealing in place).
fn alloc_copy(c: &mut Criterion) {
    let p = rtp(1, 1200);
    c.bench_function("alloc_copy_1216B", |b| {
        b.iter(|| {
            let mut out = bytes::BytesMut::with_capacity(p.len() + 16);
            out.extend_from_slice(black_box(&p));
            black_box(out)
        })
    });
}

fn demux(c: &mut Criterion) {
    let mut d: Demux<u32> = Demux::new(Arc::new(DropCounters::new()));
    for i in 0..500u32 {
        d.register(&format!("uf{i:05}"), i);
        d.learn(SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16)), &i);
    }
    let from = SocketAddr::from(([127, 0, 0, 1], 20_250));
    let p = rtp(1, 1200);
    c.bench_function("demux_route_rtp_500_endpoints", |b| {
        b.iter(|| black_box(d.route(black_box(from), black_box(&p))))
    });
}

criterion_group!(benches, srtp, alloc_copy, demux);
criterion_main!(benches);
