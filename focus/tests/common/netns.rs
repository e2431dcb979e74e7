//! A network namespace of the test's own, for what loopback cannot show: a stock browser uses no
//! 127.0.0.1 address for WebRTC. The namespace holds its own loopback and one veth pair with
//! addresses on both ends (the "machine's network"); everything the test runs inside stays inside,
//! and dropping the namespace removes the pair with it. Needs root (CI runs as root).

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// `ip netns` namespace removed on drop.
pub struct NetNs {
    name: String,
    /// The veth pair's addresses, e.g. `10.213.7.1` and `10.213.7.2`.
    pub addresses: [String; 2],
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetNs {
    /// A fresh namespace with `lo` up and a veth pair `va`/`vb` on 10.213.N.1/24 and .2/24.
    pub fn create() -> NetNs {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("jrs-{}-{n}", std::process::id());
        // A subnet per test process and namespace: the namespaces are isolated anyway, distinct
        // addresses only make logs unambiguous.
        let subnet = (std::process::id() % 200) as u8 + n as u8;
        let ns = NetNs {
            name: name.clone(),
            addresses: [format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2")],
        };
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "lo".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "add".into(),
                "va".into(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                "vb".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "addr".into(),
                "add".into(),
                format!("{}/24", ns.addresses[0]),
                "dev".into(),
                "va".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "addr".into(),
                "add".into(),
                format!("{}/24", ns.addresses[1]),
                "dev".into(),
                "vb".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "va".into(),
                "up".into(),
            ],
            vec![
                "-n".into(),
                name.clone(),
                "link".into(),
                "set".into(),
                "vb".into(),
                "up".into(),
            ],
        ];
        for step in steps {
            let args: Vec<&str> = step.iter().map(String::as_str).collect();
            if let Err(e) = ip(&args) {
                panic!("network namespace set-up failed (needs root and iproute2): {e}");
            }
        }
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command run inside the namespace (`ip netns exec NAME program …`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The same for tokio.
    pub fn tokio_command(&self, program: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Drops every UDP datagram to `port` inside the namespace. Traffic between the namespace's own
    /// addresses leaves through its `lo`, so the filter sits on `lo`'s egress: an HTB root whose
    /// default class passes everything, and a class ending in a `blackhole` qdisc for the port (the
    /// classifier and these qdiscs are what this kernel offers; it has no `drop` action or netem).
    pub fn block_udp_port(&self, port: u16) {
        let port = port.to_string();
        let steps: [&[&str]; 5] = [
            &[
                "qdisc", "add", "dev", "lo", "root", "handle", "1:", "htb", "default", "1",
            ],
            &[
                "class", "add", "dev", "lo", "parent", "1:", "classid", "1:1", "htb", "rate",
                "10gbit",
            ],
            &[
                "class", "add", "dev", "lo", "parent", "1:", "classid", "1:2", "htb", "rate",
                "10gbit",
            ],
            &[
                "qdisc",
                "add",
                "dev",
                "lo",
                "parent",
                "1:2",
                "handle",
                "20:",
                "blackhole",
            ],
            &[
                "filter", "add", "dev", "lo", "parent", "1:", "protocol", "ip", "prio", "1", "u32",
                "match", "ip", "protocol", "17", "0xff", "match", "ip", "dport", &port, "0xffff",
                "flowid", "1:2",
            ],
        ];
        for args in steps {
            let out = self.command("tc").args(args).output().expect("run tc");
            assert!(
                out.status.success(),
                "tc {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("removing network namespace {}: {e}", self.name);
        }
    }
}
