//! Tokens in both directions.
//!
//! * Outgoing (bot → Graph): [`TokenSource`] hands the [`GraphClient`](crate::client::GraphClient)
//!   a bearer token, either a fixed one or one obtained with the OAuth2 client-credentials
//!   grant ([`ClientCredentials`]) and cached until shortly before it expires.
//! * Incoming (Graph → bot): [`CallbackTokenValidator`] checks the `Authorization: Bearer` JWT
//!   that every notification POST carries: RS256 signature against the keys published through
//!   an OpenID configuration document, issuer, audience (the bot's app id), tenant (`tid`) and
//!   expiry.
//! * Issuing: [`TokenIssuer`] signs RS256 JWTs and [`PublishedKeys`] serves the matching
//!   OpenID configuration and JWKS, so the local emulator and the tests speak the same protocol
//!   the validator checks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

mod certificate;
mod jwt_crypto;

pub use certificate::{
    ASSERTION_LIFETIME, CLIENT_ASSERTION_TYPE, Certificate, CertificateError, ClientCertificate,
};
pub use jwt_crypto::install as install_jwt_crypto;

/// Issuers Graph uses for callback tokens: the Bot Framework one, and the Graph one the
/// Microsoft samples also accept.
pub const DEFAULT_CALLBACK_ISSUERS: [&str; 2] = [
    "https://api.botframework.com",
    "https://graph.microsoft.com",
];

/// Where the Microsoft calling samples find the keys that sign callback tokens.
pub const DEFAULT_OPENID_CONFIGURATION_URL: &str =
    "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration";

// ---------------------------------------------------------------------------------------------
// Outgoing tokens
// ---------------------------------------------------------------------------------------------

/// Why no bearer token could be had for a Graph request.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint {url} unreachable: {reason}")]
    Unreachable {
        /// The token endpoint's URL.
        url: String,
        /// Why the request failed (connection, timeout, TLS).
        reason: String,
    },
    /// The token endpoint refused (e.g. `invalid_client`).
    #[error("token endpoint {url} answered {status}: {error}: {description}")]
    Refused {
        /// The token endpoint's URL.
        url: String,
        /// The HTTP status it answered.
        status: u16,
        /// The OAuth2 `error` code (`unreadable_error` when the body is not one).
        error: String,
        /// The `error_description` (or the start of an unreadable body).
        description: String,
    },
    /// The token endpoint answered 2xx with a body that is not a token response.
    #[error("token endpoint {url} answered an unreadable body: {reason}")]
    BadResponse {
        /// The token endpoint's URL.
        url: String,
        /// What is wrong with the body.
        reason: String,
    },
    /// The certificate credential could not sign a client assertion.
    #[error("cannot sign the client assertion: {0}")]
    Assertion(String),
    /// A static token was rejected and there is no way to get another one.
    #[error("the static bearer token was rejected and cannot be refreshed")]
    CannotRefresh,
    /// The token endpoint is plain http to another machine: the credential would cross the
    /// network in clear, so it is not sent.
    #[error(
        "token endpoint {url} is not https (plain http only to loopback): credentials not sent"
    )]
    InsecureEndpoint {
        /// The token endpoint's URL.
        url: String,
    },
}

/// How an application authenticates to the token endpoint.
#[derive(Clone)]
pub enum ClientAuth {
    /// A client secret (`client_secret=`).
    Secret(String),
    /// A certificate: each token request carries a fresh signed client assertion.
    Certificate(ClientCertificate),
}

impl std::fmt::Debug for ClientAuth {
    // The secret must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::Secret(_) => f.write_str("Secret(<redacted>)"),
            ClientAuth::Certificate(c) => f.debug_tuple("Certificate").field(c).finish(),
        }
    }
}

impl From<String> for ClientAuth {
    fn from(secret: String) -> Self {
        ClientAuth::Secret(secret)
    }
}

impl From<&str> for ClientAuth {
    fn from(secret: &str) -> Self {
        ClientAuth::Secret(secret.to_owned())
    }
}

impl From<&String> for ClientAuth {
    fn from(secret: &String) -> Self {
        ClientAuth::Secret(secret.clone())
    }
}

impl From<ClientCertificate> for ClientAuth {
    fn from(certificate: ClientCertificate) -> Self {
        ClientAuth::Certificate(certificate)
    }
}

/// OAuth2 client-credentials settings (Microsoft identity platform v2 endpoint or the emulator's).
#[derive(Clone)]
pub struct ClientCredentials {
    /// Token endpoint, e.g. `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: Url,
    /// The bot's application (client) id.
    pub client_id: String,
    /// How the application proves its identity: a secret or a certificate.
    pub credential: ClientAuth,
    /// Scope, e.g. `https://graph.microsoft.com/.default` (see [`NationalCloud::graph_scope`](crate::client::NationalCloud::graph_scope)).
    pub scope: String,
    /// A cached token is replaced this long before it expires, so it never expires in flight.
    pub refresh_margin: Duration,
}

impl std::fmt::Debug for ClientCredentials {
    // The secret must never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("credential", &self.credential)
            .field("scope", &self.scope)
            .field("refresh_margin", &self.refresh_margin)
            .finish()
    }
}

impl ClientCredentials {
    /// Client credentials against the Microsoft identity platform of `tenant` on the global cloud.
    pub fn microsoft(
        tenant: &str,
        client_id: impl Into<String>,
        credential: impl Into<ClientAuth>,
    ) -> Result<Self, url::ParseError> {
        Self::for_authority(
            "https://login.microsoftonline.com",
            tenant,
            client_id,
            credential,
            "https://graph.microsoft.com/.default",
        )
    }

