//! The Graph calling REST client: create, get and delete calls, list participants, and
//! every call-control action (answer, reject, redirect, transfer, invite, mute, playPrompt,
//! recordResponse, ..., keepAlive; see `client/actions.rs`).
//!
//! Every request carries a bearer token from a [`TokenSource`] and a fresh `client-request-id`
//! (a UUID per request, kept across that request's retries); each HTTP exchange is bounded by
//! a timeout; 429/503 (and 504 on GET/DELETE) are retried honouring `Retry-After` (or with a
//! bounded exponential backoff); a 401 makes the token source fetch a new token once.
//! Graph error bodies become [`ClientError::Service`] with status, code, message and request-id.
//! Before a create-call leaves the process it is validated
//! ([`validate_create_call`]) and the token's `roles`
//! are checked against [`required_permissions`]; the actions are validated likewise, and an
//! answer with app-hosted media checked against
//! [`required_permissions_for_answer`](crate::permissions::required_permissions_for_answer).

mod actions;
mod retry;

pub use retry::{RetryPolicy, parse_retry_after};

use std::time::{Duration, SystemTime};

use appmedia_model::{Call, GraphErrorBody, Participant};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::{JwtPayloadError, TokenError, TokenSource, unverified_payload};
use crate::permissions::{
    PermissionError, RequiredPermissions, check_token_claims, required_permissions,
};
use crate::validate::{ValidationErrors, validate_create_call};

/// The Graph national clouds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NationalCloud {
    /// `graph.microsoft.com`.
    Global,
    /// US Government L4: `graph.microsoft.us`.
    UsGovL4,
    /// US Government L5 (DOD): `dod-graph.microsoft.us`.
    UsGovL5Dod,
    /// China, operated by 21Vianet: `microsoftgraph.chinacloudapi.cn`.
    China,
}

impl NationalCloud {
    /// The Graph host name.
    pub fn graph_host(self) -> &'static str {
        match self {
            NationalCloud::Global => "graph.microsoft.com",
            NationalCloud::UsGovL4 => "graph.microsoft.us",
            NationalCloud::UsGovL5Dod => "dod-graph.microsoft.us",
            NationalCloud::China => "microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The Microsoft identity platform host that issues tokens for this cloud.
    pub fn login_host(self) -> &'static str {
        match self {
            NationalCloud::Global => "login.microsoftonline.com",
            NationalCloud::UsGovL4 | NationalCloud::UsGovL5Dod => "login.microsoftonline.us",
            NationalCloud::China => "login.chinacloudapi.cn",
        }
    }

    /// `https://{graph host}/v1.0/`.
    pub fn graph_base_url(self) -> Url {
        Url::parse(&format!("https://{}/v1.0/", self.graph_host()))
            .expect("constant host names make valid URLs")
    }

    /// The client-credentials scope: `https://{graph host}/.default`.
    pub fn graph_scope(self) -> String {
        format!("https://{}/.default", self.graph_host())
    }

