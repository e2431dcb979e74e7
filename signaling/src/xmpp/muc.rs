//! MUC rooms joined by a session: join/update/leave presences, recognising our own presence (joined)
//! or an error (refused), and the list of rooms to re-join after a reconnect. Sans-IO.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use minidom::Element;
use thiserror::Error;
use xmpp_parsers::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

use super::stanza::NS_CLIENT;
use crate::ns;
use crate::xml::Builder;

/// FORM_TYPE of the room configuration form (XEP-0045 §10.2).
pub const MUC_ROOMCONFIG_FORM_TYPE: &str = "http://jabber.org/protocol/muc#roomconfig";
/// Who may see occupants' real JIDs; Jicofo submits `anyone` on every conference room it joins.
pub const MUC_ROOMCONFIG_WHOIS: &str = "muc#roomconfig_whois";

/// How long a join may wait for the room's answer.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(15);

/// A room to join, with the extra presence children every presence to it carries (e.g. the bridge's
/// `<stats>`); replace them later with [`XmppHandle::set_muc_presence`](super::XmppHandle::set_muc_presence).
#[derive(Debug, Clone, PartialEq)]
pub struct MucJoin {
    pub room: BareJid,
    pub nick: String,
    pub password: Option<String>,
    pub extra: Vec<Element>,
}

impl MucJoin {
    pub fn new(room: BareJid, nick: impl Into<String>) -> Self {
        MucJoin {
            room,
            nick: nick.into(),
            password: None,
            extra: Vec::new(),
        }
    }

    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    pub fn with_extra(mut self, extra: Vec<Element>) -> Self {
        self.extra = extra;
        self
    }
}

/// A completed join.
#[derive(Debug, Clone, PartialEq)]
pub struct MucJoined {
    /// `room@service/nick` as the room reported it.
    pub occupant: FullJid,
    /// The room did not exist before (status 201).
    pub created: bool,
    /// Our own presence as the room reflected it (role, affiliation …).
    pub presence: Presence,
}

/// Why a MUC operation failed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MucError {
    #[error("nickname '{nick}' is already in use in {room}")]
    NicknameConflict { room: BareJid, nick: String },
    #[error("joining {room} refused ({condition:?}){}", text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
    Refused {
        room: BareJid,
        condition: DefinedCondition,
        text: Option<String>,
    },
    #[error("no answer from {room} within {after:?}")]
    Timeout { room: BareJid, after: Duration },
    #[error("'{nick}' is not a valid nickname")]
    InvalidNick { nick: String },
    #[error("already joined (or joining) {0}")]
    AlreadyJoined(BareJid),
    #[error("not joined to {0}")]
    NotJoined(BareJid),
    /// The session is offline. For presence updates the new payload is kept and used at the re-join.
    #[error("XMPP session not connected")]
    Disconnected,
    #[error("XMPP session closed")]
    Closed,
}

#[derive(Debug)]
pub(crate) enum RoomState<W> {
    /// Presence sent, waiting for our own presence back. `waiter` is `None` for automatic re-joins.
    Joining {
        deadline: Instant,
        waiter: Option<W>,
    },
    Joined,
}

#[derive(Debug)]
pub(crate) struct Room<W> {
    pub(crate) join: MucJoin,
    pub(crate) occupant: FullJid,
    pub(crate) state: RoomState<W>,
}

/// What a presence meant for a room we are in.
#[derive(Debug)]
pub(crate) enum MucOutcome<W> {
    Joined {
        room: BareJid,
        joined: MucJoined,
        /// `None`: this was an automatic re-join.
        waiter: Option<W>,
    },
    Failed {
        room: BareJid,
        error: MucError,
        waiter: Option<W>,
    },
    /// The room removed us (kick, ban, destruction, shutdown).
    Removed { room: BareJid },
}

/// Rooms of one session.
#[derive(Debug)]
pub(crate) struct Rooms<W> {
    rooms: HashMap<BareJid, Room<W>>,
}

impl<W> Default for Rooms<W> {
    fn default() -> Self {
        Rooms {
            rooms: HashMap::new(),
        }
    }
}

