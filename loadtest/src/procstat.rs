//! Server-side measurements during a run: CPU time and memory of processes from `/proc/<pid>/stat`
//! and `/proc/<pid>/status`, the machine's CPU use and load from `/proc/stat` and `/proc/loadavg`,
//! UDP receive-buffer drops from `/proc/net/snmp` (machine) and `/proc/net/udp{,6}` matched to the
//! socket inodes in `/proc/<pid>/fd` (per process: the bridge's socket or the load generator's),
//! and the bridge's `/colibri/stats`.
//!
//! Parsing is pure (unit-tested on sample text); [`Sampler`] reads every second on its own thread
//! (blocking I/O, off the participants' runtime) and [`summarize`] turns the samples of the
//! measurement window into rates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub threads: u64,
    /// Datagrams dropped by the kernel on this process's UDP sockets (full receive buffer), since
    /// each socket was opened.
    pub udp_drops: u64,
}

/// inode → drops of every socket in `/proc/net/udp` or `/proc/net/udp6` text.
pub fn parse_udp_sockets(text: &str, out: &mut std::collections::HashMap<u64, u64>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        let (Some(inode), Some(drops)) = (
            f.get(9).and_then(|v| v.parse::<u64>().ok()),
            f.get(12).and_then(|v| v.parse::<u64>().ok()),
        ) else {
            continue;
        };
        out.insert(inode, drops);
    }
}

/// The socket inodes a process holds (`/proc/<pid>/fd/* -> socket:[inode]`).
fn socket_inodes(pid: u32) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let target = std::fs::read_link(e.ok()?.path()).ok()?;
        let t = target.to_str()?;
        t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
    })
    .collect()
}

/// utime + stime from `/proc/<pid>/stat` (fields 14 and 15; the command name may contain spaces
/// and parentheses, so fields are counted after the last `)`).
pub fn parse_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ")" the fields start at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS, VmHWM (kB) and Threads from `/proc/<pid>/status`.
pub fn parse_status(text: &str) -> (u64, u64, u64) {
    let mut out = (0, 0, 0);
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let (Some(key), Some(v)) = (it.next(), it.next()) else {
            continue;
        };
        let v: u64 = v.parse().unwrap_or(0);
        match key {
            "VmRSS:" => out.0 = v,
            "VmHWM:" => out.1 = v,
            "Threads:" => out.2 = v,
            _ => {}
        }
    }
    out
}

/// Reads a process's sample; `None` if it is gone. `udp` maps socket inodes to their drops.
pub fn sample_process(pid: u32, udp: &std::collections::HashMap<u64, u64>) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let cpu_ticks = parse_stat(&stat)?;
    let (rss_kb, hwm_kb, threads) = parse_status(&status);
    let udp_drops = socket_inodes(pid).iter().filter_map(|i| udp.get(i)).sum();
    Some(ProcSample {
        cpu_ticks,
        rss_kb,
        hwm_kb,
        threads,
        udp_drops,
    })
}

/// The whole machine's CPU counters (first line of `/proc/stat`), in ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineSample {
    pub total: u64,
    pub idle: u64,
    pub steal: u64,
    pub cpus: u32,
}

/// Parses `/proc/stat`: the aggregate `cpu` line and the number of `cpuN` lines.
pub fn parse_proc_stat(text: &str) -> Option<MachineSample> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let mut it = first.split_whitespace();
    if it.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal (guest counted in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    let steal = v.get(7).copied().unwrap_or(0);
    let cpus = text
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    Some(MachineSample {
        total,
        idle,
        steal,
        cpus,
    })
}

/// Idle ticks (idle + iowait) of the CPUs `cpus` together, and how many they are (their `cpuN`
/// lines of `/proc/stat`). Their busy time is the wall time not idle: with a tickless idle the
/// kernel measures idle time exactly, while the busy fields (user, system, softirq, …) are counted
/// per scheduler tick and miss much of the sub-tick bursts a packet forwarder runs in.
pub fn parse_cpu_lines(text: &str, cpus: &[usize]) -> Option<CpuTicks> {
    let mut out = CpuTicks::default();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(n) = it.next().and_then(|c| c.strip_prefix("cpu")) else {
            continue;
        };
        if !n.parse().is_ok_and(|n: usize| cpus.contains(&n)) {
            continue;
        }
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        out.idle += v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        out.cpus += 1;
    }
    (out.cpus == cpus.len() && out.cpus > 0).then_some(out)
}

