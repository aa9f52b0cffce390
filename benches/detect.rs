//! Criterion benchmarks: full engine vs a baseline (lower-case + one aho-corasick pass over the
//! same phrases) on a 1 KB prompt and a 100 KB document.
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

criterion_group!(benches, bench);
criterion_main!(benches);
