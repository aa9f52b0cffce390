//! The upstream prober (the service's [`Prober`] port): an HTTP request with reqwest for
//! `kind = "http"`, and for `kind = "mcp"` a real MCP session with the rmcp client over stdio
//! (a child process) or Streamable HTTP: `initialize` → `tools/list` (every input schema checked,
//! each definition hashed for the pin comparison) → the optional safe `call_tool`. Every probe is
//! bounded by the upstream's `timeout`; header values come from environment variables.
//!
//! May import: `crate::config`, `crate::service`, `crate::checks`, `crate::domain`; reqwest, rmcp,
//! tokio.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::checks::dataquality::{input_schema_problem, tool_hash};
use crate::checks::upstreams::FailureKind;
use crate::config::{UpstreamConfig, UpstreamKind};
use crate::service::{ProbeReport, Prober, error_chain};

/// Probes over the network and child processes.
#[derive(Debug, Clone)]
pub struct NetProber {
    http: reqwest::Client,
}

impl NetProber {
    /// A prober with its own HTTP client.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS backend).
    pub fn new() -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .build()
            .map_err(|e| format!("cannot build the probe HTTP client: {e}"))?;
        Ok(Self { http })
    }
}

fn fail(kind: FailureKind, detail: String, started: Instant) -> ProbeReport {
    ProbeReport {
        latency: started.elapsed(),
        failure: Some((kind, detail)),
        tools: None,
    }
}

fn classify_error(text: &str) -> FailureKind {
    let t = text.to_ascii_lowercase();
    if t.contains("protocol version") || t.contains("unsupported protocol") {
        FailureKind::ProtocolVersion
    } else if t.contains("refused")
        || t.contains("connect")
        || t.contains("dns")
        || t.contains("no such file")
        || t.contains("not found")
        || t.contains("spawn")
    {
        FailureKind::Connection
    } else if t.contains("timed out") || t.contains("timeout") {
        FailureKind::Timeout
    } else {
        FailureKind::Malformed
    }
}

#[async_trait]
impl Prober for NetProber {
    async fn probe(&self, u: &UpstreamConfig) -> ProbeReport {
        let started = Instant::now();
        let fut = async {
            match u.kind {
                UpstreamKind::Http => self.probe_http(u, started).await,
                UpstreamKind::Mcp => probe_mcp(u, started).await,
            }
        };
        let mut rep = match tokio::time::timeout(u.timeout, fut).await {
            Ok(r) => r,
            Err(_) => fail(
                FailureKind::Timeout,
                format!("no complete answer within {}", fmt(u.timeout)),
                started,
            ),
        };
        if rep.failure.is_none()
            && let Some(limit) = u.latency_threshold
            && rep.latency > limit
        {
            rep.failure = Some((
                FailureKind::Slow,
                format!(
                    "answered in {} ms, above the latency threshold of {}",
                    rep.latency.as_millis(),
                    fmt(limit)
                ),
            ));
        }
        rep
    }
}

fn fmt(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(d).to_string()
}

impl NetProber {
    async fn probe_http(&self, u: &UpstreamConfig, started: Instant) -> ProbeReport {
        let Some(url) = u.url.as_deref() else {
            return fail(FailureKind::Connection, "no url configured".into(), started);
        };
        let method = reqwest::Method::from_bytes(u.method.trim().to_ascii_uppercase().as_bytes())
            .unwrap_or(reqwest::Method::GET);
        let mut req = self.http.request(method, url).timeout(u.timeout);
        for (header, var) in &u.headers_from_env {
            match std::env::var(var) {
                Ok(v) => req = req.header(header.as_str(), v),
                Err(_) => {
                    return fail(
                        FailureKind::Connection,
                        format!("environment variable {var} for header {header} is not set"),
                        started,
                    );
                }
            }
        }
        match req.send().await {
            Err(e) => {
                let kind = if e.is_timeout() {
                    FailureKind::Timeout
                } else {
                    FailureKind::Connection
                };
                fail(
                    kind,
                    format!("request failed: {}", error_chain(&e)),
                    started,
                )
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let ok = if u.expected_status.is_empty() {
                    resp.status().is_success()
                } else {
                    u.expected_status.contains(&status)
                };
                // Read the body so the latency covers the whole answer.
                let _ = resp.bytes().await;
                if ok {
                    ProbeReport {
                        latency: started.elapsed(),
                        failure: None,
                        tools: None,
                    }
                } else {
                    fail(
                        FailureKind::HttpStatus,
                        format!(
                            "HTTP {status}, expected {}",
                            if u.expected_status.is_empty() {
                                "2xx".to_string()
                            } else {
                                format!("{:?}", u.expected_status)
                            }
                        ),
                        started,
                    )
                }
            }
        }
    }
}

