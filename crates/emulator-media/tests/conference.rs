//! A bot-side media-core pipeline connected to ConferenceMedia in memory, with a fake clock
//! (far faster than real time). Every audio claim is measured: normalized cross-correlation at
//! the best lag against the source, or the power at a tone's frequency. Run with
//! `--nocapture` to see the measured numbers.

mod common;

use std::time::Duration;

use appmedia_audio_io::record::{CallRecorder, RecordingConfig};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceError, ConferenceEvent, ConferenceMedia, PartyAudio, PartyKind,
    PartySpec, Rejection, StreamLayout,
};
use appmedia_media::frame::{Frame48, SAMPLES_PER_FRAME_48K};
use appmedia_media::pipeline::{BotSender, CallPipeline};
use appmedia_media::rtp::RtpPacket;
use bytes::Bytes;
use common::*;

const TICK: Duration = Duration::from_millis(20);

/// The bot and the emulator, wired back to back; the test plays the network.
struct Call {
    conf: ConferenceMedia,
    bot: CallPipeline,
    bot_sender: BotSender,
    tick: u32,
    /// Drop every n-th packet in each direction (loss), if set.
    lose_every: Option<u64>,
    packets: [u64; 2],
    /// What the bot heard (its mix), 48 kHz.
    heard: Vec<f32>,
    /// SSRCs of the packets that reached the bot.
    ssrcs: Vec<u32>,
}

impl Call {
    fn new(config: ConferenceConfig) -> Call {
        let conf = ConferenceMedia::new(config).unwrap();
        let bot = CallPipeline::new(bot_config()).unwrap();
        let bot_sender = bot.bot_sender();
        Call {
            conf,
            bot,
            bot_sender,
            tick: 0,
            lose_every: None,
            packets: [0; 2],
            heard: Vec::new(),
            ssrcs: Vec::new(),
        }
    }

    fn lost(&mut self, direction: usize) -> bool {
        self.packets[direction] += 1;
        self.lose_every
            .is_some_and(|n| self.packets[direction] % n == n / 2)
    }

    /// One 20 ms step; the bot sends `bot_frame` if given.
    fn step(&mut self, bot_frame: Option<&Frame48>) {
        let now = TICK * self.tick;
        if let Some(f) = bot_frame {
            self.bot_sender.send_48k(f).unwrap();
        }
        self.conf.tick(now);
        let out: Vec<Bytes> = self
            .conf
            .outgoing_packets()
            .map(Bytes::copy_from_slice)
            .collect();
        for p in out {
            if self.lost(0) {
                continue;
            }
            self.ssrcs.push(RtpPacket::parse(p.clone()).unwrap().ssrc());
            self.bot.push_rtp(p, now + Duration::from_millis(1));
        }
        self.bot.tick(now + Duration::from_millis(10));
        self.heard.extend_from_slice(self.bot.bot_frame_48k());
        if let Some(p) = self.bot.outgoing_packet().map(Bytes::copy_from_slice)
            && !self.lost(1)
        {
            self.conf.push_rtp(p, now + Duration::from_millis(11));
        }
        self.tick += 1;
    }

    fn events(&mut self) -> Vec<ConferenceEvent> {
        std::iter::from_fn(|| self.conf.poll_event()).collect()
    }
}

fn speak(clip_name: &str) -> PartyAudio {
    PartyAudio::Speak {
        clip: clip(clip_name),
        looped: false,
        start_after: Duration::ZERO,
    }
}

/// John (source 10), a user speaking john-speech.wav.
fn john_speaking() -> PartySpec {
    PartySpec::new(
        "john-id",
        "John",
        PartyKind::User,
        10,
        speak("john-speech.wav"),
    )
}

fn recording(
    test: &str,
) -> (
    CallRecorder,
    appmedia_audio_io::record::RecordingSink,
    RecordingConfig,
) {
    let mut config = RecordingConfig::new(scratch_dir(test), "call");
    // The fake clock runs many times faster than the writer thread writes: room for the
    // whole call, so no frame is dropped (in real time 256 frames are plenty).
    config.queue_frames = 1024;
    let (rec, sink) = CallRecorder::start(config.clone()).unwrap();
    (rec, sink, config)
}

