//! colibri-ws: the bridge channel over a WebSocket, on a separate public HTTP port (JVB's 9090).
//! Off by default (`ENABLE_COLIBRI_WEBSOCKET`): docker-jitsi-meet removed it and lib-jitsi-meet
//! prefers the SCTP data channel; kept for clients and proxies that still use it.
//!
//! `GET /colibri-ws/<server-id>/<conference-id>/<endpoint-id>?pwd=<password>` (WebSocket upgrade):
//! - `<server-id>` must be ours (`JVB_WS_SERVER_ID`, default the brewery nickname), else 404;
//! - the conference (the id in the URL the COLIBRI2 answer advertised) and endpoint must exist, else
//!   404; `pwd` must be the endpoint's 24-character password, else 401.
//!
//! On connect the bridge sends `{"colibriClass":"ServerHello"}` first; text frames go into the
//! forwarding core like data-channel messages (EndpointMessage relay, constraints, …), and what the
//! core sends to an endpoint whose SCTP channel is not open goes out on its socket. Pings every
//! 15 s; a socket silent for 60 s is closed. The socket closes (1001) when the endpoint expires.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::media::handle::MediaHandle;
use crate::media::plane::Key;
use crate::media::worker::MediaCommand;
use crate::media::ws::WsRefusal;

/// Keepalive ping period (JVB: 15 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A socket with no incoming frame (pongs included) for this long is closed (JVB: 60 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
struct WsState {
    server_id: String,
    media: MediaHandle,
}

/// The `ServerHello` the bridge sends when a socket opens.
pub fn server_hello() -> String {
    serde_json::json!({
        "colibriClass": "ServerHello",
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

/// The router (for in-process tests and [`ColibriWs::start`]).
pub fn router(server_id: String, media: MediaHandle) -> Router {
    Router::new()
        .route(
            "/colibri-ws/{server_id}/{conference_id}/{endpoint_id}",
            get(upgrade),
        )
        .with_state(WsState { server_id, media })
}

async fn upgrade(
    State(state): State<WsState>,
    Path((server_id, conference_id, endpoint_id)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if server_id != state.server_id {
        return (StatusCode::NOT_FOUND, "server ID mismatch").into_response();
    }
    let password = query.get("pwd").cloned().unwrap_or_default();
    let (sender, receiver) = mpsc::unbounded_channel();
    let (reply, answer) = oneshot::channel();
    let asked = state
        .media
        .send(MediaCommand::WsAttach {
            conference_id,
            endpoint_id: endpoint_id.clone(),
            password,
            sender: sender.clone(),
            reply,
        })
        .await;
    if !asked {
        return (StatusCode::SERVICE_UNAVAILABLE, "media plane not running").into_response();
    }
    match answer.await {
        Ok(Ok(key)) => {
            tracing::info!(endpoint = endpoint_id, "colibri-ws connected");
            let media = state.media.clone();
            ws.on_upgrade(move |socket| run_socket(socket, key, receiver, sender, media))
        }
        Ok(Err(WsRefusal::NotFound)) => {
            (StatusCode::NOT_FOUND, "unknown conference or endpoint").into_response()
        }
        Ok(Err(WsRefusal::BadPassword)) => {
            tracing::warn!(endpoint = endpoint_id, "colibri-ws: wrong password");
            (StatusCode::UNAUTHORIZED, "authentication failed").into_response()
        }
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "media plane not running").into_response(),
    }
}

async fn run_socket(
    socket: WebSocket,
    key: Key,
    mut outgoing: mpsc::UnboundedReceiver<String>,
    sender: mpsc::UnboundedSender<String>,
    media: MediaHandle,
) {
    let (mut tx, mut rx) = socket.split();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_in = Instant::now();
    if tx.send(Message::Text(server_hello().into())).await.is_err() {
        media.send(MediaCommand::WsClosed { key, sender }).await;
        return;
    }
    loop {
        tokio::select! {
            out = outgoing.recv() => match out {
                Some(text) => {
                    if tx.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => {
                    // The endpoint expired.
                    let _ = tx
                        .send(Message::Close(Some(CloseFrame {
                            code: 1001,
                            reason: "endpoint expired".into(),
                        })))
                        .await;
                    break;
                }
            },
            incoming = rx.next() => {
                last_in = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let cmd = MediaCommand::WsMessage { key, text: text.as_str().to_owned() };
                        if !media.send(cmd).await {
                            break;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    // Pings are answered by the WebSocket layer; binary frames are unused.
                    Some(Ok(_)) => {}
                }
            }
            _ = ping.tick() => {
                if last_in.elapsed() >= IDLE_TIMEOUT {
                    tracing::info!("colibri-ws idle for {IDLE_TIMEOUT:?}; closing");
                    break;
                }
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
    media.send(MediaCommand::WsClosed { key, sender }).await;
}

/// The running colibri-ws server.
pub struct ColibriWs {
    pub local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl ColibriWs {
    /// Binds `bind` and serves colibri-ws for `server_id`.
    pub async fn start(
        bind: SocketAddr,
        server_id: String,
        media: MediaHandle,
    ) -> anyhow::Result<ColibriWs> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| anyhow::anyhow!("binding colibri-ws to {bind}: {e}"))?;
        let local_addr = listener.local_addr()?;
        let app = router(server_id.clone(), media);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "colibri-ws server failed");
            }
        });
        tracing::info!(addr = %local_addr, server_id, "colibri-ws listening");
        Ok(ColibriWs { local_addr, task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
