//! Notification delivery: every `commsNotifications` body is POSTed to the call's
//! callbackUri with `Authorization: Bearer <JWT>` signed by the emulator's notification
//! issuer (`aud` = the bot's app id, `tid`, `iss` as configured). One delivery task per
//! call keeps the order; a failing endpoint is retried with bounded exponential backoff
//! (or after its `Retry-After`, within the same bound) and the call goes on meanwhile. A bot
//! that answers 404 or 410 says it holds no such call (an instance that restarted, or a proxy
//! that sent the notification to the wrong instance): that notification is not retried.
//! A call's queue is bounded ([`MAX_QUEUED_PER_CALL`]): while a bot does not answer, what
//! the call produces beyond that is dropped and counted, so an unreachable bot cannot make
//! the service hold an ever-growing backlog.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use appmedia_signalling::auth::{CallbackTokenClaims, TokenIssuer};
use serde_json::Value;
use tokio::sync::mpsc;

/// Notifications waiting for delivery on one call, at most; more are dropped and counted
/// ([`DeliveryStats::overflowed`]). A bot that answers keeps its queue near empty: even a
/// meeting's busiest roster changes are a few notifications a second.
pub const MAX_QUEUED_PER_CALL: usize = 1024;

/// How a failing callback endpoint is retried.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Wait before the first retry.
    pub initial_backoff: Duration,
    /// The wait doubles up to this.
    pub max_backoff: Duration,
    /// Attempts per notification (the first included) before it is dropped and counted.
    pub max_attempts: u32,
    /// Bound on one POST.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Delivery counters, shared by all calls.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    overflowed: AtomicU64,
}

impl DeliveryStats {
    /// Notifications the bot accepted (2xx).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Attempts that failed (connection error or non-2xx) and were retried or gave up.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }
    /// Notifications given up after `max_attempts`.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Notifications the bot refused as not its call (404 or 410), not retried.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Notifications never queued: their call already had [`MAX_QUEUED_PER_CALL`] waiting.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }
}

/// The sending end of one call's notification queue (bounded, see [`MAX_QUEUED_PER_CALL`]).
#[derive(Clone, Debug)]
pub struct NotificationQueue {
    tx: mpsc::Sender<Value>,
    stats: Arc<DeliveryStats>,
}

/// Why a notification was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QueueError {
    /// The call already has [`MAX_QUEUED_PER_CALL`] notifications waiting; this one is
    /// dropped and counted.
    #[error("the call's notification queue is full")]
    Full,
    /// The call's delivery task has ended.
    #[error("the call's notifications are no longer delivered")]
    Closed,
}

impl NotificationQueue {
    /// Queues `body` for delivery after those before it; never waits.
    pub fn send(&self, body: Value) -> Result<(), QueueError> {
        match self.tx.try_send(body) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let total = self.stats.overflowed.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    total,
                    "notification dropped: the call's queue is full (the bot does not take them)"
                );
                Err(QueueError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(QueueError::Closed),
        }
    }
}

/// What signs and sends notifications.
#[derive(Debug)]
pub struct Notifier {
    issuer: TokenIssuer,
    issuer_name: String,
    http: reqwest::Client,
    policy: RetryPolicy,
    stats: Arc<DeliveryStats>,
}

/// Where one call's notifications go, and as whom.
#[derive(Clone, Debug)]
pub struct Destination {
    /// The callbackUri.
    pub callback_uri: String,
    /// The bot's app id (`aud`).
    pub app_id: String,
    /// The call's tenant (`tid`).
    pub tenant_id: String,
}

impl Notifier {
    /// A notifier signing with `issuer` and writing `issuer_name` as `iss`.
    pub fn new(
        issuer: TokenIssuer,
        issuer_name: String,
        policy: RetryPolicy,
    ) -> Result<Self, appmedia_signalling::HttpClientError> {
        let http =
            appmedia_signalling::http_client(policy.request_timeout, policy.request_timeout)?;
        Ok(Self {
            issuer,
            issuer_name,
            http,
            policy,
            stats: Arc::default(),
        })
    }

