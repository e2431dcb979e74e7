//! [`MediaPlane`]: the running media plane — binds the UDP port (one `SO_REUSEPORT` socket per
//! media worker), starts the workers, each on its own OS thread with a single-threaded tokio
//! runtime so that they run in parallel on separate cores while the rest of the bridge stays on
//! the main runtime, supervises them (health component `udp`), starts STUN discovery, and seeds
//! the workers' randomness from the OS (the only OS randomness of the media plane besides the
//! DTLS key).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::health::{Health, HealthRegistry};
use crate::random::TokenRng;
use crate::sfu::SfuConfig;
use crate::transport::handoff::{self, Routes, WorkerId};
use crate::transport::shell::{self, Handoff};
use crate::transport::signal::AdvertisedAddress;
use crate::transport::udp::IoCounters;
use crate::transport::{DropCounters, Port};

use super::candidates;
use super::env::MediaEnv;
use super::handle::MediaHandle;
use super::placement::Placement;
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

/// Datagrams batches one worker may queue for another before hand-offs are dropped (each
/// batch ≤ 32 datagrams: ≈ 8 000 datagrams, tens of milliseconds of a busy worker's input).
const HANDOFF_QUEUE: usize = 256;

/// The running media plane.
pub struct MediaPlane {
    /// The bound UDP address (the real port when 0 was configured).
    pub local_addr: SocketAddr,
    /// What the answers advertise (at start; STUN may add one later).
    pub advertised: Vec<AdvertisedAddress>,
    /// How many media workers run.
    pub workers: usize,
    handle: MediaHandle,
    stats: Arc<MediaStats>,
    ws_directory: WsDirectory,
    routes: Arc<Routes>,
    placement: Arc<Placement>,
    supervisor: JoinHandle<()>,
    stopping: Arc<AtomicBool>,
}

/// What one worker thread needs.
struct WorkerStart {
    index: usize,
    socket: std::net::UdpSocket,
    counters: Arc<DropCounters>,
    io: Arc<IoCounters>,
    /// With several workers: the shared routes and the links to the others.
    shared: Option<(Arc<Routes>, Handoff)>,
    loopback_only: bool,
    handler: MediaWorker,
    commands: mpsc::Receiver<MediaCommand>,
}

impl WorkerStart {
    /// Runs the worker on this thread's own single-threaded runtime until it is stopped; returns
    /// why it ended.
    fn run(self) -> String {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => return format!("cannot start its runtime: {e}"),
        };
        let WorkerStart {
            index,
            socket,
            counters,
            io,
            shared,
            loopback_only,
            handler,
            commands,
        } = self;
        runtime.block_on(async move {
            let mut port: Port<Key> = match Port::from_std(socket, counters, io) {
                Ok(p) => p,
                Err(e) => return format!("cannot register its socket: {e}"),
            };
            if loopback_only {
                // Bound to loopback: only loopback peers can be answered; drop (and count) the
                // rest, e.g. checks a local browser sends from its other interfaces.
                port.state_mut()
                    .set_source_filter(Some(|a| a.ip().is_loopback()));
            }
            if let Some((routes, links)) = shared {
                port.share(index as WorkerId, routes, links);
            }
            let _ = port.run(handler, commands).await;
            "ended".to_owned()
        })
    }
}

