//! The async shell of one participant: its XMPP session (anonymous login, conference request, MUC,
//! Jingle with the focus), its UDP socket, and the timers of its [`MediaEndpoint`]. One tokio task
//! per participant; every packet is handled synchronously in that task.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::transport::udp::{self, IoCounters, RecvBatch};
use bridge::transport::{
    DropCounters, DtlsIdentity, EndpointTransport, IceCredentials, SrtpProfile, TransportConfig,
};
use minidom::Element;
use serde::Serialize;
use signaling::XmlElement;
use signaling::focus_iq::ConferenceResponse;
use signaling::jingle::{Action, Jingle};
use signaling::ns;
use signaling::source_map::ConferenceSourceMap;
use signaling::xmpp::{
    self, BareJid, ClientConfig, Event, IncomingIq, IqKind, Jid, MucJoin, ServerAddr, XmppHandle,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::dialect::Client;
use crate::media::{ChannelCounters, MediaEndpoint, ReceiveView, RtcpCounters, TransportDrops};
use crate::receiver::{Kind, MediaReceiver, ReceiveDrops, TrackCounters};
use crate::sender::{
    AudioConfig, LayerConfig, MediaSender, SendCounters, Speaking, VideoCodec, VideoConfig,
    default_layers,
};
use crate::session::{
    LocalSources, Offer, conference_request, disco_info, is_disco_info, local_transport, negotiate,
    parse_offer, presence_extra, remote_sources, session_accept, session_terminate,
};

/// How long an IQ to the focus may take.
const IQ_TIMEOUT: Duration = Duration::from_secs(15);
/// `recvmmsg` calls per wake-up before timers get a turn (each up to `udp::BATCH` messages).
const RECV_CALLS: usize = 2;
/// Receive buffer of a participant's socket (bursts of keyframes from several senders).
const RECV_BUFFER: usize = 2 * 1024 * 1024;

/// Who a participant is and what it does.
#[derive(Debug, Clone)]
pub struct ParticipantConfig {
    pub conference: usize,
    pub index: usize,
    /// 8 hex characters: the MUC nickname and endpoint id.
    pub endpoint: String,
    pub display_name: String,
    pub room: BareJid,
    /// The anonymous VirtualHost.
    pub domain: String,
    /// Where conference requests go (`focus.<domain>`).
    pub focus: Jid,
    pub server: ServerAddr,
    /// Sends audio and video (otherwise receive-only, as a muted participant).
    pub sender: bool,
    pub simulcast: bool,
    pub speaking: Speaking,
    pub srtp_profiles: Vec<SrtpProfile>,
    pub view: ReceiveView,
    pub bind: IpAddr,
    /// Ask for UDP GRO on the socket (`--receiver-gro`, see [`ReceiveBuffers`]).
    pub receiver_gro: bool,
    /// Limit for login + conference request + MUC join + media connection.
    pub join_timeout: Duration,
    /// Endpoint ids of the other senders in this conference.
    pub expected_senders: Vec<String>,
    pub seed: u64,
    /// Which lib-jitsi-meet it imitates.
    pub client: Client,
}

/// What the scenario tells every participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Joining,
    /// Measurement window open (counters snapshotted when this arrives).
    Measuring,
    Leaving,
}

/// What a participant tells the scenario once: connected (bridge channel open) or failed.
pub type Progress = (usize, Result<(), String>);

/// Milliseconds of each step: login and the two totals from the participant's start, the rest from
/// the conference request.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Timings {
    /// Start → bridge channel open: the participant's join time (what a user waits for).
    pub join_ms: Option<f64>,
    /// Start → audio and video from every expected sender.
    pub join_to_all_media_ms: Option<f64>,
    pub xmpp_login_ms: Option<f64>,
    pub conference_ready_ms: Option<f64>,
    pub muc_joined_ms: Option<f64>,
    pub session_initiate_ms: Option<f64>,
    pub session_accept_acked_ms: Option<f64>,
    pub ice_connected_ms: Option<f64>,
    pub dtls_connected_ms: Option<f64>,
    pub channel_open_ms: Option<f64>,
    pub first_media_ms: Option<f64>,
    /// Audio and video from every expected sender.
    pub all_media_ms: Option<f64>,
}

