//! Notification delivery: one async call delivers one [`Notification`] to one configured channel.
//!
//! Owns: channel configuration types, the wire formats of each channel (signed webhook, Slack incoming
//! webhook, PagerDuty Events API v2, SMTP mail, log line), classification of failures into retryable and
//! permanent, and the retry/backoff arithmetic; the [`Notifier`] port and its real implementation
//! [`ChannelNotifier`] (in `notifier.rs`). It does *not* own the outbox: the service stores each
//! notification first, hands it to a `Notifier` and uses [`retry_decision`] to schedule the next attempt.
//!
//! May import: `std`, `serde`, `serde_json`, `chrono`, `tokio`, `tracing`, `reqwest`, `lettre`, `hmac`, `sha2`,
//! `hex`, `thiserror`, `crate::domain`. Must not import rmcp, axum, rusqlite/sqlx or anyhow.
//!
//! Secrets (webhook secrets, PagerDuty routing keys, Slack webhook URLs) never appear in `Debug` output,
//! log lines or error messages. The `log` channel never logs the notification body.
//!
//! TLS: this module takes a ready `reqwest::Client`; HTTPS support is whatever TLS feature the final binary
//! enables on reqwest. SMTP uses `builder_dangerous` (plain SMTP, no TLS) — suitable for a local relay.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;

use crate::domain::incident::truncate_chars;
use crate::domain::policy::{Severity, add_duration};

mod notifier;
pub use notifier::{ChannelNotifier, Notifier};

/// Default PagerDuty Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Header carrying the webhook signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-AIM-Signature";
/// Header carrying the send time (RFC 3339); the same value is inside the signed body as `sent_at`.
pub const TIMESTAMP_HEADER: &str = "X-AIM-Timestamp";
/// Header carrying the notification id, for receiver-side de-duplication.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// `source` reported to PagerDuty and the mail `X-Mailer`.
pub const SOURCE: &str = "ai-incident-mcp";

// ---------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------

/// Kind of a notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Structured log line via `tracing` (default; needs no setup).
    Log,
    /// HMAC-signed JSON POST.
    Webhook,
    /// Slack incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    Pagerduty,
    /// Plain-text email over SMTP.
    Email,
}

impl ChannelKind {
    /// snake_case name as used in config.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Log => "log",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Pagerduty => "pagerduty",
            ChannelKind::Email => "email",
        }
    }
}

/// One `[[notify.channels]]` entry. Which optional fields are required depends on `kind`
/// (see [`ChannelConfig::validate`]).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Name referenced from classification / escalation `channels`.
    pub name: String,
    /// Channel kind.
    pub kind: ChannelKind,
    /// Endpoint URL (webhook, slack; optional override for pagerduty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// HMAC secret (webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// SMTP server host (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_host: Option<String>,
    /// SMTP server port (email; default 25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    /// Sender mailbox, e.g. `"AI Incidents <aim@example.com>"` (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Recipient mailboxes (email).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<String>,
    /// Integration routing key (pagerduty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
}

fn redacted(v: &Option<String>) -> &'static str {
    if v.is_some() { "<redacted>" } else { "<none>" }
}

impl fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Slack webhook URLs embed their credential, so they are redacted too.
        let url: &dyn fmt::Debug = match self.kind {
            ChannelKind::Slack => &redacted(&self.url),
            _ => &self.url,
        };
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", url)
            .field("secret", &redacted(&self.secret))
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("routing_key", &redacted(&self.routing_key))
            .finish()
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn check_http_url(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    if (lower.starts_with("http://") || lower.starts_with("https://"))
        && reqwest::Url::parse(url).is_ok()
    {
        Ok(())
    } else {
        Err("must be an absolute http:// or https:// URL".to_owned())
    }
}

impl ChannelConfig {
    /// A `log` channel named `name`.
    pub fn log(name: &str) -> Self {
        ChannelConfig {
            name: name.to_owned(),
            kind: ChannelKind::Log,
            url: None,
            secret: None,
            smtp_host: None,
            smtp_port: None,
            from: None,
            to: Vec::new(),
            routing_key: None,
        }
    }

