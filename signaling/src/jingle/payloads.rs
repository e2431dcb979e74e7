//! The non-content children of `<jingle>`: `reason`, BUNDLE `group`, Jitsi's `bridge-session` and
//! `startmuted`.

use minidom::rxml::NcName;

use crate::error::ParseError;
use crate::ns;
use crate::xml::{self, Builder, Element, XmlElement};

/// The condition of a Jingle `reason` (XEP-0166 §7.4), with unknown ones kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReasonCondition {
    AlternativeSession,
    Busy,
    Cancel,
    ConnectivityError,
    Decline,
    Expired,
    FailedApplication,
    FailedTransport,
    GeneralError,
    Gone,
    IncompatibleParameters,
    MediaError,
    SecurityError,
    Success,
    Timeout,
    UnsupportedApplications,
    UnsupportedTransports,
    /// Any other element name (lib-jitsi-meet passes whatever its caller chose).
    Other(String),
}

const CONDITIONS: [(ReasonCondition, &str); 17] = [
    (ReasonCondition::AlternativeSession, "alternative-session"),
    (ReasonCondition::Busy, "busy"),
    (ReasonCondition::Cancel, "cancel"),
    (ReasonCondition::ConnectivityError, "connectivity-error"),
    (ReasonCondition::Decline, "decline"),
    (ReasonCondition::Expired, "expired"),
    (ReasonCondition::FailedApplication, "failed-application"),
    (ReasonCondition::FailedTransport, "failed-transport"),
    (ReasonCondition::GeneralError, "general-error"),
    (ReasonCondition::Gone, "gone"),
    (
        ReasonCondition::IncompatibleParameters,
        "incompatible-parameters",
    ),
    (ReasonCondition::MediaError, "media-error"),
    (ReasonCondition::SecurityError, "security-error"),
    (ReasonCondition::Success, "success"),
    (ReasonCondition::Timeout, "timeout"),
    (
        ReasonCondition::UnsupportedApplications,
        "unsupported-applications",
    ),
    (
        ReasonCondition::UnsupportedTransports,
        "unsupported-transports",
    ),
];

impl ReasonCondition {
    pub fn parse(name: &str) -> Self {
        CONDITIONS
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| c.clone())
            .unwrap_or_else(|| ReasonCondition::Other(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            ReasonCondition::Other(s) => s,
            known => CONDITIONS
                .iter()
                .find(|(c, _)| c == known)
                .map(|(_, n)| *n)
                .unwrap_or("general-error"),
        }
    }
}

/// `<reason><condition/><text>…</text></reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub condition: ReasonCondition,
    pub text: Option<String>,
}

impl Reason {
    pub fn new(condition: ReasonCondition, text: Option<&str>) -> Self {
        Reason {
            condition,
            text: text.map(str::to_owned),
        }
    }
}

impl XmlElement for Reason {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "reason";
        xml::expect(el, E, ns::JINGLE)?;
        let condition = el
            .children()
            .find(|c| c.name() != "text" && c.ns() == ns::JINGLE)
            .ok_or(ParseError::MissingChild {
                element: E,
                child: "condition",
            })?;
        Ok(Reason {
            condition: ReasonCondition::parse(condition.name()),
            text: el.get_child("text", ns::JINGLE).map(Element::text),
        })
    }

    fn to_element(&self) -> Element {
        // A hand-made `Other` that is not an XML name would make the serialiser fail; say general-error.
        let name = match NcName::try_from(self.condition.as_str()) {
            Ok(_) => self.condition.as_str(),
            Err(_) => "general-error",
        };
        Builder::new("reason", ns::JINGLE)
            .child(Element::bare(name, ns::JINGLE))
            .opt_child(
                self.text
                    .as_ref()
                    .map(|t| Builder::new("text", ns::JINGLE).text(t.as_str()).build()),
            )
            .build()
    }
}

/// `<group xmlns='urn:xmpp:jingle:apps:grouping:0' semantics='BUNDLE'><content name=…/>…</group>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub semantics: String,
    pub contents: Vec<String>,
}

impl Group {
    /// A BUNDLE group of the given content names.
    pub fn bundle<S: AsRef<str>>(contents: impl IntoIterator<Item = S>) -> Self {
        Group {
            semantics: "BUNDLE".into(),
            contents: contents
                .into_iter()
                .map(|c| c.as_ref().to_owned())
                .collect(),
        }
    }
}

impl XmlElement for Group {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "group";
        xml::expect(el, E, ns::JINGLE_GROUPING)?;
        // Old peers wrote `type` instead of `semantics` (lib-jitsi-meet still reads both).
        let semantics = match el.attr("semantics").or_else(|| el.attr("type")) {
            Some(s) => s.to_owned(),
            None => xml::attr(el, E, "semantics")?.to_owned(),
        };
        let mut contents = Vec::new();
        // `content` children inherit the grouping namespace; accept any.
        for c in el.children().filter(|c| c.name() == "content") {
            if contents.len() == xml::MAX_REPEATED {
                return Err(ParseError::TooMany {
                    element: "content",
                    count: contents.len() + 1,
                    limit: xml::MAX_REPEATED,
                });
            }
            contents.push(xml::attr(c, "content", "name")?.to_owned());
        }
        Ok(Group {
            semantics,
            contents,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("group", ns::JINGLE_GROUPING)
            .attr("semantics", &self.semantics)
            .children(self.contents.iter().map(|name| {
                Builder::new("content", ns::JINGLE_GROUPING)
                    .attr("name", name)
                    .build()
            }))
            .build()
    }
}

/// `<bridge-session xmlns='http://jitsi.org/protocol/focus' id region restart ice-restart/>`.
///
/// The focus sends it in session-initiate (id of its session with the bridge, bridge region); the client
/// echoes the id in session-terminate with `restart="true"` to ask for a re-invite, in session-info with
/// its ICE-failed notice, and (newer clients) in session-info with `ice-restart="true"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSession {
    pub id: String,
    pub region: Option<String>,
    pub restart: bool,
    pub ice_restart: bool,
}

impl BridgeSession {
    pub fn new(id: &str, region: Option<&str>) -> Self {
        BridgeSession {
            id: id.to_owned(),
            region: region.map(str::to_owned),
            restart: false,
            ice_restart: false,
        }
    }
}

impl XmlElement for BridgeSession {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "bridge-session";
        xml::expect(el, E, ns::FOCUS)?;
        Ok(BridgeSession {
            id: xml::attr(el, E, "id")?.to_owned(),
            region: xml::opt_string(el, "region"),
            restart: xml::flag(el, E, "restart")?,
            ice_restart: xml::flag(el, E, "ice-restart")?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("bridge-session", ns::FOCUS)
            .attr("id", &self.id)
            .opt_attr("region", self.region.as_ref())
            .flag("restart", self.restart)
            .flag("ice-restart", self.ice_restart)
            .build()
    }
}

/// `<startmuted xmlns='http://jitsi.org/jitmeet/start-muted' audio= video=/>`: the client should start
/// with its microphone / camera muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StartMuted {
    pub audio: bool,
    pub video: bool,
}

impl XmlElement for StartMuted {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "startmuted";
        xml::expect(el, E, ns::JITMEET_START_MUTED)?;
        Ok(StartMuted {
            audio: xml::flag(el, E, "audio")?,
            video: xml::flag(el, E, "video")?,
        })
    }

    fn to_element(&self) -> Element {
        // Both always written: the client compares each with the string "true".
        Builder::new("startmuted", ns::JITMEET_START_MUTED)
            .attr("audio", self.audio)
            .attr("video", self.video)
            .build()
    }
}
