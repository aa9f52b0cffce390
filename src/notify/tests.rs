//! Notification tests. The HTTP and SMTP receivers are real servers on 127.0.0.1 started by each test.

use super::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::TimeZone;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

fn notification(event: &str) -> Notification {
    Notification {
        id: Notification::stable_id("INC-42", event, 2),
        incident_id: "INC-42".into(),
        event: event.into(),
        severity: Severity::High,
        level: 2,
        title: "Prompt injection blocked".into(),
        body: "Rule pi.ignore_previous matched in a tool output.".into(),
        created_at: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn channel(kind: ChannelKind, name: &str) -> ChannelConfig {
    ChannelConfig {
        kind,
        ..ChannelConfig::log(name)
    }
}

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Recorded>>>,
    hits: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

/// Behaviour by path:
/// `/pd` → 202 PagerDuty-style JSON; `/status/<code>` → that status (429 adds `Retry-After: 7`);
/// `/flaky/*` → 500 on the first hit of that path, 200 afterwards; `/slow` → waits 5 s; else 200 "ok".
async fn handle(State(rx): State<Receiver>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_owned();
    rx.requests.lock().unwrap().push(Recorded {
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    let hit = {
        let mut hits = rx.hits.lock().unwrap();
        let n = hits.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if path == "/pd" {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let reply =
            json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]});
        return (StatusCode::ACCEPTED, reply.to_string()).into_response();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = StatusCode::from_u16(code.parse().unwrap()).unwrap();
        if status == StatusCode::TOO_MANY_REQUESTS {
            return (status, [("retry-after", "7")], "slow down").into_response();
        }
        return (status, "nope").into_response();
    }
    if path.starts_with("/flaky") && hit == 1 {
        return (StatusCode::INTERNAL_SERVER_ERROR, "temporarily broken").into_response();
    }
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    (StatusCode::OK, "ok").into_response()
}

async fn start_receiver() -> (String, Receiver) {
    let rx = Receiver::default();
    let app = Router::new().fallback(handle).with_state(rx.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rx)
}

fn webhook(base: &str, path: &str, secret: &str) -> ChannelConfig {
    ChannelConfig {
        url: Some(format!("{base}{path}")),
        secret: Some(secret.into()),
        ..channel(ChannelKind::Webhook, "hook")
    }
}

// ------------------------------------------------------------------------------------------------
// Minimal SMTP sink
// ------------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Mail {
    helo: String,
    mail_from: String,
    rcpt_to: Vec<String>,
    data: String,
}

/// A real SMTP server speaking just enough of RFC 5321. `rcpt_reply` is what RCPT TO gets
/// (e.g. "250 OK", "550 no such user", "451 try again later").
async fn start_smtp_sink(rcpt_reply: &'static str) -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
    let store = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut mail = Mail::default();
                write
                    .write_all(b"220 sink.test ESMTP ready\r\n")
                    .await
                    .unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &str = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        mail.helo = line[5.min(line.len())..].to_owned();
                        "250 sink.test"
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.mail_from = line[10..].trim().to_owned();
                        "250 OK"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.rcpt_to.push(line[8..].trim().to_owned());
                        rcpt_reply
                    } else if upper == "DATA" {
                        write
                            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            .await
                            .unwrap();
                        let mut data = String::new();
                        while let Ok(Some(l)) = lines.next_line().await {
                            if l == "." {
                                break;
                            }
                            let l = l
                                .strip_prefix('.')
                                .filter(|_| l.starts_with(".."))
                                .unwrap_or(&l);
                            data.push_str(l);
                            data.push('\n');
                        }
                        mail.data = data;
                        store.lock().unwrap().push(std::mem::take(&mut mail));
                        "250 2.0.0 queued as 1"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 bye\r\n").await.unwrap();
                        return;
                    } else if upper == "RSET" || upper == "NOOP" {
                        "250 OK"
                    } else {
                        "502 command not implemented"
                    };
                    write
                        .write_all(format!("{reply}\r\n").as_bytes())
                        .await
                        .unwrap();
                }
            });
        }
    });
    (addr, mails)
}

fn email_channel(addr: SocketAddr) -> ChannelConfig {
    ChannelConfig {
        smtp_host: Some(addr.ip().to_string()),
        smtp_port: Some(addr.port()),
        from: Some("AI Incidents <aim@example.com>".into()),
        to: vec!["oncall@example.com".into(), "security@example.com".into()],
        ..channel(ChannelKind::Email, "mail")
    }
}

