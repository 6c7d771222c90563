//! ACS Call Automation calls: the registry of call connections, each call's driver
//! ([`driver`]), calls ringing the ACS resource ([`incoming`]) and the CloudEvents and Event
//! Grid deliveries ([`events`]). The parties are the directory's, with the same behaviour
//! (ring delay, answer, decline, no answer, hang up, keys, what they say) as in Graph calls,
//! and the media is the same conference, with a gateway in the bot's seat
//! ([`crate::conference::acs_media`]).

pub mod driver;
pub mod events;
pub mod incoming;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use appmedia_acs::Identifier;
use appmedia_acs::models::{
    CallConnectionProperties, CallConnectionState, CallParticipant, CreateCallRequest,
    MediaStreamingOptions, MediaStreamingSubscription,
};
use appmedia_audio_io::record::RecordingConfig;
use axum::http::StatusCode;
use tokio::sync::{mpsc, oneshot};

use crate::acs::{AcsApiError, AcsParty, AcsResource, find_party};
use crate::calls::Shared;
use crate::conference::acs_media::{
    AcsMedia, AcsMediaOptions, GatewayScheduler, StreamRate, StreamStatsHandle,
};
use driver::{AcsCommand, AcsPlan};
use events::{AcsEvents, CallIdentity};

/// The ACS side of the emulator.
pub struct AcsState {
    /// The emulated resource.
    pub(crate) resource: AcsResource,
    /// `https://{host}:{port}/`.
    pub(crate) endpoint: String,
    /// Signs and posts events.
    pub(crate) events: Arc<AcsEvents>,
    /// Ticks the calls' media gateways.
    pub(crate) gateways: GatewayScheduler,
    calls: Mutex<HashMap<String, AcsCallEntry>>,
    /// Incoming call context → the ringing call.
    ringing: Mutex<HashMap<String, incoming::Ringing>>,
    /// The Event Grid subscription's endpoint (validated).
    subscription: Mutex<Option<String>>,
    /// Recording id → call connection id.
    recordings: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for AcsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcsState")
            .field("endpoint", &self.endpoint)
            .field("phone_number", &self.resource.phone_number)
            .finish_non_exhaustive()
    }
}

