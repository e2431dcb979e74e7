//! COLIBRI2 `conference-modify` → operations on the media plane, answered with
//! `conference-modified` or a [`Colibri2ErrorResponse`] (jitsi-videobridge `jvb/src/main/kotlin/org/jitsi/videobridge/colibri2/Colibri2ConferenceHandler.kt`).
//!
//! Sans-IO: [`conference_modify`] runs synchronously inside the media worker on the [`Plane`] (sfu +
//! shell tables) and the port's [`PortState`] (transports), and is unit-tested without sockets.
//! The rules are the reference bridge's (jitsi-videobridge `Videobridge.getOrCreateConference`,
//! `Colibri2ConferenceHandler`):
//!
//! - `create` for a known meeting-id → `conflict` + `conference_already_exists`; a new conference
//!   while shutting down → `service-unavailable` + `graceful_shutdown`; a `name` that is not a JID →
//!   `bad-request`. No `create` and unknown meeting-id → `item-not-found` + `conference_not_found`.
//! - Several `endpoint`s in one request only when none creates or carries media, transport or
//!   sources (batch expire / force-mute); relays are not supported → `feature-not-implemented`.
//! - Endpoint create: needs `<transport>` and the `source-names` capability (else `bad-request`);
//!   a duplicate id → `conflict`; SCTP only as server on port 5000. The answer carries the bridge's
//!   ICE-UDP transport (ufrag, pwd, sha-256 fingerprint `actpass`, candidates, `web-socket` when
//!   colibri-ws is on) and `<sctp port=5000 role=server/>` if SCTP was asked for. Capabilities
//!   `ssrc-rewriting` (and with it `rtp-mid-demux`) are read at creation only
//!   (`sfu::ssrc_slots`).
//! - Unknown endpoint → `item-not-found` + `unknown_endpoint` + `<endpoint id/>`, except in
//!   requests that only expire or force-mute (then it is skipped).
//! - Sources for a visitor → `bad-request`. Sources are the endpoint's complete set each time.
//! - `<transport ice-restart="true"/>` on an existing endpoint: an in-place ICE restart (JVB
//!   `IceTransport.requestIceRestart`), answered with the new generation's transport
//!   (`transport/restart.rs`; see [`ice_restart`] for the other answers).
//! - Expired endpoints are echoed as `<endpoint id expire="true"/>`; feedback sources (`jvb-a0`,
//!   `jvb-v0`) are included whenever the request created the conference or an endpoint.
//! - A request without `create` that leaves the conference without endpoints expires it.
//!
//! As in the reference, a request that fails half-way keeps what it did before the failure (the
//! focus re-invites on errors anyway); checks that can be made up front are made before any change.

use std::time::Instant;

use signaling::colibri2::{
    self, Colibri2ErrorResponse as Error, ConferenceModified, ConferenceModify, Endpoint, MucRole,
    Sctp, SctpRole, Sources, Transport, capability,
};
use signaling::ice_udp::IceUdpTransport;
use signaling::rtp_description::{MediaType, RtpParameters};
use signaling::sources::Source;
use signaling::xmpp::BareJid;

use crate::lifecycle::Admission;
use crate::media::plane::{Key, Plane};
use crate::sfu::{
    ConferenceHandle, EndpointParams, EndpointUpdate, FeedbackSources, ForceMute, MediaKind,
    MediaSourceDesc, SfuError,
};
use crate::transport::signal::{
    candidate_allowed, local_transport, remote_candidates, remote_transport,
};
use crate::transport::{
    EndpointTransport, IceConfig, IceCredentials, IceMode, IceRestart, PortState, RemoteCandidate,
    RemoteFor, TransportConfig,
};

/// The SCTP port of the bridge channel (both sides), as WebRTC data channels use.
pub const SCTP_PORT: u16 = 5000;

/// Handles one `conference-modify` (see the module docs).
pub fn conference_modify(
    plane: &mut Plane,
    port: &mut PortState<Key>,
    now: Instant,
    req: &ConferenceModify,
    admission: Admission,
) -> Result<ConferenceModified, Error> {
    let conf = match plane.sfu.find_conference(&req.meeting_id) {
        Some(_) if req.create => return Err(Error::conference_already_exists(&req.meeting_id)),
        None if !req.create => return Err(Error::conference_not_found(&req.meeting_id)),
        Some(c) => c,
        None => create_conference(plane, now, req, admission)?,
    };
    #[cfg(test)]
    if req.meeting_id == TEST_PANIC_MEETING {
        panic!("injected by a test");
    }
    validate(req)?;
    if req.connects.as_ref().is_some_and(|c| !c.is_empty()) {
        tracing::warn!(
            meeting_id = req.meeting_id,
            "media export (<connects>) is not supported; ignored"
        );
    }
    let ignore_unknown = only_expires_or_mutes(req);
    let mut resp = ConferenceModified::default();
    for e in &req.endpoints {
        resp.endpoints
            .push(endpoint(plane, port, now, conf, e, ignore_unknown)?);
    }
    if (req.create || req.endpoints.iter().any(|e| e.create))
        && let Some(fb) = plane.sfu.feedback_sources(conf)
    {
        resp.sources = Some(feedback_sources(fb));
    }
    let alive = plane.sfu.meeting_id(conf).is_some();
    if req.expire {
        tracing::info!(meeting_id = req.meeting_id, "conference expire requested");
        plane.with_sfu(now, port, |sfu, out| sfu.expire_conference(now, conf, out));
    } else if alive && !req.create && plane.sfu.endpoint_count(conf) == 0 {
        tracing::info!(
            meeting_id = req.meeting_id,
            "all endpoints removed; expiring the conference"
        );
        plane.with_sfu(now, port, |sfu, out| sfu.expire_conference(now, conf, out));
    }
    Ok(resp)
}

