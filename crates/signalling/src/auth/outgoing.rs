//! Outgoing tokens (bot → Graph): a [`TokenSource`] for the Graph client, fixed or from the
//! OAuth2 client-credentials grant, cached until shortly before it expires; and the unverified
//! read of a token's claims for the client's pre-flight permission check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::{CLIENT_ASSERTION_TYPE, ClientCertificate};

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
    fn client_credentials_debug_hides_the_secret() {
        let c = ClientCredentials::microsoft("contoso", "app", "s3cret").unwrap();
        assert_eq!(
            c.token_url.as_str(),
            "https://login.microsoftonline.com/contoso/oauth2/v2.0/token"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
