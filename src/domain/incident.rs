//! The incident domain: identifiers, severities, statuses with their legal
//! transitions, the 8-step response workflow, escalation levels, and the
//! events every change appends to the timeline.
//!
//! Owns the rules of what an incident may become; knows nothing of storage or
//! wire formats. May import: std, serde, chrono, uuid, email_address,
//! `crate::detect` (categories only).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::detect::Category;

/// A domain rule was broken; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// An input value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The argument or field to fix.
        field: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// The requested change is not allowed from the incident's current state.
    #[error("{0}")]
    Conflict(String),
    /// A background step no longer applies: the incident moved on since it was read (another
    /// process took the step, or it was acknowledged, reported or resolved meanwhile). Sweeps
    /// skip it; to a caller it is a conflict.
    #[error("{0}")]
    Superseded(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::Invalid {
        field,
        message: message.into(),
    }
}

/// An incident identifier such as `INC-20261126-3F9A1C2B`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IncidentId(String);

impl IncidentId {
    /// A fresh random id stamped with the day of `now`.
    pub fn generate(now: DateTime<Utc>) -> Self {
        let r = uuid::Uuid::new_v4().simple().to_string();
        let tail = r.get(..8).unwrap_or("00000000").to_ascii_uppercase();
        Self(format!("INC-{}-{tail}", now.format("%Y%m%d")))
    }
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `s` is an id exactly as [`IncidentId::from_str`] would return it (well formed,
    /// no surrounding space, upper case), so it can be used as it is without parsing a copy.
    pub fn is_canonical(s: &str) -> bool {
        well_formed(s) && !s.bytes().any(|b| b.is_ascii_lowercase())
    }
}

/// The shape of an id once trimmed and upper-cased: `INC-` and up to 60 letters, digits or `-`.
fn well_formed(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with("INC-")
        && s.len() > 4
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl FromStr for IncidentId {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        let s = up.as_str();
        if well_formed(s) {
            Ok(Self(up))
        } else {
            Err(invalid(
                "incident_id",
                format!(
                    "'{}' is not an incident id; ids look like INC-20261126-3F9A1C2B",
                    truncate_chars(s, 80)
                ),
            ))
        }
    }
}

impl TryFrom<String> for IncidentId {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}
impl From<IncidentId> for String {
    fn from(id: IncidentId) -> String {
        id.0
    }
}
impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The wire name.
            pub fn as_str(&self) -> &'static str { match self { $($name::$v => $s),+ } }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                let t = s.trim().to_ascii_lowercase();
                $(if t == $s { return Ok($name::$v); })+
                Err(format!("'{}' is not one of: {}", truncate_chars(s, 40),
                    [$($s),+].join(", ")))
            }
        }
    };
}

text_enum!(
    /// How bad an incident is; sets its response-time SLA.
    Severity { Critical = "critical", High = "high", Medium = "medium", Low = "low" }
);
text_enum!(
    /// What kind of incident this is (the spec's report types).
    IncidentType { Security = "security", Performance = "performance", DataQuality = "data_quality", Other = "other" }
);
text_enum!(
    /// Where an incident stands. Changes only through [`Incident`] methods.
    Status {
        /// Just opened; nobody has taken it.
        New = "new",
        /// A responder has taken it; the escalation clock stops.
        Acknowledged = "acknowledged",
        /// Its effect is stopped (user blocked, feature disabled, …).
        Contained = "contained",
        /// Root cause is being looked for.
        Investigating = "investigating",
        /// Fixed; awaiting documentation and closure.
        Resolved = "resolved",
        /// Documented and closed; no further change.
        Closed = "closed",
    }
);
text_enum!(
    /// The 8 steps of the response workflow (AIMS-IRP-001 §8.5.4.2), entered one at a time.
    WorkflowStep {
        Detection = "detection", Classification = "classification", Notification = "notification",
        Containment = "containment", Investigation = "investigation", Resolution = "resolution",
        Recovery = "recovery", Documentation = "documentation",
    }
);
text_enum!(
    /// How the incident came to be known.
    DetectionMethod { ManualReport = "manual_report", Screening = "screening", Monitoring = "monitoring" }
);

impl Severity {
    /// Numeric rank: low = 1 … critical = 4 (the order of [`Ord`]).
    pub fn rank(&self) -> u8 {
        match self {
            Severity::Low => 1,
            Severity::Medium => 2,
            Severity::High => 3,
            Severity::Critical => 4,
        }
    }
}

impl PartialOrd for Severity {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Low < medium < high < critical.
impl Ord for Severity {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl WorkflowStep {
    /// Position in the workflow, 0 (detection) to 7 (documentation).
    pub fn index(&self) -> usize {
        WorkflowStep::ALL
            .iter()
            .position(|s| s == self)
            .unwrap_or(0)
    }
}

impl Status {
    /// The statuses this one may move to.
    pub fn allowed_next(&self) -> &'static [Status] {
        use Status::*;
        match self {
            New => &[Acknowledged, Contained, Investigating, Resolved],
            Acknowledged => &[Contained, Investigating, Resolved],
            Contained => &[Investigating, Resolved],
            Investigating => &[Contained, Resolved],
            Resolved => &[Investigating, Closed],
            Closed => &[],
        }
    }
    /// Resolved or closed.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Status::Resolved | Status::Closed)
    }
}

/// A syntactically valid e-mail address (RFC 5322 addr-spec with a dotted domain).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for Email {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, DomainError> {
        let s = s.trim();
        let domain_ok = s
            .rsplit_once('@')
            .map(|(_, d)| {
                d.contains('.')
                    && !d.starts_with('[')
                    && d.rsplit('.').next().is_some_and(|tld| tld.len() >= 2)
            })
            .unwrap_or(false);
        if s.len() <= 254 && email_address::EmailAddress::is_valid(s) && domain_ok {
            Ok(Email(s.to_string()))
        } else {
            Err(invalid(
                "reporter_email",
                format!(
                    "'{}' is not a valid e-mail address; give one like oncall@example.com",
                    truncate_chars(s, 80)
                ),
            ))
        }
    }
}
impl TryFrom<String> for Email {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        s.parse()
    }
}
impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// One matched rule kept as evidence. The excerpt is capped and redacted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Rule id.
    pub rule: String,
    /// Attack category of the rule.
    pub category: String,
    /// Byte offset of the match start in the screened text.
    pub start: usize,
    /// Byte offset one past the match end.
    pub end: usize,
    /// Up to [`EXCERPT_MAX_CHARS`] characters around the match, secrets redacted.
    pub excerpt: String,
}

