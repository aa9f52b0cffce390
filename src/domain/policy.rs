//! Incident lifecycle policy: classification, escalation, regulatory deadlines and response-time metrics.
//!
//! This module owns the *decisions* of the incident lifecycle and nothing else. Every function is pure: no
//! I/O, no global clock. Whenever a decision depends on time it takes `now: DateTime<Utc>` (or the relevant
//! instants) as a parameter, so tests move a fake clock instead of sleeping.
//!
//! May import: `std`, `serde`, `chrono`, `humantime_serde`, `thiserror`. Must not import rmcp, axum, rusqlite,
//! sqlx, reqwest, anyhow or any storage / transport type.
//!
//! Fixes relative to the illustrative code in AIMS-IRP-001 §8.5.4–8.5.5:
//! - level 1 auto-escalates like every other level (the spec disabled auto-escalation at level 1, so an
//!   unacknowledged incident could sit there forever);
//! - escalation decisions return an [`EscalationStep`]; the incident *appends* it to its history
//!   ([`crate::domain::incident::Incident::escalate`]); nothing here overwrites history;
//! - one call decides one step — the 8-step workflow is not run here and nothing is marked resolved.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Highest escalation level (executive); one copy, in the incident module.
pub use crate::domain::incident::MAX_LEVEL;
/// Lowest escalation level (technical support).
pub const MIN_LEVEL: u8 = 1;

// ---------------------------------------------------------------------------------------------------------
// Severity
// ---------------------------------------------------------------------------------------------------------

/// The incident severity (one type for the whole crate: [`crate::domain::incident::Severity`]),
/// ordered low < medium < high < critical.
///
/// ```
/// use ai_incident_mcp::domain::policy::Severity;
/// assert_eq!(Severity::Medium.max(Severity::High), Severity::High);
/// ```
pub use crate::domain::incident::Severity;

/// A per-severity table of values (used for classification rules and escalation tuning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerSeverity<T> {
    /// Value for critical incidents.
    pub critical: T,
    /// Value for high-severity incidents.
    pub high: T,
    /// Value for medium-severity incidents.
    pub medium: T,
    /// Value for low-severity incidents.
    pub low: T,
}

impl<T> PerSeverity<T> {
    /// The value for `severity`.
    pub fn get(&self, severity: Severity) -> &T {
        match severity {
            Severity::Critical => &self.critical,
            Severity::High => &self.high,
            Severity::Medium => &self.medium,
            Severity::Low => &self.low,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Time helpers
// ---------------------------------------------------------------------------------------------------------

/// `t + d`, saturating at the largest representable instant instead of panicking.
pub fn add_duration(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|delta| t.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Multiply a duration by a positive factor; non-finite or non-positive factors leave it unchanged.
fn scale(d: Duration, factor: f64) -> Duration {
    if !factor.is_finite() || factor <= 0.0 {
        return d;
    }
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

// ---------------------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------------------

/// How urgently people must react (spec: "escalation_level" immediate / urgent / standard / routine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Drop everything.
    Immediate,
    /// Handle before other work.
    Urgent,
    /// Normal working priority.
    Standard,
    /// Next routine slot.
    Routine,
}

/// What the classification policy says about one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityRule {
    /// Acknowledge-by SLA measured from detection (e.g. "5m").
    #[serde(with = "humantime_serde")]
    pub response_time: Duration,
    /// Urgency label.
    pub urgency: Urgency,
    /// Notification channel names (must exist under `[[notify.channels]]`).
    pub channels: Vec<String>,
    /// Whether unacknowledged incidents climb the escalation levels automatically.
    pub auto_escalation: bool,
}

/// A rule that changes the severity of a given incident kind.
///
/// Exactly one of `severity` (force to this value) or `at_least` (raise to at least this value) is set;
/// [`TypeOverride::apply`] treats a rule with both as "force".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeOverride {
    /// Incident kind in snake_case, e.g. `data_breach`, `prompt_injection`.
    pub kind: String,
    /// Force the severity to exactly this value (may lower it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Raise the severity to at least this value (never lowers it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<Severity>,
}

impl TypeOverride {
    /// Apply this rule to `severity` (the caller has already matched `kind`).
    pub fn apply(&self, severity: Severity) -> Severity {
        match (self.severity, self.at_least) {
            (Some(forced), _) => forced,
            (None, Some(floor)) => severity.max(floor),
            (None, None) => severity,
        }
    }
}

/// Classification policy: severity → SLA, urgency, channels, auto-escalation; plus type overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassificationPolicy {
    /// Rules for critical incidents.
    pub critical: SeverityRule,
    /// Rules for high-severity incidents.
    pub high: SeverityRule,
    /// Rules for medium-severity incidents.
    pub medium: SeverityRule,
    /// Rules for low-severity incidents.
    pub low: SeverityRule,
    /// Type overrides, applied in order (the first rule whose `kind` matches wins).
    #[serde(default)]
    pub overrides: Vec<TypeOverride>,
    /// Per-kind response times (AIMS-IRP-001 §8.5.2), keyed by kind name (`llm_api_failure`,
    /// `data_breach`, …). The stricter of the kind's and the severity's response time applies.
    #[serde(default)]
    pub response_times: std::collections::BTreeMap<String, KindResponse>,
}

/// A kind's response time: a duration, or `"immediate"` (the fastest response time any
/// severity has, with urgency `immediate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindResponse {
    /// Respond at once: the smallest severity response time, urgency immediate.
    Immediate,
    /// Respond within this long.
    Within(Duration),
}

