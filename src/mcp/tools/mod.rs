//! The MCP tools, one file per use-case group; each tool's arguments (whose `///` docs become
//! the JSON Schema) sit beside it. Outputs shared with the CLI and REST are in [`crate::view`].
//!
//! May import: `crate::service`, `crate::view`, `crate::detect`, `crate::domain::audit`.

pub mod detectors;
pub mod incidents;
pub mod lifecycle;
pub mod monitoring;
pub mod screening;

use schemars::JsonSchema;
use serde::Deserialize;

/// Tool arguments deserialized with the failing argument named in the error
/// ("argument `limit`: invalid type: string \"x\", expected u32"). The JSON
/// Schema is `T`'s.
#[derive(Debug)]
pub struct Args<T>(pub T);

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Args<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        serde_path_to_error::deserialize(v).map(Args).map_err(|e| {
            let path = e.path().to_string();
            if path == "." || path.is_empty() {
                D::Error::custom(e.into_inner())
            } else {
                D::Error::custom(format!("argument `{path}`: {}", e.into_inner()))
            }
        })
    }
}

impl<T: JsonSchema> JsonSchema for Args<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(g)
    }
    fn inline_schema() -> bool {
        T::inline_schema()
    }
}

/// Named tool groups for `[mcp] tools` / `--tools` (a deployment exposes only what its agents
/// need; the way mcp-grafana enables tool categories). An entry is a group name or a tool name.
pub const GROUPS: &[(&str, &[&str])] = &[
    (
        "screening",
        &["screen_prompt", "report_incident", "get_incident"],
    ),
    (
        "incidents",
        &[
            "report_incident",
            "get_incident",
            "list_incidents",
            "verify_audit_log",
        ],
    ),
    (
        "lifecycle",
        &[
            "acknowledge_incident",
            "update_incident",
            "escalate_incident",
            "resolve_incident",
            "contain_incident",
            "lift_containment",
            "document_incident",
        ],
    ),
    (
        "monitoring",
        &[
            "record_metrics",
            "check_data_quality",
            "approve_catalog_change",
            "list_upstreams",
        ],
    ),
    ("detectors", &["record_key_usage", "record_access"]),
];

/// The tool names a selection stands for.
///
/// # Errors
/// A sentence naming the unknown entry, the groups and the tools.
pub fn resolve_selection(selection: &[String], all: &[String]) -> Result<Vec<String>, String> {
    let mut keep = Vec::new();
    for entry in selection {
        let e = entry.trim();
        if e == "all" {
            keep.extend(all.iter().cloned());
        } else if let Some((_, names)) = GROUPS.iter().find(|(g, _)| *g == e) {
            keep.extend(names.iter().map(|n| (*n).to_owned()));
        } else if all.iter().any(|n| n == e) {
            keep.push(e.to_owned());
        } else {
            let groups: Vec<&str> = GROUPS.iter().map(|(g, _)| *g).collect();
            return Err(format!(
                "unknown tool or group '{e}' in the tool selection; groups: all, {}; tools: {}",
                groups.join(", "),
                all.join(", ")
            ));
        }
    }
    keep.sort();
    keep.dedup();
    Ok(keep)
}
