//! Batched datagram I/O for the port's socket (Linux): `recvmmsg` fills up to [`BATCH`] reused
//! buffers per readiness, `sendmmsg` sends up to [`BATCH`] messages per call, and a run of
//! consecutive transmits to one destination with equal sizes (the last may be shorter) goes as one
//! UDP GSO message (`UDP_SEGMENT`, Linux ≥ 4.18) that the kernel cuts into datagrams.
//!
//! Why: the syscalls, not the forwarding, were the bulk of a forwarded packet's cost (media
//! README, "Measured reason"); on loopback here a `sendto` of 1200 B costs ≈ 3 µs, one datagram of
//! a GSO message ≈ 0.5 µs.
//!
//! Why not quinn-udp: it sends one `sendmsg` per destination run (no `sendmmsg`), and a fan-out
//! flush is mostly runs of one datagram each to different receivers, where `sendmmsg` is the
//! saving. The syscalls are a few lines of `libc` on the socket tokio watches ([`MediaSocket`]);
//! everything is built on the stack per call (no allocation, nothing non-`Send` held across an
//! `.await`).
//!
//! A kernel or device may refuse GSO (EIO: no checksum offload on the route's device; EINVAL:
//! e.g. `SO_NO_CHECK`): the failed message is sent again without it, GSO stays off for the
//! socket, and [`IoCounters::gso_disabled`] counts it.
//!
//! On receive, UDP GRO (`UDP_GRO`, Linux ≥ 5.0) where the kernel offers it ([`enable_gro`]): the
//! kernel may hand several consecutive datagrams of one flow as one message (a GSO sender's message
//! on loopback, a NIC's GRO on the wire) with their segment size in a `UDP_GRO` control message;
//! [`RecvBatch::datagrams`] cuts it back into the datagrams. Its slots then hold 64 KB each (2 MB
//! per port instead of 64 KB).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Datagrams per `recvmmsg` and messages per `sendmmsg`.
pub const BATCH: usize = 32;
/// Largest datagram received whole; a longer one is truncated by the kernel, dropped and counted.
pub const MAX_DATAGRAM: usize = 2048;
/// A receive slot with GRO: the largest UDP payload the kernel may coalesce into one message.
const GRO_SLOT: usize = 65_536;
/// Segments per GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 on older kernels).
const MAX_GSO_SEGMENTS: usize = 64;
/// Bytes per GSO message (an IP datagram's payload limit, less headers).
const MAX_GSO_BYTES: usize = 65_000;
/// iovecs per `sendmmsg` call (one per datagram).
const MAX_IOV: usize = 256;

/// A media port's socket, registered with tokio's epoll for reading only.
///
/// tokio's `UdpSocket` registers for writing too, and the kernel raises a writable edge each time
/// sent datagrams leave the send buffer (`sock_wfree`): behind a NIC at every transmit completion,
/// which wakes a worker sleeping in `epoll_wait` for nothing, and on loopback one more
/// `epoll_wait` per wake-up. A UDP send buffer is full only when the link is saturated, so
/// writability is waited for only then ([`MediaSocket::send_all`]), through a second
/// registration made for that wait and dropped after it.
pub struct MediaSocket {
    fd: tokio::io::unix::AsyncFd<std::net::UdpSocket>,
}

/// A readiness of a [`MediaSocket`] (for [`RecvBatch::recv_guarded`]).
pub type MediaReadyGuard<'a> = tokio::io::unix::AsyncFdReadyGuard<'a, std::net::UdpSocket>;

impl MediaSocket {
    /// Takes a bound socket (made non-blocking). Call inside the tokio runtime that will run it.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        Ok(Self {
            fd: register(socket, tokio::io::Interest::READABLE)?,
        })
    }

    /// Waits until datagrams may be waiting.
    pub async fn readable(&self) -> io::Result<MediaReadyGuard<'_>> {
        self.fd.readable().await
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }

    /// Sends every transmit ([`send_some`] batches); a full send buffer is waited out, each wait
    /// counted in [`IoCounters::send_buffer_full`]. Stops early only on an error of the socket
    /// itself (logged).
    pub async fn send_all<D: AsRef<[u8]>>(&self, transmits: &[(SocketAddr, D)], io: &IoCounters) {
        use std::os::fd::AsRawFd;
        let fd = self.fd.get_ref().as_raw_fd();
        let mut done = 0;
        while done < transmits.len() {
            match send_some(fd, &transmits[done..], io) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    IoCounters::add(&io.send_buffer_full, 1);
                    if let Err(e) = self.writable().await {
                        tracing::debug!("udp socket not writable: {e}");
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!("udp send failed: {e}");
                    break;
                }
            }
        }
    }

    /// Waits for room in the send buffer: registers a duplicate of the descriptor for writing,
    /// which epoll reports at once if there is room already, and deregisters it after.
    async fn writable(&self) -> io::Result<()> {
        let dup = self.fd.get_ref().try_clone()?;
        let w = register(dup, tokio::io::Interest::WRITABLE)?;
        w.writable().await.map(drop)
    }
}

