//! RTP description pieces shared by Jingle contents and COLIBRI2 `media`: payload types with their
//! parameters and RTCP feedback, header extensions and `extmap-allow-mixed`.

use crate::error::ParseError;
use crate::ns;
use crate::xml::string_enum;
use crate::xml::{self, Builder, Element, XmlElement};

/// `<parameter name= value=/>`. The namespace is the parent's (Jingle RTP in payload types, SSMA in
/// sources), so it is given when writing and any namespace is accepted when reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub value: String,
}

impl Parameter {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Parameter {
            name: name.into(),
            value: value.into(),
        }
    }

    pub fn parse(el: &Element) -> Result<Self, ParseError> {
        Ok(Parameter {
            name: xml::attr(el, "parameter", "name")?.to_owned(),
            // Jitsi writes valueless parameters (e.g. `cname` in old clients) – treat as empty.
            value: el.attr("value").unwrap_or_default().to_owned(),
        })
    }

    pub fn to_element_ns(&self, ns: &str) -> Element {
        Builder::new("parameter", ns)
            .attr("name", &self.name)
            .attr("value", &self.value)
            .build()
    }

    /// All `<parameter>` children of `el`, whatever their namespace.
    pub fn parse_all(el: &Element) -> Result<Vec<Parameter>, ParseError> {
        let params = el.children().filter(|c| c.name() == "parameter");
        let mut out = Vec::new();
        for p in params {
            if out.len() == xml::MAX_REPEATED {
                return Err(ParseError::TooMany {
                    element: "parameter",
                    count: out.len() + 1,
                    limit: xml::MAX_REPEATED,
                });
            }
            out.push(Parameter::parse(p)?);
        }
        Ok(out)
    }
}

/// `<rtcp-fb xmlns='urn:xmpp:jingle:apps:rtp:rtcp-fb:0' type= subtype=/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpFb {
    pub fb_type: String,
    pub subtype: Option<String>,
}

impl RtcpFb {
    pub fn new(fb_type: &str, subtype: Option<&str>) -> Self {
        RtcpFb {
            fb_type: fb_type.to_owned(),
            subtype: subtype.map(str::to_owned),
        }
    }
}

impl XmlElement for RtcpFb {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "rtcp-fb", ns::JINGLE_RTCP_FB)?;
        Ok(RtcpFb {
            fb_type: xml::attr(el, "rtcp-fb", "type")?.to_owned(),
            subtype: xml::opt_string(el, "subtype"),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("rtcp-fb", ns::JINGLE_RTCP_FB)
            .attr("type", &self.fb_type)
            .opt_attr("subtype", self.subtype.as_ref())
            .build()
    }
}

/// `<payload-type xmlns='urn:xmpp:jingle:apps:rtp:1' id name clockrate channels>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    pub id: u8,
    pub name: String,
    pub clockrate: Option<u32>,
    pub channels: Option<u8>,
    pub maxptime: Option<u32>,
    pub ptime: Option<u32>,
    pub parameters: Vec<Parameter>,
    pub rtcp_fb: Vec<RtcpFb>,
}

impl PayloadType {
    pub fn new(id: u8, name: &str, clockrate: u32, channels: Option<u8>) -> Self {
        PayloadType {
            id,
            name: name.to_owned(),
            clockrate: Some(clockrate),
            channels,
            maxptime: None,
            ptime: None,
            parameters: Vec::new(),
            rtcp_fb: Vec::new(),
        }
    }

    pub fn with_parameter(mut self, name: &str, value: &str) -> Self {
        self.parameters.push(Parameter::new(name, value));
        self
    }

    pub fn with_rtcp_fb(mut self, fb_type: &str, subtype: Option<&str>) -> Self {
        self.rtcp_fb.push(RtcpFb::new(fb_type, subtype));
        self
    }

