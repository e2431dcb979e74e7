//! Several workers on one UDP port: routing a datagram that the kernel gave to a worker which
//! does not own its endpoint.
//!
//! Each worker has its own `SO_REUSEPORT` socket bound to the same address ([`bind_group`]); the
//! kernel picks one socket per 4-tuple (a hash), so a participant's datagrams all land on one
//! socket, which is not necessarily the one of the worker owning its conference. A worker first
//! routes with its own [`Demux`](super::Demux) (its endpoints); on a miss it asks [`Routes`], the
//! port's shared directory of who owns which ufrag, address and outstanding STUN transaction, and
//! hands the datagram to the owner: the datagrams of one receive batch for one owner go as one
//! [`HandedOff`] message (one channel send per batch and destination, never per datagram). The
//! owner processes them as if received and answers from its own socket (same local address and
//! port, so the peer sees one source).
//!
//! The directory is written on the control path (an endpoint added or removed, an address
//! authenticated, a STUN request sent) under a `RwLock`. The per-datagram path never takes it for
//! media: each worker keeps a private cache of address → owner ([`RouteCache`]), emptied when the
//! directory's generation (one relaxed atomic load per miss) says it changed.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use super::demux::MissBy;

/// A worker's index on the port.
pub type WorkerId = u16;

/// Outstanding STUN transactions the directory remembers (oldest forgotten first).
const MAX_SHARED_TRANSACTIONS: usize = 16_384;

#[derive(Debug, Default)]
struct Tables {
    by_ufrag: HashMap<String, WorkerId>,
    by_addr: HashMap<SocketAddr, WorkerId>,
    by_transaction: HashMap<[u8; 12], WorkerId>,
    transactions: VecDeque<[u8; 12]>,
}

/// The port's shared directory: which worker owns a local ufrag, a remote address (learnt only
/// from authenticated STUN, as in the demux) and an outstanding STUN transaction.
#[derive(Debug, Default)]
pub struct Routes {
    tables: RwLock<Tables>,
    /// Bumped on every change that can invalidate a cached address.
    generation: AtomicU64,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Worker `w` owns an endpoint with local ufrag `ufrag`.
    pub fn register(&self, ufrag: &str, w: WorkerId) {
        self.write().by_ufrag.insert(ufrag.to_owned(), w);
    }

    /// Worker `w` authenticated `addr` for one of its endpoints.
    pub fn learn(&self, addr: SocketAddr, w: WorkerId) {
        let changed = self.write().by_addr.insert(addr, w) != Some(w);
        if changed {
            self.bump();
        }
    }

    /// Worker `w` sent a STUN request with this transaction id: its answer goes to `w`.
    pub fn expect_response(&self, transaction_id: [u8; 12], w: WorkerId) {
        let mut t = self.write();
        if t.transactions.len() >= MAX_SHARED_TRANSACTIONS
            && let Some(old) = t.transactions.pop_front()
        {
            t.by_transaction.remove(&old);
        }
        if t.by_transaction.insert(transaction_id, w).is_none() {
            t.transactions.push_back(transaction_id);
        }
    }

    /// Worker `w` removed an endpoint with these ufrags and addresses (entries another worker
    /// took over since are kept).
    pub fn forget(&self, ufrags: &[String], addrs: &[SocketAddr], w: WorkerId) {
        if ufrags.is_empty() && addrs.is_empty() {
            return;
        }
        {
            let mut t = self.write();
            for u in ufrags {
                if t.by_ufrag.get(u) == Some(&w) {
                    t.by_ufrag.remove(u);
                }
            }
            for a in addrs {
                if t.by_addr.get(a) == Some(&w) {
                    t.by_addr.remove(a);
                }
            }
        }
        self.bump();
    }

    /// Who owns what a datagram from `from` that missed locally could be routed by.
    pub fn owner(&self, from: SocketAddr, by: MissBy<'_>) -> Option<WorkerId> {
        let t = self.read();
        match by {
            MissBy::Nothing => None,
            MissBy::Ufrag(u) => t.by_ufrag.get(u).copied(),
            MissBy::Address => t.by_addr.get(&from).copied(),
            MissBy::Transaction(id) => t
                .by_addr
                .get(&from)
                .or_else(|| t.by_transaction.get(&id))
                .copied(),
        }
    }

    /// Entries (tests and leak checks): ufrags, addresses.
    pub fn len(&self) -> (usize, usize) {
        let t = self.read();
        (t.by_ufrag.len(), t.by_addr.len())
    }
}

/// A worker's private cache of [`Routes`] lookups by source address (media and DTLS: the
/// per-datagram case), so a handed-off media datagram costs a hash lookup and no shared write.
/// Misses are cached too (a flood from an unknown address takes no lock per datagram); the cache
/// empties when the directory's generation moves.
#[derive(Debug, Default)]
pub struct RouteCache {
    generation: u64,
    by_addr: HashMap<SocketAddr, Option<WorkerId>>,
}

/// Bound on cached addresses (cleared when full).
const MAX_CACHED: usize = 65_536;

