//! Data breach (AIMS-IRP-001 §8.5.2.1): `record_access` from the MCP tool, REST and the tailed
//! `monitor.access_log`. Each access is checked against the `[access]` rules
//! ([`crate::checks::access`]), the principal's containments (`block_user`) and its `rate_limit`
//! bucket; any finding opens or adds to the principal's `data_breach` incident (critical), with
//! the accesses as evidence.
//!
//! May import: `crate::checks`, `crate::domain`, `crate::store`, `crate::service`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checks::access::{Access, AccessAction, AccessFinding, AccessFindingKind, Sensitivity};
use crate::domain::incident::{DetectionMethod, Evidence, IncidentType, NewIncident, Severity};
use crate::domain::kind::IncidentKind;
use crate::service::detectors::lock;
use crate::service::keys::parse_at;
use crate::service::{IncidentService, ServiceError, clean, invalid};

/// One data access, as received (tool arguments, REST body or an access-log line).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessInput {
    pub principal: String,
    pub resource: String,
    #[schemars(extend("enum" = ["read", "export", "write", "delete"]))]
    pub action: String,
    #[serde(default)]
    pub records: Option<u64>,
    #[serde(default)]
    #[schemars(extend("enum" = ["public", "internal", "confidential", "restricted"]))]
    pub sensitivity: Option<String>,
    #[serde(default)]
    pub destination: Option<String>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub at: Option<String>,
}

/// One finding in an access.
#[derive(Debug, Clone, Serialize)]
pub struct AccessFindingOut {
    /// Rule: bulk_access, sensitivity_exceeded, off_hours_bulk, contained_principal,
    /// export_not_allowed, rate_limited.
    pub rule: String,
    /// What was seen.
    pub detail: String,
}

/// What `record_access` did.
#[derive(Debug, Clone, Serialize)]
pub struct AccessOutcome {
    /// The access was recorded (always true: nothing sent is dropped).
    pub recorded: bool,
    /// False when the principal is over its `rate_limit` bucket.
    pub within_rate_limit: bool,
    /// Findings (empty: normal).
    pub findings: Vec<AccessFindingOut>,
    /// The data_breach incident opened or updated, if any.
    pub incident_id: Option<String>,
    /// True when this access opened the incident.
    pub incident_created: bool,
}

/// A required text field: trimmed, non-empty, at most `max` bytes.
fn required(
    field: &'static str,
    v: String,
    max: usize,
    what: &str,
) -> Result<String, ServiceError> {
    if v.trim().is_empty() {
        return Err(invalid(
            field,
            format!("is required and must not be blank: {what}"),
        ));
    }
    clean(field, Some(v), max)?.ok_or_else(|| invalid(field, format!("is required: {what}")))
}