    /// Check that the fields `kind` needs are present and well-formed.
    ///
    /// # Errors
    /// `(field, message)` naming the first offending field (e.g. `("secret", "required for kind = \"webhook\"")`).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let required = |field: &'static str| {
            (
                field,
                format!("required for kind = \"{}\"", self.kind.as_str()),
            )
        };
        if self.name.trim().is_empty() {
            return Err(("name", "must not be empty".to_owned()));
        }
        match self.kind {
            ChannelKind::Log => {}
            ChannelKind::Webhook => {
                let url = non_empty(&self.url).ok_or_else(|| required("url"))?;
                check_http_url(url).map_err(|m| ("url", m))?;
                non_empty(&self.secret).ok_or_else(|| required("secret"))?;
            }
            ChannelKind::Slack => {
                let url = non_empty(&self.url).ok_or_else(|| required("url"))?;
                check_http_url(url).map_err(|m| ("url", m))?;
            }
            ChannelKind::Pagerduty => {
                if let Some(url) = non_empty(&self.url) {
                    check_http_url(url).map_err(|m| ("url", m))?;
                }
                non_empty(&self.routing_key).ok_or_else(|| required("routing_key"))?;
            }
            ChannelKind::Email => {
                non_empty(&self.smtp_host).ok_or_else(|| required("smtp_host"))?;
                let from = non_empty(&self.from).ok_or_else(|| required("from"))?;
                from.parse::<lettre::message::Mailbox>()
                    .map_err(|e| ("from", format!("not a valid mailbox: {e}")))?;
                if self.to.is_empty() {
                    return Err(required("to"));
                }
                for addr in &self.to {
                    addr.parse::<lettre::message::Mailbox>()
                        .map_err(|e| ("to", format!("`{addr}` is not a valid mailbox: {e}")))?;
                }
            }
        }
        Ok(())
    }
}

/// `[notify]`: retry settings and the channel list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Total delivery attempts per notification and channel (≥ 1).
    pub max_attempts: u32,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Spread retries over `[d/2, d]`, deterministically per notification id.
    pub jitter: bool,
    /// Per-attempt timeout for HTTP and SMTP.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Channels.
    pub channels: Vec<ChannelConfig>,
}

impl NotifyConfig {
    /// The channel called `name`.
    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Notification, receipt, error
// ---------------------------------------------------------------------------------------------------------

/// One message about one incident event, delivered to one or more channels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id: the idempotency / de-duplication key on every channel.
    pub id: String,
    /// Incident id (PagerDuty `dedup_key`).
    pub incident_id: String,
    /// `opened`, `escalated`, `acknowledged`, `resolved`, `closed`, …
    pub event: String,
    /// Current severity.
    pub severity: Severity,
    /// Escalation level the message is for (1..=4).
    pub level: u8,
    /// One-line summary.
    pub title: String,
    /// Plain-text body. Must not contain full prompts or secrets: the server redacts before building it.
    pub body: String,
    /// When the notification was created (stored in the outbox).
    pub created_at: DateTime<Utc>,
}

impl Notification {
    /// Deterministic id for the `event` of `incident_id` at `level`: the same inputs give the same id, so
    /// a re-enqueued notification is recognised as a duplicate.
    ///
    /// ```
    /// use ai_incident_mcp::notify::Notification;
    /// assert_eq!(Notification::stable_id("INC-7", "escalated", 3), "INC-7:escalated:L3");
    /// ```
    pub fn stable_id(incident_id: &str, event: &str, level: u8) -> String {
        crate::domain::opening::notification_id(incident_id, event, level)
    }
}

/// Proof of a successful delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryReceipt {
    /// Channel name.
    pub channel: String,
    /// Channel kind.
    pub kind: ChannelKind,
    /// Notification id.
    pub notification_id: String,
    /// HTTP status or SMTP reply code, when there was one.
    pub status: Option<u16>,
    /// Short receiver reply (PagerDuty dedup key, SMTP reply text, …), capped at 200 characters.
    pub detail: Option<String>,
}

/// Why a delivery failed. Messages never contain secrets or webhook URLs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: 5xx, 408, 429, timeouts, refused or reset connections, SMTP 4xx.
    #[error("delivery to channel `{channel}` failed (will retry): {reason}")]
    Retryable {
        /// Channel name.
        channel: String,
        /// What happened.
        reason: String,
        /// Receiver-requested delay (HTTP `Retry-After`, seconds form).
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help: 4xx (except 408/429), SMTP 5xx, invalid channel config or address.
    #[error("delivery to channel `{channel}` failed permanently: {reason}")]
    Permanent {
        /// Channel name.
        channel: String,
        /// What happened.
        reason: String,
    },
}

