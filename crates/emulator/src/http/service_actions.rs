//! `POST …/subscribeToTone`, `POST …/recordResponse` (service-hosted calls) and
//! `GET /recordings/{operation id}`: the requests checked here, the work done by the call's
//! `ServiceActions` (`crate::conference::service_actions`).

use std::sync::Arc;
use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_media::dtmf::Tone;
use appmedia_model::{CallState, Nullable, OperationStatus};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::actions::respond;
use super::requests::{ClientContextRequest, RecordResponseRequest, client_context, read_body};
use super::{authenticate, request_id, with_call};
use crate::calls::Shared;
use crate::calls::driver::actions::not_established;
use crate::conference::service_actions::{
    RECORD_TIMEOUT_DEFAULT, RECORD_TIMEOUT_RANGE, RecordSettings,
};
use crate::error::ApiError;
use crate::operations::{Operation, OperationKind};

/// `GET /recordings/{operation id}` with `Authorization: Bearer {recordingAccessToken}`:
/// the WAV a `recordResponse` made (`application/octet-stream`, as Graph's file service).
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    UrlPath(operation): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let Some((path, token)) = shared.responses.get(&operation) else {
        return ApiError::not_found(format!("recording {operation} does not exist"))
            .into_response_with(&request_id);
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented != Some(token.as_str()) {
        return ApiError::unauthorized("the recording needs its recordingAccessToken")
            .into_response_with(&request_id);
    }
    let read = tokio::task::spawn_blocking(move || std::fs::read(path))
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
    match read {
        Ok(bytes) => {
            let mut response = (StatusCode::OK, bytes).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            response
        }
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            format!("recording {operation}: {e}"),
        )
        .into_response_with(&request_id),
    }
}

pub(crate) async fn subscribe_to_tone(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        with_call(&shared, &claims, &id, |_| ())?;
        let request: ClientContextRequest = read_body(&shared, &headers, body).await?;
        let context = client_context(&request.client_context)?;
        with_call(&shared, &claims, &id, |record| {
            record
                .service
                .as_ref()
                .map(|s| s.actions().subscribe_to_tones())
        })?
        .ok_or_else(|| service_hosted_only("subscribeToTone"))?;
        Ok(Operation::new(
            OperationKind::SubscribeToTone,
            OperationStatus::Completed,
            context,
        )
        .answer(&shared.base_url, &id))
    }
    .await;
    respond(&headers, result)
}

/// `POST …/recordResponse` (service-hosted calls).
pub(crate) async fn record_response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = record_response_inner(&shared, &id, &headers, body).await;
    respond(&headers, result)
}

async fn record_response_inner(
    shared: &Arc<Shared>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    let (service_hosted, established) = with_call(shared, &claims, id, |r| {
        (
            r.service.is_some(),
            r.resource.state.value() == Some(&CallState::Established),
        )
    })?;
    let request: RecordResponseRequest = read_body(shared, headers, body).await?;
    let context = client_context(&request.client_context)?;
    if !service_hosted {
        return Err(service_hosted_only("recordResponse"));
    }
    if !established {
        return Err(not_established("recordResponse"));
    }
    let settings = record_settings(&request)?;
    let prompt = match request
        .prompts
        .value()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        [] => None,
        [_] => {
            let mut body = serde_json::Map::new();
            body.insert(
                "prompts".into(),
                serde_json::to_value(request.prompts.value()).unwrap_or(Value::Null),
            );
            let (uri, resource) = super::prompts::prompt_uris(&body)?.remove(0);
            Some(load_prompt(shared, &claims, id, uri, resource).await?)
        }
        more => {
            return Err(ApiError::bad_request(format!(
                "prompts: {} prompts; recordResponse plays at most 1",
                more.len()
            )));
        }
    };
    let operation = with_call(shared, &claims, id, |record| {
        record
            .service
            .as_ref()
            .map(|s| s.actions().record(settings, prompt, context))
    })?
    .ok_or_else(|| ApiError::not_found(format!("call {id} does not exist")))?;
    Ok(operation.answer(&shared.base_url, id))
}

