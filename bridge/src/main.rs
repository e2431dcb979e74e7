//! The `bridge` binary.
//!
//! `bridge [OPTIONS]` runs the bridge; `bridge healthcheck` and `bridge graceful-shutdown` talk to a
//! running one over its REST API (for images without curl). See `bridge --help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bridge::api::client::{self, GracefulShutdownOptions};
use bridge::colibri_ws::ColibriWs;
use bridge::config::{self, Config};
use bridge::control::ControlPlane;
use bridge::health::HealthRegistry;
use bridge::media::{MediaHandle, MediaPlane, MediaSettings, MediaStats};
use bridge::sfu::SfuConfig;
use bridge::sfu::dsi::DominantSpeakerIdentification;
use bridge::stats::{StatsSample, StatsSource};
use bridge::xmpp::{XmppClients, XmppDeps, XmppStatus};
use clap::{Arg, ArgAction, ArgMatches, Command};
use service::{Env, ProcessSignal, Signals, init_tracing, parse_duration};

const ABOUT: &str = "Jitsi-compatible selective forwarding unit (drop-in for jitsi-videobridge)";

const LONG_ABOUT: &str = "\
Jitsi-compatible selective forwarding unit (drop-in for jitsi-videobridge).

Without a subcommand, runs the bridge. It reads docker-jitsi-meet's jvb environment variables, then an
optional TOML file, then flags (later sources win); a bad value stops start-up with a message naming it.

Lifecycle: POST /colibri/shutdown (or SIGTERM) starts a graceful shutdown: new conferences are refused
until the bridge's endpoints are gone (or graceful_shutdown_max_duration passed), then it reports
shutting_down so the focus moves participants, and exits 0 after shutting_down_delay.
SIGTERM = graceful shutdown request, or exit at once when already shutting down (drained);
a second SIGTERM, or SIGINT, exits at once (exit code 0).";

fn command() -> Command {
    let url = || {
        Arg::new("url")
            .long("url")
            .value_name("URL")
            .value_parser(client::parse_base_url)
            .help("Base URL of the bridge's REST API [default: http://127.0.0.1:$JVB_REST_PORT, 8080]")
    };
    Command::new("bridge")
        .version(env!("CARGO_PKG_VERSION"))
        .about(ABOUT)
        .long_about(LONG_ABOUT)
        .args(config::run_args())
        .args_conflicts_with_subcommands(true)
        .after_help(config::settings_help())
        .subcommand(
            Command::new("healthcheck")
                .about("Exit 0 iff the bridge's GET /about/health answers 200 (for HEALTHCHECK/probes)")
                .arg(url())
                .arg(
                    Arg::new("timeout")
                        .long("timeout")
                        .value_name("DURATION")
                        .value_parser(parse_duration)
                        .default_value("5s")
                        .help("Request timeout"),
                ),
        )
        .subcommand(
            Command::new("graceful-shutdown")
                .about("Ask the bridge to shut down gracefully (POST /colibri/shutdown); for preStop hooks")
                .long_about(
                    "Ask the bridge to shut down gracefully (POST /colibri/shutdown, needs \
                     SHUTDOWN_REST_ENABLED=true). With --wait, poll until the bridge reports shutting_down \
                     with no local endpoints left (it then exits by itself after its shutting-down delay) \
                     or stops answering (it exited). Exit codes: 0 done (also when no bridge is running), \
                     1 request refused or failed, 2 --timeout elapsed.",
                )
                .arg(url())
                .arg(
                    Arg::new("wait")
                        .long("wait")
                        .action(ArgAction::SetTrue)
                        .help("Wait until the bridge has no endpoints left and is shutting down, or has exited"),
                )
                .arg(
                    Arg::new("timeout")
                        .long("timeout")
                        .value_name("DURATION")
                        .value_parser(parse_duration)
                        .help("Give up waiting after this long (exit 2) [default: wait forever]"),
                )
                .arg(
                    Arg::new("interval")
                        .long("interval")
                        .value_name("DURATION")
                        .value_parser(parse_duration)
                        .default_value("2s")
                        .help("Poll period while waiting"),
                ),
        )
}

fn main() -> ExitCode {
    let matches = command().get_matches();
    match matches.subcommand() {
        Some(("healthcheck", m)) => healthcheck(m),
        Some(("graceful-shutdown", m)) => graceful_shutdown(m),
        _ => run(&matches),
    }
}

fn base_url(m: &ArgMatches) -> Result<String, ExitCode> {
    if let Some(url) = m.get_one::<String>("url") {
        return Ok(url.clone());
    }
    client::default_base_url(&Env::from_process()).map_err(|e| {
        eprintln!("bridge: {e}");
        ExitCode::from(2)
    })
}

fn healthcheck(m: &ArgMatches) -> ExitCode {
    let base = match base_url(m) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let timeout = m
        .get_one::<Duration>("timeout")
        .copied()
        .unwrap_or(client::REQUEST_TIMEOUT);
    match client::healthcheck(&base, timeout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("bridge healthcheck: unhealthy: {reason}");
            ExitCode::FAILURE
        }
    }
}