/// Idle ticks of some CPUs (`parse_cpu_lines`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub idle: u64,
    pub cpus: usize,
}

/// UDP counters of `/proc/net/snmp`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub in_errors: u64,
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

/// Parses the two `Udp:` lines (names, then values) of `/proc/net/snmp`.
pub fn parse_snmp_udp(text: &str) -> Option<UdpCounters> {
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().skip(1).collect();
    let values: Vec<u64> = udp
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let get = |n: &str| {
        names
            .iter()
            .position(|x| *x == n)
            .and_then(|i| values.get(i).copied())
            .unwrap_or(0)
    };
    Some(UdpCounters {
        in_datagrams: get("InDatagrams"),
        in_errors: get("InErrors"),
        rcvbuf_errors: get("RcvbufErrors"),
        sndbuf_errors: get("SndbufErrors"),
    })
}

/// Ticks per second of the CPU times in /proc (`getconf CLK_TCK`, 100 on Linux in practice).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// One sampling instant.
#[derive(Debug, Clone)]
pub struct Sample {
    pub at: Instant,
    pub procs: BTreeMap<String, Option<ProcSample>>,
    pub machine: Option<MachineSample>,
    /// The SFU's CPUs (`Targets::sfu_cpus`).
    pub sfu_cpus: Option<CpuTicks>,
    pub load1: Option<f64>,
    pub udp: Option<UdpCounters>,
    /// `/colibri/stats` of the bridge.
    pub bridge: Option<serde_json::Value>,
}

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// name → pid (bridge, focus, prosody, loadtest).
    pub processes: Vec<(String, u32)>,
    /// `http://127.0.0.1:<port>/colibri/stats`.
    pub bridge_stats_url: Option<String>,
    /// CPUs whose whole busy time is charged to the SFU (`loadtest --split-netns`, where the
    /// kernel's receive work for the SFU runs on them and nothing else is pinned there).
    pub sfu_cpus: Vec<usize>,
}

fn take_sample(t: &Targets) -> Sample {
    let bridge = t.bridge_stats_url.as_ref().and_then(|u| {
        service::http_request("GET", u, None, Duration::from_millis(800))
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| serde_json::from_str(&r.text()).ok())
    });
    // Each process's own network namespace (`/proc/<pid>/net`): the SFU may run in another one.
    let mut sockets = std::collections::HashMap::new();
    for (_, pid) in &t.processes {
        for table in ["udp", "udp6"] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
                parse_udp_sockets(&text, &mut sockets);
            }
        }
    }
    let stat = std::fs::read_to_string("/proc/stat").ok();
    Sample {
        at: Instant::now(),
        procs: t
            .processes
            .iter()
            .map(|(n, pid)| (n.clone(), sample_process(*pid, &sockets)))
            .collect(),
        machine: stat.as_deref().and_then(parse_proc_stat),
        sfu_cpus: stat
            .as_deref()
            .filter(|_| !t.sfu_cpus.is_empty())
            .and_then(|s| parse_cpu_lines(s, &t.sfu_cpus)),
        load1: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        udp: std::fs::read_to_string("/proc/net/snmp")
            .ok()
            .and_then(|s| parse_snmp_udp(&s)),
        bridge,
    }
}

/// Samples every `interval` on a thread until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Sample>>>,
}

impl Sampler {
    pub fn start(targets: Targets, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                samples.push(take_sample(&targets));
                next += interval;
                while Instant::now() < next && !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20).min(interval));
                }
            }
            samples.push(take_sample(&targets));
            samples
        });
        Sampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops and returns every sample (the last one taken now).
    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A process over the window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ProcessReport {
    /// CPU time / wall time, in % of one core.
    pub cpu_pct: f64,
    pub cpu_seconds: f64,
    pub rss_max_mib: f64,
    pub rss_end_mib: f64,
    /// Peak RSS over the process's life (VmHWM).
    pub hwm_mib: f64,
    pub threads: u64,
    /// Datagrams the kernel dropped on the process's UDP sockets (receive buffer full). Sockets
    /// closed in between are not counted.
    pub udp_drops: u64,
}

