//! Dominant speaker detection behind a small trait: the conference feeds audio levels and asks
//! at the detector's interval; the algorithm (JVB's dominant speaker identification, [`super::dsi`])
//! is chosen by `SfuConfig::speaker_detector`.

use std::time::{Duration, Instant};

/// An endpoint's slot index in its conference.
pub type SpeakerId = u32;

pub trait SpeakerDetector: Send {
    fn add(&mut self, ep: SpeakerId);
    fn remove(&mut self, ep: SpeakerId);
    /// One audio level from `ep` (0–127 = −dBov, 127 = silence).
    fn on_level(&mut self, now: Instant, ep: SpeakerId, level: u8);
    /// Called every [`interval`](Self::interval); returns the new dominant speaker when it changes,
    /// and the dominant one again when speech resumes after a period of silence.
    fn evaluate(&mut self, now: Instant) -> Option<SpeakerId>;
    /// A period of silence (JVB `ConferenceSpeechActivity.isInSilence`): with silence detection
    /// on, nobody spoke for its timeout; clients are told with `silence: true`.
    fn in_silence(&self) -> bool {
        false
    }
    fn dominant(&self) -> Option<SpeakerId>;
    fn interval(&self) -> Duration;
}
