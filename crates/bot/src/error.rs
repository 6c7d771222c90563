//! The SDK's one error type.

use appmedia_model::CallState;

/// What went wrong, with the value that was wrong.
#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// The configuration is incomplete or wrong.
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The notification server could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The Graph client refused the request or the service answered an error.
    #[error(transparent)]
    Graph(#[from] appmedia_signalling::client::ClientError),
    /// The ACS Call Automation client refused the request or the service answered an error.
    #[error(transparent)]
    Acs(#[from] appmedia_acs::AcsError),
    /// The bot's backend has no equivalent of the action (`docs/acs.md` has the table).
    #[error("{capability} is not available on the {backend} backend")]
    Unsupported {
        /// `graph` or `acs`.
        backend: &'static str,
        /// What was asked.
        capability: &'static str,
    },
    /// The media transport failed.
    #[error("media transport: {0}")]
    Transport(#[from] appmedia_transport::TransportError),
    /// The media core refused a setting.
    #[error("media pipeline: {0}")]
    Pipeline(#[from] appmedia_media::pipeline::PipelineError),
    /// The media scheduler could not start or take the call.
    #[error("media scheduler: {0}")]
    Scheduler(#[from] appmedia_media::scheduler::SchedulerError),
    /// The recording could not start.
    #[error("recording: {0}")]
    Recording(#[from] appmedia_audio_io::record::RecordError),
    /// A prompt could not be opened or queued.
    #[error("prompt: {0}")]
    Prompt(String),
    /// The service's answer lacks something the SDK needs (e.g. the call id, the answer blob).
    #[error("the service's answer is unusable: {0}")]
    Protocol(String),
    /// The call has ended: nothing more can be done with it.
    #[error("call {call_id} has ended")]
    CallEnded {
        /// The call.
        call_id: String,
    },
    /// The call is not in a state that allows the action.
    #[error("call {call_id} is {state:?}: {action} needs {needs}")]
    InvalidState {
        /// The call.
        call_id: String,
        /// What was attempted.
        action: &'static str,
        /// The call's state, if known.
        state: Option<CallState>,
        /// What the action needs.
        needs: &'static str,
    },
    /// The call was answered, rejected or redirected already.
    #[error("incoming call {call_id} was already {done}")]
    AlreadyHandled {
        /// The call.
        call_id: String,
        /// `answered`, `rejected` or `redirected`.
        done: &'static str,
    },
    /// The call has no app-hosted media (its audio is the service's).
    #[error("call {call_id} has no app-hosted media")]
    NoMedia {
        /// The call.
        call_id: String,
    },
    /// Something did not happen in time.
    #[error("{what} did not happen within {seconds} s")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        seconds: u64,
    },
    /// The bot is shutting down.
    #[error("the bot is shutting down")]
    ShuttingDown,
    /// The instance holds [`max_calls`](crate::BotConfig::max_calls) calls already; place the
    /// call from another instance or later.
    #[error("this instance holds its maximum of {max_calls} calls")]
    AtCapacity {
        /// The configured limit.
        max_calls: usize,
    },
}

impl BotError {
    /// The Graph error code, when the service answered one (e.g. `"8508"`, `"NotFound"`).
    pub fn graph_code(&self) -> Option<&str> {
        match self {
            BotError::Graph(e) => e.code(),
            _ => None,
        }
    }

    /// The HTTP status the service answered, when it did.
    pub fn status(&self) -> Option<u16> {
        match self {
            BotError::Graph(e) => e.status(),
            BotError::Acs(e) => e.status(),
            _ => None,
        }
    }
}
