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
use service::{
    Env, HostPort, LogFormat, Origin, format_duration, hostname, parse_bool, parse_duration,
    parse_host_ports, parse_list, parse_log_filter, parse_port, parse_u64,
};

use crate::lifecycle::LifecycleConfig;
use crate::stats::StatsConfig;

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

fn s(v: &str) -> toml::Value {
    toml::Value::String(v.to_owned())
}
fn strs<T: ToString>(items: &[T]) -> toml::Value {
    toml::Value::Array(items.iter().map(|i| s(&i.to_string())).collect())
}
fn int(v: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}
fn dur(d: Duration) -> toml::Value {
    s(&format_duration(d))
}

/// A comma-separated list of domains.
fn domains(v: &str) -> Result<Vec<String>, String> {
    v.split(',')
        .filter(|d| !d.trim().is_empty())
        .map(domain)
        .collect()
}

/// Checks a DNS-style domain (XMPP domain parts).
fn domain(v: &str) -> Result<String, String> {
    let t = v.trim();
    let ok = !t.is_empty()
        && t.len() <= 253
        && !t.starts_with('.')
        && !t.ends_with('.')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_');
    if ok {
        Ok(t.to_owned())
    } else {
        Err("invalid domain (letters, digits, '.', '-', '_')".into())
    }
}

/// Checks an XMPP localpart (user name, MUC room name).
fn localpart(v: &str) -> Result<String, String> {
    let t = v.trim();
    if t.is_empty()
        || t.len() > 1023
        || t.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(c))
    {
        Err("invalid XMPP localpart (non-empty, no spaces or \"&'/:<>@)".into())
    } else {
        Ok(t.to_owned())
    }
}

/// Checks a free-text label (nickname, region, ids).
fn label(v: &str) -> Result<String, String> {
    let t = v.trim();
    if t.is_empty() || t.len() > 1023 || t.chars().any(char::is_control) {
        Err("invalid value (non-empty, no control characters)".into())
    } else {
        Ok(t.to_owned())
    }
}

fn positive_duration(v: &str) -> Result<Duration, String> {
    let d = parse_duration(v)?;
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

fn advertise_ips(v: &str) -> Result<Vec<AdvertisedAddress>, String> {
    parse_list(v).iter().map(|i| i.parse()).collect()
}

fn srtp_profiles(v: &str) -> Result<Vec<SrtpProfile>, String> {
    let list: Vec<SrtpProfile> = parse_list(v)
        .iter()
        .map(|i| i.parse())
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err("at least one SRTP profile is required".into());
    }
    for (i, p) in list.iter().enumerate() {
        if list.iter().skip(i + 1).any(|q| q == p) {
            return Err(format!("{} listed twice", p.name()));
        }
    }
    Ok(list)
}

fn xmpp_servers(v: &str) -> Result<Vec<HostPort>, String> {
    let list = parse_host_ports(v)?;
    if list.is_empty() {
        return Err("at least one server is required".into());
    }
    if let Some(hp) = list.iter().find(|hp| hp.port == Some(0)) {
        return Err(format!("{hp}: port 0 is not a server port"));
    }
    Ok(list)
}

fn stun_servers(v: &str) -> Result<Vec<HostPort>, String> {
    let list = parse_host_ports(v)?;
    if let Some(hp) = list.iter().find(|hp| hp.port == Some(0)) {
        return Err(format!("{hp}: port 0 is not a server port"));
    }
    Ok(list)
}

fn server_port(v: &str) -> Result<u16, String> {
    match parse_port(v)? {
        0 => Err("invalid port (1..=65535)".into()),
        p => Ok(p),
    }
}

fn stress(v: &str) -> Result<f64, String> {
    let x: f64 = v.trim().parse().map_err(|_| "invalid number".to_string())?;
    if x.is_finite() && (0.0..=1.0).contains(&x) {
        Ok(x)
    } else {
        Err("must be between 0 and 1".into())
    }
}

fn positive_u64(v: &str) -> Result<u64, String> {
    match parse_u64(v)? {
        0 => Err("must be greater than zero".into()),
        n => Ok(n),
    }
}

