//! The RFC 7983 demux of the shared UDP port (`bridge/src/transport/demux.rs`): `classify` and
//! `Demux` routing, fed a script of registrations, learned addresses, source filters and datagrams
//! (records: tag low 3 bits = operation, bits 4–5 = endpoint key or source address index).
//!
//! Properties: `classify` follows the RFC 7983 first-byte ranges (RTCP: second byte 192–223); a
//! routed datagram goes to a registered endpoint — a STUN request to the one whose ufrag starts its
//! USERNAME, anything else to the endpoint its source address was learned for; a datagram that is
//! not routed is counted as dropped exactly once, a routed one is not counted.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bridge::transport::stun::{Class, Message};
use bridge::transport::{Demux, DropCounters, PacketKind, classify};
use jitsi_rs_fuzz::Records;
use libfuzzer_sys::fuzz_target;

const ADDRS: [&str; 4] = [
    "127.0.0.1:40000",
    "127.0.0.1:40001",
    "[::1]:40000",
    "192.0.2.1:5000",
];

fn check_classify(b: &[u8]) -> PacketKind {
    let k = classify(b);
    let first = b.first().copied();
    match k {
        PacketKind::Stun => assert!(first.is_some_and(|f| f <= 3)),
        PacketKind::Dtls => assert!(first.is_some_and(|f| (20..=63).contains(&f))),
        PacketKind::Rtp => {
            assert!(first.is_some_and(|f| (128..=191).contains(&f)));
            assert!(b.get(1).is_some_and(|s| !(192..=223).contains(s)));
        }
        PacketKind::Rtcp => {
            assert!(first.is_some_and(|f| (128..=191).contains(&f)));
            assert!(b.get(1).is_some_and(|s| (192..=223).contains(s)));
        }
        PacketKind::Unknown => assert!(
            b.len() < 2 || !matches!(first, Some(0..=3) | Some(20..=63) | Some(128..=191)),
            "{b:02x?} is classified unknown"
        ),
    }
    k
}

fuzz_target!(|data: &[u8]| {
    let addrs: Vec<SocketAddr> = ADDRS.iter().map(|a| a.parse().unwrap()).collect();
    let counters = Arc::new(DropCounters::new());
    let mut demux: Demux<u8> = Demux::new(counters.clone());
    // What the demux was told: ufrag -> key, address -> key.
    let mut ufrags: HashMap<String, u8> = HashMap::new();
    let mut learned: HashMap<SocketAddr, u8> = HashMap::new();
    for (tag, payload) in Records::new(data) {
        let sel = usize::from((tag >> 4) & 3);
        let key = sel as u8;
        match tag & 7 {
            0 => {
                let ufrag = String::from_utf8_lossy(&payload[..payload.len().min(8)]).into_owned();
                demux.register(&ufrag, key);
                ufrags.insert(ufrag, key);
            }
            1 => {
                demux.unregister(&key);
                ufrags.retain(|_, k| *k != key);
                learned.retain(|_, k| *k != key);
            }
            2 => {
                let addr = addrs[usize::from(payload.first().copied().unwrap_or(0) & 3)];
                demux.learn(addr, &key);
                learned.insert(addr, key);
            }
            3 => demux.set_source_filter(if payload.first().is_some_and(|b| b & 1 != 0) {
                Some(|a: &SocketAddr| a.ip().is_loopback())
            } else {
                None
            }),
            _ => {
                let from = addrs[sel];
                let kind = check_classify(payload);
                let before = counters.total();
                let routed = demux.route(from, payload);
                let counted = counters.total() - before;
                match routed {
                    None => assert_eq!(counted, 1, "a dropped datagram is counted once"),
                    Some((k, routed_kind)) => {
                        assert_eq!(counted, 0, "a routed datagram is not counted");
                        assert_eq!(
                            routed_kind, kind,
                            "routed with another kind than classify's"
                        );
                        let stun_request = kind == PacketKind::Stun
                            && Message::parse(payload).is_ok_and(|m| m.class == Class::Request);
                        if stun_request {
                            let user = Message::parse(payload)
                                .ok()
                                .and_then(|m| m.username().map(str::to_owned))
                                .expect("routed STUN request has a USERNAME");
                            let local = user.split(':').next().unwrap_or_default();
                            assert_eq!(ufrags.get(local), Some(&k), "routed by the wrong ufrag");
                        } else {
                            assert_eq!(
                                learned.get(&from),
                                Some(&k),
                                "routed by an unknown address"
                            );
                        }
                    }
                }
            }
        }
    }
    assert_eq!(demux.endpoint_count(), ufrags.len());
});
