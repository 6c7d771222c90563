//! What the service tells the bot: the call's CloudEvents (posted to the call's `callbackUri`
//! as a JSON array) and Event Grid's events (the `IncomingCall` webhook and its subscription
//! validation handshake).
//!
//! Events may arrive late, twice or out of order: an [`Event`] carries its `id` (dedupe on
//! it) and the fields a state machine needs, and keeps the whole `data` object for the rest.
//! An event type this crate does not know is [`EventType::Other`], never an error.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::identifier::Identifier;
use crate::models::CallParticipant;

/// The Call Automation event types, by the name after `Microsoft.Communication.`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// The call is up.
    CallConnected,
    /// The call ended (for this connection).
    CallDisconnected,
    /// A create failed after its 201.
    CreateCallFailed,
    /// An answer failed after its 200.
    AnswerFailed,
    /// The roster, whole, with a sequence number.
    ParticipantsUpdated,
    /// An invited participant joined.
    AddParticipantSucceeded,
    /// An invitation failed.
    AddParticipantFailed,
    /// A participant was removed.
    RemoveParticipantSucceeded,
    /// A removal failed.
    RemoveParticipantFailed,
    /// A transfer target accepted.
    CallTransferAccepted,
    /// A transfer failed.
    CallTransferFailed,
    /// A play started.
    PlayStarted,
    /// A play finished.
    PlayCompleted,
    /// A play failed.
    PlayFailed,
    /// A play was cancelled.
    PlayCanceled,
    /// A recognize collected its input.
    RecognizeCompleted,
    /// A recognize failed (timeout, ...).
    RecognizeFailed,
    /// A recognize was cancelled.
    RecognizeCanceled,
    /// A key pressed, with continuous recognition on.
    ContinuousDtmfRecognitionToneReceived,
    /// Continuous recognition failed.
    ContinuousDtmfRecognitionToneFailed,
    /// Continuous recognition stopped.
    ContinuousDtmfRecognitionStopped,
    /// `sendDtmfTones` finished.
    SendDtmfTonesCompleted,
    /// `sendDtmfTones` failed.
    SendDtmfTonesFailed,
    /// Audio streaming started.
    MediaStreamingStarted,
    /// Audio streaming stopped.
    MediaStreamingStopped,
    /// Audio streaming failed.
    MediaStreamingFailed,
    /// A recording's state changed.
    RecordingStateChanged,
    /// A cancelled invitation.
    CancelAddParticipantSucceeded,
    /// A cancel that failed.
    CancelAddParticipantFailed,
    /// Anything else, by its full type name.
    Other(String),
}

const PREFIX: &str = "Microsoft.Communication.";

