//! A media worker: one [`Plane`] (forwarding core + shell tables) driven by one port's task. The
//! port calls it synchronously for every transport event, every command and its timers, so a
//! packet goes from socket to sfu to the receivers' transmit queues without a channel hop or a
//! lock. Nothing here is global: the N workers of the bridge are N of these, each with its own
//! port state, sfu and tables, on its own thread (`service.rs`).

use std::any::Any;
use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use tokio::sync::oneshot;

use crate::lifecycle::Admission;
use crate::sfu::ConferenceHandle;
use crate::transport::{PortHandler, PortState, TransportEvent as NetEvent};

use super::placement::Placement;
use super::plane::{Key, Plane};
use super::publish::{self, MediaStats, STATS_EXPORT_INTERVAL};
use super::ws_link::{WsConn, WsRefusal};

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
        conn: WsConn,
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
        conn_id: u64,
    },
    Stop,
}

/// The port handler of one media worker.
pub(crate) struct MediaWorker {
    pub plane: Plane,
    shared: Arc<MediaStats>,
    /// Where conferences live (this worker removes its own when they go).
    placement: Arc<Placement>,
    next_export: Instant,
    /// Packets in + out at the last rate measurement, and when; the rate (for placement).
    last_packets: (u64, Instant),
    packet_rate: u64,
}

impl MediaWorker {
    /// The worker `plane.worker` of the port, publishing into `shared`.
    pub fn new(
        plane: Plane,
        shared: Arc<MediaStats>,
        placement: Arc<Placement>,
        now: Instant,
    ) -> MediaWorker {
        MediaWorker {
            plane,
            shared,
            placement,
            next_export: now,
            last_packets: (0, now),
            packet_rate: 0,
        }
    }

    fn export(&mut self, now: Instant) {
        for meeting_id in std::mem::take(&mut self.plane.expired_meetings) {
            self.placement.forget(&meeting_id, self.plane.worker);
        }
        let sample = publish::export(&self.plane, now);
        let packets = sample.packets_received + sample.packets_sent;
        let (before, then) = self.last_packets;
        let secs = now.saturating_duration_since(then).as_secs_f64();
        // Exports right after a COLIBRI2 request keep the last interval's rate.
        if secs >= 0.25 {
            self.last_packets = (packets, now);
            self.packet_rate = (packets.saturating_sub(before) as f64 / secs) as u64;
        }
        self.shared
            .publish(self.plane.worker, sample, self.packet_rate);
        self.next_export = now + STATS_EXPORT_INTERVAL;
    }

    /// Handling `what` panicked: count and log it, and remove conference `conf` (its state may be
    /// half-updated) so its endpoints' transports go and the other conferences carry on.
    fn isolate(
        &mut self,
        now: Instant,
        port: &mut PortState<Key>,
        conf: Option<ConferenceHandle>,
        what: &str,
        panic: &(dyn Any + Send),
    ) {
        self.plane.traffic.handler_panics += 1;
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let meeting_id = conf
            .and_then(|c| self.plane.sfu.meeting_id(c))
            .unwrap_or("")
            .to_owned();
        tracing::error!(
            what,
            meeting_id,
            panic = message,
            "media worker: handling an input panicked; removing its conference"
        );
        let Some(conf) = conf else { return };
        let plane = &mut self.plane;
        let removed = catch_unwind(AssertUnwindSafe(|| {
            plane.with_sfu(now, port, |sfu, out| {
                sfu.remove_faulted_conference(conf, out)
            })
        }));
        if removed.is_err() {
            tracing::error!(
                meeting_id,
                "media worker: removing the faulted conference panicked too"
            );
        }
    }

    fn command(&mut self, now: Instant, cmd: MediaCommand, port: &mut PortState<Key>) -> bool {
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
                if self
                    .plane
                    .sfu
                    .find_conference(&request.meeting_id)
                    .is_none()
                {
                    // Not created (refused) or expired by this request: not placed here.
                    self.placement
                        .forget(&request.meeting_id, self.plane.worker);
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
                conn,
                reply,
            } => {
                let r =
                    self.plane
                        .ws_attach(now, port, &conference_id, &endpoint_id, &password, conn);
                let _ = reply.send(r);
            }
            MediaCommand::WsMessage { key, text } => {
                self.plane.ws_message(now, port, key, &text);
            }
            MediaCommand::WsClosed { key, conn_id } => {
                self.plane.ws_closed(now, port, key, conn_id);
            }
            MediaCommand::Stop => return false,
        }
        true
    }
}

