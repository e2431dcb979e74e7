//! Secure domain: who may create a conference, and who is a host.
//!
//! Prosody checks passwords and tokens; the focus only trusts the domain a client logged in to, as
//! Jicofo's `XMPPDomainAuthAuthority` / `ExternalJWTAuthority` do (jicofo
//! `jicofo/src/main/java/org/jitsi/jicofo/auth/`, `xmpp/ConferenceIqHandler.kt`):
//!
//! - A conference request from a JID on the login domain (`XMPP_DOMAIN` in docker: the authenticated
//!   VirtualHost) opens an authentication session: the answer carries `session-id` and `identity` (the
//!   bare JID), and the session remembers the full JID it authenticated.
//! - A request carrying a known `session-id` (the client keeps it, with its `machine-uid`) authenticates
//!   whatever JID sent it — how a guest who logged in on the side becomes a host. An unknown session is
//!   `not-acceptable` + `session-invalid`, a machine-uid mismatch `not-acceptable`.
//! - Only an authenticated JID may make the focus create a room; anyone else gets `not-authorized`, which
//!   lib-jitsi-meet turns into `AUTHENTICATION_REQUIRED` ("waiting for the host"; the app retries).
//! - Members whose real JID has a session are made owners (Jicofo's `AuthenticationRoleManager`,
//!   replacing auto-owner).
//!
//! - A request over HTTP (`POST /conference-request/v1`, [`super::Link::Rest`]) has no JID: only its
//!   `sessionId` (with its `machineUid`) can authenticate it, and it leaves the session bound to the JID
//!   it authenticated over XMPP. Jicofo runs these requests through the same authority with no sender
//!   (jicofo `ktor/ConferenceRequest.kt`), so a session id is all that can vouch for them there too.
//!   (Jicofo then looks the creator up by its missing JID and refuses every room creation over HTTP;
//!   here a valid session may create the room, as the same session may over XMPP from a guest JID.) A
//!   JWT in `Authorization` is not checked by the focus (Prosody checks tokens; the focus has no key),
//!   so it never authenticates an HTTP request.
//!
//! Sessions expire `lifetime` after their last use; without auto-login they end with their conference.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jid::BareJid;
use minidom::Element;
use signaling::focus_iq::{ConferenceRequest, ConferenceResponse, Property};
use signaling::ns;
use signaling::xml::Builder;
use tracing::info;

use super::rng::Rng;
use super::stanza::{Condition, StanzaError};

/// The application-specific condition of an unknown session (`<session-invalid xmlns=focus/>`).
const SESSION_INVALID: &str = "session-invalid";

/// How clients authenticate (docker `AUTH_TYPE`: `jwt` → JWT, anything else → XMPP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// Users log in to the login domain with a password (internal_hashed, LDAP, …).
    Xmpp,
    /// Users log in with a token (Prosody's `token` authentication); the client obtains it elsewhere,
    /// so authentication is "external" and sessions only live for one conference and a minute.
    Jwt,
}

/// Jicofo's `jicofo.authentication` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    pub kind: AuthKind,
    /// Users logged in to this domain are authenticated (`login-url`, docker: `XMPP_DOMAIN`).
    pub login_domain: String,
    /// Keep sessions after their conference ends (`enable-auto-login`, docker `ENABLE_AUTO_LOGIN`).
    pub enable_auto_login: bool,
    /// How long an unused session lives (`authentication-lifetime`, docker `JICOFO_AUTH_LIFETIME`).
    pub lifetime: Duration,
}

impl AuthConfig {
    /// Jicofo's defaults for `kind` on `login_domain` (JWT sessions are short and per conference, as
    /// Jicofo's `ExternalJWTAuthority` fixes them).
    pub fn new(kind: AuthKind, login_domain: &str) -> Self {
        let (enable_auto_login, lifetime) = match kind {
            AuthKind::Xmpp => (true, Duration::from_secs(24 * 3600)),
            AuthKind::Jwt => (false, Duration::from_secs(60)),
        };
        AuthConfig {
            kind,
            login_domain: login_domain.to_owned(),
            enable_auto_login,
            lifetime,
        }
    }

    fn external(&self) -> bool {
        self.kind == AuthKind::Jwt
    }
}

/// What a conference answer says about authentication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthAnswer {
    /// `None`: authentication is off (`authentication=false`); `Some(external)`: on.
    pub enabled: Option<bool>,
    /// The session and identity the requester is authenticated with.
    pub session: Option<(String, String)>,
}

