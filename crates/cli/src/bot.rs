//! The bot side of an app-hosted call, shared by `demo`, `record` and `play`: where the calling
//! service is (the emulator in-process, or a configured endpoint), the callback receiver that
//! validates the service's notification tokens, the Graph client with client credentials, the
//! call request (peer-to-peer, PSTN or meeting join, from the signalling crate's builders), the
//! WebRTC media session (offer in the blob, answer from the 201), and the 20 ms media loop that
//! feeds the call's pipeline to a recorder, prompts, a microphone, speakers and a level meter.
//!
//! A "configured Graph endpoint" for media means a running `appmedia emulator`: the real
//! Microsoft Graph only accepts blobs made by Microsoft's .NET media platform, not this
//! project's blob (docs/local-audio.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use appmedia_audio_io::device::{DeviceConfig, MicSource, Microphone, SpeakerFeed, Speakers};
use appmedia_audio_io::playback::PromptPlayer;
use appmedia_audio_io::record::{
    CallRecorder, RecordingConfig, RecordingSink, RecordingStatus, Track,
};
use appmedia_emulator::directory::Sound;
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_media::frame::{FRAME_DURATION, Frame48, SILENT_FRAME_48};
use appmedia_media::pipeline::{
    BotAudioFormat, CallPipeline, PipelineConfig, PipelineStats, StreamStats,
};
use appmedia_model::{CallState, Identity, IdentitySet, MediaConfig, ParticipantInfo};
use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackTokenValidator, ClientCredentials,
    OPENID_CONFIGURATION_PATH, TenantPolicy, TokenSource,
};
use appmedia_signalling::builders::{
    JoinMeetingIdBuilder, Media, PeerToPeerCallBuilder, PstnCallBuilder,
};
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_transport::{MediaSession, TransportConfig};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::meter::LevelMeter;

/// The seed directory's tenant, bot application and its secret: the defaults, so that every
/// command works against the emulator with no flags.
pub const SEED_TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
pub const SEED_BOT_APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const SEED_BOT_SECRET: &str = "calling-bot-secret";
/// The seed's application instance that owns the bot's phone number (PSTN calls come from it).
const SEED_APP_INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
/// The seed's user John, called when no target is given.
pub const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
/// What John says in the embedded emulator (relative to --media-samples).
pub const JOHN_SPEAKS: &str = "john-speech.wav";
/// What a called phone says in the embedded emulator.
const PHONE_SPEAKS: &str = "jane-speech.wav";

/// How many unmixed per-speaker streams the bot offers to receive (Graph gives four).
const UNMIXED_STREAMS: usize = 8;

/// Where the calling service is and who the bot is. Without `--graph-url` the emulator runs
/// in-process with the built-in directory (John speaks `john-speech.wav`).
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Graph root of a running calling service, e.g. http://127.0.0.1:8642/v1.0 for `appmedia
    /// emulator` (default: start the emulator in-process).
    #[arg(long, env = "APPMEDIA_GRAPH_URL", value_name = "URL")]
    pub graph_url: Option<String>,
    /// OAuth2 authority: tokens come from {authority}/{tenant}/oauth2/v2.0/token (default: the
    /// origin of --graph-url, which is where the emulator serves them).
    #[arg(long, env = "APPMEDIA_AUTHORITY_URL", value_name = "URL")]
    pub authority_url: Option<String>,
    /// The bot's tenant.
    #[arg(long, env = "APPMEDIA_TENANT", default_value = SEED_TENANT)]
    pub tenant: String,
    /// The bot's application (client) id.
    #[arg(long, env = "APPMEDIA_CLIENT_ID", default_value = SEED_BOT_APP)]
    pub client_id: String,
    /// The bot's client secret.
    #[arg(
        long,
        env = "APPMEDIA_CLIENT_SECRET",
        default_value = SEED_BOT_SECRET,
        hide_default_value = true,
        hide_env_values = true
    )]
    pub client_secret: String,
    /// Address the bot's notification (callback) server binds and advertises: HOST or
    /// HOST:PORT (port 0 or none: a free port).
    #[arg(long, env = "APPMEDIA_CALLBACK_HOST", default_value = "127.0.0.1")]
    pub callback_host: String,
    /// Accepted `iss` of notification tokens (default: the Bot Framework and Graph issuers,
    /// which include the emulator's).
    #[arg(long, env = "APPMEDIA_NOTIFICATION_ISSUER", value_name = "ISS")]
    pub notification_issuer: Option<String>,
    /// OpenID configuration document listing the notification signing keys (default: the
    /// calling service's own, {origin of --graph-url}/.well-known/openid-configuration).
    #[arg(long, env = "APPMEDIA_NOTIFICATION_OPENID_URL", value_name = "URL")]
    pub notification_openid_url: Option<String>,
    /// Where the in-process emulator finds what its parties speak.
    #[arg(long, default_value = "media-samples")]
    pub media_samples: PathBuf,
    /// In-process emulator only: record each call as the emulator hears it into DIR
    /// ({call id}-speaker-1.wav is the bot, {call id}-mixed.wav everyone).
    #[arg(long, value_name = "DIR")]
    pub emulator_recordings: Option<PathBuf>,
    /// In-process emulator only: its directory (tenants, users, phones, meetings and what
    /// each party speaks) from this TOML file instead of the built-in seed.
    #[arg(long, value_name = "FILE", conflicts_with = "graph_url")]
    pub directory: Option<PathBuf>,
}