impl Serialize for KindResponse {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            KindResponse::Immediate => s.serialize_str("immediate"),
            KindResponse::Within(d) => {
                s.serialize_str(&humantime_serde::re::humantime::format_duration(*d).to_string())
            }
        }
    }
}

impl<'de> Deserialize<'de> for KindResponse {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = text.trim();
        if t.eq_ignore_ascii_case("immediate") {
            return Ok(KindResponse::Immediate);
        }
        humantime_serde::re::humantime::parse_duration(t)
            .map(KindResponse::Within)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "'{t}' is neither \"immediate\" nor a duration such as \"5m\": {e}"
                ))
            })
    }
}

impl ClassificationPolicy {
    /// The rule for `severity`.
    pub fn rule(&self, severity: Severity) -> &SeverityRule {
        match severity {
            Severity::Critical => &self.critical,
            Severity::High => &self.high,
            Severity::Medium => &self.medium,
            Severity::Low => &self.low,
        }
    }

    /// The response time configured for `kind` (matched case-insensitively), resolved to a
    /// duration: `immediate` is the smallest severity response time.
    pub fn kind_response_time(&self, kind: &str) -> Option<(Duration, bool)> {
        let k = kind.trim();
        let r = self
            .response_times
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(k))
            .map(|(_, r)| *r)?;
        Some(match r {
            KindResponse::Immediate => (
                Severity::ALL
                    .iter()
                    .map(|s| self.rule(*s).response_time)
                    .min()
                    .unwrap_or(self.critical.response_time),
                true,
            ),
            KindResponse::Within(d) => (d, false),
        })
    }

    /// The acknowledge-by SLA of an incident of `severity` and `kind`: the stricter (shorter)
    /// of the severity's and the kind's response time.
    ///
    /// ```
    /// use ai_incident_mcp::config::Config;
    /// use ai_incident_mcp::domain::policy::Severity;
    /// let p = Config::load(None).unwrap().classification;
    /// // medium is 60 min, but an LLM API failure must be answered within 5 (§8.5.2.2)
    /// assert_eq!(p.response_time_for(Severity::Medium, Some("llm_api_failure")).as_secs(), 300);
    /// assert_eq!(p.response_time_for(Severity::Medium, None).as_secs(), 3600);
    /// ```
    pub fn response_time_for(&self, severity: Severity, kind: Option<&str>) -> Duration {
        let sev = self.rule(severity).response_time;
        kind.and_then(|k| self.kind_response_time(k))
            .map_or(sev, |(d, _)| d.min(sev))
    }
}

/// Result of [`classify`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Severity after type overrides.
    pub severity: Severity,
    /// Severity as reported, before overrides.
    pub reported_severity: Severity,
    /// Acknowledge-by SLA measured from detection.
    #[serde(with = "humantime_serde")]
    pub response_sla: Duration,
    /// Urgency label.
    pub urgency: Urgency,
    /// Notification channel names.
    pub channels: Vec<String>,
    /// Whether the incident auto-escalates while unacknowledged.
    pub auto_escalation: bool,
    /// The `kind` of the override that changed the severity, if one did.
    pub overridden_by: Option<String>,
    /// True when the kind's response time (not the severity's) set `response_sla`.
    #[serde(default)]
    pub sla_from_kind: bool,
}

