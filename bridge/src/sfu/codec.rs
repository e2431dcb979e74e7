//! The codec interface of the forwarding path, ingress and egress side.
//!
//! Ingress, once per packet for all receivers: [`inspect_packet`] turns a video packet into
//! [`VideoInfo`] — keyframe, temporal (and, for SVC codecs, spatial) layer, frame size, and the
//! codec's frame descriptor ([`FrameDesc`]) that selects the projection's codec context
//! (`projection/`). Egress, per receiver: the context returns a [`PayloadRewrite`] that
//! [`PayloadRewrite::apply`] writes into the egress copy; it is logged per sent packet so a
//! retransmission is rewritten exactly as the original.
//!
//! VP8 gets the full treatment ([`super::vp8`]: frame tracking, PictureID/TL0PICIDX rewrite); AV1
//! too, from its Dependency Descriptor header extension, which the sender's stream state parses
//! ([`super::av1::DdSource`], kept per source in `source.rs`: [`with_descriptor`] adds what it
//! found); H264 and VP9 only keyframe detection (forwarded by the generic context: one encoding
//! at a time, switching on keyframes); anything else is forwarded without keyframe knowledge.

use super::av1::{DdInfo, DdSource, descriptor as dd};
use super::rtp::RtpPacket;
use super::vp8::{self, Vp8Header};
use super::vp9::{self, Vp9Info, Vp9Source};

/// Video codecs the bridge tells apart, from the payload type's encoding name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    Vp8,
    Vp9,
    H264,
    Av1,
    #[default]
    Other,
}

impl Codec {
    pub fn from_name(name: &str) -> Self {
        if name.eq_ignore_ascii_case("VP8") {
            Codec::Vp8
        } else if name.eq_ignore_ascii_case("VP9") {
            Codec::Vp9
        } else if name.eq_ignore_ascii_case("H264") {
            Codec::H264
        } else if name.eq_ignore_ascii_case("AV1") {
            Codec::Av1
        } else {
            Codec::Other
        }
    }
}

/// Per-packet facts, computed once per ingress packet and shared by every receiver's projection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VideoInfo {
    /// `Some(true)` for the first packet of a keyframe, `Some(false)` for any other packet of a
    /// codec we can parse, `None` when the codec is unknown (or the payload unparseable).
    pub keyframe: Option<bool>,
    /// Temporal layer, 0 when the stream has no temporal scalability.
    pub tid: u8,
    /// Spatial layer of an SVC codec (VP9, AV1); 0 for VP8 simulcast and H264.
    pub sid: u8,
    /// The codec's frame descriptor: which projection context handles the packet.
    pub frame: FrameDesc,
    /// Frame size from a keyframe header.
    pub size: Option<(u16, u16)>,
}

/// What a codec context of the projection reads from a packet.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FrameDesc {
    /// No frame tracking: the generic context (H264, VP9 for now, VP8 without PictureID or TID,
    /// unknown codecs).
    #[default]
    None,
    /// VP8 with PictureID and TID: the frame-tracking VP8 context.
    Vp8(Vp8Header),
    /// A frame described by the Dependency Descriptor (AV1): the decode-target context.
    Av1(DdInfo),
    /// A VP9 layer frame with PictureID and layer indices: the VP9 SVC/simulcast context.
    Vp9(Vp9Info),
}

/// Per encoding, the state of a sender's stream that parsing its packets keeps and every
/// receiver's codec context reads: the structures later packets refer to.
#[derive(Debug, Clone)]
pub enum StreamState {
    /// AV1: the Dependency Descriptor's template structures.
    Dd(DdSource),
    /// VP9: the scalability structure and the PictureIDs unwrapped.
    Vp9(Vp9Source),
}

impl StreamState {
    pub fn dd(&self) -> Option<&DdSource> {
        match self {
            StreamState::Dd(s) => Some(s),
            StreamState::Vp9(_) => None,
        }
    }

    pub fn vp9(&self) -> Option<&Vp9Source> {
        match self {
            StreamState::Vp9(s) => Some(s),
            StreamState::Dd(_) => None,
        }
    }

