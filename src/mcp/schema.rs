//! Portable tool schemas: the one pass that turns what schemars derives into the plain JSON
//! Schema 2020-12 every MCP client can use, and the tool selection (`[mcp] tools` / `--tools`).
//!
//! What [`portable`] does to a schema, and why:
//! - drops `$schema` (2020-12 is the MCP default) and every schema `title` (the type name), and
//!   the root `additionalProperties: false` (the server refuses an unknown argument by name);
//! - drops non-standard `format`s (`uint8`, `uint32`, `int64`, `double`, …): an integer keeps
//!   its `minimum`/`maximum` (a bound past 2^53 is dropped, no client can use it), a number
//!   none; standard formats (`date-time`, `email`, `uri`, …) stay;
//! - an optional property (not in `required`) is absent rather than `null`: `["string","null"]`
//!   becomes `"string"`, `anyOf: [X, {type: null}]` becomes `X`;
//! - a nullable enum that stays (a required property) lists `null` in its `enum`;
//! - a `oneOf` of string `const`s becomes one `enum`;
//! - a `$defs` entry used once is inlined, and `$defs` disappears when nothing refers to it;
//! - `default: null` is dropped (absent already means none).
//!
//! May import: serde_json.

use serde_json::{Map, Value};

/// JSON Schema formats that are part of the 2020-12 vocabulary (kept as they are).
const STANDARD_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// The largest integer every JSON number implementation holds exactly (2^53).
const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

/// Rewrites a root schema in place (see the module doc).
pub fn portable(root: &mut Map<String, Value>) {
    root.remove("$schema");
    // The server refuses unknown arguments itself, naming them; saying so costs every tool.
    if root.get("additionalProperties") == Some(&Value::Bool(false)) {
        root.remove("additionalProperties");
    }
    inline_single_use_defs(root);
    clean(root);
    if let Some(Value::Object(defs)) = root.get_mut("$defs") {
        for d in defs.values_mut() {
            if let Value::Object(o) = d {
                clean(o);
            }
        }
    }
}

/// [`portable`], then cut to what a client program validates against: no `description`s and
/// no `enum`s (the tool's description and docs/tools.md say what comes back; the input schemas
/// keep their enums), and nested objects only as `{"type": "object"}` (top-level fields are
/// typed and required as serialized). Output schemas were 60 % of what a `tools/list` cost.
pub fn portable_output(root: &mut Map<String, Value>) {
    portable(root);
    each_schema(root, &mut |s| {
        s.remove("description");
        s.remove("enum");
    });
    if let Some(Value::Object(props)) = root.get_mut("properties") {
        for p in props.values_mut() {
            if let Value::Object(po) = p {
                shallow(po);
            }
        }
    }
    let refs_left = Value::Object(root.clone()).to_string().contains("\"$ref\"");
    if !refs_left {
        root.remove("$defs");
    }
}

/// An object below the top level becomes `{"type": "object"}`; an array keeps its item type.
fn shallow(p: &mut Map<String, Value>) {
    let is_object = |o: &Map<String, Value>| {
        o.get("type").is_some_and(|t| t == "object") || o.contains_key("$ref")
    };
    if is_object(p) {
        p.retain(|k, _| k == "type" || k == "$ref");
        p.remove("$ref");
        p.insert("type".into(), Value::String("object".into()));
    } else if let Some(Value::Object(items)) = p.get_mut("items")
        && is_object(items)
    {
        *items = Map::from_iter([("type".to_owned(), Value::String("object".into()))]);
    }
}

/// Calls `f` on `s` and on every schema below it (not on property names).
fn each_schema(s: &mut Map<String, Value>, f: &mut dyn FnMut(&mut Map<String, Value>)) {
    f(s);
    for key in ["properties", "$defs"] {
        if let Some(Value::Object(m)) = s.get_mut(key) {
            for v in m.values_mut() {
                if let Value::Object(o) = v {
                    each_schema(o, f);
                }
            }
        }
    }
    for key in ["items", "additionalProperties", "not", "if", "then", "else"] {
        if let Some(Value::Object(o)) = s.get_mut(key) {
            each_schema(o, f);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(a)) = s.get_mut(key) {
            for v in a.iter_mut() {
                if let Value::Object(o) = v {
                    each_schema(o, f);
                }
            }
        }
    }
}

