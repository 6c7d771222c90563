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
    let request = PeerToPeerCallBuilder::new(
        bot.callback_uri(),
        Identity::new(JOHN),
        appmedia_bot::app_hosted(),
    )
    .build()
    .expect("valid request");
    let mut call = bot.call(request, MediaOptions::default()).await.unwrap();
    until(&mut call, |e| matches!(e, Event::MediaConnected)).await;
    let clip = StreamedClip::open(media_samples().join("tone-1khz-16k.wav")).unwrap();
    let id = call.play_streamed(&clip, PlayMode::Once).unwrap();
    let seen = until(&mut call, |e| matches!(e, Event::PromptFinished(_))).await;
    let Some(Event::PromptFinished(finished)) = seen.last() else {
        unreachable!()
    };
    assert_eq!(
        (finished.id, finished.outcome),
        (id, PromptOutcome::Completed)
    );

    call.hang_up().await.unwrap();
    let rest = until(&mut call, |e| matches!(e, Event::Ended(_))).await;
    let Some(Event::Ended(end)) = rest.last() else {
        unreachable!()
    };
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
