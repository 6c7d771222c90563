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
//!
//! Each direction is its own private module (`outgoing`, `incoming`, `issue`; client
//! certificates in `certificate`, the JWT crypto provider in `jwt_crypto`); every public name
//! is re-exported here, so `appmedia_signalling::auth::X` is the one path.

mod certificate;
mod incoming;
mod issue;
mod jwt_crypto;
mod outgoing;

pub use certificate::{
    ASSERTION_LIFETIME, CLIENT_ASSERTION_TYPE, Certificate, CertificateError, ClientCertificate,
};
pub use incoming::*;
pub use issue::*;
pub use jwt_crypto::install as install_jwt_crypto;
pub use outgoing::*;

/// Issuers Graph uses for callback tokens: the Bot Framework one, and the Graph one the
/// Microsoft samples also accept.
pub const DEFAULT_CALLBACK_ISSUERS: [&str; 2] = [
    "https://api.botframework.com",
    "https://graph.microsoft.com",
];

/// Where the Microsoft calling samples find the keys that sign callback tokens.
pub const DEFAULT_OPENID_CONFIGURATION_URL: &str =
    "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration";
