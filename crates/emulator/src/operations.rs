//! Graph's `commsOperation`s as the emulator writes them: the body of an action's `200`
//! (with `Location: …/operations/{id}`), and the `deleted` notification on
//! `/communications/calls/{call}/operations/{op}` that ends a running one. The shapes are the
//! v1.0 documentation's examples (`tests/fixtures/actions/`).

use appmedia_model::ResultInfo;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// Which operation, by its `@odata.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OperationKind {
    InviteParticipants,
    MuteParticipant,
    UnmuteParticipant,
    SubscribeToTone,
    SendDtmfTones,
    Record,
    UpdateRecordingStatus,
}

impl OperationKind {
    fn odata_type(self) -> &'static str {
        match self {
            OperationKind::InviteParticipants => "#microsoft.graph.inviteParticipantsOperation",
            OperationKind::MuteParticipant => "#microsoft.graph.muteParticipantOperation",
            OperationKind::UnmuteParticipant => "#microsoft.graph.unmuteParticipantOperation",
            OperationKind::SubscribeToTone => "#microsoft.graph.subscribeToToneOperation",
            OperationKind::SendDtmfTones => "#microsoft.graph.sendDtmfTonesOperation",
            OperationKind::Record => "#microsoft.graph.recordOperation",
            OperationKind::UpdateRecordingStatus => {
                "#microsoft.graph.updateRecordingStatusOperation"
            }
        }
    }

    /// The `@odata.context` Graph's answer carries, for the kinds whose documented answer has
    /// one (mute and unmute).
    fn odata_context(self) -> Option<&'static str> {
        match self {
            OperationKind::MuteParticipant => {
                Some("https://graph.microsoft.com/v1.0/$metadata#muteParticipantOperation")
            }
            OperationKind::UnmuteParticipant => {
                Some("https://graph.microsoft.com/v1.0/$metadata#unmuteParticipantOperation")
            }
            _ => None,
        }
    }
}

/// Where an operation is in its life (`operationStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OperationStatus {
    Running,
    Completed,
    Failed,
}

impl OperationStatus {
    fn as_str(self) -> &'static str {
        match self {
            OperationStatus::Running => "running",
            OperationStatus::Completed => "completed",
            OperationStatus::Failed => "failed",
        }
    }
}

/// One operation of a call.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub kind: OperationKind,
    pub id: String,
    pub status: OperationStatus,
    pub client_context: Option<String>,
    /// `resultInfo` (`null` in a running operation's answer where the docs show one).
    pub result_info: Option<ResultInfo>,
    /// The kind's own properties (`participants`, `recordingLocation`, `completionReason`…).
    pub extra: Map<String, Value>,
}

impl Operation {
    /// A new operation with a fresh id.
    pub(crate) fn new(
        kind: OperationKind,
        status: OperationStatus,
        client_context: Option<String>,
    ) -> Self {
        Operation {
            kind,
            id: uuid::Uuid::new_v4().to_string(),
            status,
            client_context,
            result_info: None,
            extra: Map::new(),
        }
    }

    /// With one of the kind's own properties.
    pub(crate) fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// Ends it: `completed` (or `failed`) with `result`.
    pub(crate) fn finished(mut self, status: OperationStatus, result: ResultInfo) -> Self {
        self.status = status;
        self.result_info = Some(result);
        self
    }

    /// The object as the action's answer shows it.
    pub(crate) fn answer_body(&self) -> Value {
        let mut body = Map::new();
        body.insert("@odata.type".into(), self.kind.odata_type().into());
        if let Some(context) = self.kind.odata_context() {
            body.insert("@odata.context".into(), context.into());
        }
        body.insert("id".into(), self.id.clone().into());
        body.insert("status".into(), self.status.as_str().into());
        body.insert("clientContext".into(), json!(self.client_context));
        // The documented answers of the long-running kinds name resultInfo (still null).
        if matches!(
            self.kind,
            OperationKind::InviteParticipants
                | OperationKind::Record
                | OperationKind::UpdateRecordingStatus
        ) || self.result_info.is_some()
        {
            body.insert("resultInfo".into(), json!(self.result_info));
        }
        body.extend(self.extra.clone());
        Value::Object(body)
    }

    /// `200 OK`, `Location: {graph}/communications/calls/{call}/operations/{id}`, the body.
    pub(crate) fn answer(&self, base_url: &str, call_id: &str) -> Response {
        let location = format!(
            "{base_url}/v1.0/communications/calls/{call_id}/operations/{}",
            self.id
        );
        let mut response = (StatusCode::OK, axum::Json(self.answer_body())).into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        response
    }

    /// The notification that the operation ended: `deleted` on its resource.
    pub(crate) fn notification(&self, call_id: &str) -> Value {
        let url = format!("/communications/calls/{call_id}/operations/{}", self.id);
        let mut data = Map::new();
        data.insert("@odata.type".into(), self.kind.odata_type().into());
        data.insert("@odata.id".into(), url.clone().into());
        data.insert("id".into(), self.id.clone().into());
        data.insert("clientContext".into(), json!(self.client_context));
        data.insert("status".into(), self.status.as_str().into());
        if let Some(result) = &self.result_info {
            data.insert("resultInfo".into(), json!(result));
        }
        data.extend(self.extra.clone());
        json!({
            "@odata.type": "#microsoft.graph.commsNotifications",
            "value": [{
                "@odata.type": "#microsoft.graph.commsNotification",
                "changeType": "deleted",
                "resource": format!("/app/calls/{call_id}/operations/{}", self.id),
                "resourceUrl": url,
                "resourceData": data,
            }],
        })
    }
}

/// A `resultInfo` (code, subcode, message).
pub(crate) fn result((code, subcode, message): (i64, i64, &str)) -> ResultInfo {
    crate::shapes::result_info((code, subcode, message))
}

/// The `resultInfo` of an operation that did what it was asked.
pub(crate) const COMPLETED: (i64, i64, &str) = (200, 0, "Action completed successfully.");
/// … of one `cancelMediaProcessing` cancelled (Graph's code for a cancelled media operation).
pub(crate) const CANCELLED: (i64, i64, &str) =
    (400, 8508, "Action failed, the operation was cancelled.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_notifications_carry_the_kind_and_the_context() {
        let op = Operation::new(
            OperationKind::MuteParticipant,
            OperationStatus::Completed,
            Some("ctx".into()),
        );
        let body = op.answer_body();
        assert_eq!(
            body["@odata.type"],
            "#microsoft.graph.muteParticipantOperation"
        );
        assert_eq!(
            body["@odata.context"],
            "https://graph.microsoft.com/v1.0/$metadata#muteParticipantOperation"
        );
        assert!(body.get("resultInfo").is_none(), "{body}");
        let done = Operation::new(OperationKind::SendDtmfTones, OperationStatus::Running, None)
            .with("completionReason", "completedSuccessfully".into())
            .finished(OperationStatus::Completed, result(COMPLETED));
        let n = done.notification("c1");
        let data = &n["value"][0]["resourceData"];
        assert_eq!(n["value"][0]["changeType"], "deleted");
        assert_eq!(
            n["value"][0]["resourceUrl"],
            format!("/communications/calls/c1/operations/{}", done.id)
        );
        assert_eq!(data["status"], "completed");
        assert_eq!(data["completionReason"], "completedSuccessfully");
        assert_eq!(data["resultInfo"]["code"], 200);
        assert!(data["clientContext"].is_null());
    }
}