impl<W> Rooms<W> {
    /// Starts joining; returns the join presence to send.
    pub(crate) fn begin_join(
        &mut self,
        join: MucJoin,
        now: Instant,
        timeout: Duration,
        waiter: W,
    ) -> Result<Element, (MucError, W)> {
        if self.rooms.contains_key(&join.room) {
            return Err((MucError::AlreadyJoined(join.room), waiter));
        }
        let occupant = match join.room.with_resource_str(&join.nick) {
            Ok(o) => o,
            Err(_) => return Err((MucError::InvalidNick { nick: join.nick }, waiter)),
        };
        let presence = join_presence(&occupant, &join);
        self.rooms.insert(
            join.room.clone(),
            Room {
                join,
                occupant,
                state: RoomState::Joining {
                    deadline: now.checked_add(timeout).unwrap_or(now),
                    waiter: Some(waiter),
                },
            },
        );
        Ok(presence)
    }

    /// After a reconnect: join presences (with the latest payloads) for every room we were in.
    pub(crate) fn rejoin_all(&mut self, now: Instant, timeout: Duration) -> Vec<Element> {
        self.rooms
            .values_mut()
            .map(|room| {
                room.state = RoomState::Joining {
                    deadline: now.checked_add(timeout).unwrap_or(now),
                    waiter: None,
                };
                join_presence(&room.occupant, &room.join)
            })
            .collect()
    }

    /// Replaces a room's extra presence children; returns the presence update to send.
    pub(crate) fn set_extra(
        &mut self,
        room: &BareJid,
        extra: Vec<Element>,
    ) -> Result<Element, MucError> {
        let r = self
            .rooms
            .get_mut(room)
            .ok_or_else(|| MucError::NotJoined(room.clone()))?;
        r.join.extra = extra;
        Ok(update_presence(&r.occupant, &r.join.extra))
    }

    /// Forgets a room; returns the unavailable presence to send.
    pub(crate) fn leave(&mut self, room: &BareJid) -> Result<(Element, Option<W>), MucError> {
        let r = self
            .rooms
            .remove(room)
            .ok_or_else(|| MucError::NotJoined(room.clone()))?;
        let mut p = Presence::new(PresenceType::Unavailable);
        p.to = Some(Jid::from(r.occupant));
        let waiter = match r.state {
            RoomState::Joining { waiter, .. } => waiter,
            RoomState::Joined => None,
        };
        Ok((Element::from(p), waiter))
    }

    /// Interprets a presence; `None` when it is not about our own occupancy of a room we track.
    pub(crate) fn on_presence(&mut self, p: &Presence) -> Option<MucOutcome<W>> {
        let from = p.from.as_ref()?;
        let room_jid = from.to_bare();
        let room = self.rooms.get_mut(&room_jid)?;
        let from_us =
            from.resource().map(|r| r.as_str()) == Some(room.occupant.resource().as_str());
        let codes = status_codes(p);
        match p.type_ {
            PresenceType::Error if from_us || from.resource().is_none() => {
                let (condition, text) = presence_error(p);
                let error = if condition == DefinedCondition::Conflict {
                    MucError::NicknameConflict {
                        room: room_jid.clone(),
                        nick: room.join.nick.clone(),
                    }
                } else {
                    MucError::Refused {
                        room: room_jid.clone(),
                        condition,
                        text,
                    }
                };
                let removed = self.rooms.remove(&room_jid)?;
                let waiter = match removed.state {
                    RoomState::Joining { waiter, .. } => waiter,
                    RoomState::Joined => None,
                };
                Some(MucOutcome::Failed {
                    room: room_jid,
                    error,
                    waiter,
                })
            }
            PresenceType::Unavailable if codes.contains(&110) => {
                self.rooms.remove(&room_jid);
                Some(MucOutcome::Removed { room: room_jid })
            }
            PresenceType::None if codes.contains(&110) || from_us => {
                let RoomState::Joining { .. } = room.state else {
                    return None;
                };
                let RoomState::Joining { waiter, .. } =
                    std::mem::replace(&mut room.state, RoomState::Joined)
                else {
                    return None;
                };
                // The room may have changed our nickname (status 210): believe its `from`.
                let occupant = from
                    .clone()
                    .try_into_full()
                    .unwrap_or(room.occupant.clone());
                room.occupant = occupant.clone();
                Some(MucOutcome::Joined {
                    room: room_jid,
                    joined: MucJoined {
                        occupant,
                        created: codes.contains(&201),
                        presence: p.clone(),
                    },
                    waiter,
                })
            }
            _ => None,
        }
    }

