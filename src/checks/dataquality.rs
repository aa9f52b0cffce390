//! Data-quality checks for the data files and MCP tool catalogs an agent
//! relies on (issue #5, background monitoring).
//!
//! [`check_all`] never panics on bad input: every problem becomes a
//! [`Finding`]. See `docs/monitoring.md` for the list of checks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod catalog;
pub mod pins;
pub mod records;

pub use catalog::{ATLAS_TOOL_POISONING, input_schema_problem, tool_name_well_formed};
pub use pins::{
    PIN_LOCK_VERSION, PinError, PinLock, approve, approve_removal, canonical_json, tool_hash,
};
pub use records::{Client, Employee, Order, OrderStatus};

use records::RecordCheck;

/// Data files expected in `data_dir`.
pub const EMPLOYEES_FILE: &str = "employees.json";
pub const CLIENTS_FILE: &str = "clients.json";
pub const ORDERS_FILE: &str = "orders.json";
pub const DATA_FILES: [&str; 3] = [EMPLOYEES_FILE, CLIENTS_FILE, ORDERS_FILE];
/// Catalogs always expected in `catalog_dir`; any other `*_mcp.json` found
/// there, and any catalog named in the pin lock, is checked as well.
pub const CATALOG_FILES: [&str; 3] = ["crm_mcp.json", "erp_mcp.json", "hr_mcp.json"];

/// What kind of problem a [`Finding`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// File is not valid JSON (truncated, corrupt, not UTF-8).
    ParseError,
    /// An expected file does not exist.
    MissingFile,
    /// A data record does not match its typed shape or field rules.
    SchemaViolation,
    /// Two records share an id, or two tools in one catalog share a name.
    DuplicateId,
    /// A reference (client, sales rep, account manager, manager) points nowhere.
    DanglingReference,
    /// The management chain loops.
    ManagementCycle,
    /// A catalog is not a valid tool catalog (members, tool names).
    InvalidCatalog,
    /// A tool's `inputSchema` is not a valid JSON Schema of `type: object`.
    InvalidInputSchema,
    /// A pinned tool definition changed (possible tool poisoning, AML.T0110).
    ToolDefinitionChanged,
    /// A tool appeared that is not pinned.
    ToolAdded,
    /// A pinned tool disappeared.
    ToolRemoved,
}

impl FindingKind {
    pub const ALL: [FindingKind; 11] = [
        FindingKind::ParseError,
        FindingKind::MissingFile,
        FindingKind::SchemaViolation,
        FindingKind::DuplicateId,
        FindingKind::DanglingReference,
        FindingKind::ManagementCycle,
        FindingKind::InvalidCatalog,
        FindingKind::InvalidInputSchema,
        FindingKind::ToolDefinitionChanged,
        FindingKind::ToolAdded,
        FindingKind::ToolRemoved,
    ];

    /// snake_case name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::ParseError => "parse_error",
            FindingKind::MissingFile => "missing_file",
            FindingKind::SchemaViolation => "schema_violation",
            FindingKind::DuplicateId => "duplicate_id",
            FindingKind::DanglingReference => "dangling_reference",
            FindingKind::ManagementCycle => "management_cycle",
            FindingKind::InvalidCatalog => "invalid_catalog",
            FindingKind::InvalidInputSchema => "invalid_input_schema",
            FindingKind::ToolDefinitionChanged => "tool_definition_changed",
            FindingKind::ToolAdded => "tool_added",
            FindingKind::ToolRemoved => "tool_removed",
        }
    }

    /// `true` for kinds that should open a security incident rather than a
    /// data-quality one (currently only `tool_definition_changed`).
    pub fn is_security(self) -> bool {
        matches!(self, FindingKind::ToolDefinitionChanged)
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found by [`check_all`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// File name relative to its directory, e.g. `orders.json`, `crm_mcp.json`.
    pub file: String,
    /// Record id (`ORD-0007`), tool name, or `#<index>` when the record has
    /// no usable id; `None` for file-level findings.
    pub record: Option<String>,
    /// A sentence saying what is wrong and where.
    pub message: String,
    /// Extra machine-readable facts, e.g. `pin_key`, `old_hash`, `new_hash`,
    /// `mitre_atlas`, `line`, `column`, `references`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Finding {
    pub fn new(
        kind: FindingKind,
        file: impl Into<String>,
        record: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            file: file.into(),
            record,
            message: message.into(),
            metadata: BTreeMap::new(),
        }
    }

    /// Add a metadata entry (builder style).
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// Stable key for de-duplicating repeated findings across runs:
    /// `kind:file:record` (`-` when there is no record). Two distinct
    /// problems of the same kind on the same record share a key on purpose.
    pub fn dedup_key(&self) -> String {
        format!(
            "{}:{}:{}",
            self.kind,
            self.file,
            self.record.as_deref().unwrap_or("-")
        )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.kind, self.message)
    }
}

