//! One conference: its MUC room, members, participants (members the focus invited into a Jingle session),
//! the conference source map, and its session with a bridge.
//!
//! The flows follow Jicofo (`JitsiMeetConferenceImpl`, `ParticipantInviteRunnable`, `Participant`): the
//! focus joins and configures the room before it answers `ready`; once `min_participants` members are in,
//! each is invited — features (disco#info), bridge, COLIBRI2 allocation, `session-initiate` with the
//! bridge's transport and everybody else's sources; `session-accept` updates the bridge and tells the
//! others; leaving expires the endpoint; a failed bridge moves everyone (session-terminate + a fresh
//! session-initiate, since the reference client ignores transport-replace).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use jid::BareJid;
use minidom::Element;
use signaling::colibri2::{ForceMute, Reason as Colibri2Reason};
use signaling::focus_iq::ConferenceRequest;
use signaling::ice_udp::SctpMap;
use signaling::jingle::{
    Action, BridgeSession as BridgeSessionEl, Content, Creator, Group, Jingle, Reason,
    ReasonCondition, RtpDescription, StartMuted,
};
use signaling::ns;
use signaling::rtp_description::MediaType;
use signaling::source_map::{
    ConferenceSourceMap, EndpointSources, SourceEncoding, SourceLimits, check_owner,
};
use signaling::sources::VideoType;
use signaling::xml::XmlElement;
use tracing::{debug, info, warn};

