//! The ACS backend of a bot: its Call Automation client and the three things the service
//! sends it — a call's CloudEvents (`POST {callback}/{call token}`), Event Grid's
//! `IncomingCall` deliveries (`POST {callback}`, with the subscription handshake), and the
//! audio WebSocket (`GET {media path}/{call token}`).
//!
//! Every call gets an unguessable token at creation (placed or answered): its callback and
//! media URLs carry it, so an event or a socket for a call this bot did not set up is refused
//! (404) before anything is parsed, and one call's token cannot act on another call. ACS's
//! JWT on top, when configured (`EventAuth::Jwt`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use appmedia_acs::client::{AcsClient, AcsClientConfig, Credential};
use appmedia_acs::events::{Delivery, parse_batch, parse_delivery};
use appmedia_signalling::auth::{
    CallbackAuthConfig, CallbackTokenValidator, ClientCredentials, TenantPolicy, TokenSource,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::acs::config::{AcsService, EventAuth};
use crate::acs::stream::StreamSlot;
use crate::bot::{BotInner, lock};
use crate::error::BotError;

/// A WebSocket message larger than this closes the socket (the reader refuses anything over
/// 64 KiB without closing; this bounds what one message may hold in memory).
const MAX_SOCKET_MESSAGE: usize = 1 << 20;
/// How long a socket waits for its call's stream to be set up (the service may connect
/// while the answer's response is still on its way).
const SLOT_WAIT: Duration = Duration::from_secs(3);
/// Calls known by token at most (placed, answered, ringing): beyond this, new ones are refused.
const MAX_TOKENS: usize = 10_000;

/// What the backend refused or dropped.
#[derive(Debug, Default)]
pub struct AcsCounters {
    /// Events for a token this bot does not know (or no longer).
    pub unknown_token: AtomicU64,
    /// Requests whose JWT was refused.
    pub unauthorized: AtomicU64,
    /// Bodies that were not CloudEvents or Event Grid events.
    pub malformed: AtomicU64,
    /// Events naming another call than their token's.
    pub wrong_call: AtomicU64,
    /// Event Grid events of other types than IncomingCall.
    pub skipped_deliveries: AtomicU64,
}

/// One call's entry, by token.
#[derive(Default)]
struct Entry {
    /// The call connection id, once the service gave it.
    call_id: Option<String>,
    /// The audio stream, for calls with app-hosted media.
    stream: Option<Arc<StreamSlot>>,
}

pub(crate) struct AcsBackend {
    pub(crate) client: AcsClient,
    pub(crate) service: AcsService,
    /// `{callback URL}`: Event Grid's endpoint; each call's events go to `{callback}/{token}`.
    callback_base: String,
    /// `{media URL}`: each call's socket is `{media}/{token}`.
    media_base: String,
    entries: Mutex<HashMap<String, Entry>>,
    validator: Option<Arc<CallbackTokenValidator>>,
    pub(crate) counters: AcsCounters,
}

impl AcsBackend {
    /// The client and the URLs the service is given. `callback_uri` is the bot's public
    /// callback URL, `bound` the listener's address (the default media URL's host).
    pub(crate) fn new(
        service: &AcsService,
        identity: Option<(String, String, appmedia_signalling::auth::ClientAuth)>,
        callback_uri: &str,
        bound: std::net::SocketAddr,
    ) -> Result<Self, BotError> {
        let mut config = AcsClientConfig::new(service.endpoint.clone());
        config.api_version = service.api_version.clone();
        if let Some(path) = &service.ca_cert {
            config.ca_pem = Some(std::fs::read(path).map_err(|e| {
                BotError::Protocol(format!(
                    "cannot read the ACS CA certificate {}: {e}",
                    path.display()
                ))
            })?);
        }
        let ca_pem = config.ca_pem.clone();
        let credential = match (&service.access_key, identity) {
            (Some(key), _) => Credential::AccessKey(key.clone()),
            (None, Some((app_id, tenant, auth))) => {
                let credentials = ClientCredentials::for_authority(
                    "https://login.microsoftonline.com",
                    &tenant,
                    &app_id,
                    auth,
                    appmedia_acs::client::ENTRA_SCOPE.to_owned(),
                )
                .map_err(|e| BotError::Protocol(format!("Entra credentials: {e}")))?;
                Credential::Entra(
                    TokenSource::client_credentials(credentials, Duration::from_secs(10))
                        .map_err(|e| BotError::Protocol(format!("token source: {e}")))?,
                )
            }
            (None, None) => {
                return Err(BotError::Protocol(
                    "an ACS bot needs an access key or Entra credentials".into(),
                ));
            }
        };
        let client = AcsClient::new(config, credential)
            .map_err(|e| BotError::Protocol(format!("ACS client: {e}")))?;
        let validator = match &service.events {
            EventAuth::UrlToken => None,
            EventAuth::Jwt {
                openid_url,
                issuers,
                audience,
            } => {
                let mut auth = CallbackAuthConfig::new(audience.clone(), TenantPolicy::NotScoped);
                auth.openid_configuration_url = openid_url.clone();
                auth.issuers = issuers.clone();
                // The emulator publishes its keys on its own HTTPS listener.
                auth.ca_pem = ca_pem;
                Some(Arc::new(CallbackTokenValidator::new(auth).map_err(
                    |e| BotError::Protocol(format!("ACS event token validator: {e}")),
                )?))
            }
        };
        let media_base = match &service.media_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => format!("ws://{bound}/acs/media"),
        };
        Ok(AcsBackend {
            client,
            service: service.clone(),
            callback_base: callback_uri.trim_end_matches('/').to_owned(),
            media_base,
            entries: Mutex::new(HashMap::new()),
            validator,
            counters: AcsCounters::default(),
        })
    }

    /// A fresh call token and its entry.
    pub(crate) fn new_token(&self) -> Result<String, BotError> {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut entries = lock(&self.entries);
        if entries.len() >= MAX_TOKENS {
            return Err(BotError::Protocol("too many ACS calls held".into()));
        }
        entries.insert(token.clone(), Entry::default());
        Ok(token)
    }

    /// The callback URL of a call.
    pub(crate) fn callback_of(&self, token: &str) -> String {
        format!("{}/{token}", self.callback_base)
    }

    /// The audio socket URL of a call.
    pub(crate) fn media_url_of(&self, token: &str) -> String {
        format!("{}/{token}", self.media_base)
    }

    /// Ties a token to its call once the service named it.
    pub(crate) fn bind(&self, token: &str, call_id: &str, stream: Option<Arc<StreamSlot>>) {
        if let Some(entry) = lock(&self.entries).get_mut(token) {
            entry.call_id = Some(call_id.to_owned());
            if stream.is_some() {
                entry.stream = stream;
            }
        }
    }

    /// Forgets a call's token (its events and socket are refused from now on).
    pub(crate) fn forget(&self, token: &str) {
        lock(&self.entries).remove(token);
    }

    /// The routes the service reaches: events at `{callback path}` and below, the socket
    /// at the media URL's path.
    pub(crate) fn router(inner: &Arc<BotInner>, callback_path: &str) -> Router {
        let media_path = url::Url::parse(&acs_of(inner).media_base)
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_else(|_| "/acs/media".into());
        let callback_path = callback_path.trim_end_matches('/');
        let weak = Arc::downgrade(inner);
        Router::new()
            .route(
                if callback_path.is_empty() {
                    "/"
                } else {
                    callback_path
                },
                post(incoming_delivery),
            )
            .route(&format!("{callback_path}/{{token}}"), post(call_events))
            .route(&format!("{media_path}/{{token}}"), get(media_socket))
            .with_state(weak)
    }

    /// `Ok` when the request's token is valid (or none is needed); otherwise the answer: 401,
    /// or 503 with `Retry-After` when the keys to check it could not be fetched (the service
    /// retries a 503; a 401 would lose the event).
    async fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(validator) = &self.validator else {
            return Ok(());
        };
        let header = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match validator.validate_header(header).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "ACS callback token not checked: keys unavailable, 503");
                let wait = validator.next_fetch_in().as_secs().max(1);
                Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(axum::http::header::RETRY_AFTER, wait.to_string())],
                )
                    .into_response())
            }
            Err(e) => {
                self.counters.unauthorized.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "ACS callback token refused");
                Err(StatusCode::UNAUTHORIZED.into_response())
            }
        }
    }
}

