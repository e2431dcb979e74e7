//! The COLIBRI2 requests the focus sends a bridge (`conference-modify`) and what it reads from the answers
//! (`conference-modified`): endpoint allocation with media, ICE-controlling transport with SCTP and the
//! `source-names` capability; updates with the client's transport and complete source set; expiry.

use minidom::Element;
use signaling::ParseError;
use signaling::media::{MediaType, RtpParameters};
use signaling::ns;
use signaling::source_map::{ConferenceSourceMap, EndpointSources, JVB_OWNER};
use signaling::sources::{Source, SsrcGroup};
use signaling::transport::IceUdpTransport;
use signaling::xml::{self, Builder, XmlElement};

/// What to allocate for one participant.
#[derive(Debug, Clone)]
pub struct EndpointSpec<'a> {
    pub id: &'a str,
    pub stats_id: Option<&'a str>,
    pub audio: Option<&'a RtpParameters>,
    pub video: Option<&'a RtpParameters>,
    pub sctp: bool,
    pub ssrc_rewriting: bool,
    pub sources: Option<&'a EndpointSources>,
}

fn conference_modify(meeting_id: &str) -> Builder {
    Builder::new("conference-modify", ns::COLIBRI2).attr("meeting-id", meeting_id.to_owned())
}

fn media(kind: &str, rtp: &RtpParameters) -> Element {
    Builder::new("media", ns::COLIBRI2)
        .attr("type", kind.to_owned())
        .children(rtp.to_elements())
        .build()
}

/// `<sources>` of one endpoint: a `media-source` per source name (`<ep>-a0` when the client gave none),
/// with each group under the media-source of its first SSRC.
pub fn sources_element(endpoint_id: &str, sources: &EndpointSources) -> Element {
    let mut media_sources: Vec<(MediaType, String, Vec<Source>, Vec<SsrcGroup>)> = Vec::new();
    let default_name = |m: MediaType| {
        format!(
            "{endpoint_id}-{}0",
            if m == MediaType::Audio { "a" } else { "v" }
        )
    };
    for (m, s) in sources.sources() {
        let name = s.name.clone().unwrap_or_else(|| default_name(m));
        let mut plain = s.clone();
        plain.owner = None;
        // COLIBRI2 carries no msid.
        plain.set_msid(None);
        match media_sources
            .iter_mut()
            .find(|(mm, n, _, _)| *mm == m && *n == name)
        {
            Some(entry) => entry.2.push(plain),
            None => media_sources.push((m, name, vec![plain], Vec::new())),
        }
    }
    for (m, g) in sources.groups() {
        let owner_name = g
            .ssrcs
            .first()
            .and_then(|first| sources.find_source(*first))
            .and_then(|(_, s)| s.name.clone())
            .unwrap_or_else(|| default_name(m));
        match media_sources
            .iter_mut()
            .find(|(mm, n, _, _)| *mm == m && *n == owner_name)
        {
            Some(entry) => entry.3.push(g.clone()),
            None => media_sources.push((m, owner_name, Vec::new(), vec![g.clone()])),
        }
    }
    Builder::new("sources", ns::COLIBRI2)
        .children(media_sources.into_iter().map(|(m, name, srcs, groups)| {
            Builder::new("media-source", ns::COLIBRI2)
                .attr("type", m)
                .attr("id", name)
                .children(xml::elements(&srcs))
                .children(xml::elements(&groups))
                .build()
        }))
        .build()
}

/// Allocates an endpoint; `create_conference` = `Some(room)` for the first allocation on this bridge.
pub fn allocate(
    meeting_id: &str,
    create_conference: Option<&str>,
    ep: &EndpointSpec<'_>,
) -> Element {
    let mut transport = Builder::new("transport", ns::COLIBRI2).attr("ice-controlling", "true");
    if ep.sctp {
        transport = transport.child(Element::bare("sctp", ns::COLIBRI2));
    }
    let mut endpoint = Builder::new("endpoint", ns::COLIBRI2)
        .attr("id", ep.id.to_owned())
        .attr("create", "true")
        .opt_attr("stats-id", ep.stats_id.map(str::to_owned));
    if let Some(a) = ep.audio {
        endpoint = endpoint.child(media("audio", a));
    }
    if let Some(v) = ep.video {
        endpoint = endpoint.child(media("video", v));
    }
    endpoint = endpoint.child(transport.build());
    if let Some(s) = ep.sources {
        endpoint = endpoint.child(sources_element(ep.id, s));
    }
    endpoint = endpoint.child(capability("source-names"));
    if ep.ssrc_rewriting {
        endpoint = endpoint.child(capability("ssrc-rewriting"));
    }
    let mut req = conference_modify(meeting_id);
    if let Some(room) = create_conference {
        req = req.attr("name", room.to_owned()).attr("create", "true");
    }
    req.child(endpoint.build()).build()
}