/// Result of one [`check_all`] pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DqReport {
    pub findings: Vec<Finding>,
    /// Data and catalog files that could be read.
    pub files_checked: usize,
    /// Data records examined (all three data files).
    pub records_checked: usize,
    /// Tool entries examined (all catalogs).
    pub tools_checked: usize,
    /// Pins as observed now: the hash of every tool of every catalog that
    /// parsed, plus the old pins of catalogs that could not be read (so a
    /// transient failure never drops pins). Persist it only when
    /// `bootstrapped` is true; otherwise changes must go through [`approve`].
    pub current_pins: PinLock,
    /// `true` when the lock was empty and this pass recorded the pins
    /// (no pin findings are produced on such a pass).
    pub bootstrapped: bool,
}

impl DqReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn count(&self, kind: FindingKind) -> usize {
        self.findings.iter().filter(|f| f.kind == kind).count()
    }
}

/// Run every check on `data_dir` (employees/clients/orders JSON) and
/// `catalog_dir` (`*_mcp.json` tool catalogs) against the pin `lock`.
pub fn check_all(data_dir: &Path, catalog_dir: &Path, lock: &PinLock) -> DqReport {
    let mut findings = Vec::new();
    let mut files_checked = 0;
    let mut records_checked = 0;

    // (a) data files: parse + typed shape + unique ids.
    let employees = load_data_file::<Employee>(data_dir, EMPLOYEES_FILE, &mut findings);
    let clients = load_data_file::<Client>(data_dir, CLIENTS_FILE, &mut findings);
    let orders = load_data_file::<Order>(data_dir, ORDERS_FILE, &mut findings);
    for n in [
        employees.as_ref().map(|s| s.count),
        clients.as_ref().map(|s| s.count),
        orders.as_ref().map(|s| s.count),
    ]
    .into_iter()
    .flatten()
    {
        files_checked += 1;
        records_checked += n;
    }

    // (c) referential integrity, only between files that could be read.
    check_references(
        employees.as_ref(),
        clients.as_ref(),
        orders.as_ref(),
        &mut findings,
    );

    // (b) catalogs + (d) pins.
    let bootstrapped = lock.is_empty();
    let mut current_pins = PinLock::default();
    let mut tools_checked = 0;
    for file in catalog_files(catalog_dir, lock) {
        let Some(doc) = read_json(catalog_dir, &file, &mut findings) else {
            // Keep the previous pins of a catalog we could not read.
            let prefix = format!("{file}/");
            for (k, v) in lock.tools.range(prefix.clone()..) {
                if !k.starts_with(&prefix) {
                    break;
                }
                current_pins.tools.insert(k.clone(), v.clone());
            }
            continue;
        };
        files_checked += 1;
        let outcome = catalog::check_catalog(&file, &doc, &mut findings);
        tools_checked += outcome.tools_checked;
        if !bootstrapped {
            catalog::compare_pins(&file, &outcome.hashes, lock, &mut findings);
        }
        for (name, hash) in outcome.hashes {
            current_pins.tools.insert(PinLock::key(&file, &name), hash);
        }
    }

    DqReport {
        findings,
        files_checked,
        records_checked,
        tools_checked,
        current_pins,
        bootstrapped,
    }
}

/// Catalog file names to check, sorted: the expected ones, every
/// `*_mcp.json` in the directory, and every catalog named in the lock.
fn catalog_files(catalog_dir: &Path, lock: &PinLock) -> Vec<String> {
    let mut names: BTreeSet<String> = CATALOG_FILES.iter().map(|s| s.to_string()).collect();
    if let Ok(entries) = std::fs::read_dir(catalog_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with("_mcp.json") && entry.path().is_file() {
                names.insert(name);
            }
        }
    }
    for key in lock.tools.keys() {
        if let Some((file, _)) = key.split_once('/') {
            names.insert(file.to_string());
        }
    }
    names.into_iter().collect()
}

