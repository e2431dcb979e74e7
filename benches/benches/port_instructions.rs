//! Instructions per datagram on the port path, counted by callgrind: deterministic where CPU time
//! on a shared 2-vCPU machine is not (and this VM has no hardware counters for `perf stat`).
//! Runs `PortFixture` (`benches/src/port.rs`: demux → SRTP decrypt → forwarding core → N × SRTP
//! encrypt → the flush without the kernel) for `BATCHES` receive batches of `BATCH` datagrams
//! after a warm-up, the datagrams made beforehand; callgrind counts only inside
//! `PortFixture::batch`, so its total divided by the datagrams is the instructions per datagram:
//!
//! ```sh
//! cargo bench -p benches --bench port_instructions --no-run
//! B=$(ls -t target/release/deps/port_instructions-* | grep -v '\.d$' | head -1)
//! valgrind --tool=callgrind --toggle-collect='*PortFixture*batch*' \
//!     --callgrind-out-file=/tmp/cg.out $B 40 8 500 2>&1 | grep refs
//! # instructions per datagram = refs / (500 × 8); per forwarded packet: / 39 more
//! ```
//!
//! Arguments: conference size (its first endpoint sends 1200-byte VP8), datagrams per receive
//! batch, batches measured, and optionally the endpoints on the port (default: one conference; more
//! make more conferences of that size whose senders stay silent, as `port_path`'s `one_sender`).

use benches::port::PortFixture;

fn main() {
    // argv[0] is the program's path (skipped); cargo bench adds `--bench` (filtered); the rest
    // are ours.
    let mut args = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .map(|a| {
            a.parse::<usize>()
                .expect("usage: SIZE BATCH BATCHES [ENDPOINTS]")
        });
    let size = args.next().unwrap_or(10);
    let batch = args.next().unwrap_or(1);
    let batches = args.next().unwrap_or(1000);
    let endpoints = args.next().unwrap_or(size);
    let mut f = PortFixture::new(endpoints, size);
    let mut senders = std::mem::take(&mut f.senders);
    let sender = &mut senders[0];
    // Warm-up: past the first keyframe, the caches filled (as `port_path`).
    for _ in 0..800 {
        let d = sender.next_datagram();
        f.datagram(sender.addr, &d);
    }
    let all: Vec<Vec<_>> = (0..batches)
        .map(|_| {
            (0..batch)
                .map(|_| (sender.addr, sender.next_datagram()))
                .collect()
        })
        .collect();
    let sent = f.sent;
    for datagrams in &all {
        f.batch(datagrams);
    }
    let per = (f.sent - sent) as f64 / (batches * batch) as f64;
    assert!(per >= (size - 1) as f64, "{per} transmits per datagram");
    println!("conference of {size}, {batches} batches of {batch}: {per:.2} transmits per datagram");
}
