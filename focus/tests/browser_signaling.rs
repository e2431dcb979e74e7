//! Signalling interop with the reference client, without media: lib-jitsi-meet (2021) in Chromium accepts
//! the focus's session-initiate (our codecs, header extensions, SCTP data content, BUNDLE, json-message
//! sources), answers with a session-accept the focus parses, and learns the other participant's sources
//! through source-add.
//!
//! The bridge here stands in for **Jitsi's own JVB** (`common::standin`). What it checks is
//! that the requests the focus derives from a real client's answer have the shape JVB requires (create
//! with ice-controlling + sctp + source-names + media; update with the client's setup=active transport and
//! its complete simulcast source set), so our focus stays a drop-in for Jicofo in front of JVB too. Media
//! end to end with our real bridge is `browser_media`'s job.

mod common;

use std::time::Duration;

use common::browser::Participants;
use common::{FocusProcess, start_prosody};
use signaling::colibri2::Endpoint;
use signaling::ice_udp::Setup;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_signalling_with_lib_jitsi_meet_offer_answer_and_source_add() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));

    // The stand-in bridge.
    let requests = common::standin::join(&prosody).await;

    let mut p = Participants::start(&prosody, "sigroom").await;
    p.join("a").await;
    p.join("b").await;
    let a = p.joined("a").await;
    let b = p.joined("b").await;

    // Each learns the other's audio and video tracks: from the session-initiate (whoever accepted
    // first) or a later source-add.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(45);
    loop {
        let s = p.stats().await;
        let has = |me: &str, other: &str| {
            ["audio", "video"]
                .iter()
                .all(|t| !s[me]["remote"][other][t]["ssrc"].is_null())
        };
        if has("a", &b) && has("b", &a) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "remote tracks not signalled: {s}\n{}",
            focus.log()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The stand-in saw: two allocations (one creating the conference) with ICE-controlling transport,
    // SCTP, the source-names capability, and media; then updates with each client's transport and
    // simulcast sources.
    let reqs = requests.lock().unwrap().clone();
    let allocs: Vec<&Endpoint> = reqs
        .iter()
        .flat_map(|r| r.endpoints.iter())
        .filter(|e| e.create)
        .collect();
    assert_eq!(allocs.len(), 2, "{reqs:?}");
    assert_eq!(reqs.iter().filter(|r| r.create).count(), 1);
    for e in &allocs {
        let t = e.transport.as_ref().unwrap();
        assert!(t.ice_controlling && t.sctp.is_some());
        assert!(e.has_capability("source-names"));
        assert_eq!(e.media.len(), 2);
    }
    for id in [&a, &b] {
        let update = reqs
            .iter()
            .flat_map(|r| r.endpoints.iter())
            .find(|e| &e.id == id && !e.create && e.transport.is_some())
            .unwrap_or_else(|| panic!("no transport update for {id}: {reqs:?}"));
        let ice = update.transport.as_ref().unwrap().ice_udp.as_ref().unwrap();
        assert!(ice.ufrag.is_some() && ice.pwd.is_some());
        assert_eq!(ice.fingerprint().unwrap().setup, Some(Setup::Active));
        let sources = update.sources.as_ref().expect("sources with the transport");
        let video = sources
            .media_sources
            .iter()
            .find(|m| m.media_type == signaling::rtp_description::MediaType::Video)
            .expect("video media-source");
        // Chrome's simulcast: 3 SIM layers each with RTX.
        assert_eq!(video.sources.len(), 6, "{video:?}");
        assert!(
            video
                .ssrc_groups
                .iter()
                .any(|g| g.semantics == signaling::sources::Semantics::Sim)
        );
    }
    let stats = focus.stats();
    assert_eq!(stats["participants"], 2);
    assert_eq!(stats["bridge_selector"]["bridge_count"], 1);
    p.quit().await;
}