impl DeliveryError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Retryable { .. })
    }

    fn retryable(channel: &ChannelConfig, reason: impl Into<String>) -> Self {
        DeliveryError::Retryable {
            channel: channel.name.clone(),
            reason: reason.into(),
            retry_after: None,
        }
    }

    fn permanent(channel: &ChannelConfig, reason: impl Into<String>) -> Self {
        DeliveryError::Permanent {
            channel: channel.name.clone(),
            reason: reason.into(),
        }
    }
}

/// Options for [`deliver_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// Per-attempt timeout (HTTP request / SMTP command).
    pub timeout: Duration,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            timeout: Duration::from_secs(10),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Delivery
// ---------------------------------------------------------------------------------------------------------

/// Deliver `n` to `channel` once, with a 10 s timeout. See [`deliver_with`].
///
/// # Errors
/// [`DeliveryError::Retryable`] or [`DeliveryError::Permanent`]; see [`deliver_with`].
pub async fn deliver(
    channel: &ChannelConfig,
    n: &Notification,
    http: &reqwest::Client,
) -> Result<DeliveryReceipt, DeliveryError> {
    deliver_with(channel, n, http, &DeliveryOptions::default()).await
}

/// Deliver `n` to `channel` once. No retries here: see [`deliver_with_retry`] / [`retry_decision`].
///
/// # Errors
/// - [`DeliveryError::Permanent`] when the channel config is incomplete (checked with
///   [`ChannelConfig::validate`]), an address is invalid, the receiver answers 4xx other than 408/429, or the
///   SMTP server answers 5xx;
/// - [`DeliveryError::Retryable`] on 5xx, 408, 429, timeouts, connection failures and SMTP 4xx.
pub async fn deliver_with(
    channel: &ChannelConfig,
    n: &Notification,
    http: &reqwest::Client,
    opts: &DeliveryOptions,
) -> Result<DeliveryReceipt, DeliveryError> {
    channel.validate().map_err(|(field, msg)| {
        DeliveryError::permanent(channel, format!("invalid channel config: `{field}` {msg}"))
    })?;
    match channel.kind {
        ChannelKind::Log => Ok(deliver_log(channel, n)),
        ChannelKind::Webhook => deliver_webhook(channel, n, http, opts, Utc::now()).await,
        ChannelKind::Slack => {
            let body = slack_payload(n);
            post_json(
                channel,
                n,
                http,
                opts,
                channel.url.as_deref().unwrap_or_default(),
                &body,
            )
            .await
        }
        ChannelKind::Pagerduty => {
            let routing_key = channel.routing_key.as_deref().unwrap_or_default();
            let body = pagerduty_payload(n, routing_key);
            let url = non_empty(&channel.url).unwrap_or(PAGERDUTY_EVENTS_URL);
            let mut receipt = post_json(channel, n, http, opts, url, &body).await?;
            if receipt.detail.is_none() {
                receipt.detail = Some(n.incident_id.clone());
            }
            Ok(receipt)
        }
        ChannelKind::Email => deliver_email(channel, n, opts).await,
    }
}

fn deliver_log(channel: &ChannelConfig, n: &Notification) -> DeliveryReceipt {
    tracing::info!(
        channel = %channel.name,
        notification_id = %n.id,
        incident_id = %n.incident_id,
        event = %n.event,
        severity = %n.severity,
        level = n.level,
        title = %n.title,
        "incident notification"
    );
    receipt(channel, n, None, None)
}

fn receipt(
    channel: &ChannelConfig,
    n: &Notification,
    status: Option<u16>,
    detail: Option<String>,
) -> DeliveryReceipt {
    DeliveryReceipt {
        channel: channel.name.clone(),
        kind: channel.kind,
        notification_id: n.id.clone(),
        status,
        detail,
    }
}

