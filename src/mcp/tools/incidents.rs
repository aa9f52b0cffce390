//! Reporting and reading tools: `report_incident`, `get_incident`, `list_incidents`,
//! `verify_audit_log`, with their arguments. Outputs are the shared [`crate::view`] types.
//!
//! May import: `crate::service`, `crate::view`, `crate::domain::audit`.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Args;
use crate::mcp::{IncidentMcp, ToolFailure};
use crate::service::{ListInput, ReportInput};
use crate::view::{IncidentDetail, ListIncidentsOutput, ReportIncidentOutput};

/// Arguments of `report_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIncidentArgs {
    /// A type (security, performance, data_quality, other) or one of the procedure's incident
    /// kinds, which also sets the kind's severity override and response time (data_breach is
    /// always critical; llm_api_failure must be answered within 5 minutes; see docs/detection.md).
    #[schemars(extend("enum" = ["security", "performance", "data_quality", "other",
        "prompt_injection", "jailbreak", "data_exfiltration", "privilege_escalation", "data_access_attempt", "secret_exposure",
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

/// Arguments naming one incident.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentIdArgs {
    /// The incident id, e.g. INC-20261126-3F9A1C2B.
    pub incident_id: String,
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

#[tool_router(router = incidents_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Report an AI incident (security, performance, data_quality or other). Needs a description and \
the reporter's e-mail. Without a severity, it is assessed from the description (whole-word impact terms, adjusted by \
mitigating/amplifying words; see docs/severity.md). Returns the new incident id, severity, status and SLA.",
        annotations(
            title = "Report incident",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn report_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<ReportIncidentArgs>>,
    ) -> Result<Json<ReportIncidentOutput>, ToolFailure> {
        let inc = self
            .svc
            .report(ReportInput {
                incident_type: a.incident_type,
                description: a.description,
                reporter_email: a.reporter_email,
                severity: a.severity,
                affected_system: a.affected_system,
            })
            .await?;
        Ok(Json(ReportIncidentOutput::new(
            &inc,
            self.svc.response_sla_for(&inc),
        )))
    }

    #[tool(
        description = "Get one incident with its full timeline (hash-chained events).",
        annotations(
            title = "Get incident",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn get_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<IncidentIdArgs>>,
    ) -> Result<Json<IncidentDetail>, ToolFailure> {
        let (inc, tl) = self.svc.get(&a.incident_id).await?;
        let response = self.svc.response_metrics(&inc, &tl);
        Ok(Json(IncidentDetail::new(inc, tl, response)))
    }

    #[tool(
        description = "List incidents, newest first, as compact summaries. Filter by status, severity, incident_type \
and since (RFC 3339). limit defaults to 20 (max 200); pass next_cursor back as cursor for the next page.",
        annotations(
            title = "List incidents",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_incidents(
        &self,
        Parameters(Args(a)): Parameters<Args<ListIncidentsArgs>>,
    ) -> Result<Json<ListIncidentsOutput>, ToolFailure> {
        let page = self
            .svc
            .list(ListInput {
                status: a.status,
                severity: a.severity,
                incident_type: a.incident_type,
                since: a.since,
                limit: a.limit,
                cursor: a.cursor,
                open_only: false,
            })
            .await?;
        Ok(Json(page.into()))
    }

    #[tool(
        description = "Verify the tamper-evident timeline: recomputes every event's SHA-256 chain link, compares \
the chain with the signed checkpoints in the witness file (when [audit] has a key), and checks that every incident's \
status, severity, level, owner, resolution and containments match what its events imply. ok=false names the first \
event that was edited, deleted or reordered, or lists each mismatching incident and field.",
        annotations(
            title = "Verify audit log",
            read_only_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn verify_audit_log(
        &self,
    ) -> Result<Json<crate::domain::audit::AuditReport>, ToolFailure> {
        Ok(Json(self.svc.verify_audit_log().await?))
    }
}
