#![no_main]
//! `cargo +nightly fuzz run screen`: the engine never panics and spans stay valid.
use ai_incident_mcp::detect::{Engine, Source};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static ENGINE: OnceLock<Engine> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let engine = ENGINE.get_or_init(|| Engine::builtin().expect("builtin rules compile"));
    for src in [Source::User, Source::ToolOutput, Source::Document] {
        let s = engine.screen(text, src);
        assert!((0.0..=1.0).contains(&s.risk_score));
        for m in &s.matches {
            assert!(m.start < m.end && m.end <= text.len());
            assert!(text.is_char_boundary(m.start) && text.is_char_boundary(m.end));
        }
    }
});
