//! What meeting a call joins: `chatInfo` and the `meetingInfo` variants.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{IdentitySet, Nullable};

/// `#microsoft.graph.chatInfo`: the meeting's chat thread.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChatInfo {
    /// `@odata.type`, normally `#microsoft.graph.chatInfo`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// The thread id (`19:meeting_...@thread.v2`).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub thread_id: Nullable<String>,
    /// The message id in the thread.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub message_id: Nullable<String>,
    /// The reply chain's root message id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub reply_chain_message_id: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatInfo {
    /// The `@odata.type` the builders write.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.chatInfo";

    /// A chat info for `thread_id` / `message_id`.
    pub fn new(thread_id: impl Into<String>, message_id: impl Into<String>) -> Self {
        ChatInfo {
            odata_type: Self::ODATA_TYPE.to_owned().into(),
            thread_id: thread_id.into().into(),
            message_id: message_id.into().into(),
            ..Default::default()
        }
    }
}

/// `#microsoft.graph.organizerMeetingInfo`: a meeting named by its organizer (with `chatInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrganizerMeetingInfo {
    /// The organizer.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub organizer: Nullable<IdentitySet>,
    /// Whether the meeting may go on without its host.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub allow_conversation_without_host: Nullable<bool>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.joinMeetingIdMeetingInfo`: a meeting named by its join id (and passcode).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JoinMeetingIdMeetingInfo {
    /// The numeric join id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub join_meeting_id: Nullable<String>,
    /// The passcode, when the meeting has one.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub passcode: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.tokenMeetingInfo`: a meeting named by a token.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenMeetingInfo {
    /// The token.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub token: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

odata_union! {
    /// `meetingInfo` of a call, chosen by `@odata.type`.
    MeetingInfo {
        /// `#microsoft.graph.organizerMeetingInfo`
        Organizer(OrganizerMeetingInfo) = "#microsoft.graph.organizerMeetingInfo",
        /// `#microsoft.graph.joinMeetingIdMeetingInfo`
        JoinMeetingId(JoinMeetingIdMeetingInfo) = "#microsoft.graph.joinMeetingIdMeetingInfo",
        /// `#microsoft.graph.tokenMeetingInfo`
        Token(TokenMeetingInfo) = "#microsoft.graph.tokenMeetingInfo",
    }
}

/// `#microsoft.graph.onlineMeeting` as Get onlineMeeting returns it: the parts a bot needs to
/// join (the seed: "take the thread id, message id, organizer id and tenant id from the Get
/// onlineMeeting API").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OnlineMeeting {
    /// The meeting's id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Its Teams join link.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub join_web_url: Nullable<String>,
    /// Its subject.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub subject: Nullable<String>,
    /// Its chat thread.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub chat_info: Nullable<ChatInfo>,
    /// Its join id and passcode.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub join_meeting_id_settings: Nullable<JoinMeetingIdSettings>,
    /// Who organises and attends it.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participants: Nullable<MeetingParticipants>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl OnlineMeeting {
    /// The organizer's identity (`participants.organizer.identity.user`).
    pub fn organizer(&self) -> Option<&crate::Identity> {
        self.participants
            .value()?
            .organizer
            .value()?
            .identity
            .value()?
            .user
            .value()
    }
}

/// `#microsoft.graph.joinMeetingIdSettings`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JoinMeetingIdSettings {
    /// The numeric join id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub join_meeting_id: Nullable<String>,
    /// The passcode.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub passcode: Nullable<String>,
    /// Whether a join needs the passcode.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub is_passcode_required: Nullable<bool>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.meetingParticipants`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeetingParticipants {
    /// The organizer.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub organizer: Nullable<MeetingParticipantInfo>,
    /// Properties this model does not name (attendees, …), kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.meetingParticipantInfo`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeetingParticipantInfo {
    /// Who.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub identity: Nullable<IdentitySet>,
    /// Their user principal name.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub upn: Nullable<String>,
    /// Properties this model does not name (role, …), kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
