//! Scale generator and read benchmark for the store, on either backend: fills an empty
//! database through the `Store` port (incidents with their opening events plus notes), then
//! measures `get`, `list` (first page, and a page deep behind a cursor) and `verify_audit_log`.
//!
//! ```text
//! cargo build --release --example store_scale
//! target/release/examples/store_scale DB [--incidents 100000] [--events 10] [--samples 2000]
//!     [--fill import|insert] [--batch 2000] [--reuse] [--verify-runs 1]
//! ```
//! `--reuse` skips the fill and measures a database an earlier run filled (its incident ids
//! are read back in creation order); `--verify-runs K` runs `verify_audit_log` K times.
//! `--fill import` (default) chains the events itself and writes batches of `--batch`
//! incidents through `Store::import`; `--fill insert` uses one `Store::insert` per incident.
//! `DB` is a SQLite path or a `postgres://` URL of an empty database. Prints one JSON object:
//! fill rate, get/list p50/p99 in microseconds, verify events/s, and the sizes used. Fill
//! progress goes to stderr.

use std::time::Instant;

use ai_incident_mcp::app::open_store;
use ai_incident_mcp::domain::incident::{
    DetectionMethod, Event, EventKind, Incident, IncidentId, IncidentType, NewIncident, Severity,
};
use ai_incident_mcp::store::{ImportBatch, ListQuery, StoreError};
use chrono::{Duration, TimeZone, Utc};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(v: &mut [u128], p: f64) -> u128 {
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(0)
}

