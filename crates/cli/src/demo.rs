//! `appmedia demo`: the whole toolkit in one command, with no tenant. It starts the
//! emulator in-process, runs a bot that creates an app-hosted peer-to-peer call to John
//! (who speaks `media-samples/john-speech.wav`), records what the bot hears, plays a prompt
//! into the call, hangs up after about ten seconds and prints what happened.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::frame::CORE_SAMPLE_RATE as CORE_RATE;
use appmedia_audio_io::playback::PlayMode;
use appmedia_audio_io::record::{RecordingStatus, Track};
use appmedia_bot::RecordOptions;
use clap::Args;
use serde_json::{Value, json};

use crate::bot::{self, CallArgs, JOHN_SPEAKS, ServiceArgs};
use crate::call::{Bot, CallPlan};
use crate::devices::DeviceArgs;
use crate::mouth_to_ear::{self, MouthToEar};
use crate::summary::{self, CallLog};

/// Options of `appmedia demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the call lasts before the bot hangs up, in seconds.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Where the recordings go.
    #[arg(long, default_value = "recordings")]
    recordings: PathBuf,
    /// The prompt the bot plays into the call, relative to --media-samples.
    #[arg(long, default_value = "prompt.wav")]
    prompt: String,
    #[command(flatten)]
    devices: DeviceArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// Draw the call as the bot's media saw it (levels sent and heard, jitter-buffer delay,
    /// loss) into FILE.svg.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: DemoArgs) -> ExitCode {
    summary::run_command("demo", args.json, demo(&args), print_summary)
}

