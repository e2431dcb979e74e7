//! The focus configuration, assembled in layers: built-in defaults (Jicofo's `reference.conf`), then the
//! docker-jitsi-meet `jicofo` image's environment variables that apply to us, then an optional TOML file,
//! then command-line flags. Each layer overrides the ones before it. Any bad value stops start-up with an
//! error that names the variable, key or flag.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use service::LogFormat;

use thiserror::Error;

use crate::core::offer::CodecConfig;
use crate::core::{AuthConfig, AuthKind, BridgeConfig, ConferenceConfig, SelectionStrategy};

mod toml_file;
use toml_file::parse_video_codecs;
pub use toml_file::{
    TomlAuthentication, TomlBridge, TomlCodec, TomlConference, TomlConfig, TomlHealth, TomlRest,
    TomlToggle, TomlVideoCodec, TomlXmpp,
};

/// Why the configuration could not be assembled.
#[derive(Debug, Error, PartialEq)]
pub enum ConfigError {
    #[error("{source_name} has an invalid value '{value}': {reason}")]
    Invalid {
        /// The environment variable, TOML key or flag at fault.
        source_name: String,
        value: String,
        reason: String,
    },
    #[error("{0} is required")]
    Missing(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("{path}: {reason}")]
    Toml { path: String, reason: String },
}

fn invalid(source_name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        source_name: source_name.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// One XMPP client login (the focus's own account).
#[derive(Debug, Clone, PartialEq)]
pub struct XmppClientConfig {
    /// Host name or address of the XMPP server.
    pub host: String,
    pub port: u16,
    /// The domain the focus logs in to (`XMPP_AUTH_DOMAIN`).
    pub login_domain: String,
    pub username: String,
    pub password: String,
    pub resource: String,
    /// `None`: plaintext to a loopback server, STARTTLS otherwise. Certificates are not verified, as
    /// docker-jitsi-meet configures Jicofo.
    pub use_tls: Option<bool>,
}

/// The XEP-0114 component `focus.<domain>` that stock Prosody routes conference IQs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentConfig {
    pub host: String,
    pub port: u16,
    /// The component's JID, `focus.<XMPP_DOMAIN>`.
    pub jid: String,
    pub secret: String,
}

/// Secure domain (Jicofo `jicofo.authentication`, docker `ENABLE_AUTH`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub kind: AuthKind,
    /// The domain whose users are authenticated; `None`: `XMPP_DOMAIN` (what docker renders).
    pub login_url: Option<String>,
    /// Keep authentication sessions after their conference (XMPP only; JWT sessions never are).
    pub enable_auto_login: bool,
    /// How long an unused session lives (XMPP only; JWT sessions live one minute).
    pub lifetime: Duration,
}

impl AuthSettings {
    /// Jicofo's defaults for `kind`.
    pub fn new(kind: AuthKind) -> Self {
        AuthSettings {
            kind,
            login_url: None,
            enable_auto_login: true,
            lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// docker's `AUTH_TYPE`s: `jwt` is token authentication, the others (`internal`, `ldap`, `matrix`,
/// `hybrid_matrix_token`) log users in to `XMPP_DOMAIN` with Prosody checking the credentials.
fn parse_auth_type(name: &str, v: &str) -> Result<AuthKind, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "jwt" => Ok(AuthKind::Jwt),
        "internal" | "ldap" | "matrix" | "hybrid_matrix_token" | "xmpp" => Ok(AuthKind::Xmpp),
        _ => Err(invalid(
            name,
            v,
            "expected internal, jwt, ldap, matrix or hybrid_matrix_token",
        )),
    }
}

/// REST server on 8888.
#[derive(Debug, Clone, PartialEq)]
pub struct RestConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Serve `/about/health` (Jicofo `jicofo.health.enabled`, docker `JICOFO_ENABLE_HEALTH_CHECKS`).
    /// On unless turned off, unlike Jicofo, whose default is off: Jicofo's check starts a test
    /// conference, ours only reads state the focus already has (an operational bridge, the XMPP
    /// connection), and the images' HEALTHCHECK, the manifests' probes, run.sh and the load test ask it.
    /// Off, the path is not served, as Jicofo leaves it out (404).
    pub health: bool,
}

