//! The thin async shell: one UDP socket ([`MediaSocket`]: watched for reading only) driving the
//! demux and every endpoint of the port.
//!
//! The sans-IO state lives in [`PortState`]; [`Port::run`] owns the socket and calls a
//! [`PortHandler`] synchronously for every transport event and every command, so the consumer
//! (the forwarding core, or a test) runs in the same task as the socket: no channel hop and no
//! lock per packet. The socket is read a `recvmmsg` batch at a time and the transmits are flushed
//! once per batch, timer or command ([`super::udp`]: `sendmmsg`, UDP GSO).
//!
//! A datagram's path here: [`Demux::route`] (classify once, find the endpoint) →
//! `EndpointTransport::handle_datagram` (ICE / DTLS / SRTP) → its events to the handler → the
//! transmits the handler queued, flushed with the rest of the batch's. The endpoints' timers are one
//! [`TimerTable`](crate::timer::TimerTable) keyed by endpoint: re-armed only for endpoints whose
//! state changed, so neither a datagram nor [`PortState::poll_timeout`] scans every endpoint.

use std::hash::Hash;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rustc_hash::FxHashMap;
use tokio::sync::mpsc;

use crate::timer::{Deadline, TimerTable};

use super::counters::DropCounters;
use super::demux::{Demux, PacketKind, classify};
use super::endpoint::{EndpointTransport, SendError, TransportEvent};
use super::handoff::{HandedOff, RouteCache, Routes, WorkerId};
use super::restart::IceRestart;
use super::tx_pool::{TxBuf, TxPool};
use super::udp::{self, IoCounters, MediaSocket, RecvBatch};

/// Demux plus endpoints: everything but the socket.
pub struct PortState<K> {
    demux: Demux<K>,
    /// Looked up for every datagram sent (FxHash: the keys are our handles, not peer input).
    endpoints: FxHashMap<K, Slot>,
    /// Endpoints touched since the last flush, each once (its slot's flag says whether it is listed,
    /// so marking is O(1) however many receivers one ingress packet fans out to).
    dirty: Vec<K>,
    /// Endpoints that may have events to drain: touched by anything but queueing media since
    /// their events were last drained, each once. Not `dirty`: after one ingress datagram fanned
    /// out to every receiver, the next datagram of the batch would otherwise poll all of them.
    evented: Vec<K>,
    /// The endpoints' transport timers.
    timers: TimerTable<K>,
    /// Endpoints removed because their transport panicked, for the handler
    /// ([`PortHandler::on_fault`]).
    faulted: Vec<K>,
    /// Buffers for what the endpoints send, reused across flushes.
    tx: TxPool,
    /// When the port has several workers: this one's id and the shared directory.
    shared: Option<Shared>,
}

/// This worker's place among the port's workers (`handoff.rs`).
struct Shared {
    me: WorkerId,
    routes: Arc<Routes>,
    cache: RouteCache,
}

/// Where [`PortState::receive`] sent a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed<K> {
    /// To this endpoint of this worker.
    Here(K),
    /// To another worker of the port, which owns its endpoint: hand it over.
    Worker(WorkerId),
    /// Nowhere: dropped and counted.
    Dropped,
}

struct Slot {
    ep: EndpointTransport,
    /// Listed in `dirty` (transmits to flush).
    dirty: bool,
    /// Its timers may have moved (anything but queueing media): re-read at the flush.
    timer_dirty: bool,
    /// Listed in `evented`.
    evented: bool,
    deadline: Deadline,
    /// SRTP/SRTCP encrypted for it, waiting for the flush (buffers from [`PortState::tx`]).
    media: Vec<(SocketAddr, TxBuf)>,
}

/// Lists `key` for the next flush unless it already is.
fn touch<K: Clone>(dirty: &mut Vec<K>, key: &K, slot: &mut Slot) {
    if !slot.dirty {
        slot.dirty = true;
        dirty.push(key.clone());
    }
}

/// [`touch`], and the endpoint's timers are re-read at the flush and its events drained.
fn touch_all<K: Clone>(dirty: &mut Vec<K>, evented: &mut Vec<K>, key: &K, slot: &mut Slot) {
    touch(dirty, key, slot);
    slot.timer_dirty = true;
    if !slot.evented {
        slot.evented = true;
        evented.push(key.clone());
    }
}

impl<K: Clone + Eq + Hash> PortState<K> {
    pub fn new(counters: Arc<DropCounters>) -> Self {
        Self {
            demux: Demux::new(counters),
            endpoints: FxHashMap::default(),
            dirty: Vec::new(),
            evented: Vec::new(),
            timers: TimerTable::default(),
            faulted: Vec::new(),
            tx: TxPool::default(),
            shared: None,
        }
    }

    /// Makes this the state of worker `me` of a port shared by several workers: its endpoints'
    /// ufrags, authenticated addresses and STUN transactions go into `routes`, and datagrams it
    /// cannot route are looked up there ([`receive`](Self::receive)).
    pub fn share(&mut self, me: WorkerId, routes: Arc<Routes>) {
        self.shared = Some(Shared {
            me,
            routes,
            cache: RouteCache::default(),
        });
    }

    /// Removes `key` from the demux (and the shared routes).
    fn unregister(&mut self, key: &K) {
        let (ufrags, addrs) = self.demux.unregister(key);
        if let Some(s) = &self.shared {
            s.routes.forget(&ufrags, &addrs, s.me);
        }
    }

    /// Starts an in-place ICE restart of `key` (`restart.rs`) and routes the new generation's
    /// ufrag to it (a superseded one's goes). `None`: no such endpoint (or its transport panicked).
    pub fn restart_ice(&mut self, now: Instant, key: &K) -> Option<IceRestart> {
        let mut out = None;
        self.isolated(key, |ep| out = Some(ep.restart_ice(now)));
        if let Some(IceRestart::Started { .. }) = out
            && let Some(slot) = self.endpoints.get(key)
        {
            let ufrag = &slot.ep.advertised_credentials().ufrag;
            self.demux.register(ufrag, key.clone());
            if let Some(s) = &self.shared {
                s.routes.register(ufrag, s.me);
            }
        }
        self.forget_retired(key);
        out
    }

    /// Unroutes what `key`'s transport dropped of old ICE generations (`restart.rs`).
    fn forget_retired(&mut self, key: &K) {
        let Some(gone) = self
            .endpoints
            .get_mut(key)
            .and_then(|s| s.ep.take_retired_routes())
        else {
            return;
        };
        self.demux.forget(key, &gone.ufrags, &gone.addrs);
        if let Some(s) = &self.shared {
            s.routes.forget(&gone.ufrags, &gone.addrs, s.me);
        }
    }

    /// Endpoints whose transport panicked since the last call (already removed from the port).
    pub fn take_faulted(&mut self) -> Vec<K> {
        std::mem::take(&mut self.faulted)
    }

