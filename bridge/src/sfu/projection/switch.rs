//! [`SwitchFilter`]: which encoding of a simulcast source a receiver gets, switching only on
//! keyframes. Codec-independent: every codec context asks it once per frame (or, without frame
//! knowledge, once per packet).

use std::time::{Duration, Instant};

use super::target::Target;

/// Keyframes arriving within this window of the first one belong to one group (the browser sends
/// keyframes on all encodings together).
const KEYFRAME_GROUP: Duration = Duration::from_millis(300);

/// Chooses the encoding to forward (JVB's quality filter rules, jitsi-videobridge
/// `cc/vp8/VP8QualityFilter.kt`): encodings change only on
/// keyframes; the first keyframe of a group is taken if its encoding is not above the target, later
/// keyframes of the group only if they move toward the target; while an up-switch is pending the
/// current encoding goes at full frame rate, while a down-switch is pending only its base layer.
#[derive(Debug, Clone, Default)]
pub struct SwitchFilter {
    /// The target encoding last seen.
    wanted: Option<u8>,
    /// The encoding being forwarded.
    current: Option<u8>,
    needs_keyframe: bool,
    /// Arrival of the first keyframe of the latest keyframe group.
    group_at: Option<Instant>,
    /// While a down-switch is pending, forward nothing of the current encoding.
    pub drain: bool,
}

impl SwitchFilter {
    pub fn current(&self) -> Option<u8> {
        self.current
    }

    /// The encoding a keyframe is needed for, if any.
    pub fn needs_keyframe(&self) -> Option<u8> {
        if self.needs_keyframe {
            self.wanted
        } else {
            None
        }
    }

    /// Forgets the current encoding (the next frame must be a keyframe).
    pub fn reset(&mut self) {
        self.current = None;
    }

    fn out_of_group(&self, now: Instant) -> bool {
        self.group_at
            .is_none_or(|t| now.saturating_duration_since(t) > KEYFRAME_GROUP)
    }

    /// Decides about one frame (or, for the generic context, one packet) of `encoding`.
    pub fn accept(
        &mut self,
        now: Instant,
        encoding: u8,
        tid: u8,
        keyframe: bool,
        target: Target,
    ) -> bool {
        let Target::Layer {
            encoding: t_enc,
            temporal: t_tid,
            ..
        } = target
        else {
            self.wanted = None;
            self.current = None;
            self.needs_keyframe = false;
            return false;
        };
        if self.wanted != Some(t_enc) {
            self.wanted = Some(t_enc);
            self.needs_keyframe = self.current != Some(t_enc);
        }
        if self.current.is_none() {
            self.needs_keyframe = true;
        }
        if keyframe {
            return self.on_keyframe(now, encoding, t_enc);
        }
        let Some(cur) = self.current else {
            return false;
        };
        // Outside a switching window a packet of an encoding closer to the target shows that a
        // switch is possible: ask (again) for a keyframe.
        if ((encoding > cur && cur < t_enc) || (encoding < cur && cur > t_enc))
            && self.out_of_group(now)
        {
            self.needs_keyframe = true;
        }
        if encoding != cur {
            return false;
        }
        if cur > t_enc {
            // Pending down-switch: the base layer keeps the picture moving until the keyframe,
            // unless even that does not fit the link (then it would only delay the keyframe).
            tid == 0 && !self.drain
        } else if cur < t_enc {
            true
        } else {
            tid <= t_tid
        }
    }

    fn on_keyframe(&mut self, now: Instant, encoding: u8, wanted: u8) -> bool {
        self.needs_keyframe = false;
        if self.out_of_group(now) {
            // The first keyframe of a group is taken even below the target: it may be the only one.
            self.group_at = Some(now);
            if encoding <= wanted {
                self.current = Some(encoding);
                return true;
            }
            return false;
        }
        let cur = self.current;
        let up_or_same = cur.is_none_or(|c| c <= encoding) && encoding <= wanted;
        let down = encoding <= wanted && cur.is_some_and(|c| wanted < c);
        if up_or_same || down {
            self.current = Some(encoding);
            true
        } else {
            false
        }
    }
}