    /// The value of parameter `name`, if present.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.value.as_str())
    }

    /// For an RTX payload type, the payload type it repairs (`apt`).
    pub fn apt(&self) -> Option<u8> {
        if self.name.eq_ignore_ascii_case("rtx") {
            self.parameter("apt").and_then(|v| v.parse().ok())
        } else {
            None
        }
    }

    pub fn has_rtcp_fb(&self, fb_type: &str, subtype: Option<&str>) -> bool {
        self.rtcp_fb
            .iter()
            .any(|f| f.fb_type == fb_type && f.subtype.as_deref() == subtype)
    }
}

impl XmlElement for PayloadType {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "payload-type";
        xml::expect(el, E, ns::JINGLE_RTP)?;
        Ok(PayloadType {
            id: xml::num(el, E, "id")?,
            name: el.attr("name").unwrap_or_default().to_owned(),
            clockrate: xml::opt_num(el, E, "clockrate")?,
            channels: xml::opt_num(el, E, "channels")?,
            maxptime: xml::opt_num(el, E, "maxptime")?,
            ptime: xml::opt_num(el, E, "ptime")?,
            parameters: Parameter::parse_all(el)?,
            rtcp_fb: xml::parse_children(el, "rtcp-fb", ns::JINGLE_RTCP_FB)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("payload-type", ns::JINGLE_RTP)
            .attr("id", self.id)
            .attr("name", &self.name)
            .opt_attr("clockrate", self.clockrate)
            .opt_attr("channels", self.channels)
            .opt_attr("maxptime", self.maxptime)
            .opt_attr("ptime", self.ptime)
            .children(
                self.parameters
                    .iter()
                    .map(|p| p.to_element_ns(ns::JINGLE_RTP)),
            )
            .children(xml::elements(&self.rtcp_fb))
            .build()
    }
}

/// `<rtp-hdrext xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0' id= uri=/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHdrExt {
    pub id: u8,
    pub uri: String,
    pub senders: Option<String>,
}

impl RtpHdrExt {
    pub fn new(id: u8, uri: &str) -> Self {
        RtpHdrExt {
            id,
            uri: uri.to_owned(),
            senders: None,
        }
    }
}

impl XmlElement for RtpHdrExt {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "rtp-hdrext";
        xml::expect(el, E, ns::JINGLE_RTP_HDREXT)?;
        let id: u8 = xml::num(el, E, "id")?;
        // One-byte and two-byte header extension ids are 1..=255; 0 is reserved.
        if id == 0 {
            return Err(ParseError::BadAttribute {
                element: E,
                attribute: "id",
                value: "0".into(),
                reason: "header extension id 0 is reserved".into(),
            });
        }
        Ok(RtpHdrExt {
            id,
            uri: xml::attr(el, E, "uri")?.to_owned(),
            senders: xml::opt_string(el, "senders"),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("rtp-hdrext", ns::JINGLE_RTP_HDREXT)
            .attr("id", self.id)
            .attr("uri", &self.uri)
            .opt_attr("senders", self.senders.as_ref())
            .build()
    }
}

/// Well-known header extension URIs.
pub mod hdrext {
    pub const AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
    pub const MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
    pub const TRANSPORT_CC: &str =
        "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
    pub const ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
    pub const VIDEO_LAYERS_ALLOCATION: &str =
        "http://www.webrtc.org/experiments/rtp-hdrext/video-layers-allocation00";
    pub const AV1_DEPENDENCY_DESCRIPTOR: &str =
        "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension";
    pub const VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";
    pub const TOFFSET: &str = "urn:ietf:params:rtp-hdrext:toffset";
    pub const RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
}

/// The parts of an RTP description that COLIBRI2 `media` and Jingle `description` share, parsed from the
/// children of either element.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RtpParameters {
    pub payload_types: Vec<PayloadType>,
    pub header_extensions: Vec<RtpHdrExt>,
    /// `<extmap-allow-mixed xmlns='urn:xmpp:jingle:apps:rtp:rtp-hdrext:0'/>`.
    pub extmap_allow_mixed: bool,
}

impl RtpParameters {
    pub fn parse_from(el: &Element) -> Result<Self, ParseError> {
        Ok(RtpParameters {
            payload_types: xml::parse_children(el, "payload-type", ns::JINGLE_RTP)?,
            header_extensions: xml::parse_children(el, "rtp-hdrext", ns::JINGLE_RTP_HDREXT)?,
            extmap_allow_mixed: el.has_child("extmap-allow-mixed", ns::JINGLE_RTP_HDREXT),
        })
    }

