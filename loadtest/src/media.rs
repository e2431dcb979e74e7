//! One participant's media plane, sans-IO: the transport toward the bridge (the bridge's own
//! `EndpointTransport` in the client role), the synthetic sender, the receiver statistics and
//! feedback, and the bridge channel (what we send when it opens, what the bridge tells us: sender
//! constraints, dominant speaker, forwarded sources, and with SSRC rewriting which source each
//! SSRC carries), in the 2021 client's dialect or the current one's ([`Client`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use bridge::sfu::rtcp::{Compound, Packet};
use bridge::transport::{DropCounters, DropReason, EndpointTransport, TransportEvent};
use bytes::Bytes;
use serde::Serialize;
use signaling::bridge_channel::BridgeChannelMessage;

use crate::dialect::Client;
use crate::receiver::{Kind, MediaReceiver, RemoteSource};
use crate::sender::{MediaSender, PacketSink};
use crate::session::{receiver_constraints, receiver_source_constraints, source_video_type};

/// When each step of the connection completed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Milestones {
    pub ice_connected: Option<Instant>,
    pub dtls_connected: Option<Instant>,
    pub channel_open: Option<Instant>,
    pub first_media: Option<Instant>,
}

/// What arrived on the bridge channel.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChannelCounters {
    pub by_class: BTreeMap<String, u64>,
    pub malformed: u64,
    pub dominant_speaker_changes: u64,
    pub last_dominant_speaker: Option<String>,
    pub forwarded_sources: Option<Vec<String>>,
    /// The last maxHeight the bridge asked us to send.
    pub sender_max_height: Option<i32>,
    pub estimated_downlink_bps: Option<u64>,
    pub sent: u64,
    /// SSRC rewriting: `VideoSourcesMap` / `AudioSourcesMap` entries applied.
    pub mapped_video: u64,
    pub mapped_audio: u64,
}

/// RTCP the bridge sent us.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RtcpCounters {
    pub packets: u64,
    pub malformed: u64,
    pub pli: u64,
    pub fir: u64,
    pub nack_packets: u64,
    pub nacked_sequences: u64,
    pub transport_cc: u64,
    pub remb: u64,
    pub sender_reports: u64,
    /// Highest fraction lost (0..=255) the bridge reported for our streams: uplink loss.
    pub max_uplink_fraction_lost: u8,
}

/// Datagrams the transport refused, by reason (a healthy run has zeros except `before_keys`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TransportDrops {
    pub unvalidated_address: u64,
    pub dtls: u64,
    /// SRTP before the keys were ready.
    pub before_keys: u64,
    pub srtp_auth: u64,
    pub malformed: u64,
    pub unknown: u64,
    pub sctp: u64,
    pub stun: u64,
}

impl TransportDrops {
    /// The report's grouping of the transport's drop counters.
    pub fn from_counters(c: &DropCounters) -> Self {
        TransportDrops {
            unvalidated_address: c.get(DropReason::UnvalidatedAddress),
            dtls: c.get(DropReason::DtlsError),
            before_keys: c.get(DropReason::SrtpNotReady),
            srtp_auth: c.get(DropReason::SrtpAuth),
            malformed: c.get(DropReason::RtpMalformed),
            unknown: c.get(DropReason::UnknownProtocol),
            sctp: c.get(DropReason::SctpError),
            stun: [
                DropReason::StunMalformed,
                DropReason::StunUnknownUfrag,
                DropReason::StunBadIntegrity,
                DropReason::StunBadFingerprint,
                DropReason::StunUnexpected,
            ]
            .into_iter()
            .map(|r| c.get(r))
            .sum(),
        }
    }
}

/// Receive-side choices: stage view (one participant on stage at `stage_height`, the others as
/// thumbnails) or tile view (everybody a thumbnail at `thumbnail_height`).
#[derive(Debug, Clone, Copy)]
pub struct ReceiveView {
    pub stage_height: i32,
    pub thumbnail_height: i32,
    /// Nobody on stage.
    pub tile_view: bool,
}

/// The media plane of one participant.
pub struct MediaEndpoint {
    transport: EndpointTransport,
    sender: MediaSender,
    receiver: MediaReceiver,
    video_source: String,
    view: ReceiveView,
    /// The endpoint on stage.
    on_stage: Option<String>,
    client: Client,
    pub milestones: Milestones,
    pub channel: ChannelCounters,
    pub rtcp: RtcpCounters,
    pub send_errors: u64,
    pub failure: Option<String>,
}

