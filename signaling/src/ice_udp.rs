//! The ICE-UDP transport element (`urn:xmpp:jingle:transports:ice-udp:1`) with its DTLS fingerprint,
//! candidates, Jitsi's `web-socket` URL and the `sctpmap` of the data content. COLIBRI2 embeds the same
//! element, so both Jingle and COLIBRI2 use this type.

use std::net::IpAddr;

use crate::error::ParseError;
use crate::ns;
use crate::xml::string_enum;
use crate::xml::{self, Builder, Element, XmlElement};

string_enum!(
    /// DTLS role negotiation (`setup` attribute, RFC 4145 values).
    Setup { Actpass => "actpass", Active => "active", Passive => "passive", Holdconn => "holdconn" }
);

/// `<fingerprint xmlns='urn:xmpp:jingle:apps:dtls:0' hash= setup=>AB:CD:…</fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash function name as in SDP (`sha-256`).
    pub hash: String,
    pub setup: Option<Setup>,
    pub cryptex: bool,
    /// Colon-separated upper-case hex.
    pub value: String,
}

impl XmlElement for Fingerprint {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "fingerprint";
        xml::expect(el, E, ns::JINGLE_DTLS)?;
        let value = el.text().trim().to_owned();
        let well_formed = !value.is_empty()
            && value
                .split(':')
                .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
        if !well_formed {
            return Err(ParseError::invalid(
                E,
                "fingerprint must be colon-separated hex bytes",
            ));
        }
        Ok(Fingerprint {
            hash: xml::attr(el, E, "hash")?.to_owned(),
            setup: xml::opt_num(el, E, "setup")?,
            cryptex: xml::flag(el, E, "cryptex")?,
            value,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("fingerprint", ns::JINGLE_DTLS)
            .attr("hash", &self.hash)
            .opt_attr("setup", self.setup)
            .flag("cryptex", self.cryptex)
            .text(&self.value)
            .build()
    }
}

string_enum!(
    /// ICE candidate type.
    CandidateType { Host => "host", Srflx => "srflx", Prflx => "prflx", Relay => "relay" }
);

/// `<candidate component foundation generation id ip network port priority protocol type …/>`.
///
/// `ip` stays a string: browsers send mDNS host names (`….local`) that are not IP addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub component: u8,
    pub foundation: String,
    pub generation: u32,
    pub id: Option<String>,
    pub ip: String,
    pub network: Option<u32>,
    pub port: u16,
    pub priority: u32,
    pub protocol: String,
    pub candidate_type: CandidateType,
    pub rel_addr: Option<String>,
    pub rel_port: Option<u16>,
    pub tcptype: Option<String>,
}

impl Candidate {
    /// A UDP host candidate for component 1 (RTP, rtcp-mux).
    pub fn host_udp(foundation: &str, id: &str, ip: IpAddr, port: u16, priority: u32) -> Self {
        Candidate {
            component: 1,
            foundation: foundation.to_owned(),
            generation: 0,
            id: Some(id.to_owned()),
            ip: ip.to_string(),
            network: Some(0),
            port,
            priority,
            protocol: "udp".into(),
            candidate_type: CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            tcptype: None,
        }
    }

    /// The candidate address, when `ip` is a literal address (not an mDNS name).
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        self.ip
            .parse::<IpAddr>()
            .ok()
            .map(|ip| std::net::SocketAddr::new(ip, self.port))
    }
}

impl XmlElement for Candidate {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "candidate";
        xml::expect(el, E, ns::JINGLE_ICE_UDP)?;
        Ok(Candidate {
            component: xml::num(el, E, "component")?,
            foundation: xml::attr(el, E, "foundation")?.to_owned(),
            generation: xml::opt_num(el, E, "generation")?.unwrap_or(0),
            id: xml::opt_string(el, "id"),
            ip: xml::attr(el, E, "ip")?.to_owned(),
            network: xml::opt_num(el, E, "network")?,
            port: xml::num(el, E, "port")?,
            priority: xml::num(el, E, "priority")?,
            protocol: xml::attr(el, E, "protocol")?.to_owned(),
            candidate_type: xml::num(el, E, "type")?,
            rel_addr: xml::opt_string(el, "rel-addr"),
            rel_port: xml::opt_num(el, E, "rel-port")?,
            tcptype: xml::opt_string(el, "tcptype"),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("candidate", ns::JINGLE_ICE_UDP)
            .attr("component", self.component)
            .attr("foundation", &self.foundation)
            .attr("generation", self.generation)
            .opt_attr("id", self.id.as_ref())
            .attr("ip", &self.ip)
            .opt_attr("network", self.network)
            .attr("port", self.port)
            .attr("priority", self.priority)
            .attr("protocol", &self.protocol)
            .attr("type", self.candidate_type)
            .opt_attr("rel-addr", self.rel_addr.as_ref())
            .opt_attr("rel-port", self.rel_port)
            .opt_attr("tcptype", self.tcptype.as_ref())
            .build()
    }
}

/// `<sctpmap xmlns='urn:xmpp:jingle:transports:dtls-sctp:1' number protocol streams/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctpMap {
    pub number: u16,
    pub protocol: String,
    pub streams: Option<u16>,
}

