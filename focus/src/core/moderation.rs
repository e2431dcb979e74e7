//! Moderator mute and A/V moderation, as Jicofo does them (jicofo
//! `jicofo/src/main/kotlin/org/jitsi/jicofo/xmpp/MuteIqHandler.kt`, `xmpp/AvModerationHandler.kt`,
//! `conference/JitsiMeetConferenceImpl.java` `handleMuteRequest`/`muteAllParticipants`):
//!
//! - A client sends `<mute xmlns='http://jitsi.org/jitmeet/{audio,video,desktop}' jid='room@muc/nick'>
//!   true|false</mute>` to the focus's occupant JID. "Mute everyone" in the Jitsi Meet app is one such
//!   request per participant.
//! - Only a moderator may mute someone else; nobody may unmute someone else; a participant may unmute
//!   itself unless A/V moderation forbids it (moderators always may). Refusals are `not-allowed`; an
//!   unknown muter or target `internal-server-error` (Jicofo's `MuteResult.ERROR`).
//! - On success the focus answers `result`, tells a remotely muted target with the same IQ (carrying
//!   `actor`), on which lib-jitsi-meet mutes its local track, and force-mutes the target's media on the
//!   bridge (COLIBRI2 `<force-mute>`), so a modified client cannot keep sending; the client's own
//!   unmute request lifts it (the 2021 Jicofo's behaviour, which the 2021 client relies on).
//! - A/V moderation state comes from the `av_moderation` Prosody component (`json-message` of type
//!   `av_moderation`): enabling it mutes everyone but the moderator who enabled it; its whitelists
//!   (occupant JIDs) say who may unmute.

use std::collections::BTreeMap;

use minidom::Element;
use serde::Deserialize;
use signaling::colibri2::ForceMute;
use signaling::xml::Builder;

pub const NS_AUDIO: &str = "http://jitsi.org/jitmeet/audio";
pub const NS_VIDEO: &str = "http://jitsi.org/jitmeet/video";
pub const NS_DESKTOP: &str = "http://jitsi.org/jitmeet/desktop";

/// What a mute request is about: the microphone, the camera or the screen share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MuteMedia {
    Audio,
    Video,
    Desktop,
}

impl MuteMedia {
    pub const ALL: [MuteMedia; 3] = [MuteMedia::Audio, MuteMedia::Video, MuteMedia::Desktop];

    pub fn ns(self) -> &'static str {
        match self {
            MuteMedia::Audio => NS_AUDIO,
            MuteMedia::Video => NS_VIDEO,
            MuteMedia::Desktop => NS_DESKTOP,
        }
    }

    pub fn from_ns(ns: &str) -> Option<MuteMedia> {
        MuteMedia::ALL.into_iter().find(|m| m.ns() == ns)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MuteMedia::Audio => "audio",
            MuteMedia::Video => "video",
            MuteMedia::Desktop => "desktop",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// `<mute xmlns=… jid=… actor=…>true|false</mute>`. `jid` and the value may be missing in a request
/// (then it is `bad-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuteIq {
    pub media: MuteMedia,
    /// The occupant JID to (un)mute.
    pub jid: Option<String>,
    pub mute: Option<bool>,
    /// Who asked (set by the focus when it tells the target).
    pub actor: Option<String>,
}

impl MuteIq {
    /// Reads a mute element; `None` when `el` is not one.
    pub fn parse(el: &Element) -> Option<MuteIq> {
        if el.name() != "mute" {
            return None;
        }
        let media = MuteMedia::from_ns(&el.ns())?;
        let mute = match el.text().trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        };
        Some(MuteIq {
            media,
            jid: el.attr("jid").filter(|j| !j.is_empty()).map(str::to_owned),
            mute,
            actor: el.attr("actor").map(str::to_owned),
        })
    }

    pub fn to_element(&self) -> Element {
        Builder::new("mute", self.media.ns())
            .opt_attr("jid", self.jid.as_deref())
            .opt_attr("actor", self.actor.as_deref())
            .text(self.mute.map_or("", |m| if m { "true" } else { "false" }))
            .build()
    }
}