use super::auth::AuthAnswer;
use super::caps::Caps;
use super::colibri::{self, EndpointSpec};
use super::jibri;
use super::moderation::{
    self, AvModeration, AvModerationMessage, MuteCheck, MuteIq, MuteMedia, MuteRefusal, MuteState,
};
use super::muc::{self, MucPresence};
use super::offer::{Features, Offer, OfferOptions};
use super::stanza::{Condition, IqKind, IqRequest, Link, RequestFailure, StanzaError};
use super::{Ctx, Pending, RoomRequest};

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

    // ---- room lifecycle ---------------------------------------------------------------------------

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

    pub fn on_presence(&mut self, ctx: &mut Ctx<'_>, p: MucPresence) {
        if p.nick == ctx.cfg.nick {
            self.on_own_presence(ctx, p);
            return;
        }
        if let Some(seen) = self.seen.as_mut() {
            seen.insert(p.nick.clone());
        }
        self.absent.remove(&p.nick);
        if !p.available {
            if self.members.contains_key(&p.nick) {
                // Taken as gone a moment later: when Prosody shuts down it announces every occupant
                // as gone just before it closes our stream too, and those members (whose media never
                // stopped) may well be back after the restart — then they get the re-join grace.
                self.absent
                    .insert(p.nick.clone(), ctx.now + LEAVE_CONFIRM_DELAY);
            }
            return;
        }
        let caps = p.caps.clone();
        self.read_start_muted_policy(&p);
        match self.members.get_mut(&p.nick) {
            Some(m) => {
                m.real_jid = p.real_jid.clone().or(m.real_jid.take());
                m.affiliation = p.affiliation.clone();
                m.role = p.role.clone();
                m.stats_id = p.stats_id.clone().or(m.stats_id.take());
                m.region = p.region.clone().or(m.region.take());
                if caps.is_some() && caps != m.caps {
                    m.caps = caps;
                }
                if p.affiliation.as_deref() == Some("owner") && self.owner.is_none() {
                    self.owner = Some(p.nick.clone());
                }
            }
            None => {
                info!(room = %self.room, nick = %p.nick, stats_id = ?p.stats_id, region = ?p.region, "member joined");
                self.next_order += 1;
                let features = caps.as_ref().and_then(|c| ctx.features.get(c));
                self.members.insert(
                    p.nick.clone(),
                    Member {
                        real_jid: p.real_jid.clone(),
                        affiliation: p.affiliation.clone(),
                        role: p.role.clone(),
                        stats_id: p.stats_id.clone(),
                        region: p.region.clone(),
                        caps,
                        features,
                        disco_in_flight: false,
                        order: self.next_order,
                    },
                );
                if p.affiliation.as_deref() == Some("owner") {
                    self.owner = Some(p.nick.clone());
                }
                self.start_deadline = None;
                if self.is_joined() {
                    self.ensure_owner(ctx);
                    self.maybe_invite(ctx, Some(&p.nick));
                }
            }
        }
    }

    /// A room owner's or admin's `<startmuted>` presence child sets the policy for members invited
    /// from then on; anyone else's is ignored (Jicofo's rule).
    fn read_start_muted_policy(&mut self, p: &MucPresence) {
        let Some(el) = p.element.get_child("startmuted", ns::JITMEET_START_MUTED) else {
            return;
        };
        if !matches!(p.affiliation.as_deref(), Some("owner" | "admin")) {
            debug!(room = %self.room, nick = %p.nick, "start-muted policy from a non-moderator ignored");
            return;
        }
        match StartMuted::from_element(el) {
            Ok(policy) => {
                if policy != self.start_muted.policy {
                    info!(room = %self.room, nick = %p.nick, audio = policy.audio, video = policy.video, "start-muted policy");
                }
                self.start_muted.policy = policy;
            }
            Err(e) => {
                debug!(room = %self.room, nick = %p.nick, error = %e, "bad startmuted ignored")
            }
        }
    }

    fn on_own_presence(&mut self, ctx: &mut Ctx<'_>, p: MucPresence) {
        if p.error {
            warn!(room = %self.room, "could not join the room");
            self.stop(ctx, "join refused", false);
            return;
        }
        if !p.available {
            if self.state != RoomState::Stopped {
                warn!(room = %self.room, "removed from the room");
                self.stop(ctx, "focus removed from the room", false);
            }
            return;
        }
        if let RoomState::Joining { .. } = self.state {
            // Everybody present has been announced before our own presence. Members that are not
            // (after a re-join: Prosody restarted) get a grace period to come back — their clients
            // reconnect too, and their media with the bridge never stopped.
            if let Some(seen) = self.seen.take() {
                let deadline = ctx.now + MEMBER_REJOIN_GRACE;
                for n in self.members.keys().filter(|n| !seen.contains(*n)) {
                    self.absent.insert(n.clone(), deadline);
                }
            }
            self.state = RoomState::Configuring {
                deadline: ctx.now + ctx.cfg.join_timeout,
            };
            let to = self.room.to_string();
            self.request(
                ctx,
                Link::Client,
                to,
                IqKind::Get,
                muc::config_form_query(),
                RoomRequest::ConfigForm,
            );
        }
    }

    fn member_left(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        info!(room = %self.room, %nick, "member left");
        self.members.remove(nick);
        self.granted_owners.remove(nick);
        if self.participants.contains_key(nick) {
            // No session-terminate (the client is gone) and no source-remove: clients drop the sources of
            // a member when its unavailable presence arrives.
            self.terminate(ctx, nick, None, false, true);
        }
        if self.owner.as_deref() == Some(nick) {
            self.owner = None;
            self.ensure_owner(ctx);
        }
        if self.members.is_empty() {
            if self.is_joined() {
                self.stop(ctx, "last member left", true);
            }
            return;
        }
        match self.participants.len() {
            1 => {
                self.single_deadline =
                    Some(ctx.now + ctx.cfg.conference.single_participant_timeout);
            }
            0 => self.expire_bridge_session(ctx),
            _ => {}
        }
    }

    /// Makes the longest-present member an owner if no member is one (Jicofo's auto-owner). With a
    /// secure domain, authenticated members are the owners instead.
    fn ensure_owner(&mut self, ctx: &mut Ctx<'_>) {
        if ctx.cfg.auth.is_some() {
            self.grant_authenticated_owners(ctx);
            return;
        }
        if !ctx.cfg.conference.enable_auto_owner || !self.is_joined() {
            return;
        }
        if self
            .owner
            .as_ref()
            .is_some_and(|o| self.members.contains_key(o))
        {
            return;
        }
        if let Some((nick, m)) = self
            .members
            .iter()
            .find(|(_, m)| m.affiliation.as_deref() == Some("owner"))
        {
            self.owner = Some(nick.clone());
            let _ = m;
            return;
        }
        let Some((nick, jid)) = self
            .members
            .iter()
            .filter_map(|(n, m)| Some((n, m.real_jid.as_ref()?, m.order)))
            .min_by_key(|(_, _, order)| *order)
            .map(|(n, j, _)| (n.clone(), j.clone()))
        else {
            return;
        };
        debug!(room = %self.room, %nick, "granting ownership");
        self.owner = Some(nick);
        self.grant_owner(ctx, &jid);
    }

    /// Asks the room to make the real JID `jid` (full or bare) an owner.
    fn grant_owner(&self, ctx: &mut Ctx<'_>, jid: &str) {
        let bare = jid.split_once('/').map_or(jid, |(b, _)| b);
        let to = self.room.to_string();
        self.request(
            ctx,
            Link::Client,
            to,
            IqKind::Set,
            muc::grant_owner(bare),
            RoomRequest::GrantOwner,
        );
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

    // ---- invitations ------------------------------------------------------------------------------

    /// Invites members once the room has enough of them: all not yet invited, or just `new_member`.
    fn maybe_invite(&mut self, ctx: &mut Ctx<'_>, new_member: Option<&str>) {
        if !self.is_joined() || self.members.len() < ctx.cfg.conference.min_participants {
            return;
        }
        self.single_deadline = None;
        let nicks: Vec<String> = match new_member {
            Some(n) if !self.participants.is_empty() => vec![n.to_owned()],
            _ => self.members.keys().cloned().collect(),
        };
        for nick in nicks {
            if self.participants.contains_key(&nick) {
                continue;
            }
            ctx.counters.participants += 1;
            self.participants.insert(nick.clone(), Participant::new());
            self.invite(ctx, &nick);
        }
    }

    /// Parks `nick`'s invitation; it is tried again with the others waiting for a bridge.
    fn wait_and_retry(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        if let Some(p) = self.participants.get_mut(nick) {
            p.epoch += 1;
            p.stage = Stage::WaitingBridge;
        }
        self.retry_deadline = Some(ctx.now + RETRY_INTERVAL);
    }

    /// Invitations waiting for a bridge are tried again.
    pub fn retry_waiting(&mut self, ctx: &mut Ctx<'_>) {
        let waiting: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| matches!(p.stage, Stage::WaitingBridge))
            .map(|(n, _)| n.clone())
            .collect();
        for n in waiting {
            self.invite(ctx, &n);
        }
    }

    /// Starts (or restarts) the invitation of `nick`: features → bridge → COLIBRI2 allocation.
    fn invite(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        let Some(member) = self.members.get_mut(nick) else {
            return;
        };
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        p.epoch += 1;
        p.stage = Stage::WaitingFeatures;
        if member.features.is_none()
            && let Some(f) = member.caps.as_ref().and_then(|c| ctx.features.get(c))
        {
            member.features = Some(f);
        }
        let Some(features) = member.features else {
            if !member.disco_in_flight {
                member.disco_in_flight = true;
                let to = format!("{}/{}", self.room, nick);
                self.request(
                    ctx,
                    Link::Client,
                    to,
                    IqKind::Get,
                    muc::disco_info_query(None),
                    RoomRequest::Disco {
                        nick: nick.to_owned(),
                    },
                );
            }
            return;
        };
        let region = member.region.clone();
        let stats_id = member.stats_id.clone();

        // The bridge: the conference's, or a new selection.
        if self.bridge.is_none() {
            let selected = ctx.bridges.select(
                &super::bridges::SelectionRequest {
                    conference_bridge: None,
                    conference_version: self.bridge_version.as_deref(),
                    participant_region: region.as_deref(),
                },
                ctx.now,
            );
            let Some(jid) = selected else {
                warn!(room = %self.room, %nick, "no bridge available");
                if let Some(p) = self.participants.get_mut(nick) {
                    p.stage = Stage::WaitingBridge;
                }
                self.retry_deadline = Some(ctx.now + RETRY_INTERVAL);
                return;
            };
            let b = ctx.bridges.get(&jid);
            let region = b.and_then(|b| b.region.clone());
            let version = b.and_then(|b| b.full_version());
            info!(room = %self.room, bridge = %jid, "conference uses bridge");
            self.bridge = Some(BridgeSession {
                bridge: jid,
                id: ctx.io.rng.uuid(),
                region,
                version,
                created: false,
                feedback: ConferenceSourceMap::new(),
                endpoints: BTreeSet::new(),
            });
        }
        let force_mute = self.wanted_force_mute(nick);
        let Some(bs) = self.bridge.as_mut() else {
            return;
        };
        if !ctx.bridges.is_operational(&bs.bridge, ctx.now) {
            warn!(room = %self.room, bridge = %bs.bridge, %nick, "the conference's bridge is not operational");
            if let Some(p) = self.participants.get_mut(nick) {
                p.stage = Stage::WaitingBridge;
            }
            self.retry_deadline = Some(ctx.now + RETRY_INTERVAL);
            return;
        }
        self.bridge_version = bs.version.clone();

        let options = OfferOptions::for_features(&features);
        let offer = Offer::new(&ctx.cfg.codecs, &options);
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        let room = self.room.to_string();
        let create = (!bs.created).then_some(room.as_str());
        let own_sources = self.sources.get(nick);
        let c = &ctx.cfg.conference;
        let rewriting = c.use_ssrc_rewriting && features.ssrc_rewriting;
        let rtp_mid_demux = rewriting
            && c.use_rtp_mid_demux
            && features.rtp_mid_demux
            && ctx.cfg.codecs.extensions.mid.enabled;
        let payload = colibri::allocate(
            &meeting_id,
            create,
            &EndpointSpec {
                id: nick,
                stats_id: stats_id.as_deref(),
                audio: offer.audio.as_ref(),
                video: offer.video.as_ref(),
                sctp: offer.sctp,
                ssrc_rewriting: rewriting,
                rtp_mid_demux,
                sources: own_sources,
                force_mute,
            },
        );
        bs.created = true;
        bs.endpoints.insert(nick.to_owned());
        let bridge = bs.bridge.clone();
        let bridge_session = bs.id.clone();
        ctx.bridges.endpoint_added(&bridge, ctx.now);
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        p.force_mute = force_mute;
        p.stage = Stage::Allocating { offer, features };
        let epoch = p.epoch;
        debug!(room = %self.room, %nick, %bridge, "allocating");
        self.request(
            ctx,
            ctx.cfg.brewery_link,
            bridge,
            IqKind::Set,
            payload,
            RoomRequest::Allocate {
                nick: nick.to_owned(),
                epoch,
                bridge_session,
            },
        );
    }

    /// Sends the session-initiate once the bridge allocated the endpoint.
    fn initiate(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        allocation: colibri::Allocation,
        offer: Offer,
        features: Features,
    ) {
        let Some(bs) = self.bridge.as_mut() else {
            return;
        };
        if !allocation.feedback_sources.is_empty() {
            bs.feedback = allocation.feedback_sources.clone();
        }
        let mut transport = allocation.transport.clone();
        transport.rtcp_mux = true;
        let sctp_port = allocation.sctp_port.filter(|_| offer.sctp);
        if sctp_port.is_some() {
            // With a web-socket URL in the offer the client would use colibri-ws instead of SCTP.
            transport.web_sockets.clear();
        }
        let mut contents = Vec::new();
        if let Some(rtp) = &offer.audio {
            let mut d = RtpDescription::new(MediaType::Audio);
            d.maxptime = Some(60);
            d.rtp = rtp.clone();
            d.rtcp_mux = true;
            contents.push(Content::offer("audio", Some(d), transport.clone()));
        }
        if let Some(rtp) = &offer.video {
            let mut d = RtpDescription::new(MediaType::Video);
            d.rtp = rtp.clone();
            d.rtcp_mux = true;
            contents.push(Content::offer("video", Some(d), transport.clone()));
        }
        if let Some(port) = sctp_port {
            let mut d = RtpDescription::new(MediaType::Application);
            d.rtcp_mux = true;
            let mut t = transport.clone();
            t.sctpmap = Some(SctpMap {
                number: port,
                ..SctpMap::webrtc_datachannel()
            });
            contents.push(Content::offer("data", Some(d), t));
        }
        let sid = ctx.io.rng.hex(13);
        let mut jingle = Jingle::new(Action::SessionInitiate, &sid);
        jingle.initiator = Some(ctx.cfg.focus_full_jid.clone());
        jingle.groups = vec![Group::bundle(contents.iter().map(|c| c.name.clone()))];
        jingle.contents = contents;
        jingle.bridge_session = Some(BridgeSessionEl::new(&bs.id, bs.region.as_deref()));
        let bridge_session = bs.id.clone();
        let rewriting = ctx.cfg.conference.use_ssrc_rewriting && features.ssrc_rewriting;
        let mut remote = self.remote_sources(nick, rewriting);
        let announced = remote.clone();
        if ctx.cfg.conference.strip_simulcast {
            remote = remote.stripped_simulcast();
        }
        let json = features.json_sources && ctx.cfg.conference.use_json_encoded_sources;
        jingle.set_sources(
            &remote,
            if json {
                SourceEncoding::Json
            } else {
                SourceEncoding::Xml
            },
        );
        let order = self.members.get(nick).map_or(0, |m| m.order);
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        let start_muted = self.start_muted.for_member(order, !p.invited_before);
        if start_muted.audio || start_muted.video {
            jingle.start_muted = Some(start_muted);
        }
        p.invited_before = true;
        p.stage = Stage::Invited;
        p.session = Some(Session {
            sid: sid.clone(),
            active: false,
            json,
            bridge_session,
            queued: Vec::new(),
            initial: announced,
            resync: false,
            rewriting,
            sctp: sctp_port.is_some(),
            ice_generation: None,
        });
        let epoch = p.epoch;
        info!(room = %self.room, %nick, %sid, "sending session-initiate");
        self.send_jingle(
            ctx,
            nick,
            &jingle,
            RoomRequest::SessionInitiate {
                nick: nick.to_owned(),
                epoch,
            },
        );
    }

    /// Ends `nick`'s session: optionally tells the client (`reason`), removes its sources (and tells the
    /// others if `source_remove`), expires its endpoint; removes the participant unless `keep`.
    fn terminate(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        reason: Option<(ReasonCondition, &str)>,
        source_remove: bool,
        remove: bool,
    ) {
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        p.epoch += 1;
        if let Some(s) = p.session.take() {
            p.ended_sids.push_back(s.sid.clone());
            if p.ended_sids.len() > ENDED_SIDS {
                p.ended_sids.pop_front();
            }
            if let Some((condition, text)) = reason {
                let mut j = Jingle::new(Action::SessionTerminate, &s.sid);
                j.initiator = Some(ctx.cfg.focus_full_jid.clone());
                j.reason = Some(Reason::new(condition, Some(text)));
                self.send_jingle(
                    ctx,
                    nick,
                    &j,
                    RoomRequest::Jingle {
                        nick: nick.to_owned(),
                        action: "session-terminate",
                    },
                );
            }
        }
        if let Some(removed) = self.sources.remove_owner(nick)
            && source_remove
        {
            self.signal_to_others(ctx, nick, SourceOp::Remove, &removed);
        }
        self.release_endpoint(ctx, nick);
        if remove {
            self.participants.remove(nick);
        }
    }

    /// Expires `nick`'s endpoint on the bridge (the whole conference if it was the last one).
    fn release_endpoint(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        let Some(bs) = self.bridge.as_mut() else {
            return;
        };
        if !bs.endpoints.remove(nick) {
            return;
        }
        ctx.bridges.endpoint_removed(&bs.bridge);
        if bs.endpoints.is_empty() {
            self.expire_bridge_session(ctx);
            return;
        }
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        let payload = colibri::expire_endpoints(&meeting_id, [nick]);
        self.send_to_bridge(ctx, None, payload);
    }

    /// Sends a COLIBRI2 request about `nick` (or about nobody in particular) to the conference's bridge.
    fn send_to_bridge(&self, ctx: &mut Ctx<'_>, nick: Option<&str>, payload: Element) {
        let Some(bs) = self.bridge.as_ref() else {
            return;
        };
        let (to, bridge_session) = (bs.bridge.clone(), bs.id.clone());
        self.request(
            ctx,
            ctx.cfg.brewery_link,
            to,
            IqKind::Set,
            payload,
            RoomRequest::BridgeUpdate {
                nick: nick.map(str::to_owned),
                bridge_session,
            },
        );
    }

    /// Expires the conference on its bridge and forgets the bridge session.
    fn expire_bridge_session(&mut self, ctx: &mut Ctx<'_>) {
        let Some(bs) = self.bridge.take() else {
            return;
        };
        for _ in &bs.endpoints {
            ctx.bridges.endpoint_removed(&bs.bridge);
        }
        if !bs.created {
            return;
        }
        info!(room = %self.room, bridge = %bs.bridge, "expiring the conference on the bridge");
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        ctx.io.request(
            ctx.cfg.brewery_link,
            bs.bridge,
            IqKind::Set,
            colibri::expire_conference(&meeting_id),
            ctx.cfg.reply_timeout,
            Pending::Ignore {
                what: "conference expire",
            },
        );
    }

    /// Re-invites `nick` from scratch (session-terminate "moving", then a new session-initiate).
    fn reinvite(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        self.terminate(
            ctx,
            nick,
            Some((ReasonCondition::Success, "moving")),
            true,
            false,
        );
        self.invite(ctx, nick);
    }

    /// The bridge `jid` failed or left: everyone on it moves to another bridge.
    pub fn bridge_failed(&mut self, ctx: &mut Ctx<'_>, jid: &str, why: &str) {
        if self.bridge.as_ref().is_none_or(|b| b.bridge != jid) {
            return;
        }
        // The session is gone with the bridge: no expire requests to it.
        ctx.counters.bridges_removed += 1;
        self.restart_session(ctx, why, false, true);
    }

    /// Drops the conference's bridge session and invites everybody again from scratch (session-terminate
    /// "moving", then a new allocation, on whichever bridge selection picks). `expire_old` first expires
    /// the old conference on its bridge (when that bridge is fine but the session is not).
    fn restart_session(&mut self, ctx: &mut Ctx<'_>, why: &str, expire_old: bool, moved: bool) {
        let Some(old) = self.bridge.take() else {
            return;
        };
        for _ in &old.endpoints {
            ctx.bridges.endpoint_removed(&old.bridge);
        }
        if expire_old {
            let meeting_id = self.meeting_id.clone().unwrap_or_default();
            ctx.io.request(
                ctx.cfg.brewery_link,
                old.bridge.clone(),
                IqKind::Set,
                colibri::expire_conference(&meeting_id),
                ctx.cfg.reply_timeout,
                Pending::Ignore {
                    what: "stale conference expire",
                },
            );
        }
        let movers: Vec<String> = self.participants.keys().cloned().collect();
        info!(room = %self.room, bridge = %old.bridge, why, count = movers.len(), "re-inviting everybody");
        if moved {
            ctx.counters.participants_moved += movers.len() as u64;
        }
        for n in &movers {
            // Everyone is re-invited, so nobody needs a source-remove.
            self.terminate(
                ctx,
                n,
                Some((ReasonCondition::Success, "moving")),
                false,
                false,
            );
        }
        for n in &movers {
            self.invite(ctx, n);
        }
    }

    // ---- source signalling ------------------------------------------------------------------------

    /// The remote sources `nick`'s session is told about: the bridge's feedback sources (owner `jvb`),
    /// plus everybody else's unless the bridge rewrites SSRCs for it — then the bridge announces
    /// the sources it forwards itself (Jicofo `ParticipantInviteRunnable.updateOffer`).
    fn remote_sources(&self, nick: &str, rewriting: bool) -> ConferenceSourceMap {
        let mut remote = if rewriting {
            ConferenceSourceMap::new()
        } else {
            self.sources.without(nick)
        };
        if let Some(bs) = self.bridge.as_ref() {
            remote.add(&bs.feedback);
        }
        remote
    }

    fn signal_to_others(
        &mut self,
        ctx: &mut Ctx<'_>,
        owner: &str,
        op: SourceOp,
        sources: &EndpointSources,
    ) {
        if sources.is_empty() {
            return;
        }
        let map = ConferenceSourceMap::single(owner, sources.clone());
        let others: Vec<String> = self
            .participants
            .keys()
            .filter(|n| n.as_str() != owner)
            .cloned()
            .collect();
        for n in others {
            self.signal(ctx, &n, op, map.clone());
        }
    }

    /// Tells `nick` about a source change now, or when its session becomes active.
    fn signal(&mut self, ctx: &mut Ctx<'_>, nick: &str, op: SourceOp, map: ConferenceSourceMap) {
        let Some(session) = self
            .participants
            .get_mut(nick)
            .and_then(|p| p.session.as_mut())
        else {
            // Not invited yet: its session-initiate will carry the current sources.
            return;
        };
        if session.rewriting {
            // The bridge tells it (VideoSourcesMap / AudioSourcesMap).
            return;
        }
        if !session.active {
            if session.resync {
                return;
            }
            if session.queued.len() >= MAX_QUEUED_SOURCE_CHANGES {
                // A client that never accepts must not grow the queue without bound.
                debug!(room = %self.room, %nick, "source queue full; will send the difference at activation");
                session.queued.clear();
                session.resync = true;
                return;
            }
            session.queued.push((op, map));
            return;
        }
        let (sid, json) = (session.sid.clone(), session.json);
        self.send_sources(ctx, nick, &sid, json, op, map);
    }

    fn send_sources(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        sid: &str,
        json: bool,
        op: SourceOp,
        map: ConferenceSourceMap,
    ) {
        let map = if ctx.cfg.conference.strip_simulcast {
            map.stripped_simulcast()
        } else {
            map
        };
        if map.is_empty() {
            return;
        }
        let action = match op {
            SourceOp::Add => Action::SourceAdd,
            SourceOp::Remove => Action::SourceRemove,
        };
        let mut j = Jingle::new(action.clone(), sid);
        j.set_sources(
            &map,
            if json {
                SourceEncoding::Json
            } else {
                SourceEncoding::Xml
            },
        );
        debug!(room = %self.room, %nick, %action, "signalling sources");
        self.send_jingle(
            ctx,
            nick,
            &j,
            RoomRequest::Jingle {
                nick: nick.to_owned(),
                action: match op {
                    SourceOp::Add => "source-add",
                    SourceOp::Remove => "source-remove",
                },
            },
        );
    }

    /// Sends what was queued while `nick`'s session was pending.
    fn flush(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        let Some(session) = self
            .participants
            .get_mut(nick)
            .and_then(|p| p.session.as_mut())
        else {
            return;
        };
        let mut queued = std::mem::take(&mut session.queued);
        let (sid, json, rewriting) = (session.sid.clone(), session.json, session.rewriting);
        if std::mem::take(&mut session.resync) {
            let initial = std::mem::take(&mut session.initial);
            let current = self.remote_sources(nick, rewriting);
            let diff = initial.diff(&current);
            queued = vec![
                (SourceOp::Remove, diff.removed),
                (SourceOp::Add, diff.added),
            ];
        }
        for (op, map) in queued {
            self.send_sources(ctx, nick, &sid, json, op, map);
        }
    }

    /// Sends `nick`'s transport and/or complete source set to the bridge.
    fn update_bridge(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        transport: Option<&signaling::ice_udp::IceUdpTransport>,
        sources: bool,
        initial_last_n: Option<u32>,
    ) {
        let Some(bs) = self.bridge.as_ref() else {
            return;
        };
        if !bs.endpoints.contains(nick) {
            return;
        }
        let empty = EndpointSources::default();
        let all = sources.then(|| self.sources.get(nick).unwrap_or(&empty));
        let stats_id = self.members.get(nick).and_then(|m| m.stats_id.as_deref());
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        let payload = colibri::update(&meeting_id, nick, stats_id, transport, all, initial_last_n);
        self.send_to_bridge(ctx, Some(nick), payload);
    }

    // ---- Jingle from clients ----------------------------------------------------------------------

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

    fn handle_jingle(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        req: &IqRequest,
    ) -> Result<(), StanzaError> {
        let jingle = Jingle::from_element(&req.payload).map_err(bad_request)?;
        let Some(p) = self.participants.get(nick) else {
            return Err(unknown_session("not a participant of this conference"));
        };
        let Some(session) = p.session.as_ref().filter(|s| s.sid == jingle.sid) else {
            if p.ended_sids.contains(&jingle.sid) {
                return Err(StanzaError::new(Condition::Gone, "session ended"));
            }
            return Err(unknown_session("no such session"));
        };
        let bridge_session = session.bridge_session.clone();
        debug!(room = %self.room, %nick, action = %jingle.action, "jingle");
        match &jingle.action {
            Action::SessionAccept => self.on_session_accept(ctx, nick, &jingle),
            Action::TransportInfo => {
                let transport = jingle
                    .transport()
                    .ok_or_else(|| bad_request("transport-info without a transport"))?;
                self.update_bridge(ctx, nick, Some(transport), false, None);
                Ok(())
            }
            Action::SourceAdd => self.on_source_add(ctx, nick, &jingle),
            Action::SourceRemove => self.on_source_remove(ctx, nick, &jingle),
            Action::SessionTerminate => {
                self.on_session_terminate(ctx, nick, &jingle, &bridge_session)
            }
            Action::SessionInfo => self.on_session_info(ctx, nick, &jingle, &bridge_session),
            Action::SessionInitiate => Err(bad_request("the focus initiates sessions")),
            Action::Other(a) => Err(StanzaError::new(
                Condition::FeatureNotImplemented,
                format!("unsupported action '{a}'"),
            )),
        }
    }

    /// Reads the sources a participant signalled, enforcing that it owns them.
    fn own_sources(nick: &str, jingle: &Jingle) -> Result<EndpointSources, StanzaError> {
        let map = ConferenceSourceMap::from_jingle(jingle, Some(nick)).map_err(bad_request)?;
        check_owner(nick, map).map_err(bad_request)
    }

    fn limits(ctx: &Ctx<'_>) -> SourceLimits {
        SourceLimits {
            max_ssrcs: ctx.cfg.conference.max_ssrcs_per_user,
            max_groups: ctx.cfg.conference.max_ssrc_groups_per_user,
        }
    }

    fn on_session_accept(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        jingle: &Jingle,
    ) -> Result<(), StanzaError> {
        let checked = (|| {
            let sources = Self::own_sources(nick, jingle)?;
            let transport = jingle
                .transport()
                .cloned()
                .ok_or_else(|| bad_request("session-accept without a transport"))?;
            if transport.ufrag.is_none() || transport.pwd.is_none() {
                return Err(bad_request(
                    "session-accept transport without ICE ufrag/pwd",
                ));
            }
            if transport.fingerprints.is_empty() {
                return Err(bad_request(
                    "session-accept transport without a DTLS fingerprint",
                ));
            }
            let accepted = if sources.is_empty() {
                EndpointSources::default()
            } else {
                self.check_senders(ctx, nick, &sources)?;
                self.sources
                    .try_add(nick, &sources, &Self::limits(ctx))
                    .map_err(bad_request)?
            };
            Ok((transport, accepted))
        })();
        let (transport, accepted) = match checked {
            Ok(v) => v,
            Err(e) => {
                // As Jicofo: a refused session-accept ends the session.
                if let Some(p) = self.participants.get_mut(nick)
                    && let Some(s) = p.session.take()
                {
                    p.ended_sids.push_back(s.sid);
                    p.epoch += 1;
                }
                return Err(e);
            }
        };
        if let Some(s) = self
            .participants
            .get_mut(nick)
            .and_then(|p| p.session.as_mut())
        {
            s.active = true;
        }
        info!(room = %self.room, %nick, ssrcs = accepted.ssrc_count(), "session accepted");
        // Jicofo reads it from the video content only (`Participant.onSessionOrTransportAccept`).
        let initial_last_n = jingle.content("video").and_then(|c| c.initial_last_n);
        self.update_bridge(ctx, nick, Some(&transport), true, initial_last_n);
        // A screen share added or removed changes what a video mute must drop.
        self.sync_force_mute(ctx, nick);
        self.signal_to_others(ctx, nick, SourceOp::Add, &accepted);
        self.flush(ctx, nick);
        Ok(())
    }

    /// Refuses a new audio/video sender beyond the configured maximum.
    fn check_senders(
        &self,
        ctx: &Ctx<'_>,
        nick: &str,
        sources: &EndpointSources,
    ) -> Result<(), StanzaError> {
        let senders = |media: MediaType| {
            self.sources
                .iter()
                .filter(|(o, s)| {
                    *o != nick && s.media(media).is_some_and(|m| !m.sources.is_empty())
                })
                .count()
        };
        let c = &ctx.cfg.conference;
        if !sources.audio.sources.is_empty() && senders(MediaType::Audio) >= c.max_audio_senders {
            return Err(StanzaError::new(
                Condition::ResourceConstraint,
                "audio sender limit reached",
            ));
        }
        if !sources.video.sources.is_empty() && senders(MediaType::Video) >= c.max_video_senders {
            return Err(StanzaError::new(
                Condition::ResourceConstraint,
                "video sender limit reached",
            ));
        }
        Ok(())
    }

    fn on_source_add(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        jingle: &Jingle,
    ) -> Result<(), StanzaError> {
        let sources = Self::own_sources(nick, jingle)?;
        if sources.is_empty() {
            return Ok(());
        }
        self.check_senders(ctx, nick, &sources)?;
        let accepted = self
            .sources
            .try_add(nick, &sources, &Self::limits(ctx))
            .map_err(bad_request)?;
        info!(room = %self.room, %nick, ssrcs = accepted.ssrc_count(), "source-add");
        self.update_bridge(ctx, nick, None, true, None);
        // A screen share added or removed changes what a video mute must drop.
        self.sync_force_mute(ctx, nick);
        self.signal_to_others(ctx, nick, SourceOp::Add, &accepted);
        Ok(())
    }

    fn on_source_remove(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        jingle: &Jingle,
    ) -> Result<(), StanzaError> {
        let sources = Self::own_sources(nick, jingle)?;
        if sources.is_empty() {
            return Ok(());
        }
        let removed = self
            .sources
            .try_remove(nick, &sources)
            .map_err(bad_request)?;
        info!(room = %self.room, %nick, ssrcs = removed.ssrc_count(), "source-remove");
        self.update_bridge(ctx, nick, None, true, None);
        // A screen share added or removed changes what a video mute must drop.
        self.sync_force_mute(ctx, nick);
        self.signal_to_others(ctx, nick, SourceOp::Remove, &removed);
        Ok(())
    }

    /// Jicofo's restart rate limit over the requests accepted before (`accepted`, which it updates):
    /// at least `restart-min-interval` apart, at most `restart-max-requests` per `restart-interval`.
    fn accept_restart(ctx: &Ctx<'_>, accepted: &mut VecDeque<Instant>) -> bool {
        let c = &ctx.cfg.conference;
        let now = ctx.now;
        while accepted
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= c.restart_interval)
        {
            accepted.pop_front();
        }
        let spaced = accepted
            .back()
            .is_none_or(|t| now.saturating_duration_since(*t) >= c.restart_min_interval);
        if spaced && (accepted.len() as u32) < c.restart_max_requests {
            accepted.push_back(now);
            true
        } else {
            false
        }
    }

    fn on_session_terminate(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        jingle: &Jingle,
        bridge_session: &str,
    ) -> Result<(), StanzaError> {
        if let Some(bs) = &jingle.bridge_session
            && bs.id != bridge_session
        {
            return Err(StanzaError::new(
                Condition::ItemNotFound,
                format!("{} is not the current bridge session", bs.id),
            ));
        }
        let restart = jingle.bridge_session.as_ref().is_some_and(|b| b.restart);
        let reinvite = restart
            && match self.participants.get_mut(nick) {
                Some(p) => Self::accept_restart(ctx, &mut p.restarts),
                None => false,
            };
        if restart {
            ctx.counters.participants_requested_restart += 1;
        }
        info!(room = %self.room, %nick, restart, reinvite, "session-terminate from the client");
        self.terminate(ctx, nick, None, true, !reinvite);
        if reinvite {
            self.invite(ctx, nick);
        }
        if restart && !reinvite {
            return Err(StanzaError::new(
                Condition::ResourceConstraint,
                "rate-limited",
            ));
        }
        Ok(())
    }

    fn on_session_info(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        jingle: &Jingle,
        bridge_session: &str,
    ) -> Result<(), StanzaError> {
        if let Some(bs) = jingle.bridge_session.as_ref().filter(|b| b.ice_restart) {
            return self.on_ice_restart_request(ctx, nick, &bs.id, bridge_session);
        }
        let Some(state) = jingle.ice_state.as_deref() else {
            return Ok(());
        };
        if !state.eq_ignore_ascii_case("failed") {
            debug!(room = %self.room, %nick, state, "ignoring ice-state");
            return Ok(());
        }
        ctx.counters.participants_ice_failed += 1;
        let current = jingle
            .bridge_session
            .as_ref()
            .is_none_or(|b| b.id == bridge_session);
        if current {
            info!(room = %self.room, %nick, "ICE failed, re-inviting");
            self.reinvite(ctx, nick);
        }
        Ok(())
    }

    // ---- in-place ICE restart ---------------------------------------------------------------------

    /// A client asks for an in-place ICE restart (session-info with `<bridge-session id
    /// ice-restart="true">`, the current lib-jitsi-meet with `enableIceRestart`). As Jicofo
    /// (`Participant.onIceRestartRequest`, `JitsiMeetConferenceImpl.iceRestart`): refused with
    /// `feature-not-implemented` when disabled, `resource-constraint` when rate limited (a budget apart
    /// from session restarts), `item-not-found` for another bridge session; otherwise the bridge is
    /// asked for a restart and its answer is handled in [`Self::on_ice_restart_answer`].
    fn on_ice_restart_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        requested: &str,
        bridge_session: &str,
    ) -> Result<(), StanzaError> {
        ctx.counters.ice_restarts_requested += 1;
        let refused = |ctx: &mut Ctx<'_>, condition, text: String| {
            ctx.counters.ice_restarts_failed += 1;
            Err(StanzaError::new(condition, text))
        };
        if !ctx.cfg.conference.enable_ice_restart {
            return refused(
                ctx,
                Condition::FeatureNotImplemented,
                "in-place ICE restart is disabled".into(),
            );
        }
        let Some(p) = self.participants.get_mut(nick) else {
            return Err(unknown_session("not a participant of this conference"));
        };
        if !Self::accept_restart(ctx, &mut p.ice_restarts) {
            return refused(ctx, Condition::ResourceConstraint, "rate-limited".into());
        }
        let Some(sid) = p.session.as_ref().map(|s| s.sid.clone()) else {
            return Err(unknown_session("no session"));
        };
        let on_bridge = self
            .bridge
            .as_ref()
            .is_some_and(|b| b.id == requested && b.endpoints.contains(nick));
        if requested != bridge_session || !on_bridge {
            return refused(
                ctx,
                Condition::ItemNotFound,
                format!("{requested} is not a currently active session"),
            );
        }
        info!(room = %self.room, %nick, bridge_session = %requested, "ICE restart requested");
        let stats_id = self.members.get(nick).and_then(|m| m.stats_id.clone());
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        let payload = colibri::ice_restart(&meeting_id, nick, stats_id.as_deref());
        let to = self
            .bridge
            .as_ref()
            .map(|b| b.bridge.clone())
            .unwrap_or_default();
        self.request(
            ctx,
            ctx.cfg.brewery_link,
            to,
            IqKind::Set,
            payload,
            RoomRequest::IceRestart {
                nick: nick.to_owned(),
                sid,
                bridge_session: requested.to_owned(),
            },
        );
        Ok(())
    }

    /// The bridge's answer to an ICE restart (Jicofo `Colibri2Session.restartIce`,
    /// `ColibriV2SessionManager.endpointIceRestarted`): no transport → the participant is re-invited;
    /// a transport without `ice-generation` → nothing to do; a generation not above the last relayed
    /// one → dropped (answers may arrive out of order); else a `transport-info` with the bridge's new
    /// transport in one `audio` content goes to the client, which answers with its own
    /// generation-tagged transport-info (relayed to the bridge as any transport-info).
    fn on_ice_restart_answer(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        sid: &str,
        bridge_session: &str,
        result: Result<Option<Element>, RequestFailure>,
    ) -> Option<(String, String)> {
        let element = match result {
            Ok(el) => el,
            Err(e) => {
                ctx.counters.ice_restarts_failed += 1;
                return self.on_bridge_error(ctx, Some(nick.to_owned()), bridge_session, e);
            }
        };
        let current_bridge = self.bridge.as_ref().is_some_and(|b| b.id == bridge_session);
        let session = self
            .participants
            .get(nick)
            .and_then(|p| p.session.as_ref())
            .filter(|s| s.sid == sid);
        let (Some(session), true) = (session, current_bridge) else {
            debug!(room = %self.room, %nick, "ICE restart answer for a session that is gone");
            ctx.counters.ice_restarts_failed += 1;
            return None;
        };
        let answer = match element {
            Some(el) => colibri::parse_ice_restart(&el, nick).unwrap_or_else(|e| {
                warn!(room = %self.room, %nick, error = %e, "unusable ICE restart answer");
                ctx.counters.colibri_failures += 1;
                colibri::IceRestartAnswer::Declined
            }),
            None => colibri::IceRestartAnswer::Declined,
        };
        let mut transport = match answer {
            colibri::IceRestartAnswer::Declined => {
                ctx.counters.ice_restarts_failed += 1;
                info!(room = %self.room, %nick, "the bridge did not restart ICE; re-inviting");
                self.reinvite(ctx, nick);
                return None;
            }
            colibri::IceRestartAnswer::NotNeeded => {
                ctx.counters.ice_restarts_not_needed += 1;
                debug!(room = %self.room, %nick, "the bridge kept its transport (ICE not connected yet)");
                return None;
            }
            colibri::IceRestartAnswer::Restarted(t) => t,
        };
        let generation = transport.ice_generation.unwrap_or_default();
        if session.ice_generation.is_some_and(|g| generation <= g) {
            ctx.counters.ice_restarts_failed += 1;
            info!(room = %self.room, %nick, generation, "stale ICE restart answer dropped");
            return None;
        }
        transport.rtcp_mux = true;
        if session.sctp {
            transport.web_sockets.clear();
        }
        let mut j = Jingle::new(Action::TransportInfo, sid);
        j.initiator = Some(ctx.cfg.focus_full_jid.clone());
        j.contents = vec![Content {
            creator: Some(Creator::Initiator),
            transport: Some(transport),
            ..Content::named("audio")
        }];
        if let Some(s) = self
            .participants
            .get_mut(nick)
            .and_then(|p| p.session.as_mut())
        {
            s.ice_generation = Some(generation);
        }
        ctx.counters.ice_restarts_relayed += 1;
        info!(room = %self.room, %nick, generation, "relaying the bridge's restarted transport");
        self.send_jingle(
            ctx,
            nick,
            &j,
            RoomRequest::Jingle {
                nick: nick.to_owned(),
                action: "transport-info",
            },
        );
        None
    }

    // ---- moderation: mute, A/V moderation, owners, Jibri and Jigasi requests ----------------------

    /// `Some(has moderator rights)` for a member, `None` for anyone else.
    fn moderator(&self, nick: &str) -> Option<bool> {
        self.members.get(nick).map(Member::is_moderator)
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

    /// `muter` asks to (un)mute someone (see [`moderation`]).
    fn on_mute(&mut self, ctx: &mut Ctx<'_>, muter: &str, req: &MuteIq) -> Result<(), StanzaError> {
        let (Some(jid), Some(mute)) = (req.jid.as_deref(), req.mute) else {
            return Err(bad_request("a mute request needs a jid and true/false"));
        };
        let target = jid
            .parse::<jid::Jid>()
            .ok()
            .filter(|j| j.to_bare() == self.room)
            .and_then(|j| j.resource().map(|r| r.to_string()));
        let participant = |n: &str| {
            self.participants
                .contains_key(n)
                .then(|| self.moderator(n).unwrap_or(false))
        };
        let self_request = target.as_deref() == Some(muter);
        let av_allows_unmute = target.as_deref().is_none_or(|t| {
            self.av_moderation
                .allows_unmute(&self.occupant(t), req.media)
        });
        let check = MuteCheck {
            muter: participant(muter),
            target: target.as_deref().and_then(participant),
            self_request,
            mute,
            av_allows_unmute,
        };
        let refused = |condition, why: &str| {
            info!(room = %self.room, %muter, %jid, media = req.media.as_str(), mute, why, "mute request refused");
            StanzaError::new(condition, why)
        };
        match moderation::check_mute(check) {
            Ok(()) => {}
            Err(MuteRefusal::NotAllowed(why)) => return Err(refused(Condition::NotAllowed, why)),
            Err(MuteRefusal::Error(why)) => {
                return Err(refused(Condition::InternalServerError, why));
            }
        }
        let Some(target) = target else {
            return Err(refused(Condition::InternalServerError, "no target"));
        };
        info!(room = %self.room, %muter, %target, media = req.media.as_str(), mute, "mute");
        self.set_muted(ctx, &target, req.media, mute);
        if !self_request {
            self.tell_muted(ctx, &target, req.media, Some(self.occupant(muter)));
        }
        Ok(())
    }

    /// Tells `nick` it was muted (the IQ lib-jitsi-meet mutes its local track on).
    fn tell_muted(&self, ctx: &mut Ctx<'_>, nick: &str, media: MuteMedia, actor: Option<String>) {
        let notice = MuteIq {
            media,
            jid: None,
            mute: Some(true),
            actor,
        };
        // The client does not answer it.
        ctx.io.request(
            Link::Client,
            self.occupant(nick),
            IqKind::Set,
            notice.to_element(),
            ctx.cfg.reply_timeout,
            Pending::Ignore {
                what: "mute notice",
            },
        );
    }

    fn set_muted(&mut self, ctx: &mut Ctx<'_>, nick: &str, media: MuteMedia, muted: bool) {
        if let Some(p) = self.participants.get_mut(nick) {
            p.muted.set(media, muted);
        }
        self.sync_force_mute(ctx, nick);
    }

    /// What the bridge must drop of `nick`'s media now: its mute state, given its video sources.
    fn wanted_force_mute(&self, nick: &str) -> ForceMute {
        let Some(p) = self.participants.get(nick) else {
            return ForceMute::default();
        };
        let videos = self.sources.get(nick).map(|s| s.video.sources.as_slice());
        let is_desktop = |s: &&signaling::sources::Source| {
            matches!(
                s.video_type,
                Some(VideoType::Desktop | VideoType::DesktopHighFps)
            )
        };
        let has_desktop = videos.is_some_and(|v| v.iter().any(|s| is_desktop(&s)));
        let has_camera = videos.is_some_and(|v| v.iter().any(|s| !is_desktop(&s)));
        p.muted.force_mute(has_camera, has_desktop)
    }

    /// Tells the bridge when what it must drop of `nick`'s media changed (an endpoint not allocated yet
    /// gets it with its allocation).
    fn sync_force_mute(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        let wanted = self.wanted_force_mute(nick);
        if !self
            .bridge
            .as_ref()
            .is_some_and(|b| b.endpoints.contains(nick))
        {
            return;
        }
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        if p.force_mute == wanted {
            return;
        }
        p.force_mute = wanted;
        debug!(room = %self.room, %nick, audio = wanted.audio, video = wanted.video, "bridge force-mute");
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        let payload = colibri::force_mute(&meeting_id, nick, wanted);
        self.send_to_bridge(ctx, Some(nick), payload);
    }

    /// A/V moderation changed (from the `av_moderation` component): enabling it mutes everyone but the
    /// moderator who enabled it (Jicofo's `muteAllParticipants`).
    pub fn on_av_moderation(&mut self, ctx: &mut Ctx<'_>, msg: &AvModerationMessage) {
        for (media, list) in msg.whitelists.iter().flatten() {
            self.av_moderation.set_whitelist(*media, list.clone());
        }
        let (Some(enabled), Some(media)) = (msg.enabled, msg.media_type) else {
            return;
        };
        let was = self.av_moderation.enabled(media);
        self.av_moderation.set_enabled(media, enabled);
        info!(room = %self.room, media = media.as_str(), enabled, actor = ?msg.actor, "A/V moderation");
        if !enabled || was {
            return;
        }
        // Video moderation covers the screen share too.
        let kinds: &[MuteMedia] = match media {
            MuteMedia::Audio => &[MuteMedia::Audio],
            _ => &[MuteMedia::Video, MuteMedia::Desktop],
        };
        let actor_nick = msg
            .actor
            .as_deref()
            .and_then(|a| a.strip_prefix(&format!("{}/", self.room)))
            .map(str::to_owned);
        let targets: Vec<String> = self
            .participants
            .keys()
            .filter(|n| Some(n.as_str()) != actor_nick.as_deref())
            .cloned()
            .collect();
        for n in &targets {
            for k in kinds {
                if let Some(p) = self.participants.get_mut(n) {
                    p.muted.set(*k, true);
                }
            }
            self.sync_force_mute(ctx, n);
            self.tell_muted(ctx, n, media, None);
        }
    }

    /// Secure domain: makes every member whose real JID is authenticated an owner (Jicofo's
    /// `AuthenticationRoleManager`).
    pub fn grant_authenticated_owners(&mut self, ctx: &mut Ctx<'_>) {
        if !self.is_joined() {
            return;
        }
        let grants: Vec<(String, String)> = self
            .members
            .iter()
            .filter(|(n, m)| {
                m.affiliation.as_deref() != Some("owner") && !self.granted_owners.contains(*n)
            })
            .filter_map(|(n, m)| {
                let jid = m.real_jid.as_deref()?;
                ctx.auth.identity(jid)?;
                Some((n.clone(), jid.to_owned()))
            })
            .collect();
        for (nick, jid) in grants {
            info!(room = %self.room, %nick, identity = ?ctx.auth.identity(&jid), "granting ownership to an authenticated member");
            self.granted_owners.insert(nick);
            self.grant_owner(ctx, &jid);
        }
    }

    // ---- answers to our requests ------------------------------------------------------------------

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

    /// A COLIBRI2 request about `nick` (or nobody in particular) failed (Jicofo
    /// `Colibri2Session.sendRequest`): the conference is restarted when the bridge lost it, the
    /// participant re-invited when the bridge lost its endpoint, a missing answer ignored; anything
    /// else marks the bridge failed (returned with the reason).
    fn on_bridge_error(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: Option<String>,
        bridge_session: &str,
        e: RequestFailure,
    ) -> Option<(String, String)> {
        let current = self
            .bridge
            .as_ref()
            .filter(|b| b.id == bridge_session)
            .map(|b| b.bridge.clone())?;
        ctx.counters.colibri_failures += 1;
        match (e.colibri2_reason(), &e) {
            (Some(Colibri2Reason::ConferenceNotFound), _) => {
                // The bridge expired the conference on its own: start a new one.
                warn!(room = %self.room, bridge = %current, "the bridge lost the conference");
                self.restart_session(ctx, "conference expired on the bridge", false, false);
                None
            }
            (Some(Colibri2Reason::UnknownEndpoint), _) => {
                let ep = e.colibri2_endpoint().or(nick);
                if let Some(ep) = ep.filter(|n| self.participants.contains_key(n)) {
                    warn!(room = %self.room, nick = %ep, "bridge lost the endpoint, re-inviting");
                    self.reinvite(ctx, &ep);
                }
                None
            }
            (_, RequestFailure::Timeout) | (_, RequestFailure::NotConnected) => {
                // Jicofo ignores timed-out updates.
                warn!(room = %self.room, error = %e, "bridge update not answered");
                None
            }
            _ => Some((current, format!("COLIBRI2 update failed: {e}"))),
        }
    }

    fn on_allocated(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        epoch: u64,
        bridge_session: &str,
        result: Result<Option<Element>, RequestFailure>,
    ) -> Option<(String, String)> {
        let current_bridge = self
            .bridge
            .as_ref()
            .filter(|b| b.id == bridge_session)
            .map(|b| b.bridge.clone());
        let still_wanted = self
            .participants
            .get(nick)
            .is_some_and(|p| p.epoch == epoch && matches!(p.stage, Stage::Allocating { .. }));
        let Some(bridge) = current_bridge else {
            // The bridge session is gone (moved or expired): nothing to do.
            return None;
        };
        if !still_wanted {
            if result.is_ok() && !self.participants.contains_key(nick) {
                // Left while we allocated (release_endpoint already ran).
                debug!(room = %self.room, %nick, "allocation for a participant that left");
            }
            return None;
        }
        let allocation = match result {
            Ok(Some(el)) => match colibri::parse_allocation(&el, nick) {
                Ok(a) => a,
                Err(e) => {
                    ctx.counters.colibri_failures += 1;
                    return Some((bridge, format!("unusable allocation answer: {e}")));
                }
            },
            Ok(None) => {
                ctx.counters.colibri_failures += 1;
                return Some((bridge, "empty allocation answer".into()));
            }
            Err(RequestFailure::NotConnected) => {
                // Our connection to the brewery is down, not the bridge's fault.
                warn!(room = %self.room, %nick, "allocation not sent (offline), retrying later");
                self.release_endpoint(ctx, nick);
                self.wait_and_retry(ctx, nick);
                return None;
            }
            Err(e) => {
                ctx.counters.colibri_failures += 1;
                if e.colibri2_reason() == Some(Colibri2Reason::ConferenceAlreadyExists) {
                    // A stale conference with our meeting id (e.g. from before a focus restart): expire
                    // it and start over on the same bridge.
                    warn!(room = %self.room, %bridge, "the bridge already has this conference");
                    self.restart_session(ctx, "stale conference on the bridge", true, false);
                    return None;
                }
                if e.colibri2_reason() == Some(Colibri2Reason::GracefulShutdown) {
                    ctx.bridges.update(
                        &bridge,
                        &super::bridges::BridgeStats {
                            graceful_shutdown: Some(true),
                            ..Default::default()
                        },
                        ctx.now,
                    );
                }
                return Some((bridge, format!("allocation failed: {e}")));
            }
        };
        let Some(Participant {
            stage: Stage::Allocating { offer, features },
            ..
        }) = self.participants.get(nick).cloned()
        else {
            return None;
        };
        self.initiate(ctx, nick, allocation, offer, features);
        None
    }
}
