//! Streamable HTTP sessions at `/mcp`: a cap on live sessions (503 with `Retry-After` past it),
//! idle expiry that removes the session from rmcp's session map so its memory is freed (rmcp's
//! own idle timeout ends the session worker but leaves its handle in the map), 404 for `DELETE`
//! of an unknown session, and JSON-RPC answers for bodies that are not JSON (`-32700`) or not a
//! message (`-32600`) instead of rmcp's 415.
//!
//! May import: `crate::mcp` (the stdio line classifier); axum, rmcp's HTTP transport and model, tokio.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use tokio_util::sync::CancellationToken;

use super::limits::{BufferedBody, GuardedBody};

const SESSION_HEADER: &str = "mcp-session-id";

#[derive(Debug)]
struct Track {
    last: Instant,
    in_flight: usize,
}

/// Live-session accounting over rmcp's [`LocalSessionManager`].
#[derive(Debug)]
pub struct SessionGate {
    manager: Arc<LocalSessionManager>,
    max: usize,
    idle: Duration,
    creating: AtomicUsize,
    tracks: Mutex<HashMap<String, Track>>,
}

impl SessionGate {
    /// A gate over `manager` with at most `max` live sessions, each closed after `idle`
    /// without a request.
    pub fn new(manager: Arc<LocalSessionManager>, max: usize, idle: Duration) -> Arc<Self> {
        Arc::new(Self {
            manager,
            max,
            idle,
            creating: AtomicUsize::new(0),
            tracks: Mutex::new(HashMap::new()),
        })
    }

    /// Sessions in rmcp's map now.
    pub async fn live(&self) -> usize {
        self.manager.sessions.read().await.len()
    }

    /// The configured cap.
    pub fn max(&self) -> usize {
        self.max
    }

    fn tracks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn begin(self: &Arc<Self>, id: &str) -> SessionActivity {
        let mut t = self.tracks();
        let e = t.entry(id.to_owned()).or_insert(Track {
            last: Instant::now(),
            in_flight: 0,
        });
        e.in_flight += 1;
        e.last = Instant::now();
        SessionActivity {
            gate: self.clone(),
            id: id.to_owned(),
        }
    }

    /// Seconds until the soonest tracked session may expire (for `Retry-After`), at least 1.
    fn retry_after(&self) -> u64 {
        let now = Instant::now();
        self.tracks()
            .values()
            .filter(|t| t.in_flight == 0)
            .map(|t| (t.last + self.idle).saturating_duration_since(now))
            .min()
            .unwrap_or(self.idle)
            .as_secs()
            .max(1)
    }

    /// One expiry pass: closes sessions idle for longer than the timeout (and sessions whose
    /// worker rmcp already ended), dropping their handles from the map.
    pub async fn sweep(&self) -> usize {
        let ids: std::collections::HashSet<String> = self
            .manager
            .sessions
            .read()
            .await
            .keys()
            .map(|k| k.to_string())
            .collect();
        let now = Instant::now();
        let expired: Vec<String> = {
            let mut t = self.tracks();
            t.retain(|id, _| ids.contains(id));
            ids.iter()
                .filter(|id| {
                    let e = t.entry((*id).clone()).or_insert(Track {
                        last: now,
                        in_flight: 0,
                    });
                    e.in_flight == 0 && now.saturating_duration_since(e.last) >= self.idle
                })
                .cloned()
                .collect()
        };
        for id in &expired {
            let sid: rmcp::transport::streamable_http_server::SessionId = Arc::from(id.as_str());
            if let Err(e) = self.manager.close_session(&sid).await {
                tracing::debug!(session = %id, "closing idle session: {e}");
            }
            self.tracks().remove(id);
        }
        if !expired.is_empty() {
            tracing::debug!(closed = expired.len(), "idle sessions closed");
        }
        expired.len()
    }

    /// Runs [`SessionGate::sweep`] periodically until `ct` is cancelled.
    pub fn spawn_reaper(self: &Arc<Self>, ct: CancellationToken) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let gate = self.clone();
        let every = (self.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => { gate.sweep().await; }
                    () = ct.cancelled() => break,
                }
            }
        });
    }
}

