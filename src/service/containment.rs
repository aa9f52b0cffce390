//! Containment that takes effect: blocking an incident's user and/or session (later screenings
//! for them return `block`), revoking its API key (later use is evidence), rate-limiting its
//! principal (a token bucket `screen_prompt` and `record_access` enforce) and isolating its
//! upstream (the probes refuse it); lifting them; all recorded on the timeline.
//!
//! May import: `crate::domain`, `crate::store`, `crate::service`.

use crate::domain::incident::{self, EventKind, Incident, Status, WorkflowStep};
use crate::service::{CONTAIN_ACTIONS, IncidentService, ServiceError, clean, conflict, invalid};
use crate::store::ActiveContainment;

impl IncidentService {
    // -----------------------------------------------------------------------------------------
    // Containment
    // -----------------------------------------------------------------------------------------

    /// Blocks the incident's affected user and/or session: later `screen_prompt` calls for them
    /// return `block` until [`IncidentService::lift_containment`].
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] for an unknown action or when the incident names no such
    /// subject; [`ServiceError::Conflict`] when already blocked or resolved.
    pub async fn contain(
        &self,
        id: &str,
        action: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let action = action.trim().to_ascii_lowercase();
        if !CONTAIN_ACTIONS.contains(&action.as_str()) {
            return Err(invalid(
                "action",
                format!(
                    "'{}' is not one of: {}",
                    incident::truncate_chars(&action, 40),
                    CONTAIN_ACTIONS.join(", ")
                ),
            ));
        }
        let (inc, _) = self.get(id).await?;
        let mut subjects = Vec::new();
        if let Some(s) = extended_subject(&inc, &action)? {
            subjects.push(s);
        } else if action != "block_session" {
            match inc.affected_user() {
                Some(u) => subjects.push(("user".to_string(), u.to_string())),
                None if action == "block_user" => {
                    return Err(invalid(
                        "action",
                        format!(
                            "incident {} names no affected user_id; use block_session",
                            inc.id()
                        ),
                    ));
                }
                None => {}
            }
        }
        if action != "block_user" {
            match inc.affected_session() {
                Some(s) => subjects.push(("session".to_string(), s.to_string())),
                None if action == "block_session" => {
                    return Err(invalid(
                        "action",
                        format!(
                            "incident {} names no affected session_id; use block_user",
                            inc.id()
                        ),
                    ));
                }
                None => {}
            }
        }
        if subjects.is_empty() {
            return Err(invalid(
                "action",
                format!(
                    "incident {} names no affected user_id or session_id, so there is nothing to block",
                    inc.id()
                ),
            ));
        }
        let active = self
            .store
            .active_containments_where(None, None, Some(inc.id().clone()))
            .await?;
        subjects.retain(|(k, s)| {
            !active
                .iter()
                .any(|a| &a.incident_id == inc.id() && &a.subject_kind == k && &a.subject == s)
        });
        if subjects.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "incident {} already blocks these subjects; lift_containment first to change it",
                inc.id()
            )));
        }
        let reason = clean("reason", reason, 500)?
            .unwrap_or_else(|| format!("contained by {actor} for incident {}", inc.id()));
        let now = self.now();
        let act = action.clone();
        Ok(self
            .store
            .update(
                inc.id(),
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    if inc.status().is_terminal() {
                        return Err(conflict(format!(
                            "incident {} is {}; containment applies to open incidents",
                            inc.id(),
                            inc.status()
                        )));
                    }
                    let mut ev: Vec<EventKind> = subjects
                        .into_iter()
                        .map(|(subject_kind, subject)| EventKind::Contained {
                            action: act.clone(),
                            subject_kind,
                            subject,
                            reason: reason.clone(),
                        })
                        .collect();
                    if inc.status().allowed_next().contains(&Status::Contained) {
                        ev.push(inc.transition(Status::Contained, now)?);
                    }
                    ev.extend(inc.enter_step(WorkflowStep::Containment, now));
                    inc.touch(now);
                    Ok(ev)
                }),
            )
            .await?)
    }

    /// Lifts every containment the incident imposed.
    ///
    /// # Errors
    /// [`ServiceError::Conflict`] when none is in force.
    pub async fn lift_containment(
        &self,
        id: &str,
        reason: Option<String>,
        actor: &str,
    ) -> Result<Incident, ServiceError> {
        let (inc, _) = self.get(id).await?;
        let active: Vec<ActiveContainment> = self
            .store
            .active_containments_where(None, None, Some(inc.id().clone()))
            .await?;
        if active.is_empty() {
            return Err(ServiceError::Conflict(format!(
                "incident {} has no containment in force; nothing to lift",
                inc.id()
            )));
        }
        let reason = clean("reason", reason, 500)?.unwrap_or_else(|| format!("lifted by {actor}"));
        let now = self.now();
        Ok(self
            .store
            .update(
                inc.id(),
                actor.to_string(),
                now,
                Box::new(move |inc| {
                    inc.touch(now);
                    Ok(active
                        .into_iter()
                        .map(|a| EventKind::ContainmentLifted {
                            action: a.action,
                            subject_kind: a.subject_kind,
                            subject: a.subject,
                            reason: reason.clone(),
                        })
                        .collect())
                }),
            )
            .await?)
    }
}

/// The subject of `revoke_key` (the incident's `key:` tag), `rate_limit` (its affected user, else
/// its `principal:` or `source:` tag) and `isolate_upstream` (its `upstream:` tag, else its
/// affected system); `None` for the block actions.
fn extended_subject(
    inc: &Incident,
    action: &str,
) -> Result<Option<(String, String)>, ServiceError> {
    let tag = |prefix: &str| {
        inc.tags()
            .iter()
            .find_map(|t| t.strip_prefix(prefix).map(str::to_string))
    };
    let missing = |what: &str| {
        Err(invalid(
            "action",
            format!(
                "incident {} names no {what}, so {action} has nothing to act on",
                inc.id()
            ),
        ))
    };
    match action {
        "revoke_key" => match tag("key:") {
            Some(k) => Ok(Some(("key".into(), k))),
            None => missing("API key (a key: tag, set by record_key_usage incidents)"),
        },
        "rate_limit" => match inc
            .affected_user()
            .map(str::to_string)
            .or_else(|| tag("principal:"))
            .or_else(|| tag("source:"))
        {
            Some(p) => Ok(Some(("principal".into(), p))),
            None => missing("affected user, principal or source"),
        },
        "isolate_upstream" => match tag("upstream:") {
            Some(u) => Ok(Some(("upstream".into(), u))),
            None => missing("upstream (an upstream: tag, set by upstream probe incidents)"),
        },
        _ => Ok(None),
    }
}