    /// Joins whose room never answered.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(BareJid, FullJid, Option<W>)> {
        let due: Vec<BareJid> = self
            .rooms
            .iter()
            .filter(
                |(_, r)| matches!(r.state, RoomState::Joining { deadline, .. } if deadline <= now),
            )
            .map(|(j, _)| j.clone())
            .collect();
        due.into_iter()
            .filter_map(|j| {
                let r = self.rooms.remove(&j)?;
                match r.state {
                    RoomState::Joining { waiter, .. } => Some((j, r.occupant, waiter)),
                    RoomState::Joined => None,
                }
            })
            .collect()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.rooms
            .values()
            .filter_map(|r| match r.state {
                RoomState::Joining { deadline, .. } => Some(deadline),
                RoomState::Joined => None,
            })
            .min()
    }

    /// The connection is gone: first joins still waiting fail (their callers get the error); rooms
    /// that were joined, or were being re-joined, stay to be re-joined at the next connection.
    pub(crate) fn disconnected(&mut self) -> Vec<W> {
        let failing: Vec<BareJid> = self
            .rooms
            .iter()
            .filter(|(_, r)| {
                matches!(
                    r.state,
                    RoomState::Joining {
                        waiter: Some(_),
                        ..
                    }
                )
            })
            .map(|(j, _)| j.clone())
            .collect();
        failing
            .into_iter()
            .filter_map(|j| match self.rooms.remove(&j)?.state {
                RoomState::Joining { waiter, .. } => waiter,
                RoomState::Joined => None,
            })
            .collect()
    }

    /// Every room (for shutdown: unavailable presences and failing waiters).
    pub(crate) fn drain(&mut self) -> Vec<Room<W>> {
        self.rooms.drain().map(|(_, r)| r).collect()
    }

    #[cfg(test)]
    pub(crate) fn is_joined(&self, room: &BareJid) -> bool {
        matches!(
            self.rooms.get(room),
            Some(Room {
                state: RoomState::Joined,
                ..
            })
        )
    }
}

fn join_presence(occupant: &FullJid, join: &MucJoin) -> Element {
    let mut x = Builder::new("x", ns::MUC).child(
        Builder::new("history", ns::MUC)
            .attr("maxstanzas", 0)
            .build(),
    );
    if let Some(pw) = &join.password {
        x = x.child(Builder::new("password", ns::MUC).text(pw.clone()).build());
    }
    let mut p = Presence::available();
    p.to = Some(Jid::from(occupant.clone()));
    p.payloads.push(x.build());
    p.payloads.extend(join.extra.iter().cloned());
    Element::from(p)
}

fn update_presence(occupant: &FullJid, extra: &[Element]) -> Element {
    let mut p = Presence::available();
    p.to = Some(Jid::from(occupant.clone()));
    p.payloads.extend(extra.iter().cloned());
    Element::from(p)
}

/// The muc#user status codes of a presence.
pub(crate) fn status_codes(p: &Presence) -> Vec<u16> {
    p.payloads
        .iter()
        .filter(|e| e.is("x", ns::MUC_USER))
        .flat_map(|x| x.children().filter(|c| c.is("status", ns::MUC_USER)))
        .filter_map(|s| s.attr("code").and_then(|c| c.parse().ok()))
        .collect()
}

fn presence_error(p: &Presence) -> (DefinedCondition, Option<String>) {
    p.payloads
        .iter()
        .find(|e| e.is("error", NS_CLIENT))
        .and_then(|e| StanzaError::try_from(e.clone()).ok())
        .map(|e| (e.defined_condition, e.texts.values().next().cloned()))
        .unwrap_or((DefinedCondition::UndefinedCondition, None))
}

/// `<query xmlns='muc#owner'/>`: asks for the room configuration form.
pub(crate) fn owner_form_request() -> Element {
    Element::bare("query", ns::MUC_OWNER)
}

