//! A real emulator on 127.0.0.1 (ephemeral port) and a bot made of the signalling
//! crate's parts: a client-credentials `TokenSource` and a callback receiver that
//! validates every notification with `CallbackTokenValidator`.

#![allow(dead_code)]

pub mod action_kit;
pub mod audio;
pub mod bot;
pub mod incoming;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_emulator::{Directory, Emulator, EmulatorConfig, RetryPolicy};
use appmedia_signalling::auth::{
    CallbackAuthConfig, CallbackTokenValidator, ClientCredentials, TenantPolicy, TokenSource,
};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

pub const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
/// The seed's other tenant; Calling Bot and TestBot are consented there, Limited Bot is not.
pub const FABRIKAM: &str = "86dc81db-c112-4228-9222-63f3esaa1edb";
pub const CALLING_BOT: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
pub const CALLING_BOT_SECRET: &str = "calling-bot-secret";
pub const TEST_BOT: &str = "dd3885da-f9ab-486b-bfae-85de3d445555";
pub const TEST_BOT_SECRET: &str = "test-bot-secret";
pub const LIMITED_BOT: &str = "6b3f1a52-0d1c-4c8e-9a55-3f2a1c0e7d10";
pub const LIMITED_BOT_SECRET: &str = "limited-bot-secret";
pub const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
pub const BOB: &str = "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96";
pub const MEETING_THREAD: &str =
    "19:meeting_Win6Ydo4wsMijFjZS00ZGVjLTk5MGUtOTRjNWY2NmNkYTFm@thread.v2";
pub const BLOB: &str = "<Media Session Configuration>";

pub fn seed_fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seed")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn test_directory(name: &str) -> Directory {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Directory::from_toml_file(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// A config for tests: loopback, free port, quick retries, the repository's media samples
/// (service-hosted seed examples pre-fetch prompts from there).
pub fn config() -> EmulatorConfig {
    EmulatorConfig {
        media_samples_dir: bot::media_samples(),
        retry: RetryPolicy {
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_attempts: 20,
            request_timeout: Duration::from_secs(5),
        },
        ..EmulatorConfig::default()
    }
}

/// What the bot's callback endpoint received, in order, after validation.
#[derive(Clone, Default)]
pub struct Received {
    pub notifications: Arc<Mutex<Vec<Value>>>,
    /// Requests refused on purpose (the endpoint "down") before accepting.
    pub fail_first: Arc<AtomicUsize>,
    /// The status of those refusals (0: 503).
    pub fail_status: Arc<std::sync::atomic::AtomicU16>,
    pub refused: Arc<AtomicUsize>,
    /// Requests whose token did not validate.
    pub unauthorized: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

#[derive(Clone)]
struct Receiver {
    validator: Arc<CallbackTokenValidator>,
    received: Received,
}

async fn callback(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    if r.received.fail_first.load(Ordering::SeqCst) > 0 {
        r.received.fail_first.fetch_sub(1, Ordering::SeqCst);
        r.received.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::from_u16(r.received.fail_status.load(Ordering::SeqCst))
            .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = r.validator.validate_header(auth).await {
        eprintln!("callback token refused: {e}");
        r.received.unauthorized.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(value) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    r.received.notifications.lock().unwrap().push(value);
    r.received.changed.notify_waiters();
    StatusCode::ACCEPTED
}

impl Received {
    pub fn all(&self) -> Vec<Value> {
        self.notifications.lock().unwrap().clone()
    }

    /// Waits until `n` notifications arrived (10 s at most) and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiter = self.changed.notified();
            let now = self.all();
            if now.len() >= n {
                return now;
            }
            if tokio::time::timeout_at(deadline, waiter).await.is_err() {
                panic!(
                    "waited for {n} notifications, got {}: {:#?}",
                    now.len(),
                    now
                );
            }
        }
    }
}

/// The emulator and one bot.
pub struct Harness {
    pub emulator: Emulator,
    pub http: reqwest::Client,
    pub callback_uri: String,
    pub received: Received,
    pub app_id: String,
    secret: String,
    tokens: TokenSource,
}

impl Harness {
    pub async fn start(config: EmulatorConfig) -> Self {
        Self::start_as(config, CALLING_BOT, CALLING_BOT_SECRET).await
    }

    pub async fn start_as(config: EmulatorConfig, app_id: &str, secret: &str) -> Self {
        Self::start_in(config, app_id, secret, TENANT).await
    }

