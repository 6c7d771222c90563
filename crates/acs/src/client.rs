//! The Call Automation REST client: every call-control request the bot SDK's ACS backend
//! makes, signed with the resource's access key (HMAC-SHA256) or carrying an Entra token.
//!
//! Every request has the pinned `api-version`, a timeout, and an `x-ms-client-request-id`
//! kept across its retries. POSTs also carry `Repeatability-Request-ID` and
//! `Repeatability-First-Sent`, ACS's idempotency keys: the service runs a request once
//! whatever the retries, so a 5xx is retried on every method (429 and 503 honouring
//! `Retry-After`, as the Graph client does). Error bodies become [`AcsError::Service`] with
//! status, code and message.

use std::time::{Duration, SystemTime};

use appmedia_signalling::auth::TokenSource;
use appmedia_signalling::client::{RetryPolicy, parse_retry_after};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HOST, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::connection::ConnectionString;
use crate::hmac::{self, AccessKey};
use crate::models::{
    AddParticipantRequest, AddParticipantResponse, AnswerCallRequest, CallConnectionProperties,
    CallParticipant, ContinuousDtmfRecognitionRequest, CreateCallRequest, ErrorResponse,
    MuteParticipantsRequest, OperationResponse, ParticipantList, PlayRequest,
    RecordingStateResponse, RedirectCallRequest, RejectCallRequest, RemoveParticipantRequest,
    SendDtmfTonesRequest, StartRecordingRequest, TransferRequest,
};

/// The Call Automation API version this crate speaks (the GA version with bidirectional audio
/// streaming); [`AcsClientConfig::api_version`] overrides it.
pub const API_VERSION: &str = "2025-05-15";
/// The scope of an Entra token for ACS.
pub const ENTRA_SCOPE: &str = "https://communication.azure.com//.default";
/// Most pages of participants followed.
const MAX_PAGES: usize = 100;

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum Credential {
    /// HMAC-SHA256 with the resource's access key.
    AccessKey(AccessKey),
    /// An Entra bearer token (scope [`ENTRA_SCOPE`]).
    Entra(TokenSource),
}

/// The client's settings.
#[derive(Clone, Debug)]
pub struct AcsClientConfig {
    /// The resource's endpoint (`https://{resource}.communication.azure.com/`).
    pub endpoint: Url,
    /// The API version sent with every request.
    pub api_version: String,
    /// Timeout of one HTTP exchange.
    pub request_timeout: Duration,
    /// Timeout of a connection.
    pub connect_timeout: Duration,
    /// Retries of throttled and failed requests.
    pub retry: RetryPolicy,
    /// A certificate authority to trust besides the system's (PEM): the emulator's.
    pub ca_pem: Option<Vec<u8>>,
}

