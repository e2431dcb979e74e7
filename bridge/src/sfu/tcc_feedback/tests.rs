use super::*;
use crate::sfu::rtcp::{Compound, Packet};

/// Deterministic xorshift for the property tests (no dependency, reproducible failures).
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn statuses(fb: &TransportFeedback<'_>) -> Vec<(u16, PacketStatus)> {
    fb.packets().collect()
}

#[test]
fn known_vectors_parse() {
    // Run length of 5 small deltas, through the compound parser.
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 2, 9, 300, 5, &[0x20, 0x05, 1, 1, 1, 1, 4]);
    let c = Compound::parse(&v).unwrap();
    let Some(Packet::TransportCc(t)) = c.packets().next() else {
        panic!()
    };
    let fb = TransportFeedback::from_rtcp(&t).unwrap();
    assert_eq!((fb.sender_ssrc, fb.media_ssrc), (2, 9));
    assert_eq!(fb.received_count(), 5);
    assert_eq!(
        fb.arrivals().collect::<Vec<_>>(),
        vec![(300, 250), (301, 500), (302, 750), (303, 1000), (304, 2000)]
    );

    // One-bit vector: 1 0 1 1 0 0 0 0 0 0 0 0 0 1 → received 0, 2, 3, 13; then a two-bit
    // vector: [large, missing, small] for seqs 14..16 (status count 17).
    let mut body = Vec::new();
    body.extend_from_slice(&0b1010_1100_0000_0001u16.to_be_bytes());
    body.extend_from_slice(&0b1110_0001_0000_0000u16.to_be_bytes());
    body.extend_from_slice(&[10, 20, 30, 40]); // small deltas for 0, 2, 3, 13
    body.extend_from_slice(&(-8i16).to_be_bytes()); // large (negative) for 14
    body.push(7); // small for 16
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 65530, 17, &body);
    let fb = TransportFeedback::parse(&v).unwrap();
    let s = statuses(&fb);
    assert_eq!(s.len(), 17);
    assert_eq!(s[0], (65530, PacketStatus::Received { delta: 10 }));
    assert_eq!(s[1], (65531, PacketStatus::NotReceived));
    assert_eq!(s[5], (65535, PacketStatus::NotReceived));
    assert_eq!(s[6], (0, PacketStatus::NotReceived));
    assert_eq!(s[13], (7, PacketStatus::Received { delta: 40 }));
    assert_eq!(s[14], (8, PacketStatus::Received { delta: -8 }));
    assert_eq!(s[15], (9, PacketStatus::NotReceived));
    assert_eq!(s[16], (10, PacketStatus::Received { delta: 7 }));
    assert_eq!(fb.received_count(), 6);
}

#[test]
fn malformed_inputs_give_typed_errors() {
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 0, 0, &[0x20, 0x00]);
    assert_eq!(TransportFeedback::parse(&v).unwrap_err(), TccError::Empty);
    // Reserved symbol in a run.
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 0, 3, &[0x60, 0x03]);
    assert_eq!(
        TransportFeedback::parse(&v).unwrap_err(),
        TccError::ReservedSymbol(0)
    );
    // Reserved symbol inside a two-bit vector at offset 2.
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 0, 3, &[0b1101_0011, 0, 1, 1]);
    assert_eq!(
        TransportFeedback::parse(&v).unwrap_err(),
        TccError::ReservedSymbol(2)
    );
    // Chunks do not cover the status count.
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 0, 20, &[0x20, 0x05, 1, 1, 1, 1, 1]);
    assert!(matches!(
        TransportFeedback::parse(&v).unwrap_err(),
        TccError::ChunksTruncated(20) | TccError::DeltasTruncated { .. }
    ));
    // Deltas missing.
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 0, 4, &[0x40, 0x04, 1, 2]);
    assert_eq!(
        TransportFeedback::parse(&v).unwrap_err(),
        TccError::DeltasTruncated { need: 8, have: 2 }
    );
    // Not transport-cc / too short / length past the end.
    let mut v = Vec::new();
    rtcp::write_nack(&mut v, 1, 2, &[1, 100, 200]);
    assert_eq!(
        TransportFeedback::parse(&v).unwrap_err(),
        TccError::NotTransportCc
    );
    assert_eq!(
        TransportFeedback::parse(&[0x8f, 205, 0, 4]).unwrap_err(),
        TccError::TooShort
    );
    let mut v = Vec::new();
    rtcp::write_tcc_raw(&mut v, 1, 2, 0, 1, &[0x20, 0x01, 1]);
    v[3] += 1;
    assert_eq!(
        TransportFeedback::parse(&v).unwrap_err(),
        TccError::BadLength
    );
    // Length field shorter than the fixed part (the buffer itself is long enough).
    for words in 0..4 {
        v[3] = words;
        assert_eq!(
            TransportFeedback::parse(&v).unwrap_err(),
            TccError::BadLength
        );
    }
}

