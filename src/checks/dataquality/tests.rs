//! Unit tests for every data-quality check, on fixtures under
//! `tests/fixtures/dataquality/` (a valid set plus broken variants that are
//! swapped in one at a time).

use std::fs;
use std::path::{Path, PathBuf};

use super::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dataquality")
}

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    catalog: PathBuf,
}

impl Env {
    fn valid() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let catalog = tmp.path().join("mcp_server");
        fs::create_dir_all(&data).unwrap();
        fs::create_dir_all(&catalog).unwrap();
        for f in DATA_FILES {
            fs::copy(fixtures().join("valid/data").join(f), data.join(f)).unwrap();
        }
        for f in CATALOG_FILES {
            fs::copy(fixtures().join("valid/catalog").join(f), catalog.join(f)).unwrap();
        }
        Env {
            _tmp: tmp,
            data,
            catalog,
        }
    }
    /// Replace data file `name` with `broken/<fixture>`.
    fn data_from(self, name: &str, fixture: &str) -> Self {
        fs::copy(
            fixtures().join("broken").join(fixture),
            self.data.join(name),
        )
        .unwrap();
        self
    }
    fn catalog_from(self, name: &str, fixture: &str) -> Self {
        fs::copy(
            fixtures().join("broken").join(fixture),
            self.catalog.join(name),
        )
        .unwrap();
        self
    }
    fn check(&self, lock: &PinLock) -> DqReport {
        check_all(&self.data, &self.catalog, lock)
    }
    /// Pins of the valid set (first run).
    fn pins(&self) -> PinLock {
        let r = self.check(&PinLock::default());
        assert!(r.bootstrapped);
        r.current_pins
    }
}

fn kinds(r: &DqReport) -> Vec<FindingKind> {
    r.findings.iter().map(|f| f.kind).collect()
}

fn only(r: &DqReport, kind: FindingKind) -> &Finding {
    assert_eq!(kinds(r), vec![kind], "findings: {:#?}", r.findings);
    &r.findings[0]
}

#[test]
fn valid_set_is_clean_and_counted() {
    let env = Env::valid();
    let r = env.check(&PinLock::default());
    assert!(r.is_clean(), "{:#?}", r.findings);
    assert_eq!(r.files_checked, 6);
    assert_eq!(r.records_checked, 5 + 3 + 4);
    assert_eq!(r.tools_checked, 3 + 2 + 2);
    assert!(r.bootstrapped);
    assert_eq!(r.current_pins.tools.len(), 7);
    assert!(r.current_pins.tools.contains_key("crm_mcp.json/get_client"));
    // Second run with the recorded pins: still clean, nothing bootstrapped.
    let r2 = env.check(&r.current_pins);
    assert!(r2.is_clean(), "{:#?}", r2.findings);
    assert!(!r2.bootstrapped);
    assert_eq!(r2.current_pins, r.current_pins);
}

#[test]
fn shipped_data_is_clean() {
    // The real data of the server, when this crate sits next to it.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [root.to_path_buf(), root.join("../main")];
    let Some(base) = candidates.iter().find(|b| {
        b.join("data/orders.json").is_file() && b.join("mcp_server/crm_mcp.json").is_file()
    }) else {
        eprintln!("shipped data not found, skipping");
        return;
    };
    let r = check_all(
        &base.join("data"),
        &base.join("mcp_server"),
        &PinLock::default(),
    );
    assert!(r.is_clean(), "{:#?}", r.findings);
    assert!(r.records_checked >= 100);
    assert!(r.tools_checked >= 15);
}

// (a) parsing and typed shape