/// Whom the call is with. With none of these, the bot calls the seed's user John.
#[derive(Debug, Clone, Args)]
pub struct CallArgs {
    /// Peer-to-peer call to this user id.
    #[arg(long, value_name = "USER_ID", conflicts_with_all = ["phone", "join_meeting_id"])]
    pub to: Option<String>,
    /// PSTN call to this E.164 number, from --app-instance.
    #[arg(long, value_name = "+E164", conflicts_with = "join_meeting_id")]
    pub phone: Option<String>,
    /// The application instance that owns the bot's phone number (PSTN calls).
    #[arg(long, value_name = "ID", default_value = SEED_APP_INSTANCE)]
    pub app_instance: String,
    /// Join the meeting with this joinMeetingId.
    #[arg(long, value_name = "ID")]
    pub join_meeting_id: Option<String>,
    /// The meeting's passcode.
    #[arg(long, requires = "join_meeting_id")]
    pub passcode: Option<String>,
    /// Receive unmixed audio: one stream per speaker (recorded one file each), keyed by the
    /// roster's `mediaStreams[].sourceId`. Always on for meeting joins.
    #[arg(long)]
    pub unmixed: bool,
}

impl CallArgs {
    /// A call to the seed's user John (what `demo` makes).
    pub fn john() -> Self {
        CallArgs {
            to: Some(JOHN.to_owned()),
            phone: None,
            app_instance: SEED_APP_INSTANCE.to_owned(),
            join_meeting_id: None,
            passcode: None,
            unmixed: false,
        }
    }

    /// Whether the bot asks for unmixed per-speaker audio: with `--unmixed`, and always in a
    /// meeting, where the mix alone cannot say who spoke.
    pub fn wants_unmixed(&self) -> bool {
        self.unmixed || self.join_meeting_id.is_some()
    }
}

/// `--mic [NAME]` and `--speakers [NAME]`: live devices (names from `appmedia devices`).
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Send this microphone into the call (no NAME: the default input device).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub mic: Option<String>,
    /// Play the call's audio on these speakers (no NAME: the default output device).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub speakers: Option<String>,
}

/// The devices a call uses, opened before the call so that a missing one is an error first.
/// The streams stay here; their tick ends (`mic_source`, `speaker_feed`) go to [`MediaIo`].
#[derive(Default)]
pub struct OpenDevices {
    pub mic: Option<Microphone>,
    pub mic_source: Option<MicSource>,
    pub speakers: Option<Speakers>,
    pub speaker_feed: Option<SpeakerFeed>,
}

impl DeviceArgs {
    /// Opens what was asked for.
    pub fn open(&self) -> Result<OpenDevices, String> {
        let config = |name: &str| DeviceConfig::new((!name.is_empty()).then_some(name));
        let mut devices = OpenDevices::default();
        if let Some(name) = &self.mic {
            let (mic, source) =
                Microphone::open(&config(name)).map_err(|e| format!("--mic: {e}"))?;
            devices.mic = Some(mic);
            devices.mic_source = Some(source);
        }
        if let Some(name) = &self.speakers {
            let (speakers, feed) =
                Speakers::open(&config(name)).map_err(|e| format!("--speakers: {e}"))?;
            devices.speakers = Some(speakers);
            devices.speaker_feed = Some(feed);
        }
        Ok(devices)
    }
}