#[test]
fn the_bot_hears_john_and_the_recording_holds_what_the_bot_played() {
    let mut call = Call::new(ConferenceConfig::default());
    call.conf.add_party(john_speaking()).unwrap();
    let (rec, sink, rec_config) = recording("roundtrip");
    call.conf.attach_recording(sink);
    let prompt = clip("prompt.wav");
    let frames: Vec<Frame48> = prompt
        .samples()
        .chunks(SAMPLES_PER_FRAME_48K)
        .map(|c| {
            let mut f = [0.0; SAMPLES_PER_FRAME_48K];
            f[..c.len()].copy_from_slice(c);
            f
        })
        .collect();
    for k in 0..475 {
        call.step(frames.get(k));
    }
    let status = rec.finish();

    // The bot's recording of John vs the file John spoke, 3 s from 1 s in.
    let john = clip("john-speech.wav");
    let reference = &john.samples()[48_000..4 * 48_000];
    let (lag, ncc) = best_lag_ncc(reference, &call.heard[48_000..], 48_000, 14_400);
    eprintln!(
        "bot hears John: NCC {ncc:.3} at lag {:.1} ms",
        lag as f64 / 48.0
    );
    let (median, segs) = segmental_ncc(
        &john.samples()[..8 * 48_000],
        &call.heard,
        48_000,
        14_400,
        24_000,
    );
    eprintln!("bot hears John, 0.5 s segments: median NCC {median:.3} of {segs:.3?}");
    // Per segment, since the jitter buffer re-times playout after DTX pauses (the single
    // 3 s window above then mixes two lags).
    assert!(
        median > 0.85,
        "bot's audio of John, segmental NCC {median:.3}"
    );
    // One lag over 3 s: lower, see below; the control shows how far it is from chance.
    assert!(ncc > 0.7, "bot's audio of John: NCC {ncc:.3}");
    let jane = clip("jane-speech.wav");
    let (_, unrelated) = best_lag_ncc(
        &jane.samples()[48_000..4 * 48_000],
        &call.heard[48_000..],
        48_000,
        14_400,
    );
    eprintln!("control, Jane's file vs what the bot heard: NCC {unrelated:.3}");
    assert!(unrelated < 0.3, "control NCC {unrelated:.3}");

    // The emulator's recording of the bot (16 kHz WAV) vs prompt.wav as on disk.
    let bot_track = rec_config.path_of(appmedia_audio_io::record::Track::Speaker(1));
    let (rate, recorded) = wav_samples(&bot_track);
    assert_eq!(rate, 16_000);
    let (_, prompt16) = wav_samples(&samples_dir().join("prompt.wav"));
    let (lag, ncc) = best_lag_ncc(
        &prompt16[16_000..64_000],
        &recorded[16_000..],
        16_000,
        4_800,
    );
    eprintln!(
        "emulator records the bot: NCC {ncc:.3} at lag {:.1} ms",
        lag as f64 / 16.0
    );
    assert!(ncc > 0.85, "emulator's recording of the bot: NCC {ncc:.3}");
    let (median, _) = segmental_ncc(&prompt16, &recorded, 16_000, 4_800, 8_000);
    eprintln!("emulator records the bot, 0.5 s segments: median NCC {median:.3}");
    assert!(
        median > 0.85,
        "emulator's recording of the bot, segmental NCC {median:.3}"
    );
    // One frame per tick: the recording is as long as the call.
    assert_eq!(recorded.len(), 475 * 320, "recording length");
    assert!(status.tracks.iter().all(|t| t.error.is_none()));

    // John's clip ended and said so; the bot saw one stream, the mixed one.
    assert!(
        call.events()
            .contains(&ConferenceEvent::PartyFinishedSpeaking { source_id: 10 })
    );
    assert!(
        call.ssrcs
            .iter()
            .all(|&s| s == ConferenceConfig::default().mixed_ssrc)
    );
    let stats = call.conf.stats();
    assert_eq!(stats.bot_stream.unwrap().jitter.lost, 0);
    assert_eq!(stats.recording_frames_dropped, 0);
    std::fs::remove_dir_all(scratch_dir("roundtrip")).ok();
}

