//! appmedia-signalling: the Graph calling signalling side of a bot.

pub mod auth;

/// Installs rustls' ring crypto provider as the process default (reqwest is built with
/// `rustls-no-provider`). Idempotent: an already installed provider is kept.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
