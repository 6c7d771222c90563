//! ACS Call Automation against the emulator, end to end on loopback: the crate's own
//! `AcsClient` trusting the emulator's per-run CA, a test callback server taking the
//! CloudEvents and Event Grid deliveries, and a test WebSocket server in the bot's place on
//! the audio stream. The parties are `fixtures/acs-parties.toml`'s; audio is checked by tone
//! power (Goertzel) on what the socket carries and on the emulator's WAV recordings.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_acs::events::{Delivery, Event, EventType, parse_batch, parse_delivery};
use appmedia_acs::hmac::AccessKey;
use appmedia_acs::models::{
    AnswerCallRequest, AudioChannelType, AudioFormat, CallConnectionState,
    ContinuousDtmfRecognitionRequest, CreateCallRequest, MediaStreamingOptions, PhoneNumber,
    RejectCallRequest,
};
use appmedia_acs::streaming::{Message as StreamMessage, Received, StreamReader};
use appmedia_acs::{AcsClient, AcsClientConfig, ConnectionString, Credential, Identifier};
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_testkit::audio::{hears, read_wav, tone_power};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const PHONE: &str = "+15550001001";
const CALLER: &str = "+15550001002";
const DECLINER: &str = "+15550001003";

fn media_samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../media-samples")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("acs-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn start(recordings: Option<&Path>) -> Emulator {
    let directory = Directory::from_toml_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/acs-parties.toml"),
    )
    .unwrap();
    Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: media_samples(),
        recordings_dir: recordings.map(Path::to_path_buf),
        incoming_answer_timeout: Duration::from_secs(5),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap()
}

fn client(emulator: &Emulator) -> AcsClient {
    let acs = emulator.acs();
    let cs = ConnectionString::parse(&acs.connection_string).unwrap();
    let mut config = AcsClientConfig::new(cs.endpoint.clone());
    config.ca_pem = Some(std::fs::read(&acs.ca_cert).unwrap());
    AcsClient::new(config, Credential::AccessKey(cs.access_key)).unwrap()
}

/// The test's web server: `/events` takes CloudEvents, `/eventgrid` Event Grid deliveries
/// (answering validation with the code, or with `wrong_code` set, a wrong one).
struct Callbacks {
    base: String,
    events: mpsc::UnboundedReceiver<Event>,
    incoming: mpsc::UnboundedReceiver<(String, Delivery)>,
    unauthenticated: Arc<Mutex<usize>>,
    /// The bearer tokens of the CloudEvents posts.
    tokens: Arc<Mutex<Vec<String>>>,
}