/// Registers a socket the `AsyncFd` then owns.
fn register(
    socket: std::net::UdpSocket,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the `AsyncFd` owns the socket, so its descriptor stays open and the same until the
    // `AsyncFd` is dropped (`UdpSocket::as_raw_fd` always returns the one it owns).
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(socket, interest) }
        .map_err(io::Error::from)
}

impl std::os::fd::AsRawFd for MediaSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}

/// What the port's socket did, in batches (relaxed atomics, updated once per syscall).
#[derive(Debug, Default)]
pub struct IoCounters {
    pub recv_calls: AtomicU64,
    pub datagrams_received: AtomicU64,
    /// Datagrams longer than [`MAX_DATAGRAM`], dropped.
    pub truncated: AtomicU64,
    pub send_calls: AtomicU64,
    pub datagrams_sent: AtomicU64,
    /// Messages sent with `UDP_SEGMENT` (each carries several datagrams).
    pub gso_messages: AtomicU64,
    /// Times the kernel refused GSO and it was switched off.
    pub gso_disabled: AtomicU64,
    /// Datagrams the kernel refused for another reason (logged, not retried).
    pub send_errors: AtomicU64,
    /// Times a send found the send buffer full and waited for room ([`MediaSocket::send_all`]).
    pub send_buffer_full: AtomicU64,
    /// Datagrams this worker's socket received for another worker's endpoints and handed over
    /// (`handoff.rs`), in how many channel sends, and those lost because the owner's inbox was full.
    pub handed_off: AtomicU64,
    pub handoff_batches: AtomicU64,
    pub handoff_dropped: AtomicU64,
    /// Datagrams other workers handed to this one.
    pub handoff_received: AtomicU64,
    /// Messages received that carried several datagrams (GRO).
    pub gro_messages: AtomicU64,
    gso: AtomicBool,
    gro: AtomicBool,
}

impl IoCounters {
    /// Whether GSO is in use on the socket now.
    pub fn gso_enabled(&self) -> bool {
        self.gso.load(Relaxed)
    }

    /// Whether the socket receives with GRO.
    pub fn gro_enabled(&self) -> bool {
        self.gro.load(Relaxed)
    }

    /// Switches GSO off (the kernel refused it, or a test or operator wants it off).
    pub fn disable_gso(&self) {
        self.gso.store(false, Relaxed);
    }

    fn add(c: &AtomicU64, n: usize) {
        c.fetch_add(n as u64, Relaxed);
    }
}

/// Whether the kernel offers UDP GSO on `fd` (`getsockopt(SOL_UDP, UDP_SEGMENT)` succeeds).
pub fn probe_gso(fd: RawFd, counters: &IoCounters) -> bool {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; `value` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    let ok = r == 0;
    counters.gso.store(ok, Relaxed);
    ok
}

/// Asks for UDP GRO on `fd` (`setsockopt(SOL_UDP, UDP_GRO, 1)`); whether the kernel accepted.
/// Receive with a [`RecvBatch::new`]`(true)` then.
pub fn enable_gro(fd: RawFd, counters: &IoCounters) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is an open socket; the option value is a valid c_int whose size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_UDP,
            libc::UDP_GRO,
            std::ptr::from_ref(&one).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    let ok = r == 0;
    counters.gro.store(ok, Relaxed);
    ok
}

/// The receive side's reused buffers: one slot per message of a batch ([`MAX_DATAGRAM`] bytes, or
/// 64 KB with GRO).
pub struct RecvBatch {
    bufs: Box<[u8]>,
    slot: usize,
    gro: bool,
    /// `(source, length, segment size)` of each slot filled by the last call (segment size 0: one
    /// datagram); `None` for a dropped one.
    meta: [Option<(SocketAddr, usize, usize)>; BATCH],
    len: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self::new(false)
    }
}

impl RecvBatch {
    /// Buffers for a socket with GRO on (`gro`, see [`enable_gro`]) or off.
    pub fn new(gro: bool) -> Self {
        let slot = if gro { GRO_SLOT } else { MAX_DATAGRAM };
        Self {
            bufs: vec![0; slot * BATCH].into_boxed_slice(),
            slot,
            gro,
            meta: [None; BATCH],
            len: 0,
        }
    }

