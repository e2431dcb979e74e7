//! Scenario tests of the core: virtual time, no sockets. Each test builds a conference through the
//! same command API COLIBRI2 uses, feeds packets/messages as the transport would, and inspects the
//! outputs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use signaling::rtp_description::{PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup};

use super::rtcp::{self, Compound, Packet};
use super::rtp::{self, ExtForm, RtpPacket};
use super::*;

// ------------------------------------------------------------------------------------ fixtures

const OPUS: u8 = 111;
const VP8: u8 = 100;
const RTX: u8 = 96;
const AUDIO_LEVEL_ID: u8 = 1;
const TCC_ID: u8 = 5;

fn audio_params(audio_level_id: u8) -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(OPUS, "opus", 48000, Some(2)).with_rtcp_fb("transport-cc", None),
        ],
        header_extensions: vec![
            RtpHdrExt::new(audio_level_id, hdrext::AUDIO_LEVEL),
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
        ],
        extmap_allow_mixed: false,
    }
}

fn video_params(rtx: bool, pli: bool) -> RtpParameters {
    let mut vp8 = PayloadType::new(VP8, "VP8", 90000, None)
        .with_rtcp_fb("nack", None)
        .with_rtcp_fb("ccm", Some("fir"))
        .with_rtcp_fb("transport-cc", None);
    if pli {
        vp8 = vp8.with_rtcp_fb("nack", Some("pli"));
    }
    let mut pts = vec![vp8];
    if rtx {
        pts.push(PayloadType::new(RTX, "rtx", 90000, None).with_parameter("apt", "100"));
    }
    RtpParameters {
        payload_types: pts,
        header_extensions: vec![RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC)],
        extmap_allow_mixed: false,
    }
}

/// SSRC plan of a test endpoint with base `b`: audio b+1; video simulcast b+10, b+11, b+12 with RTX
/// b+20, b+21, b+22.
struct Ssrcs {
    audio: u32,
    sim: [u32; 3],
    rtx: [u32; 3],
}

fn ssrcs(b: u32) -> Ssrcs {
    Ssrcs {
        audio: b + 1,
        sim: [b + 10, b + 11, b + 12],
        rtx: [b + 20, b + 21, b + 22],
    }
}

fn sources(id: &str, b: u32) -> Vec<MediaSourceDesc> {
    let s = ssrcs(b);
    let mut video: Vec<Source> = s
        .sim
        .iter()
        .chain(&s.rtx)
        .map(|x| Source::named(*x, &format!("{id}-v0")))
        .collect();
    video[0].owner = Some(id.into());
    vec![
        MediaSourceDesc {
            kind: MediaKind::Audio,
            name: format!("{id}-a0"),
            sources: vec![Source::named(s.audio, &format!("{id}-a0"))],
            groups: vec![],
        },
        MediaSourceDesc {
            kind: MediaKind::Video,
            name: format!("{id}-v0"),
            sources: video,
            groups: vec![
                SsrcGroup::new(Semantics::Sim, s.sim.to_vec()),
                SsrcGroup::new(Semantics::Fid, vec![s.sim[0], s.rtx[0]]),
                SsrcGroup::new(Semantics::Fid, vec![s.sim[1], s.rtx[1]]),
                SsrcGroup::new(Semantics::Fid, vec![s.sim[2], s.rtx[2]]),
            ],
        },
    ]
}

/// A one-packet VP8 keyframe (PictureID and TL0PICIDX from `seq`, marker set) whose VP8 data ends
/// with `tail`.
fn vp8(seq: u16, ts: u32, ssrc: u32, exts: &[(u8, &[u8])], tail: &[u8]) -> Vec<u8> {
    vp8_frame(seq, ts, ssrc, exts, tail, true)
}

/// A one-packet VP8 frame, key or delta (see [`vp8`]).
fn vp8_frame(
    seq: u16,
    ts: u32,
    ssrc: u32,
    exts: &[(u8, &[u8])],
    tail: &[u8],
    keyframe: bool,
) -> Vec<u8> {
    let mut payload = Vec::new();
    super::vp8::Descriptor {
        start_of_partition: true,
        partition_id: 0,
        non_reference: false,
        picture_id: Some((seq & 0x7fff, true)),
        tl0picidx: Some(seq as u8),
        tid: Some((0, false)),
        key_idx: None,
    }
    .write(&mut payload);
    super::vp8::write_frame_header(&mut payload, keyframe, 320, 180);
    payload.extend_from_slice(tail);
    let mut v = packet(VP8, seq, ts, ssrc, exts, &payload);
    v[1] |= 0x80;
    v
}

/// An RTP packet with one-byte extensions.
fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, exts: &[(u8, &[u8])], payload: &[u8]) -> Vec<u8> {
    super::rtp::tests::build(pt, seq, ts, ssrc, exts, payload)
}

struct H {
    sfu: Sfu,
    now: Instant,
    conf: ConferenceHandle,
    out: Collect,
}

impl H {
    fn new() -> Self {
        Self::with_config(SfuConfig::default())
    }

    fn with_config(cfg: SfuConfig) -> Self {
        let now = Instant::now();
        let mut sfu = Sfu::new(cfg);
        let conf = sfu
            .create_conference(now, "0b7e0000-meeting", Some("room@muc.example"))
            .unwrap();
        H {
            sfu,
            now,
            conf,
            out: Collect::default(),
        }
    }

    fn params(&self, id: &str, b: u32) -> EndpointParams {
        EndpointParams {
            id: id.into(),
            stats_id: Some(format!("{id}-stats")),
            audio: audio_params(AUDIO_LEVEL_ID),
            video: video_params(true, true),
            sources: sources(id, b),
            ..Default::default()
        }
    }

    /// Creates, connects and opens the channel of an endpoint.
    fn join(&mut self, id: &str, b: u32) -> EndpointHandle {
        let p = self.params(id, b);
        self.join_with(p)
    }

    fn join_with(&mut self, p: EndpointParams) -> EndpointHandle {
        let h = self
            .sfu
            .create_endpoint(self.now, self.conf, p, &mut self.out)
            .unwrap();
        self.sfu
            .handle_transport_event(self.now, h, TransportEvent::Connected, &mut self.out);
        self.sfu.handle_transport_event(
            self.now,
            h,
            TransportEvent::DataChannelOpen,
            &mut self.out,
        );
        h
    }

    /// COLIBRI2 replaces endpoint `e`'s sources; returns the outputs.
    fn set_sources(&mut self, e: EndpointHandle, srcs: Vec<MediaSourceDesc>) -> Vec<OwnedOutput> {
        self.take();
        let u = EndpointUpdate {
            sources: Some(srcs),
            ..Default::default()
        };
        self.sfu
            .update_endpoint(self.now, e, u, &mut self.out)
            .unwrap();
        self.take()
    }

    fn take(&mut self) -> Vec<OwnedOutput> {
        std::mem::take(&mut self.out.0)
    }

    fn rtp(&mut self, from: EndpointHandle, pkt: &[u8]) -> Vec<OwnedOutput> {
        self.take();
        self.sfu.handle_rtp(self.now, from, pkt, &mut self.out);
        self.take()
    }

    fn rtcp(&mut self, from: EndpointHandle, pkt: &[u8]) -> Vec<OwnedOutput> {
        self.take();
        self.sfu.handle_rtcp(self.now, from, pkt, &mut self.out);
        self.take()
    }

    fn msg(&mut self, from: EndpointHandle, v: Value) -> Vec<OwnedOutput> {
        self.take();
        self.sfu
            .handle_channel_message(self.now, from, &v.to_string(), &mut self.out);
        self.take()
    }

    /// Advances virtual time in steps of at most 10 ms, running due timers.
    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now = (self.now + Duration::from_millis(10)).min(end);
            if self.sfu.poll_timeout().is_some_and(|t| t <= self.now) {
                self.sfu.handle_timeout(self.now, &mut self.out);
            }
        }
    }

    fn drop_count(&self, r: DropReason) -> u64 {
        self.sfu.counters().dropped(r)
    }
}

fn rtp_to(out: &[OwnedOutput], to: EndpointHandle) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            OwnedOutput::Rtp { to: t, packet } if *t == to => Some(packet.clone()),
            _ => None,
        })
        .collect()
}

fn rtcp_to(out: &[OwnedOutput], to: EndpointHandle) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|o| match o {
            OwnedOutput::Rtcp { to: t, packet } if *t == to => Some(packet.clone()),
            _ => None,
        })
        .collect()
}

fn texts_to(out: &[OwnedOutput], to: EndpointHandle) -> Vec<Value> {
    out.iter()
        .filter_map(|o| match o {
            OwnedOutput::Text { to: t, text } if *t == to => serde_json::from_str(text).ok(),
            _ => None,
        })
        .collect()
}

fn of_class(v: &[Value], class: &str) -> Vec<Value> {
    v.iter()
        .filter(|m| m["colibriClass"] == class)
        .cloned()
        .collect()
}

