//! The data-quality checks over arbitrary file contents: the input is split at 0xFF bytes into
//! employees.json, clients.json, orders.json and a tool catalog; the checks report findings
//! and never panic.
#![no_main]

use std::sync::OnceLock;

use ai_incident_mcp::checks::dataquality::{check_all, pins::PinLock};
use libfuzzer_sys::fuzz_target;

fn dirs() -> &'static (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    static D: OnceLock<(tempfile::TempDir, std::path::PathBuf, std::path::PathBuf)> =
        OnceLock::new();
    D.get_or_init(|| {
        let t = tempfile::tempdir().expect("tempdir");
        let data = t.path().join("data");
        let cat = t.path().join("catalog");
        std::fs::create_dir_all(&data).expect("data dir");
        std::fs::create_dir_all(&cat).expect("catalog dir");
        (t, data, cat)
    })
}

fuzz_target!(|input: &[u8]| {
    let (_, data, cat) = dirs();
    let mut parts = input.split(|&b| b == 0xFF);
    for (dir, name) in [
        (data, "employees.json"),
        (data, "clients.json"),
        (data, "orders.json"),
        (cat, "crm_mcp.json"),
    ] {
        let path = dir.join(name);
        match parts.next() {
            Some(p) => std::fs::write(&path, p).expect("write"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let report = check_all(data, cat, &PinLock::new());
    for f in &report.findings {
        let _ = f.dedup_key();
    }
});
