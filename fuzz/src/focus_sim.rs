//! The sans-IO focus driven the way its shell drives it, with the rest of the world simulated:
//! Prosody (our own MUC presence when the focus joins a room, room configuration), a bridge
//! (COLIBRI2 allocations, health checks) and the clients (disco#info, Jingle acknowledgements) answer
//! every request at once, unless the fuzz input scripted the next answer. Stanzas from the input go
//! through the same conversion the shell applies (`signaling::xmpp` session: namespace check,
//! xmpp-parsers' presence parser, IQ id / type / first child), then into [`Focus::handle`].
//!
//! The simulation also records what was actually joined so that targets can check the focus keeps no
//! state it was not given: no conference for a room nobody asked for, no more participants than
//! occupants that said they were available, no more bridges than brewery occupants.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use focus::core::{
    CoreConfig, Focus, Input, IqKind, IqRequest, Link, Output, RequestFailure, RequestId,
};
use jid::{BareJid, Jid};
use minidom::Element;

pub const FOCUS_JID: &str = "focus@auth.meet.example/focus";
pub const BREWERY: &str = "jvbbrewery@internal.auth.meet.example";
pub const MUC_DOMAIN: &str = "conference.meet.example";
pub const ROOM: &str = "room1@conference.meet.example";
pub const BRIDGE_NICK: &str = "jvb1";
/// Members of [`ROOM`] when the fixture is done.
pub const MEMBERS: [&str; 2] = ["alice", "bob"];

const NS_CLIENT: &str = "jabber:client";
const NS_MUC: &str = "http://jabber.org/protocol/muc";
const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_COLIBRI2: &str = "jitsi:colibri2";
/// More outputs than this for one input means a request/answer loop (or unbounded fan-out).
const MAX_OUTPUTS_PER_INPUT: usize = 20_000;

/// The focus and its simulated surroundings.
#[derive(Clone)]
pub struct FocusSim {
    pub focus: Focus,
    pub now: Instant,
    /// Answers the input scripted for the focus's next requests (before the simulated ones).
    pub scripted: VecDeque<Result<Option<Element>, RequestFailure>>,
    /// Rooms someone sent a conference request for.
    pub requested_rooms: BTreeSet<BareJid>,
    /// Per room, every nick (other than the focus's) that sent an available presence.
    pub available: BTreeMap<BareJid, BTreeSet<String>>,
    /// Rooms the focus joined (Prosody answered its join presence).
    joined: BTreeSet<BareJid>,
    /// Number of outputs seen (requests, replies, presences).
    pub outputs: u64,
    /// The Jingle session id of each participant's last session-initiate, by nick (seed writers
    /// address Jingle to the right session with it).
    pub sids: BTreeMap<String, String>,
    /// IQ requests fed and replies sent, by (requester, id).
    iq_requests: HashMap<(String, String), u32>,
    iq_replies: HashMap<(String, String), u32>,
    next_iq: u64,
}

/// Escapes text for an XML attribute value or text node.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn el(xml: &str) -> Element {
    xml.parse()
        .unwrap_or_else(|e| panic!("bad fixture XML {e}: {xml}"))
}

impl FocusSim {
    /// A copy of [`FocusSim::with_conference`], built once per process (building it costs more
    /// than most inputs).
    pub fn running() -> Self {
        static BASE: std::sync::OnceLock<FocusSim> = std::sync::OnceLock::new();
        BASE.get_or_init(FocusSim::with_conference).clone()
    }

