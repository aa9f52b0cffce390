//! Load generator: drives `screen_prompt` over stdio with a pipelined client
//! and prints calls/s and latency percentiles.
//!
//! ```text
//! cargo build --release --example load_stdio
//! target/release/examples/load_stdio [--server CMD...] [--inflight 64] [--requests 200000] \
//!     [--data eval/dev.jsonl.xz] [--only attack|benign] [--ping] [--no-init]
//! ```
//! `--ping` sends MCP `ping` requests instead of `screen_prompt` calls: the round trip of the
//! transport and the rmcp service alone, the floor under every tool call's latency.
//! `--no-init` skips the MCP handshake, for an echo "server" such as `--server cat`: with
//! `--ping --no-init --server cat` it times the bare pipe round trip between two processes.
//! The server defaults to `target/release/ai-incident-mcp --db <tmp> serve --stdio`, the data to
//! the vendored dev set (`.xz` files are read through `xz -dc`).
//! Texts are taken round-robin from the JSONL file (benign and attack mixed, as
//! in the file); attacks open or deduplicate incidents in the server's store.
//! The client writes raw JSON-RPC lines and finds the response id by a cheap
//! scan, so it costs the server as little CPU as possible on a 2-core box.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The JSON lines of `path`, decompressed with `xz -dc` when it ends in `.xz`; exits with a
/// message saying what to fix when it cannot be read.
fn read_data(path: &str) -> String {
    let fail = |why: String| -> ! {
        eprintln!("load_stdio: cannot read --data {path}: {why}");
        std::process::exit(2)
    };
    if path.ends_with(".xz") {
        let out = std::process::Command::new("xz")
            .args(["-dc", path])
            .output()
            .unwrap_or_else(|e| fail(format!("running xz -dc: {e} (install xz-utils)")));
        if !out.status.success() {
            fail(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        String::from_utf8(out.stdout).unwrap_or_else(|e| fail(format!("not UTF-8: {e}")))
    } else {
        std::fs::read_to_string(path).unwrap_or_else(|e| fail(e.to_string()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let inflight: usize = arg(&args, "--inflight")
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let total: usize = arg(&args, "--requests")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let warmup = (total / 20).max(1000);
    let data = arg(&args, "--data").unwrap_or_else(|| "eval/dev.jsonl.xz".into());
    // `--only attack` / `--only benign`: one label of the data set.
    let only = arg(&args, "--only");
    if let Some(o) = &only {
        assert!(
            o == "attack" || o == "benign",
            "--only takes attack or benign, got {o:?}"
        );
    }
    let ping = args.iter().any(|a| a == "--ping");
    let no_init = args.iter().any(|a| a == "--no-init");
    let tmp = std::env::temp_dir().join(format!("load-{}.db", std::process::id()));
    let server: Vec<String> = match args.iter().position(|a| a == "--server") {
        Some(i) => args[i + 1..].to_vec(),
        None => vec![
            "target/release/ai-incident-mcp".into(),
            "--db".into(),
            tmp.to_string_lossy().into_owned(),
            "serve".into(),
            "--stdio".into(),
        ],
    };

    // texts: mix of benign and attack prompts, capped at 4 KiB each like chat turns
    let mut texts = Vec::new();
    let mut attacks = 0usize;
    // `--ping` sends no text: the data set is not read.
    let lines = if ping {
        String::new()
    } else {
        read_data(&data)
    };
    for line in lines.lines() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => continue,
        };
        let Some(t) = v["text"].as_str() else {
            continue;
        };
        if t.len() > 4096 {
            continue;
        }
        let is_attack = v["label"] == "attack";
        if only
            .as_deref()
            .is_some_and(|o| (o == "attack") != is_attack)
        {
            continue;
        }
        if is_attack {
            attacks += 1;
        }
        texts.push(serde_json::to_string(t).expect("json string"));
    }
    assert!(ping || !texts.is_empty(), "no texts in {data}");
    eprintln!(
        "{} texts ({} attacks, {} benign); {} requests after {} warm-up; {} in flight; server: {}",
        texts.len(),
        attacks,
        texts.len() - attacks,
        total,
        warmup,
        inflight,
        server.join(" ")
    );

    let mut child = Command::new(&server[0])
        .args(&server[1..])
        .env("AI_INCIDENT_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server");
    let mut stdin = BufWriter::new(child.stdin.take().expect("stdin"));
    let mut stdout = BufReader::with_capacity(1 << 20, child.stdout.take().expect("stdout"));

    if !no_init {
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"load","version":"0"}}}}}}"#).unwrap();
        stdin.flush().unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.contains("\"result\""), "initialize failed: {line}");
        writeln!(
            stdin,
            r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
        )
        .unwrap();
        stdin.flush().unwrap();
    }

    let n = warmup + total;
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let (tok_tx, tok_rx) = std::sync::mpsc::sync_channel::<()>(inflight);
    for _ in 0..inflight {
        tok_tx.send(()).unwrap();
    }
    let t0 = Instant::now();
    let sent2 = sent_at.clone();
    let reader = std::thread::spawn(move || {
        let mut lat = Vec::with_capacity(n);
        let mut errors = 0usize;
        let mut flagged = 0usize;
        let mut measure_start = None;
        let mut buf = String::new();
        for _ in 0..n {
            buf.clear();
            if stdout.read_line(&mut buf).unwrap_or(0) == 0 {
                break;
            }
            let now = t0.elapsed().as_nanos() as u64;
            let id: usize = buf
                .find("\"id\":")
                .and_then(|i| {
                    let rest = &buf[i + 5..];
                    let end = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    rest[..end].parse().ok()
                })
                .expect("response id");
            if buf.contains("\"isError\":true") || buf.contains("\"error\"") {
                errors += 1;
            }
            if buf.contains("\\\"verdict\\\":\\\"block") || buf.contains("\\\"verdict\\\":\\\"flag")
            {
                flagged += 1;
            }
            let _ = tok_tx.send(());
            if id == warmup {
                measure_start = Some(now);
            }
            if id >= warmup {
                lat.push(now - sent2[id - 1].load(Ordering::Relaxed));
            }
        }
        let end = t0.elapsed().as_nanos() as u64;
        (lat, errors, flagged, end - measure_start.unwrap_or(0))
    });

    // Credits = free slots in the window. Flush only right before we would
    // block for a slot, so requests leave in batches as a pipelined client's do.
    let mut credits = 0usize;
    for i in 1..=n {
        if credits == 0 {
            stdin.flush().unwrap();
            tok_rx.recv().unwrap();
            credits += 1;
            while tok_rx.try_recv().is_ok() {
                credits += 1;
            }
        }
        credits -= 1;
        sent_at[i - 1].store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        if ping {
            writeln!(
                stdin,
                "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}"
            )
            .unwrap();
            continue;
        }
        let text = &texts[i % texts.len()];
        writeln!(
            stdin,
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"screen_prompt\",\"arguments\":{{\"text\":{text}}}}}}}"
        )
        .unwrap();
    }
    stdin.flush().unwrap();
    let (mut lat, errors, flagged, span) = reader.join().unwrap();
    drop(stdin);
    let _ = child.wait();
    let _ = std::fs::remove_file(&tmp);
    let _ = std::fs::remove_file(tmp.with_extension("db-wal"));
    let _ = std::fs::remove_file(tmp.with_extension("db-shm"));
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    println!(
        "requests={} inflight={} calls_per_sec={:.0} p50_us={:.1} p90_us={:.1} p99_us={:.1} max_us={:.1} errors={} flagged_or_blocked={}",
        lat.len(),
        inflight,
        lat.len() as f64 / (span as f64 / 1e9),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        errors,
        flagged
    );
}
