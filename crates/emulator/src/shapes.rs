//! The documents the emulator writes, in the seed's shapes: the 201 call body, call-state
//! notifications, rosters (full and delta) and content-sharing notifications.

use appmedia_emulator_media::{graph_source_id, parse_graph_source_id};
use appmedia_model::{
    Call, CallDirection, CallState, ChangeType, ChatInfo, CommsNotification, CommsNotifications,
    ContentSharingSession, DeltaParticipants, IdentitySet, MediaDirection, MediaStream,
    MeetingInfo, Modality, Nullable, OrganizerMeetingInfo, Participant, ParticipantInfo,
    RemovedState, ResourceData, ResultInfo,
};
use appmedia_signalling::validate::CreateCallKind;

use crate::admission::Admitted;
use crate::directory::Directory;

/// `@odata.context` of a call, as the service writes it.
pub const CALL_CONTEXT: &str = "https://graph.microsoft.com/v1.0/$metadata#app/calls/$entity";

/// The `resultInfo` of the ways a call ends here.
pub mod result {
    /// (code, subcode, message) of a call the bot hung up (`DELETE`).
    pub const ENDED_BY_APPLICATION: (i64, i64, &str) =
        (200, 0, "The call was ended by the application.");
    /// … of a call the remote party hung up.
    pub const ENDED_BY_REMOTE: (i64, i64, &str) =
        (200, 0, "The call was ended by the remote party.");
    /// … of a call every target declined.
    pub const DECLINED: (i64, i64, &str) = (603, 0, "The call was declined.");
    /// … of a call nobody answered before the ringing timeout.
    pub const NOT_ANSWERED: (i64, i64, &str) = (408, 0, "The call was not answered.");
    /// … of a call whose app-hosted media with the bot was lost (Graph's client media
    /// error).
    pub const MEDIA_LOST: (i64, i64, &str) = (
        410,
        301005,
        "The media connection with the application was lost.",
    );
}

/// A `resultInfo` from one of the [`result`] constants.
pub fn result_info((code, subcode, message): (i64, i64, &str)) -> ResultInfo {
    ResultInfo {
        odata_type: "#microsoft.graph.resultInfo".to_owned().into(),
        code: code.into(),
        subcode: subcode.into(),
        message: message.to_owned().into(),
        ..Default::default()
    }
}

/// The ids the service gives a new call.
#[derive(Clone, Debug)]
pub struct CallIds {
    /// The call id.
    pub id: String,
    /// The call chain id.
    pub call_chain_id: String,
    /// The bot's participant id.
    pub my_participant_id: String,
}

/// The bot's identity in the call: the request's source, or the calling application.
pub fn bot_identity(admitted: &Admitted) -> IdentitySet {
    admitted
        .request
        .source
        .value()
        .and_then(|s| s.identity.value())
        .cloned()
        .unwrap_or_else(|| {
            IdentitySet::application(
                appmedia_model::Identity::new(&admitted.application.id)
                    .with_display_name(&admitted.application.display_name),
            )
        })
}

/// The meeting's chat info as the service returns it.
pub fn meeting_chat_info(thread_id: &str) -> ChatInfo {
    let mut chat = ChatInfo::new(thread_id, "0");
    chat.reply_chain_message_id = Nullable::Null;
    chat
}

/// The meeting's organizer info.
pub fn organizer_meeting_info(directory: &Directory, organizer: &str) -> MeetingInfo {
    let mut identity = appmedia_model::Identity::new(organizer);
    if let Some(user) = directory.user(organizer) {
        identity = identity.with_display_name(&user.display_name);
    }
    MeetingInfo::Organizer(OrganizerMeetingInfo {
        organizer: IdentitySet::user(identity).into(),
        allow_conversation_without_host: true.into(),
        ..Default::default()
    })
}