    /// A focus online, in the brewery with one bridge, and [`ROOM`] running with [`MEMBERS`]
    /// invited (allocated on the bridge, session-initiate acknowledged).
    pub fn with_conference() -> Self {
        let mut cfg = CoreConfig::new(FOCUS_JID, BREWERY.parse().expect("brewery"));
        cfg.bridge.health_check_interval = Duration::from_secs(10);
        // XMPP_MUC_DOMAIN: the focus serves rooms there only.
        cfg.conference_domains = vec![MUC_DOMAIN.into()];
        let mut sim = FocusSim {
            focus: Focus::new(cfg, 7),
            now: Instant::now(),
            scripted: VecDeque::new(),
            requested_rooms: BTreeSet::new(),
            available: BTreeMap::new(),
            joined: BTreeSet::new(),
            outputs: 0,
            sids: BTreeMap::new(),
            iq_requests: HashMap::new(),
            iq_replies: HashMap::new(),
            next_iq: 0,
        };
        sim.input(Input::Online(Link::Client));
        sim.input(Input::Online(Link::Component));
        sim.stanza(Link::Client, &bridge_presence(BRIDGE_NICK, 0.1));
        sim.stanza(
            Link::Component,
            &format!(
                r#"<iq xmlns="jabber:client" type="set" id="conf1" from="u1@meet.example/abc" to="focus.meet.example"><conference xmlns="http://jitsi.org/protocol/focus" room="{ROOM}" machine-uid="m1"><property name="disableRtx" value="false"/></conference></iq>"#
            ),
        );
        for nick in MEMBERS {
            sim.stanza(Link::Client, &member_presence(ROOM, nick));
        }
        let room: BareJid = ROOM.parse().expect("room");
        assert_eq!(
            sim.focus.participants(&room).len(),
            MEMBERS.len(),
            "fixture: members not in the conference"
        );
        sim
    }

    /// Feeds one input and answers whatever the focus asks, until it is quiet.
    pub fn input(&mut self, input: Input) {
        self.focus.handle(self.now, input);
        self.drain();
    }

