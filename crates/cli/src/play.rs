//! `appmedia play FILE [FILE...]`: plays WAV (any common rate, channels and PCM/float format)
//! or Ogg/Opus files, streamed from disk, into a call through a prompt queue — one completion event per prompt,
//! like Graph's `playPrompt` — and hangs up when the queue is done (or at `--seconds`, Ctrl-C,
//! or when the other side hangs up). Every file is checked before the call is created.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use appmedia_audio_io::format::{Encoding, OpenError};
use appmedia_audio_io::playback::{PlayMode, PromptId, PromptOutcome};
use appmedia_audio_io::stream::StreamedClip;
use appmedia_bot::{CallControl, Event};
use clap::Args;
use serde_json::{Value, json};

use crate::bot::{CallArgs, ServiceArgs, emulator_recording};
use crate::call::{Bot, CallPlan, StopReason};
use crate::devices::DeviceArgs;
use crate::summary::{self, CallLog};

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

/// Prompts queued in the call's player at once: the next is always queued before the one
/// playing ends (no gap between files), and any number of files fits the player's queue.
const AHEAD: usize = 4;

/// Runs the subcommand.
pub fn run(args: PlayArgs) -> ExitCode {
    summary::run_command("play", args.json, play(&args), print_summary)
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

/// The files played in turn through the call's prompt queue: queues up to [`AHEAD`] at a
/// time, reads their completions (`Event::PromptFinished`), prints each, queues a file again
/// when looping, and says when every file has ended (never, when looping).
struct Playlist<'a> {
    call: CallControl,
    prompts: &'a [Prompt],
    names: &'a [String],
    looped: bool,
    print: bool,
    /// When the media connected: event times count from here.
    epoch: Instant,
    /// Files waiting for a place in the player's queue, in play order.
    waiting: VecDeque<usize>,
    /// Queued or playing: prompt id → file.
    queued: Vec<(PromptId, usize)>,
    ended: Vec<bool>,
    completions: Vec<Completion>,
}

impl<'a> Playlist<'a> {
    fn new(call: CallControl, prompts: &'a [Prompt], names: &'a [String], args: &PlayArgs) -> Self {
        Playlist {
            call,
            prompts,
            names,
            looped: args.looped,
            print: !args.json,
            epoch: Instant::now(),
            waiting: (0..prompts.len()).collect(),
            queued: Vec::new(),
            ended: vec![false; prompts.len()],
            completions: Vec::new(),
        }
    }

    /// Queues waiting files while the player has room; the first that cannot be queued is
    /// the error.
    fn fill(&mut self) -> Result<(), (usize, String)> {
        while self.queued.len() < AHEAD
            && let Some(index) = self.waiting.pop_front()
        {
            let id = self
                .call
                .play_streamed(&self.prompts[index].0, PlayMode::Once)
                .map_err(|e| (index, e.to_string()))?;
            self.queued.push((id, index));
        }
        Ok(())
    }

    /// A call event: `Some(tail)` once every file has ended.
    fn on_event(&mut self, event: &Event) -> Option<Duration> {
        let Event::PromptFinished(event) = event else {
            return None;
        };
        let at = self.queued.iter().position(|(id, _)| *id == event.id)?;
        let (_, index) = self.queued.remove(at);
        let elapsed = self.epoch.elapsed();
        if self.print {
            println!(
                "{:>7.2} s  prompt {} {:?}: {}",
                elapsed.as_secs_f64(),
                index + 1,
                event.outcome,
                self.names[index]
            );
        }
        self.completions.push(Completion {
            index,
            outcome: event.outcome,
            at: elapsed,
        });
        if self.looped && event.outcome == PromptOutcome::Completed {
            self.waiting.push_back(index);
        } else {
            self.ended[index] = true;
        }
        while let Err((index, e)) = self.fill() {
            eprintln!("appmedia play: cannot queue {}: {e}", self.names[index]);
            self.ended[index] = true;
        }
        self.ended.iter().all(|e| *e).then_some(TAIL)
    }
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
    let bot = Bot::start(&args.service).await?;
    let mut log = CallLog::default();
    let media = devices.attach(args.call.media_options());
    let played = async {
        let call = bot.place_call(&args.call, media, &mut log).await?;
        // The files start once the media flows, so that all of each reaches the other side.
        let mut playlist = Playlist::new(call.control(), &prompts, &names, args);
        if let Err((_, e)) = playlist.fill() {
            let _ = call.hang_up().await;
            return Err(e);
        }
        let plan = CallPlan {
            deadline: seconds,
            ctrl_c: true,
        };
        let end = bot
            .run_call(call, plan, |e| playlist.on_event(e), &mut log)
            .await?;
        Ok((end, playlist.completions))
    }
    .await;
    let finished = bot.shutdown().await;
    let (end, completions) = played?;
    let (refused, service) = (finished.notifications_refused, finished.service);
    let call_id = end.call_id.clone();

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
    let emulator_recorded = emulator_recording(&args.service, &call_id).map(|path| {
        json!({
            "path": path.display().to_string(),
            "seconds": summary::file_seconds(&path),
        })
    });
    Ok(json!({
        "ok": ok,
        "call_id": call_id,
        "service": service,
        "stopped_by": end.stopped_by.as_str(),
        "seconds": end.media.pipeline.ticks as f64 / 50.0,
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
            "ticks": end.media.pipeline.ticks,
            "frames_heard": end.media.heard_ticks,
            "packets_sent": end.media.pipeline.packets_sent,
            "packets_received": end.transport.as_ref().map(|t| t.packets_received),
            "prompt_frames_played": end.media.prompts.frames_played,
            "stream_underruns": end.media.prompts.stream_underruns,
            "passthrough_frames": end.media.pipeline.passthrough_frames,
            "frames_encoded": end.media.pipeline.frames_encoded,
        },
        "emulator_recorded_bot": emulator_recorded,
        "devices": devices.summary(),
        "hang_up_error": end.hang_up_error,
        "notifications_refused": refused,
    }))
}

fn print_summary(s: &Value) {
    summary::print_call_headline("play", s);
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
