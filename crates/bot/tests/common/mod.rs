//! An emulator on loopback and a bot from the SDK pointed at it.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use appmedia_bot::{Bot, BotConfig, Event};
use appmedia_emulator::directory::Sound;
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};

pub const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
pub const CALLING_BOT: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
pub const CALLING_BOT_SECRET: &str = "calling-bot-secret";
pub const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
/// The seed's application instance that owns the bot's phone number.
pub const APP_INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

pub fn media_samples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../media-samples")
}

/// The bot's phone number (the seed instance's).
pub const BOT_NUMBER: &str = "+14255550100";

/// The seed directory with John echoing what he hears and every phone speaking.
pub fn echo_directory() -> Directory {
    let mut directory = Directory::seed();
    for user in &mut directory.users {
        if user.id == JOHN {
            user.behaviour.media = Sound::Echo;
        }
    }
    for phone in &mut directory.phones {
        phone.behaviour.media = Sound::Speak("jane-speech.wav".into());
    }
    directory
}

pub async fn emulator(directory: Directory) -> Emulator {
    Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: media_samples(),
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

/// A bot for the seed's calling bot on `emulator`, one media worker.
pub fn bot_config(emulator: &Emulator) -> BotConfig {
    let mut config = BotConfig::for_emulator(emulator, CALLING_BOT, CALLING_BOT_SECRET)
        .expect("the seed's calling bot");
    config.media.workers = 1;
    config
}

pub async fn bot(emulator: &Emulator) -> Bot {
    Bot::start(bot_config(emulator)).await.expect("bot starts")
}

/// A peer-to-peer call from `bot` to `user` with `media`.
pub fn call_to(
    user: &str,
    bot: &Bot,
    media: appmedia_signalling::builders::Media,
) -> appmedia_model::Call {
    appmedia_signalling::builders::PeerToPeerCallBuilder::new(
        bot.callback_uri(),
        appmedia_model::Identity::new(user),
        media,
    )
    .build()
    .expect("valid request")
}

/// Events until `pred` matches one (returned), bounded by [`WAIT`].
/// Waits until the call is established and its media connected, in either order (media
/// connects on its own, ICE and DTLS, while the state comes from the service); the events seen.
pub async fn established_and_connected(call: &mut appmedia_bot::Call) -> Vec<Event> {
    let (mut established, mut connected) = (false, false);
    until(call, |e| {
        match e {
            Event::State {
                to: appmedia_model::CallState::Established,
                ..
            } => established = true,
            Event::MediaConnected => connected = true,
            _ => {}
        }
        established && connected
    })
    .await
}

pub async fn until(
    call: &mut appmedia_bot::Call,
    mut pred: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, call.next_event()).await {
            Ok(Some(event)) => {
                let done = pred(&event);
                seen.push(event);
                if done {
                    return seen;
                }
            }
            Ok(None) => panic!("events ended before the awaited one: {seen:#?}"),
            Err(_) => panic!("timed out; events so far: {seen:#?}"),
        }
    }
}

/// Waits for the call's `Ended` (bounded by [`WAIT`]) and returns what it carries and every
/// event seen until then, `Ended` last.
pub async fn ended(call: &mut appmedia_bot::Call) -> (appmedia_bot::CallEnd, Vec<Event>) {
    let mut seen = until(call, |e| matches!(e, Event::Ended(_))).await;
    let Some(Event::Ended(end)) = seen.pop() else {
        unreachable!("until returns with the matching event last")
    };
    (*end, seen)
}

/// Waits for the next prompt to finish (bounded by [`WAIT`]) and returns its event.
pub async fn prompt_finished(
    call: &mut appmedia_bot::Call,
) -> appmedia_audio_io::playback::PromptEvent {
    let mut seen = until(call, |e| matches!(e, Event::PromptFinished(_))).await;
    let Some(Event::PromptFinished(finished)) = seen.pop() else {
        unreachable!("until returns with the matching event last")
    };
    finished
}

/// A 20 ms frame of a sine at `freq` (PCM 16 kHz s16le), continuing phase from `n`.
pub fn tone_frame(freq: f32, n: &mut u64) -> [u8; 640] {
    let mut out = [0u8; 640];
    for chunk in out.chunks_exact_mut(2) {
        let t = *n as f32 / 16_000.0;
        let s = (0.3 * (2.0 * std::f32::consts::PI * freq * t).sin() * 32767.0) as i16;
        chunk.copy_from_slice(&s.to_le_bytes());
        *n += 1;
    }
    out
}

/// PCM 16 kHz s16le bytes as f32 samples.
pub fn samples(pcm: &[u8]) -> Vec<f32> {
    pcm.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// `POST {control_url}/incoming-calls`: `from` calls `to`; the emulator's call id.
pub async fn ring(emulator: &Emulator, from: &str, to: &str) -> String {
    appmedia_signalling::install_crypto_provider();
    let response = reqwest::Client::new()
        .post(format!("{}/incoming-calls", emulator.control_url()))
        .json(&serde_json::json!({"from": from, "to": to}))
        .send()
        .await
        .expect("control API reachable");
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON answer");
    assert_eq!(status.as_u16(), 201, "{body}");
    body["callId"].as_str().expect("callId").to_owned()
}
