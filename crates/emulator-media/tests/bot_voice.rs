//! What Graph's in-call actions do to a conference, measured with a fake clock: a server-muted
//! bot reaches nobody, a departed (transferred) bot leaves the parties talking and gets no
//! more packets, keys played in the bot's name are heard, a key a party presses is an event,
//! and the two recordings the service makes — what each party heard, what the bot heard from
//! the moment it asked — hold what they should.

mod common;

use std::time::Duration;

use appmedia_audio_io::playback::{PlayMode, PromptPlayer, PromptQueue};
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceEvent, ConferenceMedia, PartyAudio, PartyKind, PartySpec,
    StreamLayout, in_band_dtmf,
};
use appmedia_media::dtmf::Tone;
use common::*;

const TICK: Duration = Duration::from_millis(20);
const RATE: f32 = 48_000.0;

fn looped(freq: f32) -> PartyAudio {
    PartyAudio::Speak {
        clip: tone_clip(freq, 0.3, 1.0),
        looped: true,
        start_after: Duration::ZERO,
    }
}

/// A service-hosted conference whose "bot" says 600 Hz, with Ann (10, 440 Hz) and Ben
/// (11, 1 kHz).
fn conference() -> (ConferenceMedia, PromptQueue) {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    let (player, prompts) = PromptPlayer::new(4);
    prompts
        .play(&tone_clip(600.0, 0.3, 1.0), PlayMode::Loop)
        .unwrap();
    conf.play_as_bot(player);
    for (id, freq) in [(10, 440.0), (11, 1000.0)] {
        let spec = PartySpec::new(format!("p{id}"), "P", PartyKind::User, id, looped(freq));
        conf.add_party(spec).unwrap();
    }
    (conf, prompts)
}

/// Runs `ticks` ticks from tick `from`; returns what party `listener` heard.
fn run(conf: &mut ConferenceMedia, from: u32, ticks: u32, listener: u32) -> Vec<f32> {
    let mut heard = Vec::new();
    for k in from..from + ticks {
        conf.tick(TICK * k);
        heard.extend_from_slice(conf.party_hears(listener).unwrap());
    }
    heard
}

fn present(samples: &[f32], freq: f32) -> bool {
    power_at_windowed(samples, RATE, freq) > 1e-3
}

fn absent(samples: &[f32], freq: f32) -> bool {
    power_at_windowed(samples, RATE, freq) < 1e-9
}

#[test]
fn a_muted_bot_reaches_nobody_and_an_unmuted_one_everybody() {
    let (mut conf, _prompts) = conference();
    let control = conf.control();
    let before = run(&mut conf, 0, 25, 10);
    assert!(present(&before[9600..], 600.0) && present(&before[9600..], 1000.0));
    control.set_bot_muted(true).unwrap();
    let muted = run(&mut conf, 25, 25, 10);
    // The bot's frame of the last tick may still be in the first muted tick's mix.
    assert!(absent(&muted[1920..], 600.0), "muted bot heard");
    assert!(present(&muted[1920..], 1000.0), "Ben still heard");
    control.set_bot_muted(false).unwrap();
    let unmuted = run(&mut conf, 50, 25, 10);
    assert!(present(&unmuted[1920..], 600.0));
    // Unmuted, the bot's own audio (its recording track) is back too.
    assert!(conf.bot_audio().iter().any(|&s| s != 0.0));
}

#[test]
fn a_departed_bot_leaves_the_parties_talking_and_gets_no_more_packets() {
    // An RTP bot this time: the streams to it stop, mixed or one per speaker.
    for layout in [StreamLayout::Mixed, StreamLayout::PerSpeaker] {
        let mut conf = ConferenceMedia::new(ConferenceConfig {
            layout,
            ..ConferenceConfig::default()
        })
        .unwrap();
        for (id, freq) in [(10, 440.0), (11, 1000.0)] {
            let spec = PartySpec::new(format!("p{id}"), "P", PartyKind::User, id, looped(freq));
            conf.add_party(spec).unwrap();
        }
        let mut sent = 0;
        for k in 0..25u32 {
            conf.tick(TICK * k);
            sent += conf.outgoing_packets().count();
        }
        assert!(sent > 20, "{layout:?}: the bot gets the parties: {sent}");
        conf.control().detach_bot().unwrap();
        let mut heard = Vec::new();
        let mut after = 0;
        for k in 25..60u32 {
            conf.tick(TICK * k);
            after += conf.outgoing_packets().count();
            heard.extend_from_slice(conf.party_hears(10).unwrap());
        }
        assert_eq!(after, 0, "{layout:?}: packets to a bot that left");
        assert!(present(&heard, 1000.0), "Ann hears Ben");
        assert!(absent(&heard, 440.0), "and not herself");
    }
}

