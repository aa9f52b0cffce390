//! MCP tools of the usage detectors (issue #11): `record_key_usage`, `record_access` and
//! `list_upstreams`. Thin: parse, one service call, map.
//!
//! May import: `crate::service`; rmcp, schemars, serde.

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
    /// Every configured upstream with its probe state.
    pub upstreams: Vec<UpstreamStatus>,
}

#[tool_router(router = detector_router, vis = "pub(crate)")]
impl IncidentMcp {
    #[tool(
        description = "Record one use of an API key (key_id is its label or public id, never the secret). After a \
learning period, a new source IP or user agent, a call-rate spike over the key's baseline, any use after revoke_key, \
or a key matching a credential seen exposed opens (or adds to) the key's api_key_compromise incident (high).",
        annotations(
            title = "Record key usage",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn record_key_usage(
        &self,
        Parameters(Args(a)): Parameters<Args<KeyUsageInput>>,
    ) -> Result<Json<KeyUsageOutcome>, ToolFailure> {
        Ok(Json(self.service().record_key_usage(a).await?))
    }

    #[tool(
        description = "Record one data access (principal, resource, action read|export|write|delete, records, \
sensitivity public|internal|confidential|restricted, destination for exports). Bulk reads/exports over the \
principal's baseline, access above its allowed sensitivity, off-hours bulk access, access by a contained principal, \
exports to destinations not on the allow list, or calls over a rate_limit open (or add to) the principal's \
data_breach incident (critical), with the accesses as evidence.",
        annotations(
            title = "Record access",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn record_access(
        &self,
        Parameters(Args(a)): Parameters<Args<AccessInput>>,
    ) -> Result<Json<AccessOutcome>, ToolFailure> {
        Ok(Json(self.service().record_access(a).await?))
    }

    #[tool(
        description = "List the configured upstreams (LLM APIs and MCP servers the background loop probes) with \
whether each is down, its availability and error rate over the performance window, and when it was last probed.",
        annotations(
            title = "List upstreams",
            read_only_hint = true,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_upstreams(&self) -> Result<Json<UpstreamsOutput>, ToolFailure> {
        Ok(Json(UpstreamsOutput {
            upstreams: self.service().upstream_status(),
        }))
    }
}