/// The bridge's own view over the window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct BridgeStatsReport {
    pub endpoints: f64,
    pub conferences: f64,
    /// Packets per second from `total_packets_*` deltas (received = from endpoints, sent = forwarded
    /// + RTCP).
    pub packets_received_pps: f64,
    pub packets_sent_pps: f64,
    pub bytes_received_mbps: f64,
    pub bytes_sent_mbps: f64,
    /// Mean of the `packet_rate_*` gauges.
    pub packet_rate_download: f64,
    pub packet_rate_upload: f64,
    pub stress_level_mean: f64,
    pub stress_level_max: f64,
    pub dropped_packets: f64,
}

/// One process during one step of the timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcessPoint {
    /// CPU time / wall time over the step, in % of one core.
    pub cpu_pct: f64,
    /// RSS at the end of the step.
    pub rss_mib: f64,
    /// Datagrams dropped on its UDP sockets during the step (receive buffer full).
    pub udp_drops: u64,
}

/// One step of the timeline: what happened between two consecutive samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimelinePoint {
    /// End of the step, in seconds since the run started.
    pub t_s: f64,
    pub processes: BTreeMap<String, ProcessPoint>,
    /// The bridge's `endpoints` gauge at the end of the step.
    pub bridge_endpoints: Option<f64>,
    pub bridge_packets_received_pps: Option<f64>,
    pub bridge_packets_sent_pps: Option<f64>,
    /// Busy share of the whole machine over the step.
    pub machine_busy_pct: Option<f64>,
}

/// Everything the server side did: rates over the measurement window, totals over the whole run
/// (joins and leaves included) and the sample-by-sample timeline.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerReport {
    pub window_s: f64,
    /// Over the measurement window.
    pub processes: BTreeMap<String, ProcessReport>,
    /// Over the whole run, from the first sample to the last (joins and leaves included).
    pub run_s: f64,
    pub run_processes: BTreeMap<String, ProcessReport>,
    pub timeline: Vec<TimelinePoint>,
    pub bridge: Option<BridgeStatsReport>,
    /// Busy share of all CPUs of the machine, in % of the whole machine.
    pub machine_busy_pct: f64,
    pub machine_steal_pct: f64,
    /// Busy time of the SFU's CPUs (`Targets::sfu_cpus`) over the window, in cores.
    pub sfu_cpus_busy_cores: Option<f64>,
    pub cpus: u32,
    pub load1_mean: f64,
    pub udp_rcvbuf_errors: u64,
    pub udp_in_errors: u64,
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(0.0)
}

/// CPU and memory of every process over `inside` (consecutive samples): CPU between the first and
/// the last sample in which the process exists, RSS maximum over all of them.
fn process_reports(inside: &[&Sample], clk_tck: f64) -> BTreeMap<String, ProcessReport> {
    let mut out = BTreeMap::new();
    let names: std::collections::BTreeSet<&String> =
        inside.iter().flat_map(|s| s.procs.keys()).collect();
    for name in names {
        let seen: Vec<(Instant, ProcSample)> = inside
            .iter()
            .filter_map(|s| Some((s.at, s.procs.get(name).copied().flatten()?)))
            .collect();
        let (Some(&(ta, a)), Some(&(tb, b))) = (seen.first(), seen.last()) else {
            continue;
        };
        let secs = tb.saturating_duration_since(ta).as_secs_f64();
        if secs <= 0.0 {
            continue;
        }
        let cpu_seconds = b.cpu_ticks.saturating_sub(a.cpu_ticks) as f64 / clk_tck;
        let rss_max = seen.iter().map(|(_, p)| p.rss_kb).max().unwrap_or(0);
        out.insert(
            name.clone(),
            ProcessReport {
                cpu_pct: cpu_seconds / secs * 100.0,
                cpu_seconds,
                rss_max_mib: rss_max as f64 / 1024.0,
                rss_end_mib: b.rss_kb as f64 / 1024.0,
                hwm_mib: b.hwm_kb as f64 / 1024.0,
                threads: b.threads,
                udp_drops: b.udp_drops.saturating_sub(a.udp_drops),
            },
        );
    }
    out
}