fn events(out: &[OwnedOutput]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            OwnedOutput::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn ssrcs_of(pkts: &[Vec<u8>]) -> Vec<u32> {
    let mut v: Vec<u32> = pkts
        .iter()
        .map(|p| RtpPacket::parse(p).unwrap().ssrc())
        .collect();
    v.sort_unstable();
    v
}

fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

fn strings(v: &Value) -> Vec<String> {
    let mut s: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect();
    s.sort();
    s
}

/// Three endpoints A (base 1000), B (2000), C (3000).
fn three() -> (H, [EndpointHandle; 3]) {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let b = h.join("bbbb", 2000);
    let c = h.join("cccc", 3000);
    h.take();
    (h, [a, b, c])
}

/// Every endpoint sends one audio packet and one packet on each simulcast encoding.
fn send_all(h: &mut H, eps: &[EndpointHandle], bases: &[u32], seq: u16) -> Vec<OwnedOutput> {
    let mut all = Vec::new();
    for (e, b) in eps.iter().zip(bases) {
        let s = ssrcs(*b);
        all.extend(h.rtp(
            *e,
            &packet(
                OPUS,
                seq,
                960 * u32::from(seq),
                s.audio,
                &[(AUDIO_LEVEL_ID, &[0x80 | 40]), (TCC_ID, &[0, 1])],
                b"opus",
            ),
        ));
        for ssrc in s.sim {
            all.extend(h.rtp(
                *e,
                &vp8(
                    seq,
                    3000 * u32::from(seq),
                    ssrc,
                    &[(TCC_ID, &[0, 1])],
                    b"vp8-frame",
                ),
            ));
        }
    }
    all
}

// ------------------------------------------------------------------------------------ forwarding

#[test]
fn three_endpoints_receive_each_others_audio_and_primary_video_only() {
    let (mut h, [a, b, c]) = three();
    let out = send_all(&mut h, &[a, b, c], &[1000, 2000, 3000], 7);
    let (sa, sb, sc) = (ssrcs(1000), ssrcs(2000), ssrcs(3000));
    assert_eq!(
        ssrcs_of(&rtp_to(&out, a)),
        sorted(vec![sb.audio, sb.sim[0], sc.audio, sc.sim[0]])
    );
    assert_eq!(
        ssrcs_of(&rtp_to(&out, b)),
        sorted(vec![sa.audio, sa.sim[0], sc.audio, sc.sim[0]])
    );
    assert_eq!(
        ssrcs_of(&rtp_to(&out, c)),
        sorted(vec![sa.audio, sa.sim[0], sb.audio, sb.sim[0]])
    );
    // Rewritten as the receiver expects: sequence number kept (no drops yet), the audio level
    // extension kept, the sender's transport-cc replaced by the bridge's own counter per receiver.
    let to_b = rtp_to(&out, b);
    let mut tcc = Vec::new();
    for p in &to_b {
        let q = RtpPacket::parse(p).unwrap();
        assert_eq!(q.sequence_number(), 7);
        tcc.push(q.transport_cc_seq(TCC_ID).unwrap());
        if q.ssrc() == sa.audio || q.ssrc() == sc.audio {
            assert_eq!(q.audio_level(AUDIO_LEVEL_ID), Some((true, 40)));
            assert_eq!(q.payload(), b"opus");
        } else {
            assert!(q.payload().ends_with(b"vp8-frame"));
            assert_eq!(q.extension(AUDIO_LEVEL_ID), None);
        }
    }
    assert!(
        tcc.windows(2).all(|w| w[1] == w[0].wrapping_add(1)),
        "{tcc:?}"
    );
    assert_eq!(h.sfu.counters().get(Stat::RtpSent), 12);
}

#[test]
fn payload_types_and_header_extension_ids_follow_the_receiver() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    // B negotiated the audio level under id 3 and no transport-cc for audio.
    let mut pb = h.params("bbbb", 2000);
    pb.audio = RtpParameters {
        payload_types: vec![PayloadType::new(OPUS, "opus", 48000, Some(2))],
        header_extensions: vec![RtpHdrExt::new(3, hdrext::AUDIO_LEVEL)],
        extmap_allow_mixed: false,
    };
    let b = h.join_with(pb);
    let sa = ssrcs(1000);
    let out = h.rtp(
        a,
        &packet(
            OPUS,
            1,
            960,
            sa.audio,
            &[(AUDIO_LEVEL_ID, &[0x85]), (TCC_ID, &[0, 9])],
            b"x",
        ),
    );
    let p = &rtp_to(&out, b)[0];
    let q = RtpPacket::parse(p).unwrap();
    assert_eq!(q.ext_form(), Some(ExtForm::OneByte));
    assert_eq!(q.extension(3), Some(&[0x85u8][..]));
    assert_eq!(q.extension(AUDIO_LEVEL_ID), None);
    assert_eq!(q.extension(TCC_ID), None);
    // A payload type B did not negotiate is not forwarded to B.
    let out = h.rtp(a, &packet(112, 2, 1920, sa.audio, &[], b"x"));
    assert!(rtp_to(&out, b).is_empty());
    assert_eq!(h.drop_count(DropReason::RtpPayloadTypeNotNegotiated), 1);
    // The next packet follows without a gap.
    let out = h.rtp(a, &packet(OPUS, 3, 2880, sa.audio, &[], b"x"));
    assert_eq!(
        RtpPacket::parse(&rtp_to(&out, b)[0])
            .unwrap()
            .sequence_number(),
        2
    );
}

#[test]
fn unknown_and_foreign_ssrcs_are_dropped_and_counted() {
    let (mut h, [a, b, _c]) = three();
    assert!(h.rtp(a, &vp8(1, 1, 0xdead, &[], b"x")).is_empty());
    assert_eq!(h.drop_count(DropReason::RtpUnknownSsrc), 1);
    // A sends with B's SSRC.
    assert!(
        h.rtp(a, &vp8(1, 1, ssrcs(2000).sim[0], &[], b"x"))
            .is_empty()
    );
    assert_eq!(h.drop_count(DropReason::RtpSsrcNotOwned), 1);
    let sim0 = ssrcs(1000).sim[0];
    let first = vp8(1, 1, sim0, &[], b"v");
    assert_eq!(rtp_to(&h.rtp(a, &first), b).len(), 1);
    // A sender's RTX is unwrapped into its media stream: a retransmission of a packet the bridge
    // already has is a duplicate; unusable RTX (no OSN) and padding-only probes are terminated.
    let mut rtx = Vec::new();
    rtp::write_rtx(
        &RtpPacket::parse(&first).unwrap(),
        ssrcs(1000).rtx[0],
        RTX,
        1,
        &mut rtx,
    );
    assert!(h.rtp(a, &rtx).is_empty());
    assert_eq!(h.drop_count(DropReason::RtpDuplicate), 1);
    assert!(
        h.rtp(a, &packet(RTX, 2, 1, ssrcs(1000).rtx[0], &[], b"x"))
            .is_empty()
    );
    assert_eq!(h.drop_count(DropReason::RtpSenderRepair), 1);
    let mut rtx_pad = packet(RTX, 3, 1, ssrcs(1000).rtx[0], &[], &[0, 0, 3]);
    rtx_pad[0] |= 0x20;
    assert!(h.rtp(a, &rtx_pad).is_empty());
    let mut pad = packet(VP8, 2, 1, sim0, &[], &[0, 0, 0, 4]);
    pad[0] |= 0x20;
    assert!(h.rtp(a, &pad).is_empty());
    assert_eq!(h.drop_count(DropReason::RtpPaddingOnly), 2);
    // The dropped probe leaves no hole in B's sequence numbers.
    let out = h.rtp(a, &vp8(3, 1, sim0, &[], b"v"));
    assert_eq!(
        RtpPacket::parse(&rtp_to(&out, b)[0])
            .unwrap()
            .sequence_number(),
        2
    );
}

#[test]
fn malformed_input_is_counted_and_never_panics() {
    let (mut h, [a, _b, _c]) = three();
    let before_sent = h.sfu.counters().get(Stat::RtpSent);
    for junk in [
        &[][..],
        &[0x80][..],
        &[0x80; 11][..],
        &[0x8f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1][..],
    ] {
        assert!(h.rtp(a, junk).is_empty());
        assert!(h.rtcp(a, junk).is_empty());
    }
    assert_eq!(h.drop_count(DropReason::RtpMalformed), 4);
    assert_eq!(h.drop_count(DropReason::RtcpMalformed), 4);
    assert_eq!(h.sfu.counters().get(Stat::RtpSent), before_sent);
    // Every truncation of a valid packet: counted or (if still valid RTP) forwarded; no panic.
    let good = packet(
        OPUS,
        1,
        1,
        ssrcs(1000).audio,
        &[(AUDIO_LEVEL_ID, &[1]), (TCC_ID, &[0, 1])],
        b"opus",
    );
    for n in 0..good.len() {
        h.rtp(a, &good[..n]);
    }
    let mut rr = Vec::new();
    rtcp::write_rr(&mut rr, 1, &[rtcp::ReportBlock::default()]);
    rtcp::write_nack(&mut rr, 1, 2, &[1, 2]);
    for n in 0..rr.len() {
        h.rtcp(a, &rr[..n]);
    }
    for junk in [
        "",
        "{",
        "[]",
        "{\"colibriClass\":42}",
        "{\"colibriClass\":\"Nope\"}",
        "\u{0}",
    ] {
        h.take();
        h.sfu.handle_channel_message(h.now, a, junk, &mut h.out);
        assert!(h.take().is_empty());
    }
    assert_eq!(h.drop_count(DropReason::ChannelMalformed), 5);
    assert_eq!(h.drop_count(DropReason::ChannelUnknownClass), 1);
    // Stale handles.
    h.sfu.expire_endpoint(h.now, a, &mut h.out);
    h.take();
    assert!(h.rtp(a, &good).is_empty());
    assert!(h.drop_count(DropReason::UnknownEndpoint) >= 1);
}

#[test]
fn receivers_not_connected_get_nothing_until_connected() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let p = h.params("bbbb", 2000);
    let b = h.sfu.create_endpoint(h.now, h.conf, p, &mut h.out).unwrap();
    let out = h.rtp(a, &packet(OPUS, 1, 1, ssrcs(1000).audio, &[], b"x"));
    assert!(rtp_to(&out, b).is_empty());
    h.take();
    h.sfu
        .handle_transport_event(h.now, b, TransportEvent::Connected, &mut h.out);
    // On connect the bridge asks A for a keyframe of the video B is going to get.
    let out = h.take();
    let pli = rtcp_to(&out, a);
    assert_eq!(pli.len(), 1);
    let c = Compound::parse(&pli[0]).unwrap();
    assert!(
        matches!(c.packets().next(), Some(Packet::Pli(p)) if p.media_ssrc == ssrcs(1000).sim[0])
    );
    let out = h.rtp(a, &packet(OPUS, 2, 2, ssrcs(1000).audio, &[], b"x"));
    assert_eq!(rtp_to(&out, b).len(), 1);
}

#[test]
fn force_mute_drops_media_and_unmute_resumes_without_gap() {
    let (mut h, [a, b, _c]) = three();
    let sa = ssrcs(1000);
    let au = |seq: u16| packet(OPUS, seq, 960 * u32::from(seq), sa.audio, &[], b"a");
    let vi = |seq: u16| vp8(seq, 3000 * u32::from(seq), sa.sim[0], &[], b"v");
    assert_eq!(rtp_to(&h.rtp(a, &au(10)), b).len(), 1);
    h.sfu
        .update_endpoint(
            h.now,
            a,
            EndpointUpdate {
                force_mute_audio: Some(true),
                ..Default::default()
            },
            &mut h.out,
        )
        .unwrap();
    for s in 11..20 {
        assert!(rtp_to(&h.rtp(a, &au(s)), b).is_empty());
    }
    assert_eq!(h.drop_count(DropReason::RtpForceMuted), 9);
    // Video is not muted.
    assert_eq!(rtp_to(&h.rtp(a, &vi(1)), b).len(), 1);
    h.sfu
        .update_endpoint(
            h.now,
            a,
            EndpointUpdate {
                force_mute_audio: Some(false),
                force_mute_video: Some(true),
                ..Default::default()
            },
            &mut h.out,
        )
        .unwrap();
    assert!(rtp_to(&h.rtp(a, &vi(2)), b).is_empty());
    let out = h.rtp(a, &au(20));
    let pkts = rtp_to(&out, b);
    let p = RtpPacket::parse(&pkts[0]).unwrap();
    assert_eq!(p.sequence_number(), 11, "no gap after the muted stretch");
}

