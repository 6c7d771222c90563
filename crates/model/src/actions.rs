//! The bodies of the call-control actions (`answer`, `reject`, `redirect`, `transfer`,
//! `participants/invite`, `mute`, `playPrompt`, `recordResponse`, ...) and the
//! `commsOperation` most of them answer with.
//!
//! Every body keeps the properties it does not name in `extra`, so a parameter Graph
//! adds later can be sent (set it in `extra`) and a captured request round-trips.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    CallOptions, InvitationParticipantInfo, MediaConfig, MediaInfo, Modality, Nullable,
    OperationStatus, ParticipantInfo, PlayPromptCompletionReason, RecordCompletionReason,
    RecordingStatus, RejectReason, ResultInfo, ScreenSharingRole, SendDtmfCompletionReason, Tone,
};

/// Body of `POST /communications/calls/{id}/answer`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AnswerRequest {
    /// Where the service posts this call's notifications (https).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// Who hosts the media (required by the service).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub media_config: Nullable<MediaConfig>,
    /// The modalities the bot accepts (required by the service).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub accepted_modalities: Nullable<Vec<Modality>>,
    /// How many participants the bot can handle (policy-based recording).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participant_capacity: Nullable<i32>,
    /// `incomingCallOptions`.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub call_options: Nullable<CallOptions>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AnswerRequest {
    /// An answer with the three properties the service requires.
    pub fn new(
        callback_uri: impl Into<String>,
        media_config: MediaConfig,
        accepted_modalities: Vec<Modality>,
    ) -> Self {
        AnswerRequest {
            callback_uri: callback_uri.into().into(),
            media_config: media_config.into(),
            accepted_modalities: accepted_modalities.into(),
            ..Default::default()
        }
    }

    /// True when the bot hosts the media (the answer then needs `Calls.AccessMedia.All`).
    pub fn is_app_hosted(&self) -> bool {
        self.media_config
            .value()
            .is_some_and(MediaConfig::is_app_hosted)
    }
}

/// Body of `POST /communications/calls/{id}/reject`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RejectRequest {
    /// Why (`none`, `busy`, `forbidden`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub reason: Nullable<RejectReason>,
    /// Where to post notifications about the rejected call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RejectRequest {
    /// A rejection for `reason`.
    pub fn new(reason: RejectReason) -> Self {
        RejectRequest {
            reason: reason.into(),
            ..Default::default()
        }
    }
}

/// Body of `POST /communications/calls/{id}/redirect`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RedirectRequest {
    /// Where the call goes (1 to 25 targets; several make a simultaneous ring).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub targets: Nullable<Vec<InvitationParticipantInfo>>,
    /// Ringing timeout in seconds (15 to 90).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub timeout: Nullable<i32>,
    /// Where to post notifications about the redirected call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// Properties this model does not name (`maskCallee`, `maskCaller`, ...), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RedirectRequest {
    /// A redirect to `targets`.
    pub fn new(targets: Vec<InvitationParticipantInfo>) -> Self {
        RedirectRequest {
            targets: targets.into(),
            ..Default::default()
        }
    }

    /// The targets as a slice (absent and `null` give an empty slice).
    pub fn targets(&self) -> &[InvitationParticipantInfo] {
        self.targets.value().map(Vec::as_slice).unwrap_or_default()
    }
}

/// Body of `POST /communications/calls/{id}/transfer`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TransferRequest {
    /// Who the call goes to; `replacesCallId` set makes it a consultative transfer.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub transfer_target: Nullable<InvitationParticipantInfo>,
    /// Who is transferred (group calls and meetings only).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub transferee: Nullable<ParticipantInfo>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TransferRequest {
    /// A transfer to `transfer_target`.
    pub fn new(transfer_target: InvitationParticipantInfo) -> Self {
        TransferRequest {
            transfer_target: transfer_target.into(),
            ..Default::default()
        }
    }
}

/// Body of `POST /communications/calls/{id}/participants/invite`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InviteParticipantsRequest {
    /// Who to invite (at least one).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participants: Nullable<Vec<InvitationParticipantInfo>>,
    /// Echoed in the operation and its notifications (at most 256 characters).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl InviteParticipantsRequest {
    /// An invitation of `participants`.
    pub fn new(participants: Vec<InvitationParticipantInfo>) -> Self {
        InviteParticipantsRequest {
            participants: participants.into(),
            ..Default::default()
        }
    }

    /// The participants as a slice (absent and `null` give an empty slice).
    pub fn participants(&self) -> &[InvitationParticipantInfo] {
        self.participants
            .value()
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// Body of the actions whose only parameter is `clientContext`: `mute`, `unmute`,
/// participant `mute`, `subscribeToTone`, `cancelMediaProcessing`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientContextRequest {
    /// Echoed in the operation and its notifications (at most 256 characters).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ClientContextRequest {
    /// A body with `clientContext` when one is given, else `{}`.
    pub fn new(client_context: Option<&str>) -> Self {
        ClientContextRequest {
            client_context: client_context
                .map_or(Nullable::Absent, |c| Nullable::Value(c.to_owned())),
            extra: Map::new(),
        }
    }
}

