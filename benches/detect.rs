//! Criterion benchmarks: full engine vs a baseline (lower-case + one aho-corasick pass over the
//! same phrases) on a 1 KB prompt and a 100 KB document; and the cost of the secret rules
//! (`secret_rules`): the same texts screened by the engine with and without them, in one run.
//!
//! `DETECT_BENCH_MODEL=FILE` adds `engine_1kb_model_file` / `engine_100kb_model_file`: the same
//! engine with that weight file instead of the shipped one, so two model files compare in one run
//! (e.g. `git show <rev>:data/model/weights.bin > /tmp/old.bin`).
use aho_corasick::AhoCorasick;
use ai_incident_mcp::detect::{Engine, Source, Thresholds};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

#[path = "common/corpus.rs"]
mod corpus;
use corpus::corpus;

fn phrases() -> Vec<String> {
    // Every literal of the rule library (phrases and keywords), for the baseline.
    let src = include_str!("../data/rules/default.toml");
    let mut out = Vec::new();
    for line in src.lines() {
        let l = line.trim();
        if l.starts_with('#')
            || l.starts_with("id =")
            || l.starts_with("owasp")
            || l.starts_with("atlas")
        {
            continue;
        }
        let mut rest = l;
        while let Some(a) = rest.find('"') {
            let Some(b) = rest[a + 1..].find('"') else {
                break;
            };
            let p = &rest[a + 1..a + 1 + b];
            if !p.is_empty() && !p.contains('@') {
                out.push(p.trim_end_matches('*').to_lowercase());
            }
            rest = &rest[a + b + 2..];
        }
    }
    out.sort();
    out.dedup();
    out
}

fn bench(c: &mut Criterion) {
    let engine = Engine::builtin().unwrap();
    let alt = std::env::var("DETECT_BENCH_MODEL").ok().map(|path| {
        let bytes =
            std::fs::read(&path).unwrap_or_else(|e| panic!("DETECT_BENCH_MODEL {path}: {e}"));
        Engine::with_model_bytes("", Thresholds::default(), &bytes).unwrap()
    });
    let ac = AhoCorasick::new(phrases()).unwrap();
    let small = corpus(1024);
    let big = corpus(100 * 1024);
    let mut g = c.benchmark_group("screen");
    g.bench_function("engine_1kb", |b| {
        b.iter(|| engine.screen(black_box(&small), Source::User))
    });
    g.bench_function("baseline_1kb", |b| {
        b.iter(|| {
            let l = black_box(&small).to_lowercase();
            ac.find_overlapping_iter(&l).count()
        })
    });
    // The token-salad score alone (part of engine_1kb): on the corpus text, and on the same
    // text as one line (its worst case: the whole text is copied and masked).
    let one_line = small.replace('\n', " ");
    g.bench_function("salad_1kb", |b| {
        b.iter(|| ai_incident_mcp::detect::salad::score(black_box(&small)))
    });
    g.bench_function("salad_1kb_one_line", |b| {
        b.iter(|| ai_incident_mcp::detect::salad::score(black_box(&one_line)))
    });
    // Hostile input: 64 KB of one-line brackets, links and code-span openers (every masking
    // look-ahead is bounded, so this stays linear).
    let openers = "[a](b ${c `d { ".repeat(64 * 1024 / 16);
    g.bench_function("salad_64kb_openers", |b| {
        b.iter(|| ai_incident_mcp::detect::salad::score(black_box(&openers)))
    });
    if let Some(alt) = &alt {
        g.bench_function("engine_1kb_model_file", |b| {
            b.iter(|| alt.screen(black_box(&small), Source::User))
        });
    }
    g.sample_size(30);
    g.bench_function("engine_100kb", |b| {
        b.iter(|| engine.screen(black_box(&big), Source::Document))
    });
    if let Some(alt) = &alt {
        g.bench_function("engine_100kb_model_file", |b| {
            b.iter(|| alt.screen(black_box(&big), Source::Document))
        });
    }
    g.bench_function("baseline_100kb", |b| {
        b.iter(|| {
            let l = black_box(&big).to_lowercase();
            ac.find_overlapping_iter(&l).count()
        })
    });
    g.finish();
}

/// The secret rules' cost: the full engine vs the same engine without the secret library, on
/// the same texts (the attack corpus at 1 KB and 100 KB, and 1 KB with three credentials in it).
fn secret_rules(c: &mut Criterion) {
    let on = Engine::builtin().unwrap();
    let off = Engine::builtin().unwrap().without_secret_rules();
    let small = corpus(1024);
    let big = corpus(100 * 1024);
    let mut with_keys = corpus(900);
    with_keys.push_str(&format!(
        " deploy with {} and {} or postgres://app:{}@db:5432/app",
        ["AKIA", "Q3EGRZ7TXWLM2KVB"].concat(),
        ["ghp_", "R7tK2mQ9vX4bN8cL1pZ6wY3hJ5fD0sA2eG7u"].concat(),
        "Zq8-vT4r!pL2"
    ));
    assert!(!on.screen(&with_keys, Source::User).secrets.is_empty());
    assert!(off.screen(&with_keys, Source::User).secrets.is_empty());
    let mut g = c.benchmark_group("secret_rules");
    for (name, text, source) in [
        ("1kb", &small, Source::User),
        ("1kb_with_keys", &with_keys, Source::User),
        ("100kb", &big, Source::Document),
    ] {
        g.bench_function(format!("on_{name}"), |b| {
            b.iter(|| on.screen(black_box(text), source))
        });
        g.bench_function(format!("off_{name}"), |b| {
            b.iter(|| off.screen(black_box(text), source))
        });
    }
    g.finish();
}

criterion_group!(benches, bench, secret_rules);
criterion_main!(benches);
