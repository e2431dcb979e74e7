//! Demultiplexing of the single UDP port: by protocol (RFC 7983 first byte) and by endpoint
//! (STUN USERNAME → local ufrag → endpoint, otherwise source address → endpoint). The first stage
//! of a datagram's path: [`Demux::route`] classifies it once and hands the kind on with the
//! endpoint key.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;

use super::counters::{DropCounters, DropReason};
use super::stun;

/// What a datagram carries, from its first byte (RFC 7983 §7; RTCP per RFC 5761 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    Stun,
    Dtls,
    Rtp,
    Rtcp,
    /// Empty, or a first byte no protocol here uses (ZRTP, TURN channels, QUIC, …).
    Unknown,
}

/// Classifies a datagram. RTP vs RTCP: second byte (M bit + payload type) in 192..=223 is RTCP
/// (SR 200, RR 201, SDES 202, BYE 203, APP 204, RTPFB 205, PSFB 206, XR 207 …), which RTP never
/// uses as payload type with rtcp-mux.
pub fn classify(b: &[u8]) -> PacketKind {
    match b.first() {
        Some(0..=3) => PacketKind::Stun,
        Some(20..=63) => PacketKind::Dtls,
        Some(128..=191) => match b.get(1) {
            Some(192..=223) => PacketKind::Rtcp,
            Some(_) => PacketKind::Rtp,
            None => PacketKind::Unknown,
        },
        _ => PacketKind::Unknown,
    }
}

/// Outstanding STUN transactions the demux remembers for routing answers (a full agent has a
/// few per endpoint at a time; the oldest are forgotten first).
const MAX_PENDING_TRANSACTIONS: usize = 4096;

/// Why [`Demux::lookup`] found no endpoint, and what else could route the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss<'d> {
    /// What to count if nobody takes it.
    pub reason: DropReason,
    pub by: MissBy<'d>,
}

/// What a datagram that missed could still be routed by on another worker of the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissBy<'d> {
    /// Nothing: garbage, filtered, or a STUN request without USERNAME.
    Nothing,
    /// A STUN request for this local ufrag.
    Ufrag(&'d str),
    /// Media or DTLS: its source address.
    Address,
    /// A STUN response or indication: its source address, then this transaction id.
    Transaction([u8; 12]),
}

/// The port-level routing table. Generic over the endpoint key so the bridge can use its own ids.
///
/// Endpoints register their local ufrag; an address is learnt only from an authenticated packet
/// from it — a STUN message with valid MESSAGE-INTEGRITY that the endpoint's ICE agent accepted
/// ([`Demux::learn`], called by `PortState`) — never from what the bridge sends: a participant
/// picks its candidates, and sending checks to another endpoint's address must not move that
/// address. Answers to our own checks (STUN responses carry no USERNAME) from an address not
/// learnt yet are routed by their transaction id ([`Demux::expect_response`]).
#[derive(Debug)]
pub struct Demux<K> {
    by_ufrag: HashMap<String, K>,
    by_addr: HashMap<SocketAddr, K>,
    /// Transaction ids of our outstanding checks → the endpoint that sent them (FIFO-bounded).
    by_transaction: HashMap<[u8; 12], K>,
    transactions: VecDeque<[u8; 12]>,
    counters: Arc<DropCounters>,
    source_filter: Option<fn(&SocketAddr) -> bool>,
}