impl Evidence {
    /// Evidence of a finding that has no place in a screened text (a monitor's or detector's
    /// finding): `rule` and `category` as given, no span, the detail capped at
    /// [`EXCERPT_MAX_CHARS`].
    pub fn finding(rule: impl Into<String>, category: impl Into<String>, detail: &str) -> Self {
        Evidence {
            rule: rule.into(),
            category: category.into(),
            start: 0,
            end: 0,
            excerpt: truncate_chars(detail, EXCERPT_MAX_CHARS),
        }
    }
}

/// Longest excerpt of a prompt kept as evidence.
pub const EXCERPT_MAX_CHARS: usize = 160;

/// An escalation step, appended (never overwritten).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EscalationRecord {
    /// Level before.
    pub from: u8,
    /// Level after.
    pub to: u8,
    /// When.
    pub at: DateTime<Utc>,
    /// Why (manual reason, or SLA elapsed).
    pub reason: String,
    /// Who or what escalated.
    pub by: String,
}

/// When a workflow step was entered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The step.
    pub step: WorkflowStep,
    /// When it was entered.
    pub at: DateTime<Utc>,
}

/// Highest escalation level (executive).
pub const MAX_LEVEL: u8 = 4;

/// An AI incident.
///
/// Fields are private: every change goes through a method that checks the transition and
/// returns the events to append to the timeline; readers use the accessors of the same names.
/// The serde form is the storage body (and, until the views move to the edge, the tool output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    id: IncidentId,
    incident_type: IncidentType,
    /// For security incidents: the attack category (prompt_injection, jailbreak, …).
    category: Option<Category>,
    severity: Severity,
    status: Status,
    step: WorkflowStep,
    steps: Vec<StepRecord>,
    escalation_level: u8,
    escalation_history: Vec<EscalationRecord>,
    title: String,
    description: String,
    reporter: Option<String>,
    owner: Option<String>,
    affected_system: Option<String>,
    affected_user: Option<String>,
    affected_session: Option<String>,
    detection_method: DetectionMethod,
    confidence: Option<f32>,
    evidence: Vec<Evidence>,
    tags: Vec<String>,
    dedup_key: Option<String>,
    occurrences: u32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    acknowledged_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    root_cause: Option<String>,
    resolution: Option<String>,
    /// Who acknowledged the incident (stops the escalation clock).
    #[serde(default)]
    acknowledged_by: Option<String>,
    /// Corrective actions recorded during the response, oldest first.
    #[serde(default)]
    corrective_actions: Vec<String>,
    /// EU AI Act serious-incident block (Art. 3(49), Art. 73), when marked serious.
    #[serde(default)]
    serious: Option<SeriousIncident>,
    /// The procedure's incident kind (§8.5.2), finer than `incident_type`; keys the per-kind
    /// response time and the classification overrides.
    #[serde(default)]
    kind: Option<crate::domain::kind::IncidentKind>,
    /// When the timeline last recorded a `detected_again` for this incident (repeats in between
    /// only count; see [`Incident::record_repeat_throttled`]).
    #[serde(default)]
    repeat_logged_at: Option<DateTime<Utc>>,
}

/// The regulatory block of an incident marked serious (EU AI Act Art. 3(49) / Art. 73).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriousIncident {
    /// Category name (`death`, `health_harm`, `critical_infrastructure`, `fundamental_rights`,
    /// `property_or_environment`).
    pub category: String,
    /// The Art. 3(49) point, e.g. `3(49)(a)`.
    pub article_point: String,
    /// Widespread infringement (Art. 3(61)).
    pub widespread: bool,
    /// When the provider became aware.
    pub aware_at: DateTime<Utc>,
    /// Latest instant to report to the market surveillance authority.
    pub report_due_at: DateTime<Utc>,
    /// The deadline rule that applied (`general`, `death`, `widespread`, `critical_infrastructure`).
    pub rule: String,
    /// When the report was filed, if it was.
    pub reported_at: Option<DateTime<Utc>>,
    /// True once an approaching deadline has escalated the incident (done once).
    #[serde(default)]
    pub deadline_escalated: bool,
    /// True once the passed deadline was recorded as an `overdue` event (done once).
    #[serde(default)]
    pub overdue_recorded: bool,
}

/// Most evidence items kept on one incident (first ones plus the latest).
pub const MAX_EVIDENCE: usize = 12;

/// What a new incident is made from.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub incident_type: IncidentType,
    pub category: Option<Category>,
    pub severity: Severity,
    pub title: String,
    pub description: String,
    pub reporter: Option<String>,
    pub affected_system: Option<String>,
    pub affected_user: Option<String>,
    pub affected_session: Option<String>,
    pub detection_method: DetectionMethod,
    pub confidence: Option<f32>,
    pub evidence: Vec<Evidence>,
    pub tags: Vec<String>,
    pub dedup_key: Option<String>,
}

impl NewIncident {
    /// A report of `incident_type` at `severity`, found by `detection_method`, with everything
    /// else empty (no category, reporter, affected system/user/session, confidence, evidence,
    /// tags or dedup key). Callers add what they know with struct update syntax:
    /// `NewIncident { dedup_key: Some(k), ..NewIncident::new(..) }`.
    pub fn new(
        incident_type: IncidentType,
        severity: Severity,
        detection_method: DetectionMethod,
        title: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        NewIncident {
            incident_type,
            category: None,
            severity,
            title: title.into(),
            description: description.into(),
            reporter: None,
            affected_system: None,
            affected_user: None,
            affected_session: None,
            detection_method,
            confidence: None,
            evidence: Vec::new(),
            tags: Vec::new(),
            dedup_key: None,
        }
    }
}

