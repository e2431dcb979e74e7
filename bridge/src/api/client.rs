//! The client side of the REST API, for images without curl:
//!
//! - `bridge healthcheck [--url URL]`: exit 0 iff `GET /about/health` answers 200 (Docker
//!   HEALTHCHECK, Kubernetes exec probes).
//! - `bridge graceful-shutdown [--url URL] [--wait] [--timeout SECS]`: `POST /colibri/shutdown`
//!   `{"graceful-shutdown": true}`; with `--wait`, then polls until the bridge is done: either it
//!   reports `shutting_down` with no local endpoints left (it exits by itself after the shutting-down
//!   delay), or its REST port stops answering (it exited). Meant for a Kubernetes `preStop` hook:
//!   returning before the process exits lets the hook finish cleanly (a hook still running when the
//!   container's main process exits is killed and reported as failed), and the SIGTERM the kubelet
//!   sends afterwards is harmless (SIGTERM is itself a graceful-shutdown request, already under way).
//!   If the bridge is not running at all, there is nothing to do: exit 0.
//!
//! The default URL is `http://127.0.0.1:$JVB_REST_PORT` (8080), or `JVB_REST_HOST` when it is a
//! specific address, so the subcommands find the bridge in the same container without arguments.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use service::{Env, HttpClientError, ValueError, http_request, parse_port};

/// Timeout of each HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The REST base URL the subcommands use by default, from the same env vars the bridge reads.
pub fn default_base_url(env: &Env) -> Result<String, ValueError> {
    let port = env.port("JVB_REST_PORT")?.unwrap_or(8080);
    let host = env.parse("JVB_REST_HOST", |v| {
        v.trim()
            .parse::<IpAddr>()
            .map_err(|_| "invalid IP address".to_string())
    })?;
    let host = match host {
        None => "127.0.0.1".to_owned(),
        Some(ip) if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        Some(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        Some(IpAddr::V6(ip)) => format!("[{ip}]"),
        Some(ip) => ip.to_string(),
    };
    Ok(format!("http://{host}:{port}"))
}

/// Checks a `--url` value (`http://host:port`, no trailing path).
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let t = s.trim().trim_end_matches('/');
    let Some(rest) = t.strip_prefix("http://") else {
        return Err("expected http://host[:port]".into());
    };
    if rest.is_empty() || rest.contains('/') {
        return Err("expected http://host[:port] without a path".into());
    }
    if let Some((_, port)) = rest.rsplit_once(':')
        && !port.ends_with(']')
    {
        parse_port(port)?;
    }
    Ok(t.to_owned())
}

/// `GET /about/health`: `Ok(())` iff 200, else the reason.
pub fn healthcheck(base: &str, timeout: Duration) -> Result<(), String> {
    let url = format!("{base}/about/health");
    match http_request("GET", &url, None, timeout) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!("{url}: HTTP {}: {}", r.status, r.text().trim())),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

/// Options of `graceful-shutdown`.
#[derive(Debug, Clone)]
pub struct GracefulShutdownOptions {
    pub base: String,
    pub wait: bool,
    /// Give up waiting after this long (exit 2).
    pub timeout: Option<Duration>,
    /// Poll period while waiting.
    pub interval: Duration,
}

/// How `graceful-shutdown` ended (exit 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownOutcome {
    /// No bridge answered: nothing to shut down.
    NotRunning,
    /// Requested; not waiting.
    Requested,
    /// Waited until the bridge was shutting down with no endpoints left.
    Drained,
    /// Waited until the bridge stopped answering.
    Exited,
}

/// Why `graceful-shutdown` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShutdownError {
    /// The bridge refused the request (exit 1).
    #[error("{0}")]
    Refused(String),
    /// `--timeout` elapsed while waiting (exit 2).
    #[error("timed out after {0:?} waiting for the bridge to finish")]
    TimedOut(Duration),
}

impl ShutdownError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ShutdownError::Refused(_) => 1,
            ShutdownError::TimedOut(_) => 2,
        }
    }
}