    /// The child elements, in the order Jicofo writes them.
    pub fn to_elements(&self) -> Vec<Element> {
        let mut out = xml::elements(&self.payload_types);
        out.extend(xml::elements(&self.header_extensions));
        if self.extmap_allow_mixed {
            out.push(Element::bare("extmap-allow-mixed", ns::JINGLE_RTP_HDREXT));
        }
        out
    }

    /// The header extension id negotiated for `uri`.
    pub fn hdrext_id(&self, uri: &str) -> Option<u8> {
        self.header_extensions
            .iter()
            .find(|h| h.uri == uri)
            .map(|h| h.id)
    }
}

string_enum!(
    /// `media` of a Jingle RTP description (and `type` of COLIBRI2 media): which m-line kind it
    /// describes. Jicofo parses case-insensitively; so do we.
    #[derive(PartialOrd, Ord)]
    MediaType {
        Audio => "audio",
        Video => "video",
        /// The data channel (`m=application`); carries no RTP sources.
        Application => "application" | "data",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: XmlElement + PartialEq + std::fmt::Debug>(xml_text: &str) -> T {
        let v = T::from_xml(xml_text).expect("parses");
        let again = T::from_xml(&v.to_xml()).expect("reparses");
        assert_eq!(v, again);
        v
    }

    #[test]
    fn opus_payload_type_roundtrips() {
        let pt: PayloadType = roundtrip(
            r#"<payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="111" name="opus" clockrate="48000" channels="2">
                 <parameter name="minptime" value="10"/><parameter name="useinbandfec" value="1"/>
                 <rtcp-fb xmlns="urn:xmpp:jingle:apps:rtp:rtcp-fb:0" type="transport-cc"/></payload-type>"#,
        );
        assert_eq!(pt.id, 111);
        assert_eq!(pt.channels, Some(2));
        assert_eq!(pt.parameter("useinbandfec"), Some("1"));
        assert!(pt.has_rtcp_fb("transport-cc", None));
    }

    #[test]
    fn rtx_apt_is_read() {
        let pt: PayloadType = roundtrip(
            r#"<payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="96" name="rtx" clockrate="90000"><parameter name="apt" value="100"/></payload-type>"#,
        );
        assert_eq!(pt.apt(), Some(100));
    }

    #[test]
    fn bad_payload_type_id_is_named() {
        let err = PayloadType::from_xml(
            r#"<payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="300" name="x"/>"#,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ParseError::BadAttribute {
                element: "payload-type",
                attribute: "id",
                ..
            }
        ));
    }

    #[test]
    fn hdrext_requires_uri_and_nonzero_id() {
        assert_eq!(
            RtpHdrExt::from_xml(
                r#"<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="1"/>"#
            )
            .unwrap_err(),
            ParseError::MissingAttribute {
                element: "rtp-hdrext",
                attribute: "uri"
            }
        );
        assert!(
            RtpHdrExt::from_xml(
                r#"<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="0" uri="x"/>"#
            )
            .is_err()
        );
    }

    #[test]
    fn rtp_parameters_keep_extmap_allow_mixed() {
        let el = xml::parse_element(
            r#"<media xmlns="jitsi:colibri2" type="video">
                <payload-type xmlns="urn:xmpp:jingle:apps:rtp:1" id="100" name="VP8" clockrate="90000"/>
                <rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="5" uri="http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"/>
                <extmap-allow-mixed xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"/></media>"#,
        )
        .unwrap();
        let p = RtpParameters::parse_from(&el).unwrap();
        assert!(p.extmap_allow_mixed);
        assert_eq!(p.hdrext_id(hdrext::TRANSPORT_CC), Some(5));
        let mut rebuilt = Builder::new("media", ns::COLIBRI2).build();
        for c in p.to_elements() {
            rebuilt.append_child(c);
        }
        assert_eq!(RtpParameters::parse_from(&rebuilt).unwrap(), p);
    }
}