    /// Client credentials against `{authority_host}/{tenant}/oauth2/v2.0/token`.
    pub fn for_authority(
        authority_host: &str,
        tenant: &str,
        client_id: impl Into<String>,
        credential: impl Into<ClientAuth>,
        scope: impl Into<String>,
    ) -> Result<Self, url::ParseError> {
        let token_url = Url::parse(&format!(
            "{}/{}/oauth2/v2.0/token",
            authority_host.trim_end_matches('/'),
            tenant
        ))?;
        Ok(Self {
            token_url,
            client_id: client_id.into(),
            credential: credential.into(),
            scope: scope.into(),
            refresh_margin: Duration::from_secs(300),
        })
    }
}

#[derive(Clone)]
struct CachedToken {
    secret: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<Value>,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// Where the [`GraphClient`](crate::client::GraphClient) gets its bearer tokens.
#[derive(Clone)]
pub struct TokenSource {
    inner: Arc<TokenSourceInner>,
}

// One per token source, behind an Arc: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum TokenSourceInner {
    Static(String),
    ClientCredentials {
        credentials: ClientCredentials,
        http: reqwest::Client,
        cache: tokio::sync::Mutex<Option<CachedToken>>,
        fetches: AtomicUsize,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.inner {
            TokenSourceInner::Static(_) => f.write_str("TokenSource::Static(<redacted>)"),
            TokenSourceInner::ClientCredentials { credentials, .. } => f
                .debug_tuple("TokenSource::ClientCredentials")
                .field(credentials)
                .finish(),
        }
    }
}

impl TokenSource {
    /// Always the same token (tests, or a token obtained elsewhere).
    pub fn fixed(token: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(TokenSourceInner::Static(token.into())),
        }
    }

    /// Tokens from the client-credentials grant; `timeout` bounds each token request.
    pub fn client_credentials(
        credentials: ClientCredentials,
        timeout: Duration,
    ) -> Result<Self, crate::HttpClientError> {
        let http = crate::http_client(timeout, timeout)?;
        Ok(Self {
            inner: Arc::new(TokenSourceInner::ClientCredentials {
                credentials,
                http,
                cache: tokio::sync::Mutex::new(None),
                fetches: AtomicUsize::new(0),
            }),
        })
    }

    /// Whether [`TokenSource::invalidate`] can lead to a different token.
    pub fn can_refresh(&self) -> bool {
        matches!(&*self.inner, TokenSourceInner::ClientCredentials { .. })
    }

    /// How many times the token endpoint was asked (0 for a fixed token).
    pub fn fetch_count(&self) -> usize {
        match &*self.inner {
            TokenSourceInner::Static(_) => 0,
            TokenSourceInner::ClientCredentials { fetches, .. } => fetches.load(Ordering::Relaxed),
        }
    }

    /// A token valid for at least the refresh margin.
    pub async fn token(&self) -> Result<String, TokenError> {
        match &*self.inner {
            TokenSourceInner::Static(token) => Ok(token.clone()),
            TokenSourceInner::ClientCredentials {
                credentials,
                http,
                cache,
                fetches,
            } => {
                // Held across the fetch on purpose: concurrent requests wait for one fetch
                // instead of each asking the token endpoint.
                let mut cached = cache.lock().await;
                if let Some(token) = cached.as_ref()
                    && Instant::now() < token.refresh_at
                {
                    return Ok(token.secret.clone());
                }
                fetches.fetch_add(1, Ordering::Relaxed);
                let fresh = fetch_client_credentials_token(http, credentials).await?;
                let secret = fresh.secret.clone();
                *cached = Some(fresh);
                Ok(secret)
            }
        }
    }

    /// Forget the cached token `rejected` (the service answered 401 with it), so the next
    /// [`TokenSource::token`] fetches a new one. A token cached since by another request is kept.
    pub async fn invalidate(&self, rejected: &str) -> Result<(), TokenError> {
        match &*self.inner {
            TokenSourceInner::Static(_) => Err(TokenError::CannotRefresh),
            TokenSourceInner::ClientCredentials { cache, .. } => {
                let mut cached = cache.lock().await;
                if cached.as_ref().is_some_and(|t| t.secret == rejected) {
                    *cached = None;
                }
                Ok(())
            }
        }
    }
}

/// The form of a client-credentials request: the secret, or a fresh client assertion (each has
/// its own jti and ten-minute lifetime) for the token endpoint `url`.
fn token_request_body(credentials: &ClientCredentials, url: &str) -> Result<String, TokenError> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials")
        .append_pair("client_id", &credentials.client_id);
    match &credentials.credential {
        ClientAuth::Secret(secret) => {
            form.append_pair("client_secret", secret);
        }
        ClientAuth::Certificate(certificate) => {
            let assertion = certificate
                .assertion(&credentials.client_id, url)
                .map_err(|e| TokenError::Assertion(e.to_string()))?;
            form.append_pair("client_assertion_type", CLIENT_ASSERTION_TYPE)
                .append_pair("client_assertion", &assertion);
        }
    }
    Ok(form.append_pair("scope", &credentials.scope).finish())
}