    /// Client credentials for `tenant` on this cloud's identity platform, with its Graph scope.
    pub fn client_credentials(
        self,
        tenant: &str,
        client_id: impl Into<String>,
        credential: impl Into<crate::auth::ClientAuth>,
    ) -> Result<crate::auth::ClientCredentials, url::ParseError> {
        crate::auth::ClientCredentials::for_authority(
            &format!("https://{}", self.login_host()),
            tenant,
            client_id,
            credential,
            self.graph_scope(),
        )
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct GraphClientConfig {
    /// Base URL the resource paths are joined to, e.g. `https://graph.microsoft.com/v1.0/`
    /// or the local emulator's.
    pub base_url: Url,
    /// Bound on one HTTP exchange, body included.
    pub request_timeout: Duration,
    /// Bound on connecting.
    pub connect_timeout: Duration,
    /// Retries of 429/503/504.
    pub retry: RetryPolicy,
    /// Validate a create-call request before sending it.
    pub validate_requests: bool,
    /// Check the token's `roles` against the permissions a create-call needs before sending it.
    pub check_permissions: bool,
}

impl GraphClientConfig {
    /// Defaults for a national cloud.
    pub fn for_cloud(cloud: NationalCloud) -> Self {
        Self::for_base_url(cloud.graph_base_url())
    }

    /// Defaults for any base URL (a trailing `/` is added when missing, so relative
    /// resource paths land under it).
    pub fn for_base_url(mut base_url: Url) -> Self {
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
        Self {
            base_url,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            validate_requests: true,
            check_permissions: true,
        }
    }
}

/// Why a Graph request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The request (a create-call or an action body) would be refused by the service;
    /// nothing was sent.
    #[error("request refused before sending: {0}")]
    Invalid(#[from] ValidationErrors),
    /// The token lacks a permission the request needs; nothing was sent.
    #[error("{0}")]
    Permission(#[from] PermissionError),
    /// The token's claims could not be read for the permission check; nothing was sent.
    #[error("cannot read the bearer token's claims for the permission check: {0}")]
    TokenClaims(#[from] JwtPayloadError),
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    HttpClient(#[from] crate::HttpClientError),
    /// The service answered with an error status.
    #[error(transparent)]
    Service(Box<ServiceError>),
    /// No answer within the timeout.
    #[error("{method} {url} timed out after {timeout:?} (client-request-id {client_request_id})")]
    Timeout {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
        /// The `client-request-id` sent, to find the request in Graph's logs.
        client_request_id: String,
    },
    /// The request could not be sent or the answer not read.
    #[error("{method} {url} failed: {reason} (client-request-id {client_request_id})")]
    Transport {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// Why it failed.
        reason: String,
        /// The `client-request-id` sent.
        client_request_id: String,
    },
    /// A success status with a body that is not what the operation returns.
    #[error("{method} {url} answered {status} with an unreadable body: {reason}")]
    UnexpectedResponse {
        /// The request's method.
        method: Method,
        /// The request's URL.
        url: String,
        /// The HTTP status answered.
        status: u16,
        /// What is wrong with the body.
        reason: String,
    },
    /// A call id that cannot name a call.
    #[error("call id {0:?} is empty or contains '/'")]
    BadCallId(String),
    /// A participant id that cannot name a participant.
    #[error("participant id {0:?} is empty or contains '/'")]
    BadParticipantId(String),
}

impl ClientError {
    /// The HTTP status, for errors the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Service(e) => Some(e.status),
            ClientError::UnexpectedResponse { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Graph's error code, for errors the service answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Service(e) => Some(&e.code),
            _ => None,
        }
    }

    /// The service's request id, when it gave one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ClientError::Service(e) => e.request_id.as_deref(),
            _ => None,
        }
    }
}

/// An error status from the service, with what Graph said about it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{method} {url} answered {status} {code}: {message} (request-id {}, client-request-id {client_request_id}, after {attempts} attempt(s))",
    .request_id.as_deref().unwrap_or("none")
)]
pub struct ServiceError {
    /// The request's method.
    pub method: Method,
    /// The request's URL.
    pub url: String,
    /// The HTTP status answered.
    pub status: u16,
    /// Graph's error code, or the HTTP reason phrase when the body is not a Graph error.
    pub code: String,
    /// Graph's error message (or the start of the body).
    pub message: String,
    /// The service's `request-id` (from the error body, else the response header).
    pub request_id: Option<String>,
    /// The `client-request-id` this client sent.
    pub client_request_id: String,
    /// Attempts made, retries included.
    pub attempts: u32,
    /// The parsed error body, when there was one.
    pub body: Option<GraphErrorBody>,
}

/// The answer to a create-call.
#[derive(Clone, Debug, PartialEq)]
pub struct CreatedCall {
    /// The call as the service created it.
    pub call: Call,
    /// The `Location` header (the new call's URL).
    pub location: Option<String>,
    /// The service's `request-id` header.
    pub request_id: Option<String>,
    /// The `client-request-id` this client sent.
    pub client_request_id: String,
}

impl CreatedCall {
    /// The call id: the body's `id`, else the last segment of `Location`.
    pub fn call_id(&self) -> Option<&str> {
        self.call.id.value().map(String::as_str).or_else(|| {
            self.location
                .as_deref()?
                .trim_end_matches('/')
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
        })
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
    client_request_id: String,
}

/// How [`GraphClient::find_online_meeting`] names the meeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeetingLookup<'a> {
    /// By its Teams join link.
    JoinWebUrl(&'a str),
    /// By its numeric join id.
    JoinMeetingId(&'a str),
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default)]
    next_link: Option<String>,
}

