use super::*;
use crate::notify::ChannelKind;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text)
}

fn message(e: ConfigError) -> String {
    e.to_string()
}

#[test]
fn embedded_defaults_load_and_match_the_documented_values() {
    let c = Config::load(None).unwrap();
    assert_eq!(c.classification.critical.response_time, secs(5 * 60));
    assert_eq!(c.classification.high.response_time, secs(15 * 60));
    assert_eq!(c.classification.medium.response_time, secs(60 * 60));
    assert_eq!(c.classification.low.response_time, secs(240 * 60));
    let windows: Vec<(u8, &str, Duration)> = c
        .escalation
        .levels
        .iter()
        .map(|l| (l.level, l.name.as_str(), l.respond_within))
        .collect();
    assert_eq!(
        windows,
        vec![
            (1, "Technical support", secs(15 * 60)),
            (2, "Senior technical", secs(30 * 60)),
            (3, "Management and security", secs(60 * 60)),
            (4, "Executive", secs(120 * 60)),
        ]
    );
    assert_eq!(c.escalation.severity.critical.start_level, 2);
    assert_eq!(c.notify.channels.len(), 1);
    assert_eq!(c.notify.channels[0].kind, ChannelKind::Log);
    assert_eq!(c.notify.max_attempts, 5);
    assert_eq!(c.monitor.interval, secs(30));
    assert_eq!(c.regulatory.default_within, secs(15 * 86_400));
    assert_eq!(c.regulatory.death_within, secs(10 * 86_400));
    assert_eq!(c.regulatory.widespread_within, secs(2 * 86_400));
    assert_eq!(c.screening.max_prompt_bytes, 1_048_576);
    assert_eq!(c.performance.llm_response_time, secs(10));
    assert_eq!(c.performance.tool_execution_time, secs(5));
    assert_eq!(c.performance.system_response_time, secs(3));
    assert_eq!(c.performance.error_rate, 0.05);
    assert_eq!(c.performance.availability, 0.99);
    assert!(Config::default_toml().contains("[[notify.channels]]"));
}

#[test]
fn defaults_round_trip_through_serialization() {
    let c = Config::load(None).unwrap();
    let text = toml::to_string(&c).unwrap();
    assert_eq!(load(&text).unwrap(), c);
}

#[test]
fn partial_file_overrides_only_what_it_names() {
    let c = load(
        r#"
        [classification.critical]
        response_time = "3m"

        [notify]
        max_attempts = 2

        [[notify.channels]]
        name = "log"
        kind = "log"

        [[notify.channels]]
        name = "hook"
        kind = "webhook"
        url = "http://127.0.0.1:9/hook"
        secret = "s"
        "#,
    )
    .unwrap();
    assert_eq!(c.classification.critical.response_time, secs(180));
    // rest of the critical table kept from defaults
    assert!(c.classification.critical.auto_escalation);
    assert_eq!(c.notify.max_attempts, 2);
    assert_eq!(c.notify.backoff_base, secs(2));
    // arrays are replaced as a whole
    let names: Vec<&str> = c.notify.channels.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["log", "hook"]);
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = std::env::temp_dir().join(format!("aim-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("aim.toml");
    std::fs::write(&path, "[monitor]\ninterval = \"5s\"\n").unwrap();
    assert_eq!(Config::load(Some(&path)).unwrap().monitor.interval, secs(5));
    std::fs::write(&path, "[monitor]\ninterval = \"soon\"\n").unwrap();
    let msg = message(Config::load(Some(&path)).unwrap_err());
    assert!(msg.contains("aim.toml"), "{msg}");
    assert!(msg.contains("monitor.interval"), "{msg}");
    let missing = Config::load(Some(&dir.join("nope.toml"))).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }), "{missing}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let cases = [
        ("[notify]\nmax_atempts = 3\n", "max_atempts"),
        ("[monitr]\ninterval = \"1s\"\n", "monitr"),
        ("[escalation.severity.critical]\nstart = 2\n", "start"),
        (
            "[[notify.channels]]\nname = \"log\"\nkind = \"log\"\nwebhook = \"x\"\n",
            "webhook",
        ),
    ];
    for (text, key) in cases {
        let msg = message(load(text).unwrap_err());
        assert!(
            msg.contains("unknown field") && msg.contains(key),
            "{text}: {msg}"
        );
    }
}

