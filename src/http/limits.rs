//! Connection-level resource limits: the accept loop (caps on open connections in total and per
//! client IP address), per-connection header-read and keep-alive idle timeouts, and the
//! body-read timeout middleware. These hold before authentication, so a client that opens
//! connections and never finishes a request cannot starve the others (slowloris).
//!
//! May import: axum, hyper, hyper-util, tokio, std.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

/// Open-connection accounting: a total and a per-address count.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: usize,
    max_per_client: usize,
    open: AtomicUsize,
    per_client: Mutex<HashMap<IpAddr, usize>>,
}

/// One accepted connection's slot; dropping it frees the slot.
#[derive(Debug)]
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    /// Limits of `max_total` open connections and `max_per_client` per address (0 = no cap).
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_client,
            open: AtomicUsize::new(0),
            per_client: Mutex::new(HashMap::new()),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// A slot for a connection from `ip`, or `None` past either cap.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnPermit> {
        let mut per = self.per_client.lock().unwrap_or_else(|p| p.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.max_total {
            return None;
        }
        let n = per.entry(ip).or_insert(0);
        if self.max_per_client > 0 && *n >= self.max_per_client {
            return None;
        }
        *n += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Some(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut per = self
            .limits
            .per_client
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
        self.limits.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Timeouts applied per connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnTimeouts {
    /// Whole request header within this.
    pub header_read: Duration,
    /// No request in flight for this long closes the connection.
    pub keep_alive_idle: Duration,
}

/// What a refused connection gets before it is closed.
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 69\r\n\r\n\
{\"error\":\"too many open connections; retry later or reuse a connection\"}";

/// Accepts connections on `listener` and serves `app` on each until `ct` is cancelled.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: Arc<ConnLimits>,
    timeouts: ConnTimeouts,
    ct: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = ct.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE/ENFILE or a connection that died in the backlog: back off briefly.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = limits.try_acquire(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: connection cap reached");
            let _ = stream.try_write(REFUSED);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_one(
            stream,
            peer,
            app.clone(),
            permit,
            timeouts,
            ct.clone(),
        ));
    }
}

/// Requests in flight on one connection and since when it has been idle.
struct Activity {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

/// Held by a request from arrival until its response body is finished or dropped.
pub struct InFlight(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }
    fn idle_for(&self, now: Instant) -> Option<Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(now.saturating_duration_since(since))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that holds `guard` until the body is done.
pub struct GuardedBody<G> {
    inner: Body,
    _guard: G,
}

impl<G: Send + Unpin + 'static> GuardedBody<G> {
    /// `response` with its body holding `guard`.
    pub fn wrap(response: Response, guard: G) -> Response {
        response.map(|inner| {
            Body::new(GuardedBody {
                inner,
                _guard: guard,
            })
        })
    }
}

impl<G: Unpin> hyper::body::Body for GuardedBody<G> {
    type Data = Bytes;
    type Error = axum::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    permit: ConnPermit,
    timeouts: ConnTimeouts,
    ct: CancellationToken,
) {
    use tower_service::Service;
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        idle_since: Mutex::new(Instant::now()),
    });
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        let guard = act.begin();
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let mut app = app.clone();
        async move {
            let ready = futures::future::poll_fn(|cx| {
                <Router as Service<Request>>::poll_ready(&mut app, cx)
            })
            .await;
            let resp = match ready {
                Ok(()) => app.call(req.map(Body::new)).await,
                Err(never) => match never {},
            };
            let resp = match resp {
                Ok(r) => r,
                Err(never) => match never {},
            };
            Ok::<_, std::convert::Infallible>(GuardedBody::wrap(resp, guard))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Some(timeouts.header_read))
        .keep_alive(true);
    let conn = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::pin!(conn);
    let mut closing: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let wake = match (closing, activity.idle_for(now)) {
            (Some(at), _) => at + timeouts.header_read,
            (None, Some(idle)) => now + timeouts.keep_alive_idle.saturating_sub(idle),
            (None, None) => now + timeouts.keep_alive_idle,
        };
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, "connection ended: {e}");
                }
                break;
            }
            () = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                match closing {
                    Some(at) if now >= at + timeouts.header_read => break,
                    Some(_) => {}
                    None => {
                        if activity.idle_for(now).is_some_and(|d| d >= timeouts.keep_alive_idle) {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(now);
                        }
                    }
                }
            }
            () = ct.cancelled(), if closing.is_none() => {
                conn.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
        }
    }
    drop(permit);
}

/// Settings of [`body_layer`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// The whole body within this, or 408.
    pub read_timeout: Duration,
    /// Largest body, or 413.
    pub max_bytes: usize,
}

/// A request body read in full by [`body_layer`] (also left in the request's extensions so
/// later layers can inspect it without reading it again).
#[derive(Debug, Clone)]
pub struct BufferedBody(pub Bytes);

/// Middleware: reads the whole request body within the timeout and size limit, then hands the
/// request on with the buffered body. A client that trickles its body gets 408 and the
/// connection is closed.
pub async fn body_layer(State(l): State<BodyLimits>, req: Request, next: Next) -> Response {
    use hyper::body::Body as _;
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    if req.body().size_hint().lower() > l.max_bytes as u64 {
        return too_large(l.max_bytes);
    }
    let (parts, body) = req.into_parts();
    let read = async {
        let mut buf = Vec::new();
        let mut s = body.into_data_stream();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| Some(e.to_string()))?;
            if buf.len() + chunk.len() > l.max_bytes {
                return Err(None::<String>);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(buf))
    };
    let bytes = match tokio::time::timeout(l.read_timeout, read).await {
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                axum::Json(serde_json::json!({"error": format!(
                    "the request body did not arrive within {}s; send the whole body at once",
                    l.read_timeout.as_secs_f64()
                )})),
            )
                .into_response();
        }
        Ok(Err(None)) => return too_large(l.max_bytes),
        Ok(Err(Some(e))) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONNECTION, "close")],
                axum::Json(
                    serde_json::json!({"error": format!("cannot read the request body: {e}")}),
                ),
            )
                .into_response();
        }
        Ok(Ok(b)) => b,
    };
    let mut req = Request::from_parts(parts, Body::from(bytes.clone()));
    req.extensions_mut().insert(BufferedBody(bytes));
    next.run(req).await
}

fn too_large(max: usize) -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONNECTION, "close")],
        // The REST error shape (docs/api.md), which MCP clients read as plain JSON too.
        axum::Json(serde_json::json!({"error": {
            "code": "payload_too_large",
            "message": format!("request body is over {max} bytes; send at most {max} bytes"),
        }})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_total_and_per_address() {
        let l = ConnLimits::new(3, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let p1 = l.try_acquire(a).unwrap();
        let _p2 = l.try_acquire(a).unwrap();
        assert!(l.try_acquire(a).is_none(), "per-address cap");
        let _p3 = l.try_acquire(b).unwrap();
        assert!(l.try_acquire(b).is_none(), "total cap");
        drop(p1);
        assert_eq!(l.open(), 2);
        assert!(l.try_acquire(b).is_some(), "a freed slot is reusable");
    }
}
