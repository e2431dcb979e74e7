//! The brewery: bridges join a MUC (`jvbbrewery@internal-muc…`) and re-send their presence every few
//! seconds with a `<stats xmlns='http://jitsi.org/protocol/colibri'>` child; the focus treats every
//! occupant whose presence carries it as a bridge and selects bridges from these numbers.
//!
//! [`Stats`] is the generic, ordered name → value list as on the wire; [`BridgeStatus`] is the typed view
//! of the entries the focus reads. Every field of [`BridgeStatus`] is optional because a presence is a
//! partial update: an absent stat leaves the focus's previous value in place.

use std::fmt::Display;

use crate::error::ParseError;
use crate::ns;
use crate::xml::{self, Builder, Element, XmlElement};

/// Stat names the focus reads, and the ones the reference bridge publishes by default.
pub mod stat {
    /// Load relative to the bridge's capacity (1.0 = at capacity); the focus prefers the least stressed.
    pub const STRESS_LEVEL: &str = "stress_level";
    /// Stress one more endpoint adds; the focus uses it to predict load of recent allocations.
    pub const AVERAGE_PARTICIPANT_STRESS: &str = "average_participant_stress";
    /// Draining bridges get no new conferences. The focus assumes `true` until told otherwise.
    pub const DRAIN: &str = "drain";
    /// Sticky in the focus: once true, no new conferences.
    pub const GRACEFUL_SHUTDOWN: &str = "graceful_shutdown";
    /// Sticky in the focus: once true, it moves participants away.
    pub const SHUTTING_DOWN: &str = "shutting_down";
    /// Bridges of different versions are not mixed in one conference.
    pub const VERSION: &str = "version";
    pub const RELEASE: &str = "release";
    pub const REGION: &str = "region";
    /// Identifies the bridge for relays (cascading).
    pub const RELAY_ID: &str = "relay_id";
    /// Read only when the focus uses presence-based health checks.
    pub const HEALTHY: &str = "healthy";
    /// UTC `yyyy-MM-dd HH:mm:ss.SSS`; informational.
    pub const CURRENT_TIMESTAMP: &str = "current_timestamp";
    pub const COLIBRI2: &str = "colibri2";

    /// What the reference bridge publishes in presence by default (its stats filter), in its order.
    pub const PRESENCE_DEFAULT: [&str; 12] = [
        AVERAGE_PARTICIPANT_STRESS,
        COLIBRI2,
        CURRENT_TIMESTAMP,
        DRAIN,
        GRACEFUL_SHUTDOWN,
        HEALTHY,
        REGION,
        RELAY_ID,
        RELEASE,
        SHUTTING_DOWN,
        STRESS_LEVEL,
        VERSION,
    ];
}

/// Service discovery facts of a bridge.
pub mod features {
    use crate::ns;

    /// Answers `<healthcheck/>` IQs.
    pub const HEALTHCHECK: &str = ns::HEALTHCHECK;
    pub const JINGLE_DTLS: &str = ns::JINGLE_DTLS;
    pub const JINGLE_ICE_UDP: &str = ns::JINGLE_ICE_UDP;
    /// XEP-0092 software version.
    pub const IQ_VERSION: &str = "jabber:iq:version";

    /// The disco#info features the reference bridge advertises.
    pub const BRIDGE: [&str; 4] = [HEALTHCHECK, JINGLE_DTLS, JINGLE_ICE_UDP, IQ_VERSION];

    /// XEP-0092 `<name>` of the reference bridge.
    pub const BRIDGE_APPLICATION_NAME: &str = "JVB";
}

/// `<stat name= value=/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub name: String,
    pub value: String,
}

impl XmlElement for Stat {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "stat", ns::COLIBRI)?;
        Ok(Stat {
            name: xml::attr(el, "stat", "name")?.to_owned(),
            // The reference parser tolerates a missing value (reads it as null); keep it as empty.
            value: el.attr("value").unwrap_or_default().to_owned(),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("stat", ns::COLIBRI)
            .attr("name", &self.name)
            .attr("value", &self.value)
            .build()
    }
}

/// `<stats xmlns='http://jitsi.org/protocol/colibri'>`: stats in the order written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stats {
    pub stats: Vec<Stat>,
}

impl Stats {
    pub fn new() -> Self {
        Stats::default()
    }

