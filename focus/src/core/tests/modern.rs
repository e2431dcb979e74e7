//! What the current lib-jitsi-meet expects of the focus, driven through the core: the codecs it may
//! use (`visitor-codecs`), SSRC rewriting (no other endpoint's sources in Jingle), mid demux,
//! `initial-last-n`, the in-place ICE restart, and source names / video types / owners / msids relayed
//! unchanged, screen share as a second video source. Mixed with 2021 clients in one conference.

use super::*;
use crate::core::offer::VideoCodecKind;
use signaling::sources::VideoType;

const A: &str = "aaaa1111";
const B: &str = "bbbb2222";
const C: &str = "cccc3333";
const D: &str = "dddd4444";

/// What the current client advertises beyond the 2021 one (lib-jitsi-meet `xmpp.ts`), with SSRC
/// rewriting and mid demux switched on (`flags.ssrcRewritingEnabled`, `flags.rtpMidDemuxEnabled`).
const MODERN_FEATURES: &[&str] = &[
    "http://jitsi.org/source-name",
    "http://jitsi.org/receive-multiple-video-streams",
    "http://jitsi.org/visitors-1",
    "http://jitsi.org/ssrc-rewriting-1",
    "http://jitsi.org/rtp-mid-demux",
];

/// A member whose client advertises `extra` features on top of the 2021 client's.
fn join_with(h: &mut Harness, nick: &str, extra: &[&str]) {
    h.join_member_with(ROOM, nick, extra);
}

/// Answers pending disco#info requests with each member's own features.
fn answer_discos_with(h: &mut Harness, features: &[(&str, &[&str])]) {
    for d in h.requests(|r| r.payload.is("query", muc::NS_DISCO_INFO)) {
        let nick = d.to.rsplit('/').next().unwrap_or_default();
        let extra = features
            .iter()
            .find(|(n, _)| *n == nick)
            .map_or(&[][..], |(_, f)| *f);
        h.respond(d.id, Ok(Some(client_disco_with(extra))));
    }
}

/// A room of `members` (nick, extra features) whose features are known; returns the COLIBRI2
/// allocations, taken out of the outputs before the bridge answered them.
fn members_allocated(
    members: &[(&str, &[&str])],
    tweak: impl FnOnce(&mut CoreConfig),
) -> (Harness, Vec<Req>) {
    // SSRC rewriting on: the default, as Jicofo's (core/mod.rs).
    let mut h = Harness::with(tweak);
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    for (n, f) in members {
        join_with(&mut h, n, f);
    }
    answer_discos_with(&mut h, members);
    let allocs = h.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2));
    (h, allocs)
}

/// A conference of `members` (nick, extra features), every session initiated (not accepted).
fn conference_of(
    members: &[(&str, &[&str])],
    tweak: impl FnOnce(&mut CoreConfig),
) -> (Harness, Vec<(String, Jingle)>) {
    let (mut h, allocs) = members_allocated(members, tweak);
    h.put_back(allocs);
    h.answer_allocations();
    let inits = h.session_initiates();
    assert_eq!(inits.len(), members.len());
    (h, inits)
}

/// The current client's session-accept: named sources with `videoType`, msid, a 3-layer simulcast
/// camera with RTX, and `initial-last-n` in the video content when `last_n` is set.
fn modern_accept(nick: &str, sid: &str, base: u32, last_n: Option<u32>) -> String {
    let (a, v) = (base, base + 10);
    let last_n = last_n
        .map(|n| format!(r#"<initial-last-n xmlns="jitsi:colibri2" value="{n}"/>"#))
        .unwrap_or_default();
    let msid_v = format!("{nick}-video-0-1 track-v-{nick}-1");
    let video: String = (0..6)
        .map(|i| {
            format!(
                r#"<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{}" name="{nick}-v0" videoType="camera"><parameter name="msid" value="{msid_v}"/></source>"#,
                v + i
            )
        })
        .collect();
    format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" initiator="{FOCUS}" responder="{ROOM}/{nick}" sid="{sid}">
  <content creator="responder" name="audio" senders="both">
    <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">
      <payload-type id="111" name="opus" clockrate="48000" channels="2"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{a}" name="{nick}-a0"><parameter name="msid" value="{nick}-audio-0-1 track-a-{nick}-1"/></source>
    </description>
    <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cu{nick}" pwd="clientpwdclientpwd12345">
      <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint>
    </transport>
  </content>
  <content creator="responder" name="video" senders="both">{last_n}
    <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">
      <payload-type id="41" name="AV1" clockrate="90000"/>
      {video}
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="SIM"><source ssrc="{v0}"/><source ssrc="{v1}"/><source ssrc="{v2}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v0}"/><source ssrc="{r0}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v1}"/><source ssrc="{r1}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v2}"/><source ssrc="{r2}"/></ssrc-group>
    </description>
    <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cu{nick}" pwd="clientpwdclientpwd12345">
      <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint>
    </transport>
  </content>
  <group xmlns="urn:xmpp:jingle:apps:grouping:0" semantics="BUNDLE"><content name="audio"/><content name="video"/></group>
</jingle>"#,
        v0 = v,
        v1 = v + 1,
        v2 = v + 2,
        r0 = v + 3,
        r1 = v + 4,
        r2 = v + 5,
    )
}

/// The current client's screen share: a second video source `<nick>-v1`, desktop, with RTX.
fn screen_share(nick: &str, sid: &str, action: &str, ssrc: u32) -> String {
    let msid = format!("{nick}-video-1-1 track-d-{nick}-1");
    format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="{action}" sid="{sid}"><content name="video"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">
        <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{ssrc}" name="{nick}-v1" videoType="desktop"><parameter name="msid" value="{msid}"/></source>
        <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{rtx}" name="{nick}-v1" videoType="desktop"><parameter name="msid" value="{msid}"/></source>
        <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{ssrc}"/><source ssrc="{rtx}"/></ssrc-group>
        </description></content></jingle>"#,
        rtx = ssrc + 1
    )
}

