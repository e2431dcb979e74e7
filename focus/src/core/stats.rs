//! Counters the core keeps for `/stats` and `/metrics` (Jicofo's names).

use serde::Serialize;

use super::bridges::BridgeSelectorStats;

/// Monotonic counters.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub conference_requests: u64,
    /// Requests for a room that had no conference yet.
    pub conference_requests_new: u64,
    /// Requests refused: a room outside the conference MUC services (e.g. the brewery).
    pub conference_requests_refused: u64,
    /// Requests for new rooms answered "not ready" because too many conferences were still empty.
    pub conference_requests_deferred: u64,
    pub conferences_created: u64,
    /// Participants ever invited (re-invites not counted).
    pub participants: u64,
    /// Participants moved to another bridge (bridge failure, shutdown).
    pub participants_moved: u64,
    pub participants_requested_restart: u64,
    pub participants_ice_failed: u64,
    pub jingle_errors: u64,
    pub colibri_failures: u64,
    /// Times a conference lost its bridge (Jicofo `bridges_removed`).
    pub bridges_removed: u64,
    /// Times an XMPP connection went down.
    pub xmpp_disconnects: u64,
    /// In-place ICE restarts (Jicofo `IceRestartMetrics`): asked for by participants, relayed to them
    /// with the bridge's new transport, not needed (the bridge kept its transport), failed (refused,
    /// declined by the bridge, stale).
    pub ice_restarts_requested: u64,
    pub ice_restarts_relayed: u64,
    pub ice_restarts_not_needed: u64,
    pub ice_restarts_failed: u64,
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
    pub total_conference_requests_new: u64,
    pub total_bridges_removed: u64,
    pub total_xmpp_disconnects: u64,
    pub total_ice_restarts_requested: u64,
    pub total_ice_restarts_relayed: u64,
    pub total_ice_restarts_not_needed: u64,
    pub total_ice_restarts_failed: u64,
    /// Σ n·(n−1) over conferences of n participants (Jicofo `participants_pairs`).
    pub participants_pairs: u64,
    /// `conference_sizes[n]` = number of conferences with `n` participants (the last bucket is 22+).
    pub conference_sizes: Vec<usize>,
    pub bridge_selector: BridgeSelectorStats,
    pub total_conference_requests_refused: u64,
    pub total_conference_requests_deferred: u64,
    /// Whether the focus is in the brewery now, how often it had to join again, and brewery
    /// presences with stats from occupants that are not trusted bridge accounts.
    pub brewery_joined: bool,
    pub total_brewery_rejoins: u64,
    pub total_untrusted_brewery_presences: u64,
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
            total_conference_requests_new: c.conference_requests_new,
            total_bridges_removed: c.bridges_removed,
            total_xmpp_disconnects: c.xmpp_disconnects,
            total_ice_restarts_requested: c.ice_restarts_requested,
            total_ice_restarts_relayed: c.ice_restarts_relayed,
            total_ice_restarts_not_needed: c.ice_restarts_not_needed,
            total_ice_restarts_failed: c.ice_restarts_failed,
            participants_pairs: sizes
                .iter()
                .map(|&n| (n as u64).saturating_mul((n as u64).saturating_sub(1)))
                .sum(),
            conference_sizes: buckets,
            bridge_selector,
            total_conference_requests_refused: c.conference_requests_refused,
            total_conference_requests_deferred: c.conference_requests_deferred,
            brewery_joined: false,
            total_brewery_rejoins: 0,
            total_untrusted_brewery_presences: 0,
        }
    }
}
