//! Which addresses the bridge advertises for its one UDP port (the `<candidate>`s of every COLIBRI2
//! answer), and the STUN query that may add a server-reflexive one.
//!
//! Sources, in order of preference (first = highest ICE priority within its type):
//! 1. `JVB_ADVERTISE_IPS` (`ip` or `ip#port`): the public address clients reach. An address that is
//!    one of our own (host networking: Kubernetes' `status.hostIP` is the node's interface address)
//!    with the bound port is a **host** candidate; anything else is a **srflx** candidate (a static
//!    NAT mapping, with the local address as `rel-addr`), as ice4j's static mapping harvester does.
//! 2. Local addresses: the bound address when the port is bound to one, otherwise every interface
//!    address of the bound family except loopback and link-local. Private ones (RFC 1918, ULA,
//!    CGNAT, loopback) only with `JVB_ADVERTISE_PRIVATE_CANDIDATES` (default true); public ones always.
//! 3. STUN (`JVB_STUN_SERVERS` unless `JVB_DISABLE_STUN`): the public IP a STUN server sees, with the
//!    bound port (1:1 NAT assumption, like ice4j's mapping harvester). Queried in the background with
//!    a timeout: start-up never waits for it and never fails because of it.
//!
//! Duplicates (same address) are advertised once, at their first (best) position.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use service::HostPort;
use signaling::ice_udp::CandidateType;

use crate::config::AdvertisedAddress as Configured;
use crate::transport::signal::AdvertisedAddress;
use crate::transport::stun::{Builder, Class, METHOD_BINDING, Message};

/// Whether an address is private (not reachable from the Internet): loopback, RFC 1918, CGNAT
/// (100.64/10), link-local, IPv6 unique-local and link-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// The machine's interface addresses (empty if they cannot be read).
pub fn interface_addresses() -> Vec<IpAddr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list.into_iter().map(|i| i.ip()).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    }
}