/// Classify an incident: apply the first matching type override, then look up the severity's rule.
///
/// `incident_kind` is matched case-insensitively against `TypeOverride::kind`.
///
/// ```
/// use ai_incident_mcp::config::Config;
/// use ai_incident_mcp::domain::policy::{classify, Severity};
/// let cfg = Config::load(None).unwrap();
/// let c = classify(Severity::Low, "data_breach", &cfg.classification);
/// assert_eq!(c.severity, Severity::Critical);
/// assert_eq!(c.response_sla, std::time::Duration::from_secs(300));
/// ```
pub fn classify(
    severity: Severity,
    incident_kind: &str,
    policy: &ClassificationPolicy,
) -> Classification {
    classify_with(severity, incident_kind, incident_kind, policy)
}

/// As [`classify`], with the overrides matched against `override_kind` and the per-kind response
/// time looked up for `response_kind` (an incident's kind may differ from the name an override
/// was written for, e.g. `security`).
pub fn classify_with(
    severity: Severity,
    override_kind: &str,
    response_kind: &str,
    policy: &ClassificationPolicy,
) -> Classification {
    let incident_kind = override_kind;
    let matched = policy
        .overrides
        .iter()
        .find(|o| o.kind.eq_ignore_ascii_case(incident_kind.trim()));
    let effective = matched.map_or(severity, |o| o.apply(severity));
    let overridden_by = matched
        .filter(|_| effective != severity)
        .map(|o| o.kind.clone());
    let rule = policy.rule(effective);
    let (response_sla, sla_from_kind, urgency) = match policy.kind_response_time(response_kind) {
        Some((d, immediate)) if d < rule.response_time => (
            d,
            true,
            if immediate {
                Urgency::Immediate
            } else {
                rule.urgency
            },
        ),
        Some((_, true)) => (rule.response_time, false, Urgency::Immediate),
        _ => (rule.response_time, false, rule.urgency),
    };
    Classification {
        severity: effective,
        reported_severity: severity,
        response_sla,
        urgency,
        channels: rule.channels.clone(),
        auto_escalation: rule.auto_escalation,
        overridden_by,
        sla_from_kind,
    }
}

/// Whether the acknowledge-by SLA is breached: acknowledged late, or still unacknowledged after the deadline.
pub fn sla_breached(
    detected_at: DateTime<Utc>,
    acknowledged_at: Option<DateTime<Utc>>,
    sla: Duration,
    now: DateTime<Utc>,
) -> bool {
    let due = add_duration(detected_at, sla);
    match acknowledged_at {
        Some(ack) => ack > due,
        None => now > due,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Escalation
// ---------------------------------------------------------------------------------------------------------

/// One escalation level (1 = technical support … 4 = executive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationLevel {
    /// Level number, 1..=4; levels must be listed in order.
    pub level: u8,
    /// Team name, e.g. "Technical support".
    pub name: String,
    /// How long this level has to acknowledge before the incident moves up (before the severity factor).
    #[serde(with = "humantime_serde")]
    pub respond_within: Duration,
    /// Notification channel names for this level.
    pub channels: Vec<String>,
}

/// How escalation treats one severity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityEscalation {
    /// Level a new incident of this severity starts at; also a floor the incident is raised to if its
    /// severity is raised later.
    pub start_level: u8,
    /// Multiplier applied to every level's `respond_within` (0.5 = twice as fast). Must be > 0.
    pub time_factor: f64,
}

/// Escalation policy: the four levels and per-severity start level / speed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    /// Exactly four levels, numbered 1..=4 in order.
    pub levels: Vec<EscalationLevel>,
    /// Start level and speed per severity.
    pub severity: PerSeverity<SeverityEscalation>,
}

impl EscalationPolicy {
    /// The level definition for `level`, if configured.
    pub fn level(&self, level: u8) -> Option<&EscalationLevel> {
        self.levels.iter().find(|l| l.level == level)
    }

    /// The configured name of `level` (`Technical Support`, …), or `level N` when unknown.
    pub fn level_name(&self, level: u8) -> String {
        self.level(level)
            .map_or_else(|| format!("level {level}"), |l| l.name.clone())
    }

    /// Effective time `level` has to respond for an incident of `severity` (respond_within × time_factor).
    pub fn window(&self, level: u8, severity: Severity) -> Option<Duration> {
        let base = self.level(level)?.respond_within;
        Some(scale(base, self.severity.get(severity).time_factor))
    }
}