async fn fetch_client_credentials_token(
    http: &reqwest::Client,
    credentials: &ClientCredentials,
) -> Result<CachedToken, TokenError> {
    let url = credentials.token_url.to_string();
    if !crate::validate::is_https_or_loopback(&credentials.token_url) {
        return Err(TokenError::InsecureEndpoint { url });
    }
    let body = token_request_body(credentials, &url)?;
    let requested_at = Instant::now();
    let response = http
        .post(credentials.token_url.clone())
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header("client-request-id", uuid::Uuid::new_v4().to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| TokenError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| TokenError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    if !status.is_success() {
        let (error, description) = match serde_json::from_slice::<TokenErrorResponse>(&bytes) {
            Ok(e) => (e.error, e.error_description),
            Err(_) => (
                "unreadable_error".to_owned(),
                String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            ),
        };
        return Err(TokenError::Refused {
            url,
            status: status.as_u16(),
            error,
            description,
        });
    }
    let parsed: TokenResponse =
        serde_json::from_slice(&bytes).map_err(|e| TokenError::BadResponse {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    // Azure AD sends expires_in as a number; some older endpoints send a string.
    let expires_in = match parsed.expires_in {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .ok_or_else(|| TokenError::BadResponse {
        url: url.clone(),
        reason: "expires_in missing or not a number of seconds".to_owned(),
    })?;
    tracing::debug!(token_url = %url, expires_in, "fetched a client-credentials token");
    Ok(CachedToken {
        secret: parsed.access_token,
        refresh_at: refresh_at(requested_at, expires_in, credentials.refresh_margin),
    })
}

/// The longest token lifetime believed: Entra ID's tokens last 60–90 minutes; a service that
/// says more (or `u64::MAX`) is refreshed after a day anyway.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// When a token that lives `expires_in` seconds from `requested_at` is fetched again: the
/// margin before its end, or at half-life when it lives less than the margin. Never panics,
/// whatever the service says.
fn refresh_at(requested_at: Instant, expires_in: u64, margin: Duration) -> Instant {
    let lifetime = Duration::from_secs(expires_in).min(MAX_TOKEN_LIFETIME);
    let usable = if lifetime > margin {
        lifetime - margin
    } else {
        lifetime / 2
    };
    requested_at.checked_add(usable).unwrap_or(requested_at)
}

/// The decoded claims of a JWT, signature NOT verified. Only for the client's pre-flight
/// permission check (the service verifies the token; we only want to fail early with a clear
/// message naming the missing permission).
pub fn unverified_payload(token: &str) -> Result<serde_json::Map<String, Value>, JwtPayloadError> {
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtPayloadError::NotAJwt);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|e| JwtPayloadError::Base64(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| JwtPayloadError::Json(e.to_string()))
}

/// Why a token's payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtPayloadError {
    #[error("the token is not a JWT (expected three dot-separated parts)")]
    /// Not three dot-separated parts.
    NotAJwt,
    #[error("the JWT payload is not base64url: {0}")]
    /// The payload part is not base64url; the decoder's message.
    Base64(String),
    #[error("the JWT payload is not a JSON object: {0}")]
    /// The decoded payload is not a JSON object; the parser's message.
    Json(String),
}

// ---------------------------------------------------------------------------------------------
// Incoming (callback) tokens
// ---------------------------------------------------------------------------------------------

/// Which tenants may send notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantPolicy {
    /// Any tenant, but the `tid` claim must be present (a multi-tenant bot).
    Any,
    /// No tenant at all: tokens of a service that is not tenant-scoped (ACS signs its
    /// callbacks for a resource, its `aud`, with no `tid`). `tenant_id` is then empty unless
    /// the token carries one.
    NotScoped,
    /// Only these tenant ids (compared case-insensitively, they are GUIDs).
    Only(Vec<String>),
}

/// What the callback receiver accepts.
#[derive(Debug, Clone)]
pub struct CallbackAuthConfig {
    /// The bot's application id: the required `aud`.
    pub app_id: String,
    /// Accepted `iss` values.
    pub issuers: Vec<String>,
    /// Accepted `tid` values.
    pub tenants: TenantPolicy,
    /// The OpenID configuration document whose `jwks_uri` lists the signing keys.
    pub openid_configuration_url: Url,
    /// Clock skew tolerated on `exp`/`nbf`.
    pub leeway: Duration,
    /// A token signed with an unknown `kid` triggers a refetch of the keys, at most this often
    /// (a flood of forged tokens must not turn into a flood of fetches, and a key Microsoft
    /// rotated in is picked up within this time).
    pub refetch_min_interval: Duration,
    /// Keys are refetched when older than this, even when every `kid` is known.
    pub keys_max_age: Duration,
    /// After a failed fetch, the next one may come this soon (instead of
    /// `refetch_min_interval`).
    pub retry_after_failure: Duration,
    /// Bound on one fetch of the keys (the OpenID document and the JWKS together): how long
    /// a notification signed with a key not seen yet may wait for them.
    pub fetch_timeout: Duration,
    /// Certificate authorities (PEM) to trust for those fetches besides the system's: a
    /// local service's own CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl CallbackAuthConfig {
    /// The defaults Graph needs: Bot Framework and Graph issuers, the published key document,
    /// 30 s between unknown-`kid` refetches, keys refreshed daily.
    pub fn new(app_id: impl Into<String>, tenants: TenantPolicy) -> Self {
        Self {
            app_id: app_id.into(),
            issuers: DEFAULT_CALLBACK_ISSUERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            tenants,
            openid_configuration_url: Url::parse(DEFAULT_OPENID_CONFIGURATION_URL)
                .expect("constant URL parses"),
            leeway: Duration::from_secs(60),
            // Microsoft.IdentityModel's ConfigurationManager refreshes at most every 5 min on
            // demand; 30 s keeps a forged-kid flood to two fetches a minute while a rotated
            // key is found within a notification retry or two, not minutes later.
            refetch_min_interval: Duration::from_secs(30),
            keys_max_age: Duration::from_secs(24 * 3600),
            retry_after_failure: Duration::from_secs(10),
            // Well under the time a sender waits for the answer (the emulator gives up on a
            // POST after 10 s): a notification waiting for keys is answered, 503 if need be,
            // before its sender times out and counts a failure of its own.
            fetch_timeout: Duration::from_secs(5),
            ca_pem: None,
        }
    }
}

/// Why a callback token was refused. Every variant but [`KeysUnavailable`](Self::KeysUnavailable)
/// means 401 and nothing applied; that one means the token could not be checked, and the
/// receiver answers 503 with `Retry-After`, which Graph retries ([`Self::is_unavailable`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackAuthError {
    #[error("no Authorization header")]
    /// The request has no `Authorization` header.
    MissingAuthorization,
    #[error("the Authorization header is not `Bearer <token>`")]
    /// The header is not `Bearer <token>`.
    NotBearer,
    #[error("the bearer token is not a well-formed JWT: {0}")]
    /// The token is not a well-formed JWT; the decoder's message.
    Malformed(String),
    /// Signed with another algorithm than RS256.
    #[error("the token is signed with {alg}, only RS256 is accepted")]
    UnsupportedAlgorithm {
        /// The header's `alg`.
        alg: String,
    },
    #[error("the token header names no key id (`kid`)")]
    /// The header names no key id.
    MissingKeyId,
    /// No published key has the token's key id (after a refetch).
    #[error("no published key has id {kid}")]
    UnknownKey {
        /// The header's `kid`.
        kid: String,
    },
    /// The signature does not verify with the named key.
    #[error("the signature does not verify against key {kid}")]
    BadSignature {
        /// The key's id.
        kid: String,
    },
    /// Past its `exp` (beyond the allowed clock skew).
    #[error("the token expired (exp {exp})")]
    Expired {
        /// The token's `exp` (Unix seconds).
        exp: u64,
    },
    /// Before its `nbf` (beyond the allowed clock skew).
    #[error("the token is not valid yet (nbf {nbf})")]
    NotYetValid {
        /// The token's `nbf` (Unix seconds).
        nbf: u64,
    },
    /// A claim the validation needs is absent.
    #[error("claim `{claim}` is missing")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// Issued by an issuer the configuration does not accept.
    #[error("issuer {iss} is not accepted")]
    WrongIssuer {
        /// The token's `iss`.
        iss: String,
    },
    /// Not addressed to this bot's application id.
    #[error("audience {aud:?} does not include this bot's app id")]
    WrongAudience {
        /// The token's `aud` values.
        aud: Vec<String>,
    },
    /// From a tenant the configuration does not accept.
    #[error("tenant {tid} is not accepted")]
    WrongTenant {
        /// The token's `tid`.
        tid: String,
    },
    #[error("signing keys unavailable: {0}")]
    /// The signing keys could not be fetched (and the token's key is not among those known);
    /// why.
    KeysUnavailable(String),
}