/// Read and parse a JSON file; on failure push `missing_file` or
/// `parse_error` and return `None`.
fn read_json(dir: &Path, file: &str, findings: &mut Vec<Finding>) -> Option<Value> {
    let path = dir.join(file);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            findings.push(Finding::new(
                FindingKind::MissingFile,
                file,
                None,
                format!("{file} is missing from {}", dir.display()),
            ));
            return None;
        }
        Err(e) => {
            findings.push(Finding::new(
                FindingKind::ParseError,
                file,
                None,
                format!("{file} cannot be read: {e}"),
            ));
            return None;
        }
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            let what = if e.is_eof() {
                "is truncated (unexpected end of input)"
            } else {
                "is not valid JSON"
            };
            findings.push(
                Finding::new(
                    FindingKind::ParseError,
                    file,
                    None,
                    format!(
                        "{file} {what} at line {}, column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                )
                .with("line", &e.line().to_string())
                .with("column", &e.column().to_string()),
            );
            None
        }
    }
}

/// Records of one data file that could be read.
struct DataSet<T> {
    /// Records that match the typed shape.
    valid: Vec<T>,
    /// Every string `id` found, valid record or not (so that a record with a
    /// schema problem does not also cause dangling-reference noise).
    ids: HashSet<String>,
    /// Number of records examined.
    count: usize,
}

fn load_data_file<T>(dir: &Path, file: &str, findings: &mut Vec<Finding>) -> Option<DataSet<T>>
where
    T: DeserializeOwned + RecordCheck,
{
    let doc = read_json(dir, file, findings)?;
    let Value::Array(items) = doc else {
        findings.push(Finding::new(
            FindingKind::SchemaViolation,
            file,
            None,
            format!(
                "{file} must be a JSON array of records, found {}",
                catalog::json_type(&doc)
            ),
        ));
        return Some(DataSet {
            valid: Vec::new(),
            ids: HashSet::new(),
            count: 0,
        });
    };
    let mut set = DataSet {
        valid: Vec::with_capacity(items.len()),
        ids: HashSet::with_capacity(items.len()),
        count: items.len(),
    };
    let mut positions: HashMap<&str, Vec<usize>> = HashMap::with_capacity(items.len());
    for (idx, item) in items.iter().enumerate() {
        let raw_id = item.get("id").and_then(Value::as_str);
        let label = raw_id.map_or_else(|| format!("#{idx}"), str::to_string);
        if let Some(id) = raw_id {
            set.ids.insert(id.to_string());
            positions.entry(id).or_default().push(idx);
        }
        match T::deserialize(item) {
            Ok(rec) => {
                let problems = rec.problems();
                if problems.is_empty() {
                    set.valid.push(rec);
                } else {
                    findings.push(Finding::new(
                        FindingKind::SchemaViolation,
                        file,
                        Some(label.clone()),
                        format!(
                            "{file}: record {label} (index {idx}): {}",
                            problems.join("; ")
                        ),
                    ));
                    // Still usable for referential checks.
                    set.valid.push(rec);
                }
            }
            Err(e) => findings.push(Finding::new(
                FindingKind::SchemaViolation,
                file,
                Some(label.clone()),
                format!(
                    "{file}: record {label} (index {idx}) does not match the expected shape: {e}"
                ),
            )),
        }
    }
    let mut dups: Vec<(&str, Vec<usize>)> =
        positions.into_iter().filter(|(_, p)| p.len() > 1).collect();
    dups.sort_by_key(|(_, p)| p[0]);
    for (id, pos) in dups {
        let list: Vec<String> = pos.iter().map(ToString::to_string).collect();
        findings.push(Finding::new(
            FindingKind::DuplicateId,
            file,
            Some(id.to_string()),
            format!(
                "{file}: id {id} is used by {} records (indexes {})",
                pos.len(),
                list.join(", ")
            ),
        ));
    }
    Some(set)
}

