//! One conference: its MUC room, members, participants (members the focus invited into a Jingle session),
//! the conference source map, and its session with a bridge.
//!
//! The flows follow Jicofo (`JitsiMeetConferenceImpl`, `ParticipantInviteRunnable`, `Participant`): the
//! focus joins and configures the room before it answers `ready`; once `min_participants` members are in,
//! each is invited — features (disco#info), bridge, COLIBRI2 allocation, `session-initiate` with the
//! bridge's transport and everybody else's sources; `session-accept` updates the bridge and tells the
//! others; leaving expires the endpoint; a failed bridge moves everyone (session-terminate + a fresh
//! session-initiate, since the reference client ignores transport-replace).

mod bridge;
mod ice_restart;
mod invite;
mod jingle;
mod membership;
mod mute;
mod sources;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use jid::BareJid;
use minidom::Element;
use signaling::colibri2::ForceMute;
use signaling::focus_iq::ConferenceRequest;
use signaling::jingle::{Jingle, ReasonCondition, StartMuted};
use signaling::ns;
use signaling::source_map::ConferenceSourceMap;
use signaling::xml::XmlElement;
use tracing::{debug, info, warn};

use super::auth::AuthAnswer;
use super::caps::Caps;
use super::moderation::{AvModeration, MuteIq, MuteState};
use super::muc;
use super::offer::{Features, Offer};
use super::stanza::{Condition, IqKind, IqRequest, Link, RequestFailure, StanzaError};
use super::{Ctx, Pending, RoomRequest, jibri};

/// `/debug` view of a conference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConferenceDebug {
    pub room: String,
    pub meeting_id: Option<String>,
    pub state: String,
    pub members: usize,
    pub bridge: Option<String>,
    pub bridge_session: Option<String>,
    pub participants: Vec<ParticipantDebug>,
    /// Members that left or were missing after a re-join, not yet taken as gone.
    pub absent: Vec<String>,
}

/// `/debug` view of a participant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParticipantDebug {
    pub id: String,
    pub stage: &'static str,
    pub session: Option<String>,
    pub active: bool,
    pub sources: usize,
    /// The bridge rewrites SSRCs for this participant (it gets no other endpoint's sources in Jingle).
    pub ssrc_rewriting: bool,
}

/// A conference IQ waiting for the room to be ready.
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    pub link: Link,
    pub to: String,
    pub id: String,
    /// What the answer says about authentication.
    pub auth: AuthAnswer,
}