    /// Spatial layers of the stream as its structure says (1 without one).
    pub fn spatial_layers(&self) -> u8 {
        match self {
            StreamState::Dd(s) => s.spatial_layers().max(1),
            StreamState::Vp9(s) => s.spatial_layers(),
        }
    }
}

/// The codec-specific part of a forwarded packet's rewrite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PayloadRewrite {
    /// Nothing beyond the RTP header.
    #[default]
    None,
    /// VP8 PictureID (15-bit space, written in the sender's width) and TL0PICIDX.
    Vp8 { picture_id: u16, tl0picidx: u8 },
    /// VP9 PictureID and TL0PICIDX (in the sender's widths) and the RTP marker (end of the
    /// receiver's picture).
    Vp9 {
        picture_id: u16,
        tl0picidx: u8,
        marker: bool,
    },
    /// The Dependency Descriptor as the receiver gets it (written by the downlink into the
    /// extension, [`PayloadRewrite::descriptor`]) and the RTP marker (end of the receiver's
    /// temporal unit).
    Av1 {
        frame_number: u16,
        template_id: u8,
        /// The `template_id_offset` of a structure the packet carries.
        structure_offset: Option<u8>,
        active_decode_targets: Option<u32>,
        marker: bool,
    },
}

impl PayloadRewrite {
    /// Writes the rewrite into `egress`, a forwarded copy of the packet `frame` was parsed from
    /// whose payload starts at `payload_offset`.
    #[inline]
    pub fn apply(&self, frame: &FrameDesc, egress: &mut [u8], payload_offset: usize) {
        self.apply_marker(egress);
        if let (
            PayloadRewrite::Vp9 {
                picture_id,
                tl0picidx,
                ..
            },
            FrameDesc::Vp9(info),
        ) = (self, frame)
            && let Some(payload) = egress.get_mut(payload_offset..)
        {
            // Checked before: the context only forwards what it parsed.
            let _ = vp9::descriptor::rewrite(payload, &info.header, *picture_id, *tl0picidx);
        }
        if let (
            PayloadRewrite::Vp8 {
                picture_id,
                tl0picidx,
            },
            FrameDesc::Vp8(h),
        ) = (self, frame)
            && let Some(payload) = egress.get_mut(payload_offset..)
        {
            vp8::rewrite(payload, h, *picture_id, *tl0picidx);
        }
    }

    /// The same for a packet rebuilt from the retransmission store: the descriptor is parsed
    /// again from `ingress` (the packet as the sender sent it).
    pub fn apply_stored(&self, ingress: &RtpPacket<'_>, egress: &mut [u8], payload_offset: usize) {
        self.apply_marker(egress);
        if let PayloadRewrite::Vp9 {
            picture_id,
            tl0picidx,
            ..
        } = self
            && let Ok(h) = vp9::descriptor::parse(ingress.payload())
            && let Some(payload) = egress.get_mut(payload_offset..)
        {
            let _ = vp9::descriptor::rewrite(payload, &h, *picture_id, *tl0picidx);
        }
        if let PayloadRewrite::Vp8 {
            picture_id,
            tl0picidx,
        } = self
            && let Ok(h) = vp8::parse(ingress.payload())
            && let Some(payload) = egress.get_mut(payload_offset..)
        {
            vp8::rewrite(payload, &h, *picture_id, *tl0picidx);
        }
    }
}

impl PayloadRewrite {
    pub fn is_av1(&self) -> bool {
        matches!(self, PayloadRewrite::Av1 { .. })
    }

    /// AV1: the marker the receiver needs (the sender's marker ends the top spatial layer's
    /// temporal unit; a receiver below it needs it on the last frame it gets).
    fn apply_marker(&self, egress: &mut [u8]) {
        let marker = match self {
            PayloadRewrite::Av1 { marker, .. } | PayloadRewrite::Vp9 { marker, .. } => *marker,
            _ => return,
        };
        if let Some(b1) = egress.get_mut(1) {
            *b1 = (*b1 & 0x7f) | if marker { 0x80 } else { 0 };
        }
    }

