//! The callback receiver's token validation, end to end over HTTP: an OpenID configuration
//! and JWKS served by a local axum server (keys from fixture PEM files), a receiver router
//! on another, notifications POSTed with reqwest.

mod common;

use std::sync::Arc;
use std::time::Duration;

use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackAuthError, CallbackTokenClaims,
    CallbackTokenValidator, OPENID_CONFIGURATION_PATH, PublishedKeys, TenantPolicy, TokenIssuer,
    unix_now,
};
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use url::Url;

const APP_ID: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const ISSUER: &str = "https://api.botframework.com";
const CALL_ID: &str = "2f1a1100-b174-40a0-aba7-0b405e01ed92";

struct Setup {
    keys: PublishedKeys,
    issuer: TokenIssuer,
    validator: Arc<CallbackTokenValidator>,
    receiver: CallbackReceiver,
    events: mpsc::Receiver<CallEvent>,
    callback_url: Url,
    http: reqwest::Client,
}

async fn setup_with(configure: impl FnOnce(&mut CallbackAuthConfig)) -> Setup {
    let keys = PublishedKeys::new();
    let issuer = common::signing_issuer("key-1");
    keys.publish(&issuer);
    let openid_addr = common::serve(keys.router(ISSUER)).await;

    let mut config = CallbackAuthConfig::new(APP_ID, TenantPolicy::Only(vec![TENANT.to_owned()]));
    config.openid_configuration_url =
        Url::parse(&format!("http://{openid_addr}{OPENID_CONFIGURATION_PATH}")).unwrap();
    config.fetch_timeout = Duration::from_secs(5);
    configure(&mut config);
    let validator = Arc::new(CallbackTokenValidator::new(config).unwrap());
    let (receiver, events) = CallbackReceiver::with_channel(
        CallbackAuth::validate(validator.clone()),
        Arc::new(CallRegistry::default()),
        64,
    );
    let callback_addr = common::serve(receiver.router("/callback")).await;
    Setup {
        keys,
        issuer,
        validator,
        receiver,
        events,
        callback_url: Url::parse(&format!("http://{callback_addr}/callback")).unwrap(),
        http: appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5))
            .unwrap(),
    }
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

fn claims() -> CallbackTokenClaims {
    CallbackTokenClaims::new(ISSUER, APP_ID, TENANT, Duration::from_secs(3600))
}

impl Setup {
    fn token(&self, claims: &CallbackTokenClaims) -> String {
        self.issuer.sign(claims).unwrap()
    }

    async fn post(&self, authorization: Option<String>, body: &str) -> (u16, Option<Value>) {
        let mut request = self
            .http
            .post(self.callback_url.clone())
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).ok())
    }

    async fn post_token(&self, token: &str) -> (u16, Option<Value>) {
        self.post(
            Some(format!("Bearer {token}")),
            &common::seed("notification-meeting-established.json"),
        )
        .await
    }

    fn nothing_applied(&mut self) {
        assert!(
            self.receiver.registry().call_ids().is_empty(),
            "nothing applied"
        );
        assert!(self.events.try_recv().is_err(), "no event delivered");
    }
}

