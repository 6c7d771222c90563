//! Placing and answering calls on ACS, and the mapping of the SDK's Graph-shaped requests
//! (targets, media config) onto Call Automation's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use appmedia_acs::events::IncomingCallData;
use appmedia_acs::identifier::{Cloud, Identifier};
use appmedia_acs::models::{
    AudioChannelType, AudioFormat, CreateCallRequest, MediaStreamingOptions, PhoneNumber,
};
use appmedia_media::pcm::PcmRate;
use appmedia_model::{
    Call as CallResource, CallDirection, CallState, IdentitySet, InvitationParticipantInfo,
    MediaConfig, ParticipantInfo,
};

use crate::acs::backend::AcsBackend;
use crate::acs::translate::{Translator, identity_set};
use crate::bot::BotInner;
use crate::call::{Call, Hosting, Target};
use crate::config::{ConfigError, env};
use crate::driver::AcsCall;
use crate::error::BotError;
use crate::media::MediaOptions;
use crate::setup::{self, LiveMedia};

/// The ACS identity of a Graph identity set: a phone number, a Teams or ACS user (an id that
/// is already a raw id, `8:acs:…`, is taken as such), a Teams resource account.
pub(crate) fn identifier_of(identity: &IdentitySet) -> Result<Identifier, BotError> {
    let id = |i: &appmedia_model::Nullable<appmedia_model::Identity>| {
        i.value().and_then(|i| i.id.value()).cloned()
    };
    if let Some(number) = id(&identity.phone) {
        return Ok(Identifier::phone(number));
    }
    if let Some(user) = id(&identity.user) {
        return Ok(if user.contains(':') {
            Identifier::from_raw_id(&user)
        } else {
            Identifier::teams_user(user)
        });
    }
    if let Some(app) = id(&identity.application_instance) {
        return Ok(Identifier::MicrosoftTeamsApp {
            app_id: app,
            cloud: Cloud::Public,
        });
    }
    Err(BotError::Unsupported {
        backend: "acs",
        capability: "a target that is not a phone number, a user or a Teams resource account",
    })
}

/// The ACS identity of a transfer, redirect or invitation target.
pub(crate) fn target_identifier(target: Target) -> Result<Identifier, BotError> {
    match target {
        Target::Phone(number) => Ok(Identifier::phone(number)),
        Target::User(id) if id.contains(':') => Ok(Identifier::from_raw_id(&id)),
        Target::User(id) => Ok(Identifier::teams_user(id)),
        Target::Participant(p) => invitation_identifier(&p),
    }
}

fn invitation_identifier(p: &InvitationParticipantInfo) -> Result<Identifier, BotError> {
    let identity = p.identity.value().ok_or(BotError::Unsupported {
        backend: "acs",
        capability: "a target without an identity",
    })?;
    identifier_of(identity)
}

/// The stream's rate.
pub(crate) fn rate_of(format: AudioFormat) -> PcmRate {
    match format {
        AudioFormat::Pcm16KMono => PcmRate::Hz16000,
        AudioFormat::Pcm24KMono => PcmRate::Hz24000,
    }
}

/// Bidirectional audio to the call's socket, mixed or one stream per participant.
pub(crate) fn streaming_options(
    acs: &AcsBackend,
    token: &str,
    options: &MediaOptions,
) -> MediaStreamingOptions {
    let mut streaming = MediaStreamingOptions::bidirectional(
        acs.media_url_of(token),
        if options.unmixed {
            AudioChannelType::Unmixed
        } else {
            AudioChannelType::Mixed
        },
        acs.service.audio_format,
    );
    // Key presses on the socket too: `Event::Tone { source: Media }`, as RTP gives on Graph.
    streaming.enable_dtmf_tones = Some(true);
    streaming
}

