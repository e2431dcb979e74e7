//! The session task (owns the stream, reconnects it, keeps IQ and MUC bookkeeping) and the handle and
//! event receiver its owner uses.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{SinkExt, Stream, StreamExt};
use minidom::Element;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_xmpp::xmlstream::ReadError;
use tracing::{debug, info, trace, warn};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::Message;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType};

use super::backoff::{Backoff, random_unit};
use super::config::{ClientConfig, ComponentConfig};
use super::connect::{self, ConnectError, Connected, ElementStream, describe_stream_error};
use super::iq::{
    IdGen, IncomingIq, IqError, IqKind, IqResult, PendingIqs, Responder, decode_error_reply,
    error_stanza, request_stanza, result_stanza,
};
use super::muc::{
    JOIN_TIMEOUT, MucError, MucJoin, MucJoined, MucOutcome, Rooms, owner_form_request,
    owner_form_submit,
};
use super::stanza::{NS_CLIENT, NS_COMPONENT, NS_PING, NS_STREAMS, translate_ns};
use crate::ns;

/// Connection state, as last reported by the session task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// A connection attempt is under way (`attempt` failures since the last success).
    Connecting { attempt: u32 },
    /// Authenticated and bound: stanzas flow.
    Online { jid: Jid },
    /// Waiting before the next attempt.
    Waiting { attempt: u32, delay: Duration },
    /// Closed by the owner; the session task has ended.
    Closed,
}

/// What the session reports to its owner, in arrival order.
#[derive(Debug)]
pub enum Event {
    /// Connected. `reconnected` is false only the first time. MUC re-joins follow as
    /// [`Event::MucRejoined`] / [`Event::MucRejoinFailed`].
    Online {
        jid: Jid,
        reconnected: bool,
    },
    /// An established connection was lost; pending IQs failed with [`IqError::Disconnected`].
    Disconnected {
        reason: String,
    },
    /// The next connection attempt starts after `delay`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        last_error: Option<String>,
    },
    /// An IQ get/set for us: answer it.
    IqRequest(IncomingIq),
    Presence(Presence),
    Message(Message),
    /// A room was re-joined automatically after a reconnect.
    MucRejoined {
        room: BareJid,
        joined: MucJoined,
    },
    /// An automatic re-join failed; the room is forgotten (join it again to retry).
    MucRejoinFailed {
        room: BareJid,
        error: MucError,
    },
    /// The room removed us (kick, destruction, …); it is forgotten.
    MucRemoved {
        room: BareJid,
    },
    /// The session ended (closed by the owner, or every handle dropped).
    Closed,
}

/// Why a stanza was not sent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SendError {
    #[error("XMPP session not connected")]
    NotConnected,
    #[error("XMPP session closed")]
    Closed,
    #[error("not a stanza: {0}")]
    Invalid(String),
}

type JoinWaiter = oneshot::Sender<Result<MucJoined, MucError>>;

enum IqWaiter {
    User(oneshot::Sender<Result<IqResult, IqError>>),
    Keepalive,
}

pub(crate) enum Command {
    Send {
        stanza: Element,
        done: Option<oneshot::Sender<Result<(), SendError>>>,
    },
    Iq {
        kind: IqKind,
        to: Option<Jid>,
        payload: Element,
        timeout: Duration,
        reply: oneshot::Sender<Result<IqResult, IqError>>,
    },
    Join {
        join: MucJoin,
        done: JoinWaiter,
    },
    SetPresence {
        room: BareJid,
        extra: Vec<Element>,
        done: oneshot::Sender<Result<(), MucError>>,
    },
    Leave {
        room: BareJid,
        done: oneshot::Sender<Result<(), MucError>>,
    },
    Close,
}

/// Cloneable handle on a session, usable from any task.
#[derive(Debug, Clone)]
pub struct XmppHandle {
    tx: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnState>,
    component: bool,
}

