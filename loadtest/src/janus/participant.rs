//! The async shell of one participant in a Janus VideoRoom: a Janus session over HTTP (long
//! poll for events), a publisher handle and PeerConnection (our offer: Opus + VP8 simulcast,
//! sendonly) and one subscriber handle and PeerConnection carrying every other publisher's
//! streams (Janus 1.x multistream: Janus offers, we answer; new publishers are added with
//! `subscribe`, Janus renegotiates). The media plane is the same [`MediaEndpoint`] as toward our
//! bridge — the bridge's `EndpointTransport` with the synthetic sender and receiver — one per
//! PeerConnection, each on a UDP socket of its own.
//!
//! Roles (Janus is a full ICE agent): on the publisher PeerConnection we offer, so we are the
//! controlling agent (RFC 8445 §6.1.1) and Janus, answering `setup:active`, is the DTLS client;
//! on the subscriber PeerConnection Janus offers and controls, and we answer `setup:passive` so
//! that Janus is the DTLS client there too. Our transport is thus a DTLS server on both, which
//! keeps its SCTP side passive (neither side negotiates a data channel).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge::transport::{
    DropCounters, DtlsIdentity, EndpointTransport, IceConfig, IceCredentials, IceRole,
    RemoteTransport, Role, TransportConfig,
};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::warn;

use super::api::{ApiError, JanusEvent, Session};
use super::sdp::{self, LocalTransport, PublishMedia, Sdp};
use crate::media::MediaEndpoint;
use crate::participant::{
    ParticipantConfig, ParticipantReport, Phase, Progress, ReceiveBuffers, WindowStart,
    all_expected_media, bind_socket, flush_media, ms, random_u32, receive_batch, window_report,
};
use crate::receiver::{Kind, MediaReceiver, RemoteSource};
use crate::sender::{AudioConfig, LayerConfig, MediaSender, VideoConfig, default_layers};

const VIDEOROOM: &str = "janus.plugin.videoroom";

/// Where the participant goes.
#[derive(Debug, Clone)]
pub struct JanusRoom {
    /// `http://127.0.0.1:<port>/janus`.
    pub url: String,
    /// Janus's own address (its API's host): the only ICE candidate address accepted.
    pub sfu_ip: std::net::IpAddr,
    pub room: u64,
    /// Our publisher id in the room (unique in it).
    pub feed: u64,
}

/// One PeerConnection: its socket and media plane.
struct Pc {
    socket: UdpSocket,
    addr: SocketAddr,
    ice: IceCredentials,
    media: Option<MediaEndpoint>,
}

impl Pc {
    fn new(bind: std::net::IpAddr, gro: bool) -> Result<Pc, String> {
        let socket = bind_socket(bind, gro).map_err(|e| format!("UDP bind: {e}"))?;
        let addr = socket.local_addr().map_err(|e| e.to_string())?;
        Ok(Pc {
            socket,
            addr,
            ice: IceCredentials::random(),
            media: None,
        })
    }

    fn local(&self, identity: &DtlsIdentity, setup: &'static str) -> LocalTransport {
        LocalTransport {
            ice: self.ice.clone(),
            fingerprint: identity.fingerprint().clone(),
            setup,
            addr: self.addr,
        }
    }

    fn receive(&mut self, buf: &mut ReceiveBuffers) {
        if let Some(media) = self.media.as_mut() {
            receive_batch(&self.socket, media, buf);
        }
    }

    async fn flush(&mut self) -> u64 {
        match self.media.as_mut() {
            Some(media) => flush_media(&self.socket, media).await,
            None => 0,
        }
    }

    fn dtls_up(&self) -> bool {
        self.media
            .as_ref()
            .is_some_and(|m| m.milestones.dtls_connected.is_some())
    }
}

