use super::*;
use crate::config::Config;
use chrono::TimeZone;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

fn mins(m: i64) -> TimeDelta {
    TimeDelta::minutes(m)
}

fn cfg() -> Config {
    Config::load(None).unwrap()
}

#[test]
fn severity_orders_low_to_critical_and_parses() {
    assert!(
        Severity::Low < Severity::Medium
            && Severity::Medium < Severity::High
            && Severity::High < Severity::Critical
    );
    for &s in Severity::ALL {
        assert_eq!(s.as_str().parse::<Severity>().unwrap(), s);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
    }
    assert!("urgent".parse::<Severity>().is_err());
}

#[test]
fn classify_table() {
    let p = cfg().classification;
    // (reported, kind, expected severity, expected sla minutes, auto, overridden)
    let cases = [
        (
            Severity::Critical,
            "other",
            Severity::Critical,
            5,
            true,
            false,
        ),
        (Severity::High, "other", Severity::High, 15, true, false),
        (
            Severity::Medium,
            "other",
            Severity::Medium,
            60,
            false,
            false,
        ),
        (Severity::Low, "other", Severity::Low, 240, false, false),
        (
            Severity::Low,
            "data_breach",
            Severity::Critical,
            5,
            true,
            true,
        ),
        (
            Severity::Medium,
            "DATA_BREACH",
            Severity::Critical,
            5,
            true,
            true,
        ),
        // raised to high by the override; the kind's "immediate" response time (AIMS-IRP-001
        // §8.5.2.1) is stricter than high's 15 min
        (
            Severity::Low,
            "prompt_injection",
            Severity::High,
            5,
            true,
            true,
        ),
        // per-kind response times: the stricter of kind and severity wins
        (
            Severity::Medium,
            "llm_api_failure",
            Severity::Medium,
            5,
            false,
            false,
        ),
        (
            Severity::Medium,
            "data_inconsistency",
            Severity::Medium,
            30,
            false,
            false,
        ),
        (
            Severity::High,
            "data_inconsistency",
            Severity::High,
            15,
            true,
            false,
        ),
        // "at least high" never lowers a critical prompt injection (the spec's code set it to high).
        (
            Severity::Critical,
            "prompt_injection",
            Severity::Critical,
            5,
            true,
            false,
        ),
    ];
    for (reported, kind, sev, sla, auto, overridden) in cases {
        let c = classify(reported, kind, &p);
        assert_eq!(c.severity, sev, "{reported} {kind}");
        assert_eq!(c.reported_severity, reported);
        assert_eq!(
            c.response_sla,
            Duration::from_secs(sla * 60),
            "{reported} {kind}"
        );
        assert_eq!(c.auto_escalation, auto, "{reported} {kind}");
        assert_eq!(c.overridden_by.is_some(), overridden, "{reported} {kind}");
        assert_eq!(c.channels, vec!["log".to_owned()]);
    }
    assert_eq!(
        classify(Severity::Critical, "x", &p).urgency,
        Urgency::Immediate
    );
    assert_eq!(classify(Severity::Low, "x", &p).urgency, Urgency::Routine);
}

#[test]
fn forced_override_can_lower() {
    let mut p = cfg().classification;
    p.overrides.insert(
        0,
        TypeOverride {
            kind: "performance".into(),
            severity: Some(Severity::Medium),
            at_least: None,
        },
    );
    assert_eq!(
        classify(Severity::Critical, "performance", &p).severity,
        Severity::Medium
    );
}

#[test]
fn sla_breach_uses_injected_now() {
    let sla = Duration::from_secs(300);
    assert!(!sla_breached(t0(), None, sla, t0() + mins(5)));
    assert!(sla_breached(t0(), None, sla, t0() + mins(6)));
    assert!(!sla_breached(
        t0(),
        Some(t0() + mins(4)),
        sla,
        t0() + mins(600)
    ));
    assert!(sla_breached(
        t0(),
        Some(t0() + mins(7)),
        sla,
        t0() + mins(7)
    ));
}

#[test]
fn initial_levels() {
    let p = cfg().escalation;
    assert_eq!(initial_level(Severity::Critical, &p), 2);
    assert_eq!(initial_level(Severity::High, &p), 1);
    assert_eq!(initial_level(Severity::Medium, &p), 1);
    assert_eq!(initial_level(Severity::Low, &p), 1);
    let mut p2 = p.clone();
    p2.severity.low.start_level = 9;
    assert_eq!(initial_level(Severity::Low, &p2), 4, "clamped to 4");
}

