//! Unmixed audio end to end through the HTTP API: with `receiveUnmixedMeetingAudio` in its
//! blob, a bot joins a meeting whose five participants each speak their own tone, or calls
//! four users and a phone; its media core gets one stream per party over WebRTC (the phone
//! included), under the source id the roster notification gives that party, carrying that
//! party's tone.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use appmedia_emulator::EmulatorConfig;
use appmedia_media::frame::FRAME_DURATION;
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_transport::{MediaSession, TransportConfig};
use axum::http::StatusCode;
use common::*;
use serde_json::Value;

/// The users of `unmixed-meeting.toml` and the tone each speaks.
const PARTICIPANTS: [(&str, f32); 5] = [
    ("0b8a4e1c-0000-4000-8000-0000000000a1", 300.0),
    ("0b8a4e1c-0000-4000-8000-0000000000a2", 500.0),
    ("0b8a4e1c-0000-4000-8000-0000000000a3", 700.0),
    ("0b8a4e1c-0000-4000-8000-0000000000a4", 1100.0),
    ("0b8a4e1c-0000-4000-8000-0000000000a5", 1700.0),
];
/// Its phone, inside the telephone band.
const PHONE: (&str, f32) = ("+15550100006", 1300.0);
const TONES: [f32; 6] = [300.0, 500.0, 700.0, 1100.0, 1300.0, 1700.0];

/// Writes `tone-<Hz>.wav` (16 kHz mono, 6 s, −10 dBFS) for every party.
fn write_tones(dir: &Path) {
    for freq in TONES {
        audio::write_tone_wav(
            &dir.join(format!("tone-{freq}.wav")),
            freq,
            16_000,
            6.0,
            0.3,
        );
    }
}

/// User id or phone number → the source id its roster entry carries in
/// `mediaStreams[].sourceId`; empty when `batch` is not a roster.
fn roster_source_ids(batch: &Value) -> BTreeMap<String, u32> {
    let Some(roster) = resource_data(batch).as_array() else {
        return BTreeMap::new();
    };
    roster
        .iter()
        .filter_map(|p| {
            let identity = &p["info"]["identity"];
            let who = identity["user"]["id"]
                .as_str()
                .or(identity["phone"]["id"].as_str())?;
            let source = p["mediaStreams"][0]["sourceId"].as_str()?.parse().ok()?;
            Some((who.to_owned(), source))
        })
        .collect()
}

/// Waits (10 s at most) for a roster notification naming every one of `parties`.
async fn full_roster(h: &Harness, parties: &[(&str, f32)]) -> BTreeMap<String, u32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let full = h
            .received
            .all()
            .iter()
            .map(roster_source_ids)
            .find(|ids| parties.iter().all(|(who, _)| ids.contains_key(*who)));
        if let Some(ids) = full {
            return ids;
        }
        assert!(
            Instant::now() < deadline,
            "no roster with everyone: {:?}",
            describe_all(&h.received.all())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Creates the call `request` (its callback and blob filled in) with an unmixed-audio bot,
/// and checks that the bot's media core hears each of `parties` as its own stream, under
/// its roster source id, with its own tone.
async fn bot_hears_everyone_unmixed(mut request: Value, parties: &[(&str, f32)]) {
    let samples = std::env::temp_dir().join(format!("appmedia-unmixed-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&samples).unwrap();
    write_tones(&samples);
    let h = Harness::start(EmulatorConfig {
        directory: test_directory("unmixed-meeting.toml"),
        media_samples_dir: samples.clone(),
        ..config()
    })
    .await;

    let session = MediaSession::offer(TransportConfig {
        receive_unmixed_meeting_audio: true,
        ..TransportConfig::default()
    })
    .await
    .unwrap();
    assert_eq!(session.unmixed_receive_streams(), 8);
    request["callbackUri"] = h.callback_uri.clone().into();
    request["mediaConfig"] = serde_json::json!({
        "@odata.type": "#microsoft.graph.appHostedMediaConfig",
        "blob": session.blob(),
    });
    let (status, _, body) = h.post_call(&request).await;
    assert_eq!(status, StatusCode::CREATED, "{body:#}");
    let answer = body["mediaConfig"]["blob"].as_str().expect("answer blob");
    session.accept(answer).await.unwrap();

    let mut pipeline = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        max_remote_streams: 8,
        max_unmixed: 8,
        ..PipelineConfig::default()
    })
    .unwrap();
    let epoch = Instant::now();
    session.attach_pipeline(&mut pipeline, epoch);
    tokio::time::timeout(Duration::from_secs(15), session.connected())
        .await
        .expect("connected in time")
        .expect("connected");
    let sources = full_roster(&h, parties).await;

    // 3 s of the call: every unmixed frame the media core hands the bot, by source id.
    let (heard, stream_ssrcs) = tokio::task::spawn_blocking(move || {
        let mut heard: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
        let mut ssrcs = BTreeMap::new();
        for k in 0..150u32 {
            let now = FRAME_DURATION * k;
            if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            pipeline.tick(now);
            for u in pipeline.unmixed() {
                heard
                    .entry(u.source_id)
                    .or_default()
                    .extend_from_slice(&u.pcm48[..]);
            }
            for s in pipeline.stream_stats() {
                ssrcs.insert(s.ssrc, s.source_id);
            }
        }
        (heard, ssrcs)
    })
    .await
    .unwrap();

    for &(who, freq) in parties {
        let source = sources[who];
        assert_eq!(
            stream_ssrcs.get(&source),
            Some(&source),
            "one stream per source id: {stream_ssrcs:?}"
        );
        let pcm = heard
            .get(&source)
            .unwrap_or_else(|| panic!("no unmixed audio for {who} ({source}): {:?}", heard.keys()));
        assert!(
            pcm.len() >= 48_000,
            "{who}: only {} samples unmixed",
            pcm.len()
        );
        let (tone, ratio) = audio::dominant(&pcm[pcm.len() / 2..], &TONES, 48_000.0);
        assert_eq!(
            tone, freq,
            "{who} ({source}) sounds like {tone} Hz (ratio {ratio:.1})"
        );
        assert!(ratio > 10.0, "{who}: ratio {ratio:.1}");
    }
    assert_eq!(
        heard.len(),
        parties.len(),
        "no one else: {:?}",
        heard.keys()
    );
    let _ = std::fs::remove_dir_all(&samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_meeting_participant_reaches_the_bot_as_its_own_stream() {
    let mut request = seed_fixture("example06-request.json");
    request["meetingInfo"]["organizer"]["user"]["id"] = PARTICIPANTS[0].0.into();
    bot_hears_everyone_unmixed(request, &PARTICIPANTS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_call_with_a_phone_gives_the_phone_its_own_stream_too() {
    let mut request = seed_fixture("example03-request.json");
    // A call to a phone comes from the bot's resource account (as in seed example 10).
    request["source"] = seed_fixture("example10-request.json")["source"].clone();
    let mut parties: Vec<(&str, f32)> = PARTICIPANTS[..4].to_vec();
    parties.push(PHONE);
    let targets: Vec<Value> = parties
        .iter()
        .map(|(who, _)| {
            let kind = if who.starts_with('+') {
                "phone"
            } else {
                "user"
            };
            serde_json::json!({
                "@odata.type": "#microsoft.graph.invitationParticipantInfo",
                "identity": {
                    "@odata.type": "#microsoft.graph.identitySet",
                    kind: { "@odata.type": "#microsoft.graph.identity", "id": who }
                }
            })
        })
        .collect();
    request["targets"] = targets.into();
    bot_hears_everyone_unmixed(request, &parties).await;
}