/// Encrypts the sender's packets into the transport's queue.
struct Sink<'a> {
    transport: &'a mut EndpointTransport,
    errors: &'a mut u64,
}

impl PacketSink for Sink<'_> {
    fn rtp(&mut self, packet: &[u8]) {
        if self.transport.send_rtp(packet).is_err() {
            *self.errors += 1;
        }
    }
    fn rtcp(&mut self, packet: &[u8]) {
        if self.transport.send_rtcp(packet).is_err() {
            *self.errors += 1;
        }
    }
}

impl MediaEndpoint {
    /// `transport` is a client-role transport that already has the bridge's remote transport.
    pub fn new(
        transport: EndpointTransport,
        sender: MediaSender,
        receiver: MediaReceiver,
        endpoint: &str,
        view: ReceiveView,
    ) -> Self {
        MediaEndpoint {
            transport,
            sender,
            receiver,
            video_source: format!("{endpoint}-v0"),
            view,
            on_stage: None,
            client: Client::Y2021,
            milestones: Milestones::default(),
            channel: ChannelCounters::default(),
            rtcp: RtcpCounters::default(),
            send_errors: 0,
            failure: None,
        }
    }

    /// Speaks `client`'s dialect on the bridge channel.
    pub fn with_client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    pub fn transport(&self) -> &EndpointTransport {
        &self.transport
    }

    /// The endpoint this participant has on stage.
    pub fn on_stage(&self) -> Option<&str> {
        self.on_stage.as_deref()
    }

    pub fn transport_drops(&self) -> TransportDrops {
        TransportDrops::from_counters(self.transport.counters())
    }

    pub fn sender(&self) -> &MediaSender {
        &self.sender
    }

    pub fn receiver(&self) -> &MediaReceiver {
        &self.receiver
    }

    /// Remote sources signalled (session-initiate / source-add).
    pub fn add_sources(&mut self, now: Instant, sources: Vec<(u32, RemoteSource)>) {
        for (ssrc, s) in sources {
            self.receiver.add_source(ssrc, s);
        }
        self.update_stage(now);
    }

    pub fn remove_sources(&mut self, now: Instant, ssrcs: impl IntoIterator<Item = u32>) {
        for s in ssrcs {
            self.receiver.remove_source(s);
        }
        self.update_stage(now);
    }

    /// A member left: forget its sources (the focus sends no source-remove for that).
    pub fn remove_owner(&mut self, now: Instant, owner: &str) {
        self.receiver.remove_owner(owner);
        if self.on_stage.as_deref() == Some(owner) {
            self.on_stage = None;
        }
        self.update_stage(now);
    }

    /// Stage view: the lowest endpoint id among the others who send video (so a conference tends
    /// to watch one speaker, as after a dominant-speaker switch).
    fn update_stage(&mut self, now: Instant) {
        if self.on_stage.is_some() || self.view.tile_view {
            return;
        }
        let mut owners: Vec<&str> = self.video_owners().collect();
        owners.sort_unstable();
        if let Some(first) = owners.first() {
            self.on_stage = Some((*first).to_owned());
            if self.transport.has_data_channel() {
                self.send_constraints(now);
            }
        }
    }

