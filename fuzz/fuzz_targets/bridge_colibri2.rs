//! COLIBRI2 `conference-modify` as the bridge handles it (`bridge::colibri::conference_modify` on
//! the media task's state: forwarding core, endpoint transports, the shell's tables). Input:
//! NUL-separated operations on a bridge that already runs conference `MEETING_ID` with two
//! endpoints: `C<xml>` a request (admitted), `S<xml>` a request while shutting down (new
//! conferences refused).
//!
//! Properties: no panic; after every request the forwarding core, the transports and the shell
//! agree on which endpoints and conferences exist; every answer serialises to XML that parses back
//! to the same answer (the focus reads it), and every error answer too.
#![no_main]

use std::time::Instant;

use bridge::colibri::conference_modify;
use bridge::lifecycle::Admission;
use jitsi_rs_fuzz::bridge_plane::{check_consistent, two_endpoint_plane};
use jitsi_rs_fuzz::text_ops;
use libfuzzer_sys::fuzz_target;
use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use signaling::xml::XmlElement;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = Instant::now();
    let (mut plane, mut port) = two_endpoint_plane(now);
    for (op, xml) in text_ops(text) {
        let admission = match op {
            'C' => Admission::Accept,
            'S' => Admission::RefuseShuttingDown,
            _ => continue,
        };
        let Ok(req) = ConferenceModify::from_xml(xml) else {
            continue;
        };
        match conference_modify(&mut plane, &mut port, now, &req, admission) {
            Ok(answer) => {
                let xml = answer.to_xml();
                let back = ConferenceModified::from_xml(&xml)
                    .unwrap_or_else(|e| panic!("our answer does not parse ({e}): {xml}"));
                assert_eq!(back, answer, "answer round trip\n{xml}");
            }
            Err(e) => {
                let xml = e.to_xml();
                let back = Colibri2ErrorResponse::from_xml(&xml)
                    .unwrap_or_else(|err| panic!("our error does not parse ({err}): {xml}"));
                assert_eq!(back, e, "error round trip\n{xml}");
            }
        }
        check_consistent(&plane, &port);
    }
});
