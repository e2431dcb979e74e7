//! IQ request/response: the typed outcome of a request, the requests that arrive for the owner, and the
//! sans-IO bookkeeping that matches replies to requests by id and expires them.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

use minidom::Element;
use thiserror::Error;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::stanza::{NS_CLIENT, NS_STANZAS};

/// The timeout Jicofo uses for IQs to bridges and participants.
pub const DEFAULT_IQ_TIMEOUT: Duration = Duration::from_secs(15);

/// `get` or `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqKind {
    Get,
    Set,
}

impl IqKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IqKind::Get => "get",
            IqKind::Set => "set",
        }
    }
}

/// A successful (`type='result'`) reply.
#[derive(Debug, Clone, PartialEq)]
pub struct IqResult {
    pub from: Option<Jid>,
    /// The reply's child element, if any.
    pub payload: Option<Element>,
    /// The whole `<iq type='result'>` (`jabber:client`), for parsers that take the IQ (e.g.
    /// `HealthCheckOutcome::from_response`).
    pub stanza: Element,
}

/// A `type='error'` reply, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub from: Option<Jid>,
    pub error_type: ErrorType,
    pub condition: DefinedCondition,
    pub text: Option<String>,
    /// Application-specific children of `<error>` (e.g. COLIBRI2's `<error xmlns='jitsi:colibri2'>`
    /// and `<endpoint>`).
    pub app_specific: Vec<Element>,
    /// The whole `<iq type='error'>` (`jabber:client`), e.g. for `Colibri2ErrorResponse::from_iq`.
    pub stanza: Element,
}

impl fmt::Display for ErrorReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let condition = Element::from(self.condition.clone());
        write!(f, "error reply ({}", condition.name())?;
        for app in &self.app_specific {
            write!(f, ", {} xmlns='{}'", app.name(), app.ns())?;
        }
        write!(f, ")")?;
        if let Some(from) = &self.from {
            write!(f, " from {from}")?;
        }
        if let Some(text) = &self.text {
            write!(f, ": {text}")?;
        }
        Ok(())
    }
}

/// Why an IQ request produced no result.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum IqError {
    /// No reply within the timeout.
    #[error("no reply from {to} within {after:?}")]
    Timeout { to: String, after: Duration },
    /// The peer (or the server on its behalf) answered with an error.
    #[error("{0}")]
    ErrorReply(Box<ErrorReply>),
    /// The session was offline when the request was made, or the connection was lost before the reply.
    #[error("XMPP session not connected")]
    Disconnected,
    /// The session has been closed for good.
    #[error("XMPP session closed")]
    Closed,
    /// The request itself was unusable (e.g. not a get/set, or no payload).
    #[error("invalid IQ request: {0}")]
    Invalid(String),
}

impl IqError {
    /// The defined condition of an error reply, if this is one.
    pub fn condition(&self) -> Option<&DefinedCondition> {
        match self {
            IqError::ErrorReply(e) => Some(&e.condition),
            _ => None,
        }
    }
}

/// Sends the answer to an [`IncomingIq`] into its session's outgoing queue. The session supplies the
/// queue as a closure, so this module does not depend on the session's command type.
pub(crate) struct Responder {
    /// Queues one stanza; false when the session has closed.
    send: Box<dyn FnOnce(Element) -> bool + Send + Sync>,
    component: bool,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("component", &self.component)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// `send` queues one stanza and says whether the session took it; `component` is true for a
    /// XEP-0114 component session (answers carry an explicit `from`).
    pub(crate) fn new(
        send: impl FnOnce(Element) -> bool + Send + Sync + 'static,
        component: bool,
    ) -> Self {
        Responder {
            send: Box::new(send),
            component,
        }
    }

    pub(crate) fn send(self, stanza: Element) {
        if !(self.send)(stanza) {
            tracing::debug!("IQ answer not sent: session closed");
        }
    }

