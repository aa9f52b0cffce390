//! Server configuration: one TOML file, with every default embedded from `data/default-config.toml`.
//!
//! Owns: the `Config` tree, loading (defaults ⊕ user file), and semantic validation with errors that name
//! the offending key. The policy types themselves live in [`crate::domain::policy`] and [`crate::notify`].
//!
//! Loading merges the user's file onto the embedded defaults table by table (scalars and arrays in the
//! user's file replace the default; tables are merged key by key), then deserializes with unknown keys
//! rejected, then validates cross-references (channel names) and ranges.
//!
//! May import: `std`, `serde`, `toml`, `humantime_serde`, `thiserror`, `crate::domain`, `crate::notify`,
//! `crate::checks` (the key and access rule tables).
//! Must not import rmcp, axum, rusqlite/sqlx or anyhow.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::policy::{
    ClassificationPolicy, EscalationPolicy, MAX_LEVEL, RegulatoryPolicy, Severity,
};
use crate::notify::NotifyConfig;

/// The embedded default configuration, fully commented.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../data/default-config.toml");

impl Config {
    /// The response policies the domain decides with (classification and escalation).
    pub fn rules(&self) -> crate::domain::opening::Rules<'_> {
        crate::domain::opening::Rules {
            classification: &self.classification,
            escalation: &self.escalation,
        }
    }
}

/// Root of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[classification]`: severity rules and type overrides.
    pub classification: ClassificationPolicy,
    /// `[escalation]`: levels and per-severity start level / speed.
    pub escalation: EscalationPolicy,
    /// `[notify]`: retries and channels.
    pub notify: NotifyConfig,
    /// `[monitor]`: background loop.
    pub monitor: MonitorConfig,
    /// `[regulatory]`: EU AI Act Art. 73 reporting deadlines.
    pub regulatory: RegulatoryPolicy,
    /// `[screening]`: prompt-screening thresholds and limits.
    pub screening: ScreeningConfig,
    /// `[performance]`: metric thresholds.
    pub performance: PerformanceConfig,
    /// `[documentation]`: where post-incident documents are written.
    pub documentation: DocumentationConfig,
    /// `[containment]`: automatic containment of screened attacks.
    pub containment: ContainmentConfig,
    /// `[http]`: resource limits of the HTTP server (timeouts, connection and session caps).
    pub http: HttpConfig,
    /// `[audit]`: signed checkpoints of the audit chain.
    pub audit: AuditConfig,
    /// `[keys]`: API-key usage anomaly rules.
    pub keys: crate::checks::keys::KeyRules,
    /// `[access]`: data-access rules (data breach detection).
    pub access: crate::checks::access::AccessRules,
    /// `[[upstreams]]`: LLM APIs and MCP servers the background loop probes.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// `[server]`: read-only mode.
    #[serde(default)]
    pub server: ServerConfig,
    /// `[auth]`: named bearer tokens and their roles.
    #[serde(default)]
    pub auth: AuthConfig,
    /// `[intake]`: manual-report channels besides MCP, REST and the web form (e-mail).
    #[serde(default)]
    pub intake: IntakeConfig,
    /// `[proxy]`: the guard proxy (`ai-incident-mcp proxy`), see `docs/proxy.md`.
    #[serde(default)]
    pub proxy: ProxyConfig,
    /// `[mcp]`: which tools the MCP surface exposes.
    #[serde(default)]
    pub mcp: McpConfig,
}

/// `[server]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Serve reads only: write tools are not listed over MCP, write endpoints answer 403,
    /// e-mail intake is refused. Also `serve --read-only`.
    #[serde(default)]
    pub read_only: bool,
}

/// What a bearer token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads only.
    Reader,
    /// Reads and every incident change.
    Responder,
    /// Everything (the single `--token` is admin).
    Admin,
}

impl Role {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Responder => "responder",
            Role::Admin => "admin",
        }
    }
}

/// One `[[auth.tokens]]` entry: the token is stored as its SHA-256 (hex), never in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The actor the timeline records for requests with this token, e.g. `alice`.
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: String,
    /// reader, responder or admin.
    pub role: Role,
}

