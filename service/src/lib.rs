//! Process plumbing shared by the bridge and the focus binaries (the loadtest's probes use
//! [`http_request`] too). Kept out of `signaling`, which holds wire formats and XMPP only.
//!
//! Both binaries replace a docker-jitsi-meet container, so both read environment variables, TOML and
//! flags, log through `tracing`, serve `/about/version` and `/metrics`, stop on signals, and ship
//! `healthcheck`-style subcommands for images without curl. The pieces here are generic: nothing in
//! this crate knows about bridges or conferences.
//!
//! - [`ValueError`] / [`Origin`]: a bad setting names where it came from and the value, e.g.
//!   `JVB_PORT="abc": invalid port`.
//! - [`Env`]: a snapshot of the environment with typed, error-naming readers (empty = unset, as the
//!   docker images' templates treat it).
//! - value parsers ([`parse_bool`], [`parse_port`], [`parse_duration`], [`parse_list`],
//!   [`HostPort::parse`]) shared by the env, TOML and flag layers.
//! - [`init_tracing`]: text or JSON logs on stderr with an env-filter level.
//! - [`VersionInfo`], [`common_routes`]: the `/about/version` and `/metrics` routes.
//! - [`encode_prometheus_text`]: Prometheus text exposition format 0.0.4.
//! - [`Signals`]: SIGTERM / SIGINT as a stream.
//! - [`http_request`]: a tiny blocking HTTP/1.1 client for loopback probes (healthcheck subcommands).
//! - [`settings`]: env → TOML → flags layering driven by one table of settings per binary.

pub mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use thiserror::Error;

// ---------------------------------------------------------------------------------------------------
// Errors naming their source

/// Where a setting's value came from; part of every error about that value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An environment variable, by name.
    Env(String),
    /// A key (dotted path) in a TOML file.
    Toml { file: String, key: String },
    /// A command-line flag, by long name without the dashes.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env(name) => write!(f, "{name}"),
            Origin::Toml { file, key } => write!(f, "{key} (in {file})"),
            Origin::Flag(name) => write!(f, "--{name}"),
        }
    }
}

/// A setting whose value does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{origin}={value:?}: {reason}")]
pub struct ValueError {
    pub origin: Origin,
    pub value: String,
    pub reason: String,
}

