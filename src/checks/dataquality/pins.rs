//! Tool-definition pinning: a lock file with the SHA-256 of every tool
//! definition the agent was approved to use.
//!
//! File format (JSON):
//! ```json
//! { "version": 1, "tools": { "crm_mcp.json/get_client": "<64 hex chars>" } }
//! ```
//! The hash is taken over the canonical JSON (object keys sorted, no
//! whitespace) of `{"name", "description", "inputSchema"}` of the tool.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Current lock file format version.
pub const PIN_LOCK_VERSION: u32 = 1;

/// Errors reading or writing a [`PinLock`].
#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("cannot read pin lock {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pin lock {path} is not valid JSON of the expected shape: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "pin lock {path} has version {found}, this build understands version {PIN_LOCK_VERSION}"
    )]
    UnsupportedVersion { path: PathBuf, found: u32 },
    #[error("pin lock {path} has an invalid entry {key:?}: {reason}")]
    InvalidEntry {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("cannot write pin lock {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot serialise pin lock: {0}")]
    Serialise(#[source] serde_json::Error),
}

/// Approved tool definitions: `"<catalog file>/<tool name>" → sha256 hex`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinLock {
    pub version: u32,
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

impl Default for PinLock {
    fn default() -> Self {
        Self {
            version: PIN_LOCK_VERSION,
            tools: BTreeMap::new(),
        }
    }
}

impl PinLock {
    /// An empty lock: the next [`check_all`](super::check_all) records the
    /// current definitions without findings.
    pub fn new() -> Self {
        Self::default()
    }

    /// `true` when nothing has been pinned yet (first run).
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Key of a tool in the lock: `"<catalog file>/<tool name>"`.
    pub fn key(catalog_file: &str, tool_name: &str) -> String {
        format!("{catalog_file}/{tool_name}")
    }

    /// Load a lock file. A missing file yields an empty lock (first run);
    /// an unreadable, corrupt or future-version file is an error, never a
    /// silent reset (that would re-approve every tool).
    pub fn load(path: &Path) -> Result<Self, PinError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(PinError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let lock: PinLock = serde_json::from_str(&text).map_err(|source| PinError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if lock.version != PIN_LOCK_VERSION {
            return Err(PinError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: lock.version,
            });
        }
        for (key, hash) in &lock.tools {
            if !is_sha256_hex(hash) {
                return Err(PinError::InvalidEntry {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    reason: "hash is not 64 lower-case hex characters".into(),
                });
            }
        }
        Ok(lock)
    }

    /// Save atomically: write a temporary file in the same directory, flush
    /// it to disk, then rename it over `path`.
    pub fn save(&self, path: &Path) -> Result<(), PinError> {
        let mut text = serde_json::to_string_pretty(self).map_err(PinError::Serialise)?;
        text.push('\n');
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pins.lock.json".to_string());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let write_err = |source| PinError::Write {
            path: path.to_path_buf(),
            source,
        };
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, path)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        Ok(())
    }
}

/// Accept a changed or added tool definition: pin `key` to `new_hash`.
/// The hash is in the finding's `metadata["new_hash"]`, the key in
/// `metadata["pin_key"]`.
pub fn approve(lock: &mut PinLock, key: &str, new_hash: &str) {
    lock.tools.insert(key.to_string(), new_hash.to_string());
}

/// Accept the removal of a tool: drop its pin. Returns whether it was pinned.
pub fn approve_removal(lock: &mut PinLock, key: &str) -> bool {
    lock.tools.remove(key).is_some()
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// SHA-256 (lower-case hex) of the canonical JSON of a tool definition:
/// the object `{name, description, inputSchema}` (absent members omitted),
/// keys sorted at every level, no insignificant whitespace.
pub fn tool_hash(tool: &Value) -> String {
    let mut subset = serde_json::Map::new();
    if let Some(obj) = tool.as_object() {
        for field in ["name", "description", "inputSchema"] {
            if let Some(v) = obj.get(field) {
                subset.insert(field.to_string(), v.clone());
            }
        }
    }
    let mut buf = String::new();
    canonical_json(&Value::Object(subset), &mut buf);
    hex::encode(Sha256::digest(buf.as_bytes()))
}

/// Canonical JSON with sorted keys, independent of whether serde_json's
/// `preserve_order` feature is enabled somewhere in the dependency graph.
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                canonical_json(v, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(v, out);
            }
            out.push(']');
        }
        Value::String(s) => push_json_string(s, out),
        // Null, Bool and Number have a single compact rendering.
        other => out.push_str(&other.to_string()),
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serialising a &str to JSON cannot fail; fall back to Debug just in case.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str(&format!("{s:?}")),
    }
}
