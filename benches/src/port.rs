//! A media port as the bridge runs it, without the socket: a [`PortState`] with `endpoints`
//! bridge-side transports, each connected (ICE, DTLS, SRTP keyed by a real handshake) to an
//! in-memory participant ([`Role::Client`] transport), in conferences of `size` endpoints of one
//! [`Sfu`]. [`PortFixture::datagram`] runs one datagram's whole path the way the media worker does
//! (`bridge/src/media/plane.rs`): demux → endpoint (SRTP decrypt) → forwarding core → N × SRTP
//! encrypt into the port's transmit buffers, then the flush's drain and recycle (no kernel send).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::sfu::{
    EndpointHandle, EndpointParams, Output, Sfu, SfuConfig, Sink, TransportEvent as SfuEvent,
};
use bridge::transport::{
    DropCounters, DtlsIdentity, EndpointTransport, IceCredentials, PortState, RemoteCandidate,
    RemoteTransport, TransportConfig, TransportEvent,
};

use crate::{VP8, audio_params, rtp_packet, set_seq_ts, sources, ssrcs, video_params};

/// The port's address as the participants see it.
pub const PORT_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    10_000,
);

const HOST_PRIORITY: u32 = (126 << 24) | (65535 << 8) | 255;
const VIDEO_PAYLOAD: usize = 1160;

/// One conference's sender: its participant-side transport and its video stream.
pub struct Sender {
    pub handle: EndpointHandle,
    pub addr: SocketAddr,
    client: EndpointTransport,
    packet: Vec<u8>,
    seq: u16,
}

impl Sender {
    /// The next SRTP datagram of its 1200-byte VP8 stream (allocates: benches build these
    /// outside the measured part).
    pub fn next_datagram(&mut self) -> Vec<u8> {
        self.seq = self.seq.wrapping_add(1);
        set_seq_ts(&mut self.packet, self.seq, u32::from(self.seq) * 3000);
        let t = self.client.protect(&self.packet, false).expect("protect");
        t.data.to_vec()
    }
}

pub struct PortFixture {
    pub port: PortState<EndpointHandle>,
    pub sfu: Sfu,
    pub now: Instant,
    /// One per conference.
    pub senders: Vec<Sender>,
    events: Vec<(EndpointHandle, TransportEvent)>,
    transmits: Vec<(SocketAddr, Vec<u8>)>,
    /// Datagrams and bytes the flushes drained.
    pub sent: u64,
    pub sent_bytes: u64,
}

impl PortFixture {
    /// `endpoints` endpoints in conferences of `size` (the first of each sends video).
    pub fn new(endpoints: usize, size: usize) -> Self {
        assert!(size >= 2 && endpoints.is_multiple_of(size));
        let t0 = Instant::now();
        let bridge_identity = DtlsIdentity::generate().expect("identity");
        let client_identity = DtlsIdentity::generate_named("participant").expect("identity");
        let counters = Arc::new(DropCounters::new());
        let mut port = PortState::new(counters.clone());
        let mut sfu = Sfu::new(SfuConfig::default());
        let mut clients: Vec<(SocketAddr, EndpointTransport)> = Vec::new();
        let mut handles = Vec::new();
        let mut sink = |_: Output<'_>| {};
        for c in 0..endpoints / size {
            let conf = sfu
                .create_conference(t0, &format!("bench-{c}"), None)
                .expect("conference");
            for j in 0..size {
                let i = (c * size + j) as u32;
                let id = format!("ep{i:05}");
                let p = EndpointParams {
                    sources: sources(&id, i),
                    id,
                    audio: audio_params(),
                    video: video_params(),
                    ..Default::default()
                };
                let h = sfu
                    .create_endpoint(t0, conf, p, &mut sink)
                    .expect("endpoint");
                let addr = SocketAddr::from(([127, 0, 0, 1], 20_000 + i as u16));
                let (bc, cc) = (IceCredentials::random(), IceCredentials::random());
                let mut ep = EndpointTransport::new(
                    bc.clone(),
                    &bridge_identity,
                    TransportConfig::default(),
                    counters.clone(),
                )
                .expect("bridge transport");
                let mut client = EndpointTransport::new(
                    cc.clone(),
                    &client_identity,
                    TransportConfig::client(),
                    counters.clone(),
                )
                .expect("client transport");
                ep.set_remote(t0, remote(cc, &client_identity, addr));
                client.set_remote(t0, remote(bc, &bridge_identity, PORT_ADDR));
                let (a, sim, rtx) = ssrcs(i);
                ep.set_signalled_ssrcs([a].into_iter().chain(sim).chain(rtx));
                port.add_endpoint(h, ep);
                clients.push((addr, client));
                handles.push((conf, h));
            }
        }
        let now = connect(&mut port, &mut clients, t0);
        for (_, h) in &handles {
            sfu.handle_transport_event(now, *h, SfuEvent::Connected, &mut sink);
            sfu.handle_transport_event(now, *h, SfuEvent::DataChannelOpen, &mut sink);
        }
        let mut senders = Vec::new();
        for (k, (addr, client)) in clients.into_iter().enumerate() {
            if k % size == 0 {
                let sim = ssrcs(k as u32).1;
                senders.push(Sender {
                    handle: handles[k].1,
                    addr,
                    client,
                    packet: rtp_packet(VP8, 0, 0, sim[0], false, VIDEO_PAYLOAD),
                    seq: 0,
                });
            }
        }
        let mut f = PortFixture {
            port,
            sfu,
            // Past the join-time keyframe requests.
            now: now + Duration::from_secs(1),
            senders,
            events: Vec::new(),
            transmits: Vec::new(),
            sent: 0,
            sent_bytes: 0,
        };
        f.flush();
        f.sent = 0;
        f.sent_bytes = 0;
        f
    }

