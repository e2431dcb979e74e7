//! `<content>` and its RTP `<description>`.

use crate::error::ParseError;
use crate::ice_udp::IceUdpTransport;
use crate::ns;
use crate::rtp_description::{MediaType, RtcpFb, RtpParameters};
use crate::sources::{Source, SsrcGroup};
use crate::xml::string_enum;
use crate::xml::{self, Builder, Element, XmlElement};

string_enum!(
    /// `creator` of a content.
    Creator { Initiator => "initiator", Responder => "responder" }
);

string_enum!(
    /// `senders` of a content: who sends media on it.
    Senders {
        Both => "both",
        Initiator => "initiator",
        Responder => "responder",
        None => "none",
        /// Not in XEP-0166: lib-jitsi-meet writes it for an m-line with port 0 (a rejected section).
        Rejected => "rejected",
    }
);

/// `<description xmlns='urn:xmpp:jingle:apps:rtp:1' media= ssrc= maxptime=>`.
///
/// Besides the codec parameters it carries the sources (`source`, `ssrc-group`) of whoever the stanza
/// describes: the sender's own in session-accept / source-add / source-remove from a client, everybody
/// else's (with `ssrc-info owner`) in what the focus sends when sources are not JSON-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpDescription {
    pub media: MediaType,
    /// lib-jitsi-meet writes the first SSRC of the m-line here; informational only.
    pub ssrc: Option<u32>,
    /// Jicofo offers `maxptime="60"` on audio.
    pub maxptime: Option<u32>,
    /// Payload types, header extensions, `extmap-allow-mixed`.
    pub rtp: RtpParameters,
    /// Description-level `rtcp-fb` (`a=rtcp-fb:*`).
    pub rtcp_fb: Vec<RtcpFb>,
    pub rtcp_mux: bool,
    pub sources: Vec<Source>,
    pub ssrc_groups: Vec<SsrcGroup>,
}

impl RtpDescription {
    /// An empty description of `media`.
    pub fn new(media: MediaType) -> Self {
        RtpDescription {
            media,
            ssrc: None,
            maxptime: None,
            rtp: RtpParameters::default(),
            rtcp_fb: Vec::new(),
            rtcp_mux: false,
            sources: Vec::new(),
            ssrc_groups: Vec::new(),
        }
    }
}

/// Parses the `source` children, skipping Firefox's RID-only `<source rid=…/>` (no SSRC to signal).
fn parse_sources(el: &Element) -> Result<Vec<Source>, ParseError> {
    let mut out = Vec::new();
    for s in xml::children(el, "source", ns::JINGLE_SSMA) {
        if s.attr("ssrc").is_none() && s.attr("rid").is_some() {
            continue;
        }
        if out.len() == xml::MAX_REPEATED {
            return Err(ParseError::TooMany {
                element: "source",
                count: out.len() + 1,
                limit: xml::MAX_REPEATED,
            });
        }
        out.push(Source::from_element(s)?);
    }
    Ok(out)
}

impl XmlElement for RtpDescription {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "description";
        xml::expect(el, E, ns::JINGLE_RTP)?;
        Ok(RtpDescription {
            media: xml::num(el, E, "media")?,
            ssrc: xml::opt_num(el, E, "ssrc")?,
            maxptime: xml::opt_num(el, E, "maxptime")?,
            rtp: RtpParameters::parse_from(el)?,
            rtcp_fb: xml::parse_children(el, "rtcp-fb", ns::JINGLE_RTCP_FB)?,
            // Written without a namespace (inherits RTP) by both peers; accept any.
            rtcp_mux: el.children().any(|c| c.name() == "rtcp-mux"),
            sources: parse_sources(el)?,
            ssrc_groups: xml::parse_children(el, "ssrc-group", ns::JINGLE_SSMA)?,
        })
    }

    fn to_element(&self) -> Element {
        let mut b = Builder::new("description", ns::JINGLE_RTP)
            .attr("media", self.media)
            .opt_attr("ssrc", self.ssrc)
            .opt_attr("maxptime", self.maxptime)
            .children(self.rtp.to_elements())
            .children(xml::elements(&self.rtcp_fb));
        if self.rtcp_mux {
            b = b.child(Element::bare("rtcp-mux", ns::JINGLE_RTP));
        }
        b.children(xml::elements(&self.sources))
            .children(xml::elements(&self.ssrc_groups))
            .build()
    }
}

/// `<content creator name senders>` with an optional RTP description and ICE-UDP transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// Optional in practice: lib-jitsi-meet's source-add/source-remove contents have none.
    pub creator: Option<Creator>,
    /// `audio`, `video`, `data` (the m-line's mid).
    pub name: String,
    pub senders: Option<Senders>,
    pub description: Option<RtpDescription>,
    pub transport: Option<IceUdpTransport>,
    /// `<initial-last-n xmlns='jitsi:colibri2' value=/>` a newer client puts in its video content.
    pub initial_last_n: Option<u32>,
}

impl Content {
    /// A content with just a name, as in source-add.
    pub fn named(name: &str) -> Self {
        Content {
            creator: None,
            name: name.to_owned(),
            senders: None,
            description: None,
            transport: None,
            initial_last_n: None,
        }
    }

    /// What the focus offers: `creator="initiator" senders="both"`.
    pub fn offer(
        name: &str,
        description: Option<RtpDescription>,
        transport: IceUdpTransport,
    ) -> Self {
        Content {
            creator: Some(Creator::Initiator),
            senders: Some(Senders::Both),
            description,
            transport: Some(transport),
            ..Content::named(name)
        }
    }

    /// The media type: the description's, or the content name when there is no description.
    pub fn media(&self) -> Option<MediaType> {
        match &self.description {
            Some(d) => Some(d.media),
            None => self.name.parse().ok(),
        }
    }
}

impl XmlElement for Content {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "content";
        xml::expect(el, E, ns::JINGLE)?;
        let initial_last_n = match el.get_child("initial-last-n", ns::COLIBRI2) {
            Some(c) => Some(xml::num(c, "initial-last-n", "value")?),
            None => None,
        };
        Ok(Content {
            creator: xml::opt_num(el, E, "creator")?,
            name: xml::attr(el, E, "name")?.to_owned(),
            senders: xml::opt_num(el, E, "senders")?,
            description: xml::parse_child(el, "description", ns::JINGLE_RTP)?,
            transport: xml::parse_child(el, "transport", ns::JINGLE_ICE_UDP)?,
            initial_last_n,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("content", ns::JINGLE)
            .opt_attr("creator", self.creator)
            .attr("name", &self.name)
            .opt_attr("senders", self.senders)
            .opt_child(self.initial_last_n.map(|n| {
                Builder::new("initial-last-n", ns::COLIBRI2)
                    .attr("value", n)
                    .build()
            }))
            .opt_child(self.description.as_ref().map(XmlElement::to_element))
            .opt_child(self.transport.as_ref().map(XmlElement::to_element))
            .build()
    }
}