fn create_conference(
    plane: &mut Plane,
    now: Instant,
    req: &ConferenceModify,
    admission: Admission,
) -> Result<ConferenceHandle, Error> {
    if admission != Admission::Accept {
        return Err(Error::graceful_shutdown());
    }
    if let Some(name) = &req.name
        && BareJid::new(name).is_err()
    {
        return Err(Error::bad_request("Invalid conference name (not a JID)"));
    }
    let conf = plane
        .sfu
        .create_conference(now, &req.meeting_id, req.name.as_deref())
        .map_err(|e| sfu_error(e, &req.meeting_id, ""))?;
    plane.add_conference(conf);
    tracing::info!(meeting_id = req.meeting_id, name = ?req.name, "conference created");
    Ok(conf)
}

/// Whether an endpoint element creates or carries media, transport or sources.
fn is_substantial(e: &Endpoint) -> bool {
    e.create || !e.media.is_empty() || e.transport.is_some() || e.sources.is_some()
}

/// The reference bridge's restrictions on request shapes.
fn validate(req: &ConferenceModify) -> Result<(), Error> {
    if !req.endpoints.is_empty() && !req.relays.is_empty() {
        return Err(Error::feature_not_implemented(
            "Using both 'relay' and 'endpoint' in a request",
        ));
    }
    if req.endpoints.len() > 1 && req.endpoints.iter().any(is_substantial) {
        return Err(Error::feature_not_implemented(
            "Creating or updating media, sources or transport for more than one endpoint in a request.",
        ));
    }
    if !req.relays.is_empty() {
        return Err(Error::feature_not_implemented(
            "Relays (bridge cascading) are not supported by this bridge.",
        ));
    }
    Ok(())
}

/// Unknown endpoints are skipped (not an error) when the request only expires or force-mutes.
fn only_expires_or_mutes(req: &ConferenceModify) -> bool {
    !req.endpoints.iter().any(is_substantial) && req.relays.iter().all(|r| r.expire)
}

fn sfu_error(e: SfuError, meeting_id: &str, endpoint_id: &str) -> Error {
    match e {
        SfuError::ConferenceExists(_) => Error::conference_already_exists(meeting_id),
        SfuError::ConferenceNotFound => Error::conference_not_found(meeting_id),
        SfuError::EndpointExists(id) => endpoint_conflict(&id),
        SfuError::EndpointNotFound => Error::unknown_endpoint(endpoint_id),
    }
}

fn endpoint_conflict(id: &str) -> Error {
    Error::new(
        colibri2::Condition::Conflict,
        None,
        Some(format!("Endpoint with ID {id} already exists")),
    )
}

fn internal(message: String) -> Error {
    Error::new(
        colibri2::Condition::InternalServerError,
        None,
        Some(message),
    )
}

fn rtp(e: &Endpoint, kind: MediaType) -> Option<RtpParameters> {
    e.media(kind).map(|m| m.rtp.clone())
}

/// COLIBRI2 sources → the core's source descriptions.
fn source_descs(s: &Sources) -> Vec<MediaSourceDesc> {
    s.media_sources
        .iter()
        .map(|m| MediaSourceDesc {
            kind: if m.media_type == MediaType::Audio {
                MediaKind::Audio
            } else {
                MediaKind::Video
            },
            name: m.id.clone(),
            sources: m.sources.clone(),
            groups: m.ssrc_groups.clone(),
        })
        .collect()
}

fn feedback_sources(fb: FeedbackSources) -> Sources {
    let one = |t: MediaType, name: &str, ssrc: u32| {
        let mut m = colibri2::MediaSource::new(t, name);
        m.sources.push(Source::named(ssrc, name));
        m
    };
    Sources {
        media_sources: vec![
            one(MediaType::Audio, FeedbackSources::AUDIO_NAME, fb.audio_ssrc),
            one(MediaType::Video, FeedbackSources::VIDEO_NAME, fb.video_ssrc),
        ],
    }
}

fn endpoint(
    plane: &mut Plane,
    port: &mut PortState<Key>,
    now: Instant,
    conf: ConferenceHandle,
    e: &Endpoint,
    ignore_unknown: bool,
) -> Result<Endpoint, Error> {
    if e.expire {
        if let Some(h) = plane.sfu.find_endpoint(conf, &e.id) {
            plane.with_sfu(now, port, |sfu, out| sfu.expire_endpoint(now, h, out));
        }
        return Ok(Endpoint::expired(e.id.clone()));
    }
    let (key, created) = if e.create {
        (create_endpoint(plane, port, now, conf, e)?, true)
    } else {
        match plane.sfu.find_endpoint(conf, &e.id) {
            Some(h) => {
                let updated = update_endpoint(plane, port, now, h, e);
                // Even a refused update may have changed SSRC claims: keep the filters in step.
                sync_ssrc_filters(plane, port, conf);
                updated?;
                (h, false)
            }
            None if ignore_unknown => return Ok(Endpoint::new(e.id.clone())),
            None => return Err(Error::unknown_endpoint(&e.id)),
        }
    };
    sync_ssrc_filters(plane, port, conf);
    if let Some(t) = e.transport.as_ref().and_then(|t| t.ice_udp.as_ref()) {
        let on_loopback = plane.env.bound.ip().is_loopback();
        apply_remote_transport(port, now, key, &e.id, t, on_loopback)?;
    }
    // After the transport update, as JVB: credentials in the same request still belong to the
    // generation they were meant for.
    let restarted = e.transport.as_ref().is_some_and(|t| t.ice_restart)
        && ice_restart(plane, port, now, key, &e.id)?;
    let mut answer = Endpoint::new(e.id.clone());
    if created || restarted {
        answer.transport = Some(local_answer(plane, port, key, e)?);
    }
    Ok(answer)
}