impl CallbackAuthError {
    /// True when the token was not found bad but could not be checked: the signing keys were
    /// unavailable. A receiver answers 503 (the sender retries) rather than 401 (refused for
    /// good) — a notification refused 401 while the key endpoint was down would be lost.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable(_))
    }
}

/// The claims of an accepted callback token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackClaims {
    /// The token's `iss`.
    pub issuer: String,
    /// The token's `aud` values.
    pub audience: Vec<String>,
    /// The token's `tid`: the tenant the notification is about.
    pub tenant_id: String,
    /// The token's `exp` (Unix seconds).
    pub expires_at: u64,
    /// Every claim, for anything else the bot wants to look at.
    pub all: serde_json::Map<String, Value>,
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    attempted_at: Option<Instant>,
    /// Why the last fetch failed (cleared by a successful one).
    last_error: Option<CallbackAuthError>,
}

/// Validates callback tokens; cheap to share (`Arc`) between requests.
pub struct CallbackTokenValidator {
    keys: Arc<KeySource>,
}

/// The signing keys and their fetching, shared with a refresh running in the background.
struct KeySource {
    config: CallbackAuthConfig,
    http: reqwest::Client,
    /// Read and written without awaiting anything while it is held: a fetch in progress
    /// never delays a token whose key is known.
    cache: std::sync::Mutex<KeyCache>,
    /// One fetch at a time; tokens with an unknown key wait for it, the others do not.
    refresh: Arc<tokio::sync::Mutex<()>>,
    fetches: AtomicUsize,
}

impl std::fmt::Debug for CallbackTokenValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallbackTokenValidator")
            .field("config", &self.keys.config)
            .finish_non_exhaustive()
    }
}

impl CallbackTokenValidator {
    /// A validator for `config`; keys are fetched on first use.
    pub fn new(config: CallbackAuthConfig) -> Result<Self, crate::HttpClientError> {
        let http = crate::http_client_trusting(
            config.fetch_timeout,
            config.fetch_timeout,
            config.ca_pem.as_deref(),
        )?;
        Ok(Self {
            keys: Arc::new(KeySource {
                config,
                http,
                cache: std::sync::Mutex::new(KeyCache {
                    keys: HashMap::new(),
                    fetched_at: None,
                    attempted_at: None,
                    last_error: None,
                }),
                refresh: Arc::new(tokio::sync::Mutex::new(())),
                fetches: AtomicUsize::new(0),
            }),
        })
    }

    /// What the validator accepts.
    pub fn config(&self) -> &CallbackAuthConfig {
        &self.keys.config
    }

    /// How many times the key documents were fetched.
    pub fn key_fetch_count(&self) -> usize {
        self.keys.fetches.load(Ordering::Relaxed)
    }

