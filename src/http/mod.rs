//! The HTTP adapter: Streamable HTTP MCP at `/mcp`, the legacy HTTP+SSE
//! transport at `GET /sse` + `POST /message?sessionId=`, and `GET /healthz`,
//! all behind one Host/Origin guard (DNS-rebinding protection) and an
//! optional bearer token.
//!
//! May import: `crate::mcp` (the handler), `crate::service`; axum and rmcp's HTTP transport.

pub mod api;
pub mod legacy_sse;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::mcp::IncidentMcp;

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Host names (without port) accepted in the `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Extra origins accepted besides loopback ones, e.g. `https://ops.example.com`.
    pub allowed_origins: Vec<String>,
    /// When set, every request but `/healthz` needs `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allowed_hosts: loopback_hosts(),
            allowed_origins: Vec::new(),
            bearer_token: None,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// The loopback host names.
pub fn loopback_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1", "[::1]"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[derive(Clone)]
struct Guard {
    opts: Arc<HttpOptions>,
}

/// Builds the router (testable with `oneshot`, no socket needed).
pub fn app(handler: IncidentMcp, opts: HttpOptions, ct: CancellationToken) -> Router {
    let mut origins: Vec<String> = vec![
        "http://localhost:*".into(),
        "http://127.0.0.1:*".into(),
        "http://[::1]:*".into(),
        "https://localhost:*".into(),
    ];
    origins.extend(opts.allowed_origins.iter().cloned());
    let rmcp_hosts: Vec<String> = opts
        .allowed_hosts
        .iter()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    let mcp_handler = handler.clone();
    let svc = StreamableHttpService::new(
        move || Ok(mcp_handler.clone()),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(rmcp_hosts)
            .with_allowed_origins(origins)
            .with_max_request_body_bytes(opts.max_body_bytes)
            .with_cancellation_token(ct.child_token()),
    );
    let guard = Guard {
        opts: Arc::new(opts.clone()),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .nest_service("/mcp", svc)
        .merge(legacy_sse::router(handler.clone(), opts.max_body_bytes, ct))
        .merge(api::router(handler.service().clone(), opts.max_body_bytes))
        .merge(web::router(handler.service().clone()))
        .with_state(handler)
        .layer(middleware::from_fn_with_state(guard, guard_layer))
}

async fn healthz(State(h): State<IncidentMcp>) -> impl IntoResponse {
    let engine = h.service().engine();
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "rules_version": engine.rules_version(),
        "rules": engine.rule_count(),
        "monitor": h.service().monitor_status(),
    }))
}

fn host_of(value: &str) -> &str {
    // "[::1]:8080" -> "[::1]", "localhost:8080" -> "localhost", "::1" stays
    if value.starts_with('[') {
        match value.find(']') {
            Some(i) => value.get(..=i).unwrap_or(value),
            None => value,
        }
    } else if value.matches(':').count() == 1 {
        value.split(':').next().unwrap_or(value)
    } else {
        value
    }
}

fn origin_allowed(origin: &str, opts: &HttpOptions) -> bool {
    if opts.allowed_origins.iter().any(|o| o == origin) {
        return true;
    }
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match rest {
        Some(hostport) => {
            let h = host_of(hostport);
            ["localhost", "127.0.0.1", "[::1]"].contains(&h)
        }
        None => false,
    }
}

fn forbidden(msg: &str) -> Response {
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({"error": msg})),
    )
        .into_response()
}

async fn guard_layer(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let headers: &HeaderMap = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(host_of)
        .map(|h| h.to_ascii_lowercase());
    match host {
        Some(h)
            if g.opts
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(&h)) => {}
        _ => {
            return forbidden(
                "Host header is not allowed (DNS-rebinding protection); add the host name with --allow-host",
            );
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ok = origin
            .to_str()
            .map(|o| origin_allowed(o, &g.opts))
            .unwrap_or(false);
        if !ok {
            return forbidden("Origin is not allowed; add it with --allow-origin");
        }
    }
    if let Some(token) = &g.opts.bearer_token
        && req.uri().path() != "/healthz"
    {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(serde_json::json!({"error": "missing or wrong bearer token"})),
            )
                .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Binds `addr` and serves until `ct` is cancelled.
///
/// # Errors
/// The socket cannot be bound, or serving fails.
pub async fn serve(
    handler: IncidentMcp,
    addr: SocketAddr,
    opts: HttpOptions,
    ct: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = app(handler, opts, ct.clone());
    tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { ct.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!("http server stopped: {e}");
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(host_of("localhost:8080"), "localhost");
        assert_eq!(host_of("[::1]:8080"), "[::1]");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn origins() {
        let o = HttpOptions::default();
        assert!(origin_allowed("http://localhost:3000", &o));
        assert!(origin_allowed("http://127.0.0.1", &o));
        assert!(!origin_allowed("http://evil.example", &o));
        assert!(!origin_allowed("http://localhost.evil.example:80", &o));
        assert!(!origin_allowed("null", &o));
    }
}
