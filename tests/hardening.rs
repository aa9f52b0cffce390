//! Hardening (issue 15 §2–3, issue 14's protocol edges) against the real binary on real
//! sockets: stdio at end of input and for lines that are not messages, HTTP body and header
//! edge cases, the guards, CLI output into a closed pipe, a slowloris client and a session
//! flood. Every wait is a bounded hang guard, never a speed assertion.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use crate::common::backends::on_both_backends;
use crate::common::*;

/// The binary under test; `HARDENING_BIN` points these tests at another build (e.g. the one
/// before the fixes, to see them fail); such a build gets no `[http]` section, which it would
/// not know.
fn bin() -> String {
    std::env::var("HARDENING_BIN").unwrap_or_else(|_| BIN.to_owned())
}

fn cmd(db: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin());
    c.env("AI_INCIDENT_DB", db)
        .env("AI_INCIDENT_LOG", "warn")
        .env_remove("AI_INCIDENT_TOKEN")
        .kill_on_drop(true);
    c
}

async fn cli(db: &str, a: &[&str]) -> (i32, String, String) {
    let out = cmd(db).args(a).output().await.expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `serve --stdio` with `input` and closes stdin; returns (exit code, stdout, stderr).
async fn stdio_once(db: &str, input: &str) -> (i32, String, String) {
    let mut child = cmd(db)
        .args(["serve", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("stdio server did not exit after end of input")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines_json(s: &str) -> Vec<Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

on_both_backends! {
    async fn stdio_end_of_input_never_panics(db) {
        let db = db.url();
        let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
        let plain = format!("{INIT}\n{INITIALIZED}\n{list}\n");
        let garbage = format!("{INIT}\n{INITIALIZED}\nnot json\n{list}\n");
        // 40 runs of each sequence, 4 at a time.
        let mut runs = Vec::new();
        for i in 0..80 {
            runs.push(if i % 2 == 0 {
                plain.clone()
            } else {
                garbage.clone()
            });
        }
        let mut failures = Vec::new();
        for chunk in runs.chunks(4) {
            let outs =
                futures::future::join_all(chunk.iter().map(|input| stdio_once(db, input))).await;
            for (input, (code, out, err)) in chunk.iter().zip(outs) {
                let replies = lines_json(&out);
                let listed = replies
                    .iter()
                    .any(|r| r["id"] == 2 && r["result"]["tools"].is_array());
                if code != 0 || !listed || err.contains("panicked") {
                    failures.push(format!(
                        "exit {code}, tools/list answered: {listed}, garbage line: {}, stderr (last lines): {}",
                        input.contains("not json"),
                        // The panic line if there is one, else what the server said last (the
                        // reason for a non-zero exit).
                        err.lines()
                            .find(|l| l.contains("panicked"))
                            .map(str::to_owned)
                            .unwrap_or_else(|| {
                                let v: Vec<&str> = err.lines().collect();
                                v[v.len().saturating_sub(3)..].join(" | ")
                            })
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of 80 runs failed: {failures:#?}",
            failures.len()
        );
    }
}

on_both_backends! {
    async fn stdio_answers_every_line_that_is_not_a_message(db) {
        let db = db.url();
        let bad = ["42", "[]", "{}", "\"str\"", "null", r#"{"foo":1}"#, "[1,2]"];
        let batch =
            r#"[{"jsonrpc":"2.0","id":8,"method":"ping"},{"jsonrpc":"2.0","id":9,"method":"ping"}]"#;
        let bad_args = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"screen_prompt","arguments":5}}"#;
        let mut input = format!("{INIT}\n{INITIALIZED}\n");
        for b in bad {
            input.push_str(b);
            input.push('\n');
        }
        input.push_str(&format!("{batch}\n{bad_args}\n"));
        input.push_str(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#);
        input.push('\n');
        let (code, out, _) = stdio_once(db, &input).await;
        assert_eq!(code, 0);
        let replies = lines_json(&out);
        let invalid: Vec<&Value> = replies
            .iter()
            .filter(|r| r["error"]["code"] == -32600 && r["id"].is_null())
            .collect();
        assert_eq!(
            invalid.len(),
            bad.len() + 1,
            "each of {bad:?} and the batch needs a -32600 with id null: {replies:#?}"
        );
        assert!(
            invalid.iter().any(|r| r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("batches are not supported")),
            "{invalid:#?}"
        );
        let args = replies
            .iter()
            .find(|r| r["id"] == 3)
            .expect("reply to id 3");
        assert_eq!(args["error"]["code"], -32602, "{args}");
        assert!(
            args["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tools/call"),
            "{args}"
        );
        assert!(
            replies
                .iter()
                .any(|r| r["id"] == 4 && r["result"].is_object()),
            "the server keeps serving after bad lines: {replies:#?}"
        );
    }
}

/// A server with `[http]` overrides, optionally under a lower open-file limit; returns the child
/// and its address.
async fn http_server_cfg(
    dir: &std::path::Path,
    http_toml: &str,
    fd_limit: Option<u32>,
    extra: &[&str],
) -> (tokio::process::Child, SocketAddr) {
    let db = db_in(dir);
    let mut cmd = tokio::process::Command::new("sh");
    let limit = fd_limit.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    cmd.arg("-c")
        .arg(format!("{limit}exec \"$0\" \"$@\""))
        .arg(bin());
    if !http_toml.is_empty() && std::env::var_os("HARDENING_BIN").is_none() {
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, format!("[http]\n{http_toml}\n")).unwrap();
        cmd.arg("--config").arg(&cfg);
    }
    cmd.args(["serve", "--http", "127.0.0.1:0"])
        .args(extra)
        .env("AI_INCIDENT_DB", &db)
        .env("AI_INCIDENT_LOG", "warn")
        .env_remove("AI_INCIDENT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(rest) = l.split("listening on http://").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server start timeout");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url.parse().unwrap())
}

/// Sends `request` on a fresh connection and returns everything the server sent until it closed.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn mcp_post(url: &str, body: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(format!("{url}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body.to_owned())
}

/// The JSON-RPC messages of a response that is JSON or a server-sent-event stream.
async fn jsonrpc_messages(r: reqwest::Response) -> Vec<Value> {
    let text = tokio::time::timeout(Duration::from_secs(20), r.text())
        .await
        .expect("response body")
        .unwrap();
    if let Ok(v) = serde_json::from_str::<Value>(&text) {
        return vec![v];
    }
    text.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect()
}

#[tokio::test]
async fn http_body_errors_are_jsonrpc_errors_and_unknown_sessions_404() {
    let d = tempdir();
    let (_srv, addr) = http_server_cfg(d.path(), "", None, &[]).await;
    let url = format!("http://{addr}");

    let r = mcp_post(&url, "{not json").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], -32700, "{v}");
    assert!(v["id"].is_null());

    for body in [
        "42",
        "{}",
        "[]",
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
    ] {
        let r = mcp_post(&url, body).send().await.unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], -32600, "{body}: {v}");
    }

    // a real session: tools/call with non-object arguments is -32602
    let r = mcp_post(&url, INIT).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let sid = r.headers()["mcp-session-id"].to_str().unwrap().to_owned();
    drop(jsonrpc_messages(r).await);
    let r = mcp_post(&url, INITIALIZED)
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let call = r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"screen_prompt","arguments":5}}"#;
    let r = mcp_post(&url, call)
        .header("mcp-session-id", &sid)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .unwrap();
    let msgs = jsonrpc_messages(r).await;
    let reply = msgs.iter().find(|m| m["id"] == 3).expect("reply to id 3");
    assert_eq!(reply["error"]["code"], -32602, "{reply}");

    // DELETE: unknown session 404, a live one accepted, then unknown
    let http = reqwest::Client::new();
    let del = |id: &str| {
        http.delete(format!("{url}/mcp"))
            .header("mcp-session-id", id.to_owned())
            .header("mcp-protocol-version", "2025-06-18")
            .send()
    };
    assert_eq!(del("no-such-session").await.unwrap().status(), 404);
    // 204, not rmcp's 202: the Python SDK warns on anything but 200/204.
    assert_eq!(del(&sid).await.unwrap().status(), 204);
    assert_eq!(del(&sid).await.unwrap().status(), 404);
}

#[tokio::test]
async fn guards_parse_authorities_strictly_and_bearer_case_insensitively() {
    let d = tempdir();
    let (_srv, addr) = http_server_cfg(d.path(), "", None, &["--token", "s3cret-token"]).await;
    let get = |extra: &str| format!("GET /healthz HTTP/1.1\r\n{extra}Connection: close\r\n\r\n");
    let status = |resp: &str| resp.split(' ').nth(1).unwrap_or("").to_owned();
    assert_eq!(status(&raw(addr, &get("Host: localhost\r\n")).await), "200");
    assert_eq!(
        status(&raw(addr, &get("Host: [::1]evil.example\r\n")).await),
        "403"
    );
    assert_eq!(
        status(
            &raw(
                addr,
                &get("Host: localhost\r\nOrigin: http://[::1]evil.example\r\n")
            )
            .await
        ),
        "403"
    );
    assert_eq!(
        status(&raw(addr, &get("Host: localhost\r\nOrigin: http://localhost:3000\r\nOrigin: http://evil.example\r\n")).await),
        "403",
        "two Origin headers"
    );
    let two_hosts = raw(addr, &get("Host: localhost\r\nHost: evil.example\r\n")).await;
    assert_eq!(status(&two_hosts), "400", "{two_hosts}");
    assert!(two_hosts.contains("more than one Host header"));

    let post = |auth: &str| {
        format!(
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
            INIT.len()
        )
    };
    for auth in [
        "Bearer s3cret-token",
        "bearer s3cret-token",
        "BEARER s3cret-token",
    ] {
        let r = raw(addr, &post(&format!("Authorization: {auth}\r\n"))).await;
        assert_eq!(status(&r), "200", "{auth}: {r}");
    }
    for auth in ["Basic s3cret-token", "Bearer wrong", "Bearer "] {
        let r = raw(addr, &post(&format!("Authorization: {auth}\r\n"))).await;
        assert_eq!(status(&r), "401", "{auth}");
    }
}

on_both_backends! {
    async fn cli_refuses_an_empty_token_and_accepts_host_names(db) {
        let db = db.url();
        for token in ["", "  "] {
            let (code, _, err) = tokio::time::timeout(
                Duration::from_secs(30),
                cli(db, &["serve", "--http", "127.0.0.1:0", "--token", token]),
            )
            .await
            .unwrap_or_else(|_| panic!("the server started with the empty token {token:?}"));
            assert_ne!(code, 0, "empty token {token:?} accepted");
            assert!(err.contains("empty"), "{err}");
        }
        let mut c = cmd(db);
        c.args(["serve", "--http", "localhost:0"])
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = c.spawn().unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if let Some(rest) = l.split("listening on ").nth(1) {
                    return rest.trim().to_string();
                }
                assert!(!l.contains("Error"), "{l}");
            }
            panic!("server exited before listening");
        })
        .await
        .expect("listening");
        let r = reqwest::get(format!("{url}/healthz")).await.unwrap();
        assert_eq!(r.status(), 200);
        let (code, _, err) = cli(db, &["serve", "--http", "localhost"]).await;
        assert_ne!(code, 0);
        assert!(err.contains("HOST:PORT"), "{err}");
    }
}

