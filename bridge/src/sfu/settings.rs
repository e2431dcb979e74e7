//! A receiver's preferences, as its bridge-channel messages and COLIBRI2 set them: last-N,
//! constraints per source, on-stage and selected sources, assumed bandwidth, its audio
//! subscription. Input to its allocation.

use std::collections::HashMap;

use super::allocation::VideoConstraints;
use super::channel::{AudioSubscription, ConstraintsUpdate};

/// A receiver's video preferences (from `ReceiverVideoConstraints`, `LastNChangedEvent`, COLIBRI2
/// `initial-last-n`). Constraints and on-stage/selected entries are source names (current clients) or
/// endpoint ids (2021 client); lookups try both.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSettings {
    /// -1 = unlimited.
    pub last_n: i32,
    /// For sources without an explicit constraint.
    pub default_constraints: VideoConstraints,
    pub constraints: HashMap<String, VideoConstraints>,
    pub on_stage: Vec<String>,
    pub selected: Vec<String>,
    /// `assumedBandwidthBps` (already capped by the bridge's limit), if allowed and given.
    pub assumed_bandwidth_bps: Option<u64>,
    /// Which audio sources it gets (`ReceiverAudioSubscription`).
    pub audio: AudioSubscription,
    /// A `ReceiverVideoConstraints` was applied (after which a missing `defaultConstraints` means
    /// "keep", before it "use the default").
    ever_set: bool,
}

impl ReceiverSettings {
    pub fn new(last_n: i32, default_max_height: i32) -> Self {
        ReceiverSettings {
            last_n,
            default_constraints: VideoConstraints::max_height(default_max_height),
            constraints: HashMap::new(),
            on_stage: Vec::new(),
            selected: Vec::new(),
            assumed_bandwidth_bps: None,
            audio: AudioSubscription::default(),
            ever_set: false,
        }
    }

    /// Applies a partial update; returns whether anything changed. `default_max_height` replaces a
    /// missing `defaultConstraints` in the first message; `assumed_limit` caps (and enables)
    /// `assumedBandwidthBps`.
    pub fn apply(
        &mut self,
        u: ConstraintsUpdate,
        default_max_height: i32,
        assumed_limit: Option<u64>,
    ) -> bool {
        let before = self.clone();
        if let Some(n) = u.last_n {
            self.last_n = n;
        }
        match u.default_constraints {
            Some(d) => self.default_constraints = d,
            None if !self.ever_set => {
                self.default_constraints = VideoConstraints::max_height(default_max_height)
            }
            None => {}
        }
        if let Some(c) = u.constraints {
            self.constraints = c.into_iter().collect();
        }
        if let Some(s) = u.on_stage {
            self.on_stage = s;
        }
        if let Some(s) = u.selected {
            self.selected = s;
        }
        if let (Some(b), Some(limit)) = (u.assumed_bandwidth_bps, assumed_limit) {
            self.assumed_bandwidth_bps = u64::try_from(b).ok().map(|b| b.min(limit));
        }
        self.ever_set = true;
        let mut after = self.clone();
        after.ever_set = before.ever_set;
        after != before
    }
}
