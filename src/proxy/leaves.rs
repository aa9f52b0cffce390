//! The texts of an MCP message that the guard screens: every string leaf of a JSON value with
//! its JSON path (`$.a.b[0]`, `$["odd key"]`), and for a tool result the text blocks, the text
//! of embedded resources and the string leaves of `structuredContent` (a text block that only
//! repeats the structured content is screened once); for a `resources/read` answer the text
//! contents and the blobs that decode as UTF-8, for a `prompts/get` answer its description and
//! the text (and embedded resource text) of its messages.
//!
//! May import: nothing from the crate (serde_json, base64 and rmcp's model only).

use rmcp::model::{
    CallToolResult, ContentBlock, GetPromptResult, ReadResourceResult, ResourceContents,
};
use serde_json::Value;

/// Every string leaf of `v`, depth first, with its path below `base`.
///
/// ```
/// use ai_incident_mcp::proxy::leaves::string_leaves;
/// let v = serde_json::json!({"q": "hi", "list": [1, "x"], "odd key": {"k": "v"}});
/// let mut out = Vec::new();
/// string_leaves(&v, "$", &mut out);
/// assert!(out.contains(&("$.q".into(), "hi".into())));
/// assert!(out.contains(&("$.list[1]".into(), "x".into())));
/// assert!(out.contains(&("$[\"odd key\"].k".into(), "v".into())));
/// ```
pub fn string_leaves(v: &Value, base: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => out.push((base.to_string(), s.clone())),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                string_leaves(x, &format!("{base}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                string_leaves(x, &child(base, k), out);
            }
        }
        _ => {}
    }
}

fn child(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{base}.{key}")
    } else {
        format!(
            "{base}[{}]",
            serde_json::to_string(key).unwrap_or_else(|_| "\"?\"".into())
        )
    }
}

/// The string leaves of `tools/call` arguments, paths from `$`.
pub fn argument_leaves(args: Option<&serde_json::Map<String, Value>>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(m) = args {
        for (k, v) in m {
            string_leaves(v, &child("$", k), &mut out);
        }
    }
    out
}

/// The texts of a tool result: `$.content[i].text`, `$.content[i].resource.text` and the string
/// leaves under `$.structuredContent`. A text block whose JSON equals the structured content
/// (the copy rmcp and the SDKs add) is left out: its leaves are already there.
pub fn result_leaves(r: &CallToolResult) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, c) in r.content.iter().enumerate() {
        match c {
            ContentBlock::Text(t) => {
                let dup = r.structured_content.as_ref().is_some_and(|sc| {
                    serde_json::from_str::<Value>(&t.text).is_ok_and(|v| &v == sc)
                });
                if !dup {
                    out.push((format!("$.content[{i}].text"), t.text.clone()));
                }
            }
            ContentBlock::Resource(e) => {
                if let ResourceContents::TextResourceContents { text, .. } = &e.resource {
                    out.push((format!("$.content[{i}].resource.text"), text.clone()));
                }
            }
            _ => {}
        }
    }
    if let Some(sc) = &r.structured_content {
        string_leaves(sc, "$.structuredContent", &mut out);
    }
    out
}

/// The texts of a `resources/read` answer: `$.contents[i].text`, and `$.contents[i].blob` for
/// a blob whose base64 decodes to UTF-8 text (other blobs are binary and not screened).
pub fn resource_leaves(r: &ReadResourceResult) -> Vec<(String, String)> {
    use base64::Engine;
    let mut out = Vec::new();
    for (i, c) in r.contents.iter().enumerate() {
        match c {
            ResourceContents::TextResourceContents { text, .. } => {
                out.push((format!("$.contents[{i}].text"), text.clone()));
            }
            ResourceContents::BlobResourceContents { blob, .. } => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(blob.trim())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok());
                if let Some(t) = decoded {
                    out.push((format!("$.contents[{i}].blob"), t));
                }
            }
            _ => {}
        }
    }
    out
}

/// The texts of a `prompts/get` answer: `$.description`, `$.messages[i].content.text` and
/// `$.messages[i].content.resource.text`.
pub fn prompt_leaves(r: &GetPromptResult) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(d) = r.description.as_ref().filter(|d| !d.trim().is_empty()) {
        out.push(("$.description".to_string(), d.clone()));
    }
    for (i, m) in r.messages.iter().enumerate() {
        match &m.content {
            ContentBlock::Text(t) => {
                out.push((format!("$.messages[{i}].content.text"), t.text.clone()));
            }
            ContentBlock::Resource(e) => {
                if let ResourceContents::TextResourceContents { text, .. } = &e.resource {
                    out.push((
                        format!("$.messages[{i}].content.resource.text"),
                        text.clone(),
                    ));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_name_every_leaf_and_quote_odd_keys() {
        let v = json!({"a": {"b": ["x", {"c d": "y"}]}, "n": 3, "0k": "z"});
        let mut out = Vec::new();
        string_leaves(&v, "$", &mut out);
        out.sort();
        assert_eq!(
            out,
            vec![
                ("$.a.b[0]".to_string(), "x".to_string()),
                ("$.a.b[1][\"c d\"]".to_string(), "y".to_string()),
                ("$[\"0k\"]".to_string(), "z".to_string()),
            ]
        );
    }

    #[test]
    fn result_leaves_skip_the_text_copy_of_structured_content() {
        let sc = json!({"name": "Ada", "notes": ["ok"]});
        let r = CallToolResult::structured(sc.clone());
        let l = result_leaves(&r);
        assert_eq!(
            l,
            vec![
                ("$.structuredContent.name".to_string(), "Ada".to_string()),
                ("$.structuredContent.notes[0]".to_string(), "ok".to_string()),
            ]
        );
        let r = CallToolResult::success(vec![ContentBlock::text("plain words")]);
        assert_eq!(
            result_leaves(&r),
            vec![("$.content[0].text".to_string(), "plain words".to_string())]
        );
    }

    #[test]
    fn resource_leaves_take_text_and_utf8_blobs_only() {
        use base64::Engine;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let r = ReadResourceResult::new(vec![
            ResourceContents::text("plain words", "file:///a.txt"),
            ResourceContents::BlobResourceContents {
                uri: "file:///b.txt".into(),
                mime_type: None,
                blob: b64("text in a blob".as_bytes()),
                meta: None,
            },
            ResourceContents::BlobResourceContents {
                uri: "file:///c.bin".into(),
                mime_type: None,
                blob: b64(&[0xff, 0xfe, 0x00, 0x81]),
                meta: None,
            },
        ]);
        assert_eq!(
            resource_leaves(&r),
            vec![
                ("$.contents[0].text".to_string(), "plain words".to_string()),
                (
                    "$.contents[1].blob".to_string(),
                    "text in a blob".to_string()
                ),
            ]
        );
    }
}