/// The 201 body: the request, echoed, plus what the service adds (ids, state, nulls).
pub fn created_call(admitted: &Admitted, ids: &CallIds) -> Call {
    let mut call = admitted.request.clone();
    call.odata_type = Call::ODATA_TYPE.to_owned().into();
    call.odata_context = CALL_CONTEXT.to_owned().into();
    call.id = ids.id.clone().into();
    call.state = CallState::Establishing.into();
    call.direction = CallDirection::Outgoing.into();
    call.call_chain_id = ids.call_chain_id.clone().into();
    call.my_participant_id = ids.my_participant_id.clone().into();
    let mut source = call
        .source
        .value()
        .cloned()
        .unwrap_or_else(|| ParticipantInfo::new(bot_identity(admitted)));
    // What the service shows as null when the request says nothing (the seed's responses).
    null_if_absent(&mut source.country_code);
    null_if_absent(&mut source.endpoint_type);
    null_if_absent(&mut source.region);
    null_if_absent(&mut source.language_id);
    call.source = source.into();
    match &mut call.targets {
        Nullable::Value(targets) => {
            for target in targets {
                null_if_absent(&mut target.endpoint_type);
                null_if_absent(&mut target.region);
                null_if_absent(&mut target.replaces_call_id);
                null_if_absent(&mut target.language_id);
            }
        }
        _ => call.targets = Nullable::Value(Vec::new()),
    }
    call.call_routes = Nullable::Value(Vec::new());
    call.active_modalities = Nullable::Value(Vec::new());
    call.routing_policies = Nullable::Value(Vec::new());
    call.tenant_id = admitted.tenant_id.clone().into();
    if let Some(meeting) = &admitted.meeting {
        call.chat_info = meeting_chat_info(&meeting.thread_id).into();
    }
    if call.chat_info.is_absent() {
        call.chat_info = Nullable::Null;
    }
    if call.meeting_info.is_absent() {
        call.meeting_info = Nullable::Null;
    }
    call.subject = call.subject.clone().into_option().into_nullable();
    call.ringing_timeout_in_seconds = call
        .ringing_timeout_in_seconds
        .clone()
        .into_option()
        .into_nullable();
    call.media_state = Nullable::Null;
    call.result_info = Nullable::Null;
    call.answered_by = Nullable::Null;
    call.transcription = Nullable::Null;
    call.tone_info = Nullable::Null;
    call.termination_reason = Nullable::Null;
    call.meeting_capability = Nullable::Null;
    call
}

fn null_if_absent<T>(field: &mut Nullable<T>) {
    if field.is_absent() {
        *field = Nullable::Null;
    }
}

trait IntoNullable<T> {
    fn into_nullable(self) -> Nullable<T>;
}

impl<T> IntoNullable<T> for Option<T> {
    fn into_nullable(self) -> Nullable<T> {
        match self {
            Some(v) => Nullable::Value(v),
            None => Nullable::Null,
        }
    }
}

fn batch(notification: CommsNotification) -> CommsNotifications {
    CommsNotifications {
        odata_type: CommsNotifications::ODATA_TYPE.to_owned().into(),
        value: vec![notification].into(),
        ..Default::default()
    }
}

fn notification(change: ChangeType, resource_url: String) -> CommsNotification {
    CommsNotification {
        odata_type: CommsNotification::ODATA_TYPE.to_owned().into(),
        change_type: change.into(),
        resource_url: resource_url.into(),
        ..Default::default()
    }
}

/// What a call-state notification says about a meeting.
#[derive(Clone, Debug)]
pub struct MeetingContext {
    /// The meeting's chat info.
    pub chat_info: ChatInfo,
    /// The meeting's organizer info.
    pub meeting_info: MeetingInfo,
}

/// A call-state notification (establishing, established, terminated), as in the seed.
pub fn call_state_notification(
    call_id: &str,
    callback_uri: &str,
    kind: CreateCallKind,
    state: CallState,
    meeting: Option<&MeetingContext>,
    result: Option<ResultInfo>,
) -> CommsNotifications {
    let terminated = state == CallState::Terminated;
    let mut call = Call {
        odata_type: Call::ODATA_TYPE.to_owned().into(),
        ..Default::default()
    };
    // The seed's peer-to-peer "established" names the direction; its meeting
    // notifications carry the chat and meeting info instead.
    if state == CallState::Established && kind != CreateCallKind::MeetingJoin {
        call.direction = CallDirection::Outgoing.into();
    }
    call.state = state.into();
    if let Some(meeting) = meeting {
        call.chat_info = meeting.chat_info.clone().into();
        call.meeting_info = meeting.meeting_info.clone().into();
    }
    if let Some(result) = result {
        call.result_info = result.into();
    }
    call.id = call_id.to_owned().into();
    let change = if terminated {
        ChangeType::Deleted
    } else {
        ChangeType::Updated
    };
    let mut n = notification(change, format!("/communications/calls/{call_id}"));
    n.callback_uri = callback_uri.to_owned().into();
    n.resource_data = ResourceData::Call(Box::new(call)).into();
    batch(n)
}

