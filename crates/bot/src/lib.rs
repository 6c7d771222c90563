//! appmedia-bot: the SDK a calling bot is built with.
//!
//! A [`Bot`] is one Graph client (tokens, retries), one notification server behind the bot's
//! public callback URL (tokens validated, call state, rosters), and one media scheduler whose
//! few worker threads tick the audio of every call. It places calls ([`Bot::call`], any of
//! the create-call kinds the signalling crate's builders make) and receives them
//! ([`Bot::next_incoming`] → [`IncomingCall::answer`] / [`reject`](IncomingCall::reject) /
//! [`redirect`](IncomingCall::redirect)). A [`Call`] gives its [`Event`]s (state, roster,
//! tones, operations, media), its [`AudioSocket`] (20 ms PCM 16 kHz frames in and out, like
//! Graph's `IAudioSocket`) and every Graph action on it (transfer, invite, mute, prompts,
//! recording status...). The SDK owns the policy: it sends `keepAlive`, refetches a roster
//! when deltas go missing, connects the media when the service answers, and on
//! [`Bot::shutdown`] hangs up or drains calls and finishes their recordings.
//!
//! Against Microsoft Graph the SDK does the signalling and service-hosted media. App-hosted
//! media uses appmedia's open blob (WebRTC), which Graph itself does not accept — it needs
//! Microsoft's closed media platform; the blob works with `appmedia emulator` and any WebRTC
//! peer (see `docs/build-a-bot.md`).
//!
//! ```no_run
//! use appmedia_bot::{AnswerMedia, Bot, BotConfig, Event, MediaOptions};
//!
//! # async fn run() -> Result<(), appmedia_bot::BotError> {
//! let bot = Bot::start(BotConfig::from_env()?).await?;
//! while let Some(mut incoming) = bot.next_incoming().await {
//!     let mut call = incoming.answer(AnswerMedia::App(MediaOptions::default())).await?;
//!     let audio = call.audio_socket().expect("app-hosted");
//!     tokio::spawn(async move {
//!         while let Some(frame) = audio.recv().await {
//!             let _ = audio.send(&frame.mixed); // an echo
//!         }
//!     });
//!     while let Some(event) = call.next_event().await {
//!         if let Event::Ended(end) = event {
//!             println!("call ended: {:?}", end.result_info);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

pub mod acs;
mod bot;
mod call;
pub mod config;
mod driver;
mod error;
mod exposition;
mod incoming;
mod instance;
mod media;
mod outgoing;
mod setup;

pub use appmedia_signalling::auth::{CertificateError, ClientAuth, ClientCertificate};
pub use bot::{Bot, BotStats};
pub use call::{Call, CallControl, CallEnd, Event, Hosting, Target, ToneSource};
pub use config::{BotConfig, ConfigError, INSTANCE_PLACEHOLDER, MediaSettings, Service};
pub use error::BotError;
pub use incoming::{ANSWER_DEADLINE, AnswerMedia, Called, IncomingCall};
pub use instance::{Termination, terminated};
pub use media::{
    AudioSocket, MAX_SNAPSHOT_STREAMS, MediaOptions, MediaSnapshot, MediaSource, MediaTap,
    RecordOptions,
};

/// The `mediaConfig` of a create-call request whose media the bot hosts: the SDK replaces the
/// placeholder blob with its media session's when it places the call.
pub fn app_hosted() -> appmedia_signalling::builders::Media {
    appmedia_signalling::builders::Media::app_hosted("appmedia:placeholder")
}

/// The media core's per-tick frame types a bot handles.
pub use appmedia_media::pipeline::{BotAudio16k, UnmixedPcm16k};
