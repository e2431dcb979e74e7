//! Source signalling between participants: each participant's view of the others' sources (none
//! when the bridge rewrites SSRCs for it), and `source-add` / `source-remove` relayed to the others
//! — sent at once to active sessions, queued (or diffed at activation) for the rest (Jicofo
//! `SourceSignaling`).

use signaling::jingle::{Action, Jingle};
use signaling::source_map::{ConferenceSourceMap, EndpointSources, SourceEncoding};
use tracing::debug;

use super::{Conference, MAX_QUEUED_SOURCE_CHANGES, SourceOp};
use crate::core::{Ctx, RoomRequest};

impl Conference {
    /// The remote sources `nick`'s session is told about: the bridge's feedback sources (owner `jvb`),
    /// plus everybody else's unless the bridge rewrites SSRCs for it — then the bridge announces
    /// the sources it forwards itself (Jicofo `ParticipantInviteRunnable.updateOffer`).
    pub(super) fn remote_sources(&self, nick: &str, rewriting: bool) -> ConferenceSourceMap {
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

    pub(super) fn signal_to_others(
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
    pub(super) fn signal(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        op: SourceOp,
        map: ConferenceSourceMap,
    ) {
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

    pub(super) fn send_sources(
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
    pub(super) fn flush(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
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
}
