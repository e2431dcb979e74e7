//! Every stanza the focus accepts, and the answers it gets, with a conference running (see
//! `jitsi_rs_fuzz::focus_sim`): conference requests (client_proxy on the client connection and the
//! component), Jingle from participants (session-accept, transport-info, source-add/remove,
//! session-info, session-terminate, …), disco#info and ping, IQs the focus does not handle (mute
//! requests, …), presences, and scripted answers to its own requests (COLIBRI2 allocations, disco,
//! room configuration, health checks). Input: NUL-separated operations:
//! `I<iq>` an IQ on the client connection, `C<iq>` on the component, `P<presence>`, `A<xml>` the
//! next request is answered with this payload, `a` … with an empty result, `E<error>` … with this
//! error, `X` … times out, `T<n>` n seconds pass, `O`/`o` the client connection comes online/goes
//! offline.
//!
//! Properties: as for `focus_presence` (no panic, no output storm, nothing held that was not
//! given), and no IQ request is answered more often than it was sent (replies go only to requests).
#![no_main]

use std::time::Duration;

use focus::core::{Input, Link, RequestFailure};
use jitsi_rs_fuzz::focus_sim::FocusSim;
use jitsi_rs_fuzz::text_ops;
use libfuzzer_sys::fuzz_target;
use minidom::Element;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut sim = FocusSim::running();
    for (op, rest) in text_ops(text) {
        match op {
            'I' => sim.stanza(Link::Client, rest),
            'C' => sim.stanza(Link::Component, rest),
            'P' => sim.stanza(Link::Client, rest),
            'A' => {
                if let Ok(el) = rest.parse::<Element>() {
                    sim.scripted.push_back(Ok(Some(el)));
                }
            }
            'a' => sim.scripted.push_back(Ok(None)),
            'E' => sim
                .scripted
                .push_back(Err(RequestFailure::Error(rest.parse::<Element>().ok()))),
            'X' => sim.scripted.push_back(Err(RequestFailure::Timeout)),
            'T' => {
                let secs: u64 = rest.trim().parse().unwrap_or(1);
                sim.advance(Duration::from_secs(secs));
            }
            'O' => sim.input(Input::Online(Link::Client)),
            'o' => sim.input(Input::Offline(Link::Client)),
            _ => continue,
        }
        // Bounded script: a long list of scripted answers nobody asks for is dropped.
        sim.scripted.truncate(64);
        sim.check_bounded();
    }
});
