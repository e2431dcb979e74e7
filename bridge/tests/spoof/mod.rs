//! What an attacker on the path between a participant and the bridge can do, on loopback: see
//! copies of the participant's datagrams to the bridge ([`capture`]) and send datagrams from the
//! participant's own address and port ([`Spoofer`]). For the garbage-flood test in
//! `browser_bridge.rs`. Raw sockets need CAP_NET_RAW (the browser tests run as root); both refuse
//! anything but 127.0.0.0/8.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// One UDP datagram seen on its way to the bridge.
#[derive(Debug, Clone)]
pub struct Captured {
    pub from: SocketAddrV4,
    pub payload: Vec<u8>,
}

fn raw_socket(protocol: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned (and closed) by the OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_opt<T>(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, value: T) -> io::Result<()> {
    // SAFETY: `value` lives for the call and its size is passed alongside.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Copies of the UDP datagrams that arrive at 127.0.0.1:`port` from 127.0.0.1 during `time`
/// (a raw IPPROTO_UDP socket gets a copy of every UDP packet the host receives; on loopback each
/// datagram is received once).
pub fn capture(port: u16, time: Duration) -> io::Result<Vec<Captured>> {
    let fd = raw_socket(libc::IPPROTO_UDP)?;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 50_000,
    };
    set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, tv)?;
    // Room for bursts while this thread is descheduled (FORCE: past rmem_max, as root).
    let _ = set_opt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 8 << 20);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + time;
    while Instant::now() < deadline {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                _ => return Err(e),
            }
        }
        if let Some(c) = parse_udp(&buf[..n as usize], port) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The UDP payload of an IPv4 packet from 127.0.0.1 to 127.0.0.1:`port`.
fn parse_udp(ip: &[u8], port: u16) -> Option<Captured> {
    let ihl = usize::from(ip.first()? & 0x0F) * 4;
    if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl + 8 || ip[9] != libc::IPPROTO_UDP as u8 {
        return None;
    }
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[ihl..];
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if src != Ipv4Addr::LOCALHOST || dst != Ipv4Addr::LOCALHOST || dport != port {
        return None;
    }
    Some(Captured {
        from: SocketAddrV4::new(src, sport),
        payload: udp.get(8..len)?.to_vec(),
    })
}

/// Sends UDP datagrams with any loopback source address and port (IPPROTO_RAW: the IP header is
/// ours; the kernel fills in its checksum, total length and id).
pub struct Spoofer {
    fd: OwnedFd,
    packet: Vec<u8>,
}

impl Spoofer {
    pub fn new() -> io::Result<Spoofer> {
        Ok(Spoofer {
            fd: raw_socket(libc::IPPROTO_RAW)?,
            packet: Vec::with_capacity(1600),
        })
    }

    /// One datagram `from` → `to`, both on 127.0.0.0/8.
    pub fn send(&mut self, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8]) -> io::Result<()> {
        if !from.ip().is_loopback() || !to.ip().is_loopback() || payload.len() > 1472 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "loopback only, at most 1472 bytes",
            ));
        }
        let udp_len = 8 + payload.len() as u16;
        let p = &mut self.packet;
        p.clear();
        p.extend_from_slice(&[0x45, 0]);
        p.extend_from_slice(&(20 + udp_len).to_be_bytes());
        // id (kernel), DF, TTL 64, UDP, checksum (kernel)
        p.extend_from_slice(&[0, 0, 0x40, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
        p.extend_from_slice(&from.ip().octets());
        p.extend_from_slice(&to.ip().octets());
        p.extend_from_slice(&from.port().to_be_bytes());
        p.extend_from_slice(&to.port().to_be_bytes());
        p.extend_from_slice(&udp_len.to_be_bytes());
        p.extend_from_slice(&[0, 0]); // no UDP checksum (allowed over IPv4, RFC 768)
        p.extend_from_slice(payload);
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(to.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `p` and `sin` are valid for the lengths passed.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                p.as_ptr().cast(),
                p.len(),
                0,
                (&sin as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
