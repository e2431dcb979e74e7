//! The async shell around [`crate::core::Focus`]: it owns the XMPP sessions (the focus client, the
//! optional component and the optional brewery service connection), turns their events into core inputs,
//! carries the core's outputs out, runs its timers, and answers the REST API's questions.
//!
//! One task owns the core; nothing else touches it. IQ requests the core sends are awaited in small
//! tasks whose answers come back through a channel, so a slow bridge never blocks the loop. Commands to
//! a session are enqueued in the order the core emitted them (a join presence before the IQ that
//! configures the room).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use minidom::Element;
use signaling::xmpp::{
    self, ClientConfig, ComponentConfig, Event, IncomingIq, IqError, Jid, Security, ServerAddr,
    XmppEvents, XmppHandle,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::{Config, XmppClientConfig};
use crate::core::{
    CoreConfig, Focus, FocusStats, Input, IqKind, IqRequest, Link, Output, RequestFailure,
    RequestId,
};

/// Questions the REST API asks the loop.
#[derive(Debug)]
pub enum Query {
    Stats(oneshot::Sender<FocusStats>),
    /// A conference request from the REST API, answered as the `<conference>` IQ would be.
    ConferenceRequest(Element, oneshot::Sender<RestReply>),
    Health(oneshot::Sender<Health>),
    Debug(oneshot::Sender<Vec<crate::core::ConferenceDebug>>),
}

/// The core's answer to a conference request that came over HTTP.
pub type RestReply = Result<Option<Element>, crate::core::StanzaError>;

/// What `/about/health` reports: healthy with every configured XMPP connection online, the
/// brewery joined and an operational bridge, as Jicofo's `JicofoHealthChecker` (operational
/// bridges, a test conference started over the client connection, an XMPP ping on every
/// connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Configured connections that are not online: `client`, `component`, `service`.
    pub offline: Vec<&'static str>,
    pub brewery_joined: bool,
    pub operational_bridges: usize,
}

impl Health {
    /// Why the focus is unhealthy (the first reason, in that order); `None` when healthy.
    pub fn problem(&self) -> Option<String> {
        if !self.offline.is_empty() {
            Some(format!(
                "XMPP connection is down: {}",
                self.offline.join(", ")
            ))
        } else if !self.brewery_joined {
            Some("not in the brewery room".into())
        } else if self.operational_bridges == 0 {
            Some("no operational bridge".into())
        } else {
            None
        }
    }
}

/// A handle on the running loop for the REST API.
#[derive(Debug, Clone)]
pub struct LoopHandle {
    tx: mpsc::Sender<Query>,
}

