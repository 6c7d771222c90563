//! What a bot is: who it is to Graph, where Graph reaches it, where its media lives.
//!
//! One [`BotConfig`], built in code ([`BotConfig::new`] and the `with_*` setters) or read from
//! `APPMEDIA_*` environment variables ([`BotConfig::from_env`]); [`BotConfig::validate`] says
//! what is missing or wrong, naming the field and its variable.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use appmedia_media::scheduler::{RealtimePolicy, RealtimePriority};
use appmedia_signalling::auth::{ClientAuth, ClientCertificate};
use appmedia_signalling::client::NationalCloud;
use appmedia_signalling::validate::is_https_or_loopback;
use url::Url;

/// Graph ends a call that has had no `keepAlive` for 45 minutes; the SDK sends one every
/// 15 minutes by default, well inside that window even if one attempt fails.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The longest interval accepted: a keepAlive must reach Graph within 45 minutes.
pub const MAX_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(45 * 60);
/// Default [`BotConfig::state_check_interval`].
pub const DEFAULT_STATE_CHECK_INTERVAL: Duration = Duration::from_secs(10);

/// Where the calling service is.
// One per bot, in its configuration: the size of the URLs does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Service {
    /// Microsoft Graph in one of its national clouds: tokens from that cloud's identity
    /// platform, notifications signed with the Bot Framework keys.
    Graph(NationalCloud),
    /// Another Graph-compatible endpoint: `appmedia emulator`, or a proxy in front of Graph.
    Custom {
        /// The Graph root, e.g. `http://127.0.0.1:8642/v1.0`.
        graph_url: Url,
        /// OAuth2 authority: tokens come from `{authority}/{tenant}/oauth2/v2.0/token`.
        authority_url: Url,
        /// The OpenID configuration document listing the notification signing keys.
        notification_openid_url: Url,
        /// Accepted `iss` of notification tokens (empty: the Bot Framework and Graph issuers).
        notification_issuers: Vec<String>,
    },
    /// Azure Communication Services Call Automation: real PSTN, ACS and Teams calls with the
    /// call's audio streamed to the bot (`docs/acs.md`), or `appmedia emulator`'s ACS API.
    Acs(crate::acs::AcsService),
}

impl Service {
    /// The service at `graph_url`: Microsoft Graph itself when it is one of Microsoft's Graph
    /// hosts (`https://graph.microsoft.com/v1.0`, or a national cloud's) — tokens then come
    /// from that cloud's login host and notification keys from the Bot Framework, never from
    /// the Graph host — else a Graph-compatible endpoint that also issues tokens and
    /// publishes its notification keys at its origin, as `appmedia emulator` does. Plain
    /// `http` is taken for loopback addresses only: the client secret and the tokens must not
    /// cross a network in clear.
    pub fn at(graph_url: &str) -> Result<Service, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            field: "service.graph_url",
            var: "APPMEDIA_GRAPH_URL",
            value: graph_url.to_owned(),
            reason,
        };
        let graph = Url::parse(graph_url).map_err(|e| invalid(e.to_string()))?;
        let origin = graph.origin().ascii_serialization();
        if origin == "null" || !matches!(graph.scheme(), "http" | "https") {
            return Err(invalid("not an http(s) URL".into()));
        }
        let microsoft = [
            NationalCloud::Global,
            NationalCloud::UsGovL4,
            NationalCloud::UsGovL5Dod,
            NationalCloud::China,
        ]
        .into_iter()
        .find(|cloud| graph.host_str() == Some(cloud.graph_host()));
        if let Some(cloud) = microsoft {
            let host = cloud.graph_host();
            if graph.scheme() != "https" || !matches!(graph.path(), "/" | "/v1.0" | "/v1.0/") {
                return Err(invalid(format!(
                    "Microsoft Graph's calling API is https://{host}/v1.0"
                )));
            }
            return Ok(Service::Graph(cloud));
        }
        if !is_https_or_loopback(&graph) {
            return Err(invalid(INSECURE.into()));
        }
        let origin_url = |path: &str| Url::parse(&format!("{origin}{path}"));
        Ok(Service::Custom {
            graph_url: graph,
            authority_url: origin_url("").map_err(|e| invalid(e.to_string()))?,
            notification_openid_url: origin_url(
                appmedia_signalling::auth::OPENID_CONFIGURATION_PATH,
            )
            .map_err(|e| invalid(e.to_string()))?,
            notification_issuers: Vec::new(),
        })
    }

    /// The service's URLs that are not `https` and not on loopback, with their field names.
    fn insecure_urls(&self) -> Vec<(&'static str, &Url)> {
        match self {
            // Checked by `AcsService::validate`, with its own variables.
            Service::Graph(_) | Service::Acs(_) => Vec::new(),
            Service::Custom {
                graph_url,
                authority_url,
                notification_openid_url,
                ..
            } => [
                ("service.graph_url", graph_url),
                ("service.authority_url", authority_url),
                ("service.notification_openid_url", notification_openid_url),
            ]
            .into_iter()
            .filter(|(_, url)| !is_https_or_loopback(url))
            .collect(),
        }
    }

    /// True for Microsoft's own service (where the callback must be public HTTPS): Graph, or
    /// an ACS resource that is not on this machine.
    pub fn is_microsoft(&self) -> bool {
        match self {
            Service::Graph(_) => true,
            Service::Custom { .. } => false,
            Service::Acs(acs) => !acs
                .endpoint
                .host()
                .is_some_and(|h| appmedia_signalling::validate::is_loopback(&h)),
        }
    }

    /// The ACS resource, for an ACS-backed bot.
    pub fn acs(&self) -> Option<&crate::acs::AcsService> {
        match self {
            Service::Acs(acs) => Some(acs),
            _ => None,
        }
    }

    /// Whether the bot needs its own identity (app id, tenant, credential): Graph does, ACS
    /// does only without an access key (Entra tokens).
    fn needs_identity(&self) -> bool {
        match self {
            Service::Acs(acs) => acs.access_key.is_none(),
            _ => true,
        }
    }
}

const INSECURE: &str = "plain http only to a loopback address: the secret and the tokens would cross the network in clear";

