//! What opening an incident entails and when it must move on: classification (severity override,
//! SLA, starting escalation level), the notifications an event queues, and the escalation step due
//! at a given instant. Pure: every decision takes the policies and `now` as parameters.
//!
//! May import: `crate::domain`, `crate::detect`.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::incident::{EventKind, Incident, MAX_LEVEL, WorkflowStep};
use crate::domain::policy::{self, ClassificationPolicy, EscalationPolicy, EscalationState};

/// The response policies a decision needs (borrowed from the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// Severity rules and type overrides.
    pub classification: &'a ClassificationPolicy,
    /// Escalation levels and their SLAs.
    pub escalation: &'a EscalationPolicy,
}

/// The stable id of a notification about `event` at `level` (the outbox's idempotency key).
///
/// ```
/// use ai_incident_mcp::domain::opening::notification_id;
/// assert_eq!(notification_id("INC-7", "escalated", 3), "INC-7:escalated:L3");
/// ```
pub fn notification_id(incident_id: &str, event: &str, level: u8) -> String {
    format!("{incident_id}:{event}:L{level}")
}

/// The kinds a classification override may name for this incident: its attack category
/// (`prompt_injection`, `data_exfiltration`, …) first, then its type (`security`, …).
fn override_kind(inc: &Incident, policy: &policy::ClassificationPolicy) -> String {
    let cands = [
        inc.kind().map(|k| k.as_str().to_string()),
        inc.category().map(|c| c.as_str().to_string()),
        Some(inc.incident_type().as_str().to_string()),
    ];
    cands
        .iter()
        .flatten()
        .find(|k| {
            policy
                .overrides
                .iter()
                .any(|o| o.kind.eq_ignore_ascii_case(k))
        })
        .or(cands.iter().flatten().next())
        .cloned()
        .unwrap_or_default()
}

/// The acknowledge-by SLA of `inc`: the stricter of its severity's and its kind's response time.
pub fn response_sla(cfg: Rules<'_>, inc: &Incident) -> Duration {
    cfg.classification
        .response_time_for(inc.severity(), inc.kind().map(|k| k.as_str()))
}

/// A duration in whole seconds, human-readable (`5m`, `1h 30m`).
pub fn fmt_dur(d: Duration) -> String {
    humantime_serde::re::humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
}

/// What opening an incident entails: classification (severity, SLA, starting escalation
/// level), the classification step, and notifications to the severity's and the level's
/// channels (except `exclude_channel`).
pub fn open_events(
    cfg: Rules<'_>,
    inc: &mut Incident,
    events: &mut Vec<EventKind>,
    now: DateTime<Utc>,
    exclude_channel: Option<&str>,
) {
    let (ev, start) = classify_event(inc, cfg);
    events.push(ev);
    inc.start_at_level(start);
    events.extend(inc.enter_step(WorkflowStep::Classification, now));
    let mut channels = cfg.classification.rule(inc.severity()).channels.clone();
    if let Some(l) = cfg.escalation.level(inc.escalation_level()) {
        channels.extend(l.channels.iter().cloned());
    }
    channels.retain(|c| Some(c.as_str()) != exclude_channel);
    events.extend(queue_notifications(cfg, inc, "opened", &channels, now));
}

/// Queues the notifications of `event` (see [`notifications_for`]) and, when any is queued, enters
/// the `notification` workflow step: the step is the decision to notify, recorded in the same
/// transaction; delivery outcomes are events of their own.
pub fn queue_notifications(
    cfg: Rules<'_>,
    inc: &mut Incident,
    event: &str,
    channels: &[String],
    now: DateTime<Utc>,
) -> Vec<EventKind> {
    let mut ev = notifications_for(cfg, inc, event, channels, now);
    if !ev.is_empty() {
        ev.extend(inc.enter_step(WorkflowStep::Notification, now));
    }
    ev
}

