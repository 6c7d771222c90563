//! One builder per create-call scenario the Graph reference documents. Each produces
//! the `POST /communications/calls` body and validates it before handing it over.
//!
//! | scenario | builder | seed examples |
//! |---|---|---|
//! | peer-to-peer VoIP call with a Teams user | [`PeerToPeerCallBuilder`] | 1, 2 |
//! | group call (up to 5 VoIP users) | [`GroupCallBuilder`] | 3, 4 |
//! | join a scheduled meeting by organizer + chat | [`OrganizerMeetingJoinBuilder`] | 5, 6 |
//! | join a meeting by joinMeetingId (+ passcode) | [`JoinMeetingIdBuilder`] | 7, 8 |
//! | peer-to-peer PSTN call from an application instance | [`PstnCallBuilder`] | 9, 10 |
//!
//! The media is a [`Media`]: service-hosted, or app-hosted with the media session's
//! blob, which the type makes impossible to forget.

use appmedia_model::{
    AppHostedMediaConfig, Call, CallDirection, CallOptions, ChatInfo, Identity, IdentitySet,
    InvitationParticipantInfo, JoinMeetingIdMeetingInfo, MediaConfig, MediaInfo, MeetingInfo,
    Modality, Nullable, OrganizerMeetingInfo, ParticipantInfo, ServiceHostedMediaConfig,
};

use crate::validate::{ValidationErrors, validate_create_call};

/// Who hosts a call's media. App-hosted media always carries a blob.
#[derive(Clone, Debug, PartialEq)]
pub struct Media(MediaConfig);

impl Media {
    /// Service-hosted media (the service plays prompts, records, ...).
    pub fn service_hosted() -> Self {
        Media(MediaConfig::ServiceHosted(
            ServiceHostedMediaConfig::default(),
        ))
    }

    /// Service-hosted media with prompts the service fetches ahead.
    pub fn service_hosted_with_prefetch(pre_fetch_media: Vec<MediaInfo>) -> Self {
        Media(MediaConfig::ServiceHosted(ServiceHostedMediaConfig {
            pre_fetch_media: pre_fetch_media.into(),
            ..Default::default()
        }))
    }

    /// Application-hosted media described by the media session's `blob`.
    pub fn app_hosted(blob: impl Into<String>) -> Self {
        Media(MediaConfig::AppHosted(AppHostedMediaConfig::new(blob)))
    }

    /// Sets `removeFromDefaultAudioGroup`.
    pub fn remove_from_default_audio_group(mut self, remove: bool) -> Self {
        match &mut self.0 {
            MediaConfig::ServiceHosted(config) => {
                config.remove_from_default_audio_group = remove.into()
            }
            MediaConfig::AppHosted(config) => {
                config.remove_from_default_audio_group = remove.into()
            }
            // Media is only ever built by the constructors above.
            MediaConfig::Other(_) => {}
        }
        self
    }

    /// The `mediaConfig`.
    pub fn into_config(self) -> MediaConfig {
        self.0
    }
}

fn new_call(callback_uri: String, media: Media) -> Call {
    Call {
        odata_type: Call::ODATA_TYPE.to_owned().into(),
        callback_uri: callback_uri.into(),
        requested_modalities: vec![Modality::Audio].into(),
        media_config: media.0.into(),
        ..Default::default()
    }
}

fn invite(identity: IdentitySet) -> InvitationParticipantInfo {
    InvitationParticipantInfo::new(identity)
}

/// Setters every scenario shares.
macro_rules! common_setters {
    ($builder:ident) => {
        impl $builder {
            /// Sets `requestedModalities` (default: `["audio"]`).
            pub fn requested_modalities(mut self, modalities: Vec<Modality>) -> Self {
                self.call.requested_modalities = modalities.into();
                self
            }

            /// Sets `direction` (some of the reference's requests send `"outgoing"`).
            pub fn direction(mut self, direction: CallDirection) -> Self {
                self.call.direction = direction.into();
                self
            }

            /// Sets `subject`.
            pub fn subject(mut self, subject: impl Into<String>) -> Self {
                self.call.subject = subject.into().into();
                self
            }

            /// Sets `tenantId`.
            pub fn tenant_id(mut self, tenant_id: impl Into<String>) -> Self {
                self.call.tenant_id = tenant_id.into().into();
                self
            }

            /// Sets `callOptions` as a whole.
            pub fn call_options(mut self, options: CallOptions) -> Self {
                self.call.call_options = options.into();
                self
            }

            /// Asks for content-sharing notifications (`outgoingCallOptions`).
            pub fn content_sharing_notifications(mut self, enabled: bool) -> Self {
                self.outgoing_options()
                    .is_content_sharing_notification_enabled = enabled.into();
                self
            }

            /// Asks for delta rosters instead of full rosters (`outgoingCallOptions`).
            pub fn delta_roster(mut self, enabled: bool) -> Self {
                self.outgoing_options().is_delta_roster_enabled = enabled.into();
                self
            }

            /// Hides the bot after the call escalates to a group call (`outgoingCallOptions`).
            pub fn hide_bot_after_escalation(mut self, hide: bool) -> Self {
                self.outgoing_options().hide_bot_after_escalation = hide.into();
                self
            }

            fn outgoing_options(&mut self) -> &mut CallOptions {
                self.call
                    .call_options
                    .get_or_insert_with(CallOptions::outgoing)
            }

            /// Validates and returns the request body.
            pub fn build(self) -> Result<Call, ValidationErrors> {
                validate_create_call(&self.call)?;
                Ok(self.call)
            }
        }
    };
}

