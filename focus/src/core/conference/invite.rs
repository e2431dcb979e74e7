//! Invitations: when members get invited (`min_participants`, retries when no bridge is available),
//! and one invitation's run — features, bridge selection, the COLIBRI2 allocation request and, once
//! allocated, the `session-initiate` offer with the bridge's transport and everybody else's sources
//! (Jicofo `ParticipantInviteRunnable`).

use std::collections::BTreeSet;

use signaling::ice_udp::SctpMap;
use signaling::jingle::{
    Action, BridgeSession as BridgeSessionEl, Content, Group, Jingle, RtpDescription,
};
use signaling::rtp_description::MediaType;
use signaling::source_map::{ConferenceSourceMap, SourceEncoding};
use tracing::{debug, info, warn};

use super::{BridgeSession, Conference, Participant, RETRY_INTERVAL, Session, Stage};
use crate::core::colibri::{self, EndpointSpec};
use crate::core::muc;
use crate::core::offer::{Features, Offer, OfferOptions};
use crate::core::stanza::{IqKind, Link};
use crate::core::{Ctx, RoomRequest};

impl Conference {
    /// Invites members once the room has enough of them: all not yet invited, or just `new_member`.
    pub(super) fn maybe_invite(&mut self, ctx: &mut Ctx<'_>, new_member: Option<&str>) {
        if !self.is_joined() || self.members.len() < ctx.cfg.conference.min_participants {
            return;
        }
        self.single_deadline = None;
        let nicks: Vec<String> = match new_member {
            Some(n) if !self.participants.is_empty() => vec![n.to_owned()],
            _ => self.members.keys().cloned().collect(),
        };
        for nick in nicks {
            if self.participants.contains_key(&nick) {
                continue;
            }
            ctx.counters.participants += 1;
            self.participants.insert(nick.clone(), Participant::new());
            self.invite(ctx, &nick);
        }
    }

    /// Parks `nick`'s invitation; it is tried again with the others waiting for a bridge.
    pub(super) fn wait_and_retry(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        if let Some(p) = self.participants.get_mut(nick) {
            p.epoch += 1;
            p.stage = Stage::WaitingBridge;
        }
        self.retry_deadline = Some(ctx.now + RETRY_INTERVAL);
    }

    /// Invitations waiting for a bridge are tried again.
    pub fn retry_waiting(&mut self, ctx: &mut Ctx<'_>) {
        let waiting: Vec<String> = self
            .participants
            .iter()
            .filter(|(_, p)| matches!(p.stage, Stage::WaitingBridge))
            .map(|(n, _)| n.clone())
            .collect();
        for n in waiting {
            self.invite(ctx, &n);
        }
    }

    /// Starts (or restarts) the invitation of `nick`: features → bridge → COLIBRI2 allocation.
    pub(super) fn invite(&mut self, ctx: &mut Ctx<'_>, nick: &str) {
        let Some(member) = self.members.get_mut(nick) else {
            return;
        };
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        p.epoch += 1;
        p.stage = Stage::WaitingFeatures;
        if member.features.is_none()
            && let Some(f) = member.caps.as_ref().and_then(|c| ctx.features.get(c))
        {
            member.features = Some(f);
        }
        let Some(features) = member.features else {
            if !member.disco_in_flight {
                member.disco_in_flight = true;
                let to = format!("{}/{}", self.room, nick);
                self.request(
                    ctx,
                    Link::Client,
                    to,
                    IqKind::Get,
                    muc::disco_info_query(None),
                    RoomRequest::Disco {
                        nick: nick.to_owned(),
                    },
                );
            }
            return;
        };
        let region = member.region.clone();
        let stats_id = member.stats_id.clone();

        // The bridge: the conference's, or a new selection.
        if self.bridge.is_none() {
            let selected = ctx.bridges.select(
                &crate::core::bridges::SelectionRequest {
                    conference_bridge: None,
                    conference_version: self.bridge_version.as_deref(),
                    participant_region: region.as_deref(),
                },
                ctx.now,
            );
            let Some(jid) = selected else {
                warn!(room = %self.room, %nick, "no bridge available");
                if let Some(p) = self.participants.get_mut(nick) {
                    p.stage = Stage::WaitingBridge;
                }
                self.retry_deadline = Some(ctx.now + RETRY_INTERVAL);
                return;
            };
            let b = ctx.bridges.get(&jid);
            let region = b.and_then(|b| b.region.clone());
            let version = b.and_then(|b| b.full_version());
            info!(room = %self.room, bridge = %jid, "conference uses bridge");
            self.bridge = Some(BridgeSession {
                bridge: jid,
                id: ctx.io.rng.uuid(),
                region,
                version,
                created: false,
                feedback: ConferenceSourceMap::new(),
                endpoints: BTreeSet::new(),
            });
        }
        let force_mute = self.wanted_force_mute(nick);
        let Some(bs) = self.bridge.as_mut() else {
            return;
        };
        if !ctx.bridges.is_operational(&bs.bridge, ctx.now) {
            warn!(room = %self.room, bridge = %bs.bridge, %nick, "the conference's bridge is not operational");
            if let Some(p) = self.participants.get_mut(nick) {
                p.stage = Stage::WaitingBridge;
            }
            self.retry_deadline = Some(ctx.now + RETRY_INTERVAL);
            return;
        }
        self.bridge_version = bs.version.clone();

        let options = OfferOptions::for_features(&features);
        let offer = Offer::new(&ctx.cfg.codecs, &options);
        let meeting_id = self.meeting_id.clone().unwrap_or_default();
        let room = self.room.to_string();
        let create = (!bs.created).then_some(room.as_str());
        let own_sources = self.sources.get(nick);
        let c = &ctx.cfg.conference;
        let rewriting = c.use_ssrc_rewriting && features.ssrc_rewriting;
        let rtp_mid_demux = rewriting
            && c.use_rtp_mid_demux
            && features.rtp_mid_demux
            && ctx.cfg.codecs.extensions.mid.enabled;
        let payload = colibri::allocate(
            &meeting_id,
            create,
            &EndpointSpec {
                id: nick,
                stats_id: stats_id.as_deref(),
                audio: offer.audio.as_ref(),
                video: offer.video.as_ref(),
                sctp: offer.sctp,
                ssrc_rewriting: rewriting,
                rtp_mid_demux,
                sources: own_sources,
                force_mute,
            },
        );
        bs.created = true;
        bs.endpoints.insert(nick.to_owned());
        let bridge = bs.bridge.clone();
        let bridge_session = bs.id.clone();
        ctx.bridges.endpoint_added(&bridge, ctx.now);
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        p.force_mute = force_mute;
        p.stage = Stage::Allocating { offer, features };
        let epoch = p.epoch;
        debug!(room = %self.room, %nick, %bridge, "allocating");
        self.request(
            ctx,
            ctx.cfg.brewery_link,
            bridge,
            IqKind::Set,
            payload,
            RoomRequest::Allocate {
                nick: nick.to_owned(),
                epoch,
                bridge_session,
            },
        );
    }

