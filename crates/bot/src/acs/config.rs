//! Where an ACS-backed bot finds its Communication Services resource, and how the service
//! reaches the bot back (events, incoming calls, audio).

use std::path::PathBuf;

use appmedia_acs::connection::{ConnectionString, parse_endpoint};
use appmedia_acs::hmac::AccessKey;
use appmedia_acs::models::AudioFormat;
use url::Url;

use crate::config::{ConfigError, env};

/// ACS's OpenID configuration: the keys that sign its callbacks and WebSocket connections.
pub const ACS_OPENID_CONFIGURATION: &str =
    "https://acscallautomation.communication.azure.com/calling/.well-known/acsopenidconfiguration";
/// The issuer of ACS's callback tokens.
pub const ACS_ISSUER: &str = "https://acscallautomation.communication.azure.com";

/// An Azure Communication Services resource as the bot's calling service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcsService {
    /// The resource's endpoint (`https://{resource}.communication.azure.com/`; the emulator's
    /// `https://127.0.0.1:PORT/`).
    pub endpoint: Url,
    /// The access key (HMAC-SHA256 signing). `None`: Entra tokens for the bot's `app_id`,
    /// `tenant` and `credential`.
    pub access_key: Option<AccessKey>,
    /// The Call Automation API version.
    pub api_version: String,
    /// A certificate authority to trust besides the system's: the emulator's per-run CA.
    pub ca_cert: Option<PathBuf>,
    /// The resource's phone number: the caller id of PSTN calls the bot places.
    pub phone_number: Option<String>,
    /// The public URL of the bot's audio WebSocket (`wss://…/acs/media`); `None`:
    /// `ws://{bound listen address}/acs/media`, reachable from this machine only (the
    /// emulator).
    pub media_url: Option<Url>,
    /// The streamed PCM format.
    pub audio_format: AudioFormat,
    /// How the service's callbacks are authenticated beyond the per-call secret in their URL.
    pub events: EventAuth,
}

/// How ACS's callbacks and WebSocket connections are authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventAuth {
    /// Only the unguessable per-call token each callback and media URL carries.
    UrlToken,
    /// That, and a JWT bearer signed by the keys of `openid_url`, with this audience (the
    /// resource's immutable id for ACS itself) and one of these issuers.
    Jwt {
        /// The OpenID configuration listing the signing keys.
        openid_url: Url,
        /// Accepted `iss`.
        issuers: Vec<String>,
        /// Required `aud`.
        audience: String,
    },
}

