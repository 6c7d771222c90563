//! ACS's HMAC-SHA256 request authentication, both sides: the client signs each request with
//! the resource's access key; the emulator checks the signature the way the service does.
//!
//! Each request carries `x-ms-date` (an HTTP date), `x-ms-content-sha256` (base64 SHA-256 of
//! the body, empty body included) and `Authorization: HMAC-SHA256
//! SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={base64}`, where the signature
//! is HMAC-SHA256, keyed with the base64-decoded access key, over
//! `{METHOD}\n{path and query}\n{date};{host};{content hash}` (the signed headers' values in
//! the order `SignedHeaders` names them). `host` is the URL's authority: `host:port` when the
//! port is not the scheme's default.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::{digest, hmac};

/// The signed headers, in the order the client signs them.
pub const SIGNED_HEADERS: &str = "x-ms-date;host;x-ms-content-sha256";
/// How far a request's `x-ms-date` may be from the verifier's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

/// A resource's access key (the decoded bytes); its `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey(Vec<u8>);

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccessKey({} bytes)", self.0.len())
    }
}

impl AccessKey {
    /// A key from its base64 form (as the connection string and the portal give it).
    pub fn from_base64(key: &str) -> Result<Self, HmacError> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|e| HmacError::BadKey(e.to_string()))?;
        if bytes.is_empty() {
            return Err(HmacError::BadKey("the key is empty".into()));
        }
        Ok(AccessKey(bytes))
    }

    /// A key from raw bytes (the emulator makes one per run).
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        AccessKey(bytes)
    }

    /// The base64 form.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    fn hmac_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.0)
    }
}

/// Why a request's HMAC authentication was refused (or a key could not be read).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HmacError {
    /// The access key is not base64 or is empty.
    #[error("the access key is not valid base64: {0}")]
    BadKey(String),
    /// A header the scheme needs is absent.
    #[error("the request has no {0} header")]
    MissingHeader(&'static str),
    /// The `Authorization` header is not `HMAC-SHA256 SignedHeaders=…&Signature=…`.
    #[error("the Authorization header is not HMAC-SHA256 SignedHeaders=...&Signature=...: {0}")]
    MalformedAuthorization(String),
    /// `SignedHeaders` leaves out one the scheme requires.
    #[error("SignedHeaders must include {0}")]
    UnsignedHeader(&'static str),
    /// `x-ms-date` is not an HTTP date.
    #[error("x-ms-date is not an HTTP date: {0:?}")]
    BadDate(String),
    /// `x-ms-date` is too far from now.
    #[error("x-ms-date is {skew_s} s away from the server's clock (at most {max_s} s)")]
    StaleDate {
        /// Seconds between the date and now.
        skew_s: u64,
        /// The tolerance.
        max_s: u64,
    },
    /// `x-ms-content-sha256` is not the body's hash.
    #[error("x-ms-content-sha256 does not match the body")]
    ContentHashMismatch,
    /// The signature is not the key's over this request.
    #[error("the request's signature does not match")]
    SignatureMismatch,
}

/// The base64 SHA-256 of a body: `x-ms-content-sha256`.
pub fn content_hash(body: &[u8]) -> String {
    STANDARD.encode(digest::digest(&digest::SHA256, body))
}

/// The string the signature covers.
pub fn string_to_sign(method: &str, path_and_query: &str, signed_values: &[&str]) -> String {
    format!(
        "{}\n{}\n{}",
        method.to_ascii_uppercase(),
        path_and_query,
        signed_values.join(";")
    )
}

/// `host` as signed: the authority, with the port only when it is not the scheme's default.
pub fn host_of(url: &url::Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The path and query as signed (`/calling/callConnections?api-version=…`).
pub fn path_and_query(url: &url::Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

/// The headers that authenticate one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRequest {
    /// `x-ms-date`.
    pub date: String,
    /// `x-ms-content-sha256`.
    pub content_hash: String,
    /// `host` as signed (send it as the request's Host).
    pub host: String,
    /// `Authorization`.
    pub authorization: String,
}

/// Signs a request to `url` with `body` at `now`.
pub fn sign(
    key: &AccessKey,
    method: &str,
    url: &url::Url,
    body: &[u8],
    now: SystemTime,
) -> SignedRequest {
    let date = httpdate::fmt_http_date(now);
    let content_hash = content_hash(body);
    let host = host_of(url);
    let to_sign = string_to_sign(method, &path_and_query(url), &[&date, &host, &content_hash]);
    let signature = STANDARD.encode(hmac::sign(&key.hmac_key(), to_sign.as_bytes()));
    SignedRequest {
        authorization: format!("HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature={signature}"),
        date,
        content_hash,
        host,
    }
}

/// Checks a request's HMAC authentication as the service does: the content hash against the
/// body, the date against `now` (± [`MAX_CLOCK_SKEW`]), the signature over the signed headers
/// in the order `SignedHeaders` lists them. `header` looks a header up by lower-case name.
pub fn verify<'a>(
    key: &AccessKey,
    method: &str,
    path_and_query: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    now: SystemTime,
) -> Result<(), HmacError> {
    let authorization = header("authorization").ok_or(HmacError::MissingHeader("Authorization"))?;
    let (signed, signature) = parse_authorization(authorization)?;
    let names: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    for required in ["x-ms-date", "host", "x-ms-content-sha256"] {
        if !names.iter().any(|n| n == required) {
            return Err(HmacError::UnsignedHeader(required));
        }
    }
    let date = header("x-ms-date").ok_or(HmacError::MissingHeader("x-ms-date"))?;
    let when = httpdate::parse_http_date(date).map_err(|_| HmacError::BadDate(date.to_owned()))?;
    let skew = match now.duration_since(when) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(HmacError::StaleDate {
            skew_s: skew.as_secs(),
            max_s: MAX_CLOCK_SKEW.as_secs(),
        });
    }
    let hash =
        header("x-ms-content-sha256").ok_or(HmacError::MissingHeader("x-ms-content-sha256"))?;
    if hash != content_hash(body) {
        return Err(HmacError::ContentHashMismatch);
    }
    let mut values = Vec::with_capacity(names.len());
    for name in &names {
        values.push(header(name).unwrap_or(""));
    }
    let to_sign = string_to_sign(method, path_and_query, &values);
    let signature = STANDARD
        .decode(signature)
        .map_err(|_| HmacError::MalformedAuthorization("the signature is not base64".into()))?;
    hmac::verify(&key.hmac_key(), to_sign.as_bytes(), &signature)
        .map_err(|_| HmacError::SignatureMismatch)
}