    /// AV1: the receiver's Dependency Descriptor of a packet whose sender's descriptor is
    /// `ingress` (the header extension's bytes), written into `out`; its length. Custom fields
    /// are kept. `None` when this is not an AV1 rewrite or the descriptor cannot be written.
    ///
    /// With `info` (the packet's parsed descriptor and the structure it was resolved against,
    /// at first forwarding) the descriptor is written whole: frame number, template id, the
    /// structure at its receiver offset, the active decode targets. Without (a retransmission
    /// rebuilt from the stored packet) the sender's bytes are patched: frame number, template id
    /// and the offset of an attached structure move by the same amounts, the rest is as sent.
    pub fn descriptor(
        &self,
        ingress: &[u8],
        info: Option<(&DdInfo, &dd::Structure)>,
        out: &mut [u8; dd::MAX_LEN],
    ) -> Option<usize> {
        let PayloadRewrite::Av1 {
            frame_number,
            template_id,
            structure_offset,
            active_decode_targets,
            ..
        } = *self
        else {
            return None;
        };
        match info {
            Some((info, structure)) => info
                .write_rewritten(
                    structure,
                    frame_number,
                    template_id,
                    structure_offset,
                    active_decode_targets,
                    out,
                )
                .ok(),
            None => {
                let n = ingress.len();
                let buf = out.get_mut(..n)?;
                buf.copy_from_slice(ingress);
                dd::patch(buf, template_id, frame_number).ok()?;
                Some(n)
            }
        }
    }
}

/// Adds a packet's parsed VP9 payload descriptor to its [`VideoInfo`]: the VP9 context forwards
/// it (layer frames, spatial and temporal ids).
pub fn with_vp9(info: VideoInfo, d: Vp9Info) -> VideoInfo {
    VideoInfo {
        keyframe: Some(d.header.starts_keyframe()),
        tid: d.header.tid,
        sid: d.header.sid,
        frame: FrameDesc::Vp9(d),
        size: info.size,
    }
}

/// Adds a packet's parsed Dependency Descriptor to its [`VideoInfo`]: the descriptor's frame
/// layers and keyframe flag replace what the payload said, and the decode-target context
/// forwards it.
pub fn with_descriptor(info: VideoInfo, d: DdInfo) -> VideoInfo {
    VideoInfo {
        keyframe: Some(d.starts_keyframe()),
        tid: d.descriptor.frame.temporal,
        sid: d.descriptor.frame.spatial,
        frame: FrameDesc::Av1(d),
        size: info.size,
    }
}

/// Inspects a video packet of `codec`. The whole packet, because AV1 describes its frames in a
/// header extension (the Dependency Descriptor, whose negotiated id joins `model::HdrExtIds`).
#[inline]
pub fn inspect_packet(codec: Codec, pkt: &RtpPacket<'_>) -> VideoInfo {
    inspect(codec, pkt.payload())
}

impl VideoInfo {
    pub fn is_keyframe(&self) -> bool {
        self.keyframe == Some(true)
    }
}

/// Inspects a video payload (RTP payload without padding) of a codec that describes its frames
/// in the payload.
pub fn inspect(codec: Codec, payload: &[u8]) -> VideoInfo {
    match codec {
        Codec::Vp8 => match vp8::parse(payload) {
            Ok(h) => VideoInfo {
                keyframe: Some(h.keyframe),
                tid: h.tid.unwrap_or(0),
                sid: 0,
                frame: if h.projectable() {
                    FrameDesc::Vp8(h)
                } else {
                    FrameDesc::None
                },
                size: h.size,
            },
            Err(_) => VideoInfo::default(),
        },
        Codec::H264 => VideoInfo {
            keyframe: Some(h264_keyframe(payload)),
            ..VideoInfo::default()
        },
        Codec::Vp9 => vp9(payload),
        // AV1 describes its frames in the Dependency Descriptor ([`with_descriptor`]).
        Codec::Av1 | Codec::Other => VideoInfo::default(),
    }
}

