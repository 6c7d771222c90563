//! Who may get a token for which tenant, and which token reaches which call: the emulator
//! binds every call to its (application, tenant) and refuses delegated tokens on every
//! route, as Graph does (issue 11, finding 4).

mod common;

use axum::http::StatusCode;
use common::*;
use reqwest::Method;

/// `POST /{tenant}/oauth2/v2.0/token` with a form body: (status, JSON body).
const GRAPH_DEFAULT: &str = "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default";
const USER_READ: &str = "scope=https%3A%2F%2Fgraph.microsoft.com%2FUser.Read";

fn client_credentials(app: &str, secret: &str) -> String {
    format!("grant_type=client_credentials&client_id={app}&client_secret={secret}&{GRAPH_DEFAULT}")
}

#[tokio::test]
async fn a_token_is_issued_only_for_the_home_tenant_or_one_that_consented() {
    let h = Harness::start(config()).await;
    // Calling Bot: home tenant and Fabrikam (consented).
    for tenant in [TENANT, FABRIKAM] {
        let (status, body) = token_request(
            &h.emulator,
            tenant,
            client_credentials(CALLING_BOT, CALLING_BOT_SECRET),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let token = body["access_token"].as_str().unwrap();
        let claims = appmedia_signalling::auth::unverified_payload(token).unwrap();
        assert_eq!(claims["tid"], tenant);
    }
    // Limited Bot was never consented in Fabrikam.
    let (status, body) = token_request(
        &h.emulator,
        FABRIKAM,
        client_credentials(LIMITED_BOT, LIMITED_BOT_SECRET),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "unauthorized_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("AADSTS700016"),
        "{body}"
    );
}

#[tokio::test]
async fn the_password_grant_authenticates_the_application_and_its_user_tenant() {
    let h = Harness::start(config()).await;
    let john = "grant_type=password&username=John&password=john-password";
    let secret = format!("client_id={CALLING_BOT}&client_secret={CALLING_BOT_SECRET}");
    for (why, tenant, form, expected) in [
        (
            "without the application's secret, a confidential client is not authenticated",
            TENANT,
            format!("{john}&client_id={CALLING_BOT}&{USER_READ}"),
            (401, Some("invalid_client")),
        ),
        (
            "a wrong secret",
            TENANT,
            format!("{john}&client_id={CALLING_BOT}&client_secret=wrong&{USER_READ}"),
            (401, Some("invalid_client")),
        ),
        (
            "John is a user of the home tenant, not of Fabrikam (where the bot is consented)",
            FABRIKAM,
            format!("{john}&{secret}&{USER_READ}"),
            (400, Some("invalid_grant")),
        ),
        (
            "the application and its user in the home tenant",
            TENANT,
            format!("{john}&{secret}&{USER_READ}"),
            (200, None),
        ),
    ] {
        let (status, body) = token_request(&h.emulator, tenant, form).await;
        assert_eq!((status, body["error"].as_str()), expected, "{why}: {body}");
    }
}

#[tokio::test]
async fn a_tenant_id_other_than_the_tokens_is_7505() {
    // Example 5 joins Fabrikam's meeting: with a token for the bot's home tenant it is the
    // tenant mismatch Graph answers; with a token for Fabrikam it is created (seed_examples).
    let h = Harness::start(config()).await;
    let request = h.seed_request("example05-request.json");
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let message = assert_graph_error(&error, "7505");
    assert!(message.contains("tenant mismatch"), "{message}");
    assert!(message.contains(FABRIKAM), "{message}");
}

#[tokio::test]
async fn a_call_is_reached_only_with_a_token_of_its_application_and_tenant() {
    let fabrikam = Harness::start_in(config(), CALLING_BOT, CALLING_BOT_SECRET, FABRIKAM).await;
    let request = fabrikam.seed_request("example05-request.json");
    let (status, _, call) = fabrikam.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let path = format!("/communications/calls/{}", call["id"].as_str().unwrap());

    let home = fabrikam.token_for(CALLING_BOT, CALLING_BOT_SECRET).await;
    let other_app = fabrikam.token_for(TEST_BOT, TEST_BOT_SECRET).await;
    for (who, token) in [
        ("the same bot in its home tenant", &home),
        ("another bot", &other_app),
    ] {
        for (method, route) in [
            (Method::GET, path.clone()),
            (Method::GET, format!("{path}/participants")),
            (Method::DELETE, path.clone()),
        ] {
            let (status, body) = fabrikam.request_with(method.clone(), token, &route).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{who}: {method} {route}: {body}"
            );
        }
    }
    // The token of the call's own (application, tenant) reaches it.
    let (status, body) = fabrikam.get(&path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenantId"], FABRIKAM);
    assert_eq!(fabrikam.delete(&path).await, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_delegated_token_is_refused_on_every_route() {
    let h = Harness::start(config()).await;
    let (status, _, call) = h.post_call(&h.seed_request("example01-request.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{call}");
    let path = format!("/communications/calls/{}", call["id"].as_str().unwrap());
    let (status, body) = token_request(
        &h.emulator,
        TENANT,
        format!(
            "grant_type=password&username=John&password=john-password&client_id={CALLING_BOT}&client_secret={CALLING_BOT_SECRET}&{USER_READ}"
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let delegated = body["access_token"].as_str().unwrap();
    for (method, route) in [
        (Method::GET, path.clone()),
        (Method::GET, format!("{path}/participants")),
        (Method::DELETE, path.clone()),
    ] {
        let (status, body) = h.request_with(method.clone(), delegated, &route).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {route}: {body}");
        let message = assert_graph_error(&body, "Forbidden");
        assert!(message.contains("Delegated"), "{message}");
    }
    // The call is still there for the application.
    let (status, _) = h.get(&path).await;
    assert_eq!(status, StatusCode::OK);
}

/// A meeting that requires its passcode refuses a join by id without one (a meeting that does
/// not, like the seed's, takes example 8's `passcode: null`).
#[tokio::test]
async fn a_meeting_that_requires_its_passcode_refuses_a_join_without_one() {
    let mut config = config();
    config.directory.meetings[0].passcode_required = true;
    let h = Harness::start_in(config, CALLING_BOT, CALLING_BOT_SECRET, FABRIKAM).await;
    let request = h.seed_request("example08-request.json");
    assert!(request["meetingInfo"]["passcode"].is_null());
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let message = assert_graph_error(&error, "Forbidden");
    assert!(message.contains("needs its passcode"), "{message}");
    // With it, the same meeting is joined.
    let (status, _, body) = h.post_call(&h.seed_request("example07-request.json")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// An application calls only from its own application instances: another application's is
/// 403, one that does not exist is 404.
#[tokio::test]
async fn an_application_instance_is_used_only_by_its_application() {
    let h = Harness::start_as(config(), TEST_BOT, TEST_BOT_SECRET).await;
    let mut request = h.seed_request("example09-request.json");
    request["source"]["identity"]["application"]["id"] = TEST_BOT.into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{error}");
    let message = assert_graph_error(&error, "Forbidden");
    assert!(message.contains("applicationInstance"), "{message}");

    request["source"]["identity"]["applicationInstance"]["id"] =
        "00000000-0000-0000-0000-000000000000".into();
    let (status, _, error) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert!(assert_graph_error(&error, "NotFound").contains("applicationInstance"));
}

/// Chat Bot: no joining role, only resource-specific consent in the seed meeting's chat.
const CHAT_BOT: &str = "4c1a0f3e-2b7d-4e59-9a0c-5d2f8e1b7a60";
const CHAT_BOT_SECRET: &str = "chat-bot-secret";
/// A second meeting of Bob's, in a chat that granted Chat Bot nothing.
const OTHER_THREAD: &str = "19:meeting_T3RoZXJNZWV0aW5nT2ZCb2I@thread.v2";

/// The built-in directory, plus Chat Bot, its grant and Bob's second meeting.
fn rsc_config() -> appmedia_emulator::EmulatorConfig {
    let extra = format!(
        r#"
[[applications]]
id = "{CHAT_BOT}"
display_name = "Chat Bot"
tenant = "{TENANT}"
client_secret = "{CHAT_BOT_SECRET}"

[[meetings]]
join_meeting_id = "7654321"
organizer = "{BOB}"
thread_id = "{OTHER_THREAD}"
tenant = "{TENANT}"

[[rsc_grants]]
application = "{CHAT_BOT}"
chat = "{MEETING_THREAD}"
permissions = ["Calls.JoinGroupCalls.Chat"]
"#
    );
    let text = format!(
        "{}{extra}",
        appmedia_emulator::directory::SEED_DIRECTORY_TOML
    );
    appmedia_emulator::EmulatorConfig {
        directory: appmedia_emulator::Directory::from_toml_str(&text).unwrap(),
        ..config()
    }
}

/// Example 6's organizer join (Bob's meeting, Contoso), service-hosted, in chat `thread`.
fn organizer_join(h: &Harness, thread: &str) -> serde_json::Value {
    let mut request = h.seed_request("example06-request.json");
    request["mediaConfig"] = serde_json::json!({
        "@odata.type": "#microsoft.graph.serviceHostedMediaConfig"
    });
    request["chatInfo"]["threadId"] = thread.into();
    request
}

#[tokio::test]
async fn resource_specific_consent_joins_the_meetings_of_its_chats_only() {
    let h = Harness::start_as(rsc_config(), CHAT_BOT, CHAT_BOT_SECRET).await;
    // The token carries no joining role: the consent is the chat's, not the tenant's.
    let token = h.token().await;
    let claims = appmedia_signalling::auth::unverified_payload(&token).unwrap();
    let claims = serde_json::Value::Object(claims).to_string();
    assert!(!claims.contains("Calls.JoinGroupCalls.Chat"), "{claims}");
    // The chat that consented: by organizer + chatInfo, and by join id (the meeting's chat).
    let (status, _, body) = h.post_call(&organizer_join(&h, MEETING_THREAD)).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let mut by_id = h.seed_request("example07-request.json");
    by_id["tenantId"] = TENANT.into();
    by_id["mediaConfig"] = serde_json::json!({
        "@odata.type": "#microsoft.graph.serviceHostedMediaConfig"
    });
    let (status, _, body) = h.post_call(&by_id).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    // Another chat of the same tenant: refused, naming what a join needs.
    let (status, _, body) = h.post_call(&organizer_join(&h, OTHER_THREAD)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    let message = assert_graph_error(&body, "Forbidden");
    assert!(message.contains("Calls.JoinGroupCalls.Chat"), "{message}");
    // Nor does the consent reach anything else: a peer-to-peer call needs its own role.
    let (status, _, body) = h.post_call(&h.seed_request("example01-request.json")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    // The seed's bot, with Calls.JoinGroupCall.All, joins the other meeting.
    let seed_bot = Harness::start(rsc_config()).await;
    let (status, _, body) = seed_bot
        .post_call(&organizer_join(&seed_bot, OTHER_THREAD))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
}

#[tokio::test]
async fn a_cloud_video_interop_join_by_token_is_refused_to_an_uncertified_app() {
    let h = Harness::start(config()).await;
    let mut request = h.seed_request("example06-request.json");
    request.as_object_mut().unwrap().remove("chatInfo");
    request["mediaConfig"] = serde_json::json!({
        "@odata.type": "#microsoft.graph.serviceHostedMediaConfig"
    });
    request["meetingInfo"] = serde_json::json!({
        "@odata.type": "#microsoft.graph.tokenMeetingInfo",
        "token": "ZXlKaGJHY2lPaUpJVXpJMU5pSjkuZXlKamRtbGZaR1YyYVdObElqb2lkR1Z6ZENKOQ"
    });
    // The model reads the shape (it round-trips) ...
    let model: appmedia_model::Call = serde_json::from_value(request.clone()).unwrap();
    assert!(matches!(
        model.meeting_info.value(),
        Some(appmedia_model::MeetingInfo::Token(_))
    ));
    // ... and the service answers as Graph does an application that is not a certified
    // Cloud Video Interop solution: 403, not 400.
    let (status, _, body) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body:#}");
    let message = assert_graph_error(&body, "Forbidden");
    assert!(message.contains("Cloud Video Interop"), "{message}");
}
