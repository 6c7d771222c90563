//! Every way a create-call request can be wrong gets the documented status and a
//! Graph-style error body naming what was wrong.

mod common;

use std::time::Duration;

use appmedia_emulator::EmulatorConfig;
use appmedia_signalling::auth::{CallbackTokenClaims, TokenIssuer};
use axum::http::StatusCode;
use common::*;
use serde_json::{Value, json};

async fn raw_post(
    h: &Harness,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = h
        .http
        .post(format!("{}/communications/calls", h.emulator.graph_url()))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn p2p(h: &Harness) -> Value {
    h.seed_request("example02-request.json")
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    for body in [&b"{\"callbackUri\": "[..], b"[1,2]", b"", b"\xff\xfe"] {
        let (status, error) =
            raw_post(&h, Some(&token), Some("application/json"), body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_graph_error(&error, "BadRequest");
    }
    // JSON, but a property of the wrong type.
    let mut request = p2p(&h);
    request["targets"] = json!("John");
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_graph_error(&error, "BadRequest").contains("not a call"));
    assert_eq!(h.emulator.live_calls(), 0);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let h = Harness::start(config()).await;
    let token = h.token().await;
    let body = serde_json::to_vec(&p2p(&h)).unwrap();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let (status, error) = raw_post(&h, Some(&token), content_type, body.clone()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_graph_error(&error, "UnsupportedMediaType");
    }
    let (status, _) = raw_post(
        &h,
        Some(&token),
        Some("application/json; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_odata_type_is_400_naming_it() {
    let h = Harness::start(config()).await;
    let mut request = p2p(&h);
    request["mediaConfig"]["@odata.type"] = "#microsoft.graph.holographicMediaConfig".into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = assert_graph_error(&error, "BadRequest");
    assert!(message.contains("mediaConfig"), "{message}");
    assert!(message.contains("holographicMediaConfig"), "{message}");

    let mut request = p2p(&h);
    request["@odata.type"] = "#microsoft.graph.meeting".into();
    let (status, _, _) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let h = Harness::start(EmulatorConfig {
        max_body_bytes: 4096,
        ..config()
    })
    .await;
    let mut request = p2p(&h);
    request["mediaConfig"]["blob"] = "x".repeat(8192).into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(assert_graph_error(&error, "RequestEntityTooLarge").contains("4096"));
}

#[tokio::test]
async fn validation_errors_are_400_naming_the_field() {
    let h = Harness::start(config()).await;
    let mut request = p2p(&h);
    request.as_object_mut().unwrap().remove("callbackUri");
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_graph_error(&error, "BadRequest").contains("callbackUri"));

    let mut request = p2p(&h);
    request["callbackUri"] = "http://bot.contoso.com/callback".into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_graph_error(&error, "BadRequest").contains("https"));

    // Six targets: a bot's group call has at most five.
    let mut request = h.seed_request("example03-request.json");
    let target = request["targets"][0].clone();
    request["targets"] = Value::Array(vec![target; 6]);
    request["source"]["identity"]["application"]["id"] = CALLING_BOT.into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(assert_graph_error(&error, "BadRequest").contains("at most 5"));
}

#[tokio::test]
async fn missing_garbage_and_forged_tokens_are_401() {
    let h = Harness::start(config()).await;
    let body = serde_json::to_vec(&p2p(&h)).unwrap();
    let (status, error) = raw_post(&h, None, Some("application/json"), body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_graph_error(&error, "InvalidAuthenticationToken");

    let (status, _) = raw_post(
        &h,
        Some("not-a-jwt"),
        Some("application/json"),
        body.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A token with the emulator's key id and claims, signed with another key.
    let genuine = h.token().await;
    let claims = appmedia_signalling::auth::unverified_payload(&genuine).unwrap();
    let kid = jsonwebtoken::decode_header(&genuine).unwrap().kid.unwrap();
    let forger = TokenIssuer::generate(kid).unwrap();
    let forged = forger.sign(&claims).unwrap();
    let (status, error) = raw_post(&h, Some(&forged), Some("application/json"), body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(assert_graph_error(&error, "InvalidAuthenticationToken").contains("signature"));

    // A token for another audience (a callback token, say) from an unknown key.
    let other = TokenIssuer::generate("other").unwrap();
    let callback_token = other
        .sign(&CallbackTokenClaims::new(
            "https://api.botframework.com",
            CALLING_BOT,
            TENANT,
            Duration::from_secs(600),
        ))
        .unwrap();
    let (status, _) = raw_post(&h, Some(&callback_token), Some("application/json"), body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h.emulator.live_calls(), 0);
}

#[tokio::test]
async fn expired_token_is_401() {
    let h = Harness::start(EmulatorConfig {
        token_lifetime: Duration::from_secs(1),
        ..config()
    })
    .await;
    // A raw token request: the TokenSource would (rightly) refresh it.
    let response = h
        .http
        .post(h.emulator.token_url(TENANT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={CALLING_BOT}&client_secret={CALLING_BOT_SECRET}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        ))
        .send()
        .await
        .unwrap();
    let token: Value = response.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, _, error) = h.post_call_with(&token, &p2p(&h)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(assert_graph_error(&error, "InvalidAuthenticationToken").contains("expired"));
}

#[tokio::test]
async fn delegated_token_is_refused_as_not_supported() {
    let h = Harness::start(config()).await;
    let response = h
        .http
        .post(h.emulator.token_url(TENANT))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=password&client_id={CALLING_BOT}&client_secret={CALLING_BOT_SECRET}&username=John&password=john-password&scope=https%3A%2F%2Fgraph.microsoft.com%2FUser.Read"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let token: Value = response.json().await.unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let claims = appmedia_signalling::auth::unverified_payload(&token).unwrap();
    assert_eq!(claims["scp"], "User.Read");
    let (status, _, error) = h.post_call_with(&token, &p2p(&h)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = assert_graph_error(&error, "Forbidden");
    assert!(message.contains("Delegated"), "{message}");
}

#[tokio::test]
async fn missing_permission_is_403_naming_it() {
    let h = Harness::start_as(config(), LIMITED_BOT, LIMITED_BOT_SECRET).await;
    // Limited Bot may call peer-to-peer, but not host media nor join meetings.
    let mut request = p2p(&h);
    request["source"]["identity"]["application"]["id"] = LIMITED_BOT.into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = assert_graph_error(&error, "Forbidden");
    assert!(message.contains("Calls.AccessMedia.All"), "{message}");

    let request = h.seed_request("example07-request.json");
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(assert_graph_error(&error, "Forbidden").contains("Calls.JoinGroupCall.All"));

    let request = h.seed_request("example01-request.json");
    let (status, _, _) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn token_endpoint_refuses_bad_clients() {
    let h = Harness::start(config()).await;
    let ask = |tenant: &'static str, body: String| token_request(&h.emulator, tenant, body);
    let scope = "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default";
    let (status, body) = ask(
        TENANT,
        format!(
            "grant_type=client_credentials&client_id={CALLING_BOT}&client_secret=wrong&{scope}"
        ),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, body) = ask(
        TENANT,
        format!("grant_type=client_credentials&client_id=nobody&client_secret=x&{scope}"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let (status, body) = ask(
        "no-such-tenant",
        format!("grant_type=client_credentials&client_id={CALLING_BOT}&client_secret={CALLING_BOT_SECRET}&{scope}"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = ask(
        TENANT,
        format!("grant_type=implicit&client_id={CALLING_BOT}"),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );

    // A good token carries the documented claims.
    let token = h.token().await;
    let claims = appmedia_signalling::auth::unverified_payload(&token).unwrap();
    assert_eq!(claims["aud"], "https://graph.microsoft.com");
    assert_eq!(claims["tid"], TENANT);
    assert_eq!(claims["appid"], CALLING_BOT);
    assert!(
        claims["roles"]
            .as_array()
            .unwrap()
            .contains(&"Calls.AccessMedia.All".into())
    );
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    // ... and verifies against the published keys.
    let keys: Value = h
        .http
        .get(format!(
            "{}/{TENANT}/v2.0/.well-known/openid-configuration",
            h.emulator.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwks: Value = h
        .http
        .get(keys["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["https://graph.microsoft.com"]);
    jsonwebtoken::decode::<Value>(
        &token,
        &jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap(),
        &validation,
    )
    .expect("the token verifies with the published key");
}

#[tokio::test]
async fn unknown_parties_and_meetings_are_404_and_wrong_passcode_403() {
    let h = Harness::start(config()).await;
    let mut request = p2p(&h);
    request["targets"][0]["identity"]["user"]["id"] = "00000000-0000-0000-0000-000000000000".into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(assert_graph_error(&error, "NotFound").contains("targets[0].identity.user.id"));

    let mut request = h.seed_request("example09-request.json");
    request["targets"][0]["identity"]["phone"]["id"] = "+15555550199".into();
    let (status, _, _) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The seed's meeting examples name Fabrikam as the call's tenant: a token for Fabrikam.
    let fabrikam = Harness::start_in(config(), CALLING_BOT, CALLING_BOT_SECRET, FABRIKAM).await;
    let mut request = fabrikam.seed_request("example07-request.json");
    request["meetingInfo"]["joinMeetingId"] = "7654321".into();
    let (status, _, _) = fabrikam.post_call(&request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let mut request = fabrikam.seed_request("example07-request.json");
    request["meetingInfo"]["passcode"] = "guess".into();
    let (status, _, error) = fabrikam.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(assert_graph_error(&error, "Forbidden").contains("passcode"));

    let mut request = fabrikam.seed_request("example05-request.json");
    request["meetingInfo"]["organizer"]["user"]["id"] = JOHN.into();
    let (status, _, _) = fabrikam.post_call(&request).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Calling from someone else's application id.
    let mut request = p2p(&h);
    request["source"]["identity"]["application"]["id"] = TEST_BOT.into();
    let (status, _, _) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(h.emulator.live_calls(), 0);

    // Another application does not see the call.
    let (status, _, call) = h.post_call(&p2p(&h)).await;
    assert_eq!(status, StatusCode::CREATED);
    let other = h.token_for(TEST_BOT, TEST_BOT_SECRET).await;
    let response = h
        .http
        .get(format!(
            "{}/communications/calls/{}",
            h.emulator.graph_url(),
            call["id"].as_str().unwrap()
        ))
        .bearer_auth(other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}
