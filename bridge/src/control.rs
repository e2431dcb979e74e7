//! The control plane assembled: lifecycle driver, stats sampler, REST server.
//!
//! The binary (and in-process tests) start it with the two seams the rest of the bridge fills:
//! a [`StatsSource`] (media plane + XMPP counters) and a [`HealthRegistry`] (components report their
//! health). What it hands back is what the rest of the bridge needs:
//! [`ControlPlane::lifecycle`] (the COLIBRI2 handler asks `admit_new_conference()`; the XMPP side
//! forwards `graceful-shutdown` IQs), [`ControlPlane::stats`] (`current()` feeds brewery presence).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::health::HealthRegistry;
use crate::lifecycle::{self, LifecycleHandle};
use crate::stats::{self, BridgeMetrics, StatsHandle, StatsSource};

/// A running control plane.
pub struct ControlPlane {
    pub lifecycle: LifecycleHandle,
    pub stats: StatsHandle,
    pub health: Arc<HealthRegistry>,
    pub metrics: Arc<BridgeMetrics>,
    /// The address the REST API is bound to (useful when the configured port was 0).
    pub rest_addr: SocketAddr,
    stop_rest: Option<oneshot::Sender<()>>,
    rest_task: JoinHandle<std::io::Result<()>>,
    lifecycle_task: JoinHandle<()>,
    stats_task: JoinHandle<()>,
}

impl ControlPlane {
    /// Binds the REST port and starts the tasks (needs a tokio runtime).
    pub async fn start(
        config: &Config,
        source: Arc<dyn StatsSource>,
        health: Arc<HealthRegistry>,
    ) -> anyhow::Result<ControlPlane> {
        let counter = Arc::clone(&source);
        let (lifecycle, lifecycle_driver) = lifecycle::lifecycle(
            config.lifecycle.clone(),
            Arc::new(move || counter.local_endpoints()),
        );
        let (stats, stats_driver) = stats::stats(
            config.stats.clone(),
            source,
            lifecycle.clone(),
            Arc::clone(&health),
        );
        let metrics = Arc::new(BridgeMetrics::new().context("registering metrics")?);
        let app = api::router(
            ApiState {
                lifecycle: lifecycle.clone(),
                stats: stats.clone(),
                health: Arc::clone(&health),
                colibri_stats: config.rest.colibri_stats,
                shutdown_api: config.rest.shutdown_api,
            },
            Arc::clone(&metrics),
        );
        let listener = tokio::net::TcpListener::bind(config.rest.bind)
            .await
            .with_context(|| format!("binding the REST API to {}", config.rest.bind))?;
        let rest_addr = listener.local_addr().context("REST listener address")?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let rest_task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        tracing::info!(addr = %rest_addr, "REST API listening");
        Ok(ControlPlane {
            lifecycle,
            stats,
            health,
            metrics,
            rest_addr,
            stop_rest: Some(stop_tx),
            rest_task,
            lifecycle_task: tokio::spawn(lifecycle_driver.run()),
            stats_task: tokio::spawn(stats_driver.run()),
        })
    }

    /// Stops the REST server (in-flight requests get up to 2 s) and the background tasks.
    pub async fn close(mut self) {
        if let Some(tx) = self.stop_rest.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(2), &mut self.rest_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "REST server error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "REST task failed"),
            Err(_) => {
                tracing::warn!("REST server did not stop within 2 s; aborting it");
                self.rest_task.abort();
            }
        }
        self.stats_task.abort();
        self.lifecycle_task.abort();
    }
}