impl AcsClientConfig {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: Url) -> Self {
        AcsClientConfig {
            endpoint,
            api_version: API_VERSION.into(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            ca_pem: None,
        }
    }
}

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
pub enum AcsError {
    /// The service answered with an error.
    #[error("{method} {url}: {status} {code}: {message}")]
    Service {
        /// The request's method.
        method: Method,
        /// Its URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// ACS's error code.
        code: String,
        /// ACS's message.
        message: String,
    },
    /// No answer in time.
    #[error("{method} {url}: no answer within {timeout:?}")]
    Timeout {
        /// The request's method.
        method: Method,
        /// Its URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The connection failed.
    #[error("{method} {url}: {reason}")]
    Transport {
        /// The request's method.
        method: Method,
        /// Its URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The answer did not read as the resource.
    #[error("{url}: unreadable answer: {reason}")]
    Decode {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An id that cannot be put in a path.
    #[error("invalid id {0:?}")]
    BadId(String),
    /// The HTTP client or a token could not be made.
    #[error("{0}")]
    Setup(String),
}

impl AcsError {
    /// The HTTP status of a service error.
    pub fn status(&self) -> Option<u16> {
        match self {
            AcsError::Service { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// ACS's error code.
    pub fn code(&self) -> Option<&str> {
        match self {
            AcsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The Call Automation client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AcsClient {
    http: reqwest::Client,
    config: AcsClientConfig,
    credential: Credential,
}

impl AcsClient {
    /// A client authenticated with a connection string's key.
    pub fn from_connection_string(cs: &ConnectionString) -> Result<Self, AcsError> {
        Self::new(
            AcsClientConfig::new(cs.endpoint.clone()),
            Credential::AccessKey(cs.access_key.clone()),
        )
    }

    /// A client for `config`, authenticated with `credential`.
    pub fn new(config: AcsClientConfig, credential: Credential) -> Result<Self, AcsError> {
        // The service does not redirect: the shared client follows no redirect off https or
        // off loopback, and a signed request is bound to its path anyway.
        let http = appmedia_signalling::http_client_trusting(
            config.request_timeout,
            config.connect_timeout,
            config.ca_pem.as_deref(),
        )
        .map_err(|e| AcsError::Setup(e.to_string()))?;
        Ok(AcsClient {
            http,
            config,
            credential,
        })
    }

    /// The client's settings.
    pub fn config(&self) -> &AcsClientConfig {
        &self.config
    }

    /// Places a call (`POST /calling/callConnections`, 201).
    pub async fn create_call(
        &self,
        request: &CreateCallRequest,
    ) -> Result<CallConnectionProperties, AcsError> {
        self.post_json("calling/callConnections", request).await
    }

    /// Answers an incoming call.
    pub async fn answer_call(
        &self,
        request: &AnswerCallRequest,
    ) -> Result<CallConnectionProperties, AcsError> {
        self.post_json("calling/callConnections:answer", request)
            .await
    }

    /// Rejects an incoming call.
    pub async fn reject_call(&self, request: &RejectCallRequest) -> Result<(), AcsError> {
        self.post_empty("calling/callConnections:reject", request)
            .await
    }

    /// Redirects an incoming call.
    pub async fn redirect_call(&self, request: &RedirectCallRequest) -> Result<(), AcsError> {
        self.post_empty("calling/callConnections:redirect", request)
            .await
    }

    /// A call connection's properties.
    pub async fn get_call(&self, id: &str) -> Result<CallConnectionProperties, AcsError> {
        let url = self.url(&format!("calling/callConnections/{}", checked(id)?))?;
        let answer = self.execute(Method::GET, url.clone(), None).await?;
        decode(&url, &answer)
    }

    /// Leaves the call (it goes on for the others): `DELETE`.
    pub async fn hang_up(&self, id: &str) -> Result<(), AcsError> {
        let url = self.url(&format!("calling/callConnections/{}", checked(id)?))?;
        self.execute(Method::DELETE, url, None).await.map(drop)
    }

    /// Ends the call for everyone.
    pub async fn terminate(&self, id: &str) -> Result<(), AcsError> {
        self.action_empty(id, ":terminate", &serde_json::json!({}))
            .await
    }

    /// Transfers the call.
    pub async fn transfer(
        &self,
        id: &str,
        request: &TransferRequest,
    ) -> Result<OperationResponse, AcsError> {
        self.action(id, ":transferToParticipant", request).await
    }

    /// Invites a participant.
    pub async fn add_participant(
        &self,
        id: &str,
        request: &AddParticipantRequest,
    ) -> Result<AddParticipantResponse, AcsError> {
        self.action(id, "/participants:add", request).await
    }

    /// Removes a participant.
    pub async fn remove_participant(
        &self,
        id: &str,
        request: &RemoveParticipantRequest,
    ) -> Result<OperationResponse, AcsError> {
        self.action(id, "/participants:remove", request).await
    }

    /// Mutes participants.
    pub async fn mute_participants(
        &self,
        id: &str,
        request: &MuteParticipantsRequest,
    ) -> Result<OperationResponse, AcsError> {
        self.action(id, "/participants:mute", request).await
    }

    /// Every participant, following `nextLink`.
    pub async fn list_participants(&self, id: &str) -> Result<Vec<CallParticipant>, AcsError> {
        let mut url = self.url(&format!(
            "calling/callConnections/{}/participants",
            checked(id)?
        ))?;
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let answer = self.execute(Method::GET, url.clone(), None).await?;
            let page: ParticipantList = decode(&url, &answer)?;
            all.extend(page.value);
            match page.next_link {
                Some(next) => {
                    url = self.endpoint_url(&next)?;
                }
                None => return Ok(all),
            }
        }
        Ok(all)
    }

    /// Plays files through the service.
    pub async fn play(&self, id: &str, request: &PlayRequest) -> Result<(), AcsError> {
        self.action_empty(id, ":play", request).await
    }

    /// Cancels every play and recognize in progress.
    pub async fn cancel_all_media_operations(&self, id: &str) -> Result<(), AcsError> {
        self.action_empty(id, ":cancelAllMediaOperations", &serde_json::json!({}))
            .await
    }

    /// Sends DTMF tones to a participant.
    pub async fn send_dtmf_tones(
        &self,
        id: &str,
        request: &SendDtmfTonesRequest,
    ) -> Result<OperationResponse, AcsError> {
        self.action(id, ":sendDtmfTones", request).await
    }

    /// Starts continuous DTMF recognition (`ContinuousDtmfRecognitionToneReceived` events).
    pub async fn start_continuous_dtmf_recognition(
        &self,
        id: &str,
        request: &ContinuousDtmfRecognitionRequest,
    ) -> Result<(), AcsError> {
        self.action_empty(id, ":startContinuousDtmfRecognition", request)
            .await
    }

    /// Stops continuous DTMF recognition.
    pub async fn stop_continuous_dtmf_recognition(
        &self,
        id: &str,
        request: &ContinuousDtmfRecognitionRequest,
    ) -> Result<(), AcsError> {
        self.action_empty(id, ":stopContinuousDtmfRecognition", request)
            .await
    }

    /// Starts audio streaming on a call whose options did not start it.
    pub async fn start_media_streaming(&self, id: &str) -> Result<(), AcsError> {
        self.action_empty(id, ":startMediaStreaming", &serde_json::json!({}))
            .await
    }

    /// Stops audio streaming.
    pub async fn stop_media_streaming(&self, id: &str) -> Result<(), AcsError> {
        self.action_empty(id, ":stopMediaStreaming", &serde_json::json!({}))
            .await
    }

    /// Starts the service's recording of a call.
    pub async fn start_recording(
        &self,
        request: &StartRecordingRequest,
    ) -> Result<RecordingStateResponse, AcsError> {
        self.post_json("calling/recordings", request).await
    }

    /// Stops a recording.
    pub async fn stop_recording(&self, recording_id: &str) -> Result<(), AcsError> {
        let url = self.url(&format!("calling/recordings/{}", checked(recording_id)?))?;
        self.execute(Method::DELETE, url, None).await.map(drop)
    }

    async fn action<B: Serialize, T: DeserializeOwned + Default>(
        &self,
        id: &str,
        suffix: &str,
        body: &B,
    ) -> Result<T, AcsError> {
        let path = format!("calling/callConnections/{}{suffix}", checked(id)?);
        let url = self.url(&path)?;
        let answer = self
            .execute(Method::POST, url.clone(), Some(to_body(body)))
            .await?;
        if answer.1.is_empty() {
            return Ok(T::default());
        }
        decode(&url, &answer)
    }

    async fn action_empty<B: Serialize>(
        &self,
        id: &str,
        suffix: &str,
        body: &B,
    ) -> Result<(), AcsError> {
        let path = format!("calling/callConnections/{}{suffix}", checked(id)?);
        let url = self.url(&path)?;
        self.execute(Method::POST, url, Some(to_body(body)))
            .await
            .map(drop)
    }

    async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, AcsError> {
        let url = self.url(path)?;
        let answer = self
            .execute(Method::POST, url.clone(), Some(to_body(body)))
            .await?;
        decode(&url, &answer)
    }

    async fn post_empty<B: Serialize>(&self, path: &str, body: &B) -> Result<(), AcsError> {
        let url = self.url(path)?;
        self.execute(Method::POST, url, Some(to_body(body)))
            .await
            .map(drop)
    }

    fn url(&self, path: &str) -> Result<Url, AcsError> {
        let mut url = self
            .config
            .endpoint
            .join(path)
            .map_err(|e| AcsError::Setup(format!("{path}: {e}")))?;
        url.query_pairs_mut()
            .append_pair("api-version", &self.config.api_version);
        Ok(url)
    }

    /// A `nextLink`: absolute on the endpoint's host, or relative to it.
    fn endpoint_url(&self, link: &str) -> Result<Url, AcsError> {
        let url = self
            .config
            .endpoint
            .join(link)
            .map_err(|e| AcsError::Setup(format!("nextLink {link}: {e}")))?;
        if url.origin() != self.config.endpoint.origin() {
            return Err(AcsError::Setup(format!(
                "nextLink {link} leaves the endpoint"
            )));
        }
        Ok(url)
    }

    /// One logical request: authentication, idempotency keys, retries, error mapping.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, bytes::Bytes), AcsError> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let first_sent = httpdate::fmt_http_date(SystemTime::now());
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let payload = body.as_deref().unwrap_or_default();
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header("x-ms-client-request-id", &request_id)
                .header(ACCEPT, "application/json");
            if method == Method::POST {
                request = request
                    .header("Repeatability-Request-ID", &request_id)
                    .header("Repeatability-First-Sent", &first_sent);
            }
            match &self.credential {
                Credential::AccessKey(key) => {
                    let signed = hmac::sign(key, method.as_str(), &url, payload, SystemTime::now());
                    request = request
                        .header("x-ms-date", signed.date)
                        .header("x-ms-content-sha256", signed.content_hash)
                        .header(HOST, signed.host)
                        .header("Authorization", signed.authorization);
                }
                Credential::Entra(tokens) => {
                    let token = tokens
                        .token()
                        .await
                        .map_err(|e| AcsError::Setup(format!("Entra token: {e}")))?;
                    request = request.bearer_auth(token);
                }
            }
            if body.is_some() {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(payload.to_vec());
            }
            let transport = |e: reqwest::Error| {
                if e.is_timeout() {
                    AcsError::Timeout {
                        method: method.clone(),
                        url: url.to_string(),
                        timeout: self.config.request_timeout,
                    }
                } else {
                    AcsError::Transport {
                        method: method.clone(),
                        url: url.to_string(),
                        reason: error_chain(&e),
                    }
                }
            };
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            let bytes = response.bytes().await.map_err(transport)?;
            if status.is_success() {
                return Ok((status, bytes));
            }
            let error = service_error(&method, &url, status, &bytes);
            // Repeatability makes every method safe to retry on the server's failures.
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            let delay = retryable
                .then(|| self.config.retry.delay(attempt, retry_after))
                .flatten();
            let Some(delay) = delay else {
                return Err(error);
            };
            tracing::info!(%method, %url, status = status.as_u16(), attempt,
                delay_ms = delay.as_millis() as u64, "ACS asked to back off; retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

fn to_body<B: Serialize>(body: &B) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

fn checked(id: &str) -> Result<&str, AcsError> {
    if id.is_empty() || id.contains(['/', '?', '#', ':']) || id.len() > 512 {
        Err(AcsError::BadId(id.chars().take(80).collect()))
    } else {
        Ok(id)
    }
}

fn decode<T: DeserializeOwned>(
    url: &Url,
    answer: &(StatusCode, bytes::Bytes),
) -> Result<T, AcsError> {
    serde_json::from_slice(&answer.1).map_err(|e| AcsError::Decode {
        url: url.to_string(),
        reason: e.to_string(),
    })
}

fn service_error(method: &Method, url: &Url, status: StatusCode, body: &[u8]) -> AcsError {
    let (code, message) = match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(e) => (e.error.code, e.error.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("Error").to_owned(),
            String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        ),
    };
    AcsError::Service {
        method: method.clone(),
        url: url.to_string(),
        status: status.as_u16(),
        code,
        message,
    }
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