/// `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Named tokens; with any configured, every HTTP request but `/healthz` needs one (or `--token`).
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `[intake]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    /// `[intake.smtp]`: the e-mail intake listener (off when absent).
    #[serde(default)]
    pub smtp: Option<SmtpIntakeConfig>,
}

/// `[intake.smtp]`: an SMTP listener whose accepted mails become manual incident reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpIntakeConfig {
    /// Address to listen on, e.g. `127.0.0.1:2525`.
    pub listen: String,
    /// Recipient addresses accepted (case-insensitive), e.g. `["incidents@example.com"]`;
    /// mail to any other address is refused with 550.
    pub recipients: Vec<String>,
    /// Largest message accepted, in bytes (advertised as SIZE; bigger mail gets 552).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// The name the server greets with.
    #[serde(default = "default_smtp_hostname")]
    pub hostname: String,
    /// Name of a `kind = "email"` channel in `[[notify.channels]]` whose SMTP server and `from`
    /// send the reply with the incident id to the reporter; no reply when unset.
    #[serde(default)]
    pub reply_channel: Option<String>,
    /// Concurrent SMTP sessions at most (more get 421).
    #[serde(default = "default_max_smtp_sessions")]
    pub max_sessions: usize,
    /// A session idle this long is closed with 421.
    #[serde(default = "default_smtp_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
}

fn default_max_message_bytes() -> usize {
    10 * 1024 * 1024
}
fn default_smtp_hostname() -> String {
    "ai-incident-mcp".into()
}
fn default_max_smtp_sessions() -> usize {
    64
}
fn default_smtp_idle() -> Duration {
    Duration::from_secs(300)
}

/// `[mcp]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// Tool names and groups (`screening`, `incidents`, `lifecycle`, `monitoring`, `detectors`,
    /// `all`) to expose; empty exposes every tool. `serve --tools` overrides it.
    #[serde(default)]
    pub tools: Vec<String>,
}

/// What an upstream is and how to probe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamKind {
    /// An HTTP API (an LLM provider): one request, status and latency checked.
    Http,
    /// An MCP server: initialize → tools/list (compared with the pinned list) → optional call.
    Mcp,
}

/// `[[upstreams]]`: one probed dependency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Unique name (appears in incidents, metrics and `isolate_upstream`).
    pub name: String,
    /// `http` or `mcp`.
    pub kind: UpstreamKind,
    /// HTTP: the URL to request. MCP: a Streamable HTTP endpoint (instead of `command`).
    #[serde(default)]
    pub url: Option<String>,
    /// MCP over stdio: the program and its arguments.
    #[serde(default)]
    pub command: Vec<String>,
    /// HTTP method (default GET).
    #[serde(default = "default_method")]
    pub method: String,
    /// Request headers whose *values* are read from environment variables at probe time:
    /// header name → variable name (secrets never go in the file).
    #[serde(default)]
    pub headers_from_env: std::collections::BTreeMap<String, String>,
    /// HTTP statuses that count as healthy (default: any 2xx).
    #[serde(default)]
    pub expected_status: Vec<u16>,
    /// Probe period (default 30s).
    #[serde(default = "default_probe_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// A probe taking longer fails as a timeout (default 10s).
    #[serde(default = "default_probe_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// A probe slower than this fails as slow (default: only the timeout).
    #[serde(default, with = "humantime_serde")]
    pub latency_threshold: Option<Duration>,
    /// MCP: a safe tool to call after tools/list (e.g. a ping or a read-only list tool).
    #[serde(default)]
    pub call_tool: Option<String>,
    /// MCP: arguments of `call_tool` (a JSON object written as a TOML table).
    #[serde(default)]
    pub call_arguments: Option<toml::Table>,
    /// MCP: the catalog file whose pins in `monitor.pin_lock` the live tools/list must match
    /// (e.g. `crm_mcp.json`); without it the first list seen is pinned in memory.
    #[serde(default)]
    pub pin_catalog: Option<String>,
    /// Consecutive failed probes that open the incident (default 1).
    #[serde(default = "default_one")]
    pub failures_to_open: u32,
    /// Consecutive good probes after a failure that record recovery (default 3).
    #[serde(default = "default_recovery_probes")]
    pub recovery_probes: u32,
    /// Resolve the incident when the upstream recovers (through the one resolve path).
    #[serde(default)]
    pub auto_resolve: bool,
}

fn default_method() -> String {
    "GET".into()
}
fn default_probe_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_probe_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_one() -> u32 {
    1
}
fn default_recovery_probes() -> u32 {
    3
}

/// `[http]`: availability limits enforced before authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// A client must send a request's whole header within this time, or the connection is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A client must send a request's whole body within this time, or it gets 408 and the
    /// connection is closed.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    #[serde(with = "humantime_serde")]
    pub keep_alive_idle: Duration,
    /// Open connections at most (more are answered 503 and closed at once).
    pub max_connections: usize,
    /// Open connections from one client IP address at most (0 = no per-address cap).
    pub max_connections_per_client: usize,
    /// Live Streamable HTTP sessions at most; an `initialize` past it gets 503 with `Retry-After`.
    pub max_sessions: usize,
    /// A session with no request for this long is closed and its memory freed.
    #[serde(with = "humantime_serde")]
    pub session_idle_timeout: Duration,
}

