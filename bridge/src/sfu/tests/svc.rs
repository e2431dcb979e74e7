//! SVC through the whole core: a sender of one SSRC with three spatial layers (320x180 /
//! 640x360 / 1280x720) and three temporal layers — AV1 with Chromium's `L3T3_KEY` structure and
//! Dependency Descriptor, VP9 `L3T3_KEY` (K-SVC, flexible mode, as Chromium sends it) and VP9
//! full SVC in non-flexible mode with its scalability structure — and a receiver whose
//! bandwidth changes. What the receiver gets is checked by the codec's decoder model
//! (`av1::tests::Receiver`, `vp9::tests::Receiver`: contiguous sequence numbers, growing frame
//! numbers / PictureIDs, every frame's references received, the layer shown per temporal unit)
//! and the keyframe requests the bridge sends the sender are counted.

use super::*;
use crate::sfu::av1::tests::{Receiver, Sender, chrome_structure};
use crate::sfu::vp9::tests as vp9t;

const AV1: u8 = 45;
const AV1_RTX: u8 = 46;
const VP9: u8 = 98;
const VP9_RTX: u8 = 99;
const DD_ID: u8 = 11;
/// Payload bytes per packet by spatial layer (≈ 60 / 210 / 600 kbps per decode target at 30 fps).
const PAYLOAD: [usize; 3] = [250, 500, 1000];

fn svc_params() -> RtpParameters {
    let codec = |pt, name| {
        PayloadType::new(pt, name, 90000, None)
            .with_rtcp_fb("nack", None)
            .with_rtcp_fb("nack", Some("pli"))
            .with_rtcp_fb("transport-cc", None)
    };
    RtpParameters {
        payload_types: vec![
            codec(AV1, "AV1"),
            PayloadType::new(AV1_RTX, "rtx", 90000, None).with_parameter("apt", "45"),
            codec(VP9, "VP9"),
            PayloadType::new(VP9_RTX, "rtx", 90000, None).with_parameter("apt", "98"),
        ],
        header_extensions: vec![
            RtpHdrExt::new(TCC_ID, hdrext::TRANSPORT_CC),
            RtpHdrExt::new(DD_ID, hdrext::AV1_DEPENDENCY_DESCRIPTOR),
        ],
        extmap_allow_mixed: true,
    }
}

/// One SVC video source (one SSRC b+10 and its RTX b+20) and audio.
fn svc_sources(id: &str, b: u32) -> Vec<MediaSourceDesc> {
    let s = ssrcs(b);
    let mut v = sources(id, b);
    for d in v.iter_mut().filter(|d| d.kind == MediaKind::Video) {
        d.sources
            .retain(|x| x.ssrc == s.sim[0] || x.ssrc == s.rtx[0]);
        d.groups = vec![SsrcGroup::new(Semantics::Fid, vec![s.sim[0], s.rtx[0]])];
    }
    v
}

/// An RTP packet with two-byte extensions (the descriptor with a structure exceeds 16 bytes).
fn packet_two_byte(
    pt: u8,
    (seq, ts, ssrc, marker): (u16, u32, u32, bool),
    exts: &[(u8, &[u8])],
    payload: &[u8],
    payload_len: usize,
) -> Vec<u8> {
    let mut v = vec![0x90, pt | if marker { 0x80 } else { 0 }];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    let mut data = Vec::new();
    for (id, d) in exts {
        data.push(*id);
        data.push(d.len() as u8);
        data.extend_from_slice(d);
    }
    while data.len() % 4 != 0 {
        data.push(0);
    }
    v.extend_from_slice(&[0x10, 0x00]);
    v.extend_from_slice(&((data.len() / 4) as u16).to_be_bytes());
    v.extend_from_slice(&data);
    v.extend_from_slice(payload);
    v.resize(v.len() + payload_len.saturating_sub(payload.len()), 0x5a);
    v
}

/// The sender and the receiver's decoder of one codec.
enum Model {
    Av1(Box<Sender>, Box<Receiver>),
    Vp9(Box<vp9t::Sender>, Box<vp9t::Receiver>),
}

