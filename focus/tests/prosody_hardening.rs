//! Issue 11 against a real Prosody and the `focus` binary: what an anonymous client can no longer do to
//! the focus (the brewery-room request, rooms outside the conference service, `<stats>` presence in
//! the brewery), the focus back in the brewery after being thrown out, and the HTTP conference request
//! of issue 13.

mod common;

use std::time::Duration;

use common::{FocusProcess, TestClient, WAIT, start_prosody};
use service::http_request;
use signaling::ns;
use signaling::xml::Builder;
use signaling::xmpp::{BareJid, Event, Jid, MucJoin, XmppHandle};
use testkit::Prosody;

fn brewery(prosody: &Prosody) -> BareJid {
    BareJid::new(&format!("jvbbrewery@{}", prosody.internal_muc_domain())).unwrap()
}

fn stats(region: &str) -> minidom::Element {
    common::bridge_stats(&[
        ("stress_level", "0.1"),
        ("drain", "false"),
        ("region", region),
    ])
}

/// A bridge account in the brewery answering health checks, as our bridge does.
async fn fake_bridge(
    prosody: &Prosody,
    nick: &str,
    region: &str,
) -> (XmppHandle, tokio::task::JoinHandle<()>) {
    let mut jvb = TestClient::connect(prosody, "jvb", testkit::JVB_PASSWORD).await;
    jvb.handle
        .join_muc(MucJoin::new(brewery(prosody), nick).with_extra(vec![stats(region)]))
        .await
        .expect("bridge joins the brewery");
    let handle = jvb.handle.clone();
    let task = tokio::spawn(async move {
        while let Some(ev) = jvb.events.recv().await {
            if let Event::IqRequest(iq) = ev
                && iq.is("healthcheck", ns::HEALTHCHECK)
            {
                iq.reply_result(None);
            }
        }
    });
    (handle, task)
}

async fn wait_stats(focus: &FocusProcess, what: &str, ok: impl Fn(&serde_json::Value) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = tokio::task::block_in_place(|| focus.stats());
        if ok(&s) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {s}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The account of issue 11: an anonymous request for `jvbbrewery@<internal MUC>` used to make the focus
/// leave the brewery after 15 s (every later conference without media). Now it — and any room
/// outside the conference MUC service — gets an XMPP error at once, and the focus stays in the brewery
/// with its bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_the_brewery_and_foreign_rooms_are_refused_and_the_focus_keeps_its_bridge() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let (_jvb, _answering) = fake_bridge(&prosody, "jvb-1", "r1").await;
    wait_stats(&focus, "bridge discovered", |s| {
        s["bridge_selector"]["operational_bridge_count"] == 1
    })
    .await;
    let mallory = TestClient::anonymous(&prosody).await;
    for room in [
        brewery(&prosody).to_string(),
        format!("other@{}", prosody.internal_muc_domain()),
        "room1@conference.elsewhere.example".to_owned(),
        format!("room1@{}", prosody.domain()),
    ] {
        let took = mallory.conference_forbidden(&prosody, &room).await;
        assert!(took < Duration::from_secs(5), "answered at once");
    }
    // Past the join timeout the old bug would have struck: still in the brewery, bridge healthy.
    tokio::time::sleep(Duration::from_secs(17)).await;
    let s = tokio::task::block_in_place(|| focus.stats());
    assert_eq!(s["brewery_joined"], true, "{s}");
    assert_eq!(s["bridge_selector"]["operational_bridge_count"], 1, "{s}");
    assert_eq!(s["total_conference_requests_refused"], 4, "{s}");
    assert_eq!(s["conferences"], 0, "{s}");
    let (status, body) = tokio::task::block_in_place(|| focus.get("/about/health")).unwrap();
    assert_eq!(status, 200, "{body}");
    // A real conference still works.
    let ready = mallory
        .conference_request(&prosody, &format!("fine@{}", prosody.muc_domain()))
        .await
        .expect("conference answer")
        .expect("payload");
    assert_eq!(ready.attr("ready"), Some("true"));
    let (_, metrics) = tokio::task::block_in_place(|| focus.get("/metrics")).unwrap();
    assert!(
        metrics.contains("jitsi_jicofo_conference_requests_refused_total 4"),
        "{metrics}"
    );
}

/// An occupant of the brewery that is not a bridge account (here an anonymous user, which this test
/// Prosody lets in) publishing `<stats>` is not taken for a bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_presence_from_an_anonymous_brewery_occupant_is_not_a_bridge() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let (_jvb, _answering) = fake_bridge(&prosody, "jvb-1", "r1").await;
    wait_stats(&focus, "bridge discovered", |s| {
        s["bridge_selector"]["bridge_count"] == 1
    })
    .await;
    let mallory = TestClient::anonymous(&prosody).await;
    mallory
        .handle
        .join_muc(MucJoin::new(brewery(&prosody), "fake-jvb").with_extra(vec![stats("r9")]))
        .await
        .expect("this test Prosody lets anonymous users into the brewery");
    wait_stats(&focus, "untrusted presence counted", |s| {
        s["total_untrusted_brewery_presences"].as_u64() >= Some(1)
    })
    .await;
    let s = tokio::task::block_in_place(|| focus.stats());
    assert_eq!(s["bridge_selector"]["bridge_count"], 1, "{s}");
    assert!(
        s["bridge_selector"]["bridges"][0]["jid"]
            .as_str()
            .unwrap()
            .ends_with("/jvb-1"),
        "{s}"
    );
}