impl EventType {
    const KNOWN: [(&'static str, EventType); 29] = [
        ("CallConnected", EventType::CallConnected),
        ("CallDisconnected", EventType::CallDisconnected),
        ("CreateCallFailed", EventType::CreateCallFailed),
        ("AnswerFailed", EventType::AnswerFailed),
        ("ParticipantsUpdated", EventType::ParticipantsUpdated),
        (
            "AddParticipantSucceeded",
            EventType::AddParticipantSucceeded,
        ),
        ("AddParticipantFailed", EventType::AddParticipantFailed),
        (
            "RemoveParticipantSucceeded",
            EventType::RemoveParticipantSucceeded,
        ),
        (
            "RemoveParticipantFailed",
            EventType::RemoveParticipantFailed,
        ),
        ("CallTransferAccepted", EventType::CallTransferAccepted),
        ("CallTransferFailed", EventType::CallTransferFailed),
        ("PlayStarted", EventType::PlayStarted),
        ("PlayCompleted", EventType::PlayCompleted),
        ("PlayFailed", EventType::PlayFailed),
        ("PlayCanceled", EventType::PlayCanceled),
        ("RecognizeCompleted", EventType::RecognizeCompleted),
        ("RecognizeFailed", EventType::RecognizeFailed),
        ("RecognizeCanceled", EventType::RecognizeCanceled),
        (
            "ContinuousDtmfRecognitionToneReceived",
            EventType::ContinuousDtmfRecognitionToneReceived,
        ),
        (
            "ContinuousDtmfRecognitionToneFailed",
            EventType::ContinuousDtmfRecognitionToneFailed,
        ),
        (
            "ContinuousDtmfRecognitionStopped",
            EventType::ContinuousDtmfRecognitionStopped,
        ),
        ("SendDtmfTonesCompleted", EventType::SendDtmfTonesCompleted),
        ("SendDtmfTonesFailed", EventType::SendDtmfTonesFailed),
        ("MediaStreamingStarted", EventType::MediaStreamingStarted),
        ("MediaStreamingStopped", EventType::MediaStreamingStopped),
        ("MediaStreamingFailed", EventType::MediaStreamingFailed),
        ("RecordingStateChanged", EventType::RecordingStateChanged),
        (
            "CancelAddParticipantSucceeded",
            EventType::CancelAddParticipantSucceeded,
        ),
        (
            "CancelAddParticipantFailed",
            EventType::CancelAddParticipantFailed,
        ),
    ];

    /// The type from its full name (`Microsoft.Communication.CallConnected`).
    pub fn from_name(name: &str) -> Self {
        name.strip_prefix(PREFIX)
            .and_then(|short| {
                Self::KNOWN
                    .iter()
                    .find(|(n, _)| *n == short)
                    .map(|(_, t)| t.clone())
            })
            .unwrap_or_else(|| EventType::Other(name.to_owned()))
    }

    /// The full name.
    pub fn name(&self) -> String {
        match self {
            EventType::Other(name) => name.clone(),
            known => {
                let short = Self::KNOWN
                    .iter()
                    .find(|(_, t)| t == known)
                    .map(|(n, _)| *n)
                    .unwrap_or_default();
                format!("{PREFIX}{short}")
            }
        }
    }
}

/// An operation's outcome: `resultInformation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResultInformation {
    /// HTTP-like code (200, 400, 500...).
    #[serde(default)]
    pub code: u16,
    /// The service's sub-code (e.g. 8522 for a recognize timeout).
    #[serde(default)]
    pub sub_code: u32,
    /// What happened.
    #[serde(default)]
    pub message: String,
}

/// One CloudEvent as the service posts it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Unique per event: duplicates share it.
    pub id: String,
    /// `calling/callConnections/{callConnectionId}`.
    pub source: String,
    /// `Microsoft.Communication.…`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's data.
    #[serde(default)]
    pub data: Value,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `1.0`.
    pub specversion: String,
    /// `application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Same as `source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

impl CloudEvent {
    /// An event about `call_connection_id`; `data` gets the call's ids added.
    pub fn new(
        event_type: &EventType,
        call_connection_id: &str,
        server_call_id: &str,
        correlation_id: &str,
        mut data: Value,
    ) -> Self {
        if !data.is_object() {
            data = Value::Object(Default::default());
        }
        let name = event_type.name();
        if let Value::Object(map) = &mut data {
            map.insert("callConnectionId".into(), call_connection_id.into());
            map.insert("serverCallId".into(), server_call_id.into());
            map.insert("correlationId".into(), correlation_id.into());
            map.insert("publicEventType".into(), name.clone().into());
        }
        let source = format!("calling/callConnections/{call_connection_id}");
        CloudEvent {
            id: uuid::Uuid::new_v4().to_string(),
            subject: Some(source.clone()),
            source,
            event_type: name,
            data,
            time: Some(rfc3339(std::time::SystemTime::now())),
            specversion: "1.0".into(),
            datacontenttype: Some("application/json".into()),
        }
    }
}