/// A cheap deterministic generator (no rand dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let db = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("usage: store_scale DB [--incidents N] [--events E]"))?;
    let n = arg(&args, "--incidents", 100_000);
    let per = arg(&args, "--events", 10);
    let samples = arg(&args, "--samples", 2000);
    let batch_n = arg(&args, "--batch", 2000).max(1);
    let fill_mode = args
        .iter()
        .position(|a| a == "--fill")
        .and_then(|i| args.get(i + 1))
        .map_or("import", String::as_str)
        .to_string();
    let reuse = args.iter().any(|a| a == "--reuse");
    let verify_runs = arg(&args, "--verify-runs", 1).max(1);
    let store = open_store(&db)?;
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();

    // Fill. `--fill import` (default): the generator builds each incident with its events,
    // chains them itself (seq, prev_hash, `event_hash`, as the store does on append) and hands
    // large batches to `Store::import`, the store's own bulk path (one transaction per batch;
    // it checks every link; PostgreSQL writes a batch as a few multi-row INSERTs). The audit at
    // the end recomputes every hash, so a wrong chain fails the run.
    // `--fill insert`: one `Store::insert` per incident, 32 at a time (the service's path).
    let fill = Instant::now();
    let mut ids: Vec<IncidentId> = Vec::with_capacity(n as usize);
    let mut events_total = 0u64;
    // Ids carry the day and 32 random bits: at 86,400 incidents a day some collide, and the
    // service would retry; the generator draws again.
    let mut seen = std::collections::HashSet::with_capacity(n as usize);
    let mut make = |i: u64| loop {
        let at = t0 + Duration::seconds(i as i64);
        let (inc, mut ev) = Incident::open(
            NewIncident {
                incident_type: IncidentType::Security,
                category: None,
                severity: [Severity::Low, Severity::Medium, Severity::High][(i % 3) as usize],
                title: format!("scale incident {i}"),
                description: format!("generated incident number {i} for the scale figures"),
                reporter: Some("gen@example.com".into()),
                affected_system: Some("scale".into()),
                affected_user: None,
                affected_session: None,
                detection_method: DetectionMethod::ManualReport,
                confidence: None,
                evidence: vec![],
                tags: vec![],
                dedup_key: None,
            },
            at,
        );
        while (ev.len() as u64) < per {
            ev.push(EventKind::Note {
                text: format!("note {} on {i}", ev.len()),
            });
        }
        if seen.insert(inc.id().as_str().to_string()) {
            break (inc, ev, at);
        }
    };
    let progress = |done: u64, events: u64, started: &Instant| {
        let s = started.elapsed().as_secs_f64();
        eprintln!(
            "fill: {done}/{n} incidents, {events} events, {:.0} s, {:.0} incidents/s",
            s,
            done as f64 / s.max(1e-9)
        );
    };
    use futures::StreamExt;
    if reuse {
        (ids, events_total) = existing(&db).await?;
        anyhow::ensure!(!ids.is_empty(), "--reuse: {db} holds no incidents");
    } else if fill_mode == "insert" {
        let mut pending = futures::stream::FuturesUnordered::new();
        for i in 0..n {
            let (inc, ev, at) = make(i);
            events_total += ev.len() as u64;
            ids.push(inc.id().clone());
            let s = store.clone();
            pending.push(async move { s.insert(inc, ev, "gen".into(), at).await });
            if pending.len() >= 32
                && let Some(r) = pending.next().await
            {
                r?;
            }
            if (i + 1) % 10_000 == 0 {
                progress(i + 1, events_total, &fill);
            }
        }
        while let Some(r) = pending.next().await {
            r?;
        }
    } else {
        anyhow::ensure!(fill_mode == "import", "--fill is import or insert");
        let mut seq = 0i64;
        let mut prev = ai_incident_mcp::domain::audit::GENESIS_HASH.to_string();
        // One batch is written while the next is generated.
        let mut inflight: Option<tokio::task::JoinHandle<Result<(), StoreError>>> = None;
        let mut i = 0u64;
        while i < n {
            let mut batch = ImportBatch::default();
            let end = (i + batch_n).min(n);
            for k in i..end {
                let (inc, ev, at) = make(k);
                let at_s = ai_incident_mcp::domain::audit::hash_time(&at);
                for kind in &ev {
                    seq += 1;
                    let data = serde_json::to_string(kind)?;
                    let hash = ai_incident_mcp::domain::audit::event_hash(
                        seq,
                        inc.id().as_str(),
                        &at_s,
                        "gen",
                        &data,
                        &prev,
                    );
                    batch.events.push(Event {
                        seq,
                        incident_id: inc.id().clone(),
                        at,
                        actor: "gen".into(),
                        data,
                        prev_hash: std::mem::replace(&mut prev, hash.clone()),
                        hash,
                    });
                }
                events_total += ev.len() as u64;
                ids.push(inc.id().clone());
                batch.incidents.push(inc);
            }
            if let Some(h) = inflight.take() {
                h.await??;
            }
            let s = store.clone();
            inflight = Some(tokio::spawn(async move { s.import(batch).await }));
            let before = i;
            i = end;
            if i / 50_000 != before / 50_000 || i == n {
                progress(i, events_total, &fill);
            }
        }
        if let Some(h) = inflight.take() {
            h.await??;
        }
    }
    let fill_s = fill.elapsed().as_secs_f64();
    let n = ids.len() as u64;

    let mut rng = Lcg(42);
    let mut get = Vec::new();
    for _ in 0..samples {
        let id = &ids[(rng.next() % n) as usize];
        let t = Instant::now();
        let got = store.get(id).await?;
        get.push(t.elapsed().as_micros());
        anyhow::ensure!(got.is_some(), "incident {id} missing");
    }
    let q = |cursor| ListQuery {
        limit: 50,
        cursor,
        ..Default::default()
    };
    let mut first = Vec::new();
    for _ in 0..samples.min(500) {
        let t = Instant::now();
        let p = store.list(q(None)).await?;
        first.push(t.elapsed().as_micros());
        anyhow::ensure!(p.items.len() == 50.min(n as usize));
    }
    // A cursor half way down: the page after incident n/2 in (created_at desc, id desc) order.
    let mid = &ids[(n / 2) as usize];
    let cursor = ai_incident_mcp::store::Cursor {
        created_at_micros: (t0 + Duration::seconds((n / 2) as i64)).timestamp_micros(),
        id: mid.as_str().to_string(),
    };
    let mut deep = Vec::new();
    for _ in 0..samples.min(500) {
        let t = Instant::now();
        let p = store.list(q(Some(cursor.clone()))).await?;
        deep.push(t.elapsed().as_micros());
        anyhow::ensure!(!p.items.is_empty());
    }
    let mut verify = Vec::new();
    for _ in 0..verify_runs {
        let t = Instant::now();
        let report = store.verify_audit_log(Default::default()).await?;
        let verify_s = t.elapsed().as_secs_f64();
        anyhow::ensure!(report.ok, "audit failed: {report:?}");
        verify.push((report.events_checked as f64 / verify_s).round());
        eprintln!(
            "verify: {} events in {verify_s:.2} s",
            report.events_checked
        );
    }
    let out = serde_json::json!({
        "backend": if db.starts_with("postgres") { "postgresql" } else { "sqlite" },
        "incidents": n,
        "events": events_total,
        "fill": if reuse { "reused" } else { fill_mode.as_str() },
        "fill_s": (fill_s * 10.0).round() / 10.0,
        "fill_incidents_per_s": (n as f64 / fill_s).round(),
        "fill_events_per_s": (events_total as f64 / fill_s).round(),
        "get_us": {"p50": pct(&mut get, 0.5), "p99": pct(&mut get, 0.99)},
        "list_first_page_us": {"p50": pct(&mut first, 0.5), "p99": pct(&mut first, 0.99)},
        "list_deep_page_us": {"p50": pct(&mut deep, 0.5), "p99": pct(&mut deep, 0.99)},
        "verify_events_per_s": verify,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// The incident ids of a filled database in creation order (the generator creates incident
/// `i` at `t0 + i` seconds, so index `i` is incident `i`), and the number of events.
async fn existing(db: &str) -> anyhow::Result<(Vec<IncidentId>, u64)> {
    const IDS: &str = "SELECT id FROM incidents ORDER BY created_at, id";
    const EVENTS: &str = "SELECT count(*) FROM events";
    let (raw, events): (Vec<String>, i64) = if db.starts_with("postgres") {
        let (client, conn) = tokio_postgres::connect(db, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        let ids = client
            .query(IDS, &[])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        (ids, client.query_one(EVENTS, &[]).await?.get(0))
    } else {
        let c = rusqlite::Connection::open(db)?;
        let mut st = c.prepare(IDS)?;
        let ids = st
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        (ids, c.query_row(EVENTS, [], |r| r.get(0))?)
    };
    let ids = raw
        .iter()
        .map(|s| {
            s.parse()
                .map_err(|e| anyhow::anyhow!("incident id {s}: {e:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((ids, events as u64))
}
