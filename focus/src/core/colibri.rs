//! The COLIBRI2 requests the focus sends a bridge (`conference-modify`) and what it reads from the answers
//! (`conference-modified`): endpoint allocation with media, ICE-controlling transport with SCTP and the
//! `source-names` capability (plus `ssrc-rewriting` / `rtp-mid-demux` when the participant uses them);
//! updates with the client's transport, complete source set and `initial-last-n`; in-place ICE
//! restarts; expiry.

use minidom::Element;
use signaling::ParseError;
use signaling::colibri2::{
    ConferenceModified, ConferenceModify, Endpoint, ForceMute, Media, MediaSource, Sctp, Sources,
    Transport, capability,
};
use signaling::ice_udp::IceUdpTransport;
use signaling::rtp_description::{MediaType, RtpParameters};
use signaling::source_map::{ConferenceSourceMap, EndpointSources, JVB_OWNER};
use signaling::xml::XmlElement;

/// What to allocate for one participant.
#[derive(Debug, Clone)]
pub struct EndpointSpec<'a> {
    pub id: &'a str,
    pub stats_id: Option<&'a str>,
    pub audio: Option<&'a RtpParameters>,
    pub video: Option<&'a RtpParameters>,
    pub sctp: bool,
    pub ssrc_rewriting: bool,
    /// With `ssrc_rewriting`: the bridge stamps sdes:mid on what it forwards and puts a `mid` in its
    /// source maps (Jicofo `Participant.useRtpMidDemux`).
    pub rtp_mid_demux: bool,
    pub sources: Option<&'a EndpointSources>,
    /// Media the bridge must drop from the start (a participant muted by a moderator, re-invited).
    pub force_mute: ForceMute,
}

/// The `<sources>` of one endpoint: a `media-source` per source name (`<ep>-a0`/`<ep>-v0` when the
/// client named none, as Jicofo does), each group under the media-source of its first SSRC, no msid.
pub fn endpoint_sources(endpoint_id: &str, sources: &EndpointSources) -> Sources {
    let default_name = |m: MediaType| {
        format!(
            "{endpoint_id}-{}0",
            if m == MediaType::Audio { "a" } else { "v" }
        )
    };
    let mut out: Vec<MediaSource> = Vec::new();
    let entry = |out: &mut Vec<MediaSource>, m: MediaType, name: String| -> usize {
        match out
            .iter()
            .position(|ms| ms.media_type == m && ms.id == name)
        {
            Some(i) => i,
            None => {
                out.push(MediaSource::new(m, name));
                out.len() - 1
            }
        }
    };
    for (m, s) in sources.sources() {
        let name = s.name.clone().unwrap_or_else(|| default_name(m));
        let mut plain = s.clone();
        plain.owner = None;
        plain.set_msid(None);
        let i = entry(&mut out, m, name);
        if let Some(ms) = out.get_mut(i) {
            ms.sources.push(plain);
        }
    }
    for (m, g) in sources.groups() {
        let name = g
            .ssrcs
            .first()
            .and_then(|first| sources.find_source(*first))
            .and_then(|(_, s)| s.name.clone())
            .unwrap_or_else(|| default_name(m));
        let i = entry(&mut out, m, name);
        if let Some(ms) = out.get_mut(i) {
            ms.ssrc_groups.push(g.clone());
        }
    }
    Sources { media_sources: out }
}

