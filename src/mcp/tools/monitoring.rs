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

/// Arguments of `record_metrics`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordMetricsArgs {
    pub source: String,
    #[schemars(range(min = 0))]
    pub llm_response_time: Option<f64>,
    #[schemars(range(min = 0))]
    pub tool_execution_time: Option<f64>,
    #[schemars(range(min = 0))]
    pub system_response_time: Option<f64>,
    #[schemars(range(min = 0, max = 1))]
    pub error_rate: Option<f64>,
    #[schemars(range(min = 0, max = 1))]
    pub availability: Option<f64>,
}

/// Arguments of `approve_catalog_change`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveCatalogArgs {
    /// `<catalog file>/<tool>`, e.g. crm_mcp.json/search_clients.
    pub pin_key: String,
    pub approver: String,
}

/// Result of `approve_catalog_change`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApproveCatalogOutput {
    pub pin_key: String,
    /// The tool-change incident that was resolved, if one was open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_incident_id: Option<String>,
}

/// Result of `record_metrics`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MetricsOutput {
    /// Threshold violations in this sample.
    pub violations: Vec<ViolationView>,
    /// Incidents opened or updated, one per violated metric.
    pub incident_ids: Vec<String>,
}

/// One threshold violation.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ViolationView {
    pub metric: String,
    pub value: f64,
    pub threshold: f64,
    #[schemars(schema_with = "crate::view::severity_schema")]
    pub severity: String,
    pub message: String,
}

impl From<MetricsOutcome> for MetricsOutput {
    fn from(o: MetricsOutcome) -> Self {
        MetricsOutput {
            violations: o
                .violations
                .into_iter()
                .map(|v| ViolationView {
                    metric: v.metric,
                    value: v.value,
                    threshold: v.threshold,
                    severity: v.severity,
                    message: v.message,
                })
                .collect(),
            incident_ids: o.incident_ids,
        }
    }
}

/// Result of `check_data_quality`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DataQualityOutput {
    /// False when neither data folder exists (checks idle).
    pub ran: bool,
    pub files_checked: usize,
    pub records_checked: usize,
    pub tools_checked: usize,
    /// This pass recorded the first tool pins.
    pub pins_recorded: bool,
    pub findings: Vec<FindingView>,
}

/// One data-quality finding.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FindingView {
    pub kind: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub message: String,
    /// For a tool change: pass to approve_catalog_change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
}

impl From<DqOutcome> for DataQualityOutput {
    fn from(o: DqOutcome) -> Self {
        DataQualityOutput {
            ran: o.ran,
            files_checked: o.files_checked,
            records_checked: o.records_checked,
            tools_checked: o.tools_checked,
            pins_recorded: o.pins_recorded,
            findings: o
                .findings
                .into_iter()
                .map(|f| FindingView {
                    kind: f.kind,
                    file: f.file,
                    record: f.record,
                    message: f.message,
                    pin_key: f.pin_key,
                    incident_id: f.incident_id,
                })
                .collect(),
        }
    }
}

#[tool_router(router = monitoring_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Record a system's metrics (seconds; rates as 0-1). A value past its threshold opens or adds to a performance incident.",
        annotations(destructive_hint = false)
    )]
    async fn record_metrics(
        &self,
        Parameters(Args(a)): Parameters<Args<RecordMetricsArgs>>,
    ) -> Result<Json<MetricsOutput>, ToolFailure> {
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
                .await?
                .into(),
        ))
    }

    #[tool(
        description = "Run the data-quality checks now: data files, references, tool catalogs and pins (a silent change is tool poisoning). Findings open incidents.",
        annotations(destructive_hint = false, idempotent_hint = true)
    )]
    async fn check_data_quality(&self) -> Result<Json<DataQualityOutput>, ToolFailure> {
        Ok(Json(self.service().check_data_quality().await?.into()))
    }

    #[tool(
        description = "Approve a changed tool definition (pin_key from check_data_quality) and resolve its incident.",
        annotations(destructive_hint = true)
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
            resolved_incident_id: inc.map(|i| i.id().to_string()),
        }))
    }
}
