//! The generic context (H264, VP9 until its own context lands, VP8 without PictureID, unknown
//! codecs): the switch filter on keyframes, linear sequence-number and timestamp offsets per
//! forwarded segment.

use std::time::Instant;

use crate::sfu::codec::PayloadRewrite;

use super::seq::{SeqRewriter, ts_newer};
use super::stream::{CodecStream, OutState, Rewritten, Segment, VideoPacket};
use super::switch::SwitchFilter;
use super::target::Target;

/// The generic context's forwarded segment.
#[derive(Debug, Clone)]
pub struct GenericStream {
    encoding: u8,
    seq: SeqRewriter,
    ts_delta: u32,
}

impl CodecStream for GenericStream {
    /// Nothing codec-specific: keyframe detection (if any) is in the packet's `VideoInfo`.
    type Desc = ();

    fn project(
        slot: &mut Option<Self>,
        filter: &mut SwitchFilter,
        out: &mut OutState,
        now: Instant,
        p: &VideoPacket<'_>,
        _: &(),
        target: Target,
    ) -> Option<Rewritten> {
        let before = filter.current();
        // Unknown codecs: every packet may start a segment (nothing better to go by).
        let keyframe = p.info.keyframe.unwrap_or(true);
        if !filter.accept(now, p.encoding, 0, keyframe, target) {
            if let Some(g) = slot.as_mut().filter(|g| g.encoding == p.encoding) {
                g.seq.skip(p.seq);
            }
            return None;
        }
        let continuing =
            before == Some(p.encoding) && slot.as_ref().is_some_and(|g| g.encoding == p.encoding);
        if !continuing {
            let mut g = GenericStream {
                encoding: p.encoding,
                seq: SeqRewriter::default(),
                ts_delta: 0,
            };
            if out.started {
                g.seq.rebase(p.seq, out.last_seq.wrapping_add(1));
                g.ts_delta = out.switch_ts(now).wrapping_sub(p.timestamp);
            }
            out.segment_start = Some(if out.started {
                out.last_seq.wrapping_add(1)
            } else {
                p.seq
            });
            out.last_frame_at = Some(now);
            *slot = Some(g);
        }
        slot.as_mut()?.forward(out, now, p)
    }
}

impl Segment for GenericStream {
    fn encoding(&self) -> u8 {
        self.encoding
    }

    fn skip(&mut self, seq: u16) {
        self.seq.skip(seq);
    }

    fn egress_timestamp(&self, ts: u32) -> u32 {
        ts.wrapping_add(self.ts_delta)
    }
}

impl GenericStream {
    fn forward(
        &mut self,
        out: &mut OutState,
        now: Instant,
        p: &VideoPacket<'_>,
    ) -> Option<Rewritten> {
        let seq = self.seq.forward(p.seq)?;
        let ts = p.timestamp.wrapping_add(self.ts_delta);
        if out.started && ts_newer(ts, out.last_ts) {
            out.last_frame_at = Some(now);
        }
        out.on_sent(seq, ts);
        Some(Rewritten {
            seq,
            timestamp: ts,
            payload: PayloadRewrite::None,
            keyframe: p.info.is_keyframe(),
        })
    }
}
