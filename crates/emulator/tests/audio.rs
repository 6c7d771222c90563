//! End to end through the HTTP API, checking audio: a bot made of the real stack (signalling
//! builders and GraphClient, the transport's MediaSession, a media-core CallPipeline) calls
//! the emulator's scripted parties (`fixtures/audio-parties.toml`) and measures what it hears.
//! Each call lasts a few seconds of real time; run with `--nocapture` for the numbers.

mod common;

use std::time::Duration;

use appmedia_model::{Identity, IdentitySet, ParticipantInfo};
use appmedia_signalling::builders::{
    JoinMeetingIdBuilder, Media, PeerToPeerCallBuilder, PstnCallBuilder,
};
use common::audio::*;
use common::bot::*;
use common::*;

const SUE: &str = "0b8a4e1c-0000-4000-8000-000000000011";
const EKO: &str = "0b8a4e1c-0000-4000-8000-000000000012";
const SID: &str = "0b8a4e1c-0000-4000-8000-000000000013";
const ANN: &str = "0b8a4e1c-0000-4000-8000-000000000014";
const APP_INSTANCE: &str = "3d913abb-aec0-4964-8fa6-3c6850c4f278";
const PHONE: &str = "+12345678901";
/// The sweep both Sue and the phone speak lasts 4 s.
const SWEEP_FRAMES: u32 = 4 * 50 + 15;

fn p2p(h: &Harness, user: &str) -> impl FnOnce(String) -> appmedia_model::Call {
    let (callback, user) = (h.callback_uri.clone(), user.to_owned());
    move |blob| {
        PeerToPeerCallBuilder::new(callback, Identity::new(user), Media::app_hosted(blob))
            .build()
            .unwrap()
    }
}

fn join_meeting(h: &Harness, id: &str) -> impl FnOnce(String) -> appmedia_model::Call {
    let (callback, id) = (h.callback_uri.clone(), id.to_owned());
    move |blob| {
        JoinMeetingIdBuilder::new(
            callback,
            id,
            Some("psw123".into()),
            TENANT,
            Media::app_hosted(blob),
        )
        .build()
        .unwrap()
    }
}