impl AuthAnswer {
    /// The conference answer for `room`, decorated with the authentication properties.
    pub fn response(&self, room: BareJid, focus_jid: &str, ready: bool) -> ConferenceResponse {
        let mut r = ConferenceResponse::ready(room, focus_jid);
        r.ready = ready;
        if let Some(external) = self.enabled {
            r.properties = vec![
                Property::new("authentication", true),
                Property::new("externalAuth", external),
            ];
        }
        if let Some((sid, identity)) = &self.session {
            r.session_id = Some(sid.clone());
            r.identity = Some(identity.clone());
        }
        r
    }
}

#[derive(Debug, Clone)]
struct Session {
    machine_uid: String,
    /// The bare JID the session was opened for.
    identity: String,
    room: BareJid,
    /// The full JID last authenticated with this session.
    jid: String,
    used: Instant,
}

/// The authentication sessions (Jicofo's `AbstractAuthAuthority`).
#[derive(Debug, Clone)]
pub(crate) struct Authority {
    cfg: Option<AuthConfig>,
    sessions: BTreeMap<String, Session>,
}

/// `jid`'s domain part (`user@domain/res` → `domain`).
fn domain_of(jid: &str) -> &str {
    let bare = jid.split_once('/').map_or(jid, |(b, _)| b);
    bare.split_once('@').map_or(bare, |(_, d)| d)
}

fn bare_of(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(b, _)| b)
}

fn session_invalid() -> StanzaError {
    StanzaError::new(Condition::NotAcceptable, "invalid session")
        .with_extra(Element::bare(SESSION_INVALID, ns::FOCUS))
}

impl Authority {
    pub fn new(cfg: Option<AuthConfig>) -> Self {
        Authority {
            cfg,
            sessions: BTreeMap::new(),
        }
    }

    /// Checks a conference request from `sender` (the client's real full JID; `None` over HTTP, where
    /// only a session id authenticates) for `room_exists` or not: opens or reuses a session, or
    /// refuses. Returns what the answer must say.
    pub fn process(
        &mut self,
        now: Instant,
        rng: &mut Rng,
        request: &ConferenceRequest,
        sender: Option<&str>,
        room_exists: bool,
    ) -> Result<AuthAnswer, StanzaError> {
        let Some(cfg) = self.cfg.clone() else {
            return Ok(AuthAnswer::default());
        };
        let mut answer = AuthAnswer {
            enabled: Some(cfg.external()),
            session: None,
        };
        let machine_uid = request.machine_uid.as_deref().unwrap_or_default();
        let mut sid = match request.session_id.as_deref() {
            Some(sid) => {
                let s = self.sessions.get(sid).ok_or_else(session_invalid)?;
                if s.machine_uid != machine_uid {
                    return Err(StanzaError::new(
                        Condition::NotAcceptable,
                        "machine UID mismatch or empty",
                    ));
                }
                Some(sid.to_owned())
            }
            None => None,
        };
        let login_user = sender.filter(|s| domain_of(s).eq_ignore_ascii_case(&cfg.login_domain));
        if let (None, Some(sender)) = (&sid, login_user) {
            if machine_uid.is_empty() {
                return Err(StanzaError::new(
                    Condition::NotAcceptable,
                    "Missing mandatory attribute 'machine-uid'",
                ));
            }
            let id = rng.uuid();
            info!(identity = bare_of(sender), session = %id, "authentication session created");
            self.sessions.insert(
                id.clone(),
                Session {
                    machine_uid: machine_uid.to_owned(),
                    identity: bare_of(sender).to_owned(),
                    room: request.room.clone(),
                    jid: sender.to_owned(),
                    used: now,
                },
            );
            sid = Some(id);
        }
        if let Some(s) = sid.as_ref().and_then(|id| self.sessions.get_mut(id)) {
            match sender {
                Some(sender) => {
                    if s.jid != sender {
                        info!(jid = sender, identity = %s.identity, "authenticated with an existing session");
                    }
                    s.jid = sender.to_owned();
                }
                None => {
                    info!(identity = %s.identity, "HTTP request authenticated with an existing session")
                }
            }
            s.used = now;
            answer.session = sid.map(|id| (id, s.identity.clone()));
        }
        if !room_exists && answer.session.is_none() {
            return Err(StanzaError::new(
                Condition::NotAuthorized,
                "not authorized user domain",
            ));
        }
        Ok(answer)
    }

    /// The answer for a request that is not authenticated at all (a breakout room): it says whether
    /// authentication is on, and carries no session.
    pub fn unchecked(&self) -> AuthAnswer {
        AuthAnswer {
            enabled: self.cfg.as_ref().map(AuthConfig::external),
            session: None,
        }
    }

