//! Moderation on the wire, with real Prosody and the `focus` binary: mute IQs from room occupants and
//! A/V moderation messages from an `av_moderation` component (a test component standing in for
//! jitsi-meet's `mod_av_moderation_component`, which Debian's Prosody lacks, sending what it sends).

mod common;

use std::time::Duration;

use common::{FocusProcess, TestClient, WAIT, el};
use signaling::ns;
use signaling::xmpp::{BareJid, ComponentConfig, DefinedCondition, Event, Jid, connect_component};
use testkit::{Prosody, ProsodyOptions};

const AV_DOMAIN: &str = "avmoderation.meet.example";
const AV_SECRET: &str = "av-moderation-secret";

fn prosody_with_av_component() -> Prosody {
    common::init_tracing();
    let mut opts = ProsodyOptions::new("meet.example")
        .user("alice", "auth.meet.example", "alice-pw")
        .user("bob", "auth.meet.example", "bob-pw");
    opts.extra_global_config =
        format!("Component \"{AV_DOMAIN}\"\n  component_secret = \"{AV_SECRET}\"\n");
    Prosody::start_with(opts).expect("start Prosody (run scripts/install-deps.sh)")
}

fn mute(room: &str, ns_media: &str, target: &str, on: bool) -> minidom::Element {
    el(&format!(
        r#"<mute xmlns="http://jitsi.org/jitmeet/{ns_media}" jid="{room}/{target}">{on}</mute>"#
    ))
}

/// Waits for the focus's mute notice (an IQ set from the room's `focus` occupant).
async fn mute_notice(client: &mut TestClient, room: &str) -> minidom::Element {
    let focus = format!("{room}/focus");
    client
        .wait_for("mute notice from the focus", |ev| match ev {
            Event::IqRequest(iq)
                if iq.is("mute", "http://jitsi.org/jitmeet/audio")
                    && iq.from.as_ref().map(|f| f.to_string()) == Some(focus.clone()) =>
            {
                Some(iq.payload.clone())
            }
            _ => None,
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_requests_and_av_moderation_messages_over_xmpp() {
    let prosody = prosody_with_av_component();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let room = format!("moderated@{}", prosody.muc_domain());
    let focus_occupant: Jid = format!("{room}/focus").parse().unwrap();
    let alice = TestClient::connect(&prosody, "alice", "alice-pw").await;
    let mut bob = TestClient::connect(&prosody, "bob", "bob-pw").await;
    alice.enter(&prosody, &room, "aaaa1111", Vec::new()).await;
    bob.enter(&prosody, &room, "bbbb2222", Vec::new()).await;
    // Both are participants; alice (first) is the owner.
    let deadline = tokio::time::Instant::now() + WAIT;
    while focus.stats()["participants"] != 2 {
        assert!(tokio::time::Instant::now() < deadline, "{}", focus.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ask = |client: &TestClient, payload: minidom::Element| {
        let h = client.handle.clone();
        let to = focus_occupant.clone();
        async move { h.iq_set(to, payload, Duration::from_secs(10)).await }
    };

    // bob, not a moderator, may not mute alice: not-allowed.
    let r = ask(&bob, mute(&room, "audio", "aaaa1111", true)).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.condition()),
        Some(&DefinedCondition::NotAllowed),
        "{r:?}"
    );
    // alice (owner, granted by the focus) mutes bob: result, and bob is told who did it.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ask(&alice, mute(&room, "audio", "bbbb2222", true)).await {
            Ok(_) => break,
            // Until the owner grant reached Prosody.
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let notice = mute_notice(&mut bob, &room).await;
    assert_eq!(notice.text(), "true");
    assert_eq!(
        notice.attr("actor"),
        Some(format!("{room}/aaaa1111").as_str())
    );
    // bob may unmute himself.
    assert!(
        ask(&bob, mute(&room, "audio", "bbbb2222", false))
            .await
            .is_ok()
    );

    // The av_moderation component: alice enabled audio moderation; the focus mutes bob...
    let (av, _av_events) = connect_component(ComponentConfig::new(
        BareJid::new(AV_DOMAIN).unwrap(),
        AV_SECRET,
        prosody.component_addr(),
    ));
    av.wait_online(WAIT).await.expect("component online");
    let send = |json: String| {
        let av = av.clone();
        async move {
            av.send_element(
                signaling::xml::Builder::new("message", ns::JABBER_CLIENT)
                    .attr("from", AV_DOMAIN)
                    .attr("to", "focus@auth.meet.example/focus")
                    .child(
                        signaling::xml::Builder::new("json-message", ns::JITMEET)
                            .text(json)
                            .build(),
                    )
                    .build(),
            )
            .await
            .expect("send");
        }
    };
    send(format!(
        r#"{{"type":"av_moderation","room":"{room}","enabled":true,"mediaType":"audio","actor":"{room}/aaaa1111"}}"#
    ))
    .await;
    let notice = mute_notice(&mut bob, &room).await;
    assert_eq!(notice.text(), "true");
    // ...who may not unmute himself any more,
    let r = ask(&bob, mute(&room, "audio", "bbbb2222", false)).await;
    assert_eq!(
        r.as_ref().err().and_then(|e| e.condition()),
        Some(&DefinedCondition::NotAllowed),
        "{r:?}"
    );
    // until a moderator approves him.
    send(format!(
        r#"{{"type":"av_moderation","room":"{room}","whitelists":{{"audio":["{room}/bbbb2222"]}}}}"#
    ))
    .await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match ask(&bob, mute(&room, "audio", "bbbb2222", false)).await {
            Ok(_) => break,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
