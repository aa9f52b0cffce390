//! Wire views at the edge, shared by the MCP tools, the CLI and the REST API: what a caller sees
//! of an incident, its timeline, its state after a change, the audit result and a written
//! document, independent of the storage body and of the core types (which carry no
//! `JsonSchema`). Field names and order are part of the public contract (the golden `tools/list`
//! test pins their schemas). Optional fields are absent rather than `null`; closed sets are
//! enums built from the domain's own value lists.
//!
//! May import: `crate::domain`, `crate::store::Page`.

use chrono::{DateTime, Utc};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::Serialize;

use crate::domain::audit::AuditReport;
use crate::domain::incident::{Event, Incident, IncidentType, Severity, Status, WorkflowStep};
use crate::domain::kind::IncidentKind;
use crate::domain::postmortem::ResponseMetrics;
use crate::store::Page;

/// `{"type": "string", "enum": values}`.
pub fn string_enum<'a>(values: impl IntoIterator<Item = &'a str>) -> Schema {
    let v: Vec<&str> = values.into_iter().collect();
    json_schema!({ "type": "string", "enum": v })
}

/// Schema of a severity name.
pub fn severity_schema(_: &mut SchemaGenerator) -> Schema {
    string_enum(Severity::ALL.iter().map(Severity::as_str))
}
/// Schema of a status name.
pub fn status_schema(_: &mut SchemaGenerator) -> Schema {
    string_enum(Status::ALL.iter().map(Status::as_str))
}
/// Schema of a workflow step name.
pub fn step_schema(_: &mut SchemaGenerator) -> Schema {
    string_enum(WorkflowStep::ALL.iter().map(WorkflowStep::as_str))
}
/// Schema of an incident type name.
pub fn type_schema(_: &mut SchemaGenerator) -> Schema {
    string_enum(IncidentType::ALL.iter().map(IncidentType::as_str))
}
/// Schema of an incident kind name.
pub fn kind_schema(_: &mut SchemaGenerator) -> Schema {
    string_enum(IncidentKind::ALL.iter().map(|k| k.as_str()))
}
/// Schema of an escalation level.
pub fn level_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "integer", "minimum": 1, "maximum": 4 })
}

/// A time, RFC 3339 (`date-time`), without naming chrono in the schema.
pub fn time_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "type": "string", "format": "date-time" })
}

/// Result of `report_incident`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ReportIncidentOutput {
    pub incident_id: String,
    #[schemars(schema_with = "type_schema")]
    pub incident_type: String,
    /// Present when the report named a kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kind_schema")]
    pub kind: Option<String>,
    #[schemars(schema_with = "severity_schema")]
    pub severity: String,
    #[schemars(schema_with = "status_schema")]
    pub status: String,
    #[schemars(schema_with = "step_schema")]
    pub step: String,
    #[schemars(schema_with = "level_schema")]
    pub escalation_level: u8,
    /// Acknowledge within this many minutes (severity SLA).
    pub response_sla_minutes: i64,
    pub title: String,
    #[schemars(schema_with = "time_schema")]
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

/// One timeline event (free-form: its `event.kind` says which).
#[derive(Debug, Serialize)]
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

/// An incident with its timeline: a document (`get_incident`, `incident://{id}`), so it has no
/// schema; its parts are the stored incident, its events and the response measurements.
#[derive(Debug, Serialize)]
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
    #[schemars(schema_with = "type_schema")]
    pub incident_type: String,
    /// Attack category, for screening incidents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "kind_schema")]
    pub kind: Option<String>,
    #[schemars(schema_with = "severity_schema")]
    pub severity: String,
    #[schemars(schema_with = "status_schema")]
    pub status: String,
    #[schemars(schema_with = "step_schema")]
    pub step: String,
    #[schemars(schema_with = "level_schema")]
    pub escalation_level: u8,
    pub occurrences: u32,
    #[schemars(schema_with = "time_schema")]
    pub created_at: DateTime<Utc>,
    #[schemars(schema_with = "time_schema")]
    pub updated_at: DateTime<Utc>,
    /// Serious incidents: when the EU AI Act Art. 73 report is due (absent once reported).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "time_schema")]
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
    pub count: usize,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// An incident's state after a lifecycle change: the one result of `acknowledge_incident`,
