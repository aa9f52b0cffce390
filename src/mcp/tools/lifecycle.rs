//! Workflow tools: acknowledge, update, escalate, resolve, contain / lift, document; each
//! with its arguments beside it. Outputs are the shared [`crate::view`] types.
//!
//! May import: `crate::service`, `crate::view`.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Args;
use crate::mcp::{IncidentMcp, ToolFailure};
use crate::service::UpdateInput;
use crate::view::{IncidentChange, severity_schema, step_schema};

/// Arguments of `acknowledge_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcknowledgeArgs {
    pub incident_id: String,
    /// Becomes the owner if none is set.
    pub responder: String,
}

/// Arguments of `update_incident`. Give at least one field besides incident_id.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateIncidentArgs {
    pub incident_id: String,
    #[schemars(extend("enum" = ["contained", "investigating", "closed"]))]
    pub status: Option<String>,
    pub owner: Option<String>,
    pub note: Option<String>,
    pub root_cause: Option<String>,
    pub corrective_action: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "severity_schema")]
    pub severity: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "step_schema")]
    pub step: Option<String>,
    /// EU AI Act Art. 3(49) category; sets report_due_at.
    #[schemars(extend("enum" = ["death", "health_harm", "critical_infrastructure", "fundamental_rights", "property_or_environment"]))]
    pub mark_serious: Option<String>,
    /// Art. 3(61).
    pub widespread: Option<bool>,
    /// The Art. 73 report is filed.
    pub regulatory_reported: Option<bool>,
}

/// Arguments of `resolve_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveArgs {
    pub incident_id: String,
    pub resolution: String,
    pub root_cause: String,
}

/// Arguments of `contain_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContainArgs {
    pub incident_id: String,
    /// Applies to the incident's own user, session, API key, principal or upstream.
    #[schemars(extend("enum" = ["block_user", "block_session", "block_user_and_session",
        "revoke_key", "rate_limit", "isolate_upstream"]))]
    pub action: String,
    pub reason: Option<String>,
}

/// Arguments of `lift_containment`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftArgs {
    pub incident_id: String,
    pub reason: Option<String>,
}

/// Arguments of `document_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentArgs {
    pub incident_id: String,
    /// Also close it (final).
    pub close: Option<bool>,
}

/// Result of `document_incident`: where the document was written. The document itself is the
/// `incident://{id}/postmortem` resource (Markdown), not repeated here.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DocumentWritten {
    pub json_path: String,
    pub markdown_path: String,
    /// Read this resource for the postmortem.
    pub postmortem_uri: String,
}

/// Arguments of `escalate_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateArgs {
    pub incident_id: String,
    pub reason: Option<String>,
}

#[tool_router(router = lifecycle_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Take an incident: stops automatic escalation, records time to acknowledge.",
        annotations(destructive_hint = false)
    )]
    async fn acknowledge_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<AcknowledgeArgs>>,
    ) -> Result<Json<IncidentChange>, ToolFailure> {
        let inc = self.svc.acknowledge(&a.incident_id, &a.responder).await?;
        Ok(Json(IncidentChange::from(&inc)))
    }

    #[tool(
        description = "Change status (legal transitions; closed is final), owner, note, root cause, corrective action, severity, step or serious marking.",
        annotations(destructive_hint = true)
    )]
    async fn update_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<UpdateIncidentArgs>>,
    ) -> Result<Json<IncidentChange>, ToolFailure> {
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
        Ok(Json(IncidentChange::from(&inc)))
    }

    #[tool(
        description = "Resolve an incident (records time to resolve, notifies its channels).",
        annotations(destructive_hint = false)
    )]
    async fn resolve_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<ResolveArgs>>,
    ) -> Result<Json<IncidentChange>, ToolFailure> {
        let inc = self
            .svc
            .resolve(
                &a.incident_id,
                &a.resolution,
                &a.root_cause,
                &crate::mcp::principal::actor(),
            )
            .await?;
        Ok(Json(IncidentChange::from(&inc)))
    }

    #[tool(
        description = "Block the incident's user/session (screen_prompt then blocks them), revoke its key, rate-limit its principal or isolate its upstream. Reversible.",
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn contain_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<ContainArgs>>,
    ) -> Result<Json<IncidentChange>, ToolFailure> {
        let inc = self
            .svc
            .contain(
                &a.incident_id,
                &a.action,
                a.reason,
                &crate::mcp::principal::actor(),
            )
            .await?;
        Ok(Json(IncidentChange::from(&inc)))
    }

    #[tool(
        description = "Lift every containment in force for an incident.",
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn lift_containment(
        &self,
        Parameters(Args(a)): Parameters<Args<LiftArgs>>,
    ) -> Result<Json<IncidentChange>, ToolFailure> {
        let inc = self
            .svc
            .lift_containment(&a.incident_id, a.reason, &crate::mcp::principal::actor())
            .await?;
        Ok(Json(IncidentChange::from(&inc)))
    }

    #[tool(
        description = "Write the postmortem of a resolved incident (JSON + Markdown in the documentation dir); close=true also closes it for good.",
        annotations(destructive_hint = true, open_world_hint = false)
    )]
    async fn document_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<DocumentArgs>>,
    ) -> Result<Json<DocumentWritten>, ToolFailure> {
        let out = self
            .svc
            .document(
                &a.incident_id,
                a.close.unwrap_or(false),
                &crate::mcp::principal::actor(),
            )
            .await?;
        Ok(Json(DocumentWritten {
            postmortem_uri: format!("incident://{}/postmortem", out.document.incident_id),
            json_path: out.json_path,
            markdown_path: out.markdown_path,
        }))
    }

    #[tool(
        description = "Escalate one level (1 technical, 2 senior, 3 management + security, 4 executive). Refused at level 4.",
        annotations(destructive_hint = false, open_world_hint = false)
    )]
    async fn escalate_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<EscalateArgs>>,
    ) -> Result<Json<IncidentChange>, ToolFailure> {
        let inc = self
            .svc
            .escalate(&a.incident_id, a.reason, &crate::mcp::principal::actor())
            .await?;
        Ok(Json(IncidentChange::from(&inc)))
    }
}
