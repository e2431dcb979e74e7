//! A deterministic simulation of a conference around the real forwarding core (`bridge::sfu`):
//! virtual time, no sockets. Simulated browsers ([`client::Client`]) send 3-encoding VP8 simulcast
//! with temporal layers and Opus with audio levels, and receive like a browser does: they answer the
//! bridge's transport-cc numbers with real transport-cc feedback, NACK what their links lost, send
//! PLI when their decoder breaks, and render frames through a small jitter buffer/decoder model
//! that measures freezes. Every packet between a client and the bridge crosses a [`Link`] with
//! capacity (a FIFO queue drained at the link rate, tail-dropped when too long), propagation delay,
//! jitter and random loss. Everything is driven from one event queue ([`World`]).

#![allow(dead_code)]

pub mod client;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::{Duration, Instant};

use bridge::sfu::{
    ConferenceHandle, EndpointHandle, EndpointParams, Output, Sfu, SfuConfig, TransportEvent,
};

pub use client::{Client, ClientConfig};

/// The bridge's seeded PRNG (xorshift64*): deterministic runs.
pub use bridge::random::Rng;

/// One direction of a network path.
#[derive(Debug, Clone)]
pub struct Link {
    /// Bottleneck rate; `None` = unlimited.
    pub capacity_bps: Option<u64>,
    pub delay: Duration,
    /// Extra delay in [0, jitter), wandering over time (order is kept: a FIFO path).
    pub jitter: Duration,
    /// Random loss probability per packet.
    pub loss: f64,
    /// Tail drop when the queue holds more than this much transmission time.
    pub max_queue: Duration,
    busy_until: Option<Instant>,
    last_arrival: Option<Instant>,
    jitter_now: Duration,
    jitter_at: Option<Instant>,
    pub packets: u64,
    pub bytes: u64,
    pub lost_random: u64,
    pub lost_queue: u64,
}

impl Link {
    pub fn new(capacity_bps: Option<u64>, delay: Duration) -> Self {
        Link {
            capacity_bps,
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            max_queue: Duration::from_millis(400),
            busy_until: None,
            last_arrival: None,
            jitter_now: Duration::ZERO,
            jitter_at: None,
            packets: 0,
            bytes: 0,
            lost_random: 0,
            lost_queue: 0,
        }
    }

    pub fn jitter(mut self, j: Duration) -> Self {
        self.jitter = j;
        self
    }

    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }

    /// Sends `size` bytes at `now`: the arrival time, or `None` if the packet is lost.
    pub fn transmit(&mut self, now: Instant, size: usize, rng: &mut Rng) -> Option<Instant> {
        self.packets += 1;
        let start = self.busy_until.map_or(now, |b| b.max(now));
        if start.saturating_duration_since(now) > self.max_queue {
            self.lost_queue += 1;
            return None;
        }
        let tx = match self.capacity_bps {
            Some(c) if c > 0 => Duration::from_nanos((size as u64 * 8 * 1_000_000_000) / c),
            _ => Duration::ZERO,
        };
        let done = start + tx;
        self.busy_until = Some(done);
        if self.loss > 0.0 && rng.unit() < self.loss {
            self.lost_random += 1;
            return None;
        }
        self.bytes += size as u64;
        // Delay variation changes over time, not packet by packet: packets sent back to back see
        // (nearly) the same queueing elsewhere on the path. The offset wanders within
        // [0, jitter), by at most a tenth of the range per 20 ms.
        if !self.jitter.is_zero()
            && self
                .jitter_at
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_millis(20))
        {
            let step = self.jitter.as_secs_f64() * 0.1 * (2.0 * rng.unit() - 1.0);
            let j = (self.jitter_now.as_secs_f64() + step).clamp(0.0, self.jitter.as_secs_f64());
            self.jitter_now = Duration::from_secs_f64(j);
            self.jitter_at = Some(now);
        }
        let jitter = self.jitter_now;
        let mut at = done + self.delay + jitter;
        if let Some(l) = self.last_arrival
            && at < l
        {
            at = l;
        }
        self.last_arrival = Some(at);
        Some(at)
    }

    /// Current queueing delay.
    pub fn queue_delay(&self, now: Instant) -> Duration {
        self.busy_until
            .map_or(Duration::ZERO, |b| b.saturating_duration_since(now))
    }
}

