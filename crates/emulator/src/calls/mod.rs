//! Layer 2 of the emulator (`docs/architecture.md`): the calls. The registry of live calls
//! ([`Shared`], `CallRecord`), each call's driver ([`driver`]), calls ringing a bot
//! ([`incoming`]), the softphone pages a call may ring ([`softphones`]) and the control API's
//! view of every call ([`book`]). It uses the conference media below it, never the HTTP
//! routes above it.

pub mod acs;
pub mod book;
pub mod driver;
pub mod incoming;
pub mod softphones;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_emulator_media::PartyAudio;
use appmedia_emulator_media::realtime::ConferenceScheduler;
use appmedia_model::{Call, Participant};
use appmedia_transport::TransportConfig;
use tokio::sync::mpsc;

use crate::conference::media::MediaPeer;
use crate::conference::service_media::{
    MediaTimeline, PromptLibrary, ServiceMedia, ServiceMediaContext,
};
use crate::config::EmulatorConfig;
use crate::directory::{Directory, Sound};
use crate::error::ApiError;
use crate::notify::Notifier;
use crate::tokens::GraphTokens;
use driver::Control;

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
    /// Issues and verifies Graph access tokens.
    pub(crate) tokens: GraphTokens,
    /// Signs and delivers notifications.
    pub(crate) notifier: Arc<Notifier>,
    /// Every live call.
    pub(crate) calls: Mutex<HashMap<String, CallRecord>>,
    /// The files parties speak, decoded once at start.
    pub(crate) clips: HashMap<String, AudioClip>,
    /// Ticks every call's conference media.
    pub(crate) conferences: ConferenceScheduler,
    /// What `recordResponse` recorded, served at `recordingLocation`.
    pub(crate) responses: Arc<crate::conference::service_actions::ResponseStore>,
    /// Conversations the bot transferred away, still running.
    pub(crate) transferred: crate::conference::transferred::Transferred,
    /// Service-hosted prompts, decoded once.
    pub(crate) prompt_library: Arc<PromptLibrary>,
    /// Open softphone pages (`GET /softphone`).
    pub(crate) softphones: softphones::Softphones,
    /// The per-run secret the softphone page's URL carries (`?key=`), without which its
    /// WebSocket is refused: another web page the developer visits cannot join calls.
    pub(crate) softphone_key: String,
    /// Calling webhooks and the calls ringing a bot.
    pub(crate) incoming: incoming::IncomingState,
    /// The control API's view of every call.
    pub(crate) book: book::CallBook,
    /// ACS Call Automation: the resource, its call connections, incoming calls.
    pub(crate) acs: acs::AcsState,
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

    /// The file a prompt URI names (see [`PromptLibrary::resolve`]), or a 400 naming `field`.
    pub(crate) fn prompt_path(
        &self,
        uri: &str,
        field: &str,
    ) -> Result<std::path::PathBuf, ApiError> {
        PromptLibrary::resolve(self.directory(), &self.config.media_samples_dir, uri, field)
    }

    /// What a call's service-hosted media needs of the emulator.
    pub(crate) fn service_media_context(&self) -> ServiceMediaContext<'_> {
        ServiceMediaContext {
            directory: self.directory(),
            samples_dir: &self.config.media_samples_dir,
            recordings_dir: self.config.recordings_dir.as_deref(),
            prompts: &self.prompt_library,
            conferences: &self.conferences,
            base_url: &self.base_url,
            responses: &self.responses,
        }
    }

    /// Open softphone pages and the calls they may join.
    pub(crate) fn softphones(&self) -> &softphones::Softphones {
        &self.softphones
    }

    /// Calling webhooks and the calls ringing a bot.
    pub(crate) fn incoming(&self) -> &incoming::IncomingState {
        &self.incoming
    }

    /// The control API's view of every call.
    pub(crate) fn book(&self) -> &book::CallBook {
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

    /// Every live call, locked.
    pub(crate) fn calls(&self) -> std::sync::MutexGuard<'_, HashMap<String, CallRecord>> {
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
