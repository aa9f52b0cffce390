//! The projection check: folds the timeline into the state it implies for each incident
//! (status, severity, escalation level, owner, resolution, containments in force) and compares
//! that with the stored `incidents` and `containments` rows, which the hash chain does not
//! cover. A row changed, added or deleted in SQL without a matching event shows up as a
//! [`Mismatch`] naming the incident and the field.
//!
//! The fold mirrors how each use case changes an incident and which events it records (see
//! [`Implied::apply`]); a test runs every lifecycle path and expects no mismatch.
//!
//! Owns: [`Projector`] (the fold), [`StoredIncident`] / [`StoredContainment`] (what the store
//! read), [`compare`]. Pure: no I/O.
//!
//! May import: std, serde, `crate::domain::incident`.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::domain::incident::{EventKind, Status};

/// Most mismatches listed in a report (the count is always exact).
pub const MAX_LISTED: usize = 100;

/// A containment: `(subject_kind, subject)`, e.g. `("user", "u-42")`.
pub type Subject = (String, String);

/// The state the events imply for one incident.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Implied {
    /// `None` until a `created` event was seen.
    pub status: Option<String>,
    pub severity: Option<String>,
    pub level: u8,
    pub owner: Option<String>,
    pub resolution: Option<String>,
    /// Containments in force.
    pub contained: BTreeSet<Subject>,
    classified: bool,
    /// The previous event was a status change to something other than `acknowledged`, in the
    /// same write (same time and actor).
    after_other_status_change: Option<String>,
}

impl Implied {
    /// Applies one event, as the use case that recorded it changed the incident:
    /// - `created`: status new, its severity, level 1;
    /// - the first `classified`: the policy's severity and start level (later ones, after a
    ///   severity update, set the severity; escalations follow as their own events);
    /// - `status_changed`, `escalated`, `severity_changed`: the new value;
    /// - `field_updated` of `severity`, `owner` or `resolution`: the new value;
    /// - `acknowledged`: the responder becomes owner if there is none — except when it follows
    ///   a status change to another status (`update_incident` moving an unacknowledged
    ///   incident on records the acknowledgement without taking ownership);
    /// - `resolved`: the resolution;
    /// - `contained` / `containment_lifted`: the subject is blocked / free again.
    ///
    /// `write` names the write the event belongs to (its time and actor): events of one use
    /// case share it.
    pub fn apply(&mut self, ev: &EventKind, write: &str) {
        let mut other_status_change = false;
        match ev {
            EventKind::Created { severity, .. } => {
                self.status = Some(Status::New.as_str().into());
                self.severity = Some(severity.as_str().into());
                self.level = 1;
            }
            EventKind::Classified {
                severity,
                start_level,
                ..
            } => {
                self.severity = Some(severity.as_str().into());
                if !self.classified {
                    self.level = self.level.max(*start_level);
                    self.classified = true;
                }
            }
            EventKind::StatusChanged { to, .. } => {
                self.status = Some(to.as_str().into());
                other_status_change = *to != Status::Acknowledged;
            }
            EventKind::Escalated { to, .. } => self.level = *to,
            EventKind::SeverityChanged { to, .. } => self.severity = Some(to.as_str().into()),
            EventKind::FieldUpdated { field, value } => match field.as_str() {
                "severity" => self.severity = Some(value.clone()),
                "owner" => self.owner = Some(value.clone()),
                "resolution" => self.resolution = Some(value.clone()),
                _ => {}
            },
            EventKind::Acknowledged { by }
                if self.owner.is_none()
                    && self.after_other_status_change.as_deref() != Some(write) =>
            {
                self.owner = Some(by.clone());
            }
            EventKind::Resolved { resolution, .. } => self.resolution = Some(resolution.clone()),
            EventKind::Contained {
                subject_kind,
                subject,
                ..
            } => {
                self.contained
                    .insert((subject_kind.clone(), subject.clone()));
            }
            EventKind::ContainmentLifted {
                subject_kind,
                subject,
                ..
            } => {
                self.contained
                    .remove(&(subject_kind.clone(), subject.clone()));
            }
            _ => {}
        }
        self.after_other_status_change = other_status_change.then(|| write.to_string());
    }
}

/// Folds events, in chain order, into the state they imply per incident.
#[derive(Debug, Default)]
pub struct Projector {
    incidents: BTreeMap<String, Implied>,
    /// Events whose body is not a known event (seq, incident id).
    undecodable: Vec<(i64, String)>,
}

