//! The ACS backend against a hostile or broken service: this test is the service (a real HTTP
//! server on loopback for the REST side, a real WebSocket client for the audio), and sends the
//! bot what a broken or malicious peer could — duplicate and out-of-order events, events for
//! another call, malformed and oversized socket messages, frames faster than real time, a
//! socket that drops mid-call. Each is refused or counted; the call goes on where it can.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_acs::streaming::{AudioMetadata, Message as StreamMessage, encode_samples};
use appmedia_bot::acs::AcsService;
use appmedia_bot::{Bot, BotConfig, Call, Event, MediaOptions};
use appmedia_model::CallState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::IntoResponse;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(10);

/// The requests the fake service got.
type Seen = Arc<Mutex<Vec<(Method, String, Value)>>>;

async fn service(
    State(seen): State<Seen>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> impl IntoResponse {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock()
        .unwrap()
        .push((method.clone(), uri.path().to_owned(), body));
    if method == Method::POST && uri.path() == "/calling/callConnections" {
        let call = json!({"callConnectionId": "c1", "serverCallId": "s1",
                          "callConnectionState": "connecting"});
        return (StatusCode::CREATED, axum::Json(call)).into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

struct Harness {
    bot: Bot,
    seen: Seen,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut AcsService)) -> Harness {
        let seen: Seen = Arc::default();
        let app = axum::Router::new()
            .fallback(service)
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let service = AcsService::from_connection_string(&format!(
            "endpoint={endpoint};accesskey=dGhlLWtleQ=="
        ))
        .unwrap()
        .with_phone_number("+18005550100");
        let mut service = service;
        configure(&mut service);
        let mut config = BotConfig::for_acs(service);
        config.media.workers = 1;
        appmedia_signalling::install_crypto_provider();
        Harness {
            bot: Bot::start(config).await.unwrap(),
            seen,
            http: reqwest::Client::new(),
        }
    }

    /// Places a call; the URLs the bot gave the service for it.
    async fn call(&self) -> (Call, String, String) {
        self.call_with(MediaOptions::default()).await
    }

    async fn call_with(&self, options: MediaOptions) -> (Call, String, String) {
        let request = appmedia_signalling::builders::PstnCallBuilder::new(
            "http://127.0.0.1/ignored",
            appmedia_model::ParticipantInfo::new(
                appmedia_model::IdentitySet::application_instance(appmedia_model::Identity::new(
                    "3d913abb-aec0-4964-8fa6-3c6850c4f278",
                )),
            ),
            "+12345678901",
            "aa67bd4c-8475-432d-bd41-39f255720e0a",
            appmedia_bot::app_hosted(),
        )
        .build()
        .unwrap();
        let call = self.bot.call(request, options).await.unwrap();
        let create = self.seen.lock().unwrap()[0].2.clone();
        let callback = create["callbackUri"].as_str().unwrap().to_owned();
        let media = create["mediaStreamingOptions"]["transportUrl"]
            .as_str()
            .unwrap()
            .to_owned();
        (call, callback, media)
    }

    async fn post(&self, url: &str, events: Value) -> u16 {
        self.http
            .post(url)
            .json(&events)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

fn event(id: &str, kind: &str, call: &str, data: Value) -> Value {
    let mut data = data;
    data["callConnectionId"] = json!(call);
    json!({"id": id, "source": format!("calling/callConnections/{call}"), "specversion": "1.0",
           "type": format!("Microsoft.Communication.{kind}"), "data": data})
}

fn roster(seq: u64, numbers: &[&str]) -> Value {
    let participants: Vec<Value> = numbers
        .iter()
        .map(|n| {
            json!({"identifier": {"rawId": format!("4:{n}"), "kind": "phoneNumber",
                                      "phoneNumber": {"value": n}}, "isMuted": false})
        })
        .collect();
    json!({"sequenceNumber": seq, "participants": participants})
}

/// Events until `pred` matches, bounded.
async fn until(call: &mut Call, mut pred: impl FnMut(&Event) -> bool) -> Vec<Event> {
    let mut seen = Vec::new();
    loop {
        let event = tokio::time::timeout(WAIT, call.next_event())
            .await
            .unwrap_or_else(|_| panic!("timed out; so far {seen:#?}"))
            .expect("events go on");
        let done = pred(&event);
        seen.push(event);
        if done {
            return seen;
        }
    }
}

/// Every event that arrives within `quiet`.
async fn drain(call: &mut Call, quiet: Duration) -> Vec<Event> {
    let mut seen = Vec::new();
    while let Some(event) = call.next_event_within(quiet).await {
        seen.push(event);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_late_and_foreign_events_change_nothing() {
    let h = Harness::start().await;
    let (mut call, callback, _) = h.call().await;
    let connected = event("e1", "CallConnected", "c1", json!({}));
    assert_eq!(h.post(&callback, json!([connected.clone()])).await, 200);
    until(&mut call, |e| {
        matches!(
            e,
            Event::State {
                to: CallState::Established,
                ..
            }
        )
    })
    .await;
    // The same event again, then a second CallConnected: no second state change.
    assert_eq!(h.post(&callback, json!([connected])).await, 200);
    assert_eq!(
        h.post(
            &callback,
            json!([event("e2", "CallConnected", "c1", json!({}))])
        )
        .await,
        200
    );
    // A newer roster, then an older one delivered late: one roster change.
    assert_eq!(
        h.post(
            &callback,
            json!([
                event(
                    "e3",
                    "ParticipantsUpdated",
                    "c1",
                    roster(2, &["+12345678901", "+15550001"])
                ),
                event(
                    "e4",
                    "ParticipantsUpdated",
                    "c1",
                    roster(1, &["+12345678901"])
                ),
            ])
        )
        .await,
        200
    );
    // An event naming another call under this call's token: dropped and counted.
    assert_eq!(
        h.post(
            &callback,
            json!([event("e5", "CallDisconnected", "c2", json!({}))])
        )
        .await,
        200
    );
    // Not CloudEvents at all.
    let broken = h
        .http
        .post(&callback)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let events = drain(&mut call, Duration::from_millis(500)).await;
    let states = events
        .iter()
        .filter(|e| matches!(e, Event::State { .. }))
        .count();
    let rosters: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Roster(change) => Some(change.joined.len()),
            _ => None,
        })
        .collect();
    assert_eq!((states, rosters), (0, vec![2]), "{events:#?}");
    assert_eq!(call.roster().len(), 2);
    let counters = h.bot.acs_counters().unwrap();
    assert_eq!(
        counters
            .wrong_call
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(!call.is_ended());
    // The real end, then the bot is done with the call: its token is refused from now on.
    let end = event(
        "e6",
        "CallDisconnected",
        "c1",
        json!({"resultInformation": {"code": 200, "subCode": 5000, "message": "bye"}}),
    );
    assert_eq!(h.post(&callback, json!([end])).await, 200);
    until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    assert_eq!(
        h.post(
            &callback,
            json!([event("e7", "CallConnected", "c1", json!({}))])
        )
        .await,
        404
    );
    h.bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_audio_socket_is_refused_message_by_message_and_the_call_goes_on() {
    let h = Harness::start().await;
    let (mut call, callback, media_url) = h.call().await;
    assert_eq!(
        h.post(
            &callback,
            json!([event("e1", "CallConnected", "c1", json!({}))])
        )
        .await,
        200
    );
    let audio = call.audio_socket().unwrap();
    let (mut socket, _) = tokio_tungstenite::connect_async(media_url.as_str())
        .await
        .unwrap();
    let text = |s: String| Message::text(s);
    // Audio before the format: refused.
    socket
        .send(text(StreamMessage::outbound_audio(&[100; 320]).to_json()))
        .await
        .unwrap();
    socket
        .send(text(
            StreamMessage::AudioMetadata {
                audio_metadata: AudioMetadata::pcm("sub", 16_000),
            }
            .to_json(),
        ))
        .await
        .unwrap();
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    for bad in [
        "not json".to_owned(),
        json!({"kind": "Video"}).to_string(),
        json!({"kind": "AudioData", "audioData": {"data": encode_samples(&[1; 100])}}).to_string(),
        json!({"kind": "AudioData", "audioData": {"data": "@@@@"}}).to_string(),
        format!(
            r#"{{"kind":"AudioData","pad":"{}"}}"#,
            "x".repeat(100 * 1024)
        ),
        StreamMessage::stop_audio().to_json(),
    ] {
        socket.send(text(bad)).await.unwrap();
    }
    socket.send(Message::binary(vec![0u8; 640])).await.unwrap();
    // Three seconds of a 1 kHz tone at once: the playout ring keeps 240 ms, drops the rest.
    let tone: Vec<i16> = (0..320)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI / 16.0).sin() * 8000.0) as i16)
        .collect();
    for _ in 0..150 {
        socket
            .send(text(StreamMessage::outbound_audio(&tone).to_json()))
            .await
            .unwrap();
    }
    // The bot hears the tone it could keep, no more than real time allows.
    let mut loud = 0;
    for _ in 0..50 {
        let frame = tokio::time::timeout(WAIT, audio.recv())
            .await
            .unwrap()
            .unwrap();
        let energy: f64 = frame
            .mixed
            .chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])).powi(2))
            .sum();
        loud += usize::from(energy > 1e6);
    }
    assert!(
        (5..=20).contains(&loud),
        "{loud} loud frames of 150 sent at once"
    );
    let stats = call.stream_stats().expect("an ACS stream");
    assert_eq!(stats.refused, 7, "{stats:?}");
    assert_eq!(stats.binary, 1);
    assert_eq!(stats.frames_in, 150);
    // What was not heard was dropped and counted: by the hand-off queue or the playout ring.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let media = call.media_stats().expect("media counters");
    let dropped = media.pipeline.pcm_inbound_queue.evicted
        + media.streams().map(|s| s.jitter.overflow).sum::<u64>();
    assert!(dropped >= 100, "{dropped} dropped: {media:?}");
    // A 2 MiB message closes the socket; the call goes on without audio.
    let _ = socket
        .send(text(format!(
            r#"{{"kind":"AudioData","pad":"{}"}}"#,
            "y".repeat(2 << 20)
        )))
        .await;
    let events = until(&mut call, |e| matches!(e, Event::MediaEnded(_))).await;
    assert!(!events.iter().any(|e| matches!(e, Event::Ended(_))));
    assert!(!call.is_ended());
    assert_eq!(call.state(), Some(CallState::Established));
    // A second socket for the call: the stream can be taken again.
    let (mut again, _) = tokio_tungstenite::connect_async(media_url.as_str())
        .await
        .unwrap();
    again
        .send(text(
            StreamMessage::AudioMetadata {
                audio_metadata: AudioMetadata::pcm("sub", 16_000),
            }
            .to_json(),
        ))
        .await
        .unwrap();
    // The bot hangs up: DELETE reaches the service, the service confirms.
    let hang_up = tokio::spawn({
        let control = call.control();
        async move { control.hang_up().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        h.seen
            .lock()
            .unwrap()
            .iter()
            .any(|(m, path, _)| m == Method::DELETE && path == "/calling/callConnections/c1")
    );
    assert_eq!(
        h.post(
            &callback,
            json!([event("e9", "CallDisconnected", "c1", json!({}))])
        )
        .await,
        200
    );
    hang_up.await.unwrap().expect("hung up");
    // The bot closed its end of the socket.
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(message) = again.next().await {
            if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the socket was closed");
    h.bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_event_tokens_on_an_event_without_a_valid_jwt_is_refused() {
    // The keys would come from this (unreachable) document: a request without a token, or
    // with one that is not a JWT, is refused before any key is needed.
    let h = Harness::start_with(|service| {
        service.events = appmedia_bot::acs::EventAuth::Jwt {
            openid_url: "https://127.0.0.1:9/.well-known/openid-configuration"
                .parse()
                .unwrap(),
            issuers: vec![appmedia_bot::acs::ACS_ISSUER.into()],
            audience: "the-resource".into(),
        };
    })
    .await;
    let (mut call, callback, media_url) = h.call().await;
    let connected = json!([event("e1", "CallConnected", "c1", json!({}))]);
    assert_eq!(h.post(&callback, connected.clone()).await, 401);
    let forged = h
        .http
        .post(&callback)
        .bearer_auth("not.a.jwt")
        .json(&connected)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    // Nor may the audio socket be opened without one.
    match tokio_tungstenite::connect_async(media_url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401)
        }
        other => panic!("expected a 401, got {other:?}"),
    }
    let counters = h.bot.acs_counters().unwrap();
    assert_eq!(
        counters
            .unauthorized
            .load(std::sync::atomic::Ordering::Relaxed),
        3
    );
    assert!(
        drain(&mut call, Duration::from_millis(300))
            .await
            .is_empty()
    );
    // No end can reach the bot now (every event is refused): the test stops here without
    // the hang-up's wait for a CallDisconnected that would not come.
    drop(call);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmixed_speakers_are_named_as_the_roster_names_them() {
    let h = Harness::start().await;
    let (mut call, callback, media_url) = h.call_with(MediaOptions::default().unmixed()).await;
    assert_eq!(
        h.post(
            &callback,
            json!([
                event("e1", "CallConnected", "c1", json!({})),
                event(
                    "e2",
                    "ParticipantsUpdated",
                    "c1",
                    roster(1, &["+12345678901", "+15550001"])
                ),
            ])
        )
        .await,
        200
    );
    let events = until(&mut call, |e| matches!(e, Event::Roster(_))).await;
    let Some(Event::Roster(change)) = events.last() else {
        unreachable!()
    };
    // Each participant has an audio stream whose source id is its stream key.
    let source_of = |number: &str| -> u32 {
        let p = change
            .joined
            .iter()
            .find(|p| p.id.value().map(String::as_str) == Some(&format!("4:{number}")))
            .unwrap_or_else(|| panic!("{number} in {change:?}"));
        p.media_streams.value().unwrap()[0]
            .source_id
            .value()
            .unwrap()
            .parse()
            .unwrap()
    };
    let second = source_of("+15550001");
    assert_ne!(source_of("+12345678901"), second);
    // The second participant speaks (1 s of a tone, paced like the service): the dominant
    // speaker is the source id the roster gave it.
    let (mut socket, _) = tokio_tungstenite::connect_async(media_url.as_str())
        .await
        .unwrap();
    socket
        .send(Message::text(
            StreamMessage::AudioMetadata {
                audio_metadata: AudioMetadata::pcm("sub", 16_000),
            }
            .to_json(),
        ))
        .await
        .unwrap();
    let tone: Vec<i16> = (0..320)
        .map(|i| ((i as f32 * 2.0 * std::f32::consts::PI / 16.0).sin() * 8000.0) as i16)
        .collect();
    let frame = json!({"kind": "AudioData", "audioData": {"data": encode_samples(&tone),
        "participantRawID": "4:+15550001", "silent": false}})
    .to_string();
    let speaking = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..75 {
            ticker.tick().await;
            if socket.send(Message::text(frame.clone())).await.is_err() {
                break;
            }
        }
        socket
    });
    let events = until(&mut call, |e| matches!(e, Event::DominantSpeaker(Some(_)))).await;
    assert!(
        matches!(events.last(), Some(Event::DominantSpeaker(Some(id))) if *id == second),
        "{events:#?}"
    );
    drop(speaking.await);
    assert_eq!(
        h.post(
            &callback,
            json!([event("e3", "CallDisconnected", "c1", json!({}))])
        )
        .await,
        200
    );
    until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    h.bot.shutdown(None).await;
}
