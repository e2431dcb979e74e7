//! The types of a colibri-ws connection shared by the media worker (`plane.rs`, `ws.rs`) and the
//! WebSocket server (`crate::colibri_ws`): who may connect, and the two ends of a connection with
//! its byte-bounded output queue. See `ws.rs` for how the worker uses them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

pub use crate::transport::endpoint::MAX_CHANNEL_BACKLOG;

/// Why a colibri-ws connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRefusal {
    /// Unknown conference or endpoint (HTTP 404).
    NotFound,
    /// Wrong `pwd` (HTTP 401).
    BadPassword,
}

/// Who may open colibri-ws: `(conference ws id, endpoint id)` → the endpoint's password and its
/// media worker. One for all workers; a lock on the control path only (endpoint create/expire,
/// WebSocket upgrades), never per packet.
#[derive(Debug, Clone, Default)]
pub struct WsDirectory(Arc<Mutex<HashMap<WsKey, (String, usize)>>>);

/// `(conference ws id, endpoint id)`.
type WsKey = (String, String);

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
        let (expected, _) = map.get(&key).ok_or(WsRefusal::NotFound)?;
        if constant_time_eq(expected.as_bytes(), password.as_bytes()) {
            Ok(())
        } else {
            Err(WsRefusal::BadPassword)
        }
    }

    pub(crate) fn insert(
        &self,
        conference_id: &str,
        endpoint_id: &str,
        password: &str,
        worker: usize,
    ) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                (conference_id.to_owned(), endpoint_id.to_owned()),
                (password.to_owned(), worker),
            );
    }

    /// The media worker of an endpoint that may connect.
    pub fn worker_of(&self, conference_id: &str, endpoint_id: &str) -> Option<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(conference_id.to_owned(), endpoint_id.to_owned()))
            .map(|(_, w)| *w)
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

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
        d.insert("c1", "ep1", "secret", 0);
        assert_eq!(d.check("c1", "ep1", "secret"), Ok(()));
        assert_eq!(d.check("c1", "ep1", "secreT"), Err(WsRefusal::BadPassword));
        assert_eq!(d.check("c1", "ep2", "secret"), Err(WsRefusal::NotFound));
        d.remove("c1", "ep1");
        assert_eq!(d.check("c1", "ep1", "secret"), Err(WsRefusal::NotFound));
        assert!(d.is_empty());
    }
}