    /// Runs `f` on one endpoint's transport; if it panics, the endpoint is removed (its state
    /// cannot be trusted) and reported, and the port carries on with the others.
    fn isolated(&mut self, key: &K, f: impl FnOnce(&mut EndpointTransport)) -> bool {
        let Some(slot) = self.endpoints.get_mut(key) else {
            return false;
        };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut slot.ep))).is_ok();
        if ok {
            touch_all(&mut self.dirty, &mut self.evented, key, slot);
        } else {
            self.unregister(key);
            self.endpoints.remove(key);
            self.faulted.push(key.clone());
        }
        ok
    }

    pub fn counters(&self) -> &Arc<DropCounters> {
        self.demux.counters()
    }

    /// See [`Demux::set_source_filter`].
    pub fn set_source_filter(&mut self, filter: Option<fn(&SocketAddr) -> bool>) {
        self.demux.set_source_filter(filter);
    }

    /// Adds an endpoint and registers its local ufrag.
    pub fn add_endpoint(&mut self, key: K, ep: EndpointTransport) {
        self.demux
            .register(&ep.local_credentials().ufrag, key.clone());
        if let Some(s) = &self.shared {
            s.routes.register(&ep.local_credentials().ufrag, s.me);
        }
        let mut slot = Slot {
            ep,
            dirty: false,
            timer_dirty: false,
            evented: false,
            deadline: Deadline::default(),
            media: Vec::new(),
        };
        touch_all(&mut self.dirty, &mut self.evented, &key, &mut slot);
        self.endpoints.insert(key, slot);
    }

    /// Removes an endpoint (sends DTLS close_notify first).
    pub fn remove_endpoint(&mut self, now: Instant, key: &K) -> Option<EndpointTransport> {
        self.unregister(key);
        let mut slot = self.endpoints.remove(key)?;
        slot.ep.close(now);
        Some(slot.ep)
    }

    /// Mutable access; marks the endpoint for a transmit flush and a timer re-read.
    pub fn endpoint_mut(&mut self, key: &K) -> Option<&mut EndpointTransport> {
        let slot = self.endpoints.get_mut(key)?;
        touch_all(&mut self.dirty, &mut self.evented, key, slot);
        Some(&mut slot.ep)
    }

    pub fn endpoint(&self, key: &K) -> Option<&EndpointTransport> {
        self.endpoints.get(key).map(|s| &s.ep)
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.endpoints.keys()
    }

    /// Encrypts and queues RTP for `key` (the forwarding path: its timers do not move).
    pub fn send_rtp(&mut self, key: &K, packet: &[u8]) -> Result<(), SendError> {
        self.send_media(key, packet, false)
    }

    /// Encrypts and queues an RTCP compound for `key`.
    pub fn send_rtcp(&mut self, key: &K, packet: &[u8]) -> Result<(), SendError> {
        self.send_media(key, packet, true)
    }

    /// Encrypts the RTP packet the forwarding core built in `packet` where it is and queues that
    /// buffer for `key`; `packet` gets an empty buffer of the pool in its place (no copy: the core
    /// builds each receiver's copy straight into the buffer it is sent from,
    /// `sfu::Sink::emit_rtp_buffer`). On failure `packet` keeps the packet.
    pub fn send_rtp_buffer(&mut self, key: &K, packet: &mut TxBuf) -> Result<(), SendError> {
        let buf = std::mem::replace(packet, self.tx.take());
        self.queue_protected(key, buf, false).map_err(|(e, buf)| {
            self.tx.give(std::mem::replace(packet, buf));
            e
        })
    }

    /// Encrypts into a transmit buffer of the pool (no allocation once warm) queued on the slot.
    fn send_media(&mut self, key: &K, packet: &[u8], rtcp: bool) -> Result<(), SendError> {
        let mut buf = self.tx.take();
        buf.extend_from_slice(packet);
        self.queue_protected(key, buf, rtcp).map_err(|(e, buf)| {
            self.tx.give(buf);
            e
        })
    }

    /// Encrypts the packet in `buf` where it is and queues it on `key`'s slot; on failure hands
    /// `buf` back, holding the packet.
    fn queue_protected(
        &mut self,
        key: &K,
        mut buf: TxBuf,
        rtcp: bool,
    ) -> Result<(), (SendError, TxBuf)> {
        let Some(slot) = self.endpoints.get_mut(key) else {
            return Err((SendError::NotConnected, buf));
        };
        touch(&mut self.dirty, key, slot);
        match slot.ep.protect_in_place(&mut buf, rtcp) {
            Ok(to) => {
                slot.media.push((to, buf));
                Ok(())
            }
            Err(e) => Err((e, buf)),
        }
    }

    /// Routes one datagram among this worker's endpoints only; returns the endpoint key it went
    /// to (a datagram another worker handed over, or a port with one worker).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Option<K> {
        let (key, kind) = self.demux.route(from, data)?;
        self.deliver(now, from, data, key, kind)
    }

    /// Routes one datagram the socket received: to one of this worker's endpoints, or to the
    /// worker of the port that owns it (the caller hands it over), or nowhere (counted).
    pub fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) -> Routed<K> {
        match self.demux.lookup(from, data) {
            Ok((key, kind)) => match self.deliver(now, from, data, key, kind) {
                Some(k) => Routed::Here(k),
                None => Routed::Dropped,
            },
            Err(miss) => {
                if let Some(s) = &mut self.shared
                    && let Some(w) = s.cache.owner(&s.routes, from, miss.by)
                    && w != s.me
                {
                    return Routed::Worker(w);
                }
                self.demux.counters().count(miss.reason);
                Routed::Dropped
            }
        }
    }

    fn deliver(
        &mut self,
        now: Instant,
        from: SocketAddr,
        data: &[u8],
        key: K,
        kind: PacketKind,
    ) -> Option<K> {
        let mut authenticated = false;
        let ok = self.isolated(&key, |ep| {
            ep.handle_datagram(now, from, data);
            // Only a STUN message whose integrity the ICE agent verified teaches an address.
            authenticated = kind == PacketKind::Stun && ep.is_validated(from);
        });
        if authenticated
            && self.demux.learn(from, &key)
            && let Some(s) = &self.shared
        {
            s.routes.learn(from, s.me);
        }
        if kind == PacketKind::Stun {
            // A restart's cut-over (a STUN answer or check) may have retired a generation.
            self.forget_retired(&key);
        }
        ok.then_some(key)
    }

    /// Runs the endpoint timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.refresh_timers();
        let mut budget = self.timers.len() + 16;
        while budget > 0
            && let Some((k, at)) = self.timers.pop_due(now)
        {
            budget -= 1;
            let Some(slot) = self.endpoints.get_mut(&k) else {
                continue;
            };
            if !slot.deadline.fire(at) {
                continue;
            }
            // An armed deadline may be early (it is only ever lowered): ask the transport.
            self.isolated(&k, |ep| {
                if ep.poll_timeout().is_some_and(|t| t <= now) {
                    ep.handle_timeout(now);
                }
            });
            self.forget_retired(&k);
        }
        self.refresh_timers();
    }

    /// The earliest endpoint timer (a heap peek after re-reading the timers of endpoints that
    /// changed).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.refresh_timers();
        self.timers.next_deadline()
    }

    /// Re-reads the timers of endpoints whose state changed since.
    fn refresh_timers(&mut self) {
        for k in &self.dirty {
            if let Some(slot) = self.endpoints.get_mut(k)
                && slot.timer_dirty
            {
                slot.timer_dirty = false;
                self.timers
                    .lower(&mut slot.deadline, k.clone(), slot.ep.poll_timeout());
            }
        }
    }

    /// Drains the events of the endpoints that may have some (touched by anything but queueing
    /// media since their last drain) into `out`: O(those endpoints), not O(endpoints touched
    /// since the flush).
    pub fn drain_events(&mut self, out: &mut Vec<(K, TransportEvent)>) {
        for k in self.evented.drain(..) {
            if let Some(slot) = self.endpoints.get_mut(&k) {
                slot.evented = false;
                while let Some(e) = slot.ep.poll_event() {
                    out.push((k.clone(), e));
                }
            }
        }
    }

    /// Drains transmits of dirty endpoints, each in a buffer of the port's pool (give them back
    /// with [`PortState::recycle`] once sent). An endpoint's datagrams stay together (GSO runs).
    /// Our STUN requests' transaction ids go to the demux so their answers find the endpoint;
    /// destinations teach it nothing (see [`Demux`]).
    pub fn drain_transmits(&mut self, out: &mut Vec<(SocketAddr, TxBuf)>) {
        self.refresh_timers();
        for k in self.dirty.drain(..) {
            if let Some(slot) = self.endpoints.get_mut(&k) {
                slot.dirty = false;
                while let Some(t) = slot.ep.poll_transmit() {
                    if let Some(id) = stun_request_id(&t.data) {
                        self.demux.expect_response(id, &k);
                        if let Some(s) = &self.shared {
                            s.routes.expect_response(id, s.me);
                        }
                    }
                    let mut buf = self.tx.take();
                    buf.extend_from_slice(&t.data);
                    out.push((t.to, buf));
                }
                out.append(&mut slot.media);
            }
        }
    }

    /// Takes the buffers of sent (or abandoned) transmits back into the pool; empties `sent`.
    pub fn recycle(&mut self, sent: &mut Vec<(SocketAddr, TxBuf)>) {
        for (_, buf) in sent.drain(..) {
            self.tx.give(buf);
        }
    }
}

