//! The HTTP service: routes, handlers and the running [`Emulator`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_model::{Call, Participant};
use appmedia_signalling::auth::{PublishedKeys, TokenIssuer};
use appmedia_signalling::permissions::{PermissionError, RequiredPermissions, check_token_claims};
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::admission::admit;
use crate::directory::{Behaviour, Directory, Sound};
use crate::driver::{CallPlan, Control, Faults, run_call};
use crate::error::ApiError;
use crate::media::{MediaError, MediaPeer, is_appmedia_blob};
use crate::notify::{DeliveryStats, Destination, Notifier, RetryPolicy};
use crate::service_media::{CallMedia, MediaTimeline, PartyMedia, PromptLibrary, ServiceMedia};
use crate::shapes::{self, CallIds, MeetingContext};
use crate::tokens::{AccessClaims, GraphTokens};
use appmedia_audio_io::playback::AudioClip;
use appmedia_audio_io::record::RecordingConfig;
use appmedia_emulator_media::PartyAudio;
use appmedia_emulator_media::driver::ConferenceScheduler;
use appmedia_media::scheduler::SchedulerConfig;
use appmedia_transport::TransportConfig;
use std::path::PathBuf;

/// The default issuer (`iss`) of notification tokens: the one Graph uses.
pub const DEFAULT_NOTIFICATION_ISSUER: &str = "https://api.botframework.com";

/// How the emulator runs.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// Where to listen; loopback by default. Port 0 picks a free port.
    pub bind: SocketAddr,
    /// The URL clients reach the emulator at (default: `http://{bound address}`).
    pub public_base_url: Option<String>,
    /// Users, applications, meetings and their scripts.
    pub directory: Directory,
    /// `iss` of notification tokens.
    pub notification_issuer: String,
    /// Lifetime of issued access tokens.
    pub token_lifetime: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How notifications to a failing callback are retried.
    pub retry: RetryPolicy,
    /// Ringing timeout when the request sets none.
    pub default_ringing_timeout: Duration,
    /// A call that gets no `keepAlive` for this long ends (Graph: 45 minutes).
    pub keep_alive_timeout: Duration,
    /// The longest a conversation the bot transferred away goes on without it
    /// ([`crate::transferred`]).
    pub transferred_call_limit: Duration,
    /// Fault injection.
    pub faults: Faults,
    /// Where the files parties speak (`media = { speak = "…" }`) are.
    pub media_samples_dir: PathBuf,
    /// Where calls are recorded: the bot as `{call id}-speaker-1.wav`, everyone as `{call id}-mixed.wav`; `None`: not recorded.
    pub recordings_dir: Option<PathBuf>,
    /// The emulator's side of app-hosted media sessions.
    pub transport: TransportConfig,
    /// How long an incoming call rings the bot before it ends unanswered (Graph: 15 s).
    pub incoming_answer_timeout: Duration,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_base_url: None,
            directory: Directory::seed(),
            notification_issuer: DEFAULT_NOTIFICATION_ISSUER.to_owned(),
            token_lifetime: Duration::from_secs(3600),
            max_body_bytes: 64 * 1024,
            retry: RetryPolicy::default(),
            default_ringing_timeout: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(45 * 60),
            transferred_call_limit: Duration::from_secs(10 * 60),
            faults: Faults::default(),
            media_samples_dir: PathBuf::from("media-samples"),
            recordings_dir: None,
            transport: TransportConfig::default(),
            incoming_answer_timeout: Duration::from_secs(15),
        }
    }
}

