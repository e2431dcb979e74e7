//! The bridges the focus knows from the brewery MUC, their reported load and state, and bridge selection.
//!
//! Mirrors Jicofo's `BridgeSelector`/`Bridge`: a bridge is known while it is present in the brewery with a
//! colibri `stats` element; it is *operational* unless a health check failed or timed out (a failure keeps it
//! out for `failure_reset_threshold`); selection prefers operational, not shutting-down, same-version,
//! not-draining, not-in-graceful-shutdown bridges, then the least *corrected* stress (reported stress plus
//! the endpoints we recently put on it times the average participant stress).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Bridge selection and health settings (Jicofo `jicofo.bridge`).
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeConfig {
    pub max_bridge_participants: i64,
    pub average_participant_stress: f64,
    pub stress_threshold: f64,
    pub participant_rampup_interval: Duration,
    pub failure_reset_threshold: Duration,
    pub selection_strategy: SelectionStrategy,
    pub local_region: Option<String>,
    pub region_groups: Vec<Vec<String>>,
    pub health_checks_enabled: bool,
    pub health_check_interval: Duration,
    /// How long to wait for a health-check answer before retrying once.
    pub health_check_timeout: Duration,
    /// Use the `healthy` stat of presence instead of health-check IQs.
    pub health_checks_use_presence: bool,
    pub presence_timeout: Duration,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            max_bridge_participants: 80,
            average_participant_stress: 0.01,
            stress_threshold: 0.8,
            participant_rampup_interval: Duration::from_secs(20),
            failure_reset_threshold: Duration::from_secs(60),
            selection_strategy: SelectionStrategy::SingleBridge,
            local_region: None,
            region_groups: Vec::new(),
            health_checks_enabled: true,
            health_check_interval: Duration::from_secs(10),
            health_check_timeout: Duration::from_secs(5),
            health_checks_use_presence: false,
            presence_timeout: Duration::from_secs(45),
        }
    }
}

/// How the first bridge of a conference is chosen (a conference always stays on one bridge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectionStrategy {
    /// Least loaded, preferring the participant's region (Jicofo's default).
    SingleBridge,
    /// Not overloaded in the participant's region, then its region group, then anywhere.
    RegionBased,
}

/// The brewery stats the focus reads (from `signaling::brewery`).
pub use signaling::brewery::BridgeStatus as BridgeStats;

/// One bridge as the focus sees it.
#[derive(Debug, Clone)]
pub struct Bridge {
    /// The brewery occupant JID (`jvbbrewery@internal-muc…/<nick>`), the address for COLIBRI2 and health IQs.
    pub jid: String,
    pub stress: f64,
    pub average_participant_stress: f64,
    pub graceful_shutdown: bool,
    pub shutting_down: bool,
    /// Assumed true until the bridge says otherwise, so that a bridge is not used before its state is known.
    pub drain: bool,
    pub version: Option<String>,
    pub release: Option<String>,
    pub region: Option<String>,
    pub relay_id: Option<String>,
    pub healthy: bool,
    operational: bool,
    failed_at: Option<Instant>,
    recent_endpoints: VecDeque<Instant>,
    /// Endpoints the focus currently has on this bridge.
    pub endpoints: usize,
    pub last_presence: Instant,
}

impl Bridge {
    fn new(jid: String, now: Instant, default_aps: f64) -> Self {
        Bridge {
            jid,
            stress: 0.0,
            average_participant_stress: default_aps,
            graceful_shutdown: false,
            shutting_down: false,
            drain: true,
            version: None,
            release: None,
            region: None,
            relay_id: None,
            healthy: true,
            operational: true,
            failed_at: None,
            recent_endpoints: VecDeque::new(),
            endpoints: 0,
            last_presence: now,
        }
    }