async fn callbacks(wrong_code: bool) -> Callbacks {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (incoming_tx, incoming) = mpsc::unbounded_channel();
    let unauthenticated = Arc::new(Mutex::new(0));
    let no_token = unauthenticated.clone();
    let no_token_grid = unauthenticated.clone();
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let seen_tokens = tokens.clone();
    let app = axum::Router::new()
        .route(
            "/events",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let events_tx = events_tx.clone();
                let no_token = no_token.clone();
                let seen_tokens = seen_tokens.clone();
                async move {
                    if !bearer(&headers) {
                        *no_token.lock().unwrap() += 1;
                    } else if let Some(token) = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                    {
                        seen_tokens.lock().unwrap().push(token.to_owned());
                    }
                    let (events, refused) = parse_batch(&body).expect("a CloudEvents array");
                    assert!(body.starts_with(b"["), "CloudEvents come as a JSON array");
                    assert!(refused.is_empty(), "{refused:?}");
                    for event in events {
                        let _ = events_tx.send(event);
                    }
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/eventgrid",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let incoming_tx = incoming_tx.clone();
                let no_token = no_token_grid.clone();
                async move {
                    if !bearer(&headers) {
                        *no_token.lock().unwrap() += 1;
                    }
                    let kind = headers
                        .get("aeg-event-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let (delivery, _) = parse_delivery(&body).expect("an Event Grid delivery");
                    let answer = match &delivery {
                        Delivery::Validation { code } if wrong_code => {
                            json!({"validationResponse": format!("not-{code}")})
                        }
                        Delivery::Validation { code } => json!({"validationResponse": code}),
                        Delivery::Incoming(_) => json!({}),
                    };
                    let _ = incoming_tx.send((kind, delivery));
                    axum::Json(answer)
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Callbacks {
        base,
        events,
        incoming,
        unauthenticated,
        tokens,
    }
}

/// Checks an event token as a bot does: the keys from the emulator's OpenID configuration
/// (over HTTPS, trusting the CA), RS256, the ACS issuer and the resource as audience.
async fn verify_event_token(emulator: &Emulator, token: &str) {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    appmedia_signalling::install_crypto_provider();
    let acs = emulator.acs();
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&acs.ca_cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let openid: Value = http
        .get(&acs.events_openid_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openid["issuer"], acs.events_issuer);
    let jwks_url = url::Url::parse(&acs.endpoint)
        .unwrap()
        .join(openid["jwks_uri"].as_str().unwrap())
        .unwrap();
    let jwks: Value = http
        .get(jwks_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&acs.events_issuer]);
    validation.set_audience(&[&acs.events_audience]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
        .expect("the event token verifies against the published keys");
    let mut other = Validation::new(Algorithm::RS256);
    other.set_audience(&["another-resource"]);
    assert!(
        jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(&jwk).unwrap(), &other)
            .is_err(),
        "the audience is checked"
    );
}

fn bearer(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer ") && v.split('.').count() == 3)
}

/// The next event of `kind`, the ones before it returned too.
async fn event_of(rx: &mut mpsc::UnboundedReceiver<Event>, kind: EventType) -> (Event, Vec<Event>) {
    let mut before = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind:?} within 15 s; got {before:#?}"))
            .expect("callback server alive");
        if event.event_type == kind {
            return (event, before);
        }
        before.push(event);
    }
}

/// The bot's audio socket: accepts one connection; what arrives comes out of `received`,
/// what is sent into `send` goes to the emulator.
struct BotSocket {
    url: String,
    received: mpsc::UnboundedReceiver<WsMessage>,
    send: mpsc::UnboundedSender<WsMessage>,
}

async fn bot_socket() -> BotSocket {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/media", listener.local_addr().unwrap());
    let (received_tx, received) = mpsc::unbounded_channel();
    let (send, mut to_send) = mpsc::unbounded_channel::<WsMessage>();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let socket = tokio_tungstenite::accept_async_with_config(tcp, Some(config))
            .await
            .unwrap();
        let (mut tx, mut rx) = socket.split();
        loop {
            tokio::select! {
                message = rx.next() => match message {
                    Some(Ok(m)) => { let _ = received_tx.send(m); }
                    _ => return,
                },
                m = to_send.recv() => match m {
                    Some(m) => {
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                    // The test dropped its end: the bot goes away.
                    None => {
                        let _ = tx.close().await;
                        return;
                    }
                },
            }
        }
    });
    BotSocket {
        url,
        received,
        send,
    }
}

/// Reads the socket's messages as the bot does, until `n` audio frames came; returns the
/// frames' samples (f32) and every non-audio message read.
async fn read_audio(
    socket: &mut BotSocket,
    reader: &mut StreamReader,
    n: usize,
) -> (Vec<f32>, Vec<Received>) {
    let mut samples = Vec::new();
    let mut other = Vec::new();
    let mut frames = 0;
    while frames < n {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.received.recv())
            .await
            .expect("audio keeps coming")
            .expect("socket open");
        let WsMessage::Text(text) = message else {
            continue;
        };
        match reader
            .read(text.as_str())
            .expect("the emulator's messages read")
        {
            Received::Audio(frame) => {
                samples.extend(frame.samples().iter().map(|&s| f32::from(s) / 32768.0));
                frames += 1;
            }
            read => other.push(read),
        }
    }
    (samples, other)
}

fn streaming(url: &str) -> MediaStreamingOptions {
    MediaStreamingOptions::bidirectional(url, AudioChannelType::Mixed, AudioFormat::Pcm16KMono)
}

fn create(
    emulator: &Emulator,
    callbacks: &Callbacks,
    target: Identifier,
    media: Option<MediaStreamingOptions>,
) -> CreateCallRequest {
    CreateCallRequest {
        targets: vec![target],
        source_caller_id_number: Some(PhoneNumber {
            value: emulator.acs().phone_number.clone(),
        }),
        source_display_name: None,
        teams_app_source: None,
        callback_uri: format!("{}/events", callbacks.base),
        operation_context: Some("test".into()),
        media_streaming_options: media,
    }
}

