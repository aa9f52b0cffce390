//! Read-only mode and named actors over real sockets: `serve --read-only` hides the write tools
//! over MCP and answers write endpoints 403; `[[auth.tokens]]` name the actor the timeline
//! records (REST, web form, MCP over Streamable HTTP), a reader token cannot write anywhere;
//! stdio and the CLI record `--actor`.

use std::process::Stdio;

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncBufReadExt;

use crate::common::backends::on_both_backends;
use crate::common::*;

fn report_body() -> Value {
    json!({"incident_type": "security", "severity": "high",
           "description": "roles test: the bot leaked an address", "reporter_email": "oncall@example.com"})
}

/// `ai-incident-mcp [global…] serve --http 127.0.0.1:0 [serve_args…]`; returns (child, URL).
async fn serve(db: &str, global: &[&str], serve_args: &[&str]) -> (tokio::process::Child, String) {
    let mut cmd = command(db);
    cmd.args(global)
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(serve_args)
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Ok(Some(l)) = lines.next_line().await {
            if let Some(rest) = l.split("listening on ").nth(1) {
                return rest.trim().to_string();
            }
        }
        panic!("server exited before listening");
    })
    .await
    .unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

async fn mcp_client(url: &str, token: Option<&str>) -> Client {
    let mut cfg = StreamableHttpClientTransportConfig::with_uri(format!("{url}/mcp"));
    if let Some(t) = token {
        cfg = cfg.auth_header(t);
    }
    ().serve(StreamableHttpClientTransport::from_config(cfg))
        .await
        .expect("MCP over HTTP connects")
}

/// The actors of the incident's timeline events, in order.
async fn actors(http: &reqwest::Client, url: &str, id: &str, token: Option<&str>) -> Vec<String> {
    let mut rq = http.get(format!("{url}/api/v1/incidents/{id}"));
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let v: Value = rq.send().await.unwrap().json().await.unwrap();
    v["timeline"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|e| e["actor"].as_str().unwrap().to_string())
        .collect()
}

fn write_tool_names(tools: &[rmcp::model::Tool]) -> Vec<String> {
    tools
        .iter()
        .filter(|t| t.annotations.as_ref().and_then(|a| a.read_only_hint) != Some(true))
        .map(|t| t.name.to_string())
        .collect()
}

