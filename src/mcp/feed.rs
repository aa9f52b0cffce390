//! The change feed of the MCP surface: `resources/subscribe` / `unsubscribe` on `incident://{id}`
//! (and its `/postmortem`) and `incidents://open`, answered with `notifications/resources/updated`;
//! and `logging/setLevel`, answered with `notifications/message` for the events an operator cares
//! about (incident opened, escalated, a notification given up on) — ids, kinds and channels only,
//! never prompt text, descriptions or secrets.
//!
//! Both come from polling the store's change sequence ([`IncidentService::changes_after`]) every
//! [`POLL_EVERY`], so changes made by another process on the same database are seen too. One
//! poller per handler family, started on the first subscription or `setLevel`; it sleeps between
//! polls (no busy loop), backs off on a store error, stops when the handler is dropped, and
//! forgets sessions whose transport closed.
//!
//! Sessions are told apart by the Streamable HTTP `Mcp-Session-Id`; a stdio process serves one
//! session. (Legacy HTTP+SSE sessions share one key: an unsubscribe there affects them all.)
//! The 2026-07-28 stateless era's `subscriptions/listen` is not served.
//!
//! May import: `crate::service`; rmcp, serde_json, tokio.
#![allow(deprecated)] // LoggingLevel, notify_logging_message, subscribe: deprecated by SEP-2577, still the 2025-11-25 protocol

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rmcp::model::{
    LoggingLevel, LoggingMessageNotificationParam, ResourceUpdatedNotificationParam,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer};

use crate::service::IncidentService;

/// How often the change sequence is read.
pub const POLL_EVERY: Duration = Duration::from_millis(500);
/// Events read per poll (the rest come next time).
const BATCH: usize = 1000;

struct Session {
    peer: Peer<RoleServer>,
    uris: BTreeSet<String>,
    level: Option<LoggingLevel>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    polling: bool,
}

/// `notifications/resources/updated` to send: peer and URI.
type Updates = Vec<(Peer<RoleServer>, String)>;
/// `notifications/message` to send: peer and message.
type Messages = Vec<(Peer<RoleServer>, LoggingMessageNotificationParam)>;

/// Subscriptions and log levels of every session served by one handler family.
pub struct Feed {
    svc: Arc<IncidentService>,
    state: Mutex<State>,
}

