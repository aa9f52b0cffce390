//! API-key compromise (AIMS-IRP-001 §8.5.2.1): `record_key_usage` from the MCP tool, REST and the
//! tailed `monitor.key_usage_log`. Usage is checked against the key's baseline
//! ([`crate::checks::keys`]), its revocation (a `revoke_key` containment) and the credentials seen
//! exposed; any anomaly opens or adds to the key's `api_key_compromise` incident (high).
//!
//! May import: `crate::checks`, `crate::detect` (the secret fingerprint), `crate::domain`, `crate::store`,
//! `crate::service`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checks::keys::{KeyAnomaly, KeyUsage};
use crate::domain::incident::{DetectionMethod, Evidence, IncidentType, NewIncident, Severity};
use crate::domain::kind::IncidentKind;
use crate::service::detectors::lock;
use crate::service::{IncidentService, ServiceError, clean, invalid};

/// One key use, as received (tool arguments, REST body or a log line).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyUsageInput {
    pub key_id: String,
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default)]
    pub source_ip: Option<String>,
    #[serde(default)]
    pub user_agent: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub at: Option<String>,
}

/// One anomaly found in a use.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyOut {
    /// Rule: new_source_ip, new_user_agent, rate_spike, used_after_revocation, exposed_fingerprint.
    pub rule: String,
    /// What was seen.
    pub detail: String,
}

/// What `record_key_usage` did.
#[derive(Debug, Clone, Serialize)]
pub struct KeyUsageOutcome {
    /// The key.
    pub key_id: String,
    /// Anomalies in this use (empty: normal).
    pub anomalies: Vec<AnomalyOut>,
    /// The key is revoked (a `revoke_key` containment is in force).
    pub revoked: bool,
    /// The api_key_compromise incident opened or updated, if any.
    pub incident_id: Option<String>,
    /// True when this use opened the incident.
    pub incident_created: bool,
}

pub(crate) fn parse_at(
    field: &'static str,
    at: Option<&str>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, ServiceError> {
    match at.map(str::trim) {
        None | Some("") => Ok(now),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                invalid(
                    field,
                    format!("'{s}' is not an RFC 3339 time such as 2026-12-01T09:30:00Z ({e})"),
                )
            }),
    }
}

/// How often a miss in the exposure registry may rebuild it from the store.
pub(crate) const EXPOSED_RELOAD: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

impl IncidentService {
    /// Whether `key_id` matches a credential seen exposed in screened text: its keyed
    /// fingerprint (the same HMAC `screen_prompt` reports, with the key kept beside the data, so
    /// it compares across restarts and processes), or `key_id` *is* such a fingerprint (a caller
    /// may label a key by the fingerprint `screen_prompt` returned). The registry is filled by
    /// screening and, on a miss, rebuilt from the evidence of the store's secret_exposure
    /// incidents at most once per [`EXPOSED_RELOAD`] (other processes sharing the store).
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails.
    /// `raw` as it may be stored: its keyed fingerprint when it is a credential, else itself.
    fn stored_key_id(&self, raw: &str) -> Result<String, ServiceError> {
        let scanner = self.engine.secret_scanner();
        let fp = scanner.fingerprint(raw);
        let is_secret = scanner
            .scan(raw)
            .iter()
            .any(|f| f.confidence >= 0.5 && f.end - f.start >= raw.len() / 2)
            || lock(&self.detectors.exposed, "exposure registry")?.contains(&fp);
        Ok(if is_secret { fp } else { raw.to_string() })
    }

    pub(crate) async fn exposed_match(&self, key_id: &str) -> Result<bool, ServiceError> {
        let fp = self.engine.secret_scanner().fingerprint(key_id);
        let as_fp = key_id.to_ascii_lowercase();
        let hit =
            |set: &std::collections::HashSet<String>| set.contains(&fp) || set.contains(&as_fp);
        if hit(&*lock(&self.detectors.exposed, "exposure registry")?) {
            return Ok(true);
        }
        let now = self.now();
        {
            let mut loaded = lock(&self.detectors.exposed_loaded, "exposure registry")?;
            if loaded.is_some_and(|t| now - t < EXPOSED_RELOAD && now >= t) {
                return Ok(false);
            }
            *loaded = Some(now);
        }
        let found = self.exposed_fingerprints_in_store().await?;
        let mut set = lock(&self.detectors.exposed, "exposure registry")?;
        set.extend(found);
        Ok(hit(&set))
    }

