//! signaling::xmpp against a real Prosody (started per test by testkit on free ports).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use minidom::Element;
use signaling::XmlElement;
use signaling::colibri2::{Colibri2ErrorResponse, Condition, Reason};
use signaling::health::{HealthCheck, HealthCheckOutcome};
use signaling::ns;
use signaling::xml::Builder;
use signaling::xmpp::{
    BareJid, ConnState, DefinedCondition, ErrorType, Event, IqError, IqKind, Jid, Keepalive,
    MUC_ROOMCONFIG_WHOIS, MucError, MucJoin, SendError, XmppEvents, XmppHandle, connect_client,
    connect_component,
};
use testkit::{Prosody, ProsodyOptions};
use tokio::sync::mpsc;

const ECHO: &str = "urn:test:echo";
const FAIL: &str = "urn:test:fail";
const SILENT: &str = "urn:test:silent";
const COLIBRI_FAIL: &str = "urn:test:colibri-fail";
const WAIT: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "signaling=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Prints the tail of Prosody's log when the test fails (declare after the `Prosody`).
struct LogOnPanic(PathBuf);

impl Drop for LogOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.0).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(80)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            eprintln!("--- prosody log tail ---\n{tail}");
        }
    }
}

fn start_prosody(opts: ProsodyOptions) -> (Prosody, LogOnPanic) {
    init_tracing();
    let prosody = Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)");
    let guard = LogOnPanic(prosody.log_path());
    (prosody, guard)
}

fn el(name: &str, ns: &str) -> Element {
    Element::bare(name, ns)
}

fn stats(version: u32) -> Element {
    Builder::new("stats", ns::COLIBRI)
        .child(
            Builder::new("stat", ns::COLIBRI)
                .attr("name", "version")
                .attr("value", version)
                .build(),
        )
        .child(
            Builder::new("stat", ns::COLIBRI)
                .attr("name", "stress_level")
                .attr("value", "0.05")
                .build(),
        )
        .build()
}

fn stats_version(p: &signaling::xmpp::Presence) -> Option<u32> {
    p.payloads
        .iter()
        .find(|e| e.is("stats", ns::COLIBRI))?
        .children()
        .find(|s| s.attr("name") == Some("version"))?
        .attr("value")?
        .parse()
        .ok()
}

/// Runs a peer: answers `echo` IQs with their text, `fail` IQs with a colibri2-style error, holds
/// `silent` IQs unanswered (a non-answering peer); forwards every other event to the returned channel.
fn spawn_peer(mut events: XmppEvents) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Some(event) = events.recv().await {
            match event {
                Event::IqRequest(iq) if iq.is("query", ECHO) => {
                    let text = iq.payload.text();
                    iq.reply_result(Some(Builder::new("answer", ECHO).text(text).build()));
                }
                Event::IqRequest(iq) if iq.is("query", FAIL) => iq.reply_error(
                    ErrorType::Modify,
                    DefinedCondition::BadRequest,
                    Some("deliberate failure"),
                    Some(
                        Builder::new("error", ns::COLIBRI2)
                            .attr("reason", "unknown-endpoint")
                            .build(),
                    ),
                ),
                Event::IqRequest(iq) if iq.is("query", SILENT) => held.push(iq),
                Event::IqRequest(iq) if iq.is("query", COLIBRI_FAIL) => iq.reply_error_element(
                    Colibri2ErrorResponse::unknown_endpoint("ep1").to_element(),
                ),
                Event::IqRequest(iq) if iq.is("healthcheck", ns::HEALTHCHECK) => {
                    iq.reply_result(None)
                }
                // Anything else is dropped unanswered: the drop guard must reply.
                Event::IqRequest(iq) => drop(iq),
                other => {
                    let _ = tx.send(other);
                }
            }
        }
    });
    rx
}