/// `update_incident`, `escalate_incident`, `resolve_incident`, `contain_incident` and
/// `lift_containment`. Steps, history and times are in `get_incident`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IncidentChange {
    pub incident_id: String,
    #[schemars(schema_with = "status_schema")]
    pub status: String,
    #[schemars(schema_with = "severity_schema")]
    pub severity: String,
    /// Current workflow step.
    #[schemars(schema_with = "step_schema")]
    pub step: String,
    #[schemars(schema_with = "level_schema")]
    pub escalation_level: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// EU AI Act Art. 73 report deadline, when marked serious.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "time_schema")]
    pub report_due_at: Option<DateTime<Utc>>,
}

impl From<&Incident> for IncidentChange {
    fn from(i: &Incident) -> Self {
        IncidentChange {
            incident_id: i.id().to_string(),
            status: i.status().to_string(),
            severity: i.severity().to_string(),
            step: i.step().to_string(),
            escalation_level: i.escalation_level(),
            owner: i.owner().map(str::to_string),
            report_due_at: i.serious().map(|s| s.report_due_at),
        }
    }
}

/// One escalation step (the CLI's `escalate` output).
#[derive(Debug, Serialize)]
pub struct EscalationOut {
    pub from: u8,
    pub to: u8,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub by: String,
}

/// The escalation history of an incident (the CLI's `escalate` output).
#[derive(Debug, Serialize)]
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

/// Result of `verify_audit_log`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditOutput {
    /// True when the chain, the signed checkpoints (when configured) and the stored incident
    /// state all agree.
    pub ok: bool,
    pub events_checked: u64,
    /// Sequence number of the first event that fails.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_event: Option<i64>,
    /// What is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Signed-checkpoint check; absent when no witness file and key are configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointsOut>,
    /// Stored state vs. what the events imply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projection: Option<ProjectionOut>,
}

/// The witness-file check.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CheckpointsOut {
    pub ok: bool,
    pub file: String,
    /// Validly signed checkpoints read.
    pub checkpoints: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_seq: Option<i64>,
    /// Events not yet covered by a signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_after_latest: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The projection check (incident and containment rows vs. the timeline).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectionOut {
    pub ok: bool,
    pub incidents_checked: u64,
    pub mismatch_count: u64,
    /// The first mismatches.
    pub mismatches: Vec<MismatchOut>,
}

/// A stored value that differs from what the events imply.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MismatchOut {
    pub incident_id: String,
    /// status, severity, level, owner, resolution, containment or incident.
    pub field: String,
    /// Where it is stored, e.g. incidents.status.
    pub place: String,
    pub expected: String,
    pub found: String,
}

impl From<AuditReport> for AuditOutput {
    fn from(r: AuditReport) -> Self {
        AuditOutput {
            ok: r.ok,
            events_checked: r.events_checked,
            first_bad_event: r.first_bad_event,
            problem: r.problem,
            checkpoints: r.checkpoints.map(|c| CheckpointsOut {
                ok: c.ok,
                file: c.file,
                checkpoints: c.checkpoints,
                latest_seq: c.latest_seq,
                events_after_latest: c.events_after_latest,
                problem: c.problem,
            }),
            projection: r.projection.map(|p| ProjectionOut {
                ok: p.ok,
                incidents_checked: p.incidents_checked,
                mismatch_count: p.mismatch_count,
                mismatches: p
                    .mismatches
                    .into_iter()
                    .map(|m| MismatchOut {
                        incident_id: m.incident_id,
                        field: m.field,
                        place: m.place,
                        expected: m.expected,
                        found: m.found,
                    })
                    .collect(),
            }),
        }
    }
}
