//! One bot among several instances: which notifications this process takes, whether it is
//! ready for new calls, and the health endpoints a load balancer or Kubernetes asks.
//!
//! A call lives in the one process that holds its media, so Graph's notifications for it must
//! come back to that process: each instance puts its own id in the `callbackUri` it hands to
//! Graph (`https://bot.example.com/{instance}/callback`, routed by the proxy), and answers
//! **404** to a notification for a call it does not hold — a call of another instance that a
//! proxy misrouted, or of this instance's previous life after a restart. 404 is the answer of
//! a resource that is not there; the call is gone for this process, and nothing is applied.
//! While a create is in flight an unknown call id is the create's own early notification: it
//! is kept for a moment instead (see the bot's pending buffer).
//!
//! New incoming calls arrive on the application's shared calling webhook, which the proxy
//! balances over the ready instances. An instance that is draining or at its `max_calls`
//! answers the `incoming` notification **503** with `Retry-After`: nothing is applied, and a
//! proxy set to retry 503 on the next upstream (nginx `proxy_next_upstream http_503
//! non_idempotent`, HAProxy `retry-on 503` with `option redispatch`) offers it to another
//! instance, which answers the call with its own callback URL — the call is pinned to it.
//!
//! `GET /healthz` is 200 while the process serves; `GET /readyz` is 200 while it takes new
//! calls and 503 once it drains or is full; `GET /metrics` gives the counters in the
//! Prometheus text format.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use appmedia_model::{CallDirection, CallState, CommsNotifications, ResourceData};
use appmedia_signalling::callback::{Admission, notification_call_id};
use axum::http::StatusCode;
use axum::routing::get;

use crate::BotError;
use crate::bot::{BotInner, Routes, lock};
use crate::exposition::Sample;

/// What a busy instance asks the caller to wait before retrying.
const BUSY_RETRY_AFTER_SECS: u32 = 1;

impl BotInner {
    /// Whether this instance takes new calls: not shutting down, and below `max_calls`.
    pub(crate) fn ready(&self) -> bool {
        self.ready_with(&mut lock(&self.routes))
    }

    fn ready_with(&self, routes: &mut Routes) -> bool {
        !self.shutting_down.load(Ordering::SeqCst)
            && self
                .config
                .max_calls
                .is_none_or(|max| self.held_with(routes) < max)
    }

    /// Counts a create in flight, unless the instance holds `max_calls` already (checked
    /// and counted under the routes' lock, like an incoming offer's admission).
    pub(crate) fn claim_create(&self) -> Result<(), BotError> {
        let mut routes = lock(&self.routes);
        if let Some(max) = self.config.max_calls
            && self.held_with(&mut routes) >= max
        {
            return Err(BotError::AtCapacity { max_calls: max });
        }
        self.creates_in_flight.fetch_add(1, Ordering::SeqCst);
        self.note_held(&mut routes);
        Ok(())
    }

    /// Raises the high-water mark of calls held (called where the count grows).
    fn note_held(&self, routes: &mut Routes) {
        let held = self.held_with(routes) as u64;
        self.counters
            .calls_held_peak
            .fetch_max(held, Ordering::Relaxed);
    }

    fn held_with(&self, routes: &mut Routes) -> usize {
        routes.held() + self.creates_in_flight.load(Ordering::SeqCst)
    }

    /// The notification gate (see the module's documentation).
    pub(crate) fn admit(&self, batch: &CommsNotifications) -> Admission {
        let (mut known, mut unknown) = (false, false);
        let mut offers = Vec::new();
        // One lock for the look-up, the capacity check and the reservation: two offers at
        // once cannot both take the last slot.
        let mut routes = lock(&self.routes);
        for notification in batch.notifications() {
            match notification_call_id(notification) {
                // Not about a call: the receiver counts it; nothing to route.
                None => known = true,
                Some(id) if routes.knows(&id) => known = true,
                Some(id) if is_offer(notification.resource_data.value()) => offers.push(id),
                Some(_) => unknown = true,
            }
        }
        if !offers.is_empty() && !known {
            if !self.ready_with(&mut routes) {
                return Admission::Busy {
                    retry_after_secs: BUSY_RETRY_AFTER_SECS,
                };
            }
            for id in offers {
                routes.reserve_offer(id);
            }
            self.note_held(&mut routes);
            return Admission::Accept;
        }
        drop(routes);
        if unknown && !known && self.creates_in_flight.load(Ordering::SeqCst) == 0 {
            return Admission::UnknownCall;
        }
        Admission::Accept
    }

    /// The Prometheus text exposition of the counters (see [`crate::exposition`]).
    pub(crate) fn metrics(&self) -> String {
        let (ticks, late_ticks) = self.tick_counts();
        let mut sample = Sample {
            ready: self.ready(),
            stats: crate::bot::stats_of(self),
            receiver: self.receiver.stats(),
            ticks,
            late_ticks,
            ..Sample::default()
        };
        // Held while the live calls are summed: a call that ends meanwhile moves its counts
        // into the ended totals before or after this sum, never both.
        let ended = lock(&self.ended_media);
        sample.media = *ended;
        for call in self.live_controls() {
            call.add_media_so_far(&mut sample.media, &mut sample.jitter);
        }
        drop(ended);
        self.exposition.render(&sample)
    }
}

/// An `incoming` call offered to the application (Graph's `state: incoming`).
fn is_offer(data: Option<&ResourceData>) -> bool {
    matches!(data, Some(ResourceData::Call(call))
        if call.state.value() == Some(&CallState::Incoming)
            && call.direction.value() != Some(&CallDirection::Outgoing))
}

/// `/healthz`, `/readyz` and `/metrics`.
pub(crate) fn router(inner: &Arc<BotInner>) -> axum::Router {
    let weak = Arc::downgrade(inner);
    let ready = weak.clone();
    let metrics = weak.clone();
    axum::Router::new()
        .route(
            "/healthz",
            get(move || {
                let alive = weak.upgrade().is_some();
                async move {
                    if alive {
                        (StatusCode::OK, "ok\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "stopped\n")
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = ready.upgrade().is_some_and(|inner| inner.ready());
                async move {
                    if ready {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.upgrade().map(|inner| inner.metrics());
                async move {
                    match text {
                        Some(text) => (
                            StatusCode::OK,
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4",
                            )],
                            text,
                        ),
                        None => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(axum::http::header::CONTENT_TYPE, "text/plain")],
                            String::new(),
                        ),
                    }
                }
            }),
        )
}

/// Why a process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// SIGTERM: Kubernetes, systemd or a supervisor stops the instance — drain it.
    Terminate,
    /// SIGINT (Ctrl-C).
    Interrupt,
}

/// Resolves when the process gets SIGTERM or SIGINT. An instance then calls
/// [`Bot::drain`](crate::Bot::drain) and exits 0:
///
/// ```no_run
/// # async fn serve(bot: appmedia_bot::Bot) {
/// let signal = appmedia_bot::terminated().await;
/// tracing::info!(?signal, "stopping");
/// bot.drain().await;
/// # }
/// ```
///
/// Where SIGTERM's handler cannot be installed (not on Unix, or a platform error), only Ctrl-C
/// is awaited; where neither can, this never resolves and the signals keep their default
/// action (the process ends).
pub async fn terminated() -> Termination {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => Termination::Terminate,
                _ = tokio::signal::ctrl_c() => Termination::Interrupt,
            };
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    Termination::Interrupt
}