#[test]
fn an_echo_party_returns_the_bots_audio() {
    let mut call = Call::new(ConferenceConfig::default());
    call.conf
        .add_party(PartySpec::new(
            "echo-id",
            "Echo",
            PartyKind::User,
            20,
            PartyAudio::Echo {
                delay: Duration::from_millis(200),
            },
        ))
        .unwrap();
    let sent: Vec<Frame48> = (0..150).map(|k| tone(700.0, 0.3, k)).collect();
    for k in 0..200 {
        call.step(sent.get(k));
    }
    // The whole burst and the silence after it: its end fixes the lag.
    let mut reference: Vec<f32> = sent.iter().flatten().copied().collect();
    reference.resize(150 * 960 + 50 * 960 - 24_000, 0.0);
    let (lag, ncc) = best_lag_ncc(&reference, &call.heard, 48_000, 24_000);
    eprintln!("echo: NCC {ncc:.3}, round trip {:.1} ms", lag as f64 / 48.0);
    assert!(ncc > 0.9, "echo NCC {ncc:.3}");
    // 200 ms of echo delay plus the codec, jitter buffer and send cushion both ways.
    assert!((200.0..400.0).contains(&(lag as f64 / 48.0)));
}

#[test]
fn mix_minus_the_bot_never_hears_itself() {
    let mut call = Call::new(ConferenceConfig::default());
    let silent = PartySpec::new("bob-id", "Bob", PartyKind::User, 30, PartyAudio::Silence);
    call.conf.add_party(silent).unwrap();
    call.conf
        .add_party(PartySpec::new(
            "jane-id",
            "Jane",
            PartyKind::User,
            31,
            PartyAudio::Speak {
                clip: tone_clip(450.0, 0.3, 10.0),
                looped: false,
                start_after: Duration::ZERO,
            },
        ))
        .unwrap();
    let mut bob_heard = Vec::new();
    let mut jane_heard = Vec::new();
    for k in 0..150 {
        call.step(Some(&tone(1000.0, 0.3, k)));
        if k >= 50 {
            bob_heard.extend_from_slice(call.conf.party_hears(30).unwrap());
            jane_heard.extend_from_slice(call.conf.party_hears(31).unwrap());
        }
    }
    let heard = &call.heard[50 * 960..];
    let own = power_at(heard, 48_000.0, 1000.0);
    let jane = power_at(heard, 48_000.0, 450.0);
    eprintln!(
        "mix-minus: bot hears its own 1 kHz at {:.1} dB below Jane's 450 Hz",
        10.0 * (jane / own.max(1e-30)).log10()
    );
    assert!(jane > 0.015, "the bot hears Jane: {jane}");
    assert!(
        own < jane * 1e-4,
        "the bot's own tone came back: {own} vs {jane}"
    );
    // The parties do hear the bot; Jane does not hear herself.
    assert!(power_at(&bob_heard, 48_000.0, 1000.0) > 0.015);
    assert!(power_at(&bob_heard, 48_000.0, 450.0) > 0.015);
    assert!(power_at(&jane_heard, 48_000.0, 1000.0) > 0.015);
    let jane_self = power_at(&jane_heard, 48_000.0, 450.0);
    eprintln!(
        "mix-minus: Jane hears herself at {:.1} dB",
        10.0 * jane_self.max(1e-30).log10()
    );
    assert!(jane_self < 1e-7, "Jane hears herself: {jane_self}");
}

