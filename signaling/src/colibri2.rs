//! COLIBRI2 (`jitsi:colibri2`): how the focus allocates and updates endpoints on a bridge.
//!
//! The focus sends `<conference-modify>` in an IQ set to the bridge's brewery occupant JID; the bridge
//! answers with `<conference-modified>` or with an IQ error whose stanza `<error>` carries a colibri2
//! [`Colibri2Error`] reason (see [`Colibri2ErrorResponse`], used by both sides). The types here are the IQ
//! payloads; the IQ envelope belongs to the XMPP plumbing.
//!
//! Flags (`create`, `expire`, `ice-controlling` …) are written only when true, as Jicofo does, and read
//! as false when absent. Relays and media export (`connects`) are modelled but only syntactically
//! checked: the bridge does not implement them yet.

use std::fmt;

use crate::error::ParseError;
use crate::ice_udp::IceUdpTransport;
use crate::ns;
use crate::rtp_description::RtpParameters;
use crate::sources::{Source, SsrcGroup};
use crate::xml::{self, Builder, Element, XmlElement};

use crate::xml::string_enum;

/// `type` of `media` and `media-source`: the same enum as Jingle's description `media`, so the focus
/// maps one onto the other without conversion. `application` never carries RTP, and is refused where
/// COLIBRI2 expects audio or video.
pub use crate::rtp_description::MediaType;

/// Reads a `type` attribute that must be audio or video.
fn rtp_media_type(el: &Element, element: &'static str) -> Result<MediaType, ParseError> {
    match xml::num(el, element, "type")? {
        MediaType::Application => Err(ParseError::BadAttribute {
            element,
            attribute: "type",
            value: "application".into(),
            reason: "expected audio or video".into(),
        }),
        t => Ok(t),
    }
}

string_enum!(
    /// `muc-role` of an endpoint (the bridge only distinguishes `visitor`).
    MucRole { Moderator => "moderator", Participant => "participant", Visitor => "visitor", None => "none" }
);

string_enum!(
    /// SCTP role of the bridge side (`server` for endpoints).
    SctpRole { Client => "client", Server => "server" }
);

string_enum!(
    /// The colibri2 error `reason` (the reference bridge writes lower-case enum names).
    Reason {
        ConferenceNotFound => "conference_not_found",
        ConferenceAlreadyExists => "conference_already_exists",
        FeatureNotImplemented => "feature_not_implemented",
        GracefulShutdown => "graceful_shutdown",
        UnknownEndpoint => "unknown_endpoint",
        Unspecified => "unspecified",
    }
);

string_enum!(
    /// `type` of a media-export `connect`.
    ConnectType { Recorder => "recorder", Transcriber => "transcriber", Translator => "translator" }
);

/// Well-known endpoint capability names.
pub mod capability {
    /// Mandatory: the bridge refuses to create an endpoint without it.
    pub const SOURCE_NAMES: &str = "source-names";
    pub const SSRC_REWRITING: &str = "ssrc-rewriting";
    pub const PRIVATE_ADDRESS_CONNECTIVITY: &str = "private-address-connectivity";
    pub const RTP_MID_DEMUX: &str = "rtp-mid-demux";
}

/// Rejects empty identifiers, which the reference implementation treats as missing.
fn non_empty(
    el: &Element,
    element: &'static str,
    attribute: &'static str,
) -> Result<String, ParseError> {
    let v = xml::attr(el, element, attribute)?;
    if v.trim().is_empty() {
        return Err(ParseError::BadAttribute {
            element,
            attribute,
            value: v.to_owned(),
            reason: "must not be empty".into(),
        });
    }
    Ok(v.to_owned())
}

