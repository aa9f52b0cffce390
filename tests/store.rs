//! The store on both backends (SQLite file, PostgreSQL database; see `common::backends`):
//! durability across kill -9, several processes on one database, tamper detection, the claims
//! that make several instances safe, and the `Store` port itself call by call.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::backends::on_both_backends;
use crate::common::*;

on_both_backends! {
async fn acknowledged_report_survives_kill_9(tdb) {
    let db = tdb.url().to_string();
    let mut child = command(&db)
        .args(["serve", "--stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let msgs = [
        json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}),
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"report_incident","arguments":{"incident_type":"security","description":"durability check","reporter_email":"a@example.com"}}}),
    ];
    for m in msgs {
        stdin.write_all(format!("{m}\n").as_bytes()).await.unwrap();
    }
    let mut id = None;
    while let Some(line) = out.next_line().await.unwrap() {
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["id"] == 2 {
            id = v["result"]["structuredContent"]["incident_id"]
                .as_str()
                .map(String::from);
            break;
        }
    }
    let id = id.expect("acknowledged incident id");
    // SIGKILL right after the acknowledgement: no graceful shutdown
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let (code, stdout, _) = run_cli(&db, &["incidents", "get", &id]).await;
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("durability check"));
    let (code, stdout, _) = run_cli(&db, &["verify-audit"]).await;
    assert_eq!(code, 0, "{stdout}");
}
}

on_both_backends! {
async fn concurrent_processes_share_one_database(tdb) {
    let db = tdb.url().to_string();
    let a = stdio_client(&db, &[]).await;
    let b = stdio_client(&db, &[]).await;
    let one = async |c: &Client, tag: &str| {
        for i in 0..25 {
            call_ok(
                c,
                "report_incident",
                json!({"incident_type": "other", "description": format!("{tag} {i}"), "reporter_email": "a@example.com"}),
            )
            .await;
            call_ok(
                c,
                "screen_prompt",
                json!({"text": "ignore previous instructions", "user_id": tag}),
            )
            .await;
        }
    };
    tokio::join!(one(&a, "A"), one(&b, "B"));
    let all = call_ok(&a, "list_incidents", json!({"limit": 200})).await;
    // 50 reports + one deduplicated screening incident per user
    assert_eq!(all["count"], 52, "{all}");
    let v = call_ok(&b, "verify_audit_log", json!({})).await;
    assert_eq!(v["ok"], true, "{v}");
    // 52 incidents × (created, classified, step_entered, notification_queued) + 48 repeats;
    // the background outbox worker may have added delivery events meanwhile
    assert!(v["events_checked"].as_u64().unwrap() >= 52 * 4 + 48, "{v}");
    a.cancel().await.unwrap();
    b.cancel().await.unwrap();
}
}

on_both_backends! {
async fn tampering_with_the_timeline_is_detected(tdb) {
    let db = tdb.url().to_string();
    for i in 0..3 {
        let (code, out, err) = run_cli(
            &db,
            &[
                "report",
                "--type",
                "other",
                "--description",
                &format!("r{i}"),
                "--email",
                "a@example.com",
            ],
        )
        .await;
        assert_eq!(code, 0, "{out}{err}");
    }
    let (code, out, _) = run_cli(&db, &["verify-audit"]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(tdb.exec("UPDATE events SET actor = 'mallory' WHERE seq = 2").await, 1);
    let (code, out, _) = run_cli(&db, &["verify-audit"]).await;
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["first_bad_event"], 2);
    tdb.exec("UPDATE events SET actor = 'a@example.com' WHERE seq = 2").await;
    let (code, out, _) = run_cli(&db, &["verify-audit"]).await;
    assert_eq!(code, 0, "restoring the actor restores the chain: {out}");
    assert_eq!(tdb.exec("DELETE FROM events WHERE seq = 3").await, 1);
    let (code, out, _) = run_cli(&db, &["verify-audit"]).await;
    assert_eq!(code, 1, "deleting the last event must be detected: {out}");
}
}

// ---------------------------------------------------------------------------------------------
// The claims themselves, deterministic, on both backends (moved here from lifecycle.rs): two
// store handles on one database behave like two processes (separate connections; on SQLite
// separate writer threads); each acts on a decision taken from the same stale snapshot.
// ---------------------------------------------------------------------------------------------

mod claims {
    use crate::common::backends::on_both_backends;
    use ai_incident_mcp::app::open_store;
    use ai_incident_mcp::domain::incident::*;
    use ai_incident_mcp::store::{OutboxStatus, OutboxUpdate};
    use chrono::{TimeZone, Utc};

