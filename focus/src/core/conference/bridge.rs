//! The conference's session with its bridge: COLIBRI2 endpoint allocation answers and errors,
//! endpoint updates and expiry, and moving participants to another bridge when one fails
//! (session-terminate "moving" + a fresh invitation), as Jicofo's `Colibri2Session` and
//! `ColibriV2SessionManager` do.

use minidom::Element;
use signaling::colibri2::Reason as Colibri2Reason;
use signaling::jingle::ReasonCondition;
use signaling::source_map::EndpointSources;
use tracing::{debug, info, warn};

use super::{Conference, Participant, Stage};
use crate::core::colibri;
use crate::core::stanza::{IqKind, RequestFailure};
use crate::core::{Ctx, Pending, RoomRequest};

impl Conference {
    /// Expires `nick`'s endpoint on the bridge (the whole conference if it was the last one).
    pub(super) fn release_endpoint(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
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
    pub(super) fn send_to_bridge(&self, ctx: &mut Ctx<'_>, nick: Option<&str>, payload: Element) {
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
    pub(super) fn expire_bridge_session(&mut self, ctx: &mut Ctx<'_>) {
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
    pub(super) fn reinvite(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
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
    pub(super) fn restart_session(
        &mut self,
        ctx: &mut Ctx<'_>,
        why: &str,
        expire_old: bool,
        moved: bool,
    ) {
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

    /// Sends `nick`'s transport and/or complete source set to the bridge.
    pub(super) fn update_bridge(
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

    /// A COLIBRI2 request about `nick` (or nobody in particular) failed (Jicofo
    /// `Colibri2Session.sendRequest`): the conference is restarted when the bridge lost it, the
    /// participant re-invited when the bridge lost its endpoint, a missing answer ignored; anything
    /// else marks the bridge failed (returned with the reason).
    pub(super) fn on_bridge_error(
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

    pub(super) fn on_allocated(
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
                        &crate::core::bridges::BridgeStats {
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