/// One packet a sender model emits: `(seq, ts, marker)`, spatial layer, descriptor extension,
/// payload.
type SentPacket = ((u16, u32, bool), usize, Option<Vec<u8>>, Vec<u8>);

impl Model {
    fn av1() -> Self {
        Model::Av1(
            Box::new(Sender {
                structure: chrome_structure(),
                frame_number: 65000, // wraps during the run
                seq: 65000,
                ts: 0,
                since_key: 0,
            }),
            Box::default(),
        )
    }

    fn vp9(ksvc_flexible: bool) -> Self {
        Model::Vp9(
            Box::new(vp9t::Sender {
                ksvc_flexible,
                pid: 0x7f00, // wraps during the run
                tl0: 200,
                seq: 65000,
                ts: 0,
                since_key: 0,
            }),
            Box::default(),
        )
    }

    fn pt(&self) -> (u8, u8) {
        match self {
            Model::Av1(..) => (AV1, AV1_RTX),
            Model::Vp9(..) => (VP9, VP9_RTX),
        }
    }

    fn temporal_unit(&mut self, keyframe: bool) -> Vec<SentPacket> {
        match self {
            Model::Av1(sender, _) => {
                let packets = sender.temporal_unit(keyframe);
                packets
                    .into_iter()
                    .map(|p| {
                        let spatial = av1_spatial_of(sender, &p.dd);
                        ((p.seq, p.ts, p.marker), spatial, Some(p.dd), Vec::new())
                    })
                    .collect()
            }
            Model::Vp9(sender, _) => sender
                .picture(keyframe)
                .into_iter()
                .map(|p| {
                    let sid = crate::sfu::vp9::descriptor::parse(&p.payload).unwrap().sid;
                    ((p.seq, p.ts, p.marker), usize::from(sid), None, p.payload)
                })
                .collect(),
        }
    }

    /// A packet the receiver got, into its decoder model.
    fn receive(&mut self, q: &RtpPacket<'_>) {
        match self {
            Model::Av1(_, rx) => {
                let dd = q
                    .extension(DD_ID)
                    .expect("the receiver gets the descriptor");
                rx.on_packet(q.sequence_number(), q.timestamp(), q.marker(), dd);
            }
            Model::Vp9(_, rx) => {
                rx.on_packet(q.sequence_number(), q.timestamp(), q.marker(), q.payload())
            }
        }
    }

    fn shown(&self) -> &[(u32, u8)] {
        match self {
            Model::Av1(_, rx) => &rx.shown,
            Model::Vp9(_, rx) => &rx.shown,
        }
    }

    fn keyframes(&self) -> usize {
        match self {
            Model::Av1(_, rx) => rx.keyframes,
            Model::Vp9(_, rx) => rx.keyframes,
        }
    }
}

fn av1_spatial_of(sender: &Sender, dd: &[u8]) -> usize {
    let tpl = usize::from(dd[0] & 0x3f);
    let s = &sender.structure;
    let i = (tpl + 64 - usize::from(s.template_id_offset)) % 64;
    usize::from(s.templates()[i].spatial).min(2)
}

/// The scenario's state: the harness, the sender model and the receiver's decoder model.
struct Svc {
    h: H,
    a: EndpointHandle,
    b: EndpointHandle,
    model: Model,
    /// Keyframe requests (PLI) the bridge sent the sender.
    plis: usize,
    keyframe_pending: bool,
    tcc: u16,
    /// The AV1 packets the receiver got, by sequence number.
    got: std::collections::HashMap<u16, Vec<u8>>,
    newest: Option<u16>,
    /// The SSRC the sender sends on.
    ssrc: u32,
}

impl Svc {
    /// A sender that signals one SSRC (and its RTX).
    fn new(model: Model) -> Self {
        Svc::signalling(model, false, 0)
    }

