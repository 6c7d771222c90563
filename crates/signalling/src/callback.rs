//! The callback receiver: the HTTP endpoint behind the bot's `callbackUri`.
//!
//! Each POST is authenticated ([`CallbackAuth`]: 401 for a bad token, 503 when its signing keys
//! cannot be fetched, so that Graph sends it again), parsed whole as
//! `commsNotifications` (400 with a Graph-style error body for malformed JSON, nothing
//! applied), routed by call id to that call's [`CallAgent`] (state machine, roster, content
//! sharing) in the [`CallRegistry`], and answered 202. What changed reaches the bot as
//! [`CallEvent`]s through a [`CallEventSink`] (a tokio mpsc channel, or any callback).
//! Resource types and properties this version does not model are kept and delivered as
//! [`CallEvent::Unhandled`], not refused. The token is checked before the body is read; a
//! batch the bot's event queue has no room for is refused whole (503, Graph sends it again);
//! an optional [`Admission`] gate answers 404/503 for calls that do not belong here. The
//! routing and per-call logic, which does no I/O, is in `callback/registry.rs`; the hardened
//! server (timeouts, caps) in `callback/server.rs`; this file is the HTTP side.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use appmedia_model::{CommsNotifications, GraphErrorBody, InnerError, Nullable, Participant};
use axum::Router;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::sync::mpsc;

use crate::auth::{CallbackAuth, CallbackClaims};

mod registry;
mod server;

pub use registry::{
    CallAgent, CallEvent, CallRegistry, DEFAULT_IDLE_TTL, DEFAULT_MAX_CALLS, Refusal,
    notification_call_id,
};
pub use server::ServerLimits;
/// Where events go.
pub trait CallEventSink: Send + Sync + 'static {
    /// Hands one event over without blocking; gives it back when it could not be delivered
    /// (the receiver counts it as dropped).
    fn deliver(&self, event: CallEvent) -> Result<(), Box<CallEvent>>;

    /// How many events it takes now without refusing, when it can refuse for lack of room
    /// (`None`: it never refuses while open). A batch whose events do not fit is not applied
    /// and answered 503, so that Graph sends it again: Graph never resends what was answered
    /// 202, so an `incoming` or `terminated` dropped after a 202 would be lost for good.
    fn room(&self) -> Option<usize> {
        None
    }
}

impl CallEventSink for mpsc::Sender<CallEvent> {
    fn room(&self) -> Option<usize> {
        Some(if self.is_closed() { 0 } else { self.capacity() })
    }

    fn deliver(&self, event: CallEvent) -> Result<(), Box<CallEvent>> {
        self.try_send(event).map_err(|e| {
            Box::new(match e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            })
        })
    }
}

impl CallEventSink for mpsc::UnboundedSender<CallEvent> {
    fn deliver(&self, event: CallEvent) -> Result<(), Box<CallEvent>> {
        self.send(event).map_err(|e| Box::new(e.0))
    }
}

/// Whether this process takes a batch of notifications, decided before the batch is applied.
/// Several instances of a bot behind one webhook use it: a notification for a call another
/// instance (or an earlier life of this one) holds is not applied here, and a new incoming
/// call this instance cannot take is refused so that a proxy offers it to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Apply it (202).
    Accept,
    /// None of the batch's calls lives here: 404 with a Graph-style error; nothing applied.
    UnknownCall,
    /// A new call this process will not take now (draining, at capacity, not ready): 503 with
    /// `Retry-After`; nothing applied. A reverse proxy configured to retry 503 on another
    /// upstream (nginx `proxy_next_upstream http_503`, HAProxy `retry-on 503`) hands it over.
    Busy {
        /// Seconds for `Retry-After`.
        retry_after_secs: u32,
    },
}

type Gate = Box<dyn Fn(&CommsNotifications) -> Admission + Send + Sync>;

/// A closure as a sink; it must not block (it runs inside the HTTP handler).
pub struct FnSink<F>(pub F);

impl<F: Fn(CallEvent) + Send + Sync + 'static> CallEventSink for FnSink<F> {
    fn deliver(&self, event: CallEvent) -> Result<(), Box<CallEvent>> {
        (self.0)(event);
        Ok(())
    }
}

