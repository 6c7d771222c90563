//! Real time over UDP on 127.0.0.1: the conference on the media core's scheduler, a bot
//! (a media-core CallPipeline) on another scheduler, each behind the transport crate's
//! plain-RTP session (Opus RTP over bare UDP). The test thread pumps the conference's queues
//! into the session's endpoint, as the emulator's transport task will. Thresholds are
//! lenient: the machine is shared and real time may hiccup; nothing here asserts speed.

mod common;

use std::time::{Duration, Instant};

use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};
use appmedia_emulator_media::realtime::{ConferenceScheduler, QueueSizes, RunningConference};
use appmedia_emulator_media::{
    ConferenceConfig, ConferenceEvent, ConferenceMedia, ConferenceStats, PartyAudio, PartyKind,
    PartySpec, StreamLayout,
};
use appmedia_media::pipeline::{BotAudio16k, BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_media::scheduler::{Scheduler, SchedulerConfig};
use appmedia_transport::{PlainRtpConfig, PlainRtpSession};
use common::*;

fn one_worker() -> SchedulerConfig {
    SchedulerConfig {
        workers: 1,
        ..SchedulerConfig::default()
    }
}

/// Two free loopback addresses (bound, then released for the sessions to take).
fn two_addresses() -> (std::net::SocketAddr, std::net::SocketAddr) {
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    (a.local_addr().unwrap(), b.local_addr().unwrap())
}

/// Runs the call for `duration`; returns what the bot received, the conference's events and
/// its last stats.
fn run(
    conference: ConferenceMedia,
    bot: CallPipeline,
    tone_frames: usize,
    duration: Duration,
) -> (Vec<BotAudio16k>, Vec<ConferenceEvent>, ConferenceStats) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (conf_addr, bot_addr) = two_addresses();
    let conf_session = runtime
        .block_on(PlainRtpSession::bind(PlainRtpConfig::new(
            conf_addr, bot_addr,
        )))
        .unwrap();
    let bot_session = runtime
        .block_on(PlainRtpSession::bind(PlainRtpConfig::new(
            bot_addr, conf_addr,
        )))
        .unwrap();

    let conf_scheduler = ConferenceScheduler::start(one_worker()).unwrap();
    let bot_scheduler: Scheduler<CallPipeline> = Scheduler::start(one_worker()).unwrap();
    let mut bot = bot;
    // The bot plays a 1 kHz tone through a player queued ahead (no pacing thread needed).
    let player = bot.add_player(tone_frames).unwrap();
    for k in 0..tone_frames {
        player.send(&tone(1000.0, 0.3, k)).unwrap();
    }
    let bot_hears = bot.bot_audio_outbox(512).unwrap();
    bot_session.attach_pipeline(&mut bot, bot_scheduler.epoch());
    let endpoint = conf_session.take_endpoint().unwrap();
    let mut call =
        RunningConference::start(&conf_scheduler, conference, QueueSizes::default()).unwrap();
    let bot_call = bot_scheduler.add(bot).unwrap();

    let mut heard = Vec::new();
    let mut events = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        call.pump(&endpoint.incoming, &endpoint.outgoing);
        while let Some(a) = bot_hears.pop() {
            heard.push(a);
        }
        while let Some(e) = call.next_event() {
            events.push(e);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let stats = call.latest_stats().expect("the conference ticked");
    call.stop();
    bot_call.remove();
    let conf_stats = conf_scheduler.shutdown();
    bot_scheduler.shutdown();
    eprintln!(
        "scheduler: {} ticks, {} late, tick time {:?}",
        conf_stats.ticks(),
        conf_stats.late_ticks(),
        conf_stats.tick_time()
    );
    let (c, b) = (conf_session.stats(), bot_session.stats());
    eprintln!("plain RTP: emulator {c:?}\nplain RTP: bot {b:?}");
    assert_eq!(c.send_errors + b.send_errors, 0);
    assert_eq!(
        c.garbage + b.garbage + c.wrong_payload_type + b.wrong_payload_type,
        0
    );
    (heard, events, stats)
}

fn bot() -> CallPipeline {
    CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm16k,
        max_players: 1,
        ..bot_config()
    })
    .unwrap()
}

fn pcm(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(2)
        .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0)
}

