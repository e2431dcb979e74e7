//! Jitsi's Jingle dialect (`urn:xmpp:jingle:1`) as the focus and lib-jitsi-meet speak it.
//!
//! One [`Jingle`] type covers every action: which children are meaningful depends on the action
//! (contents in session-initiate/accept, source-add/remove and transport-info; `reason` in
//! session-terminate; `ice-state` in session-info …), and parsing keeps whatever is present. Actions we do
//! not implement parse as [`Action::Other`] so that the focus can answer them with
//! `feature-not-implemented` instead of failing to parse. Unknown children are ignored.

mod content;
mod payloads;

use std::fmt;

pub use content::{Content, Creator, RtpDescription, Senders};
pub use payloads::{BridgeSession, Group, Reason, ReasonCondition, StartMuted};

use crate::error::ParseError;
use crate::ice_udp::IceUdpTransport;
use crate::ns;
use crate::xml::{self, Builder, Element, XmlElement};

/// The `action` of a Jingle request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    SessionInitiate,
    SessionAccept,
    SessionTerminate,
    SessionInfo,
    TransportInfo,
    SourceAdd,
    SourceRemove,
    /// Any other action (`transport-replace`, `content-modify`, …), kept verbatim.
    Other(String),
}

impl Action {
    /// Never fails: unknown actions become [`Action::Other`]. The legacy spellings `addsource` and
    /// `removesource` mean source-add and source-remove, as Jicofo reads them.
    pub fn parse(s: &str) -> Self {
        match s {
            "session-initiate" => Action::SessionInitiate,
            "session-accept" => Action::SessionAccept,
            "session-terminate" => Action::SessionTerminate,
            "session-info" => Action::SessionInfo,
            "transport-info" => Action::TransportInfo,
            "source-add" | "addsource" => Action::SourceAdd,
            "source-remove" | "removesource" => Action::SourceRemove,
            other => Action::Other(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Action::SessionInitiate => "session-initiate",
            Action::SessionAccept => "session-accept",
            Action::SessionTerminate => "session-terminate",
            Action::SessionInfo => "session-info",
            Action::TransportInfo => "transport-info",
            Action::SourceAdd => "source-add",
            Action::SourceRemove => "source-remove",
            Action::Other(s) => s,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `<jingle xmlns='urn:xmpp:jingle:1' action sid initiator responder>`: the payload of a Jingle IQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jingle {
    pub action: Action,
    pub sid: String,
    /// Full JID of the initiator (the focus, `focus@auth.meet.jitsi/focus`); absent in the focus's
    /// source-add/source-remove.
    pub initiator: Option<String>,
    pub responder: Option<String>,
    pub contents: Vec<Content>,
    /// `group` elements; in practice one BUNDLE group of all contents.
    pub groups: Vec<Group>,
    /// session-terminate's reason.
    pub reason: Option<Reason>,
    pub bridge_session: Option<BridgeSession>,
    pub start_muted: Option<StartMuted>,
    /// `<ice-state xmlns='http://jitsi.org/protocol/focus'>failed</ice-state>` of a session-info.
    pub ice_state: Option<String>,
    /// Text of `<json-message xmlns='http://jitsi.org/jitmeet'>`: the compact JSON source encoding
    /// (see [`crate::json_sources`]), kept as text so that other JSON payloads survive too.
    pub json_message: Option<String>,
}

impl Jingle {
    /// An element with only `action` and `sid`.
    pub fn new(action: Action, sid: &str) -> Self {
        Jingle {
            action,
            sid: sid.to_owned(),
            initiator: None,
            responder: None,
            contents: Vec::new(),
            groups: Vec::new(),
            reason: None,
            bridge_session: None,
            start_muted: None,
            ice_state: None,
            json_message: None,
        }
    }

    /// The content named `name`.
    pub fn content(&self, name: &str) -> Option<&Content> {
        self.contents.iter().find(|c| c.name == name)
    }

    /// The content named `name`, mutably.
    pub fn content_mut(&mut self, name: &str) -> Option<&mut Content> {
        self.contents.iter_mut().find(|c| c.name == name)
    }

    /// The first ICE-UDP transport of any content. With BUNDLE every content carries the same one.
    pub fn transport(&self) -> Option<&IceUdpTransport> {
        self.contents.iter().find_map(|c| c.transport.as_ref())
    }

    /// The BUNDLE group, if any.
    pub fn bundle(&self) -> Option<&Group> {
        self.groups.iter().find(|g| g.semantics == "BUNDLE")
    }

    /// The `initial-last-n` the client put in any content (it uses the video one).
    pub fn initial_last_n(&self) -> Option<u32> {
        self.contents.iter().find_map(|c| c.initial_last_n)
    }
}

impl XmlElement for Jingle {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "jingle";
        xml::expect(el, E, ns::JINGLE)?;
        Ok(Jingle {
            action: Action::parse(xml::attr(el, E, "action")?),
            sid: xml::attr(el, E, "sid")?.to_owned(),
            initiator: xml::opt_string(el, "initiator"),
            responder: xml::opt_string(el, "responder"),
            contents: xml::parse_children(el, "content", ns::JINGLE)?,
            groups: xml::parse_children(el, "group", ns::JINGLE_GROUPING)?,
            reason: xml::parse_child(el, "reason", ns::JINGLE)?,
            bridge_session: xml::parse_child(el, "bridge-session", ns::FOCUS)?,
            start_muted: xml::parse_child(el, "startmuted", ns::JITMEET_START_MUTED)?,
            ice_state: el
                .get_child("ice-state", ns::FOCUS)
                .map(|s| s.text().trim().to_owned()),
            json_message: el.get_child("json-message", ns::JITMEET).map(Element::text),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("jingle", ns::JINGLE)
            .attr("action", &self.action)
            .opt_attr("initiator", self.initiator.as_ref())
            .opt_attr("responder", self.responder.as_ref())
            .attr("sid", &self.sid)
            .children(xml::elements(&self.contents))
            .children(xml::elements(&self.groups))
            .opt_child(self.reason.as_ref().map(XmlElement::to_element))
            .opt_child(self.bridge_session.as_ref().map(XmlElement::to_element))
            .opt_child(self.start_muted.as_ref().map(XmlElement::to_element))
            .opt_child(self.ice_state.as_ref().map(|s| {
                Builder::new("ice-state", ns::FOCUS)
                    .text(s.as_str())
                    .build()
            }))
            .opt_child(self.json_message.as_ref().map(|j| {
                Builder::new("json-message", ns::JITMEET)
                    .text(j.as_str())
                    .build()
            }))
            .build()
    }
}
