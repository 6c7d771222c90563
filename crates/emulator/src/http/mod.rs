//! Layer 3 of the emulator (`docs/architecture.md`): the HTTP routes. Graph's v1.0 calling
//! API ([`calls`], [`actions`], [`incoming`], [`online_meetings`], [`prompts`],
//! [`service_actions`]), the token endpoints, the control API ([`control`]) and the softphone
//! page ([`softphone`]). Handlers authenticate, parse and answer; what happens to a call is
//! the call layer's ([`crate::calls`]).

pub mod acs;
pub mod actions;
pub mod calls;
pub mod control;
pub mod incoming;
pub mod online_meetings;
pub mod prompts;
pub(crate) mod requests;
pub mod service_actions;
pub mod softphone;

use appmedia_model::Call;
use appmedia_signalling::permissions::{RequiredPermissions, check_token_claims};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::calls::{CallRecord, Shared};
use crate::conference::media::{MediaError, MediaPeer, is_appmedia_blob};
use crate::directory::Behaviour;
use crate::error::{ApiError, permission_error};
use crate::tokens::AccessClaims;
use appmedia_audio_io::record::RecordingConfig;

/// A request's correlation id: the caller's `client-request-id` when it sent one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

pub(crate) async fn not_found(headers: HeaderMap) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownError",
        "no such resource in the emulated Graph API",
    )
    .into_response_with(&request_id(&headers))
}

/// The verified claims of an application token (401 for a bad token, 403 for a delegated one
/// or one without application permissions): every calling route needs one, as Graph's do.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
    authenticate_for(shared, headers, &RequiredPermissions::default())
}

/// [`authenticate`], and the token grants `required` (403 naming what is missing).
pub(crate) fn authenticate_for(
    shared: &Shared,
    headers: &HeaderMap,
    required: &RequiredPermissions,
) -> Result<AccessClaims, ApiError> {
    let claims = shared.tokens.verify(authorization(headers))?;
    check_token_claims(&claims.all, required).map_err(permission_error)?;
    Ok(claims)
}

/// Becomes the bot's media peer when the call has app-hosted media with an appmedia blob:
/// the answer blob replaces the offer in the 201 body's `mediaConfig` (`docs/blob.md`).
pub(crate) async fn start_media(
    shared: &Shared,
    call_id: &str,
    resource: &mut Call,
    parties: &[(crate::admission::Party, Behaviour)],
) -> Result<Option<MediaPeer>, ApiError> {
    let Some(appmedia_model::MediaConfig::AppHosted(config)) = resource.media_config.value_mut()
    else {
        return Ok(None);
    };
    let Some(offer) = config.blob.value().filter(|b| is_appmedia_blob(b)).cloned() else {
        return Ok(None);
    };
    let recording = shared.config.recordings_dir.as_ref().map(|dir| {
        // The mixed track is everyone; the bot alone is its speaker track.
        RecordingConfig::new(dir, call_id)
    });
    // Called parties, and meeting participants that may join later.
    let max_parties = parties.len() + shared.directory().users.len();
    let (peer, answer) = MediaPeer::answer(
        shared.config.transport.clone(),
        &offer,
        &shared.conferences,
        max_parties,
        recording,
    )
    .await
    .map_err(|e| match e {
        MediaError::Offer(_) => ApiError::bad_request(e.to_string()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            other.to_string(),
        ),
    })?;
    config.blob = answer.into();
    tracing::info!(call = %call_id, recording = ?peer.recording(), "media peer answered the bot's offer");
    Ok(Some(peer))
}

/// The caller's call `id`, or 404 (a call of another application, or of the same application
/// in another tenant, is not visible).
pub(crate) fn with_call<T>(
    shared: &Shared,
    claims: &AccessClaims,
    id: &str,
    f: impl FnOnce(&CallRecord) -> T,
) -> Result<T, ApiError> {
    let calls = shared.calls();
    calls
        .get(id)
        .filter(|record| {
            record.app_id.eq_ignore_ascii_case(&claims.app_id)
                && record.tenant_id.eq_ignore_ascii_case(&claims.tenant_id)
        })
        .map(f)
        .ok_or_else(|| ApiError::not_found(format!("call {id} does not exist")))
}