impl LoopHandle {
    pub async fn stats(&self) -> Option<FocusStats> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Query::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn debug(&self) -> Option<Vec<crate::core::ConferenceDebug>> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Query::Debug(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Hands a `<conference>` request to the core; `None` when the loop is gone.
    pub async fn conference_request(&self, request: Element) -> Option<RestReply> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Query::ConferenceRequest(request, tx))
            .await
            .ok()?;
        rx.await.ok()
    }

    pub async fn health(&self) -> Option<Health> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Query::Health(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// The sender the core sees for conference requests that came over HTTP (they have no JID).
pub const REST_SENDER: &str = "http";

/// How long an unanswered incoming IQ is kept before it is answered `service-unavailable`.
const INCOMING_IQ_LIFETIME: Duration = Duration::from_secs(60);

fn client_config(c: &XmppClientConfig) -> anyhow::Result<ClientConfig> {
    let jid = format!("{}@{}", c.username, c.login_domain);
    let server = ServerAddr::new(c.host.clone(), c.port);
    let tls = c.use_tls.unwrap_or(!server.is_loopback());
    let config = ClientConfig::parse(&jid, c.password.clone(), &server.to_string())
        .with_context(|| format!("XMPP login {jid}"))?
        .with_resource(c.resource.clone());
    Ok(if tls {
        config.with_security(Security::StartTls {
            verify_certificate: false,
        })
    } else {
        config.with_security(Security::Plaintext)
    })
}

/// The core's view of the configuration.
pub fn core_config(config: &Config) -> anyhow::Result<CoreConfig> {
    let full = format!("{}/{}", config.focus_bare_jid(), config.client.resource);
    let brewery = config
        .brewery_jid()
        .parse()
        .with_context(|| format!("brewery JID {}", config.brewery_jid()))?;
    let mut core = CoreConfig::new(&full, brewery);
    core.nick = config.client.username.clone();
    core.brewery_link = if config.service.is_some() {
        Link::Service
    } else {
        Link::Client
    };
    core.reply_timeout = config.reply_timeout;
    core.conference_domains = config.conference_domains();
    core.breakout_domain = config.breakout_domain();
    core.bridge_domains = config.bridge_domains();
    core.conference = config.conference.clone();
    core.bridge = config.bridge.clone();
    core.codecs = config.codecs.clone();
    core.auth = config.auth_config();
    core.client_proxy = config.client_proxy.clone();
    core.av_moderation_component = config.av_moderation_component.clone();
    Ok(core)
}

struct Sessions {
    client: (XmppHandle, XmppEvents),
    component: Option<(XmppHandle, XmppEvents)>,
    service: Option<(XmppHandle, XmppEvents)>,
}

/// The running focus loop.
pub struct Running {
    pub handle: LoopHandle,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Leaves rooms, closes the sessions and waits for the loop to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Connects to XMPP and starts the loop.
pub fn start(config: &Config) -> anyhow::Result<Running> {
    let core = core_config(config)?;
    let client = xmpp::connect_client(client_config(&config.client)?);
    let component = match &config.component {
        Some(c) => {
            let server = ServerAddr::new(c.host.clone(), c.port);
            let cc = ComponentConfig::parse(&c.jid, c.secret.clone(), &server.to_string())
                .with_context(|| format!("component {}", c.jid))?;
            info!(component = %c.jid, %server, "serving conference requests as a component");
            Some(xmpp::connect_component(cc))
        }
        None => None,
    };
    let service = match &config.service {
        Some(s) => Some(xmpp::connect_client(client_config(s)?)),
        None => None,
    };
    let sessions = Sessions {
        client,
        component,
        service,
    };
    let (query_tx, query_rx) = mpsc::channel(64);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let seed = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        h.finish()
    };
    let focus = Focus::new(core, seed);
    let task = tokio::spawn(run(focus, sessions, query_rx, shutdown_rx));
    Ok(Running {
        handle: LoopHandle { tx: query_tx },
        shutdown,
        task,
    })
}

type Answer = (RequestId, Result<Option<Element>, RequestFailure>);

struct Shell {
    client: XmppHandle,
    component: Option<XmppHandle>,
    service: Option<XmppHandle>,
    answers: mpsc::UnboundedSender<Answer>,
    incoming: HashMap<(Link, String, String), (IncomingIq, Instant)>,
    /// Conference requests from the REST API waiting for the core's answer, by request id.
    rest: HashMap<String, oneshot::Sender<RestReply>>,
    next_rest_id: u64,
    online: HashMap<Link, bool>,
}

async fn next_event(events: Option<&mut XmppEvents>) -> Option<Event> {
    match events {
        Some(e) => e.recv().await,
        None => std::future::pending().await,
    }
}

async fn run(
    mut focus: Focus,
    sessions: Sessions,
    mut queries: mpsc::Receiver<Query>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (client, mut client_events) = sessions.client;
    let (component, mut component_events) = match sessions.component {
        Some((h, e)) => (Some(h), Some(e)),
        None => (None, None),
    };
    let (service, mut service_events) = match sessions.service {
        Some((h, e)) => (Some(h), Some(e)),
        None => (None, None),
    };
    let (answers, mut answer_rx) = mpsc::unbounded_channel();
    let mut shell = Shell {
        client,
        component,
        service,
        answers,
        incoming: HashMap::new(),
        rest: HashMap::new(),
        next_rest_id: 0,
        online: HashMap::new(),
    };
    let mut housekeeping = tokio::time::interval(Duration::from_secs(10));
    loop {
        let deadline = focus
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            ev = next_event(Some(&mut client_events)) => {
                if !shell.event(&mut focus, Link::Client, ev) { break; }
            }
            ev = next_event(component_events.as_mut()) => {
                if !shell.event(&mut focus, Link::Component, ev) { component_events = None; }
            }
            ev = next_event(service_events.as_mut()) => {
                if !shell.event(&mut focus, Link::Service, ev) { service_events = None; }
            }
            Some((request, result)) = answer_rx.recv() => {
                focus.handle(Instant::now(), Input::IqResponse { request, result });
            }
            Some(q) = queries.recv() => {
                let now = Instant::now();
                match q {
                    Query::Stats(tx) => { let _ = tx.send(focus.stats(now)); }
                    Query::Debug(tx) => { let _ = tx.send(focus.debug()); }
                    Query::ConferenceRequest(payload, tx) => {
                        shell.next_rest_id += 1;
                        let id = format!("rest-{}", shell.next_rest_id);
                        shell.rest.insert(id.clone(), tx);
                        focus.handle(now, Input::Iq(IqRequest {
                            link: Link::Rest,
                            from: REST_SENDER.into(),
                            id,
                            kind: IqKind::Set,
                            payload,
                        }));
                    }
                    Query::Health(tx) => {
                        let _ = tx.send(Health {
                            offline: shell.offline(),
                            brewery_joined: focus.brewery_joined(),
                            operational_bridges: focus.bridges().operational_count(now),
                        });
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                focus.handle_timeout(Instant::now());
            }
            _ = housekeeping.tick() => {
                let now = Instant::now();
                shell.incoming.retain(|_, (_, at)| now.duration_since(*at) < INCOMING_IQ_LIFETIME);
                // HTTP clients that went away.
                shell.rest.retain(|_, tx| !tx.is_closed());
            }
            _ = shutdown.changed() => {
                info!("shutting down: leaving rooms");
                focus.shutdown(Instant::now());
                shell.dispatch(&mut focus).await;
                // Give the session a moment to flush the leave presences.
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
        }
        shell.dispatch(&mut focus).await;
    }
    shell.client.close();
    if let Some(c) = &shell.component {
        c.close();
    }
    if let Some(s) = &shell.service {
        s.close();
    }
}

/// Polls `fut` once (which enqueues the session command in order) and finishes it in a task.
async fn enqueue<T, F>(fut: F, then: impl FnOnce(T) + Send + 'static)
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut fut = Box::pin(fut);
    match futures::poll!(fut.as_mut()) {
        Poll::Ready(v) => then(v),
        Poll::Pending => {
            tokio::spawn(async move { then(fut.await) });
        }
    }
}

fn failure(e: IqError) -> RequestFailure {
    match e {
        IqError::Timeout { .. } => RequestFailure::Timeout,
        IqError::ErrorReply(reply) => RequestFailure::Error(
            reply
                .stanza
                .get_child("error", signaling::ns::JABBER_CLIENT)
                .cloned(),
        ),
        IqError::Disconnected | IqError::Closed => RequestFailure::NotConnected,
        IqError::Invalid(reason) => {
            warn!(%reason, "invalid IQ request");
            RequestFailure::Error(None)
        }
    }
}

impl Shell {
    /// The configured XMPP connections that are not online (never online counts as down).
    fn offline(&self) -> Vec<&'static str> {
        [
            (Link::Client, "client", true),
            (Link::Component, "component", self.component.is_some()),
            (Link::Service, "service", self.service.is_some()),
        ]
        .into_iter()
        .filter(|(link, _, configured)| {
            *configured && !self.online.get(link).copied().unwrap_or(false)
        })
        .map(|(_, name, _)| name)
        .collect()
    }

    fn handle(&self, link: Link) -> &XmppHandle {
        match link {
            Link::Client => &self.client,
            Link::Component => self.component.as_ref().unwrap_or(&self.client),
            Link::Service => self.service.as_ref().unwrap_or(&self.client),
            Link::Rest => &self.client,
        }
    }

    /// Feeds one session event to the core; false when the session is closed.
    fn event(&mut self, focus: &mut Focus, link: Link, ev: Option<Event>) -> bool {
        let now = Instant::now();
        let Some(ev) = ev else {
            return false;
        };
        match ev {
            Event::Online { jid, reconnected } => {
                info!(?link, %jid, reconnected, "XMPP online");
                self.online.insert(link, true);
                focus.handle(now, Input::Online(link));
            }
            Event::Disconnected { reason } => {
                warn!(?link, %reason, "XMPP disconnected");
                self.online.insert(link, false);
                focus.handle(now, Input::Offline(link));
            }
            Event::Reconnecting {
                attempt,
                delay,
                last_error,
            } => {
                debug!(?link, attempt, ?delay, ?last_error, "XMPP reconnecting");
            }
            Event::IqRequest(iq) => {
                let Some(from) = iq.from.as_ref().map(Jid::to_string) else {
                    iq.reply_error(
                        xmpp::ErrorType::Modify,
                        xmpp::DefinedCondition::BadRequest,
                        Some("no sender"),
                        None,
                    );
                    return true;
                };
                let kind = match iq.kind {
                    xmpp::IqKind::Get => IqKind::Get,
                    xmpp::IqKind::Set => IqKind::Set,
                };
                let request = IqRequest {
                    link,
                    from: from.clone(),
                    id: iq.id.clone(),
                    kind,
                    payload: iq.payload.clone(),
                };
                self.incoming.insert((link, from, iq.id.clone()), (iq, now));
                focus.handle(now, Input::Iq(request));
            }
            Event::Presence(p) => {
                focus.handle(
                    now,
                    Input::Presence {
                        link,
                        presence: Element::from(p),
                    },
                );
            }
            Event::Message(m) => {
                focus.handle(
                    now,
                    Input::Message {
                        link,
                        message: Element::from(m),
                    },
                );
            }
            Event::MucRejoined { .. }
            | Event::MucRejoinFailed { .. }
            | Event::MucRemoved { .. } => {}
            Event::Closed => return false,
        }
        true
    }

    /// Carries out everything the core asked for, in order.
    async fn dispatch(&mut self, focus: &mut Focus) {
        while let Some(out) = focus.poll_output() {
            match out {
                Output::Request {
                    request,
                    link,
                    to,
                    kind,
                    payload,
                    timeout,
                } => {
                    let answers = self.answers.clone();
                    let Ok(to) = Jid::new(&to) else {
                        warn!(%to, "request to an invalid JID");
                        let _ = answers.send((request, Err(RequestFailure::Error(None))));
                        continue;
                    };
                    let kind = match kind {
                        IqKind::Get => xmpp::IqKind::Get,
                        IqKind::Set => xmpp::IqKind::Set,
                    };
                    let h = self.handle(link).clone();
                    enqueue(
                        async move { h.request(kind, Some(to), payload, timeout).await },
                        move |r| {
                            let r = r.map(|ok| ok.payload).map_err(failure);
                            let _ = answers.send((request, r));
                        },
                    )
                    .await;
                }
                Output::Reply {
                    link: Link::Rest,
                    id,
                    response,
                    ..
                } => {
                    if let Some(tx) = self.rest.remove(&id) {
                        let _ = tx.send(response);
                    }
                }
                Output::Reply {
                    link,
                    to,
                    id,
                    response,
                } => match self.incoming.remove(&(link, to.clone(), id.clone())) {
                    Some((iq, _)) => match response {
                        Ok(payload) => iq.reply_result(payload),
                        Err(e) => iq.reply_error_element(e.to_element()),
                    },
                    None => debug!(%to, %id, "reply to an IQ that is no longer pending"),
                },
                Output::Presence { link, presence } => {
                    let h = self.handle(link).clone();
                    enqueue(async move { h.send_element(presence).await }, |r| {
                        if let Err(e) = r {
                            debug!(error = %e, "presence not sent");
                        }
                    })
                    .await;
                }
            }
        }
    }
}

/// The REST address the configuration asks for.
pub fn rest_addr(config: &Config) -> SocketAddr {
    SocketAddr::new(config.rest.host, config.rest.port)
}
