//! The sans-IO focus: conferences, participants, bridges.
//!
//! [`Focus`] is a synchronous state machine. The shell feeds it `(now, Input)` — stanzas received on the
//! XMPP connections, answers to requests it asked for, connection state — and calls
//! [`Focus::handle_timeout`] at [`Focus::poll_timeout`]. It emits [`Output`]s: IQ requests (with a
//! [`RequestId`] the shell reports the answer under), IQ replies and presence. No sockets, clocks, tasks or
//! locks live here, so every flow can be driven deterministically in tests with virtual time.

pub mod auth;
mod brewery;
pub mod bridges;
pub mod caps;
pub mod colibri;
mod conference;
pub mod jibri;
pub mod moderation;
pub mod muc;
pub mod offer;
mod rng;
pub mod stanza;
mod stats;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use jid::BareJid;
use minidom::Element;
use signaling::focus_iq::ConferenceRequest;
use signaling::ns;
use signaling::xml::{Builder, XmlElement};
use tracing::{debug, info, warn};

pub use auth::{AuthConfig, AuthKind};
use brewery::Brewery;
pub use brewery::{BRIDGE_REJOIN_GRACE, REJOIN_FIRST_DELAY, REJOIN_MAX_DELAY};
pub use bridges::{BridgeConfig, BridgeStats, Bridges, SelectionStrategy};
use caps::CapsCache;
use conference::Conference;
pub use conference::{ConferenceDebug, ParticipantDebug};
pub use conference::{LEAVE_CONFIRM_DELAY, MAX_QUEUED_SOURCE_CHANGES, MEMBER_REJOIN_GRACE};
pub use offer::{CodecConfig, Features};
pub(crate) use rng::Rng;
pub use stanza::{
    Condition, IqKind, IqRequest, Link, Output, RequestFailure, RequestId, StanzaError,
};
pub use stats::{Counters, FocusStats};

/// Conference behaviour (Jicofo `jicofo.conference`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConferenceConfig {
    /// Members needed in the room before anyone is invited.
    pub min_participants: usize,
    /// A participant left alone is disconnected after this long.
    pub single_participant_timeout: Duration,
    /// A conference nobody joins is stopped after this long.
    pub initial_timeout: Duration,
    pub max_ssrcs_per_user: usize,
    pub max_ssrc_groups_per_user: usize,
    pub max_audio_senders: usize,
    pub max_video_senders: usize,
    /// Signal only the first simulcast layer (and its RTX) to receivers.
    pub strip_simulcast: bool,
    /// SSRC rewriting for clients that advertise `http://jitsi.org/ssrc-rewriting-1` (Jicofo
    /// `use-ssrc-rewriting`): the bridge is asked for it and announces the sources to such a client
    /// itself, so the focus signals it no other endpoint's sources.
    pub use_ssrc_rewriting: bool,
    /// With SSRC rewriting, also mid demuxing for clients that advertise
    /// `http://jitsi.org/rtp-mid-demux`, when the sdes:mid extension is offered (Jicofo
    /// `use-rtp-mid-demux`).
    pub use_rtp_mid_demux: bool,
    /// Honour in-place ICE restart requests (session-info with `bridge-session ice-restart`; Jicofo
    /// `enable-ice-restart`); refused with `feature-not-implemented` when off.
    pub enable_ice_restart: bool,
    /// Send sources as `json-message` to clients that support it.
    pub use_json_encoded_sources: bool,
    /// Make the first member an owner of the room.
    pub enable_auto_owner: bool,
    /// Only moderators may start recording or dial out (Jicofo `enable-moderator-checks`).
    pub enable_moderator_checks: bool,
    /// Client restart requests (session-terminate with restart): minimum spacing and a rate cap.
    pub restart_min_interval: Duration,
    pub restart_max_requests: u32,
    pub restart_interval: Duration,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        ConferenceConfig {
            min_participants: 2,
            single_participant_timeout: Duration::from_secs(20),
            initial_timeout: Duration::from_secs(15),
            max_ssrcs_per_user: 20,
            max_ssrc_groups_per_user: 20,
            max_audio_senders: 999_999,
            max_video_senders: 999_999,
            strip_simulcast: true,
            // Jicofo's default (jicofo `reference.conf` `use-ssrc-rewriting = true`); our bridge
            // rewrites SSRCs too (bridge/src/sfu/ssrc_slots.rs).
            use_ssrc_rewriting: true,
            use_rtp_mid_demux: true,
            enable_ice_restart: true,
            use_json_encoded_sources: true,
            enable_auto_owner: true,
            enable_moderator_checks: true,
            restart_min_interval: Duration::from_secs(5),
            restart_max_requests: 5,
            restart_interval: Duration::from_secs(60),
        }
    }
}