/// Body of `mute`, `unmute` and participant `mute`.
pub type MuteRequest = ClientContextRequest;

/// `#microsoft.graph.mediaPrompt`: an audio file the service plays.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MediaPrompt {
    /// `@odata.type`, normally `#microsoft.graph.mediaPrompt`; kept as sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Where the audio is and the caller's id for it.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub media_info: Nullable<MediaInfo>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MediaPrompt {
    /// The `@odata.type` of a media prompt.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.mediaPrompt";

    /// A prompt playing `media_info`, annotated as Graph expects.
    pub fn new(media_info: MediaInfo) -> Self {
        MediaPrompt {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            media_info: media_info.into(),
            extra: Map::new(),
        }
    }
}

/// A prompt of `playPrompt` and `recordResponse`; v1.0 has one kind, [`MediaPrompt`].
pub type Prompt = MediaPrompt;

/// Body of `POST /communications/calls/{id}/playPrompt`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PlayPromptRequest {
    /// The prompts, played in order (at most 20).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub prompts: Nullable<Vec<Prompt>>,
    /// Echoed in the operation and its notifications (at most 256 characters).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Properties this model does not name (`loop`, ...), kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PlayPromptRequest {
    /// A request playing `prompts`.
    pub fn new(prompts: Vec<Prompt>) -> Self {
        PlayPromptRequest {
            prompts: prompts.into(),
            ..Default::default()
        }
    }

    /// Sets the client context.
    pub fn with_client_context(mut self, client_context: impl Into<String>) -> Self {
        self.client_context = client_context.into().into();
        self
    }
}

/// Body of `POST /communications/calls/{id}/recordResponse`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RecordResponseRequest {
    /// Prompts played before recording.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub prompts: Nullable<Vec<Prompt>>,
    /// Start recording when the caller speaks over the prompts.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub barge_in_allowed: Nullable<bool>,
    /// Give up when nobody speaks for this long at the start (seconds).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub initial_silence_timeout_in_seconds: Nullable<i32>,
    /// Stop after this much silence once speech started (seconds).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub max_silence_timeout_in_seconds: Nullable<i32>,
    /// Longest recording (seconds).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub max_record_duration_in_seconds: Nullable<i32>,
    /// Play a beep before recording.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub play_beep: Nullable<bool>,
    /// DTMF keys that end the recording (`"#"`, `"1"`, `"*"`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub stop_tones: Nullable<Vec<String>>,
    /// Echoed in the operation and its notifications (at most 256 characters).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RecordResponseRequest {
    /// A recording of at most `max_record_duration_in_seconds`; every other parameter
    /// is left to the service's default.
    pub fn new(max_record_duration_in_seconds: i32) -> Self {
        RecordResponseRequest {
            max_record_duration_in_seconds: max_record_duration_in_seconds.into(),
            ..Default::default()
        }
    }
}

/// Body of `POST /communications/calls/{id}/sendDtmfTones`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SendDtmfTonesRequest {
    /// The tones, in order (at least one).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub tones: Nullable<Vec<Tone>>,
    /// Pause between tones, in milliseconds.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub delay_between_tones_ms: Nullable<i32>,
    /// Echoed in the operation and its notifications (at most 256 characters).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SendDtmfTonesRequest {
    /// A request sending `tones`.
    pub fn new(tones: Vec<Tone>) -> Self {
        SendDtmfTonesRequest {
            tones: tones.into(),
            ..Default::default()
        }
    }

    /// The tones as a slice (absent and `null` give an empty slice).
    pub fn tones(&self) -> &[Tone] {
        self.tones.value().map(Vec::as_slice).unwrap_or_default()
    }
}

/// Body of `POST /communications/calls/{id}/updateRecordingStatus`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UpdateRecordingStatusRequest {
    /// The bot's recording status.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub status: Nullable<RecordingStatus>,
    /// Echoed in the operation and its notifications (required by the service).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl UpdateRecordingStatusRequest {
    /// A status update with its client context.
    pub fn new(status: RecordingStatus, client_context: impl Into<String>) -> Self {
        UpdateRecordingStatusRequest {
            status: status.into(),
            client_context: client_context.into().into(),
            extra: Map::new(),
        }
    }
}

