//! The conference model the forwarding path reads: what an endpoint negotiated (payload types,
//! feedback, header extension ids) in a per-packet friendly form, the source descriptions with
//! their encodings as COLIBRI2 registers them, and the SSRC-keyed map and sequence window the
//! uplink tables use.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use signaling::rtp_description::{RtpParameters, hdrext};
use signaling::sources::{Semantics, Source, SsrcGroup, VideoType};

use super::codec::Codec;

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Audio,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Audio => "audio",
            MediaKind::Video => "video",
        }
    }
}

/// One COLIBRI2 `media-source` of an endpoint: its name (`<endpoint>-a0`, `<endpoint>-v0`), kind,
/// the `source` elements and `ssrc-group`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSourceDesc {
    pub kind: MediaKind,
    pub name: String,
    pub sources: Vec<Source>,
    pub groups: Vec<SsrcGroup>,
}

impl MediaSourceDesc {
    /// The encodings: the SIM group's SSRCs in order (lowest first), or, without SIM, each source
    /// SSRC that is not the repair partner of another; each with its FID (RTX) and FEC-FR partners.
    pub fn encodings(&self) -> Vec<Encoding> {
        let partner = |sem: &Semantics, ssrc: u32| {
            self.groups
                .iter()
                .filter(|g| &g.semantics == sem)
                .find(|g| g.ssrcs.first() == Some(&ssrc))
                .and_then(|g| g.ssrcs.get(1).copied())
        };
        let is_secondary = |ssrc: u32| {
            self.groups.iter().any(|g| {
                matches!(g.semantics, Semantics::Fid | Semantics::FecFr)
                    && g.ssrcs.iter().skip(1).any(|s| *s == ssrc)
            })
        };
        let primaries: Vec<u32> = match self.groups.iter().find(|g| g.semantics == Semantics::Sim) {
            Some(sim) => sim.ssrcs.clone(),
            None => self
                .sources
                .iter()
                .map(|s| s.ssrc)
                .filter(|s| !is_secondary(*s))
                .collect(),
        };
        let mut out: Vec<Encoding> = Vec::new();
        for p in primaries {
            if out.iter().any(|e| e.ssrc == p) {
                continue;
            }
            out.push(Encoding {
                ssrc: p,
                rtx: partner(&Semantics::Fid, p),
                fec: partner(&Semantics::FecFr, p),
            });
        }
        out
    }

    pub fn video_type(&self) -> VideoType {
        self.sources
            .iter()
            .find_map(|s| s.video_type)
            .unwrap_or(VideoType::Camera)
    }
}

/// One simulcast encoding (or the only one): its media SSRC and repair SSRCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    pub ssrc: u32,
    pub rtx: Option<u32>,
    pub fec: Option<u32>,
}

/// A 512-packet window of received sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct SeqWindow {
    highest: Option<u16>,
    bits: [u64; 8],
}

impl SeqWindow {
    const SIZE: u16 = 512;

    fn bit(&mut self, seq: u16) -> (usize, u64) {
        let i = usize::from(seq % Self::SIZE);
        (i / 64, 1u64 << (i % 64))
    }

    /// Records `seq`; returns false if it was already recorded (or is too old to tell).
    pub fn insert(&mut self, seq: u16) -> bool {
        let Some(h) = self.highest else {
            self.highest = Some(seq);
            let (w, b) = self.bit(seq);
            self.bits[w] |= b;
            return true;
        };
        let d = seq.wrapping_sub(h);
        if d != 0 && d < 0x8000 {
            // Newer: clear the numbers between the old highest and this one.
            if d >= Self::SIZE {
                self.bits = [0; 8];
            } else {
                for k in 1..=d {
                    let (w, b) = self.bit(h.wrapping_add(k));
                    self.bits[w] &= !b;
                }
            }
            self.highest = Some(seq);
        } else if h.wrapping_sub(seq) >= Self::SIZE {
            return false;
        }
        let (w, b) = self.bit(seq);
        let new = self.bits[w] & b == 0;
        self.bits[w] |= b;
        new
    }
}

/// Identity hasher tweak for SSRC keys: SSRCs are random 32-bit values chosen by the senders, so a
/// multiplicative mix is enough and much cheaper than SipHash. Lookups of attacker-chosen keys only
/// cost a probe; the table contents come from signalling.
#[derive(Default, Clone, Copy)]
pub struct SsrcHasher(u64);

