//! The Call Automation REST resources: request bodies and responses, as the service's API
//! (`calling/callConnections`, `calling/recordings`) names them.
//!
//! Optional fields are left out when empty, and every response type reads fields it does not
//! know without complaint, so a newer service version does not break an older bot.

use serde::{Deserialize, Serialize};

use crate::identifier::Identifier;

/// A phone number as `sourceCallerIdNumber` carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumber {
    /// E.164.
    pub value: String,
}

/// How the service streams the call's audio to the bot (`mediaStreamingOptions`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaStreamingOptions {
    /// The bot's WebSocket: `wss://…` (plain `ws://` on loopback only, with the emulator).
    pub transport_url: String,
    /// `websocket`.
    pub transport_type: String,
    /// `audio`.
    pub content_type: String,
    /// `mixed` or `unmixed`.
    pub audio_channel_type: AudioChannelType,
    /// Stream from the moment the call connects (else `startMediaStreaming` later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_media_streaming: Option<bool>,
    /// The bot may send audio back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_bidirectional: Option<bool>,
    /// The PCM format both ways.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_format: Option<AudioFormat>,
    /// Key presses travel on the socket too (`DtmfData`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_dtmf_tones: Option<bool>,
}

impl MediaStreamingOptions {
    /// Bidirectional audio over the bot's WebSocket, started with the call.
    pub fn bidirectional(
        transport_url: impl Into<String>,
        channels: AudioChannelType,
        format: AudioFormat,
    ) -> Self {
        MediaStreamingOptions {
            transport_url: transport_url.into(),
            transport_type: "websocket".into(),
            content_type: "audio".into(),
            audio_channel_type: channels,
            start_media_streaming: Some(true),
            enable_bidirectional: Some(true),
            audio_format: Some(format),
            enable_dtmf_tones: None,
        }
    }
}

/// Mixed audio (one stream) or one stream per participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AudioChannelType {
    /// Everyone mixed.
    Mixed,
    /// One stream per participant.
    Unmixed,
}

/// The streamed PCM format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AudioFormat {
    /// 16 kHz s16 mono. (The spec spells it `pcm16KMono`; samples send `Pcm16KMono`.)
    #[serde(rename = "pcm16KMono", alias = "Pcm16KMono")]
    Pcm16KMono,
    /// 24 kHz s16 mono.
    #[serde(rename = "pcm24KMono", alias = "Pcm24KMono")]
    Pcm24KMono,
}

impl AudioFormat {
    /// The sample rate.
    pub fn sample_rate(self) -> u32 {
        match self {
            AudioFormat::Pcm16KMono => 16_000,
            AudioFormat::Pcm24KMono => 24_000,
        }
    }
}

/// `POST /calling/callConnections`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCallRequest {
    /// Who to call (several: a group call).
    pub targets: Vec<Identifier>,
    /// The caller id shown to phone targets (the resource's number); required for PSTN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_caller_id_number: Option<PhoneNumber>,
    /// The display name shown to targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_display_name: Option<String>,
    /// Place the call on behalf of a Teams resource account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams_app_source: Option<Identifier>,
    /// Where the call's events go.
    pub callback_uri: String,
    /// Echoed in the call's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    /// Audio streaming to the bot's WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_streaming_options: Option<MediaStreamingOptions>,
}

/// `POST /calling/callConnections:answer`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnswerCallRequest {
    /// The `IncomingCall` event's context.
    pub incoming_call_context: String,
    /// Where the call's events go.
    pub callback_uri: String,
    /// Echoed in the call's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
    /// Audio streaming to the bot's WebSocket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_streaming_options: Option<MediaStreamingOptions>,
}

/// Why an incoming call is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum RejectReason {
    /// No reason given.
    #[default]
    None,
    /// The callee is busy.
    Busy,
    /// The callee refuses.
    Forbidden,
}

/// `POST /calling/callConnections:reject`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RejectCallRequest {
    /// The `IncomingCall` event's context.
    pub incoming_call_context: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_reject_reason: Option<RejectReason>,
}

/// `POST /calling/callConnections:redirect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectCallRequest {
    /// The `IncomingCall` event's context.
    pub incoming_call_context: String,
    /// Where the call goes instead.
    pub target: Identifier,
}