impl Projector {
    /// Adds one stored event (its body is the JSON of an [`EventKind`]); `write` is its time and
    /// actor (see [`Implied::apply`]).
    pub fn push(&mut self, seq: i64, incident_id: &str, write: &str, data: &str) {
        match serde_json::from_str::<EventKind>(data) {
            Ok(ev) => self
                .incidents
                .entry(incident_id.to_string())
                .or_default()
                .apply(&ev, write),
            Err(_) => self.undecodable.push((seq, incident_id.to_string())),
        }
    }

    /// A projector from a fold done elsewhere (the parallel verifier folds into a hash map):
    /// the implied state per incident and the events whose body is not a known event
    /// `(seq, incident id)`, in chain order.
    pub fn from_parts(
        incidents: BTreeMap<String, Implied>,
        undecodable: Vec<(i64, String)>,
    ) -> Projector {
        Projector {
            incidents,
            undecodable,
        }
    }

    /// The implied state per incident id.
    pub fn implied(&self) -> &BTreeMap<String, Implied> {
        &self.incidents
    }
}

/// What the store holds for one incident: the indexed columns and the JSON body (the body is
/// what `get_incident` returns, the columns are what `list_incidents` filters on).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredIncident {
    pub id: String,
    pub status_column: String,
    pub severity_column: String,
    pub level_column: i64,
    /// `None` when the body is not a JSON object.
    pub body: Option<StoredBody>,
}

/// Fields read from an incident's JSON body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredBody {
    pub status: Option<String>,
    pub severity: Option<String>,
    pub level: Option<i64>,
    pub owner: Option<String>,
    pub resolution: Option<String>,
}

/// A containment row in force (not lifted).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StoredContainment {
    pub incident_id: String,
    pub subject_kind: String,
    pub subject: String,
}

/// One difference between the rows and the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mismatch {
    /// The incident concerned.
    pub incident_id: String,
    /// `status`, `severity`, `level`, `owner`, `resolution`, `containment`, or `incident` (the
    /// row itself is missing or has no events).
    pub field: String,
    /// Where the stored value is: `incidents.status` (column), `incidents.body`, `containments`.
    pub place: String,
    /// What the events imply.
    pub expected: String,
    /// What is stored.
    pub found: String,
}

/// The outcome of [`compare`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionReport {
    /// True when every incident and containment row matches the timeline.
    pub ok: bool,
    /// Incidents compared (with rows or with events).
    pub incidents_checked: u64,
    /// How many mismatches there are.
    pub mismatch_count: u64,
    /// The first [`MAX_LISTED`] mismatches.
    pub mismatches: Vec<Mismatch>,
}

fn show(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "(none)".into())
}

