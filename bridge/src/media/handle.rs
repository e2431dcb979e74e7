//! [`MediaHandle`]: how the rest of the bridge (XMPP, colibri-ws, STUN discovery) talks to the
//! media workers — one bounded command channel per worker, COLIBRI2 answers on a oneshot. A
//! COLIBRI2 request goes to its conference's worker (`placement.rs`: chosen by load when the
//! request creates the conference), a colibri-ws attach to its endpoint's worker (from the
//! [`WsDirectory`]), process-wide commands (STUN mapping, stop) to every worker.

use std::sync::Arc;

use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use tokio::sync::{mpsc, oneshot};

use crate::lifecycle::Admission;

use super::placement::Placement;
use super::publish::MediaStats;
use super::worker::MediaCommand;
use super::ws_link::WsDirectory;

/// A cloneable handle for sending requests to the media workers.
#[derive(Clone)]
pub struct MediaHandle {
    workers: Arc<[mpsc::Sender<MediaCommand>]>,
    placement: Arc<Placement>,
    /// The workers' loads (placement); none in tests with a bare channel.
    stats: Option<Arc<MediaStats>>,
    ws: WsDirectory,
    /// colibri-ws commands (attach, messages, close) go to this worker.
    ws_worker: usize,
}

impl MediaHandle {
    pub(crate) fn new(
        workers: Vec<mpsc::Sender<MediaCommand>>,
        placement: Arc<Placement>,
        stats: Arc<MediaStats>,
        ws: WsDirectory,
    ) -> MediaHandle {
        MediaHandle {
            workers: workers.into(),
            placement,
            stats: Some(stats),
            ws,
            ws_worker: 0,
        }
    }

    /// A handle to one worker behind `tx` (tests).
    pub fn single(tx: mpsc::Sender<MediaCommand>) -> MediaHandle {
        MediaHandle {
            workers: vec![tx].into(),
            placement: Arc::default(),
            stats: None,
            ws: WsDirectory::default(),
            ws_worker: 0,
        }
    }

    /// A handle whose requests all fail (the media port could not be bound).
    pub fn unavailable() -> MediaHandle {
        let (tx, _) = mpsc::channel(1);
        MediaHandle::single(tx)
    }

    /// This handle with colibri-ws commands going to the worker of endpoint `endpoint_id` of
    /// colibri-ws conference `conference_id` (a WebSocket connection keeps it for its life).
    pub fn for_ws(&self, conference_id: &str, endpoint_id: &str) -> MediaHandle {
        let mut h = self.clone();
        h.ws_worker = self.ws.worker_of(conference_id, endpoint_id).unwrap_or(0);
        h
    }

    /// Queues a COLIBRI2 request on its conference's worker (in order: call this from the task
    /// that receives the IQs) and returns a future for its answer.
    pub async fn conference_modify(
        &self,
        request: ConferenceModify,
        admission: Admission,
    ) -> impl Future<Output = Result<ConferenceModified, Colibri2ErrorResponse>> + use<> {
        let w = if self.workers.len() > 1 {
            let loads = self.stats.as_ref().map(|s| s.loads()).unwrap_or_default();
            self.placement
                .worker_for(&request.meeting_id, request.create, &loads)
        } else {
            0
        };
        let (reply, rx) = oneshot::channel();
        let sent = match self.workers.get(w) {
            Some(tx) => tx
                .send(MediaCommand::Colibri {
                    request: Box::new(request),
                    admission,
                    reply,
                })
                .await
                .is_ok(),
            None => false,
        };
        async move {
            if !sent {
                return Err(media_unavailable());
            }
            rx.await.unwrap_or_else(|_| Err(media_unavailable()))
        }
    }

    /// Sends a command: process-wide ones to every worker, colibri-ws ones to this handle's
    /// worker ([`for_ws`](Self::for_ws)); false when a worker is gone.
    pub async fn send(&self, cmd: MediaCommand) -> bool {
        match cmd {
            MediaCommand::StunMapping(ip) => {
                let mut ok = true;
                for tx in self.workers.iter() {
                    ok &= tx.send(MediaCommand::StunMapping(ip)).await.is_ok();
                }
                ok
            }
            MediaCommand::Stop => {
                let mut ok = true;
                for tx in self.workers.iter() {
                    ok &= tx.send(MediaCommand::Stop).await.is_ok();
                }
                ok
            }
            cmd => match self.workers.get(self.ws_worker) {
                Some(tx) => tx.send(cmd).await.is_ok(),
                None => false,
            },
        }
    }
}

fn media_unavailable() -> Colibri2ErrorResponse {
    Colibri2ErrorResponse::new(
        signaling::colibri2::Condition::InternalServerError,
        None,
        Some("media plane not running".into()),
    )
}