    /// How long until the keys may be fetched again (zero: now): what a refusal for
    /// unavailable keys tells the sender to wait (`Retry-After`).
    pub fn next_fetch_in(&self) -> Duration {
        let cache = self.keys.cache();
        let gap = self.keys.gap_after(&cache);
        cache
            .attempted_at
            .map_or(Duration::ZERO, |t| gap.saturating_sub(t.elapsed()))
    }

    /// Validates the value of an `Authorization` header.
    pub async fn validate_header(
        &self,
        authorization: Option<&str>,
    ) -> Result<CallbackClaims, CallbackAuthError> {
        let header = authorization.ok_or(CallbackAuthError::MissingAuthorization)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(CallbackAuthError::NotBearer)?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(CallbackAuthError::NotBearer);
        }
        self.validate(token.trim()).await
    }

    /// Validates a bearer token.
    pub async fn validate(&self, token: &str) -> Result<CallbackClaims, CallbackAuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| CallbackAuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(CallbackAuthError::UnsupportedAlgorithm {
                alg: format!("{:?}", header.alg),
            });
        }
        let kid = header.kid.ok_or(CallbackAuthError::MissingKeyId)?;
        let key = self.key_for(&kid).await?;
        let config = &self.keys.config;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        // iss/aud/tid are checked below, so the error can name the refused value.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        install_jwt_crypto();
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let claims = unverified_payload(token).unwrap_or_default();
                let number = |name: &str| claims.get(name).and_then(Value::as_u64).unwrap_or(0);
                match e.kind() {
                    ErrorKind::InvalidSignature => {
                        CallbackAuthError::BadSignature { kid: kid.clone() }
                    }
                    ErrorKind::ExpiredSignature => {
                        CallbackAuthError::Expired { exp: number("exp") }
                    }
                    ErrorKind::ImmatureSignature => {
                        CallbackAuthError::NotYetValid { nbf: number("nbf") }
                    }
                    ErrorKind::MissingRequiredClaim(_) => {
                        CallbackAuthError::MissingClaim { claim: "exp" }
                    }
                    other => CallbackAuthError::Malformed(format!("{other:?}")),
                }
            })?;
        let claims = data.claims;

        let issuer = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(CallbackAuthError::MissingClaim { claim: "iss" })?
            .to_owned();
        if !config
            .issuers
            .iter()
            .any(|accepted| accepted.trim_end_matches('/') == issuer.trim_end_matches('/'))
        {
            return Err(CallbackAuthError::WrongIssuer { iss: issuer });
        }

        let audience: Vec<String> = match claims.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => return Err(CallbackAuthError::MissingClaim { claim: "aud" }),
        };
        if !audience.iter().any(|a| a == &config.app_id) {
            return Err(CallbackAuthError::WrongAudience { aud: audience });
        }

        let tenant_id = match claims.get("tid").and_then(Value::as_str) {
            Some(tid) => tid.to_owned(),
            None if matches!(config.tenants, TenantPolicy::NotScoped) => String::new(),
            None => return Err(CallbackAuthError::MissingClaim { claim: "tid" }),
        };
        if let TenantPolicy::Only(tenants) = &config.tenants
            && !tenants.iter().any(|t| t.eq_ignore_ascii_case(&tenant_id))
        {
            return Err(CallbackAuthError::WrongTenant { tid: tenant_id });
        }

        let expires_at = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        Ok(CallbackClaims {
            issuer,
            audience,
            tenant_id,
            expires_at,
            all: claims,
        })
    }

    /// The key `kid` names. A known key is answered at once, from the cache, even while a
    /// fetch is in flight; keys past their age are refreshed in the background while the
    /// known ones keep serving. An unknown key starts a fetch — one at a time, rate-limited
    /// whatever triggered it: a flood of forged kids or an outage of the key endpoint must not
    /// turn into a flood of fetches; after a failure the retry comes sooner. Tokens with an
    /// unknown key wait for the fetch in flight (bounded by `fetch_timeout`), not for a new
    /// one. When the keys could not be fetched, an unknown key is
    /// [`CallbackAuthError::KeysUnavailable`] (it may be a genuinely new key: the sender should
    /// come back), not [`CallbackAuthError::UnknownKey`].
    async fn key_for(&self, kid: &str) -> Result<DecodingKey, CallbackAuthError> {
        let keys = &self.keys;
        let known = {
            let cache = keys.cache();
            let fresh = cache
                .fetched_at
                .is_some_and(|t| t.elapsed() < keys.config.keys_max_age);
            match cache.keys.get(kid) {
                Some(key) if fresh => return Ok(key.clone()),
                other => other.cloned(),
            }
        };
        if let Some(stale) = known {
            // Keys past their age: refreshed in the background (one refresh at a time, within
            // the rate limit) while the known key answers this token at once — a slow or dead
            // key endpoint must not hold up a notification signed with a key we have.
            if keys.fetch_due()
                && let Ok(refreshing) = keys.refresh.clone().try_lock_owned()
            {
                let source = keys.clone();
                let refresh = async move {
                    let _refreshing = refreshing;
                    source.fetch_if_allowed().await;
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(runtime) => {
                        runtime.spawn(refresh);
                    }
                    // Outside a runtime nothing could run it later: refresh now.
                    Err(_) => refresh.await,
                }
            }
            return Ok(stale);
        }
        // Unknown: wait for a fetch in flight, then fetch ourselves if still unknown and
        // allowed.
        let _refreshing = keys.refresh.lock().await;
        if let Some(key) = keys.cache().keys.get(kid) {
            return Ok(key.clone());
        }
        keys.fetch_if_allowed().await;
        let cache = keys.cache();
        match (cache.keys.get(kid), &cache.last_error) {
            (Some(key), _) => Ok(key.clone()),
            (None, Some(unavailable)) => Err(unavailable.clone()),
            (None, None) => Err(CallbackAuthError::UnknownKey {
                kid: kid.to_owned(),
            }),
        }
    }
}

