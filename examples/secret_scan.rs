//! Runs the secret rules over a JSON-lines file (`text` and `label` fields) and prints, per
//! label, how many rows have a secret finding at all and how many at or above the level that
//! raises the verdict to flag. Findings are printed masked (never the secret).
//!
//! `cargo run --release --example secret_scan -- ../shared/eval/dev.jsonl`
use ai_incident_mcp::detect::{DEFAULT_FLAG, Engine, SECRET_FLAG_CONFIDENCE, Source};
use std::collections::BTreeMap;
use std::io::BufRead;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: secret_scan FILE.jsonl"))?;
    let engine = Engine::builtin()?;
    let level = SECRET_FLAG_CONFIDENCE.min(DEFAULT_FLAG);
    // label -> (rows, rows with any finding, rows with a finding >= level)
    let mut counts: BTreeMap<String, (u32, u32, u32)> = BTreeMap::new();
    for line in std::io::BufReader::new(std::fs::File::open(&path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&line)?;
        let text = v["text"].as_str().unwrap_or("");
        let label = v["label"].as_str().unwrap_or("?").to_string();
        let s = engine.screen(text, Source::User);
        let e = counts.entry(label.clone()).or_default();
        e.0 += 1;
        if !s.secrets.is_empty() {
            e.1 += 1;
        }
        if s.secrets.iter().any(|f| f.confidence >= level) {
            e.2 += 1;
        }
        for f in &s.secrets {
            eprintln!(
                "{} [{label}] {} {:.2} example={} {}",
                v["id"].as_str().unwrap_or("?"),
                f.rule,
                f.confidence,
                f.example,
                f.masked
            );
        }
    }
    for (label, (n, any, strong)) in counts {
        println!(
            "{label}: {n} rows, {any} with any secret finding ({:.4}), {strong} at >= {level} ({:.4})",
            any as f64 / n as f64,
            strong as f64 / n as f64
        );
    }
    Ok(())
}
