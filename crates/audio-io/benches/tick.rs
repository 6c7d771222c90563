//! What each audio-thread entry point costs per 20 ms tick: recording push, prompt frame,
//! speaker feed (44.1 kHz device), microphone pull (16 kHz device).

use criterion::{Criterion, criterion_group, criterion_main};

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::device::test_support::{mic_source_for_test, speaker_feed_for_test};
use appmedia_audio_io::frame::CORE_FRAME_SAMPLES;
use appmedia_audio_io::playback::{PlayMode, PromptPlayer};
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};

fn ticks(c: &mut Criterion) {
    let frame = [0.1f32; CORE_FRAME_SAMPLES];
    let mut out = [0.0f32; CORE_FRAME_SAMPLES];

    let dir = std::env::temp_dir().join(format!("appmedia-audio-io-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let mut cfg = RecordingConfig::new(&dir, "bench");
    cfg.queue_frames = 4096;
    let (recorder, sink) = CallRecorder::start(cfg).expect("recorder");
    let mut tick = 0u64;
    c.bench_function("record_push_mixed_frame", |b| {
        b.iter(|| {
            tick += 1;
            let _ = sink.push(tick, Track::Mixed, std::hint::black_box(&frame));
        })
    });
    drop(sink);
    recorder.finish();
    let _ = std::fs::remove_dir_all(&dir);

    let (mut player, queue) = PromptPlayer::new(4);
    let clip = AudioClip::from_samples(vec![0.1; 48_000]).expect("clip");
    queue.play(&clip, PlayMode::Loop).expect("play");
    c.bench_function("prompt_next_frame", |b| {
        b.iter(|| player.next_frame(std::hint::black_box(&mut out)))
    });

    let (mut feed, mut ring) = speaker_feed_for_test(44_100);
    c.bench_function("speaker_push_frame_44k1", |b| {
        b.iter(|| {
            feed.push_frame(std::hint::black_box(&frame));
            while ring.slots() > 2646 {
                let _ = ring.pop();
            }
        })
    });

    let (mut source, mut mic) = mic_source_for_test(16_000);
    c.bench_function("mic_pull_frame_16k", |b| {
        b.iter(|| {
            for _ in 0..320 {
                let _ = mic.push(0.1);
            }
            source.pull_frame(std::hint::black_box(&mut out))
        })
    });
}

criterion_group!(benches, ticks);
criterion_main!(benches);