impl KeySource {
    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The least time between two fetches: shorter after a failure.
    fn gap_after(&self, cache: &KeyCache) -> Duration {
        if cache.last_error.is_some() {
            self.config.retry_after_failure
        } else {
            self.config.refetch_min_interval
        }
    }

    /// Whether the rate limit lets a fetch start now.
    fn fetch_due(&self) -> bool {
        let cache = self.cache();
        let gap = self.gap_after(&cache);
        cache.attempted_at.is_none_or(|t| t.elapsed() >= gap)
    }

    /// Fetches the keys unless the last attempt was too recent. Called with `refresh` held.
    /// The whole fetch (OpenID document and JWKS) is bounded by `fetch_timeout`.
    async fn fetch_if_allowed(&self) {
        {
            let mut cache = self.cache();
            let gap = self.gap_after(&cache);
            if cache.attempted_at.is_some_and(|t| t.elapsed() < gap) {
                return;
            }
            cache.attempted_at = Some(Instant::now());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let timeout = self.config.fetch_timeout;
        let fetched = match tokio::time::timeout(timeout, self.fetch_keys()).await {
            Ok(fetched) => fetched,
            Err(_) => Err(CallbackAuthError::KeysUnavailable(format!(
                "{}: no keys within {timeout:?}",
                self.config.openid_configuration_url
            ))),
        };
        let mut cache = self.cache();
        match fetched {
            Ok(keys) => {
                tracing::debug!(count = keys.len(), "fetched callback signing keys");
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.last_error = None;
            }
            Err(e) => {
                // Keep serving the keys we had: an outage of the key endpoint must not
                // reject every notification signed with a key we already know.
                tracing::warn!(error = %e, "fetching callback signing keys failed");
                cache.last_error = Some(e);
            }
        }
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, CallbackAuthError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            CallbackAuthError::KeysUnavailable(format!("{what}: {e}"))
        };
        let config_url = self.config.openid_configuration_url.clone();
        // Keys fetched in clear from another machine could be anyone's: https, or loopback.
        let insecure = &"not https (plain http only to loopback): not fetched";
        if !crate::validate::is_https_or_loopback(&config_url) {
            return Err(unavailable(config_url.as_str(), insecure));
        }
        let document: Value = self
            .get_json(config_url.clone())
            .await
            .map_err(|e| unavailable(config_url.as_str(), &e))?;
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| unavailable(config_url.as_str(), &"no jwks_uri"))?;
        let jwks_url = config_url
            .join(jwks_uri)
            .map_err(|e| unavailable(jwks_uri, &e))?;
        if !crate::validate::is_https_or_loopback(&jwks_url) {
            return Err(unavailable(jwks_url.as_str(), insecure));
        }
        let jwks: Value = self
            .get_json(jwks_url.clone())
            .await
            .map_err(|e| unavailable(jwks_url.as_str(), &e))?;
        let entries = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| unavailable(jwks_url.as_str(), &"no `keys` array"))?;
        let mut keys = HashMap::new();
        for entry in entries {
            // One key of a kind we do not use (EC, or a malformed one) must not hide the others.
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                tracing::debug!(key = %entry, "skipping an unreadable JWK");
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
                continue;
            }
            match DecodingKey::from_jwk(&jwk) {
                Ok(key) => {
                    keys.insert(kid, key);
                }
                Err(e) => tracing::debug!(%kid, error = %e, "skipping an unusable JWK"),
            }
        }
        Ok(keys)
    }

    async fn get_json(&self, url: Url) -> Result<Value, String> {
        let response = self.http.get(url).send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("HTTP {status}"));
        }
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

/// How the callback receiver authenticates notifications.
#[derive(Debug, Clone)]
pub struct CallbackAuth {
    mode: CallbackAuthMode,
}

#[derive(Debug, Clone)]
enum CallbackAuthMode {
    Validate(Arc<CallbackTokenValidator>),
    DisabledOnLoopback(SocketAddr),
}

/// Refused: turning token validation off for a listener reachable from outside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("callback token validation may only be disabled on a loopback listener, not on {addr}")]
pub struct NotLoopback {
    /// The listener's address.
    pub addr: SocketAddr,
}

impl CallbackAuth {
    /// Validate every notification's token.
    pub fn validate(validator: Arc<CallbackTokenValidator>) -> Self {
        Self {
            mode: CallbackAuthMode::Validate(validator),
        }
    }

    /// Accept notifications without a token; only for a listener bound to loopback
    /// (local tests, the embedded emulator), refused for any other address.
    pub fn disabled_for_loopback(listener: SocketAddr) -> Result<Self, NotLoopback> {
        if listener.ip().is_loopback() {
            Ok(Self {
                mode: CallbackAuthMode::DisabledOnLoopback(listener),
            })
        } else {
            Err(NotLoopback { addr: listener })
        }
    }

    /// How long a sender refused for unavailable keys should wait before it tries again:
    /// until the validator fetches them again (at least a second, as `Retry-After` counts).
    pub fn retry_after(&self) -> Duration {
        match &self.mode {
            CallbackAuthMode::Validate(v) => v.next_fetch_in().max(Duration::from_secs(1)),
            CallbackAuthMode::DisabledOnLoopback(_) => Duration::from_secs(1),
        }
    }