/// The bot's media endpoint: where its WebRTC sessions bind and what they advertise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaSettings {
    /// Local address media sockets bind to.
    pub bind_ip: IpAddr,
    /// Public address of a 1:1 NAT in front of the instance (Graph's `InstancePublicIPAddress`).
    pub public_ip: Option<IpAddr>,
    /// UDP port range for media (Graph's default is 49152–65535); `None`: ephemeral ports.
    /// Unused with [`media_port`](Self::media_port): every session shares that port.
    pub port_range: Option<RangeInclusive<u16>>,
    /// One UDP port for every call (`Some(0)`: one ephemeral port): the calls' WebRTC
    /// sessions share one socket, and each runs on its call's media worker (no socket, task
    /// or timer per call). `None` (default): a socket per call, from
    /// [`port_range`](Self::port_range).
    pub media_port: Option<u16>,
    /// Offer ICE-lite (`TransportConfig::ice_lite`): the peer controls and nominates, the
    /// bot runs no check timer of its own. For a bot on a reachable address; default `false`.
    pub ice_lite: bool,
    /// Media worker threads ticking every call (default: one per core).
    pub workers: usize,
    /// What the bot's Opus encoder aims at, bits per second (6,000–510,000; default 32,000,
    /// libwebrtc's for mono voice). Measured on speech (PESQ-WB, `docs/benchmarks.md`): ~4.0
    /// at 32 kb/s, 4.2 at 40 kb/s, 4.3 at 48 kb/s. In-band FEC is added on top only while the
    /// far end reports loss.
    pub audio_bitrate_bps: i32,
    /// Run the media workers under a real-time policy (default `None`: the OS's normal
    /// one). On a small machine it is what holds every tick on time near the codec's limit
    /// (`docs/benchmarks.md`: on 2 vCPUs, 0 late ticks at 80 % of it with `SCHED_FIFO`, 143
    /// without). Needs root, `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` allowance; refused, the
    /// workers run at normal priority and the bot logs a warning saying why.
    pub realtime: Option<RealtimePriority>,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            public_ip: None,
            port_range: None,
            media_port: None,
            ice_lite: false,
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            audio_bitrate_bps: 32_000,
            realtime: None,
        }
    }
}

/// Everything a [`Bot`](crate::Bot) is started from.
#[derive(Clone)]
pub struct BotConfig {
    /// The bot's application (client) id.
    pub app_id: String,
    /// The tenant the bot gets its tokens in (and accepts notifications from).
    pub tenant: String,
    /// How the bot proves who it is to the identity platform: its client secret or its
    /// certificate (a `&str`/`String` converts to a secret, a [`ClientCertificate`] to a
    /// certificate).
    pub credential: ClientAuth,
    /// Where the calling service is.
    pub service: Service,
    /// The public URL Graph posts notifications to (the `callbackUri` of every call). Behind a
    /// reverse proxy or a tunnel it is not the listen address. `None`: `http://{bound listen
    /// address}/callback`, reachable only from this machine — right for the emulator.
    pub callback_url: Option<Url>,
    /// Where the notification server listens (port 0: any free port).
    pub listen: SocketAddr,
    /// The media endpoint.
    pub media: MediaSettings,
    /// Where call recordings are written.
    pub recordings_dir: Option<PathBuf>,
    /// How often each established call sends `keepAlive`.
    pub keep_alive_interval: Duration,
    /// How often a Graph call not yet established reads its own state from the service
    /// (`GET /communications/calls/{id}`): Graph retries a notification only a few times, and
    /// an `established` lost while the callback endpoint was unreachable would otherwise leave
    /// the call waiting for good (no media, no keepAlive). Default 10 s.
    pub state_check_interval: Duration,
    /// This process among the bot's instances (default: the host name, e.g. a StatefulSet
    /// pod's). `{instance}` in [`callback_url`](Self::callback_url) is replaced by it, so
    /// Graph's notifications for a call come back to the instance that holds its media.
    pub instance_id: String,
    /// New calls (placed or answered) this instance holds at most; at the limit it is not
    /// ready (`/readyz` 503) and refuses new incoming calls with 503 so that a proxy offers
    /// them to another instance. `None`: no limit.
    pub max_calls: Option<usize>,
    /// How long [`Bot::drain`](crate::Bot::drain) lets the calls of a stopping instance
    /// finish before it hangs them up (Kubernetes' `terminationGracePeriodSeconds` should be
    /// a little longer).
    pub drain_timeout: Duration,
}

/// Default [`BotConfig::drain_timeout`]: Kubernetes' default grace period, less a margin.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(25);

/// The placeholder [`BotConfig::callback_url`] may hold for the instance id.
pub const INSTANCE_PLACEHOLDER: &str = "{instance}";

/// The host name, as the default instance id (a Kubernetes pod's is its name).
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

impl std::fmt::Debug for BotConfig {
    // The secret must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotConfig")
            .field("app_id", &self.app_id)
            .field("tenant", &self.tenant)
            .field("credential", &self.credential)
            .field("service", &self.service)
            .field("callback_url", &self.callback_url.as_ref().map(Url::as_str))
            .field("listen", &self.listen)
            .field("media", &self.media)
            .field("recordings_dir", &self.recordings_dir)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("state_check_interval", &self.state_check_interval)
            .field("instance_id", &self.instance_id)
            .field("max_calls", &self.max_calls)
            .field("drain_timeout", &self.drain_timeout)
            .finish()
    }
}

/// What is missing or wrong in a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required field is not set.
    #[error("{field} is required (set {var})")]
    Missing {
        /// The field.
        field: &'static str,
        /// Its environment variable.
        var: &'static str,
    },
    /// A field's value cannot be used.
    #[error("{field} = {value:?} ({var}): {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its environment variable.
        var: &'static str,
        /// The value given.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
}

impl ConfigError {
    /// A field's value that cannot be used, naming its variable.
    pub(crate) fn invalid(
        field: &'static str,
        var: &'static str,
        value: &str,
        reason: String,
    ) -> Self {
        ConfigError::Invalid {
            field,
            var,
            value: value.to_owned(),
            reason,
        }
    }
}