/// Read access to every field (the names of the stored body).
impl Incident {
    /// The incident id.
    pub fn id(&self) -> &IncidentId {
        &self.id
    }
    /// The report type.
    pub fn incident_type(&self) -> IncidentType {
        self.incident_type
    }
    /// For security incidents: the attack category.
    pub fn category(&self) -> Option<Category> {
        self.category
    }
    /// Current severity.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// Current status.
    pub fn status(&self) -> Status {
        self.status
    }
    /// The workflow step entered last.
    pub fn step(&self) -> WorkflowStep {
        self.step
    }
    /// Every workflow step entered, in order.
    pub fn steps(&self) -> &[StepRecord] {
        &self.steps
    }
    /// Current escalation level (1 to [`MAX_LEVEL`]).
    pub fn escalation_level(&self) -> u8 {
        self.escalation_level
    }
    /// Every escalation, oldest first.
    pub fn escalation_history(&self) -> &[EscalationRecord] {
        &self.escalation_history
    }
    /// Short title.
    pub fn title(&self) -> &str {
        &self.title
    }
    /// Description as reported or generated.
    pub fn description(&self) -> &str {
        &self.description
    }
    /// The reporter's e-mail (manual reports).
    pub fn reporter(&self) -> Option<&str> {
        self.reporter.as_deref()
    }
    /// Who owns the response.
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    /// The affected system (upstream, file, key, …).
    pub fn affected_system(&self) -> Option<&str> {
        self.affected_system.as_deref()
    }
    /// The affected user id.
    pub fn affected_user(&self) -> Option<&str> {
        self.affected_user.as_deref()
    }
    /// The affected session id.
    pub fn affected_session(&self) -> Option<&str> {
        self.affected_session.as_deref()
    }
    /// How it came to be known.
    pub fn detection_method(&self) -> DetectionMethod {
        self.detection_method
    }
    /// Detector confidence (screening).
    pub fn confidence(&self) -> Option<f32> {
        self.confidence
    }
    /// Evidence kept (at most [`MAX_EVIDENCE`]).
    pub fn evidence(&self) -> &[Evidence] {
        &self.evidence
    }
    /// Tags (OWASP LLM Top 10, MITRE ATLAS, rule names, …).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }
    /// The deduplication key of detections.
    pub fn dedup_key(&self) -> Option<&str> {
        self.dedup_key.as_deref()
    }
    /// How many times it was detected.
    pub fn occurrences(&self) -> u32 {
        self.occurrences
    }
    /// When it was opened.
    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }
    /// When it last changed.
    pub fn updated_at(&self) -> DateTime<Utc> {
        self.updated_at
    }
    /// When it was last detected.
    pub fn last_seen_at(&self) -> DateTime<Utc> {
        self.last_seen_at
    }
    /// When a responder acknowledged it.
    pub fn acknowledged_at(&self) -> Option<DateTime<Utc>> {
        self.acknowledged_at
    }
    /// When it was resolved (cleared when reopened).
    pub fn resolved_at(&self) -> Option<DateTime<Utc>> {
        self.resolved_at
    }
    /// The root cause, once known.
    pub fn root_cause(&self) -> Option<&str> {
        self.root_cause.as_deref()
    }
    /// The resolution, once resolved.
    pub fn resolution(&self) -> Option<&str> {
        self.resolution.as_deref()
    }
    /// Who acknowledged it.
    pub fn acknowledged_by(&self) -> Option<&str> {
        self.acknowledged_by.as_deref()
    }
    /// Corrective actions, oldest first.
    pub fn corrective_actions(&self) -> &[String] {
        &self.corrective_actions
    }
    /// The EU AI Act serious-incident block, when marked serious.
    pub fn serious(&self) -> Option<&SeriousIncident> {
        self.serious.as_ref()
    }
    /// The procedure's incident kind.
    pub fn kind(&self) -> Option<crate::domain::kind::IncidentKind> {
        self.kind
    }
    /// When the last `detected_again` was put on the timeline.
    pub fn repeat_logged_at(&self) -> Option<DateTime<Utc>> {
        self.repeat_logged_at
    }
}

/// What a store keeps beside an incident's body, in columns of their own, so that a repeated
/// detection updates them without rewriting the body (issue #13): the repeat counters and the
/// last change time. The evidence is kept beside the body too, as rows
/// ([`Incident::take_evidence`], [`Incident::restore_stored`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counters {
    /// [`Incident::occurrences`].
    pub occurrences: u32,
    /// [`Incident::last_seen_at`].
    pub last_seen_at: DateTime<Utc>,
    /// [`Incident::updated_at`].
    pub updated_at: DateTime<Utc>,
    /// [`Incident::repeat_logged_at`].
    pub repeat_logged_at: Option<DateTime<Utc>>,
}

/// Storage only: splitting an incident into its body and what is kept beside it, and back.
impl Incident {
    /// The counters a store keeps in columns.
    pub fn counters(&self) -> Counters {
        Counters {
            occurrences: self.occurrences,
            last_seen_at: self.last_seen_at,
            updated_at: self.updated_at,
            repeat_logged_at: self.repeat_logged_at,
        }
    }

    /// Moves the evidence out (a store writes the body without it, then gives it back with
    /// [`Incident::restore_stored`] or [`Incident::put_evidence`]).
    pub fn take_evidence(&mut self) -> Vec<Evidence> {
        std::mem::take(&mut self.evidence)
    }

    /// Gives back the evidence [`Incident::take_evidence`] moved out.
    pub fn put_evidence(&mut self, evidence: Vec<Evidence>) {
        self.evidence = evidence;
    }

    /// The incident as stored: its body with the counters and evidence kept beside it.
    pub fn restore_stored(&mut self, c: Counters, evidence: Vec<Evidence>) {
        self.occurrences = c.occurrences;
        self.last_seen_at = c.last_seen_at;
        self.updated_at = c.updated_at;
        self.repeat_logged_at = c.repeat_logged_at;
        self.evidence = evidence;
    }
}

/// Changes made by the response workflow; each checks what it must and returns its events.
impl Incident {
    /// Marks the incident as changed at `now` (a change recorded by events of other objects,
    /// such as a containment, a delivery or a note).
    pub fn touch(&mut self, now: DateTime<Utc>) {
        self.updated_at = now;
    }