    /// The listener address validation was disabled for, if it was.
    pub fn disabled_on(&self) -> Option<SocketAddr> {
        match self.mode {
            CallbackAuthMode::DisabledOnLoopback(addr) => Some(addr),
            CallbackAuthMode::Validate(_) => None,
        }
    }

    /// Checks one request's `Authorization` header. `None` claims when validation is disabled.
    pub async fn check(
        &self,
        authorization: Option<&str>,
    ) -> Result<Option<CallbackClaims>, CallbackAuthError> {
        match &self.mode {
            CallbackAuthMode::Validate(v) => v.validate_header(authorization).await.map(Some),
            CallbackAuthMode::DisabledOnLoopback(_) => Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Issuing tokens (the emulator's side, and the tests')
// ---------------------------------------------------------------------------------------------

/// Why a [`TokenIssuer`] could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("not a usable RSA private key: {0}")]
    /// The PEM is not an RSA private key the signer can use; why.
    BadKey(String),
    #[error("RSA key generation failed: {0}")]
    /// Generating a key failed; why.
    Generate(String),
    #[error("signing failed: {0}")]
    /// Signing the claims failed; why.
    Sign(String),
}

/// The claims of a callback token as Graph sends them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CallbackTokenClaims {
    /// The issuer (`iss`), e.g. `https://api.botframework.com`.
    pub iss: String,
    /// The audience (`aud`): the bot's application id.
    pub aud: String,
    /// The tenant (`tid`) of the call the notification is about.
    pub tid: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not valid before (Unix seconds).
    pub nbf: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

impl CallbackTokenClaims {
    /// Claims valid from now for `lifetime`.
    pub fn new(
        issuer: impl Into<String>,
        app_id: impl Into<String>,
        tenant_id: impl Into<String>,
        lifetime: Duration,
    ) -> Self {
        let now = unix_now();
        Self {
            iss: issuer.into(),
            aud: app_id.into(),
            tid: tenant_id.into(),
            iat: now,
            nbf: now,
            exp: now + lifetime.as_secs(),
        }
    }
}

/// The claims of an application (client-credentials) access token for Graph, as the
/// identity platform issues them and as [`check_token_claims`](crate::permissions::check_token_claims)
/// reads them: the emulator's token endpoint signs these with a [`TokenIssuer`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppTokenClaims {
    /// The resource, e.g. `https://graph.microsoft.com`.
    pub aud: String,
    /// The token service, e.g. `https://sts.windows.net/{tenant}/`.
    pub iss: String,
    /// The tenant (`tid`) the token was issued in.
    pub tid: String,
    /// The client application id.
    pub appid: String,
    /// Application permissions granted.
    pub roles: Vec<String>,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not valid before (Unix seconds).
    pub nbf: u64,
    /// Expires at (Unix seconds).
    pub exp: u64,
}

impl AppTokenClaims {
    /// Claims valid from now for `lifetime`.
    pub fn new(
        audience: impl Into<String>,
        issuer: impl Into<String>,
        tenant_id: impl Into<String>,
        app_id: impl Into<String>,
        roles: Vec<String>,
        lifetime: Duration,
    ) -> Self {
        let now = unix_now();
        Self {
            aud: audience.into(),
            iss: issuer.into(),
            tid: tenant_id.into(),
            appid: app_id.into(),
            roles,
            iat: now,
            nbf: now,
            exp: now + lifetime.as_secs(),
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Signs RS256 JWTs with one RSA key, identified by `kid`.
pub struct TokenIssuer {
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// From a PEM RSA private key (PKCS#1 or PKCS#8).
    pub fn from_rsa_pem(pem: &[u8], kid: impl Into<String>) -> Result<Self, IssuerError> {
        let key = EncodingKey::from_rsa_pem(pem).map_err(|e| IssuerError::BadKey(e.to_string()))?;
        Self::from_encoding_key(key, kid.into())
    }

    /// With a fresh 2048-bit key from the OS random generator (feature `keygen`: the key is
    /// generated with the RustCrypto `rsa` crate, which ring cannot do; the emulator and tests
    /// use it, a bot does not).
    #[cfg(feature = "keygen")]
    pub fn generate(kid: impl Into<String>) -> Result<Self, IssuerError> {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
            .map_err(|e| IssuerError::Generate(e.to_string()))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| IssuerError::Generate(e.to_string()))?;
        Self::from_encoding_key(EncodingKey::from_rsa_der(der.as_bytes()), kid.into())
    }

    fn from_encoding_key(key: EncodingKey, kid: String) -> Result<Self, IssuerError> {
        install_jwt_crypto();
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256)
            .map_err(|e| IssuerError::BadKey(e.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        Ok(Self { kid, key, jwk })
    }

    /// The key id (`kid`) tokens signed by this issuer carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public half, as a JWK.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    /// Signs any claims (RS256, `typ: JWT`, this issuer's `kid`).
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, IssuerError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        install_jwt_crypto();
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| IssuerError::Sign(e.to_string()))
    }
}

/// A JWKS and the OpenID configuration pointing at it, served over HTTP; keys can be added
/// and removed while serving (key rotation).
#[derive(Clone, Default)]
pub struct PublishedKeys {
    keys: Arc<RwLock<Vec<Jwk>>>,
    requests: Arc<AtomicUsize>,
}

impl std::fmt::Debug for PublishedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedKeys")
            .field("jwks", &self.jwks())
            .finish()
    }
}

/// Where [`PublishedKeys::router`] serves the OpenID configuration.
pub const OPENID_CONFIGURATION_PATH: &str = "/.well-known/openid-configuration";
/// Where [`PublishedKeys::router`] serves the JWKS.
pub const JWKS_PATH: &str = "/keys";