/// `HMAC-SHA256 SignedHeaders=a;b;c&Signature=xyz` → (`a;b;c`, `xyz`).
fn parse_authorization(value: &str) -> Result<(&str, &str), HmacError> {
    let bad = || HmacError::MalformedAuthorization(truncated(value));
    let rest = value.strip_prefix("HMAC-SHA256 ").ok_or_else(bad)?;
    let mut signed = None;
    let mut signature = None;
    for part in rest.trim().split('&') {
        let (name, v) = part.split_once('=').ok_or_else(bad)?;
        match name {
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(bad()),
        }
    }
    match (signed, signature) {
        (Some(s), Some(sig)) if !s.is_empty() && !sig.is_empty() => Ok((s, sig)),
        _ => Err(bad()),
    }
}

fn truncated(value: &str) -> String {
    value.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccessKey {
        AccessKey::from_base64("ZmFrZS1rZXktZm9yLXRlc3RzLW9ubHk=").unwrap()
    }

    fn headers<'a>(signed: &'a SignedRequest) -> impl Fn(&str) -> Option<&'a str> + 'a {
        move |name| match name {
            "authorization" => Some(signed.authorization.as_str()),
            "x-ms-date" => Some(signed.date.as_str()),
            "x-ms-content-sha256" => Some(signed.content_hash.as_str()),
            "host" => Some(signed.host.as_str()),
            _ => None,
        }
    }

    #[test]
    fn known_answer() {
        // The signature was computed apart (Python's hmac over the documented string).
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let url = url::Url::parse(
            "https://contoso.communication.azure.com/calling/callConnections?api-version=2025-05-15",
        )
        .unwrap();
        let signed = sign(&key(), "post", &url, b"{}", now);
        assert_eq!(signed.date, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(signed.host, "contoso.communication.azure.com");
        assert_eq!(
            signed.content_hash,
            "RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
        assert_eq!(
            string_to_sign(
                "post",
                &path_and_query(&url),
                &[&signed.date, &signed.host, &signed.content_hash]
            ),
            "POST\n/calling/callConnections?api-version=2025-05-15\n\
             Tue, 14 Nov 2023 22:13:20 GMT;contoso.communication.azure.com;\
             RBNvo1WzZ4oRRq0W9+hknpT7T8If536DEMBg9hyq/4o="
        );
        assert_eq!(
            signed.authorization,
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256\
             &Signature=enVIjco6l1vftVrRIbpxjdrusJyafJ8hGmnApSnjzpw="
        );
        assert_eq!(
            verify(
                &key(),
                "POST",
                &path_and_query(&url),
                headers(&signed),
                b"{}",
                now
            ),
            Ok(())
        );
    }

    #[test]
    fn a_port_is_part_of_the_host() {
        let url = url::Url::parse("https://127.0.0.1:8443/calling").unwrap();
        assert_eq!(host_of(&url), "127.0.0.1:8443");
        let default = url::Url::parse("https://127.0.0.1:443/calling").unwrap();
        assert_eq!(host_of(&default), "127.0.0.1");
    }

    #[test]
    fn tampering_is_refused_with_the_reason() {
        let now = SystemTime::now();
        let url =
            url::Url::parse("https://h/calling/callConnections/x:terminate?api-version=1").unwrap();
        let pq = path_and_query(&url);
        let signed = sign(&key(), "POST", &url, b"{\"a\":1}", now);
        let check = |method: &str, pq: &str, body: &[u8], key: &AccessKey| {
            verify(key, method, pq, headers(&signed), body, now)
        };
        assert_eq!(check("POST", &pq, b"{\"a\":1}", &key()), Ok(()));
        assert_eq!(
            check("POST", &pq, b"{\"a\":2}", &key()),
            Err(HmacError::ContentHashMismatch)
        );
        assert_eq!(
            check("DELETE", &pq, b"{\"a\":1}", &key()),
            Err(HmacError::SignatureMismatch)
        );
        assert_eq!(
            check(
                "POST",
                "/calling/callConnections/y:terminate?api-version=1",
                b"{\"a\":1}",
                &key()
            ),
            Err(HmacError::SignatureMismatch)
        );
        let other = AccessKey::from_bytes(b"another key".to_vec());
        assert_eq!(
            check("POST", &pq, b"{\"a\":1}", &other),
            Err(HmacError::SignatureMismatch)
        );
        let late = now + Duration::from_secs(16 * 60);
        assert!(matches!(
            verify(&key(), "POST", &pq, headers(&signed), b"{\"a\":1}", late),
            Err(HmacError::StaleDate { .. })
        ));
    }

    #[test]
    fn malformed_authorization_is_a_typed_error() {
        let now = SystemTime::now();
        for value in [
            "Bearer abc",
            "HMAC-SHA256 Signature=abc",
            "HMAC-SHA256 SignedHeaders=host&Signature=abc",
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=!!!",
            "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Other=1",
        ] {
            let date = httpdate::fmt_http_date(now);
            let hash = content_hash(b"");
            let header = |name: &str| match name {
                "authorization" => Some(value),
                "x-ms-date" => Some(date.as_str()),
                "x-ms-content-sha256" => Some(hash.as_str()),
                "host" => Some("h"),
                _ => None,
            };
            let err = verify(&key(), "GET", "/", header, b"", now).unwrap_err();
            assert!(
                matches!(
                    err,
                    HmacError::MalformedAuthorization(_) | HmacError::UnsignedHeader(_)
                ),
                "{value}: {err:?}"
            );
        }
        assert_eq!(
            verify(&key(), "GET", "/", |_| None, b"", now),
            Err(HmacError::MissingHeader("Authorization"))
        );
        assert!(AccessKey::from_base64("not base64!").is_err());
        assert!(AccessKey::from_base64("").is_err());
    }
}