/// A call connection's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CallConnectionState {
    /// Not known.
    Unknown,
    /// Ringing or setting up.
    Connecting,
    /// Up.
    Connected,
    /// Being transferred.
    Transferring,
    /// The transfer target accepted.
    TransferAccepted,
    /// Ending.
    Disconnecting,
    /// Ended.
    Disconnected,
    /// A state a newer service reports.
    #[serde(other)]
    Other,
}

/// The media streaming subscription of a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MediaStreamingSubscription {
    /// Its id (the socket's `AudioMetadata.subscriptionId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `active`, `inactive`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `audio`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscribed_content_types: Vec<String>,
}

/// A call connection (the answer of create, answer and get).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallConnectionProperties {
    /// This bot's connection to the call: the id of every later request.
    pub call_connection_id: String,
    /// The call's id on the server (recording locates the call by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_call_id: Option<String>,
    /// Who was called.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Identifier>,
    /// The connection's state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_connection_state: Option<CallConnectionState>,
    /// Where the call's events go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_uri: Option<String>,
    /// The caller id shown to phone targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_caller_id_number: Option<PhoneNumber>,
    /// The display name shown to targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_display_name: Option<String>,
    /// The caller (the bot's identity, or the remote caller of an answered call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Identifier>,
    /// For support cases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Audio streaming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_streaming_subscription: Option<MediaStreamingSubscription>,
}

/// A participant of a call connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallParticipant {
    /// Who.
    pub identifier: Identifier,
    /// Muted by the server.
    #[serde(default)]
    pub is_muted: bool,
    /// On hold.
    #[serde(default)]
    pub is_on_hold: bool,
}

/// `GET …/participants`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantList {
    /// This page.
    pub value: Vec<CallParticipant>,
    /// The next page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
}

/// `POST …:transferToParticipant`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransferRequest {
    /// Where the call goes.
    pub target_participant: Identifier,
    /// In a group call, who is transferred.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transferee: Option<Identifier>,
    /// Echoed in the transfer's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …/participants:add`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantRequest {
    /// Who joins.
    pub participant_to_add: Identifier,
    /// The caller id a phone participant sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_caller_id_number: Option<PhoneNumber>,
    /// How long the invitation rings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_timeout_in_seconds: Option<u32>,
    /// Echoed in the add's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// The answer to an add.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantResponse {
    /// The invited participant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<CallParticipant>,
    /// Cancels the invitation while it rings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invitation_id: Option<String>,
    /// The request's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …/participants:remove`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoveParticipantRequest {
    /// Who leaves.
    pub participant_to_remove: Identifier,
    /// Echoed in the remove's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …/participants:mute`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MuteParticipantsRequest {
    /// Who is muted (one at a time, says the service).
    pub target_participants: Vec<Identifier>,
    /// The request's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// The answer of the actions that only echo a context (transfer, remove, mute, DTMF).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct OperationResponse {
    /// The request's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// What the service plays.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlaySource {
    /// `file` (this crate's only kind; `text` and `ssml` need Azure AI Speech).
    pub kind: String,
    /// The file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileSource>,
}

/// A file to play, by URL (WAV 16 kHz mono, or MP3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSource {
    /// Its URL.
    pub uri: String,
}

impl PlaySource {
    /// A file by URL.
    pub fn file(uri: impl Into<String>) -> Self {
        PlaySource {
            kind: "file".into(),
            file: Some(FileSource { uri: uri.into() }),
        }
    }
}

/// Play options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PlayOptions {
    /// Play until cancelled.
    #[serde(rename = "loop")]
    pub looped: bool,
}

/// `POST …:play`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlayRequest {
    /// What to play, in order.
    pub play_sources: Vec<PlaySource>,
    /// Who hears it; empty: everyone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub play_to: Vec<Identifier>,
    /// Options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub play_options: Option<PlayOptions>,
    /// Echoed in the play's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …:sendDtmfTones`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendDtmfTonesRequest {
    /// Tone names: `zero`…`nine`, `asterisk`, `pound`, `a`…`d`.
    pub tones: Vec<String>,
    /// Who hears them.
    pub target_participant: Identifier,
    /// Echoed in the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// `POST …:startContinuousDtmfRecognition` and `…:stopContinuousDtmfRecognition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContinuousDtmfRecognitionRequest {
    /// Whose keys.
    pub target_participant: Identifier,
    /// Echoed in the events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_context: Option<String>,
}

