//! End-to-end with the reference client: lib-jitsi-meet (2021) in headless Chromium, Prosody, the
//! `focus` binary (and the bridge, once it lands).

mod common;

use std::time::Duration;

use common::browser::Participants;
use common::{FocusProcess, start_prosody};

/// Two lib-jitsi-meet clients ask our focus for the conference (through the XEP-0114 component), join
/// the room it configured and see each other; the focus is recognised (no "focus left" / failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_lib_jitsi_meet_clients_join_through_the_focus() {
    let prosody = start_prosody();
    let focus = tokio::task::block_in_place(|| FocusProcess::start(&prosody, &[]));
    let mut p = Participants::start(&prosody, "joinroom").await;
    p.join("a").await;
    let a = p.joined("a").await;
    p.join("b").await;
    let b = p.joined("b").await;
    assert_ne!(a, b);
    assert_eq!(a.len(), 8, "endpoint ids are 8 hex chars: {a}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = p.stats().await;
        let sees = |me: &str, other: &str| {
            s[me]["participants"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|x| x == other))
        };
        if sees("a", &b) && sees("b", &a) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "participants do not see each other: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stats = focus.stats();
    assert_eq!(stats["conferences"], 1);
    assert_eq!(stats["participants"], 2, "{stats}");
    p.quit().await;
}
