//! `IncidentService`: every use case of the product, in one object. MCP tools, REST handlers,
//! the CLI and the background loop are thin adapters that parse input, call one method here and
//! map the result. This file holds the object, its errors and its ports (`Store`, `Notifier`,
//! `Clock`); each use-case group is a file beside it:
//! [`screening`], [`reporting`], [`lifecycle`], [`containment`], [`sweeps`], [`monitoring`],
//! [`audit`], and the usage detectors [`keys`] (API-key compromise), [`access`] (data breach) and
//! [`upstreams`] (LLM API / MCP protocol failures, through the `Prober` port), and [`guard`] (the
//! guard proxy's live traffic).
//!
//! May import: `crate::domain`, `crate::detect`, `crate::checks`, `crate::store`, `crate::notify`,
//! `crate::config`, `crate::metrics` (the recorder [`metered`] feeds). Never rmcp, axum or SQL crates.

pub mod access;
mod audit;
mod containment;
mod detectors;
pub mod guard;
pub mod keys;
mod lifecycle;
mod metered;
mod monitoring;
mod reporting;
mod screening;
mod sweeps;
pub mod upstreams;

pub use crate::domain::clock::Clock;
pub use crate::notify::Notifier;
pub use crate::store::Change;
pub use crate::store::Store;
pub use access::{AccessInput, AccessOutcome};
pub use audit::{load_public_key, load_signing_key};
pub use keys::{KeyUsageInput, KeyUsageOutcome};
pub use lifecycle::{CONTAIN_ACTIONS, DocumentOutcome, UpdateInput};
pub use monitoring::{
    CheckOutcome, DqOutcome, FindingOut, MetricsInput, MetricsOutcome, MonitorStatus, ViolationOut,
};
pub use screening::{FINGERPRINT_KEY_ENV, FingerprintKeySource, fingerprint_key};
pub use upstreams::{ProbeReport, Prober, UpstreamStatus};

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::detect::{Engine, Screening, Source};
use crate::domain::incident::{DomainError, IncidentId, Severity};
use crate::domain::incident::{EventKind, Incident};
use crate::domain::opening;
use crate::store::StoreError;

/// Seconds the surfaces ask a caller to wait before retrying when the store is unavailable
/// ([`ServiceError::Unavailable`]; REST and web send it as `Retry-After`).
pub const RETRY_AFTER_SECS: u32 = 5;

/// A use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The caller sent something to fix; the message says what.
    #[error("{field}: {message}")]
    Invalid {
        /// Which argument.
        field: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// No incident with that id.
    #[error("no incident with id {0}; list_incidents shows the ids that exist")]
    NotFound(String),
    /// The change is not allowed in the incident's current state.
    #[error("{0}")]
    Conflict(String),
    /// The database cannot be reached now (server down or restarting, connection refused,
    /// pool timeout); the same call may succeed later. Surfaces say
    /// "try again later" (REST 503 with `Retry-After`); the cause is logged, never shown.
    #[error("the incident store is unavailable right now; try again shortly")]
    Unavailable(#[source] StoreError),
    /// A fault on our side (database, I/O). Logged with its chain ([`error_chain`]); not shown
    /// in detail.
    #[error(transparent)]
    Internal(#[from] Fault),
}

/// What failed on our side, with its cause as `source()`.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// The store failed.
    #[error("the store failed")]
    Store(#[source] StoreError),
    /// A file could not be read or written; `what` names it.
    #[error("{what}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A value could not be encoded as JSON.
    #[error("cannot encode {what}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's answer.
        #[source]
        source: serde_json::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("a background task failed")]
    Task(#[from] tokio::task::JoinError),
    /// A pin lock file (data quality, upstream catalogs, the guard proxy) cannot be read or
    /// written; the pin error names the file.
    #[error("the pin lock cannot be used")]
    PinLock(#[from] crate::checks::dataquality::PinError),
    /// A lock was poisoned by a panicked thread; names the lock.
    #[error("the {0} lock was poisoned by a panicked thread")]
    Poisoned(String),
    /// A component below the service refused (pin lock, witness file, audit chain); the
    /// message is its own sentence.
    #[error("{0}")]
    Refused(String),
}

impl ServiceError {
    /// True when the caller can fix it (bad input, unknown id, illegal change).
    pub fn is_caller_error(&self) -> bool {
        !matches!(
            self,
            ServiceError::Internal(_) | ServiceError::Unavailable(_)
        )
    }

    /// True when the store could not be reached: the caller should try again later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, ServiceError::Unavailable(_))
    }
}

/// `e` and each of its causes, joined by `: ` — how a fault is logged (once, whole).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { field, message } => ServiceError::Invalid { field, message },
            DomainError::Conflict(m) | DomainError::Superseded(m) => ServiceError::Conflict(m),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ServiceError::NotFound(id.to_string()),
            StoreError::Domain(d) => d.into(),
            e @ StoreError::Unavailable { .. } => ServiceError::Unavailable(e),
            e => ServiceError::Internal(Fault::Store(e)),
        }
    }
}

/// Size limits applied to caller input.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest text `screen_prompt` accepts, in bytes.
    pub max_prompt_bytes: usize,
    /// Largest incident description, in bytes.
    pub max_description_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_prompt_bytes: 1024 * 1024,
            max_description_bytes: 64 * 1024,
        }
    }
}

/// A manual report, as received (strings are parsed here).
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub incident_type: String,
    pub description: String,
    pub reporter_email: String,
    pub severity: Option<String>,
    pub affected_system: Option<String>,
}

/// A screening request.
#[derive(Debug, Clone)]
pub struct ScreenInput {
    pub text: String,
    pub source: Source,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
}