/// `[audit]`: signed checkpoints of the audit chain (see `docs/security.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Private Ed25519 key (PKCS#8 PEM or 64 hex digits, from `ai-incident-mcp keygen`). The
    /// environment variable [`AUDIT_KEY_ENV`] (the key itself) takes precedence. Without either,
    /// no checkpoints are written.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    /// Public key `verify_audit_log` checks the witness with (default: the signing key's).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// Append-only witness file the checkpoints are written to: keep it outside the
    /// database's reach (another volume, `chattr +a`, or a log shipper).
    pub witness_file: PathBuf,
    /// How often the background loop signs the chain head (when it moved); also on shutdown.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Also write each checkpoint to the log (stderr), for a log collector to keep.
    pub log_checkpoints: bool,
}

/// Environment variable holding the checkpoint signing key itself (PEM or hex).
pub const AUDIT_KEY_ENV: &str = "AI_INCIDENT_AUDIT_KEY";

/// `[documentation]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentationConfig {
    /// Folder for `incident_<id>_<yyyymmdd>.json` and `.md` (relative to the working directory).
    pub dir: PathBuf,
}

/// `[containment]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainmentConfig {
    /// Block the affected user and session automatically when screening blocks a text of one of
    /// `categories` (the block is reversible with `lift_containment`).
    pub auto_block: bool,
    /// Attack categories that auto-block applies to.
    pub categories: Vec<String>,
    /// `rate_limit`: tokens added per minute to a limited principal's bucket.
    #[serde(default = "default_rate_per_minute")]
    pub rate_limit_per_minute: f64,
    /// `rate_limit`: bucket size (calls allowed in a burst).
    #[serde(default = "default_rate_burst")]
    pub rate_limit_burst: f64,
}

fn default_rate_per_minute() -> f64 {
    6.0
}
fn default_rate_burst() -> f64 {
    3.0
}

/// `[monitor]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Period of the background loop (checks + escalation sweep).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Folder of the sample data files checked for data quality.
    #[serde(default = "default_data_dir")]
    pub data_dir: std::path::PathBuf,
    /// Folder of the MCP tool catalogs (`*_mcp.json`) checked and pinned.
    #[serde(default = "default_catalog_dir")]
    pub catalog_dir: std::path::PathBuf,
    /// Lock file with the SHA-256 pin of every tool definition.
    #[serde(default = "default_pin_lock")]
    pub pin_lock: std::path::PathBuf,
    /// Run the data-quality checks in the loop.
    #[serde(default = "default_true")]
    pub data_quality: bool,
    /// JSON-lines file of API-key usage records the loop tails (one `record_key_usage` object a line).
    #[serde(default)]
    pub key_usage_log: Option<PathBuf>,
    /// JSON-lines access log the loop tails (one `record_access` object a line).
    #[serde(default)]
    pub access_log: Option<PathBuf>,
    /// A standing finding (the same open incident found again on every pass) records at most one
    /// `detected_again` event per this interval; in between only its counter and last-seen time move.
    #[serde(default = "default_detected_again_every", with = "humantime_serde")]
    pub detected_again_every: Duration,
}

fn default_detected_again_every() -> Duration {
    Duration::from_secs(3600)
}

fn default_repeat_threshold() -> u32 {
    3
}
fn default_repeat_window() -> Duration {
    Duration::from_secs(600)
}
fn default_anonymous_window() -> Duration {
    Duration::from_secs(3600)
}
fn default_model_weight() -> f64 {
    0.8
}

fn default_data_dir() -> std::path::PathBuf {
    "data".into()
}
fn default_catalog_dir() -> std::path::PathBuf {
    "mcp_server".into()
}
fn default_pin_lock() -> std::path::PathBuf {
    "mcp_server/tools.lock.json".into()
}
fn default_true() -> bool {
    true
}