/// An event the bot acts on: its type and the fields every event has.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The CloudEvent id (dedupe on it).
    pub id: String,
    /// What happened.
    pub event_type: EventType,
    /// The call connection.
    pub call_connection_id: String,
    /// The server call id.
    pub server_call_id: Option<String>,
    /// The request's context, for operation outcomes.
    pub operation_context: Option<String>,
    /// The outcome, for operation results and disconnections.
    pub result: Option<ResultInformation>,
    /// The whole `data` object.
    pub data: Value,
}

/// Why a callback body was refused.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// Not a JSON array (or object) of CloudEvents.
    #[error("not a CloudEvents batch: {0}")]
    NotCloudEvents(String),
    /// An event without `data.callConnectionId` (nor one in its `source`).
    #[error("event {0} names no call connection")]
    NoCallConnection(String),
}

impl Event {
    /// Reads one CloudEvent.
    pub fn from_cloud_event(event: CloudEvent) -> Result<Self, EventError> {
        let call_connection_id = event
            .data
            .get("callConnectionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                event
                    .source
                    .strip_prefix("calling/callConnections/")
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
            })
            .ok_or_else(|| EventError::NoCallConnection(event.id.clone()))?;
        let text = |name: &str| {
            event
                .data
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Ok(Event {
            event_type: EventType::from_name(&event.event_type),
            server_call_id: text("serverCallId"),
            operation_context: text("operationContext"),
            result: event
                .data
                .get("resultInformation")
                .and_then(|r| serde_json::from_value(r.clone()).ok()),
            call_connection_id,
            id: event.id,
            data: event.data,
        })
    }

    /// `ParticipantsUpdated`: the roster and its sequence number.
    pub fn participants(&self) -> Option<(Vec<CallParticipant>, u64)> {
        if self.event_type != EventType::ParticipantsUpdated {
            return None;
        }
        let list = serde_json::from_value(self.data.get("participants")?.clone()).ok()?;
        let sequence = self
            .data
            .get("sequenceNumber")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Some((list, sequence))
    }

    /// The participant an add/remove event is about.
    pub fn participant(&self) -> Option<Identifier> {
        serde_json::from_value(self.data.get("participant")?.clone()).ok()
    }

    /// `ContinuousDtmfRecognitionToneReceived`: the key (`5`, `#`...).
    pub fn tone(&self) -> Option<char> {
        let name = self.data.get("tone")?.as_str()?;
        crate::models::tone_key(name)
    }

    /// `RecognizeCompleted` with DTMF: the keys collected.
    pub fn recognized_tones(&self) -> Option<String> {
        let tones = self.data.get("dtmfResult")?.get("tones")?.as_array()?;
        tones
            .iter()
            .map(|t| t.as_str().and_then(crate::models::tone_key))
            .collect()
    }
}

/// Reads a callback body: a JSON array of CloudEvents (a single object is taken too). Events
/// that name no call connection are returned apart, for counting.
pub fn parse_batch(body: &[u8]) -> Result<(Vec<Event>, Vec<EventError>), EventError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| EventError::NotCloudEvents(e.to_string()))?;
    let items = match value {
        Value::Array(items) => items,
        object @ Value::Object(_) => vec![object],
        _ => {
            return Err(EventError::NotCloudEvents(
                "neither an array nor an object".into(),
            ));
        }
    };
    let mut events = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for item in items {
        let cloud: CloudEvent =
            serde_json::from_value(item).map_err(|e| EventError::NotCloudEvents(e.to_string()))?;
        match Event::from_cloud_event(cloud) {
            Ok(event) => events.push(event),
            Err(e) => refused.push(e),
        }
    }
    Ok((events, refused))
}

