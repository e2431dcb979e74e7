//! The congestion-control and speaker components do not allocate per packet / per feedback
//! once warm: transport-cc generator and parser, send-side estimator, NACK generator, DSI.

use std::time::{Duration, Instant};

use bridge::sfu::bwe::{BweConfig, SendSideBwe};
use bridge::sfu::dsi::DominantSpeakerIdentification;
use bridge::sfu::nack_gen::{NackConfig, NackGenerator};
use bridge::sfu::speaker::SpeakerDetector;
use bridge::sfu::tcc_feedback::TransportFeedback;
use bridge::sfu::tcc_feedback::generator::{GeneratorConfig, TccFeedbackGenerator};

mod counting;

use counting::allocs;

#[global_allocator]
static A: counting::Counting = counting::Counting;

/// Sender → link (20 ms delay, every 30th packet lost) → receiver's generator → estimator, for
/// `ms` milliseconds at 2 packets per ms; plus NACK generation on the same sequence numbers.
struct Loop {
    t0: Instant,
    ms: u64,
    seq: u16,
    bwe: SendSideBwe,
    fb_gen: TccFeedbackGenerator,
    nack: NackGenerator,
    buf: Vec<u8>,
    nack_buf: Vec<u8>,
    in_flight: [(u64, u16); 64],
    head: usize,
    len: usize,
}

impl Loop {
    fn run(&mut self, ms: u64) {
        for _ in 0..ms {
            self.ms += 1;
            let now = self.t0 + Duration::from_millis(self.ms);
            for _ in 0..2 {
                self.bwe.on_packet_sent(now, self.seq, 1200, None);
                if !self.seq.is_multiple_of(30) {
                    let i = (self.head + self.len) % self.in_flight.len();
                    self.in_flight[i] = (self.ms + 20, self.seq);
                    self.len += 1;
                }
                self.seq = self.seq.wrapping_add(1);
            }
            while self.len > 0 && self.in_flight[self.head].0 <= self.ms {
                let (_, s) = self.in_flight[self.head];
                self.head = (self.head + 1) % self.in_flight.len();
                self.len -= 1;
                self.fb_gen.on_packet(now, s, 1, false);
                self.nack.on_packet(now, s);
            }
            self.buf.clear();
            if self.fb_gen.poll_feedback(now, &mut self.buf) > 0 {
                let fb = TransportFeedback::parse(&self.buf).unwrap();
                self.bwe.on_transport_feedback(now, &fb);
            }
            self.nack_buf.clear();
            self.nack.poll_nack(now, 9, &mut self.nack_buf);
            self.bwe.handle_timeout(now);
        }
    }
}

#[test]
fn congestion_control_path_allocates_nothing_once_warm() {
    let t0 = Instant::now();
    let mut l = Loop {
        t0,
        ms: 0,
        seq: 0,
        bwe: SendSideBwe::new(t0, BweConfig::default()),
        fb_gen: TccFeedbackGenerator::new(9, GeneratorConfig::default()),
        nack: NackGenerator::new(1, NackConfig::default()),
        buf: Vec::with_capacity(1500),
        nack_buf: Vec::with_capacity(1500),
        in_flight: [(0, 0); 64],
        head: 0,
        len: 0,
    };
    l.run(2_000);
    let before = allocs();
    l.run(3_000);
    assert_eq!(allocs() - before, 0, "allocations in 3 s of feedback loop");
    assert!(l.bwe.acknowledged_bps().is_some());
    assert!(l.nack.recovered + l.nack.given_up > 0 || l.nack.missing_count() > 0);
}

#[test]
fn dsi_allocates_nothing_per_level_or_decision() {
    let t0 = Instant::now();
    let mut d = DominantSpeakerIdentification::default();
    for i in 0..20 {
        d.add(i);
    }
    let feed = |from: u64, to: u64, d: &mut DominantSpeakerIdentification| {
        for k in from..to {
            let now = t0 + Duration::from_millis(20 * k);
            for i in 0..20u32 {
                // Speaker 4 talks (loud with short pauses); the others are quiet.
                let level = match (i, k % 10) {
                    (4, 0..=7) => 20 + (k % 7) as u8,
                    (4, _) => 90,
                    _ => 100 + (k % 3) as u8,
                };
                d.on_level(now, i, level);
            }
            if k.is_multiple_of(15) {
                d.evaluate(now);
            }
        }
    };
    feed(0, 100, &mut d);
    let before = allocs();
    feed(100, 600, &mut d);
    assert_eq!(allocs() - before, 0);
    assert_eq!(d.dominant(), Some(4));
}
