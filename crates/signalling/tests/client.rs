//! The Graph client against a real local axum server that answers what each test scripts.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use appmedia_model::Call;
use appmedia_signalling::auth::{ClientCredentials, TokenError, TokenSource};
use appmedia_signalling::client::{ClientError, GraphClient};
use appmedia_signalling::permissions::PermissionError;
use axum::http::Method;
use common::graph::{Graph, Scripted, client_request_id, config, credentials, graph_error, setup};
use serde_json::{Value, json};
use url::Url;

fn request(name: &str) -> Call {
    serde_json::from_str(&common::seed(name)).unwrap()
}

fn created_response() -> Scripted {
    Scripted::new(201, common::seed("example01-response.json"))
        .header("content-type", "application/json")
        .header(
            "location",
            "https://graph.microsoft.com/v1.0/communications/calls/2e1a0b00-2db4-4022-9570-243709c565ab",
        )
        .header("request-id", "header-request-id")
}

#[tokio::test]
async fn create_call_posts_the_request_and_reads_201_location_and_body() {
    let (graph, _, client) = setup().await;
    graph.push(created_response());
    let sent = request("example01-request.json");
    let created = client.create_call(&sent).await.unwrap();

    let expected: Call = serde_json::from_str(&common::seed("example01-response.json")).unwrap();
    assert_eq!(created.call, expected);
    assert_eq!(
        created.call_id(),
        Some("2e1a0b00-2db4-4022-9570-243709c565ab")
    );
    assert_eq!(
        created.location.as_deref(),
        Some(
            "https://graph.microsoft.com/v1.0/communications/calls/2e1a0b00-2db4-4022-9570-243709c565ab"
        )
    );
    assert_eq!(created.request_id.as_deref(), Some("header-request-id"));

    let seen = graph.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::POST);
    assert_eq!(seen[0].path, "/v1.0/communications/calls");
    let body: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let seed: Value = serde_json::from_str(&common::seed("example01-request.json")).unwrap();
    assert_eq!(body, seed, "the request goes out exactly as built");
    assert_eq!(seen[0].headers["content-type"], "application/json");
    let auth = seen[0].headers["authorization"].to_str().unwrap();
    assert!(auth.starts_with("Bearer ey"), "{auth}");
    let crid = client_request_id(&seen[0]);
    assert!(uuid::Uuid::parse_str(&crid).is_ok(), "{crid}");
    assert_eq!(created.client_request_id, crid);
}

#[tokio::test]
async fn get_delete_and_participants_use_the_call_path() {
    let (graph, _, client) = setup().await;
    graph
        .push(Scripted::new(200, common::seed("example05-response.json")))
        .push(Scripted::new(204, ""))
        .push(Scripted::new(
            200,
            json!({"value": [{"@odata.type": "#microsoft.graph.participant", "id": "p1"}],
                   "@odata.nextLink": "/v1.0/communications/calls/c1/participants?$skiptoken=2"})
            .to_string(),
        ))
        .push(Scripted::new(
            200,
            json!({"value": [{"@odata.type": "#microsoft.graph.participant", "id": "p2"}]})
                .to_string(),
        ));
    let call = client.get_call("c1").await.unwrap();
    assert_eq!(call.state.value().map(|s| s.as_str()), Some("establishing"));
    client.delete_call("c1").await.unwrap();
    let roster = client.list_participants("c1").await.unwrap();
    let ids: Vec<_> = roster
        .iter()
        .filter_map(|p| p.id.value().cloned())
        .collect();
    assert_eq!(ids, vec!["p1", "p2"]);

    let seen = graph.seen();
    let lines: Vec<_> = seen
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (Method::GET, "/v1.0/communications/calls/c1".to_owned()),
            (Method::DELETE, "/v1.0/communications/calls/c1".to_owned()),
            (
                Method::GET,
                "/v1.0/communications/calls/c1/participants".to_owned()
            ),
            (
                Method::GET,
                "/v1.0/communications/calls/c1/participants".to_owned()
            ),
        ]
    );
    // One fresh client-request-id per request, and one token fetch for all of them.
    let mut ids: Vec<_> = seen.iter().map(client_request_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4);
    assert_eq!(client.tokens().fetch_count(), 1, "the token is cached");
}

