//! Bridge configuration in three layers, later ones overriding earlier ones:
//!
//! 1. environment variables — the docker-jitsi-meet `jvb` image's (`XMPP_SERVER`, `JVB_PORT`, …) plus
//!    our own `JVB_*` additions;
//! 2. a TOML file (`--config PATH` or `JVB_CONFIG_FILE`);
//! 3. command-line flags.
//!
//! Every setting is one row of [`SETTINGS`]: its env var, TOML key, flag, default and the one parser
//! all three layers share, so a bad value is reported the same way wherever it came from, naming its
//! origin and the value (`JVB_PORT="abc": invalid port …`). `bridge --help` is generated from the same
//! table. All errors are collected and reported together; any error stops start-up.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use clap::{Arg, ArgMatches};
use serde::Serialize;
use service::settings::{self, SettingsError};
use service::{Env, HostPort, LogFormat, Origin, hostname, parse_log_filter, parse_port};

use crate::lifecycle::LifecycleConfig;
use crate::stats::{PACKET_RATE_PER_WORKER, StatsConfig};

// ---------------------------------------------------------------------------------------------------
// Value types

/// One `JVB_ADVERTISE_IPS` entry: a public IP, optionally with a public port different from the
/// local one (`ip#port`, for port-forwarding NATs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AdvertisedAddress {
    pub ip: IpAddr,
    pub port: Option<u16>,
}

impl FromStr for AdvertisedAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let (ip, port) = match t.split_once('#') {
            Some((ip, port)) => (ip, Some(port)),
            None => (t, None),
        };
        let ip: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("{t:?} is not an IP address (expected ip or ip#port)"))?;
        let port = match port {
            None => None,
            Some(p) => match parse_port(p) {
                Ok(0) | Err(_) => return Err(format!("{t:?}: invalid port after # (1..=65535)")),
                Ok(p) => Some(p),
            },
        };
        Ok(AdvertisedAddress { ip, port })
    }
}

impl fmt::Display for AdvertisedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}#{p}", self.ip),
            None => write!(f, "{}", self.ip),
        }
    }
}

/// An SRTP protection profile the bridge may negotiate in DTLS-SRTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SrtpProfile {
    /// SRTP_AEAD_AES_128_GCM (RFC 7714): cheaper per packet with AES-NI; preferred.
    AeadAes128Gcm,
    /// SRTP_AES128_CM_HMAC_SHA1_80 (RFC 5764): the one every WebRTC peer supports.
    Aes128CmHmacSha1_80,
}

impl SrtpProfile {
    /// The SDES-style name used in our config.
    pub fn name(self) -> &'static str {
        match self {
            SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpProfile::Aes128CmHmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
        }
    }
}

impl FromStr for SrtpProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "AEAD_AES_128_GCM" | "SRTP_AEAD_AES_128_GCM" => Ok(SrtpProfile::AeadAes128Gcm),
            "AES_CM_128_HMAC_SHA1_80"
            | "SRTP_AES128_CM_HMAC_SHA1_80"
            | "SRTP_AES128_CM_SHA1_80" => Ok(SrtpProfile::Aes128CmHmacSha1_80),
            _ => Err(format!(
                "unknown SRTP profile {s:?} (expected AEAD_AES_128_GCM or AES_CM_128_HMAC_SHA1_80)"
            )),
        }
    }
}

/// A string that must not appear in logs or `--print-config`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

// ---------------------------------------------------------------------------------------------------
// The resolved configuration

/// One XMPP server to log in to (each gets its own connection, as JVB's `shardN` configs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppServer {
    pub host: String,
    pub port: u16,
}

/// XMPP (brewery) settings.
#[derive(Debug, Clone, PartialEq)]
pub struct XmppConfig {
    pub enabled: bool,
    pub servers: Vec<XmppServer>,
    pub domain: String,
    /// The domain the bridge logs in to (`jvb@<auth_domain>`).
    pub auth_domain: String,
    pub internal_muc_domain: String,
    pub user: String,
    /// Required when enabled.
    pub password: Option<Secret>,
    pub brewery_muc: String,
    /// Our nickname in the brewery MUC; must be unique per bridge.
    pub muc_nickname: String,
    pub disable_certificate_verification: bool,
    /// Accounts of these domains (besides brewery occupants) may send COLIBRI2 and shutdown IQs
    /// (`xmpp.rs` `sender_trusted`); default the auth domain.
    pub trusted_domains: Vec<String>,
}

impl XmppConfig {
    /// The brewery room, e.g. `jvbbrewery@internal-muc.meet.jitsi`.
    pub fn brewery_jid(&self) -> String {
        format!("{}@{}", self.brewery_muc, self.internal_muc_domain)
    }

    /// The bridge's login, e.g. `jvb@auth.meet.jitsi`.
    pub fn login_jid(&self) -> String {
        format!("{}@{}", self.user, self.auth_domain)
    }
}

