//! colibri-ws as the bridge serves it (`bridge/src/colibri_ws.rs`): the real axum router and media
//! task, an endpoint's WebSocket upgrade with its password, then the input as the raw bytes the
//! client sends on the upgraded connection (frames: text, binary, ping, close, fragments — the
//! seeds use zero masking keys so that mutations reach the JSON). Text messages go into the
//! forwarding core as bridge-channel messages of that endpoint. Each input gets its own conference
//! of two endpoints (created and expired with COLIBRI2), so inputs do not share state.
//!
//! Properties: no panic in any task; the upgrade is accepted; the server ends the connection once
//! the client's side is closed (no hang); the media task still answers COLIBRI2 afterwards.
#![no_main]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use bridge::health::HealthRegistry;
use bridge::lifecycle::Admission;
use bridge::media::{MediaHandle, MediaPlane, MediaSettings};
use bridge::sfu::SfuConfig;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use jitsi_rs_fuzz::bridge_plane::create_requests;
use libfuzzer_sys::fuzz_target;
use signaling::colibri2::{Colibri2ErrorResponse, ConferenceModified, ConferenceModify};
use signaling::xml::XmlElement;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

const SERVER_ID: &str = "jvb-fuzz";

struct World {
    rt: Runtime,
    media: MediaHandle,
    router: Router,
    _plane: MediaPlane,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let settings = MediaSettings {
            colibri_ws_base: Some(format!("ws://127.0.0.1/colibri-ws/{SERVER_ID}")),
            ..MediaSettings::loopback(1)
        };
        let plane = rt
            .block_on(MediaPlane::start(
                settings,
                SfuConfig::default(),
                std::sync::Arc::new(HealthRegistry::new()),
            ))
            .expect("media plane");
        let media = plane.handle();
        let router =
            bridge::colibri_ws::router(SERVER_ID.into(), media.clone(), plane.ws_directory());
        World {
            rt,
            media,
            router,
            _plane: plane,
        }
    })
}

async fn colibri(
    media: &MediaHandle,
    xml: &str,
) -> Result<ConferenceModified, Colibri2ErrorResponse> {
    let req = ConferenceModify::from_xml(xml).expect("fixture request parses");
    media.conference_modify(req, Admission::Accept).await.await
}

/// The `/colibri-ws/...?pwd=...` path of endpoint `id` from a COLIBRI2 answer.
fn ws_path(answer: &ConferenceModified, id: &str) -> String {
    let url = answer
        .endpoints
        .iter()
        .find(|e| e.id == id)
        .and_then(|e| e.transport.as_ref())
        .and_then(|t| t.ice_udp.as_ref())
        .and_then(|t| t.web_sockets.first())
        .expect("colibri-ws URL in the answer")
        .clone();
    let at = url.find("/colibri-ws/").expect("colibri-ws path");
    url[at..].to_owned()
}

fuzz_target!(|data: &[u8]| {
    static N: AtomicU64 = AtomicU64::new(0);
    let w = world();
    let n = N.fetch_add(1, Ordering::Relaxed);
    let meeting = format!("fuzz-ws-{n}");
    w.rt.block_on(async {
        let [create_a, add_b] = create_requests(&meeting);
        let answer = colibri(&w.media, &create_a)
            .await
            .expect("fixture conference created");
        colibri(&w.media, &add_b)
            .await
            .expect("fixture second endpoint created");
        let path = ws_path(&answer, "aaaa1111");

        let (mut client, server) = tokio::io::duplex(1 << 20);
        let svc = TowerToHyperService::new(w.router.clone());
        let conn = tokio::spawn(
            hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(server), svc)
                .with_upgrades(),
        );
        let upgrade = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        client.write_all(upgrade.as_bytes()).await.expect("write");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            let got = tokio::time::timeout(Duration::from_secs(5), client.read(&mut b))
                .await
                .expect("upgrade answered in time")
                .expect("read");
            assert!(got == 1, "connection closed before the upgrade answer");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "upgrade refused: {}",
            String::from_utf8_lossy(&head)
        );
        let _ = client.write_all(data).await;
        let _ = client.shutdown().await;
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
            .await
            .expect("the bridge closes the socket once the client is gone")
            .expect("read");
        let _ = conn.await;

        // The media task is alive (it answers, whatever the answer) and has handled everything
        // queued before this request.
        let expire = format!(
            r#"<conference-modify xmlns="jitsi:colibri2" meeting-id="{meeting}" expire="true"/>"#
        );
        if let Err(e) = colibri(&w.media, &expire).await {
            assert_ne!(
                e.text.as_deref(),
                Some("media plane not running"),
                "the media task is gone"
            );
        }
    });
});