#[tokio::test]
async fn a_400_is_a_typed_error_with_code_message_and_request_id() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(
        400,
        graph_error("BadRequest", "Invalid callbackUri", "req-400"),
    ));
    let err = client.get_call("c1").await.unwrap_err();
    match &err {
        ClientError::Service(e) => {
            assert_eq!(e.status, 400);
            assert_eq!(e.code, "BadRequest");
            assert_eq!(e.message, "Invalid callbackUri");
            assert_eq!(e.request_id.as_deref(), Some("req-400"));
            assert_eq!(e.attempts, 1);
            assert_eq!(e.client_request_id, client_request_id_of(&graph, 0));
            assert!(e.body.is_some());
        }
        other => panic!("expected a service error, got {other:?}"),
    }
    assert!(err.to_string().contains("req-400"), "{err}");
    assert_eq!(graph.seen().len(), 1, "a 400 is not retried");
}

fn client_request_id_of(graph: &Graph, i: usize) -> String {
    client_request_id(&graph.seen()[i])
}

#[tokio::test]
async fn a_403_is_not_retried() {
    let (graph, _, client) = setup().await;
    graph.push(
        Scripted::new(
            403,
            graph_error("Forbidden", "Insufficient privileges", "req-403"),
        )
        .header("request-id", "ignored-when-the-body-has-one"),
    );
    let err = client.delete_call("c1").await.unwrap_err();
    assert_eq!(err.status(), Some(403));
    assert_eq!(err.code(), Some("Forbidden"));
    assert_eq!(err.request_id(), Some("req-403"));
    assert_eq!(graph.seen().len(), 1);
}

#[tokio::test]
async fn a_401_fetches_a_new_token_once_and_succeeds() {
    let (graph, _, client) = setup().await;
    graph
        .push(Scripted::new(
            401,
            graph_error(
                "InvalidAuthenticationToken",
                "Access token has expired",
                "r1",
            ),
        ))
        .push(created_response());
    let created = client
        .create_call(&request("example01-request.json"))
        .await
        .unwrap();
    assert!(created.call.id.is_value());
    let seen = graph.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(
        seen[0].headers["authorization"], seen[1].headers["authorization"],
        "the retry carries the new token"
    );
    assert_eq!(client.tokens().fetch_count(), 2);
}

#[tokio::test]
async fn a_second_401_is_returned_not_looped() {
    let (graph, _, client) = setup().await;
    for _ in 0..3 {
        graph.push(Scripted::new(
            401,
            graph_error("InvalidAuthenticationToken", "no", "r"),
        ));
    }
    let err = client.get_call("c1").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(graph.seen().len(), 2, "one refresh, then the error");
    assert_eq!(client.tokens().fetch_count(), 2);
}

#[tokio::test]
async fn a_401_with_a_fixed_token_is_returned() {
    let graph = Graph::new();
    let base = graph.start().await;
    let client = GraphClient::new(config(&base), TokenSource::fixed(graph.app_token())).unwrap();
    graph.push(Scripted::new(
        401,
        graph_error("InvalidAuthenticationToken", "expired", "r"),
    ));
    let err = client.get_call("c1").await.unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(graph.seen().len(), 1);
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let (graph, _, client) = setup().await;
    graph
        .push(
            Scripted::new(429, graph_error("TooManyRequests", "slow down", "r429"))
                .header("retry-after", "1"),
        )
        .push(created_response());
    let created = client
        .create_call(&request("example01-request.json"))
        .await
        .unwrap();
    assert!(created.call.id.is_value());
    let seen = graph.seen();
    assert_eq!(seen.len(), 2);
    // A lower bound only: the client must not come back before the service allows it.
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}"
    );
    assert_eq!(
        client_request_id(&seen[0]),
        client_request_id(&seen[1]),
        "retries of one request share its client-request-id"
    );
}