/// Why the emulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A signing key could not be made.
    #[error("signing key: {0}")]
    Key(#[from] appmedia_signalling::auth::IssuerError),
    /// A file a party speaks could not be read.
    #[error("media sample {path}: {reason}")]
    MediaSample {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The conference media scheduler could not start.
    #[error("conference scheduler: {0}")]
    Scheduler(appmedia_media::scheduler::SchedulerError),
    /// The HTTP client for notifications could not be built.
    #[error(transparent)]
    Http(#[from] appmedia_signalling::HttpClientError),
}

/// A call the service knows.
#[derive(Debug)]
pub(crate) struct CallRecord {
    pub app_id: String,
    /// The tenant the call lives in: only tokens of `app_id` for this tenant reach it.
    pub tenant_id: String,
    pub resource: Call,
    pub participants: Vec<Participant>,
    pub control: mpsc::UnboundedSender<Control>,
    /// The emulator's media peer, for app-hosted calls with an appmedia blob.
    pub media: Option<MediaPeer>,
    /// The emulator playing prompts, for service-hosted calls.
    pub service: Option<ServiceMedia>,
}

impl CallRecord {
    /// The call's conference, whoever hosts the bot's side of the media.
    pub(crate) fn conference(&self) -> Option<&appmedia_emulator_media::ConferenceControl> {
        (self.media.as_ref().map(MediaPeer::control))
            .or_else(|| self.service.as_ref().map(ServiceMedia::control))
    }

    /// When each party of the call first spoke.
    pub(crate) fn timeline(&self) -> Option<&MediaTimeline> {
        (self.media.as_ref().map(MediaPeer::timeline))
            .or_else(|| self.service.as_ref().map(ServiceMedia::timeline))
    }
}

/// State shared by the handlers and the call drivers.
#[derive(Debug)]
pub struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) base_url: String,
    tokens: GraphTokens,
    notifier: Arc<Notifier>,
    calls: Mutex<HashMap<String, CallRecord>>,
    /// The files parties speak, decoded once at start.
    clips: HashMap<String, AudioClip>,
    /// Ticks every call's conference media.
    pub(crate) conferences: ConferenceScheduler,
    /// What `recordResponse` recorded, served at `recordingLocation`.
    pub(crate) responses: Arc<crate::service_actions::ResponseStore>,
    /// Conversations the bot transferred away, still running.
    pub(crate) transferred: crate::transferred::Transferred,
    /// Service-hosted prompts, decoded once.
    pub(crate) prompt_library: PromptLibrary,
    /// Open softphone pages (`GET /softphone`).
    softphones: crate::softphone::Softphones,
    /// The per-run secret the softphone page's URL carries (`?key=`), without which its
    /// WebSocket is refused: another web page the developer visits cannot join calls.
    pub(crate) softphone_key: String,
    /// Calling webhooks and the calls ringing a bot.
    incoming: crate::incoming::IncomingState,
    /// The control API's view of every call.
    book: crate::control::CallBook,
}

impl Shared {
    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.config.directory
    }

    /// What a party does with its microphone, from the directory's `media` setting.
    pub(crate) fn party_audio(&self, sound: &Sound) -> PartyAudio {
        match sound {
            Sound::Silent => PartyAudio::Silence,
            // One frame: the shortest echo, what the bot said heard right back.
            Sound::Echo => PartyAudio::Echo {
                delay: Duration::from_millis(20),
            },
            // Longer than the emulator-media maximum: that maximum (the build refuses it).
            Sound::EchoAfterMs(ms) => PartyAudio::Echo {
                delay: Duration::from_millis(*ms)
                    .min(appmedia_emulator_media::party::MAX_ECHO_DELAY),
            },
            // Every spoken file was decoded at start; a miss cannot happen, but is silence.
            Sound::Speak(file) => {
                self.clips
                    .get(file)
                    .map_or(PartyAudio::Silence, |clip| PartyAudio::Speak {
                        clip: clip.clone(),
                        looped: false,
                        start_after: Duration::ZERO,
                    })
            }
        }
    }

    /// Open softphone pages and the calls they may join.
    pub(crate) fn softphones(&self) -> &crate::softphone::Softphones {
        &self.softphones
    }

    /// Calling webhooks and the calls ringing a bot.
    pub(crate) fn incoming(&self) -> &crate::incoming::IncomingState {
        &self.incoming
    }

    /// The control API's view of every call.
    pub(crate) fn book(&self) -> &crate::control::CallBook {
        &self.book
    }

    /// What signs and delivers notifications.
    pub(crate) fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// A new call.
    pub(crate) fn insert_call(&self, id: &str, record: CallRecord) {
        self.calls().insert(id.to_owned(), record);
    }

    /// The control channel of a live call.
    pub(crate) fn call_control(&self, id: &str) -> Option<mpsc::UnboundedSender<Control>> {
        self.calls().get(id).map(|r| r.control.clone())
    }

    /// The clock conference ticks see (packets are stamped with it on arrival).
    pub(crate) fn conference_epoch(&self) -> std::time::Instant {
        self.conferences.epoch()
    }

    /// The emulator's side of media sessions.
    pub(crate) fn transport_config(&self) -> TransportConfig {
        self.config.transport.clone()
    }

    fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallRecord>> {
        // A handler that panicked mid-update leaves a usable map; keep serving.
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn update_call(&self, id: &str, f: impl FnOnce(&mut CallRecord)) {
        if let Some(record) = self.calls().get_mut(id) {
            f(record);
        }
    }

    pub(crate) fn remove_call(&self, id: &str) {
        // Dropped outside the lock: the media peer's drop stops its thread and session.
        let removed = self.calls().remove(id);
        drop(removed);
    }
}