impl OpenDevices {
    /// Hands the tick ends to the media loop.
    pub fn media_io(&mut self) -> MediaIo {
        MediaIo {
            mic: self.mic_source.take(),
            speakers: self.speaker_feed.take(),
            ..MediaIo::default()
        }
    }

    /// What the devices did, for a summary (`null` when none was used).
    pub fn summary(&self) -> Value {
        let device = |name: &str, rate: u32, c: appmedia_audio_io::device::DeviceCounters| {
            json!({
                "device": name,
                "sample_rate": rate,
                "callbacks": c.callbacks,
                "samples": c.device_samples,
                "underrun_samples": c.underrun_samples,
                "overrun_samples": c.overrun_samples,
            })
        };
        json!({
            "mic": self.mic.as_ref().map(|m| device(m.device(), m.format().sample_rate, m.counters())),
            "speakers": self.speakers.as_ref().map(|s| device(s.device(), s.format().sample_rate, s.counters())),
        })
    }
}

/// The bot: a Graph client and a callback receiver, and the emulator when it runs in-process.
pub struct Bot {
    emulator: Option<Emulator>,
    client: GraphClient,
    receiver: CallbackReceiver,
    events: mpsc::Receiver<CallEvent>,
    callback_uri: String,
    tenant: String,
    service: String,
    start: Instant,
}

/// One app-hosted call whose media is connected; `pipeline` goes to [`run_media`].
pub struct LiveCall {
    pub call_id: String,
    pub session: MediaSession,
    pub pipeline: CallPipeline,
    pub epoch: Instant,
}

/// What happened on the signalling side of a call.
#[derive(Debug, Default)]
pub struct CallLog {
    pub transitions: Vec<Value>,
    pub roster: Vec<String>,
    /// Roster `mediaStreams[].sourceId` of each participant's audio → its display name: who
    /// a speaker track (`Track::Speaker(source id)`) is.
    pub speakers: BTreeMap<u32, String>,
    pub established: bool,
    pub terminated: bool,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `--seconds` ran out.
    Deadline,
    /// Ctrl-C.
    Interrupted,
    /// The other side (or the service) ended the call.
    Terminated,
    /// The command's own work is done (the prompts played).
    Done,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Deadline => "seconds",
            StopReason::Interrupted => "ctrl-c",
            StopReason::Terminated => "terminated",
            StopReason::Done => "done",
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The origin (scheme://host:port) of a URL, where the emulator serves tokens and keys.
fn origin(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("--graph-url {url:?}: {e}"))?;
    let origin = parsed.origin().ascii_serialization();
    if origin == "null" {
        return Err(format!("--graph-url {url:?} has no origin"));
    }
    Ok(origin)
}

impl Bot {
    /// Starts the embedded emulator (unless `--graph-url`), the callback receiver and the client.
    pub async fn start(service: &ServiceArgs) -> Result<Bot, String> {
        let start = Instant::now();
        let (emulator, graph_url, authority, openid) = match &service.graph_url {
            None => {
                let emulator = start_emulator(service).await?;
                let graph = emulator.graph_url();
                let authority = emulator.authority_url().to_owned();
                let openid = emulator.notification_openid_configuration_url();
                (Some(emulator), graph, authority, openid)
            }
            Some(graph) => {
                let origin = origin(graph)?;
                let authority = service.authority_url.clone().unwrap_or(origin.clone());
                let openid = service
                    .notification_openid_url
                    .clone()
                    .unwrap_or(format!("{origin}{OPENID_CONFIGURATION_PATH}"));
                (None, graph.clone(), authority, openid)
            }
        };
        let mut auth = CallbackAuthConfig::new(
            &service.client_id,
            TenantPolicy::Only(vec![service.tenant.clone()]),
        );
        if let Some(iss) = &service.notification_issuer {
            auth.issuers = vec![iss.clone()];
        } else if let Some(emulator) = &emulator {
            auth.issuers = vec![emulator.notification_issuer().to_owned()];
        }
        auth.openid_configuration_url = openid
            .parse()
            .map_err(|e| format!("notification OpenID URL {openid:?}: {e}"))?;
        let validator = CallbackTokenValidator::new(auth).map_err(err)?;
        let (receiver, events) = CallbackReceiver::with_channel(
            CallbackAuth::validate(Arc::new(validator)),
            Arc::new(CallRegistry::default()),
            256,
        );
        let bind = callback_bind(&service.callback_host);
        let listener = tokio::net::TcpListener::bind(&bind)
            .await
            .map_err(|e| format!("--callback-host {bind}: {e}"))?;
        let bound = listener.local_addr().map_err(err)?;
        let callback_uri = format!("http://{bound}/callback");
        let serving = receiver.clone();
        tokio::spawn(async move { serving.serve(listener, "/callback").await });
        let credentials = ClientCredentials::for_authority(
            &authority,
            &service.tenant,
            &service.client_id,
            &service.client_secret,
            "https://graph.microsoft.com/.default",
        )
        .map_err(|e| format!("authority {authority:?}: {e}"))?;
        let tokens =
            TokenSource::client_credentials(credentials, Duration::from_secs(10)).map_err(err)?;
        let graph = graph_url
            .parse()
            .map_err(|e| format!("Graph URL {graph_url:?}: {e}"))?;
        let client =
            GraphClient::new(GraphClientConfig::for_base_url(graph), tokens).map_err(err)?;
        let service_label = emulator
            .as_ref()
            .map_or(graph_url.clone(), |e| e.base_url().to_owned());
        Ok(Bot {
            emulator,
            client,
            receiver,
            events,
            callback_uri,
            tenant: service.tenant.clone(),
            service: service_label,
            start,
        })
    }