    /// A responder takes the incident: from `new` it moves to `acknowledged`; from a later open
    /// status only the acknowledgement is recorded. The responder becomes the owner when there
    /// is none. Stops the escalation clock.
    ///
    /// # Errors
    /// [`DomainError::Conflict`] when resolved/closed or already acknowledged.
    pub fn acknowledge(
        &mut self,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventKind>, DomainError> {
        if self.status.is_terminal() {
            return Err(DomainError::Conflict(format!(
                "incident {} is {}; only open incidents can be acknowledged",
                self.id, self.status
            )));
        }
        if let Some(at) = self.acknowledged_at {
            return Err(DomainError::Conflict(format!(
                "incident {} was already acknowledged by {} at {}; the escalation clock is stopped",
                self.id,
                self.acknowledged_by.as_deref().unwrap_or("someone"),
                at.to_rfc3339()
            )));
        }
        let mut ev = Vec::new();
        if self.status == Status::New {
            ev.push(self.transition(Status::Acknowledged, now)?);
        } else {
            self.acknowledged_at = Some(now);
            self.updated_at = now;
        }
        self.acknowledged_by = Some(by.to_string());
        if self.owner.is_none() {
            self.owner = Some(by.to_string());
        }
        ev.push(EventKind::Acknowledged { by: by.to_string() });
        Ok(ev)
    }

    /// Moves to status `to` on a responder's request (`by`): the transition, an implicit
    /// acknowledgement when nobody acknowledged an incident that stays open, and the workflow
    /// step the status stands for (contained → containment, investigating → investigation).
    ///
    /// # Errors
    /// [`DomainError::Conflict`] for an illegal transition (see [`Self::transition`]).
    pub fn change_status(
        &mut self,
        to: Status,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventKind>, DomainError> {
        let mut ev = vec![self.transition(to, now)?];
        if self.acknowledged_at.is_none() && !to.is_terminal() {
            self.acknowledged_at = Some(now);
            self.acknowledged_by = Some(by.to_string());
            ev.push(EventKind::Acknowledged { by: by.to_string() });
        }
        let step = match to {
            Status::Contained => Some(WorkflowStep::Containment),
            Status::Investigating => Some(WorkflowStep::Investigation),
            _ => None,
        };
        ev.extend(step.and_then(|s| self.enter_step(s, now)));
        Ok(ev)
    }

    /// Sets the severity a responder chose; `None` when it is already that.
    pub fn set_severity(&mut self, to: Severity, now: DateTime<Utc>) -> Option<EventKind> {
        if to == self.severity {
            return None;
        }
        self.severity = to;
        self.updated_at = now;
        Some(EventKind::FieldUpdated {
            field: "severity".into(),
            value: to.to_string(),
        })
    }

    /// Applies the classification policy's severity (the override of the reported one). The
    /// `classified` event the caller builds records both.
    pub fn apply_classified_severity(&mut self, severity: Severity) {
        self.severity = severity;
    }

    /// Starts a freshly opened incident at the level its classification requires (never lower
    /// than it is). Later raises go through [`Self::escalate`], which records history.
    pub fn start_at_level(&mut self, level: u8) {
        self.escalation_level = self.escalation_level.max(level.min(MAX_LEVEL));
    }

    /// Sets the owner.
    pub fn set_owner(&mut self, owner: String, now: DateTime<Utc>) -> EventKind {
        self.owner = Some(owner.clone());
        self.field_updated("owner", owner, now)
    }

    /// Records the root cause (replacing an earlier one).
    pub fn set_root_cause(&mut self, root_cause: String, now: DateTime<Utc>) -> EventKind {
        self.root_cause = Some(root_cause.clone());
        self.field_updated("root_cause", root_cause, now)
    }

    /// Appends a corrective action.
    pub fn add_corrective_action(&mut self, action: String, now: DateTime<Utc>) -> EventKind {
        self.corrective_actions.push(action.clone());
        self.field_updated("corrective_action", action, now)
    }

    fn field_updated(&mut self, field: &str, value: String, now: DateTime<Utc>) -> EventKind {
        self.updated_at = now;
        EventKind::FieldUpdated {
            field: field.into(),
            value,
        }
    }

    /// Adds `tag` unless present; true when added.
    pub fn add_tag(&mut self, tag: &str) -> bool {
        if self.tags.iter().any(|t| t == tag) {
            return false;
        }
        self.tags.push(tag.to_string());
        true
    }

    /// When the provider became aware of the incident for the regulatory clock: the instant it
    /// was first marked serious, or `now` when it is not marked yet.
    pub fn aware_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.serious.as_ref().map_or(now, |s| s.aware_at)
    }

    /// Marks the incident serious (or re-marks it with another category): the block's report
    /// deadline and rule are the caller's policy decision; awareness keeps its first instant and
    /// the reporting state starts afresh.
    pub fn mark_serious(&mut self, block: SeriousMarking, now: DateTime<Utc>) -> EventKind {
        let aware_at = self.aware_at(now);
        self.serious = Some(SeriousIncident {
            category: block.category.clone(),
            article_point: block.article_point.clone(),
            widespread: block.widespread,
            aware_at,
            report_due_at: block.report_due_at,
            rule: block.rule.clone(),
            reported_at: None,
            deadline_escalated: false,
            overdue_recorded: false,
        });
        self.updated_at = now;
        EventKind::MarkedSerious {
            category: block.category,
            article_point: block.article_point,
            widespread: block.widespread,
            report_due_at: block.report_due_at,
            rule: block.rule,
        }
    }

    /// Records that the regulatory report was filed at `now`.
    ///
    /// # Errors
    /// [`DomainError::Conflict`] when the incident is not marked serious.
    pub fn record_regulatory_report(
        &mut self,
        now: DateTime<Utc>,
    ) -> Result<EventKind, DomainError> {
        let Some(s) = self.serious.as_mut() else {
            return Err(DomainError::Conflict(format!(
                "incident {} is not marked serious; mark_serious first",
                self.id
            )));
        };
        s.reported_at = Some(now);
        self.updated_at = now;
        Ok(EventKind::FieldUpdated {
            field: "regulatory_reported_at".into(),
            value: now.to_rfc3339(),
        })
    }

    /// Escalates one level because the regulatory report deadline is near, and remembers that it
    /// did (done once per incident).
    ///
    /// # Errors
    /// As [`Self::escalate`].
    pub fn escalate_for_deadline(
        &mut self,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<EventKind, DomainError> {
        let ev = self.escalate(reason, by, now)?;
        if let Some(s) = self.serious.as_mut() {
            s.deadline_escalated = true;
        }
        Ok(ev)
    }
}

/// What marking an incident serious sets (see [`Incident::mark_serious`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SeriousMarking {
    /// Category name (`death`, `health_harm`, …).
    pub category: String,
    /// The Art. 3(49) point.
    pub article_point: String,
    /// Widespread infringement (Art. 3(61)).
    pub widespread: bool,
    /// Latest instant to report.
    pub report_due_at: DateTime<Utc>,
    /// The deadline rule that applied.
    pub rule: String,
}

impl Incident {
    /// Opens an incident at `now`: status `new`, step `detection`, level 1.
    /// Returns the incident and the events that record its creation.
    pub fn open(new: NewIncident, now: DateTime<Utc>) -> (Incident, Vec<EventKind>) {
        let inc = Incident {
            id: IncidentId::generate(now),
            incident_type: new.incident_type,
            category: new.category,
            severity: new.severity,
            status: Status::New,
            step: WorkflowStep::Detection,
            steps: vec![StepRecord {
                step: WorkflowStep::Detection,
                at: now,
            }],
            escalation_level: 1,
            escalation_history: Vec::new(),
            title: new.title,
            description: new.description,
            reporter: new.reporter,
            owner: None,
            affected_system: new.affected_system,
            affected_user: new.affected_user,
            affected_session: new.affected_session,
            detection_method: new.detection_method,
            confidence: new.confidence,
            evidence: new.evidence,
            tags: new.tags,
            dedup_key: new.dedup_key,
            occurrences: 1,
            created_at: now,
            updated_at: now,
            last_seen_at: now,
            acknowledged_at: None,
            resolved_at: None,
            root_cause: None,
            resolution: None,
            acknowledged_by: None,
            corrective_actions: Vec::new(),
            serious: None,
            kind: new
                .category
                .map(crate::domain::kind::IncidentKind::from_category),
            repeat_logged_at: None,
        };
        let ev = vec![EventKind::Created {
            incident_type: inc.incident_type,
            category: inc.category,
            severity: inc.severity,
            title: inc.title.clone(),
            detection_method: inc.detection_method,
            reporter: inc.reporter.clone(),
        }];
        (inc, ev)
    }

