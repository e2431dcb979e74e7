//! Process-wide media facts every endpoint shares: the DTLS identity, the port's drop counters,
//! the enabled SRTP profiles, the addresses the answers advertise.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use signaling::ice_udp::Candidate;

use crate::transport::signal::{AdvertisedAddress, local_candidates};
use crate::transport::{DropCounters, DtlsIdentity, SrtpProfile};

use super::candidates;
use super::settings::{MediaSettings, srtp_profile};

/// Process-wide media facts every endpoint shares.
pub struct MediaEnv {
    pub identity: DtlsIdentity,
    pub counters: Arc<DropCounters>,
    pub srtp_profiles: Vec<SrtpProfile>,
    /// The address the port is bound to (the real port when 0 was configured).
    pub bound: SocketAddr,
    pub interfaces: Vec<IpAddr>,
    pub advertised: Vec<AdvertisedAddress>,
    /// `advertised` as signalled candidates (recomputed when STUN adds a mapping).
    pub candidates: Vec<Candidate>,
    pub colibri_ws_base: Option<String>,
}

impl MediaEnv {
    /// An environment for `bound` with fresh credentials (unit tests and
    /// [`MediaPlane::start`](super::service::MediaPlane::start)).
    pub fn new(settings: &MediaSettings, bound: SocketAddr) -> anyhow::Result<MediaEnv> {
        let interfaces = candidates::interface_addresses();
        let advertised = candidates::plan(
            bound,
            &settings.advertise_ips,
            settings.advertise_private_candidates,
            &interfaces,
        );
        Ok(MediaEnv {
            identity: DtlsIdentity::generate().context("generating the DTLS certificate")?,
            counters: Arc::new(DropCounters::new()),
            srtp_profiles: settings
                .srtp_profiles
                .iter()
                .copied()
                .map(srtp_profile)
                .collect(),
            bound,
            interfaces,
            candidates: local_candidates(&advertised),
            advertised,
            colibri_ws_base: settings.colibri_ws_base.clone(),
        })
    }

    /// The same facts for another media worker, with its own drop counters.
    pub fn for_worker(&self, counters: Arc<DropCounters>) -> MediaEnv {
        MediaEnv {
            identity: self.identity.clone(),
            counters,
            srtp_profiles: self.srtp_profiles.clone(),
            bound: self.bound,
            interfaces: self.interfaces.clone(),
            advertised: self.advertised.clone(),
            candidates: self.candidates.clone(),
            colibri_ws_base: self.colibri_ws_base.clone(),
        }
    }

    pub fn add_stun_mapping(&mut self, public: IpAddr) {
        if candidates::add_stun_mapping(&mut self.advertised, self.bound, &self.interfaces, public)
        {
            self.candidates = local_candidates(&self.advertised);
            tracing::info!(candidates = ?self.advertised, "advertised candidates updated");
        }
    }
}