/// `[screening]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningConfig {
    /// Risk score at or above which a prompt is flagged.
    pub flag_threshold: f64,
    /// Risk score at or above which a prompt is blocked.
    pub block_threshold: f64,
    /// Largest accepted prompt, in bytes.
    pub max_prompt_bytes: usize,
    /// Extra detection rules (TOML, same format as `data/rules/default.toml`).
    #[serde(default)]
    pub rules_file: Option<std::path::PathBuf>,
    /// Flagged or blocked attempts by one user (or session) within `repeat_window` that raise the
    /// incident's severity one level (and, with `[containment] auto_block`, contain the user).
    #[serde(default = "default_repeat_threshold")]
    pub repeat_threshold: u32,
    /// Window for `repeat_threshold`.
    #[serde(default = "default_repeat_window", with = "humantime_serde")]
    pub repeat_window: Duration,
    /// Anonymous detections (no user_id or session_id) share an open incident only when they have
    /// the same category and source and fall in the same period of this length (periods are
    /// aligned to the Unix epoch); a new period opens a new incident.
    #[serde(default = "default_anonymous_window", with = "humantime_serde")]
    pub anonymous_window: Duration,
    /// Scale of the learned model's contribution to the risk score (0 = rules only).
    #[serde(default = "default_model_weight")]
    pub model_weight: f64,
    /// Screen for bulk data-access requests (`data_access_attempt`: flagged, never blocked).
    #[serde(default = "default_true")]
    pub data_access_attempt: bool,
    /// File holding the key of the secret fingerprints (HMAC-SHA256), created with mode 0600 on
    /// first use. Default: `<database file>.fingerprint-key` beside a SQLite database. The
    /// environment variable `AI_INCIDENT_FINGERPRINT_KEY` takes precedence (the key itself is
    /// never in this file).
    #[serde(default)]
    pub fingerprint_key_file: Option<std::path::PathBuf>,
}

/// `[performance]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformanceConfig {
    /// LLM response time above which a breach is recorded.
    #[serde(with = "humantime_serde")]
    pub llm_response_time: Duration,
    /// Tool execution time above which a breach is recorded.
    #[serde(with = "humantime_serde")]
    pub tool_execution_time: Duration,
    /// System response time above which a breach is recorded.
    #[serde(with = "humantime_serde")]
    pub system_response_time: Duration,
    /// Error-rate fraction above which a breach is recorded.
    pub error_rate: f64,
    /// Availability fraction below which a breach is recorded.
    pub availability: f64,
    /// Sliding window for rates and averages.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A metric is healthy again after this long without a violation (and one good sample).
    #[serde(default = "default_recovery_after", with = "humantime_serde")]
    pub recovery_after: Duration,
    /// Resolve the performance incident automatically when its metric recovers.
    #[serde(default)]
    pub auto_resolve: bool,
}

fn default_recovery_after() -> Duration {
    Duration::from_secs(120)
}

