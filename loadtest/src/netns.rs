//! `loadtest --split-netns`: the SFU and the load generator in two network namespaces joined by
//! one veth pair, so that the kernel's receive work for a datagram runs on the receiver's side.
//!
//! On loopback, the receive path of every datagram (IP/UDP receive, socket enqueue, waking the
//! receiver) runs in the sender's softirq context: the SFU is charged ≈ 2 µs per forwarded packet
//! that a real deployment spends on the receivers' machines. Across a veth pair the packet is
//! queued on the peer's backlog instead, and Receive Packet Steering on each end's rx queue
//! (`rps_cpus`) moves that work onto the CPU of the process on that side (loadtest/REPORT.md, "How
//! the split-namespace mode works"). Measured on this project's VM: the work does move (0.3–0.4
//! core of softirq onto the load generator's CPU at 1 × 40), but the SFU's CPU then pays for the
//! remote enqueue and the inter-processor interrupt instead, so its cost per packet is no lower
//! than on loopback (higher here); the mode shows where the work runs, it does not make the SFU
//! look cheaper.
//!
//! The namespaces and the pair are created here (`ip`, needs root) and removed on drop, or by the
//! signal thread on SIGINT/SIGTERM/SIGHUP ([`SplitNetns::remove_on_signal`]; the processes it
//! started get the terminal's Ctrl-C themselves, as before). Nothing is added to
//! the root namespace: removing a namespace removes its end of the pair, and the pair with it.

use std::io::Read;
use std::net::Ipv4Addr;
use std::os::fd::FromRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, bail};

/// The load generator's end (`gen` namespace): loadtest, Prosody, the focus.
pub const GEN_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The SFU's end (`sfu` namespace): our bridge or Janus.
pub const SFU_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 2);

/// Two namespaces and the veth pair between them; removed on drop.
#[derive(Debug)]
pub struct SplitNetns {
    /// `lt-gen-<pid>`.
    pub gen_ns: String,
    /// `lt-sfu-<pid>`.
    pub sfu_ns: String,
    /// veth ends: `ltg<pid>` in `gen_ns`, `lts<pid>` in `sfu_ns`.
    pub gen_dev: String,
    pub sfu_dev: String,
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("ip {} (iproute2 needed)", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The CPU list of `taskset -c` (`0`, `0-2`, `0,3`) as a bit mask.
pub fn cpu_mask(list: &str) -> anyhow::Result<u64> {
    let mut mask = 0u64;
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (u32, u32) = (
            a.trim()
                .parse()
                .with_context(|| format!("CPU list {list:?}"))?,
            b.trim()
                .parse()
                .with_context(|| format!("CPU list {list:?}"))?,
        );
        if a > b || b >= 64 {
            bail!("CPU list {list:?}: expected CPUs 0-63 in increasing ranges");
        }
        for c in a..=b {
            mask |= 1 << c;
        }
    }
    if mask == 0 {
        bail!("CPU list {list:?} is empty");
    }
    Ok(mask)
}

/// The CPUs of a mask, lowest first.
pub fn mask_cpus(mask: u64) -> Vec<usize> {
    (0..64).filter(|c| mask & (1 << c) != 0).collect()
}

/// The CPUs this process may run on (`taskset` of the load generator), as a mask.
pub fn own_cpu_mask() -> anyhow::Result<u64> {
    // SAFETY: `set` is a plain bit array, filled by the kernel for the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
    }
    Ok((0..64)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .fold(0u64, |m, c| m | (1 << c)))
}

impl SplitNetns {
    /// Creates both namespaces (`lo` up), the pair with [`GEN_ADDR`]/30 and [`SFU_ADDR`]/30, and
    /// RPS on each end's rx queue: `gen_cpus` (the load generator's CPUs) and `sfu_cpus`; a mask
    /// of 0 leaves RPS off on that side (receive work then stays on the sending CPU).
    pub fn create(gen_cpus: u64, sfu_cpus: u64) -> anyhow::Result<SplitNetns> {
        let pid = std::process::id();
        let ns = SplitNetns {
            gen_ns: format!("lt-gen-{pid}"),
            sfu_ns: format!("lt-sfu-{pid}"),
            gen_dev: format!("ltg{pid}"),
            sfu_dev: format!("lts{pid}"),
        };
        // From here on, dropping `ns` removes whatever was created.
        ip(&["netns", "add", &ns.gen_ns]).context("split namespaces need root")?;
        ip(&["netns", "add", &ns.sfu_ns])?;
        let (g, s) = (ns.gen_ns.as_str(), ns.sfu_ns.as_str());
        let (gd, sd) = (ns.gen_dev.as_str(), ns.sfu_dev.as_str());
        let (ga, sa) = (format!("{GEN_ADDR}/30"), format!("{SFU_ADDR}/30"));
        let steps: [&[&str]; 7] = [
            &["-n", g, "link", "set", "lo", "up"],
            &["-n", s, "link", "set", "lo", "up"],
            &[
                "-n", g, "link", "add", gd, "type", "veth", "peer", "name", sd, "netns", s,
            ],
            &["-n", g, "addr", "add", &ga, "dev", gd],
            &["-n", s, "addr", "add", &sa, "dev", sd],
            &["-n", g, "link", "set", gd, "up"],
            &["-n", s, "link", "set", sd, "up"],
        ];
        for args in steps {
            ip(args)?;
        }
        ns.wait_up(g, gd)?;
        ns.wait_up(s, sd)?;
        ns.set_rps(g, gd, gen_cpus)?;
        ns.set_rps(s, sd, sfu_cpus)?;
        Ok(ns)
    }

