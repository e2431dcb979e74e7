//! The bridge's settings table: every setting's env var, TOML key, flag, default, parser and
//! printer (see [`SETTINGS`]), the value parsers its rows share, and the env vars read outside it
//! or ignored. `config.rs` holds the types the rows fill in and the loading.

use std::time::Duration;

use service::{
    HostPort, format_duration, parse_bool, parse_duration, parse_host_ports, parse_list,
    parse_log_filter, parse_port, parse_u64,
};

use super::{AdvertisedAddress, Layer, Setting, SrtpProfile};

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
pub(super) fn domain(v: &str) -> Result<String, String> {
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

pub(super) fn advertise_ips(v: &str) -> Result<Vec<AdvertisedAddress>, String> {
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

pub(super) fn xmpp_servers(v: &str) -> Result<Vec<HostPort>, String> {
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

pub(super) fn server_port(v: &str) -> Result<u16, String> {
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

/// Most media workers (one thread and socket each).
const MAX_MEDIA_WORKERS: u64 = 1024;

fn media_workers(v: &str) -> Result<usize, String> {
    match parse_u64(v)? {
        n @ 1..=MAX_MEDIA_WORKERS => Ok(n as usize),
        _ => Err(format!("must be between 1 and {MAX_MEDIA_WORKERS}")),
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
    Setting {
        env: "JVB_MEDIA_WORKERS",
        toml: "media.workers",
        flag: Some("media-workers"),
        value_name: "N",
        default: "the CPUs the process may use",
        help: "Media workers: threads forwarding media in parallel, one UDP socket each on the one \
               port (SO_REUSEPORT); a conference lives on one",
        switch: false,
        apply: set!(media_workers, media_workers),
        show: |c| Some(int(c.media.workers as u64)),
    },
    Setting {
        env: "JVB_SILENCE_DETECTION_TIMEOUT",
        toml: "speech_activity.silence_detection_timeout",
        flag: Some("silence-detection-timeout"),
        value_name: "DURATION",
        default: "0s (off, as JVB's enable-silence-detection = false)",
        help: "After this long without speech in a conference, clients are told it is silent \
               (DominantSpeakerEndpointChangeEvent silence: true); JVB uses 3s when enabled",
        switch: false,
        apply: set!(silence_detection_timeout, parse_duration),
        show: |c| Some(dur(c.media.silence_detection_timeout.unwrap_or_default())),
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
        default: "media workers × 150000",
        help: "The whole bridge's packet rate (in + out) that counts as stress 1.0",
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