/// Places a call on ACS: the Graph-shaped request's targets and media become a create-call
/// with bidirectional audio streaming (app-hosted) or none (service-hosted).
pub(crate) async fn place(
    inner: &Arc<BotInner>,
    acs: &AcsBackend,
    mut request: CallResource,
    options: MediaOptions,
) -> Result<Call, BotError> {
    if request.chat_info.value().is_some() || request.meeting_info.value().is_some() {
        return Err(BotError::Unsupported {
            backend: "acs",
            capability: "joining a Teams meeting by chat and meeting info",
        });
    }
    let targets = request
        .targets
        .value()
        .map(|t| {
            t.iter()
                .map(invitation_identifier)
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    if targets.is_empty() {
        return Err(BotError::Protocol(
            "a call needs at least one target".into(),
        ));
    }
    let phone_targets = targets.iter().any(|t| t.phone_number().is_some());
    let caller_id = acs.service.phone_number.clone();
    if phone_targets && caller_id.is_none() {
        return Err(BotError::Config(ConfigError::Missing {
            field: "service.acs.phone_number",
            var: env::ACS_PHONE_NUMBER,
        }));
    }
    let app_hosted = matches!(
        request.media_config.value(),
        Some(MediaConfig::AppHosted(_))
    );
    let token = acs.new_token()?;
    let create = CreateCallRequest {
        targets,
        source_caller_id_number: caller_id
            .filter(|_| phone_targets)
            .map(|value| PhoneNumber { value }),
        source_display_name: None,
        teams_app_source: None,
        callback_uri: acs.callback_of(&token),
        operation_context: None,
        media_streaming_options: app_hosted.then(|| streaming_options(acs, &token, &options)),
    };
    let created = match acs.client.create_call(&create).await {
        Ok(created) => created,
        Err(e) => {
            acs.forget(&token);
            return Err(e.into());
        }
    };
    let call_id = created.call_connection_id.clone();
    inner.counters.calls_created.fetch_add(1, Ordering::Relaxed);
    let signalling = inner.register(&call_id);
    acs.bind(&token, &call_id, None);
    let media = if app_hosted {
        match start_media(inner, acs, &token, &call_id, options) {
            Ok(media) => Some(media),
            Err(e) => {
                let _ = acs.client.hang_up(&call_id).await;
                acs.forget(&token);
                inner.unregister(&call_id);
                return Err(e);
            }
        }
    } else {
        None
    };
    request.id = call_id.clone().into();
    request.state = CallState::Establishing.into();
    request.direction = CallDirection::Outgoing.into();
    request.callback_uri = acs.callback_of(&token).into();
    Ok(spawn(inner, call_id, token, request, signalling, media))
}

/// The call's stream pipeline, on a worker, its slot waiting for the service's socket.
pub(crate) fn start_media(
    inner: &Arc<BotInner>,
    acs: &AcsBackend,
    token: &str,
    call_id: &str,
    options: MediaOptions,
) -> Result<LiveMedia, BotError> {
    let (media, slot) =
        setup::start_stream(inner, call_id, rate_of(acs.service.audio_format), options)?;
    acs.bind(token, call_id, Some(slot));
    Ok(media)
}

/// Starts the driver of an ACS call.
pub(crate) fn spawn(
    inner: &Arc<BotInner>,
    call_id: String,
    token: String,
    resource: CallResource,
    signalling: tokio::sync::mpsc::UnboundedReceiver<crate::bot::Signal>,
    media: Option<LiveMedia>,
) -> Call {
    let hosting = if media.is_some() {
        Hosting::App
    } else {
        Hosting::Service
    };
    crate::outgoing::spawn(
        inner,
        call_id,
        hosting,
        Some(resource),
        signalling,
        media,
        None,
        Some(AcsCall {
            translator: Translator::new(Some(CallState::Establishing)),
            token,
        }),
    )
}

/// The Graph-shaped resource of a call ACS offers: the caller as `source`, the number or user
/// called as the target, state `incoming`.
pub(crate) fn incoming_resource(data: &IncomingCallData) -> CallResource {
    CallResource {
        id: data.server_call_id.clone().into(),
        state: CallState::Incoming.into(),
        direction: CallDirection::Incoming.into(),
        source: ParticipantInfo::new(identity_set(&data.from)).into(),
        targets: vec![InvitationParticipantInfo::new(identity_set(&data.to))].into(),
        ..CallResource::default()
    }
}