/// Counters of the receiver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// POSTs answered 202.
    pub accepted: u64,
    /// POSTs answered 401.
    pub unauthorized: u64,
    /// POSTs answered 503 because the token's signing keys could not be fetched (the token
    /// was not checked; Graph sends the notification again).
    pub keys_unavailable: u64,
    /// POSTs answered 400.
    pub malformed: u64,
    /// POSTs answered 413: bodies over the receiver's cap, never read past it.
    pub too_large: u64,
    /// Notifications applied.
    pub notifications: u64,
    /// Events handed to the sink.
    pub events_delivered: u64,
    /// Events the sink refused (full or closed channel).
    pub events_dropped: u64,
    /// POSTs answered 404 by the gate: calls that do not live here.
    pub unknown_call: u64,
    /// POSTs answered 503 by the gate: new calls this process did not take.
    pub busy: u64,
    /// POSTs answered 503 because the event sink had no room for their events (nothing
    /// applied; Graph sends them again).
    pub backpressure: u64,
    /// POSTs answered 503 because the registry holds its cap of calls.
    pub registry_full: u64,
    /// POSTs answered 403: a call first heard of from another tenant's token.
    pub other_tenant: u64,
    /// POSTs answered 408: the body did not arrive within the body timeout.
    pub timed_out: u64,
    /// POSTs answered 503 because `max_in_flight` requests were being handled.
    pub overloaded: u64,
    /// Connections closed at once: the server held `max_connections` already.
    pub connections_refused: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    unauthorized: AtomicU64,
    keys_unavailable: AtomicU64,
    malformed: AtomicU64,
    too_large: AtomicU64,
    notifications: AtomicU64,
    events_delivered: AtomicU64,
    events_dropped: AtomicU64,
    unknown_call: AtomicU64,
    busy: AtomicU64,
    backpressure: AtomicU64,
    registry_full: AtomicU64,
    other_tenant: AtomicU64,
    timed_out: AtomicU64,
    overloaded: AtomicU64,
    connections_refused: AtomicU64,
}

struct ReceiverInner {
    auth: CallbackAuth,
    registry: Arc<CallRegistry>,
    sink: Box<dyn CallEventSink>,
    counters: Counters,
    max_body_bytes: usize,
    gate: Option<Gate>,
    limits: ServerLimits,
    /// Permits for requests being handled (`limits.max_in_flight`).
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// The largest notification body [`CallbackReceiver::router`] reads by default. A roster
/// notification of a large meeting carries one participant object (~1–2 KiB) per person,
/// so 4 MiB holds a full roster of a couple of thousand people; anything bigger is refused
/// with 413 before it is buffered.
pub const DEFAULT_MAX_NOTIFICATION_BYTES: usize = 4 << 20;

/// The callbackUri endpoint. Cheap to clone.
#[derive(Clone)]
pub struct CallbackReceiver {
    inner: Arc<ReceiverInner>,
}

impl std::fmt::Debug for CallbackReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackReceiver")
            .field("auth", &self.inner.auth)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Why [`CallbackReceiver::serve`] stopped or refused to start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServeError {
    /// Validation is off and the listener is not on loopback.
    #[error(
        "token validation is disabled, so the receiver may only listen on loopback, not on {listener}"
    )]
    UnauthenticatedOffLoopback {
        /// The address the receiver was asked to listen on.
        listener: std::net::SocketAddr,
    },
    #[error("callback listener failed: {0}")]
    /// Binding or serving failed; the I/O error.
    Io(String),
}

/// The answer to one callback POST.
#[derive(Clone, Debug, PartialEq)]
pub struct CallbackResponse {
    /// The HTTP status answered.
    pub status: StatusCode,
    /// A Graph-style error body for every refusal (400, 401, 403, 404, 408, 413, 503).
    pub error: Option<GraphErrorBody>,
    /// The events the POST produced (already handed to the sink).
    pub events: usize,
    /// `Retry-After` seconds (503 only).
    pub retry_after: Option<u32>,
}

impl CallbackResponse {
    fn refused(status: StatusCode, code: &str, message: &str) -> Self {
        Self {
            status,
            error: Some(error_body(code, message)),
            events: 0,
            retry_after: None,
        }
    }
}

