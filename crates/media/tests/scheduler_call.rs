//! A real call on real threads: two `CallPipeline`s ticked by the scheduler in
//! real time, a relay thread playing the network between their packet queues,
//! and a bot thread on each side, exactly as the transport and a bot would use
//! them. Bounded: every loop stops after at most `PATIENCE`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use appmedia_media::frame::SILENT_FRAME_48;
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_media::scheduler::{Scheduler, SchedulerConfig};
use appmedia_media::synth::SpeechLike;
use bytes::Bytes;

const PATIENCE: Duration = Duration::from_secs(20);

#[test]
fn two_pipelines_talk_through_the_scheduler() {
    let mut alice = CallPipeline::new(PipelineConfig {
        local_ssrc: 0xA11CE,
        bot_format: BotAudioFormat::Pcm16k,
        ..PipelineConfig::default()
    })
    .unwrap();
    let mut bob = CallPipeline::new(PipelineConfig {
        local_ssrc: 0xB0B,
        bot_format: BotAudioFormat::Pcm16k,
        ..PipelineConfig::default()
    })
    .unwrap();
    let (alice_out, bob_out) = (alice.packet_outbox(32), bob.packet_outbox(32));
    let (alice_in, bob_in) = (alice.rtp_inbox(), bob.rtp_inbox());
    let alice_bot = alice.bot_sender();
    let bob_hears = bob.bot_audio_outbox(32).unwrap();

    let scheduler = Arc::new(
        Scheduler::start(SchedulerConfig {
            workers: 2,
            ..SchedulerConfig::default()
        })
        .unwrap(),
    );
    let epoch = scheduler.epoch();
    let calls = [scheduler.add(alice).unwrap(), scheduler.add(bob).unwrap()];
    let stop = Arc::new(AtomicBool::new(false));

    // The network: moves each side's packets to the other, stamped with the
    // scheduler's clock so the jitter buffers see real arrival times.
    let relayed = Arc::new(AtomicU64::new(0));
    let network = {
        let (stop, relayed) = (stop.clone(), relayed.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            while !stop.load(Ordering::Acquire) && start.elapsed() < PATIENCE {
                let mut moved = false;
                while let Some(p) = alice_out.pop() {
                    let _ = bob_in.push(Bytes::copy_from_slice(p.as_bytes()), epoch.elapsed());
                    relayed.fetch_add(1, Ordering::Relaxed);
                    moved = true;
                }
                while let Some(p) = bob_out.pop() {
                    let _ = alice_in.push(Bytes::copy_from_slice(p.as_bytes()), epoch.elapsed());
                    moved = true;
                }
                if !moved {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };

    // Alice's bot speaks at real-time pace from its own thread.
    let speaker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut voice = SpeechLike::new(2);
            let mut frame = SILENT_FRAME_48;
            let start = Instant::now();
            let mut k = 0u32;
            while !stop.load(Ordering::Acquire) && start.elapsed() < PATIENCE {
                voice.next_frame(&mut frame);
                let _ = alice_bot.send_48k(&frame);
                k += 1;
                // Absolute pacing, like the scheduler.
                let next = start + Duration::from_millis(20) * k;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        })
    };

    // Bob's bot listens until it has heard 25 frames of speech (0.5 s).
    let start = Instant::now();
    let mut speech_frames = 0;
    while speech_frames < 25 {
        assert!(
            start.elapsed() < PATIENCE,
            "Bob heard only {speech_frames} speech frames; {} packets relayed",
            relayed.load(Ordering::Relaxed)
        );
        match bob_hears.pop() {
            Some(audio) if !audio.is_silence => speech_frames += 1,
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }

    stop.store(true, Ordering::Release);
    network.join().unwrap();
    speaker.join().unwrap();
    for call in &calls {
        call.remove();
    }
    let stats = Arc::try_unwrap(scheduler).unwrap().shutdown();
    assert!(stats.ticks() > 0);
    assert_eq!(stats.workers.iter().map(|w| w.panics).sum::<u64>(), 0);
}