/// The JSON body a webhook receiver gets: the notification plus `sent_at` (equal to `X-AIM-Timestamp`, so
/// the timestamp is covered by the signature).
pub fn webhook_body(
    n: &Notification,
    sent_at: DateTime<Utc>,
) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&json!({
        "id": n.id,
        "incident_id": n.incident_id,
        "event": n.event,
        "severity": n.severity,
        "level": n.level,
        "title": n.title,
        "body": n.body,
        "created_at": n.created_at,
        "sent_at": sent_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}

async fn deliver_webhook(
    channel: &ChannelConfig,
    n: &Notification,
    http: &reqwest::Client,
    opts: &DeliveryOptions,
    now: DateTime<Utc>,
) -> Result<DeliveryReceipt, DeliveryError> {
    let secret = channel.secret.as_deref().unwrap_or_default();
    let url = channel.url.as_deref().unwrap_or_default();
    let body = webhook_body(n, now).map_err(|e| {
        DeliveryError::permanent(channel, format!("cannot encode notification: {e}"))
    })?;
    let signature = sign(secret.as_bytes(), &body);
    let timestamp = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let request = http
        .post(url)
        .timeout(opts.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(TIMESTAMP_HEADER, timestamp)
        .header(IDEMPOTENCY_HEADER, n.id.as_str())
        .body(body);
    send(channel, n, request).await
}

async fn post_json(
    channel: &ChannelConfig,
    n: &Notification,
    http: &reqwest::Client,
    opts: &DeliveryOptions,
    url: &str,
    body: &serde_json::Value,
) -> Result<DeliveryReceipt, DeliveryError> {
    let request = http.post(url).timeout(opts.timeout).json(body);
    send(channel, n, request).await
}

async fn send(
    channel: &ChannelConfig,
    n: &Notification,
    request: reqwest::RequestBuilder,
) -> Result<DeliveryReceipt, DeliveryError> {
    let response = request
        .send()
        .await
        .map_err(|e| classify_reqwest_error(channel, e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let text = response.text().await.unwrap_or_default();
    let snippet = truncate_chars(text.trim(), 200);
    let code = status.as_u16();
    if status.is_success() {
        let detail = if channel.kind == ChannelKind::Pagerduty {
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("dedup_key")
                        .and_then(|d| d.as_str())
                        .map(str::to_owned)
                })
        } else if snippet.is_empty() {
            None
        } else {
            Some(snippet)
        };
        return Ok(receipt(channel, n, Some(code), detail));
    }
    let reason = if snippet.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {snippet}")
    };
    if is_retryable_status(code) {
        Err(DeliveryError::Retryable {
            channel: channel.name.clone(),
            reason,
            retry_after,
        })
    } else {
        Err(DeliveryError::permanent(channel, reason))
    }
}

/// Whether an HTTP status is worth retrying: 408, 429 and 5xx.
pub fn is_retryable_status(code: u16) -> bool {
    code == 408 || code == 429 || (500..=599).contains(&code)
}

fn classify_reqwest_error(channel: &ChannelConfig, e: reqwest::Error) -> DeliveryError {
    let e = e.without_url();
    let mut reason = if e.is_timeout() {
        "request timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    if e.is_builder() {
        DeliveryError::permanent(channel, reason)
    } else {
        DeliveryError::retryable(channel, reason)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Webhook signature
// ---------------------------------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the value of `X-AIM-Signature`.
///
/// ```
/// use ai_incident_mcp::notify::{sign, verify_signature};
/// let sig = sign(b"s3cret", br#"{"id":"x"}"#);
/// assert!(sig.starts_with("sha256="));
/// assert!(verify_signature(b"s3cret", br#"{"id":"x"}"#, &sig));
/// ```
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail; the fallback is unreachable.
    match HmacSha256::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::from("sha256="),
    }
}

/// Verify an `X-AIM-Signature` header (`sha256=<hex>`) against `body`, in constant time.
/// Returns `false` for a malformed header, a wrong secret or a modified body.
pub fn verify_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = HmacSha256::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

// ---------------------------------------------------------------------------------------------------------
// Slack and PagerDuty payloads
// ---------------------------------------------------------------------------------------------------------

/// Slack incoming-webhook body: `text` fallback plus header / section / context blocks.
pub fn slack_payload(n: &Notification) -> serde_json::Value {
    let headline = format!("[{}] {}", n.severity.as_str().to_ascii_uppercase(), n.title);
    let body = if n.body.trim().is_empty() {
        n.title.clone()
    } else {
        n.body.clone()
    };
    json!({
        "text": truncate_chars(&headline, 3000),
        "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": truncate_chars(&headline, 150) } },
            { "type": "section", "text": { "type": "mrkdwn", "text": truncate_chars(&body, 3000) } },
            { "type": "context", "elements": [ { "type": "mrkdwn", "text": truncate_chars(&format!(
                "incident `{}` · {} · level {} · {}",
                n.incident_id, n.event, n.level, n.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ), 3000) } ] }
        ]
    })
}