/// What the focus has muted of one participant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MuteState([bool; 3]);

impl MuteState {
    pub fn get(&self, m: MuteMedia) -> bool {
        self.0[m.index()]
    }

    pub fn set(&mut self, m: MuteMedia, muted: bool) {
        self.0[m.index()] = muted;
    }

    /// The bridge's force-mute for this state, given which video sources the participant has.
    /// COLIBRI2 only knows audio and video: video is dropped when every kind of video the participant
    /// sends is muted (a camera-only participant whose camera is muted; one sharing its screen only when
    /// both are muted), so muting one does not freeze the other.
    pub fn force_mute(&self, has_camera: bool, has_desktop: bool) -> ForceMute {
        let camera = self.get(MuteMedia::Video);
        let desktop = self.get(MuteMedia::Desktop);
        let some_video_muted = camera || desktop;
        let camera_silent = camera || !has_camera;
        let desktop_silent = desktop || !has_desktop;
        ForceMute {
            audio: self.get(MuteMedia::Audio),
            video: some_video_muted && camera_silent && desktop_silent,
        }
    }
}

/// A room's A/V moderation (Jicofo's `ChatRoomImpl.AvModerationForMediaType`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AvModeration {
    enabled: [bool; 3],
    /// Occupant JIDs allowed to unmute while moderation is on.
    whitelist: [Vec<String>; 3],
}

impl AvModeration {
    pub fn enabled(&self, m: MuteMedia) -> bool {
        self.enabled[m.index()]
    }

    pub fn set_enabled(&mut self, m: MuteMedia, on: bool) {
        self.enabled[m.index()] = on;
    }

    pub fn set_whitelist(&mut self, m: MuteMedia, jids: Vec<String>) {
        self.whitelist[m.index()] = jids;
    }

    /// Whether the occupant `jid` may unmute `m` by itself.
    pub fn allows_unmute(&self, jid: &str, m: MuteMedia) -> bool {
        !self.enabled(m) || self.whitelist[m.index()].iter().any(|j| j == jid)
    }
}

/// The `av_moderation` JSON the Prosody component sends (jitsi-meet
/// `resources/prosody-plugins/mod_av_moderation_component.lua`; Jicofo `AvModerationMessage`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvModerationMessage {
    /// The room's bare JID.
    pub room: Option<String>,
    pub enabled: Option<bool>,
    pub media_type: Option<MuteMedia>,
    /// The occupant JID of the moderator who changed it.
    pub actor: Option<String>,
    pub whitelists: Option<BTreeMap<MuteMedia, Vec<String>>>,
}

impl AvModerationMessage {
    /// Reads the JSON text of a `json-message`; `Ok(None)` for other message types.
    pub fn parse(json: &str) -> Result<Option<AvModerationMessage>, String> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if v.get("type").and_then(|t| t.as_str()) != Some("av_moderation") {
            return Ok(None);
        }
        // Jicofo reads media types case-insensitively.
        let mut v = v;
        lowercase_media_types(&mut v);
        serde_json::from_value(v)
            .map(Some)
            .map_err(|e| e.to_string())
    }
}

fn lowercase_media_types(v: &mut serde_json::Value) {
    if let Some(m) = v.get_mut("mediaType")
        && let Some(s) = m.as_str()
    {
        *m = serde_json::Value::String(s.to_ascii_lowercase());
    }
    if let Some(serde_json::Value::Object(w)) = v.get_mut("whitelists") {
        let entries: Vec<(String, serde_json::Value)> = std::mem::take(w).into_iter().collect();
        for (k, list) in entries {
            w.insert(k.to_ascii_lowercase(), list);
        }
    }
}

