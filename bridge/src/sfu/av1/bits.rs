//! MSB-first bit reading and writing for the Dependency Descriptor (AV1 RTP specification A.8.2:
//! `f(n)` reads bits high to low, `ns(n)` is the non-symmetric integer). Reads past the end are
//! errors, never panics; writes past the end of the output are errors too.

use super::error::DdError;

/// Bytes of a descriptor read through a padded copy (every per-packet descriptor; structures are
/// longer and read from the slice).
const SMALL: usize = 32;

/// Reads bits from a byte slice, most significant bit first.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    buf: &'a [u8],
    /// `buf` followed by zeros when it is short: every 8-byte window is in range.
    small: [u8; SMALL + 8],
    /// Position in bits.
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        let mut small = [0u8; SMALL + 8];
        if buf.len() <= SMALL {
            small[..buf.len()].copy_from_slice(buf);
        }
        BitReader { buf, small, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() * 8 - self.pos
    }

    /// `f(n)`, `n <= 32`.
    #[inline]
    pub fn bits(&mut self, n: u32) -> Result<u32, DdError> {
        debug_assert!(n <= 32);
        if n == 0 {
            return Ok(0);
        }
        if n as usize > self.remaining() {
            return Err(DdError::Truncated);
        }
        // A 64-bit window at the current byte holds the ≤ 7 + 32 bits needed.
        let i = self.pos / 8;
        let w = if self.buf.len() <= SMALL {
            &self.small[i..i + 8]
        } else if let Some(w) = self.buf.get(i..i + 8) {
            w
        } else {
            // The last bytes of a long descriptor (a structure): zero-pad them.
            let tail = &self.buf[i..];
            self.small = [0; SMALL + 8];
            self.small[..tail.len()].copy_from_slice(tail);
            &self.small[..8]
        };
        let word = u64::from_be_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        let v = (word << (self.pos % 8)) >> (64 - n);
        self.pos += n as usize;
        Ok(v as u32)
    }

    #[inline]
    pub fn bit(&mut self) -> Result<bool, DdError> {
        Ok(self.bits(1)? == 1)
    }

    /// `ns(n)`: a value in `0..n` (0 when `n <= 1`, reading nothing).
    pub fn ns(&mut self, n: u32) -> Result<u32, DdError> {
        if n <= 1 {
            return Ok(0);
        }
        let w = 32 - n.leading_zeros();
        let m = (1u32 << w) - n;
        let v = self.bits(w - 1)?;
        if v < m {
            return Ok(v);
        }
        let extra = self.bits(1)?;
        Ok((v << 1) - m + extra)
    }
}

/// Writes bits into a byte slice, most significant bit first.
#[derive(Debug)]
pub struct BitWriter<'a> {
    buf: &'a mut [u8],
    /// Bits written (flushed or pending).
    pos: usize,
    /// Pending bits (fewer than 8), right-aligned.
    acc: u64,
    pending: u32,
}

