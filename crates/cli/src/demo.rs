//! `appmedia demo`: the whole toolkit in one command, with no tenant. It starts the
//! emulator in-process, runs a bot that creates an app-hosted peer-to-peer call to John
//! (who speaks `media-samples/john-speech.wav`), records what the bot hears, plays a prompt
//! into the call, hangs up after about ten seconds and prints what happened.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use appmedia_audio_io::playback::AudioClip;
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};
use appmedia_emulator::directory::Sound;
use appmedia_emulator::{Directory, Emulator, EmulatorConfig};
use appmedia_media::frame::{FRAME_DURATION, Frame48, SAMPLES_PER_FRAME_48K, SILENT_FRAME_48};
use appmedia_media::pipeline::{BotAudioFormat, CallPipeline, PipelineConfig};
use appmedia_model::{CallState, Identity, MediaConfig};
use appmedia_signalling::auth::{
    CallbackAuth, CallbackAuthConfig, CallbackTokenValidator, ClientCredentials, TenantPolicy,
    TokenSource,
};
use appmedia_signalling::builders::{Media, PeerToPeerCallBuilder};
use appmedia_signalling::callback::{CallEvent, CallRegistry, CallbackReceiver};
use appmedia_signalling::client::{GraphClient, GraphClientConfig};
use appmedia_transport::{MediaSession, TransportConfig};
use clap::Args;
use serde_json::{Value, json};

const TENANT: &str = "aa67bd4c-8475-432d-bd41-39f255720e0a";
const BOT_APP: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const BOT_SECRET: &str = "calling-bot-secret";
const JOHN: &str = "112f7296-5fa4-42ca-bae8-6a692b15d4b8";
const JOHN_SPEAKS: &str = "john-speech.wav";

