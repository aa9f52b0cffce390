//! The post-incident document, built from an incident and its real timeline: response
//! measurements (MTTA/MTTR inputs, SLA met, escalations, deliveries), the timeline summary,
//! root-cause analysis, lessons learned and the Markdown rendering. Pure functions.
//!
//! May import: `crate::domain`, `crate::detect`.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::incident::{
    self, Event, EventKind, Incident, IncidentType, SeriousIncident, Status,
};
use crate::domain::opening::fmt_dur;
use crate::domain::policy;

/// Response measurements computed from an incident's timeline.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ResponseMetrics {
    /// Detection → first acknowledgement, seconds (MTTA contribution).
    pub time_to_acknowledge_secs: Option<f64>,
    /// Detection → last resolution, seconds (MTTR contribution).
    pub time_to_resolve_secs: Option<f64>,
    /// Detection → first containment, seconds.
    pub time_to_contain_secs: Option<f64>,
    /// The acknowledge-by SLA recorded at classification, seconds.
    pub response_sla_secs: Option<u64>,
    /// Acknowledged within the SLA (None while unacknowledged and not yet late).
    pub sla_met: Option<bool>,
    /// Escalation steps taken.
    pub escalations: u32,
    /// Of which automatic (the escalation sweep).
    pub automatic_escalations: u32,
    /// Highest level reached.
    pub max_level: u8,
    /// Notification deliveries that succeeded.
    pub notifications_sent: u32,
    /// Delivery attempts that failed and were retried.
    pub notification_retries: u32,
    /// Notifications given up on.
    pub notifications_failed: u32,
}

fn secs(a: DateTime<Utc>, b: DateTime<Utc>) -> Option<f64> {
    let d = (b - a).num_milliseconds();
    (d >= 0).then(|| d as f64 / 1000.0)
}

/// Measures an incident's response from its timeline (not from its mutable fields): the first
/// `created` event is detection, the first `acknowledged` event (or status change to acknowledged)
/// is acknowledgement, the last change to `resolved` is resolution.
pub fn response_metrics(inc: &Incident, timeline: &[Event], now: DateTime<Utc>) -> ResponseMetrics {
    let mut m = ResponseMetrics {
        max_level: inc.escalation_level(),
        ..Default::default()
    };
    let mut detected = None;
    let (mut ack, mut resolved, mut contained) = (None, None, None);
    for e in timeline {
        let Ok(k) = serde_json::from_str::<EventKind>(&e.data) else {
            continue;
        };
        match k {
            EventKind::Created { .. } => {
                detected.get_or_insert(e.at);
            }
            EventKind::Classified {
                response_sla_secs, ..
            } => m.response_sla_secs = Some(response_sla_secs),
            EventKind::Acknowledged { .. }
            | EventKind::StatusChanged {
                to: Status::Acknowledged,
                ..
            } => {
                ack.get_or_insert(e.at);
            }
            EventKind::StatusChanged {
                to: Status::Resolved,
                ..
            } => resolved = Some(e.at),
            EventKind::StatusChanged {
                from: Status::Resolved,
                to: Status::Investigating,
            } => resolved = None,
            EventKind::Contained { .. }
            | EventKind::StatusChanged {
                to: Status::Contained,
                ..
            } => {
                contained.get_or_insert(e.at);
            }
            EventKind::Escalated { to, by, .. } => {
                m.escalations += 1;
                if by == "escalation-sweep" {
                    m.automatic_escalations += 1;
                }
                m.max_level = m.max_level.max(to);
            }
            EventKind::NotificationDelivery { status, .. } => match status.as_str() {
                "sent" => m.notifications_sent += 1,
                "retrying" => m.notification_retries += 1,
                _ => m.notifications_failed += 1,
            },
            _ => {}
        }
    }
    let detected = detected.unwrap_or(inc.created_at());
    m.time_to_acknowledge_secs = ack.and_then(|a| secs(detected, a));
    m.time_to_resolve_secs = resolved.and_then(|r| secs(detected, r));
    m.time_to_contain_secs = contained.and_then(|c| secs(detected, c));
    // Met when acknowledged within the SLA; missed when acknowledged late or still
    // unacknowledged past it; unknown while the SLA is still running.
    m.sla_met = m.response_sla_secs.and_then(|sla| {
        let ack = ack.filter(|a| *a >= detected);
        let breached = policy::sla_breached(detected, ack, Duration::from_secs(sla), now);
        match ack {
            Some(_) => Some(!breached),
            None => breached.then_some(false),
        }
    });
    m
}