    /// `simulcast_group`: the sender signals three SSRCs in a SIM group, as the current
    /// lib-jitsi-meet does in full-SVC mode (three send encodings, one active), and sends its SVC
    /// stream on the `active`-th.
    fn signalling(model: Model, simulcast_group: bool, active: usize) -> Self {
        let mut h = H::with_config(SfuConfig {
            assumed_bandwidth_limit: Some(100_000_000),
            ..SfuConfig::default()
        });
        let params = |id: &str, b: u32| EndpointParams {
            id: id.into(),
            stats_id: None,
            audio: audio_params(AUDIO_LEVEL_ID),
            video: svc_params(),
            sources: if simulcast_group {
                sources(id, b)
            } else {
                svc_sources(id, b)
            },
            ..Default::default()
        };
        let a = h.join_with(params("aaaa", 1000));
        let b = h.join_with(params("bbbb", 2000));
        h.take();
        Svc {
            h,
            a,
            b,
            model,
            plis: 0,
            keyframe_pending: true,
            tcc: 0,
            got: std::collections::HashMap::new(),
            newest: None,
            ssrc: ssrcs(1000).sim[active],
        }
    }

    fn bandwidth(&mut self, bps: u64) {
        let out = self.h.msg(
            self.b,
            json!({
                "colibriClass": "ReceiverVideoConstraints",
                "onStageSources": ["aaaa-v0"],
                "defaultConstraints": {"maxHeight": 720},
                "constraints": {"aaaa-v0": {"maxHeight": 720}},
                "assumedBandwidthBps": bps,
            }),
        );
        self.observe(&out);
    }

    /// What the bridge emitted: the receiver's media into its decoder model, PLIs to the sender.
    fn observe(&mut self, out: &[OwnedOutput]) {
        for p in rtp_to(out, self.b) {
            let q = RtpPacket::parse(&p).unwrap();
            if q.payload_type() != self.model.pt().0 {
                continue;
            }
            self.model.receive(&q);
            self.got.insert(q.sequence_number(), p.clone());
            self.newest = Some(q.sequence_number());
        }
        for p in rtcp_to(out, self.a) {
            let c = Compound::parse(&p).unwrap();
            for pk in c.packets() {
                if matches!(pk, Packet::Pli(_) | Packet::Fir(_)) {
                    self.plis += 1;
                    self.keyframe_pending = true;
                }
            }
        }
    }

    /// `n` temporal units at 30 fps; a requested keyframe comes with the next one.
    fn run(&mut self, n: usize) {
        let ssrc = self.ssrc;
        for _ in 0..n {
            self.h.advance(Duration::from_millis(33));
            let out = self.h.take();
            self.observe(&out);
            let key = std::mem::take(&mut self.keyframe_pending);
            for ((seq, ts, marker), spatial, dd, payload) in self.model.temporal_unit(key) {
                assert_eq!(
                    self.h.drop_count(DropReason::RtpMalformedDescriptor),
                    0,
                    "the sender's descriptors parse"
                );
                self.tcc = self.tcc.wrapping_add(1);
                let tcc = self.tcc.to_be_bytes();
                let mut exts: Vec<(u8, &[u8])> = vec![(TCC_ID, &tcc)];
                if let Some(dd) = &dd {
                    exts.push((DD_ID, dd));
                }
                let pkt = packet_two_byte(
                    self.model.pt().0,
                    (seq, ts, ssrc, marker),
                    &exts,
                    &payload,
                    PAYLOAD[spatial],
                );
                let out = self.h.rtp(self.a, &pkt);
                self.observe(&out);
            }
        }
    }

    /// The spatial layer the receiver showed in each of the last `n` temporal units.
    fn shown(&self, n: usize) -> Vec<u8> {
        let s = self.model.shown();
        s[s.len().saturating_sub(n)..].iter().map(|x| x.1).collect()
    }
}

#[test]
fn av1_l3t3_key_receiver_follows_its_bandwidth_across_spatial_layers() {
    follows_bandwidth(Model::av1());
}

#[test]
fn vp9_l3t3_key_receiver_follows_its_bandwidth_across_spatial_layers() {
    follows_bandwidth(Model::vp9(true));
}

#[test]
fn vp9_full_svc_non_flexible_receiver_follows_its_bandwidth_across_spatial_layers() {
    follows_bandwidth(Model::vp9(false));
}