impl RouteCache {
    /// The owner of a datagram from `from` that missed this worker's demux for reason `by`.
    pub fn owner(&mut self, routes: &Routes, from: SocketAddr, by: MissBy<'_>) -> Option<WorkerId> {
        match by {
            MissBy::Nothing => None,
            MissBy::Address => {
                let g = routes.generation();
                if g != self.generation {
                    self.by_addr.clear();
                    self.generation = g;
                }
                if let Some(w) = self.by_addr.get(&from) {
                    return *w;
                }
                let w = routes.owner(from, by);
                if self.by_addr.len() >= MAX_CACHED {
                    self.by_addr.clear();
                }
                self.by_addr.insert(from, w);
                w
            }
            // STUN: rare (checks every few seconds), straight to the directory.
            MissBy::Ufrag(_) | MissBy::Transaction(_) => routes.owner(from, by),
        }
    }
}

/// Datagrams of one receive batch for one other worker: the payloads back to back in one buffer.
#[derive(Debug, Default)]
pub struct HandedOff {
    data: Vec<u8>,
    datagrams: Vec<(SocketAddr, u32)>,
}

impl HandedOff {
    pub fn push(&mut self, from: SocketAddr, datagram: &[u8]) {
        if self.datagrams.is_empty() {
            // Two allocations per batch and destination, sized for a batch of media.
            self.data.reserve(super::udp::BATCH * 1280);
            self.datagrams.reserve(super::udp::BATCH);
        }
        self.data.extend_from_slice(datagram);
        self.datagrams
            .push((from, u32::try_from(datagram.len()).unwrap_or(u32::MAX)));
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// The datagrams in arrival order.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        let mut at = 0usize;
        self.datagrams.iter().filter_map(move |&(from, len)| {
            let d = self.data.get(at..at + len as usize)?;
            at += len as usize;
            Some((from, d))
        })
    }
}

/// Binds `n` UDP sockets to `addr` for the `n` workers of one port: with `SO_REUSEPORT` when
/// `n > 1` (port 0: the first socket picks the port, the others join it), plain otherwise (so a
/// second bridge on the same port still fails to start). Non-blocking, ready for tokio.
pub fn bind_group(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut sockets = Vec::with_capacity(n.max(1));
    let mut at = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP))?;
        if n > 1 {
            s.set_reuse_port(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        let s: std::net::UdpSocket = s.into();
        at = s.local_addr()?;
        sockets.push(s);
    }
    Ok(sockets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// The directory answers by what missed: ufrag for a STUN request, address for media, address
    /// then transaction for a STUN response; forgetting keeps what another worker took over.
    #[test]
    fn routes_answer_by_ufrag_address_and_transaction() {
        let r = Routes::new();
        r.register("uf1", 1);
        r.learn(a(1000), 1);
        r.expect_response([7; 12], 2);
        assert_eq!(r.owner(a(9), MissBy::Ufrag("uf1")), Some(1));
        assert_eq!(r.owner(a(9), MissBy::Ufrag("nope")), None);
        assert_eq!(r.owner(a(1000), MissBy::Address), Some(1));
        assert_eq!(r.owner(a(1001), MissBy::Address), None);
        assert_eq!(r.owner(a(1001), MissBy::Transaction([7; 12])), Some(2));
        assert_eq!(r.owner(a(1000), MissBy::Transaction([7; 12])), Some(1));
        assert_eq!(r.owner(a(1000), MissBy::Nothing), None);
        // The address moved to worker 0 (a NAT rebinding); worker 1 forgetting keeps it.
        r.learn(a(1000), 0);
        r.forget(&["uf1".into()], &[a(1000)], 1);
        assert_eq!(r.owner(a(1000), MissBy::Address), Some(0));
        assert_eq!(r.owner(a(9), MissBy::Ufrag("uf1")), None);
    }

    /// The cache serves repeated media misses without the directory and follows its changes.
    #[test]
    fn the_cache_follows_the_directory() {
        let r = Routes::new();
        let mut c = RouteCache::default();
        assert_eq!(c.owner(&r, a(1), MissBy::Address), None);
        r.learn(a(1), 3);
        assert_eq!(
            c.owner(&r, a(1), MissBy::Address),
            Some(3),
            "a learn invalidates"
        );
        r.forget(&[], &[a(1)], 3);
        assert_eq!(
            c.owner(&r, a(1), MissBy::Address),
            None,
            "a forget invalidates"
        );
    }

    #[test]
    fn a_handed_off_batch_keeps_datagrams_and_order() {
        let mut h = HandedOff::default();
        h.push(a(1), b"one");
        h.push(a(2), b"");
        h.push(a(3), b"three");
        let got: Vec<_> = h.datagrams().map(|(f, d)| (f, d.to_vec())).collect();
        assert_eq!(
            got,
            vec![
                (a(1), b"one".to_vec()),
                (a(2), vec![]),
                (a(3), b"three".to_vec())
            ]
        );
    }

    /// Two sockets share one port; a single socket does not let a second one in.
    #[test]
    fn a_group_shares_one_port() {
        let g = bind_group(a(0), 2).unwrap();
        let port = g[0].local_addr().unwrap();
        assert_eq!(g[1].local_addr().unwrap(), port);
        let single = bind_group(a(0), 1).unwrap();
        let taken = single[0].local_addr().unwrap();
        assert!(bind_group(taken, 1).is_err());
        assert!(
            bind_group(taken, 2).is_err(),
            "the lone socket has no SO_REUSEPORT"
        );
    }
}