    /// Milliseconds since the bot started.
    pub fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Creates an app-hosted call to `target` and waits until its media is connected.
    pub async fn place_call(
        &self,
        target: &CallArgs,
        log: &mut CallLog,
    ) -> Result<LiveCall, String> {
        let unmixed = target.wants_unmixed();
        let session = MediaSession::offer(TransportConfig {
            receive_unmixed_meeting_audio: unmixed,
            unmixed_audio_streams: UNMIXED_STREAMS,
            ..TransportConfig::default()
        })
        .await
        .map_err(err)?;
        let request = self.request(target, session.blob())?;
        let created = self.client.create_call(&request).await.map_err(err)?;
        let call_id = created
            .call_id()
            .ok_or("the 201 body has no call id")?
            .to_owned();
        log.transitions
            .push(json!({"state": "created", "at_ms": self.ms()}));
        let connected = async {
            let Some(MediaConfig::AppHosted(config)) = created.call.media_config.value() else {
                return Err("the 201 body has no app-hosted mediaConfig".to_owned());
            };
            let answer = config
                .blob
                .value()
                .ok_or("the 201 body has no answer blob")?;
            session.accept(answer).await.map_err(err)?;
            let mut config = PipelineConfig {
                bot_format: BotAudioFormat::Pcm48k,
                ..PipelineConfig::default()
            };
            if unmixed {
                // One stream per unmixed m-line plus the mix, and every speaker handed on
                // (recorded one file each), not only the loudest four.
                config.max_remote_streams = UNMIXED_STREAMS + 1;
                config.max_unmixed = UNMIXED_STREAMS;
            }
            let mut pipeline = CallPipeline::new(config).map_err(err)?;
            let epoch = Instant::now();
            session.attach_pipeline(&mut pipeline, epoch);
            tokio::time::timeout(Duration::from_secs(15), session.connected())
                .await
                .map_err(|_| "media did not connect within 15 s".to_owned())?
                .map_err(|e| format!("media session ended: {e:?}"))?;
            Ok((pipeline, epoch))
        };
        match connected.await {
            Ok((pipeline, epoch)) => {
                log.transitions
                    .push(json!({"state": "media connected", "at_ms": self.ms()}));
                Ok(LiveCall {
                    call_id,
                    session,
                    pipeline,
                    epoch,
                })
            }
            Err(e) => {
                // Do not leave a call behind on the service.
                let _ = self.client.delete_call(&call_id).await;
                session.close().await;
                Err(e)
            }
        }
    }

    fn request(&self, target: &CallArgs, blob: String) -> Result<appmedia_model::Call, String> {
        let media = Media::app_hosted(blob);
        let uri = self.callback_uri.clone();
        let built = if let Some(id) = &target.join_meeting_id {
            JoinMeetingIdBuilder::new(uri, id, target.passcode.clone(), &self.tenant, media).build()
        } else if let Some(phone) = &target.phone {
            let source = ParticipantInfo::new(IdentitySet::application_instance(Identity::new(
                &target.app_instance,
            )));
            PstnCallBuilder::new(uri, source, phone, &self.tenant, media).build()
        } else {
            let user = target.to.as_deref().unwrap_or(JOHN);
            let mut identity = Identity::new(user);
            if user == JOHN {
                identity = identity.with_display_name("John");
            }
            PeerToPeerCallBuilder::new(uri, identity, media).build()
        };
        built.map_err(|e| format!("invalid call request: {e}"))
    }

