//! Which media worker a conference lives on: chosen once, when COLIBRI2 creates it, by load; every
//! later request for it goes to the same worker. Control path only (a mutex per COLIBRI2
//! request, never per packet).
//!
//! Load = the worker's endpoints first, then its packet rate (in + out over the last stats export),
//! then the conferences placed on it, then its index. Endpoints come first because they predict
//! the load a conference brings (a conference just created sends nothing yet, and the packet rate
//! lags by up to half a second); the packet rate separates workers with equal endpoints but
//! different media (video senders against audio-only), and counting placed conferences spreads
//! a burst of creates that arrive before any worker published its new endpoints.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// One worker's load as last published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerLoad {
    pub endpoints: u64,
    /// Packets in + out per second.
    pub packet_rate: u64,
}

/// The least loaded worker (see the module docs for the order); 0 when there is none.
pub fn least_loaded(loads: &[WorkerLoad], conferences: &[usize]) -> usize {
    (0..loads.len())
        .min_by_key(|&w| {
            let l = loads[w];
            (
                l.endpoints,
                l.packet_rate,
                conferences.get(w).copied().unwrap_or(0),
                w,
            )
        })
        .unwrap_or(0)
}

/// Meeting id → worker, for the conferences that exist (or are being created).
#[derive(Debug, Default)]
pub struct Placement {
    inner: Mutex<HashMap<String, usize>>,
}

impl Placement {
    /// The worker of meeting `meeting_id`: its own if placed, else the least loaded (placed there
    /// now when `create`: the request creates it).
    pub fn worker_for(&self, meeting_id: &str, create: bool, loads: &[WorkerLoad]) -> usize {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(&w) = map.get(meeting_id) {
            return w;
        }
        let mut placed = vec![0usize; loads.len()];
        for &w in map.values() {
            if let Some(n) = placed.get_mut(w) {
                *n += 1;
            }
        }
        let w = least_loaded(loads, &placed);
        if create {
            map.insert(meeting_id.to_owned(), w);
        }
        w
    }

    /// Worker `w` no longer has meeting `meeting_id` (expired, or its create failed).
    pub fn forget(&self, meeting_id: &str, w: usize) {
        let mut map = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if map.get(meeting_id) == Some(&w) {
            map.remove(meeting_id);
        }
    }

    /// The worker a meeting is placed on.
    pub fn get(&self, meeting_id: &str) -> Option<usize> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(meeting_id)
            .copied()
    }

    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(endpoints: u64, packet_rate: u64) -> WorkerLoad {
        WorkerLoad {
            endpoints,
            packet_rate,
        }
    }

    #[test]
    fn fewest_endpoints_then_packets_then_conferences_then_index() {
        assert_eq!(least_loaded(&[load(3, 0), load(2, 9_000)], &[0, 0]), 1);
        assert_eq!(least_loaded(&[load(2, 500), load(2, 400)], &[0, 0]), 1);
        assert_eq!(least_loaded(&[load(2, 400), load(2, 400)], &[3, 1]), 1);
        assert_eq!(least_loaded(&[load(2, 400), load(2, 400)], &[1, 1]), 0);
        assert_eq!(least_loaded(&[], &[]), 0);
    }

    /// A conference stays on the worker it was created on whatever the loads do later; new ones
    /// go to the least loaded, a burst of creates before any load is published is spread by the
    /// conferences already placed, and a forgotten conference is placed afresh.
    #[test]
    fn a_conference_stays_where_it_was_created() {
        let p = Placement::default();
        let idle = [load(0, 0), load(0, 0)];
        assert_eq!(p.worker_for("a", true, &idle), 0);
        assert_eq!(
            p.worker_for("b", true, &idle),
            1,
            "spread before loads move"
        );
        assert_eq!(p.worker_for("c", true, &[load(5, 0), load(1, 0)]), 1);
        assert_eq!(p.worker_for("a", false, &[load(9, 0), load(0, 0)]), 0);
        assert_eq!(p.worker_for("a", true, &[load(9, 0), load(0, 0)]), 0);
        // A request for an unknown conference without create is not placed.
        assert_eq!(p.worker_for("x", false, &idle), 0);
        assert_eq!(p.get("x"), None);
        // Only its own worker can forget it.
        p.forget("a", 1);
        assert_eq!(p.get("a"), Some(0));
        p.forget("a", 0);
        assert_eq!(p.get("a"), None);
        assert_eq!(p.worker_for("a", true, &[load(9, 0), load(0, 0)]), 1);
        assert_eq!(p.len(), 3);
    }
}
