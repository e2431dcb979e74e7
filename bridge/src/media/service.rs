//! [`MediaPlane`]: the running media plane — binds the UDP port, starts the media worker's task and
//! supervises it (health component `udp`), starts STUN discovery, and seeds the plane's
//! randomness from the OS (the only OS randomness of the media plane besides the DTLS key).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::health::{Health, HealthRegistry};
use crate::random::TokenRng;
use crate::sfu::SfuConfig;
use crate::transport::signal::AdvertisedAddress;
use crate::transport::{DropCounters, Port};

use super::candidates;
use super::env::MediaEnv;
use super::handle::MediaHandle;
use super::plane::{Key, Plane};
use super::publish::MediaStats;
use super::settings::MediaSettings;
use super::worker::{MediaCommand, MediaWorker};
use super::ws_link::WsDirectory;

/// The health component name of the UDP port.
pub const HEALTH_COMPONENT: &str = "udp";

/// 32 bytes from the operating system's generator.
fn os_seed() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| anyhow::anyhow!("the operating system's random generator failed"))?;
    Ok(seed)
}

/// The running media plane.
pub struct MediaPlane {
    /// The bound UDP address (the real port when 0 was configured).
    pub local_addr: SocketAddr,
    /// What the answers advertise (at start; STUN may add one later).
    pub advertised: Vec<AdvertisedAddress>,
    handle: MediaHandle,
    stats: Arc<MediaStats>,
    ws_directory: WsDirectory,
    supervisor: JoinHandle<()>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
}

impl MediaPlane {
    /// Binds the port, starts the media worker (and, in the background, STUN discovery) and reports
    /// the `udp` health component. A bind failure is reported as failed health and returned.
    pub async fn start(
        settings: MediaSettings,
        sfu_config: SfuConfig,
        health: Arc<HealthRegistry>,
    ) -> anyhow::Result<MediaPlane> {
        let mut port: Port<Key> =
            match Port::bind(settings.bind, Arc::new(DropCounters::new())).await {
                Ok(p) => p,
                Err(e) => {
                    let msg = format!("cannot bind UDP {}: {e}", settings.bind);
                    health.report(HEALTH_COMPONENT, Health::Failed(msg.clone()));
                    anyhow::bail!(msg);
                }
            };
        let bound = port.local_addr().context("UDP local address")?;
        if settings.udp_buffer_size > 0 {
            match port.set_buffer_sizes(settings.udp_buffer_size) {
                Ok((receive, send)) => {
                    if receive < settings.udp_buffer_size as usize / 2 {
                        tracing::warn!(
                            asked = settings.udp_buffer_size,
                            granted = receive,
                            "the kernel capped the media socket's receive buffer: raise net.core.rmem_max (or grant CAP_NET_ADMIN) to avoid drops in bursts"
                        );
                    }
                    tracing::info!(receive, send, "media socket buffers");
                }
                Err(e) => tracing::warn!(error = %e, "cannot size the media socket buffers"),
            }
        }
        let mut env = MediaEnv::new(&settings, bound)?;
        // The port's demux counts into the same counters as the endpoints.
        env.counters = Arc::clone(port.state_mut().counters());
        if bound.ip().is_loopback() {
            // Bound to loopback: only loopback peers can be answered; drop (and count) the rest,
            // e.g. checks a local browser sends from its other interfaces.
            port.state_mut()
                .set_source_filter(Some(|a| a.ip().is_loopback()));
        }
        if env.advertised.is_empty() {
            tracing::warn!(
                "no candidates to advertise: set JVB_ADVERTISE_IPS (or enable private candidates)"
            );
        }
        tracing::info!(addr = %bound, candidates = ?env.advertised,
            fingerprint = %env.identity.fingerprint().value, "media port bound");
        let advertised = env.advertised.clone();
        let stats = Arc::new(MediaStats::new(Arc::clone(&env.counters)));
        // The one place the media plane reads OS randomness: seeds for the core's PRNG and the
        // generator of the secrets handed to clients.
        let mut tokens = TokenRng::new(os_seed()?);
        let mut sfu_config = sfu_config;
        sfu_config.endpoint_expire_timeout = settings.endpoint_expire_timeout;
        sfu_config.seed = tokens.next_u64();
        let plane = Plane::new(sfu_config, env, tokens);
        let ws_directory = plane.ws_directory.clone();
        let handler = MediaWorker::new(plane, Arc::clone(&stats), Instant::now());
        let (tx, rx) = mpsc::channel(1024);
        let task = tokio::spawn(async move {
            let _ = port.run(handler, rx).await;
        });
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let supervisor = {
            let health = Arc::clone(&health);
            let stopping = Arc::clone(&stopping);
            tokio::spawn(async move {
                let result = task.await;
                if !stopping.load(std::sync::atomic::Ordering::SeqCst) {
                    let why = match result {
                        Ok(()) => "media task ended".to_owned(),
                        Err(e) => format!("media task failed: {e}"),
                    };
                    tracing::error!("{why}");
                    health.report(HEALTH_COMPONENT, Health::Failed(why));
                }
            })
        };
        health.report(HEALTH_COMPONENT, Health::Healthy);
        let handle = MediaHandle { tx };
        if !settings.stun_servers.is_empty() {
            let servers = settings.stun_servers.clone();
            let h = handle.clone();
            tokio::spawn(async move {
                if let Some(ip) = candidates::discover_public_ip(&servers, bound.ip()).await {
                    h.send(MediaCommand::StunMapping(ip)).await;
                } else {
                    tracing::warn!(
                        "STUN discovery found no public address; advertising configured and local addresses only"
                    );
                }
            });
        }
        Ok(MediaPlane {
            local_addr: bound,
            advertised,
            handle,
            stats,
            ws_directory,
            supervisor,
            stopping,
        })
    }

    pub fn handle(&self) -> MediaHandle {
        self.handle.clone()
    }

    /// Who may open colibri-ws (for the WebSocket server).
    pub fn ws_directory(&self) -> WsDirectory {
        self.ws_directory.clone()
    }

    pub fn stats(&self) -> Arc<MediaStats> {
        Arc::clone(&self.stats)
    }

    /// Stops the media task (endpoints get DTLS close_notify as the port drops).
    pub async fn stop(self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.handle.send(MediaCommand::Stop).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.supervisor).await;
    }
}