/// The conference source id of a roster entry (its audio `mediaStreams[].sourceId`).
pub fn source_id_of(participant: &Participant) -> Option<u32> {
    participant
        .media_streams
        .value()?
        .iter()
        .filter(|s| s.media_type.value().is_none_or(|m| *m == Modality::Audio))
        .find_map(|s| s.source_id.value().and_then(|id| parse_graph_source_id(id)))
}

/// One roster entry.
pub fn participant(id: &str, identity: IdentitySet, source_id: u32, muted: bool) -> Participant {
    let mut info = ParticipantInfo::new(identity);
    if info
        .identity
        .value()
        .is_some_and(|i| i.user.is_value() || i.phone.is_value())
    {
        info.language_id = "en-US".to_owned().into();
    }
    Participant {
        odata_type: Participant::ODATA_TYPE.to_owned().into(),
        info: info.into(),
        media_streams: vec![MediaStream {
            odata_type: "#microsoft.graph.mediaStream".to_owned().into(),
            media_type: Modality::Audio.into(),
            // The conference's own id for this party: the SSRC of its unmixed stream.
            source_id: graph_source_id(source_id).into(),
            direction: MediaDirection::SendReceive.into(),
            server_muted: false.into(),
            ..Default::default()
        }]
        .into(),
        is_muted: muted.into(),
        is_in_lobby: false.into(),
        id: id.to_owned().into(),
        ..Default::default()
    }
}

/// Where the source ids of video and screen-sharing streams start: far from the audio
/// streams' (the conference's SSRCs, counted from the bot's), so the two never meet.
pub const FIRST_VIDEO_SOURCE_ID: u32 = 0x0001_0000;

/// Adds a (video or screen-sharing) stream to a roster entry.
pub fn add_stream(
    participant: &mut Participant,
    kind: Modality,
    direction: MediaDirection,
    source_id: u32,
) {
    let stream = MediaStream {
        odata_type: "#microsoft.graph.mediaStream".to_owned().into(),
        media_type: kind.into(),
        source_id: graph_source_id(source_id).into(),
        direction: direction.into(),
        server_muted: false.into(),
        ..Default::default()
    };
    match &mut participant.media_streams {
        appmedia_model::Nullable::Value(streams) => streams.push(stream),
        other => *other = vec![stream].into(),
    }
}

/// A full roster notification (delta roster off).
pub fn roster_notification(
    call_id: &str,
    callback_uri: &str,
    participants: &[Participant],
) -> CommsNotifications {
    let mut n = notification(
        ChangeType::Updated,
        format!("/communications/calls/{call_id}/participants"),
    );
    n.callback_uri = callback_uri.to_owned().into();
    n.resource_data = ResourceData::Participants(participants.to_vec()).into();
    batch(n)
}

/// A delta roster notification: the changed participants (the removed ones with
/// `removedState`), each stamped with `sequence`.
pub fn delta_roster_notification(
    call_id: &str,
    sequence: i64,
    changed: &[Participant],
    removed: &[Participant],
) -> CommsNotifications {
    let mut participants = Vec::with_capacity(changed.len() + removed.len());
    for p in changed {
        let mut p = p.clone();
        p.roster_sequence_number = sequence.into();
        participants.push(p);
    }
    for p in removed {
        let mut p = p.clone();
        p.roster_sequence_number = sequence.into();
        p.removed_state = RemovedState {
            reason: "Removed from roster".to_owned().into(),
            ..Default::default()
        }
        .into();
        participants.push(p);
    }
    let mut n = notification(
        ChangeType::Updated,
        format!("/communications/calls/{call_id}/participants"),
    );
    n.resource = format!("/app/calls/{call_id}/participants").into();
    n.resource_data = ResourceData::DeltaParticipants(vec![DeltaParticipants {
        odata_type: DeltaParticipants::ODATA_TYPE.to_owned().into(),
        participants: participants.into(),
        sequence_number: sequence.into(),
        ..Default::default()
    }])
    .into();
    batch(n)
}

/// A content-sharing notification (created, updated or deleted).
pub fn content_sharing_notification(
    call_id: &str,
    change: ChangeType,
    session_id: &str,
) -> CommsNotifications {
    let mut n = notification(
        change,
        format!("/communications/calls/{call_id}/contentsharingsessions"),
    );
    n.resource_data = ResourceData::ContentSharingSessions(vec![ContentSharingSession {
        odata_type: ContentSharingSession::ODATA_TYPE.to_owned().into(),
        id: session_id.to_owned().into(),
        ..Default::default()
    }])
    .into();
    batch(n)
}

/// A content-sharing session id in the service's form: 64 upper-case hex digits.
pub fn new_session_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
    .to_uppercase()
}
