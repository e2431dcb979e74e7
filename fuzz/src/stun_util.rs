//! One endpoint's transport as the bridge builds it, with fixed ICE credentials, and STUN helpers:
//! the peer's nominating check, and re-signing a fuzzed message with the right password so that it
//! gets past MESSAGE-INTEGRITY into the ICE agent.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bridge::transport::stun::{self, Builder, Class, METHOD_BINDING, Message};
use bridge::transport::{
    DropCounters, DtlsIdentity, EndpointTransport, Fingerprint, IceConfig, IceCredentials, IceMode,
    RemoteCandidate, RemoteTransport, TransportConfig,
};

pub const LOCAL_UFRAG: &str = "brdg";
pub const LOCAL_PWD: &str = "bridgepasswordbridgepass";
pub const REMOTE_UFRAG: &str = "peer";
pub const REMOTE_PWD: &str = "peerpasswordpeerpassword";
pub const PEER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 1), 40000));

/// The bridge's certificate: generated once per process, like the bridge does.
pub fn identity() -> &'static DtlsIdentity {
    static ID: OnceLock<DtlsIdentity> = OnceLock::new();
    ID.get_or_init(|| DtlsIdentity::generate().expect("DTLS identity"))
}

/// A fresh endpoint transport with the local credentials above.
pub fn endpoint(mode: IceMode) -> (EndpointTransport, Arc<DropCounters>) {
    let counters = Arc::new(DropCounters::new());
    let cfg = TransportConfig {
        ice: IceConfig {
            mode,
            ..IceConfig::default()
        },
        ..TransportConfig::default()
    };
    let local = IceCredentials {
        ufrag: LOCAL_UFRAG.into(),
        pwd: LOCAL_PWD.into(),
    };
    let ep = EndpointTransport::new(local, identity(), cfg, counters.clone()).expect("endpoint");
    (ep, counters)
}

/// The peer's signalled transport: credentials, `fingerprints`, and [`PEER`] as its candidate.
pub fn remote(fingerprints: Vec<Fingerprint>) -> RemoteTransport {
    RemoteTransport {
        ice: IceCredentials {
            ufrag: REMOTE_UFRAG.into(),
            pwd: REMOTE_PWD.into(),
        },
        fingerprints,
        candidates: vec![RemoteCandidate {
            addr: PEER,
            priority: 2_130_706_431,
        }],
    }
}

/// A nominating Binding request from the (controlling) peer, as a browser sends it.
pub fn nominating_check(txid: u8) -> Vec<u8> {
    let mut buf = Vec::new();
    Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[txid; 12])
        .username(&format!("{LOCAL_UFRAG}:{REMOTE_UFRAG}"))
        .priority(1_853_824_767)
        .ice_controlling(0x1234_5678_9abc_def0)
        .use_candidate()
        .integrity(LOCAL_PWD.as_bytes())
        .fingerprint();
    buf
}

/// Rebuilds `msg` with the same class, method and attributes (minus any MESSAGE-INTEGRITY and
/// FINGERPRINT) and its transaction id (or `txid`), then signs it with `key` and appends a
/// FINGERPRINT.
pub fn resign(msg: &Message<'_>, txid: Option<[u8; 12]>, key: &[u8], out: &mut Vec<u8>) {
    let txid = txid.unwrap_or(msg.transaction_id);
    let mut b = Builder::new(out, msg.class, msg.method, &txid);
    for a in msg.attributes() {
        if a.typ != stun::attr::MESSAGE_INTEGRITY && a.typ != stun::attr::FINGERPRINT {
            b.attr(a.typ, a.value);
        }
    }
    b.integrity(key).fingerprint();
}

/// An endpoint whose ICE has validated [`PEER`] (ICE-lite, nominated by the peer's check), with the
/// transmits and events of that step drained.
pub fn validated_endpoint(now: Instant) -> (EndpointTransport, Arc<DropCounters>) {
    let (mut ep, counters) = endpoint(IceMode::Lite);
    ep.set_remote(now, remote(vec![]));
    ep.handle_datagram(now, PEER, &nominating_check(5));
    while ep.poll_transmit().is_some() {}
    while ep.poll_event().is_some() {}
    (ep, counters)
}