/// A screening verdict and the incident it opened or updated, if any.
#[derive(Debug, Clone)]
pub struct ScreenOutcome {
    pub screening: Screening,
    pub incident_id: Option<IncidentId>,
    /// True when this call opened a new incident (false when deduplicated).
    pub incident_created: bool,
    /// True when this flagged call reached `screening.repeat_threshold` attempts by the same
    /// user (or session) within `screening.repeat_window`.
    pub repeat_threshold_reached: bool,
    /// `screening.flag_threshold` the verdict was decided with.
    pub flag_threshold: f32,
    /// The screened text with every credential replaced by `[REDACTED:<rule>:<fingerprint>]`,
    /// when the engine found one (so an agent can pass the text on safely).
    pub redacted_text: Option<String>,
}

impl ScreenOutcome {
    /// The categories whose score reached the flag threshold, highest first (the engine ranks
    /// every category; an `allow` lists none).
    pub fn flagged_categories(&self) -> Vec<crate::detect::Category> {
        self.screening
            .categories
            .iter()
            .filter(|c| c.score >= self.flag_threshold)
            .map(|c| c.category)
            .collect()
    }
}

/// Filters for listing, as received.
#[derive(Debug, Clone, Default)]
pub struct ListInput {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub incident_type: Option<String>,
    pub since: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub open_only: bool,
}

/// Default and largest page size of [`IncidentService::list`].
pub const LIST_DEFAULT: u32 = 20;
/// Largest page size.
pub const LIST_MAX: u32 = 200;

/// The use cases.
pub struct IncidentService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) notifier: Arc<dyn Notifier>,
    pub(crate) limits: Limits,
    pub(crate) config: Arc<Config>,
    pub(crate) outbox: sweeps::OutboxState,
    pub(crate) monitor: monitoring::MonitorState,
    pub(crate) monitoring: monitoring::MonitoringState,
    pub(crate) audit: audit::AuditState,
    pub(crate) detectors: detectors::DetectorState,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

impl IncidentService {
    /// Wires the service over its ports: where incidents live (`store`), how notifications
    /// leave (`notifier`) and what time it is (`clock`).
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
        notifier: Arc<dyn Notifier>,
        limits: Limits,
        config: Arc<Config>,
    ) -> Self {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store: Arc<dyn Store> = Arc::new(metered::MeteredStore::new(store, metrics.clone()));
        Self {
            store,
            metrics,
            engine,
            clock,
            notifier,
            limits,
            outbox: Default::default(),
            monitor: Default::default(),
            monitoring: monitoring::MonitoringState::new(perf_thresholds(&config)),
            audit: Default::default(),
            detectors: Default::default(),
            config,
        }
    }

    /// The acknowledge-by SLA for `severity`, from the classification policy.
    pub fn response_sla(&self, severity: Severity) -> std::time::Duration {
        self.config.classification.rule(severity).response_time
    }

    /// The acknowledge-by SLA of `inc`: the stricter of its severity's and its kind's response
    /// time (classification policy).
    pub fn response_sla_for(&self, inc: &Incident) -> std::time::Duration {
        opening::response_sla(self.config.rules(), inc)
    }

    /// What the background loop did last.
    pub fn monitor_status(&self) -> crate::service::MonitorStatus {
        self.monitor.snapshot()
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The screening engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

fn perf_thresholds(c: &Config) -> crate::checks::performance::PerfThresholds {
    let p = &c.performance;
    crate::checks::performance::PerfThresholds {
        llm_response_time: p.llm_response_time,
        tool_execution_time: p.tool_execution_time,
        system_response_time: p.system_response_time,
        error_rate: p.error_rate,
        availability: p.availability,
        window: p.window,
        recovery_after: p.recovery_after,
    }
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// Parses an optional caller field (`status`, `severity`, …); a bad value is
/// [`ServiceError::Invalid`] naming the field, with the parser's sentence.
pub(crate) fn parse_opt<T>(
    field: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, ServiceError>
where
    T: std::str::FromStr<Err = String>,
{
    value
        .map(|s| s.parse::<T>().map_err(|m| invalid(field, m)))
        .transpose()
}

pub(crate) fn conflict(message: impl Into<String>) -> DomainError {
    DomainError::Conflict(message.into())
}

pub(crate) fn clean(
    field: &'static str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, ServiceError> {
    match v.map(|s| s.trim().to_string()) {
        None => Ok(None),
        Some(s) if s.is_empty() => Err(invalid(field, "is empty; omit it or give a value")),
        Some(s) if s.len() > max => Err(invalid(field, format!("is longer than {max} bytes"))),
        Some(s) => Ok(Some(s)),
    }
}

/// Notification events built inside a store mutation (no service borrow needed).
pub(crate) struct NotificationBuilder {
    cfg: Arc<Config>,
}

impl NotificationBuilder {
    pub(crate) fn build(
        &self,
        inc: &mut Incident,
        event: &str,
        channels: &[String],
        now: DateTime<Utc>,
    ) -> Vec<EventKind> {
        opening::queue_notifications(self.cfg.rules(), inc, event, channels, now)
    }

    /// The one resolve use case, inside a store mutation: [`Incident::resolve`] and the
    /// `resolved` notifications to the severity's and the current level's channels.
    pub(crate) fn resolve(
        &self,
        inc: &mut Incident,
        resolution: String,
        root_cause: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventKind>, DomainError> {
        let mut ev = inc.resolve(resolution, root_cause, now)?;
        let mut ch = self
            .cfg
            .classification
            .rule(inc.severity())
            .channels
            .clone();
        if let Some(l) = self.cfg.escalation.level(inc.escalation_level()) {
            ch.extend(l.channels.iter().cloned());
        }
        ev.extend(self.build(inc, "resolved", &ch, now));
        Ok(ev)
    }
}