/// The brewery is destroyed under the focus (as a kick or a Prosody-side reset does): the focus
/// joins again on its own and sees the bridge's new presence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_focus_joins_the_brewery_again_after_being_thrown_out() {
    let prosody = start_prosody();
    // alice creates the brewery first, so she owns it and can destroy it.
    let alice = TestClient::connect(&prosody, "alice", "alice-pw").await;
    alice
        .handle
        .join_muc(MucJoin::new(brewery(&prosody), "alice"))
        .await
        .expect("alice creates the brewery");
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let (jvb, _answering) = fake_bridge(&prosody, "jvb-1", "r1").await;
    wait_stats(&focus, "bridge discovered", |s| {
        s["bridge_selector"]["bridges"][0]["region"] == "r1"
    })
    .await;
    let destroy = Builder::new("query", "http://jabber.org/protocol/muc#owner")
        .child(Builder::new("destroy", "http://jabber.org/protocol/muc#owner").build())
        .build();
    alice
        .handle
        .iq_set(
            Jid::from(brewery(&prosody)),
            destroy,
            Duration::from_secs(10),
        )
        .await
        .expect("alice destroys the brewery");
    // The bridge (as ours does) joins again, with new stats; only a focus that is back in the room
    // sees them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = jvb.leave_muc(&brewery(&prosody)).await;
    jvb.join_muc(MucJoin::new(brewery(&prosody), "jvb-1").with_extra(vec![stats("r2")]))
        .await
        .expect("bridge joins again");
    wait_stats(
        &focus,
        "focus back in the brewery, seeing the bridge's new stats",
        |s| {
            s["brewery_joined"] == true
                && s["total_brewery_rejoins"] == 1
                && s["bridge_selector"]["bridges"][0]["region"] == "r2"
        },
    )
    .await;
}

/// `POST /conference-request/v1` answers as Jicofo does: the JSON conference answer once the room is
/// joined, 400 with Jicofo's texts for bad bodies and refused rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_conference_request() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let url = focus.url("/conference-request/v1");
    let room = format!("viahttp@{}", prosody.muc_domain());
    let body = format!(
        r#"{{"room":"{room}","machineUid":"m-1","properties":{{"startAudioMuted":9,"rtcstatsEnabled":false,"visitors-version":1}}}}"#
    );
    let post = |body: &str| {
        let url = url.clone();
        let body = body.to_owned();
        tokio::task::block_in_place(move || {
            http_request(
                "POST",
                &url,
                Some(("application/json", body.as_bytes())),
                Duration::from_secs(30),
            )
            .expect("HTTP answer")
        })
    };
    // While the focus's XMPP client comes up the answer may be "not ready" (the client retries).
    let deadline = tokio::time::Instant::now() + WAIT;
    let answer = loop {
        let r = post(&body);
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_str(&r.text()).expect("JSON");
        if v["ready"] == true {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{v}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(answer["room"], room.as_str());
    assert_eq!(answer["focusJid"], "focus@auth.meet.example");
    assert_eq!(answer["properties"]["authentication"], "false");
    // The room exists and the focus is in it.
    let mut alice = TestClient::connect(&prosody, "alice", "alice-pw").await;
    let room_jid = BareJid::new(&room).unwrap();
    alice
        .handle
        .join_muc(MucJoin::new(room_jid, "aaaa1111"))
        .await
        .expect("alice joins");
    let focus_occupant = format!("{room}/focus");
    alice
        .wait_for("focus in the room", |ev| match ev {
            Event::Presence(p)
                if p.from.as_ref().map(|f| f.to_string()) == Some(focus_occupant.clone()) =>
            {
                Some(())
            }
            _ => None,
        })
        .await;
    // Errors.
    for (body, text) in [
        ("{", "Bad request: "),
        ("{}", "Bad request: No 'room' specified."),
        (
            r#"{"room":"nolocalpart"}"#,
            "Bad request: Invalid room name",
        ),
        (
            &format!(
                r#"{{"room":"jvbbrewery@{}"}}"#,
                prosody.internal_muc_domain()
            ),
            "Bad request: forbidden",
        ),
    ] {
        let r = post(body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().starts_with(text), "{body}: {}", r.text());
    }
    // The CORS pre-flight.
    let r = tokio::task::block_in_place(|| {
        http_request("OPTIONS", &url, None, Duration::from_secs(5)).expect("answer")
    });
    assert_eq!(r.status, 200);
}
