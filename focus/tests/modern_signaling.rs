//! What the current lib-jitsi-meet sees of the focus on the wire, with real Prosody and the `focus`
//! binary started with docker-jitsi-meet's codec variables (`ENABLE_CODEC_AV1=0 ENABLE_CODEC_H264=0`):
//! the focus's room presence names the offered codecs (`conference-properties visitor-codecs`), the
//! offer carries exactly those with FIR/NACK/PLI and the AV1 dependency descriptor at id 11, and a
//! client that advertises SSRC rewriting is allocated with it and never sent another endpoint's sources
//! in Jingle, while a 2021 client in the same room still is; its in-place ICE restart goes through
//! COLIBRI2 and comes back as a transport-info with an `ice-generation`. The bridge is
//! `common::standin`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{FocusProcess, TestClient, WAIT, el, start_prosody};
use minidom::Element;
use signaling::jingle::Jingle;
use signaling::ns;
use signaling::rtp_description::hdrext;
use signaling::source_map::{ConferenceSourceMap, JVB_OWNER};
use signaling::sources::VideoType;
use signaling::xml::XmlElement;
use signaling::xmpp::Event;
use testkit::Prosody;

/// What the current client adds with `flags.ssrcRewritingEnabled` (lib-jitsi-meet `xmpp.ts`).
const SSRC_REWRITING: &str = "http://jitsi.org/ssrc-rewriting-1";

/// The features of a client: the load test's participants' (the 2021 client's with source names),
/// without json-encoded-sources so that sources arrive as XML, plus SSRC rewriting when `modern`.
fn features(modern: bool) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = loadtest::session::FEATURES
        .iter()
        .copied()
        .filter(|f| *f != "http://jitsi.org/json-encoded-sources")
        .collect();
    if modern {
        f.push(SSRC_REWRITING);
    }
    f
}

/// What a participant's client saw from the focus.
enum Seen {
    FocusPresence(Element),
    Jingle(Jingle),
}

/// A participant driven by hand: answers the focus's disco#info with its features and acknowledges
/// every Jingle request.
struct Member {
    client: TestClient,
    nick: &'static str,
    features: Vec<&'static str>,
    room: String,
}

impl Member {
    async fn join(
        prosody: &Prosody,
        room: &str,
        user: &str,
        nick: &'static str,
        modern: bool,
    ) -> Member {
        let client = TestClient::connect(prosody, user, &format!("{user}-pw")).await;
        client.enter(prosody, room, nick, Vec::new()).await;
        Member {
            client,
            nick,
            features: features(modern),
            room: room.to_owned(),
        }
    }

    /// The next presence of the focus occupant or Jingle request, answering what needs an answer.
    async fn next(&mut self, deadline: tokio::time::Instant) -> Option<Seen> {
        let focus = format!("{}/focus", self.room);
        loop {
            let ev = match tokio::time::timeout_at(deadline, self.client.events.recv()).await {
                Ok(Some(ev)) => ev,
                Ok(None) => panic!("{}: event stream ended", self.nick),
                Err(_) => return None,
            };
            match ev {
                Event::IqRequest(iq) if iq.is("query", "http://jabber.org/protocol/disco#info") => {
                    let vars: String = self
                        .features
                        .iter()
                        .map(|f| format!(r#"<feature var="{f}"/>"#))
                        .collect();
                    iq.reply_result(Some(el(&format!(
                        r#"<query xmlns="http://jabber.org/protocol/disco#info">{vars}</query>"#
                    ))));
                }
                Event::IqRequest(iq) if iq.is("jingle", ns::JINGLE) => {
                    let j = Jingle::from_element(&iq.payload).expect("the focus's Jingle parses");
                    iq.reply_result(None);
                    return Some(Seen::Jingle(j));
                }
                Event::Presence(p)
                    if p.from.as_ref().map(|f| f.to_string()) == Some(focus.clone()) =>
                {
                    let mut x = Element::bare("x", "urn:test");
                    for e in &p.payloads {
                        x.append_child(e.clone());
                    }
                    return Some(Seen::FocusPresence(x));
                }
                _ => {}
            }
        }
    }

    /// Waits for a Jingle request with `action`, skipping anything else.
    async fn jingle(&mut self, action: &str) -> Jingle {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.next(deadline).await {
                Some(Seen::Jingle(j)) if j.action.to_string() == action => return j,
                Some(_) => {}
                None => panic!("{}: no {action}", self.nick),
            }
        }
    }

    /// Sends the current client's session-accept for `sid`: named audio and camera sources (with
    /// `videoType` and msid) and a DTLS/ICE transport.
    async fn accept(&self, sid: &str, ssrc: u32) {
        let nick = self.nick;
        let source = |media: &str, ssrc: u32, name: &str, video_type: &str| {
            format!(
                r#"<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="{media}"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{ssrc}" name="{name}"{video_type}><parameter name="msid" value="{name}-stream {name}-track"/></source></description>"#
            )
        };
        let transport = format!(
            r#"<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="u{nick}" pwd="clientpwdclientpwd12345"><fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint></transport>"#
        );
        let accept = format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="{sid}" responder="{room}/{nick}"><content creator="initiator" name="audio" senders="both">{audio}{transport}</content><content creator="initiator" name="video" senders="both">{video}{transport}</content></jingle>"#,
            room = self.room,
            audio = source("audio", ssrc, &format!("{nick}-a0"), ""),
            video = source(
                "video",
                ssrc + 1,
                &format!("{nick}-v0"),
                r#" videoType="camera""#
            ),
        );
        self.set_to_focus(&accept)
            .await
            .unwrap_or_else(|e| panic!("{nick}: session-accept refused: {e}"));
    }

