//! Costs of the congestion-control and speaker-detection components (issue 5): transport-cc
//! feedback parse/build, the uplink feedback generator, the send-side estimator per feedback,
//! and dominant speaker identification per audio level.
//!
//! `cargo bench -p benches --bench bwe -- --quick` for a short run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bridge::sfu::bwe::{BweConfig, SendSideBwe};
use bridge::sfu::dsi::DominantSpeakerIdentification;
use bridge::sfu::speaker::SpeakerDetector;
use bridge::sfu::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};
use bridge::sfu::tcc_feedback::{FeedbackBuilder, TransportFeedback};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A 100-packet feedback (every 20th lost, 2–9 ms spacing, some large deltas).
fn feedback_100(b: &mut FeedbackBuilder, base: u16, t0_us: i64, out: &mut Vec<u8>) {
    b.reset(1, 2, base, t0_us, 0);
    let mut t = t0_us;
    for i in 0..100u16 {
        t += 2_000 + i64::from(i % 8) * 1_000 + if i % 33 == 0 { 80_000 } else { 0 };
        if i % 20 != 19 {
            b.add_received(base.wrapping_add(i), t);
        }
    }
    out.clear();
    b.write(out);
}

fn tcc_codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("tcc_feedback");
    g.throughput(Throughput::Elements(100));
    let mut b = FeedbackBuilder::default();
    let mut bytes = Vec::new();
    feedback_100(&mut b, 65500, 1_000_000, &mut bytes);
    g.bench_function("parse_iterate_100", |bch| {
        bch.iter(|| {
            let fb = TransportFeedback::parse(black_box(&bytes)).unwrap();
            let mut sum = 0i64;
            for (seq, t) in fb.arrivals() {
                sum += i64::from(seq) + t;
            }
            black_box(sum)
        })
    });
    let mut out = Vec::with_capacity(1500);
    g.bench_function("build_100", |bch| {
        bch.iter(|| {
            feedback_100(&mut b, black_box(65500), 1_000_000, &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("generator_100_packets_and_feedback", |bch| {
        let t0 = Instant::now();
        let mut gen_ = TccFeedbackGenerator::new(9, GeneratorConfig::default());
        let mut seq = 0u16;
        let mut t = t0;
        let mut out = Vec::with_capacity(1500);
        bch.iter(|| {
            for _ in 0..100 {
                t += Duration::from_millis(1);
                gen_.on_packet(t, seq, 7, false);
                seq = seq.wrapping_add(1);
            }
            out.clear();
            black_box(gen_.poll_feedback(t, &mut out))
        })
    });
    g.finish();
}

fn estimator(c: &mut Criterion) {
    let mut g = c.benchmark_group("bwe");
    g.bench_function("on_packet_sent", |bch| {
        let t0 = Instant::now();
        let mut bwe = SendSideBwe::new(t0, BweConfig::default());
        let mut seq = 0u16;
        bch.iter(|| {
            bwe.on_packet_sent(t0, seq, 1200, None);
            seq = seq.wrapping_add(1);
        })
    });
    // One feedback about 100 packets (a 100 ms interval at ≈10 Mbps), timed alone: sending the
    // packets and building the feedback happen outside the measurement.
    g.throughput(Throughput::Elements(100));
    g.bench_function("on_transport_feedback_100", |bch| {
        let t0 = Instant::now();
        let mut bwe = SendSideBwe::new(t0, BweConfig::default());
        let mut b = FeedbackBuilder::default();
        let mut bytes = Vec::with_capacity(1500);
        let mut seq = 0u16;
        let mut now_us: i64 = 0;
        bch.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let base = seq;
                b.reset(1, 2, base, now_us + 20_000, 0);
                for i in 0..100i64 {
                    let send = now_us + i * 1_000;
                    bwe.on_packet_sent(t0 + Duration::from_micros(send as u64), seq, 1200, None);
                    if i % 25 != 24 {
                        b.add_received(seq, send + 20_000 + (i % 3) * 300);
                    }
                    seq = seq.wrapping_add(1);
                }
                bytes.clear();
                b.write(&mut bytes);
                now_us += 100_000;
                let at = t0 + Duration::from_micros((now_us + 30_000) as u64);
                let start = Instant::now();
                let fb = TransportFeedback::parse(&bytes).unwrap();
                bwe.on_transport_feedback(at, &fb);
                black_box(bwe.poll_estimate());
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

fn dsi(c: &mut Criterion) {
    let mut g = c.benchmark_group("dsi");
    g.bench_function("on_level", |bch| {
        let t0 = Instant::now();
        let mut d = DominantSpeakerIdentification::default();
        for i in 0..50 {
            d.add(i);
        }
        let mut n: u64 = 0;
        bch.iter(|| {
            n += 1;
            let t = t0 + Duration::from_millis(20 * (n / 50));
            d.on_level(t, (n % 50) as u32, black_box(20 + (n % 60) as u8));
        })
    });
    g.bench_function("evaluate_50_speakers", |bch| {
        let t0 = Instant::now();
        let mut d = DominantSpeakerIdentification::default();
        for i in 0..50 {
            d.add(i);
        }
        for k in 0..50u64 {
            for i in 0..50u32 {
                let level = if i == 3 {
                    20 + (k % 9) as u8
                } else {
                    90 + (k % 5) as u8
                };
                d.on_level(t0 + Duration::from_millis(20 * k), i, level);
            }
        }
        let mut t = t0 + Duration::from_secs(1);
        bch.iter(|| {
            t += Duration::from_millis(1);
            black_box(d.evaluate(t))
        })
    });
    g.finish();
}

criterion_group!(benches, tcc_codec, estimator, dsi);
criterion_main!(benches);
