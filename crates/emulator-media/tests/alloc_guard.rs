//! Proves a conference's tick allocates nothing in steady state: every kind of party (a
//! looped clip, an echo, a phone, silence, a person on the network), both stream layouts, the recording, mute commands
//! and the bot's packets, under a counting allocator (per thread, so parallel tests do not
//! disturb the count).

mod common;

use std::time::Duration;

use appmedia_audio_io::record::{CallRecorder, RecordingConfig};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceMedia, PartyAudio, PartyKind, PartySpec, StreamLayout,
};
use appmedia_media::alloc_count::{CountingAllocator, allocations_during};
use appmedia_media::pipeline::CallPipeline;
use bytes::Bytes;
use common::*;

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

#[test]
fn the_counter_sees_allocations() {
    let n = allocations_during(|| {
        std::hint::black_box(Vec::<u8>::with_capacity(64));
    });
    assert_eq!(n, 1);
}

#[test]
fn a_conference_tick_allocates_nothing_in_steady_state() {
    for layout in [StreamLayout::Mixed, StreamLayout::PerSpeaker] {
        let mut conf = ConferenceMedia::new(ConferenceConfig {
            layout,
            ..ConferenceConfig::default()
        })
        .unwrap();
        let parties = [
            (
                10,
                PartyKind::User,
                PartyAudio::Speak {
                    clip: tone_clip(300.0, 0.2, 0.5),
                    looped: true,
                    start_after: Duration::from_millis(100),
                },
            ),
            (
                11,
                PartyKind::Phone,
                PartyAudio::Speak {
                    clip: tone_clip(900.0, 0.2, 0.3),
                    looped: true,
                    start_after: Duration::ZERO,
                },
            ),
            (
                12,
                PartyKind::MeetingParticipant,
                PartyAudio::Echo {
                    delay: Duration::from_millis(100),
                },
            ),
            (13, PartyKind::User, PartyAudio::Silence),
        ];
        for (id, kind, audio) in parties {
            conf.add_party(PartySpec::new(format!("p{id}"), "P", kind, id, audio))
                .unwrap();
        }
        // A person on the network: its RTP comes from a far-end pipeline, its mix goes back.
        let person = PartySpec::new("p15", "P", PartyKind::User, 15, PartyAudio::Network);
        let link = conf.add_network_party(person).unwrap();
        let mut far = CallPipeline::new(appmedia_media::pipeline::PipelineConfig {
            local_ssrc: 0xFA2,
            ..bot_config()
        })
        .unwrap();
        let far_sender = far.bot_sender();
        let dir = scratch_dir(&format!("alloc-{layout:?}"));
        let (recorder, sink) = CallRecorder::start(RecordingConfig::new(&dir, "call")).unwrap();
        conf.attach_recording(sink);
        let _packets = conf.packet_outbox(64);
        let control = conf.control();
        let mut bot = CallPipeline::new(bot_config()).unwrap();
        let bot_sender = bot.bot_sender();

        let mut allocations = 0;
        for k in 0..400u32 {
            let now = Duration::from_millis(20) * k;
            bot_sender.send_48k(&tone(1000.0, 0.3, k as usize)).unwrap();
            bot.tick(now);
            let packet = bot.outgoing_packet().map(Bytes::copy_from_slice);
            far_sender.send_48k(&tone(440.0, 0.3, k as usize)).unwrap();
            far.tick(now);
            if let Some(p) = far.outgoing_packet() {
                let _ = link.inbox.push(Bytes::copy_from_slice(p), now);
            }
            if k % 50 == 25 {
                control.set_muted(10, k % 100 == 25).unwrap();
            }
            // A party joins and leaves mid-call: built here, linked in and out on the tick.
            if k == 200 {
                let audio = PartyAudio::Speak {
                    clip: tone_clip(500.0, 0.2, 0.2),
                    looped: true,
                    start_after: Duration::ZERO,
                };
                let spec = PartySpec::new("late", "Late", PartyKind::Phone, 14, audio);
                control.add_party(spec).unwrap();
            }
            if k == 300 {
                control.remove_party(14).unwrap();
            }
            let n = allocations_during(|| {
                if let Some(p) = packet {
                    conf.push_rtp(p, now);
                }
                conf.tick(now);
                while conf.poll_event().is_some() {}
            });
            while let Some(p) = link.outbox.pop() {
                far.push_rtp(Bytes::copy_from_slice(p.as_bytes()), now);
            }
            // The first ticks open the bot's stream (a stream slot, its decoder).
            if k >= 20 {
                allocations += n;
            }
        }
        recorder.finish();
        std::fs::remove_dir_all(dir).ok();
        assert_eq!(allocations, 0, "{layout:?}: allocations on 380 ticks");
        assert!(conf.stats().bot_stream.unwrap().jitter.received > 300);
        assert_eq!(conf.parties().count(), 5, "the late party came and went");
        assert!(conf.party_stats(11).unwrap().frames_spoken > 300);
        let person = conf.party_stats(15).unwrap();
        assert!(person.frames_spoken > 300, "{person:?}");
        assert!(person.network_packets_sent > 300, "{person:?}");
    }
}

