//! REST JSON bodies end to end: the first input byte picks a write route of `/api/v1`, the rest
//! is sent as its body to the server's real router (`http::app`, with its guards and body
//! limits, as `serve` builds it) over a real SQLite store, through tower's `oneshot`. Whatever
//! the bytes, the answer is a 2xx or a 4xx with a JSON `error` body — never a 5xx, never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use ai_incident_mcp::config::Config;
use ai_incident_mcp::http::{HttpOptions, app};
use ai_incident_mcp::mcp::IncidentMcp;
use axum::body::Body;
use axum::http::{Method, Request, header};
use libfuzzer_sys::fuzz_target;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Largest body the fuzz router takes (the 413 path is exercised above it).
const MAX_BODY: usize = 64 * 1024;

struct World {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    incident: String,
    _dir: tempfile::TempDir,
}

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/incidents/report"),
    ("POST", "/api/v1/screen"),
    ("POST", "/api/v1/metrics"),
    ("PATCH", "/api/v1/incidents/{id}"),
    ("POST", "/api/v1/incidents/{id}/acknowledge"),
    ("POST", "/api/v1/incidents/{id}/escalate"),
    ("POST", "/api/v1/incidents/{id}/resolve"),
    ("POST", "/api/v1/incidents/{id}/contain"),
    ("POST", "/api/v1/incidents/{id}/lift-containment"),
    ("POST", "/api/v1/incidents/{id}/document"),
];

fn request(method: &str, path: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header(header::HOST, "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request")
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::load(None).expect("default config");
        cfg.documentation.dir = dir.path().join("docs");
        let db = dir.path().join("fuzz.db");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let svc = ai_incident_mcp::app::build_service(&db.to_string_lossy(), Arc::new(cfg))
            .expect("service");
        let opts = HttpOptions {
            max_body_bytes: MAX_BODY,
            ..HttpOptions::default()
        };
        // `app` spawns the session reaper: it needs the runtime.
        let router = {
            let _g = rt.enter();
            app(IncidentMcp::new(svc), opts, CancellationToken::new())
        };
        // One real incident so the `{id}` routes reach their use case, not only the 404.
        let report = br#"{"incident_type":"security","description":"seed incident for the REST fuzz target","reporter_email":"fuzz@example.com","affected_system":"fuzz"}"#;
        let incident = rt.block_on(async {
            let res = router
                .clone()
                .oneshot(request("POST", "/api/v1/incidents/report", report.to_vec()))
                .await
                .expect("infallible");
            assert!(res.status().is_success(), "seed report: {}", res.status());
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .expect("body");
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).expect("report answers JSON");
            v["incident_id"]
                .as_str()
                .expect("report returns incident_id")
                .to_string()
        });
        World {
            rt,
            router,
            incident,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let w = world();
    let (method, path) = ROUTES[pick as usize % ROUTES.len()];
    let path = path.replace("{id}", &w.incident);
    let req = request(method, &path, body.to_vec());
    let (status, bytes) = w.rt.block_on(async {
        let res = w.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 22)
            .await
            .expect("body");
        (status, bytes)
    });
    assert!(
        status.is_success() || status.is_client_error(),
        "{method} {path} answered {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{status} body is not JSON ({e}): {bytes:?}"));
        assert!(v.get("error").is_some(), "{status} without an error: {v}");
    }
});