/// Configuration errors. Each names the file and the offending key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// File path.
        path: PathBuf,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key, or a value of the wrong type. `message` says where.
    #[error("invalid config {origin}: {message}")]
    Parse {
        /// File path or "(built-in defaults)".
        origin: String,
        /// Parser message, including the key path (e.g. "in `notify.max_attempts`").
        message: String,
    },
    /// A value that parses but is not acceptable.
    #[error("invalid config {origin}: `{key}` {message}")]
    Invalid {
        /// File path or "(built-in defaults)".
        origin: String,
        /// Dotted key path, e.g. `escalation.levels[2].respond_within`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

const BUILTIN: &str = "(built-in defaults)";

impl Config {
    /// The embedded default configuration file, verbatim (with comments).
    pub fn default_toml() -> &'static str {
        DEFAULT_CONFIG_TOML
    }

    /// Load the configuration: the embedded defaults, overlaid with `path` when given.
    ///
    /// ```
    /// let cfg = ai_incident_mcp::config::Config::load(None).unwrap();
    /// assert_eq!(cfg.monitor.interval, std::time::Duration::from_secs(30));
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Parse`] for bad TOML, unknown keys
    /// or wrong types, [`ConfigError::Invalid`] for out-of-range values and unknown channel names.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Self::from_toml_str_with_origin("", BUILTIN),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                Self::from_toml_str_with_origin(&text, &p.display().to_string())
            }
        }
    }

    /// Parse `text` as a (possibly partial) config overlaid on the defaults.
    ///
    /// # Errors
    /// As [`Config::load`], with origin "(string)".
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Self::from_toml_str_with_origin(text, "(string)")
    }

    fn from_toml_str_with_origin(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let parse_err = |origin: &str, e: &dyn std::fmt::Display| ConfigError::Parse {
            origin: origin.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        };
        let mut merged: toml::Table =
            toml::from_str(DEFAULT_CONFIG_TOML).map_err(|e| parse_err(BUILTIN, &e))?;
        let user: toml::Table = toml::from_str(text).map_err(|e| parse_err(origin, &e))?;
        merge(&mut merged, user);
        let cfg: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e| parse_err(origin, &e))?;
        cfg.validate()
            .map_err(|(key, message)| ConfigError::Invalid {
                origin: origin.to_owned(),
                key,
                message,
            })?;
        Ok(cfg)
    }

    /// Semantic checks: ranges, exactly four levels, channel references, per-kind channel fields.
    ///
    /// # Errors
    /// `(dotted key, message)` for the first problem found.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let err = |k: String, m: &str| Err((k, m.to_owned()));
        let known: Vec<&str> = self
            .notify
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let check_refs = |key: String, names: &[String]| -> Result<(), (String, String)> {
            for name in names {
                if !known.contains(&name.as_str()) {
                    return Err((
                        key,
                        format!(
                            "refers to unknown channel \"{name}\"; defined channels: {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };

        for (i, t) in self.auth.tokens.iter().enumerate() {
            if t.name.trim().is_empty() {
                return err(
                    format!("auth.tokens[{i}].name"),
                    "is empty; name the actor, e.g. \"alice\"",
                );
            }
            if t.token_sha256.len() != 64 || !t.token_sha256.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return err(
                    format!("auth.tokens[{i}].token_sha256"),
                    "must be 64 hex digits: the SHA-256 of the token, e.g. from `printf %s \"$TOKEN\" | sha256sum`",
                );
            }
        }
        if let Some(smtp) = &self.intake.smtp {
            if smtp.recipients.is_empty() {
                return err(
                    "intake.smtp.recipients".into(),
                    "is empty; list the addresses that accept reports, e.g. [\"incidents@example.com\"]",
                );
            }
            if smtp.max_message_bytes < 1024 {
                return err(
                    "intake.smtp.max_message_bytes".into(),
                    "must be at least 1024",
                );
            }
            if let Some(name) = &smtp.reply_channel {
                match self.notify.channels.iter().find(|c| &c.name == name) {
                    None => check_refs(
                        "intake.smtp.reply_channel".into(),
                        std::slice::from_ref(name),
                    )?,
                    Some(c) if c.kind != crate::notify::ChannelKind::Email => {
                        return err(
                            "intake.smtp.reply_channel".into(),
                            "must name a channel with kind = \"email\" (its smtp_host and from send the reply)",
                        );
                    }
                    Some(_) => {}
                }
            }
        }
        if self.audit.checkpoint_interval < Duration::from_secs(1) {
            return err(
                "audit.checkpoint_interval".into(),
                "must be at least 1s, e.g. \"1m\"",
            );
        }
        // notify
        for (i, ch) in self.notify.channels.iter().enumerate() {
            if let Err((field, msg)) = ch.validate() {
                return Err((format!("notify.channels[{i}].{field}"), msg));
            }
            if self
                .notify
                .channels
                .iter()
                .take(i)
                .any(|c| c.name == ch.name)
            {
                return err(
                    format!("notify.channels[{i}].name"),
                    "duplicates an earlier channel name",
                );
            }
        }
        if self.notify.max_attempts == 0 {
            return err("notify.max_attempts".into(), "must be at least 1");
        }
        if self.notify.backoff_base.is_zero() {
            return err("notify.backoff_base".into(), "must be greater than 0");
        }
        if self.notify.backoff_max < self.notify.backoff_base {
            return err(
                "notify.backoff_max".into(),
                "must be at least notify.backoff_base",
            );
        }
        if self.notify.timeout.is_zero() {
            return err("notify.timeout".into(), "must be greater than 0");
        }

        // http
        for (key, d) in [
            ("http.header_read_timeout", self.http.header_read_timeout),
            ("http.body_read_timeout", self.http.body_read_timeout),
            ("http.keep_alive_idle", self.http.keep_alive_idle),
            ("http.session_idle_timeout", self.http.session_idle_timeout),
        ] {
            if d.is_zero() {
                return err(key.into(), "must be greater than 0");
            }
        }
        if self.http.max_connections == 0 {
            return err("http.max_connections".into(), "must be at least 1");
        }
        if self.http.max_sessions == 0 {
            return err("http.max_sessions".into(), "must be at least 1");
        }

        // classification
        for &sev in Severity::ALL {
            let rule = self.classification.rule(sev);
            let key = format!("classification.{sev}");
            if rule.response_time.is_zero() {
                return err(format!("{key}.response_time"), "must be greater than 0");
            }
            check_refs(format!("{key}.channels"), &rule.channels)?;
        }
        for (i, o) in self.classification.overrides.iter().enumerate() {
            let key = format!("classification.overrides[{i}]");
            if o.kind.trim().is_empty() {
                return err(format!("{key}.kind"), "must not be empty");
            }
            if o.severity.is_some() == o.at_least.is_some() {
                return err(key, "must set exactly one of `severity` or `at_least`");
            }
        }

        for (kind, r) in &self.classification.response_times {
            let key = format!("classification.response_times.{kind}");
            if let Err(m) = kind.parse::<crate::domain::kind::IncidentKind>() {
                return Err((key, m));
            }
            if matches!(r, crate::domain::policy::KindResponse::Within(d) if d.is_zero()) {
                return err(key, "must be greater than 0, or \"immediate\"");
            }
        }

        // escalation
        if self.escalation.levels.len() != usize::from(MAX_LEVEL) {
            return err(
                "escalation.levels".into(),
                "must define exactly 4 levels (1..4)",
            );
        }
        for (i, l) in self.escalation.levels.iter().enumerate() {
            let key = format!("escalation.levels[{i}]");
            if usize::from(l.level) != i + 1 {
                return Err((
                    format!("{key}.level"),
                    format!("must be {} (levels are listed in order 1..4)", i + 1),
                ));
            }
            if l.name.trim().is_empty() {
                return err(format!("{key}.name"), "must not be empty");
            }
            if l.respond_within.is_zero() {
                return err(format!("{key}.respond_within"), "must be greater than 0");
            }
            check_refs(format!("{key}.channels"), &l.channels)?;
        }
        for &sev in Severity::ALL {
            let s = self.escalation.severity.get(sev);
            let key = format!("escalation.severity.{sev}");
            if !(1..=MAX_LEVEL).contains(&s.start_level) {
                return err(format!("{key}.start_level"), "must be between 1 and 4");
            }
            if !s.time_factor.is_finite() || s.time_factor <= 0.0 {
                return err(
                    format!("{key}.time_factor"),
                    "must be a number greater than 0",
                );
            }
        }

        // monitor, regulatory
        if self.monitor.interval.is_zero() {
            return err("monitor.interval".into(), "must be greater than 0");
        }
        let r = &self.regulatory;
        for (k, d) in [
            ("default_within", r.default_within),
            ("death_within", r.death_within),
            ("widespread_within", r.widespread_within),
            (
                "critical_infrastructure_within",
                r.critical_infrastructure_within,
            ),
        ] {
            if d.is_zero() {
                return err(format!("regulatory.{k}"), "must be greater than 0");
            }
        }

        // documentation, containment
        if self.documentation.dir.as_os_str().is_empty() {
            return err("documentation.dir".into(), "must not be empty");
        }
        for (i, c) in self.containment.categories.iter().enumerate() {
            if ![
                "prompt_injection",
                "jailbreak",
                "data_exfiltration",
                "privilege_escalation",
                "data_access_attempt",
            ]
            .contains(&c.as_str())
            {
                return err(
                    format!("containment.categories[{i}]"),
                    "must be one of prompt_injection, jailbreak, data_exfiltration, privilege_escalation, data_access_attempt",
                );
            }
        }

        // keys, access, upstreams
        let k = &self.keys;
        for (name, d) in [
            ("learning_period", k.learning_period),
            ("rate_window", k.rate_window),
            ("baseline_window", k.baseline_window),
        ] {
            if d.is_zero() && name != "learning_period" {
                return err(format!("keys.{name}"), "must be greater than 0");
            }
        }
        if !k.spike_factor.is_finite() || k.spike_factor < 1.0 {
            return err("keys.spike_factor".into(), "must be a number of at least 1");
        }
        if let Err((key, m)) = self.access.validate() {
            return Err((format!("access.{key}"), m));
        }
        let c = &self.containment;
        if !(c.rate_limit_per_minute.is_finite() && c.rate_limit_per_minute > 0.0) {
            return err(
                "containment.rate_limit_per_minute".into(),
                "must be a number greater than 0",
            );
        }
        if !(c.rate_limit_burst.is_finite() && c.rate_limit_burst >= 1.0) {
            return err(
                "containment.rate_limit_burst".into(),
                "must be a number of at least 1",
            );
        }
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = format!("upstreams[{i}]");
            let n = u.name.trim();
            if n.is_empty() || n.len() > 64 {
                return err(format!("{key}.name"), "must be 1 to 64 characters");
            }
            if self.upstreams.iter().take(i).any(|o| o.name == u.name) {
                return err(format!("{key}.name"), "duplicates an earlier upstream name");
            }
            if u.interval.is_zero() || u.timeout.is_zero() {
                return err(
                    format!("{key}.interval"),
                    "interval and timeout must be greater than 0",
                );
            }
            let url_ok = |s: &str| s.starts_with("http://") || s.starts_with("https://");
            match u.kind {
                UpstreamKind::Http => {
                    if !u.url.as_deref().is_some_and(url_ok) {
                        return err(
                            format!("{key}.url"),
                            "an http upstream needs url = \"http(s)://…\"",
                        );
                    }
                    if reqwest_method_ok(&u.method).is_none() {
                        return err(
                            format!("{key}.method"),
                            "must be one of GET, HEAD, POST, PUT, OPTIONS",
                        );
                    }
                }
                UpstreamKind::Mcp => {
                    let has_url = u.url.as_deref().is_some_and(url_ok);
                    if has_url != u.command.is_empty() {
                        return err(
                            key,
                            "an mcp upstream needs exactly one of command = [\"prog\", \"arg\"…] (stdio) or url = \"http(s)://…/mcp\"",
                        );
                    }
                }
            }
        }

        // screening
        let s = &self.screening;
        let unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
        if !unit(s.flag_threshold) {
            return err("screening.flag_threshold".into(), "must be between 0 and 1");
        }
        if !unit(s.block_threshold) || s.block_threshold < s.flag_threshold {
            return err(
                "screening.block_threshold".into(),
                "must be between screening.flag_threshold and 1",
            );
        }
        if s.max_prompt_bytes == 0 {
            return err(
                "screening.max_prompt_bytes".into(),
                "must be greater than 0",
            );
        }

        // performance
        let p = &self.performance;
        for (k, d) in [
            ("llm_response_time", p.llm_response_time),
            ("tool_execution_time", p.tool_execution_time),
            ("system_response_time", p.system_response_time),
            ("window", p.window),
        ] {
            if d.is_zero() {
                return err(format!("performance.{k}"), "must be greater than 0");
            }
        }
        if !unit(p.error_rate) {
            return err(
                "performance.error_rate".into(),
                "must be a fraction between 0 and 1 (0.05 = 5 %)",
            );
        }
        if !unit(p.availability) {
            return err(
                "performance.availability".into(),
                "must be a fraction between 0 and 1 (0.99 = 99 %)",
            );
        }
        self.proxy.validate_upstreams()
    }
}

