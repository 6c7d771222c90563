//! Fault tests: the endpoint that publishes the callback signing keys (OpenID document + JWKS)
//! down at the bot's start, down mid-call, and slow. A real axum server on loopback serves the
//! keys and can be stopped (connection refused), started again on the same port, or made to
//! answer the JWKS late; a real receiver takes the notifications over HTTP.
//!
//! What must hold: a notification whose token cannot be checked is answered 503 with
//! `Retry-After` (Graph sends it again), never 401 (Graph would not, and the notification would
//! be lost); known keys keep validating without waiting for any fetch; a fetch for a key not
//! seen yet waits at most the fetch timeout.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackTokenClaims, CallbackTokenValidator,
    OPENID_CONFIGURATION_PATH, PublishedKeys, TenantPolicy, TokenIssuer,
};
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver};
use axum::routing::get;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use url::Url;

const APP_ID: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const ISSUER: &str = "https://api.botframework.com";

/// The key documents on a fixed loopback port: up, down (nothing listens: connection
/// refused), or up with every JWKS answer held back by `delay`.
struct KeyServer {
    keys: PublishedKeys,
    addr: SocketAddr,
    delay: Arc<Mutex<Duration>>,
    /// JWKS requests that arrived, and those answered.
    jwks_started: Arc<AtomicUsize>,
    jwks_answered: Arc<AtomicUsize>,
    running: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

impl KeyServer {
    async fn start(keys: PublishedKeys) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut server = KeyServer {
            keys,
            addr,
            delay: Arc::default(),
            jwks_started: Arc::default(),
            jwks_answered: Arc::default(),
            running: None,
        };
        server.serve(listener);
        server
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let addr = self.addr;
        let (keys, delay) = (self.keys.clone(), self.delay.clone());
        let (started, answered) = (self.jwks_started.clone(), self.jwks_answered.clone());
        let router = axum::Router::new()
            .route(
                OPENID_CONFIGURATION_PATH,
                get(move || async move {
                    axum::Json(PublishedKeys::openid_configuration(
                        ISSUER,
                        &format!("http://{addr}/jwks"),
                    ))
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let (keys, delay) = (keys.clone(), delay.clone());
                    let (started, answered) = (started.clone(), answered.clone());
                    async move {
                        started.fetch_add(1, Ordering::SeqCst);
                        let wait = *delay.lock().unwrap();
                        tokio::time::sleep(wait).await;
                        answered.fetch_add(1, Ordering::SeqCst);
                        axum::Json(keys.jwks())
                    }
                }),
            );
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .expect("key server");
        });
        self.running = Some((stop, task));
    }

    /// Stops listening and closes every connection (the validator's pooled ones included):
    /// the next fetch is refused.
    async fn down(&mut self) {
        let (stop, task) = self.running.take().expect("running");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the key server stops")
            .unwrap();
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    fn slow(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }

    fn url(&self) -> Url {
        Url::parse(&format!("http://{}{OPENID_CONFIGURATION_PATH}", self.addr)).unwrap()
    }
}

struct Receiver {
    validator: Arc<CallbackTokenValidator>,
    receiver: CallbackReceiver,
    events: mpsc::Receiver<CallEvent>,
    url: Url,
    http: reqwest::Client,
}

async fn receiver(keys: &KeyServer, configure: impl FnOnce(&mut CallbackAuthConfig)) -> Receiver {
    let mut config = CallbackAuthConfig::new(APP_ID, TenantPolicy::Only(vec![TENANT.to_owned()]));
    config.openid_configuration_url = keys.url();
    configure(&mut config);
    let validator = Arc::new(CallbackTokenValidator::new(config).unwrap());
    let (receiver, events) = CallbackReceiver::with_channel(
        CallbackAuth::validate(validator.clone()),
        Arc::new(CallRegistry::default()),
        64,
    );
    let addr = common::serve(receiver.router("/callback")).await;
    Receiver {
        validator,
        receiver,
        events,
        url: Url::parse(&format!("http://{addr}/callback")).unwrap(),
        http: appmedia_signalling::http_client(Duration::from_secs(30), Duration::from_secs(5))
            .unwrap(),
    }
}