    /// Moves the clock forward by `d` (bounded), running the focus's timers on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d.min(Duration::from_secs(600));
        let mut same_instant = 0;
        while let Some(t) = self.focus.poll_timeout() {
            if t > end {
                break;
            }
            if t <= self.now {
                same_instant += 1;
                assert!(same_instant < 100, "focus timer does not re-arm");
            } else {
                same_instant = 0;
                self.now = t;
            }
            self.focus.handle_timeout(self.now);
            self.drain();
        }
        self.now = end;
    }

    /// A stanza as it arrives on `link` (XML text). What the shell would drop is dropped.
    pub fn stanza(&mut self, link: Link, xml: &str) {
        let Ok(el) = xml.parse::<Element>() else {
            return;
        };
        if let Some(input) = to_input(link, el) {
            if let Input::Iq(req) = &input
                && req.kind == IqKind::Set
                && req
                    .payload
                    .is("conference", "http://jitsi.org/protocol/focus")
                && let Some(room) = req.payload.attr("room").and_then(|r| r.parse().ok())
            {
                self.requested_rooms.insert(room);
            }
            if let Input::Iq(req) = &input {
                *self
                    .iq_requests
                    .entry((req.from.clone(), req.id.clone()))
                    .or_default() += 1;
            }
            if let Input::Presence { presence, .. } = &input {
                self.note_presence(presence);
            }
            self.input(input);
        }
    }

    fn note_presence(&mut self, p: &Element) {
        let Some(from) = p.attr("from").and_then(|f| f.parse::<Jid>().ok()) else {
            return;
        };
        let Some(nick) = from.resource() else { return };
        let kind = p.attr("type").unwrap_or("available");
        if kind != "unavailable" && kind != "error" {
            self.available
                .entry(from.to_bare())
                .or_default()
                .insert(nick.to_string());
        }
    }

    /// Answers every request and Prosody's side of every join, until the focus has nothing to say.
    fn drain(&mut self) {
        let mut n = 0;
        while let Some(o) = self.focus.poll_output() {
            n += 1;
            self.outputs += 1;
            assert!(
                n <= MAX_OUTPUTS_PER_INPUT,
                "more than {MAX_OUTPUTS_PER_INPUT} outputs for one input"
            );
            match o {
                Output::Request {
                    request,
                    to,
                    kind,
                    payload,
                    ..
                } => {
                    if payload.attr("action") == Some("session-initiate")
                        && let (Some(sid), Some((_, nick))) =
                            (payload.attr("sid"), to.rsplit_once('/'))
                    {
                        self.sids.insert(nick.to_owned(), sid.to_owned());
                    }
                    let answer = match self.scripted.pop_front() {
                        Some(a) => a,
                        None => simulated_answer(&to, kind, &payload),
                    };
                    self.respond(request, answer);
                }
                Output::Presence { presence, .. } => self.prosody_presence(&presence),
                Output::Reply { to, id, .. } => {
                    let key = (to, id);
                    let asked = self.iq_requests.get(&key).copied().unwrap_or(0);
                    let n = self.iq_replies.entry(key.clone()).or_default();
                    *n += 1;
                    assert!(
                        *n <= asked,
                        "reply {n} to {key:?}, which was asked {asked} times"
                    );
                }
            }
        }
    }

    fn respond(&mut self, request: RequestId, result: Result<Option<Element>, RequestFailure>) {
        self.focus
            .handle(self.now, Input::IqResponse { request, result });
    }

    /// Prosody's answer to the focus's own presence: on a join (or an update), its self-presence
    /// as room owner (a new room gets status 201); on a leave, its unavailable self-presence.
    fn prosody_presence(&mut self, p: &Element) {
        let Some(to) = p.attr("to") else { return };
        let Ok(jid) = to.parse::<Jid>() else { return };
        let Some(nick) = jid.resource().map(|r| r.to_string()) else {
            return;
        };
        let room = jid.to_bare();
        let (room_x, nick_x) = (esc(&room.to_string()), esc(&nick));
        let leaving = p.attr("type") == Some("unavailable");
        let answer = if leaving {
            self.joined.remove(&room);
            format!(
                r#"<presence xmlns="jabber:client" type="unavailable" from="{room_x}/{nick_x}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="none"/><status code="110"/></x></presence>"#
            )
        } else {
            let created = p.get_child("x", NS_MUC).is_some() && self.joined.insert(room.clone());
            let created = if created && room.to_string() != BREWERY {
                r#"<status code="201"/>"#
            } else {
                ""
            };
            format!(
                r#"<presence xmlns="jabber:client" from="{room_x}/{nick_x}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="owner" role="moderator" jid="{FOCUS_JID}"/><status code="110"/>{created}</x></presence>"#
            )
        };
        self.focus.handle(
            self.now,
            Input::Presence {
                link: Link::Client,
                presence: el(&answer),
            },
        );
    }

    /// A fresh IQ id for stanzas the simulation sends.
    pub fn iq_id(&mut self) -> String {
        self.next_iq += 1;
        format!("sim{}", self.next_iq)
    }

    /// Panics if the focus holds more than it was given: conferences for rooms nobody requested,
    /// more participants than available occupants, more bridges than brewery occupants. (Whether a
    /// room may be requested at all — the brewery, rooms outside the MUC domain — is the conference
    /// request handling's business, issue 11 item 1; not checked here.)
    pub fn check_bounded(&self) {
        let brewery: BareJid = BREWERY.parse().expect("brewery");
        for room in self.focus.conference_rooms() {
            assert!(
                self.requested_rooms.contains(room),
                "conference for {room}, which nobody requested"
            );
            let occupants = self
                .available
                .get(room)
                .map_or(0, |s| s.iter().filter(|n| n.as_str() != "focus").count());
            let participants = self.focus.participants(room).len();
            assert!(
                participants <= occupants,
                "{room}: {participants} participants but {occupants} occupants ever joined"
            );
        }
        let bridges = self.focus.bridges().iter().count();
        let brewery_occupants = self.available.get(&brewery).map_or(0, |s| s.len());
        assert!(
            bridges <= brewery_occupants,
            "{bridges} bridges but {brewery_occupants} brewery occupants ever joined"
        );
    }
}

/// What the shell turns a received stanza into (`signaling::xmpp::session`: only `jabber:client`
/// stanzas; presence must satisfy xmpp-parsers; an IQ needs an id, type get/set and a child).
pub fn to_input(link: Link, el: Element) -> Option<Input> {
    if el.ns() != NS_CLIENT {
        return None;
    }
    match el.name() {
        "presence" => {
            let p = xmpp_parsers::presence::Presence::try_from(el).ok()?;
            Some(Input::Presence {
                link,
                presence: Element::from(p),
            })
        }
        "iq" => {
            let from = el.attr("from").and_then(|f| Jid::new(f).ok())?.to_string();
            let id = el.attr("id")?.to_owned();
            let kind = match el.attr("type") {
                Some("get") => IqKind::Get,
                Some("set") => IqKind::Set,
                _ => return None,
            };
            let payload = el.children().next()?.clone();
            Some(Input::Iq(IqRequest {
                link,
                from,
                id,
                kind,
                payload,
            }))
        }
        _ => None,
    }
}

