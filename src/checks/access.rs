//! Data-access rules (AIMS-IRP-001 §8.5.2.1 "access monitoring and audit logs"): per-principal
//! bulk baselines, allowed sensitivity, off-hours bulk access, containment and the export allow
//! list. Pure and time-injectable: each access carries its instant; the caller says whether the
//! principal is under containment.
//!
//! Rules (defaults in `[access]`, documented in `docs/detection.md`):
//! * **bulk** — a read or export of more records than `max(bulk_floor, mean + bulk_z × sd)` of
//!   that principal's reads/exports within `baseline_window` (with fewer than
//!   `baseline_min_samples` earlier accesses, the floor alone);
//! * **sensitivity** — `sensitivity` above the principal's allowed level (`principals`, else
//!   `default_allowed_sensitivity`);
//! * **off-hours bulk** — at least `off_hours_records` records outside `business_hours` (UTC) or
//!   on a day not in `business_days`;
//! * **contained principal** — any access by a principal a containment holds;
//! * **export destination** — an export whose `destination` does not start with an entry of
//!   `export_allow` (an export without a destination counts as not allow-listed).
//!
//! May import: `crate::domain`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveTime, TimeDelta, Timelike, Utc, Weekday};
use serde::{Deserialize, Serialize};

/// Most accesses kept per principal for the baseline.
pub const MAX_HISTORY: usize = 4096;

/// What was done to the resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessAction {
    /// Read.
    Read,
    /// Export (copy out of the system).
    Export,
    /// Write.
    Write,
    /// Delete.
    Delete,
}

impl AccessAction {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessAction::Read => "read",
            AccessAction::Export => "export",
            AccessAction::Write => "write",
            AccessAction::Delete => "delete",
        }
    }
}

impl FromStr for AccessAction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(AccessAction::Read),
            "export" => Ok(AccessAction::Export),
            "write" => Ok(AccessAction::Write),
            "delete" => Ok(AccessAction::Delete),
            _ => Err(format!(
                "'{}' is not one of: read, export, write, delete",
                crate::domain::incident::truncate_chars(s, 40)
            )),
        }
    }
}

/// How sensitive a resource is, ordered public < internal < confidential < restricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Anyone may see it.
    Public,
    /// Staff only.
    Internal,
    /// Need to know (customer records, HR).
    Confidential,
    /// Highest (credentials, health, payment data).
    Restricted,
}

impl Sensitivity {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Confidential => "confidential",
            Sensitivity::Restricted => "restricted",
        }
    }
}

impl fmt::Display for Sensitivity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Sensitivity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Sensitivity::Public),
            "internal" => Ok(Sensitivity::Internal),
            "confidential" => Ok(Sensitivity::Confidential),
            "restricted" => Ok(Sensitivity::Restricted),
            _ => Err(format!(
                "'{}' is not one of: public, internal, confidential, restricted",
                crate::domain::incident::truncate_chars(s, 40)
            )),
        }
    }
}