/// The owner's receiver of [`Event`]s (also a `Stream`). Unbounded: the session never blocks on a slow
/// owner, so an owner awaiting an IQ reply inside its event loop cannot deadlock the session.
#[derive(Debug)]
pub struct XmppEvents {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl XmppEvents {
    /// The next event; `None` after [`Event::Closed`].
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Stream for XmppEvents {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

/// Starts a client session (must be called inside a tokio runtime). It connects in the background;
/// watch for [`Event::Online`] or use [`XmppHandle::wait_online`].
pub fn connect_client(config: ClientConfig) -> (XmppHandle, XmppEvents) {
    start(Kind::Client(Box::new(config)))
}

/// Starts an XEP-0114 component session (must be called inside a tokio runtime).
pub fn connect_component(config: ComponentConfig) -> (XmppHandle, XmppEvents) {
    start(Kind::Component(Box::new(config)))
}

fn start(kind: Kind) -> (XmppHandle, XmppEvents) {
    let (tx, cmd_rx) = mpsc::unbounded_channel();
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let (state_tx, state_rx) = watch::channel(ConnState::Connecting { attempt: 0 });
    let component = matches!(kind, Kind::Component(_));
    let session = Session {
        weak_tx: tx.downgrade(),
        kind,
        cmd_rx,
        events: events_tx,
        state: state_tx,
        ids: IdGen::random(),
        pending: PendingIqs::default(),
        rooms: Rooms::default(),
        own: None,
        closing: false,
    };
    tokio::spawn(session.run());
    (
        XmppHandle {
            tx,
            state: state_rx,
            component,
        },
        XmppEvents { rx: events_rx },
    )
}

impl XmppHandle {
    pub fn is_component(&self) -> bool {
        self.component
    }

    pub fn state(&self) -> ConnState {
        self.state.borrow().clone()
    }

    /// Our bound JID (client) or domain (component) while online.
    pub fn jid(&self) -> Option<Jid> {
        match &*self.state.borrow() {
            ConnState::Online { jid } => Some(jid.clone()),
            _ => None,
        }
    }

    /// Waits until the session is online; `None` on timeout or when the session is closed.
    pub async fn wait_online(&self, timeout: Duration) -> Option<Jid> {
        let mut state = self.state.clone();
        let wait = async {
            loop {
                if let ConnState::Online { jid } = &*state.borrow_and_update() {
                    return Some(jid.clone());
                }
                if state.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// Sends a stanza; fails at once when offline. A component's stanzas without `from` are sent from
    /// the component's domain.
    pub async fn send(&self, stanza: impl Into<Stanza>) -> Result<(), SendError> {
        self.send_element(Element::from(stanza.into())).await
    }

    /// Sends a `jabber:client` `<iq>`, `<message>` or `<presence>` element.
    pub async fn send_element(&self, stanza: Element) -> Result<(), SendError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Send {
                stanza,
                done: Some(done),
            })
            .map_err(|_| SendError::Closed)?;
        rx.await.unwrap_or(Err(SendError::Closed))
    }

    /// Sends an IQ get/set and waits for its reply (the `id` is assigned here; `from` is ignored).
    pub async fn iq_request(&self, iq: Iq, timeout: Duration) -> Result<IqResult, IqError> {
        match iq {
            Iq::Get { to, payload, .. } => self.request(IqKind::Get, to, payload, timeout).await,
            Iq::Set { to, payload, .. } => self.request(IqKind::Set, to, payload, timeout).await,
            Iq::Result { .. } | Iq::Error { .. } => {
                Err(IqError::Invalid("only get and set IQs are requests".into()))
            }
        }
    }

    pub async fn iq_get(
        &self,
        to: Jid,
        payload: Element,
        timeout: Duration,
    ) -> Result<IqResult, IqError> {
        self.request(IqKind::Get, Some(to), payload, timeout).await
    }

    pub async fn iq_set(
        &self,
        to: Jid,
        payload: Element,
        timeout: Duration,
    ) -> Result<IqResult, IqError> {
        self.request(IqKind::Set, Some(to), payload, timeout).await
    }

    /// Sends `<iq type=kind to=to>payload</iq>` and waits up to `timeout` for the reply.
    pub async fn request(
        &self,
        kind: IqKind,
        to: Option<Jid>,
        payload: Element,
        timeout: Duration,
    ) -> Result<IqResult, IqError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Iq {
                kind,
                to,
                payload,
                timeout,
                reply,
            })
            .map_err(|_| IqError::Closed)?;
        rx.await.unwrap_or(Err(IqError::Closed))
    }

    /// Joins a room and waits for the room's answer (our own presence, or an error). The room is
    /// re-joined automatically after every reconnect until [`leave_muc`](Self::leave_muc).
    pub async fn join_muc(&self, join: MucJoin) -> Result<MucJoined, MucError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Join { join, done })
            .map_err(|_| MucError::Closed)?;
        rx.await.unwrap_or(Err(MucError::Closed))
    }

