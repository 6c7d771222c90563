//! `appmedia devices`: the audio devices a call can use for `--mic` / `--speakers`; and those
//! two flags, whose devices join a call's media on the bot SDK's scheduler — the microphone as
//! a source mixed into what the bot sends, the speakers as a tap playing what it hears.

use std::process::ExitCode;

use appmedia_audio_io::device::{
    DeviceConfig, DeviceInfo, Direction, MicSource, Microphone, SpeakerFeed, Speakers,
    list_devices, probe_format,
};
use appmedia_bot::{MediaOptions, MediaSource, MediaTap};
use appmedia_media::frame::Frame48;
use appmedia_media::pipeline::CallPipeline;
use serde_json::{Value, json};

/// `--mic [NAME]` and `--speakers [NAME]`: live devices (names from `appmedia devices`).
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Send this microphone into the call (no NAME: the default input device).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub mic: Option<String>,
    /// Play the call's audio on these speakers (no NAME: the default output device).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub speakers: Option<String>,
}

/// The devices a call uses, opened before the call so that a missing one is an error first.
/// The streams stay here (their counters make the summary); their tick ends go to the call's
/// media with [`OpenDevices::attach`].
#[derive(Default)]
pub struct OpenDevices {
    pub mic: Option<Microphone>,
    mic_source: Option<MicSource>,
    pub speakers: Option<Speakers>,
    speaker_feed: Option<SpeakerFeed>,
}

impl DeviceArgs {
    /// Opens what was asked for.
    pub fn open(&self) -> Result<OpenDevices, String> {
        let config = |name: &str| DeviceConfig::new((!name.is_empty()).then_some(name));
        let mut devices = OpenDevices::default();
        if let Some(name) = &self.mic {
            let (mic, source) =
                Microphone::open(&config(name)).map_err(|e| format!("--mic: {e}"))?;
            devices.mic = Some(mic);
            devices.mic_source = Some(source);
        }
        if let Some(name) = &self.speakers {
            let (speakers, feed) =
                Speakers::open(&config(name)).map_err(|e| format!("--speakers: {e}"))?;
            devices.speakers = Some(speakers);
            devices.speaker_feed = Some(feed);
        }
        Ok(devices)
    }
}

/// The microphone as a source of the call's media: pulled once a tick on the media worker.
struct MicInput(MicSource);

impl MediaSource for MicInput {
    fn next_frame(&mut self, out: &mut Frame48) -> bool {
        self.0.pull_frame(out)
    }
}

/// The speakers as a tap: what the bot heard this tick (the mix), pushed to the device.
struct SpeakerOutput(SpeakerFeed);

impl MediaTap for SpeakerOutput {
    fn on_tick(&mut self, _tick: u64, pipeline: &CallPipeline) {
        self.0.push_frame(pipeline.bot_frame_48k());
    }
}

impl OpenDevices {
    /// Hands the devices' tick ends to a call's media (once).
    pub fn attach(&mut self, mut options: MediaOptions) -> MediaOptions {
        if let Some(mic) = self.mic_source.take() {
            options = options.source(MicInput(mic));
        }
        if let Some(feed) = self.speaker_feed.take() {
            options = options.tap(SpeakerOutput(feed));
        }
        options
    }

    /// What the devices did, for a summary (`null` when none was used).
    pub fn summary(&self) -> Value {
        let device = |name: &str, rate: u32, c: appmedia_audio_io::device::DeviceCounters| {
            json!({
                "device": name,
                "sample_rate": rate,
                "callbacks": c.callbacks,
                "samples": c.device_samples,
                "underrun_samples": c.underrun_samples,
                "overrun_samples": c.overrun_samples,
            })
        };
        json!({
            "mic": self.mic.as_ref().map(|m| device(m.device(), m.format().sample_rate, m.counters())),
            "speakers": self.speakers.as_ref().map(|s| device(s.device(), s.format().sample_rate, s.counters())),
        })
    }
}

/// List the audio input and output devices (names to pass to `--mic` / `--speakers`).
#[derive(Debug, clap::Args)]
pub struct DevicesArgs {
    /// Only devices that can capture.
    #[arg(long, conflicts_with = "output")]
    input: bool,
    /// Only devices that can play.
    #[arg(long)]
    output: bool,
    /// Also open each device to show the format a call would use (slower; may wake devices).
    #[arg(long)]
    formats: bool,
    /// Print one JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: DevicesArgs) -> ExitCode {
    let devices = match list_devices() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("appmedia devices: {e}");
            return ExitCode::FAILURE;
        }
    };
    let devices: Vec<DeviceInfo> = devices
        .into_iter()
        .filter(|d| (!args.input || d.input) && (!args.output || d.output))
        .collect();
    let rows: Vec<Row> = devices
        .iter()
        .map(|d| Row {
            format_in: (args.formats && d.input).then(|| describe(&d.name, Direction::Input)),
            format_out: (args.formats && d.output).then(|| describe(&d.name, Direction::Output)),
            device: d,
        })
        .collect();
    if args.json {
        let json: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::json!({
                    "name": r.device.name,
                    "description": r.device.description,
                    "input": r.device.input,
                    "output": r.device.output,
                });
                if let Some(f) = &r.format_in {
                    v["inputFormat"] = f.clone().into();
                }
                if let Some(f) = &r.format_out {
                    v["outputFormat"] = f.clone().into();
                }
                v
            })
            .collect();
        println!("{}", serde_json::Value::Array(json));
        return ExitCode::SUCCESS;
    }
    if rows.is_empty() {
        eprintln!(
            "appmedia devices: no audio devices found (no sound card, or ALSA is not configured)"
        );
        return ExitCode::SUCCESS;
    }
    let width = rows.iter().map(|r| r.device.name.len()).max().unwrap_or(0);
    println!("{:<width$}  {:<6}  DESCRIPTION", "NAME", "DIR");
    for r in &rows {
        let dir = match (r.device.input, r.device.output) {
            (true, true) => "in/out",
            (true, false) => "in",
            (false, true) => "out",
            (false, false) => "-",
        };
        println!(
            "{:<width$}  {dir:<6}  {}",
            r.device.name, r.device.description
        );
        for (label, f) in [("input", &r.format_in), ("output", &r.format_out)] {
            if let Some(f) = f {
                println!("{:<width$}  {:<6}  {label}: {f}", "", "");
            }
        }
    }
    ExitCode::SUCCESS
}

struct Row<'a> {
    device: &'a DeviceInfo,
    format_in: Option<String>,
    format_out: Option<String>,
}

fn describe(name: &str, direction: Direction) -> String {
    match probe_format(Some(name), direction) {
        Ok(f) => format!(
            "{} Hz, {} ch, {}",
            f.sample_rate, f.channels, f.sample_format
        ),
        Err(e) => format!("unusable ({e})"),
    }
}