/// Builds a feedback from `(seq offset, arrival µs)` pairs; returns the bytes and the list of
/// packets that went in (the builder may refuse the tail when the packet is full).
fn build(
    b: &mut FeedbackBuilder,
    base: u16,
    reference_us: i64,
    pkts: &[(u16, i64)],
) -> (Vec<u8>, usize) {
    b.reset(0x1111, 0x2222, base, reference_us, 7);
    let mut n = 0;
    for &(off, t) in pkts {
        if !b.add_received(base.wrapping_add(off), t) {
            break;
        }
        n += 1;
    }
    let mut out = Vec::new();
    assert_eq!(b.write(&mut out), n > 0);
    (out, n)
}

/// Property: for random received sets (random gaps, random delays including reordering-sized
/// negative ones and >64 ms jumps), build → parse gives back exactly the received set, every
/// arrival within half a tick of the truth, and `status_count` = last − base + 1.
#[test]
fn build_then_parse_roundtrips_random_feedback() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut b = FeedbackBuilder::new(1200);
    for case in 0..3000 {
        let base = rng.next() as u16;
        let n = 1 + rng.below(if case % 10 == 0 { 600 } else { 60 }) as usize;
        let reference_us = rng.below(1 << 40) as i64;
        let mut t = reference_us + rng.below(64_000) as i64;
        let mut off: u16 = rng.below(3) as u16;
        let mut pkts = Vec::new();
        for _ in 0..n {
            pkts.push((off, t));
            off += 1 + match rng.below(10) {
                0..=6 => 0,
                7 | 8 => rng.below(5) as u16,
                _ => rng.below(200) as u16,
            };
            t += match rng.below(20) {
                0 => -(rng.below(5_000) as i64),
                1 => rng.below(3_000_000) as i64,
                2 => 9_000_000, // beyond ±8 s: forces a new packet
                _ => rng.below(70_000) as i64,
            };
        }
        let (bytes, used) = build(&mut b, base, reference_us, &pkts);
        assert!(used >= 1, "case {case}: first packet always fits");
        assert!(bytes.len() <= 1200 && bytes.len() % 4 == 0);
        let fb = TransportFeedback::parse(&bytes).unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(
            (fb.sender_ssrc, fb.media_ssrc, fb.feedback_count),
            (0x1111, 0x2222, 7)
        );
        assert_eq!(fb.base_seq, base);
        let used_pkts = &pkts[..used];
        assert_eq!(fb.status_count, used_pkts[used - 1].0 + 1);
        assert_eq!(usize::from(fb.received_count()), used);
        let floor_ref = reference_us.div_euclid(REFERENCE_TICK_US) * REFERENCE_TICK_US;
        assert_eq!(fb.reference_time_us(), floor_ref % REFERENCE_WRAP_US);
        let got: Vec<_> = fb.arrivals().collect();
        assert_eq!(got.len(), used);
        for ((seq, at), &(off, truth)) in got.iter().zip(used_pkts) {
            assert_eq!(*seq, base.wrapping_add(off), "case {case}");
            let err = (floor_ref + at - truth).abs();
            assert!(err <= DELTA_TICK_US / 2, "case {case}: off by {err} µs");
        }
        // Statuses between received ones are "not received".
        let received: std::collections::HashSet<u16> =
            used_pkts.iter().map(|p| base.wrapping_add(p.0)).collect();
        for (seq, s) in fb.packets() {
            assert_eq!(
                received.contains(&seq),
                matches!(s, PacketStatus::Received { .. })
            );
        }
    }
}