    /// Notes signalling events until `deadline`, Ctrl-C (when `ctrl_c`), the call's end, or
    /// `done` resolves.
    pub async fn wait(
        &mut self,
        deadline: Option<Duration>,
        ctrl_c: bool,
        done: impl std::future::Future<Output = ()>,
        log: &mut CallLog,
    ) -> StopReason {
        let deadline = deadline.map(|d| tokio::time::Instant::now() + d);
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let interrupt = async {
            if !ctrl_c || tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::pin!(until, interrupt, done);
        loop {
            tokio::select! {
                () = &mut until => return StopReason::Deadline,
                () = &mut interrupt => return StopReason::Interrupted,
                () = &mut done => return StopReason::Done,
                event = self.events.recv() => match event {
                    Some(event) => {
                        note_event(&event, self.ms(), log);
                        if log.terminated {
                            return StopReason::Terminated;
                        }
                    }
                    None => return StopReason::Terminated,
                },
            }
        }
    }

    /// Hangs up (DELETE, unless the call is already over) and waits up to 10 s for
    /// `terminated`, then closes the media session.
    pub async fn hang_up(
        &mut self,
        call_id: &str,
        session: &MediaSession,
        log: &mut CallLog,
    ) -> Result<(), String> {
        let result = if log.terminated {
            Ok(())
        } else {
            self.client.delete_call(call_id).await.map_err(err)
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !log.terminated && result.is_ok() {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.recv()).await
            else {
                break;
            };
            note_event(&event, self.ms(), log);
        }
        session.close().await;
        result
    }

    /// Stops the in-process emulator, after giving its media a last pump and its recorder the
    /// time to finish the files.
    pub async fn shutdown(self) -> Finished {
        let finished = Finished {
            service: self.service.clone(),
            notifications_refused: self.receiver.stats().unauthorized,
        };
        if let Some(emulator) = self.emulator {
            tokio::time::sleep(Duration::from_millis(250)).await;
            emulator.shutdown().await;
        }
        finished
    }
}

/// How a call went, once it is over.
pub struct CallEnd {
    pub call_id: String,
    pub stopped_by: StopReason,
    pub media: MediaOutcome,
    pub transport: appmedia_transport::SessionStats,
    /// The recording's final state, when the call was recorded.
    pub recording: Option<RecordingStatus>,
    /// The DELETE failed (the call may still exist on the service).
    pub hang_up_error: Option<String>,
    /// When the media loop's tick 0 ran: sample 0 of the recording was heard then.
    pub epoch: Instant,
    /// The in-process emulator's media timeline of the call, read before hanging up (when
    /// each party first spoke, for mouth-to-ear latency).
    pub party_media: Option<appmedia_emulator::CallMedia>,
}

/// Record what the bot hears into `dir`: `{prefix}-{call id}-mixed.wav` and one file per
/// speaker, at `rate`.
pub struct RecordingPlan {
    pub dir: PathBuf,
    pub prefix: &'static str,
    pub rate: u32,
}

/// What a connected call does until it ends.
pub struct CallPlan {
    /// The media loop's prompts, devices and meter (a recording is added from `recording`).
    pub io: MediaIo,
    pub recording: Option<RecordingPlan>,
    /// Hang up after this long.
    pub deadline: Option<Duration>,
    /// Hang up on Ctrl-C.
    pub ctrl_c: bool,
}

/// What the bot leaves behind once stopped.
pub struct Finished {
    /// The calling service: the emulator's root, or the configured Graph URL.
    pub service: String,
    /// Notifications refused (bad or missing token).
    pub notifications_refused: u64,
}

impl Bot {
    /// Runs a connected call: starts its recording, runs the media loop on its own thread,
    /// notes signalling here until the plan's deadline, Ctrl-C, the call's end or `done`; then
    /// hangs up and finishes the recording. A recording that cannot start hangs up at once.
    pub async fn run_call(
        &mut self,
        call: LiveCall,
        plan: CallPlan,
        done: impl std::future::Future<Output = ()>,
        log: &mut CallLog,
    ) -> Result<CallEnd, String> {
        let LiveCall {
            call_id,
            session,
            pipeline,
            epoch,
        } = call;
        let CallPlan {
            mut io,
            recording,
            deadline,
            ctrl_c,
        } = plan;
        let recorder = match recording {
            Some(plan) => {
                let mut config =
                    RecordingConfig::new(&plan.dir, format!("{}-{call_id}", plan.prefix));
                config.output_sample_rate = plan.rate;
                match CallRecorder::start(config) {
                    Ok((recorder, sink)) => {
                        io.recorder = Some(sink);
                        Some(recorder)
                    }
                    Err(e) => {
                        let _ = self.hang_up(&call_id, &session, log).await;
                        return Err(e.to_string());
                    }
                }
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let media_stop = Arc::clone(&stop);
        let media = tokio::task::spawn_blocking(move || run_media(pipeline, epoch, io, media_stop));
        let stopped_by = self.wait(deadline, ctrl_c, done, log).await;
        stop.store(true, Ordering::Relaxed);
        let media = media.await.map_err(err).and_then(|m| m);
        let transport = session.stats().await;
        let party_media = self.emulator.as_ref().and_then(|e| e.call_media(&call_id));
        let hang_up_error = self.hang_up(&call_id, &session, log).await.err();
        let mut media = media?;
        // The sink came back with the media loop; finishing closes every file.
        media.io.recorder = None;
        Ok(CallEnd {
            call_id,
            stopped_by,
            media,
            transport,
            recording: recorder.map(CallRecorder::finish),
            hang_up_error,
            epoch,
            party_media,
        })
    }
}

/// `--callback-host` as an address to bind: HOST:PORT as given, a bare host or IP on a free port.
fn callback_bind(host: &str) -> String {
    if host.parse::<std::net::SocketAddr>().is_ok() {
        return host.to_owned();
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return std::net::SocketAddr::new(ip, 0).to_string();
    }
    match host.rsplit_once(':') {
        Some((_, port)) if port.parse::<u16>().is_ok() => host.to_owned(),
        _ => format!("{host}:0"),
    }
}

async fn start_emulator(service: &ServiceArgs) -> Result<Emulator, String> {
    let directory = match &service.directory {
        Some(file) => Directory::from_toml_file(file)
            .map_err(|e| format!("--directory {}: {e}", file.display()))?,
        None => {
            let mut directory = Directory::seed();
            for user in &mut directory.users {
                if user.id == JOHN {
                    user.behaviour.media = Sound::Speak(JOHN_SPEAKS.into());
                }
            }
            for phone in &mut directory.phones {
                phone.behaviour.media = Sound::Speak(PHONE_SPEAKS.into());
            }
            directory
        }
    };
    if let Some(dir) = &service.emulator_recordings {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: service.media_samples.clone(),
        recordings_dir: service.emulator_recordings.clone(),
        ..EmulatorConfig::default()
    })
    .await
    .map_err(err)
}

/// Where the in-process emulator recorded what the bot sent, when it records.
pub fn emulator_recording(service: &ServiceArgs, call_id: &str) -> Option<PathBuf> {
    if service.graph_url.is_some() {
        return None;
    }
    service
        .emulator_recordings
        .as_deref()
        .map(|dir| appmedia_emulator::media::bot_recording_path(dir, call_id))
}

/// Records `event` in the log: state transitions with their time, who joined.
pub fn note_event(event: &CallEvent, at_ms: u64, log: &mut CallLog) {
    match event {
        CallEvent::StateChanged {
            to, result_info, ..
        } => {
            log.established |= *to == CallState::Established;
            log.terminated |= *to == CallState::Terminated;
            let mut entry = json!({"state": to.as_str(), "at_ms": at_ms});
            if let Some(result) = result_info {
                entry["resultInfo"] = serde_json::to_value(result).unwrap_or(Value::Null);
            }
            log.transitions.push(entry);
        }
        CallEvent::Roster { change, .. } => {
            for p in change.joined.iter().chain(&change.updated) {
                let name = participant_name(p);
                for source in audio_source_ids(p) {
                    log.speakers.insert(source, name.clone());
                }
                if !log.roster.contains(&name) {
                    log.roster.push(name);
                }
            }
        }
        _ => {}
    }
}

/// A participant's display name (else its id): the user, application, application instance
/// or phone it is.
fn participant_name(p: &appmedia_model::Participant) -> String {
    p.info
        .value()
        .and_then(|i| i.identity.value())
        .and_then(|i| {
            [&i.user, &i.application, &i.application_instance, &i.phone]
                .into_iter()
                .find_map(|x| x.value())
        })
        .and_then(|i| i.display_name.value().or(i.id.value()).cloned())
        .unwrap_or_else(|| "unknown".into())
}

/// The source ids of a participant's audio streams (`mediaStreams[].sourceId` whose
/// `mediaType` is audio, or not given); a source id that is not a number is skipped.
fn audio_source_ids(p: &appmedia_model::Participant) -> impl Iterator<Item = u32> + '_ {
    p.media_streams
        .value()
        .into_iter()
        .flatten()
        .filter(|s| {
            s.media_type
                .value()
                .is_none_or(|m| *m == appmedia_model::Modality::Audio)
        })
        .filter_map(|s| s.source_id.value()?.parse().ok())
}

/// What the bot's side of the call does each tick besides the pipeline itself.
#[derive(Default)]
pub struct MediaIo {
    /// Records what the bot hears: the mix and one file per speaker.
    pub recorder: Option<RecordingSink>,
    /// Prompts played into the call.
    pub prompts: Option<PromptPlayer>,
    /// A microphone sent into the call.
    pub mic: Option<MicSource>,
    /// Speakers playing what the bot hears.
    pub speakers: Option<SpeakerFeed>,
    /// Levels of what the bot hears, for a live meter.
    pub meter: Option<Arc<LevelMeter>>,
}

/// What the media loop did.
pub struct MediaOutcome {
    pub ticks: u64,
    /// Ticks whose mix was not silence.
    pub heard_ticks: u64,
    pub stats: PipelineStats,
    pub streams: Vec<StreamStats>,
    /// Handed back so their final state can be read (and dropped off the audio thread).
    pub io: MediaIo,
}

/// Runs the call's 20 ms tick against absolute deadlines until `stop` is set: receive, mix,
/// send; the prompt and the microphone go into the call through pipeline players, what the bot
/// hears goes to the recorder, the speakers and the meter. Nothing here allocates or logs.
pub fn run_media(
    mut pipeline: CallPipeline,
    epoch: Instant,
    mut io: MediaIo,
    stop: Arc<AtomicBool>,
) -> Result<MediaOutcome, String> {
    let prompt_out = match io.prompts {
        Some(_) => Some(pipeline.add_player(4).map_err(err)?),
        None => None,
    };
    let mic_out = match io.mic {
        Some(_) => Some(pipeline.add_player(4).map_err(err)?),
        None => None,
    };
    let mut frame: Frame48 = SILENT_FRAME_48;
    let mut heard_ticks = 0u64;
    let mut k = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let now = FRAME_DURATION * k;
        if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        if let (Some(player), Some(out)) = (io.prompts.as_mut(), prompt_out.as_ref())
            && player.next_frame(&mut frame)
        {
            let _ = out.send(&frame);
        }
        if let (Some(mic), Some(out)) = (io.mic.as_mut(), mic_out.as_ref())
            && mic.pull_frame(&mut frame)
        {
            let _ = out.send(&frame);
        }
        let report = pipeline.tick(now);
        if !report.is_silence {
            heard_ticks += 1;
        }
        let tick = u64::from(k);
        let heard = pipeline.bot_frame_48k();
        if let Some(sink) = &io.recorder {
            let _ = sink.push(tick, Track::Mixed, heard);
            for unmixed in pipeline.unmixed() {
                let _ = sink.push(tick, Track::Speaker(unmixed.source_id), unmixed.pcm48);
            }
        }
        if let Some(speakers) = io.speakers.as_mut() {
            speakers.push_frame(heard);
        }
        if let Some(meter) = &io.meter {
            meter.observe(
                tick + 1,
                heard,
                pipeline.unmixed().map(|u| (u.source_id, &u.pcm48[..])),
            );
        }
        k = k.wrapping_add(1);
    }
    let streams = pipeline.stream_stats().collect();
    Ok(MediaOutcome {
        ticks: u64::from(k),
        heard_ticks,
        stats: *pipeline.stats(),
        streams,
        io,
    })
}

/// A summary's roster, comma-separated.
pub fn roster(s: &Value) -> String {
    let names: Vec<&str> = s["roster"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    names.join(", ")
}

/// The first lines of a call command's readable summary: verdict, call, service, length, why
/// it stopped, roster; and a failed hang-up.
pub fn print_call_headline(command: &str, s: &Value) {
    let verdict = if s["ok"] == true { "OK" } else { "FAILED" };
    println!(
        "appmedia {command}: {verdict} — call {} on {}, {:.1} s, stopped by {}",
        s["call_id"].as_str().unwrap_or("?"),
        s["service"].as_str().unwrap_or("?"),
        s["seconds"].as_f64().unwrap_or(0.0),
        s["stopped_by"].as_str().unwrap_or("?")
    );
    println!("  roster      {}", roster(s));
    if let Some(e) = s["hang_up_error"].as_str() {
        println!("  hang-up failed: {e}");
    }
}

/// The duration of a WAV file, if it is one.
pub fn file_seconds(path: &Path) -> Option<f64> {
    let reader = hound::WavReader::open(path).ok()?;
    let spec = reader.spec();
    Some(f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1)))
}

