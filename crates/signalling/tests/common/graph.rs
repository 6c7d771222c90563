//! A scripted local Graph: an axum server on 127.0.0.1 that records every request and
//! answers each with the next scripted answer, plus a client-credentials token endpoint
//! whose tokens carry the roles a test sets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use appmedia_signalling::auth::{ClientCredentials, TokenIssuer, TokenSource};
use appmedia_signalling::client::{GraphClient, GraphClientConfig, RetryPolicy};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::json;
use url::Url;

/// The roles the test tokens carry unless a test narrows them.
pub const ALL_ROLES: [&str; 4] = [
    "Calls.Initiate.All",
    "Calls.InitiateGroupCall.All",
    "Calls.JoinGroupCall.All",
    "Calls.AccessMedia.All",
];

/// One scripted answer: status, headers, body, and a delay before answering.
#[derive(Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Scripted {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// One request the scripted Graph received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

/// The scripted Graph's shared state (cheap to clone into the axum handlers).
#[derive(Clone)]
pub struct Graph {
    pub script: Arc<Mutex<VecDeque<Scripted>>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub issuer: Arc<TokenIssuer>,
    pub roles: Arc<Mutex<Vec<String>>>,
    pub token_fetches: Arc<AtomicUsize>,
    pub token_refusal: Arc<Mutex<Option<Scripted>>>,
    pub expires_in: Arc<Mutex<u64>>,
}

impl Graph {
    pub fn new() -> Self {
        Self {
            script: Arc::default(),
            seen: Arc::default(),
            issuer: Arc::new(super::signing_issuer("graph-test")),
            roles: Arc::new(Mutex::new(
                ALL_ROLES.iter().map(|s| s.to_string()).collect(),
            )),
            token_fetches: Arc::default(),
            token_refusal: Arc::default(),
            expires_in: Arc::new(Mutex::new(3599)),
        }
    }

    pub fn push(&self, answer: Scripted) -> &Self {
        self.script.lock().unwrap().push_back(answer);
        self
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn app_token(&self) -> String {
        let n = self.token_fetches.fetch_add(1, Ordering::SeqCst) + 1;
        let roles = self.roles.lock().unwrap().clone();
        self.issuer
            .sign(&json!({
                "aud": "https://graph.microsoft.com",
                "iss": "https://sts.windows.net/tenant/",
                "tid": "tenant",
                "roles": roles,
                "n": n,
                "exp": appmedia_signalling::auth::unix_now() + 3600,
            }))
            .unwrap()
    }

    /// Serves the token endpoint at `/tenant/oauth2/v2.0/token` and scripted answers elsewhere.
    pub async fn start(&self) -> Url {
        let router = Router::new()
            .route("/tenant/oauth2/v2.0/token", post(token_endpoint))
            .fallback(any(graph_endpoint))
            .with_state(self.clone());
        let addr = super::serve(router).await;
        Url::parse(&format!("http://{addr}/")).unwrap()
    }
}

pub async fn token_endpoint(State(graph): State<Graph>, body: String) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(refusal) = graph.token_refusal.lock().unwrap().clone() {
        return (StatusCode::from_u16(refusal.status).unwrap(), refusal.body).into_response();
    }
    assert_eq!(get("grant_type").as_deref(), Some("client_credentials"));
    assert_eq!(get("client_id").as_deref(), Some("bot-app-id"));
    assert_eq!(get("client_secret").as_deref(), Some("bot-secret"));
    assert_eq!(
        get("scope").as_deref(),
        Some("https://graph.microsoft.com/.default")
    );
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": *graph.expires_in.lock().unwrap(),
        "access_token": graph.app_token(),
    }))
    .into_response()
}

pub async fn graph_endpoint(
    State(graph): State<Graph>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    graph.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_owned(),
        headers,
        body,
        at: Instant::now(),
    });
    let next = graph.script.lock().unwrap().pop_front();
    let Some(answer) = next else {
        return (StatusCode::IM_A_TEAPOT, "no scripted answer left").into_response();
    };
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    let mut response = (StatusCode::from_u16(answer.status).unwrap(), answer.body).into_response();
    for (name, value) in answer.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

pub fn graph_error(code: &str, message: &str, request_id: &str) -> String {
    json!({"error": {"code": code, "message": message,
        "innerError": {"request-id": request_id, "date": "2026-11-26T18:00:00"}}})
    .to_string()
}

pub fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(5),
        ..RetryPolicy::default()
    }
}

pub fn config(base: &Url) -> GraphClientConfig {
    let mut config = GraphClientConfig::for_base_url(base.join("v1.0").unwrap());
    config.request_timeout = Duration::from_secs(10);
    config.retry = quick_retries();
    config
}

pub fn credentials(base: &Url) -> TokenSource {
    let credentials = ClientCredentials::for_authority(
        base.as_str(),
        "tenant",
        "bot-app-id",
        "bot-secret",
        "https://graph.microsoft.com/.default",
    )
    .unwrap();
    TokenSource::client_credentials(credentials, Duration::from_secs(5)).unwrap()
}

pub async fn setup() -> (Graph, Url, GraphClient) {
    let graph = Graph::new();
    let base = graph.start().await;
    let client = GraphClient::new(config(&base), credentials(&base)).unwrap();
    (graph, base, client)
}

pub fn client_request_id(seen: &Seen) -> String {
    seen.headers
        .get("client-request-id")
        .expect("client-request-id sent")
        .to_str()
        .unwrap()
        .to_owned()
}