async fn tcp_reachable(url: &str) -> Result<(), String> {
    let u = reqwest::Url::parse(url).map_err(|e| format!("bad url {url}: {e}"))?;
    let host = u
        .host_str()
        .ok_or_else(|| format!("url {url} has no host"))?;
    let port = u
        .port_or_known_default()
        .ok_or_else(|| format!("url {url} has no port"))?;
    tokio::net::TcpStream::connect((host, port))
        .await
        .map(|_| ())
        .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))
}

async fn probe_mcp(u: &UpstreamConfig, started: Instant) -> ProbeReport {
    use rmcp::ServiceExt;
    let client = if let Some(url) = u.url.as_deref() {
        // The transport's errors do not carry the socket error; look first, so a server that
        // is gone reads as a connection failure, not as a broken protocol.
        if let Err(e) = tcp_reachable(url).await {
            return fail(FailureKind::Connection, e, started);
        }
        let t = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_string());
        ().serve(t).await.map_err(|e| error_chain(&e))
    } else {
        let Some((prog, args)) = u.command.split_first() else {
            return fail(
                FailureKind::Connection,
                "no command or url configured".into(),
                started,
            );
        };
        let mut cmd = tokio::process::Command::new(prog);
        cmd.args(args).kill_on_drop(true);
        match rmcp::transport::TokioChildProcess::builder(cmd)
            .stderr(std::process::Stdio::null())
            .spawn()
        {
            Ok((t, _)) => ().serve(t).await.map_err(|e| error_chain(&e)),
            Err(e) => {
                return fail(
                    FailureKind::Connection,
                    format!("cannot start {prog}: {e}"),
                    started,
                );
            }
        }
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            return fail(
                classify_error(&e),
                format!("initialize failed: {e}"),
                started,
            );
        }
    };
    let report = mcp_session(u, &client, started).await;
    let _ = client.cancel().await;
    report
}

async fn mcp_session(
    u: &UpstreamConfig,
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    started: Instant,
) -> ProbeReport {
    if let Some(info) = client.peer_info() {
        let v = &info.protocol_version;
        if !rmcp::model::ProtocolVersion::KNOWN_VERSIONS.contains(v) {
            return fail(
                FailureKind::ProtocolVersion,
                format!(
                    "server answered with unknown protocol version {}",
                    v.as_str()
                ),
                started,
            );
        }
    }
    let tools = match client.list_all_tools().await {
        Ok(t) => t,
        Err(e) => {
            let e = error_chain(&e);
            return fail(
                classify_error(&e),
                format!("tools/list failed: {e}"),
                started,
            );
        }
    };
    let mut hashes = BTreeMap::new();
    for t in &tools {
        let v = serde_json::to_value(t).unwrap_or_default();
        let schema = v.get("inputSchema").cloned().unwrap_or_default();
        if let Some(problem) = input_schema_problem(&schema) {
            return ProbeReport {
                latency: started.elapsed(),
                failure: Some((
                    FailureKind::ToolSchema,
                    format!("tool {} has an invalid input schema: {problem}", t.name),
                )),
                tools: Some(hashes),
            };
        }
        hashes.insert(t.name.to_string(), tool_hash(&v));
    }
    if let Some(name) = &u.call_tool {
        let mut p = rmcp::model::CallToolRequestParams::new(name.clone());
        if let Some(args) = &u.call_arguments {
            match serde_json::to_value(args) {
                Ok(serde_json::Value::Object(m)) => p = p.with_arguments(m),
                _ => {
                    return fail(
                        FailureKind::ToolCall,
                        "call_arguments is not an object".into(),
                        started,
                    );
                }
            }
        }
        match client.call_tool(p).await {
            Err(e) => {
                let e = error_chain(&e);
                return ProbeReport {
                    latency: started.elapsed(),
                    failure: Some((
                        call_failure_kind(classify_error(&e)),
                        format!("{name} call failed: {e}"),
                    )),
                    tools: Some(hashes),
                };
            }
            Ok(r) if r.is_error == Some(true) => {
                let text: String = r
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                    .collect::<Vec<_>>()
                    .join(" ");
                return ProbeReport {
                    latency: started.elapsed(),
                    failure: Some((
                        FailureKind::ToolCall,
                        format!(
                            "{name} returned an error: {}",
                            crate::domain::incident::truncate_chars(&text, 200)
                        ),
                    )),
                    tools: Some(hashes),
                };
            }
            Ok(_) => {}
        }
    }
    ProbeReport {
        latency: started.elapsed(),
        failure: None,
        tools: Some(hashes),
    }
}

/// A protocol error on the call itself (after a good list) is a tool-call failure unless the
/// connection went away or timed out.
fn call_failure_kind(k: FailureKind) -> FailureKind {
    match k {
        FailureKind::Connection | FailureKind::Timeout => k,
        _ => FailureKind::ToolCall,
    }
}
