//! `POST …/playPrompt` and `POST …/cancelMediaProcessing` (service-hosted calls): the
//! requests checked here, the prompts played by the call's
//! [`crate::conference::service_media::ServiceMedia`].

use std::sync::Arc;

use appmedia_audio_io::clip::AudioClip;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::{authenticate, request_id, with_call};
use crate::calls::Shared;
use crate::conference::service_media::{
    MAX_CLIENT_CONTEXT_CHARS, MAX_PROMPTS_PER_REQUEST, ServiceMedia,
};
use crate::error::ApiError;

/// The two routes.
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/v1.0/communications/calls/{id}/playPrompt",
            post(play_prompt),
        )
        .route(
            "/v1.0/communications/calls/{id}/cancelMediaProcessing",
            post(cancel_media_processing),
        )
}

/// A JSON object body (`Content-Type: application/json`, at most the service's size cap).
pub(crate) async fn json_object(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type {content_type:?}: the body must be application/json"),
        ));
    }
    let cap = shared.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, cap).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the body is larger than {cap} bytes"),
        )
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("the body is not JSON: {e}"))),
    }
}

fn client_context(body: &serde_json::Map<String, Value>) -> Result<Option<String>, ApiError> {
    match body.get("clientContext") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= MAX_CLIENT_CONTEXT_CHARS => {
            Ok(Some(s.clone()))
        }
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "clientContext: longer than {MAX_CLIENT_CONTEXT_CHARS} characters"
        ))),
        Some(_) => Err(ApiError::bad_request("clientContext: must be a string")),
    }
}

/// A prompt of a `playPrompt` body: (uri, resourceId), checked.
pub(crate) fn prompt_uris(
    body: &serde_json::Map<String, Value>,
) -> Result<Vec<(String, Option<String>)>, ApiError> {
    let Some(Value::Array(prompts)) = body.get("prompts") else {
        return Err(ApiError::bad_request(
            "prompts: a collection of mediaPrompt is required",
        ));
    };
    if prompts.is_empty() || prompts.len() > MAX_PROMPTS_PER_REQUEST {
        return Err(ApiError::bad_request(format!(
            "prompts: {} prompts; 1 to {MAX_PROMPTS_PER_REQUEST} are allowed",
            prompts.len()
        )));
    }
    prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let bad = |what: &str| ApiError::bad_request(format!("prompts[{i}]{what}"));
            let Value::Object(prompt) = prompt else {
                return Err(bad(": must be a mediaPrompt object"));
            };
            match prompt.get("@odata.type") {
                None => {}
                Some(Value::String(t)) if t == "#microsoft.graph.mediaPrompt" => {}
                Some(other) => {
                    return Err(bad(&format!(
                        ".@odata.type: {other} is not #microsoft.graph.mediaPrompt"
                    )));
                }
            }
            let Some(Value::Object(info)) = prompt.get("mediaInfo") else {
                return Err(bad(".mediaInfo: a mediaInfo object is required"));
            };
            let uri = match info.get("uri") {
                Some(Value::String(u)) if !u.is_empty() => u.clone(),
                _ => return Err(bad(".mediaInfo.uri: a non-empty string is required")),
            };
            let resource_id = match info.get("resourceId") {
                None | Some(Value::Null) => None,
                Some(Value::String(r)) => Some(r.clone()),
                Some(_) => return Err(bad(".mediaInfo.resourceId: must be a string")),
            };
            Ok((uri, resource_id))
        })
        .collect()
}

/// `POST /v1.0/communications/calls/{id}/playPrompt`.
pub(crate) async fn play_prompt(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    match play_prompt_inner(&shared, &id, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response_with(&request_id),
    }
}

