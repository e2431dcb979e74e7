//! Room membership: occupants' presence (joins, role and status changes, leaves with their
//! confirmation delay), the focus's own presence and the start-muted policy it reads from the room,
//! and room ownership (`ENABLE_AUTO_OWNER`, authenticated owners) — Jicofo's `ChatRoomImpl` member
//! handling and `JitsiMeetConferenceImpl.onMemberJoined/onMemberLeft`.

use signaling::jingle::StartMuted;
use signaling::ns;
use signaling::xml::XmlElement;
use tracing::{debug, info, warn};

use super::{Conference, LEAVE_CONFIRM_DELAY, MEMBER_REJOIN_GRACE, Member, RoomState};
use crate::core::muc::{self, MucPresence};
use crate::core::stanza::{IqKind, Link};
use crate::core::{Ctx, RoomRequest};

impl Conference {
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
    pub(super) fn read_start_muted_policy(&mut self, p: &MucPresence) {
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

    pub(super) fn on_own_presence(&mut self, ctx: &mut Ctx<'_>, p: MucPresence) {
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

    pub(super) fn member_left(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
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
    pub(super) fn ensure_owner(&mut self, ctx: &mut Ctx<'_>) {
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
    pub(super) fn grant_owner(&self, ctx: &mut Ctx<'_>, jid: &str) {
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
}