    /// Sets the incident kind (before classification, so its overrides and response time apply).
    pub fn set_kind(&mut self, kind: crate::domain::kind::IncidentKind) {
        self.kind = Some(kind);
    }

    /// Records a repeated detection like [`Incident::record_repeat`] (occurrences, last seen,
    /// evidence), but returns the `detected_again` event only when none was recorded within
    /// `every` — a standing finding seen on every monitor pass leaves one event per interval
    /// on the timeline, not one per pass.
    pub fn record_repeat_throttled(
        &mut self,
        evidence: Vec<Evidence>,
        every: std::time::Duration,
        now: DateTime<Utc>,
    ) -> Option<EventKind> {
        let ev = self.record_repeat(evidence, now);
        let since = self.repeat_logged_at.unwrap_or(self.created_at);
        let due = chrono::TimeDelta::from_std(every)
            .ok()
            .and_then(|d| since.checked_add_signed(d))
            .is_none_or(|t| now >= t);
        if due {
            self.repeat_logged_at = Some(now);
            Some(ev)
        } else {
            None
        }
    }

    /// Moves one escalation level up (1→4).
    ///
    /// # Errors
    /// [`DomainError::Conflict`] when already at level 4, or resolved/closed.
    pub fn escalate(
        &mut self,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<EventKind, DomainError> {
        if self.status.is_terminal() {
            return Err(DomainError::Conflict(format!(
                "incident {} is {}; escalation applies only to open incidents",
                self.id, self.status
            )));
        }
        if self.escalation_level >= MAX_LEVEL {
            return Err(DomainError::Conflict(format!(
                "incident {} is already at level {MAX_LEVEL} (executive), the highest level",
                self.id
            )));
        }
        let rec = EscalationRecord {
            from: self.escalation_level,
            to: self.escalation_level + 1,
            at: now,
            reason: reason.to_string(),
            by: by.to_string(),
        };
        self.escalation_level += 1;
        self.escalation_history.push(rec.clone());
        self.updated_at = now;
        Ok(EventKind::Escalated {
            from: rec.from,
            to: rec.to,
            reason: rec.reason,
            by: rec.by,
        })
    }

    /// Changes status if the transition is legal.
    ///
    /// # Errors
    /// [`DomainError::Conflict`] naming the allowed next statuses.
    pub fn transition(&mut self, to: Status, now: DateTime<Utc>) -> Result<EventKind, DomainError> {
        let from = self.status;
        if !from.allowed_next().contains(&to) {
            let allowed: Vec<&str> = from.allowed_next().iter().map(|s| s.as_str()).collect();
            return Err(DomainError::Conflict(format!(
                "incident {} cannot go from {from} to {to}; from {from} it may go to: {}",
                self.id,
                if allowed.is_empty() {
                    "nothing (it is closed)".to_string()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        self.status = to;
        self.updated_at = now;
        match to {
            Status::Acknowledged => self.acknowledged_at = Some(now),
            Status::Resolved => self.resolved_at = Some(now),
            Status::Investigating if from == Status::Resolved => self.resolved_at = None,
            _ => {}
        }
        Ok(EventKind::StatusChanged { from, to })
    }

    /// Raises severity by one level (no-op at critical).
    pub fn raise_severity(&mut self, reason: &str, now: DateTime<Utc>) -> Option<EventKind> {
        let to = match self.severity {
            Severity::Low => Severity::Medium,
            Severity::Medium => Severity::High,
            Severity::High | Severity::Critical => Severity::Critical,
        };
        if to == self.severity {
            return None;
        }
        let from = self.severity;
        self.severity = to;
        self.updated_at = now;
        Some(EventKind::SeverityChanged {
            from,
            to,
            reason: reason.to_string(),
        })
    }

    /// Resolves the incident, the one way every path does it (`resolve_incident`, the performance
    /// auto-resolve, an approved catalog change): the status change, the resolution (and the root
    /// cause when known; otherwise the one already recorded), the `resolved` event and the
    /// Resolution workflow step. The caller queues the `resolved` notifications.
    ///
    /// # Errors
    /// [`DomainError::Conflict`] when the current status cannot move to resolved.
    pub fn resolve(
        &mut self,
        resolution: String,
        root_cause: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<Vec<EventKind>, DomainError> {
        let mut ev = vec![self.transition(Status::Resolved, now)?];
        self.resolution = Some(resolution.clone());
        if root_cause.is_some() {
            self.root_cause = root_cause;
        }
        ev.push(EventKind::Resolved {
            resolution,
            root_cause: self.root_cause.clone().unwrap_or_default(),
        });
        ev.extend(self.enter_step(WorkflowStep::Resolution, now));
        Ok(ev)
    }

    /// Enters workflow `step` at `now` if it lies ahead of the current step and was not entered
    /// before. Steps only move forward, one event each; returns `None` when nothing changes.
    pub fn enter_step(&mut self, step: WorkflowStep, now: DateTime<Utc>) -> Option<EventKind> {
        if step.index() <= self.step.index() || self.steps.iter().any(|s| s.step == step) {
            return None;
        }
        self.step = step;
        self.steps.push(StepRecord { step, at: now });
        self.updated_at = now;
        Some(EventKind::StepEntered { step })
    }

    /// True when the incident is serious, unreported, past its reporting deadline at `now`, and
    /// that has not been recorded yet.
    pub fn overdue_unrecorded(&self, now: DateTime<Utc>) -> bool {
        self.serious.as_ref().is_some_and(|s| {
            s.reported_at.is_none() && !s.overdue_recorded && now >= s.report_due_at
        })
    }

    /// Records that the regulatory report deadline passed without a report (once per incident).
    ///
    /// # Errors
    /// [`DomainError::Conflict`] unless [`Self::overdue_unrecorded`] holds at `now`.
    pub fn record_overdue(&mut self, now: DateTime<Utc>) -> Result<EventKind, DomainError> {
        if !self.overdue_unrecorded(now) {
            return Err(DomainError::Superseded(format!(
                "incident {} has no unrecorded passed reporting deadline",
                self.id
            )));
        }
        let Some(s) = self.serious.as_mut() else {
            return Err(DomainError::Superseded(format!(
                "incident {} is not marked serious",
                self.id
            )));
        };
        s.overdue_recorded = true;
        self.updated_at = now;
        Ok(EventKind::Overdue {
            category: s.category.clone(),
            article_point: s.article_point.clone(),
            report_due_at: s.report_due_at,
        })
    }

    /// When the current escalation level was entered (the last escalation, or creation).
    pub fn level_entered_at(&self) -> DateTime<Utc> {
        self.escalation_history
            .last()
            .map_or(self.created_at, |r| r.at)
    }

    /// Records a repeated detection of the same thing (deduplication).
    pub fn record_repeat(&mut self, evidence: Vec<Evidence>, now: DateTime<Utc>) -> EventKind {
        self.occurrences = self.occurrences.saturating_add(1);
        self.last_seen_at = now;
        self.updated_at = now;
        let rules: Vec<String> = evidence.iter().map(|e| e.rule.clone()).collect();
        for e in evidence {
            self.push_evidence(e);
        }
        EventKind::DetectedAgain {
            occurrences: self.occurrences,
            rules,
        }
    }

    /// Adds one piece of evidence found later (e.g. where the guard proxy saw it), within the
    /// same bound as repeats.
    pub fn add_evidence(&mut self, e: Evidence, now: DateTime<Utc>) {
        self.push_evidence(e);
        self.updated_at = now;
    }

    fn push_evidence(&mut self, e: Evidence) {
        if self.evidence.len() >= MAX_EVIDENCE {
            // keep the first half as found, rotate the rest
            let keep = MAX_EVIDENCE / 2;
            if self.evidence.len() > keep {
                self.evidence.remove(keep);
            }
        }
        self.evidence.push(e);
    }
}

/// What happened, as recorded on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Created {
        incident_type: IncidentType,
        category: Option<Category>,
        severity: Severity,
        title: String,
        detection_method: DetectionMethod,
        reporter: Option<String>,
    },
    StatusChanged {
        from: Status,
        to: Status,
    },
    StepEntered {
        step: WorkflowStep,
    },
    Escalated {
        from: u8,
        to: u8,
        reason: String,
        by: String,
    },
    DetectedAgain {
        occurrences: u32,
        rules: Vec<String>,
    },
    Note {
        text: String,
    },
    SeverityChanged {
        from: Severity,
        to: Severity,
        reason: String,
    },
    Recovered {
        detail: String,
    },
    /// Classification policy applied (on creation or when type/severity changed).
    Classified {
        severity: Severity,
        reported_severity: Severity,
        response_sla_secs: u64,
        urgency: String,
        channels: Vec<String>,
        auto_escalation: bool,
        start_level: u8,
        overridden_by: Option<String>,
        /// The incident kind whose per-kind response time set `response_sla_secs`, when it
        /// was stricter than the severity's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sla_kind: Option<String>,
    },
    /// A responder took the incident; the escalation clock stops.
    Acknowledged {
        by: String,
    },
    /// A field was set (owner, root_cause, corrective_action, severity, …).
    FieldUpdated {
        field: String,
        value: String,
    },
    /// The incident was resolved.
    Resolved {
        resolution: String,
        root_cause: String,
    },
    /// A notification was stored in the outbox (same transaction as this event).
    NotificationQueued {
        notification_id: String,
        channel: String,
        event: String,
        level: u8,
        severity: Severity,
        title: String,
        body: String,
    },
    /// A delivery attempt finished: `status` is sent, retrying or failed.
    NotificationDelivery {
        notification_id: String,
        channel: String,
        status: String,
        attempt: u32,
        detail: Option<String>,
        next_attempt_at: Option<DateTime<Utc>>,
    },
    /// A containment took effect (e.g. a user blocked from screen_prompt).
    Contained {
        action: String,
        subject_kind: String,
        subject: String,
        reason: String,
    },
    /// A containment was lifted.
    ContainmentLifted {
        action: String,
        subject_kind: String,
        subject: String,
        reason: String,
    },
    /// Marked as a serious incident with a reporting deadline.
    MarkedSerious {
        category: String,
        article_point: String,
        widespread: bool,
        report_due_at: DateTime<Utc>,
        rule: String,
    },
    /// The regulatory reporting deadline passed without a report being filed.
    Overdue {
        category: String,
        article_point: String,
        report_due_at: DateTime<Utc>,
    },
    /// Post-incident documentation was written.
    Documented {
        json_path: String,
        markdown_path: String,
    },
}

impl EventKind {
    /// The short kind name (`created`, `escalated`, …).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created { .. } => "created",
            EventKind::StatusChanged { .. } => "status_changed",
            EventKind::StepEntered { .. } => "step_entered",
            EventKind::Escalated { .. } => "escalated",
            EventKind::DetectedAgain { .. } => "detected_again",
            EventKind::Note { .. } => "note",
            EventKind::SeverityChanged { .. } => "severity_changed",
            EventKind::Recovered { .. } => "recovered",
            EventKind::Classified { .. } => "classified",
            EventKind::Acknowledged { .. } => "acknowledged",
            EventKind::FieldUpdated { .. } => "field_updated",
            EventKind::Resolved { .. } => "resolved",
            EventKind::NotificationQueued { .. } => "notification_queued",
            EventKind::NotificationDelivery { .. } => "notification_delivery",
            EventKind::Contained { .. } => "contained",
            EventKind::ContainmentLifted { .. } => "containment_lifted",
            EventKind::MarkedSerious { .. } => "marked_serious",
            EventKind::Overdue { .. } => "overdue",
            EventKind::Documented { .. } => "documented",
        }
    }
}

/// A stored timeline event with its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the global chain (1, 2, 3, …).
    pub seq: i64,
    pub incident_id: IncidentId,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// The event body as stored (JSON text of [`EventKind`]).
    pub data: String,
    pub prev_hash: String,
    pub hash: String,
}

/// At most `n` characters of `s` (cut on a char boundary); a cut string ends in `…`, which
/// counts in `n`, so the result always fits a limit of `n` characters. The one copy: error
/// messages, evidence excerpts and notification texts all use it.
///
/// ```
/// use ai_incident_mcp::domain::incident::truncate_chars;
/// assert_eq!(truncate_chars("héllo", 3), "hé…");
/// assert_eq!(truncate_chars("héllo", 5), "héllo");
/// ```
pub fn truncate_chars(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        None => s.to_string(),
        Some(_) => {
            let keep = s
                .char_indices()
                .nth(n.saturating_sub(1))
                .map_or(s.len(), |(i, _)| i);
            format!("{}…", s.get(..keep).unwrap_or(""))
        }
    }
}

/// Assesses severity from a free-text description when the reporter gave none.
///
/// Rule (documented in `docs/severity.md`): whole words only (so "download"
/// is not "down"); the worst *impact* term found sets the level — critical for
/// breach/leak/compromise/outage/"down" of a system, high for security, attack,
/// injection, jailbreak, exposure, data loss, failing; medium for error, slow,
/// bug, problem; low for question, suggestion, typo, cosmetic. A *mitigating*
/// term (minor, small, "no impact", test) lowers the result by one level, and an
/// *amplifying* term (all users, production, customers, urgent) raises it by one.
/// With no impact term, the type's baseline applies (security high,
/// performance/data_quality medium, other low).
pub fn assess_severity(incident_type: IncidentType, description: &str) -> Severity {
    let lower = description.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |set: &[&str]| words.iter().any(|w| set.contains(w));
    let has_phrase = |set: &[&str]| set.iter().any(|p| contains_words(&words, p));

    const CRITICAL: &[&str] = &[
        "breach",
        "breached",
        "leak",
        "leaked",
        "leaking",
        "exfiltrated",
        "exfiltration",
        "compromised",
        "hacked",
        "ransomware",
        "outage",
        "emergency",
    ];
    const CRITICAL_PHRASES: &[&str] = &[
        "is down",
        "are down",
        "went down",
        "service down",
        "system down",
        "data loss",
        "stolen",
    ];
    const HIGH: &[&str] = &[
        "security",
        "attack",
        "injection",
        "jailbreak",
        "jailbroken",
        "exposed",
        "exposure",
        "unauthorized",
        "unauthorised",
        "malicious",
        "phishing",
        "credentials",
        "failing",
        "failed",
        "crash",
        "crashed",
        "serious",
        "important",
        "escalation",
        "pii",
    ];
    const MEDIUM: &[&str] = &[
        "error",
        "errors",
        "slow",
        "slowness",
        "bug",
        "problem",
        "issue",
        "latency",
        "timeout",
        "timeouts",
        "degraded",
        "wrong",
        "incorrect",
        "hallucination",
        "inaccurate",
    ];
    const LOW: &[&str] = &[
        "question",
        "suggestion",
        "typo",
        "cosmetic",
        "wording",
        "feedback",
    ];
    const MITIGATING: &[&str] = &["minor", "small", "slight", "slightly", "cosmetic", "test"];
    const MITIGATING_PHRASES: &[&str] = &["no impact", "not urgent", "low impact"];
    const AMPLIFYING: &[&str] = &[
        "production",
        "customers",
        "urgent",
        "widespread",
        "everyone",
    ];
    const AMPLIFYING_PHRASES: &[&str] = &["all users", "all customers", "every user"];

    let base = if has(CRITICAL) || has_phrase(CRITICAL_PHRASES) {
        Some(0u8)
    } else if has(HIGH) {
        Some(1)
    } else if has(MEDIUM) {
        Some(2)
    } else if has(LOW) {
        Some(3)
    } else {
        None
    };
    let mut rank = match base {
        Some(r) => r,
        None => match incident_type {
            IncidentType::Security => 1,
            IncidentType::Performance | IncidentType::DataQuality => 2,
            IncidentType::Other => 3,
        },
    };
    if has(MITIGATING) || has_phrase(MITIGATING_PHRASES) {
        rank = (rank + 1).min(3);
    } else if base.is_some() && (has(AMPLIFYING) || has_phrase(AMPLIFYING_PHRASES)) {
        rank = rank.saturating_sub(1);
    }
    match rank {
        0 => Severity::Critical,
        1 => Severity::High,
        2 => Severity::Medium,
        _ => Severity::Low,
    }
}

fn contains_words(words: &[&str], phrase: &str) -> bool {
    let p: Vec<&str> = phrase.split(' ').collect();
    !p.is_empty() && words.windows(p.len()).any(|w| w == p.as_slice())
}

/// A minimal report for unit tests (high-severity security incident, reported by hand); tests
/// change the fields they care about with `NewIncident { .., ..sample_new_incident() }`.
#[cfg(test)]
pub(crate) fn sample_new_incident() -> NewIncident {
    NewIncident::new(
        IncidentType::Security,
        Severity::High,
        DetectionMethod::ManualReport,
        "t",
        "d",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::UNIX_EPOCH
    }

    fn new_inc() -> Incident {
        Incident::open(sample_new_incident(), t0()).0
    }

    #[test]
    fn escalation_appends_history_and_stops_at_four() {
        let mut i = new_inc();
        for lvl in 2..=4 {
            i.escalate("r", "me", t0()).unwrap();
            assert_eq!(i.escalation_level, lvl);
        }
        assert_eq!(i.escalation_history.len(), 3);
        assert_eq!(i.escalation_history[0].from, 1);
        assert!(matches!(
            i.escalate("r", "me", t0()),
            Err(DomainError::Conflict(_))
        ));
        assert_eq!(i.escalation_history.len(), 3);
    }

    #[test]
    fn illegal_transition_is_refused_with_allowed_list() {
        let mut i = new_inc();
        let e = i.transition(Status::Closed, t0()).unwrap_err();
        assert!(e.to_string().contains("acknowledged"), "{e}");
        i.transition(Status::Resolved, t0()).unwrap();
        i.transition(Status::Closed, t0()).unwrap();
        assert!(i.transition(Status::Investigating, t0()).is_err());
        assert!(i.escalate("r", "me", t0()).is_err());
    }

    #[test]
    fn email_syntax() {
        for ok in ["a@example.com", "first.last+tag@sub.example.org"] {
            assert!(ok.parse::<Email>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@b.com",
            "a@b",
            "a b@c.com",
            "a@@b.com",
            "a@b.c",
        ] {
            assert!(bad.parse::<Email>().is_err(), "{bad}");
        }
    }

    #[test]
    fn incident_id_parse() {
        assert!("INC-20261126-3F9A1C2B".parse::<IncidentId>().is_ok());
        assert!("inc-20261126-3f9a1c2b".parse::<IncidentId>().is_ok());
        assert!("../etc/passwd".parse::<IncidentId>().is_err());
        assert!("INC-".parse::<IncidentId>().is_err());
    }

    #[test]
    fn severity_assessment_fixes_spec_keyword_order() {
        use IncidentType::*;
        let cases = [
            // the spec marks "download" as critical because it contains "down"
            (Other, "The download button label has a typo", Severity::Low),
            (
                Security,
                "customer data leaked through the chatbot",
                Severity::Critical,
            ),
            (
                Performance,
                "answers are slow this afternoon",
                Severity::Medium,
            ),
            (
                Security,
                "minor security question about logging",
                Severity::Medium,
            ),
            (
                Performance,
                "the assistant is down for all users",
                Severity::Critical,
            ),
            (Other, "a question about the export format", Severity::Low),
            (Security, "someone tried something odd", Severity::High),
            (
                DataQuality,
                "the report shows wrong totals in production",
                Severity::High,
            ),
        ];
        for (ty, text, want) in cases {
            assert_eq!(assess_severity(ty, text), want, "{text}");
        }
    }

    #[test]
    fn new_incident_constructor_leaves_everything_else_empty() {
        let n = NewIncident::new(
            IncidentType::Other,
            Severity::Low,
            DetectionMethod::Monitoring,
            "t",
            "d",
        );
        assert_eq!(
            (n.incident_type, n.severity, n.detection_method),
            (
                IncidentType::Other,
                Severity::Low,
                DetectionMethod::Monitoring
            )
        );
        assert_eq!((n.title.as_str(), n.description.as_str()), ("t", "d"));
        assert!(n.category.is_none() && n.reporter.is_none() && n.affected_system.is_none());
        assert!(n.affected_user.is_none() && n.affected_session.is_none());
        assert!(n.confidence.is_none() && n.dedup_key.is_none());
        assert!(n.evidence.is_empty() && n.tags.is_empty());
    }

    #[test]
    fn acknowledge_once_and_only_while_open() {
        let mut i = new_inc();
        let ev = i.acknowledge("ann", t0()).unwrap();
        assert_eq!(ev.len(), 2, "{ev:?}");
        assert_eq!(i.status(), Status::Acknowledged);
        assert_eq!(i.owner(), Some("ann"), "the responder becomes the owner");
        let again = i.acknowledge("bob", t0()).unwrap_err().to_string();
        assert!(again.contains("already acknowledged by ann"), "{again}");
        assert_eq!(i.acknowledged_by(), Some("ann"));

        let mut r = new_inc();
        r.resolve("fixed".into(), None, t0()).unwrap();
        assert!(r.acknowledge("ann", t0()).is_err());
        assert_eq!(r.acknowledged_at(), None);
    }

    #[test]
    fn change_status_acknowledges_implicitly_and_enters_the_step() {
        let mut i = new_inc();
        let ev = i.change_status(Status::Contained, "ops", t0()).unwrap();
        let names: Vec<&str> = ev.iter().map(EventKind::name).collect();
        assert_eq!(names, ["status_changed", "acknowledged", "step_entered"]);
        assert_eq!(i.acknowledged_by(), Some("ops"));
        assert_eq!(i.step(), WorkflowStep::Containment);
        // an illegal transition changes nothing
        let before = i.clone();
        assert!(i.change_status(Status::Closed, "ops", t0()).is_err());
        assert_eq!(i, before);
    }

    #[test]
    fn serious_marking_keeps_awareness_and_reporting_needs_a_marking() {
        let mut i = new_inc();
        assert!(i.record_regulatory_report(t0()).is_err());
        let mark = |due| SeriousMarking {
            category: "health_harm".into(),
            article_point: "3(49)(a)".into(),
            widespread: false,
            report_due_at: due,
            rule: "general".into(),
        };
        let later = t0() + chrono::Duration::days(1);
        i.mark_serious(mark(later), t0());
        i.record_regulatory_report(later).unwrap();
        assert_eq!(i.serious().unwrap().reported_at, Some(later));
        // re-marking keeps the first awareness instant and starts the reporting afresh
        i.mark_serious(mark(later), later);
        let s = i.serious().unwrap();
        assert_eq!((s.aware_at, s.reported_at), (t0(), None));
        assert_eq!(i.aware_at(later), t0());
    }

    #[test]
    fn tags_are_added_once_and_severity_changes_only_when_different() {
        let mut i = new_inc();
        assert!(i.add_tag("x"));
        assert!(!i.add_tag("x"));
        assert_eq!(i.tags(), ["x".to_string()]);
        assert!(i.set_severity(Severity::High, t0()).is_none());
        assert!(i.set_severity(Severity::Low, t0()).is_some());
        assert_eq!(i.severity(), Severity::Low);
    }

    #[test]
    fn truncate_is_char_safe() {
        assert_eq!(truncate_chars("héllo", 3), "hé…");
        assert_eq!(truncate_chars("héllo", 5), "héllo");
        assert_eq!(truncate_chars("hi", 5), "hi");
        assert_eq!(truncate_chars("abc", 1), "…");
        assert_eq!(truncate_chars("abc", 0), "…");
        assert_eq!(truncate_chars("", 0), "");
        for n in 0..8 {
            let t = truncate_chars("aé😀bcdéf", n);
            assert!(t.chars().count() <= n.max(1), "{n}: {t}");
        }
    }
}
