//! The focus `conference` IQ (`http://jitsi.org/protocol/focus`): the first thing a client sends, before it
//! joins the MUC, asking the focus to create (or find) the conference; and the focus's answer, which tells
//! the client the focus's real JID (the only occupant whose Jingle it will accept) and whether it may join.
//!
//! Both directions use the same `<conference>` element with different attributes, so each direction has
//! its own type. The IQ envelope (`type='set'` / `type='result'`, ids, addressing) is the XMPP layer's job.

use jid::BareJid;

use crate::error::ParseError;
use crate::ns;
use crate::xml::{self, Builder, Element, XmlElement};

const E: &str = "conference";

/// `<property name= value=/>` (ns focus) inside `<conference>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    pub value: String,
}

impl Property {
    pub fn new(name: impl Into<String>, value: impl ToString) -> Self {
        Property {
            name: name.into(),
            value: value.to_string(),
        }
    }
}

impl XmlElement for Property {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "property", ns::FOCUS)?;
        Ok(Property {
            name: xml::attr(el, "property", "name")?.to_owned(),
            value: el.attr("value").unwrap_or_default().to_owned(),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("property", ns::FOCUS)
            .attr("name", &self.name)
            .attr("value", &self.value)
            .build()
    }
}

/// Looks a property up by name (the last one wins, as in Jicofo's properties map).
fn find<'a>(properties: &'a [Property], name: &str) -> Option<&'a str> {
    properties
        .iter()
        .rev()
        .find(|p| p.name == name)
        .map(|p| p.value.as_str())
}

/// Reads a property as a boolean the way Java's `Boolean.parseBoolean` does: only `true` (any case) is true.
fn find_bool(properties: &[Property], name: &str) -> Option<bool> {
    find(properties, name).map(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// `room` must be a bare JID with a local part (`name@muc.domain`); Jicofo answers bad-request otherwise.
fn room(el: &Element) -> Result<BareJid, ParseError> {
    let room: BareJid = xml::num(el, E, "room")?;
    if room.node().is_none() {
        return Err(ParseError::BadAttribute {
            element: E,
            attribute: "room",
            value: room.to_string(),
            reason: "room JID has no local part".into(),
        });
    }
    Ok(room)
}

/// An optional string attribute where empty means absent (Jicofo's reading).
fn non_empty(el: &Element, attribute: &str) -> Option<String> {
    el.attr(attribute)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// What a client sends: `<conference room machine-uid token session-id>` with `<property>` children.
///
/// The 2021 client sends `disableRtx`, `startAudioMuted`/`startVideoMuted`, `rtcstatsEnabled` and
/// `callstatsEnabled` (only when false), and optionally `audioPacketDelay`, `startBitrate`, `minBitrate`;
/// newer clients `visitors-version` and `visitor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceRequest {
    /// The MUC room, e.g. `test@muc.meet.jitsi`.
    pub room: BareJid,
    pub machine_uid: Option<String>,
    /// A JWT, when token authentication is used (newer clients).
    pub token: Option<String>,
    /// The session id a previous answer gave (authenticated flows).
    pub session_id: Option<String>,
    pub properties: Vec<Property>,
}

impl ConferenceRequest {
    pub fn new(room: BareJid) -> Self {
        ConferenceRequest {
            room,
            machine_uid: None,
            token: None,
            session_id: None,
            properties: Vec::new(),
        }
    }

    /// The value of property `name`.
    pub fn property(&self, name: &str) -> Option<&str> {
        find(&self.properties, name)
    }

    /// Property `name` read as a boolean (`true` in any case is true, anything else false).
    pub fn bool_property(&self, name: &str) -> Option<bool> {
        find_bool(&self.properties, name)
    }
}

impl XmlElement for ConferenceRequest {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, E, ns::FOCUS)?;
        Ok(ConferenceRequest {
            room: room(el)?,
            machine_uid: non_empty(el, "machine-uid"),
            token: non_empty(el, "token"),
            session_id: non_empty(el, "session-id"),
            properties: xml::parse_children(el, "property", ns::FOCUS)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new(E, ns::FOCUS)
            .attr("room", &self.room)
            .opt_attr("machine-uid", self.machine_uid.as_ref())
            .opt_attr("token", self.token.as_ref())
            .opt_attr("session-id", self.session_id.as_ref())
            .children(xml::elements(&self.properties))
            .build()
    }
}

/// What the focus answers: `<conference room ready focusjid vnode session-id identity>` with properties
/// (`authentication`, `externalAuth`, `sipGatewayEnabled`, `visitors-supported`, `live`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceResponse {
    pub room: BareJid,
    /// Whether the conference exists and the focus is in the room; when false the client retries later.
    pub ready: bool,
    /// The focus's real bare JID (`focus@auth.meet.jitsi`): the client accepts Jingle only from the MUC
    /// occupant whose real JID starts with it.
    pub focus_jid: Option<String>,
    /// Visitor node to redirect to.
    pub vnode: Option<String>,
    pub session_id: Option<String>,
    /// The authenticated identity (authentication flows).
    pub identity: Option<String>,
    pub properties: Vec<Property>,
}

impl ConferenceResponse {
    /// A `ready` answer naming the focus JID, with `authentication=false` as the anonymous deployment says.
    pub fn ready(room: BareJid, focus_jid: &str) -> Self {
        ConferenceResponse {
            room,
            ready: true,
            focus_jid: Some(focus_jid.to_owned()),
            vnode: None,
            session_id: None,
            identity: None,
            properties: vec![Property::new("authentication", false)],
        }
    }

    pub fn property(&self, name: &str) -> Option<&str> {
        find(&self.properties, name)
    }

    pub fn bool_property(&self, name: &str) -> Option<bool> {
        find_bool(&self.properties, name)
    }
}

impl XmlElement for ConferenceResponse {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, E, ns::FOCUS)?;
        Ok(ConferenceResponse {
            room: room(el)?,
            ready: xml::flag(el, E, "ready")?,
            focus_jid: non_empty(el, "focusjid"),
            vnode: non_empty(el, "vnode"),
            session_id: non_empty(el, "session-id"),
            identity: non_empty(el, "identity"),
            properties: xml::parse_children(el, "property", ns::FOCUS)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new(E, ns::FOCUS)
            .attr("room", &self.room)
            // Always written: the client compares it with the string "true".
            .attr("ready", self.ready)
            .opt_attr("focusjid", self.focus_jid.as_ref())
            .opt_attr("vnode", self.vnode.as_ref())
            .opt_attr("session-id", self.session_id.as_ref())
            .opt_attr("identity", self.identity.as_ref())
            .children(xml::elements(&self.properties))
            .build()
    }
}