impl ValueError {
    pub fn new(origin: Origin, value: impl Into<String>, reason: impl Into<String>) -> Self {
        ValueError {
            origin,
            value: value.into(),
            reason: reason.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Value parsers (shared by env, TOML and flags; they return the reason only, the caller adds the origin)

/// Parses a boolean the way the docker images' templates accept them: `true/false`, `1/0`,
/// `yes/no`, `on/off` (any case). Anything else is an error rather than silently false.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("invalid boolean (expected true/false, 1/0, yes/no or on/off)".into()),
    }
}

/// Parses a TCP/UDP port number, `0..=65535` (0 means "any free port" where the caller allows it).
pub fn parse_port(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<u16>()
        .map_err(|_| "invalid port (expected an integer 0..=65535)".into())
}

/// Parses a non-negative integer.
pub fn parse_u64(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<u64>()
        .map_err(|_| "invalid number (expected a non-negative integer)".into())
}

/// Parses a duration: an integer number of seconds (`90`), or a number with a unit (`250ms`, `30s`,
/// `5m`, `24h`, `1d`; also the HOCON spellings `30 seconds`, `1 minute`, `24 hours`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = "invalid duration (expected e.g. 90, 250ms, 30s, 5m, 24h)";
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(HINT.into());
    }
    let value: f64 = num.parse().map_err(|_| HINT.to_string())?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
        "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 0.001,
        "m" | "min" | "mins" | "minute" | "minutes" => 60.0,
        "h" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        _ => return Err(HINT.into()),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=10.0 * 365.0 * 86_400.0).contains(&secs) {
        return Err("duration out of range (at most 10 years)".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Formats a duration in the shortest unit [`parse_duration`] reads back exactly.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// Splits a comma-separated list, trimming items and dropping empty ones (`"a, b,,c"` → a, b, c).
pub fn parse_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A `host[:port]` pair (`[v6]:port` for IPv6 literals); the port is optional so that a separate
/// default (e.g. `XMPP_PORT`) can apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    /// Parses one `host[:port]` item.
    pub fn parse(s: &str) -> Result<HostPort, String> {
        let t = s.trim();
        let (host, port) = if let Some(rest) = t.strip_prefix('[') {
            let Some((h, after)) = rest.split_once(']') else {
                return Err(format!("{t:?}: unterminated [ in IPv6 address"));
            };
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{t:?}: expected :port after ]"))?,
                ),
            };
            (h, port)
        } else if t.matches(':').count() > 1 {
            return Err(format!("{t:?}: write IPv6 addresses as [addr]:port"));
        } else {
            match t.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (t, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{t:?}: empty host"));
        }
        if host
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/@?#,".contains(c))
        {
            return Err(format!("{t:?}: invalid host name"));
        }
        let port = match port {
            None => None,
            Some(p) => Some(parse_port(p).map_err(|e| format!("{t:?}: {e}"))?),
        };
        Ok(HostPort {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` text with `default_port` filled in (IPv6 hosts bracketed).
    pub fn to_string_with_default(&self, default_port: u16) -> String {
        let port = self.port.unwrap_or(default_port);
        if self.host.contains(':') {
            format!("[{}]:{port}", self.host)
        } else {
            format!("{}:{port}", self.host)
        }
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => write!(f, "{host}:{p}"),
            None => write!(f, "{host}"),
        }
    }
}

/// Parses a comma-separated list of `host[:port]`.
pub fn parse_host_ports(s: &str) -> Result<Vec<HostPort>, String> {
    parse_list(s)
        .iter()
        .map(|item| HostPort::parse(item))
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// Environment

/// A snapshot of environment variables. Reading from a snapshot (rather than `std::env` on demand)
/// lets tests build one without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The current process environment (non-UTF-8 values are read lossily; they then fail to parse
    /// with an error naming the variable).
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars_os()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect(),
        }
    }

    /// An environment made of the given pairs (tests, embedding).
    pub fn from_pairs<I, K, V>(pairs: I) -> Env
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The variable's value; empty or all-whitespace counts as unset (docker compose passes unset
    /// `.env` entries as empty strings, and the images' templates treat them as unset too).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// Reads and parses a variable with `parse`; `Ok(None)` when unset.
    pub fn parse<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ValueError> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => parse(raw)
                .map(Some)
                .map_err(|reason| ValueError::new(Origin::Env(name.into()), raw, reason)),
        }
    }

    /// A boolean variable (see [`parse_bool`]).
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ValueError> {
        self.parse(name, parse_bool)
    }

    /// A port variable (see [`parse_port`]).
    pub fn port(&self, name: &str) -> Result<Option<u16>, ValueError> {
        self.parse(name, parse_port)
    }

    /// A duration variable (see [`parse_duration`]).
    pub fn duration(&self, name: &str) -> Result<Option<Duration>, ValueError> {
        self.parse(name, parse_duration)
    }

    /// A string variable, trimmed.
    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(|v| v.trim().to_owned())
    }
}

/// This host's name: `$HOSTNAME` (set by container runtimes), else the kernel's, else `None`.
pub fn hostname(env: &Env) -> Option<String> {
    env.string("HOSTNAME").or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    })
}

// ---------------------------------------------------------------------------------------------------
// Logging

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("invalid log format (expected text or json)".into()),
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Checks a log filter (`info`, `debug`, `warn,bridge=debug` — tracing env-filter syntax).
pub fn parse_log_filter(s: &str) -> Result<String, String> {
    let t = s.trim();
    tracing_subscriber::EnvFilter::builder()
        .parse(t)
        .map(|_| t.to_owned())
        .map_err(|e| format!("invalid log level/filter: {e}"))
}

/// Installs the global `tracing` subscriber writing to stderr.
pub fn init_tracing(format: LogFormat, filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    let result = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}

// ---------------------------------------------------------------------------------------------------
// Version, metrics and the routes every service serves

/// The `/about/version` document (`{"name","version","os"}`, as jicoco's Version resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub name: String,
    pub version: String,
    pub os: String,
}

impl VersionInfo {
    /// Version info for this build on this OS.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> VersionInfo {
        VersionInfo {
            name: name.into(),
            version: version.into(),
            os: os_name().into(),
        }
    }
}

/// The OS name as the Java services report it (`os.name`): "Linux", "Mac OS X", "Windows" …
pub fn os_name() -> &'static str {
    match std::env::consts::OS {
        "linux" => "Linux",
        "macos" => "Mac OS X",
        "windows" => "Windows",
        "freebsd" => "FreeBSD",
        other => other,
    }
}

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders a registry in the Prometheus text format 0.0.4.
pub fn encode_prometheus_text(registry: &prometheus::Registry) -> String {
    let families = registry.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode metrics");
            format!("# error encoding metrics: {e}\n")
        }
    }
}

/// Produces the `/metrics` body on demand (so the caller can refresh gauges first).
pub type MetricsRenderer = Arc<dyn Fn() -> String + Send + Sync>;

/// `GET /about/version` and `GET /metrics`, mergeable into any service's router.
pub fn common_routes<S>(version: VersionInfo, metrics: MetricsRenderer) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let version = Arc::new(version);
    Router::new()
        .route(
            "/about/version",
            get(move || {
                let version = Arc::clone(&version);
                async move { axum::Json((*version).clone()) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(header::CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE)],
                        metrics(),
                    )
                }
            }),
        )
}

/// A plain-text error response.
pub fn text_response(status: StatusCode, message: impl Into<String>) -> Response {
    let mut body = message.into();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Fallback for unknown paths: 404 with a short message.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    text_response(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", uri.path()),
    )
}

// ---------------------------------------------------------------------------------------------------
// Signals

/// A termination signal the process received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessSignal {
    /// SIGTERM: what `docker stop` and the kubelet send.
    Terminate,
    /// SIGINT: Ctrl-C.
    Interrupt,
}

/// SIGTERM and SIGINT as a stream. Install early: once installed, the signals no longer kill the
/// process by default, they are delivered here.
#[cfg(unix)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Installs the handlers (needs a tokio runtime).
    pub fn install() -> io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal.
    pub async fn recv(&mut self) -> ProcessSignal {
        tokio::select! {
            _ = self.term.recv() => ProcessSignal::Terminate,
            _ = self.int.recv() => ProcessSignal::Interrupt,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// A tiny HTTP/1.1 client for loopback probes

/// The largest response body [`http_request`] reads.
pub const MAX_HTTP_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A response read by [`http_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why an HTTP probe failed.
#[derive(Debug, Error)]
pub enum HttpClientError {
    /// The URL is not `http://host[:port][/path]`.
    #[error("bad URL {0:?}: expected http://host[:port][/path]")]
    BadUrl(String),
    /// No TCP connection could be made (nothing listening, refused, unreachable, timed out).
    #[error("cannot connect to {addr}: {source}")]
    Unreachable { addr: String, source: io::Error },
    /// The connection broke or timed out mid-exchange.
    #[error("I/O error talking to {addr}: {source}")]
    Io { addr: String, source: io::Error },
    /// The peer answered something that is not HTTP/1.x.
    #[error("bad HTTP response from {addr}: {reason}")]
    BadResponse { addr: String, reason: String },
}

/// Sends one request (`Connection: close`) and reads the whole response. Plain `http://` only: it
/// is meant for probing a service's own REST port on loopback from a healthcheck or preStop hook,
/// in images that have no curl.
pub fn http_request(
    method: &str,
    url: &str,
    body: Option<(&str, &[u8])>,
    timeout: Duration,
) -> Result<HttpResponse, HttpClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| HttpClientError::BadUrl(url.into()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let hp = HostPort::parse(authority).map_err(|_| HttpClientError::BadUrl(url.into()))?;
    let addr_text = hp.to_string_with_default(80);
    let addrs: Vec<_> = addr_text
        .to_socket_addrs()
        .map_err(|source| HttpClientError::Unreachable {
            addr: addr_text.clone(),
            source,
        })?
        .collect();
    let mut last_err = io::Error::new(io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let Some(mut stream) = stream else {
        return Err(HttpClientError::Unreachable {
            addr: addr_text,
            source: last_err,
        });
    };
    let io_err = |source| HttpClientError::Io {
        addr: addr_text.clone(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;

    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: */*\r\nUser-Agent: jitsi-rs-probe\r\n"
    );
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    } else if method != "GET" && method != "HEAD" {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).map_err(io_err)?;
    if let Some((_, bytes)) = body {
        stream.write_all(bytes).map_err(io_err)?;
    }
    stream.flush().map_err(io_err)?;

    let mut raw = Vec::new();
    stream
        .take(MAX_HTTP_RESPONSE_BYTES as u64 + 64 * 1024)
        .read_to_end(&mut raw)
        .map_err(io_err)?;
    parse_http_response(&raw).map_err(|reason| HttpClientError::BadResponse {
        addr: addr_text.clone(),
        reason,
    })
}

/// Parses a complete HTTP/1.x response (status line, headers, body by Content-Length, chunked, or
/// up to the end).
fn parse_http_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(raw.get(..head_end).ok_or("truncated")?)
        .map_err(|_| "headers are not UTF-8")?;
    let rest = raw.get(head_end + 4..).unwrap_or(&[]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked = find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len.parse().map_err(|_| "bad Content-Length")?;
        if len > MAX_HTTP_RESPONSE_BYTES {
            return Err("response too large".into());
        }
        rest.get(..len)
            .ok_or("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        content_type: find("content-type"),
        headers,
        body,
    })
}

fn decode_chunked(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size")?;
        let size_text = std::str::from_utf8(data.get(..line_end).unwrap_or(&[]))
            .map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        data = data.get(line_end + 2..).unwrap_or(&[]);
        if size == 0 {
            return Ok(out);
        }
        if out.len() + size > MAX_HTTP_RESPONSE_BYTES {
            return Err("response too large".into());
        }
        out.extend_from_slice(data.get(..size).ok_or("truncated chunk")?);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[test]
    fn value_error_names_origin_and_value() {
        let e = ValueError::new(Origin::Env("JVB_PORT".into()), "abc", "invalid port");
        assert_eq!(e.to_string(), r#"JVB_PORT="abc": invalid port"#);
        let e = ValueError::new(
            Origin::Toml {
                file: "b.toml".into(),
                key: "media.port".into(),
            },
            "x",
            "invalid port",
        );
        assert_eq!(e.to_string(), r#"media.port (in b.toml)="x": invalid port"#);
        let e = ValueError::new(Origin::Flag("port".into()), "x", "invalid port");
        assert_eq!(e.to_string(), r#"--port="x": invalid port"#);
    }

    #[test]
    fn bools() {
        for t in ["true", "TRUE", "1", "yes", "On", " true "] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "0", "no", "off", "False"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "2", "truthy", "y"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port("10000"), Ok(10000));
        assert_eq!(parse_port("0"), Ok(0));
        assert_eq!(parse_port("65535"), Ok(65535));
        for bad in ["65536", "-1", "abc", "", "1.5"] {
            assert!(parse_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1 minutes"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("24 hours"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "abc", "5x", "-1s", "s", "99999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for d in [0, 1, 999, 1000, 60_000, 90_000, 3_600_000, 86_400_000] {
            let d = Duration::from_millis(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn lists_and_host_ports() {
        assert_eq!(parse_list(" a, b,,c ,"), vec!["a", "b", "c"]);
        assert!(parse_list("").is_empty());
        let hp = parse_host_ports("xmpp.meet.jitsi, prosody:5223,[::1]:5222,[fe80::1]").unwrap();
        assert_eq!(hp[0].host, "xmpp.meet.jitsi");
        assert_eq!(hp[0].port, None);
        assert_eq!(hp[1].port, Some(5223));
        assert_eq!(hp[2].host, "::1");
        assert_eq!(hp[2].to_string_with_default(1), "[::1]:5222");
        assert_eq!(hp[3].to_string(), "[fe80::1]");
        for bad in [
            ":5222",
            "host:abc",
            "host:70000",
            "::1",
            "[::1",
            "a b",
            "[::1]x",
        ] {
            assert!(HostPort::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_treats_empty_as_unset_and_names_bad_values() {
        let env = Env::from_pairs([("A", ""), ("B", "  "), ("P", "abc"), ("Q", " 42 ")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.get("B"), None);
        assert_eq!(env.port("A"), Ok(None));
        assert_eq!(env.port("Q"), Ok(Some(42)));
        let err = env.port("P").unwrap_err();
        assert_eq!(err.origin, Origin::Env("P".into()));
        assert!(err.to_string().starts_with(r#"P="abc": invalid port"#));
    }

    #[test]
    fn log_filters_and_formats() {
        assert!(parse_log_filter("info").is_ok());
        assert!(parse_log_filter("warn,bridge=debug").is_ok());
        assert!(parse_log_filter("bridge=loud").is_err());
        assert_eq!("JSON".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert!("yaml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn http_response_parsing() {
        let r = parse_http_response(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}",
        )
        .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        assert_eq!(r.body, b"{}");
        let r = parse_http_response(
            b"HTTP/1.1 500 Internal\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 500);
        assert_eq!(r.body, b"abcde");
        assert!(parse_http_response(b"garbage").is_err());
        assert!(parse_http_response(b"SSH-2.0 x\r\n\r\n").is_err());
        assert!(parse_http_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nshort").is_err());
        assert!(
            parse_http_response(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")
                .is_err()
        );
    }

    #[test]
    fn http_client_reports_unreachable_and_bad_urls() {
        // Bind then drop to get a loopback port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = http_request(
            "GET",
            &format!("http://127.0.0.1:{port}/"),
            None,
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(matches!(err, HttpClientError::Unreachable { .. }), "{err}");
        assert!(matches!(
            http_request("GET", "https://x/", None, Duration::from_secs(1)),
            Err(HttpClientError::BadUrl(_))
        ));
    }

    #[tokio::test]
    async fn common_routes_serve_version_and_metrics() {
        let registry = prometheus::Registry::new();
        let c = prometheus::IntCounter::new("demo_requests_total", "demo").unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.inc_by(3);
        let renderer: MetricsRenderer = Arc::new(move || encode_prometheus_text(&registry));
        let app: Router =
            common_routes(VersionInfo::new("demo", "1.2.3"), renderer).fallback(not_found);

        let resp = app
            .clone()
            .oneshot(Request::get("/about/version").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE].to_str().unwrap(),
            "application/json"
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["name"], "demo");
        assert_eq!(v["version"], "1.2.3");
        assert_eq!(v["os"], os_name());

        let resp = app
            .clone()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE].to_str().unwrap(),
            PROMETHEUS_TEXT_CONTENT_TYPE
        );
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains("# TYPE demo_requests_total counter"),
            "{text}"
        );
        assert!(text.contains("demo_requests_total 3"), "{text}");

        let resp = app
            .clone()
            .oneshot(Request::post("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        let resp = app
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}
