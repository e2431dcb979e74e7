//! The focus's MUC presence handling (`focus/src/core`: conference rooms and the brewery), with a
//! conference running: a bridge in the brewery, `ROOM` joined and configured, two members invited
//! (see `jitsi_rs_fuzz::focus_sim`). Input: NUL-separated operations, `P<presence>` a presence
//! stanza as Prosody delivers it (through the shell's parsing), `T<n>` n seconds pass.
//!
//! Properties: no panic; no output storm (bounded outputs per input); the focus holds no more than
//! it was given — conferences only for requested rooms, no more participants than occupants that
//! announced themselves, no more bridges than brewery occupants.
#![no_main]

use std::time::Duration;

use focus::core::Link;
use jitsi_rs_fuzz::focus_sim::FocusSim;
use jitsi_rs_fuzz::text_ops;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sim = FocusSim::running();
    for (op, rest) in text_ops(text) {
        match op {
            'P' => sim.stanza(Link::Client, rest),
            'T' => {
                let secs: u64 = rest.trim().parse().unwrap_or(1);
                sim.advance(Duration::from_secs(secs));
            }
            _ => continue,
        }
        sim.check_bounded();
    }
});