    /// The value of the first stat called `name` (the reference reads the first one too).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.stats
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value.as_str())
    }

    /// Sets `name` to `value`, replacing an existing entry in place or appending a new one.
    pub fn set(&mut self, name: &str, value: impl Display) {
        let value = value.to_string();
        match self.stats.iter_mut().find(|s| s.name == name) {
            Some(s) => s.value = value,
            None => self.stats.push(Stat {
                name: name.to_owned(),
                value,
            }),
        }
    }

    /// Builder form of [`Stats::set`].
    pub fn with(mut self, name: &str, value: impl Display) -> Self {
        self.set(name, value);
        self
    }

    /// A non-negative, finite number.
    fn number(&self, name: &'static str) -> Result<Option<f64>, ParseError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => Ok(Some(v)),
            Ok(_) => Err(ParseError::invalid(
                "stat",
                format!("{name} value '{raw}' must be a finite non-negative number"),
            )),
            Err(e) => Err(ParseError::invalid(
                "stat",
                format!("{name} value '{raw}' is not a number: {e}"),
            )),
        }
    }

    fn boolean(&self, name: &'static str) -> Result<Option<bool>, ParseError> {
        self.get(name)
            .map(|raw| {
                xml::parse_bool("stat", "value", raw).map_err(|_| {
                    ParseError::invalid(
                        "stat",
                        format!("{name} value '{raw}' is not true or false"),
                    )
                })
            })
            .transpose()
    }

    pub fn stress_level(&self) -> Result<Option<f64>, ParseError> {
        self.number(stat::STRESS_LEVEL)
    }

    pub fn average_participant_stress(&self) -> Result<Option<f64>, ParseError> {
        self.number(stat::AVERAGE_PARTICIPANT_STRESS)
    }

    pub fn drain(&self) -> Result<Option<bool>, ParseError> {
        self.boolean(stat::DRAIN)
    }

    pub fn graceful_shutdown(&self) -> Result<Option<bool>, ParseError> {
        self.boolean(stat::GRACEFUL_SHUTDOWN)
    }

    pub fn shutting_down(&self) -> Result<Option<bool>, ParseError> {
        self.boolean(stat::SHUTTING_DOWN)
    }

    pub fn healthy(&self) -> Result<Option<bool>, ParseError> {
        self.boolean(stat::HEALTHY)
    }

    pub fn version(&self) -> Option<&str> {
        self.get(stat::VERSION)
    }

    pub fn release(&self) -> Option<&str> {
        self.get(stat::RELEASE)
    }

    pub fn region(&self) -> Option<&str> {
        self.get(stat::REGION)
    }

    pub fn relay_id(&self) -> Option<&str> {
        self.get(stat::RELAY_ID)
    }

    /// The typed view of everything the focus reads; the first malformed value is an error.
    pub fn status(&self) -> Result<BridgeStatus, ParseError> {
        Ok(BridgeStatus {
            stress_level: self.stress_level()?,
            average_participant_stress: self.average_participant_stress()?,
            drain: self.drain()?,
            graceful_shutdown: self.graceful_shutdown()?,
            shutting_down: self.shutting_down()?,
            healthy: self.healthy()?,
            version: self.version().map(str::to_owned),
            release: self.release().map(str::to_owned),
            region: self.region().map(str::to_owned),
            relay_id: self.relay_id().map(str::to_owned),
        })
    }
}

impl XmlElement for Stats {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "stats", ns::COLIBRI)?;
        Ok(Stats {
            stats: xml::parse_children(el, "stat", ns::COLIBRI)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("stats", ns::COLIBRI)
            .children(xml::elements(&self.stats))
            .build()
    }
}

/// The brewery stats the focus acts on. `None` = not reported in this presence.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BridgeStatus {
    pub stress_level: Option<f64>,
    pub average_participant_stress: Option<f64>,
    pub drain: Option<bool>,
    pub graceful_shutdown: Option<bool>,
    pub shutting_down: Option<bool>,
    pub healthy: Option<bool>,
    pub version: Option<String>,
    pub release: Option<String>,
    pub region: Option<String>,
    pub relay_id: Option<String>,
}

