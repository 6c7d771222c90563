//! The control API under `{base}/control`: what tests and tools (not bots) use to drive the
//! emulator and look into it. Unauthenticated, like the rest of a loopback emulator.
//!
//! * `PUT|GET /control/applications/{appId}/calling-webhook` — a bot registration's calling
//!   webhook, where incoming calls are offered (`{"url": "http://…"}`; `null` removes it).
//! * `POST /control/incoming-calls` — `{"from", "to", "meeting"?}`: that party calls the bot
//!   (`crate::calls::incoming`); `201 {"callId"}`.
//!   When `to` is the ACS resource's phone number or a directory user's ACS id (`8:acs:…`),
//!   the call goes to the bot's Event Grid subscription as `IncomingCall` instead
//!   (`crate::calls::acs::incoming`); `201 {"serverCallId"}`.
//! * `POST /control/acs/event-subscriptions` — `{"endpoint": URL}`: the bot's Event Grid
//!   webhook, registered once it passed the `SubscriptionValidation` handshake (204; 400 when
//!   it did not).
//! * `DELETE /control/acs/incoming-calls/{serverCallId}` — the caller of a call ringing the
//!   ACS resource hangs up before the bot answered (204; 404 when nothing rings so).
//! * `GET /control/acs/calls/{id}` — an ACS call connection: its properties, participants
//!   and audio-stream counters.
//! * `POST /control/acs/calls/{id}/press` — `{"party", "keys"}`: a party of the ACS call
//!   (raw id, phone number or user id) presses keys (RFC 4733 to the bot; `DtmfData` on the
//!   stream; `ContinuousDtmfRecognitionToneReceived` when recognition is on).
//! * `GET /control/calls`, `GET /control/calls/{id}` — the emulator's own view of every call
//!   ([`crate::calls::book::CallView`]), outgoing and incoming, live and recently ended (the last
//!   [`crate::calls::book::ENDED_CALLS_KEPT`]), including where a redirected call went.
//!
//! Errors are `{"error":{"code","message",…}}` with the HTTP status: 400 bad body, 404 unknown
//! application / caller / callee / call, 409 an application without a calling webhook.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::request_id;
use crate::calls::Shared;
use crate::error::ApiError;

/// The control routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/control/applications/{app_id}/calling-webhook",
            get(get_webhook).put(put_webhook),
        )
        .route("/control/incoming-calls", post(incoming_call))
        .route("/control/calls", get(list_calls))
        .route("/control/calls/{id}", get(get_call))
        .route("/control/acs/event-subscriptions", post(acs_subscription))
        .route(
            "/control/acs/incoming-calls/{server_call_id}",
            axum::routing::delete(acs_caller_hangs_up),
        )
        .route("/control/acs/calls/{id}", get(acs_call))
        .route("/control/acs/calls/{id}/press", post(acs_press))
        .with_state(shared)
}

/// A control request's JSON body, of type `T` (any content type: tools send it with curl).
async fn body_of<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    body: Body,
) -> Result<T, ApiError> {
    let cap = shared.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, cap).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the body is larger than {cap} bytes"),
        )
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not the expected JSON: {e}")))
}

fn respond(headers: &HeaderMap, result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|e| e.into_response_with(&request_id(headers)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: Option<String>,
}

async fn get_webhook(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = known_app(&shared, &app_id)
        .map(|app| axum::Json(json!({ "url": shared.incoming().webhook(&app) })).into_response());
    respond(&headers, result)
}

async fn put_webhook(
    State(shared): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let app = known_app(&shared, &app_id)?;
        let body: WebhookBody = body_of(&shared, body).await?;
        if let Some(url) = &body.url {
            crate::directory::check_webhook(url)
                .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
        }
        tracing::info!(app = %app, url = ?body.url, "calling webhook set");
        shared.incoming().set_webhook(&app, body.url);
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(&headers, result)
}

/// The directory's spelling of application `id`, or 404.
fn known_app(shared: &Shared, id: &str) -> Result<String, ApiError> {
    shared
        .directory()
        .application(id)
        .map(|a| a.id.clone())
        .ok_or_else(|| ApiError::not_found(format!("application {id} is not in the directory")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingCallBody {
    from: String,
    to: String,
    #[serde(default)]
    meeting: Option<String>,
}

async fn incoming_call(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body: IncomingCallBody = body_of(&shared, body).await?;
        if crate::calls::acs::incoming::is_acs_callee(&shared, &body.to) {
            let server_call_id = crate::calls::acs::incoming::ring(&shared, &body.from, &body.to)
                .await
                .map_err(acs_error)?;
            return Ok((
                StatusCode::CREATED,
                axum::Json(json!({ "serverCallId": server_call_id })),
            )
                .into_response());
        }
        let route = shared
            .directory()
            .incoming_route(&body.from, &body.to, body.meeting.as_deref())
            .map_err(|e| {
                if e.is_unknown() {
                    ApiError::not_found(e.to_string())
                } else {
                    ApiError::bad_request(e.to_string())
                }
            })?;
        let id = crate::calls::incoming::ring(&shared, route)?;
        Ok((StatusCode::CREATED, axum::Json(json!({ "callId": id }))).into_response())
    }
    .await;
    respond(&headers, result)
}

async fn list_calls(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "calls": shared.book().all() })).into_response()
}

async fn get_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = shared
        .book()
        .get(&id)
        .map(|view| axum::Json(view).into_response())
        .ok_or_else(|| ApiError::not_found(format!("call {id} is not known to the emulator")));
    respond(&headers, result)
}

fn acs_error(e: crate::acs::AcsApiError) -> ApiError {
    ApiError::new(e.status, e.code, e.message)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionBody {
    endpoint: String,
}

async fn acs_subscription(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body: SubscriptionBody = body_of(&shared, body).await?;
        shared
            .acs
            .subscribe(&body.endpoint)
            .await
            .map_err(acs_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(&headers, result)
}

async fn acs_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let acs = &shared.acs;
    let result = match (
        acs.properties(&id),
        acs.participants(&id),
        acs.stream_stats(&id),
    ) {
        (Some(properties), Some(participants), Some(stream)) => Ok(axum::Json(json!({
            "properties": properties,
            "participants": participants,
            "stream": stream,
        }))
        .into_response()),
        _ => Err(ApiError::not_found(format!(
            "ACS call connection {id} is not live"
        ))),
    };
    respond(&headers, result)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PressBody {
    party: String,
    keys: String,
}

async fn acs_press(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body: PressBody = body_of(&shared, body).await?;
        let keys: Vec<appmedia_media::dtmf::Tone> = body
            .keys
            .chars()
            .map(appmedia_media::dtmf::Tone::from_char)
            .collect::<Option<_>>()
            .filter(|k: &Vec<_>| !k.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request(format!("keys: {:?} are not keypad keys", body.keys))
            })?;
        let party = body.party;
        shared
            .acs
            .ask(&id, |reply| crate::calls::acs::driver::AcsCommand::Press {
                party,
                keys,
                reply,
            })
            .await
            .map_err(acs_error)?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    respond(&headers, result)
}

async fn acs_caller_hangs_up(
    State(shared): State<Arc<Shared>>,
    Path(server_call_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = crate::calls::acs::incoming::caller_hangs_up(&shared, &server_call_id)
        .map(|()| StatusCode::NO_CONTENT.into_response())
        .map_err(acs_error);
    respond(&headers, result)
}
