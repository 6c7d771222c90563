//! The Graph error body: `{"error":{"code","message","innerError":{"request-id","date"}}}`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Nullable;

/// The body of a Graph error response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphErrorBody {
    /// The error.
    pub error: GraphError,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GraphErrorBody {
    /// An error body with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        GraphErrorBody {
            error: GraphError {
                code: code.into(),
                message: message.into(),
                inner_error: Nullable::Absent,
                extra: Map::new(),
            },
            extra: Map::new(),
        }
    }
}

/// `error` of a Graph error body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphError {
    /// Machine-readable code (e.g. `BadRequest`, `Forbidden`, `7505`).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// Request correlation.
    #[serde(
        rename = "innerError",
        default,
        skip_serializing_if = "Nullable::is_absent"
    )]
    pub inner_error: Nullable<InnerError>,
    /// Properties this model does not name (details, target, ...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `innerError` of a Graph error: which request failed, and when.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InnerError {
    /// The service's request id.
    #[serde(rename = "request-id", skip_serializing_if = "Nullable::is_absent")]
    pub request_id: Nullable<String>,
    /// The `client-request-id` the caller sent.
    #[serde(
        rename = "client-request-id",
        skip_serializing_if = "Nullable::is_absent"
    )]
    pub client_request_id: Nullable<String>,
    /// When (ISO 8601, kept as text).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub date: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
