//! A stand-in for **Jitsi's own JVB** on the signalling level, which cannot run on this machine (no
//! Maven Central): a brewery occupant that records every COLIBRI2 request and answers with a
//! syntactically valid transport whose candidate nobody serves, so ICE never completes and no media
//! flows, plus the bridge's feedback sources (`jvb-a0`, `jvb-v0`) as JVB sends them; an in-place ICE
//! restart is answered with a new transport tagged `ice-generation`. Media end to end
//! with our real bridge is what `BridgeProcess` is for.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use minidom::Element;
use signaling::colibri2::{
    ConferenceModified, ConferenceModify, Endpoint, MediaSource, Sctp, Sources, Transport,
};
use signaling::ice_udp::{Candidate, Fingerprint, IceUdpTransport, Setup};
use signaling::ns;
use signaling::rtp_description::MediaType;
use signaling::sources::Source;
use signaling::xml::XmlElement;
use signaling::xmpp::{BareJid, Event, MucJoin};
use testkit::Prosody;

use super::{TestClient, WAIT};

/// The COLIBRI2 requests the stand-in received, in order.
pub type Requests = Arc<Mutex<Vec<ConferenceModify>>>;

fn transport(n: usize) -> IceUdpTransport {
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

/// Answers COLIBRI2 like a bridge (no media).
fn answer(req: &ConferenceModify, n: usize) -> Element {
    let mut out = ConferenceModified::default();
    for ep in req.endpoints.iter().filter(|e| e.create) {
        let mut e = Endpoint::new(ep.id.clone());
        e.transport = Some(Transport {
            ice_udp: Some(transport(n)),
            sctp: Some(Sctp {
                port: Some(5000),
                role: None,
            }),
            ..Transport::default()
        });
        out.endpoints.push(e);
    }
    // An in-place ICE restart (as JVB with ICE connected): a new agent's transport, tagged with its
    // generation (the request count: increasing).
    for ep in req
        .endpoints
        .iter()
        .filter(|e| e.transport.as_ref().is_some_and(|t| t.ice_restart))
    {
        let mut e = Endpoint::new(ep.id.clone());
        e.transport = Some(Transport {
            ice_udp: Some(IceUdpTransport {
                ice_generation: Some(n as u32),
                ..transport(n)
            }),
            ..Transport::default()
        });
        out.endpoints.push(e);
    }
    if req.create || req.endpoints.iter().any(|e| e.create) {
        let mut a = MediaSource::new(MediaType::Audio, "jvb-a0");
        a.sources.push(Source::named(1111, "jvb-a0"));
        let mut v = MediaSource::new(MediaType::Video, "jvb-v0");
        v.sources.push(Source::named(2222, "jvb-v0"));
        out.sources = Some(Sources {
            media_sources: vec![a, v],
        });
    }
    out.to_element()
}

/// Joins the brewery of `prosody` as the stand-in bridge `standin` and serves it in the background;
/// returns what it records.
pub async fn join(prosody: &Prosody) -> Requests {
    let brewery = BareJid::new(&format!("jvbbrewery@{}", prosody.internal_muc_domain())).unwrap();
    let jvb = TestClient::connect(prosody, "jvb", testkit::JVB_PASSWORD).await;
    let stats = super::bridge_stats(&[
        ("stress_level", "0.1"),
        ("drain", "false"),
        ("version", "1.0"),
    ]);
    jvb.handle
        .join_muc(MucJoin::new(brewery, "standin").with_extra(vec![stats]))
        .await
        .unwrap();
    let requests: Requests = Arc::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        // The session lives as long as this task (dropping the handle would close it).
        let TestClient {
            handle: _handle,
            mut events,
        } = jvb;
        let mut n = 0;
        while let Some(ev) = events.recv().await {
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
    requests
}

/// Waits until the stand-in has recorded a request `pick` accepts.
pub async fn wait_for_request(requests: &Requests, what: &str, pick: impl Fn(&Endpoint) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if requests
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.endpoints.iter().any(&pick))
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stand-in bridge never saw {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