impl<K: Clone + Eq + Hash> Demux<K> {
    pub fn new(counters: Arc<DropCounters>) -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_transaction: HashMap::new(),
            transactions: VecDeque::new(),
            counters,
            source_filter: None,
        }
    }

    /// Only accept datagrams whose source passes `filter` (an ACL; tests use it to keep ICE
    /// on loopback). Refused datagrams are counted as `source_filtered`.
    pub fn set_source_filter(&mut self, filter: Option<fn(&SocketAddr) -> bool>) {
        self.source_filter = filter;
    }

    pub fn counters(&self) -> &Arc<DropCounters> {
        &self.counters
    }

    /// Registers an endpoint under its local ICE ufrag.
    pub fn register(&mut self, local_ufrag: &str, key: K) {
        self.by_ufrag.insert(local_ufrag.to_owned(), key);
    }

    /// Forgets an endpoint: its ufrag and every address that pointed to it. Returns the ufrags
    /// and addresses it had (for the workers' shared routes, `handoff.rs`).
    pub fn unregister(&mut self, key: &K) -> (Vec<String>, Vec<SocketAddr>) {
        let mut ufrags = Vec::new();
        let mut addrs = Vec::new();
        self.by_ufrag.retain(|u, k| {
            let keep = k != key;
            if !keep {
                ufrags.push(u.clone());
            }
            keep
        });
        self.by_addr.retain(|a, k| {
            let keep = k != key;
            if !keep {
                addrs.push(*a);
            }
            keep
        });
        self.by_transaction.retain(|_, k| k != key);
        let live = &self.by_transaction;
        self.transactions.retain(|t| live.contains_key(t));
        (ufrags, addrs)
    }

    /// Forgets what an in-place ICE restart dropped of `key`: an old generation's local ufrag and
    /// addresses no live generation validated (entries another endpoint took over are kept).
    pub fn forget(&mut self, key: &K, ufrags: &[String], addrs: &[SocketAddr]) {
        for u in ufrags {
            if self.by_ufrag.get(u) == Some(key) {
                self.by_ufrag.remove(u);
            }
        }
        for a in addrs {
            if self.by_addr.get(a) == Some(key) {
                self.by_addr.remove(a);
            }
        }
    }

    /// Associates `addr` with `key`: call only after an authenticated packet of `key` came from
    /// `addr` (STUN integrity verified by its ICE agent). An address already owned by another
    /// endpoint is moved: the latest authenticated user wins, like a NAT rebinding. Returns
    /// whether the mapping changed.
    pub fn learn(&mut self, addr: SocketAddr, key: &K) -> bool {
        match self.by_addr.get(&addr) {
            Some(k) if k == key => false,
            _ => {
                self.by_addr.insert(addr, key.clone());
                true
            }
        }
    }

    /// `key` sent a STUN request with `transaction_id`: route its answer to `key` even from an
    /// address not learnt yet (the endpoint's ICE agent then checks the answer's integrity).
    pub fn expect_response(&mut self, transaction_id: [u8; 12], key: &K) {
        if self.transactions.len() >= MAX_PENDING_TRANSACTIONS
            && let Some(old) = self.transactions.pop_front()
        {
            self.by_transaction.remove(&old);
        }
        if self
            .by_transaction
            .insert(transaction_id, key.clone())
            .is_none()
        {
            self.transactions.push_back(transaction_id);
        }
    }

    /// Which endpoint `datagram` from `from` belongs to, and what it carries. On `None` the
    /// datagram was counted as dropped and must be discarded.
    pub fn route(&self, from: SocketAddr, datagram: &[u8]) -> Option<(K, PacketKind)> {
        match self.lookup(from, datagram) {
            Ok(found) => Some(found),
            Err(miss) => {
                self.counters.count(miss.reason);
                None
            }
        }
    }

    /// [`route`](Self::route) without counting: a miss says why, and what another worker of the
    /// port could route it by (`handoff.rs`); the caller counts it if nobody takes it.
    pub fn lookup<'d>(
        &self,
        from: SocketAddr,
        datagram: &'d [u8],
    ) -> Result<(K, PacketKind), Miss<'d>> {
        let miss = |reason, by| Err(Miss { reason, by });
        if let Some(f) = self.source_filter
            && !f(&from)
        {
            return miss(DropReason::SourceFiltered, MissBy::Nothing);
        }
        let kind = classify(datagram);
        match kind {
            PacketKind::Unknown => miss(DropReason::UnknownProtocol, MissBy::Nothing),
            PacketKind::Stun => {
                let Ok(msg) = stun::Message::parse(datagram) else {
                    return miss(DropReason::StunMalformed, MissBy::Nothing);
                };
                if msg.class == stun::Class::Request {
                    // USERNAME is "<our ufrag>:<their ufrag>".
                    let Some(user) = msg.username() else {
                        return miss(DropReason::StunBadIntegrity, MissBy::Nothing);
                    };
                    let local = user.split(':').next().unwrap_or_default();
                    match self.by_ufrag.get(local) {
                        Some(k) => Ok((k.clone(), kind)),
                        None => miss(DropReason::StunUnknownUfrag, MissBy::Ufrag(local)),
                    }
                } else if let Some(k) = self.by_addr.get(&from) {
                    Ok((k.clone(), kind))
                } else if let Some(k) = self.by_transaction.get(&msg.transaction_id) {
                    Ok((k.clone(), kind))
                } else {
                    miss(
                        DropReason::UnknownAddress,
                        MissBy::Transaction(msg.transaction_id),
                    )
                }
            }
            PacketKind::Dtls | PacketKind::Rtp | PacketKind::Rtcp => {
                match self.by_addr.get(&from) {
                    Some(k) => Ok((k.clone(), kind)),
                    None => miss(DropReason::UnknownAddress, MissBy::Address),
                }
            }
        }
    }

    pub fn endpoint_count(&self) -> usize {
        self.by_ufrag.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7983_ranges() {
        assert_eq!(classify(&[]), PacketKind::Unknown);
        for b in 0..=3u8 {
            assert_eq!(classify(&[b, 1]), PacketKind::Stun);
        }
        for b in 4..=19u8 {
            assert_eq!(classify(&[b, 1]), PacketKind::Unknown, "{b}");
        }
        for b in 20..=63u8 {
            assert_eq!(classify(&[b, 1]), PacketKind::Dtls);
        }
        for b in 64..=127u8 {
            assert_eq!(classify(&[b, 1]), PacketKind::Unknown, "{b}");
        }
        for b in 128..=191u8 {
            assert_eq!(classify(&[b, 96]), PacketKind::Rtp);
            assert_eq!(classify(&[b, 96 | 0x80]), PacketKind::Rtp); // marker bit set
            assert_eq!(classify(&[b, 200]), PacketKind::Rtcp); // SR
            assert_eq!(classify(&[b, 206]), PacketKind::Rtcp); // PSFB
            assert_eq!(classify(&[b]), PacketKind::Unknown); // truncated
        }
        for b in 192..=255u8 {
            assert_eq!(classify(&[b, 1]), PacketKind::Unknown);
        }
    }

    fn req(user: &str) -> Vec<u8> {
        let mut buf = Vec::new();
        stun::Builder::new(
            &mut buf,
            stun::Class::Request,
            stun::METHOD_BINDING,
            &[1; 12],
        )
        .username(user)
        .integrity(b"x")
        .fingerprint();
        buf
    }

    #[test]
    fn routes_by_ufrag_then_address_and_counts_drops() {
        let counters = Arc::new(DropCounters::new());
        let mut d: Demux<u32> = Demux::new(counters.clone());
        d.register("aaaa", 1);
        d.register("bbbb", 2);
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        assert_eq!(d.route(a, &req("aaaa:zz")), Some((1, PacketKind::Stun)));
        assert_eq!(d.route(a, &req("bbbb:zz")).map(|r| r.0), Some(2));
        assert_eq!(d.route(a, &req("cccc:zz")), None);
        assert_eq!(counters.get(DropReason::StunUnknownUfrag), 1);
        // Media from an unknown address.
        assert_eq!(d.route(a, &[0x80, 96, 0, 1]), None);
        assert_eq!(d.route(a, &[22, 254, 253]), None);
        assert_eq!(counters.get(DropReason::UnknownAddress), 2);
        d.learn(a, &1);
        d.learn(b, &2);
        assert_eq!(d.route(a, &[0x80, 96, 0, 1]), Some((1, PacketKind::Rtp)));
        assert_eq!(d.route(b, &[0x80, 200, 0, 1]), Some((2, PacketKind::Rtcp)));
        assert_eq!(d.route(b, &[22, 254, 253]), Some((2, PacketKind::Dtls)));
        // Garbage and truncated STUN.
        assert_eq!(d.route(a, &[]), None);
        assert_eq!(d.route(a, &[0xFF; 40]), None);
        assert_eq!(counters.get(DropReason::UnknownProtocol), 2);
        let r = req("aaaa:zz");
        assert_eq!(d.route(a, &r[..r.len() - 3]), None);
        assert_eq!(d.route(a, &r[..10]), None);
        assert_eq!(counters.get(DropReason::StunMalformed), 2);
        d.set_source_filter(Some(|a| a.ip().is_loopback()));
        assert_eq!(
            d.route("192.0.2.9:1000".parse().unwrap(), &req("aaaa:zz")),
            None
        );
        assert_eq!(counters.get(DropReason::SourceFiltered), 1);
        assert_eq!(d.route(a, &req("aaaa:zz")).map(|r| r.0), Some(1));
        d.unregister(&1);
        assert_eq!(d.route(a, &[0x80, 96, 0, 1]), None);
        assert_eq!(d.route(a, &req("aaaa:zz")), None);
        assert_eq!(d.route(b, &[0x80, 96, 0, 1]).map(|r| r.0), Some(2));
    }
}
