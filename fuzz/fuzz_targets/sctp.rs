//! The SCTP association as the bridge drives it (`bridge/src/transport/sctp.rs`: rtc-sctp server
//! side plus the bridge's DCEP and stream handling), fed packets as they come out of DTLS. Input: a
//! stage byte, then records.
//!
//! Stages (byte % 4): nothing yet; after a real client's INIT (answered with INIT-ACK); after the
//! four-way handshake; after the client opened the bridge channel with DATA_CHANNEL_OPEN. Record tag
//! bits: 0 — give the packet the association's verification tag, 1 — recompute its CRC-32c (so
//! that it reaches chunk processing), 2 — instead send the payload through the real client on the
//! bridge channel (PPID from bits 4–5: string, binary, DCEP, empty string), 3 — then advance the
//! clock by `tag >> 6` × 200 ms and run the timers.
//!
//! Properties: no panic; messages surface only on channels that were opened; at most 8 channels
//! are open at once (`MAX_CHANNELS`); every packet the bridge sends back is valid SCTP (checksum).
#![no_main]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bridge::transport::sctp::SctpEvent;
use bytes::Bytes;
use jitsi_rs_fuzz::Records;
use jitsi_rs_fuzz::sctp_client::{CHANNEL_STREAM, Stage, fix_header, pump, setup};
use libfuzzer_sys::fuzz_target;
use rtc_sctp::PayloadProtocolIdentifier as Ppi;

fuzz_target!(|data: &[u8]| {
    let Some((&stage, rest)) = data.split_first() else {
        return;
    };
    let stage = match stage % 4 {
        0 => Stage::Nothing,
        1 => Stage::InitSent,
        2 => Stage::Established,
        _ => Stage::ChannelOpen,
    };
    let mut now = Instant::now();
    let (mut server, mut client) = setup(stage, now);
    let tag = client.as_ref().and_then(|c| c.server_tag);
    let mut open: BTreeSet<u16> = BTreeSet::new();
    if stage == Stage::ChannelOpen {
        open.insert(CHANNEL_STREAM);
    }
    for (t, payload) in Records::new(rest) {
        match client.as_mut() {
            Some(c) if t & 4 != 0 => {
                let ppi = match (t >> 4) & 3 {
                    0 => Ppi::String,
                    1 => Ppi::Binary,
                    2 => Ppi::Dcep,
                    _ => Ppi::StringEmpty,
                };
                if c.send(now, CHANNEL_STREAM, ppi, payload) {
                    pump(c, &mut server, now);
                }
            }
            _ => {
                let mut p = payload.to_vec();
                if t & 3 != 0 {
                    fix_header(&mut p, if t & 1 != 0 { tag } else { None });
                }
                let _ = server.handle(now, Bytes::from(p));
            }
        }
        if t & 8 != 0 {
            now += Duration::from_millis(200 * u64::from(t >> 6));
            server.handle_timeout(now);
        }
        while let Some(p) = server.poll_packet() {
            assert!(p.len() >= 12, "short SCTP packet from the bridge");
            let mut z = p.to_vec();
            z[8..12].fill(0);
            assert_eq!(
                crc32c::crc32c(&z).to_le_bytes(),
                p[8..12],
                "bad checksum on the bridge's packet"
            );
            if let Some(c) = client.as_mut() {
                c.receive(now, p);
            }
        }
        while let Some(e) = server.poll_event() {
            match e {
                SctpEvent::ChannelOpen { stream, .. } => {
                    open.insert(stream);
                    assert!(open.len() <= 8, "more than 8 channels open");
                }
                SctpEvent::ChannelClosed { stream } => {
                    open.remove(&stream);
                }
                SctpEvent::Text { stream, .. } | SctpEvent::Binary { stream, .. } => {
                    assert!(
                        open.contains(&stream),
                        "message on unopened stream {stream}"
                    );
                }
                SctpEvent::AssociationLost(_) => {}
            }
        }
        assert_eq!(server.open_channel().is_some(), !open.is_empty());
    }
});
