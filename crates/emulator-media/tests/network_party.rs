//! A network party ([`PartyAudio::Network`]): a far end's RTP is its microphone, and it gets
//! the mix-minus for it back as RTP. Here the far end is a second media-core pipeline (what
//! the softphone page's browser is in the emulator), the bot a third, all on a fake clock.

mod common;

use std::time::Duration;

use appmedia_emulator_media::{
    ConferenceConfig, ConferenceError, ConferenceEvent, ConferenceMedia, PartyAudio, PartyKind,
    PartySpec,
};
use appmedia_media::pipeline::{CallPipeline, PipelineConfig};
use bytes::Bytes;
use common::*;

const TICK: Duration = Duration::from_millis(20);

fn far_end_config() -> PipelineConfig {
    PipelineConfig {
        local_ssrc: 0xB0B0_0001,
        ..bot_config()
    }
}

#[test]
fn the_bot_hears_the_far_end_and_the_far_end_hears_everyone_but_itself() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    // Jane speaks 1 kHz; the person on the network says 440 Hz; the bot says 250 Hz.
    conf.add_party(PartySpec::new(
        "jane-id",
        "Jane",
        PartyKind::User,
        20,
        PartyAudio::Speak {
            clip: tone_clip(1000.0, 0.3, 10.0),
            looped: false,
            start_after: Duration::ZERO,
        },
    ))
    .unwrap();
    let person = PartySpec::new("bob-id", "Bob", PartyKind::User, 21, PartyAudio::Network);
    let link = conf.add_network_party(person).unwrap();
    assert_eq!(conf.party(21).unwrap().display_name, "Bob");

    let mut bot = CallPipeline::new(bot_config()).unwrap();
    let bot_sender = bot.bot_sender();
    let mut far = CallPipeline::new(far_end_config()).unwrap();
    let far_sender = far.bot_sender();
    let (mut bot_heard, mut far_heard) = (Vec::new(), Vec::new());
    for k in 0..200usize {
        let now = TICK * k as u32;
        bot_sender.send_48k(&tone(250.0, 0.3, k)).unwrap();
        far_sender.send_48k(&tone(440.0, 0.3, k)).unwrap();
        bot.tick(now);
        far.tick(now);
        if let Some(p) = bot.outgoing_packet() {
            conf.push_rtp(Bytes::copy_from_slice(p), now + Duration::from_millis(1));
        }
        if let Some(p) = far.outgoing_packet() {
            link.inbox
                .push(Bytes::copy_from_slice(p), now + Duration::from_millis(1))
                .unwrap();
        }
        conf.tick(now + Duration::from_millis(2));
        let to_bot: Vec<Bytes> = conf
            .outgoing_packets()
            .map(Bytes::copy_from_slice)
            .collect();
        for p in to_bot {
            bot.push_rtp(p, now + Duration::from_millis(3));
        }
        // The network party's packets leave through its own outbox, never the bot's stream.
        while let Some(p) = link.outbox.pop() {
            far.push_rtp(
                Bytes::copy_from_slice(p.as_bytes()),
                now + Duration::from_millis(3),
            );
        }
        if k >= 60 {
            bot_heard.extend_from_slice(bot.bot_frame_48k());
            far_heard.extend_from_slice(far.bot_frame_48k());
        }
    }
    let db = |p: f64| 10.0 * p.max(1e-30).log10();
    let bot_person = power_at(&bot_heard, 48_000.0, 440.0);
    let far_bot = power_at(&far_heard, 48_000.0, 250.0);
    let far_jane = power_at(&far_heard, 48_000.0, 1000.0);
    let far_self = power_at(&far_heard, 48_000.0, 440.0);
    eprintln!(
        "network party: bot hears it at {:.1} dB; it hears the bot {:.1} dB, Jane {:.1} dB, itself {:.1} dB",
        db(bot_person),
        db(far_bot),
        db(far_jane),
        db(far_self)
    );
    assert!(bot_person > 0.015, "the bot hears the person: {bot_person}");
    assert!(far_bot > 0.015, "the person hears the bot: {far_bot}");
    assert!(far_jane > 0.015, "the person hears Jane: {far_jane}");
    assert!(far_self < 1e-7, "the person hears itself: {far_self}");
    // Both parties and the bot are heard: the stats name who speaks.
    let call = conf.stats();
    let mut speakers = call.speakers().to_vec();
    speakers.sort_unstable();
    assert_eq!(speakers, vec![20, 21]);
    assert!(call.bot_speaking);
    let stats = conf.party_stats(21).unwrap();
    assert!(stats.network_packets_received >= 190, "{stats:?}");
    assert!(stats.network_packets_sent >= 190, "{stats:?}");
    assert!(stats.frames_spoken > 100, "{stats:?}");

    // Muted, the person is in nobody's audio, and still hears the call.
    conf.set_muted(21, true).unwrap();
    let mut bot_heard = Vec::new();
    for k in 200..300usize {
        let now = TICK * k as u32;
        far_sender.send_48k(&tone(440.0, 0.3, k)).unwrap();
        far.tick(now);
        if let Some(p) = far.outgoing_packet() {
            let _ = link.inbox.push(Bytes::copy_from_slice(p), now);
        }
        conf.tick(now + Duration::from_millis(2));
        let to_bot: Vec<Bytes> = conf
            .outgoing_packets()
            .map(Bytes::copy_from_slice)
            .collect();
        for p in to_bot {
            bot.push_rtp(p, now + Duration::from_millis(3));
        }
        bot.tick(now);
        while link.outbox.pop().is_some() {}
        if k >= 220 {
            bot_heard.extend_from_slice(bot.bot_frame_48k());
        }
    }
    assert!(power_at(&bot_heard, 48_000.0, 440.0) < 1e-7);
    assert!(
        !conf.stats().speakers().contains(&21),
        "a muted party is not speaking"
    );
    assert!(conf.party_stats(21).unwrap().network_packets_sent >= 290);
}

#[test]
fn network_audio_is_added_only_with_its_link() {
    let mut conf = ConferenceMedia::new(ConferenceConfig::default()).unwrap();
    let spec = PartySpec::new("p", "P", PartyKind::User, 5, PartyAudio::Network);
    // Without a link nobody could feed it: refused, typed.
    assert!(matches!(
        conf.add_party(spec.clone()),
        Err(ConferenceError::Audio(_))
    ));
    let control = conf.control();
    assert!(matches!(
        control.set_audio(5, &PartyAudio::Network),
        Err(ConferenceError::Audio(_))
    ));
    // add_network_party insists on a spec that says so.
    let not_network = PartySpec::new("q", "Q", PartyKind::User, 6, PartyAudio::Silence);
    assert!(matches!(
        conf.add_network_party(not_network),
        Err(ConferenceError::NotNetworkAudio(6))
    ));
    // Through the control (the emulator's way), the party arrives on the next tick.
    let _link = control.add_network_party(spec).unwrap();
    conf.tick(Duration::ZERO);
    assert_eq!(
        conf.poll_event(),
        Some(ConferenceEvent::PartyAdded { source_id: 5 })
    );
    // A second party with the same source id is refused on the tick.
    let again = PartySpec::new("p2", "P2", PartyKind::User, 5, PartyAudio::Network);
    let _dead = control.add_network_party(again).unwrap();
    conf.tick(TICK);
    assert!(matches!(
        conf.poll_event(),
        Some(ConferenceEvent::CommandRejected { source_id: 5, .. })
    ));
}