/// `ReceiverAudioSubscription` (current and legacy forms): `all` is the baseline, `include` adds,
/// `exclude` wins; a receiver that never sent one gets everything. What the receiver stops getting
/// leaves no gap in what it gets later.
#[test]
fn receiver_audio_subscription_selects_the_audio_a_receiver_gets() {
    let (mut h, [a, b, c]) = three();
    let (sa, sc) = (ssrcs(1000), ssrcs(3000));
    let mut seq = 10u16;
    // One audio packet from A and one from C: the audio SSRCs B got.
    let mut round = |h: &mut H| {
        seq += 1;
        let mut got = Vec::new();
        for (from, ssrc) in [(a, sa.audio), (c, sc.audio)] {
            let p = packet(OPUS, seq, 960 * u32::from(seq), ssrc, &[], b"a");
            for q in rtp_to(&h.rtp(from, &p), b) {
                got.push(RtpPacket::parse(&q).unwrap().ssrc());
            }
        }
        got
    };
    let (a_out, c_out) = {
        let got = round(&mut h);
        assert_eq!(got.len(), 2, "everything before any subscription");
        (got[0], got[1])
    };
    let subscribe = |h: &mut H, v: Value| {
        let mut m = json!({"colibriClass": "ReceiverAudioSubscription"});
        m.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        h.msg(b, m);
    };
    subscribe(&mut h, json!({"all": false, "include": ["aaaa-a0"]}));
    assert_eq!(round(&mut h), vec![a_out], "only the included source");
    subscribe(&mut h, json!({"all": true, "exclude": ["aaaa-a0"]}));
    assert_eq!(round(&mut h), vec![c_out], "all but the excluded source");
    subscribe(
        &mut h,
        json!({"all": true, "include": ["aaaa-a0"], "exclude": ["aaaa-a0"]}),
    );
    assert_eq!(round(&mut h), vec![c_out], "exclude wins over include");
    subscribe(&mut h, json!({"mode": "None"}));
    assert!(round(&mut h).is_empty(), "legacy None: nothing");
    subscribe(&mut h, json!({"mode": "Include", "list": ["cccc-a0"]}));
    assert_eq!(round(&mut h), vec![c_out], "legacy Include");
    subscribe(&mut h, json!({"all": true}));
    // A's stream resumes where B left it (its packets 13–16 were not B's): no gap.
    let p = packet(OPUS, 17, 960 * 17, sa.audio, &[], b"a");
    let q = rtp_to(&h.rtp(a, &p), b);
    let resumed = RtpPacket::parse(&q[0]).unwrap();
    assert_eq!(resumed.ssrc(), a_out);
    assert_eq!(
        resumed.sequence_number(),
        13,
        "no gap after the unsubscribed stretch"
    );
    // C got A's audio all along.
    let p = packet(OPUS, 18, 960 * 18, sa.audio, &[], b"a");
    assert_eq!(rtp_to(&h.rtp(a, &p), c).len(), 1);
}

// ------------------------------------------------------------------------------------ RTCP

#[test]
fn receiver_reports_carry_loss_and_jitter_from_the_stream() {
    let (mut h, [a, _b, _c]) = three();
    let sa = ssrcs(1000);
    h.advance(Duration::from_millis(600)); // past the first RR tick, nothing to report yet
    h.take();
    // 100 video packets 20 ms apart (perfectly paced in RTP time), every 10th lost; audio without loss
    // but with ±10 ms arrival jitter.
    let start = h.now;
    for i in 0u16..100 {
        h.now = start + Duration::from_millis(20 * u64::from(i));
        if i % 10 != 3 {
            h.sfu.handle_rtp(
                h.now,
                a,
                &vp8(500 + i, 1800 * u32::from(i), sa.sim[0], &[], b"v"),
                &mut h.out,
            );
        }
        let jitter = if i % 2 == 0 { 0 } else { 10 };
        h.now += Duration::from_millis(jitter);
        h.sfu.handle_rtp(
            h.now,
            a,
            &packet(OPUS, 40 + i, 960 * u32::from(i), sa.audio, &[], b"a"),
            &mut h.out,
        );
    }
    h.take();
    h.now = start + Duration::from_millis(2000);
    h.sfu.handle_timeout(h.now, &mut h.out);
    let out = h.take();
    let rrs = rtcp_to(&out, a);
    assert_eq!(rrs.len(), 1, "one compound per sender");
    let fb = h.sfu.feedback_sources(h.conf).unwrap();
    let c = Compound::parse(&rrs[0]).unwrap();
    let mut seen = 0;
    for p in c.packets() {
        let Packet::ReceiverReport(rr) = p else {
            panic!("{p:?}")
        };
        let blocks: Vec<_> = rr.report_blocks().collect();
        assert_eq!(blocks.len(), 1);
        let blk = blocks[0];
        if rr.ssrc() == fb.video_ssrc {
            assert_eq!(blk.ssrc, sa.sim[0]);
            assert_eq!(blk.extended_highest_seq, 599);
            assert_eq!(blk.cumulative_lost, 10);
            assert_eq!(blk.fraction_lost, 25); // 10/100 × 256
            assert_eq!(blk.jitter, 0);
        } else {
            assert_eq!(rr.ssrc(), fb.audio_ssrc);
            assert_eq!(blk.ssrc, sa.audio);
            assert_eq!(blk.cumulative_lost, 0);
            // |D| alternates 480 (10 ms at 48 kHz): J converges towards 480.
            assert!(
                (400..=480).contains(&blk.jitter),
                "audio jitter {}",
                blk.jitter
            );
        }
        seen += 1;
    }
    assert_eq!(seen, 2);
    // The receivers that did not send get no RR.
    assert!(rtcp_to(&out, _b).is_empty());
}

#[test]
fn pli_reaches_the_owner_with_the_original_ssrc_and_is_throttled() {
    let (mut h, [a, b, c]) = three();
    let sa = ssrcs(1000);
    h.advance(Duration::from_secs(1)); // let the join-time keyframe requests age out
    h.take();
    let fb = h.sfu.feedback_sources(h.conf).unwrap();
    // (Joining already produced bridge-initiated requests, some throttled.)
    let throttled = h.drop_count(DropReason::KeyframeThrottled);
    let mut pli = Vec::new();
    rtcp::write_pli(&mut pli, 0x1111, sa.sim[0]);
    let out = h.rtcp(b, &pli);
    let to_a = rtcp_to(&out, a);
    assert_eq!(to_a.len(), 1);
    let pc = Compound::parse(&to_a[0]).unwrap();
    let Some(Packet::Pli(p)) = pc.packets().next() else {
        panic!()
    };
    assert_eq!((p.sender_ssrc, p.media_ssrc), (fb.video_ssrc, sa.sim[0]));
    assert!(rtcp_to(&out, b).is_empty() && rtcp_to(&out, c).is_empty());
    // Again 100 ms later from B, or from C right away: throttled (per receiver / per source).
    h.now += Duration::from_millis(100);
    assert!(h.rtcp(b, &pli).is_empty());
    assert!(h.rtcp(c, &pli).is_empty());
    assert_eq!(h.drop_count(DropReason::KeyframeThrottled), throttled + 2);
    // 300 ms later: passes.
    h.now += Duration::from_millis(200);
    assert_eq!(rtcp_to(&h.rtcp(c, &pli), a).len(), 1);
    // B: at most 3 per 10 s.
    h.now += Duration::from_millis(300);
    assert_eq!(rtcp_to(&h.rtcp(b, &pli), a).len(), 1);
    h.now += Duration::from_millis(300);
    assert_eq!(rtcp_to(&h.rtcp(b, &pli), a).len(), 1);
    h.now += Duration::from_millis(300);
    assert!(rtcp_to(&h.rtcp(b, &pli), a).is_empty());
    // A FIR from a receiver is routed the same way.
    let mut fir = Vec::new();
    rtcp::write_fir(&mut fir, 0x1111, ssrcs(2000).sim[0], 1);
    h.now += Duration::from_millis(300);
    let out = h.rtcp(a, &fir);
    let to_b = rtcp_to(&out, b);
    let pc = Compound::parse(&to_b[0]).unwrap();
    assert!(
        matches!(pc.packets().next(), Some(Packet::Pli(p)) if p.media_ssrc == ssrcs(2000).sim[0])
    );
}

#[test]
fn fir_with_incrementing_sequence_for_senders_without_pli() {
    let mut h = H::new();
    let mut pa = h.params("aaaa", 1000);
    pa.video = video_params(true, false); // only ccm fir
    let a = h.join_with(pa);
    let b = h.join("bbbb", 2000);
    h.advance(Duration::from_secs(1));
    h.take();
    let mut pli = Vec::new();
    rtcp::write_pli(&mut pli, 0x1111, ssrcs(1000).sim[0]);
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let out = h.rtcp(b, &pli);
        let pkt = &rtcp_to(&out, a)[0];
        let c = Compound::parse(pkt).unwrap();
        let Some(Packet::Fir(f)) = c.packets().next() else {
            panic!()
        };
        let e: Vec<_> = f.entries().collect();
        assert_eq!(e[0].0, ssrcs(1000).sim[0]);
        seqs.push(e[0].1);
        h.now += Duration::from_millis(250);
    }
    assert_eq!(seqs[1], seqs[0].wrapping_add(1));
    assert_eq!(seqs[2], seqs[1].wrapping_add(1));
}

