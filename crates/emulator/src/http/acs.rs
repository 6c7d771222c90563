//! ACS Call Automation's REST API, served on the emulator's HTTPS listener: every request's
//! HMAC-SHA256 is checked as ACS checks it (`appmedia_acs::hmac::verify`: 401 `Denied` with
//! ACS's error body otherwise) and needs an `api-version` (any well-formed one); then
//!
//! * `POST /calling/callConnections` (201), `…:answer` (200), `…:reject`, `…:redirect` (204);
//! * `GET|DELETE /calling/callConnections/{id}`, `POST …/{id}:terminate`,
//!   `…:transferToParticipant`, `…:play`, `…:cancelAllMediaOperations`, `…:sendDtmfTones`,
//!   `…:startContinuousDtmfRecognition`, `…:stopContinuousDtmfRecognition`,
//!   `…:startMediaStreaming`, `…:stopMediaStreaming`;
//! * `GET …/{id}/participants`, `POST …/{id}/participants:add|remove|mute`;
//! * `POST /calling/recordings`, `GET|DELETE /calling/recordings/{id}`.
//!
//! Unknown call: 404 with ACS's error body. The events issuer's OpenID configuration and keys
//! are served beside (`/.well-known/openid-configuration`, `/keys`).

use std::sync::Arc;
use std::time::SystemTime;

use appmedia_acs::hmac;
use appmedia_acs::models::{
    AddParticipantRequest, AnswerCallRequest, ContinuousDtmfRecognitionRequest, CreateCallRequest,
    MuteParticipantsRequest, ParticipantList, PlayRequest, RecordingStateResponse,
    RedirectCallRequest, RejectCallRequest, RemoveParticipantRequest, SendDtmfTonesRequest,
    StartRecordingRequest, TransferRequest,
};
use appmedia_audio_io::clip::AudioClip;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::acs::AcsApiError;
use crate::calls::Shared;
use crate::calls::acs::driver::AcsCommand;
use crate::calls::acs::{check_url, create_call, incoming, unknown_call};

/// Largest WAV a `play` fetches.
const MAX_PLAY_FILE: usize = 32 << 20;

/// The ACS routes (everything under `/calling/`).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/calling/{*rest}", axum::routing::any(handle))
        .with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let body = axum::body::to_bytes(body, shared.config.max_body_bytes)
            .await
            .map_err(|_| {
                AcsApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "RequestEntityTooLarge",
                    format!(
                        "the body is larger than {} bytes",
                        shared.config.max_body_bytes
                    ),
                )
            })?;
        authenticate(&shared, &method, &uri, &headers, &body)?;
        api_version(&uri)?;
        route(&shared, &method, uri.path(), &body).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Checks the request's HMAC as ACS does.
fn authenticate(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), AcsApiError> {
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(uri.path());
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    hmac::verify(
        &shared.acs.resource.access_key,
        method.as_str(),
        path_and_query,
        header,
        body,
        SystemTime::now(),
    )
    .map_err(|e| {
        tracing::info!(error = %e, "ACS request refused: HMAC");
        AcsApiError::denied(e)
    })
}