#[test]
fn keys_played_over_the_bot_are_heard_by_the_parties() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    conf.add_party(PartySpec::new(
        "p10",
        "P",
        PartyKind::Phone,
        10,
        PartyAudio::Silence,
    ))
    .unwrap();
    let keys = in_band_dtmf(&[Tone::Tone1, Tone::Tone9], Duration::from_millis(100)).unwrap();
    conf.control().play_over_bot(&keys).unwrap();
    let heard = run(&mut conf, 0, 20, 10);
    // The 1 (697 + 1209 Hz) in the first 100 ms, the 9 (852 + 1477 Hz) 200 ms later (each
    // looked at well inside its 100 ms).
    let one = &heard[960..4320];
    let nine = &heard[10_560..13_920];
    assert!(present(one, 697.0) && present(one, 1209.0), "the 1");
    assert!(absent(one, 852.0), "not the 9 yet");
    assert!(present(nine, 852.0) && present(nine, 1477.0), "the 9");
}

#[test]
fn a_key_a_party_presses_is_an_event() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    conf.add_party(PartySpec::new(
        "p10",
        "P",
        PartyKind::Phone,
        10,
        PartyAudio::Silence,
    ))
    .unwrap();
    conf.control().press(10, Tone::Pound).unwrap();
    conf.tick(Duration::ZERO);
    let events: Vec<ConferenceEvent> = std::iter::from_fn(|| conf.poll_event()).collect();
    assert!(
        events.contains(&ConferenceEvent::PartyPressedKey {
            source_id: 10,
            tone: Tone::Pound
        }),
        "{events:?}"
    );
}

#[test]
fn the_service_records_what_each_party_and_the_bot_heard() {
    let (mut conf, _prompts) = conference();
    let dir = scratch_dir("heard");
    let mut heard_config = RecordingConfig::new(&dir, "call-heard-by");
    heard_config.record_mixed = false;
    heard_config.queue_frames = 1024;
    let (heard_recorder, sink) = CallRecorder::start(heard_config.clone()).unwrap();
    conf.attach_heard_recording(sink);
    run(&mut conf, 0, 50, 10);
    // What the bot hears, from tick 50 to tick 100 only.
    let mut ear_config = RecordingConfig::new(&dir, "response");
    ear_config.record_speakers = false;
    ear_config.queue_frames = 1024;
    let (ear_recorder, sink) = CallRecorder::start(ear_config.clone()).unwrap();
    conf.control().record_bot_ear(Some(sink)).unwrap();
    run(&mut conf, 50, 50, 10);
    conf.control().record_bot_ear(None).unwrap();
    run(&mut conf, 100, 10, 10);
    heard_recorder.finish();
    ear_recorder.finish();

    let (rate, ann) = wav_samples(&heard_config.path_of(Track::Speaker(10)));
    let rate = rate as f32;
    assert!(
        (ann.len() as f32 / rate - 2.2).abs() < 0.05,
        "the whole call"
    );
    let tail = &ann[ann.len() / 2..];
    assert!(
        power_at_windowed(tail, rate, 600.0) > 1e-3,
        "Ann heard the bot"
    );
    assert!(power_at_windowed(tail, rate, 1000.0) > 1e-3, "and Ben");
    assert!(power_at_windowed(tail, rate, 440.0) < 1e-7, "not herself");
    let (rate, ear) = wav_samples(&ear_config.path_of(Track::Mixed));
    let rate = rate as f32;
    let seconds = ear.len() as f32 / rate;
    assert!(
        (seconds - 1.0).abs() < 0.05,
        "50 ticks from its start: {seconds} s"
    );
    assert!(power_at_windowed(&ear, rate, 440.0) > 1e-3);
    assert!(power_at_windowed(&ear, rate, 1000.0) > 1e-3);
    assert!(
        power_at_windowed(&ear, rate, 600.0) < 1e-7,
        "the bot never hears itself"
    );
    std::fs::remove_dir_all(dir).ok();
}
