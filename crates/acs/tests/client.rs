//! The REST client against a real HTTP server on loopback that checks ACS's HMAC signature
//! the way the service does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use appmedia_acs::hmac::{self, AccessKey};
use appmedia_acs::models::{
    AudioChannelType, AudioFormat, CreateCallRequest, MediaStreamingOptions, PhoneNumber,
};
use appmedia_acs::{
    AcsClient, AcsClientConfig, AcsError, ConnectionString, Credential, Identifier,
};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Default)]
struct Seen {
    requests: Vec<(Method, String, HeaderMap)>,
    /// Statuses to answer before succeeding.
    failures: Vec<StatusCode>,
}

type Shared = Arc<(AccessKey, Mutex<Seen>)>;

async fn handle(
    State(state): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, seen) = &*state;
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = hmac::verify(
        key,
        method.as_str(),
        path_and_query,
        header,
        &body,
        SystemTime::now(),
    ) {
        let body = serde_json::json!({"error": {"code": "Unauthorized", "message": e.to_string()}});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let mut seen = seen.lock().unwrap();
    seen.requests
        .push((method.clone(), path_and_query.to_owned(), headers.clone()));
    if !seen.failures.is_empty() {
        let status = seen.failures.remove(0);
        return (status, [("retry-after", "0")], "busy").into_response();
    }
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let call = serde_json::json!({
        "callConnectionId": "c-1", "serverCallId": "srv-1",
        "targets": request["targets"], "callConnectionState": "connecting",
        "callbackUri": request["callbackUri"]});
    (StatusCode::CREATED, axum::Json(call)).into_response()
}

async fn server(key: AccessKey, failures: Vec<StatusCode>) -> (String, Shared) {
    let state: Shared = Arc::new((
        key,
        Mutex::new(Seen {
            failures,
            ..Seen::default()
        }),
    ));
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), state)
}

fn create() -> CreateCallRequest {
    CreateCallRequest {
        targets: vec![Identifier::phone("+14255550123")],
        source_caller_id_number: Some(PhoneNumber {
            value: "+18005550100".into(),
        }),
        source_display_name: None,
        teams_app_source: None,
        callback_uri: "http://127.0.0.1:1/events".into(),
        operation_context: None,
        media_streaming_options: Some(MediaStreamingOptions::bidirectional(
            "ws://127.0.0.1:1/media",
            AudioChannelType::Mixed,
            AudioFormat::Pcm16KMono,
        )),
    }
}

#[tokio::test]
async fn signed_requests_are_accepted_and_a_wrong_key_is_refused() {
    let key = AccessKey::from_bytes(b"the emulator's key".to_vec());
    let (endpoint, state) = server(key.clone(), Vec::new()).await;
    let cs = ConnectionString::parse(&format!(
        "endpoint={endpoint};accesskey={}",
        key.to_base64()
    ))
    .unwrap();
    let client = AcsClient::from_connection_string(&cs).unwrap();
    let call = client.create_call(&create()).await.unwrap();
    assert_eq!(call.call_connection_id, "c-1");
    assert_eq!(call.targets, vec![Identifier::phone("+14255550123")]);
    {
        let seen = state.1.lock().unwrap();
        let (method, path, headers) = &seen.requests[0];
        assert_eq!(method, Method::POST);
        assert_eq!(path, "/calling/callConnections?api-version=2025-05-15");
        assert!(headers.contains_key("repeatability-request-id"));
        assert!(headers.contains_key("repeatability-first-sent"));
    }

    let wrong = AcsClient::new(
        AcsClientConfig::new(cs.endpoint.clone()),
        Credential::AccessKey(AccessKey::from_bytes(b"another key".to_vec())),
    )
    .unwrap();
    let err = wrong.create_call(&create()).await.unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(
        err.to_string().contains("signature does not match"),
        "{err}"
    );
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_the_same_idempotency_key() {
    let key = AccessKey::from_bytes(b"k".to_vec());
    let (endpoint, state) = server(
        key.clone(),
        vec![
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::INTERNAL_SERVER_ERROR,
        ],
    )
    .await;
    let mut config = AcsClientConfig::new(endpoint.parse().unwrap());
    config.retry.initial_backoff = Duration::from_millis(1);
    let client = AcsClient::new(config, Credential::AccessKey(key)).unwrap();
    client.create_call(&create()).await.unwrap();
    let seen = state.1.lock().unwrap();
    assert_eq!(seen.requests.len(), 3);
    let ids: Vec<_> = seen
        .requests
        .iter()
        .map(|(_, _, h)| h["repeatability-request-id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
}

#[tokio::test]
async fn a_persistent_failure_ends_with_the_service_error() {
    let key = AccessKey::from_bytes(b"k".to_vec());
    let (endpoint, _state) = server(key.clone(), vec![StatusCode::SERVICE_UNAVAILABLE; 10]).await;
    let mut config = AcsClientConfig::new(endpoint.parse().unwrap());
    config.retry.initial_backoff = Duration::from_millis(1);
    config.retry.max_attempts = 2;
    let client = AcsClient::new(config, Credential::AccessKey(key)).unwrap();
    let err = client.create_call(&create()).await.unwrap_err();
    assert!(
        matches!(err, AcsError::Service { status: 503, .. }),
        "{err}"
    );
    assert!(matches!(
        client.hang_up("a/b").await,
        Err(AcsError::BadId(_))
    ));
}