/// Seed examples 1 and 2: a peer-to-peer VoIP call from the bot to a Teams user.
/// Needs `Calls.Initiate.All` (+ `Calls.AccessMedia.All` for app-hosted media).
#[derive(Clone, Debug)]
pub struct PeerToPeerCallBuilder {
    call: Call,
}

impl PeerToPeerCallBuilder {
    /// A call to `user`, notifications to `callback_uri`.
    pub fn new(callback_uri: impl Into<String>, user: Identity, media: Media) -> Self {
        let mut call = new_call(callback_uri.into(), media);
        call.targets = vec![invite(IdentitySet::user(user))].into();
        PeerToPeerCallBuilder { call }
    }

    /// Sets `source` (the bot's application identity; optional for this scenario).
    pub fn source(mut self, source: ParticipantInfo) -> Self {
        self.call.source = source.into();
        self
    }

    /// Sets `ringingTimeoutInSeconds` (the service allows up to 115).
    pub fn ringing_timeout_in_seconds(mut self, seconds: u32) -> Self {
        self.call.ringing_timeout_in_seconds = seconds.into();
        self
    }
}
common_setters!(PeerToPeerCallBuilder);

/// Seed examples 3 and 4: a group call the bot creates with up to 5 VoIP users.
/// Needs `Calls.InitiateGroupCall.All` (+ `Calls.AccessMedia.All`).
#[derive(Clone, Debug)]
pub struct GroupCallBuilder {
    call: Call,
}

impl GroupCallBuilder {
    /// A group call from `source` (the bot) to `users`.
    pub fn new(
        callback_uri: impl Into<String>,
        source: ParticipantInfo,
        users: impl IntoIterator<Item = Identity>,
        media: Media,
    ) -> Self {
        let mut call = new_call(callback_uri.into(), media);
        call.source = source.into();
        call.targets = users
            .into_iter()
            .map(|user| invite(IdentitySet::user(user)))
            .collect::<Vec<_>>()
            .into();
        GroupCallBuilder { call }
    }
}
common_setters!(GroupCallBuilder);

/// Seed examples 5 and 6: join a scheduled meeting named by its organizer and chat thread.
/// Needs `Calls.JoinGroupCall.All`, `Calls.JoinGroupCallAsGuest.All` or the
/// resource-specific `Calls.JoinGroupCalls.Chat` (+ `Calls.AccessMedia.All`).
#[derive(Clone, Debug)]
pub struct OrganizerMeetingJoinBuilder {
    call: Call,
}

impl OrganizerMeetingJoinBuilder {
    /// Joins the meeting of `chat_info` organized by `organizer` in `tenant_id`.
    pub fn new(
        callback_uri: impl Into<String>,
        chat_info: ChatInfo,
        organizer: Identity,
        tenant_id: impl Into<String>,
        media: Media,
    ) -> Self {
        let mut call = new_call(callback_uri.into(), media);
        call.chat_info = chat_info.into();
        call.meeting_info = MeetingInfo::Organizer(OrganizerMeetingInfo {
            organizer: IdentitySet::user(organizer).into(),
            ..Default::default()
        })
        .into();
        call.tenant_id = tenant_id.into().into();
        OrganizerMeetingJoinBuilder { call }
    }

    /// Sets `allowConversationWithoutHost`.
    pub fn allow_conversation_without_host(mut self, allow: bool) -> Self {
        if let Nullable::Value(MeetingInfo::Organizer(info)) = &mut self.call.meeting_info {
            info.allow_conversation_without_host = allow.into();
        }
        self
    }
}
common_setters!(OrganizerMeetingJoinBuilder);

/// Seed examples 7 and 8: join a meeting by its `joinMeetingId`, with or without passcode.
/// Needs the same permissions as [`OrganizerMeetingJoinBuilder`].
#[derive(Clone, Debug)]
pub struct JoinMeetingIdBuilder {
    call: Call,
}

impl JoinMeetingIdBuilder {
    /// Joins meeting `join_meeting_id` of `tenant_id`; `passcode: None` is sent as `null`.
    pub fn new(
        callback_uri: impl Into<String>,
        join_meeting_id: impl Into<String>,
        passcode: Option<String>,
        tenant_id: impl Into<String>,
        media: Media,
    ) -> Self {
        let mut call = new_call(callback_uri.into(), media);
        call.meeting_info = MeetingInfo::JoinMeetingId(JoinMeetingIdMeetingInfo {
            join_meeting_id: join_meeting_id.into().into(),
            passcode: passcode.map_or(Nullable::Null, Nullable::Value),
            ..Default::default()
        })
        .into();
        call.tenant_id = tenant_id.into().into();
        JoinMeetingIdBuilder { call }
    }
}
common_setters!(JoinMeetingIdBuilder);

/// Seed examples 9 and 10: a peer-to-peer call to a phone number, from an application
/// instance that owns a phone number. Needs `Calls.Initiate.All` (+ `Calls.AccessMedia.All`).
#[derive(Clone, Debug)]
pub struct PstnCallBuilder {
    call: Call,
}

impl PstnCallBuilder {
    /// A call from `source` (whose identity holds the `applicationInstance`) to the
    /// E.164 number `phone_number`, in `tenant_id`.
    pub fn new(
        callback_uri: impl Into<String>,
        source: ParticipantInfo,
        phone_number: impl Into<String>,
        tenant_id: impl Into<String>,
        media: Media,
    ) -> Self {
        let mut call = new_call(callback_uri.into(), media);
        call.source = source.into();
        call.targets = vec![invite(IdentitySet::phone(Identity::new(phone_number)))].into();
        call.tenant_id = tenant_id.into().into();
        PstnCallBuilder { call }
    }
}
common_setters!(PstnCallBuilder);