/// One timeline line of the document.
#[derive(Debug, Clone, Serialize)]
pub struct DocTimelineEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    /// Event kind (`created`, `escalated`, …).
    pub kind: String,
    /// One-line human summary.
    pub summary: String,
}

/// An action taken during the response (containment, escalation, acknowledgement, resolution, …).
#[derive(Debug, Clone, Serialize)]
pub struct ResponseAction {
    pub at: DateTime<Utc>,
    pub by: String,
    pub action: String,
}

/// Root-cause analysis section.
#[derive(Debug, Clone, Serialize)]
pub struct RootCauseAnalysis {
    /// The recorded root cause, or "not recorded".
    pub primary_cause: String,
    /// How it was resolved.
    pub resolution: Option<String>,
    /// Corrective actions recorded.
    pub corrective_actions: Vec<String>,
    /// Detection evidence (rule ids), when the incident came from screening.
    pub evidence_rules: Vec<String>,
    /// How the incident was detected and with what confidence.
    pub detection: String,
}

/// The post-incident document (AIMS-IRP-001 §8.5.6 template, filled from the real timeline).
#[derive(Debug, Clone, Serialize)]
pub struct PostIncidentDocument {
    pub incident_id: String,
    pub incident_type: String,
    pub category: Option<String>,
    pub severity: String,
    pub title: String,
    pub status: String,
    pub detection_time: DateTime<Utc>,
    pub acknowledgement_time: Option<DateTime<Utc>>,
    pub resolution_time: Option<DateTime<Utc>>,
    pub documented_at: DateTime<Utc>,
    pub description: String,
    pub owner: Option<String>,
    /// OWASP LLM Top 10 / MITRE ATLAS tags.
    pub tags: Vec<String>,
    pub timeline: Vec<DocTimelineEntry>,
    pub response_actions: Vec<ResponseAction>,
    pub root_cause_analysis: RootCauseAnalysis,
    pub metrics: ResponseMetrics,
    pub lessons_learned: Vec<String>,
    pub improvement_recommendations: Vec<String>,
    /// EU AI Act serious-incident block, when marked serious.
    pub regulatory: Option<RegulatoryBlock>,
}

/// The EU AI Act serious-incident block of a post-incident document: the incident's
/// [`SeriousIncident`] record. Fields are in alphabetical order on purpose: documents written
/// before this type existed carried the block as a JSON object with sorted keys, and the
/// document's JSON stays byte-for-byte the same.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegulatoryBlock {
    /// The Art. 3(49) point, e.g. `3(49)(a)`.
    pub article_point: String,
    /// When the provider became aware.
    pub aware_at: DateTime<Utc>,
    /// Category name (`death`, `health_harm`, …).
    pub category: String,
    /// True once an approaching deadline has escalated the incident.
    pub deadline_escalated: bool,
    /// True once the passed deadline was recorded as an `overdue` event.
    pub overdue_recorded: bool,
    /// Latest instant to report to the market surveillance authority.
    pub report_due_at: DateTime<Utc>,
    /// When the report was filed, if it was.
    pub reported_at: Option<DateTime<Utc>>,
    /// The deadline rule that applied.
    pub rule: String,
    /// Widespread infringement (Art. 3(61)).
    pub widespread: bool,
}

impl From<&SeriousIncident> for RegulatoryBlock {
    fn from(s: &SeriousIncident) -> Self {
        RegulatoryBlock {
            article_point: s.article_point.clone(),
            aware_at: s.aware_at,
            category: s.category.clone(),
            deadline_escalated: s.deadline_escalated,
            overdue_recorded: s.overdue_recorded,
            report_due_at: s.report_due_at,
            reported_at: s.reported_at,
            rule: s.rule.clone(),
            widespread: s.widespread,
        }
    }
}

