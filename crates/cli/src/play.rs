//! `appmedia play FILE [FILE...]`: plays WAV (any common rate, channels and PCM/float format)
//! or Ogg/Opus files, streamed from disk, into a call through a prompt queue — one completion event per prompt,
//! like Graph's `playPrompt` — and hangs up when the queue is done (or at `--seconds`, Ctrl-C,
//! or when the other side hangs up). Every file is checked before the call is created.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use appmedia_audio_io::playback::{
    Encoding, OpenError, PlayMode, PromptId, PromptOutcome, PromptPlayer, PromptQueue,
};
use appmedia_audio_io::stream::StreamedClip;
use clap::Args;
use serde_json::{Value, json};

use crate::bot::{self, Bot, CallArgs, CallLog, CallPlan, DeviceArgs, ServiceArgs, StopReason};

/// Options of `appmedia play`.
#[derive(Debug, Args)]
pub struct PlayArgs {
    /// WAV or Ogg/Opus files, streamed from disk and played one after the other.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Play the files again and again until --seconds, Ctrl-C or the other side hangs up.
    #[arg(long = "loop")]
    looped: bool,
    #[command(flatten)]
    call: CallArgs,
    /// Hang up after this many seconds even if prompts are still playing.
    #[arg(long)]
    seconds: Option<f64>,
    #[command(flatten)]
    devices: DeviceArgs,
    #[command(flatten)]
    service: ServiceArgs,
    /// Print one JSON object instead of the readable lines.
    #[arg(long)]
    json: bool,
}

/// How long the call stays up after the last prompt ended: its last frames still have to
/// cross the network and the far side's jitter buffer.
const TAIL: Duration = Duration::from_millis(500);

/// Runs the subcommand.
pub fn run(args: PlayArgs) -> ExitCode {
    bot::run_command("play", args.json, play(&args), print_summary)
}

/// A file checked and ready to play, streamed from disk (WAV or Ogg/Opus): every problem with
/// it is an error at open, before a call exists.
#[derive(Clone)]
pub struct Prompt(StreamedClip);

impl Prompt {
    pub fn open(path: &Path) -> Result<Prompt, OpenError> {
        StreamedClip::open(path).map(Prompt)
    }

    fn duration(&self) -> Duration {
        self.0.duration()
    }

    fn queue(&self, queue: &PromptQueue) -> Result<PromptId, String> {
        queue
            .play_streamed(&self.0, PlayMode::Once)
            .map_err(|e| e.to_string())
    }

    fn describe(&self) -> String {
        let f = self.0.source_format();
        let encoding = match f.encoding {
            Encoding::PcmInt => format!("{}-bit PCM", f.bits_per_sample),
            Encoding::PcmFloat => "float".to_owned(),
            Encoding::Opus => "Ogg/Opus".to_owned(),
        };
        format!(
            "{encoding}, {} Hz, {} ch, {:.1} s",
            f.sample_rate,
            f.channels,
            self.duration().as_secs_f64()
        )
    }
}

/// A prompt's completion, as printed and summarized.
struct Completion {
    index: usize,
    outcome: PromptOutcome,
    at: Duration,
}

/// Reads completion events until `stop`: prints each, queues a prompt again when looping,
/// and fires `all_done` once every prompt has ended (never, when looping).
struct Watch {
    queue: PromptQueue,
    prompts: Vec<Prompt>,
    names: Vec<String>,
    ids: Vec<PromptId>,
    looped: bool,
    print: bool,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    all_done: tokio::sync::oneshot::Sender<()>,
}

fn watch_events(watch: Watch) -> Vec<Completion> {
    let Watch {
        queue,
        prompts,
        names,
        mut ids,
        looped,
        print,
        epoch,
        stop,
        all_done,
    } = watch;
    let mut completions = Vec::new();
    let mut all_done = Some(all_done);
    let mut ended = vec![false; prompts.len()];
    while !stop.load(Ordering::Relaxed) {
        let Some(event) = queue.recv_event_timeout(Duration::from_millis(50)) else {
            continue;
        };
        let Some(index) = ids.iter().position(|id| *id == event.id) else {
            continue;
        };
        let at = epoch.elapsed();
        if print {
            println!(
                "{:>7.2} s  prompt {} {:?}: {}",
                at.as_secs_f64(),
                index + 1,
                event.outcome,
                names[index]
            );
        }
        completions.push(Completion {
            index,
            outcome: event.outcome,
            at,
        });
        if looped && event.outcome == PromptOutcome::Completed {
            match prompts[index].queue(&queue) {
                Ok(id) => ids[index] = id,
                Err(e) => {
                    eprintln!("appmedia play: cannot queue {} again: {e}", names[index]);
                    ended[index] = true;
                }
            }
        } else {
            ended[index] = true;
        }
        if ended.iter().all(|e| *e)
            && let Some(tx) = all_done.take()
        {
            let _ = tx.send(());
        }
    }
    completions
}