/// An Event Grid event (the Event Grid schema, as the `IncomingCall` subscription sends it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridEvent {
    /// Unique per event.
    pub id: String,
    /// The ACS resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// `/phonenumber/{number}`, `/communicationUser/{id}`...
    #[serde(default)]
    pub subject: String,
    /// The event's data.
    #[serde(default)]
    pub data: Value,
    /// `Microsoft.Communication.IncomingCall`, `Microsoft.EventGrid.SubscriptionValidationEvent`...
    pub event_type: String,
    /// When.
    #[serde(default)]
    pub event_time: String,
    /// `1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_version: Option<String>,
    /// `1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_version: Option<String>,
}

/// `Microsoft.Communication.IncomingCall`'s data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IncomingCallData {
    /// Who is called (the resource's number, an ACS user, a Teams resource account).
    pub to: Identifier,
    /// Who calls.
    pub from: Identifier,
    /// The call's id on the server.
    #[serde(default)]
    pub server_call_id: String,
    /// The caller's display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_display_name: Option<String>,
    /// What answer/reject/redirect quote.
    pub incoming_call_context: String,
    /// For support cases.
    #[serde(default)]
    pub correlation_id: String,
}

/// The event type of Event Grid's subscription validation.
pub const SUBSCRIPTION_VALIDATION: &str = "Microsoft.EventGrid.SubscriptionValidationEvent";
/// The event type of an incoming call.
pub const INCOMING_CALL: &str = "Microsoft.Communication.IncomingCall";

/// What an Event Grid webhook delivery asks of the bot.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// Prove the endpoint: answer `{"validationResponse": code}`.
    Validation {
        /// The code to echo.
        code: String,
    },
    /// Calls ringing the bot (a delivery may batch several).
    Incoming(Vec<IncomingCallData>),
}

/// Reads an Event Grid webhook body. Events of other types are skipped (and counted in the
/// second value); an `IncomingCall` whose data does not read is an error.
pub fn parse_delivery(body: &[u8]) -> Result<(Delivery, usize), EventError> {
    let events: Vec<EventGridEvent> =
        serde_json::from_slice(body).map_err(|e| EventError::NotCloudEvents(e.to_string()))?;
    if let Some(validation) = events
        .iter()
        .find(|e| e.event_type == SUBSCRIPTION_VALIDATION)
    {
        let code = validation
            .data
            .get("validationCode")
            .and_then(Value::as_str)
            .ok_or_else(|| EventError::NotCloudEvents("validation without a code".into()))?;
        return Ok((
            Delivery::Validation {
                code: code.to_owned(),
            },
            0,
        ));
    }
    let mut calls = Vec::new();
    let mut skipped = 0;
    for event in events {
        if event.event_type != INCOMING_CALL {
            skipped += 1;
            continue;
        }
        let data = serde_json::from_value(event.data)
            .map_err(|e| EventError::NotCloudEvents(format!("IncomingCall data: {e}")))?;
        calls.push(data);
    }
    Ok((Delivery::Incoming(calls), skipped))
}