/// `<transport ice-restart="true"/>` (the current lib-jitsi-meet's in-place restart through the
/// focus; JVB `Colibri2ConferenceHandler`, `IceTransport.requestIceRestart`). Returns whether the
/// answer carries a transport: the new generation's (new ufrag/pwd, same fingerprint,
/// `ice-generation`), or the unchanged one when ICE never connected (the focus then has nothing to
/// relay). No transport: the transport failed and cannot restart (the focus re-invites). An
/// endpoint the port has no transport for is `unknown_endpoint` (the focus re-invites too).
fn ice_restart(
    plane: &mut Plane,
    port: &mut PortState<Key>,
    now: Instant,
    key: Key,
    id: &str,
) -> Result<bool, Error> {
    let counts = &mut plane.traffic.ice_restarts;
    let Some(r) = port.restart_ice(now, &key) else {
        counts.rejected += 1;
        tracing::warn!(
            endpoint = id,
            "ICE restart for an endpoint without a transport"
        );
        return Err(Error::unknown_endpoint(id));
    };
    let ufrag = port
        .endpoint(&key)
        .map(|ep| ep.advertised_credentials().ufrag.clone())
        .unwrap_or_default();
    match r {
        IceRestart::Started {
            generation,
            superseded,
        } => {
            counts.started += 1;
            if let Some(old) = superseded {
                counts.superseded += 1;
                tracing::info!(endpoint = id, generation = old, "ICE restart superseded");
            }
            tracing::info!(endpoint = id, generation, ufrag, "ICE restart started");
            Ok(true)
        }
        IceRestart::Repeated { generation } => {
            tracing::info!(endpoint = id, generation, "ICE restart already pending");
            Ok(true)
        }
        IceRestart::NotEstablished => {
            counts.not_established += 1;
            tracing::info!(
                endpoint = id,
                "ICE restart: not connected yet, transport kept"
            );
            Ok(true)
        }
        IceRestart::Unavailable => {
            counts.rejected += 1;
            tracing::warn!(endpoint = id, "ICE restart: the transport failed");
            Ok(false)
        }
    }
}

/// A meeting id whose request panics after its conference was created (unit tests of the media
/// worker's fault isolation).
#[cfg(test)]
pub(crate) const TEST_PANIC_MEETING: &str = "test-panic-meeting";

/// Tells every endpoint transport of `conf` which SSRCs it may decrypt: the sources the
/// conference accepted from it. All of them, as a claim can move an SSRC between endpoints.
fn sync_ssrc_filters(plane: &Plane, port: &mut PortState<Key>, conf: ConferenceHandle) {
    for h in plane.sfu.endpoints(conf) {
        if let Some(ep) = port.endpoint_mut(&h) {
            ep.set_signalled_ssrcs(plane.sfu.endpoint_ssrcs(h));
        }
    }
}

fn create_endpoint(
    plane: &mut Plane,
    port: &mut PortState<Key>,
    now: Instant,
    conf: ConferenceHandle,
    e: &Endpoint,
) -> Result<Key, Error> {
    if plane.sfu.find_endpoint(conf, &e.id).is_some() {
        return Err(endpoint_conflict(&e.id));
    }
    let Some(transport) = &e.transport else {
        return Err(Error::bad_request(&format!(
            "Attempt to create endpoint {} with no <transport>",
            e.id
        )));
    };
    if !e.has_capability(capability::SOURCE_NAMES) {
        return Err(Error::bad_request("Source name support is mandatory."));
    }
    if let Some(sctp) = &transport.sctp {
        if sctp.role.is_some_and(|r| r != SctpRole::Server) {
            return Err(Error::feature_not_implemented(
                "Unsupported SCTP role: client",
            ));
        }
        if sctp.port.is_some_and(|p| p != SCTP_PORT) {
            return Err(Error::bad_request(
                "Specific SCTP port requested, not supported.",
            ));
        }
    }
    let visitor = e.muc_role == Some(MucRole::Visitor);
    if visitor
        && e.sources
            .as_ref()
            .is_some_and(|s| !s.media_sources.is_empty())
    {
        return Err(Error::bad_request(&format!(
            "Attempt to set sources for visitor endpoint {}",
            e.id
        )));
    }
    let params = EndpointParams {
        id: e.id.clone(),
        stats_id: e.stats_id.clone(),
        audio: rtp(e, MediaType::Audio).unwrap_or_default(),
        video: rtp(e, MediaType::Video).unwrap_or_default(),
        sources: e.sources.as_ref().map(source_descs).unwrap_or_default(),
        force_mute: e
            .force_mute
            .map(|f| ForceMute {
                audio: f.audio,
                video: f.video,
            })
            .unwrap_or_default(),
        initial_last_n: e.initial_last_n,
        visitor,
        // Decided at creation, as JVB (`Colibri2ConferenceHandler.kt`): mid demuxing only with
        // SSRC rewriting.
        ssrc_rewriting: e.has_capability(capability::SSRC_REWRITING),
        rtp_mid_demux: e.has_capability(capability::SSRC_REWRITING)
            && e.has_capability(capability::RTP_MID_DEMUX),
    };
    let env = &plane.env;
    let cfg = TransportConfig {
        ice: IceConfig {
            // Jicofo asks the bridge to be the controlling agent (full ICE); otherwise lite.
            mode: if transport.ice_controlling {
                IceMode::Full
            } else {
                IceMode::Lite
            },
            ..IceConfig::default()
        },
        srtp_profiles: env.srtp_profiles.clone(),
        ..TransportConfig::default()
    };
    let ep = EndpointTransport::new(
        IceCredentials::random(),
        &env.identity,
        cfg,
        env.counters.clone(),
    )
    .map_err(|err| internal(format!("transport setup failed: {err}")))?;
    let meeting_id = plane.sfu.meeting_id(conf).unwrap_or_default().to_owned();
    let key = plane
        .with_sfu(now, port, |sfu, out| {
            sfu.create_endpoint(now, conf, params, out)
        })
        .map_err(|err| sfu_error(err, &meeting_id, &e.id))?;
    port.add_endpoint(key, ep);
    plane.add_endpoint(key);
    tracing::info!(
        meeting_id,
        endpoint = e.id,
        ice_controlling = transport.ice_controlling,
        sctp = transport.sctp.is_some(),
        "endpoint created"
    );
    Ok(key)
}

