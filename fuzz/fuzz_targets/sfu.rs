//! The forwarding core end to end (`bridge::sfu::Sfu`): decrypted RTP, RTCP and bridge-channel text
//! from the two endpoints of a conference (see `jitsi_rs_fuzz::sfu_fixture`), transport events,
//! bandwidth estimates and time. Input: records; tag low 3 bits = operation, bit 3 = from `b`
//! (else `a`):
//! 0 RTP as is; 1 RTP with its SSRC replaced by one the sender signalled (payload byte 0 picks it,
//! the packet follows), so that it reaches forwarding; 2 RTCP; 3 bridge-channel text; 4 time passes
//! (payload: u16 ms); 5 a transport event (payload byte 0); 6 a bandwidth estimate (u32 bps).
//!
//! Properties: no panic; outputs go only to the conference's endpoints, and are well formed (RTP and
//! RTCP parse, messages parse as bridge-channel JSON); timers re-arm; when both endpoints are
//! expired the conference is gone.
#![no_main]

use std::time::Duration;

use bridge::sfu::TransportEvent;
use jitsi_rs_fuzz::Records;
use jitsi_rs_fuzz::sfu_fixture::{BASE_A, BASE_B, TwoParty, ssrcs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut t = TwoParty::new();
    for (tag, payload) in Records::new(data) {
        let (from, base) = if tag & 8 != 0 {
            (t.b, BASE_B)
        } else {
            (t.a, BASE_A)
        };
        let now = t.now;
        match tag & 7 {
            0 => t.sfu.handle_rtp(now, from, payload, &mut t.sink),
            1 => {
                let Some((&pick, pkt)) = payload.split_first() else {
                    continue;
                };
                let mut pkt = pkt.to_vec();
                if pkt.len() >= 12 {
                    let s = ssrcs(base);
                    pkt[8..12].copy_from_slice(&s[usize::from(pick) % s.len()].to_be_bytes());
                }
                t.sfu.handle_rtp(now, from, &pkt, &mut t.sink);
            }
            2 => t.sfu.handle_rtcp(now, from, payload, &mut t.sink),
            3 => {
                let text = String::from_utf8_lossy(payload);
                t.sfu.handle_channel_message(now, from, &text, &mut t.sink);
            }
            4 => {
                let ms = payload
                    .first_chunk::<2>()
                    .map_or(20, |b| u16::from_be_bytes(*b));
                t.advance(Duration::from_millis(u64::from(ms)));
            }
            5 => {
                let ev = match payload.first().copied().unwrap_or(0) % 5 {
                    0 => TransportEvent::Connected,
                    1 => TransportEvent::DataChannelOpen,
                    2 => TransportEvent::DataChannelClosed,
                    3 => TransportEvent::Failed,
                    _ => TransportEvent::Activity,
                };
                t.sfu.handle_transport_event(now, from, ev, &mut t.sink);
            }
            6 => {
                let bps = payload
                    .first_chunk::<4>()
                    .map_or(1_000_000, |b| u32::from_be_bytes(*b));
                t.sfu
                    .set_bandwidth_estimate(now, from, u64::from(bps), &mut t.sink);
            }
            _ => {}
        }
    }
    // Both gone: the conference must be gone too.
    let now = t.now;
    t.sfu.expire_endpoint(now, t.a, &mut t.sink);
    t.sfu.expire_endpoint(now, t.b, &mut t.sink);
    let stats = t.sfu.stats();
    assert_eq!((stats.conferences, stats.endpoints), (0, 0), "{stats:?}");
    assert!(t.sfu.find_conference("fuzz-meeting").is_none());
    let _ = t.conf;
});