/// The run sample by sample: per step, CPU % and RSS of every process, the bridge's packet rates
/// and endpoints, the machine's busy share. `t0` is the start of the run.
pub fn timeline(samples: &[Sample], t0: Instant, clk_tck: f64) -> Vec<TimelinePoint> {
    samples
        .windows(2)
        .filter_map(|w| {
            let [a, b] = w else { return None };
            let secs = b.at.saturating_duration_since(a.at).as_secs_f64();
            if secs <= 0.0 {
                return None;
            }
            let processes = b
                .procs
                .iter()
                .filter_map(|(name, pb)| {
                    let pb = (*pb)?;
                    let pa = a.procs.get(name).copied().flatten()?;
                    let cpu = pb.cpu_ticks.saturating_sub(pa.cpu_ticks) as f64 / clk_tck;
                    Some((
                        name.clone(),
                        ProcessPoint {
                            cpu_pct: cpu / secs * 100.0,
                            rss_mib: pb.rss_kb as f64 / 1024.0,
                            udp_drops: pb.udp_drops.saturating_sub(pa.udp_drops),
                        },
                    ))
                })
                .collect();
            let rate = |k: &str| {
                let (va, vb) = (a.bridge.as_ref()?, b.bridge.as_ref()?);
                Some((num(vb, k) - num(va, k)).max(0.0) / secs)
            };
            let machine_busy_pct = match (a.machine, b.machine) {
                (Some(ma), Some(mb)) if mb.total > ma.total => {
                    let total = (mb.total - ma.total) as f64;
                    let idle = mb.idle.saturating_sub(ma.idle) as f64;
                    Some(((total - idle) / total * 100.0).max(0.0))
                }
                _ => None,
            };
            Some(TimelinePoint {
                t_s: b.at.saturating_duration_since(t0).as_secs_f64(),
                processes,
                bridge_endpoints: b.bridge.as_ref().map(|v| num(v, "endpoints")),
                bridge_packets_received_pps: rate("total_packets_received"),
                bridge_packets_sent_pps: rate("total_packets_sent"),
                machine_busy_pct,
            })
        })
        .collect()
}