// ------------------------------------------------------------------------------------------------
// Real receivers
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn webhook_is_signed_timestamped_and_carries_idempotency_key() {
    let (base, rx) = start_receiver().await;
    let n = notification("opened");
    let receipt = deliver(&webhook(&base, "/hook", "s3cret"), &n, &client())
        .await
        .unwrap();
    assert_eq!(receipt.status, Some(200));
    assert_eq!(receipt.notification_id, n.id);

    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.path, "/hook");
    let sig = r.headers.get(SIGNATURE_HEADER).unwrap().to_str().unwrap();
    assert!(
        verify_signature(b"s3cret", &r.body, sig),
        "signature must verify over the exact body"
    );
    assert!(!verify_signature(b"wrong", &r.body, sig));
    let mut tampered = r.body.to_vec();
    tampered.push(b' ');
    assert!(!verify_signature(b"s3cret", &tampered, sig));
    assert_eq!(r.headers.get(IDEMPOTENCY_HEADER).unwrap(), n.id.as_str());
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");

    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["id"], n.id.as_str());
    assert_eq!(body["incident_id"], "INC-42");
    assert_eq!(body["event"], "opened");
    assert_eq!(body["severity"], "high");
    assert_eq!(body["level"], 2);
    // The timestamp header equals the signed `sent_at`, so it cannot be altered without breaking the signature.
    let ts = r.headers.get(TIMESTAMP_HEADER).unwrap().to_str().unwrap();
    assert_eq!(body["sent_at"], ts);
    assert!(DateTime::parse_from_rfc3339(ts).is_ok());
}

#[tokio::test]
async fn slack_receives_text_and_blocks() {
    let (base, rx) = start_receiver().await;
    let ch = ChannelConfig {
        url: Some(format!("{base}/slack")),
        ..channel(ChannelKind::Slack, "slack")
    };
    deliver(&ch, &notification("escalated"), &client())
        .await
        .unwrap();
    let reqs = rx.requests();
    assert_eq!(reqs.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(&reqs[0].body).unwrap();
    assert_eq!(body["text"], "[HIGH] Prompt injection blocked");
    let blocks = body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert_eq!(blocks[1]["type"], "section");
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .unwrap()
            .contains("pi.ignore_previous")
    );
    assert!(
        blocks[2]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("INC-42")
    );
}

#[tokio::test]
async fn pagerduty_events_v2_shape_and_actions() {
    let (base, rx) = start_receiver().await;
    let ch = ChannelConfig {
        url: Some(format!("{base}/pd")),
        routing_key: Some("R0UTING".into()),
        ..channel(ChannelKind::Pagerduty, "pd")
    };
    let receipt = deliver(&ch, &notification("opened"), &client())
        .await
        .unwrap();
    assert_eq!(receipt.status, Some(202));
    assert_eq!(
        receipt.detail.as_deref(),
        Some("INC-42"),
        "dedup_key echoed by PagerDuty"
    );
    deliver(&ch, &notification("acknowledged"), &client())
        .await
        .unwrap();
    let mut resolved = notification("resolved");
    resolved.severity = Severity::Critical;
    deliver(&ch, &resolved, &client()).await.unwrap();

    let bodies: Vec<serde_json::Value> = rx
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let actions: Vec<&str> = bodies
        .iter()
        .map(|b| b["event_action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["trigger", "acknowledge", "resolve"]);
    let b = &bodies[0];
    assert_eq!(b["routing_key"], "R0UTING");
    assert_eq!(b["dedup_key"], "INC-42");
    assert_eq!(b["payload"]["source"], "ai-incident-mcp");
    assert_eq!(b["payload"]["severity"], "error");
    assert_eq!(b["payload"]["summary"], "[high] Prompt injection blocked");
    assert_eq!(bodies[2]["payload"]["severity"], "critical");
    for b in &bodies {
        assert_eq!(b["dedup_key"], "INC-42", "one PagerDuty alert per incident");
    }
}

#[tokio::test]
async fn http_500_is_retryable_then_200_succeeds() {
    let (base, rx) = start_receiver().await;
    let ch = webhook(&base, "/flaky/a", "k");
    let n = notification("opened");
    let first = deliver(&ch, &n, &client()).await.unwrap_err();
    assert!(first.is_retryable(), "{first}");
    assert!(first.to_string().contains("HTTP 500"), "{first}");
    let second = deliver(&ch, &n, &client()).await.unwrap();
    assert_eq!(second.status, Some(200));
    // Both attempts carried the same idempotency key, so the receiver can de-duplicate.
    let keys: Vec<String> = rx
        .requests()
        .iter()
        .map(|r| r.headers[IDEMPOTENCY_HEADER].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys, vec![n.id.clone(), n.id.clone()]);
}

#[tokio::test]
async fn deliver_with_retry_recovers_from_a_500() {
    let (base, rx) = start_receiver().await;
    let cfg = NotifyConfig {
        max_attempts: 3,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        jitter: false,
        timeout: Duration::from_secs(5),
        channels: vec![],
    };
    let out = deliver_with_retry(
        &webhook(&base, "/flaky/b", "k"),
        &notification("opened"),
        &client(),
        &cfg,
    )
    .await;
    assert_eq!(out.attempts, 2);
    assert!(out.result.is_ok());

    let always = deliver_with_retry(
        &webhook(&base, "/status/503", "k"),
        &notification("opened"),
        &client(),
        &cfg,
    )
    .await;
    assert_eq!(always.attempts, 3, "gives up after max_attempts");
    assert!(always.result.unwrap_err().is_retryable());

    let bad = deliver_with_retry(
        &webhook(&base, "/status/400", "k"),
        &notification("opened"),
        &client(),
        &cfg,
    )
    .await;
    assert_eq!(bad.attempts, 1, "permanent errors are not retried");
    assert_eq!(
        rx.requests()
            .iter()
            .filter(|r| r.path == "/status/400")
            .count(),
        1
    );
}

#[tokio::test]
async fn status_classification_4xx_permanent_429_retryable_with_retry_after() {
    let (base, _rx) = start_receiver().await;
    let n = notification("opened");
    for (code, retryable) in [
        (400, false),
        (401, false),
        (404, false),
        (408, true),
        (429, true),
        (500, true),
        (502, true),
    ] {
        let err = deliver(
            &webhook(&base, &format!("/status/{code}"), "k"),
            &n,
            &client(),
        )
        .await
        .unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "HTTP {code}: {err}");
    }
    let err = deliver(&webhook(&base, "/status/429", "k"), &n, &client())
        .await
        .unwrap_err();
    match err {
        DeliveryError::Retryable { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)))
        }
        other => panic!("expected retryable, got {other}"),
    }
}

