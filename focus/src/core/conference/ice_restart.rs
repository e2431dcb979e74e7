//! In-place ICE restart: a client's `transport-info` restart request (rate-limited like Jicofo's
//! `restart-request` limits) answered with a fresh bridge transport, and the client's answer
//! applied to the bridge.

use std::collections::VecDeque;
use std::time::Instant;

use minidom::Element;
use signaling::jingle::{Action, Content, Creator, Jingle};
use tracing::{debug, info, warn};

use super::{Conference, unknown_session};
use crate::core::colibri;
use crate::core::stanza::{Condition, IqKind, RequestFailure, StanzaError};
use crate::core::{Ctx, RoomRequest};

impl Conference {
    /// Jicofo's restart rate limit over the requests accepted before (`accepted`, which it updates):
    /// at least `restart-min-interval` apart, at most `restart-max-requests` per `restart-interval`.
    pub(super) fn accept_restart(ctx: &Ctx<'_>, accepted: &mut VecDeque<Instant>) -> bool {
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

    /// A client asks for an in-place ICE restart (session-info with `<bridge-session id
    /// ice-restart="true">`, the current lib-jitsi-meet with `enableIceRestart`). As Jicofo
    /// (`Participant.onIceRestartRequest`, `JitsiMeetConferenceImpl.iceRestart`): refused with
    /// `feature-not-implemented` when disabled, `resource-constraint` when rate limited (a budget apart
    /// from session restarts), `item-not-found` for another bridge session; otherwise the bridge is
    /// asked for a restart and its answer is handled in [`Self::on_ice_restart_answer`].
    pub(super) fn on_ice_restart_request(
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
    pub(super) fn on_ice_restart_answer(
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
}
