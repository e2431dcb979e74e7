//! colibri-ws on the plane: a WebSocket connection attaches to an endpoint's bridge channel after
//! its password checks out, carries its messages, and detaches. The WebSocket server itself is
//! `crate::colibri_ws`; this is the part that runs in (or is written by) the media worker.
//!
//! The connection types live in `ws_link.rs`:
//! - `WsDirectory`: who may connect (conference ws id, endpoint id → password), written by the
//!   worker as endpoints come and go and read by the WebSocket server, so an upgrade with a wrong
//!   password or for an unknown endpoint is refused before it becomes a worker command.
//! - `WsConn` / `WsSocket`: the two ends of one connection. The worker holds the only
//!   `WsConn` (in its endpoint's `ShellEndpoint`): when the endpoint expires, or a newer
//!   connection for the same endpoint replaces it, the socket is told to close (1001 / 1000).
//!   Output waiting for the socket is bounded by bytes (`MAX_CHANNEL_BACKLOG`): past it, a
//!   message is dropped and counted, as on the SCTP channel.

use std::time::Instant;

use crate::sfu::TransportEvent as SfuEvent;
use crate::transport::PortState;

use super::plane::{Key, Plane};
use super::ws_link::{CLOSE_REPLACED, WsConn, WsRefusal, constant_time_eq};

impl Plane {
    /// A colibri-ws connection asks to attach to `(conference ws id, endpoint id)` with `password`
    /// (already checked against the `WsDirectory`; checked again here, where the truth is). A
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