    /// The datagrams of the last call, in arrival order (truncated ones left out; a GRO message
    /// cut back into its datagrams).
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.meta[..self.len]
            .iter()
            .zip(self.bufs.chunks(self.slot))
            .filter_map(|(m, b)| m.and_then(|(from, n, seg)| Some((from, b.get(..n)?, seg))))
            .flat_map(|(from, d, seg)| {
                let (step, count) = if seg == 0 {
                    (d.len(), 1)
                } else {
                    (seg, d.len().div_ceil(seg))
                };
                (0..count).map(move |i| (from, &d[i * step..((i + 1) * step).min(d.len())]))
            })
    }

    /// One [`RecvBatch::recv`] on a tokio socket, for its readable branch: up to [`BATCH`]
    /// datagrams, `WouldBlock` when none was waiting. A batch shorter than [`BATCH`] emptied the
    /// socket (recvmmsg stops at its first EAGAIN), so the readiness is cleared at once, not
    /// after one more recvmmsg that finds nothing (a syscall and a loop turn per wake-up). No
    /// datagram is missed: mio's epoll is edge-triggered, so one arriving after the call raises a
    /// new edge.
    pub fn recv_ready(
        &mut self,
        socket: &tokio::net::UdpSocket,
        counters: &IoCounters,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let fd = socket.as_raw_fd();
        let r = socket.try_io(tokio::io::Interest::READABLE, || {
            self.recv_full_or_would_block(fd, counters)
        });
        self.taken(r)
    }

    /// [`RecvBatch::recv_ready`] on a [`MediaSocket`], whose readiness `guard` the caller awaited.
    pub fn recv_guarded(
        &mut self,
        guard: &mut MediaReadyGuard<'_>,
        counters: &IoCounters,
    ) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let r = match guard.try_io(|s| self.recv_full_or_would_block(s.as_raw_fd(), counters)) {
            Ok(r) => r,
            Err(_cleared) => Err(io::ErrorKind::WouldBlock.into()),
        };
        self.taken(r)
    }

    /// One `recvmmsg` for a readiness: tokio clears the readiness when this says `WouldBlock`,
    /// so it says so for a short batch too (which [`RecvBatch::taken`] hands back as taken).
    fn recv_full_or_would_block(&mut self, fd: RawFd, counters: &IoCounters) -> io::Result<usize> {
        match self.recv(fd, counters)? {
            n if n < BATCH => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn taken(&self, r: io::Result<usize>) -> io::Result<usize> {
        match r {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && self.len > 0 => Ok(self.len),
            other => other,
        }
    }

    /// One non-blocking `recvmmsg` (for `UdpSocket::try_io`): up to [`BATCH`] datagrams. Returns
    /// how many the kernel gave (`WouldBlock` when none was waiting).
    pub fn recv(&mut self, fd: RawFd, counters: &IoCounters) -> io::Result<usize> {
        self.len = 0;
        // SAFETY: all-zero is a valid value for these plain C structs.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut controls = [Control::default(); BATCH];
        for (i, buf) in self.bufs.chunks_mut(self.slot).enumerate() {
            iovs[i] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: self.slot,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = std::ptr::from_mut(&mut names[i]).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = std::ptr::from_mut(&mut iovs[i]);
            h.msg_iovlen = 1;
            if self.gro {
                h.msg_control = controls[i].0.as_mut_ptr().cast();
                h.msg_controllen = controls[i].0.len();
            }
        }
        // SAFETY: every header points at a name, one iovec, a buffer and (GRO) control bytes that
        // live until the call returns, with their true sizes; `msgs` has BATCH entries.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = usize::try_from(r).map_err(|_| io::Error::last_os_error())?;
        let (mut truncated, mut datagrams, mut coalesced) = (0, 0, 0);
        for ((meta, m), name) in self.meta.iter_mut().zip(&msgs).zip(&names).take(n) {
            let from = sockaddr_from_raw(name);
            let len = (m.msg_len as usize).min(self.slot);
            let seg = if self.gro {
                gro_segment(&m.msg_hdr).filter(|&s| s > 0 && s < len)
            } else {
                None
            };
            let count = seg.map_or(1, |s| len.div_ceil(s));
            datagrams += count;
            // Longer than MAX_DATAGRAM: cut by the kernel (no GRO), or a slot's worth (GRO).
            let too_long = seg.unwrap_or(len) > MAX_DATAGRAM;
            *meta = if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || too_long {
                truncated += count;
                None
            } else {
                coalesced += usize::from(seg.is_some());
                from.map(|a| (a, len, seg.unwrap_or(0)))
            };
        }
        self.len = n;
        IoCounters::add(&counters.recv_calls, 1);
        IoCounters::add(&counters.datagrams_received, datagrams);
        IoCounters::add(&counters.truncated, truncated);
        IoCounters::add(&counters.gro_messages, coalesced);
        Ok(n)
    }
}

/// How one `sendmmsg` went.
pub enum Sent {
    /// The first `n` transmits went out (at least one).
    Transmits(usize),
    /// The kernel refused the first message: its error, its number of transmits, whether it was
    /// a GSO message.
    Refused(io::Error, usize, bool),
}

/// One non-blocking `sendmmsg` (for `UdpSocket::try_io`) of the head of `transmits`: up to
/// [`BATCH`] messages, each a GSO run of one destination when `gso` (else one datagram).
/// `WouldBlock` is returned as an error so that tokio clears the socket's readiness.
pub fn send<D: AsRef<[u8]>>(
    fd: RawFd,
    transmits: &[(SocketAddr, D)],
    gso: bool,
    counters: &IoCounters,
) -> io::Result<Sent> {
    // SAFETY: all-zero is a valid value for these plain C structs.
    let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
    let mut iovs: [libc::iovec; MAX_IOV] = unsafe { zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut controls = [Control::default(); BATCH];
    // Transmits per message, and whether it carries UDP_SEGMENT.
    let mut runs = [(0usize, false); BATCH];
    let (mut nmsg, mut niov, mut next) = (0, 0, 0);
    while nmsg < BATCH && niov < MAX_IOV && next < transmits.len() {
        let (to, first) = &transmits[next];
        let size = first.as_ref().len();
        // The run: same destination, same size; the last one may be shorter, and ends it.
        let mut end = next + 1;
        if gso && size > 0 {
            let cap = MAX_GSO_SEGMENTS
                .min(MAX_GSO_BYTES / size)
                .min(MAX_IOV - niov);
            while end < transmits.len() && end - next < cap {
                let (d, data) = &transmits[end];
                let len = data.as_ref().len();
                if d != to || len > size || len == 0 {
                    break;
                }
                end += 1;
                if len < size {
                    break;
                }
            }
        }
        let namelen = sockaddr_to_raw(*to, &mut names[nmsg]);
        for (k, (_, data)) in transmits[next..end].iter().enumerate() {
            let data = data.as_ref();
            iovs[niov + k] = libc::iovec {
                iov_base: data.as_ptr().cast_mut().cast(),
                iov_len: data.len(),
            };
        }
        let h = &mut msgs[nmsg].msg_hdr;
        h.msg_name = std::ptr::from_mut(&mut names[nmsg]).cast();
        h.msg_namelen = namelen;
        h.msg_iov = std::ptr::from_mut(&mut iovs[niov]);
        h.msg_iovlen = end - next;
        let segmented = end - next > 1;
        if segmented {
            controls[nmsg].segment(h, size as u16);
        }
        runs[nmsg] = (end - next, segmented);
        niov += end - next;
        next = end;
        nmsg += 1;
    }
    if nmsg == 0 {
        return Ok(Sent::Transmits(0));
    }
    // SAFETY: every header points at a name, its iovecs, their (borrowed, unmodified) buffers and
    // its control bytes, all alive until the call returns; `msgs` has `nmsg` initialised entries.
    let r = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), nmsg as libc::c_uint, 0) };
    IoCounters::add(&counters.send_calls, 1);
    match usize::try_from(r) {
        Ok(m) => {
            let done = runs[..m].iter().map(|r| r.0).sum();
            let gso_messages = runs[..m].iter().filter(|r| r.1).count();
            IoCounters::add(&counters.datagrams_sent, done);
            IoCounters::add(&counters.gso_messages, gso_messages);
            Ok(Sent::Transmits(done))
        }
        Err(_) => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Err(e);
            }
            Ok(Sent::Refused(e, runs[0].0, runs[0].1))
        }
    }
}

