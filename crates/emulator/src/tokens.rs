//! The emulator's identity platform: `POST /{tenant}/oauth2/v2.0/token` issues Graph access
//! tokens (client credentials → application token with `roles`; resource-owner password →
//! delegated token with `scp`, which the calling API refuses as Graph does), and the access
//! tokens presented to the calling API are verified here. A token is issued only for the
//! application's home tenant or a tenant that consented to it (`consented_tenants`), and the
//! password grant authenticates the application unless it is a public client, for a user of
//! that tenant only — as the Microsoft identity platform does.
//!
//! Signing is `appmedia_signalling::auth::TokenIssuer`'s; this module only decides claims.

use std::time::Duration;

use appmedia_signalling::auth::{
    CLIENT_ASSERTION_TYPE, Certificate, PublishedKeys, TokenIssuer, unix_now,
};
use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};

use crate::directory::{Application, Directory};
use crate::error::ApiError;

/// The audience of Graph access tokens.
pub const GRAPH_AUDIENCE: &str = "https://graph.microsoft.com";
/// Graph's application id, which tokens may also carry as audience.
pub const GRAPH_APP_ID: &str = "00000003-0000-0000-c000-000000000000";
/// The only scope the client-credentials grant accepts here.
pub const GRAPH_DEFAULT_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Issues and verifies the emulator's Graph access tokens.
#[derive(Debug)]
pub struct GraphTokens {
    issuer: TokenIssuer,
    keys: PublishedKeys,
    base_url: String,
    lifetime: Duration,
}

/// A refused token request, as the identity platform writes it:
/// `{"error": "invalid_client", "error_description": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {error}: {description}")]
pub struct OAuthError {
    /// HTTP status.
    pub status: StatusCode,
    /// OAuth2 error code.
    pub error: &'static str,
    /// Why.
    pub description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "error": self.error,
            "error_description": self.description,
            "timestamp": crate::error::iso8601_now(),
            "trace_id": uuid::Uuid::new_v4().to_string(),
        })
    }
}

/// Who a verified access token speaks for.
#[derive(Clone, Debug, PartialEq)]
pub struct AccessClaims {
    /// The calling application (`appid`).
    pub app_id: String,
    /// The token's tenant (`tid`).
    pub tenant_id: String,
    /// Every claim (the permission check reads `roles` / `scp` from them).
    pub all: Value,
}

impl GraphTokens {
    /// Tokens signed by `issuer`, valid for `lifetime`, with issuers under `base_url`.
    pub fn new(issuer: TokenIssuer, base_url: String, lifetime: Duration) -> Self {
        let keys = PublishedKeys::new();
        keys.publish(&issuer);
        Self {
            issuer,
            keys,
            base_url,
            lifetime,
        }
    }