    /// Replaces the extra children of our presence in `room` and sends the updated presence. When
    /// offline the payload is kept for the re-join and [`MucError::Disconnected`] is returned.
    pub async fn set_muc_presence(
        &self,
        room: &BareJid,
        extra: Vec<Element>,
    ) -> Result<(), MucError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::SetPresence {
                room: room.clone(),
                extra,
                done,
            })
            .map_err(|_| MucError::Closed)?;
        rx.await.unwrap_or(Err(MucError::Closed))
    }

    /// Leaves a room (and stops re-joining it).
    pub async fn leave_muc(&self, room: &BareJid) -> Result<(), MucError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Leave {
                room: room.clone(),
                done,
            })
            .map_err(|_| MucError::Closed)?;
        rx.await.unwrap_or(Err(MucError::Closed))
    }

    /// Fetches the room configuration form (muc#owner) and submits `fields` (FORM_TYPE is added).
    /// Returns the form as fetched, before the change. Jicofo submits
    /// `[(MUC_ROOMCONFIG_WHOIS, &["anyone"])]`.
    pub async fn configure_room(
        &self,
        room: &BareJid,
        fields: &[(&str, &[&str])],
        timeout: Duration,
    ) -> Result<Element, IqError> {
        let room = Jid::from(room.clone());
        let fetched = self
            .iq_get(room.clone(), owner_form_request(), timeout)
            .await?;
        let form = fetched
            .payload
            .and_then(|q| q.get_child("x", ns::DATA_FORMS).cloned())
            .ok_or_else(|| IqError::Invalid("room sent no configuration form".into()))?;
        self.iq_set(room, owner_form_submit(fields), timeout)
            .await?;
        Ok(form)
    }

    /// Ends the session: closes the stream and stops reconnecting. Pending requests fail with
    /// `Closed`; the events end with [`Event::Closed`].
    pub fn close(&self) {
        let _ = self.tx.send(Command::Close);
    }

    /// Resolves when the session task has ended.
    pub async fn closed(&self) {
        let mut state = self.state.clone();
        let _ = state.wait_for(|s| *s == ConnState::Closed).await;
    }
}

enum Kind {
    Client(Box<ClientConfig>),
    Component(Box<ComponentConfig>),
}

impl Kind {
    fn backoff(&self) -> Backoff {
        match self {
            Kind::Client(c) => c.backoff,
            Kind::Component(c) => c.backoff,
        }
    }

    fn name(&self) -> String {
        match self {
            Kind::Client(c) => c.jid.to_string(),
            Kind::Component(c) => c.jid.to_string(),
        }
    }

    fn is_component(&self) -> bool {
        matches!(self, Kind::Component(_))
    }
}

/// The task that owns the connection.
struct Session {
    kind: Kind,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    weak_tx: mpsc::WeakUnboundedSender<Command>,
    events: mpsc::UnboundedSender<Event>,
    state: watch::Sender<ConnState>,
    ids: IdGen,
    pending: PendingIqs<IqWaiter>,
    rooms: Rooms<JoinWaiter>,
    /// Bound JID / component domain while online.
    own: Option<Jid>,
    closing: bool,
}

/// How an online period ended.
enum Ended {
    Lost(String),
    Closed,
}

