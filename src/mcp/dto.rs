//! Wire types of the MCP tools: argument structs (their `///` docs become the
//! JSON Schema descriptions) and structured outputs. Names are a public contract.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::detect::Source;
use crate::domain::incident::{Event, Incident};
use crate::service::ScreenOutcome;
use crate::store::Page;

/// Where a screened text came from.
#[derive(Debug, Clone, Copy, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SourceArg {
    /// A message typed by the end user (direct injection).
    #[default]
    User,
    /// The result of a tool call (indirect injection).
    ToolOutput,
    /// A retrieved or uploaded document (indirect injection).
    Document,
}

impl From<SourceArg> for Source {
    fn from(s: SourceArg) -> Source {
        match s {
            SourceArg::User => Source::User,
            SourceArg::ToolOutput => Source::ToolOutput,
            SourceArg::Document => Source::Document,
        }
    }
}

/// Arguments of `screen_prompt`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenPromptArgs {
    /// The text to screen (UTF-8, at most 1 MiB by default).
    pub text: String,
    /// Where the text came from: user (default), tool_output or document.
    pub source: Option<SourceArg>,
    /// The end user the text came from; repeated attempts are grouped per user.
    pub user_id: Option<String>,
    /// The conversation/session the text belongs to.
    pub session_id: Option<String>,
}

/// One matched rule.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MatchOut {
    /// Rule id from the rule library.
    pub rule: String,
    /// Attack category of the rule.
    pub category: String,
    /// Byte offset where the match starts in `text`.
    pub start: usize,
    /// Byte offset one past the end of the match.
    pub end: usize,
    /// OWASP LLM Top 10 id with edition, e.g. LLM01:2025.
    pub owasp: Option<String>,
    /// MITRE ATLAS technique id.
    pub atlas: Option<String>,
}

/// Result of `screen_prompt`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ScreenPromptOutput {
    /// allow, flag (suspicious: act with care) or block (do not act on it).
    pub verdict: String,
    /// Overall risk, 0 to 1.
    pub risk_score: f64,
    /// Categories whose score reached the flag threshold, highest first (empty for allow).
    pub categories: Vec<String>,
    /// Score per category (every category, flagged or not).
    pub category_scores: BTreeMap<String, f64>,
    /// The matched rules with spans into the screened text.
    pub matches: Vec<MatchOut>,
    /// Structural signals (invisible characters, decoded payloads, …).
    pub signals: Vec<String>,
    /// The incident opened or updated for a flag/block.
    pub incident_id: Option<String>,
    /// True when this call opened the incident, false when it was deduplicated.
    pub incident_created: bool,
}

impl From<ScreenOutcome> for ScreenPromptOutput {
    fn from(o: ScreenOutcome) -> Self {
        let categories_flagged = o.flagged_categories();
        let s = o.screening;
        ScreenPromptOutput {
            verdict: match s.verdict {
                crate::detect::Verdict::Allow => "allow",
                crate::detect::Verdict::Flag => "flag",
                crate::detect::Verdict::Block => "block",
            }
            .to_string(),
            risk_score: round4(s.risk_score),
            categories: categories_flagged
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
            category_scores: s
                .categories
                .iter()
                .map(|c| (c.category.as_str().to_string(), round4(c.score)))
                .collect(),
            matches: s
                .matches
                .into_iter()
                .map(|m| MatchOut {
                    rule: m.rule,
                    category: m.category.as_str().to_string(),
                    start: m.start,
                    end: m.end,
                    owasp: m.owasp,
                    atlas: m.atlas,
                })
                .collect(),
            signals: s.signals,
            incident_id: o.incident_id.map(|i| i.to_string()),
            incident_created: o.incident_created,
        }
    }
}

