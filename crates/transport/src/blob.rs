//! The `appHostedMediaConfig.blob`: this bot's media endpoint, as versioned JSON.
//!
//! The format is documented in `docs/blob.md`. In short: Microsoft's field names where the
//! meaning is the same (`mpMediaSessionId`, `callId`, `supportedAudioFormat`,
//! `audioSourceContexts`, `audioRenderContexts`), the WebRTC part is a plain SDP offer or
//! answer, and an `integrity` member carries a digest over the canonical content so a blob
//! that was edited in transit is refused.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The only blob version this crate writes and reads.
pub const BLOB_VERSION: u64 = 1;

/// The bot-facing audio format, named as Microsoft's media platform names it
/// (16 kHz, 16-bit, mono, 20 ms = 640 bytes).
pub const PCM16K: &str = "Pcm16K";

/// Which half of an offer/answer exchange a blob carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdpKind {
    /// The bot's (or any initiator's) offer.
    Offer,
    /// The media peer's answer.
    Answer,
}

impl std::fmt::Display for SdpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SdpKind::Offer => "offer",
            SdpKind::Answer => "answer",
        })
    }
}

/// The WebRTC description inside a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcDescription {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: SdpKind,
    /// The full SDP (ICE credentials and candidates, DTLS fingerprint, Opus m-line).
    pub sdp: String,
}

/// The content of a blob: everything the integrity digest covers.
///
/// Field order here is the canonical order: the digest is computed over this struct
/// serialized with `serde_json::to_string` (no whitespace, fields in declaration order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blob {
    /// Format version, [`BLOB_VERSION`].
    pub version: u64,
    /// Identifies the media session (Microsoft: `mpMediaSessionId`).
    pub mp_media_session_id: String,
    /// The Graph call id, once the service has assigned one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The audio format the bot exchanges with its media stack: `Pcm16K`.
    pub supported_audio_format: String,
    /// Ids of the audio the bot sends into the call.
    pub audio_source_contexts: Vec<String>,
    /// Ids of the audio the bot receives from the call.
    pub audio_render_contexts: Vec<String>,
    /// The bot wants unmixed per-speaker audio besides (Graph: instead of) the mix.
    pub receive_unmixed_meeting_audio: bool,
    /// The WebRTC offer or answer.
    pub webrtc: WebRtcDescription,
}

/// How a blob's integrity is protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integrity {
    /// A SHA-256 digest over the canonical content: detects accidental or naive edits.
    Sha256,
    /// HMAC-SHA-256 with a key shared by the bot and the service: detects any edit by a
    /// party without the key.
    HmacSha256(Vec<u8>),
}

impl Integrity {
    /// The HMAC key, if any.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Integrity::Sha256 => None,
            Integrity::HmacSha256(key) => Some(key),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntegrityField {
    alg: String,
    digest: String,
}

const ALG_SHA256: &str = "SHA-256";
const ALG_HMAC: &str = "HMAC-SHA-256";

/// Why a blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Not JSON, not an object, or a member missing or of the wrong type.
    #[error("malformed blob: {0}")]
    Malformed(String),
    /// A `version` this crate does not know.
    #[error("unknown blob version {0} (this build reads version {BLOB_VERSION})")]
    UnknownVersion(String),
    /// The digest does not match the content: the blob was changed after it was sealed.
    #[error("blob integrity check failed ({alg}): the content was changed after it was sealed")]
    Tampered {
        /// The integrity algorithm named in the blob.
        alg: String,
    },
    /// An HMAC-sealed blob, and no key to check it with.
    #[error("blob is sealed with {ALG_HMAC} and no key was given to verify it")]
    KeyRequired,
    /// A key was given but the blob is only SHA-256 sealed; accepting it would let anyone
    /// without the key forge blobs.
    #[error(
        "blob is sealed with {ALG_SHA256} but an HMAC key is configured; refusing an unkeyed blob"
    )]
    KeyedBlobExpected,
    /// An `integrity.alg` this crate does not know.
    #[error("unknown blob integrity algorithm {0:?}")]
    UnknownIntegrityAlgorithm(String),
    /// The blob carries an offer where an answer was expected, or the reverse.
    #[error("blob carries an SDP {found}, expected an {expected}")]
    WrongSdpKind {
        /// What the caller needed.
        expected: SdpKind,
        /// What the blob had.
        found: SdpKind,
    },
    /// The answer is for a different media session.
    #[error("blob is for media session {found}, expected {expected}")]
    SessionMismatch {
        /// This session's id.
        expected: String,
        /// The id in the blob.
        found: String,
    },
}