/// Waits for the first event `pick` accepts; other events are discarded.
async fn wait_for<T>(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    what: &str,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                if let Some(v) = pick(&ev) {
                    return v;
                }
            }
            Ok(None) => panic!("event stream ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

async fn online(h: &XmppHandle, who: &str) -> Jid {
    h.wait_online(WAIT)
        .await
        .unwrap_or_else(|| panic!("{who} did not come online: {:?}", h.state()))
}

fn echo(text: &str) -> Element {
    Builder::new("query", ECHO).text(text).build()
}

async fn assert_echo(from: &XmppHandle, to: &Jid, text: &str) {
    let reply = from
        .iq_get(to.clone(), echo(text), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("echo IQ to {to} failed: {e}"));
    let payload = reply.payload.expect("echo reply has a payload");
    assert!(payload.is("answer", ECHO), "{payload:?}");
    assert_eq!(payload.text(), text);
    assert_eq!(reply.from.as_ref(), Some(to));
}

fn presence_of(ev: &Event, occupant: &str) -> Option<signaling::xmpp::Presence> {
    match ev {
        Event::Presence(p) if p.from.as_ref().map(|f| f.as_str()) == Some(occupant) => {
            Some(p.clone())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_and_component_exchange_iqs_errors_and_timeouts() {
    let (_prosody, _log) = start_prosody(ProsodyOptions::default());
    let prosody = &_prosody;

    let (component, component_events) = connect_component(prosody.focus_component_config());
    let (client, client_events) = connect_client(prosody.jvb_client_config());
    let _component_rx = spawn_peer(component_events);
    let _client_rx = spawn_peer(client_events);
    let component_jid = online(&component, "component").await;
    let client_jid = online(&client, "client").await;
    assert_eq!(component_jid.as_str(), "focus.meet.example");
    assert!(
        client_jid.as_str().starts_with("jvb@auth.meet.example/"),
        "{client_jid}"
    );
    assert!(component.is_component() && !client.is_component());

    // Client → component → result, and component → client (full JID) → result.
    assert_echo(&client, &component_jid, "hello component").await;
    assert_echo(&component, &client_jid, "hello client").await;
    // The typed `Iq` entry point too.
    let iq = signaling::xmpp::Iq::Get {
        from: None,
        to: Some(component_jid.clone()),
        id: String::new(),
        payload: echo("typed"),
    };
    let r = client
        .iq_request(iq, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.payload.map(|p| p.text()), Some("typed".into()));

    // Error replies carry condition, text and the application-specific element.
    let err = client
        .request(
            IqKind::Set,
            Some(component_jid.clone()),
            el("query", FAIL),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    match &err {
        IqError::ErrorReply(reply) => {
            assert_eq!(reply.condition, DefinedCondition::BadRequest);
            assert_eq!(reply.error_type, ErrorType::Modify);
            assert_eq!(reply.text.as_deref(), Some("deliberate failure"));
            let app = reply.app_specific.first().expect("app-specific condition");
            assert!(app.is("error", ns::COLIBRI2));
            assert_eq!(app.attr("reason"), Some("unknown-endpoint"));
            assert_eq!(reply.from.as_ref(), Some(&component_jid));
        }
        other => panic!("expected an error reply, got {other:?}"),
    }

    // A prebuilt COLIBRI2 error (two app-specific children) crosses the component stream intact and
    // parses with the colibri2 module.
    let err = client
        .iq_set(
            component_jid.clone(),
            el("query", COLIBRI_FAIL),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    let IqError::ErrorReply(reply) = err else {
        panic!("expected an error reply, got {err:?}")
    };
    assert_eq!(reply.condition, DefinedCondition::ItemNotFound);
    assert_eq!(reply.app_specific.len(), 2);
    let colibri = Colibri2ErrorResponse::from_iq(&reply.stanza).expect("colibri2 error parses");
    assert_eq!(colibri.condition, Condition::ItemNotFound);
    assert_eq!(colibri.reason, Some(Reason::UnknownEndpoint));
    assert_eq!(colibri.endpoint_id.as_deref(), Some("ep1"));

    // Health check, component → client, classified by the health module from the whole reply.
    let r = component
        .iq_get(
            client_jid.clone(),
            HealthCheck.to_element(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(
        HealthCheckOutcome::from_response(&r.stanza),
        Ok(HealthCheckOutcome::Passed)
    );

    // A peer that never answers: the typed timeout, on time.
    let started = Instant::now();
    let err = client
        .iq_get(
            component_jid.clone(),
            el("query", SILENT),
            Duration::from_millis(1500),
        )
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, IqError::Timeout { to, after } if to == "focus.meet.example"
        && *after == Duration::from_millis(1500)),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // An IQ nobody handles: the owner dropped it unanswered, the drop guard replied.
    let err = client
        .iq_get(
            component_jid.clone(),
            el("query", "urn:test:unknown"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert_eq!(err.condition(), Some(&DefinedCondition::ServiceUnavailable));

    // The server itself: ping to our domain answers; a full JID that does not exist errors.
    let r = client
        .iq_get(
            Jid::new("auth.meet.example").unwrap(),
            el("ping", "urn:xmpp:ping"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(r.payload.is_none());
    let err = client
        .iq_get(
            Jid::new("nobody@auth.meet.example/x").unwrap(),
            echo("?"),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(err.condition().is_some(), "{err:?}");

    client.close();
    component.close();
    client.closed().await;
    component.closed().await;
    assert_eq!(client.state(), ConnState::Closed);
    assert_eq!(
        client
            .iq_get(component_jid, echo("late"), Duration::from_secs(1))
            .await,
        Err(IqError::Closed)
    );
}

/// The main scenario: a bridge-like client in the brewery with `<stats>` in its presence, a focus-like
/// client watching the room, a component; Prosody stops and comes back on the same ports; everything
/// reconnects, the bridge re-joins with the payload it set while offline, and IQs flow again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn muc_presence_and_iqs_survive_a_prosody_restart() {
    let (mut prosody, _log) = start_prosody(ProsodyOptions::default());
    let brewery = BareJid::new(&format!("jvbbrewery@{}", prosody.internal_muc_domain())).unwrap();
    let bridge_occupant = format!("{brewery}/jvb-1");

    let (component, component_events) = connect_component(prosody.focus_component_config());
    let (bridge, bridge_events) = connect_client(prosody.jvb_client_config());
    let (focus, focus_events) = connect_client(prosody.focus_client_config());
    let mut component_rx = spawn_peer(component_events);
    let mut bridge_rx = spawn_peer(bridge_events);
    let mut focus_rx = spawn_peer(focus_events);
    let component_jid = online(&component, "component").await;
    online(&bridge, "bridge").await;
    online(&focus, "focus").await;

    // The focus watches the brewery; the bridge joins with its stats.
    let joined = focus
        .join_muc(MucJoin::new(brewery.clone(), "focus"))
        .await
        .expect("focus joins the brewery");
    assert_eq!(joined.occupant.to_string(), format!("{brewery}/focus"));
    assert!(joined.created);
    let joined = bridge
        .join_muc(MucJoin::new(brewery.clone(), "jvb-1").with_extra(vec![stats(1)]))
        .await
        .expect("bridge joins the brewery");
    assert!(!joined.created);
    assert_eq!(stats_version(&joined.presence), Some(1));
    let seen = wait_for(&mut focus_rx, "bridge presence v1", |ev| {
        presence_of(ev, &bridge_occupant)
    })
    .await;
    assert_eq!(stats_version(&seen), Some(1));

    // Periodic stats update: the focus sees the new payload.
    bridge
        .set_muc_presence(&brewery, vec![stats(2)])
        .await
        .unwrap();
    wait_for(&mut focus_rx, "bridge presence v2", |ev| {
        presence_of(ev, &bridge_occupant).filter(|p| stats_version(p) == Some(2))
    })
    .await;
    assert_echo(&bridge, &component_jid, "before restart").await;

    // Prosody goes away (graceful stop: system-shutdown stream errors).
    tokio::task::block_in_place(|| prosody.stop()).unwrap();
    for (who, rx) in [
        ("bridge", &mut bridge_rx),
        ("focus", &mut focus_rx),
        ("component", &mut component_rx),
    ] {
        wait_for(rx, &format!("{who} disconnected"), |ev| {
            matches!(ev, Event::Disconnected { .. }).then_some(())
        })
        .await;
        wait_for(rx, &format!("{who} reconnecting"), |ev| {
            matches!(ev, Event::Reconnecting { .. }).then_some(())
        })
        .await;
    }
    // While offline: requests fail fast; the bridge's stats update is kept for the re-join.
    let started = Instant::now();
    assert_eq!(
        bridge
            .iq_get(
                component_jid.clone(),
                echo("offline"),
                Duration::from_secs(15)
            )
            .await,
        Err(IqError::Disconnected)
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        bridge.set_muc_presence(&brewery, vec![stats(3)]).await,
        Err(MucError::Disconnected)
    );

    // Prosody is back on the same ports, with the same accounts.
    tokio::task::block_in_place(|| prosody.start_again()).unwrap();
    for (who, rx) in [
        ("bridge", &mut bridge_rx),
        ("focus", &mut focus_rx),
        ("component", &mut component_rx),
    ] {
        wait_for(rx, &format!("{who} back online"), |ev| {
            matches!(
                ev,
                Event::Online {
                    reconnected: true,
                    ..
                }
            )
            .then_some(())
        })
        .await;
    }
    let room = wait_for(
        &mut bridge_rx,
        "bridge re-joined the brewery",
        |ev| match ev {
            Event::MucRejoined { room, .. } => Some(room.clone()),
            Event::MucRejoinFailed { room, error } => {
                panic!("bridge failed to re-join {room}: {error}")
            }
            _ => None,
        },
    )
    .await;
    assert_eq!(room, brewery);
    // The focus re-joins too and sees the bridge in the room again (in the occupant list before its
    // own presence, or as a new arrival after it), with the payload set while offline.
    let (mut focus_rejoined, mut bridge_seen) = (false, None);
    while !focus_rejoined || bridge_seen.is_none() {
        wait_for(&mut focus_rx, "focus re-join and bridge presence", |ev| {
            match ev {
                Event::MucRejoined { room, .. } if *room == brewery => focus_rejoined = true,
                Event::MucRejoinFailed { room, error } => {
                    panic!("focus failed to re-join {room}: {error}")
                }
                ev => {
                    if let Some(p) = presence_of(ev, &bridge_occupant) {
                        bridge_seen = Some(stats_version(&p));
                    }
                }
            }
            Some(())
        })
        .await;
    }
    assert_eq!(bridge_seen, Some(Some(3)));

    // IQs flow again both ways.
    assert_echo(&bridge, &component_jid, "after restart").await;
    let bridge_jid = bridge.jid().expect("bridge online");
    assert_echo(&component, &bridge_jid, "component to bridge after restart").await;

    // Leaving stops the re-joins: the focus sees the bridge go.
    bridge.leave_muc(&brewery).await.unwrap();
    wait_for(&mut focus_rx, "bridge leaves", |ev| {
        presence_of(ev, &bridge_occupant)
            .filter(|p| p.type_ == signaling::xmpp::parsers::presence::Type::Unavailable)
    })
    .await;
    assert_eq!(
        bridge.leave_muc(&brewery).await,
        Err(MucError::NotJoined(brewery.clone()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_while_disconnected_fail_fast_and_a_killed_server_is_survived() {
    let (mut prosody, _log) = start_prosody(ProsodyOptions::default());
    let (client, events) = connect_client(prosody.jvb_client_config());
    let mut rx = spawn_peer(events);
    online(&client, "client").await;
    let server = Jid::new(prosody.auth_domain()).unwrap();

    // SIGKILL: no stream close, the socket just dies.
    tokio::task::block_in_place(|| prosody.kill()).unwrap();
    let reason = wait_for(&mut rx, "disconnect", |ev| match ev {
        Event::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    assert!(!reason.is_empty());
    let started = Instant::now();
    let err = client
        .iq_get(
            server.clone(),
            el("ping", "urn:xmpp:ping"),
            Duration::from_secs(15),
        )
        .await
        .unwrap_err();
    assert_eq!(err, IqError::Disconnected);
    assert_eq!(
        client.send(signaling::xmpp::Presence::available()).await,
        Err(SendError::NotConnected)
    );
    let room = BareJid::new(&format!("r@{}", prosody.muc_domain())).unwrap();
    assert_eq!(
        client.join_muc(MucJoin::new(room, "n")).await,
        Err(MucError::Disconnected)
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "offline requests took {:?}",
        started.elapsed()
    );
    assert!(!matches!(client.state(), ConnState::Online { .. }));

    // Failed attempts back off exponentially: the announced delays grow.
    let mut delays = Vec::new();
    while delays.len() < 3 {
        let (attempt, delay, last_error) = wait_for(&mut rx, "reconnect attempt", |ev| match ev {
            Event::Reconnecting {
                attempt,
                delay,
                last_error,
            } => Some((*attempt, *delay, last_error.clone())),
            _ => None,
        })
        .await;
        if attempt > 1 {
            assert!(
                last_error.is_some_and(|e| e.contains("cannot reach")),
                "attempt {attempt}"
            );
        }
        delays.push(delay);
    }
    assert!(delays[1] > delays[0] && delays[2] > delays[1], "{delays:?}");

    tokio::task::block_in_place(|| prosody.start_again()).unwrap();
    wait_for(&mut rx, "online again", |ev| {
        matches!(
            ev,
            Event::Online {
                reconnected: true,
                ..
            }
        )
        .then_some(())
    })
    .await;
    let r = client
        .iq_get(server, el("ping", "urn:xmpp:ping"), Duration::from_secs(10))
        .await
        .expect("ping after reconnect");
    assert!(r.payload.is_none());
}

/// A hung server closes nothing: only the keepalive notices. An idle but live server is not mistaken
/// for a dead one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_keeps_an_idle_session_and_detects_a_frozen_server() {
    let (mut prosody, _log) = start_prosody(ProsodyOptions::default());
    let keepalive = Keepalive {
        idle: Duration::from_millis(700),
        response: Duration::from_millis(1200),
    };
    let (client, events) = connect_client(prosody.jvb_client_config().with_keepalive(keepalive));
    let mut rx = spawn_peer(events);
    online(&client, "client").await;

    // Several idle periods: each is answered by a ping, the session stays up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        matches!(client.state(), ConnState::Online { .. }),
        "{:?}",
        client.state()
    );
    while let Ok(ev) = rx.try_recv() {
        assert!(
            !matches!(ev, Event::Disconnected { .. }),
            "idle session dropped: {ev:?}"
        );
    }

    tokio::task::block_in_place(|| prosody.freeze()).unwrap();
    let frozen_at = Instant::now();
    let reason = wait_for(&mut rx, "disconnect of a frozen server", |ev| match ev {
        Event::Disconnected { reason } => Some(reason.clone()),
        _ => None,
    })
    .await;
    let detected = frozen_at.elapsed();
    assert!(
        detected < Duration::from_secs(5),
        "took {detected:?}: {reason}"
    );
    assert!(
        reason.contains("timed out") || reason.contains("connection error"),
        "{reason}"
    );

    tokio::task::block_in_place(|| prosody.thaw()).unwrap();
    wait_for(&mut rx, "online after thaw", |ev| {
        matches!(
            ev,
            Event::Online {
                reconnected: true,
                ..
            }
        )
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nickname_conflict_is_a_clear_error() {
    let (prosody, _log) = start_prosody(ProsodyOptions::default());
    let room = BareJid::new(&format!("conflict@{}", prosody.muc_domain())).unwrap();
    let (a, a_events) = connect_client(prosody.focus_client_config());
    let (b, b_events) = connect_client(prosody.jvb_client_config());
    let _a_rx = spawn_peer(a_events);
    let _b_rx = spawn_peer(b_events);
    online(&a, "a").await;
    online(&b, "b").await;
    a.join_muc(MucJoin::new(room.clone(), "same"))
        .await
        .unwrap();
    let err = b
        .join_muc(MucJoin::new(room.clone(), "same"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        MucError::NicknameConflict {
            room: room.clone(),
            nick: "same".into()
        }
    );
    assert!(err.to_string().contains("already in use"), "{err}");
    // The failed room is not remembered: a join with another nickname works.
    b.join_muc(MucJoin::new(room.clone(), "other"))
        .await
        .unwrap();
    assert_eq!(
        a.join_muc(MucJoin::new(room.clone(), "again")).await,
        Err(MucError::AlreadyJoined(room))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focus_configures_a_conference_room_like_jicofo() {
    let (prosody, _log) = start_prosody(ProsodyOptions::default());
    let room = BareJid::new(&format!("myconference@{}", prosody.muc_domain())).unwrap();
    let (focus, events) = connect_client(prosody.focus_client_config());
    let (guest, guest_events) = connect_client(prosody.jvb_client_config());
    let _rx = spawn_peer(events);
    let mut guest_rx = spawn_peer(guest_events);
    online(&focus, "focus").await;
    online(&guest, "guest").await;
    focus
        .join_muc(MucJoin::new(room.clone(), "focus"))
        .await
        .unwrap();

    let form = focus
        .configure_room(
            &room,
            &[(MUC_ROOMCONFIG_WHOIS, &["anyone"])],
            Duration::from_secs(10),
        )
        .await
        .expect("configure room");
    let whois_field = |form: &Element| {
        form.children()
            .find(|f| f.attr("var") == Some(MUC_ROOMCONFIG_WHOIS))
            .and_then(|f| f.get_child("value", ns::DATA_FORMS))
            .map(Element::text)
    };
    assert_eq!(whois_field(&form).as_deref(), Some("moderators"));
    // Fetching again shows the submitted value.
    let again = focus
        .configure_room(&room, &[], Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(whois_field(&again).as_deref(), Some("anyone"));

    // Effect of whois=anyone: a plain participant sees the focus's real JID.
    guest
        .join_muc(MucJoin::new(room.clone(), "guest"))
        .await
        .unwrap();
    let focus_occupant = format!("{room}/focus");
    let p = wait_for(&mut guest_rx, "focus presence", |ev| {
        presence_of(ev, &focus_occupant)
    })
    .await;
    let real_jid = p
        .payloads
        .iter()
        .find(|e| e.is("x", ns::MUC_USER))
        .and_then(|x| x.get_child("item", ns::MUC_USER))
        .and_then(|i| i.attr("jid"))
        .map(str::to_owned);
    assert!(
        real_jid
            .as_deref()
            .is_some_and(|j| j.starts_with("focus@auth.meet.example/")),
        "{real_jid:?}"
    );
    // Non-owners cannot configure.
    let err = guest
        .configure_room(
            &room,
            &[(MUC_ROOMCONFIG_WHOIS, &["moderators"])],
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert_eq!(err.condition(), Some(&DefinedCondition::Forbidden));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_without_certificate_verification_like_docker() {
    let (prosody, _log) = start_prosody(ProsodyOptions::default().with_tls());
    // docker-jitsi-meet mode: TLS, self-signed certificate accepted.
    let (client, events) = connect_client(
        prosody
            .jvb_client_config()
            .disable_certificate_verification(),
    );
    let _rx = spawn_peer(events);
    let jid = online(&client, "TLS client").await;
    assert!(jid.as_str().starts_with("jvb@auth.meet.example/"));
    let r = client
        .iq_get(
            Jid::new(prosody.auth_domain()).unwrap(),
            el("ping", "urn:xmpp:ping"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(r.payload.is_none());

    // With verification on, the self-signed certificate is refused (and retried with backoff).
    let (strict, strict_events) = connect_client(prosody.jvb_client_config().with_security(
        signaling::xmpp::Security::StartTls {
            verify_certificate: true,
        },
    ));
    let mut strict_rx = spawn_peer(strict_events);
    let error = wait_for(&mut strict_rx, "TLS failure", |ev| match ev {
        Event::Reconnecting {
            last_error: Some(e),
            ..
        } => Some(e.clone()),
        _ => None,
    })
    .await;
    assert!(error.starts_with("TLS"), "{error}");
    assert!(strict.jid().is_none());

    // Plaintext against a server that offers TLS also works (loopback default), and the TLS
    // connection carries MUC traffic like any other.
    let (plain, plain_events) = connect_client(prosody.focus_client_config());
    let _plain_rx = spawn_peer(plain_events);
    online(&plain, "plaintext client").await;
    let room = BareJid::new(&format!("tls@{}", prosody.muc_domain())).unwrap();
    client
        .join_muc(MucJoin::new(room.clone(), "tls"))
        .await
        .unwrap();
    plain.join_muc(MucJoin::new(room, "plain")).await.unwrap();
}

/// The harness: instances side by side on their own ports; a restart keeps the ports and accounts
/// and does not disturb the neighbour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prosody_instances_run_side_by_side_and_restart_on_the_same_ports() {
    let (mut one, _log1) = start_prosody(ProsodyOptions::default());
    let (two, _log2) = start_prosody(ProsodyOptions::new("other.example"));
    let (p1, p2) = (one.ports(), two.ports());
    assert!(p1.c2s != p2.c2s && p1.component != p2.component && p1.http != p2.http);
    assert_eq!(two.auth_domain(), "auth.other.example");
    assert_eq!(
        one.websocket_url(),
        format!("ws://127.0.0.1:{}/xmpp-websocket", p1.http)
    );
    assert_eq!(
        one.bosh_url(),
        format!("http://127.0.0.1:{}/http-bind", p1.http)
    );

    let (a, a_events) = connect_client(one.jvb_client_config());
    let (b, b_events) = connect_client(two.jvb_client_config());
    let mut a_rx = spawn_peer(a_events);
    let _b_rx = spawn_peer(b_events);
    online(&a, "client of one").await;
    let b_jid = online(&b, "client of two").await;
    assert!(b_jid.as_str().starts_with("jvb@auth.other.example/"));

    tokio::task::block_in_place(|| one.restart()).unwrap();
    assert_eq!(one.ports(), p1);
    wait_for(&mut a_rx, "client of one back", |ev| {
        matches!(
            ev,
            Event::Online {
                reconnected: true,
                ..
            }
        )
        .then_some(())
    })
    .await;
    // The neighbour never noticed.
    assert_eq!(b.jid(), Some(b_jid));

    // HTTP (BOSH/WebSocket) answers on the announced port.
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", p1.http))
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /http-bind HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"),
        "{text}"
    );
}