fn capability(name: &str) -> Element {
    Builder::new("capability", ns::COLIBRI2)
        .attr("name", name.to_owned())
        .build()
}

/// Updates an endpoint with the client's transport and/or its complete source set.
pub fn update(
    meeting_id: &str,
    endpoint_id: &str,
    stats_id: Option<&str>,
    transport: Option<&IceUdpTransport>,
    sources: Option<&EndpointSources>,
    initial_last_n: Option<u32>,
) -> Element {
    let mut endpoint = Builder::new("endpoint", ns::COLIBRI2)
        .attr("id", endpoint_id.to_owned())
        .opt_attr("stats-id", stats_id.map(str::to_owned));
    if let Some(t) = transport {
        endpoint = endpoint.child(
            Builder::new("transport", ns::COLIBRI2)
                .child(t.to_element())
                .build(),
        );
    }
    if let Some(s) = sources {
        endpoint = endpoint.child(sources_element(endpoint_id, s));
    }
    if let Some(n) = initial_last_n {
        endpoint = endpoint.child(
            Builder::new("initial-last-n", ns::COLIBRI2)
                .attr("value", n)
                .build(),
        );
    }
    conference_modify(meeting_id)
        .child(endpoint.build())
        .build()
}

/// Expires endpoints.
pub fn expire_endpoints<'a>(meeting_id: &str, ids: impl IntoIterator<Item = &'a str>) -> Element {
    conference_modify(meeting_id)
        .children(ids.into_iter().map(|id| {
            Builder::new("endpoint", ns::COLIBRI2)
                .attr("id", id.to_owned())
                .attr("expire", "true")
                .build()
        }))
        .build()
}

/// Expires the whole conference on the bridge.
pub fn expire_conference(meeting_id: &str) -> Element {
    conference_modify(meeting_id).attr("expire", "true").build()
}

/// What an allocation answer gives the focus.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// The bridge's ICE-UDP transport (ufrag, pwd, fingerprint, candidates, maybe web-socket URLs).
    pub transport: IceUdpTransport,
    /// The SCTP port, when SCTP was requested.
    pub sctp_port: Option<u16>,
    /// The bridge's feedback sources (owner `jvb`), present when the request created something.
    pub feedback_sources: ConferenceSourceMap,
}

/// Reads a `conference-modified` answering an allocation for `endpoint_id`.
pub fn parse_allocation(el: &Element, endpoint_id: &str) -> Result<Allocation, ParseError> {
    xml::expect(el, "conference-modified", ns::COLIBRI2)?;
    let endpoint = xml::children(el, "endpoint", ns::COLIBRI2)
        .find(|e| e.attr("id") == Some(endpoint_id))
        .ok_or(ParseError::MissingChild {
            element: "conference-modified",
            child: "endpoint",
        })?;
    let transport =
        endpoint
            .get_child("transport", ns::COLIBRI2)
            .ok_or(ParseError::MissingChild {
                element: "endpoint",
                child: "transport",
            })?;
    let ice =
        transport
            .get_child("transport", ns::JINGLE_ICE_UDP)
            .ok_or(ParseError::MissingChild {
                element: "transport",
                child: "transport",
            })?;
    let transport_parsed = IceUdpTransport::from_element(ice)?;
    if transport_parsed.ufrag.is_none()
        || transport_parsed.pwd.is_none()
        || transport_parsed.fingerprints.is_empty()
    {
        return Err(ParseError::invalid(
            "transport",
            "the bridge transport needs ufrag, pwd and a fingerprint",
        ));
    }
    let sctp_port = match transport.get_child("sctp", ns::COLIBRI2) {
        Some(s) => Some(xml::opt_num(s, "sctp", "port")?.unwrap_or(5000)),
        None => None,
    };
    Ok(Allocation {
        transport: transport_parsed,
        sctp_port,
        feedback_sources: parse_feedback_sources(el)?,
    })
}

