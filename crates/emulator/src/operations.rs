//! Graph's `commsOperation`s as the emulator writes them (the model's [`CommsOperation`]): the
//! body of an action's `200` (with `Location: …/operations/{id}`), and the `deleted`
//! notification on `/communications/calls/{call}/operations/{op}` that ends a running one.
//! The shapes are the v1.0 documentation's examples (`tests/fixtures/actions/`).

use std::sync::atomic::{AtomicU64, Ordering};

use appmedia_model::{
    ChangeType, CommsNotification, CommsNotifications, CommsOperation, Nullable, OperationStatus,
    ResourceData, ResultInfo,
};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

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
            OperationKind::InviteParticipants => CommsOperation::INVITE_PARTICIPANTS,
            OperationKind::MuteParticipant => CommsOperation::MUTE_PARTICIPANT,
            OperationKind::UnmuteParticipant => CommsOperation::UNMUTE_PARTICIPANT,
            OperationKind::SubscribeToTone => CommsOperation::SUBSCRIBE_TO_TONE,
            OperationKind::SendDtmfTones => CommsOperation::SEND_DTMF_TONES,
            OperationKind::Record => CommsOperation::RECORD,
            OperationKind::UpdateRecordingStatus => CommsOperation::UPDATE_RECORDING_STATUS,
        }
    }

    /// The `@odata.context` of the documented answer, for the kinds that show one.
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

    /// Whether the documented answer of a running operation of this kind shows
    /// `"resultInfo": null`.
    fn answers_with_result_info(self) -> bool {
        matches!(
            self,
            OperationKind::InviteParticipants
                | OperationKind::Record
                | OperationKind::UpdateRecordingStatus
        )
    }
}

/// `@odata.etag` of operation notifications: a counter, as the service's are.
static ETAG: AtomicU64 = AtomicU64::new(1);

/// One operation of a call.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    pub kind: OperationKind,
    pub id: String,
    body: CommsOperation,
}

impl Operation {
    /// A new operation with a fresh id; `clientContext` is `null` when the request had none.
    pub(crate) fn new(
        kind: OperationKind,
        status: OperationStatus,
        client_context: Option<String>,
    ) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let mut body = CommsOperation::new(kind.odata_type(), id.clone(), status);
        body.client_context = client_context.map_or(Nullable::Null, Nullable::Value);
        if kind.answers_with_result_info() {
            body.result_info = Nullable::Null;
        }
        Operation { kind, id, body }
    }

    /// With changes to the model's object (`participants`, `recordingLocation`…).
    pub(crate) fn with(mut self, change: impl FnOnce(&mut CommsOperation)) -> Self {
        change(&mut self.body);
        self
    }

    /// Ends it: `completed` (or `failed`) with `result`.
    pub(crate) fn finished(mut self, status: OperationStatus, result: ResultInfo) -> Self {
        self.body.status = status.into();
        self.body.result_info = result.into();
        self
    }

    /// The object as the action's answer shows it.
    pub(crate) fn answer_body(&self) -> Value {
        let mut body = self.body.clone();
        if let Some(context) = self.kind.odata_context() {
            body.extra
                .insert("@odata.context".into(), context.to_owned().into());
        }
        serde_json::to_value(body).unwrap_or(Value::Null)
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
        let mut body = self.body.clone();
        body.extra.insert("@odata.id".into(), url.clone().into());
        let etag = ETAG.fetch_add(1, Ordering::Relaxed);
        body.extra
            .insert("@odata.etag".into(), format!("W/\"{etag}\"").into());
        let mut n = CommsNotification::new(
            ChangeType::Deleted,
            url,
            ResourceData::Operation(Box::new(body)),
        );
        n.resource = format!("/app/calls/{call_id}/operations/{}", self.id).into();
        serde_json::to_value(CommsNotifications::new(vec![n])).unwrap_or(Value::Null)
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
        let record = Operation::new(OperationKind::Record, OperationStatus::Running, None);
        assert!(record.answer_body()["resultInfo"].is_null());
        assert!(record.answer_body()["clientContext"].is_null());
        let done = Operation::new(OperationKind::SendDtmfTones, OperationStatus::Running, None)
            .with(|o| o.completion_reason = "completedSuccessfully".to_owned().into())
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
        assert!(
            data["@odata.etag"]
                .as_str()
                .is_some_and(|e| e.starts_with("W/"))
        );
    }
}
