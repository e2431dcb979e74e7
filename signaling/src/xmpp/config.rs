//! What a session needs to know to connect: where, as whom, how securely, and how patiently.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use thiserror::Error;
use xmpp_parsers::jid::BareJid;

use super::backoff::Backoff;

/// Default port of client-to-server connections.
pub const DEFAULT_C2S_PORT: u16 = 5222;
/// Default port of XEP-0114 component connections.
pub const DEFAULT_COMPONENT_PORT: u16 = 5347;

/// A configuration value that does not make sense.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("invalid server address '{0}': expected host[:port]")]
    BadAddress(String),
    #[error("invalid JID '{jid}': {reason}")]
    BadJid { jid: String, reason: String },
}

/// `host:port` of the XMPP server (docker-jitsi-meet's `XMPP_SERVER` is `host[:port]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        ServerAddr {
            host: host.into(),
            port,
        }
    }

    /// Parses `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address.
    pub fn parse(text: &str, default_port: u16) -> Result<Self, ConfigError> {
        let bad = || ConfigError::BadAddress(text.to_owned());
        let text = text.trim();
        if text.is_empty() {
            return Err(bad());
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?;
            let port = match after {
                "" => default_port,
                p => p
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(bad)?,
            };
            return Ok(ServerAddr::new(host, port));
        }
        if text.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok(ServerAddr::new(text, default_port));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (text, default_port),
        };
        if host.is_empty() || host.contains(['/', ' ', '@']) || port == 0 {
            return Err(bad());
        }
        Ok(ServerAddr::new(host, port))
    }

    /// True for `localhost` and loopback IP addresses: where plaintext is acceptable by default.
    pub fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Transport security of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS. Meant for loopback (Prosody in the same pod or test).
    Plaintext,
    /// STARTTLS, required. With `verify_certificate: false` any server certificate is accepted
    /// (docker-jitsi-meet's internal XMPP uses self-signed certificates).
    StartTls { verify_certificate: bool },
}

/// Liveness checking of an idle stream: after `idle` without any incoming data the session pings the
/// server; when nothing arrives within `response` more, the connection is declared dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub response: Duration,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            idle: Duration::from_secs(30),
            response: Duration::from_secs(15),
        }
    }
}

/// How a user session (`jvb@auth.<domain>`, `focus@auth.<domain>`) connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The account; its domain is the XMPP domain announced in the stream header.
    pub jid: BareJid,
    pub password: String,
    /// Resource to request at bind time; the server picks one when `None`.
    pub resource: Option<String>,
    pub server: ServerAddr,
    pub security: Security,
    pub backoff: Backoff,
    pub keepalive: Keepalive,
    /// Limit for one connection attempt (TCP, TLS, SASL, bind).
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Plaintext when `server` is loopback, STARTTLS with certificate verification otherwise.
    pub fn new(jid: BareJid, password: impl Into<String>, server: ServerAddr) -> Self {
        let security = if server.is_loopback() {
            Security::Plaintext
        } else {
            Security::StartTls {
                verify_certificate: true,
            }
        };
        ClientConfig {
            jid,
            password: password.into(),
            resource: None,
            server,
            security,
            backoff: Backoff::default(),
            keepalive: Keepalive::default(),
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// Parses the JID and `host[:port]` (port 5222 by default).
    pub fn parse(
        jid: &str,
        password: impl Into<String>,
        server: &str,
    ) -> Result<Self, ConfigError> {
        let jid = BareJid::new(jid).map_err(|e| ConfigError::BadJid {
            jid: jid.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(
            jid,
            password,
            ServerAddr::parse(server, DEFAULT_C2S_PORT)?,
        ))
    }

    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// STARTTLS accepting any certificate (docker-jitsi-meet's internal connection).
    pub fn disable_certificate_verification(self) -> Self {
        self.with_security(Security::StartTls {
            verify_certificate: false,
        })
    }

    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }
}

/// How an XEP-0114 component (`focus.<domain>`) connects. Always plaintext, as XEP-0114 has no TLS:
/// run it over loopback or a private network.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    /// The component's domain, e.g. `focus.meet.example`.
    pub jid: BareJid,
    pub secret: String,
    pub server: ServerAddr,
    pub backoff: Backoff,
    pub keepalive: Keepalive,
    pub connect_timeout: Duration,
}