/// The whole configuration of the `focus` binary.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `XMPP_DOMAIN`: the domain clients log in to.
    pub xmpp_domain: String,
    /// `XMPP_MUC_DOMAIN`: where conference rooms live.
    pub muc_domain: String,
    /// `XMPP_INTERNAL_MUC_DOMAIN`: where the bridge brewery lives.
    pub internal_muc_domain: String,
    /// `JVB_BREWERY_MUC`: the brewery room's local part.
    pub brewery_room: String,
    /// Whether breakout rooms (`breakout.<XMPP_DOMAIN>`, docker's `ENABLE_BREAKOUT_ROOMS`, default on)
    /// are conference rooms the focus serves, and their MUC service if not the docker one.
    pub breakout_rooms: bool,
    pub breakout_muc_domain: Option<String>,
    /// Domains whose accounts may be bridges in the brewery; empty: the domain the focus logs in to
    /// on the brewery connection (`XMPP_AUTH_DOMAIN`, or `JVB_XMPP_AUTH_DOMAIN` on a separate server).
    pub bridge_trusted_domains: Vec<String>,
    pub client: XmppClientConfig,
    /// A separate XMPP server for the brewery (`ENABLE_JVB_XMPP_SERVER`); `None` uses `client`.
    pub service: Option<XmppClientConfig>,
    /// The brewery's MUC domain on the service connection.
    pub service_muc_domain: Option<String>,
    pub component: Option<ComponentConfig>,
    /// The client_proxy component whose IQs carry the original sender in the resource.
    pub client_proxy: Option<String>,
    /// How long to wait for any IQ answer.
    pub reply_timeout: Duration,
    pub conference: ConferenceConfig,
    pub bridge: BridgeConfig,
    pub codecs: CodecConfig,
    pub rest: RestConfig,
    pub log_json: bool,
    /// Secure domain; `None`: everyone may create rooms.
    pub auth: Option<AuthSettings>,
    /// The `av_moderation` Prosody component (`avmoderation.<XMPP_DOMAIN>` in docker) whose A/V
    /// moderation messages are trusted.
    pub av_moderation_component: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        let xmpp_domain = "meet.jitsi".to_owned();
        Config {
            muc_domain: "muc.meet.jitsi".into(),
            internal_muc_domain: "internal-muc.meet.jitsi".into(),
            brewery_room: "jvbbrewery".into(),
            breakout_rooms: true,
            breakout_muc_domain: None,
            bridge_trusted_domains: Vec::new(),
            client: XmppClientConfig {
                host: "xmpp.meet.jitsi".into(),
                port: 5222,
                login_domain: "auth.meet.jitsi".into(),
                username: "focus".into(),
                password: String::new(),
                resource: "focus".into(),
                use_tls: None,
            },
            service: None,
            service_muc_domain: None,
            component: None,
            client_proxy: Some(format!("focus.{xmpp_domain}")),
            av_moderation_component: Some(format!("avmoderation.{xmpp_domain}")),
            xmpp_domain,
            reply_timeout: Duration::from_secs(15),
            conference: ConferenceConfig::default(),
            bridge: BridgeConfig::default(),
            codecs: CodecConfig::default(),
            rest: RestConfig {
                host: IpAddr::from([127, 0, 0, 1]),
                port: 8888,
                health: true,
            },
            log_json: false,
            auth: None,
        }
    }
}

impl Config {
    /// The brewery room JID (`jvbbrewery@internal-muc.meet.jitsi`).
    pub fn brewery_jid(&self) -> String {
        let domain = self
            .service_muc_domain
            .as_deref()
            .unwrap_or(&self.internal_muc_domain);
        format!("{}@{}", self.brewery_room, domain)
    }

    /// The MUC services whose rooms the focus serves: `XMPP_MUC_DOMAIN` and the breakout-room service.
    /// Conference requests for other rooms (the brewery above all) are refused.
    pub fn conference_domains(&self) -> Vec<String> {
        let mut d = vec![self.muc_domain.clone()];
        d.extend(self.breakout_domain());
        d
    }

    /// The breakout-room MUC service, if breakout rooms are on.
    pub fn breakout_domain(&self) -> Option<String> {
        self.breakout_rooms.then(|| {
            self.breakout_muc_domain
                .clone()
                .unwrap_or_else(|| format!("breakout.{}", self.xmpp_domain))
        })
    }

    /// Domains whose accounts may be bridges (see [`Config::bridge_trusted_domains`]).
    pub fn bridge_domains(&self) -> Vec<String> {
        if !self.bridge_trusted_domains.is_empty() {
            return self.bridge_trusted_domains.clone();
        }
        let login = self.service.as_ref().unwrap_or(&self.client);
        vec![login.login_domain.clone()]
    }

    /// The core's authentication settings: users of the login domain (`XMPP_DOMAIN` unless set) are
    /// authenticated; JWT sessions are short and per conference, as Jicofo fixes them.
    pub fn auth_config(&self) -> Option<AuthConfig> {
        let a = self.auth.as_ref()?;
        let domain = a.login_url.as_deref().unwrap_or(&self.xmpp_domain);
        Some(match a.kind {
            AuthKind::Jwt => AuthConfig::new(AuthKind::Jwt, domain),
            AuthKind::Xmpp => AuthConfig {
                enable_auto_login: a.enable_auto_login,
                lifetime: a.lifetime,
                ..AuthConfig::new(AuthKind::Xmpp, domain)
            },
        })
    }

    /// Sets `XMPP_DOMAIN` and the names derived from it (the client_proxy and A/V moderation
    /// components).
    fn set_xmpp_domain(&mut self, v: &str) {
        self.client_proxy = Some(format!("focus.{v}"));
        self.av_moderation_component = Some(format!("avmoderation.{v}"));
        if let Some(c) = self.component.as_mut() {
            c.jid = format!("focus.{v}");
        }
        self.xmpp_domain = v.to_owned();
    }

    /// The focus's bare JID as clients see it (`focus@auth.meet.jitsi`).
    pub fn focus_bare_jid(&self) -> String {
        format!("{}@{}", self.client.username, self.client.login_domain)
    }

    /// Builds the configuration from all layers: defaults, environment, TOML file, flags.
    pub fn load(
        env: &dyn Fn(&str) -> Option<String>,
        flags: &Flags,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        config.apply_env(env)?;
        let toml_path = flags
            .config
            .clone()
            .or_else(|| env("FOCUS_CONFIG").map(PathBuf::from));
        if let Some(path) = toml_path {
            let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            config.apply_toml(&text, &path.display().to_string())?;
        }
        config.apply_flags(flags)?;
        config.validate()?;
        Ok(config)
    }

    /// Applies the docker-jitsi-meet `jicofo` image's environment variables that apply to this focus.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let mut e = EnvReader { get: &get };

        self.apply_auth_env(&e)?;
        if e.bool("ENABLE_VISITORS")? == Some(true) {
            return Err(ConfigError::Unsupported(
                "ENABLE_VISITORS=1: visitor nodes are not supported by this focus".into(),
            ));
        }

