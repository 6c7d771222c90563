//! `#microsoft.graph.call` and the small types only a call uses.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    CallDirection, CallState, CallTranscriptionState, ChatInfo, IdentitySet,
    InvitationParticipantInfo, MediaConfig, MediaState, MeetingInfo, Modality, Nullable,
    ParticipantInfo, RoutingPolicy, RoutingType, Tone,
};

/// `#microsoft.graph.call`: the body of a create-call request, of its 201 response, of
/// `GET /communications/calls/{id}`, and the `resourceData` of call-state notifications.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Call {
    /// `@odata.type`, normally `#microsoft.graph.call`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// `@odata.context` of a response.
    #[serde(rename = "@odata.context", skip_serializing_if = "Nullable::is_absent")]
    pub odata_context: Nullable<String>,
    /// The call id (assigned by the service).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Where the call is in its life.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub state: Nullable<CallState>,
    /// Incoming or outgoing.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub direction: Nullable<CallDirection>,
    /// Where the service posts notifications for this call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub callback_uri: Nullable<String>,
    /// A unique id for all calls of one conversation (peer-to-peer calls escalated to a group keep it).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub call_chain_id: Nullable<String>,
    /// How the call was routed.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub call_routes: Nullable<Vec<CallRoute>>,
    /// The originator.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub source: Nullable<ParticipantInfo>,
    /// Who is invited.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub targets: Nullable<Vec<InvitationParticipantInfo>>,
    /// Modalities asked for.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub requested_modalities: Nullable<Vec<Modality>>,
    /// Modalities in use.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub active_modalities: Nullable<Vec<Modality>>,
    /// Who hosts the media.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub media_config: Nullable<MediaConfig>,
    /// Media state of the call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub media_state: Nullable<CallMediaState>,
    /// The meeting's chat thread.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub chat_info: Nullable<ChatInfo>,
    /// The meeting joined.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub meeting_info: Nullable<MeetingInfo>,
    /// Meeting capabilities (deprecated by Graph; kept).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub meeting_capability: Nullable<MeetingCapability>,
    /// The tenant of the call (required for meetings and PSTN).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub tenant_id: Nullable<String>,
    /// The bot's participant id in this call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub my_participant_id: Nullable<String>,
    /// Subject (group calls).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub subject: Nullable<String>,
    /// Why the call ended.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub termination_reason: Nullable<String>,
    /// Ringing timeout for outgoing peer-to-peer calls (at most 115 s).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub ringing_timeout_in_seconds: Nullable<u32>,
    /// Result of the call (set when it ends).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub result_info: Nullable<ResultInfo>,
    /// Who answered.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub answered_by: Nullable<ParticipantInfo>,
    /// The last DTMF tone received.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub tone_info: Nullable<ToneInfo>,
    /// Transcription state.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub transcription: Nullable<CallTranscriptionInfo>,
    /// Routing policies.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub routing_policies: Nullable<Vec<RoutingPolicy>>,
    /// Call options (`outgoingCallOptions` or `incomingCallOptions`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub call_options: Nullable<CallOptions>,
    /// Context of an incoming call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub incoming_context: Nullable<IncomingContext>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Call {
    /// The `@odata.type` of a call.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.call";

    /// The targets as a slice (absent and `null` give an empty slice).
    pub fn targets(&self) -> &[InvitationParticipantInfo] {
        self.targets.value().map(Vec::as_slice).unwrap_or_default()
    }
}

/// `#microsoft.graph.outgoingCallOptions` (or `incomingCallOptions`); the annotation is kept as sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CallOptions {
    /// `@odata.type`: `#microsoft.graph.outgoingCallOptions` on create-call requests.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Hide the bot from the roster after the call escalates to a group call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub hide_bot_after_escalation: Nullable<bool>,
    /// Ask for content-sharing notifications.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub is_content_sharing_notification_enabled: Nullable<bool>,
    /// Ask for delta rosters instead of full ones.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub is_delta_roster_enabled: Nullable<bool>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl CallOptions {
    /// The `@odata.type` of outgoing call options.
    pub const OUTGOING_ODATA_TYPE: &'static str = "#microsoft.graph.outgoingCallOptions";

    /// The `@odata.type` of incoming call options (the `callOptions` of an answer).
    pub const INCOMING_ODATA_TYPE: &'static str = "#microsoft.graph.incomingCallOptions";

    /// Empty `incomingCallOptions`.
    pub fn incoming() -> Self {
        CallOptions {
            odata_type: Self::INCOMING_ODATA_TYPE.to_owned().into(),
            ..Default::default()
        }
    }

    /// Empty `outgoingCallOptions`.
    pub fn outgoing() -> Self {
        CallOptions {
            odata_type: Self::OUTGOING_ODATA_TYPE.to_owned().into(),
            ..Default::default()
        }
    }
}

/// `#microsoft.graph.resultInfo`: the outcome of an operation or a call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResultInfo {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Result code (HTTP-like, e.g. 200, 410, 500).
    #[serde(
        default,
        skip_serializing_if = "Nullable::is_absent",
        deserialize_with = "crate::nullable::lenient_number"
    )]
    pub code: Nullable<i64>,
    /// Result sub-code (e.g. 301005 client media error, 9999 media processor shutdown).
    #[serde(
        default,
        skip_serializing_if = "Nullable::is_absent",
        deserialize_with = "crate::nullable::lenient_number"
    )]
    pub subcode: Nullable<i64>,
    /// Human-readable message.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub message: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.callMediaState`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CallMediaState {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Audio media state.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub audio: Nullable<MediaState>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.toneInfo`: a DTMF tone received.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ToneInfo {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Sequence id of the tone.
    #[serde(
        default,
        skip_serializing_if = "Nullable::is_absent",
        deserialize_with = "crate::nullable::lenient_number"
    )]
    pub sequence_id: Nullable<i64>,
    /// The tone.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub tone: Nullable<Tone>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.callTranscriptionInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CallTranscriptionInfo {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Transcription state.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub state: Nullable<CallTranscriptionState>,
    /// When the state last changed (ISO 8601, kept as text).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub last_modified_date_time: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.callRoute`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CallRoute {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Where the call ended up.
    #[serde(rename = "final", skip_serializing_if = "Nullable::is_absent")]
    pub final_: Nullable<IdentitySet>,
    /// Where it was going.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub original: Nullable<IdentitySet>,
    /// How it was routed.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub routing_type: Nullable<RoutingType>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.meetingCapability`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeetingCapability {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Anonymous users may dial out.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub allow_anonymous_users_to_dial_out: Nullable<bool>,
    /// Anonymous users may start the meeting.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub allow_anonymous_users_to_start_meeting: Nullable<bool>,
    /// Who is admitted automatically.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub auto_admitted_users: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.incomingContext`: who an incoming call is really from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IncomingContext {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// The participant the call came from.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub source_participant_id: Nullable<String>,
    /// The participant observed.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub observed_participant_id: Nullable<String>,
    /// On whose behalf.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub on_behalf_of: Nullable<IdentitySet>,
    /// Who transferred the call.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub transferor: Nullable<IdentitySet>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