impl MediaPlane {
    /// Binds the port (one socket per worker), starts the media workers, each on its own thread
    /// (and, in the background, STUN discovery) and reports the `udp` health component. A bind
    /// failure is reported as failed health and returned.
    pub async fn start(
        settings: MediaSettings,
        sfu_config: SfuConfig,
        health: Arc<HealthRegistry>,
    ) -> anyhow::Result<MediaPlane> {
        let n = settings.workers.clamp(1, usize::from(WorkerId::MAX));
        let sockets = match handoff::bind_group(settings.bind, n) {
            Ok(s) => s,
            Err(e) => {
                let msg = format!("cannot bind UDP {}: {e}", settings.bind);
                health.report(HEALTH_COMPONENT, Health::Failed(msg.clone()));
                anyhow::bail!(msg);
            }
        };
        let bound = sockets[0].local_addr().context("UDP local address")?;
        if settings.udp_buffer_size > 0 {
            for socket in &sockets {
                match shell::set_buffer_sizes(socket.as_raw_fd(), settings.udp_buffer_size) {
                    Ok((receive, send)) => {
                        if receive < settings.udp_buffer_size as usize / 2 {
                            tracing::warn!(
                                asked = settings.udp_buffer_size,
                                granted = receive,
                                "the kernel capped the media socket's receive buffer: raise net.core.rmem_max (or grant CAP_NET_ADMIN) to avoid drops in bursts"
                            );
                        }
                        tracing::debug!(receive, send, "media socket buffers");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot size the media socket buffers"),
                }
            }
        }
        let env = MediaEnv::new(&settings, bound)?;
        if env.advertised.is_empty() {
            tracing::warn!(
                "no candidates to advertise: set JVB_ADVERTISE_IPS (or enable private candidates)"
            );
        }
        tracing::info!(addr = %bound, workers = n, candidates = ?env.advertised,
            fingerprint = %env.identity.fingerprint().value, "media port bound");
        let advertised = env.advertised.clone();
        let counters: Vec<Arc<DropCounters>> = (0..n).map(|_| Arc::default()).collect();
        let ios: Vec<Arc<IoCounters>> = (0..n).map(|_| Arc::default()).collect();
        let stats = Arc::new(MediaStats::new(
            counters.iter().cloned().zip(ios.iter().cloned()).collect(),
        ));
        let routes = Arc::new(Routes::new());
        let placement = Arc::new(Placement::default());
        let ws_directory = WsDirectory::default();
        let (handoff_tx, handoff_rx): (Vec<_>, Vec<_>) =
            (0..n).map(|_| mpsc::channel(HANDOFF_QUEUE)).unzip();
        let (exit_tx, mut exit_rx) = mpsc::unbounded_channel::<(usize, String)>();
        let mut command_tx = Vec::with_capacity(n);
        for (index, ((socket, inbox), (counters, io))) in sockets
            .into_iter()
            .zip(handoff_rx)
            .zip(counters.into_iter().zip(ios))
            .enumerate()
        {
            // The one place the media plane reads OS randomness: seeds for each core's PRNG and
            // the generator of the secrets handed to clients.
            let mut tokens = TokenRng::new(os_seed()?);
            let mut sfu_config = sfu_config.clone();
            sfu_config.endpoint_expire_timeout = settings.endpoint_expire_timeout;
            sfu_config.seed = tokens.next_u64();
            let mut plane = Plane::new(sfu_config, env.for_worker(Arc::clone(&counters)), tokens);
            plane.worker = index;
            plane.ws_directory = ws_directory.clone();
            let handler = MediaWorker::new(
                plane,
                Arc::clone(&stats),
                Arc::clone(&placement),
                Instant::now(),
            );
            let (tx, commands) = mpsc::channel(1024);
            command_tx.push(tx);
            let shared = (n > 1).then(|| {
                let peers = handoff_tx
                    .iter()
                    .enumerate()
                    .map(|(w, tx)| (w != index).then(|| tx.clone()))
                    .collect();
                (Arc::clone(&routes), Handoff::new(peers, inbox))
            });
            let start = WorkerStart {
                index,
                socket,
                counters,
                io,
                shared,
                loopback_only: bound.ip().is_loopback(),
                handler,
                commands,
            };
            let exit = exit_tx.clone();
            std::thread::Builder::new()
                .name(format!("media-{index}"))
                .spawn(move || {
                    let why = match catch_unwind(AssertUnwindSafe(|| start.run())) {
                        Ok(why) => why,
                        Err(_) => "panicked".to_owned(),
                    };
                    let _ = exit.send((index, why));
                })
                .context("starting a media worker thread")?;
        }
        drop(exit_tx);
        drop(handoff_tx);
        let stopping = Arc::new(AtomicBool::new(false));
        let supervisor = {
            let health = Arc::clone(&health);
            let stopping = Arc::clone(&stopping);
            tokio::spawn(async move {
                // Ends when every worker thread has ended.
                while let Some((index, why)) = exit_rx.recv().await {
                    if !stopping.load(Ordering::SeqCst) {
                        let why = format!("media worker {index} {why}");
                        tracing::error!("{why}");
                        health.report(HEALTH_COMPONENT, Health::Failed(why));
                    }
                }
            })
        };
        health.report(HEALTH_COMPONENT, Health::Healthy);
        let handle = MediaHandle::new(
            command_tx,
            Arc::clone(&placement),
            Arc::clone(&stats),
            ws_directory.clone(),
        );
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
            workers: n,
            handle,
            stats,
            ws_directory,
            routes,
            placement,
            supervisor,
            stopping,
        })
    }

    /// The port's shared routing directory (tests: what the workers registered).
    pub fn routes(&self) -> &Arc<Routes> {
        &self.routes
    }

    /// The conferences' workers.
    pub fn placement(&self) -> &Arc<Placement> {
        &self.placement
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

    /// Stops every media worker and waits (≤ 2 s) for their threads to end.
    pub async fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.handle.send(MediaCommand::Stop).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.supervisor).await;
    }
}
