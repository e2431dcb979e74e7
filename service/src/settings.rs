//! Layered settings shared by the bridge and the focus binaries: environment variables (the
//! docker-jitsi-meet images' names), then a TOML file, then command-line flags, later layers winning.
//!
//! A binary describes each setting once, as a [`Setting`] row (env var, TOML key, flag, default, help,
//! one parser, one printer), over its own *layer* type (every field optional, declared with
//! [`settings_layer!`](crate::settings_layer)) and its own resolved config type. From the table this
//! module derives: reading each layer with errors that name the origin and the value
//! (`JVB_PORT="abc": invalid port`), unknown-TOML-key detection, the clap arguments (each flag's help
//! names its env var and TOML key), the settings table appended to `--help`, and `--print-config`
//! output that reads back as a TOML file.

use std::collections::BTreeMap;

use clap::{Arg, ArgAction, ArgMatches};

use crate::{Env, Origin, ValueError};

/// One setting of a binary whose partial configuration is `L` and resolved configuration `C`.
pub struct Setting<L: 'static, C: 'static> {
    /// Environment variable (the docker-jitsi-meet image's name where one exists).
    pub env: &'static str,
    /// Dotted TOML key (`section.key`, or a top-level `key`).
    pub toml: &'static str,
    /// Long flag without dashes; `None` for secrets (argv is visible to every local user).
    pub flag: Option<&'static str>,
    /// Placeholder in `--help`.
    pub value_name: &'static str,
    /// Default, as shown in `--help`.
    pub default: &'static str,
    pub help: &'static str,
    /// A boolean flag that may be given without a value (`--x` = `--x=true`).
    pub switch: bool,
    /// Parses a raw value (env text, TOML value as text, flag argument) into the layer; the error is
    /// the reason only, the caller adds the origin.
    pub apply: fn(&mut L, &str) -> Result<(), String>,
    /// The resolved value for `--print-config` (`None` = leave out).
    pub show: fn(&C) -> Option<toml::Value>,
}

/// Declares a layer struct (every field `Option`) with `overlay`, for use with [`Setting`].
#[macro_export]
macro_rules! settings_layer {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq)]
        $vis struct $name {
            $(pub $field: Option<$ty>,)*
        }
        impl $name {
            /// `top` over `self`: each field from `top` when set there.
            pub fn overlay(self, top: $name) -> $name {
                $name { $($field: top.$field.or(self.$field),)* }
            }
        }
    };
}

/// Why a configuration could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("{0}")]
    Value(#[from] ValueError),
    #[error("{file}: cannot read: {reason}")]
    Read { file: String, reason: String },
    #[error("{file}: invalid TOML: {reason}")]
    Toml { file: String, reason: String },
    #[error("{file}: unknown key {key:?}")]
    UnknownKey { file: String, key: String },
    /// A required setting is absent, or settings contradict each other.
    #[error("{0}")]
    Invalid(String),
}

/// Applies one raw value, recording an error that names `origin`.
pub fn apply_raw<L>(
    apply: fn(&mut L, &str) -> Result<(), String>,
    layer: &mut L,
    origin: Origin,
    raw: &str,
    errors: &mut Vec<SettingsError>,
) {
    if let Err(reason) = apply(layer, raw) {
        errors.push(ValueError::new(origin, raw, reason).into());
    }
}

/// Reads every setting's environment variable into `layer`.
pub fn read_env<L, C>(
    settings: &[Setting<L, C>],
    env: &Env,
    layer: &mut L,
    errors: &mut Vec<SettingsError>,
) {
    for s in settings {
        if let Some(raw) = env.get(s.env) {
            apply_raw(s.apply, layer, Origin::Env(s.env.into()), raw, errors);
        }
    }
}

