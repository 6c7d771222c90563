//! Incoming calls through the SDK against a real emulator: answer (app- and service-hosted),
//! reject, redirect, the answer deadline, and the typed errors of each.

mod common;

use std::time::Duration;

use appmedia_bot::Bot;
use appmedia_bot::{AnswerMedia, BotError, Called, Event, MediaOptions, Target};
use appmedia_emulator::{Directory, Emulator};
use appmedia_model::{CallState, RejectReason};
use appmedia_testkit::audio::level_dbfs;
use common::*;

/// The seed's PSTN phone (it speaks in the default directory).
pub const PHONE: &str = "+12345678901";

/// An emulator whose seed bot rings `bot`.
pub async fn ringing_bot(directory: Directory) -> (Emulator, Bot) {
    let emulator = emulator(directory).await;
    let bot = bot(&emulator).await;
    emulator
        .set_calling_webhook(CALLING_BOT, bot.callback_uri())
        .expect("seed bot");
    (emulator, bot)
}

async fn next_incoming(bot: &appmedia_bot::Bot) -> appmedia_bot::IncomingCall {
    tokio::time::timeout(WAIT, bot.next_incoming())
        .await
        .expect("an incoming call in time")
        .expect("the bot runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_call_to_the_bot_is_answered_with_app_hosted_media_and_heard() {
    let (emulator, bot) = ringing_bot(echo_directory()).await;
    let id = ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut incoming = next_incoming(&bot).await;
    assert_eq!(incoming.id(), id);
    assert_eq!(incoming.caller_phone(), Some(PHONE));
    assert_eq!(
        incoming.called(),
        Called::ApplicationInstance {
            id: APP_INSTANCE.into(),
            phone: Some(BOT_NUMBER.into())
        }
    );
    let mut call = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .expect("answered");
    // Answering twice is refused by the SDK before any request.
    assert!(matches!(
        incoming
            .answer(AnswerMedia::App(MediaOptions::default()))
            .await,
        Err(BotError::AlreadyHandled { .. })
    ));
    let audio = call.audio_socket().expect("app-hosted");
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    assert!(
        call.wait_for_state(CallState::Established, WAIT).await
            || call.state() == Some(CallState::Established)
    );
    // The seed phone speaks: the bot hears speech-level audio within a few seconds.
    let mut heard = Vec::new();
    for _ in 0..150 {
        if let Some(frame) = audio.recv().await {
            heard.extend(samples(&frame.mixed));
        }
    }
    assert!(
        level_dbfs(&heard) > -45.0,
        "the caller is heard: {} dBFS",
        level_dbfs(&heard)
    );
    call.hang_up().await.expect("hung up");
    assert_eq!(bot.stats().incoming_answered, 1);
    assert_eq!(bot.stats().live_calls, 0);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(emulator.live_calls(), 0);
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_call_ends_and_cannot_be_answered_after() {
    let (emulator, bot) = ringing_bot(echo_directory()).await;
    ring(&emulator, JOHN, CALLING_BOT).await;
    let mut incoming = next_incoming(&bot).await;
    incoming.reject(RejectReason::Busy).await.expect("rejected");
    assert!(matches!(
        incoming
            .answer(AnswerMedia::App(MediaOptions::default()))
            .await,
        Err(BotError::AlreadyHandled {
            done: "rejected",
            ..
        })
    ));
    drop(incoming);
    let deadline = tokio::time::Instant::now() + WAIT;
    while (emulator.live_calls() > 0 || bot.stats().live_calls > 0)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(emulator.live_calls(), 0);
    assert_eq!(bot.stats().incoming_rejected, 1);
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_call_leaves_the_bot() {
    let (emulator, bot) = ringing_bot(echo_directory()).await;
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut incoming = next_incoming(&bot).await;
    incoming
        .redirect(
            vec![Target::User(JOHN.into())],
            Some(Duration::from_secs(30)),
        )
        .await
        .expect("redirected");
    assert_eq!(bot.stats().incoming_redirected, 1);
    assert_eq!(bot.stats().live_calls, 0);
    // A bad redirect is refused (typed) and leaves the call unhandled.
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut second = next_incoming(&bot).await;
    let err = second
        .redirect(
            vec![Target::User(JOHN.into())],
            Some(Duration::from_secs(5)),
        )
        .await
        .expect_err("timeout below 15 s");
    assert!(matches!(err, BotError::Graph(_)), "{err:?}");
    second.reject(RejectReason::None).await.expect("still open");
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_expires_at_the_deadline_and_is_counted() {
    let emulator = appmedia_emulator::Emulator::start(appmedia_emulator::EmulatorConfig {
        directory: echo_directory(),
        media_samples_dir: media_samples(),
        incoming_answer_timeout: Duration::from_millis(500),
        ..appmedia_emulator::EmulatorConfig::default()
    })
    .await
    .unwrap();
    let bot = bot(&emulator).await;
    emulator
        .set_calling_webhook(CALLING_BOT, bot.callback_uri())
        .unwrap();
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut incoming = next_incoming(&bot).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Too late: the service refuses, typed.
    let err = incoming
        .answer(AnswerMedia::App(MediaOptions::default()))
        .await
        .expect_err("past the deadline");
    assert!(err.status().is_some(), "{err:?}");
    drop(incoming);
    let deadline = tokio::time::Instant::now() + WAIT;
    while bot.stats().incoming_expired == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bot.stats().incoming_expired, 1);
    assert_eq!(bot.stats().live_calls, 0);
    bot.shutdown(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_hosted_answer_has_no_socket_and_ends_cleanly() {
    let (emulator, bot) = ringing_bot(echo_directory()).await;
    ring(&emulator, PHONE, BOT_NUMBER).await;
    let mut incoming = next_incoming(&bot).await;
    let mut call = incoming
        .answer(AnswerMedia::Service { pre_fetch: vec![] })
        .await
        .expect("answered");
    assert!(call.audio_socket().is_none());
    assert!(call.wait_for_state(CallState::Established, WAIT).await);
    call.hang_up().await.unwrap();
    bot.shutdown(None).await;
}