/// Every setting. Order = order in `--help` and `--print-config`.
pub static SETTINGS: &[Setting] = &[
    // --- XMPP
    Setting {
        env: "JVB_DISABLE_XMPP",
        toml: "xmpp.disable",
        flag: Some("disable-xmpp"),
        value_name: "BOOL",
        default: "false",
        help: "Run without XMPP (no brewery, no COLIBRI2): REST and media only",
        switch: true,
        apply: set!(disable_xmpp, parse_bool),
        show: |c| Some(toml::Value::Boolean(!c.xmpp.enabled)),
    },
    Setting {
        env: "XMPP_SERVER",
        toml: "xmpp.servers",
        flag: Some("xmpp-server"),
        value_name: "HOST[:PORT],...",
        default: "xmpp.meet.jitsi",
        help: "XMPP servers, one connection each (comma list; port defaults to XMPP_PORT)",
        switch: false,
        apply: set!(xmpp_servers, xmpp_servers),
        show: |c| {
            let list: Vec<String> = c
                .xmpp
                .servers
                .iter()
                .map(|x| {
                    HostPort {
                        host: x.host.clone(),
                        port: Some(x.port),
                    }
                    .to_string()
                })
                .collect();
            Some(strs(&list))
        },
    },
    Setting {
        env: "XMPP_PORT",
        toml: "xmpp.port",
        flag: Some("xmpp-port"),
        value_name: "PORT",
        default: "5222",
        help: "Default XMPP client port for servers given without one",
        switch: false,
        apply: set!(xmpp_port, server_port),
        show: |_| None,
    },
    Setting {
        env: "XMPP_DOMAIN",
        toml: "xmpp.domain",
        flag: Some("xmpp-domain"),
        value_name: "DOMAIN",
        default: "meet.jitsi",
        help: "The XMPP domain of the deployment",
        switch: false,
        apply: set!(xmpp_domain, domain),
        show: |c| Some(s(&c.xmpp.domain)),
    },
    Setting {
        env: "XMPP_AUTH_DOMAIN",
        toml: "xmpp.auth_domain",
        flag: Some("xmpp-auth-domain"),
        value_name: "DOMAIN",
        default: "auth.meet.jitsi",
        help: "Domain the bridge logs in to (JVB_AUTH_USER@XMPP_AUTH_DOMAIN)",
        switch: false,
        apply: set!(xmpp_auth_domain, domain),
        show: |c| Some(s(&c.xmpp.auth_domain)),
    },
    Setting {
        env: "JVB_TRUSTED_DOMAINS",
        toml: "xmpp.trusted_domains",
        flag: Some("trusted-domains"),
        value_name: "DOMAINS",
        default: "XMPP_AUTH_DOMAIN",
        help: "Comma-separated domains whose accounts (besides brewery occupants) may send COLIBRI2 and shutdown IQs",
        switch: false,
        apply: set!(trusted_domains, domains),
        show: |c| Some(strs(&c.xmpp.trusted_domains)),
    },
    Setting {
        env: "XMPP_INTERNAL_MUC_DOMAIN",
        toml: "xmpp.internal_muc_domain",
        flag: Some("xmpp-internal-muc-domain"),
        value_name: "DOMAIN",
        default: "internal-muc.meet.jitsi",
        help: "MUC domain of the brewery room",
        switch: false,
        apply: set!(xmpp_internal_muc_domain, domain),
        show: |c| Some(s(&c.xmpp.internal_muc_domain)),
    },
    Setting {
        env: "JVB_AUTH_USER",
        toml: "xmpp.user",
        flag: Some("xmpp-user"),
        value_name: "USER",
        default: "jvb",
        help: "XMPP user name of the bridge",
        switch: false,
        apply: set!(xmpp_user, localpart),
        show: |c| Some(s(&c.xmpp.user)),
    },
    Setting {
        env: "JVB_AUTH_PASSWORD",
        toml: "xmpp.password",
        flag: None,
        value_name: "PASSWORD",
        default: "(required unless XMPP is disabled)",
        help: "XMPP password of the bridge (env or TOML only: never on the command line)",
        switch: false,
        apply: |l, v| {
            if v.is_empty() {
                return Err("empty password".into());
            }
            l.xmpp_password = Some(v.to_owned());
            Ok(())
        },
        show: |c| c.xmpp.password.as_ref().map(|_| s("***")),
    },
    Setting {
        env: "JVB_BREWERY_MUC",
        toml: "xmpp.brewery_muc",
        flag: Some("brewery-muc"),
        value_name: "ROOM",
        default: "jvbbrewery",
        help: "Brewery room name (joined as ROOM@XMPP_INTERNAL_MUC_DOMAIN)",
        switch: false,
        apply: set!(brewery_muc, localpart),
        show: |c| Some(s(&c.xmpp.brewery_muc)),
    },
    Setting {
        env: "JVB_MUC_NICKNAME",
        toml: "xmpp.muc_nickname",
        flag: Some("muc-nickname"),
        value_name: "NICK",
        default: "$HOSTNAME",
        help: "Nickname in the brewery room; must be unique per bridge",
        switch: false,
        apply: set!(muc_nickname, label),
        show: |c| Some(s(&c.xmpp.muc_nickname)),
    },
    Setting {
        env: "XMPP_DISABLE_CERTIFICATE_VERIFICATION",
        toml: "xmpp.disable_certificate_verification",
        flag: Some("xmpp-disable-certificate-verification"),
        value_name: "BOOL",
        default: "true",
        help: "Accept any TLS certificate from the XMPP server (docker-jitsi-meet hard-codes true)",
        switch: true,
        apply: set!(xmpp_disable_certificate_verification, parse_bool),
        show: |c| {
            Some(toml::Value::Boolean(
                c.xmpp.disable_certificate_verification,
            ))
        },
    },
    // --- media
    Setting {
        env: "JVB_PORT",
        toml: "media.port",
        flag: Some("port"),
        value_name: "PORT",
        default: "10000",
        help: "The one UDP port for ICE/DTLS/SRTP/SCTP (0 = any free port, tests only)",
        switch: false,
        apply: set!(media_port, parse_port),
        show: |c| Some(int(c.media.port.into())),
    },
    Setting {
        env: "JVB_MEDIA_HOST",
        toml: "media.host",
        flag: Some("media-host"),
        value_name: "IP",
        default: "0.0.0.0",
        help: "Address the UDP media port binds to (a specific address is also the only private candidate)",
        switch: false,
        apply: |l, v| {
            l.media_host = Some(
                v.trim()
                    .parse()
                    .map_err(|_| "invalid IP address".to_string())?,
            );
            Ok(())
        },
        show: |c| Some(s(&c.media.host.to_string())),
    },
    Setting {
        env: "JVB_ADVERTISE_IPS",
        toml: "media.advertise_ips",
        flag: Some("advertise-ips"),
        value_name: "IP[#PORT],...",
        default: "(none)",
        help: "Public addresses to advertise as host candidates (ip#port when the public port differs)",
        switch: false,
        apply: set!(advertise_ips, advertise_ips),
        show: |c| Some(strs(&c.media.advertise_ips)),
    },
    Setting {
        env: "JVB_ADVERTISE_PRIVATE_CANDIDATES",
        toml: "media.advertise_private_candidates",
        flag: Some("advertise-private-candidates"),
        value_name: "BOOL",
        default: "true",
        help: "Also advertise private (RFC 1918 / local) addresses",
        switch: true,
        apply: set!(advertise_private_candidates, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.media.advertise_private_candidates)),
    },
    Setting {
        env: "JVB_STUN_SERVERS",
        toml: "media.stun_servers",
        flag: Some("stun-servers"),
        value_name: "HOST:PORT,...",
        default: "meet-jit-si-turnrelay.jitsi.net:443",
        help: "STUN servers used to discover the public address",
        switch: false,
        apply: set!(stun_servers, stun_servers),
        show: |c| Some(strs(&c.media.stun_servers)),
    },
    Setting {
        env: "JVB_DISABLE_STUN",
        toml: "media.disable_stun",
        flag: Some("disable-stun"),
        value_name: "BOOL",
        default: "false",
        help: "Do not use STUN to discover the public address",
        switch: true,
        apply: set!(disable_stun, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.media.stun_servers.is_empty())),
    },
    Setting {
        env: "JVB_SRTP_PROFILES",
        toml: "media.srtp_profiles",
        flag: Some("srtp-profiles"),
        value_name: "PROFILE,...",
        default: "AEAD_AES_128_GCM,AES_CM_128_HMAC_SHA1_80",
        help: "SRTP profiles to offer in DTLS-SRTP, in preference order",
        switch: false,
        apply: set!(srtp_profiles, srtp_profiles),
        show: |c| {
            let names: Vec<&str> = c.media.srtp_profiles.iter().map(|p| p.name()).collect();
            Some(strs(&names))
        },
    },
    Setting {
        env: "JVB_CC_TRUST_BWE",
        toml: "media.trust_bwe",
        flag: Some("trust-bwe"),
        value_name: "BOOL",
        default: "true",
        help: "Limit forwarded layers by the bandwidth estimate",
        switch: true,
        apply: set!(trust_bwe, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.media.trust_bwe)),
    },
    Setting {
        env: "JVB_UDP_BUFFER_SIZE",
        toml: "media.udp_buffer_size",
        flag: Some("udp-buffer-size"),
        value_name: "BYTES",
        default: "8388608",
        help: "SO_RCVBUF/SO_SNDBUF the media socket asks for (capped by net.core.rmem_max/wmem_max \
               without CAP_NET_ADMIN; 0 = kernel default)",
        switch: false,
        apply: |l, v| {
            l.udp_buffer_size = Some(
                v.trim()
                    .parse()
                    .map_err(|_| "expected a number of bytes".to_string())?,
            );
            Ok(())
        },
        show: |c| Some(int(c.media.udp_buffer_size.into())),
    },
    // --- REST
    Setting {
        env: "JVB_REST_HOST",
        toml: "rest.host",
        flag: Some("rest-host"),
        value_name: "IP",
        default: "127.0.0.1",
        help: "REST API bind address (the container image sets 0.0.0.0, as docker-jitsi-meet's jvb)",
        switch: false,
        apply: |l, v| {
            l.rest_host = Some(
                v.trim()
                    .parse()
                    .map_err(|_| "invalid IP address".to_string())?,
            );
            Ok(())
        },
        show: |c| Some(s(&c.rest.bind.ip().to_string())),
    },
    Setting {
        env: "JVB_REST_PORT",
        toml: "rest.port",
        flag: Some("rest-port"),
        value_name: "PORT",
        default: "8080",
        help: "REST API port (0 = any free port; the bound address is logged)",
        switch: false,
        apply: set!(rest_port, parse_port),
        show: |c| Some(int(c.rest.bind.port().into())),
    },
    Setting {
        env: "COLIBRI_REST_ENABLED",
        toml: "rest.colibri_stats",
        flag: Some("colibri-stats"),
        value_name: "BOOL",
        default: "false",
        help: "Serve GET /colibri/stats (JVB serves it with its COLIBRI REST API, off in the jitsi/jvb image)",
        switch: true,
        apply: set!(colibri_stats, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.rest.colibri_stats)),
    },
    Setting {
        env: "SHUTDOWN_REST_ENABLED",
        toml: "rest.shutdown",
        flag: Some("shutdown-api"),
        value_name: "BOOL",
        default: "false",
        help: "Accept POST /colibri/shutdown (needed by `bridge graceful-shutdown`)",
        switch: true,
        apply: set!(shutdown_api, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.rest.shutdown_api)),
    },
    // --- colibri-ws
    Setting {
        env: "ENABLE_COLIBRI_WEBSOCKET",
        toml: "colibri_ws.enabled",
        flag: Some("colibri-ws"),
        value_name: "BOOL",
        default: "false",
        help: "Offer the bridge channel over colibri-ws too (WebSocket on JVB_WS_PORT; clients prefer SCTP)",
        switch: true,
        apply: set!(colibri_ws, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.colibri_ws.enabled)),
    },
    Setting {
        env: "JVB_WS_HOST",
        toml: "colibri_ws.host",
        flag: Some("ws-host"),
        value_name: "IP",
        default: "0.0.0.0",
        help: "colibri-ws (public HTTP) bind address",
        switch: false,
        apply: |l, v| {
            l.ws_host = Some(
                v.trim()
                    .parse()
                    .map_err(|_| "invalid IP address".to_string())?,
            );
            Ok(())
        },
        show: |c| Some(s(&c.colibri_ws.bind.ip().to_string())),
    },
    Setting {
        env: "JVB_WS_PORT",
        toml: "colibri_ws.port",
        flag: Some("ws-port"),
        value_name: "PORT",
        default: "9090",
        help: "colibri-ws (public HTTP) port (0 = any free port)",
        switch: false,
        apply: set!(ws_port, parse_port),
        show: |c| Some(int(c.colibri_ws.bind.port().into())),
    },
    Setting {
        env: "JVB_WS_DOMAIN",
        toml: "colibri_ws.domain",
        flag: Some("ws-domain"),
        value_name: "HOST[:PORT]",
        default: "(PUBLIC_URL's host)",
        help: "Host (and port) in advertised colibri-ws URLs: the proxy clients reach",
        switch: false,
        apply: set!(ws_domain, label),
        show: |c| c.colibri_ws.domain.as_deref().map(s),
    },
    Setting {
        env: "JVB_WS_SERVER_ID",
        toml: "colibri_ws.server_id",
        flag: Some("ws-server-id"),
        value_name: "ID",
        default: "(JVB_MUC_NICKNAME)",
        help: "Server id path segment of colibri-ws URLs (the proxy routes on it)",
        switch: false,
        apply: set!(ws_server_id, label),
        show: |c| c.colibri_ws.server_id.as_deref().map(s),
    },
    Setting {
        env: "JVB_WS_TLS",
        toml: "colibri_ws.tls",
        flag: Some("ws-tls"),
        value_name: "BOOL",
        default: "true",
        help: "Advertise wss:// (true, behind a TLS proxy) or ws:// URLs",
        switch: true,
        apply: set!(ws_tls, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.colibri_ws.tls)),
    },
    // --- lifecycle
    Setting {
        env: "JVB_INITIAL_DRAIN",
        toml: "lifecycle.initial_drain",
        flag: Some("drain"),
        value_name: "BOOL",
        default: "false",
        help: "Start in drain mode (the focus prefers other bridges)",
        switch: true,
        apply: set!(initial_drain, parse_bool),
        show: |c| Some(toml::Value::Boolean(c.lifecycle.initial_drain)),
    },
    Setting {
        env: "JVB_GRACEFUL_SHUTDOWN_MAX_DURATION",
        toml: "lifecycle.graceful_shutdown_max_duration",
        flag: Some("graceful-shutdown-max-duration"),
        value_name: "DURATION",
        default: "24h",
        help: "Longest time in GRACEFUL_SHUTDOWN before SHUTTING_DOWN even with endpoints left",
        switch: false,
        apply: set!(graceful_shutdown_max_duration, parse_duration),
        show: |c| Some(dur(c.lifecycle.graceful_shutdown_max_duration)),
    },
    Setting {
        env: "JVB_GRACEFUL_SHUTDOWN_MIN_PARTICIPANTS",
        toml: "lifecycle.graceful_shutdown_min_participants",
        flag: Some("graceful-shutdown-min-participants"),
        value_name: "N",
        default: "0",
        help: "GRACEFUL_SHUTDOWN ends when local endpoints drop to this many",
        switch: false,
        apply: set!(graceful_shutdown_min_participants, parse_u64),
        show: |c| Some(int(c.lifecycle.graceful_shutdown_min_participants)),
    },
    Setting {
        env: "JVB_SHUTTING_DOWN_DELAY",
        toml: "lifecycle.shutting_down_delay",
        flag: Some("shutting-down-delay"),
        value_name: "DURATION",
        default: "1m",
        help: "Time in SHUTTING_DOWN (the focus moves participants) before the process exits 0",
        switch: false,
        apply: set!(shutting_down_delay, parse_duration),
        show: |c| Some(dur(c.lifecycle.shutting_down_delay)),
    },
    // --- expiry
    Setting {
        env: "JVB_ENDPOINT_EXPIRE_TIMEOUT",
        toml: "expiry.endpoint_timeout",
        flag: Some("endpoint-expire-timeout"),
        value_name: "DURATION",
        default: "1m",
        help: "An endpoint with no activity for this long is expired",
        switch: false,
        apply: set!(endpoint_expire_timeout, positive_duration),
        show: |c| Some(dur(c.expiry.endpoint_timeout)),
    },
    Setting {
        env: "JVB_CONFERENCE_EXPIRE_TIMEOUT",
        toml: "expiry.conference_timeout",
        flag: Some("conference-expire-timeout"),
        value_name: "DURATION",
        default: "1m",
        help: "A conference with no endpoints for this long is expired",
        switch: false,
        apply: set!(conference_expire_timeout, positive_duration),
        show: |c| Some(dur(c.expiry.conference_timeout)),
    },
    // --- stats
    Setting {
        env: "JVB_STATS_INTERVAL",
        toml: "stats.interval",
        flag: Some("stats-interval"),
        value_name: "DURATION",
        default: "5s",
        help: "Stats sampling period (rates are computed over it)",
        switch: false,
        apply: |l, v| {
            let d = positive_duration(v)?;
            if d < Duration::from_millis(100) {
                return Err("must be at least 100ms".into());
            }
            l.stats_interval = Some(d);
            Ok(())
        },
        show: |c| Some(dur(c.stats.interval)),
    },
    Setting {
        env: "JVB_MAX_PACKET_RATE",
        toml: "stats.max_packet_rate",
        flag: Some("max-packet-rate"),
        value_name: "PPS",
        default: "50000",
        help: "Packet rate (in + out) that counts as stress 1.0",
        switch: false,
        apply: set!(max_packet_rate, positive_u64),
        show: |c| Some(int(c.stats.max_packet_rate)),
    },
    Setting {
        env: "JVB_AVERAGE_PARTICIPANT_STRESS",
        toml: "stats.average_participant_stress",
        flag: Some("average-participant-stress"),
        value_name: "X",
        default: "0.01",
        help: "Stress one endpoint is assumed to add, published to the focus (0..1)",
        switch: false,
        apply: set!(average_participant_stress, stress),
        show: |c| Some(toml::Value::Float(c.stats.average_participant_stress)),
    },
    Setting {
        env: "JVB_OCTO_REGION",
        toml: "stats.region",
        flag: Some("region"),
        value_name: "REGION",
        default: "(none; \"europe\" when ENABLE_OCTO=true)",
        help: "Region published to the focus for region-based bridge selection",
        switch: false,
        apply: set!(region, label),
        show: |c| c.stats.region.as_deref().map(s),
    },
    Setting {
        env: "JVB_OCTO_RELAY_ID",
        toml: "stats.relay_id",
        flag: Some("relay-id"),
        value_name: "ID",
        default: "(none)",
        help: "Relay id published to the focus (only set it if bridge-to-bridge relaying is supported)",
        switch: false,
        apply: set!(relay_id, label),
        show: |c| c.stats.relay_id.as_deref().map(s),
    },
    Setting {
        env: "JVB_INSTANCE_ID",
        toml: "instance_id",
        flag: Some("instance-id"),
        value_name: "ID",
        default: "(none)",
        help: "Identifier of this instance, included in logs",
        switch: false,
        apply: set!(instance_id, label),
        show: |c| c.instance_id.as_deref().map(s),
    },
    // --- logging
    Setting {
        env: "LOG_FORMAT",
        toml: "log.format",
        flag: Some("log-format"),
        value_name: "text|json",
        default: "text",
        help: "Log output format on stderr",
        switch: false,
        apply: |l, v| {
            l.log_format = Some(v.parse()?);
            Ok(())
        },
        show: |c| Some(s(&c.log.format.to_string())),
    },
    Setting {
        env: "LOG_LEVEL",
        toml: "log.level",
        flag: Some("log-level"),
        value_name: "FILTER",
        default: "info (or $RUST_LOG)",
        help: "Log level or tracing filter, e.g. info, debug, warn,bridge=debug",
        switch: false,
        apply: set!(log_level, parse_log_filter),
        show: |c| Some(s(&c.log.level)),
    },
];

