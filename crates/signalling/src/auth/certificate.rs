//! Certificate credentials: the bot proves who it is to the identity platform with a JWT it
//! signs with its certificate's private key (a *client assertion*, RFC 7523) instead of sending
//! a client secret. Microsoft recommends certificates over secrets for production apps.
//!
//! The assertion is what the Microsoft identity platform documents under "certificate
//! credentials": header `alg: RS256`, `typ: JWT`, `x5t` (base64url SHA-1 thumbprint of the
//! certificate's DER) and `x5t#S256` (SHA-256); claims `aud` (the token endpoint), `iss` and
//! `sub` (the client id), `jti`, `nbf`, `iat`, `exp` (ten minutes later).
//!
//! [`Certificate`] is the public half alone (what an app registration stores, and what the
//! emulator checks assertions against); [`ClientCertificate`] adds the private key.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;
use sha1::Digest as _;

/// `client_assertion_type` of a JWT client assertion.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid (the identity platform accepts up to its own limits; MSAL
/// uses ten minutes).
pub const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// Why a certificate or its key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        reason: String,
    },
    /// The text is not PEM.
    #[error("not PEM: {0}")]
    NotPem(String),
    /// No `CERTIFICATE` block.
    #[error("no CERTIFICATE block in the PEM")]
    NoCertificate,
    /// No private key block.
    #[error("no private key (PRIVATE KEY or RSA PRIVATE KEY block) in the PEM")]
    NoPrivateKey,
    /// The certificate's public key is not an RSA key this library can verify with.
    #[error("the certificate's public key is not usable: {0}")]
    BadCertificate(String),
    /// The private key is not an RSA key.
    #[error(
        "the private key is not usable (an RSA key is needed, as the identity platform takes RS256 assertions): {0}"
    )]
    BadKey(String),
    /// The private key does not belong to the certificate.
    #[error("the private key does not match the certificate (thumbprint {thumbprint})")]
    KeyMismatch {
        /// The certificate's SHA-1 thumbprint, hex.
        thumbprint: String,
    },
    /// Signing an assertion failed.
    #[error("signing the client assertion failed: {0}")]
    Sign(String),
}

fn pem_blocks(text: &[u8]) -> Result<Vec<pem::Pem>, CertificateError> {
    let blocks = pem::parse_many(text).map_err(|e| CertificateError::NotPem(e.to_string()))?;
    if blocks.is_empty() {
        return Err(CertificateError::NotPem(
            "no -----BEGIN ...----- block".into(),
        ));
    }
    Ok(blocks)
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|e| CertificateError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The public half of a certificate credential: its DER, thumbprints and RSA public key.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    sha1: [u8; 20],
    sha256: [u8; 32],
    key: DecodingKey,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("sha1", &self.thumbprint_hex())
            .finish()
    }
}

impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.der == other.der
    }
}

impl Certificate {
    /// The first `CERTIFICATE` block of `pem` (other blocks, e.g. a key or a chain, are
    /// ignored).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertificateError> {
        let block = pem_blocks(pem)?
            .into_iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or(CertificateError::NoCertificate)?;
        Self::from_der(block.contents())
    }

    /// A DER-encoded X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        // jsonwebtoken takes the RSA public key out of a certificate's PEM.
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
        let key = DecodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| CertificateError::BadCertificate(e.to_string()))?;
        Ok(Self {
            der: der.to_vec(),
            sha1: sha1::Sha1::digest(der).into(),
            sha256: sha2::Sha256::digest(der).into(),
            key,
        })
    }

    /// The SHA-1 thumbprint (what the Azure portal shows), upper-case hex.
    pub fn thumbprint_hex(&self) -> String {
        self.sha1.iter().map(|b| format!("{b:02X}")).collect()
    }

    /// The `x5t` header value: base64url SHA-1 thumbprint.
    pub fn x5t(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sha1)
    }

    /// The `x5t#S256` header value: base64url SHA-256 thumbprint.
    pub fn x5t_s256(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.sha256)
    }

    /// The key that verifies what the certificate's private key signed.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }

    /// Whether a JWT header's `x5t` or `x5t#S256` names this certificate.
    pub fn is_named_by(&self, header: &Header) -> bool {
        header.x5t.as_deref() == Some(&self.x5t())
            || header.x5t_s256.as_deref() == Some(&self.x5t_s256())
    }
}

/// A certificate and its private key: signs client assertions.
#[derive(Clone)]
pub struct ClientCertificate {
    certificate: Certificate,
    key: EncodingKey,
}

impl fmt::Debug for ClientCertificate {
    // The key must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("sha1", &self.certificate.thumbprint_hex())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl ClientCertificate {
    /// A certificate PEM and a private-key PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE
    /// KEY`). Either may also hold the other's block: a single file with both (as Key Vault
    /// and `openssl pkcs12 -nodes` export it) can be passed twice.
    pub fn from_pem(certificate: &[u8], key: &[u8]) -> Result<Self, CertificateError> {
        let certificate = Certificate::from_pem(certificate)?;
        let block = pem_blocks(key)?
            .into_iter()
            .find(|b| matches!(b.tag(), "PRIVATE KEY" | "RSA PRIVATE KEY"))
            .ok_or(CertificateError::NoPrivateKey)?;
        let key = EncodingKey::from_rsa_pem(pem::encode(&block).as_bytes())
            .map_err(|e| CertificateError::BadKey(e.to_string()))?;
        let this = Self { certificate, key };
        this.check_pair()?;
        Ok(this)
    }

