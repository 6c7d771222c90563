//! `POST /v1.0/communications/calls/{id}/answer`, `/reject` and `/redirect`: the bot decides
//! on a call that rings it. Each checks, in order: the token (401), that the call exists and
//! belongs to the token's application (404) and still rings (409), the body (415, 413, 400:
//! the signalling crate's `validate_answer` / `validate_reject` / `validate_redirect`, the
//! very checks `GraphClient` makes), the permissions (403: `required_permissions_for_answer`),
//! what the directory has (404: redirect targets); then hands the decision to the call's
//! ringing task (`crate::calls::incoming::Command`) and answers `202` once that task took it.

use std::sync::Arc;

use appmedia_model::{
    AnswerRequest, Call, MediaConfig, RedirectRequest, RejectReason, RejectRequest,
};
use appmedia_signalling::permissions::{
    AnyOf, Permission, PermissionError, RequiredPermissions, check_token_claims,
    required_permissions_for_answer,
};
use appmedia_signalling::validate::{
    ValidationErrors, validate_answer, validate_redirect, validate_reject,
};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::admission::{Party, resolve_target};
use crate::calls::Shared;
use crate::calls::incoming::redirect::Redirect;
use crate::calls::incoming::{Answered, Command, result};
use crate::conference::service_media::ServiceMedia;
use crate::error::ApiError;
use crate::http::prompts::json_object;
use crate::http::{authenticate, request_id, start_media, with_call};
use crate::tokens::AccessClaims;

/// The call `id` of the token's application, if it still rings the bot: its resource and
/// webhook (the callbackUri it was offered with). 404 when it is not the application's or
/// gone, 409 when it is no longer (or never was) an incoming call that rings.
fn ringing_call(shared: &Shared, claims: &AccessClaims, id: &str) -> Result<Call, ApiError> {
    let call = with_call(shared, claims, id, |record| record.resource.clone())?;
    if crate::calls::incoming::is_incoming(&call) {
        Ok(call)
    } else {
        Err(not_ringing(id, &call))
    }
}

fn not_ringing(id: &str, call: &Call) -> ApiError {
    let state = call
        .state
        .value()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string);
    ApiError::new(
        StatusCode::CONFLICT,
        "Conflict",
        format!(
            "call {id} is {state}: answer, reject and redirect apply only to an incoming call \
             that has not been answered, rejected or redirected"
        ),
    )
}

/// A request body of type `T` (JSON object, `application/json`, within the size cap).
async fn body_of<T: DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let object = json_object(shared, headers, body).await?;
    serde_json::from_value(serde_json::Value::Object(object))
        .map_err(|e| ApiError::bad_request(format!("the body is not of the expected type: {e}")))
}

fn invalid(errors: ValidationErrors) -> ApiError {
    ApiError::bad_request(errors.to_string())
}

fn check_permissions(claims: &AccessClaims, required: RequiredPermissions) -> Result<(), ApiError> {
    check_token_claims(&claims.all, &required).map_err(|e| match e {
        PermissionError::DelegatedToken { .. } => ApiError::forbidden(format!(
            "Delegated authentication is not supported for calls: {e}"
        )),
        other => ApiError::forbidden(other.to_string()),
    })
}

/// Hands `command` to the ringing task of call `id` and waits until it took it. A task that
/// has already taken another decision (or ended) leaves the reply unanswered: 409 while the
/// call lives on, 404 once it is gone.
async fn decide(
    shared: &Shared,
    claims: &AccessClaims,
    id: &str,
    command: impl FnOnce(oneshot::Sender<()>) -> Command,
) -> Result<(), ApiError> {
    let (reply, taken) = oneshot::channel();
    let sent = shared
        .incoming()
        .ringing(id)
        .is_some_and(|ringing| ringing.send(command(reply)).is_ok());
    if sent && taken.await.is_ok() {
        return Ok(());
    }
    let call = with_call(shared, claims, id, |record| record.resource.clone())?;
    Err(not_ringing(id, &call))
}

fn respond(headers: &HeaderMap, action: &str, result: Result<(), ApiError>) -> Response {
    match result {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => {
            let request_id = request_id(headers);
            tracing::info!(%request_id, action, status = %e.status, message = %e.message, "call action refused");
            e.into_response_with(&request_id)
        }
    }
}