/// The transaction id of a STUN request (message class bits 00), if `d` is one.
fn stun_request_id(d: &[u8]) -> Option<[u8; 12]> {
    if classify(d) != PacketKind::Stun || d.len() < 20 || (d[0] & 0x01) != 0 || (d[1] & 0x10) != 0 {
        return None;
    }
    d.get(8..20)?.try_into().ok()
}

/// The consumer of a port's events (forwarding core, test harness).
pub trait PortHandler<K> {
    type Command: Send + 'static;
    /// A transport event of endpoint `key`. The handler may act on any endpoint via `port`.
    fn on_event(&mut self, now: Instant, key: &K, event: TransportEvent, port: &mut PortState<K>);
    /// A command from outside (signalling). Return false to stop the port.
    fn on_command(&mut self, now: Instant, cmd: Self::Command, port: &mut PortState<K>) -> bool;
    /// When the handler's own timers (e.g. the forwarding core's) next want [`on_timeout`](Self::on_timeout).
    /// Called once per loop turn: it should not scan anything that grows with the endpoints.
    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
    /// The handler's timers are due (called from the socket's task, like every other callback).
    fn on_timeout(&mut self, _now: Instant, _port: &mut PortState<K>) {}
    /// Endpoint `key`'s transport panicked and was removed from the port.
    fn on_fault(&mut self, _now: Instant, _key: &K, _port: &mut PortState<K>) {}
}

/// Hand-off messages a worker takes from its inbox after each turn of its loop, at most.
const MAX_HANDOFFS_PER_TURN: usize = 64;

/// A UDP port with its endpoints.
pub struct Port<K> {
    socket: MediaSocket,
    state: PortState<K>,
    /// Reused receive buffers (`recvmmsg`).
    recv: RecvBatch,
    io: Arc<IoCounters>,
    /// The other workers of the port, when it has several.
    handoff: Option<Handoff>,
}

/// One worker's links to the other workers of its port (`handoff.rs`): a bounded channel into
/// each (`None` at its own index), and its own inbox.
pub struct Handoff {
    pub peers: Vec<Option<mpsc::Sender<HandedOff>>>,
    pub inbox: mpsc::Receiver<HandedOff>,
    /// What this receive batch hands to each worker.
    outboxes: Vec<HandedOff>,
}

impl Handoff {
    pub fn new(
        peers: Vec<Option<mpsc::Sender<HandedOff>>>,
        inbox: mpsc::Receiver<HandedOff>,
    ) -> Self {
        let outboxes = peers.iter().map(|_| HandedOff::default()).collect();
        Handoff {
            peers,
            inbox,
            outboxes,
        }
    }

    /// Sends each worker its datagrams of the batch: one channel send per destination. A worker
    /// whose inbox is full (or gone) loses them; they are counted, the sender never waits.
    fn send(&mut self, io: &IoCounters) {
        use std::sync::atomic::Ordering::Relaxed;
        for (w, out) in self.outboxes.iter_mut().enumerate() {
            if out.is_empty() {
                continue;
            }
            let batch = std::mem::take(out);
            let n = batch.len() as u64;
            let sent = self
                .peers
                .get(w)
                .and_then(Option::as_ref)
                .is_some_and(|tx| tx.try_send(batch).is_ok());
            if sent {
                io.handed_off.fetch_add(n, Relaxed);
                io.handoff_batches.fetch_add(1, Relaxed);
            } else {
                io.handoff_dropped.fetch_add(n, Relaxed);
            }
        }
    }
}

