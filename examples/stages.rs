use ai_incident_mcp::detect::{
    Engine, Source, decode,
    normalize::{normalize, tokenize},
};
use std::time::Instant;
#[path = "../benches/common/corpus.rs"]
mod corpus;

fn main() {
    let s = corpus::corpus(1024);
    let n = 20000;
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(normalize(&s));
    }
    println!("normalize {:?}", t.elapsed() / n);
    let nn = normalize(&s);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(tokenize(&nn.text));
    }
    println!("tokenize {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(decode::find_segments(&s));
    }
    println!("segments {:?}", t.elapsed() / n);
    let model = ai_incident_mcp::detect::model::Model::from_bytes(include_bytes!(
        "../data/model/weights.bin"
    ))
    .unwrap()
    .unwrap();
    if let Some(lm) = &model.lm {
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(lm.score(&s));
        }
        println!("naturalness {:?}", t.elapsed() / n);
    }
    let toks = tokenize(&nn.text);
    let mut scratch = Vec::new();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(model.predict(&nn.text, &toks, &mut scratch));
    }
    println!("model predict {:?}", t.elapsed() / n);
    let e = Engine::builtin().unwrap();
    let r = Engine::with_model_bytes("", Default::default(), &[]).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(r.screen(&s, Source::User));
    }
    println!("rules-only screen {:?}", t.elapsed() / n);
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(e.screen(&s, Source::User));
    }
    println!("full screen {:?}", t.elapsed() / n);
    let (r, m) = e.heap_bytes();
    println!(
        "heap: rules {} bytes, model {} bytes, rules={}",
        r,
        m,
        e.rule_count()
    );
}