    /// The `iss` of tokens for `tenant`.
    pub fn issuer_for(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.base_url)
    }

    /// The JWKS with the signing key.
    pub fn jwks(&self) -> Value {
        self.keys.jwks()
    }

    /// The OpenID configuration of `tenant`.
    pub fn openid_configuration(&self, tenant: &str) -> Value {
        let mut document = PublishedKeys::openid_configuration(
            &self.issuer_for(tenant),
            &format!("{}/{tenant}/discovery/v2.0/keys", self.base_url),
        );
        if let Some(map) = document.as_object_mut() {
            map.insert(
                "token_endpoint".into(),
                format!("{}/{tenant}/oauth2/v2.0/token", self.base_url).into(),
            );
            map.insert(
                "grant_types_supported".into(),
                json!(["client_credentials", "password"]),
            );
        }
        document
    }

    /// Answers a token request (`application/x-www-form-urlencoded` body) for `tenant`.
    pub fn token_request(
        &self,
        directory: &Directory,
        tenant: &str,
        form: &[u8],
    ) -> Result<Value, OAuthError> {
        let bad_request = |error, description: String| {
            OAuthError::new(StatusCode::BAD_REQUEST, error, description)
        };
        let tenant_in_path = tenant;
        let Some(tenant) = directory.tenant(tenant) else {
            return Err(bad_request(
                "invalid_request",
                format!("tenant {tenant:?} not found in the emulator's directory"),
            ));
        };
        let mut fields = Map::new();
        for (key, value) in url::form_urlencoded::parse(form) {
            fields.insert(key.into_owned(), Value::String(value.into_owned()));
        }
        let field = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or("");
        let client_id = field("client_id");
        let Some(app) = directory.application(client_id) else {
            return Err(bad_request(
                "unauthorized_client",
                format!("application {client_id:?} is not registered in the emulator's directory"),
            ));
        };
        if !app.is_in_tenant(&tenant.id) {
            return Err(bad_request(
                "unauthorized_client",
                format!(
                    "AADSTS700016: Application with identifier '{}' was not found in the directory '{}': an administrator of that tenant has not consented to it",
                    app.id, tenant.id
                ),
            ));
        }
        let token_url = format!("{}/{tenant_in_path}/oauth2/v2.0/token", self.base_url);
        let scope = field("scope");
        let now = unix_now();
        let mut claims = json!({
            "aud": GRAPH_AUDIENCE,
            "iss": self.issuer_for(&tenant.id),
            "iat": now,
            "nbf": now,
            "exp": now + self.lifetime.as_secs(),
            "tid": tenant.id,
            "appid": app.id,
            "app_displayname": app.display_name,
            "ver": "1.0",
        });
        match field("grant_type") {
            "client_credentials" => {
                check_client(app, &fields, &token_url)?;
                if scope != GRAPH_DEFAULT_SCOPE {
                    return Err(bad_request(
                        "invalid_scope",
                        format!(
                            "scope {scope:?}: the client-credentials grant needs {GRAPH_DEFAULT_SCOPE:?}"
                        ),
                    ));
                }
                claims["idtyp"] = "app".into();
                claims["oid"] = app.id.clone().into();
                claims["roles"] = json!(app.roles);
            }
            "password" => {
                // A confidential client authenticates in this grant too; only a registration
                // that allows public client flows may omit it.
                if !app.public_client {
                    check_client(app, &fields, &token_url)?;
                }
                let username = field("username");
                let user = directory.users.iter().find(|u| {
                    (u.id.eq_ignore_ascii_case(username) || u.display_name == username)
                        && u.tenant.eq_ignore_ascii_case(&tenant.id)
                });
                let Some(user) = user.filter(|u| {
                    u.password
                        .as_deref()
                        .is_some_and(|p| crate::directory::secret_matches(field("password"), p))
                }) else {
                    return Err(bad_request(
                        "invalid_grant",
                        format!(
                            "user {username:?}: not in tenant {}, or wrong password",
                            tenant.id
                        ),
                    ));
                };
                claims["idtyp"] = "user".into();
                claims["oid"] = user.id.clone().into();
                claims["name"] = user.display_name.clone().into();
                let scp = scope
                    .split(' ')
                    .filter_map(|s| s.strip_prefix("https://graph.microsoft.com/"))
                    .filter(|s| *s != ".default")
                    .collect::<Vec<_>>()
                    .join(" ");
                claims["scp"] = if scp.is_empty() {
                    "User.Read".into()
                } else {
                    scp.into()
                };
            }
            other => {
                return Err(bad_request(
                    "unsupported_grant_type",
                    format!(
                        "grant_type {other:?}: the emulator supports client_credentials and password"
                    ),
                ));
            }
        }
        let token = self.issuer.sign(&claims).map_err(|e| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
        })?;
        Ok(json!({
            "token_type": "Bearer",
            "expires_in": self.lifetime.as_secs(),
            "ext_expires_in": self.lifetime.as_secs(),
            "access_token": token,
        }))
    }

    /// Verifies the `Authorization` header of a Graph request: 401 for a missing, malformed,
    /// expired, forged or foreign token.
    pub fn verify(&self, authorization: Option<&str>) -> Result<AccessClaims, ApiError> {
        appmedia_signalling::auth::install_jwt_crypto();
        let header = authorization.ok_or_else(|| {
            ApiError::unauthorized("Access token is empty: no Authorization header")
        })?;
        let token = header
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header is not `Bearer <token>`")
            })?;
        let jwt_header = jsonwebtoken::decode_header(token)
            .map_err(|e| ApiError::unauthorized(format!("the token is not a JWT: {e}")))?;
        if jwt_header.alg != Algorithm::RS256 {
            return Err(ApiError::unauthorized(format!(
                "the token is signed with {:?}; only RS256 tokens from this service are accepted",
                jwt_header.alg
            )));
        }
        if jwt_header.kid.as_deref() != Some(self.issuer.kid()) {
            return Err(ApiError::unauthorized(format!(
                "the token's key id {:?} is not one of this service's keys",
                jwt_header.kid
            )));
        }
        let key = DecodingKey::from_jwk(self.issuer.jwk())
            .map_err(|e| ApiError::unauthorized(format!("signing key unusable: {e}")))?;
        let mut validation = Validation::new(Algorithm::RS256);
        // The emulator and its clients share one clock: no skew to allow for.
        validation.leeway = 0;
        validation.set_audience(&[GRAPH_AUDIENCE, GRAPH_APP_ID]);
        validation.set_required_spec_claims(&["exp", "aud", "iss"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            ApiError::unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => {
                    "Lifetime validation failed, the token is expired.".to_owned()
                }
                ErrorKind::InvalidSignature => {
                    "Access token validation failure: the signature does not verify.".to_owned()
                }
                ErrorKind::InvalidAudience => {
                    format!("Invalid audience: tokens for Graph have aud {GRAPH_AUDIENCE:?}.")
                }
                ErrorKind::ImmatureSignature => "The token is not valid yet (nbf).".to_owned(),
                other => format!("Access token validation failure: {other:?}"),
            })
        })?;
        let claims = data.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let issuer = text("iss").unwrap_or_default();
        if !issuer.starts_with(&self.base_url) {
            return Err(ApiError::unauthorized(format!(
                "issuer {issuer:?} is not this service's"
            )));
        }
        let app_id =
            text("appid").ok_or_else(|| ApiError::unauthorized("the token has no appid claim"))?;
        let tenant_id =
            text("tid").ok_or_else(|| ApiError::unauthorized("the token has no tid claim"))?;
        Ok(AccessClaims {
            app_id,
            tenant_id,
            all: claims,
        })
    }
}