/// The environment variables [`BotConfig::from_env`] reads.
pub mod env {
    /// The bot's application (client) id.
    pub const APP_ID: &str = "APPMEDIA_APP_ID";
    /// The tenant the bot gets its tokens in and accepts notifications from.
    pub const TENANT: &str = "APPMEDIA_TENANT";
    /// The application's client secret (or use [`CERTIFICATE`]).
    pub const CLIENT_SECRET: &str = "APPMEDIA_CLIENT_SECRET";
    /// A PEM file with the certificate (and its key, unless [`CERTIFICATE_KEY`] is set): the
    /// certificate credential, instead of [`CLIENT_SECRET`].
    pub const CERTIFICATE: &str = "APPMEDIA_CERTIFICATE";
    /// A PEM file with the certificate's private key, when it is not in [`CERTIFICATE`]'s file.
    pub const CERTIFICATE_KEY: &str = "APPMEDIA_CERTIFICATE_KEY";
    /// How a missing credential is named: either variable will do.
    pub const CREDENTIAL: &str = "APPMEDIA_CLIENT_SECRET or APPMEDIA_CERTIFICATE";
    /// `global` (default), `usgov-l4`, `usgov-l5-dod` or `china`.
    pub const CLOUD: &str = "APPMEDIA_CLOUD";
    /// A Graph-compatible root instead of a cloud (e.g. `appmedia emulator`'s).
    pub const GRAPH_URL: &str = "APPMEDIA_GRAPH_URL";
    /// The token authority's host, with [`GRAPH_URL`] (e.g. the emulator's base URL).
    pub const AUTHORITY_URL: &str = "APPMEDIA_AUTHORITY_URL";
    /// The OpenID configuration URL whose keys sign notifications, with [`GRAPH_URL`].
    pub const NOTIFICATION_OPENID_URL: &str = "APPMEDIA_NOTIFICATION_OPENID_URL";
    /// Comma-separated accepted notification issuers.
    pub const NOTIFICATION_ISSUER: &str = "APPMEDIA_NOTIFICATION_ISSUER";
    /// The public URL Graph posts notifications to; `{instance}` is replaced by the instance id.
    pub const CALLBACK_URL: &str = "APPMEDIA_CALLBACK_URL";
    /// `IP:PORT` the notification server listens on.
    pub const LISTEN: &str = "APPMEDIA_LISTEN";
    /// The IP address media sockets bind to.
    pub const MEDIA_BIND_IP: &str = "APPMEDIA_MEDIA_BIND_IP";
    /// The IP address offered to the peer in ICE candidates (behind NAT: the public one).
    pub const MEDIA_PUBLIC_IP: &str = "APPMEDIA_MEDIA_PUBLIC_IP";
    /// `FIRST-LAST`, e.g. `49152-65535`.
    pub const MEDIA_PORTS: &str = "APPMEDIA_MEDIA_PORTS";
    /// `media.media_port`: one UDP port for every call (`0`: an ephemeral one).
    pub const MEDIA_PORT: &str = "APPMEDIA_MEDIA_PORT";
    /// `media.ice_lite`: `true` or `false`.
    pub const ICE_LITE: &str = "APPMEDIA_ICE_LITE";
    /// Media scheduler worker threads.
    pub const MEDIA_WORKERS: &str = "APPMEDIA_MEDIA_WORKERS";
    /// `media.audio_bitrate_bps`.
    pub const AUDIO_BITRATE: &str = "APPMEDIA_AUDIO_BITRATE";
    /// `media.realtime`: `fifo` or `rr`, optionally with a priority (`fifo:20`; default 10).
    pub const MEDIA_REALTIME: &str = "APPMEDIA_MEDIA_REALTIME";
    /// Where call recordings are written.
    pub const RECORDINGS_DIR: &str = "APPMEDIA_RECORDINGS_DIR";
    /// Seconds between `keepAlive` requests for each held call.
    pub const KEEP_ALIVE_SECS: &str = "APPMEDIA_KEEP_ALIVE_SECS";
    /// Seconds between reads of a not yet established call's state.
    pub const STATE_CHECK_SECS: &str = "APPMEDIA_STATE_CHECK_SECS";
    /// This instance's id (default: the host name).
    pub const INSTANCE_ID: &str = "APPMEDIA_INSTANCE_ID";
    /// The most calls this instance holds.
    pub const MAX_CALLS: &str = "APPMEDIA_MAX_CALLS";
    /// Seconds a stopping instance lets its calls finish.
    pub const DRAIN_SECS: &str = "APPMEDIA_DRAIN_SECS";
    /// `graph` (default) or `acs`.
    pub const BACKEND: &str = "APPMEDIA_BACKEND";
    /// The ACS resource's connection string (`endpoint=…;accesskey=…`).
    pub const ACS_CONNECTION_STRING: &str = "APPMEDIA_ACS_CONNECTION_STRING";
    /// The ACS resource's endpoint, when Entra credentials replace the access key.
    pub const ACS_ENDPOINT: &str = "APPMEDIA_ACS_ENDPOINT";
    /// The Call Automation API version.
    pub const ACS_API_VERSION: &str = "APPMEDIA_ACS_API_VERSION";
    /// A PEM file of a certificate authority to trust (the emulator's `ca_cert`).
    pub const ACS_CA_CERT: &str = "APPMEDIA_ACS_CA_CERT";
    /// The resource's phone number: the caller id of PSTN calls.
    pub const ACS_PHONE_NUMBER: &str = "APPMEDIA_ACS_PHONE_NUMBER";
    /// The public `wss://` URL of the bot's audio WebSocket.
    pub const ACS_MEDIA_URL: &str = "APPMEDIA_ACS_MEDIA_URL";
    /// `16k` (default) or `24k`.
    pub const ACS_AUDIO_FORMAT: &str = "APPMEDIA_ACS_AUDIO_FORMAT";
    /// The audience of the service's callback tokens (ACS: the resource's immutable id);
    /// setting it turns JWT checking on.
    pub const ACS_EVENTS_AUDIENCE: &str = "APPMEDIA_ACS_EVENTS_AUDIENCE";
    /// The OpenID configuration of the callback tokens' keys (default: ACS's).
    pub const ACS_EVENTS_OPENID_URL: &str = "APPMEDIA_ACS_EVENTS_OPENID_URL";
    /// Comma-separated accepted issuers of the callback tokens (default: ACS's).
    pub const ACS_EVENTS_ISSUER: &str = "APPMEDIA_ACS_EVENTS_ISSUER";
}

impl BotConfig {
    /// A bot on Microsoft Graph's global cloud, listening on loopback (any port), media on
    /// loopback, keepAlive every 15 minutes. Set the public callback URL and the media
    /// addresses before pointing it at Graph.
    pub fn new(
        app_id: impl Into<String>,
        tenant: impl Into<String>,
        credential: impl Into<ClientAuth>,
    ) -> Self {
        BotConfig {
            app_id: app_id.into(),
            tenant: tenant.into(),
            credential: credential.into(),
            service: Service::Graph(NationalCloud::Global),
            callback_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            media: MediaSettings::default(),
            recordings_dir: None,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            state_check_interval: DEFAULT_STATE_CHECK_INTERVAL,
            instance_id: host_name(),
            max_calls: None,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }

    /// A bot on an ACS resource authenticated by its access key: no Graph identity needed.
    pub fn for_acs(service: crate::acs::AcsService) -> Self {
        let mut config = BotConfig::new("", "", ClientAuth::Secret(String::new()));
        config.service = Service::Acs(service);
        config
    }

    /// The calling service.
    pub fn with_service(mut self, service: Service) -> Self {
        self.service = service;
        self
    }

    /// The public callback URL.
    pub fn with_callback_url(mut self, url: Url) -> Self {
        self.callback_url = Some(url);
        self
    }

    /// The notification server's listen address.
    pub fn with_listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// The media endpoint.
    pub fn with_media(mut self, media: MediaSettings) -> Self {
        self.media = media;
        self
    }

    /// Where recordings go.
    pub fn with_recordings_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.recordings_dir = Some(dir.into());
        self
    }

