//! Deterministic tests of the focus core: the shell is replaced by a harness that plays Prosody, the
//! bridges and the clients with stanzas written after what they send, on a virtual clock.

use std::time::{Duration, Instant};

use jid::BareJid;
use minidom::Element;
use signaling::jingle::{Action, Jingle};
use signaling::source_map::{ConferenceSourceMap, JVB_OWNER};
use signaling::xml::XmlElement;

use super::*;

const ROOM: &str = "room1@conference.meet.example";
const BREWERY: &str = "jvbbrewery@internal.auth.meet.example";
const FOCUS: &str = "focus@auth.meet.example/focus";

/// The chromium features the 2021 client advertises.
const CLIENT_FEATURES: &[&str] = &[
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:xmpp:jingle:transports:dtls-sctp:1",
    "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:apps:rtp:video",
    "http://jitsi.org/json-encoded-sources",
    "urn:ietf:rfc:4588",
    "http://jitsi.org/remb",
    "http://jitsi.org/tcc",
];

/// The 2021 client's disco#info answer.
fn client_disco() -> Element {
    client_disco_with(&[])
}

/// The disco#info answer of a client advertising `extra` features on top of the 2021 client's.
fn client_disco_with(extra: &[&str]) -> Element {
    let features: String = CLIENT_FEATURES
        .iter()
        .chain(extra)
        .map(|f| format!(r#"<feature var="{f}"/>"#))
        .collect();
    el(&format!(
        r#"<query xmlns="http://jabber.org/protocol/disco#info"><identity category="client" type="web" name="https://jitsi.org/jitsi-meet"/>{features}</query>"#
    ))
}

struct Harness {
    focus: Focus,
    now: Instant,
    out: Vec<Output>,
    next_id: u64,
}

#[derive(Debug, Clone)]
struct Req {
    id: RequestId,
    to: String,
    kind: IqKind,
    payload: Element,
}

impl Req {
    /// The pending output it was taken from.
    fn into_output(self) -> Output {
        Output::Request {
            request: self.id,
            link: Link::Client,
            to: self.to,
            kind: self.kind,
            payload: self.payload,
            timeout: Duration::from_secs(15),
        }
    }
}

fn el(xml: &str) -> Element {
    xml.parse()
        .unwrap_or_else(|e| panic!("bad test XML {e}: {xml}"))
}

impl Harness {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut CoreConfig)) -> Self {
        let mut cfg = CoreConfig::new(FOCUS, BREWERY.parse().unwrap());
        cfg.conference_domains = vec!["conference.meet.example".into()];
        tweak(&mut cfg);
        let mut h = Harness {
            focus: Focus::new(cfg, 7),
            now: Instant::now(),
            out: Vec::new(),
            next_id: 0,
        };
        h.input(Input::Online(Link::Client));
        let out = h.take();
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Presence { presence, .. }
                if presence.attr("to") == Some(&format!("{BREWERY}/focus")))),
            "joins the brewery: {out:?}"
        );
        h.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{BREWERY}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator"/><status code="110"/></x></presence>"#
        ));
        h
    }

    fn input(&mut self, i: Input) {
        self.focus.handle(self.now, i);
        while let Some(o) = self.focus.poll_output() {
            self.out.push(o);
        }
    }

    fn take(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.out)
    }

    fn presence(&mut self, xml: &str) {
        self.input(Input::Presence {
            link: Link::Client,
            presence: el(xml),
        });
    }

    fn iq(&mut self, link: Link, from: &str, kind: IqKind, payload: &str) -> String {
        self.next_id += 1;
        let id = format!("c{}", self.next_id);
        self.input(Input::Iq(IqRequest {
            link,
            from: from.to_owned(),
            id: id.clone(),
            kind,
            payload: el(payload),
        }));
        id
    }

    fn respond(&mut self, id: RequestId, result: Result<Option<Element>, RequestFailure>) {
        self.input(Input::IqResponse {
            request: id,
            result,
        });
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            match self.focus.poll_timeout() {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    self.focus.handle_timeout(self.now);
                    while let Some(o) = self.focus.poll_output() {
                        self.out.push(o);
                    }
                }
                _ => break,
            }
        }
        self.now = end;
    }

    /// Returns requests taken with [`Self::requests`] to the pending outputs, to be answered later.
    fn put_back(&mut self, reqs: Vec<Req>) {
        self.out.extend(reqs.into_iter().map(Req::into_output));
    }

    /// Removes and returns the requests matching `pred` from the pending outputs.
    fn requests(&mut self, pred: impl Fn(&Req) -> bool) -> Vec<Req> {
        let mut found = Vec::new();
        let mut rest = Vec::new();
        for o in self.out.drain(..) {
            match o {
                Output::Request {
                    request,
                    to,
                    kind,
                    payload,
                    ..
                } => {
                    let r = Req {
                        id: request,
                        to,
                        kind,
                        payload,
                    };
                    if pred(&r) {
                        found.push(r);
                    } else {
                        rest.push(r.into_output());
                    }
                }
                other => rest.push(other),
            }
        }
        self.out = rest;
        found
    }

    fn one_request(&mut self, what: &str, pred: impl Fn(&Req) -> bool) -> Req {
        let mut r = self.requests(pred);
        assert_eq!(
            r.len(),
            1,
            "expected one {what}, got {r:?}; other outputs {:?}",
            self.out
        );
        r.remove(0)
    }

    fn replies(&mut self) -> Vec<(String, String, Result<Option<Element>, StanzaError>)> {
        let mut found = Vec::new();
        let mut rest = Vec::new();
        for o in self.out.drain(..) {
            match o {
                Output::Reply {
                    to, id, response, ..
                } => found.push((to, id, response)),
                other => rest.push(other),
            }
        }
        self.out = rest;
        found
    }

    fn reply_to(&mut self, id: &str) -> Result<Option<Element>, StanzaError> {
        let mut r: Vec<_> = self
            .replies()
            .into_iter()
            .filter(|(_, i, _)| i == id)
            .collect();
        assert_eq!(r.len(), 1, "one reply to {id}");
        r.remove(0).2
    }

    // ---- the peers ----

    fn add_bridge(&mut self, nick: &str, stress: f64) {
        self.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{BREWERY}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="jvb@auth.meet.example/{nick}"/></x>
            <stats xmlns="http://jitsi.org/protocol/colibri"><stat name="stress_level" value="{stress}"/><stat name="drain" value="false"/>
            <stat name="graceful_shutdown" value="false"/><stat name="shutting_down" value="false"/><stat name="version" value="0.1.0"/><stat name="region" value="local"/></stats></presence>"#
        ));
    }

    /// The bridge leaves the brewery (taken as gone after LEAVE_CONFIRM_DELAY).
    fn remove_bridge(&mut self, nick: &str) {
        self.presence(&format!(
            r#"<presence xmlns="jabber:client" type="unavailable" from="{BREWERY}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="none"/></x></presence>"#
        ));
        self.advance(LEAVE_CONFIRM_DELAY);
    }

    /// A client asks for the conference; the focus joins and configures the room and answers ready.
    fn create_room(&mut self, room: &str) {
        self.create_room_with(room, &[("disableRtx", "false")]);
    }

    /// Creates `room` with a conference request carrying `properties`.
    fn create_room_with(&mut self, room: &str, properties: &[(&str, &str)]) {
        let props: String = properties
            .iter()
            .map(|(k, v)| format!(r#"<property name="{k}" value="{v}"/>"#))
            .collect();
        let id = self.iq(
            Link::Component,
            "u1@meet.example/abc",
            IqKind::Set,
            &format!(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{room}" machine-uid="m1">{props}</conference>"#),
        );
        assert!(
            self.replies().is_empty(),
            "no answer before the room is joined"
        );
        self.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{room}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{FOCUS}"/><status code="110"/><status code="201"/></x></presence>"#
        ));
        let form = self.one_request("config form", |r| r.to == room && r.kind == IqKind::Get);
        self.respond(
            form.id,
            Ok(Some(el(
                r#"<query xmlns="http://jabber.org/protocol/muc#owner"><x xmlns="jabber:x:data" type="form">
                <field var="muc#roomconfig_whois"><value>moderators</value></field></x></query>"#,
            ))),
        );
        let submit = self.one_request("config submit", |r| r.to == room && r.kind == IqKind::Set);
        assert!(String::from(&submit.payload).contains("anyone"));
        self.respond(submit.id, Ok(None));
        let answer = self.reply_to(&id).expect("result").expect("payload");
        assert_eq!(answer.attr("ready"), Some("true"));
        assert_eq!(answer.attr("focusjid"), Some("focus@auth.meet.example"));
    }

    /// Answers the room configuration requests that follow the focus's own presence.
    fn answer_room_config(&mut self, room: &str) {
        let owner = |r: &Req| r.to == room && r.payload.is("query", ns::MUC_OWNER);
        let form = self.one_request("config form", |r| owner(r) && r.kind == IqKind::Get);
        self.respond(form.id, Ok(None));
        let submit = self.one_request("config submit", |r| owner(r) && r.kind == IqKind::Set);
        self.respond(submit.id, Ok(None));
    }

    fn join_member(&mut self, room: &str, nick: &str) {
        self.join_member_with(room, nick, &[]);
    }

    /// A member whose client advertises `extra` features on top of the 2021 client's (in its caps).
    fn join_member_with(&mut self, room: &str, nick: &str, extra: &[&str]) {
        let ver = caps::ver_of(&client_disco_with(extra));
        self.presence(&format!(
            r#"<presence xmlns="jabber:client" from="{room}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="{nick}@meet.example/res"/></x>
            <stats-id>stats-{nick}</stats-id><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://jitsi.org/jitsi-meet" ver="{ver}"/></presence>"#
        ));
    }

    /// The member leaves the room (taken as gone after LEAVE_CONFIRM_DELAY).
    fn leave_member(&mut self, room: &str, nick: &str) {
        self.presence(&format!(
            r#"<presence xmlns="jabber:client" type="unavailable" from="{room}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="none"/></x></presence>"#
        ));
        self.advance(LEAVE_CONFIRM_DELAY);
    }

    /// Answers pending disco#info requests like the 2021 client.
    fn answer_discos(&mut self) -> usize {
        let discos = self.requests(|r| r.payload.is("query", muc::NS_DISCO_INFO));
        let n = discos.len();
        for d in discos {
            self.respond(d.id, Ok(Some(client_disco())));
        }
        n
    }

    /// Answers pending COLIBRI2 allocations like a bridge; returns (bridge jid, endpoint id, had create).
    fn answer_allocations(&mut self) -> Vec<(String, String, bool)> {
        let allocs = self.requests(|r| {
            r.payload.is("conference-modify", ns::COLIBRI2)
                && r.payload
                    .children()
                    .any(|e| e.name() == "endpoint" && e.attr("create") == Some("true"))
        });
        let mut out = Vec::new();
        for a in allocs {
            let ep = a
                .payload
                .children()
                .find(|e| e.name() == "endpoint")
                .and_then(|e| e.attr("id"))
                .unwrap()
                .to_owned();
            let create = a.payload.attr("create") == Some("true");
            let port = 10000 + out.len();
            let feedback = if create {
                r#"<sources><media-source type="audio" id="jvb-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="411" name="jvb-a0"/></media-source>
                   <media-source type="video" id="jvb-v0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="422" name="jvb-v0"/></media-source></sources>"#
            } else {
                ""
            };
            self.respond(
                a.id,
                Ok(Some(el(&format!(
                    r#"<conference-modified xmlns="jitsi:colibri2" meeting-id="m"><endpoint id="{ep}"><transport>
                    <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="bu{ep}" pwd="bridgepwdbridgepwd1234"><rtcp-mux/>
                      <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="actpass">AB:CD:EF</fingerprint>
                      <candidate component="1" foundation="1" generation="0" id="c1" ip="127.0.0.1" network="0" port="{port}" priority="2130706431" protocol="udp" type="host"/>
                      <web-socket xmlns="http://jitsi.org/protocol/colibri" url="wss://x/colibri-ws/a/b/c?pwd=1"/>
                    </transport><sctp port="5000" role="server"/></transport></endpoint>{feedback}</conference-modified>"#
                )))),
            );
            out.push((a.to, ep, create));
        }
        out
    }

    /// Collects session-initiates: (nick, parsed jingle), acknowledging them.
    fn session_initiates(&mut self) -> Vec<(String, Jingle)> {
        let reqs = self.requests(|r| {
            r.payload.is("jingle", ns::JINGLE)
                && r.payload.attr("action") == Some("session-initiate")
        });
        let mut out = Vec::new();
        for r in reqs {
            let nick = r.to.rsplit('/').next().unwrap().to_owned();
            let j = Jingle::from_element(&r.payload).unwrap();
            self.respond(r.id, Ok(None));
            out.push((nick, j));
        }
        out
    }

    /// Jingle requests of `action` sent to participants: (nick, jingle); acknowledged.
    fn jingles(&mut self, action: &str) -> Vec<(String, Jingle)> {
        let reqs = self.requests(|r| {
            r.payload.is("jingle", ns::JINGLE) && r.payload.attr("action") == Some(action)
        });
        let mut out = Vec::new();
        for r in reqs {
            let nick = r.to.rsplit('/').next().unwrap().to_owned();
            let j = Jingle::from_element(&r.payload).unwrap();
            self.respond(r.id, Ok(None));
            out.push((nick, j));
        }
        out
    }

    /// COLIBRI2 requests that are not allocations: (bridge, payload); answered with success.
    fn bridge_updates(&mut self) -> Vec<(String, Element)> {
        let reqs = self.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2));
        let mut out = Vec::new();
        for r in reqs {
            self.respond(
                r.id,
                Ok(Some(el(
                    r#"<conference-modified xmlns="jitsi:colibri2" meeting-id="m"/>"#,
                ))),
            );
            out.push((r.to, r.payload));
        }
        out
    }

    fn jingle_from(
        &mut self,
        room: &str,
        nick: &str,
        jingle: &str,
    ) -> Result<Option<Element>, StanzaError> {
        let id = self.iq(Link::Client, &format!("{room}/{nick}"), IqKind::Set, jingle);
        self.reply_to(&id)
    }

    /// Room with `nicks` joined and invited: disco, allocation and session-initiate all done.
    fn conference(room: &str, nicks: &[&str]) -> (Harness, Vec<(String, Jingle)>) {
        Self::conference_with(room, nicks, |_| {})
    }

    /// [`Harness::conference`] with a configuration of its own.
    fn conference_with(
        room: &str,
        nicks: &[&str],
        tweak: impl FnOnce(&mut CoreConfig),
    ) -> (Harness, Vec<(String, Jingle)>) {
        let mut h = Harness::with(tweak);
        h.add_bridge("jvb1", 0.1);
        h.create_room(room);
        for n in nicks {
            h.join_member(room, n);
        }
        h.answer_discos();
        h.answer_allocations();
        let inits = h.session_initiates();
        assert_eq!(inits.len(), nicks.len());
        (h, inits)
    }
}

