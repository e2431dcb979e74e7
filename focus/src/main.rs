//! The `focus` binary.
//!
//! `focus [OPTIONS]` runs the focus; `focus healthcheck [--url URL]` exits 0 iff a running focus's
//! `/about/health` answers 200 (for images without curl; with health checks turned off, iff its REST API
//! answers). See `focus --help`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use focus::config::{Config, Flags};
use service::{LogFormat, ProcessSignal, Signals, http_request, init_tracing};
use tracing::{error, info, warn};

/// Jitsi conference focus (drop-in for Jicofo).
///
/// Without a subcommand, runs the focus. It reads docker-jitsi-meet's jicofo environment variables,
/// then an optional TOML file, then flags (later sources win); a bad value stops start-up with a
/// message naming it. SIGTERM or SIGINT leave every room and exit 0.
#[derive(Debug, Parser)]
#[command(name = "focus", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Exit 0 iff the focus's GET /about/health answers 200.
    ///
    /// With JICOFO_ENABLE_HEALTH_CHECKS=false the focus serves no /about/health (as Jicofo); the
    /// default URL is then /about/version: the check only says the focus answers.
    Healthcheck {
        /// Health URL (default: from JICOFO_REST_HOST/JICOFO_REST_PORT as the focus itself reads
        /// them, on 127.0.0.1 when bound to all interfaces; http://127.0.0.1:8888/about/health).
        #[arg(long)]
        url: Option<String>,
        /// Request timeout in seconds.
        #[arg(long, default_value_t = 5)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck { url, timeout }) => {
            let url = match url.map_or_else(default_health_url, Ok) {
                Ok(u) => u,
                Err(e) => {
                    eprintln!("focus healthcheck: configuration error: {e}");
                    return ExitCode::from(2);
                }
            };
            match http_request("GET", &url, None, Duration::from_secs(timeout)) {
                Ok(r) if r.status == 200 => ExitCode::SUCCESS,
                Ok(r) => {
                    eprintln!("focus healthcheck: {} {}", r.status, r.text().trim());
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("focus healthcheck: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        None => run(&cli.flags),
    }
}

/// The health URL of a focus started with this process's environment (the image's HEALTHCHECK runs
/// in the container's environment): `/about/health`, or `/about/version` when health checks are off.
fn default_health_url() -> Result<String, focus::config::ConfigError> {
    let mut config = Config::default();
    config.apply_env(&|name: &str| std::env::var(name).ok())?;
    let host = if config.rest.host.is_unspecified() {
        std::net::IpAddr::from([127, 0, 0, 1])
    } else {
        config.rest.host
    };
    let path = if config.rest.health {
        "/about/health"
    } else {
        "/about/version"
    };
    Ok(format!(
        "http://{}{path}",
        std::net::SocketAddr::new(host, config.rest.port)
    ))
}

fn run(flags: &Flags) -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let config = match Config::load(&env, flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("focus: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let format = if config.log_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    };
    let filter = std::env::var("FOCUS_LOG").unwrap_or_else(|_| "info".into());
    if let Err(e) = init_tracing(format, &filter) {
        eprintln!("focus: {e}");
        return ExitCode::from(2);
    }
    for i in focus::docker_env::ignored(&env) {
        warn!(variable = i.name, value = %i.value, "{} is ignored: {}", i.name, i.effect);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("focus: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("focus: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let mut signals = Signals::install().context("installing signal handlers")?;
    let running = focus::shell::start(&config)?;
    let metrics = Arc::new(focus::metrics::FocusMetrics::new().context("metrics registry")?);
    let addr = focus::shell::rest_addr(&config);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the REST API to {addr}"))?;
    info!(rest = %listener.local_addr().unwrap_or(addr), xmpp = %config.client.host, "focus started");
    let app = focus::api::router(running.handle.clone(), metrics, config.rest.health);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let signal: ProcessSignal = signals.recv().await;
    info!(?signal, "stopping");
    running.stop().await;
    server.abort();
    Ok(())
}