/// Refuses more than [`xml::MAX_REPEATED`] items of one kind.
fn check_count(element: &'static str, count: usize) -> Result<(), ParseError> {
    if count > xml::MAX_REPEATED {
        return Err(ParseError::TooMany {
            element,
            count,
            limit: xml::MAX_REPEATED,
        });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// conference-modify / conference-modified

/// `<conference-modify xmlns='jitsi:colibri2' meeting-id name create expire rtcstats-enabled>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceModify {
    /// Required: the MUC's meeting ID, the bridge's key for the conference.
    pub meeting_id: String,
    /// Room JID (sent on create).
    pub name: Option<String>,
    pub create: bool,
    pub expire: bool,
    /// Defaults to true; written only when false.
    pub rtcstats_enabled: bool,
    pub endpoints: Vec<Endpoint>,
    pub relays: Vec<Relay>,
    /// `Some(vec![])` is an empty `<connects/>`, which clears all media exports.
    pub connects: Option<Vec<Connect>>,
}

impl ConferenceModify {
    pub fn new(meeting_id: impl Into<String>) -> Self {
        ConferenceModify {
            meeting_id: meeting_id.into(),
            name: None,
            create: false,
            expire: false,
            rtcstats_enabled: true,
            endpoints: Vec::new(),
            relays: Vec::new(),
            connects: None,
        }
    }

    /// The endpoint with `id`, if the request mentions it.
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }
}

impl XmlElement for ConferenceModify {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "conference-modify";
        xml::expect(el, E, ns::COLIBRI2)?;
        let connects = match el.get_child("connects", ns::COLIBRI2) {
            Some(c) => Some(xml::parse_children(c, "connect", ns::COLIBRI2)?),
            None => None,
        };
        Ok(ConferenceModify {
            meeting_id: non_empty(el, E, "meeting-id")?,
            name: xml::opt_string(el, "name"),
            create: xml::flag(el, E, "create")?,
            expire: xml::flag(el, E, "expire")?,
            rtcstats_enabled: xml::opt_bool(el, E, "rtcstats-enabled")?.unwrap_or(true),
            endpoints: xml::parse_children(el, "endpoint", ns::COLIBRI2)?,
            relays: xml::parse_children(el, "relay", ns::COLIBRI2)?,
            connects,
        })
    }

    fn to_element(&self) -> Element {
        let mut b = Builder::new("conference-modify", ns::COLIBRI2)
            .attr("meeting-id", &self.meeting_id)
            .opt_attr("name", self.name.as_ref());
        if !self.rtcstats_enabled {
            b = b.attr("rtcstats-enabled", "false");
        }
        b.flag("create", self.create)
            .flag("expire", self.expire)
            .children(xml::elements(&self.endpoints))
            .children(xml::elements(&self.relays))
            .opt_child(self.connects.as_ref().map(|c| {
                Builder::new("connects", ns::COLIBRI2)
                    .children(xml::elements(c))
                    .build()
            }))
            .build()
    }
}

/// `<conference-modified xmlns='jitsi:colibri2'>`: per-endpoint results (transport on create) and, when
/// the request created something, the bridge's feedback sources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConferenceModified {
    pub endpoints: Vec<Endpoint>,
    pub relays: Vec<Relay>,
    pub sources: Option<Sources>,
}

impl ConferenceModified {
    pub fn endpoint(&self, id: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.id == id)
    }
}

impl XmlElement for ConferenceModified {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "conference-modified", ns::COLIBRI2)?;
        Ok(ConferenceModified {
            endpoints: xml::parse_children(el, "endpoint", ns::COLIBRI2)?,
            relays: xml::parse_children(el, "relay", ns::COLIBRI2)?,
            sources: xml::parse_child(el, "sources", ns::COLIBRI2)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("conference-modified", ns::COLIBRI2)
            .children(xml::elements(&self.endpoints))
            .children(xml::elements(&self.relays))
            .opt_child(self.sources.as_ref().map(XmlElement::to_element))
            .build()
    }
}

// ---------------------------------------------------------------------------------------------------------
// endpoint and its children

/// `<endpoint id create expire stats-id muc-role diarize>` with media, transport, sources, force-mute,
/// capabilities and initial-last-n.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Required: the endpoint ID (the client's MUC resource).
    pub id: String,
    pub create: bool,
    pub expire: bool,
    pub stats_id: Option<String>,
    pub muc_role: Option<MucRole>,
    /// Per-endpoint transcription diarization (newer focus versions).
    pub diarize: bool,
    pub media: Vec<Media>,
    pub transport: Option<Transport>,
    /// The endpoint's complete source set; `Some` with no sources clears them.
    pub sources: Option<Sources>,
    pub force_mute: Option<ForceMute>,
    /// Capability names, see [`capability`].
    pub capabilities: Vec<String>,
    pub initial_last_n: Option<i32>,
}