    /// The identity `jid` (a real full JID) is authenticated as, if any.
    pub fn identity(&self, jid: &str) -> Option<&str> {
        self.sessions
            .values()
            .find(|s| s.jid == jid)
            .map(|s| s.identity.as_str())
    }

    /// Answers a `<login-url>` query: where the app sends a user to log in (Jicofo's
    /// `createLoginUrl`: the room with `?login=true` for XMPP, nothing for JWT, whose login page the
    /// app knows).
    pub fn login_url(&self, query: &Element) -> Result<Element, StanzaError> {
        let Some(cfg) = &self.cfg else {
            return Err(StanzaError::new(
                Condition::ServiceUnavailable,
                "authentication is disabled",
            ));
        };
        let room: BareJid = query
            .attr("room")
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| StanzaError::new(Condition::NotAcceptable, "no room"))?;
        if query.attr("machine-uid").is_none_or(str::is_empty) {
            return Err(StanzaError::new(
                Condition::BadRequest,
                "missing mandatory attribute 'machineUID'",
            ));
        }
        let url = match cfg.kind {
            AuthKind::Xmpp => room.node().map(|n| format!("./{n}?login=true")),
            AuthKind::Jwt => None,
        };
        Ok(Builder::new("login-url", ns::FOCUS)
            .attr("room", &room)
            .opt_attr("url", url)
            .build())
    }

    /// Answers a `<logout session-id>`: ends the session (`not-acceptable` + `session-invalid` if
    /// unknown).
    pub fn logout(&mut self, query: &Element) -> Result<Element, StanzaError> {
        if self.cfg.is_none() {
            return Err(StanzaError::new(
                Condition::ServiceUnavailable,
                "authentication is disabled",
            ));
        }
        let sid = query.attr("session-id").unwrap_or_default();
        let s = self.sessions.remove(sid).ok_or_else(session_invalid)?;
        info!(identity = %s.identity, session = sid, "logged out");
        Ok(Builder::new("logout", ns::FOCUS)
            .attr("session-id", sid)
            .build())
    }

    /// Forgets sessions unused for the lifetime, and (without auto-login) sessions of conferences that
    /// ended (`running(room)` false).
    pub fn expire(&mut self, now: Instant, running: impl Fn(&BareJid) -> bool) {
        let Some(cfg) = &self.cfg else {
            return;
        };
        let lifetime = cfg.lifetime;
        let auto_login = cfg.enable_auto_login;
        self.sessions.retain(|id, s| {
            let keep = now.saturating_duration_since(s.used) < lifetime
                && (auto_login || running(&s.room));
            if !keep {
                info!(identity = %s.identity, session = %id, "authentication session ended");
            }
            keep
        });
    }

    /// When the oldest session expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lifetime = self.cfg.as_ref()?.lifetime;
        self.sessions.values().map(|s| s.used + lifetime).min()
    }

    #[cfg(test)]
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }
}