#[tokio::test]
async fn a_valid_token_is_accepted_and_the_notification_applied() {
    let mut s = setup().await;
    let (status, body) = s.post_token(&s.token(&claims())).await;
    assert_eq!(status, 202);
    assert_eq!(body, None, "202 has no body");
    assert_eq!(
        s.receiver
            .registry()
            .state_of(CALL_ID)
            .map(|st| st.to_string()),
        Some("established".to_owned())
    );
    match s.events.try_recv().unwrap() {
        CallEvent::StateChanged { call_id, to, .. } => {
            assert_eq!(call_id, CALL_ID);
            assert_eq!(to.as_str(), "established");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(s.receiver.stats().accepted, 1);
    assert_eq!(s.validator.key_fetch_count(), 1);
    // The keys are cached: a second notification does not fetch them again.
    let (status, _) = s.post_token(&s.token(&claims())).await;
    assert_eq!(status, 202);
    assert_eq!(s.validator.key_fetch_count(), 1);
    assert_eq!(s.keys.request_count(), 2, "one OpenID document + one JWKS");
}

#[tokio::test]
async fn the_graph_issuer_is_accepted_too() {
    let s = setup().await;
    let mut c = claims();
    c.iss = "https://graph.microsoft.com".to_owned();
    assert_eq!(s.post_token(&s.token(&c)).await.0, 202);
}

async fn assert_refused(mut s: Setup, token: String, expected: CallbackAuthError) {
    let (status, body) = s.post_token(&token).await;
    assert_eq!(status, 401);
    let body = body.expect("a Graph-style error body");
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert!(body["error"]["innerError"]["request-id"].is_string());
    s.nothing_applied();
    assert_eq!(s.receiver.stats().unauthorized, 1);
    assert_eq!(s.validator.validate(&token).await.unwrap_err(), expected);
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    let s = setup().await;
    // The forger claims the real key id but signs with its own key.
    let token = common::forged_issuer("key-1").sign(&claims()).unwrap();
    assert_refused(
        s,
        token,
        CallbackAuthError::BadSignature {
            kid: "key-1".into(),
        },
    )
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = setup().await;
    let mut c = claims();
    c.iat = unix_now() - 7200;
    c.nbf = c.iat;
    c.exp = unix_now() - 600;
    let token = s.token(&c);
    assert_refused(s, token, CallbackAuthError::Expired { exp: c.exp }).await;
}

#[tokio::test]
async fn a_token_not_yet_valid_is_refused() {
    let s = setup().await;
    let mut c = claims();
    c.nbf = unix_now() + 600;
    let token = s.token(&c);
    assert_refused(s, token, CallbackAuthError::NotYetValid { nbf: c.nbf }).await;
}

#[tokio::test]
async fn a_token_for_another_bot_is_refused() {
    let s = setup().await;
    let mut c = claims();
    c.aud = "some-other-app".to_owned();
    let token = s.token(&c);
    assert_refused(
        s,
        token,
        CallbackAuthError::WrongAudience {
            aud: vec!["some-other-app".into()],
        },
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_tenant_is_refused() {
    let s = setup().await;
    let mut c = claims();
    c.tid = "00000000-0000-0000-0000-000000000bad".to_owned();
    let token = s.token(&c);
    assert_refused(
        s,
        token,
        CallbackAuthError::WrongTenant {
            tid: "00000000-0000-0000-0000-000000000bad".into(),
        },
    )
    .await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let s = setup().await;
    let mut c = claims();
    c.iss = "https://evil.example".to_owned();
    let token = s.token(&c);
    assert_refused(
        s,
        token,
        CallbackAuthError::WrongIssuer {
            iss: "https://evil.example".into(),
        },
    )
    .await;
}

#[tokio::test]
async fn a_token_without_tid_is_refused() {
    let s = setup().await;
    let token = s
        .issuer
        .sign(&json!({"iss": ISSUER, "aud": APP_ID, "exp": unix_now() + 600}))
        .unwrap();
    assert_refused(s, token, CallbackAuthError::MissingClaim { claim: "tid" }).await;
}

#[tokio::test]
async fn a_service_that_is_not_tenant_scoped_needs_no_tid() {
    // ACS signs its callbacks for a resource (`aud`) without a tenant.
    let s = setup_with(|c| c.tenants = TenantPolicy::NotScoped).await;
    let token = s
        .issuer
        .sign(&json!({"iss": ISSUER, "aud": APP_ID, "exp": unix_now() + 600}))
        .unwrap();
    let claims = s.validator.validate(&token).await.unwrap();
    assert_eq!(claims.tenant_id, "");
    // The audience is still checked.
    let other = s
        .issuer
        .sign(&json!({"iss": ISSUER, "aud": "another-resource", "exp": unix_now() + 600}))
        .unwrap();
    assert!(matches!(
        s.validator.validate(&other).await,
        Err(CallbackAuthError::WrongAudience { .. })
    ));
}

#[tokio::test]
async fn an_hmac_token_is_refused() {
    let s = setup().await;
    // Algorithm confusion: HS256 really signed with the public key's text must not pass.
    // (Built by hand: appmedia's JWT crypto provider offers RS256/PS256 only.)
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let signing_input = format!(
        "{}.{}",
        b64(br#"{"typ":"JWT","alg":"HS256"}"#),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        s.keys.jwks().to_string().as_bytes(),
    );
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64(tag.as_ref()));
    assert_refused(
        s,
        token,
        CallbackAuthError::UnsupportedAlgorithm {
            alg: "HS256".into(),
        },
    )
    .await;
}

#[tokio::test]
async fn missing_or_odd_authorization_headers_are_refused() {
    let mut s = setup().await;
    let body = common::seed("notification-meeting-established.json");
    assert_eq!(s.post(None, &body).await.0, 401);
    assert_eq!(
        s.post(Some("Basic dXNlcjpwYXNz".into()), &body).await.0,
        401
    );
    assert_eq!(s.post(Some("Bearer".into()), &body).await.0, 401);
    assert_eq!(s.post(Some("Bearer not.a.jwt".into()), &body).await.0, 401);
    s.nothing_applied();
    assert_eq!(s.receiver.stats().unauthorized, 4);
    assert_eq!(
        s.validator.validate_header(None).await.unwrap_err(),
        CallbackAuthError::MissingAuthorization
    );
    assert_eq!(
        s.validator
            .validate_header(Some("Basic x"))
            .await
            .unwrap_err(),
        CallbackAuthError::NotBearer
    );
}

#[tokio::test]
async fn malformed_json_with_a_valid_token_is_400_and_nothing_applied() {
    let mut s = setup().await;
    let auth = Some(format!("Bearer {}", s.token(&claims())));
    for body in [
        "{\"value\": [",
        "not json",
        "[1, 2]",
        "{\"value\": [{\"changeType\": 5}]}",
        "{\"value\": {\"not\": \"a list\"}}",
    ] {
        let (status, error) = s.post(auth.clone(), body).await;
        assert_eq!(status, 400, "{body}");
        let error = error.expect("a Graph error body");
        assert_eq!(error["error"]["code"], "BadRequest");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("commsNotifications")
        );
        assert!(error["error"]["innerError"]["date"].is_string());
    }
    s.nothing_applied();
    assert_eq!(s.receiver.stats().malformed, 5);
}

#[tokio::test]
async fn a_rotated_key_is_found_by_refetching() {
    let s = setup_with(|c| c.refetch_min_interval = Duration::ZERO).await;
    assert_eq!(s.post_token(&s.token(&claims())).await.0, 202);
    assert_eq!(s.validator.key_fetch_count(), 1);
    let rotated =
        TokenIssuer::from_rsa_pem(&common::fixture("forged-signing-key.pem"), "key-2").unwrap();
    s.keys.publish(&rotated);
    s.keys.withdraw("key-1");
    let token = rotated.sign(&claims()).unwrap();
    assert_eq!(s.post_token(&token).await.0, 202);
    assert_eq!(
        s.validator.key_fetch_count(),
        2,
        "unknown kid → one refetch"
    );
}

#[tokio::test]
async fn unknown_key_ids_do_not_flood_the_key_endpoint() {
    let s = setup_with(|c| c.refetch_min_interval = Duration::from_secs(3600)).await;
    assert_eq!(s.post_token(&s.token(&claims())).await.0, 202);
    for i in 0..5 {
        let token = common::forged_issuer(&format!("made-up-{i}"))
            .sign(&claims())
            .unwrap();
        assert_eq!(s.post_token(&token).await.0, 401);
        assert_eq!(
            s.validator.validate(&token).await.unwrap_err(),
            CallbackAuthError::UnknownKey {
                kid: format!("made-up-{i}")
            }
        );
    }
    assert_eq!(s.validator.key_fetch_count(), 1, "rate-limited");
}

#[tokio::test]
async fn unreachable_keys_leave_every_token_unchecked_and_are_retried_later() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = listener.local_addr().unwrap();
    drop(listener);
    let s = setup_with(|c| {
        c.openid_configuration_url = Url::parse(&format!("http://{dead}/openid")).unwrap();
        c.retry_after_failure = Duration::from_millis(200);
    })
    .await;
    let token = s.token(&claims());
    // Not refused for good (401): answered 503, which the sender retries.
    assert_eq!(s.post_token(&token).await.0, 503);
    assert!(matches!(
        s.validator.validate(&token).await.unwrap_err(),
        CallbackAuthError::KeysUnavailable(_)
    ));
    assert_eq!(
        s.validator.key_fetch_count(),
        1,
        "the failure is not retried at once"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(s.validator.validate(&token).await.is_err());
    assert_eq!(
        s.validator.key_fetch_count(),
        2,
        "retried after retry_after_failure"
    );
}

#[tokio::test]
async fn keys_past_their_age_are_refetched() {
    let s = setup_with(|c| {
        c.keys_max_age = Duration::ZERO;
        c.refetch_min_interval = Duration::ZERO;
    })
    .await;
    let token = s.token(&claims());
    assert!(s.validator.validate(&token).await.is_ok());
    // Aged: the known key answers at once and the keys are refetched in the background.
    assert!(s.validator.validate(&token).await.is_ok());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while s.validator.key_fetch_count() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "an aged key set is refetched"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_generated_issuer_round_trips() {
    let s = setup_with(|c| c.refetch_min_interval = Duration::ZERO).await;
    let generated = TokenIssuer::generate("generated").unwrap();
    s.keys.publish(&generated);
    let claims = s
        .validator
        .validate(&generated.sign(&claims()).unwrap())
        .await
        .unwrap();
    assert_eq!(claims.tenant_id, TENANT);
    assert_eq!(claims.audience, vec![APP_ID.to_owned()]);
    assert_eq!(claims.issuer, ISSUER);
}

#[tokio::test]
async fn validation_can_be_disabled_only_on_loopback() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = CallbackAuth::disabled_for_loopback(addr).unwrap();
    let (receiver, mut events) =
        CallbackReceiver::with_channel(auth, Arc::new(CallRegistry::default()), 8);
    let router = receiver.router("/callback");
    common::serve_with_peers(listener, router);
    let response =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5))
            .unwrap()
            .post(format!("http://{addr}/callback"))
            .body(common::seed("notification-meeting-establishing.json"))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert!(matches!(
        events.recv().await,
        Some(CallEvent::StateChanged { .. })
    ));
    assert!(CallbackAuth::disabled_for_loopback("192.0.2.7:443".parse().unwrap()).is_err());

    // The same router served where the peer is not known (plain `axum::serve`, which could
    // listen on any address): refused, nothing applied.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let blind = listener.local_addr().unwrap();
    let (receiver, mut events) = CallbackReceiver::with_channel(
        CallbackAuth::disabled_for_loopback(blind).unwrap(),
        Arc::new(CallRegistry::default()),
        8,
    );
    let router = receiver.router("/callback");
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let response =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5))
            .unwrap()
            .post(format!("http://{blind}/callback"))
            .body(common::seed("notification-meeting-establishing.json"))
            .send()
            .await
            .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(events.try_recv().is_err(), "nothing applied");
}