async fn play_prompt_inner(
    shared: &Arc<Shared>,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    with_call(shared, &claims, id, |_| ())?;
    let body = json_object(shared, headers, body).await?;
    let client_context = client_context(&body)?;
    let uris = prompt_uris(&body)?;
    // Pre-fetched prompts first (no I/O), under the calls lock; the rest are loaded off it.
    let found: Vec<Option<AudioClip>> = with_call(shared, &claims, id, |record| {
        record.service.as_ref().map(|service| {
            uris.iter()
                .map(|(uri, resource)| service.prefetched(uri, resource.as_deref()))
                .collect()
        })
    })?
    .ok_or_else(|| {
        ApiError::bad_request(
            "playPrompt is supported only for calls created with serviceHostedMediaConfig",
        )
    })?;
    // The others are resolved here (no I/O) and decoded off the async workers.
    let wanted = uris
        .iter()
        .zip(found)
        .enumerate()
        .map(|(i, ((uri, _), clip))| {
            let field = format!("prompts[{i}].mediaInfo.uri");
            match clip {
                Some(clip) => Ok(Ok(clip)),
                None => shared
                    .prompt_path(uri, &field)
                    .map(|path| Err((path, uri.clone(), field))),
            }
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let library = shared.prompt_library.clone();
    let clips = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .map(|found| match found {
                Ok(clip) => Ok(clip),
                Err((path, uri, field)) => library.load(&path, &uri, &field),
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("loading prompts: {e}")))??;
    let operation = with_call(shared, &claims, id, |record| {
        record
            .service
            .as_ref()
            .map(|service| service.play(&clips, client_context.clone()))
    })?
    .ok_or_else(|| ApiError::not_found(format!("call {id} does not exist")))??;
    let body = json!({
        "@odata.type": "#microsoft.graph.playPromptOperation",
        "id": operation,
        "status": "running",
        "clientContext": client_context,
    });
    Ok(operation_response(shared, id, &operation, body))
}

/// `POST /v1.0/communications/calls/{id}/cancelMediaProcessing`.
pub(crate) async fn cancel_media_processing(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    let result = async {
        let claims = authenticate(&shared, &headers)?;
        with_call(&shared, &claims, &id, |_| ())?;
        let body = json_object(&shared, &headers, body).await?;
        let client_context = client_context(&body)?;
        with_call(&shared, &claims, &id, |record| {
            record.service.as_ref().map(ServiceMedia::cancel_all)
        })?
        .ok_or_else(|| {
            ApiError::bad_request(
                "cancelMediaProcessing is supported only for calls created with \
                 serviceHostedMediaConfig",
            )
        })?
        .map_err(|e| ApiError::internal(format!("cancelMediaProcessing: {e}")))?;
        let operation = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "@odata.type": "#microsoft.graph.cancelMediaProcessingOperation",
            "id": operation,
            "status": "completed",
            "clientContext": client_context,
        });
        Ok::<_, ApiError>(operation_response(&shared, &id, &operation, body))
    }
    .await;
    result.unwrap_or_else(|e| e.into_response_with(&request_id))
}

fn operation_response(shared: &Shared, call_id: &str, operation: &str, body: Value) -> Response {
    let location = format!(
        "{}/v1.0/communications/calls/{call_id}/operations/{operation}",
        shared.base_url
    );
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test bodies are objects"),
        }
    }

    #[test]
    fn play_prompt_bodies_are_checked_naming_the_field() {
        let ok = body(
            json!({"prompts": [{"@odata.type": "#microsoft.graph.mediaPrompt",
            "mediaInfo": {"uri": "https://cdn.contoso.com/beep.wav", "resourceId": "r"}}]}),
        );
        assert_eq!(
            prompt_uris(&ok).unwrap(),
            vec![("https://cdn.contoso.com/beep.wav".into(), Some("r".into()))]
        );
        let cases = [
            (json!({}), "prompts:"),
            (json!({"prompts": []}), "prompts: 0 prompts"),
            (json!({"prompts": [1]}), "prompts[0]: must be"),
            (
                json!({"prompts": [{"@odata.type": "#microsoft.graph.call"}]}),
                "prompts[0].@odata.type",
            ),
            (
                json!({"prompts": [{"mediaInfo": {"uri": ""}}]}),
                "prompts[0].mediaInfo.uri",
            ),
            (
                json!({"prompts": [{"mediaInfo": {"uri": "u", "resourceId": 3}}]}),
                "prompts[0].mediaInfo.resourceId",
            ),
        ];
        for (b, expected) in cases {
            let e = prompt_uris(&body(b.clone())).unwrap_err();
            assert!(e.message.starts_with(expected), "{b}: {}", e.message);
        }
        let many = json!({"prompts": vec![json!({"mediaInfo": {"uri": "u"}}); 21]});
        assert!(
            prompt_uris(&body(many))
                .unwrap_err()
                .message
                .contains("21 prompts")
        );
        assert!(client_context(&body(json!({"clientContext": "x".repeat(257)}))).is_err());
        assert!(client_context(&body(json!({"clientContext": 5}))).is_err());
        assert_eq!(
            client_context(&body(json!({"clientContext": "c"})))
                .unwrap()
                .as_deref(),
            Some("c")
        );
    }
}