/// One received track over the measurement window.
#[derive(Debug, Clone, Serialize)]
pub struct TrackReport {
    pub owner: String,
    pub kind: Kind,
    pub ssrc: u32,
    pub packets: u64,
    pub bytes: u64,
    pub kbps: f64,
    pub pps: f64,
    pub expected: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub fps: f64,
    pub keyframes: u64,
    /// Height of the last keyframe received (VP8: the simulcast layer forwarded), or of the last
    /// temporal unit shown (AV1: the spatial layer forwarded, from the Dependency Descriptor).
    pub height: Option<u16>,
    pub jitter_ms: f64,
    /// `av1` when the track carried AV1 with its Dependency Descriptor, else `vp8`/`opus`.
    pub codec: &'static str,
    /// AV1: the spatial layer of the last temporal unit shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spatial: Option<u8>,
    /// AV1: temporal units shown per top spatial layer over the whole session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_by_spatial: Option<[u64; 4]>,
    /// AV1: frames whose references had not all arrived (a decoder could not decode them).
    pub undecodable_frames: u64,
    /// Keyframe requests (PLI) sent for this track over the whole session: one a second at most
    /// while a video stream has not started with a keyframe or cannot be decoded.
    pub plis: u64,
}

/// Everything one participant measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ParticipantReport {
    pub conference: usize,
    pub index: usize,
    pub endpoint: String,
    pub sender: bool,
    /// ICE, DTLS and the bridge channel came up.
    pub connected: bool,
    pub failures: Vec<String>,
    pub timings: Timings,
    pub srtp_profile: Option<String>,
    pub window_s: f64,
    pub tracks: Vec<TrackReport>,
    /// `<endpoint>/<kind>` expected but not received in the window.
    pub missing: Vec<String>,
    pub sent: SendCounters,
    /// Encodings the bridge let us send at the end.
    pub sent_layers: usize,
    pub channel: ChannelCounters,
    pub rtcp: RtcpCounters,
    pub transport_drops: TransportDrops,
    pub receive_drops: ReceiveDrops,
    pub send_errors: u64,
    pub sessions: u32,
    /// Remote media sources the focus signalled in Jingle (session-initiate, source-add); none
    /// with SSRC rewriting, where the bridge's source maps say who is who.
    pub jingle_sources: u64,
    /// RTP packets we sent per second in the window, and their bitrate (RTP headers and payload,
    /// before SRTP).
    pub sent_pps: f64,
    pub sent_kbps: f64,
    /// Everything received in the window (all tracks together).
    pub received_pps: f64,
    pub received_kbps: f64,
    /// Lost / expected over all received tracks in the window.
    pub loss_pct: f64,
    /// The SFU's ICE candidates as signalled (every session): 127.0.0.1, or the SFU's end of the
    /// split namespaces (`crate::netns`).
    pub sfu_candidates: Vec<std::net::SocketAddr>,
}

fn sent_packets(c: &SendCounters) -> u64 {
    c.audio_packets + c.video_packets.iter().sum::<u64>()
}

fn sent_bytes(c: &SendCounters) -> u64 {
    c.audio_bytes + c.video_bytes.iter().sum::<u64>()
}

/// Counters at the start of the measurement window.
#[derive(Debug, Clone)]
pub(crate) struct WindowStart {
    at: Instant,
    /// By track id.
    tracks: HashMap<u64, TrackCounters>,
    sent_packets: u64,
    sent_bytes: u64,
}

impl WindowStart {
    /// Now, with the counters of `sender` and `receiver` (either may be absent).
    pub(crate) fn take(sender: Option<&MediaSender>, receiver: Option<&MediaReceiver>) -> Self {
        let sent = sender.map(|s| &s.counters);
        WindowStart {
            at: Instant::now(),
            tracks: receiver.map(MediaReceiver::snapshot).unwrap_or_default(),
            sent_packets: sent.map_or(0, sent_packets),
            sent_bytes: sent.map_or(0, sent_bytes),
        }
    }

    /// A window that starts at `at` from zero (the participant had no media when it opened).
    pub(crate) fn empty(at: Instant) -> Self {
        WindowStart {
            at,
            tracks: HashMap::new(),
            sent_packets: 0,
            sent_bytes: 0,
        }
    }
}

pub(crate) fn ms(from: Instant, at: Option<Instant>) -> Option<f64> {
    at.map(|a| a.saturating_duration_since(from).as_secs_f64() * 1000.0)
}

pub(crate) fn random_u32() -> u32 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u32::from_be_bytes(b)
}