/// [`send`] with the kernel's refusals handled, for `UdpSocket::try_io`: returns how many
/// transmits of the head of `transmits` are done — sent, or refused and counted in
/// [`IoCounters::send_errors`] — and 0 after switching GSO off because the kernel refused it
/// (call again: the same transmits then go without it). `WouldBlock` is returned as an error.
pub fn send_some<D: AsRef<[u8]>>(
    fd: RawFd,
    transmits: &[(SocketAddr, D)],
    counters: &IoCounters,
) -> io::Result<usize> {
    match send(fd, transmits, counters.gso_enabled(), counters)? {
        Sent::Transmits(n) => Ok(n),
        Sent::Refused(e, _, true) if refuses_gso(&e) => {
            counters.disable_gso();
            IoCounters::add(&counters.gso_disabled, 1);
            tracing::warn!("UDP GSO refused by the kernel ({e}); sending without it");
            Ok(0)
        }
        Sent::Refused(e, n, _) => {
            let to = transmits.first().map(|t| t.0);
            tracing::debug!("udp send to {to:?} failed: {e}");
            IoCounters::add(&counters.send_errors, n);
            Ok(n)
        }
    }
}

/// Whether a refused GSO message means the kernel or route cannot segment (switch GSO off).
pub fn refuses_gso(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL))
}