/// Environment variables read outside [`SETTINGS`] (docker-jitsi-meet compatibility), for `--help`.
pub const OTHER_ENV: &[(&str, &str)] = &[
    (
        "JVB_CONFIG_FILE",
        "TOML config file when --config is not given",
    ),
    ("HOSTNAME", "default for JVB_MUC_NICKNAME"),
    ("PUBLIC_URL", "its host is the default for JVB_WS_DOMAIN"),
    ("RUST_LOG", "default for LOG_LEVEL"),
    (
        "ENABLE_JVB_XMPP_SERVER",
        "use the separate brewery Prosody: JVB_XMPP_SERVER [xmpp.jvb.meet.jitsi], JVB_XMPP_PORT [6222], JVB_XMPP_AUTH_DOMAIN [auth.jvb.meet.jitsi], JVB_XMPP_INTERNAL_MUC_DOMAIN [muc.jvb.meet.jitsi] replace the XMPP_* values",
    ),
    (
        "DOCKER_HOST_ADDRESS",
        "deprecated fallback for JVB_ADVERTISE_IPS",
    ),
    (
        "ENABLE_OCTO",
        "when true, JVB_OCTO_REGION defaults to \"europe\" (as the jvb image)",
    ),
];

/// docker-jitsi-meet jvb variables we accept but that have no effect here (logged at start-up).
pub const IGNORED_ENV: &[&str] = &[
    "DISABLE_AWS_HARVESTER",
    "ENABLE_VLA",
    "BWE_ESTIMATOR_ENGINE",
    "JVB_USE_USRSCTP",
    "JVB_REQUIRE_VALID_ADDRESS",
    "VIDEOBRIDGE_MAX_MEMORY",
    "JVB_LOG_FILE",
    "JVB_PREFER_SCTP",
    "SENTRY_DSN",
    "AUTOSCALER_URL",
    "XMPP_MUC_DOMAIN",
];

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
                max_packet_rate: self
                    .max_packet_rate
                    .unwrap_or(stats_defaults.max_packet_rate),
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
        assert_eq!(c.stats.max_packet_rate, 50_000);
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