/// Accepts `nick`'s session like the current client; the bridge update and source-adds it caused
/// are left pending.
fn accept(h: &mut Harness, inits: &[(String, Jingle)], nick: &str, base: u32) {
    let sid = sid_of(inits, nick);
    let r = h.jingle_from(ROOM, nick, &modern_accept(nick, &sid, base, None));
    assert!(r.is_ok(), "{r:?}");
}

/// The capabilities of the endpoint in a COLIBRI2 request.
fn capabilities(payload: &Element) -> Vec<String> {
    payload
        .get_child("endpoint", ns::COLIBRI2)
        .map(|e| {
            e.children()
                .filter(|c| c.is("capability", ns::COLIBRI2))
                .filter_map(|c| c.attr("name").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The focus's presence when it joins `ROOM` (sent before anyone is in the room).
fn join_presence(tweak: impl FnOnce(&mut CoreConfig)) -> Element {
    let mut h = Harness::with(tweak);
    h.iq(
        Link::Component,
        "u1@meet.example/abc",
        IqKind::Set,
        &format!(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM}"/>"#),
    );
    h.take()
        .into_iter()
        .find_map(|o| match o {
            Output::Presence { presence, .. }
                if presence.attr("to") == Some(&format!("{ROOM}/focus")) =>
            {
                Some(presence)
            }
            _ => None,
        })
        .expect("join presence")
}

fn conference_property(presence: &Element, key: &str) -> Option<String> {
    presence
        .get_child("conference-properties", ns::FOCUS)?
        .children()
        .find(|p| p.attr("key") == Some(key))
        .and_then(|p| p.attr("value"))
        .map(str::to_owned)
}

// ---- codecs ----------------------------------------------------------------------------------------

#[test]
fn the_focus_presence_tells_clients_which_video_codecs_the_offer_has() {
    // Defaults: everything, in the offer's order — the client keeps its own preference (AV1 first).
    let p = join_presence(|_| {});
    assert_eq!(
        conference_property(&p, "visitor-codecs").as_deref(),
        Some("av1,vp8,h264,vp9")
    );
    assert_eq!(
        conference_property(&p, "support-terminate-restart").as_deref(),
        Some("true")
    );
    // ENABLE_CODEC_AV1=0 ENABLE_CODEC_VP9=0: the client must not configure its sender for AV1.
    let p = join_presence(|c| {
        c.codecs.av1.enabled = false;
        c.codecs.vp9.enabled = false;
    });
    assert_eq!(
        conference_property(&p, "visitor-codecs").as_deref(),
        Some("vp8,h264")
    );
    // A bridge that forwards only VP8.
    let p = join_presence(|c| c.codecs.bridge_video_codecs = [VideoCodecKind::Vp8].into());
    assert_eq!(
        conference_property(&p, "visitor-codecs").as_deref(),
        Some("vp8")
    );
}

#[test]
fn the_offer_and_the_allocation_carry_exactly_the_advertised_codecs() {
    // ENABLE_CODEC_AV1=0 ENABLE_CODEC_H264=0.
    let tweak = |c: &mut CoreConfig| {
        c.codecs.av1.enabled = false;
        c.codecs.h264.enabled = false;
    };
    // The COLIBRI2 allocations, read before they are answered.
    let (mut h, allocs) = members_allocated(&[(A, MODERN_FEATURES), (B, &[])], tweak);
    let bridge_video: Vec<(String, Vec<(u8, String)>)> = allocs
        .iter()
        .map(|r| {
            let req = signaling::colibri2::ConferenceModify::from_element(&r.payload).unwrap();
            let ep = &req.endpoints[0];
            let video = ep
                .media
                .iter()
                .find(|m| m.media_type == signaling::rtp_description::MediaType::Video)
                .expect("video media");
            let pts = video
                .rtp
                .payload_types
                .iter()
                .map(|p| (p.id, p.name.clone()))
                .collect();
            (ep.id.clone(), pts)
        })
        .collect();
    assert_eq!(bridge_video.len(), 2);
    h.put_back(allocs);
    h.answer_allocations();
    let inits = h.session_initiates();
    assert_eq!(inits.len(), 2);
    for (nick, j) in &inits {
        let v = &j
            .content("video")
            .unwrap()
            .description
            .as_ref()
            .unwrap()
            .rtp;
        let offered: Vec<(u8, String)> = v
            .payload_types
            .iter()
            .map(|p| (p.id, p.name.clone()))
            .collect();
        assert_eq!(
            offered,
            [
                (100, "VP8".to_owned()),
                (101, "VP9".to_owned()),
                (96, "rtx".to_owned()),
                (97, "rtx".to_owned())
            ]
        );
        // VP9 (as every codec) with FIR, NACK and PLI: receivers can ask for its keyframes.
        let vp9 = &v.payload_types[1];
        for (t, sub) in [("ccm", Some("fir")), ("nack", None), ("nack", Some("pli"))] {
            assert!(vp9.has_rtcp_fb(t, sub), "VP9 {t} {sub:?}");
        }
        // The AV1 dependency descriptor stays negotiated (Jicofo offers it whatever the codecs).
        assert_eq!(
            v.hdrext_id(signaling::rtp_description::hdrext::AV1_DEPENDENCY_DESCRIPTOR),
            Some(11)
        );
        // The bridge was given the same payload types for this endpoint.
        let given = bridge_video
            .iter()
            .find(|(ep, _)| ep == nick)
            .map(|(_, p)| p)
            .expect("allocation for the participant");
        assert_eq!(given, &offered, "{nick}");
    }
    // And the clients were told these codecs, so the current client configures its sender for one
    // of them.
    assert_eq!(
        conference_property(&join_presence(tweak), "visitor-codecs").as_deref(),
        Some("vp8,vp9")
    );
}

// ---- SSRC rewriting --------------------------------------------------------------------------------

#[test]
fn ssrc_rewriting_clients_get_only_the_bridges_sources_in_a_mixed_conference() {
    // A: current client with SSRC rewriting; B: the 2021 client.
    let (mut h, allocs) = members_allocated(&[(A, MODERN_FEATURES), (B, &[])], |_| {});
    let caps_of = |nick: &str| {
        allocs
            .iter()
            .find(|r| {
                r.payload
                    .get_child("endpoint", ns::COLIBRI2)
                    .and_then(|e| e.attr("id"))
                    == Some(nick)
            })
            .map(|r| capabilities(&r.payload))
            .unwrap()
    };
    assert_eq!(caps_of(A), ["source-names", "ssrc-rewriting"]);
    assert_eq!(caps_of(B), ["source-names"]);
    h.put_back(allocs);
    h.answer_allocations();
    let inits = h.session_initiates();
    accept(&mut h, &inits, A, 1000);
    accept(&mut h, &inits, B, 2000);
    // The bridge learns both endpoints' sources.
    assert_eq!(h.bridge_updates().len(), 2);
    // B hears of A's sources; A (rewriting) hears of nobody's: the bridge's source maps tell it.
    let adds = h.jingles("source-add");
    assert_eq!(
        adds.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        [B]
    );
    assert!(sources_of(&adds[0].1).get(A).is_some());

    // C, another rewriting client, joins late: its offer has only the bridge's feedback sources
    // (owner jvb, jvb-a0 / jvb-v0), though A and B send.
    join_with(&mut h, C, MODERN_FEATURES);
    answer_discos_with(&mut h, &[(C, MODERN_FEATURES)]);
    h.answer_allocations();
    let c_init = h.session_initiates();
    let m = sources_of(&c_init[0].1);
    assert_eq!(m.owners().collect::<Vec<_>>(), [JVB_OWNER]);
    let jvb = m.get(JVB_OWNER).unwrap();
    assert_eq!(jvb.audio.sources[0].name.as_deref(), Some("jvb-a0"));
    assert_eq!(jvb.video.sources[0].name.as_deref(), Some("jvb-v0"));
    // A late 2021 client D gets everybody.
    join_with(&mut h, D, &[]);
    answer_discos_with(&mut h, &[(D, &[])]);
    h.answer_allocations();
    let d_init = h.session_initiates();
    assert_eq!(
        sources_of(&d_init[0].1).owners().collect::<Vec<_>>(),
        [A, B, JVB_OWNER]
    );

    // C accepts and shares its screen: only B and D (non-rewriting) are told, never A.
    accept(&mut h, &c_init, C, 3000);
    let c_sid = c_init[0].1.sid.clone();
    assert!(
        h.jingle_from(ROOM, C, &screen_share(C, &c_sid, "source-add", 3900))
            .is_ok()
    );
    let d_sid = d_init[0].1.sid.clone();
    accept(&mut h, &[(D.into(), d_init[0].1.clone())], D, 4000);
    h.bridge_updates();
    let adds = h.jingles("source-add");
    let mut told: Vec<&str> = adds.iter().map(|(n, _)| n.as_str()).collect();
    told.sort();
    told.dedup();
    assert_eq!(told, [B, D], "{adds:?}");
    // Removing the share: a source-remove for B and D only.
    assert!(
        h.jingle_from(ROOM, C, &screen_share(C, &c_sid, "source-remove", 3900))
            .is_ok()
    );
    let removes = h.jingles("source-remove");
    let mut told: Vec<&str> = removes.iter().map(|(n, _)| n.as_str()).collect();
    told.sort();
    assert_eq!(told, [B, D]);
    // A re-invitation (here after an ICE failure) keeps A on the bridge's sources only.
    let a_sid = sid_of(&inits, A);
    let failed = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-info" sid="{a_sid}"><ice-state xmlns="http://jitsi.org/protocol/focus">failed</ice-state></jingle>"#
    );
    assert!(h.jingle_from(ROOM, A, &failed).is_ok());
    h.answer_allocations();
    let again = h.session_initiates();
    assert_eq!(again.len(), 1);
    assert_eq!(
        sources_of(&again[0].1).owners().collect::<Vec<_>>(),
        [JVB_OWNER]
    );
    assert_ne!(d_sid, again[0].1.sid);
    let debug = h.focus.debug();
    let flag = |n: &str| {
        debug[0]
            .participants
            .iter()
            .find(|p| p.id == n)
            .map(|p| p.ssrc_rewriting)
    };
    assert_eq!(
        (flag(A), flag(B), flag(C)),
        (Some(true), Some(false), Some(true))
    );
}

#[test]
fn ssrc_rewriting_off_in_the_focus_signals_sources_as_before() {
    let (mut h, inits) = conference_of(&[(A, MODERN_FEATURES), (B, &[])], |c| {
        c.conference.use_ssrc_rewriting = false;
    });
    accept(&mut h, &inits, B, 2000);
    let updates = h.bridge_updates();
    assert_eq!(updates.len(), 1);
    accept(&mut h, &inits, A, 1000);
    h.bridge_updates();
    let adds = h.jingles("source-add");
    let mut told: Vec<&str> = adds.iter().map(|(n, _)| n.as_str()).collect();
    told.sort();
    assert_eq!(
        told,
        [A, B],
        "A gets B's sources (queued until it accepted)"
    );
}

#[test]
fn mid_demux_is_asked_for_only_with_rewriting_the_feature_and_the_mid_extension() {
    let alloc_caps = |features: &'static [&'static str], mid: bool, demux: bool| {
        let (_, allocs) = members_allocated(&[(A, features)], |c| {
            c.codecs.extensions.mid.enabled = mid;
            c.conference.use_rtp_mid_demux = demux;
            c.conference.min_participants = 1;
        });
        capabilities(&allocs[0].payload)
    };
    // JICOFO_ENABLE_MID=1 and a client with both flags.
    assert_eq!(
        alloc_caps(MODERN_FEATURES, true, true),
        ["source-names", "ssrc-rewriting", "rtp-mid-demux"]
    );
    // docker's default (mid off): no mid demux, as Jicofo.
    assert_eq!(
        alloc_caps(MODERN_FEATURES, false, true),
        ["source-names", "ssrc-rewriting"]
    );
    // use-rtp-mid-demux = false.
    assert_eq!(
        alloc_caps(MODERN_FEATURES, true, false),
        ["source-names", "ssrc-rewriting"]
    );
    // Mid demux without SSRC rewriting means nothing.
    assert_eq!(
        alloc_caps(&["http://jitsi.org/rtp-mid-demux"], true, true),
        ["source-names"]
    );
}

// ---- initial-last-n ----------------------------------------------------------------------------------

#[test]
fn initial_last_n_from_the_video_content_goes_to_the_bridge() {
    let (mut h, inits) = conference_of(&[(A, MODERN_FEATURES), (B, &[])], |_| {});
    let sid = sid_of(&inits, A);
    assert!(
        h.jingle_from(ROOM, A, &modern_accept(A, &sid, 1000, Some(5)))
            .is_ok()
    );
    let updates = h.bridge_updates();
    assert_eq!(updates.len(), 1);
    let ep = updates[0].1.get_child("endpoint", ns::COLIBRI2).unwrap();
    let n = ep
        .get_child("initial-last-n", ns::COLIBRI2)
        .expect("relayed");
    assert_eq!(n.attr("value"), Some("5"));
    // Together with the transport and the sources of that session-accept.
    assert!(ep.has_child("transport", ns::COLIBRI2));
    assert!(ep.has_child("sources", ns::COLIBRI2));
    // Without it (the 2021 client, or channelLastN < 0) nothing is sent.
    let sid = sid_of(&inits, B);
    assert!(
        h.jingle_from(ROOM, B, &session_accept(B, &sid, 2000))
            .is_ok()
    );
    let updates = h.bridge_updates();
    let ep = updates[0].1.get_child("endpoint", ns::COLIBRI2).unwrap();
    assert!(ep.get_child("initial-last-n", ns::COLIBRI2).is_none());
}

// ---- source names, video types, owners -------------------------------------------------------------

#[test]
fn names_video_types_owners_and_msids_are_relayed_unchanged_in_xml_and_json() {
    // B reads JSON sources; C does not (no json-encoded-sources), so it gets XML.
    let mut h = Harness::with(|c| {
        c.conference.min_participants = 3;
        c.conference.use_ssrc_rewriting = true;
    });
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    join_with(&mut h, A, MODERN_FEATURES);
    join_with(&mut h, B, &["http://jitsi.org/source-name"]);
    join_with(&mut h, C, &[]);
    for d in h.requests(|r| r.payload.is("query", muc::NS_DISCO_INFO)) {
        let nick = d.to.rsplit('/').next().unwrap().to_owned();
        let disco = if nick == C {
            el(r#"<query xmlns="http://jabber.org/protocol/disco#info">
              <feature var="urn:xmpp:jingle:apps:rtp:audio"/><feature var="urn:xmpp:jingle:apps:rtp:video"/>
              <feature var="urn:xmpp:jingle:transports:dtls-sctp:1"/><feature var="http://jitsi.org/source-name"/></query>"#)
        } else if nick == B {
            client_disco_with(&["http://jitsi.org/source-name"])
        } else {
            client_disco_with(MODERN_FEATURES)
        };
        h.respond(d.id, Ok(Some(disco)));
    }
    h.answer_allocations();
    let inits = h.session_initiates();
    let sid_c = sid_of(&inits, C);
    let c_accept = modern_accept(C, &sid_c, 3000, None);
    assert!(h.jingle_from(ROOM, C, &c_accept).is_ok());
    accept(&mut h, &inits, B, 2000);
    h.bridge_updates();
    h.jingles("source-add");
    // A's camera (-v0) and its screen share (-v1).
    accept(&mut h, &inits, A, 1000);
    let sid_a = sid_of(&inits, A);
    assert!(
        h.jingle_from(ROOM, A, &screen_share(A, &sid_a, "source-add", 1900))
            .is_ok()
    );
    // The bridge gets a media-source per source name, the share as `A-v1`.
    let updates = h.bridge_updates();
    let last = &updates.last().unwrap().1;
    let srcs = last
        .get_child("endpoint", ns::COLIBRI2)
        .and_then(|e| e.get_child("sources", ns::COLIBRI2))
        .unwrap();
    let ids: Vec<&str> = srcs.children().filter_map(|m| m.attr("id")).collect();
    assert_eq!(
        ids,
        [format!("{A}-a0"), format!("{A}-v0"), format!("{A}-v1")]
    );
    // Each with its sources' videoType, as Jicofo writes them (JVB sorts a desktop source apart).
    let video_types = |id: &str| -> Vec<Option<&str>> {
        srcs.children()
            .find(|m| m.attr("id") == Some(id))
            .unwrap()
            .children()
            .filter(|s| s.is("source", ns::JINGLE_SSMA))
            .map(|s| s.attr("videoType"))
            .collect()
    };
    assert_eq!(video_types(&format!("{A}-v0")), [Some("camera"); 6]);
    assert_eq!(video_types(&format!("{A}-v1")), [Some("desktop"); 2]);
    assert_eq!(video_types(&format!("{A}-a0")), [None]);

    let adds = h.jingles("source-add");
    let check = |m: &ConferenceSourceMap, with_camera_type: bool| {
        let a = m.get(A).expect("A's sources");
        let audio = &a.audio.sources[0];
        assert_eq!(audio.name.as_deref(), Some("aaaa1111-a0"));
        assert_eq!(audio.msid(), Some("aaaa1111-audio-0-1 track-a-aaaa1111-1"));
        let by_name = |n: &str| {
            a.video
                .sources
                .iter()
                .filter(|s| s.name.as_deref() == Some(n))
                .collect::<Vec<_>>()
        };
        let cam = by_name("aaaa1111-v0");
        // Simulcast stripped: the first layer and its RTX.
        assert_eq!(cam.len(), 2);
        assert_eq!(cam[0].msid(), Some("aaaa1111-video-0-1 track-v-aaaa1111-1"));
        let expected_cam = with_camera_type.then_some(VideoType::Camera);
        assert!(cam.iter().all(|s| s.video_type == expected_cam), "{cam:?}");
        let share = by_name("aaaa1111-v1");
        assert_eq!(share.len(), 2);
        assert!(
            share
                .iter()
                .all(|s| s.video_type == Some(VideoType::Desktop))
        );
        assert_eq!(
            share[0].msid(),
            Some("aaaa1111-video-1-1 track-d-aaaa1111-1")
        );
    };
    // The session-accept's sources and the share arrive in two source-adds; check their sum.
    for to in [B, C] {
        let mine: Vec<&Jingle> = adds
            .iter()
            .filter(|(n, _)| n == to)
            .map(|(_, j)| j)
            .collect();
        assert_eq!(mine.len(), 2, "{to}: {adds:?}");
        let mut m = ConferenceSourceMap::new();
        for j in &mine {
            m.add(&sources_of(j));
        }
        if to == B {
            // JSON: `n` names, `v` desktop only (a camera reads back without a type), owner key.
            let share = mine[1].json_message.as_deref().expect("json");
            assert!(share.contains(r#"{"sources":{"aaaa1111":"#), "{share}");
            assert!(share.contains(r#""n":"aaaa1111-v1""#), "{share}");
            assert!(share.contains(r#""v":"d""#), "{share}");
            check(&m, false);
        } else {
            // XML: videoType on every video source, ssrc-info owner on every source.
            for j in &mine {
                assert!(j.json_message.is_none());
                for c in &j.contents {
                    for s in &c.description.as_ref().unwrap().sources {
                        assert_eq!(s.owner.as_deref(), Some(A));
                    }
                }
            }
            check(&m, true);
        }
    }
    assert!(adds.iter().all(|(n, _)| n != A));

    // A late joiner (XML) gets both of A's video sources with their names and types in its offer.
    join_with(&mut h, D, &[]);
    for d in h.requests(|r| r.payload.is("query", muc::NS_DISCO_INFO)) {
        h.respond(
            d.id,
            Ok(Some(el(r#"<query xmlns="http://jabber.org/protocol/disco#info">
              <feature var="urn:xmpp:jingle:apps:rtp:audio"/><feature var="urn:xmpp:jingle:apps:rtp:video"/></query>"#))),
        );
    }
    h.answer_allocations();
    let d = h.session_initiates();
    check(&sources_of(&d[0].1), true);
}

// ---- in-place ICE restart --------------------------------------------------------------------------

fn ice_restart_info(sid: &str, bridge_session: &str) -> String {
    format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-info" initiator="{FOCUS}" sid="{sid}"><bridge-session xmlns="http://jitsi.org/protocol/focus" ice-restart="true" id="{bridge_session}"/></jingle>"#
    )
}

/// The COLIBRI2 ICE restart request for an endpoint, taken from the outputs.
fn ice_restart_request(h: &mut Harness) -> Req {
    h.one_request("ICE restart", |r| {
        r.payload.is("conference-modify", ns::COLIBRI2)
            && r.payload
                .get_child("endpoint", ns::COLIBRI2)
                .and_then(|e| e.get_child("transport", ns::COLIBRI2))
                .is_some_and(|t| t.attr("ice-restart") == Some("true"))
    })
}

/// A bridge answer for endpoint `ep` with `transport` (inner ICE-UDP element, or nothing).
fn restart_answer(ep: &str, transport: &str) -> Element {
    el(&format!(
        r#"<conference-modified xmlns="jitsi:colibri2" meeting-id="m"><endpoint id="{ep}">{transport}</endpoint></conference-modified>"#
    ))
}

fn new_transport(generation: Option<u32>) -> String {
    let generation = generation
        .map(|g| format!(r#" ice-generation="{g}""#))
        .unwrap_or_default();
    format!(
        r#"<transport><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="newufrag" pwd="newbridgepwdnewbridgepwd"{generation}><rtcp-mux/>
          <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="actpass">AB:CD:EF</fingerprint>
          <candidate component="1" foundation="1" generation="0" id="c9" ip="127.0.0.1" network="0" port="10999" priority="2130706431" protocol="udp" type="host"/>
          <web-socket xmlns="http://jitsi.org/protocol/colibri" url="wss://x/colibri-ws/a/b/c?pwd=1"/>
        </transport></transport>"#
    )
}

/// A conference of A (current client, restart-capable) and B, both accepted.
fn restartable(tweak: impl FnOnce(&mut CoreConfig)) -> (Harness, String, String) {
    let (mut h, inits) = conference_of(&[(A, MODERN_FEATURES), (B, &[])], tweak);
    accept(&mut h, &inits, A, 1000);
    accept(&mut h, &inits, B, 2000);
    h.bridge_updates();
    h.jingles("source-add");
    let sid = sid_of(&inits, A);
    let bs = inits[0].1.bridge_session.as_ref().unwrap().id.clone();
    (h, sid, bs)
}

#[test]
fn ice_restart_relays_the_bridges_new_transport_and_the_clients_answer() {
    let (mut h, sid, bs) = restartable(|_| {});
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let req = ice_restart_request(&mut h);
    let ep = req.payload.get_child("endpoint", ns::COLIBRI2).unwrap();
    assert_eq!(ep.attr("id"), Some(A));
    assert_eq!(ep.attr("stats-id"), Some("stats-aaaa1111"));
    let t = ep.get_child("transport", ns::COLIBRI2).unwrap();
    assert!(t.children().next().is_none(), "only the flag");
    h.respond(req.id, Ok(Some(restart_answer(A, &new_transport(Some(1))))));
    // A transport-info with one `audio` content carrying the bridge's new transport, tagged.
    let infos = h.jingles("transport-info");
    assert_eq!(infos.len(), 1);
    let (to, j) = &infos[0];
    assert_eq!(to, A);
    assert_eq!(j.sid, sid);
    assert_eq!(j.contents.len(), 1);
    assert_eq!(j.contents[0].name, "audio");
    let t = j.contents[0].transport.as_ref().unwrap();
    assert_eq!(t.ice_generation, Some(1));
    assert_eq!(t.ufrag.as_deref(), Some("newufrag"));
    assert_eq!(t.candidates.len(), 1);
    assert!(t.web_sockets.is_empty(), "SCTP session: no colibri-ws URL");
    assert_eq!(t.fingerprints.len(), 1);
    // No re-invitation.
    assert!(h.jingles("session-terminate").is_empty());
    assert!(h.session_initiates().is_empty());
    // The client answers with its own new credentials, tagged with the same generation: an
    // ordinary transport update for the bridge, the generation kept.
    let answer = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" initiator="{FOCUS}" sid="{sid}">
          <content creator="initiator" name="audio"><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cnew" pwd="clientnewpwdclientnewpwd" ice-generation="1">
            <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint></transport></content>
          <content creator="initiator" name="video"><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cnew" pwd="clientnewpwdclientnewpwd" ice-generation="1">
            <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint></transport></content></jingle>"#
    );
    assert!(h.jingle_from(ROOM, A, &answer).is_ok());
    let updates = h.bridge_updates();
    assert_eq!(updates.len(), 1);
    let ice = updates[0]
        .1
        .get_child("endpoint", ns::COLIBRI2)
        .and_then(|e| e.get_child("transport", ns::COLIBRI2))
        .and_then(|t| t.get_child("transport", ns::JINGLE_ICE_UDP))
        .unwrap();
    assert_eq!(ice.attr("ice-generation"), Some("1"));
    assert_eq!(ice.attr("ufrag"), Some("cnew"));

    // A second restart after the rate limit's spacing: generation 2 relayed; a late duplicate of
    // generation 1 (answers may come out of order) is dropped.
    h.advance(Duration::from_secs(6));
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let r2 = ice_restart_request(&mut h);
    h.advance(Duration::from_secs(6));
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let r3 = ice_restart_request(&mut h);
    h.respond(r3.id, Ok(Some(restart_answer(A, &new_transport(Some(3))))));
    h.respond(r2.id, Ok(Some(restart_answer(A, &new_transport(Some(2))))));
    let infos = h.jingles("transport-info");
    assert_eq!(infos.len(), 1, "generation 2 came after 3: stale");
    assert_eq!(
        infos[0].1.contents[0]
            .transport
            .as_ref()
            .unwrap()
            .ice_generation,
        Some(3)
    );
    let s = h.focus.stats(h.now);
    assert_eq!(
        (
            s.total_ice_restarts_requested,
            s.total_ice_restarts_relayed,
            s.total_ice_restarts_failed
        ),
        (3, 2, 1)
    );
}

#[test]
fn ice_restart_the_bridge_declines_falls_back_to_a_reinvite() {
    let (mut h, sid, bs) = restartable(|_| {});
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let req = ice_restart_request(&mut h);
    // A bridge that cannot restart (JVB and ours when the transport has failed): the endpoint,
    // no transport.
    h.respond(req.id, Ok(Some(restart_answer(A, ""))));
    let terms = h.jingles("session-terminate");
    assert_eq!(terms.len(), 1);
    assert_eq!(terms[0].0, A);
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 1);
    let new = h.session_initiates();
    assert_eq!(new.len(), 1);
    assert_ne!(new[0].1.sid, sid);
    assert!(h.jingles("transport-info").is_empty());
    assert_eq!(h.focus.stats(h.now).total_ice_restarts_failed, 1);
}

#[test]
fn ice_restart_not_needed_sends_nothing() {
    let (mut h, sid, bs) = restartable(|_| {});
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let req = ice_restart_request(&mut h);
    h.respond(req.id, Ok(Some(restart_answer(A, &new_transport(None)))));
    assert!(h.jingles("transport-info").is_empty());
    assert!(h.jingles("session-terminate").is_empty());
    assert!(h.answer_allocations().is_empty());
    assert_eq!(h.focus.stats(h.now).total_ice_restarts_not_needed, 1);
}

#[test]
fn ice_restart_requests_are_refused_as_jicofo_refuses_them() {
    // Disabled: feature-not-implemented, the client falls back to session-terminate + restart.
    let (mut h, sid, bs) = restartable(|c| c.conference.enable_ice_restart = false);
    let r = h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs));
    assert_eq!(condition(&r), Some(Condition::FeatureNotImplemented));
    assert!(h.bridge_updates().is_empty());

    let (mut h, sid, bs) = restartable(|_| {});
    // Another bridge session: item-not-found.
    let r = h.jingle_from(ROOM, A, &ice_restart_info(&sid, "not-the-session"));
    assert_eq!(condition(&r), Some(Condition::ItemNotFound));
    assert!(h.bridge_updates().is_empty());
    // Within the minimum spacing of an accepted one: resource-constraint.
    h.advance(Duration::from_secs(6));
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let req = ice_restart_request(&mut h);
    let r = h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs));
    assert_eq!(condition(&r), Some(Condition::ResourceConstraint));
    // A full restart (session-terminate) has a budget of its own.
    let terminate = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="{sid}"><reason><success/></reason><bridge-session xmlns="http://jitsi.org/protocol/focus" id="{bs}" restart="true"/></jingle>"#
    );
    assert!(h.jingle_from(ROOM, A, &terminate).is_ok());
    // The answer to the restart of the ended session changes nothing.
    h.respond(req.id, Ok(Some(restart_answer(A, &new_transport(Some(1))))));
    assert!(h.jingles("transport-info").is_empty());
    let s = h.focus.stats(h.now);
    assert_eq!(s.total_ice_restarts_requested, 3);
    assert_eq!(s.total_ice_restarts_failed, 3);
}

#[test]
fn ice_restart_for_an_endpoint_the_bridge_lost_reinvites() {
    let (mut h, sid, bs) = restartable(|_| {});
    assert!(h.jingle_from(ROOM, A, &ice_restart_info(&sid, &bs)).is_ok());
    let req = ice_restart_request(&mut h);
    h.respond(
        req.id,
        Err(RequestFailure::Error(Some(el(&format!(
            r#"<error xmlns="jabber:client" type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><error xmlns="jitsi:colibri2" reason="unknown_endpoint"/><endpoint xmlns="jitsi:colibri2" id="{A}"/></error>"#
        ))))),
    );
    assert_eq!(h.jingles("session-terminate").len(), 1);
    assert_eq!(h.answer_allocations().len(), 1);
    assert_eq!(h.session_initiates().len(), 1);
}
