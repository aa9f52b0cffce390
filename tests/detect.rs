//! The product-specific fixture (`tests/fixtures/product_cases.jsonl`) passes at the default
//! thresholds (flag 0.65, block 0.9): recall >= 0.9, FPR <= 3 %, every attack category >= 0.8 (model weight 0.8).
use ai_incident_mcp::detect::{Engine, Source, Verdict};

#[test]
fn product_cases_pass_at_default_thresholds() {
    let engine = Engine::builtin().unwrap();
    let data = include_str!("fixtures/product_cases.jsonl");
    let (mut tp, mut fneg, mut fp, mut tn) = (0, 0, 0, 0);
    let mut per: std::collections::BTreeMap<String, (u32, u32)> = Default::default();
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let src = match v["screen_source"].as_str() {
            Some("tool_output") => Source::ToolOutput,
            Some("document") => Source::Document,
            _ => Source::User,
        };
        let s = engine.screen(v["text"].as_str().unwrap(), src);
        let hit = s.verdict != Verdict::Allow;
        if v["label"] == "attack" {
            let e = per
                .entry(v["category"].as_str().unwrap().to_owned())
                .or_default();
            e.1 += 1;
            if hit {
                tp += 1;
                e.0 += 1;
            } else {
                fneg += 1;
            }
        } else if hit {
            fp += 1;
        } else {
            tn += 1;
        }
    }
    let recall = tp as f64 / (tp + fneg) as f64;
    let fpr = fp as f64 / (fp + tn) as f64;
    assert!(recall >= 0.9, "recall {recall}");
    assert!(fpr <= 0.03, "fpr {fpr}");
    for (c, (h, n)) in per {
        assert!(h as f64 / n as f64 >= 0.8, "{c}: {h}/{n}");
    }
}
