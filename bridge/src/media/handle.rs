//! [`MediaHandle`]: how the rest of the bridge (XMPP, colibri-ws, STUN discovery) talks to the
//! media worker — one bounded command channel, COLIBRI2 answers on a oneshot.

use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use tokio::sync::{mpsc, oneshot};

use crate::lifecycle::Admission;

use super::worker::MediaCommand;

/// A cloneable handle for sending requests to the media task.
#[derive(Clone)]
pub struct MediaHandle {
    pub(crate) tx: mpsc::Sender<MediaCommand>,
}

impl MediaHandle {
    /// A handle whose requests all fail (the media port could not be bound).
    pub fn unavailable() -> MediaHandle {
        let (tx, _) = mpsc::channel(1);
        MediaHandle { tx }
    }

    /// Queues a COLIBRI2 request (in order: call this from the task that receives the IQs) and
    /// returns a future for its answer.
    pub async fn conference_modify(
        &self,
        request: ConferenceModify,
        admission: Admission,
    ) -> impl Future<Output = Result<ConferenceModified, Colibri2ErrorResponse>> + use<> {
        let (reply, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(MediaCommand::Colibri {
                request: Box::new(request),
                admission,
                reply,
            })
            .await;
        async move {
            if sent.is_err() {
                return Err(media_unavailable());
            }
            rx.await.unwrap_or_else(|_| Err(media_unavailable()))
        }
    }

    /// Sends a command (colibri-ws plumbing); false when the media task is gone.
    pub async fn send(&self, cmd: MediaCommand) -> bool {
        self.tx.send(cmd).await.is_ok()
    }
}

fn media_unavailable() -> Colibri2ErrorResponse {
    Colibri2ErrorResponse::new(
        signaling::colibri2::Condition::InternalServerError,
        None,
        Some("media plane not running".into()),
    )
}
