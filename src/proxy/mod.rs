//! The guard proxy (`ai-incident-mcp proxy`): a transparent MCP proxy between an agent and one
//! MCP server. It forwards requests, results and notifications both ways, and on the way screens
//! tool arguments and results, refuses contained users, sessions and isolated upstreams, pins
//! the live `tools/list` (changed or new tools hidden until approved), times every call, and
//! restarts a dead upstream with backoff. Findings go to the same store as `serve`, through a
//! write-behind queue so `monitor` mode never waits for the store. See `docs/proxy.md`.
//!
//! [`upstream`] owns the rmcp client session and its supervisor, [`handler`] the agent-facing
//! rmcp server handler, [`worker`] the queue, [`leaves`] the texts of a message.
//!
//! May import: `crate::service`, `crate::config`, `crate::checks`, `crate::detect`,
//! `crate::http` (the Host/Origin/token guard and connection limits); rmcp, axum, tokio.

pub mod handler;
pub mod leaves;
pub mod upstream;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

pub use handler::{GuardProxy, Shared, definition_hash};
pub use upstream::Target;

use crate::service::IncidentService;

/// What to guard.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The upstream's name in incidents, metrics, pins and containment (`--name`).
    pub name: String,
    /// Where it is.
    pub target: Target,
}

/// The proxy failed to run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `--name` is empty or unusable.
    #[error(
        "--name {0:?}: give the upstream a name of 1 to 64 letters, digits, '-' or '_', e.g. crm"
    )]
    BadName(String),
    /// The agent-side transport failed.
    #[error("agent-side transport failed: {0}")]
    Serve(String),
    /// The HTTP listener could not be bound.
    #[error("cannot listen: {0}")]
    Listen(#[source] std::io::Error),
}

/// A started proxy: the handler to serve, and what to stop.
pub struct Started {
    /// The agent-facing handler (clone it per connection).
    pub handler: GuardProxy,
    /// Cancels the upstream, the refresh task and (after draining) the queue.
    pub ct: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

impl Started {
    /// Stops the upstream and waits for the queue to drain (bounded).
    pub async fn shutdown(self) {
        self.ct.cancel();
        let _ = self.worker.await;
    }
}

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Starts the upstream supervisor, the queue writer and the containment refresh, and waits up
/// to 10 s for the first upstream session (its capabilities are what the agent is offered).
///
/// # Errors
/// [`ProxyError::BadName`] for an unusable name.
pub async fn start(svc: Arc<IncidentService>, opts: ProxyOptions) -> Result<Started, ProxyError> {
    if !name_ok(&opts.name) {
        return Err(ProxyError::BadName(opts.name));
    }
    let cfg = svc.config().proxy.clone();
    let ct = CancellationToken::new();
    let worker_ct = CancellationToken::new();
    let (queue, worker) = worker::spawn(
        svc.clone(),
        opts.name.clone(),
        cfg.queue_capacity,
        worker_ct.clone(),
        Duration::from_secs(10),
    );
    // The writer stops after everything else: it drains what the last calls queued.
    let wct = worker_ct.clone();
    let ct2 = ct.clone();
    tokio::spawn(async move {
        ct2.cancelled().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        wct.cancel();
    });
    let down = Arc::new(upstream::Downstream::default());
    let sup = upstream::Supervisor::spawn(
        opts.name.clone(),
        opts.target.clone(),
        down.clone(),
        queue.clone(),
        upstream::Backoff {
            initial: cfg.restart_backoff,
            max: cfg.restart_backoff_max,
        },
        ct.clone(),
    );
    if let Err(why) = sup.peer(Duration::from_secs(10)).await {
        tracing::warn!(upstream = %opts.name, %why, "serving the agent before the upstream is up");
    }
    let shared = Shared::new(opts.name, svc, sup, down, queue);
    shared.spawn_refresh(ct.clone());
    Ok(Started {
        handler: GuardProxy::new(shared),
        ct,
        worker,
    })
}

/// Runs the proxy for an agent on this process's stdin/stdout until the agent closes it.
///
/// # Errors
/// As [`start`], and when the stdio transport fails.
pub async fn run_stdio(svc: Arc<IncidentService>, opts: ProxyOptions) -> Result<(), ProxyError> {
    let started = start(svc, opts).await?;
    let r = match started
        .handler
        .clone()
        .serve(rmcp::transport::stdio())
        .await
    {
        Ok(running) => {
            let _ = running.waiting().await;
            Ok(())
        }
        Err(e) => Err(ProxyError::Serve(upstream::error_chain(&e))),
    };
    started.shutdown().await;
    r
}

/// Serves the proxy over Streamable HTTP at `/mcp` on `addr`, behind the same Host/Origin/token
/// guard, body limits and connection caps as `serve`. Returns the bound address; runs until
/// `started.ct` is cancelled.
///
/// # Errors
/// [`ProxyError::Listen`] when `addr` cannot be bound.
pub async fn serve_http(
    started: &Started,
    addr: SocketAddr,
    opts: crate::http::HttpOptions,
) -> Result<SocketAddr, ProxyError> {
    use axum::middleware;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let ct = started.ct.clone();
    let mut origins: Vec<String> = vec![
        "http://localhost:*".into(),
        "http://127.0.0.1:*".into(),
        "http://[::1]:*".into(),
        "https://localhost:*".into(),
    ];
    origins.extend(opts.allowed_origins.iter().cloned());
    let hosts: Vec<String> = opts
        .allowed_hosts
        .iter()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .collect();
    let h = started.handler.clone();
    let svc = StreamableHttpService::new(
        move || Ok(h.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_allowed_hosts(hosts)
            .with_allowed_origins(origins)
            .with_max_request_body_bytes(opts.max_body_bytes)
            .with_cancellation_token(ct.child_token()),
    );
    let body = crate::http::limits::BodyLimits {
        read_timeout: opts.limits.body_read_timeout,
        max_bytes: opts.max_body_bytes,
    };
    let timeouts = crate::http::limits::ConnTimeouts {
        header_read: opts.limits.header_read_timeout,
        keep_alive_idle: opts.limits.keep_alive_idle,
    };
    let conns = crate::http::limits::ConnLimits::new(
        opts.limits.max_connections,
        opts.limits.max_connections_per_client,
    );
    let app = axum::Router::new()
        .nest_service("/mcp", svc)
        .layer(middleware::from_fn_with_state(
            body,
            crate::http::limits::body_layer,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(opts),
            crate::http::guards::guard_layer,
        ));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(ProxyError::Listen)?;
    let local = listener.local_addr().map_err(ProxyError::Listen)?;
    tokio::spawn(crate::http::limits::serve_connections(
        listener, app, conns, timeouts, ct,
    ));
    Ok(local)
}