/// Media-plane settings (consumed by the transport).
#[derive(Debug, Clone, PartialEq)]
pub struct MediaConfig {
    /// The one UDP port for ICE/DTLS/SRTP/SCTP (0 = any free port, for tests).
    pub port: u16,
    /// The address the UDP port is bound to (0.0.0.0 = every IPv4 interface).
    pub host: IpAddr,
    pub advertise_ips: Vec<AdvertisedAddress>,
    pub advertise_private_candidates: bool,
    /// Empty when STUN is disabled.
    pub stun_servers: Vec<HostPort>,
    /// In preference order.
    pub srtp_profiles: Vec<SrtpProfile>,
    pub trust_bwe: bool,
    /// Receive/send buffer the media socket asks for, in bytes (0 = the kernel's default). Bursts
    /// of a few hundred streams overflow Linux's 208 KiB default (measured: loadtest/REPORT.md).
    pub udp_buffer_size: u32,
    /// Media workers: threads forwarding media, each with its own socket on the port and its own
    /// conferences (`media/README.md`). Default: the CPUs the process may use.
    pub workers: usize,
    /// JVB's `speech-activity` silence detection: after this long without speech the conference
    /// is "in silence" and clients get `DominantSpeakerEndpointChangeEvent` with `silence: true`.
    /// `None` (JVB's default `enable-silence-detection = false`): never.
    pub silence_detection_timeout: Option<Duration>,
}

/// REST API settings.
#[derive(Debug, Clone, PartialEq)]
pub struct RestConfig {
    /// Bind address (port 0 = any free port; the bound address is logged).
    pub bind: SocketAddr,
    /// Serve `GET /colibri/stats`.
    pub colibri_stats: bool,
    /// Accept `POST /colibri/shutdown`.
    pub shutdown_api: bool,
}

/// colibri-ws: the bridge channel over a WebSocket on a separate public HTTP port (JVB's 9090).
/// Off by default: docker-jitsi-meet removed it and lib-jitsi-meet prefers the SCTP data channel.
#[derive(Debug, Clone, PartialEq)]
pub struct ColibriWsConfig {
    pub enabled: bool,
    /// Where the WebSocket server listens.
    pub bind: SocketAddr,
    /// `host[:port]` clients use in the URL (the proxy in front of the bridge), e.g. `meet.example.org`.
    pub domain: Option<String>,
    /// The `<server-id>` path segment (default: the brewery nickname).
    pub server_id: Option<String>,
    /// `wss://` (behind a TLS proxy) or `ws://` in advertised URLs.
    pub tls: bool,
}

impl ColibriWsConfig {
    /// `ws[s]://<domain>/colibri-ws/<server-id>` when enabled (and a domain is known).
    pub fn url_base(&self, nickname: &str) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let domain = self.domain.as_deref()?;
        let scheme = if self.tls { "wss" } else { "ws" };
        let id = self.server_id.as_deref().unwrap_or(nickname);
        Some(format!("{scheme}://{domain}/colibri-ws/{id}"))
    }
}

/// Inactivity expiry (consumed by the forwarding core).
#[derive(Debug, Clone, PartialEq)]
pub struct ExpiryConfig {
    pub endpoint_timeout: Duration,
    pub conference_timeout: Duration,
}

/// Logging settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// tracing env-filter syntax.
    pub level: String,
}

/// The bridge's whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub xmpp: XmppConfig,
    pub media: MediaConfig,
    pub rest: RestConfig,
    pub colibri_ws: ColibriWsConfig,
    pub lifecycle: LifecycleConfig,
    pub expiry: ExpiryConfig,
    pub stats: StatsConfig,
    pub instance_id: Option<String>,
    pub log: LogConfig,
}

// ---------------------------------------------------------------------------------------------------
// Layers

service::settings_layer! {
    /// One configuration layer (env, TOML file or flags): every setting optional.
    pub struct Layer {
    disable_xmpp: bool,
    xmpp_servers: Vec<HostPort>,
    xmpp_port: u16,
    xmpp_domain: String,
    xmpp_auth_domain: String,
    xmpp_internal_muc_domain: String,
    xmpp_user: String,
    xmpp_password: String,
    brewery_muc: String,
    muc_nickname: String,
    xmpp_disable_certificate_verification: bool,
    trusted_domains: Vec<String>,
    media_port: u16,
    media_host: IpAddr,
    advertise_ips: Vec<AdvertisedAddress>,
    advertise_private_candidates: bool,
    stun_servers: Vec<HostPort>,
    disable_stun: bool,
    srtp_profiles: Vec<SrtpProfile>,
    trust_bwe: bool,
    udp_buffer_size: u32,
    media_workers: usize,
    silence_detection_timeout: Duration,
    rest_host: IpAddr,
    rest_port: u16,
    colibri_stats: bool,
    shutdown_api: bool,
    colibri_ws: bool,
    ws_host: IpAddr,
    ws_port: u16,
    ws_domain: String,
    ws_server_id: String,
    ws_tls: bool,
    initial_drain: bool,
    graceful_shutdown_max_duration: Duration,
    graceful_shutdown_min_participants: u64,
    shutting_down_delay: Duration,
    endpoint_expire_timeout: Duration,
    conference_expire_timeout: Duration,
    stats_interval: Duration,
    max_packet_rate: u64,
    average_participant_stress: f64,
    region: String,
    relay_id: String,
    instance_id: String,
    log_format: LogFormat,
    log_level: String,
    }
}

type Apply = fn(&mut Layer, &str) -> Result<(), String>;