        if let Some(v) = get("XMPP_DOMAIN") {
            self.set_xmpp_domain(&v);
        }
        if let Some(v) = get("XMPP_MUC_DOMAIN") {
            self.muc_domain = v;
        }
        if let Some(v) = get("XMPP_INTERNAL_MUC_DOMAIN") {
            self.internal_muc_domain = v;
        }
        if let Some(v) = get("XMPP_AUTH_DOMAIN") {
            self.client.login_domain = v;
        }
        if let Some(v) = get("XMPP_SERVER") {
            // docker allows "host" and "host:port"; a list is for bridges only, the focus uses the first.
            let first = v.split(',').next().unwrap_or_default().trim().to_owned();
            let (host, port) = split_host_port("XMPP_SERVER", &first)?;
            self.client.host = host;
            if let Some(p) = port {
                self.client.port = p;
            }
        }
        if let Some(p) = e.num::<u16>("XMPP_PORT")? {
            self.client.port = p;
        }
        if let Some(v) = get("JICOFO_AUTH_USER") {
            self.client.username = v;
        }
        if let Some(v) = env("JICOFO_AUTH_PASSWORD") {
            self.client.password = v;
        }
        if let Some(v) = get("JVB_BREWERY_MUC") {
            self.brewery_room = v;
        }
        if let Some(v) = e.bool("ENABLE_BREAKOUT_ROOMS")? {
            self.breakout_rooms = v;
        }
        // Ours (docker has no such variable): bridges' account domains when not the auth domain.
        if let Some(v) = get("JICOFO_BRIDGE_TRUSTED_DOMAINS") {
            self.bridge_trusted_domains = split_list(&v);
        }
        if let Some(v) = e.bool("XMPP_USE_TLS")? {
            self.client.use_tls = Some(v);
        }
        if let Some(secret) = get("JICOFO_COMPONENT_SECRET") {
            self.component = Some(ComponentConfig {
                host: self.client.host.clone(),
                port: 5347,
                jid: format!("focus.{}", self.xmpp_domain),
                secret,
            });
        }
        if let (Some(c), Some(p)) = (
            self.component.as_mut(),
            e.num::<u16>("XMPP_COMPONENT_PORT")?,
        ) {
            c.port = p;
        }
        if e.bool("ENABLE_JVB_XMPP_SERVER")? == Some(true) {
            let server = get("JVB_XMPP_SERVER").unwrap_or_else(|| "xmpp.jvb.meet.jitsi".into());
            let (host, port) = split_host_port("JVB_XMPP_SERVER", &server)?;
            self.service = Some(XmppClientConfig {
                host,
                port: e.num("JVB_XMPP_PORT")?.or(port).unwrap_or(6222),
                login_domain: get("JVB_XMPP_AUTH_DOMAIN")
                    .unwrap_or_else(|| "auth.jvb.meet.jitsi".into()),
                ..self.client.clone()
            });
            self.service_muc_domain = Some(
                get("JVB_XMPP_INTERNAL_MUC_DOMAIN").unwrap_or_else(|| "muc.jvb.meet.jitsi".into()),
            );
        }

        // Codecs and header extensions.
        if let Some(v) = e.bool("ENABLE_CODEC_VP8")? {
            self.codecs.vp8.enabled = v;
        }
        if let Some(v) = e.bool("ENABLE_CODEC_VP9")? {
            self.codecs.vp9.enabled = v;
        }
        if let Some(v) = e.bool("ENABLE_CODEC_AV1")? {
            self.codecs.av1.enabled = v;
        }
        if let Some(v) = e.bool("ENABLE_CODEC_H264")? {
            self.codecs.h264.enabled = v;
        }
        if let Some(v) = e.bool("ENABLE_CODEC_OPUS_RED")? {
            self.codecs.opus_red.enabled = v;
        }
        // Ours (no docker variable): which codecs the bridge forwards correctly.
        if let Some(v) = get("JICOFO_BRIDGE_VIDEO_CODECS") {
            self.codecs.bridge_video_codecs =
                parse_video_codecs("JICOFO_BRIDGE_VIDEO_CODECS", v.split(','))?;
        }
        // docker renders these two unconditionally with default 0.
        self.codecs.extensions.video_layers_allocation.enabled =
            e.bool("ENABLE_VLA")?.unwrap_or(false);
        self.codecs.extensions.mid.enabled = e.bool("JICOFO_ENABLE_MID")?.unwrap_or(false);

        // Bridges.
        if let Some(v) = e.num::<i64>("MAX_BRIDGE_PARTICIPANTS")? {
            self.bridge.max_bridge_participants = v;
        }
        if let Some(v) = e.num::<f64>("BRIDGE_AVG_PARTICIPANT_STRESS")? {
            self.bridge.average_participant_stress = v;
        }
        if let Some(v) = e.num::<f64>("BRIDGE_STRESS_THRESHOLD")? {
            self.bridge.stress_threshold = v;
        }
        if let Some(v) = get("OCTO_BRIDGE_SELECTION_STRATEGY") {
            self.bridge.selection_strategy = parse_strategy("OCTO_BRIDGE_SELECTION_STRATEGY", &v)?;
        }
        if let Some(v) = get("JICOFO_OCTO_REGION") {
            self.bridge.local_region = Some(v);
        }
        if let Some(v) = get("JICOFO_BRIDGE_REGION_GROUPS") {
            self.bridge.region_groups = parse_region_groups(&v)
                .map_err(|r| invalid("JICOFO_BRIDGE_REGION_GROUPS", &v, r))?;
        }
        if let Some(v) = e.bool("JICOFO_ENABLE_BRIDGE_HEALTH_CHECKS")? {
            self.bridge.health_checks_enabled = v;
        }
        if let Some(v) = e.bool("JICOFO_HEALTH_CHECKS_USE_PRESENCE")? {
            self.bridge.health_checks_use_presence = v;
        }