/// The `NotificationQueued` events telling `channels` (each once) that `event` happened to `inc`.
pub fn notifications_for(
    cfg: Rules<'_>,
    inc: &Incident,
    event: &str,
    channels: &[String],
    now: DateTime<Utc>,
) -> Vec<EventKind> {
    let mut id = notification_id(inc.id().as_str(), event, inc.escalation_level());
    if !matches!(event, "opened" | "escalated" | "acknowledged") {
        id.push_str(&format!(":{}", now.timestamp_micros()));
    }
    let sla = response_sla(cfg, inc);
    let body = format!(
        "Incident {id} {event}.\nTitle: {title}\nType: {ty}{cat}\nSeverity: {sev}\nStatus: {status}\n\
         Escalation level: {lvl} ({lname})\nDetected: {det}\nAcknowledge within: {sla}\nDetails: incident://{id}",
        id = inc.id(),
        title = inc.title(),
        ty = inc.incident_type(),
        cat = inc
            .category()
            .map(|c| format!(" / {}", c.as_str()))
            .unwrap_or_default(),
        sev = inc.severity(),
        status = inc.status(),
        lvl = inc.escalation_level(),
        lname = cfg.escalation.level_name(inc.escalation_level()),
        det = inc.created_at().to_rfc3339(),
        sla = fmt_dur(sla),
    );
    // No severity here: every channel shows it in its own way (Slack and e-mail prefix it).
    let title = format!("{} {}: {}", inc.id(), event, inc.title());
    let mut seen = BTreeSet::new();
    channels
        .iter()
        .filter(|c| seen.insert(c.as_str()))
        .map(|c| EventKind::NotificationQueued {
            notification_id: id.clone(),
            channel: c.clone(),
            event: event.to_string(),
            level: inc.escalation_level(),
            severity: inc.severity(),
            title: title.clone(),
            body: body.clone(),
        })
        .collect()
}

/// The `Classified` event for `inc` under `cfg` (applying the severity override to `inc`), and the
/// start level its severity requires.
pub fn classify_event(inc: &mut Incident, cfg: Rules<'_>) -> (EventKind, u8) {
    let kind = override_kind(inc, cfg.classification);
    let response_kind = inc.kind().map_or(kind.clone(), |k| k.as_str().to_string());
    let c = policy::classify_with(inc.severity(), &kind, &response_kind, cfg.classification);
    inc.apply_classified_severity(c.severity);
    let start = policy::initial_level(c.severity, cfg.escalation);
    (
        EventKind::Classified {
            severity: c.severity,
            reported_severity: c.reported_severity,
            response_sla_secs: c.response_sla.as_secs(),
            urgency: serde_name(&c.urgency),
            channels: c.channels,
            auto_escalation: c.auto_escalation,
            start_level: start,
            overridden_by: c.overridden_by,
            sla_kind: c.sla_from_kind.then_some(response_kind),
        },
        start,
    )
}

/// The serde name of a unit enum variant (`""` for anything else).
pub fn serde_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Why an escalation step is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepReason {
    /// The level's acknowledge-by time elapsed (the text says which).
    Timeout(String),
    /// A serious incident's reporting deadline is near.
    Deadline(String),
}

/// The escalation step due for `inc` at `now`, if any: the policy's timeout / severity-floor
/// decision, or a serious incident whose reporting deadline is within its last quarter.
pub fn due_step(inc: &Incident, cfg: Rules<'_>, now: DateTime<Utc>) -> Option<(u8, StepReason)> {
    let sev = inc.severity();
    let state = EscalationState {
        level: inc.escalation_level(),
        level_entered_at: inc.level_entered_at(),
        acknowledged: inc.acknowledged_at().is_some(),
        closed: inc.status().is_terminal(),
        severity: sev,
        auto_escalation: cfg.classification.rule(sev).auto_escalation,
    };
    if let Some(step) = policy::escalation_due(&state, cfg.escalation, now)
        && step.trigger == policy::EscalationTrigger::Timeout
    {
        return Some((step.from, StepReason::Timeout(step.reason)));
    }
    let s = inc.serious()?;
    if s.reported_at.is_some() || s.deadline_escalated || inc.escalation_level() >= MAX_LEVEL {
        return None;
    }
    let window = s.report_due_at - s.aware_at;
    if now >= s.report_due_at - window / 4 {
        return Some((
            inc.escalation_level(),
            StepReason::Deadline(format!(
                "regulatory report ({} {}) due at {} is approaching",
                s.category,
                s.article_point,
                s.report_due_at.to_rfc3339()
            )),
        ));
    }
    None
}

#[cfg(test)]
#[path = "opening_tests.rs"]
mod tests;