impl<'a> BitWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        BitWriter {
            buf,
            pos: 0,
            acc: 0,
            pending: 0,
        }
    }

    #[cfg(test)]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Writes the low `n` bits of `v` (`n <= 32`).
    #[inline]
    pub fn bits(&mut self, n: u32, v: u32) -> Result<(), DdError> {
        debug_assert!(n <= 32);
        if self.pos + n as usize > self.buf.len() * 8 {
            return Err(DdError::OutputTooSmall);
        }
        let v = u64::from(v) & ((1u64 << n) - 1);
        self.acc = (self.acc << n) | v;
        self.pending += n;
        self.pos += n as usize;
        while self.pending >= 8 {
            self.pending -= 8;
            let i = (self.pos - self.pending as usize) / 8 - 1;
            self.buf[i] = (self.acc >> self.pending) as u8;
        }
        self.acc &= (1u64 << self.pending) - 1;
        Ok(())
    }

    #[inline]
    pub fn bit(&mut self, b: bool) -> Result<(), DdError> {
        self.bits(1, u32::from(b))
    }

    /// `write_ns(n, v)` (nothing for `n <= 1`).
    pub fn ns(&mut self, n: u32, v: u32) -> Result<(), DdError> {
        if n <= 1 {
            return Ok(());
        }
        let w = 32 - n.leading_zeros();
        let m = (1u32 << w) - n;
        if v < m {
            self.bits(w - 1, v)
        } else {
            self.bits(w, v + m)
        }
    }

    /// Pads with zero bits to a byte boundary and returns the length in bytes.
    pub fn finish(mut self) -> Result<usize, DdError> {
        let pad = (8 - self.pos % 8) % 8;
        self.bits(pad as u32, 0)?;
        Ok(self.pos / 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_width_round_trip() {
        let mut buf = [0u8; 8];
        let mut w = BitWriter::new(&mut buf);
        w.bits(1, 1).unwrap();
        w.bits(6, 0x2a).unwrap();
        w.bits(16, 0xbeef).unwrap();
        w.bits(32, 0xdead_beef).unwrap();
        w.bits(3, 5).unwrap();
        assert_eq!(w.finish().unwrap(), 8);
        let mut r = BitReader::new(&buf);
        assert_eq!(r.bits(1).unwrap(), 1);
        assert_eq!(r.bits(6).unwrap(), 0x2a);
        assert_eq!(r.bits(16).unwrap(), 0xbeef);
        assert_eq!(r.bits(32).unwrap(), 0xdead_beef);
        assert_eq!(r.bits(3).unwrap(), 5);
        assert_eq!(r.remaining(), 6);
        assert_eq!(r.bits(7), Err(DdError::Truncated));
    }

    #[test]
    fn ns_matches_the_spec_table() {
        // AV1 RTP spec A.8.2, n = 5: 0 → 00, 1 → 01, 2 → 10, 3 → 110, 4 → 111.
        let want = [(0, "00"), (1, "01"), (2, "10"), (3, "110"), (4, "111")];
        for (v, code) in want {
            let mut buf = [0u8; 1];
            let mut w = BitWriter::new(&mut buf);
            w.ns(5, v).unwrap();
            assert_eq!(w.position(), code.len(), "{v}");
            w.finish().unwrap();
            let bits = u8::from_str_radix(code, 2).unwrap() << (8 - code.len());
            assert_eq!(buf[0], bits, "{v}");
            assert_eq!(BitReader::new(&buf).ns(5).unwrap(), v);
        }
        // Every n up to 33 and every value round-trips.
        for n in 1..=33u32 {
            for v in 0..n {
                let mut buf = [0u8; 2];
                let mut w = BitWriter::new(&mut buf);
                w.ns(n, v).unwrap();
                w.finish().unwrap();
                assert_eq!(BitReader::new(&buf).ns(n).unwrap(), v, "n={n} v={v}");
            }
        }
    }

    #[test]
    fn random_widths_round_trip_across_byte_boundaries() {
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..200 {
            let fields: Vec<(u32, u32)> = (0..40)
                .map(|_| {
                    let n = next() % 33;
                    let v = if n == 0 { 0 } else { next() >> (32 - n) };
                    (n, v)
                })
                .collect();
            let mut buf = [0u8; 200];
            let mut w = BitWriter::new(&mut buf);
            for &(n, v) in &fields {
                w.bits(n, v).unwrap();
            }
            let len = w.finish().unwrap();
            let mut r = BitReader::new(&buf[..len]);
            for &(n, v) in &fields {
                assert_eq!(r.bits(n).unwrap(), v, "{n}");
            }
            assert!(r.remaining() < 8);
        }
    }

    #[test]
    fn writing_past_the_end_is_an_error() {
        let mut buf = [0u8; 1];
        let mut w = BitWriter::new(&mut buf);
        w.bits(7, 0).unwrap();
        assert_eq!(w.bits(2, 0), Err(DdError::OutputTooSmall));
    }
}
