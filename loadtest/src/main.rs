//! `loadtest`: browserless participants against a local (default) or existing Jitsi deployment.
//!
//! ```text
//! cargo build --release -p bridge -p focus -p loadtest
//! target/release/loadtest --conferences 5 --participants 4 --duration 60s \
//!     --json run.json --markdown run.md
//! # the same participants through a local Janus (VideoRoom), then both in one table:
//! target/release/loadtest --sfu janus --participants 10 --json janus.json
//! target/release/loadtest --compare run.json janus.json
//! # the SFU in its own network namespace (root): the kernel's receive work for each side's
//! # datagrams runs on that side's CPU (loadtest/REPORT.md, "How the split-namespace mode works")
//! taskset -c 1 target/release/loadtest --split-netns --sfu-cpus 0 --participants 40
//! # the current lib-jitsi-meet's dialect: AV1 L3T3_KEY, source-based constraints, one tile viewer,
//! # SSRC rewriting (the local focus enables it)
//! target/release/loadtest --dialect current --participants 4 --senders 2 --tile-viewers 1 \
//!     --ssrc-rewriting
//! ```
//!
//! Exit status: 0 when every participant joined and nothing failed, 2 when the run completed with
//! failures (the report says which), 1 when it could not run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use bridge::transport::dtls::SrtpProfile;
use clap::Parser;
use loadtest::deployment::{LocalDeployment, LocalOptions, SfuPlace, Target};
use loadtest::janus::{JanusOptions, JanusServer};
use loadtest::media::ReceiveView;
use loadtest::netns;
use loadtest::scenario::{self, ScenarioConfig};
use signaling::xmpp::ServerAddr;

/// Parses `30s`, `500ms`, `2m` or plain seconds.
fn duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s}"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("not a duration: {s}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

