//! `appmedia devices`: the audio devices a call can use for `--mic` / `--speakers`.

use std::process::ExitCode;

use appmedia_audio_io::device::{DeviceInfo, Direction, list_devices, probe_format};

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