/// A UDP socket on `ip` with a large receive buffer; with `gro`, UDP GRO asked for (a kernel
/// without it leaves the socket as it was: [`ReceiveBuffers`] reads plain datagrams too).
pub(crate) fn bind_socket(ip: IpAddr, gro: bool) -> std::io::Result<UdpSocket> {
    let domain = if ip.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(RECV_BUFFER);
    let _ = s.set_send_buffer_size(RECV_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    if gro {
        use std::os::fd::AsRawFd;
        udp::enable_gro(s.as_raw_fd(), &IoCounters::default());
    }
    UdpSocket::from_std(s.into())
}

/// Audio and video flow from every one of `expected` senders.
pub(crate) fn all_expected_media(receiver: &MediaReceiver, expected: &[String]) -> bool {
    let audio: Vec<&str> = receiver.owners_receiving(Kind::Audio).collect();
    let video: Vec<&str> = receiver.owners_receiving(Kind::Video).collect();
    expected
        .iter()
        .all(|e| audio.contains(&e.as_str()) && video.contains(&e.as_str()))
}

/// A participant's receive side: `recvmmsg` batches into reused buffers (the bridge's own
/// `transport::udp::RecvBatch`).
///
/// With `--receiver-gro` the socket has UDP GRO, so a GSO message of the bridge (one receiver's
/// run of equal-sized datagrams) reaches it whole on loopback instead of being cut back into
/// datagrams and delivered one by one — work the sender's softirq does on loopback, charged to the
/// bridge, which in a deployment happens on the receiving machines (loadtest/REPORT.md). The
/// datagrams handed to the media endpoint are the same either way.
pub(crate) struct ReceiveBuffers {
    batch: RecvBatch,
    io: IoCounters,
}

impl ReceiveBuffers {
    pub(crate) fn new(gro: bool) -> Self {
        ReceiveBuffers {
            batch: RecvBatch::new(gro),
            io: IoCounters::default(),
        }
    }
}

/// Hands the datagrams waiting on `socket` to `media` (up to [`RECV_CALLS`] batches).
pub(crate) fn receive_batch(
    socket: &UdpSocket,
    media: &mut MediaEndpoint,
    bufs: &mut ReceiveBuffers,
) {
    receive_datagrams(socket, bufs, |now, from, d| {
        media.handle_datagram(now, from, d)
    });
}

/// Hands the datagrams waiting on `socket` to `handle` (up to [`RECV_CALLS`] batches), a GRO
/// message cut back into its datagrams.
fn receive_datagrams(
    socket: &UdpSocket,
    bufs: &mut ReceiveBuffers,
    mut handle: impl FnMut(Instant, SocketAddr, &[u8]),
) {
    for _ in 0..RECV_CALLS {
        let ReceiveBuffers { batch, io } = &mut *bufs;
        match batch.recv_ready(socket, io) {
            Ok(n) => {
                let now = Instant::now();
                for (from, d) in batch.datagrams() {
                    handle(now, from, d);
                }
                if n < udp::BATCH {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                debug!(error = %e, "recv error");
                break;
            }
        }
    }
}

/// Sends every datagram `media` has queued on `socket`; returns how many sends failed.
pub(crate) async fn flush_media(socket: &UdpSocket, media: &mut MediaEndpoint) -> u64 {
    let mut errors = 0;
    while let Some((to, d)) = media.poll_transmit() {
        match socket.try_send_to(&d, to) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if socket.send_to(&d, to).await.is_err() {
                    errors += 1;
                }
            }
            Err(_) => errors += 1,
        }
    }
    errors
}