fn summarize(k: &EventKind) -> String {
    match k {
        EventKind::Created {
            severity, title, ..
        } => format!("opened ({severity}): {title}"),
        EventKind::StatusChanged { from, to } => format!("status {from} → {to}"),
        EventKind::StepEntered { step } => format!("workflow step {step} entered"),
        EventKind::Escalated {
            from, to, reason, ..
        } => format!("escalated level {from} → {to}: {reason}"),
        EventKind::DetectedAgain { occurrences, .. } => {
            format!("detected again (occurrence {occurrences})")
        }
        EventKind::Note { text } => format!("note: {}", incident::truncate_chars(text, 200)),
        EventKind::SeverityChanged { from, to, reason } => {
            format!(
                "severity {from} → {to}: {}",
                incident::truncate_chars(reason, 200)
            )
        }
        EventKind::Recovered { detail } => {
            format!("recovered: {}", incident::truncate_chars(detail, 200))
        }
        EventKind::Classified {
            severity,
            response_sla_secs,
            start_level,
            overridden_by,
            ..
        } => format!(
            "classified {severity}, acknowledge within {}, start level {start_level}{}",
            fmt_dur(Duration::from_secs(*response_sla_secs)),
            overridden_by
                .as_ref()
                .map(|o| format!(" (override {o})"))
                .unwrap_or_default()
        ),
        EventKind::Acknowledged { by } => format!("acknowledged by {by}"),
        EventKind::FieldUpdated { field, value } => {
            format!("{field} set: {}", incident::truncate_chars(value, 200))
        }
        EventKind::Resolved { resolution, .. } => {
            format!("resolved: {}", incident::truncate_chars(resolution, 200))
        }
        EventKind::NotificationQueued {
            channel,
            event,
            level,
            ..
        } => format!("notification '{event}' (level {level}) queued for channel {channel}"),
        EventKind::NotificationDelivery {
            channel,
            status,
            attempt,
            notification_id,
            ..
        } => format!("notification {notification_id} to {channel}: {status} (attempt {attempt})"),
        EventKind::Contained {
            action,
            subject_kind,
            subject,
            ..
        } => format!("contained: {action} ({subject_kind} {subject})"),
        EventKind::ContainmentLifted {
            subject_kind,
            subject,
            ..
        } => format!("containment lifted ({subject_kind} {subject})"),
        EventKind::Overdue {
            category,
            article_point,
            report_due_at,
        } => format!(
            "regulatory report overdue ({category}, Art. {article_point}): was due {}",
            report_due_at.to_rfc3339()
        ),
        EventKind::MarkedSerious {
            category,
            article_point,
            report_due_at,
            ..
        } => format!(
            "marked serious ({category}, Art. {article_point}); report due {}",
            report_due_at.to_rfc3339()
        ),
        EventKind::Documented { json_path, .. } => format!("documented in {json_path}"),
    }
}

fn dur_text(secs: f64) -> String {
    fmt_dur(Duration::from_secs_f64(secs.max(0.0)))
}