#[test]
fn truncated_json_is_parse_error_with_position() {
    let env = Env::valid().data_from(ORDERS_FILE, "orders_truncated.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::ParseError);
    assert_eq!(f.file, "orders.json");
    assert_eq!(f.record, None);
    assert!(f.message.contains("truncated"), "{}", f.message);
    assert!(
        f.message.contains("line ") && f.message.contains("column "),
        "{}",
        f.message
    );
    assert!(f.metadata["line"].parse::<usize>().unwrap() > 1);
    // The other files were still checked.
    assert_eq!(r.files_checked, 5);
}

#[test]
fn garbage_json_is_parse_error() {
    let env = Env::valid();
    fs::write(env.data.join(CLIENTS_FILE), "[{\"id\": \"CL-0001\",, }]").unwrap();
    fs::write(env.catalog.join("erp_mcp.json"), [0xff, 0xfe, 0x00]).unwrap();
    let r = env.check(&PinLock::default());
    assert_eq!(
        kinds(&r),
        vec![FindingKind::ParseError, FindingKind::ParseError]
    );
    assert!(
        r.findings[0].message.contains("not valid JSON at line 1"),
        "{}",
        r.findings[0].message
    );
    assert_eq!(r.findings[1].file, "erp_mcp.json");
}

#[test]
fn missing_files_are_reported() {
    let env = Env::valid();
    fs::remove_file(env.data.join(EMPLOYEES_FILE)).unwrap();
    fs::remove_file(env.catalog.join("hr_mcp.json")).unwrap();
    let r = env.check(&PinLock::default());
    assert_eq!(
        kinds(&r),
        vec![FindingKind::MissingFile, FindingKind::MissingFile]
    );
    assert_eq!(r.findings[0].file, "employees.json");
    assert!(r.findings[0].message.contains("missing"));
    assert_eq!(r.findings[1].file, "hr_mcp.json");
    // No dangling-reference noise against a file that is not there.
}

#[test]
fn missing_directories_do_not_panic() {
    let r = check_all(
        Path::new("/nonexistent/data"),
        Path::new("/nonexistent/mcp"),
        &PinLock::default(),
    );
    assert_eq!(r.count(FindingKind::MissingFile), 6);
}

#[test]
fn schema_violations_name_record_and_field() {
    let env = Env::valid().data_from(ORDERS_FILE, "orders_schema_violation.json");
    let r = env.check(&PinLock::default());
    assert_eq!(
        r.count(FindingKind::SchemaViolation),
        4,
        "{:#?}",
        r.findings
    );
    let msg = |id: &str| {
        r.findings
            .iter()
            .find(|f| f.record.as_deref() == Some(id))
            .map(|f| f.message.clone())
            .unwrap()
    };
    assert!(msg("ORD-0001").contains("missing field `currency`"));
    assert!(msg("ORD-0002").contains("lost"));
    assert!(msg("ORD-0003").contains("amount"));
    assert!(msg("ORD-0004").contains("manger_id"));
}

#[test]
fn field_rules_email_and_id_format() {
    let env = Env::valid().data_from(EMPLOYEES_FILE, "employees_bad_fields.json");
    let r = env.check(&PinLock::default());
    assert_eq!(
        r.count(FindingKind::SchemaViolation),
        2,
        "{:#?}",
        r.findings
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.record.as_deref() == Some("EMP-0004") && f.message.contains("e-mail"))
    );
    assert!(
        r.findings
            .iter()
            .any(|f| f.record.as_deref() == Some("E5") && f.message.contains("EMP-"))
    );
}

