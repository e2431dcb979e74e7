//! The kernel send of a port's flush on loopback: what `transport::shell::Port::flush` does with
//! its queued transmits — one `send_to` per datagram (the shell before batching) against
//! `transport::udp::send_some` (`sendmmsg` of up to 32 messages, and UDP GSO for runs to one
//! receiver), with GSO on and off. Two flush shapes: a fan-out (one 1200 B datagram to each of 40
//! receivers, a 1 × 40 room's video packet) and a burst (32 × 1200 B to one receiver, a video
//! frame). Only the sends are timed; the receivers are drained between iterations, untimed.
//! Throughput is in datagrams. Run: `cargo bench -p benches --bench udp_send`.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bridge::transport::udp::{self, IoCounters};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn bind() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_nonblocking(true).expect("nonblocking");
    s
}

fn drain(receivers: &[UdpSocket]) {
    let mut buf = [0u8; 2048];
    for r in receivers {
        while r.recv_from(&mut buf).is_ok() {}
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("udp_send");
    for (shape, receivers, per_receiver) in [("fanout_40", 40usize, 1usize), ("burst_32", 1, 32)] {
        let sender = bind();
        let rx: Vec<_> = (0..receivers).map(|_| bind()).collect();
        let transmits: Vec<(SocketAddr, Vec<u8>)> = rx
            .iter()
            .flat_map(|r| {
                let to = r.local_addr().expect("addr");
                (0..per_receiver).map(move |i| (to, vec![0x80 | (i as u8 & 1); 1200]))
            })
            .collect();
        g.throughput(Throughput::Elements(transmits.len() as u64));
        let mut run = |name: &str, send: &mut dyn FnMut()| {
            g.bench_function(BenchmarkId::new(name, shape), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        let t = Instant::now();
                        send();
                        spent += t.elapsed();
                        drain(&rx);
                    }
                    spent
                })
            });
        };
        run("send_to_each", &mut || {
            for (to, d) in &transmits {
                let _ = sender.send_to(d, to);
            }
        });
        for gso in [false, true] {
            let counters = IoCounters::default();
            assert!(udp::probe_gso(sender.as_raw_fd(), &counters));
            if !gso {
                counters.disable_gso();
            }
            let name = if gso { "sendmmsg_gso" } else { "sendmmsg" };
            run(name, &mut || {
                let mut done = 0;
                while done < transmits.len() {
                    match udp::send_some(sender.as_raw_fd(), &transmits[done..], &counters) {
                        Ok(n) => done += n,
                        Err(_) => break,
                    }
                }
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
