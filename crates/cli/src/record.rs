//! `appmedia record`: create or join a call and record what the bot hears — the mix and one
//! file per speaker, 16-bit WAV, crash-safe — until `--seconds`, Ctrl-C (then it hangs up
//! cleanly and finishes the files) or the other side ends the call. A live level meter on a
//! terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use appmedia_audio_io::record::{Track, TrackState};
use appmedia_bot::RecordOptions;
use clap::Args;
use serde_json::{Value, json};

use crate::bot::{CallArgs, ServiceArgs};
use crate::call::{Bot, CallPlan};
use crate::devices::DeviceArgs;
use crate::meter::{self, LevelMeter, MeterTap};
use crate::summary::{self, CallLog};

/// Options of `appmedia record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    call: CallArgs,
    /// Directory the recordings go into (created if missing).
    #[arg(long, default_value = "recordings")]
    out: PathBuf,
    /// Sample rate of the WAV files.
    #[arg(long, default_value_t = 16_000, value_parser = parse_rate)]
    rate: u32,
    /// Hang up after this many seconds (default: until Ctrl-C or the other side hangs up).
    #[arg(long)]
    seconds: Option<f64>,
    #[command(flatten)]
    devices: DeviceArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// Print one JSON object instead of the readable summary.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: RecordArgs) -> ExitCode {
    summary::run_command("record", args.json, record(&args), print_summary)
}

/// `--rate`: the rates a recording is useful at (the bot-facing 16 kHz, the core's 48 kHz).
fn parse_rate(s: &str) -> Result<u32, String> {
    match s {
        "16000" => Ok(16_000),
        "48000" => Ok(48_000),
        _ => Err(format!("{s:?} is not 16000 or 48000")),
    }
}

/// Makes `dir` and proves a file can be written in it, before any call exists: the recording's
/// files are named after the call id, which only the service gives.
pub fn check_writable(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the output directory {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".appmedia-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map_err(|e| {
        format!(
            "cannot write in the output directory {}: {e}",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

pub fn seconds_arg(seconds: Option<f64>) -> Result<Option<Duration>, String> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or(format!("--seconds {s}: must be a positive number"))
        })
        .transpose()
}

async fn record(args: &RecordArgs) -> Result<Value, String> {
    let seconds = seconds_arg(args.seconds)?;
    check_writable(&args.out)?;
    let mut devices = args.devices.open()?;
    let bot = Bot::start(&args.service).await?;
    let mut log = CallLog::default();
    // What the bot hears is recorded from the call's first tick, and metered.
    let meter = Arc::new(LevelMeter::default());
    let media = args
        .call
        .media_options()
        .recorded(RecordOptions {
            prefix: "call".into(),
            sample_rate: args.rate,
            directory: Some(args.out.clone()),
        })
        .tap(MeterTap(Arc::clone(&meter)));
    let media = devices.attach(media);
    let terminal = std::io::stderr().is_terminal();
    let end = async {
        let call = bot.place_call(&args.call, media, &mut log).await?;
        let display = tokio::spawn(meter::display(meter, terminal));
        let plan = CallPlan {
            deadline: seconds,
            ctrl_c: true,
        };
        let end = bot.run_call(call, plan, |_| None, &mut log).await;
        display.abort();
        if terminal {
            eprintln!();
        }
        end
    }
    .await;
    let finished = bot.shutdown().await;
    let end = end?;
    let recording = end.recording.unwrap_or_default();
    let refused = finished.notifications_refused;
    let service = finished.service;

    let tracks: Vec<Value> = recording
        .tracks
        .iter()
        .map(|t| {
            let (source_id, speaker) = match t.track {
                Track::Mixed => (None, None),
                Track::Speaker(id) => (Some(id), log.speakers.get(&id)),
            };
            json!({
                "track": match t.track {
                    Track::Mixed => "mixed".to_owned(),
                    Track::Speaker(id) => format!("speaker {id}"),
                },
                "source_id": source_id,
                "speaker": speaker,
                "path": t.path.display().to_string(),
                "seconds": t.samples_written as f64 / f64::from(t.sample_rate.max(1)),
                "sample_rate": t.sample_rate,
                "state": format!("{:?}", t.state).to_lowercase(),
                "error": t.error,
            })
        })
        .collect();
    let files_ok = !recording.tracks.is_empty()
        && recording
            .tracks
            .iter()
            .all(|t| t.state == TrackState::Finished);
    let ok = log.established && files_ok && end.hang_up_error.is_none() && refused == 0;
    Ok(json!({
        "ok": ok,
        "call_id": end.call_id,
        "service": service,
        "stopped_by": end.stopped_by.as_str(),
        "seconds": end.media.pipeline.ticks as f64 / 50.0,
        "transitions": log.transitions,
        "roster": log.roster,
        "speakers": log
            .speakers
            .iter()
            .map(|(id, name)| (id.to_string(), Value::from(name.as_str())))
            .collect::<serde_json::Map<_, _>>(),
        "recordings": tracks,
        "out": args.out.display().to_string(),
        "media": {
            "ticks": end.media.pipeline.ticks,
            "frames_heard": end.media.heard_ticks,
            "packets_sent": end.media.pipeline.packets_sent,
            "packets_received": end.transport.as_ref().map(|t| t.packets_received),
            "packets_lost": end.transport.as_ref().map(|t| t.packets_lost),
            "streams": summary::streams_json(end.media.streams()),
            "frames_dropped": recording.counters.dropped_queue_full,
        },
        "devices": devices.summary(),
        "hang_up_error": end.hang_up_error,
        "notifications_refused": refused,
    }))
}

fn print_summary(s: &Value) {
    summary::print_call_headline("record", s);
    println!("  recordings in {}:", s["out"].as_str().unwrap_or("?"));
    for t in s["recordings"].as_array().into_iter().flatten() {
        let error = t["error"]
            .as_str()
            .map(|e| format!("  FAILED: {e}"))
            .unwrap_or_default();
        let who = t["speaker"]
            .as_str()
            .map(|name| format!(" — {name}"))
            .unwrap_or_default();
        println!(
            "    {:<11} {} ({:.1} s, {} Hz){who}{error}",
            t["track"].as_str().unwrap_or("?"),
            t["path"].as_str().unwrap_or("?"),
            t["seconds"].as_f64().unwrap_or(0.0),
            t["sample_rate"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_must_be_positive() {
        assert_eq!(seconds_arg(None), Ok(None));
        assert_eq!(
            seconds_arg(Some(2.5)),
            Ok(Some(Duration::from_millis(2500)))
        );
        assert!(seconds_arg(Some(0.0)).is_err());
        assert!(seconds_arg(Some(-1.0)).is_err());
        assert!(seconds_arg(Some(f64::NAN)).is_err());
    }

    #[test]
    fn an_unwritable_directory_is_refused() {
        let file = std::env::temp_dir().join(format!("appmedia-not-a-dir-{}", std::process::id()));
        std::fs::write(&file, b"x").unwrap();
        let e = check_writable(&file.join("sub")).unwrap_err();
        assert!(e.contains("cannot create the output directory"), "{e}");
        std::fs::remove_file(&file).unwrap();
    }
}
