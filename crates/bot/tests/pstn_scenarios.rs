//! The seed's PSTN scenarios that start with a call *to* the bot, each end to end through the
//! SDK against the emulator's HTTP API, with real audio where audio is involved: the bot sends
//! 600 Hz, the agent line (+12345678904) says 1 kHz. A phone dials the bot's number; the
//! instance id is called by a Teams user (John), as only VoIP reaches an id. (The bot-initiated scenarios — outbound
//! PSTN, P2P then invite, meeting then invite — are in crates/emulator/tests/pstn_scenarios.rs.)

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use appmedia_bot::{AnswerMedia, Bot, Call, Event, MediaOptions, Target};
use appmedia_emulator::directory::Sound;
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_testkit::audio::{hears, read_wav, silent_at, windows};
use common::*;

const CALLER: &str = "+12345678901";
const AGENT: &str = "+12345678904";
const BOT_NUMBER: &str = "+14255550100";
const MEETING: &str = "1234567";

fn directory() -> Directory {
    let mut directory = Directory::seed();
    for user in &mut directory.users {
        if user.id == JOHN {
            user.behaviour.media = Sound::Silent;
            user.behaviour.hang_up_after_ms = Some(6000);
        }
    }
    for phone in &mut directory.phones {
        if phone.number == CALLER {
            // Silent, and gone after 6 s: the end of a conversation transferred away.
            phone.behaviour.media = Sound::Silent;
            phone.behaviour.hang_up_after_ms = Some(6000);
        }
        if phone.number == AGENT {
            phone.behaviour.media = Sound::Speak("tone-1khz-16k.wav".into());
        }
    }
    directory
}

struct Answered {
    emulator: Emulator,
    bot: Bot,
    call: Call,
    /// What the bot heard (16 kHz), filled by the task that also sends the bot's 600 Hz.
    heard: Arc<Mutex<Vec<f32>>>,
    recordings: PathBuf,
}