    /// Waits until `dev` is operationally up: the kernel marks it so asynchronously (linkwatch, up
    /// to a second later), and until then Janus does not list it among the interfaces it may bind
    /// its HTTP API to.
    fn wait_up(&self, netns: &str, dev: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let out = Command::new("ip")
                .args(["-n", netns, "-o", "link", "show", dev])
                .output()
                .context("ip link show")?;
            if String::from_utf8_lossy(&out.stdout).contains("state UP") {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("{dev} in {netns} did not come up");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Writes `rps_cpus` of `dev`'s rx queue from inside `netns` (its `/sys` shows only its own
    /// devices there).
    fn set_rps(&self, netns: &str, dev: &str, mask: u64) -> anyhow::Result<()> {
        let path = format!("/sys/class/net/{dev}/queues/rx-0/rps_cpus");
        let out = Command::new("ip")
            .args(["netns", "exec", netns, "sh", "-c"])
            .arg(format!("echo {mask:x} > {path}"))
            .output()
            .context("ip netns exec … sh")?;
        if !out.status.success() {
            bail!(
                "RPS {path} in {netns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Moves this process into the `gen` namespace: every socket it opens from now on, and every
    /// child it starts (Prosody, the focus), lives there. Call it before any other thread exists:
    /// `setns` changes only the calling thread, and threads inherit it when created.
    pub fn enter_gen(&self) -> anyhow::Result<()> {
        let path = format!("/run/netns/{}", self.gen_ns);
        let file = std::fs::File::open(&path).with_context(|| path.clone())?;
        use std::os::fd::AsRawFd;
        // SAFETY: a valid namespace file descriptor, kept open for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("setns {path}"));
        }
        Ok(())
    }

    /// `ip netns exec <sfu namespace>`: the SFU's command starts with this. `ip netns exec` execs
    /// the program without forking (outside batch mode), as `taskset` does: the pid stays the
    /// SFU's own.
    pub fn sfu_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.sfu_ns.clone(),
        ]
    }

    /// On SIGINT, SIGTERM or SIGHUP: removes the namespaces and exits with 130, from a thread of
    /// its own woken through a pipe by the signal handler (a handler may only do async-signal-safe
    /// work). A handler, not a blocked mask: children reset handled signals to their default at
    /// exec, but would inherit a blocked mask and ignore the Ctrl-C their process group receives.
    pub fn remove_on_signal(&self) -> anyhow::Result<()> {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error()).context("pipe2");
        }
        SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: `on_signal` only calls write(2), which is async-signal-safe.
            let r = unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut())
            };
            if r != 0 {
                return Err(std::io::Error::last_os_error()).context("sigaction");
            }
        }
        // SAFETY: the read end, owned by the thread from here on.
        let mut pipe = unsafe { std::fs::File::from_raw_fd(fds[0]) };
        let names = [self.gen_ns.clone(), self.sfu_ns.clone()];
        std::thread::Builder::new()
            .name("netns-signal".into())
            .spawn(move || {
                let mut sig = [0u8];
                if pipe.read_exact(&mut sig).is_err() {
                    return;
                }
                eprintln!("loadtest: signal {}: removing {names:?}", sig[0]);
                for n in &names {
                    let _ = ip(&["netns", "del", n]);
                }
                std::process::exit(130);
            })?;
        Ok(())
    }
}

/// Write end of the pipe [`on_signal`] wakes the signal thread through.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let b = sig as u8;
    // SAFETY: write(2) on a pipe is async-signal-safe; a failure leaves nothing to do.
    unsafe {
        libc::write(
            SIGNAL_PIPE.load(Ordering::Relaxed),
            (&b as *const u8).cast(),
            1,
        )
    };
}

impl Drop for SplitNetns {
    fn drop(&mut self) {
        for n in [&self.sfu_ns, &self.gen_ns] {
            if let Err(e) = ip(&["netns", "del", n]) {
                // Absent when creation failed early.
                tracing::debug!("{e:#}");
            }
        }
    }
}

/// Checks that `pid` runs `name` (`/proc/<pid>/comm`): the pid the sampler reads must be the SFU
/// itself, not a wrapper (`ip netns exec`, `taskset`) that forked it.
pub fn check_comm(pid: u32, name: &str) -> anyhow::Result<()> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .with_context(|| format!("/proc/{pid}/comm"))?;
    if comm.trim() != name {
        bail!(
            "process {pid} is {:?}, not {name}: its CPU would not be the SFU's",
            comm.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_as_taskset_does() {
        assert_eq!(cpu_mask("0").unwrap(), 1);
        assert_eq!(cpu_mask("1").unwrap(), 2);
        assert_eq!(cpu_mask("0-2,5").unwrap(), 0b10_0111);
        assert_eq!(mask_cpus(0b10_0111), vec![0, 1, 2, 5]);
        assert!(cpu_mask("").is_err());
        assert!(cpu_mask("2-1").is_err());
        assert!(cpu_mask("x").is_err());
        assert!(cpu_mask("64").is_err());
    }
}