    /// Asks for an in-place ICE restart of the session `offer` began (lib-jitsi-meet
    /// `enableIceRestart`): a session-info naming the bridge session with `ice-restart`, which
    /// the focus must accept.
    async fn request_ice_restart(&self, offer: &Jingle) {
        let bridge_session = &offer
            .bridge_session
            .as_ref()
            .expect("bridge-session in the offer")
            .id;
        let info = format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-info" sid="{sid}"><bridge-session xmlns="http://jitsi.org/protocol/focus" id="{bridge_session}" ice-restart="true"/></jingle>"#,
            sid = offer.sid
        );
        self.set_to_focus(&info)
            .await
            .expect("ICE restart accepted");
    }

    /// An IQ set of `payload` to the room's focus occupant.
    async fn set_to_focus(
        &self,
        payload: &str,
    ) -> Result<signaling::xmpp::IqResult, signaling::xmpp::IqError> {
        let focus: signaling::xmpp::Jid = format!("{}/focus", self.room).parse().unwrap();
        self.client
            .handle
            .iq_set(focus, el(payload), Duration::from_secs(10))
            .await
    }
}

/// The focus's `conference-properties` as key → value.
fn conference_properties(presence: &Element) -> BTreeMap<String, String> {
    presence
        .children()
        .filter(|c| c.is("conference-properties", ns::FOCUS))
        .flat_map(|c| c.children())
        .filter_map(|p| Some((p.attr("key")?.to_owned(), p.attr("value")?.to_owned())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codecs_ssrc_rewriting_and_ice_restart_on_the_wire() {
    let prosody = start_prosody();
    let env = [
        ("ENABLE_CODEC_AV1", "0"),
        ("ENABLE_CODEC_H264", "0"),
        // SSRC rewriting: on by default, as Jicofo (focus/src/core/mod.rs).
    ];
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &env));
    let requests = common::standin::join(&prosody).await;
    let room = format!("modern@{}", prosody.muc_domain());
    // alice: the current client with SSRC rewriting; bob: the 2021 client.
    let mut alice = Member::join(&prosody, &room, "alice", "aaaa1111", true).await;
    let mut bob = Member::join(&prosody, &room, "bob", "bbbb2222", false).await;

    // The focus's room presence and alice's offer; bob (pumped alongside, for his disco#info) gets
    // his offer too.
    let deadline = tokio::time::Instant::now() + WAIT;
    let alice_sees = async {
        let (mut presence, mut offer) = (None, None);
        while presence.is_none() || offer.is_none() {
            match alice.next(deadline).await {
                Some(Seen::FocusPresence(p)) => presence = presence.or(Some(p)),
                Some(Seen::Jingle(j)) if j.action.to_string() == "session-initiate" => {
                    offer = Some(j)
                }
                Some(_) => {}
                None => panic!(
                    "alice: presence {} offer {}",
                    presence.is_some(),
                    offer.is_some()
                ),
            }
        }
        (presence, offer)
    };
    let ((presence, offer), bob_offer) = tokio::join!(alice_sees, bob.jingle("session-initiate"));
    let presence = presence.unwrap();
    let properties = conference_properties(&presence);
    assert_eq!(
        properties.get("visitor-codecs").map(String::as_str),
        Some("vp8,vp9"),
        "{presence:?}"
    );
    let offer = offer.unwrap();
    let video = &offer
        .content("video")
        .and_then(|c| c.description.as_ref())
        .expect("video description")
        .rtp;
    let pts: Vec<(u8, &str)> = video
        .payload_types
        .iter()
        .map(|p| (p.id, p.name.as_str()))
        .collect();
    assert_eq!(pts, [(100, "VP8"), (101, "VP9"), (96, "rtx"), (97, "rtx")]);
    for pt in &video.payload_types[..2] {
        for (t, sub) in [("ccm", Some("fir")), ("nack", None), ("nack", Some("pli"))] {
            assert!(pt.has_rtcp_fb(t, sub), "{} {t} {sub:?}", pt.name);
        }
    }
    assert_eq!(video.hdrext_id(hdrext::AV1_DEPENDENCY_DESCRIPTOR), Some(11));
    // alice's offer: the bridge's feedback sources only.
    let m = ConferenceSourceMap::from_jingle(&offer, None).unwrap();
    assert_eq!(m.owners().collect::<Vec<_>>(), [JVB_OWNER]);

    // The bridge was asked to rewrite SSRCs for alice only.
    let allocation = |nick: &str| {
        requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| r.endpoints.iter())
            .find(|e| e.create && e.id == nick)
            .cloned()
            .unwrap_or_else(|| panic!("no allocation for {nick}"))
    };
    assert!(allocation(alice.nick).has_capability("ssrc-rewriting"));
    assert!(!allocation(bob.nick).has_capability("ssrc-rewriting"));
    assert!(allocation(bob.nick).has_capability("source-names"));

    // alice accepts first; bob, accepting later, is told of her sources, names and video type
    // unchanged.
    alice.accept(&offer.sid, 1000).await;
    common::standin::wait_for_request(&requests, "alice's sources", |e| {
        e.id == "aaaa1111" && e.sources.is_some()
    })
    .await;
    bob.accept(&bob_offer.sid, 2000).await;
    let add = bob.jingle("source-add").await;
    let m = ConferenceSourceMap::from_jingle(&add, None).unwrap();
    let a = m.get(alice.nick).expect("alice's sources for bob");
    assert_eq!(a.video.sources[0].name.as_deref(), Some("aaaa1111-v0"));
    assert_eq!(a.video.sources[0].video_type, Some(VideoType::Camera));
    assert_eq!(a.audio.sources[0].name.as_deref(), Some("aaaa1111-a0"));
    // bob's accept went to the bridge in the same step as that source-add: a source-add for alice
    // would have been sent then too. She gets none (the bridge's source maps tell her).
    common::standin::wait_for_request(&requests, "bob's sources", |e| {
        e.id == "bbbb2222" && e.sources.is_some()
    })
    .await;
    let quiet = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Some(seen) = alice.next(quiet).await {
        if let Seen::Jingle(j) = seen {
            panic!("alice was sent a {} ({j:?})", j.action);
        }
    }

    // In-place ICE restart (lib-jitsi-meet `enableIceRestart`): alice's session-info goes to the
    // bridge as a COLIBRI2 ICE restart; the bridge's new transport comes back to her in a
    // transport-info with its ice-generation.
    alice.request_ice_restart(&offer).await;
    let restart = alice.jingle("transport-info").await;
    let t = restart
        .content("audio")
        .and_then(|c| c.transport.as_ref())
        .expect("the bridge's transport");
    let generation = t.ice_generation.expect("ice-generation");
    assert!(generation >= 1);
    assert!(t.ufrag.as_deref().is_some_and(|u| u.starts_with("standin")));
    assert!(
        requests.lock().unwrap().iter().any(|r| r
            .endpoints
            .iter()
            .any(|e| e.id == "aaaa1111" && e.transport.as_ref().is_some_and(|t| t.ice_restart))),
        "no COLIBRI2 ICE restart"
    );
    assert_eq!(focus.stats()["participants"], 2);
}