#[test]
fn sender_reports_are_forwarded_rewritten() {
    let (mut h, [a, b, c]) = three();
    let sa = ssrcs(1000);
    send_all(&mut h, &[a], &[1000], 1);
    let mut sr = Vec::new();
    rtcp::write_sr(
        &mut sr,
        &rtcp::SenderInfo {
            ssrc: sa.sim[0],
            ntp: 0xe000_0000_8000_0000,
            rtp_timestamp: 123_456,
            packet_count: 10,
            octet_count: 9000,
        },
        &[rtcp::ReportBlock {
            ssrc: 42,
            ..Default::default()
        }],
    );
    rtcp::write_sdes_cname(&mut sr, sa.sim[0], "cname");
    let out = h.rtcp(a, &sr);
    for r in [b, c] {
        let pk = rtcp_to(&out, r);
        assert_eq!(pk.len(), 1);
        let cp = Compound::parse(&pk[0]).unwrap();
        let ps: Vec<_> = cp.packets().collect();
        assert_eq!(ps.len(), 1);
        let Packet::SenderReport(s) = ps[0] else {
            panic!()
        };
        assert_eq!(s.ssrc(), sa.sim[0]);
        assert_eq!(s.ntp(), 0xe000_0000_8000_0000);
        assert_eq!(s.rtp_timestamp(), 123_456);
        assert_eq!((s.packet_count(), s.octet_count()), (10, 9000));
        assert_eq!(s.report_blocks().count(), 0, "report blocks stripped");
    }
    assert!(rtcp_to(&out, a).is_empty());
    // An SR for a non-primary simulcast SSRC is not forwarded (nobody gets that stream).
    let mut sr2 = Vec::new();
    rtcp::write_sr(
        &mut sr2,
        &rtcp::SenderInfo {
            ssrc: sa.sim[1],
            ..Default::default()
        },
        &[],
    );
    assert!(h.rtcp(a, &sr2).is_empty());
    assert_eq!(h.drop_count(DropReason::SrNotProjected), 1);
    // The SR's NTP time shows up as LSR in the next RR to A.
    h.now += Duration::from_millis(250);
    h.sfu
        .handle_rtp(h.now, a, &vp8(2, 3000, sa.sim[0], &[], b"v"), &mut h.out);
    h.advance(Duration::from_millis(600));
    let out = h.take();
    let blk = rtcp_to(&out, a)
        .iter()
        .find_map(|rr| {
            Compound::parse(rr)
                .unwrap()
                .packets()
                .find_map(|p| match p {
                    Packet::ReceiverReport(r) => r.report_blocks().find(|b| b.ssrc == sa.sim[0]),
                    _ => None,
                })
        })
        .unwrap();
    assert_eq!(blk.last_sr, 0x0000_8000);
    assert!(blk.delay_since_last_sr > 0);
}

#[test]
fn other_feedback_is_terminated() {
    let (mut h, [a, b, c]) = three();
    let mut p = Vec::new();
    rtcp::write_rr(&mut p, 9, &[rtcp::ReportBlock::default()]);
    rtcp::write_sdes_cname(&mut p, 9, "x");
    rtcp::write_remb(&mut p, 9, 1_000_000, &[ssrcs(1000).sim[0]]);
    rtcp::write_tcc_raw(&mut p, 9, ssrcs(1000).sim[0], 1, 1, &[0x20, 0x01, 4]);
    rtcp::write_bye(&mut p, &[9]);
    p.extend_from_slice(&[0x80, rtcp::PT_XR, 0, 1, 0, 0, 0, 9]);
    let out = h.rtcp(b, &p);
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(h.sfu.counters().get(Stat::RtcpTerminated), 6);
    let _ = (a, c);
}

/// A sends video; B (RTX negotiated) and C (no RTX) NACK packets.
#[test]
fn nack_is_answered_with_rtx_or_plain_resend() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let b = h.join("bbbb", 2000);
    let mut pc = h.params("cccc", 3000);
    pc.video = video_params(false, true);
    let c = h.join_with(pc);
    h.take();
    let sa = ssrcs(1000);
    let mut sent_b = Vec::new();
    let mut sent_c = Vec::new();
    for seq in 100..110u16 {
        let payload = format!("frame-{seq}");
        let out = h.rtp(
            a,
            &vp8(
                seq,
                3000 * u32::from(seq),
                sa.sim[0],
                &[(TCC_ID, &[0, 1])],
                payload.as_bytes(),
            ),
        );
        sent_b.extend(rtp_to(&out, b));
        sent_c.extend(rtp_to(&out, c));
    }
    let mut nack = Vec::new();
    rtcp::write_nack(&mut nack, 0x2222, sa.sim[0], &[103, 105]);
    let out = h.rtcp(b, &nack);
    let rtx = rtp_to(&out, b);
    assert_eq!(rtx.len(), 2);
    let mut rtx_seqs = Vec::new();
    // Newest first.
    for (p, osn) in rtx.iter().zip([105u16, 103]) {
        let q = RtpPacket::parse(p).unwrap();
        assert_eq!(q.ssrc(), sa.rtx[0], "RTX SSRC = FID partner of the primary");
        assert_eq!(q.payload_type(), RTX, "RTX PT = apt mapping");
        assert_eq!(
            &q.payload()[..2],
            &osn.to_be_bytes(),
            "original sequence number first"
        );
        assert!(q.payload()[2..].ends_with(format!("frame-{osn}").as_bytes()));
        assert_eq!(q.timestamp(), 3000 * u32::from(osn));
        // Fresh transport-wide sequence number, above everything sent before.
        let last_media_tcc = RtpPacket::parse(sent_b.last().unwrap())
            .unwrap()
            .transport_cc_seq(TCC_ID)
            .unwrap();
        assert!(q.transport_cc_seq(TCC_ID).unwrap() > last_media_tcc);
        rtx_seqs.push(q.sequence_number());
    }
    assert_eq!(
        rtx_seqs[1],
        rtx_seqs[0].wrapping_add(1),
        "own RTX sequence counter"
    );
    assert_eq!(h.sfu.counters().get(Stat::RetransmissionsRtx), 2);
    // The same NACK again at once: suppressed; a little later: answered, RTX seq continues.
    assert!(rtp_to(&h.rtcp(b, &nack), b).is_empty());
    assert_eq!(h.drop_count(DropReason::NackRecentlyResent), 2);
    h.now += Duration::from_millis(50);
    let again = rtp_to(&h.rtcp(b, &nack), b);
    assert_eq!(
        RtpPacket::parse(&again[0]).unwrap().sequence_number(),
        rtx_seqs[1].wrapping_add(1)
    );
    // C has no RTX: plain resend, identical to the original except the transport-wide number.
    let out = h.rtcp(c, &nack);
    let plain = rtp_to(&out, c);
    assert_eq!(plain.len(), 2);
    let orig = RtpPacket::parse(&sent_c[3]).unwrap();
    let re = RtpPacket::parse(&plain[1]).unwrap(); // (newest first: 105, then 103)
    assert_eq!(
        (
            re.ssrc(),
            re.sequence_number(),
            re.payload_type(),
            re.payload()
        ),
        (
            orig.ssrc(),
            orig.sequence_number(),
            orig.payload_type(),
            orig.payload()
        )
    );
    assert_ne!(re.transport_cc_seq(TCC_ID), orig.transport_cc_seq(TCC_ID));
    assert_eq!(h.sfu.counters().get(Stat::RetransmissionsPlain), 2);
    // Not in the cache (never sent): counted.
    let mut nack2 = Vec::new();
    rtcp::write_nack(&mut nack2, 0x2222, sa.sim[0], &[5000]);
    assert!(h.rtcp(b, &nack2).is_empty());
    assert_eq!(h.drop_count(DropReason::NackNotCached), 1);
}

#[test]
fn retransmission_store_and_log_are_bounded() {
    // The per-source store keeps 8 packets; the per-receiver log 16 entries.
    let cfg = SfuConfig {
        rtx_store_packets: 8,
        rtx_log_packets: 16,
        ..Default::default()
    };
    let mut h = H::with_config(cfg);
    let a = h.join("aaaa", 1000);
    let b = h.join("bbbb", 2000);
    let sa = ssrcs(1000);
    for seq in 0..20u16 {
        h.rtp(a, &vp8(seq, 0, sa.sim[0], &[], b"v"));
    }
    let mut nack = Vec::new();
    rtcp::write_nack(&mut nack, 1, sa.sim[0], &[11, 12, 19]);
    let out = h.rtcp(b, &nack);
    assert_eq!(
        rtp_to(&out, b).len(),
        2,
        "12 and 19 are among the last 8; 11 was evicted"
    );
    assert_eq!(h.drop_count(DropReason::NackNotCached), 1);
    // A second sender's packets push A's out of B's log (16 entries) while A's store still has them.
    let c = h.join("cccc", 3000);
    for seq in 0..16u16 {
        h.rtp(c, &vp8(seq, 0, ssrcs(3000).sim[0], &[], b"c"));
    }
    h.now += Duration::from_millis(100);
    assert!(rtp_to(&h.rtcp(b, &nack), b).is_empty());
    assert_eq!(h.drop_count(DropReason::NackNotCached), 4);
}

// ------------------------------------------------------------------------------------ channel

#[test]
fn endpoint_message_broadcast_and_unicast_with_from_set() {
    let (mut h, [a, b, c]) = three();
    let out = h.msg(
        a,
        json!({"colibriClass":"EndpointMessage","to":"","from":"spoofed","msgPayload":{"type":"e2e-ping-request","id":1}}),
    );
    assert!(texts_to(&out, a).is_empty());
    for r in [b, c] {
        let m = texts_to(&out, r);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["from"], "aaaa");
        assert_eq!(m[0]["colibriClass"], "EndpointMessage");
        assert_eq!(m[0]["msgPayload"]["type"], "e2e-ping-request");
    }
    let out = h.msg(
        b,
        json!({"colibriClass":"EndpointMessage","to":"cccc","msgPayload":{"x":true}}),
    );
    assert!(texts_to(&out, a).is_empty());
    let m = texts_to(&out, c);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0]["from"].as_str(), m[0]["to"].as_str()),
        (Some("bbbb"), Some("cccc"))
    );
    assert!(
        h.msg(
            b,
            json!({"colibriClass":"EndpointMessage","to":"nobody","msgPayload":{}})
        )
        .is_empty()
    );
    assert_eq!(h.drop_count(DropReason::ChannelUnknownTarget), 1);
}

#[test]
fn endpoint_stats_are_relayed_with_from() {
    let (mut h, [a, b, c]) = three();
    let out = h.msg(
        c,
        json!({"colibriClass":"EndpointStats","bitrate":{"upload":100},"jvbRTT":12}),
    );
    for r in [a, b] {
        let m = texts_to(&out, r);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["from"], "cccc");
        assert_eq!(m[0]["jvbRTT"], 12);
    }
    assert!(texts_to(&out, c).is_empty());
}

