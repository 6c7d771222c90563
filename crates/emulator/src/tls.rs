//! The per-run certificate authority and server certificate of the emulator's HTTPS listener
//! (ACS Call Automation: Microsoft's SDKs refuse a plain-http endpoint).
//!
//! Each run makes a new CA and a server certificate it signs for `127.0.0.1`, `::1` and
//! `localhost`; the CA's PEM is written to a file the bot (or `REQUESTS_CA_BUNDLE`,
//! `SSL_CERT_FILE`, `AcsClientConfig::ca_pem`) trusts. Nothing is reused across runs, so no
//! certificate of a past run is ever trusted by accident, and the CA's key never leaves the
//! process.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The file name of the CA certificate in its directory.
pub const CA_FILE_NAME: &str = "acs-emulator-ca.pem";

/// Why the certificates or the TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen refused to make a key or certificate.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The CA file could not be written.
    #[error("writing the CA certificate to {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// This run's CA (its certificate only) and the server's TLS configuration.
pub struct RunCertificates {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    /// The listener's configuration: the server certificate (signed by the CA) and its key.
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for RunCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunCertificates").finish_non_exhaustive()
    }
}

impl RunCertificates {
    /// A new CA and a server certificate for the loopback names.
    pub fn generate() -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        let mut ca_name = DistinguishedName::new();
        ca_name.push(DnType::CommonName, "appmedia emulator per-run CA");
        ca_name.push(DnType::OrganizationName, "appmedia emulator");
        ca_params.distinguished_name = ca_name;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params = CertificateParams::new(vec!["localhost".to_owned()])?;
        server_params.subject_alt_names.extend([
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]);
        let mut server_name = DistinguishedName::new();
        server_name.push(DnType::CommonName, "localhost");
        server_params.distinguished_name = server_name;
        server_params.is_ca = IsCa::ExplicitNoCa;
        server_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        // Strict verifiers (OpenSSL's X509_STRICT, as recent Pythons set it) want the AKI.
        server_params.use_authority_key_identifier_extension = true;
        let server_cert = server_params.signed_by(&server_key, &issuer)?;

        let chain: Vec<CertificateDer<'static>> =
            vec![server_cert.der().clone(), ca_cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(RunCertificates {
            ca_pem: ca_cert.pem(),
            server_config: Arc::new(config),
        })
    }

    /// Writes the CA certificate to `dir/`[`CA_FILE_NAME`] and returns the path.
    pub fn write_ca(&self, dir: &Path) -> Result<PathBuf, TlsError> {
        let path = dir.join(CA_FILE_NAME);
        std::fs::write(&path, &self.ca_pem).map_err(|source| TlsError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_makes_a_ca_and_a_server_configuration() {
        let run = RunCertificates::generate().unwrap();
        assert!(run.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let other = RunCertificates::generate().unwrap();
        assert_ne!(run.ca_pem, other.ca_pem, "a new CA every run");
        let dir = std::env::temp_dir().join(format!("acs-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = run.write_ca(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), run.ca_pem);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