/// The three routes.
pub(crate) fn routes() -> axum::Router<Arc<Shared>> {
    use axum::routing::post;
    axum::Router::new()
        .route("/v1.0/communications/calls/{id}/answer", post(answer))
        .route("/v1.0/communications/calls/{id}/reject", post(reject))
        .route("/v1.0/communications/calls/{id}/redirect", post(redirect))
}

/// `POST /v1.0/communications/calls/{id}/answer`.
pub(crate) async fn answer(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = answer_inner(&shared, &id, &headers, body).await;
    respond(&headers, "answer", result)
}

async fn answer_inner(
    shared: &Arc<Shared>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), ApiError> {
    let claims = authenticate(shared, headers)?;
    let offered = ringing_call(shared, &claims, id)?;
    let request: AnswerRequest = body_of(shared, headers, body).await?;
    validate_answer(&request).map_err(invalid)?;
    let group_invitation =
        offered.chat_info.value().is_some() || offered.meeting_info.value().is_some();
    check_permissions(
        &claims,
        required_permissions_for_answer(&request, group_invitation),
    )?;
    let (Some(callback_uri), Some(media_config)) = (
        request.callback_uri.value().cloned(),
        request.media_config.value().cloned(),
    ) else {
        // validate_answer refuses an answer without either.
        return Err(ApiError::bad_request(
            "callbackUri and mediaConfig are required",
        ));
    };
    if !matches!(
        media_config,
        MediaConfig::AppHosted(_) | MediaConfig::ServiceHosted(_)
    ) {
        return Err(ApiError::bad_request(format!(
            "mediaConfig: {} is neither an appHostedMediaConfig nor a serviceHostedMediaConfig",
            media_config
                .odata_type()
                .unwrap_or("an untyped mediaConfig")
        )));
    }

    let mut resource = offered.clone();
    resource.media_config = media_config.into();
    let caller = caller_party(&offered);
    let max_parties = 1 + shared.directory().users.len();
    let media = start_media(shared, id, &mut resource, &caller).await?;
    let service =
        ServiceMedia::start(shared.service_media_context(), id, &resource, max_parties).await?;
    let options = request.call_options.value();
    let flag = |get: fn(&appmedia_model::CallOptions) -> &appmedia_model::Nullable<bool>| {
        options
            .and_then(|o| get(o).value().copied())
            .unwrap_or(false)
    };
    // Set above, with the emulator's answer in place of the bot's offer when it hosts media.
    let media_config = resource.media_config.into_option().ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "the answer's media configuration was lost",
        )
    })?;
    let answered = Answered {
        callback_uri,
        media_config,
        media,
        service,
        delta_roster: flag(|o| &o.is_delta_roster_enabled),
        content_sharing: flag(|o| &o.is_content_sharing_notification_enabled),
    };
    // A refused answer drops its media here: the peer and the prompt player stop.
    decide(shared, &claims, id, |reply| Command::Answer {
        answered: Box::new(answered),
        reply,
    })
    .await
}

/// The caller of an offered call, as a party with its behaviour (for the media's size).
fn caller_party(call: &Call) -> Vec<(Party, crate::directory::Behaviour)> {
    let identity = call.source.value().and_then(|s| s.identity.value());
    let party = identity.and_then(|i| {
        let id = |x: &appmedia_model::Nullable<appmedia_model::Identity>| {
            x.value().and_then(|x| x.id.value()).cloned()
        };
        id(&i.user)
            .map(|id| Party::User {
                id,
                display_name: String::new(),
            })
            .or_else(|| id(&i.phone).map(|number| Party::Phone { number }))
    });
    party
        .map(|p| (p, crate::directory::Behaviour::default()))
        .into_iter()
        .collect()
}

/// `POST /v1.0/communications/calls/{id}/reject`.
pub(crate) async fn reject(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        ringing_call(&shared, &claims, &id)?;
        let request: RejectRequest = body_of(&shared, &headers, body).await?;
        validate_reject(&request).map_err(invalid)?;
        let outcome = match request.reason.value() {
            None => result::REJECTED,
            Some(reason) => reject_outcome(reason)?,
        };
        let callback_uri = request.callback_uri.value().cloned();
        decide(&shared, &claims, &id, |reply| Command::Reject {
            result: outcome,
            callback_uri,
            reply,
        })
        .await
    }
    .await;
    respond(&headers, "reject", result)
}