    /// The `from` of an answer: the addressed JID for a component, nothing (server-stamped) for a client.
    pub(crate) fn us<'a>(&self, to: &'a Option<Jid>) -> Option<&'a Jid> {
        if self.component { to.as_ref() } else { None }
    }
}

/// An IQ `get`/`set` addressed to this session. The owner must answer it with
/// [`reply_result`](Self::reply_result) or [`reply_error`](Self::reply_error); one dropped unanswered
/// is answered with `service-unavailable` so that the requester does not wait for its timeout.
#[derive(Debug)]
pub struct IncomingIq {
    pub from: Option<Jid>,
    pub to: Option<Jid>,
    pub id: String,
    pub kind: IqKind,
    pub payload: Element,
    pub(crate) responder: Option<Responder>,
}

impl IncomingIq {
    /// True when the payload is `<name xmlns=ns>`.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.payload.is(name, ns)
    }

    /// Answers with `type='result'` and an optional child.
    pub fn reply_result(mut self, payload: Option<Element>) {
        if let Some(r) = self.responder.take() {
            let reply = result_stanza(self.from.as_ref(), r.us(&self.to), &self.id, payload);
            r.send(reply);
        }
    }

    /// Answers with `type='error'`, a defined condition, an optional text and an optional
    /// application-specific condition element.
    pub fn reply_error(
        mut self,
        error_type: ErrorType,
        condition: DefinedCondition,
        text: Option<&str>,
        app_specific: Option<Element>,
    ) {
        if let Some(r) = self.responder.take() {
            let reply = error_stanza(
                self.from.as_ref(),
                r.us(&self.to),
                &self.id,
                error_type,
                condition,
                text,
                app_specific,
            );
            r.send(reply);
        }
    }
}

impl IncomingIq {
    /// Answers with `type='error'` carrying a prebuilt stanza `<error>` element in `jabber:client`
    /// (e.g. `Colibri2ErrorResponse::to_element()`); a component session translates the namespace.
    pub fn reply_error_element(mut self, error: Element) {
        if let Some(r) = self.responder.take() {
            let mut reply = iq_header("error", self.from.as_ref(), r.us(&self.to), &self.id);
            reply.append_child(error);
            r.send(reply);
        }
    }
}

impl Drop for IncomingIq {
    fn drop(&mut self) {
        if let Some(r) = self.responder.take() {
            tracing::warn!(from = ?self.from, id = %self.id, payload = %self.payload.name(),
                "IQ request dropped unanswered; replying service-unavailable");
            let reply = error_stanza(
                self.from.as_ref(),
                r.us(&self.to),
                &self.id,
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                None,
                None,
            );
            r.send(reply);
        }
    }
}

/// `<iq type='result'>` answering a request from `requester` to `us`.
pub(crate) fn result_stanza(
    requester: Option<&Jid>,
    us: Option<&Jid>,
    id: &str,
    payload: Option<Element>,
) -> Element {
    let mut iq = iq_header("result", requester, us, id);
    if let Some(p) = payload {
        iq.append_child(p);
    }
    iq
}

/// `<iq type='error'>` answering a request from `requester` to `us`.
pub(crate) fn error_stanza(
    requester: Option<&Jid>,
    us: Option<&Jid>,
    id: &str,
    error_type: ErrorType,
    condition: DefinedCondition,
    text: Option<&str>,
    app_specific: Option<Element>,
) -> Element {
    let mut error = StanzaError::new(error_type, condition, "en", text.unwrap_or_default());
    if text.is_none() {
        error.texts.clear();
    }
    error.other = app_specific;
    let mut iq = iq_header("error", requester, us, id);
    iq.append_child(Element::from(error));
    iq
}

/// A request stanza.
pub(crate) fn request_stanza(
    kind: IqKind,
    to: Option<&Jid>,
    id: &str,
    payload: Element,
) -> Element {
    let mut iq = iq_header(kind.as_str(), to, None, id);
    iq.append_child(payload);
    iq
}