/// The conference-level `<sources>` of a `conference-modified`: the bridge's own SSRCs, owner `jvb`, with
/// the msid lib-jitsi-meet recognises as not-a-user stream.
pub fn parse_feedback_sources(el: &Element) -> Result<ConferenceSourceMap, ParseError> {
    let mut out = EndpointSources::default();
    if let Some(sources) = el.get_child("sources", ns::COLIBRI2) {
        for ms in xml::children(sources, "media-source", ns::COLIBRI2) {
            let media: MediaType = xml::num(ms, "media-source", "type")?;
            for s in xml::children(ms, "source", ns::JINGLE_SSMA) {
                let mut src = Source::from_element(s)?;
                src.set_msid(Some(&format!("mixedmslabel mixedlabel{media}0")));
                out.add_source(media, &src);
            }
            for g in xml::children(ms, "ssrc-group", ns::JINGLE_SSMA) {
                out.add_group(media, SsrcGroup::from_element(g)?);
            }
        }
    }
    Ok(ConferenceSourceMap::single(JVB_OWNER, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::sources::Semantics;

    fn client_sources() -> EndpointSources {
        let mut s = EndpointSources::default();
        let mut a = Source::named(11, "ab12cd34-a0");
        a.set_msid(Some("stream track-a"));
        s.add_source(MediaType::Audio, &a);
        for ssrc in [21, 22] {
            let mut v = Source::named(ssrc, "ab12cd34-v0");
            v.set_msid(Some("stream track-v"));
            s.add_source(MediaType::Video, &v);
        }
        s.add_group(
            MediaType::Video,
            SsrcGroup::new(Semantics::Fid, vec![21, 22]),
        );
        s
    }

    #[test]
    fn allocation_request_has_what_jvb_requires() {
        let rtp = RtpParameters::default();
        let el = allocate(
            "m-1",
            Some("room@conference.example"),
            &EndpointSpec {
                id: "ab12cd34",
                stats_id: Some("Bob-1"),
                audio: Some(&rtp),
                video: Some(&rtp),
                sctp: true,
                ssrc_rewriting: false,
                sources: None,
            },
        );
        assert_eq!(el.attr("create"), Some("true"));
        assert_eq!(el.attr("name"), Some("room@conference.example"));
        let ep = el.get_child("endpoint", ns::COLIBRI2).unwrap();
        assert_eq!(ep.attr("create"), Some("true"));
        assert_eq!(ep.attr("stats-id"), Some("Bob-1"));
        let t = ep.get_child("transport", ns::COLIBRI2).unwrap();
        assert_eq!(t.attr("ice-controlling"), Some("true"));
        assert!(t.has_child("sctp", ns::COLIBRI2));
        assert!(
            ep.children()
                .any(|c| c.is("capability", ns::COLIBRI2) && c.attr("name") == Some("source-names"))
        );
        assert_eq!(
            ep.children()
                .filter(|c| c.is("media", ns::COLIBRI2))
                .count(),
            2
        );
    }

    #[test]
    fn sources_are_grouped_by_source_name_without_msid() {
        let el = sources_element("ab12cd34", &client_sources());
        let ms: Vec<_> = el.children().collect();
        assert_eq!(ms.len(), 2);
        assert_eq!(ms[0].attr("id"), Some("ab12cd34-a0"));
        assert_eq!(ms[1].attr("id"), Some("ab12cd34-v0"));
        assert_eq!(ms[1].children().filter(|c| c.name() == "source").count(), 2);
        assert_eq!(
            ms[1]
                .children()
                .filter(|c| c.name() == "ssrc-group")
                .count(),
            1
        );
        assert!(!String::from(&el).contains("msid"));
    }

    #[test]
    fn allocation_answer_is_read() {
        let el: Element = r#"<conference-modified xmlns="jitsi:colibri2">
          <endpoint id="ab12cd34"><transport>
            <transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="u1" pwd="p1"><rtcp-mux/>
              <fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="actpass">AB:CD</fingerprint>
              <candidate component="1" foundation="1" generation="0" id="c1" ip="127.0.0.1" network="0" port="10000" priority="2130706431" protocol="udp" type="host"/>
            </transport><sctp port="5000" role="server"/></transport></endpoint>
          <sources><media-source type="audio" id="jvb-a0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="22" name="jvb-a0"/></media-source>
            <media-source type="video" id="jvb-v0"><source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="33" name="jvb-v0"/></media-source></sources>
        </conference-modified>"#
            .parse()
            .unwrap();
        let a = parse_allocation(&el, "ab12cd34").unwrap();
        assert_eq!(a.transport.ufrag.as_deref(), Some("u1"));
        assert_eq!(a.sctp_port, Some(5000));
        let jvb = a.feedback_sources.get(JVB_OWNER).unwrap();
        assert_eq!(
            jvb.audio.sources[0].msid(),
            Some("mixedmslabel mixedlabelaudio0")
        );
        assert_eq!(jvb.video.sources[0].ssrc, 33);
        assert!(parse_allocation(&el, "other").is_err());
    }
}
