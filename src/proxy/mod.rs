//! The guard proxy (`ai-incident-mcp proxy`): a transparent MCP proxy between an agent and one
//! MCP server, or several merged from `[[proxy.upstreams]]` (names prefixed by config). It forwards requests, results and notifications both ways, and on the way screens
//! tool arguments and results, refuses contained users, sessions and isolated upstreams, pins
//! the live `tools/list` (changed or new tools hidden until approved), times every call, and
//! restarts a dead upstream with backoff. Findings go to the same store as `serve`, through a
//! write-behind queue so `monitor` mode never waits for the store. See `docs/proxy.md`.
//!
//! [`upstream`] owns the rmcp client session and its supervisor, [`handler`] the agent-facing
//! rmcp server handler, [`screener`] the low-priority threads that screen `monitor` traffic off
//! the relay, [`worker`] the queue, [`leaves`] the texts of a message.
//!
//! May import: `crate::service`, `crate::config`, `crate::checks`, `crate::detect`,
//! `crate::http` (the Host/Origin/token guard and connection limits), `crate::mcp::stdio` (the
//! agent-side stdio transport); rmcp, axum, tokio.

pub mod handler;
pub mod leaves;
pub mod screener;
pub mod upstream;
pub mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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

/// One upstream of an aggregating proxy: what to guard and the prefix of its names.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    /// Name and target.
    pub opts: ProxyOptions,
    /// Put before its tool and prompt names (empty: none).
    pub prefix: String,
}

/// The upstreams of `[[proxy.upstreams]]`, in config order.
pub fn configured_upstreams(cfg: &crate::config::ProxyConfig) -> Vec<UpstreamSpec> {
    cfg.upstreams
        .iter()
        .map(|u| UpstreamSpec {
            opts: ProxyOptions {
                name: u.name.clone(),
                target: match &u.url {
                    Some(url) => Target::Url(url.clone()),
                    None => Target::Command(u.command.clone()),
                },
            },
            prefix: u.prefix_str(),
        })
        .collect()
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
    /// No upstream given.
    #[error(
        "no upstream: give its command after --, e.g. `proxy --name crm -- python3 server.py`, --upstream-url http://host/mcp, or list servers in [[proxy.upstreams]] in --config"
    )]
    NoUpstream,
    /// Two aggregated upstreams offer the same tool or prompt name.
    #[error("{0}")]
    Collision(String),
}