async fn demo(args: &DemoArgs) -> Result<Value, String> {
    if let Some(path) = &args.plot {
        crate::plot::check_path(path).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(&args.recordings)
        .map_err(|e| format!("cannot create {}: {e}", args.recordings.display()))?;
    let mut service = args.service.clone();
    let samples = service.media_samples()?;
    service.media_samples = Some(samples.clone());
    let prompt_path = samples.join(&args.prompt);
    let prompt = AudioClip::open(&prompt_path).map_err(|e| e.to_string())?;
    let mut devices = args.devices.open()?;
    // The in-process emulator records the call beside the bot's own recordings.
    if service.emulator_recordings.is_none() {
        service.emulator_recordings = Some(args.recordings.clone());
    }

    let bot = Bot::start(&service).await?;
    let mut log = CallLog::default();
    // The bot's media: what it hears is recorded (mixed + per speaker) from its first tick,
    // the devices (if any) join in.
    let mut media = devices.attach(CallArgs::john().media_options().recorded(RecordOptions {
        prefix: "bot".into(),
        sample_rate: 16_000,
        directory: Some(args.recordings.clone()),
    }));
    let trace = args.plot.as_ref().map(|_| {
        let (tap, reader) = crate::trace::call_trace(args.seconds);
        media = std::mem::take(&mut media).tap(tap);
        reader
    });
    let end = async {
        let call = bot.place_call(&CallArgs::john(), media, &mut log).await?;
        // Played from its first word once John hears the bot (the SDK holds it until then).
        if let Err(e) = call.play_clip(&prompt, PlayMode::Once) {
            let _ = call.hang_up().await;
            return Err(e.to_string());
        }
        let plan = CallPlan {
            deadline: Some(Duration::from_secs(args.seconds)),
            ctrl_c: false,
        };
        bot.run_call(call, plan, |_| None, &mut log).await
    }
    .await;
    let finished = bot.shutdown().await;
    let end = end?;
    let recording = end.recording.unwrap_or_default();
    let (refused, emulator_url) = (finished.notifications_refused, finished.service);
    if let Some(e) = end.hang_up_error {
        return Err(e);
    }
    // The bot alone (the emulator's mixed track is everyone in the call).
    let emulator_recording = bot::emulator_recording(&service, &end.call_id);

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
    let recorded_bot = emulator_recording
        .as_deref()
        .and_then(summary::file_seconds);
    let mouth_to_ear = mouth_to_ear(
        end.party_media.as_ref(),
        end.heard_start,
        &recording,
        &service,
    );
    let transport = end.transport.as_ref();
    let ok = log.established
        && log.terminated
        && end.media.heard_ticks > 0
        // RTP on Graph, PCM frames on ACS's audio stream.
        && end.media.pipeline.packets_sent + end.media.pipeline.pcm_frames_sent > 0
        && refused == 0
        && !tracks.is_empty()
        && (service.graph_url.is_some() || recorded_bot.is_some_and(|s| s > 0.0));
    let mut summary = json!({
        "ok": ok,
        "call_id": end.call_id,
        "emulator": emulator_url,
        "transitions": log.transitions,
        "roster": log.roster,
        "media": {
            "ticks": end.media.pipeline.ticks,
            "frames_heard": end.media.heard_ticks,
            "packets_sent": end.media.pipeline.packets_sent,
            "pcm_frames_sent": end.media.pipeline.pcm_frames_sent,
            "packets_received": transport.map(|t| t.packets_received),
            "packets_lost": transport.map(|t| t.packets_lost),
            "network_jitter_ms": transport.map(|t| t.jitter_ms),
            "rtcp_round_trip_ms": transport.and_then(|t| t.rtcp_round_trip_time_ms),
            "streams": summary::streams_json(end.media.streams()),
            "mouth_to_ear_latency_ms": mouth_to_ear.as_ref().ok().map(|m| (m.latency.as_secs_f64() * 1e4).round() / 10.0),
            "mouth_to_ear": match &mouth_to_ear {
                Ok(m) => json!({"from": "John", "to": "bot", "correlation": (m.correlation * 1e3).round() / 1e3}),
                Err(e) => json!({"not_measured": e}),
            },
        },
        "sources": {
            "John": samples.join(JOHN_SPEAKS).display().to_string(),
            "bot prompt": prompt_path.display().to_string(),
        },
        "recordings": {
            "bot_heard": tracks,
            "emulator_recorded_bot": {
                "path": emulator_recording.map(|p| p.display().to_string()),
                "seconds": recorded_bot,
            },
        },
        "notifications_refused": refused,
    });
    if devices.mic.is_some() || devices.speakers.is_some() {
        summary["devices"] = devices.summary();
    }
    if let (Some(path), Some(trace)) = (&args.plot, &trace) {
        let title = format!("appmedia demo: the bot's call to John ({})", end.call_id);
        crate::trace::draw(path, &title, &trace.drain()).map_err(|e| e.to_string())?;
        summary["plot"] = json!(path.display().to_string());
    }
    Ok(summary)
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
    println!("  roster     {}", summary::roster(s));
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
    match m["mouth_to_ear_latency_ms"].as_f64() {
        Some(ms) => println!(
            "  mouth-to-ear latency: {ms:.1} ms (John's voice to the bot's ear, correlation {})",
            m["mouth_to_ear"]["correlation"]
        ),
        None => println!(
            "  mouth-to-ear latency: not measured ({})",
            m["mouth_to_ear"]["not_measured"].as_str().unwrap_or("?")
        ),
    }
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
    if let Some(plot) = s["plot"].as_str() {
        println!("  plot       {plot}");
    }
}

/// John's mouth-to-ear latency: where his voice is in the bot's mixed recording (whose sample
/// 0 was heard at `heard_start`, on the bot's media clock), against when the emulator says his
/// first audible sample entered the call.
fn mouth_to_ear(
    party_media: Option<&appmedia_emulator::CallMedia>,
    heard_start: Option<std::time::Instant>,
    recording: &RecordingStatus,
    service: &ServiceArgs,
) -> Result<MouthToEar, String> {
    let first_audible_at = party_media
        .ok_or("the service is not the in-process emulator, whose media timeline it needs")?
        .parties
        .iter()
        .find_map(|p| p.first_audio_at)
        .ok_or("John said nothing")?;
    let heard_start = heard_start.ok_or("the bot's media never ticked")?;
    let heard = recording
        .tracks
        .iter()
        .find(|t| t.track == Track::Mixed)
        .ok_or("the bot's mixed recording is missing")?;
    let heard = AudioClip::open(&heard.path).map_err(|e| e.to_string())?;
    let spoken =
        AudioClip::open(service.media_samples()?.join(JOHN_SPEAKS)).map_err(|e| e.to_string())?;
    mouth_to_ear::measure(
        heard.samples(),
        CORE_RATE,
        heard_start,
        spoken.samples(),
        CORE_RATE,
        first_audible_at,
    )
}