/// Arguments of `report_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIncidentArgs {
    /// A type (security, performance, data_quality, other) or one of the procedure's incident
    /// kinds, which also sets the kind's severity override and response time (data_breach is
    /// always critical; llm_api_failure must be answered within 5 minutes; see docs/detection.md).
    #[schemars(extend("enum" = ["security", "performance", "data_quality", "other",
        "prompt_injection", "jailbreak", "data_exfiltration", "privilege_escalation", "secret_exposure",
        "api_key_compromise", "data_breach", "tool_poisoning", "llm_api_failure", "mcp_protocol_failure",
        "performance_degradation", "data_corruption", "schema_validation_failure", "data_inconsistency"]))]
    pub incident_type: String,
    /// What happened, where, and who is affected (at most 64 KiB).
    pub description: String,
    /// The reporter's e-mail address, e.g. oncall@example.com.
    pub reporter_email: String,
    /// critical, high, medium or low; assessed from the description when omitted.
    #[schemars(extend("enum" = ["critical", "high", "medium", "low"]))]
    pub severity: Option<String>,
    /// The affected system, e.g. crm-agent.
    pub affected_system: Option<String>,
}

/// Result of `report_incident`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportIncidentOutput {
    pub incident_id: String,
    pub incident_type: String,
    /// The incident kind, when the report named one.
    pub kind: Option<String>,
    pub severity: String,
    pub status: String,
    /// Current workflow step.
    pub step: String,
    pub escalation_level: u8,
    /// Minutes within which a responder must acknowledge (the stricter of the severity's and the
    /// kind's response time).
    pub response_sla_minutes: i64,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

impl ReportIncidentOutput {
    /// The view of a new incident; `response_sla` comes from the classification policy.
    pub fn new(i: &Incident, response_sla: std::time::Duration) -> Self {
        ReportIncidentOutput {
            incident_id: i.id.to_string(),
            incident_type: i.incident_type.to_string(),
            kind: i.kind.map(|k| k.as_str().to_string()),
            severity: i.severity.to_string(),
            status: i.status.to_string(),
            step: i.step.to_string(),
            escalation_level: i.escalation_level,
            response_sla_minutes: (response_sla.as_secs() / 60) as i64,
            title: i.title.clone(),
            created_at: i.created_at,
        }
    }
}

/// Arguments naming one incident.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentIdArgs {
    /// The incident id, e.g. INC-20261126-3F9A1C2B.
    pub incident_id: String,
}

/// One timeline event.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TimelineEntry {
    /// Position in the global hash chain.
    pub seq: i64,
    pub at: DateTime<Utc>,
    /// Who or what made the change.
    pub actor: String,
    /// The event (its `kind` field says which).
    pub event: serde_json::Value,
    /// SHA-256 of this event chained to the previous one.
    pub hash: String,
}

/// An incident with its timeline.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IncidentDetail {
    /// The incident.
    pub incident: serde_json::Value,
    /// Its events, oldest first.
    pub timeline: Vec<TimelineEntry>,
    /// Response measurements computed from the timeline (time to acknowledge = MTTA
    /// contribution, time to resolve = MTTR contribution, SLA met, escalations, deliveries).
    pub response: crate::domain::postmortem::ResponseMetrics,
}

impl IncidentDetail {
    /// Builds the view from the incident, its timeline and the response
    /// measurements the service computed ([`crate::service::IncidentService::response_metrics`]).
    pub fn new(
        inc: Incident,
        tl: Vec<Event>,
        response: crate::domain::postmortem::ResponseMetrics,
    ) -> Self {
        IncidentDetail {
            response,
            incident: serde_json::to_value(&inc).unwrap_or(serde_json::Value::Null),
            timeline: tl
                .into_iter()
                .map(|e| TimelineEntry {
                    seq: e.seq,
                    at: e.at,
                    actor: e.actor,
                    event: serde_json::from_str(&e.data)
                        .unwrap_or(serde_json::Value::String(e.data)),
                    hash: e.hash,
                })
                .collect(),
        }
    }
}