fn iq_header(kind: &str, to: Option<&Jid>, from: Option<&Jid>, id: &str) -> Element {
    let mut b = Element::builder("iq", NS_CLIENT)
        .attr(minidom::rxml::xml_ncname!("type").to_owned(), kind)
        .attr(minidom::rxml::xml_ncname!("id").to_owned(), id);
    if let Some(to) = to {
        b = b.attr(minidom::rxml::xml_ncname!("to").to_owned(), to.as_str());
    }
    if let Some(from) = from {
        b = b.attr(minidom::rxml::xml_ncname!("from").to_owned(), from.as_str());
    }
    b.build()
}

/// Decodes an `<iq type='error'>` (jabber:client) into an [`ErrorReply`]. Lenient: a missing or
/// unknown condition becomes `undefined-condition`, a missing type `cancel`, never an error.
pub(crate) fn decode_error_reply(stanza: Element, from: Option<Jid>) -> ErrorReply {
    let mut reply = ErrorReply {
        from,
        error_type: ErrorType::Cancel,
        condition: DefinedCondition::UndefinedCondition,
        text: None,
        app_specific: Vec::new(),
        stanza: Element::bare("iq", NS_CLIENT),
    };
    if let Some(error) = stanza.get_child("error", NS_CLIENT) {
        if let Some(t) = error.attr("type").and_then(|t| t.parse().ok()) {
            reply.error_type = t;
        }
        for child in error.children() {
            if child.ns() != NS_STANZAS {
                reply.app_specific.push(child.clone());
            } else if child.name() == "text" {
                reply.text = Some(child.text());
            } else if let Ok(c) = DefinedCondition::try_from(child.clone()) {
                reply.condition = c;
            }
        }
    }
    reply.stanza = stanza;
    reply
}

/// Unique IQ ids: a random per-session prefix and a counter.
#[derive(Debug)]
pub(crate) struct IdGen {
    prefix: String,
    next: u64,
}

impl IdGen {
    pub(crate) fn new(prefix: impl Into<String>) -> Self {
        IdGen {
            prefix: prefix.into(),
            next: 0,
        }
    }

    pub(crate) fn random() -> Self {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        Self::new(uuid.get(..10).unwrap_or("iq").to_owned())
    }

    pub(crate) fn next_id(&mut self) -> String {
        self.next += 1;
        format!("{}-{}", self.prefix, self.next)
    }
}

/// One request waiting for its reply.
#[derive(Debug)]
pub(crate) struct PendingIq<W> {
    pub(crate) id: String,
    pub(crate) to: Option<Jid>,
    pub(crate) deadline: Instant,
    pub(crate) timeout: Duration,
    pub(crate) waiter: W,
}

/// Requests in flight, by id. Sans-IO: the session feeds it replies and the clock.
#[derive(Debug)]
pub(crate) struct PendingIqs<W> {
    entries: HashMap<String, PendingIq<W>>,
}

impl<W> Default for PendingIqs<W> {
    fn default() -> Self {
        PendingIqs {
            entries: HashMap::new(),
        }
    }
}

impl<W> PendingIqs<W> {
    /// Tracks a request; refuses a duplicate id (returns the waiter back).
    pub(crate) fn insert(
        &mut self,
        id: String,
        to: Option<Jid>,
        now: Instant,
        timeout: Duration,
        waiter: W,
    ) -> Result<(), W> {
        if self.entries.contains_key(&id) {
            return Err(waiter);
        }
        let deadline = now.checked_add(timeout).unwrap_or(now);
        self.entries.insert(
            id.clone(),
            PendingIq {
                id,
                to,
                deadline,
                timeout,
                waiter,
            },
        );
        Ok(())
    }