impl Endpoint {
    pub fn new(id: impl Into<String>) -> Self {
        Endpoint {
            id: id.into(),
            ..Default::default()
        }
    }

    /// `<endpoint id expire='true'/>`.
    pub fn expired(id: impl Into<String>) -> Self {
        Endpoint {
            expire: true,
            ..Endpoint::new(id)
        }
    }

    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities.iter().any(|c| c == name)
    }

    /// The `media` of the given type, if present.
    pub fn media(&self, media_type: MediaType) -> Option<&Media> {
        self.media.iter().find(|m| m.media_type == media_type)
    }
}

impl XmlElement for Endpoint {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "endpoint";
        xml::expect(el, E, ns::COLIBRI2)?;
        let mut capabilities = Vec::new();
        for c in xml::children(el, "capability", ns::COLIBRI2) {
            capabilities.push(xml::attr(c, "capability", "name")?.to_owned());
            check_count("capability", capabilities.len())?;
        }
        let initial_last_n = match el.get_child("initial-last-n", ns::COLIBRI2) {
            Some(n) => Some(xml::num(n, "initial-last-n", "value")?),
            None => None,
        };
        Ok(Endpoint {
            id: non_empty(el, E, "id")?,
            create: xml::flag(el, E, "create")?,
            expire: xml::flag(el, E, "expire")?,
            stats_id: xml::opt_string(el, "stats-id"),
            muc_role: xml::opt_num(el, E, "muc-role")?,
            diarize: xml::flag(el, E, "diarize")?,
            media: xml::parse_children(el, "media", ns::COLIBRI2)?,
            transport: xml::parse_child(el, "transport", ns::COLIBRI2)?,
            sources: xml::parse_child(el, "sources", ns::COLIBRI2)?,
            force_mute: xml::parse_child(el, "force-mute", ns::COLIBRI2)?,
            capabilities,
            initial_last_n,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("endpoint", ns::COLIBRI2)
            .attr("id", &self.id)
            .flag("create", self.create)
            .flag("expire", self.expire)
            .opt_attr("stats-id", self.stats_id.as_ref())
            .opt_attr("muc-role", self.muc_role)
            .flag("diarize", self.diarize)
            .children(xml::elements(&self.media))
            .opt_child(self.transport.as_ref().map(XmlElement::to_element))
            .opt_child(self.sources.as_ref().map(XmlElement::to_element))
            .opt_child(self.force_mute.as_ref().map(XmlElement::to_element))
            .children(self.capabilities.iter().map(|c| {
                Builder::new("capability", ns::COLIBRI2)
                    .attr("name", c)
                    .build()
            }))
            .opt_child(self.initial_last_n.map(|n| {
                Builder::new("initial-last-n", ns::COLIBRI2)
                    .attr("value", n)
                    .build()
            }))
            .build()
    }
}

/// `<media type='audio|video'>` with Jingle payload types, header extensions and `extmap-allow-mixed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub media_type: MediaType,
    pub rtp: RtpParameters,
}

impl XmlElement for Media {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "media", ns::COLIBRI2)?;
        Ok(Media {
            media_type: rtp_media_type(el, "media")?,
            rtp: RtpParameters::parse_from(el)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("media", ns::COLIBRI2)
            .attr("type", self.media_type)
            .children(self.rtp.to_elements())
            .build()
    }
}

/// colibri2 `<transport ice-controlling use-unique-port ice-restart>` wrapping an ICE-UDP transport and an
/// optional `<sctp>`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transport {
    /// Jicofo sends true for endpoints: the bridge is the ICE controlling agent.
    pub ice_controlling: bool,
    /// Relays only.
    pub use_unique_port: bool,
    /// Request an in-place ICE restart (newer focus versions).
    pub ice_restart: bool,
    pub ice_udp: Option<IceUdpTransport>,
    pub sctp: Option<Sctp>,
}