/// Runs `graceful-shutdown`; `progress` receives one line per observed change.
pub fn graceful_shutdown(
    opts: &GracefulShutdownOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ShutdownOutcome, ShutdownError> {
    let started = Instant::now();
    let url = format!("{}/colibri/shutdown", opts.base);
    let body = br#"{"graceful-shutdown": true}"#;
    match http_request(
        "POST",
        &url,
        Some(("application/json", body)),
        REQUEST_TIMEOUT,
    ) {
        Ok(r) if r.status == 200 => progress("graceful shutdown requested"),
        Ok(r) => {
            return Err(ShutdownError::Refused(format!(
                "{url}: HTTP {}: {}",
                r.status,
                r.text().trim()
            )));
        }
        Err(HttpClientError::Unreachable { .. }) => {
            progress("the bridge is not running (nothing answers): nothing to do");
            return Ok(ShutdownOutcome::NotRunning);
        }
        Err(e) => return Err(ShutdownError::Refused(format!("{url}: {e}"))),
    }
    if !opts.wait {
        return Ok(ShutdownOutcome::Requested);
    }
    let stats_url = format!("{}/colibri/stats", opts.base);
    let health_url = format!("{}/about/health", opts.base);
    let mut use_stats = true;
    let mut last_line = String::new();
    loop {
        if let Some(limit) = opts.timeout
            && started.elapsed() >= limit
        {
            return Err(ShutdownError::TimedOut(limit));
        }
        let url = if use_stats { &stats_url } else { &health_url };
        match http_request("GET", url, None, REQUEST_TIMEOUT) {
            Err(HttpClientError::Unreachable { .. }) => {
                progress("the bridge stopped answering: it has exited");
                return Ok(ShutdownOutcome::Exited);
            }
            Err(e) => progress(&format!("{url}: {e} (retrying)")),
            Ok(r) if use_stats && r.status == 404 => {
                progress("/colibri/stats is disabled: waiting for the bridge to exit");
                use_stats = false;
                continue;
            }
            Ok(r) if use_stats && r.status == 200 => {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
                let endpoints = v
                    .get("local_endpoints")
                    .or_else(|| v.get("participants"))
                    .and_then(serde_json::Value::as_u64);
                let shutting_down = v.get("shutting_down").and_then(serde_json::Value::as_bool);
                let line = format!(
                    "local endpoints: {}, shutting down: {}",
                    endpoints.map_or_else(|| "?".into(), |n| n.to_string()),
                    shutting_down.map_or_else(|| "?".into(), |b| b.to_string()),
                );
                if line != last_line {
                    progress(&line);
                    last_line = line;
                }
                if shutting_down == Some(true) && endpoints == Some(0) {
                    progress(
                        "the bridge is shutting down with no endpoints left; it exits by itself",
                    );
                    return Ok(ShutdownOutcome::Drained);
                }
            }
            Ok(_) => {}
        }
        let mut pause = opts.interval;
        if let Some(limit) = opts.timeout {
            pause = pause.min(limit.saturating_sub(started.elapsed()));
        }
        std::thread::sleep(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_urls_follow_the_bridge_env() {
        assert_eq!(
            default_base_url(&Env::default()).unwrap(),
            "http://127.0.0.1:8080"
        );
        let env = Env::from_pairs([("JVB_REST_HOST", "0.0.0.0"), ("JVB_REST_PORT", "8181")]);
        assert_eq!(default_base_url(&env).unwrap(), "http://127.0.0.1:8181");
        let env = Env::from_pairs([("JVB_REST_HOST", "::")]);
        assert_eq!(default_base_url(&env).unwrap(), "http://[::1]:8080");
        let env = Env::from_pairs([("JVB_REST_HOST", "10.1.2.3")]);
        assert_eq!(default_base_url(&env).unwrap(), "http://10.1.2.3:8080");
        let env = Env::from_pairs([("JVB_REST_PORT", "http")]);
        let e = default_base_url(&env).unwrap_err();
        assert!(e.to_string().starts_with("JVB_REST_PORT=\"http\""), "{e}");
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(parse_base_url("https://x").is_err());
        assert!(parse_base_url("http://x:8080/about").is_err());
        assert!(parse_base_url("http://x:port").is_err());
        assert!(parse_base_url("http://[::1]:8080").is_ok());
    }

    #[test]
    fn not_running_is_not_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let mut lines = Vec::new();
        let r = graceful_shutdown(
            &GracefulShutdownOptions {
                base: base.clone(),
                wait: true,
                timeout: Some(Duration::from_secs(5)),
                interval: Duration::from_millis(50),
            },
            &mut |l| lines.push(l.to_owned()),
        );
        assert_eq!(r, Ok(ShutdownOutcome::NotRunning));
        assert!(healthcheck(&base, Duration::from_secs(1)).is_err());
    }
}
