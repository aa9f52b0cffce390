//! The upstream side of the guard proxy: one rmcp client session to the guarded MCP server
//! (a child process over stdio, or Streamable HTTP), kept alive by a supervisor that restarts
//! it with exponential backoff when it dies, and an rmcp [`ClientHandler`] that relays what the
//! upstream sends on its own (progress, logging, list-changed and resource notifications;
//! sampling, elicitation and roots requests) to the agent.
//!
//! May import: `crate::proxy`, `crate::checks`, `crate::service` (`error_chain`); rmcp, tokio.

// Sampling, roots and logging are deprecated by SEP-2577 but are what today's clients and
// servers speak; the proxy relays them.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequestParams,
    CreateMessageResult, ElicitRequestParams, ElicitResult, ErrorData as McpError, Implementation,
    ListRootsResult, ProgressNotificationParam, ProgressToken, ResourceUpdatedNotificationParam,
    ServerPeerInfo, ServerRequest,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, RunningService};
use rmcp::{ClientHandler, RoleClient, RoleServer, ServiceExt};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::checks::upstreams::FailureKind;
use crate::proxy::worker::{Job, Queue};

/// Where the guarded server is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A program and its arguments, spoken to over its stdin/stdout.
    Command(Vec<String>),
    /// A Streamable HTTP endpoint, e.g. `http://127.0.0.1:9000/mcp`.
    Url(String),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Command(c) => c.join(" "),
            Target::Url(u) => u.clone(),
        }
    }
}

/// An upstream's name and one of its progress tokens.
pub(crate) type UpstreamToken = (String, ProgressToken);

/// The agent side as the upstream handler sees it: who to relay to.
#[derive(Default)]
pub struct Downstream {
    /// The agent connection that spoke last (stdio: the only one).
    latest: Mutex<Option<Peer<RoleServer>>>,
    /// (upstream, its progress token) of calls in flight → the agent that asked, and its
    /// token. Keyed by upstream too: each upstream session numbers its tokens from 0.
    progress: Mutex<HashMap<UpstreamToken, (Peer<RoleServer>, ProgressToken)>>,
    /// Tokens of answered calls and when to forget them (late progress still finds its agent
    /// until then); pruned as calls come and go, instead of a timer task per call.
    expiring: Mutex<std::collections::VecDeque<(Instant, UpstreamToken)>>,
    /// 2026-07-28 agents' `subscriptions/listen` sinks.
    pub(crate) sinks: Mutex<Vec<rmcp::service::SubscriptionSink>>,
}

