//! The callback receiver on a public address (issue 11, findings 1, 5 and 6), over real
//! sockets against `CallbackReceiver::serve_until`:
//!
//! * the token is checked before a byte of the body is read (401 while the body never comes);
//! * a request head that never completes is cut at the header timeout, a body that never
//!   completes is answered 408 at the body timeout;
//! * hundreds of such slow connections do not keep a valid notification from being applied;
//! * beyond the connection cap, new connections are closed at once and counted;
//! * a batch whose events the sink has no room for is answered 503 and not applied, and the
//!   same batch sent again is applied (not taken for a duplicate);
//! * the registry's cap refuses a batch that would pass it (503); a call first heard of from
//!   one tenant's token refuses another tenant's notifications about it (403).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackTokenClaims, CallbackTokenValidator,
    OPENID_CONFIGURATION_PATH, PublishedKeys, TenantPolicy, TokenIssuer,
};
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use url::Url;

const APP_ID: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const OTHER_TENANT: &str = "86dc81db-c112-4228-9222-63f3esaa1edb";
const ISSUER: &str = "https://api.botframework.com";
/// The call of `notification-meeting-established.json`.
const CALL_ID: &str = "2f1a1100-b174-40a0-aba7-0b405e01ed92";
/// Every wait here is bounded by this; the behaviour under test is far quicker.
const WAIT: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    issuer: TokenIssuer,
    receiver: CallbackReceiver,
    events: mpsc::Receiver<CallEvent>,
    http: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(limits: ServerLimits, capacity: usize, registry: CallRegistry) -> Server {
    let keys = PublishedKeys::new();
    let issuer = common::signing_issuer("key-1");
    keys.publish(&issuer);
    let openid = common::serve(keys.router(ISSUER)).await;
    let mut config = CallbackAuthConfig::new(
        APP_ID,
        TenantPolicy::Only(vec![TENANT.to_owned(), OTHER_TENANT.to_owned()]),
    );
    config.openid_configuration_url =
        Url::parse(&format!("http://{openid}{OPENID_CONFIGURATION_PATH}")).unwrap();
    let validator = Arc::new(CallbackTokenValidator::new(config).unwrap());
    let (receiver, events) = CallbackReceiver::with_channel(
        CallbackAuth::validate(validator),
        Arc::new(registry),
        capacity,
    );
    let receiver = receiver.with_limits(limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = receiver.clone();
    tokio::spawn(async move {
        let _ = serving
            .serve_until(listener, "/callback", async {
                let _ = stopped.await;
            })
            .await;
    });
    Server {
        addr,
        issuer,
        receiver,
        events,
        http: reqwest::Client::new(),
        _stop: stop,
    }
}

fn limits() -> ServerLimits {
    ServerLimits {
        max_connections: 1000,
        max_in_flight: 256,
        header_timeout: Duration::from_millis(500),
        body_timeout: Duration::from_millis(500),
    }
}

impl Server {
    fn token(&self, tenant: &str) -> String {
        self.issuer
            .sign(&CallbackTokenClaims::new(
                ISSUER,
                APP_ID,
                tenant,
                Duration::from_secs(3600),
            ))
            .unwrap()
    }

    async fn post_as(&self, tenant: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("http://{}/callback", self.addr))
            .bearer_auth(self.token(tenant))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("the server answers")
    }

    async fn post(&self, body: &str) -> reqwest::Response {
        self.post_as(TENANT, body).await
    }
}

/// The seed's `established` notification, about `call_id`.
fn established(call_id: &str) -> String {
    common::seed("notification-meeting-established.json").replace(CALL_ID, call_id)
}