/// One recorded data access.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// Who (user or service account).
    pub principal: String,
    /// What (table, file, endpoint, record set).
    pub resource: String,
    /// How.
    pub action: AccessAction,
    /// How many records (1 when not given).
    pub records: u64,
    /// The resource's sensitivity, when known.
    pub sensitivity: Option<Sensitivity>,
    /// For exports: where the data went.
    pub destination: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The access rules, as configuration (`[access]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRules {
    /// Reads/exports of one principal within this window form its baseline.
    #[serde(with = "humantime_serde")]
    pub baseline_window: Duration,
    /// Earlier accesses needed before the statistical threshold applies.
    pub baseline_min_samples: u32,
    /// Standard deviations above the mean that count as bulk.
    pub bulk_z: f64,
    /// Records below this are never bulk.
    pub bulk_floor: u64,
    /// Allowed sensitivity of principals not listed in `principals`.
    pub default_allowed_sensitivity: Sensitivity,
    /// Allowed sensitivity per principal.
    #[serde(default)]
    pub principals: BTreeMap<String, Sensitivity>,
    /// Business hours, UTC, as `"HH:MM-HH:MM"`.
    pub business_hours: String,
    /// Business days (`mon` … `sun`).
    pub business_days: Vec<String>,
    /// Records at or above which an off-hours read/export is a finding.
    pub off_hours_records: u64,
    /// Allowed export destination prefixes.
    #[serde(default)]
    pub export_allow: Vec<String>,
}

impl AccessRules {
    /// Checks the values that parse but are not usable.
    ///
    /// # Errors
    /// `(key under [access], message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.baseline_window.is_zero() {
            return Err(("baseline_window".into(), "must be greater than 0".into()));
        }
        if !self.bulk_z.is_finite() || self.bulk_z <= 0.0 {
            return Err(("bulk_z".into(), "must be a number greater than 0".into()));
        }
        self.hours()
            .map_err(|m| ("business_hours".to_string(), m))?;
        for (i, d) in self.business_days.iter().enumerate() {
            if parse_day(d).is_none() {
                return Err((
                    format!("business_days[{i}]"),
                    format!("'{d}' is not a day; use mon, tue, wed, thu, fri, sat or sun"),
                ));
            }
        }
        Ok(())
    }

    fn hours(&self) -> Result<(NaiveTime, NaiveTime), String> {
        let bad = || {
            format!(
                "'{}' is not a range of UTC times like \"08:00-19:00\"",
                self.business_hours
            )
        };
        let (a, b) = self.business_hours.split_once('-').ok_or_else(bad)?;
        let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
        let b = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
        Ok((a, b))
    }

    fn off_hours(&self, at: DateTime<Utc>) -> bool {
        let day_ok = self
            .business_days
            .iter()
            .filter_map(|d| parse_day(d))
            .any(|d| d == at.weekday());
        let Ok((a, b)) = self.hours() else {
            return !day_ok;
        };
        let t = NaiveTime::from_hms_opt(at.hour(), at.minute(), 0).unwrap_or(a);
        let in_hours = if a <= b {
            t >= a && t < b
        } else {
            t >= a || t < b
        };
        !(day_ok && in_hours)
    }

    /// The allowed sensitivity of `principal`.
    pub fn allowed(&self, principal: &str) -> Sensitivity {
        self.principals
            .get(principal)
            .copied()
            .unwrap_or(self.default_allowed_sensitivity)
    }
}

fn parse_day(d: &str) -> Option<Weekday> {
    match d.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Some(Weekday::Mon),
        "tue" => Some(Weekday::Tue),
        "wed" => Some(Weekday::Wed),
        "thu" => Some(Weekday::Thu),
        "fri" => Some(Weekday::Fri),
        "sat" => Some(Weekday::Sat),
        "sun" => Some(Weekday::Sun),
        _ => None,
    }
}

/// Which access rule fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessFindingKind {
    /// More records than the principal's baseline allows.
    BulkAccess,
    /// Above the principal's allowed sensitivity.
    SensitivityExceeded,
    /// Bulk access outside business hours.
    OffHoursBulk,
    /// The principal is under containment.
    ContainedPrincipal,
    /// Export to a destination not on the allow list.
    ExportNotAllowed,
    /// The principal is rate-limited and over its bucket.
    RateLimited,
}

impl AccessFindingKind {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessFindingKind::BulkAccess => "bulk_access",
            AccessFindingKind::SensitivityExceeded => "sensitivity_exceeded",
            AccessFindingKind::OffHoursBulk => "off_hours_bulk",
            AccessFindingKind::ContainedPrincipal => "contained_principal",
            AccessFindingKind::ExportNotAllowed => "export_not_allowed",
            AccessFindingKind::RateLimited => "rate_limited",
        }
    }
}

/// One finding with a sentence for the evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessFinding {
    /// Which rule.
    pub kind: AccessFindingKind,
    /// What was seen.
    pub detail: String,
}

/// Per-principal bulk baselines.
#[derive(Debug, Default)]
pub struct AccessMonitor {
    history: HashMap<String, VecDeque<(DateTime<Utc>, u64)>>,
}

