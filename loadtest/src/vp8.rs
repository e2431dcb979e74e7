//! VP8 RTP payload (RFC 7741) as a sender writes it: the payload descriptor (PictureID,
//! TL0PICIDX, TID/Y/KEYIDX) and the start of the VP8 frame (RFC 6386 §9.1: frame tag with the
//! first partition's size, and for keyframes the start code and the resolution). Reading is the
//! bridge's parser (`bridge::sfu::vp8::parse`), which is what an SFU inspects to find keyframes,
//! temporal layers and frame sizes.

use bridge::sfu::vp8;

/// The payload descriptor fields we write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// S: first packet of a partition (with `partition == 0`: first packet of the frame).
    pub start: bool,
    /// N: the frame is not used as a reference.
    pub non_reference: bool,
    pub partition: u8,
    /// 15-bit PictureID.
    pub picture_id: Option<u16>,
    pub tl0_pic_idx: Option<u8>,
    pub tid: Option<u8>,
    /// Y: layer sync (the frame depends only on the base layer).
    pub layer_sync: bool,
    pub key_idx: Option<u8>,
}

impl Descriptor {
    /// Appends the descriptor (X set when any extension field is present; PictureID always 15 bits).
    pub fn write(&self, out: &mut Vec<u8>) {
        let ext = self.picture_id.is_some()
            || self.tl0_pic_idx.is_some()
            || self.tid.is_some()
            || self.key_idx.is_some();
        let mut b0 = self.partition & 0x07;
        if ext {
            b0 |= 0x80;
        }
        if self.non_reference {
            b0 |= 0x20;
        }
        if self.start {
            b0 |= 0x10;
        }
        out.push(b0);
        if !ext {
            return;
        }
        let mut b1 = 0u8;
        if self.picture_id.is_some() {
            b1 |= 0x80;
        }
        if self.tl0_pic_idx.is_some() {
            b1 |= 0x40;
        }
        if self.tid.is_some() {
            b1 |= 0x20;
        }
        if self.key_idx.is_some() {
            b1 |= 0x10;
        }
        out.push(b1);
        if let Some(pid) = self.picture_id {
            let pid = pid & 0x7fff;
            out.push(0x80 | (pid >> 8) as u8);
            out.push(pid as u8);
        }
        if let Some(t) = self.tl0_pic_idx {
            out.push(t);
        }
        if self.tid.is_some() || self.key_idx.is_some() {
            let mut b = (self.tid.unwrap_or(0) & 0x03) << 6;
            if self.layer_sync {
                b |= 0x20;
            }
            b |= self.key_idx.unwrap_or(0) & 0x1f;
            out.push(b);
        }
    }
}

/// Appends the 3-byte VP8 frame tag (RFC 6386 §9.1), and for a keyframe the start code and the
/// 14-bit width and height (scale 0). `first_partition_size` is masked to 19 bits.
pub fn write_frame_header(
    out: &mut Vec<u8>,
    keyframe: bool,
    first_partition_size: u32,
    width: u16,
    height: u16,
) {
    // key_frame (0 = key) | version (0) | show_frame (1) | first_part_size.
    let tag = ((first_partition_size & 0x7ffff) << 5) | (1 << 4) | u32::from(!keyframe);
    out.extend_from_slice(&tag.to_le_bytes()[..3]);
    if keyframe {
        out.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&(width & 0x3fff).to_le_bytes());
        out.extend_from_slice(&(height & 0x3fff).to_le_bytes());
    }
}

/// What the first packet of a frame says about the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStart {
    pub keyframe: bool,
    /// Resolution, for keyframes with a valid start code.
    pub size: Option<(u16, u16)>,
}

/// Reads the frame start from an RTP payload (descriptor included); `None` when the packet is not
/// the first packet of a frame or is malformed.
pub fn frame_start(payload: &[u8]) -> Option<FrameStart> {
    let h = vp8::parse(payload).ok()?;
    // A frame start carries at least the frame tag.
    if !h.start_of_frame() || payload.len() <= usize::from(h.descriptor_len) {
        return None;
    }
    Some(FrameStart {
        keyframe: h.keyframe,
        size: h.size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_with_every_field_reads_back_in_the_bridge() {
        let d = Descriptor {
            start: true,
            non_reference: false,
            partition: 0,
            picture_id: Some(0x1234),
            tl0_pic_idx: Some(200),
            tid: Some(2),
            layer_sync: true,
            key_idx: None,
        };
        let mut out = Vec::new();
        d.write(&mut out);
        // X|S, I|L|T, M|pid_hi, pid_lo, tl0, TID=2|Y.
        assert_eq!(out, vec![0x90, 0xE0, 0x92, 0x34, 200, 0xA0]);
        // What the bridge reads from it.
        let h = vp8::parse(&out).unwrap();
        assert!(h.start_of_frame() && !h.non_reference);
        assert_eq!((h.picture_id, h.picture_id_15), (Some(0x1234), true));
        assert_eq!(
            (h.tl0picidx, h.tid, h.layer_sync),
            (Some(200), Some(2), true)
        );
        assert_eq!((h.key_idx, h.descriptor_len), (None, 6));
        // The minimal descriptor.
        let mut min = Vec::new();
        Descriptor {
            start: true,
            ..Descriptor::default()
        }
        .write(&mut min);
        assert_eq!(min, vec![0x10]);
    }

    #[test]
    fn keyframe_header_carries_the_resolution() {
        let mut p = Vec::new();
        Descriptor {
            start: true,
            picture_id: Some(1),
            tid: Some(0),
            tl0_pic_idx: Some(0),
            ..Descriptor::default()
        }
        .write(&mut p);
        write_frame_header(&mut p, true, 1000, 1280, 720);
        p.extend_from_slice(&[0; 20]);
        assert_eq!(
            frame_start(&p),
            Some(FrameStart {
                keyframe: true,
                size: Some((1280, 720))
            })
        );
        // The frame tag's size and show_frame bits, little-endian.
        let tag = u32::from_le_bytes([p[6], p[7], p[8], 0]);
        assert_eq!(tag & 1, 0);
        assert_eq!((tag >> 4) & 1, 1);
        assert_eq!(tag >> 5, 1000);

        let mut q = Vec::new();
        Descriptor {
            start: true,
            picture_id: Some(2),
            ..Descriptor::default()
        }
        .write(&mut q);
        write_frame_header(&mut q, false, 300, 0, 0);
        assert_eq!(
            frame_start(&q),
            Some(FrameStart {
                keyframe: false,
                size: None
            })
        );
        // A continuation packet is not a frame start.
        assert_eq!(frame_start(&[0x80, 0x80, 0x81, 0x02, 1, 2, 3]), None);
        assert_eq!(frame_start(&[]), None);
    }
}
