use super::*;
use crate::config::Config;
use crate::domain::incident::{DetectionMethod, NewIncident};
use crate::domain::incident::{Event, IncidentType, SeriousMarking, Severity, Status};
use crate::domain::postmortem::*;
use chrono::TimeZone;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()
}

fn open(sev: Severity) -> Incident {
    Incident::open(
        NewIncident {
            category: Some(crate::detect::Category::PromptInjection),
            severity: sev,
            affected_user: Some("u-1".into()),
            detection_method: DetectionMethod::Screening,
            confidence: Some(0.9),
            ..crate::domain::incident::sample_new_incident()
        },
        t0(),
    )
    .0
}

fn ev(seq: i64, at: DateTime<Utc>, actor: &str, k: EventKind) -> Event {
    Event {
        seq,
        incident_id: "INC-1".parse().unwrap(),
        at,
        actor: actor.into(),
        data: serde_json::to_string(&k).unwrap(),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

#[test]
fn classification_raises_prompt_injection_and_sets_start_level() {
    let cfg = Config::load(None).unwrap();
    let mut inc = open(Severity::Medium);
    let (e, start) = classify_event(&mut inc, cfg.rules());
    assert_eq!(
        inc.severity(),
        Severity::High,
        "prompt_injection is at least high"
    );
    assert_eq!(start, 1);
    match e {
        EventKind::Classified {
            reported_severity,
            response_sla_secs,
            overridden_by,
            auto_escalation,
            ..
        } => {
            assert_eq!(reported_severity, Severity::Medium);
            // prompt injection is "immediate" (§8.5.2.1): the 5 min of the policy's fastest
            // severity, stricter than high's 15 min
            assert_eq!(response_sla_secs, 5 * 60);
            assert_eq!(overridden_by.as_deref(), Some("prompt_injection"));
            assert!(auto_escalation);
        }
        other => panic!("{other:?}"),
    }
    let mut crit = open(Severity::Critical);
    assert_eq!(
        classify_event(&mut crit, cfg.rules()).1,
        2,
        "critical starts at level 2"
    );
}

#[test]
fn policy_uses_the_incident_severity_and_its_order() {
    assert!(Severity::Low < Severity::Medium);
    assert!(Severity::Medium < Severity::High);
    assert!(Severity::High < Severity::Critical);
}

#[test]
fn due_step_follows_the_level_clock_and_stops_on_ack() {
    let cfg = Config::load(None).unwrap();
    let mut inc = open(Severity::High);
    let m = |n| t0() + chrono::Duration::minutes(n);
    assert!(due_step(&inc, cfg.rules(), m(14)).is_none());
    let (from, _) = due_step(&inc, cfg.rules(), m(15)).expect("level 1 escalates after 15 min");
    assert_eq!(from, 1);
    inc.escalate("x", "escalation-sweep", m(15)).unwrap();
    // level 2 has 30 minutes from when it was entered
    assert!(due_step(&inc, cfg.rules(), m(44)).is_none());
    assert!(due_step(&inc, cfg.rules(), m(45)).is_some());
    inc.transition(Status::Acknowledged, m(40)).unwrap();
    assert!(
        due_step(&inc, cfg.rules(), m(500)).is_none(),
        "ack stops the clock"
    );
}

#[test]
fn approaching_regulatory_deadline_is_a_step() {
    let cfg = Config::load(None).unwrap();
    let mut inc = open(Severity::Low);
    inc.transition(Status::Acknowledged, t0()).unwrap();
    inc.mark_serious(
        SeriousMarking {
            category: "health_harm".into(),
            article_point: "3(49)(a)".into(),
            widespread: false,
            report_due_at: t0() + chrono::Duration::days(8),
            rule: "general".into(),
        },
        t0(),
    );
    assert!(due_step(&inc, cfg.rules(), t0() + chrono::Duration::days(5)).is_none());
    assert!(matches!(
        due_step(&inc, cfg.rules(), t0() + chrono::Duration::days(6)),
        Some((1, StepReason::Deadline(_)))
    ));
    inc.record_regulatory_report(t0()).unwrap();
    assert!(due_step(&inc, cfg.rules(), t0() + chrono::Duration::days(7)).is_none());
}

#[test]
fn metrics_and_lessons_come_from_the_timeline() {
    let inc = open(Severity::High);
    let s = |n| t0() + chrono::Duration::seconds(n);
    let tl = vec![
        ev(
            1,
            s(0),
            "screen_prompt",
            EventKind::Created {
                incident_type: IncidentType::Security,
                category: None,
                severity: Severity::High,
                title: "t".into(),
                detection_method: DetectionMethod::Screening,
                reporter: None,
            },
        ),
        ev(
            2,
            s(0),
            "screen_prompt",
            EventKind::Classified {
                severity: Severity::High,
                reported_severity: Severity::High,
                response_sla_secs: 900,
                sla_kind: None,
                urgency: "urgent".into(),
                channels: vec![],
                auto_escalation: true,
                start_level: 1,
                overridden_by: None,
            },
        ),
        ev(
            3,
            s(900),
            "escalation-sweep",
            EventKind::Escalated {
                from: 1,
                to: 2,
                reason: "r".into(),
                by: "escalation-sweep".into(),
            },
        ),
        ev(
            4,
            s(950),
            "notifier",
            EventKind::NotificationDelivery {
                notification_id: "n".into(),
                channel: "hook".into(),
                status: "retrying".into(),
                attempt: 1,
                detail: None,
                next_attempt_at: None,
            },
        ),
        ev(
            5,
            s(960),
            "notifier",
            EventKind::NotificationDelivery {
                notification_id: "n".into(),
                channel: "hook".into(),
                status: "sent".into(),
                attempt: 2,
                detail: None,
                next_attempt_at: None,
            },
        ),
        ev(
            6,
            s(1200),
            "alice",
            EventKind::Acknowledged { by: "alice".into() },
        ),
        ev(
            7,
            s(1300),
            "alice",
            EventKind::Contained {
                action: "block_user".into(),
                subject_kind: "user".into(),
                subject: "u-1".into(),
                reason: "r".into(),
            },
        ),
        ev(
            8,
            s(3600),
            "alice",
            EventKind::StatusChanged {
                from: Status::Contained,
                to: Status::Resolved,
            },
        ),
    ];
    let m = response_metrics(&inc, &tl, s(4000));
    assert_eq!(m.time_to_acknowledge_secs, Some(1200.0));
    assert_eq!(m.time_to_contain_secs, Some(1300.0));
    assert_eq!(m.time_to_resolve_secs, Some(3600.0));
    assert_eq!(m.sla_met, Some(false));
    assert_eq!((m.escalations, m.automatic_escalations), (1, 1));
    assert_eq!((m.notifications_sent, m.notification_retries), (1, 1));
    let d = build_document(&inc, &tl, s(4000));
    let lessons = d.lessons_learned.join("\n");
    assert!(lessons.contains("20m after detection"), "{lessons}");
    assert!(lessons.contains("missed by 5m"), "{lessons}");
    assert!(lessons.contains("Contained 21m 40s"), "{lessons}");
    assert!(lessons.contains("Escalated 1 time(s)"), "{lessons}");
    assert!(
        d.improvement_recommendations
            .iter()
            .any(|r| r.contains("Shorten the path"))
    );
    assert_eq!(d.timeline.len(), 8);
    let md = render_markdown(&d);
    assert!(
        md.contains("## Lessons learned") && md.contains("escalated level 1 → 2"),
        "{md}"
    );
}

#[test]
fn steps_move_forward_only_once_each() {
    let mut inc = open(Severity::High);
    assert!(inc.enter_step(WorkflowStep::Classification, t0()).is_some());
    assert!(inc.enter_step(WorkflowStep::Classification, t0()).is_none());
    assert!(inc.enter_step(WorkflowStep::Investigation, t0()).is_some());
    assert!(inc.enter_step(WorkflowStep::Containment, t0()).is_none());
    assert_eq!(inc.steps().len(), 3);
}
