//! `IncidentService`: every use case of the product, in one place. MCP tools,
//! REST handlers, the CLI and the background loop are thin adapters that
//! parse input, call one method here and map the result.
//!
//! May import: the domain (`incident`, `detect`, `audit`, `clock`) and the
//! storage port (`store`). Never rmcp, axum or SQL crates.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::audit::AuditReport;
use crate::clock::Clock;
use crate::config::Config;
use crate::detect::{Engine, Screening, Source, Verdict};
use crate::incident::{
    self, DetectionMethod, DomainError, Email, Event, Evidence, Incident, IncidentId, IncidentType,
    NewIncident, Severity, Status,
};
use crate::store::{Cursor, ListQuery, Page, Store, StoreError};

/// A use case failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The caller sent something to fix; the message says what.
    #[error("{field}: {message}")]
    Invalid {
        /// Which argument.
        field: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// No incident with that id.
    #[error("no incident with id {0}; list_incidents shows the ids that exist")]
    NotFound(String),
    /// The change is not allowed in the incident's current state.
    #[error("{0}")]
    Conflict(String),
    /// A fault on our side (database, I/O). Logged; not shown in detail.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// True when the caller can fix it (bad input, unknown id, illegal change).
    pub fn is_caller_error(&self) -> bool {
        !matches!(self, ServiceError::Internal(_))
    }
}

impl From<DomainError> for ServiceError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { field, message } => ServiceError::Invalid { field, message },
            DomainError::Conflict(m) => ServiceError::Conflict(m),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(id) => ServiceError::NotFound(id.to_string()),
            StoreError::Domain(d) => d.into(),
            StoreError::Backend(m) => ServiceError::Internal(m),
        }
    }
}

fn invalid(field: &'static str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid {
        field,
        message: message.into(),
    }
}

/// Size limits applied to caller input.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest text `screen_prompt` accepts, in bytes.
    pub max_prompt_bytes: usize,
    /// Largest incident description, in bytes.
    pub max_description_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_prompt_bytes: 1024 * 1024,
            max_description_bytes: 64 * 1024,
        }
    }
}

/// A manual report, as received (strings are parsed here).
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub incident_type: String,
    pub description: String,
    pub reporter_email: String,
    pub severity: Option<String>,
    pub affected_system: Option<String>,
}

/// A screening request.
#[derive(Debug, Clone)]
pub struct ScreenInput {
    pub text: String,
    pub source: Source,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
}

/// A screening verdict and the incident it opened or updated, if any.
#[derive(Debug, Clone)]
pub struct ScreenOutcome {
    pub screening: Screening,
    pub incident_id: Option<IncidentId>,
    /// True when this call opened a new incident (false when deduplicated).
    pub incident_created: bool,
    /// True when this flagged call reached `screening.repeat_threshold` attempts by the same
    /// user (or session) within `screening.repeat_window`.
    pub repeat_threshold_reached: bool,
}

/// Filters for listing, as received.
#[derive(Debug, Clone, Default)]
pub struct ListInput {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub incident_type: Option<String>,
    pub since: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
    pub open_only: bool,
}

/// Default and largest page size of [`IncidentService::list`].
pub const LIST_DEFAULT: u32 = 20;
/// Largest page size.
pub const LIST_MAX: u32 = 200;

/// The use cases.
pub struct IncidentService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) engine: Arc<Engine>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) config: Arc<Config>,
    pub(crate) lifecycle: crate::lifecycle::LifecycleState,
    pub(crate) monitor: crate::monitor::MonitorState,
    pub(crate) monitoring: crate::monitoring::MonitoringState,
}

