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