/// A 2021 session-accept: audio + simulcast video (3 SIM layers, each with RTX), transport, no names.
fn session_accept(nick: &str, sid: &str, base: u32) -> String {
    let (a, v) = (base, base + 10);
    format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" initiator="{FOCUS}" responder="{ROOM}/{nick}" sid="{sid}">
  <content creator="initiator" name="audio" senders="both">
    <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">
      <payload-type id="111" name="opus" clockrate="48000" channels="2"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{a}"><parameter name="msid" value="as-{nick} at-{nick}"/></source>
    </description>
    <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cu{nick}" pwd="clientpwdclientpwd12345">
      <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint>
      <candidate component="1" foundation="2" generation="0" id="x" ip="127.0.0.1" network="1" port="50000" priority="2122260223" protocol="udp" type="host"/>
    </transport>
  </content>
  <content creator="initiator" name="video" senders="both">
    <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">
      <payload-type id="100" name="VP8" clockrate="90000"/>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{v0}"><parameter name="msid" value="vs-{nick} vt-{nick}"/></source>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{v1}"><parameter name="msid" value="vs-{nick} vt-{nick}"/></source>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{v2}"><parameter name="msid" value="vs-{nick} vt-{nick}"/></source>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{r0}"><parameter name="msid" value="vs-{nick} vt-{nick}"/></source>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{r1}"><parameter name="msid" value="vs-{nick} vt-{nick}"/></source>
      <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{r2}"><parameter name="msid" value="vs-{nick} vt-{nick}"/></source>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="SIM"><source ssrc="{v0}"/><source ssrc="{v1}"/><source ssrc="{v2}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v0}"/><source ssrc="{r0}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v1}"/><source ssrc="{r1}"/></ssrc-group>
      <ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"><source ssrc="{v2}"/><source ssrc="{r2}"/></ssrc-group>
    </description>
    <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cu{nick}" pwd="clientpwdclientpwd12345">
      <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint>
    </transport>
  </content>
  <content creator="initiator" name="data" senders="both">
    <description xmlns="urn:xmpp:jingle:apps:rtp:1" media="application"/>
    <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="cu{nick}" pwd="clientpwdclientpwd12345">
      <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint>
      <sctpmap xmlns="urn:xmpp:jingle:transports:dtls-sctp:1" number="5000" protocol="webrtc-datachannel" streams="1024"/>
    </transport>
  </content>
  <group xmlns="urn:xmpp:jingle:apps:grouping:0" semantics="BUNDLE"><content name="audio"/><content name="video"/><content name="data"/></group>