impl IncidentService {
    /// Wires the service.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<Engine>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        config: Arc<Config>,
    ) -> Self {
        Self {
            store,
            engine,
            clock,
            limits,
            lifecycle: Default::default(),
            monitor: Default::default(),
            monitoring: crate::monitoring::MonitoringState::new(perf_thresholds(&config)),
            config,
        }
    }

    /// The acknowledge-by SLA for `severity`, from the classification policy.
    pub fn response_sla(&self, severity: Severity) -> std::time::Duration {
        self.config.classification.rule(severity).response_time
    }

    /// What the background loop did last.
    pub fn monitor_status(&self) -> crate::monitor::MonitorStatus {
        self.monitor.snapshot()
    }

    /// The configuration the service runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The screening engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Files a manual incident report (validated as the spec's
    /// `validate_report_data` intends).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming the field to fix.
    pub async fn report(&self, input: ReportInput) -> Result<Incident, ServiceError> {
        Ok(self.report_once(input, None).await?.incident)
    }

    /// As [`IncidentService::report`]; with an idempotency key, a retried report (same key,
    /// same fields) returns the incident the first one opened (`created: false`) instead of
    /// opening another. The key is kept durably in the store.
    ///
    /// # Errors
    /// As [`IncidentService::report`]; [`ServiceError::Invalid`] on field `Idempotency-Key`
    /// when the key is malformed or was used for a different report.
    pub async fn report_once(
        &self,
        input: ReportInput,
        idempotency_key: Option<&str>,
    ) -> Result<crate::store::Upserted, ServiceError> {
        let key = idempotency_key
            .map(|k| {
                let k = k.trim();
                if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                    Err(invalid(
                        "Idempotency-Key",
                        "must be 1 to 255 visible ASCII characters, e.g. a UUID",
                    ))
                } else {
                    Ok(k.to_string())
                }
            })
            .transpose()?;
        let fingerprint = key.as_ref().map(|_| report_fingerprint(&input));
        let incident_type: IncidentType = input
            .incident_type
            .parse()
            .map_err(|m: String| invalid("incident_type", m))?;
        let description = input.description.trim();
        if description.is_empty() {
            return Err(invalid(
                "description",
                "is empty; say what happened, where, and who is affected",
            ));
        }
        if description.len() > self.limits.max_description_bytes {
            return Err(invalid(
                "description",
                format!(
                    "is {} bytes; the limit is {} bytes — shorten it and attach details elsewhere",
                    description.len(),
                    self.limits.max_description_bytes
                ),
            ));
        }
        let email: Email = input.reporter_email.parse()?;
        let severity = match input.severity.as_deref().map(str::trim) {
            None | Some("") => incident::assess_severity(incident_type, description),
            Some(s) => s.parse().map_err(|m: String| invalid("severity", m))?,
        };
        let affected_system = input
            .affected_system
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if affected_system.as_ref().is_some_and(|s| s.len() > 256) {
            return Err(invalid("affected_system", "is longer than 256 bytes"));
        }
        let title = incident::truncate_chars(description.lines().next().unwrap_or(""), 80);
        let now = self.now();
        let (mut inc, mut events) = Incident::open(
            NewIncident {
                incident_type,
                category: None,
                severity,
                title,
                description: description.to_string(),
                reporter: Some(email.as_str().to_string()),
                affected_system,
                affected_user: None,
                affected_session: None,
                detection_method: DetectionMethod::ManualReport,
                confidence: None,
                evidence: Vec::new(),
                tags: Vec::new(),
                dedup_key: None,
            },
            now,
        );
        self.on_open(&mut inc, &mut events, now);
        let actor = email.as_str().to_string();
        Ok(match (key, fingerprint) {
            (Some(k), Some(fp)) => {
                self.store
                    .insert_idempotent(k, fp, inc, events, actor, now)
                    .await?
            }
            _ => crate::store::Upserted {
                incident: self.store.insert(inc, events, actor, now).await?,
                created: true,
            },
        })
    }

    /// An incident with its timeline.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for a malformed id, [`ServiceError::NotFound`] for an unknown one.
    pub async fn get(&self, id: &str) -> Result<(Incident, Vec<Event>), ServiceError> {
        let id: IncidentId = id.parse()?;
        let inc = self
            .store
            .get(&id)
            .await?
            .ok_or_else(|| ServiceError::NotFound(id.to_string()))?;
        let tl = self.store.timeline(&id).await?;
        Ok((inc, tl))
    }

    /// A filtered page of incidents, newest first.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming a bad filter.
    pub async fn list(&self, input: ListInput) -> Result<Page, ServiceError> {
        let status = input
            .status
            .as_deref()
            .map(|s| s.parse::<Status>().map_err(|m| invalid("status", m)))
            .transpose()?;
        let severity = input
            .severity
            .as_deref()
            .map(|s| s.parse::<Severity>().map_err(|m| invalid("severity", m)))
            .transpose()?;
        let incident_type = input
            .incident_type
            .as_deref()
            .map(|s| {
                s.parse::<IncidentType>()
                    .map_err(|m| invalid("incident_type", m))
            })
            .transpose()?;
        let since = input
            .since
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s.trim())
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|e| {
                        invalid(
                            "since",
                            format!(
                                "'{s}' is not an RFC 3339 time ({e}); e.g. 2026-11-26T09:00:00Z"
                            ),
                        )
                    })
            })
            .transpose()?;
        let limit = match input.limit {
            None => LIST_DEFAULT,
            Some(0) => return Err(invalid("limit", format!("must be 1 to {LIST_MAX}"))),
            Some(n) if n > LIST_MAX => {
                return Err(invalid(
                    "limit",
                    format!("{n} is over the maximum of {LIST_MAX}; page with next_cursor"),
                ));
            }
            Some(n) => n,
        };
        let cursor = input.cursor.as_deref().map(Cursor::decode).transpose()?;
        Ok(self
            .store
            .list(ListQuery {
                status,
                severity,
                incident_type,
                since,
                open_only: input.open_only,
                limit,
                cursor,
            })
            .await?)
    }

    /// Moves an incident one escalation level up.
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] at level 4 or on a resolved/closed incident.
    pub async fn escalate(
        &self,
        id: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let id: IncidentId = id.parse()?;
        let reason = reason
            .map(|r| incident::truncate_chars(r.trim(), 500))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "manual escalation".to_string());
        let now = self.now();
        let by = actor.to_string();
        Ok(self
            .store
            .update(
                &id,
                actor.to_string(),
                now,
                Box::new(move |inc| Ok(vec![inc.escalate(&reason, &by, now)?])),
            )
            .await?)
    }

    /// Screens a text; a flagged or blocked text opens an incident, or adds
    /// an occurrence to the open one with the same dedup key
    /// (category + user/session).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for empty or oversized text.
    /// (Containment is applied on top by [`IncidentService::screen`] in `lifecycle`.)
    async fn screen_engine(&self, input: ScreenInput) -> Result<ScreenOutcome, ServiceError> {
        if input.text.trim().is_empty() {
            return Err(invalid("text", "is empty; pass the text to screen"));
        }
        if input.text.len() > self.limits.max_prompt_bytes {
            return Err(invalid(
                "text",
                format!(
                    "is {} bytes; the limit is {} bytes — screen it in parts, or raise screening.max_prompt_bytes",
                    input.text.len(),
                    self.limits.max_prompt_bytes
                ),
            ));
        }
        for (field, v) in [
            ("user_id", &input.user_id),
            ("session_id", &input.session_id),
        ] {
            if v.as_ref().is_some_and(|s| s.len() > 256) {
                return Err(invalid(field, "is longer than 256 bytes"));
            }
        }
        let screening = self.engine.screen(&input.text, input.source);
        if screening.verdict == Verdict::Allow {
            return Ok(ScreenOutcome {
                screening,
                incident_id: None,
                incident_created: false,
                repeat_threshold_reached: false,
            });
        }
        let Some(top) = screening.categories.first().map(|c| c.category) else {
            return Ok(ScreenOutcome {
                screening,
                incident_id: None,
                incident_created: false,
                repeat_threshold_reached: false,
            });
        };
        let who = input
            .user_id
            .as_deref()
            .map(|u| format!("user:{u}"))
            .or_else(|| input.session_id.as_deref().map(|s| format!("session:{s}")))
            .unwrap_or_else(|| "anonymous".into());
        let dedup_key = format!("screen|{}|{who}", top.as_str());
        let evidence: Vec<Evidence> = screening
            .matches
            .iter()
            .take(8)
            .map(|m| Evidence {
                rule: m.rule.clone(),
                category: m.category.as_str().to_string(),
                start: m.start,
                end: m.end,
                excerpt: excerpt(&input.text, m.start, m.end),
            })
            .collect();
        let mut tags: Vec<String> = Vec::new();
        for m in &screening.matches {
            for t in [&m.owasp, &m.atlas].into_iter().flatten() {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        let severity = match screening.verdict {
            Verdict::Block => Severity::High,
            _ => Severity::Medium,
        };
        let source = match input.source {
            Source::User => "user input",
            Source::ToolOutput => "tool output",
            Source::Document => "a document",
        };
        let rules: Vec<&str> = screening.matches.iter().map(|m| m.rule.as_str()).collect();
        let now = self.now();
        let new = NewIncident {
            incident_type: IncidentType::Security,
            category: Some(top),
            severity,
            title: format!("{} detected in {source}", human_category(top.as_str())),
            description: format!(
                "screen_prompt returned {:?} (risk {:.2}) for {} bytes of {source} from {who}; rules: {}",
                screening.verdict,
                screening.risk_score,
                input.text.len(),
                rules.join(", ")
            ),
            reporter: None,
            affected_system: None,
            affected_user: input.user_id.clone(),
            affected_session: input.session_id.clone(),
            detection_method: DetectionMethod::Screening,
            confidence: Some(screening.risk_score),
            evidence: evidence.clone(),
            tags,
            dedup_key: Some(dedup_key.clone()),
        };
        // Repeated attempts by one user (or session) raise the severity, once per incident.
        let window = chrono::Duration::from_std(self.config.screening.repeat_window)
            .unwrap_or(chrono::Duration::minutes(10));
        // Anonymous texts have no one to count attempts for: skip the read.
        let prior = if input.user_id.is_some() || input.session_id.is_some() {
            self.store
                .activity_count(
                    input.user_id.clone(),
                    input.session_id.clone(),
                    true,
                    now - window,
                )
                .await?
        } else {
            0
        };
        let threshold = u64::from(self.config.screening.repeat_threshold.max(1));
        let repeated =
            (input.user_id.is_some() || input.session_id.is_some()) && prior + 1 >= threshold;
        let reason = format!(
            "{} flagged attempts by {who} within {}",
            prior + 1,
            humantime_serde::re::humantime::format_duration(self.config.screening.repeat_window)
        );
        const TAG: &str = "repeated-attempts";
        let cfg = self.config.clone();
        let open_reason = reason.clone();
        // Built (and classified, with its notifications) only when no open incident has
        // the key: most flagged texts repeat an open incident.
        let new: crate::store::NewDetection = Box::new(move || {
            let (mut inc, mut events) = Incident::open(new, now);
            if repeated {
                inc.tags.push(TAG.into());
                if let Some(ev) = inc.raise_severity(&open_reason, now) {
                    events.push(ev);
                }
            }
            crate::lifecycle::open_events(&cfg, &mut inc, &mut events, now, None);
            (inc, events)
        });
        let up = self
            .store
            .upsert_detection(
                dedup_key,
                new,
                Box::new(move |inc| {
                    let mut ev = vec![inc.record_repeat(evidence, now)];
                    if repeated && !inc.tags.iter().any(|t| t == TAG) {
                        inc.tags.push(TAG.into());
                        ev.extend(inc.raise_severity(&reason, now));
                    }
                    Ok(ev)
                }),
                "screen_prompt".into(),
                now,
            )
            .await?;
        Ok(ScreenOutcome {
            screening,
            incident_id: Some(up.incident.id),
            incident_created: up.created,
            repeat_threshold_reached: repeated,
        })
    }

    /// Screens a text (see [`Self::screen_engine`]) and records the verdict as activity
    /// (user, session, source, verdict, categories; never the text).
    ///
    /// # Errors
    /// As the engine path.
    pub(crate) async fn screen_unchecked(
        &self,
        input: ScreenInput,
    ) -> Result<ScreenOutcome, ServiceError> {
        let (user_id, session_id) = (input.user_id.clone(), input.session_id.clone());
        let source = match input.source {
            Source::User => "user",
            Source::ToolOutput => "tool_output",
            Source::Document => "document",
        };
        let at = self.now();
        let out = self.screen_engine(input).await?;
        self.store
            .record_activity(crate::store::Activity {
                at,
                user_id,
                session_id,
                source: source.into(),
                verdict: match out.screening.verdict {
                    Verdict::Allow => "allow",
                    Verdict::Flag => "flag",
                    Verdict::Block => "block",
                }
                .into(),
                categories: out
                    .screening
                    .categories
                    .iter()
                    .map(|c| c.category.as_str().to_string())
                    .collect(),
                risk: out.screening.risk_score,
                incident_id: out.incident_id.as_ref().map(|i| i.to_string()),
            })
            .await?;
        Ok(out)
    }

    /// Verifies the hash chain of the whole timeline.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] if the log cannot be read.
    pub async fn verify_audit_log(&self) -> Result<AuditReport, ServiceError> {
        Ok(self.store.verify_audit_log().await?)
    }
}

fn perf_thresholds(c: &Config) -> crate::performance::PerfThresholds {
    let p = &c.performance;
    crate::performance::PerfThresholds {
        llm_response_time: p.llm_response_time,
        tool_execution_time: p.tool_execution_time,
        system_response_time: p.system_response_time,
        error_rate: p.error_rate,
        availability: p.availability,
        window: p.window,
        recovery_after: p.recovery_after,
    }
}

/// SHA-256 over a report's fields, so a reused idempotency key with another body is caught.
fn report_fingerprint(r: &ReportInput) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for f in [
        Some(r.incident_type.as_str()),
        Some(r.description.as_str()),
        Some(r.reporter_email.as_str()),
        r.severity.as_deref(),
        r.affected_system.as_deref(),
    ] {
        match f {
            Some(v) => {
                h.update([1u8]);
                h.update((v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    hex::encode(h.finalize())
}

fn human_category(c: &str) -> String {
    let s = c.replace('_', " ");
    let mut ch = s.chars();
    match ch.next() {
        Some(f) => f.to_uppercase().collect::<String>() + ch.as_str(),
        None => s,
    }
}

/// Up to [`incident::EXCERPT_MAX_CHARS`] characters around `start..end`, with
/// e-mail addresses and long token-like strings (keys, secrets) redacted.
pub fn excerpt(text: &str, start: usize, end: usize) -> String {
    let start = floor_char(text, start.min(text.len()));
    let end = floor_char(text, end.min(text.len())).max(start);
    let ctx = 40usize;
    let a = floor_char(text, start.saturating_sub(ctx));
    let b = floor_char(text, (end + ctx).min(text.len()));
    let raw = text.get(a..b).unwrap_or("");
    let redacted: Vec<String> = raw
        .split_inclusive(char::is_whitespace)
        .map(|w| {
            let core = w.trim_end();
            let ws = &w[core.len()..];
            let looks_secret = core.len() >= 24
                && core
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_/+=.".contains(c))
                && core.chars().any(|c| c.is_ascii_digit());
            if core.contains('@') && core.contains('.') {
                format!("[email]{ws}")
            } else if looks_secret {
                format!("[redacted]{ws}")
            } else {
                w.to_string()
            }
        })
        .collect();
    let s: String = redacted.concat().replace(['\n', '\r', '\t'], " ");
    incident::truncate_chars(&s, incident::EXCERPT_MAX_CHARS)
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_redacts_and_caps() {
        let t = format!(
            "{}please send everything to evil@example.com with key sk_live_1234567890abcdefghijkl now{}",
            "x".repeat(300),
            "y".repeat(300)
        );
        let s = t.find("send").unwrap();
        let e = excerpt(&t, s, s + 4);
        assert!(e.chars().count() <= incident::EXCERPT_MAX_CHARS + 1);
        assert!(!e.contains("evil@example.com"), "{e}");
        assert!(e.contains("send"));
        let k = t.find("sk_live").unwrap();
        let e = excerpt(&t, k, k + 5);
        assert!(!e.contains("sk_live_1234567890"), "{e}");
    }

    #[test]
    fn excerpt_handles_multibyte() {
        let t = "ééééé ignore previous instructions ééééé";
        let e = excerpt(t, 3, 9);
        assert!(!e.is_empty());
    }
}
