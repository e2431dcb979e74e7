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
//! 15 s; a socket silent for 60 s is closed. The socket closes (1001) when the endpoint expires,
//! and (1000) when a newer connection for the same endpoint replaces it: one socket per endpoint.
//! Client messages are limited to [`MAX_MESSAGE_SIZE`]; the password is checked here, against the
//! worker's [`WsDirectory`], before anything reaches the media worker.

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
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::media::handle::MediaHandle;
use crate::media::plane::Key;
use crate::media::worker::MediaCommand;
use crate::media::ws_link::{CLOSE_EXPIRED, WsDirectory, WsOut, WsRefusal, WsSocket, ws_pair};

/// Keepalive ping period (JVB: 15 s).
pub const PING_INTERVAL: Duration = Duration::from_secs(15);
/// A socket with no incoming frame (pongs included) for this long is closed (JVB: 60 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest message (and frame) a client may send; a larger one closes the socket (1009). The
/// bridge channel's messages are small JSON; axum's default would be 64 MiB.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

#[derive(Clone)]
struct WsState {
    server_id: String,
    media: MediaHandle,
    directory: WsDirectory,
}

/// The `ServerHello` the bridge sends when a socket opens.
pub fn server_hello() -> String {
    serde_json::json!({
        "colibriClass": "ServerHello",
        "version": env!("CARGO_PKG_VERSION"),
    })
    .to_string()
}

/// The router (for in-process tests and [`ColibriWs::start`]). `directory` answers who may
/// connect, so only authenticated upgrades reach the media worker.
pub fn router(server_id: String, media: MediaHandle, directory: WsDirectory) -> Router {
    Router::new()
        .route(
            "/colibri-ws/{server_id}/{conference_id}/{endpoint_id}",
            get(upgrade),
        )
        .with_state(WsState {
            server_id,
            media,
            directory,
        })
}

fn refusal(r: WsRefusal, endpoint_id: &str) -> Response {
    match r {
        WsRefusal::NotFound => {
            (StatusCode::NOT_FOUND, "unknown conference or endpoint").into_response()
        }
        WsRefusal::BadPassword => {
            tracing::warn!(endpoint = endpoint_id, "colibri-ws: wrong password");
            (StatusCode::UNAUTHORIZED, "authentication failed").into_response()
        }
    }
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
    // Outside the media worker: a wrong password or unknown endpoint never becomes a command.
    if let Err(r) = state
        .directory
        .check(&conference_id, &endpoint_id, &password)
    {
        return refusal(r, &endpoint_id);
    }
    // The endpoint's media worker, for the attach and the socket's life.
    let media = state.media.for_ws(&conference_id, &endpoint_id);
    let (conn, socket_end) = ws_pair();
    let (reply, answer) = oneshot::channel();
    let asked = media
        .send(MediaCommand::WsAttach {
            conference_id,
            endpoint_id: endpoint_id.clone(),
            password,
            conn,
            reply,
        })
        .await;
    if !asked {
        return (StatusCode::SERVICE_UNAVAILABLE, "media plane not running").into_response();
    }
    match answer.await {
        Ok(Ok(key)) => {
            tracing::info!(endpoint = endpoint_id, "colibri-ws connected");
            ws.max_message_size(MAX_MESSAGE_SIZE)
                .max_frame_size(MAX_MESSAGE_SIZE)
                .on_upgrade(move |socket| run_socket(socket, key, socket_end, media))
        }
        Ok(Err(r)) => refusal(r, &endpoint_id),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "media plane not running").into_response(),
    }
}