/// Builds the post-incident document from the incident and its real timeline: lessons learned
/// and recommendations are derived from the measured response (acknowledgement vs SLA,
/// escalations needed, containment time, delivery failures), not canned text.
pub fn build_document(
    inc: &Incident,
    timeline: &[Event],
    now: DateTime<Utc>,
) -> PostIncidentDocument {
    let m = response_metrics(inc, timeline, now);
    let mut entries = Vec::new();
    let mut actions = Vec::new();
    let mut failed_channels = BTreeSet::new();
    for e in timeline {
        let Ok(k) = serde_json::from_str::<EventKind>(&e.data) else {
            continue;
        };
        if let EventKind::NotificationDelivery {
            status, channel, ..
        } = &k
            && status == "failed"
        {
            failed_channels.insert(channel.clone());
        }
        let summary = summarize(&k);
        if matches!(
            k,
            EventKind::Acknowledged { .. }
                | EventKind::Escalated { .. }
                | EventKind::Contained { .. }
                | EventKind::ContainmentLifted { .. }
                | EventKind::Resolved { .. }
                | EventKind::FieldUpdated { .. }
                | EventKind::MarkedSerious { .. }
        ) {
            actions.push(ResponseAction {
                at: e.at,
                by: e.actor.clone(),
                action: summary.clone(),
            });
        }
        entries.push(DocTimelineEntry {
            at: e.at,
            actor: e.actor.clone(),
            kind: k.name().to_string(),
            summary,
        });
    }

    let mut lessons = Vec::new();
    let mut recs = Vec::new();
    let sla_text = m
        .response_sla_secs
        .map(|s| fmt_dur(Duration::from_secs(s)))
        .unwrap_or_else(|| "(no SLA recorded)".into());
    match (m.time_to_acknowledge_secs, m.response_sla_secs) {
        (Some(t), Some(sla)) if t <= sla as f64 => lessons.push(format!(
            "Acknowledged {} after detection, within the {sla_text} SLA for {} incidents.",
            dur_text(t),
            inc.severity()
        )),
        (Some(t), Some(sla)) => {
            lessons.push(format!(
                "Acknowledged {} after detection: the {sla_text} SLA for {} incidents was missed by {}.",
                dur_text(t),
                inc.severity(),
                dur_text(t - sla as f64)
            ));
            recs.push(format!(
                "Shorten the path to acknowledgement for {} incidents (on-call rota, paging channel): it took {} against {sla_text}.",
                inc.severity(),
                dur_text(t)
            ));
        }
        (Some(t), None) => lessons.push(format!("Acknowledged {} after detection.", dur_text(t))),
        (None, _) => {
            lessons.push(
                "Nobody acknowledged the incident; the escalation clock ran until it was resolved."
                    .into(),
            );
            recs.push("Make acknowledgement part of the runbook so the escalation clock stops when someone takes the incident.".into());
        }
    }
    if m.escalations == 0 {
        lessons.push(format!(
            "No escalation was needed: level {} handled it.",
            m.max_level
        ));
    } else {
        lessons.push(format!(
            "Escalated {} time(s) ({} automatically for missed response windows), reaching level {}.",
            m.escalations, m.automatic_escalations, m.max_level
        ));
        if m.automatic_escalations >= 2 {
            recs.push(format!(
                "Responders missed {} consecutive response windows; check that the lower escalation levels' channels reach someone on duty.",
                m.automatic_escalations
            ));
        }
    }
    match m.time_to_contain_secs {
        Some(t) => lessons.push(format!("Contained {} after detection.", dur_text(t))),
        None if inc.incident_type() == IncidentType::Security => {
            lessons.push("No containment action was recorded for this security incident.".into());
            recs.push(format!(
                "Contain {} incidents early: block the affected user/session with contain_incident, or enable [containment] auto_block.",
                inc.category().map_or("security", |c| c.as_str())
            ));
        }
        None => lessons.push("No containment action was recorded.".into()),
    }
    if let Some(t) = m.time_to_resolve_secs {
        lessons.push(format!("Resolved {} after detection.", dur_text(t)));
    }
    if inc.occurrences() > 1 {
        lessons.push(format!(
            "The same detection repeated {} times before the incident was closed.",
            inc.occurrences()
        ));
    }
    if m.notification_retries > 0 || m.notifications_failed > 0 {
        lessons.push(format!(
            "{} notification(s) delivered; {} attempt(s) failed and were retried; {} given up.",
            m.notifications_sent, m.notification_retries, m.notifications_failed
        ));
    }
    if !failed_channels.is_empty() {
        recs.push(format!(
            "Fix notification channel(s) {}: deliveries failed for good.",
            failed_channels.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if inc.root_cause().is_none() {
        recs.push("Record a root cause: the analysis is incomplete without one.".into());
    }
    if inc.corrective_actions().is_empty() {
        recs.push("Record at least one corrective action that prevents a recurrence.".into());
    }
    if let Some(s) = &inc.serious()
        && s.reported_at.is_none()
    {
        recs.push(format!(
            "File the EU AI Act Art. 73 report (due {}).",
            s.report_due_at.to_rfc3339()
        ));
    }
    if recs.is_empty() {
        recs.push("No process gaps were found on this timeline; keep the current runbook.".into());
    }

    let acknowledgement_time = inc.acknowledged_at();
    PostIncidentDocument {
        incident_id: inc.id().to_string(),
        incident_type: inc.incident_type().to_string(),
        category: inc.category().map(|c| c.as_str().to_string()),
        severity: inc.severity().to_string(),
        title: inc.title().to_string(),
        status: inc.status().to_string(),
        detection_time: inc.created_at(),
        acknowledgement_time,
        resolution_time: inc.resolved_at(),
        documented_at: now,
        description: inc.description().to_string(),
        owner: inc.owner().map(str::to_string),
        tags: inc.tags().to_vec(),
        timeline: entries,
        response_actions: actions,
        root_cause_analysis: RootCauseAnalysis {
            primary_cause: inc.root_cause().unwrap_or("not recorded").to_string(),
            resolution: inc.resolution().map(str::to_string),
            corrective_actions: inc.corrective_actions().to_vec(),
            evidence_rules: {
                let mut r: Vec<String> = inc.evidence().iter().map(|e| e.rule.clone()).collect();
                r.dedup();
                r
            },
            detection: format!(
                "{}{}",
                inc.detection_method(),
                inc.confidence()
                    .map(|c| format!(" (confidence {c:.2})"))
                    .unwrap_or_default()
            ),
        },
        metrics: m,
        lessons_learned: lessons,
        improvement_recommendations: recs,
        regulatory: inc.serious().map(RegulatoryBlock::from),
    }
}

/// The Markdown postmortem for a document.
pub fn render_markdown(d: &PostIncidentDocument) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let opt = |t: &Option<DateTime<Utc>>| t.map_or("—".to_string(), |t| t.to_rfc3339());
    let _ = writeln!(s, "# Postmortem: {} — {}\n", d.incident_id, d.title);
    let _ = writeln!(s, "| field | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| type | {}{} |",
        d.incident_type,
        d.category
            .as_ref()
            .map(|c| format!(" / {c}"))
            .unwrap_or_default()
    );
    let _ = writeln!(s, "| severity | {} |", d.severity);
    let _ = writeln!(s, "| status | {} |", d.status);
    let _ = writeln!(s, "| detected | {} |", d.detection_time.to_rfc3339());
    let _ = writeln!(s, "| acknowledged | {} |", opt(&d.acknowledgement_time));
    let _ = writeln!(s, "| resolved | {} |", opt(&d.resolution_time));
    let _ = writeln!(s, "| owner | {} |", d.owner.as_deref().unwrap_or("—"));
    let m = &d.metrics;
    let t = |v: Option<f64>| v.map_or("—".to_string(), dur_text);
    let _ = writeln!(
        s,
        "| time to acknowledge | {} |",
        t(m.time_to_acknowledge_secs)
    );
    let _ = writeln!(s, "| time to resolve | {} |", t(m.time_to_resolve_secs));
    let _ = writeln!(s, "| time to contain | {} |", t(m.time_to_contain_secs));
    let _ = writeln!(
        s,
        "| escalations | {} (max level {}) |",
        m.escalations, m.max_level
    );
    if !d.tags.is_empty() {
        let _ = writeln!(s, "| tags | {} |", d.tags.join(", "));
    }
    let _ = writeln!(s, "\n## Description\n\n{}\n", d.description);
    let _ = writeln!(s, "## Timeline\n");
    for e in &d.timeline {
        let _ = writeln!(
            s,
            "- `{}` **{}** ({}) {}",
            e.at.to_rfc3339(),
            e.kind,
            e.actor,
            e.summary
        );
    }
    let _ = writeln!(s, "\n## Response actions\n");
    for a in &d.response_actions {
        let _ = writeln!(s, "- `{}` {} — {}", a.at.to_rfc3339(), a.by, a.action);
    }
    let r = &d.root_cause_analysis;
    let _ = writeln!(
        s,
        "\n## Root-cause analysis\n\n- Primary cause: {}",
        r.primary_cause
    );
    let _ = writeln!(
        s,
        "- Resolution: {}",
        r.resolution.as_deref().unwrap_or("—")
    );
    let _ = writeln!(s, "- Detection: {}", r.detection);
    if !r.evidence_rules.is_empty() {
        let _ = writeln!(s, "- Evidence rules: {}", r.evidence_rules.join(", "));
    }
    for c in &r.corrective_actions {
        let _ = writeln!(s, "- Corrective action: {c}");
    }
    let _ = writeln!(s, "\n## Lessons learned\n");
    for l in &d.lessons_learned {
        let _ = writeln!(s, "- {l}");
    }
    let _ = writeln!(s, "\n## Recommendations\n");
    for l in &d.improvement_recommendations {
        let _ = writeln!(s, "- {l}");
    }
    if let Some(reg) = d
        .regulatory
        .as_ref()
        .and_then(|r| serde_json::to_string(r).ok())
    {
        let _ = writeln!(
            s,
            "\n## Regulatory (EU AI Act Art. 73)\n\n```json\n{reg}\n```"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Documents carried the block as an untyped JSON object (keys sorted); the typed block
    /// must write the same bytes, in the document JSON and in the Markdown.
    #[test]
    fn regulatory_block_writes_the_bytes_of_the_untyped_object() {
        let t = DateTime::UNIX_EPOCH;
        for reported_at in [None, Some(t + chrono::Duration::days(3))] {
            let s = SeriousIncident {
                category: "health_harm".into(),
                article_point: "3(49)(a)".into(),
                widespread: true,
                aware_at: t,
                report_due_at: t + chrono::Duration::days(2),
                rule: "widespread".into(),
                reported_at,
                deadline_escalated: true,
                overdue_recorded: false,
            };
            // Sorted as they were written (serde_json without preserve_order at the time).
            let mut old = serde_json::to_value(&s).unwrap();
            old.sort_all_objects();
            let typed = RegulatoryBlock::from(&s);
            assert_eq!(serde_json::to_string(&typed).unwrap(), old.to_string());
            assert_eq!(
                serde_json::to_string_pretty(&typed).unwrap(),
                serde_json::to_string_pretty(&old).unwrap()
            );
        }
    }
}