/// Rates over `[start, end]` from the samples inside it; totals over all samples and the timeline
/// from `t0`.
pub fn summarize(
    samples: &[Sample],
    t0: Instant,
    start: Instant,
    end: Instant,
    clk_tck: f64,
) -> ServerReport {
    let all: Vec<&Sample> = samples.iter().collect();
    let mut report = ServerReport {
        run_s: match (all.first(), all.last()) {
            (Some(a), Some(b)) => b.at.saturating_duration_since(a.at).as_secs_f64(),
            _ => 0.0,
        },
        run_processes: process_reports(&all, clk_tck),
        timeline: timeline(samples, t0, clk_tck),
        ..ServerReport::default()
    };
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= start && s.at <= end)
        .collect();
    let (Some(first), Some(last)) = (inside.first(), inside.last()) else {
        return report;
    };
    let secs = last.at.saturating_duration_since(first.at).as_secs_f64();
    report.window_s = secs;
    if secs <= 0.0 {
        return report;
    }
    report.processes = process_reports(&inside, clk_tck);
    if let (Some(a), Some(b)) = (first.machine, last.machine) {
        let total = b.total.saturating_sub(a.total) as f64;
        if total > 0.0 {
            let idle = b.idle.saturating_sub(a.idle) as f64;
            report.machine_busy_pct = (total - idle) / total * 100.0;
            report.machine_steal_pct = b.steal.saturating_sub(a.steal) as f64 / total * 100.0;
        }
        report.cpus = b.cpus;
    }
    if let (Some(a), Some(b)) = (first.sfu_cpus, last.sfu_cpus) {
        let idle = b.idle.saturating_sub(a.idle) as f64 / clk_tck;
        report.sfu_cpus_busy_cores = Some((b.cpus as f64 - idle / secs).max(0.0));
    }
    let loads: Vec<f64> = inside.iter().filter_map(|s| s.load1).collect();
    if !loads.is_empty() {
        report.load1_mean = loads.iter().sum::<f64>() / loads.len() as f64;
    }
    if let (Some(a), Some(b)) = (first.udp, last.udp) {
        report.udp_rcvbuf_errors = b.rcvbuf_errors.saturating_sub(a.rcvbuf_errors);
        report.udp_in_errors = b.in_errors.saturating_sub(a.in_errors);
    }
    let stats: Vec<&serde_json::Value> = inside.iter().filter_map(|s| s.bridge.as_ref()).collect();
    if let (Some(a), Some(b)) = (
        inside
            .iter()
            .find_map(|s| s.bridge.as_ref().map(|v| (s.at, v))),
        inside
            .iter()
            .rev()
            .find_map(|s| s.bridge.as_ref().map(|v| (s.at, v))),
    ) {
        let dt = b.0.saturating_duration_since(a.0).as_secs_f64();
        let rate = |k: &str| {
            if dt > 0.0 {
                (num(b.1, k) - num(a.1, k)).max(0.0) / dt
            } else {
                0.0
            }
        };
        let mean = |k: &str| stats.iter().map(|v| num(v, k)).sum::<f64>() / stats.len() as f64;
        report.bridge = Some(BridgeStatsReport {
            endpoints: mean("endpoints"),
            conferences: mean("conferences"),
            packets_received_pps: rate("total_packets_received"),
            packets_sent_pps: rate("total_packets_sent"),
            bytes_received_mbps: rate("total_bytes_received") * 8.0 / 1e6,
            bytes_sent_mbps: rate("total_bytes_sent") * 8.0 / 1e6,
            packet_rate_download: mean("packet_rate_download"),
            packet_rate_upload: mean("packet_rate_upload"),
            stress_level_mean: mean("stress_level"),
            stress_level_max: stats
                .iter()
                .map(|v| num(v, "stress_level"))
                .fold(0.0, f64::max),
            dropped_packets: num(b.1, "total_dropped_packets") - num(a.1, "total_dropped_packets"),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        // A command name with spaces and a parenthesis.
        let stat = "1234 (my (weird) proc) S 1 1234 1234 0 -1 4194560 500 0 0 0 150 25 0 0 20 0 7 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(175));
        assert_eq!(parse_stat("garbage"), None);
        let status = "Name:\tbridge\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nThreads:\t5\n";
        assert_eq!(parse_status(status), (10240, 20480, 5));
        let ps = "cpu  100 0 50 800 10 0 5 20 0 0\ncpu0 50 0 25 400 5 0 2 10 0 0\ncpu1 50 0 25 400 5 0 3 10 0 0\nintr 1\n";
        assert_eq!(
            parse_proc_stat(ps),
            Some(MachineSample {
                total: 985,
                idle: 810,
                steal: 20,
                cpus: 2
            })
        );
        assert_eq!(
            parse_cpu_lines(ps, &[1]),
            Some(CpuTicks { idle: 405, cpus: 1 })
        );
        assert_eq!(parse_cpu_lines(ps, &[0, 1]).map(|t| t.idle), Some(810));
        assert_eq!(parse_cpu_lines(ps, &[2]), None, "a CPU the machine lacks");
        let udp = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n  123: 0100007F:2710 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n  124: 0100007F:2711 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 0\n garbage\n";
        let mut m = std::collections::HashMap::new();
        parse_udp_sockets(udp, &mut m);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&4242), Some(&17));
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors\nUdp: 1000 1 7 900 5 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(
            parse_snmp_udp(snmp),
            Some(UdpCounters {
                in_datagrams: 1000,
                in_errors: 7,
                rcvbuf_errors: 5,
                sndbuf_errors: 0
            })
        );
    }

    #[test]
    fn our_own_process_is_sampled() {
        // A socket of ours is found through its inode; nothing was dropped on it.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let mut udp = std::collections::HashMap::new();
        parse_udp_sockets(
            &std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp"),
            &mut udp,
        );
        let ours = socket_inodes(std::process::id());
        assert!(
            ours.iter().any(|i| udp.contains_key(i)),
            "port {port}: {ours:?}"
        );
        let me = sample_process(std::process::id(), &udp).expect("self");
        assert!(me.rss_kb > 0 && me.hwm_kb >= me.rss_kb && me.threads >= 1);
        assert_eq!(me.udp_drops, 0);
        assert!(clock_ticks() >= 1.0);
    }

    #[test]
    fn summarize_computes_rates_over_the_window() {
        let t0 = Instant::now();
        let mk = |s: u64, ticks: u64, rss: u64, sent: f64| Sample {
            at: t0 + Duration::from_secs(s),
            procs: [(
                "bridge".to_owned(),
                Some(ProcSample {
                    cpu_ticks: ticks,
                    rss_kb: rss,
                    hwm_kb: 4096,
                    threads: 4,
                    udp_drops: s,
                }),
            )]
            .into_iter()
            .collect(),
            machine: Some(MachineSample {
                total: s * 200,
                idle: s * 100,
                steal: 0,
                cpus: 2,
            }),
            // CPU 0 idle 20 of its 100 ticks a second.
            sfu_cpus: Some(CpuTicks {
                idle: s * 20,
                cpus: 1,
            }),
            load1: Some(1.0),
            udp: Some(UdpCounters::default()),
            bridge: Some(serde_json::json!({
                "total_packets_sent": sent, "stress_level": 0.1 * s as f64, "endpoints": 3
            })),
        };
        let samples = vec![
            mk(0, 0, 1024, 0.0),
            mk(1, 50, 2048, 1000.0),
            mk(11, 550, 3072, 11000.0),
            mk(12, 600, 1024, 12000.0),
        ];
        let r = summarize(
            &samples,
            t0,
            t0 + Duration::from_millis(500),
            t0 + Duration::from_millis(11500),
            100.0,
        );
        assert_eq!(r.window_s, 10.0);
        let b = r.processes["bridge"];
        assert!((b.cpu_pct - 50.0).abs() < 1e-9, "{b:?}");
        assert_eq!(b.rss_max_mib, 3.0);
        assert_eq!(b.udp_drops, 10);
        assert!((r.machine_busy_pct - 50.0).abs() < 1e-9);
        assert!((r.sfu_cpus_busy_cores.unwrap_or(0.0) - 0.8).abs() < 1e-9);
        let s = r.bridge.unwrap();
        assert!((s.packets_sent_pps - 1000.0).abs() < 1e-9);
        assert_eq!(s.endpoints, 3.0);
        assert!((s.stress_level_max - 1.1).abs() < 1e-9);

        // Whole run: 600 ticks over 12 s.
        assert_eq!(r.run_s, 12.0);
        assert!((r.run_processes["bridge"].cpu_pct - 50.0).abs() < 1e-9);
        assert_eq!(r.run_processes["bridge"].rss_max_mib, 3.0);
        // Timeline: one point per step, rates of that step.
        assert_eq!(r.timeline.len(), 3);
        let p = &r.timeline[1];
        assert_eq!(p.t_s, 11.0);
        assert!((p.processes["bridge"].cpu_pct - 50.0).abs() < 1e-9);
        assert_eq!(p.processes["bridge"].rss_mib, 3.0);
        assert_eq!(p.processes["bridge"].udp_drops, 10);
        assert_eq!(p.bridge_endpoints, Some(3.0));
        assert!((p.bridge_packets_sent_pps.unwrap_or(0.0) - 1000.0).abs() < 1e-9);
        assert!((p.machine_busy_pct.unwrap_or(0.0) - 50.0).abs() < 1e-9);
    }

    #[test]
    fn a_process_that_appears_late_is_measured_from_its_first_sample() {
        let t0 = Instant::now();
        let mk = |s: u64, p: Option<u64>| Sample {
            at: t0 + Duration::from_secs(s),
            procs: [(
                "focus".to_owned(),
                p.map(|ticks| ProcSample {
                    cpu_ticks: ticks,
                    rss_kb: 2048,
                    hwm_kb: 2048,
                    threads: 2,
                    udp_drops: 0,
                }),
            )]
            .into_iter()
            .collect(),
            machine: None,
            sfu_cpus: None,
            load1: None,
            udp: None,
            bridge: None,
        };
        let samples = vec![mk(0, None), mk(1, Some(100)), mk(3, Some(300)), mk(4, None)];
        let r = summarize(&samples, t0, t0, t0 + Duration::from_secs(4), 100.0);
        let f = r.processes["focus"];
        assert!((f.cpu_pct - 100.0).abs() < 1e-9, "{f:?}");
        assert!((f.cpu_seconds - 2.0).abs() < 1e-9);
        assert!(r.bridge.is_none());
        // Steps without the process have no point for it.
        assert_eq!(r.timeline.len(), 3);
        assert!(r.timeline[0].processes.is_empty());
        assert_eq!(r.timeline[1].processes["focus"].rss_mib, 2.0);
        assert!(r.timeline[2].processes.is_empty());
    }
}