/// Reads a TOML file's text into `layer`. Values may be strings, numbers, booleans or arrays of
/// those (arrays become comma lists). Unknown keys are errors: a typo must not pass silently.
pub fn read_toml<L, C>(
    settings: &[Setting<L, C>],
    text: &str,
    file: &str,
    layer: &mut L,
    errors: &mut Vec<SettingsError>,
) {
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            errors.push(SettingsError::Toml {
                file: file.into(),
                reason: e.to_string().trim().replace('\n', " "),
            });
            return;
        }
    };
    let mut flat: BTreeMap<String, toml::Value> = BTreeMap::new();
    for (k, v) in table {
        match v {
            toml::Value::Table(inner) => {
                for (k2, v2) in inner {
                    flat.insert(format!("{k}.{k2}"), v2);
                }
            }
            other => {
                flat.insert(k, other);
            }
        }
    }
    for (key, value) in flat {
        let Some(setting) = settings.iter().find(|s| s.toml == key) else {
            errors.push(SettingsError::UnknownKey {
                file: file.into(),
                key,
            });
            continue;
        };
        let origin = Origin::Toml {
            file: file.into(),
            key: key.clone(),
        };
        match toml_value_text(&value) {
            Ok(raw) => apply_raw(setting.apply, layer, origin, &raw, errors),
            Err(reason) => errors.push(ValueError::new(origin, value.to_string(), reason).into()),
        }
    }
}

/// Reads the TOML file at `path` (see [`read_toml`]).
pub fn read_toml_file<L, C>(
    settings: &[Setting<L, C>],
    path: &str,
    layer: &mut L,
    errors: &mut Vec<SettingsError>,
) {
    match std::fs::read_to_string(path) {
        Ok(text) => read_toml(settings, &text, path, layer, errors),
        Err(e) => errors.push(SettingsError::Read {
            file: path.into(),
            reason: e.to_string(),
        }),
    }
}

fn toml_value_text(v: &toml::Value) -> Result<String, String> {
    match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        toml::Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    toml::Value::Array(_) | toml::Value::Table(_) => {
                        return Err("nested arrays/tables are not allowed here".into());
                    }
                    other => parts.push(toml_value_text(other)?),
                }
            }
            if parts.iter().any(|p| p.contains(',')) {
                return Err("list items must not contain commas".into());
            }
            Ok(parts.join(","))
        }
        toml::Value::Datetime(_) | toml::Value::Table(_) => {
            Err("expected a string, number, boolean or list".into())
        }
    }
}

/// Reads the flags (from a command built with [`clap_args`]) into `layer`.
pub fn read_flags<L, C>(
    settings: &[Setting<L, C>],
    matches: &ArgMatches,
    layer: &mut L,
    errors: &mut Vec<SettingsError>,
) {
    for s in settings {
        let Some(flag) = s.flag else { continue };
        if let Ok(Some(raw)) = matches.try_get_one::<String>(flag) {
            apply_raw(s.apply, layer, Origin::Flag(flag.into()), raw, errors);
        }
    }
}

/// The TOML file given by `--config` (see [`config_file_args`]) or the `file_env` variable.
pub fn config_file_path(matches: &ArgMatches, env: &Env, file_env: &str) -> Option<String> {
    matches
        .try_get_one::<String>("config")
        .ok()
        .flatten()
        .cloned()
        .or_else(|| env.string(file_env))
}

/// `--config PATH` and `--print-config`.
pub fn config_file_args(file_env: &str) -> Vec<Arg> {
    vec![
        Arg::new("config")
            .long("config")
            .short('c')
            .value_name("PATH")
            .help(format!(
                "TOML configuration file (overrides env, overridden by flags) [env: {file_env}]"
            )),
        Arg::new("print-config")
            .long("print-config")
            .action(ArgAction::SetTrue)
            .help("Print the resolved configuration as TOML (secrets redacted) and exit"),
    ]
}

/// One clap argument per setting with a flag; each help names the env var, TOML key and default.
/// Values are taken as text and parsed by the setting itself, so errors look the same for all layers.
pub fn clap_args<L, C>(settings: &[Setting<L, C>]) -> Vec<Arg> {
    settings
        .iter()
        .filter_map(|s| {
            let flag = s.flag?;
            let mut arg = Arg::new(flag)
                .long(flag)
                .value_name(s.value_name)
                .help(format!(
                    "{} [env: {}] [toml: {}] [default: {}]",
                    s.help, s.env, s.toml, s.default
                ));
            if s.switch {
                arg = arg
                    .num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true");
            }
            Some(arg)
        })
        .collect()
}