</jingle>"#,
        v0 = v,
        v1 = v + 1,
        v2 = v + 2,
        r0 = v + 3,
        r1 = v + 4,
        r2 = v + 5,
    )
}

fn sources_of(j: &Jingle) -> ConferenceSourceMap {
    ConferenceSourceMap::from_jingle(j, None).expect("sources parse")
}

fn sid_of(inits: &[(String, Jingle)], nick: &str) -> String {
    inits
        .iter()
        .find(|(n, _)| n == nick)
        .map(|(_, j)| j.sid.clone())
        .expect("session for nick")
}

fn condition(r: &Result<Option<Element>, StanzaError>) -> Option<Condition> {
    r.as_ref().err().map(|e| e.condition)
}

// ---- tests -----------------------------------------------------------------------------------------

#[test]
fn conference_request_joins_configures_and_answers_ready() {
    let mut h = Harness::new();
    h.create_room(ROOM);
    // A second request for a joined room is answered at once.
    let id = h.iq(
        Link::Client,
        "focus.meet.example/u2@meet.example/xyz",
        IqKind::Set,
        &format!(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM}"/>"#),
    );
    let replies = h.replies();
    let (to, _, r) = replies.iter().find(|(_, i, _)| *i == id).unwrap();
    // client_proxy: answered to the proxied address.
    assert_eq!(to, "focus.meet.example/u2@meet.example/xyz");
    assert_eq!(
        r.as_ref().unwrap().as_ref().unwrap().attr("ready"),
        Some("true")
    );
    assert_eq!(h.focus.stats(h.now).conferences, 1);
    assert_eq!(h.focus.stats(h.now).total_conferences_created, 1);
}

#[test]
fn focus_presence_advertises_terminate_restart() {
    let mut h = Harness::new();
    h.iq(
        Link::Component,
        "u1@meet.example/abc",
        IqKind::Set,
        &format!(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM}"/>"#),
    );
    let join = h
        .take()
        .into_iter()
        .find_map(|o| match o {
            Output::Presence { presence, .. }
                if presence.attr("to") == Some(&format!("{ROOM}/focus")) =>
            {
                Some(presence)
            }
            _ => None,
        })
        .expect("join presence");
    let props = join.get_child("conference-properties", ns::FOCUS).unwrap();
    assert!(
        props
            .children()
            .any(|p| p.attr("key") == Some("support-terminate-restart")
                && p.attr("value") == Some("true"))
    );
    assert!(join.has_child("x", ns::MUC));
}

#[test]
fn conference_request_without_room_is_bad_request() {
    let mut h = Harness::new();
    let id = h.iq(
        Link::Component,
        "u1@meet.example/abc",
        IqKind::Set,
        r#"<conference xmlns="http://jitsi.org/protocol/focus" machine-uid="m1"/>"#,
    );
    assert_eq!(condition(&h.reply_to(&id)), Some(Condition::BadRequest));
    assert_eq!(h.focus.stats(h.now).conferences, 0);
}

#[test]
fn nobody_is_invited_before_min_participants() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    assert_eq!(h.answer_discos(), 0);
    assert!(h.answer_allocations().is_empty());
    h.join_member(ROOM, "bbbb2222");
    assert_eq!(
        h.answer_discos(),
        2,
        "both members are invited once the second joins"
    );
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2);
    assert_eq!(allocs.iter().filter(|(_, _, create)| *create).count(), 1);
    // A third member is invited alone; the caps cache spares a disco#info.
    h.session_initiates();
    h.join_member(ROOM, "cccc3333");
    assert_eq!(h.answer_discos(), 0);
    let allocs = h.answer_allocations();
    assert_eq!(
        allocs,
        vec![(format!("{BREWERY}/jvb1"), "cccc3333".into(), false)]
    );
    assert_eq!(h.focus.stats(h.now).participants, 3);
}

#[test]
fn min_participants_is_configurable() {
    let mut h = Harness::with(|c| c.conference.min_participants = 1);
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    assert_eq!(h.answer_discos(), 1);
    assert_eq!(h.answer_allocations().len(), 1);
}