#[test]
fn wrong_types_name_the_key_path() {
    let cases = [
        ("[notify]\nmax_attempts = \"five\"\n", "notify.max_attempts"),
        (
            "[classification.high]\nresponse_time = \"15 parsecs\"\n",
            "classification.high.response_time",
        ),
        (
            "[classification.low]\nurgency = \"whenever\"\n",
            "classification.low.urgency",
        ),
        (
            "[screening]\nmax_prompt_bytes = -1\n",
            "screening.max_prompt_bytes",
        ),
    ];
    for (text, key) in cases {
        let msg = message(load(text).unwrap_err());
        assert!(msg.contains(key), "{text}: {msg}");
    }
}

#[test]
fn semantic_errors_name_the_key() {
    let cases = [
        ("[notify]\nmax_attempts = 0\n", "notify.max_attempts"),
        (
            "[notify]\nbackoff_base = \"10s\"\nbackoff_max = \"1s\"\n",
            "notify.backoff_max",
        ),
        (
            "[screening]\nflag_threshold = 0.9\nblock_threshold = 0.5\n",
            "screening.block_threshold",
        ),
        ("[performance]\nerror_rate = 5\n", "performance.error_rate"),
        (
            "[escalation.severity.high]\nstart_level = 5\n",
            "escalation.severity.high.start_level",
        ),
        (
            "[escalation.severity.high]\ntime_factor = 0\n",
            "escalation.severity.high.time_factor",
        ),
        (
            "[classification.critical]\nchannels = [\"pager\"]\n",
            "classification.critical.channels",
        ),
        (
            "[[classification.overrides]]\nkind = \"x\"\nseverity = \"high\"\nat_least = \"low\"\n",
            "classification.overrides[0]",
        ),
        (
            "[[escalation.levels]]\nlevel = 1\nname = \"a\"\nrespond_within = \"1m\"\nchannels = []\n",
            "escalation.levels",
        ),
        (
            "[[notify.channels]]\nname = \"log\"\nkind = \"log\"\n[[notify.channels]]\nname = \"h\"\nkind = \"webhook\"\nurl = \"http://x\"\n",
            "notify.channels[1].secret",
        ),
        (
            "[[notify.channels]]\nname = \"log\"\nkind = \"log\"\n[[notify.channels]]\nname = \"log\"\nkind = \"log\"\n",
            "notify.channels[1].name",
        ),
        (
            "[[notify.channels]]\nname = \"log\"\nkind = \"log\"\n[[notify.channels]]\nname = \"m\"\nkind = \"email\"\nsmtp_host = \"h\"\nfrom = \"not an address\"\nto = [\"a@b.c\"]\n",
            "notify.channels[1].from",
        ),
    ];
    for (text, key) in cases {
        let err = load(text).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { .. }), "{text}: {err}");
        let msg = message(err);
        assert!(msg.contains(&format!("`{key}")), "{text}: {msg}");
    }
}

#[test]
fn unknown_channel_reference_is_rejected() {
    let text = "[[notify.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:1/\"\nsecret = \"s\"\n";
    let msg = message(load(text).unwrap_err());
    assert!(msg.contains("unknown channel \"log\""), "{msg}");
    assert!(msg.contains("defined channels: hook"), "{msg}");
}

#[test]
fn debug_output_redacts_secrets() {
    let text = r#"
        [[notify.channels]]
        name = "log"
        kind = "log"
        [[notify.channels]]
        name = "hook"
        kind = "webhook"
        url = "http://127.0.0.1:1/"
        secret = "topsecret-hmac"
        [[notify.channels]]
        name = "slack"
        kind = "slack"
        url = "https://hooks.slack.com/services/T0/B0/slack-token-xyz"
        [[notify.channels]]
        name = "pd"
        kind = "pagerduty"
        routing_key = "routing-key-abc"
    "#;
    let c = load(text).unwrap();
    let dbg = format!("{c:?}");
    for secret in ["topsecret-hmac", "slack-token-xyz", "routing-key-abc"] {
        assert!(!dbg.contains(secret), "{secret} leaked in Debug");
    }
}

#[test]
fn default_toml_documents_every_section() {
    for section in [
        "[classification.critical]",
        "[[classification.overrides]]",
        "[[escalation.levels]]",
        "[escalation.severity.critical]",
        "[notify]",
        "[[notify.channels]]",
        "[monitor]",
        "[regulatory]",
        "[screening]",
        "[performance]",
    ] {
        assert!(Config::default_toml().contains(section), "{section}");
    }
}