/// A freshly opened incident's state: at its severity's start level, unacknowledged.
fn opened(severity: Severity, p: &EscalationPolicy) -> EscalationState {
    state(initial_level(severity, p), severity)
}

/// What the sweep does with a due step: the incident moves to `step.to`, entered at `at`.
fn apply(s: &mut EscalationState, step: &EscalationStep, at: DateTime<Utc>) {
    s.level = step.to;
    s.level_entered_at = at;
}

/// Every step due at `now`, each applied at its due time (catch-up after downtime).
fn all_due(s: &EscalationState, p: &EscalationPolicy, now: DateTime<Utc>) -> Vec<EscalationStep> {
    let mut s = s.clone();
    let mut steps = Vec::new();
    while let Some(step) = escalation_due(&s, p, now) {
        apply(&mut s, &step, step.due_at);
        steps.push(step);
        assert!(steps.len() <= 4, "never more than the levels");
    }
    steps
}

fn state(level: u8, severity: Severity) -> EscalationState {
    EscalationState {
        level,
        level_entered_at: t0(),
        acknowledged: false,
        closed: false,
        severity,
        auto_escalation: true,
    }
}

/// Guards the spec defect "level 1 can never auto-escalate".
#[test]
fn level_one_auto_escalates_after_its_window() {
    let p = cfg().escalation;
    let s = state(1, Severity::High);
    assert_eq!(escalation_due(&s, &p, t0() + mins(14)), None);
    let step = escalation_due(&s, &p, t0() + mins(15)).unwrap();
    assert_eq!((step.from, step.to), (1, 2));
    assert_eq!(step.due_at, t0() + mins(15));
    assert_eq!(step.trigger, EscalationTrigger::Timeout);
    assert!(step.reason.contains("15m"), "{}", step.reason);
    assert!(step.reason.contains("Technical support"), "{}", step.reason);
}

#[test]
fn escalation_table_with_fake_clock() {
    let p = cfg().escalation;
    struct Case {
        name: &'static str,
        state: EscalationState,
        at_minutes: i64,
        expect: Option<(u8, u8)>,
    }
    let ack = |mut s: EscalationState| {
        s.acknowledged = true;
        s
    };
    let closed = |mut s: EscalationState| {
        s.closed = true;
        s
    };
    let manual_only = |mut s: EscalationState| {
        s.auto_escalation = false;
        s
    };
    let cases = [
        Case {
            name: "high L1 before window",
            state: state(1, Severity::High),
            at_minutes: 14,
            expect: None,
        },
        Case {
            name: "high L1 at window",
            state: state(1, Severity::High),
            at_minutes: 15,
            expect: Some((1, 2)),
        },
        Case {
            name: "high L2 at 29m",
            state: state(2, Severity::High),
            at_minutes: 29,
            expect: None,
        },
        Case {
            name: "high L2 at 30m",
            state: state(2, Severity::High),
            at_minutes: 30,
            expect: Some((2, 3)),
        },
        Case {
            name: "high L3 at 60m",
            state: state(3, Severity::High),
            at_minutes: 60,
            expect: Some((3, 4)),
        },
        Case {
            name: "L4 never moves",
            state: state(4, Severity::Critical),
            at_minutes: 100_000,
            expect: None,
        },
        // critical: time_factor 0.5 → L2 window 15m
        Case {
            name: "critical L2 at 14m",
            state: state(2, Severity::Critical),
            at_minutes: 14,
            expect: None,
        },
        Case {
            name: "critical L2 at 15m",
            state: state(2, Severity::Critical),
            at_minutes: 15,
            expect: Some((2, 3)),
        },
        // critical sitting at L1 (e.g. severity raised later) → floor to L2 at once, even when acknowledged
        Case {
            name: "critical below floor",
            state: state(1, Severity::Critical),
            at_minutes: 0,
            expect: Some((1, 2)),
        },
        Case {
            name: "critical below floor, acked",
            state: ack(state(1, Severity::Critical)),
            at_minutes: 0,
            expect: Some((1, 2)),
        },
        Case {
            name: "acknowledged stops clock",
            state: ack(state(1, Severity::High)),
            at_minutes: 1000,
            expect: None,
        },
        Case {
            name: "closed stops everything",
            state: closed(state(1, Severity::Critical)),
            at_minutes: 1000,
            expect: None,
        },
        Case {
            name: "auto off (medium default)",
            state: manual_only(state(1, Severity::Medium)),
            at_minutes: 1000,
            expect: None,
        },
        Case {
            name: "medium with auto on",
            state: state(1, Severity::Medium),
            at_minutes: 60,
            expect: Some((1, 2)),
        },
    ];
    for c in cases {
        let got = escalation_due(&c.state, &p, t0() + mins(c.at_minutes)).map(|s| (s.from, s.to));
        assert_eq!(got, c.expect, "{}", c.name);
    }
}