impl ComponentConfig {
    pub fn new(jid: BareJid, secret: impl Into<String>, server: ServerAddr) -> Self {
        ComponentConfig {
            jid,
            secret: secret.into(),
            server,
            backoff: Backoff::default(),
            keepalive: Keepalive::default(),
            connect_timeout: Duration::from_secs(15),
        }
    }

    /// Parses the component domain and `host[:port]` (port 5347 by default).
    pub fn parse(jid: &str, secret: impl Into<String>, server: &str) -> Result<Self, ConfigError> {
        let parsed = BareJid::new(jid).map_err(|e| ConfigError::BadJid {
            jid: jid.to_owned(),
            reason: e.to_string(),
        })?;
        if parsed.node().is_some() {
            return Err(ConfigError::BadJid {
                jid: jid.to_owned(),
                reason: "a component JID is a bare domain".into(),
            });
        }
        Ok(Self::new(
            parsed,
            secret,
            ServerAddr::parse(server, DEFAULT_COMPONENT_PORT)?,
        ))
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn with_keepalive(mut self, keepalive: Keepalive) -> Self {
        self.keepalive = keepalive;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_parse_like_docker_xmpp_server() {
        assert_eq!(
            ServerAddr::parse("xmpp.meet.jitsi", 5222).unwrap(),
            ServerAddr::new("xmpp.meet.jitsi", 5222)
        );
        assert_eq!(
            ServerAddr::parse("xmpp.meet.jitsi:15222", 5222).unwrap(),
            ServerAddr::new("xmpp.meet.jitsi", 15222)
        );
        assert_eq!(
            ServerAddr::parse("127.0.0.1:5347", 1).unwrap(),
            ServerAddr::new("127.0.0.1", 5347)
        );
        assert_eq!(
            ServerAddr::parse("[::1]:5000", 1).unwrap(),
            ServerAddr::new("::1", 5000)
        );
        assert_eq!(
            ServerAddr::parse("[::1]", 5222).unwrap(),
            ServerAddr::new("::1", 5222)
        );
        assert_eq!(
            ServerAddr::parse("::1", 5222).unwrap(),
            ServerAddr::new("::1", 5222)
        );
        for bad in [
            "",
            "host:",
            "host:x",
            "host:70000",
            ":5222",
            "[::1",
            "[zz]:1",
            "a b:1",
            "h:0",
        ] {
            assert!(ServerAddr::parse(bad, 5222).is_err(), "{bad}");
        }
        assert_eq!(ServerAddr::new("::1", 7).to_string(), "[::1]:7");
    }

    #[test]
    fn security_defaults_to_plaintext_only_on_loopback() {
        let c = ClientConfig::parse("jvb@auth.meet.example", "pw", "127.0.0.1:5222").unwrap();
        assert_eq!(c.security, Security::Plaintext);
        let c = ClientConfig::parse("jvb@auth.meet.example", "pw", "localhost").unwrap();
        assert_eq!(c.security, Security::Plaintext);
        let c = ClientConfig::parse("jvb@auth.meet.example", "pw", "xmpp.meet.jitsi").unwrap();
        assert_eq!(
            c.security,
            Security::StartTls {
                verify_certificate: true
            }
        );
        assert_eq!(c.server.port, 5222);
        let c = c.disable_certificate_verification();
        assert_eq!(
            c.security,
            Security::StartTls {
                verify_certificate: false
            }
        );
    }

    #[test]
    fn component_config_wants_a_domain() {
        let c = ComponentConfig::parse("focus.meet.example", "s", "xmpp.meet.jitsi").unwrap();
        assert_eq!(c.server.port, 5347);
        assert!(ComponentConfig::parse("focus@meet.example", "s", "h").is_err());
        assert!(ClientConfig::parse("a@b@c", "p", "h").is_err());
    }
}