impl XmlElement for Transport {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "transport";
        xml::expect(el, E, ns::COLIBRI2)?;
        Ok(Transport {
            ice_controlling: xml::flag(el, E, "ice-controlling")?,
            use_unique_port: xml::flag(el, E, "use-unique-port")?,
            ice_restart: xml::flag(el, E, "ice-restart")?,
            ice_udp: xml::parse_child(el, "transport", ns::JINGLE_ICE_UDP)?,
            sctp: xml::parse_child(el, "sctp", ns::COLIBRI2)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("transport", ns::COLIBRI2)
            .flag("ice-controlling", self.ice_controlling)
            .flag("use-unique-port", self.use_unique_port)
            .flag("ice-restart", self.ice_restart)
            .opt_child(self.ice_udp.as_ref().map(XmlElement::to_element))
            .opt_child(self.sctp.as_ref().map(XmlElement::to_element))
            .build()
    }
}

/// `<sctp port role/>`: empty in a request ("open a bridge channel over SCTP"); the bridge answers with
/// its port (5000) and role (`server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sctp {
    pub port: Option<u16>,
    pub role: Option<SctpRole>,
}

impl XmlElement for Sctp {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "sctp";
        xml::expect(el, E, ns::COLIBRI2)?;
        Ok(Sctp {
            port: xml::opt_num(el, E, "port")?,
            role: xml::opt_num(el, E, "role")?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("sctp", ns::COLIBRI2)
            .opt_attr("role", self.role)
            .opt_attr("port", self.port)
            .build()
    }
}

/// `<sources>`: a list of `media-source`s (an endpoint's complete set, or the bridge's feedback sources).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sources {
    pub media_sources: Vec<MediaSource>,
}

impl Sources {
    /// Every SSRC in every media source.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + '_ {
        self.media_sources
            .iter()
            .flat_map(|m| m.sources.iter().map(|s| s.ssrc))
    }

    pub fn media_source(&self, id: &str) -> Option<&MediaSource> {
        self.media_sources.iter().find(|m| m.id == id)
    }
}

impl XmlElement for Sources {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        xml::expect(el, "sources", ns::COLIBRI2)?;
        Ok(Sources {
            media_sources: xml::parse_children(el, "media-source", ns::COLIBRI2)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("sources", ns::COLIBRI2)
            .children(xml::elements(&self.media_sources))
            .build()
    }
}

/// `<media-source type id synthetic>`: one named source (e.g. `ab12cd34-v0`) with its SSRCs (ssma
/// `source`, without msid) and groups (SIM, FID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSource {
    pub media_type: MediaType,
    /// The source name.
    pub id: String,
    /// Injected by the server (e.g. translated audio); forwarded only to explicit subscribers.
    pub synthetic: bool,
    pub sources: Vec<Source>,
    pub ssrc_groups: Vec<SsrcGroup>,
}

impl MediaSource {
    pub fn new(media_type: MediaType, id: impl Into<String>) -> Self {
        MediaSource {
            media_type,
            id: id.into(),
            synthetic: false,
            sources: Vec::new(),
            ssrc_groups: Vec::new(),
        }
    }
}

impl XmlElement for MediaSource {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "media-source";
        xml::expect(el, E, ns::COLIBRI2)?;
        Ok(MediaSource {
            media_type: rtp_media_type(el, E)?,
            id: non_empty(el, E, "id")?,
            synthetic: xml::flag(el, E, "synthetic")?,
            sources: xml::parse_children(el, "source", ns::JINGLE_SSMA)?,
            ssrc_groups: xml::parse_children(el, "ssrc-group", ns::JINGLE_SSMA)?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("media-source", ns::COLIBRI2)
            .attr("type", self.media_type)
            .attr("id", &self.id)
            .flag("synthetic", self.synthetic)
            .children(xml::elements(&self.sources))
            .children(xml::elements(&self.ssrc_groups))
            .build()
    }
}

/// `<force-mute audio video/>`: the bridge discards the endpoint's audio and/or video (AV moderation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ForceMute {
    pub audio: bool,
    pub video: bool,
}

