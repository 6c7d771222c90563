//! What runs on the audio thread allocates nothing in steady state: pushing a frame to a
//! recording, pulling a prompt frame, the tick side of both device directions. A counting
//! global allocator counts allocations made by the test's own thread while it is measuring
//! (the recording's writer thread allocates as it likes).

mod common;

use appmedia_audio_io::clip::AudioClip;
#[cfg(feature = "devices")]
use appmedia_audio_io::device::test_support::{mic_source_for_test, speaker_feed_for_test};
use appmedia_audio_io::frame::CORE_FRAME_SAMPLES;
use appmedia_audio_io::playback::{PlayMode, PromptPlayer};
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};
use appmedia_media::alloc_count::{CountingAllocator, allocations_during};

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn the_audio_thread_side_does_not_allocate() {
    // The counter sees this thread's allocations (so a zero below means something).
    assert_eq!(
        allocations_during(|| drop(std::hint::black_box(vec![0u8; 16]))),
        1
    );

    // Recording: push frames for the mixed track and two speakers.
    let dir = common::TempDir::new("noalloc");
    let (recorder, sink) = CallRecorder::start(RecordingConfig::new(dir.path(), "n")).unwrap();
    let frame = [0.2f32; CORE_FRAME_SAMPLES];
    let bot_frame = [100i16; 320];
    let n = allocations_during(|| {
        for tick in 0..200u64 {
            let _ = sink.push(tick, Track::Mixed, &frame);
            let _ = sink.push(tick, Track::Speaker(1), &frame);
            let _ = sink.push_s16(tick, Track::Speaker(2), &bot_frame); // wrong rate: rejected
        }
    });
    assert_eq!(n, 0, "RecordingSink::push allocated");
    recorder.finish();

    // Prompts: a queue of two, one looped, played over many ticks, with a cancel.
    let (mut player, queue) = PromptPlayer::new(8);
    let clip = AudioClip::from_samples(vec![0.1; 5000]).unwrap();
    let looped = queue.play(&clip, PlayMode::Loop).unwrap();
    queue.play(&clip, PlayMode::Once).unwrap();
    let mut out = [0.0f32; CORE_FRAME_SAMPLES];
    let n = allocations_during(|| {
        for _ in 0..100 {
            player.next_frame(&mut out);
        }
    });
    assert_eq!(n, 0, "PromptPlayer::next_frame allocated while playing");
    queue.cancel(looped).unwrap();
    let n = allocations_during(|| {
        for _ in 0..100 {
            player.next_frame(&mut out);
        }
    });
    assert_eq!(
        n, 0,
        "PromptPlayer::next_frame allocated on cancel/completion"
    );
    assert!(queue.try_event().is_some());

    // A streamed prompt: the audio thread only copies out of the decoder's ring.
    let streamed =
        appmedia_audio_io::stream::StreamedClip::open(common::media_sample("jane-speech.wav"))
            .unwrap();
    queue.play_streamed(&streamed, PlayMode::Once).unwrap();
    let n = allocations_during(|| {
        for _ in 0..100 {
            player.next_frame(&mut out);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    });
    assert_eq!(n, 0, "PromptPlayer::next_frame allocated while streaming");

    // Ogg/Opus prompts whose packets pass through, decoded up front and streamed: whole
    // frames with their packets.
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/prompt-16k.opus");
    let opus = AudioClip::open(&fixture).unwrap();
    assert!(opus.passthrough_frames() > 0);
    let (mut player, queue) = PromptPlayer::new(8);
    queue.play(&opus, PlayMode::Loop).unwrap();
    let mut frame = appmedia_media::pipeline::PlayerFrame::SILENT;
    let n = allocations_during(|| {
        for _ in 0..600 {
            player.next_player_frame(&mut frame);
        }
    });
    assert_eq!(n, 0, "PromptPlayer::next_player_frame allocated");
    assert!(player.counters().packet_frames > 500);
    queue.cancel_all().unwrap();
    player.next_player_frame(&mut frame);
    let streamed = appmedia_audio_io::stream::StreamedClip::open(&fixture).unwrap();
    assert!(streamed.passes_through());
    queue.play_streamed(&streamed, PlayMode::Once).unwrap();
    let before = player.counters().packet_frames;
    let n = allocations_during(|| {
        for _ in 0..100 {
            player.next_player_frame(&mut frame);
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    });
    assert_eq!(
        n, 0,
        "PromptPlayer::next_player_frame allocated while streaming"
    );
    assert!(player.counters().packet_frames - before > 50);

    // Devices, tick side (feature `devices`): a 44.1 kHz speaker ring drained by a simulated
    // callback, a 16 kHz microphone ring filled by one.
    #[cfg(feature = "devices")]
    {
        device_tick_side_does_not_allocate(&frame.pcm, &mut out);
    }
}

#[cfg(feature = "devices")]
fn device_tick_side_does_not_allocate(
    frame: &[f32; CORE_FRAME_SAMPLES],
    out: &mut [f32; CORE_FRAME_SAMPLES],
) {
    let (mut feed, mut speaker_ring) = speaker_feed_for_test(44_100);
    let (mut source, mut mic_ring) = mic_source_for_test(16_000);
    let n = allocations_during(|| {
        for _ in 0..500 {
            feed.push_frame(frame);
            while speaker_ring.slots() > 2646 {
                let _ = speaker_ring.pop();
            }
            for _ in 0..320 {
                let _ = mic_ring.push(0.1);
            }
            source.pull_frame(out);
        }
    });
    assert_eq!(n, 0, "device tick side allocated");
}