/// Where a recording finds its call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallLocator {
    /// `serverCallLocator` (or `groupCallLocator`).
    pub kind: String,
    /// The server call id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_call_id: Option<String>,
}

/// `POST /calling/recordings`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartRecordingRequest {
    /// The call.
    pub call_locator: CallLocator,
    /// Where `RecordingStateChanged` goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_state_callback_uri: Option<String>,
    /// `audio` or `audioVideo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_content_type: Option<String>,
    /// `mixed` or `unmixed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_channel_type: Option<String>,
    /// `wav`, `mp3`, `mp4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_format_type: Option<String>,
}

/// A recording's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingStateResponse {
    /// Its id (stop, pause, resume).
    pub recording_id: String,
    /// `active` or `inactive`.
    pub recording_state: String,
}

/// The service's error body: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A machine-readable code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ErrorResponse {
    /// An error body.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorResponse {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// A DTMF key as Call Automation names it (`sendDtmfTones`, recognition results).
pub fn tone_name(key: char) -> Option<&'static str> {
    Some(match key.to_ascii_lowercase() {
        '0' => "zero",
        '1' => "one",
        '2' => "two",
        '3' => "three",
        '4' => "four",
        '5' => "five",
        '6' => "six",
        '7' => "seven",
        '8' => "eight",
        '9' => "nine",
        '*' => "asterisk",
        '#' => "pound",
        'a' => "a",
        'b' => "b",
        'c' => "c",
        'd' => "d",
        _ => return None,
    })
}

/// The key of a tone name (`five` → `5`).
pub fn tone_key(name: &str) -> Option<char> {
    "0123456789*#abcd"
        .chars()
        .find(|k| tone_name(*k).is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|k| k.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pstn_create_with_bidirectional_streaming() {
        let request = CreateCallRequest {
            targets: vec![Identifier::phone("+14255550123")],
            source_caller_id_number: Some(PhoneNumber {
                value: "+18005550100".into(),
            }),
            source_display_name: None,
            teams_app_source: None,
            callback_uri: "https://bot.example/acs/events".into(),
            operation_context: None,
            media_streaming_options: Some(MediaStreamingOptions::bidirectional(
                "wss://bot.example/acs/media",
                AudioChannelType::Mixed,
                AudioFormat::Pcm16KMono,
            )),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({
                "targets": [{"rawId": "4:+14255550123", "kind": "phoneNumber",
                             "phoneNumber": {"value": "+14255550123"}}],
                "sourceCallerIdNumber": {"value": "+18005550100"},
                "callbackUri": "https://bot.example/acs/events",
                "mediaStreamingOptions": {
                    "transportUrl": "wss://bot.example/acs/media", "transportType": "websocket",
                    "contentType": "audio", "audioChannelType": "mixed",
                    "startMediaStreaming": true, "enableBidirectional": true,
                    "audioFormat": "pcm16KMono"}
            })
        );
    }

    #[test]
    fn responses_tolerate_fields_they_do_not_know() {
        let call: CallConnectionProperties = serde_json::from_value(json!({
            "callConnectionId": "401f3500-62cd-4b3c-b4a8-0f4d5a4c1a1e",
            "serverCallId": "aHR0cHM6Ly9hcGk",
            "callConnectionState": "somethingNew",
            "answeredBy": {"rawId": "8:acs:x", "communicationUser": {"id": "8:acs:x"}},
            "futureField": 1
        }))
        .unwrap();
        assert_eq!(call.call_connection_state, Some(CallConnectionState::Other));
        assert!(call.targets.is_empty());
    }

    #[test]
    fn tone_names_both_ways() {
        assert_eq!(tone_name('5'), Some("five"));
        assert_eq!(tone_name('#'), Some("pound"));
        assert_eq!(tone_name('x'), None);
        assert_eq!(tone_key("asterisk"), Some('*'));
        assert_eq!(tone_key("B"), Some('B'));
        assert_eq!(tone_key("eleven"), None);
        for key in "0123456789*#ABCD".chars() {
            assert_eq!(tone_key(tone_name(key).unwrap()), Some(key));
        }
    }
}