#[test]
fn allocation_and_session_initiate_carry_what_the_client_needs() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    let allocs = h.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2));
    assert_eq!(allocs.len(), 2);
    let first = &allocs[0].payload;
    assert_eq!(allocs[0].to, format!("{BREWERY}/jvb1"));
    assert_eq!(first.attr("create"), Some("true"));
    assert_eq!(first.attr("name"), Some(ROOM));
    let ep = first.get_child("endpoint", ns::COLIBRI2).unwrap();
    assert_eq!(ep.attr("stats-id"), Some("stats-aaaa1111"));
    assert!(
        ep.children()
            .any(|c| c.name() == "capability" && c.attr("name") == Some("source-names"))
    );
    let t = ep.get_child("transport", ns::COLIBRI2).unwrap();
    assert_eq!(t.attr("ice-controlling"), Some("true"));
    assert!(t.has_child("sctp", ns::COLIBRI2));
    // Same meeting id in both.
    assert_eq!(
        first.attr("meeting-id"),
        allocs[1].payload.attr("meeting-id")
    );
    assert_eq!(allocs[1].payload.attr("create"), None);
    // Put them back and answer.
    h.put_back(allocs);
    h.answer_allocations();
    let inits = h.session_initiates();
    assert_eq!(inits.len(), 2);
    let (nick, j) = &inits[0];
    assert_eq!(nick, "aaaa1111");
    assert_eq!(j.initiator.as_deref(), Some(FOCUS));
    let names: Vec<&str> = j.contents.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["audio", "video", "data"]);
    assert_eq!(j.bundle().unwrap().contents, ["audio", "video", "data"]);
    let audio = j.content("audio").unwrap();
    let d = audio.description.as_ref().unwrap();
    assert_eq!(d.maxptime, Some(60));
    assert!(d.rtcp_mux);
    assert_eq!(d.rtp.payload_types[0].name, "opus");
    let t = audio.transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("buaaaa1111"));
    assert!(t.web_sockets.is_empty(), "no web-socket with SCTP");
    assert_eq!(t.candidates.len(), 1);
    let data = j.content("data").unwrap().transport.as_ref().unwrap();
    assert_eq!(data.sctpmap.as_ref().unwrap().number, 5000);
    let bs = j.bridge_session.as_ref().unwrap();
    assert_eq!(bs.region.as_deref(), Some("local"));
    // JSON sources: the bridge's feedback sources, nobody else's yet.
    assert!(j.json_message.is_some());
    let sources = sources_of(j);
    assert_eq!(sources.owners().collect::<Vec<_>>(), [JVB_OWNER]);
    let jvb = sources.get(JVB_OWNER).unwrap();
    assert_eq!(
        jvb.audio.sources[0].msid(),
        Some("mixedmslabel mixedlabelaudio0")
    );
    assert_eq!(jvb.video.sources[0].ssrc, 422);
}

#[test]
fn session_accept_updates_bridge_and_others_get_stripped_sources() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let sid_a = sid_of(&inits, "aaaa1111");
    let sid_b = sid_of(&inits, "bbbb2222");
    let r = h.jingle_from(ROOM, "aaaa1111", &session_accept("aaaa1111", &sid_a, 1000));
    assert!(r.is_ok(), "{r:?}");
    let updates = h.bridge_updates();
    assert_eq!(updates.len(), 1);
    let ep = updates[0].1.get_child("endpoint", ns::COLIBRI2).unwrap();
    assert_eq!(ep.attr("id"), Some("aaaa1111"));
    let t = ep.get_child("transport", ns::COLIBRI2).unwrap();
    let ice = t.get_child("transport", ns::JINGLE_ICE_UDP).unwrap();
    assert_eq!(ice.attr("ufrag"), Some("cuaaaa1111"));
    let srcs = ep.get_child("sources", ns::COLIBRI2).unwrap();
    assert_eq!(srcs.children().count(), 2, "audio and video media-sources");
    // b's session is not active yet: nothing sent to it.
    assert!(h.jingles("source-add").is_empty());
    let r = h.jingle_from(ROOM, "bbbb2222", &session_accept("bbbb2222", &sid_b, 2000));
    assert!(r.is_ok(), "{r:?}");
    let adds = h.jingles("source-add");
    assert_eq!(adds.len(), 2);
    let to_b = adds.iter().find(|(n, _)| n == "bbbb2222").unwrap();
    let m = sources_of(&to_b.1);
    let a = m.get("aaaa1111").unwrap();
    assert_eq!(a.audio.sources.len(), 1);
    // Simulcast stripped: first layer and its RTX, one FID group.
    let mut ssrcs: Vec<u32> = a.video.sources.iter().map(|s| s.ssrc).collect();
    ssrcs.sort();
    assert_eq!(ssrcs, [1010, 1013]);
    assert_eq!(a.video.groups.len(), 1);
    let to_a = adds.iter().find(|(n, _)| n == "aaaa1111").unwrap();
    assert!(sources_of(&to_a.1).get("bbbb2222").is_some());
}

#[test]
fn late_joiner_gets_everybody_in_its_offer() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    for (n, base) in [("aaaa1111", 1000), ("bbbb2222", 2000)] {
        let sid = sid_of(&inits, n);
        assert!(
            h.jingle_from(ROOM, n, &session_accept(n, &sid, base))
                .is_ok()
        );
    }
    h.bridge_updates();
    h.jingles("source-add");
    h.join_member(ROOM, "cccc3333");
    h.answer_allocations();
    let inits = h.session_initiates();
    let m = sources_of(&inits[0].1);
    assert_eq!(
        m.owners().collect::<Vec<_>>(),
        ["aaaa1111", "bbbb2222", JVB_OWNER]
    );
}