    /// Every fingerprint in the evidence of the store's secret_exposure incidents.
    async fn exposed_fingerprints_in_store(&self) -> Result<Vec<String>, ServiceError> {
        let category = crate::detect::Category::SecretExposure.as_str();
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .list(crate::store::ListQuery {
                    incident_type: Some(IncidentType::Security),
                    limit: 200,
                    cursor,
                    ..Default::default()
                })
                .await?;
            for inc in &page.items {
                out.extend(
                    inc.evidence()
                        .iter()
                        .filter(|e| e.category == category)
                        .filter_map(|e| {
                            crate::service::screening::fingerprint_in_excerpt(&e.excerpt)
                        })
                        .map(str::to_string),
                );
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Records one use of an API key and checks it (see the module doc).
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] naming a bad field (empty or oversized key id, bad time).
    pub async fn record_key_usage(
        &self,
        input: KeyUsageInput,
    ) -> Result<KeyUsageOutcome, ServiceError> {
        let raw_id = input.key_id.trim();
        if raw_id.is_empty() || raw_id.len() > 128 || raw_id.chars().any(char::is_whitespace) {
            return Err(invalid(
                "key_id",
                "must be 1 to 128 characters without spaces: the key's label or public id, never the secret",
            ));
        }
        // A key id that is itself a credential (the scanner recognises it, or it is a known
        // exposed secret) is kept only as its keyed fingerprint: secrets never rest in clear,
        // and the fingerprint is what screen_prompt reports for the same key.
        let key_id = self.stored_key_id(raw_id)?;
        let now = self.now();
        let u = KeyUsage {
            key_id: key_id.clone(),
            principal: clean("principal", input.principal, 256)?,
            source_ip: clean("source_ip", input.source_ip, 64)?,
            user_agent: clean("user_agent", input.user_agent, 512)?,
            endpoint: clean("endpoint", input.endpoint, 512)?,
            status: input.status,
            at: parse_at("at", input.at.as_deref(), now)?,
        };
        let revoked = !self
            .store
            .active_containments_where(Some("key".into()), Some(key_id.clone()), None)
            .await?
            .is_empty();
        let exposed = self.exposed_match(&key_id).await?;
        let anomalies = lock(&self.detectors.keys, "key monitor")?.observe(
            &u,
            &self.config.keys,
            revoked,
            exposed,
        );
        let mut out = KeyUsageOutcome {
            key_id: key_id.clone(),
            anomalies: anomalies
                .iter()
                .map(|a| AnomalyOut {
                    rule: a.kind.as_str().to_string(),
                    detail: a.detail.clone(),
                })
                .collect(),
            revoked,
            incident_id: None,
            incident_created: false,
        };
        if anomalies.is_empty() {
            return Ok(out);
        }
        let up = self.open_key_incident(&u, &anomalies, now).await?;
        out.incident_id = Some(up.incident.id().to_string());
        out.incident_created = up.created;
        Ok(out)
    }

    async fn open_key_incident(
        &self,
        u: &KeyUsage,
        anomalies: &[KeyAnomaly],
        now: DateTime<Utc>,
    ) -> Result<crate::store::Upserted, ServiceError> {
        let key = format!("key|{}", u.key_id);
        let evidence: Vec<Evidence> = anomalies
            .iter()
            .map(|a| {
                Evidence::finding(
                    a.kind.as_str(),
                    IncidentKind::ApiKeyCompromise.as_str(),
                    &a.detail,
                )
            })
            .collect();
        let rules: Vec<&str> = anomalies.iter().map(|a| a.kind.as_str()).collect();
        let mut tags = vec![format!("key:{}", u.key_id)];
        if let Some(ip) = &u.source_ip {
            tags.push(format!("source:{ip}"));
        }
        tags.extend(rules.iter().map(|r| format!("rule:{r}")));
        let new = NewIncident {
            affected_system: Some(format!("key:{}", u.key_id)),
            affected_user: u.principal.clone(),
            evidence: evidence.clone(),
            tags,
            dedup_key: Some(key.clone()),
            ..NewIncident::new(
                IncidentType::Security,
                Severity::High,
                DetectionMethod::Monitoring,
                format!(
                    "API key {} compromise suspected ({})",
                    u.key_id,
                    rules.join(", ")
                ),
                anomalies
                    .iter()
                    .map(|a| a.detail.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        self.open_or_repeat_full(
            key,
            new,
            IncidentKind::ApiKeyCompromise,
            evidence,
            "key-usage-monitor",
            now,
        )
        .await
    }
}
