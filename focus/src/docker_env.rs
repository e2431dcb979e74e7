//! docker-jitsi-meet's `jicofo` variables that this focus does not act on, so that start-up can name
//! each one an operator set, with what it would have done under Jicofo.
//!
//! The list follows docker-jitsi-meet's `jicofo/rootfs/defaults/jicofo.conf` template and the `jicofo`
//! service's environment in its `docker-compose.yml`. A variable is reported only when Jicofo would
//! act on it with the value given (e.g. `JIBRI_BREWERY_MUC` only together with `ENABLE_RECORDING`,
//! as the template renders it), so a stock `.env` stays quiet. Variables the focus reads are in
//! [`crate::config`]; a variable moves from here to there when the focus starts acting on it.

use crate::config::parse_bool;

/// One variable the focus ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ignored {
    pub name: &'static str,
    pub value: String,
    /// What Jicofo would do with it, and what this focus does instead.
    pub effect: &'static str,
}

/// When a variable matters to Jicofo.
#[derive(Debug, Clone, Copy)]
enum When {
    /// Set to anything non-empty.
    Set,
    /// Set to a true value (docker's `toBool`).
    True,
    /// Set, and the named variable is true.
    SetWith(&'static str),
    /// Set to something else than docker's default `0` (compose passes `SENTRY_DSN=0`).
    SetNotZero,
}

const IGNORED: &[(&str, When, &str)] = &[
    (
        "ENABLE_RECORDING",
        When::True,
        "recording and live streaming need Jibri, which this focus does not drive: such requests are refused",
    ),
    (
        "JIBRI_BREWERY_MUC",
        When::SetWith("ENABLE_RECORDING"),
        "no Jibri brewery is joined",
    ),
    (
        "JIBRI_PENDING_TIMEOUT",
        When::SetWith("ENABLE_RECORDING"),
        "no Jibri support",
    ),
    (
        "JIBRI_REQUEST_RETRIES",
        When::SetWith("ENABLE_RECORDING"),
        "no Jibri support",
    ),
    (
        "JIBRI_SIP_BREWERY_MUC",
        When::Set,
        "SIP calls through Jibri are not supported",
    ),
    (
        "ENABLE_TRANSCRIPTIONS",
        When::True,
        "transcription needs Jigasi, which this focus does not drive",
    ),
    (
        "JIGASI_SIP_URI",
        When::Set,
        "dial-in/dial-out needs Jigasi, which this focus does not drive: such requests are refused",
    ),
    (
        "JIGASI_BREWERY_MUC",
        When::SetWith("ENABLE_TRANSCRIPTIONS"),
        "no Jigasi brewery is joined",
    ),
    (
        "JICOFO_TRUSTED_DOMAINS",
        When::Set,
        "trusted domains (for Jibri/Jigasi accounts) have no use without them",
    ),
    (
        "ENABLE_OCTO",
        When::True,
        "Octo (one conference across bridges) is not supported: each conference uses one bridge",
    ),
    (
        "JICOFO_ENABLE_ICE_FAILURE_DETECTION",
        When::True,
        "bridges are not taken out of selection for ICE failure rates",
    ),
    (
        "JICOFO_ENABLE_LOAD_REDISTRIBUTION",
        When::True,
        "endpoints are not moved off overloaded bridges",
    ),
    (
        "JICOFO_CONF_SOURCE_SIGNALING_DELAYS",
        When::Set,
        "source changes are signalled without size-dependent delays",
    ),
    (
        "JICOFO_MULTI_STREAM_BACKWARD_COMPAT",
        When::Set,
        "no multi-stream backward compatibility mode",
    ),
    (
        "ENABLE_SHARED_DOCUMENT_RANDOM_NAME",
        When::True,
        "no shared-document (Etherpad) name is published",
    ),
    (
        "JICOFO_TRANSLATION_URL_TEMPLATE",
        When::Set,
        "no translation service is used",
    ),
    (
        "JICOFO_MAX_MEMORY",
        When::Set,
        "a JVM heap limit; this focus is not a JVM process (limit its memory with the container's)",
    ),
    (
        "SENTRY_DSN",
        When::SetNotZero,
        "errors are not reported to Sentry (logs only)",
    ),
];

/// The docker-jitsi-meet jicofo variables in `env` that Jicofo would act on and this focus ignores.
pub fn ignored(env: &dyn Fn(&str) -> Option<String>) -> Vec<Ignored> {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let truthy = |name: &str| get(name).and_then(|v| parse_bool(&v)) == Some(true);
    IGNORED
        .iter()
        .filter_map(|(name, when, effect)| {
            let value = get(name)?;
            let applies = match when {
                When::Set => true,
                When::True => parse_bool(&value) == Some(true),
                When::SetWith(other) => truthy(other),
                When::SetNotZero => !matches!(parse_bool(&value), Some(false)),
            };
            applies.then_some(Ignored {
                name,
                value,
                effect,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(pairs: &[(&str, &str)]) -> Vec<&'static str> {
        let lookup = |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        ignored(&lookup).into_iter().map(|i| i.name).collect()
    }

    #[test]
    fn every_listed_variable_is_reported_when_jicofo_would_use_it() {
        let all = [
            ("ENABLE_RECORDING", "1"),
            ("JIBRI_BREWERY_MUC", "jibribrewery"),
            ("JIBRI_PENDING_TIMEOUT", "90"),
            ("JIBRI_REQUEST_RETRIES", "2"),
            ("JIBRI_SIP_BREWERY_MUC", "jibrisipbrewery"),
            ("ENABLE_TRANSCRIPTIONS", "true"),
            ("JIGASI_SIP_URI", "sip:x@example.org"),
            ("JIGASI_BREWERY_MUC", "jigasibrewery"),
            ("JICOFO_TRUSTED_DOMAINS", "hidden.meet.jitsi"),
            ("ENABLE_OCTO", "1"),
            ("JICOFO_ENABLE_ICE_FAILURE_DETECTION", "true"),
            ("JICOFO_ENABLE_LOAD_REDISTRIBUTION", "1"),
            ("JICOFO_CONF_SOURCE_SIGNALING_DELAYS", "{ 50 = 1000 }"),
            ("JICOFO_MULTI_STREAM_BACKWARD_COMPAT", "1"),
            ("ENABLE_SHARED_DOCUMENT_RANDOM_NAME", "1"),
            (
                "JICOFO_TRANSLATION_URL_TEMPLATE",
                "https://t.example/{{room}}",
            ),
            ("JICOFO_MAX_MEMORY", "3072m"),
            ("SENTRY_DSN", "https://key@sentry.example/1"),
        ];
        assert_eq!(names(&all).len(), IGNORED.len());
        assert_eq!(names(&all), all.map(|(n, _)| n));
        let r = ignored(&|k: &str| (k == "ENABLE_RECORDING").then(|| "true".to_owned()));
        assert_eq!(r[0].value, "true");
        assert!(r[0].effect.contains("Jibri"));
    }

    /// A variable moves out of [`IGNORED`] when the configuration starts reading it (as
    /// `ENABLE_MODERATOR_CHECKS`, the authentication variables and `JICOFO_ENABLE_HEALTH_CHECKS` did).
    #[test]
    fn no_variable_the_configuration_reads_is_reported_as_ignored() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        // Turn on what makes more variables read (secure domain, a separate brewery server).
        let env = |name: &str| {
            asked.borrow_mut().insert(name.to_owned());
            match name {
                "JICOFO_AUTH_PASSWORD" => Some("x".to_owned()),
                "ENABLE_AUTH" | "ENABLE_JVB_XMPP_SERVER" | "ENABLE_RECORDING" => Some("1".into()),
                _ => None,
            }
        };
        crate::config::Config::load(&env, &crate::config::Flags::default()).unwrap();
        let asked = asked.into_inner();
        for name in [
            "ENABLE_MODERATOR_CHECKS",
            "JICOFO_ENABLE_HEALTH_CHECKS",
            "AUTH_TYPE",
        ] {
            assert!(asked.contains(name), "{name} is read");
        }
        let both: Vec<&str> = IGNORED
            .iter()
            .map(|(n, ..)| *n)
            .filter(|n| asked.contains(*n))
            .collect();
        assert!(both.is_empty(), "read and reported as ignored: {both:?}");
    }

    #[test]
    fn a_stock_docker_environment_is_quiet() {
        // docker-compose.yml's defaults and .env.example values that Jicofo ignores too.
        assert!(
            names(&[
                ("ENABLE_RECORDING", "0"),
                ("ENABLE_TRANSCRIPTIONS", ""),
                ("JIBRI_BREWERY_MUC", "jibribrewery"),
                ("JIBRI_PENDING_TIMEOUT", "90"),
                ("JIGASI_BREWERY_MUC", "jigasibrewery"),
                ("ENABLE_OCTO", "false"),
                ("ENABLE_MODERATOR_CHECKS", "1"),
                ("JICOFO_ENABLE_HEALTH_CHECKS", "true"),
                ("SENTRY_DSN", "0"),
                ("TZ", "UTC"),
                ("XMPP_DOMAIN", "meet.jitsi"),
            ])
            .is_empty()
        );
    }
}
