//! What the forwarding path needs to know about a video packet, per codec: is it the start of a
//! keyframe, which temporal layer does it belong to, and (VP8) the fields the projection rewrites.
//! VP8 gets the full treatment ([`super::vp8`]); H264 and VP9 only keyframe detection (their streams
//! are forwarded by the generic context: one encoding at a time, switching on keyframes); anything
//! else is forwarded without keyframe knowledge.

use super::vp8::{self, Vp8Header};

/// Video codecs the bridge tells apart, from the payload type's encoding name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    Vp8,
    Vp9,
    H264,
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
    /// The VP8 descriptor, when it has PictureID and TID (the frame-tracking VP8 context).
    pub vp8: Option<Vp8Header>,
    /// Frame size from a keyframe header.
    pub size: Option<(u16, u16)>,
}

impl VideoInfo {
    pub fn is_keyframe(&self) -> bool {
        self.keyframe == Some(true)
    }
}

/// Inspects a video payload (RTP payload without padding).
pub fn inspect(codec: Codec, payload: &[u8]) -> VideoInfo {
    match codec {
        Codec::Vp8 => match vp8::parse(payload) {
            Ok(h) => VideoInfo {
                keyframe: Some(h.keyframe),
                tid: h.tid.unwrap_or(0),
                vp8: h.projectable().then_some(h),
                size: h.size,
            },
            Err(_) => VideoInfo::default(),
        },
        Codec::H264 => VideoInfo {
            keyframe: Some(h264_keyframe(payload)),
            ..VideoInfo::default()
        },
        Codec::Vp9 => vp9(payload),
        Codec::Other => VideoInfo::default(),
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
        assert_eq!(Codec::from_name("AV1"), Codec::Other);
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
        assert!(i.vp8.is_some());
        // Without PictureID: no frame tracking, keyframe detection still works.
        let i = inspect(Codec::Vp8, &[0x10, 0x10, 0, 0]);
        assert!(i.is_keyframe() && i.vp8.is_none());
        assert_eq!(inspect(Codec::Vp8, &[]).keyframe, None);
        assert_eq!(inspect(Codec::Other, &[1, 2]).keyframe, None);
        // VP9: I=1 (7-bit pid), L=1, B=1, P=0; layer byte TID=2.
        let i = inspect(Codec::Vp9, &[0xa8, 0x05, 0x40, 0]);
        assert!(i.is_keyframe());
        assert_eq!(i.tid, 2);
        assert!(!inspect(Codec::Vp9, &[0xe8, 0x05, 0x40]).is_keyframe());
    }
}
