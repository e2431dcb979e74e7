//! The per-datagram cost of the bridge's media port, sans-IO (`benches::port::PortFixture`):
//! demux → endpoint transport (SRTP decrypt in place) → forwarding core → SRTP encrypt for each of
//! the conference's 9 receivers into the port's reused transmit buffers → the flush's drain and
//! recycle (the kernel send is `udp_send`'s). Conferences of 10, with 10, 100 and 1 000 endpoints
//! on the port: only one conference's sender sending (`one_sender`: the port's own per-datagram
//! work, which must not grow with the endpoints on it), or every conference's in turn
//! (`all_senders`: the same work on a working set that grows with the conferences — each sender's
//! retransmission cache alone is ≈ 600 kB — so it also measures the memory hierarchy).
//! Run: `cargo bench -p benches --bench port_path`.

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

use benches::port::PortFixture;

const SIZE: usize = 10;

fn port_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("port_datagram_gcm_conf10");
    g.throughput(Throughput::Elements(1));
    for endpoints in [10usize, 100, 1000] {
        let mut f = PortFixture::new(endpoints, SIZE);
        let mut senders = std::mem::take(&mut f.senders);
        // Warm-up: each stream past its first keyframe (receivers start there) and the caches
        // filled, as in a running call.
        for _ in 0..800 {
            for s in senders.iter_mut() {
                let d = s.next_datagram();
                f.datagram(s.addr, &d);
            }
        }
        for all in [false, true] {
            if all && endpoints == SIZE {
                continue; // one conference: the same as one_sender
            }
            let name = if all { "all_senders" } else { "one_sender" };
            let mut next = 0usize;
            let (sent, mut datagrams) = (f.sent, 0u64);
            // The participants' encryption is setup (not measured); the port's work is.
            g.bench_function(BenchmarkId::new(name, endpoints), |b| {
                b.iter_batched(
                    || {
                        let s = if all { next % senders.len() } else { 0 };
                        next += 1;
                        (senders[s].addr, senders[s].next_datagram())
                    },
                    |(from, d)| {
                        f.datagram(from, &d);
                        datagrams += 1;
                    },
                    BatchSize::SmallInput,
                )
            });
            // Every datagram reached the conference's 9 other endpoints (keyframe requests and
            // the like come on top).
            if datagrams > 0 {
                let per = (f.sent - sent) as f64 / datagrams as f64;
                assert!(per >= (SIZE - 1) as f64, "{per} transmits per datagram");
            }
        }
    }
    g.finish();
}

criterion_group!(benches, port_path);
criterion_main!(benches);