impl Blob {
    /// Serializes and seals the blob: the string for `appHostedMediaConfig.blob`.
    pub fn seal(&self, integrity: &Integrity) -> String {
        let canonical = self.canonical();
        let (alg, digest) = match integrity {
            Integrity::Sha256 => (ALG_SHA256, Sha256::digest(canonical.as_bytes()).to_vec()),
            Integrity::HmacSha256(key) => (ALG_HMAC, hmac(key, canonical.as_bytes())),
        };
        let mut value = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            // A struct of strings, bools and vectors always serializes to an object.
            _ => serde_json::Map::new(),
        };
        value.insert(
            "integrity".into(),
            serde_json::json!({ "alg": alg, "digest": BASE64.encode(digest) }),
        );
        serde_json::Value::Object(value).to_string()
    }

    /// Parses and verifies a sealed blob. `key` is the HMAC key when the deployment uses
    /// one; with a key, unkeyed (SHA-256 only) blobs are refused.
    pub fn parse(text: &str, key: Option<&[u8]>) -> Result<Blob, BlobError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BlobError::Malformed(e.to_string()))?;
        let serde_json::Value::Object(mut map) = value else {
            return Err(BlobError::Malformed("not a JSON object".into()));
        };
        // The version decides how to read the rest, so it is checked before anything else.
        match map.get("version") {
            None => return Err(BlobError::Malformed("missing member `version`".into())),
            Some(v) if v.as_u64() == Some(BLOB_VERSION) => {}
            Some(v) => return Err(BlobError::UnknownVersion(v.to_string())),
        }
        let integrity = map
            .remove("integrity")
            .ok_or_else(|| BlobError::Malformed("missing member `integrity`".into()))?;
        let integrity: IntegrityField = serde_json::from_value(integrity)
            .map_err(|e| BlobError::Malformed(format!("member `integrity`: {e}")))?;
        let blob: Blob = serde_json::from_value(serde_json::Value::Object(map))
            .map_err(|e| BlobError::Malformed(e.to_string()))?;
        let claimed = BASE64.decode(integrity.digest.as_bytes()).map_err(|e| {
            BlobError::Malformed(format!("member `integrity.digest` is not base64: {e}"))
        })?;
        let canonical = blob.canonical();
        let ok = match (integrity.alg.as_str(), key) {
            (ALG_SHA256, None) => constant_time_eq(&Sha256::digest(canonical.as_bytes()), &claimed),
            (ALG_SHA256, Some(_)) => return Err(BlobError::KeyedBlobExpected),
            (ALG_HMAC, Some(key)) => {
                let mut mac = new_hmac(key);
                mac.update(canonical.as_bytes());
                mac.verify_slice(&claimed).is_ok()
            }
            (ALG_HMAC, None) => return Err(BlobError::KeyRequired),
            (other, _) => return Err(BlobError::UnknownIntegrityAlgorithm(other.to_owned())),
        };
        if !ok {
            return Err(BlobError::Tampered { alg: integrity.alg });
        }
        Ok(blob)
    }

    /// Refuses the blob unless it carries `expected`.
    pub fn expect_kind(&self, expected: SdpKind) -> Result<(), BlobError> {
        if self.webrtc.kind == expected {
            Ok(())
        } else {
            Err(BlobError::WrongSdpKind {
                expected,
                found: self.webrtc.kind,
            })
        }
    }

    fn canonical(&self) -> String {
        // Serializing a struct of plain data cannot fail; an empty string would only make
        // every digest check fail, never pass.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn new_hmac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long ones are hashed first), so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = new_hmac(key);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Blob {
        Blob {
            version: BLOB_VERSION,
            mp_media_session_id: "9b4b6a0e-2c1f-4f7e-9d3c-1a2b3c4d5e6f".into(),
            call_id: None,
            supported_audio_format: PCM16K.into(),
            audio_source_contexts: vec!["src-1".into()],
            audio_render_contexts: vec!["render-1".into()],
            receive_unmixed_meeting_audio: true,
            webrtc: WebRtcDescription {
                kind: SdpKind::Offer,
                sdp: "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n".into(),
            },
        }
    }

    #[test]
    fn round_trips_with_microsoft_field_names() {
        let text = sample().seal(&Integrity::Sha256);
        for name in [
            "\"mpMediaSessionId\"",
            "\"supportedAudioFormat\":\"Pcm16K\"",
            "\"audioSourceContexts\"",
            "\"audioRenderContexts\"",
            "\"receiveUnmixedMeetingAudio\":true",
            "\"integrity\"",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert!(!text.contains("callId"), "callId is omitted until known");
        assert_eq!(Blob::parse(&text, None), Ok(sample()));
    }

    #[test]
    fn whitespace_does_not_matter_but_content_does() {
        let text = sample().seal(&Integrity::Sha256);
        let pretty = serde_json::to_string_pretty(
            &serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        )
        .unwrap();
        assert_eq!(Blob::parse(&pretty, None), Ok(sample()));

        let tampered = text.replace("127.0.0.1", "203.0.113.9");
        assert!(matches!(
            Blob::parse(&tampered, None),
            Err(BlobError::Tampered { .. })
        ));
        let tampered = text.replace(
            "\"receiveUnmixedMeetingAudio\":true",
            "\"receiveUnmixedMeetingAudio\":false",
        );
        assert!(matches!(
            Blob::parse(&tampered, None),
            Err(BlobError::Tampered { .. })
        ));
    }

    #[test]
    fn refuses_malformed_and_unknown_versions() {
        assert!(matches!(
            Blob::parse("not json", None),
            Err(BlobError::Malformed(_))
        ));
        assert!(matches!(
            Blob::parse("[1,2]", None),
            Err(BlobError::Malformed(_))
        ));
        let text = sample().seal(&Integrity::Sha256);
        let v2 = text.replace("\"version\":1", "\"version\":2");
        assert_eq!(
            Blob::parse(&v2, None),
            Err(BlobError::UnknownVersion("2".into()))
        );
        let no_integrity = {
            let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v.as_object_mut().unwrap().remove("integrity");
            v.to_string()
        };
        assert!(matches!(
            Blob::parse(&no_integrity, None),
            Err(BlobError::Malformed(m)) if m.contains("integrity")
        ));
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(matches!(
            Blob::parse(&extra, None),
            Err(BlobError::Malformed(m)) if m.contains("surprise")
        ));
    }

    #[test]
    fn hmac_needs_the_right_key() {
        let key = b"shared secret between bot and service".to_vec();
        let text = sample().seal(&Integrity::HmacSha256(key.clone()));
        assert_eq!(Blob::parse(&text, Some(&key)), Ok(sample()));
        assert_eq!(Blob::parse(&text, None), Err(BlobError::KeyRequired));
        assert!(matches!(
            Blob::parse(&text, Some(b"wrong key")),
            Err(BlobError::Tampered { .. })
        ));
        // An attacker cannot downgrade to an unkeyed digest.
        let unkeyed = sample().seal(&Integrity::Sha256);
        assert_eq!(
            Blob::parse(&unkeyed, Some(&key)),
            Err(BlobError::KeyedBlobExpected)
        );
    }

    #[test]
    fn kind_check_names_both_sides() {
        let err = sample().expect_kind(SdpKind::Answer).unwrap_err();
        assert_eq!(
            err.to_string(),
            "blob carries an SDP offer, expected an answer"
        );
    }
}
