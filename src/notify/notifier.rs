//! The notifier port and its real implementation. The service's outbox worker hands one stored
//! [`Notification`] to a [`Notifier`] for one named channel and records the outcome; it never
//! sees an HTTP client or a channel's wire format. [`ChannelNotifier`] delivers to the channels of
//! `[notify]` (webhook, Slack, PagerDuty, e-mail, log) with one lazily built `reqwest::Client`.
//! Tests pass a fake that records what it was given.
//!
//! The trait lives here rather than in `crate::service` (which re-exports it next to `Store` and
//! `Clock`) so that this module implements it without importing the service: no cycle.
//!
//! May import: `crate::notify`.

use std::fmt;
use std::sync::OnceLock;

use async_trait::async_trait;

use crate::notify::{DeliveryError, DeliveryOptions, DeliveryReceipt, Notification, NotifyConfig};

/// Delivers one notification to one channel, once (the caller schedules retries).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Delivers `n` to the channel called `channel`.
    ///
    /// # Errors
    /// [`DeliveryError::Retryable`] or [`DeliveryError::Permanent`] (also for a channel that is
    /// not configured).
    async fn deliver(
        &self,
        channel: &str,
        n: &Notification,
    ) -> Result<DeliveryReceipt, DeliveryError>;
}

/// The real notifier: the channels of `[notify]`, one shared HTTP client.
pub struct ChannelNotifier {
    config: NotifyConfig,
    http: OnceLock<reqwest::Client>,
}

impl ChannelNotifier {
    /// A notifier for the channels of `config`; the HTTP client is built on first use.
    pub fn new(config: NotifyConfig) -> Self {
        Self {
            config,
            http: OnceLock::new(),
        }
    }

    fn http(&self, channel: &str) -> Result<&reqwest::Client, DeliveryError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let c = reqwest::Client::builder()
            .build()
            .map_err(|e| DeliveryError::Retryable {
                channel: channel.to_string(),
                reason: format!("cannot build the HTTP client: {e}"),
                retry_after: None,
            })?;
        Ok(self.http.get_or_init(|| c))
    }
}

impl fmt::Debug for ChannelNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .config
            .channels
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        f.debug_struct("ChannelNotifier")
            .field("channels", &names)
            .finish()
    }
}

#[async_trait]
impl Notifier for ChannelNotifier {
    async fn deliver(
        &self,
        channel: &str,
        n: &Notification,
    ) -> Result<DeliveryReceipt, DeliveryError> {
        let Some(ch) = self.config.channel(channel) else {
            return Err(DeliveryError::Permanent {
                channel: channel.to_string(),
                reason: "the channel is no longer configured in [[notify.channels]]".into(),
            });
        };
        let http = self.http(channel)?;
        crate::notify::deliver_with(
            ch,
            n,
            http,
            &DeliveryOptions {
                timeout: self.config.timeout,
            },
        )
        .await
    }
}