/// What an HTTP request spawned from the loop reports back.
type Pending = JoinSet<(&'static str, Result<(), ApiError>)>;

struct JanusParticipant {
    cfg: ParticipantConfig,
    room: JanusRoom,
    session: Session,
    identity: DtlsIdentity,
    publisher: u64,
    subscriber: Option<u64>,
    publish_pc: Pc,
    subscribe_pc: Pc,
    /// Other publishers: feed id → display (their endpoint id).
    feeds: BTreeMap<u64, String>,
    /// Feeds asked for (in the subscriber's join or a `subscribe`).
    subscribed: BTreeSet<u64>,
    /// A join/subscribe is out and its offer not answered yet (Janus takes one at a time).
    renegotiating: bool,
    on_stage: Option<u64>,
    pending: Pending,
    report: ParticipantReport,
    t_start: Instant,
    t_request: Instant,
    window_start: Option<WindowStart>,
    progress: Option<mpsc::UnboundedSender<Progress>>,
    all_media_at: Option<Instant>,
    send_errors: u64,
    /// Our RTCP sender SSRC on the subscriber PeerConnection.
    rtcp_ssrc: u32,
}

/// Runs one participant until the scenario says `Leaving` (or it fails), and reports.
pub async fn run(
    cfg: ParticipantConfig,
    room: JanusRoom,
    mut phase: watch::Receiver<Phase>,
    progress: mpsc::UnboundedSender<Progress>,
) -> ParticipantReport {
    let start = Instant::now();
    let report = ParticipantReport {
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
    let (publish_pc, subscribe_pc) = match (
        Pc::new(cfg.bind, cfg.receiver_gro),
        Pc::new(cfg.bind, cfg.receiver_gro),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(report, e),
    };
    let identity = match DtlsIdentity::generate_named("loadtest") {
        Ok(i) => i,
        Err(e) => return fail(report, e.to_string()),
    };
    let deadline = tokio::time::Instant::from_std(start + cfg.join_timeout);
    let session = match Session::create(&room.url).await {
        Ok(s) => s,
        Err(e) => return fail(report, format!("Janus session: {e}")),
    };
    // Events of the whole session, long-polled on a task of their own.
    let (ev_tx, mut events) = mpsc::unbounded_channel();
    let poller = {
        let s = session.clone();
        tokio::spawn(async move {
            loop {
                match s.poll(16).await {
                    Ok(list) => {
                        for e in list {
                            if ev_tx.send(Ok(e)).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = ev_tx.send(Err(e));
                        return;
                    }
                }
            }
        })
    };
    let publisher = match session.attach(VIDEOROOM).await {
        Ok(h) => h,
        Err(e) => {
            poller.abort();
            let _ = session.destroy().await;
            return fail(report, format!("attach: {e}"));
        }
    };
    let t_request = Instant::now();
    let mut p = JanusParticipant {
        cfg,
        room,
        session,
        identity,
        publisher,
        subscriber: None,
        publish_pc,
        subscribe_pc,
        feeds: BTreeMap::new(),
        subscribed: BTreeSet::new(),
        renegotiating: false,
        on_stage: None,
        pending: JoinSet::new(),
        report,
        t_start: start,
        t_request,
        window_start: None,
        progress: Some(progress),
        all_media_at: None,
        send_errors: 0,
        rtcp_ssrc: random_u32(),
    };
    if let Err(e) = p.join(&mut events).await {
        p.fail(e);
    } else {
        p.run_loop(&mut events, &mut phase, deadline).await;
    }
    poller.abort();
    p.leave().await
}

/// Waits for the event answering `transaction` (other events are handled meanwhile).
fn is_reply(e: &JanusEvent, transaction: &str) -> bool {
    e.kind == "event" && e.transaction.as_deref() == Some(transaction)
}

impl JanusParticipant {
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

    /// Joins the room as a publisher and, if we send, publishes (offer → Janus's answer).
    async fn join(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Result<JanusEvent, ApiError>>,
    ) -> Result<(), String> {
        let r = self
            .session
            .message(
                self.publisher,
                json!({"request": "join", "ptype": "publisher", "room": self.room.room,
                       "id": self.room.feed, "display": self.cfg.endpoint}),
                None,
            )
            .await
            .map_err(|e| format!("join: {e}"))?;
        let joined = self.wait_reply(events, &r.transaction).await?;
        if joined.data["videoroom"] != "joined" {
            return Err(format!("join: unexpected {}", joined.data));
        }
        self.report.timings.muc_joined_ms = ms(self.t_request, Some(Instant::now()));
        self.on_publishers(&joined.data);
        if !self.cfg.sender {
            return Ok(());
        }
        let layers = if self.cfg.simulcast { 3 } else { 1 };
        let media = PublishMedia {
            cname: self.cfg.endpoint.clone(),
            audio_ssrc: random_u32(),
            video_ssrcs: (0..layers).map(|_| random_u32()).collect(),
        };
        let offer = sdp::publisher_offer(
            u64::from(random_u32()),
            &self.publish_pc.local(&self.identity, "actpass"),
            &media,
        );
        let r = self
            .session
            .message(
                self.publisher,
                json!({"request": "publish", "display": self.cfg.endpoint}),
                Some(json!({"type": "offer", "sdp": offer, "trickle": false})),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        let reply = self.wait_reply(events, &r.transaction).await?;
        let answer = reply
            .jsep
            .as_ref()
            .and_then(|j| j["sdp"].as_str())
            .ok_or_else(|| format!("publish: no answer in {}", reply.data))?;
        self.report.timings.session_initiate_ms = ms(self.t_request, Some(Instant::now()));
        self.start_publisher(&sdp::parse(answer), &media)
    }

    async fn wait_reply(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Result<JanusEvent, ApiError>>,
        transaction: &str,
    ) -> Result<JanusEvent, String> {
        let limit = tokio::time::sleep(Duration::from_secs(15));
        tokio::pin!(limit);
        loop {
            tokio::select! {
                e = events.recv() => match e {
                    Some(Ok(e)) if is_reply(&e, transaction) => {
                        if let Some(code) = e.data["error_code"].as_i64() {
                            return Err(format!("Janus error {code}: {}", e.data["error"]));
                        }
                        return Ok(e);
                    }
                    Some(Ok(e)) => self.on_event(e),
                    Some(Err(e)) => return Err(format!("long poll: {e}")),
                    None => return Err("long poll ended".into()),
                },
                () = &mut limit => return Err("no answer from Janus within 15 s".into()),
            }
        }
    }

    /// Our publisher PeerConnection from Janus's answer.
    fn start_publisher(&mut self, answer: &Sdp, media: &PublishMedia) -> Result<(), String> {
        let now = Instant::now();
        let remote = self.remote_transport(answer)?;
        let audio = answer.section("audio");
        let video = answer.section("video");
        let mut transport = self.transport(answer, IceRole::Controlling, &self.publish_pc.ice)?;
        transport.set_remote(now, remote);
        let audio = audio.map(|a| AudioConfig {
            ssrc: media.audio_ssrc,
            payload_type: a.payload_type("opus").unwrap_or(sdp::OPUS_PT),
            audio_level_ext: a.ext(sdp::EXT_AUDIO_LEVEL.1),
            transport_cc_ext: a.ext(sdp::EXT_TRANSPORT_CC.1),
            payload_bytes: 80,
        });
        let video = video.map(|v| VideoConfig {
            codec: crate::sender::VideoCodec::Vp8,
            payload_type: v.payload_type("VP8").unwrap_or(sdp::VP8_PT),
            layers: if media.video_ssrcs.len() == 3 {
                default_layers([
                    media.video_ssrcs[0],
                    media.video_ssrcs[1],
                    media.video_ssrcs[2],
                ])
            } else {
                vec![LayerConfig {
                    ssrc: media.video_ssrcs[0],
                    width: 1280,
                    height: 720,
                    bitrate_bps: 1_500_000,
                }]
            },
            fps: 30,
            keyframe_interval: Duration::from_secs(3),
            transport_cc_ext: v.ext(sdp::EXT_TRANSPORT_CC.1),
            abs_send_time_ext: v.ext(sdp::EXT_ABS_SEND_TIME.1),
        });
        let sender = MediaSender::new(
            now,
            audio,
            video,
            self.cfg.speaking,
            &self.cfg.display_name,
            self.cfg.seed,
        );
        let receiver = MediaReceiver::new(now, media.audio_ssrc, None);
        self.publish_pc.media = Some(MediaEndpoint::new(
            transport,
            sender,
            receiver,
            &self.cfg.endpoint,
            self.cfg.view,
        ));
        Ok(())
    }

    /// Janus's transport from its SDP (only candidates on its own address), noted in the report.
    fn remote_transport(&mut self, sdp: &Sdp) -> Result<RemoteTransport, String> {
        let remote = sdp
            .remote_transport(self.room.sfu_ip)
            .map_err(|e| e.to_string())?;
        self.report
            .sfu_candidates
            .extend(remote.candidates.iter().map(|c| c.addr));
        Ok(remote)
    }

    /// A client-side transport whose DTLS role follows the peer's `setup` (we are the server
    /// when Janus is `active`, the client when it is `passive`).
    fn transport(
        &self,
        remote: &Sdp,
        ice: IceRole,
        creds: &IceCredentials,
    ) -> Result<EndpointTransport, String> {
        let role = match remote.setup.as_deref() {
            Some("passive") => Role::Client,
            _ => Role::Server,
        };
        let cfg = TransportConfig {
            role,
            ice: IceConfig {
                role: ice,
                ..IceConfig::default()
            },
            srtp_profiles: self.cfg.srtp_profiles.clone(),
            ..TransportConfig::client()
        };
        EndpointTransport::new(
            creds.clone(),
            &self.identity,
            cfg,
            Arc::new(DropCounters::new()),
        )
        .map_err(|e| e.to_string())
    }

    /// `publishers` of a `joined` or `event` message: feeds to subscribe to.
    fn on_publishers(&mut self, data: &Value) {
        for p in data["publishers"].as_array().into_iter().flatten() {
            if let (Some(id), Some(display)) = (p["id"].as_u64(), p["display"].as_str())
                && id != self.room.feed
            {
                self.feeds.insert(id, display.to_owned());
            }
        }
        self.maybe_subscribe();
    }

    /// The simulcast layer we ask for a feed: 720p for the one on stage (the lowest endpoint id
    /// among the publishers of our first subscription, as `MediaEndpoint` picks it toward the
    /// bridge), 180p for everybody else.
    fn substream(&self, feed: u64) -> u8 {
        let h = if self.on_stage == Some(feed) {
            self.cfg.view.stage_height
        } else {
            self.cfg.view.thumbnail_height
        };
        match h {
            h if h >= 720 => 2,
            h if h >= 360 => 1,
            _ => 0,
        }
    }

    /// Subscribes to feeds not subscribed yet (one renegotiation at a time).
    fn maybe_subscribe(&mut self) {
        if self.renegotiating {
            return;
        }
        let new: Vec<u64> = self
            .feeds
            .keys()
            .filter(|f| !self.subscribed.contains(f))
            .copied()
            .collect();
        if new.is_empty() {
            return;
        }
        if self.on_stage.is_none() {
            self.on_stage = self
                .feeds
                .iter()
                .min_by(|a, b| a.1.cmp(b.1))
                .map(|(id, _)| *id);
        }
        let streams: Vec<Value> = new
            .iter()
            .map(|f| json!({"feed": f, "substream": self.substream(*f), "temporal": 2}))
            .collect();
        self.subscribed.extend(new);
        self.renegotiating = true;
        let session = self.session.clone();
        let room = self.room.room;
        match self.subscriber {
            Some(h) => {
                self.pending.spawn(async move {
                    let r = session
                        .message(h, json!({"request": "subscribe", "streams": streams}), None)
                        .await;
                    ("subscribe", r.map(|_| ()))
                });
            }
            None => {
                // The handle is attached in the task; its id comes back with the offer's
                // `sender`, which is the only handle we do not know yet.
                self.pending.spawn(async move {
                    let r = async {
                        let h = session.attach(VIDEOROOM).await?;
                        session
                            .message(
                                h,
                                json!({"request": "join", "ptype": "subscriber", "room": room,
                                       "streams": streams}),
                                None,
                            )
                            .await
                    }
                    .await;
                    ("subscriber join", r.map(|_| ()))
                });
            }
        }
    }

    fn on_event(&mut self, e: JanusEvent) {
        let is_publisher = e.sender == Some(self.publisher);
        match e.kind.as_str() {
            "event" if is_publisher => {
                if e.data.get("publishers").is_some() {
                    self.on_publishers(&e.data);
                }
                for key in ["unpublished", "leaving"] {
                    if let Some(id) = e.data[key].as_u64() {
                        self.feeds.remove(&id);
                    }
                }
            }
            "event" => {
                // The subscriber handle: `attached` / `updated` with an offer.
                if self.subscriber.is_none() && e.data["videoroom"] == "attached" {
                    self.subscriber = e.sender;
                }
                if e.sender.is_some()
                    && e.sender == self.subscriber
                    && let Some(sdp) = e.jsep.as_ref().and_then(|j| j["sdp"].as_str())
                    && let Err(why) = self.on_subscriber_offer(&sdp::parse(sdp), &e.data)
                {
                    self.fail(format!("subscriber offer: {why}"));
                }
            }
            "hangup" => {
                let what = if is_publisher {
                    "publisher"
                } else {
                    "subscriber"
                };
                let reason = e.raw["reason"].as_str().unwrap_or("").to_owned();
                self.fail(format!("Janus hung up the {what} PeerConnection: {reason}"));
            }
            _ => {}
        }
    }

    /// Janus's (re)offer on the subscriber handle: our sources from its `streams`, our answer in
    /// a `start`.
    fn on_subscriber_offer(&mut self, offer: &Sdp, data: &Value) -> Result<(), String> {
        let now = Instant::now();
        let remote = self.remote_transport(offer)?;
        // mid → owner (the publisher's display: its endpoint id).
        let mut owners: BTreeMap<String, String> = BTreeMap::new();
        for s in data["streams"].as_array().into_iter().flatten() {
            if let (Some(mid), Some(display)) = (s["mid"].as_str(), s["feed_display"].as_str())
                && s["active"].as_bool() != Some(false)
            {
                owners.insert(mid.to_owned(), display.to_owned());
            }
        }
        let mut sources = Vec::new();
        for m in offer.media.iter().filter(|m| m.active()) {
            let kind = match m.kind.as_str() {
                "audio" => Kind::Audio,
                "video" => Kind::Video,
                _ => continue,
            };
            let (Some(mid), Some(ssrc)) = (m.mid.as_ref(), m.ssrcs.first()) else {
                continue;
            };
            let Some(owner) = owners.get(mid) else {
                continue;
            };
            sources.push((
                *ssrc,
                RemoteSource {
                    owner: owner.clone(),
                    kind,
                    name: None,
                    clock_rate: m.rtpmap.first().map_or(90_000, |(_, _, r)| *r),
                },
            ));
        }
        if self.subscribe_pc.media.is_none() {
            let mut transport =
                self.transport(offer, IceRole::Controlled, &self.subscribe_pc.ice)?;
            transport.set_remote(now, remote);
            // Janus offered actpass: we answer passive (see the module comment), so we are the
            // DTLS server whatever `transport` guessed from `actpass`.
            let tcc = offer
                .media
                .iter()
                .find_map(|m| m.ext(sdp::EXT_TRANSPORT_CC.1));
            let rtcp_ssrc = self.rtcp_ssrc;
            let sender = MediaSender::new(
                now,
                None,
                None,
                self.cfg.speaking,
                &self.cfg.display_name,
                self.cfg.seed,
            );
            let receiver = MediaReceiver::new(now, rtcp_ssrc, tcc);
            self.subscribe_pc.media = Some(MediaEndpoint::new(
                transport,
                sender,
                receiver,
                &self.cfg.endpoint,
                self.cfg.view,
            ));
        }
        let Some(m) = self.subscribe_pc.media.as_mut() else {
            return Ok(());
        };
        let known: Vec<u32> = m.receiver().tracks().map(|t| t.ssrc).collect();
        let signalled: Vec<u32> = sources.iter().map(|(s, _)| *s).collect();
        m.remove_sources(now, known.into_iter().filter(|s| !signalled.contains(s)));
        m.add_sources(now, sources);
        let answer = sdp::subscriber_answer(
            u64::from(random_u32()),
            offer,
            &self.subscribe_pc.local(&self.identity, "passive"),
            self.rtcp_ssrc,
        );
        let Some(h) = self.subscriber else {
            return Err("offer before the handle is known".into());
        };
        let session = self.session.clone();
        self.pending.spawn(async move {
            let r = session
                .message(
                    h,
                    json!({"request": "start"}),
                    Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
                )
                .await;
            ("start", r.map(|_| ()))
        });
        Ok(())
    }

    async fn run_loop(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<Result<JanusEvent, ApiError>>,
        phase: &mut watch::Receiver<Phase>,
        join_deadline: tokio::time::Instant,
    ) {
        let sleep = tokio::time::sleep(Duration::from_millis(1));
        tokio::pin!(sleep);
        let mut buf = ReceiveBuffers::new(self.cfg.receiver_gro);
        let mut next_check = Instant::now();
        if *phase.borrow() == Phase::Measuring {
            self.open_window();
        }
        loop {
            let now = Instant::now();
            let deadline = [&self.publish_pc, &self.subscribe_pc]
                .iter()
                .filter_map(|pc| pc.media.as_ref().and_then(MediaEndpoint::poll_timeout))
                .min()
                .unwrap_or(now + Duration::from_millis(200))
                .min(now + Duration::from_millis(200));
            sleep
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            let pub_up = self.publish_pc.media.is_some();
            let sub_up = self.subscribe_pc.media.is_some();
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(Ok(e)) => self.on_event(e),
                    Some(Err(e)) => {
                        self.fail(format!("long poll: {e}"));
                        return;
                    }
                    None => {
                        self.fail("long poll ended".into());
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
                r = self.publish_pc.socket.readable(), if pub_up => {
                    if r.is_ok() {
                        self.publish_pc.receive(&mut buf);
                    }
                },
                r = self.subscribe_pc.socket.readable(), if sub_up => {
                    if r.is_ok() {
                        self.subscribe_pc.receive(&mut buf);
                    }
                },
                () = &mut sleep => {
                    let now = Instant::now();
                    for pc in [&mut self.publish_pc, &mut self.subscribe_pc] {
                        if let Some(m) = pc.media.as_mut() {
                            m.handle_timeout(now);
                        }
                    }
                    if now >= next_check {
                        next_check = now + Duration::from_millis(100);
                        self.check_progress(now, join_deadline);
                    }
                },
                Some(done) = self.pending.join_next() => {
                    if let Ok((what, r)) = done {
                        match r {
                            Ok(()) if what == "start" => {
                                self.renegotiating = false;
                                self.maybe_subscribe();
                            }
                            Ok(()) => {}
                            Err(e) => self.fail(format!("{what}: {e}")),
                        }
                    }
                },
            }
            self.send_errors += self.publish_pc.flush().await;
            self.send_errors += self.subscribe_pc.flush().await;
        }
    }

    fn open_window(&mut self) {
        self.window_start = Some(WindowStart::take(
            self.publish_pc.media.as_ref().map(MediaEndpoint::sender),
            self.subscribe_pc
                .media
                .as_ref()
                .map(MediaEndpoint::receiver),
        ));
    }

    /// Connected once our first PeerConnection is up (the publisher one if we send): what a user
    /// waits for before the call shows. Everything expected arrived when every other sender's
    /// audio and video flow on the subscriber PeerConnection.
    fn check_progress(&mut self, now: Instant, join_deadline: tokio::time::Instant) {
        let late = tokio::time::Instant::from_std(now) > join_deadline;
        let failure = [&self.publish_pc, &self.subscribe_pc]
            .into_iter()
            .find_map(|pc| pc.media.as_ref().and_then(|m| m.failure.clone()))
            .filter(|f| !self.report.failures.contains(f));
        if let Some(f) = failure {
            self.fail(f);
            return;
        }
        if self.all_media_at.is_none()
            && let Some(m) = self.subscribe_pc.media.as_ref()
            && all_expected_media(m.receiver(), &self.cfg.expected_senders)
        {
            self.all_media_at = Some(now);
        }
        let up = if self.cfg.sender {
            self.publish_pc.dtls_up()
        } else {
            self.subscribe_pc.dtls_up()
        };
        if up {
            if self.report.timings.join_ms.is_none() {
                self.report.timings.join_ms = ms(self.t_start, Some(now));
            }
            self.report.connected = true;
            self.progress(Ok(()));
        } else if late && self.progress.is_some() {
            self.fail("ICE/DTLS with Janus not up before the join timeout".into());
        }
    }

    async fn leave(mut self) -> ParticipantReport {
        let end = Instant::now();
        self.finish_report(end);
        for pc in [&mut self.publish_pc, &mut self.subscribe_pc] {
            if let Some(m) = pc.media.as_mut() {
                m.close(end);
            }
        }
        let _ = self.publish_pc.flush().await;
        let _ = self.subscribe_pc.flush().await;
        self.pending.abort_all();
        let _ = tokio::time::timeout(Duration::from_secs(3), async {
            let _ = self
                .session
                .message(self.publisher, json!({"request": "leave"}), None)
                .await;
            let _ = self.session.destroy().await;
        })
        .await;
        self.report
    }

    fn finish_report(&mut self, end: Instant) {
        let t = &mut self.report.timings;
        let r = self.t_request;
        let first = if self.cfg.sender {
            &self.publish_pc
        } else {
            &self.subscribe_pc
        };
        if let Some(m) = first.media.as_ref() {
            t.ice_connected_ms = ms(r, m.milestones.ice_connected);
            t.dtls_connected_ms = ms(r, m.milestones.dtls_connected);
        }
        if let Some(m) = self.subscribe_pc.media.as_ref() {
            t.first_media_ms = ms(r, m.milestones.first_media);
        }
        t.all_media_ms = ms(r, self.all_media_at);
        t.join_to_all_media_ms = ms(self.t_start, self.all_media_at);
        let ws = self
            .window_start
            .clone()
            .unwrap_or_else(|| WindowStart::empty(end));
        let publisher = self.publish_pc.media.as_ref();
        let subscriber = self.subscribe_pc.media.as_ref();
        window_report(
            &mut self.report,
            &ws,
            end,
            publisher.map(MediaEndpoint::sender),
            subscriber.map(MediaEndpoint::receiver),
            &self.cfg.expected_senders,
        );
        if let Some(m) = publisher {
            self.report.sent_layers = m.sender().enabled_layers();
            self.report.srtp_profile = m.transport().srtp_profile().map(|p| p.name().to_owned());
            self.report.send_errors += m.send_errors;
            // Janus's feedback to the publisher (PLI, REMB, transport-cc, receiver reports).
            self.report.rtcp = m.rtcp;
        }
        if let Some(m) = subscriber {
            self.report.transport_drops = m.transport_drops();
            self.report.send_errors += m.send_errors;
            if self.report.srtp_profile.is_none() {
                self.report.srtp_profile =
                    m.transport().srtp_profile().map(|p| p.name().to_owned());
            }
            // Sender reports come on the subscriber PeerConnection.
            self.report.rtcp.sender_reports += m.rtcp.sender_reports;
        }
        self.report.send_errors += self.send_errors;
        self.report.sessions = u32::from(publisher.is_some()) + u32::from(subscriber.is_some());
        for m in [publisher, subscriber].into_iter().flatten() {
            if let Some(f) = &m.failure
                && !self.report.failures.contains(f)
            {
                self.report.failures.push(f.clone());
            }
        }
    }
}