/// Body of `POST /communications/calls/{id}/changeScreenSharingRole`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChangeScreenSharingRoleRequest {
    /// `viewer` or `sharer`.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub role: Nullable<ScreenSharingRole>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChangeScreenSharingRoleRequest {
    /// A request for `role`.
    pub fn new(role: ScreenSharingRole) -> Self {
        ChangeScreenSharingRoleRequest {
            role: role.into(),
            extra: Map::new(),
        }
    }
}

/// `#microsoft.graph.commsOperation` and every type derived from it
/// (`playPromptOperation`, `recordOperation`, `inviteParticipantsOperation`,
/// `muteParticipantOperation`, `unmuteParticipantOperation`, `subscribeToToneOperation`,
/// `cancelMediaProcessingOperation`, `sendDtmfTonesOperation`,
/// `updateRecordingStatusOperation`, `startHoldMusicOperation`, ...).
///
/// One struct rather than one per type: the subtypes differ by one or two properties,
/// the bot mostly needs `status`, `clientContext` and `resultInfo`, and a subtype Graph
/// adds later still parses. `@odata.type` says which one it is ([`CommsOperation::kind`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CommsOperation {
    /// `@odata.type`, e.g. `#microsoft.graph.playPromptOperation`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// The operation id (the last segment of `/communications/calls/{id}/operations/{op}`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Not started, running, completed, failed.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub status: Nullable<OperationStatus>,
    /// The client context of the request that started the operation.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub client_context: Nullable<String>,
    /// The outcome (set when the operation ends).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub result_info: Nullable<ResultInfo>,
    /// Why a play-prompt, record or send-DTMF operation ended; its values depend on the
    /// kind (see the typed accessors).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub completion_reason: Nullable<String>,
    /// `recordOperation`: where the recording is.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub recording_location: Nullable<String>,
    /// `recordOperation`: the token that fetches the recording.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub recording_access_token: Nullable<String>,
    /// `inviteParticipantsOperation`: who was invited.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participants: Nullable<Vec<InvitationParticipantInfo>>,
    /// Properties this model does not name (`@odata.id`, `@odata.etag`, ...), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The namespace prefix of every `@odata.type`.
const GRAPH_NAMESPACE: &str = "#microsoft.graph.";

impl CommsOperation {
    /// `#microsoft.graph.commsOperation`.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.commsOperation";
    /// `#microsoft.graph.playPromptOperation`.
    pub const PLAY_PROMPT: &'static str = "#microsoft.graph.playPromptOperation";
    /// `#microsoft.graph.recordOperation`.
    pub const RECORD: &'static str = "#microsoft.graph.recordOperation";
    /// `#microsoft.graph.inviteParticipantsOperation`.
    pub const INVITE_PARTICIPANTS: &'static str = "#microsoft.graph.inviteParticipantsOperation";
    /// `#microsoft.graph.muteParticipantOperation`.
    pub const MUTE_PARTICIPANT: &'static str = "#microsoft.graph.muteParticipantOperation";
    /// `#microsoft.graph.unmuteParticipantOperation`.
    pub const UNMUTE_PARTICIPANT: &'static str = "#microsoft.graph.unmuteParticipantOperation";
    /// `#microsoft.graph.subscribeToToneOperation`.
    pub const SUBSCRIBE_TO_TONE: &'static str = "#microsoft.graph.subscribeToToneOperation";
    /// `#microsoft.graph.cancelMediaProcessingOperation`.
    pub const CANCEL_MEDIA_PROCESSING: &'static str =
        "#microsoft.graph.cancelMediaProcessingOperation";
    /// `#microsoft.graph.sendDtmfTonesOperation`.
    pub const SEND_DTMF_TONES: &'static str = "#microsoft.graph.sendDtmfTonesOperation";
    /// `#microsoft.graph.updateRecordingStatusOperation`.
    pub const UPDATE_RECORDING_STATUS: &'static str =
        "#microsoft.graph.updateRecordingStatusOperation";
    /// `#microsoft.graph.startHoldMusicOperation`.
    pub const START_HOLD_MUSIC: &'static str = "#microsoft.graph.startHoldMusicOperation";
    /// `#microsoft.graph.stopHoldMusicOperation`.
    pub const STOP_HOLD_MUSIC: &'static str = "#microsoft.graph.stopHoldMusicOperation";

    /// An operation of `odata_type` (one of the constants above) with an id and a status.
    pub fn new(
        odata_type: impl Into<String>,
        id: impl Into<String>,
        status: OperationStatus,
    ) -> Self {
        CommsOperation {
            odata_type: odata_type.into().into(),
            id: id.into().into(),
            status: status.into(),
            ..Default::default()
        }
    }

