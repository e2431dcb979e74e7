//! The TOML file layer of the focus configuration: the file's keys (Jicofo's `jicofo.*` structure,
//! every key optional, unknown keys refused) and how they apply over the defaults and the
//! environment. `config.rs` holds `Config`, the environment and flag layers and the loading.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::core::AuthKind;
use crate::core::offer::VideoCodecKind;

use super::{
    AuthSettings, ComponentConfig, Config, ConfigError, invalid, parse_auth_type, parse_duration,
    parse_strategy, split_host_port,
};

/// The TOML file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlConfig {
    pub xmpp: Option<TomlXmpp>,
    pub conference: Option<TomlConference>,
    pub bridge: Option<TomlBridge>,
    pub codec: Option<TomlCodec>,
    pub rest: Option<TomlRest>,
    pub log_json: Option<bool>,
    pub authentication: Option<TomlAuthentication>,
    pub health: Option<TomlHealth>,
}

/// Jicofo's `jicofo.health` keys (only `enabled`: whether `/about/health` is served).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlHealth {
    pub enabled: Option<bool>,
}

/// Jicofo's `jicofo.authentication` keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlAuthentication {
    pub enabled: Option<bool>,
    /// `XMPP` or `JWT` (Jicofo's names) or a docker `AUTH_TYPE`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub login_url: Option<String>,
    pub enable_auto_login: Option<bool>,
    pub authentication_lifetime: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlXmpp {
    pub server: Option<String>,
    pub port: Option<u16>,
    pub domain: Option<String>,
    pub auth_domain: Option<String>,
    pub muc_domain: Option<String>,
    pub internal_muc_domain: Option<String>,
    pub brewery_room: Option<String>,
    /// `""` disables breakout rooms.
    pub breakout_muc_domain: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub use_tls: Option<bool>,
    pub component_secret: Option<String>,
    pub component_port: Option<u16>,
    pub client_proxy: Option<String>,
    /// The `av_moderation` component's domain; empty ignores A/V moderation messages.
    pub av_moderation_component: Option<String>,
    pub reply_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlConference {
    pub min_participants: Option<usize>,
    pub single_participant_timeout: Option<String>,
    pub initial_timeout: Option<String>,
    pub max_ssrcs_per_user: Option<usize>,
    pub max_ssrc_groups_per_user: Option<usize>,
    pub max_audio_senders: Option<usize>,
    pub max_video_senders: Option<usize>,
    pub strip_simulcast: Option<bool>,
    pub use_ssrc_rewriting: Option<bool>,
    pub use_rtp_mid_demux: Option<bool>,
    pub enable_ice_restart: Option<bool>,
    pub use_json_encoded_sources: Option<bool>,
    pub enable_auto_owner: Option<bool>,
    pub enable_moderator_checks: Option<bool>,
    pub restart_min_interval: Option<String>,
    pub restart_max_requests: Option<u32>,
    pub restart_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlBridge {
    pub max_bridge_participants: Option<i64>,
    pub average_participant_stress: Option<f64>,
    pub stress_threshold: Option<f64>,
    pub participant_rampup_interval: Option<String>,
    pub failure_reset_threshold: Option<String>,
    pub selection_strategy: Option<String>,
    pub local_region: Option<String>,
    pub region_groups: Option<Vec<Vec<String>>>,
    pub health_checks: Option<bool>,
    pub health_check_interval: Option<String>,
    pub health_checks_use_presence: Option<bool>,
    /// Account domains of bridges (default: the auth domain of the brewery connection).
    pub trusted_domains: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlCodec {
    /// `{ vp8 = { enabled = true, pt = 100, rtx-pt = 96 } }`; rtx-pt -1 disables RTX.
    pub video: Option<BTreeMap<String, TomlVideoCodec>>,
    pub opus: Option<TomlToggle>,
    pub opus_red: Option<TomlToggle>,
    pub telephone_event: Option<TomlToggle>,
    /// `{ tcc = { enabled = true, id = 5 } }`.
    pub rtp_extensions: Option<BTreeMap<String, TomlToggle>>,
    /// Kept on for video while the AV1 Dependency Descriptor is offered (Chromium needs it to send
    /// the descriptor).
    pub extmap_allow_mixed: Option<bool>,
    /// Ours: the video codecs the bridge forwards correctly (`["av1", "vp8", "h264", "vp9"]`); only
    /// enabled codecs in this list are offered.
    pub bridge_video_codecs: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlVideoCodec {
    pub enabled: Option<bool>,
    pub pt: Option<u8>,
    pub rtx_pt: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlToggle {
    pub enabled: Option<bool>,
    pub pt: Option<u8>,
    pub id: Option<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TomlRest {
    pub host: Option<IpAddr>,
    pub port: Option<u16>,
}

/// A list of video codec names (`av1`, `vp8`, `h264`, `vp9`, any case); an unknown name or an
/// empty list is refused naming `key`.
pub(super) fn parse_video_codecs<'a>(
    key: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<BTreeSet<VideoCodecKind>, ConfigError> {
    let mut out = BTreeSet::new();
    for n in names.into_iter().map(str::trim).filter(|n| !n.is_empty()) {
        let kind = VideoCodecKind::parse(n)
            .ok_or_else(|| invalid(key, n, "expected a list of av1, vp8, h264, vp9"))?;
        out.insert(kind);
    }
    if out.is_empty() {
        return Err(invalid(key, "", "names no video codec"));
    }
    Ok(out)
}

fn toml_duration(key: &str, v: &Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.as_ref()
        .map(|s| parse_duration(s).map_err(|r| invalid(key, s, r)))
        .transpose()
}

impl TomlConfig {
    pub(super) fn apply(&self, c: &mut Config) -> Result<(), ConfigError> {
        if let Some(x) = &self.xmpp {
            if let Some(v) = &x.server {
                let (host, port) = split_host_port("xmpp.server", v)?;
                c.client.host = host;
                if let Some(p) = port {
                    c.client.port = p;
                }
            }
            set(&mut c.client.port, x.port);
            if let Some(v) = &x.domain {
                c.set_xmpp_domain(v);
            }
            set(&mut c.client.login_domain, x.auth_domain.clone());
            set(&mut c.muc_domain, x.muc_domain.clone());
            set(&mut c.internal_muc_domain, x.internal_muc_domain.clone());
            set(&mut c.brewery_room, x.brewery_room.clone());
            if let Some(v) = &x.breakout_muc_domain {
                c.breakout_rooms = !v.is_empty();
                c.breakout_muc_domain = (!v.is_empty()).then(|| v.clone());
            }
            set(&mut c.client.username, x.username.clone());
            set(&mut c.client.password, x.password.clone());
            if x.use_tls.is_some() {
                c.client.use_tls = x.use_tls;
            }
            if let Some(secret) = &x.component_secret {
                let host = c.client.host.clone();
                let jid = format!("focus.{}", c.xmpp_domain);
                c.component
                    .get_or_insert(ComponentConfig {
                        host,
                        port: 5347,
                        jid,
                        secret: String::new(),
                    })
                    .secret = secret.clone();
            }
            if let (Some(p), Some(comp)) = (x.component_port, c.component.as_mut()) {
                comp.port = p;
            }
            if let Some(v) = &x.client_proxy {
                c.client_proxy = if v.is_empty() { None } else { Some(v.clone()) };
            }
            if let Some(v) = &x.av_moderation_component {
                c.av_moderation_component = if v.is_empty() { None } else { Some(v.clone()) };
            }
            if let Some(d) = toml_duration("xmpp.reply-timeout", &x.reply_timeout)? {
                c.reply_timeout = d;
            }
        }
        if let Some(x) = &self.conference {
            let k = &mut c.conference;
            set(&mut k.min_participants, x.min_participants);
            if let Some(d) = toml_duration(
                "conference.single-participant-timeout",
                &x.single_participant_timeout,
            )? {
                k.single_participant_timeout = d;
            }
            if let Some(d) = toml_duration("conference.initial-timeout", &x.initial_timeout)? {
                k.initial_timeout = d;
            }
            set(&mut k.max_ssrcs_per_user, x.max_ssrcs_per_user);
            set(&mut k.max_ssrc_groups_per_user, x.max_ssrc_groups_per_user);
            set(&mut k.max_audio_senders, x.max_audio_senders);
            set(&mut k.max_video_senders, x.max_video_senders);
            set(&mut k.strip_simulcast, x.strip_simulcast);
            set(&mut k.use_ssrc_rewriting, x.use_ssrc_rewriting);
            set(&mut k.use_rtp_mid_demux, x.use_rtp_mid_demux);
            set(&mut k.enable_ice_restart, x.enable_ice_restart);
            set(&mut k.use_json_encoded_sources, x.use_json_encoded_sources);
            set(&mut k.enable_auto_owner, x.enable_auto_owner);
            set(&mut k.enable_moderator_checks, x.enable_moderator_checks);
            if let Some(d) =
                toml_duration("conference.restart-min-interval", &x.restart_min_interval)?
            {
                k.restart_min_interval = d;
            }
            set(&mut k.restart_max_requests, x.restart_max_requests);
            if let Some(d) = toml_duration("conference.restart-interval", &x.restart_interval)? {
                k.restart_interval = d;
            }
        }
        if let Some(x) = &self.bridge {
            let b = &mut c.bridge;
            set(&mut b.max_bridge_participants, x.max_bridge_participants);
            set(
                &mut b.average_participant_stress,
                x.average_participant_stress,
            );
            set(&mut b.stress_threshold, x.stress_threshold);
            if let Some(d) = toml_duration(
                "bridge.participant-rampup-interval",
                &x.participant_rampup_interval,
            )? {
                b.participant_rampup_interval = d;
            }
            if let Some(d) =
                toml_duration("bridge.failure-reset-threshold", &x.failure_reset_threshold)?
            {
                b.failure_reset_threshold = d;
            }
            if let Some(v) = &x.selection_strategy {
                b.selection_strategy = parse_strategy("bridge.selection-strategy", v)?;
            }
            if let Some(v) = &x.local_region {
                b.local_region = Some(v.clone());
            }
            if let Some(v) = &x.region_groups {
                b.region_groups = v.clone();
            }
            set(&mut b.health_checks_enabled, x.health_checks);
            if let Some(d) =
                toml_duration("bridge.health-check-interval", &x.health_check_interval)?
            {
                b.health_check_interval = d;
            }
            set(
                &mut b.health_checks_use_presence,
                x.health_checks_use_presence,
            );
            if let Some(v) = &x.trusted_domains {
                c.bridge_trusted_domains = v.clone();
            }
        }
        if let Some(x) = &self.codec {
            for (name, v) in x.video.iter().flatten() {
                let key = format!("codec.video.{name}");
                let codec = match name.as_str() {
                    "vp8" => &mut c.codecs.vp8,
                    "vp9" => &mut c.codecs.vp9,
                    "av1" => &mut c.codecs.av1,
                    "h264" => &mut c.codecs.h264,
                    _ => return Err(invalid(&key, name, "unknown video codec")),
                };
                set(&mut codec.enabled, v.enabled);
                set(&mut codec.pt, v.pt);
                if let Some(r) = v.rtx_pt {
                    codec.rtx_pt = match r {
                        -1 => None,
                        0..=127 => Some(r as u8),
                        _ => {
                            return Err(invalid(
                                &format!("{key}.rtx-pt"),
                                &r.to_string(),
                                "expected -1 or 0..=127",
                            ));
                        }
                    };
                }
            }
            if let Some(t) = &x.opus {
                set(&mut c.codecs.opus.enabled, t.enabled);
                set(&mut c.codecs.opus.pt, t.pt);
            }
            if let Some(t) = &x.opus_red {
                set(&mut c.codecs.opus_red.enabled, t.enabled);
                set(&mut c.codecs.opus_red.pt, t.pt);
            }
            if let Some(t) = &x.telephone_event {
                set(&mut c.codecs.telephone_event.enabled, t.enabled);
                set(&mut c.codecs.telephone_event.pt, t.pt);
            }
            for (name, t) in x.rtp_extensions.iter().flatten() {
                let ext = c.codecs.extensions.by_name(name).ok_or_else(|| {
                    invalid(
                        &format!("codec.rtp-extensions.{name}"),
                        name,
                        "unknown header extension",
                    )
                })?;
                set(&mut ext.enabled, t.enabled);
                set(&mut ext.id, t.id);
            }
            set(&mut c.codecs.extmap_allow_mixed, x.extmap_allow_mixed);
            if let Some(v) = &x.bridge_video_codecs {
                c.codecs.bridge_video_codecs =
                    parse_video_codecs("codec.bridge-video-codecs", v.iter().map(String::as_str))?;
            }
        }
        if let Some(x) = &self.authentication {
            x.apply(c)?;
        }
        if let Some(x) = &self.rest {
            set(&mut c.rest.host, x.host);
            set(&mut c.rest.port, x.port);
        }
        if let Some(x) = &self.health {
            set(&mut c.rest.health, x.enabled);
        }
        set(&mut c.log_json, self.log_json);
        Ok(())
    }
}

impl TomlAuthentication {
    fn apply(&self, c: &mut Config) -> Result<(), ConfigError> {
        let kind = self
            .kind
            .as_deref()
            .map(|k| match k.trim().to_ascii_uppercase().as_str() {
                "NONE" => Ok(None),
                "XMPP" => Ok(Some(AuthKind::Xmpp)),
                _ => parse_auth_type("authentication.type", k).map(Some),
            })
            .transpose()?;
        let enabled = match (self.enabled, kind) {
            (Some(false), _) | (_, Some(None)) => false,
            (Some(true), _) | (None, Some(Some(_))) => true,
            (None, None) => c.auth.is_some(),
        };
        if !enabled {
            c.auth = None;
            return Ok(());
        }
        let mut a = c
            .auth
            .take()
            .unwrap_or_else(|| AuthSettings::new(kind.flatten().unwrap_or(AuthKind::Xmpp)));
        if let Some(Some(k)) = kind {
            a.kind = k;
        }
        if let Some(v) = &self.login_url {
            a.login_url = Some(v.clone());
        }
        set(&mut a.enable_auto_login, self.enable_auto_login);
        if let Some(d) = toml_duration(
            "authentication.authentication-lifetime",
            &self.authentication_lifetime,
        )? {
            a.lifetime = d;
        }
        c.auth = Some(a);
        Ok(())
    }
}

fn set<T>(target: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *target = v;
    }
}