fn tone_frame(freq: f32, k: usize) -> Vec<i16> {
    (0..320)
        .map(|i| {
            let t = (k * 320 + i) as f32 / 16_000.0;
            (0.4 * (std::f32::consts::TAU * freq * t).sin() * 32767.0) as i16
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_the_right_hmac_or_api_version_is_refused_as_acs_does() {
    let emulator = start(None).await;
    let acs = emulator.acs().clone();
    assert!(
        acs.connection_string
            .starts_with("endpoint=https://127.0.0.1:")
    );
    assert!(acs.ca_cert.exists());
    let cs = ConnectionString::parse(&acs.connection_string).unwrap();

    // The crate's client with another key: 401 and ACS's error body.
    let mut config = AcsClientConfig::new(cs.endpoint.clone());
    config.ca_pem = Some(std::fs::read(&acs.ca_cert).unwrap());
    let wrong = AcsClient::new(
        config,
        Credential::AccessKey(AccessKey::from_bytes(b"not the key".to_vec())),
    )
    .unwrap();
    let err = wrong.get_call("anything").await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(401), Some("Denied")),
        "{err}"
    );

    // No Authorization at all, with a plain HTTPS client trusting the CA.
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&acs.ca_cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap();
    let url = format!(
        "{}calling/callConnections/x?api-version=2025-05-15",
        acs.endpoint
    );
    let response = http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Denied");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Authorization"),
        "{body}"
    );

    // Signed right but without api-version: 400; with a malformed one: 400.
    for (query, code) in [
        ("", "MissingApiVersionParameter"),
        ("?api-version=latest", "InvalidApiVersionParameter"),
    ] {
        let url =
            url::Url::parse(&format!("{}calling/callConnections/x{query}", acs.endpoint)).unwrap();
        let signed = appmedia_acs::hmac::sign(
            &cs.access_key,
            "GET",
            &url,
            b"",
            std::time::SystemTime::now(),
        );
        let response = http
            .get(url.as_str())
            .header("x-ms-date", signed.date)
            .header("x-ms-content-sha256", signed.content_hash)
            .header("authorization", signed.authorization)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code);
    }

    // The right key: an unknown call is 404 with ACS's body; the PSTN rule is a 400.
    let good = client(&emulator);
    let err = good.get_call("no-such-call").await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some("NotFound")),
        "{err}"
    );
    let err = good.hang_up("no-such-call").await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let callbacks = callbacks(false).await;
    let mut no_caller_id = create(&emulator, &callbacks, Identifier::phone(PHONE), None);
    no_caller_id.source_caller_id_number = None;
    let err = good.create_call(&no_caller_id).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.to_string().contains("sourceCallerIdNumber"), "{err}");
    let mut remote_callback = create(&emulator, &callbacks, Identifier::phone(PHONE), None);
    remote_callback.callback_uri = "http://example.com/events".into();
    assert_eq!(
        good.create_call(&remote_callback)
            .await
            .unwrap_err()
            .status(),
        Some(400)
    );
    let remote_socket = create(
        &emulator,
        &callbacks,
        Identifier::phone(PHONE),
        Some(streaming("ws://example.com/media")),
    );
    assert_eq!(
        good.create_call(&remote_socket).await.unwrap_err().status(),
        Some(400)
    );
    let unknown = create(
        &emulator,
        &callbacks,
        Identifier::phone("+19999999999"),
        None,
    );
    assert_eq!(
        good.create_call(&unknown).await.unwrap_err().status(),
        Some(400)
    );
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_call_streams_the_phone_to_the_bot_and_records_what_the_bot_says() {
    let recordings = temp_dir("pstn");
    let emulator = start(Some(&recordings)).await;
    let client = client(&emulator);
    let mut callbacks = callbacks(false).await;
    let mut socket = bot_socket().await;

    let call = client
        .create_call(&create(
            &emulator,
            &callbacks,
            Identifier::phone(PHONE),
            Some(streaming(&socket.url)),
        ))
        .await
        .unwrap();
    assert_eq!(
        call.call_connection_state,
        Some(CallConnectionState::Connecting)
    );
    let id = call.call_connection_id.clone();

    let (connected, _) = event_of(&mut callbacks.events, EventType::CallConnected).await;
    assert_eq!(connected.call_connection_id, id);
    assert_eq!(connected.operation_context.as_deref(), Some("test"));
    let (roster, _) = event_of(&mut callbacks.events, EventType::ParticipantsUpdated).await;
    let (participants, first_sequence) = roster.participants().unwrap();
    assert!(
        participants
            .iter()
            .any(|p| p.identifier == Identifier::phone(PHONE)),
        "{participants:?}"
    );
    event_of(&mut callbacks.events, EventType::MediaStreamingStarted).await;
    assert_eq!(
        client.get_call(&id).await.unwrap().call_connection_state,
        Some(CallConnectionState::Connected)
    );
    let listed = client.list_participants(&id).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p.identifier == Identifier::phone(PHONE))
    );

    // AudioMetadata first, then 20 ms frames of what the phone says: its 440 Hz tone.
    let mut reader = StreamReader::bot();
    let first = socket.received.recv().await.unwrap();
    let WsMessage::Text(text) = first else {
        panic!("text first")
    };
    let Received::Metadata(metadata) = reader.read(text.as_str()).unwrap() else {
        panic!("AudioMetadata first: {text}")
    };
    assert_eq!(
        (metadata.sample_rate, metadata.channels, metadata.length),
        (16_000, 1, 640)
    );
    let (heard, _) = read_audio(&mut socket, &mut reader, 50).await;
    assert!(
        hears(&heard, 16_000, 440.0),
        "the phone's tone reaches the bot"
    );
    assert!(
        tone_power(&heard, 16_000.0, 440.0) > 100.0 * tone_power(&heard, 16_000.0, 1000.0),
        "440 Hz, not 1 kHz"
    );

    // The bot speaks a 1 kHz tone for 2 s, paced as a bot does.
    let mut interval = tokio::time::interval(Duration::from_millis(20));
    for k in 0..100 {
        interval.tick().await;
        let text = StreamMessage::outbound_audio(&tone_frame(1000.0, k)).to_json();
        socket.send.send(WsMessage::text(text)).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stats = emulator.acs_stream_stats(&id).unwrap();
    assert_eq!(stats.bot_frames_received, 100, "{stats:?}");
    assert!(stats.bot_frames_played >= 95, "{stats:?}");
    assert_eq!(stats.bot_frames_dropped_full, 0, "{stats:?}");
    assert!(stats.frames_sent >= 50, "{stats:?}");

    client.hang_up(&id).await.unwrap();
    let (disconnected, before) = event_of(&mut callbacks.events, EventType::CallDisconnected).await;
    assert_eq!(disconnected.result.as_ref().map(|r| r.code), Some(200));
    // Roster sequence numbers only go up.
    let sequences: Vec<u64> = before
        .iter()
        .filter_map(|e| e.participants().map(|(_, s)| s))
        .collect();
    assert!(
        sequences.iter().all(|&s| s > first_sequence),
        "{sequences:?}"
    );
    assert!(
        client.get_call(&id).await.is_err(),
        "gone after the hang-up"
    );
    assert_eq!(
        *callbacks.unauthenticated.lock().unwrap(),
        0,
        "every event carries a JWT"
    );
    let token = callbacks.tokens.lock().unwrap()[0].clone();
    verify_event_token(&emulator, &token).await;

    // `{id}-speaker-1.wav` is what the bot sent: the 1 kHz tone.
    let path = appmedia_emulator::bot_recording_path(&recordings, &id);
    let mut found = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if path.exists() {
            let (rate, samples) = read_wav(&path);
            if samples.len() as u32 >= rate && hears(&samples, rate, 1000.0) {
                found = true;
                break;
            }
        }
    }
    assert!(found, "{} holds the bot's 1 kHz tone", path.display());
    let mixed = appmedia_emulator::mixed_recording_path(&recordings, &id);
    assert!(mixed.exists(), "{}", mixed.display());
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&recordings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_fails_with_the_reason() {
    let emulator = start(None).await;
    let client = client(&emulator);
    let mut callbacks = callbacks(false).await;
    let call = client
        .create_call(&create(
            &emulator,
            &callbacks,
            Identifier::phone(DECLINER),
            None,
        ))
        .await
        .unwrap();
    let (failed, _) = event_of(&mut callbacks.events, EventType::CreateCallFailed).await;
    assert_eq!(failed.call_connection_id, call.call_connection_id);
    assert_eq!(failed.result.as_ref().map(|r| r.code), Some(603));
    event_of(&mut callbacks.events, EventType::CallDisconnected).await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_comes_through_event_grid_and_is_answered_or_rejected() {
    let emulator = start(None).await;
    let client = client(&emulator);
    let http = reqwest::Client::new();
    let control = emulator.control_url();

    // An endpoint that fails the validation handshake is refused.
    let bad = callbacks(true).await;
    let response = http
        .post(format!("{control}/acs/event-subscriptions"))
        .json(&json!({"endpoint": format!("{}/eventgrid", bad.base)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // Without a subscription, nobody can be rung.
    let response = http
        .post(format!("{control}/incoming-calls"))
        .json(&json!({"from": CALLER, "to": emulator.acs().phone_number}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);

    let mut callbacks = callbacks(false).await;
    let response = http
        .post(format!("{control}/acs/event-subscriptions"))
        .json(&json!({"endpoint": format!("{}/eventgrid", callbacks.base)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (kind, validation) = callbacks.incoming.recv().await.unwrap();
    assert_eq!(kind, "SubscriptionValidation");
    assert!(matches!(validation, Delivery::Validation { .. }));

    let mut ring = async || {
        let response = http
            .post(format!("{control}/incoming-calls"))
            .json(&json!({"from": CALLER, "to": emulator.acs().phone_number}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        let server_call_id = body["serverCallId"].as_str().unwrap().to_owned();
        let (kind, delivery) = callbacks.incoming.recv().await.unwrap();
        assert_eq!(kind, "Notification");
        let Delivery::Incoming(calls) = delivery else {
            panic!("IncomingCall")
        };
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].from, Identifier::phone(CALLER));
        assert_eq!(
            calls[0].to,
            Identifier::phone(emulator.acs().phone_number.clone())
        );
        assert!(calls[0].incoming_call_context.len() >= 40, "unguessable");
        assert_eq!(calls[0].server_call_id, server_call_id);
        (calls[0].incoming_call_context.clone(), server_call_id)
    };

    // Answered with streaming: CallConnected at the answer's callback, the caller's audio
    // on the socket; a second answer finds nothing.
    let (context, _) = ring().await;
    let mut socket = bot_socket().await;
    let answer = AnswerCallRequest {
        incoming_call_context: context.clone(),
        callback_uri: format!("{}/events", callbacks.base),
        operation_context: Some("answered".into()),
        media_streaming_options: Some(streaming(&socket.url)),
    };
    let call = client.answer_call(&answer).await.unwrap();
    let (connected, _) = event_of(&mut callbacks.events, EventType::CallConnected).await;
    assert_eq!(connected.call_connection_id, call.call_connection_id);
    event_of(&mut callbacks.events, EventType::MediaStreamingStarted).await;
    let mut reader = StreamReader::bot();
    let (heard, _) = read_audio(&mut socket, &mut reader, 50).await;
    assert!(hears(&heard, 16_000, 440.0), "the caller's tone");
    assert_eq!(
        client.answer_call(&answer).await.unwrap_err().status(),
        Some(404)
    );
    client.hang_up(&call.call_connection_id).await.unwrap();
    event_of(&mut callbacks.events, EventType::CallDisconnected).await;

    // The caller hangs up while it rings: the answer is 404.
    let (context, server_call_id) = ring().await;
    let response = http
        .delete(format!("{control}/acs/incoming-calls/{server_call_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let gone = AnswerCallRequest {
        incoming_call_context: context,
        callback_uri: format!("{}/events", callbacks.base),
        operation_context: None,
        media_streaming_options: None,
    };
    assert_eq!(
        client.answer_call(&gone).await.unwrap_err().status(),
        Some(404)
    );

    // Rejected: 204, and an answer after it is 404.
    let (context, _) = ring().await;
    client
        .reject_call(&RejectCallRequest {
            incoming_call_context: context.clone(),
            call_reject_reason: None,
        })
        .await
        .unwrap();
    let late = AnswerCallRequest {
        incoming_call_context: context,
        ..gone
    };
    let err = client.answer_call(&late).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(404), Some("NotFound")));
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_the_socket_is_counted_and_the_call_goes_on() {
    let emulator = start(None).await;
    let client = client(&emulator);
    let mut callbacks = callbacks(false).await;
    let mut socket = bot_socket().await;
    let mut options = streaming(&socket.url);
    options.enable_dtmf_tones = Some(true);
    let call = client
        .create_call(&create(
            &emulator,
            &callbacks,
            Identifier::phone(PHONE),
            Some(options),
        ))
        .await
        .unwrap();
    let id = call.call_connection_id;
    event_of(&mut callbacks.events, EventType::MediaStreamingStarted).await;
    let mut reader = StreamReader::bot();
    read_audio(&mut socket, &mut reader, 10).await;

    let send = |m: WsMessage| socket.send.send(m).unwrap();
    send(WsMessage::text("not json"));
    send(WsMessage::text(
        StreamMessage::outbound_audio(&[0i16; 100]).to_json(),
    ));
    send(WsMessage::text(format!(
        r#"{{"kind":"AudioData","audioData":{{"data":"{}"}}}}"#,
        "A".repeat(10 << 20)
    )));
    send(WsMessage::binary(vec![1u8, 2, 3]));
    // Three seconds of audio at once: a second is queued, the rest dropped and counted.
    for k in 0..150 {
        send(WsMessage::text(
            StreamMessage::outbound_audio(&tone_frame(1000.0, k)).to_json(),
        ));
    }
    send(WsMessage::text(StreamMessage::stop_audio().to_json()));

    let mut stats = emulator.acs_stream_stats(&id).unwrap();
    for _ in 0..100 {
        if stats.stop_audio == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = emulator.acs_stream_stats(&id).unwrap();
    }
    assert_eq!(stats.refused_not_json, 2, "not JSON and binary: {stats:?}");
    assert_eq!(stats.refused_wrong_length, 1, "{stats:?}");
    assert_eq!(stats.refused_too_large, 1, "{stats:?}");
    assert_eq!(stats.bot_frames_received, 150, "{stats:?}");
    assert!(
        stats.bot_frames_dropped_full >= 50,
        "faster than real time: {stats:?}"
    );
    assert_eq!(stats.stop_audio, 1);

    // The call and its stream go on.
    let (after, _) = read_audio(&mut socket, &mut reader, 25).await;
    assert_eq!(after.len(), 25 * 320);
    assert_eq!(
        client.get_call(&id).await.unwrap().call_connection_state,
        Some(CallConnectionState::Connected)
    );

    // Keys the phone presses: DtmfData on the stream, and the recognition event.
    client
        .start_continuous_dtmf_recognition(
            &id,
            &ContinuousDtmfRecognitionRequest {
                target_participant: Identifier::phone(PHONE),
                operation_context: None,
            },
        )
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/acs/calls/{id}/press", emulator.control_url()))
        .json(&json!({"party": PHONE, "keys": "5#"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (five, _) = event_of(
        &mut callbacks.events,
        EventType::ContinuousDtmfRecognitionToneReceived,
    )
    .await;
    assert_eq!(five.tone(), Some('5'));
    let (pound, _) = event_of(
        &mut callbacks.events,
        EventType::ContinuousDtmfRecognitionToneReceived,
    )
    .await;
    assert_eq!(pound.tone(), Some('#'));
    let mut keys = String::new();
    while keys.len() < 2 {
        let (_, other) = read_audio(&mut socket, &mut reader, 5).await;
        for read in other {
            if let Received::Dtmf(d) = read {
                assert_eq!(d.participant_raw_id.as_deref(), Some("4:+15550001001"));
                keys.push_str(&d.data);
            }
        }
    }
    assert_eq!(keys, "5#");

    // A socket that drops: MediaStreamingFailed, and the call goes on.
    drop(socket);
    event_of(&mut callbacks.events, EventType::MediaStreamingFailed).await;
    assert_eq!(
        client.get_call(&id).await.unwrap().call_connection_state,
        Some(CallConnectionState::Connected)
    );
    client.hang_up(&id).await.unwrap();
    event_of(&mut callbacks.events, EventType::CallDisconnected).await;
    emulator.shutdown().await;
}

/// Microsoft's own Python client (`azure-communication-callautomation`, unmodified) through
/// `scripts/acs-python-check`: create a streaming call, receive its audio, hang up. Run with
/// `APPMEDIA_ACS_PYTHON`, else `target/acs-python-venv` (`scripts/setup-debian` makes it),
/// else `python3`; skipped (and said so) when that interpreter cannot import the SDK.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn microsofts_python_client_places_a_streaming_call() {
    // `scripts/setup-debian` makes this virtualenv (what CI runs before the tests).
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/acs-python-venv/bin/python")
        .to_string_lossy()
        .into_owned();
    let python = std::env::var("APPMEDIA_ACS_PYTHON").unwrap_or_else(|_| {
        if std::path::Path::new(&venv).exists() {
            venv
        } else {
            "python3".into()
        }
    });
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import azure.communication.callautomation"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        eprintln!(
            "skipped: {python} cannot import azure.communication.callautomation \
             (pip install azure-communication-callautomation; APPMEDIA_ACS_PYTHON=…)"
        );
        return;
    }
    let emulator = start(None).await;
    let acs = emulator.acs().clone();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/acs-python-check");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .env("ACS_CONNECTION_STRING", &acs.connection_string)
            .env("ACS_PHONE_NUMBER", &acs.phone_number)
            .env("ACS_TARGET", PHONE)
            .env("REQUESTS_CA_BUNDLE", &acs.ca_cert)
            .env("SSL_CERT_FILE", &acs.ca_cert)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    eprintln!("the Python SDK's run: {summary}");
    assert_eq!(summary["metadata"]["sampleRate"], 16_000);
    assert!(summary["loud_frames"].as_u64().unwrap() > 0, "{summary}");
    emulator.shutdown().await;
}

/// Play, cancel, a bad file, participants added, muted and removed, keypad tones sent,
/// a recording started and stopped, a transfer that fails and one that succeeds: each
/// operation's answer and events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_call_operations_answer_and_raise_their_events() {
    use appmedia_acs::models::{
        AddParticipantRequest, CallLocator, MuteParticipantsRequest, PlayRequest, PlaySource,
        RemoveParticipantRequest, SendDtmfTonesRequest, StartRecordingRequest, TransferRequest,
    };
    let emulator = start(None).await;
    let client = client(&emulator);
    let mut callbacks = callbacks(false).await;
    let call = client
        .create_call(&create(
            &emulator,
            &callbacks,
            Identifier::phone(PHONE),
            None,
        ))
        .await
        .unwrap();
    let id = call.call_connection_id;
    event_of(&mut callbacks.events, EventType::CallConnected).await;
    let events = &mut callbacks.events;

    let file = |name: &str| {
        url::Url::from_file_path(media_samples().join(name).canonicalize().unwrap())
            .unwrap()
            .to_string()
    };
    let play = |uri: String, context: &str| PlayRequest {
        play_sources: vec![PlaySource::file(uri)],
        play_to: Vec::new(),
        play_options: None,
        operation_context: Some(context.into()),
    };
    // A short prompt plays to its end; a long one is cancelled; a missing file fails.
    client
        .play(&id, &play(file("tone-1khz-16k.wav"), "tone"))
        .await
        .unwrap();
    let (started, _) = event_of(events, EventType::PlayStarted).await;
    assert_eq!(started.operation_context.as_deref(), Some("tone"));
    let (completed, _) = event_of(events, EventType::PlayCompleted).await;
    assert_eq!(completed.operation_context.as_deref(), Some("tone"));
    client
        .play(&id, &play(file("john-speech.wav"), "long"))
        .await
        .unwrap();
    event_of(events, EventType::PlayStarted).await;
    client.cancel_all_media_operations(&id).await.unwrap();
    let (canceled, _) = event_of(events, EventType::PlayCanceled).await;
    assert_eq!(canceled.operation_context.as_deref(), Some("long"));
    client
        .play(&id, &play("file:///no/such/prompt.wav".into(), "missing"))
        .await
        .unwrap();
    let (failed, _) = event_of(events, EventType::PlayFailed).await;
    assert_eq!(failed.operation_context.as_deref(), Some("missing"));
    let remote = play("http://example.com/prompt.wav".into(), "remote");
    client.play(&id, &remote).await.unwrap();
    event_of(events, EventType::PlayFailed).await;

    // Ada joins by her ACS id, is muted, and removed.
    let ada = Identifier::user(
        "8:acs:aa67bd4c-8475-432d-bd41-39f255720e0a_0b8a4e1c-0000-4000-8000-0000000000a1",
    );
    let added = client
        .add_participant(
            &id,
            &AddParticipantRequest {
                participant_to_add: ada.clone(),
                source_caller_id_number: None,
                invitation_timeout_in_seconds: None,
                operation_context: Some("add".into()),
            },
        )
        .await
        .unwrap();
    assert!(added.invitation_id.is_some());
    let (succeeded, _) = event_of(events, EventType::AddParticipantSucceeded).await;
    assert_eq!(succeeded.participant(), Some(ada.clone()));
    let (roster, _) = event_of(events, EventType::ParticipantsUpdated).await;
    assert_eq!(roster.participants().unwrap().0.len(), 3, "bot, phone, Ada");
    client
        .mute_participants(
            &id,
            &MuteParticipantsRequest {
                target_participants: vec![ada.clone()],
                operation_context: None,
            },
        )
        .await
        .unwrap();
    let (roster, _) = event_of(events, EventType::ParticipantsUpdated).await;
    let (list, _) = roster.participants().unwrap();
    assert!(list.iter().any(|p| p.identifier == ada && p.is_muted));
    client
        .remove_participant(
            &id,
            &RemoveParticipantRequest {
                participant_to_remove: ada.clone(),
                operation_context: Some("remove".into()),
            },
        )
        .await
        .unwrap();
    let (removed, _) = event_of(events, EventType::RemoveParticipantSucceeded).await;
    assert_eq!(removed.participant(), Some(ada.clone()));
    let err = client
        .remove_participant(
            &id,
            &RemoveParticipantRequest {
                participant_to_remove: ada.clone(),
                operation_context: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));

    // Keypad tones to the phone.
    client
        .send_dtmf_tones(
            &id,
            &SendDtmfTonesRequest {
                tones: vec!["one".into(), "pound".into()],
                target_participant: Identifier::phone(PHONE),
                operation_context: Some("keys".into()),
            },
        )
        .await
        .unwrap();
    let (sent, _) = event_of(events, EventType::SendDtmfTonesCompleted).await;
    assert_eq!(sent.operation_context.as_deref(), Some("keys"));

    // A recording by server call id.
    let recording = client
        .start_recording(&StartRecordingRequest {
            call_locator: CallLocator {
                kind: "serverCallLocator".into(),
                server_call_id: call.server_call_id.clone(),
            },
            recording_state_callback_uri: None,
            recording_content_type: None,
            recording_channel_type: None,
            recording_format_type: None,
        })
        .await
        .unwrap();
    assert_eq!(recording.recording_state, "active");
    let (active, _) = event_of(events, EventType::RecordingStateChanged).await;
    assert_eq!(active.data["state"], "active");
    client
        .stop_recording(&recording.recording_id)
        .await
        .unwrap();
    let (inactive, _) = event_of(events, EventType::RecordingStateChanged).await;
    assert_eq!(inactive.data["state"], "inactive");

    // A transfer to a phone that declines fails; one to Ada by Teams id is accepted and the
    // bot's leg ends.
    let transfer = |to: Identifier| TransferRequest {
        target_participant: to,
        transferee: None,
        operation_context: Some("transfer".into()),
    };
    client
        .transfer(&id, &transfer(Identifier::phone(DECLINER)))
        .await
        .unwrap();
    event_of(events, EventType::CallTransferFailed).await;
    client
        .transfer(
            &id,
            &transfer(Identifier::teams_user(
                "0b8a4e1c-0000-4000-8000-0000000000a1",
            )),
        )
        .await
        .unwrap();
    event_of(events, EventType::CallTransferAccepted).await;
    let (gone, _) = event_of(events, EventType::CallDisconnected).await;
    assert_eq!(gone.result.map(|r| r.sub_code), Some(7015));
    emulator.shutdown().await;
}

/// `unmixed` at 24 kHz: 960-byte frames, each naming its speaker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmixed_24khz_stream_names_each_speaker() {
    let emulator = start(None).await;
    let client = client(&emulator);
    let mut callbacks = callbacks(false).await;
    let mut socket = bot_socket().await;
    let options = MediaStreamingOptions::bidirectional(
        &socket.url,
        AudioChannelType::Unmixed,
        AudioFormat::Pcm24KMono,
    );
    let call = client
        .create_call(&create(
            &emulator,
            &callbacks,
            Identifier::phone(PHONE),
            Some(options),
        ))
        .await
        .unwrap();
    event_of(&mut callbacks.events, EventType::MediaStreamingStarted).await;
    let mut reader = StreamReader::bot();
    let mut speaker = Vec::new();
    let mut named = 0;
    while speaker.len() < 40 * 480 {
        let message = tokio::time::timeout(Duration::from_secs(10), socket.received.recv())
            .await
            .unwrap()
            .unwrap();
        let WsMessage::Text(text) = message else {
            continue;
        };
        match reader.read(text.as_str()).unwrap() {
            Received::Metadata(m) => assert_eq!((m.sample_rate, m.length), (24_000, 960)),
            Received::Audio(frame) if !frame.silent => {
                assert_eq!(frame.samples().len(), 480);
                assert_eq!(frame.participant_raw_id.as_deref(), Some("4:+15550001001"));
                named += 1;
                speaker.extend(frame.samples().iter().map(|&s| f32::from(s) / 32768.0));
            }
            _ => {}
        }
    }
    assert!(named >= 40);
    assert!(
        hears(&speaker, 24_000, 440.0),
        "the phone's tone, at 24 kHz"
    );

    // Streaming stopped: the event, and the socket closed cleanly.
    client
        .stop_media_streaming(&call.call_connection_id)
        .await
        .unwrap();
    event_of(&mut callbacks.events, EventType::MediaStreamingStopped).await;
    let closed = async {
        while let Some(message) = socket.received.recv().await {
            if matches!(message, WsMessage::Close(_)) {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), closed)
            .await
            .unwrap_or(false),
        "a Close frame"
    );
    let err = client
        .stop_media_streaming(&call.call_connection_id)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "not streaming any more");
    client.hang_up(&call.call_connection_id).await.unwrap();
    event_of(&mut callbacks.events, EventType::CallDisconnected).await;
    emulator.shutdown().await;
}
