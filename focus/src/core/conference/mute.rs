//! Moderation: mute requests from moderators (audio, video, desktop), A/V moderation messages from
//! the room's component and the COLIBRI2 force-mute the bridge applies to match them (Jicofo
//! `MuteIqHandler`, `AvModerationHandler`).

use signaling::colibri2::ForceMute;
use signaling::sources::VideoType;
use tracing::{debug, info};

use super::{Conference, Member, bad_request};
use crate::core::colibri;
use crate::core::moderation::{
    self, AvModerationMessage, MuteCheck, MuteIq, MuteMedia, MuteRefusal,
};
use crate::core::stanza::{Condition, IqKind, Link, StanzaError};
use crate::core::{Ctx, Pending};

impl Conference {
    /// `Some(has moderator rights)` for a member, `None` for anyone else.
    pub(super) fn moderator(&self, nick: &str) -> Option<bool> {
        self.members.get(nick).map(Member::is_moderator)
    }

    /// `muter` asks to (un)mute someone (see [`crate::core::moderation`]).
    pub(super) fn on_mute(
        &mut self,
        ctx: &mut Ctx<'_>,
        muter: &str,
        req: &MuteIq,
    ) -> Result<(), StanzaError> {
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
    pub(super) fn tell_muted(
        &self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        media: MuteMedia,
        actor: Option<String>,
    ) {
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

    pub(super) fn set_muted(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        media: MuteMedia,
        muted: bool,
    ) {
        if let Some(p) = self.participants.get_mut(nick) {
            p.muted.set(media, muted);
        }
        self.sync_force_mute(ctx, nick);
    }

    /// What the bridge must drop of `nick`'s media now: its mute state, given its video sources.
    pub(super) fn wanted_force_mute(&self, nick: &str) -> ForceMute {
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
    pub(super) fn sync_force_mute(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
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
}