#[test]
fn unmixed_streams_carry_each_speaker_on_its_own_ssrc() {
    let mut call = Call::new(ConferenceConfig {
        layout: StreamLayout::PerSpeaker,
        ..ConferenceConfig::default()
    });
    // Five speakers (more than Graph's four), a phone among them.
    let tones = [
        (40u32, 500.0f32),
        (41, 700.0),
        (42, 900.0),
        (43, 1100.0),
        (44, 1300.0),
    ];
    for (i, &(id, f)) in tones.iter().enumerate() {
        let kind = if i == 4 {
            PartyKind::Phone
        } else {
            PartyKind::MeetingParticipant
        };
        let audio = PartyAudio::Speak {
            clip: tone_clip(f, 0.2, 1.0),
            looped: true,
            start_after: Duration::ZERO,
        };
        call.conf
            .add_party(PartySpec::new(
                format!("p{id}"),
                format!("P{id}"),
                kind,
                id,
                audio,
            ))
            .unwrap();
    }
    let mut per_source: std::collections::BTreeMap<u32, Vec<f32>> = Default::default();
    for k in 0..100 {
        call.step(None);
        if k >= 50 {
            for u in call.bot.unmixed() {
                per_source
                    .entry(u.source_id)
                    .or_default()
                    .extend_from_slice(u.pcm48);
            }
        }
    }
    let candidates: Vec<f32> = tones.iter().map(|t| t.1).collect();
    for &(id, f) in &tones {
        let audio = per_source
            .get(&id)
            .unwrap_or_else(|| panic!("no unmixed audio of {id}"));
        let got = strongest(audio, 48_000.0, &candidates);
        let own = power_at(audio, 48_000.0, f);
        let others: f64 = candidates
            .iter()
            .filter(|&&c| c != f)
            .map(|&c| power_at(audio, 48_000.0, c))
            .sum();
        eprintln!(
            "unmixed {id}: {got} Hz, others {:.1} dB below",
            10.0 * (own / others).log10()
        );
        assert_eq!(got, f, "source {id} carries {got} Hz");
        assert!(
            own > 100.0 * others,
            "source {id} is not alone: {own} vs {others}"
        );
    }
    // Every SSRC the bot received is a party's source id: no mixed stream on top.
    let ids: std::collections::BTreeSet<u32> = call.ssrcs.iter().copied().collect();
    assert_eq!(ids, tones.iter().map(|t| t.0).collect());
    assert_eq!(call.bot.active_speakers().len(), 5);
    assert!(call.conf.stats().unmixed_packets_sent >= 5 * 95);
    let map: std::collections::BTreeMap<u32, String> = call
        .conf
        .source_map()
        .map(|(s, p)| (s, p.to_owned()))
        .collect();
    assert_eq!(map.get(&42).map(String::as_str), Some("p42"));
}

/// Power above 4 kHz relative to 500 Hz–3 kHz, summed over frames (the sweep visits each
/// frequency in turn).
fn high_to_band_ratio(samples: &[f32]) -> f64 {
    let mut high = 0.0;
    let mut band = 0.0;
    for frame in samples.chunks(960) {
        for f in (4500..=7000).step_by(250) {
            high += power_at_windowed(frame, 48_000.0, f as f32);
        }
        for f in (500..=3000).step_by(250) {
            band += power_at_windowed(frame, 48_000.0, f as f32);
        }
    }
    high / band
}

#[test]
fn a_phone_party_has_no_energy_above_4_khz() {
    let mut ratios = Vec::new();
    for kind in [PartyKind::User, PartyKind::Phone] {
        let mut call = Call::new(ConferenceConfig::default());
        call.conf
            .add_party(PartySpec::new(
                "p",
                "P",
                kind,
                50,
                speak("sweep-100-7000hz-48k.wav"),
            ))
            .unwrap();
        for _ in 0..210 {
            call.step(None);
        }
        ratios.push(high_to_band_ratio(&call.heard));
    }
    eprintln!(
        "above 4 kHz vs speech band: user {:.1} dB, phone {:.1} dB",
        10.0 * ratios[0].log10(),
        10.0 * ratios[1].log10()
    );
    assert!(
        ratios[0] > 0.05,
        "a user's sweep keeps its top: {}",
        ratios[0]
    );
    assert!(
        ratios[1] < 1e-4,
        "a phone's sweep has energy above 4 kHz: {}",
        ratios[1]
    );
}

