//! appmedia-emulator: a local Microsoft Graph calling service, so a calling bot can be
//! developed and tested on one machine with no tenant, tunnel or certificate.
//!
//! It issues tokens (`POST /{tenant}/oauth2/v2.0/token`, client credentials, with the
//! `roles` of the app registration), accepts `POST /v1.0/communications/calls` with the
//! same validation and permission rules as `appmedia-signalling` (plus existence checks
//! against its [`Directory`]), serves `GET`/`DELETE` on calls and `GET …/participants`,
//! performs the in-call actions (transfer, invite, mute, keepAlive, tones, recordResponse,
//! recording status, screen sharing role: [`http::actions`], [`http::service_actions`]), and plays the
//! remote parties' scripts, posting signed `commsNotifications` to the bot's
//! callbackUri in the shapes of the Graph documentation. The notification keys are
//! published through an OpenID configuration document at
//! [`Emulator::notification_openid_configuration_url`], so a bot validates them with
//! `appmedia_signalling::auth::CallbackTokenValidator` unchanged.
//!
//! `GET /softphone` is a web page where a person joins an emulated call with their own
//! microphone and speakers, as a directory user or meeting participant ([`http::softphone`]).
//!
//! Bots can be called too ([`calls::incoming`]): a directory user or phone calls an application
//! (its id, its instance's id or phone number, or from a meeting), the bot gets the
//! `incoming` notification at its calling webhook and answers, rejects or redirects it
//! within [`EmulatorConfig::incoming_answer_timeout`]. Tests and tools drive that, and look at
//! every call, through the control API under [`Emulator::control_url`] ([`http::control`]).
//!
//! Beside Graph, the emulator is an Azure Communication Services resource speaking Call
//! Automation ([`http::acs`], [`calls::acs`]) on its own HTTPS listener, with a certificate
//! authority made for each run ([`tls`]): [`Emulator::acs`] gives its connection string, the
//! CA file to trust and its phone number. Calls reach the same directory parties and
//! conference media; the bot's audio travels over ACS's streaming WebSocket through a media
//! gateway ([`conference::acs_media`]).
//!
//! ```
//! use appmedia_emulator::{Emulator, EmulatorConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start(EmulatorConfig::default()).await?; // 127.0.0.1, free port
//! let tenant = "aa67bd4c-8475-432d-bd41-39f255720e0a"; // the seed's tenant
//! assert!(emulator.token_url(tenant).ends_with("/oauth2/v2.0/token"));
//! assert_eq!(emulator.graph_url(), format!("{}/v1.0", emulator.base_url()));
//! assert_eq!(emulator.notification_issuer(), "https://api.botframework.com");
//! assert_eq!(emulator.control_url(), format!("{}/control", emulator.base_url()));
//! assert_eq!(emulator.live_calls(), 0);
//! let acs = emulator.acs(); // ACS Call Automation, over HTTPS with a per-run CA
//! assert!(acs.connection_string.starts_with("endpoint=https://127.0.0.1:"));
//! assert!(acs.ca_cert.exists());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

// Four layers, each using only the ones below it (`docs/architecture.md`; `tests/layers.rs`
// checks every `crate::` path):
//
// 4. The running emulator: its state, listener and router.
pub mod server;
// 3. HTTP routes: Graph's v1.0 calling API, the token endpoints, the control API and the
//    softphone page. They parse, authenticate and answer; calls do the rest.
pub mod http;
// 2. Calls: the registry of live calls, each call's driver, calls ringing a bot, the
//    softphone pages a call may ring, the control API's book.
pub mod calls;
// 1. Conference media: the emulator as the bot's media peer, service-hosted prompts, tones
//    and recordResponse, recordings, conversations transferred away.
pub mod conference;
// 0. The vocabulary every layer shares: configuration, directory, errors, admission, Graph
//    shapes, operations, notifications, tokens.
pub mod acs;
pub mod admission;
pub mod config;
pub mod directory;
pub mod error;
pub mod notify;
pub(crate) mod operations;
pub mod shapes;
pub mod tls;
pub mod tokens;

pub use calls::softphones::{PageReport, SoftphoneStatus};
pub use conference::acs_media::StreamStats as AcsStreamStats;
pub use conference::heard::heard_recording_path;
pub use conference::media::bot_recording_path;
pub use conference::service_media::mixed_recording_path;
pub use conference::service_media::{CallMedia, PartyMedia};
pub use config::{DEFAULT_NOTIFICATION_ISSUER, EmulatorConfig, Faults};
pub use directory::{Directory, DirectoryError};
pub use error::ApiError;
pub use notify::{DeliveryStats, RetryPolicy};
pub use server::{AcsInfo, Emulator, EmulatorError};
