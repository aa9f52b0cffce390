//! Wire views of incidents, written at the edge and shared by the MCP tools, the CLI and the
//! REST API: what a caller sees of an incident, its timeline and its state, independent of the
//! storage body. Field names and order are part of the public contract (the golden
//! `tools/list` test pins their schemas).
//!
//! May import: `crate::domain`, `crate::store::Page`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;

use crate::domain::incident::{Event, Incident};
use crate::domain::postmortem::ResponseMetrics;
use crate::store::Page;

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
    /// Minutes within which a responder must acknowledge (severity SLA).
    pub response_sla_minutes: i64,
    pub title: String,
    pub created_at: DateTime<Utc>,
}

impl ReportIncidentOutput {
    /// The view of a new incident; `response_sla` comes from the classification policy.
    pub fn new(i: &Incident, response_sla: std::time::Duration) -> Self {
        ReportIncidentOutput {
            incident_id: i.id().to_string(),
            incident_type: i.incident_type().to_string(),
            kind: i.kind().map(|k| k.as_str().to_string()),
            severity: i.severity().to_string(),
            status: i.status().to_string(),
            step: i.step().to_string(),
            escalation_level: i.escalation_level(),
            response_sla_minutes: (response_sla.as_secs() / 60) as i64,
            title: i.title().to_string(),
            created_at: i.created_at(),
        }
    }
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
    pub response: ResponseMetrics,
}

impl IncidentDetail {
    /// Builds the view from the incident, its timeline and the response
    /// measurements the service computed ([`crate::service::IncidentService::response_metrics`]).
    pub fn new(inc: Incident, tl: Vec<Event>, response: ResponseMetrics) -> Self {
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
            incident_id: i.id().to_string(),
            title: i.title().to_string(),
            incident_type: i.incident_type().to_string(),
            category: i.category().map(|c| c.as_str().to_string()),
            kind: i.kind().map(|k| k.as_str().to_string()),
            severity: i.severity().to_string(),
            status: i.status().to_string(),
            step: i.step().to_string(),
            escalation_level: i.escalation_level(),
            occurrences: i.occurrences(),
            created_at: i.created_at(),
            updated_at: i.updated_at(),
            report_due_at: i
                .serious()
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
            incident_id: i.id().to_string(),
            escalation_level: i.escalation_level(),
            escalation_history: i
                .escalation_history()
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

/// A workflow step and when it was entered.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StepOut {
    pub step: String,
    pub at: DateTime<Utc>,
}

/// The lifecycle state of an incident after a change.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IncidentStateOutput {
    pub incident_id: String,
    pub status: String,
    pub severity: String,
    /// Current workflow step.
    pub step: String,
    /// Steps entered so far, each time-stamped.
    pub steps: Vec<StepOut>,
    /// Escalation level 1-4.
    pub escalation_level: u8,
    pub owner: Option<String>,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub root_cause: Option<String>,
    pub resolution: Option<String>,
    pub corrective_actions: Vec<String>,
    /// EU AI Act reporting deadline, when marked serious.
    pub report_due_at: Option<DateTime<Utc>>,
}

impl From<&Incident> for IncidentStateOutput {
    fn from(i: &Incident) -> Self {
        IncidentStateOutput {
            incident_id: i.id().to_string(),
            status: i.status().to_string(),
            severity: i.severity().to_string(),
            step: i.step().to_string(),
            steps: i
                .steps()
                .iter()
                .map(|s| StepOut {
                    step: s.step.to_string(),
                    at: s.at,
                })
                .collect(),
            escalation_level: i.escalation_level(),
            owner: i.owner().map(str::to_string),
            acknowledged_by: i.acknowledged_by().map(str::to_string),
            acknowledged_at: i.acknowledged_at(),
            resolved_at: i.resolved_at(),
            root_cause: i.root_cause().map(str::to_string),
            resolution: i.resolution().map(str::to_string),
            corrective_actions: i.corrective_actions().to_vec(),
            report_due_at: i.serious().map(|s| s.report_due_at),
        }
    }
}