/// Allocates an endpoint; `create_conference` = `Some(room)` for the first allocation on this bridge.
pub fn allocate(
    meeting_id: &str,
    create_conference: Option<&str>,
    ep: &EndpointSpec<'_>,
) -> Element {
    let mut endpoint = Endpoint::new(ep.id);
    endpoint.create = true;
    endpoint.stats_id = ep.stats_id.map(str::to_owned);
    for (media_type, rtp) in [(MediaType::Audio, ep.audio), (MediaType::Video, ep.video)] {
        if let Some(rtp) = rtp {
            endpoint.media.push(Media {
                media_type,
                rtp: rtp.clone(),
            });
        }
    }
    endpoint.transport = Some(Transport {
        // The bridge is the ICE controlling agent, as Jicofo always asks.
        ice_controlling: true,
        sctp: ep.sctp.then(Sctp::default),
        ..Transport::default()
    });
    endpoint.sources = ep.sources.map(|s| endpoint_sources(ep.id, s));
    endpoint.force_mute = (ep.force_mute != ForceMute::default()).then_some(ep.force_mute);
    endpoint
        .capabilities
        .push(capability::SOURCE_NAMES.to_owned());
    if ep.ssrc_rewriting {
        endpoint
            .capabilities
            .push(capability::SSRC_REWRITING.to_owned());
        if ep.rtp_mid_demux {
            endpoint
                .capabilities
                .push(capability::RTP_MID_DEMUX.to_owned());
        }
    }
    let mut req = ConferenceModify::new(meeting_id);
    if let Some(room) = create_conference {
        req.create = true;
        req.name = Some(room.to_owned());
    }
    req.endpoints.push(endpoint);
    req.to_element()
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
    let mut endpoint = Endpoint::new(endpoint_id);
    endpoint.stats_id = stats_id.map(str::to_owned);
    endpoint.transport = transport.map(|t| Transport {
        ice_udp: Some(t.clone()),
        ..Transport::default()
    });
    endpoint.sources = sources.map(|s| endpoint_sources(endpoint_id, s));
    endpoint.initial_last_n = initial_last_n.and_then(|n| i32::try_from(n).ok());
    let mut req = ConferenceModify::new(meeting_id);
    req.endpoints.push(endpoint);
    req.to_element()
}

/// Asks for an in-place ICE restart of an endpoint: `<endpoint id stats-id><transport
/// ice-restart="true"/></endpoint>` (Jicofo `Colibri2Session.restartIce`).
pub fn ice_restart(meeting_id: &str, endpoint_id: &str, stats_id: Option<&str>) -> Element {
    let mut endpoint = Endpoint::new(endpoint_id);
    endpoint.stats_id = stats_id.map(str::to_owned);
    endpoint.transport = Some(Transport {
        ice_restart: true,
        ..Transport::default()
    });
    let mut req = ConferenceModify::new(meeting_id);
    req.endpoints.push(endpoint);
    req.to_element()
}

/// What a bridge answered to an in-place ICE restart.
#[derive(Debug, Clone, PartialEq)]
pub enum IceRestartAnswer {
    /// No transport for the endpoint: the bridge cannot restart (not supported, disabled, or the
    /// endpoint is going away). The participant is re-invited instead.
    Declined,
    /// Its transport without `ice-generation`: ICE had not connected yet, nothing was restarted and
    /// there is nothing to relay.
    NotNeeded,
    /// The new agent's transport, tagged with its `ice-generation` (≥ 1, increasing per endpoint).
    Restarted(IceUdpTransport),
}

/// Reads the `conference-modified` answering [`ice_restart`] for `endpoint_id`.
pub fn parse_ice_restart(el: &Element, endpoint_id: &str) -> Result<IceRestartAnswer, ParseError> {
    let answer = ConferenceModified::from_element(el)?;
    let transport = answer
        .endpoint(endpoint_id)
        .and_then(|e| e.transport.as_ref())
        .and_then(|t| t.ice_udp.as_ref());
    let Some(t) = transport else {
        return Ok(IceRestartAnswer::Declined);
    };
    if t.ice_generation.is_none() {
        return Ok(IceRestartAnswer::NotNeeded);
    }
    if t.ufrag.is_none() || t.pwd.is_none() {
        return Err(ParseError::invalid(
            "transport",
            "a restarted transport needs ufrag and pwd",
        ));
    }
    Ok(IceRestartAnswer::Restarted(t.clone()))
}

/// Sets what the bridge drops of an endpoint's media (both kinds each time, as Jicofo's
/// `Colibri2Session.updateForceMute` does).
pub fn force_mute(meeting_id: &str, endpoint_id: &str, mute: ForceMute) -> Element {
    let mut endpoint = Endpoint::new(endpoint_id);
    endpoint.force_mute = Some(mute);
    let mut req = ConferenceModify::new(meeting_id);
    req.endpoints.push(endpoint);
    req.to_element()
}