/// Feeds `ms` of 20 ms audio packets from each endpoint at the given levels, running timers.
/// 20 ms audio packets from each of `who` for `ms`: 127 = silence, any other value is the loudness
/// of speech around that level (varying word by word, with short pauses, as real speech does; a
/// constant level looks like background noise to the dominant speaker identification).
fn speak(h: &mut H, who: &[(EndpointHandle, u32, u8)], ms: u64, seq: &mut u16) {
    for _ in 0..ms / 20 {
        *seq = seq.wrapping_add(1);
        for &(e, b, base) in who {
            let k = u32::from(*seq) + b / 1000;
            let level = if base >= 127 {
                127
            } else if k % 25 >= 22 {
                90
            } else {
                base + (k % 11) as u8
            };
            let p = packet(
                OPUS,
                *seq,
                960 * u32::from(*seq),
                ssrcs(b).audio,
                &[(AUDIO_LEVEL_ID, &[level])],
                b"a",
            );
            h.sfu.handle_rtp(h.now, e, &p, &mut h.out);
        }
        h.advance(Duration::from_millis(20));
    }
}

/// JVB's silence detection (`speech-activity.enable-silence-detection`, off by default): after
/// the timeout without speech every endpoint gets the dominant speaker again with `silence: true`,
/// and `silence: false` when somebody speaks again; off, `silence` is always false.
#[test]
fn silence_is_announced_with_silence_detection_on() {
    let mut h = H::with_config(SfuConfig {
        silence_timeout: Some(Duration::from_secs(3)),
        ..SfuConfig::default()
    });
    let (a, b) = (h.join("aaaa", 1000), h.join("bbbb", 2000));
    h.take();
    let mut seq = 0;
    let events = |h: &mut H, r| {
        let out = h.take();
        of_class(&texts_to(&out, r), "DominantSpeakerEndpointChangeEvent")
    };
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 30)], 1000, &mut seq);
    let ds = events(&mut h, a);
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0]["dominantSpeakerEndpoint"], "bbbb");
    assert_eq!(ds[0]["silence"], false);
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 127)], 2000, &mut seq);
    assert!(events(&mut h, a).is_empty(), "silence before the timeout");
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 127)], 2000, &mut seq);
    let out = h.take();
    for r in [a, b] {
        let ds = of_class(&texts_to(&out, r), "DominantSpeakerEndpointChangeEvent");
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!(ds[0]["dominantSpeakerEndpoint"], "bbbb");
        assert_eq!(ds[0]["silence"], true);
    }
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 30)], 1000, &mut seq);
    let ds = events(&mut h, a);
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0]["dominantSpeakerEndpoint"], "bbbb");
    assert_eq!(ds[0]["silence"], false);

    // Off (the default): no silence event.
    let mut h = H::new();
    let (a, b) = (h.join("aaaa", 1000), h.join("bbbb", 2000));
    h.take();
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 30)], 1000, &mut seq);
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 127)], 6000, &mut seq);
    let ds = events(&mut h, a);
    assert_eq!(ds.len(), 1, "{ds:?}");
    assert_eq!(ds[0]["silence"], false);
}

#[test]
fn dominant_speaker_switches_on_audio_levels() {
    let (mut h, [a, b, c]) = three();
    let mut seq = 0;
    speak(
        &mut h,
        &[(a, 1000, 127), (b, 2000, 30), (c, 3000, 127)],
        1000,
        &mut seq,
    );
    let out = h.take();
    for r in [a, b, c] {
        let ds = of_class(&texts_to(&out, r), "DominantSpeakerEndpointChangeEvent");
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!(ds[0]["dominantSpeakerEndpoint"], "bbbb");
        assert_eq!(ds[0]["previousSpeakers"], json!([]));
    }
    assert!(events(&out).contains(&Event::DominantSpeakerChanged {
        conference: h.conf,
        endpoint_id: "bbbb".into(),
        previous: vec![]
    }));
    // B keeps talking, C talks slightly louder: no switch (hysteresis).
    speak(
        &mut h,
        &[(a, 1000, 127), (b, 2000, 30), (c, 3000, 28)],
        1500,
        &mut seq,
    );
    assert!(
        of_class(
            &texts_to(&h.take(), a),
            "DominantSpeakerEndpointChangeEvent"
        )
        .is_empty()
    );
    // B stops: C takes over, B becomes a previous speaker.
    speak(
        &mut h,
        &[(a, 1000, 127), (b, 2000, 127), (c, 3000, 28)],
        1500,
        &mut seq,
    );
    let ds = of_class(
        &texts_to(&h.take(), a),
        "DominantSpeakerEndpointChangeEvent",
    );
    assert_eq!(ds.len(), 1);
    assert_eq!(ds[0]["dominantSpeakerEndpoint"], "cccc");
    assert_eq!(ds[0]["previousSpeakers"], json!(["bbbb"]));
    assert_eq!(h.sfu.counters().get(Stat::DominantSpeakerChanges), 2);
}

#[test]
fn last_n_1_limits_video_to_the_loudest() {
    let (mut h, [a, b, c]) = three();
    let out = h.msg(c, json!({"colibriClass":"LastNChangedEvent","lastN":1}));
    // Nobody spoke yet: join order decides (A).
    let fs = of_class(&texts_to(&out, c), "ForwardedSources");
    assert_eq!(strings(&fs[0]["forwardedSources"]), vec!["aaaa-v0"]);
    let mut seq = 0;
    speak(&mut h, &[(a, 1000, 127), (b, 2000, 20)], 1000, &mut seq);
    let out = h.take();
    let t = texts_to(&out, c);
    let fs = of_class(&t, "ForwardedSources");
    assert_eq!(
        strings(&fs.last().unwrap()["forwardedSources"]),
        vec!["bbbb-v0"]
    );
    let ln = of_class(&t, "LastNEndpointsChangeEvent");
    assert_eq!(strings(&ln.last().unwrap()["lastNEndpoints"]), vec!["bbbb"]);
    // Video to C: only B's; audio from both still flows. A (no limit) still gets B's and C's video.
    let out = send_all(&mut h, &[a, b], &[1000, 2000], 500);
    let (sa, sb) = (ssrcs(1000), ssrcs(2000));
    assert_eq!(
        ssrcs_of(&rtp_to(&out, c)),
        sorted(vec![sa.audio, sb.audio, sb.sim[0]])
    );
    assert!(ssrcs_of(&rtp_to(&out, a)).contains(&sb.sim[0]));
    // The same limit from the modern message, lastN=0: no video at all.
    let out = h.msg(
        c,
        json!({"colibriClass":"ReceiverVideoConstraints","lastN":0}),
    );
    let fs = of_class(&texts_to(&out, c), "ForwardedSources");
    assert!(strings(&fs[0]["forwardedSources"]).is_empty());
    let out = send_all(&mut h, &[a, b], &[1000, 2000], 501);
    assert_eq!(ssrcs_of(&rtp_to(&out, c)), sorted(vec![sa.audio, sb.audio]));
}

#[test]
fn max_height_zero_stops_a_source_in_both_dialects() {
    let (mut h, [a, b, c]) = three();
    let (sa, sc) = (ssrcs(1000), ssrcs(3000));
    // Modern: by source name.
    let out = h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":0}}}),
    );
    let fs = of_class(&texts_to(&out, b), "ForwardedSources");
    assert_eq!(strings(&fs[0]["forwardedSources"]), vec!["cccc-v0"]);
    let out = send_all(&mut h, &[a, c], &[1000, 3000], 9);
    assert_eq!(
        ssrcs_of(&rtp_to(&out, b)),
        sorted(vec![sa.audio, sc.audio, sc.sim[0]])
    );
    // 2021: by endpoint id, and default maxHeight 0 stops everything else.
    let out = h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","defaultConstraints":{"maxHeight":0},"constraints":{"aaaa":{"maxHeight":720}}}),
    );
    let t = texts_to(&out, b);
    assert_eq!(
        strings(&of_class(&t, "ForwardedSources")[0]["forwardedSources"]),
        vec!["aaaa-v0"]
    );
    assert_eq!(
        strings(&of_class(&t, "LastNEndpointsChangeEvent")[0]["lastNEndpoints"]),
        vec!["aaaa"]
    );
    let out = send_all(&mut h, &[a, c], &[1000, 3000], 10);
    // (A's keyframes on all three encodings arrive together: B, now allowed 720p, switches up
    // through them; all under A's primary SSRC.)
    let mut got = ssrcs_of(&rtp_to(&out, b));
    got.dedup();
    assert_eq!(got, sorted(vec![sa.audio, sa.sim[0], sc.audio]));
    // Pausing and resuming a source leaves no sequence gap in what B sees.
    let primary_seq = |out: &[OwnedOutput]| {
        rtp_to(out, b)
            .iter()
            .map(|p| RtpPacket::parse(p).unwrap())
            .find(|p| p.ssrc() == sa.sim[0])
            .map(|p| p.sequence_number())
    };
    let seq_before = rtp_to(&out, b)
        .iter()
        .map(|p| RtpPacket::parse(p).unwrap())
        .filter(|p| p.ssrc() == sa.sim[0])
        .map(|p| p.sequence_number())
        .next_back()
        .unwrap();
    h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa":{"maxHeight":0}}}),
    );
    for s in 11..15 {
        let out = send_all(&mut h, &[a], &[1000], s);
        assert_eq!(primary_seq(&out), None);
    }
    h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa":{"maxHeight":360}}}),
    );
    let out = send_all(&mut h, &[a], &[1000], 15);
    assert_eq!(primary_seq(&out), Some(seq_before + 1));
}

#[test]
fn forwarded_set_and_dominant_speaker_are_sent_when_the_channel_opens() {
    let (mut h, [a, b, _c]) = three();
    let mut seq = 0;
    speak(&mut h, &[(a, 1000, 25), (b, 2000, 127)], 1000, &mut seq);
    h.take();
    let p = h.params("dddd", 4000);
    let d = h.sfu.create_endpoint(h.now, h.conf, p, &mut h.out).unwrap();
    h.sfu
        .handle_transport_event(h.now, d, TransportEvent::Connected, &mut h.out);
    assert!(
        texts_to(&h.take(), d).is_empty(),
        "nothing before the channel opens"
    );
    h.sfu
        .handle_transport_event(h.now, d, TransportEvent::DataChannelOpen, &mut h.out);
    let t = texts_to(&h.take(), d);
    let ds = of_class(&t, "DominantSpeakerEndpointChangeEvent");
    assert_eq!(ds[0]["dominantSpeakerEndpoint"], "aaaa");
    let fs = of_class(&t, "ForwardedSources");
    assert_eq!(
        strings(&fs[0]["forwardedSources"]),
        vec!["aaaa-v0", "bbbb-v0", "cccc-v0"]
    );
    let ln = of_class(&t, "LastNEndpointsChangeEvent");
    assert_eq!(
        strings(&ln[0]["lastNEndpoints"]),
        vec!["aaaa", "bbbb", "cccc"]
    );
}

