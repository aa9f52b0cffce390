//! PostgreSQL only: connection errors that say what to fix, `migrate`, several `serve --http`
//! instances of the real binary on one database (each escalation step and each delivery exactly
//! once, at a real local webhook receiver), killing an instance mid-run, and `export` /
//! `import` from SQLite into PostgreSQL. Needs `AI_INCIDENT_TEST_PG` (see `common::backends`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;

use ai_incident_mcp::notify::IDEMPOTENCY_HEADER;

use crate::common::backends::{self, pg_connect, with_dbname};
use crate::common::*;

/// Accepted deliveries per Idempotency-Key.
#[derive(Clone, Default)]
struct Hook {
    seen: Arc<Mutex<BTreeMap<String, u32>>>,
}

async fn hook(State(h): State<Hook>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    *h.seen.lock().unwrap().entry(key).or_insert(0) += 1;
    StatusCode::OK
}

impl Hook {
    async fn start() -> (Hook, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let h = Hook::default();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(h.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (h, url)
    }
    fn counts(&self) -> BTreeMap<String, u32> {
        self.seen.lock().unwrap().clone()
    }
}

/// Fast escalation (three 1 s levels, then 60 s), a 100 ms sweep, a webhook channel at `url`.
fn config(dir: &std::path::Path, url: &str) -> String {
    let mut cfg = format!(
        r#"
[classification.high]
channels = ["hook"]

[notify]
max_attempts = 40
backoff_base = "100ms"
backoff_max = "400ms"
jitter = false
timeout = "2s"

[[notify.channels]]
name = "log"
kind = "log"

[[notify.channels]]
name = "hook"
kind = "webhook"
url = "{url}"
secret = "multi-instance-secret"

[monitor]
interval = "100ms"

[documentation]
dir = "{docs}"
"#,
        docs = dir.join("postmortems").display()
    );
    for (i, w) in ["1s", "1s", "1s", "60s"].iter().enumerate() {
        cfg.push_str(&format!(
            "\n[[escalation.levels]]\nlevel = {}\nname = \"L{}\"\nrespond_within = \"{w}\"\nchannels = [\"hook\"]\n",
            i + 1,
            i + 1
        ));
    }
    let p = dir.join("config.toml");
    std::fs::write(&p, cfg).unwrap();
    p.to_string_lossy().into_owned()
}

async fn report_high(db: &str, cfg: &str, n: usize) -> String {
    let (code, out, err) = run_cli(
        db,
        &[
            "--config",
            cfg,
            "report",
            "--type",
            "security",
            "--severity",
            "high",
            "--description",
            &format!("multi-instance incident {n}"),
            "--email",
            "oncall@example.com",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    v["incident_id"].as_str().unwrap().to_string()
}

async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every incident escalated 1 → 2 → 3 → 4 once, every key delivered once, the chain intact.
async fn assert_exactly_once(db: &str, hook: &Hook, ids: &[String]) {
    let counts = hook.counts();
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dups.is_empty(), "delivered more than once: {dups:?}");
    for id in ids {
        let (code, out, err) = run_cli(db, &["incidents", "get", id]).await;
        assert_eq!(code, 0, "{err}");
        let inc: Value = serde_json::from_str(&out).unwrap();
        let to: Vec<u64> = inc["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["event"])
            .filter(|e| e["kind"] == "escalated")
            .map(|e| e["to"].as_u64().unwrap())
            .collect();
        assert_eq!(to, [2, 3, 4], "{id}: each level exactly once");
        for key in [
            format!("{id}:opened:L1"),
            format!("{id}:escalated:L2"),
            format!("{id}:escalated:L3"),
            format!("{id}:escalated:L4"),
        ] {
            assert_eq!(counts.get(&key), Some(&1), "{key} in {counts:?}");
        }
    }
    let (code, out, _) = run_cli(db, &["verify-audit"]).await;
    assert_eq!(code, 0, "the chain must verify after the run: {out}");
}

async fn level(pg: &tokio_postgres::Client, id: &str) -> i32 {
    pg.query_one("SELECT level FROM incidents WHERE id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

async fn all_delivered(hook: &Hook, ids: &[String]) -> bool {
    let c = hook.counts();
    ids.iter().all(|id| {
        (2..=4).all(|l| c.contains_key(&format!("{id}:escalated:L{l}")))
            && c.contains_key(&format!("{id}:opened:L1"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_escalate_and_deliver_each_step_exactly_once() {
    let Some(db) = backends::postgres().await else {
        return;
    };
    let d = tempdir();
    let (hook, url) = Hook::start().await;
    let cfg = config(d.path(), &url);
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(http_server(db.url(), &["--config", &cfg]).await);
    }
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(report_high(db.url(), &cfg, n).await);
    }
    let pg = pg_connect(db.url()).await;
    for id in &ids {
        wait_until(30, &format!("{id} at level 4"), || async {
            level(&pg, id).await >= 4
        })
        .await;
    }
    wait_until(20, "every delivery", || all_delivered(&hook, &ids)).await;
    // Three instances keep sweeping every 100 ms: any second claim would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(db.url(), &hook, &ids).await;
    let outbox: i64 = pg
        .query_one("SELECT COUNT(*) FROM outbox WHERE status <> 'sent'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(outbox, 0, "every outbox row ends sent");
    for (mut child, _) in servers {
        child.start_kill().unwrap();
        let _ = child.wait().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_instance_mid_run_loses_and_duplicates_nothing() {
    let Some(db) = backends::postgres().await else {
        return;
    };
    let d = tempdir();
    let (hook, url) = Hook::start().await;
    let cfg = config(d.path(), &url);
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(http_server(db.url(), &["--config", &cfg]).await);
    }
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(report_high(db.url(), &cfg, n).await);
    }
    let pg = pg_connect(db.url()).await;
    // Mid-run: once the first step happened somewhere, SIGKILL one instance.
    wait_until(30, "a first escalation", || async {
        level(&pg, &ids[0]).await >= 2
    })
    .await;
    let (mut victim, _) = servers.remove(0);
    victim.start_kill().unwrap();
    let _ = victim.wait().await;
    for id in &ids {
        wait_until(40, &format!("{id} at level 4"), || async {
            level(&pg, id).await >= 4
        })
        .await;
    }
    // A lease the killed instance held expires (notify lease) and another instance delivers.
    wait_until(90, "every delivery", || all_delivered(&hook, &ids)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(db.url(), &hook, &ids).await;
    for (mut child, _) in servers {
        child.start_kill().unwrap();
        let _ = child.wait().await;
    }
}

#[tokio::test]
async fn connection_errors_say_what_to_fix() {
    let Some(admin) = backends::pg_admin_url() else {
        return;
    };
    // Nothing listens on a port we just freed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let unreachable = format!("postgres://aim:x@127.0.0.1:{port}/postgres");
    let (code, _, err) = run_cli(&unreachable, &["migrate"]).await;
    assert_eq!(code, 5, "unreachable is 'try again later': {err}");
    assert!(
        err.contains(&format!(
            "cannot reach PostgreSQL at 127.0.0.1:{port}/postgres"
        )) && err.contains("is the server running"),
        "{err}"
    );
    // Right server, wrong password: the password must not be echoed.
    let at = admin.find('@').unwrap();
    let scheme_user_end = admin[..at].rfind(':').unwrap();
    let bad = format!(
        "{}:not-the-password{}",
        &admin[..scheme_user_end],
        &admin[at..]
    );
    let (code, _, err) = run_cli(&bad, &["incidents", "list"]).await;
    assert_eq!(code, 3, "credentials are the caller's to fix: {err}");
    assert!(err.contains("refused the credentials of user"), "{err}");
    assert!(!err.contains("not-the-password"), "password leaked: {err}");
    // A database that does not exist.
    let missing = with_dbname(&admin, "aim_no_such_db");
    let (code, _, err) = run_cli(&missing, &["migrate"]).await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("create the database first"), "{err}");
}

#[tokio::test]
async fn migrate_applies_once_and_refuses_a_newer_schema() {
    let Some(db) = backends::postgres().await else {
        return;
    };
    let (code, out, err) = run_cli(db.url(), &["migrate"]).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"], serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8]));
    let (code, out, _) = run_cli(db.url(), &["migrate"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["applied"], serde_json::json!([]));
    db.exec("INSERT INTO schema_migrations (version, applied_at) VALUES (999, 'later')")
        .await;
    let (code, _, err) = run_cli(db.url(), &["incidents", "list"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("schema is at version 999 but this binary knows versions up to 8"),
        "{err}"
    );
}

#[tokio::test]
async fn export_from_sqlite_import_into_postgres_keeps_the_chain() {
    let Some(pg) = backends::postgres().await else {
        return;
    };
    let sq = backends::sqlite();
    // Some history on SQLite: reports, an escalation, a screening incident with repeats.
    let mut ids = Vec::new();
    for i in 0..3 {
        let (code, out, err) = run_cli(
            sq.url(),
            &[
                "report",
                "--type",
                "security",
                "--severity",
                "high",
                "--description",
                &format!("to move {i}"),
                "--email",
                "a@example.com",
            ],
        )
        .await;
        assert_eq!(code, 0, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        ids.push(v["incident_id"].as_str().unwrap().to_string());
    }
    let (code, _, err) = run_cli(sq.url(), &["escalate", &ids[1], "--reason", "test"]).await;
    assert_eq!(code, 0, "{err}");
    let d = tempdir();
    let file = d.path().join("export.jsonl");
    let f = file.to_string_lossy().into_owned();
    let (code, _, err) = run_cli(sq.url(), &["export", "--out", &f]).await;
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("ai-incident-mcp-export")
    );
    let (code, out, err) = run_cli(pg.url(), &["import", &f]).await;
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["imported"]["incidents"], 3);
    assert_eq!(v["verified"], true);
    let (code, out, _) = run_cli(pg.url(), &["verify-audit"]).await;
    assert_eq!(code, 0, "{out}");
    let a: Value = serde_json::from_str(&run_cli(sq.url(), &["verify-audit"]).await.1).unwrap();
    let b: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["events_checked"], b["events_checked"]);
    for id in &ids {
        let x: Value =
            serde_json::from_str(&run_cli(sq.url(), &["incidents", "get", id]).await.1).unwrap();
        let y: Value =
            serde_json::from_str(&run_cli(pg.url(), &["incidents", "get", id]).await.1).unwrap();
        assert_eq!(x["incident"], y["incident"]);
        assert_eq!(x["timeline"], y["timeline"]);
    }
    // The same file again: the target is no longer empty.
    let (code, _, err) = run_cli(pg.url(), &["import", &f]).await;
    assert_eq!(code, 3, "a target to change: {err}");
    assert!(err.contains("not empty"), "{err}");
    // An edited event is refused at its line, into a fresh database.
    let pg2 = backends::postgres().await.unwrap();
    let mut edited_one = false;
    let edited: String = text
        .lines()
        .map(|l| {
            if !edited_one
                && l.starts_with("{\"event\"")
                && l.contains("\"actor\":\"a@example.com\"")
            {
                edited_one = true;
                l.replacen(
                    "\"actor\":\"a@example.com\"",
                    "\"actor\":\"mallory@example.com\"",
                    1,
                )
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(edited_one, "no event line to edit in {text}");
    std::fs::write(&file, edited).unwrap();
    let (code, _, err) = run_cli(pg2.url(), &["import", &f]).await;
    assert_eq!(code, 3, "a file to fix: {err}");
    assert!(
        err.contains("does not match its hash (it was edited)"),
        "{err}"
    );
}

/// A server of its own (restarting the shared one would disturb other tests), from the script.
struct OwnServer {
    url: String,
    dir: String,
}

impl OwnServer {
    fn start() -> OwnServer {
        let script = repo_path("scripts/pg-test-server.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let val = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}='")))
                .map(|v| v.trim_end_matches('\'').to_string())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        OwnServer {
            url: val("AI_INCIDENT_TEST_PG"),
            dir: val("PG_TEST_DIR"),
        }
    }
}

/// Stops the server in `dir` and starts it again after `pause_secs`.
fn restart_server(dir: &str, pause_secs: u32) {
    let script = repo_path("scripts/pg-test-server.sh");
    let st = std::process::Command::new("bash")
        .arg(&script)
        .args(["restart", dir, &pause_secs.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let script = repo_path("scripts/pg-test-server.sh");
        let _ = std::process::Command::new("bash")
            .arg(&script)
            .args(["stop", &self.dir])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_load_answers_503_then_recovers() {
    if backends::pg_admin_url().is_none() {
        return;
    }
    let pg = OwnServer::start();
    let (mut child, url) = http_server(&pg.url, &[]).await;
    let api = format!("{url}/api/v1");
    let http = reqwest::Client::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Load: reports back to back; record which were acknowledged (201) and which failed.
    // While the database is down every failure is a 503 "try again later" with Retry-After
    // and a JSON error saying the database is unreachable, nothing of the URL in it.
    let password = pg
        .url
        .split(['@', ':'])
        .nth(2)
        .unwrap_or_default()
        .to_string();
    assert!(!password.is_empty(), "no password in the test URL");
    let load = {
        let (http, api, stop) = (http.clone(), api.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut acked, mut failed, mut n, mut after) = (Vec::new(), 0u32, 0u32, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let r = http
                    .post(format!("{api}/incidents/report"))
                    .json(&serde_json::json!({
                        "incident_type": "security",
                        "description": format!("restart load {n}"),
                        "reporter_email": "oncall@example.com"
                    }))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 201 => {
                        let v: Value = r.json().await.unwrap();
                        acked.push(v["incident_id"].as_str().unwrap().to_string());
                        if failed > 0 {
                            after += 1;
                        }
                    }
                    Ok(r) => {
                        let status = r.status();
                        let retry = r.headers().get("retry-after").cloned();
                        let body = r.text().await.unwrap();
                        assert_eq!(status, 503, "{body}");
                        let retry = retry.expect("a 503 carries Retry-After");
                        assert!(retry.to_str().unwrap().parse::<u32>().unwrap() > 0);
                        let v: Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(v["error"]["code"], "unavailable", "{body}");
                        let msg = v["error"]["message"].as_str().unwrap();
                        assert!(msg.contains("database is unreachable"), "{body}");
                        assert!(
                            !body.contains(&password) && !body.contains("127.0.0.1"),
                            "{body}"
                        );
                        failed += 1;
                    }
                    Err(e) => panic!("the server itself must keep answering: {e}"),
                }
            }
            (acked, failed, after)
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Down for 2 s while reports keep coming.
    tokio::task::spawn_blocking({
        let dir = pg.dir.clone();
        move || restart_server(&dir, 2)
    })
    .await
    .unwrap();
    // Back up: the same server process recovers without a restart of its own.
    wait_until(20, "a report to succeed after the restart", || async {
        http.get(format!("{api}/incidents?limit=1"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acked, failed, after) = load.await.unwrap();
    assert!(failed > 0, "no call failed: the server was not really down");
    assert!(after > 0, "no report was acknowledged after the outage");
    assert!(
        acked.len() > 2,
        "too few reports went through: {}",
        acked.len()
    );
    // Nothing acknowledged was lost; the chain is intact.
    for id in &acked {
        let r = http
            .get(format!("{api}/incidents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "acknowledged incident {id} is missing");
    }
    let (code, out, _) = run_cli(&pg.url, &["verify-audit"]).await;
    assert_eq!(code, 0, "{out}");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// With the database down, each surface says "try again later" and nothing more: REST a 503
/// `unavailable` with `Retry-After`, the web page a 503 page, an MCP tool an error result
/// saying the store is unavailable; none shows the URL, host or password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_down_every_surface_says_try_again_later() {
    use rmcp::ServiceExt;
    if backends::pg_admin_url().is_none() {
        return;
    }
    let pg = OwnServer::start();
    let password = pg.url.split(['@', ':']).nth(2).unwrap().to_string();
    let (mut child, url) = http_server(&pg.url, &[]).await;
    let http = reqwest::Client::new();
    let ok = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(
        ok.status(),
        200,
        "the web page is served while the database is up"
    );
    let mcp = ()
        .serve(rmcp::transport::StreamableHttpClientTransport::from_uri(
            format!("{url}/mcp"),
        ))
        .await
        .unwrap();
    let report = serde_json::json!({
        "incident_type": "security",
        "description": "reported while the database is down",
        "reporter_email": "oncall@example.com"
    });
    call_ok(&mcp, "report_incident", report.clone()).await;
    // Down for good (the server directory goes too).
    let st = std::process::Command::new("bash")
        .arg(repo_path("scripts/pg-test-server.sh"))
        .args(["stop", &pg.dir])
        .status()
        .unwrap();
    assert!(st.success());
    let secret_free = |text: &str| {
        assert!(
            !text.contains(&password)
                && !text.contains("127.0.0.1")
                && !text.contains("postgres://"),
            "internals shown: {text}"
        );
    };

    let r = http
        .get(format!("{url}/api/v1/incidents?limit=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], "unavailable", "{body}");
    secret_free(&body);

    let r = http.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let page = r.text().await.unwrap();
    assert!(page.contains("cannot be reached right now"), "{page}");
    secret_free(&page);

    let text = call_err(&mcp, "report_incident", report).await;
    assert!(text.contains("store is unavailable"), "{text}");
    secret_free(&text);
    let _ = mcp.cancel().await;
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

/// A self-signed certificate for `localhost` (its own CA): (certificate PEM, key PEM).
fn self_signed_localhost() -> (Vec<u8>, Vec<u8>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    (
        b.build().to_pem().unwrap(),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
}

async fn cli_with_ca(db: &str, ca: Option<&str>, args: &[&str]) -> (i32, String) {
    let mut c = command(db);
    if let Some(ca) = ca {
        c.env("AI_INCIDENT_PG_CA_FILE", ca);
    } else {
        c.env_remove("AI_INCIDENT_PG_CA_FILE");
    }
    let out = c.args(args).output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn sslmode_require_uses_tls_and_verifies_the_server_certificate() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if backends::pg_admin_url().is_none() {
        return;
    }
    let pg = OwnServer::start();
    let data = std::path::Path::new(&pg.dir).join("data");
    let owner = std::fs::metadata(&data).unwrap();
    let (cert, key) = self_signed_localhost();
    for (name, bytes) in [("server.crt", &cert), ("server.key", &key)] {
        let p = data.join(name);
        std::fs::write(&p, bytes).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::chown(&p, Some(owner.uid()), Some(owner.gid())).unwrap();
    }
    // TLS only: plain TCP connections are refused by pg_hba.conf from now on.
    std::fs::write(
        data.join("pg_hba.conf"),
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n",
    )
    .unwrap();
    pg_connect(&pg.url)
        .await
        .batch_execute("ALTER SYSTEM SET ssl = on")
        .await
        .unwrap();
    restart_server(&pg.dir, 0);
    let d = tempdir();
    let ca = d.path().join("ca.pem");
    std::fs::write(&ca, &cert).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    let base = pg.url.replace("127.0.0.1", "localhost");
    let plain = format!("{base}?sslmode=disable");
    let tls = format!("{base}?sslmode=require");
    let (code, err) = cli_with_ca(&plain, Some(&ca), &["migrate"]).await;
    assert_ne!(code, 0, "plain TCP must be refused by this server: {err}");
    // An untrusted certificate is refused, with what to do about it.
    let (code, err) = cli_with_ca(&tls, None, &["migrate"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("TLS failed") && err.contains("AI_INCIDENT_PG_CA_FILE"),
        "{err}"
    );
    // Trusted through AI_INCIDENT_PG_CA_FILE: works, and the server saw TLS.
    let (code, err) = cli_with_ca(&tls, Some(&ca), &["migrate"]).await;
    assert_eq!(code, 0, "{err}");
    let (code, err) = cli_with_ca(&tls, Some(&ca), &["incidents", "list"]).await;
    assert_eq!(code, 0, "{err}");
}

/// Activity rows recorded while PostgreSQL is down are accepted, kept and written once it is
/// back: an outage neither fails `record_activity` nor loses its rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_recorded_during_an_outage_lands_after_it() {
    if backends::pg_admin_url().is_none() {
        return;
    }
    let pg = OwnServer::start();
    let s = ai_incident_mcp::app::open_store(&pg.url).unwrap();
    let t0 = chrono::Utc::now();
    let row = || backends::allow_activity("outage", t0);
    let dir = pg.dir.clone();
    let down = tokio::task::spawn_blocking(move || restart_server(&dir, 2));
    // While the server stops, stays down and starts again, rows keep being accepted.
    let mut n = 0u64;
    while !down.is_finished() {
        s.record_activity(row()).await.unwrap();
        n += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    down.await.unwrap();
    assert!(n > 50, "only {n} rows were recorded during the outage");
    let since = t0 - chrono::Duration::hours(1);
    wait_until(30, "every queued row to land after the restart", || {
        let s = s.clone();
        async move {
            s.activity_count(Some("outage".into()), None, false, since)
                .await
                .is_ok_and(|c| c == n)
        }
    })
    .await;
}