impl BridgeStatus {
    /// The stats a bridge publishes, in the reference order, reported fields only.
    pub fn to_stats(&self) -> Stats {
        let mut s = Stats::new();
        if let Some(v) = self.average_participant_stress {
            s.set(stat::AVERAGE_PARTICIPANT_STRESS, v);
        }
        if let Some(v) = self.drain {
            s.set(stat::DRAIN, v);
        }
        if let Some(v) = self.graceful_shutdown {
            s.set(stat::GRACEFUL_SHUTDOWN, v);
        }
        if let Some(v) = self.healthy {
            s.set(stat::HEALTHY, v);
        }
        if let Some(v) = &self.region {
            s.set(stat::REGION, v);
        }
        if let Some(v) = &self.relay_id {
            s.set(stat::RELAY_ID, v);
        }
        if let Some(v) = &self.release {
            s.set(stat::RELEASE, v);
        }
        if let Some(v) = self.shutting_down {
            s.set(stat::SHUTTING_DOWN, v);
        }
        if let Some(v) = self.stress_level {
            s.set(stat::STRESS_LEVEL, v);
        }
        if let Some(v) = &self.version {
            s.set(stat::VERSION, v);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_in_place_and_keeps_order() {
        let mut s = Stats::new().with("a", 1).with("b", 2);
        s.set("a", 3);
        assert_eq!(
            s.stats,
            vec![
                Stat {
                    name: "a".into(),
                    value: "3".into()
                },
                Stat {
                    name: "b".into(),
                    value: "2".into()
                }
            ]
        );
    }

    #[test]
    fn numbers_are_written_so_java_reads_them() {
        let s = Stats::new()
            .with(stat::STRESS_LEVEL, 0.05f64)
            .with(stat::DRAIN, false);
        assert_eq!(s.get(stat::STRESS_LEVEL), Some("0.05"));
        assert_eq!(s.get(stat::DRAIN), Some("false"));
        // Whole numbers carry no fraction, which Double.parseDouble accepts.
        assert_eq!(Stats::new().with("x", 1.0f64).get("x"), Some("1"));
    }

    /// What a reference bridge publishes (default stats filter), as the focus sees it in presence.
    const JVB_PRESENCE_STATS: &str = r#"<stats xmlns="http://jitsi.org/protocol/colibri">
        <stat name="average_participant_stress" value="0.01"/>
        <stat name="current_timestamp" value="2021-12-14 09:31:07.412"/>
        <stat name="drain" value="false"/>
        <stat name="graceful_shutdown" value="false"/>
        <stat name="healthy" value="true"/>
        <stat name="region" value="eu-central"/>
        <stat name="relay_id" value="10.0.3.7"/>
        <stat name="release" value="6865"/>
        <stat name="shutting_down" value="false"/>
        <stat name="stress_level" value="0.137"/>
        <stat name="version" value="2.1.595-g3de9a3fc"/>
      </stats>"#;

    #[test]
    fn reference_bridge_presence_roundtrips_and_reads() {
        let s = Stats::from_xml(JVB_PRESENCE_STATS).unwrap();
        assert_eq!(s.stats.len(), 11);
        assert_eq!(s.stats[1].name, "current_timestamp");
        assert_eq!(Stats::from_xml(&s.to_xml()).unwrap(), s);
        assert_eq!(
            s.status().unwrap(),
            BridgeStatus {
                stress_level: Some(0.137),
                average_participant_stress: Some(0.01),
                drain: Some(false),
                graceful_shutdown: Some(false),
                shutting_down: Some(false),
                healthy: Some(true),
                version: Some("2.1.595-g3de9a3fc".into()),
                release: Some("6865".into()),
                region: Some("eu-central".into()),
                relay_id: Some("10.0.3.7".into()),
            }
        );
    }

    #[test]
    fn status_written_by_our_bridge_reads_back() {
        let status = BridgeStatus {
            stress_level: Some(0.42),
            average_participant_stress: Some(0.01),
            drain: Some(false),
            graceful_shutdown: Some(true),
            shutting_down: Some(false),
            healthy: None,
            version: Some("0.1.0".into()),
            release: None,
            region: Some("us-east".into()),
            relay_id: None,
        };
        let stats = status.to_stats();
        // Only reported fields are written, in the reference order.
        let names: Vec<&str> = stats.stats.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "average_participant_stress",
                "drain",
                "graceful_shutdown",
                "region",
                "shutting_down",
                "stress_level",
                "version"
            ]
        );
        let back = Stats::from_xml(&stats.to_xml()).unwrap();
        assert_eq!(back.status().unwrap(), status);
    }