    /// The issuer's name (`iss`).
    pub fn issuer_name(&self) -> &str {
        &self.issuer_name
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<DeliveryStats> {
        &self.stats
    }

    /// Starts the delivery task of one call; notifications sent into the returned queue are
    /// delivered in order. The task ends when every sender is dropped and the queue is empty.
    pub fn start_call(
        self: &Arc<Self>,
        destination: Destination,
    ) -> (NotificationQueue, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Value>(MAX_QUEUED_PER_CALL);
        let this = self.clone();
        let task = tokio::spawn(async move {
            while let Some(body) = rx.recv().await {
                this.deliver(&destination, &body).await;
            }
        });
        let queue = NotificationQueue {
            tx,
            stats: self.stats.clone(),
        };
        (queue, task)
    }

    async fn deliver(&self, destination: &Destination, body: &Value) {
        let mut backoff = self.policy.initial_backoff;
        for attempt in 1..=self.policy.max_attempts.max(1) {
            match self.post_once(destination, body).await {
                Ok(()) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(failure) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        callback = %destination.callback_uri,
                        attempt,
                        reason = %failure.reason,
                        "notification delivery failed"
                    );
                    if failure.not_the_bots_call {
                        self.stats.refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if attempt < self.policy.max_attempts {
                        let wait = failure
                            .retry_after
                            .map_or(backoff, |asked| asked.max(backoff))
                            .min(self.policy.max_backoff);
                        tokio::time::sleep(wait).await;
                        backoff = (backoff * 2).min(self.policy.max_backoff);
                    }
                }
            }
        }
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            callback = %destination.callback_uri,
            attempts = self.policy.max_attempts,
            "notification dropped after every retry failed"
        );
    }

    async fn post_once(&self, destination: &Destination, body: &Value) -> Result<(), Failure> {
        // A fresh token per attempt: a retry long after the first try must not carry an
        // expired one.
        let claims = CallbackTokenClaims::new(
            self.issuer_name.clone(),
            destination.app_id.clone(),
            destination.tenant_id.clone(),
            Duration::from_secs(3600),
        );
        let token = self.issuer.sign(&claims).map_err(Failure::other)?;
        let response = self
            .http
            .post(&destination.callback_uri)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(Failure::other)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // Seconds only: what the bot SDK and proxies send on 503 and 429.
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        Err(Failure {
            reason: format!("HTTP {status}"),
            retry_after,
            not_the_bots_call: matches!(status.as_u16(), 404 | 410),
        })
    }
}

/// Why one delivery attempt failed.
struct Failure {
    reason: String,
    retry_after: Option<Duration>,
    /// 404/410: the bot holds no such call; retrying cannot help.
    not_the_bots_call: bool,
}

impl Failure {
    fn other(e: impl std::fmt::Display) -> Self {
        Failure {
            reason: e.to_string(),
            retry_after: None,
            not_the_bots_call: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A bot that accepts connections and never answers: the first notification stays in
    /// flight, the rest queue up to the bound, and what comes after is dropped and counted.
    #[tokio::test]
    async fn a_call_queues_at_most_its_bound_while_the_bot_does_not_answer() {
        appmedia_signalling::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (arrived_tx, mut arrived) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
                let _ = arrived_tx.send(());
            }
        });
        let policy = RetryPolicy {
            request_timeout: Duration::from_secs(60),
            ..RetryPolicy::default()
        };
        let notifier = Arc::new(
            Notifier::new(TokenIssuer::generate("test").unwrap(), "iss".into(), policy).unwrap(),
        );
        let (queue, _task) = notifier.start_call(Destination {
            callback_uri: format!("http://{addr}/callback"),
            app_id: "app".into(),
            tenant_id: "tenant".into(),
        });
        queue.send(json!({"n": 0})).unwrap();
        arrived
            .recv()
            .await
            .expect("the first POST reaches the bot");
        for n in 1..=MAX_QUEUED_PER_CALL {
            assert_eq!(queue.send(json!({ "n": n })), Ok(()), "{n}");
        }
        for _ in 0..5 {
            assert_eq!(queue.send(json!({"n": "extra"})), Err(QueueError::Full));
        }
        assert_eq!(notifier.stats().overflowed(), 5);
        assert_eq!(notifier.stats().delivered(), 0);
    }
}
