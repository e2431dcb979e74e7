//! Every XML parser of the signaling crate, and the focus's and the bridge's own readers, on arbitrary
//! input. The input may be a bare payload, an `<iq>` wrapping one, or a `<presence>`; the element's
//! name picks the parsers (COLIBRI2 conference-modify / -modified and their parts, every Jingle action
//! and its contents, the focus conference IQ, brewery stats, health and shutdown IQs, MUC presence as
//! the focus reads it, the focus's reading of a COLIBRI2 allocation answer).
//!
//! Properties: nothing panics; whatever parses serialises to XML that parses back to an equal value
//! (no silent loss).
#![no_main]

use focus::core::colibri::parse_allocation;
use focus::core::muc::MucPresence;
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

fn presence(el: &Element) {
    // What the focus's shell lets through (xmpp-parsers), then what the core reads.
    if let Ok(p) = xmpp_parsers::presence::Presence::try_from(el.clone()) {
        let el = Element::from(p);
        if let Some(p) = MucPresence::parse(&el) {
            let _ = (p.is_self(), p.caps, p.stats_id, p.region);
        }
        let _ = focus::core::parse_stats(&el);
    }
    if let Some(p) = MucPresence::parse(el) {
        let _ = p.is_self();
    }
    let _ = focus::core::parse_stats(el);
    for child in el.children() {
        payload(child);
    }
}

fn payload(el: &Element) {
    match el.name() {
        "jingle" => roundtrip::<jingle::Jingle>(el),
        "content" => roundtrip::<jingle::Content>(el),
        "description" => roundtrip::<jingle::RtpDescription>(el),
        "reason" => roundtrip::<jingle::Reason>(el),
        "group" => roundtrip::<jingle::Group>(el),
        "bridge-session" => roundtrip::<jingle::BridgeSession>(el),
        "startmuted" => roundtrip::<jingle::StartMuted>(el),
        "conference" => {
            roundtrip::<focus_iq::ConferenceRequest>(el);
            roundtrip::<focus_iq::ConferenceResponse>(el);
        }
        "property" => roundtrip::<focus_iq::Property>(el),
        "conference-modify" => roundtrip::<colibri2::ConferenceModify>(el),
        "conference-modified" => {
            roundtrip::<colibri2::ConferenceModified>(el);
            let first = el
                .children()
                .find(|c| c.name() == "endpoint")
                .and_then(|c| c.attr("id"))
                .unwrap_or("ab12cd34");
            let _ = parse_allocation(el, first);
        }
        "endpoint" => roundtrip::<colibri2::Endpoint>(el),
        "media" => roundtrip::<colibri2::Media>(el),
        "sources" => roundtrip::<colibri2::Sources>(el),
        "media-source" => roundtrip::<colibri2::MediaSource>(el),
        "force-mute" => roundtrip::<colibri2::ForceMute>(el),
        "relay" => roundtrip::<colibri2::Relay>(el),
        "connect" => roundtrip::<colibri2::Connect>(el),
        "sctp" => roundtrip::<colibri2::Sctp>(el),
        "error" => {
            roundtrip::<colibri2::Colibri2Error>(el);
            roundtrip::<colibri2::Colibri2ErrorResponse>(el);
        }
        "stats" => roundtrip::<brewery::Stats>(el),
        "stat" => roundtrip::<brewery::Stat>(el),
        "healthcheck" => roundtrip::<health::HealthCheck>(el),
        "graceful-shutdown" => roundtrip::<health::GracefulShutdown>(el),
        "force-shutdown" => roundtrip::<health::ForceShutdown>(el),
        "transport" => {
            roundtrip::<ice_udp::IceUdpTransport>(el);
            roundtrip::<colibri2::Transport>(el);
        }
        "candidate" => roundtrip::<ice_udp::Candidate>(el),
        "fingerprint" => roundtrip::<ice_udp::Fingerprint>(el),
        "payload-type" => roundtrip::<rtp_description::PayloadType>(el),
        "rtp-hdrext" => roundtrip::<rtp_description::RtpHdrExt>(el),
        "sctpmap" => roundtrip::<ice_udp::SctpMap>(el),
        "rtcp-fb" => roundtrip::<rtp_description::RtcpFb>(el),
        "source" => roundtrip::<sources::Source>(el),
        "ssrc-group" => roundtrip::<sources::SsrcGroup>(el),
        "presence" => presence(el),
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
        // The IQ-level readers work on the whole stanza.
        let _ = colibri2::Colibri2ErrorResponse::from_iq(&el);
        let _ = health::HealthCheckOutcome::from_response(&el);
        for child in el.children() {
            payload(child);
        }
    } else {
        payload(&el);
    }
});