/// Everything the escalation decision needs to know about an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationState {
    /// Current level, 1..=4.
    pub level: u8,
    /// When the incident entered the current level (its notification went out).
    pub level_entered_at: DateTime<Utc>,
    /// Someone acknowledged the incident: the escalation clock stops.
    pub acknowledged: bool,
    /// Resolved or closed: no more escalation of any kind.
    pub closed: bool,
    /// Current (post-classification) severity.
    pub severity: Severity,
    /// From [`Classification::auto_escalation`].
    pub auto_escalation: bool,
}

/// Why an escalation step is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationTrigger {
    /// The level's response window elapsed without acknowledgement.
    Timeout,
    /// The incident's severity requires a higher level than its current one.
    SeverityFloor,
    /// A person asked for it.
    Manual,
}

/// A decided escalation: from one level to a higher one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationStep {
    /// Level before the step.
    pub from: u8,
    /// Level after the step (always > `from`, ≤ 4).
    pub to: u8,
    /// Human-readable reason, suitable for the timeline.
    pub reason: String,
    /// When the step became due.
    pub due_at: DateTime<Utc>,
    /// What triggered it.
    pub trigger: EscalationTrigger,
}

/// The level a new incident of `severity` starts at (policy `start_level`, clamped to 1..=4).
///
/// ```
/// use ai_incident_mcp::config::Config;
/// use ai_incident_mcp::domain::policy::{initial_level, Severity};
/// let p = Config::load(None).unwrap().escalation;
/// assert_eq!(initial_level(Severity::Critical, &p), 2);
/// assert_eq!(initial_level(Severity::Low, &p), 1);
/// ```
pub fn initial_level(severity: Severity, policy: &EscalationPolicy) -> u8 {
    policy
        .severity
        .get(severity)
        .start_level
        .clamp(MIN_LEVEL, MAX_LEVEL)
}

/// When the next escalation becomes due, or `None` if the clock is stopped.
///
/// - closed → `None`;
/// - current level below the severity's start level (severity raised later) → due immediately
///   (`level_entered_at`), even when acknowledged;
/// - acknowledged, auto-escalation off, or already at level 4 → `None`;
/// - otherwise `level_entered_at + respond_within(level) × time_factor(severity)`.
pub fn next_deadline(state: &EscalationState, policy: &EscalationPolicy) -> Option<DateTime<Utc>> {
    if state.closed {
        return None;
    }
    if state.level < initial_level(state.severity, policy) {
        return Some(state.level_entered_at);
    }
    if state.acknowledged || !state.auto_escalation || state.level >= MAX_LEVEL {
        return None;
    }
    let window = policy.window(state.level.max(MIN_LEVEL), state.severity)?;
    Some(add_duration(state.level_entered_at, window))
}