/// `api-version` is required and must look like one (`2025-05-15`, `2024-09-01-preview`).
fn api_version(uri: &Uri) -> Result<String, AcsApiError> {
    let version = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == "api-version")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| {
            AcsApiError::new(
                StatusCode::BAD_REQUEST,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        })?;
    let date = version.strip_suffix("-preview").unwrap_or(&version);
    let well_formed = date.len() == 10
        && date.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            _ => c.is_ascii_digit(),
        });
    if !well_formed {
        return Err(AcsApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!("The api-version {version:?} is not a valid version (YYYY-MM-DD[-preview])."),
        ));
    }
    Ok(version)
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, AcsApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de)
        .map_err(|e| AcsApiError::bad_request(format!("the body is not the expected JSON: {e}")))
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    (status, axum::Json(value)).into_response()
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    body: &[u8],
) -> Result<Response, AcsApiError> {
    let rest = path.trim_start_matches("/calling/");
    let parts: Vec<&str> = rest.split('/').collect();
    let acs = &shared.acs;
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["callConnections"]) => {
            let request: CreateCallRequest = parse(body)?;
            let properties = create_call(shared, request)?;
            Ok(json(StatusCode::CREATED, &properties))
        }
        ("POST", ["callConnections:answer"]) => {
            let request: AnswerCallRequest = parse(body)?;
            Ok(json(StatusCode::OK, &incoming::answer(shared, request)?))
        }
        ("POST", ["callConnections:reject"]) => {
            incoming::reject(shared, parse::<RejectCallRequest>(body)?)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("POST", ["callConnections:redirect"]) => {
            incoming::redirect(shared, parse::<RedirectCallRequest>(body)?)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("GET", ["callConnections", id]) => acs
            .properties(id)
            .map(|p| json(StatusCode::OK, &p))
            .ok_or_else(|| unknown_call(id)),
        ("DELETE", ["callConnections", id]) => {
            acs.ask(id, |reply| AcsCommand::HangUp {
                terminate: false,
                reply,
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ("GET", ["callConnections", id, "participants"]) => {
            let value = acs.participants(id).ok_or_else(|| unknown_call(id))?;
            Ok(json(
                StatusCode::OK,
                &ParticipantList {
                    value,
                    next_link: None,
                },
            ))
        }
        ("GET", ["callConnections", id, "participants", raw]) => {
            let raw = percent_decode(raw);
            let list = acs.participants(id).ok_or_else(|| unknown_call(id))?;
            list.into_iter()
                .find(|p| p.identifier.raw_id() == raw)
                .map(|p| json(StatusCode::OK, &p))
                .ok_or_else(|| {
                    AcsApiError::not_found(format!("participant {raw} is not in the call"))
                })
        }
        ("POST", ["callConnections", id, action]) => {
            participants_action(shared, id, action, body).await
        }
        ("POST", ["callConnections", id_action]) => {
            let (id, action) = id_action.split_once(':').ok_or_else(|| {
                AcsApiError::not_found(format!("no such operation: POST /calling/{rest}"))
            })?;
            call_action(shared, id, action, body).await
        }
        ("POST", ["recordings"]) => {
            let request: StartRecordingRequest = parse(body)?;
            let server_call_id =
                request.call_locator.server_call_id.clone().ok_or_else(|| {
                    AcsApiError::bad_request("callLocator.serverCallId: required")
                })?;
            if let Some(uri) = &request.recording_state_callback_uri {
                check_url(uri, "recordingStateCallbackUri", &["https", "http"])?;
            }
            let call_id = acs
                .call_ids()
                .into_iter()
                .find(|id| {
                    acs.properties(id)
                        .and_then(|p| p.server_call_id)
                        .is_some_and(|s| s == server_call_id)
                })
                .ok_or_else(|| {
                    AcsApiError::not_found(format!("no call with serverCallId {server_call_id}"))
                })?;
            let recording_id = uuid::Uuid::new_v4().simple().to_string();
            let callback = request.recording_state_callback_uri.clone();
            let rid = recording_id.clone();
            acs.ask(&call_id, |reply| AcsCommand::Recording {
                recording_id: rid,
                start: true,
                callback_uri: callback,
                reply,
            })
            .await?;
            acs.add_recording(&recording_id, &call_id);
            Ok(json(
                StatusCode::OK,
                &RecordingStateResponse {
                    recording_id,
                    recording_state: "active".into(),
                },
            ))
        }
        ("GET", ["recordings", id]) => {
            acs.recording_call(id)
                .ok_or_else(|| AcsApiError::not_found(format!("recording {id} not found")))?;
            Ok(json(
                StatusCode::OK,
                &RecordingStateResponse {
                    recording_id: (*id).to_owned(),
                    recording_state: "active".into(),
                },
            ))
        }
        ("DELETE", ["recordings", id]) => {
            let call_id = acs
                .recording_call(id)
                .ok_or_else(|| AcsApiError::not_found(format!("recording {id} not found")))?;
            let rid = (*id).to_owned();
            acs.ask(&call_id, |reply| AcsCommand::Recording {
                recording_id: rid,
                start: false,
                callback_uri: None,
                reply,
            })
            .await?;
            acs.remove_recording(id);
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(AcsApiError::not_found(format!(
            "no such operation: {method} /calling/{rest}"
        ))),
    }
}

async fn participants_action(
    shared: &Arc<Shared>,
    id: &str,
    action: &str,
    body: &[u8],
) -> Result<Response, AcsApiError> {
    let acs = &shared.acs;
    match action {
        "participants:add" => {
            let request: AddParticipantRequest = parse(body)?;
            let answer = acs
                .ask(id, |reply| AcsCommand::Add { request, reply })
                .await?;
            Ok(json(StatusCode::ACCEPTED, &answer))
        }
        "participants:remove" => {
            let request: RemoveParticipantRequest = parse(body)?;
            let answer = acs
                .ask(id, |reply| AcsCommand::Remove { request, reply })
                .await?;
            Ok(json(StatusCode::ACCEPTED, &answer))
        }
        "participants:mute" => {
            let request: MuteParticipantsRequest = parse(body)?;
            let answer = acs
                .ask(id, |reply| AcsCommand::Mute { request, reply })
                .await?;
            Ok(json(StatusCode::OK, &answer))
        }
        other => Err(AcsApiError::not_found(format!(
            "no such operation: POST /calling/callConnections/{id}/{other}"
        ))),
    }
}

async fn call_action(
    shared: &Arc<Shared>,
    id: &str,
    action: &str,
    body: &[u8],
) -> Result<Response, AcsApiError> {
    let acs = &shared.acs;
    // An unknown call is 404 before its body is looked at.
    acs.properties(id).ok_or_else(|| unknown_call(id))?;
    let accepted = || StatusCode::ACCEPTED.into_response();
    let context_of = |body: &[u8]| -> Option<String> {
        serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("operationContext")?.as_str().map(str::to_owned))
    };
    match action {
        "terminate" => {
            acs.ask(id, |reply| AcsCommand::HangUp {
                terminate: true,
                reply,
            })
            .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        "transferToParticipant" => {
            let request: TransferRequest = parse(body)?;
            let answer = acs
                .ask(id, |reply| AcsCommand::Transfer { request, reply })
                .await?;
            Ok(json(StatusCode::ACCEPTED, &answer))
        }
        "play" => {
            let request: PlayRequest = parse(body)?;
            if request.play_sources.is_empty() {
                return Err(AcsApiError::bad_request(
                    "playSources: at least one is required",
                ));
            }
            let clips = fetch_clips(&request).await;
            let looped = request.play_options.as_ref().is_some_and(|o| o.looped);
            let context = request.operation_context.clone();
            acs.ask(id, |reply| AcsCommand::Play {
                clips,
                looped,
                context,
                reply,
            })
            .await?;
            Ok(accepted())
        }
        "cancelAllMediaOperations" => {
            acs.ask(id, |reply| AcsCommand::CancelMedia { reply })
                .await?;
            Ok(accepted())
        }
        "sendDtmfTones" => {
            let request: SendDtmfTonesRequest = parse(body)?;
            let answer = acs
                .ask(id, |reply| AcsCommand::SendDtmf { request, reply })
                .await?;
            Ok(json(StatusCode::ACCEPTED, &answer))
        }
        "startContinuousDtmfRecognition" | "stopContinuousDtmfRecognition" => {
            let request: ContinuousDtmfRecognitionRequest = parse(body)?;
            let start = action.starts_with("start");
            acs.ask(id, |reply| AcsCommand::DtmfRecognition {
                start,
                request,
                reply,
            })
            .await?;
            Ok(StatusCode::OK.into_response())
        }
        "startMediaStreaming" | "stopMediaStreaming" => {
            let start = action.starts_with("start");
            let context = context_of(body);
            acs.ask(id, |reply| AcsCommand::Streaming {
                start,
                context,
                reply,
            })
            .await?;
            Ok(accepted())
        }
        other => Err(AcsApiError::not_found(format!(
            "no such operation: POST /calling/callConnections/{id}:{other}"
        ))),
    }
}

/// The play sources' files: `file:` paths, or http(s) URLs on loopback (the bot's own
/// server); anything else, or a file that is not audio the emulator reads, is an `Err` the
/// call reports as `PlayFailed`.
async fn fetch_clips(request: &PlayRequest) -> Result<Vec<AudioClip>, String> {
    let mut clips = Vec::with_capacity(request.play_sources.len());
    for (i, source) in request.play_sources.iter().enumerate() {
        if !source.kind.eq_ignore_ascii_case("file") {
            return Err(format!(
                "playSources[{i}].kind: {:?} (the emulator plays files only)",
                source.kind
            ));
        }
        let uri = source
            .file
            .as_ref()
            .map(|f| f.uri.clone())
            .ok_or_else(|| format!("playSources[{i}].file.uri: required"))?;
        let url = url::Url::parse(&uri).map_err(|e| format!("{uri}: {e}"))?;
        let clip = match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| format!("{uri}: not a local file path"))?;
                tokio::task::spawn_blocking(move || AudioClip::open(&path))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("{uri}: {e}"))?
            }
            "http" | "https" => {
                check_url(&uri, "file.uri", &["http", "https"]).map_err(|e| e.message)?;
                let loopback = match url.host() {
                    Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                    Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                    Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                    None => false,
                };
                if !loopback {
                    return Err(format!(
                        "{uri}: the emulator fetches files from loopback hosts only"
                    ));
                }
                let bytes = fetch(&uri).await?;
                AudioClip::from_wav_bytes(&bytes, url.path()).map_err(|e| format!("{uri}: {e}"))?
            }
            other => {
                return Err(format!(
                    "{uri}: scheme {other:?} is not file, http or https"
                ));
            }
        };
        clips.push(clip);
    }
    Ok(clips)
}

async fn fetch(uri: &str) -> Result<Vec<u8>, String> {
    let client = appmedia_signalling::http_client(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(10),
    )
    .map_err(|e| e.to_string())?;
    let response = client
        .get(uri)
        .send()
        .await
        .map_err(|e| format!("{uri}: {e}"))?;
    if !response.status().is_success() {
        return Err(format!("{uri}: HTTP {}", response.status()));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_PLAY_FILE as u64)
    {
        return Err(format!("{uri}: larger than {MAX_PLAY_FILE} bytes"));
    }
    let bytes = response.bytes().await.map_err(|e| format!("{uri}: {e}"))?;
    if bytes.len() > MAX_PLAY_FILE {
        return Err(format!("{uri}: larger than {MAX_PLAY_FILE} bytes"));
    }
    Ok(bytes.to_vec())
}

/// `%XX` decoding of a path segment (`+` stays `+`, as in raw ids of phone numbers).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