impl Session {
    async fn run(mut self) {
        let name = self.kind.name();
        let backoff = self.kind.backoff();
        let mut failures: u32 = 0;
        let mut ever_online = false;
        let mut last_error: Option<String>;
        loop {
            self.state
                .send_replace(ConnState::Connecting { attempt: failures });
            debug!(session = %name, attempt = failures, "connecting");
            let Some(result) = self.connect_while_serving().await else {
                break;
            };
            match result {
                Ok(conn) => {
                    failures = 0;
                    last_error = None;
                    match self.online(conn, ever_online).await {
                        Ended::Closed => break,
                        Ended::Lost(reason) => {
                            warn!(session = %name, %reason, "XMPP connection lost");
                            self.emit(Event::Disconnected { reason });
                        }
                    }
                    ever_online = true;
                }
                Err(e) => {
                    warn!(session = %name, error = %e, attempt = failures, "XMPP connection attempt failed");
                    last_error = Some(e.to_string());
                }
            }
            let delay = backoff.jittered(failures, random_unit());
            failures = failures.saturating_add(1);
            self.state.send_replace(ConnState::Waiting {
                attempt: failures,
                delay,
            });
            info!(session = %name, attempt = failures, ?delay, "reconnecting after backoff");
            self.emit(Event::Reconnecting {
                attempt: failures,
                delay,
                last_error: last_error.clone(),
            });
            if !self.sleep_while_serving(delay).await {
                break;
            }
        }
        self.shut_down();
        info!(session = %name, "XMPP session closed");
    }

    fn emit(&self, event: Event) {
        // An owner that dropped its receiver gets nothing; IQ requests in the dropped events are
        // answered by their drop guard.
        let _ = self.events.send(event);
    }

    /// One connection attempt, answering commands (with "not connected") meanwhile. `None`: closing.
    async fn connect_while_serving(&mut self) -> Option<Result<Connected, ConnectError>> {
        let attempt = match &self.kind {
            Kind::Client(c) => {
                let c = c.clone();
                futures::future::Either::Left(async move {
                    tokio::time::timeout(c.connect_timeout, connect::connect_client(&c)).await
                })
            }
            Kind::Component(c) => {
                let c = c.clone();
                futures::future::Either::Right(async move {
                    tokio::time::timeout(c.connect_timeout, connect::connect_component(&c)).await
                })
            }
        };
        tokio::pin!(attempt);
        loop {
            tokio::select! {
                r = &mut attempt => return Some(r.unwrap_or(Err(ConnectError::Timeout))),
                cmd = self.cmd_rx.recv() => {
                    self.offline_command(cmd);
                    if self.closing {
                        return None;
                    }
                }
            }
        }
    }