#[test]
fn top_level_must_be_an_array() {
    let env = Env::valid().data_from(ORDERS_FILE, "orders_not_array.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::SchemaViolation);
    assert!(f.message.contains("JSON array"));
}

#[test]
fn duplicate_record_ids() {
    let env = Env::valid().data_from(ORDERS_FILE, "orders_duplicate_id.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::DuplicateId);
    assert_eq!(f.record.as_deref(), Some("ORD-0002"));
    assert!(f.message.contains("indexes 1, 3"), "{}", f.message);
    assert_eq!(f.dedup_key(), "duplicate_id:orders.json:ORD-0002");
}

// (c) referential integrity

#[test]
fn order_with_missing_client() {
    let env = Env::valid().data_from(ORDERS_FILE, "orders_missing_client.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::DanglingReference);
    assert_eq!(f.file, "orders.json");
    assert_eq!(f.record.as_deref(), Some("ORD-0002"));
    assert!(f.message.contains("client_id CL-0099"));
    assert!(f.message.contains("clients.json"));
}

#[test]
fn client_with_missing_account_manager() {
    let env = Env::valid().data_from(CLIENTS_FILE, "clients_missing_manager.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::DanglingReference);
    assert_eq!(f.record.as_deref(), Some("CL-0003"));
    assert_eq!(f.metadata["field"], "account_manager_id");
}

#[test]
fn employee_with_missing_manager() {
    let env = Env::valid().data_from(EMPLOYEES_FILE, "employees_missing_manager.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::DanglingReference);
    assert_eq!(f.record.as_deref(), Some("EMP-0003"));
    assert!(f.message.contains("EMP-0042"));
}

#[test]
fn management_cycle_reported_once() {
    let env = Env::valid().data_from(EMPLOYEES_FILE, "employees_cycle.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::ManagementCycle);
    assert_eq!(f.record.as_deref(), Some("EMP-0002"));
    assert!(
        f.message.contains("EMP-0002 → EMP-0004 → EMP-0002"),
        "{}",
        f.message
    );
}

#[test]
fn self_manager_is_a_cycle() {
    let env = Env::valid().data_from(EMPLOYEES_FILE, "employees_self_manager.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::ManagementCycle);
    assert!(f.message.contains("own manager"));
}

// (b) catalogs

#[test]
fn invalid_input_schema_against_meta_schema() {
    let env = Env::valid().catalog_from("crm_mcp.json", "crm_invalid_schema.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::InvalidInputSchema);
    assert_eq!(f.record.as_deref(), Some("search_clients"));
    assert!(f.message.contains("meta-schema"), "{}", f.message);
    assert!(
        f.message.contains("/properties/query/type"),
        "{}",
        f.message
    );
}

#[test]
fn input_schema_must_be_object_type() {
    let env = Env::valid().catalog_from("crm_mcp.json", "crm_schema_not_object.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::InvalidInputSchema);
    assert!(f.message.contains("\"object\""), "{}", f.message);
}

#[test]
fn input_schema_with_bad_regex() {
    let env = Env::valid().catalog_from("crm_mcp.json", "crm_bad_regex.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::InvalidInputSchema);
    assert_eq!(f.record.as_deref(), Some("get_client"));
}

#[test]
fn input_schema_problem_direct() {
    use serde_json::json;
    assert_eq!(input_schema_problem(&json!({"type": "object"})), None);
    assert!(input_schema_problem(&json!({"type": "object", "required": "x"})).is_some());
    assert!(input_schema_problem(&json!({"properties": {}})).is_some());
    assert!(input_schema_problem(&json!("object")).is_some());
    // Unknown $schema: an error, never a panic or a network fetch.
    // Odd `$schema` values: reported or accepted, never a panic.
    let _ = input_schema_problem(&json!({"$schema": 5, "type": "object"}));
    let _ = input_schema_problem(&json!({"$schema": "", "type": "object"}));
    assert!(
        input_schema_problem(&json!({"$schema": "https://example.com/custom", "type": "object"}))
            .is_some()
    );
    assert!(
        input_schema_problem(
            &json!({"type": "object", "properties": {"a": {"$ref": "https://example.com/s.json"}}})
        )
        .is_some()
    );
}

#[test]
fn duplicate_tool_names() {
    let env = Env::valid().catalog_from("crm_mcp.json", "crm_duplicate_tools.json");
    let r = env.check(&PinLock::default());
    let f = only(&r, FindingKind::DuplicateId);
    assert_eq!(f.file, "crm_mcp.json");
    assert_eq!(f.record.as_deref(), Some("get_client"));
    assert!(f.message.contains("tools[0] and tools[3]"), "{}", f.message);
}

#[test]
fn missing_version_and_bad_tool_name() {
    let env = Env::valid().catalog_from("crm_mcp.json", "crm_missing_version_bad_name.json");
    let r = env.check(&PinLock::default());
    assert_eq!(
        kinds(&r),
        vec![FindingKind::InvalidCatalog, FindingKind::InvalidCatalog]
    );
    assert!(r.findings[0].message.contains("`version`"));
    assert_eq!(r.findings[1].record.as_deref(), Some("export clients/csv"));
}

#[test]
fn catalog_shape_errors() {
    let env = Env::valid();
    fs::write(
        env.catalog.join("erp_mcp.json"),
        r#"{"version":"1","tools":{}}"#,
    )
    .unwrap();
    fs::write(env.catalog.join("hr_mcp.json"), r#"[1,2]"#).unwrap();
    fs::write(
        env.catalog.join("extra_mcp.json"),
        r#"{"version":"1","tools":[42,{"description":"no name"},{"name":"x","description":7,"inputSchema":{"type":"object"}},{"name":"y"}]}"#,
    )
    .unwrap();
    let r = env.check(&PinLock::default());
    assert_eq!(
        kinds(&r),
        vec![
            FindingKind::InvalidCatalog,     // erp: tools not an array
            FindingKind::InvalidCatalog,     // extra: 42
            FindingKind::InvalidCatalog,     // extra: no name
            FindingKind::InvalidCatalog,     // extra: description 7
            FindingKind::InvalidInputSchema, // extra: y has no inputSchema
            FindingKind::InvalidCatalog,     // hr: not an object
        ],
        "{:#?}",
        r.findings
    );
}

#[test]
fn tool_name_pattern() {
    assert!(tool_name_well_formed("get_client"));
    assert!(tool_name_well_formed("A-b_9"));
    assert!(tool_name_well_formed(&"a".repeat(64)));
    assert!(!tool_name_well_formed(&"a".repeat(65)));
    assert!(!tool_name_well_formed(""));
    assert!(!tool_name_well_formed("get client"));
    assert!(!tool_name_well_formed("get.client"));
    assert!(!tool_name_well_formed("getclïent"));
}

// (d) pinning

#[test]
fn changed_description_is_tool_poisoning() {
    let env = Env::valid();
    let lock = env.pins();
    let env = env.catalog_from("crm_mcp.json", "crm_changed_description.json");
    let r = env.check(&lock);
    let f = only(&r, FindingKind::ToolDefinitionChanged);
    assert_eq!(f.record.as_deref(), Some("get_client"));
    assert!(
        f.message.contains("get_client") && f.message.contains("AML.T0110"),
        "{}",
        f.message
    );
    assert_eq!(f.metadata["mitre_atlas"], "AML.T0110");
    assert_eq!(f.metadata["pin_key"], "crm_mcp.json/get_client");
    assert_eq!(
        f.metadata["old_hash"],
        lock.tools["crm_mcp.json/get_client"]
    );
    assert!(f.kind.is_security());
    assert_eq!(
        f.dedup_key(),
        "tool_definition_changed:crm_mcp.json:get_client"
    );
    // Not approved: the finding repeats on the next run.
    assert_eq!(env.check(&lock).findings.len(), 1);
    // Approve the new hash: clean again.
    let mut lock2 = lock.clone();
    approve(&mut lock2, &f.metadata["pin_key"], &f.metadata["new_hash"]);
    assert!(env.check(&lock2).is_clean());
    assert_eq!(
        r.current_pins.tools["crm_mcp.json/get_client"],
        f.metadata["new_hash"]
    );
}

#[test]
fn changed_input_schema_is_detected() {
    let env = Env::valid();
    let lock = env.pins();
    let env = env.catalog_from("crm_mcp.json", "crm_changed_schema.json");
    let f = only(&env.check(&lock), FindingKind::ToolDefinitionChanged).clone();
    assert_eq!(f.record.as_deref(), Some("search_clients"));
}

#[test]
fn key_order_whitespace_and_other_members_do_not_change_pins() {
    let env = Env::valid();
    let lock = env.pins();
    let env = env.catalog_from("crm_mcp.json", "crm_reordered_keys.json");
    let r = env.check(&lock);
    assert!(r.is_clean(), "{:#?}", r.findings);
}

#[test]
fn added_and_removed_tools() {
    let env = Env::valid();
    let lock = env.pins();
    let env = env.catalog_from("crm_mcp.json", "crm_added_removed.json");
    let r = env.check(&lock);
    assert_eq!(
        kinds(&r),
        vec![FindingKind::ToolAdded, FindingKind::ToolRemoved],
        "{:#?}",
        r.findings
    );
    assert_eq!(r.findings[0].record.as_deref(), Some("delete_client"));
    assert_eq!(r.findings[1].record.as_deref(), Some("export_clients_csv"));
    let mut lock2 = lock.clone();
    approve(
        &mut lock2,
        &r.findings[0].metadata["pin_key"],
        &r.findings[0].metadata["new_hash"],
    );
    assert!(approve_removal(
        &mut lock2,
        &r.findings[1].metadata["pin_key"]
    ));
    assert!(env.check(&lock2).is_clean());
    assert_eq!(lock2, r.current_pins);
}

#[test]
fn unreadable_catalog_keeps_its_pins_and_is_not_reported_as_removed() {
    let env = Env::valid();
    let lock = env.pins();
    fs::write(env.catalog.join("crm_mcp.json"), "{\"version\": ").unwrap();
    let r = env.check(&lock);
    assert_eq!(kinds(&r), vec![FindingKind::ParseError]);
    assert_eq!(r.current_pins, lock);
}

#[test]
fn pinned_catalog_that_disappears_is_missing() {
    let env = Env::valid();
    fs::write(
        env.catalog.join("extra_mcp.json"),
        r#"{"version":"1","tools":[{"name":"t","inputSchema":{"type":"object"}}]}"#,
    )
    .unwrap();
    let lock = env.pins();
    assert!(lock.tools.contains_key("extra_mcp.json/t"));
    fs::remove_file(env.catalog.join("extra_mcp.json")).unwrap();
    let r = env.check(&lock);
    let f = only(&r, FindingKind::MissingFile);
    assert_eq!(f.file, "extra_mcp.json");
}

#[test]
fn pin_lock_roundtrip_and_atomic_save() {
    let env = Env::valid();
    let lock = env.pins();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pins.lock.json");
    assert_eq!(
        PinLock::load(&path).unwrap(),
        PinLock::default(),
        "missing file = first run"
    );
    lock.save(&path).unwrap();
    lock.save(&path).unwrap(); // overwrite
    assert_eq!(PinLock::load(&path).unwrap(), lock);
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temp file left behind: {names:?}");
    let text = fs::read_to_string(&path).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 1);
    assert!(
        v["tools"]["hr_mcp.json/get_employee"]
            .as_str()
            .unwrap()
            .len()
            == 64
    );
}

#[test]
fn pin_lock_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("lock.json");
    fs::write(&p, "{").unwrap();
    assert!(matches!(PinLock::load(&p), Err(PinError::Parse { .. })));
    fs::write(&p, r#"{"version":2,"tools":{}}"#).unwrap();
    assert!(matches!(
        PinLock::load(&p),
        Err(PinError::UnsupportedVersion { found: 2, .. })
    ));
    fs::write(&p, r#"{"version":1,"tools":{"a/b":"xyz"}}"#).unwrap();
    assert!(matches!(
        PinLock::load(&p),
        Err(PinError::InvalidEntry { .. })
    ));
    let bad_dir = dir.path().join("no/such/dir/lock.json");
    assert!(matches!(
        PinLock::default().save(&bad_dir),
        Err(PinError::Write { .. })
    ));
}

#[test]
fn canonical_hash_is_stable() {
    use serde_json::json;
    let a = json!({"name": "t", "description": "d", "inputSchema": {"type": "object", "properties": {"b": {}, "a": {}}}});
    let b = json!({"inputSchema": {"properties": {"a": {}, "b": {}}, "type": "object"}, "description": "d", "name": "t", "annotations": {"x": 1}});
    assert_eq!(tool_hash(&a), tool_hash(&b));
    let mut s = String::new();
    canonical_json(&a, &mut s);
    assert_eq!(
        s,
        r#"{"description":"d","inputSchema":{"properties":{"a":{},"b":{}},"type":"object"},"name":"t"}"#
    );
    // sha256 of that exact string, computed independently.
    assert_eq!(tool_hash(&a).len(), 64);
}

#[test]
fn finding_serialises_snake_case() {
    let f = Finding::new(
        FindingKind::ToolDefinitionChanged,
        "crm_mcp.json",
        Some("x".into()),
        "m",
    );
    let v = serde_json::to_value(&f).unwrap();
    assert_eq!(v["kind"], "tool_definition_changed");
    for k in FindingKind::ALL {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
    assert_eq!(f.dedup_key(), "tool_definition_changed:crm_mcp.json:x");
    assert_eq!(
        Finding::new(FindingKind::MissingFile, "a.json", None, "m").dedup_key(),
        "missing_file:a.json:-"
    );
}