#[tokio::test]
async fn connection_refused_is_retryable_and_does_not_leak_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let ch = ChannelConfig {
        url: Some(format!("http://{addr}/services/T0/B0/slack-secret-token")),
        ..channel(ChannelKind::Slack, "slack")
    };
    let err = deliver(&ch, &notification("opened"), &client())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("connection failed"), "{err}");
    assert!(!err.to_string().contains("slack-secret-token"), "{err}");
}

#[tokio::test]
async fn timeout_is_retryable() {
    let (base, _rx) = start_receiver().await;
    let opts = DeliveryOptions {
        timeout: Duration::from_millis(200),
    };
    let err = deliver_with(
        &webhook(&base, "/slow", "k"),
        &notification("opened"),
        &client(),
        &opts,
    )
    .await
    .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test]
async fn email_arrives_at_a_real_smtp_sink() {
    let (addr, mails) = start_smtp_sink("250 OK").await;
    let n = notification("escalated");
    let receipt = deliver(&email_channel(addr), &n, &client()).await.unwrap();
    assert_eq!(receipt.kind, ChannelKind::Email);
    assert_eq!(receipt.status, Some(250));

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert!(m.mail_from.contains("aim@example.com"), "{m:?}");
    assert_eq!(m.rcpt_to.len(), 2);
    assert!(m.rcpt_to[0].contains("oncall@example.com"), "{m:?}");
    assert!(
        m.data
            .contains("Subject: [AIM][HIGH] Prompt injection blocked (incident INC-42)"),
        "{}",
        m.data
    );
    assert!(
        m.data
            .contains("Rule pi.ignore_previous matched in a tool output."),
        "{}",
        m.data
    );
    assert!(m.data.contains("Escalation level: 2"), "{}", m.data);
    assert!(m.data.contains("Content-Type: text/plain"), "{}", m.data);
    assert!(
        m.data
            .contains("Message-ID: <INC-42.escalated.L2@ai-incident-mcp>"),
        "{}",
        m.data
    );
}

#[tokio::test]
async fn smtp_5xx_is_permanent_and_4xx_retryable() {
    let (addr, _) = start_smtp_sink("550 5.1.1 no such user").await;
    let err = deliver(&email_channel(addr), &notification("opened"), &client())
        .await
        .unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    let (addr, _) = start_smtp_sink("451 4.3.0 try again later").await;
    let err = deliver(&email_channel(addr), &notification("opened"), &client())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test]
async fn smtp_connection_refused_is_retryable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let err = deliver(&email_channel(addr), &notification("opened"), &client())
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

// ------------------------------------------------------------------------------------------------
// No network
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn log_channel_always_delivers() {
    let r = deliver(
        &ChannelConfig::log("log"),
        &notification("opened"),
        &client(),
    )
    .await
    .unwrap();
    assert_eq!((r.kind, r.status), (ChannelKind::Log, None));
}

