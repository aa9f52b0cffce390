//! Overhead of the guard proxy (issue #12): a pass-through `tools/call` with a 1 KB argument and
//! a 4 KB result, called directly on an upstream MCP server and through `ai-incident-mcp proxy`,
//! at 1 and at 32 requests in flight. Real processes over stdio: this bench binary is the agent
//! (rmcp client) and, re-executed with `PROXY_BENCH_UPSTREAM=1`, the upstream (an rmcp echo
//! server). The proxy runs with its defaults (`monitor`: every argument and result is screened
//! on the proxy's low-priority screening threads, samples recorded). Every call's argument and
//! result differ (a call number in both), so no cache could answer a repeat. Prints p50 / p99
//! per call and calls/s, each the median of `PROXY_BENCH_RUNS` runs (default 3), direct and
//! proxied in the same run; the proxy's CPU time per proxied call (utime + stime from
//! `/proc/<pid>/stat`) during each run; and, per in-flight level (one proxy process each), the
//! screening backlog left when the runs end, the time the proxy took to screen it at shutdown,
//! and the proxy's CPU per call including that drain, with the latency it predicts at 32 in
//! flight on 2 cores (Little's law: 32 × CPU per call / 2).
//!
//! Run: `cargo bench --bench proxy` (env `PROXY_BENCH_CALLS`, default 2000 per run and setting).

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::{RoleServer, ServerHandler, ServiceExt};

const BIN: &str = env!("CARGO_BIN_EXE_ai-incident-mcp");

/// Calls answered by this upstream process.
static CALLS: AtomicU64 = AtomicU64::new(0);

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
        // The call number leads the result, so each result differs from every other.
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        out.push_str(&format!("reply {n}: "));
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
        // The screening counters are logged at shutdown at INFO; the rest only on errors.
        .env(
            "AI_INCIDENT_LOG",
            "error,ai_incident_mcp::proxy::screener=info",
        )
        .kill_on_drop(true);
    c
}

/// utime + stime of process `pid` so far (from `/proc/<pid>/stat`, in clock ticks of 10 ms).
fn cpu_of(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// A proxy process the bench owns (so closing it waits for its drain without a kill timer).
struct Proxy {
    client: Client,
    child: tokio::process::Child,
    pid: u32,
    /// The `guard proxy screening drained` line, and the proxy's CPU read as it appeared.
    drained: tokio::sync::oneshot::Receiver<(String, Option<Duration>)>,
}

async fn start_proxy(dir: &std::path::Path) -> Proxy {
    let mut child = proxy_cmd(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn proxy");
    let pid = child.id().expect("proxy pid");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, drained) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        let mut tx = Some(tx);
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("guard proxy screening drained") {
                let cpu = cpu_of(pid);
                if let Some(tx) = tx.take() {
                    let _ = tx.send((l, cpu));
                }
            } else {
                eprintln!("proxy: {l}");
            }
        }
    });
    let client = ().serve((stdout, stdin)).await.expect("handshake");
    client
        .list_all_tools()
        .await
        .expect("list through the proxy");
    Proxy {
        client,
        child,
        pid,
        drained,
    }
}

/// `key=value` from a log line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
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
    /// Calls made, warm-up included.
    calls: usize,
}

async fn measure(c: &Client, in_flight: usize, calls: usize) -> Stats {
    let text = Arc::new(argument());
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
    let mut all: Vec<Duration> = Vec::with_capacity(per * in_flight);
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
        calls: all.len() + 50,
    }
}

/// Calls sent by this bench: each argument starts with its own number.
static SENT: AtomicU64 = AtomicU64::new(0);