impl IntoResponse for CallbackResponse {
    fn into_response(self) -> Response {
        let mut response = match &self.error {
            Some(error) => (self.status, axum::Json(error)).into_response(),
            None => self.status.into_response(),
        };
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl CallbackReceiver {
    /// A receiver that authenticates with `auth`, applies notifications to `registry` and hands the events to `sink`.
    pub fn new(auth: CallbackAuth, registry: Arc<CallRegistry>, sink: impl CallEventSink) -> Self {
        Self {
            inner: Arc::new(ReceiverInner {
                auth,
                registry,
                sink: Box::new(sink),
                counters: Counters::default(),
                max_body_bytes: DEFAULT_MAX_NOTIFICATION_BYTES,
                gate: None,
                limits: ServerLimits::default(),
                in_flight: Arc::new(tokio::sync::Semaphore::new(
                    ServerLimits::default().max_in_flight,
                )),
            }),
        }
    }

    /// A receiver whose events go to a bounded channel of `capacity`: the HTTP handler never
    /// waits for the bot; a batch whose events do not fit is answered 503 and not applied
    /// (Graph sends it again).
    pub fn with_channel(
        auth: CallbackAuth,
        registry: Arc<CallRegistry>,
        capacity: usize,
    ) -> (Self, mpsc::Receiver<CallEvent>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Self::new(auth, registry, tx), rx)
    }

    /// Caps the notification bodies the router reads (default
    /// [`DEFAULT_MAX_NOTIFICATION_BYTES`]); a bigger one is answered 413 with a Graph-style
    /// error body. Set it before serving: clones made earlier keep the old cap.
    pub fn with_max_body_bytes(mut self, max: usize) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.max_body_bytes = max.max(1),
            None => tracing::warn!(
                max,
                "with_max_body_bytes on a receiver already shared; the cap is unchanged"
            ),
        }
        self
    }

    /// Decides before each authenticated, well-formed batch is applied whether this process
    /// takes it ([`Admission`]). It runs in the HTTP handler: it must not block. Set it before
    /// serving: clones made earlier keep no gate.
    pub fn with_gate(
        mut self,
        gate: impl Fn(&CommsNotifications) -> Admission + Send + Sync + 'static,
    ) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.gate = Some(Box::new(gate)),
            None => tracing::warn!("with_gate on a receiver already shared; no gate set"),
        }
        self
    }

    /// The server's limits (connections, requests at once, header and body timeouts; see
    /// [`ServerLimits`]). Set them before serving: clones made earlier keep the old ones.
    pub fn with_limits(mut self, limits: ServerLimits) -> Self {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => {
                inner.limits = limits;
                inner.in_flight =
                    Arc::new(tokio::sync::Semaphore::new(limits.max_in_flight.max(1)));
            }
            None => tracing::warn!("with_limits on a receiver already shared; limits unchanged"),
        }
        self
    }

    /// The server's limits.
    pub fn limits(&self) -> ServerLimits {
        self.inner.limits
    }

    pub(crate) fn count_refused_connection(&self) {
        self.inner
            .counters
            .connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The cap on notification bodies.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// The calls' state, shared with whoever reads it.
    pub fn registry(&self) -> &Arc<CallRegistry> {
        &self.inner.registry
    }

    /// How notifications are authenticated.
    pub fn auth(&self) -> &CallbackAuth {
        &self.inner.auth
    }

    /// A snapshot of the receiver's counters.
    pub fn stats(&self) -> ReceiverStats {
        let c = &self.inner.counters;
        ReceiverStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            unauthorized: c.unauthorized.load(Ordering::Relaxed),
            keys_unavailable: c.keys_unavailable.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            too_large: c.too_large.load(Ordering::Relaxed),
            notifications: c.notifications.load(Ordering::Relaxed),
            events_delivered: c.events_delivered.load(Ordering::Relaxed),
            events_dropped: c.events_dropped.load(Ordering::Relaxed),
            unknown_call: c.unknown_call.load(Ordering::Relaxed),
            busy: c.busy.load(Ordering::Relaxed),
            backpressure: c.backpressure.load(Ordering::Relaxed),
            registry_full: c.registry_full.load(Ordering::Relaxed),
            other_tenant: c.other_tenant.load(Ordering::Relaxed),
            timed_out: c.timed_out.load(Ordering::Relaxed),
            overloaded: c.overloaded.load(Ordering::Relaxed),
            connections_refused: c.connections_refused.load(Ordering::Relaxed),
        }
    }

    /// An axum router answering POST on `path` (the path of the callbackUri).
    pub fn router(&self, path: &str) -> Router {
        // axum refuses a route without a leading '/'; a callbackUri path always has one.
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        Router::new()
            .route(&path, post(receive))
            .with_state(self.clone())
    }

    /// Serves [`CallbackReceiver::router`] on `listener` until the task is dropped.
    ///
    /// When token validation is disabled, the listener must be bound to the loopback
    /// address validation was disabled for: a receiver without authentication never
    /// listens where anything but this machine can reach it.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        path: &str,
    ) -> Result<(), ServeError> {
        self.serve_until(listener, path, std::future::pending())
            .await
    }

    /// [`serve`](Self::serve) until `shutdown` resolves; then stops accepting, lets requests in
    /// flight finish and closes every connection (idle keep-alive ones included), so no
    /// connection task outlives the server.
    pub async fn serve_until(
        &self,
        listener: tokio::net::TcpListener,
        path: &str,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        self.serve_router_until(listener, self.router(path), shutdown)
            .await
    }

    /// [`serve_until`](Self::serve_until) with a router the caller built from
    /// [`router`](Self::router) and routes of its own (health checks, metrics), under the same
    /// loopback rule and the receiver's [`ServerLimits`].
    pub async fn serve_router_until(
        &self,
        listener: tokio::net::TcpListener,
        router: Router,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let local = listener
            .local_addr()
            .map_err(|e| ServeError::Io(e.to_string()))?;
        if let Some(allowed) = self.inner.auth.disabled_on()
            && (!local.ip().is_loopback() || local.ip() != allowed.ip())
        {
            return Err(ServeError::UnauthenticatedOffLoopback { listener: local });
        }
        server::serve(self, listener, router, shutdown).await
    }

    /// Handles one POST: authenticate, parse, apply, deliver. Usable without axum.
    pub async fn handle(
        &self,
        authorization: Option<&str>,
        body: &[u8],
        now: Instant,
    ) -> CallbackResponse {
        match self.authorize(authorization).await {
            Ok(claims) => self.handle_authorized(claims.as_ref(), body, now),
            Err(refused) => refused,
        }
    }

    /// The token check alone: the claims (`None` when validation is disabled), or the 401 —
    /// or a 503 when the token could not be checked because the signing keys are unavailable:
    /// Graph sends that notification again, where a 401 would lose it.
    async fn authorize(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<CallbackClaims>, CallbackResponse> {
        self.inner
            .auth
            .check(authorization)
            .await
            .map_err(|reason| {
                if reason.is_unavailable() {
                    self.inner
                        .counters
                        .keys_unavailable
                        .fetch_add(1, Ordering::Relaxed);
                    let wait = self.inner.auth.retry_after();
                    tracing::warn!(%reason, retry_after = ?wait, "callback not checked: signing keys unavailable, 503");
                    return CallbackResponse {
                        retry_after: Some(u32::try_from(wait.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX)),
                        ..CallbackResponse::refused(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "ServiceUnavailable",
                            "The notification's token cannot be checked now; send it again.",
                        )
                    };
                }
                self.inner
                    .counters
                    .unauthorized
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%reason, "callback refused: bad token");
                CallbackResponse {
                    status: StatusCode::UNAUTHORIZED,
                    // The reason is logged, not told: a forger learns nothing from it.
                    error: Some(error_body(
                        "InvalidAuthenticationToken",
                        "The notification's bearer token was rejected.",
                    )),
                    events: 0,
                    retry_after: None,
                }
            })
    }

    /// Parses, admits, applies and delivers a batch whose token was accepted.
    fn handle_authorized(
        &self,
        claims: Option<&CallbackClaims>,
        body: &[u8],
        now: Instant,
    ) -> CallbackResponse {
        let counters = &self.inner.counters;
        let notifications: CommsNotifications = match serde_json::from_slice(body) {
            Ok(parsed) => parsed,
            Err(e) => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "callback refused: malformed notification body");
                return CallbackResponse {
                    status: StatusCode::BAD_REQUEST,
                    error: Some(error_body(
                        "BadRequest",
                        &format!("The notification body is not a commsNotifications document: {e}"),
                    )),
                    events: 0,
                    retry_after: None,
                };
            }
        };
        if let Some(other) = notifications.odata_type.value()
            && other != CommsNotifications::ODATA_TYPE
        {
            tracing::info!(odata_type = %other, "unexpected @odata.type on a notification batch; applied anyway");
        }
        if !notifications.extra.is_empty() || notifications.notifications().is_empty() {
            tracing::debug!(extra = ?notifications.extra.keys().collect::<Vec<_>>(), count = notifications.notifications().len(), "notification batch");
        }
        if let Some(claims) = claims {
            tracing::trace!(tenant = %claims.tenant_id, issuer = %claims.issuer, "callback token accepted");
        }
        match self.inner.gate.as_ref().map(|gate| gate(&notifications)) {
            None | Some(Admission::Accept) => {}
            Some(Admission::UnknownCall) => {
                counters.unknown_call.fetch_add(1, Ordering::Relaxed);
                tracing::info!("notification for a call that does not live here: 404");
                return CallbackResponse::refused(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "No call of this notification lives on this instance.",
                );
            }
            Some(Admission::Busy { retry_after_secs }) => {
                counters.busy.fetch_add(1, Ordering::Relaxed);
                tracing::info!("new call refused: this instance takes no new calls now");
                return CallbackResponse {
                    retry_after: Some(retry_after_secs),
                    ..CallbackResponse::refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "This instance takes no new calls now; another may.",
                    )
                };
            }
        }
        let tenant = claims.map(|c| c.tenant_id.as_str());
        let sink = &self.inner.sink;
        let applied = self
            .inner
            .registry
            .apply_atomically(&notifications, tenant, now, |events| {
                if sink.room().is_some_and(|room| room < events.len()) {
                    return false;
                }
                self.deliver(events);
                true
            });
        let produced = match applied {
            Ok(produced) => produced,
            Err(Refusal::NotTaken) => {
                counters.backpressure.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("event sink full: batch not applied, 503 (Graph sends it again)");
                return CallbackResponse {
                    retry_after: Some(1),
                    ..CallbackResponse::refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "The bot cannot take more events now; send the notification again.",
                    )
                };
            }
            Err(Refusal::Full { max_calls }) => {
                counters.registry_full.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(max_calls, "call registry full: batch not applied, 503");
                return CallbackResponse {
                    retry_after: Some(5),
                    ..CallbackResponse::refused(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "The bot holds as many calls as it can.",
                    )
                };
            }
            Err(Refusal::OtherTenant { call_id }) => {
                counters.other_tenant.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%call_id, ?tenant, "notification for a call of another tenant: 403");
                return CallbackResponse::refused(
                    StatusCode::FORBIDDEN,
                    "Forbidden",
                    "A call of this notification belongs to another tenant.",
                );
            }
        };
        counters.notifications.fetch_add(
            notifications.notifications().len() as u64,
            Ordering::Relaxed,
        );
        counters.accepted.fetch_add(1, Ordering::Relaxed);
        CallbackResponse {
            status: StatusCode::ACCEPTED,
            error: None,
            events: produced,
            retry_after: None,
        }
    }

    /// Hands events to the sink, counting what it refuses.
    pub fn deliver(&self, events: Vec<CallEvent>) {
        let counters = &self.inner.counters;
        for event in events {
            match self.inner.sink.deliver(event) {
                Ok(()) => {
                    counters.events_delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(event) => {
                    counters.events_dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(call_id = ?event.call_id(), "event sink full or closed; event dropped");
                }
            }
        }
    }

    /// Applies a full roster fetched after a [`CallEvent::RosterGap`] and delivers the change.
    pub fn apply_full_roster(&self, call_id: &str, participants: Vec<Participant>) {
        let events = self.inner.registry.apply_full_roster(call_id, participants);
        self.deliver(events);
    }

    /// Applies a call resource read from the service and delivers what changed ([`CallRegistry::apply_call`]): how a bot catches up with a state change whose
    /// notification was lost.
    pub fn apply_call_resource(&self, call_id: &str, call: &appmedia_model::Call) {
        let events = self
            .inner
            .registry
            .apply_call(call_id, call, Instant::now());
        self.deliver(events);
    }

    /// Spawns a task that reports overdue roster gaps every `interval`; it ends when the
    /// returned handle is aborted or dropped with the runtime.
    pub fn spawn_gap_poller(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let receiver = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let events = receiver.inner.registry.poll(Instant::now());
                receiver.deliver(events);
            }
        })
    }
}