/// The segment size of a GRO message (its `UDP_GRO` control message), if it has one.
fn gro_segment(h: &libc::msghdr) -> Option<usize> {
    // SAFETY: `h` is a header the kernel filled, its `msg_control`/`msg_controllen` describing
    // control bytes still alive (the caller's `controls`); CMSG_FIRSTHDR / CMSG_NXTHDR stay
    // inside them and CMSG_DATA of a `UDP_GRO` cmsg holds a c_int.
    unsafe {
        if h.msg_control.is_null() {
            return None;
        }
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                return usize::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    None
}

/// One message's control bytes: room for one `UDP_SEGMENT` or `UDP_GRO` cmsg (a u16 / an int),
/// aligned for `cmsghdr`.
#[derive(Clone, Copy, Default)]
#[repr(C, align(8))]
struct Control([u8; 32]);

impl Control {
    fn segment(&mut self, h: &mut libc::msghdr, size: u16) {
        // SAFETY: CMSG_SPACE(2) = 24 ≤ 32 bytes, the buffer is aligned for cmsghdr, and
        // CMSG_FIRSTHDR / CMSG_DATA stay inside `msg_control`'s `msg_controllen` bytes.
        unsafe {
            let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
            h.msg_control = self.0.as_mut_ptr().cast();
            h.msg_controllen = space;
            let c = libc::CMSG_FIRSTHDR(h);
            (*c).cmsg_level = libc::SOL_UDP;
            (*c).cmsg_type = libc::UDP_SEGMENT;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size);
        }
    }
}

