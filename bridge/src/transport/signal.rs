//! Conversions between the transport and its signalled form (`signaling::ice_udp`, used by both
//! COLIBRI2 and Jingle): our endpoint's `<transport>` for the answer, and the peer's
//! `<transport>` into a [`RemoteTransport`].

use std::net::{IpAddr, SocketAddr};

use signaling::ice_udp::{
    Candidate, CandidateType, Fingerprint as SigFingerprint, IceUdpTransport, Setup,
};

use super::dtls::Fingerprint;
use super::endpoint::{EndpointTransport, RemoteTransport};
use super::ice::{IceCredentials, RemoteCandidate};
use super::role::Role;

/// RFC 8445 §5.1.2.1 priority for component 1.
pub fn candidate_priority(typ: CandidateType, local_preference: u16) -> u32 {
    let type_pref: u32 = match typ {
        CandidateType::Host => 126,
        CandidateType::Prflx => 110,
        CandidateType::Srflx => 100,
        CandidateType::Relay => 0,
    };
    (type_pref << 24) | (u32::from(local_preference) << 8) | 255
}

/// One address the bridge advertises for its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertisedAddress {
    pub addr: SocketAddr,
    pub typ: CandidateType,
    /// For srflx (e.g. `JVB_ADVERTISE_IPS` behind NAT): the local address it maps to.
    pub related: Option<SocketAddr>,
}

/// The candidates to signal, in the given order of preference (first = highest local preference).
pub fn local_candidates(addrs: &[AdvertisedAddress]) -> Vec<Candidate> {
    addrs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let local_pref = 65535u16.saturating_sub(i as u16);
            Candidate {
                component: 1,
                foundation: (i + 1).to_string(),
                generation: 0,
                id: Some(format!("c{}", i + 1)),
                ip: a.addr.ip().to_string(),
                network: Some(0),
                port: a.addr.port(),
                priority: candidate_priority(a.typ, local_pref),
                protocol: "udp".into(),
                candidate_type: a.typ,
                rel_addr: a.related.map(|r| r.ip().to_string()),
                rel_port: a.related.map(|r| r.port()),
                tcptype: None,
            }
        })
        .collect()
}

/// Our endpoint's transport element: ufrag/pwd, rtcp-mux, sha-256 fingerprint with
/// `setup="actpass"` (the bridge, [`Role::Server`]; the peer answers `active`) or `setup="active"`
/// (a participant's answer, [`Role::Client`]), and `candidates`. After an in-place ICE restart:
/// the new generation's ufrag/pwd with its `ice-generation` (the fingerprint stays: DTLS goes on).
pub fn local_transport(ep: &EndpointTransport, candidates: Vec<Candidate>) -> IceUdpTransport {
    let creds = ep.advertised_credentials();
    let fp = ep.local_fingerprint();
    IceUdpTransport {
        ufrag: Some(creds.ufrag.clone()),
        pwd: Some(creds.pwd.clone()),
        rtcp_mux: true,
        fingerprints: vec![SigFingerprint {
            hash: fp.algorithm.clone(),
            setup: Some(match ep.role() {
                Role::Server => Setup::Actpass,
                Role::Client => Setup::Active,
            }),
            cryptex: false,
            value: fp.value.clone(),
        }],
        candidates,
        web_sockets: Vec::new(),
        sctpmap: None,
        ice_generation: ep.ice_generation(),
    }
}

/// Why a peer transport cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteTransportError {
    #[error("transport has no ICE ufrag/pwd")]
    MissingCredentials,
}

/// The peer's transport → [`RemoteTransport`]. Keeps UDP component-1 candidates with an IP
/// address (mDNS `.local` names and TCP candidates are skipped; peer-reflexive learning covers
/// such peers). Fingerprints may be empty (they can come in a later update).
pub fn remote_transport(t: &IceUdpTransport) -> Result<RemoteTransport, RemoteTransportError> {
    let (Some(ufrag), Some(pwd)) = (&t.ufrag, &t.pwd) else {
        return Err(RemoteTransportError::MissingCredentials);
    };
    Ok(RemoteTransport {
        ice: IceCredentials {
            ufrag: ufrag.clone(),
            pwd: pwd.clone(),
        },
        fingerprints: t
            .fingerprints
            .iter()
            .map(|f| Fingerprint {
                algorithm: f.hash.clone(),
                value: f.value.clone(),
            })
            .collect(),
        candidates: remote_candidates(&t.candidates),
    })
}