        // Conferences.
        if let Some(v) = e.duration("JICOFO_CONF_INITIAL_PARTICIPANT_WAIT_TIMEOUT")? {
            self.conference.initial_timeout = v;
        }
        if let Some(v) = e.duration("JICOFO_CONF_SINGLE_PARTICIPANT_TIMEOUT")? {
            self.conference.single_participant_timeout = v;
        }
        if let Some(v) = e.num::<usize>("JICOFO_CONF_MAX_AUDIO_SENDERS")? {
            self.conference.max_audio_senders = v;
        }
        if let Some(v) = e.num::<usize>("JICOFO_CONF_MAX_VIDEO_SENDERS")? {
            self.conference.max_video_senders = v;
        }
        if let Some(v) = e.bool("JICOFO_CONF_STRIP_SIMULCAST")? {
            self.conference.strip_simulcast = v;
        }
        if let Some(v) = e.bool("JICOFO_CONF_SSRC_REWRITING")? {
            self.conference.use_ssrc_rewriting = v;
        }
        if let Some(v) = e.num::<u32>("JICOFO_RESTART_REQUEST_MAX")? {
            self.conference.restart_max_requests = v;
            // docker renders the interval (default 60 s) only together with the maximum.
            self.conference.restart_interval = Duration::from_secs(
                e.num::<u64>("JICOFO_RESTART_REQUEST_INTERVAL")?
                    .unwrap_or(60),
            );
        }
        if let Some(v) = e.num::<usize>("MAX_SSRCS_PER_USER")? {
            self.conference.max_ssrcs_per_user = v;
            self.conference.max_ssrc_groups_per_user = v;
        }
        if let Some(v) = e.num::<usize>("MAX_SSRC_GROUPS_PER_USER")? {
            self.conference.max_ssrc_groups_per_user = v;
        }
        if let Some(v) = e.bool("ENABLE_AUTO_OWNER")? {
            self.conference.enable_auto_owner = v;
        }
        if let Some(v) = e.bool("ENABLE_MODERATOR_CHECKS")? {
            self.conference.enable_moderator_checks = v;
        }
        if let Some(v) = e.num::<usize>("JICOFO_MIN_PARTICIPANTS")? {
            self.conference.min_participants = v;
        }

