//! The Microsoft Graph cloud-communications resources as serde types: [`Call`],
//! [`ParticipantInfo`], [`IdentitySet`], the media configs, the meeting infos,
//! [`CommsNotifications`], [`Participant`], [`DeltaParticipants`],
//! [`ContentSharingSession`], [`ResultInfo`], the [`GraphErrorBody`], the bodies of the
//! call-control actions ([`AnswerRequest`], [`PlayPromptRequest`], ...) and the
//! [`CommsOperation`] they answer with.
//!
//! Pure data: no I/O, no clock. Three rules hold for every type:
//!
//! * `@odata.type` selects the variant where Graph has several ([`MediaConfig`],
//!   [`MeetingInfo`], [`ResourceData`]); an unknown one is kept as `Other`.
//! * Properties the model does not name survive a parse → serialize round trip
//!   (each object keeps them in `extra`), and enum values it does not know are
//!   kept as `Unknown(String)`.
//! * Absent and `null` stay distinct: every optional property is a [`Nullable`].
//!
//! ```
//! use appmedia_model::{Call, CallState, MediaConfig, Nullable};
//!
//! let json = r##"{"@odata.type":"#microsoft.graph.call","state":"establishing",
//!   "subject":null,"mediaConfig":{"@odata.type":"#microsoft.graph.appHostedMediaConfig",
//!   "blob":"{}"},"futureProperty":42}"##;
//! let call: Call = serde_json::from_str(json).unwrap();
//! assert_eq!(call.state, Nullable::Value(CallState::Establishing));
//! assert!(call.subject.is_null() && call.tenant_id.is_absent());
//! assert!(matches!(call.media_config.value(), Some(MediaConfig::AppHosted(_))));
//! let back = serde_json::to_value(&call).unwrap();
//! assert_eq!(back, serde_json::from_str::<serde_json::Value>(json).unwrap());
//! ```

#[macro_use]
mod odata;
mod actions;
mod call;
mod enums;
mod error;
mod identity;
mod media_config;
mod meeting;
mod notification;
mod nullable;
mod participant;

pub use actions::{
    AnswerRequest, ChangeScreenSharingRoleRequest, ClientContextRequest, CommsOperation,
    InviteParticipantsRequest, MediaPrompt, MuteRequest, PlayPromptRequest, Prompt,
    RecordResponseRequest, RedirectRequest, RejectRequest, SendDtmfTonesRequest, TransferRequest,
    UpdateRecordingStatusRequest,
};
pub use call::{
    Call, CallMediaState, CallOptions, CallRoute, CallTranscriptionInfo, IncomingContext,
    MeetingCapability, ResultInfo, ToneInfo,
};
pub use enums::{
    CallDirection, CallState, CallTranscriptionState, ChangeType, EndpointType, IdentityKind,
    MediaDirection, MediaState, Modality, OperationStatus, PlayPromptCompletionReason,
    RecordCompletionReason, RecordingStatus, RejectReason, RoutingPolicy, RoutingType,
    ScreenSharingRole, SendDtmfCompletionReason, Tone,
};
pub use error::{GraphError, GraphErrorBody, InnerError};
pub use identity::{Identity, IdentitySet, InvitationParticipantInfo, ParticipantInfo};
pub use media_config::{AppHostedMediaConfig, MediaConfig, MediaInfo, ServiceHostedMediaConfig};
pub use meeting::{
    ChatInfo, JoinMeetingIdMeetingInfo, JoinMeetingIdSettings, MeetingInfo, MeetingParticipantInfo,
    MeetingParticipants, OnlineMeeting, OrganizerMeetingInfo, TokenMeetingInfo,
};
pub use notification::{CommsNotification, CommsNotifications, ResourceData};
pub use nullable::Nullable;
pub use odata::ODATA_TYPE;
pub use participant::{
    ContentSharingSession, DeltaParticipants, MediaStream, Participant, RemovedState,
};