impl IncidentService {
    /// Records one data access and checks it (see the module doc).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming a bad field.
    pub async fn record_access(&self, input: AccessInput) -> Result<AccessOutcome, ServiceError> {
        let principal = required(
            "principal",
            input.principal,
            256,
            "the user, agent or service that accessed the data",
        )?;
        let resource = required(
            "resource",
            input.resource,
            512,
            "what was accessed, e.g. crm.customers",
        )?;
        let action: AccessAction = input
            .action
            .parse()
            .map_err(|m: String| invalid("action", m))?;
        let sensitivity: Option<Sensitivity> = match input.sensitivity.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(s) => Some(s.parse().map_err(|m: String| invalid("sensitivity", m))?),
        };
        let now = self.now();
        let a = Access {
            principal: principal.clone(),
            resource,
            action,
            records: input.records.unwrap_or(1),
            sensitivity,
            destination: clean("destination", input.destination, 1024)?,
            at: parse_at("at", input.at.as_deref(), now)?,
        };
        let held = self
            .store
            .active_containments(Some(principal.clone()), None)
            .await?;
        let contained = !held.is_empty();
        let mut findings = lock(&self.detectors.access, "access monitor")?.observe(
            &a,
            &self.config.access,
            contained,
        );
        let within = self.take_rate_token(&principal, now).await?;
        if let Err(wait) = within {
            findings.push(AccessFinding {
                kind: AccessFindingKind::RateLimited,
                detail: format!(
                    "{principal} is rate-limited and over its bucket (next token in {wait:.0} s); access to {} recorded",
                    a.resource
                ),
            });
        }
        let mut out = AccessOutcome {
            recorded: true,
            within_rate_limit: within.is_ok(),
            findings: findings
                .iter()
                .map(|f| AccessFindingOut {
                    rule: f.kind.as_str().to_string(),
                    detail: f.detail.clone(),
                })
                .collect(),
            incident_id: None,
            incident_created: false,
        };
        if findings.is_empty() {
            return Ok(out);
        }
        let up = self.open_access_incident(&a, &findings, now).await?;
        out.incident_id = Some(up.incident.id().to_string());
        out.incident_created = up.created;
        Ok(out)
    }

    /// Takes a token from `principal`'s bucket when a `rate_limit` containment holds it:
    /// `Ok(Ok(()))` when allowed (or not limited), `Ok(Err(seconds))` when over.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails.
    pub(crate) async fn take_rate_token(
        &self,
        principal: &str,
        now: DateTime<Utc>,
    ) -> Result<Result<(), f64>, ServiceError> {
        let limited = !self
            .store
            .active_containments_where(Some("principal".into()), Some(principal.to_string()), None)
            .await?
            .is_empty();
        if !limited {
            return Ok(Ok(()));
        }
        let c = &self.config.containment;
        let mut b = lock(&self.detectors.buckets, "rate buckets")?;
        let mut slot = b.get(principal).copied();
        let r = crate::service::detectors::Bucket::take(
            &mut slot,
            c.rate_limit_per_minute,
            c.rate_limit_burst,
            now,
        );
        if let Some(s) = slot {
            b.insert(principal.to_string(), s);
        }
        Ok(r)
    }

    async fn open_access_incident(
        &self,
        a: &Access,
        findings: &[AccessFinding],
        now: DateTime<Utc>,
    ) -> Result<crate::store::Upserted, ServiceError> {
        let key = format!("access|{}", a.principal);
        let access = format!(
            "{} {} {} ({} records{}{}) at {}",
            a.principal,
            a.action.as_str(),
            a.resource,
            a.records,
            a.sensitivity.map(|s| format!(", {s}")).unwrap_or_default(),
            a.destination
                .as_deref()
                .map(|d| format!(", to {d}"))
                .unwrap_or_default(),
            a.at.to_rfc3339()
        );
        let evidence: Vec<Evidence> = findings
            .iter()
            .map(|f| {
                Evidence::finding(
                    f.kind.as_str(),
                    IncidentKind::DataBreach.as_str(),
                    &format!("{access}: {}", f.detail),
                )
            })
            .collect();
        let rules: Vec<&str> = findings.iter().map(|f| f.kind.as_str()).collect();
        let mut tags = vec![
            format!("principal:{}", a.principal),
            "LLM02:2025".to_string(),
        ];
        tags.extend(rules.iter().map(|r| format!("rule:{r}")));
        let new = NewIncident {
            affected_system: Some(a.resource.clone()),
            affected_user: Some(a.principal.clone()),
            evidence: evidence.clone(),
            tags,
            dedup_key: Some(key.clone()),
            // The default `data_breach → critical` override sets the severity; reported as
            // high so the override is what makes it critical (and says so on the timeline).
            ..NewIncident::new(
                IncidentType::Security,
                Severity::High,
                DetectionMethod::Monitoring,
                format!(
                    "Possible data breach by {} ({})",
                    a.principal,
                    rules.join(", ")
                ),
                format!(
                    "{access}. {}",
                    findings
                        .iter()
                        .map(|f| f.detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        };
        self.open_or_repeat_full(
            key,
            new,
            IncidentKind::DataBreach,
            evidence,
            "access-monitor",
            now,
        )
        .await
    }
}