/// Why a mute request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuteRefusal {
    /// `not-allowed`.
    NotAllowed(&'static str),
    /// `internal-server-error` (muter or target unknown).
    Error(&'static str),
}

/// The facts a mute request is judged on.
#[derive(Debug, Clone, Copy)]
pub struct MuteCheck {
    /// `Some(is moderator)` when the muter is a participant.
    pub muter: Option<bool>,
    /// `Some(is moderator)` when the target is a participant.
    pub target: Option<bool>,
    /// The muter asks about itself.
    pub self_request: bool,
    pub mute: bool,
    /// A/V moderation lets the target unmute `media`.
    pub av_allows_unmute: bool,
}

/// Jicofo's rules for a mute request (`handleMuteRequest`).
pub fn check_mute(c: MuteCheck) -> Result<(), MuteRefusal> {
    let Some(muter_moderator) = c.muter else {
        return Err(MuteRefusal::Error("muter participant not found"));
    };
    if !c.self_request && !muter_moderator {
        return Err(MuteRefusal::NotAllowed("only moderators may mute others"));
    }
    let Some(target_moderator) = c.target else {
        return Err(MuteRefusal::Error("participant to be muted not found"));
    };
    if !c.mute {
        if !c.self_request {
            return Err(MuteRefusal::NotAllowed("nobody may unmute someone else"));
        }
        if !target_moderator && !c.av_allows_unmute {
            return Err(MuteRefusal::NotAllowed(
                "A/V moderation does not allow unmuting",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        muter: Option<bool>,
        target: Option<bool>,
        self_request: bool,
        mute: bool,
    ) -> MuteCheck {
        MuteCheck {
            muter,
            target,
            self_request,
            mute,
            av_allows_unmute: true,
        }
    }

    #[test]
    fn moderators_mute_others_participants_only_themselves() {
        assert_eq!(
            check_mute(check(Some(true), Some(false), false, true)),
            Ok(())
        );
        assert!(matches!(
            check_mute(check(Some(false), Some(true), false, true)),
            Err(MuteRefusal::NotAllowed(_))
        ));
        assert_eq!(
            check_mute(check(Some(false), Some(false), true, true)),
            Ok(())
        );
        // Nobody unmutes another, not even a moderator.
        assert!(matches!(
            check_mute(check(Some(true), Some(false), false, false)),
            Err(MuteRefusal::NotAllowed(_))
        ));
        assert_eq!(
            check_mute(check(Some(false), Some(false), true, false)),
            Ok(())
        );
        // Unknown muter or target.
        assert!(matches!(
            check_mute(check(None, Some(false), false, true)),
            Err(MuteRefusal::Error(_))
        ));
        assert!(matches!(
            check_mute(check(Some(true), None, false, true)),
            Err(MuteRefusal::Error(_))
        ));
    }

    #[test]
    fn av_moderation_forbids_self_unmute_except_for_moderators_and_the_whitelisted() {
        let mut av = AvModeration::default();
        assert!(av.allows_unmute("r@m/a", MuteMedia::Audio));
        av.set_enabled(MuteMedia::Audio, true);
        assert!(!av.allows_unmute("r@m/a", MuteMedia::Audio));
        assert!(av.allows_unmute("r@m/a", MuteMedia::Video));
        let mut c = check(Some(false), Some(false), true, false);
        c.av_allows_unmute = av.allows_unmute("r@m/a", MuteMedia::Audio);
        assert!(matches!(check_mute(c), Err(MuteRefusal::NotAllowed(_))));
        // A moderator may, moderation or not.
        c.target = Some(true);
        c.muter = Some(true);
        assert_eq!(check_mute(c), Ok(()));
        // Muting oneself is always fine.
        let mut c = check(Some(false), Some(false), true, true);
        c.av_allows_unmute = false;
        assert_eq!(check_mute(c), Ok(()));
        av.set_whitelist(MuteMedia::Audio, vec!["r@m/a".into()]);
        assert!(av.allows_unmute("r@m/a", MuteMedia::Audio));
        assert!(!av.allows_unmute("r@m/b", MuteMedia::Audio));
    }

    #[test]
    fn mute_iqs_of_both_clients_are_read_and_written() {
        let el: Element =
            r#"<mute xmlns="http://jitsi.org/jitmeet/video" jid="r@muc/ab12cd34">true</mute>"#
                .parse()
                .unwrap();
        let m = MuteIq::parse(&el).unwrap();
        assert_eq!(m.media, MuteMedia::Video);
        assert_eq!(m.jid.as_deref(), Some("r@muc/ab12cd34"));
        assert_eq!(m.mute, Some(true));
        let el: Element =
            r#"<mute xmlns="http://jitsi.org/jitmeet/desktop" jid="r@muc/x">false</mute>"#
                .parse()
                .unwrap();
        assert_eq!(MuteIq::parse(&el).unwrap().mute, Some(false));
        let el: Element = r#"<mute xmlns="http://jitsi.org/jitmeet/audio"/>"#.parse().unwrap();
        let m = MuteIq::parse(&el).unwrap();
        assert_eq!((m.jid, m.mute), (None, None));
        let el: Element = r#"<mute xmlns="urn:other"/>"#.parse().unwrap();
        assert!(MuteIq::parse(&el).is_none());

        let out = MuteIq {
            media: MuteMedia::Audio,
            jid: None,
            mute: Some(true),
            actor: Some("r@muc/mod".into()),
        }
        .to_element();
        assert!(out.is("mute", NS_AUDIO));
        assert_eq!(out.attr("actor"), Some("r@muc/mod"));
        assert_eq!(out.text(), "true");
    }

    #[test]
    fn video_is_force_muted_only_when_all_the_video_sent_is_muted() {
        let mut s = MuteState::default();
        assert_eq!(s.force_mute(true, false), ForceMute::default());
        s.set(MuteMedia::Audio, true);
        assert!(s.force_mute(true, false).audio);
        s.set(MuteMedia::Video, true);
        assert!(s.force_mute(true, false).video);
        // Sharing the screen: the camera mute alone does not stop the share.
        assert!(!s.force_mute(true, true).video);
        s.set(MuteMedia::Desktop, true);
        assert!(s.force_mute(true, true).video);
        let mut d = MuteState::default();
        d.set(MuteMedia::Desktop, true);
        assert!(d.force_mute(false, true).video, "a share-only participant");
        assert!(!d.force_mute(true, true).video);
        // The 2021 client has no desktop sources: its one video follows the video mute.
        let mut v = MuteState::default();
        v.set(MuteMedia::Video, true);
        assert!(v.force_mute(false, false).video);
    }

    #[test]
    fn av_moderation_messages_are_read() {
        let m = AvModerationMessage::parse(
            r#"{"type":"av_moderation","enabled":true,"room":"r@muc","actor":"r@muc/mod","mediaType":"AUDIO"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.enabled, Some(true));
        assert_eq!(m.media_type, Some(MuteMedia::Audio));
        assert_eq!(m.actor.as_deref(), Some("r@muc/mod"));
        let m = AvModerationMessage::parse(
            r#"{"type":"av_moderation","room":"r@muc","whitelists":{"audio":["r@muc/a"],"video":[]}}"#,
        )
        .unwrap()
        .unwrap();
        let w = m.whitelists.unwrap();
        assert_eq!(w[&MuteMedia::Audio], vec!["r@muc/a".to_owned()]);
        assert!(
            AvModerationMessage::parse(r#"{"type":"room_metadata"}"#)
                .unwrap()
                .is_none()
        );
        assert!(AvModerationMessage::parse("not json").is_err());
        assert!(
            AvModerationMessage::parse(r#"{"type":"av_moderation","mediaType":"smell"}"#).is_err()
        );
    }
}