/// `<query xmlns='muc#owner'><x type='submit'>…</x></query>` with FORM_TYPE and `fields`.
pub(crate) fn owner_form_submit(fields: &[(&str, &[&str])]) -> Element {
    let field = |var: &str, values: &[&str]| {
        Builder::new("field", ns::DATA_FORMS)
            .attr("var", var)
            .children(
                values
                    .iter()
                    .map(|v| Builder::new("value", ns::DATA_FORMS).text(*v).build()),
            )
            .build()
    };
    let mut x = Builder::new("x", ns::DATA_FORMS)
        .attr("type", "submit")
        .child(
            Builder::new("field", ns::DATA_FORMS)
                .attr("var", "FORM_TYPE")
                .attr("type", "hidden")
                .child(
                    Builder::new("value", ns::DATA_FORMS)
                        .text(MUC_ROOMCONFIG_FORM_TYPE)
                        .build(),
                )
                .build(),
        )
        .build();
    for (var, values) in fields {
        x.append_child(field(var, values));
    }
    Builder::new("query", ns::MUC_OWNER).child(x).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    fn presence(xml: &str) -> Presence {
        Presence::try_from(xml.parse::<Element>().unwrap()).unwrap()
    }

    fn stats(v: &str) -> Element {
        Builder::new("stats", ns::COLIBRI)
            .child(
                Builder::new("stat", ns::COLIBRI)
                    .attr("name", "stress_level")
                    .attr("value", v)
                    .build(),
            )
            .build()
    }

    #[test]
    fn join_presence_carries_muc_element_password_and_extras() {
        let mut rooms = Rooms::default();
        let join = MucJoin::new(bare("jvbbrewery@internal.auth.meet.example"), "jvb-1")
            .with_password("pw")
            .with_extra(vec![stats("0.1")]);
        let p = rooms
            .begin_join(join, Instant::now(), JOIN_TIMEOUT, ())
            .unwrap();
        assert_eq!(
            p.attr("to"),
            Some("jvbbrewery@internal.auth.meet.example/jvb-1")
        );
        let x = p.get_child("x", ns::MUC).unwrap();
        assert_eq!(
            x.get_child("password", ns::MUC).map(Element::text),
            Some("pw".into())
        );
        assert_eq!(
            x.get_child("history", ns::MUC)
                .and_then(|h| h.attr("maxstanzas")),
            Some("0")
        );
        assert!(p.get_child("stats", ns::COLIBRI).is_some());
    }

    #[test]
    fn self_presence_completes_the_join_and_updates_keep_the_payload_for_rejoins() {
        let room = bare("r@conference.meet.example");
        let mut rooms = Rooms::default();
        let t0 = Instant::now();
        rooms
            .begin_join(MucJoin::new(room.clone(), "focus"), t0, JOIN_TIMEOUT, 'w')
            .unwrap();
        // Someone else's presence does not complete our join.
        let other = presence(
            "<presence xmlns='jabber:client' from='r@conference.meet.example/bob'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/></x></presence>",
        );
        assert!(rooms.on_presence(&other).is_none());
        let own = presence(
            "<presence xmlns='jabber:client' from='r@conference.meet.example/focus'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/>\
             <status code='110'/><status code='201'/></x></presence>",
        );
        match rooms.on_presence(&own) {
            Some(MucOutcome::Joined { joined, waiter, .. }) => {
                assert_eq!(waiter, Some('w'));
                assert!(joined.created);
                assert_eq!(
                    joined.occupant.to_string(),
                    "r@conference.meet.example/focus"
                );
            }
            o => panic!("unexpected {o:?}"),
        }
        assert!(rooms.is_joined(&room));
        // Presence updates replace the extras.
        let update = rooms.set_extra(&room, vec![stats("0.7")]).unwrap();
        assert!(update.get_child("x", ns::MUC).is_none());
        // The connection drops: the joined room stays, and the re-join carries the latest payload.
        assert!(rooms.disconnected().is_empty());
        let again = rooms.rejoin_all(t0, JOIN_TIMEOUT);
        assert_eq!(again.len(), 1);
        let stat = again[0]
            .get_child("stats", ns::COLIBRI)
            .and_then(|s| s.get_child("stat", ns::COLIBRI))
            .and_then(|s| s.attr("value"));
        assert_eq!(stat, Some("0.7"));
        assert!(again[0].get_child("x", ns::MUC).is_some());
        match rooms.on_presence(&own) {
            Some(MucOutcome::Joined { waiter: None, .. }) => {}
            o => panic!("unexpected {o:?}"),
        }
    }

    #[test]
    fn nickname_conflict_is_a_typed_error_and_forgets_the_room() {
        let room = bare("r@conference.meet.example");
        let mut rooms = Rooms::default();
        rooms
            .begin_join(
                MucJoin::new(room.clone(), "focus"),
                Instant::now(),
                JOIN_TIMEOUT,
                1,
            )
            .unwrap();
        let err = presence(
            "<presence xmlns='jabber:client' type='error' from='r@conference.meet.example/focus'>\
             <error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        match rooms.on_presence(&err) {
            Some(MucOutcome::Failed {
                error: MucError::NicknameConflict { nick, .. },
                waiter: Some(1),
                ..
            }) => assert_eq!(nick, "focus"),
            o => panic!("unexpected {o:?}"),
        }
        assert!(!rooms.is_joined(&room));
        assert!(matches!(
            rooms.set_extra(&room, vec![]),
            Err(MucError::NotJoined(_))
        ));
    }

    #[test]
    fn other_errors_timeouts_and_disconnects_fail_first_joins() {
        let t0 = Instant::now();
        let mut rooms = Rooms::default();
        let a = bare("a@c.example");
        let b = bare("b@c.example");
        rooms
            .begin_join(
                MucJoin::new(a.clone(), "n"),
                t0,
                Duration::from_secs(1),
                'a',
            )
            .unwrap();
        rooms
            .begin_join(
                MucJoin::new(b.clone(), "n"),
                t0,
                Duration::from_secs(5),
                'b',
            )
            .unwrap();
        assert!(matches!(
            rooms.begin_join(MucJoin::new(a.clone(), "n"), t0, JOIN_TIMEOUT, 'x'),
            Err((MucError::AlreadyJoined(_), 'x'))
        ));
        let forbidden = presence(
            "<presence xmlns='jabber:client' type='error' from='b@c.example/n'>\
             <error type='auth'><registration-required xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        assert!(matches!(
            rooms.on_presence(&forbidden),
            Some(MucOutcome::Failed {
                error: MucError::Refused {
                    condition: DefinedCondition::RegistrationRequired,
                    ..
                },
                ..
            })
        ));
        assert_eq!(rooms.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let expired = rooms.expire(t0 + Duration::from_secs(1));
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, a);
        assert_eq!(expired[0].1.to_string(), "a@c.example/n");
        assert_eq!(expired[0].2, Some('a'));
        rooms
            .begin_join(MucJoin::new(a, "n"), t0, JOIN_TIMEOUT, 'c')
            .unwrap();
        assert_eq!(rooms.disconnected(), vec!['c']);
        assert!(rooms.rejoin_all(t0, JOIN_TIMEOUT).is_empty());
    }

    #[test]
    fn bad_nicknames_and_kicks() {
        let mut rooms = Rooms::default();
        assert!(matches!(
            rooms.begin_join(
                MucJoin::new(bare("a@c.example"), ""),
                Instant::now(),
                JOIN_TIMEOUT,
                ()
            ),
            Err((MucError::InvalidNick { .. }, ()))
        ));
        rooms
            .begin_join(
                MucJoin::new(bare("a@c.example"), "n"),
                Instant::now(),
                JOIN_TIMEOUT,
                (),
            )
            .unwrap();
        let kicked = presence(
            "<presence xmlns='jabber:client' type='unavailable' from='a@c.example/n'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><status code='110'/><status code='307'/></x></presence>",
        );
        assert!(matches!(
            rooms.on_presence(&kicked),
            Some(MucOutcome::Removed { .. })
        ));
        assert!(rooms.drain().is_empty());
    }

    #[test]
    fn room_config_submit_form() {
        let q = owner_form_submit(&[(MUC_ROOMCONFIG_WHOIS, &["anyone"])]);
        assert!(q.is("query", ns::MUC_OWNER));
        let x = q.get_child("x", ns::DATA_FORMS).unwrap();
        assert_eq!(x.attr("type"), Some("submit"));
        let fields: Vec<(String, String)> = x
            .children()
            .map(|f| {
                (
                    f.attr("var").unwrap_or("").to_owned(),
                    f.children().map(Element::text).collect(),
                )
            })
            .collect();
        assert_eq!(
            fields,
            [
                ("FORM_TYPE".to_owned(), MUC_ROOMCONFIG_FORM_TYPE.to_owned()),
                (MUC_ROOMCONFIG_WHOIS.to_owned(), "anyone".to_owned())
            ]
        );
    }
}
