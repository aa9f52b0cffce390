//! `GET /metrics`: the Prometheus exposition (OpenMetrics text) of the service's metrics, on
//! the `serve --http` port behind the same Host/Origin/token guards as everything else.
//!
//! May import: `crate::service`, `crate::metrics` (the content type); axum.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::service::IncidentService;

pub(super) fn router(svc: Arc<IncidentService>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(svc)
}

async fn metrics(State(svc): State<Arc<IncidentService>>) -> Response {
    match svc.prometheus_text().await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot render /metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "metrics unavailable: the store could not be read; see the server log\n",
            )
                .into_response()
        }
    }
}