impl AcsService {
    /// From a connection string (`endpoint=…;accesskey=…`), 16 kHz audio, no phone number.
    pub fn from_connection_string(value: &str) -> Result<Self, ConfigError> {
        let cs = ConnectionString::parse(value).map_err(|e| ConfigError::Invalid {
            field: "service.acs.connection_string",
            var: env::ACS_CONNECTION_STRING,
            value: "(hidden)".into(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(cs.endpoint, Some(cs.access_key)))
    }

    /// An endpoint, with its access key or (`None`) Entra tokens.
    pub fn new(endpoint: Url, access_key: Option<AccessKey>) -> Self {
        AcsService {
            endpoint,
            access_key,
            api_version: appmedia_acs::client::API_VERSION.into(),
            ca_cert: None,
            phone_number: None,
            media_url: None,
            audio_format: AudioFormat::Pcm16KMono,
            events: EventAuth::UrlToken,
        }
    }

    /// The resource's phone number (caller id of PSTN calls).
    pub fn with_phone_number(mut self, number: impl Into<String>) -> Self {
        self.phone_number = Some(number.into());
        self
    }

    /// A CA certificate (PEM file) to trust: the emulator's.
    pub fn with_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// The public URL of the bot's audio WebSocket.
    pub fn with_media_url(mut self, url: Url) -> Self {
        self.media_url = Some(url);
        self
    }

    /// The streamed PCM format (16 or 24 kHz).
    pub fn with_audio_format(mut self, format: AudioFormat) -> Self {
        self.audio_format = format;
        self
    }

    /// JWT authentication of the service's callbacks, as ACS signs them: its OpenID keys and
    /// issuer, the resource's immutable id as audience.
    pub fn with_acs_event_tokens(mut self, resource_id: impl Into<String>) -> Self {
        self.events = EventAuth::Jwt {
            openid_url: Url::parse(ACS_OPENID_CONFIGURATION).expect("a constant URL"),
            issuers: vec![ACS_ISSUER.into()],
            audience: resource_id.into(),
        };
        self
    }

    /// Reads the `APPMEDIA_ACS_*` variables: the connection string, or the endpoint (with
    /// Entra credentials), and the optional fields.
    pub(crate) fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let invalid = ConfigError::invalid;
        let mut service = match (get(env::ACS_CONNECTION_STRING), get(env::ACS_ENDPOINT)) {
            (Some(_), Some(endpoint)) => {
                return Err(invalid(
                    "service.acs.endpoint",
                    env::ACS_ENDPOINT,
                    &endpoint,
                    format!(
                        "give {} or {}, not both",
                        env::ACS_CONNECTION_STRING,
                        env::ACS_ENDPOINT
                    ),
                ));
            }
            (Some(cs), None) => Self::from_connection_string(&cs)?,
            (None, Some(endpoint)) => {
                let url = parse_endpoint(&endpoint).map_err(|e| {
                    invalid(
                        "service.acs.endpoint",
                        env::ACS_ENDPOINT,
                        &endpoint,
                        e.to_string(),
                    )
                })?;
                Self::new(url, None)
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    field: "service.acs",
                    var: "APPMEDIA_ACS_CONNECTION_STRING or APPMEDIA_ACS_ENDPOINT",
                });
            }
        };
        if let Some(v) = get(env::ACS_API_VERSION) {
            service.api_version = v.trim().to_owned();
        }
        if let Some(v) = get(env::ACS_CA_CERT) {
            service.ca_cert = Some(PathBuf::from(v));
        }
        if let Some(v) = get(env::ACS_PHONE_NUMBER) {
            service.phone_number = Some(v.trim().to_owned());
        }
        if let Some(v) = get(env::ACS_MEDIA_URL) {
            service.media_url = Some(Url::parse(&v).map_err(|e| {
                invalid(
                    "service.acs.media_url",
                    env::ACS_MEDIA_URL,
                    &v,
                    e.to_string(),
                )
            })?);
        }
        if let Some(v) = get(env::ACS_AUDIO_FORMAT) {
            service.audio_format = match v.trim() {
                "16k" | "pcm16KMono" => AudioFormat::Pcm16KMono,
                "24k" | "pcm24KMono" => AudioFormat::Pcm24KMono,
                other => {
                    return Err(invalid(
                        "service.acs.audio_format",
                        env::ACS_AUDIO_FORMAT,
                        other,
                        "16k or 24k".into(),
                    ));
                }
            };
        }
        if let Some(audience) = get(env::ACS_EVENTS_AUDIENCE) {
            let openid = get(env::ACS_EVENTS_OPENID_URL)
                .unwrap_or_else(|| ACS_OPENID_CONFIGURATION.to_owned());
            let openid_url = Url::parse(&openid).map_err(|e| {
                invalid(
                    "service.acs.events.openid_url",
                    env::ACS_EVENTS_OPENID_URL,
                    &openid,
                    e.to_string(),
                )
            })?;
            let issuers = get(env::ACS_EVENTS_ISSUER)
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_else(|| vec![ACS_ISSUER.to_owned()]);
            service.events = EventAuth::Jwt {
                openid_url,
                issuers,
                audience: audience.trim().to_owned(),
            };
        }
        Ok(service)
    }

    /// Checks what the service will be given: https (or loopback), a media URL the service
    /// can reach securely, a phone number in E.164.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        use appmedia_signalling::validate::is_https_or_loopback;
        let invalid = |field: &'static str, var: &'static str, value: String, reason: &str| {
            Err(ConfigError::Invalid {
                field,
                var,
                value,
                reason: reason.to_owned(),
            })
        };
        if !is_https_or_loopback(&self.endpoint) {
            return invalid(
                "service.acs.endpoint",
                env::ACS_ENDPOINT,
                self.endpoint.to_string(),
                "https, or http to a loopback address only (the signed requests would cross the network in clear)",
            );
        }
        if let Some(url) = &self.media_url {
            let loopback = url
                .host()
                .is_some_and(|h| appmedia_signalling::validate::is_loopback(&h));
            if !(url.scheme() == "wss" || (url.scheme() == "ws" && loopback)) {
                return invalid(
                    "service.acs.media_url",
                    env::ACS_MEDIA_URL,
                    url.to_string(),
                    "wss, or ws to a loopback address only",
                );
            }
        }
        if let Some(number) = &self.phone_number
            && !(number.starts_with('+')
                && number.len() > 4
                && number.len() <= 16
                && number[1..].chars().all(|c| c.is_ascii_digit()))
        {
            return invalid(
                "service.acs.phone_number",
                env::ACS_PHONE_NUMBER,
                number.clone(),
                "an E.164 number: + and 4 to 15 digits",
            );
        }
        if self.api_version.is_empty()
            || !self
                .api_version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return invalid(
                "service.acs.api_version",
                env::ACS_API_VERSION,
                self.api_version.clone(),
                "like 2025-05-15",
            );
        }
        Ok(())
    }
}
