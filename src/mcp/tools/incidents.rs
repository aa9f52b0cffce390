//! Reporting and reading tools: `report_incident`, `get_incident`, `list_incidents`,
//! `verify_audit_log`, with their arguments. Outputs are the shared [`crate::view`] types.
//!
//! May import: `crate::service`, `crate::view`, `crate::domain::incident`, `crate::domain::kind`
//! (the value lists of the enums).

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use super::Args;
use crate::mcp::{IncidentMcp, ToolFailure};
use crate::service::{Fault, ListInput, ReportInput, ServiceError};
use crate::view::{
    AuditOutput, IncidentDetail, ListIncidentsOutput, ReportIncidentOutput, severity_schema,
    string_enum, type_schema,
};
use rmcp::model::CallToolResult;

/// Arguments of `report_incident`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportIncidentArgs {
    #[schemars(schema_with = "type_or_kind_schema")]
    pub incident_type: String,
    pub description: String,
    pub reporter_email: String,
    #[serde(default)]
    #[schemars(schema_with = "severity_schema")]
    pub severity: Option<String>,
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
    /// open: not resolved or closed.
    #[serde(default)]
    #[schemars(schema_with = "list_status_schema")]
    pub status: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "severity_schema")]
    pub severity: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "type_schema")]
    pub incident_type: Option<String>,
    #[serde(default)]
    #[schemars(schema_with = "crate::view::time_schema")]
    pub since: Option<String>,
    /// Default 20.
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `incident_type` of `report_incident`: a type or one of the procedure's kinds.
fn type_or_kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use crate::domain::incident::IncidentType;
    use crate::domain::kind::IncidentKind;
    string_enum(
        IncidentType::ALL
            .iter()
            .map(IncidentType::as_str)
            .chain(IncidentKind::ALL.iter().map(|k| k.as_str())),
    )
}

/// `status` of `list_incidents`: a status, or `open`.
fn list_status_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    use crate::domain::incident::Status;
    string_enum(Status::ALL.iter().map(Status::as_str).chain(["open"]))
}

#[tool_router(router = incidents_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Report an AI incident. Severity is assessed from the description when omitted; a kind (e.g. data_breach) sets its own severity and response time.",
        annotations(destructive_hint = false)
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
        description = "One incident with its timeline (hash-chained events) and response measurements.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_incident(
        &self,
        Parameters(Args(a)): Parameters<Args<IncidentIdArgs>>,
    ) -> Result<CallToolResult, ToolFailure> {
        let (inc, tl) = self.svc.get(&a.incident_id).await?;
        let response = self.svc.response_metrics(&inc, &tl);
        let detail = serde_json::to_value(IncidentDetail::new(inc, tl, response))
            .map_err(|source| Fault::Encode {
                what: "the incident",
                source,
            })
            .map_err(ServiceError::from)?;
        Ok(CallToolResult::structured(detail))
    }

    #[tool(
        description = "Incident summaries, newest first. Pass next_cursor back as cursor for the next page.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_incidents(
        &self,
        Parameters(Args(a)): Parameters<Args<ListIncidentsArgs>>,
    ) -> Result<Json<ListIncidentsOutput>, ToolFailure> {
        let open_only = a.status.as_deref().map(str::trim) == Some("open");
        let page = self
            .svc
            .list(ListInput {
                status: a.status.filter(|_| !open_only),
                severity: a.severity,
                incident_type: a.incident_type,
                since: a.since,
                limit: a.limit,
                cursor: a.cursor,
                open_only,
            })
            .await?;
        Ok(Json(page.into()))
    }

    #[tool(
        description = "Verify the tamper-evident timeline: hash chain, signed checkpoints and stored state. ok=false names what was altered.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn verify_audit_log(&self) -> Result<Json<AuditOutput>, ToolFailure> {
        Ok(Json(self.svc.verify_audit_log().await?.into()))
    }
}
