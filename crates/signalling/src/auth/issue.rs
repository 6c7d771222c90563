//! Issuing tokens (the emulator's side, and the tests'): RS256 signing and the OpenID
//! configuration and JWKS that publish the keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::install_jwt_crypto;

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
mod tests {
    use super::*;
    use crate::auth::unverified_payload;

    #[test]
    fn app_tokens_carry_the_roles_the_permission_check_reads() {
        let issuer = TokenIssuer::from_rsa_pem(
            include_bytes!("../../tests/fixtures/callback-signing-key.pem"),
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
}
