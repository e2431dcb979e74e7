//! Signalling interop with the reference client, without media: lib-jitsi-meet (2021) in Chromium accepts
//! the focus's session-initiate (our codecs, header extensions, SCTP data content, BUNDLE, json-message
//! sources), answers with a session-accept the focus parses, and learns the other participant's sources
//! through source-add.
//!
//! The bridge here stands in for **Jitsi's own JVB**, which cannot run on this machine (no Maven
//! Central): a brewery occupant that records every COLIBRI2 request and answers with a syntactically valid
//! transport whose candidate nobody serves, so ICE never completes and no media flows. What it checks is
//! that the requests the focus derives from a real client's answer have the shape JVB requires (create
//! with ice-controlling + sctp + source-names + media; update with the client's setup=active transport and
//! its complete simulcast source set), so our focus stays a drop-in for Jicofo in front of JVB too. Media
//! end to end with our real bridge is `browser_media`'s job.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::browser::Participants;
use common::{FocusProcess, TestClient, start_prosody};
use minidom::Element;
use signaling::colibri2::{
    ConferenceModified, ConferenceModify, Endpoint, Sctp, Sources, Transport,
};
use signaling::ice_udp::{Candidate, Fingerprint, IceUdpTransport, Setup};
use signaling::ns;
use signaling::sources::Source;
use signaling::xml::{Builder, XmlElement};
use signaling::xmpp::{BareJid, Event, MucJoin};

fn bridge_transport(n: usize) -> IceUdpTransport {
    // A UDP port nobody listens on (bound, then released).
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(9);
    IceUdpTransport {
        ufrag: Some(format!("standin{n}")),
        pwd: Some("standinpasswordstandinpw".into()),
        rtcp_mux: true,
        fingerprints: vec![Fingerprint {
            hash: "sha-256".into(),
            setup: Some(Setup::Actpass),
            cryptex: false,
            value: (0..32)
                .map(|i| format!("{:02X}", i * 7 % 256))
                .collect::<Vec<_>>()
                .join(":"),
        }],
        candidates: vec![Candidate::host_udp(
            "1",
            "c1",
            "127.0.0.1".parse().expect("ip"),
            port,
            2_130_706_431,
        )],
        web_sockets: Vec::new(),
        sctpmap: None,
        ice_generation: None,
    }
}

/// Answers COLIBRI2 like a bridge (no media) and records every request.
fn answer(req: &ConferenceModify, n: usize) -> Element {
    let mut out = ConferenceModified::default();
    for ep in req.endpoints.iter().filter(|e| e.create) {
        let mut e = Endpoint::new(ep.id.clone());
        e.transport = Some(Transport {
            ice_udp: Some(bridge_transport(n)),
            sctp: Some(Sctp {
                port: Some(5000),
                role: None,
            }),
            ..Transport::default()
        });
        out.endpoints.push(e);
    }
    if req.create || req.endpoints.iter().any(|e| e.create) {
        let mut a = signaling::colibri2::MediaSource::new(
            signaling::rtp_description::MediaType::Audio,
            "jvb-a0",
        );
        a.sources.push(Source::named(1111, "jvb-a0"));
        let mut v = signaling::colibri2::MediaSource::new(
            signaling::rtp_description::MediaType::Video,
            "jvb-v0",
        );
        v.sources.push(Source::named(2222, "jvb-v0"));
        out.sources = Some(Sources {
            media_sources: vec![a, v],
        });
    }
    out.to_element()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_signalling_with_lib_jitsi_meet_offer_answer_and_source_add() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));

    // The stand-in bridge.
    let brewery = BareJid::new(&format!("jvbbrewery@{}", prosody.internal_muc_domain())).unwrap();
    let mut jvb = TestClient::connect(&prosody, "jvb", testkit::JVB_PASSWORD).await;
    let stats = Builder::new("stats", signaling::ns::COLIBRI)
        .children(
            [
                ("stress_level", "0.1"),
                ("drain", "false"),
                ("version", "1.0"),
            ]
            .map(|(n, v)| {
                Builder::new("stat", signaling::ns::COLIBRI)
                    .attr("name", n)
                    .attr("value", v)
                    .build()
            }),
        )
        .build();
    jvb.handle
        .join_muc(MucJoin::new(brewery, "standin").with_extra(vec![stats]))
        .await
        .unwrap();
    let requests: Arc<Mutex<Vec<ConferenceModify>>> = Arc::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(ev) = jvb.events.recv().await {
            let Event::IqRequest(iq) = ev else { continue };
            if iq.is("healthcheck", ns::HEALTHCHECK) {
                iq.reply_result(None);
            } else if iq.is("conference-modify", ns::COLIBRI2) {
                match ConferenceModify::from_element(&iq.payload) {
                    Ok(req) => {
                        n += 1;
                        let reply = answer(&req, n);
                        seen.lock().unwrap().push(req);
                        iq.reply_result(Some(reply));
                    }
                    Err(e) => panic!("focus sent an unparsable conference-modify: {e}"),
                }
            }
        }
    });

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
