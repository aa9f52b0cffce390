//! Reporting and reading: manual reports (the spec's `validate_report_data`), one incident with
//! its timeline, filtered pages, and the audit-log check.
//!
//! May import: `crate::domain`, `crate::store`, `crate::service`.

use chrono::{DateTime, Utc};

use crate::domain::incident::{
    self, DetectionMethod, Email, Event, Incident, IncidentId, IncidentType, NewIncident, Severity,
    Status,
};
use crate::domain::kind::IncidentKind;
use crate::service::{
    IncidentService, LIST_DEFAULT, LIST_MAX, ListInput, ReportInput, ServiceError, invalid,
    parse_opt,
};
use crate::store::{Cursor, ListQuery, Page, Upserted};

impl IncidentService {
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
    ) -> Result<Upserted, ServiceError> {
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
        // A type (security, performance, …) or one of the procedure's kinds (data_breach,
        // llm_api_failure, …), which sets the type and the kind's classification.
        let (incident_type, kind): (IncidentType, Option<IncidentKind>) =
            match input.incident_type.parse::<IncidentType>() {
                Ok(t) => (t, None),
                Err(m) => match input.incident_type.parse::<IncidentKind>() {
                    Ok(k) => (k.incident_type(), Some(k)),
                    Err(_) => {
                        return Err(invalid(
                            "incident_type",
                            format!(
                                "{m}; or an incident kind: {}",
                                IncidentKind::ALL
                                    .iter()
                                    .map(|k| k.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ));
                    }
                },
            };
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
                reporter: Some(email.as_str().to_string()),
                affected_system,
                ..NewIncident::new(
                    incident_type,
                    severity,
                    DetectionMethod::ManualReport,
                    title,
                    description,
                )
            },
            now,
        );
        if let Some(k) = kind {
            inc.set_kind(k);
        }
        self.on_open(&mut inc, &mut events, now);
        let actor = email.as_str().to_string();
        Ok(match (key, fingerprint) {
            (Some(k), Some(fp)) => {
                self.store
                    .insert_idempotent(k, fp, inc, events, actor, now)
                    .await?
            }
            _ => Upserted {
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
        let status = parse_opt::<Status>("status", input.status.as_deref())?;
        let severity = parse_opt::<Severity>("severity", input.severity.as_deref())?;
        let incident_type =
            parse_opt::<IncidentType>("incident_type", input.incident_type.as_deref())?;
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

    /// The store's change sequence (see [`crate::store::Store::changes_after`]).
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store cannot be read.
    pub async fn changes_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<(i64, Vec<crate::store::Change>), ServiceError> {
        Ok(self.store.changes_after(after, limit).await?)
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