async fn receive(
    State(receiver): State<CallbackReceiver>,
    request: axum::extract::Request,
) -> CallbackResponse {
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let counters = &receiver.inner.counters;
    // Without token validation, only this machine may post: the peer must be known (the
    // receiver's own server, or axum's `into_make_service_with_connect_info`) and loopback,
    // wherever the router is served.
    if receiver.inner.auth.disabled_on().is_some() {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0);
        if !peer.is_some_and(|peer| peer.ip().is_loopback()) {
            counters.unauthorized.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                ?peer,
                "callback refused: unauthenticated receiver, peer not on loopback (or unknown)"
            );
            return CallbackResponse::refused(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This receiver does not validate tokens and takes notifications from this machine only.",
            );
        }
    }
    let Ok(_permit) = receiver.inner.in_flight.clone().try_acquire_owned() else {
        counters.overloaded.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("callback refused: too many requests at once");
        return CallbackResponse {
            retry_after: Some(1),
            ..CallbackResponse::refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "Too many notifications at once; send it again.",
            )
        };
    };
    // The token first: without a valid one, not a byte of the body is read.
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let claims = match receiver.authorize(authorization).await {
        Ok(claims) => claims,
        Err(refused) => return refused,
    };
    // Read at most the cap (axum's own 2 MiB default limit does not apply to a raw Body):
    // a bigger body is refused without buffering the rest of it; a slow one times out.
    let cap = receiver.inner.max_body_bytes;
    let read = tokio::time::timeout(
        receiver.inner.limits.body_timeout,
        axum::body::to_bytes(body, cap),
    )
    .await;
    let Ok(read) = read else {
        counters.timed_out.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("callback refused: body not received in time");
        return CallbackResponse::refused(
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "The notification body did not arrive in time.",
        );
    };
    let body = match read {
        Ok(bytes) => bytes,
        Err(e) => {
            let error = e.into_inner();
            if !error.is::<http_body_util::LengthLimitError>() {
                // The connection broke mid-body: nobody is left to read an answer.
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "callback body could not be read");
                return CallbackResponse {
                    status: StatusCode::BAD_REQUEST,
                    error: Some(error_body(
                        "BadRequest",
                        "The notification body could not be read.",
                    )),
                    events: 0,
                    retry_after: None,
                };
            }
            counters.too_large.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(cap, "callback refused: body over the cap");
            return CallbackResponse {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                error: Some(error_body(
                    "RequestEntityTooLarge",
                    &format!("The notification body is larger than {cap} bytes."),
                )),
                events: 0,
                retry_after: None,
            };
        }
    };
    if let Some(content_type) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !content_type.to_ascii_lowercase().contains("json")
    {
        tracing::debug!(%content_type, "notification with a non-JSON content type; parsing anyway");
    }
    receiver.handle_authorized(claims.as_ref(), &body, Instant::now())
}

