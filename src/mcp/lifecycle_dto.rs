//! Wire types of the lifecycle tools (issue #4): acknowledge, update, resolve,
//! contain / lift, document. Argument docs become the JSON Schema descriptions.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::domain::incident::Incident;

/// Arguments of `acknowledge_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeArgs {
    /// The incident id, e.g. INC-20261126-3F9A1C2B.
    pub incident_id: String,
    /// Who takes the incident (name or e-mail); becomes the owner if none is set.
    pub responder: String,
}

/// Arguments of `update_incident`. Give at least one field besides incident_id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncidentArgs {
    /// The incident id.
    pub incident_id: String,
    /// New status: contained, investigating or closed (use acknowledge_incident / resolve_incident
    /// for those two). Only legal transitions are accepted.
    #[schemars(extend("enum" = ["contained", "investigating", "closed"]))]
    pub status: Option<String>,
    /// New owner (name or e-mail).
    pub owner: Option<String>,
    /// A note for the timeline.
    pub note: Option<String>,
    /// The root cause as understood now.
    pub root_cause: Option<String>,
    /// A corrective action taken or planned (appended to the list).
    pub corrective_action: Option<String>,
    /// New severity; reclassifies the incident (SLA, channels, start level).
    #[schemars(extend("enum" = ["critical", "high", "medium", "low"]))]
    pub severity: Option<String>,
    /// Enter this workflow step explicitly (steps move forward only), e.g. recovery.
    #[schemars(extend("enum" = ["detection", "classification", "notification", "containment", "investigation", "resolution", "recovery", "documentation"]))]
    pub step: Option<String>,
    /// Mark as a serious incident (EU AI Act Art. 3(49)): death, health_harm,
    /// critical_infrastructure, fundamental_rights or property_or_environment. Sets report_due_at.
    #[schemars(extend("enum" = ["death", "health_harm", "critical_infrastructure", "fundamental_rights", "property_or_environment"]))]
    pub mark_serious: Option<String>,
    /// With mark_serious: a widespread infringement (Art. 3(61)), which shortens the deadline.
    pub widespread: Option<bool>,
    /// true once the Art. 73 report has been filed (stops the deadline escalation).
    pub regulatory_reported: Option<bool>,
}

/// Arguments of `resolve_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveArgs {
    /// The incident id.
    pub incident_id: String,
    /// What was done to fix it.
    pub resolution: String,
    /// Why it happened.
    pub root_cause: String,
}

/// Arguments of `contain_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainArgs {
    /// The incident id.
    pub incident_id: String,
    /// block_user (the incident's affected user_id), block_session (its session_id) or
    /// block_user_and_session: while blocked, screen_prompt returns block for them.
    /// revoke_key (the incident's API key: later use is evidence), rate_limit (its user or
    /// principal: a token bucket screen_prompt and record_access enforce), isolate_upstream
    /// (its upstream: the probes refuse it).
    #[schemars(extend("enum" = ["block_user", "block_session", "block_user_and_session",
        "revoke_key", "rate_limit", "isolate_upstream"]))]
    pub action: String,
    /// Why (kept on the timeline and returned by screen_prompt).
    pub reason: Option<String>,
}

/// Arguments of `lift_containment`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftArgs {
    /// The incident id.
    pub incident_id: String,
    /// Why the block is lifted.
    pub reason: Option<String>,
}

/// Arguments of `document_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentArgs {
    /// The incident id (must be resolved).
    pub incident_id: String,
    /// Also close the incident after documenting it (default false).
    pub close: Option<bool>,
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
            incident_id: i.id.to_string(),
            status: i.status.to_string(),
            severity: i.severity.to_string(),
            step: i.step.to_string(),
            steps: i
                .steps
                .iter()
                .map(|s| StepOut {
                    step: s.step.to_string(),
                    at: s.at,
                })
                .collect(),
            escalation_level: i.escalation_level,
            owner: i.owner.clone(),
            acknowledged_by: i.acknowledged_by.clone(),
            acknowledged_at: i.acknowledged_at,
            resolved_at: i.resolved_at,
            root_cause: i.root_cause.clone(),
            resolution: i.resolution.clone(),
            corrective_actions: i.corrective_actions.clone(),
            report_due_at: i.serious.as_ref().map(|s| s.report_due_at),
        }
    }
}