#[test]
fn source_video_type_none_removes_a_source_from_the_forwarded_set() {
    let (mut h, [a, b, _c]) = three();
    let out = h.msg(
        a,
        json!({"colibriClass":"SourceVideoTypeMessage","sourceName":"aaaa-v0","videoType":"none"}),
    );
    let fs = of_class(&texts_to(&out, b), "ForwardedSources");
    assert_eq!(strings(&fs[0]["forwardedSources"]), vec!["cccc-v0"]);
}

#[test]
fn source_update_keeps_unchanged_sources_and_registers_new_ones() {
    let (mut h, [a, b, _c]) = three();
    // A adds a screen share source.
    let mut srcs = sources("aaaa", 1000);
    srcs.push(MediaSourceDesc {
        kind: MediaKind::Video,
        name: "aaaa-v1".into(),
        sources: vec![Source::new(1500), Source::new(1501)],
        groups: vec![SsrcGroup::new(Semantics::Fid, vec![1500, 1501])],
    });
    let fs = of_class(&texts_to(&h.set_sources(a, srcs), b), "ForwardedSources");
    assert_eq!(
        strings(&fs[0]["forwardedSources"]),
        vec!["aaaa-v0", "aaaa-v1", "cccc-v0"]
    );
    let out = h.rtp(a, &vp8(1, 1, 1500, &[], b"screen"));
    assert_eq!(rtp_to(&out, b).len(), 1);
    // Clearing the sources stops everything from A.
    h.set_sources(a, vec![]);
    assert!(h.rtp(a, &vp8(2, 1, 1500, &[], b"screen")).is_empty());
    assert!(
        h.rtp(a, &packet(OPUS, 2, 1, ssrcs(1000).audio, &[], b"a"))
            .is_empty()
    );
}

/// What a receiver may see on the wire: for every other endpoint present, the SSRCs the focus
/// signals it (audio, the video's primary SSRC and its RTX partner; lib-jitsi-meet keeps only
/// those of a SIM group).
fn signalled_to(present: &[(EndpointHandle, u32)], me: EndpointHandle) -> Vec<u32> {
    present
        .iter()
        .filter(|(e, _)| *e != me)
        .flat_map(|(_, b)| {
            let s = ssrcs(*b);
            [s.audio, s.sim[0], s.rtx[0]]
        })
        .collect()
}

/// Whatever happens — joins, leaves, a sender re-signalling its video with new SSRCs, receivers
/// suspending and resuming sources, NACKs, probes — every RTP packet a receiver gets is on an SSRC
/// it was told about for a source that exists at that moment: never a secondary simulcast or RTX
/// SSRC of the sender, never a source after it was removed.
#[test]
fn receivers_only_ever_see_ssrcs_they_were_told_about() {
    let mut h = H::new();
    let mut rng = crate::random::Rng::new(7);
    let mut present: Vec<(EndpointHandle, u32)> = Vec::new();
    let mut next_base = 1000;
    for _ in 0..4 {
        let e = h.join(&format!("e{next_base}"), next_base);
        present.push((e, next_base));
        next_base += 1000;
    }
    let mut seq = 0u16;
    let mut stray: Vec<String> = Vec::new();
    let mut delivered = 0;
    for step in 0..1500u32 {
        let out = match rng.next_u32() % 20 {
            // A receiver changes what it wants of one sender.
            0 => {
                let (r, _) = present[rng.next_u32() as usize % present.len()];
                let (_, sb) = present[rng.next_u32() as usize % present.len()];
                let height = [0, 180, 360, 720][rng.next_u32() as usize % 4];
                h.msg(
                    r,
                    json!({"colibriClass":"ReceiverVideoConstraints",
                           "constraints":{format!("e{sb}-v0"):{"maxHeight":height}}}),
                )
            }
            // A receiver NACKs a few recent packets of a sender's primary SSRC.
            1 => {
                let (r, _) = present[rng.next_u32() as usize % present.len()];
                let (_, sb) = present[rng.next_u32() as usize % present.len()];
                let mut nack = Vec::new();
                let lost = [seq.wrapping_sub(1), seq.wrapping_sub(3)];
                rtcp::write_nack(&mut nack, 0x2222, ssrcs(sb).sim[0], &lost);
                h.rtcp(r, &nack)
            }
            // A sender re-signals its sources with new SSRCs (the focus's source-remove and
            // source-add reach the receivers at the same time, in this model).
            2 if step.is_multiple_of(7) => {
                let i = rng.next_u32() as usize % present.len();
                let (e, _) = present[i];
                let id = h.sfu.endpoint_id(e).unwrap().to_owned();
                present[i].1 = next_base;
                let srcs = sources(&id, next_base);
                next_base += 1000;
                h.set_sources(e, srcs)
            }
            // Someone leaves and someone new joins.
            3 if step.is_multiple_of(11) && present.len() > 2 => {
                let i = rng.next_u32() as usize % present.len();
                let (e, _) = present.remove(i);
                h.take();
                h.sfu.expire_endpoint(h.now, e, &mut h.out);
                let mut out = h.take();
                let n = h.join(&format!("e{next_base}"), next_base);
                present.push((n, next_base));
                next_base += 1000;
                out.extend(h.take());
                out
            }
            // Time passes (timers: probes, allocation, keyframe requests).
            4..=6 => {
                h.take();
                h.advance(Duration::from_millis(u64::from(rng.next_u32() % 200)));
                h.take()
            }
            // Media: every sender, every encoding (a keyframe now and then).
            _ => {
                seq = seq.wrapping_add(1);
                let mut out = Vec::new();
                for &(e, b) in &present.clone() {
                    let s = ssrcs(b);
                    out.extend(h.rtp(
                        e,
                        &packet(OPUS, seq, 960 * u32::from(seq), s.audio, &[], b"opus"),
                    ));
                    for (enc, ssrc) in s.sim.iter().enumerate() {
                        let p = vp8_frame(
                            seq,
                            3000 * u32::from(seq),
                            *ssrc,
                            &[(TCC_ID, &[0, 1])],
                            b"f",
                            seq.is_multiple_of(16),
                        );
                        out.extend(h.rtp(e, &p));
                        // The sender's own retransmission of the previous packet, on its RTX SSRC.
                        if enc == 1 && seq.is_multiple_of(5) {
                            let orig = RtpPacket::parse(&p).unwrap();
                            let mut rtx = Vec::new();
                            rtp::write_rtx(&orig, s.rtx[enc], RTX, seq, &mut rtx);
                            out.extend(h.rtp(e, &rtx));
                        }
                    }
                }
                out
            }
        };
        for &(r, _) in &present {
            let allowed = signalled_to(&present, r);
            for p in rtp_to(&out, r) {
                let ssrc = RtpPacket::parse(&p).unwrap().ssrc();
                delivered += 1;
                if !allowed.contains(&ssrc) {
                    stray.push(format!("step {step}: {ssrc} to {r:?}"));
                }
            }
        }
    }
    assert!(delivered > 10_000, "{delivered} packets delivered");
    assert!(
        stray.is_empty(),
        "{} stray packets: {:?}",
        stray.len(),
        &stray[..stray.len().min(10)]
    );
}

// ------------------------------------------------------------------------------------ sender constraints

/// The sender constraints `out` carries to `to`: `(sourceName, maxHeight)` and the 2021
/// `idealHeight`s, in order.
fn constraints_to(out: &[OwnedOutput], to: EndpointHandle) -> (Vec<(String, Value)>, Vec<Value>) {
    let t = texts_to(out, to);
    let ssc = of_class(&t, "SenderSourceConstraints")
        .iter()
        .map(|m| {
            (
                m["sourceName"].as_str().unwrap().to_owned(),
                m["maxHeight"].clone(),
            )
        })
        .collect();
    let svc = of_class(&t, "SenderVideoConstraints")
        .iter()
        .map(|m| m["videoConstraints"]["idealHeight"].clone())
        .collect();
    (ssc, svc)
}

/// Runs `ms` of virtual time in 30 ms frames; each frame, endpoint `e` (base `b`) sends one
/// packet on each of `encodings`. Returns every output.
fn send_video_for(
    h: &mut H,
    e: EndpointHandle,
    b: u32,
    encodings: &[usize],
    ms: u64,
    seq: &mut u16,
) -> Vec<OwnedOutput> {
    let mut all = Vec::new();
    for _ in 0..ms / 30 {
        *seq = seq.wrapping_add(1);
        for &enc in encodings {
            let ssrc = ssrcs(b).sim[enc];
            let p = vp8(*seq, 3000 * u32::from(*seq), ssrc, &[], b"frame");
            all.extend(h.rtp(e, &p));
        }
        h.advance(Duration::from_millis(30));
        all.extend(h.take());
    }
    all
}

/// Three endpoints whose constraints have settled (B and C receive A at the default 180p).
fn settled() -> (H, [EndpointHandle; 3]) {
    let (mut h, eps) = three();
    h.advance(Duration::from_secs(1));
    h.take();
    (h, eps)
}

#[test]
fn sender_constraints_are_held_off_and_only_the_latest_value_goes_out() {
    let (mut h, [a, b, _c]) = settled();
    let t0 = h.now;
    // B puts A on stage at 720p and 5 ms later settles for 360p: A must never see the 720.
    let mut out = h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":720}}}),
    );
    h.advance(Duration::from_millis(5));
    out.extend(h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":360}}}),
    ));
    h.advance(Duration::from_millis(280));
    out.extend(h.take());
    assert_eq!(constraints_to(&out, a), (vec![], vec![]), "held off");
    let mut sent_at = None;
    for _ in 0..100 {
        h.advance(Duration::from_millis(10));
        let o = h.take();
        if !texts_to(&o, a).is_empty() && sent_at.is_none() {
            sent_at = Some(h.now - t0);
        }
        out.extend(o);
    }
    let (ssc, svc) = constraints_to(&out, a);
    assert_eq!(ssc, vec![("aaaa-v0".to_owned(), json!(360))]);
    assert_eq!(svc, vec![json!(360)]);
    assert!(ssc[0].1.is_i64(), "maxHeight is a JSON number");
    let at = sent_at.unwrap();
    assert!(
        at >= Duration::from_millis(300) && at <= Duration::from_millis(320),
        "sent {at:?} after the first change"
    );
    // Only A's own sources are named, and nobody else was told anything.
    assert!(constraints_to(&out, b).0.is_empty() && constraints_to(&out, b).1.is_empty());
    // A change right after a message waits for the hold-off since that message; a change back
    // to the value told is no message at all.
    let out = h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":180}}}),
    );
    h.advance(Duration::from_millis(100));
    h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":360}}}),
    );
    h.advance(Duration::from_secs(2));
    let mut all = out;
    all.extend(h.take());
    assert_eq!(constraints_to(&all, a), (vec![], vec![]));
}

