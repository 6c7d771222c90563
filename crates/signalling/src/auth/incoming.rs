//! Incoming tokens (Graph → bot): the callback token's validation (signature against keys
//! fetched through an OpenID configuration, issuer, audience, tenant, expiry) and the
//! receiver's authentication mode.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use url::Url;

use super::{
    DEFAULT_CALLBACK_ISSUERS, DEFAULT_OPENID_CONFIGURATION_URL, install_jwt_crypto,
    unverified_payload,
};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabling_validation_needs_loopback() {
        assert!(CallbackAuth::disabled_for_loopback("127.0.0.1:9000".parse().unwrap()).is_ok());
        assert!(CallbackAuth::disabled_for_loopback("[::1]:9000".parse().unwrap()).is_ok());
        let err = CallbackAuth::disabled_for_loopback("0.0.0.0:9000".parse().unwrap()).unwrap_err();
        assert_eq!(err.addr, "0.0.0.0:9000".parse().unwrap());
        assert!(CallbackAuth::disabled_for_loopback("10.1.2.3:443".parse().unwrap()).is_err());
    }
}