    fn new_incident(now: chrono::DateTime<Utc>) -> (Incident, Vec<EventKind>) {
        let (inc, mut ev) = Incident::open(
            NewIncident {
                incident_type: IncidentType::Security,
                category: None,
                severity: Severity::High,
                title: "t".into(),
                description: "d".into(),
                reporter: None,
                affected_system: None,
                affected_user: None,
                affected_session: None,
                detection_method: DetectionMethod::ManualReport,
                confidence: None,
                evidence: vec![],
                tags: vec![],
                dedup_key: None,
            },
            now,
        );
        ev.push(EventKind::NotificationQueued {
            notification_id: format!("{}:opened:L1", inc.id()),
            channel: "hook".into(),
            event: "opened".into(),
            level: 1,
            severity: Severity::High,
            title: "t".into(),
            body: "b".into(),
        });
        (inc, ev)
    }

    on_both_backends! {
    async fn a_stale_escalation_decision_in_a_second_process_is_refused(db) {
        let a = open_store(db.url()).unwrap();
        let b = open_store(db.url()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let (inc, ev) = new_incident(now);
        let id = a.insert(inc, ev, "t".into(), now).await.unwrap().id().clone();
        // both processes saw level 1 and decided "1 → 2"
        let esc = |by: &'static str| -> ai_incident_mcp::store::Mutation {
            Box::new(move |i: &mut Incident| Ok(vec![i.escalate("timeout", by, now)?]))
        };
        let first = a
            .claim_escalation(&id, 1, "a".into(), now, esc("a"))
            .await
            .unwrap();
        assert_eq!(first.map(|i| i.escalation_level()), Some(2));
        let second = b
            .claim_escalation(&id, 1, "b".into(), now, esc("b"))
            .await
            .unwrap();
        assert!(second.is_none(), "the stale 1 → 2 decision escalated again");
        let inc = b.get(&id).await.unwrap().unwrap();
        assert_eq!(inc.escalation_level(), 2);
        assert_eq!(inc.escalation_history().len(), 1);
        assert_eq!(inc.escalation_history()[0].by, "a");
        // resolved incidents cannot be claimed
        b.update(
            &id,
            "t".into(),
            now,
            Box::new(move |i| Ok(vec![i.transition(Status::Resolved, now)?])),
        )
        .await
        .unwrap();
        assert!(
            a.claim_escalation(&id, 2, "a".into(), now, esc("a"))
                .await
                .unwrap()
                .is_none()
        );
    }
    }

