//! appmedia-emulator: a local Microsoft Graph calling service, so a calling bot can be
//! developed and tested on one machine with no tenant, tunnel or certificate.
//!
//! It issues tokens (`POST /{tenant}/oauth2/v2.0/token`, client credentials, with the
//! `roles` of the app registration), accepts `POST /v1.0/communications/calls` with the
//! same validation and permission rules as `appmedia-signalling` (plus existence checks
//! against its [`Directory`]), serves `GET`/`DELETE` on calls and `GET …/participants`,
//! performs the in-call actions (transfer, invite, mute, keepAlive, tones, recordResponse,
//! recording status, screen sharing role: [`actions`], [`service_actions`]), and plays the
//! remote parties' scripts, posting signed `commsNotifications` to the bot's
//! callbackUri in the shapes of the Graph documentation. The notification keys are
//! published through an OpenID configuration document at
//! [`Emulator::notification_openid_configuration_url`], so a bot validates them with
//! `appmedia_signalling::auth::CallbackTokenValidator` unchanged.
//!
//! `GET /softphone` is a web page where a person joins an emulated call with their own
//! microphone and speakers, as a directory user or meeting participant ([`softphone`]).
//!
//! Bots can be called too ([`incoming`]): a directory user or phone calls an application
//! (its id, its instance's id or phone number, or from a meeting), the bot gets the
//! `incoming` notification at its calling webhook and answers, rejects or redirects it
//! within [`EmulatorConfig::incoming_answer_timeout`]. Tests and tools drive that, and look at
//! every call, through the control API under [`Emulator::control_url`] ([`control`]).
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
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admission;
pub mod control;
pub mod directory;
pub mod driver;
pub mod error;
pub mod incoming;
pub mod media;
pub mod notify;
mod online_meetings;
pub mod server;
pub mod service_media;
pub mod shapes;
pub mod softphone;
pub mod tokens;

// The in-call actions (transfer, invite, mute, keepAlive, tones, recordResponse, ...).
pub mod actions;
pub mod heard;
pub(crate) mod operations;
pub(crate) mod requests;
pub mod service_actions;
pub mod transferred;

pub use directory::{Directory, DirectoryError};
pub use driver::Faults;
pub use error::ApiError;
pub use notify::{DeliveryStats, RetryPolicy};
pub use server::{DEFAULT_NOTIFICATION_ISSUER, Emulator, EmulatorConfig, EmulatorError};
pub use service_media::{CallMedia, PartyMedia};