/// PagerDuty `event_action` for an event name: acknowledged → acknowledge, resolved/closed → resolve,
/// everything else → trigger.
pub fn pagerduty_action(event: &str) -> &'static str {
    match event {
        "acknowledged" => "acknowledge",
        "resolved" | "closed" => "resolve",
        _ => "trigger",
    }
}

/// PagerDuty payload severity: critical → critical, high → error, medium → warning, low → info.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low => "info",
    }
}

/// PagerDuty Events API v2 body. `dedup_key` is the incident id so trigger / acknowledge / resolve refer to
/// one PagerDuty alert.
pub fn pagerduty_payload(n: &Notification, routing_key: &str) -> serde_json::Value {
    json!({
        "routing_key": routing_key,
        "event_action": pagerduty_action(&n.event),
        "dedup_key": n.incident_id,
        "client": SOURCE,
        "payload": {
            "summary": truncate_chars(&format!("[{}] {}", n.severity, n.title), 1000),
            "source": SOURCE,
            "severity": pagerduty_severity(n.severity),
            "timestamp": n.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "component": "ai-system",
            "class": n.event,
            "custom_details": {
                "notification_id": n.id,
                "incident_id": n.incident_id,
                "event": n.event,
                "level": n.level,
                "body": truncate_chars(&n.body, 4000),
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------------------

/// Subject line of notification mails: `[AIM][HIGH] <title> (incident <id>)`; the id is left out
/// when the title already names it (the server's titles do: `INC-… opened: …`).
pub fn email_subject(n: &Notification) -> String {
    let sev = n.severity.as_str().to_ascii_uppercase();
    if n.title.contains(&n.incident_id) {
        format!("[AIM][{sev}] {}", n.title)
    } else {
        format!("[AIM][{sev}] {} (incident {})", n.title, n.incident_id)
    }
}

fn email_text(n: &Notification) -> String {
    format!(
        "{}\n\nIncident: {}\nEvent: {}\nSeverity: {}\nEscalation level: {}\nCreated: {}\nNotification id: {}\n",
        n.body,
        n.incident_id,
        n.event,
        n.severity,
        n.level,
        n.created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        n.id
    )
}

async fn deliver_email(
    channel: &ChannelConfig,
    n: &Notification,
    opts: &DeliveryOptions,
) -> Result<DeliveryReceipt, DeliveryError> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::{AsyncTransport, Message};

    let bad = |what: &str, e: &dyn fmt::Display| {
        DeliveryError::permanent(channel, format!("{what}: {e}"))
    };
    let from = from_mailbox(channel).map_err(|e| bad("invalid `from` mailbox", &e))?;
    let mut builder = Message::builder()
        .from(from)
        .subject(email_subject(n))
        .message_id(Some(format!("<{}@{}>", sanitize_message_id(&n.id), SOURCE)))
        .date(n.created_at.into())
        .header(ContentType::TEXT_PLAIN);
    for to in &channel.to {
        let mailbox: Mailbox = to.parse().map_err(|e| bad("invalid `to` mailbox", &e))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .body(email_text(n))
        .map_err(|e| bad("cannot build message", &e))?;

    match smtp_transport(channel, opts.timeout).send(message).await {
        Ok(response) => {
            let code: u16 = response.code().to_string().parse().unwrap_or(250);
            let detail = response.message().next().map(|m| truncate_chars(m, 200));
            Ok(receipt(channel, n, Some(code), detail))
        }
        Err(e) => {
            let reason = format!("SMTP: {e}");
            if e.is_permanent() {
                Err(DeliveryError::permanent(channel, reason))
            } else {
                Err(DeliveryError::retryable(channel, reason))
            }
        }
    }
}

/// The `From` mailbox of an e-mail channel (also used by the e-mail intake's reply).
///
/// # Errors
/// The address parser's error when `from` is missing or not a mailbox.
pub fn from_mailbox(
    channel: &ChannelConfig,
) -> Result<lettre::message::Mailbox, lettre::address::AddressError> {
    channel.from.as_deref().unwrap_or_default().parse()
}

/// The SMTP transport of an e-mail channel (also used by the e-mail intake's reply).
pub fn smtp_transport(
    channel: &ChannelConfig,
    timeout: Duration,
) -> lettre::AsyncSmtpTransport<lettre::Tokio1Executor> {
    let host = channel.smtp_host.as_deref().unwrap_or_default().trim();
    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
        .port(channel.smtp_port.unwrap_or(25))
        .timeout(Some(timeout))
        .build()
}

fn sanitize_message_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------------------------------------

/// Exponential backoff without jitter: `base * 2^(attempt-1)`, capped at `max`. `attempt` is the number of
/// failed attempts so far (1 after the first failure); `attempt = 0` is treated as 1.
///
/// ```
/// use std::time::Duration;
/// use ai_incident_mcp::notify::backoff;
/// let s = Duration::from_secs;
/// assert_eq!(backoff(1, s(2), s(60)), s(2));
/// assert_eq!(backoff(3, s(2), s(60)), s(8));
/// assert_eq!(backoff(30, s(2), s(60)), s(60));
/// ```
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let exp = attempt.max(1).saturating_sub(1).min(31);
    base.checked_mul(1u32 << exp)
        .unwrap_or(Duration::MAX)
        .min(max)
}

/// [`backoff`] with deterministic "equal jitter": a value in `[d/2, d]` chosen by hashing `seed` and
/// `attempt` (use the notification id as seed), so retries of different notifications spread out while
/// each schedule stays reproducible.
pub fn backoff_jittered(attempt: u32, base: Duration, max: Duration, seed: &str) -> Duration {
    let d = backoff(attempt, base, max);
    let half = d / 2;
    let span = u64::try_from((d - half).as_millis()).unwrap_or(u64::MAX);
    if span == 0 {
        return d;
    }
    let h = fnv1a(seed.as_bytes(), attempt);
    half + Duration::from_millis(h % (span + 1))
}

fn fnv1a(bytes: &[u8], salt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().copied().chain(salt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again at this instant.
    RetryAt(DateTime<Utc>),
    /// Stop: the error is permanent or attempts are exhausted.
    GiveUp,
}

/// Decide the next attempt for an outbox entry after `attempts_made` failed attempts ending in `err`.
/// Honours a receiver's `Retry-After` when it asks for longer than the backoff.
pub fn retry_decision(
    err: &DeliveryError,
    attempts_made: u32,
    notification_id: &str,
    cfg: &NotifyConfig,
    now: DateTime<Utc>,
) -> RetryDecision {
    match err {
        DeliveryError::Permanent { .. } => RetryDecision::GiveUp,
        DeliveryError::Retryable { retry_after, .. } => {
            if attempts_made >= cfg.max_attempts {
                return RetryDecision::GiveUp;
            }
            let delay = retry_delay(attempts_made, notification_id, cfg)
                .max(retry_after.unwrap_or_default());
            RetryDecision::RetryAt(add_duration(now, delay))
        }
    }
}

fn retry_delay(attempts_made: u32, notification_id: &str, cfg: &NotifyConfig) -> Duration {
    if cfg.jitter {
        backoff_jittered(
            attempts_made,
            cfg.backoff_base,
            cfg.backoff_max,
            notification_id,
        )
    } else {
        backoff(attempts_made, cfg.backoff_base, cfg.backoff_max)
    }
}

/// Outcome of [`deliver_with_retry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryOutcome {
    /// Final result.
    pub result: Result<DeliveryReceipt, DeliveryError>,
    /// Attempts made (≥ 1).
    pub attempts: u32,
}

/// Deliver with in-process retries (sleeping between attempts) per `cfg`. For durable delivery the server
/// should use its outbox with [`retry_decision`] instead; this is for tools and tests.
pub async fn deliver_with_retry(
    channel: &ChannelConfig,
    n: &Notification,
    http: &reqwest::Client,
    cfg: &NotifyConfig,
) -> RetryOutcome {
    let opts = DeliveryOptions {
        timeout: cfg.timeout,
    };
    let max_attempts = cfg.max_attempts.max(1);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let result = deliver_with(channel, n, http, &opts).await;
        match &result {
            Err(e @ DeliveryError::Retryable { retry_after, .. }) if attempts < max_attempts => {
                let delay = retry_delay(attempts, &n.id, cfg).max(retry_after.unwrap_or_default());
                tracing::warn!(channel = %channel.name, notification_id = %n.id, attempt = attempts, error = %e, delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX), "notification delivery failed; retrying");
                tokio::time::sleep(delay).await;
            }
            _ => return RetryOutcome { result, attempts },
        }
    }
}

#[cfg(test)]
mod tests;
