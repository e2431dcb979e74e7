//! Every XML parser of the signaling crate on arbitrary input. The input may be a bare payload or an
//! `<iq>` wrapping one; the element's name picks the parser. Whatever parses must serialise to XML that
//! parses back to an equal value (no silent loss), and nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use signaling::xml::{Element, XmlElement, parse_element};
use signaling::{brewery, colibri2, focus_iq, health, ice_udp, jingle, rtp_description, sources};

fn roundtrip<T: XmlElement + PartialEq + std::fmt::Debug>(el: &Element) {
    if let Ok(value) = T::from_element(el) {
        let text = value.to_xml();
        let again = T::from_xml(&text)
            .unwrap_or_else(|e| panic!("our own output does not parse: {e}\n{text}"));
        assert_eq!(value, again, "round trip changed the value\n{text}");
    }
}

fn payload(el: &Element) {
    match el.name() {
        "jingle" => roundtrip::<jingle::Jingle>(el),
        "conference" => {
            roundtrip::<focus_iq::ConferenceRequest>(el);
            roundtrip::<focus_iq::ConferenceResponse>(el);
        }
        "conference-modify" => roundtrip::<colibri2::ConferenceModify>(el),
        "conference-modified" => roundtrip::<colibri2::ConferenceModified>(el),
        "endpoint" => roundtrip::<colibri2::Endpoint>(el),
        "error" => {
            roundtrip::<colibri2::Colibri2Error>(el);
            roundtrip::<colibri2::Colibri2ErrorResponse>(el);
        }
        "stats" => roundtrip::<brewery::Stats>(el),
        "healthcheck" => roundtrip::<health::HealthCheck>(el),
        "transport" => {
            roundtrip::<ice_udp::IceUdpTransport>(el);
            roundtrip::<colibri2::Transport>(el);
        }
        "candidate" => roundtrip::<ice_udp::Candidate>(el),
        "fingerprint" => roundtrip::<ice_udp::Fingerprint>(el),
        "payload-type" => roundtrip::<rtp_description::PayloadType>(el),
        "rtp-hdrext" => roundtrip::<rtp_description::RtpHdrExt>(el),
        "source" => roundtrip::<sources::Source>(el),
        "ssrc-group" => roundtrip::<sources::SsrcGroup>(el),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(el) = parse_element(text) else {
        return;
    };
    if el.name() == "iq" {
        // The IQ-level error reader works on the whole stanza.
        let _ = colibri2::Colibri2ErrorResponse::from_iq(&el);
        let _ = health::HealthCheckOutcome::from_response(&el);
        for child in el.children() {
            payload(child);
        }
    } else {
        payload(&el);
    }
});