    fn apply(&mut self, s: &BridgeStats, now: Instant) {
        self.last_presence = now;
        if let Some(v) = s.stress_level {
            self.stress = v;
        }
        if let Some(v) = s.average_participant_stress {
            self.average_participant_stress = v;
        }
        // Both shutdown flags are sticky: a bridge does not come back from shutting down.
        if s.graceful_shutdown == Some(true) {
            self.graceful_shutdown = true;
        }
        if s.shutting_down == Some(true) {
            self.shutting_down = true;
        }
        if let Some(v) = s.drain {
            self.drain = v;
        }
        if let Some(v) = &s.version {
            self.version = Some(v.clone());
        }
        if let Some(v) = &s.release {
            self.release = Some(v.clone());
        }
        if let Some(v) = &s.region {
            self.region = Some(v.clone());
        }
        if let Some(v) = &s.relay_id {
            self.relay_id = Some(v.clone());
        }
        if let Some(v) = s.healthy {
            self.healthy = v;
        }
    }

    /// Operational unless marked otherwise; a failure keeps it out for `reset` even if checks pass again.
    pub fn is_operational(&self, now: Instant, reset: Duration) -> bool {
        match self.failed_at {
            Some(t) if now.saturating_duration_since(t) < reset => false,
            _ => self.operational,
        }
    }

    /// `version-release`, what must match inside one conference.
    pub fn full_version(&self) -> Option<String> {
        match (&self.version, &self.release) {
            (Some(v), Some(r)) => Some(format!("{v}-{r}")),
            (Some(v), None) => Some(v.clone()),
            _ => None,
        }
    }

    fn recent_count(&mut self, now: Instant, window: Duration) -> usize {
        while let Some(t) = self.recent_endpoints.front() {
            if now.saturating_duration_since(*t) >= window {
                self.recent_endpoints.pop_front();
            } else {
                break;
            }
        }
        self.recent_endpoints.len()
    }

    /// Reported stress plus the endpoints put here within the ramp-up window × average participant stress.
    pub fn corrected_stress(&self, now: Instant, window: Duration) -> f64 {
        let recent = self
            .recent_endpoints
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < window)
            .count();
        self.stress + recent as f64 * self.average_participant_stress
    }
}

/// What changed after a brewery presence.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeEvent {
    Added,
    Updated,
    /// The bridge just entered SHUTTING_DOWN: its participants must move.
    ShuttingDown,
}

/// All known bridges.
#[derive(Debug, Clone, Default)]
pub struct Bridges {
    config: BridgeConfig,
    bridges: BTreeMap<String, Bridge>,
    /// Bridges lost without a graceful shutdown.
    pub lost_bridges: u64,
}

/// A participant's properties that matter for selection.
#[derive(Debug, Clone, Default)]
pub struct SelectionRequest<'a> {
    /// The bridge the conference already uses, if any.
    pub conference_bridge: Option<&'a str>,
    /// The version the conference's bridges run, if it had one before.
    pub conference_version: Option<&'a str>,
    pub participant_region: Option<&'a str>,
}

