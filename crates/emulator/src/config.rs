//! How the emulator runs: [`EmulatorConfig`] and the [`Faults`] it can inject.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use appmedia_transport::TransportConfig;

use crate::directory::Directory;
use crate::notify::RetryPolicy;

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
    /// ([`crate::conference::transferred`]).
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
    /// The ACS resource's own phone number (what bots call from, and what callers dial).
    pub acs_phone_number: String,
    /// Where the ACS listener's per-run CA certificate is written (`acs-emulator-ca.pem`):
    /// this directory, else `recordings_dir`, else a per-run temporary directory.
    pub acs_ca_dir: Option<PathBuf>,
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
            acs_phone_number: crate::acs::DEFAULT_PHONE_NUMBER.to_owned(),
            acs_ca_dir: None,
        }
    }
}

/// Switches that make the emulator misbehave the way the real service sometimes does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Deliver `established` before `establishing` (notifications out of order).
    pub established_before_establishing: bool,
}