/// RFC 3339 UTC with milliseconds, as the service dates its events.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let millis = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_millis())
        .unwrap_or(0);
    format!(
        "{}.{millis:03}Z",
        appmedia_signalling::callback::iso8601_utc(t)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_batch_of_cloud_events() {
        let connected = CloudEvent::new(
            &EventType::CallConnected,
            "c1",
            "s1",
            "corr",
            json!({"operationContext": "ctx"}),
        );
        let body = json!([connected, {
            "id": "e2", "source": "calling/callConnections/c1", "specversion": "1.0",
            "type": "Microsoft.Communication.ParticipantsUpdated",
            "data": {"callConnectionId": "c1", "sequenceNumber": 3, "participants": [
                {"identifier": {"rawId": "4:+1555", "kind": "phoneNumber", "phoneNumber": {"value": "+1555"}},
                 "isMuted": false, "isOnHold": false}]}
        }, {
            "id": "e3", "source": "calling/callConnections/c1", "specversion": "1.0",
            "type": "Microsoft.Communication.SomethingNew", "data": {}
        }, {
            "id": "e4", "source": "elsewhere", "specversion": "1.0",
            "type": "Microsoft.Communication.CallConnected", "data": {}
        }]);
        let (events, refused) = parse_batch(body.to_string().as_bytes()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(refused.len(), 1);
        assert_eq!(events[0].event_type, EventType::CallConnected);
        assert_eq!(events[0].operation_context.as_deref(), Some("ctx"));
        assert_eq!(events[0].server_call_id.as_deref(), Some("s1"));
        let (roster, seq) = events[1].participants().unwrap();
        assert_eq!(
            (roster[0].identifier.phone_number(), seq),
            (Some("+1555"), 3)
        );
        assert_eq!(events[1].call_connection_id, "c1", "from the source");
        assert_eq!(
            events[2].event_type,
            EventType::Other("Microsoft.Communication.SomethingNew".into())
        );
        assert!(parse_batch(b"{not json").is_err());
        assert!(parse_batch(b"42").is_err());
    }

    #[test]
    fn type_names_round_trip() {
        for (short, t) in EventType::KNOWN.iter() {
            assert_eq!(EventType::from_name(&t.name()), *t);
            assert!(t.name().ends_with(short));
        }
    }

    #[test]
    fn dtmf_results() {
        let tone = Event::from_cloud_event(CloudEvent::new(
            &EventType::ContinuousDtmfRecognitionToneReceived,
            "c",
            "s",
            "x",
            json!({"tone": "pound", "sequenceId": 1}),
        ))
        .unwrap();
        assert_eq!(tone.tone(), Some('#'));
        let recognized = Event::from_cloud_event(CloudEvent::new(
            &EventType::RecognizeCompleted,
            "c",
            "s",
            "x",
            json!({"recognitionType": "dtmf", "dtmfResult": {"tones": ["one", "two", "pound"]}}),
        ))
        .unwrap();
        assert_eq!(recognized.recognized_tones().as_deref(), Some("12#"));
    }

    #[test]
    fn event_grid_validation_and_incoming_calls() {
        let validation = json!([{
            "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66", "topic": "/subscriptions/x",
            "subject": "", "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                                     "validationUrl": "https://rp-eastus2.eventgrid.azure.net/..."},
            "eventType": SUBSCRIPTION_VALIDATION, "eventTime": "2024-01-01T00:00:00Z",
            "metadataVersion": "1", "dataVersion": "1"}]);
        assert_eq!(
            parse_delivery(validation.to_string().as_bytes()).unwrap().0,
            Delivery::Validation {
                code: "512d38b6-c7b8-40c8-89fe-f46f9e9622b6".into()
            }
        );
        let incoming = json!([{
            "id": "1", "subject": "/phonenumber/18005550100", "eventType": INCOMING_CALL,
            "eventTime": "2024-01-01T00:00:00Z", "data": {
                "to": {"kind": "phoneNumber", "rawId": "4:+18005550100", "phoneNumber": {"value": "+18005550100"}},
                "from": {"kind": "phoneNumber", "rawId": "4:+14255550123", "phoneNumber": {"value": "+14255550123"}},
                "serverCallId": "srv", "callerDisplayName": "", "incomingCallContext": "eyJ...",
                "correlationId": "corr"}},
            {"id": "2", "eventType": "Microsoft.Communication.CallEnded", "data": {}}]);
        let (Delivery::Incoming(calls), skipped) =
            parse_delivery(incoming.to_string().as_bytes()).unwrap()
        else {
            panic!("incoming")
        };
        assert_eq!((calls.len(), skipped), (1, 1));
        assert_eq!(calls[0].from, Identifier::phone("+14255550123"));
        assert_eq!(calls[0].incoming_call_context, "eyJ...");
        let broken = json!([{"id": "1", "eventType": INCOMING_CALL, "data": {"to": 1}}]);
        assert!(parse_delivery(broken.to_string().as_bytes()).is_err());
    }

    #[test]
    fn rfc3339_dates() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(std::time::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