    #[test]
    fn partial_presence_leaves_the_rest_unreported() {
        let s = Stats::from_xml(
            r#"<stats xmlns="http://jitsi.org/protocol/colibri"><stat name="stress_level" value="1"/><stat name="conferences" value="3"/></stats>"#,
        )
        .unwrap();
        let st = s.status().unwrap();
        assert_eq!(st.stress_level, Some(1.0));
        assert_eq!(st.drain, None);
        assert_eq!(st.version, None);
        // Non-focus stats stay available generically.
        assert_eq!(s.get("conferences"), Some("3"));
        assert_eq!(
            Stats::from_xml(&Stats::new().to_xml()).unwrap(),
            Stats::new()
        );
    }

    #[test]
    fn java_boolean_spellings_are_accepted() {
        let s = Stats::new()
            .with(stat::DRAIN, "TRUE")
            .with(stat::HEALTHY, "False");
        assert_eq!(s.drain(), Ok(Some(true)));
        assert_eq!(s.healthy(), Ok(Some(false)));
    }

    #[test]
    fn malformed_values_are_typed_errors_naming_the_stat() {
        for (name, value, needle) in [
            (
                stat::STRESS_LEVEL,
                "high",
                "stress_level value 'high' is not a number",
            ),
            (stat::STRESS_LEVEL, "NaN", "finite non-negative"),
            (stat::STRESS_LEVEL, "-0.5", "finite non-negative"),
            (
                stat::AVERAGE_PARTICIPANT_STRESS,
                "inf",
                "finite non-negative",
            ),
            (stat::DRAIN, "yes", "drain value 'yes' is not true or false"),
            (stat::GRACEFUL_SHUTDOWN, "", "graceful_shutdown value ''"),
        ] {
            let s = Stats::new().with(name, value);
            match s.status() {
                Err(ParseError::Invalid {
                    element: "stat",
                    reason,
                }) => {
                    assert!(reason.contains(needle), "{reason}")
                }
                other => panic!("{name}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_elements_are_refused() {
        assert_eq!(
            Stats::from_xml(
                r#"<stats xmlns="http://jitsi.org/protocol/colibri"><stat value="1"/></stats>"#
            ),
            Err(ParseError::MissingAttribute {
                element: "stat",
                attribute: "name"
            })
        );
        assert!(matches!(
            Stats::from_xml(r#"<stats xmlns="jitsi:colibri2"/>"#),
            Err(ParseError::WrongElement {
                expected: "stats",
                ..
            })
        ));
        let many = format!(
            r#"<stats xmlns="http://jitsi.org/protocol/colibri">{}</stats>"#,
            r#"<stat name="x" value="1"/>"#.repeat(xml::MAX_REPEATED + 1)
        );
        assert!(matches!(
            Stats::from_xml(&many),
            Err(ParseError::TooMany {
                element: "stat",
                ..
            })
        ));
        let huge = format!(
            r#"<stats xmlns="http://jitsi.org/protocol/colibri"><stat name="x" value="{}"/></stats>"#,
            "9".repeat(xml::MAX_STANZA_BYTES)
        );
        assert!(matches!(
            Stats::from_xml(&huge),
            Err(ParseError::Oversized { .. })
        ));
        // A missing value is tolerated (the reference reads it as null) and reads as empty.
        let s = Stats::from_xml(
            r#"<stats xmlns="http://jitsi.org/protocol/colibri"><stat name="region"/></stats>"#,
        )
        .unwrap();
        assert_eq!(s.region(), Some(""));
    }

    #[test]
    fn presence_default_and_features_match_the_reference() {
        assert_eq!(stat::PRESENCE_DEFAULT.len(), 12);
        assert!(stat::PRESENCE_DEFAULT.contains(&stat::DRAIN));
        assert_eq!(
            features::BRIDGE,
            [
                "http://jitsi.org/protocol/healthcheck",
                "urn:xmpp:jingle:apps:dtls:0",
                "urn:xmpp:jingle:transports:ice-udp:1",
                "jabber:iq:version"
            ]
        );
    }
}