impl PublishedKeys {
    /// An empty set of keys; [`publish`](Self::publish) adds issuers' keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes the public key of `issuer` (replacing one with the same `kid`).
    pub fn publish(&self, issuer: &TokenIssuer) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.retain(|k| k.common.key_id.as_deref() != Some(issuer.kid()));
        keys.push(issuer.jwk().clone());
    }

    /// Stops publishing the key `kid`.
    pub fn withdraw(&self, kid: &str) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.retain(|k| k.common.key_id.as_deref() != Some(kid));
    }

    /// The JWKS document.
    pub fn jwks(&self) -> Value {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        serde_json::json!({ "keys": *keys })
    }

    /// How many requests the router answered (OpenID document and JWKS together).
    pub fn request_count(&self) -> usize {
        self.requests.load(Ordering::Relaxed)
    }

    /// An OpenID configuration document naming `issuer` and `jwks_uri`.
    pub fn openid_configuration(issuer: &str, jwks_uri: &str) -> Value {
        serde_json::json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        })
    }

    /// Serves [`OPENID_CONFIGURATION_PATH`] (naming `issuer` and a relative `jwks_uri`, so it
    /// works behind any host name) and [`JWKS_PATH`].
    pub fn router(&self, issuer: &str) -> Router {
        let document = Self::openid_configuration(issuer, JWKS_PATH);
        let this = self.clone();
        Router::new()
            .route(
                OPENID_CONFIGURATION_PATH,
                get({
                    let requests = self.requests.clone();
                    move || {
                        requests.fetch_add(1, Ordering::Relaxed);
                        let document = document.clone();
                        async move { axum::Json(document) }
                    }
                }),
            )
            .route(JWKS_PATH, get(serve_jwks))
            .with_state(this)
    }
}

async fn serve_jwks(State(keys): State<PublishedKeys>) -> axum::Json<Value> {
    keys.requests.fetch_add(1, Ordering::Relaxed);
    axum::Json(keys.jwks())
}

#[cfg(test)]
mod refresh_tests {
    use super::*;

    #[test]
    fn any_expires_in_gives_a_refresh_time_without_panicking() {
        let now = Instant::now();
        let margin = Duration::from_secs(300);
        assert_eq!(
            refresh_at(now, 3600, margin),
            now + Duration::from_secs(3300)
        );
        assert_eq!(refresh_at(now, 60, margin), now + Duration::from_secs(30));
        assert_eq!(refresh_at(now, 0, margin), now);
        assert_eq!(
            refresh_at(now, u64::MAX, margin),
            now + MAX_TOKEN_LIFETIME - margin
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_part(v: &Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    }

    #[test]
    fn claims_are_read_from_an_unsigned_payload() {
        let token = format!(
            "{}.{}.sig",
            encode_part(&serde_json::json!({"alg":"RS256"})),
            encode_part(&serde_json::json!({"roles":["Calls.Initiate.All"],"tid":"t"}))
        );
        let claims = unverified_payload(&token).unwrap();
        assert_eq!(claims["roles"], serde_json::json!(["Calls.Initiate.All"]));
        assert_eq!(claims["tid"], "t");
    }

    #[test]
    fn garbage_tokens_are_typed_errors() {
        assert_eq!(unverified_payload("opaque"), Err(JwtPayloadError::NotAJwt));
        assert_eq!(unverified_payload("a.b.c.d"), Err(JwtPayloadError::NotAJwt));
        assert!(matches!(
            unverified_payload("a.!!!.c"),
            Err(JwtPayloadError::Base64(_))
        ));
        let not_json = format!(
            "a.{}.c",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("[1")
        );
        assert!(matches!(
            unverified_payload(&not_json),
            Err(JwtPayloadError::Json(_))
        ));
    }

    #[test]
    fn disabling_validation_needs_loopback() {
        assert!(CallbackAuth::disabled_for_loopback("127.0.0.1:9000".parse().unwrap()).is_ok());
        assert!(CallbackAuth::disabled_for_loopback("[::1]:9000".parse().unwrap()).is_ok());
        let err = CallbackAuth::disabled_for_loopback("0.0.0.0:9000".parse().unwrap()).unwrap_err();
        assert_eq!(err.addr, "0.0.0.0:9000".parse().unwrap());
        assert!(CallbackAuth::disabled_for_loopback("10.1.2.3:443".parse().unwrap()).is_err());
    }

    #[test]
    fn app_tokens_carry_the_roles_the_permission_check_reads() {
        let issuer = TokenIssuer::from_rsa_pem(
            include_bytes!("../tests/fixtures/callback-signing-key.pem"),
            "k",
        )
        .unwrap();
        let claims = AppTokenClaims::new(
            "https://graph.microsoft.com",
            "https://sts.windows.net/t/",
            "t",
            "app",
            vec!["Calls.Initiate.All".into()],
            Duration::from_secs(60),
        );
        let token = issuer.sign(&claims).unwrap();
        let payload = Value::Object(unverified_payload(&token).unwrap());
        let needs = crate::permissions::RequiredPermissions {
            all_of: vec![crate::permissions::AnyOf(vec![
                crate::permissions::Permission::CallsInitiateAll,
            ])],
        };
        assert_eq!(
            crate::permissions::check_token_claims(&payload, &needs),
            Ok(())
        );
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid.as_deref(), Some("k"));
        assert_eq!(header.alg, Algorithm::RS256);
    }

    #[test]
    fn client_credentials_debug_hides_the_secret() {
        let c = ClientCredentials::microsoft("contoso", "app", "s3cret").unwrap();
        assert_eq!(
            c.token_url.as_str(),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
