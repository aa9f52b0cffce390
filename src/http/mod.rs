//! The HTTP adapter: Streamable HTTP MCP at `/mcp`, the legacy HTTP+SSE
//! transport at `GET /sse` + `POST /message?sessionId=`, `GET /healthz`, `GET /metrics`
//! (Prometheus), the REST API and the web pages,
//! all behind one Host/Origin guard (DNS-rebinding protection) and an
//! optional bearer token, served by our own accept loop with resource limits
//! (connection caps, header/body/idle timeouts, a session cap with idle expiry).
//!
//! [`app`] builds the one `Router` (other routers `.merge` into it); [`serve`]
//! binds and runs it with the limits of [`HttpOptions`].
//!
//! May import: `crate::mcp` (the handler), `crate::service`, `crate::config` (`[http]`),
//! `crate::metrics`; axum, hyper
//! and rmcp's HTTP transport.

pub mod api;
pub mod guards;
mod healthz;
pub mod legacy_sse;
pub mod limits;
mod metrics;
pub mod sessions;
pub mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::middleware;
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, SessionConfig};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::config::HttpConfig;
use crate::mcp::IncidentMcp;

pub use guards::{origin_allowed, parse_authority};

/// HTTP settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Host names (without port) accepted in the `Host` header.
    pub allowed_hosts: Vec<String>,
    /// Extra origins accepted besides loopback ones, e.g. `https://ops.example.com`.
    pub allowed_origins: Vec<String>,
    /// When set, every request but `/healthz` needs `Authorization: Bearer <token>` (this one,
    /// as admin, or one of `tokens`).
    pub bearer_token: Option<String>,
    /// Named tokens (`[[auth.tokens]]`): with any, every request but `/healthz` needs a token.
    pub tokens: Vec<crate::config::TokenConfig>,
    /// Read-only mode: requests that change state are answered 403.
    pub read_only: bool,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Timeouts, connection and session caps (`[http]` in the configuration).
    pub limits: HttpConfig,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allowed_hosts: loopback_hosts(),
            allowed_origins: Vec::new(),
            bearer_token: None,
            tokens: Vec::new(),
            read_only: false,
            max_body_bytes: 4 * 1024 * 1024,
            limits: default_limits(),
        }
    }
}

/// The `[http]` defaults (the values in `data/default-config.toml`).
pub fn default_limits() -> HttpConfig {
    HttpConfig {
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(30),
        keep_alive_idle: Duration::from_secs(60),
        max_connections: 512,
        max_connections_per_client: 64,
        max_sessions: 1000,
        session_idle_timeout: Duration::from_secs(300),
    }
}

/// The loopback host names.
pub fn loopback_hosts() -> Vec<String> {
    ["localhost", "127.0.0.1", "::1", "[::1]"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Resolves a `--http` value: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT` (first address the name
/// resolves to). Returns the address and, for a host name, the name (to accept as `Host`).
///
/// # Errors
/// Not of the form `host:port`, or the name does not resolve.
pub async fn resolve_listen_addr(value: &str) -> std::io::Result<(SocketAddr, Option<String>)> {
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok((a, None));
    }
    let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
    let (host, port) = value
        .rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .ok_or_else(|| {
            bad(format!(
                "--http {value:?}: expected HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080"
            ))
        })?;
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host(value)
        .await
        .map_err(|e| bad(format!("--http {value:?}: cannot resolve {host:?}: {e}")))?
        .collect();
    // Prefer IPv4 (what "localhost" means to most clients), then the resolver's order.
    addrs.sort_by_key(|a| !a.is_ipv4());
    let addr = addrs.first().copied().ok_or_else(|| {
        bad(format!(
            "--http {value:?}: {host:?} resolves to no address (port {port})"
        ))
    })?;
    Ok((addr, Some(host.to_ascii_lowercase())))
}

/// Builds the router (testable with `oneshot`, no socket needed).
pub fn app(handler: IncidentMcp, opts: HttpOptions, ct: CancellationToken) -> Router {
    let limits = limits::ConnLimits::new(
        opts.limits.max_connections,
        opts.limits.max_connections_per_client,
    );
    build(handler, opts, ct, limits)
}

fn build(
    handler: IncidentMcp,
    opts: HttpOptions,
    ct: CancellationToken,
    conns: Arc<limits::ConnLimits>,
) -> Router {
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
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = Some(opts.limits.session_idle_timeout);
    let mut manager = LocalSessionManager::default();
    manager.session_config = session_config;
    let manager = Arc::new(manager);
    let gate = sessions::SessionGate::new(
        manager.clone(),
        opts.limits.max_sessions,
        opts.limits.session_idle_timeout,
    );
    gate.spawn_reaper(ct.clone());
    let mcp_handler = handler.clone();
    let svc = StreamableHttpService::new(
        move || Ok(mcp_handler.clone()),
        manager,
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(rmcp_hosts)
            .with_allowed_origins(origins)
            .with_max_request_body_bytes(opts.max_body_bytes)
            .with_cancellation_token(ct.child_token()),
    );
    let mcp = Router::new()
        .nest_service("/mcp", svc)
        .layer(middleware::from_fn_with_state(
            gate.clone(),
            sessions::mcp_layer,
        ));
    let read_only = opts.read_only;
    let body = limits::BodyLimits {
        read_timeout: opts.limits.body_read_timeout,
        max_bytes: opts.max_body_bytes,
    };
    Router::new()
        .merge(healthz::router(handler.clone(), gate, conns))
        .merge(mcp)
        .merge(legacy_sse::router(handler.clone(), opts.max_body_bytes, ct))
        .merge(api::router(handler.service().clone(), opts.max_body_bytes))
        .merge(web::router(handler.service().clone()))
        .merge(metrics::router(handler.service().clone()))
        .layer(middleware::from_fn_with_state(body, limits::body_layer))
        .layer(middleware::from_fn_with_state(
            read_only,
            guards::write_gate,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(opts),
            guards::guard_layer,
        ))
}

/// Binds `addr` and serves until `ct` is cancelled.
///
/// # Errors
/// The socket cannot be bound.
pub async fn serve(
    handler: IncidentMcp,
    addr: SocketAddr,
    opts: HttpOptions,
    ct: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let timeouts = limits::ConnTimeouts {
        header_read: opts.limits.header_read_timeout,
        keep_alive_idle: opts.limits.keep_alive_idle,
    };
    let conns = limits::ConnLimits::new(
        opts.limits.max_connections,
        opts.limits.max_connections_per_client,
    );
    let app = build(handler, opts, ct.clone(), conns.clone());
    tokio::spawn(limits::serve_connections(
        listener, app, conns, timeouts, ct,
    ));
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_match_the_default_config_file() {
        let cfg = crate::config::Config::load(None).unwrap();
        assert_eq!(cfg.http, default_limits());
    }
}
