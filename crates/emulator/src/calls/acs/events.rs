//! Posting what ACS posts: a call's CloudEvents to its callback URI (a JSON array, ordered,
//! one delivery task per call) and Event Grid's deliveries to the registered subscription
//! endpoint (`aeg-event-type: SubscriptionValidation` or `Notification`).
//!
//! Every post carries `Authorization: Bearer <JWT>` signed by the emulator's ACS events
//! issuer (`iss` [`crate::acs::EVENTS_ISSUER`], `aud` the resource's id), whose keys the ACS
//! listener publishes at `/.well-known/openid-configuration`, so a bot validates callbacks
//! as it would ACS's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use appmedia_acs::events::{CloudEvent, EventGridEvent, EventType};
use appmedia_signalling::auth::{TokenIssuer, unix_now};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// Attempts per CloudEvent before it is dropped (and counted).
const MAX_ATTEMPTS: u32 = 5;
/// Events waiting per call; more are dropped and counted.
const MAX_QUEUED: usize = 1024;

/// The claims of an event token.
#[derive(Serialize)]
struct EventClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Delivery counters, shared by every ACS call.
#[derive(Debug, Default)]
pub struct AcsDeliveryStats {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    dropped: AtomicU64,
}

impl AcsDeliveryStats {
    /// Events the bot accepted (2xx).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Attempts that failed.
    pub fn failed_attempts(&self) -> u64 {
        self.failed_attempts.load(Ordering::Relaxed)
    }
    /// Events given up (after every attempt failed, or never queued).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Why an Event Grid delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The endpoint could not be reached or answered an error.
    #[error("{0}")]
    Failed(String),
}

/// Signs and posts ACS's events.
#[derive(Debug)]
pub struct AcsEvents {
    issuer: TokenIssuer,
    audience: String,
    http: reqwest::Client,
    stats: Arc<AcsDeliveryStats>,
}

impl AcsEvents {
    /// Events signed by `issuer` for audience `audience` (the resource id).
    pub fn new(
        issuer: TokenIssuer,
        audience: String,
    ) -> Result<Self, appmedia_signalling::HttpClientError> {
        let http =
            appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(10))?;
        Ok(AcsEvents {
            issuer,
            audience,
            http,
            stats: Arc::default(),
        })
    }

    /// The signing key, for publication.
    pub fn issuer(&self) -> &TokenIssuer {
        &self.issuer
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<AcsDeliveryStats> {
        &self.stats
    }

    /// A fresh event token: what every callback carries, and what the audio socket's upgrade
    /// request carries too (ACS authenticates both the same way).
    pub fn token(&self) -> Result<String, String> {
        let now = unix_now();
        let claims = EventClaims {
            iss: crate::acs::EVENTS_ISSUER,
            aud: &self.audience,
            iat: now,
            nbf: now,
            exp: now + 3600,
        };
        self.issuer.sign(&claims).map_err(|e| e.to_string())
    }

    /// Starts the ordered delivery of one call's events to `callback_uri`.
    pub fn start_call(self: &Arc<Self>, callback_uri: String) -> EventQueue {
        let (tx, mut rx) = mpsc::channel::<CloudEvent>(MAX_QUEUED);
        let this = self.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                this.deliver(&callback_uri, &event).await;
            }
        });
        EventQueue {
            tx,
            stats: self.stats.clone(),
        }
    }

    async fn deliver(&self, callback_uri: &str, event: &CloudEvent) {
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=MAX_ATTEMPTS {
            match self.post(callback_uri, &[event], None).await {
                Ok(_) => {
                    self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(callback = %callback_uri, attempt, event = %event.event_type, error = %e, "ACS event delivery failed");
                    if attempt < MAX_ATTEMPTS {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(2));
                    }
                }
            }
        }
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
    }

    async fn post<T: Serialize + ?Sized>(
        &self,
        url: &str,
        body: &T,
        event_grid_type: Option<&str>,
    ) -> Result<reqwest::Response, DeliveryError> {
        let token = self.token().map_err(DeliveryError::Failed)?;
        let mut request = self.http.post(url).bearer_auth(token).json(body);
        if let Some(kind) = event_grid_type {
            request = request.header("aeg-event-type", kind);
        }
        let response = request
            .send()
            .await
            .map_err(|e| DeliveryError::Failed(e.to_string()))?;
        if !response.status().is_success() {
            return Err(DeliveryError::Failed(format!("HTTP {}", response.status())));
        }
        Ok(response)
    }

    /// Event Grid's handshake: posts a `SubscriptionValidationEvent` to `endpoint` and
    /// checks that it answers `{"validationResponse": code}` with the code.
    pub async fn validate_subscription(&self, endpoint: &str) -> Result<(), DeliveryError> {
        let code = uuid::Uuid::new_v4().to_string();
        let event = EventGridEvent {
            id: uuid::Uuid::new_v4().to_string(),
            topic: Some(format!(
                "/subscriptions/emulator/resourceGroups/emulator/providers/Microsoft.Communication/communicationServices/{}",
                self.audience
            )),
            subject: String::new(),
            data: serde_json::json!({
                "validationCode": code,
                "validationUrl": null,
            }),
            event_type: appmedia_acs::events::SUBSCRIPTION_VALIDATION.into(),
            event_time: appmedia_acs::events::rfc3339(std::time::SystemTime::now()),
            metadata_version: Some("1".into()),
            data_version: Some("2".into()),
        };
        let response = self
            .post(endpoint, &[event], Some("SubscriptionValidation"))
            .await?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| DeliveryError::Failed(format!("the answer is not JSON: {e}")))?;
        match body.get("validationResponse").and_then(Value::as_str) {
            Some(echoed) if echoed == code => Ok(()),
            Some(other) => Err(DeliveryError::Failed(format!(
                "validationResponse {other:?} is not the code sent"
            ))),
            None => Err(DeliveryError::Failed(
                "the answer has no validationResponse".into(),
            )),
        }
    }

    /// Posts one Event Grid event (`aeg-event-type: Notification`).
    pub async fn notify_event_grid(
        &self,
        endpoint: &str,
        event: &EventGridEvent,
    ) -> Result<(), DeliveryError> {
        self.post(endpoint, &[event], Some("Notification"))
            .await
            .map(|_| ())
    }
}

/// The sending end of one call's event queue.
#[derive(Clone, Debug)]
pub struct EventQueue {
    tx: mpsc::Sender<CloudEvent>,
    stats: Arc<AcsDeliveryStats>,
}

impl EventQueue {
    /// Queues an event; never waits (a full queue drops it, counted).
    pub fn send(&self, event: CloudEvent) {
        if self.tx.try_send(event).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The ids every event of a call carries.
#[derive(Clone, Debug)]
pub struct CallIdentity {
    /// The call connection.
    pub call_connection_id: String,
    /// The server call.
    pub server_call_id: String,
    /// The correlation id.
    pub correlation_id: String,
}

impl CallIdentity {
    /// An event of this call.
    pub fn event(&self, event_type: EventType, data: Value) -> CloudEvent {
        CloudEvent::new(
            &event_type,
            &self.call_connection_id,
            &self.server_call_id,
            &self.correlation_id,
            data,
        )
    }
}
