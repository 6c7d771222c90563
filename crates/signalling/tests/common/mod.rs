//! Helpers shared by the integration tests: local axum servers and fixture files.
#![allow(dead_code)]

pub mod graph;

use std::net::SocketAddr;
use std::path::PathBuf;

use appmedia_signalling::auth::TokenIssuer;

/// Serves `router` on an ephemeral 127.0.0.1 port until the test's runtime ends.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("test server");
    });
    addr
}

/// Serves `router` on `listener` with each connection's peer address (axum's `ConnectInfo`),
/// as a receiver without token validation requires, until the test's runtime ends.
pub fn serve_with_peers(listener: tokio::net::TcpListener, router: axum::Router) {
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("test server")
    });
}

/// `tests/fixtures/seed/{name}` at the repository root.
pub fn seed_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/seed")
        .join(name)
}

/// The seed fixture `name`, as text.
pub fn seed(name: &str) -> String {
    std::fs::read_to_string(seed_path(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// The model crate's call-control action fixture `name` (the v1.0 docs' examples), as text.
pub fn action_fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/actions")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// This crate's own fixture `name`, as bytes.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The issuer that signs the "real" callback and access tokens of the tests.
pub fn signing_issuer(kid: &str) -> TokenIssuer {
    TokenIssuer::from_rsa_pem(&fixture("callback-signing-key.pem"), kid).expect("fixture key")
}

/// An issuer with another key (a forger's), claiming any `kid`.
pub fn forged_issuer(kid: &str) -> TokenIssuer {
    TokenIssuer::from_rsa_pem(&fixture("forged-signing-key.pem"), kid).expect("fixture key")
}