    /// One datagram's path to its receivers' transmit buffers, and the flush's part without the
    /// kernel: drain the transmits, give the buffers back.
    pub fn datagram(&mut self, from: SocketAddr, data: &[u8]) {
        self.receive(from, data);
        self.flush();
    }

    /// Datagrams that one receive batch (one `recvmmsg`) brought, each routed and its events
    /// handled in turn, then one flush: the port's loop (`transport/shell.rs`, `Port::run`).
    /// Never inlined: `port_instructions` counts instructions inside it.
    #[inline(never)]
    pub fn batch(&mut self, datagrams: &[(SocketAddr, Vec<u8>)]) {
        for (from, data) in datagrams {
            self.receive(*from, data);
        }
        self.flush();
    }

    fn receive(&mut self, from: SocketAddr, data: &[u8]) {
        let now = self.now;
        self.port.handle_datagram(now, from, data);
        let Self {
            port, sfu, events, ..
        } = self;
        loop {
            events.clear();
            port.drain_events(events);
            if events.is_empty() {
                break;
            }
            for (k, e) in events.drain(..) {
                let mut out = PortSink { port: &mut *port };
                match e {
                    TransportEvent::Rtp(p) => sfu.handle_rtp(now, k, &p, &mut out),
                    TransportEvent::Rtcp(p) => sfu.handle_rtcp(now, k, &p, &mut out),
                    _ => {}
                }
            }
        }
    }

    fn flush(&mut self) {
        self.port.drain_transmits(&mut self.transmits);
        self.sent += self.transmits.len() as u64;
        self.sent_bytes += self.transmits.iter().map(|t| t.1.len() as u64).sum::<u64>();
        self.port.recycle(&mut self.transmits);
    }
}

/// The core's sink onto the port, as the media worker's (`bridge/src/media/plane.rs`, `Out`).
struct PortSink<'a> {
    port: &'a mut PortState<EndpointHandle>,
}

impl Sink for PortSink<'_> {
    fn emit(&mut self, o: Output<'_>) {
        match o {
            Output::Rtp { to, packet } => {
                let _ = self.port.send_rtp(&to, packet);
            }
            Output::Rtcp { to, packet } => {
                let _ = self.port.send_rtcp(&to, packet);
            }
            _ => {}
        }
    }

    fn emit_rtp_buffer(&mut self, to: EndpointHandle, packet: &mut Vec<u8>) {
        let _ = self.port.send_rtp_buffer(&to, packet);
    }
}

fn remote(ice: IceCredentials, identity: &DtlsIdentity, addr: SocketAddr) -> RemoteTransport {
    RemoteTransport {
        ice,
        fingerprints: vec![identity.fingerprint().clone()],
        candidates: vec![RemoteCandidate {
            addr,
            priority: HOST_PRIORITY,
        }],
    }
}

/// Moves datagrams between the port and the participants in virtual time until every transport
/// has SRTP keys. Returns the time then.
fn connect(
    port: &mut PortState<EndpointHandle>,
    clients: &mut [(SocketAddr, EndpointTransport)],
    t0: Instant,
) -> Instant {
    let index: std::collections::HashMap<SocketAddr, usize> = clients
        .iter()
        .enumerate()
        .map(|(i, (a, _))| (*a, i))
        .collect();
    let mut out = Vec::new();
    let mut events = Vec::new();
    let mut now = t0;
    while now < t0 + Duration::from_secs(30) {
        port.handle_timeout(now);
        for _ in 0..20 {
            let mut moved = false;
            port.drain_transmits(&mut out);
            for (to, d) in &out {
                if let Some(&i) = index.get(to) {
                    clients[i].1.handle_datagram(now, PORT_ADDR, d);
                    moved = true;
                }
            }
            port.recycle(&mut out);
            for (addr, c) in clients.iter_mut() {
                c.handle_timeout(now);
                while let Some(t) = c.poll_transmit() {
                    port.handle_datagram(now, *addr, &t.data);
                    moved = true;
                }
                while c.poll_event().is_some() {}
            }
            events.clear();
            port.drain_events(&mut events);
            if !moved {
                break;
            }
        }
        let keyed = clients.iter().all(|(_, c)| c.srtp_profile().is_some())
            && port
                .keys()
                .all(|k| port.endpoint(k).is_some_and(|e| e.srtp_profile().is_some()));
        if keyed {
            return now;
        }
        now += Duration::from_millis(10);
    }
    panic!("the participants did not connect in 30 s of virtual time");
}