impl Downstream {
    pub(crate) fn seen(&self, peer: &Peer<RoleServer>) {
        if let Ok(mut g) = self.latest.lock() {
            *g = Some(peer.clone());
        }
    }
    fn latest(&self) -> Option<Peer<RoleServer>> {
        self.latest.lock().ok().and_then(|g| g.clone())
    }
    pub(crate) fn track_progress(
        &self,
        upstream: UpstreamToken,
        peer: Peer<RoleServer>,
        agent: ProgressToken,
    ) {
        if let Ok(mut g) = self.progress.lock() {
            g.insert(upstream, (peer, agent));
        }
    }
    /// Forgets `t` once `after` has passed (checked when calls are tracked or forgotten).
    pub(crate) fn untrack_progress_after(&self, t: UpstreamToken, after: Duration) {
        let now = Instant::now();
        let expired: Vec<UpstreamToken> = match self.expiring.lock() {
            Ok(mut q) => {
                q.push_back((now + after, t));
                let mut out = Vec::new();
                while q.front().is_some_and(|(at, _)| *at <= now) {
                    if let Some((_, t)) = q.pop_front() {
                        out.push(t);
                    }
                }
                out
            }
            Err(_) => return,
        };
        if !expired.is_empty()
            && let Ok(mut g) = self.progress.lock()
        {
            for t in &expired {
                g.remove(t);
            }
        }
    }
    fn sinks(&self) -> Vec<rmcp::service::SubscriptionSink> {
        self.sinks.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// The rmcp client handler of the upstream session.
#[derive(Clone)]
pub struct UpstreamClient {
    name: String,
    down: Arc<Downstream>,
}

fn no_agent() -> McpError {
    McpError::internal_error("no agent is connected to the guard proxy to answer", None)
}

fn relay_err(e: rmcp::service::ServiceError) -> McpError {
    match e {
        rmcp::service::ServiceError::McpError(e) => e,
        e => McpError::internal_error(format!("the agent did not answer: {e}"), None),
    }
}

impl UpstreamClient {
    async fn ask_agent(&self, req: ServerRequest) -> Result<ClientResult, McpError> {
        let peer = self.down.latest().ok_or_else(no_agent)?;
        peer.send_request(req).await.map_err(relay_err)
    }
}

impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let caps = ClientCapabilities::builder()
            .enable_sampling()
            .enable_elicitation()
            .enable_roots()
            .build();
        ClientConfig::new(
            caps,
            Implementation::new("ai-incident-mcp-proxy", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, McpError> {
        match self
            .ask_agent(ServerRequest::CreateMessageRequest(
                rmcp::model::CreateMessageRequest::new(params),
            ))
            .await?
        {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(McpError::internal_error(
                "the agent answered sampling with something else",
                None,
            )),
        }
    }

    async fn list_roots(
        &self,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, McpError> {
        match self
            .ask_agent(ServerRequest::ListRootsRequest(
                rmcp::model::ListRootsRequest {
                    method: Default::default(),
                    extensions: Default::default(),
                },
            ))
            .await?
        {
            ClientResult::ListRootsResult(r) => Ok(r),
            _ => Err(McpError::internal_error(
                "the agent answered roots/list with something else",
                None,
            )),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        match self
            .ask_agent(ServerRequest::ElicitRequest(
                rmcp::model::ElicitRequest::new(params),
            ))
            .await?
        {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(McpError::internal_error(
                "the agent answered elicitation with something else",
                None,
            )),
        }
    }

    // Progress and log messages never reach these handlers: [`Ordered`] relays them as they
    // are read, because rmcp runs each notification handler as its own task and would let
    // them overtake one another.

    async fn on_resource_updated(
        &self,
        p: ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        for s in self.down.sinks() {
            let _ = s.notify_resource_updated(p.uri.clone()).await;
        }
        if let Some(peer) = self.down.latest() {
            let _ = peer.notify_resource_updated(p).await;
        }
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        for s in self.down.sinks() {
            let _ = s.notify_resource_list_changed().await;
        }
        if let Some(peer) = self.down.latest() {
            let _ = peer.notify_resource_list_changed().await;
        }
    }

    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        notify_tools_changed(&self.down).await;
    }

    async fn on_prompt_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        for s in self.down.sinks() {
            let _ = s.notify_prompt_list_changed().await;
        }
        if let Some(peer) = self.down.latest() {
            let _ = peer.notify_prompt_list_changed().await;
        }
    }
}

/// Tells the agent(s) to list the tools again (the upstream's list or its visibility changed).
pub(crate) async fn notify_tools_changed(down: &Downstream) {
    for s in down.sinks() {
        let _ = s.notify_tool_list_changed().await;
    }
    if let Some(peer) = down.latest() {
        let _ = peer.notify_tool_list_changed().await;
    }
}

/// The connection as calls see it.
#[derive(Clone)]
pub enum Conn {
    /// Not connected yet.
    Starting,
    /// Connected: the peer to send to.
    Up(Peer<RoleClient>),
    /// Gone; restarting after the backoff.
    Down {
        /// Why.
        reason: String,
        /// When the next start is tried.
        retry_at: Instant,
    },
    /// The proxy is shutting down.
    Stopped,
}

/// Keeps the upstream session alive.
pub struct Supervisor {
    rx: watch::Receiver<Conn>,
    info: Arc<Mutex<Option<ServerPeerInfo>>>,
}

/// Restart backoff settings.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First wait.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

/// The upstream transport with progress and log notifications relayed in the order they
/// arrive.
///
/// rmcp hands every incoming notification to its own spawned task, so three progress
/// notifications read as 1, 2, 3 can reach the handler, and the agent, as 1, 3, 2. This
/// wrapper relays them inside `receive`, which rmcp calls one message at a time: each is
/// queued for the agent before the next upstream message (the call's result included) is
/// read. Everything else goes on to rmcp unchanged.
struct Ordered<T> {
    inner: T,
    name: String,
    down: Arc<Downstream>,
}

impl<T> Ordered<T> {
    fn new(inner: T, client: &UpstreamClient) -> Self {
        Self {
            inner,
            name: client.name.clone(),
            down: client.down.clone(),
        }
    }
}

/// How long relaying one notification to the agent may hold up the upstream's reader (an
/// agent that stops reading must not stall the upstream session).
const RELAY_WAIT: Duration = Duration::from_secs(1);

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Ordered<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        use rmcp::model::{JsonRpcMessage, ServerNotification};
        loop {
            let m = self.inner.receive().await?;
            let JsonRpcMessage::Notification(n) = m else {
                return Some(m);
            };
            match n.notification {
                ServerNotification::ProgressNotification(p) => {
                    relay_progress(&self.name, &self.down, p.params).await;
                }
                ServerNotification::LoggingMessageNotification(l) => {
                    if let Some(peer) = self.down.latest() {
                        let _ =
                            tokio::time::timeout(RELAY_WAIT, peer.notify_logging_message(l.params))
                                .await;
                    }
                }
                other => {
                    return Some(JsonRpcMessage::Notification(
                        rmcp::model::JsonRpcNotification {
                            jsonrpc: n.jsonrpc,
                            notification: other,
                        },
                    ));
                }
            }
        }
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// Relays one progress notification from upstream `name` to the agent whose call it belongs
/// to, under the agent's token; progress for a call nobody tracks (any more) is dropped.
async fn relay_progress(name: &str, down: &Downstream, mut p: ProgressNotificationParam) {
    let to = down.progress.lock().ok().and_then(|g| {
        g.get(&(name.to_string(), p.progress_token.clone()))
            .cloned()
    });
    if let Some((peer, agent_token)) = to {
        p.progress_token = agent_token;
        let _ = tokio::time::timeout(RELAY_WAIT, peer.notify_progress(p)).await;
    }
}

async fn connect(
    target: &Target,
    client: UpstreamClient,
) -> Result<RunningService<RoleClient, UpstreamClient>, String> {
    match target {
        Target::Url(url) => {
            let t = rmcp::transport::StreamableHttpClientTransport::from_uri(url.clone());
            let t = Ordered::new(t, &client);
            client.serve(t).await.map_err(|e| error_chain(&e))
        }
        Target::Command(cmd) => {
            let Some((prog, args)) = cmd.split_first() else {
                return Err("no upstream command given".into());
            };
            let mut c = tokio::process::Command::new(prog);
            c.args(args).kill_on_drop(true);
            let (t, _) = rmcp::transport::TokioChildProcess::builder(c)
                .stderr(std::process::Stdio::inherit())
                .spawn()
                .map_err(|e| format!("cannot start {prog}: {e}"))?;
            let t = Ordered::new(t, &client);
            client.serve(t).await.map_err(|e| error_chain(&e))
        }
    }
}

pub(crate) use crate::service::error_chain;

impl Supervisor {
    /// Starts the upstream and keeps it running until `ct` is cancelled. Each death or failed
    /// start is queued as an `mcp_protocol_failure` finding; restarts wait `backoff.initial`,
    /// doubling up to `backoff.max` (reset after a session that lived 10 s).
    pub fn spawn(
        name: String,
        target: Target,
        down: Arc<Downstream>,
        queue: Queue,
        backoff: Backoff,
        ct: CancellationToken,
    ) -> Self {
        let (tx, rx) = watch::channel(Conn::Starting);
        let info = Arc::new(Mutex::new(None));
        let info2 = info.clone();
        tokio::spawn(async move {
            let mut wait = backoff.initial;
            loop {
                let client = UpstreamClient {
                    name: name.clone(),
                    down: down.clone(),
                };
                let started = Instant::now();
                let reason = tokio::select! {
                    r = connect(&target, client) => match r {
                        Ok(running) => {
                            if let Ok(mut g) = info2.lock() {
                                *g = running.peer_info().map(|i| (*i).clone());
                            }
                            tracing::info!(upstream = %name, target = %target.describe(), "upstream connected");
                            let _ = tx.send(Conn::Up(running.peer().clone()));
                            let run_ct = running.cancellation_token();
                            let r = tokio::select! {
                                r = running.waiting() => format!("{r:?}"),
                                () = ct.cancelled() => { run_ct.cancel(); String::new() }
                            };
                            if started.elapsed() >= Duration::from_secs(10) {
                                wait = backoff.initial;
                            }
                            format!("the upstream session ended ({r})")
                        }
                        Err(e) => format!("cannot start the upstream session: {e}"),
                    },
                    () = ct.cancelled() => String::new(),
                };
                if ct.is_cancelled() {
                    let _ = tx.send(Conn::Stopped);
                    return;
                }
                tracing::warn!(upstream = %name, %reason, retry_in_ms = wait.as_millis() as u64, "upstream down; restarting");
                queue.push(Job::Failure {
                    kind: FailureKind::Connection,
                    detail: reason.clone(),
                });
                let _ = tx.send(Conn::Down {
                    reason,
                    retry_at: Instant::now() + wait,
                });
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = ct.cancelled() => { let _ = tx.send(Conn::Stopped); return; }
                }
                wait = (wait * 2).min(backoff.max);
            }
        });
        Self { rx, info }
    }

    /// The upstream's `initialize` answer, once connected.
    pub fn info(&self) -> Option<ServerPeerInfo> {
        self.info.lock().ok().and_then(|g| g.clone())
    }

    /// The live peer, waiting up to `wait` for a (re)start.
    ///
    /// # Errors
    /// A sentence saying why there is no upstream (down and restarting, or stopped).
    pub async fn peer(&self, wait: Duration) -> Result<Peer<RoleClient>, String> {
        let mut rx = self.rx.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = rx.borrow_and_update().clone();
            match now {
                Conn::Up(p) if !p.is_transport_closed() => return Ok(p),
                Conn::Stopped => return Err("the guard proxy is shutting down".into()),
                _ => {}
            }
            let why = match &*rx.borrow() {
                Conn::Down { reason, retry_at } => format!(
                    "the upstream is down ({reason}); next restart in {} ms",
                    retry_at
                        .saturating_duration_since(Instant::now())
                        .as_millis()
                ),
                _ => "the upstream is not connected yet".to_string(),
            };
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return Err(why),
            }
        }
    }
}