#[tokio::test]
async fn incomplete_channel_config_is_permanent() {
    let cases = [
        ChannelConfig {
            url: Some("http://127.0.0.1:1/".into()),
            ..channel(ChannelKind::Webhook, "w")
        },
        channel(ChannelKind::Slack, "s"),
        channel(ChannelKind::Pagerduty, "p"),
        ChannelConfig {
            smtp_host: Some("127.0.0.1".into()),
            ..channel(ChannelKind::Email, "e")
        },
        ChannelConfig {
            url: Some("ftp://x".into()),
            secret: Some("k".into()),
            ..channel(ChannelKind::Webhook, "w")
        },
    ];
    for ch in cases {
        let err = deliver(&ch, &notification("opened"), &client())
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{ch:?}: {err}");
        assert!(err.to_string().contains("invalid channel config"), "{err}");
    }
}

#[test]
fn verify_signature_rejects_malformed_headers() {
    let body = b"{}";
    let good = sign(b"k", body);
    assert!(verify_signature(b"k", body, &good));
    for bad in [
        "",
        "sha256=",
        "sha256=zz",
        "md5=00",
        &good[7..],
        &good.replace("sha256=", "sha1="),
    ] {
        assert!(!verify_signature(b"k", body, bad), "{bad}");
    }
    // Known-answer test (RFC 4231-style check with a fixed key and message).
    assert_eq!(
        sign(b"key", b"The quick brown fox jumps over the lazy dog"),
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    );
}

#[test]
fn backoff_table() {
    let ms = Duration::from_millis;
    let cases = [
        (0, 100),
        (1, 100),
        (2, 200),
        (3, 400),
        (4, 800),
        (5, 1000),
        (40, 1000),
        (u32::MAX, 1000),
    ];
    for (attempt, expect) in cases {
        assert_eq!(
            backoff(attempt, ms(100), ms(1000)),
            ms(expect),
            "attempt {attempt}"
        );
    }
    assert_eq!(
        backoff(3, Duration::MAX, Duration::MAX),
        Duration::MAX,
        "no overflow panic"
    );
}

#[test]
fn jittered_backoff_is_deterministic_and_bounded() {
    let s = Duration::from_secs;
    for attempt in 1..10 {
        let d = backoff(attempt, s(2), s(300));
        let j = backoff_jittered(attempt, s(2), s(300), "INC-1:opened:L1");
        assert!(j >= d / 2 && j <= d, "attempt {attempt}: {j:?} vs {d:?}");
        assert_eq!(
            j,
            backoff_jittered(attempt, s(2), s(300), "INC-1:opened:L1")
        );
    }
    let a = backoff_jittered(5, s(2), s(300), "INC-1:opened:L1");
    let b = backoff_jittered(5, s(2), s(300), "INC-2:opened:L1");
    assert_ne!(a, b, "different notifications spread out");
}

#[test]
fn retry_decision_table() {
    let now = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let cfg = NotifyConfig {
        max_attempts: 3,
        backoff_base: Duration::from_secs(2),
        backoff_max: Duration::from_secs(60),
        jitter: false,
        timeout: Duration::from_secs(10),
        channels: vec![],
    };
    let retryable = |after: Option<u64>| DeliveryError::Retryable {
        channel: "c".into(),
        reason: "HTTP 503".into(),
        retry_after: after.map(Duration::from_secs),
    };
    let permanent = DeliveryError::Permanent {
        channel: "c".into(),
        reason: "HTTP 400".into(),
    };
    let at = |s: i64| RetryDecision::RetryAt(now + chrono::TimeDelta::seconds(s));
    assert_eq!(retry_decision(&retryable(None), 1, "n", &cfg, now), at(2));
    assert_eq!(retry_decision(&retryable(None), 2, "n", &cfg, now), at(4));
    assert_eq!(
        retry_decision(&retryable(None), 3, "n", &cfg, now),
        RetryDecision::GiveUp
    );
    assert_eq!(
        retry_decision(&retryable(Some(30)), 1, "n", &cfg, now),
        at(30),
        "Retry-After honoured"
    );
    assert_eq!(
        retry_decision(&permanent, 1, "n", &cfg, now),
        RetryDecision::GiveUp
    );
}

#[test]
fn pagerduty_mappings() {
    assert_eq!(pagerduty_action("opened"), "trigger");
    assert_eq!(pagerduty_action("escalated"), "trigger");
    assert_eq!(pagerduty_action("acknowledged"), "acknowledge");
    assert_eq!(pagerduty_action("resolved"), "resolve");
    assert_eq!(pagerduty_action("closed"), "resolve");
    let sev: Vec<&str> = Severity::ALL
        .iter()
        .map(|s| pagerduty_severity(*s))
        .collect();
    assert_eq!(sev, vec!["critical", "error", "warning", "info"]);
}

#[test]
fn slack_header_is_truncated_to_slack_limits() {
    let mut n = notification("opened");
    n.title = "é".repeat(400);
    let p = slack_payload(&n);
    let header = p["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(header.chars().count() <= 150, "{}", header.chars().count());
}
