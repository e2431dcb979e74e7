//! `/metrics`: Jicofo's Prometheus names (`jitsi_jicofo_*`), refreshed from a core snapshot at each
//! scrape.

use std::sync::Mutex;

use prometheus::{IntCounter, IntGauge, Opts, Registry};

use crate::core::FocusStats;

/// The registry and the metrics in it.
pub struct FocusMetrics {
    registry: Registry,
    gauges: Gauges,
    counters: Mutex<Counters>,
}

struct Gauges {
    conferences: IntGauge,
    participants: IntGauge,
    largest_conference: IntGauge,
    healthy: IntGauge,
    bridge_count: IntGauge,
    bridge_count_operational: IntGauge,
    bridge_count_in_shutdown: IntGauge,
    bridge_version_count: IntGauge,
}

/// Counters and the last value written to each (Prometheus counters only go up by increments).
struct Counters {
    list: Vec<(IntCounter, u64)>,
}

const NAMESPACE: &str = "jitsi_jicofo";

impl FocusMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::with_opts(Opts::new(name, help).namespace(NAMESPACE))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let gauges = Gauges {
            conferences: gauge("conferences", "The current number of conferences.")?,
            participants: gauge("participants", "The current number of participants.")?,
            largest_conference: gauge(
                "largest_conference",
                "The number of participants in the largest conference.",
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
        };
        let mut list = Vec::new();
        for (name, help) in [
            ("conferences_created", "Conferences created."),
            ("participants", "Participants invited."),
            (
                "participants_moved",
                "Participants moved to another bridge.",
            ),
            ("conference_requests", "Conference requests received."),
            (
                "participants_requested_restart",
                "Participants that asked for their session to be restarted.",
            ),
            (
                "participants_ice_failed",
                "Participants that reported ICE failure.",
            ),
            ("jingle_errors", "Jingle requests refused with an error."),
            ("colibri_failures", "COLIBRI2 requests that failed."),
            (
                "bridge_selector_lost_bridges",
                "Bridges that disconnected unexpectedly.",
            ),
        ] {
            // Counters get the `_total` suffix, as Jicofo's Prometheus export writes them.
            let c = IntCounter::with_opts(
                Opts::new(format!("{name}_total"), help).namespace(NAMESPACE),
            )?;
            registry.register(Box::new(c.clone()))?;
            list.push((c, 0));
        }
        Ok(FocusMetrics {
            registry,
            gauges,
            counters: Mutex::new(Counters { list }),
        })
    }

    /// Brings every metric up to date with `s`.
    pub fn observe(&self, s: &FocusStats, healthy: bool) {
        let g = &self.gauges;
        let int = |v: usize| i64::try_from(v).unwrap_or(i64::MAX);
        g.conferences.set(int(s.conferences));
        g.participants.set(int(s.participants));
        g.largest_conference.set(int(s.largest_conference));
        g.healthy.set(i64::from(healthy));
        g.bridge_count.set(int(s.bridge_selector.bridge_count));
        g.bridge_count_operational
            .set(int(s.bridge_selector.operational_bridge_count));
        g.bridge_count_in_shutdown
            .set(int(s.bridge_selector.in_shutdown_bridge_count));
        g.bridge_version_count
            .set(int(s.bridge_selector.bridge_version_count));
        let values = [
            s.total_conferences_created,
            s.total_participants,
            s.total_participants_moved,
            s.total_conference_requests,
            s.total_participants_requested_restart,
            s.total_participants_ice_failed,
            s.total_jingle_errors,
            s.total_colibri_failures,
            s.bridge_selector.lost_bridges,
        ];
        let mut counters = match self.counters.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        for ((counter, last), value) in counters.list.iter_mut().zip(values) {
            if value > *last {
                counter.inc_by(value - *last);
                *last = value;
            }
        }
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        service::encode_prometheus_text(&self.registry)
    }
}
