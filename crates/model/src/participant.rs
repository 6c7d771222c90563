//! The roster: `participant`, `mediaStream`, `removedState`, `deltaParticipants`,
//! and `contentSharingSession`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{MediaDirection, Modality, Nullable, ParticipantInfo};

/// `#microsoft.graph.participant`: one entry of a call's roster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Participant {
    /// `@odata.type`, normally `#microsoft.graph.participant`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Participant id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Who.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub info: Nullable<ParticipantInfo>,
    /// The participant's media streams.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub media_streams: Nullable<Vec<MediaStream>>,
    /// Muted (client or server side).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub is_muted: Nullable<bool>,
    /// Waiting in the lobby.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub is_in_lobby: Nullable<bool>,
    /// Opaque metadata.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub metadata: Nullable<String>,
    /// Set when a delta roster removes the participant.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub removed_state: Nullable<RemovedState>,
    /// Sequence number of the roster that last changed this participant (delta rosters).
    #[serde(
        default,
        skip_serializing_if = "Nullable::is_absent",
        deserialize_with = "crate::nullable::lenient_number"
    )]
    pub roster_sequence_number: Nullable<i64>,
    /// Properties this model does not name (recordingInfo, restrictedExperience, ...), kept.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Participant {
    /// The `@odata.type` of a participant.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.participant";
}

/// `#microsoft.graph.mediaStream`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MediaStream {
    /// `@odata.type`, normally `#microsoft.graph.mediaStream`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Audio, video, screen sharing, data.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub media_type: Nullable<Modality>,
    /// Media source id (the id an active-speaker list refers to).
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub source_id: Nullable<String>,
    /// Direction.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub direction: Nullable<MediaDirection>,
    /// Muted by the server.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub server_muted: Nullable<bool>,
    /// Label.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub label: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.removedState`: why a participant left the roster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RemovedState {
    /// `@odata.type`, when sent.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// The reason.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub reason: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `#microsoft.graph.deltaParticipants`: the participants that changed, with the roster's sequence number.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DeltaParticipants {
    /// `@odata.type`, normally `#microsoft.graph.deltaParticipants`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Id, when sent.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Changed (or removed, see `removedState`) participants.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub participants: Nullable<Vec<Participant>>,
    /// Order of this delta among the call's deltas.
    #[serde(
        default,
        skip_serializing_if = "Nullable::is_absent",
        deserialize_with = "crate::nullable::lenient_number"
    )]
    pub sequence_number: Nullable<i64>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl DeltaParticipants {
    /// The `@odata.type` of a delta roster.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.deltaParticipants";
}

/// `#microsoft.graph.contentSharingSession`: someone shares content in the call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContentSharingSession {
    /// `@odata.type`, normally `#microsoft.graph.contentSharingSession`.
    #[serde(rename = "@odata.type", skip_serializing_if = "Nullable::is_absent")]
    pub odata_type: Nullable<String>,
    /// Session id.
    #[serde(skip_serializing_if = "Nullable::is_absent")]
    pub id: Nullable<String>,
    /// Properties this model does not name, kept for the round trip.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ContentSharingSession {
    /// The `@odata.type` of a content-sharing session.
    pub const ODATA_TYPE: &'static str = "#microsoft.graph.contentSharingSession";
}