/// Cleans one schema object and everything below it.
fn clean(s: &mut Map<String, Value>) {
    s.remove("title");
    if s.get("default").is_some_and(Value::is_null) {
        s.remove("default");
    }
    fix_format(s);
    one_of_consts_to_enum(s);
    nullable_enum_lists_null(s);
    let required: Vec<String> = s
        .get("required")
        .and_then(Value::as_array)
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if let Some(Value::Object(props)) = s.get_mut("properties") {
        for (name, p) in props.iter_mut() {
            if let Value::Object(po) = p {
                if !required.contains(name) {
                    drop_null(po);
                }
                clean(po);
            }
        }
    }
    for key in ["items", "additionalProperties", "not", "if", "then", "else"] {
        if let Some(Value::Object(o)) = s.get_mut(key) {
            clean(o);
        }
    }
    for key in ["anyOf", "oneOf", "allOf", "prefixItems"] {
        if let Some(Value::Array(a)) = s.get_mut(key) {
            for v in a.iter_mut() {
                if let Value::Object(o) = v {
                    clean(o);
                }
            }
        }
    }
}

/// `type: [T, "null"]` → `T`; `anyOf: [X, {type: null}]` → `X` (merged into `s`).
fn drop_null(s: &mut Map<String, Value>) {
    if let Some(Value::Array(types)) = s.get("type") {
        let rest: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
        if rest.len() < types.len() {
            let t = match rest.len() {
                1 => rest.into_iter().next().unwrap_or(Value::Null),
                _ => Value::Array(rest),
            };
            s.insert("type".into(), t);
            if let Some(Value::Array(e)) = s.get_mut("enum") {
                e.retain(|v| !v.is_null());
            }
        }
    }
    if let Some(Value::Array(any)) = s.get("anyOf") {
        let is_null = |v: &Value| v.get("type").is_some_and(|t| t == "null");
        let rest: Vec<&Value> = any.iter().filter(|v| !is_null(v)).collect();
        if rest.len() == 1
            && any.len() == 2
            && let Some(Value::Object(only)) = rest.first().map(|v| (*v).clone())
        {
            s.remove("anyOf");
            for (k, v) in only {
                s.entry(k).or_insert(v);
            }
        }
    }
}

fn fix_format(s: &mut Map<String, Value>) {
    let Some(f) = s.get("format").and_then(Value::as_str) else {
        return;
    };
    if STANDARD_FORMATS.contains(&f) {
        return;
    }
    s.remove("format");
    for bound in ["minimum", "maximum"] {
        if s.get(bound)
            .and_then(Value::as_f64)
            .is_some_and(|b| b.abs() > MAX_SAFE)
        {
            s.remove(bound);
        }
    }
}

/// `oneOf: [{const: "a", …}, {const: "b", …}]` (how schemars writes a documented unit enum)
/// → `type: string, enum: [a, b]`.
fn one_of_consts_to_enum(s: &mut Map<String, Value>) {
    let Some(Value::Array(branches)) = s.get("oneOf") else {
        return;
    };
    let consts: Option<Vec<Value>> = branches
        .iter()
        .map(|b| b.get("const").filter(|c| c.is_string()).cloned())
        .collect();
    if let Some(values) = consts {
        s.remove("oneOf");
        s.insert("type".into(), Value::String("string".into()));
        s.insert("enum".into(), Value::Array(values));
    }
}

fn nullable_enum_lists_null(s: &mut Map<String, Value>) {
    let nullable = match s.get("type") {
        Some(Value::Array(t)) => t.iter().any(|t| t == "null"),
        _ => false,
    };
    if let (true, Some(Value::Array(e))) = (nullable, s.get_mut("enum"))
        && !e.iter().any(Value::is_null)
    {
        e.push(Value::Null);
    }
}