/// What the guard proxy does with a tool's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProxyPolicy {
    /// Record findings only; the call passes through unchanged (screened off the response path).
    #[default]
    Monitor,
    /// Pass the call through and add a warning content block to a result with findings.
    Flag,
    /// Refuse a call whose arguments, or answer with an `isError` result instead of a result
    /// whose content, has a flagged or blocked finding (with the incident id).
    Block,
}

/// What the proxy does with a tool whose definition changed or that appeared after pinning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ToolChangePolicy {
    /// Hide the tool from tools/list and refuse calls until `approve_catalog_change`.
    #[default]
    Hide,
    /// Open the incident but keep serving the tool.
    Allow,
}

/// `[proxy]`: the guard proxy between an agent and its MCP servers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Pins of the live tool lists (`proxy:<upstream>/<tool>` → hash); changes awaiting
    /// approval are kept beside it in `<pin_lock>.pending`.
    pub pin_lock: PathBuf,
    /// Policy of tools without an entry in `tools` (default monitor).
    pub default_policy: ProxyPolicy,
    /// Per-tool policy: `"<tool>"` or `"<upstream>/<tool>"` → monitor | flag | block.
    pub tools: std::collections::BTreeMap<String, ProxyPolicy>,
    /// A changed or new tool: hide it until approved (default) or allow it.
    pub on_tool_change: ToolChangePolicy,
    /// A call without an answer within this time gets an error and counts as a timeout.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// First wait before restarting a dead upstream; doubles per failed start.
    #[serde(with = "humantime_serde")]
    pub restart_backoff: Duration,
    /// Longest wait between restarts.
    #[serde(with = "humantime_serde")]
    pub restart_backoff_max: Duration,
    /// Findings and samples waiting to be written to the store (monitor mode never waits for
    /// the store); past this, the oldest samples are dropped first, findings are kept.
    pub queue_capacity: usize,
    /// Texts waiting for the `monitor`-mode screening threads; when full, the relay waits for
    /// room (backpressure) instead of dropping a text unscreened.
    pub screen_backlog: usize,
    /// Screening threads (lowest CPU priority, off the relay's runtime); 0: one per CPU.
    pub screen_threads: usize,
    /// How long a containment lookup is reused before the store is asked again.
    #[serde(with = "humantime_serde")]
    pub containment_refresh: Duration,
    /// The user the proxied agent acts for (containment and incidents), if known.
    pub user_id: Option<String>,
    /// The session of the proxied agent, if known.
    pub session_id: Option<String>,
    /// `[[proxy.upstreams]]`: the servers one proxy process aggregates when it is started
    /// without `--name` (tool and prompt names prefixed by `prefix`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<ProxyUpstream>,
}