impl Bridges {
    pub fn new(config: BridgeConfig) -> Self {
        Bridges {
            config,
            bridges: BTreeMap::new(),
            lost_bridges: 0,
        }
    }

    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    pub fn get(&self, jid: &str) -> Option<&Bridge> {
        self.bridges.get(jid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Bridge> {
        self.bridges.values()
    }

    pub fn len(&self) -> usize {
        self.bridges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bridges.is_empty()
    }

    /// Records a brewery presence carrying `stats` from `jid`.
    pub fn update(&mut self, jid: &str, stats: &BridgeStats, now: Instant) -> BridgeEvent {
        let aps = self.config.average_participant_stress;
        match self.bridges.get_mut(jid) {
            Some(b) => {
                let was_shutting_down = b.shutting_down;
                b.apply(stats, now);
                if !was_shutting_down && b.shutting_down {
                    BridgeEvent::ShuttingDown
                } else {
                    BridgeEvent::Updated
                }
            }
            None => {
                let mut b = Bridge::new(jid.to_owned(), now, aps);
                b.apply(stats, now);
                let ev = if b.shutting_down {
                    BridgeEvent::ShuttingDown
                } else {
                    BridgeEvent::Added
                };
                self.bridges.insert(jid.to_owned(), b);
                ev
            }
        }
    }

    /// Forgets a bridge that left the brewery. Returns it if it was known.
    pub fn remove(&mut self, jid: &str) -> Option<Bridge> {
        let b = self.bridges.remove(jid)?;
        if !b.graceful_shutdown && !b.shutting_down {
            self.lost_bridges += 1;
        }
        Some(b)
    }

    /// A health check passed.
    pub fn health_passed(&mut self, jid: &str) {
        if let Some(b) = self.bridges.get_mut(jid) {
            b.operational = true;
        }
    }

    /// A health check failed, a COLIBRI2 request failed or timed out: out of selection for a while.
    pub fn mark_failed(&mut self, jid: &str, now: Instant) {
        if let Some(b) = self.bridges.get_mut(jid) {
            b.operational = false;
            b.failed_at = Some(now);
        }
    }

    /// Remembers that an endpoint was put on `jid` (for corrected stress and counts).
    pub fn endpoint_added(&mut self, jid: &str, now: Instant) {
        if let Some(b) = self.bridges.get_mut(jid) {
            b.recent_endpoints.push_back(now);
            b.endpoints += 1;
            let window = self.config.participant_rampup_interval;
            b.recent_count(now, window);
        }
    }

    pub fn endpoint_removed(&mut self, jid: &str) {
        if let Some(b) = self.bridges.get_mut(jid) {
            b.endpoints = b.endpoints.saturating_sub(1);
        }
    }

    pub fn is_operational(&self, jid: &str, now: Instant) -> bool {
        self.bridges
            .get(jid)
            .is_some_and(|b| b.is_operational(now, self.config.failure_reset_threshold))
    }

    /// Operational and not in graceful shutdown (what `/about/health` and the metrics count).
    pub fn operational_count(&self, now: Instant) -> usize {
        self.bridges
            .values()
            .filter(|b| {
                b.is_operational(now, self.config.failure_reset_threshold) && !b.graceful_shutdown
            })
            .count()
    }

    /// Bridges that need a presence-based health verdict now (presence too old or `healthy=false`).
    pub fn presence_health_failures(&self, now: Instant) -> Vec<String> {
        self.bridges
            .values()
            .filter(|b| {
                !b.healthy
                    || now.saturating_duration_since(b.last_presence) > self.config.presence_timeout
            })
            .map(|b| b.jid.clone())
            .collect()
    }

    fn region_group(&self, region: &str) -> Vec<String> {
        self.config
            .region_groups
            .iter()
            .find(|g| g.iter().any(|r| r == region))
            .cloned()
            .unwrap_or_else(|| vec![region.to_owned()])
    }

    /// Chooses a bridge for a participant, or `None` if no bridge is usable.
    pub fn select(&self, req: &SelectionRequest<'_>, now: Instant) -> Option<String> {
        let reset = self.config.failure_reset_threshold;
        let window = self.config.participant_rampup_interval;
        // A conference stays on its bridge while that bridge is usable.
        if let Some(existing) = req.conference_bridge {
            return self
                .bridges
                .get(existing)
                .filter(|b| b.is_operational(now, reset) && !b.shutting_down)
                .map(|b| b.jid.clone());
        }
        let mut candidates: Vec<&Bridge> = self
            .bridges
            .values()
            .filter(|b| b.is_operational(now, reset) && !b.shutting_down)
            .collect();
        if let Some(v) = req.conference_version {
            candidates.retain(|b| b.full_version().as_deref() == Some(v));
        }
        if candidates.iter().any(|b| !b.drain) {
            candidates.retain(|b| !b.drain);
        }
        if candidates.iter().any(|b| !b.graceful_shutdown) {
            candidates.retain(|b| !b.graceful_shutdown);
        }
        candidates.sort_by(|a, b| {
            a.corrected_stress(now, window)
                .total_cmp(&b.corrected_stress(now, window))
                .then_with(|| a.jid.cmp(&b.jid))
        });
        let overloaded =
            |b: &Bridge| b.corrected_stress(now, window) >= self.config.stress_threshold;
        let in_region = |b: &Bridge, region: &str| b.region.as_deref() == Some(region);
        let chosen = match self.config.selection_strategy {
            SelectionStrategy::SingleBridge => req
                .participant_region
                .and_then(|r| candidates.iter().find(|b| in_region(b, r)))
                .or(candidates.first()),
            SelectionStrategy::RegionBased => {
                let region = req
                    .participant_region
                    .or(self.config.local_region.as_deref());
                let group = region.map(|r| self.region_group(r)).unwrap_or_default();
                region
                    .and_then(|r| {
                        candidates
                            .iter()
                            .find(|b| !overloaded(b) && in_region(b, r))
                    })
                    .or_else(|| {
                        candidates.iter().find(|b| {
                            !overloaded(b) && b.region.as_ref().is_some_and(|r| group.contains(r))
                        })
                    })
                    .or_else(|| candidates.iter().find(|b| !overloaded(b)))
                    .or(candidates.first())
            }
        };
        chosen.map(|b| b.jid.clone())
    }

    /// The `bridge_selector` object of `/stats`.
    pub fn stats(&self, now: Instant) -> BridgeSelectorStats {
        let reset = self.config.failure_reset_threshold;
        let mut versions: Vec<Option<String>> =
            self.bridges.values().map(|b| b.full_version()).collect();
        versions.sort();
        versions.dedup();
        BridgeSelectorStats {
            bridge_count: self.bridges.len(),
            operational_bridge_count: self.operational_count(now),
            in_shutdown_bridge_count: self
                .bridges
                .values()
                .filter(|b| b.graceful_shutdown)
                .count(),
            lost_bridges: self.lost_bridges,
            bridge_version_count: versions.len(),
            bridges: self
                .bridges
                .values()
                .map(|b| BridgeState {
                    jid: b.jid.clone(),
                    stress: b.stress,
                    corrected_stress: b
                        .corrected_stress(now, self.config.participant_rampup_interval),
                    operational: b.is_operational(now, reset),
                    drain: b.drain,
                    graceful_shutdown: b.graceful_shutdown,
                    shutting_down: b.shutting_down,
                    region: b.region.clone(),
                    version: b.full_version(),
                    endpoints: b.endpoints,
                })
                .collect(),
        }
    }
}

/// `/stats` → `bridge_selector`.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeSelectorStats {
    pub bridge_count: usize,
    pub operational_bridge_count: usize,
    pub in_shutdown_bridge_count: usize,
    pub lost_bridges: u64,
    pub bridge_version_count: usize,
    pub bridges: Vec<BridgeState>,
}

/// One bridge in `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct BridgeState {
    pub jid: String,
    pub stress: f64,
    pub corrected_stress: f64,
    pub operational: bool,
    pub drain: bool,
    pub graceful_shutdown: bool,
    pub shutting_down: bool,
    pub region: Option<String>,
    pub version: Option<String>,
    pub endpoints: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(stress: f64) -> BridgeStats {
        BridgeStats {
            stress_level: Some(stress),
            drain: Some(false),
            version: Some("2.3".into()),
            ..BridgeStats::default()
        }
    }

