//! DTLS as the bridge receives it: the record framing pre-check (`dtls_records_well_formed` in
//! `bridge/src/transport/endpoint.rs`) and the endpoint's DTLS server behind it, after ICE validated
//! the peer. Input: a mode byte, then records (each one datagram from the peer).
//!
//! Modes (byte % 4): 0 — datagrams straight after ICE; 1 — after a real handshake started (the
//! browser's ClientHello was answered with HelloVerifyRequest, the cookie ClientHello with the
//! server flight), so the server waits for the client's second flight; 2 — the real client's
//! datagrams are tampered with (each XOR-ed with the next record) during the handshake, then the rest
//! of the records follow; 3 — after a complete handshake, each record either goes raw or (tag bit 0)
//! as application data through the client's DTLS session, i.e. into the bridge's SCTP stack.
//!
//! Properties: no panic; the framing check accepts exactly sequences of complete records with a
//! DTLS content type and version; an endpoint that did not complete a handshake with the real client
//! never reports DTLS connected.
#![no_main]

use std::time::{Duration, Instant};

use bridge::transport::endpoint::dtls_records_well_formed;
use bridge::transport::{EndpointTransport, TransportEvent};
use jitsi_rs_fuzz::Records;
use jitsi_rs_fuzz::dtls_client::{DtlsClient, client_fingerprint, pump};
use jitsi_rs_fuzz::stun_util::{PEER, remote, validated_endpoint};
use libfuzzer_sys::fuzz_target;

/// The framing rule, stated independently: 13-byte headers, type 20–25, version FE FF / FE FD,
/// lengths that tile the datagram exactly.
fn framing_ok(mut d: &[u8]) -> bool {
    if d.is_empty() {
        return false;
    }
    while !d.is_empty() {
        if d.len() < 13 {
            return false;
        }
        let len = usize::from(u16::from_be_bytes([d[11], d[12]]));
        if !(20..=25).contains(&d[0]) || d[1] != 0xFE || !matches!(d[2], 0xFF | 0xFD) {
            return false;
        }
        if d.len() < 13 + len {
            return false;
        }
        d = &d[13 + len..];
    }
    true
}

fn drain(ep: &mut EndpointTransport, connected: &mut bool) {
    while ep.poll_transmit().is_some() {}
    while let Some(e) = ep.poll_event() {
        if matches!(e, TransportEvent::DtlsConnected(_)) {
            *connected = true;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut records = Records::new(rest);
    let now = Instant::now();
    let (mut ep, _) = validated_endpoint(now);
    ep.set_remote(now, remote(vec![client_fingerprint()]));
    let mut connected = false;
    let mut client = None;
    match mode % 4 {
        0 => {}
        1 => {
            let mut c = DtlsClient::connect(now);
            // ClientHello -> HelloVerifyRequest -> ClientHello(cookie) -> server flight.
            pump(&mut ep, &mut c, now, 2, |_| {});
            // The client's second flight is lost: drop what it queued.
            while c.poll_transmit().is_some() {}
            drain(&mut ep, &mut connected);
            client = Some(c);
        }
        2 => {
            let mut c = DtlsClient::connect(now);
            let mut tamper = |d: &mut Vec<u8>| {
                if let Some((_, x)) = records.next() {
                    for (b, x) in d.iter_mut().zip(x) {
                        *b ^= x;
                    }
                }
            };
            pump(&mut ep, &mut c, now, 8, &mut tamper);
            drain(&mut ep, &mut connected);
            client = Some(c);
        }
        _ => {
            let mut c = DtlsClient::connect(now);
            pump(&mut ep, &mut c, now, 8, |_| {});
            drain(&mut ep, &mut connected);
            assert!(
                connected && c.connected,
                "fixture: the handshake did not complete"
            );
            client = Some(c);
        }
    }
    for (tag, d) in records {
        assert_eq!(
            dtls_records_well_formed(d),
            framing_ok(d),
            "framing check on {d:02x?}"
        );
        match client.as_mut() {
            Some(c) if mode % 4 == 3 && tag & 1 != 0 => {
                if c.write(now, d) {
                    pump(&mut ep, c, now, 4, |_| {});
                }
            }
            _ => ep.handle_datagram(now, PEER, d),
        }
        if tag & 0x80 != 0 {
            ep.handle_timeout(now + Duration::from_millis(u64::from(tag & 0x7f) * 100));
        }
        drain(&mut ep, &mut connected);
    }
    if mode % 4 < 2 {
        assert!(
            !connected,
            "DTLS connected without a real client's handshake"
        );
    }
});
