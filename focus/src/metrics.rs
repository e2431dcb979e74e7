//! `/metrics`: Jicofo's Prometheus names (`jitsi_jicofo_*`, as jicofo's `ConferenceMetrics`,
//! `BridgeSelector`, `BridgeMetrics`, `ConferenceIqHandler` and `GlobalMetrics` register them; counters
//! carry the `_total` suffix Jicofo's Prometheus export adds), refreshed from a core snapshot at each
//! scrape.
//!
//! Names of our own that dashboards already use stay as aliases: `jitsi_jicofo_participants` (the
//! current number, Jicofo's `participants_current`). Jicofo's `participants` is a counter, exported as
//! `jitsi_jicofo_participants_total`, so the two do not clash.

use std::sync::Mutex;

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use crate::core::FocusStats;

/// The registry and the metrics in it.
pub struct FocusMetrics {
    registry: Registry,
    gauges: Gauges,
    counters: Mutex<Counters>,
}

struct Gauges {
    conferences: IntGauge,
    participants_current: IntGauge,
    /// Alias of `participants_current` (our dashboards' name).
    participants: IntGauge,
    largest_conference: IntGauge,
    participants_pairs: IntGauge,
    visitors_current: IntGauge,
    conferences_with_visitors: IntGauge,
    healthy: IntGauge,
    bridge_count: IntGauge,
    bridge_count_operational: IntGauge,
    bridge_count_in_shutdown: IntGauge,
    bridge_version_count: IntGauge,
    /// Endpoints per bridge, labelled `jvb` with the bridge's brewery nickname (as Jicofo).
    bridge_endpoints: IntGaugeVec,
}

/// Counters and the last value written to each (Prometheus counters only go up by increments).
struct Counters {
    list: Vec<(IntCounter, u64)>,
    /// Bridges with a `bridge_endpoints` series, so that gone ones are removed.
    bridges: Vec<String>,
}

const NAMESPACE: &str = "jitsi_jicofo";

/// Counter names (without `_total`) and help, in the order [`counter_values`] returns them.
const COUNTERS: &[(&str, &str)] = &[
    (
        "conferences_created",
        "The number of conferences created on this focus since it was started.",
    ),
    (
        "participants",
        "The total number of participants that have connected to this focus since it was started.",
    ),
    (
        "participants_moved",
        "Number of participants moved away from a failed bridge.",
    ),
    (
        "bridges_removed",
        "Number of times a bridge was removed from a conference due to a failure.",
    ),
    (
        "participants_ice_failed",
        "Number of participants that reported an ICE failure.",
    ),
    (
        "participants_restart_requested",
        "Number of times a participant requested a restart via session-terminate.",
    ),
    (
        "conference_requests",
        "Number of conference requests received.",
    ),
    (
        "conference_requests_new",
        "Number of conference requests received for new conferences.",
    ),
    (
        "conference_requests_refused",
        "Conference requests refused: the room is not in a conference MUC service.",
    ),
    (
        "bridge_selector_lost_bridges",
        "Bridges that disconnected unexpectedly.",
    ),
    (
        "xmpp_disconnects",
        "The number of times one of the XMPP connections has disconnected.",
    ),
    ("jingle_errors", "Jingle requests refused with an error."),
    ("colibri_failures", "COLIBRI2 requests that failed."),
    (
        "ice_restarts_requested",
        "In-place ICE restarts participants asked for (session-info with bridge-session ice-restart).",
    ),
    (
        "ice_restarts_relayed",
        "In-place ICE restarts whose new bridge transport went to the participant in a transport-info.",
    ),
    (
        "ice_restarts_not_needed",
        "In-place ICE restarts the bridge answered with its unchanged transport (nothing to relay).",
    ),
    (
        "ice_restarts_failed",
        "In-place ICE restarts refused, declined by the bridge (re-invite instead) or dropped as stale.",
    ),
];

fn counter_values(s: &FocusStats) -> [u64; 17] {
    [
        s.total_conferences_created,
        s.total_participants,
        s.total_participants_moved,
        s.total_bridges_removed,
        s.total_participants_ice_failed,
        s.total_participants_requested_restart,
        s.total_conference_requests,
        s.total_conference_requests_new,
        s.total_conference_requests_refused,
        s.bridge_selector.lost_bridges,
        s.total_xmpp_disconnects,
        s.total_jingle_errors,
        s.total_colibri_failures,
        s.total_ice_restarts_requested,
        s.total_ice_restarts_relayed,
        s.total_ice_restarts_not_needed,
        s.total_ice_restarts_failed,
    ]
}

/// The `jvb` label Jicofo gives a bridge: its brewery nickname (the occupant JID's resource).
fn bridge_label(jid: &str) -> &str {
    jid.rsplit_once('/').map_or(jid, |(_, nick)| nick)
}

