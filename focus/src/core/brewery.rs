//! The focus's place in the bridge brewery (`jvbbrewery@<internal MUC>`): staying in it, and telling
//! bridges from other occupants.
//!
//! COLIBRI2 and health-check IQs reach bridges through the room, and Prosody refuses them
//! (`not-acceptable`) from a sender that is not an occupant. So the focus joins again whenever it finds
//! itself out — a refused or unanswered join, its own unavailable presence (kicked, room destroyed,
//! a presence it sent by mistake), a reconnect after a Prosody restart — with a growing delay between
//! attempts.
//!
//! After a (re)join, bridges known before that have not shown up again are given
//! [`BRIDGE_REJOIN_GRACE`] to do so: after a Prosody restart, bridges and focus reconnect in any order,
//! and a bridge that is merely late must not have its conferences moved (the media never stopped).
//!
//! An occupant is taken for a bridge only if its real JID (which the focus sees as a room owner, and
//! docker-jitsi-meet's `muc_room_default_public_jids` shows anyway) is in one of the trusted domains —
//! the auth domain bridges log in to (`jvb@auth.<domain>`), where anonymous users cannot be. This is
//! the rule JVB applies the other way round to COLIBRI2 senders, and it keeps a stray occupant from
//! being sent conferences if Prosody ever lets one in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jid::{BareJid, Jid};
use tracing::{debug, info, warn};

use super::Io;
use super::LEAVE_CONFIRM_DELAY;
use super::muc::{self, MucPresence};
use super::stanza::Link;

/// How long bridges known before a re-join may take to show up again.
pub const BRIDGE_REJOIN_GRACE: Duration = Duration::from_secs(30);
/// Delay before the first re-join attempt; doubled per failed attempt up to [`REJOIN_MAX_DELAY`].
pub const REJOIN_FIRST_DELAY: Duration = Duration::from_secs(1);
pub const REJOIN_MAX_DELAY: Duration = Duration::from_secs(30);
/// Distinct untrusted occupants remembered so that each is logged once.
const REFUSED_REMEMBERED: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// The connection that sees the brewery is down.
    Offline,
    /// Join presence sent; our own presence is due before the deadline.
    Joining {
        deadline: Instant,
    },
    Joined,
    /// Out of the room; join again at `at`.
    Waiting {
        at: Instant,
    },
}

/// What the focus must do after a brewery event.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Bridges to drop: gone from the brewery for longer than the grace.
    pub gone: Vec<String>,
}

/// The focus's membership of the brewery.
#[derive(Debug, Clone)]
pub(crate) struct Brewery {
    room: BareJid,
    nick: String,
    link: Link,
    join_timeout: Duration,
    /// Domains whose accounts may be bridges.
    trusted_domains: Vec<String>,
    state: State,
    failed_attempts: u32,
    /// Bridges seen since the last join presence was sent.
    seen: BTreeSet<String>,
    /// Bridges not seen since the last (re)join → when they are given up.
    missing: BTreeMap<String, Instant>,
    refused: BTreeSet<String>,
    /// Occupants whose stats were ignored because their JID is not trusted.
    pub untrusted_presences: u64,
    /// Times the focus joined again after finding itself out.
    pub rejoins: u64,
}

impl Brewery {
    pub fn new(
        room: BareJid,
        nick: String,
        link: Link,
        join_timeout: Duration,
        trusted_domains: Vec<String>,
    ) -> Self {
        Brewery {
            room,
            nick,
            link,
            join_timeout,
            trusted_domains,
            state: State::Offline,
            failed_attempts: 0,
            seen: BTreeSet::new(),
            missing: BTreeMap::new(),
            refused: BTreeSet::new(),
            untrusted_presences: 0,
            rejoins: 0,
        }
    }

    pub fn room(&self) -> &BareJid {
        &self.room
    }

    pub fn link(&self) -> Link {
        self.link
    }

    pub fn is_joined(&self) -> bool {
        self.state == State::Joined
    }

    /// Whether a presence from the room is our own.
    pub fn is_own(&self, p: &MucPresence) -> bool {
        p.nick == self.nick
    }

    fn join(&mut self, now: Instant, io: &mut Io) {
        io.presence(self.link, muc::join_presence(&self.room, &self.nick, &[]));
        self.seen.clear();
        self.state = State::Joining {
            deadline: now + self.join_timeout,
        };
    }

    /// Out of the room: try again after a delay that grows with each failure.
    fn retry_later(&mut self, now: Instant) {
        let delay = REJOIN_FIRST_DELAY
            .saturating_mul(1u32 << self.failed_attempts.min(16))
            .min(REJOIN_MAX_DELAY);
        self.failed_attempts = self.failed_attempts.saturating_add(1);
        self.state = State::Waiting { at: now + delay };
    }