#[test]
fn a_muted_party_is_silent_until_unmuted() {
    for layout in [StreamLayout::Mixed, StreamLayout::PerSpeaker] {
        let mut call = Call::new(ConferenceConfig {
            layout,
            ..ConferenceConfig::default()
        });
        let mut spec = PartySpec::new(
            "john-id",
            "John",
            PartyKind::User,
            10,
            PartyAudio::Speak {
                clip: tone_clip(600.0, 0.3, 5.0),
                looped: true,
                start_after: Duration::ZERO,
            },
        );
        spec.muted = true;
        call.conf.add_party(spec).unwrap();
        for _ in 0..100 {
            call.step(None);
        }
        let muted_power = mean_power(&call.heard[20 * 960..]);
        call.conf.set_muted(10, false).unwrap();
        for _ in 0..60 {
            call.step(None);
        }
        let open = power_at(&call.heard[130 * 960..], 48_000.0, 600.0);
        eprintln!("{layout:?}: muted power {muted_power:e}, unmuted 600 Hz power {open:.4}");
        assert!(
            muted_power < 1e-7,
            "{layout:?}: muted party audible: {muted_power}"
        );
        assert!(open > 0.015, "{layout:?}: unmuted party not heard: {open}");
        let events = call.events();
        // A muted party's first audio is when it is unmuted (tick 100), not when it joined.
        let started: Vec<Duration> = events
            .iter()
            .filter_map(|e| match e {
                ConferenceEvent::PartyAudioStarted { source_id: 10, at } => Some(*at),
                _ => None,
            })
            .collect();
        assert_eq!(started.len(), 1, "{events:?}");
        assert!(started[0] >= TICK * 99, "{started:?}");
        let party_events: Vec<_> = events
            .into_iter()
            .filter(|e| {
                !matches!(
                    e,
                    ConferenceEvent::BotStreamStarted { .. }
                        | ConferenceEvent::PartyAudioStarted { .. }
                )
            })
            .collect();
        assert_eq!(
            party_events,
            vec![
                ConferenceEvent::PartyAdded { source_id: 10 },
                ConferenceEvent::PartyMuted {
                    source_id: 10,
                    muted: false
                },
            ]
        );
    }
}

#[test]
fn a_bot_that_never_sends_is_recorded_as_silence_of_the_calls_length() {
    let mut call = Call::new(ConferenceConfig::default());
    call.conf.add_party(john_speaking()).unwrap();
    let (rec, sink, rec_config) = recording("silentbot");
    call.conf.attach_recording(sink);
    for _ in 0..150 {
        call.conf.tick(TICK * call.tick);
        call.tick += 1;
    }
    let status = rec.finish();
    let (rate, bot) =
        wav_samples(&rec_config.path_of(appmedia_audio_io::record::Track::Speaker(1)));
    assert_eq!(rate, 16_000);
    assert_eq!(bot.len(), 3 * 16_000, "3 s of call, 3 s of recording");
    assert!(bot.iter().all(|&s| s == 0.0));
    // The mixed track has John in it.
    let (_, mixed) = wav_samples(&rec_config.path_of(appmedia_audio_io::record::Track::Mixed));
    assert_eq!(mixed.len(), 3 * 16_000);
    assert!(mean_power(&mixed) > 1e-4);
    assert!(status.tracks.iter().all(|t| t.error.is_none()));
    let stats = call.conf.stats();
    assert!(stats.bot_stream.is_none());
    assert_eq!(stats.bot_leg.rtp_errors.total(), 0);
    std::fs::remove_dir_all(scratch_dir("silentbot")).ok();
}

#[test]
fn packet_loss_both_ways_is_concealed_and_counted() {
    let mut call = Call::new(ConferenceConfig::default());
    call.lose_every = Some(10);
    call.conf.add_party(john_speaking()).unwrap();
    let sent: Vec<Frame48> = (0..300).map(|k| tone(800.0, 0.3, k)).collect();
    let mut bot_at_conf = Vec::new();
    for k in 0..300 {
        call.step(sent.get(k));
        bot_at_conf.extend_from_slice(call.conf.bot_audio());
    }
    let stats = call.conf.stats();
    let jitter = stats.bot_stream.unwrap().jitter;
    eprintln!(
        "10% loss: lost {}, concealed {}, FEC recovered {}",
        jitter.lost, jitter.concealed, jitter.fec_recovered
    );
    assert!(jitter.lost >= 25, "lost {}", jitter.lost);
    assert!(jitter.concealed + jitter.fec_recovered >= jitter.lost);
    assert!(jitter.fec_recovered > 0, "in-band FEC repaired some frames");
    // The bot's tone reaches the conference whole: concealment and FEC fill the holes.
    let reference: Vec<f32> = sent[50..250].iter().flatten().copied().collect();
    let (median, _) = segmental_ncc(&reference, &bot_at_conf[50 * 960..], 48_000, 9_600, 24_000);
    let tone_power = power_at(&bot_at_conf[50 * 960..250 * 960], 48_000.0, 800.0);
    eprintln!("bot's tone through 10% loss: segmental NCC {median:.3}, power {tone_power:.4}");
    assert!(median > 0.8, "bot's tone through loss: NCC {median:.3}");
    assert!(
        tone_power > 0.015,
        "bot's tone through loss: power {tone_power}"
    );
    // And John reaches the bot.
    let john = clip("john-speech.wav");
    let (_, ncc) = best_lag_ncc(
        &john.samples()[48_000..4 * 48_000],
        &call.heard[48_000..],
        48_000,
        14_400,
    );
    eprintln!("bot hears John through 10% loss: NCC {ncc:.3}");
    assert!(ncc > 0.6, "John through loss: NCC {ncc:.3}");
    let bot_stats: Vec<_> = call.bot.stream_stats().collect();
    assert!(bot_stats[0].jitter.lost >= 25);
}