    /// This instance's id (see [`BotConfig::instance_id`]).
    pub fn with_instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = id.into();
        self
    }

    /// The most calls this instance holds (see [`BotConfig::max_calls`]).
    pub fn with_max_calls(mut self, max: usize) -> Self {
        self.max_calls = Some(max);
        self
    }

    /// How long a draining instance lets its calls finish (see [`BotConfig::drain_timeout`]).
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// The callback URL with `{instance}` replaced: what goes in every call's `callbackUri`.
    pub fn instance_callback_url(&self) -> Option<String> {
        self.callback_url.as_ref().map(|url| {
            url.as_str()
                .replace("%7Binstance%7D", &self.instance_id)
                .replace(INSTANCE_PLACEHOLDER, &self.instance_id)
        })
    }

    /// The path of the application's shared calling webhook, when the callback URL names the
    /// instance in a path segment of its own: the callback path without that segment
    /// (`https://bot.example.com/{instance}/callback` → `/callback`). The bot serves it beside
    /// its own path, so a proxy can balance new incoming calls over every ready instance at
    /// `/callback` and route each call's notifications to its owner at `/{instance}/callback`,
    /// neither rewriting paths.
    pub fn webhook_path(&self) -> Option<String> {
        let url = self.callback_url.as_ref()?;
        let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let named =
            |s: &&str| *s == INSTANCE_PLACEHOLDER || s.eq_ignore_ascii_case("%7Binstance%7D");
        if !segments.iter().any(named) {
            return None;
        }
        let rest: Vec<&str> = segments.into_iter().filter(|s| !named(s)).collect();
        Some(format!("/{}", rest.join("/")))
    }

    /// How often keepAlive is sent.
    pub fn with_keep_alive_interval(mut self, interval: Duration) -> Self {
        self.keep_alive_interval = interval;
        self
    }

    /// How often a call not yet established reads its state from the service.
    pub fn with_state_check_interval(mut self, interval: Duration) -> Self {
        self.state_check_interval = interval;
        self
    }

    /// A bot for an in-process emulator's ACS API: its connection string, CA, phone number
    /// and event keys (issuer and audience).
    #[cfg(feature = "emulator")]
    pub fn for_emulator_acs(emulator: &appmedia_emulator::Emulator) -> Result<Self, ConfigError> {
        let acs = emulator.acs();
        let mut service = crate::acs::AcsService::from_connection_string(&acs.connection_string)?
            .with_ca_cert(&acs.ca_cert)
            .with_phone_number(&acs.phone_number);
        service.events = crate::acs::EventAuth::Jwt {
            openid_url: Url::parse(&acs.events_openid_url).map_err(|e| {
                ConfigError::invalid(
                    "service.acs.events.openid_url",
                    env::ACS_EVENTS_OPENID_URL,
                    &acs.events_openid_url,
                    e.to_string(),
                )
            })?,
            issuers: vec![acs.events_issuer.clone()],
            audience: acs.events_audience.clone(),
        };
        Ok(BotConfig::for_acs(service))
    }

    /// A bot for an in-process emulator: its Graph root, token authority and notification
    /// keys; the emulator's issuer.
    #[cfg(feature = "emulator")]
    pub fn for_emulator(
        emulator: &appmedia_emulator::Emulator,
        app_id: impl Into<String>,
        credential: impl Into<ClientAuth>,
    ) -> Result<Self, ConfigError> {
        let app_id = app_id.into();
        let tenant = emulator
            .directory()
            .applications
            .iter()
            .find(|a| a.id.eq_ignore_ascii_case(&app_id))
            .map(|a| a.tenant.clone())
            .ok_or_else(|| ConfigError::Invalid {
                field: "app_id",
                var: env::APP_ID,
                value: app_id.clone(),
                reason: "the emulator's directory has no such application".into(),
            })?;
        let mut service = Service::at(&emulator.graph_url())?;
        if let Service::Custom {
            notification_issuers,
            ..
        } = &mut service
        {
            *notification_issuers = vec![emulator.notification_issuer().to_owned()];
        }
        Ok(BotConfig::new(app_id, tenant, credential).with_service(service))
    }

    /// Reads every field from the process environment (see [`env`](mod@env)).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads every field through `lookup` (an environment in a test, a secrets store...).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| lookup(var).filter(|v| !v.trim().is_empty());
        let required = |field: &'static str, var: &'static str| {
            get(var).ok_or(ConfigError::Missing { field, var })
        };
        let invalid = ConfigError::invalid;
        let credential = match (get(env::CLIENT_SECRET), get(env::CERTIFICATE)) {
            (Some(_), Some(path)) => {
                return Err(invalid(
                    "credential",
                    env::CERTIFICATE,
                    &path,
                    format!(
                        "give {} or {}, not both",
                        env::CLIENT_SECRET,
                        env::CERTIFICATE
                    ),
                ));
            }
            (Some(secret), None) => Some(ClientAuth::Secret(secret)),
            (None, Some(path)) => {
                let key = get(env::CERTIFICATE_KEY).map(PathBuf::from);
                ClientCertificate::from_files(path.as_ref(), key.as_deref())
                    .map(|c| Some(ClientAuth::Certificate(c)))
                    .map_err(|e| {
                        let var = match (&e, &key) {
                            (
                                appmedia_signalling::auth::CertificateError::NoPrivateKey
                                | appmedia_signalling::auth::CertificateError::BadKey(_),
                                Some(_),
                            ) => env::CERTIFICATE_KEY,
                            _ => env::CERTIFICATE,
                        };
                        invalid("credential", var, &path, e.to_string())
                    })?
            }
            (None, None) => None,
        };
        let mut config = match get(env::BACKEND).as_deref().map(str::trim) {
            None | Some("graph") => {
                let credential = credential.ok_or(ConfigError::Missing {
                    field: "credential",
                    var: env::CREDENTIAL,
                })?;
                let mut config = BotConfig::new(
                    required("app_id", env::APP_ID)?,
                    required("tenant", env::TENANT)?,
                    credential,
                );
                config.service = Self::graph_service(&get)?;
                config
            }
            Some("acs") => {
                let mut config = BotConfig::for_acs(crate::acs::AcsService::from_lookup(&get)?);
                // Entra tokens instead of the access key: the bot's identity is needed.
                if let Some(credential) = credential {
                    config.app_id = get(env::APP_ID).unwrap_or_default();
                    config.tenant = get(env::TENANT).unwrap_or_default();
                    config.credential = credential;
                }
                config
            }
            Some(other) => {
                return Err(invalid(
                    "backend",
                    env::BACKEND,
                    other,
                    "graph or acs".into(),
                ));
            }
        };
        if let Some(v) = get(env::CALLBACK_URL) {
            config.callback_url = Some(
                Url::parse(&v)
                    .map_err(|e| invalid("callback_url", env::CALLBACK_URL, &v, e.to_string()))?,
            );
        }
        if let Some(v) = get(env::LISTEN) {
            config.listen = v
                .parse()
                .map_err(|e| invalid("listen", env::LISTEN, &v, format!("{e} (want IP:PORT)")))?;
        }
        if let Some(v) = get(env::MEDIA_BIND_IP) {
            config.media.bind_ip = v
                .parse()
                .map_err(|e| invalid("media.bind_ip", env::MEDIA_BIND_IP, &v, format!("{e}")))?;
        }
        if let Some(v) = get(env::MEDIA_PUBLIC_IP) {
            config.media.public_ip = Some(v.parse().map_err(|e| {
                invalid("media.public_ip", env::MEDIA_PUBLIC_IP, &v, format!("{e}"))
            })?);
        }
        if let Some(v) = get(env::MEDIA_PORTS) {
            config.media.port_range = Some(
                parse_port_range(&v)
                    .map_err(|reason| invalid("media.port_range", env::MEDIA_PORTS, &v, reason))?,
            );
        }
        if let Some(v) = get(env::MEDIA_PORT) {
            config.media.media_port =
                Some(v.parse().map_err(|e| {
                    invalid("media.media_port", env::MEDIA_PORT, &v, format!("{e}"))
                })?);
        }
        if let Some(v) = get(env::ICE_LITE) {
            config.media.ice_lite = v
                .parse()
                .map_err(|e| invalid("media.ice_lite", env::ICE_LITE, &v, format!("{e}")))?;
        }
        if let Some(v) = get(env::MEDIA_WORKERS) {
            config.media.workers = v
                .parse()
                .map_err(|e| invalid("media.workers", env::MEDIA_WORKERS, &v, format!("{e}")))?;
        }
        if let Some(v) = get(env::MEDIA_REALTIME) {
            config.media.realtime =
                Some(parse_realtime(&v).map_err(|reason| {
                    invalid("media.realtime", env::MEDIA_REALTIME, &v, reason)
                })?);
        }
        if let Some(v) = get(env::AUDIO_BITRATE) {
            config.media.audio_bitrate_bps = v.parse().map_err(|e| {
                invalid(
                    "media.audio_bitrate_bps",
                    env::AUDIO_BITRATE,
                    &v,
                    format!("{e}"),
                )
            })?;
        }
        if let Some(v) = get(env::RECORDINGS_DIR) {
            config.recordings_dir = Some(PathBuf::from(v));
        }
        if let Some(v) = get(env::KEEP_ALIVE_SECS) {
            let secs: u64 = v.parse().map_err(|e| {
                invalid(
                    "keep_alive_interval",
                    env::KEEP_ALIVE_SECS,
                    &v,
                    format!("{e}"),
                )
            })?;
            config.keep_alive_interval = Duration::from_secs(secs);
        }
        if let Some(v) = get(env::STATE_CHECK_SECS) {
            let secs: u64 = v.parse().map_err(|e| {
                invalid(
                    "state_check_interval",
                    env::STATE_CHECK_SECS,
                    &v,
                    format!("{e}"),
                )
            })?;
            config.state_check_interval = Duration::from_secs(secs);
        }
        if let Some(v) = get(env::INSTANCE_ID) {
            config.instance_id = v.trim().to_owned();
        }
        if let Some(v) = get(env::DRAIN_SECS) {
            let secs: u64 = v
                .parse()
                .map_err(|e| invalid("drain_timeout", env::DRAIN_SECS, &v, format!("{e}")))?;
            config.drain_timeout = Duration::from_secs(secs);
        }
        if let Some(v) = get(env::MAX_CALLS) {
            config.max_calls = Some(
                v.parse()
                    .map_err(|e| invalid("max_calls", env::MAX_CALLS, &v, format!("{e}")))?,
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// The Graph service the variables name: a cloud or a Graph-compatible URL.
    fn graph_service(get: &impl Fn(&str) -> Option<String>) -> Result<Service, ConfigError> {
        let invalid = ConfigError::invalid;
        Ok(match (get(env::GRAPH_URL), get(env::CLOUD)) {
            (Some(_), Some(cloud)) => {
                return Err(invalid(
                    "service",
                    env::CLOUD,
                    &cloud,
                    format!("give {} or {}, not both", env::CLOUD, env::GRAPH_URL),
                ));
            }
            (Some(graph), None) => {
                let mut service = Service::at(&graph)?;
                if let Service::Custom {
                    authority_url,
                    notification_openid_url,
                    notification_issuers,
                    ..
                } = &mut service
                {
                    if let Some(v) = get(env::AUTHORITY_URL) {
                        *authority_url = Url::parse(&v).map_err(|e| {
                            invalid(
                                "service.authority_url",
                                env::AUTHORITY_URL,
                                &v,
                                e.to_string(),
                            )
                        })?;
                    }
                    if let Some(v) = get(env::NOTIFICATION_OPENID_URL) {
                        *notification_openid_url = Url::parse(&v).map_err(|e| {
                            invalid(
                                "service.notification_openid_url",
                                env::NOTIFICATION_OPENID_URL,
                                &v,
                                e.to_string(),
                            )
                        })?;
                    }
                    if let Some(v) = get(env::NOTIFICATION_ISSUER) {
                        *notification_issuers = v
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect();
                    }
                }
                service
            }
            (None, cloud) => Service::Graph(match cloud.as_deref().map(str::trim) {
                None | Some("global") => NationalCloud::Global,
                Some("usgov-l4") => NationalCloud::UsGovL4,
                Some("usgov-l5-dod") => NationalCloud::UsGovL5Dod,
                Some("china") => NationalCloud::China,
                Some(other) => {
                    return Err(invalid(
                        "service",
                        env::CLOUD,
                        other,
                        "one of global, usgov-l4, usgov-l5-dod, china".into(),
                    ));
                }
            }),
        })
    }

    /// Checks the fields against each other and against what Graph accepts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Service::Acs(acs) = &self.service {
            acs.validate()?;
        }
        let identity = if self.service.needs_identity() {
            [
                ("app_id", env::APP_ID, self.app_id.as_str()),
                ("tenant", env::TENANT, self.tenant.as_str()),
                (
                    "credential",
                    env::CREDENTIAL,
                    match &self.credential {
                        ClientAuth::Secret(secret) => secret.as_str(),
                        ClientAuth::Certificate(_) => "certificate",
                    },
                ),
            ]
            .to_vec()
        } else {
            Vec::new()
        };
        for (field, var, value) in identity {
            if value.trim().is_empty() {
                return Err(ConfigError::Missing { field, var });
            }
        }
        let invalid = |field: &'static str, var: &'static str, value: String, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                var,
                value,
                reason: reason.to_owned(),
            })
        };
        match (&self.callback_url, self.service.is_microsoft()) {
            (None, true) => {
                return Err(ConfigError::Missing {
                    field: "callback_url",
                    var: env::CALLBACK_URL,
                });
            }
            (Some(url), true) if url.scheme() != "https" => {
                return invalid(
                    "callback_url",
                    env::CALLBACK_URL,
                    url.to_string(),
                    "Microsoft Graph only posts notifications to https URLs",
                );
            }
            (Some(url), _) if !matches!(url.scheme(), "http" | "https") => {
                return invalid(
                    "callback_url",
                    env::CALLBACK_URL,
                    url.to_string(),
                    "not an http(s) URL",
                );
            }
            _ => {}
        }
        if let Some((field, url)) = self.service.insecure_urls().into_iter().next() {
            let var = match field {
                "service.authority_url" => env::AUTHORITY_URL,
                "service.notification_openid_url" => env::NOTIFICATION_OPENID_URL,
                _ => env::GRAPH_URL,
            };
            return Err(ConfigError::Invalid {
                field,
                var,
                value: url.to_string(),
                reason: INSECURE.into(),
            });
        }
        let id = &self.instance_id;
        if id.is_empty()
            || id.len() > 63
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return invalid(
                "instance_id",
                env::INSTANCE_ID,
                id.clone(),
                "1 to 63 letters, digits, '-', '_' or '.' (it goes in the callback URL's path)",
            );
        }
        let own = |path: &str| matches!(path, "/healthz" | "/readyz" | "/metrics");
        if let Some(url) = &self.callback_url
            && (own(url.path()) || self.webhook_path().as_deref().is_some_and(own))
        {
            return invalid(
                "callback_url",
                env::CALLBACK_URL,
                url.to_string(),
                "its path is one of the bot's own endpoints (/healthz, /readyz, /metrics)",
            );
        }
        if self.max_calls == Some(0) {
            return invalid(
                "max_calls",
                env::MAX_CALLS,
                "0".into(),
                "at least 1 (leave it unset for no limit)",
            );
        }
        if self.media.workers == 0 || self.media.workers > 256 {
            return invalid(
                "media.workers",
                env::MEDIA_WORKERS,
                self.media.workers.to_string(),
                "between 1 and 256",
            );
        }
        if !(6_000..=510_000).contains(&self.media.audio_bitrate_bps) {
            return invalid(
                "media.audio_bitrate_bps",
                env::AUDIO_BITRATE,
                self.media.audio_bitrate_bps.to_string(),
                "between 6000 and 510000 bits per second",
            );
        }
        if let Some(range) = &self.media.port_range
            && (range.start() > range.end() || *range.start() == 0)
        {
            return invalid(
                "media.port_range",
                env::MEDIA_PORTS,
                format!("{}-{}", range.start(), range.end()),
                "FIRST-LAST with 1 <= FIRST <= LAST",
            );
        }
        if self.keep_alive_interval.is_zero() || self.keep_alive_interval > MAX_KEEP_ALIVE_INTERVAL
        {
            return invalid(
                "keep_alive_interval",
                env::KEEP_ALIVE_SECS,
                self.keep_alive_interval.as_secs().to_string(),
                "more than 0 and at most 2700 s (Graph ends a call after 45 minutes without one)",
            );
        }
        if self.state_check_interval.is_zero() {
            return invalid(
                "state_check_interval",
                env::STATE_CHECK_SECS,
                format!("{:?}", self.state_check_interval),
                "more than 0",
            );
        }
        Ok(())
    }
}