/// The original sender of an IQ: `from` itself, or for `client_proxy` (whose IQs come from
/// `<proxy>/<original full JID>`) the resource (Jicofo's `parseJidFromClientProxyJid`).
pub fn original_sender<'a>(from: &'a str, client_proxy: Option<&str>) -> &'a str {
    match (client_proxy, from.split_once('/')) {
        (Some(proxy), Some((host, jid))) if host.eq_ignore_ascii_case(proxy) && !jid.is_empty() => {
            jid
        }
        _ => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::xml::XmlElement;

    fn request(room: &str, muid: Option<&str>, sid: Option<&str>) -> ConferenceRequest {
        let mut r = ConferenceRequest::new(room.parse().unwrap());
        r.machine_uid = muid.map(str::to_owned);
        r.session_id = sid.map(str::to_owned);
        r
    }

    fn authority(kind: AuthKind) -> Authority {
        Authority::new(Some(AuthConfig::new(kind, "meet.example")))
    }

    const ROOM: &str = "room@conference.meet.example";

    /// A conference request for [`ROOM`] from `from` on `machine`, with `session`.
    fn ask(
        a: &mut Authority,
        now: Instant,
        rng: &mut Rng,
        (machine, session): (Option<&str>, Option<&str>),
        from: &str,
        room_exists: bool,
    ) -> Result<AuthAnswer, StanzaError> {
        a.process(
            now,
            rng,
            &request(ROOM, machine, session),
            Some(from),
            room_exists,
        )
    }

    #[test]
    fn only_users_of_the_login_domain_create_rooms() {
        let now = Instant::now();
        let mut rng = Rng(1);
        let mut a = authority(AuthKind::Xmpp);
        let guest = "x1y2@guest.meet.example/r1";
        let err = ask(&mut a, now, &mut rng, (Some("m1"), None), guest, false).unwrap_err();
        assert_eq!(err.condition, Condition::NotAuthorized);
        assert_eq!(a.session_count(), 0);

        let host = "alice@meet.example/r2";
        let ok = ask(&mut a, now, &mut rng, (Some("m2"), None), host, false).unwrap();
        let (sid, identity) = ok.session.clone().unwrap();
        assert_eq!(identity, "alice@meet.example");
        assert_eq!(a.identity(host), Some("alice@meet.example"));
        assert_eq!(a.identity(guest), None);
        let answer = ok.response(ROOM.parse().unwrap(), "focus@auth.meet.example", true);
        assert_eq!(answer.bool_property("authentication"), Some(true));
        assert_eq!(answer.bool_property("externalAuth"), Some(false));
        assert_eq!(answer.session_id.as_deref(), Some(sid.as_str()));
        assert_eq!(
            answer.to_element().attr("identity"),
            Some("alice@meet.example")
        );

        // Once the room exists, the guest may join it (not authenticated, no session).
        let ok = ask(&mut a, now, &mut rng, (Some("m1"), None), guest, true).unwrap();
        assert_eq!(ok.enabled, Some(false));
        assert!(ok.session.is_none());
    }

    #[test]
    fn a_session_id_authenticates_another_jid_of_the_same_machine() {
        let now = Instant::now();
        let mut rng = Rng(2);
        let mut a = authority(AuthKind::Xmpp);
        let (sid, _) = ask(
            &mut a,
            now,
            &mut rng,
            (Some("m1"), None),
            "alice@meet.example/tab",
            false,
        )
        .unwrap()
        .session
        .unwrap();
        // The guest connection of the same browser upgrades with the session.
        let guest = "x1y2@guest.meet.example/r1";
        let ok = a
            .process(
                now,
                &mut rng,
                &request(ROOM, Some("m1"), Some(&sid)),
                Some(guest),
                false,
            )
            .unwrap();
        assert_eq!(ok.session.unwrap().1, "alice@meet.example");
        assert_eq!(a.identity(guest), Some("alice@meet.example"));
        // Another machine cannot use it; an unknown session is invalid.
        let err = a
            .process(
                now,
                &mut rng,
                &request(ROOM, Some("m9"), Some(&sid)),
                Some(guest),
                true,
            )
            .unwrap_err();
        assert_eq!(err.condition, Condition::NotAcceptable);
        let err = a
            .process(
                now,
                &mut rng,
                &request(ROOM, Some("m1"), Some("nope")),
                Some(guest),
                true,
            )
            .unwrap_err();
        assert_eq!(err.condition, Condition::NotAcceptable);
        assert!(
            err.extra
                .as_deref()
                .is_some_and(|e| e.is(SESSION_INVALID, ns::FOCUS))
        );
    }

    #[test]
    fn over_http_only_a_session_id_authenticates() {
        let now = Instant::now();
        let mut rng = Rng(7);
        let mut a = authority(AuthKind::Xmpp);
        let http =
            |a: &mut Authority, rng: &mut Rng, muid: Option<&str>, sid: Option<&str>, exists| {
                a.process(now, rng, &request(ROOM, muid, sid), None, exists)
            };
        // No JID, no session: a guest. It may not create the room, it may join it once it exists.
        let err = http(&mut a, &mut rng, Some("m1"), None, false).unwrap_err();
        assert_eq!(err.condition, Condition::NotAuthorized);
        let ok = http(&mut a, &mut rng, Some("m1"), None, true).unwrap();
        assert_eq!((ok.enabled, ok.session), (Some(false), None));
        assert_eq!(a.session_count(), 0, "an HTTP request opens no session");

        // The host logged in over XMPP; its session id authenticates its HTTP request.
        let host = "alice@meet.example/tab";
        let (sid, _) = ask(&mut a, now, &mut rng, (Some("m1"), None), host, false)
            .unwrap()
            .session
            .unwrap();
        let later = now + Duration::from_secs(3600);
        let ok = a
            .process(
                later,
                &mut rng,
                &request(ROOM, Some("m1"), Some(&sid)),
                None,
                false,
            )
            .unwrap();
        assert_eq!(ok.session, Some((sid.clone(), "alice@meet.example".into())));
        assert_eq!(
            a.identity(host),
            Some("alice@meet.example"),
            "still bound to its JID"
        );
        assert_eq!(
            a.next_deadline(),
            Some(later + Duration::from_secs(86400)),
            "used"
        );

        // A wrong machine or an unknown session: not-acceptable (HTTP 400 invalid-session).
        let err = http(&mut a, &mut rng, Some("m2"), Some(&sid), true).unwrap_err();
        assert_eq!(err.condition, Condition::NotAcceptable);
        let err = http(&mut a, &mut rng, Some("m1"), Some("nope"), true).unwrap_err();
        assert!(
            err.extra
                .as_deref()
                .is_some_and(|e| e.is(SESSION_INVALID, ns::FOCUS))
        );
    }

    #[test]
    fn an_authenticated_user_without_machine_uid_is_not_acceptable() {
        let mut a = authority(AuthKind::Xmpp);
        let err = ask(
            &mut a,
            Instant::now(),
            &mut Rng(3),
            (None, None),
            "alice@meet.example/x",
            false,
        )
        .unwrap_err();
        assert_eq!(err.condition, Condition::NotAcceptable);
    }

    #[test]
    fn sessions_expire_and_jwt_sessions_end_with_their_conference() {
        let t0 = Instant::now();
        let mut rng = Rng(4);
        let mut a = authority(AuthKind::Xmpp);
        ask(
            &mut a,
            t0,
            &mut rng,
            (Some("m1"), None),
            "alice@meet.example/x",
            false,
        )
        .unwrap();
        assert_eq!(a.next_deadline(), Some(t0 + Duration::from_secs(86400)));
        // Auto-login: the session outlives the conference, not the lifetime.
        a.expire(t0 + Duration::from_secs(3600), |_| false);
        assert_eq!(a.session_count(), 1);
        a.expire(t0 + Duration::from_secs(86400), |_| true);
        assert_eq!(a.session_count(), 0);

        let mut j = authority(AuthKind::Jwt);
        let ok = ask(
            &mut j,
            t0,
            &mut rng,
            (Some("m1"), None),
            "alice@meet.example/x",
            false,
        )
        .unwrap();
        assert_eq!(ok.enabled, Some(true), "JWT authentication is external");
        j.expire(t0 + Duration::from_secs(1), |_| true);
        assert_eq!(j.session_count(), 1);
        j.expire(t0 + Duration::from_secs(2), |_| false);
        assert_eq!(j.session_count(), 0);
    }

    #[test]
    fn without_authentication_everyone_may_create_rooms() {
        let mut a = Authority::new(None);
        let ok = ask(
            &mut a,
            Instant::now(),
            &mut Rng(5),
            (None, None),
            "x@guest/y",
            false,
        )
        .unwrap();
        assert_eq!(ok, AuthAnswer::default());
        let answer = ok.response(ROOM.parse().unwrap(), "focus@auth.meet.example", true);
        assert_eq!(answer.bool_property("authentication"), Some(false));
    }

    #[test]
    fn login_url_and_logout() {
        let mut a = authority(AuthKind::Xmpp);
        let q: Element = format!(
            r#"<login-url xmlns="http://jitsi.org/protocol/focus" room="{ROOM}" machine-uid="m1"/>"#
        )
        .parse()
        .unwrap();
        assert_eq!(
            a.login_url(&q).unwrap().attr("url"),
            Some("./room?login=true")
        );
        let (sid, _) = ask(
            &mut a,
            Instant::now(),
            &mut Rng(6),
            (Some("m1"), None),
            "alice@meet.example/x",
            false,
        )
        .unwrap()
        .session
        .unwrap();
        let q: Element =
            format!(r#"<logout xmlns="http://jitsi.org/protocol/focus" session-id="{sid}"/>"#)
                .parse()
                .unwrap();
        a.logout(&q).unwrap();
        assert_eq!(a.session_count(), 0);
        assert_eq!(
            a.logout(&q).unwrap_err().condition,
            Condition::NotAcceptable
        );
    }

    #[test]
    fn the_client_proxy_resource_is_the_original_sender() {
        assert_eq!(
            original_sender(
                "focus.meet.example/alice@meet.example/r1",
                Some("focus.meet.example")
            ),
            "alice@meet.example/r1"
        );
        assert_eq!(
            original_sender("alice@meet.example/r1", Some("focus.meet.example")),
            "alice@meet.example/r1"
        );
        assert_eq!(
            original_sender("focus.meet.example/x", None),
            "focus.meet.example/x"
        );
    }
}
