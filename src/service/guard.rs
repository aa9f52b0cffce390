//! Guard-proxy use cases (issue #12): what `ai-incident-mcp proxy` asks of the service for the
//! live traffic between an agent and an upstream MCP server. Screening of the string leaves of
//! tool arguments (`source = user`), tool results (`source = tool_output`) and tool descriptions,
//! with the JSON path of every flagged leaf kept as evidence; containment lookups (user, session,
//! `isolate_upstream`); per-call performance samples (`upstream:<name>`); `mcp_protocol_failure`
//! incidents for crashes, hangs and protocol errors (dedup key shared with the upstream probes);
//! and pinning of the live tool list in `[proxy] pin_lock`, with changed or new tools opening
//! `tool_poisoning` incidents and waiting in `<pin_lock>.pending` for `approve_catalog_change`.
//!
//! May import: `crate::domain`, `crate::detect`, `crate::checks`, `crate::store`, `crate::config`,
//! `crate::service`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::checks::dataquality::PinLock;
use crate::checks::upstreams::FailureKind;
use crate::detect::{Source, Verdict};
use crate::domain::incident::{
    self, DetectionMethod, EventKind, Evidence, Incident, IncidentId, IncidentType, NewIncident,
    Severity,
};
use crate::domain::kind::IncidentKind;
use crate::service::{Fault, IncidentService, MetricsInput, ScreenInput, ServiceError};

/// Which part of the traffic a text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `tools/call` arguments (screened as `source = user`).
    Arguments,
    /// A tool result (screened as `source = tool_output`).
    Result,
    /// A tool description in `tools/list` (screened as `source = tool_output`: an indirect
    /// injection reaches the model the same way).
    Description,
    /// The contents of a `resources/read` answer (screened as `source = tool_output`).
    Resource,
    /// The messages of a `prompts/get` answer (screened as `source = tool_output`).
    Prompt,
}

impl Direction {
    fn source(self) -> Source {
        match self {
            Direction::Arguments => Source::User,
            Direction::Result
            | Direction::Description
            | Direction::Resource
            | Direction::Prompt => Source::ToolOutput,
        }
    }
    /// `arguments`, `result`, `description`, `resource` or `prompt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Arguments => "arguments",
            Direction::Result => "result",
            Direction::Description => "description",
            Direction::Resource => "resource",
            Direction::Prompt => "prompt",
        }
    }
}

/// Texts of one message to screen: the string leaves with their JSON paths.
#[derive(Debug, Clone)]
pub struct TrafficInput {
    /// Upstream name (`--name`).
    pub upstream: String,
    /// Tool name; for a resource its URI, for a prompt `prompt:<name>`.
    pub tool: String,
    /// Where the leaves come from.
    pub direction: Direction,
    /// `(JSON path, text)` of each string leaf, e.g. `("$.query", "…")`.
    pub leaves: Vec<(String, String)>,
    /// The user the agent acts for, if known.
    pub user_id: Option<String>,
    /// The agent's session, if known.
    pub session_id: Option<String>,
}

/// One leaf the engine flagged or blocked.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafFinding {
    /// JSON path of the leaf.
    pub path: String,
    /// The engine's verdict (flag or block).
    pub verdict: Verdict,
    /// Categories at or above the flag threshold, highest first.
    pub categories: Vec<String>,
    /// How many credentials the leaf exposes.
    pub secrets: usize,
    /// Risk score.
    pub risk: f32,
}

/// What the engine said about one message (no store involved).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficScreen {
    /// Findings, one per flagged or blocked leaf.
    pub findings: Vec<LeafFinding>,
}

impl TrafficScreen {
    /// The strongest verdict over every leaf (`Allow` when nothing was found).
    pub fn verdict(&self) -> Verdict {
        self.findings
            .iter()
            .map(|f| f.verdict)
            .max_by_key(|v| match v {
                Verdict::Allow => 0,
                Verdict::Flag => 1,
                Verdict::Block => 2,
            })
            .unwrap_or(Verdict::Allow)
    }