/// A started proxy: the handler to serve, and what to stop.
pub struct Started {
    /// The agent-facing handler (clone it per connection).
    pub handler: GuardProxy,
    /// Cancels the upstream and the refresh task; [`Started::shutdown`] then drains the
    /// screening backlog and the queues.
    pub ct: CancellationToken,
    /// The monitor-mode screening threads (their counters: [`screener::Screener::stats`]).
    pub screener: screener::Screener,
    worker_ct: CancellationToken,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Started {
    /// Stops the upstreams, screens what is still in the screening backlog, and waits for the
    /// queues to drain (bounded). Returns the screening counters after the drain.
    pub async fn shutdown(self) -> screener::ScreenStats {
        self.ct.cancel();
        // Let the last calls finish and hand over their texts.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = self.screener.drain().await;
        // The writers stop after everything else: they drain what the screening queued.
        self.worker_ct.cancel();
        for w in self.workers {
            let _ = w.await;
        }
        stats
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
    start_all(
        svc,
        vec![UpstreamSpec {
            opts,
            prefix: String::new(),
        }],
    )
    .await
}

/// As [`start`] for several upstreams merged into one agent-facing server: each gets its own
/// supervisor (restarts), queue writer, containment refresh, pins and timing. Waits up to 10 s
/// for all first sessions, then lists their tools and prompts and refuses names two upstreams
/// would both offer.
///
/// # Errors
/// [`ProxyError::BadName`], [`ProxyError::NoUpstream`], [`ProxyError::Collision`].
pub async fn start_all(
    svc: Arc<IncidentService>,
    specs: Vec<UpstreamSpec>,
) -> Result<Started, ProxyError> {
    if specs.is_empty() {
        return Err(ProxyError::NoUpstream);
    }
    if let Some(bad) = specs.iter().find(|s| !name_ok(&s.opts.name)) {
        return Err(ProxyError::BadName(bad.opts.name.clone()));
    }
    let cfg = svc.config().proxy.clone();
    let ct = CancellationToken::new();
    let worker_ct = CancellationToken::new();
    let screener = screener::Screener::spawn(svc.clone(), cfg.screen_backlog, cfg.screen_threads);
    let down = Arc::new(upstream::Downstream::default());
    let mut workers = Vec::new();
    let mut shared = Vec::new();
    for spec in specs {
        let name = spec.opts.name;
        let (queue, worker) = worker::spawn(
            svc.clone(),
            name.clone(),
            cfg.queue_capacity,
            worker_ct.clone(),
            Duration::from_secs(10),
        );
        workers.push(worker);
        let sup = upstream::Supervisor::spawn(
            name.clone(),
            spec.opts.target,
            down.clone(),
            queue.clone(),
            upstream::Backoff {
                initial: cfg.restart_backoff,
                max: cfg.restart_backoff_max,
            },
            ct.clone(),
        );
        shared.push(Shared::new(
            name,
            spec.prefix,
            svc.clone(),
            sup,
            down.clone(),
            queue,
            screener.clone(),
        ));
    }
    let waits = shared.iter().map(|s| async move {
        if let Err(why) = s.up.peer(Duration::from_secs(10)).await {
            tracing::warn!(upstream = %s.name, %why, "serving the agent before the upstream is up");
        }
    });
    futures::future::join_all(waits).await;
    for s in &shared {
        s.spawn_refresh(ct.clone());
    }
    let started = Started {
        handler: GuardProxy::aggregate(shared),
        ct,
        screener,
        worker_ct,
        workers,
    };
    if let Err(why) = started.handler.check_collisions().await {
        started.shutdown().await;
        return Err(ProxyError::Collision(why));
    }
    Ok(started)
}

/// Runs the proxy for an agent on this process's stdin/stdout until the agent closes it.
///
/// # Errors
/// As [`start`], and when the stdio transport fails.
pub async fn run_stdio(svc: Arc<IncidentService>, opts: ProxyOptions) -> Result<(), ProxyError> {
    run_stdio_all(
        svc,
        vec![UpstreamSpec {
            opts,
            prefix: String::new(),
        }],
    )
    .await
}

/// As [`run_stdio`] for the upstreams `specs` (see [`start_all`]).
///
/// # Errors
/// As [`start_all`], and when the stdio transport fails.
pub async fn run_stdio_all(
    svc: Arc<IncidentService>,
    specs: Vec<UpstreamSpec>,
) -> Result<(), ProxyError> {
    let started = start_all(svc, specs).await?;
    // The agent side runs on the same stdio transport as `serve --stdio` (non-blocking pipes
    // or sockets on the runtime, JSON-RPC errors for lines that are not messages), not rmcp's
    // tokio stdio, which hands every read and write to the blocking pool.
    let r = crate::mcp::stdio::serve_process_stdio(started.handler.clone())
        .await
        .map_err(|e| ProxyError::Serve(e.to_string()));
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
    use rmcp::transport::streamable_http_server::session::local::{
        LocalSessionManager, SessionConfig,
    };
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
    // The same session gate as `serve`: a cap on live sessions, idle expiry, and 204 on DELETE.
    let mut session_config = SessionConfig::default();
    session_config.keep_alive = Some(opts.limits.session_idle_timeout);
    let mut manager = LocalSessionManager::default();
    manager.session_config = session_config;
    let manager = Arc::new(manager);
    let gate = crate::http::sessions::SessionGate::new(
        manager.clone(),
        opts.limits.max_sessions,
        opts.limits.session_idle_timeout,
    );
    gate.spawn_reaper(ct.clone());
    let h = started.handler.clone();
    let svc = StreamableHttpService::new(
        move || Ok(h.clone()),
        manager,
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
            gate,
            crate::http::sessions::mcp_layer,
        ))
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
