//! Jingle sessions with clients: `session-accept`, `source-add` / `source-remove`,
//! `session-terminate` and `session-info` from a participant — validated against the session and
//! the source limits, then reflected to the bridge and the other participants — and the focus's own
//! `session-terminate`.

use signaling::jingle::{Action, Jingle, Reason, ReasonCondition};
use signaling::rtp_description::MediaType;
use signaling::source_map::{ConferenceSourceMap, EndpointSources, SourceLimits, check_owner};
use signaling::xml::XmlElement;
use tracing::{debug, info};

use super::{Conference, ENDED_SIDS, SourceOp, bad_request, unknown_session};
use crate::core::stanza::{Condition, IqRequest, StanzaError};
use crate::core::{Ctx, RoomRequest};

impl Conference {
    /// Ends `nick`'s session: optionally tells the client (`reason`), removes its sources (and tells the
    /// others if `source_remove`), expires its endpoint; removes the participant unless `keep`.
    pub(super) fn terminate(
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

    pub(super) fn handle_jingle(
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
    pub(super) fn own_sources(nick: &str, jingle: &Jingle) -> Result<EndpointSources, StanzaError> {
        let map = ConferenceSourceMap::from_jingle(jingle, Some(nick)).map_err(bad_request)?;
        check_owner(nick, map).map_err(bad_request)
    }

    pub(super) fn limits(ctx: &Ctx<'_>) -> SourceLimits {
        SourceLimits {
            max_ssrcs: ctx.cfg.conference.max_ssrcs_per_user,
            max_groups: ctx.cfg.conference.max_ssrc_groups_per_user,
        }
    }

    pub(super) fn on_session_accept(
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
    pub(super) fn check_senders(
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

    pub(super) fn on_source_add(
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
        self.sources_changed(ctx, nick, SourceOp::Add, &accepted);
        Ok(())
    }

    pub(super) fn on_source_remove(
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
        self.sources_changed(ctx, nick, SourceOp::Remove, &removed);
        Ok(())
    }

    /// What follows a participant's accepted source-add or source-remove: the bridge learns the
    /// new set, a video mute covers a screen share added or removed, the others are told.
    fn sources_changed(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        op: SourceOp,
        changed: &EndpointSources,
    ) {
        self.update_bridge(ctx, nick, None, true, None);
        self.sync_force_mute(ctx, nick);
        self.signal_to_others(ctx, nick, op, changed);
    }

    pub(super) fn on_session_terminate(
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

    pub(super) fn on_session_info(
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
}
