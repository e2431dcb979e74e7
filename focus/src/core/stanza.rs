//! The XMPP envelope as the core sees it: which connection a stanza travels on, IQ requests and answers,
//! stanza errors. The shell converts these to and from tokio-xmpp stanzas; the core never touches sockets.

use std::fmt;
use std::time::Duration;

use minidom::Element;
use signaling::colibri2::{Colibri2ErrorResponse, Reason};
use signaling::ns;
use signaling::xml::Builder;
use signaling::xml::XmlElement;

/// The XMPP connection a stanza arrives on or must leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    /// `focus@<auth domain>/focus`: MUC rooms, Jingle, client_proxy conference IQs (and the brewery unless
    /// a separate service connection is configured).
    Client,
    /// The connection that sees the brewery (the same as `Client` unless `ENABLE_JVB_XMPP_SERVER`).
    Service,
    /// The XEP-0114 component `focus.<domain>` that stock Prosody routes conference IQs to.
    Component,
    /// A conference request that came over HTTP (`POST /conference-request/v1`); its reply goes back
    /// to the REST API, not to XMPP.
    Rest,
}

/// An IQ's `type` for requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqKind {
    Get,
    Set,
}

impl fmt::Display for IqKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IqKind::Get => "get",
            IqKind::Set => "set",
        })
    }
}

/// The core's handle on a request it sent; the shell maps it to the stanza id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// An IQ request (get/set) addressed to the focus.
#[derive(Debug, Clone)]
pub struct IqRequest {
    pub link: Link,
    /// The sender as the stanza says (for client_proxy: `focus.<domain>/<original full JID>`).
    pub from: String,
    pub id: String,
    pub kind: IqKind,
    /// The single child of the IQ.
    pub payload: Element,
}

/// Why a request the core sent did not get a result.
#[derive(Debug, Clone)]
pub enum RequestFailure {
    /// An `<iq type='error'>` came back; this is its `<error>` element (if it had one).
    Error(Option<Element>),
    /// No answer within the request's timeout.
    Timeout,
    /// The connection was down; nothing was sent.
    NotConnected,
}

impl RequestFailure {
    /// The stanza error, read as a COLIBRI2 peer writes it.
    fn parsed(&self) -> Option<Colibri2ErrorResponse> {
        match self {
            RequestFailure::Error(Some(e)) => Colibri2ErrorResponse::from_element(e).ok(),
            _ => None,
        }
    }

    /// The defined condition of an error answer (`item-not-found` …).
    pub fn condition(&self) -> Option<String> {
        self.parsed().map(|e| e.condition.to_string())
    }

    /// The `reason` of a `<error xmlns='jitsi:colibri2'>` inside the error, if a bridge sent one.
    pub fn colibri2_reason(&self) -> Option<Reason> {
        self.parsed().and_then(|e| e.reason)
    }

    /// The `id` of a colibri2 `<endpoint>` inside the error (with `unknown_endpoint`).
    pub fn colibri2_endpoint(&self) -> Option<String> {
        self.parsed().and_then(|e| e.endpoint_id)
    }
}

impl fmt::Display for RequestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestFailure::Error(_) => write!(
                f,
                "error {}",
                self.condition().unwrap_or_else(|| "(no condition)".into())
            ),
            RequestFailure::Timeout => f.write_str("timeout"),
            RequestFailure::NotConnected => f.write_str("not connected"),
        }
    }
}

/// Defined conditions the focus answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    ResourceConstraint,
    ServiceUnavailable,
    UnexpectedRequest,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::Gone => "gone",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The RFC 6120 error type that goes with the condition.
    pub fn error_type(self) -> &'static str {
        match self {
            Condition::BadRequest | Condition::NotAcceptable => "modify",
            Condition::ResourceConstraint => "wait",
            Condition::NotAuthorized | Condition::Forbidden => "auth",
            _ => "cancel",
        }
    }
}

/// An error answer to an IQ request.
#[derive(Debug, Clone, PartialEq)]
pub struct StanzaError {
    pub condition: Condition,
    pub text: Option<String>,
    /// An application-specific child (e.g. Jingle's `<unknown-session/>`).
    pub extra: Option<Box<Element>>,
}

impl StanzaError {
    pub fn new(condition: Condition, text: impl Into<String>) -> Self {
        StanzaError {
            condition,
            text: Some(text.into()),
            extra: None,
        }
    }

    pub fn with_extra(mut self, extra: Element) -> Self {
        self.extra = Some(Box::new(extra));
        self
    }

    /// The `<error type=…>` element.
    pub fn to_element(&self) -> Element {
        Builder::new("error", ns::JABBER_CLIENT)
            .attr("type", self.condition.error_type())
            .child(Element::bare(self.condition.as_str(), ns::STANZAS))
            .opt_child(
                self.text
                    .as_ref()
                    .map(|t| Builder::new("text", ns::STANZAS).text(t.as_str()).build()),
            )
            .opt_child(self.extra.as_deref().cloned())
            .build()
    }
}

impl fmt::Display for StanzaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.condition.as_str())?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

/// Something the shell must do.
#[derive(Debug, Clone)]
pub enum Output {
    /// Send an IQ request; report the answer as [`crate::core::Input::IqResponse`] with `request`.
    Request {
        request: RequestId,
        link: Link,
        to: String,
        kind: IqKind,
        payload: Element,
        timeout: Duration,
    },
    /// Answer an IQ request (`Ok(None)` = an empty result).
    Reply {
        link: Link,
        to: String,
        id: String,
        response: Result<Option<Element>, StanzaError>,
    },
    /// Send a presence stanza (joins, updates, leaves).
    Presence { link: Link, presence: Element },
}