    on_both_backends! {
    async fn an_outbox_row_is_leased_to_one_worker_and_reclaimed_after_the_lease(db) {
        let a = open_store(db.url()).unwrap();
        let b = open_store(db.url()).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let lease = std::time::Duration::from_secs(30);
        let (inc, ev) = new_incident(now);
        a.insert(inc, ev, "t".into(), now).await.unwrap();
        let got_a = a.claim_outbox("A".into(), now, lease, 10).await.unwrap();
        assert_eq!(got_a.len(), 1, "the row was stored with its event");
        assert!(
            b.claim_outbox("B".into(), now, lease, 10)
                .await
                .unwrap()
                .is_empty(),
            "leased row handed out twice"
        );
        // A dies without finishing: after the lease, B may take it over
        let later = now + chrono::Duration::seconds(31);
        let got_b = b.claim_outbox("B".into(), later, lease, 10).await.unwrap();
        assert_eq!(got_b.len(), 1);
        // A's late result is refused (it no longer holds the lease); B's is recorded once
        let sent = OutboxUpdate {
            status: OutboxStatus::Sent,
            attempts: 1,
            next_attempt_at: None,
            last_error: None,
        };
        let note = |s: &'static str| -> ai_incident_mcp::store::Mutation {
            Box::new(move |_| Ok(vec![EventKind::Note { text: s.into() }]))
        };
        assert!(
            a.finish_outbox(&got_a[0], "A".into(), sent.clone(), later, note("a"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            b.finish_outbox(&got_b[0], "B".into(), sent, later, note("b"))
                .await
                .unwrap()
                .is_some()
        );
        let far = later + chrono::Duration::hours(1);
        assert!(
            a.claim_outbox("A".into(), far, lease, 10)
                .await
                .unwrap()
                .is_empty(),
            "a sent row came back"
        );
        assert!(a.verify_audit_log(Default::default()).await.unwrap().ok);
    }
    }

    on_both_backends! {
    /// Issue #13: a repeat is an in-place `occurrences = occurrences + 1` plus evidence rows.
    /// Three store handles on one database (three processes) repeating one detection at once
    /// lose no increment and count none twice; the evidence stays bounded and the chain valid.
    async fn concurrent_repeats_from_three_stores_are_each_counted_once(db) {
        use ai_incident_mcp::store::RepeatDetection;
        let stores: Vec<_> = (0..3).map(|_| open_store(db.url()).unwrap()).collect();
        let now = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let new = move || {
            let n = NewIncident {
                incident_type: IncidentType::Security,
                category: None,
                severity: Severity::High,
                title: "repeated".into(),
                description: "d".into(),
                reporter: None,
                affected_system: None,
                affected_user: None,
                affected_session: None,
                detection_method: DetectionMethod::Screening,
                confidence: None,
                evidence: vec![],
                tags: vec![],
                dedup_key: Some("k".into()),
            };
            Incident::open(n, now)
        };
        let first = stores[0]
            .upsert_detection("k".into(), Box::new(new), RepeatDetection::default(), "t".into(), now)
            .await
            .unwrap();
        assert!(first.created);
        const EACH: u32 = 20;
        let mut tasks = Vec::new();
        for (h, s) in stores.iter().enumerate() {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..EACH {
                    let at = now + chrono::Duration::milliseconds(i64::from(i));
                    let r = RepeatDetection {
                        evidence: vec![Evidence::finding(format!("h{h}-{i}"), "jailbreak", "x")],
                        ..RepeatDetection::default()
                    };
                    let up = s
                        .upsert_detection("k".into(), Box::new(|| unreachable!("open")), r, "t".into(), at)
                        .await
                        .unwrap();
                    assert!(!up.created);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let id = first.incident.id().clone();
        let inc = stores[1].get(&id).await.unwrap().unwrap();
        assert_eq!(inc.occurrences(), 1 + 3 * EACH);
        assert_eq!(inc.evidence().len(), MAX_EVIDENCE);
        let mut counted: Vec<u32> = stores[2]
            .timeline(&id)
            .await
            .unwrap()
            .iter()
            .filter_map(|e| match serde_json::from_str(&e.data).unwrap() {
                EventKind::DetectedAgain { occurrences, .. } => Some(occurrences),
                _ => None,
            })
            .collect();
        counted.sort_unstable();
        assert_eq!(counted, (2..=1 + 3 * EACH).collect::<Vec<_>>(), "each repeat once, none lost");
        assert!(stores[0].verify_audit_log(Default::default()).await.unwrap().ok);
    }
    }
}

// ---------------------------------------------------------------------------------------------
// The `Store` port call by call, the same assertions on both backends.
// ---------------------------------------------------------------------------------------------

mod port {
    use ai_incident_mcp::app::open_store;
    use ai_incident_mcp::domain::incident::*;
    use ai_incident_mcp::store::{Activity, HeadCheck, ListQuery, StoreError};
    use chrono::{Duration, TimeZone, Utc};

    use crate::common::backends::on_both_backends;

    fn new(n: u32, key: Option<&str>, severity: Severity) -> NewIncident {
        NewIncident {
            incident_type: IncidentType::Security,
            category: None,
            severity,
            title: format!("t{n}"),
            description: format!("d{n}"),
            reporter: None,
            affected_system: None,
            affected_user: None,
            affected_session: None,
            detection_method: DetectionMethod::ManualReport,
            confidence: None,
            evidence: vec![],
            tags: vec![],
            dedup_key: key.map(String::from),
        }
    }

    on_both_backends! {
    async fn repeats_keep_exactly_the_evidence_the_domain_keeps(db) {
        // The store applies repeats itself (counters and evidence rows, not the body): after
        // every repeat the stored evidence must equal what the domain's own rule keeps (the
        // first half, then the newest), through the writer's cache and after a reopen.
        use ai_incident_mcp::store::RepeatDetection;
        let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        let mut n0 = new(0, Some("rot"), Severity::High);
        n0.evidence = vec![Evidence::finding("opening", "jailbreak", "x")];
        let (mut expect, _) = Incident::open(n0.clone(), t0);
        let mut s = open_store(db.url()).unwrap();
        let first = s
            .upsert_detection("rot".into(), Box::new(move || Incident::open(n0, t0)), RepeatDetection::default(), "t".into(), t0)
            .await
            .unwrap();
        assert!(first.created);
        let id = first.incident.id().clone();
        for i in 1..=40u32 {
            if i == 25 {
                // a fresh process: the next repeat reads the rows instead of the writer's cache
                s = open_store(db.url()).unwrap();
            }
            let at = t0 + Duration::seconds(i64::from(i));
            let evidence: Vec<Evidence> = (0..1 + i % 3)
                .map(|k| Evidence::finding(format!("r{i}-{k}"), "jailbreak", "x"))
                .collect();
            let r = RepeatDetection { evidence, ..RepeatDetection::default() };
            r.clone().apply(&mut expect, at);
            let up = s
                .upsert_detection("rot".into(), Box::new(|| unreachable!("open")), r, "t".into(), at)
                .await
                .unwrap();
            assert!(!up.created);
            let got = s.get(&id).await.unwrap().unwrap();
            assert_eq!(got.evidence(), expect.evidence(), "after repeat {i}");
            assert_eq!(got.occurrences(), expect.occurrences(), "after repeat {i}");
        }
        assert_eq!(expect.evidence().len(), MAX_EVIDENCE, "the rotation was exercised");
        assert!(s.verify_audit_log(Default::default()).await.unwrap().ok);
    }
    }

    on_both_backends! {
    /// Activity rows are queued, not waited for: a lone row lands on its own (seen from outside
    /// the store, as another process sees it), `activity_count` counts every row recorded
    /// before it, more rows than one batch all land, and closing the store writes what is
    /// still queued.
    async fn queued_activity_lands_is_counted_and_survives_close(db) {
        let s = open_store(db.url()).unwrap();
        let t0 = Utc::now();
        let row = |user: &str| crate::common::backends::allow_activity(user, t0);
        let count = |user: &'static str| {
            db.count(format!("SELECT COUNT(*) FROM screen_activity WHERE user_id = '{user}'"))
        };
        s.record_activity(row("lone")).await.unwrap();
        let waited = std::time::Instant::now();
        while count("lone").await == 0 {
            assert!(waited.elapsed() < std::time::Duration::from_secs(5), "the lone row never landed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        for _ in 0..1500 {
            s.record_activity(row("many")).await.unwrap();
        }
        let since = t0 - Duration::hours(1);
        assert_eq!(s.activity_count(Some("many".into()), None, false, since).await.unwrap(), 1500);
        assert_eq!(count("many").await, 1500);
        for _ in 0..7 {
            s.record_activity(row("last")).await.unwrap();
        }
        drop(s);
        assert_eq!(count("last").await, 7, "rows queued before the store closed");
    }
    }

    on_both_backends! {
    async fn the_store_port_behaves_the_same(db) {
        let s = open_store(db.url()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 26, 10, 0, 0).unwrap();
        assert_eq!(s.verified_head(None).await.unwrap(), HeadCheck::Empty);
        // 7 incidents, one second apart; odd ones high
        let mut ids = Vec::new();
        for n in 0..7u32 {
            let sev = if n % 2 == 1 { Severity::High } else { Severity::Low };
            let at = t0 + Duration::seconds(i64::from(n));
            let (inc, ev) = Incident::open(new(n, None, sev), at);
            ids.push(s.insert(inc, ev, "t".into(), at).await.unwrap().id().clone());
        }
        let got = s.get(&ids[3]).await.unwrap().unwrap();
        assert_eq!(got.title(), "t3");
        assert!(s.get(&IncidentId::generate(t0)).await.unwrap().is_none());
        // pages of 3, newest first, cursors continue exactly
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let p = s
                .list(ListQuery { limit: 3, cursor: cursor.clone(), ..Default::default() })
                .await
                .unwrap();
            seen.extend(p.items.iter().map(|i| i.id().clone()));
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let mut newest_first = ids.clone();
        newest_first.reverse();
        assert_eq!(seen, newest_first);
        let high = s
            .list(ListQuery { severity: Some(Severity::High), limit: 50, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(high.items.len(), 3);
        let since = s
            .list(ListQuery { since: Some(t0 + Duration::seconds(5)), limit: 50, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(since.items.len(), 2);
        // a refused mutation writes nothing
        let before = s.timeline(&ids[0]).await.unwrap().len();
        let r = s
            .update(&ids[0], "t".into(), t0, Box::new(move |i| Ok(vec![i.transition(Status::New, t0)?])))
            .await;
        assert!(matches!(r, Err(StoreError::Domain(_))), "{r:?}");
        assert_eq!(s.timeline(&ids[0]).await.unwrap().len(), before);
        let missing = IncidentId::generate(t0);
        assert!(matches!(
            s.update(&missing, "t".into(), t0, Box::new(|_| Ok(vec![]))).await,
            Err(StoreError::NotFound(_))
        ));
        // resolve one: open_only hides it
        s.update(&ids[0], "t".into(), t0, Box::new(move |i| Ok(vec![i.transition(Status::Resolved, t0)?])))
            .await
            .unwrap();
        let open = s.list(ListQuery { open_only: true, limit: 50, ..Default::default() }).await.unwrap();
        assert_eq!(open.items.len(), 6);
        // detections: one incident per open key, repeats counted
        for k in 0..3 {
            let at = t0 + Duration::minutes(k);
            let up = s
                .upsert_detection(
                    "key-1".into(),
                    Box::new(move || Incident::open(new(99, Some("key-1"), Severity::Medium), at)),
                    ai_incident_mcp::store::RepeatDetection::default(),
                    "screen".into(),
                    at,
                )
                .await
                .unwrap();
            assert_eq!(up.created, k == 0);
            assert_eq!(up.incident.occurrences(), u32::try_from(k + 1).unwrap());
        }
        let found = s.find_open_by_dedup("key-1").await.unwrap().unwrap();
        assert_eq!(found.occurrences(), 3);
        assert!(s.find_open_by_dedup("key-2").await.unwrap().is_none());
        // idempotency keys: same body → same incident, other body → refused
        let (inc, ev) = Incident::open(new(50, None, Severity::Low), t0);
        let first = s.insert_idempotent("k1".into(), "fp1".into(), inc, ev, "rest".into(), t0).await.unwrap();
        assert!(first.created);
        let (inc, ev) = Incident::open(new(51, None, Severity::Low), t0);
        let again = s.insert_idempotent("k1".into(), "fp1".into(), inc, ev, "rest".into(), t0).await.unwrap();
        assert!(!again.created);
        assert_eq!(again.incident.id(), first.incident.id());
        let (inc, ev) = Incident::open(new(52, None, Severity::Low), t0);
        assert!(matches!(
            s.insert_idempotent("k1".into(), "fp2".into(), inc, ev, "rest".into(), t0).await,
            Err(StoreError::Domain(DomainError::Invalid { .. }))
        ));
        // activity
        for v in ["flag", "allow", "block"] {
            s.record_activity(Activity {
                at: t0,
                user_id: Some("u1".into()),
                session_id: Some("s1".into()),
                source: "user".into(),
                verdict: v.into(),
                categories: vec!["jailbreak".into()],
                risk: 0.5,
                incident_id: None,
            })
            .await
            .unwrap();
        }
        let since = t0 - Duration::hours(1);
        assert_eq!(s.activity_count(Some("u1".into()), None, false, since).await.unwrap(), 3);
        assert_eq!(s.activity_count(Some("u1".into()), None, true, since).await.unwrap(), 2);
        assert_eq!(s.activity_count(None, Some("s1".into()), true, since).await.unwrap(), 2);
        assert_eq!(s.activity_count(None, None, true, since).await.unwrap(), 0);
        // containments follow their events
        let contain = |subject: &'static str| -> ai_incident_mcp::store::Mutation {
            Box::new(move |_| {
                Ok(vec![EventKind::Contained {
                    action: "block_user".into(),
                    subject_kind: "user".into(),
                    subject: subject.into(),
                    reason: "test".into(),
                }])
            })
        };
        s.update(&ids[1], "t".into(), t0, contain("mallory")).await.unwrap();
        let active = s.active_containments(Some("mallory".into()), None).await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].incident_id, ids[1]);
        assert_eq!(
            s.active_containments_where(Some("user".into()), None, Some(ids[1].clone())).await.unwrap().len(),
            1
        );
        s.update(&ids[1], "t".into(), t0, Box::new(|_| Ok(vec![EventKind::ContainmentLifted {
            action: "block_user".into(),
            subject_kind: "user".into(),
            subject: "mallory".into(),
            reason: "done".into(),
        }])))
        .await
        .unwrap();
        assert!(s.active_containments(Some("mallory".into()), None).await.unwrap().is_empty());
        assert!(s.active_containments_where(None, Some("mallory".into()), None).await.unwrap().is_empty());
        // the chain: verified in full and from a signed head
        let report = s.verify_audit_log(Default::default()).await.unwrap();
        assert!(report.ok, "{report:?}");
        let HeadCheck::Head { seq, hash } = s.verified_head(None).await.unwrap() else {
            panic!("no head");
        };
        assert_eq!(u64::try_from(seq).unwrap(), report.events_checked);
        s.update(&ids[2], "t".into(), t0, Box::new(|_| Ok(vec![EventKind::Note { text: "n".into() }])))
            .await
            .unwrap();
        match s.verified_head(Some((seq, hash))).await.unwrap() {
            HeadCheck::Head { seq: s2, .. } => assert_eq!(s2, seq + 1),
            other => panic!("{other:?}"),
        }
        let tl = s.timeline(&ids[2]).await.unwrap();
        assert!(tl.windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(tl.last().unwrap().seq, seq + 1);
    }
    }
}