/// A live call connection.
pub(crate) struct AcsCallEntry {
    control: mpsc::UnboundedSender<AcsCommand>,
    pub(crate) properties: CallConnectionProperties,
    pub(crate) participants: Vec<CallParticipant>,
    stream: StreamStatsHandle,
    timeline: crate::conference::acs_media::AcsTimeline,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AcsState {
    /// The ACS side of an emulator reachable at `endpoint`.
    pub fn new(
        resource: AcsResource,
        endpoint: String,
        events: Arc<AcsEvents>,
        gateways: GatewayScheduler,
    ) -> Self {
        AcsState {
            resource,
            endpoint,
            events,
            gateways,
            calls: Mutex::default(),
            ringing: Mutex::default(),
            subscription: Mutex::default(),
            recordings: Mutex::default(),
        }
    }

    /// The resource.
    pub fn resource(&self) -> &AcsResource {
        &self.resource
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The call connection's properties, or `None`.
    pub fn properties(&self, id: &str) -> Option<CallConnectionProperties> {
        lock(&self.calls).get(id).map(|c| c.properties.clone())
    }

    /// The call connection's participants, or `None`.
    pub fn participants(&self, id: &str) -> Option<Vec<CallParticipant>> {
        lock(&self.calls).get(id).map(|c| c.participants.clone())
    }

    /// The counters of the call's audio stream, or `None`.
    pub fn stream_stats(&self, id: &str) -> Option<crate::conference::acs_media::StreamStats> {
        lock(&self.calls).get(id).map(|c| c.stream.snapshot())
    }

    /// When each party of the call first spoke: (raw id, source id, instant), or `None`.
    pub fn timeline(&self, id: &str) -> Option<Vec<(String, u32, Option<std::time::Instant>)>> {
        lock(&self.calls).get(id).map(|c| c.timeline.parties())
    }

    /// How many call connections are live.
    pub fn live_calls(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Every live call connection's id.
    pub fn call_ids(&self) -> Vec<String> {
        lock(&self.calls).keys().cloned().collect()
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut AcsCallEntry)) {
        if let Some(entry) = lock(&self.calls).get_mut(id) {
            f(entry);
        }
    }

    pub(crate) fn remove(&self, id: &str) {
        lock(&self.calls).remove(id);
        lock(&self.recordings).retain(|_, call| call != id);
    }

    /// The Event Grid subscription's endpoint.
    pub fn subscription(&self) -> Option<String> {
        lock(&self.subscription).clone()
    }

    /// Sends `command` (built around its reply channel) to call `id`'s driver and waits for
    /// the answer: 404 for an unknown call.
    pub(crate) async fn ask<T>(
        &self,
        id: &str,
        command: impl FnOnce(oneshot::Sender<Result<T, AcsApiError>>) -> AcsCommand,
    ) -> Result<T, AcsApiError> {
        let control = lock(&self.calls)
            .get(id)
            .map(|c| c.control.clone())
            .ok_or_else(|| unknown_call(id))?;
        let (tx, rx) = oneshot::channel();
        control.send(command(tx)).map_err(|_| unknown_call(id))?;
        rx.await.map_err(|_| unknown_call(id))?
    }

    /// Registers the bot's Event Grid endpoint after the validation handshake.
    pub async fn subscribe(&self, endpoint: &str) -> Result<(), AcsApiError> {
        check_url(endpoint, "endpoint", &["http", "https"])?;
        self.events
            .validate_subscription(endpoint)
            .await
            .map_err(|e| {
                AcsApiError::bad_request(format!(
                    "the endpoint did not complete Event Grid's validation handshake: {e}"
                ))
            })?;
        *lock(&self.subscription) = Some(endpoint.to_owned());
        tracing::info!(%endpoint, "ACS Event Grid subscription validated");
        Ok(())
    }

    /// Records `recording_id` as call `call_id`'s.
    pub(crate) fn add_recording(&self, recording_id: &str, call_id: &str) {
        lock(&self.recordings).insert(recording_id.to_owned(), call_id.to_owned());
    }

    /// Forgets a stopped recording.
    pub(crate) fn remove_recording(&self, recording_id: &str) {
        lock(&self.recordings).remove(recording_id);
    }

    /// The call a recording belongs to.
    pub fn recording_call(&self, recording_id: &str) -> Option<String> {
        lock(&self.recordings).get(recording_id).cloned()
    }
}

/// ACS's answer for an unknown call connection.
pub fn unknown_call(id: &str) -> AcsApiError {
    AcsApiError::not_found(format!("Call connection {id} not found."))
}

/// A callback or transport URL: `https`/`wss` anywhere is ACS's rule; the emulator takes
/// plain `http`/`ws` on loopback too, as it does for Graph callbacks.
pub fn check_url(value: &str, field: &str, schemes: &[&str]) -> Result<url::Url, AcsApiError> {
    let url = url::Url::parse(value)
        .map_err(|e| AcsApiError::bad_request(format!("{field}: {value:?} is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    let scheme = url.scheme();
    let ok = schemes.contains(&scheme)
        && match scheme {
            "https" => url.host().is_some(),
            "http" | "ws" => loopback,
            _ => false,
        };
    if !ok {
        return Err(AcsApiError::bad_request(format!(
            "{field}: {value:?} must be {} (plain http/ws only on loopback: 127.0.0.0/8, ::1, localhost)",
            schemes.join(" or ")
        )));
    }
    Ok(url)
}

/// Checks a call's streaming options: the transport, its type and content.
pub(crate) fn check_streaming(options: &MediaStreamingOptions) -> Result<(), AcsApiError> {
    if !options.transport_type.eq_ignore_ascii_case("websocket") {
        return Err(AcsApiError::bad_request(format!(
            "mediaStreamingOptions.transportType: {:?} is not websocket",
            options.transport_type
        )));
    }
    if !options.content_type.eq_ignore_ascii_case("audio") {
        return Err(AcsApiError::bad_request(format!(
            "mediaStreamingOptions.contentType: {:?} is not audio",
            options.content_type
        )));
    }
    // The emulator's socket client speaks ws:// only: the bot is on this machine.
    check_url(
        &options.transport_url,
        "mediaStreamingOptions.transportUrl",
        &["ws"],
    )?;
    Ok(())
}

/// What a new call connection needs besides its parties.
pub(crate) struct NewCall {
    pub callback_uri: String,
    pub operation_context: Option<String>,
    pub streaming: Option<MediaStreamingOptions>,
    pub source: Identifier,
    pub targets: Vec<AcsParty>,
    pub connected: Vec<AcsParty>,
    pub source_caller_id_number: Option<appmedia_acs::models::PhoneNumber>,
    pub source_display_name: Option<String>,
    pub ids: CallIdentity,
}

/// Starts a call connection: its media, its registry entry and its driver; returns its
/// properties (state `connecting`).
pub(crate) fn start_call(
    shared: &Arc<Shared>,
    call: NewCall,
) -> Result<CallConnectionProperties, AcsApiError> {
    let acs = &shared.acs;
    let id = call.ids.call_connection_id.clone();
    let options = AcsMediaOptions {
        rate: StreamRate::from_hz(
            call.streaming
                .as_ref()
                .and_then(|s| s.audio_format)
                .map_or(16_000, |f| f.sample_rate()),
        ),
        unmixed: call.streaming.as_ref().is_some_and(|s| {
            s.audio_channel_type == appmedia_acs::models::AudioChannelType::Unmixed
        }),
        max_parties: call.targets.len() + call.connected.len() + 8,
        recording: shared
            .config
            .recordings_dir
            .as_ref()
            .map(|dir| RecordingConfig::new(dir, &id)),
    };
    let (media, media_events) = AcsMedia::start(&shared.conferences, &acs.gateways, options)
        .map_err(|e| AcsApiError::internal(e.to_string()))?;
    let properties = CallConnectionProperties {
        call_connection_id: id.clone(),
        server_call_id: Some(call.ids.server_call_id.clone()),
        targets: call.targets.iter().map(|t| t.identifier.clone()).collect(),
        call_connection_state: Some(CallConnectionState::Connecting),
        callback_uri: Some(call.callback_uri.clone()),
        source_caller_id_number: call.source_caller_id_number.clone(),
        source_display_name: call.source_display_name.clone(),
        source: Some(call.source.clone()),
        correlation_id: Some(call.ids.correlation_id.clone()),
        media_streaming_subscription: call.streaming.as_ref().map(|_| MediaStreamingSubscription {
            id: Some(uuid::Uuid::new_v4().to_string()),
            state: Some("inactive".into()),
            subscribed_content_types: vec!["audio".into()],
        }),
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    lock(&acs.calls).insert(
        id.clone(),
        AcsCallEntry {
            control: control_tx,
            properties: properties.clone(),
            participants: Vec::new(),
            stream: media.stats_handle(),
            timeline: media.timeline_handle(),
        },
    );
    let queue = acs.events.start_call(call.callback_uri.clone());
    let plan = AcsPlan {
        ids: call.ids,
        operation_context: call.operation_context,
        source: call.source,
        targets: call.targets,
        connected: call.connected,
        streaming: call.streaming,
        subscription_id: properties
            .media_streaming_subscription
            .as_ref()
            .and_then(|s| s.id.clone())
            .unwrap_or_default(),
    };
    tokio::spawn(driver::run(
        shared.clone(),
        plan,
        media,
        media_events,
        control_rx,
        queue,
    ));
    tracing::info!(call = %id, "ACS call connection started");
    Ok(properties)
}

/// `POST /calling/callConnections`: checks the request, resolves the targets and starts
/// the call.
pub(crate) fn create_call(
    shared: &Arc<Shared>,
    request: CreateCallRequest,
) -> Result<CallConnectionProperties, AcsApiError> {
    let acs = &shared.acs;
    check_url(&request.callback_uri, "callbackUri", &["https", "http"])?;
    if request.targets.is_empty() {
        return Err(AcsApiError::bad_request(
            "targets: at least one target is required",
        ));
    }
    if let Some(options) = &request.media_streaming_options {
        check_streaming(options)?;
    }
    let mut targets = Vec::with_capacity(request.targets.len());
    for (i, target) in request.targets.iter().enumerate() {
        if let Identifier::PhoneNumber(number) = target {
            match &request.source_caller_id_number {
                None => {
                    return Err(AcsApiError::bad_request(format!(
                        "targets[{i}]: calling phone number {number} needs sourceCallerIdNumber (the resource's number {})",
                        acs.resource.phone_number
                    )));
                }
                Some(source) if source.value != acs.resource.phone_number => {
                    return Err(AcsApiError::bad_request(format!(
                        "sourceCallerIdNumber: {} is not a number of this resource (it has {})",
                        source.value, acs.resource.phone_number
                    )));
                }
                Some(_) => {}
            }
        }
        let party = find_party(shared.directory(), target)
            .map_err(|e| AcsApiError::bad_request(format!("targets[{i}]: {e}")))?;
        targets.push(party);
    }
    let id = uuid::Uuid::new_v4().to_string();
    start_call(
        shared,
        NewCall {
            callback_uri: request.callback_uri,
            operation_context: request.operation_context,
            streaming: request.media_streaming_options,
            source: bot_identity(&acs.resource),
            targets,
            connected: Vec::new(),
            source_caller_id_number: request.source_caller_id_number,
            source_display_name: request.source_display_name,
            ids: CallIdentity {
                server_call_id: server_call_id(&id),
                call_connection_id: id,
                correlation_id: uuid::Uuid::new_v4().to_string(),
            },
        },
    )
}

/// The bot's own identity in its calls (ACS names a Call Automation application
/// `28:acs:{resource}_{app}`).
pub fn bot_identity(resource: &AcsResource) -> Identifier {
    Identifier::from_raw_id(&format!("28:acs:{}_callautomation", resource.resource_id))
}

/// A server call id (ACS's are base64 of a URL; any opaque text will do).
pub(crate) fn server_call_id(call_connection_id: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "https://emulator.local/conversations/{call_connection_id}"
    ))
}

/// 409 for an operation on a call in the wrong state.
pub(crate) fn wrong_state(what: &str) -> AcsApiError {
    AcsApiError::new(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("{what}: the call is not connected"),
    )
}