impl Hasher for SsrcHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.0 = (u64::from(v) ^ 0x5bd1_e995).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type SsrcMap<V> = HashMap<u32, V, BuildHasherDefault<SsrcHasher>>;

/// Header extension ids an endpoint negotiated, 0 = not negotiated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HdrExtIds {
    pub audio_level: u8,
    pub transport_cc: u8,
    pub video_orientation: u8,
    /// The AV1 Dependency Descriptor (`hdrext::AV1_DEPENDENCY_DESCRIPTOR`).
    pub dependency_descriptor: u8,
    /// `urn:ietf:params:rtp-hdrext:sdes:mid`: stamped on what an SSRC-rewriting receiver with
    /// `rtp-mid-demux` gets (`ssrc_slots`), never forwarded from senders.
    pub mid: u8,
}

/// One endpoint's negotiated parameters for one media kind, in per-packet friendly form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaParams {
    /// Bit `pt` set if payload type `pt` was negotiated.
    pub pts: u128,
    /// Bit `pt` set if `pt` negotiated generic NACK (`rtcp-fb nack` without subtype).
    pub nack: u128,
    /// `(apt, rtx pt)` for each RTX payload type.
    pub rtx: Vec<(u8, u8)>,
    /// `(pt, clock rate)`.
    pub clock_rates: Vec<(u8, u32)>,
    /// `(pt, codec)` of the video payload types the bridge tells apart.
    pub codecs: Vec<(u8, Codec)>,
    pub pli: bool,
    pub fir: bool,
    pub ext: HdrExtIds,
    pub allow_mixed: bool,
}

impl MediaParams {
    pub fn from_rtp(p: &RtpParameters) -> Self {
        let mut m = MediaParams {
            allow_mixed: p.extmap_allow_mixed,
            ..MediaParams::default()
        };
        for pt in &p.payload_types {
            if pt.id > 127 {
                continue;
            }
            m.pts |= 1u128 << pt.id;
            if let Some(apt) = pt.apt() {
                m.rtx.push((apt, pt.id));
            }
            if pt.has_rtcp_fb("nack", None) {
                m.nack |= 1u128 << pt.id;
            }
            m.pli |= pt.has_rtcp_fb("nack", Some("pli"));
            m.fir |= pt.has_rtcp_fb("ccm", Some("fir"));
            if let Some(c) = pt.clockrate {
                m.clock_rates.push((pt.id, c));
            }
            let codec = Codec::from_name(&pt.name);
            if codec != Codec::Other {
                m.codecs.push((pt.id, codec));
            }
        }
        let id = |uri| p.hdrext_id(uri).unwrap_or(0);
        m.ext = HdrExtIds {
            audio_level: id(hdrext::AUDIO_LEVEL),
            transport_cc: id(hdrext::TRANSPORT_CC),
            video_orientation: id(hdrext::VIDEO_ORIENTATION),
            dependency_descriptor: id(hdrext::AV1_DEPENDENCY_DESCRIPTOR),
            mid: id(hdrext::MID),
        };
        m
    }

    #[inline]
    pub fn has_pt(&self, pt: u8) -> bool {
        pt < 128 && self.pts & (1u128 << pt) != 0
    }

    #[inline]
    pub fn has_nack(&self, pt: u8) -> bool {
        pt < 128 && self.nack & (1u128 << pt) != 0
    }

    pub fn rtx_pt_for(&self, apt: u8) -> Option<u8> {
        self.rtx.iter().find(|(a, _)| *a == apt).map(|(_, r)| *r)
    }

    /// The payload type an RTX payload type repairs.
    pub fn apt_of(&self, rtx_pt: u8) -> Option<u8> {
        self.rtx.iter().find(|(_, r)| *r == rtx_pt).map(|(a, _)| *a)
    }

    #[inline]
    pub fn codec(&self, pt: u8) -> Codec {
        self.codecs
            .iter()
            .find(|(p, _)| *p == pt)
            .map_or(Codec::Other, |(_, c)| *c)
    }

