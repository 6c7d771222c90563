//! An ACS resource's connection string: `endpoint=https://{resource}.communication.azure.com/;accesskey={base64}`.

use url::Url;

use crate::hmac::{AccessKey, HmacError};

/// Why a connection string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConnectionStringError {
    /// A part is not `name=value`.
    #[error("connection string part {0:?} is not name=value")]
    Malformed(String),
    /// `endpoint` or `accesskey` is absent.
    #[error("the connection string has no {0}")]
    Missing(&'static str),
    /// The endpoint is not an http(s) URL.
    #[error("endpoint {value:?} is not an https URL: {reason}")]
    Endpoint {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The access key is not base64.
    #[error(transparent)]
    Key(#[from] HmacError),
}

/// A parsed connection string. Its `Debug` and `Display` leave the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The resource's endpoint, ending in `/`.
    pub endpoint: Url,
    /// The access key.
    pub access_key: AccessKey,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ConnectionString(endpoint={}, accesskey=…)",
            self.endpoint
        )
    }
}

impl std::fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "endpoint={};accesskey=…", self.endpoint)
    }
}

impl ConnectionString {
    /// Parses `endpoint=…;accesskey=…` (names case-insensitive, any order, a trailing `;`
    /// allowed, other parts ignored as Microsoft's SDKs do).
    pub fn parse(value: &str) -> Result<Self, ConnectionStringError> {
        let mut endpoint = None;
        let mut key = None;
        for part in value.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let (name, v) = part
                .split_once('=')
                .ok_or_else(|| ConnectionStringError::Malformed(redact(part)))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "endpoint" => endpoint = Some(v.trim()),
                "accesskey" => key = Some(v.trim()),
                _ => {}
            }
        }
        let endpoint = endpoint.ok_or(ConnectionStringError::Missing("endpoint"))?;
        let key = key.ok_or(ConnectionStringError::Missing("accesskey"))?;
        Ok(ConnectionString {
            endpoint: parse_endpoint(endpoint)?,
            access_key: AccessKey::from_base64(key)?,
        })
    }

    /// The string form, key included (what the emulator prints for its users).
    pub fn to_secret_string(&self) -> String {
        format!(
            "endpoint={};accesskey={}",
            self.endpoint,
            self.access_key.to_base64()
        )
    }
}

/// An endpoint URL, normalised to end in `/`.
pub fn parse_endpoint(value: &str) -> Result<Url, ConnectionStringError> {
    let bad = |reason: &str| ConnectionStringError::Endpoint {
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    let mut url = Url::parse(value).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(bad("not an http(s) URL with a host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("an endpoint has no query or fragment"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

fn redact(part: &str) -> String {
    part.chars().take(12).collect::<String>() + "…"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_portal_form() {
        let cs = ConnectionString::parse(
            "endpoint=https://contoso.communication.azure.com/;accesskey=c2VjcmV0LWtleQ==",
        )
        .unwrap();
        assert_eq!(
            cs.endpoint.as_str(),
            "https://contoso.communication.azure.com/"
        );
        assert_eq!(cs.access_key.to_base64(), "c2VjcmV0LWtleQ==");
        assert!(!format!("{cs:?}{cs}").contains("c2VjcmV0"));
        assert_eq!(
            cs.to_secret_string(),
            "endpoint=https://contoso.communication.azure.com/;accesskey=c2VjcmV0LWtleQ=="
        );
        let spaced = ConnectionString::parse(
            " AccessKey=c2VjcmV0LWtleQ==; Endpoint=https://127.0.0.1:8443 ;",
        )
        .unwrap();
        assert_eq!(spaced.endpoint.as_str(), "https://127.0.0.1:8443/");
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        assert_eq!(
            ConnectionString::parse("accesskey=c2VjcmV0"),
            Err(ConnectionStringError::Missing("endpoint"))
        );
        assert_eq!(
            ConnectionString::parse("endpoint=https://h/"),
            Err(ConnectionStringError::Missing("accesskey"))
        );
        assert!(matches!(
            ConnectionString::parse("endpoint=ftp://h/;accesskey=c2VjcmV0"),
            Err(ConnectionStringError::Endpoint { .. })
        ));
        assert!(matches!(
            ConnectionString::parse("endpoint=https://h/;accesskey=%%%"),
            Err(ConnectionStringError::Key(_))
        ));
        let err = ConnectionString::parse("endpoint=https://h/;secretpart").unwrap_err();
        assert!(matches!(err, ConnectionStringError::Malformed(_)));
    }
}