async fn call(p: &rmcp::service::Peer<RoleClient>, text: &str) {
    let n = SENT.fetch_add(1, Ordering::Relaxed);
    let mut arg = format!("request {n}: {text}");
    arg.truncate(1024);
    let mut a = serde_json::Map::new();
    a.insert("text".into(), serde_json::Value::String(arg));
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
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "guard proxy overhead: tools/call, 1 KB argument, 4 KB result (both differ per call), {calls} calls per run, median of {runs} runs, loadavg {}",
        load()
    );
    let mut summary = Vec::new();
    for in_flight in [1usize, 32] {
        // One proxy process per level: its backlog, drain and CPU belong to this level.
        let pdir = dir.path().join(format!("in-flight-{in_flight}"));
        std::fs::create_dir_all(&pdir).expect("dir");
        let mut px = start_proxy(&pdir).await;
        let cpu0 = cpu_of(px.pid).unwrap_or_default();
        let mut proxied_calls = 0usize;
        let mut d = (Vec::new(), Vec::new(), Vec::new());
        let mut p = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for run in 1..=runs {
            let ds = measure(&direct, in_flight, calls).await;
            d.0.push(ds.p50_us);
            d.1.push(ds.p99_us);
            d.2.push(ds.calls_per_s);
            let before = cpu_of(px.pid).unwrap_or_default();
            let ps = measure(&px.client, in_flight, calls).await;
            let cpu_run = cpu_of(px.pid).unwrap_or_default().saturating_sub(before);
            proxied_calls += ps.calls;
            let cpu_per_call = cpu_run.as_secs_f64() * 1e6 / ps.calls as f64;
            p.0.push(ps.p50_us);
            p.1.push(ps.p99_us);
            p.2.push(ps.calls_per_s);
            p.3.push(cpu_per_call);
            // Each run, with the machine's load average: the figures mean little on a busy box.
            println!(
                "  run {run} in flight {in_flight:>2}: direct {:.0}/{:.0} µs {:.0}/s, proxied {:.0}/{:.0} µs {:.0}/s, proxy CPU {cpu_per_call:.0} µs/call during the run (loadavg {})",
                ds.p50_us,
                ds.p99_us,
                ds.calls_per_s,
                ps.p50_us,
                ps.p99_us,
                ps.calls_per_s,
                load()
            );
        }
        // Close the agent side: the proxy screens its backlog, drains its queue and exits.
        let cpu_runs = cpu_of(px.pid).unwrap_or_default();
        let t_close = Instant::now();
        let _ = px.client.cancel().await;
        let (line, cpu_end) = (&mut px.drained).await.unwrap_or_default();
        let drain_seen = t_close.elapsed();
        let _ = px.child.wait().await;
        let cpu_end = cpu_end.unwrap_or(cpu_runs);
        let backlog = field(&line, "backlog_at_shutdown").unwrap_or(0);
        let drain_ms = field(&line, "drain_ms").unwrap_or(0);
        let waited = field(&line, "waited").unwrap_or(0);
        let screened = field(&line, "screened").unwrap_or(0);
        let cpu_total = cpu_end.saturating_sub(cpu0).as_secs_f64() * 1e6 / proxied_calls as f64;
        let (d50, d99, dcs) = (median(d.0), median(d.1), median(d.2));
        let (p50, p99, pcs) = (median(p.0), median(p.1), median(p.2));
        let cpu_run = median(p.3);
        println!(
            "  in flight {in_flight:>2}: backlog {backlog} texts when the runs ended, screened in {drain_ms} ms at shutdown (close to drained {:.0} ms; {screened} texts screened in all, relay waited {waited} times on a full backlog); proxy CPU {cpu_total:.0} µs per call with the drain",
            drain_seen.as_secs_f64() * 1e3
        );
        summary.push((
            in_flight, d50, d99, dcs, p50, p99, pcs, cpu_run, cpu_total, backlog, drain_ms,
        ));
    }
    println!(
        "{:>9} | {:>10} {:>10} {:>10} | {:>10} {:>10} {:>10} | {:>9} {:>9} | {:>8} {:>8} {:>9} | {:>8} {:>8}",
        "in flight",
        "direct p50",
        "p99",
        "calls/s",
        "proxy p50",
        "p99",
        "calls/s",
        "+p50 µs",
        "+p99 µs",
        "CPU/call",
        "w/ drain",
        "Little µs",
        "backlog",
        "drain ms"
    );
    for (in_flight, d50, d99, dcs, p50, p99, pcs, cpu_run, cpu_total, backlog, drain_ms) in summary
    {
        // Little's law on 2 shared cores: the proxy's CPU per call, times the calls in flight,
        // over the cores, is the wait it adds once the CPU is saturated.
        let little = in_flight as f64 * cpu_total / 2.0;
        println!(
            "{in_flight:>9} | {d50:>8.0}µs {d99:>8.0}µs {dcs:>10.0} | {p50:>8.0}µs {p99:>8.0}µs {pcs:>10.0} | {:>9.0} {:>9.0} | {cpu_run:>6.0}µs {cpu_total:>6.0}µs {little:>9.0} | {backlog:>8} {drain_ms:>8}",
            p50 - d50,
            p99 - d99,
        );
    }
    let _ = direct.cancel().await;
}