#[derive(Debug, Parser)]
#[command(
    name = "loadtest",
    about = "Browserless Jitsi participants (real client protocol) and server-side measurements"
)]
struct Args {
    /// Number of conferences.
    #[arg(long, default_value_t = 1)]
    conferences: usize,
    /// Participants per conference.
    #[arg(long, default_value_t = 3)]
    participants: usize,
    /// Senders (audio + video) per conference; the others only receive.
    #[arg(long)]
    senders: Option<usize>,
    /// Measurement window (after everybody joined and the warm-up): `60s`, `2m`, `500ms`.
    #[arg(long, value_parser = duration, default_value = "30s")]
    duration: Duration,
    /// Between "everybody joined" and the measurement window.
    #[arg(long, value_parser = duration, default_value = "5s")]
    warmup: Duration,
    /// Server-side sampling period (CPU, RSS, bridge stats).
    #[arg(long, value_parser = duration, default_value = "1s")]
    sample_interval: Duration,
    /// VP8 simulcast with 3 encodings (180p/360p/720p); false = one 720p encoding.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    simulcast: bool,
    /// Joins per second (all conferences together).
    #[arg(long, default_value_t = 5.0)]
    join_rate: f64,
    /// Per participant: login, conference, MUC, Jingle and the media connection.
    #[arg(long, value_parser = duration, default_value = "60s")]
    join_timeout: Duration,
    /// maxHeight asked (ReceiverVideoConstraints) for the participant on stage.
    #[arg(long, default_value_t = 720)]
    stage_height: i32,
    /// maxHeight asked for everybody else.
    #[arg(long, default_value_t = 180)]
    thumbnail_height: i32,
    /// The last this many participants of each conference use tile view (everybody at
    /// --thumbnail-height, nobody on stage).
    #[arg(long, default_value_t = 0)]
    tile_viewers: usize,
    /// The lib-jitsi-meet the participants imitate: `2021` (endpoint-based signalling, VP8
    /// simulcast) or `current` (source names only, source-based constraints, AV1 SVC).
    #[arg(long, default_value = "2021")]
    dialect: loadtest::dialect::Dialect,
    /// What the `current` dialect's senders send: `av1` (L3T3_KEY with the Dependency
    /// Descriptor, when the focus offers it) or `vp8` (simulcast).
    #[arg(long, default_value = "av1", value_parser = ["av1", "vp8"])]
    codec: String,
    /// `current` dialect: ask for SSRC rewriting (`http://jitsi.org/ssrc-rewriting-1`); the local
    /// deployment's focus then enables it (`JICOFO_CONF_SSRC_REWRITING`).
    #[arg(long)]
    ssrc_rewriting: bool,
    /// SRTP profiles offered: gcm, cm (AES_CM_128_HMAC_SHA1_80) or both (GCM first, as Chromium).
    #[arg(long, default_value = "both")]
    srtp: String,
    /// Write the full report (JSON: summary, server timeline, every participant's tracks) here.
    #[arg(long, alias = "output")]
    json: Option<PathBuf>,
    /// Write the report as Markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Worker threads of the load generator's runtime.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Directory with the `bridge` and `focus` binaries for the local deployment (default: next to
    /// this executable).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Use an existing deployment: Prosody c2s `host:port` (loopback only).
    #[arg(long)]
    xmpp: Option<String>,
    /// Anonymous domain of the existing deployment.
    #[arg(long, default_value = "meet.jitsi")]
    domain: String,
    /// MUC domain (default `muc.<domain>`).
    #[arg(long)]
    muc_domain: Option<String>,
    /// Focus address (default `focus.<domain>`).
    #[arg(long)]
    focus: Option<String>,
    /// The bridge's `/colibri/stats` URL (existing deployment).
    #[arg(long)]
    bridge_stats: Option<String>,
    /// Processes to sample, `name=pid` (existing deployment), e.g. `bridge=1234`.
    #[arg(long = "pid")]
    pids: Vec<String>,
    /// Room name prefix.
    #[arg(long, default_value = "loadtest")]
    room_prefix: String,
    /// The SFU of the local deployment: `jitsi` (Prosody + our bridge + our focus) or `janus`
    /// (Debian's Janus with its VideoRoom plugin, on a temporary loopback configuration).
    #[arg(long, default_value = "jitsi", value_parser = ["jitsi", "janus"])]
    sfu: String,
    /// Pin the SFU process (our bridge or Janus) to these CPUs (`taskset -c` list, e.g. `1`).
    #[arg(long)]
    sfu_cpus: Option<String>,
    /// Run the SFU in a network namespace of its own and everything else (these participants,
    /// Prosody, the focus) in another, joined by a veth pair (10.213.0.1 ↔ 10.213.0.2) with
    /// Receive Packet Steering on each end to that side's CPUs, so that the kernel's receive work
    /// for the SFU's datagrams is not charged to it. Needs root and `--sfu-cpus`; both
    /// namespaces are removed at the end, on error and on SIGINT/SIGTERM.
    #[arg(long)]
    split_netns: bool,
    /// The participants ask for UDP GRO on their sockets, so that on loopback a GSO message of
    /// the bridge (one receiver's run of equal-sized datagrams) reaches them whole instead of
    /// being cut and delivered datagram by datagram in the bridge's softirq, as a NIC with UDP
    /// segmentation offload spares a bridge in a deployment (loadtest/REPORT.md). Janus sends no
    /// GSO messages, so it changes nothing there.
    #[arg(long)]
    receiver_gro: bool,
    /// The `janus` executable (`--sfu janus`).
    #[arg(long, default_value = "janus")]
    janus_bin: PathBuf,
    /// Print one Markdown table comparing the JSON reports given (runs of either SFU) and exit.
    #[arg(long, num_args = 1.., value_name = "JSON")]
    compare: Vec<PathBuf>,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::from(2),
        Err(e) => {
            eprintln!("loadtest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the scenario; `Ok(false)` when it ran but something failed.
fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOADTEST_LOG")
                // rtc-dtls warns about every ClientHello extension it does not know (Janus's OpenSSL
                // sends several).
                .unwrap_or_else(|_| "loadtest=info,rtc_dtls=error,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if !args.compare.is_empty() {
        let mut runs = Vec::new();
        for path in &args.compare {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a loadtest JSON report", path.display()))?;
            let label = path.file_stem().map_or_else(
                || path.display().to_string(),
                |s| s.to_string_lossy().into_owned(),
            );
            runs.push((label, v));
        }
        print!("{}", loadtest::report::compare_markdown(&runs));
        return Ok(true);
    }
    if args.participants == 0 || args.conferences == 0 {
        bail!("--conferences and --participants must be at least 1");
    }
    let srtp_profiles = match args.srtp.as_str() {
        "gcm" => vec![SrtpProfile::AeadAes128Gcm],
        "cm" => vec![SrtpProfile::Aes128CmHmacSha1_80],
        "both" => vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80],
        other => bail!("--srtp {other}: expected gcm, cm or both"),
    };
    if args.ssrc_rewriting && args.dialect != loadtest::dialect::Dialect::Current {
        bail!("--ssrc-rewriting needs --dialect current (the 2021 client cannot do it)");
    }
    // Before any other thread exists: the network namespace is per thread, and threads (the
    // runtime's, the sampler's) inherit it when created.
    let mut place = SfuPlace {
        cpus: args.sfu_cpus.clone(),
        ..SfuPlace::default()
    };
    let mut sfu_cpus = Vec::new();
    let netns = if args.split_netns {
        if args.xmpp.is_some() {
            bail!("--split-netns starts its own deployment: no --xmpp");
        }
        let cpus = args
            .sfu_cpus
            .as_deref()
            .context("--split-netns needs --sfu-cpus (RPS sends the SFU's receive work there)")?;
        let sfu_mask = netns::cpu_mask(cpus)?;
        let ns = netns::SplitNetns::create(netns::own_cpu_mask()?, sfu_mask)?;
        ns.remove_on_signal()?;
        ns.enter_gen()?;
        eprintln!(
            "split namespaces: {} ({}, this process) and {} ({}, the SFU on CPUs {cpus})",
            ns.gen_ns,
            netns::GEN_ADDR,
            ns.sfu_ns,
            netns::SFU_ADDR
        );
        place.netns_prefix = ns.sfu_prefix();
        place.addr = netns::SFU_ADDR.into();
        place.gen_addr = netns::GEN_ADDR.into();
        sfu_cpus = netns::mask_cpus(sfu_mask);
        Some(ns)
    } else {
        None
    };
    let client = loadtest::dialect::Client {
        dialect: args.dialect,
        av1: args.codec == "av1",
        ssrc_rewriting: args.ssrc_rewriting,
    };
    let cfg = ScenarioConfig {
        conferences: args.conferences,
        participants: args.participants,
        senders: args.senders.unwrap_or(args.participants),
        duration: args.duration,
        warmup: args.warmup,
        simulcast: args.simulcast,
        join_rate: args.join_rate,
        join_timeout: args.join_timeout,
        room_prefix: args.room_prefix.clone(),
        view: ReceiveView {
            stage_height: args.stage_height,
            thumbnail_height: args.thumbnail_height,
            tile_view: false,
        },
        tile_viewers: args.tile_viewers,
        client,
        srtp_profiles,
        sample_interval: args.sample_interval.max(Duration::from_millis(100)),
        bind: place.gen_addr,
        receiver_gro: args.receiver_gro,
        sfu_cpus,
        ..ScenarioConfig::default()
    };

    // The deployment: existing (given by address) or local.
    let mut local = None;
    let mut janus = None;
    let target = match &args.xmpp {
        None if args.sfu == "janus" => {
            let opts = JanusOptions {
                binary: args.janus_bin.clone(),
                place: place.clone(),
                ..JanusOptions::default()
            };
            eprintln!("starting Janus ({})", opts.binary.display());
            let j = JanusServer::start(&opts)?;
            let t = Target::janus(j.url.clone(), j.pid())?;
            janus = Some(j);
            t
        }
        Some(_) if args.sfu == "janus" => bail!("--sfu janus starts its own Janus: no --xmpp"),
        Some(addr) => {
            let server = ServerAddr::parse(addr, 5222)?;
            if !server.is_loopback() {
                bail!("--xmpp {addr}: only loopback deployments are allowed here");
            }
            let mut pids = Vec::new();
            for p in &args.pids {
                let (n, pid) = p.split_once('=').context("--pid expects name=pid")?;
                pids.push((n.to_owned(), pid.parse().context("--pid: not a number")?));
            }
            Target {
                server,
                muc_domain: args
                    .muc_domain
                    .clone()
                    .unwrap_or_else(|| format!("muc.{}", args.domain)),
                focus: args
                    .focus
                    .clone()
                    .unwrap_or_else(|| format!("focus.{}", args.domain)),
                domain: args.domain.clone(),
                bridge_stats_url: args.bridge_stats.clone(),
                pids,
                janus_url: None,
            }
        }
        None => {
            let mut opts = LocalOptions::next_to_current_exe()?;
            if let Some(d) = &args.bin_dir {
                opts.bin_dir = d.clone();
            }
            opts.bridge = place.clone();
            if args.ssrc_rewriting {
                opts.focus_env
                    .push(("JICOFO_CONF_SSRC_REWRITING".into(), "true".into()));
            }
            eprintln!(
                "starting Prosody + bridge + focus from {}",
                opts.bin_dir.display()
            );
            let d = LocalDeployment::start(&opts)?;
            let t = d.target();
            local = Some(d);
            t
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(scenario::run(&cfg, &target))?;
    if let Some(d) = local.as_mut()
        && let Err(e) = d.check_alive()
    {
        report.add_failure(format!("local deployment: {e}"));
    }
    if let Some(j) = janus.as_mut()
        && let Some(e) = j.exited()
    {
        report.add_failure(e);
    }
    print!("{}", report.text());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("JSON report written to {}", path.display());
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, report.markdown())
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("Markdown report written to {}", path.display());
    }
    drop(runtime);
    drop(local);
    drop(janus);
    drop(netns);
    Ok(report.succeeded())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(duration("x").is_err());
        assert!(duration("-1s").is_err());
    }
}
