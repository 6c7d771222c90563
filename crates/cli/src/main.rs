//! `appmedia`: the command-line front end of the appmedia toolkit.
//! Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod devices;
mod graph;
mod lab;

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
    /// Microsoft Graph calling resources: check requests, calls and notifications.
    Graph(graph::GraphArgs),
    /// List the audio devices for --mic / --speakers.
    Devices(devices::DevicesArgs),
    /// Plain-RTP lab mode (no ICE/DTLS): Opus RTP through the full media core.
    Lab(lab::LabArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Graph(args) => graph::run(args),
        Command::Devices(args) => devices::run(args),
        Command::Lab(args) => lab::run(args),
    }
}