/// Decide whether an escalation step is due at `now`. Returns at most one step; call again after
/// raising the level to catch up on several missed windows.
///
/// ```
/// use chrono::{TimeZone, Utc, Duration};
/// use ai_incident_mcp::config::Config;
/// use ai_incident_mcp::domain::policy::{escalation_due, EscalationState, Severity};
/// let p = Config::load(None).unwrap().escalation;
/// let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
/// let s = EscalationState {
///     level: 1, level_entered_at: t0, acknowledged: false, closed: false,
///     severity: Severity::High, auto_escalation: true,
/// };
/// assert!(escalation_due(&s, &p, t0 + Duration::minutes(14)).is_none());
/// let step = escalation_due(&s, &p, t0 + Duration::minutes(15)).unwrap();
/// assert_eq!((step.from, step.to), (1, 2));
/// ```
pub fn escalation_due(
    state: &EscalationState,
    policy: &EscalationPolicy,
    now: DateTime<Utc>,
) -> Option<EscalationStep> {
    let due_at = next_deadline(state, policy)?;
    if now < due_at {
        return None;
    }
    let from = state.level;
    let floor = initial_level(state.severity, policy);
    if from < floor {
        return Some(EscalationStep {
            from,
            to: floor,
            reason: format!(
                "{} severity requires at least level {floor} ({})",
                state.severity,
                policy.level_name(floor)
            ),
            due_at,
            trigger: EscalationTrigger::SeverityFloor,
        });
    }
    let to = from.saturating_add(1).min(MAX_LEVEL);
    if to <= from {
        return None;
    }
    let window = policy.window(from, state.severity).unwrap_or_default();
    Some(EscalationStep {
        from,
        to,
        reason: format!(
            "not acknowledged within {} at level {from} ({})",
            humantime_serde::re::humantime::format_duration(window),
            policy.level_name(from)
        ),
        due_at,
        trigger: EscalationTrigger::Timeout,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Regulatory deadlines (EU AI Act Art. 73)
// ---------------------------------------------------------------------------------------------------------

/// Serious-incident category per EU AI Act Art. 3(49). Point (a) is split so that death can carry its
/// shorter Art. 73(4) deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeriousCategory {
    /// Art. 3(49)(a): the death of a person (Art. 73(4): ≤ 10 days).
    Death,
    /// Art. 3(49)(a): serious harm to a person's health (Art. 73(2): ≤ 15 days).
    HealthHarm,
    /// Art. 3(49)(b): serious and irreversible disruption of the management or operation of critical
    /// infrastructure (Art. 73(3): ≤ 2 days).
    CriticalInfrastructure,
    /// Art. 3(49)(c): infringement of obligations under Union law intended to protect fundamental rights.
    FundamentalRights,
    /// Art. 3(49)(d): serious harm to property or the environment.
    PropertyOrEnvironment,
}

impl SeriousCategory {
    /// The Art. 3(49) point letter.
    pub fn article_point(self) -> &'static str {
        match self {
            SeriousCategory::Death | SeriousCategory::HealthHarm => "3(49)(a)",
            SeriousCategory::CriticalInfrastructure => "3(49)(b)",
            SeriousCategory::FundamentalRights => "3(49)(c)",
            SeriousCategory::PropertyOrEnvironment => "3(49)(d)",
        }
    }
}

/// Reporting-deadline rules (defaults from EU AI Act Art. 73(2)–(4)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegulatoryPolicy {
    /// Art. 73(2) general rule: after becoming aware (default 15 days).
    #[serde(with = "humantime_serde")]
    pub default_within: Duration,
    /// Art. 73(4): death of a person (default 10 days).
    #[serde(with = "humantime_serde")]
    pub death_within: Duration,
    /// Art. 73(3): widespread infringement (default 2 days).
    #[serde(with = "humantime_serde")]
    pub widespread_within: Duration,
    /// Art. 73(3): Art. 3(49)(b) critical-infrastructure disruption (default 2 days).
    #[serde(with = "humantime_serde")]
    pub critical_infrastructure_within: Duration,
}

/// Which rule produced a reporting deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadlineRule {
    /// Art. 73(2).
    General,
    /// Art. 73(4).
    Death,
    /// Art. 73(3), widespread infringement.
    Widespread,
    /// Art. 73(3), critical infrastructure.
    CriticalInfrastructure,
}

/// The reporting window for a serious incident and the rule that set it (the strictest applicable rule).
pub fn report_window(
    category: SeriousCategory,
    widespread: bool,
    policy: &RegulatoryPolicy,
) -> (Duration, DeadlineRule) {
    let mut best = (policy.default_within, DeadlineRule::General);
    let mut consider = |d: Duration, rule: DeadlineRule| {
        if d < best.0 {
            best = (d, rule);
        }
    };
    if category == SeriousCategory::Death {
        consider(policy.death_within, DeadlineRule::Death);
    }
    if category == SeriousCategory::CriticalInfrastructure {
        consider(
            policy.critical_infrastructure_within,
            DeadlineRule::CriticalInfrastructure,
        );
    }
    if widespread {
        consider(policy.widespread_within, DeadlineRule::Widespread);
    }
    best
}

/// Latest instant to report a serious incident to the market surveillance authority.
///
/// `aware_at` is when the provider became aware of the incident (or of the causal link). `widespread` marks a
/// widespread infringement (Art. 3(61)), which shortens the deadline to 2 days by default.
///
/// ```
/// use chrono::{TimeZone, Utc, Duration};
/// use ai_incident_mcp::config::Config;
/// use ai_incident_mcp::domain::policy::{report_due_at, SeriousCategory};
/// let p = Config::load(None).unwrap().regulatory;
/// let t = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
/// assert_eq!(report_due_at(SeriousCategory::Death, false, t, &p), t + Duration::days(10));
/// assert_eq!(report_due_at(SeriousCategory::FundamentalRights, true, t, &p), t + Duration::days(2));
/// ```
pub fn report_due_at(
    category: SeriousCategory,
    widespread: bool,
    aware_at: DateTime<Utc>,
    policy: &RegulatoryPolicy,
) -> DateTime<Utc> {
    add_duration(aware_at, report_window(category, widespread, policy).0)
}

#[cfg(test)]
mod tests;
