//! Workflow tools: acknowledge, update, escalate, resolve, contain / lift, document; each
//! with its arguments beside it. Outputs are the shared [`crate::view`] types.
//!
//! May import: `crate::service`, `crate::view`.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Args;
use crate::mcp::{IncidentMcp, ToolFailure};
use crate::service::{DocumentOutcome, UpdateInput};
use crate::view::{EscalateOutput, IncidentStateOutput};

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

/// Arguments of `escalate_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateArgs {
    /// The incident id.
    pub incident_id: String,
    /// Why it is escalated (kept in the escalation history).
    pub reason: Option<String>,
}

#[tool_router(router = lifecycle_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Acknowledge an incident: a responder takes it. This stops the escalation clock (no further \
automatic escalation) and records time-to-acknowledge. Refused if it is already acknowledged, resolved or closed.",
        annotations(
            title = "Acknowledge incident",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn acknowledge_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<AcknowledgeArgs>>,
    ) -> Result<Json<IncidentStateOutput>, ToolFailure> {
        let inc = self.svc.acknowledge(&a.incident_id, &a.responder).await?;
        Ok(Json(IncidentStateOutput::from(&inc)))
    }

    #[tool(
        description = "Update an incident: status (contained, investigating, closed — legal transitions only), owner, \
note, root_cause, corrective_action, severity (reclassifies), step (enter a workflow step such as recovery), \
mark_serious (EU AI Act Art. 3(49) category; sets the Art. 73 report_due_at) and regulatory_reported. Every change \
is one timeline event. Illegal transitions are refused with the allowed ones named.",
        annotations(
            title = "Update incident",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn update_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<UpdateIncidentArgs>>,
    ) -> Result<Json<IncidentStateOutput>, ToolFailure> {
        let inc = self
            .svc
            .update_incident(
                &a.incident_id,
                UpdateInput {
                    status: a.status,
                    owner: a.owner,
                    note: a.note,
                    root_cause: a.root_cause,
                    corrective_action: a.corrective_action,
                    severity: a.severity,
                    step: a.step,
                    mark_serious: a.mark_serious,
                    widespread: a.widespread,
                    regulatory_reported: a.regulatory_reported,
                },
                &crate::mcp::principal::actor(),
            )
            .await?;
        Ok(Json(IncidentStateOutput::from(&inc)))
    }

    #[tool(
        description = "Resolve an incident with what fixed it (resolution) and why it happened (root_cause). Enters the \
resolution step, records time-to-resolve and notifies the incident's channels. Refused if already resolved or closed.",
        annotations(
            title = "Resolve incident",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn resolve_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<ResolveArgs>>,
    ) -> Result<Json<IncidentStateOutput>, ToolFailure> {
        let inc = self
            .svc
            .resolve(
                &a.incident_id,
                &a.resolution,
                &a.root_cause,
                &crate::mcp::principal::actor(),
            )
            .await?;
        Ok(Json(IncidentStateOutput::from(&inc)))
    }

    #[tool(
        description = "Contain an incident. block_user / block_session / block_user_and_session block its affected \
user_id and/or session_id (screen_prompt returns verdict block for them, with the reason in signals); revoke_key \
marks its API key revoked (later record_key_usage of it is evidence); rate_limit puts its user/principal on a token \
bucket that screen_prompt and record_access enforce; isolate_upstream stops the probes of its upstream. Reversible \
with lift_containment; recorded on the timeline.",
        annotations(
            title = "Contain incident",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn contain_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<ContainArgs>>,
    ) -> Result<Json<IncidentStateOutput>, ToolFailure> {
        let inc = self
            .svc
            .contain(
                &a.incident_id,
                &a.action,
                a.reason,
                &crate::mcp::principal::actor(),
            )
            .await?;
        Ok(Json(IncidentStateOutput::from(&inc)))
    }

    #[tool(
        description = "Lift every containment (user/session block) an incident imposed; screen_prompt screens them \
normally again. Recorded on the timeline. Refused when nothing is blocked.",
        annotations(
            title = "Lift containment",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn lift_containment(
        &self,
        Parameters(Args(a)): Parameters<Args<LiftArgs>>,
    ) -> Result<Json<IncidentStateOutput>, ToolFailure> {
        let inc = self
            .svc
            .lift_containment(&a.incident_id, a.reason, &crate::mcp::principal::actor())
            .await?;
        Ok(Json(IncidentStateOutput::from(&inc)))
    }

    #[tool(
        description = "Write the post-incident documentation of a resolved incident: \
incident_<id>_<yyyymmdd>.json (id, type, severity, detection/resolution time, description, timeline, response \
actions, root-cause analysis, lessons learned, recommendations) and a Markdown postmortem beside it, in the \
configured [documentation] dir. Lessons are computed from the real timeline (acknowledgement vs SLA, escalations, \
containment time). Enters the documentation step; close=true also closes the incident.",
        annotations(
            title = "Document incident",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn document_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<DocumentArgs>>,
    ) -> Result<Json<DocumentOutcome>, ToolFailure> {
        Ok(Json(
            self.svc
                .document(
                    &a.incident_id,
                    a.close.unwrap_or(false),
                    &crate::mcp::principal::actor(),
                )
                .await?,
        ))
    }

    #[tool(
        description = "Escalate an incident one level (1 technical support → 2 senior technical → 3 management + \
security → 4 executive). The step is appended to the escalation history. Refused at level 4 and on resolved or \
closed incidents.",
        annotations(
            title = "Escalate incident",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn escalate_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<EscalateArgs>>,
    ) -> Result<Json<EscalateOutput>, ToolFailure> {
        let inc = self
            .svc
            .escalate(&a.incident_id, a.reason, &crate::mcp::principal::actor())
            .await?;
        Ok(Json(EscalateOutput::from(&inc)))
    }
}