    /// A bot whose Graph tokens are for `tenant` (its home, or one that consented to it).
    pub async fn start_in(
        config: EmulatorConfig,
        app_id: &str,
        secret: &str,
        tenant: &str,
    ) -> Self {
        appmedia_signalling::install_crypto_provider();
        let emulator = Emulator::start(config).await.expect("emulator starts");
        let mut auth = CallbackAuthConfig::new(app_id, TenantPolicy::Any);
        auth.issuers = vec![emulator.notification_issuer().to_owned()];
        auth.openid_configuration_url = emulator
            .notification_openid_configuration_url()
            .parse()
            .unwrap();
        let received = Received::default();
        let receiver = Receiver {
            validator: Arc::new(CallbackTokenValidator::new(auth).unwrap()),
            received: received.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/callback", post(callback))
            .with_state(receiver);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let tokens = Self::token_source_in(&emulator, app_id, secret, tenant);
        Harness {
            http: reqwest::Client::new(),
            callback_uri: format!("http://{addr}/callback"),
            received,
            app_id: app_id.to_owned(),
            secret: secret.to_owned(),
            tokens,
            emulator,
        }
    }

    pub fn token_source(emulator: &Emulator, app_id: &str, secret: &str) -> TokenSource {
        Self::token_source_in(emulator, app_id, secret, TENANT)
    }

    pub fn token_source_in(
        emulator: &Emulator,
        app_id: &str,
        secret: &str,
        tenant: &str,
    ) -> TokenSource {
        let credentials = ClientCredentials::for_authority(
            emulator.authority_url(),
            tenant,
            app_id,
            secret,
            "https://graph.microsoft.com/.default",
        )
        .unwrap();
        TokenSource::client_credentials(credentials, Duration::from_secs(5)).unwrap()
    }

    pub async fn token(&self) -> String {
        self.tokens
            .token()
            .await
            .expect("a token from the emulator")
    }

    pub async fn token_for(&self, app_id: &str, secret: &str) -> String {
        Self::token_source(&self.emulator, app_id, secret)
            .token()
            .await
            .expect("a token from the emulator")
    }

    /// A seed request with the callbackUri pointing at this bot.
    pub fn seed_request(&self, name: &str) -> Value {
        let mut request = seed_fixture(name);
        request["callbackUri"] = Value::String(self.callback_uri.clone());
        request
    }

    /// POSTs a create-call body with `token`, returns (status, location, body).
    pub async fn post_call_with(
        &self,
        token: &str,
        body: &Value,
    ) -> (StatusCode, Option<String>, Value) {
        let response = self
            .http
            .post(format!(
                "{}/communications/calls",
                self.emulator.graph_url()
            ))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, location, body)
    }

    pub async fn post_call(&self, body: &Value) -> (StatusCode, Option<String>, Value) {
        let token = self.token().await;
        self.post_call_with(&token, body).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let token = self.token().await;
        self.request_with(reqwest::Method::GET, &token, path).await
    }

    /// A bodiless Graph request to `path` with `token`: (status, JSON body or null).
    pub async fn request_with(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .request(method, format!("{}{path}", self.emulator.graph_url()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    }

    pub async fn delete(&self, path: &str) -> StatusCode {
        let response = self
            .http
            .delete(format!("{}{path}", self.emulator.graph_url()))
            .bearer_auth(self.token().await)
            .send()
            .await
            .unwrap();
        StatusCode::from_u16(response.status().as_u16()).unwrap()
    }
}

/// Asserts a Graph error body: `{"error":{"code","message","innerError":{"request-id","date"}}}`,
/// and returns the message.
/// POSTs `form` (already url-encoded) to the emulator's token endpoint of `tenant`: the
/// status and the JSON body (a token or an OAuth error).
pub async fn token_request(emulator: &Emulator, tenant: &str, form: String) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(emulator.token_url(tenant))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

pub fn assert_graph_error(body: &Value, code: &str) -> String {
    let error = &body["error"];
    assert_eq!(error["code"], code, "{body:#}");
    let message = error["message"].as_str().expect("a message").to_owned();
    assert!(
        error["innerError"]["request-id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{body:#}"
    );
    let date = error["innerError"]["date"].as_str().expect("a date");
    assert_eq!(date.len(), 19, "{date}");
    message
}

/// The `resourceData` of the only notification of a batch.
pub fn resource_data(batch: &Value) -> &Value {
    assert_eq!(
        batch["value"].as_array().map(Vec::len),
        Some(1),
        "{batch:#}"
    );
    &batch["value"][0]["resourceData"]
}

/// "state:established", "roster:3", "delta:2:[..]", "sharing:created", ...: a short name for
/// each notification, so a sequence reads as one line in an assertion.
pub fn describe(batch: &Value) -> String {
    let n = &batch["value"][0];
    let data = &n["resourceData"];
    let url = n["resourceUrl"].as_str().unwrap_or("");
    if url.ends_with("/participants") {
        let list = data.as_array().cloned().unwrap_or_default();
        if list
            .first()
            .is_some_and(|d| d["@odata.type"] == "#microsoft.graph.deltaParticipants")
        {
            let d = &list[0];
            format!(
                "delta:{}:{}",
                d["sequenceNumber"],
                d["participants"].as_array().map_or(0, Vec::len)
            )
        } else {
            format!("roster:{}", list.len())
        }
    } else if url.ends_with("/contentsharingsessions") {
        format!("sharing:{}", n["changeType"].as_str().unwrap_or("?"))
    } else {
        format!("state:{}", data["state"].as_str().unwrap_or("?"))
    }
}

pub fn describe_all(batches: &[Value]) -> Vec<String> {
    batches.iter().map(describe).collect()
}
