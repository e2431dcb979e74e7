//! Dominant speaker detection behind a small trait, so the DSI algorithm (issue 5, brief §8) can
//! replace the simple detector here without touching the conference.
//!
//! [`LoudestSpeaker`]: per endpoint, the average RFC 6464 activity (127 − level, so 0 = silence)
//! over each evaluation interval (300 ms) feeds an exponential moving average. The loudest endpoint
//! becomes dominant when its score is above a speech threshold and beats the current dominant
//! speaker's by a hysteresis margin for `hold` consecutive evaluations; this keeps the dominant
//! speaker from flapping between people talking at similar levels.

use std::time::{Duration, Instant};

/// An endpoint's slot index in its conference.
pub type SpeakerId = u32;

pub trait SpeakerDetector: Send {
    fn add(&mut self, ep: SpeakerId);
    fn remove(&mut self, ep: SpeakerId);
    /// One audio level from `ep` (0–127 = −dBov, 127 = silence).
    fn on_level(&mut self, now: Instant, ep: SpeakerId, level: u8);
    /// Called every [`interval`](Self::interval); returns the new dominant speaker when it changes.
    fn evaluate(&mut self, now: Instant) -> Option<SpeakerId>;
    fn dominant(&self) -> Option<SpeakerId>;
    fn interval(&self) -> Duration;
}

#[derive(Debug, Clone, Copy)]
pub struct LoudestConfig {
    pub interval: Duration,
    /// Minimum score (activity units, 127 − level) to count as speech.
    pub speech_threshold: f32,
    /// How much louder a challenger must be than the dominant speaker.
    pub hysteresis: f32,
    /// Consecutive evaluations a challenger must win.
    pub hold: u32,
    /// Weight of the newest interval in the moving average.
    pub alpha: f32,
}

impl Default for LoudestConfig {
    fn default() -> Self {
        LoudestConfig {
            interval: Duration::from_millis(300),
            speech_threshold: 30.0,
            hysteresis: 8.0,
            hold: 2,
            alpha: 0.5,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct SpeakerState {
    sum: u32,
    count: u32,
    score: f32,
}

#[derive(Debug, Clone)]
pub struct LoudestSpeaker {
    cfg: LoudestConfig,
    speakers: Vec<Option<SpeakerState>>,
    dominant: Option<SpeakerId>,
    challenger: Option<(SpeakerId, u32)>,
}

impl LoudestSpeaker {
    pub fn new(cfg: LoudestConfig) -> Self {
        LoudestSpeaker {
            cfg,
            speakers: Vec::new(),
            dominant: None,
            challenger: None,
        }
    }

    fn score(&self, ep: SpeakerId) -> f32 {
        self.speakers
            .get(ep as usize)
            .and_then(|s| s.as_ref())
            .map_or(0.0, |s| s.score)
    }
}

impl Default for LoudestSpeaker {
    fn default() -> Self {
        LoudestSpeaker::new(LoudestConfig::default())
    }
}

impl SpeakerDetector for LoudestSpeaker {
    fn add(&mut self, ep: SpeakerId) {
        let i = ep as usize;
        if self.speakers.len() <= i {
            self.speakers.resize(i + 1, None);
        }
        self.speakers[i] = Some(SpeakerState::default());
    }

    fn remove(&mut self, ep: SpeakerId) {
        if let Some(s) = self.speakers.get_mut(ep as usize) {
            *s = None;
        }
        if self.dominant == Some(ep) {
            self.dominant = None;
        }
        if self.challenger.is_some_and(|(c, _)| c == ep) {
            self.challenger = None;
        }
    }

    fn on_level(&mut self, _now: Instant, ep: SpeakerId, level: u8) {
        if let Some(Some(s)) = self.speakers.get_mut(ep as usize) {
            s.sum += u32::from(127 - level.min(127));
            s.count += 1;
        }
    }

    fn evaluate(&mut self, _now: Instant) -> Option<SpeakerId> {
        let a = self.cfg.alpha;
        let mut best: Option<(SpeakerId, f32)> = None;
        for (i, s) in self.speakers.iter_mut().enumerate() {
            let Some(s) = s else { continue };
            let avg = if s.count > 0 {
                s.sum as f32 / s.count as f32
            } else {
                0.0
            };
            s.score = (1.0 - a) * s.score + a * avg;
            s.sum = 0;
            s.count = 0;
            if best.is_none_or(|(_, b)| s.score > b) {
                best = Some((i as SpeakerId, s.score));
            }
        }
        let (cand, score) = best?;
        if score < self.cfg.speech_threshold || self.dominant == Some(cand) {
            self.challenger = None;
            return None;
        }
        if self.dominant.is_some() && score < self.score(self.dominant?) + self.cfg.hysteresis {
            self.challenger = None;
            return None;
        }
        let wins = match self.challenger {
            Some((c, n)) if c == cand => n + 1,
            _ => 1,
        };
        if wins >= self.cfg.hold || self.dominant.is_none() {
            self.dominant = Some(cand);
            self.challenger = None;
            Some(cand)
        } else {
            self.challenger = Some((cand, wins));
            None
        }
    }

    fn dominant(&self) -> Option<SpeakerId> {
        self.dominant
    }

    fn interval(&self) -> Duration {
        self.cfg.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds 15 packets (one 300 ms interval of 20 ms audio) per endpoint at the given levels.
    fn interval(d: &mut LoudestSpeaker, now: Instant, levels: &[(SpeakerId, u8)]) -> Option<u32> {
        for _ in 0..15 {
            for &(ep, l) in levels {
                d.on_level(now, ep, l);
            }
        }
        d.evaluate(now)
    }

    #[test]
    fn loudest_becomes_dominant_with_hysteresis() {
        let t = Instant::now();
        let mut d = LoudestSpeaker::default();
        for ep in 0..3 {
            d.add(ep);
        }
        // Silence: nobody.
        assert_eq!(interval(&mut d, t, &[(0, 127), (1, 127), (2, 127)]), None);
        // Endpoint 1 speaks (level 30 = -30 dBov): first dominant speaker is taken at once.
        assert_eq!(interval(&mut d, t, &[(0, 127), (1, 30), (2, 127)]), Some(1));
        assert_eq!(d.dominant(), Some(1));
        // Endpoint 2 speaks slightly louder than 1: within the hysteresis margin, no switch.
        for _ in 0..5 {
            assert_eq!(interval(&mut d, t, &[(0, 127), (1, 30), (2, 27)]), None);
        }
        // Endpoint 1 stops, 2 keeps talking: 2 takes over after `hold` wins.
        let mut switched = None;
        for _ in 0..6 {
            if let Some(s) = interval(&mut d, t, &[(0, 127), (1, 127), (2, 27)]) {
                switched = Some(s);
                break;
            }
        }
        assert_eq!(switched, Some(2));
        d.remove(2);
        assert_eq!(d.dominant(), None);
    }

    #[test]
    fn one_loud_blip_does_not_switch() {
        let t = Instant::now();
        let mut d = LoudestSpeaker::default();
        d.add(0);
        d.add(1);
        for _ in 0..5 {
            interval(&mut d, t, &[(0, 40), (1, 127)]);
        }
        assert_eq!(d.dominant(), Some(0));
        // One interval of 1 shouting, then silence again.
        assert_eq!(interval(&mut d, t, &[(0, 40), (1, 10)]), None);
        assert_eq!(interval(&mut d, t, &[(0, 40), (1, 127)]), None);
        assert_eq!(d.dominant(), Some(0));
    }
}