        // REST.
        if e.bool("JICOFO_ENABLE_REST")? == Some(true) {
            self.rest.host = IpAddr::from([0, 0, 0, 0]);
        }
        // Ours (docker's jicofo has no such variables): what the manifests set, beside the bridge's
        // JVB_REST_HOST/JVB_REST_PORT.
        if let Some(v) = e.num::<IpAddr>("JICOFO_REST_HOST")? {
            self.rest.host = v;
        }
        if let Some(v) = e.num::<u16>("JICOFO_REST_PORT")? {
            self.rest.port = v;
        }
        if let Some(v) = e.bool("JICOFO_ENABLE_HEALTH_CHECKS")? {
            self.rest.health = v;
        }
        if let Some(v) = e.bool("JICOFO_LOG_JSON")? {
            self.log_json = v;
        }
        // The same variable the bridge reads, so one ConfigMap sets both.
        if let Some(v) = e.num::<LogFormat>("LOG_FORMAT")? {
            self.log_json = v == LogFormat::Json;
        }
        let _ = &mut e;
        Ok(())
    }

    /// The jicofo image's authentication variables (its `jicofo.conf` template): `JICOFO_ENABLE_AUTH`
    /// (default `ENABLE_AUTH`), `JICOFO_AUTH_TYPE` (default `AUTH_TYPE`, default `internal`),
    /// `ENABLE_AUTO_LOGIN`, `JICOFO_AUTH_LIFETIME`; the login domain is `XMPP_DOMAIN`.
    /// `ENABLE_GUESTS` and `XMPP_GUEST_DOMAIN` configure Prosody and the web app, not the focus: a
    /// guest is anyone not logged in to `XMPP_DOMAIN`.
    fn apply_auth_env(&mut self, e: &EnvReader<'_>) -> Result<(), ConfigError> {
        let enabled = match e.bool("JICOFO_ENABLE_AUTH")? {
            Some(v) => v,
            None => e.bool("ENABLE_AUTH")?.unwrap_or(false),
        };
        if !enabled {
            return Ok(());
        }
        let (name, kind) = match (e.get)("JICOFO_AUTH_TYPE") {
            Some(v) => ("JICOFO_AUTH_TYPE", Some(v)),
            None => ("AUTH_TYPE", (e.get)("AUTH_TYPE")),
        };
        let kind = match kind {
            Some(v) => parse_auth_type(name, &v)?,
            None => AuthKind::Xmpp,
        };
        let mut a = AuthSettings::new(kind);
        if let Some(v) = e.bool("ENABLE_AUTO_LOGIN")? {
            a.enable_auto_login = v;
        }
        if let Some(v) = e.duration("JICOFO_AUTH_LIFETIME")? {
            a.lifetime = v;
        }
        self.auth = Some(a);
        Ok(())
    }

    /// Applies a TOML file (keys mirror the structure of this type; see [`TomlConfig`]).
    pub fn apply_toml(&mut self, text: &str, path: &str) -> Result<(), ConfigError> {
        let t: TomlConfig = toml::from_str(text).map_err(|e| ConfigError::Toml {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        t.apply(self)
    }

    /// Applies command-line flags.
    pub fn apply_flags(&mut self, f: &Flags) -> Result<(), ConfigError> {
        if let Some(v) = &f.xmpp_server {
            let (host, port) = split_host_port("--xmpp-server", v)?;
            self.client.host = host;
            if let Some(p) = port {
                self.client.port = p;
            }
        }
        if let Some(v) = f.xmpp_port {
            self.client.port = v;
        }
        if let Some(v) = &f.xmpp_domain {
            self.set_xmpp_domain(v);
        }
        if let Some(v) = &f.auth_domain {
            self.client.login_domain = v.clone();
        }
        if let Some(v) = &f.muc_domain {
            self.muc_domain = v.clone();
        }
        if let Some(v) = &f.internal_muc_domain {
            self.internal_muc_domain = v.clone();
        }
        if let Some(v) = &f.password {
            self.client.password = v.clone();
        }
        if let Some(v) = &f.component_secret {
            let host = self.client.host.clone();
            let jid = format!("focus.{}", self.xmpp_domain);
            let c = self.component.get_or_insert(ComponentConfig {
                host,
                port: 5347,
                jid,
                secret: String::new(),
            });
            c.secret = v.clone();
        }
        if let Some(v) = f.component_port {
            match self.component.as_mut() {
                Some(c) => c.port = v,
                None => {
                    return Err(ConfigError::Missing(
                        "--component-secret (or JICOFO_COMPONENT_SECRET) for --component-port"
                            .into(),
                    ));
                }
            }
        }
        if f.no_tls {
            self.client.use_tls = Some(false);
            if let Some(s) = self.service.as_mut() {
                s.use_tls = Some(false);
            }
        }
        if let Some(v) = f.rest_port {
            self.rest.port = v;
        }
        if let Some(v) = f.rest_host {
            self.rest.host = v;
        }
        if let Some(v) = f.min_participants {
            self.conference.min_participants = v;
        }
        if f.log_json {
            self.log_json = true;
        }
        Ok(())
    }

    /// Final consistency checks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client.password.is_empty() {
            return Err(ConfigError::Missing(
                "JICOFO_AUTH_PASSWORD (or --password / xmpp.password)".into(),
            ));
        }
        for (name, value) in [
            ("XMPP_DOMAIN", &self.xmpp_domain),
            ("XMPP_MUC_DOMAIN", &self.muc_domain),
            ("XMPP_AUTH_DOMAIN", &self.client.login_domain),
            ("XMPP_INTERNAL_MUC_DOMAIN", &self.internal_muc_domain),
        ] {
            if jid::BareJid::new(value).is_err() || value.contains('@') {
                return Err(invalid(name, value, "not a valid XMPP domain"));
            }
        }
        let brewery_domain = self.brewery_jid();
        let brewery_domain = brewery_domain.split_once('@').map_or("", |(_, d)| d);
        for d in self.conference_domains() {
            if d.eq_ignore_ascii_case(brewery_domain) {
                return Err(invalid(
                    "XMPP_MUC_DOMAIN",
                    &d,
                    "is the brewery's MUC service (XMPP_INTERNAL_MUC_DOMAIN); conference rooms must \
                     live elsewhere",
                ));
            }
            if jid::BareJid::new(&d).is_err() || d.contains('@') {
                return Err(invalid(
                    "xmpp.breakout-muc-domain",
                    &d,
                    "not a valid XMPP domain",
                ));
            }
        }
        if jid::BareJid::new(&self.brewery_jid()).is_err() {
            return Err(invalid(
                "JVB_BREWERY_MUC",
                &self.brewery_room,
                "not a valid room name",
            ));
        }
        if jid::BareJid::new(&self.focus_bare_jid()).is_err() {
            return Err(invalid(
                "JICOFO_AUTH_USER",
                &self.client.username,
                "not a valid user name",
            ));
        }
        if let Some(a) = &self.auth
            && let Some(d) = &a.login_url
            && (jid::BareJid::new(d).is_err() || d.contains('@'))
        {
            return Err(invalid(
                "authentication.login-url",
                d,
                "not a valid XMPP domain",
            ));
        }
        if self.conference.min_participants == 0 {
            return Err(invalid("min-participants", "0", "must be at least 1"));
        }
        if self.bridge.stress_threshold.is_nan() || self.bridge.stress_threshold <= 0.0 {
            return Err(invalid(
                "BRIDGE_STRESS_THRESHOLD",
                &self.bridge.stress_threshold.to_string(),
                "must be positive",
            ));
        }
        if self.bridge.average_participant_stress.is_nan()
            || self.bridge.average_participant_stress < 0.0
        {
            return Err(invalid(
                "BRIDGE_AVG_PARTICIPANT_STRESS",
                &self.bridge.average_participant_stress.to_string(),
                "must not be negative",
            ));
        }
        self.codecs
            .validate()
            .map_err(|reason| invalid("codec", "", reason))?;
        Ok(())
    }
}

struct EnvReader<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl EnvReader<'_> {
    fn bool(&self, name: &str) -> Result<Option<bool>, ConfigError> {
        (self.get)(name)
            .map(|v| parse_bool(&v).ok_or_else(|| invalid(name, &v, "expected true/false/1/0")))
            .transpose()
    }

    fn num<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        (self.get)(name)
            .map(|v| {
                v.trim()
                    .parse::<T>()
                    .map_err(|e| invalid(name, &v, e.to_string()))
            })
            .transpose()
    }

    fn duration(&self, name: &str) -> Result<Option<Duration>, ConfigError> {
        (self.get)(name)
            .map(|v| parse_duration(&v).map_err(|r| invalid(name, &v, r)))
            .transpose()
    }
}

/// docker's `toBool`: 1/0, true/false, yes/no, on/off (any case).
pub fn parse_bool(v: &str) -> Option<bool> {
    service::parse_bool(v).ok()
}