/// Compares the stored rows with the implied state.
pub fn compare(
    p: &Projector,
    incidents: &[StoredIncident],
    containments: &[StoredContainment],
) -> ProjectionReport {
    let mut out: Vec<Mismatch> = Vec::new();
    let mut push = |id: &str, field: &str, place: &str, expected: String, found: String| {
        out.push(Mismatch {
            incident_id: id.to_string(),
            field: field.to_string(),
            place: place.to_string(),
            expected,
            found,
        });
    };
    for (seq, id) in &p.undecodable {
        push(
            id,
            "event",
            "events.data",
            "a known event".into(),
            format!("event {seq} whose body cannot be read"),
        );
    }
    let mut rows: BTreeSet<&str> = BTreeSet::new();
    for s in incidents {
        rows.insert(s.id.as_str());
        let Some(imp) = p.incidents.get(&s.id).filter(|i| i.status.is_some()) else {
            push(
                &s.id,
                "incident",
                "incidents",
                "no incident (no created event)".into(),
                "a row".into(),
            );
            continue;
        };
        let (st, sev) = (show(&imp.status), show(&imp.severity));
        if s.status_column != st {
            push(
                &s.id,
                "status",
                "incidents.status",
                st.clone(),
                s.status_column.clone(),
            );
        }
        if s.severity_column != sev {
            push(
                &s.id,
                "severity",
                "incidents.severity",
                sev.clone(),
                s.severity_column.clone(),
            );
        }
        if s.level_column != i64::from(imp.level) {
            push(
                &s.id,
                "level",
                "incidents.level",
                imp.level.to_string(),
                s.level_column.to_string(),
            );
        }
        let Some(b) = &s.body else {
            push(
                &s.id,
                "body",
                "incidents.body",
                "the incident as JSON".into(),
                "unreadable".into(),
            );
            continue;
        };
        let body = "incidents.body";
        if b.status.as_deref() != imp.status.as_deref() {
            push(&s.id, "status", body, st, show(&b.status));
        }
        if b.severity.as_deref() != imp.severity.as_deref() {
            push(&s.id, "severity", body, sev, show(&b.severity));
        }
        if b.level != Some(i64::from(imp.level)) {
            push(
                &s.id,
                "level",
                body,
                imp.level.to_string(),
                b.level.map_or("(none)".into(), |l| l.to_string()),
            );
        }
        if b.owner != imp.owner {
            push(&s.id, "owner", body, show(&imp.owner), show(&b.owner));
        }
        if b.resolution != imp.resolution {
            push(
                &s.id,
                "resolution",
                body,
                show(&imp.resolution),
                show(&b.resolution),
            );
        }
    }
    for (id, imp) in &p.incidents {
        if imp.status.is_some() && !rows.contains(id.as_str()) {
            push(
                id,
                "incident",
                "incidents",
                format!("a row (status {})", show(&imp.status)),
                "no row: it was deleted".into(),
            );
        }
    }
    let stored: BTreeSet<(&str, &str, &str)> = containments
        .iter()
        .map(|c| {
            (
                c.incident_id.as_str(),
                c.subject_kind.as_str(),
                c.subject.as_str(),
            )
        })
        .collect();
    let implied: BTreeSet<(&str, &str, &str)> = p
        .incidents
        .iter()
        .flat_map(|(id, i)| {
            i.contained
                .iter()
                .map(move |(k, s)| (id.as_str(), k.as_str(), s.as_str()))
        })
        .collect();
    for (id, k, s) in implied.difference(&stored) {
        push(
            id,
            "containment",
            "containments",
            format!("{k} {s} blocked"),
            "no containment row in force: it was deleted or lifted without an event".into(),
        );
    }
    for (id, k, s) in stored.difference(&implied) {
        push(
            id,
            "containment",
            "containments",
            format!("{k} {s} not blocked"),
            "a containment row in force that no event backs".into(),
        );
    }
    let n = out.len();
    out.truncate(MAX_LISTED);
    let checked = rows
        .iter()
        .copied()
        .chain(p.incidents.keys().map(String::as_str))
        .collect::<BTreeSet<_>>()
        .len();
    ProjectionReport {
        ok: n == 0,
        incidents_checked: checked as u64,
        mismatch_count: n as u64,
        mismatches: out,
    }
}

/// The containments the events imply for these subjects, in chain order of imposition:
/// `(incident_id, subject_kind, subject, seq of the contained event)`. Used by screening so a
/// containment row that no event backs blocks nobody, and a deleted row still blocks.
#[derive(Debug, Default)]
pub struct ContainmentFold {
    active: BTreeMap<(String, String, String), i64>,
}

impl ContainmentFold {
    /// Adds one `contained` or `containment_lifted` event (others are ignored).
    pub fn push(&mut self, seq: i64, incident_id: &str, data: &str) {
        match serde_json::from_str::<EventKind>(data) {
            Ok(EventKind::Contained {
                subject_kind,
                subject,
                ..
            }) => {
                self.active
                    .entry((incident_id.to_string(), subject_kind, subject))
                    .or_insert(seq);
            }
            Ok(EventKind::ContainmentLifted {
                subject_kind,
                subject,
                ..
            }) => {
                self.active
                    .remove(&(incident_id.to_string(), subject_kind, subject));
            }
            _ => {}
        }
    }

