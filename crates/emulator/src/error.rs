//! Graph-style error responses: `{"error":{"code","message","innerError":{"request-id","date"}}}`.

use appmedia_model::{GraphErrorBody, InnerError, Nullable};
use appmedia_signalling::permissions::PermissionError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A refused Graph request: the status, Graph's error code and a message naming the bad value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Graph's `error.code`.
    pub code: &'static str,
    /// Graph's `error.message`.
    pub message: String,
}

impl ApiError {
    /// 400 `BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// 401 `InvalidAuthenticationToken`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            message,
        )
    }

    /// 403 `Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "Forbidden", message)
    }

    /// 404 `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFound", message)
    }

    /// 500 `InternalServerError`: the emulator failed, not the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            message,
        )
    }

    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// The response, with `request_id` in the body and the `request-id` header.
    pub fn into_response_with(self, request_id: &str) -> Response {
        let mut body = GraphErrorBody::new(self.code, self.message);
        body.error.inner_error = Nullable::Value(InnerError {
            request_id: request_id.to_owned().into(),
            date: iso8601_now().into(),
            ..Default::default()
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Ok(value) = HeaderValue::from_str(request_id) {
            response.headers_mut().insert("request-id", value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"\", error=\"invalid_token\""),
            );
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.into_response_with(&request_id)
    }
}

/// Now as Graph writes dates in error bodies: `2019-01-01T12:34:56` (UTC, no zone).
pub fn iso8601_now() -> String {
    iso8601(appmedia_signalling::auth::unix_now())
}

/// Seconds since the epoch as `YYYY-MM-DDThh:mm:ss` (UTC).
pub fn iso8601(unix_seconds: u64) -> String {
    appmedia_signalling::callback::iso8601_utc(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_seconds),
    )
}

/// The 403 for a token that may not make a request.
pub fn permission_error(e: PermissionError) -> ApiError {
    match e {
        PermissionError::DelegatedToken { .. } => ApiError::forbidden(format!(
            "Delegated authentication is not supported for calls: {e}"
        )),
        other => ApiError::forbidden(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(iso8601(1_798_761_599), "2026-12-31T23:59:59");
    }
}