/// A HOCON-style duration: `20 seconds`, `20s`, `1 minute`, `500 ms`. Unlike
/// `service::parse_duration`, a bare number is milliseconds, as HOCON (and so Jicofo, whose
/// docker template pastes these variables into `jicofo.conf`) reads it.
pub fn parse_duration(v: &str) -> Result<Duration, String> {
    let s = v.trim().trim_matches('"').trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| "expected a number followed by a unit, e.g. '20 seconds'".to_owned())?;
    let millis = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => n,
        "s" | "second" | "seconds" => n * 1e3,
        "m" | "minute" | "minutes" => n * 60e3,
        "h" | "hour" | "hours" => n * 3600e3,
        "d" | "day" | "days" => n * 86400e3,
        other => return Err(format!("unknown time unit '{other}'")),
    };
    if !millis.is_finite() || !(0.0..=1e13).contains(&millis) {
        return Err("out of range".into());
    }
    Ok(Duration::from_millis(millis as u64))
}

/// docker's `JICOFO_BRIDGE_REGION_GROUPS`, pasted into `region-groups = [ … ]` of jicofo.conf: HOCON
/// lists of region names, e.g. `["us-east", "us-west"], ["eu-central", "eu-west"]` (quotes optional).
fn parse_region_groups(v: &str) -> Result<Vec<Vec<String>>, String> {
    let mut groups = Vec::new();
    let mut rest = v.trim();
    while !rest.is_empty() {
        let open = rest
            .strip_prefix('[')
            .ok_or("expected a list like [\"us-east\", \"us-west\"]")?;
        let (inner, after) = open.split_once(']').ok_or("unclosed '['")?;
        let group: Vec<String> = inner
            .split(',')
            .map(|r| r.trim().trim_matches('"').trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        if group.is_empty() {
            return Err("empty region group".into());
        }
        groups.push(group);
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    Ok(groups)
}

/// A comma-separated list, blanks dropped.
fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn split_host_port(name: &str, v: &str) -> Result<(String, Option<u16>), ConfigError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(invalid(name, v, "empty host"));
    }
    // An IPv6 literal without a port has several colons: take it whole.
    match v.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let p = port
                .parse::<u16>()
                .map_err(|e| invalid(name, v, format!("bad port: {e}")))?;
            Ok((host.to_owned(), Some(p)))
        }
        _ => Ok((v.to_owned(), None)),
    }
}

fn parse_strategy(name: &str, v: &str) -> Result<SelectionStrategy, ConfigError> {
    match v.trim() {
        "SingleBridgeSelectionStrategy" => Ok(SelectionStrategy::SingleBridge),
        "RegionBasedBridgeSelectionStrategy" | "IntraRegionBridgeSelectionStrategy" => {
            Ok(SelectionStrategy::RegionBased)
        }
        "SplitBridgeSelectionStrategy" => Err(invalid(
            name,
            v,
            "multi-bridge (Octo) conferences are not supported; use SingleBridgeSelectionStrategy or \
             RegionBasedBridgeSelectionStrategy",
        )),
        _ => Err(invalid(name, v, "unknown bridge selection strategy")),
    }
}