impl AccessMonitor {
    /// An empty monitor.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bulk threshold for `principal` at `now` (before recording a new access).
    pub fn bulk_threshold(
        &mut self,
        principal: &str,
        rules: &AccessRules,
        now: DateTime<Utc>,
    ) -> f64 {
        let floor = rules.bulk_floor as f64;
        let Some(h) = self.history.get_mut(principal) else {
            return floor;
        };
        let from = now - TimeDelta::from_std(rules.baseline_window).unwrap_or(TimeDelta::MAX);
        while h.front().is_some_and(|(t, _)| *t < from) {
            h.pop_front();
        }
        if h.len() < rules.baseline_min_samples.max(2) as usize {
            return floor;
        }
        let n = h.len() as f64;
        let mean = h.iter().map(|(_, r)| *r as f64).sum::<f64>() / n;
        let var = h
            .iter()
            .map(|(_, r)| (*r as f64 - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        (mean + rules.bulk_z * var.sqrt()).max(floor)
    }

    /// Checks `a` against the rules, then records it in the principal's baseline.
    pub fn observe(
        &mut self,
        a: &Access,
        rules: &AccessRules,
        contained: bool,
    ) -> Vec<AccessFinding> {
        let mut out = Vec::new();
        let bulky = matches!(a.action, AccessAction::Read | AccessAction::Export);
        if bulky {
            let limit = self.bulk_threshold(&a.principal, rules, a.at);
            if a.records as f64 > limit {
                out.push(AccessFinding {
                    kind: AccessFindingKind::BulkAccess,
                    detail: format!(
                        "{} {} {} records of {} (threshold {limit:.0}: max of floor {} and baseline mean + {} sd)",
                        a.principal,
                        past(a.action),
                        a.records,
                        a.resource,
                        rules.bulk_floor,
                        rules.bulk_z
                    ),
                });
            }
            if a.records >= rules.off_hours_records && rules.off_hours(a.at) {
                out.push(AccessFinding {
                    kind: AccessFindingKind::OffHoursBulk,
                    detail: format!(
                        "{} {} {} records of {} at {} UTC, outside business hours {} on {}",
                        a.principal,
                        past(a.action),
                        a.records,
                        a.resource,
                        a.at.format("%a %H:%M"),
                        rules.business_hours,
                        rules.business_days.join("/")
                    ),
                });
            }
            let h = self.history.entry(a.principal.clone()).or_default();
            if h.len() >= MAX_HISTORY {
                h.pop_front();
            }
            h.push_back((a.at, a.records));
        }
        if let Some(s) = a.sensitivity {
            let allowed = rules.allowed(&a.principal);
            if s > allowed {
                out.push(AccessFinding {
                    kind: AccessFindingKind::SensitivityExceeded,
                    detail: format!(
                        "{} accessed {} ({s}) but is allowed up to {allowed}",
                        a.principal, a.resource
                    ),
                });
            }
        }
        if contained {
            out.push(AccessFinding {
                kind: AccessFindingKind::ContainedPrincipal,
                detail: format!(
                    "{} is under containment and {} {}",
                    a.principal,
                    past(a.action),
                    a.resource
                ),
            });
        }
        if a.action == AccessAction::Export {
            let dest = a.destination.as_deref().map(str::trim).unwrap_or("");
            let ok = !dest.is_empty()
                && rules
                    .export_allow
                    .iter()
                    .any(|p| !p.is_empty() && dest.starts_with(p.as_str()));
            if !ok {
                out.push(AccessFinding {
                    kind: AccessFindingKind::ExportNotAllowed,
                    detail: format!(
                        "{} exported {} to {} which is not on the export allow list",
                        a.principal,
                        a.resource,
                        if dest.is_empty() {
                            "an unnamed destination".to_string()
                        } else {
                            format!("'{}'", crate::domain::incident::truncate_chars(dest, 120))
                        }
                    ),
                });
            }
        }
        out
    }
}

fn past(a: AccessAction) -> &'static str {
    match a {
        AccessAction::Read => "read",
        AccessAction::Export => "exported",
        AccessAction::Write => "wrote",
        AccessAction::Delete => "deleted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rules() -> AccessRules {
        AccessRules {
            baseline_window: Duration::from_secs(7 * 86400),
            baseline_min_samples: 10,
            bulk_z: 3.0,
            bulk_floor: 500,
            default_allowed_sensitivity: Sensitivity::Internal,
            principals: [("hr-bot".to_string(), Sensitivity::Confidential)].into(),
            business_hours: "08:00-19:00".into(),
            business_days: ["mon", "tue", "wed", "thu", "fri"]
                .map(String::from)
                .to_vec(),
            off_hours_records: 100,
            export_allow: vec!["s3://corp-backups/".into()],
        }
    }

    fn acc(at: DateTime<Utc>, action: AccessAction, records: u64) -> Access {
        Access {
            principal: "alice".into(),
            resource: "crm.clients".into(),
            action,
            records,
            sensitivity: None,
            destination: None,
            at,
        }
    }

    fn kinds(f: &[AccessFinding]) -> Vec<AccessFindingKind> {
        f.iter().map(|f| f.kind).collect()
    }

    #[test]
    fn bulk_uses_the_floor_then_the_baseline() {
        // Tuesday 10:00 UTC
        let t0 = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let mut m = AccessMonitor::new();
        let r = rules();
        assert!(
            m.observe(&acc(t0, AccessAction::Read, 400), &r, false)
                .is_empty()
        );
        assert_eq!(
            kinds(&m.observe(&acc(t0, AccessAction::Read, 600), &r, false)),
            vec![AccessFindingKind::BulkAccess]
        );
        // a principal that routinely reads ~2000 is not flagged at 2100
        let mut m = AccessMonitor::new();
        for i in 0..20 {
            let n = 1900 + (i % 5) * 50;
            m.observe(
                &acc(t0 + TimeDelta::minutes(i as i64), AccessAction::Read, n),
                &r,
                false,
            );
        }
        let t = t0 + TimeDelta::hours(1);
        assert!(
            m.observe(&acc(t, AccessAction::Read, 2100), &r, false)
                .is_empty()
        );
        assert_eq!(
            kinds(&m.observe(&acc(t, AccessAction::Read, 50_000), &r, false)),
            vec![AccessFindingKind::BulkAccess]
        );
    }

    #[test]
    fn sensitivity_off_hours_containment_and_exports() {
        let sat_night = Utc.with_ymd_and_hms(2026, 12, 5, 2, 0, 0).unwrap();
        let tue = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
        let mut m = AccessMonitor::new();
        let r = rules();
        assert_eq!(
            kinds(&m.observe(&acc(sat_night, AccessAction::Read, 150), &r, false)),
            vec![AccessFindingKind::OffHoursBulk]
        );
        let mut a = acc(tue, AccessAction::Read, 1);
        a.sensitivity = Some(Sensitivity::Restricted);
        assert_eq!(
            kinds(&m.observe(&a, &r, true)),
            vec![
                AccessFindingKind::SensitivityExceeded,
                AccessFindingKind::ContainedPrincipal
            ]
        );
        a.principal = "hr-bot".into();
        a.sensitivity = Some(Sensitivity::Confidential);
        assert!(m.observe(&a, &r, false).is_empty());
        let mut e = acc(tue, AccessAction::Export, 10);
        e.destination = Some("s3://corp-backups/nightly".into());
        assert!(m.observe(&e, &r, false).is_empty());
        e.destination = Some("https://paste.example/x".into());
        assert_eq!(
            kinds(&m.observe(&e, &r, false)),
            vec![AccessFindingKind::ExportNotAllowed]
        );
        e.destination = None;
        assert_eq!(
            kinds(&m.observe(&e, &r, false)),
            vec![AccessFindingKind::ExportNotAllowed]
        );
    }

    #[test]
    fn rules_validate_hours_and_days() {
        let mut r = rules();
        assert!(r.validate().is_ok());
        r.business_hours = "8-19".into();
        assert_eq!(r.validate().unwrap_err().0, "business_hours");
        r = rules();
        r.business_days.push("funday".into());
        assert_eq!(r.validate().unwrap_err().0, "business_days[5]");
    }
}
