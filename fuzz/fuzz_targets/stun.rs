//! STUN as the bridge receives it (`bridge/src/transport/stun.rs`, then the ICE agent and the port
//! demux). Input: a mode byte, then one datagram.
//!
//! Properties: parsing never panics; a parsed message rebuilt attribute by attribute parses back to
//! the same class, method, transaction id and attributes; every accessor is total. The datagram then
//! reaches an endpoint's ICE agent (lite or full, with or without the peer's credentials), optionally
//! re-signed with the right password (mode bit 0) so that it gets past MESSAGE-INTEGRITY, or turned
//! into the answer to the agent's own check (mode bit 3: its transaction id, signed with the peer's
//! password). Whatever the agent sends back must be well-formed STUN to the peer, and the demux may
//! route it only to the registered endpoint.
#![no_main]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::transport::stun::{Builder, Message, looks_like_stun};
use bridge::transport::{Demux, DropCounters, IceMode, PacketKind, classify};
use jitsi_rs_fuzz::stun_util::{
    LOCAL_PWD, LOCAL_UFRAG, PEER, REMOTE_PWD, endpoint, remote, resign,
};
use libfuzzer_sys::fuzz_target;

fn check_message(raw: &[u8]) -> Option<Message<'_>> {
    let m = Message::parse(raw).ok()?;
    // STUN's message type allows a first byte up to 0x3f; on the shared port RFC 7983 gives 20–63
    // to DTLS, so only 0–3 is STUN there.
    if raw[0] <= 3 {
        assert!(looks_like_stun(raw), "parsed but not STUN-looking");
        assert_eq!(classify(raw), PacketKind::Stun);
    }
    let _ = (
        m.username(),
        m.priority(),
        m.use_candidate(),
        m.ice_controlling(),
        m.ice_controlled(),
        m.error_code(),
        m.xor_mapped_address(),
        m.has_integrity(),
        m.has_fingerprint(),
        m.verify_integrity(LOCAL_PWD.as_bytes()),
        m.verify_fingerprint(),
    );
    let mut buf = Vec::new();
    {
        let mut b = Builder::new(&mut buf, m.class, m.method, &m.transaction_id);
        for a in m.attributes() {
            b.attr(a.typ, a.value);
        }
    }
    let again = Message::parse(&buf)
        .unwrap_or_else(|e| panic!("rebuilt message does not parse: {e}: {buf:02x?}"));
    assert_eq!(
        (again.class, again.method, again.transaction_id),
        (m.class, m.method, m.transaction_id)
    );
    assert!(
        again
            .attributes()
            .map(|a| (a.typ, a.value))
            .eq(m.attributes().map(|a| (a.typ, a.value))),
        "attributes changed in the rebuild"
    );
    Some(m)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, raw)) = data.split_first() else {
        return;
    };
    let parsed = check_message(raw);
    let now = Instant::now();
    let full = mode & 2 != 0;
    let (mut ep, _) = endpoint(if full { IceMode::Full } else { IceMode::Lite });
    if mode & 4 != 0 {
        ep.set_remote(now, remote(vec![]));
    }
    // Our own connectivity check, if the agent sends one.
    let mut our_check = None;
    if full {
        ep.handle_timeout(now + Duration::from_millis(100));
        while let Some(t) = ep.poll_transmit() {
            if let Ok(m) = Message::parse(&t.data) {
                our_check.get_or_insert(m.transaction_id);
            }
        }
    }
    let datagram = match &parsed {
        Some(m) if mode & 8 != 0 && our_check.is_some() => {
            let mut out = Vec::new();
            resign(m, our_check, REMOTE_PWD.as_bytes(), &mut out);
            out
        }
        Some(m) if mode & 1 != 0 => {
            let mut out = Vec::new();
            resign(m, None, LOCAL_PWD.as_bytes(), &mut out);
            out
        }
        _ => raw.to_vec(),
    };

    let mut demux = Demux::new(Arc::new(DropCounters::new()));
    demux.register(LOCAL_UFRAG, 1u32);
    if let Some((k, kind)) = demux.route(PEER, &datagram) {
        assert_eq!((k, kind), (1, classify(&datagram)));
    }

    ep.handle_datagram(now, PEER, &datagram);
    for step in 0..3u64 {
        while let Some(t) = ep.poll_transmit() {
            if classify(&t.data) == PacketKind::Stun {
                Message::parse(&t.data)
                    .unwrap_or_else(|e| panic!("the agent sent malformed STUN: {e}"));
            }
        }
        while ep.poll_event().is_some() {}
        ep.handle_timeout(now + Duration::from_secs(step * 5));
    }
});
