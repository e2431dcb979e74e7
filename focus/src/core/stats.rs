//! Counters the core keeps for `/stats` and `/metrics` (Jicofo's names).

use serde::Serialize;

use super::bridges::BridgeSelectorStats;

/// Monotonic counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub conference_requests: u64,
    pub conferences_created: u64,
    /// Participants ever invited (re-invites not counted).
    pub participants: u64,
    /// Participants moved to another bridge (bridge failure, shutdown).
    pub participants_moved: u64,
    pub participants_requested_restart: u64,
    pub participants_ice_failed: u64,
    pub jingle_errors: u64,
    pub colibri_failures: u64,
}

/// A snapshot of the focus's state.
#[derive(Debug, Clone, Serialize)]
pub struct FocusStats {
    pub conferences: usize,
    pub participants: usize,
    pub largest_conference: usize,
    pub total_participants: u64,
    pub total_conferences_created: u64,
    pub total_conference_requests: u64,
    pub total_participants_moved: u64,
    pub total_participants_requested_restart: u64,
    pub total_participants_ice_failed: u64,
    pub total_jingle_errors: u64,
    pub total_colibri_failures: u64,
    /// `conference_sizes[n]` = number of conferences with `n` participants (the last bucket is 22+).
    pub conference_sizes: Vec<usize>,
    pub bridge_selector: BridgeSelectorStats,
}

impl FocusStats {
    pub fn new(c: &Counters, sizes: &[usize], bridge_selector: BridgeSelectorStats) -> Self {
        let mut buckets = vec![0usize; 23];
        for &s in sizes {
            let i = s.min(22);
            if let Some(b) = buckets.get_mut(i) {
                *b += 1;
            }
        }
        FocusStats {
            conferences: sizes.len(),
            participants: sizes.iter().sum(),
            largest_conference: sizes.iter().copied().max().unwrap_or(0),
            total_participants: c.participants,
            total_conferences_created: c.conferences_created,
            total_conference_requests: c.conference_requests,
            total_participants_moved: c.participants_moved,
            total_participants_requested_restart: c.participants_requested_restart,
            total_participants_ice_failed: c.participants_ice_failed,
            total_jingle_errors: c.jingle_errors,
            total_colibri_failures: c.colibri_failures,
            conference_sizes: buckets,
            bridge_selector,
        }
    }
}