/// Whether and how an aggregated upstream's tool and prompt names are prefixed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ProxyPrefix {
    /// `prefix = true`: `<name>__<tool>`; `false` (the default): the names as the upstream
    /// gives them.
    On(bool),
    /// `prefix = "crm_"`: this string before every name.
    Custom(String),
}

impl Default for ProxyPrefix {
    fn default() -> Self {
        ProxyPrefix::On(false)
    }
}

/// One `[[proxy.upstreams]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyUpstream {
    /// The upstream's name in incidents, metrics, pins and containment, e.g. `crm`.
    pub name: String,
    /// The program and its arguments (stdio upstream), e.g. `["python3", "crm_server.py"]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// A Streamable HTTP upstream, e.g. `http://127.0.0.1:9000/mcp` (instead of `command`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Prefix of its tool and prompt names: `true` (`<name>__`), a string, or `false`.
    #[serde(default)]
    pub prefix: ProxyPrefix,
    /// Policy of its tools, resources and prompts without an entry (else `[proxy] default_policy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_policy: Option<ProxyPolicy>,
    /// Per-tool policy of this upstream, by the upstream's own tool name (before the prefix);
    /// `"prompt:<name>"` and `"resource:<uri>"` set a prompt's or resource's policy.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tools: std::collections::BTreeMap<String, ProxyPolicy>,
}