    fn bridges() -> (Bridges, Instant) {
        let now = Instant::now();
        let mut b = Bridges::new(BridgeConfig::default());
        assert_eq!(
            b.update("brewery@x/jvb1", &stats(0.3), now),
            BridgeEvent::Added
        );
        assert_eq!(
            b.update("brewery@x/jvb2", &stats(0.1), now),
            BridgeEvent::Added
        );
        (b, now)
    }

    #[test]
    fn least_stressed_bridge_wins_and_recent_endpoints_count() {
        let (mut b, now) = bridges();
        let req = SelectionRequest::default();
        assert_eq!(b.select(&req, now).as_deref(), Some("brewery@x/jvb2"));
        // 25 endpoints × 0.01 make jvb2 look busier than jvb1 until the ramp-up window passes.
        for _ in 0..25 {
            b.endpoint_added("brewery@x/jvb2", now);
        }
        assert_eq!(b.select(&req, now).as_deref(), Some("brewery@x/jvb1"));
        let later = now + Duration::from_secs(21);
        assert_eq!(b.select(&req, later).as_deref(), Some("brewery@x/jvb2"));
    }

    #[test]
    fn draining_shutdown_and_failed_bridges_are_avoided() {
        let (mut b, now) = bridges();
        let req = SelectionRequest::default();
        b.update(
            "brewery@x/jvb2",
            &BridgeStats {
                drain: Some(true),
                ..BridgeStats::default()
            },
            now,
        );
        assert_eq!(b.select(&req, now).as_deref(), Some("brewery@x/jvb1"));
        b.mark_failed("brewery@x/jvb1", now);
        // Only a draining bridge is left: still better than nothing.
        assert_eq!(b.select(&req, now).as_deref(), Some("brewery@x/jvb2"));
        let ev = b.update(
            "brewery@x/jvb2",
            &BridgeStats {
                shutting_down: Some(true),
                ..BridgeStats::default()
            },
            now,
        );
        assert_eq!(ev, BridgeEvent::ShuttingDown);
        assert_eq!(b.select(&req, now), None);
        // The failure is forgiven after failure_reset_threshold once a check passes.
        b.health_passed("brewery@x/jvb1");
        assert_eq!(b.select(&req, now), None);
        assert_eq!(
            b.select(&req, now + Duration::from_secs(61)).as_deref(),
            Some("brewery@x/jvb1")
        );
    }

