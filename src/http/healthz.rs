//! `GET /healthz`: liveness, versions, the monitor's last pass, and HTTP load (open connections,
//! live sessions against their caps).
//!
//! May import: `crate::mcp` (the handler); axum.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;

use super::limits::ConnLimits;
use super::sessions::SessionGate;
use crate::mcp::IncidentMcp;

#[derive(Clone)]
struct Health {
    handler: IncidentMcp,
    sessions: Arc<SessionGate>,
    conns: Arc<ConnLimits>,
}

pub(super) fn router(
    handler: IncidentMcp,
    sessions: Arc<SessionGate>,
    conns: Arc<ConnLimits>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(Health {
            handler,
            sessions,
            conns,
        })
}

async fn healthz(State(h): State<Health>) -> impl IntoResponse {
    let engine = h.handler.service().engine();
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "rules_version": engine.rules_version(),
        "rules": engine.rule_count(),
        "monitor": h.handler.service().monitor_status(),
        "http": {
            "connections": h.conns.open(),
            "sessions": h.sessions.live().await,
            "max_sessions": h.sessions.max(),
        },
    }))
}
