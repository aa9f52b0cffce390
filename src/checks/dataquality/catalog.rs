//! Checks of MCP tool catalogs (`*_mcp.json`, the shape of a `tools/list`
//! answer plus `server` and `version`) and tool-definition pinning.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::pins::{PinLock, tool_hash};
use super::{Finding, FindingKind};

/// MITRE ATLAS technique for a poisoned / rug-pulled tool definition.
pub const ATLAS_TOOL_POISONING: &str = "AML.T0110";

/// `^[a-zA-Z0-9_-]{1,64}$`
pub fn tool_name_well_formed(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Result of checking one parsed catalog.
pub(crate) struct CatalogOutcome {
    pub tools_checked: usize,
    /// `tool name → hash` of each tool whose name is a string (first
    /// occurrence wins on duplicates).
    pub hashes: BTreeMap<String, String>,
}

pub(crate) fn check_catalog(
    file: &str,
    doc: &Value,
    findings: &mut Vec<Finding>,
) -> CatalogOutcome {
    let mut out = CatalogOutcome {
        tools_checked: 0,
        hashes: BTreeMap::new(),
    };
    let Some(obj) = doc.as_object() else {
        findings.push(Finding::new(
            FindingKind::InvalidCatalog,
            file,
            None,
            format!(
                "{file}: a tool catalog must be a JSON object with `version` and `tools`, found {}",
                json_type(doc)
            ),
        ));
        return out;
    };
    match obj.get("version") {
        Some(Value::String(v)) if !v.trim().is_empty() => {}
        Some(other) => findings.push(Finding::new(
            FindingKind::InvalidCatalog,
            file,
            None,
            format!(
                "{file}: `version` must be a non-empty string, found {}",
                json_type(other)
            ),
        )),
        None => findings.push(Finding::new(
            FindingKind::InvalidCatalog,
            file,
            None,
            format!("{file}: required member `version` is missing"),
        )),
    }
    if let Some(server) = obj.get("server")
        && !server.is_string()
    {
        findings.push(Finding::new(
            FindingKind::InvalidCatalog,
            file,
            None,
            format!(
                "{file}: `server` must be a string, found {}",
                json_type(server)
            ),
        ));
    }
    let tools = match obj.get("tools") {
        Some(Value::Array(t)) => t,
        Some(other) => {
            findings.push(Finding::new(
                FindingKind::InvalidCatalog,
                file,
                None,
                format!(
                    "{file}: `tools` must be an array, found {}",
                    json_type(other)
                ),
            ));
            return out;
        }
        None => {
            findings.push(Finding::new(
                FindingKind::InvalidCatalog,
                file,
                None,
                format!("{file}: required member `tools` is missing"),
            ));
            return out;
        }
    };

    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (idx, tool) in tools.iter().enumerate() {
        out.tools_checked += 1;
        let Some(t) = tool.as_object() else {
            findings.push(Finding::new(
                FindingKind::InvalidCatalog,
                file,
                Some(format!("#{idx}")),
                format!(
                    "{file}: tools[{idx}] must be an object, found {}",
                    json_type(tool)
                ),
            ));
            continue;
        };
        let name = match t.get("name") {
            Some(Value::String(n)) => n.as_str(),
            other => {
                findings.push(Finding::new(
                    FindingKind::InvalidCatalog,
                    file,
                    Some(format!("#{idx}")),
                    format!(
                        "{file}: tools[{idx}] has no string `name` (found {})",
                        other.map_or("nothing", json_type)
                    ),
                ));
                continue;
            }
        };
        let label = Some(name.to_string());
        if !tool_name_well_formed(name) {
            findings.push(Finding::new(
                FindingKind::InvalidCatalog,
                file,
                label.clone(),
                format!(
                    "{file}: tool name {name:?} (tools[{idx}]) does not match ^[a-zA-Z0-9_-]{{1,64}}$"
                ),
            ));
        }
        if let Some(first) = seen.get(name) {
            findings.push(Finding::new(
                FindingKind::DuplicateId,
                file,
                label.clone(),
                format!(
                    "{file}: tool name {name:?} is defined twice (tools[{first}] and tools[{idx}]); an agent cannot tell which one it calls"
                ),
            ));
            continue;
        }
        seen.insert(name, idx);
        if let Some(d) = t.get("description")
            && !d.is_string()
        {
            findings.push(Finding::new(
                FindingKind::InvalidCatalog,
                file,
                label.clone(),
                format!(
                    "{file}: tool {name:?} has a `description` that is {}, not a string",
                    json_type(d)
                ),
            ));
        }
        match t.get("inputSchema") {
            None => findings.push(Finding::new(
                FindingKind::InvalidInputSchema,
                file,
                label.clone(),
                format!("{file}: tool {name:?} has no `inputSchema`"),
            )),
            Some(schema) => {
                if let Some(problem) = input_schema_problem(schema) {
                    findings.push(Finding::new(
                        FindingKind::InvalidInputSchema,
                        file,
                        label.clone(),
                        format!("{file}: tool {name:?} has an invalid inputSchema: {problem}"),
                    ));
                }
            }
        }
        out.hashes.insert(name.to_string(), tool_hash(tool));
    }
    out
}

/// `None` when `schema` is a valid JSON Schema whose root is `type: object`.
pub fn input_schema_problem(schema: &Value) -> Option<String> {
    if !schema.is_object() {
        return Some(format!(
            "it must be a JSON object, found {}",
            json_type(schema)
        ));
    }
    if let Err(e) = jsonschema::meta::validate(schema) {
        let at = e.instance_path().to_string();
        let at = if at.is_empty() { "/".to_string() } else { at };
        return Some(format!(
            "it violates the JSON Schema meta-schema at {at}: {e}"
        ));
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => {
            return Some(format!("its root `type` must be \"object\", found {other}"));
        }
        None => return Some("its root has no `type` (must be \"object\")".to_string()),
    }
    // Compiling catches what the meta-schema cannot (bad regex in `pattern`,
    // unresolvable `$ref`; remote references are not fetched).
    if let Err(e) = jsonschema::validator_for(schema) {
        return Some(format!("it cannot be compiled: {e}"));
    }
    None
}

/// Compare the catalog's current hashes with the lock. Adds
/// `tool_definition_changed` / `tool_added` / `tool_removed` findings.
/// Only catalogs that parsed are compared, so a corrupt catalog does not
/// look like every one of its tools was removed.
pub(crate) fn compare_pins(
    file: &str,
    current: &BTreeMap<String, String>,
    lock: &PinLock,
    findings: &mut Vec<Finding>,
) {
    let prefix = format!("{file}/");
    for (name, hash) in current {
        let key = PinLock::key(file, name);
        match lock.tools.get(&key) {
            Some(old) if old == hash => {}
            Some(old) => findings.push(
                Finding::new(
                    FindingKind::ToolDefinitionChanged,
                    file,
                    Some(name.clone()),
                    format!(
                        "{file}: the definition of tool {name:?} (description or inputSchema) changed since it was pinned \
                         (sha256 {} → {}); possible tool poisoning (MITRE ATLAS {ATLAS_TOOL_POISONING}): review it, then approve the new hash",
                        short(old),
                        short(hash)
                    ),
                )
                .with("pin_key", &key)
                .with("old_hash", old)
                .with("new_hash", hash)
                .with("mitre_atlas", ATLAS_TOOL_POISONING)
                .with("security_incident", "true"),
            ),
            None => findings.push(
                Finding::new(
                    FindingKind::ToolAdded,
                    file,
                    Some(name.clone()),
                    format!(
                        "{file}: tool {name:?} is new and not pinned (sha256 {}); review it before the agent relies on it, then approve it",
                        short(hash)
                    ),
                )
                .with("pin_key", &key)
                .with("new_hash", hash)
                .with("mitre_atlas", ATLAS_TOOL_POISONING),
            ),
        }
    }
    for (key, old) in lock.tools.range(prefix.clone()..) {
        let Some(name) = key.strip_prefix(&prefix) else {
            break;
        };
        if !current.contains_key(name) {
            findings.push(
                Finding::new(
                    FindingKind::ToolRemoved,
                    file,
                    Some(name.to_string()),
                    format!(
                        "{file}: pinned tool {name:?} is no longer offered by the server; approve the removal if it is expected"
                    ),
                )
                .with("pin_key", key)
                .with("old_hash", old),
            );
        }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
