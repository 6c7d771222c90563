//! jsonwebtoken's cryptography on ring — the TLS stack's own — instead of its RustCrypto
//! backend, whose `rsa` crate carries RUSTSEC-2023-0071 (a timing side channel on private-key
//! operations, no fixed release) into every bot: a bot signs client assertions with its
//! certificate's private key. ring's RSA is constant-time.
//!
//! Only what Graph and the identity platform use is provided: RS256 and PS256, signing with a
//! PKCS#1 private key and verifying with a PKCS#1 public key or a JWK's modulus and exponent.
//! Anything else is a typed error, never a panic. [`install`] makes it the process default;
//! every function of this crate that signs or verifies calls it first.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::ThumbprintHash;
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey};

/// The provider: RS256/PS256 on ring.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_, _| Err(unsupported()),
        ed_pub_components_from_private_key: |_, _| Err(unsupported()),
        compute_digest,
    },
};

/// Makes the ring provider jsonwebtoken's process default (idempotent). A provider another
/// part of the program installed first is kept.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = PROVIDER.install_default();
    });
}

fn unsupported() -> Error {
    ErrorKind::InvalidAlgorithm.into()
}

/// The two RSA schemes, as ring names them.
fn schemes(
    algorithm: Algorithm,
) -> Result<(
    &'static dyn ring::signature::RsaEncoding,
    &'static ring::signature::RsaParameters,
)> {
    match algorithm {
        Algorithm::RS256 => Ok((
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        )),
        Algorithm::PS256 => Ok((
            &ring::signature::RSA_PSS_SHA256,
            &ring::signature::RSA_PSS_2048_8192_SHA256,
        )),
        _ => Err(unsupported()),
    }
}

struct RingSigner {
    algorithm: Algorithm,
    key: RsaKeyPair,
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let (padding, _) = schemes(self.algorithm).map_err(signature::Error::from_source)?;
        let mut out = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(padding, &SystemRandom::new(), message, &mut out)
            .map_err(|_| signature::Error::new())?;
        Ok(out)
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    schemes(*algorithm)?;
    if key.family() != AlgorithmFamily::Rsa {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    let key = RsaKeyPair::from_der(key.as_bytes())
        .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
    Ok(Box::new(RingSigner {
        algorithm: *algorithm,
        key,
    }))
}

struct RingVerifier {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> std::result::Result<(), signature::Error> {
        let (_, parameters) = schemes(self.algorithm).map_err(signature::Error::from_source)?;
        let verified = match self.key.kind() {
            DecodingKeyKind::SecretOrDer(der) => {
                UnparsedPublicKey::new(parameters, der).verify(message, signature)
            }
            DecodingKeyKind::RsaModulusExponent { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(parameters, message, signature)
            }
        };
        verified.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    schemes(*algorithm)?;
    if key.family() != AlgorithmFamily::Rsa {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        algorithm: *algorithm,
        key: key.clone(),
    }))
}

/// The modulus and exponent of a PKCS#1 private key (for its public JWK).
fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = RsaKeyPair::from_der(der)
        .map_err(|e| Error::from(ErrorKind::InvalidRsaKey(e.to_string())))?;
    let components: RsaPublicKeyComponents<Vec<u8>> = key.public().into();
    Ok((components.n, components.e))
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(unsupported()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rsa_sha256_schemes_are_offered_and_others_are_errors_not_panics() {
        install();
        let key = EncodingKey::from_secret(b"secret");
        for algorithm in [Algorithm::HS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert!(new_signer(&algorithm, &key).is_err(), "{algorithm:?}");
        }
        let rsa = EncodingKey::from_rsa_pem(callback_key().as_bytes()).unwrap();
        assert!(new_signer(&Algorithm::RS384, &rsa).is_err());
        assert!(new_signer(&Algorithm::RS256, &rsa).is_ok());
        assert!(new_signer(&Algorithm::PS256, &rsa).is_ok());
        assert!(
            (PROVIDER.key_utils.rsa_pub_components_from_public_key)(b"x").is_err(),
            "no panic for what the provider does not do"
        );
    }

    /// The signalling tests' own callback key (2048-bit PKCS#1).
    fn callback_key() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/callback-signing-key.pem"
        ))
        .unwrap()
    }
}
