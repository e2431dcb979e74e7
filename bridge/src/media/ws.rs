//! colibri-ws on the plane: a WebSocket connection attaches to an endpoint's bridge channel after
//! its password checks out, carries its messages, and detaches. The WebSocket server itself is
//! `crate::colibri_ws`; this is the part that runs in (or is written by) the media worker.
//!
//! - [`WsDirectory`]: who may connect (conference ws id, endpoint id → password), written by the
//!   worker as endpoints come and go and read by the WebSocket server, so an upgrade with a wrong
//!   password or for an unknown endpoint is refused before it becomes a worker command.
//! - [`WsConn`] / [`WsSocket`]: the two ends of one connection. The worker holds the only
//!   [`WsConn`] (in its endpoint's `ShellEndpoint`): when the endpoint expires, or a newer
//!   connection for the same endpoint replaces it, the socket is told to close (1001 / 1000).
//!   Output waiting for the socket is bounded by bytes ([`MAX_CHANNEL_BACKLOG`]): past it, a
//!   message is dropped and counted, as on the SCTP channel.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc;

use crate::sfu::TransportEvent as SfuEvent;
use crate::transport::PortState;
pub use crate::transport::endpoint::MAX_CHANNEL_BACKLOG;

use super::plane::{Key, Plane};

/// Why a colibri-ws connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRefusal {
    /// Unknown conference or endpoint (HTTP 404).
    NotFound,
    /// Wrong `pwd` (HTTP 401).
    BadPassword,
}

/// Who may open colibri-ws: `(conference ws id, endpoint id)` → the endpoint's password. A lock
/// on the control path only (endpoint create/expire, WebSocket upgrades), never per packet.
#[derive(Debug, Clone, Default)]
pub struct WsDirectory(Arc<Mutex<HashMap<(String, String), String>>>);

impl WsDirectory {
    /// Checks an upgrade's credentials (constant-time password comparison).
    pub fn check(
        &self,
        conference_id: &str,
        endpoint_id: &str,
        password: &str,
    ) -> Result<(), WsRefusal> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (conference_id.to_owned(), endpoint_id.to_owned());
        let expected = map.get(&key).ok_or(WsRefusal::NotFound)?;
        if constant_time_eq(expected.as_bytes(), password.as_bytes()) {
            Ok(())
        } else {
            Err(WsRefusal::BadPassword)
        }
    }

    pub(crate) fn insert(&self, conference_id: &str, endpoint_id: &str, password: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (conference_id.to_owned(), endpoint_id.to_owned()),
                password.to_owned(),
            );
    }

    pub(crate) fn remove(&self, conference_id: &str, endpoint_id: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(conference_id.to_owned(), endpoint_id.to_owned()));
    }

    /// Endpoints that may connect (tests, leak checks).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the worker tells a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOut {
    Text(String),
    /// Send a close frame with this code and reason, then stop.
    Close {
        code: u16,
        reason: &'static str,
    },
}

/// Close code when the endpoint expired (and when the worker drops the connection).
pub const CLOSE_EXPIRED: u16 = 1001;
/// Close code when a newer connection for the same endpoint replaced this one.
pub const CLOSE_REPLACED: u16 = 1000;

/// A message refused because the socket's backlog is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsBacklogFull;

/// The worker's end of one colibri-ws connection. Dropping it closes the socket (1001).
#[derive(Debug)]
pub struct WsConn {
    id: u64,
    tx: mpsc::UnboundedSender<WsOut>,
    queued: Arc<AtomicUsize>,
}

/// The socket task's end of one colibri-ws connection.
#[derive(Debug)]
pub struct WsSocket {
    pub id: u64,
    pub rx: mpsc::UnboundedReceiver<WsOut>,
    queued: Arc<AtomicUsize>,
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A new connection's two ends.
pub fn ws_pair() -> (WsConn, WsSocket) {
    let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        WsConn {
            id,
            tx,
            queued: Arc::clone(&queued),
        },
        WsSocket { id, rx, queued },
    )
}