fn dangling(file: &str, record: &str, field: &str, target: &str, target_file: &str) -> Finding {
    Finding::new(
        FindingKind::DanglingReference,
        file,
        Some(record.to_string()),
        format!(
            "{file}: record {record} has {field} {target}, which does not exist in {target_file}"
        ),
    )
    .with("field", field)
    .with("target", target)
}

fn check_references(
    employees: Option<&DataSet<Employee>>,
    clients: Option<&DataSet<Client>>,
    orders: Option<&DataSet<Order>>,
    findings: &mut Vec<Finding>,
) {
    if let Some(emps) = employees {
        for e in &emps.valid {
            if let Some(m) = &e.manager_id
                && !emps.ids.contains(m)
            {
                findings.push(dangling(
                    EMPLOYEES_FILE,
                    &e.id,
                    "manager_id",
                    m,
                    EMPLOYEES_FILE,
                ));
            }
        }
        check_cycles(&emps.valid, findings);
    }
    if let (Some(cls), Some(emps)) = (clients, employees) {
        for c in &cls.valid {
            if !emps.ids.contains(&c.account_manager_id) {
                findings.push(dangling(
                    CLIENTS_FILE,
                    &c.id,
                    "account_manager_id",
                    &c.account_manager_id,
                    EMPLOYEES_FILE,
                ));
            }
        }
    }
    if let Some(ords) = orders {
        for o in &ords.valid {
            if let Some(cls) = clients
                && !cls.ids.contains(&o.client_id)
            {
                findings.push(dangling(
                    ORDERS_FILE,
                    &o.id,
                    "client_id",
                    &o.client_id,
                    CLIENTS_FILE,
                ));
            }
            if let Some(emps) = employees
                && !emps.ids.contains(&o.sales_rep_id)
            {
                findings.push(dangling(
                    ORDERS_FILE,
                    &o.id,
                    "sales_rep_id",
                    &o.sales_rep_id,
                    EMPLOYEES_FILE,
                ));
            }
        }
    }
}

/// Report each cycle of the `manager_id` graph once (O(n)): record = the
/// smallest id on the cycle, message = the loop.
fn check_cycles(employees: &[Employee], findings: &mut Vec<Finding>) {
    // First occurrence wins for duplicate ids (already reported).
    let mut manager: HashMap<&str, Option<&str>> = HashMap::with_capacity(employees.len());
    for e in employees {
        manager
            .entry(e.id.as_str())
            .or_insert(e.manager_id.as_deref());
    }
    // 0 = unvisited, 1 = on current path, 2 = done.
    let mut state: HashMap<&str, u8> = HashMap::with_capacity(manager.len());
    let mut cycles: Vec<Vec<&str>> = Vec::new();
    for e in employees {
        let start = e.id.as_str();
        if state.get(start).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut path: Vec<&str> = Vec::new();
        let mut cur = Some(start);
        while let Some(node) = cur {
            match state.get(node).copied().unwrap_or(0) {
                0 => {
                    state.insert(node, 1);
                    path.push(node);
                    cur = manager
                        .get(node)
                        .copied()
                        .flatten()
                        .filter(|m| manager.contains_key(m));
                }
                1 => {
                    if let Some(pos) = path.iter().position(|p| *p == node) {
                        cycles.push(path[pos..].to_vec());
                    }
                    break;
                }
                _ => break,
            }
        }
        for p in path {
            state.insert(p, 2);
        }
    }
    for cycle in cycles {
        let Some(min_pos) = cycle
            .iter()
            .enumerate()
            .min_by_key(|(_, id)| **id)
            .map(|(i, _)| i)
        else {
            continue;
        };
        let mut ordered: Vec<&str> = cycle[min_pos..]
            .iter()
            .chain(cycle[..min_pos].iter())
            .copied()
            .collect();
        let first = ordered[0];
        ordered.push(first);
        let chain = ordered.join(" → ");
        let message = if cycle.len() == 1 {
            format!("{EMPLOYEES_FILE}: employee {first} is their own manager")
        } else {
            format!(
                "{EMPLOYEES_FILE}: management chain loops through {} employees: {chain} (manager_id links)",
                cycle.len()
            )
        };
        findings.push(
            Finding::new(
                FindingKind::ManagementCycle,
                EMPLOYEES_FILE,
                Some(first.to_string()),
                message,
            )
            .with("cycle", &chain),
        );
    }
}

#[cfg(test)]
mod tests;