#[test]
fn sender_constraints_are_sent_again_when_the_channel_opens() {
    let (mut h, [a, b, _c]) = settled();
    h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":720}}}),
    );
    h.advance(Duration::from_millis(400));
    let (ssc, _) = constraints_to(&h.take(), a);
    assert_eq!(ssc, vec![("aaaa-v0".to_owned(), json!(720))]);
    // The channel drops (a colibri-ws reconnect): nothing is lost while it is closed, and the
    // current value goes out as soon as it is open again, unchanged or not.
    h.sfu
        .handle_transport_event(h.now, a, TransportEvent::DataChannelClosed, &mut h.out);
    h.advance(Duration::from_secs(1));
    h.sfu
        .handle_transport_event(h.now, a, TransportEvent::DataChannelOpen, &mut h.out);
    let (ssc, svc) = constraints_to(&h.take(), a);
    assert_eq!(ssc, vec![("aaaa-v0".to_owned(), json!(720))]);
    assert_eq!(svc, vec![json!(720)]);
    h.sfu
        .handle_transport_event(h.now, a, TransportEvent::DataChannelClosed, &mut h.out);
    h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":360}}}),
    );
    h.advance(Duration::from_secs(1));
    assert_eq!(constraints_to(&h.take(), a), (vec![], vec![]), "closed");
    h.sfu
        .handle_transport_event(h.now, a, TransportEvent::DataChannelOpen, &mut h.out);
    let (ssc, svc) = constraints_to(&h.take(), a);
    assert_eq!(ssc, vec![("aaaa-v0".to_owned(), json!(360))]);
    assert_eq!(svc, vec![json!(360)]);
}

#[test]
fn a_sender_whose_layers_do_not_follow_is_nudged_with_a_different_value() {
    let (mut h, [a, b, _c]) = settled();
    let mut seq = 100;
    // A sends its three layers; B asks for 720.
    send_video_for(&mut h, a, 1000, &[0, 1, 2], 600, &mut seq);
    h.msg(
        b,
        json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":720}}}),
    );
    let out = send_video_for(&mut h, a, 1000, &[0, 1, 2], 6000, &mut seq);
    let (ssc, svc) = constraints_to(&out, a);
    assert_eq!(
        ssc,
        vec![("aaaa-v0".to_owned(), json!(720))],
        "followed: told once"
    );
    assert_eq!(svc, vec![json!(720)]);
    // Its client applied a 180 that came too close to the 720 and stays there (the 2021 race):
    // only the low layer arrives. A few seconds later the bridge says 721 (the same layers for
    // the client, but not a repeat it would drop), then 720 again, and stops after a few.
    let t0 = h.now;
    let mut nudges = Vec::new();
    for _ in 0..(30_000 / 300) {
        let out = send_video_for(&mut h, a, 1000, &[0], 300, &mut seq);
        let (ssc, svc) = constraints_to(&out, a);
        for (n, v) in ssc {
            assert_eq!(n, "aaaa-v0");
            nudges.push(((h.now - t0).as_millis() / 100, v, svc.clone()));
        }
    }
    let values: Vec<Value> = nudges.iter().map(|n| n.1.clone()).collect();
    assert_eq!(
        values,
        vec![json!(721), json!(720), json!(721)],
        "{nudges:?}"
    );
    assert_eq!(nudges[0].2, vec![json!(721)], "the 2021 form too");
    // The first within a few seconds of the layers dropping.
    assert!(nudges[0].0 <= 60, "{nudges:?}");
    // Once the layers follow again, nothing more.
    let out = send_video_for(&mut h, a, 1000, &[0, 1, 2], 8000, &mut seq);
    assert_eq!(constraints_to(&out, a), (vec![], vec![]));
    // A sender that sends some upper layers but not all is held back by its own bandwidth
    // estimate: a nudge would only make it reconfigure in the middle of its ramp. Not nudged.
    for height in [360, 720] {
        h.msg(
            b,
            json!({"colibriClass":"ReceiverVideoConstraints","constraints":{"aaaa-v0":{"maxHeight":height}}}),
        );
        send_video_for(&mut h, a, 1000, &[0, 1, 2], 600, &mut seq);
    }
    let out = send_video_for(&mut h, a, 1000, &[0, 1], 12_000, &mut seq);
    assert_eq!(constraints_to(&out, a), (vec![], vec![]));
}

// ------------------------------------------------------------------------------------ liveness

#[test]
fn connectivity_status_after_8_s_without_media() {
    let (mut h, [a, b, c]) = three();
    let mut seq = 0;
    // Everybody sends for 2 s, then A goes quiet while B and C keep sending.
    speak(
        &mut h,
        &[(a, 1000, 127), (b, 2000, 127), (c, 3000, 127)],
        2000,
        &mut seq,
    );
    h.take();
    speak(&mut h, &[(b, 2000, 127), (c, 3000, 127)], 7000, &mut seq);
    assert!(
        of_class(
            &texts_to(&h.take(), b),
            "EndpointConnectivityStatusChangeEvent"
        )
        .is_empty()
    );
    speak(&mut h, &[(b, 2000, 127), (c, 3000, 127)], 2000, &mut seq);
    let out = h.take();
    for r in [b, c] {
        let m = of_class(&texts_to(&out, r), "EndpointConnectivityStatusChangeEvent");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0]["endpoint"], "aaaa");
        assert_eq!(m[0]["active"], "false");
    }
    assert!(
        texts_to(&out, a)
            .iter()
            .all(|m| m["colibriClass"] != "EndpointConnectivityStatusChangeEvent")
    );
    // A resumes.
    speak(
        &mut h,
        &[(a, 1000, 127), (b, 2000, 127), (c, 3000, 127)],
        1100,
        &mut seq,
    );
    let m = of_class(
        &texts_to(&h.take(), b),
        "EndpointConnectivityStatusChangeEvent",
    );
    assert_eq!(m.len(), 1);
    assert_eq!(m[0]["active"], "true");
}

#[test]
fn endpoints_expire_after_inactivity_and_then_the_conference() {
    let (mut h, [a, b, c]) = three();
    // B and C keep their transports alive; A is silent.
    for _ in 0..61 {
        h.sfu
            .handle_transport_event(h.now, b, TransportEvent::Activity, &mut h.out);
        h.sfu
            .handle_transport_event(h.now, c, TransportEvent::Activity, &mut h.out);
        h.advance(Duration::from_secs(1));
    }
    let ev = events(&h.take());
    assert!(ev.contains(&Event::EndpointExpired {
        endpoint: a,
        meeting_id: "0b7e0000-meeting".into(),
        endpoint_id: "aaaa".into(),
        reason: ExpireReason::Inactivity,
    }));
    assert!(h.sfu.endpoint_id(a).is_none());
    assert_eq!(h.sfu.stats().endpoints, 2);
    // Media from A's SSRCs is no longer known.
    assert!(
        h.rtp(b, &packet(OPUS, 1, 1, ssrcs(1000).audio, &[], b"a"))
            .is_empty()
    );
    // B's transport fails; C expires by inactivity: the conference goes with the last endpoint.
    h.sfu
        .handle_transport_event(h.now, b, TransportEvent::Failed, &mut h.out);
    let ev = events(&h.take());
    assert!(
        matches!(&ev[0], Event::EndpointExpired { endpoint_id, reason: ExpireReason::TransportFailed, .. } if endpoint_id == "bbbb")
    );
    h.advance(Duration::from_secs(61));
    let ev = events(&h.take());
    assert!(matches!(&ev[0], Event::EndpointExpired { endpoint_id, .. } if endpoint_id == "cccc"));
    assert!(
        matches!(&ev[1], Event::ConferenceExpired { meeting_id, .. } if meeting_id == "0b7e0000-meeting")
    );
    assert!(h.sfu.find_conference("0b7e0000-meeting").is_none());
    assert_eq!(h.sfu.stats(), SfuStats::default());
}

#[test]
fn colibri_expire_of_the_last_endpoint_expires_the_conference() {
    let mut h = H::new();
    let a = h.join("aaaa", 1000);
    let b = h.join("bbbb", 2000);
    assert_eq!(
        h.sfu
            .create_endpoint(h.now, h.conf, h.params("aaaa", 5000), &mut h.out),
        Err(SfuError::EndpointExists("aaaa".into()))
    );
    assert_eq!(
        h.sfu.create_conference(h.now, "0b7e0000-meeting", None),
        Err(SfuError::ConferenceExists("0b7e0000-meeting".into()))
    );
    h.take();
    h.sfu.expire_endpoint(h.now, a, &mut h.out);
    assert_eq!(events(&h.take()).len(), 1);
    h.sfu.expire_endpoint(h.now, b, &mut h.out);
    let ev = events(&h.take());
    assert_eq!(ev.len(), 2);
    assert!(matches!(ev[1], Event::ConferenceExpired { .. }));
    // The meeting id can be used again; the old handle is stale.
    let c2 = h
        .sfu
        .create_conference(h.now, "0b7e0000-meeting", None)
        .unwrap();
    assert_ne!(c2, h.conf);
    assert!(h.sfu.feedback_sources(h.conf).is_none());
    assert!(h.sfu.feedback_sources(c2).is_some());
}

#[test]
fn feedback_ssrcs_are_distinct_per_conference() {
    let mut h = H::new();
    let f1 = h.sfu.feedback_sources(h.conf).unwrap();
    let c2 = h.sfu.create_conference(h.now, "other", None).unwrap();
    let f2 = h.sfu.feedback_sources(c2).unwrap();
    assert_ne!(f1.audio_ssrc, f1.video_ssrc);
    assert_ne!(f1, f2);
    assert_eq!(FeedbackSources::AUDIO_NAME, "jvb-a0");
    assert_eq!(FeedbackSources::VIDEO_NAME, "jvb-v0");
}