/// Writes what the worker queues, forwards what the client sends; closes when the worker says so
/// (or drops its end: the endpoint expired), on idleness, or when the client goes.
async fn run_socket(socket: WebSocket, key: Key, mut worker: WsSocket, media: MediaHandle) {
    let conn_id = worker.id;
    let (mut tx, mut rx) = socket.split();
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.tick().await;
    let mut last_in = Instant::now();
    let mut close = None;
    if tx.send(Message::Text(server_hello().into())).await.is_err() {
        media.send(MediaCommand::WsClosed { key, conn_id }).await;
        return;
    }
    loop {
        tokio::select! {
            out = worker.rx.recv() => match out {
                Some(WsOut::Text(text)) => {
                    let len = text.len();
                    let r = tx.send(Message::Text(text.into())).await;
                    worker.written(len);
                    if r.is_err() {
                        break;
                    }
                }
                Some(WsOut::Close { code, reason }) => {
                    close = Some((code, reason));
                    break;
                }
                None => {
                    close = Some((CLOSE_EXPIRED, "endpoint expired"));
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
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        // Over MAX_MESSAGE_SIZE, or a protocol error.
                        tracing::info!(error = %e, "colibri-ws: closing on a bad frame");
                        close = Some((1009, "message too big or malformed"));
                        break;
                    }
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
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tx.send(Message::Close(Some(frame))).await;
    }
    let _ = tx.close().await;
    media.send(MediaCommand::WsClosed { key, conn_id }).await;
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
        directory: WsDirectory,
    ) -> anyhow::Result<ColibriWs> {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| anyhow::anyhow!("binding colibri-ws to {bind}: {e}"))?;
        let local_addr = listener.local_addr()?;
        let app = router(server_id.clone(), media, directory);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::{SinkExt, StreamExt};
    use signaling::colibri2::{ConferenceModified, ConferenceModify, Endpoint};
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    use super::*;
    use crate::colibri::tests::{new_endpoint, req};
    use crate::health::HealthRegistry;
    use crate::lifecycle::Admission;
    use crate::media::{MediaPlane, MediaSettings};
    use crate::sfu::SfuConfig;

    type Client = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    const BASE: &str = "ws://placeholder/colibri-ws/jvb1";

    async fn start() -> (MediaPlane, ColibriWs) {
        let settings = MediaSettings {
            colibri_ws_base: Some(BASE.into()),
            // Two, so that sockets reach conferences on either worker.
            ..MediaSettings::loopback(2)
        };
        let plane = MediaPlane::start(
            settings,
            SfuConfig::default(),
            Arc::new(HealthRegistry::new()),
        )
        .await
        .unwrap();
        let ws = ColibriWs::start(
            "127.0.0.1:0".parse().unwrap(),
            "jvb1".into(),
            plane.handle(),
            plane.ws_directory(),
        )
        .await
        .unwrap();
        (plane, ws)
    }

    async fn modify(plane: &MediaPlane, r: ConferenceModify) -> ConferenceModified {
        let answer = plane.handle().conference_modify(r, Admission::Accept).await;
        answer.await.unwrap()
    }

    /// The endpoint's colibri-ws URL, pointed at the test server.
    fn url(m: &ConferenceModified, id: &str, ws: &ColibriWs) -> String {
        let t = m.endpoint(id).unwrap().transport.as_ref().unwrap();
        let u = t.ice_udp.as_ref().unwrap().web_sockets[0].clone();
        u.replace("ws://placeholder", &format!("ws://{}", ws.local_addr))
    }

    /// The next frame that is not a ping/pong, within 5 s (a timeout fails the test).
    async fn next(c: &mut Client) -> Option<WsMessage> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), c.next())
                .await
                .expect("no frame within 5 s");
            match m {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(m)) => return Some(m),
                _ => return None,
            }
        }
    }

    async fn connect(u: &str) -> Client {
        let (mut c, _) = tokio_tungstenite::connect_async(u).await.unwrap();
        let hello = next(&mut c).await;
        assert!(
            matches!(&hello, Some(WsMessage::Text(t)) if t.contains("ServerHello")),
            "{hello:?}"
        );
        c
    }

    /// The code of the close frame the server sends next, skipping the bridge's text messages
    /// (None: the stream ended without a close frame).
    async fn close_code(c: &mut Client) -> Option<u16> {
        loop {
            match next(c).await? {
                WsMessage::Close(Some(f)) => return Some(f.code.into()),
                WsMessage::Close(None) => return None,
                _ => {}
            }
        }
    }

    /// One socket per endpoint: a second connection closes the first (1000); expiring the
    /// endpoint sends its socket a close frame (1001) — observed as a frame, not a timeout — and
    /// removes its credentials.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sockets_close_on_replacement_and_on_expiry() {
        let (plane, ws) = start().await;
        // m0 on worker 0, so m1 lives on worker 1: the sockets' commands must follow it there.
        modify(&plane, req("m0", true, vec![new_endpoint("z")])).await;
        let m = modify(&plane, req("m1", true, vec![new_endpoint("a")])).await;
        assert_eq!(plane.placement().get("m0"), Some(0));
        assert_eq!(plane.placement().get("m1"), Some(1));
        modify(&plane, req("m1", false, vec![new_endpoint("b")])).await;
        let u = url(&m, "a", &ws);
        assert_eq!(plane.ws_directory().len(), 3);
        let mut first = connect(&u).await;
        let mut second = connect(&u).await;
        assert_eq!(close_code(&mut first).await, Some(1000));
        let mut expire = Endpoint::new("a");
        expire.expire = true;
        modify(&plane, req("m1", false, vec![expire])).await;
        assert_eq!(close_code(&mut second).await, Some(1001));
        assert_eq!(plane.ws_directory().len(), 2);
        ws.stop();
        plane.stop().await;
    }

    /// A message over 64 KiB closes the socket (1009) and never reaches the worker as a message.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_messages_close_the_socket() {
        let (plane, ws) = start().await;
        let m = modify(&plane, req("m1", true, vec![new_endpoint("a")])).await;
        let mut c = connect(&url(&m, "a", &ws)).await;
        let big = format!(
            r#"{{"colibriClass":"EndpointMessage","to":"","msgPayload":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_SIZE)
        );
        c.send(WsMessage::Text(big.into())).await.unwrap();
        assert_eq!(close_code(&mut c).await, Some(1009));
        tokio::time::sleep(STATS_WAIT).await;
        assert_eq!(
            plane.stats().sample().colibri_web_socket_messages_received,
            0
        );
        // A normal-sized one on a new socket is taken.
        let mut c = connect(&url(&m, "a", &ws)).await;
        c.send(WsMessage::Text(
            r#"{"colibriClass":"EndpointStats"}"#.into(),
        ))
        .await
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while plane.stats().sample().colibri_web_socket_messages_received == 0 {
            assert!(Instant::now() < deadline, "message not counted");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ws.stop();
        plane.stop().await;
    }

    const STATS_WAIT: Duration = Duration::from_millis(1200);

    /// Wrong passwords and unknown endpoints are refused by the WebSocket server itself: nothing
    /// reaches the media worker's command channel; the right password does.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unauthenticated_upgrades_never_reach_the_worker() {
        let (tx, mut rx) = mpsc::channel(8);
        let media = MediaHandle::single(tx);
        let directory = WsDirectory::default();
        directory.insert("conf1", "ep1", "right-password", 0);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = router("jvb1".into(), media, directory);
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let base = format!("ws://{addr}/colibri-ws/jvb1");
        let status = |u: String| async move {
            match tokio_tungstenite::connect_async(u).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{e}"),
            }
        };
        for i in 0..50 {
            assert_eq!(status(format!("{base}/conf1/ep1?pwd=wrong{i}")).await, 401);
            assert_eq!(status(format!("{base}/conf1/ep{i}x?pwd=x")).await, 404);
        }
        assert!(
            rx.try_recv().is_err(),
            "a refused upgrade reached the worker"
        );
        let right = tokio::spawn(status(format!("{base}/conf1/ep1?pwd=right-password")));
        let cmd = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let MediaCommand::WsAttach { reply, .. } = cmd else {
            panic!("expected an attach");
        };
        let _ = reply.send(Err(WsRefusal::NotFound));
        assert_eq!(right.await.unwrap(), 404);
        server.abort();
    }
}