/// Most pages of a collection followed through `@odata.nextLink`.
const MAX_PAGES: usize = 100;

/// The Graph calling REST client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GraphClient {
    http: reqwest::Client,
    config: GraphClientConfig,
    tokens: TokenSource,
}

impl GraphClient {
    /// A client for `config.base_url` with tokens from `tokens`.
    pub fn new(config: GraphClientConfig, tokens: TokenSource) -> Result<Self, ClientError> {
        let http = crate::http_client(config.request_timeout, config.connect_timeout)?;
        Ok(Self {
            http,
            config,
            tokens,
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> &GraphClientConfig {
        &self.config
    }

    /// Where the client's bearer tokens come from.
    pub fn tokens(&self) -> &TokenSource {
        &self.tokens
    }

    /// `POST /communications/calls`: validates the request, checks the token's permissions,
    /// then creates the call (201 + `Location` + the call).
    pub async fn create_call(&self, request: &Call) -> Result<CreatedCall, ClientError> {
        if self.config.validate_requests {
            validate_create_call(request)?;
        }
        self.check_token_roles(&required_permissions(request))
            .await?;
        let url = self.url(&["communications", "calls"])?;
        let body = serde_json::to_vec(request).map_err(|e| ClientError::UnexpectedResponse {
            method: Method::POST,
            url: url.to_string(),
            status: 0,
            reason: format!("cannot serialise the request: {e}"),
        })?;
        let answer = self.execute(Method::POST, url.clone(), Some(body)).await?;
        let call: Call = decode(&Method::POST, &url, &answer)?;
        Ok(CreatedCall {
            call,
            location: header_string(&answer.headers, LOCATION.as_str()),
            request_id: header_string(&answer.headers, "request-id"),
            client_request_id: answer.client_request_id,
        })
    }

    /// `GET /communications/calls/{id}`.
    pub async fn get_call(&self, call_id: &str) -> Result<Call, ClientError> {
        let url = self.url(&["communications", "calls", checked_id(call_id)?])?;
        let answer = self.execute(Method::GET, url.clone(), None).await?;
        decode(&Method::GET, &url, &answer)
    }

    /// `DELETE /communications/calls/{id}`: hangs up.
    pub async fn delete_call(&self, call_id: &str) -> Result<(), ClientError> {
        let url = self.url(&["communications", "calls", checked_id(call_id)?])?;
        self.execute(Method::DELETE, url, None).await.map(|_| ())
    }

    /// Get onlineMeeting: the meeting `organizer_id` organises that `lookup` names (`None`
    /// when there is none). Needs `OnlineMeetings.Read.All` and an application access policy
    /// for the organizer; [`TeamsJoinLink::from_online_meeting`](crate::join_url::TeamsJoinLink::from_online_meeting)
    /// turns the answer into the join request.
    pub async fn find_online_meeting(
        &self,
        organizer_id: &str,
        lookup: MeetingLookup<'_>,
    ) -> Result<Option<appmedia_model::OnlineMeeting>, ClientError> {
        let mut url = self.url(&["users", checked_id(organizer_id)?, "onlineMeetings"])?;
        let (property, value) = match lookup {
            MeetingLookup::JoinWebUrl(link) => ("JoinWebUrl", link),
            MeetingLookup::JoinMeetingId(id) => ("joinMeetingIdSettings/joinMeetingId", id),
        };
        // An OData string literal doubles its quotes.
        let filter = format!("{property} eq '{}'", value.replace('\'', "''"));
        url.query_pairs_mut().append_pair("$filter", &filter);
        let answer = self.execute(Method::GET, url.clone(), None).await?;
        let page: Collection<appmedia_model::OnlineMeeting> = decode(&Method::GET, &url, &answer)?;
        Ok(page.value.into_iter().next())
    }

    /// `GET /communications/calls/{id}/participants`: the full roster (every page).
    pub async fn list_participants(&self, call_id: &str) -> Result<Vec<Participant>, ClientError> {
        let mut url = self.url(&[
            "communications",
            "calls",
            checked_id(call_id)?,
            "participants",
        ])?;
        let mut participants = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = self.execute(Method::GET, url.clone(), None).await?;
            let page: Collection<Participant> = decode(&Method::GET, &url, &answer)?;
            participants.extend(page.value);
            match page.next_link {
                None => return Ok(participants),
                Some(next) => {
                    let next = url
                        .join(&next)
                        .map_err(|e| ClientError::UnexpectedResponse {
                            method: Method::GET,
                            url: url.to_string(),
                            status: answer.status.as_u16(),
                            reason: format!("bad @odata.nextLink {next:?}: {e}"),
                        })?;
                    // The bearer token must never be sent to another host.
                    if next.origin() != self.config.base_url.origin() {
                        return Err(ClientError::UnexpectedResponse {
                            method: Method::GET,
                            url: url.to_string(),
                            status: answer.status.as_u16(),
                            reason: format!("@odata.nextLink {next} leaves the Graph host"),
                        });
                    }
                    url = next;
                }
            }
        }
        Err(ClientError::UnexpectedResponse {
            method: Method::GET,
            url: url.to_string(),
            status: 200,
            reason: format!("more than {MAX_PAGES} pages of participants"),
        })
    }

    /// Checks the token's `roles` against `required` before a request is sent, when the
    /// client checks permissions and something is required.
    async fn check_token_roles(&self, required: &RequiredPermissions) -> Result<(), ClientError> {
        if !self.config.check_permissions || required.is_empty() {
            return Ok(());
        }
        let token = self.tokens.token().await?;
        let claims = unverified_payload(&token)?;
        check_token_claims(&serde_json::Value::Object(claims), required)?;
        Ok(())
    }

    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.config.base_url.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| ClientError::Transport {
                    method: Method::GET,
                    url: self.config.base_url.to_string(),
                    reason: "the base URL cannot have a path".to_owned(),
                    client_request_id: String::new(),
                })?;
            // Drops the empty segment the base URL's trailing '/' leaves.
            path.pop_if_empty();
            path.extend(segments);
        }
        Ok(url)
    }

    /// Sends one logical request: token, 401 refresh, retries, timeouts, error mapping.
    ///
    /// One `client-request-id` per logical request, kept across its retries, so the service
    /// (and a support case) can tie the retries together.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<Answer, ClientError> {
        let client_request_id = uuid::Uuid::new_v4().to_string();
        let mut attempt: u32 = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = self.tokens.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&token)
                .header("client-request-id", &client_request_id)
                .header("return-client-request-id", "true")
                .header(ACCEPT, "application/json");
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let transport_error = |e: reqwest::Error| {
                if e.is_timeout() {
                    ClientError::Timeout {
                        method: method.clone(),
                        url: url.to_string(),
                        timeout: self.config.request_timeout,
                        client_request_id: client_request_id.clone(),
                    }
                } else {
                    ClientError::Transport {
                        method: method.clone(),
                        url: url.to_string(),
                        reason: error_chain(&e),
                        client_request_id: client_request_id.clone(),
                    }
                }
            };
            let response = request.send().await.map_err(transport_error)?;
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.map_err(transport_error)?;
            if status.is_success() {
                return Ok(Answer {
                    status,
                    headers,
                    body: bytes,
                    client_request_id,
                });
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed && self.tokens.can_refresh() {
                refreshed = true;
                // The token may have been revoked or rotated before its expiry: fetch a new
                // one, once, and do not count this against the retry budget.
                tracing::debug!(%method, %url, "401: refreshing the bearer token once");
                self.tokens.invalidate(&token).await?;
                attempt -= 1;
                continue;
            }
            let error = service_error(
                &method,
                &url,
                status,
                &headers,
                &bytes,
                &client_request_id,
                attempt,
            );
            let retryable = match status {
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => true,
                StatusCode::GATEWAY_TIMEOUT => {
                    method != Method::POST || self.config.retry.retry_gateway_timeout_on_post
                }
                _ => false,
            };
            if !retryable {
                return Err(error);
            }
            let retry_after = headers
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let Some(delay) = self.config.retry.delay(attempt, retry_after) else {
                return Err(error);
            };
            tracing::info!(
                %method, %url, status = status.as_u16(), attempt, delay_ms = delay.as_millis() as u64,
                "Graph asked to back off; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

fn checked_id(call_id: &str) -> Result<&str, ClientError> {
    if call_id.is_empty() || call_id.contains('/') {
        Err(ClientError::BadCallId(call_id.to_owned()))
    } else {
        Ok(call_id)
    }
}

fn checked_participant_id(participant_id: &str) -> Result<&str, ClientError> {
    if participant_id.is_empty() || participant_id.contains('/') {
        Err(ClientError::BadParticipantId(participant_id.to_owned()))
    } else {
        Ok(participant_id)
    }
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn decode<T: DeserializeOwned>(
    method: &Method,
    url: &Url,
    answer: &Answer,
) -> Result<T, ClientError> {
    serde_json::from_slice(&answer.body).map_err(|e| ClientError::UnexpectedResponse {
        method: method.clone(),
        url: url.to_string(),
        status: answer.status.as_u16(),
        reason: e.to_string(),
    })
}

fn service_error(
    method: &Method,
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    client_request_id: &str,
    attempts: u32,
) -> ClientError {
    let header_request_id = header_string(headers, "request-id");
    match serde_json::from_slice::<GraphErrorBody>(body) {
        Ok(parsed) => {
            let request_id = parsed
                .error
                .inner_error
                .value()
                .and_then(|inner| inner.request_id.value().cloned())
                .or(header_request_id);
            ClientError::Service(Box::new(ServiceError {
                method: method.clone(),
                url: url.to_string(),
                status: status.as_u16(),
                code: parsed.error.code.clone(),
                message: parsed.error.message.clone(),
                request_id,
                client_request_id: client_request_id.to_owned(),
                attempts,
                body: Some(parsed),
            }))
        }
        Err(_) => ClientError::Service(Box::new(ServiceError {
            method: method.clone(),
            url: url.to_string(),
            status: status.as_u16(),
            code: status
                .canonical_reason()
                .unwrap_or("Unknown")
                .replace(' ', ""),
            message: String::from_utf8_lossy(body).chars().take(500).collect(),
            request_id: header_request_id,
            client_request_id: client_request_id.to_owned(),
            attempts,
            body: None,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_clouds_have_their_hosts_and_scopes() {
        let cases = [
            (
                NationalCloud::Global,
                "https://graph.microsoft.com/v1.0/",
                "https://graph.microsoft.com/.default",
            ),
            (
                NationalCloud::UsGovL4,
                "https://graph.microsoft.us/v1.0/",
                "https://graph.microsoft.us/.default",
            ),
            (
                NationalCloud::UsGovL5Dod,
                "https://dod-graph.microsoft.us/v1.0/",
                "https://dod-graph.microsoft.us/.default",
            ),
            (
                NationalCloud::China,
                "https://microsoftgraph.chinacloudapi.cn/v1.0/",
                "https://microsoftgraph.chinacloudapi.cn/.default",
            ),
        ];
        for (cloud, base, scope) in cases {
            assert_eq!(cloud.graph_base_url().as_str(), base);
            assert_eq!(cloud.graph_scope(), scope);
        }
        let china = NationalCloud::China
            .client_credentials("t1", "app", "secret")
            .unwrap();
        assert_eq!(
            china.token_url.as_str(),
            "https://login.chinacloudapi.cn/t1/oauth2/v2.0/token"
        );
        assert_eq!(
            china.scope,
            "https://microsoftgraph.chinacloudapi.cn/.default"
        );
    }

    #[test]
    fn resource_urls_are_joined_under_the_base() {
        let client = GraphClient::new(
            GraphClientConfig::for_base_url(
                Url::parse("http://127.0.0.1:9/emulator/v1.0").unwrap(),
            ),
            TokenSource::fixed("t"),
        )
        .unwrap();
        assert_eq!(
            client
                .url(&["communications", "calls", "a b"])
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9/emulator/v1.0/communications/calls/a%20b"
        );
        assert!(matches!(checked_id("a/b"), Err(ClientError::BadCallId(_))));
        assert!(matches!(checked_id(""), Err(ClientError::BadCallId(_))));
        assert!(matches!(
            checked_participant_id("p/1"),
            Err(ClientError::BadParticipantId(_))
        ));
    }

    #[test]
    fn created_call_id_falls_back_to_location() {
        let created = CreatedCall {
            call: Call::default(),
            location: Some("https://graph.microsoft.com/v1.0/communications/calls/abc".into()),
            request_id: None,
            client_request_id: "x".into(),
        };
        assert_eq!(created.call_id(), Some("abc"));
    }
}
