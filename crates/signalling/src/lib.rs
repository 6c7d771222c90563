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
pub mod check;
pub mod permissions;
pub mod validate;

/// Installs rustls' ring crypto provider as the process default (reqwest is built with
/// `rustls-no-provider`). Idempotent: an already installed provider is kept.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