#[test]
fn a_service_hosted_tick_allocates_nothing_while_prompts_play() {
    use appmedia_audio_io::playback::{PlayMode, PromptPlayer};
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    let (player, prompts) = PromptPlayer::new(8);
    conf.play_as_bot(player);
    let echo = PartyAudio::Echo {
        delay: Duration::from_millis(60),
    };
    conf.add_party(PartySpec::new("p10", "P", PartyKind::Phone, 10, echo))
        .unwrap();
    let dir = scratch_dir("alloc-service-hosted");
    let (recorder, sink) = CallRecorder::start(RecordingConfig::new(&dir, "call")).unwrap();
    conf.attach_recording(sink);
    let _events = conf.event_outbox(64);
    let beep = tone_clip(1000.0, 0.3, 0.3);
    let mut allocations = 0;
    let mut completed = 0;
    for k in 0..300u32 {
        // Prompts are queued (and their completions read) off the tick, as the emulator does.
        if k % 25 == 5 {
            prompts.play(&beep, PlayMode::Once).unwrap();
        }
        while prompts.try_event().is_some() {
            completed += 1;
        }
        let n = allocations_during(|| {
            conf.tick(Duration::from_millis(20) * k);
        });
        if k >= 10 {
            allocations += n;
        }
    }
    recorder.finish();
    std::fs::remove_dir_all(dir).ok();
    assert_eq!(allocations, 0, "allocations on 290 ticks");
    assert!(completed >= 10, "{completed} prompts completed");
    assert!(
        conf.party_stats(10).unwrap().frames_spoken > 100,
        "the phone echoed the prompts"
    );
}

#[test]
fn muting_the_bot_playing_keys_over_it_and_recording_what_is_heard_allocate_nothing() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    for (id, freq) in [(10, 440.0), (11, 1000.0)] {
        let audio = PartyAudio::Speak {
            clip: tone_clip(freq, 0.2, 0.5),
            looped: true,
            start_after: Duration::ZERO,
        };
        conf.add_party(PartySpec::new(
            format!("p{id}"),
            "P",
            PartyKind::User,
            id,
            audio,
        ))
        .unwrap();
    }
    let dir = scratch_dir("alloc-bot-voice");
    let mut heard = RecordingConfig::new(&dir, "heard");
    heard.record_mixed = false;
    let (heard_recorder, sink) = CallRecorder::start(heard).unwrap();
    conf.attach_heard_recording(sink);
    let _events = conf.event_outbox(64);
    let control = conf.control();
    let keys = appmedia_emulator_media::in_band_dtmf(
        &[
            appmedia_media::dtmf::Tone::Tone1,
            appmedia_media::dtmf::Tone::Pound,
        ],
        Duration::from_millis(60),
    )
    .unwrap();
    let mut ear = None;
    let mut allocations = 0;
    for k in 0..300u32 {
        // Everything that allocates happens here, off the tick, as the emulator does it.
        match k % 60 {
            5 => control.set_bot_muted(true).unwrap(),
            15 => control.set_bot_muted(false).unwrap(),
            20 => {
                control.play_over_bot(&keys).unwrap();
            }
            30 => {
                let mut config = RecordingConfig::new(&dir, format!("ear-{k}"));
                config.record_speakers = false;
                let (recorder, sink) = CallRecorder::start(config).unwrap();
                control.record_bot_ear(Some(sink)).unwrap();
                ear = Some(recorder);
            }
            50 => {
                control.record_bot_ear(None).unwrap();
            }
            55 => {
                if let Some(recorder) = ear.take() {
                    recorder.finish();
                }
            }
            _ => {}
        }
        if k == 250 {
            control.detach_bot().unwrap();
        }
        let n = allocations_during(|| {
            conf.tick(Duration::from_millis(20) * k);
        });
        if k >= 10 {
            allocations += n;
        }
    }
    heard_recorder.finish();
    std::fs::remove_dir_all(dir).ok();
    assert_eq!(allocations, 0, "allocations on 290 ticks");
}