    /// The `@odata.type` without `#microsoft.graph.`: `playPromptOperation`, `recordOperation`, ...
    /// (`None` when the object has no `@odata.type`).
    pub fn kind(&self) -> Option<&str> {
        let odata_type = self.odata_type.value()?;
        Some(
            odata_type
                .strip_prefix(GRAPH_NAMESPACE)
                .unwrap_or(odata_type),
        )
    }

    /// True when `@odata.type` names a commsOperation type: `commsOperation` itself or one
    /// ending in `Operation` (how `resourceData` of a notification is recognised).
    pub fn is_operation_type(odata_type: &str) -> bool {
        odata_type.starts_with(GRAPH_NAMESPACE) && odata_type.ends_with("Operation")
    }

    /// The status, read without regard to case: Graph's own examples answer
    /// `participants/invite` with `"status": "Running"`, which the enum keeps verbatim as
    /// `Unknown("Running")` (so it is written back as it came); this reads it as `Running`.
    pub fn effective_status(&self) -> Option<OperationStatus> {
        match self.status.value()? {
            OperationStatus::Unknown(other) => Some(
                [
                    OperationStatus::NotStarted,
                    OperationStatus::Running,
                    OperationStatus::Completed,
                    OperationStatus::Failed,
                ]
                .into_iter()
                .find(|known| known.as_str().eq_ignore_ascii_case(other))
                .unwrap_or_else(|| OperationStatus::Unknown(other.clone())),
            ),
            known => Some(known.clone()),
        }
    }

    /// True once the operation has completed or failed.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.effective_status(),
            Some(OperationStatus::Completed | OperationStatus::Failed)
        )
    }

    /// `completionReason` read as a play-prompt one.
    pub fn play_prompt_completion_reason(&self) -> Option<PlayPromptCompletionReason> {
        self.completion_reason
            .value()
            .map(|r| PlayPromptCompletionReason::from_graph(r))
    }

    /// `completionReason` read as a record one.
    pub fn record_completion_reason(&self) -> Option<RecordCompletionReason> {
        self.completion_reason
            .value()
            .map(|r| RecordCompletionReason::from_graph(r))
    }

    /// `completionReason` read as a send-DTMF one.
    pub fn send_dtmf_completion_reason(&self) -> Option<SendDtmfCompletionReason> {
        self.completion_reason
            .value()
            .map(|r| SendDtmfCompletionReason::from_graph(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kind_strips_the_namespace() {
        let op = CommsOperation::new(CommsOperation::RECORD, "op1", OperationStatus::Running);
        assert_eq!(op.kind(), Some("recordOperation"));
        assert!(!op.is_finished());
        assert_eq!(CommsOperation::default().kind(), None);
        let shouted: CommsOperation =
            serde_json::from_value(json!({"status": "Completed"})).unwrap();
        assert_eq!(
            shouted.status.value(),
            Some(&OperationStatus::Unknown("Completed".into()))
        );
        assert_eq!(shouted.effective_status(), Some(OperationStatus::Completed));
        assert!(shouted.is_finished());
        assert!(CommsOperation::is_operation_type(
            CommsOperation::ODATA_TYPE
        ));
        assert!(CommsOperation::is_operation_type(
            "#microsoft.graph.futureThingOperation"
        ));
        assert!(!CommsOperation::is_operation_type("#microsoft.graph.call"));
    }

    #[test]
    fn client_context_body_is_empty_without_a_context() {
        assert_eq!(
            serde_json::to_value(ClientContextRequest::new(None)).unwrap(),
            json!({})
        );
        assert_eq!(
            serde_json::to_value(MuteRequest::new(Some("ctx"))).unwrap(),
            json!({"clientContext": "ctx"})
        );
    }

    #[test]
    fn completion_reasons_are_typed_per_kind() {
        let op: CommsOperation = serde_json::from_value(json!({
            "@odata.type": "#microsoft.graph.recordOperation",
            "status": "completed",
            "completionReason": "stopToneDetected"
        }))
        .unwrap();
        assert!(op.is_finished());
        assert_eq!(
            op.record_completion_reason(),
            Some(RecordCompletionReason::StopToneDetected)
        );
    }

    #[test]
    fn answer_knows_app_hosted_media() {
        let answer = AnswerRequest::new(
            "https://bot.contoso.com/callback",
            MediaConfig::AppHosted(crate::AppHostedMediaConfig::new("{}")),
            vec![Modality::Audio],
        );
        assert!(answer.is_app_hosted());
        assert!(!AnswerRequest::default().is_app_hosted());
    }
}
