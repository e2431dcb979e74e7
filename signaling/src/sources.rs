//! Source-specific media attributes (`urn:xmpp:jingle:apps:rtp:ssma:0`): `source` and `ssrc-group`, as
//! carried in Jingle descriptions and in COLIBRI2 `media-source`.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::ns;
use crate::rtp_description::Parameter;
use crate::xml::string_enum;
use crate::xml::{self, Builder, Element, XmlElement};

string_enum!(
    /// `videoType` of a video source. JVB emits enum names (CAMERA) in some messages, clients lower
    /// case: reading is case-insensitive.
    VideoType {
        Camera => "camera",
        Desktop => "desktop",
        DesktopHighFps => "desktop_high_fps",
        None => "none" | "disabled",
    }
);

/// `<source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc name videoType>` with optional
/// `<ssrc-info xmlns='http://jitsi.org/jitmeet' owner=…/>` and `<parameter>` children (msid, cname).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ssrc: u32,
    /// Source name, `<endpointId>-a0`, `<endpointId>-v0` …
    pub name: Option<String>,
    pub video_type: Option<VideoType>,
    /// `ssrc-info owner`: the endpoint ID (or `jvb`) that sends this source.
    pub owner: Option<String>,
    pub parameters: Vec<Parameter>,
}

impl Source {
    pub fn new(ssrc: u32) -> Self {
        Source {
            ssrc,
            name: None,
            video_type: None,
            owner: None,
            parameters: Vec::new(),
        }
    }

    pub fn named(ssrc: u32, name: &str) -> Self {
        Source {
            name: Some(name.to_owned()),
            ..Source::new(ssrc)
        }
    }

    /// The `msid` parameter (`<stream id> <track id>`).
    pub fn msid(&self) -> Option<&str> {
        self.parameters
            .iter()
            .find(|p| p.name == "msid")
            .map(|p| p.value.as_str())
    }

    /// Sets (or replaces) the `msid` parameter.
    pub fn set_msid(&mut self, msid: Option<&str>) {
        self.parameters.retain(|p| p.name != "msid");
        if let Some(m) = msid {
            self.parameters.push(Parameter::new("msid", m));
        }
    }
}

impl XmlElement for Source {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "source";
        xml::expect(el, E, ns::JINGLE_SSMA)?;
        let owner = match el.get_child("ssrc-info", ns::JITMEET) {
            Some(info) => Some(xml::attr(info, "ssrc-info", "owner")?.to_owned()),
            None => None,
        };
        Ok(Source {
            ssrc: xml::num(el, E, "ssrc")?,
            name: xml::opt_string(el, "name"),
            video_type: xml::opt_num(el, E, "videoType")?,
            owner,
            parameters: Parameter::parse_all(el)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("source", ns::JINGLE_SSMA)
            .attr("ssrc", self.ssrc)
            .opt_attr("name", self.name.as_ref())
            .opt_attr("videoType", self.video_type)
            .children(
                self.parameters
                    .iter()
                    .map(|p| p.to_element_ns(ns::JINGLE_SSMA)),
            )
            .opt_child(self.owner.as_ref().map(|o| {
                Builder::new("ssrc-info", ns::JITMEET)
                    .attr("owner", o)
                    .build()
            }))
            .build()
    }
}

/// `semantics` of an SSRC group.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Semantics {
    /// Simulcast: the SSRCs of each encoding, lowest first.
    Sim,
    /// Flow identification: primary SSRC then its RTX SSRC.
    Fid,
    /// FEC: primary SSRC then its FEC SSRC.
    FecFr,
    Other(String),
}

impl FromStr for Semantics {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "SIM" => Semantics::Sim,
            "FID" => Semantics::Fid,
            "FEC-FR" => Semantics::FecFr,
            other => Semantics::Other(other.to_owned()),
        })
    }
}

