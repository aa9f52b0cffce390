//! JSON-RPC dispatch end to end: the input is a stdio session (lines) served by the real
//! handler over a real SQLite store; it must end (at end of input) without a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use ai_incident_mcp::config::Config;
use ai_incident_mcp::mcp::IncidentMcp;
use libfuzzer_sys::fuzz_target;

struct World {
    rt: tokio::runtime::Runtime,
    handler: IncidentMcp,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = Config::load(None).expect("default config");
        cfg.documentation.dir = dir.path().join("docs");
        let db = dir.path().join("fuzz.db");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let svc = rt
            .block_on(async {
                ai_incident_mcp::app::build_service(&db.to_string_lossy(), Arc::new(cfg))
            })
            .expect("service");
        World {
            rt,
            handler: IncidentMcp::new(svc),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let input = std::io::Cursor::new(data.to_vec());
    let r = w.rt.block_on(ai_incident_mcp::mcp::stdio::serve(
        w.handler.clone(),
        input,
        std::io::sink(),
    ));
    // Starting fails only for a missing initialize, which is the input's business.
    let _ = r;
});