fn acs_of(inner: &BotInner) -> &AcsBackend {
    inner
        .acs()
        .expect("ACS routes are mounted on ACS bots only")
}

type Inner = Weak<BotInner>;

/// `POST {callback}/{token}`: a call's CloudEvents.
async fn call_events(
    State(inner): State<Inner>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(inner) = inner.upgrade() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let acs = acs_of(&inner);
    let known = lock(&acs.entries).get(&token).map(|e| e.call_id.clone());
    let Some(bound) = known else {
        acs.counters.unknown_token.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Err(refused) = acs.authorize(&headers).await {
        return refused;
    }
    let (events, refused) = match parse_batch(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            acs.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    acs.counters
        .malformed
        .fetch_add(refused.len() as u64, Ordering::Relaxed);
    for event in events {
        match &bound {
            Some(call_id) if *call_id != event.call_connection_id => {
                acs.counters.wrong_call.fetch_add(1, Ordering::Relaxed);
            }
            Some(_) => inner.route_acs(event),
            None => {
                // Events that beat the create's or the answer's response: the call id they
                // name becomes the token's.
                acs.bind(&token, &event.call_connection_id, None);
                inner.route_acs(event);
            }
        }
    }
    StatusCode::OK.into_response()
}

/// `POST {callback}`: Event Grid's deliveries (subscription validation, incoming calls).
async fn incoming_delivery(
    State(inner): State<Inner>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(inner) = inner.upgrade() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let acs = acs_of(&inner);
    let (delivery, skipped) = match parse_delivery(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            acs.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    acs.counters
        .skipped_deliveries
        .fetch_add(skipped as u64, Ordering::Relaxed);
    let validation = headers
        .get("aeg-event-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SubscriptionValidation"));
    match delivery {
        Delivery::Validation { code } => {
            if !validation {
                acs.counters.malformed.fetch_add(1, Ordering::Relaxed);
                return StatusCode::BAD_REQUEST.into_response();
            }
            tracing::info!("Event Grid subscription validated");
            axum::Json(serde_json::json!({ "validationResponse": code })).into_response()
        }
        Delivery::Incoming(calls) => {
            // Event Grid retries a 503: a full or draining instance leaves the call to another.
            if !inner.ready() {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            for call in calls {
                inner.offer_acs(call);
            }
            StatusCode::OK.into_response()
        }
    }
}

/// `GET {media}/{token}`: the service's audio socket for a call.
async fn media_socket(
    State(inner): State<Inner>,
    Path(token): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some(inner) = inner.upgrade() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let acs = acs_of(&inner);
    if !lock(&acs.entries).contains_key(&token) {
        acs.counters.unknown_token.fetch_add(1, Ordering::Relaxed);
        return StatusCode::NOT_FOUND.into_response();
    }
    if let Err(refused) = acs.authorize(&headers).await {
        return refused;
    }
    // The service may connect before the answer's response has set the stream up.
    let deadline = Instant::now() + SLOT_WAIT;
    let slot = loop {
        let slot = lock(&acs.entries)
            .get(&token)
            .and_then(|e| e.stream.clone());
        match slot {
            Some(slot) => break slot,
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            None => return StatusCode::NOT_FOUND.into_response(),
        }
    };
    upgrade
        .max_message_size(MAX_SOCKET_MESSAGE)
        .on_upgrade(move |socket| slot.serve(socket))
}