#[tokio::test]
async fn keys_of_other_kinds_in_the_jwks_are_skipped() {
    let issuer = common::signing_issuer("rsa-key");
    let jwks = PublishedKeys::new();
    jwks.publish(&issuer);
    let mut document = jwks.jwks();
    let keys = document["keys"].as_array_mut().unwrap();
    // An EC key, a key without kid, a malformed RSA key, Bot Framework's extra fields.
    keys.insert(
        0,
        json!({"kty": "EC", "kid": "ec", "crv": "P-256",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}),
    );
    keys.insert(1, json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}));
    keys.insert(2, json!({"kty": "RSA", "kid": "broken", "n": 5}));
    keys[3]["endorsements"] = json!(["msteams"]);
    let openid = axum::Router::new()
        .route(
            "/openid",
            axum::routing::get(|| async {
                axum::Json(json!({"issuer": ISSUER, "jwks_uri": "/jwks"}))
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || {
                let document = document.clone();
                async move { axum::Json(document) }
            }),
        );
    let addr = common::serve(openid).await;
    let mut config = CallbackAuthConfig::new(APP_ID, TenantPolicy::Any);
    config.openid_configuration_url = Url::parse(&format!("http://{addr}/openid")).unwrap();
    let validator = CallbackTokenValidator::new(config).unwrap();
    let claims = validator
        .validate(&issuer.sign(&claims()).unwrap())
        .await
        .unwrap();
    assert_eq!(claims.tenant_id, TENANT);
}