#[test]
fn bad_party_commands_are_typed_errors_or_rejection_events() {
    let mut conf = ConferenceMedia::new(ConferenceConfig {
        max_parties: 2,
        ..ConferenceConfig::default()
    })
    .unwrap();
    let spec = |id: &str, sid| PartySpec::new(id, id, PartyKind::User, sid, PartyAudio::Silence);
    assert!(matches!(
        conf.add_party(spec("a", 0)),
        Err(ConferenceError::ReservedSourceId(0))
    ));
    assert!(matches!(
        conf.add_party(spec("a", 1)),
        Err(ConferenceError::ReservedSourceId(1))
    ));
    conf.add_party(spec("a", 7)).unwrap();
    assert!(matches!(
        conf.add_party(spec("b", 7)),
        Err(ConferenceError::DuplicateSourceId(7))
    ));
    assert!(matches!(
        conf.add_party(spec("a", 8)),
        Err(ConferenceError::DuplicateParticipant(ref p)) if p == "a"
    ));
    conf.add_party(spec("b", 8)).unwrap();
    assert!(matches!(
        conf.add_party(spec("c", 9)),
        Err(ConferenceError::Full(2))
    ));
    assert!(matches!(
        conf.set_muted(99, true),
        Err(ConferenceError::UnknownParty(99))
    ));
    let echo = PartyAudio::Echo {
        delay: Duration::from_secs(60),
    };
    assert!(matches!(
        conf.set_audio(7, &echo),
        Err(ConferenceError::Audio(_))
    ));
    assert!(
        ConferenceMedia::new(ConferenceConfig {
            max_parties: 0,
            ..Default::default()
        })
        .is_err()
    );

    // Through the control handle: refusals come back as events, the call goes on.
    let control = conf.control();
    control.remove_party(8).unwrap();
    control.add_party(spec("c", 7)).unwrap();
    control.remove_party(42).unwrap();
    conf.tick(Duration::ZERO);
    let events: Vec<_> = std::iter::from_fn(|| conf.poll_event()).collect();
    assert!(events.contains(&ConferenceEvent::CommandRejected {
        source_id: 7,
        reason: Rejection::DuplicateSourceId
    }));
    assert!(events.contains(&ConferenceEvent::CommandRejected {
        source_id: 42,
        reason: Rejection::UnknownParty
    }));
    assert!(events.contains(&ConferenceEvent::PartyRemoved { source_id: 8 }));
    assert_eq!(conf.stats().commands_rejected, 2);
    assert_eq!(conf.parties().count(), 1);

    // Garbage from the network is counted, not fatal.
    conf.push_rtp(
        Bytes::from_static(b"\x80garbage"),
        Duration::from_millis(20),
    );
    conf.push_rtp(Bytes::from_static(&[0xFF; 40]), Duration::from_millis(20));
    conf.tick(Duration::from_millis(20));
    assert_eq!(conf.stats().bot_leg.rtp_errors.total(), 2);
    assert!(conf.stats().bot_stream.is_none());
}

