//! `appmedia emulator`: runs the local Graph calling service until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use appmedia_emulator::{Directory, Emulator, EmulatorConfig, Faults};
use clap::Args;

/// Options of `appmedia emulator`.
#[derive(Debug, Args)]
pub struct EmulatorArgs {
    /// Address to listen on (loopback by default; another address exposes the service).
    #[arg(long, default_value = "127.0.0.1:8642")]
    bind: SocketAddr,
    /// URL clients reach the service at, when not http://{bind}.
    #[arg(long)]
    public_url: Option<String>,
    /// Directory file (TOML); the built-in one matches the Graph create-call examples.
    #[arg(long)]
    directory: Option<PathBuf>,
    /// Print the built-in directory and exit.
    #[arg(long)]
    print_directory: bool,
    /// `iss` of the tokens on notifications.
    #[arg(long, default_value = appmedia_emulator::DEFAULT_NOTIFICATION_ISSUER)]
    notification_issuer: String,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    max_body_bytes: usize,
    /// Ringing timeout (seconds) for calls whose request sets none.
    #[arg(long, default_value_t = 60)]
    ringing_timeout: u64,
    /// Seconds an incoming call rings the bot before it ends unanswered (Graph: 15).
    #[arg(long, default_value_t = 15)]
    incoming_answer_timeout: u64,
    /// Seconds without an answer to ICE consent checks after which the bot's app-hosted media
    /// counts as lost and the call ends (410, client media error), as Graph ends the call of
    /// a bot that died.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    media_timeout_secs: u64,
    /// Fault injection: deliver `established` before `establishing`.
    #[arg(long)]
    established_first: bool,
    /// Where the files parties speak (`media = { speak = "…" }` in the directory) are
    /// (default: ./media-samples when it has the default files, else the built-in ones).
    #[arg(long, value_name = "DIR")]
    media_samples: Option<PathBuf>,
    /// Record each app-hosted call: the bot to DIR/{call id}-speaker-1.wav, everyone to DIR/{call id}-mixed.wav.
    #[arg(long, value_name = "DIR")]
    recordings: Option<PathBuf>,
    /// Once ready, print exactly one JSON line on stdout (the URLs and the applications'
    /// credentials) and nothing else there, for tools that start the emulator.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub fn run(args: EmulatorArgs) -> ExitCode {
    if args.print_directory {
        print!("{}", appmedia_emulator::directory::SEED_DIRECTORY_TOML);
        println!("\n# Each meeting's Teams join link (appmedia record --join-url LINK):");
        for meeting in &Directory::seed().meetings {
            println!("# {}: {}", meeting.join_meeting_id, meeting.join_url());
        }
        println!("\n# Each user's ACS identity (ACS Call Automation targets, `8:acs:` raw ids):");
        for user in &Directory::seed().users {
            println!(
                "# {} ({}): {}",
                user.id,
                user.display_name,
                appmedia_emulator::acs::acs_user_id(&user.tenant, &user.id)
            );
        }
        println!(
            "# The ACS resource's own phone number: {}",
            appmedia_emulator::acs::DEFAULT_PHONE_NUMBER
        );
        return ExitCode::SUCCESS;
    }
    let directory = match &args.directory {
        Some(path) => match Directory::from_toml_file(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("appmedia emulator: {e}");
                return ExitCode::from(2);
            }
        },
        None => Directory::seed(),
    };
    let media_samples_dir = match crate::samples::dir(args.media_samples.as_deref()) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("appmedia emulator: {e}");
            return ExitCode::from(2);
        }
    };
    let config = EmulatorConfig {
        bind: args.bind,
        public_base_url: args.public_url,
        directory,
        notification_issuer: args.notification_issuer,
        max_body_bytes: args.max_body_bytes,
        default_ringing_timeout: Duration::from_secs(args.ringing_timeout),
        faults: Faults {
            established_before_establishing: args.established_first,
        },
        incoming_answer_timeout: Duration::from_secs(args.incoming_answer_timeout),
        media_samples_dir,
        recordings_dir: args.recordings,
        transport: appmedia_transport::TransportConfig {
            peer_timeout: Duration::from_secs(args.media_timeout_secs),
            ..appmedia_transport::TransportConfig::default()
        },
        ..EmulatorConfig::default()
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("appmedia emulator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let emulator = match Emulator::start(config).await {
            Ok(e) => e,
            Err(e) => {
                eprintln!("appmedia emulator: {e}");
                return ExitCode::FAILURE;
            }
        };
        if args.json {
            println!("{}", ready_line(&emulator));
        } else {
            print_banner(&emulator);
        }
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("appmedia emulator: waiting for Ctrl-C failed: {e}");
        }
        emulator.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// The `--json` line: what a tool needs to use the running emulator.
fn ready_line(emulator: &Emulator) -> serde_json::Value {
    let applications: Vec<serde_json::Value> = emulator
        .directory()
        .applications
        .iter()
        .map(|app| {
            serde_json::json!({
                "id": app.id,
                "display_name": app.display_name,
                "client_secret": app.client_secret,
                "tenant": app.tenant,
                "token_url": emulator.token_url(&app.tenant),
                "roles": app.roles,
            })
        })
        .collect();
    serde_json::json!({
        "base_url": emulator.base_url(),
        "graph_url": emulator.graph_url(),
        "control_url": emulator.control_url(),
        "softphone_url": emulator.softphone_url(),
        "notification_openid_url": emulator.notification_openid_configuration_url(),
        "notification_issuer": emulator.notification_issuer(),
        "applications": applications,
        "acs": acs_object(emulator),
    })
}

/// The ready line's `"acs"`: how a Call Automation bot reaches the emulated resource.
fn acs_object(emulator: &Emulator) -> serde_json::Value {
    let acs = emulator.acs();
    serde_json::json!({
        "connection_string": acs.connection_string,
        "ca_cert": acs.ca_cert,
        "phone_number": acs.phone_number,
        "endpoint": acs.endpoint,
        "events_openid_url": acs.events_openid_url,
        "events_issuer": acs.events_issuer,
        "events_audience": acs.events_audience,
    })
}

/// The human-readable start-up text.
fn print_banner(emulator: &Emulator) {
    println!("Graph calling emulator on {}", emulator.base_url());
    println!("  Graph API:          {}", emulator.graph_url());
    for tenant in &emulator.directory().tenants {
        println!("  token endpoint:     {}", emulator.token_url(&tenant.id));
    }
    println!(
        "  notification keys:  {} (iss {})",
        emulator.notification_openid_configuration_url(),
        emulator.notification_issuer()
    );
    for app in &emulator.directory().applications {
        println!(
            "  app {} ({}): roles {}",
            app.id,
            app.display_name,
            app.roles.join(", ")
        );
    }
    println!("  control API:        {}", emulator.control_url());
    println!("  softphone:          {}", emulator.softphone_url());
    let acs = emulator.acs();
    println!("  ACS Call Automation: {}", acs.endpoint);
    println!("    connection string: {}", acs.connection_string);
    println!("    CA to trust:       {}", acs.ca_cert.display());
    println!("    phone number:      {}", acs.phone_number);
    println!(
        "    event keys:        {} (iss {})",
        acs.events_openid_url, acs.events_issuer
    );
    println!("Ctrl-C stops it.");
}
