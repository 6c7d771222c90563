//! `appmedia`: the command-line front end of the appmedia toolkit.
//! Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bot;
mod call;
mod demo;
mod devices;
mod emulator;
mod graph;
mod lab;
mod loadtest;
mod meter;
mod mouth_to_ear;
mod play;
mod plot;
mod record;
mod samples;
mod summary;
mod trace;

#[derive(Parser)]
#[command(
    name = "appmedia",
    version,
    about = "Calling bots that host their own media"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole toolkit in one command: emulator, bot, app-hosted call, recordings.
    Demo(demo::DemoArgs),
    /// Run the local Graph calling service (the emulator).
    Emulator(emulator::EmulatorArgs),
    /// Microsoft Graph calling resources: check requests, calls and notifications.
    Graph(graph::GraphArgs),
    /// Plain-RTP lab mode (no ICE/DTLS): Opus RTP through the full media core.
    Lab(lab::LabArgs),
    /// List the audio devices for --mic / --speakers.
    Devices(devices::DevicesArgs),
    /// Create or join a call and record it: the mix and one WAV per speaker.
    Record(record::RecordArgs),
    /// Play WAV or Ogg/Opus files into a call, then hang up.
    Play(play::PlayArgs),
    /// Run N 2-party calls in real time (in process, or over plain RTP/WebRTC on loopback) and report capacity.
    Loadtest(loadtest::LoadtestArgs),
}

/// Logs to stderr for every command, filtered by `RUST_LOG` (default: `info` for the
/// emulator, a service; `warn` for the rest, whose output is their own). webrtc's `log`
/// records arrive through the same subscriber.
fn init_logs(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(match cli.command {
        Command::Emulator(_) => "info",
        _ => "warn",
    });
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Emulator(args) => emulator::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Record(args) => record::run(args),
        Command::Play(args) => play::run(args),
        Command::Loadtest(args) => match loadtest::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("appmedia: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