#[test]
fn bad_jingle_input_gets_error_replies_and_the_conference_continues() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let sid_a = sid_of(&inits, "aaaa1111");
    let sid_b = sid_of(&inits, "bbbb2222");
    assert!(
        h.jingle_from(ROOM, "aaaa1111", &session_accept("aaaa1111", &sid_a, 1000))
            .is_ok()
    );

    // A non-participant (a member of another room, or an unknown nick).
    let r = h.jingle_from(ROOM, "zzzz9999", &session_accept("zzzz9999", "nope", 9000));
    assert_eq!(condition(&r), Some(Condition::ItemNotFound));
    let r = h.jingle_from(
        "other@conference.meet.example",
        "x",
        &session_accept("x", "nope", 9000),
    );
    assert_eq!(condition(&r), Some(Condition::ItemNotFound));
    // Wrong session id.
    let r = h.jingle_from(ROOM, "bbbb2222", &session_accept("bbbb2222", "wrong", 2000));
    assert_eq!(condition(&r), Some(Condition::ItemNotFound));
    // Unknown action.
    let r = h.jingle_from(
        ROOM,
        "aaaa1111",
        &format!(r#"<jingle xmlns="urn:xmpp:jingle:1" action="transport-replace" sid="{sid_a}"/>"#),
    );
    assert_eq!(condition(&r), Some(Condition::FeatureNotImplemented));
    // Not even Jingle: no action.
    let r = h.jingle_from(
        ROOM,
        "aaaa1111",
        &format!(r#"<jingle xmlns="urn:xmpp:jingle:1" sid="{sid_a}"/>"#),
    );
    assert_eq!(condition(&r), Some(Condition::BadRequest));
    // source-add stealing a's SSRC.
    let steal = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="{sid_b}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">
        <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="1000"><parameter name="msid" value="x y"/></source></description></content></jingle>"#
    );
    // (b's session is pending but source-add is still validated)
    let r = h.jingle_from(ROOM, "bbbb2222", &steal);
    assert_eq!(condition(&r), Some(Condition::BadRequest));
    assert!(format!("{:?}", r).contains("1000"));
    // source-add naming another owner.
    let foreign = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="{sid_a}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">
        <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="5555"><parameter name="msid" value="q r"/><ssrc-info xmlns="http://jitsi.org/jitmeet" owner="bbbb2222"/></source></description></content></jingle>"#
    );
    assert_eq!(
        condition(&h.jingle_from(ROOM, "aaaa1111", &foreign)),
        Some(Condition::BadRequest)
    );
    // Too many SSRCs.
    let many: String = (0..25)
        .map(|i| format!(r#"<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{}"><parameter name="msid" value="m{i} t{i}"/></source>"#, 7000 + i))
        .collect();
    let r = h.jingle_from(
        ROOM,
        "aaaa1111",
        &format!(r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="{sid_a}"><content name="video"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">{many}</description></content></jingle>"#),
    );
    assert_eq!(condition(&r), Some(Condition::BadRequest));
    // A malformed session-accept (no transport) from b.
    let malformed = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="{sid_b}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio"/></content></jingle>"#
    );
    assert_eq!(
        condition(&h.jingle_from(ROOM, "bbbb2222", &malformed)),
        Some(Condition::BadRequest)
    );
    // That session is over: later requests for it are `gone`.
    assert_eq!(
        condition(&h.jingle_from(ROOM, "bbbb2222", &session_accept("bbbb2222", &sid_b, 2000))),
        Some(Condition::Gone)
    );
    // Nothing was relayed for the refused requests; a valid source-add still works.
    h.bridge_updates();
    assert!(h.jingles("source-add").is_empty());
    let ok = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="{sid_a}"><content name="video"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="video">
        <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="3333" name="aaaa1111-v1" videoType="desktop"><parameter name="msid" value="ss st"/></source></description></content></jingle>"#
    );
    assert!(h.jingle_from(ROOM, "aaaa1111", &ok).is_ok());
    assert_eq!(h.bridge_updates().len(), 1);
    assert!(h.focus.stats(h.now).total_jingle_errors >= 9);
    assert_eq!(h.focus.stats(h.now).participants, 2);
}

#[test]
fn source_remove_is_relayed_and_validated() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    for (n, base) in [("aaaa1111", 1000), ("bbbb2222", 2000)] {
        let sid = sid_of(&inits, n);
        assert!(
            h.jingle_from(ROOM, n, &session_accept(n, &sid, base))
                .is_ok()
        );
    }
    h.bridge_updates();
    h.jingles("source-add");
    let sid_a = sid_of(&inits, "aaaa1111");
    let remove = |ssrc: u32| {
        format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="source-remove" sid="{sid_a}"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">
            <source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="{ssrc}"/></description></content></jingle>"#
        )
    };
    // b's SSRC is not a's to remove.
    assert_eq!(
        condition(&h.jingle_from(ROOM, "aaaa1111", &remove(2000))),
        Some(Condition::BadRequest)
    );
    assert!(h.jingle_from(ROOM, "aaaa1111", &remove(1000)).is_ok());
    let removes = h.jingles("source-remove");
    assert_eq!(removes.len(), 1);
    assert_eq!(removes[0].0, "bbbb2222");
    assert_eq!(
        sources_of(&removes[0].1)
            .get("aaaa1111")
            .unwrap()
            .audio
            .sources[0]
            .ssrc,
        1000
    );
}

#[test]
fn leaving_expires_the_endpoint_and_the_last_one_the_conference() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222", "cccc3333"]);
    h.leave_member(ROOM, "cccc3333");
    let updates = h.bridge_updates();
    assert_eq!(updates.len(), 1);
    let ep = updates[0].1.get_child("endpoint", ns::COLIBRI2).unwrap();
    assert_eq!(
        (ep.attr("id"), ep.attr("expire")),
        (Some("cccc3333"), Some("true"))
    );
    assert!(
        h.jingles("source-remove").is_empty(),
        "clients drop sources on unavailable presence"
    );
    h.leave_member(ROOM, "bbbb2222");
    h.bridge_updates();
    // One left: the single-participant timeout ends its session after 20 s.
    h.advance(Duration::from_secs(19));
    assert!(h.jingles("session-terminate").is_empty());
    h.advance(Duration::from_secs(2));
    let t = h.jingles("session-terminate");
    assert_eq!(t.len(), 1);
    assert_eq!(
        t[0].1.reason.as_ref().unwrap().condition.as_str(),
        "expired"
    );
    let expires = h.bridge_updates();
    assert!(
        expires
            .iter()
            .any(|(_, p)| p.attr("expire") == Some("true")),
        "{expires:?}"
    );
    assert_eq!(h.focus.stats(h.now).participants, 0);
    // The last member leaves: the focus leaves the room.
    h.leave_member(ROOM, "aaaa1111");
    let left = h.take().into_iter().any(|o| matches!(o, Output::Presence { presence, .. }
        if presence.attr("type") == Some("unavailable") && presence.attr("to") == Some(&format!("{ROOM}/focus"))));
    assert!(left);
    assert_eq!(h.focus.stats(h.now).conferences, 0);
}

#[test]
fn a_new_member_after_the_single_timeout_restarts_everyone() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.leave_member(ROOM, "bbbb2222");
    h.advance(Duration::from_secs(25));
    h.take();
    h.join_member(ROOM, "cccc3333");
    h.answer_discos();
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2, "{allocs:?}");
    assert_eq!(
        allocs.iter().filter(|a| a.2).count(),
        1,
        "a new conference on the bridge"
    );
}

#[test]
fn a_failed_bridge_moves_everyone_with_terminate_and_initiate() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    for (n, base) in [("aaaa1111", 1000), ("bbbb2222", 2000)] {
        let sid = sid_of(&inits, n);
        assert!(
            h.jingle_from(ROOM, n, &session_accept(n, &sid, base))
                .is_ok()
        );
    }
    h.bridge_updates();
    h.jingles("source-add");
    h.add_bridge("jvb2", 0.5);
    h.remove_bridge("jvb1");
    let terms = h.jingles("session-terminate");
    assert_eq!(terms.len(), 2);
    for (_, t) in &terms {
        let r = t.reason.as_ref().unwrap();
        assert_eq!(
            (r.condition.as_str(), r.text.as_deref()),
            ("success", Some("moving"))
        );
    }
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2);
    assert!(allocs.iter().all(|(b, _, _)| b.ends_with("/jvb2")));
    assert_eq!(allocs.iter().filter(|a| a.2).count(), 1);
    let new = h.session_initiates();
    assert_eq!(new.len(), 2);
    for (n, j) in &new {
        assert_ne!(j.sid, sid_of(&inits, n), "a new session");
        // Old sources are gone until the clients accept again.
        assert_eq!(sources_of(j).owners().collect::<Vec<_>>(), [JVB_OWNER]);
        assert_ne!(
            j.bridge_session.as_ref().unwrap().id,
            inits[0].1.bridge_session.as_ref().unwrap().id
        );
    }
    assert_eq!(h.focus.stats(h.now).total_participants_moved, 2);
    // Requests about the old sessions are refused as gone.
    let old = sid_of(&inits, "aaaa1111");
    assert_eq!(
        condition(&h.jingle_from(
            ROOM,
            "aaaa1111",
            &format!(r#"<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" sid="{old}"/>"#)
        )),
        Some(Condition::Gone)
    );
}

