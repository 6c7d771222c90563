//! Audio measures shared by appmedia's end-to-end tests (the emulator's and the CLI's), so
//! each crate's tests check recordings the same way; the headless-browser launcher; and a
//! userspace UDP impairment relay for media tests between real sockets ([`impair`]). Not
//! published.

pub mod audio;
pub mod browser;
pub mod impair;

/// Test-only RSA certificate credentials (see `certificates/README.md`): the private keys are
/// public, never use them outside tests.
pub mod certificates {
    /// A self-signed RSA 2048 certificate (PEM).
    pub const APP_CERT: &str = include_str!("../certificates/app.crt");
    /// Its private key (PKCS#8 PEM).
    pub const APP_KEY: &str = include_str!("../certificates/app.key");
    /// Certificate and key in one PEM file.
    pub const APP_BUNDLE: &str = include_str!("../certificates/app-bundle.pem");
    /// An unrelated RSA key (PKCS#1 PEM).
    pub const OTHER_KEY: &str = include_str!("../certificates/other.key");
    /// `app.crt`'s SHA-1 thumbprint, as `openssl x509 -fingerprint -sha1` prints it.
    pub const APP_CERT_SHA1: &str = "B9:2A:BF:E9:72:CC:93:02:DA:BB:71:7D:88:8E:3E:27:7B:0D:FF:E8";
}
