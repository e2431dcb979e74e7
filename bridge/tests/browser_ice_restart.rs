//! The in-place ICE restart with a real browser (issue 10, item 6): the real `bridge` binary, this
//! test as the focus over a real Prosody (COLIBRI2, as in browser_bridge.rs) and two headless
//! Chromium participants (e2e/pages/bridge-peer.html) in a call. Then what the current
//! lib-jitsi-meet and Jicofo do for `session-info <bridge-session ice-restart="true">`:
//!
//! 1. the focus asks the bridge: `<transport ice-restart="true"/>` for A — the answer carries a new
//!    ufrag and pwd, the same DTLS fingerprint and `ice-generation` 1;
//! 2. A applies it as lib-jitsi-meet applies a `transport-info` with a new generation
//!    (`JingleSessionPC.onBridgeIceRestartTransport`): the remote offer with the new credentials and
//!    no candidates, answered (Chromium restarts ICE and rotates its own credentials), then the
//!    bridge's candidates added;
//! 3. A's new credentials go to the bridge tagged `ice-generation` 1 (its `transport-info` relayed).
//!
//! Asserted: A's selected candidate pair moves to the bridge's new ufrag (getStats); media keeps
//! flowing both ways across the restart (frames decoded at both receivers, no gap over
//! [`MAX_GAP`] in media time); A's DTLS transport never leaves `connected` and the bridge logs one
//! DTLS handshake for A; the bridge counts the restart as started and succeeded
//! (`/colibri/stats`, `/metrics`). Media stays on 127.0.0.1, so Chromium runs with
//! `--allow-loopback-in-peer-connection`, as in browser_bridge.rs.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use common::*;
use serde_json::{Value, json};
use signaling::colibri2::{ConferenceModified, Endpoint, Transport};
use signaling::ice_udp::IceUdpTransport;
use testkit::Prosody;

