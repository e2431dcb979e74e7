//! SVC streams as Chromium 156 sends them, for the codec benches and the allocation test:
//! AV1 `L3T3_KEY` with the Dependency Descriptor (the structure captured from Chromium, its
//! template order) and VP9 `L3T3_KEY` in flexible mode. Packets carry what the codec modules
//! read (the descriptor) and nothing else.

use bridge::sfu::av1::descriptor::{self as dd, Fields, MAX_LEN};
use bridge::sfu::av1::{DdSource, Structure};
use bridge::sfu::vp9::descriptor::Descriptor;
use bridge::sfu::{MediaKind, MediaSourceDesc};
use signaling::rtp_description::{PayloadType, RtpHdrExt, RtpParameters, hdrext};
use signaling::sources::{Semantics, SsrcGroup};

/// Column `col` of the first packet lines of a capture in `bridge/src/sfu/testdata/`.
pub fn captured(col: usize) -> Vec<Vec<u8>> {
    include_str!("../../bridge/src/sfu/testdata/chrome156_av1_l3t3_key.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(' ').nth(col).filter(|h| *h != "-"))
        .map(|h| {
            (0..h.len() / 2)
                .map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

pub struct AvPacket {
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub dd: Vec<u8>,
}

/// `tus` temporal units of Chromium's AV1 L3T3_KEY (structure from the capture), a keyframe every
/// 300.
pub fn av1_stream(structure: &Structure, tus: usize) -> Vec<AvPacket> {
    let mut v = Vec::new();
    let (mut fnum, mut seq, mut ts) = (0u16, 0u16, 0u32);
    for tu in 0..tus {
        let key = tu % 300 == 0;
        let tpls: [u8; 3] = if key {
            [0, 5, 10]
        } else {
            [[1, 6, 11], [3, 8, 13], [2, 7, 12], [4, 9, 14]][(tu % 300) % 4]
        };
        ts = ts.wrapping_add(3000);
        for (sp, &tpl) in tpls.iter().enumerate() {
            fnum = fnum.wrapping_add(1);
            let t = structure.templates()[usize::from(tpl)];
            let n = if t.temporal == 0 { sp + 1 } else { 1 };
            for k in 0..n {
                let mut buf = [0u8; MAX_LEN];
                let len = dd::write(
                    &Fields {
                        structure: Some(structure),
                        attach_structure: (key && sp == 0 && k == 0).then_some(0),
                        ..Fields::mandatory(k == 0, k == n - 1, tpl, fnum)
                    },
                    &mut buf,
                )
                .unwrap();
                seq = seq.wrapping_add(1);
                v.push(AvPacket {
                    seq,
                    ts,
                    marker: sp == 2 && k == n - 1,
                    dd: buf[..len].to_vec(),
                });
            }
        }
    }
    v
}

pub struct Vp9Pkt {
    pub seq: u16,
    pub ts: u32,
    pub marker: bool,
    pub payload: Vec<u8>,
}

const RES: &[(u16, u16)] = &[(320, 180), (640, 360), (1280, 720)];

/// `pictures` pictures of VP9 L3T3_KEY as Chromium 156 sends it (flexible mode, 15-bit
/// PictureIDs, Z on delta frames, SS on keyframes), a keyframe every 300.
pub fn vp9_stream(pictures: usize) -> Vec<Vp9Pkt> {
    let mut v = Vec::new();
    let (mut seq, mut ts) = (0u16, 0u32);
    for n in 0..pictures {
        let key = n % 300 == 0;
        let tid = if key {
            0
        } else {
            [0u8, 2, 1, 2][(n % 300) % 4]
        };
        let pid = (n as u16) & 0x7fff;
        ts = ts.wrapping_add(3000);
        for sid in 0..3u8 {
            let packets = if tid == 0 { usize::from(sid) + 1 } else { 1 };
            for k in 0..packets {
                let mut p = Vec::with_capacity(1200);
                Descriptor {
                    inter_picture: !key,
                    flexible: true,
                    begin: k == 0,
                    end: k == packets - 1,
                    not_ref_for_upper: sid == 2 || !key,
                    picture_id: Some((pid, true)),
                    layers: Some((tid, true, sid, key && sid > 0)),
                    tl0picidx: None,
                    pdiffs: [&[4u8][..], &[2], &[1]][usize::from(tid)],
                    ss: (key && sid == 0 && k == 0).then_some(RES),
                }
                .write(&mut p);
                p.resize(1100, 0x5a);
                seq = seq.wrapping_add(1);
                v.push(Vp9Pkt {
                    seq,
                    ts,
                    marker: sid == 2 && k == packets - 1,
                    payload: p,
                });
            }
        }
    }
    v
}

/// Chromium 156's AV1 L3T3_KEY template dependency structure (from its first keyframe).
pub fn chrome_av1_structure() -> Structure {
    let mut src = DdSource::new();
    src.parse(&captured(3)[0])
        .expect("the captured keyframe parses");
    src.current().expect("a structure").clone()
}

/// AV1 payload type and the Dependency Descriptor's extension id of [`av1_params`].
pub const AV1: u8 = 45;
pub const DD_ID: u8 = 11;

/// Video parameters of an AV1 SVC endpoint: AV1 (NACK, PLI, transport-cc) with RTX, the
/// Dependency Descriptor and transport-cc extensions, two-byte extensions allowed.
pub fn av1_params() -> RtpParameters {
    RtpParameters {
        payload_types: vec![
            PayloadType::new(AV1, "AV1", 90000, None)
                .with_rtcp_fb("nack", None)
                .with_rtcp_fb("nack", Some("pli"))
                .with_rtcp_fb("transport-cc", None),
            PayloadType::new(crate::RTX, "rtx", 90000, None).with_parameter("apt", "45"),
        ],
        header_extensions: vec![
            RtpHdrExt::new(crate::TCC_ID, hdrext::TRANSPORT_CC),
            RtpHdrExt::new(DD_ID, hdrext::AV1_DEPENDENCY_DESCRIPTOR),
        ],
        extmap_allow_mixed: true,
    }
}

/// Sources of an SVC endpoint `i`: audio and one video SSRC (the first of [`crate::ssrcs`]) with
/// its RTX.
pub fn svc_sources(id: &str, i: u32) -> Vec<MediaSourceDesc> {
    let (_, sim, rtx) = crate::ssrcs(i);
    let mut v = crate::sources(id, i);
    for d in v.iter_mut().filter(|d| d.kind == MediaKind::Video) {
        d.sources.retain(|x| x.ssrc == sim[0] || x.ssrc == rtx[0]);
        d.groups = vec![SsrcGroup::new(Semantics::Fid, vec![sim[0], rtx[0]])];
    }
    v
}

/// Where a packet of [`av1_rtp`] keeps its Dependency Descriptor's frame number.
pub const AV1_FRAME_NUMBER_AT: usize = 12 + 4 + 4 + 2 + 1;

/// An AV1 packet as Chromium sends it: two-byte extensions (transport-cc, then the descriptor),
/// `payload_len` bytes of payload.
pub fn av1_rtp(p: &AvPacket, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut v = vec![0x90, AV1 | if p.marker { 0x80 } else { 0 }];
    v.extend_from_slice(&p.seq.to_be_bytes());
    v.extend_from_slice(&p.ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    let mut ext = vec![crate::TCC_ID, 2, 0, 7, DD_ID, p.dd.len() as u8];
    ext.extend_from_slice(&p.dd);
    while ext.len() % 4 != 0 {
        ext.push(0);
    }
    v.extend_from_slice(&0x1000u16.to_be_bytes());
    v.extend_from_slice(&((ext.len() / 4) as u16).to_be_bytes());
    v.extend_from_slice(&ext);
    v.resize(v.len() + payload_len, 0x5a);
    v
}