/// A bridge's brewery presence with its stats.
pub fn bridge_presence(nick: &str, stress: f64) -> String {
    format!(
        r#"<presence xmlns="jabber:client" from="{BREWERY}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant"/></x><stats xmlns="http://jitsi.org/protocol/colibri"><stat name="stress_level" value="{stress}"/><stat name="drain" value="false"/><stat name="graceful_shutdown" value="false"/><stat name="shutting_down" value="false"/><stat name="version" value="0.1.0"/><stat name="region" value="local"/></stats></presence>"#
    )
}

/// A 2021 lib-jitsi-meet occupant's join presence.
pub fn member_presence(room: &str, nick: &str) -> String {
    format!(
        r#"<presence xmlns="jabber:client" from="{room}/{nick}"><x xmlns="http://jabber.org/protocol/muc#user"><item affiliation="none" role="participant" jid="{nick}@meet.example/res"/></x><stats-id>stats-{nick}</stats-id><c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node="https://jitsi.org/jitsi-meet" ver="v2021"/><audiomuted xmlns="http://jitsi.org/jitmeet/audio">false</audiomuted><videomuted xmlns="http://jitsi.org/jitmeet/video">false</videomuted></presence>"#
    )
}

/// How Prosody, the bridge and the clients answer the focus's requests.
fn simulated_answer(
    to: &str,
    kind: IqKind,
    payload: &Element,
) -> Result<Option<Element>, RequestFailure> {
    if payload.is("query", NS_DISCO_INFO) {
        return Ok(Some(el(&testkit::client_2021_disco_info())));
    }
    if payload.is("query", NS_MUC_OWNER) && kind == IqKind::Get {
        return Ok(Some(el(&format!(
            r#"<query xmlns="{NS_MUC_OWNER}"><x xmlns="jabber:x:data" type="form"><field var="muc#roomconfig_whois"><value>moderators</value></field></x></query>"#
        ))));
    }
    if payload.is("conference-modify", NS_COLIBRI2) {
        return Ok(Some(allocation_answer(payload)));
    }
    let _ = to;
    Ok(None)
}

/// A bridge's `conference-modified`: a transport for every endpoint the request creates, and the
/// feedback sources when it creates anything.
fn allocation_answer(request: &Element) -> Element {
    let meeting = esc(request.attr("meeting-id").unwrap_or("m"));
    let mut endpoints = String::new();
    let mut created = request.attr("create") == Some("true");
    for (i, e) in request
        .children()
        .filter(|e| e.name() == "endpoint")
        .enumerate()
    {
        let Some(id) = e.attr("id").map(esc) else {
            continue;
        };
        if e.attr("create") != Some("true") {
            continue;
        }
        created = true;
        let port = 10000 + i;
        endpoints.push_str(&format!(
            r#"<endpoint id="{id}"><transport><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="bu{i}" pwd="bridgepwdbridgepwd1234"><rtcp-mux/><fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="actpass">AB:CD:EF</fingerprint><candidate component="1" foundation="1" generation="0" id="c1" ip="127.0.0.1" network="0" port="{port}" priority="2130706431" protocol="udp" type="host"/></transport><sctp port="5000" role="server"/></transport></endpoint>"#
        ));
    }
    let sources = if created {
        r#"<sources><media-source type="audio" id="jvb-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="411" name="jvb-a0"/></media-source><media-source type="video" id="jvb-v0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="422" name="jvb-v0"/></media-source></sources>"#
    } else {
        ""
    };
    el(&format!(
        r#"<conference-modified xmlns="{NS_COLIBRI2}" meeting-id="{meeting}">{endpoints}{sources}</conference-modified>"#
    ))
}