    pub fn clock_rate(&self, pt: u8) -> Option<u32> {
        self.clock_rates
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signaling::rtp_description::{PayloadType, RtpHdrExt};

    #[test]
    fn encodings_from_sim_and_fid_groups() {
        let d = MediaSourceDesc {
            kind: MediaKind::Video,
            name: "a-v0".into(),
            sources: [1, 2, 3, 11, 12, 13].map(Source::new).to_vec(),
            groups: vec![
                SsrcGroup::new(Semantics::Sim, vec![1, 2, 3]),
                SsrcGroup::new(Semantics::Fid, vec![1, 11]),
                SsrcGroup::new(Semantics::Fid, vec![2, 12]),
                SsrcGroup::new(Semantics::Fid, vec![3, 13]),
            ],
        };
        let e = d.encodings();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            Encoding {
                ssrc: 1,
                rtx: Some(11),
                fec: None
            }
        );
        assert_eq!(e[2].rtx, Some(13));

        // No SIM: the non-secondary SSRC is the one encoding.
        let d = MediaSourceDesc {
            groups: vec![SsrcGroup::new(Semantics::Fid, vec![5, 6])],
            sources: [6, 5].map(Source::new).to_vec(),
            ..d
        };
        assert_eq!(
            d.encodings(),
            vec![Encoding {
                ssrc: 5,
                rtx: Some(6),
                fec: None
            }]
        );
    }

    #[test]
    fn media_params_from_rtp_parameters() {
        let p = RtpParameters {
            payload_types: vec![
                PayloadType::new(100, "VP8", 90000, None)
                    .with_rtcp_fb("nack", None)
                    .with_rtcp_fb("nack", Some("pli"))
                    .with_rtcp_fb("ccm", Some("fir")),
                PayloadType::new(96, "rtx", 90000, None).with_parameter("apt", "100"),
            ],
            header_extensions: vec![
                RtpHdrExt::new(5, hdrext::TRANSPORT_CC),
                RtpHdrExt::new(11, hdrext::VIDEO_ORIENTATION),
            ],
            extmap_allow_mixed: true,
        };
        let m = MediaParams::from_rtp(&p);
        assert!(m.has_pt(100) && m.has_pt(96) && !m.has_pt(101) && !m.has_pt(200));
        assert!(m.has_nack(100) && !m.has_nack(96));
        assert_eq!(m.rtx_pt_for(100), Some(96));
        assert!(m.pli && m.fir && m.allow_mixed);
        assert_eq!(m.ext.transport_cc, 5);
        assert_eq!(m.ext.video_orientation, 11);
        assert_eq!(m.clock_rate(100), Some(90000));
        assert_eq!(m.codec(100), Codec::Vp8);
        assert_eq!(m.codec(96), Codec::Other);
        assert_eq!(m.apt_of(96), Some(100));
        assert_eq!(m.ext.dependency_descriptor, 0);
    }

    #[test]
    fn dependency_descriptor_id_from_the_colibri2_media() {
        // As the focus offers AV1 (focus/src/core/offer.rs): the descriptor under id 11.
        let xml = format!(
            "<media xmlns='{}' type='video'>\
             <payload-type xmlns='{}' id='41' name='AV1' clockrate='90000'/>\
             <rtp-hdrext xmlns='{}' id='11' uri='{}'/></media>",
            signaling::ns::COLIBRI2,
            signaling::ns::JINGLE_RTP,
            signaling::ns::JINGLE_RTP_HDREXT,
            hdrext::AV1_DEPENDENCY_DESCRIPTOR
        );
        let el: signaling::xml::Element = xml.parse().unwrap();
        let m = MediaParams::from_rtp(&RtpParameters::parse_from(&el).unwrap());
        assert_eq!(m.ext.dependency_descriptor, 11);
        assert_eq!(m.codec(41), Codec::Av1);
    }

    #[test]
    fn seq_window_finds_duplicates() {
        let mut w = SeqWindow::default();
        assert!(w.insert(65530));
        assert!(!w.insert(65530));
        assert!(w.insert(2)); // across the wrap
        assert!(w.insert(65533)); // late, not a duplicate
        assert!(!w.insert(65533));
        assert!(!w.insert(65000)); // too old to tell
        assert!(w.insert(1000));
        assert!(w.insert(600));
        assert!(!w.insert(1000));
    }
}