impl Waiter {
    /// Answers the conference IQ for `room` (`ready` or not yet).
    pub fn answer(&self, ctx: &mut Ctx<'_>, room: BareJid, ready: bool) {
        let answer = self.auth.response(room, &ctx.cfg.focus_bare_jid, ready);
        ctx.io
            .reply(self.link, &self.to, &self.id, Ok(Some(answer.to_element())));
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum RoomState {
    /// Join presence sent, waiting for our own presence.
    Joining {
        deadline: Instant,
    },
    /// In the room, configuring it.
    Configuring {
        deadline: Instant,
    },
    Joined,
    /// The client connection is down; the room is re-joined when it is back.
    Disconnected,
    Stopped,
}

/// A room occupant other than the focus.
#[derive(Debug, Clone)]
struct Member {
    real_jid: Option<String>,
    affiliation: Option<String>,
    role: Option<String>,
    stats_id: Option<String>,
    region: Option<String>,
    caps: Option<Caps>,
    features: Option<Features>,
    disco_in_flight: bool,
    /// Join order, for electing an owner.
    order: u64,
}

impl Member {
    /// Owners, admins and the moderator role have moderator rights (Jicofo `MemberRole`).
    fn is_moderator(&self) -> bool {
        matches!(self.affiliation.as_deref(), Some("owner" | "admin"))
            || self.role.as_deref() == Some("moderator")
    }
}

/// Where a participant's invitation stands.
#[derive(Debug, Clone)]
enum Stage {
    /// Waiting for the disco#info answer.
    WaitingFeatures,
    /// No usable bridge; retried when one appears.
    WaitingBridge,
    /// COLIBRI2 allocation sent.
    Allocating { offer: Offer, features: Features },
    /// session-initiate sent (the session may be active).
    Invited,
    /// The invitation failed; the member stays in the room without media.
    Failed,
}

/// The focus's Jingle session with a participant.
#[derive(Debug, Clone)]
struct Session {
    sid: String,
    /// session-accept received.
    active: bool,
    json: bool,
    bridge_session: String,
    /// Source changes to signal once the session is active (at most [`MAX_QUEUED_SOURCE_CHANGES`]).
    queued: Vec<(SourceOp, ConferenceSourceMap)>,
    /// The remote sources the session-initiate announced (before simulcast stripping).
    initial: ConferenceSourceMap,
    /// The queue overflowed: at activation, send the difference between `initial` and the current
    /// sources instead.
    resync: bool,
    /// The bridge rewrites SSRCs for this participant and announces the sources it forwards over the
    /// bridge channel: the session carries only the bridge's feedback sources, never a source-add or
    /// source-remove (Jicofo `Participant.addRemoteSources`).
    rewriting: bool,
    /// The offer had a data content (SCTP bridge channel): no `web-socket` in transports sent to it.
    sctp: bool,
    /// The `ice-generation` of the last bridge transport relayed to the client (in-place ICE restart).
    ice_generation: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceOp {
    Add,
    Remove,
}

#[derive(Debug, Clone)]
struct Participant {
    /// Bumped whenever an invitation starts or the session ends, so late answers are recognised.
    epoch: u64,
    stage: Stage,
    session: Option<Session>,
    /// Session ids that ended (answers to them are `gone`).
    ended_sids: VecDeque<String>,
    /// Accepted restart requests (session-terminate with restart), for rate limiting.
    restarts: VecDeque<Instant>,
    /// Accepted in-place ICE restart requests: a budget of their own, as in Jicofo.
    ice_restarts: VecDeque<Instant>,
    /// A session-initiate went out before: later ones are re-invitations (moves, restarts), to which
    /// the moderator's start-muted policy does not apply (as in Jicofo).
    invited_before: bool,
    /// What the focus muted (moderator mute, A/V moderation); kept across re-invitations.
    muted: MuteState,
    /// The force-mute the bridge was last told for this participant.
    force_mute: ForceMute,
}

impl Participant {
    fn new() -> Self {
        Participant {
            epoch: 0,
            stage: Stage::WaitingFeatures,
            session: None,
            ended_sids: VecDeque::new(),
            restarts: VecDeque::new(),
            ice_restarts: VecDeque::new(),
            invited_before: false,
            muted: MuteState::default(),
            force_mute: ForceMute::default(),
        }
    }
}

/// The conference's session with its bridge (Jicofo `Colibri2Session`).
#[derive(Debug, Clone)]
struct BridgeSession {
    bridge: String,
    /// The bridge-session id clients echo back.
    id: String,
    region: Option<String>,
    version: Option<String>,
    /// Whether the conference was created on the bridge (the first allocation carries `create`).
    created: bool,
    /// The bridge's feedback sources (owner `jvb`).
    feedback: ConferenceSourceMap,
    /// Endpoints allocated on the bridge.
    endpoints: BTreeSet<String>,
}

/// Who starts with microphone / camera muted (`<startmuted>` in session-initiate, which the client
/// obeys by muting its local tracks).
#[derive(Debug, Clone, Copy, Default)]
struct StartMutedRules {
    /// `startAudioMuted` / `startVideoMuted` of the conference request that created the conference
    /// (config.js): members after this many in join order start muted.
    audio_after: Option<u64>,
    video_after: Option<u64>,
    /// The policy a moderator sets with `<startmuted>` in its presence ("everyone starts muted"):
    /// applies to members invited for the first time from then on.
    policy: StartMuted,
}

impl StartMutedRules {
    fn from_request(r: &ConferenceRequest) -> Self {
        let limit = |name| r.property(name).and_then(|v| v.trim().parse::<u64>().ok());
        StartMutedRules {
            audio_after: limit("startAudioMuted"),
            video_after: limit("startVideoMuted"),
            policy: StartMuted::default(),
        }
    }

    /// For the member `order`-th in join order; `first_invitation` is false for re-invitations.
    fn for_member(&self, order: u64, first_invitation: bool) -> StartMuted {
        StartMuted {
            audio: (self.policy.audio && first_invitation)
                || self.audio_after.is_some_and(|n| order > n),
            video: (self.policy.video && first_invitation)
                || self.video_after.is_some_and(|n| order > n),
        }
    }
}

/// A conference.
#[derive(Debug, Clone)]
pub(crate) struct Conference {
    room: BareJid,
    state: RoomState,
    meeting_id: Option<String>,
    waiters: Vec<Waiter>,
    members: BTreeMap<String, Member>,
    next_order: u64,
    participants: BTreeMap<String, Participant>,
    sources: ConferenceSourceMap,
    bridge: Option<BridgeSession>,
    /// The version of the bridge the conference last used (a conference does not mix versions).
    bridge_version: Option<String>,
    owner: Option<String>,
    single_deadline: Option<Instant>,
    start_deadline: Option<Instant>,
    retry_deadline: Option<Instant>,
    /// Members seen since the last (re)join; the others left while we were away.
    seen: Option<BTreeSet<String>>,
    /// Members missing after a re-join → when they are taken as gone.
    absent: BTreeMap<String, Instant>,
    start_muted: StartMutedRules,
    av_moderation: AvModeration,
    /// Members made owners because they are authenticated (secure domain).
    granted_owners: BTreeSet<String>,
}

/// The reply to a Jingle request from someone without a session: item-not-found + unknown-session.
pub(crate) fn unknown_session(text: &str) -> StanzaError {
    StanzaError::new(Condition::ItemNotFound, text)
        .with_extra(Element::bare("unknown-session", ns::JINGLE_ERRORS))
}

fn bad_request(text: impl std::fmt::Display) -> StanzaError {
    StanzaError::new(Condition::BadRequest, text.to_string())
}

/// How long to wait before retrying invitations that found no bridge.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);
/// How many ended session ids a participant remembers.
const ENDED_SIDS: usize = 4;
/// Source changes queued for a participant whose session is not active yet; beyond, the difference
/// is computed at activation instead (as Jicofo's `SourceSignaling` does all the time).
pub const MAX_QUEUED_SOURCE_CHANGES: usize = 64;
/// How long members missing from the room after the focus re-joined it (Prosody restarted) may take to
/// come back before they are taken as gone.
pub const MEMBER_REJOIN_GRACE: Duration = Duration::from_secs(30);
/// A member's (or a bridge's) unavailable presence takes effect this much later, unless the focus's
/// own connection drops in between (Prosody shutting down announces everybody as gone first).
pub const LEAVE_CONFIRM_DELAY: Duration = Duration::from_secs(1);

impl Conference {
    /// Creates the conference for `request` (whose properties configure it) and joins its room.
    pub fn new(ctx: &mut Ctx<'_>, request: &ConferenceRequest) -> Self {
        let mut c = Conference {
            room: request.room.clone(),
            state: RoomState::Stopped,
            meeting_id: None,
            waiters: Vec::new(),
            members: BTreeMap::new(),
            next_order: 0,
            participants: BTreeMap::new(),
            sources: ConferenceSourceMap::new(),
            bridge: None,
            bridge_version: None,
            owner: None,
            single_deadline: None,
            start_deadline: None,
            retry_deadline: None,
            seen: None,
            absent: BTreeMap::new(),
            start_muted: StartMutedRules::from_request(request),
            av_moderation: AvModeration::default(),
            granted_owners: BTreeSet::new(),
        };
        c.join(ctx);
        c
    }

    /// The focus's own presence in the room. `visitor-codecs` lists the video codecs of the offer: the
    /// current lib-jitsi-meet narrows its codec preference to them (see
    /// [`super::offer::CodecConfig::visitor_codecs`]), the 2021 one ignores it. It is in the join
    /// presence, so clients have it before any session-initiate.
    fn presence_extensions(ctx: &Ctx<'_>) -> Vec<Element> {
        let codecs = ctx.cfg.codecs.visitor_codecs();
        vec![
            muc::conference_properties(&[
                ("support-terminate-restart", "true"),
                ("visitor-codecs", &codecs),
            ]),
            muc::versions(&ctx.cfg.version),
        ]
    }

    fn join(&mut self, ctx: &mut Ctx<'_>) {
        info!(room = %self.room, "joining room");
        let p = muc::join_presence(&self.room, &ctx.cfg.nick, &Self::presence_extensions(ctx));
        ctx.io.presence(Link::Client, p);
        self.seen = Some(BTreeSet::new());
        self.state = RoomState::Joining {
            deadline: ctx.now + ctx.cfg.join_timeout,
        };
    }

    pub fn is_joined(&self) -> bool {
        self.state == RoomState::Joined
    }

    pub fn is_stopped(&self) -> bool {
        self.state == RoomState::Stopped
    }

    pub fn add_waiter(&mut self, w: Waiter) {
        self.waiters.push(w);
    }

    pub fn waiter_count(&self) -> usize {
        self.waiters.len()
    }

    /// Nobody has joined the room yet.
    pub fn is_pending(&self) -> bool {
        self.members.is_empty()
    }

    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// What `/debug` shows of this conference.
    pub fn debug(&self) -> ConferenceDebug {
        ConferenceDebug {
            room: self.room.to_string(),
            meeting_id: self.meeting_id.clone(),
            state: format!("{:?}", self.state),
            members: self.members.len(),
            bridge: self.bridge.as_ref().map(|b| b.bridge.clone()),
            bridge_session: self.bridge.as_ref().map(|b| b.id.clone()),
            absent: self.absent.keys().cloned().collect(),
            participants: self
                .participants
                .iter()
                .map(|(id, p)| ParticipantDebug {
                    id: id.clone(),
                    stage: match p.stage {
                        Stage::WaitingFeatures => "waiting-features",
                        Stage::WaitingBridge => "waiting-bridge",
                        Stage::Allocating { .. } => "allocating",
                        Stage::Invited => "invited",
                        Stage::Failed => "failed",
                    },
                    session: p.session.as_ref().map(|s| s.sid.clone()),
                    active: p.session.as_ref().is_some_and(|s| s.active),
                    sources: self.sources.get(id).map_or(0, |s| s.ssrc_count()),
                    ssrc_rewriting: p.session.as_ref().is_some_and(|s| s.rewriting),
                })
                .collect(),
        }
    }

    pub fn participant_bridges(&self) -> Vec<(String, Option<String>)> {
        self.participants
            .iter()
            .map(|(n, p)| {
                let bridge = p
                    .session
                    .as_ref()
                    .and(self.bridge.as_ref())
                    .map(|b| b.bridge.clone());
                (n.clone(), bridge)
            })
            .collect()
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let state = match self.state {
            RoomState::Joining { deadline } | RoomState::Configuring { deadline } => Some(deadline),
            _ => None,
        };
        // Absent members are given up only while in the room (out of it, nobody can come back).
        let absent = self
            .is_joined()
            .then(|| self.absent.values().copied().min())
            .flatten();
        [
            state,
            self.single_deadline,
            self.start_deadline,
            self.retry_deadline,
            absent,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn occupant(&self, nick: &str) -> String {
        format!("{}/{}", self.room, nick)
    }

    fn request(
        &self,
        ctx: &mut Ctx<'_>,
        link: Link,
        to: String,
        kind: IqKind,
        payload: Element,
        what: RoomRequest,
    ) {
        let timeout = match what {
            RoomRequest::Disco { .. } => ctx.cfg.disco_timeout,
            _ => ctx.cfg.reply_timeout,
        };
        ctx.io.request(
            link,
            to,
            kind,
            payload,
            timeout,
            Pending::Room {
                room: self.room.clone(),
                what,
            },
        );
    }

    /// A Jingle IQ set to the participant `nick`, answered into `what`.
    fn send_jingle(&self, ctx: &mut Ctx<'_>, nick: &str, jingle: &Jingle, what: RoomRequest) {
        let to = self.occupant(nick);
        self.request(
            ctx,
            Link::Client,
            to,
            IqKind::Set,
            jingle.to_element(),
            what,
        );
    }

    /// The client connection is back: join the room again.
    pub fn rejoin(&mut self, ctx: &mut Ctx<'_>) {
        if self.state == RoomState::Stopped {
            return;
        }
        self.join(ctx);
    }

    pub fn connection_lost(&mut self) {
        if self.state != RoomState::Stopped {
            self.state = RoomState::Disconnected;
        }
    }

    fn answer_waiters(&mut self, ctx: &mut Ctx<'_>, ready: bool) {
        for w in std::mem::take(&mut self.waiters) {
            w.answer(ctx, self.room.clone(), ready);
        }
    }

    /// Stops the conference: expires it on the bridge and leaves the room.
    fn stop(&mut self, ctx: &mut Ctx<'_>, why: &str, leave: bool) {
        info!(room = %self.room, why, "stopping conference");
        let nicks: Vec<String> = self.participants.keys().cloned().collect();
        for n in nicks {
            self.terminate(ctx, &n, None, false, true);
        }
        self.expire_bridge_session(ctx);
        if leave {
            ctx.io
                .presence(Link::Client, muc::leave_presence(&self.room, &ctx.cfg.nick));
        }
        self.answer_waiters(ctx, false);
        self.state = RoomState::Stopped;
    }

    /// The focus is going away.
    pub fn shutdown(&mut self, ctx: &mut Ctx<'_>) {
        if self.state != RoomState::Stopped {
            self.stop(ctx, "focus shutting down", true);
        }
    }

    fn joined(&mut self, ctx: &mut Ctx<'_>) {
        if self.meeting_id.is_none() {
            self.meeting_id = Some(ctx.io.rng.uuid());
        }
        info!(room = %self.room, meeting_id = ?self.meeting_id, "room ready");
        self.state = RoomState::Joined;
        self.answer_waiters(ctx, true);
        if self.members.is_empty() {
            self.start_deadline = Some(ctx.now + ctx.cfg.conference.initial_timeout);
        }
        self.ensure_owner(ctx);
        self.maybe_invite(ctx, None);
    }

    pub fn on_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match self.state {
            RoomState::Joining { deadline } | RoomState::Configuring { deadline }
                if deadline <= now =>
            {
                warn!(room = %self.room, "timed out joining the room");
                self.stop(ctx, "join timed out", true);
                return;
            }
            _ => {}
        }
        if self.is_joined() {
            let gone: Vec<String> = self
                .absent
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(n, _)| n.clone())
                .collect();
            for n in gone {
                self.absent.remove(&n);
                if self.members.contains_key(&n) {
                    self.member_left(ctx, &n);
                    if self.is_stopped() {
                        return;
                    }
                }
            }
        }
        if self.start_deadline.is_some_and(|t| t <= now) {
            self.start_deadline = None;
            if self.members.is_empty() {
                self.stop(ctx, "nobody joined", true);
                return;
            }
        }
        if self.single_deadline.is_some_and(|t| t <= now) {
            self.single_deadline = None;
            if self.participants.len() == 1
                && let Some(nick) = self.participants.keys().next().cloned()
            {
                info!(room = %self.room, %nick, "single participant timed out");
                self.terminate(
                    ctx,
                    &nick,
                    Some((ReasonCondition::Expired, "Idle session timeout")),
                    false,
                    true,
                );
                self.expire_bridge_session(ctx);
            }
        }
        if self.retry_deadline.is_some_and(|t| t <= now) {
            self.retry_deadline = None;
            self.retry_waiting(ctx);
        }
    }

    pub fn on_jingle(&mut self, ctx: &mut Ctx<'_>, req: &IqRequest) {
        let nick = req.from.split_once('/').map_or("", |(_, n)| n).to_owned();
        let result = self.handle_jingle(ctx, &nick, req);
        if let Err(e) = &result {
            ctx.counters.jingle_errors += 1;
            info!(room = %self.room, %nick, error = %e, "refused a Jingle request");
        }
        ctx.io
            .reply(req.link, &req.from, &req.id, result.map(|()| None));
    }

    /// A mute, Jibri or Rayo dial request from the occupant `req.from`.
    pub fn on_room_iq(&mut self, ctx: &mut Ctx<'_>, req: &IqRequest) {
        let nick = req.from.split_once('/').map_or("", |(_, n)| n).to_owned();
        let checks = ctx.cfg.conference.enable_moderator_checks;
        let result = if let Some(mute) = MuteIq::parse(&req.payload) {
            self.on_mute(ctx, &nick, &mute)
        } else if req.payload.is("jibri", jibri::NS_JIBRI) {
            let e = jibri::answer_jibri(&req.payload, self.moderator(&nick), checks);
            info!(room = %self.room, %nick, error = %e, "recording / live streaming refused: no Jibri here");
            Err(e)
        } else {
            let room = self.room.to_string();
            let e = jibri::answer_dial(&req.payload, &room, self.moderator(&nick), checks);
            info!(room = %self.room, %nick, error = %e, "dial-out / transcription refused: no Jigasi here");
            Err(e)
        };
        ctx.io
            .reply(req.link, &req.from, &req.id, result.map(|()| None));
    }

    /// Handles an answer; returns a bridge that must be treated as failed, with the reason.
    pub fn on_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        what: RoomRequest,
        result: Result<Option<Element>, RequestFailure>,
    ) -> Option<(String, String)> {
        match what {
            RoomRequest::ConfigForm => {
                match &result {
                    Ok(Some(q)) => {
                        if let Some(id) = muc::form_field(q, "muc#roominfo_meetingId") {
                            self.meeting_id = Some(id);
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        warn!(room = %self.room, error = %e, "cannot read the room configuration")
                    }
                }
                if matches!(self.state, RoomState::Configuring { .. }) {
                    let to = self.room.to_string();
                    self.request(
                        ctx,
                        Link::Client,
                        to,
                        IqKind::Set,
                        muc::config_submit(),
                        RoomRequest::ConfigSubmit,
                    );
                }
                None
            }
            RoomRequest::ConfigSubmit => {
                if let Err(e) = &result {
                    warn!(room = %self.room, error = %e, "cannot configure the room");
                }
                if matches!(self.state, RoomState::Configuring { .. }) {
                    self.joined(ctx);
                }
                None
            }
            RoomRequest::GrantOwner => {
                if let Err(e) = result {
                    debug!(room = %self.room, error = %e, "granting ownership failed");
                }
                None
            }
            RoomRequest::Disco { nick } => {
                let features = match &result {
                    Ok(Some(q)) => {
                        Features::from_vars(muc::disco_features(q).iter().map(String::as_str))
                    }
                    _ => {
                        debug!(room = %self.room, %nick, "no disco#info answer, assuming defaults");
                        Features::default()
                    }
                };
                let m = self.members.get_mut(&nick)?;
                m.disco_in_flight = false;
                m.features = Some(features);
                if let (Ok(Some(q)), Some(caps)) = (&result, &m.caps)
                    && !ctx.features.insert_verified(caps, q, features)
                {
                    debug!(room = %self.room, %nick, node = %caps.node, "disco#info does not match the advertised caps; not cached");
                }
                if self
                    .participants
                    .get(&nick)
                    .is_some_and(|p| matches!(p.stage, Stage::WaitingFeatures))
                {
                    self.invite(ctx, &nick);
                }
                None
            }
            RoomRequest::Allocate {
                nick,
                epoch,
                bridge_session,
            } => self.on_allocated(ctx, &nick, epoch, &bridge_session, result),
            RoomRequest::BridgeUpdate {
                nick,
                bridge_session,
            } => {
                let Err(e) = result else {
                    return None;
                };
                self.on_bridge_error(ctx, nick, &bridge_session, e)
            }
            RoomRequest::IceRestart {
                nick,
                sid,
                bridge_session,
            } => self.on_ice_restart_answer(ctx, &nick, &sid, &bridge_session, result),
            RoomRequest::SessionInitiate { nick, epoch } => {
                let Err(e) = result else {
                    return None;
                };
                if matches!(e, RequestFailure::Timeout) {
                    // As Jicofo: no answer is taken as success.
                    return None;
                }
                if self
                    .participants
                    .get(&nick)
                    .is_none_or(|p| p.epoch != epoch)
                {
                    return None;
                }
                if matches!(e, RequestFailure::NotConnected) {
                    // Our connection was down: the client never saw it. Start over once back.
                    warn!(room = %self.room, %nick, "session-initiate not sent (offline), retrying later");
                    self.terminate(ctx, &nick, None, true, false);
                    self.wait_and_retry(ctx, &nick);
                    return None;
                }
                warn!(room = %self.room, %nick, error = %e, "session-initiate refused");
                self.terminate(ctx, &nick, None, true, false);
                if let Some(p) = self.participants.get_mut(&nick) {
                    p.stage = Stage::Failed;
                }
                None
            }
            RoomRequest::Jingle { nick, action } => {
                if let Err(e) = result {
                    debug!(room = %self.room, %nick, action, error = %e, "jingle request failed");
                }
                None
            }
        }
    }
}