/// A request of one session, from arrival until its response body ends.
struct SessionActivity {
    gate: Arc<SessionGate>,
    id: String,
}

impl Drop for SessionActivity {
    fn drop(&mut self) {
        let mut t = self.gate.tracks();
        if let Some(e) = t.get_mut(&self.id) {
            e.in_flight = e.in_flight.saturating_sub(1);
            e.last = Instant::now();
        }
    }
}

/// Releases one "session being created" slot.
struct Creating(Arc<SessionGate>);

impl Drop for Creating {
    fn drop(&mut self) {
        self.0.creating.fetch_sub(1, Ordering::SeqCst);
    }
}

fn jsonrpc_error(
    status: StatusCode,
    id: serde_json::Value,
    code: i64,
    message: String,
) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})),
    )
        .into_response()
}

/// What a POST body is, for the answer rmcp would get wrong.
fn check_body(body: &[u8]) -> Option<Response> {
    let e = match serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        Ok(_) => return None,
        Err(e) => e,
    };
    match serde_json::from_slice::<serde_json::Value>(body) {
        Err(e2) => Some(jsonrpc_error(
            StatusCode::BAD_REQUEST,
            serde_json::Value::Null,
            -32700,
            format!("Parse error: {e2}. The body must be one JSON-RPC 2.0 message as JSON."),
        )),
        Ok(v) => match crate::mcp::stdio::not_a_message(&v, &e) {
            Some((id, message)) => {
                Some(jsonrpc_error(StatusCode::BAD_REQUEST, id, -32600, message))
            }
            // A notification we cannot read: accepted, and (as JSON-RPC says) not answered.
            None => Some(StatusCode::ACCEPTED.into_response()),
        },
    }
}

/// Whether the request says its body is JSON (otherwise rmcp answers 415, which is right).
fn is_json(h: &axum::http::HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|e| e.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// The `/mcp` middleware.
pub async fn mcp_layer(State(gate): State<Arc<SessionGate>>, req: Request, next: Next) -> Response {
    let sid = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if req.method() == Method::POST
        && is_json(req.headers())
        && let Some(BufferedBody(b)) = req.extensions().get::<BufferedBody>()
        && let Some(resp) = check_body(b)
    {
        return resp;
    }
    match (req.method(), sid) {
        (&Method::DELETE, Some(id)) => {
            if !gate
                .manager
                .sessions
                .read()
                .await
                .keys()
                .any(|k| k.as_ref() == id.as_str())
            {
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(serde_json::json!({"error": "no such session (it was closed or has expired)"})),
                )
                    .into_response();
            }
            gate.tracks().remove(&id);
            let mut resp = next.run(req).await;
            // rmcp answers a closed session with 202 Accepted; the spec's clients (the Python
            // SDK among them) expect 200/204 and log "Session termination failed: 202".
            if resp.status() == StatusCode::ACCEPTED {
                *resp.status_mut() = StatusCode::NO_CONTENT;
                *resp.body_mut() = axum::body::Body::empty();
            }
            resp
        }
        (_, Some(id)) => {
            let activity = gate.begin(&id);
            let resp = next.run(req).await;
            GuardedBody::wrap(resp, activity)
        }
        (&Method::POST, None) => {
            let pending = gate.creating.fetch_add(1, Ordering::SeqCst);
            let creating = Creating(gate.clone());
            if gate.live().await + pending >= gate.max {
                let retry = gate.retry_after();
                tracing::warn!(max = gate.max, "session cap reached; initialize refused");
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, retry.to_string())],
                    axum::Json(serde_json::json!({
                        "jsonrpc": "2.0", "id": null,
                        "error": {"code": -32000, "message": format!(
                            "too many live sessions (http.max_sessions = {}); retry after {retry}s, or close sessions you no longer use (DELETE /mcp)",
                            gate.max
                        )}
                    })),
                )
                    .into_response();
            }
            let resp = next.run(req).await;
            drop(creating);
            if let Some(id) = resp
                .headers()
                .get(SESSION_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                drop(gate.begin(id));
            }
            resp
        }
        _ => next.run(req).await,
    }
}