/// Whether the bridge may send ICE checks to a signalled remote candidate. A participant chooses
/// its candidates freely, so never to an unspecified, multicast or broadcast address or port 0,
/// and to loopback only when the bridge itself is on loopback (tests, a local deployment) — else
/// a participant could aim the bridge's checks at the bridge host's own services.
pub fn candidate_allowed(addr: &SocketAddr, bridge_on_loopback: bool) -> bool {
    let ip = match addr.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !broadcast
        && (bridge_on_loopback || !ip.is_loopback())
}

/// Usable remote candidates out of signalled ones (see [`remote_transport`]).
pub fn remote_candidates(candidates: &[Candidate]) -> Vec<RemoteCandidate> {
    candidates
        .iter()
        .filter(|c| c.component == 1 && c.protocol.eq_ignore_ascii_case("udp"))
        .filter_map(|c| {
            let ip: IpAddr = c.ip.parse().ok()?;
            Some(RemoteCandidate {
                addr: SocketAddr::new(ip, c.port),
                priority: c.priority,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{DropCounters, DtlsIdentity, TransportConfig};
    use signaling::xml::XmlElement;
    use std::sync::Arc;

    #[test]
    fn local_transport_roundtrips_through_xml() {
        let id = DtlsIdentity::generate().unwrap();
        let ep = EndpointTransport::new(
            IceCredentials::random(),
            &id,
            TransportConfig::default(),
            Arc::new(DropCounters::new()),
        )
        .unwrap();
        let cands = local_candidates(&[
            AdvertisedAddress {
                addr: "203.0.113.5:10000".parse().unwrap(),
                typ: CandidateType::Srflx,
                related: Some("10.0.0.5:10000".parse().unwrap()),
            },
            AdvertisedAddress {
                addr: "10.0.0.5:10000".parse().unwrap(),
                typ: CandidateType::Host,
                related: None,
            },
        ]);
        assert_eq!(cands[1].priority, 2_130_706_175);
        assert!(cands[0].priority < cands[1].priority);
        let t = local_transport(&ep, cands);
        let xml = t.to_xml();
        let back = IceUdpTransport::from_xml(&xml).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.fingerprints[0].setup, Some(Setup::Actpass));
        assert_eq!(back.fingerprints[0].value, id.fingerprint().value);
        assert_eq!(
            back.ufrag.as_deref(),
            Some(ep.local_credentials().ufrag.as_str())
        );
    }

    #[test]
    fn remote_transport_from_a_browser_answer() {
        let xml = r#"<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="Ab12" pwd="cdefghijklmnopqrstuvwxyz"><rtcp-mux/>
            <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">01:02</fingerprint>
            <candidate component="1" foundation="1" generation="0" id="a" ip="192.0.2.7" network="1" port="5000" priority="2122260223" protocol="udp" type="host"/>
            <candidate component="1" foundation="2" generation="0" id="b" ip="4f1c3a.local" network="1" port="5001" priority="2122260222" protocol="udp" type="host"/>
            <candidate component="1" foundation="3" generation="0" id="c" ip="192.0.2.7" network="1" port="9" priority="1518280447" protocol="tcp" type="host" tcptype="active"/>
            </transport>"#;
        let t = IceUdpTransport::from_xml(xml).unwrap();
        let r = remote_transport(&t).unwrap();
        assert_eq!(r.ice.ufrag, "Ab12");
        assert_eq!(
            r.fingerprints,
            vec![Fingerprint {
                algorithm: "sha-256".into(),
                value: "01:02".into()
            }]
        );
        assert_eq!(
            r.candidates,
            vec![RemoteCandidate {
                addr: "192.0.2.7:5000".parse().unwrap(),
                priority: 2122260223
            }]
        );
        let mut no_creds = t.clone();
        no_creds.pwd = None;
        assert_eq!(
            remote_transport(&no_creds).unwrap_err(),
            RemoteTransportError::MissingCredentials
        );
    }

    #[test]
    fn candidates_the_bridge_will_not_check() {
        let ok = |s: &str, lo: bool| candidate_allowed(&s.parse().unwrap(), lo);
        assert!(ok("192.0.2.7:5000", false));
        assert!(
            ok("10.1.2.3:5000", false),
            "private addresses are fine (JVB too)"
        );
        assert!(ok("[2001:db8::1]:5000", false));
        assert!(!ok("127.0.0.1:5000", false));
        assert!(!ok("[::1]:5000", false));
        assert!(!ok("[::ffff:127.0.0.1]:5000", false));
        assert!(
            ok("127.0.0.1:5000", true),
            "a bridge on loopback talks to loopback peers"
        );
        for bad in [
            "0.0.0.0:5000",
            "[::]:5000",
            "224.0.0.1:5000",
            "[ff02::1]:5000",
            "255.255.255.255:5000",
            "192.0.2.7:0",
        ] {
            assert!(!ok(bad, true), "{bad}");
        }
    }
}
