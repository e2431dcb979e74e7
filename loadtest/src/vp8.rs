//! VP8 RTP payload (RFC 7741): the payload descriptor (PictureID, TL0PICIDX, TID/Y/KEYIDX) and
//! the start of the VP8 frame (RFC 6386 §9.1: frame tag, and for keyframes the start code and the
//! resolution), which is what an SFU inspects to find keyframes, temporal layers and frame sizes.

/// The payload descriptor fields we write and read.
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

/// Why a payload is not a valid VP8 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Vp8Error {
    #[error("VP8 payload descriptor truncated")]
    Truncated,
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

    /// Parses the descriptor; returns it and its length.
    pub fn parse(p: &[u8]) -> Result<(Descriptor, usize), Vp8Error> {
        let b0 = *p.first().ok_or(Vp8Error::Truncated)?;
        let mut d = Descriptor {
            start: b0 & 0x10 != 0,
            non_reference: b0 & 0x20 != 0,
            partition: b0 & 0x07,
            ..Descriptor::default()
        };
        let mut i = 1;
        if b0 & 0x80 == 0 {
            return Ok((d, i));
        }
        let b1 = *p.get(i).ok_or(Vp8Error::Truncated)?;
        i += 1;
        if b1 & 0x80 != 0 {
            let hi = *p.get(i).ok_or(Vp8Error::Truncated)?;
            if hi & 0x80 != 0 {
                let lo = *p.get(i + 1).ok_or(Vp8Error::Truncated)?;
                d.picture_id = Some((u16::from(hi & 0x7f) << 8) | u16::from(lo));
                i += 2;
            } else {
                d.picture_id = Some(u16::from(hi));
                i += 1;
            }
        }
        if b1 & 0x40 != 0 {
            d.tl0_pic_idx = Some(*p.get(i).ok_or(Vp8Error::Truncated)?);
            i += 1;
        }
        if b1 & 0x30 != 0 {
            let b = *p.get(i).ok_or(Vp8Error::Truncated)?;
            if b1 & 0x20 != 0 {
                d.tid = Some(b >> 6);
                d.layer_sync = b & 0x20 != 0;
            }
            if b1 & 0x10 != 0 {
                d.key_idx = Some(b & 0x1f);
            }
            i += 1;
        }
        Ok((d, i))
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
    let (d, n) = Descriptor::parse(payload).ok()?;
    if !d.start || d.partition != 0 {
        return None;
    }
    let f = payload.get(n..)?;
    let tag = *f.first()?;
    let keyframe = tag & 0x01 == 0;
    let size = if keyframe && f.get(3..6) == Some(&[0x9d, 0x01, 0x2a][..]) {
        let w = u16::from_le_bytes([*f.get(6)?, *f.get(7)?]) & 0x3fff;
        let h = u16::from_le_bytes([*f.get(8)?, *f.get(9)?]) & 0x3fff;
        Some((w, h))
    } else {
        None
    };
    Some(FrameStart { keyframe, size })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_roundtrips_with_every_field() {
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
        assert_eq!(Descriptor::parse(&out), Ok((d, 6)));
        // Every truncation is an error, never a panic.
        for n in 0..out.len() {
            assert_eq!(
                Descriptor::parse(&out[..n]),
                Err(Vp8Error::Truncated),
                "{n}"
            );
        }
        // 7-bit PictureID and the minimal descriptor parse too.
        assert_eq!(
            Descriptor::parse(&[0x80, 0x80, 0x05]).unwrap().0.picture_id,
            Some(5)
        );
        let (min, n) = Descriptor::parse(&[0x10]).unwrap();
        assert!(min.start && min.picture_id.is_none() && n == 1);
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
