//! The `focus` binary against a real Prosody: conference requests through the XEP-0114 component, the
//! room it creates and configures, brewery discovery, REST, bad input. (Media flows are tested in the
//! browser end-to-end tests.)

mod common;

use std::time::Duration;

use common::{
    FocusProcess, PROXY_DOMAIN, TestClient, WAIT, el, start_prosody,
    start_prosody_with_client_proxy,
};
use signaling::ns;
use signaling::xml::Builder;
use signaling::xmpp::{BareJid, DefinedCondition, Event, IqError, Jid, MucJoin, XmppHandle};

fn conference_iq(room: &str) -> minidom::Element {
    el(&format!(
        r#"<conference xmlns="http://jitsi.org/protocol/focus" room="{room}" machine-uid="m-1"><property name="disableRtx" value="false"/></conference>"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_request_creates_a_room_clients_can_trust() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let room = format!("room1@{}", prosody.muc_domain());
    let component: Jid = prosody.focus_domain().parse().unwrap();
    let mut alice = TestClient::connect(&prosody, "alice", "alice-pw").await;

    // The focus may still be connecting: retry like lib-jitsi-meet does while the answer is not ready.
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        match alice
            .handle
            .iq_set(
                component.clone(),
                conference_iq(&room),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(r) if r.payload.as_ref().and_then(|p| p.attr("ready")) == Some("true") => {
                break r.payload.unwrap();
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no ready answer: {other:?}\n{}",
                    focus.log()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    assert_eq!(answer.attr("focusjid"), Some("focus@auth.meet.example"));
    assert_eq!(answer.attr("room"), Some(room.as_str()));

    // The room exists, the focus is in it, and its real JID is visible (whois=anyone) — what
    // lib-jitsi-meet needs to accept Jingle from it — with support-terminate-restart.
    let room_jid = BareJid::new(&room).unwrap();
    alice
        .handle
        .join_muc(MucJoin::new(room_jid.clone(), "aaaa1111"))
        .await
        .expect("alice joins");
    let focus_occupant = format!("{room}/focus");
    let p = alice
        .wait_for("focus presence", |ev| match ev {
            Event::Presence(p)
                if p.from.as_ref().map(|f| f.as_str()) == Some(focus_occupant.as_str()) =>
            {
                Some(p.clone())
            }
            _ => None,
        })
        .await;
    let item_jid = p
        .payloads
        .iter()
        .find(|e| e.is("x", ns::MUC_USER))
        .and_then(|x| x.get_child("item", ns::MUC_USER))
        .and_then(|i| i.attr("jid"))
        .map(str::to_owned);
    assert_eq!(item_jid.as_deref(), Some("focus@auth.meet.example/focus"));
    let props = p
        .payloads
        .iter()
        .find(|e| e.is("conference-properties", ns::FOCUS))
        .expect("conference-properties");
    assert!(
        props
            .children()
            .any(|c| c.attr("key") == Some("support-terminate-restart")
                && c.attr("value") == Some("true"))
    );

    // Auto-owner: alice is made an owner.
    alice
        .wait_for("owner affiliation", |ev| match ev {
            Event::Presence(p)
                if p.from.as_ref().map(|f| f.as_str())
                    == Some(format!("{room}/aaaa1111").as_str()) =>
            {
                p.payloads
                    .iter()
                    .find(|e| e.is("x", ns::MUC_USER))
                    .and_then(|x| x.get_child("item", ns::MUC_USER))
                    .filter(|i| i.attr("affiliation") == Some("owner"))
                    .map(|_| ())
            }
            _ => None,
        })
        .await;

    let stats = focus.stats();
    assert_eq!(stats["conferences"], 1);
    assert_eq!(stats["total_conferences_created"], 1);
    // No bridge: not healthy.
    let (status, body) = focus.get("/about/health").unwrap();
    assert_eq!(status, 503, "{body}");
    let (status, metrics) = focus.get("/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("jitsi_jicofo_conferences 1"), "{metrics}");
    assert!(
        metrics.contains("jitsi_jicofo_conferences_created_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("jitsi_jicofo_bridge_selector_bridge_count 0"),
        "{metrics}"
    );
    let (status, version) = focus.get("/about/version").unwrap();
    assert_eq!(status, 200);
    assert!(version.contains("\"name\""), "{version}");

    // Alice leaves: the focus stops the conference and leaves the room.
    alice.handle.leave_muc(&room_jid).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while focus.stats()["conferences"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "conference not stopped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_error_replies() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let component: Jid = prosody.focus_domain().parse().unwrap();
    let mut mallory = TestClient::connect(&prosody, "mallory", "mallory-pw").await;
    let room = format!("room2@{}", prosody.muc_domain());

    // A conference IQ without room → bad-request (retry while the focus's component connects).
    let deadline = tokio::time::Instant::now() + WAIT;
    let err = loop {
        let r = mallory
            .handle
            .iq_set(
                component.clone(),
                el(r#"<conference xmlns="http://jitsi.org/protocol/focus" machine-uid="m"/>"#),
                Duration::from_secs(5),
            )
            .await;
        match r {
            Err(IqError::ErrorReply(e)) if e.condition == DefinedCondition::BadRequest => break e,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{other:?}\n{}",
                    focus.log()
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    assert!(
        err.text.as_deref().unwrap_or_default().contains("room"),
        "{err}"
    );

    // Jingle from somebody who is not a participant → item-not-found (unknown-session), both sent to
    // the focus directly and through a room it is in.
    let focus_jid: Jid = "focus@auth.meet.example/focus".parse().unwrap();
    let jingle = Builder::new("jingle", ns::JINGLE)
        .attr("action", "session-accept")
        .attr("sid", "nosuchsession")
        .build();
    // (The component may be up before the client connection: Prosody answers service-unavailable for
    // an offline resource, so wait for the focus's client to be online.)
    let deadline = tokio::time::Instant::now() + WAIT;
    let e = loop {
        let e = mallory
            .handle
            .iq_set(focus_jid.clone(), jingle.clone(), Duration::from_secs(5))
            .await
            .unwrap_err();
        if e.condition() != Some(&DefinedCondition::ServiceUnavailable)
            || tokio::time::Instant::now() > deadline
        {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(e.condition(), Some(&DefinedCondition::ItemNotFound), "{e}");

    let ready = mallory
        .handle
        .iq_set(
            component.clone(),
            conference_iq(&room),
            Duration::from_secs(10),
        )
        .await
        .expect("conference answer");
    assert_eq!(ready.payload.unwrap().attr("ready"), Some("true"));
    let room_jid = BareJid::new(&room).unwrap();
    mallory
        .handle
        .join_muc(MucJoin::new(room_jid.clone(), "bad00bad"))
        .await
        .unwrap();
    let e = mallory
        .handle
        .iq_set(
            format!("{room}/focus").parse().unwrap(),
            jingle,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.condition(), Some(&DefinedCondition::ItemNotFound), "{e}");
    match &e {
        IqError::ErrorReply(r) => assert!(
            r.app_specific
                .iter()
                .any(|a| a.is("unknown-session", ns::JINGLE_ERRORS)),
            "{r}"
        ),
        other => panic!("{other:?}"),
    }

    // An IQ the focus does not serve → service-unavailable; the focus is still fine.
    let e = mallory
        .handle
        .iq_get(
            component,
            el(r#"<query xmlns="jabber:iq:version"/>"#),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.condition(), Some(&DefinedCondition::ServiceUnavailable));
    assert_eq!(focus.stats()["conferences"], 1);
    let _ = &mut mallory.events;
}

/// A brewery occupant that publishes stats and answers health checks, as a bridge does: its
/// session, the brewery, and the task answering.
async fn fake_bridge(
    prosody: &testkit::Prosody,
) -> (XmppHandle, BareJid, tokio::task::JoinHandle<()>) {
    let brewery = BareJid::new(&format!("jvbbrewery@{}", prosody.internal_muc_domain())).unwrap();
    let mut jvb = TestClient::connect(prosody, "jvb", testkit::JVB_PASSWORD).await;
    let stats = common::bridge_stats(&[
        ("stress_level", "0.1"),
        ("drain", "false"),
        ("version", "1.0"),
        ("region", "r1"),
    ]);
    jvb.handle
        .join_muc(MucJoin::new(brewery.clone(), "jvb-1").with_extra(vec![stats]))
        .await
        .expect("jvb joins the brewery");
    let handle = jvb.handle.clone();
    let answering = tokio::spawn(async move {
        while let Some(ev) = jvb.events.recv().await {
            if let Event::IqRequest(iq) = ev
                && iq.is("healthcheck", ns::HEALTHCHECK)
            {
                iq.reply_result(None);
            }
        }
    });
    (handle, brewery, answering)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brewery_occupants_with_stats_are_bridges() {
    let prosody = start_prosody();
    let mut focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let (jvb_handle, brewery, answering) = fake_bridge(&prosody).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = focus.stats();
        if s["bridge_selector"]["bridge_count"] == 1 {
            assert_eq!(s["bridge_selector"]["operational_bridge_count"], 1);
            assert_eq!(s["bridge_selector"]["bridges"][0]["region"], "r1");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge not discovered: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = focus.get("/about/health").unwrap();
    assert_eq!(status, 200, "{body}");
    // The healthcheck subcommand agrees.
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
        .args(["healthcheck", "--url", &focus.url("/about/health")])
        .status()
        .unwrap();
    assert!(ok.success());

    // The occupant leaves: the bridge is gone.
    jvb_handle.leave_muc(&brewery).await.expect("leave");
    answering.abort();
    let deadline = tokio::time::Instant::now() + WAIT;
    while focus.stats()["bridge_selector"]["bridge_count"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "bridge not removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
        .args(["healthcheck", "--url", &focus.url("/about/health")])
        .status()
        .unwrap();
    assert!(!bad.success());
    // SIGTERM: clean exit.
    let status = focus.terminate().expect("exit status");
    assert!(status.success(), "{status:?}");
}

/// Jicofo is unhealthy until its XMPP connections are up (`JicofoHealthChecker` pings each): with
/// the brewery joined and an operational bridge, `/about/health` still answers 503 naming the
/// component while the component connection cannot reach Prosody, and 200 once it has connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_waits_for_the_component_connection() {
    let prosody = start_prosody();
    // The component connects through a port nothing listens on yet (the focus retries).
    let gate = common::free_port();
    let port = gate.to_string();
    let focus = tokio::task::block_in_place(|| {
        FocusProcess::start(&prosody, &[("XMPP_COMPONENT_PORT", port.as_str())])
    });
    let (_jvb, _brewery, answering) = fake_bridge(&prosody).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = focus.stats();
        if s["bridge_selector"]["operational_bridge_count"] == 1 && s["brewery_joined"] == true {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "bridge not discovered: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still not healthy, and says why — also a while later (the component keeps failing).
    for _ in 0..2 {
        let (status, body) = tokio::task::block_in_place(|| focus.get("/about/health")).unwrap();
        assert_eq!(
            (status, body.trim()),
            (503, "XMPP connection is down: component"),
            "{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, metrics) = tokio::task::block_in_place(|| focus.get("/metrics")).unwrap();
    assert!(metrics.contains("jitsi_jicofo_healthy 0"), "{metrics}");
    // Open the way to Prosody's component port: healthy once the component is connected.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gate))
        .await
        .expect("bind the component gate");
    let upstream = prosody.ports().component;
    let forwarding = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    });
    // The focus's reconnect backoff is at most 10 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let (status, body) = tokio::task::block_in_place(|| focus.get("/about/health")).unwrap();
        if status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still unhealthy with the component reachable: {status} {body}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, metrics) = tokio::task::block_in_place(|| focus.get("/metrics")).unwrap();
    assert!(metrics.contains("jitsi_jicofo_healthy 1"), "{metrics}");
    forwarding.abort();
    answering.abort();
}

#[test]
fn bad_configuration_stops_start_up_naming_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
        .env_clear()
        .env("JICOFO_AUTH_PASSWORD", "x")
        .env("ENABLE_CODEC_VP8", "sometimes")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ENABLE_CODEC_VP8"), "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_focus"))
        .env_clear()
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("JICOFO_AUTH_PASSWORD"));
}

/// docker-jitsi-meet's Prosody reaches the focus through a `client_proxy` component: the conference IQ
/// arrives at `focus@auth…/focus` from `<proxy>/<original JID>`, and the answer to that proxied address
/// must come back to the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conference_requests_through_client_proxy() {
    let prosody = start_prosody_with_client_proxy();
    // No XEP-0114 component: only the client connection.
    let focus = tokio::task::block_in_place(|| FocusProcess::start_with(&prosody, &[], false));
    let alice = TestClient::connect(&prosody, "alice", "alice-pw").await;
    let proxy: Jid = PROXY_DOMAIN.parse().unwrap();
    let room = format!("proxied@{}", prosody.muc_domain());
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        match alice
            .handle
            .iq_set(proxy.clone(), conference_iq(&room), Duration::from_secs(10))
            .await
        {
            Ok(r) if r.payload.as_ref().and_then(|p| p.attr("ready")) == Some("true") => {
                assert_eq!(r.from.as_ref(), Some(&proxy), "answered by the proxy");
                break r.payload.unwrap();
            }
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{other:?}\n{}\n{}",
                    focus.log(),
                    prosody.log_tail(6000)
                );
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    assert_eq!(answer.attr("focusjid"), Some("focus@auth.meet.example"));
    // Errors travel back the same way.
    let e = alice
        .handle
        .iq_set(
            proxy,
            el(r#"<conference xmlns="http://jitsi.org/protocol/focus"/>"#),
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert_eq!(e.condition(), Some(&DefinedCondition::BadRequest), "{e}");
    assert!(focus.log().contains("focus.meet.example") || focus.log().contains(PROXY_DOMAIN));
}

/// docker-jitsi-meet's ENABLE_JVB_XMPP_SERVER: the brewery lives on a separate Prosody, reached over a
/// second client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brewery_on_a_separate_xmpp_server() {
    let prosody = start_prosody();
    let brewery_prosody = testkit::Prosody::start_with(testkit::ProsodyOptions::new("jvb.example"))
        .expect("second Prosody");
    let server = format!("127.0.0.1:{}", brewery_prosody.ports().c2s);
    let env = [
        ("ENABLE_JVB_XMPP_SERVER", "1"),
        ("JVB_XMPP_SERVER", server.as_str()),
        ("JVB_XMPP_AUTH_DOMAIN", brewery_prosody.auth_domain()),
        (
            "JVB_XMPP_INTERNAL_MUC_DOMAIN",
            brewery_prosody.internal_muc_domain(),
        ),
    ];
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &env));
    let brewery = BareJid::new(&format!(
        "jvbbrewery@{}",
        brewery_prosody.internal_muc_domain()
    ))
    .unwrap();
    let (jvb, events) = signaling::xmpp::connect_client(brewery_prosody.jvb_client_config());
    jvb.wait_online(WAIT).await.expect("jvb online");
    drop(events);
    let stats = common::bridge_stats(&[("stress_level", "0.2"), ("drain", "false")]);
    jvb.join_muc(MucJoin::new(brewery, "remote-jvb").with_extra(vec![stats]))
        .await
        .expect("join the brewery");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = focus.stats();
        if s["bridge_selector"]["bridge_count"] == 1 {
            assert!(
                s["bridge_selector"]["bridges"][0]["jid"]
                    .as_str()
                    .unwrap()
                    .ends_with("@internal.auth.jvb.example/remote-jvb"),
                "{s}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{s}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