/// High band (4–7 kHz) over low band (0.3–3.4 kHz) energy.
fn high_over_low(samples: &[f32]) -> f64 {
    band_energy(samples, 48_000.0, 4_000.0, 7_000.0)
        / band_energy(samples, 48_000.0, 300.0, 3_400.0).max(1e-15)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pstn_party_sounds_band_limited_and_its_mouth_time_is_exposed() {
    let h = audio_parties(None).await;

    // Sue speaks the sweep over VoIP.
    let mut user = BotCall::start(&h, true, p2p(&h, SUE)).await;
    let user_heard = user.run(SWEEP_FRAMES, |_| None).await;
    // The media timeline: Sue's first sample entered the conference after she answered, and
    // the bot played it out later (mouth-to-ear, measured here on the same clock).
    let media = h
        .emulator
        .call_media(&user.id)
        .expect("the call's media timeline");
    assert_eq!(media.parties.len(), 1, "{media:?}");
    let mouth = media.parties[0].first_audio_at.expect("Sue spoke");
    assert!(
        mouth > user.created_at,
        "mouth {mouth:?} before the call was created"
    );
    let ear = user_heard.instant_of(onset(&user_heard.samples, 0.01).expect("the bot heard Sue"));
    let mouth_to_ear = ear.saturating_duration_since(mouth);
    println!("mouth-to-ear (onset at -40 dBFS): {mouth_to_ear:?}");
    assert!(ear > mouth, "heard before spoken?");
    assert!(mouth_to_ear < Duration::from_secs(2), "{mouth_to_ear:?}");
    user.client.delete_call(&user.id).await.unwrap();

    // The phone speaks the same sweep from the PSTN.
    let source = ParticipantInfo::new(IdentitySet::application_instance(
        Identity::new(APP_INSTANCE).with_display_name("Calling Bot"),
    ));
    let (callback, pstn_source) = (h.callback_uri.clone(), source.clone());
    let mut phone = BotCall::start(&h, true, move |blob| {
        PstnCallBuilder::new(
            callback,
            pstn_source,
            PHONE,
            TENANT,
            Media::app_hosted(blob),
        )
        .build()
        .unwrap()
    })
    .await;
    let phone_heard = phone.run(SWEEP_FRAMES, |_| None).await;
    phone.client.delete_call(&phone.id).await.unwrap();

    let (user_ratio, phone_ratio) = (
        high_over_low(&user_heard.samples),
        high_over_low(&phone_heard.samples),
    );
    println!(
        "energy 4-7 kHz / 0.3-3.4 kHz: user {:.1} dB, phone {:.1} dB",
        10.0 * user_ratio.log10(),
        10.0 * phone_ratio.log10()
    );
    assert!(
        level_dbfs(&phone_heard.samples) > -30.0,
        "the phone was heard"
    );
    assert!(
        user_ratio > 0.05,
        "the user's sweep reaches 7 kHz: {user_ratio}"
    );
    assert!(
        phone_ratio < user_ratio / 100.0,
        "phone {phone_ratio} vs user {user_ratio}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_muted_participant_is_silence_and_the_roster_says_muted() {
    let h = audio_parties(None).await;
    let mut bot = BotCall::start(&h, true, join_meeting(&h, "7654321")).await;
    // Ann speaks 440 Hz from 0.8 s to 2.8 s after the join request, muted 1.4 s → 2.1 s.
    let heard = bot.run(130, |_| None).await;
    bot.client.delete_call(&bot.id).await.unwrap();

    let loud = loud_frames(&heard.samples, -40.0);
    let first = loud
        .iter()
        .position(|&l| l)
        .expect("Ann heard before her mute");
    let last = loud.iter().rposition(|&l| l).unwrap();
    // The longest quiet run inside her speech is the mute.
    let (mut longest, mut run) = (0, 0);
    for &l in &loud[first..=last] {
        run = if l { 0 } else { run + 1 };
        longest = longest.max(run);
    }
    println!("Ann heard from frame {first} to {last}, muted for {longest} frames");
    assert!(
        (28..=42).contains(&longest),
        "a 700 ms mute is {longest} frames of silence"
    );
    let silent_middle = loud[first..=last].iter().position(|&l| !l).unwrap() + first;
    let quiet = &heard.samples[(silent_middle + 3) * 960..(silent_middle + longest - 3) * 960];
    assert!(
        level_dbfs(quiet) < -60.0,
        "muted Ann: {:.1} dBFS",
        level_dbfs(quiet)
    );
    // Speech again after the unmute, and it is Ann's tone.
    let after = &heard.samples[(silent_middle + longest + 2) * 960..last * 960];
    let (freq, ratio) = dominant(after, &[440.0, 1000.0, 250.0], 48_000.0);
    assert_eq!(freq, 440.0, "ratio {ratio:.1}");

    // The roster said so: Ann muted, then unmuted.
    let ann_muted: Vec<bool> = h
        .received
        .all()
        .iter()
        .filter(|b| describe(b).starts_with("roster"))
        .filter_map(|b| {
            resource_data(b)
                .as_array()?
                .iter()
                .find(|p| p["info"]["identity"]["user"]["id"] == ANN)
                .map(|p| p["isMuted"] == true)
        })
        .collect();
    assert_eq!(ann_muted, vec![false, true, false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hears_the_meetings_speakers() {
    let h = audio_parties(None).await;
    let mut bot = BotCall::start(&h, true, join_meeting(&h, "1234567")).await;
    // Ann (440 Hz, there at the join) and Ben (1 kHz, joins 300 ms later) speak for 2 s.
    let heard = bot.run(75, |_| None).await;
    let media = h.emulator.call_media(&bot.id).unwrap();
    bot.client.delete_call(&bot.id).await.unwrap();
    let both = heard.window(0.6, 1.4);
    let off = goertzel(both, 700.0, 48_000.0).max(1e-12);
    let (ann, ben) = (
        goertzel(both, 440.0, 48_000.0) / off,
        goertzel(both, 1000.0, 48_000.0) / off,
    );
    println!("440 Hz / 700 Hz: {ann:.0}, 1 kHz / 700 Hz: {ben:.0}");
    assert!(ann > 100.0 && ben > 100.0, "Ann {ann:.1}, Ben {ben:.1}");
    assert_eq!(media.parties.len(), 2, "{media:?}");
    assert!(
        media.parties.iter().all(|p| p.first_audio_at.is_some()),
        "{media:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_hears_itself_only_through_the_far_end_echo() {
    let h = audio_parties(None).await;
    let mut bot = BotCall::start(&h, true, p2p(&h, EKO)).await;
    // The bot says 600 Hz for 1 s, then listens; Eko repeats it 300 ms later.
    let heard = bot
        .run(75, |k| (k < 50).then(|| tone_frame(600.0, 0.5, k)))
        .await;
    bot.client.delete_call(&bot.id).await.unwrap();
    let onset = onset(&heard.samples, 0.01).expect("the echo came back");
    let lag = Duration::from_secs_f64(onset as f64 / 48_000.0);
    println!("the bot's own voice came back after {lag:?}");
    // Without mix-minus it would be back within a network round trip; it only comes back
    // through the echo, 300 ms + the way there and back.
    assert!(
        lag >= Duration::from_millis(300),
        "heard itself after {lag:?}"
    );
    let echo = heard.window(lag.as_secs_f64() + 0.1, lag.as_secs_f64() + 0.8);
    let (freq, ratio) = dominant(echo, &[600.0, 440.0, 1000.0], 48_000.0);
    assert_eq!(freq, 600.0, "ratio {ratio:.1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_that_never_sends_media_stays_in_the_call_and_is_recorded_as_silence() {
    let recordings = scratch_dir();
    let h = audio_parties(Some(recordings.clone())).await;
    let bot = BotCall::start(&h, false, p2p(&h, SID)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, call) = h.get(&format!("/communications/calls/{}", bot.id)).await;
    assert_eq!(status, 200);
    assert_eq!(call["state"], "established", "{call:#}");
    bot.client.delete_call(&bot.id).await.unwrap();
    wait_for_state(&h, "state:terminated").await;
    let path = appmedia_emulator::bot_recording_path(&recordings, &bot.id);
    assert!(path.ends_with(format!("{}-speaker-1.wav", bot.id)));
    let (_, samples) = wait_for_wav(&path, 2.5).await;
    let peak = samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert_eq!(peak, 0.0, "a silent bot is recorded as silence");
    let terminated = h
        .received
        .all()
        .into_iter()
        .find(|b| describe(b) == "state:terminated")
        .unwrap();
    assert_eq!(resource_data(&terminated)["resultInfo"]["code"], 200);
    let _ = std::fs::remove_dir_all(&recordings);
}