/// The prompt of a `recordResponse`: pre-fetched, or read like a `playPrompt` prompt.
async fn load_prompt(
    shared: &Arc<Shared>,
    claims: &crate::tokens::AccessClaims,
    id: &str,
    uri: String,
    resource: Option<String>,
) -> Result<AudioClip, ApiError> {
    let prefetched = with_call(shared, claims, id, |record| {
        record
            .service
            .as_ref()
            .and_then(|s| s.prefetched(&uri, resource.as_deref()))
    })?;
    if let Some(clip) = prefetched {
        return Ok(clip);
    }
    let field = "prompts[0].mediaInfo.uri";
    let path = shared.prompt_path(&uri, field)?;
    let library = shared.prompt_library.clone();
    tokio::task::spawn_blocking(move || library.load(&path, &uri, field))
        .await
        .map_err(|e| ApiError::internal(format!("loading the prompt: {e}")))?
}

/// A `recordResponse` body's timeouts, beep, stop tones and barge-in, checked.
fn record_settings(request: &RecordResponseRequest) -> Result<RecordSettings, ApiError> {
    let seconds = |value: &Nullable<i32>, field: &str| match value.value() {
        None => Ok(RECORD_TIMEOUT_DEFAULT),
        Some(s) if RECORD_TIMEOUT_RANGE.contains(s) => {
            Ok(Duration::from_secs(u64::from(s.unsigned_abs())))
        }
        Some(s) => Err(ApiError::bad_request(format!(
            "{field}: {s} is outside {} to {} seconds",
            RECORD_TIMEOUT_RANGE.start(),
            RECORD_TIMEOUT_RANGE.end()
        ))),
    };
    let stop_tones = request
        .stop_tones
        .value()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut chars = t.chars();
            let key = match (chars.next(), chars.next()) {
                (Some(c), None) => Tone::from_char(c),
                _ => Tone::from_graph_name(t),
            };
            key.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "stopTones[{i}]: {t:?} is not a key (0-9, *, #, A-D, or a tone name)"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordSettings {
        initial_silence: seconds(
            &request.initial_silence_timeout_in_seconds,
            "initialSilenceTimeoutInSeconds",
        )?,
        max_silence: seconds(
            &request.max_silence_timeout_in_seconds,
            "maxSilenceTimeoutInSeconds",
        )?,
        max_duration: seconds(
            &request.max_record_duration_in_seconds,
            "maxRecordDurationInSeconds",
        )?,
        play_beep: request.play_beep.value().copied().unwrap_or(true),
        stop_tones,
        barge_in: request.barge_in_allowed.value().copied().unwrap_or(false),
    })
}

fn service_hosted_only(action: &str) -> ApiError {
    ApiError::bad_request(format!(
        "{action} is supported only for calls created with serviceHostedMediaConfig"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_settings_default_and_bounds_name_the_field() {
        let s = record_settings(&RecordResponseRequest::default()).unwrap();
        assert_eq!(s.max_duration, RECORD_TIMEOUT_DEFAULT);
        assert!(s.play_beep && !s.barge_in && s.stop_tones.is_empty());
        let request = RecordResponseRequest {
            stop_tones: Nullable::Value(vec!["#".into(), "1".into(), "star".into()]),
            max_record_duration_in_seconds: Nullable::Value(10),
            ..Default::default()
        };
        let s = record_settings(&request).unwrap();
        assert_eq!(s.stop_tones, vec![Tone::Pound, Tone::Tone1, Tone::Star]);
        assert_eq!(s.max_duration, Duration::from_secs(10));
        let too_long = RecordResponseRequest {
            max_silence_timeout_in_seconds: Nullable::Value(121),
            ..Default::default()
        };
        let e = record_settings(&too_long).unwrap_err();
        assert!(e.message.starts_with("maxSilenceTimeoutInSeconds"), "{e}");
        let bad_tone = RecordResponseRequest {
            stop_tones: Nullable::Value(vec!["x1".into()]),
            ..Default::default()
        };
        let e = record_settings(&bad_tone).unwrap_err();
        assert!(e.message.starts_with("stopTones[0]"), "{e}");
    }
}
