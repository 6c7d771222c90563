//! `appmedia graph check`: reads a create-call request, a call, a notification batch
//! or a Graph error body, round-trips it through the typed model, and judges it.

use std::fmt;

use appmedia_model::{
    Call, CommsNotifications, GraphErrorBody, Nullable, ODATA_TYPE, ResourceData,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::permissions::{RequiredPermissions, required_permissions};
use crate::validate::{CreateCallKind, validate_create_call};

/// Which resource a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceKind {
    /// A `#microsoft.graph.call` with neither `id` nor `state`: a `POST /communications/calls` body.
    CreateCallRequest,
    /// A `#microsoft.graph.call` as the service returns it.
    Call,
    /// A `#microsoft.graph.commsNotifications` batch (a callback POST body).
    CommsNotifications,
    /// A Graph error body (`{"error": {...}}`).
    GraphError,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::CreateCallRequest => "create-call request",
            ResourceKind::Call => "call",
            ResourceKind::CommsNotifications => "commsNotifications",
            ResourceKind::GraphError => "Graph error body",
        })
    }
}

/// Why a document could not be checked at all (`appmedia graph check` exits 2).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// JSON, but not a resource this tool knows.
    #[error("not a resource this tool knows: {0}")]
    UnknownResource(String),
}

/// The verdict on a document.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckReport {
    /// What the document is.
    pub kind: ResourceKind,
    /// The document after the round trip through the typed model (`None` when it did
    /// not fit the model; the reason is in `problems`).
    pub round_tripped: Option<Value>,
    /// Why the document is invalid; empty when it is valid.
    pub problems: Vec<String>,
    /// For a create-call request: the application permissions it needs.
    pub permissions: Option<RequiredPermissions>,
    /// What the document says, for a human (call states, roster sizes, unknown kinds kept).
    pub notes: Vec<String>,
}

