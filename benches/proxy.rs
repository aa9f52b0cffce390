//! Overhead of the guard proxy (issue #12): a pass-through `tools/call` with a 1 KB argument and
//! a 4 KB result, called directly on an upstream MCP server and through `ai-incident-mcp proxy`,
//! at 1 and at 32 requests in flight. Real processes over stdio: this bench binary is the agent
//! (rmcp client) and, re-executed with `PROXY_BENCH_UPSTREAM=1`, the upstream (an rmcp echo
//! server). The proxy runs with its defaults (`monitor`: every argument and result is screened
//! off the response path, samples recorded). Prints p50 / p99 per call and calls/s, each the
//! median of `PROXY_BENCH_RUNS` runs (default 3), direct and proxied in the same run.
//!
//! Run: `cargo bench --bench proxy` (env `PROXY_BENCH_CALLS`, default 2000 per run and setting).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::{RoleServer, ServerHandler, ServiceExt};

const BIN: &str = env!("CARGO_BIN_EXE_ai-incident-mcp");

#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
    async fn list_tools(
        &self,
        _r: Option<PaginatedRequestParams>,
        _c: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema =
            serde_json::json!({"type": "object", "properties": {"text": {"type": "string"}}});
        let serde_json::Value::Object(schema) = schema else {
            unreachable!()
        };
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Echo a text back, padded to 4 KB.",
            Arc::new(schema),
        )]))
    }
    async fn call_tool(
        &self,
        r: CallToolRequestParams,
        _c: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = r
            .arguments
            .as_ref()
            .and_then(|a| a.get("text"))
            .and_then(|t| t.as_str())
            .unwrap_or("");
        let mut out = String::with_capacity(4096);
        while out.len() < 4096 {
            out.push_str(text);
            out.push(' ');
        }
        out.truncate(4096);
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(out),
        ])))
    }
}

type Client = RunningService<RoleClient, ()>;

async fn connect(cmd: tokio::process::Command) -> Client {
    let (t, _) = rmcp::transport::TokioChildProcess::builder(cmd)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    ().serve(t).await.expect("handshake")
}

fn upstream_cmd() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(std::env::current_exe().expect("bench exe"));
    c.env("PROXY_BENCH_UPSTREAM", "1").kill_on_drop(true);
    c
}

fn proxy_cmd(dir: &std::path::Path) -> tokio::process::Command {
    let cfg = dir.join("proxy.toml");
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\npin_lock = {:?}\n",
            dir.join("pins.json").to_string_lossy()
        ),
    )
    .expect("config");
    let mut c = tokio::process::Command::new(BIN);
    c.args(["--db"])
        .arg(dir.join("bench.db"))
        .arg("--config")
        .arg(&cfg)
        .args(["proxy", "--name", "bench", "--"])
        .arg(std::env::current_exe().expect("bench exe"))
        .env("PROXY_BENCH_UPSTREAM", "1")
        .env("AI_INCIDENT_LOG", "error")
        .kill_on_drop(true);
    c
}

/// A 1 KB argument of ordinary words (nothing the screen flags).
fn argument() -> String {
    let words = "please summarise the quarterly delivery figures for the northern region and list open orders ";
    let mut s = String::new();
    while s.len() < 1024 {
        s.push_str(words);
    }
    s.truncate(1024);
    s
}

struct Stats {
    p50_us: f64,
    p99_us: f64,
    calls_per_s: f64,
}

async fn measure(c: &Client, in_flight: usize, calls: usize) -> Stats {
    let text = argument();
    let per = calls / in_flight;
    let peer = c.peer().clone();
    // Warm up.
    for _ in 0..50 {
        call(&peer, &text).await;
    }
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..in_flight {
        let p = peer.clone();
        let t = text.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per);
            for _ in 0..per {
                let s = Instant::now();
                call(&p, &t).await;
                lat.push(s.elapsed());
            }
            lat
        }));
    }
    let mut all: Vec<Duration> = Vec::with_capacity(calls);
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let wall = t0.elapsed();
    all.sort();
    let q = |f: f64| all[((all.len() as f64 - 1.0) * f).round() as usize].as_secs_f64() * 1e6;
    Stats {
        p50_us: q(0.50),
        p99_us: q(0.99),
        calls_per_s: all.len() as f64 / wall.as_secs_f64(),
    }
}

async fn call(p: &rmcp::service::Peer<RoleClient>, text: &str) {
    let mut a = serde_json::Map::new();
    a.insert("text".into(), serde_json::Value::String(text.to_string()));
    let r = p
        .call_tool(CallToolRequestParams::new("echo").with_arguments(a))
        .await
        .expect("call");
    assert_ne!(r.is_error, Some(true), "{r:?}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    if std::env::var_os("PROXY_BENCH_UPSTREAM").is_some() {
        let running = Echo
            .serve(rmcp::transport::stdio())
            .await
            .expect("serve upstream");
        let _ = running.waiting().await;
        return;
    }
    // `cargo bench` passes --bench; nothing else is understood.
    let runs: usize = std::env::var("PROXY_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let calls: usize = std::env::var("PROXY_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().expect("tempdir");
    let direct = connect(upstream_cmd()).await;
    let proxied = connect(proxy_cmd(dir.path())).await;
    proxied
        .list_all_tools()
        .await
        .expect("list through the proxy");
    println!(
        "guard proxy overhead: tools/call, 1 KB argument, 4 KB result, {calls} calls per run, median of {runs} runs"
    );
    println!(
        "{:>9} {:>9} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>9} {:>9}",
        "in flight",
        "",
        "direct p50",
        "p99",
        "calls/s",
        "proxy p50",
        "p99",
        "calls/s",
        "+p50 µs",
        "+p99 µs"
    );
    for in_flight in [1usize, 32] {
        let mut d = (Vec::new(), Vec::new(), Vec::new());
        let mut p = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=runs {
            let ds = measure(&direct, in_flight, calls).await;
            d.0.push(ds.p50_us);
            d.1.push(ds.p99_us);
            d.2.push(ds.calls_per_s);
            let ps = measure(&proxied, in_flight, calls).await;
            p.0.push(ps.p50_us);
            p.1.push(ps.p99_us);
            p.2.push(ps.calls_per_s);
            // Each run, with the machine's load average: the figures mean little on a busy box.
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            println!(
                "  run {run} in flight {in_flight:>2}: direct {:.0}/{:.0} µs {:.0}/s, proxied {:.0}/{:.0} µs {:.0}/s (loadavg {})",
                ds.p50_us,
                ds.p99_us,
                ds.calls_per_s,
                ps.p50_us,
                ps.p99_us,
                ps.calls_per_s,
                load.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let (d50, d99, dcs) = (median(d.0), median(d.1), median(d.2));
        let (p50, p99, pcs) = (median(p.0), median(p.1), median(p.2));
        println!(
            "{in_flight:>9} {:>9} | {d50:>8.0}µs {d99:>8.0}µs {dcs:>10.0} | {p50:>8.0}µs {p99:>8.0}µs {pcs:>10.0} | {:>9.0} {:>9.0}",
            "",
            p50 - d50,
            p99 - d99
        );
    }
    let _ = proxied.cancel().await;
    let _ = direct.cancel().await;
}
