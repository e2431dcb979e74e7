//! colibri-ws on the plane: a WebSocket connection attaches to an endpoint's bridge channel after
//! its password checks out, carries its messages, and detaches. The WebSocket server itself is
//! `crate::colibri_ws`; this is the part that runs in the media worker.

use std::time::Instant;

use crate::sfu::TransportEvent as SfuEvent;
use crate::transport::PortState;

use super::plane::{Key, Plane, WsSender};

/// Why a colibri-ws connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsRefusal {
    /// Unknown conference or endpoint (HTTP 404).
    NotFound,
    /// Wrong `pwd` (HTTP 401).
    BadPassword,
}

impl Plane {
    /// A colibri-ws connection asks to attach to `(conference ws id, endpoint id)` with `password`.
    pub(crate) fn ws_attach(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        conference_id: &str,
        endpoint_id: &str,
        password: &str,
        sender: WsSender,
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
        meta.ws = Some(sender);
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

    /// The client's colibri-ws connection `sender` went away: the bridge channel closes unless
    /// a newer connection replaced it or the SCTP data channel is open.
    pub(crate) fn ws_closed(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        key: Key,
        sender: &WsSender,
    ) {
        let Some(m) = self.endpoints.get_mut(&key) else {
            return;
        };
        if !m.ws.as_ref().is_some_and(|s| s.same_channel(sender)) {
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