impl<K: Clone + Eq + Hash + Send + 'static> Port<K> {
    pub async fn bind(addr: SocketAddr, counters: Arc<DropCounters>) -> io::Result<Self> {
        let socket = MediaSocket::new(std::net::UdpSocket::bind(addr)?)?;
        Ok(Self::with_socket(socket, counters, Arc::default()))
    }

    /// A port on a socket bound elsewhere (`handoff::bind_group`), counting its I/O into `io`.
    /// Call inside the tokio runtime that will run it.
    pub fn from_std(
        socket: std::net::UdpSocket,
        counters: Arc<DropCounters>,
        io: Arc<IoCounters>,
    ) -> io::Result<Self> {
        Ok(Self::with_socket(MediaSocket::new(socket)?, counters, io))
    }

    fn with_socket(socket: MediaSocket, counters: Arc<DropCounters>, io: Arc<IoCounters>) -> Self {
        use std::os::fd::AsRawFd;
        udp::probe_gso(socket.as_raw_fd(), &io);
        let gro = udp::enable_gro(socket.as_raw_fd(), &io);
        Self {
            socket,
            state: PortState::new(counters),
            recv: RecvBatch::new(gro),
            io,
            handoff: None,
        }
    }

    /// Makes this port worker `me` of a port shared with other workers: `routes` is their
    /// directory, `links` the channels between them.
    pub fn share(&mut self, me: WorkerId, routes: Arc<Routes>, links: Handoff) {
        self.state.share(me, routes);
        self.handoff = Some(links);
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The socket's batch counters (syscalls, datagrams, GSO use and fallbacks).
    pub fn io_counters(&self) -> &Arc<IoCounters> {
        &self.io
    }

    /// Asks the kernel for `bytes` of receive and of send buffer and returns what it granted
    /// `(receive, send)`. A media port takes bursts from hundreds of streams at once; Linux's
    /// default (≈ 208 KiB) overflows and drops them while the bridge is far from busy. The
    /// privileged options (`SO_RCVBUFFORCE`, CAP_NET_ADMIN) go past `net.core.rmem_max`; without
    /// the capability the plain options are capped there, which is not an error.
    pub fn set_buffer_sizes(&self, bytes: u32) -> io::Result<(usize, usize)> {
        use std::os::fd::AsRawFd;
        set_buffer_sizes(self.socket.as_raw_fd(), bytes)
    }

    pub fn state_mut(&mut self) -> &mut PortState<K> {
        &mut self.state
    }

    /// Runs until the command channel closes or the handler asks to stop. Returns the state.
    ///
    /// Each readiness of the socket takes a batch of up to [`udp::BATCH`] datagrams; each is
    /// routed and its events delivered in arrival order, and what the batch made the endpoints
    /// send is flushed once, so one receiver's datagrams of a batch can leave as one GSO message.
    pub async fn run<H: PortHandler<K>>(
        mut self,
        mut handler: H,
        mut commands: mpsc::Receiver<H::Command>,
    ) -> (PortState<K>, H) {
        let mut events = Vec::new();
        let mut transmits = Vec::new();
        // Datagrams the other workers of the port hand over (none with one worker).
        let (_closed, spare) = mpsc::channel(1);
        let mut inbox = match &mut self.handoff {
            Some(h) => std::mem::replace(&mut h.inbox, spare),
            None => spare,
        };
        let mut inbox_open = self.handoff.is_some();
        loop {
            let deadline = match (self.state.poll_timeout(), handler.poll_timeout()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = self.socket.readable() => {
                    let got = r.and_then(|mut g| self.recv.recv_guarded(&mut g, &self.io));
                    match got {
                        Ok(_) => {
                            let now = Instant::now();
                            for (from, data) in self.recv.datagrams() {
                                match self.state.receive(now, from, data) {
                                    Routed::Worker(w) => {
                                        if let Some(out) = self
                                            .handoff
                                            .as_mut()
                                            .and_then(|h| h.outboxes.get_mut(usize::from(w)))
                                        {
                                            out.push(from, data);
                                        }
                                    }
                                    Routed::Here(_) => {
                                        deliver_events(&mut self.state, &mut handler, &mut events);
                                    }
                                    Routed::Dropped => {}
                                }
                            }
                            if let Some(h) = &mut self.handoff {
                                h.send(&self.io);
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            // ICMP port unreachable surfaces here on Linux; not fatal.
                            tracing::debug!("udp recv error: {e}");
                        }
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    self.state.handle_timeout(now);
                    if handler.poll_timeout().is_some_and(|t| t <= now) {
                        handler.on_timeout(now, &mut self.state);
                    }
                }
                batch = inbox.recv(), if inbox_open => {
                    match batch {
                        Some(batch) => {
                            self.take_handed_off(&batch, &mut handler, &mut events);
                        }
                        None => inbox_open = false,
                    }
                }
                cmd = commands.recv() => {
                    let Some(cmd) = cmd else { break };
                    let now = Instant::now();
                    if !handler.on_command(now, cmd, &mut self.state) {
                        break;
                    }
                }
            }
            // Whatever branch ran, take what the other workers handed over meanwhile: a turn of
            // this loop may forward a whole receive batch (hundreds of datagrams out), and select!
            // picks one ready branch per turn, so one hand-off per turn would fall behind.
            if inbox_open {
                for _ in 0..MAX_HANDOFFS_PER_TURN {
                    let Ok(batch) = inbox.try_recv() else { break };
                    self.take_handed_off(&batch, &mut handler, &mut events);
                }
            }
            deliver_events(&mut self.state, &mut handler, &mut events);
            self.flush(&mut transmits).await;
        }
        self.flush(&mut transmits).await;
        (self.state, handler)
    }

    /// Processes datagrams another worker of the port handed over, as if received.
    fn take_handed_off<H: PortHandler<K>>(
        &mut self,
        batch: &HandedOff,
        handler: &mut H,
        events: &mut Vec<(K, TransportEvent)>,
    ) {
        let now = Instant::now();
        for (from, data) in batch.datagrams() {
            // Handed over once: routed among this worker's endpoints only.
            if self.state.handle_datagram(now, from, data).is_some() {
                deliver_events(&mut self.state, handler, events);
            }
        }
        self.io
            .handoff_received
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends every queued transmit: `sendmmsg` batches, GSO runs per destination.
    async fn flush(&mut self, transmits: &mut Vec<(SocketAddr, TxBuf)>) {
        self.state.recycle(transmits);
        self.state.drain_transmits(transmits);
        self.socket.send_all(transmits, &self.io).await;
        self.state.recycle(transmits);
    }
}

/// Delivers the dirty endpoints' events to the handler until none is left (handlers may cause
/// more, e.g. a data-channel reply).
fn deliver_events<K, H: PortHandler<K>>(
    state: &mut PortState<K>,
    handler: &mut H,
    events: &mut Vec<(K, TransportEvent)>,
) where
    K: Clone + Eq + Hash,
{
    // Transports that panicked on the last input first: the handler expires what they carried.
    for k in state.take_faulted() {
        handler.on_fault(Instant::now(), &k, state);
    }
    loop {
        events.clear();
        state.drain_events(events);
        if events.is_empty() {
            break;
        }
        let now = Instant::now();
        for (k, e) in events.drain(..) {
            handler.on_event(now, &k, e, state);
        }
    }
}

/// [`Port::set_buffer_sizes`] on any UDP socket `fd` (the workers' sockets before their ports).
pub fn set_buffer_sizes(fd: std::os::fd::RawFd, bytes: u32) -> io::Result<(usize, usize)> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for (forced, plain) in [
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
    ] {
        if setsockopt_int(fd, forced, want).is_err() {
            setsockopt_int(fd, plain, want)?;
        }
    }
    // Linux reports twice the requested size (its bookkeeping overhead); half is the payload.
    let granted = |opt| getsockopt_int(fd, opt).map(|v| usize::try_from(v / 2).unwrap_or(0));
    Ok((granted(libc::SO_RCVBUF)?, granted(libc::SO_SNDBUF)?))
}

/// `setsockopt(fd, SOL_SOCKET, option, value)` for an int option.
pub(super) fn setsockopt_int(
    fd: std::os::fd::RawFd,
    option: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is an open socket owned by the caller for the duration of the call; the option
    // value is a valid c_int whose size is passed.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_ref(&value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: std::os::fd::RawFd, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `fd` is an open socket; `value` and `len` are valid for writes of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if r == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Routes;
    use crate::transport::{DtlsIdentity, IceCredentials, TransportConfig};

    /// The media socket gets the buffer it asks for, up to what the kernel allows this process:
    /// everything with CAP_NET_ADMIN, `net.core.rmem_max`/`wmem_max` without.
    #[tokio::test]
    async fn media_socket_buffers_grow_to_what_the_kernel_allows() {
        let port: Port<u32> = Port::bind(
            "127.0.0.1:0".parse().unwrap(),
            Arc::new(DropCounters::new()),
        )
        .await
        .unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&port.socket);
        let before = getsockopt_int(fd, libc::SO_RCVBUF).unwrap() as usize / 2;
        let max = |name: &str| -> usize {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .unwrap()
                .trim()
                .parse()
                .unwrap()
        };
        let asked = 4usize << 20;
        let (receive, send) = port.set_buffer_sizes(asked as u32).unwrap();
        assert!(
            receive >= asked.min(max("rmem_max")) && receive > before.min(asked) / 2,
            "receive buffer {receive} (before {before}, rmem_max {})",
            max("rmem_max")
        );
        assert!(send >= asked.min(max("wmem_max")), "send buffer {send}");
    }

    /// Adds bridge-side endpoints `0..n`, sharing the port's drop counters.
    fn add_endpoints(st: &mut PortState<u32>, n: u32) {
        let identity = DtlsIdentity::generate().unwrap();
        let counters = st.counters().clone();
        for k in 0..n {
            let ep = EndpointTransport::new(
                IceCredentials::random(),
                &identity,
                TransportConfig::default(),
                counters.clone(),
            )
            .unwrap();
            st.add_endpoint(k, ep);
        }
    }

    fn state_with(n: u32) -> PortState<u32> {
        let mut st = PortState::new(Arc::new(DropCounters::new()));
        add_endpoints(&mut st, n);
        st
    }

    #[test]
    fn an_endpoint_is_listed_for_flush_once_however_often_it_is_touched() {
        let mut st = state_with(3);
        let mut out = Vec::new();
        st.drain_transmits(&mut out);
        assert!(st.dirty.is_empty());
        // One ingress packet fanned out to every receiver, many times over.
        for _ in 0..100 {
            for k in 0..3 {
                assert!(st.endpoint_mut(&k).is_some());
            }
        }
        assert_eq!(st.dirty, vec![0, 1, 2]);
        st.drain_transmits(&mut out);
        assert!(st.dirty.is_empty());
        assert!(st.endpoints.values().all(|s| !s.dirty));
        // After a flush, touching lists the endpoint again.
        st.endpoint_mut(&1);
        assert_eq!(st.dirty, vec![1]);
    }

    /// Queueing media for receivers does not list them for event draining, so the datagrams of a
    /// batch that follow a fan-out do not poll every receiver; anything else does, once.
    #[test]
    fn only_endpoints_touched_by_more_than_media_have_events_drained() {
        let mut st = state_with(3);
        let mut events = Vec::new();
        st.drain_events(&mut events);
        assert!(st.evented.is_empty());
        for k in 0..3 {
            // Not connected: refused, but the slot is touched for the flush as on the media path.
            let _ = st.send_rtp(&k, &[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        }
        assert_eq!(st.dirty, vec![0, 1, 2]);
        assert!(st.evented.is_empty(), "{:?}", st.evented);
        for _ in 0..10 {
            st.endpoint_mut(&2);
        }
        assert_eq!(st.evented, vec![2]);
        st.drain_events(&mut events);
        assert!(st.evented.is_empty());
        assert!(st.endpoints.values().all(|s| !s.evented));
    }

    #[test]
    fn a_removed_endpoint_left_in_the_flush_list_is_skipped() {
        let mut st = state_with(2);
        let mut out = Vec::new();
        st.drain_transmits(&mut out);
        st.endpoint_mut(&0);
        assert!(st.remove_endpoint(Instant::now(), &0).is_some());
        assert!(st.endpoint_mut(&0).is_none());
        st.drain_transmits(&mut out);
        assert!(st.dirty.is_empty());
    }

    /// The endpoints' timers live in one table: after they start checking, the next deadline is
    /// the earliest of theirs (read from the table, not by asking each), firing runs exactly the
    /// due endpoints and re-arms them, and queueing media does not re-read timers.
    #[test]
    fn endpoint_timers_come_from_one_table() {
        use crate::transport::{RemoteCandidate, RemoteTransport};
        let mut st = state_with(20);
        let t0 = Instant::now();
        let mut out = Vec::new();
        for k in 0..20u32 {
            let ep = st.endpoint_mut(&k).unwrap();
            ep.set_remote(
                t0,
                RemoteTransport {
                    ice: IceCredentials::random(),
                    fingerprints: Vec::new(),
                    candidates: vec![RemoteCandidate {
                        addr: SocketAddr::from(([127, 0, 0, 1], 20_000 + k as u16)),
                        priority: 1,
                    }],
                },
            );
        }
        st.drain_transmits(&mut out);
        let earliest = |st: &PortState<u32>| {
            st.endpoints
                .values()
                .filter_map(|s| s.ep.poll_timeout())
                .min()
        };
        let next = st.poll_timeout();
        assert!(next.is_some() && next <= earliest(&st), "{next:?}");
        assert!(st.timers.len() <= 2 * 20, "{} entries", st.timers.len());
        // Run the timers for a while: checks go out, deadlines follow, the table stays small.
        let mut now = t0;
        for _ in 0..200 {
            let Some(t) = st.poll_timeout() else { break };
            now = t.max(now);
            st.handle_timeout(now);
            out.clear();
            st.drain_transmits(&mut out);
            assert!(st.poll_timeout() <= earliest(&st));
            assert!(st.timers.len() <= 2 * 20, "{} entries", st.timers.len());
        }
        assert!(now > t0, "timers fired");
        // Queueing media (not connected here: refused) does not mark timers for re-reading.
        let _ = st.send_rtp(&3, &[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(st.endpoints[&3].dirty && !st.endpoints[&3].timer_dirty);
    }

    /// What a port test's handler saw.
    #[derive(Default)]
    struct Recorder {
        events: Vec<(u32, String)>,
    }

    impl PortHandler<u32> for Recorder {
        type Command = ();
        fn on_event(&mut self, _: Instant, key: &u32, e: TransportEvent, _: &mut PortState<u32>) {
            self.events.push((*key, format!("{e:?}")));
        }
        fn on_command(&mut self, _: Instant, _: (), _: &mut PortState<u32>) -> bool {
            true
        }
    }

    /// One `recvmmsg` batch mixing three endpoints' connectivity checks with garbage: each check
    /// reaches its own endpoint and is answered to its sender (one `sendmmsg` flush for the
    /// batch), each piece of garbage is dropped and counted under its reason, nothing else moves.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_of_checks_and_garbage_reaches_the_right_endpoints() {
        use crate::transport::DropReason;
        use crate::transport::stun::{self, Builder, Class, METHOD_BINDING};
        let counters = Arc::new(DropCounters::new());
        let mut port: Port<u32> = Port::bind("127.0.0.1:0".parse().unwrap(), counters.clone())
            .await
            .unwrap();
        let to = port.local_addr().unwrap();
        add_endpoints(port.state_mut(), 3);
        let creds: Vec<_> = (0..3)
            .map(|k| {
                port.state_mut()
                    .endpoint(&k)
                    .unwrap()
                    .local_credentials()
                    .clone()
            })
            .collect();
        let io = port.io_counters().clone();
        let peers: Vec<_> = (0..3)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
            .collect();
        let garbage = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let check = |ufrag: &str, pwd: &str, id: [u8; 12]| {
            let mut buf = Vec::new();
            Builder::new(&mut buf, Class::Request, METHOD_BINDING, &id)
                .username(&format!("{ufrag}:peer"))
                .priority(1)
                .ice_controlled(7)
                .integrity(pwd.as_bytes())
                .fingerprint();
            buf
        };
        // Interleaved, all waiting before the port reads: 4 checks per peer, 5 pieces of garbage.
        for round in 0..4u8 {
            for (k, peer) in peers.iter().enumerate() {
                let c = &creds[k];
                peer.send_to(
                    &check(
                        &c.ufrag,
                        &c.pwd,
                        [round, k as u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    ),
                    to,
                )
                .unwrap();
            }
            if round == 1 {
                garbage
                    .send_to(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], to)
                    .unwrap();
                garbage.send_to(&[0xFF; 40], to).unwrap();
                garbage
                    .send_to(&check("nobody", "secret", [9; 12]), to)
                    .unwrap();
                garbage.send_to(&[0x80; 3000], to).unwrap();
                garbage.send_to(&[0x17, 0xFE, 0xFD], to).unwrap();
            }
        }
        let (tx, rx) = mpsc::channel(1);
        let task = tokio::spawn(port.run(Recorder::default(), rx));
        // Every check is answered (a success response with its transaction id) to its sender.
        for (k, peer) in peers.iter().enumerate() {
            peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut answered = Vec::new();
            let mut buf = [0u8; 1500];
            while answered.len() < 4 {
                let (n, from) = peer.recv_from(&mut buf).expect("an answer");
                assert_eq!(from, to);
                let m = stun::Message::parse(&buf[..n]).unwrap();
                if m.class == Class::Success {
                    assert!(m.verify_integrity(creds[k].pwd.as_bytes()));
                    assert_eq!(
                        m.transaction_id[1], k as u8,
                        "peer {k} got another's answer"
                    );
                    answered.push(m.transaction_id[0]);
                }
            }
            assert_eq!(answered, vec![0, 1, 2, 3], "peer {k}");
        }
        drop(tx);
        let (_, recorder) = task.await.unwrap();
        use std::sync::atomic::Ordering::Relaxed;
        assert_eq!(io.datagrams_received.load(Relaxed), 17);
        assert_eq!(io.recv_calls.load(Relaxed), 1, "one batch");
        assert_eq!(io.truncated.load(Relaxed), 1);
        // RTP and DTLS from an unknown address, a first byte of no protocol, an unknown ufrag.
        assert_eq!(counters.get(DropReason::UnknownAddress), 2);
        assert_eq!(counters.get(DropReason::UnknownProtocol), 1);
        assert_eq!(counters.get(DropReason::StunUnknownUfrag), 1);
        assert_eq!(counters.total(), 4);
        assert!(io.datagrams_sent.load(Relaxed) >= 12);
        assert!(recorder.events.iter().all(|(k, _)| *k < 3));
    }

    /// Gives endpoint `key` the candidate `x` and returns the connectivity check it sends there.
    fn check_sent_to(
        st: &mut PortState<u32>,
        key: u32,
        x: SocketAddr,
        now: Instant,
    ) -> bytes::Bytes {
        use crate::transport::{RemoteCandidate, RemoteTransport};
        st.endpoint_mut(&key).unwrap().set_remote(
            now,
            RemoteTransport {
                ice: IceCredentials::random(),
                fingerprints: Vec::new(),
                candidates: vec![RemoteCandidate {
                    addr: x,
                    priority: 1,
                }],
            },
        );
        st.handle_timeout(now);
        let mut out = Vec::new();
        st.drain_transmits(&mut out);
        out.iter()
            .find(|(to, d)| *to == x && stun_request_id(d).is_some())
            .map(|(_, d)| bytes::Bytes::from(d.clone()))
            .expect("a check to the candidate")
    }

    /// Two workers sharing one port's routes: worker 0 with no endpoint, worker 1 with endpoint 0.
    fn two_workers() -> (Arc<Routes>, PortState<u32>, PortState<u32>) {
        let routes = Arc::new(Routes::new());
        let mut w0 = state_with(0);
        w0.share(0, Arc::clone(&routes));
        let mut w1 = PortState::new(Arc::new(DropCounters::new()));
        w1.share(1, Arc::clone(&routes));
        add_endpoints(&mut w1, 1);
        (routes, w0, w1)
    }

    /// Two workers of one port (sans-IO): a datagram that lands on the worker not owning its
    /// endpoint is routed to the owner — a check by its ufrag, then media by the address the
    /// owner authenticated — while garbage and unknown addresses are dropped and counted where
    /// they landed; once the endpoint is removed nothing routes to its worker any more. Without
    /// the shared routes every line below would be `Dropped`.
    #[test]
    fn a_datagram_for_another_workers_endpoint_is_routed_to_it() {
        use crate::transport::DropReason;
        use crate::transport::stun::{Builder, Class, METHOD_BINDING};
        let (routes, mut w0, mut w1) = two_workers();
        let creds = w1.endpoint(&0).unwrap().local_credentials().clone();
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000));
        let mut check = Vec::new();
        Builder::new(&mut check, Class::Request, METHOD_BINDING, &[3; 12])
            .username(&format!("{}:peer", creds.ufrag))
            .priority(1)
            .ice_controlled(7)
            .integrity(creds.pwd.as_bytes())
            .fingerprint();
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
        let now = Instant::now();
        // Media before any check: nobody knows the address.
        assert_eq!(w0.receive(now, peer, &rtp), Routed::Dropped);
        assert_eq!(w0.counters().get(DropReason::UnknownAddress), 1);
        // The check lands on worker 0: routed by its ufrag to worker 1, which authenticates it.
        assert_eq!(w0.receive(now, peer, &check), Routed::Worker(1));
        assert_eq!(w1.handle_datagram(now, peer, &check), Some(0));
        assert!(w1.endpoint(&0).unwrap().is_validated(peer));
        // Now media from that address follows (the cached miss was invalidated by the learn).
        assert_eq!(w0.receive(now, peer, &rtp), Routed::Worker(1));
        assert_eq!(w0.receive(now, peer, &rtp), Routed::Worker(1));
        // On the owner's own socket it is simply its own.
        assert_eq!(w1.receive(now, peer, &rtp), Routed::Here(0));
        // Garbage and strangers stay where they landed, counted there.
        assert_eq!(w0.receive(now, peer, &[0xFF; 8]), Routed::Dropped);
        let stranger = SocketAddr::from(([127, 0, 0, 1], 40_001));
        assert_eq!(w0.receive(now, stranger, &rtp), Routed::Dropped);
        assert_eq!(w0.counters().get(DropReason::UnknownProtocol), 1);
        assert_eq!(w0.counters().get(DropReason::UnknownAddress), 2);
        // (Worker 1's endpoint refused the unkeyed media itself; nothing was lost to routing.)
        assert_eq!(w1.counters().get(DropReason::UnknownAddress), 0);
        assert_eq!(w1.counters().get(DropReason::UnknownProtocol), 0);
        // The endpoint goes: its ufrag and address route nowhere.
        w1.remove_endpoint(now, &0);
        assert_eq!(routes.len(), (0, 0));
        assert_eq!(w0.receive(now, peer, &rtp), Routed::Dropped);
        assert_eq!(w0.receive(now, peer, &check), Routed::Dropped);
        assert_eq!(w0.counters().get(DropReason::StunUnknownUfrag), 1);
    }

    /// The answer to a check the owner sent to a candidate comes back to whichever worker the
    /// kernel picks: routed to the owner by its transaction id, before any address is learnt.
    #[test]
    fn the_answer_to_an_owners_check_finds_it_by_transaction() {
        let (_routes, mut w0, mut w1) = two_workers();
        let x = SocketAddr::from(([127, 0, 0, 1], 40_002));
        let now = Instant::now();
        let check = check_sent_to(&mut w1, 0, x, now);
        let mut answer = check.to_vec();
        answer[0] = 0x01; // a binding success response with the check's transaction id
        answer[1] = 0x01;
        assert_eq!(w0.receive(now, x, &answer), Routed::Worker(1));
        // Media from x is not routed by it: only an authenticated address is.
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
        assert_eq!(w0.receive(now, x, &rtp), Routed::Dropped);
    }

    /// Sending checks to a participant-chosen candidate teaches the demux nothing: media from
    /// that address is refused as unknown, an answer with a wrong integrity is routed (by its
    /// transaction id) but still teaches nothing; only an endpoint's authenticated STUN would.
    #[test]
    fn addresses_are_not_learnt_from_transmits_or_unauthenticated_answers() {
        use crate::transport::DropReason;
        let mut st = state_with(2);
        let counters = Arc::clone(st.counters());
        let x = SocketAddr::from(([192, 0, 2, 9], 5000));
        let now = Instant::now();
        let check = check_sent_to(&mut st, 1, x, now);
        // Media "from" the candidate: not routed.
        let rtp = [0x80u8, 100, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
        assert_eq!(st.handle_datagram(now, x, &rtp), None);
        assert_eq!(counters.get(DropReason::UnknownAddress), 1);
        assert_eq!(counters.get(DropReason::UnvalidatedAddress), 0);
        // An "answer" with the check's transaction id but no valid integrity: routed to the
        // endpoint by its transaction id, refused by ICE, and the address stays unknown.
        let mut answer = check.to_vec();
        answer[0] = 0x01; // binding success response
        answer[1] = 0x01;
        assert_eq!(st.handle_datagram(now, x, &answer), Some(1));
        // (Re-labelled, it fails the FINGERPRINT and MESSAGE-INTEGRITY checks.)
        let refused = counters.get(DropReason::StunBadFingerprint)
            + counters.get(DropReason::StunBadIntegrity);
        assert_eq!(refused, 1);
        assert_eq!(st.handle_datagram(now, x, &rtp), None);
        assert_eq!(counters.get(DropReason::UnknownAddress), 2);
        // A response nobody asked for from an unknown address: unknown.
        let mut stray = answer.clone();
        stray[8] ^= 0xFF;
        assert_eq!(st.handle_datagram(now, x, &stray), None);
    }

    /// A transport that panics on a datagram is removed and reported; the port and the other
    /// endpoints carry on. Without the isolation the panic unwinds out of the port's task.
    #[test]
    fn a_panicking_transport_is_removed_and_reported() {
        use crate::transport::endpoint::TEST_PANIC_TRANSACTION;
        use crate::transport::stun::{Builder, Class, METHOD_BINDING};
        let mut st = state_with(2);
        let ufrag = st.endpoint(&0).unwrap().local_credentials().ufrag.clone();
        let mut poison = Vec::new();
        Builder::new(
            &mut poison,
            Class::Request,
            METHOD_BINDING,
            &TEST_PANIC_TRANSACTION,
        )
        .username(&format!("{ufrag}:x"))
        .fingerprint();
        let from = SocketAddr::from(([192, 0, 2, 1], 4000));
        assert_eq!(st.handle_datagram(Instant::now(), from, &poison), None);
        assert_eq!(st.take_faulted(), vec![0]);
        assert!(st.endpoint(&0).is_none());
        assert!(st.endpoint(&1).is_some());
        // Its ufrag routes nowhere now; the other endpoint still gets its datagrams.
        assert_eq!(st.handle_datagram(Instant::now(), from, &poison), None);
        assert!(st.take_faulted().is_empty());
        let ufrag1 = st.endpoint(&1).unwrap().local_credentials().ufrag.clone();
        let mut check = Vec::new();
        Builder::new(&mut check, Class::Request, METHOD_BINDING, &[1; 12])
            .username(&format!("{ufrag1}:x"))
            .fingerprint();
        assert_eq!(st.handle_datagram(Instant::now(), from, &check), Some(1));
    }

    /// An in-place ICE restart on a port with two workers, the peer coming back from another
    /// address with new credentials (what a browser does after a network change): the new ufrag
    /// routes to the owner as soon as the restart starts, the old address keeps routing until the
    /// new generation took over and for its transition window, then the old ufrag and address
    /// route nowhere (demux and the shared directory) while the new address does.
    #[test]
    fn an_ice_restart_reroutes_the_new_ufrag_and_forgets_the_old_one() {
        use crate::transport::demux::MissBy;
        use crate::transport::ice::{IceAgent, IceConfig, IceMode, RemoteCandidate};
        use crate::transport::stun::{Builder, Class, METHOD_BINDING, Message};
        use crate::transport::{
            DropReason, IceRestart, RemoteFor, RemoteTransport, TransportEvent, TransportRng,
        };
        use std::time::Duration;

        let (routes, mut w0, mut w1) = two_workers();
        let lite = TransportConfig {
            ice: IceConfig {
                mode: IceMode::Lite,
                ..IceConfig::default()
            },
            ..TransportConfig::default()
        };
        let identity = DtlsIdentity::generate().unwrap();
        let ep = EndpointTransport::new(
            IceCredentials::random(),
            &identity,
            lite,
            w1.counters().clone(),
        )
        .unwrap();
        let b0 = ep.local_credentials().clone();
        w1.add_endpoint(7, ep);
        let bridge = SocketAddr::from(([127, 0, 0, 1], 10_000));
        let (a, b) = (
            SocketAddr::from(([127, 0, 0, 1], 40_000)),
            SocketAddr::from(([127, 0, 0, 1], 40_100)),
        );
        let mut rng = TransportRng::seeded(11);
        // A browser opposite a lite bridge: full, controlling.
        let peer_agent = |rng: &mut TransportRng, bridge_creds: &IceCredentials, now: Instant| {
            let mut p = IceAgent::new(
                IceCredentials::generate(rng),
                IceConfig::default(),
                Arc::new(DropCounters::new()),
                rng.fork(),
            );
            p.set_remote(
                now,
                bridge_creds.clone(),
                &[RemoteCandidate {
                    addr: bridge,
                    priority: 1,
                }],
            );
            p
        };
        // The kernel hands the peer's datagrams to worker 0's socket; they must reach worker 1.
        let exchange = |peer: &mut IceAgent,
                        at: SocketAddr,
                        w0: &mut PortState<u32>,
                        w1: &mut PortState<u32>,
                        events: &mut Vec<(u32, TransportEvent)>,
                        now: Instant| {
            peer.handle_timeout(now);
            for _ in 0..20 {
                let mut moved = false;
                while let Some(t) = peer.poll_transmit() {
                    moved = true;
                    assert_eq!(w0.receive(now, at, &t.data), Routed::Worker(1));
                    assert_eq!(w1.handle_datagram(now, at, &t.data), Some(7));
                }
                let mut out = Vec::new();
                w1.drain_events(events);
                w1.drain_transmits(&mut out);
                for (to, d) in &out {
                    if *to == at && classify(d) == PacketKind::Stun {
                        peer.handle_stun(now, bridge, d);
                        moved = true;
                    }
                }
                w1.recycle(&mut out);
                if !moved {
                    break;
                }
            }
        };
        let mut events = Vec::new();
        let t0 = Instant::now();
        let mut peer0 = peer_agent(&mut rng, &b0, t0);
        exchange(&mut peer0, a, &mut w0, &mut w1, &mut events, t0);
        assert_eq!(w1.endpoint(&7).unwrap().remote_addr(), Some(a));
        let rtp = [0x80u8, 96, 0, 1, 0, 0, 0, 1, 0, 0, 0, 9, 1, 2, 3, 4];
        assert_eq!(w0.receive(t0, a, &rtp), Routed::Worker(1));

        // The restart: the new ufrag is the owner's at once.
        let now = t0 + Duration::from_secs(1);
        assert_eq!(
            w1.restart_ice(now, &7),
            Some(IceRestart::Started {
                generation: 1,
                superseded: None
            })
        );
        assert_eq!(w1.restart_ice(now, &99), None, "no such endpoint");
        let b1 = w1.endpoint(&7).unwrap().advertised_credentials().clone();
        assert_eq!(routes.owner(b, MissBy::Ufrag(&b1.ufrag)), Some(1));
        assert_eq!(routes.owner(b, MissBy::Ufrag(&b0.ufrag)), Some(1));
        let mut peer1 = peer_agent(&mut rng, &b1, now);
        let answer = RemoteTransport {
            ice: peer1.local_credentials().clone(),
            fingerprints: Vec::new(),
            candidates: Vec::new(),
        };
        let to = w1
            .endpoint_mut(&7)
            .unwrap()
            .set_remote_generation(now, answer, Some(1));
        assert_eq!(to, RemoteFor::Pending);
        // The new generation connects from the new address and takes over.
        events.clear();
        exchange(&mut peer1, b, &mut w0, &mut w1, &mut events, now);
        let evs: Vec<_> = events.iter().map(|(_, e)| e.clone()).collect();
        assert_eq!(
            evs,
            vec![
                TransportEvent::SelectedChanged(b),
                TransportEvent::IceRestarted { generation: 1 }
            ]
        );
        assert_eq!(w1.endpoint(&7).unwrap().remote_addr(), Some(b));
        // Transition window: both addresses route, the old credentials are answered.
        assert_eq!(w0.receive(now, a, &rtp), Routed::Worker(1));
        assert_eq!(w0.receive(now, b, &rtp), Routed::Worker(1));
        let old_check = {
            let mut buf = Vec::new();
            Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[5; 12])
                .username(&format!("{}:{}", b0.ufrag, peer0.local_credentials().ufrag))
                .priority(1)
                .ice_controlling(9)
                .integrity(b0.pwd.as_bytes())
                .fingerprint();
            buf
        };
        assert_eq!(w0.receive(now, a, &old_check), Routed::Worker(1));
        assert_eq!(w1.handle_datagram(now, a, &old_check), Some(7));
        let mut out = Vec::new();
        w1.drain_transmits(&mut out);
        assert!(
            out.iter()
                .any(|(to, d)| *to == a
                    && Message::parse(d).is_ok_and(|m| m.class == Class::Success))
        );
        w1.recycle(&mut out);
        // After the window the old generation is gone: its ufrag and address route nowhere.
        let later = now + Duration::from_millis(3100);
        w1.handle_timeout(later);
        assert_eq!(
            routes.len(),
            (2, 1),
            "endpoint 0's ufrag, endpoint 7's new one, its new address"
        );
        assert_eq!(routes.owner(b, MissBy::Ufrag(&b0.ufrag)), None);
        let unknown = w0.counters().get(DropReason::UnknownAddress);
        assert_eq!(w0.receive(later, a, &rtp), Routed::Dropped);
        assert_eq!(w1.receive(later, a, &rtp), Routed::Dropped);
        assert_eq!(w0.counters().get(DropReason::UnknownAddress), unknown + 1);
        assert_eq!(w1.counters().get(DropReason::UnknownAddress), 1);
        assert_eq!(w0.receive(later, a, &old_check), Routed::Dropped);
        assert_eq!(w1.receive(later, a, &old_check), Routed::Dropped);
        assert_eq!(w1.counters().get(DropReason::StunUnknownUfrag), 1);
        assert_eq!(w0.receive(later, b, &rtp), Routed::Worker(1));
        assert_eq!(w1.receive(later, b, &rtp), Routed::Here(7));
    }
}
