//! A media worker: one [`Plane`] (forwarding core + shell tables) driven by one port's task. The
//! port calls it synchronously for every transport event, every command and its timers, so a
//! packet goes from socket to sfu to the receivers' transmit queues without a channel hop or a
//! lock. Nothing here is global: N workers (issue 12) are N of these, each with its own port
//! state, sfu and tables.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use tokio::sync::oneshot;

use crate::lifecycle::Admission;
use crate::transport::{PortHandler, PortState, TransportEvent as NetEvent};

use super::plane::{Key, Plane, WsSender};
use super::publish::{self, MediaStats, STATS_EXPORT_INTERVAL};
use super::ws::WsRefusal;

/// Requests into a media worker.
pub enum MediaCommand {
    /// A COLIBRI2 `conference-modify`; `admission` is the lifecycle's answer for new conferences.
    Colibri {
        request: Box<ConferenceModify>,
        admission: Admission,
        reply: oneshot::Sender<Result<ConferenceModified, Colibri2ErrorResponse>>,
    },
    /// STUN found our public address.
    StunMapping(IpAddr),
    /// colibri-ws: a client connects.
    WsAttach {
        conference_id: String,
        endpoint_id: String,
        password: String,
        sender: WsSender,
        reply: oneshot::Sender<Result<Key, WsRefusal>>,
    },
    /// colibri-ws: a text message from the client.
    WsMessage {
        key: Key,
        text: String,
    },
    /// colibri-ws: the client went away.
    WsClosed {
        key: Key,
        sender: WsSender,
    },
    Stop,
}

/// The port handler of one media worker.
pub(crate) struct MediaWorker {
    pub plane: Plane,
    shared: Arc<MediaStats>,
    next_export: Instant,
}

impl MediaWorker {
    pub fn new(plane: Plane, shared: Arc<MediaStats>, now: Instant) -> MediaWorker {
        MediaWorker {
            plane,
            shared,
            next_export: now,
        }
    }

    fn export(&mut self, now: Instant) {
        self.shared.publish(publish::export(&self.plane, now));
        self.next_export = now + STATS_EXPORT_INTERVAL;
    }
}

impl PortHandler<Key> for MediaWorker {
    type Command = MediaCommand;

    fn on_event(&mut self, now: Instant, key: &Key, event: NetEvent, port: &mut PortState<Key>) {
        self.plane.on_transport_event(now, *key, event, port);
    }

    fn on_command(&mut self, now: Instant, cmd: MediaCommand, port: &mut PortState<Key>) -> bool {
        match cmd {
            MediaCommand::Colibri {
                request,
                admission,
                reply,
            } => {
                let r = crate::colibri::conference_modify(
                    &mut self.plane,
                    port,
                    now,
                    &request,
                    admission,
                );
                if let Err(e) = &r {
                    tracing::info!(meeting_id = request.meeting_id, condition = %e.condition,
                        reason = ?e.reason, text = ?e.text, "conference-modify refused");
                }
                let _ = reply.send(r);
                // Stats (endpoint count) change with COLIBRI2: publish at once.
                self.export(now);
            }
            MediaCommand::StunMapping(ip) => self.plane.env.add_stun_mapping(ip),
            MediaCommand::WsAttach {
                conference_id,
                endpoint_id,
                password,
                sender,
                reply,
            } => {
                let r = self.plane.ws_attach(
                    now,
                    port,
                    &conference_id,
                    &endpoint_id,
                    &password,
                    sender,
                );
                let _ = reply.send(r);
            }
            MediaCommand::WsMessage { key, text } => {
                self.plane.ws_message(now, port, key, &text);
            }
            MediaCommand::WsClosed { key, sender } => {
                self.plane.ws_closed(now, port, key, &sender);
            }
            MediaCommand::Stop => return false,
        }
        true
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.plane.sfu.poll_timeout() {
            Some(t) => t.min(self.next_export),
            None => self.next_export,
        })
    }

    fn on_timeout(&mut self, now: Instant, port: &mut PortState<Key>) {
        if self.plane.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.plane
                .with_sfu(now, port, |sfu, out| sfu.handle_timeout(now, out));
        }
        if now >= self.next_export {
            self.export(now);
        }
    }
}