    /// Waits `delay`, answering commands meanwhile. False: closing.
    async fn sleep_while_serving(&mut self, delay: Duration) -> bool {
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                cmd = self.cmd_rx.recv() => {
                    self.offline_command(cmd);
                    if self.closing {
                        return false;
                    }
                }
            }
        }
    }

    /// Commands while offline fail fast (presence updates are kept for the re-join).
    fn offline_command(&mut self, cmd: Option<Command>) {
        let closing = self.closing;
        match cmd {
            None | Some(Command::Close) => self.closing = true,
            Some(Command::Send { done, .. }) => {
                if let Some(done) = done {
                    let _ = done.send(Err(if closing {
                        SendError::Closed
                    } else {
                        SendError::NotConnected
                    }));
                }
            }
            Some(Command::Iq { reply, .. }) => {
                let _ = reply.send(Err(if closing {
                    IqError::Closed
                } else {
                    IqError::Disconnected
                }));
            }
            Some(Command::Join { done, .. }) => {
                let _ = done.send(Err(if closing {
                    MucError::Closed
                } else {
                    MucError::Disconnected
                }));
            }
            Some(Command::SetPresence { room, extra, done }) => {
                let r = self.rooms.set_extra(&room, extra).and(Err(if closing {
                    MucError::Closed
                } else {
                    MucError::Disconnected
                }));
                let _ = done.send(r);
            }
            Some(Command::Leave { room, done }) => {
                let r = self.rooms.leave(&room).map(|(_, waiter)| {
                    if let Some(w) = waiter {
                        let _ = w.send(Err(MucError::NotJoined(room.clone())));
                    }
                });
                let _ = done.send(r);
            }
        }
    }

    async fn online(&mut self, conn: Connected, reconnected: bool) -> Ended {
        let Connected { mut stream, jid } = conn;
        info!(session = %self.kind.name(), %jid, reconnected, "XMPP session online");
        self.own = Some(jid.clone());
        self.state
            .send_replace(ConnState::Online { jid: jid.clone() });
        self.emit(Event::Online { jid, reconnected });

        let mut ended = None;
        for presence in self.rooms.rejoin_all(Instant::now(), JOIN_TIMEOUT) {
            if let Err(reason) = self.write(&mut stream, presence).await {
                ended = Some(Ended::Lost(reason));
                break;
            }
        }
        let ended = match ended {
            Some(e) => e,
            None => self.serve(&mut stream).await,
        };

        if matches!(ended, Ended::Closed) {
            let close = <ElementStream as SinkExt<&Element>>::close(&mut stream);
            let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
        }
        self.own = None;
        for p in self.pending.drain() {
            if let IqWaiter::User(tx) = p.waiter {
                let _ = tx.send(Err(if self.closing {
                    IqError::Closed
                } else {
                    IqError::Disconnected
                }));
            }
        }
        for w in self.rooms.disconnected() {
            let _ = w.send(Err(MucError::Disconnected));
        }
        ended
    }

    async fn serve(&mut self, stream: &mut ElementStream) -> Ended {
        loop {
            let deadline = match (self.pending.next_deadline(), self.rooms.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timer = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                    None => futures::future::pending().await,
                }
            };
            let step = tokio::select! {
                item = stream.next() => match item {
                    Some(Ok(el)) => self.incoming(stream, el).await,
                    Some(Err(ReadError::SoftTimeout)) => self.keepalive(stream).await,
                    Some(Err(ReadError::ParseError(e))) => {
                        warn!(error = %e, "unparsable element from server ignored");
                        Ok(())
                    }
                    Some(Err(ReadError::HardError(e))) => Err(format!("connection error: {e}")),
                    Some(Err(ReadError::StreamFooterReceived)) => Err("server closed the stream".into()),
                    None => Err("connection closed".into()),
                },
                cmd = self.cmd_rx.recv() => match cmd {
                    None | Some(Command::Close) => {
                        self.closing = true;
                        return Ended::Closed;
                    }
                    Some(cmd) => self.online_command(stream, cmd).await,
                },
                () = timer => {
                    self.expire(stream).await;
                    Ok(())
                }
            };
            if let Err(reason) = step {
                return Ended::Lost(reason);
            }
        }
    }

    /// Writes a `jabber:client` stanza, translated for a component stream.
    async fn write(
        &mut self,
        stream: &mut ElementStream,
        mut stanza: Element,
    ) -> Result<(), String> {
        if let (Kind::Component(_), Some(own)) = (&self.kind, &self.own) {
            if stanza.attr("from").is_none() {
                stanza.set_attr(
                    minidom::rxml::Namespace::NONE,
                    minidom::rxml::xml_ncname!("from").to_owned(),
                    own.to_string(),
                );
            }
            stanza = translate_ns(stanza, NS_CLIENT, NS_COMPONENT);
        }
        trace!(stanza = %String::from(&stanza), "send");
        stream
            .send(&stanza)
            .await
            .map_err(|e| format!("write failed: {e}"))
    }

    async fn online_command(
        &mut self,
        stream: &mut ElementStream,
        cmd: Command,
    ) -> Result<(), String> {
        match cmd {
            Command::Send { stanza, done } => {
                let valid = stanza.ns() == NS_CLIENT
                    && matches!(stanza.name(), "iq" | "message" | "presence");
                if !valid {
                    if let Some(done) = done {
                        let _ = done.send(Err(SendError::Invalid(format!(
                            "<{} xmlns='{}'>",
                            stanza.name(),
                            stanza.ns()
                        ))));
                    }
                    return Ok(());
                }
                let r = self.write(stream, stanza).await;
                if let Some(done) = done {
                    let _ = done.send(r.as_ref().map(|_| ()).map_err(|_| SendError::NotConnected));
                }
                r
            }
            Command::Iq {
                kind,
                to,
                payload,
                timeout,
                reply,
            } => {
                let id = self.ids.next_id();
                let stanza = request_stanza(kind, to.as_ref(), &id, payload);
                if let Err(IqWaiter::User(reply)) =
                    self.pending
                        .insert(id, to, Instant::now(), timeout, IqWaiter::User(reply))
                {
                    let _ = reply.send(Err(IqError::Invalid("duplicate IQ id".into())));
                    return Ok(());
                }
                self.write(stream, stanza).await
            }
            Command::Join { join, done } => {
                match self
                    .rooms
                    .begin_join(join, Instant::now(), JOIN_TIMEOUT, done)
                {
                    Ok(presence) => self.write(stream, presence).await,
                    Err((e, done)) => {
                        let _ = done.send(Err(e));
                        Ok(())
                    }
                }
            }
            Command::SetPresence { room, extra, done } => {
                match self.rooms.set_extra(&room, extra) {
                    Ok(presence) => {
                        let r = self.write(stream, presence).await;
                        let _ =
                            done.send(r.as_ref().map(|_| ()).map_err(|_| MucError::Disconnected));
                        r
                    }
                    Err(e) => {
                        let _ = done.send(Err(e));
                        Ok(())
                    }
                }
            }
            Command::Leave { room, done } => match self.rooms.leave(&room) {
                Ok((presence, waiter)) => {
                    if let Some(w) = waiter {
                        let _ = w.send(Err(MucError::NotJoined(room.clone())));
                    }
                    let r = self.write(stream, presence).await;
                    let _ = done.send(Ok(()));
                    r
                }
                Err(e) => {
                    let _ = done.send(Err(e));
                    Ok(())
                }
            },
            Command::Close => {
                self.closing = true;
                Ok(())
            }
        }
    }

    async fn incoming(&mut self, stream: &mut ElementStream, el: Element) -> Result<(), String> {
        let el = if self.kind.is_component() {
            translate_ns(el, NS_COMPONENT, NS_CLIENT)
        } else {
            el
        };
        trace!(stanza = %String::from(&el), "recv");
        if el.is("error", NS_STREAMS) {
            return Err(format!("stream error: {}", describe_stream_error(&el)));
        }
        if el.ns() != NS_CLIENT {
            debug!(name = el.name(), ns = %el.ns(), "ignoring non-stanza element");
            return Ok(());
        }
        match el.name() {
            "iq" => self.incoming_iq(stream, el).await,
            "presence" => {
                match Presence::try_from(el) {
                    Ok(p) => {
                        self.muc_presence(&p);
                        self.emit(Event::Presence(p));
                    }
                    Err(e) => warn!(error = %e, "unparsable presence dropped"),
                }
                Ok(())
            }
            "message" => {
                match Message::try_from(el) {
                    Ok(m) => self.emit(Event::Message(m)),
                    Err(e) => warn!(error = %e, "unparsable message dropped"),
                }
                Ok(())
            }
            other => {
                debug!(name = other, "ignoring unknown top-level element");
                Ok(())
            }
        }
    }

    async fn incoming_iq(&mut self, stream: &mut ElementStream, el: Element) -> Result<(), String> {
        let from = el.attr("from").and_then(|f| Jid::new(f).ok());
        let to = el.attr("to").and_then(|t| Jid::new(t).ok());
        let Some(id) = el.attr("id").map(str::to_owned) else {
            warn!(?from, "IQ without id dropped");
            return Ok(());
        };
        let kind = match el.attr("type") {
            Some("get") => IqKind::Get,
            Some("set") => IqKind::Set,
            Some(t @ ("result" | "error")) => {
                let is_result = t == "result";
                match self
                    .pending
                    .take_reply(&id, from.as_ref(), self.own.as_ref())
                {
                    Some(p) => match p.waiter {
                        IqWaiter::User(tx) => {
                            let outcome = if is_result {
                                Ok(IqResult {
                                    from,
                                    payload: el.children().next().cloned(),
                                    stanza: el,
                                })
                            } else {
                                Err(IqError::ErrorReply(Box::new(decode_error_reply(el, from))))
                            };
                            let _ = tx.send(outcome);
                        }
                        IqWaiter::Keepalive => trace!("keepalive answered"),
                    },
                    None => {
                        debug!(%id, ?from, "IQ reply matches no pending request (late or unknown)")
                    }
                }
                return Ok(());
            }
            other => {
                warn!(?other, ?from, "IQ with invalid type dropped");
                return Ok(());
            }
        };
        let us = if self.kind.is_component() {
            to.as_ref()
        } else {
            None
        };
        let Some(payload) = el.children().next().cloned() else {
            let reply = error_stanza(
                from.as_ref(),
                us,
                &id,
                ErrorType::Modify,
                DefinedCondition::BadRequest,
                Some("IQ request without payload"),
                None,
            );
            return self.write(stream, reply).await;
        };
        if kind == IqKind::Get && payload.is("ping", NS_PING) {
            let reply = result_stanza(from.as_ref(), us, &id, None);
            return self.write(stream, reply).await;
        }
        match self.weak_tx.upgrade() {
            Some(tx) => self.emit(Event::IqRequest(IncomingIq {
                from,
                to,
                id,
                kind,
                payload,
                responder: Some(Responder::new(
                    move |stanza| tx.send(Command::Send { stanza, done: None }).is_ok(),
                    self.kind.is_component(),
                )),
            })),
            None => debug!("IQ request ignored: session closing"),
        }
        Ok(())
    }

    fn muc_presence(&mut self, p: &Presence) {
        let Some(outcome) = self.rooms.on_presence(p) else {
            return;
        };
        match outcome {
            MucOutcome::Joined {
                room,
                joined,
                waiter,
            } => match waiter {
                Some(w) => {
                    info!(%room, occupant = %joined.occupant, "joined MUC");
                    let _ = w.send(Ok(joined));
                }
                None => {
                    info!(%room, "re-joined MUC");
                    self.emit(Event::MucRejoined { room, joined });
                }
            },
            MucOutcome::Failed {
                room,
                error,
                waiter,
            } => match waiter {
                Some(w) => {
                    warn!(%room, %error, "MUC join failed");
                    let _ = w.send(Err(error));
                }
                None => {
                    warn!(%room, %error, "MUC re-join failed");
                    self.emit(Event::MucRejoinFailed { room, error });
                }
            },
            MucOutcome::Removed { room } => {
                warn!(%room, "removed from MUC");
                self.emit(Event::MucRemoved { room });
            }
        }
    }

    /// The stream was silent: ping the server so that a live one answers (a dead one then trips
    /// tokio-xmpp's hard read timeout).
    async fn keepalive(&mut self, stream: &mut ElementStream) -> Result<(), String> {
        let Some(own) = &self.own else {
            return Ok(());
        };
        let server = Jid::from(BareJid::from_parts(None, own.domain()));
        let id = self.ids.next_id();
        let ping = request_stanza(
            IqKind::Get,
            Some(&server),
            &id,
            Element::bare("ping", NS_PING),
        );
        let timeout = match &self.kind {
            Kind::Client(c) => c.keepalive.response,
            Kind::Component(c) => c.keepalive.response,
        };
        let _ = self.pending.insert(
            id,
            Some(server),
            Instant::now(),
            timeout,
            IqWaiter::Keepalive,
        );
        debug!("stream idle: keepalive ping");
        self.write(stream, ping).await
    }

    async fn expire(&mut self, stream: &mut ElementStream) {
        let now = Instant::now();
        for p in self.pending.expire(now) {
            match p.waiter {
                IqWaiter::User(tx) => {
                    debug!(id = %p.id, to = ?p.to, "IQ timed out");
                    let _ = tx.send(Err(IqError::Timeout {
                        to: p
                            .to
                            .map(|j| j.to_string())
                            .unwrap_or_else(|| "server".into()),
                        after: p.timeout,
                    }));
                }
                IqWaiter::Keepalive => warn!("keepalive ping unanswered"),
            }
        }
        for (room, occupant, waiter) in self.rooms.expire(now) {
            let error = MucError::Timeout {
                room: room.clone(),
                after: JOIN_TIMEOUT,
            };
            // Do not stay half-joined in a room we consider failed.
            let mut leave = Presence::new(PresenceType::Unavailable);
            leave.to = Some(Jid::from(occupant));
            if self.write(stream, Element::from(leave)).await.is_err() {
                debug!("could not send unavailable presence after join timeout");
            }
            match waiter {
                Some(w) => {
                    let _ = w.send(Err(error));
                }
                None => self.emit(Event::MucRejoinFailed { room, error }),
            }
        }
    }

    fn shut_down(&mut self) {
        while let Ok(cmd) = self.cmd_rx.try_recv() {
            self.offline_command(Some(cmd));
        }
        for room in self.rooms.drain() {
            if let super::muc::RoomState::Joining {
                waiter: Some(w), ..
            } = room.state
            {
                let _ = w.send(Err(MucError::Closed));
            }
        }
        self.state.send_replace(ConnState::Closed);
        self.emit(Event::Closed);
    }
}