    /// The request a `result`/`error` with this id and sender answers, if any. A reply from someone
    /// other than the addressee is not a reply (it could be spoofed) and leaves the request pending.
    pub(crate) fn take_reply(
        &mut self,
        id: &str,
        from: Option<&Jid>,
        own: Option<&Jid>,
    ) -> Option<PendingIq<W>> {
        let entry = self.entries.get(id)?;
        if !reply_matches(entry.to.as_ref(), from, own) {
            tracing::warn!(id, ?from, to = ?entry.to, "IQ reply from an unexpected sender ignored");
            return None;
        }
        self.entries.remove(id)
    }

    /// Removes and returns every request whose deadline is at or before `now`.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<PendingIq<W>> {
        let due: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.deadline <= now)
            .map(|e| e.id.clone())
            .collect();
        due.iter()
            .filter_map(|id| self.entries.remove(id))
            .collect()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.deadline).min()
    }

    /// Removes everything (the connection is gone: no reply can arrive any more).
    pub(crate) fn drain(&mut self) -> Vec<PendingIq<W>> {
        self.entries.drain().map(|(_, e)| e).collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Whether a reply from `from` can answer a request sent to `requested`. `own` is our bound JID
/// (client) or domain (component). Requests without `to` go to our own account or server, which reply
/// without `from` or from our bare JID or domain.
pub(crate) fn reply_matches(
    requested: Option<&Jid>,
    from: Option<&Jid>,
    own: Option<&Jid>,
) -> bool {
    if requested == from {
        return true;
    }
    let to_self = match (requested, own) {
        (None, _) => true,
        (Some(r), Some(own)) => r.to_bare() == own.to_bare() || r.as_str() == own.domain().as_str(),
        (Some(_), None) => false,
    };
    if !to_self {
        return false;
    }
    match (from, own) {
        (None, _) => true,
        (Some(f), Some(own)) => {
            f == own || f.to_bare() == own.to_bare() || f.as_str() == own.domain().as_str()
        }
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    #[test]
    fn ids_are_unique_and_prefixed() {
        let mut g = IdGen::new("abc");
        assert_eq!(g.next_id(), "abc-1");
        assert_eq!(g.next_id(), "abc-2");
        let mut a = IdGen::random();
        let mut b = IdGen::random();
        assert_ne!(a.next_id(), b.next_id());
    }

    #[test]
    fn replies_are_matched_by_id_and_sender() {
        let own = jid("jvb@auth.meet.example/r1");
        let now = Instant::now();
        let mut p = PendingIqs::default();
        p.insert(
            "1".into(),
            Some(jid("focus.meet.example")),
            now,
            Duration::from_secs(15),
            'a',
        )
        .unwrap();
        p.insert(
            "2".into(),
            Some(jid("room@conf.meet.example/bob")),
            now,
            Duration::from_secs(15),
            'b',
        )
        .unwrap();
        // Unknown id: not ours.
        assert!(
            p.take_reply("3", Some(&jid("focus.meet.example")), Some(&own))
                .is_none()
        );
        // Right id, wrong sender: ignored and still pending.
        assert!(
            p.take_reply("1", Some(&jid("evil@meet.example")), Some(&own))
                .is_none()
        );
        assert_eq!(p.len(), 2);
        // Right id and sender.
        let got = p
            .take_reply("1", Some(&jid("focus.meet.example")), Some(&own))
            .unwrap();
        assert_eq!(got.waiter, 'a');
        // A second reply with the same id is not matched again.
        assert!(
            p.take_reply("1", Some(&jid("focus.meet.example")), Some(&own))
                .is_none()
        );
        assert_eq!(
            p.take_reply("2", Some(&jid("room@conf.meet.example/bob")), Some(&own))
                .unwrap()
                .waiter,
            'b'
        );
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn duplicate_ids_are_refused() {
        let now = Instant::now();
        let mut p = PendingIqs::default();
        p.insert("x".into(), None, now, Duration::from_secs(1), 1)
            .unwrap();
        assert_eq!(
            p.insert("x".into(), None, now, Duration::from_secs(1), 2),
            Err(2)
        );
    }

    #[test]
    fn requests_to_self_or_server_accept_the_server_forms_of_from() {
        let own = jid("focus@auth.meet.example/abc");
        // No `to`: the server answers without `from`, or from our bare JID, or from the domain.
        assert!(reply_matches(None, None, Some(&own)));
        assert!(reply_matches(
            None,
            Some(&jid("focus@auth.meet.example")),
            Some(&own)
        ));
        assert!(reply_matches(
            None,
            Some(&jid("auth.meet.example")),
            Some(&own)
        ));
        assert!(!reply_matches(
            None,
            Some(&jid("other@auth.meet.example")),
            Some(&own)
        ));
        // To the server domain: reply from the domain, or without `from`.
        let server = jid("auth.meet.example");
        assert!(reply_matches(Some(&server), Some(&server), Some(&own)));
        assert!(reply_matches(Some(&server), None, Some(&own)));
        // To someone else: only that someone.
        let peer = jid("jvb@auth.meet.example/x");
        assert!(!reply_matches(Some(&peer), None, Some(&own)));
        assert!(!reply_matches(
            Some(&peer),
            Some(&jid("jvb@auth.meet.example")),
            Some(&own)
        ));
    }

    #[test]
    fn deadlines_expire_in_order() {
        let t0 = Instant::now();
        let mut p = PendingIqs::default();
        p.insert("slow".into(), None, t0, Duration::from_secs(15), ())
            .unwrap();
        p.insert("fast".into(), None, t0, Duration::from_secs(1), ())
            .unwrap();
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert!(p.expire(t0 + Duration::from_millis(999)).is_empty());
        let gone = p.expire(t0 + Duration::from_secs(1));
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id, "fast");
        assert_eq!(gone[0].timeout, Duration::from_secs(1));
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_secs(15)));
        assert_eq!(p.drain().len(), 1);
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn error_replies_decode_condition_text_and_app_element() {
        let app: Element = "<error xmlns='jitsi:colibri2' reason='unknown-endpoint'/>"
            .parse()
            .unwrap();
        let stanza = error_stanza(
            Some(&jid("focus@auth.meet.example/f")),
            None,
            "7",
            ErrorType::Modify,
            DefinedCondition::BadRequest,
            Some("no such endpoint"),
            Some(app.clone()),
        );
        assert_eq!(stanza.attr("type"), Some("error"));
        assert_eq!(stanza.attr("to"), Some("focus@auth.meet.example/f"));
        let reply = decode_error_reply(stanza, Some(jid("jvb@auth.meet.example/j")));
        assert_eq!(reply.condition, DefinedCondition::BadRequest);
        assert_eq!(reply.error_type, ErrorType::Modify);
        assert_eq!(reply.text.as_deref(), Some("no such endpoint"));
        assert_eq!(reply.app_specific, vec![app]);
        let shown = IqError::ErrorReply(Box::new(reply)).to_string();
        assert!(
            shown.contains("bad-request") && shown.contains("jitsi:colibri2"),
            "{shown}"
        );

        let garbage: Element = "<iq xmlns='jabber:client' type='error' id='1'><error/></iq>"
            .parse()
            .unwrap();
        let reply = decode_error_reply(garbage, None);
        assert_eq!(reply.condition, DefinedCondition::UndefinedCondition);
    }

    #[test]
    fn result_stanzas_answer_from_the_addressed_jid() {
        let r = result_stanza(
            Some(&jid("a@b/c")),
            Some(&jid("focus.meet.example")),
            "9",
            None,
        );
        assert_eq!(r.attr("to"), Some("a@b/c"));
        assert_eq!(r.attr("from"), Some("focus.meet.example"));
        assert_eq!(r.attr("id"), Some("9"));
        let parsed = xmpp_parsers::iq::Iq::try_from(r).unwrap();
        assert!(matches!(
            parsed,
            xmpp_parsers::iq::Iq::Result { payload: None, .. }
        ));
    }
}
