//! `appmedia`: the command-line front end of the appmedia toolkit.
//! Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod loadtest;

#[derive(Debug, Parser)]
#[command(name = "appmedia", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run N in-process 2-party calls in real time and report capacity.
    Loadtest(loadtest::LoadtestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Loadtest(args) => loadtest::run(args).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("appmedia: {e}");
            ExitCode::FAILURE
        }
    }
}