/// The conference a command concerns, to isolate it if handling the command panics.
fn command_conference(plane: &Plane, cmd: &MediaCommand) -> Option<ConferenceHandle> {
    match cmd {
        MediaCommand::Colibri { request, .. } => plane.sfu.find_conference(&request.meeting_id),
        MediaCommand::WsMessage { key, .. } | MediaCommand::WsClosed { key, .. } => {
            Some(key.conference())
        }
        _ => None,
    }
}

impl PortHandler<Key> for MediaWorker {
    type Command = MediaCommand;

    fn on_event(&mut self, now: Instant, key: &Key, event: NetEvent, port: &mut PortState<Key>) {
        let plane = &mut self.plane;
        // No cost on the packet path unless it unwinds.
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| {
            plane.on_transport_event(now, *key, event, port)
        })) {
            self.isolate(now, port, Some(key.conference()), "transport event", &*p);
        }
    }

    fn on_command(&mut self, now: Instant, cmd: MediaCommand, port: &mut PortState<Key>) -> bool {
        // A COLIBRI2 request that panics gets no answer (its oneshot is dropped: the XMPP side
        // replies with an error); its conference, if it was found before, is removed.
        let conf = command_conference(&self.plane, &cmd);
        let meeting_id = match &cmd {
            MediaCommand::Colibri { request, .. } => Some(request.meeting_id.clone()),
            _ => None,
        };
        match catch_unwind(AssertUnwindSafe(|| self.command(now, cmd, port))) {
            Ok(go_on) => go_on,
            Err(p) => {
                // A conference the request created before panicking is removed too.
                let conf =
                    conf.or_else(|| meeting_id.and_then(|m| self.plane.sfu.find_conference(&m)));
                self.isolate(now, port, conf, "command", &*p);
                true
            }
        }
    }

    fn on_fault(&mut self, now: Instant, key: &Key, port: &mut PortState<Key>) {
        self.isolate(
            now,
            port,
            Some(key.conference()),
            "endpoint transport",
            &"transport panicked",
        );
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.plane.sfu.poll_timeout() {
            Some(t) => t.min(self.next_export),
            None => self.next_export,
        })
    }

    fn on_timeout(&mut self, now: Instant, port: &mut PortState<Key>) {
        // The sfu isolates a panicking conference job itself (`Sfu::handle_timeout`).
        if self.plane.sfu.poll_timeout().is_some_and(|t| t <= now) {
            self.plane
                .with_sfu(now, port, |sfu, out| sfu.handle_timeout(now, out));
        }
        if now >= self.next_export {
            self.export(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use signaling::colibri2::ConferenceModify;

    use super::*;
    use crate::colibri::tests::{new_endpoint, req, setup};
    use crate::media::plane::TEST_PANIC;
    use crate::sfu::Stat;

    fn worker() -> (MediaWorker, PortState<Key>) {
        let (plane, port) = setup();
        let stats = Arc::new(MediaStats::new(vec![(
            Arc::clone(&plane.env.counters),
            Arc::default(),
        )]));
        let placement = Arc::default();
        (
            MediaWorker::new(plane, stats, placement, Instant::now()),
            port,
        )
    }

    fn colibri(w: &mut MediaWorker, port: &mut PortState<Key>, r: ConferenceModify) {
        let (reply, mut rx) = oneshot::channel();
        let cmd = MediaCommand::Colibri {
            request: Box::new(r),
            admission: Admission::Accept,
            reply,
        };
        assert!(w.on_command(Instant::now(), cmd, port));
        assert!(matches!(rx.try_recv(), Ok(Ok(_))));
    }

    /// A panic while handling one endpoint's input removes that endpoint's conference (counted,
    /// its transports gone) and nothing else: the worker keeps running and another conference
    /// keeps working. Without the isolation the panic unwinds out of the worker (this test fails
    /// by panicking).
    #[test]
    fn a_panic_in_one_conference_leaves_the_others_running() {
        let (mut w, mut port) = worker();
        let now = Instant::now();
        colibri(&mut w, &mut port, req("m1", true, vec![new_endpoint("a")]));
        colibri(&mut w, &mut port, req("m2", true, vec![new_endpoint("b")]));
        let sfu = &w.plane.sfu;
        let m1 = sfu.find_conference("m1").unwrap();
        let m2 = sfu.find_conference("m2").unwrap();
        let a = sfu.find_endpoint(m1, "a").unwrap();
        let b = sfu.find_endpoint(m2, "b").unwrap();

        w.on_event(
            now,
            &a,
            NetEvent::DataChannelMessage(TEST_PANIC.into()),
            &mut port,
        );

        assert_eq!(w.plane.traffic.handler_panics, 1);
        assert!(w.plane.sfu.find_conference("m1").is_none());
        assert!(
            port.endpoint(&a).is_none(),
            "the faulted endpoint's transport is gone"
        );
        assert!(!w.plane.endpoints.contains_key(&a));
        assert_eq!(w.plane.sfu.counters().get(Stat::ConferencesFaulted), 1);
        // The other conference is intact and still handles input.
        assert_eq!(w.plane.sfu.find_conference("m2"), Some(m2));
        assert!(port.endpoint(&b).is_some());
        let before = w.plane.sfu.counters().get(Stat::ChannelMessagesReceived);
        let msg = r#"{"colibriClass":"EndpointStats"}"#;
        w.on_event(now, &b, NetEvent::DataChannelMessage(msg.into()), &mut port);
        assert_eq!(
            w.plane.sfu.counters().get(Stat::ChannelMessagesReceived),
            before + 1
        );
        // COLIBRI2 keeps working, also for the faulted meeting id.
        colibri(&mut w, &mut port, req("m1", true, vec![new_endpoint("a")]));
        let sample = publish::export(&w.plane, Instant::now());
        assert_eq!(sample.dropped_packets.get("handler_panic"), Some(&1));
    }

    /// A COLIBRI2 request that panics (after creating its conference) gets no answer (the XMPP
    /// side replies with an error), its conference is removed, and the worker keeps serving.
    #[test]
    fn a_panicking_colibri2_request_is_isolated() {
        use crate::colibri::TEST_PANIC_MEETING;
        let (mut w, mut port) = worker();
        colibri(&mut w, &mut port, req("m2", true, vec![new_endpoint("b")]));
        let (reply, mut rx) = oneshot::channel();
        let cmd = MediaCommand::Colibri {
            request: Box::new(req(TEST_PANIC_MEETING, true, vec![new_endpoint("a")])),
            admission: Admission::Accept,
            reply,
        };
        assert!(
            w.on_command(Instant::now(), cmd, &mut port),
            "the worker goes on"
        );
        assert!(rx.try_recv().is_err(), "no answer");
        assert!(w.plane.sfu.find_conference(TEST_PANIC_MEETING).is_none());
        assert!(w.plane.sfu.find_conference("m2").is_some());
        assert_eq!(w.plane.traffic.handler_panics, 1);
        colibri(&mut w, &mut port, req("m3", true, vec![new_endpoint("c")]));
    }

    /// A colibri-ws receiver whose socket never writes anything out: the bridge queues at most
    /// 1 MiB for it and drops (and counts) the rest of what a sender relays to it.
    #[test]
    fn a_colibri_ws_receiver_that_never_reads_is_bounded() {
        use crate::media::ws_link::{MAX_CHANNEL_BACKLOG, WsOut, ws_pair};
        use std::time::Duration;
        let (mut w, mut port) = worker();
        for (id, create) in [("r", true), ("s", false)] {
            colibri(&mut w, &mut port, req("m1", create, vec![new_endpoint(id)]));
        }
        let t0 = Instant::now();
        let conf = w.plane.sfu.find_conference("m1").unwrap();
        let r = w.plane.sfu.find_endpoint(conf, "r").unwrap();
        let s = w.plane.sfu.find_endpoint(conf, "s").unwrap();
        let ws_id = w.plane.conferences[&conf].ws_id.clone();
        let pwd = w.plane.endpoints[&r].ws_password.clone();
        let (conn, mut socket) = ws_pair();
        w.plane
            .ws_attach(t0, &mut port, &ws_id, "r", &pwd, conn)
            .unwrap();
        let msg = serde_json::json!({
            "colibriClass": "EndpointMessage", "to": "r", "msgPayload": "x".repeat(16 * 1024)
        })
        .to_string();
        // Within the sender's relay budget (5 a second): only the backlog limits.
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(200 * u64::from(i));
            w.on_event(
                now,
                &s,
                NetEvent::DataChannelMessage(msg.clone()),
                &mut port,
            );
        }
        let mut queued = 0;
        while let Ok(out) = socket.rx.try_recv() {
            if let WsOut::Text(t) = out {
                queued += t.len();
            }
        }
        assert!(queued <= MAX_CHANNEL_BACKLOG, "{queued} bytes queued");
        assert!(
            queued >= MAX_CHANNEL_BACKLOG - 2 * msg.len(),
            "{queued} bytes queued"
        );
        let t = &w.plane.traffic;
        assert!(t.channel_backlog_drops >= 200 - 64, "{t:?}");
        assert_eq!(
            publish::export(&w.plane, Instant::now())
                .dropped_packets
                .get("channel_backlog_full"),
            Some(&t.channel_backlog_drops)
        );
    }
}