/// The `resultInfo` of a rejection; the documentation writes the reasons both `none` and
/// `None`, so any case is taken.
fn reject_outcome(reason: &RejectReason) -> Result<(i64, i64, &'static str), ApiError> {
    let reason = match reason {
        RejectReason::Unknown(other) => RejectReason::from_graph(&other.to_ascii_lowercase()),
        known => known.clone(),
    };
    match reason {
        RejectReason::None => Ok(result::REJECTED),
        RejectReason::Busy => Ok(result::REJECTED_BUSY),
        RejectReason::Forbidden => Ok(result::REJECTED_FORBIDDEN),
        RejectReason::Unknown(other) => Err(ApiError::bad_request(format!(
            "reason: {other:?} is not none, busy or forbidden"
        ))),
    }
}

/// `POST /v1.0/communications/calls/{id}/redirect`.
pub(crate) async fn redirect(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        ringing_call(&shared, &claims, &id)?;
        let request: RedirectRequest = body_of(&shared, &headers, body).await?;
        validate_redirect(&request).map_err(invalid)?;
        // Graph's `call: redirect` permission.
        check_permissions(
            &claims,
            RequiredPermissions {
                all_of: vec![AnyOf(vec![Permission::CallsInitiateAll])],
            },
        )?;
        let redirect = redirect_of(shared.directory(), &request)?;
        decide(&shared, &claims, &id, |reply| Command::Redirect {
            redirect,
            reply,
        })
        .await
    }
    .await;
    respond(&headers, "redirect", result)
}

/// A validated redirect request against the directory: each target a user or phone it has
/// (404 otherwise), with what they do when rung.
fn redirect_of(
    directory: &crate::directory::Directory,
    request: &RedirectRequest,
) -> Result<Redirect, ApiError> {
    let targets = request
        .targets()
        .iter()
        .enumerate()
        .map(|(i, target)| {
            let party = resolve_target(directory, i, target.identity.value())?;
            let behaviour = match &party {
                Party::User { id, .. } => directory.user(id).map(|u| u.behaviour.clone()),
                Party::Phone { number } => directory.phone(number).map(|p| p.behaviour.clone()),
            };
            Ok((party, behaviour.unwrap_or_default()))
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let timeout = request
        .timeout
        .value()
        .map(|&s| std::time::Duration::from_secs(u64::from(s.unsigned_abs())))
        .unwrap_or_else(|| Redirect::default_timeout(targets.len()));
    Ok(Redirect {
        targets,
        timeout,
        callback_uri: request.callback_uri.value().cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redirect(body: serde_json::Value) -> Result<Redirect, ApiError> {
        let request: RedirectRequest = serde_json::from_value(body).unwrap();
        redirect_of(&crate::directory::Directory::seed(), &request)
    }

    fn phone(number: &str) -> serde_json::Value {
        json!({"identity": {"phone": {"id": number}}})
    }

    #[test]
    fn redirect_targets_come_from_the_directory_with_graphs_default_timeouts() {
        let one = redirect(json!({"targets": [phone("+12345678901")]})).unwrap();
        assert_eq!(one.timeout, std::time::Duration::from_secs(55));
        assert_eq!(one.targets[0].1.ring_delay_ms, 300);
        let two = redirect(json!({"targets": [phone("+12345678901"), phone("+12345678902")]}));
        assert_eq!(two.unwrap().timeout, std::time::Duration::from_secs(60));
        let timed = redirect(json!({"targets": [phone("+12345678901")], "timeout": 15})).unwrap();
        assert_eq!(timed.timeout, std::time::Duration::from_secs(15));
        let e = redirect(json!({"targets": [phone("+19999999999")]})).unwrap_err();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert!(
            e.message.contains("targets[0].identity.phone.id"),
            "{}",
            e.message
        );
    }

    #[test]
    fn reject_reasons_map_to_results_in_any_case() {
        assert_eq!(reject_outcome(&RejectReason::Busy).unwrap().0, 486);
        assert_eq!(
            reject_outcome(&RejectReason::from_graph("Forbidden"))
                .unwrap()
                .0,
            403
        );
        assert_eq!(
            reject_outcome(&RejectReason::from_graph("None")).unwrap().0,
            603
        );
        assert!(reject_outcome(&RejectReason::from_graph("later")).is_err());
    }
}