/// The settings table for `--help`: every env var with its TOML key, flag and default, then other
/// environment variables read, then variables accepted without effect.
pub fn help_table<L, C>(
    settings: &[Setting<L, C>],
    other_env: &[(&str, &str)],
    ignored_env: &[&str],
) -> String {
    let mut out = String::from(
        "Configuration sources, later overriding earlier: environment, TOML file (--config), flags.\n\n\
         Settings (ENV VAR | TOML key | flag | default):\n",
    );
    for s in settings {
        out.push_str(&format!(
            "  {:<40} {:<44} {:<40} [{}]\n",
            s.env,
            s.toml,
            s.flag
                .map_or_else(|| "(env/TOML only)".to_string(), |f| format!("--{f}")),
            s.default
        ));
    }
    if !other_env.is_empty() {
        out.push_str("\nOther environment variables:\n");
        for (name, what) in other_env {
            out.push_str(&format!("  {name:<40} {what}\n"));
        }
    }
    if !ignored_env.is_empty() {
        out.push_str(&format!(
            "\nAccepted for docker-jitsi-meet compatibility but without effect: {}\n",
            ignored_env.join(", ")
        ));
    }
    out
}

/// The resolved configuration as a TOML file that [`read_toml`] reads back.
pub fn to_toml<L, C>(settings: &[Setting<L, C>], config: &C) -> String {
    let mut root = toml::Table::new();
    for s in settings {
        let Some(value) = (s.show)(config) else {
            continue;
        };
        match s.toml.split_once('.') {
            Some((section, key)) => {
                let entry = root
                    .entry(section.to_owned())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = entry {
                    t.insert(key.to_owned(), value);
                }
            }
            None => {
                root.insert(s.toml.to_owned(), value);
            }
        }
    }
    // Top-level keys first so that they are not read as part of the last [section].
    let (plain, sections): (toml::Table, toml::Table) = root
        .into_iter()
        .partition(|(_, v)| !matches!(v, toml::Value::Table(_)));
    let mut out = toml::to_string(&plain).unwrap_or_default();
    out.push_str(&toml::to_string(&sections).unwrap_or_default());
    out
}