/// Authenticates the client of a client-credentials request: its secret, or a client assertion
/// signed with one of its registered certificates (checked as the Microsoft identity platform
/// does, with its AADSTS codes in the description).
fn check_client(
    app: &Application,
    fields: &Map<String, Value>,
    token_url: &str,
) -> Result<(), OAuthError> {
    let field = |name: &str| fields.get(name).and_then(Value::as_str);
    let invalid_client = |description: String| {
        OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
    };
    match (field("client_secret"), field("client_assertion")) {
        (Some(_), Some(_)) => Err(OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS700025: give client_secret or client_assertion, not both",
        )),
        (Some(secret), None) => {
            // An application without a secret has none to match, not an empty one.
            if !crate::directory::secret_matches(secret, &app.client_secret) {
                return Err(invalid_client(format!(
                    "AADSTS7000215: invalid client secret for application {}",
                    app.id
                )));
            }
            Ok(())
        }
        (None, Some(assertion)) => {
            if field("client_assertion_type") != Some(CLIENT_ASSERTION_TYPE) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("AADSTS50027: client_assertion_type must be {CLIENT_ASSERTION_TYPE:?}"),
                ));
            }
            check_assertion(app, assertion, token_url).map_err(invalid_client)
        }
        (None, None) => Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!(
                "AADSTS7000218: the request body must contain client_secret or client_assertion (application {})",
                app.id
            ),
        )),
    }
}

fn check_assertion(app: &Application, assertion: &str, token_url: &str) -> Result<(), String> {
    appmedia_signalling::auth::install_jwt_crypto();
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|e| format!("AADSTS50027: the client assertion is not a JWT: {e}"))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::PS256) {
        return Err(format!(
            "AADSTS5002738: the client assertion is signed with {:?}; RS256 or PS256 is required",
            header.alg
        ));
    }
    let certificate = app
        .certificates
        .iter()
        .filter_map(|pem| Certificate::from_pem(pem.as_bytes()).ok())
        .find(|c| c.is_named_by(&header))
        .ok_or_else(|| {
            format!(
                "AADSTS700027: the certificate the client assertion names (x5t {:?}) is not registered for application {}",
                header.x5t.as_deref().or(header.x5t_s256.as_deref()).unwrap_or(""),
                app.id
            )
        })?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = 0;
    validation.set_audience(&[token_url]);
    validation.set_issuer(&[app.id.as_str()]);
    validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, certificate.decoding_key(), &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => {
                    "AADSTS700027: the client assertion's signature does not verify with the registered certificate".to_owned()
                }
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => {
                    "AADSTS700024: the client assertion is not within its valid time range".to_owned()
                }
                ErrorKind::InvalidAudience => format!(
                    "AADSTS700016: the client assertion's audience must be the token endpoint {token_url}"
                ),
                ErrorKind::InvalidIssuer => format!(
                    "AADSTS700021: the client assertion's iss must be the client id {}",
                    app.id
                ),
                other => format!("AADSTS50027: invalid client assertion: {other:?}"),
            }
        })?
        .claims;
    if claims.get("sub").and_then(Value::as_str) != Some(app.id.as_str()) {
        return Err(format!(
            "AADSTS700021: the client assertion's sub must be the client id {}",
            app.id
        ));
    }
    Ok(())
}