impl XmlElement for ForceMute {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "force-mute";
        xml::expect(el, E, ns::COLIBRI2)?;
        Ok(ForceMute {
            audio: xml::flag(el, E, "audio")?,
            video: xml::flag(el, E, "video")?,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("force-mute", ns::COLIBRI2)
            .flag("audio", self.audio)
            .flag("video", self.video)
            .build()
    }
}

// ---------------------------------------------------------------------------------------------------------
// relay and connect (bridge cascading, media export)

/// `<relay id create expire mesh-id>`: a bridge-to-bridge link, with the remote bridge's endpoints and
/// their sources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Relay {
    /// The remote bridge's relay ID.
    pub id: String,
    pub create: bool,
    pub expire: bool,
    pub mesh_id: Option<String>,
    pub media: Vec<Media>,
    pub transport: Option<Transport>,
    pub sources: Option<Sources>,
    /// `<endpoints>`: endpoints that live on the remote bridge.
    pub endpoints: Option<Vec<Endpoint>>,
}

impl XmlElement for Relay {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "relay";
        xml::expect(el, E, ns::COLIBRI2)?;
        let endpoints = match el.get_child("endpoints", ns::COLIBRI2) {
            Some(eps) => Some(xml::parse_children(eps, "endpoint", ns::COLIBRI2)?),
            None => None,
        };
        Ok(Relay {
            id: non_empty(el, E, "id")?,
            create: xml::flag(el, E, "create")?,
            expire: xml::flag(el, E, "expire")?,
            mesh_id: xml::opt_string(el, "mesh-id"),
            media: xml::parse_children(el, "media", ns::COLIBRI2)?,
            transport: xml::parse_child(el, "transport", ns::COLIBRI2)?,
            sources: xml::parse_child(el, "sources", ns::COLIBRI2)?,
            endpoints,
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("relay", ns::COLIBRI2)
            .attr("id", &self.id)
            .flag("create", self.create)
            .flag("expire", self.expire)
            .opt_attr("mesh-id", self.mesh_id.as_ref())
            .children(xml::elements(&self.media))
            .opt_child(self.transport.as_ref().map(XmlElement::to_element))
            .opt_child(self.sources.as_ref().map(XmlElement::to_element))
            .opt_child(self.endpoints.as_ref().map(|eps| {
                Builder::new("endpoints", ns::COLIBRI2)
                    .children(xml::elements(eps))
                    .build()
            }))
            .build()
    }
}

/// `<connect url protocol type audio video>`: export the conference's media over a WebSocket (to a
/// recorder, transcriber or translator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Only `mediajson` is defined.
    pub protocol: String,
    pub connect_type: ConnectType,
    pub audio: bool,
    pub video: bool,
    /// `<http-header name value/>` to send when connecting.
    pub http_headers: Vec<(String, String)>,
    /// `<ping interval timeout/>`, in the units the exporter defines.
    pub ping: Option<(u32, u32)>,
    /// `<exports><export name/></exports>`.
    pub exports: Vec<String>,
    /// `<requests><request name/></requests>`.
    pub requests: Vec<String>,
}

fn names_in(
    el: &Element,
    container: &'static str,
    item: &'static str,
) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    if let Some(c) = el.get_child(container, ns::COLIBRI2) {
        for i in xml::children(c, item, ns::COLIBRI2) {
            out.push(xml::attr(i, item, "name")?.to_owned());
            check_count(item, out.len())?;
        }
    }
    Ok(out)
}

