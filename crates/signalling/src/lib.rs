//! appmedia-signalling: the Graph calling signalling side of a bot.
//!
//! This part of the crate turns the documented create-call scenarios into requests
//! ([`builders`]), refuses before any I/O what the service would refuse
//! ([`validate`]), says which application permissions a request needs and whether a
//! token has them ([`permissions`]), and checks any call resource or notification
//! ([`check`], behind `appmedia graph check`).
//!
//! ```
//! use appmedia_model::Identity;
//! use appmedia_signalling::builders::{Media, PeerToPeerCallBuilder};
//! use appmedia_signalling::permissions::required_permissions;
//!
//! let call = PeerToPeerCallBuilder::new(
//!     "https://bot.contoso.com/callback",
//!     Identity::new("112f7296-5fa4-42ca-bae8-6a692b15d4b8").with_display_name("John"),
//!     Media::app_hosted(r#"{"v":1}"#),
//! )
//! .build()
//! .expect("a valid request");
//! let needs = required_permissions(&call);
//! assert_eq!(needs.to_string(), "Calls.Initiate.All and Calls.AccessMedia.All");
//! assert!(needs.is_satisfied_by(&["Calls.Initiate.All", "Calls.AccessMedia.All"]));
//! ```

pub mod auth;
pub mod builders;
pub mod callback;
pub mod check;
pub mod client;
pub mod permissions;
pub mod roster;
pub mod sharing;
pub mod state;
pub mod validate;

/// The HTTP client could not be built (its TLS backend failed to initialise).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct HttpClientError(pub String);

/// A reqwest client with rustls on ring and both timeouts set.
pub fn http_client(
    timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, HttpClientError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| HttpClientError(e.to_string()))
}

/// Installs rustls' ring crypto provider as the process default (reqwest is built with
/// `rustls-no-provider`). Idempotent: an already installed provider is kept.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