impl WsConn {
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues `text` for the socket unless [`MAX_CHANNEL_BACKLOG`] bytes already wait.
    pub fn send_text(&self, text: &str) -> Result<(), WsBacklogFull> {
        let len = text.len();
        if self.queued.load(Ordering::Relaxed) + len > MAX_CHANNEL_BACKLOG {
            return Err(WsBacklogFull);
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        // A socket that is gone drops it; its close reaches the worker as `WsClosed`.
        let _ = self.tx.send(WsOut::Text(text.to_owned()));
        Ok(())
    }

    /// Tells the socket to close with `code`.
    pub fn close(&self, code: u16, reason: &'static str) {
        let _ = self.tx.send(WsOut::Close { code, reason });
    }
}

impl WsSocket {
    /// The socket wrote (or gave up on) a text message of `len` bytes.
    pub fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::Relaxed);
    }
}

impl Plane {
    /// A colibri-ws connection asks to attach to `(conference ws id, endpoint id)` with `password`
    /// (already checked against the [`WsDirectory`]; checked again here, where the truth is). A
    /// previous connection of the endpoint is closed.
    pub(crate) fn ws_attach(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        conference_id: &str,
        endpoint_id: &str,
        password: &str,
        conn: WsConn,
    ) -> Result<Key, WsRefusal> {
        let conf = self
            .conferences
            .iter()
            .find(|(_, c)| c.ws_id == conference_id)
            .map(|(h, _)| *h)
            .ok_or(WsRefusal::NotFound)?;
        let key = self
            .sfu
            .find_endpoint(conf, endpoint_id)
            .ok_or(WsRefusal::NotFound)?;
        let meta = self.endpoints.get_mut(&key).ok_or(WsRefusal::NotFound)?;
        if !constant_time_eq(meta.ws_password.as_bytes(), password.as_bytes()) {
            return Err(WsRefusal::BadPassword);
        }
        if let Some(old) = meta.ws.replace(conn) {
            old.close(CLOSE_REPLACED, "replaced by a new connection");
        }
        self.sfu_event(now, key, SfuEvent::DataChannelOpen, port);
        Ok(key)
    }

    /// A text message from the client's colibri-ws connection.
    pub(crate) fn ws_message(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        key: Key,
        text: &str,
    ) {
        if self.endpoints.contains_key(&key) {
            self.traffic.ws_messages_in += 1;
            self.with_sfu(now, port, |sfu, out| {
                sfu.handle_channel_message(now, key, text, out)
            });
        }
    }

    /// The client's colibri-ws connection `conn_id` went away: the bridge channel closes unless
    /// a newer connection replaced it or the SCTP data channel is open.
    pub(crate) fn ws_closed(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        key: Key,
        conn_id: u64,
    ) {
        let Some(m) = self.endpoints.get_mut(&key) else {
            return;
        };
        if m.ws.as_ref().is_none_or(|c| c.id() != conn_id) {
            return;
        }
        m.ws = None;
        if !port.endpoint(&key).is_some_and(|e| e.has_data_channel()) {
            self.sfu_event(now, key, SfuEvent::DataChannelClosed, port);
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backlog_is_bounded_by_bytes() {
        let (conn, mut sock) = ws_pair();
        let chunk = "x".repeat(64 * 1024);
        let fits = MAX_CHANNEL_BACKLOG / chunk.len();
        for _ in 0..fits {
            assert_eq!(conn.send_text(&chunk), Ok(()));
        }
        assert_eq!(conn.send_text(&chunk), Err(WsBacklogFull));
        // The socket writes one: room for one more.
        let Ok(WsOut::Text(t)) = sock.rx.try_recv() else {
            panic!("queued text")
        };
        sock.written(t.len());
        assert_eq!(conn.send_text(&chunk), Ok(()));
        assert_eq!(conn.send_text(&chunk), Err(WsBacklogFull));
    }

    #[test]
    fn the_directory_checks_credentials() {
        let d = WsDirectory::default();
        d.insert("c1", "ep1", "secret");
        assert_eq!(d.check("c1", "ep1", "secret"), Ok(()));
        assert_eq!(d.check("c1", "ep1", "secreT"), Err(WsRefusal::BadPassword));
        assert_eq!(d.check("c1", "ep2", "secret"), Err(WsRefusal::NotFound));
        d.remove("c1", "ep1");
        assert_eq!(d.check("c1", "ep1", "secret"), Err(WsRefusal::NotFound));
        assert!(d.is_empty());
    }
}