/// Reads what the server sends until it closes the connection or `WAIT` passes.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(WAIT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {WAIT:?}"
    );
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn without_a_token_the_body_is_never_waited_for() {
    let s = start(
        ServerLimits {
            // Long: only the token check can answer quickly.
            body_timeout: Duration::from_secs(60),
            ..limits()
        },
        16,
        CallRegistry::default(),
    )
    .await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    // A 4 MiB upload announced, not a byte of it sent, no token.
    stream
        .write_all(
            b"POST /callback HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n\
              Content-Length: 4194304\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(WAIT, stream.read_exact(&mut head))
        .await
        .expect("answered before the body came")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 401");
    assert_eq!(s.receiver.stats().unauthorized, 1);
}

#[tokio::test]
async fn a_head_that_never_completes_is_cut_and_a_body_that_never_completes_is_408() {
    let s = start(limits(), 16, CallRegistry::default()).await;
    // Slowloris: half a request head, then nothing.
    let mut slow_head = TcpStream::connect(s.addr).await.unwrap();
    slow_head
        .write_all(b"POST /callback HTTP/1.1\r\nHost: bot\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut slow_head).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );

    // A valid token, a body announced and never sent.
    let mut slow_body = TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /callback HTTP/1.1\r\nHost: bot\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{",
        s.token(TENANT)
    );
    slow_body.write_all(head.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut slow_body).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert_eq!(s.receiver.stats().timed_out, 1);
    assert!(s.receiver.registry().is_empty(), "nothing applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_slow_connections_do_not_keep_a_valid_notification_out() {
    let mut s = start(
        ServerLimits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            ..limits()
        },
        16,
        CallRegistry::default(),
    )
    .await;
    // 300 slow heads and 300 unauthenticated uploads announcing 4 MiB each, all left hanging.
    let mut hanging = Vec::new();
    for i in 0..600 {
        let mut stream = TcpStream::connect(s.addr).await.unwrap();
        let bytes: &[u8] = if i % 2 == 0 {
            b"POST /callback HTTP/1.1\r\nHost: bot\r\n"
        } else {
            b"POST /callback HTTP/1.1\r\nHost: bot\r\nContent-Length: 4194304\r\n\r\n{"
        };
        stream.write_all(bytes).await.unwrap();
        hanging.push(stream);
    }
    let response = tokio::time::timeout(WAIT, s.post(&established(CALL_ID)))
        .await
        .expect("a valid notification is served while 600 connections hang");
    assert_eq!(response.status().as_u16(), 202);
    let event = tokio::time::timeout(WAIT, s.events.recv()).await.unwrap();
    assert!(matches!(event, Some(CallEvent::StateChanged { .. })));
    // The uploads were refused for their token, not read.
    assert!(
        s.receiver.stats().unauthorized >= 250,
        "{:?}",
        s.receiver.stats()
    );
    drop(hanging);
}

#[tokio::test]
async fn beyond_the_connection_cap_new_connections_are_closed_and_counted() {
    let s = start(
        ServerLimits {
            max_connections: 8,
            header_timeout: Duration::from_secs(30),
            ..limits()
        },
        16,
        CallRegistry::default(),
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // Let the server take the eight.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut ninth = TcpStream::connect(s.addr).await.unwrap();
    let _ = ninth
        .write_all(b"GET / HTTP/1.1\r\nHost: bot\r\n\r\n")
        .await;
    assert_eq!(read_until_closed(&mut ninth).await, "", "closed unanswered");
    assert!(s.receiver.stats().connections_refused >= 1);
    // Slots free again once the idle ones go.
    drop(idle);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let response = s.post(&established(CALL_ID)).await;
        if response.status().as_u16() == 202 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_batch_the_sink_has_no_room_for_is_503_unapplied_and_applies_when_sent_again() {
    // Room for one event.
    let mut s = start(limits(), 1, CallRegistry::default()).await;
    let first = "11111111-1111-1111-1111-111111111111";
    let second = "22222222-2222-2222-2222-222222222222";
    assert_eq!(s.post(&established(first)).await.status().as_u16(), 202);
    // The bot has not read the first event: no room for the second call's.
    let refused = s.post(&established(second)).await;
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(
        refused
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(s.receiver.registry().state_of(second), None, "not applied");
    assert_eq!(s.receiver.stats().backpressure, 1);
    assert_eq!(s.receiver.stats().events_dropped, 0, "nothing dropped");
    // The bot reads; the service sends the same batch again: applied, its event delivered.
    let event = s.events.recv().await.unwrap();
    assert_eq!(event.call_id(), Some(first));
    assert_eq!(s.post(&established(second)).await.status().as_u16(), 202);
    let event = tokio::time::timeout(WAIT, s.events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.call_id(), Some(second));
    assert!(matches!(event, CallEvent::StateChanged { .. }));
}

#[tokio::test]
async fn the_registry_cap_and_the_calls_tenant_refuse_a_batch_whole() {
    let mut s = start(
        limits(),
        16,
        CallRegistry::default().with_limits(2, Duration::from_secs(3600)),
    )
    .await;
    let calls = [
        "11111111-1111-1111-1111-111111111111",
        "22222222-2222-2222-2222-222222222222",
        "33333333-3333-3333-3333-333333333333",
    ];
    assert_eq!(s.post(&established(calls[0])).await.status().as_u16(), 202);
    assert_eq!(s.post(&established(calls[1])).await.status().as_u16(), 202);
    let full = s.post(&established(calls[2])).await;
    assert_eq!(full.status().as_u16(), 503);
    assert_eq!(s.receiver.registry().state_of(calls[2]), None);
    assert_eq!(s.receiver.stats().registry_full, 1);

    // The first call was heard of from TENANT's token: another tenant's notification about
    // it is refused, nothing applied.
    while s.events.try_recv().is_ok() {}
    let other = s.post_as(OTHER_TENANT, &established(calls[0])).await;
    assert_eq!(other.status().as_u16(), 403);
    assert_eq!(s.receiver.stats().other_tenant, 1);
    assert!(s.events.try_recv().is_err(), "no event");
}

/// A call whose notifications were all lost is first known from a read of the service (the
/// bot's state check): the read gives the state change it missed, once; the call then belongs
/// to the tenant of the first notification that speaks of it.
#[tokio::test]
async fn a_call_first_read_from_the_service_takes_the_tenant_of_its_first_notification() {
    let mut s = start(limits(), 16, CallRegistry::default()).await;
    let id = "44444444-4444-4444-4444-444444444444";
    let call: appmedia_model::Call = serde_json::from_value(serde_json::json!({
        "@odata.type": "#microsoft.graph.call",
        "id": id,
        "state": "established",
    }))
    .unwrap();
    let now = std::time::Instant::now();
    let events = s.receiver.registry().apply_call(id, &call, now);
    assert!(
        matches!(
            &events[..],
            [CallEvent::StateChanged {
                from: None,
                to: appmedia_model::CallState::Established,
                ..
            }]
        ),
        "{events:?}"
    );
    assert!(
        s.receiver.registry().apply_call(id, &call, now).is_empty(),
        "read again: nothing new"
    );
    assert_eq!(s.post(&established(id)).await.status().as_u16(), 202);
    while s.events.try_recv().is_ok() {}
    let other = s.post_as(OTHER_TENANT, &established(id)).await;
    assert_eq!(other.status().as_u16(), 403);
}