/// A running emulator. Dropping it stops the listener.
#[derive(Debug)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl Emulator {
    /// Binds, generates the signing keys and starts serving.
    pub async fn start(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        // A missing or unreadable sample is a setup error, reported before anything listens.
        let mut clips = HashMap::new();
        for file in config.directory.spoken_files() {
            let path = config.media_samples_dir.join(file);
            let clip = AudioClip::open(&path).map_err(|e| EmulatorError::MediaSample {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            clips.insert(file.to_owned(), clip);
        }
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let base_url = config
            .public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"))
            .trim_end_matches('/')
            .to_owned();
        // RSA key generation is CPU work; keep it off the async workers.
        let (graph_issuer, notification_issuer) = tokio::task::spawn_blocking(|| {
            Ok::<_, EmulatorError>((
                TokenIssuer::generate(format!("emulator-graph-{}", uuid::Uuid::new_v4()))?,
                TokenIssuer::generate(format!("emulator-notify-{}", uuid::Uuid::new_v4()))?,
            ))
        })
        .await
        .map_err(|e| {
            EmulatorError::Key(appmedia_signalling::auth::IssuerError::Generate(
                e.to_string(),
            ))
        })??;
        let notification_keys = PublishedKeys::new();
        notification_keys.publish(&notification_issuer);
        let notifier = Arc::new(Notifier::new(
            notification_issuer,
            config.notification_issuer.clone(),
            config.retry,
        )?);
        // One worker: a conference tick is well under a millisecond, and the machine is shared.
        let conferences = ConferenceScheduler::start(SchedulerConfig {
            workers: 1,
            ..SchedulerConfig::default()
        })
        .map_err(EmulatorError::Scheduler)?;
        let shared = Arc::new(Shared {
            tokens: GraphTokens::new(graph_issuer, base_url.clone(), config.token_lifetime),
            notifier,
            base_url,
            calls: Mutex::new(HashMap::new()),
            clips,
            conferences,
            responses: Arc::new(crate::service_actions::ResponseStore::new(
                config.recordings_dir.clone(),
            )),
            transferred: Default::default(),
            prompt_library: PromptLibrary::default(),
            softphones: Default::default(),
            softphone_key: uuid::Uuid::new_v4().simple().to_string(),
            incoming: crate::incoming::IncomingState::new(&config.directory),
            book: Default::default(),
            config,
        });
        crate::incoming::schedule_scripted(&shared);
        let app = router(shared.clone(), &notification_keys);
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "emulator listener failed");
            }
        });
        tracing::info!(%addr, "Graph calling emulator listening");
        Ok(Emulator {
            addr,
            shared,
            shutdown: Some(tx),
            server,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The service root, e.g. `http://127.0.0.1:8642`.
    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The web softphone page, with this run's key: `{base}/softphone?key=…` (the page's
    /// WebSocket is refused without it).
    pub fn softphone_url(&self) -> String {
        format!(
            "{}/softphone?key={}",
            self.shared.base_url, self.shared.softphone_key
        )
    }

    /// This run's softphone key (see [`softphone_url`](Self::softphone_url)).
    pub fn softphone_key(&self) -> &str {
        &self.shared.softphone_key
    }

    /// The Graph root: `{base}/v1.0`.
    pub fn graph_url(&self) -> String {
        format!("{}/v1.0", self.shared.base_url)
    }

    /// The control API's root, `{base}/control` (`crate::control`): calling webhooks,
    /// incoming calls, the emulator's view of every call.
    pub fn control_url(&self) -> String {
        format!("{}/control", self.shared.base_url)
    }

    /// Where the OAuth2 host is (`{authority}/{tenant}/oauth2/v2.0/token`).
    pub fn authority_url(&self) -> &str {
        &self.shared.base_url
    }

    /// The token endpoint of `tenant`.
    pub fn token_url(&self, tenant: &str) -> String {
        format!("{}/{tenant}/oauth2/v2.0/token", self.shared.base_url)
    }

    /// The OpenID configuration document naming the keys of notification tokens.
    pub fn notification_openid_configuration_url(&self) -> String {
        format!(
            "{}{}",
            self.shared.base_url,
            appmedia_signalling::auth::OPENID_CONFIGURATION_PATH
        )
    }

    /// The issuer written into notification tokens.
    pub fn notification_issuer(&self) -> &str {
        self.shared.notifier.issuer_name()
    }

    /// The directory in use.
    pub fn directory(&self) -> &Directory {
        self.shared.directory()
    }

    /// Notification delivery counters.
    pub fn delivery_stats(&self) -> Arc<DeliveryStats> {
        self.shared.notifier.stats().clone()
    }

    /// The media timeline of live call `call_id` (app- or service-hosted media; `None` for
    /// an unknown call or one without media): per party in the roster, the [`std::time::Instant`]
    /// its first audible sample entered the conference ("mouth"), on the process clock, for
    /// mouth-to-ear latency. Ask before hanging up: a terminated call is forgotten.
    pub fn call_media(&self, call_id: &str) -> Option<CallMedia> {
        let calls = self.shared.calls();
        let record = calls.get(call_id)?;
        let timeline = record.timeline()?;
        let parties = record
            .participants
            .iter()
            .filter_map(|p| {
                let source_id =
                    shapes::source_id_of(p).filter(|&s| s != crate::media::BOT_SOURCE_ID)?;
                Some(PartyMedia {
                    participant_id: p.id.value().cloned().unwrap_or_default(),
                    source_id,
                    first_audio_at: timeline.first_audio(source_id),
                })
            })
            .collect();
        Some(CallMedia { parties })
    }

    /// Sets application `app_id`'s calling webhook, as `PUT {control_url}/applications/{appId}/
    /// calling-webhook` does: incoming calls to the application are offered there.
    pub fn set_calling_webhook(&self, app_id: &str, url: &str) -> Result<(), ApiError> {
        let app = self
            .directory()
            .application(app_id)
            .map(|a| a.id.clone())
            .ok_or_else(|| {
                ApiError::not_found(format!("application {app_id} is not in the directory"))
            })?;
        crate::directory::check_webhook(url)
            .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
        self.shared
            .incoming()
            .set_webhook(&app, Some(url.to_owned()));
        Ok(())
    }

    /// How many calls are live.
    pub fn live_calls(&self) -> usize {
        self.shared.calls().len()
    }

    /// How many conversations the bot transferred away still run ([`crate::transferred`]).
    pub fn transferred_calls(&self) -> usize {
        self.shared.transferred.live()
    }

    /// The open softphone pages (`GET /softphone`): who they are, the call they are in, the
    /// browser's latest audio report.
    pub fn softphones(&self) -> Vec<crate::softphone::SoftphoneStatus> {
        self.shared.softphones.status()
    }

    /// Stops accepting requests and waits for the listener to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn router(shared: Arc<Shared>, notification_keys: &PublishedKeys) -> Router {
    let graph = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/{tenant}/discovery/v2.0/keys", get(graph_keys))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(graph_openid_configuration),
        )
        .route("/v1.0/communications/calls", post(create_call))
        .route(
            "/v1.0/communications/calls/{id}",
            get(get_call).delete(delete_call),
        )
        .route(
            "/v1.0/communications/calls/{id}/participants",
            get(list_participants),
        )
        .merge(crate::actions::routes())
        .route(
            "/v1.0/communications/calls/{id}/playPrompt",
            post(crate::service_media::play_prompt),
        )
        .route(
            "/v1.0/communications/calls/{id}/cancelMediaProcessing",
            post(crate::service_media::cancel_media_processing),
        )
        .merge(crate::incoming::handlers::routes())
        .merge(crate::online_meetings::routes())
        .fallback(not_found)
        .with_state(shared.clone());
    // The notification issuer's OpenID document and JWKS live at the root, where
    // `PublishedKeys` serves them.
    graph
        .merge(notification_keys.router(&shared.config.notification_issuer))
        .merge(crate::softphone::router(shared.clone()))
        .merge(crate::control::router(shared.clone()))
}