    #[test]
    fn unknown_drain_state_counts_as_draining() {
        let now = Instant::now();
        let mut b = Bridges::new(BridgeConfig::default());
        b.update("j/a", &BridgeStats::default(), now);
        b.update("j/b", &stats(0.9), now);
        assert_eq!(
            b.select(&SelectionRequest::default(), now).as_deref(),
            Some("j/b")
        );
    }

    #[test]
    fn graceful_shutdown_is_a_last_resort() {
        let (mut b, now) = bridges();
        b.update(
            "brewery@x/jvb2",
            &BridgeStats {
                graceful_shutdown: Some(true),
                ..BridgeStats::default()
            },
            now,
        );
        assert_eq!(
            b.select(&SelectionRequest::default(), now).as_deref(),
            Some("brewery@x/jvb1")
        );
        assert_eq!(b.operational_count(now), 1);
    }

    #[test]
    fn conference_stays_on_its_bridge_and_versions_must_match() {
        let (mut b, now) = bridges();
        let req = SelectionRequest {
            conference_bridge: Some("brewery@x/jvb1"),
            ..SelectionRequest::default()
        };
        assert_eq!(b.select(&req, now).as_deref(), Some("brewery@x/jvb1"));
        b.mark_failed("brewery@x/jvb1", now);
        assert_eq!(b.select(&req, now), None);
        let req = SelectionRequest {
            conference_version: Some("9.9"),
            ..SelectionRequest::default()
        };
        assert_eq!(b.select(&req, now), None);
    }

    #[test]
    fn region_preference() {
        let (mut b, now) = bridges();
        b.update(
            "brewery@x/jvb1",
            &BridgeStats {
                region: Some("eu".into()),
                ..BridgeStats::default()
            },
            now,
        );
        let req = SelectionRequest {
            participant_region: Some("eu"),
            ..SelectionRequest::default()
        };
        assert_eq!(b.select(&req, now).as_deref(), Some("brewery@x/jvb1"));
        let mut cfg = BridgeConfig {
            selection_strategy: SelectionStrategy::RegionBased,
            ..BridgeConfig::default()
        };
        cfg.region_groups = vec![vec!["eu".into(), "eu-west".into()]];
        let mut r = Bridges::new(cfg);
        r.update("j/a", &stats(0.1), now);
        r.update(
            "j/b",
            &BridgeStats {
                region: Some("eu".into()),
                ..stats(0.85)
            },
            now,
        );
        r.update(
            "j/c",
            &BridgeStats {
                region: Some("eu".into()),
                ..stats(0.5)
            },
            now,
        );
        let req = SelectionRequest {
            participant_region: Some("eu-west"),
            ..SelectionRequest::default()
        };
        // No bridge in eu-west; c is in the same group and not overloaded (b is).
        assert_eq!(r.select(&req, now).as_deref(), Some("j/c"));
    }

    #[test]
    fn lost_bridges_are_counted_unless_they_were_shutting_down() {
        let (mut b, now) = bridges();
        b.remove("brewery@x/jvb1");
        assert_eq!(b.lost_bridges, 1);
        b.update(
            "brewery@x/jvb2",
            &BridgeStats {
                graceful_shutdown: Some(true),
                ..BridgeStats::default()
            },
            now,
        );
        b.remove("brewery@x/jvb2");
        assert_eq!(b.lost_bridges, 1);
        assert!(b.is_empty());
    }
}