/// RFC 6184: an IDR slice (5) or SPS (7) in a single NAL unit, any unit of a STAP-A, or the first
/// fragment of an FU-A.
fn h264_keyframe(p: &[u8]) -> bool {
    let is_key = |t: u8| t == 5 || t == 7;
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        24 => {
            let mut off = 1;
            while let Some(sz) = p.get(off..off + 2) {
                let n = usize::from(u16::from_be_bytes([sz[0], sz[1]]));
                if let Some(&h) = p.get(off + 2)
                    && is_key(h & 0x1f)
                {
                    return true;
                }
                off += 2 + n;
            }
            false
        }
        28 => p
            .get(1)
            .is_some_and(|fu| fu & 0x80 != 0 && is_key(fu & 0x1f)),
        t => is_key(t),
    }
}

/// draft-ietf-payload-vp9: first byte `I|P|L|F|B|E|V|Z`; a keyframe starts with B set and P clear.
/// With L, the layer byte follows the PictureID and holds `TID(3)|U|SID(3)|D`.
fn vp9(p: &[u8]) -> VideoInfo {
    let Some(&b0) = p.first() else {
        return VideoInfo::default();
    };
    let mut off = 1;
    if b0 & 0x80 != 0 {
        off += if p.get(1).is_some_and(|b| b & 0x80 != 0) {
            2
        } else {
            1
        };
    }
    let tid = if b0 & 0x20 != 0 {
        p.get(off).map_or(0, |l| l >> 5)
    } else {
        0
    };
    VideoInfo {
        keyframe: Some(b0 & 0x08 != 0 && b0 & 0x40 == 0),
        tid,
        ..VideoInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_names() {
        assert_eq!(Codec::from_name("vp8"), Codec::Vp8);
        assert_eq!(Codec::from_name("H264"), Codec::H264);
        assert_eq!(Codec::from_name("VP9"), Codec::Vp9);
        assert_eq!(Codec::from_name("AV1"), Codec::Av1);
        assert_eq!(Codec::from_name("H265"), Codec::Other);
    }

    #[test]
    fn h264_keyframes() {
        assert!(h264_keyframe(&[0x65, 1, 2])); // IDR
        assert!(h264_keyframe(&[0x67, 1])); // SPS
        assert!(!h264_keyframe(&[0x41, 1])); // non-IDR slice
        assert!(h264_keyframe(&[0x18, 0, 2, 0x67, 0x00, 0, 1, 0x68])); // STAP-A with SPS
        assert!(!h264_keyframe(&[0x18, 0, 1, 0x41, 0, 9])); // STAP-A, truncated second unit
        assert!(h264_keyframe(&[0x7c, 0x85, 1])); // FU-A start of IDR
        assert!(!h264_keyframe(&[0x7c, 0x05, 1])); // FU-A continuation
        assert!(!h264_keyframe(&[]));
    }

    #[test]
    fn vp8_and_vp9_info() {
        let mut p = Vec::new();
        vp8::Descriptor {
            start_of_partition: true,
            partition_id: 0,
            non_reference: false,
            picture_id: Some((3, true)),
            tl0picidx: Some(1),
            tid: Some((1, false)),
            key_idx: None,
        }
        .write(&mut p);
        vp8::write_frame_header(&mut p, true, 640, 360);
        let i = inspect(Codec::Vp8, &p);
        assert!(i.is_keyframe());
        assert_eq!((i.tid, i.size), (1, Some((640, 360))));
        assert!(matches!(i.frame, FrameDesc::Vp8(_)));
        // Without PictureID: no frame tracking, keyframe detection still works.
        let i = inspect(Codec::Vp8, &[0x10, 0x10, 0, 0]);
        assert!(i.is_keyframe() && i.frame == FrameDesc::None);
        assert_eq!(inspect(Codec::Vp8, &[]).keyframe, None);
        assert_eq!(inspect(Codec::Other, &[1, 2]).keyframe, None);
        // VP9: I=1 (7-bit pid), L=1, B=1, P=0; layer byte TID=2.
        let i = inspect(Codec::Vp9, &[0xa8, 0x05, 0x40, 0]);
        assert!(i.is_keyframe());
        assert_eq!(i.tid, 2);
        assert!(!inspect(Codec::Vp9, &[0xe8, 0x05, 0x40]).is_keyframe());
    }
}
