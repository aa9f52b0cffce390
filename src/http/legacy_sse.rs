//! The legacy HTTP+SSE transport (MCP 2024-11-05), which rmcp no longer
//! ships: `GET /sse` opens an event stream whose first event names the POST
//! endpoint; `POST /message?sessionId=…` carries client messages (202).
//! Each session runs the same handler value over a channel pair. Host and
//! Origin are checked by the router's guard layer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, Stream, StreamExt};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use tokio_util::sync::CancellationToken;

use crate::mcp::IncidentMcp;

type Sessions = Arc<Mutex<HashMap<String, futures::channel::mpsc::Sender<ClientJsonRpcMessage>>>>;

#[derive(Clone)]
struct SseState {
    handler: IncidentMcp,
    sessions: Sessions,
    ct: CancellationToken,
}

/// Routes `GET /sse` and `POST /message`.
pub fn router<S>(handler: IncidentMcp, max_body_bytes: usize, ct: CancellationToken) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let state = SseState {
        handler,
        sessions: Arc::new(Mutex::new(HashMap::new())),
        ct,
    };
    Router::new()
        .route("/sse", get(open_stream))
        .route("/message", post(post_message))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

struct SessionGuard {
    id: String,
    sessions: Sessions,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.sessions.lock() {
            s.remove(&self.id);
        }
        tracing::debug!(session = %self.id, "legacy SSE session closed");
    }
}

async fn open_stream(
    State(st): State<SseState>,
    who: Option<axum::Extension<crate::mcp::principal::Principal>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (c2s_tx, c2s_rx) = futures::channel::mpsc::channel::<ClientJsonRpcMessage>(256);
    let (s2c_tx, s2c_rx) = futures::channel::mpsc::channel::<ServerJsonRpcMessage>(256);
    if let Ok(mut s) = st.sessions.lock() {
        s.insert(id.clone(), c2s_tx);
    }
    // The stream acts for the token that opened it.
    let handler = match who {
        Some(axum::Extension(p)) => st.handler.clone().with_principal(p),
        None => st.handler.clone(),
    };
    let ct = st.ct.child_token();
    tokio::spawn(async move {
        match handler.serve((s2c_tx, c2s_rx)).await {
            Ok(running) => {
                tokio::select! {
                    _ = running.waiting() => {}
                    _ = ct.cancelled() => {}
                }
            }
            Err(e) => tracing::debug!("legacy SSE session ended before initialize: {e}"),
        }
    });
    let guard = SessionGuard {
        id: id.clone(),
        sessions: st.sessions.clone(),
    };
    let endpoint = Event::default()
        .event("endpoint")
        .data(format!("/message?sessionId={id}"));
    let messages = s2c_rx.map(move |m| {
        let _keep = &guard;
        let data = serde_json::to_string(&m).unwrap_or_else(|_| "{}".to_string());
        Event::default().event("message").data(data)
    });
    let stream = futures::stream::once(async move { endpoint })
        .chain(messages)
        .map(Ok::<_, Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[derive(serde::Deserialize)]
struct MessageQuery {
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
}

fn json_error(status: StatusCode, msg: String) -> Response {
    (status, axum::Json(serde_json::json!({"error": msg}))).into_response()
}

async fn post_message(
    State(st): State<SseState>,
    Query(q): Query<MessageQuery>,
    body: Bytes,
) -> Response {
    let Some(sid) = q.session_id else {
        return json_error(
            StatusCode::BAD_REQUEST,
            "missing sessionId query parameter; use the endpoint sent by GET /sse".into(),
        );
    };
    let sender = st.sessions.lock().ok().and_then(|s| s.get(&sid).cloned());
    let Some(mut sender) = sender else {
        return json_error(
            StatusCode::NOT_FOUND,
            format!("no open SSE session {sid}; open GET /sse again"),
        );
    };
    let msg = match serde_json::from_slice::<ClientJsonRpcMessage>(&body) {
        Ok(m) => m,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                format!("body is not a JSON-RPC 2.0 message: {e}"),
            );
        }
    };
    match sender.send(msg).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(_) => json_error(StatusCode::GONE, format!("SSE session {sid} has closed")),
    }
}