impl fmt::Display for Semantics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Semantics::Sim => "SIM",
            Semantics::Fid => "FID",
            Semantics::FecFr => "FEC-FR",
            Semantics::Other(s) => s,
        })
    }
}

/// `<ssrc-group xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' semantics><source ssrc/>…</ssrc-group>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SsrcGroup {
    pub semantics: Semantics,
    pub ssrcs: Vec<u32>,
}

impl SsrcGroup {
    pub fn new(semantics: Semantics, ssrcs: Vec<u32>) -> Self {
        SsrcGroup { semantics, ssrcs }
    }
}

impl XmlElement for SsrcGroup {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "ssrc-group";
        xml::expect(el, E, ns::JINGLE_SSMA)?;
        let semantics = xml::num(el, E, "semantics")?;
        let mut ssrcs = Vec::new();
        for s in xml::children(el, "source", ns::JINGLE_SSMA) {
            if ssrcs.len() == xml::MAX_REPEATED {
                return Err(ParseError::TooMany {
                    element: "source",
                    count: ssrcs.len() + 1,
                    limit: xml::MAX_REPEATED,
                });
            }
            ssrcs.push(xml::num(s, "source", "ssrc")?);
        }
        if ssrcs.is_empty() {
            return Err(ParseError::invalid(E, "group has no sources"));
        }
        Ok(SsrcGroup { semantics, ssrcs })
    }

    fn to_element(&self) -> Element {
        Builder::new("ssrc-group", ns::JINGLE_SSMA)
            .attr("semantics", &self.semantics)
            .children(self.ssrcs.iter().map(|s| {
                Builder::new("source", ns::JINGLE_SSMA)
                    .attr("ssrc", s)
                    .build()
            }))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_source_with_owner_and_msid_roundtrips() {
        let s = Source::from_xml(
            r#"<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="1757014965" name="ab12cd34-v0" videoType="camera">
                 <parameter name="msid" value="d1c5e8b3-video-1 9a7f0c2e-7b1d-4c5e-9f2a-0e6d1b3c4a5f"/>
                 <ssrc-info xmlns="http://jitsi.org/jitmeet" owner="ab12cd34"/></source>"#,
        )
        .unwrap();
        assert_eq!(s.ssrc, 1757014965);
        assert_eq!(s.owner.as_deref(), Some("ab12cd34"));
        assert_eq!(s.video_type, Some(VideoType::Camera));
        assert_eq!(
            s.msid(),
            Some("d1c5e8b3-video-1 9a7f0c2e-7b1d-4c5e-9f2a-0e6d1b3c4a5f")
        );
        assert_eq!(Source::from_xml(&s.to_xml()).unwrap(), s);
    }

    #[test]
    fn ssrc_out_of_range_is_refused() {
        let err = Source::from_xml(
            r#"<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="4294967296"/>"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ParseError::BadAttribute {
                element: "source",
                attribute: "ssrc",
                ..
            }
        ));
    }

    #[test]
    fn groups_roundtrip_and_empty_groups_are_refused() {
        let g = SsrcGroup::from_xml(
            r#"<ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="SIM"><source ssrc="1"/><source ssrc="2"/><source ssrc="3"/></ssrc-group>"#,
        )
        .unwrap();
        assert_eq!(g, SsrcGroup::new(Semantics::Sim, vec![1, 2, 3]));
        assert_eq!(SsrcGroup::from_xml(&g.to_xml()).unwrap(), g);
        assert!(
            SsrcGroup::from_xml(
                r#"<ssrc-group xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" semantics="FID"/>"#
            )
            .is_err()
        );
    }

    #[test]
    fn video_type_accepts_jvb_enum_names() {
        assert_eq!("CAMERA".parse::<VideoType>(), Ok(VideoType::Camera));
        assert_eq!("disabled".parse::<VideoType>(), Ok(VideoType::None));
        assert!("screen".parse::<VideoType>().is_err());
    }
}
