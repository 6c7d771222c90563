//! What a call leaves for a summary (the CLI's `demo`, `record`, `play`): a prompt streamed
//! from disk plays and finishes, the end carries the prompt player's and the transport's last
//! counters, and the first tick is on the bot's media clock.

mod common;

use std::time::{Duration, Instant};

use appmedia_audio_io::playback::{PlayMode, PromptOutcome};
use appmedia_audio_io::stream::StreamedClip;
use appmedia_bot::{Event, MediaOptions};
use appmedia_model::Identity;
use appmedia_signalling::builders::PeerToPeerCallBuilder;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_prompt_plays_and_the_end_has_every_counter() {
    let emulator = emulator(echo_directory()).await;
    let bot = bot(&emulator).await;
    let placed_at = Instant::now();
    let mut call = connected_call_to_john(&bot).await;
    let clip = StreamedClip::open(media_samples().join("tone-1khz-16k.wav")).unwrap();
    let id = call.play_streamed(&clip, PlayMode::Once).unwrap();
    let finished = prompt_finished(&mut call).await;
    assert_eq!(
        (finished.id, finished.outcome),
        (id, PromptOutcome::Completed)
    );

    call.hang_up().await.unwrap();
    let (end, _) = ended(&mut call).await;
    let media = end.media.expect("media counters");
    // The 2 s file: 100 frames of prompt audio, none short of samples.
    assert_eq!(media.prompts.frames_played, 100);
    assert_eq!(media.prompts.stream_underruns, 0);
    // The transport's counters: John echoed the prompt back.
    let transport = end.transport.as_ref().expect("transport counters");
    assert!(transport.packets_received > 50, "{transport:?}");
    assert!(transport.packets_sent >= media.pipeline.packets_sent.min(50));
    // The first tick is on the bot's media clock: after the call was placed (less the five
    // periods a late worker may tick behind the present), and before now.
    let first = bot.media_epoch() + media.first_tick.expect("ticked");
    assert!(
        first + Duration::from_millis(120) >= placed_at,
        "{first:?} {placed_at:?}"
    );
    assert!(first <= Instant::now());
    bot.shutdown(None).await;
    emulator.shutdown().await;
}

/// A peer-to-peer call from the bot to John (who echoes), its media connected.
async fn connected_call_to_john(bot: &appmedia_bot::Bot) -> appmedia_bot::Call {
    let request = call_to(JOHN, bot, appmedia_bot::app_hosted());
    let mut call = bot.call(request, MediaOptions::default()).await.unwrap();
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    call
}

/// Forwards Graph's notifications from the public callback URL to the bot, as a reverse proxy
/// would, except the ones `drop` matches: those are answered 202 and never reach the bot.
async fn lossy_relay(
    to: std::net::SocketAddr,
    drop: fn(&str) -> bool,
) -> (url::Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dropped = Arc::new(AtomicUsize::new(0));
    let counter = dropped.clone();
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (http, counter) = (http.clone(), counter.clone());
            async move {
                if drop(&String::from_utf8_lossy(&body)) {
                    counter.fetch_add(1, Ordering::Relaxed);
                    return axum::http::StatusCode::ACCEPTED;
                }
                let mut forward = http.post(format!("http://{to}{}", uri.path())).body(body);
                for name in ["authorization", "content-type"] {
                    if let Some(value) = headers.get(name) {
                        forward = forward.header(name, value.as_bytes());
                    }
                }
                match forward.send().await {
                    Ok(r) => axum::http::StatusCode::from_u16(r.status().as_u16())
                        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                    Err(_) => axum::http::StatusCode::BAD_GATEWAY,
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        url::Url::parse(&format!("http://{addr}/callback")).unwrap(),
        dropped,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_the_service_never_confirms_still_ends_the_call_here() {
    let emulator = emulator(echo_directory()).await;
    // The bot binds first; the relay in front of it becomes its public callback URL.
    let probe = bot(&emulator).await;
    let local = probe.local_addr();
    probe.shutdown(None).await;
    let (public, dropped) = lossy_relay(local, |body| body.contains("\"terminated\"")).await;
    let config = bot_config(&emulator)
        .with_listen(local)
        .with_callback_url(public.clone());
    let bot = appmedia_bot::Bot::start(config).await.expect("bot starts");
    assert_eq!(bot.callback_uri(), public.as_str());
    let request = PeerToPeerCallBuilder::new(
        bot.callback_uri(),
        Identity::new(JOHN),
        appmedia_bot::app_hosted(),
    )
    .build()
    .expect("valid request");
    let mut call = bot.call(request, MediaOptions::default()).await.unwrap();
    // Notifications came through the relay: the call got established (media may connect
    // before or after).
    established_and_connected(&mut call).await;
    assert_eq!(bot.stats().live_calls, 1);

    // The service ends the call but its `terminated` is lost: the hang-up reports the
    // silence, and the call is still ended here — media off, routes freed, the end event out.
    let err = call.hang_up().await.expect_err("no terminated came");
    assert!(
        matches!(err, appmedia_bot::BotError::Timeout { .. }),
        "{err:?}"
    );
    assert!(dropped.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(call.is_ended());
    let rest = until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    assert!(matches!(rest.last(), Some(Event::Ended(_))));
    assert_eq!(bot.stats().live_calls, 0);
    assert_eq!(emulator.live_calls(), 0);
    // A second hang-up of the ended call is not an error.
    call.hang_up().await.expect("already ended");
    bot.shutdown(Some(Duration::from_millis(100))).await;
}

/// An Ogg/Opus prompt played into a call with the emulator: its 20 ms mono packets go out as
/// they are (no encoding on the media worker), and John hears it (he echoes it back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ogg_opus_prompt_is_sent_as_its_own_packets() {
    let emulator = emulator(echo_directory()).await;
    let bot = bot(&emulator).await;
    let mut call = connected_call_to_john(&bot).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../audio-io/tests/fixtures/prompt-16k.opus");
    let frames = appmedia_audio_io::clip::AudioClip::open(&path)
        .unwrap()
        .passthrough_frames() as u64;
    assert!(frames > 200);
    let id = call.play_file(&path).unwrap();
    let finished = prompt_finished(&mut call).await;
    assert_eq!(
        (finished.id, finished.outcome),
        (id, PromptOutcome::Completed)
    );
    call.hang_up().await.unwrap();
    let (end, _) = ended(&mut call).await;
    let media = end.media.expect("media counters");
    assert_eq!(media.prompts.packet_frames, frames);
    assert_eq!(
        media.pipeline.passthrough_frames, frames,
        "{:?}",
        media.pipeline
    );
    assert_eq!(media.pipeline.passthrough_mixed, 0);
    let transport = end.transport.as_ref().expect("transport counters");
    assert!(
        transport.packets_received > 100,
        "John echoed it: {transport:?}"
    );
    bot.shutdown(None).await;
    emulator.shutdown().await;
}