/// A Graph-style error body with a fresh request id and the current date.
pub fn error_body(code: &str, message: &str) -> GraphErrorBody {
    let mut body = GraphErrorBody::new(code, message);
    body.error.inner_error = Nullable::Value(InnerError {
        request_id: Nullable::Value(uuid::Uuid::new_v4().to_string()),
        date: Nullable::Value(iso8601_utc(SystemTime::now())),
        ..InnerError::default()
    });
    body
}

/// `YYYY-MM-DDTHH:MM:SS` in UTC, as Graph writes `innerError.date`.
pub fn iso8601_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso8601_utc(UNIX_EPOCH), "1970-01-01T00:00:00");
        let t = UNIX_EPOCH + Duration::from_secs(1_709_210_096); // 2024-02-29T12:34:56Z
        assert_eq!(iso8601_utc(t), "2024-02-29T12:34:56");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29T00:00:00Z
        assert_eq!(iso8601_utc(t), "2000-02-29T00:00:00");
    }

    #[test]
    fn an_empty_sharing_list_does_not_wipe_the_roster() {
        let registry = CallRegistry::default();
        let now = Instant::now();
        let roster: CommsNotifications = serde_json::from_value(serde_json::json!({"value": [{
            "changeType": "updated",
            "resourceUrl": "/communications/calls/c/participants",
            "resourceData": [{"@odata.type": "#microsoft.graph.participant", "id": "p"}]}]}))
        .unwrap();
        registry.apply(&roster, now);
        let empty: CommsNotifications = serde_json::from_value(serde_json::json!({"value": [{
            "changeType": "deleted",
            "resourceUrl": "/communications/calls/c/contentsharingsessions",
            "resourceData": []}]}))
        .unwrap();
        assert!(registry.apply(&empty, now).is_empty());
        assert_eq!(registry.with_call("c", |a| a.roster().len()), Some(1));
    }
}
