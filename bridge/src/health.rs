//! The bridge's own health: a registry of named components that report their state.
//!
//! This is the seam between the control plane and the parts that can fail: the media plane reports
//! `"udp"` once its socket is bound (or failed to bind), each XMPP connection reports whether it is
//! online, and so on. `/about/health`, the `healthy` stat and the `jitsi_jvb_healthy` metric read
//! [`HealthRegistry::check`]: healthy iff every registered component is healthy or merely degraded
//! (an empty registry is healthy). JVB's own checker works the same way in spirit (bind address
//! valid, single port bound).
//!
//! `Degraded` is for components whose outage must be visible but must not fail liveness: the XMPP
//! connections. The manifests use `/about/health` as the liveness probe, and restarting a bridge
//! because Prosody restarts would end every call on it for nothing (media keeps flowing without
//! XMPP; the focus cannot reach the bridge meanwhile and stops picking it). `/about/health` answers
//! 200 with the degradation as text then; `/colibri/stats` shows `muc_clients_connected`.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// One component's (or the whole bridge's) health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Not ready or temporarily down (HTTP 503), e.g. XMPP not connected yet.
    Unavailable(String),
    /// Broken (HTTP 500), e.g. the media port could not be bound.
    Failed(String),
    /// Working with a non-fatal problem (HTTP 200 with the message), e.g. no XMPP connection.
    Degraded(String),
}

impl Health {
    /// Healthy or degraded: what liveness and the focus's health checks see as healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy | Health::Degraded(_))
    }
}

/// Named component health reports. Cheap to query (a mutex over a small map; not on the packet path).
#[derive(Debug, Default)]
pub struct HealthRegistry {
    components: Mutex<BTreeMap<String, Health>>,
}

impl HealthRegistry {
    pub fn new() -> HealthRegistry {
        HealthRegistry::default()
    }

    /// Sets (or replaces) a component's health.
    pub fn report(&self, component: &str, health: Health) {
        let mut map = self
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.insert(component.to_owned(), health);
    }

    /// Removes a component (e.g. an XMPP connection that was configured away).
    pub fn remove(&self, component: &str) {
        let mut map = self
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.remove(component);
    }

    /// The combined health: the first failure (500) wins over unavailability (503); messages name the
    /// components.
    pub fn check(&self) -> Health {
        let map = self
            .components
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let failed: Vec<String> = map
            .iter()
            .filter_map(|(name, h)| match h {
                Health::Failed(m) => Some(format!("{name}: {m}")),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            return Health::Failed(failed.join("; "));
        }
        let unavailable: Vec<String> = map
            .iter()
            .filter_map(|(name, h)| match h {
                Health::Unavailable(m) => Some(format!("{name}: {m}")),
                _ => None,
            })
            .collect();
        if !unavailable.is_empty() {
            return Health::Unavailable(unavailable.join("; "));
        }
        let degraded: Vec<String> = map
            .iter()
            .filter_map(|(name, h)| match h {
                Health::Degraded(m) => Some(format!("{name}: {m}")),
                _ => None,
            })
            .collect();
        if !degraded.is_empty() {
            return Health::Degraded(degraded.join("; "));
        }
        Health::Healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combines_components() {
        let h = HealthRegistry::new();
        assert_eq!(h.check(), Health::Healthy);
        h.report("udp", Health::Healthy);
        h.report("xmpp-0", Health::Unavailable("connecting".into()));
        assert_eq!(h.check(), Health::Unavailable("xmpp-0: connecting".into()));
        h.report("udp", Health::Failed("bind: address in use".into()));
        assert_eq!(
            h.check(),
            Health::Failed("udp: bind: address in use".into())
        );
        h.report("udp", Health::Healthy);
        h.report("xmpp-0", Health::Healthy);
        assert!(h.check().is_healthy());
        h.report("xmpp-1", Health::Unavailable("down".into()));
        h.remove("xmpp-1");
        assert!(h.check().is_healthy());
        h.report("xmpp", Health::Degraded("no connection".into()));
        assert_eq!(h.check(), Health::Degraded("xmpp: no connection".into()));
        assert!(h.check().is_healthy(), "degraded is not a liveness failure");
        h.report("udp", Health::Failed("gone".into()));
        assert_eq!(h.check(), Health::Failed("udp: gone".into()));
    }
}
