//! A bot of the SDK on the emulator's ACS Call Automation API — HTTPS with the emulator's
//! per-run CA, HMAC-signed requests, JWT-signed CloudEvents, Event Grid incoming calls, and
//! the call's real audio over the streaming WebSocket — with the same calls the Graph tests
//! make.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use appmedia_bot::{AnswerMedia, Bot, BotConfig, BotError, Event, MediaOptions, ToneSource};
use appmedia_emulator::directory::{KeyPresses, Sound};
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_model::{CallState, RejectReason, Tone};
use appmedia_testkit::audio::{dominant, read_wav};
use common::{WAIT, samples, tone_frame, until};

const PHONE: &str = "+12345678901";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("appmedia-bot-acs-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The seed directory whose phone plays `sound`, presses `keys` after 1 s, hangs up after
/// `hang_up_ms`.
fn directory(sound: &str, keys: Option<&str>, hang_up_ms: Option<u64>) -> Directory {
    let mut directory = Directory::seed();
    for phone in &mut directory.phones {
        if phone.number == PHONE {
            phone.behaviour.media = Sound::Speak(sound.into());
            phone.behaviour.press = keys.map(|k| KeyPresses {
                after_ms: 1000,
                keys: k.into(),
            });
            phone.behaviour.hang_up_after_ms = hang_up_ms;
        }
    }
    directory
}

async fn emulator(directory: Directory, recordings: Option<PathBuf>) -> Emulator {
    Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: common::media_samples(),
        recordings_dir: recordings,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

/// A bot on the emulator's ACS resource (its connection string, CA, number and event keys),
/// one media worker.
fn acs_config(emulator: &Emulator) -> BotConfig {
    let mut config = BotConfig::for_emulator_acs(emulator).expect("the emulator's ACS resource");
    config.media.workers = 1;
    config
}

/// The request a Graph bot makes for a PSTN call (the seed's example 10): the same code places
/// it on ACS, where the resource's number is the caller id.
fn pstn_call(to: &str) -> appmedia_model::Call {
    use appmedia_model::{Identity, IdentitySet, ParticipantInfo};
    appmedia_signalling::builders::PstnCallBuilder::new(
        "http://127.0.0.1/ignored",
        ParticipantInfo::new(IdentitySet::application_instance(Identity::new(
            common::APP_INSTANCE,
        ))),
        to,
        common::TENANT,
        appmedia_bot::app_hosted(),
    )
    .build()
    .expect("valid request")
}

/// What the bot hears for `frames` 20 ms frames, as f32 samples.
async fn hear(audio: &appmedia_bot::AudioSocket, frames: usize) -> Vec<f32> {
    let mut heard = Vec::new();
    for _ in 0..frames {
        let frame = tokio::time::timeout(WAIT, audio.recv())
            .await
            .expect("a frame in time")
            .expect("the socket is open");
        heard.extend(samples(&frame.mixed));
    }
    heard
}

async fn post_control(
    emulator: &Emulator,
    path: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    appmedia_signalling::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(format!("{}{path}", emulator.control_url()))
        .json(&body)
        .send()
        .await
        .expect("control API reachable");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_call_placed_on_acs_hears_the_phone_and_is_heard() {
    let recordings = temp_dir("pstn");
    let emulator = emulator(
        directory("tone-440hz-48k.wav", None, None),
        Some(recordings.clone()),
    )
    .await;
    let bot = Bot::start(acs_config(&emulator)).await.unwrap();
    assert!(bot.client().is_none() && bot.acs_client().is_some());
    let mut call = bot
        .call(pstn_call(PHONE), MediaOptions::default())
        .await
        .expect("the call is placed");
    let audio = call.audio_socket().expect("app-hosted audio");
    let events = until(&mut call, |e| {
        matches!(e, Event::SendStatus { active: true })
    })
    .await;
    assert!(events.iter().any(|e| matches!(
        e,
        Event::State {
            to: CallState::Established,
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(e, Event::MediaConnected)));
    // The phone's 440 Hz, through the service's stream and the bot's pipeline.
    let heard = hear(&audio, 50).await;
    let (freq, ratio) = dominant(&heard, &[440.0, 1000.0], 16_000.0);
    assert_eq!(freq, 440.0, "ratio {ratio}");
    // The bot's 1 kHz for 2 s, paced by the media worker.
    let mut n = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..100 {
        ticker.tick().await;
        let _ = audio.send(&tone_frame(1000.0, &mut n));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!call.roster().is_empty(), "ParticipantsUpdated applied");
    let id = call.id().to_owned();
    call.hang_up().await.expect("hung up");
    let events = until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    let Some(Event::Ended(end)) = events.last() else {
        unreachable!()
    };
    let media = end.media.expect("media counters");
    assert!(media.pipeline.pcm_frames_sent >= 90, "{:?}", media.pipeline);
    assert!(end.transport.is_none(), "a WebSocket has no RTCP counters");
    emulator.shutdown().await;
    let (rate, sent) = read_wav(&appmedia_emulator::bot_recording_path(&recordings, &id));
    let (freq, ratio) = dominant(&sent, &[440.0, 1000.0], rate as f32);
    assert_eq!(
        freq, 1000.0,
        "what the emulator recorded of the bot: ratio {ratio}"
    );
    bot.shutdown(None).await;
    let _ = std::fs::remove_dir_all(&recordings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_acs_call_is_answered_and_its_keys_arrive_both_ways() {
    let emulator = emulator(
        directory("tone-440hz-48k.wav", Some("42#"), Some(6000)),
        None,
    )
    .await;
    let bot = Bot::start(acs_config(&emulator)).await.unwrap();
    post_control(
        &emulator,
        "/acs/event-subscriptions",
        serde_json::json!({"endpoint": bot.callback_uri()}),
    )
    .await;
    let number = emulator.acs().phone_number.clone();
    post_control(
        &emulator,
        "/incoming-calls",
        serde_json::json!({"from": PHONE, "to": number}),
    )
    .await;
    let mut incoming = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .expect("offered in time")
        .expect("an incoming call");
    assert_eq!(incoming.caller_phone(), Some(PHONE));
    let mut call = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .expect("answered");
    // Continuous recognition: the keys come as signalling events as well as on the stream.
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
    call.subscribe_to_tone().await.expect("recognition starts");
    let mut media_keys = Vec::new();
    let mut signalled = Vec::new();
    let events = until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    for event in &events {
        if let Event::Tone { tone, source } = event {
            match source {
                ToneSource::Media { .. } => media_keys.push(tone.clone()),
                ToneSource::Signalling { .. } => signalled.push(tone.clone()),
            }
        }
    }
    let keys = [Tone::Tone4, Tone::Tone2, Tone::Pound];
    assert_eq!(media_keys, keys, "DtmfData on the stream: {events:#?}");
    assert_eq!(signalled, keys, "ContinuousDtmfRecognitionToneReceived");
    // The caller hung up: the call ended with the service's reason.
    let Some(Event::Ended(end)) = events.last() else {
        unreachable!()
    };
    assert!(end.result_info.is_some(), "{end:?}");
    assert_eq!(bot.stats().incoming_answered, 1);
    bot.shutdown(None).await;
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_and_actions_acs_does_not_have() {
    let emulator = emulator(directory("tone-440hz-48k.wav", None, None), None).await;
    let bot = Bot::start(acs_config(&emulator)).await.unwrap();
    post_control(
        &emulator,
        "/acs/event-subscriptions",
        serde_json::json!({"endpoint": bot.callback_uri()}),
    )
    .await;
    let number = emulator.acs().phone_number.clone();
    let ring = || {
        post_control(
            &emulator,
            "/incoming-calls",
            serde_json::json!({"from": PHONE, "to": number}),
        )
    };
    ring().await;
    let mut incoming = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .unwrap()
        .unwrap();
    incoming.reject(RejectReason::Busy).await.expect("rejected");
    assert!(matches!(
        incoming
            .answer(AnswerMedia::App(MediaOptions::default()))
            .await,
        Err(BotError::AlreadyHandled { .. })
    ));
    assert_eq!(bot.stats().incoming_rejected, 1);

    // A call placed, then the actions Graph has and ACS does not: typed errors, the call goes on.
    let mut call = bot
        .call(pstn_call(PHONE), MediaOptions::default())
        .await
        .unwrap();
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
    for result in [
        call.mute().await.map(drop),
        call.keep_alive().await,
        call.update_recording_status(appmedia_model::RecordingStatus::Recording)
            .await
            .map(drop),
        call.press_keys("1"),
        call.send_dtmf_tones(vec![Tone::Tone1], Some(100))
            .await
            .map(drop),
    ] {
        assert!(
            matches!(result, Err(BotError::Unsupported { backend: "acs", .. })),
            "{result:?}"
        );
    }
    call.send_dtmf_tones(vec![Tone::Tone1, Tone::Pound], None)
        .await
        .expect("the service sends tones");
    let events = until(&mut call, |e| matches!(e, Event::Operation(_))).await;
    let Some(Event::Operation(op)) = events.last() else {
        unreachable!()
    };
    assert_eq!(
        op.odata_type.value().map(String::as_str),
        Some(appmedia_model::CommsOperation::SEND_DTMF_TONES)
    );
    call.hang_up().await.unwrap();
    bot.shutdown(None).await;
    emulator.shutdown().await;
}