/// Expires endpoints.
pub fn expire_endpoints<'a>(meeting_id: &str, ids: impl IntoIterator<Item = &'a str>) -> Element {
    let mut req = ConferenceModify::new(meeting_id);
    req.endpoints = ids.into_iter().map(Endpoint::expired).collect();
    req.to_element()
}

/// Expires the whole conference on the bridge.
pub fn expire_conference(meeting_id: &str) -> Element {
    let mut req = ConferenceModify::new(meeting_id);
    req.expire = true;
    req.to_element()
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
    let answer = ConferenceModified::from_element(el)?;
    let endpoint = answer
        .endpoint(endpoint_id)
        .ok_or(ParseError::MissingChild {
            element: "conference-modified",
            child: "endpoint",
        })?;
    let transport = endpoint
        .transport
        .as_ref()
        .ok_or(ParseError::MissingChild {
            element: "endpoint",
            child: "transport",
        })?;
    let ice = transport.ice_udp.clone().ok_or(ParseError::MissingChild {
        element: "transport",
        child: "transport",
    })?;
    if ice.ufrag.is_none() || ice.pwd.is_none() || ice.fingerprints.is_empty() {
        return Err(ParseError::invalid(
            "transport",
            "the bridge transport needs ufrag, pwd and a fingerprint",
        ));
    }
    Ok(Allocation {
        transport: ice,
        sctp_port: transport.sctp.map(|s| s.port.unwrap_or(5000)),
        feedback_sources: feedback_sources(answer.sources.as_ref()),
    })
}

/// The conference-level `<sources>` of a `conference-modified`: the bridge's own SSRCs, owner `jvb`, with
/// the msid lib-jitsi-meet recognises as not-a-user stream.
pub fn feedback_sources(sources: Option<&Sources>) -> ConferenceSourceMap {
    let mut out = EndpointSources::default();
    for ms in sources.iter().flat_map(|s| s.media_sources.iter()) {
        let media = ms.media_type;
        for s in &ms.sources {
            let mut src = s.clone();
            src.set_msid(Some(&format!("mixedmslabel mixedlabel{media}0")));
            out.add_source(media, &src);
        }
        for g in &ms.ssrc_groups {
            out.add_group(media, g.clone());
        }
    }
    ConferenceSourceMap::single(JVB_OWNER, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::ns;
    use signaling::sources::{Semantics, Source, SsrcGroup};

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
                rtp_mid_demux: false,
                sources: None,
                force_mute: ForceMute::default(),
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
    fn force_mute_is_sent_alone_and_with_an_allocation() {
        let el = force_mute(
            "m-1",
            "ab12cd34",
            ForceMute {
                audio: true,
                video: false,
            },
        );
        let ep = el.get_child("endpoint", ns::COLIBRI2).unwrap();
        assert_eq!(ep.attr("id"), Some("ab12cd34"));
        let fm = ep.get_child("force-mute", ns::COLIBRI2).unwrap();
        assert_eq!(fm.attr("audio"), Some("true"));
        assert!(ep.get_child("transport", ns::COLIBRI2).is_none());
        let rtp = RtpParameters::default();
        let spec = |force_mute| EndpointSpec {
            id: "ab12cd34",
            stats_id: None,
            audio: Some(&rtp),
            video: None,
            sctp: false,
            ssrc_rewriting: false,
            rtp_mid_demux: false,
            sources: None,
            force_mute,
        };
        let plain = allocate("m-1", None, &spec(ForceMute::default()));
        let ep = plain.get_child("endpoint", ns::COLIBRI2).unwrap();
        assert!(ep.get_child("force-mute", ns::COLIBRI2).is_none());
        let muted = allocate(
            "m-1",
            None,
            &spec(ForceMute {
                audio: false,
                video: true,
            }),
        );
        let ep = muted.get_child("endpoint", ns::COLIBRI2).unwrap();
        assert!(ep.get_child("force-mute", ns::COLIBRI2).is_some());
    }

    #[test]
    fn sources_are_grouped_by_source_name_without_msid() {
        let el = endpoint_sources("ab12cd34", &client_sources()).to_element();
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