impl ProxyUpstream {
    /// The string put before its tool and prompt names (empty: none).
    pub fn prefix_str(&self) -> String {
        match &self.prefix {
            ProxyPrefix::On(true) => format!("{}__", self.name),
            ProxyPrefix::On(false) => String::new(),
            ProxyPrefix::Custom(s) => s.clone(),
        }
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            pin_lock: PathBuf::from("./proxy-pins.lock.json"),
            default_policy: ProxyPolicy::Monitor,
            tools: Default::default(),
            on_tool_change: ToolChangePolicy::Hide,
            call_timeout: Duration::from_secs(60),
            restart_backoff: Duration::from_millis(500),
            restart_backoff_max: Duration::from_secs(30),
            queue_capacity: 10_000,
            screen_backlog: 4096,
            screen_threads: 0,
            containment_refresh: Duration::from_secs(1),
            user_id: None,
            session_id: None,
            upstreams: Vec::new(),
        }
    }
}

impl ProxyConfig {
    /// The policy of `tool` on `upstream`: the `[[proxy.upstreams]]` entry's `tools`, then
    /// `[proxy.tools]` `<upstream>/<tool>`, then `<tool>`, then the entry's `default_policy`,
    /// then `[proxy] default_policy`. Prompts and resources are looked up as `prompt:<name>`
    /// and `resource:<uri>`.
    pub fn policy(&self, upstream: &str, tool: &str) -> ProxyPolicy {
        let entry = self.upstreams.iter().find(|u| u.name == upstream);
        entry
            .and_then(|u| u.tools.get(tool))
            .or_else(|| self.tools.get(&format!("{upstream}/{tool}")))
            .or_else(|| self.tools.get(tool))
            .copied()
            .or_else(|| entry.and_then(|u| u.default_policy))
            .unwrap_or(self.default_policy)
    }

    /// Checks `[[proxy.upstreams]]`: names usable and unique, exactly one of `command` and
    /// `url`, and no two prefixes that make the same names. Returns `(key, what to fix)`.
    pub fn validate_upstreams(&self) -> Result<(), (String, String)> {
        let mut names = std::collections::BTreeSet::new();
        let mut prefixes: Vec<(String, String)> = Vec::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let key = format!("proxy.upstreams[{i}]");
            let ok = !u.name.is_empty()
                && u.name.len() <= 64
                && u.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err((
                    format!("{key}.name"),
                    format!(
                        "{:?}: give the upstream a name of 1 to 64 letters, digits, '-' or '_', e.g. crm",
                        u.name
                    ),
                ));
            }
            if !names.insert(u.name.clone()) {
                return Err((
                    format!("{key}.name"),
                    format!(
                        "\"{}\" is used by two upstreams; each needs its own name",
                        u.name
                    ),
                ));
            }
            match (u.command.is_empty(), &u.url) {
                (true, None) => {
                    return Err((
                        key,
                        format!(
                            "upstream \"{}\" has neither command = [...] nor url = \"http://…/mcp\"; give one",
                            u.name
                        ),
                    ));
                }
                (false, Some(_)) => {
                    return Err((
                        key,
                        format!("upstream \"{}\" has both command and url; give one", u.name),
                    ));
                }
                _ => {}
            }
            let p = u.prefix_str();
            if let Some((other, _)) = prefixes.iter().find(|(_, q)| *q == p && !p.is_empty()) {
                return Err((
                    format!("{key}.prefix"),
                    format!(
                        "upstreams \"{other}\" and \"{}\" both use the prefix \"{p}\"; give them different prefixes",
                        u.name
                    ),
                ));
            }
            prefixes.push((u.name.clone(), p));
        }
        Ok(())
    }
}

fn reqwest_method_ok(m: &str) -> Option<()> {
    ["GET", "HEAD", "POST", "PUT", "OPTIONS"]
        .contains(&m.trim().to_ascii_uppercase().as_str())
        .then_some(())
}

/// Deep-merge `overlay` into `base`: tables merge key by key, anything else replaces.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