fn graceful_shutdown(m: &ArgMatches) -> ExitCode {
    let base = match base_url(m) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let opts = GracefulShutdownOptions {
        base,
        wait: m.get_flag("wait"),
        timeout: m.get_one::<Duration>("timeout").copied(),
        interval: m
            .get_one::<Duration>("interval")
            .copied()
            .unwrap_or(Duration::from_secs(2)),
    };
    match client::graceful_shutdown(&opts, &mut |line| {
        eprintln!("bridge graceful-shutdown: {line}")
    }) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bridge graceful-shutdown: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(matches: &ArgMatches) -> ExitCode {
    let env = Env::from_process();
    let loaded = match config::load(&env, matches) {
        Ok(l) => l,
        Err(errors) => {
            for e in errors {
                eprintln!("bridge: configuration error: {e}");
            }
            return ExitCode::from(2);
        }
    };
    if matches.get_flag("print-config") {
        print!("{}", loaded.config.to_toml());
        return ExitCode::SUCCESS;
    }
    // rtc-dtls warns once per handshake about the TLS 1.3 extensions every Chromium ClientHello
    // carries (supported_versions, psk modes, key_share): noise, unless asked for explicitly.
    let level = if loaded.config.log.level.contains("rtc_dtls") {
        loaded.config.log.level.clone()
    } else {
        format!(
            "{},rtc_dtls::handshake::handshake_message_client_hello=error",
            loaded.config.log.level
        )
    };
    if let Err(e) = init_tracing(loaded.config.log.format, &level) {
        eprintln!("bridge: {e}");
        return ExitCode::from(2);
    }
    for note in &loaded.notes {
        tracing::warn!("{note}");
    }
    if !loaded.ignored.is_empty() {
        tracing::info!(
            variables = ?loaded.ignored,
            "docker-jitsi-meet variables set but without effect on this bridge"
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(loaded.config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // First, so that a SIGTERM during start-up is a shutdown request rather than a kill.
    let mut signals = Signals::install()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        instance_id = config.instance_id.as_deref().unwrap_or("-"),
        "starting bridge"
    );
    let health = Arc::new(HealthRegistry::new());
    // Dominant speaker: the DSI algorithm JVB uses (bridge::sfu::dsi) rather than loudest-speaker.
    let sfu_config = SfuConfig {
        speaker_detector: DominantSpeakerIdentification::for_sfu,
        silence_timeout: config.media.silence_detection_timeout,
        ..SfuConfig::default()
    };
    let media = match MediaPlane::start(
        MediaSettings::from_config(&config),
        sfu_config,
        Arc::clone(&health),
    )
    .await
    {
        Ok(m) => Some(m),
        Err(e) => {
            // Reported as failed health (/about/health 500, healthcheck IQ error), as JVB does.
            tracing::error!("media plane not started: {e:#}");
            None
        }
    };
    let xmpp_status = config
        .xmpp
        .enabled
        .then(|| Arc::new(XmppStatus::new(config.xmpp.servers.len())));
    if xmpp_status.is_some() {
        // Before the REST API is up, so that nobody sees a healthy bridge that is not in any brewery.
        health.report(
            bridge::xmpp::HEALTH_COMPONENT,
            bridge::health::Health::Degraded("connecting to XMPP".into()),
        );
    }
    let source = Arc::new(BridgeStats {
        media: media.as_ref().map(MediaPlane::stats),
        xmpp: xmpp_status.clone(),
    });
    let control = ControlPlane::start(&config, source, Arc::clone(&health)).await?;
    let xmpp = match &xmpp_status {
        Some(status) => Some(XmppClients::start(
            &config.xmpp,
            XmppDeps {
                media: media
                    .as_ref()
                    .map_or_else(MediaHandle::unavailable, MediaPlane::handle),
                lifecycle: control.lifecycle.clone(),
                stats: control.stats.clone(),
                health: Arc::clone(&health),
                presence_interval: config.stats.interval,
            },
            Arc::clone(status),
        )?),
        None => {
            tracing::info!("XMPP disabled: no brewery, no COLIBRI2 (REST and media only)");
            None
        }
    };
    let colibri_ws = match (&media, config.colibri_ws.enabled) {
        (Some(m), true) => {
            if MediaSettings::from_config(&config)
                .colibri_ws_base
                .is_none()
            {
                tracing::warn!(
                    "colibri-ws enabled but no JVB_WS_DOMAIN (or PUBLIC_URL): its URLs are not advertised"
                );
            }
            let server_id = config
                .colibri_ws
                .server_id
                .clone()
                .unwrap_or_else(|| config.xmpp.muc_nickname.clone());
            Some(
                ColibriWs::start(
                    config.colibri_ws.bind,
                    server_id,
                    m.handle(),
                    m.ws_directory(),
                )
                .await?,
            )
        }
        _ => None,
    };
    let lifecycle = control.lifecycle.clone();
    let mut terms = 0u32;
    loop {
        tokio::select! {
            () = lifecycle.stopped() => break,
            signal = signals.recv() => match signal {
                ProcessSignal::Terminate if terms == 0 => {
                    terms += 1;
                    tracing::info!("SIGTERM: graceful shutdown requested, or exit if already drained (SIGTERM again or SIGINT exits now)");
                    lifecycle.terminate().await;
                }
                other => {
                    tracing::info!(signal = ?other, "exiting now");
                    lifecycle.exit_now().await;
                }
            },
        }
    }
    if let Some(x) = xmpp {
        x.close().await;
    }
    if let Some(ws) = colibri_ws {
        ws.stop();
    }
    if let Some(m) = media {
        m.stop().await;
    }
    control.close().await;
    tracing::info!("bridge stopped");
    Ok(())
}

/// The stats the control plane samples: the media task's counters plus the XMPP connections'.
struct BridgeStats {
    media: Option<Arc<MediaStats>>,
    xmpp: Option<Arc<XmppStatus>>,
}

impl StatsSource for BridgeStats {
    fn sample(&self) -> StatsSample {
        let mut s = self.media.as_ref().map(|m| m.sample()).unwrap_or_default();
        if let Some(x) = &self.xmpp {
            x.fill(&mut s);
        }
        s
    }

    fn local_endpoints(&self) -> u64 {
        self.media.as_ref().map_or(0, |m| m.local_endpoints())
    }
}