/// The current lib-jitsi-meet in full SVC signals a SIM group of three SSRCs and sends one SVC
/// stream on one of them (`modern-client.md`, TPCUtils `calculateEncodingsActiveState`): the
/// spatial layers of that stream are what the allocation chooses from, whichever SSRC carries it.
#[test]
fn av1_svc_on_one_ssrc_of_a_simulcast_group_reaches_720p() {
    for active in 0..3 {
        follows_bandwidth_in(Svc::signalling(Model::av1(), true, active));
    }
}

#[test]
fn vp9_svc_on_one_ssrc_of_a_simulcast_group_reaches_720p() {
    for active in 0..3 {
        follows_bandwidth_in(Svc::signalling(Model::vp9(true), true, active));
    }
}

/// 720p at high bandwidth, 360p and 180p as it drops (no keyframe: the structure allows it),
/// 720p again (K-SVC: the upper layers restart at a keyframe, one request); NACKs answered with
/// the receiver's rewrite.
fn follows_bandwidth(model: Model) {
    follows_bandwidth_in(Svc::new(model))
}

fn follows_bandwidth_in(mut s: Svc) {
    // A receiver with plenty of bandwidth ends at 720p (spatial layer 2).
    s.bandwidth(5_000_000);
    s.run(90);
    assert!(s.model.keyframes() >= 1);
    assert_eq!(s.shown(30), vec![2; 30], "720p at high bandwidth");
    let plis_before = s.plis;
    let keyframes_before = s.model.keyframes();

    // Bandwidth for 360p, then for 180p only: down with no keyframe (K-SVC: the lower layers'
    // chains were kept intact for this receiver).
    s.bandwidth(300_000);
    s.run(60);
    assert_eq!(s.shown(30), vec![1; 30], "360p at medium bandwidth");
    s.bandwidth(100_000);
    s.run(60);
    assert_eq!(s.shown(30), vec![0; 30], "180p at low bandwidth");
    assert_eq!(s.plis, plis_before, "a down-switch needs no keyframe");
    assert_eq!(s.model.keyframes(), keyframes_before);

    // Back up: K-SVC's upper layers start at a keyframe; one request, not a storm.
    s.bandwidth(5_000_000);
    s.run(90);
    assert_eq!(s.shown(30), vec![2; 30], "720p again");
    assert!(
        (1..=3).contains(&(s.plis - plis_before)),
        "keyframe requests for the up-switch: {}",
        s.plis - plis_before
    );
    assert_eq!(
        s.h.drop_count(DropReason::RtpMalformedDescriptor),
        0,
        "every descriptor parsed"
    );

    // NACKs are answered with RTX copies of exactly what the receiver got: the descriptor's
    // frame number and template id as rewritten, the marker, the payload.
    let newest = s.newest.unwrap();
    let lost: Vec<u16> = [40u16, 20, 2]
        .iter()
        .map(|d| newest.wrapping_sub(*d))
        .collect();
    let mut nack = Vec::new();
    rtcp::write_nack(&mut nack, 0x2222, ssrcs(1000).sim[0], &lost);
    let out = s.h.rtcp(s.b, &nack);
    let rtx = rtp_to(&out, s.b);
    assert_eq!(rtx.len(), 3);
    for p in rtx {
        let q = RtpPacket::parse(&p).unwrap();
        assert_eq!(
            (q.ssrc(), q.payload_type()),
            (ssrcs(1000).rtx[0], s.model.pt().1)
        );
        let osn = u16::from_be_bytes([q.payload()[0], q.payload()[1]]);
        let orig = s.got.get(&osn).expect("a packet the receiver got");
        let o = RtpPacket::parse(orig).unwrap();
        if let Model::Av1(..) = s.model {
            let (dd, odd) = (q.extension(DD_ID).unwrap(), o.extension(DD_ID).unwrap());
            assert_eq!(dd[..3], odd[..3], "frame number and template id as sent");
        }
        assert_eq!(q.marker(), o.marker());
        assert_eq!(&q.payload()[2..], o.payload());
    }
}