/// The longest pause allowed between two decoded frames of a remote video across the restart.
const MAX_GAP: Duration = Duration::from_secs(1);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The largest gap between consecutive decoded frames of each remote track, in media time and
/// wall clock, and the frame count.
fn gaps(frames: &Value) -> Vec<(String, Duration, Duration, usize)> {
    let mut by_track: std::collections::BTreeMap<String, Vec<(u64, i64)>> = Default::default();
    for f in frames.as_array().into_iter().flatten() {
        by_track
            .entry(f["id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push((f["t"].as_u64().unwrap_or(0), f["ts"].as_i64().unwrap_or(0)));
    }
    by_track
        .into_iter()
        .map(|(id, v)| {
            let media = v
                .windows(2)
                .map(|w| w[1].1.saturating_sub(w[0].1).max(0) as u64)
                .max()
                .unwrap_or(0);
            let wall = v
                .windows(2)
                .map(|w| w[1].0.saturating_sub(w[0].0))
                .max()
                .unwrap_or(0);
            (
                id,
                Duration::from_micros(media),
                Duration::from_millis(wall),
                v.len(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_ice_restart_keeps_media_and_dtls() -> Result<()> {
    with_bridge("AEAD_AES_128_GCM", async |prosody, bridge, _| {
        restart_call(prosody, bridge).await
    })
    .await
}

async fn restart_call(prosody: &Prosody, bridge: &BridgeProc) -> Result<()> {
    let focus = Focus::in_brewery(prosody).await?;
    let mut peers = Peers::start().await?;
    peers.open("a").await?;
    peers.open("b").await?;
    let (ep_a, ep_b) = ("aaaa1111", "bbbb2222");
    let meeting = uuid_like();
    let call = two_party_call(&focus, &mut peers, &meeting, (ep_a, ep_b)).await?;
    let (ta, rta, sa, sb) = (call.ta, call.rta, call.sa, call.sb);
    let ice = |m: &ConferenceModified, id: &str| answered_ice(m, id);
    let decodes = |p: &Peers, me: &str, other: &PeerSources| {
        field(&p.stats(me), other.video, "framesDecoded") >= 10
    };
    peers
        .wait(
            Duration::from_secs(40),
            "each browser decoding the other's video",
            |p| decodes(p, "a", &sb) && decodes(p, "b", &sa),
        )
        .await?;
    let old_ufrag = ta.ufrag.clone().context("ufrag")?;
    let before = peers.fresh_stats("a", SystemTime::now()).await?;
    ensure!(
        before["pair"]["remoteUfrag"] == old_ufrag.as_str(),
        "A's selected pair before the restart: {}",
        before["pair"]
    );
    for p in ["a", "b"] {
        let n = peers.call(p, "startFrameLog", Value::Null).await?;
        // Its own video m-line's receiver (nothing arrives there) and the other's video.
        ensure!(n.as_u64() >= Some(1), "{p}: remote video tracks {n}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. The focus asks the bridge to restart A's ICE.
    let t_restart = now_ms();
    let started = Instant::now();
    let mut req = Endpoint::new(ep_a);
    req.transport = Some(Transport {
        ice_restart: true,
        ..Transport::default()
    });
    let m = focus
        .colibri_ok(&modify(&meeting, false, vec![req]))
        .await?;
    let new = ice(&m, ep_a)?;
    ensure!(new.ice_generation == Some(1), "generation: {new:?}");
    let (new_ufrag, new_pwd) = (
        new.ufrag.clone().context("new ufrag")?,
        new.pwd.clone().context("new pwd")?,
    );
    ensure!(new_ufrag != old_ufrag && Some(&new_pwd) != ta.pwd.as_ref());
    ensure!(
        new.fingerprints == ta.fingerprints,
        "the fingerprint must stay: {:?} / {:?}",
        new.fingerprints,
        ta.fingerprints
    );
    ensure!(
        !new.candidates.is_empty(),
        "restart answer without candidates"
    );

    // 2. A applies it as lib-jitsi-meet does.
    let candidates: Vec<String> = new
        .candidates
        .iter()
        .map(|c| {
            format!(
                "candidate:{} {} {} {} {} {} typ {} generation 0",
                c.foundation, c.component, c.protocol, c.priority, c.ip, c.port, c.candidate_type
            )
        })
        .collect();
    let sdp = peers
        .call(
            "a",
            "iceRestart",
            json!({"ufrag": new_ufrag, "pwd": new_pwd, "candidates": candidates}),
        )
        .await?;
    let sdp = sdp.as_str().context("local description")?;
    let field_of = |prefix: &str| {
        sdp.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
    };
    let (a_ufrag, a_pwd) = (
        field_of("a=ice-ufrag:").context("ufrag")?,
        field_of("a=ice-pwd:").context("pwd")?,
    );
    ensure!(
        Some(&a_ufrag) != rta.ufrag.as_ref(),
        "Chromium did not rotate its credentials"
    );

    // 3. A's new credentials to the bridge, tagged with the generation (its transport-info).
    let mut answer = Endpoint::new(ep_a);
    answer.transport = Some(Transport {
        ice_udp: Some(IceUdpTransport {
            ufrag: Some(a_ufrag),
            pwd: Some(a_pwd),
            rtcp_mux: true,
            fingerprints: rta.fingerprints.clone(),
            ice_generation: Some(1),
            ..IceUdpTransport::default()
        }),
        ..Transport::default()
    });
    let m = focus
        .colibri_ok(&modify(&meeting, false, vec![answer]))
        .await?;
    ensure!(
        ice(&m, ep_a).is_err(),
        "a transport update answers no transport"
    );

    // The browser's selected pair moves to the bridge's new credentials.
    peers
        .wait(
            Duration::from_secs(10),
            "A's selected pair on the bridge's new ufrag",
            |p| p.stats("a")["pair"]["remoteUfrag"] == new_ufrag.as_str(),
        )
        .await?;
    eprintln!(
        "A's selected pair moved to the new generation {:?} after the restart request",
        started.elapsed()
    );
    // Past the old generation's transition window (3 s): media must go on on the new pair.
    let (fa0, fb0) = (
        field(&peers.stats("a"), sb.video, "framesDecoded"),
        field(&peers.stats("b"), sa.video, "framesDecoded"),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = peers.fresh_stats("a", SystemTime::now()).await?;
    ensure!(
        after["pair"]["remoteUfrag"] == new_ufrag.as_str(),
        "A's pair after the window: {}",
        after["pair"]
    );
    eprintln!(
        "A's selected pair before: {}, after: {}",
        before["pair"], after["pair"]
    );
    let (fa1, fb1) = (
        field(&after, sb.video, "framesDecoded"),
        field(&peers.stats("b"), sa.video, "framesDecoded"),
    );
    ensure!(
        fa1 >= fa0 + 50 && fb1 >= fb0 + 50,
        "media after the restart: A decoded {} and B {} frames in 5 s",
        fa1 - fa0,
        fb1 - fb0
    );

    // No gap over MAX_GAP in either direction from 2 s before the restart to now.
    for p in ["a", "b"] {
        let frames = peers
            .call(p, "framesSince", json!(t_restart - 2000))
            .await?;
        let g = gaps(&frames);
        ensure!(g.len() == 1, "{p}: decoded frames of {} tracks", g.len());
        for (id, media, wall, n) in g {
            eprintln!(
                "{p} decoded {n} frames of {id} across the restart: largest gap {media:?} media \
                 time, {wall:?} wall clock"
            );
            ensure!(
                media <= MAX_GAP && n > 100,
                "{p}: gap {media:?} over {n} frames"
            );
        }
    }
    // DTLS untouched: A's DTLS transport stayed connected, the bridge did one handshake for A.
    let st = peers.stats("a");
    ensure!(
        st["dtls"]["state"] == "connected",
        "A's DTLS: {}",
        st["dtls"]
    );
    let log = peers_dtls_log(&mut peers).await?;
    ensure!(
        log.iter().all(|s| s == "connected") && !log.is_empty(),
        "A's DTLS transport states since before the restart: {log:?}"
    );
    let handshakes = bridge
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("DTLS connected") && l.contains(ep_a))
        .count();
    ensure!(
        handshakes == 1,
        "the bridge logged {handshakes} DTLS handshakes for A"
    );

    // Counted as JVB counts them.
    let mut stats = Value::Null;
    for _ in 0..20 {
        stats = bridge.colibri_stats().await?;
        if stats["total_ice_restarts_succeeded"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ensure!(
        stats["total_ice_restarts_started"] == 1
            && stats["total_ice_restarts_succeeded"] == 1
            && stats["total_ice_restarts_failed"] == 0
            && stats["dtls_failed_endpoints"] == 0,
        "/colibri/stats: {stats:#}"
    );
    let metrics = bridge.get("/metrics").await?.text();
    ensure!(
        metrics
            .lines()
            .any(|l| l == "jitsi_jvb_ice_restarts_succeeded_total 1"),
        "/metrics has no jitsi_jvb_ice_restarts_succeeded_total 1"
    );
    peers.quit().await;
    Ok(())
}

/// A's DTLS transport states logged since `startFrameLog`.
async fn peers_dtls_log(peers: &mut Peers) -> Result<Vec<String>> {
    let v = peers.call("a", "dtlsStates", Value::Null).await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect())
}