/// A storm: every one of many concurrent requests is throttled at once. Each waits what the
/// service said and retries once — no request comes back early, none retries twice (no
/// amplification), and all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_429s_is_waited_out_once_per_request_without_amplification() {
    const N: usize = 40;
    let (graph, _, client) = setup().await;
    for i in 0..N {
        graph.push(
            Scripted::new(
                429,
                graph_error("TooManyRequests", "throttled", &format!("r{i}")),
            )
            .header("retry-after", "1"),
        );
    }
    for _ in 0..N {
        graph.push(Scripted::new(200, common::seed("example01-response.json")));
    }
    let calls: Vec<_> = (0..N)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get_call(&format!("c{i}")).await })
        })
        .collect();
    for call in calls {
        call.await
            .unwrap()
            .expect("each request succeeds after its wait");
    }
    let seen = graph.seen();
    assert_eq!(
        seen.len(),
        2 * N,
        "one retry per throttled request, no more"
    );
    let throttled_by = seen[N - 1].at;
    for retry in &seen[N..] {
        assert!(
            retry.at - seen[0].at >= Duration::from_millis(950),
            "a retry came back {:?} after the first 429",
            retry.at - seen[0].at
        );
    }
    assert!(
        seen[N].at >= throttled_by,
        "retries come after every first attempt"
    );
    // Each request's retry carries its own client-request-id.
    let mut ids: Vec<_> = seen.iter().map(client_request_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let (graph, _, client) = setup().await;
    let when = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2));
    graph
        .push(Scripted::new(503, "busy").header("retry-after", when))
        .push(Scripted::new(200, common::seed("example01-response.json")));
    client.get_call("c1").await.unwrap();
    let seen = graph.seen();
    // HTTP dates have one-second resolution, so the wait is between one and two seconds.
    assert!(seen[1].at - seen[0].at >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_retry_after_beyond_the_cap_is_returned_at_once() {
    let (graph, _, client) = setup().await;
    graph.push(
        Scripted::new(429, graph_error("TooManyRequests", "later", "r"))
            .header("retry-after", "3600"),
    );
    let err = client.get_call("c1").await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(graph.seen().len(), 1);
}

#[tokio::test]
async fn a_503_is_retried_up_to_max_attempts() {
    let (graph, _, client) = setup().await;
    for _ in 0..5 {
        graph.push(Scripted::new(503, "Service Unavailable"));
    }
    let err = client.get_call("c1").await.unwrap_err();
    match err {
        ClientError::Service(e) => {
            assert_eq!(e.status, 503);
            assert_eq!(e.attempts, 3);
            assert_eq!(
                e.code, "ServiceUnavailable",
                "a body that is not a Graph error"
            );
            assert_eq!(e.message, "Service Unavailable");
            assert!(e.body.is_none());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(graph.seen().len(), 3);
}

#[tokio::test]
async fn a_504_then_success() {
    let (graph, _, client) = setup().await;
    graph
        .push(Scripted::new(504, "Gateway Timeout"))
        .push(Scripted::new(200, common::seed("example01-response.json")));
    assert!(client.get_call("c1").await.is_ok());
    assert_eq!(graph.seen().len(), 2);
}

/// A gateway timeout does not say whether the call was placed, and Graph has no
/// idempotency key: a create-call is not tried again unless the policy opts in.
#[tokio::test]
async fn a_504_on_create_call_is_not_retried_unless_asked() {
    let (graph, base, client) = setup().await;
    graph.push(Scripted::new(504, "Gateway Timeout"));
    let err = client
        .create_call(&request("example01-request.json"))
        .await
        .unwrap_err();
    match err {
        ClientError::Service(e) => assert_eq!((e.status, e.attempts), (504, 1)),
        other => panic!("{other:?}"),
    }
    assert_eq!(graph.seen().len(), 1);

    let mut opted_in = config(&base);
    opted_in.retry.retry_gateway_timeout_on_post = true;
    let client = GraphClient::new(opted_in, credentials(&base)).unwrap();
    graph
        .push(Scripted::new(504, "Gateway Timeout"))
        .push(created_response());
    assert!(
        client
            .create_call(&request("example01-request.json"))
            .await
            .is_ok()
    );
    assert_eq!(graph.seen().len(), 1 + 2);
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let graph = Graph::new();
    let base = graph.start().await;
    let mut config = config(&base);
    config.request_timeout = Duration::from_millis(300);
    let client = GraphClient::new(config, TokenSource::fixed(graph.app_token())).unwrap();
    graph.push(Scripted::new(200, "{}").delayed(Duration::from_secs(5)));
    let err = client.get_call("c1").await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_service_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let base = Url::parse(&format!("http://{addr}/")).unwrap();
    let client = GraphClient::new(config(&base), TokenSource::fixed("t.e.s")).unwrap();
    let err = client.get_call("c1").await.unwrap_err();
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
}

#[tokio::test]
async fn a_token_without_the_needed_role_sends_nothing() {
    let (graph, _, client) = setup().await;
    *graph.roles.lock().unwrap() = vec!["Calls.Initiate.All".to_owned()];
    // Example 2 is app-hosted: it also needs Calls.AccessMedia.All.
    let err = client
        .create_call(&request("example02-request.json"))
        .await
        .unwrap_err();
    match &err {
        ClientError::Permission(PermissionError::Missing { missing, granted }) => {
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].to_string(), "Calls.AccessMedia.All");
            assert_eq!(granted, &vec!["Calls.Initiate.All".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("Calls.AccessMedia.All"), "{err}");
    assert!(graph.seen().is_empty());
}

#[tokio::test]
async fn an_invalid_request_sends_nothing() {
    let (graph, _, client) = setup().await;
    let mut call = request("example01-request.json");
    call.callback_uri = "http://bot.contoso.com/callback".to_owned().into();
    let err = client.create_call(&call).await.unwrap_err();
    match &err {
        ClientError::Invalid(errors) => assert!(errors.names_field("callbackUri"), "{errors}"),
        other => panic!("{other:?}"),
    }
    assert!(graph.seen().is_empty());
}

#[tokio::test]
async fn a_refusing_token_endpoint_is_a_token_error() {
    let (graph, _, client) = setup().await;
    *graph.token_refusal.lock().unwrap() = Some(Scripted::new(
        401,
        json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret"}).to_string(),
    ));
    let err = client.get_call("c1").await.unwrap_err();
    match err {
        ClientError::Token(TokenError::Refused {
            status,
            error,
            description,
            ..
        }) => {
            assert_eq!(status, 401);
            assert_eq!(error, "invalid_client");
            assert!(description.contains("AADSTS7000215"));
        }
        other => panic!("{other:?}"),
    }
    assert!(graph.seen().is_empty());
}

#[tokio::test]
async fn a_success_with_a_body_that_is_not_a_call_is_an_error() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(200, "<html>proxy</html>"));
    let err = client.get_call("c1").await.unwrap_err();
    assert!(
        matches!(err, ClientError::UnexpectedResponse { status: 200, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_next_link_to_another_host_is_refused() {
    let (graph, _, client) = setup().await;
    graph.push(Scripted::new(
        200,
        json!({"value": [], "@odata.nextLink": "https://evil.example/steal"}).to_string(),
    ));
    let err = client.list_participants("c1").await.unwrap_err();
    assert!(err.to_string().contains("leaves the Graph host"), "{err}");
    assert_eq!(graph.seen().len(), 1);
}

#[tokio::test]
async fn a_token_is_refreshed_shortly_before_it_expires() {
    let graph = Graph::new();
    let base = graph.start().await;
    // A 4 s token with a 1 s margin is used for 3 s.
    let mut credentials = ClientCredentials::for_authority(
        base.as_str(),
        "tenant",
        "bot-app-id",
        "bot-secret",
        "https://graph.microsoft.com/.default",
    )
    .unwrap();
    credentials.refresh_margin = Duration::from_secs(1);
    let tokens = TokenSource::client_credentials(credentials, Duration::from_secs(5)).unwrap();
    *graph.expires_in.lock().unwrap() = 4;
    let first = tokens.token().await.unwrap();
    assert_eq!(tokens.token().await.unwrap(), first, "cached");
    assert_eq!(tokens.fetch_count(), 1);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_ne!(
        tokens.token().await.unwrap(),
        first,
        "refreshed before expiry"
    );
    assert_eq!(tokens.fetch_count(), 2);
}

#[tokio::test]
async fn concurrent_requests_share_one_token_fetch() {
    let (graph, _, client) = setup().await;
    for _ in 0..8 {
        graph.push(Scripted::new(200, common::seed("example01-response.json")));
    }
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get_call("c1").await })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(graph.seen().len(), 8);
    assert_eq!(graph.token_fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_delegated_token_is_refused_before_sending() {
    let graph = Graph::new();
    let base = graph.start().await;
    let delegated = graph
        .issuer
        .sign(&json!({"scp": "Calls.Initiate", "exp": appmedia_signalling::auth::unix_now() + 60}))
        .unwrap();
    let client = GraphClient::new(config(&base), TokenSource::fixed(delegated)).unwrap();
    let err = client
        .create_call(&request("example01-request.json"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Permission(PermissionError::DelegatedToken { .. })
        ),
        "{err:?}"
    );
    assert!(graph.seen().is_empty());
}

#[tokio::test]
async fn an_opaque_token_cannot_be_checked_unless_the_check_is_off() {
    let graph = Graph::new();
    let base = graph.start().await;
    let client = GraphClient::new(config(&base), TokenSource::fixed("opaque-token")).unwrap();
    let err = client
        .create_call(&request("example01-request.json"))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::TokenClaims(_)), "{err:?}");
    assert!(graph.seen().is_empty());

    let mut unchecked = config(&base);
    unchecked.check_permissions = false;
    let client = GraphClient::new(unchecked, TokenSource::fixed("opaque-token")).unwrap();
    graph.push(created_response());
    client
        .create_call(&request("example01-request.json"))
        .await
        .unwrap();
    assert_eq!(
        graph.seen()[0].headers["authorization"],
        "Bearer opaque-token"
    );
}

/// A client secret never crosses the network in clear: a token endpoint in plain http on
/// another machine is refused before any connection, and a loopback one that redirects (307
/// keeps the method and the body) to plain http elsewhere is not followed.
#[tokio::test]
async fn a_secret_is_never_sent_in_clear_to_another_machine() {
    // The bot's secret, asked for from the token endpoint of `authority`.
    let tokens_at = |authority: &str| {
        let credentials = ClientCredentials::for_authority(
            authority,
            "tenant",
            "bot",
            "secret",
            "https://graph.microsoft.com/.default",
        )
        .unwrap();
        TokenSource::client_credentials(credentials, Duration::from_secs(5)).unwrap()
    };
    match tokens_at("http://login.example.com").token().await {
        Err(TokenError::InsecureEndpoint { url }) => {
            assert!(url.starts_with("http://login.example.com/"), "{url}")
        }
        other => panic!("{other:?}"),
    }

    let redirect = || async {
        (
            axum::http::StatusCode::TEMPORARY_REDIRECT,
            [(
                axum::http::header::LOCATION,
                "http://login.example.com/tenant/oauth2/v2.0/token",
            )],
        )
    };
    let addr = common::serve(
        axum::Router::new().route("/tenant/oauth2/v2.0/token", axum::routing::post(redirect)),
    )
    .await;
    // Followed, the request would fail to resolve the host (Unreachable); it is the 307 itself.
    match tokens_at(&format!("http://{addr}")).token().await {
        Err(TokenError::Refused { status: 307, .. }) => {}
        other => panic!("{other:?}"),
    }
}
