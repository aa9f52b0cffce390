//! The stdio line classifier: any bytes give a message, an error reply that is one JSON-RPC
//! error object, or nothing; never a panic.
#![no_main]

use ai_incident_mcp::mcp::stdio::{Parsed, parse_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_line(data) {
        Parsed::Reply(s) => {
            let v: serde_json::Value = serde_json::from_str(&s).expect("reply is JSON");
            assert_eq!(v["jsonrpc"], "2.0");
            let code = v["error"]["code"].as_i64().expect("error code");
            assert!(code == -32700 || code == -32600, "{code}");
            assert!(v["id"].is_null() || v["id"].is_number() || v["id"].is_string());
        }
        Parsed::Message(m) => {
            serde_json::to_string(&*m).expect("a parsed message serializes");
        }
        Parsed::Ignore => {}
    }
});
