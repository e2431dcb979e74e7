//! `scripts/run.sh`'s Prosody keeps anonymous users out of the internal MUC (the brewery): the
//! configuration the script writes is rendered from the script itself and run on loopback ports.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::WAIT;
use signaling::xmpp::{BareJid, ClientConfig, MucError, MucJoin, ServerAddr, connect_client};

const DOMAIN: &str = "meet.jitsi";
const AUTH: &str = "auth.meet.jitsi";
const INTERNAL: &str = "internal-muc.meet.jitsi";

/// Prosody started from run.sh's configuration; killed on drop.
struct RunShProsody {
    child: Child,
    c2s: u16,
    dir: tempfile::TempDir,
}

impl Drop for RunShProsody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default();
            eprintln!("--- prosody log ---\n{log}");
        }
    }
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes the config exactly as run.sh does (its heredoc, run by bash with run.sh's variables),
/// registers its two accounts and starts Prosody.
fn start() -> RunShProsody {
    common::init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path();
    std::fs::create_dir_all(tmp.join("prosody/data")).unwrap();
    let c2s = common::free_port();
    let script = format!(
        r#"set -euo pipefail
tmp='{tmp}'; c2s={c2s}; component={component}; http={http}; listen_ip=127.0.0.1
domain={DOMAIN}; auth={AUTH}; muc=muc.$domain; internal={INTERNAL}; focus_domain=focus.$domain
secret=s3cret
eval "$(sed -n '/^cat > "\$tmp\/prosody\/prosody.cfg.lua" <<EOF$/,/^EOF$/p' '{run}')"
test -s "$tmp/prosody/prosody.cfg.lua"
prosodyctl --config "$tmp/prosody/prosody.cfg.lua" register focus "$auth" focus-pw >/dev/null
prosodyctl --config "$tmp/prosody/prosody.cfg.lua" register jvb "$auth" jvb-pw >/dev/null
"#,
        tmp = tmp.display(),
        component = common::free_port(),
        http = common::free_port(),
        run = repo().join("scripts/run.sh").display(),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "rendering run.sh's Prosody config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let child = Command::new("prosody")
        .arg("-F")
        .arg("--config")
        .arg(tmp.join("prosody/prosody.cfg.lua"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prosody (scripts/install-deps.sh installs it)");
    let p = RunShProsody { child, c2s, dir };
    let deadline = Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", c2s)).is_err() {
        assert!(Instant::now() < deadline, "Prosody did not open c2s");
        std::thread::sleep(Duration::from_millis(50));
    }
    p
}

fn client(p: &RunShProsody, jid: &str, password: &str) -> ClientConfig {
    ClientConfig::new(
        BareJid::new(jid).unwrap(),
        password,
        ServerAddr::new("127.0.0.1", p.c2s),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_sh_prosody_keeps_anonymous_users_out_of_the_brewery() {
    let p = tokio::task::block_in_place(start);
    let brewery = BareJid::new(&format!("jvbbrewery@{INTERNAL}")).unwrap();
    // The bridge creates the brewery, the focus joins it.
    let (jvb, _e1) = connect_client(client(&p, &format!("jvb@{AUTH}"), "jvb-pw"));
    jvb.wait_online(WAIT).await.expect("jvb online");
    jvb.join_muc(MucJoin::new(brewery.clone(), "jvb-local"))
        .await
        .expect("the bridge enters the brewery");
    let (focus, _e2) = connect_client(client(&p, &format!("focus@{AUTH}"), "focus-pw"));
    focus.wait_online(WAIT).await.expect("focus online");
    focus
        .join_muc(MucJoin::new(brewery.clone(), "focus"))
        .await
        .expect("the focus enters the brewery");
    // An anonymous user (what every browser is) cannot enter it, nor create another internal room.
    let (anon, _e3) = connect_client(client(&p, &format!("anonymous@{DOMAIN}"), "anonymous"));
    anon.wait_online(WAIT).await.expect("anonymous online");
    let e = anon
        .join_muc(MucJoin::new(brewery.clone(), "mallory"))
        .await
        .expect_err("an anonymous user must not enter the brewery");
    assert!(matches!(e, MucError::Refused { .. }), "{e}");
    let other = BareJid::new(&format!("jibribrewery@{INTERNAL}")).unwrap();
    let e = anon
        .join_muc(MucJoin::new(other, "mallory"))
        .await
        .expect_err("an anonymous user must not create internal rooms");
    assert!(matches!(e, MucError::Refused { .. }), "{e}");
}