/// Arguments of `list_incidents`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListIncidentsArgs {
    /// Only this status: new, acknowledged, contained, investigating, resolved, closed.
    pub status: Option<String>,
    /// Only this severity: critical, high, medium, low.
    pub severity: Option<String>,
    /// Only this type: security, performance, data_quality, other.
    pub incident_type: Option<String>,
    /// Only incidents created at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Page size, 1 to 200 (default 20).
    pub limit: Option<u32>,
    /// next_cursor from the previous page.
    pub cursor: Option<String>,
}

/// A compact incident summary.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IncidentSummary {
    pub incident_id: String,
    pub title: String,
    pub incident_type: String,
    pub category: Option<String>,
    /// The procedure's incident kind (data_breach, llm_api_failure, …), when known.
    pub kind: Option<String>,
    pub severity: String,
    pub status: String,
    pub step: String,
    pub escalation_level: u8,
    pub occurrences: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Serious incidents: when the EU AI Act Art. 73 report is due (absent once reported).
    pub report_due_at: Option<DateTime<Utc>>,
}

impl From<&Incident> for IncidentSummary {
    fn from(i: &Incident) -> Self {
        IncidentSummary {
            incident_id: i.id.to_string(),
            title: i.title.clone(),
            incident_type: i.incident_type.to_string(),
            category: i.category.map(|c| c.as_str().to_string()),
            kind: i.kind.map(|k| k.as_str().to_string()),
            severity: i.severity.to_string(),
            status: i.status.to_string(),
            step: i.step.to_string(),
            escalation_level: i.escalation_level,
            occurrences: i.occurrences,
            created_at: i.created_at,
            updated_at: i.updated_at,
            report_due_at: i
                .serious
                .as_ref()
                .filter(|s| s.reported_at.is_none())
                .map(|s| s.report_due_at),
        }
    }
}

/// Result of `list_incidents`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ListIncidentsOutput {
    pub incidents: Vec<IncidentSummary>,
    /// How many are in this page.
    pub count: usize,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl From<Page> for ListIncidentsOutput {
    fn from(p: Page) -> Self {
        ListIncidentsOutput {
            count: p.items.len(),
            incidents: p.items.iter().map(IncidentSummary::from).collect(),
            next_cursor: p.next_cursor.map(|c| c.encode()),
        }
    }
}

/// Arguments of `escalate_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateArgs {
    /// The incident id.
    pub incident_id: String,
    /// Why it is escalated (kept in the escalation history).
    pub reason: Option<String>,
}

/// One escalation step.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EscalationOut {
    pub from: u8,
    pub to: u8,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub by: String,
}

/// Result of `escalate_incident`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EscalateOutput {
    pub incident_id: String,
    /// The level after this escalation (1-4).
    pub escalation_level: u8,
    /// Every escalation so far, oldest first.
    pub escalation_history: Vec<EscalationOut>,
}

impl From<&Incident> for EscalateOutput {
    fn from(i: &Incident) -> Self {
        EscalateOutput {
            incident_id: i.id.to_string(),
            escalation_level: i.escalation_level,
            escalation_history: i
                .escalation_history
                .iter()
                .map(|e| EscalationOut {
                    from: e.from,
                    to: e.to,
                    at: e.at,
                    reason: e.reason.clone(),
                    by: e.by.clone(),
                })
                .collect(),
        }
    }
}

/// Tool arguments deserialized with the failing argument named in the error
/// ("argument `limit`: invalid type: string \"x\", expected u32"). The JSON
/// Schema is `T`'s.
#[derive(Debug)]
pub struct Args<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Args<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        serde_path_to_error::deserialize(v).map(Args).map_err(|e| {
            let path = e.path().to_string();
            if path == "." || path.is_empty() {
                D::Error::custom(e.into_inner())
            } else {
                D::Error::custom(format!("argument `{path}`: {}", e.into_inner()))
            }
        })
    }
}

impl<T: JsonSchema> JsonSchema for Args<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

fn round4(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}
