//! `appmedia graph check FILE.json|-`: round-trips a create-call request, a call, a
//! notification batch or a Graph error body through the typed model.
//!
//! stdout carries only the document after the round trip (JSON), so a script can pipe
//! it on; stderr carries the verdict, the reasons, and for a request the permissions
//! it needs. Exit status: 0 valid, 1 invalid, 2 not JSON / not a known resource /
//! unreadable input.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use appmedia_signalling::check::{CheckReport, check_json};
use clap::{Args, Subcommand};

/// Arguments of `appmedia graph`.
#[derive(Args)]
pub struct GraphArgs {
    #[command(subcommand)]
    command: GraphCommand,
}

#[derive(Subcommand)]
enum GraphCommand {
    /// Check a create-call request, a call, a notification batch or an error body.
    ///
    /// Prints the document back on stdout after the round trip through the typed
    /// model; the verdict (and a request's permissions) go to stderr.
    /// Exit 0 valid, 1 invalid, 2 not JSON or not a known resource.
    Check {
        /// The JSON file, or `-` for stdin.
        file: PathBuf,
    },
}

/// Exit status of `check`, shared with the tests' expectations.
const VALID: u8 = 0;
const INVALID: u8 = 1;
const UNUSABLE: u8 = 2;

/// Runs `appmedia graph ...`.
pub fn run(args: GraphArgs) -> ExitCode {
    match args.command {
        GraphCommand::Check { file } => ExitCode::from(check(&file)),
    }
}

fn check(file: &PathBuf) -> u8 {
    let input = match read_input(file) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return UNUSABLE;
        }
    };
    let report = match check_json(&input) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return UNUSABLE;
        }
    };
    if let Some(document) = &report.round_tripped {
        let mut stdout = std::io::stdout().lock();
        let written = serde_json::to_writer_pretty(&mut stdout, document)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(stdout))
            .and_then(|()| stdout.flush());
        if let Err(e) = written {
            eprintln!("error: cannot write to stdout: {e}");
            return UNUSABLE;
        }
    }
    print_verdict(&report);
    if report.is_valid() { VALID } else { INVALID }
}

fn read_input(file: &PathBuf) -> std::io::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut input = Vec::new();
        std::io::stdin().lock().read_to_end(&mut input)?;
        Ok(input)
    } else {
        std::fs::read(file)
    }
}

fn print_verdict(report: &CheckReport) {
    let verdict = if report.is_valid() {
        "valid"
    } else {
        "invalid"
    };
    eprintln!("{}: {verdict}", report.kind);
    for problem in &report.problems {
        eprintln!("  error: {problem}");
    }
    for note in &report.notes {
        eprintln!("  {note}");
    }
    if let Some(permissions) = &report.permissions {
        eprintln!("  needs application permissions: {permissions}");
    }
}