impl XmlElement for Connect {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "connect";
        xml::expect(el, E, ns::COLIBRI2)?;
        let url = xml::attr(el, E, "url")?;
        if !(url.starts_with("ws://") || url.starts_with("wss://")) {
            return Err(ParseError::BadAttribute {
                element: E,
                attribute: "url",
                value: url.chars().take(64).collect(),
                reason: "only ws:// and wss:// URLs are allowed".into(),
            });
        }
        let protocol = xml::attr(el, E, "protocol")?;
        if !protocol.eq_ignore_ascii_case("mediajson") {
            return Err(ParseError::BadAttribute {
                element: E,
                attribute: "protocol",
                value: protocol.chars().take(64).collect(),
                reason: "expected mediajson".into(),
            });
        }
        let mut http_headers = Vec::new();
        for h in xml::children(el, "http-header", ns::COLIBRI2) {
            let name = xml::attr(h, "http-header", "name")?;
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err(ParseError::BadAttribute {
                    element: "http-header",
                    attribute: "name",
                    value: name.chars().take(64).collect(),
                    reason: "header names are letters, digits and '-'".into(),
                });
            }
            // Header injection guard: a value never spans lines.
            let value: String = xml::attr(h, "http-header", "value")?
                .chars()
                .filter(|c| *c != '\r' && *c != '\n')
                .collect();
            http_headers.push((name.to_owned(), value));
            check_count("http-header", http_headers.len())?;
        }
        let ping = match el.get_child("ping", ns::COLIBRI2) {
            Some(p) => Some((
                xml::num(p, "ping", "interval")?,
                xml::num(p, "ping", "timeout")?,
            )),
            None => None,
        };
        Ok(Connect {
            url: url.to_owned(),
            protocol: protocol.to_ascii_lowercase(),
            connect_type: xml::num(el, E, "type")?,
            audio: xml::flag(el, E, "audio")?,
            video: xml::flag(el, E, "video")?,
            http_headers,
            ping,
            exports: names_in(el, "exports", "export")?,
            requests: names_in(el, "requests", "request")?,
        })
    }

    fn to_element(&self) -> Element {
        fn names(container: &str, item: &str, names: &[String]) -> Option<Element> {
            (!names.is_empty()).then(|| {
                Builder::new(container, ns::COLIBRI2)
                    .children(
                        names
                            .iter()
                            .map(|n| Builder::new(item, ns::COLIBRI2).attr("name", n).build()),
                    )
                    .build()
            })
        }
        Builder::new("connect", ns::COLIBRI2)
            .attr("url", &self.url)
            .attr("protocol", &self.protocol)
            .attr("type", self.connect_type)
            .flag("audio", self.audio)
            .flag("video", self.video)
            .children(self.http_headers.iter().map(|(n, v)| {
                Builder::new("http-header", ns::COLIBRI2)
                    .attr("name", n)
                    .attr("value", v)
                    .build()
            }))
            .opt_child(self.ping.map(|(interval, timeout)| {
                Builder::new("ping", ns::COLIBRI2)
                    .attr("interval", interval)
                    .attr("timeout", timeout)
                    .build()
            }))
            .opt_child(names("exports", "export", &self.exports))
            .opt_child(names("requests", "request", &self.requests))
            .build()
    }
}

// ---------------------------------------------------------------------------------------------------------
// errors

/// `<error xmlns='jitsi:colibri2' reason=…/>`, placed inside the stanza `<error>` next to the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Colibri2Error {
    pub reason: Reason,
}

impl XmlElement for Colibri2Error {
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "error";
        xml::expect(el, E, ns::COLIBRI2)?;
        Ok(Colibri2Error {
            // The reference reads a missing reason as `unspecified`.
            reason: xml::opt_num(el, E, "reason")?.unwrap_or(Reason::Unspecified),
        })
    }

    fn to_element(&self) -> Element {
        Builder::new("error", ns::COLIBRI2)
            .attr("reason", self.reason)
            .build()
    }
}

string_enum!(
    /// Stanza error `type` (RFC 6120 §8.3.2).
    ErrorType { Auth => "auth", Cancel => "cancel", Continue => "continue", Modify => "modify", Wait => "wait" }
);

/// Stanza error conditions (RFC 6120 §8.3.3) that COLIBRI2 peers use; anything else is kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    NotAcceptable,
    NotAuthorized,
    RemoteServerTimeout,
    ServiceUnavailable,
    UnexpectedRequest,
    Other(String),
}

