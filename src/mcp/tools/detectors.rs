//! MCP tools of the usage detectors (issue #11): `record_key_usage`, `record_access` and
//! `list_upstreams`. Thin: parse, one service call, map.
//!
//! May import: `crate::service`, `crate::view`; rmcp, schemars, serde.

use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use super::Args;
use crate::mcp::{IncidentMcp, ToolFailure};
use crate::service::{AccessInput, AccessOutcome, KeyUsageInput, KeyUsageOutcome, UpstreamStatus};

/// Result of `list_upstreams`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UpstreamsOutput {
    pub upstreams: Vec<UpstreamView>,
}

/// One upstream and its probe state.
#[derive(Debug, Serialize, JsonSchema)]
pub struct UpstreamView {
    pub name: String,
    #[schemars(schema_with = "upstream_kind_schema")]
    pub kind: String,
    /// Down since its incident opened, until recovery.
    pub down: bool,
    /// Good probes / all probes in the performance window.
    pub availability: f64,
    pub error_rate: f64,
    /// Probes in the window.
    pub probes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::view::time_schema")]
    pub last_probe_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn upstream_kind_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    crate::view::string_enum(["http", "mcp"])
}

impl From<UpstreamStatus> for UpstreamView {
    fn from(u: UpstreamStatus) -> Self {
        UpstreamView {
            name: u.name,
            kind: u.kind,
            down: u.down,
            availability: u.availability,
            error_rate: u.error_rate,
            probes: u.probes,
            last_probe_at: u.last_probe_at,
        }
    }
}

/// One rule that fired on a recorded use or access.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RuleHit {
    pub rule: String,
    /// What was seen.
    pub detail: String,
}

/// Result of `record_key_usage`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct KeyUsageOutput {
    pub key_id: String,
    /// Empty: a normal use.
    pub anomalies: Vec<RuleHit>,
    /// A revoke_key containment is in force.
    pub revoked: bool,
    /// The api_key_compromise incident opened or updated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    pub incident_created: bool,
}

impl From<KeyUsageOutcome> for KeyUsageOutput {
    fn from(o: KeyUsageOutcome) -> Self {
        KeyUsageOutput {
            key_id: o.key_id,
            anomalies: o
                .anomalies
                .into_iter()
                .map(|a| RuleHit {
                    rule: a.rule,
                    detail: a.detail,
                })
                .collect(),
            revoked: o.revoked,
            incident_id: o.incident_id,
            incident_created: o.incident_created,
        }
    }
}

/// Result of `record_access`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AccessOutput {
    /// Always true: nothing sent is dropped.
    pub recorded: bool,
    /// False when the principal is over its rate_limit bucket.
    pub within_rate_limit: bool,
    /// Empty: a normal access.
    pub findings: Vec<RuleHit>,
    /// The data_breach incident opened or updated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    pub incident_created: bool,
}

impl From<AccessOutcome> for AccessOutput {
    fn from(o: AccessOutcome) -> Self {
        AccessOutput {
            recorded: o.recorded,
            within_rate_limit: o.within_rate_limit,
            findings: o
                .findings
                .into_iter()
                .map(|a| RuleHit {
                    rule: a.rule,
                    detail: a.detail,
                })
                .collect(),
            incident_id: o.incident_id,
            incident_created: o.incident_created,
        }
    }
}

#[tool_router(router = detector_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Record one API key use (key_id: a label or public id, never the secret). Anomalies open an api_key_compromise incident.",
        annotations(destructive_hint = false)
    )]
    async fn record_key_usage(
        &self,
        Parameters(Args(a)): Parameters<Args<KeyUsageInput>>,
    ) -> Result<Json<KeyUsageOutput>, ToolFailure> {
        Ok(Json(self.service().record_key_usage(a).await?.into()))
    }

    #[tool(
        description = "Record one data access. Bulk, over-sensitivity, off-hours, contained or disallowed-export access opens a data_breach incident.",
        annotations(destructive_hint = false)
    )]
    async fn record_access(
        &self,
        Parameters(Args(a)): Parameters<Args<AccessInput>>,
    ) -> Result<Json<AccessOutput>, ToolFailure> {
        Ok(Json(self.service().record_access(a).await?.into()))
    }

    #[tool(
        description = "Configured upstreams (LLM APIs, MCP servers) with their probe state.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_upstreams(&self) -> Result<Json<UpstreamsOutput>, ToolFailure> {
        Ok(Json(UpstreamsOutput {
            upstreams: self
                .service()
                .upstream_status()
                .into_iter()
                .map(UpstreamView::from)
                .collect(),
        }))
    }
}
