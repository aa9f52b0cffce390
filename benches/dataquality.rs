//! Full data-quality pass (`check_all`) on the shipped data and on a
//! generated data set 100× larger.
//!
//! Run: `CARGO_TARGET_DIR=target cargo bench --bench dataquality`
//! The shipped data is looked up in `$DQ_BENCH_ROOT`, then the crate root,
//! then `../main` (each must hold `data/` and `mcp_server/`); it is copied
//! into a temporary directory first.

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use ai_incident_mcp::checks::dataquality::{PinLock, check_all};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

fn shipped_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut candidates = Vec::new();
    if let Ok(r) = std::env::var("DQ_BENCH_ROOT") {
        candidates.push(PathBuf::from(r));
    }
    candidates.push(manifest.to_path_buf());
    candidates.push(manifest.join("../main"));
    candidates
        .into_iter()
        .find(|c| c.join("data/orders.json").is_file() && c.join("mcp_server").is_dir())
        .expect("shipped data/ and mcp_server/ not found; set DQ_BENCH_ROOT")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_file() {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn write(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_vec_pretty(v).unwrap()).unwrap();
}

/// 100× the shipped sizes (25/30/60): 2 500 employees in a 5-ary tree,
/// 3 000 clients, 6 000 orders, all references valid.
fn generate(dir: &Path, factor: usize) {
    let (n_emp, n_cl, n_ord) = (25 * factor, 30 * factor, 60 * factor);
    let statuses = [
        "pending",
        "confirmed",
        "shipped",
        "delivered",
        "cancelled",
        "refunded",
    ];
    let emps: Vec<Value> = (1..=n_emp)
        .map(|i| {
            let manager = if i == 1 { Value::Null } else { json!(format!("EMP-{:05}", (i - 2) / 5 + 1)) };
            json!({
                "id": format!("EMP-{i:05}"), "name": format!("Employee {i}"),
                "email": format!("employee{i}@example.com"), "department": (["Sales", "Engineering", "Finance", "Operations"][i % 4]),
                "role": "Staff", "manager_id": manager, "hire_date": "2020-01-15", "location": "Remote"
            })
        })
        .collect();
    let clients: Vec<Value> = (1..=n_cl)
        .map(|i| {
            json!({
                "id": format!("CL-{i:05}"), "name": format!("Client {i} Ltd"), "industry": "Retail", "country": "US",
                "contact_name": format!("Contact {i}"), "email": format!("contact{i}@client{i}.example.org"),
                "phone": "+1-555-0100", "account_manager_id": format!("EMP-{:05}", (i * 7) % n_emp + 1),
                "created_at": "2023-03-04T09:00:00Z"
            })
        })
        .collect();
    let orders: Vec<Value> = (1..=n_ord)
        .map(|i| {
            json!({
                "id": format!("ORD-{i:05}"), "client_id": format!("CL-{:05}", (i * 13) % n_cl + 1),
                "sales_rep_id": format!("EMP-{:05}", (i * 11) % n_emp + 1), "amount": (i % 997) as f64 * 41.5,
                "currency": (["USD", "EUR", "GBP"][i % 3]), "status": statuses[i % statuses.len()],
                "created_at": "2025-02-03T10:20:30Z", "items": i % 12 + 1
            })
        })
        .collect();
    fs::create_dir_all(dir).unwrap();
    write(&dir.join("employees.json"), &Value::Array(emps));
    write(&dir.join("clients.json"), &Value::Array(clients));
    write(&dir.join("orders.json"), &Value::Array(orders));
}

fn bench(c: &mut Criterion) {
    let root = shipped_root();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let catalog = tmp.path().join("mcp_server");
    copy_dir(&root.join("data"), &data);
    copy_dir(&root.join("mcp_server"), &catalog);
    let big = tmp.path().join("data100");
    generate(&big, 100);

    // Steady state: pins recorded on a first pass, then compared.
    let first = check_all(&data, &catalog, &PinLock::default());
    assert!(first.is_clean(), "{:#?}", first.findings);
    let lock = first.current_pins;
    let r = check_all(&big, &catalog, &lock);
    assert!(r.is_clean(), "{:#?}", r.findings);
    eprintln!(
        "shipped: {} records, {} tools; 100x: {} records, {} tools",
        first.records_checked, first.tools_checked, r.records_checked, r.tools_checked
    );

    let mut g = c.benchmark_group("check_all");
    g.bench_function("shipped", |b| {
        b.iter(|| black_box(check_all(&data, &catalog, black_box(&lock))))
    });
    g.sample_size(30);
    g.bench_function("data_x100", |b| {
        b.iter(|| black_box(check_all(&big, &catalog, black_box(&lock))))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