#[test]
fn a_bot_restarting_its_stream_under_a_new_ssrc_replaces_it() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    let mut first = CallPipeline::new(bot_config()).unwrap();
    let mut second = CallPipeline::new(appmedia_media::pipeline::PipelineConfig {
        local_ssrc: 0x5EC0,
        initial_sequence_number: 40_000,
        ..bot_config()
    })
    .unwrap();
    let mut tail = Vec::new();
    for k in 0..120usize {
        let now = TICK * k as u32;
        let (bot, freq) = if k < 60 {
            (&mut first, 1000.0)
        } else {
            (&mut second, 600.0)
        };
        bot.bot_sender().send_48k(&tone(freq, 0.3, k)).unwrap();
        bot.tick(now);
        if let Some(p) = bot.outgoing_packet().map(Bytes::copy_from_slice) {
            conf.push_rtp(p, now + Duration::from_millis(5));
        }
        conf.tick(now + Duration::from_millis(10));
        if k >= 90 {
            tail.extend_from_slice(conf.bot_audio());
        }
    }
    let events: Vec<_> = std::iter::from_fn(|| conf.poll_event()).collect();
    assert_eq!(
        events,
        vec![
            ConferenceEvent::BotStreamStarted { ssrc: BOT_SSRC },
            ConferenceEvent::BotStreamReset { ssrc: 0x5EC0 },
        ]
    );
    assert_eq!(strongest(&tail, 48_000.0, &[600.0, 1000.0]), 600.0);
    assert!(
        power_at(&tail, 48_000.0, 1000.0) < 1e-6,
        "the old stream is gone"
    );
    assert_eq!(conf.stats().bot_stream.unwrap().ssrc, 0x5EC0);
}

#[test]
fn prompts_played_as_the_bot_reach_every_party_and_nothing_goes_to_an_rtp_bot() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    let (player, queue) = appmedia_audio_io::playback::PromptPlayer::new(4);
    conf.play_as_bot(player);
    conf.add_party(PartySpec::new(
        "p",
        "P",
        PartyKind::User,
        10,
        PartyAudio::Silence,
    ))
    .unwrap();
    let prompt = tone_clip(700.0, 0.5, 0.2); // 10 frames
    queue
        .play(&prompt, appmedia_audio_io::playback::PlayMode::Once)
        .unwrap();
    let mut heard = Vec::new();
    let mut bot = Vec::new();
    for k in 0..15u32 {
        conf.tick(TICK * k);
        assert_eq!(conf.outgoing_packets().count(), 0, "no RTP bot, no packets");
        heard.extend_from_slice(conf.party_hears(10).unwrap());
        bot.extend_from_slice(conf.bot_audio());
    }
    // The prompt is heard on the tick it is played (no decoding delay), then silence.
    assert_eq!(&bot[..prompt.samples().len()], prompt.samples());
    assert_eq!(&heard[..prompt.samples().len()], prompt.samples());
    assert!(heard[prompt.samples().len()..].iter().all(|&s| s == 0.0));
    let done = queue.try_event().expect("a completion event");
    assert_eq!(
        done.outcome,
        appmedia_audio_io::playback::PromptOutcome::Completed
    );
    assert_eq!(conf.stats().bot_leg.packets_sent, 0);
}

#[test]
fn a_partys_first_audible_sample_is_reported_once_with_its_time() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    // 100 silent samples, then sound, starting 2 frames after joining.
    let mut samples = vec![0.0f32; 100];
    samples.extend([0.5f32; 2000]);
    let clip = appmedia_audio_io::clip::AudioClip::from_samples(samples).unwrap();
    let speak = PartyAudio::Speak {
        clip,
        looped: false,
        start_after: TICK * 2,
    };
    conf.add_party(PartySpec::new("p", "P", PartyKind::User, 10, speak))
        .unwrap();
    conf.add_party(PartySpec::new(
        "q",
        "Q",
        PartyKind::User,
        11,
        PartyAudio::Silence,
    ))
    .unwrap();
    let mut started = Vec::new();
    for k in 0..10u32 {
        conf.tick(TICK * (k + 5)); // the tick clock need not start at zero
        started.extend(conf_events(&mut conf).into_iter().filter_map(|e| match e {
            ConferenceEvent::PartyAudioStarted { source_id, at } => Some((source_id, at)),
            _ => None,
        }));
    }
    // Ticks 5, 6 wait; tick 7 plays samples 0..960 of the clip, sample 100 being the first
    // audible: spoken at 7 × 20 ms − 20 ms + 100 / 48 kHz.
    let expected = TICK * 6 + Duration::from_nanos(100 * 1_000_000_000 / 48_000);
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0].0, 10);
    let error = started[0].1.abs_diff(expected);
    assert!(
        error < Duration::from_micros(1),
        "{:?} vs {expected:?}",
        started[0].1
    );
}

fn conf_events(conf: &mut ConferenceMedia) -> Vec<ConferenceEvent> {
    std::iter::from_fn(|| conf.poll_event()).collect()
}