fn update_endpoint(
    plane: &mut Plane,
    port: &mut PortState<Key>,
    now: Instant,
    key: Key,
    e: &Endpoint,
) -> Result<(), Error> {
    let visitor = plane.sfu.endpoint_info(key).is_some_and(|i| i.visitor);
    let mut u = EndpointUpdate::default();
    let mut any = false;
    if let Some(a) = rtp(e, MediaType::Audio) {
        u.audio = Some(a);
        any = true;
    }
    if let Some(v) = rtp(e, MediaType::Video) {
        u.video = Some(v);
        any = true;
    }
    if let Some(s) = &e.sources {
        if visitor && !s.media_sources.is_empty() {
            return Err(Error::bad_request(&format!(
                "Attempt to set sources for visitor endpoint {}",
                e.id
            )));
        }
        u.sources = Some(source_descs(s));
        any = true;
    }
    if let Some(f) = e.force_mute {
        u.force_mute_audio = Some(f.audio);
        u.force_mute_video = Some(f.video);
        any = true;
    }
    if let Some(n) = e.initial_last_n {
        u.initial_last_n = Some(n);
        any = true;
    }
    if any {
        plane
            .with_sfu(now, port, |sfu, out| sfu.update_endpoint(now, key, u, out))
            .map_err(|err| sfu_error(err, "", &e.id))?;
    }
    Ok(())
}

/// The client's transport (from its session-accept / transport-info): credentials, fingerprint
/// and candidates, or just more candidates.
fn apply_remote_transport(
    port: &mut PortState<Key>,
    now: Instant,
    key: Key,
    id: &str,
    t: &IceUdpTransport,
    bridge_on_loopback: bool,
) -> Result<(), Error> {
    let Some(ep) = port.endpoint_mut(&key) else {
        return Err(Error::unknown_endpoint(id));
    };
    let keep = |c: &RemoteCandidate| {
        let ok = candidate_allowed(&c.addr, bridge_on_loopback);
        if !ok {
            tracing::info!(endpoint = id, candidate = %c.addr, "remote candidate ignored");
        }
        ok
    };
    if t.ufrag.is_some() && t.pwd.is_some() {
        let mut remote = remote_transport(t)
            .map_err(|err| Error::bad_request(&format!("endpoint {id}: {err}")))?;
        remote.candidates.retain(keep);
        if ep.set_remote_generation(now, remote, t.ice_generation) == RemoteFor::Stale {
            tracing::info!(
                endpoint = id,
                generation = t.ice_generation,
                "transport of a gone ICE generation ignored"
            );
        }
    } else if !t.candidates.is_empty() {
        let mut candidates = remote_candidates(&t.candidates);
        candidates.retain(keep);
        ep.add_remote_candidates(now, &candidates);
    }
    Ok(())
}

