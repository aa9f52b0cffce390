//! The configuration loader (defaults ⊕ user TOML, unknown keys, validation): any text is a
//! config or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cfg) = ai_incident_mcp::config::Config::from_toml_str(text) {
            // What loads must also validate and serialize.
            cfg.validate().expect("a loaded config validates");
            let _ = serializes(&cfg);
        }
    }
});

fn serializes(cfg: &ai_incident_mcp::config::Config) -> Option<()> {
    let s = serde_json::to_string(cfg).ok()?;
    let _: serde_json::Value = serde_json::from_str(&s).ok()?;
    Some(())
}