on_both_backends! {
    async fn read_only_mode_hides_write_tools_and_refuses_write_endpoints(db) {
        let db = db.url();
        let (code, out, err) = run_cli(
            db,
            &[
                "report",
                "--type",
                "security",
                "--description",
                "filed before read-only",
                "--email",
                "a@example.com",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
        let id = serde_json::from_str::<Value>(&out).unwrap()["incident_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (_srv, url) = serve(db, &[], &["--read-only"]).await;
        let http = reqwest::Client::new();

        // REST: reads work, writes are 403 with a sentence.
        let r = http
            .get(format!("{url}/api/v1/incidents/{id}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = http
            .post(format!("{url}/api/v1/incidents/report"))
            .json(&report_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "forbidden");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read-only"),
            "{v}"
        );
        let r = http
            .post(format!("{url}/api/v1/incidents/{id}/escalate"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // The web form too.
        let r = http
            .post(format!("{url}/incidents/{id}/escalate"))
            .header("Origin", url.as_str())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("reason=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        assert!(r.text().await.unwrap().contains("read-only"));

        // MCP: no write tool is listed, reads work, a write tool is unknown.
        let c = mcp_client(&url, None).await;
        let tools = c.list_all_tools().await.unwrap();
        assert!(
            write_tool_names(&tools).is_empty(),
            "{:?}",
            write_tool_names(&tools)
        );
        assert!(tools.iter().any(|t| t.name == "get_incident"));
        assert!(!tools.iter().any(|t| t.name == "report_incident"));
        call_ok(&c, "get_incident", json!({"incident_id": id})).await;
        let r = c
            .call_tool(
                rmcp::model::CallToolRequestParams::new("escalate_incident")
                    .with_arguments(args(json!({"incident_id": id}))),
            )
            .await;
        assert!(
            r.is_err() || r.as_ref().is_ok_and(|r| r.is_error == Some(true)),
            "escalate_incident must not run in read-only mode: {r:?}"
        );
        let tl = actors(&http, &url, &id, None).await;
        // Only the reporter and the background loop's notifier wrote (the loop keeps running).
        assert!(
            tl.iter().all(|a| a == "a@example.com" || a == "notifier"),
            "no caller wrote: {tl:?}"
        );
    }
}

fn sha(t: &str) -> String {
    hex::encode(sha2::Sha256::digest(t.as_bytes()))
}

on_both_backends! {
    async fn named_tokens_are_recorded_as_actors_and_readers_cannot_write(db) {
        let d = tempdir();
        let db = db.url();
        let cfg = d.path().join("config.toml");
        std::fs::write(
            &cfg,
            format!(
                "[[auth.tokens]]\nname = \"alice\"\ntoken_sha256 = \"{}\"\nrole = \"responder\"\n\n\
                 [[auth.tokens]]\nname = \"rita\"\ntoken_sha256 = \"{}\"\nrole = \"reader\"\n",
                sha("alice-token-1"),
                sha("rita-token-1").to_uppercase()
            ),
        )
        .unwrap();
        let (_srv, url) = serve(
            db,
            &["--config", cfg.to_str().unwrap()],
            &["--token", "admin-token-1"],
        )
        .await;
        let http = reqwest::Client::new();

        // No token / an unknown token: 401.
        let r = http
            .get(format!("{url}/api/v1/incidents"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        let r = http
            .get(format!("{url}/api/v1/incidents"))
            .bearer_auth("nobody")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);

        // alice (responder) reports and escalates over REST: the escalation records alice.
        let r = http
            .post(format!("{url}/api/v1/incidents/report"))
            .bearer_auth("alice-token-1")
            .json(&report_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let id = r.json::<Value>().await.unwrap()["incident_id"]
            .as_str()
            .unwrap()
            .to_string();
        let r = http
            .post(format!("{url}/api/v1/incidents/{id}/escalate"))
            .bearer_auth("alice-token-1")
            .json(&json!({"reason": "no answer"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            actors(&http, &url, &id, Some("alice-token-1"))
                .await
                .last()
                .unwrap(),
            "alice"
        );

        // rita (reader) reads, but every write is refused: REST 403, web 403, MCP isError.
        let r = http
            .get(format!("{url}/api/v1/incidents/{id}"))
            .bearer_auth("rita-token-1")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "a reader reads (token hash matched case-insensitively)"
        );
        let r = http
            .post(format!("{url}/api/v1/incidents/{id}/escalate"))
            .bearer_auth("rita-token-1")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let v: Value = r.json().await.unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains("reader"),
            "{v}"
        );
        let r = http
            .post(format!("{url}/incidents/{id}/escalate"))
            .bearer_auth("rita-token-1")
            .header("Origin", url.as_str())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("reason=x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let rita = mcp_client(&url, Some("rita-token-1")).await;
        let tools = rita.list_all_tools().await.unwrap();
        assert!(
            write_tool_names(&tools).is_empty(),
            "a reader is shown read tools only"
        );
        assert!(tools.iter().any(|t| t.name == "list_incidents"));
        let e = call_err(&rita, "escalate_incident", json!({"incident_id": id})).await;
        assert!(e.contains("reader"), "{e}");
        call_ok(&rita, "get_incident", json!({"incident_id": id})).await;

        // alice over MCP: the timeline records alice, not "mcp".
        let alice = mcp_client(&url, Some("alice-token-1")).await;
        assert!(!write_tool_names(&alice.list_all_tools().await.unwrap()).is_empty());
        call_ok(
            &alice,
            "escalate_incident",
            json!({"incident_id": id, "reason": "still nothing"}),
        )
        .await;
        assert_eq!(
            actors(&http, &url, &id, Some("alice-token-1"))
                .await
                .last()
                .unwrap(),
            "alice"
        );

        // The web form as alice records alice; the single --token is admin "admin".
        let r = http
            .post(format!("{url}/incidents/{id}/note"))
            .bearer_auth("alice-token-1")
            .header("Origin", url.as_str())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body("note=looking+into+it")
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{}",
            r.status()
        );
        assert_eq!(
            actors(&http, &url, &id, Some("alice-token-1"))
                .await
                .last()
                .unwrap(),
            "alice"
        );
        let r = http
            .post(format!("{url}/api/v1/incidents/{id}/escalate"))
            .bearer_auth("admin-token-1")
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let tl = actors(&http, &url, &id, Some("admin-token-1")).await;
        assert_eq!(tl.last().unwrap(), "admin");
        assert!(
            !tl.iter().any(|a| a == "mcp" || a == "api" || a == "web"),
            "{tl:?}"
        );
    }
}

on_both_backends! {
    async fn stdio_and_cli_record_the_actor_flag(db) {
        let db = db.url();
        let c = stdio_client(db, &["--actor", "carol"]).await;
        let r = call_ok(&c, "report_incident", report_body()).await;
        let id = r["incident_id"].as_str().unwrap().to_string();
        call_ok(&c, "escalate_incident", json!({"incident_id": id})).await;
        let (code, _, err) = run_cli(db, &["--actor", "dave", "escalate", &id]).await;
        assert_eq!(code, 0, "{err}");
        let (_, out, _) = run_cli(db, &["incidents", "get", &id]).await;
        let v: Value = serde_json::from_str(&out).unwrap();
        let tl: Vec<&str> = v["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["actor"].as_str().unwrap())
            .collect();
        let n = tl.len();
        assert!(n >= 2);
        assert!(
            tl.contains(&"carol"),
            "stdio escalation records --actor: {tl:?}"
        );
        assert_eq!(
            tl.last(),
            Some(&"dave"),
            "CLI escalation records --actor: {tl:?}"
        );
    }
}
