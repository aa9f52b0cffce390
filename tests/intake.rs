//! E-mail intake against the real binary: Python's smtplib sends mail to the SMTP listener of
//! `serve --http` (`[intake.smtp]`), the REST API shows the incident it became, and the answer
//! with the incident id arrives at an SMTP sink standing in for the outbound mail server.

use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::*;

/// A minimal SMTP server that accepts everything and hands each message's text on.
async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut lines = BufReader::new(r).lines();
                w.write_all(b"220 sink\r\n").await.unwrap();
                let (mut in_data, mut msg) = (false, String::new());
                while let Ok(Some(l)) = lines.next_line().await {
                    if in_data {
                        if l == "." {
                            in_data = false;
                            tx.send(std::mem::take(&mut msg)).unwrap();
                            w.write_all(b"250 queued\r\n").await.unwrap();
                        } else {
                            msg.push_str(&l);
                            msg.push('\n');
                        }
                        continue;
                    }
                    let verb = l.get(..4).unwrap_or("").to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-sink\r\n250 8BITMIME\r\n",
                        "DATA" => {
                            in_data = true;
                            b"354 go\r\n"
                        }
                        "QUIT" => b"221 bye\r\n",
                        _ => b"250 ok\r\n",
                    };
                    w.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, rx)
}

/// Starts the binary with `config`; returns (child, HTTP base URL, SMTP port).
async fn serve_with_intake(db: &str, config: &str) -> (tokio::process::Child, String, u16) {
    let mut cmd = command(db);
    cmd.args(["--config", config, "serve", "--http", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut url, mut port) = (None, None);
    tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(a) = l.split("smtp://").nth(1) {
                port = a.trim().rsplit(':').next().and_then(|p| p.parse().ok());
            }
            if let Some(rest) = l.split("listening on ").nth(1) {
                url = Some(rest.trim().to_string());
            }
            if url.is_some() && port.is_some() {
                return;
            }
        }
        panic!("server exited before listening");
    })
    .await
    .expect("server start timeout");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url.unwrap(), port.unwrap())
}

#[tokio::test]
async fn smtplib_mail_becomes_an_incident_and_bad_mail_gets_its_smtp_code() {
    let d = tempdir();
    let (sink_port, mut replies) = smtp_sink().await;
    let cfg = d.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[intake.smtp]
listen = "127.0.0.1:0"
recipients = ["Incidents@Example.com"]
max_message_bytes = 8192
reply_channel = "reply-mail"

[[notify.channels]]
name = "log"
kind = "log"

[[notify.channels]]
name = "reply-mail"
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {sink_port}
from = "AI Incidents <aim@example.com>"
to = ["unused@example.com"]
"#
        ),
    )
    .unwrap();
    let (_srv, url, port) = serve_with_intake(&db_in(d.path()), cfg.to_str().unwrap()).await;

    let out = tokio::process::Command::new("python3")
        .arg(repo_path("tests/e2e/smtp_client.py"))
        .args(["127.0.0.1", &port.to_string()])
        .output()
        .await
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "smtplib client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = |k: &str| r[k][0].as_u64().unwrap_or(0);
    assert_eq!(r["ehlo"], 250);
    assert_eq!(r["size_advertised"], true);
    assert_eq!(code("send"), 250, "{r}");
    let text = r["send"][1].as_str().unwrap();
    let id = text.split("incident ").nth(1).unwrap().trim().to_string();
    assert!(id.starts_with("INC-"), "{text}");
    assert_eq!(code("resend"), 250);
    assert!(
        r["resend"][1].as_str().unwrap().ends_with(&id),
        "a resent mail (same Message-ID) files no second incident: {r}"
    );
    assert_eq!(code("unknown_rcpt"), 550);
    assert_eq!(code("data_without_rcpt"), 554);
    assert_eq!(code("mail_size_too_big"), 552);
    assert_eq!(code("oversize"), 552);
    assert_eq!(code("malformed"), 554);
    assert_eq!(code("no_sender"), 550);
    assert_eq!(code("noop"), 250, "the session survives every refusal");

    // The incident, through the REST API.
    let http = reqwest::Client::new();
    let got: Value = http
        .get(format!("{url}/api/v1/incidents/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let inc = &got["incident"];
    assert_eq!(inc["reporter"], "bob@example.com");
    assert_eq!(inc["incident_type"], "security");
    assert_eq!(inc["severity"], "high");
    assert_eq!(inc["detection_method"], "manual_report");
    let desc = inc["description"].as_str().unwrap();
    assert!(desc.starts_with("[severity: high] support bot leaked a customer address"));
    assert!(
        desc.contains("customer 42's address to customer 7"),
        "{desc}"
    );
    assert!(
        !desc.contains("<script>") && !desc.contains("<b>"),
        "{desc}"
    );
    assert!(desc.contains("chat-log.bin (300 bytes)"), "{desc}");
    let list: Value = http
        .get(format!("{url}/api/v1/incidents"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["incidents"].as_array().map(Vec::len),
        Some(1),
        "only the one good mail became an incident: {list}"
    );

    // The answer with the incident id, through the reply channel's SMTP server.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), replies.recv())
        .await
        .expect("an answer is sent")
        .unwrap();
    assert!(answer.contains("To: bob@example.com"), "{answer}");
    assert!(answer.contains(&id), "{answer}");
    assert!(answer.contains("Auto-Submitted: auto-replied"), "{answer}");
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), replies.recv())
            .await
            .is_err(),
        "the resent mail is not answered twice"
    );
}

#[tokio::test]
async fn a_read_only_server_refuses_mail() {
    let d = tempdir();
    let cfg = d.path().join("config.toml");
    std::fs::write(
        &cfg,
        "[server]\nread_only = true\n[intake.smtp]\nlisten = \"127.0.0.1:0\"\nrecipients = [\"incidents@example.com\"]\n",
    )
    .unwrap();
    let (_srv, _url, port) = serve_with_intake(&db_in(d.path()), cfg.to_str().unwrap()).await;
    let script = format!(
        "import smtplib\ns=smtplib.SMTP('127.0.0.1',{port})\ns.ehlo('c')\ns.mail('bob@example.com')\ns.rcpt('incidents@example.com')\nprint(s.data(b'From: bob@example.com\\r\\nSubject: x\\r\\n\\r\\ny\\r\\n')[0])"
    );
    let out = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "550");
}