    /// `(incident_id, subject_kind, subject, seq)` in force, oldest first.
    pub fn in_force(&self) -> Vec<(String, String, String, i64)> {
        let mut v: Vec<_> = self
            .active
            .iter()
            .map(|((i, k, s), seq)| (i.clone(), k.clone(), s.clone(), *seq))
            .collect();
        v.sort_by_key(|t| t.3);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::incident::{DetectionMethod, IncidentType, Severity};

    fn ev(p: &mut Projector, seq: i64, e: EventKind) {
        // events 2 and 3 are one write, the others one write each
        let write = if seq == 3 {
            "w2".into()
        } else {
            format!("w{seq}")
        };
        p.push(seq, "INC-1", &write, &serde_json::to_string(&e).unwrap());
    }

    fn created(p: &mut Projector) {
        ev(
            p,
            1,
            EventKind::Created {
                incident_type: IncidentType::Security,
                category: None,
                severity: Severity::High,
                title: "t".into(),
                detection_method: DetectionMethod::ManualReport,
                reporter: None,
            },
        );
    }

    fn row(status: &str, sev: &str, level: i64, owner: Option<&str>) -> StoredIncident {
        StoredIncident {
            id: "INC-1".into(),
            status_column: status.into(),
            severity_column: sev.into(),
            level_column: level,
            body: Some(StoredBody {
                status: Some(status.into()),
                severity: Some(sev.into()),
                level: Some(level),
                owner: owner.map(String::from),
                resolution: None,
            }),
        }
    }

    #[test]
    fn matching_rows_pass_and_each_field_is_named() {
        let mut p = Projector::default();
        created(&mut p);
        ev(
            &mut p,
            2,
            EventKind::Acknowledged {
                by: "ann@example.com".into(),
            },
        );
        let good = row("new", "high", 1, Some("ann@example.com"));
        assert!(compare(&p, std::slice::from_ref(&good), &[]).ok);
        let mut bad = row("closed", "low", 1, Some("ann@example.com"));
        bad.body.as_mut().unwrap().status = Some("new".into());
        let r = compare(&p, &[bad], &[]);
        let fields: Vec<_> = r
            .mismatches
            .iter()
            .map(|m| (m.field.as_str(), m.place.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("status", "incidents.status"),
                ("severity", "incidents.severity"),
                ("severity", "incidents.body")
            ]
        );
        assert_eq!(r.mismatches[0].expected, "new");
        assert_eq!(r.mismatches[0].found, "closed");
    }

    #[test]
    fn deleted_and_forged_rows_are_reported() {
        let mut p = Projector::default();
        created(&mut p);
        let r = compare(&p, &[], &[]);
        assert_eq!(r.mismatches[0].field, "incident");
        let mut forged = row("new", "high", 1, None);
        forged.id = "INC-2".into();
        let r = compare(&p, &[row("new", "high", 1, None), forged], &[]);
        assert_eq!(r.mismatch_count, 1);
        assert_eq!(r.mismatches[0].incident_id, "INC-2");
    }

    #[test]
    fn containments_follow_the_events() {
        let mut p = Projector::default();
        created(&mut p);
        let c = |kind: &str| EventKind::Contained {
            action: "block_user".into(),
            subject_kind: kind.into(),
            subject: "u1".into(),
            reason: "r".into(),
        };
        ev(&mut p, 2, c("user"));
        let held = StoredContainment {
            incident_id: "INC-1".into(),
            subject_kind: "user".into(),
            subject: "u1".into(),
        };
        let r0 = row("new", "high", 1, None);
        assert!(compare(&p, std::slice::from_ref(&r0), std::slice::from_ref(&held)).ok);
        let r = compare(&p, std::slice::from_ref(&r0), &[]);
        assert_eq!(r.mismatches[0].field, "containment");
        ev(
            &mut p,
            3,
            EventKind::ContainmentLifted {
                action: "block_user".into(),
                subject_kind: "user".into(),
                subject: "u1".into(),
                reason: "r".into(),
            },
        );
        assert!(compare(&p, std::slice::from_ref(&r0), &[]).ok);
        assert!(!compare(&p, &[r0], &[held]).ok);
    }

    #[test]
    fn acknowledgement_after_another_status_change_takes_no_ownership() {
        let mut p = Projector::default();
        created(&mut p);
        ev(
            &mut p,
            2,
            EventKind::StatusChanged {
                from: Status::New,
                to: Status::Investigating,
            },
        );
        ev(&mut p, 3, EventKind::Acknowledged { by: "bob".into() });
        assert_eq!(p.implied()["INC-1"].owner, None);
        // the same status change in an earlier write does not matter (acknowledge_incident
        // on a contained incident takes ownership)
        let mut q = Projector::default();
        created(&mut q);
        ev(
            &mut q,
            2,
            EventKind::StatusChanged {
                from: Status::New,
                to: Status::Contained,
            },
        );
        ev(&mut q, 4, EventKind::Acknowledged { by: "bob".into() });
        assert_eq!(q.implied()["INC-1"].owner.as_deref(), Some("bob"));
        ev(
            &mut p,
            4,
            EventKind::FieldUpdated {
                field: "owner".into(),
                value: "cy".into(),
            },
        );
        assert_eq!(p.implied()["INC-1"].owner.as_deref(), Some("cy"));
    }
}