    /// A one-line summary: `$.a: prompt_injection (block); $.b: secret_exposure (flag)`.
    pub fn summary(&self) -> String {
        self.findings
            .iter()
            .map(|f| {
                format!(
                    "{}: {} ({})",
                    f.path,
                    if f.categories.is_empty() {
                        "suspicious".to_string()
                    } else {
                        f.categories.join(", ")
                    },
                    f.verdict.as_str()
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A containment that refuses the proxied traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The incident that imposed it.
    pub incident_id: String,
    /// A sentence saying who is contained, by which action, since when.
    pub reason: String,
}

/// A tool whose live definition differs from its pin.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolChange {
    /// Tool name.
    pub tool: String,
    /// `added` or `changed`.
    pub change: &'static str,
    /// Key to pass to `approve_catalog_change`: `proxy:<upstream>/<tool>`.
    pub pin_key: String,
    /// The tool-poisoning incident.
    pub incident_id: Option<String>,
}

/// The outcome of comparing a live tool list with its pins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolListCheck {
    /// True when this list was the first seen for the upstream and was pinned as is.
    pub pinned_now: bool,
    /// Tools that differ from their pins (changed or new), not yet approved.
    pub changes: Vec<ToolChange>,
}

impl ToolListCheck {
    /// Names of the changed or new tools.
    pub fn changed_tools(&self) -> BTreeSet<String> {
        self.changes.iter().map(|c| c.tool.clone()).collect()
    }
}

/// The pin-lock key of a proxied tool.
pub fn proxy_pin_key(upstream: &str, tool: &str) -> String {
    format!("proxy:{upstream}/{tool}")
}

fn pending_path(lock: &Path) -> PathBuf {
    let mut s = lock.as_os_str().to_owned();
    s.push(".pending");
    PathBuf::from(s)
}

fn load_lock(path: &Path) -> Result<PinLock, ServiceError> {
    Ok(PinLock::load(path).map_err(Fault::PinLock)?)
}

fn save_lock(lock: &PinLock, path: &Path) -> Result<(), ServiceError> {
    Ok(lock.save(path).map_err(Fault::PinLock)?)
}

fn ev(rule: &str, category: &str, excerpt: &str) -> Evidence {
    Evidence {
        rule: rule.to_string(),
        category: category.to_string(),
        start: 0,
        end: 0,
        excerpt: incident::truncate_chars(excerpt, incident::EXCERPT_MAX_CHARS),
    }
}

impl IncidentService {
    /// Screens the leaves of one message with the engine only (no store, no incident): what a
    /// `flag` or `block` policy decides with before the message moves on.
    pub fn screen_traffic(&self, input: &TrafficInput) -> TrafficScreen {
        let max = self.limits.max_prompt_bytes;
        let flag = self.config.screening.flag_threshold as f32;
        let mut findings = Vec::new();
        for (path, text) in &input.leaves {
            if text.trim().is_empty() {
                continue;
            }
            let text = cap(text, max);
            let s = self.engine.screen(text, input.direction.source());
            if s.verdict == Verdict::Allow && s.secrets.is_empty() {
                continue;
            }
            findings.push(LeafFinding {
                path: path.clone(),
                verdict: if s.verdict == Verdict::Allow {
                    Verdict::Flag
                } else {
                    s.verdict
                },
                categories: s
                    .categories
                    .iter()
                    .filter(|c| c.score >= flag)
                    .map(|c| c.category.as_str().to_string())
                    .collect(),
                secrets: s.secrets.len(),
                risk: s.risk_score,
            });
        }
        TrafficScreen { findings }
    }

    /// Records the findings of [`Self::screen_traffic`]: each flagged leaf goes through
    /// [`Self::screen`] (incident, deduplication, activity, automatic containment) and its
    /// incident gets an evidence entry naming the upstream, tool, direction and JSON path.
    /// Returns the incident ids, in finding order, without repeats.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails (the caller queues and retries).
    pub async fn record_traffic(
        &self,
        input: &TrafficInput,
        screen: &TrafficScreen,
    ) -> Result<Vec<String>, ServiceError> {
        let max = self.limits.max_prompt_bytes;
        let mut ids: Vec<String> = Vec::new();
        for f in &screen.findings {
            let Some((_, text)) = input.leaves.iter().find(|(p, _)| *p == f.path) else {
                continue;
            };
            let out = match self
                .screen(ScreenInput {
                    text: cap(text, max).to_string(),
                    source: input.direction.source(),
                    user_id: input.user_id.clone(),
                    session_id: input.session_id.clone(),
                })
                .await
            {
                Ok(o) => o,
                Err(e) if e.is_caller_error() => continue,
                Err(e) => return Err(e),
            };
            let Some(id) = out.incident_id else { continue };
            let where_ = format!(
                "{} {} {} {}",
                input.upstream,
                input.tool,
                input.direction.as_str(),
                f.path
            );
            let category = f
                .categories
                .first()
                .cloned()
                .unwrap_or_else(|| "suspicious".into());
            let e = ev("proxy_json_path", &category, &where_);
            let text = format!(
                "guard proxy: {where_} screened {:?} (risk {:.2})",
                f.verdict, f.risk
            );
            let now = self.now();
            self.store
                .update(
                    &id,
                    "guard-proxy".into(),
                    now,
                    Box::new(move |inc| {
                        inc.add_evidence(e, now);
                        Ok(vec![EventKind::Note { text }])
                    }),
                )
                .await?;
            let id = id.to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    /// A containment in force against the user, the session or the upstream
    /// (`isolate_upstream`), if any.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails.
    pub async fn proxy_refusal(
        &self,
        upstream: &str,
        user_id: Option<String>,
        session_id: Option<String>,
    ) -> Result<Option<Refusal>, ServiceError> {
        let mut held = if user_id.is_some() || session_id.is_some() {
            self.store.active_containments(user_id, session_id).await?
        } else {
            Vec::new()
        };
        held.extend(
            self.store
                .active_containments_where(Some("upstream".into()), Some(upstream.into()), None)
                .await?,
        );
        Ok(held.first().map(|c| Refusal {
            incident_id: c.incident_id.to_string(),
            reason: format!(
                "{} {} is contained by incident {} ({}) since {}: {}",
                c.subject_kind,
                c.subject,
                c.incident_id,
                c.action,
                c.since.to_rfc3339(),
                c.reason
            ),
        }))
    }

    /// Records one proxied call of `upstream` as a performance sample (`upstream:<name>`):
    /// its latency as `tool_execution_time` and the upstream's recent error rate.
    ///
    /// # Errors
    /// As [`Self::record_metrics`].
    pub async fn record_proxy_call(
        &self,
        upstream: &str,
        latency: Duration,
        error_rate: Option<f64>,
    ) -> Result<Vec<String>, ServiceError> {
        let out = self
            .record_metrics(MetricsInput {
                source: format!("upstream:{upstream}"),
                tool_execution_time: Some(latency.as_secs_f64()),
                error_rate,
                ..MetricsInput::default()
            })
            .await?;
        Ok(out.incident_ids)
    }

    /// Opens (or adds an occurrence to) the `mcp_protocol_failure` incident of `upstream`: it
    /// crashed, hung, or sent a message that is not MCP. Same dedup key as the upstream probes.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the store fails.
    pub async fn record_proxy_failure(
        &self,
        upstream: &str,
        failure: FailureKind,
        detail: &str,
    ) -> Result<IncidentId, ServiceError> {
        let key = format!("upstream|{upstream}");
        let kind = IncidentKind::McpProtocolFailure;
        let evidence = vec![ev(failure.as_str(), kind.as_str(), detail)];
        let new = NewIncident {
            incident_type: IncidentType::Performance,
            category: None,
            severity: Severity::High,
            title: format!("MCP server {upstream} failing: {}", failure.as_str()),
            description: format!("the guard proxy saw MCP server {upstream} fail: {detail}"),
            reporter: None,
            affected_system: Some(upstream.to_string()),
            affected_user: None,
            affected_session: None,
            detection_method: DetectionMethod::Monitoring,
            confidence: None,
            evidence: evidence.clone(),
            tags: vec![
                format!("upstream:{upstream}"),
                format!("failure:{}", failure.as_str()),
            ],
            dedup_key: Some(key.clone()),
        };
        let now = self.now();
        self.open_or_repeat(key, new, kind, evidence, "guard-proxy", now)
            .await
    }

    /// Compares the live tool list of `upstream` (`tool → definition hash`) with its pins in
    /// `[proxy] pin_lock`. The first list seen for an upstream is pinned as is. A changed or
    /// new tool is written to `<pin_lock>.pending` and opens a `tool_poisoning` incident
    /// (ATLAS AML.T0110) that names the `pin_key` to approve.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the lock cannot be read or written, or the store fails.
    pub async fn check_proxy_tools(
        &self,
        upstream: &str,
        live: &BTreeMap<String, String>,
    ) -> Result<ToolListCheck, ServiceError> {
        let path = self.config.proxy.pin_lock.clone();
        let prefix = proxy_pin_key(upstream, "");
        let live2 = live.clone();
        let up = upstream.to_string();
        let (pinned_now, diffs) = tokio::task::spawn_blocking(move || {
            let mut lock = load_lock(&path)?;
            let known = lock.tools.keys().any(|k| k.starts_with(&prefix));
            if !known {
                for (t, h) in &live2 {
                    lock.tools.insert(proxy_pin_key(&up, t), h.clone());
                }
                save_lock(&lock, &path)?;
                return Ok::<_, ServiceError>((true, Vec::new()));
            }
            let mut diffs = Vec::new();
            for (t, h) in &live2 {
                let key = proxy_pin_key(&up, t);
                match lock.tools.get(&key) {
                    Some(p) if p == h => {}
                    Some(_) => diffs.push((t.clone(), "changed", key, h.clone())),
                    None => diffs.push((t.clone(), "added", key, h.clone())),
                }
            }
            if !diffs.is_empty() {
                let pp = pending_path(&path);
                let mut pending = load_lock(&pp)?;
                let mut dirty = false;
                for (_, _, key, h) in &diffs {
                    if pending.tools.get(key) != Some(h) {
                        pending.tools.insert(key.clone(), h.clone());
                        dirty = true;
                    }
                }
                if dirty {
                    save_lock(&pending, &pp)?;
                }
            }
            Ok((false, diffs))
        })
        .await
        .map_err(Fault::Task)??;
        let mut changes = Vec::new();
        for (tool, change, pin_key, hash) in diffs {
            let id = self
                .open_tool_change(upstream, &tool, change, &pin_key, &hash)
                .await?;
            changes.push(ToolChange {
                tool,
                change,
                pin_key,
                incident_id: Some(id.to_string()),
            });
        }
        Ok(ToolListCheck {
            pinned_now,
            changes,
        })
    }

    async fn open_tool_change(
        &self,
        upstream: &str,
        tool: &str,
        change: &str,
        pin_key: &str,
        hash: &str,
    ) -> Result<IncidentId, ServiceError> {
        let key = format!("dq|proxy|{pin_key}");
        let detail = format!(
            "tool {tool} of MCP server {upstream} {change} since it was pinned (new definition {}); \
             approve it with approve_catalog_change pin_key={pin_key}",
            hash.get(..12).unwrap_or(hash)
        );
        let evidence = vec![ev("live_tool_list_drift", "tool_poisoning", &detail)];
        let new = NewIncident {
            incident_type: IncidentType::Security,
            category: None,
            severity: if change == "changed" {
                Severity::High
            } else {
                Severity::Medium
            },
            title: format!("Tool definition {change}: {upstream}/{tool}"),
            description: detail,
            reporter: None,
            affected_system: Some(upstream.to_string()),
            affected_user: None,
            affected_session: None,
            detection_method: DetectionMethod::Monitoring,
            confidence: None,
            evidence: evidence.clone(),
            tags: vec![
                format!("upstream:{upstream}"),
                "AML.T0110@v5".into(),
                "LLM03:2025".into(),
                format!("finding:tool_{change}"),
            ],
            dedup_key: Some(key.clone()),
        };
        let now = self.now();
        self.open_or_repeat(
            key,
            new,
            IncidentKind::ToolPoisoning,
            evidence,
            "guard-proxy",
            now,
        )
        .await
    }

    /// `approve_catalog_change` for a proxied tool (`pin_key` = `proxy:<upstream>/<tool>`):
    /// moves the pending definition into `[proxy] pin_lock` and resolves the tracking incident.
    /// `None` when `pin_key` is not a proxy key.
    ///
    /// # Errors
    /// [`ServiceError::Invalid`] when the key has no pending change (the message lists those
    /// that do); [`ServiceError::Internal`] for lock or store failures.
    pub(crate) async fn approve_proxy_pin(
        &self,
        pin_key: &str,
        approver: &str,
    ) -> Result<Option<Option<Incident>>, ServiceError> {
        if !pin_key.starts_with("proxy:") {
            return Ok(None);
        }
        let path = self.config.proxy.pin_lock.clone();
        let key = pin_key.to_string();
        tokio::task::spawn_blocking(move || {
            let pp = pending_path(&path);
            let mut pending = load_lock(&pp)?;
            let Some(hash) = pending.tools.remove(&key) else {
                let keys: Vec<&String> = pending.tools.keys().collect();
                return Err(crate::service::invalid(
                    "pin_key",
                    if keys.is_empty() {
                        format!("'{key}' has no pending change; no proxied tool change is pending")
                    } else {
                        format!(
                            "'{key}' has no pending change; pending: {}",
                            keys.iter()
                                .map(|k| k.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    },
                ));
            };
            let mut lock = load_lock(&path)?;
            lock.tools.insert(key, hash);
            save_lock(&lock, &path)?;
            save_lock(&pending, &pp)
        })
        .await
        .map_err(Fault::Task)??;
        let inc = self
            .resolve_approved_change(
                &format!("dq|proxy|{pin_key}"),
                approver,
                format!("proxied tool change {pin_key} approved by {approver}; pin updated"),
            )
            .await?;
        Ok(Some(inc))
    }

    /// The pinned hashes of `upstream`'s tools in `[proxy] pin_lock` (`tool → hash`).
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the lock cannot be read.
    pub async fn proxy_pins(
        &self,
        upstream: &str,
    ) -> Result<BTreeMap<String, String>, ServiceError> {
        let path = self.config.proxy.pin_lock.clone();
        let prefix = proxy_pin_key(upstream, "");
        tokio::task::spawn_blocking(move || {
            let lock = load_lock(&path)?;
            Ok(lock
                .tools
                .iter()
                .filter_map(|(k, h)| k.strip_prefix(&prefix).map(|t| (t.to_string(), h.clone())))
                .collect())
        })
        .await
        .map_err(Fault::Task)?
    }
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn cap(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut i = max;
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    s.get(..i).unwrap_or("")
}