impl SctpMap {
    /// What Jicofo offers for the bridge channel.
    pub fn webrtc_datachannel() -> Self {
        SctpMap {
            number: 5000,
            protocol: "webrtc-datachannel".into(),
            streams: Some(1024),
        }
    }
}

impl XmlElement for SctpMap {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "sctpmap";
        xml::expect(el, E, ns::JINGLE_DTLS_SCTP)?;
        Ok(SctpMap {
            number: xml::num(el, E, "number")?,
            protocol: xml::attr(el, E, "protocol")?.to_owned(),
            streams: xml::opt_num(el, E, "streams")?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("sctpmap", ns::JINGLE_DTLS_SCTP)
            .attr("number", self.number)
            .attr("protocol", &self.protocol)
            .opt_attr("streams", self.streams)
            .build()
    }
}

/// `<transport xmlns='urn:xmpp:jingle:transports:ice-udp:1' ufrag pwd ice-generation>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceUdpTransport {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    /// `ice-generation`: the round of an in-place ICE restart this transport belongs to (≥ 1). The
    /// bridge tags the new agent's transport with it in its COLIBRI2 answer, the focus relays it in a
    /// Jingle transport-info, and the client tags its answering transport-info with the same value
    /// (lib-jitsi-meet `JingleSessionPC.onBridgeIceRestartTransport`; jicofo
    /// `ColibriV2SessionManager.endpointIceRestarted`). Absent everywhere else.
    pub ice_generation: Option<u32>,
    pub rtcp_mux: bool,
    pub fingerprints: Vec<Fingerprint>,
    pub candidates: Vec<Candidate>,
    /// `<web-socket xmlns='http://jitsi.org/protocol/colibri' url=…/>` – colibri-ws bridge channel URLs.
    pub web_sockets: Vec<String>,
    pub sctpmap: Option<SctpMap>,
}

impl IceUdpTransport {
    /// The first fingerprint, which is the one Jitsi components use.
    pub fn fingerprint(&self) -> Option<&Fingerprint> {
        self.fingerprints.first()
    }
}