/// Command-line flags (the last configuration layer).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// TOML configuration file (also `FOCUS_CONFIG`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// XMPP server, `host` or `host:port` (XMPP_SERVER).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub xmpp_server: Option<String>,
    /// XMPP client port (XMPP_PORT).
    #[arg(long)]
    pub xmpp_port: Option<u16>,
    /// The client domain (XMPP_DOMAIN).
    #[arg(long)]
    pub xmpp_domain: Option<String>,
    /// The domain the focus logs in to (XMPP_AUTH_DOMAIN).
    #[arg(long)]
    pub auth_domain: Option<String>,
    /// Conference MUC domain (XMPP_MUC_DOMAIN).
    #[arg(long)]
    pub muc_domain: Option<String>,
    /// Brewery MUC domain (XMPP_INTERNAL_MUC_DOMAIN).
    #[arg(long)]
    pub internal_muc_domain: Option<String>,
    /// Password of focus@XMPP_AUTH_DOMAIN (JICOFO_AUTH_PASSWORD).
    #[arg(long)]
    pub password: Option<String>,
    /// Serve conference IQs as the XEP-0114 component focus.<domain> with this secret
    /// (JICOFO_COMPONENT_SECRET).
    #[arg(long)]
    pub component_secret: Option<String>,
    /// Prosody's component port (default 5347).
    #[arg(long)]
    pub component_port: Option<u16>,
    /// Connect without STARTTLS (loopback deployments).
    #[arg(long)]
    pub no_tls: bool,
    /// REST port (default 8888).
    #[arg(long)]
    pub rest_port: Option<u16>,
    /// REST bind address (default 127.0.0.1; 0.0.0.0 with JICOFO_ENABLE_REST=1).
    #[arg(long)]
    pub rest_host: Option<IpAddr>,
    /// Members needed before anyone is invited (default 2).
    #[arg(long)]
    pub min_participants: Option<usize>,
    /// Log JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn docker_defaults_and_env() {
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "s3cret"),
            ("XMPP_SERVER", "prosody:5223"),
            ("XMPP_DOMAIN", "meet.example"),
            ("XMPP_AUTH_DOMAIN", "auth.meet.example"),
            ("ENABLE_CODEC_H264", "0"),
            ("JICOFO_CONF_SINGLE_PARTICIPANT_TIMEOUT", "30 seconds"),
            ("MAX_SSRCS_PER_USER", "30"),
        ]);
        let c = Config::load(&e, &Flags::default()).unwrap();
        assert_eq!(c.client.host, "prosody");
        assert_eq!(c.client.port, 5223);
        assert_eq!(c.client_proxy.as_deref(), Some("focus.meet.example"));
        assert_eq!(c.focus_bare_jid(), "focus@auth.meet.example");
        assert_eq!(c.brewery_jid(), "jvbbrewery@internal-muc.meet.jitsi");
        assert!(!c.codecs.h264.enabled);
        assert!(c.codecs.vp8.enabled);
        assert_eq!(
            c.conference.single_participant_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(c.conference.max_ssrc_groups_per_user, 30);
        // docker disables mid by default.
        assert!(!c.codecs.extensions.mid.enabled);
    }

    #[test]
    fn offered_codecs_follow_enable_codec_and_the_bridge_list() {
        let load = |pairs: &[(&str, &str)]| {
            let mut all = vec![("JICOFO_AUTH_PASSWORD", "x")];
            all.extend_from_slice(pairs);
            Config::load(&env(&all), &Flags::default())
        };
        let c = load(&[]).unwrap();
        assert_eq!(c.codecs.visitor_codecs(), "av1,vp8,h264,vp9");
        let c = load(&[("ENABLE_CODEC_AV1", "0"), ("ENABLE_CODEC_VP9", "false")]).unwrap();
        assert_eq!(c.codecs.visitor_codecs(), "vp8,h264");
        let c = load(&[("JICOFO_BRIDGE_VIDEO_CODECS", " VP9, vp8 ")]).unwrap();
        assert_eq!(c.codecs.visitor_codecs(), "vp8,vp9");
        assert!(
            c.codecs.av1.enabled,
            "enabled, but not forwarded: not offered"
        );
        let err = load(&[("JICOFO_BRIDGE_VIDEO_CODECS", "vp8,hevc")]).unwrap_err();
        assert!(
            err.to_string().contains("JICOFO_BRIDGE_VIDEO_CODECS"),
            "{err}"
        );
        assert!(err.to_string().contains("hevc"), "{err}");
        let err = load(&[
            ("JICOFO_BRIDGE_VIDEO_CODECS", "h264"),
            ("ENABLE_CODEC_H264", "0"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("no video codec"), "{err}");
        // Jicofo's conference keys and ours in TOML.
        let mut c = load(&[("JICOFO_CONF_SSRC_REWRITING", "0")]).unwrap();
        assert!(!c.conference.use_ssrc_rewriting);
        c.apply_toml(
            "[conference]\nuse-ssrc-rewriting = true\nuse-rtp-mid-demux = false\nenable-ice-restart = false\n[codec]\nbridge-video-codecs = [\"vp8\", \"AV1\"]\n",
            "t.toml",
        )
        .unwrap();
        assert!(c.conference.use_ssrc_rewriting);
        assert!(!c.conference.use_rtp_mid_demux && !c.conference.enable_ice_restart);
        assert_eq!(c.codecs.visitor_codecs(), "av1,vp8");
        let err = c
            .apply_toml("[codec]\nbridge-video-codecs = []\n", "t.toml")
            .unwrap_err();
        assert!(
            err.to_string().contains("codec.bridge-video-codecs"),
            "{err}"
        );
    }

    #[test]
    fn health_checks_are_on_unless_turned_off() {
        let load = |pairs: &[(&str, &str)]| {
            let mut all = vec![("JICOFO_AUTH_PASSWORD", "x")];
            all.extend_from_slice(pairs);
            Config::load(&env(&all), &Flags::default()).unwrap()
        };
        assert!(load(&[]).rest.health, "served without the variable");
        assert!(load(&[("JICOFO_ENABLE_HEALTH_CHECKS", "true")]).rest.health);
        assert!(!load(&[("JICOFO_ENABLE_HEALTH_CHECKS", "0")]).rest.health);
        let mut c = load(&[]);
        c.apply_toml("[health]\nenabled = false\n", "t.toml")
            .unwrap();
        assert!(!c.rest.health);
    }

    #[test]
    fn rest_address_and_log_format_from_the_manifests_variables() {
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("JICOFO_ENABLE_REST", "true"),
            ("JICOFO_REST_PORT", "9999"),
            ("LOG_FORMAT", "json"),
        ]);
        let c = Config::load(&e, &Flags::default()).unwrap();
        assert_eq!(c.rest.host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(c.rest.port, 9999);
        assert!(c.log_json);
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("JICOFO_REST_HOST", "127.0.0.2"),
            ("LOG_FORMAT", "text"),
        ]);
        let c = Config::load(&e, &Flags::default()).unwrap();
        assert_eq!(c.rest.host, IpAddr::from([127, 0, 0, 2]));
        assert_eq!(c.rest.port, 8888);
        assert!(!c.log_json);
        for (name, bad) in [
            ("JICOFO_REST_PORT", "http"),
            ("JICOFO_REST_HOST", "localhost:1"),
            ("LOG_FORMAT", "xml"),
            ("JICOFO_ENABLE_HEALTH_CHECKS", "maybe"),
        ] {
            let e = env(&[("JICOFO_AUTH_PASSWORD", "x"), (name, bad)]);
            let err = Config::load(&e, &Flags::default()).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = env(&[("JICOFO_AUTH_PASSWORD", "x"), ("ENABLE_CODEC_VP8", "maybe")]);
        let err = Config::load(&e, &Flags::default()).unwrap_err();
        assert!(err.to_string().contains("ENABLE_CODEC_VP8"), "{err}");

        let e = env(&[("JICOFO_AUTH_PASSWORD", "x"), ("XMPP_PORT", "99999")]);
        assert!(
            Config::load(&e, &Flags::default())
                .unwrap_err()
                .to_string()
                .contains("XMPP_PORT")
        );

        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("JICOFO_CONF_SINGLE_PARTICIPANT_TIMEOUT", "soon"),
        ]);
        assert!(
            Config::load(&e, &Flags::default())
                .unwrap_err()
                .to_string()
                .contains("JICOFO_CONF_SINGLE_PARTICIPANT_TIMEOUT")
        );

        let e = env(&[]);
        assert!(matches!(
            Config::load(&e, &Flags::default()).unwrap_err(),
            ConfigError::Missing(_)
        ));

        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("ENABLE_AUTH", "1"),
            ("AUTH_TYPE", "kerberos"),
        ]);
        let err = Config::load(&e, &Flags::default()).unwrap_err();
        assert!(err.to_string().contains("AUTH_TYPE"), "{err}");
    }

    #[test]
    fn secure_domain_as_the_jicofo_image_maps_it() {
        // Off by default, and with ENABLE_AUTH=0.
        let c = Config::load(&env(&[("JICOFO_AUTH_PASSWORD", "x")]), &Flags::default()).unwrap();
        assert_eq!(c.auth_config(), None);
        // ENABLE_AUTH=1, AUTH_TYPE internal (the default): users of XMPP_DOMAIN are authenticated.
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("ENABLE_AUTH", "1"),
            ("ENABLE_GUESTS", "1"),
            ("XMPP_DOMAIN", "meet.example"),
            ("XMPP_GUEST_DOMAIN", "guest.meet.example"),
        ]);
        let c = Config::load(&e, &Flags::default()).unwrap();
        let a = c.auth_config().unwrap();
        assert_eq!(a.kind, AuthKind::Xmpp);
        assert_eq!(a.login_domain, "meet.example");
        assert!(a.enable_auto_login);
        assert_eq!(a.lifetime, Duration::from_secs(86400));
        // JICOFO_ENABLE_AUTH wins over ENABLE_AUTH; lifetime and auto-login are read.
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("ENABLE_AUTH", "1"),
            ("JICOFO_ENABLE_AUTH", "0"),
        ]);
        assert_eq!(
            Config::load(&e, &Flags::default()).unwrap().auth_config(),
            None
        );
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("JICOFO_ENABLE_AUTH", "true"),
            ("AUTH_TYPE", "ldap"),
            ("ENABLE_AUTO_LOGIN", "0"),
            ("JICOFO_AUTH_LIFETIME", "2 hours"),
        ]);
        let a = Config::load(&e, &Flags::default())
            .unwrap()
            .auth_config()
            .unwrap();
        assert_eq!(a.kind, AuthKind::Xmpp);
        assert!(!a.enable_auto_login);
        assert_eq!(a.lifetime, Duration::from_secs(7200));
        // JWT: external, per-conference sessions of a minute, whatever the variables say.
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("ENABLE_AUTH", "1"),
            ("AUTH_TYPE", "internal"),
            ("JICOFO_AUTH_TYPE", "jwt"),
            ("ENABLE_AUTO_LOGIN", "1"),
        ]);
        let a = Config::load(&e, &Flags::default())
            .unwrap()
            .auth_config()
            .unwrap();
        assert_eq!(a.kind, AuthKind::Jwt);
        assert!(!a.enable_auto_login);
        assert_eq!(a.lifetime, Duration::from_secs(60));
        // TOML: Jicofo's keys.
        let mut c = Config::default();
        c.apply_toml(
            "[authentication]\nenabled = true\ntype = \"XMPP\"\nlogin-url = \"corp.example\"\nauthentication-lifetime = \"10 minutes\"\n",
            "t.toml",
        )
        .unwrap();
        let a = c.auth_config().unwrap();
        assert_eq!(a.login_domain, "corp.example");
        assert_eq!(a.lifetime, Duration::from_secs(600));
        c.apply_toml("[authentication]\ntype = \"NONE\"\n", "t.toml")
            .unwrap();
        assert_eq!(c.auth_config(), None);
    }

    #[test]
    fn moderator_checks_and_the_av_moderation_component_follow_docker() {
        let e = env(&[
            ("JICOFO_AUTH_PASSWORD", "x"),
            ("XMPP_DOMAIN", "meet.example"),
            ("ENABLE_MODERATOR_CHECKS", "0"),
        ]);
        let c = Config::load(&e, &Flags::default()).unwrap();
        assert!(!c.conference.enable_moderator_checks);
        assert_eq!(
            c.av_moderation_component.as_deref(),
            Some("avmoderation.meet.example")
        );
        assert!(Config::default().conference.enable_moderator_checks);
    }

    #[test]
    fn layers_override_in_order_env_toml_flags() {
        let e = env(&[("JICOFO_AUTH_PASSWORD", "x"), ("XMPP_PORT", "1111")]);
        let mut c = Config::default();
        c.apply_env(&e).unwrap();
        assert_eq!(c.client.port, 1111);
        c.apply_toml(
            "[xmpp]\nport = 2222\n[conference]\nmin-participants = 3\n[codec.video.vp9]\nenabled = false\nrtx-pt = -1\n[codec.rtp-extensions.tcc]\nid = 6\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.client.port, 2222);
        assert_eq!(c.conference.min_participants, 3);
        assert!(!c.codecs.vp9.enabled);
        assert_eq!(c.codecs.vp9.rtx_pt, None);
        assert_eq!(c.codecs.extensions.tcc.id, 6);
        c.apply_flags(&Flags {
            xmpp_port: Some(3333),
            component_secret: Some("cs".into()),
            ..Flags::default()
        })
        .unwrap();
        assert_eq!(c.client.port, 3333);
        assert_eq!(c.component.as_ref().unwrap().jid, "focus.meet.jitsi");
        c.validate().unwrap();
    }

    #[test]
    fn toml_unknown_keys_and_bad_durations_are_named() {
        let mut c = Config::default();
        let err = c
            .apply_toml("[conference]\nmin-participant = 3\n", "f.toml")
            .unwrap_err();
        assert!(err.to_string().contains("min-participant"), "{err}");
        let err = c
            .apply_toml("[conference]\ninitial-timeout = \"x\"\n", "f.toml")
            .unwrap_err();
        assert!(
            err.to_string().contains("conference.initial-timeout"),
            "{err}"
        );
    }

    #[test]
    fn durations_parse_like_hocon() {
        assert_eq!(parse_duration("20 seconds"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1 minute"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1500"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 fortnights").is_err());
    }
}