/// The in-place ICE restart against our real bridge (not the stand-in), before the client's ICE
/// connected (the hand-driven clients here have no media transport): the focus's COLIBRI2
/// `ice-restart` reaches the bridge, which keeps the transport and answers it without an
/// `ice-generation` (JVB's `KEEP_EXISTING`); the focus then relays nothing and — unlike with a
/// bridge that declines by answering no transport — does not re-invite. Both sides count it.
/// (With a connected browser the bridge answers a new generation: bridge/tests/browser_ice_restart.rs.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_ice_restart_through_our_bridge_before_ice_connects() {
    let prosody = start_prosody();
    let bridge = tokio::task::block_in_place(|| common::BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    tokio::task::block_in_place(|| common::wait_for_bridges(&focus, 1));
    let room = format!("restart@{}", prosody.muc_domain());
    let mut alice = Member::join(&prosody, &room, "alice", "aaaa1111", true).await;
    let mut bob = Member::join(&prosody, &room, "bob", "bbbb2222", false).await;
    let (offer, bob_offer) = tokio::join!(
        alice.jingle("session-initiate"),
        bob.jingle("session-initiate")
    );
    alice.accept(&offer.sid, 1000).await;
    bob.accept(&bob_offer.sid, 2000).await;
    alice.request_ice_restart(&offer).await;
    // The bridge's answer: counted on both sides, nothing sent to alice.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = focus.stats();
        if s["total_ice_restarts_not_needed"] == 1 {
            assert_eq!(s["total_ice_restarts_failed"], 0, "{s:#}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "focus stats: {s:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // (The bridge's figures refresh every stats interval.)
    let want = [
        "jitsi_jvb_ice_restarts_not_established_total 1",
        "jitsi_jvb_ice_restarts_started_total 0",
    ];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, metrics) = bridge.get("/metrics").expect("bridge REST");
        assert_eq!(status, 200);
        if want.iter().all(|w| metrics.lines().any(|l| l == *w)) {
            break;
        }
        let seen: Vec<&str> = metrics
            .lines()
            .filter(|l| l.contains("ice_restarts"))
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {want:?} in /metrics: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let quiet = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Some(seen) = alice.next(quiet).await {
        // (bob's sources in a source-add are fine: SSRC rewriting is off by default.)
        if let Seen::Jingle(j) = seen {
            let action = j.action.to_string();
            assert!(
                !["transport-info", "session-terminate", "session-initiate"]
                    .contains(&action.as_str()),
                "alice was sent a {action} ({j:?})"
            );
        }
    }
}
