//! `appmedia`: the command-line front end of the appmedia toolkit.
//! Each subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

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
/// emulator, a service; `warn` for the rest, whose output is their own; see [`default_filter`]).
fn init_logs(level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter(level));
    let _ = init_logs_to(filter, std::io::stderr);
}

/// `level` for everything but the WebRTC stack's own crates, which say only errors unless
/// `RUST_LOG` asks for more: every session start made rtc warn three times about normal
/// events (no `server_name` given to DTLS, ICE pinging before the peer's candidates, a check
/// that came before the peer's credentials), noise in every command's output. What matters to
/// a user of a session — connected, interrupted, ended and why — appmedia reports itself.
/// A directive's target matches by prefix, so `rtc` covers every crate of the stack
/// (`rtc_ice`, `rtc_dtls`, `rtc_stun`, …).
fn default_filter(level: &str) -> EnvFilter {
    EnvFilter::new(format!("{level},rtc=error"))
}

/// Installs the process's subscriber: `filter`, formatted lines to `writer`. With
/// tracing-subscriber's `tracing-log` feature, `try_init` also installs the `log` → tracing
/// bridge, so webrtc's `log` records (targets `webrtc_ice::…`, `webrtc_dtls::…`) are filtered
/// and written like any event.
fn init_logs_to<W>(filter: EnvFilter, writer: W) -> Result<(), TryInitError>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .finish()
        .try_init()
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer whose lines the test reads back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The only test here that installs the global subscriber (one per process).
    #[test]
    fn webrtcs_log_records_reach_the_subscriber_through_its_filter() {
        let captured = Captured::default();
        let writer = captured.clone();
        init_logs_to(EnvFilter::new("warn,webrtc_ice=debug"), move || {
            writer.clone()
        })
        .expect("the first subscriber of the process");
        // What webrtc-rs does: `log` macros, under its module paths as targets.
        log::debug!(target: "webrtc_ice::agent::agent_internal", "checking pair 7");
        log::debug!(target: "webrtc_dtls::conn", "below the filter's level for this target");
        log::warn!(target: "webrtc_dtls::conn", "handshake retransmitted");
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("checking pair 7"), "{text}");
        assert!(
            text.contains("webrtc_ice::agent"),
            "the target is kept: {text}"
        );
        assert!(text.contains("handshake retransmitted"), "{text}");
        assert!(!text.contains("below the filter"), "{text}");
    }

    /// The default filter keeps appmedia's warnings and the WebRTC stack's errors, and drops
    /// the stack's routine warnings (a local subscriber: the global one is the test above's).
    #[test]
    fn the_default_filter_quiets_the_webrtc_stacks_warnings_only() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(default_filter("warn"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "rtc_dtls::config", "conn.remote_addr is empty");
            tracing::warn!(target: "rtc_ice::agent", "pingAllCandidates called with no pairs");
            tracing::warn!(target: "rtc::peer_connection::handler", "password is empty");
            tracing::warn!(target: "rtc_stun::message", "a STUN warning");
            tracing::error!(target: "rtc_ice::agent", "a real ICE error");
            tracing::warn!(target: "appmedia_bot::call", "the call's own warning");
            tracing::info!(target: "appmedia_bot::call", "below warn");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("a real ICE error"), "{text}");
        assert!(text.contains("the call's own warning"), "{text}");
        for quiet in [
            "remote_addr",
            "pingAllCandidates",
            "password",
            "STUN",
            "below warn",
        ] {
            assert!(!text.contains(quiet), "{quiet}: {text}");
        }
    }
}