/// `apply` for a setting that parses with `$parse` into `Layer::$field`.
macro_rules! set {
    ($field:ident, $parse:expr) => {
        |l: &mut Layer, v: &str| {
            l.$field = Some($parse(v)?);
            Ok(())
        }
    };
}

/// One setting of the bridge (see [`service::settings`]).
pub type Setting = settings::Setting<Layer, Config>;

/// Why the configuration could not be loaded.
pub type ConfigError = SettingsError;

mod table;

pub use table::{IGNORED_ENV, OTHER_ENV, SETTINGS};
use table::{advertise_ips, domain, server_port, xmpp_servers};

/// A loaded configuration and notes for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// Deprecations and the like (logged as warnings).
    pub notes: Vec<String>,
    /// docker-jitsi-meet variables that are set but have no effect here (logged once at info).
    pub ignored: Vec<&'static str>,
}

// ---------------------------------------------------------------------------------------------------
// Reading each layer

fn apply_env(name: &str, raw: &str, f: Apply, layer: &mut Layer, errors: &mut Vec<ConfigError>) {
    settings::apply_raw(f, layer, Origin::Env(name.into()), raw, errors);
}

/// The environment layer (with docker-jitsi-meet's special cases), plus notes for the log.
pub fn layer_from_env(env: &Env) -> (Layer, Vec<String>, Vec<ConfigError>) {
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    settings::read_env(SETTINGS, env, &mut layer, &mut errors);
    // Separate brewery Prosody (docker: ENABLE_JVB_XMPP_SERVER): its own server/port/domains, with the
    // image's defaults.
    match env.bool("ENABLE_JVB_XMPP_SERVER") {
        Ok(Some(true)) => {
            let defaults: [(&str, &str, Apply); 4] = [
                (
                    "JVB_XMPP_SERVER",
                    "xmpp.jvb.meet.jitsi",
                    set!(xmpp_servers, xmpp_servers),
                ),
                ("JVB_XMPP_PORT", "6222", set!(xmpp_port, server_port)),
                (
                    "JVB_XMPP_AUTH_DOMAIN",
                    "auth.jvb.meet.jitsi",
                    set!(xmpp_auth_domain, domain),
                ),
                (
                    "JVB_XMPP_INTERNAL_MUC_DOMAIN",
                    "muc.jvb.meet.jitsi",
                    set!(xmpp_internal_muc_domain, domain),
                ),
            ];
            for (name, default, f) in defaults {
                let raw = env.get(name).unwrap_or(default);
                apply_env(name, raw, f, &mut layer, &mut errors);
            }
        }
        Ok(_) => {}
        Err(e) => errors.push(e.into()),
    }
    if layer.advertise_ips.is_none()
        && let Some(raw) = env.get("DOCKER_HOST_ADDRESS")
    {
        notes.push("DOCKER_HOST_ADDRESS is deprecated, use JVB_ADVERTISE_IPS".into());
        apply_env(
            "DOCKER_HOST_ADDRESS",
            raw,
            set!(advertise_ips, advertise_ips),
            &mut layer,
            &mut errors,
        );
    }
    match env.bool("ENABLE_OCTO") {
        Ok(Some(true)) if layer.region.is_none() => layer.region = Some("europe".into()),
        Ok(_) => {}
        Err(e) => errors.push(e.into()),
    }
    if layer.log_level.is_none()
        && let Some(raw) = env.get("RUST_LOG")
    {
        apply_env(
            "RUST_LOG",
            raw,
            set!(log_level, parse_log_filter),
            &mut layer,
            &mut errors,
        );
    }
    (layer, notes, errors)
}

/// The TOML layer (unknown keys are errors; durations as "30s" or seconds).
pub fn layer_from_toml(text: &str, file: &str) -> (Layer, Vec<ConfigError>) {
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    settings::read_toml(SETTINGS, text, file, &mut layer, &mut errors);
    (layer, errors)
}

/// The flag layer, from the matches of a command built with [`run_args`].
pub fn layer_from_flags(matches: &ArgMatches) -> (Layer, Vec<ConfigError>) {
    let mut layer = Layer::default();
    let mut errors = Vec::new();
    settings::read_flags(SETTINGS, matches, &mut layer, &mut errors);
    (layer, errors)
}

// ---------------------------------------------------------------------------------------------------
// Resolution