#[tokio::test]
async fn a_body_over_the_cap_is_413_with_a_graph_error_and_nothing_applied() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = CallbackAuth::disabled_for_loopback(addr).unwrap();
    let (receiver, mut events) =
        CallbackReceiver::with_channel(auth, Arc::new(CallRegistry::default()), 8);
    let seed = common::seed("notification-meeting-establishing.json");
    // The seed notification fits exactly; one byte more does not.
    let receiver = receiver.with_max_body_bytes(seed.len());
    assert_eq!(receiver.max_body_bytes(), seed.len());
    let router = receiver.router("/callback");
    common::serve_with_peers(listener, router);
    let http =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5)).unwrap();
    let url = format!("http://{addr}/callback");

    let mut padded = seed.clone();
    padded.push(' ');
    let response = http.post(&url).body(padded).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "RequestEntityTooLarge");
    assert!(error["error"]["innerError"]["request-id"].is_string());
    assert!(events.try_recv().is_err(), "nothing delivered");
    assert!(receiver.registry().call_ids().is_empty());
    assert_eq!(receiver.stats().too_large, 1);
    assert_eq!(receiver.stats().malformed, 0);

    // The same body at the cap is applied.
    let response = http.post(&url).body(seed).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    assert!(events.recv().await.is_some());
}