/// Checks a table for duplicate env vars, TOML keys and flags (call from a unit test).
pub fn check_table<L, C>(settings: &[Setting<L, C>]) -> Result<(), String> {
    let mut envs = std::collections::HashSet::new();
    let mut keys = std::collections::HashSet::new();
    let mut flags = std::collections::HashSet::new();
    for s in settings {
        if !envs.insert(s.env) {
            return Err(format!("duplicate env var {}", s.env));
        }
        if !keys.insert(s.toml) {
            return Err(format!("duplicate TOML key {}", s.toml));
        }
        if let Some(f) = s.flag
            && !flags.insert(f)
        {
            return Err(format!("duplicate flag --{f}"));
        }
        if s.toml.matches('.').count() > 1 {
            return Err(format!(
                "TOML key {} is nested deeper than one section",
                s.toml
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_bool, parse_port};

    crate::settings_layer! {
        struct DemoLayer { port: u16, verbose: bool, name: String }
    }

    #[derive(Debug, PartialEq)]
    struct Demo {
        port: u16,
        verbose: bool,
        name: String,
    }

    static DEMO: &[Setting<DemoLayer, Demo>] = &[
        Setting {
            env: "DEMO_PORT",
            toml: "net.port",
            flag: Some("port"),
            value_name: "PORT",
            default: "80",
            help: "Port",
            switch: false,
            apply: |l, v| {
                l.port = Some(parse_port(v)?);
                Ok(())
            },
            show: |c| Some(toml::Value::Integer(c.port.into())),
        },
        Setting {
            env: "DEMO_VERBOSE",
            toml: "verbose",
            flag: Some("verbose"),
            value_name: "BOOL",
            default: "false",
            help: "Verbose",
            switch: true,
            apply: |l, v| {
                l.verbose = Some(parse_bool(v)?);
                Ok(())
            },
            show: |c| Some(toml::Value::Boolean(c.verbose)),
        },
        Setting {
            env: "DEMO_NAME",
            toml: "name",
            flag: None,
            value_name: "NAME",
            default: "x",
            help: "Name",
            switch: false,
            apply: |l, v| {
                l.name = Some(v.trim().to_owned());
                Ok(())
            },
            show: |c| Some(toml::Value::String(c.name.clone())),
        },
    ];

    fn resolve(l: DemoLayer) -> Demo {
        Demo {
            port: l.port.unwrap_or(80),
            verbose: l.verbose.unwrap_or(false),
            name: l.name.unwrap_or_else(|| "x".into()),
        }
    }

    fn cmd() -> clap::Command {
        clap::Command::new("demo")
            .args(config_file_args("DEMO_CONFIG"))
            .args(clap_args(DEMO))
    }

    #[test]
    fn layers_errors_and_round_trip() {
        assert_eq!(check_table(DEMO), Ok(()));
        cmd().debug_assert();
        let mut errors = Vec::new();
        let mut env_layer = DemoLayer::default();
        read_env(
            DEMO,
            &Env::from_pairs([("DEMO_PORT", "81"), ("DEMO_NAME", "env")]),
            &mut env_layer,
            &mut errors,
        );
        let mut toml_layer = DemoLayer::default();
        read_toml(
            DEMO,
            "verbose = true\n[net]\nport = 82\n",
            "d.toml",
            &mut toml_layer,
            &mut errors,
        );
        let m = cmd()
            .try_get_matches_from(["demo", "--verbose=false"])
            .unwrap();
        let mut flag_layer = DemoLayer::default();
        read_flags(DEMO, &m, &mut flag_layer, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let c = resolve(env_layer.overlay(toml_layer).overlay(flag_layer));
        assert_eq!(
            c,
            Demo {
                port: 82,
                verbose: false,
                name: "env".into()
            }
        );
        let text = to_toml(DEMO, &c);
        assert!(text.starts_with("name = "), "top-level keys first: {text}");
        let mut again = DemoLayer::default();
        read_toml(DEMO, &text, "p.toml", &mut again, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(resolve(again), c);

        read_env(
            DEMO,
            &Env::from_pairs([("DEMO_PORT", "x")]),
            &mut DemoLayer::default(),
            &mut errors,
        );
        read_toml(
            DEMO,
            "[net]\nprot = 1\nport = true\n",
            "d.toml",
            &mut DemoLayer::default(),
            &mut errors,
        );
        let m = cmd()
            .try_get_matches_from(["demo", "--port", "99999"])
            .unwrap();
        read_flags(DEMO, &m, &mut DemoLayer::default(), &mut errors);
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            text[0].starts_with("DEMO_PORT=\"x\": invalid port"),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t == "d.toml: unknown key \"net.prot\""),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.starts_with("net.port (in d.toml)=\"true\"")),
            "{text:?}"
        );
        assert!(
            text.iter().any(|t| t.starts_with("--port=\"99999\"")),
            "{text:?}"
        );

        let help = help_table(DEMO, &[("DEMO_CONFIG", "file")], &["OLD_VAR"]);
        for needle in [
            "DEMO_PORT",
            "net.port",
            "--port",
            "(env/TOML only)",
            "DEMO_CONFIG",
            "OLD_VAR",
        ] {
            assert!(help.contains(needle), "{needle}: {help}");
        }
        let m = cmd()
            .try_get_matches_from(["demo", "-c", "a.toml"])
            .unwrap();
        assert_eq!(
            config_file_path(&m, &Env::default(), "DEMO_CONFIG").as_deref(),
            Some("a.toml")
        );
        let m = cmd().try_get_matches_from(["demo"]).unwrap();
        let env = Env::from_pairs([("DEMO_CONFIG", "b.toml")]);
        assert_eq!(
            config_file_path(&m, &env, "DEMO_CONFIG").as_deref(),
            Some("b.toml")
        );
    }
}