/// The local addresses a socket bound to `bound` receives on: `bound` itself, or (unspecified)
/// the interface addresses of its family (both families for `::`), without loopback and link-local.
pub fn local_addresses(bound: IpAddr, interfaces: &[IpAddr]) -> Vec<IpAddr> {
    if !bound.is_unspecified() {
        return vec![bound];
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for &ip in interfaces {
        let family_ok = match bound {
            IpAddr::V4(_) => ip.is_ipv4(),
            IpAddr::V6(_) => true,
        };
        if family_ok
            && !ip.is_loopback()
            && !ip.is_unspecified()
            && !is_link_local(ip)
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// What to advertise for a port bound at `bound` (see the module docs). Pure: `interfaces` is
/// [`interface_addresses`] in production and a fixed list in tests.
pub fn plan(
    bound: SocketAddr,
    advertise: &[Configured],
    advertise_private: bool,
    interfaces: &[IpAddr],
) -> Vec<AdvertisedAddress> {
    let port = bound.port();
    let locals = local_addresses(bound.ip(), interfaces);
    let mut out: Vec<AdvertisedAddress> = Vec::new();
    let push = |out: &mut Vec<AdvertisedAddress>, a: AdvertisedAddress| {
        if !out.iter().any(|o| o.addr == a.addr) {
            out.push(a);
        }
    };
    for a in advertise {
        let public_port = a.port.unwrap_or(port);
        // One of our own addresses (any interface of the bound family, loopback included).
        let ours = a.ip == bound.ip()
            || locals.contains(&a.ip)
            || (bound.ip().is_unspecified()
                && interfaces.contains(&a.ip)
                && (a.ip.is_ipv4() == bound.is_ipv4() || bound.is_ipv6()));
        if ours && public_port == port {
            push(
                &mut out,
                AdvertisedAddress {
                    addr: SocketAddr::new(a.ip, port),
                    typ: CandidateType::Host,
                    related: None,
                },
            );
        } else {
            push(
                &mut out,
                AdvertisedAddress {
                    addr: SocketAddr::new(a.ip, public_port),
                    typ: CandidateType::Srflx,
                    related: Some(SocketAddr::new(
                        related_for(a.ip, bound.ip(), &locals),
                        port,
                    )),
                },
            );
        }
    }
    for &ip in &locals {
        if advertise_private || !is_private(ip) {
            push(
                &mut out,
                AdvertisedAddress {
                    addr: SocketAddr::new(ip, port),
                    typ: CandidateType::Host,
                    related: None,
                },
            );
        }
    }
    if out.is_empty() && bound.ip().is_unspecified() && locals.is_empty() {
        // Only loopback interfaces (a sandbox): advertise loopback so local peers still connect.
        let lo = match bound.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        if advertise_private {
            out.push(AdvertisedAddress {
                addr: SocketAddr::new(lo, port),
                typ: CandidateType::Host,
                related: None,
            });
        }
    }
    out
}

/// The local address a mapped (srflx) address stands for: the first local one of the same
/// family, else the bound address.
fn related_for(public: IpAddr, bound: IpAddr, locals: &[IpAddr]) -> IpAddr {
    locals
        .iter()
        .copied()
        .find(|l| l.is_ipv4() == public.is_ipv4())
        .unwrap_or(bound)
}

/// Adds the STUN-discovered public IP as a srflx candidate (unless that address is already
/// advertised). Returns whether the list changed.
pub fn add_stun_mapping(
    list: &mut Vec<AdvertisedAddress>,
    bound: SocketAddr,
    interfaces: &[IpAddr],
    public: IpAddr,
) -> bool {
    let addr = SocketAddr::new(public, bound.port());
    if list.iter().any(|a| a.addr == addr) {
        return false;
    }
    let locals = local_addresses(bound.ip(), interfaces);
    if locals.contains(&public) {
        return false; // our own interface address: already a host candidate (or deliberately not)
    }
    list.push(AdvertisedAddress {
        addr,
        typ: CandidateType::Srflx,
        related: Some(SocketAddr::new(
            related_for(public, bound.ip(), &locals),
            bound.port(),
        )),
    });
    true
}

/// How long one STUN server gets (resolution + request with retransmissions).
pub const STUN_TIMEOUT: Duration = Duration::from_secs(3);

/// Asks the STUN servers in turn for our public address, from an ephemeral socket on `bind_ip`
/// (the media port's address, so the answer describes that interface's NAT). Returns the first
/// mapped IP; `None` (logged) when no server answers, which is normal without network.
pub async fn discover_public_ip(servers: &[HostPort], bind_ip: IpAddr) -> Option<IpAddr> {
    for server in servers {
        let target = format!("{}:{}", server.host, server.port.unwrap_or(3478));
        match tokio::time::timeout(STUN_TIMEOUT, query(&target, bind_ip)).await {
            Ok(Ok(ip)) => {
                tracing::info!(server = %target, public_ip = %ip, "STUN: discovered public address");
                return Some(ip);
            }
            Ok(Err(e)) => tracing::warn!(server = %target, error = %e, "STUN query failed"),
            Err(_) => tracing::warn!(server = %target, "STUN query timed out"),
        }
    }
    None
}

async fn query(target: &str, bind_ip: IpAddr) -> std::io::Result<IpAddr> {
    use std::io::{Error, ErrorKind};
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(target).await?.collect();
    let server = addrs
        .iter()
        .copied()
        .find(|a| a.is_ipv4() == bind_ip.is_ipv4())
        .ok_or_else(|| Error::new(ErrorKind::NotFound, "no address of the right family"))?;
    let socket = tokio::net::UdpSocket::bind(SocketAddr::new(bind_ip, 0)).await?;
    let mut tid = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut tid)
        .map_err(|_| Error::other("no randomness"))?;
    let mut request = Vec::new();
    Builder::new(&mut request, Class::Request, METHOD_BINDING, &tid).fingerprint();
    let mut buf = [0u8; 1500];
    // RFC 8489 retransmissions, compressed: 0, 0.5, 1.5 s (the caller's timeout ends it).
    for wait in [500u64, 1000, 1500] {
        socket.send_to(&request, server).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Ok(r) = tokio::time::timeout(left, socket.recv_from(&mut buf)).await else {
                break;
            };
            let (n, from) = r?;
            if from != server {
                continue;
            }
            let Some(data) = buf.get(..n) else { continue };
            let Ok(msg) = Message::parse(data) else {
                continue;
            };
            if msg.transaction_id != tid || msg.class != Class::Success {
                continue;
            }
            if let Some(mapped) = msg.xor_mapped_address() {
                return Ok(mapped.ip());
            }
        }
    }
    Err(Error::new(ErrorKind::TimedOut, "no answer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn conf(s: &str) -> Configured {
        s.parse().unwrap()
    }

    #[test]
    fn private_addresses() {
        for p in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.1.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(is_private(ip(p)), "{p}");
        }
        for p in ["203.0.113.5", "8.8.8.8", "2001:db8::1", "100.128.0.1"] {
            assert!(!is_private(ip(p)), "{p}");
        }
    }

    #[test]
    fn host_networking_with_the_node_ip_advertised() {
        // Kubernetes: bound to 0.0.0.0, JVB_ADVERTISE_IPS = status.hostIP = an interface address.
        let ifs = [
            ip("127.0.0.1"),
            ip("10.0.0.5"),
            ip("fe80::1"),
            ip("2001:db8::5"),
        ];
        let p = plan(sa("0.0.0.0:10000"), &[conf("10.0.0.5")], true, &ifs);
        assert_eq!(
            p,
            vec![AdvertisedAddress {
                addr: sa("10.0.0.5:10000"),
                typ: CandidateType::Host,
                related: None
            }],
            "node IP once, as host; no loopback, no IPv6 on an IPv4 socket"
        );
    }

    #[test]
    fn nat_mappings_and_private_candidates() {
        let ifs = [ip("127.0.0.1"), ip("10.0.0.5")];
        let bound: SocketAddr = sa("0.0.0.0:10000");
        let p = plan(
            bound,
            &[conf("203.0.113.7"), conf("198.51.100.1#30000")],
            true,
            &ifs,
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].addr, sa("203.0.113.7:10000"));
        assert_eq!(p[0].typ, CandidateType::Srflx);
        assert_eq!(p[0].related, Some(sa("10.0.0.5:10000")));
        assert_eq!(p[1].addr, sa("198.51.100.1:30000"));
        assert_eq!(p[2].addr, sa("10.0.0.5:10000"));
        assert_eq!(p[2].typ, CandidateType::Host);
        // Without private candidates only the public mappings remain.
        let p = plan(bound, &[conf("203.0.113.7")], false, &ifs);
        assert_eq!(p.len(), 1);
        // A public interface address is advertised even then.
        let p = plan(bound, &[], false, &[ip("203.0.113.9")]);
        assert_eq!(p[0].addr, sa("203.0.113.9:10000"));
    }

    #[test]
    fn bound_to_one_address() {
        let bound: SocketAddr = sa("127.0.0.1:4000");
        let p = plan(bound, &[conf("127.0.0.1")], true, &[ip("10.0.0.5")]);
        assert_eq!(
            p,
            vec![AdvertisedAddress {
                addr: bound,
                typ: CandidateType::Host,
                related: None
            }]
        );
        // The same port behind a port-forward is a mapping.
        let p = plan(bound, &[conf("127.0.0.1#5000")], true, &[]);
        assert_eq!(p[0].typ, CandidateType::Srflx);
        assert_eq!(p[1].addr, bound);
    }

    #[test]
    fn only_loopback_interfaces() {
        let p = plan(sa("0.0.0.0:10000"), &[], true, &[ip("127.0.0.1")]);
        assert_eq!(p[0].addr, sa("127.0.0.1:10000"));
        // The manifests on a loopback test: JVB_ADVERTISE_IPS=127.0.0.1 with a 0.0.0.0 bind is
        // our own address, so a host candidate (not a NAT mapping).
        let p = plan(
            "0.0.0.0:10000".parse().unwrap(),
            &[conf("127.0.0.1")],
            true,
            &[ip("127.0.0.1"), ip("192.0.2.2")],
        );
        assert_eq!(p[0].addr, sa("127.0.0.1:10000"));
        assert_eq!(p[0].typ, CandidateType::Host);
        assert_eq!(p[1].addr, sa("192.0.2.2:10000"));
    }

    #[test]
    fn stun_mapping_is_added_once() {
        let bound: SocketAddr = sa("0.0.0.0:10000");
        let ifs = [ip("10.0.0.5")];
        let mut p = plan(bound, &[], true, &ifs);
        assert!(add_stun_mapping(&mut p, bound, &ifs, ip("203.0.113.8")));
        assert!(!add_stun_mapping(&mut p, bound, &ifs, ip("203.0.113.8")));
        assert!(!add_stun_mapping(&mut p, bound, &ifs, ip("10.0.0.5")));
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].typ, CandidateType::Srflx);
        assert_eq!(p[1].related, Some(sa("10.0.0.5:10000")));
    }

    /// A real STUN exchange on loopback against a minimal server that maps every request to a
    /// fixed "public" address.
    #[tokio::test]
    async fn stun_discovery_against_a_loopback_server() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, from)) = server.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(req) = Message::parse(&buf[..n]) else {
                    continue;
                };
                let mut resp = Vec::new();
                Builder::new(
                    &mut resp,
                    Class::Success,
                    METHOD_BINDING,
                    &req.transaction_id,
                )
                .xor_mapped_address(sa("198.51.100.77:40000"))
                .fingerprint();
                let _ = server.send_to(&resp, from).await;
            }
        });
        let servers = [
            // An unanswered server first: discovery moves on after its timeout... but keep the
            // test fast by using a name that does not resolve.
            HostPort {
                host: "stun.invalid".into(),
                port: Some(3478),
            },
            HostPort {
                host: "127.0.0.1".into(),
                port: Some(addr.port()),
            },
        ];
        let got = discover_public_ip(&servers, ip("127.0.0.1")).await;
        assert_eq!(got, Some(ip("198.51.100.77")));
        // Nobody answers: None, within the timeout.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let t0 = std::time::Instant::now();
        let none = discover_public_ip(
            &[HostPort {
                host: "127.0.0.1".into(),
                port: Some(silent.local_addr().unwrap().port()),
            }],
            ip("127.0.0.1"),
        )
        .await;
        assert_eq!(none, None);
        assert!(t0.elapsed() < STUN_TIMEOUT + Duration::from_secs(1));
    }
}