/// What the receiver answered: status, `Retry-After`, the error code.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    code: Option<String>,
}

impl Receiver {
    async fn post(&self, issuer: &TokenIssuer) -> Answer {
        let claims = CallbackTokenClaims::new(ISSUER, APP_ID, TENANT, Duration::from_secs(3600));
        let response = self
            .http
            .post(self.url.clone())
            .bearer_auth(issuer.sign(&claims).unwrap())
            .header("content-type", "application/json")
            .body(common::seed("notification-meeting-established.json"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body: Option<Value> = response.json().await.ok();
        Answer {
            status,
            retry_after,
            code: body.and_then(|b| b["error"]["code"].as_str().map(str::to_owned)),
        }
    }
}

fn published(issuer: &TokenIssuer) -> PublishedKeys {
    let keys = PublishedKeys::new();
    keys.publish(issuer);
    keys
}

/// (a) The key endpoint is down when the bot starts: its first notifications cannot be
/// checked. They are refused with 503 and `Retry-After` (which Graph retries; a 401 it would
/// not, and the call's first notifications would be lost), nothing applied; once the endpoint
/// is back, the same notification sent again after `Retry-After` is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_down_at_start_are_503_with_retry_after_and_taken_once_back() {
    let signer = common::signing_issuer("key-1");
    let mut keys = KeyServer::start(published(&signer)).await;
    keys.down().await;
    let mut r = receiver(&keys, |c| c.retry_after_failure = Duration::from_secs(1)).await;

    let refused = r.post(&signer).await;
    assert_eq!(refused.status, 503, "{refused:?}");
    assert_eq!(refused.code.as_deref(), Some("ServiceUnavailable"));
    // The validator tries the keys again after `retry_after_failure`: 1 s.
    let wait = refused.retry_after.expect("Retry-After on the 503");
    assert_eq!(wait, 1, "{refused:?}");
    assert!(
        r.receiver.registry().call_ids().is_empty(),
        "nothing applied"
    );
    assert!(r.events.try_recv().is_err());
    let stats = r.receiver.stats();
    assert_eq!((stats.keys_unavailable, stats.unauthorized), (1, 0));
    // Sent again at once: refused again without a second fetch (the retry waits its turn).
    assert_eq!(r.post(&signer).await.status, 503);
    assert_eq!(r.validator.key_fetch_count(), 1);

    keys.up().await;
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let taken = r.post(&signer).await;
    assert_eq!(taken.status, 202, "{taken:?}");
    assert!(matches!(
        r.events.try_recv(),
        Ok(CallEvent::StateChanged { .. })
    ));
    assert_eq!(r.validator.key_fetch_count(), 2);
}

/// (b) The key endpoint goes down mid-call, after the keys were fetched: notifications signed
/// with a known key keep being taken — even past the keys' age, when every one of them would
/// refresh the keys — each answered without waiting for the dead endpoint, and the refresh
/// attempts stay within the rate limit. A key rotated in during the outage cannot be checked:
/// 503, not 401, and it is taken once the endpoint is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_down_mid_call_keep_known_keys_validating_and_a_new_key_waits_for_them() {
    let signer = common::signing_issuer("key-1");
    let mut keys = KeyServer::start(published(&signer)).await;
    let r = receiver(&keys, |c| {
        c.keys_max_age = Duration::ZERO;
        c.refetch_min_interval = Duration::ZERO;
        c.retry_after_failure = Duration::from_millis(300);
    })
    .await;
    assert_eq!(r.post(&signer).await.status, 202);
    keys.down().await;

