//! `appmedia`: the command-line front end of the appmedia toolkit.
//! Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod devices;

#[derive(Debug, Parser)]
#[command(
    name = "appmedia",
    version,
    about = "Calling bots that host their own media"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the audio devices for --mic / --speakers.
    Devices(devices::DevicesArgs),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Devices(args) => devices::run(args),
    }
}