impl FocusMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::with_opts(Opts::new(name, help).namespace(NAMESPACE))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let bridge_endpoints = IntGaugeVec::new(
            Opts::new("bridge_endpoints", "The number of endpoints on a bridge.")
                .namespace(NAMESPACE),
            &["jvb"],
        )?;
        registry.register(Box::new(bridge_endpoints.clone()))?;
        let gauges = Gauges {
            conferences: gauge(
                "conferences",
                "Running count of conferences (excluding internal conferences created for health checks).",
            )?,
            participants_current: gauge(
                "participants_current",
                "The current number of participants. This includes visitors.",
            )?,
            participants: gauge(
                "participants",
                "The current number of participants (alias of participants_current).",
            )?,
            largest_conference: gauge("largest_conference", "The current largest conference.")?,
            participants_pairs: gauge(
                "participants_pairs",
                "The number of pairs of participants (the sum of n*(n-1) for each conference).",
            )?,
            visitors_current: gauge(
                "visitors_current",
                "The current number of visitors (always 0: visitors are not supported).",
            )?,
            conferences_with_visitors: gauge(
                "conferences_with_visitors",
                "Running count of conferences which have at least 1 visitor (always 0).",
            )?,
            healthy: gauge(
                "healthy",
                "Whether the focus has an operational bridge (1) or not (0).",
            )?,
            bridge_count: gauge(
                "bridge_selector_bridge_count",
                "The current number of bridges.",
            )?,
            bridge_count_operational: gauge(
                "bridge_selector_bridge_count_operational",
                "The current number of operational bridges.",
            )?,
            bridge_count_in_shutdown: gauge(
                "bridge_selector_bridge_count_in_shutdown",
                "The current number of bridges in graceful shutdown.",
            )?,
            bridge_version_count: gauge(
                "bridge_selector_bridge_version_count",
                "The current number of different bridge versions.",
            )?,
            bridge_endpoints,
        };
        let mut list = Vec::new();
        for (name, help) in COUNTERS {
            // Counters get the `_total` suffix, as Jicofo's Prometheus export writes them.
            let c = IntCounter::with_opts(
                Opts::new(format!("{name}_total"), *help).namespace(NAMESPACE),
            )?;
            registry.register(Box::new(c.clone()))?;
            list.push((c, 0));
        }
        Ok(FocusMetrics {
            registry,
            gauges,
            counters: Mutex::new(Counters {
                list,
                bridges: Vec::new(),
            }),
        })
    }

    /// Brings every metric up to date with `s`.
    pub fn observe(&self, s: &FocusStats, healthy: bool) {
        let g = &self.gauges;
        let int = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        g.conferences.set(int(s.conferences));
        g.participants_current.set(int(s.participants));
        g.participants.set(int(s.participants));
        g.largest_conference.set(int(s.largest_conference));
        g.participants_pairs
            .set(i64::try_from(s.participants_pairs).unwrap_or(i64::MAX));
        g.visitors_current.set(0);
        g.conferences_with_visitors.set(0);
        g.healthy.set(i64::from(healthy));
        g.bridge_count.set(int(s.bridge_selector.bridge_count));
        g.bridge_count_operational
            .set(int(s.bridge_selector.operational_bridge_count));
        g.bridge_count_in_shutdown
            .set(int(s.bridge_selector.in_shutdown_bridge_count));
        g.bridge_version_count
            .set(int(s.bridge_selector.bridge_version_count));
        let mut counters = match self.counters.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        for ((counter, last), value) in counters.list.iter_mut().zip(counter_values(s)) {
            if value > *last {
                counter.inc_by(value - *last);
                *last = value;
            }
        }
        let now: Vec<String> = s
            .bridge_selector
            .bridges
            .iter()
            .map(|b| bridge_label(&b.jid).to_owned())
            .collect();
        for gone in counters.bridges.iter().filter(|b| !now.contains(b)) {
            let _ = g.bridge_endpoints.remove_label_values(&[gone]);
        }
        for b in &s.bridge_selector.bridges {
            g.bridge_endpoints
                .with_label_values(&[bridge_label(&b.jid)])
                .set(int(b.endpoints));
        }
        counters.bridges = now;
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        service::encode_prometheus_text(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Counters as CoreCounters;
    use crate::core::bridges::{BridgeSelectorStats, BridgeState};

    fn bridge(jid: &str, endpoints: usize) -> BridgeState {
        BridgeState {
            jid: jid.into(),
            stress: 0.0,
            corrected_stress: 0.0,
            operational: true,
            drain: false,
            graceful_shutdown: false,
            shutting_down: false,
            region: None,
            version: None,
            endpoints,
        }
    }

    fn stats(bridges: Vec<BridgeState>) -> FocusStats {
        let c = CoreCounters {
            conference_requests: 7,
            conference_requests_new: 3,
            conference_requests_refused: 2,
            conferences_created: 3,
            participants: 9,
            participants_moved: 4,
            participants_requested_restart: 2,
            participants_ice_failed: 1,
            bridges_removed: 1,
            xmpp_disconnects: 5,
            ..CoreCounters::default()
        };
        FocusStats::new(
            &c,
            &[3, 2],
            BridgeSelectorStats {
                bridge_count: bridges.len(),
                operational_bridge_count: bridges.len(),
                in_shutdown_bridge_count: 0,
                lost_bridges: 1,
                bridge_version_count: 1,
                bridges,
            },
        )
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// The names Jicofo exports (what dashboards and alerts built for Jicofo query), with values.
    #[test]
    fn jicofo_metric_names_and_our_aliases() {
        let m = FocusMetrics::new().unwrap();
        m.observe(
            &stats(vec![
                bridge("jvbbrewery@internal-muc.meet.jitsi/jvb-1", 3),
                bridge("jvbbrewery@internal-muc.meet.jitsi/jvb-2", 2),
            ]),
            true,
        );
        let text = m.render();
        for (series, v) in [
            ("jitsi_jicofo_participants_current", 5.0),
            ("jitsi_jicofo_participants", 5.0),
            ("jitsi_jicofo_conferences", 2.0),
            ("jitsi_jicofo_largest_conference", 3.0),
            ("jitsi_jicofo_participants_pairs", 8.0),
            ("jitsi_jicofo_visitors_current", 0.0),
            ("jitsi_jicofo_conferences_with_visitors", 0.0),
            ("jitsi_jicofo_healthy", 1.0),
            ("jitsi_jicofo_bridge_selector_bridge_count", 2.0),
            ("jitsi_jicofo_bridge_selector_bridge_count_operational", 2.0),
            ("jitsi_jicofo_bridge_selector_bridge_count_in_shutdown", 0.0),
            ("jitsi_jicofo_bridge_selector_bridge_version_count", 1.0),
            ("jitsi_jicofo_bridge_endpoints{jvb=\"jvb-1\"}", 3.0),
            ("jitsi_jicofo_bridge_endpoints{jvb=\"jvb-2\"}", 2.0),
            ("jitsi_jicofo_conferences_created_total", 3.0),
            ("jitsi_jicofo_participants_total", 9.0),
            ("jitsi_jicofo_participants_moved_total", 4.0),
            ("jitsi_jicofo_bridges_removed_total", 1.0),
            ("jitsi_jicofo_participants_ice_failed_total", 1.0),
            ("jitsi_jicofo_participants_restart_requested_total", 2.0),
            ("jitsi_jicofo_conference_requests_total", 7.0),
            ("jitsi_jicofo_conference_requests_new_total", 3.0),
            ("jitsi_jicofo_conference_requests_refused_total", 2.0),
            ("jitsi_jicofo_bridge_selector_lost_bridges_total", 1.0),
            ("jitsi_jicofo_xmpp_disconnects_total", 5.0),
        ] {
            assert_eq!(value(&text, series), Some(v), "{series}\n{text}");
        }
        assert!(text.contains("# TYPE jitsi_jicofo_participants_restart_requested_total counter"));
        assert!(text.contains("# TYPE jitsi_jicofo_participants_current gauge"));
        // A bridge that is gone loses its series.
        m.observe(
            &stats(vec![bridge("jvbbrewery@internal-muc.meet.jitsi/jvb-2", 1)]),
            false,
        );
        let text = m.render();
        assert_eq!(
            value(&text, "jitsi_jicofo_bridge_endpoints{jvb=\"jvb-1\"}"),
            None
        );
        assert_eq!(
            value(&text, "jitsi_jicofo_bridge_endpoints{jvb=\"jvb-2\"}"),
            Some(1.0)
        );
        assert_eq!(value(&text, "jitsi_jicofo_healthy"), Some(0.0));
        // Counters do not go back.
        assert_eq!(value(&text, "jitsi_jicofo_participants_total"), Some(9.0));
    }

    /// Every `jitsi_jicofo_*` name manifests/metrics.txt promises (the contract the ops rules and the
    /// dashboard are checked against) is exported.
    #[test]
    fn every_promised_name_is_exported() {
        let m = FocusMetrics::new().unwrap();
        m.observe(&stats(vec![bridge("b/jvb-1", 1)]), true);
        let text = m.render();
        let promised = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/metrics.txt"),
        )
        .unwrap();
        let names: Vec<&str> = promised
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("jitsi_jicofo_"))
            .collect();
        assert!(names.len() > 10);
        for name in names {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# TYPE {name} "))),
                "{name} is promised but not exported"
            );
        }
    }
}