/// Per-stream jitter statistics as JSON.
pub fn streams_json(streams: &[StreamStats]) -> Vec<Value> {
    streams
        .iter()
        .map(|s| {
            json!({
                "source_id": s.source_id,
                "received": s.jitter.received,
                "lost": s.jitter.lost,
                "concealed": s.jitter.concealed,
                "fec_recovered": s.jitter.fec_recovered,
                "late": s.jitter.late,
                "jitter_buffer_delay_ms": s.jitter.current_delay.as_millis() as u64,
            })
        })
        .collect()
}

/// Runs a command's body on a fresh runtime and reports its summary: one JSON object with
/// `--json` (also for an error), else the readable summary (errors on stderr). The exit code
/// follows the summary's `ok`.
pub fn run_command(
    name: &str,
    json: bool,
    body: impl std::future::Future<Output = Result<Value, String>>,
    print_summary: fn(&Value),
) -> std::process::ExitCode {
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
        .and_then(|runtime| runtime.block_on(body));
    match result {
        Ok(summary) => {
            if json {
                println!("{summary:#}");
            } else {
                print_summary(&summary);
            }
            if summary["ok"] == true {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            if json {
                println!("{:#}", json!({"ok": false, "error": e}));
            }
            eprintln!("appmedia {name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_a_graph_url() {
        assert_eq!(
            origin("http://127.0.0.1:8642/v1.0").unwrap(),
            "http://127.0.0.1:8642"
        );
        assert_eq!(
            origin("https://graph.microsoft.com/v1.0").unwrap(),
            "https://graph.microsoft.com"
        );
        assert!(origin("not a url").is_err());
    }

    #[test]
    fn roster_audio_source_ids_name_the_speakers() {
        let participant = |json: Value| serde_json::from_value(json).unwrap();
        let jane = participant(json!({
            "info": {"identity": {"user": {"id": "u-jane", "displayName": "Jane"}}},
            "mediaStreams": [
                {"mediaType": "audio", "sourceId": "3"},
                {"mediaType": "video", "sourceId": "30"},
            ],
        }));
        let phone = participant(json!({
            "info": {"identity": {"phone": {"id": "+15550100006"}}},
            "mediaStreams": [{"sourceId": "4"}, {"mediaType": "audio", "sourceId": "not-a-number"}],
        }));
        let change = appmedia_signalling::roster::RosterChange {
            joined: vec![jane],
            updated: vec![phone],
            left: vec![],
        };
        let mut log = CallLog::default();
        note_event(
            &CallEvent::Roster {
                call_id: "c".into(),
                change,
            },
            0,
            &mut log,
        );
        assert_eq!(
            log.speakers,
            BTreeMap::from([(3, "Jane".to_owned()), (4, "+15550100006".to_owned())])
        );
        assert_eq!(log.roster, ["Jane", "+15550100006"]);
    }

    #[test]
    fn callback_host_forms() {
        assert_eq!(callback_bind("127.0.0.1"), "127.0.0.1:0");
        assert_eq!(callback_bind("127.0.0.1:9000"), "127.0.0.1:9000");
        assert_eq!(callback_bind("::1"), "[::1]:0");
        assert_eq!(callback_bind("[::1]"), "[::1]:0");
        assert_eq!(callback_bind("[::1]:9000"), "[::1]:9000");
        assert_eq!(callback_bind("localhost"), "localhost:0");
        assert_eq!(callback_bind("localhost:9000"), "localhost:9000");
    }
}