on_both_backends! {
    async fn cli_output_into_a_closed_pipe_is_quiet(db) {
        let db = db.url();
        let (code, out, err) = cli(
            db,
            &[
                "report",
                "--type",
                "security",
                "--description",
                "prompt injection in the support bot",
                "--email",
                "sec@example.com",
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let id = serde_json::from_str::<Value>(&out).unwrap()["incident_id"]
            .as_str()
            .unwrap()
            .to_owned();
        for args in [
            vec!["incidents", "get", id.as_str()],
            vec!["incidents", "list"],
            vec!["config", "--print-default"],
        ] {
            let (reader, writer) = std::io::pipe().unwrap();
            drop(reader); // like `| head` that has already exited
            let out = std::process::Command::new(bin())
                .env("AI_INCIDENT_DB", db)
                .env("AI_INCIDENT_LOG", "warn")
                .args(&args)
                .stdout(Stdio::from(writer))
                .stderr(Stdio::piped())
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Opens a connection from `src` (a loopback address) and sends `prefix`; `None` when the
/// connection is not established within a few seconds.
async fn half_open(
    src: Ipv4Addr,
    addr: SocketAddr,
    prefix: String,
) -> Option<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4().ok()?;
    sock.bind(SocketAddr::from((src, 0))).ok()?;
    let mut s = tokio::time::timeout(Duration::from_secs(3), sock.connect(addr))
        .await
        .ok()?
        .ok()?;
    let _ = tokio::time::timeout(Duration::from_secs(3), s.write_all(prefix.as_bytes())).await;
    Some(s)
}

#[tokio::test]
async fn slowloris_does_not_starve_a_normal_client() {
    let d = tempdir();
    // Short timeouts keep the test quick; the caps are the defaults. 1,024 open files, as in
    // the report.
    let (_srv, addr) = http_server_cfg(
        d.path(),
        "header_read_timeout = \"2s\"\nbody_read_timeout = \"2s\"\nkeep_alive_idle = \"5s\"",
        Some(1024),
        &[],
    )
    .await;
    // 1,000 half-sent headers from 20 addresses, 500 half-sent bodies from one address.
    let mut attempts = Vec::new();
    for i in 0..1000u32 {
        let src = Ipv4Addr::new(127, 0, 1, 1 + (i % 20) as u8);
        attempts.push(half_open(
            src,
            addr,
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nX-Slow: aaaa".to_owned(),
        ));
    }
    for _ in 0..500 {
        attempts.push(half_open(
            Ipv4Addr::new(127, 0, 2, 1),
            addr,
            "POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: 100000\r\n\r\n{\"jsonrpc\":"
                .to_owned(),
        ));
    }
    let held: Vec<tokio::net::TcpStream> = futures::future::join_all(attempts)
        .await
        .into_iter()
        .flatten()
        .collect();
    eprintln!(
        "slowloris: {} of 1500 attacker connections established",
        held.len()
    );

    // A normal client (another address) is served within a few seconds while they are open.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut served = None;
    for _ in 0..10 {
        match http.get(format!("http://{addr}/healthz")).send().await {
            Ok(r) if r.status() == 200 => {
                served = Some(r.json::<Value>().await.unwrap());
                break;
            }
            Ok(r) => eprintln!("normal client: {}", r.status()),
            Err(e) => eprintln!("normal client: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let health = served.expect("a normal client was not served while the slowloris ran");
    eprintln!("slowloris: healthz while attacked: {}", health["http"]);
    let r = mcp_post(&format!("http://{addr}"), INIT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Every attacker connection is closed by the server (timeouts and caps), none stays open.
    let closed = futures::future::join_all(held.into_iter().map(|mut s| async move {
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
            .await
            .is_ok()
    }))
    .await;
    let still_open = closed.iter().filter(|c| !**c).count();
    assert_eq!(still_open, 0, "attacker connections still open after 30 s");
}

async fn initialize_status(http: &reqwest::Client, url: &str) -> (u16, Option<u64>) {
    let r = http
        .post(format!("{url}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(INIT)
        .send()
        .await
        .unwrap();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let status = r.status().as_u16();
    drop(r);
    (status, retry)
}

async fn flood(url: &str, n: usize) -> (usize, usize) {
    let http = reqwest::Client::new();
    let (mut ok, mut refused) = (0, 0);
    for chunk in (0..n).collect::<Vec<_>>().chunks(16) {
        let rs =
            futures::future::join_all(chunk.iter().map(|_| initialize_status(&http, url))).await;
        for (status, retry) in rs {
            match status {
                200 => ok += 1,
                503 => {
                    assert!(retry.is_some_and(|s| s >= 1), "503 without Retry-After");
                    refused += 1;
                }
                s => panic!("initialize answered {s}"),
            }
        }
    }
    (ok, refused)
}

async fn live_sessions(url: &str) -> u64 {
    let v: Value = reqwest::get(format!("{url}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["http"]["sessions"].as_u64().unwrap()
}

#[tokio::test]
async fn session_flood_is_capped_and_idle_sessions_expire() {
    let d = tempdir();
    let (srv, addr) = http_server_cfg(
        d.path(),
        "max_sessions = 100\nsession_idle_timeout = \"8s\"",
        None,
        &[],
    )
    .await;
    let url = format!("http://{addr}");
    let pid = srv.id().unwrap();
    let normal = ()
        .serve(StreamableHttpClientTransport::from_uri(format!(
            "{url}/mcp"
        )))
        .await
        .unwrap();
    let rss0 = rss_kib(pid);
    let (ok, refused) = flood(&url, 600).await;
    let rss1 = rss_kib(pid);
    eprintln!(
        "session flood: 600 initialize -> {ok} sessions, {refused} refused (503); RSS {rss0} -> {rss1} KiB, \
         {} B per session",
        (rss1.saturating_sub(rss0) * 1024) / ok.max(1) as u64
    );
    assert!(
        ok <= 99,
        "{ok} sessions opened past the cap of 100 (one is the normal client's)"
    );
    assert!(refused >= 500, "only {refused} refused");
    // The normal client's session is still served.
    let tools = normal.list_all_tools().await.unwrap();
    assert!(!tools.is_empty());
    // Stated bound: the server stays under 256 MiB with the cap reached.
    assert!(rss1 < 256 * 1024, "RSS {rss1} KiB");
    normal.cancel().await.unwrap();

    // Idle sessions expire and are removed, so new sessions can open again.
    let mut live = u64::MAX;
    for _ in 0..60 {
        live = live_sessions(&url).await;
        if live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(live, 0, "idle sessions were not removed");
    let rss2 = rss_kib(pid);
    eprintln!("session flood: after expiry RSS {rss2} KiB");
    let (status, _) = initialize_status(&reqwest::Client::new(), &url).await;
    assert_eq!(status, 200);
}

/// The figure for the report: `cargo test --test tests hardening::session_memory -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement, not a check: run by hand"]
async fn session_memory_per_session() {
    let d = tempdir();
    let (srv, addr) = http_server_cfg(
        d.path(),
        "max_sessions = 20000\nsession_idle_timeout = \"20s\"",
        None,
        &[],
    )
    .await;
    let url = format!("http://{addr}");
    let pid = srv.id().unwrap();
    let (ok0, _) = flood(&url, 100).await;
    let rss0 = rss_kib(pid);
    let (ok, refused) = flood(&url, 10_000).await;
    let rss1 = rss_kib(pid);
    eprintln!(
        "10,000 initialize: {ok} sessions ({refused} refused); RSS {rss0} -> {rss1} KiB = {} B per session",
        (rss1.saturating_sub(rss0) * 1024) / ok.max(1) as u64
    );
    let mut live = u64::MAX;
    for _ in 0..120 {
        live = live_sessions(&url).await;
        if live == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "after expiry: {live} live sessions, RSS {} KiB (warm-up {ok0} sessions)",
        rss_kib(pid)
    );
}
