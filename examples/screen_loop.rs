//! Screens the 1 KB benchmark prompt N times (default 200,000) and prints the mean time per
//! screen. For profilers and instruction counters, which need a plain loop:
//!
//! ```text
//! cargo build --release --example screen_loop
//! perf record -g target/release/examples/screen_loop
//! scripts/bench/engine_instructions.sh      # deterministic instructions per screen (valgrind)
//! ```
use ai_incident_mcp::detect::{Engine, Source};
#[path = "../benches/common/corpus.rs"]
mod corpus;

fn main() {
    let s = corpus::corpus(1024);
    let e = Engine::builtin().expect("embedded engine");
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200000);
    let t = std::time::Instant::now();
    for _ in 0..n {
        std::hint::black_box(e.screen(std::hint::black_box(&s), Source::User));
    }
    eprintln!("full screen {:?}", t.elapsed() / n.max(1));
}