/// Options of `appmedia demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the call lasts before the bot hangs up, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where the recordings go.
    #[arg(long, default_value = "recordings")]
    recordings: PathBuf,
    /// The media-samples directory (John's voice and the prompt).
    #[arg(long, default_value = "media-samples")]
    media_samples: PathBuf,
    /// The prompt the bot plays into the call, relative to --media-samples.
    #[arg(long, default_value = "prompt.wav")]
    prompt: String,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: DemoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("appmedia demo: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(demo(&args)) {
        Ok(summary) => {
            let ok = summary["ok"].as_bool() == Some(true);
            if args.json {
                println!("{summary:#}");
            } else {
                print_summary(&summary);
            }
            if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if args.json {
                println!("{:#}", json!({"ok": false, "error": e}));
            } else {
                eprintln!("appmedia demo: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn demo(args: &DemoArgs) -> Result<Value, String> {
    let start = Instant::now();
    std::fs::create_dir_all(&args.recordings)
        .map_err(|e| format!("cannot create {}: {e}", args.recordings.display()))?;
    let prompt_path = args.media_samples.join(&args.prompt);
    let prompt = AudioClip::open(&prompt_path).map_err(|e| e.to_string())?;

    // The emulator, with John speaking a media sample.
    let mut directory = Directory::seed();
    for user in &mut directory.users {
        if user.id == JOHN {
            user.behaviour.media = Sound::Speak(JOHN_SPEAKS.into());
        }
    }
    let emulator = Emulator::start(EmulatorConfig {
        directory,
        media_samples_dir: args.media_samples.clone(),
        recordings_dir: Some(args.recordings.clone()),
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;

    // The bot: callback receiver validating the emulator's notification tokens, Graph client.
    let mut auth = CallbackAuthConfig::new(BOT_APP, TenantPolicy::Only(vec![TENANT.into()]));
    auth.issuers = vec![emulator.notification_issuer().to_owned()];
    auth.openid_configuration_url = emulator
        .notification_openid_configuration_url()
        .parse()
        .map_err(|e| format!("{e}"))?;
    let validator = CallbackTokenValidator::new(auth).map_err(|e| e.to_string())?;
    let (receiver, mut events) = CallbackReceiver::with_channel(
        CallbackAuth::validate(Arc::new(validator)),
        Arc::new(CallRegistry::default()),
        256,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let callback_uri = format!(
        "http://{}/callback",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let serving = receiver.clone();
    tokio::spawn(async move { serving.serve(listener, "/callback").await });
    let credentials = ClientCredentials::for_authority(
        emulator.authority_url(),
        TENANT,
        BOT_APP,
        BOT_SECRET,
        "https://graph.microsoft.com/.default",
    )
    .map_err(|e| e.to_string())?;
    let tokens = TokenSource::client_credentials(credentials, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let graph_url = emulator.graph_url().parse().map_err(|e| format!("{e}"))?;
    let client = GraphClient::new(GraphClientConfig::for_base_url(graph_url), tokens)
        .map_err(|e| e.to_string())?;

    // The bot's media endpoint and the call.
    let session = MediaSession::offer(TransportConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let request = PeerToPeerCallBuilder::new(
        callback_uri,
        Identity::new(JOHN).with_display_name("John"),
        Media::app_hosted(session.blob()),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let created = client
        .create_call(&request)
        .await
        .map_err(|e| e.to_string())?;
    let call_id = created
        .call_id()
        .ok_or("the 201 body has no call id")?
        .to_owned();
    let mut transitions = vec![json!({"state": "created", "at_ms": ms(start)})];
    let Some(MediaConfig::AppHosted(config)) = created.call.media_config.value() else {
        return Err("the 201 body has no app-hosted mediaConfig".into());
    };
    let answer = config
        .blob
        .value()
        .ok_or("the 201 body has no answer blob")?;
    session.accept(answer).await.map_err(|e| e.to_string())?;

    // The bot's media: what it hears is recorded (mixed + per speaker), the prompt is played.
    let mut pipeline = CallPipeline::new(PipelineConfig {
        bot_format: BotAudioFormat::Pcm48k,
        ..PipelineConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let epoch = Instant::now();
    session.attach_pipeline(&mut pipeline, epoch);
    let player = pipeline.add_player(4).map_err(|e| e.to_string())?;
    let (recorder, sink) = CallRecorder::start(RecordingConfig::new(
        &args.recordings,
        format!("bot-{call_id}"),
    ))
    .map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(15), session.connected())
        .await
        .map_err(|_| "media did not connect within 15 s".to_owned())?
        .map_err(|e| format!("media session ended: {e:?}"))?;
    transitions.push(json!({"state": "media connected", "at_ms": ms(start)}));

    let ticks = u32::try_from(args.seconds.saturating_mul(50)).unwrap_or(u32::MAX);
    let prompt_samples = prompt.clone();
    let media = tokio::task::spawn_blocking(move || {
        let mut heard_ticks = 0u64;
        let mut prompt_at = 0usize;
        for k in 0..ticks {
            let now = FRAME_DURATION * k;
            if let Some(wait) = (epoch + now).checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            let samples = prompt_samples.samples();
            if prompt_at < samples.len() {
                let end = (prompt_at + SAMPLES_PER_FRAME_48K).min(samples.len());
                let mut frame: Frame48 = SILENT_FRAME_48;
                frame[..end - prompt_at].copy_from_slice(&samples[prompt_at..end]);
                prompt_at = end;
                let _ = player.send(&frame);
            }
            let report = pipeline.tick(now);
            if !report.is_silence {
                heard_ticks += 1;
            }
            let tick = u64::from(k);
            let _ = sink.push(tick, Track::Mixed, pipeline.bot_frame_48k());
            for unmixed in pipeline.unmixed() {
                let _ = sink.push(tick, Track::Speaker(unmixed.source_id), unmixed.pcm48);
            }
        }
        let streams: Vec<_> = pipeline.stream_stats().collect();
        (heard_ticks, *pipeline.stats(), streams, recorder.finish())
    });

    // Signalling events while the media runs.
    let mut roster: Vec<String> = Vec::new();
    let mut unauthorized_before = receiver.stats().unauthorized;
    let mut established = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.seconds);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await;
        let Ok(Some(event)) = event else { break };
        note_event(
            &event,
            start,
            &mut transitions,
            &mut roster,
            &mut established,
        );
    }
    let (heard_ticks, pipeline_stats, streams, recording) =
        media.await.map_err(|e| e.to_string())?;
    let transport_stats = session.stats().await;

    client
        .delete_call(&call_id)
        .await
        .map_err(|e| e.to_string())?;
    let mut terminated = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !terminated {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        note_event(
            &event,
            start,
            &mut transitions,
            &mut roster,
            &mut established,
        );
        terminated =
            matches!(&event, CallEvent::StateChanged { to, .. } if *to == CallState::Terminated);
    }
    session.close().await;
    unauthorized_before = receiver.stats().unauthorized - unauthorized_before;
    // Give the emulator's media its last pump and its recorder the time to finish the files.
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The bot alone (the emulator's mixed track is everyone in the call).
    let emulator_recording =
        appmedia_emulator::media::bot_recording_path(&args.recordings, &call_id);
    let emulator_url = emulator.base_url().to_owned();
    emulator.shutdown().await;

    let jitter: Vec<Value> = streams
        .iter()
        .map(|s| {
            json!({
                "source_id": s.source_id,
                "received": s.jitter.received,
                "lost": s.jitter.lost,
                "concealed": s.jitter.concealed,
                "fec_recovered": s.jitter.fec_recovered,
                "late": s.jitter.late,
                "jitter_buffer_delay_ms": s.jitter.current_delay.as_millis() as u64,
            })
        })
        .collect();
    let tracks: Vec<Value> = recording
        .tracks
        .iter()
        .map(|t| {
            json!({
                "track": format!("{:?}", t.track),
                "path": t.path.display().to_string(),
                "seconds": t.samples_written as f64 / f64::from(t.sample_rate.max(1)),
                "peak_dbfs": t.peak_dbfs(),
            })
        })
        .collect();
    let recorded_bot = file_seconds(&emulator_recording);
    let ok = established
        && terminated
        && heard_ticks > 0
        && pipeline_stats.packets_sent > 0
        && unauthorized_before == 0
        && !tracks.is_empty()
        && recorded_bot.is_some_and(|s| s > 0.0);
    Ok(json!({
        "ok": ok,
        "call_id": call_id,
        "emulator": emulator_url,
        "transitions": transitions,
        "roster": roster,
        "media": {
            "ticks": pipeline_stats.ticks,
            "frames_heard": heard_ticks,
            "packets_sent": pipeline_stats.packets_sent,
            "packets_received": transport_stats.packets_received,
            "packets_lost": transport_stats.packets_lost,
            "network_jitter_ms": transport_stats.jitter_ms,
            "rtcp_round_trip_ms": transport_stats.rtcp_round_trip_time_ms,
            "streams": jitter,
            "mouth_to_ear_latency_ms": Value::Null,
        },
        "sources": {
            "John": args.media_samples.join(JOHN_SPEAKS).display().to_string(),
            "bot prompt": prompt_path.display().to_string(),
        },
        "recordings": {
            "bot_heard": tracks,
            "emulator_recorded_bot": {
                "path": emulator_recording.display().to_string(),
                "seconds": recorded_bot,
            },
        },
        "notifications_refused": unauthorized_before,
    }))
}

fn note_event(
    event: &CallEvent,
    start: Instant,
    transitions: &mut Vec<Value>,
    roster: &mut Vec<String>,
    established: &mut bool,
) {
    match event {
        CallEvent::StateChanged {
            to, result_info, ..
        } => {
            *established |= *to == CallState::Established;
            let mut entry = json!({"state": to.as_str(), "at_ms": ms(start)});
            if let Some(result) = result_info {
                entry["resultInfo"] = serde_json::to_value(result).unwrap_or(Value::Null);
            }
            transitions.push(entry);
        }
        CallEvent::Roster { change, .. } => {
            for p in &change.joined {
                let identity = p.info.value().and_then(|i| i.identity.value());
                let name = identity
                    .and_then(|i| {
                        [&i.user, &i.application, &i.application_instance, &i.phone]
                            .into_iter()
                            .find_map(|x| x.value())
                    })
                    .and_then(|i| i.display_name.value().or(i.id.value()).cloned())
                    .unwrap_or_else(|| "unknown".into());
                if !roster.contains(&name) {
                    roster.push(name);
                }
            }
        }
        _ => {}
    }
}

fn file_seconds(path: &Path) -> Option<f64> {
    let reader = hound::WavReader::open(path).ok()?;
    let spec = reader.spec();
    Some(f64::from(reader.duration()) / f64::from(spec.sample_rate.max(1)))
}

fn print_summary(s: &Value) {
    let verdict = if s["ok"].as_bool() == Some(true) {
        "OK"
    } else {
        "FAILED"
    };
    println!("appmedia demo: {verdict}");
    println!("  emulator   {}", s["emulator"].as_str().unwrap_or(""));
    println!("  call       {}", s["call_id"].as_str().unwrap_or(""));
    println!("  states:");
    for t in s["transitions"].as_array().into_iter().flatten() {
        let extra = t
            .get("resultInfo")
            .map(|r| format!("  (resultInfo {} {})", r["code"], r["message"]))
            .unwrap_or_default();
        println!(
            "    {:>6} ms  {}{extra}",
            t["at_ms"],
            t["state"].as_str().unwrap_or("?")
        );
    }
    let roster: Vec<&str> = s["roster"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    println!("  roster     {}", roster.join(", "));
    let m = &s["media"];
    println!(
        "  media      {} ticks, {} frames heard, {} packets sent, {} received, {} lost, jitter {:.1} ms",
        m["ticks"],
        m["frames_heard"],
        m["packets_sent"],
        m["packets_received"],
        m["packets_lost"],
        m["network_jitter_ms"].as_f64().unwrap_or(0.0)
    );
    for st in m["streams"].as_array().into_iter().flatten() {
        println!(
            "    stream {}: {} received, {} lost, {} concealed, {} FEC-recovered, buffer {} ms",
            st["source_id"],
            st["received"],
            st["lost"],
            st["concealed"],
            st["fec_recovered"],
            st["jitter_buffer_delay_ms"]
        );
    }
    println!("  mouth-to-ear latency: not measured");
    println!("  recordings:");
    for t in s["recordings"]["bot_heard"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "    bot heard ({}): {} ({:.1} s)",
            t["track"].as_str().unwrap_or(""),
            t["path"].as_str().unwrap_or(""),
            t["seconds"].as_f64().unwrap_or(0.0)
        );
    }
    let e = &s["recordings"]["emulator_recorded_bot"];
    println!(
        "    emulator recorded the bot: {} ({:.1} s)",
        e["path"].as_str().unwrap_or(""),
        e["seconds"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  sources    John: {}, bot prompt: {}",
        s["sources"]["John"].as_str().unwrap_or(""),
        s["sources"]["bot prompt"].as_str().unwrap_or("")
    );
}