/// The state of one participant between its join and its leave.
struct Participant {
    cfg: ParticipantConfig,
    xmpp: XmppHandle,
    socket: UdpSocket,
    local_addr: SocketAddr,
    /// Our certificate (one per participant, as a browser has one per peer connection).
    identity: DtlsIdentity,
    sources: LocalSources,
    occupant: String,
    media: Option<MediaEndpoint>,
    offer: Option<Offer>,
    focus_occupant: Option<Jid>,
    pending: JoinSet<(&'static str, Instant, Result<(), String>)>,
    report: ParticipantReport,
    t_start: Instant,
    t_request: Instant,
    window_start: Option<WindowStart>,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    all_media_at: Option<Instant>,
}

/// Runs one participant until the scenario says `Leaving` (or it fails), and reports.
pub async fn run(
    cfg: ParticipantConfig,
    mut phase: watch::Receiver<Phase>,
    progress: mpsc::UnboundedSender<Progress>,
) -> ParticipantReport {
    let start = Instant::now();
    let mut report = ParticipantReport {
        conference: cfg.conference,
        index: cfg.index,
        endpoint: cfg.endpoint.clone(),
        sender: cfg.sender,
        ..ParticipantReport::default()
    };
    let fail = |mut report: ParticipantReport, why: String| {
        let _ = progress.send((cfg.index, Err(why.clone())));
        report.failures.push(why);
        report
    };
    let socket = match bind_socket(cfg.bind, cfg.receiver_gro) {
        Ok(s) => s,
        Err(e) => return fail(report, format!("UDP bind: {e}")),
    };
    let Ok(local_addr) = socket.local_addr() else {
        return fail(report, "UDP socket has no address".into());
    };
    let identity = match DtlsIdentity::generate_named("loadtest") {
        Ok(i) => i,
        Err(e) => return fail(report, e.to_string()),
    };
    let deadline = tokio::time::Instant::from_std(start + cfg.join_timeout);

    // Anonymous login: the user part is only a placeholder (Prosody's anonymous host offers only
    // SASL ANONYMOUS, which tokio-xmpp picks; the server assigns the JID).
    let jid = match BareJid::new(&format!("anonymous@{}", cfg.domain)) {
        Ok(j) => j,
        Err(e) => return fail(report, format!("domain: {e}")),
    };
    let (xmpp, events) =
        xmpp::connect_client(ClientConfig::new(jid, "anonymous", cfg.server.clone()));
    let Some(_jid) = xmpp.wait_online(cfg.join_timeout).await else {
        xmpp.close();
        return fail(report, "XMPP login did not complete".into());
    };
    report.timings.xmpp_login_ms = ms(start, Some(Instant::now()));

    // Conference request, retried while the focus says not ready.
    let t_request = Instant::now();
    loop {
        let r = xmpp
            .iq_set(
                cfg.focus.clone(),
                conference_request(&cfg.room, &cfg.endpoint, &cfg.client),
                IQ_TIMEOUT,
            )
            .await;
        let ready = match r {
            Ok(res) => res
                .payload
                .as_ref()
                .and_then(|p| ConferenceResponse::from_element(p).ok())
                .is_some_and(|c| c.ready),
            Err(e) => {
                xmpp.close();
                return fail(report, format!("conference request: {e}"));
            }
        };
        if ready {
            break;
        }
        if tokio::time::Instant::now() + Duration::from_secs(1) > deadline {
            xmpp.close();
            return fail(report, "the focus never said ready".into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    report.timings.conference_ready_ms = ms(t_request, Some(Instant::now()));

    let layers = if cfg.simulcast { 3 } else { 1 };
    let mut sources = LocalSources::new(
        &cfg.endpoint,
        true,
        if cfg.sender { layers } else { 0 },
        random_u32,
    );
    if cfg.client.is_current() {
        sources = sources.current();
    }
    let join = MucJoin::new(cfg.room.clone(), cfg.endpoint.clone()).with_extra(presence_extra(
        &cfg.endpoint,
        &cfg.display_name,
        cfg.sender,
        cfg.sender,
        &cfg.client,
    ));
    let occupant = match xmpp.join_muc(join).await {
        Ok(j) => j.occupant.to_string(),
        Err(e) => {
            xmpp.close();
            return fail(report, format!("MUC join: {e}"));
        }
    };
    report.timings.muc_joined_ms = ms(t_request, Some(Instant::now()));

    let mut p = Participant {
        cfg,
        xmpp,
        socket,
        local_addr,
        identity,
        sources,
        occupant,
        media: None,
        offer: None,
        focus_occupant: None,
        pending: JoinSet::new(),
        report,
        t_start: start,
        t_request,
        window_start: None,
        progress: Some(progress),
        all_media_at: None,
    };
    let mut events = events;
    p.run_loop(&mut events, &mut phase, deadline).await;
    p.leave(events).await
}

impl Participant {
    fn progress(&mut self, r: Result<(), String>) {
        if let Some(tx) = self.progress.take() {
            let _ = tx.send((self.cfg.index, r));
        }
    }

    fn fail(&mut self, why: String) {
        warn!(endpoint = %self.cfg.endpoint, %why, "participant failure");
        self.progress(Err(why.clone()));
        self.report.failures.push(why);
    }

    async fn run_loop(
        &mut self,
        events: &mut xmpp::XmppEvents,
        phase: &mut watch::Receiver<Phase>,
        join_deadline: tokio::time::Instant,
    ) {
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        let mut buf = ReceiveBuffers::new(self.cfg.receiver_gro);
        let mut next_check = Instant::now();
        if *phase.borrow() == Phase::Measuring {
            self.open_window();
        }
        loop {
            let now = Instant::now();
            let deadline = self
                .media
                .as_ref()
                .and_then(MediaEndpoint::poll_timeout)
                .unwrap_or(now + Duration::from_millis(200))
                .min(now + Duration::from_millis(200));
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_xmpp(ev),
                    None => {
                        self.fail("XMPP session closed".into());
                        return;
                    }
                },
                changed = phase.changed() => {
                    let p = *phase.borrow();
                    if changed.is_err() || p == Phase::Leaving {
                        return;
                    }
                    if p == Phase::Measuring {
                        self.open_window();
                    }
                },
                r = self.socket.readable(), if self.media.is_some() => {
                    if r.is_ok() {
                        self.receive(&mut buf);
                    }
                },
                () = &mut sleep => {
                    let now = Instant::now();
                    if let Some(m) = self.media.as_mut() {
                        m.handle_timeout(now);
                    }
                    if now >= next_check {
                        next_check = now + Duration::from_millis(100);
                        self.check_progress(now, join_deadline);
                    }
                },
                Some(done) = self.pending.join_next() => {
                    if let Ok((what, at, r)) = done {
                        match r {
                            Ok(()) if what == "session-accept" => {
                                self.report.timings.session_accept_acked_ms = ms(self.t_request, Some(at));
                            }
                            Ok(()) => {}
                            Err(e) => self.fail(format!("{what}: {e}")),
                        }
                    }
                },
            }
            self.flush().await;
        }
    }

    fn receive(&mut self, buf: &mut ReceiveBuffers) {
        if let Some(media) = self.media.as_mut() {
            receive_batch(&self.socket, media, buf);
        }
    }

    async fn flush(&mut self) {
        if let Some(media) = self.media.as_mut() {
            self.report.send_errors += flush_media(&self.socket, media).await;
        }
    }

    fn open_window(&mut self) {
        let m = self.media.as_ref();
        self.window_start = Some(WindowStart::take(
            m.map(MediaEndpoint::sender),
            m.map(MediaEndpoint::receiver),
        ));
    }

    /// Connected when the bridge channel is open; everything expected arrived when every other
    /// sender's audio and video flow.
    fn check_progress(&mut self, now: Instant, join_deadline: tokio::time::Instant) {
        let late = tokio::time::Instant::from_std(now) > join_deadline;
        let Some(m) = self.media.as_ref() else {
            if late && self.progress.is_some() {
                self.fail("no session-initiate from the focus before the join timeout".into());
            }
            return;
        };
        let failure = m.failure.clone();
        let open = m.milestones.channel_open.is_some();
        let all_media = self.all_media_at.is_none()
            && all_expected_media(m.receiver(), &self.cfg.expected_senders);
        if all_media {
            self.all_media_at = Some(now);
        }
        if let Some(f) = failure {
            if !self.report.failures.contains(&f) {
                self.fail(f);
            }
        } else if open {
            self.report.connected = true;
            self.progress(Ok(()));
        } else if late && self.progress.is_some() {
            self.fail("ICE/DTLS/bridge channel not up before the join timeout".into());
        }
    }

    fn on_xmpp(&mut self, ev: Event) {
        match ev {
            Event::IqRequest(iq) => self.on_iq(iq),
            Event::Presence(p) => {
                if p.type_ == xmpp::parsers::presence::Type::Unavailable
                    && let Some(from) = &p.from
                    && from.to_bare() == self.cfg.room
                    && let Some(nick) = from.resource()
                    && let Some(m) = self.media.as_mut()
                {
                    m.remove_owner(Instant::now(), nick.as_str());
                }
            }
            Event::Disconnected { reason } => self.fail(format!("XMPP disconnected: {reason}")),
            Event::MucRemoved { room } => self.fail(format!("removed from {room}")),
            _ => {}
        }
    }

    fn on_iq(&mut self, iq: IncomingIq) {
        if iq.kind == IqKind::Get && is_disco_info(&iq.payload) {
            let node = iq.payload.attr("node").map(str::to_owned);
            iq.reply_result(Some(disco_info(node.as_deref(), &self.cfg.client)));
            return;
        }
        if !iq.payload.is("jingle", ns::JINGLE) || iq.kind != IqKind::Set {
            return; // answered service-unavailable by the drop guard
        }
        let from_focus = iq.from.as_ref().is_some_and(|f| {
            f.to_bare() == self.cfg.room && f.resource().is_some_and(|r| r.as_str() == "focus")
        });
        let jingle = match Jingle::from_element(&iq.payload) {
            Ok(j) if from_focus => j,
            Ok(_) => return,
            Err(e) => {
                self.report.failures.push(format!("unparsable Jingle: {e}"));
                return;
            }
        };
        let from = iq.from.clone();
        iq.reply_result(None);
        let now = Instant::now();
        match jingle.action {
            Action::SessionInitiate => {
                self.report
                    .timings
                    .session_initiate_ms
                    .get_or_insert_with(|| {
                        now.saturating_duration_since(self.t_request).as_secs_f64() * 1000.0
                    });
                if let Some(f) = from {
                    self.focus_occupant = Some(f);
                }
                if let Err(e) = self.start_session(now, &jingle) {
                    self.fail(format!("session-initiate: {e}"));
                }
            }
            Action::SourceAdd | Action::SourceRemove => {
                let Ok(map) = ConferenceSourceMap::from_jingle(&jingle, None) else {
                    self.report
                        .failures
                        .push(format!("unparsable {}", jingle.action));
                    return;
                };
                let remote = remote_sources(&map, &self.cfg.endpoint);
                if jingle.action == Action::SourceAdd {
                    self.report.jingle_sources += remote.len() as u64;
                }
                if let Some(m) = self.media.as_mut() {
                    if jingle.action == Action::SourceAdd {
                        m.add_sources(now, remote);
                    } else {
                        m.remove_sources(now, remote.into_iter().map(|(s, _)| s));
                    }
                }
            }
            Action::SessionTerminate => {
                // The focus moves us (bridge failure) or ends the session: wait for a new offer.
                if let Some(mut m) = self.media.take() {
                    m.close(now);
                    self.absorb(&m);
                }
                self.offer = None;
            }
            _ => {}
        }
    }

    /// Answers a session-initiate: our transport and sources, then ICE toward the bridge.
    fn start_session(&mut self, now: Instant, jingle: &Jingle) -> Result<(), String> {
        let offer = parse_offer(jingle).map_err(|e| e.to_string())?;
        let neg = negotiate(&offer).map_err(|e| e.to_string())?;
        let cfg = TransportConfig {
            srtp_profiles: self.cfg.srtp_profiles.clone(),
            ..TransportConfig::client()
        };
        let mut transport = EndpointTransport::new(
            IceCredentials::random(),
            &self.identity,
            cfg,
            Arc::new(DropCounters::new()),
        )
        .map_err(|e| e.to_string())?;
        transport.set_remote(now, offer.bridge.clone());
        self.report
            .sfu_candidates
            .extend(offer.bridge.candidates.iter().map(|c| c.addr));
        let audio = self
            .sources
            .audio
            .filter(|_| self.cfg.sender)
            .map(|ssrc| AudioConfig {
                ssrc,
                payload_type: neg.opus.id,
                audio_level_ext: neg.audio_ext(signaling::rtp_description::hdrext::AUDIO_LEVEL),
                transport_cc_ext: neg.audio_ext(signaling::rtp_description::hdrext::TRANSPORT_CC),
                payload_bytes: 80,
            });
        // The current client sends AV1 SVC when the focus offers AV1 with the Dependency
        // Descriptor (its default codec preference), else VP8 simulcast.
        let av1 = neg
            .av1_with_dd()
            .filter(|_| self.cfg.client.sends_av1())
            .map(|(pt, dd)| (pt.id, dd));
        let (codec, payload_type) = match av1 {
            Some((pt, dd_ext)) => (VideoCodec::Av1 { dd_ext }, pt),
            None => (VideoCodec::Vp8, neg.vp8.id),
        };
        let video = (self.cfg.sender && !self.sources.video.is_empty()).then(|| VideoConfig {
            codec,
            payload_type,
            layers: if self.sources.video.len() == 3 {
                default_layers([
                    self.sources.video[0],
                    self.sources.video[1],
                    self.sources.video[2],
                ])
            } else {
                vec![LayerConfig {
                    ssrc: self.sources.video[0],
                    width: 1280,
                    height: 720,
                    bitrate_bps: 1_500_000,
                }]
            },
            fps: 30,
            keyframe_interval: Duration::from_secs(3),
            transport_cc_ext: neg.video_ext(signaling::rtp_description::hdrext::TRANSPORT_CC),
            abs_send_time_ext: neg.video_ext(signaling::rtp_description::hdrext::ABS_SEND_TIME),
        });
        let sender = MediaSender::new(
            now,
            audio,
            video,
            self.cfg.speaking,
            &self.cfg.display_name,
            self.cfg.seed,
        );
        let rtcp_ssrc = self.sources.audio.unwrap_or(1);
        // Whatever our dialect, AV1 from the bridge is read through its descriptor (the focus
        // offered it to every participant).
        let mut receiver = MediaReceiver::new(now, rtcp_ssrc, neg.transport_cc());
        if let Some((pt, dd)) = neg.av1_with_dd() {
            receiver.set_av1(pt.id, dd);
        }
        let mut media = MediaEndpoint::new(
            transport,
            sender,
            receiver,
            &self.cfg.endpoint,
            self.cfg.view,
        )
        .with_client(self.cfg.client);
        let remote = remote_sources(&offer.sources, &self.cfg.endpoint);
        self.report.jingle_sources += remote.len() as u64;
        media.add_sources(now, remote);
        let ours = local_transport(media.transport(), self.local_addr);
        let accept = session_accept(&offer, &neg, &self.sources, &ours, &self.occupant);
        let to = self
            .focus_occupant
            .clone()
            .ok_or_else(|| "session-initiate without a sender".to_string())?;
        let xmpp = self.xmpp.clone();
        let el: Element = accept.to_element();
        self.pending.spawn(async move {
            let r = xmpp.iq_set(to, el, IQ_TIMEOUT).await;
            (
                "session-accept",
                Instant::now(),
                r.map(|_| ()).map_err(|e| e.to_string()),
            )
        });
        if let Some(mut old) = self.media.replace(media) {
            old.close(now);
            self.absorb(&old);
        }
        self.offer = Some(offer);
        self.report.sessions += 1;
        Ok(())
    }

    /// Keeps the milestones of a session that ended (a re-invite starts a new one).
    fn absorb(&mut self, m: &MediaEndpoint) {
        let t = &mut self.report.timings;
        let r = self.t_request;
        if t.ice_connected_ms.is_none() {
            t.ice_connected_ms = ms(r, m.milestones.ice_connected);
        }
        if t.dtls_connected_ms.is_none() {
            t.dtls_connected_ms = ms(r, m.milestones.dtls_connected);
        }
        if t.channel_open_ms.is_none() {
            t.channel_open_ms = ms(r, m.milestones.channel_open);
        }
        if t.first_media_ms.is_none() {
            t.first_media_ms = ms(r, m.milestones.first_media);
        }
        if t.join_ms.is_none() {
            t.join_ms = ms(self.t_start, m.milestones.channel_open);
        }
    }

    /// Snapshot, session-terminate, leave the room, close; then the report. Everybody leaves at
    /// once, so the focus's source-removes for the others keep arriving meanwhile: they are
    /// acknowledged as a client would, not left to time out.
    async fn leave(mut self, mut events: xmpp::XmppEvents) -> ParticipantReport {
        let end = Instant::now();
        if let Some(m) = self.media.take() {
            self.finish_report(end, &m);
            self.media = Some(m);
        }
        let client = self.cfg.client;
        {
            let work = async {
                if let (Some(offer), Some(to)) = (self.offer.as_ref(), self.focus_occupant.clone())
                {
                    let t = session_terminate(&offer.sid).to_element();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(3),
                        self.xmpp.iq_set(to, t, Duration::from_secs(3)),
                    )
                    .await;
                }
                if let Some(m) = self.media.as_mut() {
                    m.close(Instant::now());
                }
                self.flush().await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(3),
                    self.xmpp.leave_muc(&self.cfg.room),
                )
                .await;
            };
            tokio::pin!(work);
            loop {
                tokio::select! {
                    () = &mut work => break,
                    ev = events.recv() => match ev {
                        Some(Event::IqRequest(iq)) if iq.kind == IqKind::Get && is_disco_info(&iq.payload) => {
                            let node = iq.payload.attr("node").map(str::to_owned);
                            iq.reply_result(Some(disco_info(node.as_deref(), &client)));
                        }
                        Some(Event::IqRequest(iq)) if iq.kind == IqKind::Set && iq.payload.is("jingle", ns::JINGLE) => {
                            iq.reply_result(None);
                        }
                        Some(_) => {}
                        None => {
                            (&mut work).await;
                            break;
                        }
                    },
                }
            }
        }
        self.xmpp.close();
        self.pending.abort_all();
        self.report
    }