/// Everything the core needs to know about its environment.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The focus's full client JID (`focus@auth.meet.jitsi/focus`), the Jingle `initiator`.
    pub focus_full_jid: String,
    /// Its bare JID, the `focusjid` clients recognise the focus by.
    pub focus_bare_jid: String,
    /// The MUC nickname in conference rooms and in the brewery; clients require `focus`.
    pub nick: String,
    /// The brewery room.
    pub brewery: BareJid,
    /// Which connection sees the brewery (and talks to bridges).
    pub brewery_link: Link,
    /// MUC services whose rooms the focus serves (`XMPP_MUC_DOMAIN`, and the breakout-room service);
    /// conference requests for any other room — the brewery, internal rooms, other domains — are
    /// refused. Empty refuses everything.
    pub conference_domains: Vec<String>,
    /// The breakout-room service (one of `conference_domains`): its rooms are not authenticated, Prosody's
    /// breakout module decides who moves there (Jicofo `ConferenceIqHandler.processExtensions`).
    pub breakout_domain: Option<String>,
    /// Domains whose accounts may be bridges in the brewery (default: the focus's own domain, the auth
    /// domain where `jvb@` lives too).
    pub bridge_domains: Vec<String>,
    /// Answer timeout for COLIBRI2 and Jingle requests.
    pub reply_timeout: Duration,
    /// Answer timeout for disco#info to clients (after it, default features are assumed).
    pub disco_timeout: Duration,
    /// Give up joining a room after this long.
    pub join_timeout: Duration,
    pub conference: ConferenceConfig,
    pub bridge: BridgeConfig,
    pub codecs: CodecConfig,
    /// Advertised in presence and `/about/version`.
    pub version: String,
    /// Secure domain: only authenticated users create rooms (`None`: everyone may).
    pub auth: Option<AuthConfig>,
    /// The `client_proxy` component whose IQs carry the original sender in the resource.
    pub client_proxy: Option<String>,
    /// The `av_moderation` Prosody component whose A/V moderation messages the focus trusts.
    pub av_moderation_component: Option<String>,
}

impl CoreConfig {
    /// A configuration with Jicofo's defaults for the given identities.
    pub fn new(focus_full_jid: &str, brewery: BareJid) -> Self {
        let bare = focus_full_jid
            .split_once('/')
            .map_or(focus_full_jid, |(b, _)| b)
            .to_owned();
        let own_domain = bare.split_once('@').map_or(bare.as_str(), |(_, d)| d);
        CoreConfig {
            focus_full_jid: focus_full_jid.to_owned(),
            bridge_domains: vec![own_domain.to_owned()],
            focus_bare_jid: bare,
            nick: "focus".into(),
            brewery,
            brewery_link: Link::Client,
            conference_domains: Vec::new(),
            breakout_domain: None,
            reply_timeout: Duration::from_secs(15),
            disco_timeout: Duration::from_secs(5),
            join_timeout: Duration::from_secs(15),
            conference: ConferenceConfig::default(),
            bridge: BridgeConfig::default(),
            codecs: CodecConfig::default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            auth: None,
            client_proxy: None,
            av_moderation_component: None,
        }
    }
}

/// Something that happened outside the core.
#[derive(Debug, Clone)]
pub enum Input {
    /// A connection is (again) online.
    Online(Link),
    /// A connection went down (it reconnects by itself).
    Offline(Link),
    /// An IQ get/set addressed to the focus.
    Iq(IqRequest),
    /// A presence stanza.
    Presence { link: Link, presence: Element },
    /// A message stanza (A/V moderation from the `av_moderation` component).
    Message { link: Link, message: Element },
    /// The answer (or its absence) to a request the core sent.
    IqResponse {
        request: RequestId,
        result: Result<Option<Element>, RequestFailure>,
    },
}