#[test]
fn walking_the_clock_climbs_to_four_and_stops() {
    let p = cfg().escalation;
    let mut s = opened(Severity::High, &p);
    let mut history: Vec<(u8, u8, DateTime<Utc>)> = Vec::new();
    let mut now = t0();
    for _ in 0..(24 * 60) {
        now += mins(1);
        if let Some(step) = escalation_due(&s, &p, now) {
            history.push((step.from, step.to, now));
            apply(&mut s, &step, now);
        }
    }
    assert_eq!(s.level, 4);
    let path: Vec<(u8, u8)> = history.iter().map(|r| (r.0, r.1)).collect();
    assert_eq!(path, vec![(1, 2), (2, 3), (3, 4)]);
    let at: Vec<DateTime<Utc>> = history.iter().map(|r| r.2).collect();
    assert_eq!(at, vec![t0() + mins(15), t0() + mins(45), t0() + mins(105)]);
}

#[test]
fn acknowledgement_mid_way_stops_escalation() {
    let p = cfg().escalation;
    let mut s = opened(Severity::High, &p);
    let step = escalation_due(&s, &p, t0() + mins(15)).unwrap();
    apply(&mut s, &step, t0() + mins(15));
    s.acknowledged = true;
    assert_eq!(next_deadline(&s, &p), None);
    assert_eq!(escalation_due(&s, &p, t0() + mins(10_000)), None);
}

#[test]
fn catch_up_after_downtime_chains_due_times() {
    let p = cfg().escalation;
    let s = opened(Severity::High, &p);
    let steps = all_due(&s, &p, t0() + mins(24 * 60));
    let got: Vec<(u8, u8, DateTime<Utc>)> =
        steps.iter().map(|s| (s.from, s.to, s.due_at)).collect();
    assert_eq!(
        got,
        vec![
            (1, 2, t0() + mins(15)),
            (2, 3, t0() + mins(45)),
            (3, 4, t0() + mins(105))
        ]
    );
    assert!(all_due(&s, &p, t0()).is_empty());
}

#[test]
fn critical_starts_at_two_and_moves_twice_as_fast() {
    let p = cfg().escalation;
    let s = opened(Severity::Critical, &p);
    assert_eq!(s.level, 2);
    assert_eq!(next_deadline(&s, &p), Some(t0() + mins(15)));
    let steps = all_due(&s, &p, t0() + mins(1000));
    let got: Vec<(u8, DateTime<Utc>)> = steps.iter().map(|s| (s.to, s.due_at)).collect();
    assert_eq!(got, vec![(3, t0() + mins(15)), (4, t0() + mins(45))]);
}

#[test]
fn regulatory_deadlines_table() {
    let p = cfg().regulatory;
    let d = TimeDelta::days;
    let cases = [
        (SeriousCategory::Death, false, d(10), DeadlineRule::Death),
        (
            SeriousCategory::HealthHarm,
            false,
            d(15),
            DeadlineRule::General,
        ),
        (
            SeriousCategory::CriticalInfrastructure,
            false,
            d(2),
            DeadlineRule::CriticalInfrastructure,
        ),
        (
            SeriousCategory::FundamentalRights,
            false,
            d(15),
            DeadlineRule::General,
        ),
        (
            SeriousCategory::PropertyOrEnvironment,
            false,
            d(15),
            DeadlineRule::General,
        ),
        (
            SeriousCategory::FundamentalRights,
            true,
            d(2),
            DeadlineRule::Widespread,
        ),
        (SeriousCategory::Death, true, d(2), DeadlineRule::Widespread),
    ];
    for (cat, widespread, within, rule) in cases {
        assert_eq!(
            report_due_at(cat, widespread, t0(), &p),
            t0() + within,
            "{cat:?} {widespread}"
        );
        assert_eq!(
            report_window(cat, widespread, &p).1,
            rule,
            "{cat:?} {widespread}"
        );
    }
    assert_eq!(
        SeriousCategory::PropertyOrEnvironment.article_point(),
        "3(49)(d)"
    );
}

#[test]
fn add_duration_saturates_instead_of_panicking() {
    assert_eq!(add_duration(t0(), Duration::MAX), DateTime::<Utc>::MAX_UTC);
}
