//! Monitoring tools: `record_metrics`, `check_data_quality`, `approve_catalog_change`, each
//! with its arguments and output beside it. Thin: parse, one service call, map.
//!
//! May import: `crate::service`, `crate::view`.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Args;
use crate::mcp::{IncidentMcp, ToolFailure};
use crate::service::{DqOutcome, MetricsInput, MetricsOutcome};
use crate::view::IncidentSummary;

/// Arguments of `record_metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordMetricsArgs {
    /// The monitored system, e.g. crm-agent.
    pub source: String,
    /// LLM response time, seconds (threshold 10 s by default).
    pub llm_response_time: Option<f64>,
    /// Tool execution time, seconds (threshold 5 s).
    pub tool_execution_time: Option<f64>,
    /// End-to-end system response time, seconds (threshold 3 s).
    pub system_response_time: Option<f64>,
    /// Error rate as a fraction 0 to 1 (threshold 0.05).
    pub error_rate: Option<f64>,
    /// Availability as a fraction 0 to 1 (below 0.99 is a violation).
    pub availability: Option<f64>,
}

/// Arguments of `approve_catalog_change`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveCatalogArgs {
    /// The changed tool as `<catalog file>/<tool name>`, e.g. crm_mcp.json/search_clients
    /// (the `pin_key` that check_data_quality reports).
    pub pin_key: String,
    /// Who approves the change (kept on the incident timeline).
    pub approver: String,
}

/// Result of `approve_catalog_change`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApproveCatalogOutput {
    pub pin_key: String,
    /// The tool-change incident that was resolved, if one was open.
    pub resolved_incident: Option<IncidentSummary>,
}

#[tool_router(router = monitoring_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Record performance metrics of a monitored AI system (seconds for times, 0-1 fractions for \
error_rate and availability). A value past its threshold opens a performance incident for that system and metric, \
or adds an occurrence to the open one; recovery is recorded by the background loop.",
        annotations(
            title = "Record metrics",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn record_metrics(
        &self,
        Parameters(Args(a)): Parameters<Args<RecordMetricsArgs>>,
    ) -> Result<Json<MetricsOutcome>, ToolFailure> {
        Ok(Json(
            self.service()
                .record_metrics(MetricsInput {
                    source: a.source,
                    llm_response_time: a.llm_response_time,
                    tool_execution_time: a.tool_execution_time,
                    system_response_time: a.system_response_time,
                    error_rate: a.error_rate,
                    availability: a.availability,
                })
                .await?,
        ))
    }

    #[tool(
        description = "Run the data-quality checks now: data files parse and match their shapes, referential \
integrity (orders→clients/sales reps, managers, no management cycles), MCP tool catalogs are valid (input schemas \
checked against the JSON Schema meta-schema), and tool definitions match their pinned SHA-256 (a silent change is a \
tool-poisoning security incident). Each finding opens or updates an incident.",
        annotations(
            title = "Check data quality",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn check_data_quality(&self) -> Result<Json<DqOutcome>, ToolFailure> {
        Ok(Json(self.service().check_data_quality().await?))
    }

    #[tool(
        description = "Approve a changed, added or removed tool definition (pin_key from check_data_quality): the \
pin lock takes the new definition and the tool-change incident is resolved.",
        annotations(
            title = "Approve catalog change",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn approve_catalog_change(
        &self,
        Parameters(Args(a)): Parameters<Args<ApproveCatalogArgs>>,
    ) -> Result<Json<ApproveCatalogOutput>, ToolFailure> {
        let inc = self
            .service()
            .approve_catalog_change(&a.pin_key, &a.approver)
            .await?;
        Ok(Json(ApproveCatalogOutput {
            pin_key: a.pin_key,
            resolved_incident: inc.as_ref().map(IncidentSummary::from),
        }))
    }
}