#[test]
fn a_conference_nobody_joins_expires_after_the_endpoint_timeout() {
    let mut h = H::new();
    h.advance(Duration::from_secs(59));
    assert!(events(&h.take()).is_empty());
    h.advance(Duration::from_secs(2));
    let ev = events(&h.take());
    assert!(
        matches!(&ev[..], [Event::ConferenceExpired { meeting_id, .. }] if meeting_id == "0b7e0000-meeting")
    );
    assert!(h.sfu.poll_timeout().is_none());
}

// ------------------------------------------------------------------------------------ timers

/// The core's timers are one heap keyed by what fires: however long every endpoint sends (with
/// gaps, so NACKs are scheduled and cancelled), it holds about one entry per armed timer — stale
/// entries leave as they come due — while feedback, NACKs and receiver reports keep flowing.
#[test]
fn the_timer_table_stays_small_while_every_endpoint_sends() {
    let mut h = H::new();
    let n = 12u32;
    let bases: Vec<u32> = (1..=n).map(|i| 1000 * i).collect();
    let eps: Vec<EndpointHandle> = bases.iter().map(|b| h.join(&format!("e{b}"), *b)).collect();
    let mut largest = 0;
    for seq in 0..500u16 {
        if seq % 10 != 3 {
            send_all(&mut h, &eps, &bases, seq);
        }
        h.advance(Duration::from_millis(20));
        largest = largest.max(h.sfu.ctx.timers.len());
    }
    // Seven periodic jobs, an uplink and a downlink per endpoint, and the lowered deadlines still
    // in flight: bounded by the endpoints, not by the 5 000 packets.
    assert!(largest <= 7 + 4 * n as usize, "{largest} entries");
    let c = h.sfu.counters();
    assert!(c.get(Stat::NackSent) > 0);
    assert!(c.get(Stat::TccFeedbackSent) > 0);
    assert!(c.get(Stat::ReceiverReportsSent) >= u64::from(n) * 15);
    // Nothing is due that did not run.
    assert!(h.sfu.poll_timeout().is_some_and(|t| t > h.now));
}

/// One sender flooding `EndpointMessage`s: the burst is relayed, the rest dropped and counted
/// until the budget refills; other senders are not affected.
#[test]
fn relayed_messages_are_rate_limited_per_sender() {
    use crate::sfu::rate::{RELAY_MESSAGE_BURST, RELAY_MESSAGES_PER_SEC};
    let (mut h, [a, b, c]) = three();
    let mut relayed = 0;
    for i in 0..1000 {
        let out = h.msg(
            a,
            json!({"colibriClass":"EndpointMessage","to":"","msgPayload":{"i":i}}),
        );
        relayed += texts_to(&out, b).len();
    }
    assert_eq!(relayed, RELAY_MESSAGE_BURST as usize);
    assert_eq!(
        h.drop_count(DropReason::ChannelRateLimited),
        1000 - u64::from(RELAY_MESSAGE_BURST)
    );
    // Another sender still gets through, stats included.
    let out = h.msg(
        c,
        json!({"colibriClass":"EndpointStats","bitrate":{"upload":100}}),
    );
    assert_eq!(texts_to(&out, b).len(), 1);
    // A second later, the sustained rate.
    h.advance(Duration::from_secs(1));
    let mut relayed = 0;
    for _ in 0..1000 {
        let out = h.msg(
            a,
            json!({"colibriClass":"EndpointStats","bitrate":{"upload":100}}),
        );
        relayed += texts_to(&out, b).len();
    }
    assert_eq!(relayed, RELAY_MESSAGES_PER_SEC as usize);
}

/// A `VideoTypeMessage` that changes nothing runs no allocation; one that changes the type does.
#[test]
fn a_repeated_video_type_does_not_reallocate() {
    let (mut h, [a, ..]) = three();
    let allocations = |h: &H| h.sfu.counters().get(Stat::Allocations);
    h.msg(
        a,
        json!({"colibriClass":"VideoTypeMessage","videoType":"desktop"}),
    );
    let after_change = allocations(&h);
    for _ in 0..10 {
        h.msg(
            a,
            json!({"colibriClass":"VideoTypeMessage","videoType":"desktop"}),
        );
    }
    assert_eq!(allocations(&h), after_change);
    let before = allocations(&h);
    h.msg(
        a,
        json!({"colibriClass":"VideoTypeMessage","videoType":"camera"}),
    );
    assert!(allocations(&h) > before);
}

/// A conference whose timer job panics is removed (its endpoints expire with reason `Fault`,
/// counted); the other conference's timers keep running.
#[test]
fn a_panicking_conference_timer_removes_only_that_conference() {
    let (mut h, [a, ..]) = three();
    let bad = h
        .sfu
        .create_conference(h.now, crate::sfu::TEST_PANIC_TIMER_MEETING, None)
        .unwrap();
    let p = h.params("zzzz", 9000);
    let z = h.sfu.create_endpoint(h.now, bad, p, &mut h.out).unwrap();
    h.take();
    h.advance(Duration::from_secs(2));
    let out = h.take();
    let ev = events(&out);
    assert!(ev.iter().any(|e| matches!(e, Event::EndpointExpired { endpoint, reason: ExpireReason::Fault, .. } if *endpoint == z)), "{ev:?}");
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::ConferenceExpired { conference, .. } if *conference == bad)
        )
    );
    assert!(
        h.sfu
            .find_conference(crate::sfu::TEST_PANIC_TIMER_MEETING)
            .is_none()
    );
    assert_eq!(h.sfu.counters().get(Stat::ConferencesFaulted), 1);
    // The first conference is intact and its periodic jobs still run: its idle endpoints expire
    // for inactivity in time.
    assert_eq!(h.sfu.find_conference("0b7e0000-meeting"), Some(h.conf));
    assert!(h.sfu.endpoint_id(a).is_some());
    h.advance(h.sfu.config().endpoint_expire_timeout + Duration::from_secs(2));
    let ev = events(&h.take());
    assert!(
        ev.iter().any(|e| matches!(e, Event::EndpointExpired { endpoint, reason: ExpireReason::Inactivity, .. } if *endpoint == a)),
        "{ev:?}"
    );
}

/// `/colibri/stats`' link measurements: a receiver's report block echoing a forwarded SR gives its
/// RTT; its fraction lost and the bridge's own view of a sender's gaps give the loss counters;
/// who is sending and what each negotiated give the channel counts.
#[test]
fn link_stats_measure_rtt_loss_jitter_and_senders() {
    let (mut h, [a, b, c]) = three();
    let sa = ssrcs(1000);
    send_all(&mut h, &[a], &[1000], 1);
    let ntp = 0xe000_0000_8000_0000_u64;
    let mut sr = Vec::new();
    rtcp::write_sr(
        &mut sr,
        &rtcp::SenderInfo {
            ssrc: sa.sim[0],
            ntp,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(rtcp_to(&h.rtcp(a, &sr), b).len(), 1);
    // B reports 40 ms later that it held the SR 10 ms (DLSR 655/65536 s) and lost a quarter.
    h.now += Duration::from_millis(40);
    let mut rr = Vec::new();
    rtcp::write_rr(
        &mut rr,
        4242,
        &[rtcp::ReportBlock {
            ssrc: sa.sim[0],
            fraction_lost: 64,
            last_sr: (ntp >> 16) as u32,
            delay_since_last_sr: 655,
            ..Default::default()
        }],
    );
    h.rtcp(b, &rr);
    let s = h.sfu.link_stats(h.now);
    assert!(
        (s.rtt_aggregate_ms() - 30.0).abs() < 1.0,
        "rtt {}",
        s.rtt_aggregate_ms()
    );
    assert_eq!(s.rtt_count, 1, "only B measured one");
    assert_eq!(h.sfu.counters().get(Stat::ReportBlocksReceived), 1);
    assert_eq!(h.sfu.counters().get(Stat::ReportedLossQ8), 64);
    // A sends audio and video; everyone negotiated both; each receiver's allocation forwards
    // the other two cameras.
    assert_eq!(
        (s.endpoints_sending_audio, s.endpoints_sending_video),
        (1, 1)
    );
    assert_eq!((s.audio_channels, s.video_channels), (3, 3));
    assert_eq!(s.video_streams, 6);
    assert!(s.jitter_count >= 2 && s.jitter_aggregate_ms() >= 0.0);
    // A's video jumps from 1 to 12: the next receiver-report interval counts 2..=11 lost.
    h.sfu
        .handle_rtp(h.now, a, &vp8(12, 3000, sa.sim[0], &[], b"v"), &mut h.out);
    let expected_before = h.sfu.counters().get(Stat::PacketsExpected);
    h.advance(Duration::from_millis(1100));
    assert!(h.sfu.counters().get(Stat::PacketsExpected) > expected_before);
    assert_eq!(h.sfu.counters().get(Stat::PacketsLost), 10);
    // Minutes later nobody counts as sending any more.
    h.now += Duration::from_secs(5);
    let s = h.sfu.link_stats(h.now);
    assert_eq!(
        (s.endpoints_sending_audio, s.endpoints_sending_video),
        (0, 0)
    );
    let _ = c;
}

/// JVB's `total_failed_conferences` (nobody connected) and `total_partially_failed_conferences`
/// (some did, some never did), counted when the conference ends.
#[test]
fn conference_outcomes_are_counted_when_they_end() {
    let outcome = |connect: &[bool]| {
        let mut h = H::new();
        let mut eps = Vec::new();
        for (i, &up) in connect.iter().enumerate() {
            let p = h.params(&format!("e{i:03}"), 1000 * (i as u32 + 1));
            let e = h.sfu.create_endpoint(h.now, h.conf, p, &mut h.out).unwrap();
            if up {
                h.sfu
                    .handle_transport_event(h.now, e, TransportEvent::Connected, &mut h.out);
            }
            eps.push(e);
        }
        for e in eps {
            h.sfu
                .handle_transport_event(h.now, e, TransportEvent::Failed, &mut h.out);
        }
        assert!(h.sfu.find_conference("0b7e0000-meeting").is_none());
        (
            h.sfu.counters().get(Stat::ConferencesFailed),
            h.sfu.counters().get(Stat::ConferencesPartiallyFailed),
        )
    };
    assert_eq!(outcome(&[false, false]), (1, 0));
    assert_eq!(outcome(&[true, false]), (0, 1));
    assert_eq!(outcome(&[true, true]), (0, 0));
}

mod ssrc_rewriting;
mod svc;