    fn finish_report(&mut self, end: Instant, m: &MediaEndpoint) {
        self.absorb(m);
        self.report.timings.all_media_ms = ms(self.t_request, self.all_media_at);
        self.report.timings.join_to_all_media_ms = ms(self.t_start, self.all_media_at);
        self.report.srtp_profile = m.transport().srtp_profile().map(|p| p.name().to_owned());
        let ws = self
            .window_start
            .clone()
            .unwrap_or_else(|| WindowStart::empty(end));
        window_report(
            &mut self.report,
            &ws,
            end,
            Some(m.sender()),
            Some(m.receiver()),
            &self.cfg.expected_senders,
        );
        self.report.sent_layers = m.sender().enabled_layers();
        self.report.channel = m.channel.clone();
        self.report.rtcp = m.rtcp;
        self.report.transport_drops = m.transport_drops();
        self.report.send_errors += m.send_errors;
        if let Some(f) = &m.failure
            && !self.report.failures.contains(f)
        {
            self.report.failures.push(f.clone());
        }
    }
}

/// The window's figures of one participant: what it sent (`sender`), every track it received
/// (`receiver`) with loss and rates, and which expected senders' audio or video never came. The
/// same for both SFUs' participants.
pub(crate) fn window_report(
    report: &mut ParticipantReport,
    ws: &WindowStart,
    end: Instant,
    sender: Option<&MediaSender>,
    receiver: Option<&MediaReceiver>,
    expected_senders: &[String],
) {
    let before = &ws.tracks;
    let secs = end.saturating_duration_since(ws.at).as_secs_f64();
    report.window_s = secs;
    if secs > 0.0
        && let Some(s) = sender
    {
        let c = &s.counters;
        let packets = sent_packets(c).saturating_sub(ws.sent_packets);
        let bytes = sent_bytes(c).saturating_sub(ws.sent_bytes);
        report.sent_pps = packets as f64 / secs;
        report.sent_kbps = bytes as f64 * 8.0 / 1000.0 / secs;
    }
    let mut received: Vec<(String, Kind)> = Vec::new();
    let mut tracks: Vec<TrackReport> = receiver
        .into_iter()
        .flat_map(MediaReceiver::tracks)
        .map(|t| {
            let w = t
                .counters
                .since(before.get(&t.id).unwrap_or(&TrackCounters::default()));
            if w.packets > 0 {
                received.push((t.source.owner.clone(), t.source.kind));
            }
            let per_s = |v: u64| if secs > 0.0 { v as f64 / secs } else { 0.0 };
            TrackReport {
                owner: t.source.owner.clone(),
                kind: t.source.kind,
                ssrc: t.ssrc,
                packets: w.packets,
                bytes: w.bytes,
                kbps: per_s(w.bytes) * 8.0 / 1000.0,
                pps: per_s(w.packets),
                expected: w.expected,
                lost: w.lost(),
                loss_pct: w.loss_fraction() * 100.0,
                fps: per_s(w.frames),
                keyframes: w.keyframes,
                height: t.size.map(|(_, h)| h),
                jitter_ms: t.jitter_ms(),
                codec: match (&t.av1, t.source.kind) {
                    (Some(_), _) => "av1",
                    (None, Kind::Video) => "vp8",
                    (None, Kind::Audio) => "opus",
                },
                spatial: t.av1.as_ref().and_then(|a| a.shown_spatial),
                units_by_spatial: t.av1.as_ref().map(|a| a.units_by_spatial),
                undecodable_frames: t.av1.as_ref().map_or(0, |a| a.undecodable_frames),
                plis: t.plis_sent,
            }
        })
        .collect();
    tracks.sort_by(|a, b| (&a.owner, a.kind, a.ssrc).cmp(&(&b.owner, b.kind, b.ssrc)));
    report.received_pps = tracks.iter().map(|t| t.pps).sum();
    report.received_kbps = tracks.iter().map(|t| t.kbps).sum();
    let (lost, expected) = tracks
        .iter()
        .fold((0u64, 0u64), |(l, e), t| (l + t.lost, e + t.expected));
    report.loss_pct = if expected > 0 {
        lost as f64 / expected as f64 * 100.0
    } else {
        0.0
    };
    report.tracks = tracks;
    for e in expected_senders {
        for kind in [Kind::Audio, Kind::Video] {
            if !received.iter().any(|(o, k)| o == e && *k == kind) {
                let k = match kind {
                    Kind::Audio => "audio",
                    Kind::Video => "video",
                };
                report.missing.push(format!("{e}/{k}"));
            }
        }
    }
    if let Some(s) = sender {
        report.sent = s.counters.clone();
    }
    if let Some(r) = receiver {
        report.receive_drops = r.drops;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::Ordering::Relaxed;

    /// With `--receiver-gro` a GSO message of the bridge (its `udp::send`) reaches a participant's
    /// socket as one message and comes out of [`ReceiveBuffers`] as the datagrams it was made of;
    /// without, as separate datagrams. Real sockets on loopback.
    #[tokio::test]
    async fn a_gso_message_reaches_a_gro_socket_whole_and_is_cut_back_into_its_datagrams() {
        for gro in [true, false] {
            let rx = bind_socket(IpAddr::from([127, 0, 0, 1]), gro).expect("bind");
            let to = rx.local_addr().expect("addr");
            let tx = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let sent = IoCounters::default();
            udp::probe_gso(tx.as_raw_fd(), &sent);
            let datagrams: Vec<(SocketAddr, Vec<u8>)> = (0..3u8)
                .map(|i| (to, vec![i; if i == 2 { 40 } else { 100 }]))
                .collect();
            udp::send(tx.as_raw_fd(), &datagrams, true, &sent).expect("send");
            assert_eq!(sent.gso_messages.load(Relaxed), 1, "one GSO message");

            let mut bufs = ReceiveBuffers::new(gro);
            let mut got = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(2);
            while got.len() < 3 && Instant::now() < deadline {
                rx.readable().await.expect("readable");
                receive_datagrams(&rx, &mut bufs, |_, _, d| got.push(d.to_vec()));
            }
            let want: Vec<Vec<u8>> = datagrams.into_iter().map(|(_, d)| d).collect();
            assert_eq!(got, want, "gro {gro}");
            assert_eq!(
                bufs.io.gro_messages.load(Relaxed),
                u64::from(gro),
                "gro {gro}"
            );
        }
    }
}