    /// One PEM holding the certificate and its key.
    pub fn from_pem_bundle(pem: &[u8]) -> Result<Self, CertificateError> {
        Self::from_pem(pem, pem)
    }

    /// Reads the certificate from `certificate` and the key from `key` (or from the
    /// certificate's file when `None`).
    pub fn from_files(certificate: &Path, key: Option<&Path>) -> Result<Self, CertificateError> {
        let cert_pem = read(certificate)?;
        match key {
            Some(key) => Self::from_pem(&cert_pem, &read(key)?),
            None => Self::from_pem_bundle(&cert_pem),
        }
    }

    /// The public half.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    // Signs a probe and verifies it with the certificate: a key from another pair is caught
    // when the credential is loaded, not as an `invalid_client` at the first call.
    fn check_pair(&self) -> Result<(), CertificateError> {
        let probe = self.assertion("probe", "urn:appmedia:probe")?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["urn:appmedia:probe"]);
        jsonwebtoken::decode::<serde_json::Value>(
            &probe,
            self.certificate.decoding_key(),
            &validation,
        )
        .map(|_| ())
        .map_err(|_| CertificateError::KeyMismatch {
            thumbprint: self.certificate.thumbprint_hex(),
        })
    }

    /// A client assertion for `client_id` at the token endpoint `audience`.
    pub fn assertion(&self, client_id: &str, audience: &str) -> Result<String, CertificateError> {
        let now = super::unix_now();
        let mut header = Header::new(Algorithm::RS256);
        header.x5t = Some(self.certificate.x5t());
        header.x5t_s256 = Some(self.certificate.x5t_s256());
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME.as_secs(),
        });
        super::install_jwt_crypto();
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| CertificateError::Sign(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use appmedia_testkit::certificates::*;

    #[test]
    fn thumbprints_are_those_openssl_prints() {
        let cert = Certificate::from_pem(APP_CERT.as_bytes()).unwrap();
        assert_eq!(cert.thumbprint_hex(), APP_CERT_SHA1.replace(':', ""));
        // Same certificate from the bundle, whose first block is it.
        assert_eq!(Certificate::from_pem(APP_BUNDLE.as_bytes()).unwrap(), cert);
        assert_eq!(cert.x5t().len(), 27); // 20 bytes, base64url unpadded
        assert_eq!(cert.x5t_s256().len(), 43);
    }

    #[test]
    fn an_assertion_carries_what_the_identity_platform_reads() {
        let credential =
            ClientCertificate::from_pem(APP_CERT.as_bytes(), APP_KEY.as_bytes()).unwrap();
        let token_url = "https://login.microsoftonline.com/t/oauth2/v2.0/token";
        let assertion = credential.assertion("app-1", token_url).unwrap();
        let header = jsonwebtoken::decode_header(&assertion).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        assert!(credential.certificate().is_named_by(&header));
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[token_url]);
        validation.set_issuer(&["app-1"]);
        let claims = jsonwebtoken::decode::<serde_json::Value>(
            &assertion,
            credential.certificate().decoding_key(),
            &validation,
        )
        .unwrap()
        .claims;
        assert_eq!(claims["sub"], "app-1");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["nbf"].as_u64().unwrap(),
            ASSERTION_LIFETIME.as_secs()
        );
        // Each assertion is unique (jti): the platform refuses a replayed one.
        let again = credential.assertion("app-1", token_url).unwrap();
        assert_ne!(assertion, again);
    }

    #[test]
    fn a_bundle_and_separate_files_load_alike() {
        let bundle = ClientCertificate::from_pem_bundle(APP_BUNDLE.as_bytes()).unwrap();
        let pair = ClientCertificate::from_pem(APP_CERT.as_bytes(), APP_KEY.as_bytes()).unwrap();
        assert_eq!(bundle.certificate(), pair.certificate());
        // The key is never printed.
        assert!(!format!("{bundle:?}").contains("PRIVATE"));
    }

    #[test]
    fn bad_credentials_are_named() {
        let mismatch = ClientCertificate::from_pem(APP_CERT.as_bytes(), OTHER_KEY.as_bytes());
        assert!(
            matches!(mismatch, Err(CertificateError::KeyMismatch { ref thumbprint }) if thumbprint == &APP_CERT_SHA1.replace(':', "")),
            "{mismatch:?}"
        );
        assert_eq!(
            ClientCertificate::from_pem(APP_CERT.as_bytes(), APP_CERT.as_bytes()).unwrap_err(),
            CertificateError::NoPrivateKey
        );
        assert_eq!(
            Certificate::from_pem(APP_KEY.as_bytes()).unwrap_err(),
            CertificateError::NoCertificate
        );
        assert!(matches!(
            Certificate::from_pem(b"hello"),
            Err(CertificateError::NotPem(_))
        ));
        // A truncated certificate.
        let truncated = pem::parse(APP_CERT).unwrap();
        let cut = pem::encode(&pem::Pem::new(
            "CERTIFICATE",
            truncated.contents()[..100].to_vec(),
        ));
        assert!(matches!(
            Certificate::from_pem(cut.as_bytes()),
            Err(CertificateError::BadCertificate(_))
        ));
        let missing = ClientCertificate::from_files(Path::new("/nonexistent/bot.pem"), None);
        assert!(matches!(missing, Err(CertificateError::Read { .. })));
    }
}
