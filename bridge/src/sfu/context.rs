//! What every conference of one core shares while a call into the core runs: the configuration,
//! the counters, the reused egress buffers, the seeded PRNG and the one timer table.

use crate::random::Rng;
use crate::timer::TimerTable;

use super::api::{ConferenceHandle, EndpointHandle};
use super::config::SfuConfig;
use super::counters::Counters;

/// What fires. Conference work is periodic; an uplink's timer covers its feedback generators
/// (transport-cc feedback, NACKs), a downlink's its bandwidth estimator (probes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimerKey {
    Conference(ConferenceHandle, ConferenceTimer),
    Uplink(EndpointHandle),
    Downlink(EndpointHandle),
}

impl TimerKey {
    /// The conference whose state the timer belongs to.
    pub fn conference(&self) -> ConferenceHandle {
        match *self {
            TimerKey::Conference(c, _) => c,
            TimerKey::Uplink(e) | TimerKey::Downlink(e) => e.conf,
        }
    }
}

/// The periodic work of a conference (each an index into its deadline table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConferenceTimer {
    /// Receiver reports toward the senders.
    ReceiverReports,
    /// Dominant speaker evaluation.
    Speaker,
    /// Connectivity status and expiry.
    Housekeeping,
    /// Re-allocation: periodic, or due now after a layer change.
    Allocation,
    /// Layer activity (an encoding started or stopped).
    LayerCheck,
    /// Probing for receivers whose allocation wants more than their estimate.
    ProbeCheck,
    /// A sender constraint is due (after its hold-off) or its verification is.
    SenderConstraints,
}

impl ConferenceTimer {
    pub const ALL: [ConferenceTimer; 7] = [
        ConferenceTimer::ReceiverReports,
        ConferenceTimer::Speaker,
        ConferenceTimer::Housekeeping,
        ConferenceTimer::Allocation,
        ConferenceTimer::LayerCheck,
        ConferenceTimer::ProbeCheck,
        ConferenceTimer::SenderConstraints,
    ];

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Buffers and services shared by all conferences of one core.
pub(crate) struct Ctx {
    pub cfg: SfuConfig,
    pub counters: Counters,
    /// Egress buffer: every forwarded packet is built here, then handed to the sink.
    pub scratch: Vec<u8>,
    /// Second buffer for retransmissions (rebuilt packet, then its RTX form in `scratch`) and for
    /// feedback toward senders.
    pub scratch2: Vec<u8>,
    /// Ingress packets rebuilt from a sender's RTX.
    pub ingress: Vec<u8>,
    pub text: String,
    pub rng: Rng,
    pub timers: TimerTable<TimerKey>,
}

impl Ctx {
    pub fn new(cfg: SfuConfig) -> Ctx {
        let rng = Rng::new(cfg.seed);
        Ctx {
            cfg,
            counters: Counters::default(),
            scratch: Vec::with_capacity(1600),
            scratch2: Vec::with_capacity(1600),
            ingress: Vec::with_capacity(1600),
            text: String::new(),
            rng,
            timers: TimerTable::default(),
        }
    }
}