fn rank(l: LoggingLevel) -> u8 {
    match l {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

/// The session key of a request: its `Mcp-Session-Id` over Streamable HTTP, else the process.
fn session_key(ctx: &RequestContext<RoleServer>) -> String {
    ctx.extensions
        .get::<axum::http::request::Parts>()
        .and_then(|p| p.headers.get("mcp-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(|s| format!("http:{s}"))
        .unwrap_or_else(|| "local".to_owned())
}

/// Resource URIs a subscriber may name.
fn subscribable(uri: &str) -> bool {
    uri == "incidents://open"
        || uri
            .strip_prefix("incident://")
            .is_some_and(|rest| !rest.is_empty())
}

impl Feed {
    /// An empty feed over `svc`.
    pub fn new(svc: Arc<IncidentService>) -> Arc<Self> {
        Arc::new(Feed {
            svc,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// `resources/subscribe`.
    ///
    /// # Errors
    /// `-32602` for a URI that is not `incidents://open` or `incident://{id}[/postmortem]`.
    pub fn subscribe(
        self: &Arc<Self>,
        uri: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        if !subscribable(uri) {
            return Err(McpError::invalid_params(
                format!(
                    "cannot subscribe to {uri}; subscribe to incidents://open or incident://{{id}}"
                ),
                None,
            ));
        }
        self.session(ctx, |s| {
            s.uris.insert(uri.to_owned());
        });
        Ok(())
    }

    /// `resources/unsubscribe` (unknown URIs are ignored).
    pub fn unsubscribe(self: &Arc<Self>, uri: &str, ctx: &RequestContext<RoleServer>) {
        let key = session_key(ctx);
        if let Some(s) = self.lock().sessions.get_mut(&key) {
            s.uris.remove(uri);
        }
    }

    /// `logging/setLevel`.
    pub fn set_level(self: &Arc<Self>, level: LoggingLevel, ctx: &RequestContext<RoleServer>) {
        self.session(ctx, |s| s.level = Some(level));
    }

    fn session(self: &Arc<Self>, ctx: &RequestContext<RoleServer>, f: impl FnOnce(&mut Session)) {
        let key = session_key(ctx);
        let start = {
            let mut st = self.lock();
            let s = st.sessions.entry(key).or_insert_with(|| Session {
                peer: ctx.peer.clone(),
                uris: BTreeSet::new(),
                level: None,
            });
            s.peer = ctx.peer.clone();
            f(s);
            !std::mem::replace(&mut st.polling, true)
        };
        if start {
            tokio::spawn(poll(Arc::downgrade(self), self.svc.clone()));
        }
    }

    /// The sends one batch of changes causes: `(peer, uri)` updates and `(peer, log)` messages.
    fn fan_out(&self, changes: &[crate::service::Change]) -> (Updates, Messages) {
        let mut touched: BTreeSet<String> = BTreeSet::new();
        let mut logs: Vec<(LoggingLevel, serde_json::Value)> = Vec::new();
        for c in changes {
            touched.insert(format!("incident://{}", c.incident_id));
            touched.insert(format!("incident://{}/postmortem", c.incident_id));
            touched.insert("incidents://open".to_owned());
            let log = match (c.kind.as_str(), c.status.as_deref()) {
                ("created", _) => Some((LoggingLevel::Warning, "incident_opened")),
                ("escalated", _) => Some((LoggingLevel::Warning, "incident_escalated")),
                ("notification_delivery", Some("failed")) => {
                    Some((LoggingLevel::Error, "delivery_failed"))
                }
                _ => None,
            };
            if let Some((level, event)) = log {
                logs.push((
                    level,
                    serde_json::json!({ "event": event, "incident_id": c.incident_id, "seq": c.seq }),
                ));
            }
        }
        let mut st = self.lock();
        st.sessions.retain(|_, s| !s.peer.is_transport_closed());
        let mut updates = Vec::new();
        let mut messages = Vec::new();
        for s in st.sessions.values() {
            for uri in s.uris.intersection(&touched) {
                updates.push((s.peer.clone(), uri.clone()));
            }
            if let Some(min) = s.level {
                for (level, data) in &logs {
                    if rank(*level) >= rank(min) {
                        messages.push((
                            s.peer.clone(),
                            LoggingMessageNotificationParam::new(*level, data.clone())
                                .with_logger("ai-incident-mcp"),
                        ));
                    }
                }
            }
        }
        (updates, messages)
    }
}

/// The poller: reads the change sequence from the head at start, then every [`POLL_EVERY`].
async fn poll(feed: Weak<Feed>, svc: Arc<IncidentService>) {
    let mut after: Option<i64> = None;
    let mut every = tokio::time::interval(POLL_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        every.tick().await;
        let Some(feed) = feed.upgrade() else {
            return;
        };
        match svc.changes_after(after, BATCH).await {
            Ok((head, changes)) => {
                failures = 0;
                after = Some(
                    changes
                        .last()
                        .map_or(head.max(after.unwrap_or(0)), |c| c.seq),
                );
                if changes.is_empty() {
                    continue;
                }
                let (updates, messages) = feed.fan_out(&changes);
                drop(feed);
                for (peer, uri) in updates {
                    let _ = peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                        .await;
                }
                for (peer, m) in messages {
                    let _ = peer.notify_logging_message(m).await;
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "change feed: cannot read the change sequence; retrying");
                }
                drop(feed);
                tokio::time::sleep(POLL_EVERY * failures.min(20)).await;
            }
        }
    }
}