#[tokio::test]
async fn a_gate_answers_404_for_calls_not_here_and_503_for_calls_not_taken() {
    use appmedia_signalling::callback::{Admission, notification_call_id};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = CallbackAuth::disabled_for_loopback(addr).unwrap();
    let (receiver, mut events) =
        CallbackReceiver::with_channel(auth, Arc::new(CallRegistry::default()), 8);
    // What the gate says for the seed's meeting call, switched by the test.
    let verdict = Arc::new(std::sync::Mutex::new(Admission::UnknownCall));
    let seen = verdict.clone();
    let receiver = receiver.with_gate(move |batch| {
        assert!(
            batch
                .notifications()
                .iter()
                .all(|n| notification_call_id(n).is_some())
        );
        *seen.lock().unwrap()
    });
    let router = receiver.router("/callback");
    common::serve_with_peers(listener, router);
    let http =
        appmedia_signalling::http_client(Duration::from_secs(10), Duration::from_secs(5)).unwrap();
    let post = || {
        http.post(format!("http://{addr}/callback"))
            .body(common::seed("notification-meeting-establishing.json"))
            .send()
    };

    let response = post().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "NotFound");

    *verdict.lock().unwrap() = Admission::Busy {
        retry_after_secs: 3,
    };
    let response = post().await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["retry-after"], "3");

    // Neither refusal applied anything; an accepted batch does.
    assert!(events.try_recv().is_err());
    let stats = receiver.stats();
    assert_eq!((stats.unknown_call, stats.busy, stats.accepted), (1, 1, 0));
    *verdict.lock().unwrap() = Admission::Accept;
    assert_eq!(post().await.unwrap().status().as_u16(), 202);
    assert!(matches!(
        events.recv().await,
        Some(CallEvent::StateChanged { .. })
    ));
}

/// An OpenID document and a JWKS whose answer can be held back, counting the JWKS requests.
struct HeldKeys {
    keys: PublishedKeys,
    hold: Arc<tokio::sync::watch::Sender<bool>>,
    jwks_requests: Arc<std::sync::atomic::AtomicUsize>,
    url: Url,
}

