//! MCP tools of the incident lifecycle (issue #4). Each parses its arguments,
//! makes one `IncidentService` call and maps the result.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};

use super::dto::Args;
use super::lifecycle_dto::*;
use super::{IncidentMcp, ToolFailure};
use crate::service::{DocumentOutcome, UpdateInput};

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
                "mcp",
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
            .resolve(&a.incident_id, &a.resolution, &a.root_cause, "mcp")
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
            .contain(&a.incident_id, &a.action, a.reason, "mcp")
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
            .lift_containment(&a.incident_id, a.reason, "mcp")
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
                .document(&a.incident_id, a.close.unwrap_or(false), "mcp")
                .await?,
        ))
    }
}