impl Condition {
    fn name(&self) -> &str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAuthorized => "not-authorized",
            Condition::RemoteServerTimeout => "remote-server-timeout",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::UnexpectedRequest => "unexpected-request",
            Condition::Other(name) => name,
        }
    }

    fn from_name(name: &str) -> Condition {
        match name {
            "bad-request" => Condition::BadRequest,
            "conflict" => Condition::Conflict,
            "feature-not-implemented" => Condition::FeatureNotImplemented,
            "forbidden" => Condition::Forbidden,
            "internal-server-error" => Condition::InternalServerError,
            "item-not-found" => Condition::ItemNotFound,
            "not-acceptable" => Condition::NotAcceptable,
            "not-authorized" => Condition::NotAuthorized,
            "remote-server-timeout" => Condition::RemoteServerTimeout,
            "service-unavailable" => Condition::ServiceUnavailable,
            "unexpected-request" => Condition::UnexpectedRequest,
            other => Condition::Other(other.to_owned()),
        }
    }

    /// The error type RFC 6120 recommends for the condition (what Smack-based peers send).
    pub fn default_type(&self) -> ErrorType {
        match self {
            Condition::BadRequest | Condition::NotAcceptable | Condition::UnexpectedRequest => {
                ErrorType::Modify
            }
            Condition::Forbidden | Condition::NotAuthorized => ErrorType::Auth,
            Condition::RemoteServerTimeout => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The stanza `<error type=…>` of a COLIBRI2 IQ error: condition, optional text, the colibri2 reason and
/// (for `unknown_endpoint`) the endpoint ID, as
/// `<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text …>…</text>
/// <error xmlns='jitsi:colibri2' reason='unknown_endpoint'/><endpoint xmlns='jitsi:colibri2' id='…'/></error>`.
///
/// The bridge writes it; the focus reads it to decide between re-inviting one participant, moving the
/// conference, or marking the bridge broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Colibri2ErrorResponse {
    pub error_type: ErrorType,
    pub condition: Condition,
    pub text: Option<String>,
    /// `None` when the error did not come from a bridge (e.g. the XMPP server answered).
    pub reason: Option<Reason>,
    pub endpoint_id: Option<String>,
}

impl Colibri2ErrorResponse {
    pub fn new(condition: Condition, reason: Option<Reason>, text: Option<String>) -> Self {
        Colibri2ErrorResponse {
            error_type: condition.default_type(),
            condition,
            text,
            reason,
            endpoint_id: None,
        }
    }

    /// Update for a meeting ID the bridge does not know.
    pub fn conference_not_found(meeting_id: &str) -> Self {
        Self::new(
            Condition::ItemNotFound,
            Some(Reason::ConferenceNotFound),
            Some(format!("Conference not found for ID: {meeting_id}")),
        )
    }

    /// Create for a meeting ID the bridge already has.
    pub fn conference_already_exists(meeting_id: &str) -> Self {
        Self::new(
            Condition::Conflict,
            Some(Reason::ConferenceAlreadyExists),
            Some(format!("Conference already exists for ID: {meeting_id}")),
        )
    }

    /// Create refused because the bridge is shutting down gracefully.
    pub fn graceful_shutdown() -> Self {
        Self::new(
            Condition::ServiceUnavailable,
            Some(Reason::GracefulShutdown),
            Some("In graceful shutdown".into()),
        )
    }

    /// Update for an endpoint the bridge does not know (expired on its own, or never created).
    pub fn unknown_endpoint(endpoint_id: &str) -> Self {
        Colibri2ErrorResponse {
            endpoint_id: Some(endpoint_id.to_owned()),
            ..Self::new(
                Condition::ItemNotFound,
                Some(Reason::UnknownEndpoint),
                Some(format!("Endpoint not found for ID: {endpoint_id}")),
            )
        }
    }

    /// A request combination the bridge does not support.
    pub fn feature_not_implemented(message: &str) -> Self {
        Self::new(
            Condition::FeatureNotImplemented,
            Some(Reason::FeatureNotImplemented),
            Some(message.to_owned()),
        )
    }

    /// A request that violates the protocol (no colibri2 reason, the focus does not retry).
    pub fn bad_request(message: &str) -> Self {
        Self::new(Condition::BadRequest, None, Some(message.to_owned()))
    }

    /// Reads the stanza error from an `<iq type='error'>` (any stanza namespace).
    pub fn from_iq(iq: &Element) -> Result<Self, ParseError> {
        if iq.name() != "iq" || iq.attr("type") != Some("error") {
            return Err(ParseError::invalid("iq", "not an IQ of type error"));
        }
        let error = iq
            .children()
            .find(|c| c.name() == "error" && c.ns() != ns::COLIBRI2)
            .ok_or(ParseError::MissingChild {
                element: "iq",
                child: "error",
            })?;
        Self::from_element(error)
    }
}

impl XmlElement for Colibri2ErrorResponse {
    /// Accepts the stanza `<error>` in any namespace (`jabber:client`, `jabber:component:accept` …).
    fn from_element(el: &Element) -> Result<Self, ParseError> {
        const E: &str = "error";
        if el.name() != E || el.ns() == ns::COLIBRI2 || el.ns() == ns::STANZAS {
            return Err(ParseError::WrongElement {
                expected: E,
                expected_ns: ns::JABBER_CLIENT,
                found: el.name().to_owned(),
                found_ns: el.ns(),
            });
        }
        let condition = el
            .children()
            .find(|c| c.ns() == ns::STANZAS && c.name() != "text")
            .map(|c| Condition::from_name(c.name()))
            .ok_or(ParseError::MissingChild {
                element: E,
                child: "condition",
            })?;
        let endpoint_id = match el.get_child("endpoint", ns::COLIBRI2) {
            Some(ep) => Some(xml::attr(ep, "endpoint", "id")?.to_owned()),
            None => None,
        };
        Ok(Colibri2ErrorResponse {
            error_type: xml::num(el, E, "type")?,
            condition,
            text: el.get_child("text", ns::STANZAS).map(|t| t.text()),
            reason: xml::parse_child::<Colibri2Error>(el, "error", ns::COLIBRI2)?.map(|e| e.reason),
            endpoint_id,
        })
    }

    /// Written in `jabber:client`; use [`Colibri2ErrorResponse::to_element_in`] on a component stream.
    fn to_element(&self) -> Element {
        self.to_element_in(ns::JABBER_CLIENT)
    }
}

impl Colibri2ErrorResponse {
    /// The stanza `<error>` in the stream's stanza namespace (`jabber:client` or
    /// `jabber:component:accept`), so that it serialises without a stray `xmlns` inside the IQ.
    pub fn to_element_in(&self, stanza_ns: &str) -> Element {
        Builder::new("error", stanza_ns)
            .attr("type", self.error_type)
            .child(Element::bare(self.condition.name(), ns::STANZAS))
            .opt_child(
                self.text
                    .as_ref()
                    .map(|t| Builder::new("text", ns::STANZAS).text(t.as_str()).build()),
            )
            .opt_child(
                self.reason
                    .map(|reason| Colibri2Error { reason }.to_element()),
            )
            .opt_child(self.endpoint_id.as_ref().map(|id| {
                Builder::new("endpoint", ns::COLIBRI2)
                    .attr("id", id)
                    .build()
            }))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_parse_case_insensitively_and_write_lower_case() {
        assert_eq!("VISITOR".parse::<MucRole>(), Ok(MucRole::Visitor));
        assert_eq!(MucRole::Visitor.to_string(), "visitor");
        assert_eq!(
            "GRACEFUL_SHUTDOWN".parse::<Reason>(),
            Ok(Reason::GracefulShutdown)
        );
        assert_eq!("VIDEO".parse::<MediaType>(), Ok(MediaType::Video));
    }

    #[test]
    fn condition_names_roundtrip() {
        for c in [
            Condition::BadRequest,
            Condition::Conflict,
            Condition::FeatureNotImplemented,
            Condition::ItemNotFound,
            Condition::ServiceUnavailable,
            Condition::Other("gone".into()),
        ] {
            assert_eq!(Condition::from_name(c.name()), c);
        }
        assert_eq!(Condition::BadRequest.default_type(), ErrorType::Modify);
        assert_eq!(Condition::ItemNotFound.default_type(), ErrorType::Cancel);
    }
}
