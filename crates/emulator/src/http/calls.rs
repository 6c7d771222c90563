//! `POST/GET/DELETE /v1.0/communications/calls[/{id}]`, `GET …/participants`, and the token
//! endpoints (`/{tenant}/oauth2/v2.0/token`, the Graph token keys and OpenID document).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::mpsc;

use super::{authenticate, request_id, start_media, with_call};
use crate::admission::admit;
use crate::calls::driver::{CallPlan, Control, run_call};
use crate::calls::{CallRecord, Shared};
use crate::conference::service_media::ServiceMedia;
use crate::directory::Behaviour;
use crate::error::ApiError;
use crate::notify::Destination;
use crate::shapes::{self, CallIds, MeetingContext};

/// The token endpoints and the calls' own routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/discovery/v2.0/keys", get(graph_keys))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(graph_openid_configuration),
        )
        .route("/v1.0/communications/calls", post(create_call))
        .route(
            "/v1.0/communications/calls/{id}",
            get(get_call).delete(delete_call),
        )
        .route(
            "/v1.0/communications/calls/{id}/participants",
            get(list_participants),
        )
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Body,
) -> Response {
    let form = match axum::body::to_bytes(body, shared.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(
                    json!({"error": "invalid_request", "error_description": "body too large"}),
                ),
            )
                .into_response();
        }
    };
    match shared
        .tokens
        .token_request(shared.directory(), &tenant, &form)
    {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => (e.status, axum::Json(e.body())).into_response(),
    }
}

async fn graph_keys(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.tokens.jwks()).into_response()
}

async fn graph_openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    axum::Json(shared.tokens.openid_configuration(&tenant)).into_response()
}

async fn create_call(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    match create_call_inner(&shared, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(%request_id, status = %e.status, message = %e.message, "create call refused");
            e.into_response_with(&request_id)
        }
    }
}

async fn create_call_inner(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type {content_type:?}: the body must be application/json"),
        ));
    }
    let cap = shared.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the body is larger than {cap} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, cap)
        .await
        .map_err(|_| too_large())?;

    let admitted = admit(shared.directory(), &claims, &bytes)?;
    let ids = CallIds {
        id: uuid::Uuid::new_v4().to_string(),
        call_chain_id: uuid::Uuid::new_v4().to_string(),
        my_participant_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut resource = shapes::created_call(&admitted, &ids);
    let parties: Vec<(crate::admission::Party, Behaviour)> = admitted
        .parties
        .iter()
        .map(|party| {
            let behaviour = match party {
                crate::admission::Party::User { id, .. } => {
                    shared.directory().user(id).map(|u| u.behaviour.clone())
                }
                crate::admission::Party::Phone { number } => shared
                    .directory()
                    .phone(number)
                    .map(|p| p.behaviour.clone()),
            };
            (party.clone(), behaviour.unwrap_or_default())
        })
        .collect();
    let media = start_media(shared, &ids.id, &mut resource, &parties).await?;
    let max_parties = parties.len() + shared.directory().users.len();
    let service = ServiceMedia::start(
        shared.service_media_context(),
        &ids.id,
        &resource,
        max_parties,
    )
    .await?;
    let callback_uri = admitted
        .request
        .callback_uri
        .value()
        .cloned()
        .unwrap_or_default();
    let options = admitted.request.call_options.value();
    let flag = |get: fn(&appmedia_model::CallOptions) -> &appmedia_model::Nullable<bool>| {
        options
            .and_then(|o| get(o).value().copied())
            .unwrap_or(false)
    };
    let meeting = admitted.meeting.clone().map(|meeting| {
        (
            MeetingContext {
                // The seed's meeting notifications carry chatInfo without replyChainMessageId.
                chat_info: appmedia_model::ChatInfo::new(&meeting.thread_id, "0"),
                meeting_info: shapes::organizer_meeting_info(
                    shared.directory(),
                    &meeting.organizer,
                ),
            },
            meeting,
        )
    });
    let ringing_timeout = admitted
        .request
        .ringing_timeout_in_seconds
        .value()
        .map(|s| Duration::from_secs(u64::from(*s)))
        .unwrap_or(shared.config.default_ringing_timeout);
    let plan = CallPlan {
        call_id: ids.id.clone(),
        callback_uri: callback_uri.clone(),
        kind: admitted.kind,
        bot_identity: shapes::bot_identity(&admitted),
        my_participant_id: ids.my_participant_id.clone(),
        parties,
        meeting,
        delta_roster: flag(|o| &o.is_delta_roster_enabled),
        content_sharing: flag(|o| &o.is_content_sharing_notification_enabled),
        ringing_timeout,
        faults: shared.config.faults,
        caller_page: None,
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (notify_tx, _delivery) = shared.notifier.start_call(Destination {
        callback_uri,
        app_id: admitted.application.id.clone(),
        tenant_id: admitted.tenant_id.clone(),
    });
    if let Some(service) = &service {
        service.attach_notifications(notify_tx.clone());
    }
    shared.calls().insert(
        ids.id.clone(),
        CallRecord {
            app_id: admitted.application.id.clone(),
            tenant_id: admitted.tenant_id.clone(),
            resource: resource.clone(),
            participants: Vec::new(),
            control: control_tx,
            media,
            service,
        },
    );
    let view = crate::calls::book::CallView::outgoing(&ids.id, &admitted.application.id);
    shared.book().open(view);
    tracing::info!(call = %ids.id, kind = ?admitted.kind, app = %admitted.application.id, "call created");
    tokio::spawn(run_call(shared.clone(), plan, control_rx, notify_tx));

    let location = format!("{}/v1.0/communications/calls/{}", shared.base_url, ids.id);
    let mut response = (StatusCode::CREATED, axum::Json(resource)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

async fn get_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&shared, &headers)
        .and_then(|claims| with_call(&shared, &claims, &id, |r| r.resource.clone()));
    match result {
        Ok(call) => axum::Json(call).into_response(),
        Err(e) => e.into_response_with(&request_id),
    }
}

async fn delete_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&shared, &headers).and_then(|claims| {
        with_call(&shared, &claims, &id, |record| {
            // A driver that already ended has dropped its receiver; the call is gone anyway.
            let _ = record.control.send(Control::HangUp);
        })
    });
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response_with(&request_id),
    }
}

async fn list_participants(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&shared, &headers)
        .and_then(|claims| with_call(&shared, &claims, &id, |r| r.participants.clone()));
    match result {
        Ok(participants) => axum::Json(json!({
            "@odata.context": format!(
                "https://graph.microsoft.com/v1.0/$metadata#communications/calls('{id}')/participants"
            ),
            "value": participants,
        }))
        .into_response(),
        Err(e) => e.into_response_with(&request_id),
    }
}