#[derive(Debug)]
enum Ev {
    /// A packet arrives at the bridge from client `from`.
    ToBridge {
        from: usize,
        rtcp: bool,
        data: Vec<u8>,
    },
    /// A packet arrives at client `to` from the bridge.
    ToClient {
        to: usize,
        rtcp: bool,
        data: Vec<u8>,
    },
    /// A bridge-channel message arrives at client `to`.
    TextToClient { to: usize, text: String },
    /// A bridge-channel message from client `from` arrives at the bridge.
    TextToBridge { from: usize, text: String },
    /// Client `c` has work due.
    Tick(usize),
}

/// The conference: the bridge core, the clients, their links, the event queue.
pub struct World {
    pub sfu: Sfu,
    pub conf: ConferenceHandle,
    pub t0: Instant,
    pub now: Instant,
    pub clients: Vec<Client>,
    pub rng: Rng,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    events: Vec<Option<Ev>>,
    free: Vec<usize>,
    seq: u64,
    /// Per client, the (SSRC, sequence number) of RTP packets its downlink lost.
    pub downlink_lost: Vec<HashSet<(u32, u16)>>,
    /// Channel messages take this long (SCTP over the same path, not modelled further).
    pub text_delay: Duration,
    scheduled_tick: Vec<Option<Instant>>,
    stuck: u64,
    outs: Vec<(Option<EndpointHandle>, OutKind, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutKind {
    Rtp,
    Rtcp,
    Text,
}

impl World {
    pub fn new(cfg: SfuConfig, seed: u64) -> Self {
        let t0 = Instant::now();
        let mut sfu = Sfu::new(SfuConfig { seed, ..cfg });
        let conf = sfu
            .create_conference(t0, "sim-meeting", Some("sim@muc.example"))
            .expect("conference");
        World {
            sfu,
            conf,
            t0,
            now: t0,
            clients: Vec::new(),
            rng: Rng::new(seed ^ 0x5151),
            queue: BinaryHeap::new(),
            events: Vec::new(),
            free: Vec::new(),
            seq: 0,
            downlink_lost: Vec::new(),
            text_delay: Duration::from_millis(30),
            scheduled_tick: Vec::new(),
            stuck: 0,
            outs: Vec::new(),
        }
    }

    /// Seconds since the start, for reports.
    pub fn secs(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.t0).as_secs_f64()
    }

    /// Adds a client: COLIBRI2 endpoint create with its sources, transport and channel up.
    pub fn join(&mut self, cfg: ClientConfig, uplink: Link, downlink: Link) -> usize {
        let idx = self.clients.len();
        let params: EndpointParams = client::endpoint_params(&cfg);
        let mut sink = Collector(&mut self.outs);
        let h = self
            .sfu
            .create_endpoint(self.now, self.conf, params, &mut sink)
            .expect("endpoint");
        self.sfu
            .handle_transport_event(self.now, h, TransportEvent::Connected, &mut sink);
        self.sfu
            .handle_transport_event(self.now, h, TransportEvent::DataChannelOpen, &mut sink);
        // Everyone learns everyone's sources (as Jingle source-add would tell them).
        let mut c = Client::new(cfg, h, uplink, downlink, self.now, self.rng.next_u64());
        for other in &mut self.clients {
            other.learn_remote(&c.cfg);
            c.learn_remote(&other.cfg);
        }
        self.clients.push(c);
        self.downlink_lost.push(HashSet::new());
        self.scheduled_tick.push(None);
        self.route_outputs();
        self.schedule_tick(idx);
        idx
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.events[i] = Some(ev);
                i
            }
            None => {
                self.events.push(Some(ev));
                self.events.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, slot)));
    }

    fn schedule_tick(&mut self, c: usize) {
        let due = self.clients[c].next_due().max(self.now);
        if self.scheduled_tick[c].is_some_and(|t| t <= due) {
            return;
        }
        self.scheduled_tick[c] = Some(due);
        self.push(due, Ev::Tick(c));
    }

    fn client_of(&self, h: EndpointHandle) -> Option<usize> {
        self.clients.iter().position(|c| c.handle == h)
    }

    /// Sends the bridge's outputs over the downlinks.
    fn route_outputs(&mut self) {
        let outs = std::mem::take(&mut self.outs);
        for (to, kind, data) in outs {
            let Some(c) = to.and_then(|h| self.client_of(h)) else {
                continue;
            };
            match kind {
                OutKind::Text => {
                    let text = String::from_utf8(data).unwrap_or_default();
                    self.push(self.now + self.text_delay, Ev::TextToClient { to: c, text });
                }
                OutKind::Rtp | OutKind::Rtcp => {
                    let now = self.now;
                    match self.clients[c]
                        .downlink
                        .transmit(now, data.len(), &mut self.rng)
                    {
                        Some(at) => self.push(
                            at,
                            Ev::ToClient {
                                to: c,
                                rtcp: kind == OutKind::Rtcp,
                                data,
                            },
                        ),
                        None => {
                            if kind == OutKind::Rtp && data.len() >= 12 {
                                let ssrc =
                                    u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
                                let seq = u16::from_be_bytes([data[2], data[3]]);
                                self.downlink_lost[c].insert((ssrc, seq));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sends what client `c` produced over its uplink.
    fn send_from_client(&mut self, c: usize) {
        let out = self.clients[c].take_outgoing();
        for o in out {
            let now = self.now;
            match o {
                client::Outgoing::Text(text) => {
                    self.push(now + self.text_delay, Ev::TextToBridge { from: c, text });
                }
                client::Outgoing::Rtp(data) | client::Outgoing::Rtcp(data) => {
                    let rtcp = data.get(1).is_some_and(|pt| (192..=223).contains(pt));
                    if let Some(at) =
                        self.clients[c]
                            .uplink
                            .transmit(now, data.len(), &mut self.rng)
                    {
                        self.push(
                            at,
                            Ev::ToBridge {
                                from: c,
                                rtcp,
                                data,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Runs the simulation until `end`.
    pub fn run_until(&mut self, end: Instant) {
        loop {
            let next_ev = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let next_bridge = self.sfu.poll_timeout();
            let next = match (next_ev, next_bridge) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => end,
            };
            if next > end {
                self.now = end;
                return;
            }
            if next <= self.now {
                self.stuck += 1;
                assert!(
                    self.stuck < 100_000,
                    "no progress at {:.3} s: the bridge keeps asking to run now",
                    self.secs(self.now)
                );
            } else {
                self.stuck = 0;
            }
            self.now = self.now.max(next);
            if next_bridge.is_some_and(|b| b <= next) {
                let mut sink = Collector(&mut self.outs);
                self.sfu.handle_timeout(self.now, &mut sink);
                self.route_outputs();
                continue;
            }
            let Some(Reverse((_, _, slot))) = self.queue.pop() else {
                continue;
            };
            let Some(ev) = self.events.get_mut(slot).and_then(Option::take) else {
                continue;
            };
            self.free.push(slot);
            self.handle(ev);
        }
    }

    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        self.run_until(end);
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::ToBridge { from, rtcp, data } => {
                let h = self.clients[from].handle;
                let mut sink = Collector(&mut self.outs);
                if rtcp {
                    self.sfu.handle_rtcp(now, h, &data, &mut sink);
                } else {
                    self.sfu.handle_rtp(now, h, &data, &mut sink);
                }
                self.route_outputs();
            }
            Ev::TextToBridge { from, text } => {
                let h = self.clients[from].handle;
                let mut sink = Collector(&mut self.outs);
                self.sfu.handle_channel_message(now, h, &text, &mut sink);
                self.route_outputs();
            }
            Ev::ToClient { to, rtcp, data } => {
                if rtcp {
                    self.clients[to].on_rtcp(now, &data);
                } else {
                    self.clients[to].on_rtp(now, &data);
                }
                self.send_from_client(to);
                self.schedule_tick(to);
            }
            Ev::TextToClient { to, text } => {
                self.clients[to].on_text(now, &text);
                self.send_from_client(to);
                self.schedule_tick(to);
            }
            Ev::Tick(c) => {
                if self.scheduled_tick[c].is_some_and(|t| t <= now) {
                    self.scheduled_tick[c] = None;
                }
                self.clients[c].tick(now);
                self.send_from_client(c);
                self.schedule_tick(c);
            }
        }
    }

    /// A client sends a bridge-channel message now.
    pub fn send_text(&mut self, c: usize, v: serde_json::Value) {
        self.clients[c].queue_text(v.to_string());
        self.send_from_client(c);
    }
}

/// Collects the bridge's outputs for routing after the call.
struct Collector<'a>(&'a mut Vec<(Option<EndpointHandle>, OutKind, Vec<u8>)>);

impl bridge::sfu::Sink for Collector<'_> {
    fn emit(&mut self, out: Output<'_>) {
        match out {
            Output::Rtp { to, packet } => self.0.push((Some(to), OutKind::Rtp, packet.to_vec())),
            Output::Rtcp { to, packet } => self.0.push((Some(to), OutKind::Rtcp, packet.to_vec())),
            Output::Text { to, text } => {
                self.0
                    .push((Some(to), OutKind::Text, text.as_bytes().to_vec()))
            }
            Output::Event(_) => {}
        }
    }
}