/// Replaces every `$ref` to a definition used exactly once with the definition itself.
fn inline_single_use_defs(root: &mut Map<String, Value>) {
    let Some(Value::Object(defs)) = root.get("$defs").cloned() else {
        return;
    };
    let mut counts = std::collections::HashMap::<String, usize>::new();
    let mut walk = vec![Value::Object(root.clone())];
    while let Some(v) = walk.pop() {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref")
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    *counts.entry(name.to_owned()).or_default() += 1;
                }
                walk.extend(o.into_iter().map(|(_, v)| v));
            }
            Value::Array(a) => walk.extend(a),
            _ => {}
        }
    }
    let once: Map<String, Value> = defs
        .into_iter()
        .filter(|(k, _)| counts.get(k) == Some(&1))
        .collect();
    if once.is_empty() {
        return;
    }
    fn replace(v: &mut Value, once: &Map<String, Value>) {
        match v {
            Value::Object(o) => {
                let target = o
                    .get("$ref")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix("#/$defs/"))
                    .and_then(|n| once.get(n))
                    .cloned();
                if let Some(Value::Object(def)) = target {
                    o.remove("$ref");
                    for (k, d) in def {
                        o.entry(k).or_insert(d);
                    }
                }
                for (_, c) in o.iter_mut() {
                    replace(c, once);
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|c| replace(c, once)),
            _ => {}
        }
    }
    for (k, v) in root.iter_mut() {
        if k != "$defs" {
            replace(v, &once);
        }
    }
    if let Some(Value::Object(d)) = root.get_mut("$defs") {
        d.retain(|k, _| !once.contains_key(k));
        if d.is_empty() {
            root.remove("$defs");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(v: Value) -> Value {
        let Value::Object(mut o) = v else {
            panic!("object")
        };
        portable(&mut o);
        Value::Object(o)
    }

    #[test]
    fn optional_fields_become_absent_not_null_and_required_nullable_enums_list_null() {
        let out = run(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Args",
            "type": "object",
            "required": ["a"],
            "properties": {
                "a": {"type": ["string", "null"], "enum": ["x", "y"]},
                "b": {"type": ["string", "null"], "enum": ["x"]},
                "n": {"type": ["integer", "null"], "format": "uint32", "minimum": 0, "maximum": 4294967295u64},
                "u": {"type": "integer", "format": "uint64", "minimum": 0, "maximum": 18446744073709551615u64},
                "d": {"type": "number", "format": "double"},
                "t": {"type": "string", "format": "date-time"},
            }
        }));
        assert_eq!(
            out,
            json!({
                "type": "object",
                "required": ["a"],
                "properties": {
                    "a": {"type": ["string", "null"], "enum": ["x", "y", null]},
                    "b": {"type": "string", "enum": ["x"]},
                    "n": {"type": "integer", "minimum": 0, "maximum": 4294967295u64},
                    "u": {"type": "integer", "minimum": 0},
                    "d": {"type": "number"},
                    "t": {"type": "string", "format": "date-time"},
                }
            })
        );
    }

    #[test]
    fn one_of_consts_become_an_enum_and_single_use_defs_are_inlined() {
        let out = run(json!({
            "type": "object",
            "properties": {
                "s": {"anyOf": [{"$ref": "#/$defs/Src"}, {"type": "null"}], "description": "Where"},
                "m": {"type": "array", "items": {"$ref": "#/$defs/M"}},
                "k": {"type": "array", "items": {"$ref": "#/$defs/M"}},
            },
            "$defs": {
                "Src": {"title": "Src", "oneOf": [{"const": "user", "type": "string", "description": "u"},
                                                   {"const": "doc", "type": "string"}]},
                "M": {"type": "object", "title": "M"}
            }
        }));
        assert_eq!(
            out,
            json!({
                "type": "object",
                "properties": {
                    "s": {"description": "Where", "type": "string", "enum": ["user", "doc"]},
                    "m": {"type": "array", "items": {"$ref": "#/$defs/M"}},
                    "k": {"type": "array", "items": {"$ref": "#/$defs/M"}},
                },
                "$defs": {"M": {"type": "object"}}
            })
        );
    }
}