#[test]
fn without_another_bridge_participants_wait_and_are_invited_when_one_appears() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.remove_bridge("jvb1");
    assert_eq!(h.jingles("session-terminate").len(), 2);
    assert!(h.answer_allocations().is_empty());
    assert!(!h.focus.is_healthy(h.now));
    h.advance(Duration::from_secs(6));
    assert!(h.answer_allocations().is_empty());
    h.add_bridge("jvb3", 0.2);
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2);
    assert_eq!(h.session_initiates().len(), 2);
}

#[test]
fn allocation_errors_and_health_failures_move_participants() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.add_bridge("jvb2", 0.3);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    let allocs = h.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2));
    assert!(allocs.iter().all(|a| a.to.ends_with("/jvb1")));
    // The bridge answers the first with an error: jvb1 is marked failed, both go to jvb2.
    h.respond(
        allocs[0].id,
        Err(RequestFailure::Error(Some(el(
            r#"<error xmlns="jabber:client" type="cancel"><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>"#,
        )))),
    );
    h.respond(allocs[1].id, Err(RequestFailure::Timeout));
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2, "{allocs:?}");
    assert!(allocs.iter().all(|(b, _, _)| b.ends_with("/jvb2")));
    assert!(
        !h.focus
            .bridges()
            .is_operational(&format!("{BREWERY}/jvb1"), h.now)
    );
    h.session_initiates();

    // Health checks: jvb2 answers internal-server-error → its participants move to jvb1 once that is
    // forgiven (failure reset after a minute).
    h.advance(Duration::from_secs(61));
    let checks = h.requests(|r| r.payload.is("healthcheck", ns::HEALTHCHECK));
    assert!(!checks.is_empty());
    for c in checks {
        if c.to.ends_with("/jvb2") {
            h.respond(
                c.id,
                Err(RequestFailure::Error(Some(el(
                    r#"<error xmlns="jabber:client" type="cancel"><internal-server-error xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>"#,
                )))),
            );
        } else {
            h.respond(c.id, Ok(None));
        }
    }
    assert_eq!(h.jingles("session-terminate").len(), 2);
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2);
    assert!(
        allocs.iter().all(|(b, _, _)| b.ends_with("/jvb1")),
        "{allocs:?}"
    );
}

#[test]
fn health_check_timeouts_make_a_bridge_non_operational_after_a_retry() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    assert!(h.focus.is_healthy(h.now));
    h.advance(Duration::from_secs(10));
    let c = h.one_request("health check", |r| {
        r.payload.is("healthcheck", ns::HEALTHCHECK)
    });
    assert_eq!(c.kind, IqKind::Get);
    h.respond(c.id, Err(RequestFailure::Timeout));
    // Retried at once.
    let c = h.one_request("retry", |r| r.payload.is("healthcheck", ns::HEALTHCHECK));
    h.respond(c.id, Err(RequestFailure::Timeout));
    assert!(!h.focus.is_healthy(h.now));
    assert_eq!(
        h.focus
            .stats(h.now)
            .bridge_selector
            .operational_bridge_count,
        0
    );
    assert_eq!(h.focus.stats(h.now).bridge_selector.bridge_count, 1);
}

#[test]
fn shutting_down_bridge_moves_its_participants() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    h.add_bridge("jvb2", 0.5);
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" from="{BREWERY}/jvb1"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="jvb@auth.meet.example/jvb1"/></x><stats xmlns="http://jitsi.org/protocol/colibri"><stat name="shutting_down" value="true"/></stats></presence>"#
    ));
    assert_eq!(h.jingles("session-terminate").len(), 2);
    let allocs = h.answer_allocations();
    assert!(allocs.iter().all(|(b, _, _)| b.ends_with("/jvb2")));
}

#[test]
fn conferences_spread_by_stress_across_bridges() {
    let mut h = Harness::with(|c| c.bridge.average_participant_stress = 0.1);
    h.add_bridge("jvb1", 0.1);
    h.add_bridge("jvb2", 0.15);
    let rooms = ["r1@conference.meet.example", "r2@conference.meet.example"];
    let mut used = Vec::new();
    for room in rooms {
        h.create_room(room);
        h.join_member(room, &format!("a{}", room.len()));
        h.join_member(room, &format!("b{}", room.len()));
        h.answer_discos();
        let allocs = h.answer_allocations();
        used.push(allocs[0].0.clone());
    }
    // r1 lands on jvb1 (0.1); its 2 new endpoints (+0.2) make jvb2 (0.15) the lighter one for r2.
    assert_eq!(used, [format!("{BREWERY}/jvb1"), format!("{BREWERY}/jvb2")]);
}

#[test]
fn restart_requests_reinvite_with_a_rate_limit() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let mut sid = sid_of(&inits, "aaaa1111");
    let bs = inits[0].1.bridge_session.as_ref().unwrap().id.clone();
    assert!(
        h.jingle_from(ROOM, "aaaa1111", &session_accept("aaaa1111", &sid, 1000))
            .is_ok()
    );
    h.bridge_updates();
    let terminate = |sid: &str| {
        format!(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" initiator="{FOCUS}" sid="{sid}"><reason><success/><text>restart required</text></reason>
            <bridge-session xmlns="http://jitsi.org/protocol/focus" id="{bs}" restart="true"/></jingle>"#
        )
    };
    assert!(h.jingle_from(ROOM, "aaaa1111", &terminate(&sid)).is_ok());
    // Its sources are removed for the others; the endpoint is expired and allocated again.
    assert_eq!(
        h.jingles("source-remove").len(),
        0,
        "b's session is not active yet: queued"
    );
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 1);
    let new = h.session_initiates();
    assert_eq!(new.len(), 1);
    sid = new[0].1.sid.clone();
    assert_eq!(h.focus.stats(h.now).total_participants_requested_restart, 1);
    // A second restart within 5 s is refused (but the session still ends).
    h.advance(Duration::from_secs(1));
    let r = h.jingle_from(ROOM, "aaaa1111", &terminate(&sid));
    assert_eq!(condition(&r), Some(Condition::ResourceConstraint));
    assert!(h.answer_allocations().is_empty());
    // A restart for a stale bridge session is item-not-found.
    let stale = r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="SID"><reason><success/></reason><bridge-session xmlns="http://jitsi.org/protocol/focus" id="old" restart="true"/></jingle>"#;
    let sid_b = sid_of(&inits, "bbbb2222");
    let r = h.jingle_from(ROOM, "bbbb2222", &stale.replace("SID", &sid_b));
    assert_eq!(condition(&r), Some(Condition::ItemNotFound));
}

