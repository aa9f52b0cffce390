#![allow(dead_code)]
//! Shared helpers: spawn the real binary, temp databases, MCP client calls.

pub mod backends;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_ai-incident-mcp");

/// A raw MCP `initialize` request line (id 1) and the `initialized` notification after it.
pub const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
pub const INITIALIZED: &str = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn db_in(dir: &Path) -> String {
    dir.join("incidents.db").to_string_lossy().into_owned()
}

/// A `tokio::process::Command` for the binary with a database and quiet logs.
pub fn command(db: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(BIN);
    c.env("AI_INCIDENT_DB", db)
        .env("AI_INCIDENT_LOG", "warn")
        .env_remove("AI_INCIDENT_TOKEN")
        .kill_on_drop(true);
    c
}

pub type Client = RunningService<RoleClient, ()>;

/// Spawns `serve --stdio` and connects the rmcp client to it.
pub async fn stdio_client(db: &str, extra: &[&str]) -> Client {
    use rmcp::ServiceExt;
    use rmcp::transport::TokioChildProcess;
    let mut cmd = command(db);
    cmd.args(extra).args(["serve", "--stdio"]);
    let t = TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn server")
        .0;
    ().serve(t).await.expect("client handshake")
}

pub fn args(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("arguments must be an object"),
    }
}

pub async fn call(c: &Client, tool: &'static str, a: Value) -> CallToolResult {
    c.call_tool(CallToolRequestParams::new(tool).with_arguments(args(a)))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// Calls a tool that must succeed and returns its structured content.
pub async fn call_ok(c: &Client, tool: &'static str, a: Value) -> Value {
    let r = call(c, tool, a).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {:?}", r.content);
    r.structured_content.expect("structured content")
}

/// Calls a tool that must fail with isError and returns its text.
pub async fn call_err(c: &Client, tool: &'static str, a: Value) -> String {
    let r = call(c, tool, a).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "{tool} should fail: {:?}",
        r.structured_content
    );
    r.content
        .iter()
        .filter_map(|b| b.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs the CLI to completion; returns (exit code, stdout, stderr).
pub async fn run_cli(db: &str, a: &[&str]) -> (i32, String, String) {
    let out = command(db).args(a).output().await.expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `serve --http 127.0.0.1:0`-style server on a free port; returns the child and base URL.
pub async fn http_server(db: &str, extra: &[&str]) -> (tokio::process::Child, String) {
    http_server_with(db, extra, &[]).await
}

/// As [`http_server`], with extra environment variables.
pub async fn http_server_env(db: &str, envs: &[(&str, &str)]) -> (tokio::process::Child, String) {
    http_server_with(db, &[], envs).await
}

async fn http_server_with(
    db: &str,
    extra: &[&str],
    envs: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut cmd = command(db);
    cmd.envs(envs.iter().copied());
    cmd.args(extra)
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("AI_INCIDENT_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = cmd.spawn().expect("spawn http server");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(rest) = l.split("listening on ").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server start timeout");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

pub fn repo_path(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A fake [`Notifier`](ai_incident_mcp::service::Notifier): records every delivery it is given
/// (channel, notification) and succeeds, so tests read what the outbox sent without a receiver.
#[derive(Default)]
pub struct RecordingNotifier {
    sent: std::sync::Mutex<Vec<(String, ai_incident_mcp::notify::Notification)>>,
}

impl RecordingNotifier {
    /// The ids of the notifications delivered to `channel`, in delivery order (repeats kept).
    pub fn ids(&self, channel: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(c, _)| c == channel)
            .map(|(_, n)| n.id.clone())
            .collect()
    }
    /// How many deliveries of notification `id` there were (any channel).
    pub fn count(&self, id: &str) -> usize {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| n.id == id)
            .count()
    }
}

#[async_trait::async_trait]
impl ai_incident_mcp::service::Notifier for RecordingNotifier {
    async fn deliver(
        &self,
        channel: &str,
        n: &ai_incident_mcp::notify::Notification,
    ) -> Result<ai_incident_mcp::notify::DeliveryReceipt, ai_incident_mcp::notify::DeliveryError>
    {
        self.sent
            .lock()
            .unwrap()
            .push((channel.to_string(), n.clone()));
        Ok(ai_incident_mcp::notify::DeliveryReceipt {
            channel: channel.to_string(),
            kind: ai_incident_mcp::notify::ChannelKind::Webhook,
            notification_id: n.id.clone(),
            status: Some(200),
            detail: None,
        })
    }
}

/// Serves `svc` over an in-process duplex pipe and connects an rmcp client to it (same tools
/// and wire as the binary, but the test owns the service's clock and notifier).
pub async fn in_process_client(
    svc: std::sync::Arc<ai_incident_mcp::service::IncidentService>,
) -> Client {
    use rmcp::ServiceExt;
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        if let Ok(s) = ai_incident_mcp::mcp::IncidentMcp::new(svc)
            .serve(server_io)
            .await
        {
            let _ = s.waiting().await;
        }
    });
    ().serve(client_io).await.expect("client handshake")
}
