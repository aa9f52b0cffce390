//! Host / Origin / Authorization parsing of the HTTP guards: strict, total, and stable (what
//! parses re-parses to the same value).
#![no_main]

use ai_incident_mcp::http::guards::{bearer_token, parse_authority, parse_origin};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(a) = parse_authority(s) {
        assert!(!a.host.is_empty());
        let again = match a.port {
            Some(p) => format!("{}:{p}", a.host),
            None => a.host.clone(),
        };
        assert_eq!(parse_authority(&again), Some(a), "{s:?}");
    }
    if let Some((scheme, a)) = parse_origin(s) {
        assert!(scheme == "http" || scheme == "https");
        assert!(!a.host.contains(['/', '@', '?', '#']));
    }
    if let Some(t) = bearer_token(s) {
        assert!(!t.is_empty() && !t.starts_with(' '));
    }
});
