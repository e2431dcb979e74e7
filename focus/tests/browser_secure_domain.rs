//! Secure domain end to end, as docker-jitsi-meet runs it with `ENABLE_AUTH=1 AUTH_TYPE=internal
//! ENABLE_GUESTS=1`: Prosody with a password-checked VirtualHost and an anonymous guest host, the
//! `focus` and `bridge` binaries, lib-jitsi-meet (2021) in headless Chromium. A guest alone waits for
//! the host (the focus does not create the room for it); a wrong password is refused by Prosody; the
//! host logs in and the focus creates the room and makes it the moderator; the guest is then in, with
//! media both ways.

mod common;

use std::time::{Duration, Instant};

use common::browser::{Participants, wait_media};
use common::{
    BridgeProcess, FocusProcess, GUEST_DOMAIN, SECURE_DOMAIN, secure_focus_env,
    start_secure_prosody, wait_for_bridges,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_secure_domain_guest_waits_for_the_host_who_logs_in() {
    let prosody = start_secure_prosody();
    let _bridge = tokio::task::block_in_place(|| BridgeProcess::start(&prosody, "jvb-1"));
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &secure_focus_env()));
    tokio::task::block_in_place(|| wait_for_bridges(&focus, 1));
    let mut cfg = Participants::config(&prosody, "standup");
    cfg["domain"] = json!(SECURE_DOMAIN);
    let mut p = Participants::start_with(cfg).await;

    // The guest (another browser: another origin's storage) connects anonymously to the guest host
    // and asks for the room: the focus refuses to create it, the client waits and asks again.
    p.join_page(
        "guest",
        json!({"anonymousdomain": GUEST_DOMAIN, "waitForHost": true}),
        Some("localhost"),
        false,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let s = p.stats().await;
        let waits = s["guest"]["events"].as_array().map_or(0, |e| {
            e.iter().filter(|e| e["kind"] == "waiting-for-host").count()
        });
        if waits >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest does not wait for the host: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = focus.stats();
    assert_eq!(
        stats["conferences"], 0,
        "no room for a guest alone: {stats}"
    );

    // A wrong password: Prosody refuses the login; still no room.
    p.join_page(
        "intruder",
        json!({"id": format!("alice@{SECURE_DOMAIN}"), "password": "not-her-password"}),
        None,
        true,
    )
    .await;
    let why = p.join_failed("intruder").await;
    assert!(why.contains("passwordRequired"), "{why}");
    assert_eq!(focus.stats()["conferences"], 0);

    // The host logs in: the room is created, the host is its moderator, the guest gets in.
    p.join_page(
        "host",
        json!({"id": format!("alice@{SECURE_DOMAIN}"), "password": "alice-pw"}),
        None,
        false,
    )
    .await;
    let host = p.joined("host").await;
    let guest = p.joined("guest").await;
    let took = wait_media(
        &mut p,
        &[("host", &host), ("guest", &guest)],
        Duration::from_secs(90),
        None,
    )
    .await;
    println!("secure domain: the guest is in with media {took:?} after the host");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let h = p.call("host", "ljmLocal", json!([])).await;
        if h["moderator"] == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host is not a moderator: {h}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let g = p.call("guest", "ljmLocal", json!([])).await;
    assert_eq!(g["moderator"], false, "{g}");
    let stats = focus.stats();
    assert_eq!(
        (
            stats["conferences"].as_u64(),
            stats["participants"].as_u64()
        ),
        (Some(1), Some(2)),
        "{stats}"
    );
    p.quit().await;
}