/// What a request was for, so that its answer can be routed.
#[derive(Debug, Clone)]
pub(crate) enum Pending {
    Room {
        room: BareJid,
        what: RoomRequest,
    },
    Health {
        bridge: String,
    },
    /// Answers we do not need (errors are logged).
    Ignore {
        what: &'static str,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum RoomRequest {
    ConfigForm,
    ConfigSubmit,
    GrantOwner,
    Disco {
        nick: String,
    },
    Allocate {
        nick: String,
        epoch: u64,
        bridge_session: String,
    },
    BridgeUpdate {
        nick: Option<String>,
        bridge_session: String,
    },
    SessionInitiate {
        nick: String,
        epoch: u64,
    },
    Jingle {
        nick: String,
        action: &'static str,
    },
    /// A COLIBRI2 in-place ICE restart for the participant's session `sid`.
    IceRestart {
        nick: String,
        sid: String,
        bridge_session: String,
    },
}

/// Output queue, outstanding requests and id generation, shared by all conferences.
#[derive(Debug, Clone)]
pub(crate) struct Io {
    outputs: VecDeque<Output>,
    pending: HashMap<RequestId, Pending>,
    next_request: u64,
    pub rng: Rng,
}

impl Io {
    pub fn request(
        &mut self,
        link: Link,
        to: String,
        kind: IqKind,
        payload: Element,
        timeout: Duration,
        pending: Pending,
    ) -> RequestId {
        self.next_request += 1;
        let request = RequestId(self.next_request);
        self.pending.insert(request, pending);
        self.outputs.push_back(Output::Request {
            request,
            link,
            to,
            kind,
            payload,
            timeout,
        });
        request
    }

    pub fn reply(
        &mut self,
        link: Link,
        to: &str,
        id: &str,
        response: Result<Option<Element>, StanzaError>,
    ) {
        self.outputs.push_back(Output::Reply {
            link,
            to: to.to_owned(),
            id: id.to_owned(),
            response,
        });
    }

    pub fn presence(&mut self, link: Link, presence: Element) {
        self.outputs.push_back(Output::Presence { link, presence });
    }
}

/// Conference requests waiting for one room's join to finish; more get a not-ready answer (the client
/// asks again).
pub const MAX_WAITERS_PER_CONFERENCE: usize = 64;
/// Conferences nobody has joined yet (each is a MUC room the focus joined on a request). Past this,
/// requests for new rooms get a not-ready answer until some are joined or time out
/// (`initial-timeout`), so a request flood cannot make the focus join rooms without bound.
pub const MAX_PENDING_CONFERENCES: usize = 1000;

/// The state shared by conferences while one input is handled.
pub(crate) struct Ctx<'a> {
    pub now: Instant,
    pub cfg: &'a CoreConfig,
    pub bridges: &'a mut Bridges,
    pub io: &'a mut Io,
    pub counters: &'a mut Counters,
    pub features: &'a mut CapsCache,
    pub client_online: bool,
    /// Authentication sessions (who is a host).
    pub auth: &'a auth::Authority,
}

#[derive(Debug, Clone, Default)]
struct HealthCheck {
    next: Option<Instant>,
    in_flight: bool,
    retried: bool,
}

/// The focus. `Clone` snapshots the whole state (the fuzz targets start every input from one
/// running conference).
#[derive(Debug, Clone)]
pub struct Focus {
    cfg: CoreConfig,
    conferences: BTreeMap<BareJid, Conference>,
    bridges: Bridges,
    health: BTreeMap<String, HealthCheck>,
    io: Io,
    counters: Counters,
    /// disco#info answers by verified caps `node#ver`, so each client build is asked once.
    features: CapsCache,
    client_online: bool,
    brewery: Brewery,
    auth: auth::Authority,
}

impl Focus {
    /// `seed` makes generated ids reproducible in tests; use a random one in production.
    pub fn new(cfg: CoreConfig, seed: u64) -> Self {
        let bridges = Bridges::new(cfg.bridge.clone());
        let brewery = Brewery::new(
            cfg.brewery.clone(),
            cfg.nick.clone(),
            cfg.brewery_link,
            cfg.join_timeout,
            cfg.bridge_domains.clone(),
        );
        let auth = auth::Authority::new(cfg.auth.clone());
        Focus {
            cfg,
            conferences: BTreeMap::new(),
            bridges,
            health: BTreeMap::new(),
            io: Io {
                outputs: VecDeque::new(),
                pending: HashMap::new(),
                next_request: 0,
                rng: Rng(seed),
            },
            counters: Counters::default(),
            features: CapsCache::default(),
            client_online: false,
            brewery,
            auth,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// The next thing the shell must do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.io.outputs.pop_front()
    }

    /// When [`Focus::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conf = self
            .conferences
            .values()
            .filter_map(Conference::next_deadline);
        let health = self.health.values().filter_map(|h| h.next);
        conf.chain(health)
            .chain(self.brewery.poll_timeout())
            .chain(self.auth.next_deadline())
            .min()
    }