async fn held_keys() -> HeldKeys {
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let keys = PublishedKeys::new();
    keys.publish(&common::signing_issuer("key-1"));
    let (hold, _) = tokio::sync::watch::channel(false);
    let hold = Arc::new(hold);
    let jwks_requests = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
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
            get({
                let (keys, hold, requests) = (keys.clone(), hold.clone(), jwks_requests.clone());
                move || {
                    let (keys, mut held, requests) =
                        (keys.clone(), hold.subscribe(), requests.clone());
                    async move {
                        requests.fetch_add(1, Ordering::SeqCst);
                        let _ = held.wait_for(|h| !*h).await;
                        axum::Json(keys.jwks())
                    }
                }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    HeldKeys {
        keys,
        hold,
        jwks_requests,
        url: Url::parse(&format!("http://{addr}{OPENID_CONFIGURATION_PATH}")).unwrap(),
    }
}

fn validator_for(
    url: &Url,
    configure: impl FnOnce(&mut CallbackAuthConfig),
) -> Arc<CallbackTokenValidator> {
    let mut config = CallbackAuthConfig::new(APP_ID, TenantPolicy::Only(vec![TENANT.to_owned()]));
    config.openid_configuration_url = url.clone();
    config.fetch_timeout = Duration::from_secs(30);
    configure(&mut config);
    Arc::new(CallbackTokenValidator::new(config).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_fetch_never_delays_a_token_whose_key_is_known() {
    let held = held_keys().await;
    let validator = validator_for(&held.url, |c| c.refetch_min_interval = Duration::ZERO);
    let valid = common::signing_issuer("key-1").sign(&claims()).unwrap();
    validator.validate(&valid).await.expect("key-1 fetched");
    // A made-up kid starts a fetch the key endpoint does not answer.
    held.hold.send_replace(true);
    let forged = common::forged_issuer("made-up").sign(&claims()).unwrap();
    let stalled = tokio::spawn({
        let validator = validator.clone();
        async move { validator.validate(&forged).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held.jwks_requests.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refetch never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While it hangs, a token signed with the known key validates.
    let claims = tokio::time::timeout(Duration::from_secs(10), validator.validate(&valid))
        .await
        .expect("not held behind the fetch in flight");
    assert!(claims.is_ok());
    assert!(!stalled.is_finished(), "the fetch was still hanging");
    held.hold.send_replace(false);
    assert!(matches!(
        stalled.await.unwrap(),
        Err(CallbackAuthError::UnknownKey { .. })
    ));
    drop(held.keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_waiting_for_keys_share_one_fetch_and_a_flood_of_made_up_kids_adds_none() {
    let held = held_keys().await;
    let validator = validator_for(&held.url, |c| {
        c.refetch_min_interval = Duration::from_secs(3600)
    });
    held.hold.send_replace(true);
    let valid = common::signing_issuer("key-1").sign(&claims()).unwrap();
    let waiting: Vec<_> = (0..20)
        .map(|_| {
            let (validator, token) = (validator.clone(), valid.clone());
            tokio::spawn(async move { validator.validate(&token).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    held.hold.send_replace(false);
    for task in waiting {
        assert!(task.await.unwrap().is_ok());
    }
    assert_eq!(validator.key_fetch_count(), 1, "one fetch for all twenty");
    for i in 0..50 {
        let token = common::forged_issuer(&format!("flood-{i}"))
            .sign(&claims())
            .unwrap();
        assert!(validator.validate(&token).await.is_err());
    }
    assert_eq!(validator.key_fetch_count(), 1, "the flood is rate-limited");
    assert_eq!(
        held.jwks_requests.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

/// Signing keys read in clear from another machine could be anyone's: the OpenID document and
/// the JWKS are fetched over https, or plain http on loopback only — whoever builds the
/// validator, with or without the bot SDK's configuration checks.
#[tokio::test]
async fn keys_are_never_fetched_in_clear_from_another_machine() {
    let s = setup_with(|c| {
        c.openid_configuration_url = Url::parse("http://login.example.com/openid").unwrap();
    })
    .await;
    let token = s.token(&claims());
    match s.validator.validate(&token).await {
        Err(CallbackAuthError::KeysUnavailable(why)) => {
            assert!(why.contains("not https"), "{why}")
        }
        other => panic!("{other:?}"),
    }

    // A loopback OpenID document naming a JWKS in clear on another host.
    let document = json!({"issuer": ISSUER, "jwks_uri": "http://keys.example.com/keys"});
    let addr = common::serve(axum::Router::new().route(
        "/openid",
        axum::routing::get(move || async move { axum::Json(document) }),
    ))
    .await;
    let s = setup_with(|c| {
        c.openid_configuration_url = Url::parse(&format!("http://{addr}/openid")).unwrap();
    })
    .await;
    match s.validator.validate(&token).await {
        Err(CallbackAuthError::KeysUnavailable(why)) => {
            assert!(
                why.contains("keys.example.com") && why.contains("not https"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
}