fn sockaddr_to_raw(addr: SocketAddr, out: &mut libc::sockaddr_storage) -> libc::socklen_t {
    let p = std::ptr::from_mut(out);
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { p.cast::<libc::sockaddr_in>().write(sin) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { p.cast::<libc::sockaddr_in6>().write(sin6) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn sockaddr_from_raw(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let p = std::ptr::from_ref(s);
    match libc::c_int::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into the storage.
            let a = unsafe { p.cast::<libc::sockaddr_in>().read() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into the storage.
            let a = unsafe { p.cast::<libc::sockaddr_in6>().read() };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a.sin6_addr.s6_addr),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::shell::setsockopt_int;
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    /// A short batch clears the socket's readiness at once (the next wait blocks instead of
    /// returning for one more empty recvmmsg), and a datagram that arrives afterwards still wakes
    /// the reader: nothing is missed.
    #[tokio::test]
    async fn a_short_batch_clears_readiness_and_a_later_datagram_still_wakes() {
        let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = rx.local_addr().unwrap();
        let tx = socket();
        let (mut batch, io) = (RecvBatch::new(false), IoCounters::default());
        for i in 0..3u8 {
            tx.send_to(&[i; 10], to).unwrap();
        }
        let wait = Duration::from_secs(2);
        tokio::time::timeout(wait, rx.readable())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch.recv_ready(&rx, &io).unwrap(), 3);
        assert_eq!(batch.datagrams().count(), 3);
        // Drained: no readiness left until something new arrives.
        let short = Duration::from_millis(100);
        assert!(tokio::time::timeout(short, rx.readable()).await.is_err());
        assert_eq!(io.recv_calls.load(Relaxed), 1, "no empty recvmmsg");
        tx.send_to(&[9; 10], to).unwrap();
        tokio::time::timeout(wait, rx.readable())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batch.recv_ready(&rx, &io).unwrap(), 1);
        let got: Vec<_> = batch.datagrams().map(|(_, d)| d.to_vec()).collect();
        assert_eq!(got, vec![vec![9; 10]]);
    }

    /// The epoll registrations of the socket `fd` in this process, as their event masks
    /// (`/proc/self/fdinfo` of every epoll descriptor lists what it watches, by inode; mio holds
    /// its epoll under two descriptors, so a registration is counted once).
    fn epoll_masks(fd: RawFd) -> Vec<u32> {
        let mut st: libc::stat = unsafe { zeroed() };
        // SAFETY: `fd` is open; `st` is valid for writes.
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        let ino = format!("ino:{:x}", st.st_ino);
        let mut seen = std::collections::HashSet::new();
        let mut masks = Vec::new();
        for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            let is_epoll = std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("eventpoll"));
            if !is_epoll {
                continue;
            }
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            for line in info.lines().filter(|l| l.starts_with("tfd:")) {
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.contains(&ino.as_str()) && seen.insert(line.to_owned()) {
                    let at = words.iter().position(|w| *w == "events:").unwrap();
                    masks.push(u32::from_str_radix(words[at + 1], 16).unwrap());
                }
            }
        }
        masks
    }

    /// The media socket is watched for reading only: sends raise no writable edges to wake the
    /// worker. Waiting for room registers a second watch, for writing, that is gone afterwards.
    #[tokio::test]
    async fn the_media_socket_is_watched_for_reading_only() {
        use std::os::fd::AsRawFd;
        let media = MediaSocket::new(socket()).unwrap();
        let fd = media.as_raw_fd();
        let readable_only = |masks: Vec<u32>| {
            assert_eq!(masks.len(), 1, "one registration: {masks:x?}");
            assert_ne!(masks[0] & libc::EPOLLIN as u32, 0, "{masks:x?}");
            assert_eq!(masks[0] & libc::EPOLLOUT as u32, 0, "{masks:x?}");
        };
        readable_only(epoll_masks(fd));
        let rx = socket();
        let to = rx.local_addr().unwrap();
        let io = IoCounters::default();
        let transmits: Vec<_> = (0..10).map(|i| (to, datagram(i, 100))).collect();
        media.send_all(&transmits, &io).await;
        for i in 0..10 {
            let mut buf = [0u8; 200];
            assert_eq!(rx.recv(&mut buf).unwrap(), 100);
            assert_eq!(buf[1], i as u8);
        }
        // Room in the buffer: the wait ends at once (epoll reports the state on registration).
        tokio::time::timeout(Duration::from_secs(2), media.writable())
            .await
            .unwrap()
            .unwrap();
        readable_only(epoll_masks(fd));
    }

    /// A send buffer that fills up (a link slower than the sender: here a token-bucket qdisc on
    /// the loopback of a network namespace the test makes, gone with its thread) is waited out:
    /// every datagram arrives, in order, and the waits are counted. Needs root, as the other
    /// namespace tests.
    #[test]
    fn a_full_send_buffer_is_waited_out_and_nothing_is_lost() {
        std::thread::spawn(|| {
            // SAFETY: plain syscall; the new namespace is this thread's alone.
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWNET) },
                0,
                "unshare (root?)"
            );
            let run = |args: &[&str]| {
                let ok = std::process::Command::new(args[0])
                    .args(&args[1..])
                    .status();
                assert!(ok.is_ok_and(|s| s.success()), "{args:?}");
            };
            run(&["ip", "link", "set", "lo", "up"]);
            // 20 Mbit/s: the datagrams take ≈ 25 ms; the queue never drops. As many as the
            // receiver's default buffer holds (the test reads them afterwards).
            const COUNT: usize = 60;
            run(&[
                "tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", "20mbit", "burst", "4kb",
                "latency", "5s",
            ]);
            let rx = socket();
            let to = rx.local_addr().unwrap();
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            setsockopt_int(tx.as_raw_fd(), libc::SO_SNDBUF, 4096).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let media = MediaSocket::new(tx).unwrap();
                let io = IoCounters::default();
                io.disable_gso(); // one datagram per message: the buffer fills datagram by datagram
                let transmits: Vec<_> = (0..COUNT).map(|i| (to, datagram(i, 1000))).collect();
                tokio::time::timeout(Duration::from_secs(10), media.send_all(&transmits, &io))
                    .await
                    .expect("the sends finished");
                let waits = io.send_buffer_full.load(Relaxed);
                assert!(waits > 0, "the buffer filled");
                // Each wait ends when there is room again, not at once (no spinning).
                assert!(waits < COUNT as u64, "{waits} waits");
                assert_eq!(io.datagrams_sent.load(Relaxed), COUNT as u64);
                assert_eq!(io.send_errors.load(Relaxed), 0);
                assert_eq!(
                    epoll_masks(media.as_raw_fd()).len(),
                    1,
                    "the wait's watch is gone"
                );
            });
            for i in 0..COUNT {
                let mut buf = [0u8; 2000];
                assert_eq!(rx.recv(&mut buf).unwrap(), 1000);
                assert_eq!(buf[1], i as u8, "in order");
            }
        })
        .join()
        .unwrap();
    }

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Datagram `i` of a burst: its index in every byte, so order and content are both checked.
    fn datagram(i: usize, len: usize) -> Vec<u8> {
        let mut d = vec![i as u8; len];
        d[0] = 0x80;
        d
    }

    /// Sends everything the way `Port::flush` does (blocking socket: no `WouldBlock`).
    fn send_all(from: &UdpSocket, transmits: &[(SocketAddr, Vec<u8>)], counters: &IoCounters) {
        let mut done = 0;
        let mut rounds = 0;
        while done < transmits.len() {
            done += send_some(from.as_raw_fd(), &transmits[done..], counters).unwrap();
            rounds += 1;
            assert!(rounds < 1000, "no progress");
        }
    }

    /// Grows `s`'s receive buffer as far as this process may and returns how many bytes of
    /// datagrams (kernel accounting included, ≈ 3 KB per 1200 B datagram) it holds.
    fn grow_receive_buffer(s: &UdpSocket) -> usize {
        let fd = s.as_raw_fd();
        let set = |opt, v: libc::c_int| {
            // SAFETY: valid socket and a c_int option value of the size given.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    std::ptr::from_ref(&v).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                )
            }
        };
        if set(libc::SO_RCVBUFFORCE, 8 << 20) != 0 {
            set(libc::SO_RCVBUF, 8 << 20);
        }
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid socket; `v` and `len` are valid for writes of the sizes given.
        unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                std::ptr::from_mut(&mut v).cast(),
                &mut len,
            )
        };
        usize::try_from(v).unwrap_or(0)
    }

    /// Receives `n` datagrams on a thread started before the burst (the burst is larger than
    /// the default receive buffer).
    fn receive(to: UdpSocket, n: usize) -> std::thread::JoinHandle<Vec<(SocketAddr, Vec<u8>)>> {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            (0..n)
                .map(|_| {
                    let (len, from) = to.recv_from(&mut buf).expect("datagram");
                    (from, buf[..len].to_vec())
                })
                .collect()
        })
    }

    /// A burst to one receiver: up to 300 × 1200 B (what the receive buffer holds) and a shorter
    /// last one (a video frame), sent with GSO (`sendmmsg` of 64-segment messages) and with GSO
    /// off (one datagram per message): every datagram arrives whole, in order, as itself.
    #[test]
    fn a_burst_to_one_destination_arrives_intact_and_in_order_with_gso_on_and_off() {
        for gso in [true, false] {
            let (tx, rx) = (socket(), socket());
            let counters = IoCounters::default();
            assert!(
                probe_gso(tx.as_raw_fd(), &counters),
                "the kernel offers UDP GSO (Linux ≥ 4.18)"
            );
            if !gso {
                counters.disable_gso();
            }
            let to = rx.local_addr().unwrap();
            let n = (grow_receive_buffer(&rx) / 3000).clamp(65, 301);
            let burst: Vec<_> = (0..n)
                .map(|i| (to, datagram(i, if i == n - 1 { 700 } else { 1200 })))
                .collect();
            let got = receive(rx, burst.len());
            send_all(&tx, &burst, &counters);
            let got = got.join().unwrap();
            let from = tx.local_addr().unwrap();
            assert_eq!(got.len(), burst.len());
            for (i, ((f, g), (_, want))) in got.iter().zip(&burst).enumerate() {
                assert_eq!((f, g), (&from, want), "datagram {i} (gso {gso})");
            }
            let c = |x: &AtomicU64| x.load(Relaxed);
            assert_eq!(c(&counters.datagrams_sent), n as u64);
            assert_eq!(c(&counters.gso_disabled), 0);
            if gso {
                // Messages of ≤ 54 segments (65 000 B / 1200 B; a last one of 1 is a plain
                // datagram), ≤ 256 iovecs per call: 301 → 54 × 4 + 40, then 45, in two calls.
                let per = MAX_GSO_BYTES / 1200;
                let (mut left, mut segmented) = (n, 0);
                while left > 0 {
                    let mut call = left.min(MAX_IOV);
                    left -= call;
                    while call > 0 {
                        let seg = call.min(per);
                        segmented += usize::from(seg > 1);
                        call -= seg;
                    }
                }
                assert_eq!(c(&counters.gso_messages), segmented as u64, "gso on, {n}");
                assert_eq!(c(&counters.send_calls), n.div_ceil(256) as u64, "gso on");
            } else {
                assert_eq!(c(&counters.gso_messages), 0, "gso off");
                assert_eq!(c(&counters.send_calls), n.div_ceil(32) as u64, "gso off");
            }
        }
    }

    /// Fan-out: runs to different receivers interleave and vary in size. GSO groups only
    /// consecutive equal-sized datagrams to one receiver; each receiver gets its own in order.
    #[test]
    fn interleaved_receivers_each_get_their_datagrams_in_order() {
        let tx = socket();
        let rx: Vec<_> = (0..3).map(|_| socket()).collect();
        let addrs: Vec<_> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let counters = IoCounters::default();
        probe_gso(tx.as_raw_fd(), &counters);
        // (receiver, size): A A A | B | A A(short) | C C(longer: not one run) | B B B
        let plan = [
            (0, 1000),
            (0, 1000),
            (0, 1000),
            (1, 300),
            (0, 1000),
            (0, 400),
            (2, 200),
            (2, 900),
            (1, 300),
            (1, 300),
            (1, 300),
        ];
        let transmits: Vec<_> = plan
            .iter()
            .enumerate()
            .map(|(i, &(r, len))| (addrs[r], datagram(i, len)))
            .collect();
        let handles: Vec<_> = rx
            .into_iter()
            .enumerate()
            .map(|(r, s)| receive(s, plan.iter().filter(|p| p.0 == r).count()))
            .collect();
        send_all(&tx, &transmits, &counters);
        for (r, h) in handles.into_iter().enumerate() {
            let got: Vec<_> = h.join().unwrap().into_iter().map(|(_, d)| d).collect();
            let want: Vec<_> = transmits
                .iter()
                .filter(|t| t.0 == addrs[r])
                .map(|t| t.1.clone())
                .collect();
            assert_eq!(got, want, "receiver {r}");
        }
        // Runs A×3, A×2 and B×3 are GSO messages; the rest single datagrams; one call.
        assert_eq!(counters.gso_messages.load(Relaxed), 3);
        assert_eq!(counters.send_calls.load(Relaxed), 1);
    }

    /// A socket on which the kernel refuses GSO (`SO_NO_CHECK`: no UDP checksum, so no
    /// segmentation offload; EINVAL): GSO is switched off once, counted, and the burst still
    /// arrives whole and in order.
    #[test]
    fn gso_refused_by_the_kernel_falls_back_and_loses_nothing() {
        let (tx, rx) = (socket(), socket());
        setsockopt_int(tx.as_raw_fd(), libc::SO_NO_CHECK, 1).unwrap();
        let counters = IoCounters::default();
        assert!(probe_gso(tx.as_raw_fd(), &counters));
        let to = rx.local_addr().unwrap();
        let burst: Vec<_> = (0..40).map(|i| (to, datagram(i, 1100))).collect();
        let got = receive(rx, burst.len());
        send_all(&tx, &burst, &counters);
        let got: Vec<_> = got.join().unwrap().into_iter().map(|(_, d)| d).collect();
        let want: Vec<_> = burst.into_iter().map(|(_, d)| d).collect();
        assert_eq!(got, want);
        assert!(!counters.gso_enabled());
        assert_eq!(counters.gso_disabled.load(Relaxed), 1);
        assert_eq!(counters.gso_messages.load(Relaxed), 0);
        assert_eq!(counters.datagrams_sent.load(Relaxed), 40);
    }

    /// `recvmmsg`: 41 datagrams from three senders, an empty one and one too long for a slot,
    /// waiting together: two calls take them (32 + 9) in arrival order with their sources, the
    /// long one is dropped and counted, and a third call finds nothing.
    #[test]
    fn recv_takes_a_batch_with_sources_and_drops_truncated_datagrams() {
        let rx = socket();
        rx.set_nonblocking(true).unwrap();
        let to = rx.local_addr().unwrap();
        let senders: Vec<_> = (0..3).map(|_| socket()).collect();
        let mut sent = Vec::new();
        for i in 0..39 {
            let s = &senders[i % 3];
            let d = datagram(i, 100 + i * 10);
            s.send_to(&d, to).unwrap();
            sent.push((s.local_addr().unwrap(), d));
        }
        senders[0].send_to(&[0u8; 3000], to).unwrap();
        senders[1].send_to(&[], to).unwrap();
        sent.push((senders[1].local_addr().unwrap(), Vec::new()));

        let counters = IoCounters::default();
        let mut batch = RecvBatch::default();
        let mut got = Vec::new();
        let mut calls = Vec::new();
        loop {
            match batch.recv(rx.as_raw_fd(), &counters) {
                Ok(n) => calls.push(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            got.extend(batch.datagrams().map(|(f, d)| (f, d.to_vec())));
        }
        assert_eq!(calls, vec![32, 9]);
        assert_eq!(got, sent);
        assert_eq!(counters.truncated.load(Relaxed), 1);
        assert_eq!(counters.datagrams_received.load(Relaxed), 41);
    }

    /// GRO on loopback: a GSO sender's burst (20 × 1200 B and a 700 B last one) to a GRO receiver
    /// arrives as one message with its segment size, and the batch cuts it back into the 21
    /// datagrams, whole and in order; a plain datagram from elsewhere in the same batch stays as it
    /// is and a too-long one is dropped and counted. Without GRO (control) the burst is 21
    /// messages and nothing is coalesced.
    #[test]
    fn a_gso_burst_reaches_a_gro_receiver_as_one_message_and_is_cut_back() {
        for gro in [true, false] {
            let (tx, rx, other) = (socket(), socket(), socket());
            rx.set_nonblocking(true).unwrap();
            let rc = IoCounters::default();
            if gro {
                assert!(
                    enable_gro(rx.as_raw_fd(), &rc),
                    "the kernel offers UDP GRO (Linux ≥ 5.0)"
                );
            }
            let tc = IoCounters::default();
            assert!(probe_gso(tx.as_raw_fd(), &tc));
            let to = rx.local_addr().unwrap();
            let burst: Vec<_> = (0..21)
                .map(|i| (to, datagram(i, if i == 20 { 700 } else { 1200 })))
                .collect();
            send_all(&tx, &burst, &tc);
            assert_eq!(tc.gso_messages.load(Relaxed), 1, "sent as one GSO message");
            other.send_to(&datagram(99, 300), to).unwrap();
            other.send_to(&[0x80; 3000], to).unwrap();
            let from = tx.local_addr().unwrap();
            let mut want: Vec<_> = burst.into_iter().map(|(_, d)| (from, d)).collect();
            want.push((other.local_addr().unwrap(), datagram(99, 300)));

            let mut batch = RecvBatch::new(gro);
            let mut got = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while rc.datagrams_received.load(Relaxed) < 23 && std::time::Instant::now() < deadline {
                match batch.recv(rx.as_raw_fd(), &rc) {
                    Ok(_) => got.extend(batch.datagrams().map(|(f, d)| (f, d.to_vec()))),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(got, want, "gro {gro}");
            let c = |x: &AtomicU64| x.load(Relaxed);
            assert_eq!(c(&rc.datagrams_received), 23, "gro {gro}");
            assert_eq!(c(&rc.truncated), 1, "gro {gro}");
            assert_eq!(c(&rc.gro_messages), u64::from(gro), "gro {gro}");
        }
    }
}