/// The bridge's side of a new endpoint's transport.
fn local_answer(
    plane: &Plane,
    port: &PortState<Key>,
    key: Key,
    e: &Endpoint,
) -> Result<Transport, Error> {
    let ep = port
        .endpoint(&key)
        .ok_or_else(|| internal("transport vanished".into()))?;
    let mut ice = local_transport(ep, plane.env.candidates.clone());
    if let Some(url) = plane.ws_url(key) {
        ice.web_sockets.push(url);
    }
    let sctp = e.transport.as_ref().and_then(|t| t.sctp).map(|_| Sctp {
        port: Some(SCTP_PORT),
        role: Some(SctpRole::Server),
    });
    Ok(Transport {
        ice_udp: Some(ice),
        sctp,
        ..Transport::default()
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::media::{MediaEnv, MediaSettings};
    use crate::random::TokenRng;
    use crate::sfu::SfuConfig;
    use signaling::colibri2::{Condition, ForceMute as C2ForceMute, Reason};
    use signaling::ice_udp::{Candidate, Fingerprint, Setup};
    use signaling::rtp_description::{PayloadType, RtpHdrExt, hdrext};
    use signaling::sources::{Semantics, SsrcGroup};
    use signaling::xml::XmlElement;

    pub(crate) fn setup() -> (Plane, PortState<Key>) {
        let settings = MediaSettings {
            bind: "127.0.0.1:10000".parse().unwrap(),
            advertise_ips: vec!["203.0.113.9".parse().unwrap()],
            advertise_private_candidates: true,
            stun_servers: Vec::new(),
            srtp_profiles: vec![crate::config::SrtpProfile::AeadAes128Gcm],
            endpoint_expire_timeout: std::time::Duration::from_secs(60),
            colibri_ws_base: Some("wss://meet.example/colibri-ws/jvb-1".into()),
            udp_buffer_size: 0,
            workers: 1,
        };
        let env = MediaEnv::new(&settings, settings.bind).unwrap();
        let port = PortState::new(env.counters.clone());
        (
            Plane::new(SfuConfig::default(), env, TokenRng::new([9; 32])),
            port,
        )
    }

    /// [`setup`] with conference `m1` holding endpoint `a`.
    fn setup_with_a() -> (Plane, PortState<Key>) {
        let (mut plane, mut port) = setup();
        let create = req("m1", true, vec![new_endpoint("a")]);
        run(&mut plane, &mut port, &create).unwrap();
        (plane, port)
    }

    pub(crate) fn media() -> Vec<colibri2::Media> {
        vec![
            colibri2::Media {
                media_type: MediaType::Audio,
                rtp: RtpParameters {
                    payload_types: vec![PayloadType::new(111, "opus", 48000, Some(2))],
                    header_extensions: vec![RtpHdrExt::new(1, hdrext::AUDIO_LEVEL)],
                    extmap_allow_mixed: false,
                },
            },
            colibri2::Media {
                media_type: MediaType::Video,
                rtp: RtpParameters {
                    payload_types: vec![
                        PayloadType::new(100, "VP8", 90000, None)
                            .with_rtcp_fb("nack", None)
                            .with_rtcp_fb("nack", Some("pli")),
                        PayloadType::new(96, "rtx", 90000, None).with_parameter("apt", "100"),
                    ],
                    header_extensions: Vec::new(),
                    extmap_allow_mixed: false,
                },
            },
        ]
    }

    pub(crate) fn new_endpoint(id: &str) -> Endpoint {
        Endpoint {
            create: true,
            media: media(),
            transport: Some(Transport {
                ice_controlling: true,
                sctp: Some(Sctp::default()),
                ..Transport::default()
            }),
            capabilities: vec![capability::SOURCE_NAMES.into()],
            ..Endpoint::new(id)
        }
    }

    fn sources(ep: &str, audio: u32, video: u32, rtx: u32) -> Sources {
        let mut a = colibri2::MediaSource::new(MediaType::Audio, format!("{ep}-a0"));
        a.sources.push(Source::new(audio));
        let mut v = colibri2::MediaSource::new(MediaType::Video, format!("{ep}-v0"));
        v.sources.push(Source::new(video));
        v.sources.push(Source::new(rtx));
        v.ssrc_groups
            .push(SsrcGroup::new(Semantics::Fid, vec![video, rtx]));
        Sources {
            media_sources: vec![a, v],
        }
    }

    pub(crate) fn req(meeting: &str, create: bool, endpoints: Vec<Endpoint>) -> ConferenceModify {
        ConferenceModify {
            create,
            name: Some("room@conference.meet.example".into()),
            endpoints,
            ..ConferenceModify::new(meeting)
        }
    }

    fn run(
        plane: &mut Plane,
        port: &mut PortState<Key>,
        r: &ConferenceModify,
    ) -> Result<ConferenceModified, Error> {
        // Through XML both ways, as on the wire.
        let r = ConferenceModify::from_xml(&r.to_xml()).unwrap();
        conference_modify(plane, port, Instant::now(), &r, Admission::Accept)
            .map(|m| ConferenceModified::from_xml(&m.to_xml()).unwrap())
    }

    #[test]
    fn create_answers_transport_sctp_and_feedback_sources() {
        let (mut plane, mut port) = setup();
        let m = run(
            &mut plane,
            &mut port,
            &req("m1", true, vec![new_endpoint("ab12cd34")]),
        )
        .unwrap();
        let ep = m.endpoint("ab12cd34").unwrap();
        let t = ep.transport.as_ref().unwrap();
        let ice = t.ice_udp.as_ref().unwrap();
        assert!(ice.ufrag.as_deref().is_some_and(|u| u.len() >= 4));
        assert!(ice.pwd.as_deref().is_some_and(|p| p.len() >= 22));
        assert!(ice.rtcp_mux);
        let fp: &Fingerprint = ice.fingerprint().unwrap();
        assert_eq!(fp.hash, "sha-256");
        assert_eq!(fp.setup, Some(Setup::Actpass));
        assert_eq!(fp.value, plane.env.identity.fingerprint().value);
        let addrs: Vec<String> = ice
            .candidates
            .iter()
            .map(|c: &Candidate| format!("{}:{} {}", c.ip, c.port, c.candidate_type))
            .collect();
        assert_eq!(
            addrs,
            vec!["203.0.113.9:10000 srflx", "127.0.0.1:10000 host"],
            "advertised mapping first, then the bound address"
        );
        let ws = ice.web_sockets.first().unwrap();
        assert!(
            ws.starts_with("wss://meet.example/colibri-ws/jvb-1/") && ws.contains("/ab12cd34?pwd="),
            "{ws}"
        );
        assert_eq!(ws.rsplit("pwd=").next().unwrap().len(), 24);
        assert_eq!(
            t.sctp,
            Some(Sctp {
                port: Some(5000),
                role: Some(SctpRole::Server)
            })
        );
        let fb = m.sources.as_ref().unwrap();
        let a = fb.media_source("jvb-a0").unwrap();
        let v = fb.media_source("jvb-v0").unwrap();
        assert_eq!(a.media_type, MediaType::Audio);
        assert_eq!(v.media_type, MediaType::Video);
        assert_ne!(a.sources[0].ssrc, v.sources[0].ssrc);
        assert_eq!(a.sources[0].name.as_deref(), Some("jvb-a0"));
        assert_eq!(port.keys().count(), 1);
        assert_eq!(
            crate::media::publish::export(&plane, Instant::now()).conference_sizes,
            vec![1]
        );

        // An update without create: no transport, no feedback sources.
        let mut upd = Endpoint::new("ab12cd34");
        upd.sources = Some(sources("ab12cd34", 11, 22, 23));
        let m = run(&mut plane, &mut port, &req("m1", false, vec![upd])).unwrap();
        assert!(m.sources.is_none());
        assert!(m.endpoint("ab12cd34").unwrap().transport.is_none());
        assert_eq!(plane.sfu.stats().sources, 2);
    }

    /// Every endpoint's transport decrypts only the SSRCs the conference accepted from it (RTX
    /// included), from its creation on; a source update replaces them.
    #[test]
    fn transports_filter_the_signalled_ssrcs() {
        let (mut plane, mut port) = setup_with_a();
        let key = plane
            .sfu
            .find_endpoint(plane.sfu.find_conference("m1").unwrap(), "a");
        let signalled = |port: &PortState<Key>| {
            let ep = port.endpoint(&key.unwrap()).unwrap();
            ep.ssrc_filter().map(|f| f.signalled().to_vec())
        };
        assert_eq!(signalled(&port), Some(vec![]));
        let mut upd = Endpoint::new("a");
        upd.sources = Some(sources("a", 11, 22, 23));
        run(&mut plane, &mut port, &req("m1", false, vec![upd])).unwrap();
        assert_eq!(signalled(&port), Some(vec![11, 22, 23]));
        let mut upd = Endpoint::new("a");
        upd.sources = Some(sources("a", 12, 22, 23));
        run(&mut plane, &mut port, &req("m1", false, vec![upd])).unwrap();
        assert_eq!(signalled(&port), Some(vec![12, 22, 23]));
    }

    fn expect_err(
        r: Result<ConferenceModified, Error>,
        cond: Condition,
        reason: Option<Reason>,
    ) -> Error {
        let e = r.expect_err("expected an error");
        // The stanza error survives XML.
        let back = Error::from_xml(&e.to_xml()).unwrap();
        assert_eq!(back.condition, cond, "{e:?}");
        assert_eq!(back.reason, reason, "{e:?}");
        back
    }

    #[test]
    fn error_rules() {
        let (mut plane, mut port) = setup_with_a();
        // Duplicate conference.
        expect_err(
            run(&mut plane, &mut port, &req("m1", true, vec![])),
            Condition::Conflict,
            Some(Reason::ConferenceAlreadyExists),
        );
        // Unknown meeting id.
        expect_err(
            run(
                &mut plane,
                &mut port,
                &req("nope", false, vec![Endpoint::new("a")]),
            ),
            Condition::ItemNotFound,
            Some(Reason::ConferenceNotFound),
        );
        // Unknown endpoint (with the id).
        let mut upd = Endpoint::new("zz");
        upd.sources = Some(Sources::default());
        let e = expect_err(
            run(&mut plane, &mut port, &req("m1", false, vec![upd])),
            Condition::ItemNotFound,
            Some(Reason::UnknownEndpoint),
        );
        assert_eq!(e.endpoint_id.as_deref(), Some("zz"));
        // …ignored when only expiring or force-muting.
        let mut mute = Endpoint::new("zz");
        mute.force_mute = Some(C2ForceMute {
            audio: true,
            video: false,
        });
        let m = run(
            &mut plane,
            &mut port,
            &req("m1", false, vec![mute, Endpoint::expired("yy")]),
        )
        .unwrap();
        assert_eq!(m.endpoints.len(), 2);
        assert!(m.endpoint("yy").unwrap().expire);
        // Create without transport / without source-names / duplicate.
        let mut no_transport = new_endpoint("b");
        no_transport.transport = None;
        expect_err(
            run(&mut plane, &mut port, &req("m1", false, vec![no_transport])),
            Condition::BadRequest,
            None,
        );
        let mut no_names = new_endpoint("b");
        no_names.capabilities.clear();
        let e = expect_err(
            run(&mut plane, &mut port, &req("m1", false, vec![no_names])),
            Condition::BadRequest,
            None,
        );
        assert!(e.text.unwrap().contains("Source name"));
        expect_err(
            run(
                &mut plane,
                &mut port,
                &req("m1", false, vec![new_endpoint("a")]),
            ),
            Condition::Conflict,
            None,
        );
        // Several endpoints with substance in one request.
        expect_err(
            run(
                &mut plane,
                &mut port,
                &req("m1", false, vec![new_endpoint("c"), new_endpoint("d")]),
            ),
            Condition::FeatureNotImplemented,
            Some(Reason::FeatureNotImplemented),
        );
        // SCTP as client, or on another port.
        let mut client = new_endpoint("e");
        client.transport.as_mut().unwrap().sctp = Some(Sctp {
            port: None,
            role: Some(SctpRole::Client),
        });
        expect_err(
            run(&mut plane, &mut port, &req("m1", false, vec![client])),
            Condition::FeatureNotImplemented,
            Some(Reason::FeatureNotImplemented),
        );
        // Sources for a visitor.
        let mut visitor = new_endpoint("v");
        visitor.muc_role = Some(MucRole::Visitor);
        visitor.sources = Some(sources("v", 1, 2, 3));
        expect_err(
            run(
                &mut plane,
                &mut port,
                &req("m1", false, vec![visitor.clone()]),
            ),
            Condition::BadRequest,
            None,
        );
        visitor.sources = None;
        run(&mut plane, &mut port, &req("m1", false, vec![visitor])).unwrap();
        let mut later = Endpoint::new("v");
        later.sources = Some(sources("v", 1, 2, 3));
        expect_err(
            run(&mut plane, &mut port, &req("m1", false, vec![later])),
            Condition::BadRequest,
            None,
        );
        // Bad conference name.
        let mut bad = req("m2", true, vec![]);
        bad.name = Some("not a jid@@".into());
        expect_err(
            run(&mut plane, &mut port, &bad),
            Condition::BadRequest,
            None,
        );
    }

    #[test]
    fn graceful_shutdown_refuses_new_conferences_only() {
        let (mut plane, mut port) = setup_with_a();
        let refused = conference_modify(
            &mut plane,
            &mut port,
            Instant::now(),
            &req("m2", true, vec![new_endpoint("b")]),
            Admission::RefuseShuttingDown,
        );
        expect_err(
            refused,
            Condition::ServiceUnavailable,
            Some(Reason::GracefulShutdown),
        );
        // Existing conferences keep working.
        let ok = conference_modify(
            &mut plane,
            &mut port,
            Instant::now(),
            &req("m1", false, vec![new_endpoint("b")]),
            Admission::RefuseShuttingDown,
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn expiry_rules() {
        let (mut plane, mut port) = setup_with_a();
        run(
            &mut plane,
            &mut port,
            &req("m1", false, vec![new_endpoint("b")]),
        )
        .unwrap();
        assert_eq!(port.keys().count(), 2);
        let m = run(
            &mut plane,
            &mut port,
            &req("m1", false, vec![Endpoint::expired("a")]),
        )
        .unwrap();
        assert!(m.endpoint("a").unwrap().expire);
        assert_eq!(
            port.keys().count(),
            1,
            "the transport goes with the endpoint"
        );
        assert!(plane.sfu.find_conference("m1").is_some());
        // The last endpoint leaves: the conference expires with it.
        run(
            &mut plane,
            &mut port,
            &req("m1", false, vec![Endpoint::expired("b")]),
        )
        .unwrap();
        assert!(plane.sfu.find_conference("m1").is_none());
        assert!(plane.conferences.is_empty());
        expect_err(
            run(&mut plane, &mut port, &req("m1", false, vec![])),
            Condition::ItemNotFound,
            Some(Reason::ConferenceNotFound),
        );
        // A conference created empty survives its create request, and a later request that
        // leaves it empty expires it.
        run(&mut plane, &mut port, &req("m2", true, vec![])).unwrap();
        assert!(plane.sfu.find_conference("m2").is_some());
        run(&mut plane, &mut port, &req("m2", false, vec![])).unwrap();
        assert!(plane.sfu.find_conference("m2").is_none());
        // Conference expire tears everything down.
        run(
            &mut plane,
            &mut port,
            &req("m3", true, vec![new_endpoint("a")]),
        )
        .unwrap();
        let mut exp = req("m3", false, vec![]);
        exp.expire = true;
        run(&mut plane, &mut port, &exp).unwrap();
        assert!(plane.sfu.find_conference("m3").is_none());
        assert_eq!(port.keys().count(), 0);
        assert_eq!(
            crate::media::publish::export(&plane, Instant::now()).conferences_completed,
            3
        );
    }

    #[test]
    fn transport_update_starts_ice() {
        let (mut plane, mut port) = setup_with_a();
        let key = *port.keys().next().unwrap();
        assert_eq!(
            port.endpoint(&key).unwrap().ice_state(),
            crate::transport::IceState::New
        );
        let mut upd = Endpoint::new("a");
        upd.transport = Some(Transport {
            ice_udp: Some(IceUdpTransport {
                ufrag: Some("peer".into()),
                pwd: Some("peerpasswordpeerpassword".into()),
                fingerprints: vec![Fingerprint {
                    hash: "sha-256".into(),
                    setup: Some(Setup::Active),
                    cryptex: false,
                    value: "AA:BB".into(),
                }],
                candidates: vec![Candidate::host_udp(
                    "1",
                    "c1",
                    "127.0.0.1".parse().unwrap(),
                    40000,
                    2_130_706_431,
                )],
                ..IceUdpTransport::default()
            }),
            ..Transport::default()
        });
        run(&mut plane, &mut port, &req("m1", false, vec![upd])).unwrap();
        assert_eq!(
            port.endpoint(&key).unwrap().ice_state(),
            crate::transport::IceState::Checking
        );
        // A transport without credentials is a trickle of candidates.
        let mut trickle = Endpoint::new("a");
        trickle.transport = Some(Transport {
            ice_udp: Some(IceUdpTransport {
                candidates: vec![Candidate::host_udp(
                    "2",
                    "c2",
                    "127.0.0.1".parse().unwrap(),
                    40001,
                    2_130_706_430,
                )],
                ..IceUdpTransport::default()
            }),
            ..Transport::default()
        });
        run(&mut plane, &mut port, &req("m1", false, vec![trickle])).unwrap();
    }

    fn restart(id: &str) -> Endpoint {
        let mut e = Endpoint::new(id);
        e.transport = Some(Transport {
            ice_restart: true,
            ..Transport::default()
        });
        e
    }

    fn answer_ice(m: &ConferenceModified, id: &str) -> Option<IceUdpTransport> {
        m.endpoint(id)?.transport.as_ref()?.ice_udp.clone()
    }

    /// `<transport ice-restart="true"/>` (JVB's answers, `Colibri2ConferenceHandler`): before ICE
    /// connected the unchanged transport without a generation; once connected a new ufrag and pwd,
    /// the same fingerprint and candidates, `ice-generation` 1 — again on a repeated request — and
    /// the bridge accepts checks for the new credentials; the participant's tagged answer is
    /// taken; an unknown endpoint is `unknown_endpoint`; a failed transport answers no transport
    /// (the focus re-invites). Counted as JVB's `ice_restarts_*`.
    #[test]
    fn ice_restart_answers_a_new_generation_with_the_same_fingerprint() {
        use crate::transport::stun::{Builder, Class, METHOD_BINDING, Message};
        let (mut plane, mut port) = setup();
        // Lite (no ice-controlling), so a check with USE-CANDIDATE connects it here.
        let mut a = new_endpoint("a");
        a.transport.as_mut().unwrap().ice_controlling = false;
        let created = run(&mut plane, &mut port, &req("m1", true, vec![a])).unwrap();
        let first = answer_ice(&created, "a").unwrap();
        let m = run(&mut plane, &mut port, &req("m1", false, vec![restart("a")])).unwrap();
        let kept = answer_ice(&m, "a").expect("not connected yet: the transport, unchanged");
        assert_eq!(
            (kept.ufrag.clone(), kept.ice_generation),
            (first.ufrag.clone(), None)
        );

        let key = *port.keys().next().unwrap();
        let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let check = |ufrag: &str, pwd: &str, id: u8| {
            let mut buf = Vec::new();
            Builder::new(&mut buf, Class::Request, METHOD_BINDING, &[id; 12])
                .username(&format!("{ufrag}:peer"))
                .priority(1)
                .ice_controlling(5)
                .use_candidate()
                .integrity(pwd.as_bytes())
                .fingerprint();
            buf
        };
        let (uf, pw) = (first.ufrag.clone().unwrap(), first.pwd.clone().unwrap());
        assert_eq!(
            port.handle_datagram(Instant::now(), peer, &check(&uf, &pw, 1)),
            Some(key)
        );
        assert_eq!(port.endpoint(&key).unwrap().remote_addr(), Some(peer));

        let m = run(&mut plane, &mut port, &req("m1", false, vec![restart("a")])).unwrap();
        let t = m.endpoint("a").unwrap().transport.as_ref().unwrap();
        let new = t.ice_udp.clone().unwrap();
        assert_eq!(new.ice_generation, Some(1));
        assert!(
            new.ufrag
                .as_deref()
                .is_some_and(|u| u.len() >= 4 && u != uf)
        );
        assert!(new.pwd.as_deref().is_some_and(|p| p.len() >= 22 && p != pw));
        assert_eq!(new.fingerprints, first.fingerprints, "DTLS goes on");
        assert_eq!(new.candidates, first.candidates);
        assert_eq!(new.web_sockets, first.web_sockets);
        assert!(t.sctp.is_none(), "not asked for");
        let again = run(&mut plane, &mut port, &req("m1", false, vec![restart("a")])).unwrap();
        let again = answer_ice(&again, "a").unwrap();
        assert_eq!(
            (again.ufrag, again.ice_generation),
            (new.ufrag.clone(), Some(1))
        );
        // Checks for the new credentials are answered.
        let (nu, np) = (new.ufrag.clone().unwrap(), new.pwd.clone().unwrap());
        assert_eq!(
            port.handle_datagram(Instant::now(), peer, &check(&nu, &np, 2)),
            Some(key)
        );
        let mut out = Vec::new();
        port.drain_transmits(&mut out);
        assert!(out.iter().any(|(_, d)| {
            Message::parse(d)
                .is_ok_and(|m| m.class == Class::Success && m.transaction_id == [2; 12])
        }));
        // The participant's answer, tagged with the generation.
        let mut answer = Endpoint::new("a");
        answer.transport = Some(Transport {
            ice_udp: Some(IceUdpTransport {
                ufrag: Some("peernew".into()),
                pwd: Some("peernewpasswordpeernewpw".into()),
                ice_generation: Some(1),
                ..IceUdpTransport::default()
            }),
            ..Transport::default()
        });
        let m = run(&mut plane, &mut port, &req("m1", false, vec![answer])).unwrap();
        assert!(m.endpoint("a").unwrap().transport.is_none());
        // That connected the new generation (lite: the nominating check above).
        assert_eq!(port.endpoint(&key).unwrap().ice().generation(), 1);

        let e = expect_err(
            run(
                &mut plane,
                &mut port,
                &req("m1", false, vec![restart("zz")]),
            ),
            Condition::ItemNotFound,
            Some(Reason::UnknownEndpoint),
        );
        assert_eq!(e.endpoint_id.as_deref(), Some("zz"));

        // An endpoint whose ICE never connected fails after 30 s: it cannot restart.
        run(
            &mut plane,
            &mut port,
            &req("m1", false, vec![new_endpoint("b")]),
        )
        .unwrap();
        let kb = plane
            .sfu
            .find_endpoint(plane.sfu.find_conference("m1").unwrap(), "b")
            .unwrap();
        let mut upd = Endpoint::new("b");
        upd.transport = Some(Transport {
            ice_udp: Some(IceUdpTransport {
                ufrag: Some("peerb".into()),
                pwd: Some("peerbpasswordpeerbpasswd".into()),
                ..IceUdpTransport::default()
            }),
            ..Transport::default()
        });
        run(&mut plane, &mut port, &req("m1", false, vec![upd])).unwrap();
        port.handle_timeout(Instant::now() + std::time::Duration::from_secs(31));
        assert!(port.endpoint(&kb).unwrap().is_failed());
        let m = run(&mut plane, &mut port, &req("m1", false, vec![restart("b")])).unwrap();
        assert!(m.endpoint("b").unwrap().transport.is_none());

        let c = crate::media::publish::export(&plane, Instant::now()).ice_restarts;
        // (The unknown endpoint is refused before the restart; `succeeded` is counted from the
        // transport's event, which the media worker delivers, not this test.)
        assert_eq!(
            (c.started, c.not_established, c.rejected, c.superseded),
            (1, 1, 1, 0),
            "{c:?}"
        );
    }
}