#[test]
fn a_call_over_udp_loopback_in_real_time() {
    let dir = scratch_dir("realtime");
    let rec_config = RecordingConfig::new(&dir, "call");
    let (recorder, sink) = CallRecorder::start(rec_config.clone()).unwrap();
    let mut conference = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    conference
        .add_party(PartySpec::new(
            "john-id",
            "John",
            PartyKind::User,
            10,
            PartyAudio::Speak {
                clip: clip("john-speech.wav"),
                looped: false,
                start_after: Duration::ZERO,
            },
        ))
        .unwrap();
    conference.attach_recording(sink);

    let (heard, events, stats) = run(conference, bot(), 150, Duration::from_secs(4));
    let status = recorder.finish();

    // The bot heard John (16 kHz, Graph's format) — compared with the file he spoke.
    let mixed: Vec<f32> = heard.iter().flat_map(|a| pcm(&a.mixed)).collect();
    let (_, john) = wav_samples(&samples_dir().join("john-speech.wav"));
    let (median, segs) = segmental_ncc(&john[..3 * 16_000], &mixed, 16_000, 8_000, 8_000);
    eprintln!("real time, bot hears John: median NCC {median:.3} of {segs:.3?}");
    assert!(median > 0.7, "bot hears John: segmental NCC {median:.3}");
    assert!(
        heard
            .iter()
            .any(|a| a.active_speakers() == [ConferenceConfig::default().mixed_ssrc])
    );

    // The emulator recorded the bot's 1 kHz tone (3 s of it).
    let (rate, recorded) = wav_samples(&rec_config.path_of(Track::Speaker(1)));
    assert_eq!(rate, 16_000);
    let body = &recorded[16_000.min(recorded.len())..(3 * 16_000).min(recorded.len())];
    let p1k = power_at(body, 16_000.0, 1000.0);
    let f = strongest(body, 16_000.0, &[500.0, 800.0, 1000.0, 1200.0, 2000.0]);
    eprintln!("real time, emulator records the bot: {f} Hz, power {p1k:.4}");
    assert_eq!(f, 1000.0);
    assert!(p1k > 0.01, "1 kHz power {p1k}");
    assert!(status.tracks.iter().all(|t| t.error.is_none()));

    assert!(events.contains(&ConferenceEvent::PartyAdded { source_id: 10 }));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ConferenceEvent::BotStreamStarted { .. }))
    );
    let received = stats.bot_stream.expect("the bot's stream").jitter.received;
    eprintln!(
        "real time stats: {} ticks, bot packets received {received}, mixed sent {}",
        stats.ticks, stats.bot_leg.packets_sent
    );
    assert!(received > 100, "received {received}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unmixed_streams_over_udp_loopback() {
    let mut conference = ConferenceMedia::new(ConferenceConfig {
        layout: StreamLayout::PerSpeaker,
        ..ConferenceConfig::default()
    })
    .unwrap();
    for (id, f, kind) in [
        (21u32, 450.0f32, PartyKind::User),
        (22, 700.0, PartyKind::Phone),
    ] {
        let audio = PartyAudio::Speak {
            clip: tone_clip(f, 0.2, 1.0),
            looped: true,
            start_after: Duration::ZERO,
        };
        conference
            .add_party(PartySpec::new(
                format!("p{id}"),
                format!("P{id}"),
                kind,
                id,
                audio,
            ))
            .unwrap();
    }
    let (heard, _, stats) = run(conference, bot(), 1, Duration::from_secs(2));
    let mut per_source: std::collections::BTreeMap<u32, Vec<f32>> = Default::default();
    for a in &heard[heard.len() / 2..] {
        for u in a.unmixed() {
            per_source
                .entry(u.source_id)
                .or_default()
                .extend(pcm(&u.pcm));
        }
    }
    for (id, f) in [(21u32, 450.0f32), (22, 700.0)] {
        let audio = per_source
            .get(&id)
            .unwrap_or_else(|| panic!("no unmixed audio of {id}"));
        let got = strongest(audio, 16_000.0, &[450.0, 700.0]);
        eprintln!("real time unmixed {id}: {got} Hz");
        assert_eq!(got, f);
    }
    assert!(stats.unmixed_packets_sent > 100);
    assert_eq!(
        stats.bot_leg.packet_outbox.pushed, 0,
        "no mixed stream with PerSpeaker"
    );
}