/// A request's correlation id: the caller's `client-request-id` when it sent one.
pub(crate) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn not_found(headers: HeaderMap) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "UnknownError",
        "no such resource in the emulated Graph API",
    )
    .into_response_with(&request_id(&headers))
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    body: Body,
) -> Response {
    let form = match axum::body::to_bytes(body, shared.config.max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(
                    json!({"error": "invalid_request", "error_description": "body too large"}),
                ),
            )
                .into_response();
        }
    };
    match shared
        .tokens
        .token_request(shared.directory(), &tenant, &form)
    {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => (e.status, axum::Json(e.body())).into_response(),
    }
}

async fn graph_keys(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.tokens.jwks()).into_response()
}

async fn graph_openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
) -> Response {
    axum::Json(shared.tokens.openid_configuration(&tenant)).into_response()
}

/// The verified claims of an application token (401 for a bad token, 403 for a delegated one
/// or one without application permissions): every calling route needs one, as Graph's do.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<AccessClaims, ApiError> {
    authenticate_for(shared, headers, &RequiredPermissions::default())
}

/// [`authenticate`], and the token grants `required` (403 naming what is missing).
pub(crate) fn authenticate_for(
    shared: &Shared,
    headers: &HeaderMap,
    required: &RequiredPermissions,
) -> Result<AccessClaims, ApiError> {
    let claims = shared.tokens.verify(authorization(headers))?;
    check_token_claims(&claims.all, required).map_err(permission_error)?;
    Ok(claims)
}