impl XmlElement for IceUdpTransport {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "transport";
        xml::expect(el, E, ns::JINGLE_ICE_UDP)?;
        let mut web_sockets = Vec::new();
        for ws in xml::children(el, "web-socket", ns::COLIBRI) {
            web_sockets.push(xml::attr(ws, "web-socket", "url")?.to_owned());
        }
        Ok(IceUdpTransport {
            ufrag: xml::opt_string(el, "ufrag"),
            pwd: xml::opt_string(el, "pwd"),
            ice_generation: xml::opt_num(el, E, "ice-generation")?,
            // Written without a namespace of its own, so it inherits the transport's; accept any.
            rtcp_mux: el.children().any(|c| c.name() == "rtcp-mux"),
            fingerprints: xml::parse_children(el, "fingerprint", ns::JINGLE_DTLS)?,
            candidates: xml::parse_children(el, "candidate", ns::JINGLE_ICE_UDP)?,
            web_sockets,
            sctpmap: xml::parse_child(el, "sctpmap", ns::JINGLE_DTLS_SCTP)?,
        })
    }

    fn to_element(&self) -> Element {
        let mut b = Builder::new("transport", ns::JINGLE_ICE_UDP)
            .opt_attr("ufrag", self.ufrag.as_ref())
            .opt_attr("pwd", self.pwd.as_ref())
            .opt_attr("ice-generation", self.ice_generation);
        if self.rtcp_mux {
            b = b.child(Element::bare("rtcp-mux", ns::JINGLE_ICE_UDP));
        }
        b.children(xml::elements(&self.fingerprints))
            .children(xml::elements(&self.candidates))
            .children(self.web_sockets.iter().map(|url| {
                Builder::new("web-socket", ns::COLIBRI)
                    .attr("url", url)
                    .build()
            }))
            .opt_child(self.sctpmap.as_ref().map(XmlElement::to_element))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_TRANSPORT: &str = r#"<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="Hx4t" pwd="m0y7Qn8eS2K9l8P3vX1rJd3p">
        <rtcp-mux/>
        <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">4F:0A:92:7C:1B:3D:5E:6F:70:81:92:A3:B4:C5:D6:E7:F8:09:1A:2B:3C:4D:5E:6F:70:81:92:A3:B4:C5:D6:E7</fingerprint>
        <candidate component="1" foundation="3271958410" generation="0" id="1a2b" ip="127.0.0.1" network="1" port="53214" priority="2122260223" protocol="udp" type="host"/>
        <candidate component="1" foundation="842163049" generation="0" id="3c4d" ip="198.51.100.7" network="1" port="53214" priority="1686052607" protocol="udp" rel-addr="127.0.0.1" rel-port="53214" type="srflx"/>
      </transport>"#;

    #[test]
    fn browser_transport_roundtrips() {
        let t = IceUdpTransport::from_xml(CHROME_TRANSPORT).unwrap();
        assert_eq!(t.ufrag.as_deref(), Some("Hx4t"));
        assert!(t.rtcp_mux);
        assert_eq!(t.fingerprint().unwrap().setup, Some(Setup::Active));
        assert_eq!(t.candidates.len(), 2);
        assert_eq!(t.candidates[1].candidate_type, CandidateType::Srflx);
        assert_eq!(t.candidates[1].rel_port, Some(53214));
        assert_eq!(
            t.candidates[0].socket_addr(),
            Some("127.0.0.1:53214".parse().unwrap())
        );
        assert_eq!(IceUdpTransport::from_xml(&t.to_xml()).unwrap(), t);
    }

    #[test]
    fn bridge_transport_with_websocket_and_sctpmap_roundtrips() {
        let t = IceUdpTransport {
            ufrag: Some("u1".into()),
            pwd: Some("p1".into()),
            rtcp_mux: true,
            fingerprints: vec![Fingerprint {
                hash: "sha-256".into(),
                setup: Some(Setup::Actpass),
                cryptex: false,
                value: "AB:CD".into(),
            }],
            candidates: vec![Candidate::host_udp(
                "1",
                "c1",
                "127.0.0.1".parse().unwrap(),
                10000,
                2130706431,
            )],
            web_sockets: vec!["wss://meet.example/colibri-ws/jvb1/c1/ep1?pwd=x".into()],
            sctpmap: Some(SctpMap::webrtc_datachannel()),
            ice_generation: None,
        };
        assert_eq!(IceUdpTransport::from_xml(&t.to_xml()).unwrap(), t);
    }

    #[test]
    fn ice_generation_of_an_in_place_restart_roundtrips() {
        let tagged = CHROME_TRANSPORT.replace(r#"pwd="m0y7"#, r#"ice-generation="3" pwd="m0y7"#);
        let t = IceUdpTransport::from_xml(&tagged).unwrap();
        assert_eq!(t.ice_generation, Some(3));
        assert_eq!(t.to_element().attr("ice-generation"), Some("3"));
        assert_eq!(IceUdpTransport::from_xml(&t.to_xml()).unwrap(), t);
        assert_eq!(
            IceUdpTransport::from_xml(CHROME_TRANSPORT)
                .unwrap()
                .ice_generation,
            None
        );
        let bad = CHROME_TRANSPORT.replace(r#"pwd="m0y7"#, r#"ice-generation="x" pwd="m0y7"#);
        assert!(matches!(
            IceUdpTransport::from_xml(&bad).unwrap_err(),
            ParseError::BadAttribute {
                attribute: "ice-generation",
                ..
            }
        ));
    }

    #[test]
    fn candidate_errors_name_the_attribute() {
        let bad_port = r#"<candidate xmlns="urn:xmpp:jingle:transports:ice-udp:1" component="1" foundation="1" ip="127.0.0.1" port="70000" priority="1" protocol="udp" type="host"/>"#;
        assert!(matches!(
            Candidate::from_xml(bad_port).unwrap_err(),
            ParseError::BadAttribute {
                element: "candidate",
                attribute: "port",
                ..
            }
        ));
        let bad_type = bad_port.replace("70000", "1").replace("host", "nat");
        assert!(matches!(
            Candidate::from_xml(&bad_type).unwrap_err(),
            ParseError::BadAttribute {
                attribute: "type",
                ..
            }
        ));
        let no_ip = bad_port
            .replace(r#"ip="127.0.0.1" "#, "")
            .replace("70000", "1");
        assert_eq!(
            Candidate::from_xml(&no_ip).unwrap_err(),
            ParseError::MissingAttribute {
                element: "candidate",
                attribute: "ip"
            }
        );
    }

    #[test]
    fn malformed_fingerprint_is_refused() {
        let f = r#"<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256">not hex</fingerprint>"#;
        assert!(matches!(
            Fingerprint::from_xml(f).unwrap_err(),
            ParseError::Invalid {
                element: "fingerprint",
                ..
            }
        ));
    }

    #[test]
    fn wrong_namespace_is_refused() {
        let t = CHROME_TRANSPORT.replace("ice-udp:1", "raw-udp:1");
        assert!(matches!(
            IceUdpTransport::from_xml(&t).unwrap_err(),
            ParseError::WrongElement { .. }
        ));
    }
}
