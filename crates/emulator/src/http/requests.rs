//! Request bodies of the call actions, read with the field path of any error
//! (`participants[0].identity: invalid type…`), and the checks every action shares.

use appmedia_model::Nullable;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::calls::Shared;
use crate::conference::service_media::MAX_CLIENT_CONTEXT_CHARS;
use crate::error::ApiError;

pub(crate) use appmedia_model::{
    ChangeScreenSharingRoleRequest, ClientContextRequest, InviteParticipantsRequest,
    RecordResponseRequest, SendDtmfTonesRequest, TransferRequest, UpdateRecordingStatusRequest,
};

/// A JSON body of type `T`: `Content-Type: application/json` (415), at most the service's
/// size cap (413), JSON (400), of `T`'s shape (400 naming the field at fault). An empty
/// body reads as `{}`: actions whose parameters are all optional accept none.
pub(crate) async fn read_body<T: DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
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
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
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
        &bytes
    };
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::bad_request(format!("{path}: {}", e.into_inner()))
    })
}

/// The `clientContext`, checked against Graph's limit.
pub(crate) fn client_context(value: &Nullable<String>) -> Result<Option<String>, ApiError> {
    match value.value() {
        Some(s) if s.chars().count() > MAX_CLIENT_CONTEXT_CHARS => Err(ApiError::bad_request(
            format!("clientContext: longer than {MAX_CLIENT_CONTEXT_CHARS} characters"),
        )),
        other => Ok(other.cloned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_errors_name_the_field() {
        let value = serde_json::json!({"participants": [{"identity": 3}]});
        let e =
            serde_path_to_error::deserialize::<_, InviteParticipantsRequest>(value).unwrap_err();
        assert_eq!(e.path().to_string(), "participants[0].identity");
        assert!(client_context(&Nullable::Value("x".repeat(257))).is_err());
        assert_eq!(
            client_context(&Nullable::Value("c".into())).unwrap(),
            Some("c".into())
        );
        assert_eq!(client_context(&Nullable::Null).unwrap(), None);
    }
}