/// The 403 for a token that may not make a request.
pub(crate) fn permission_error(e: PermissionError) -> ApiError {
    match e {
        PermissionError::DelegatedToken { .. } => ApiError::forbidden(format!(
            "Delegated authentication is not supported for calls: {e}"
        )),
        other => ApiError::forbidden(other.to_string()),
    }
}

async fn create_call(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let request_id = request_id(&headers);
    match create_call_inner(&shared, &headers, body).await {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(%request_id, status = %e.status, message = %e.message, "create call refused");
            e.into_response_with(&request_id)
        }
    }
}

async fn create_call_inner(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let claims = authenticate(shared, headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            format!("Content-Type {content_type:?}: the body must be application/json"),
        ));
    }
    let cap = shared.config.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!("the body is larger than {cap} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, cap)
        .await
        .map_err(|_| too_large())?;

    let admitted = admit(shared.directory(), &claims, &bytes)?;
    let ids = CallIds {
        id: uuid::Uuid::new_v4().to_string(),
        call_chain_id: uuid::Uuid::new_v4().to_string(),
        my_participant_id: uuid::Uuid::new_v4().to_string(),
    };
    let mut resource = shapes::created_call(&admitted, &ids);
    let parties: Vec<(crate::admission::Party, Behaviour)> = admitted
        .parties
        .iter()
        .map(|party| {
            let behaviour = match party {
                crate::admission::Party::User { id, .. } => {
                    shared.directory().user(id).map(|u| u.behaviour.clone())
                }
                crate::admission::Party::Phone { number } => shared
                    .directory()
                    .phone(number)
                    .map(|p| p.behaviour.clone()),
            };
            (party.clone(), behaviour.unwrap_or_default())
        })
        .collect();
    let media = start_media(shared, &ids.id, &mut resource, &parties).await?;
    let max_parties = parties.len() + shared.directory().users.len();
    let service = ServiceMedia::start(shared, &ids.id, &resource, max_parties).await?;
    let callback_uri = admitted
        .request
        .callback_uri
        .value()
        .cloned()
        .unwrap_or_default();
    let options = admitted.request.call_options.value();
    let flag = |get: fn(&appmedia_model::CallOptions) -> &appmedia_model::Nullable<bool>| {
        options
            .and_then(|o| get(o).value().copied())
            .unwrap_or(false)
    };
    let meeting = admitted.meeting.clone().map(|meeting| {
        (
            MeetingContext {
                // The seed's meeting notifications carry chatInfo without replyChainMessageId.
                chat_info: appmedia_model::ChatInfo::new(&meeting.thread_id, "0"),
                meeting_info: shapes::organizer_meeting_info(
                    shared.directory(),
                    &meeting.organizer,
                ),
            },
            meeting,
        )
    });
    let ringing_timeout = admitted
        .request
        .ringing_timeout_in_seconds
        .value()
        .map(|s| Duration::from_secs(u64::from(*s)))
        .unwrap_or(shared.config.default_ringing_timeout);
    let plan = CallPlan {
        call_id: ids.id.clone(),
        callback_uri: callback_uri.clone(),
        kind: admitted.kind,
        bot_identity: shapes::bot_identity(&admitted),
        my_participant_id: ids.my_participant_id.clone(),
        parties,
        meeting,
        delta_roster: flag(|o| &o.is_delta_roster_enabled),
        content_sharing: flag(|o| &o.is_content_sharing_notification_enabled),
        ringing_timeout,
        faults: shared.config.faults,
        caller_page: None,
    };
    let (control_tx, control_rx) = mpsc::unbounded_channel();
    let (notify_tx, _delivery) = shared.notifier.start_call(Destination {
        callback_uri,
        app_id: admitted.application.id.clone(),
        tenant_id: admitted.tenant_id.clone(),
    });
    if let Some(service) = &service {
        service.attach_notifications(notify_tx.clone());
    }
    shared.calls().insert(
        ids.id.clone(),
        CallRecord {
            app_id: admitted.application.id.clone(),
            tenant_id: admitted.tenant_id.clone(),
            resource: resource.clone(),
            participants: Vec::new(),
            control: control_tx,
            media,
            service,
        },
    );
    let view = crate::control::CallView::outgoing(&ids.id, &admitted.application.id);
    shared.book().open(view);
    tracing::info!(call = %ids.id, kind = ?admitted.kind, app = %admitted.application.id, "call created");
    tokio::spawn(run_call(shared.clone(), plan, control_rx, notify_tx));

    let location = format!("{}/v1.0/communications/calls/{}", shared.base_url, ids.id);
    let mut response = (StatusCode::CREATED, axum::Json(resource)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Becomes the bot's media peer when the call has app-hosted media with an appmedia blob:
/// the answer blob replaces the offer in the 201 body's `mediaConfig` (`docs/blob.md`).
pub(crate) async fn start_media(
    shared: &Shared,
    call_id: &str,
    resource: &mut Call,
    parties: &[(crate::admission::Party, Behaviour)],
) -> Result<Option<MediaPeer>, ApiError> {
    let Some(appmedia_model::MediaConfig::AppHosted(config)) = resource.media_config.value_mut()
    else {
        return Ok(None);
    };
    let Some(offer) = config.blob.value().filter(|b| is_appmedia_blob(b)).cloned() else {
        return Ok(None);
    };
    let recording = shared.config.recordings_dir.as_ref().map(|dir| {
        // The mixed track is everyone; the bot alone is its speaker track.
        RecordingConfig::new(dir, call_id)
    });
    // Called parties, and meeting participants that may join later.
    let max_parties = parties.len() + shared.directory().users.len();
    let (peer, answer) = MediaPeer::answer(
        shared.config.transport.clone(),
        &offer,
        &shared.conferences,
        max_parties,
        recording,
    )
    .await
    .map_err(|e| match e {
        MediaError::Offer(_) => ApiError::bad_request(e.to_string()),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            other.to_string(),
        ),
    })?;
    config.blob = answer.into();
    tracing::info!(call = %call_id, recording = ?peer.recording(), "media peer answered the bot's offer");
    Ok(Some(peer))
}

/// The caller's call `id`, or 404 (a call of another application, or of the same application
/// in another tenant, is not visible).
pub(crate) fn with_call<T>(
    shared: &Shared,
    claims: &AccessClaims,
    id: &str,
    f: impl FnOnce(&CallRecord) -> T,
) -> Result<T, ApiError> {
    let calls = shared.calls();
    calls
        .get(id)
        .filter(|record| {
            record.app_id.eq_ignore_ascii_case(&claims.app_id)
                && record.tenant_id.eq_ignore_ascii_case(&claims.tenant_id)
        })
        .map(f)
        .ok_or_else(|| ApiError::not_found(format!("call {id} does not exist")))
}

async fn get_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&shared, &headers)
        .and_then(|claims| with_call(&shared, &claims, &id, |r| r.resource.clone()));
    match result {
        Ok(call) => axum::Json(call).into_response(),
        Err(e) => e.into_response_with(&request_id),
    }
}

async fn delete_call(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&shared, &headers).and_then(|claims| {
        with_call(&shared, &claims, &id, |record| {
            // A driver that already ended has dropped its receiver; the call is gone anyway.
            let _ = record.control.send(Control::HangUp);
        })
    });
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response_with(&request_id),
    }
}

async fn list_participants(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let request_id = request_id(&headers);
    let result = authenticate(&shared, &headers)
        .and_then(|claims| with_call(&shared, &claims, &id, |r| r.participants.clone()));
    match result {
        Ok(participants) => axum::Json(json!({
            "@odata.context": format!(
                "https://graph.microsoft.com/v1.0/$metadata#communications/calls('{id}')/participants"
            ),
            "value": participants,
        }))
        .into_response(),
        Err(e) => e.into_response_with(&request_id),
    }
}