impl Layer {
    /// Fills defaults and checks cross-setting rules.
    pub fn resolve(self, env: &Env) -> Result<Config, Vec<ConfigError>> {
        let enabled = !self.disable_xmpp.unwrap_or(false);
        let mut errors = Vec::new();
        if enabled && self.xmpp_password.is_none() {
            errors.push(ConfigError::Invalid(
                "JVB_AUTH_PASSWORD (TOML xmpp.password) is required unless XMPP is disabled \
                 (JVB_DISABLE_XMPP=true, TOML xmpp.disable, --disable-xmpp)"
                    .into(),
            ));
        }
        let default_port = self.xmpp_port.unwrap_or(5222);
        let servers = self
            .xmpp_servers
            .unwrap_or_else(|| {
                vec![HostPort {
                    host: "xmpp.meet.jitsi".into(),
                    port: None,
                }]
            })
            .into_iter()
            .map(|hp| XmppServer {
                port: hp.port.unwrap_or(default_port),
                host: hp.host,
            })
            .collect();
        let nickname = self.muc_nickname.or_else(|| hostname(env));
        if enabled && nickname.is_none() {
            errors.push(ConfigError::Invalid(
                "JVB_MUC_NICKNAME (TOML xmpp.muc_nickname) is required: no hostname to default to"
                    .into(),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let stun_servers = if self.disable_stun.unwrap_or(false) {
            Vec::new()
        } else {
            self.stun_servers.unwrap_or_else(|| {
                vec![HostPort {
                    host: "meet-jit-si-turnrelay.jitsi.net".into(),
                    port: Some(443),
                }]
            })
        };
        let stats_defaults = StatsConfig::default();
        let workers = self.media_workers.unwrap_or_else(default_media_workers);
        let auth_domain = self
            .xmpp_auth_domain
            .unwrap_or_else(|| "auth.meet.jitsi".into());
        Ok(Config {
            xmpp: XmppConfig {
                enabled,
                servers,
                domain: self.xmpp_domain.unwrap_or_else(|| "meet.jitsi".into()),
                auth_domain: auth_domain.clone(),
                trusted_domains: self.trusted_domains.unwrap_or_else(|| vec![auth_domain]),
                internal_muc_domain: self
                    .xmpp_internal_muc_domain
                    .unwrap_or_else(|| "internal-muc.meet.jitsi".into()),
                user: self.xmpp_user.unwrap_or_else(|| "jvb".into()),
                password: self.xmpp_password.map(Secret),
                brewery_muc: self.brewery_muc.unwrap_or_else(|| "jvbbrewery".into()),
                muc_nickname: nickname.unwrap_or_else(|| "jvb".into()),
                disable_certificate_verification: self
                    .xmpp_disable_certificate_verification
                    .unwrap_or(true),
            },
            media: MediaConfig {
                port: self.media_port.unwrap_or(10000),
                host: self.media_host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                advertise_ips: self.advertise_ips.unwrap_or_default(),
                advertise_private_candidates: self.advertise_private_candidates.unwrap_or(true),
                stun_servers,
                srtp_profiles: self.srtp_profiles.unwrap_or_else(|| {
                    vec![SrtpProfile::AeadAes128Gcm, SrtpProfile::Aes128CmHmacSha1_80]
                }),
                trust_bwe: self.trust_bwe.unwrap_or(true),
                udp_buffer_size: self.udp_buffer_size.unwrap_or(8 << 20),
                workers,
                silence_detection_timeout: self.silence_detection_timeout.filter(|d| !d.is_zero()),
            },
            rest: RestConfig {
                bind: SocketAddr::new(
                    self.rest_host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    self.rest_port.unwrap_or(8080),
                ),
                colibri_stats: self.colibri_stats.unwrap_or(false),
                shutdown_api: self.shutdown_api.unwrap_or(false),
            },
            colibri_ws: ColibriWsConfig {
                enabled: self.colibri_ws.unwrap_or(false),
                bind: SocketAddr::new(
                    self.ws_host.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
                    self.ws_port.unwrap_or(9090),
                ),
                domain: self
                    .ws_domain
                    .or_else(|| env.get("PUBLIC_URL").and_then(url_host)),
                server_id: self.ws_server_id,
                tls: self.ws_tls.unwrap_or(true),
            },
            lifecycle: LifecycleConfig {
                initial_drain: self.initial_drain.unwrap_or(false),
                graceful_shutdown_max_duration: self
                    .graceful_shutdown_max_duration
                    .unwrap_or(Duration::from_secs(24 * 3600)),
                graceful_shutdown_min_participants: self
                    .graceful_shutdown_min_participants
                    .unwrap_or(0),
                shutting_down_delay: self.shutting_down_delay.unwrap_or(Duration::from_secs(60)),
            },
            expiry: ExpiryConfig {
                endpoint_timeout: self
                    .endpoint_expire_timeout
                    .unwrap_or(Duration::from_secs(60)),
                conference_timeout: self
                    .conference_expire_timeout
                    .unwrap_or(Duration::from_secs(60)),
            },
            stats: StatsConfig {
                interval: self.stats_interval.unwrap_or(stats_defaults.interval),
                // The whole bridge's capacity: each worker is one core's worth.
                max_packet_rate: self
                    .max_packet_rate
                    .unwrap_or(workers as u64 * PACKET_RATE_PER_WORKER),
                average_participant_stress: self
                    .average_participant_stress
                    .unwrap_or(stats_defaults.average_participant_stress),
                region: self.region,
                relay_id: self.relay_id,
                version: stats_defaults.version,
            },
            instance_id: self.instance_id,
            log: LogConfig {
                format: self.log_format.unwrap_or_default(),
                level: self.log_level.unwrap_or_else(|| "info".into()),
            },
        })
    }
}

/// The media workers by default: the CPUs this process may use (its affinity mask and cgroup CPU
/// quota, as `std::thread::available_parallelism` reads them), 1 if unknown.
pub fn default_media_workers() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// `host[:port]` of a URL such as docker-jitsi-meet's `PUBLIC_URL` (`https://meet.example.org`).
fn url_host(url: &str) -> Option<String> {
    let rest = url.trim().split_once("://").map_or(url.trim(), |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next()?.trim();
    (!host.is_empty()).then(|| host.to_owned())
}

/// Loads env, then the TOML file (`--config` or `JVB_CONFIG_FILE`), then flags, and resolves.
pub fn load(env: &Env, matches: &ArgMatches) -> Result<Loaded, Vec<ConfigError>> {
    let (env_layer, notes, mut errors) = layer_from_env(env);
    let mut toml_layer = Layer::default();
    if let Some(path) = settings::config_file_path(matches, env, "JVB_CONFIG_FILE") {
        settings::read_toml_file(SETTINGS, &path, &mut toml_layer, &mut errors);
    }
    let (flag_layer, e) = layer_from_flags(matches);
    errors.extend(e);
    // Resolve even after value errors so that a missing password is reported in the same run.
    match env_layer
        .overlay(toml_layer)
        .overlay(flag_layer)
        .resolve(env)
    {
        Ok(config) if errors.is_empty() => Ok(Loaded {
            config,
            notes,
            ignored: IGNORED_ENV
                .iter()
                .copied()
                .filter(|name| env.get(name).is_some())
                .collect(),
        }),
        Ok(_) => Err(errors),
        Err(more) => {
            errors.extend(more);
            Err(errors)
        }
    }
}

impl Config {
    /// The configuration as a TOML file that [`layer_from_toml`] reads back (password redacted).
    pub fn to_toml(&self) -> String {
        settings::to_toml(SETTINGS, self)
    }
}

// ---------------------------------------------------------------------------------------------------
// Command line

/// The run options: `--config`, `--print-config`, and one flag per setting (its `--help` names the
/// env var, TOML key and default).
pub fn run_args() -> Vec<Arg> {
    let mut args = settings::config_file_args("JVB_CONFIG_FILE");
    args.extend(settings::clap_args(SETTINGS));
    args
}

/// The environment/TOML/flag table appended to `--help`.
pub fn settings_help() -> String {
    settings::help_table(SETTINGS, OTHER_ENV, IGNORED_ENV)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Command;

    fn cmd() -> Command {
        Command::new("bridge").args(run_args())
    }

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    fn base_env() -> Vec<(&'static str, &'static str)> {
        vec![("JVB_AUTH_PASSWORD", "s3cret"), ("HOSTNAME", "node-1")]
    }

    fn load_with(envs: &[(&str, &str)], args: &[&str]) -> Result<Loaded, Vec<ConfigError>> {
        let mut argv = vec!["bridge"];
        argv.extend_from_slice(args);
        let m = cmd().try_get_matches_from(argv).expect("args parse");
        load(&env(envs), &m)
    }

    fn errors_text(errs: &[ConfigError]) -> String {
        errs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn settings_table_is_consistent() {
        assert_eq!(settings::check_table(SETTINGS), Ok(()));
        // clap checks its own invariants in debug builds.
        cmd().debug_assert();
    }

    #[test]
    fn defaults_match_docker_jitsi_meet() {
        let c = load_with(&base_env(), &[]).unwrap().config;
        assert!(c.xmpp.enabled);
        assert_eq!(
            c.xmpp.servers,
            vec![XmppServer {
                host: "xmpp.meet.jitsi".into(),
                port: 5222
            }]
        );
        assert_eq!(c.xmpp.login_jid(), "jvb@auth.meet.jitsi");
        assert_eq!(c.xmpp.brewery_jid(), "jvbbrewery@internal-muc.meet.jitsi");
        assert_eq!(c.xmpp.muc_nickname, "node-1");
        assert!(c.xmpp.disable_certificate_verification);
        assert_eq!(c.media.port, 10000);
        assert!(c.media.advertise_private_candidates);
        assert_eq!(c.media.stun_servers.len(), 1);
        assert_eq!(c.media.srtp_profiles[0], SrtpProfile::AeadAes128Gcm);
        assert_eq!(
            c.rest.bind,
            "127.0.0.1:8080".parse::<std::net::SocketAddr>().unwrap()
        );
        assert!(!c.rest.colibri_stats);
        assert!(!c.rest.shutdown_api);
        assert_eq!(c.lifecycle, LifecycleConfig::default());
        assert_eq!(c.stats.interval, Duration::from_secs(5));
        assert_eq!(c.media.workers, default_media_workers());
        assert_eq!(c.media.silence_detection_timeout, None);
        assert_eq!(
            c.stats.max_packet_rate,
            c.media.workers as u64 * PACKET_RATE_PER_WORKER
        );
        assert_eq!(c.log.level, "info");
        assert_eq!(c.log.format, LogFormat::Text);
    }

    #[test]
    fn docker_env_is_read() {
        let mut e = base_env();
        e.extend([
            ("XMPP_SERVER", "prosody-a, prosody-b:5999"),
            ("XMPP_PORT", "5322"),
            ("XMPP_AUTH_DOMAIN", "auth.example.org"),
            ("XMPP_INTERNAL_MUC_DOMAIN", "internal.example.org"),
            ("JVB_AUTH_USER", "bridge7"),
            ("JVB_BREWERY_MUC", "brew"),
            ("JVB_MUC_NICKNAME", "jvb-7"),
            ("JVB_PORT", "10007"),
            (
                "JVB_ADVERTISE_IPS",
                "203.0.113.7, 198.51.100.1#30000,2001:db8::1",
            ),
            ("JVB_ADVERTISE_PRIVATE_CANDIDATES", "false"),
            ("JVB_DISABLE_STUN", "1"),
            ("COLIBRI_REST_ENABLED", "false"),
            ("SHUTDOWN_REST_ENABLED", "true"),
            ("JVB_OCTO_REGION", "eu-west"),
            ("JVB_OCTO_RELAY_ID", "r1"),
            ("JVB_INSTANCE_ID", "jvb-123"),
            ("JVB_CC_TRUST_BWE", "false"),
            ("JVB_SRTP_PROFILES", "AES_CM_128_HMAC_SHA1_80"),
            ("JVB_REST_HOST", "0.0.0.0"),
            ("JVB_REST_PORT", "8081"),
            ("JVB_SHUTTING_DOWN_DELAY", "5s"),
            ("LOG_FORMAT", "json"),
            ("LOG_LEVEL", "debug"),
            ("ENABLE_VLA", "1"),
        ]);
        let loaded = load_with(&e, &[]).unwrap();
        let c = loaded.config;
        assert_eq!(c.xmpp.servers.len(), 2);
        assert_eq!(c.xmpp.servers[0].port, 5322);
        assert_eq!(c.xmpp.servers[1].port, 5999);
        assert_eq!(c.xmpp.login_jid(), "bridge7@auth.example.org");
        assert_eq!(c.xmpp.brewery_jid(), "brew@internal.example.org");
        assert_eq!(c.xmpp.muc_nickname, "jvb-7");
        assert_eq!(c.media.port, 10007);
        assert_eq!(c.media.advertise_ips.len(), 3);
        assert_eq!(c.media.advertise_ips[1].port, Some(30000));
        assert!(!c.media.advertise_private_candidates);
        assert!(c.media.stun_servers.is_empty());
        assert!(!c.rest.colibri_stats);
        assert!(c.rest.shutdown_api);
        assert_eq!(
            c.rest.bind,
            "0.0.0.0:8081".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(c.stats.region.as_deref(), Some("eu-west"));
        assert_eq!(c.stats.relay_id.as_deref(), Some("r1"));
        assert_eq!(c.instance_id.as_deref(), Some("jvb-123"));
        assert!(!c.media.trust_bwe);
        assert_eq!(
            c.media.srtp_profiles,
            vec![SrtpProfile::Aes128CmHmacSha1_80]
        );
        assert_eq!(c.lifecycle.shutting_down_delay, Duration::from_secs(5));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(loaded.ignored, vec!["ENABLE_VLA"]);
    }

    /// COLIBRI2 and shutdown IQs: the auth domain's accounts by default, or the configured list.
    #[test]
    fn trusted_domains_default_to_the_auth_domain() {
        let c = load_with(&base_env(), &[]).unwrap().config;
        assert_eq!(c.xmpp.trusted_domains, vec![c.xmpp.auth_domain.clone()]);
        let mut e = base_env();
        e.push(("JVB_TRUSTED_DOMAINS", "auth.a.example, auth.b.example"));
        let c = load_with(&e, &[]).unwrap().config;
        assert_eq!(c.xmpp.trusted_domains, ["auth.a.example", "auth.b.example"]);
        let mut e = base_env();
        e.push(("JVB_TRUSTED_DOMAINS", "auth.a.example,not a domain"));
        assert!(load_with(&e, &[]).is_err());
    }

    #[test]
    fn docker_special_cases() {
        let mut e = base_env();
        e.extend([
            ("ENABLE_JVB_XMPP_SERVER", "true"),
            ("JVB_XMPP_PORT", "6333"),
            ("XMPP_SERVER", "ignored"),
            ("DOCKER_HOST_ADDRESS", "192.0.2.9"),
            ("ENABLE_OCTO", "true"),
            ("RUST_LOG", "warn"),
        ]);
        let loaded = load_with(&e, &[]).unwrap();
        let c = loaded.config;
        assert_eq!(
            c.xmpp.servers,
            vec![XmppServer {
                host: "xmpp.jvb.meet.jitsi".into(),
                port: 6333
            }]
        );
        assert_eq!(c.xmpp.brewery_jid(), "jvbbrewery@muc.jvb.meet.jitsi");
        assert_eq!(c.xmpp.auth_domain, "auth.jvb.meet.jitsi");
        assert_eq!(c.media.advertise_ips[0].to_string(), "192.0.2.9");
        assert!(
            loaded
                .notes
                .iter()
                .any(|n| n.contains("DOCKER_HOST_ADDRESS"))
        );
        assert_eq!(c.stats.region.as_deref(), Some("europe"));
        assert_eq!(c.log.level, "warn");
    }

    #[test]
    fn precedence_env_then_toml_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bridge.toml");
        std::fs::write(
            &path,
            "[media]\nport = 20000\nadvertise_ips = [\"192.0.2.1\"]\n\
             [rest]\nport = 9000\n[lifecycle]\nshutting_down_delay = \"2s\"\n",
        )
        .unwrap();
        let mut e = base_env();
        e.extend([
            ("JVB_PORT", "10001"),
            ("JVB_REST_PORT", "8001"),
            ("JVB_BREWERY_MUC", "from-env"),
            ("JVB_SHUTTING_DOWN_DELAY", "9s"),
        ]);
        let p = path.to_str().unwrap();
        let c = load_with(&e, &["--config", p, "--rest-port", "9100"])
            .unwrap()
            .config;
        assert_eq!(c.xmpp.brewery_muc, "from-env", "env only");
        assert_eq!(c.media.port, 20000, "TOML over env");
        assert_eq!(c.lifecycle.shutting_down_delay, Duration::from_secs(2));
        assert_eq!(c.rest.bind.port(), 9100, "flag over TOML over env");
        // JVB_CONFIG_FILE works when --config is absent.
        e.push(("JVB_CONFIG_FILE", p));
        let c = load_with(&e, &[]).unwrap().config;
        assert_eq!(c.media.port, 20000);
        // Switch flags override env in both directions.
        e.push(("JVB_DISABLE_XMPP", "true"));
        let c = load_with(&e, &["--disable-xmpp=false"]).unwrap().config;
        assert!(c.xmpp.enabled);
        let c = load_with(&base_env(), &["--disable-xmpp"]).unwrap().config;
        assert!(!c.xmpp.enabled);
    }

    #[test]
    fn bad_env_values_name_the_variable_and_value() {
        let cases: &[(&str, &str, &str)] = &[
            ("JVB_PORT", "abc", "invalid port"),
            ("JVB_PORT", "70000", "invalid port"),
            ("XMPP_PORT", "0", "invalid port"),
            ("XMPP_SERVER", "host:abc", "invalid port"),
            ("XMPP_SERVER", " , ", "at least one server"),
            ("XMPP_AUTH_DOMAIN", "auth meet", "invalid domain"),
            ("XMPP_INTERNAL_MUC_DOMAIN", "a/b", "invalid domain"),
            ("JVB_AUTH_USER", "jvb@x", "invalid XMPP localpart"),
            ("JVB_BREWERY_MUC", "a b", "invalid XMPP localpart"),
            ("JVB_ADVERTISE_IPS", "not-an-ip", "is not an IP address"),
            ("JVB_ADVERTISE_IPS", "1.2.3.4#0", "invalid port"),
            ("JVB_ADVERTISE_IPS", "1.2.3.4#x", "invalid port"),
            (
                "JVB_ADVERTISE_PRIVATE_CANDIDATES",
                "maybe",
                "invalid boolean",
            ),
            ("JVB_DISABLE_XMPP", "nope", "invalid boolean"),
            ("JVB_DISABLE_STUN", "2", "invalid boolean"),
            ("JVB_STUN_SERVERS", "stun:x:y", "IPv6"),
            ("JVB_SRTP_PROFILES", "NULL_CIPHER", "unknown SRTP profile"),
            (
                "JVB_SRTP_PROFILES",
                "AEAD_AES_128_GCM,aead_aes_128_gcm",
                "listed twice",
            ),
            ("JVB_CC_TRUST_BWE", "yes please", "invalid boolean"),
            ("COLIBRI_REST_ENABLED", "enabled", "invalid boolean"),
            ("SHUTDOWN_REST_ENABLED", "x", "invalid boolean"),
            ("JVB_REST_HOST", "localhost", "invalid IP address"),
            ("JVB_REST_PORT", "-1", "invalid port"),
            ("JVB_INITIAL_DRAIN", "t", "invalid boolean"),
            (
                "JVB_GRACEFUL_SHUTDOWN_MAX_DURATION",
                "forever",
                "invalid duration",
            ),
            (
                "JVB_GRACEFUL_SHUTDOWN_MIN_PARTICIPANTS",
                "-3",
                "invalid number",
            ),
            ("JVB_SHUTTING_DOWN_DELAY", "1 fortnight", "invalid duration"),
            ("JVB_ENDPOINT_EXPIRE_TIMEOUT", "0s", "greater than zero"),
            ("JVB_CONFERENCE_EXPIRE_TIMEOUT", "x", "invalid duration"),
            ("JVB_STATS_INTERVAL", "10ms", "at least 100ms"),
            ("JVB_MAX_PACKET_RATE", "0", "greater than zero"),
            ("JVB_MEDIA_WORKERS", "0", "between 1 and"),
            ("JVB_MEDIA_WORKERS", "many", "invalid number"),
            ("JVB_AVERAGE_PARTICIPANT_STRESS", "2", "between 0 and 1"),
            ("JVB_AVERAGE_PARTICIPANT_STRESS", "NaN", "between 0 and 1"),
            ("LOG_FORMAT", "xml", "invalid log format"),
            ("LOG_LEVEL", "bridge=loud", "invalid log level"),
            ("ENABLE_JVB_XMPP_SERVER", "sure", "invalid boolean"),
            ("ENABLE_OCTO", "sure", "invalid boolean"),
        ];
        for (var, value, reason) in cases {
            let mut e = base_env();
            e.push((var, value));
            let errs = load_with(&e, &[]).expect_err(var);
            let text = errors_text(&errs);
            let expected = format!("{var}={:?}", value);
            assert!(text.contains(&expected), "{var}: {text}");
            assert!(
                text.contains(reason),
                "{var}: expected {reason:?} in {text}"
            );
        }
    }

    #[test]
    fn all_errors_are_reported_together() {
        let mut e = base_env();
        e.extend([("JVB_PORT", "abc"), ("JVB_REST_PORT", "xyz")]);
        let errs = load_with(&e, &[]).unwrap_err();
        assert_eq!(errs.len(), 2, "{}", errors_text(&errs));
    }

    #[test]
    fn silence_detection_is_off_unless_a_timeout_is_set() {
        let mut e = base_env();
        e.push(("JVB_SILENCE_DETECTION_TIMEOUT", "3s"));
        let c = load_with(&e, &[]).unwrap().config;
        assert_eq!(
            c.media.silence_detection_timeout,
            Some(Duration::from_secs(3))
        );
        let c = load_with(&base_env(), &["--silence-detection-timeout", "0s"])
            .unwrap()
            .config;
        assert_eq!(c.media.silence_detection_timeout, None);
    }

    #[test]
    fn password_required_unless_xmpp_disabled() {
        let errs = load_with(&[("HOSTNAME", "h")], &[]).unwrap_err();
        assert!(errors_text(&errs).contains("JVB_AUTH_PASSWORD"));
        assert!(load_with(&[("HOSTNAME", "h"), ("JVB_DISABLE_XMPP", "true")], &[]).is_ok());
        assert!(load_with(&[("HOSTNAME", "h")], &["--disable-xmpp"]).is_ok());
        // Empty counts as unset (docker compose passes unset .env entries as "").
        let errs = load_with(&[("HOSTNAME", "h"), ("JVB_AUTH_PASSWORD", "")], &[]).unwrap_err();
        assert!(errors_text(&errs).contains("JVB_AUTH_PASSWORD"));
    }

    #[test]
    fn bad_toml_values_and_keys_name_the_key() {
        let cases: &[(&str, &str)] = &[
            ("[media]\nport = \"abc\"\n", "media.port"),
            ("[media]\nport = 70000\n", "media.port"),
            (
                "[media]\nadvertise_ips = [\"nope\"]\n",
                "media.advertise_ips",
            ),
            ("[rest]\nshutdown = \"maybe\"\n", "rest.shutdown"),
            (
                "[lifecycle]\nshutting_down_delay = \"soon\"\n",
                "lifecycle.shutting_down_delay",
            ),
            ("[media]\nprot = 1\n", "media.prot"),
            ("[nosuch]\nx = 1\n", "nosuch.x"),
            ("[media]\nport = [[1]]\n", "media.port"),
            ("[media]\nport = 1979-05-27\n", "media.port"),
        ];
        for (text, key) in cases {
            let (_, errs) = layer_from_toml(text, "b.toml");
            let msg = errors_text(&errs);
            assert!(!errs.is_empty(), "{text}");
            assert!(msg.contains(key) && msg.contains("b.toml"), "{key}: {msg}");
        }
        let (_, errs) = layer_from_toml("[media\nport=", "b.toml");
        assert!(matches!(errs[0], ConfigError::Toml { .. }));
    }

    #[test]
    fn bad_flags_name_the_flag() {
        let errs = load_with(&base_env(), &["--port", "abc"]).unwrap_err();
        let text = errors_text(&errs);
        assert!(text.contains(r#"--port="abc": invalid port"#), "{text}");
        let errs = load_with(&base_env(), &["--drain=perhaps"]).unwrap_err();
        assert!(errors_text(&errs).contains("--drain=\"perhaps\""));
    }

    #[test]
    fn print_config_round_trips() {
        let mut e = base_env();
        e.extend([
            ("JVB_ADVERTISE_IPS", "203.0.113.7#30000,2001:db8::1"),
            ("XMPP_SERVER", "a:1,[::1]:2"),
            ("JVB_OCTO_REGION", "eu"),
            ("JVB_INSTANCE_ID", "i-1"),
            ("JVB_SHUTTING_DOWN_DELAY", "1500ms"),
            ("JVB_AVERAGE_PARTICIPANT_STRESS", "0.05"),
        ]);
        let original = load_with(&e, &[]).unwrap().config;
        let text = original.to_toml();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("password = \"***\""), "{text}");
        let (layer, errs) = layer_from_toml(&text, "printed.toml");
        assert!(errs.is_empty(), "{}\n{text}", errors_text(&errs));
        let mut layer = layer;
        layer.xmpp_password = Some("s3cret".into());
        let again = layer.resolve(&Env::default()).unwrap();
        assert_eq!(again, original, "{text}");
    }

    #[test]
    fn help_mentions_every_env_var_and_key() {
        let help = format!("{}", cmd().after_help(settings_help()).render_long_help());
        for s in SETTINGS {
            assert!(help.contains(s.env), "{}", s.env);
            assert!(help.contains(s.toml), "{}", s.toml);
        }
        for (name, _) in OTHER_ENV {
            assert!(help.contains(name), "{name}");
        }
    }

    #[test]
    fn secrets_are_not_debug_printed() {
        let c = load_with(&base_env(), &[]).unwrap().config;
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