    fn video_owners(&self) -> impl Iterator<Item = &str> + '_ {
        self.receiver
            .sources()
            .filter(|s| s.kind == Kind::Video)
            .map(|s| s.owner.as_str())
    }

    /// The video source name of `owner` (what the current client puts on stage): the name it
    /// signalled, else the `<endpoint>-v0` convention.
    fn video_source_of(&self, owner: &str) -> String {
        self.receiver
            .sources()
            .find(|s| s.kind == Kind::Video && s.owner == owner)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| format!("{owner}-v0"))
    }

    fn send_constraints(&mut self, now: Instant) {
        let msg = if self.client.is_current() {
            let source = self.on_stage.as_deref().map(|o| self.video_source_of(o));
            receiver_source_constraints(
                source.as_deref(),
                self.view.stage_height,
                self.view.thumbnail_height,
            )
        } else {
            receiver_constraints(
                self.on_stage.as_deref(),
                self.view.stage_height,
                self.view.thumbnail_height,
            )
        };
        self.send_channel(now, &msg);
    }

    fn send_channel(&mut self, now: Instant, msg: &str) {
        match self.transport.send_data_message(now, msg) {
            Ok(()) => self.channel.sent += 1,
            Err(_) => self.send_errors += 1,
        }
    }

    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.transport.handle_datagram(now, from, data);
        self.drain_events(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.transport.handle_timeout(now);
        if self.transport.srtp_profile().is_some() {
            if self.sender.poll_timeout().is_some_and(|t| t <= now) {
                let mut sink = Sink {
                    transport: &mut self.transport,
                    errors: &mut self.send_errors,
                };
                self.sender.handle_timeout(now, &mut sink);
            }
            if self.receiver.poll_timeout().is_some_and(|t| t <= now) {
                let transport = &mut self.transport;
                let errors = &mut self.send_errors;
                self.receiver.handle_timeout(now, |p| {
                    if transport.send_rtcp(p).is_err() {
                        *errors += 1;
                    }
                });
            }
        }
        self.drain_events(now);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = if self.transport.srtp_profile().is_some() {
            [self.sender.poll_timeout(), self.receiver.poll_timeout()]
        } else {
            [None, None]
        };
        std::iter::once(self.transport.poll_timeout())
            .chain(media)
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Bytes)> {
        self.transport.poll_transmit().map(|t| (t.to, t.data))
    }

    /// close_notify (leaving).
    pub fn close(&mut self, now: Instant) {
        self.transport.close(now);
    }

    fn drain_events(&mut self, now: Instant) {
        while let Some(e) = self.transport.poll_event() {
            match e {
                TransportEvent::Connected(_) => {
                    self.milestones.ice_connected.get_or_insert(now);
                }
                TransportEvent::SelectedChanged(_)
                | TransportEvent::Disconnected
                | TransportEvent::IceRestarted { .. }
                | TransportEvent::IceRestartFailed { .. } => {}
                TransportEvent::DtlsConnected(_) => {
                    self.milestones.dtls_connected.get_or_insert(now);
                }
                TransportEvent::DataChannelOpen { .. } => {
                    self.milestones.channel_open.get_or_insert(now);
                    self.send_constraints(now);
                    if self.client.is_current() && self.sender.enabled_layers() > 0 {
                        let msg = source_video_type(&self.video_source);
                        self.send_channel(now, &msg);
                    }
                }
                TransportEvent::DataChannelMessage(text) => self.on_channel_message(now, &text),
                // The bridge closed DTLS or the SCTP association was lost: a participant without
                // its bridge channel is broken.
                TransportEvent::DataChannelClosed => {
                    self.failure
                        .get_or_insert_with(|| "the bridge channel closed".into());
                }
                TransportEvent::Rtp(p) => {
                    self.receiver.on_rtp(now, &p);
                    if self.milestones.first_media.is_none() {
                        self.milestones.first_media = self.receiver.first_media_at;
                    }
                }
                TransportEvent::Rtcp(p) => self.on_rtcp(now, &p),
                TransportEvent::Failed(r) => {
                    self.failure.get_or_insert(r);
                }
            }
        }
    }

    fn on_channel_message(&mut self, now: Instant, text: &str) {
        let Ok(m) = BridgeChannelMessage::parse(text) else {
            self.channel.malformed += 1;
            return;
        };
        *self
            .channel
            .by_class
            .entry(m.class().to_owned())
            .or_default() += 1;
        match m {
            BridgeChannelMessage::SenderSourceConstraints(c)
                if c.source_name == self.video_source =>
            {
                self.channel.sender_max_height = Some(c.max_height);
                self.sender.set_max_height(c.max_height);
            }
            // The current client ignores the endpoint-based form (`BridgeChannel.ts`).
            BridgeChannelMessage::SenderVideoConstraints(c) if !self.client.is_current() => {
                let h = c.video_constraints.ideal_height;
                self.channel.sender_max_height = Some(h);
                self.sender.set_max_height(h);
            }
            // SSRC rewriting: which source each of the bridge's SSRCs carries from now on
            // (`JingleSessionPC.processSourceMap`); an entry without an owner frees the SSRC.
            BridgeChannelMessage::VideoSourcesMap(m) if self.client.rewrites_ssrcs() => {
                for e in m.mapped_sources {
                    self.channel.mapped_video += 1;
                    self.map_ssrc(e.ssrc, e.owner, Kind::Video, e.source, 90_000);
                }
                self.update_stage(now);
            }
            BridgeChannelMessage::AudioSourcesMap(m) if self.client.rewrites_ssrcs() => {
                for e in m.mapped_sources {
                    self.channel.mapped_audio += 1;
                    self.map_ssrc(e.ssrc, e.owner, Kind::Audio, e.source, 48_000);
                }
            }
            BridgeChannelMessage::DominantSpeakerEndpointChangeEvent(d) => {
                self.channel.dominant_speaker_changes += 1;
                self.channel.last_dominant_speaker = Some(d.dominant_speaker_endpoint);
            }
            BridgeChannelMessage::ForwardedSources(f) => {
                self.channel.forwarded_sources = Some(f.forwarded_sources);
            }
            BridgeChannelMessage::ConnectionStats(c) => {
                self.channel.estimated_downlink_bps = Some(c.estimated_downlink_bandwidth);
            }
            _ => {}
        }
    }

    fn map_ssrc(
        &mut self,
        ssrc: u32,
        owner: Option<String>,
        kind: Kind,
        name: String,
        clock_rate: u32,
    ) {
        match owner {
            Some(owner) if owner != self.own_endpoint() => self.receiver.map_source(
                ssrc,
                RemoteSource {
                    owner,
                    kind,
                    name: Some(name),
                    clock_rate,
                },
            ),
            _ => self.receiver.remove_source(ssrc),
        }
    }

    fn own_endpoint(&self) -> &str {
        self.video_source
            .strip_suffix("-v0")
            .unwrap_or(&self.video_source)
    }

    fn on_rtcp(&mut self, now: Instant, p: &[u8]) {
        self.rtcp.packets += 1;
        let Ok(c) = Compound::parse(p) else {
            self.rtcp.malformed += 1;
            return;
        };
        let own: Vec<u32> = self
            .sender
            .audio_ssrc()
            .into_iter()
            .chain(self.sender.video_ssrcs())
            .collect();
        for pkt in c.packets() {
            match pkt {
                Packet::Pli(pli) => {
                    self.rtcp.pli += 1;
                    self.sender.request_keyframe(now, pli.media_ssrc);
                }
                Packet::Fir(fir) => {
                    self.rtcp.fir += 1;
                    for (ssrc, _) in fir.entries() {
                        self.sender.request_keyframe(now, ssrc);
                    }
                }
                Packet::Nack(n) => {
                    self.rtcp.nack_packets += 1;
                    self.rtcp.nacked_sequences += n.lost().count() as u64;
                }
                Packet::TransportCc(_) => self.rtcp.transport_cc += 1,
                Packet::Remb(_) => self.rtcp.remb += 1,
                Packet::SenderReport(sr) => {
                    self.rtcp.sender_reports += 1;
                    self.receiver
                        .on_sender_report(now, sr.ssrc(), sr.ntp_middle());
                    self.uplink_loss(sr.report_blocks(), &own);
                }
                Packet::ReceiverReport(rr) => self.uplink_loss(rr.report_blocks(), &own),
                _ => {}
            }
        }
    }

    fn uplink_loss(
        &mut self,
        blocks: impl Iterator<Item = bridge::sfu::rtcp::ReportBlock>,
        own: &[u32],
    ) {
        for b in blocks.filter(|b| own.contains(&b.ssrc)) {
            self.rtcp.max_uplink_fraction_lost =
                self.rtcp.max_uplink_fraction_lost.max(b.fraction_lost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{RtpHeader, write_header};
    use crate::sender::Speaking;
    use bridge::transport::{DtlsIdentity, IceCredentials, TransportConfig};
    use std::sync::Arc;

    fn endpoint(now: Instant, client: Client) -> MediaEndpoint {
        let identity = DtlsIdentity::generate_named("loadtest").unwrap();
        let transport = EndpointTransport::new(
            IceCredentials::random(),
            &identity,
            TransportConfig::client(),
            Arc::new(DropCounters::new()),
        )
        .unwrap();
        let sender = MediaSender::new(
            now,
            None,
            None,
            Speaking {
                index: 0,
                count: 1,
                slot: std::time::Duration::from_secs(1),
            },
            "c",
            1,
        );
        MediaEndpoint::new(
            transport,
            sender,
            MediaReceiver::new(now, 1, None),
            "cccc0003",
            ReceiveView {
                stage_height: 720,
                thumbnail_height: 180,
                tile_view: false,
            },
        )
        .with_client(client)
    }

    fn audio(ssrc: u32, seq: u16) -> Vec<u8> {
        let mut p = Vec::new();
        write_header(
            &mut p,
            &RtpHeader {
                payload_type: 111,
                marker: false,
                sequence: seq,
                timestamp: u32::from(seq) * 960,
                ssrc,
            },
            &[],
        );
        p.extend_from_slice(&[1; 40]);
        p
    }

    const VIDEO_MAP: &str = r#"{"colibriClass":"VideoSourcesMap","mappedSources":[
        {"source":"aaaa0001-v0","owner":"aaaa0001","ssrc":5001,"rtx":5002,"videoType":"CAMERA"},
        {"source":"cccc0003-v0","owner":"cccc0003","ssrc":5003,"rtx":5004,"videoType":"CAMERA"}]}"#;
    const AUDIO_MAP: &str = r#"{"colibriClass":"AudioSourcesMap","mappedSources":[
        {"source":"aaaa0001-a0","owner":"aaaa0001","ssrc":6001},
        {"source":"bbbb0002-a0","owner":"bbbb0002","ssrc":6002}]}"#;

    #[test]
    fn ssrc_rewriting_maps_the_bridges_ssrcs_to_sources() {
        let now = Instant::now();
        let client = Client {
            ssrc_rewriting: true,
            ..Client::CURRENT
        };
        let mut m = endpoint(now, client);
        m.on_channel_message(now, VIDEO_MAP);
        m.on_channel_message(now, AUDIO_MAP);
        assert_eq!((m.channel.mapped_video, m.channel.mapped_audio), (2, 2));
        let s = m.receiver.source(5001).unwrap();
        assert_eq!((s.owner.as_str(), s.kind), ("aaaa0001", Kind::Video));
        assert_eq!(s.name.as_deref(), Some("aaaa0001-v0"));
        assert!(
            m.receiver.source(5003).is_none(),
            "our own source is not received"
        );
        assert_eq!(m.receiver.source(6002).unwrap().kind, Kind::Audio);
        // The stage follows the mapped video source.
        assert_eq!(m.on_stage(), Some("aaaa0001"));
        for seq in 0..5 {
            m.receiver.on_rtp(now, &audio(6002, seq));
        }
        let owners: Vec<&str> = m.receiver.owners_receiving(Kind::Audio).collect();
        assert_eq!(owners, vec!["bbbb0002"]);
        // An entry without an owner frees the slot.
        m.on_channel_message(
            now,
            r#"{"colibriClass":"AudioSourcesMap","mappedSources":[{"source":"","owner":null,"ssrc":6002}]}"#,
        );
        assert!(m.receiver.source(6002).is_none());
    }

    #[test]
    fn without_ssrc_rewriting_maps_are_not_ours_to_apply() {
        let now = Instant::now();
        for client in [Client::CURRENT, Client::Y2021] {
            let mut m = endpoint(now, client);
            m.on_channel_message(now, VIDEO_MAP);
            assert!(m.receiver.source(5001).is_none());
            assert_eq!(m.channel.by_class.get("VideoSourcesMap"), Some(&1));
        }
    }

    #[test]
    fn sender_constraints_by_dialect() {
        let now = Instant::now();
        let svc =
            r#"{"colibriClass":"SenderVideoConstraints","videoConstraints":{"idealHeight":180}}"#;
        let ssc = r#"{"colibriClass":"SenderSourceConstraints","sourceName":"cccc0003-v0","maxHeight":360}"#;
        let other = r#"{"colibriClass":"SenderSourceConstraints","sourceName":"dddd0004-v0","maxHeight":0}"#;
        let mut current = endpoint(now, Client::CURRENT);
        current.on_channel_message(now, svc);
        assert_eq!(
            current.channel.sender_max_height, None,
            "the endpoint form is ignored"
        );
        current.on_channel_message(now, ssc);
        current.on_channel_message(now, other);
        assert_eq!(current.channel.sender_max_height, Some(360));
        let mut old = endpoint(now, Client::Y2021);
        old.on_channel_message(now, svc);
        assert_eq!(old.channel.sender_max_height, Some(180));
    }
}
