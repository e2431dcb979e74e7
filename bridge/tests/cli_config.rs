//! The real `bridge` binary's configuration handling: bad values stop start-up with a message naming
//! the variable / TOML key / flag and the value; env < TOML < flags is observable through
//! `--print-config`; `--help` documents every environment variable.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_bridge");

/// Runs the binary with exactly `env` (the test process's environment is not inherited) and `args`,
/// killing it if it has not exited within 20 s (a config error must stop it at once).
fn run(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn bridge");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bridge {args:?} did not exit (it should have stopped at start-up)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().expect("wait");
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).expect("stdout");
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).expect("stderr");
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A valid baseline (XMPP enabled, so the password rule applies).
const BASE: &[(&str, &str)] = &[
    ("JVB_AUTH_PASSWORD", "pw-not-printed"),
    ("HOSTNAME", "test-node"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = BASE.to_vec();
    v.extend_from_slice(extra);
    v
}

#[test]
fn bad_env_values_stop_startup_naming_the_variable() {
    let cases: &[(&str, &str, &str)] = &[
        ("JVB_PORT", "abc", "invalid port"),
        ("JVB_PORT", "65536", "invalid port"),
        ("JVB_ADVERTISE_IPS", "not-an-ip", "not an IP address"),
        ("JVB_ADVERTISE_IPS", "192.0.2.1#99999", "invalid port"),
        ("XMPP_SERVER", "prosody:xyz", "invalid port"),
        ("XMPP_PORT", "five", "invalid port"),
        ("XMPP_AUTH_DOMAIN", "auth meet", "invalid domain"),
        ("JVB_BREWERY_MUC", "brew@ery", "invalid XMPP localpart"),
        ("JVB_DISABLE_XMPP", "perhaps", "invalid boolean"),
        ("JVB_DISABLE_STUN", "2", "invalid boolean"),
        ("JVB_STUN_SERVERS", "stun.example:0", "port 0"),
        ("COLIBRI_REST_ENABLED", "enabled", "invalid boolean"),
        ("SHUTDOWN_REST_ENABLED", "yesplease", "invalid boolean"),
        ("JVB_CC_TRUST_BWE", "sometimes", "invalid boolean"),
        ("JVB_REST_HOST", "localhost", "invalid IP address"),
        ("JVB_REST_PORT", "http", "invalid port"),
        ("JVB_SRTP_PROFILES", "NULL", "unknown SRTP profile"),
        (
            "JVB_GRACEFUL_SHUTDOWN_MAX_DURATION",
            "forever",
            "invalid duration",
        ),
        ("JVB_SHUTTING_DOWN_DELAY", "soon", "invalid duration"),
        ("JVB_ENDPOINT_EXPIRE_TIMEOUT", "0", "greater than zero"),
        ("JVB_MAX_PACKET_RATE", "lots", "invalid number"),
        (
            "JVB_SILENCE_DETECTION_TIMEOUT",
            "a while",
            "invalid duration",
        ),
        ("LOG_FORMAT", "xml", "invalid log format"),
        ("LOG_LEVEL", "bridge=loud", "invalid log level"),
        ("ENABLE_JVB_XMPP_SERVER", "sure", "invalid boolean"),
    ];
    for (var, value, reason) in cases {
        let out = run(&with(&[(var, value)]), &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{var}={value} should fail");
        assert_eq!(out.status.code(), Some(2), "{var}: {err}");
        assert!(
            err.contains(&format!("{var}={value:?}")),
            "{var}: stderr does not name variable and value: {err}"
        );
        assert!(err.contains(reason), "{var}: expected {reason:?} in {err}");
    }
}

#[test]
fn several_bad_values_are_all_reported() {
    let out = run(
        &[
            ("HOSTNAME", "h"),
            ("JVB_PORT", "abc"),
            ("JVB_ADVERTISE_IPS", "not-an-ip"),
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains(r#"JVB_PORT="abc""#), "{err}");
    assert!(err.contains(r#"JVB_ADVERTISE_IPS="not-an-ip""#), "{err}");
    assert!(
        err.contains("JVB_AUTH_PASSWORD"),
        "missing password reported too: {err}"
    );
}

#[test]
fn missing_password_when_xmpp_enabled() {
    let out = run(&[("HOSTNAME", "h")], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("JVB_AUTH_PASSWORD"), "{err}");
    assert!(
        err.contains("JVB_DISABLE_XMPP"),
        "says how to avoid it: {err}"
    );

    // An empty value is unset, as in the docker image.
    let out = run(&[("HOSTNAME", "h"), ("JVB_AUTH_PASSWORD", "")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("JVB_AUTH_PASSWORD"));

    // Not needed when XMPP is disabled.
    let out = run(
        &[("HOSTNAME", "h"), ("JVB_DISABLE_XMPP", "true")],
        &["--print-config"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn bad_toml_and_bad_flags_name_key_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    let p = path.to_str().unwrap();

    std::fs::write(&path, "[media]\nport = \"abc\"\n").unwrap();
    let out = run(BASE, &["--config", p]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("media.port") && err.contains(p) && err.contains("\"abc\""),
        "{err}"
    );

    std::fs::write(&path, "[media]\nprot = 10000\n").unwrap();
    let err = stderr(&run(BASE, &["--config", p]));
    assert!(
        err.contains("unknown key") && err.contains("media.prot"),
        "{err}"
    );

    std::fs::write(&path, "[media\n").unwrap();
    let err = stderr(&run(BASE, &["--config", p]));
    assert!(err.contains("invalid TOML") && err.contains(p), "{err}");

    let missing = dir.path().join("nope.toml");
    let err = stderr(&run(BASE, &["--config", missing.to_str().unwrap()]));
    assert!(
        err.contains("cannot read") && err.contains("nope.toml"),
        "{err}"
    );

    let out = run(BASE, &["--port", "abc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(r#"--port="abc": invalid port"#),
        "{}",
        stderr(&out)
    );

    let out = run(BASE, &["--shutdown-api=sometimes"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--shutdown-api=\"sometimes\""));

    // Unknown flags are clap usage errors (exit 2).
    let out = run(BASE, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--no-such-flag"));
}

#[test]
fn precedence_env_then_toml_then_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bridge.toml");
    std::fs::write(
        &path,
        "instance_id = \"from-toml\"\n\
         [media]\nport = 20000\n\
         [rest]\nport = 9000\nshutdown = true\n\
         [lifecycle]\nshutting_down_delay = \"2s\"\n\
         [xmpp]\nbrewery_muc = \"toml-brewery\"\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let env = with(&[
        ("JVB_PORT", "10001"),
        ("JVB_REST_PORT", "8001"),
        ("JVB_MUC_NICKNAME", "env-nick"),
        ("JVB_BREWERY_MUC", "env-brewery"),
        ("JVB_SHUTTING_DOWN_DELAY", "9s"),
        ("SHUTDOWN_REST_ENABLED", "false"),
        ("JVB_OCTO_REGION", "env-region"),
    ]);
    let out = run(
        &env,
        &[
            "--config",
            p,
            "--rest-port",
            "9100",
            "--region",
            "flag-region",
            "--print-config",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let printed: toml::Table = stdout(&out).parse().expect("print-config is TOML");
    let get = |section: &str, key: &str| printed[section][key].clone();
    assert_eq!(
        get("xmpp", "muc_nickname").as_str(),
        Some("env-nick"),
        "env only"
    );
    assert_eq!(
        get("xmpp", "brewery_muc").as_str(),
        Some("toml-brewery"),
        "TOML over env"
    );
    assert_eq!(
        get("media", "port").as_integer(),
        Some(20000),
        "TOML over env"
    );
    assert_eq!(
        get("rest", "shutdown").as_bool(),
        Some(true),
        "TOML over env"
    );
    assert_eq!(get("lifecycle", "shutting_down_delay").as_str(), Some("2s"));
    assert_eq!(
        get("rest", "port").as_integer(),
        Some(9100),
        "flag over TOML over env"
    );
    assert_eq!(
        get("stats", "region").as_str(),
        Some("flag-region"),
        "flag over env"
    );
    assert_eq!(printed["instance_id"].as_str(), Some("from-toml"));
    assert_eq!(get("xmpp", "password").as_str(), Some("***"));
    assert!(!stdout(&out).contains("pw-not-printed"), "password leaked");

    // The printed configuration is itself a valid config file that gives the same result.
    let reprinted = dir.path().join("printed.toml");
    std::fs::write(&reprinted, stdout(&out).replace("\"***\"", "\"pw\"")).unwrap();
    let again = run(
        &[("HOSTNAME", "other")],
        &["--config", reprinted.to_str().unwrap(), "--print-config"],
    );
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&out));
}

#[test]
fn docker_defaults_and_compat_variables() {
    let out = run(BASE, &["--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let t: toml::Table = stdout(&out).parse().unwrap();
    assert_eq!(
        t["xmpp"]["servers"][0].as_str(),
        Some("xmpp.meet.jitsi:5222")
    );
    assert_eq!(
        t["xmpp"]["muc_nickname"].as_str(),
        Some("test-node"),
        "HOSTNAME"
    );
    assert_eq!(t["media"]["port"].as_integer(), Some(10000));
    assert_eq!(t["rest"]["host"].as_str(), Some("127.0.0.1"));
    assert_eq!(t["rest"]["port"].as_integer(), Some(8080));

    let out = run(
        &with(&[
            ("ENABLE_JVB_XMPP_SERVER", "1"),
            ("JVB_XMPP_SERVER", "brewery-prosody"),
            ("XMPP_SERVER", "main-prosody"),
        ]),
        &["--print-config"],
    );
    let t: toml::Table = stdout(&out).parse().unwrap();
    assert_eq!(
        t["xmpp"]["servers"][0].as_str(),
        Some("brewery-prosody:6222")
    );
    assert_eq!(
        t["xmpp"]["internal_muc_domain"].as_str(),
        Some("muc.jvb.meet.jitsi")
    );
}

#[test]
fn help_documents_every_environment_variable() {
    let out = run(&[], &["--help"]);
    assert!(out.status.success());
    let help = stdout(&out);
    // docker-jitsi-meet's jvb variables (its jvb/rootfs/defaults/jvb.conf) and our additions, named literally so
    // that this test does not just check the table against itself.
    for var in [
        "XMPP_SERVER",
        "XMPP_PORT",
        "XMPP_DOMAIN",
        "XMPP_AUTH_DOMAIN",
        "XMPP_INTERNAL_MUC_DOMAIN",
        "JVB_AUTH_USER",
        "JVB_AUTH_PASSWORD",
        "JVB_DISABLE_XMPP",
        "JVB_BREWERY_MUC",
        "JVB_MUC_NICKNAME",
        "JVB_PORT",
        "JVB_ADVERTISE_IPS",
        "JVB_ADVERTISE_PRIVATE_CANDIDATES",
        "JVB_STUN_SERVERS",
        "JVB_DISABLE_STUN",
        "COLIBRI_REST_ENABLED",
        "SHUTDOWN_REST_ENABLED",
        "JVB_OCTO_REGION",
        "JVB_OCTO_RELAY_ID",
        "JVB_INSTANCE_ID",
        "JVB_CC_TRUST_BWE",
        "XMPP_DISABLE_CERTIFICATE_VERIFICATION",
        "ENABLE_JVB_XMPP_SERVER",
        "ENABLE_OCTO",
        "DOCKER_HOST_ADDRESS",
        "JVB_REST_HOST",
        "JVB_REST_PORT",
        "LOG_FORMAT",
        "LOG_LEVEL",
        "JVB_SRTP_PROFILES",
        "JVB_ENDPOINT_EXPIRE_TIMEOUT",
        "JVB_CONFERENCE_EXPIRE_TIMEOUT",
        "JVB_GRACEFUL_SHUTDOWN_MAX_DURATION",
        "JVB_SHUTTING_DOWN_DELAY",
        "JVB_INITIAL_DRAIN",
        "JVB_MAX_PACKET_RATE",
        "JVB_CONFIG_FILE",
    ] {
        assert!(help.contains(var), "--help does not mention {var}");
    }
    for s in bridge::config::SETTINGS {
        assert!(help.contains(s.env), "{}", s.env);
        assert!(help.contains(s.toml), "{}", s.toml);
        if let Some(flag) = s.flag {
            // The flag's own help line names its env var and TOML key.
            let line = help
                .lines()
                .skip_while(|l| !l.trim_start().starts_with(&format!("--{flag}")))
                .nth(1)
                .unwrap_or_default();
            assert!(
                line.contains(&format!("[env: {}]", s.env)) && line.contains(s.toml),
                "--{flag} help does not name its sources: {line:?}"
            );
        }
    }
    // Subcommands are documented too.
    for sub in ["healthcheck", "graceful-shutdown"] {
        assert!(help.contains(sub), "{sub}");
        let out = run(&[], &[sub, "--help"]);
        assert!(out.status.success());
        assert!(stdout(&out).contains("--url"));
    }
    let sub = stdout(&run(&[], &["graceful-shutdown", "--help"]));
    assert!(sub.contains("--wait") && sub.contains("--timeout"));
}