    pub fn on_online(&mut self, now: Instant, io: &mut Io) {
        self.failed_attempts = 0;
        self.join(now, io);
    }

    pub fn on_offline(&mut self) {
        self.state = State::Offline;
    }

    /// Leaves for good (the focus is shutting down).
    pub fn leave(&mut self, io: &mut Io) {
        io.presence(self.link, muc::leave_presence(&self.room, &self.nick));
        self.state = State::Offline;
    }

    /// Our own presence in the room. `known` are the bridges the focus knows now.
    pub fn on_own_presence<'a>(
        &mut self,
        now: Instant,
        p: &MucPresence,
        known: impl Iterator<Item = &'a str>,
    ) {
        if p.error {
            warn!(brewery = %self.room, "joining the brewery was refused; retrying");
            self.retry_later(now);
            return;
        }
        if !p.available {
            if self.state == State::Offline {
                return;
            }
            warn!(brewery = %self.room, "the focus is out of the brewery; joining again");
            self.rejoins += 1;
            self.retry_later(now);
            return;
        }
        if let State::Joining { .. } | State::Waiting { .. } = self.state {
            info!(brewery = %self.room, "joined the brewery");
            self.state = State::Joined;
            self.failed_attempts = 0;
            // Every occupant is announced before our own presence: whoever was not is missing.
            for jid in known {
                if !self.seen.contains(jid) {
                    debug!(bridge = %jid, "bridge not (yet) back in the brewery");
                    self.missing
                        .insert(jid.to_owned(), now + BRIDGE_REJOIN_GRACE);
                }
            }
        }
    }

    /// A bridge's presence arrived: it is in the room.
    pub fn bridge_present(&mut self, jid: &str) {
        self.seen.insert(jid.to_owned());
        self.missing.remove(jid);
    }

    /// A bridge's unavailable presence: dropped after [`LEAVE_CONFIRM_DELAY`] unless our own connection
    /// drops first (Prosody shutting down), in which case it gets the re-join grace.
    pub fn bridge_left(&mut self, now: Instant, jid: &str) {
        self.seen.remove(jid);
        self.missing
            .insert(jid.to_owned(), now + LEAVE_CONFIRM_DELAY);
    }

    /// A bridge was dropped for another reason.
    pub fn forget(&mut self, jid: &str) {
        self.missing.remove(jid);
        self.seen.remove(jid);
    }

    /// Whether the occupant that sent `p` may be a bridge: its real JID is in a trusted domain.
    pub fn is_trusted(&mut self, p: &MucPresence) -> bool {
        let domain = p
            .real_jid
            .as_deref()
            .and_then(|j| j.parse::<Jid>().ok())
            .map(|j| j.domain().to_string());
        if domain.as_deref().is_some_and(|d| {
            self.trusted_domains
                .iter()
                .any(|t| t.eq_ignore_ascii_case(d))
        }) {
            return true;
        }
        self.untrusted_presences += 1;
        let occupant = format!("{}/{}", self.room, p.nick);
        if self.refused.len() < REFUSED_REMEMBERED && self.refused.insert(occupant.clone()) {
            warn!(%occupant, real_jid = ?p.real_jid, trusted = ?self.trusted_domains,
                "brewery occupant with stats is not a trusted bridge account; ignored");
        } else {
            debug!(%occupant, real_jid = ?p.real_jid, "untrusted brewery occupant ignored");
        }
        false
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let state = match self.state {
            State::Joining { deadline } => Some(deadline),
            State::Waiting { at } => Some(at),
            State::Offline | State::Joined => None,
        };
        // Missing bridges are given up only while in the room (out of it, nobody can be seen).
        let missing = (self.state == State::Joined)
            .then(|| self.missing.values().copied().min())
            .flatten();
        state.into_iter().chain(missing).min()
    }

    pub fn handle_timeout(&mut self, now: Instant, io: &mut Io) -> Outcome {
        match self.state {
            State::Joining { deadline } if deadline <= now => {
                warn!(brewery = %self.room, "no answer to the brewery join; retrying");
                self.retry_later(now);
            }
            State::Waiting { at } if at <= now => self.join(now, io),
            _ => {}
        }
        let mut out = Outcome::default();
        if self.state == State::Joined {
            let due: Vec<String> = self
                .missing
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(j, _)| j.clone())
                .collect();
            for j in due {
                self.missing.remove(&j);
                out.gone.push(j);
            }
        }
        out
    }
}
