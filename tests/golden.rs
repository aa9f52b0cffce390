//! Golden `tools/list`: every tool's name, title, description, input and output schema and
//! annotations, exactly as a client receives them, compared with `tests/golden/tools_list.json`.
//! A changed schema is a reviewed diff: regenerate with `UPDATE_GOLDEN=1 cargo test --test tests golden`.

use std::path::PathBuf;

use rmcp::ServiceExt;
use rmcp::model::Tool;

use ai_incident_mcp::app;
use ai_incident_mcp::mcp::IncidentMcp;

use crate::common::*;

/// Path of a golden file.
pub fn golden_path(name: &str) -> PathBuf {
    repo_path("tests/golden").join(name)
}

/// The canonical text of a tools list: pretty JSON, tools sorted by name.
pub fn tools_json(tools: &[Tool]) -> String {
    let mut tools = tools.to_vec();
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let mut s = serde_json::to_string_pretty(&tools).expect("tools serialize");
    s.push('\n');
    s
}

/// Compares `actual` with the golden file `name`; with `UPDATE_GOLDEN=1` rewrites it instead.
pub fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; create it with UPDATE_GOLDEN=1",
            path.display()
        )
    });
    if expected != actual {
        let (el, al): (Vec<&str>, Vec<&str>) =
            (expected.lines().collect(), actual.lines().collect());
        let first = el
            .iter()
            .zip(&al)
            .position(|(e, a)| e != a)
            .unwrap_or(el.len().min(al.len()));
        panic!(
            "{} differs from the server's output at line {}:\n  golden: {}\n  actual: {}\n\
             If the change is intended, regenerate with UPDATE_GOLDEN=1 and review the diff.",
            path.display(),
            first + 1,
            el.get(first).unwrap_or(&"<end of file>"),
            al.get(first).unwrap_or(&"<end of file>"),
        );
    }
}

#[tokio::test]
async fn tools_list_matches_the_golden_file() {
    let d = tempdir();
    let svc = app::build_default_service(&db_in(d.path())).expect("service");
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        let s = IncidentMcp::new(svc).serve(server_io).await.expect("serve");
        let _ = s.waiting().await;
    });
    let client = ().serve(client_io).await.expect("client handshake");
    let tools = client.list_all_tools().await.expect("tools/list");
    assert_golden("tools_list.json", &tools_json(&tools));
    client.cancel().await.expect("cancel");
    server.abort();
}