    /// Sends the session-initiate once the bridge allocated the endpoint.
    pub(super) fn initiate(
        &mut self,
        ctx: &mut Ctx<'_>,
        nick: &str,
        allocation: colibri::Allocation,
        offer: Offer,
        features: Features,
    ) {
        let Some(bs) = self.bridge.as_mut() else {
            return;
        };
        if !allocation.feedback_sources.is_empty() {
            bs.feedback = allocation.feedback_sources.clone();
        }
        let mut transport = allocation.transport.clone();
        transport.rtcp_mux = true;
        let sctp_port = allocation.sctp_port.filter(|_| offer.sctp);
        if sctp_port.is_some() {
            // With a web-socket URL in the offer the client would use colibri-ws instead of SCTP.
            transport.web_sockets.clear();
        }
        let mut contents = Vec::new();
        if let Some(rtp) = &offer.audio {
            let mut d = RtpDescription::new(MediaType::Audio);
            d.maxptime = Some(60);
            d.rtp = rtp.clone();
            d.rtcp_mux = true;
            contents.push(Content::offer("audio", Some(d), transport.clone()));
        }
        if let Some(rtp) = &offer.video {
            let mut d = RtpDescription::new(MediaType::Video);
            d.rtp = rtp.clone();
            d.rtcp_mux = true;
            contents.push(Content::offer("video", Some(d), transport.clone()));
        }
        if let Some(port) = sctp_port {
            let mut d = RtpDescription::new(MediaType::Application);
            d.rtcp_mux = true;
            let mut t = transport.clone();
            t.sctpmap = Some(SctpMap {
                number: port,
                ..SctpMap::webrtc_datachannel()
            });
            contents.push(Content::offer("data", Some(d), t));
        }
        let sid = ctx.io.rng.hex(13);
        let mut jingle = Jingle::new(Action::SessionInitiate, &sid);
        jingle.initiator = Some(ctx.cfg.focus_full_jid.clone());
        jingle.groups = vec![Group::bundle(contents.iter().map(|c| c.name.clone()))];
        jingle.contents = contents;
        jingle.bridge_session = Some(BridgeSessionEl::new(&bs.id, bs.region.as_deref()));
        let bridge_session = bs.id.clone();
        let rewriting = ctx.cfg.conference.use_ssrc_rewriting && features.ssrc_rewriting;
        let mut remote = self.remote_sources(nick, rewriting);
        let announced = remote.clone();
        if ctx.cfg.conference.strip_simulcast {
            remote = remote.stripped_simulcast();
        }
        let json = features.json_sources && ctx.cfg.conference.use_json_encoded_sources;
        jingle.set_sources(
            &remote,
            if json {
                SourceEncoding::Json
            } else {
                SourceEncoding::Xml
            },
        );
        let order = self.members.get(nick).map_or(0, |m| m.order);
        let Some(p) = self.participants.get_mut(nick) else {
            return;
        };
        let start_muted = self.start_muted.for_member(order, !p.invited_before);
        if start_muted.audio || start_muted.video {
            jingle.start_muted = Some(start_muted);
        }
        p.invited_before = true;
        p.stage = Stage::Invited;
        p.session = Some(Session {
            sid: sid.clone(),
            active: false,
            json,
            bridge_session,
            queued: Vec::new(),
            initial: announced,
            resync: false,
            rewriting,
            sctp: sctp_port.is_some(),
            ice_generation: None,
        });
        let epoch = p.epoch;
        info!(room = %self.room, %nick, %sid, "sending session-initiate");
        self.send_jingle(
            ctx,
            nick,
            &jingle,
            RoomRequest::SessionInitiate {
                nick: nick.to_owned(),
                epoch,
            },
        );
    }
}
