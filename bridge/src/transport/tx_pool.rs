//! The port's transmit buffers. Every datagram the port sends waits for the flush in one of them
//! (SRTP/SRTCP encrypted in it, [`EndpointTransport::protect_in_place`]; a forwarded packet
//! is encrypted in the buffer the core built it in, which joins the pool in exchange for one of its
//! buffers, [`PortState::send_rtp_buffer`]), and comes back after the flush for the next ones: once
//! warm, sending a packet allocates nothing.
//!
//! [`EndpointTransport::protect_in_place`]: super::endpoint::EndpointTransport::protect_in_place
//! [`PortState::send_rtp_buffer`]: super::shell::PortState::send_rtp_buffer

/// A transmit buffer: a datagram as the port sends it.
pub type TxBuf = Vec<u8>;

/// A new buffer's capacity: a forwarded packet (≤ 1200 B from browsers) plus the SRTP tag fits
/// an Ethernet MTU. A larger datagram grows its buffer, which then stays larger.
pub const TX_BUFFER: usize = 1500;

/// Free buffers kept at most (≈ 6 MB): enough for a flush of a full receive batch fanned out to
/// a hundred receivers; past it, returned buffers are freed.
pub const MAX_FREE: usize = 4096;

/// Free transmit buffers.
#[derive(Debug, Default)]
pub struct TxPool {
    free: Vec<TxBuf>,
}

impl TxPool {
    /// An empty buffer (a free one, or a new one while the pool warms up).
    pub fn take(&mut self) -> TxBuf {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(TX_BUFFER))
    }

    /// Takes a buffer back for reuse.
    pub fn give(&mut self, mut buf: TxBuf) {
        if self.free.len() < MAX_FREE {
            buf.clear();
            self.free.push(buf);
        }
    }

    /// Free buffers held now.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_cleared_with_their_memory() {
        let mut pool = TxPool::default();
        let mut b = pool.take();
        assert!(b.capacity() >= TX_BUFFER);
        b.extend_from_slice(&[7; 1200]);
        let ptr = b.as_ptr();
        pool.give(b);
        assert_eq!(pool.free(), 1);
        let b = pool.take();
        assert!(b.is_empty());
        assert_eq!(b.as_ptr(), ptr, "the same memory");
        for _ in 0..MAX_FREE + 10 {
            pool.give(Vec::new());
        }
        assert_eq!(pool.free(), MAX_FREE);
    }
}