#[test]
fn ice_failure_reinvites() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let sid = sid_of(&inits, "aaaa1111");
    let bs = inits[0].1.bridge_session.as_ref().unwrap().id.clone();
    let info = format!(
        r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-info" sid="{sid}"><ice-state xmlns="http://jitsi.org/protocol/focus">failed</ice-state>
        <bridge-session xmlns="http://jitsi.org/protocol/focus" id="{bs}"/></jingle>"#
    );
    assert!(h.jingle_from(ROOM, "aaaa1111", &info).is_ok());
    assert_eq!(h.jingles("session-terminate").len(), 1);
    assert_eq!(h.answer_allocations().len(), 1);
    assert_eq!(h.session_initiates().len(), 1);
    assert_eq!(h.focus.stats(h.now).total_participants_ice_failed, 1);
}

#[test]
fn a_refused_session_initiate_ends_the_invitation() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    h.answer_allocations();
    let inits = h.requests(|r| r.payload.is("jingle", ns::JINGLE));
    h.respond(
        inits[0].id,
        Err(RequestFailure::Error(Some(el(
            r#"<error xmlns="jabber:client" type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>"#,
        )))),
    );
    // Its endpoint is expired on the bridge.
    let updates = h.bridge_updates();
    assert_eq!(updates.len(), 1);
    // Timeouts are taken as success.
    h.respond(inits[1].id, Err(RequestFailure::Timeout));
    assert!(h.bridge_updates().is_empty());
}

#[test]
fn join_timeout_answers_not_ready() {
    let mut h = Harness::new();
    let id = h.iq(
        Link::Component,
        "u1@meet.example/abc",
        IqKind::Set,
        &format!(r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM}"/>"#),
    );
    h.advance(Duration::from_secs(16));
    let r = h.reply_to(&id).unwrap().unwrap();
    assert_eq!(r.attr("ready"), Some("false"));
    assert_eq!(h.focus.stats(h.now).conferences, 0);
}

#[test]
fn empty_conference_stops_after_the_initial_timeout() {
    let mut h = Harness::new();
    h.create_room(ROOM);
    h.advance(Duration::from_secs(16));
    assert_eq!(h.focus.stats(h.now).conferences, 0);
}

#[test]
fn reconnect_rejoins_and_forgets_members_that_do_not_come_back() {
    let (mut h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222", "cccc3333"]);
    h.input(Input::Offline(Link::Client));
    h.input(Input::Online(Link::Client));
    let out = h.take();
    assert!(out.iter().any(|o| matches!(o, Output::Presence { presence, .. } if presence.attr("to") == Some(&format!("{ROOM}/focus")))));
    // After the reconnect Prosody announces a and b only, then us.
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.presence(&format!(
        r#"<presence xmlns="jabber:client" from="{ROOM}/focus"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{FOCUS}"/><status code="110"/></x></presence>"#
    ));
    h.answer_room_config(ROOM);
    // c may still be reconnecting (Prosody restarted): its session is kept for the grace period.
    h.advance(MEMBER_REJOIN_GRACE - Duration::from_secs(1));
    assert!(
        !h.bridge_updates()
            .iter()
            .any(|(_, p)| String::from(p).contains("cccc3333")),
        "c's endpoint is kept during the grace"
    );
    assert_eq!(
        h.focus
            .participants(&ROOM.parse::<BareJid>().unwrap())
            .len(),
        3
    );
    h.advance(Duration::from_secs(2));
    let updates = h.bridge_updates();
    assert!(
        updates
            .iter()
            .any(|(_, p)| String::from(p).contains("cccc3333")),
        "c's endpoint expires"
    );
    assert_eq!(
        h.focus
            .participants(&ROOM.parse::<BareJid>().unwrap())
            .len(),
        2
    );
    // Nobody is re-invited.
    assert!(h.answer_allocations().is_empty());
}

#[test]
fn auto_owner_is_granted_to_the_first_member() {
    let mut h = Harness::new();
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    let grant = h.one_request("grant owner", |r| r.payload.is("query", muc::NS_MUC_ADMIN));
    let item = grant.payload.children().next().unwrap();
    assert_eq!(item.attr("jid"), Some("aaaa1111@meet.example"));
    assert_eq!(item.attr("affiliation"), Some("owner"));
    h.join_member(ROOM, "bbbb2222");
    assert!(
        h.requests(|r| r.payload.is("query", muc::NS_MUC_ADMIN))
            .is_empty()
    );
    h.leave_member(ROOM, "aaaa1111");
    let grant = h.one_request("grant owner", |r| r.payload.is("query", muc::NS_MUC_ADMIN));
    assert_eq!(
        grant.payload.children().next().unwrap().attr("jid"),
        Some("bbbb2222@meet.example")
    );
}

#[test]
fn xml_sources_for_clients_without_json_support() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    // No disco answer: defaults (audio, video, sctp; no JSON).
    let discos = h.requests(|r| r.payload.is("query", muc::NS_DISCO_INFO));
    for d in discos {
        h.respond(d.id, Err(RequestFailure::Timeout));
    }
    h.answer_allocations();
    let inits = h.session_initiates();
    let j = &inits[0].1;
    assert!(j.json_message.is_none());
    let video = j.content("video").unwrap().description.as_ref().unwrap();
    assert!(
        video
            .sources
            .iter()
            .any(|s| s.owner.as_deref() == Some(JVB_OWNER))
    );
    // Without RTX support no rtx payload types.
    assert!(video.rtp.payload_types.iter().all(|p| p.name != "rtx"));
}

#[test]
fn stats_report_bridges_and_conferences() {
    let (h, _) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222", "cccc3333"]);
    let s = h.focus.stats(h.now);
    assert_eq!(
        (s.conferences, s.participants, s.largest_conference),
        (1, 3, 3)
    );
    assert_eq!(s.conference_sizes[3], 1);
    assert_eq!(s.bridge_selector.bridge_count, 1);
    assert_eq!(s.bridge_selector.bridges[0].endpoints, 3);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["bridge_selector"]["operational_bridge_count"], 1);
}

#[test]
fn unknown_iqs_are_refused_and_pings_answered() {
    let mut h = Harness::new();
    let id = h.iq(
        Link::Client,
        "x@y/z",
        IqKind::Get,
        r#"<ping xmlns="urn:xmpp:ping"/>"#,
    );
    assert!(h.reply_to(&id).is_ok());
    let id = h.iq(
        Link::Client,
        "x@y/z",
        IqKind::Get,
        r#"<query xmlns="jabber:iq:version"/>"#,
    );
    assert_eq!(
        condition(&h.reply_to(&id)),
        Some(Condition::ServiceUnavailable)
    );
}

#[test]
fn source_add_from_a_pending_session_is_queued_for_others() {
    // b accepts before a: a's pending session gets b's sources when a accepts.
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let sid_b = sid_of(&inits, "bbbb2222");
    assert!(
        h.jingle_from(ROOM, "bbbb2222", &session_accept("bbbb2222", &sid_b, 2000))
            .is_ok()
    );
    assert!(h.jingles("source-add").is_empty());
    let sid_a = sid_of(&inits, "aaaa1111");
    assert!(
        h.jingle_from(ROOM, "aaaa1111", &session_accept("aaaa1111", &sid_a, 1000))
            .is_ok()
    );
    let adds = h.jingles("source-add");
    let to_a: Vec<_> = adds.iter().filter(|(n, _)| n == "aaaa1111").collect();
    assert_eq!(to_a.len(), 1);
    assert!(sources_of(&to_a[0].1).get("bbbb2222").is_some());
    let _ = Action::SourceAdd;
}

