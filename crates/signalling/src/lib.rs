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
//!
//! The network part talks to the service: [`client::GraphClient`] creates, reads and hangs up
//! calls and runs every call-control action (answer, reject, redirect, transfer, invite,
//! mute, playPrompt, recordResponse, sendDtmfTones, ...; tokens from [`auth::TokenSource`],
//! retries, typed Graph errors), and
//! [`callback::CallbackReceiver`] is the axum endpoint behind the callbackUri: it checks each
//! notification's token ([`auth::CallbackTokenValidator`]), and routes it by call id to a
//! [`callback::CallAgent`] holding the call's [`state`], [`roster`] and content [`sharing`]
//! sessions, then hands [`callback::CallEvent`]s to the bot. [`auth::TokenIssuer`] and
//! [`auth::PublishedKeys`] are the issuing side, for the emulator and tests.
//!
//! ```
//! use std::time::Instant;
//! use appmedia_model::{CallState, CommsNotifications};
//! use appmedia_signalling::callback::{CallEvent, CallRegistry};
//! use appmedia_signalling::client::{GraphClient, GraphClientConfig, NationalCloud};
//! use appmedia_signalling::auth::TokenSource;
//!
//! let client = GraphClient::new(
//!     GraphClientConfig::for_cloud(NationalCloud::Global),
//!     TokenSource::fixed("eyJ…"),
//! ).expect("an HTTP client");
//! assert_eq!(client.config().base_url.as_str(), "https://graph.microsoft.com/v1.0/");
//!
//! let registry = CallRegistry::default();
//! let batch: CommsNotifications = serde_json::from_str(r##"{"value":[{"changeType":"updated",
//!   "resourceUrl":"/communications/calls/c1",
//!   "resourceData":{"@odata.type":"#microsoft.graph.call","state":"established"}}]}"##).unwrap();
//! let events = registry.apply(&batch, Instant::now());
//! assert!(matches!(&events[..], [CallEvent::StateChanged { to: CallState::Established, .. }]));
//! ```

pub mod auth;
pub mod builders;
pub mod callback;
pub mod check;
pub mod client;
pub mod join_url;
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
    http_client_trusting(timeout, connect_timeout, None)
}

/// [`http_client`] that also trusts the certificate authorities of `ca_pem` (a PEM bundle):
/// a local service's own CA, as `appmedia emulator`'s HTTPS listener has.
pub fn http_client_trusting(
    timeout: std::time::Duration,
    connect_timeout: std::time::Duration,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, HttpClientError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| HttpClientError(format!("the CA certificate: {e}")))?;
        if certs.is_empty() {
            return Err(HttpClientError("the CA file holds no certificate".into()));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        // A redirect may not take a request (a client secret, a bearer token) off https or
        // off the machine in clear: such a redirect is not followed, its 3xx is the answer.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 10 || !validate::is_https_or_loopback(attempt.url()) {
                attempt.stop()
            } else {
                attempt.follow()
            }
        }))
        .build()
        .map_err(|e| HttpClientError(e.to_string()))
}

/// Installs rustls' ring crypto provider as the process default (reqwest is built with
/// `rustls-no-provider`), and ring as jsonwebtoken's ([`auth::install_jwt_crypto`]).
/// Idempotent: an already installed provider is kept.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    auth::install_jwt_crypto();
}