    let outage = tokio::time::Instant::now();
    for n in 0..20 {
        let answer = tokio::time::timeout(Duration::from_secs(10), r.post(&signer))
            .await
            .expect("answered, not held behind the dead key endpoint");
        assert_eq!(answer.status, 202, "notification {n}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every one of the 20 was due a refresh; the failures space the attempts by
    // `retry_after_failure` (300 ms): at most one per 300 ms of outage, not one per
    // notification.
    let fetches = r.validator.key_fetch_count() - 1;
    let most = 1 + outage.elapsed().as_millis() as usize / 300;
    assert!(
        (1..=most).contains(&fetches),
        "{fetches} fetches, at most {most}"
    );
    assert_eq!(r.receiver.stats().unauthorized, 0);

    // Microsoft rotates in a key while its endpoint is down: not known, not checkable.
    let rotated =
        TokenIssuer::from_rsa_pem(&common::fixture("forged-signing-key.pem"), "key-2").unwrap();
    keys.keys.publish(&rotated);
    let answer = r.post(&rotated).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.retry_after.is_some());
    assert_eq!(r.receiver.stats().unauthorized, 0);

    keys.up().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = r.post(&rotated).await;
        if answer.status == 202 {
            break;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(tokio::time::Instant::now() < deadline, "never taken");
        tokio::time::sleep(Duration::from_secs(answer.retry_after.unwrap_or(1))).await;
    }
}

/// (c) The key endpoint answers, but slowly (10 s per JWKS). A notification signed with a
/// known key is answered while the refresh it started (the keys past their age) still waits for
/// the JWKS, and while another notification's fetch for a key not seen yet does; that one waits
/// for the keys only up to the fetch timeout and is answered 503 (the keys could not be had),
/// before the slow JWKS ever answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_endpoint_delays_no_known_key_and_a_new_key_waits_at_most_the_timeout() {
    let signer = common::signing_issuer("key-1");
    let keys = KeyServer::start(published(&signer)).await;
    // One receiver whose keys are always past their age (every notification refreshes them),
    // with a fetch timeout longer than the JWKS's delay...
    let aging = receiver(&keys, |c| {
        c.keys_max_age = Duration::ZERO;
        c.refetch_min_interval = Duration::ZERO;
        c.fetch_timeout = Duration::from_secs(30);
    })
    .await;
    // ...and one with the keys fresh and a fetch timeout shorter than it.
    let bounded = Arc::new(
        receiver(&keys, |c| {
            c.refetch_min_interval = Duration::ZERO;
            c.fetch_timeout = Duration::from_secs(1);
        })
        .await,
    );
    assert_eq!(aging.post(&signer).await.status, 202);
    assert_eq!(bounded.post(&signer).await.status, 202);
    assert_eq!(keys.jwks_answered.load(Ordering::SeqCst), 2);
    keys.slow(Duration::from_secs(10));

    // Past their age: this notification starts a refresh, and is answered without waiting
    // for it (the old code made it wait the JWKS's 10 s).
    let answer = aging.post(&signer).await;
    assert_eq!(answer.status, 202, "{answer:?}");
    assert_eq!(
        keys.jwks_answered.load(Ordering::SeqCst),
        2,
        "answered before the slow JWKS was"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while keys.jwks_started.load(Ordering::SeqCst) < 3 {
        assert!(tokio::time::Instant::now() < deadline, "no refresh started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A key not seen yet: its notification waits for a fetch of its own...
    let new_key =
        TokenIssuer::from_rsa_pem(&common::fixture("forged-signing-key.pem"), "key-2").unwrap();
    let waiting = tokio::spawn({
        let bounded = bounded.clone();
        async move {
            let started = tokio::time::Instant::now();
            let answer = bounded.post(&new_key).await;
            (answer, started.elapsed())
        }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while keys.jwks_started.load(Ordering::SeqCst) < 4 {
        assert!(tokio::time::Instant::now() < deadline, "no fetch started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...during which known-key notifications on both receivers are answered.
    for _ in 0..3 {
        assert_eq!(bounded.post(&signer).await.status, 202);
        assert_eq!(aging.post(&signer).await.status, 202);
    }
    let (answer, waited) = waiting.await.unwrap();
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(answer.retry_after.is_some());
    assert_eq!(
        keys.jwks_answered.load(Ordering::SeqCst),
        2,
        "given up before the slow JWKS answered"
    );
    // Liveness, generous: the 1 s fetch timeout, far from the JWKS's 10 s.
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    assert_eq!(bounded.receiver.stats().unauthorized, 0);
    assert_eq!(aging.receiver.stats().unauthorized, 0);
}