    /// Handles one input.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Online(link) => self.on_online(now, link),
            Input::Offline(link) => self.on_offline(link),
            Input::Iq(req) => self.on_iq(now, req),
            Input::Presence { presence, .. } => self.on_presence(now, presence),
            Input::IqResponse { request, result } => self.on_response(now, request, result),
            Input::Message { message, .. } => self.on_message(now, &message),
        }
        self.expire_sessions(now);
    }

    fn ctx(&mut self, now: Instant) -> (Ctx<'_>, &mut BTreeMap<BareJid, Conference>) {
        (
            Ctx {
                now,
                cfg: &self.cfg,
                bridges: &mut self.bridges,
                io: &mut self.io,
                counters: &mut self.counters,
                features: &mut self.features,
                client_online: self.client_online,
                auth: &self.auth,
            },
            &mut self.conferences,
        )
    }

    // ---- connections ------------------------------------------------------------------------------

    fn on_online(&mut self, now: Instant, link: Link) {
        info!(?link, "connection online");
        if link == Link::Client {
            self.client_online = true;
            // Available presence: mod_client_proxy only forwards to resources that are online.
            self.io.presence(
                Link::Client,
                Builder::new("presence", ns::JABBER_CLIENT).build(),
            );
            let (mut ctx, conferences) = self.ctx(now);
            for c in conferences.values_mut() {
                c.rejoin(&mut ctx);
            }
        }
        if link == self.brewery.link() {
            self.brewery.on_online(now, &mut self.io);
        }
    }

    fn on_offline(&mut self, link: Link) {
        warn!(?link, "connection offline");
        self.counters.xmpp_disconnects += 1;
        if link == Link::Client {
            self.client_online = false;
            for c in self.conferences.values_mut() {
                c.connection_lost();
            }
        }
        if link == self.brewery.link() {
            self.brewery.on_offline();
        }
    }

    // ---- IQ requests ------------------------------------------------------------------------------

    fn on_iq(&mut self, now: Instant, req: IqRequest) {
        let p = &req.payload;
        if p.is("conference", ns::FOCUS) && req.kind == IqKind::Set {
            self.on_conference_request(now, req);
        } else if p.is("jingle", ns::JINGLE) && req.kind == IqKind::Set {
            let room = room_of(&req.from);
            let (mut ctx, conferences) = self.ctx(now);
            match room.and_then(|r| conferences.get_mut(&r)) {
                Some(c) => c.on_jingle(&mut ctx, &req),
                None => {
                    debug!(from = %req.from, "jingle from outside any conference");
                    ctx.counters.jingle_errors += 1;
                    ctx.io.reply(
                        req.link,
                        &req.from,
                        &req.id,
                        Err(conference::unknown_session(
                            "not a participant of any conference",
                        )),
                    );
                }
            }
        } else if self.on_room_iq(now, &req) || self.on_auth_iq(&req) {
            // Handled: mute, recording, dial-out, login and logout requests.
        } else if p.is("ping", "urn:xmpp:ping") {
            self.io.reply(req.link, &req.from, &req.id, Ok(None));
        } else if p.is("query", muc::NS_DISCO_INFO) && req.kind == IqKind::Get {
            let answer = Builder::new("query", muc::NS_DISCO_INFO)
                .child(
                    Builder::new("identity", muc::NS_DISCO_INFO)
                        .attr("category", "component")
                        .attr("type", "focus")
                        .attr("name", "Conference focus")
                        .build(),
                )
                .children(
                    [muc::NS_DISCO_INFO, ns::FOCUS, "urn:xmpp:ping"]
                        .into_iter()
                        .map(|f| {
                            Builder::new("feature", muc::NS_DISCO_INFO)
                                .attr("var", f)
                                .build()
                        }),
                )
                .build();
            self.io
                .reply(req.link, &req.from, &req.id, Ok(Some(answer)));
        } else {
            self.io.reply(
                req.link,
                &req.from,
                &req.id,
                Err(StanzaError::new(
                    Condition::ServiceUnavailable,
                    format!("<{} xmlns='{}'> is not handled here", p.name(), p.ns()),
                )),
            );
        }
    }

    fn on_conference_request(&mut self, now: Instant, req: IqRequest) {
        self.counters.conference_requests += 1;
        let request = match ConferenceRequest::from_element(&req.payload) {
            Ok(r) => r,
            Err(e) => {
                info!(from = %req.from, error = %e, "bad conference request");
                self.io.reply(
                    req.link,
                    &req.from,
                    &req.id,
                    Err(StanzaError::new(Condition::BadRequest, e.to_string())),
                );
                return;
            }
        };
        let room = request.room.clone();
        if let Err(e) = self.admit_room(&room) {
            warn!(%room, from = %req.from, error = %e, "conference request refused");
            self.counters.conference_requests_refused += 1;
            self.io.reply(req.link, &req.from, &req.id, Err(e));
            return;
        }
        info!(%room, from = %req.from, "conference request");
        let Some(auth) = self.authenticate(now, &req, &request) else {
            return;
        };
        let waiter = conference::Waiter {
            link: req.link,
            to: req.from.clone(),
            id: req.id.clone(),
            auth,
        };
        let pending = self.conferences.values().filter(|c| c.is_pending()).count();
        let (mut ctx, conferences) = self.ctx(now);
        if let Some(c) = conferences.get_mut(&room) {
            if waiter.auth.session.is_some() {
                c.grant_authenticated_owners(&mut ctx);
            }
            if c.is_joined() {
                waiter.answer(&mut ctx, room, true);
            } else if c.waiter_count() >= MAX_WAITERS_PER_CONFERENCE {
                // The client asks again later (lib-jitsi-meet retries a not-ready answer).
                waiter.answer(&mut ctx, room, false);
            } else {
                c.add_waiter(waiter);
            }
            return;
        }
        if !ctx.client_online {
            waiter.answer(&mut ctx, room, false);
            return;
        }
        if pending >= MAX_PENDING_CONFERENCES {
            warn!(%room, pending, "too many conferences nobody has joined yet; asking to retry");
            ctx.counters.conference_requests_deferred += 1;
            waiter.answer(&mut ctx, room, false);
            return;
        }
        ctx.counters.conference_requests_new += 1;
        ctx.counters.conferences_created += 1;
        let mut c = Conference::new(&mut ctx, &request);
        c.add_waiter(waiter);
        conferences.insert(room, c);
    }

    /// Whether the focus serves `room`: a room of a conference MUC service, never the brewery or any
    /// other room of the internal MUC. Joining the brewery as a conference room would re-send our
    /// presence there and, when the conference gave up, leave the brewery (issue 11).
    fn admit_room(&self, room: &BareJid) -> Result<(), StanzaError> {
        let domain = room.domain().as_str();
        let refuse = |why: String| Err(StanzaError::new(Condition::Forbidden, why));
        if room == self.brewery.room() || domain == self.brewery.room().domain().as_str() {
            return refuse(format!("{room} is an internal room"));
        }
        if !self
            .cfg
            .conference_domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(domain))
        {
            return refuse(format!(
                "{room} is not in a conference MUC service ({})",
                self.cfg.conference_domains.join(", ")
            ));
        }
        Ok(())
    }

    /// Secure domain: checks who asks for the conference (see [`auth`]), except for breakout rooms,
    /// which Jicofo does not authenticate either. Refusals are answered here.
    fn authenticate(
        &mut self,
        now: Instant,
        req: &IqRequest,
        request: &ConferenceRequest,
    ) -> Option<auth::AuthAnswer> {
        // Over HTTP there is no JID: only a session id can authenticate (see [`auth`]).
        let sender = match req.link {
            Link::Rest => None,
            _ => Some(auth::original_sender(
                &req.from,
                self.cfg.client_proxy.as_deref(),
            )),
        };
        let breakout = self
            .cfg
            .breakout_domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(request.room.domain().as_str()));
        if breakout {
            return Some(self.auth.unchecked());
        }
        let exists = self.conferences.contains_key(&request.room);
        match self
            .auth
            .process(now, &mut self.io.rng, request, sender, exists)
        {
            Ok(a) => Some(a),
            Err(e) => {
                let sender = sender.unwrap_or(&req.from);
                info!(room = %request.room, %sender, error = %e, "conference request refused");
                self.io.reply(req.link, &req.from, &req.id, Err(e));
                None
            }
        }
    }

    /// Requests a client sends the focus inside a conference (to its occupant JID): mute, Jibri
    /// (recording, live streaming) and Rayo dial (Jigasi). False for any other IQ.
    fn on_room_iq(&mut self, now: Instant, req: &IqRequest) -> bool {
        let p = &req.payload;
        let ours = moderation::MuteIq::parse(p).is_some()
            || p.is("jibri", jibri::NS_JIBRI)
            || p.is("dial", jibri::NS_RAYO);
        if !ours || req.kind != IqKind::Set {
            return false;
        }
        let room = room_of(&req.from);
        let (mut ctx, conferences) = self.ctx(now);
        match room.and_then(|r| conferences.get_mut(&r)) {
            Some(c) => c.on_room_iq(&mut ctx, req),
            None => {
                debug!(from = %req.from, payload = p.name(), "request from outside any conference");
                ctx.io.reply(
                    req.link,
                    &req.from,
                    &req.id,
                    Err(StanzaError::new(
                        Condition::ItemNotFound,
                        "not a participant of any conference",
                    )),
                );
            }
        }
        true
    }

    /// `login-url` (get) and `logout` (set): the app's login and logout with a secure domain.
    fn on_auth_iq(&mut self, req: &IqRequest) -> bool {
        let p = &req.payload;
        let answer = if p.is("login-url", ns::FOCUS) && req.kind == IqKind::Get {
            self.auth.login_url(p)
        } else if p.is("logout", ns::FOCUS) && req.kind == IqKind::Set {
            self.auth.logout(p)
        } else {
            return false;
        };
        self.io
            .reply(req.link, &req.from, &req.id, answer.map(Some));
        true
    }

    /// Ends authentication sessions that expired or (without auto-login) whose conference ended.
    fn expire_sessions(&mut self, now: Instant) {
        let conferences = &self.conferences;
        self.auth.expire(now, |room| conferences.contains_key(room));
    }

    // ---- messages ---------------------------------------------------------------------------------

    /// A/V moderation changes from the `av_moderation` component (Jicofo `AvModerationHandler`); every
    /// other message is ignored.
    fn on_message(&mut self, now: Instant, message: &Element) {
        let Some(component) = self.cfg.av_moderation_component.as_deref() else {
            return;
        };
        let normal = message.attr("type").is_none_or(|t| t == "normal");
        let from_component = message
            .attr("from")
            .is_some_and(|f| f.eq_ignore_ascii_case(component));
        if !normal || !from_component {
            return;
        }
        let Some(json) = message.get_child("json-message", ns::JITMEET) else {
            warn!(from = component, "message without json-message ignored");
            return;
        };
        let msg = match moderation::AvModerationMessage::parse(&json.text()) {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => {
                warn!(from = component, error = %e, "malformed av_moderation message ignored");
                return;
            }
        };
        let Some(room) = msg.room.as_deref().and_then(|r| r.parse::<BareJid>().ok()) else {
            warn!(
                from = component,
                "av_moderation message without a valid room ignored"
            );
            return;
        };
        let (mut ctx, conferences) = self.ctx(now);
        match conferences.get_mut(&room) {
            Some(c) => c.on_av_moderation(&mut ctx, &msg),
            None => warn!(%room, "av_moderation message for a room without a conference"),
        }
    }

    // ---- presence ---------------------------------------------------------------------------------

    fn on_presence(&mut self, now: Instant, presence: Element) {
        let Some(p) = muc::MucPresence::parse(&presence) else {
            return;
        };
        if &p.room == self.brewery.room() {
            self.on_brewery_presence(now, p);
            return;
        }
        let room = p.room.clone();
        let (mut ctx, conferences) = self.ctx(now);
        let Some(c) = conferences.get_mut(&room) else {
            return;
        };
        c.on_presence(&mut ctx, p);
        if c.is_stopped() {
            conferences.remove(&room);
        }
    }

    fn on_brewery_presence(&mut self, now: Instant, p: muc::MucPresence) {
        let jid = format!("{}/{}", p.room, p.nick);
        if self.brewery.is_own(&p) {
            let known: Vec<String> = self.bridges.iter().map(|b| b.jid.clone()).collect();
            self.brewery
                .on_own_presence(now, &p, known.iter().map(String::as_str));
            return;
        }
        if !p.available {
            if self.bridges.get(&jid).is_some() {
                self.brewery.bridge_left(now, &jid);
            }
            return;
        }
        if p.element.get_child("stats", ns::COLIBRI).is_none() {
            return;
        }
        if !self.brewery.is_trusted(&p) {
            return;
        }
        let Some(stats) = parse_stats(&p.element) else {
            return;
        };
        self.brewery.bridge_present(&jid);
        match self.bridges.update(&jid, &stats, now) {
            bridges::BridgeEvent::Added => {
                info!(bridge = %jid, ?stats, "bridge added");
                self.health.insert(
                    jid.clone(),
                    HealthCheck {
                        next: self
                            .cfg
                            .bridge
                            .health_checks_enabled
                            .then(|| now + self.cfg.bridge.health_check_interval),
                        ..HealthCheck::default()
                    },
                );
                self.bridge_up(now);
            }
            bridges::BridgeEvent::ShuttingDown => {
                info!(bridge = %jid, "bridge is shutting down");
                self.move_off_bridge(now, &jid, "bridge shutting down");
            }
            bridges::BridgeEvent::Updated => {}
        }
    }

    /// A bridge appeared: conferences waiting for one can invite now.
    fn bridge_up(&mut self, now: Instant) {
        let (mut ctx, conferences) = self.ctx(now);
        for c in conferences.values_mut() {
            c.retry_waiting(&mut ctx);
        }
    }

    /// A bridge is unusable: forget it (if `remove`) and move its participants elsewhere.
    fn bridge_down(&mut self, now: Instant, jid: &str, why: &str, remove: bool) {
        warn!(bridge = %jid, why, "bridge down");
        if remove {
            self.bridges.remove(jid);
            self.health.remove(jid);
            self.brewery.forget(jid);
        } else {
            self.bridges.mark_failed(jid, now);
        }
        self.move_off_bridge(now, jid, why);
    }

    fn move_off_bridge(&mut self, now: Instant, jid: &str, why: &str) {
        let (mut ctx, conferences) = self.ctx(now);
        for c in conferences.values_mut() {
            c.bridge_failed(&mut ctx, jid, why);
        }
    }

    // ---- answers ----------------------------------------------------------------------------------

    fn on_response(
        &mut self,
        now: Instant,
        request: RequestId,
        result: Result<Option<Element>, RequestFailure>,
    ) {
        let Some(pending) = self.io.pending.remove(&request) else {
            return;
        };
        match pending {
            Pending::Ignore { what } => {
                if let Err(e) = result {
                    debug!(what, error = %e, "request failed");
                }
            }
            Pending::Health { bridge } => self.on_health_answer(now, &bridge, result),
            Pending::Room { room, what } => {
                let mut failed_bridge = None;
                let (mut ctx, conferences) = self.ctx(now);
                if let Some(c) = conferences.get_mut(&room) {
                    failed_bridge = c.on_response(&mut ctx, what, result);
                    if c.is_stopped() {
                        conferences.remove(&room);
                    }
                }
                if let Some((jid, why)) = failed_bridge {
                    self.bridge_down(now, &jid, &why, false);
                }
            }
        }
    }

    fn on_health_answer(
        &mut self,
        now: Instant,
        bridge: &str,
        result: Result<Option<Element>, RequestFailure>,
    ) {
        let interval = self.cfg.bridge.health_check_interval;
        let Some(h) = self.health.get_mut(bridge) else {
            return;
        };
        h.in_flight = false;
        match result {
            Ok(_) => {
                h.retried = false;
                h.next = Some(now + interval);
                self.bridges.health_passed(bridge);
            }
            Err(RequestFailure::Timeout) if !h.retried => {
                // One more chance right away, as Jicofo's JvbDoctor does.
                h.retried = true;
                self.send_health_check(bridge);
            }
            Err(RequestFailure::Timeout) => {
                warn!(%bridge, "health check timed out twice");
                h.retried = false;
                h.next = Some(now + interval);
                self.bridges.mark_failed(bridge, now);
            }
            Err(RequestFailure::NotConnected) => {
                h.next = Some(now + interval);
            }
            Err(e) => {
                h.retried = false;
                h.next = Some(now + interval);
                let condition = e.condition();
                if matches!(
                    condition.as_deref(),
                    Some("internal-server-error") | Some("service-unavailable")
                ) {
                    self.bridge_down(now, bridge, "failed its health check", false);
                } else {
                    warn!(%bridge, error = %e, "unexpected health check answer");
                }
            }
        }
    }

    fn send_health_check(&mut self, jid: &str) {
        if let Some(h) = self.health.get_mut(jid) {
            h.in_flight = true;
            h.next = None;
        }
        self.io.request(
            self.cfg.brewery_link,
            jid.to_owned(),
            IqKind::Get,
            Element::bare("healthcheck", ns::HEALTHCHECK),
            self.cfg.bridge.health_check_timeout,
            Pending::Health {
                bridge: jid.to_owned(),
            },
        );
    }

    // ---- time -------------------------------------------------------------------------------------

    /// Runs everything that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Staying in the brewery; bridges that did not come back after a re-join.
        let brewery = self.brewery.handle_timeout(now, &mut self.io);
        for jid in brewery.gone {
            if self.bridges.get(&jid).is_some() {
                self.bridge_down(now, &jid, "gone from the brewery", true);
            }
        }
        // Health checks.
        let due: Vec<String> = self
            .health
            .iter()
            .filter(|(_, h)| !h.in_flight && h.next.is_some_and(|t| t <= now))
            .map(|(j, _)| j.clone())
            .collect();
        for jid in due {
            if self.cfg.bridge.health_checks_use_presence {
                if let Some(h) = self.health.get_mut(&jid) {
                    h.next = Some(now + self.cfg.bridge.health_check_interval);
                }
                if self.bridges.presence_health_failures(now).contains(&jid) {
                    self.bridge_down(now, &jid, "unhealthy by presence", false);
                }
                continue;
            }
            self.send_health_check(&jid);
        }
        // Conference timers.
        let (mut ctx, conferences) = self.ctx(now);
        let mut stopped = Vec::new();
        for (room, c) in conferences.iter_mut() {
            if c.next_deadline().is_some_and(|t| t <= now) {
                c.on_timeout(&mut ctx);
            }
            if c.is_stopped() {
                stopped.push(room.clone());
            }
        }
        for room in stopped {
            conferences.remove(&room);
        }
        self.expire_sessions(now);
    }

    /// Stops every conference (expiring them on their bridges, leaving their rooms) and leaves the
    /// brewery: what the focus does before it exits.
    pub fn shutdown(&mut self, now: Instant) {
        let (mut ctx, conferences) = self.ctx(now);
        for c in conferences.values_mut() {
            c.shutdown(&mut ctx);
        }
        conferences.clear();
        self.brewery.leave(&mut self.io);
    }

    // ---- observation ------------------------------------------------------------------------------

    /// The numbers `/stats` and `/metrics` report.
    pub fn stats(&self, now: Instant) -> FocusStats {
        let sizes: Vec<usize> = self
            .conferences
            .values()
            .map(Conference::participant_count)
            .collect();
        let mut stats = FocusStats::new(&self.counters, &sizes, self.bridges.stats(now));
        stats.brewery_joined = self.brewery.is_joined();
        stats.total_brewery_rejoins = self.brewery.rejoins;
        stats.total_untrusted_brewery_presences = self.brewery.untrusted_presences;
        stats
    }

    /// The core's part of `/about/health` (the shell adds its XMPP connections): in the brewery and
    /// at least one operational bridge. Jicofo's `JicofoHealthChecker.check` fails without an
    /// operational bridge; out of the brewery the focus sees no bridge come or go, so the bridges it
    /// remembers are not to be trusted until it is back.
    pub fn is_healthy(&self, now: Instant) -> bool {
        self.brewery.is_joined() && self.bridges.operational_count(now) > 0
    }

    /// Whether the focus is in the brewery room (`/stats` `brewery_joined`).
    pub fn brewery_joined(&self) -> bool {
        self.brewery.is_joined()
    }

    pub fn bridges(&self) -> &Bridges {
        &self.bridges
    }

    /// Room JIDs of running conferences.
    pub fn conference_rooms(&self) -> impl Iterator<Item = &BareJid> {
        self.conferences.keys()
    }

    /// Every conference's state, for `/debug`.
    pub fn debug(&self) -> Vec<ConferenceDebug> {
        self.conferences.values().map(Conference::debug).collect()
    }

    /// Endpoint IDs in a conference with their bridge (for tests and debugging).
    pub fn participants(&self, room: &BareJid) -> Vec<(String, Option<String>)> {
        self.conferences
            .get(room)
            .map(Conference::participant_bridges)
            .unwrap_or_default()
    }
}

/// The room of an occupant JID (`room@muc/nick` → `room@muc`).
fn room_of(from: &str) -> Option<BareJid> {
    from.split_once('/')
        .and_then(|(room, _)| room.parse::<BareJid>().ok())
}

/// Reads the `<stats xmlns='http://jitsi.org/protocol/colibri'>` of a brewery presence. `None` when there
/// is none (not a bridge) or it is malformed (logged, ignored).
pub fn parse_stats(presence: &Element) -> Option<BridgeStats> {
    let stats = presence.get_child("stats", ns::COLIBRI)?;
    match signaling::brewery::Stats::from_element(stats).and_then(|s| s.status()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(from = ?presence.attr("from"), error = %e, "ignoring malformed brewery stats");
            None
        }
    }
}

#[cfg(test)]
mod tests;