/// `from` calls `to` (optionally from the meeting); the bot answers with app-hosted media and
/// speaks 600 Hz for as long as the media runs.
async fn answered(name: &str, from: &str, to: &str, meeting: Option<&str>) -> Answered {
    let recordings =
        std::env::temp_dir().join(format!("appmedia-bot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&recordings);
    std::fs::create_dir_all(&recordings).unwrap();
    let emulator = Emulator::start(EmulatorConfig {
        directory: directory(),
        media_samples_dir: media_samples(),
        recordings_dir: Some(recordings.clone()),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let bot = Bot::start(bot_config(&emulator)).await.unwrap();
    emulator
        .set_calling_webhook(CALLING_BOT, bot.callback_uri())
        .unwrap();
    let mut body = serde_json::json!({"from": from, "to": to});
    if let Some(m) = meeting {
        body["meeting"] = m.into();
    }
    appmedia_signalling::install_crypto_provider();
    let status = reqwest::Client::new()
        .post(format!("{}/incoming-calls", emulator.control_url()))
        .json(&body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 201);
    let mut incoming = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .unwrap()
        .unwrap();
    if meeting.is_some() {
        assert!(
            incoming.meeting().is_some(),
            "chatInfo and meetingInfo of the meeting"
        );
    }
    let mut call = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .unwrap();
    let audio = call.audio_socket().unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    tokio::spawn(async move {
        let mut phase = 0;
        while let Some(frame) = audio.recv().await {
            sink.lock().unwrap().extend(samples(&frame.mixed));
            let _ = audio.send(&tone_frame(600.0, &mut phase));
        }
    });
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    Answered {
        emulator,
        bot,
        call,
        heard,
        recordings,
    }
}

/// The bot invites the agent line: the operation completes, the agent joins the roster and the
/// bot hears its 1 kHz (and did not before).
async fn invites_another_pstn(mut a: Answered) {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = a.heard.lock().unwrap().len();
    a.call
        .invite(vec![Target::Phone(AGENT.into())])
        .await
        .expect("invited");
    let (mut joined, mut completed) = (false, false);
    until(&mut a.call, |e| {
        match e {
            Event::Roster(change) => {
                joined |= change
                    .joined
                    .iter()
                    .chain(&change.updated)
                    .any(|p| serde_json::to_string(p).unwrap().contains(AGENT))
            }
            Event::Operation(op) => {
                completed |= op.kind() == Some("inviteParticipantsOperation") && op.is_finished()
            }
            _ => {}
        }
        joined && completed
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let heard = a.heard.lock().unwrap().clone();
    assert!(silent_at(
        &heard[before.saturating_sub(8000)..before],
        16_000,
        1000.0
    ));
    let after = &heard[heard.len() - 8000..];
    assert!(
        hears(after, 16_000, 1000.0),
        "the invited agent is in the bot's mix"
    );
    a.call.hang_up().await.unwrap();
    finish(a).await;
}

/// The bot transfers the caller to the agent line: `transferring`, then the bot's call ends;
/// the caller heard the bot, then the agent — never the bot again.
async fn transfers_to_another_pstn(mut a: Answered, caller: &str) {
    let caller_source = caller_source_id(&a.call, caller);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    a.call
        .transfer(Target::Phone(AGENT.into()))
        .await
        .expect("transfer accepted");
    let seen = until(&mut a.call, |e| matches!(e, Event::Ended(_))).await;
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::State { to, .. } if to.as_str() == "transferring")),
        "{seen:#?}"
    );
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.emulator.transferred_calls() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let path = appmedia_emulator::heard_recording_path(&a.recordings, a.call.id(), caller_source);
    let (rate, ear) = read_wav(&path);
    let profile: String = windows(&ear, rate, 100)
        .iter()
        .map(|w| match (hears(w, rate, 600.0), hears(w, rate, 1000.0)) {
            (true, true) => 'X',
            (true, false) => 'b',
            (false, true) => 't',
            (false, false) => '.',
        })
        .collect();
    let first_agent = profile
        .find('t')
        .unwrap_or_else(|| panic!("never the agent: {profile}"));
    assert!(
        profile[..first_agent].contains('b'),
        "the bot before: {profile}"
    );
    assert!(
        !profile[first_agent + 2..].contains(['b', 'X']),
        "never the bot after the agent: {profile}"
    );
    finish(a).await;
}

/// The bot sends the call on to the agent line without answering; it is out of the call.
async fn redirects_to_another_pstn(from: &str, to: &str) {
    let emulator = Emulator::start(EmulatorConfig {
        directory: directory(),
        media_samples_dir: media_samples(),
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let bot = Bot::start(bot_config(&emulator)).await.unwrap();
    emulator
        .set_calling_webhook(CALLING_BOT, bot.callback_uri())
        .unwrap();
    appmedia_signalling::install_crypto_provider();
    let http = reqwest::Client::new();
    let answer: serde_json::Value = http
        .post(format!("{}/incoming-calls", emulator.control_url()))
        .json(&serde_json::json!({"from": from, "to": to}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = answer["callId"].as_str().unwrap().to_owned();
    let mut incoming = tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .unwrap()
        .unwrap();
    incoming
        .redirect(
            vec![Target::Phone(AGENT.into())],
            Some(Duration::from_secs(20)),
        )
        .await
        .expect("redirected");
    let deadline = tokio::time::Instant::now() + WAIT;
    let view = loop {
        let view: serde_json::Value = http
            .get(format!("{}/calls/{id}", emulator.control_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !view["redirect"]["answeredBy"].is_null() || tokio::time::Instant::now() > deadline {
            break view;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        view["redirect"]["answeredBy"].to_string().contains(AGENT),
        "{view:#}"
    );
    assert_eq!(bot.stats().live_calls, 0, "the bot is out of the call");
    bot.shutdown(None).await;
}

fn caller_source_id(call: &Call, caller: &str) -> u32 {
    call.roster()
        .iter()
        .find(|p| serde_json::to_string(p).unwrap().contains(caller))
        .and_then(|p| {
            p.media_streams
                .value()?
                .first()?
                .source_id
                .value()?
                .parse()
                .ok()
        })
        .expect("the caller in the roster with a source id")
}

async fn finish(a: Answered) {
    assert_eq!(a.bot.stats().live_calls, 0);
    a.bot.shutdown(None).await;
    let _ = std::fs::remove_dir_all(&a.recordings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_pstn_number_then_the_bot_invites_another_pstn() {
    invites_another_pstn(answered("s1", CALLER, BOT_NUMBER, None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_pstn_number_then_the_bot_transfers_to_another_pstn() {
    transfers_to_another_pstn(answered("s2", CALLER, BOT_NUMBER, None).await, CALLER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_pstn_number_then_the_bot_redirects_to_another_pstn() {
    redirects_to_another_pstn(CALLER, BOT_NUMBER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_instance_id_then_the_bot_invites_another_pstn() {
    invites_another_pstn(answered("s4", JOHN, APP_INSTANCE, None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_instance_id_then_the_bot_transfers_to_another_pstn() {
    transfers_to_another_pstn(answered("s5", JOHN, APP_INSTANCE, None).await, JOHN).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_instance_id_then_the_bot_redirects_to_another_pstn() {
    redirects_to_another_pstn(JOHN, APP_INSTANCE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_call_to_the_bots_instance_id_from_a_scheduled_meeting_then_the_bot_invites_a_pstn()
 {
    invites_another_pstn(answered("s7", JOHN, APP_INSTANCE, Some(MEETING)).await).await;
}