#[test]
fn builder_refuses_what_does_not_fit_and_respects_max_size() {
    let mut b = FeedbackBuilder::new(64);
    b.reset(1, 2, 10, 0, 0);
    let mut n = 0;
    while b.add_received(10 + n, i64::from(n) * 20_000) {
        n += 1;
    }
    assert!(n > 10, "{n}");
    let mut out = Vec::new();
    b.write(&mut out);
    assert!(out.len() <= 64);
    assert_eq!(TransportFeedback::parse(&out).unwrap().received_count(), n);
    // Going backwards or repeating is refused.
    b.reset(1, 2, 10, 0, 0);
    assert!(b.add_received(12, 100));
    assert!(!b.add_received(12, 200));
    assert!(!b.add_received(11, 200));
    // Delta beyond i16 ticks (> 8.19 s) refused.
    assert!(!b.add_received(13, 9_000_000));
    assert!(b.add_received(13, -8_000_000));
    // Empty builder writes nothing.
    b.reset(1, 2, 10, 0, 0);
    let mut out = Vec::new();
    assert!(!b.write(&mut out));
    assert!(out.is_empty());
}

#[test]
fn long_runs_use_run_length_chunks() {
    let mut b = FeedbackBuilder::new(1200);
    b.reset(1, 2, 0, 0, 0);
    for s in 0..1000u16 {
        assert!(b.add_received(s, i64::from(s) * 1000));
    }
    // 9000 lost then one more.
    assert!(b.add_received(10_000, 2_000_000));
    let mut out = Vec::new();
    b.write(&mut out);
    // 1000 small deltas + a handful of chunks.
    assert!(out.len() < HEADER_LEN + 1001 + 2 * 6 + 4, "{}", out.len());
    let fb = TransportFeedback::parse(&out).unwrap();
    assert_eq!(fb.status_count, 10_001);
    assert_eq!(fb.received_count(), 1001);
    assert_eq!(fb.packets().count(), 10_001);
}

/// Property: random bytes with a plausible header and every truncation of valid packets give a
/// typed error or a packet whose iteration terminates; never a panic.
#[test]
fn random_and_truncated_input_never_panics() {
    let mut rng = XorShift(0xdead_beef_cafe_f00d);
    for _ in 0..20_000 {
        let len = 20 + 4 * rng.below(40) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        buf[0] = 0x8f | (buf[0] & 0x20);
        buf[1] = 205;
        let words = if rng.below(4) == 0 {
            rng.below(64) as u16 // inconsistent with the buffer: must be rejected, not panic
        } else {
            ((len / 4) - 1) as u16
        };
        buf[2..4].copy_from_slice(&words.to_be_bytes());
        // Keep the status count small enough that the chunks might cover it.
        buf[14] = 0;
        buf[15] %= 64;
        if let Ok(fb) = TransportFeedback::parse(&buf) {
            assert_eq!(fb.packets().count(), usize::from(fb.status_count));
            assert_eq!(fb.arrivals().count(), usize::from(fb.received_count()));
        }
    }
    let mut b = FeedbackBuilder::new(1200);
    for case in 0..300 {
        b.reset(1, 2, case, 0, 0);
        let mut t = 0;
        for i in 0..(1 + rng.below(80) as u16) {
            t += rng.below(100_000) as i64;
            b.add_received(case.wrapping_add(i * (1 + rng.below(3) as u16)), t);
        }
        let mut v = Vec::new();
        b.write(&mut v);
        for cut in 0..v.len() {
            let mut p = v[..cut].to_vec();
            // Both with the original length field (BadLength) and with one that matches.
            assert!(TransportFeedback::parse(&p).is_err());
            if cut >= 20 {
                let words = (cut / 4 - 1) as u16;
                p.truncate(cut / 4 * 4);
                p[2..4].copy_from_slice(&words.to_be_bytes());
                if let Ok(fb) = TransportFeedback::parse(&p) {
                    assert_eq!(fb.packets().count(), usize::from(fb.status_count));
                }
            }
        }
    }
}