async fn play(args: &PlayArgs) -> Result<Value, String> {
    let seconds = crate::record::seconds_arg(args.seconds)?;
    let prompts: Vec<Prompt> = args
        .files
        .iter()
        .map(|f| Prompt::open(f).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = args.files.iter().map(|f| f.display().to_string()).collect();
    let mut devices = args.devices.open()?;
    let mut bot = Bot::start(&args.service).await?;
    let mut log = CallLog::default();
    let call = bot.place_call(&args.call, &mut log).await?;
    let call_id = call.call_id.clone();
    let epoch = call.epoch;

    let (player, queue) = PromptPlayer::new(prompts.len() + 1);
    let mut ids = Vec::new();
    for prompt in &prompts {
        match prompt.queue(&queue) {
            Ok(id) => ids.push(id),
            Err(e) => {
                let _ = bot.hang_up(&call.call_id, &call.session, &mut log).await;
                let _ = bot.shutdown().await;
                return Err(e);
            }
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let watch = Watch {
        queue,
        prompts: prompts.clone(),
        names: names.clone(),
        ids,
        looped: args.looped,
        print: !args.json,
        epoch,
        stop: Arc::clone(&stop),
        all_done: done_tx,
    };
    let watcher = std::thread::spawn(move || watch_events(watch));
    let done = async {
        if done_rx.await.is_ok() {
            tokio::time::sleep(TAIL).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let mut io = devices.media_io();
    io.prompts = Some(player);
    let plan = CallPlan {
        io,
        recording: None,
        deadline: seconds,
        ctrl_c: true,
    };
    let end = bot.run_call(call, plan, done, &mut log).await;
    stop.store(true, Ordering::Relaxed);
    let completions = watcher.join().unwrap_or_default();
    let finished = bot.shutdown().await;
    let end = end?;
    let (refused, service) = (finished.notifications_refused, finished.service);

    let all_completed = (0..prompts.len()).all(|i| {
        completions
            .iter()
            .any(|c| c.index == i && c.outcome == PromptOutcome::Completed)
    });
    let ok = log.established
        && end.hang_up_error.is_none()
        && refused == 0
        && match end.stopped_by {
            StopReason::Done => all_completed,
            StopReason::Deadline | StopReason::Interrupted => true,
            StopReason::Terminated => all_completed,
        };
    let emulator_recorded = bot::emulator_recording(&args.service, &call_id).map(|path| {
        json!({
            "path": path.display().to_string(),
            "seconds": bot::file_seconds(&path),
        })
    });
    Ok(json!({
        "ok": ok,
        "call_id": call_id,
        "service": service,
        "stopped_by": end.stopped_by.as_str(),
        "seconds": end.media.ticks as f64 / 50.0,
        "prompts": prompts.iter().zip(&names).map(|(p, name)| json!({
            "file": name,
            "format": p.describe(),
            "seconds": p.duration().as_secs_f64(),
        })).collect::<Vec<_>>(),
        "events": completions.iter().map(|c| json!({
            "prompt": c.index + 1,
            "file": names[c.index],
            "outcome": format!("{:?}", c.outcome).to_lowercase(),
            "at_ms": c.at.as_millis() as u64,
        })).collect::<Vec<_>>(),
        "transitions": log.transitions,
        "roster": log.roster,
        "media": {
            "ticks": end.media.ticks,
            "frames_heard": end.media.heard_ticks,
            "packets_sent": end.media.stats.packets_sent,
            "packets_received": end.transport.packets_received,
            "prompt_frames_played": end.media.io.prompts.as_ref().map(|p| p.counters().frames_played),
            "stream_underruns": end.media.io.prompts.as_ref().map(|p| p.counters().stream_underruns),
        },
        "emulator_recorded_bot": emulator_recorded,
        "devices": devices.summary(),
        "hang_up_error": end.hang_up_error,
        "notifications_refused": refused,
    }))
}

fn print_summary(s: &Value) {
    bot::print_call_headline("play", s);
    for (i, p) in s["prompts"].as_array().into_iter().flatten().enumerate() {
        println!(
            "  prompt {}  {} ({})",
            i + 1,
            p["file"].as_str().unwrap_or("?"),
            p["format"].as_str().unwrap_or("?")
        );
    }
    if let Some(path) = s["emulator_recorded_bot"]["path"].as_str() {
        println!("  the emulator recorded the bot: {path}");
    }
}