impl CheckReport {
    /// True when nothing is wrong.
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads `input` and checks it.
pub fn check_json(input: &[u8]) -> Result<CheckReport, CheckError> {
    let document: Value = serde_json::from_slice(input)?;
    check_value(document)
}

/// Checks an already parsed document.
pub fn check_value(document: Value) -> Result<CheckReport, CheckError> {
    let kind = classify(&document)?;
    let mut report = CheckReport {
        kind,
        round_tripped: None,
        problems: Vec::new(),
        permissions: None,
        notes: Vec::new(),
    };
    match kind {
        ResourceKind::CreateCallRequest | ResourceKind::Call => {
            if let Some(call) = round_trip::<Call>(&document, &mut report) {
                if kind == ResourceKind::CreateCallRequest {
                    report
                        .notes
                        .push(format!("scenario: {}", CreateCallKind::of(&call)));
                    if let Err(errors) = validate_create_call(&call) {
                        report
                            .problems
                            .extend(errors.errors().iter().map(ToString::to_string));
                    }
                    report.permissions = Some(required_permissions(&call));
                } else {
                    describe_call(&call, "call", &mut report.notes);
                }
            }
        }
        ResourceKind::CommsNotifications => {
            if let Some(batch) = round_trip::<CommsNotifications>(&document, &mut report) {
                describe_notifications(&batch, &mut report);
            }
        }
        ResourceKind::GraphError => {
            if let Some(body) = round_trip::<GraphErrorBody>(&document, &mut report) {
                let request_id = body
                    .error
                    .inner_error
                    .value()
                    .and_then(|inner| inner.request_id.value().cloned())
                    .unwrap_or_else(|| "none".to_owned());
                report.notes.push(format!(
                    "error {}: {} (request-id {request_id})",
                    body.error.code, body.error.message
                ));
            }
        }
    }
    Ok(report)
}

fn classify(document: &Value) -> Result<ResourceKind, CheckError> {
    let Some(object) = document.as_object() else {
        return Err(CheckError::UnknownResource(format!(
            "a JSON {}, not an object",
            json_kind(document)
        )));
    };
    match object.get(ODATA_TYPE) {
        Some(Value::String(t)) if t == Call::ODATA_TYPE => {
            // The service gives every call it returns an id and a state; a body
            // without both is one the bot is about to send.
            if object.contains_key("id") || object.contains_key("state") {
                Ok(ResourceKind::Call)
            } else {
                Ok(ResourceKind::CreateCallRequest)
            }
        }
        Some(Value::String(t)) if t == CommsNotifications::ODATA_TYPE => {
            Ok(ResourceKind::CommsNotifications)
        }
        Some(Value::String(t)) => Err(CheckError::UnknownResource(format!(
            "@odata.type {t:?} (known: {}, {})",
            Call::ODATA_TYPE,
            CommsNotifications::ODATA_TYPE
        ))),
        Some(other) => Err(CheckError::UnknownResource(format!(
            "@odata.type is a JSON {}, not a string",
            json_kind(other)
        ))),
        None if object.len() == 1 && object.get("error").is_some_and(Value::is_object) => {
            Ok(ResourceKind::GraphError)
        }
        None if object.get("value").is_some_and(Value::is_array) => {
            Ok(ResourceKind::CommsNotifications)
        }
        None => Err(CheckError::UnknownResource(
            "an object without @odata.type that is neither a notification batch nor an error body"
                .to_owned(),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `original` and `written` are equal, except where `original` has a string of digits and
/// `written` the same number (the model's lenient numbers, written canonically).
fn same_but_canonical_numbers(original: &Value, written: &Value) -> bool {
    match (original, written) {
        (Value::String(text), Value::Number(n)) => text.trim().parse::<i64>().ok() == n.as_i64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len()
                && a.iter()
                    .zip(b)
                    .all(|(x, y)| same_but_canonical_numbers(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| same_but_canonical_numbers(x, y)))
        }
        (a, b) => a == b,
    }
}

fn round_trip<T: DeserializeOwned + Serialize>(
    document: &Value,
    report: &mut CheckReport,
) -> Option<T> {
    let typed: T = match serde_json::from_value(document.clone()) {
        Ok(typed) => typed,
        Err(e) => {
            report
                .problems
                .push(format!("does not fit the {} model: {e}", report.kind));
            return None;
        }
    };
    match serde_json::to_value(&typed) {
        Ok(back) => {
            if !same_but_canonical_numbers(document, &back) {
                // The model is built to make this impossible; if it happens, say so
                // rather than print a document that differs from the input. The one
                // change it makes on purpose is writing numbers Graph sent as strings
                // (`"code": "200"`) as numbers.
                report
                    .problems
                    .push("the round trip through the typed model changed the document".to_owned());
            }
            report.round_tripped = Some(back);
            Some(typed)
        }
        Err(e) => {
            report.problems.push(format!("cannot serialize back: {e}"));
            None
        }
    }
}

fn describe_call(call: &Call, what: &str, notes: &mut Vec<String>) {
    let id = call.id.value().map(String::as_str).unwrap_or("(no id)");
    let state = call
        .state
        .value()
        .map_or_else(|| "(no state)".to_owned(), ToString::to_string);
    notes.push(format!("{what} {id}: state {state}"));
}

fn describe_notifications(batch: &CommsNotifications, report: &mut CheckReport) {
    if batch.notifications().is_empty() {
        report
            .problems
            .push("value: a notification batch must hold at least one notification".to_owned());
    }
    for (i, note) in batch.notifications().iter().enumerate() {
        let change = note
            .change_type
            .value()
            .map_or_else(|| "(no changeType)".to_owned(), ToString::to_string);
        let what = match &note.resource_data {
            Nullable::Value(ResourceData::Call(call)) => {
                describe_call(
                    call,
                    &format!("value[{i}] {change}: call"),
                    &mut report.notes,
                );
                continue;
            }
            Nullable::Value(ResourceData::Operation(operation)) => {
                let status = operation
                    .status
                    .value()
                    .map_or_else(|| "(no status)".to_owned(), ToString::to_string);
                format!(
                    "{} {}: status {status}",
                    operation.kind().unwrap_or("operation"),
                    operation.id.value().map_or("(no id)", String::as_str),
                )
            }
            Nullable::Value(ResourceData::Participants(list)) => {
                format!("roster of {} participants", list.len())
            }
            Nullable::Value(ResourceData::DeltaParticipants(deltas)) => {
                let sequence: Vec<String> = deltas
                    .iter()
                    .map(|d| {
                        d.sequence_number
                            .value()
                            .map_or_else(|| "?".to_owned(), ToString::to_string)
                    })
                    .collect();
                format!("delta roster, sequenceNumber {}", sequence.join(", "))
            }
            Nullable::Value(ResourceData::ContentSharingSessions(list)) => {
                format!("{} content-sharing sessions", list.len())
            }
            Nullable::Value(ResourceData::Other(_)) => {
                "resourceData of a kind this model does not know (kept as is)".to_owned()
            }
            Nullable::Null | Nullable::Absent => "no resourceData".to_owned(),
        };
        report.notes.push(format!("value[{i}] {change}: {what}"));
    }
}