/// `fifo`, `rr`, `fifo:N` or `rr:N` (N from 1 to 99; default 10).
fn parse_realtime(value: &str) -> Result<RealtimePriority, String> {
    let (policy, priority) = match value.trim().split_once(':') {
        Some((policy, priority)) => (policy, Some(priority)),
        None => (value.trim(), None),
    };
    let policy = match policy.to_ascii_lowercase().as_str() {
        "fifo" => RealtimePolicy::Fifo,
        "rr" => RealtimePolicy::RoundRobin,
        _ => return Err("fifo or rr, optionally with :PRIORITY (1-99)".into()),
    };
    let priority = match priority {
        None => 10,
        Some(p) => match p.trim().parse::<u8>() {
            Ok(p @ 1..=99) => p,
            _ => return Err(format!("priority {p:?} is not between 1 and 99")),
        },
    };
    Ok(RealtimePriority { policy, priority })
}

fn parse_port_range(value: &str) -> Result<RangeInclusive<u16>, String> {
    let (first, last) = value
        .split_once('-')
        .ok_or_else(|| "want FIRST-LAST, e.g. 49152-65535".to_owned())?;
    let port = |s: &str| {
        s.trim()
            .parse::<u16>()
            .map_err(|e| format!("{s:?} is not a port: {e}"))
    };
    let (first, last) = (port(first)?, port(last)?);
    if first == 0 || first > last {
        return Err("want 1 <= FIRST <= LAST".into());
    }
    Ok(first..=last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const BASE: [(&str, &str); 4] = [
        (env::APP_ID, "app"),
        (env::TENANT, "tenant"),
        (env::CLIENT_SECRET, "secret"),
        (env::CALLBACK_URL, "https://bot.example.com/callback"),
    ];

    #[test]
    fn every_field_from_the_environment() {
        let mut vars = BASE.to_vec();
        vars.extend([
            (env::CLOUD, "usgov-l4"),
            (env::LISTEN, "0.0.0.0:9441"),
            (env::MEDIA_BIND_IP, "10.0.0.4"),
            (env::MEDIA_PUBLIC_IP, "203.0.113.9"),
            (env::MEDIA_PORTS, "50000-50100"),
            (env::MEDIA_PORT, "3478"),
            (env::ICE_LITE, "true"),
            (env::MEDIA_WORKERS, "3"),
            (env::RECORDINGS_DIR, "/var/recordings"),
            (env::KEEP_ALIVE_SECS, "600"),
            (env::STATE_CHECK_SECS, "4"),
            (env::MEDIA_REALTIME, "rr:20"),
            (env::INSTANCE_ID, "bot-2"),
            (env::MAX_CALLS, "40"),
            (env::DRAIN_SECS, "3600"),
            (env::AUDIO_BITRATE, "40000"),
            (
                env::CALLBACK_URL,
                "https://bot.example.com/{instance}/callback",
            ),
        ]);
        let config = BotConfig::from_lookup(lookup(&vars)).unwrap();
        assert_eq!(config.service, Service::Graph(NationalCloud::UsGovL4));
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 9441)));
        assert_eq!(config.media.public_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(config.media.media_port, Some(3478));
        assert!(config.media.ice_lite);
        assert_eq!(config.media.port_range, Some(50000..=50100));
        assert_eq!(config.media.workers, 3);
        assert_eq!(config.media.audio_bitrate_bps, 40_000);
        assert_eq!(config.keep_alive_interval, Duration::from_secs(600));
        assert_eq!(config.state_check_interval, Duration::from_secs(4));
        assert_eq!(
            config.media.realtime,
            Some(RealtimePriority {
                policy: RealtimePolicy::RoundRobin,
                priority: 20
            })
        );
        assert_eq!(
            parse_realtime("FIFO"),
            Ok(RealtimePriority {
                policy: RealtimePolicy::Fifo,
                priority: 10
            })
        );
        assert_eq!(config.max_calls, Some(40));
        assert_eq!(config.drain_timeout, Duration::from_secs(3600));
        assert_eq!(config.webhook_path().as_deref(), Some("/callback"));
        assert_eq!(
            config.instance_callback_url().as_deref(),
            Some("https://bot.example.com/bot-2/callback")
        );
        assert_eq!(
            config.recordings_dir,
            Some(PathBuf::from("/var/recordings"))
        );
        // The secret never shows in Debug output.
        assert!(!format!("{config:?}").contains("secret\""));
    }

    #[test]
    fn each_missing_required_field_is_named() {
        for missing in [
            env::APP_ID,
            env::TENANT,
            env::CLIENT_SECRET,
            env::CALLBACK_URL,
        ] {
            let vars: Vec<_> = BASE
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let named = if missing == env::CLIENT_SECRET {
                env::CREDENTIAL
            } else {
                missing
            };
            match BotConfig::from_lookup(lookup(&vars)) {
                Err(ConfigError::Missing { var, .. }) => assert_eq!(var, named),
                other => panic!("{missing}: {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_values_are_named_with_their_variable() {
        for (var, value) in [
            (env::CLOUD, "mars"),
            (env::LISTEN, "localhost"),
            (env::MEDIA_PUBLIC_IP, "not-an-ip"),
            (env::MEDIA_PORT, "70000"),
            (env::ICE_LITE, "yes"),
            (env::MEDIA_PORTS, "60000-50000"),
            (env::MEDIA_PORTS, "50000"),
            (env::MEDIA_WORKERS, "0"),
            (env::AUDIO_BITRATE, "128"),
            (env::AUDIO_BITRATE, "32kbps"),
            (env::KEEP_ALIVE_SECS, "3600"),
            (env::STATE_CHECK_SECS, "0"),
            (env::MEDIA_REALTIME, "deadline"),
            (env::MEDIA_REALTIME, "fifo:0"),
            (env::MEDIA_REALTIME, "rr:100"),
            (env::STATE_CHECK_SECS, "soon"),
            (env::INSTANCE_ID, "bot/0"),
            (env::MAX_CALLS, "0"),
            (env::MAX_CALLS, "many"),
            (env::DRAIN_SECS, "-1"),
            (
                env::CALLBACK_URL,
                "https://bot.example.com/{instance}/healthz",
            ),
            (env::CALLBACK_URL, "http://bot.example.com/callback"),
            (env::GRAPH_URL, "ftp://x"),
        ] {
            let mut vars: Vec<_> = BASE.iter().copied().filter(|(k, _)| *k != var).collect();
            vars.push((var, value));
            match BotConfig::from_lookup(lookup(&vars)) {
                Err(ConfigError::Invalid { var: named, .. }) => assert_eq!(named, var, "{value}"),
                other => panic!("{var}={value}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_shared_webhook_is_the_callback_path_without_the_instance_segment() {
        let path = |url: &str| {
            BotConfig::new("app", "tenant", "secret")
                .with_callback_url(url.parse().unwrap())
                .webhook_path()
        };
        assert_eq!(
            path("https://bot.example.com/{instance}/callback").as_deref(),
            Some("/callback")
        );
        assert_eq!(
            path("https://bot.example.com/api/{instance}/calling").as_deref(),
            Some("/api/calling")
        );
        assert_eq!(
            path("https://bot.example.com/{instance}").as_deref(),
            Some("/")
        );
        // Not in a segment of its own, or not there: one path only.
        assert_eq!(path("https://{instance}.bot.example.com/callback"), None);
        assert_eq!(path("https://bot.example.com/x-{instance}/callback"), None);
        assert_eq!(path("https://bot.example.com/callback"), None);
    }

    #[test]
    fn microsofts_graph_url_means_microsofts_endpoints_and_http_is_for_loopback_only() {
        assert_eq!(
            Service::at("https://graph.microsoft.com/v1.0").unwrap(),
            Service::Graph(NationalCloud::Global)
        );
        assert_eq!(
            Service::at("https://dod-graph.microsoft.us/v1.0/").unwrap(),
            Service::Graph(NationalCloud::UsGovL5Dod)
        );
        for bad in [
            "http://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/beta",
            "http://graph.example.com/v1.0",
            "http://10.0.0.4:8642/v1.0",
        ] {
            assert!(Service::at(bad).is_err(), "{bad}");
        }
        for loopback in [
            "http://127.0.0.1:8642/v1.0",
            "http://[::1]:8642/v1.0",
            "http://localhost:8642/v1.0",
            "https://graph.example.com/v1.0",
        ] {
            assert!(
                matches!(Service::at(loopback), Ok(Service::Custom { .. })),
                "{loopback}"
            );
        }
        // An authority or key URL over plain http to another host is refused too.
        let mut vars = vec![
            (env::APP_ID, "app"),
            (env::TENANT, "tenant"),
            (env::CLIENT_SECRET, "secret"),
            (env::GRAPH_URL, "https://graph.example.com/v1.0"),
            (env::AUTHORITY_URL, "http://login.example.com/"),
        ];
        match BotConfig::from_lookup(lookup(&vars)) {
            Err(ConfigError::Invalid { var, .. }) => assert_eq!(var, env::AUTHORITY_URL),
            other => panic!("{other:?}"),
        }
        vars.pop();
        assert!(BotConfig::from_lookup(lookup(&vars)).is_ok());
    }

    #[test]
    fn a_custom_service_takes_its_keys_and_tokens_from_its_origin() {
        let vars = [
            (env::APP_ID, "app"),
            (env::TENANT, "tenant"),
            (env::CLIENT_SECRET, "secret"),
            (env::GRAPH_URL, "http://127.0.0.1:8642/v1.0"),
        ];
        // No callback URL needed off Microsoft's service: the bound address is used.
        let config = BotConfig::from_lookup(lookup(&vars)).unwrap();
        let Service::Custom {
            authority_url,
            notification_openid_url,
            ..
        } = &config.service
        else {
            panic!("{:?}", config.service)
        };
        assert_eq!(authority_url.as_str(), "http://127.0.0.1:8642/");
        assert_eq!(
            notification_openid_url.as_str(),
            "http://127.0.0.1:8642/.well-known/openid-configuration"
        );
        let both = [vars.to_vec(), vec![(env::CLOUD, "global")]].concat();
        assert!(matches!(
            BotConfig::from_lookup(lookup(&both)),
            Err(ConfigError::Invalid {
                var: env::CLOUD,
                ..
            })
        ));
    }

    #[test]
    fn a_certificate_instead_of_a_secret() {
        use appmedia_testkit::certificates::{APP_BUNDLE, APP_CERT, APP_KEY, OTHER_KEY};
        let dir = std::env::temp_dir().join(format!("appmedia-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let (bundle, cert, key, other) = (
            file("bundle.pem", APP_BUNDLE),
            file("app.crt", APP_CERT),
            file("app.key", APP_KEY),
            file("other.key", OTHER_KEY),
        );
        let without_secret: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| *k != env::CLIENT_SECRET)
            .collect();
        let with = |extra: &[(&'static str, &str)]| {
            let mut vars: Vec<(&str, &str)> = without_secret.clone();
            vars.extend_from_slice(extra);
            BotConfig::from_lookup(lookup(&vars))
        };
        // One file with both, or a certificate file and a key file.
        for config in [
            with(&[(env::CERTIFICATE, &bundle)]),
            with(&[(env::CERTIFICATE, &cert), (env::CERTIFICATE_KEY, &key)]),
        ] {
            let config = config.unwrap();
            assert!(matches!(config.credential, ClientAuth::Certificate(_)));
            assert!(!format!("{config:?}").contains("PRIVATE"));
        }
        // Each wrong one names its variable.
        for (extra, var) in [
            (vec![(env::CERTIFICATE, cert.as_str())], env::CERTIFICATE),
            (
                vec![
                    (env::CERTIFICATE, cert.as_str()),
                    (env::CERTIFICATE_KEY, other.as_str()),
                ],
                env::CERTIFICATE,
            ),
            (
                vec![
                    (env::CERTIFICATE, cert.as_str()),
                    (env::CERTIFICATE_KEY, cert.as_str()),
                ],
                env::CERTIFICATE_KEY,
            ),
            (
                vec![(env::CERTIFICATE, "/nonexistent.pem")],
                env::CERTIFICATE,
            ),
            (
                vec![
                    (env::CERTIFICATE, bundle.as_str()),
                    (env::CLIENT_SECRET, "s"),
                ],
                env::CERTIFICATE,
            ),
        ] {
            match with(&extra) {
                Err(ConfigError::Invalid {
                    var: named, reason, ..
                }) => {
                    assert_eq!(named, var, "{extra:?}: {reason}")
                }
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const ACS_CS: &str =
        "endpoint=https://contoso.communication.azure.com/;accesskey=c2VjcmV0LWtleQ==";

    #[test]
    fn an_acs_bot_from_the_environment_needs_no_graph_identity() {
        let vars = [
            (env::BACKEND, "acs"),
            (env::ACS_CONNECTION_STRING, ACS_CS),
            (env::ACS_PHONE_NUMBER, "+18005550100"),
            (env::ACS_MEDIA_URL, "wss://bot.example.com/acs/media"),
            (env::ACS_AUDIO_FORMAT, "24k"),
            (env::ACS_EVENTS_AUDIENCE, "resource-immutable-id"),
            (env::CALLBACK_URL, "https://bot.example.com/acs"),
        ];
        let config = BotConfig::from_lookup(lookup(&vars)).unwrap();
        let acs = config.service.acs().expect("an ACS service");
        assert_eq!(
            acs.endpoint.as_str(),
            "https://contoso.communication.azure.com/"
        );
        assert!(acs.access_key.is_some());
        assert_eq!(acs.phone_number.as_deref(), Some("+18005550100"));
        assert_eq!(
            acs.audio_format,
            appmedia_acs::models::AudioFormat::Pcm24KMono
        );
        assert!(
            matches!(&acs.events, crate::acs::EventAuth::Jwt { audience, issuers, .. }
            if audience == "resource-immutable-id" && issuers == &[crate::acs::ACS_ISSUER])
        );
        assert!(config.app_id.is_empty(), "no Graph identity");
        // The key never shows in Debug output.
        assert!(!format!("{config:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn acs_settings_are_refused_with_their_variable() {
        let base = [
            (env::BACKEND, "acs"),
            (env::CALLBACK_URL, "https://bot.example.com/acs"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            BotConfig::from_lookup(lookup(&vars))
        };
        assert!(matches!(
            with(&[]),
            Err(ConfigError::Missing {
                field: "service.acs",
                ..
            })
        ));
        for (extra, var) in [
            (
                vec![
                    (env::ACS_CONNECTION_STRING, ACS_CS),
                    (env::ACS_ENDPOINT, "https://x.communication.azure.com"),
                ],
                env::ACS_ENDPOINT,
            ),
            (
                vec![(env::ACS_CONNECTION_STRING, "endpoint=https://x/")],
                env::ACS_CONNECTION_STRING,
            ),
            (
                vec![
                    (env::ACS_CONNECTION_STRING, ACS_CS),
                    (env::ACS_AUDIO_FORMAT, "8k"),
                ],
                env::ACS_AUDIO_FORMAT,
            ),
            (
                vec![
                    (env::ACS_CONNECTION_STRING, ACS_CS),
                    (env::ACS_PHONE_NUMBER, "555-0100"),
                ],
                env::ACS_PHONE_NUMBER,
            ),
            (
                vec![
                    (env::ACS_CONNECTION_STRING, ACS_CS),
                    (env::ACS_MEDIA_URL, "ws://bot.example.com/media"),
                ],
                env::ACS_MEDIA_URL,
            ),
            (
                vec![(
                    env::ACS_CONNECTION_STRING,
                    "endpoint=http://contoso.example.com/;accesskey=c2VjcmV0",
                )],
                env::ACS_ENDPOINT,
            ),
            (
                vec![
                    (env::ACS_CONNECTION_STRING, ACS_CS),
                    (env::BACKEND, "teams"),
                ],
                env::BACKEND,
            ),
        ] {
            let mut vars = base.to_vec();
            vars.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
            vars.extend(extra.iter().copied());
            match BotConfig::from_lookup(lookup(&vars)) {
                Err(ConfigError::Invalid { var: named, .. }) => assert_eq!(named, var, "{extra:?}"),
                other => panic!("{extra:?}: {other:?}"),
            }
        }
        // Entra instead of the key: the bot's identity is required.
        assert!(matches!(
            with(&[(env::ACS_ENDPOINT, "https://x.communication.azure.com")]),
            Err(ConfigError::Missing {
                field: "app_id",
                ..
            })
        ));
        let entra = with(&[
            (env::ACS_ENDPOINT, "https://x.communication.azure.com"),
            (env::APP_ID, "app"),
            (env::TENANT, "tenant"),
            (env::CLIENT_SECRET, "secret"),
        ])
        .unwrap();
        assert!(entra.service.acs().unwrap().access_key.is_none());
        // A public ACS resource posts to a public https callback only.
        assert!(matches!(
            BotConfig::from_lookup(lookup(&[
                (env::BACKEND, "acs"),
                (env::ACS_CONNECTION_STRING, ACS_CS)
            ])),
            Err(ConfigError::Missing {
                field: "callback_url",
                ..
            })
        ));
        // The emulator's loopback resource needs none.
        let local = BotConfig::for_acs(
            crate::acs::AcsService::from_connection_string(
                "endpoint=https://127.0.0.1:8443/;accesskey=c2VjcmV0",
            )
            .unwrap(),
        );
        assert_eq!(local.validate(), Ok(()));
    }
}
