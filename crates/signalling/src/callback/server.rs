//! Serving the receiver on a public address: the limits a production HTTP server sets.
//!
//! `axum::serve` has no read timeouts and takes every connection, so a few thousand slow
//! clients hold the server's memory and file descriptors for as long as they like. This is
//! hyper's own HTTP/1 connection driver, set up as hyper and axum deployments harden it:
//!
//! * **header read timeout** — a connection that has not sent a whole request head in time is
//!   closed (hyper's `header_read_timeout`; slowloris);
//! * **body read timeout** — a body not fully received in time is answered 408 (in the
//!   handler; the token is checked before any body byte is read, so only a client holding a
//!   valid token can make the server wait for a body at all);
//! * **connection cap** — beyond `max_connections`, new connections are closed at once and
//!   counted; **request cap** — beyond `max_in_flight` requests being handled, 503 with
//!   `Retry-After` (Graph retries).
//!
//! On shutdown the listener closes, requests in flight finish and every connection (idle
//! keep-alive ones too) is closed, so no connection task outlives the server.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use super::{CallbackReceiver, ServeError};

/// How much of the server a client may hold; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at most (Graph keeps a few per bot; each costs a file descriptor).
    pub max_connections: usize,
    /// Requests being handled at once at most.
    pub max_in_flight: usize,
    /// Time to receive a request's head (line and headers).
    pub header_timeout: Duration,
    /// Time to receive a request's body once its head was accepted.
    pub body_timeout: Duration,
}

impl Default for ServerLimits {
    /// 1,024 connections, 256 requests at once, 10 s for the head and 10 s for the body
    /// (Graph posts a notification in one go; 10 s is generous for 4 MiB on a slow link).
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_in_flight: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts connections on `listener` and serves `router` on each until `shutdown`.
pub(super) async fn serve(
    receiver: &CallbackReceiver,
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let limits = receiver.inner.limits;
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let stopping = tokio::sync::watch::Sender::new(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            // Out of file descriptors, a connection reset before it was accepted: not the
            // listener's end. Back off a moment rather than spin.
            Err(e) => {
                tracing::warn!(error = %e, "callback listener could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            receiver.count_refused_connection();
            tracing::warn!(
                max = limits.max_connections,
                "callback connection refused: at the connection cap"
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The peer's address, for the loopback rule of a receiver without tokens.
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(axum::Extension(axum::extract::ConnectInfo(peer))),
        );
        // With upgrades: the ACS backend's audio WebSocket shares this listener. (hyper-util's
        // GracefulShutdown does not take an upgradeable HTTP/1 connection: the shutdown
        // signal is watched here, and the permits say when every connection is done.)
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stop = stopping.subscribe();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async {
                    let _ = stop.wait_for(|stopping| *stopping).await;
                } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, "callback connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    // Every connection gives its permit back when it is done.
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = connections.acquire_many(all).await;
    Ok(())
}