fn colibri_error(condition: &str, reason: &str) -> RequestFailure {
    RequestFailure::Error(Some(el(&format!(
        r#"<error xmlns="jabber:client" type="cancel"><{condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/><error xmlns="jitsi:colibri2" reason="{reason}"/></error>"#
    ))))
}

#[test]
fn a_conference_the_bridge_lost_is_recreated_on_the_same_bridge() {
    let (mut h, inits) = Harness::conference(ROOM, &["aaaa1111", "bbbb2222"]);
    let sid = sid_of(&inits, "aaaa1111");
    assert!(
        h.jingle_from(ROOM, "aaaa1111", &session_accept("aaaa1111", &sid, 1000))
            .is_ok()
    );
    let update = h.one_request("update", |r| {
        r.payload.is("conference-modify", ns::COLIBRI2)
    });
    h.respond(
        update.id,
        Err(colibri_error("item-not-found", "conference_not_found")),
    );
    assert_eq!(h.jingles("session-terminate").len(), 2);
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2);
    assert!(
        allocs.iter().all(|(b, _, _)| b.ends_with("/jvb1")),
        "same bridge, still operational"
    );
    assert_eq!(
        allocs.iter().filter(|a| a.2).count(),
        1,
        "the conference is created again"
    );
    assert!(
        h.focus
            .bridges()
            .is_operational(&format!("{BREWERY}/jvb1"), h.now)
    );
    assert_eq!(h.focus.stats(h.now).total_participants_moved, 0);
}

#[test]
fn a_stale_conference_on_the_bridge_is_expired_and_created_again() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    let allocs = h.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2));
    let first = allocs
        .iter()
        .find(|a| a.payload.attr("create") == Some("true"))
        .unwrap();
    h.respond(
        first.id,
        Err(colibri_error("conflict", "conference_already_exists")),
    );
    let later: Vec<_> = allocs.iter().filter(|a| a.id != first.id).collect();
    for a in later {
        // The second allocation belonged to the dropped session: its answer is ignored.
        h.respond(
            a.id,
            Err(colibri_error("item-not-found", "conference_not_found")),
        );
    }
    // Expire of the stale conference, then fresh allocations with create.
    let expire = h.one_request("expire", |r| {
        r.payload.is("conference-modify", ns::COLIBRI2) && r.payload.attr("expire") == Some("true")
    });
    h.respond(expire.id, Ok(None));
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2, "{allocs:?}");
    assert_eq!(allocs.iter().filter(|a| a.2).count(), 1);
    assert_eq!(h.session_initiates().len(), 2);
}

#[test]
fn requests_that_could_not_be_sent_are_retried_without_blaming_the_bridge() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    let allocs = h.requests(|r| r.payload.is("conference-modify", ns::COLIBRI2));
    for a in &allocs {
        h.respond(a.id, Err(RequestFailure::NotConnected));
    }
    assert!(
        h.focus
            .bridges()
            .is_operational(&format!("{BREWERY}/jvb1"), h.now)
    );
    assert!(h.answer_allocations().is_empty());
    // (Expiring what might have been allocated; these fail too while offline.)
    h.bridge_updates();
    h.advance(Duration::from_secs(6));
    let allocs = h.answer_allocations();
    assert_eq!(allocs.len(), 2, "retried: {allocs:?}");
    // A session-initiate that could not be sent: the endpoint is released and the invitation retried.
    let inits = h.requests(|r| r.payload.is("jingle", ns::JINGLE));
    h.respond(inits[0].id, Err(RequestFailure::NotConnected));
    h.respond(inits[1].id, Ok(None));
    let expire = h.bridge_updates();
    assert_eq!(expire.len(), 1, "{expire:?}");
    h.advance(Duration::from_secs(6));
    assert_eq!(h.answer_allocations().len(), 1);
    assert_eq!(h.session_initiates().len(), 1);
}

/// The start-muted rules of each session-initiate, by nick.
fn start_muted_of(inits: &[(String, Jingle)]) -> BTreeMap<String, Option<(bool, bool)>> {
    inits
        .iter()
        .map(|(n, j)| (n.clone(), j.start_muted.map(|m| (m.audio, m.video))))
        .collect()
}

#[test]
fn start_muted_after_n_members_from_the_conference_request() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    // config.js startAudioMuted: 2, startVideoMuted: 1.
    h.create_room_with(ROOM, &[("startAudioMuted", "2"), ("startVideoMuted", "1")]);
    for n in ["aaaa1111", "bbbb2222", "cccc3333"] {
        h.join_member(ROOM, n);
    }
    h.answer_discos();
    h.answer_allocations();
    let got = start_muted_of(&h.session_initiates());
    assert_eq!(got["aaaa1111"], None, "the first member starts unmuted");
    assert_eq!(got["bbbb2222"], Some((false, true)), "video muted after 1");
    assert_eq!(got["cccc3333"], Some((true, true)), "audio muted after 2");
    // The written element is what the client looks for: jingle>startmuted with both attributes.
    let mut j = Jingle::new(Action::SessionInitiate, "s");
    j.start_muted = Some(signaling::jingle::StartMuted {
        audio: false,
        video: true,
    });
    let written = j.to_element();
    let el = written
        .get_child("startmuted", "http://jitsi.org/jitmeet/start-muted")
        .expect("jingle>startmuted");
    assert_eq!(
        (el.attr("audio"), el.attr("video")),
        (Some("false"), Some("true"))
    );
}

#[test]
fn a_moderators_start_muted_policy_applies_to_later_first_invitations_only() {
    let mut h = Harness::new();
    h.add_bridge("jvb1", 0.1);
    h.create_room(ROOM);
    h.join_member(ROOM, "aaaa1111");
    h.join_member(ROOM, "bbbb2222");
    h.answer_discos();
    h.answer_allocations();
    let got = start_muted_of(&h.session_initiates());
    assert!(got.values().all(Option::is_none), "{got:?}");
    let policy = |nick: &str, affiliation: &str, role: &str| {
        format!(
            r#"<presence xmlns="jabber:client" from="{ROOM}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="{affiliation}" role="{role}" jid="{nick}@meet.example/res"/></x>
            <startmuted xmlns="http://jitsi.org/jitmeet/start-muted" audio="true" video="false"/></presence>"#
        )
    };
    // A plain participant cannot set it.
    h.presence(&policy("bbbb2222", "none", "participant"));
    h.join_member(ROOM, "cccc3333");
    h.answer_allocations();
    assert_eq!(start_muted_of(&h.session_initiates())["cccc3333"], None);
    // The owner (the focus made the first member owner) can.
    h.presence(&policy("aaaa1111", "owner", "moderator"));
    h.join_member(ROOM, "dddd4444");
    h.answer_allocations();
    assert_eq!(
        start_muted_of(&h.session_initiates())["dddd4444"],
        Some((true, false))
    );
    // Moving everyone to another bridge re-invites without the policy: nobody is muted again.
    h.add_bridge("jvb2", 0.1);
    h.remove_bridge("jvb1");
    h.answer_allocations();
    let again = start_muted_of(&h.session_initiates());
    assert_eq!(again.len(), 4, "{again:?}");
    assert!(again.values().all(Option::is_none), "{again:?}");
}

#[path = "tests_hardening.rs"]
mod hardening;
mod moderation;
mod modern;
mod secure_domain;
