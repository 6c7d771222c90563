//! What every example shares: start the bot from `APPMEDIA_*` variables (a Graph bot's
//! `APPMEDIA_APP_ID`…, or an ACS bot's `APPMEDIA_BACKEND=acs` and connection string), or —
//! with neither — on an embedded emulator whose seed bot it becomes, with the emulator's
//! calling webhook pointing at it, and say how to ring it.

use appmedia::bot::{Bot, BotConfig};
use appmedia_emulator::{Emulator, EmulatorConfig};

/// The seed directory's calling bot.
pub const SEED_BOT: &str = "2891555a-92ff-42e6-80fa-6e1300c6b5c6";
const SEED_BOT_SECRET: &str = "calling-bot-secret";
/// The seed's PSTN caller.
pub const SEED_PHONE: &str = "+12345678901";
/// The bot's phone number (the seed's application instance).
pub const BOT_NUMBER: &str = "+14255550100";

/// A started bot, and the emulator it runs on when embedded.
pub struct Running {
    pub bot: Bot,
    pub emulator: Option<Emulator>,
}

impl Running {
    /// Drains the bot (no new calls; its calls may end by themselves until
    /// `APPMEDIA_DRAIN_SECS`, then are hung up, recordings finished), then stops the emulator.
    pub async fn stop(self) {
        self.bot.drain().await;
        if let Some(emulator) = self.emulator {
            emulator.shutdown().await;
        }
    }
}

/// Starts `name`'s bot.
pub async fn start(name: &str) -> Result<Running, Box<dyn std::error::Error>> {
    // Logs on stderr, filtered by RUST_LOG (default: info); stdout is the example's own lines.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    // A Graph bot names its app; an ACS bot its backend (and connection string).
    let configured = [
        appmedia::bot::config::env::APP_ID,
        appmedia::bot::config::env::BACKEND,
    ]
    .iter()
    .any(|var| std::env::var_os(var).is_some());
    if configured {
        let bot = Bot::start(BotConfig::from_env()?).await?;
        println!(
            "{name}: instance {} listening on {} for calls at {}",
            bot.instance_id(),
            bot.local_addr(),
            bot.callback_uri()
        );
        return Ok(Running {
            bot,
            emulator: None,
        });
    }
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    let bot = Bot::start(BotConfig::for_emulator(
        &emulator,
        SEED_BOT,
        SEED_BOT_SECRET,
    )?)
    .await?;
    emulator.set_calling_webhook(SEED_BOT, bot.callback_uri())?;
    println!("{name}: on the embedded emulator {}", emulator.graph_url());
    println!(
        "  ring it:  curl -X POST {}/incoming-calls -H 'content-type: application/json' \\\n             -d '{{\"from\": \"{SEED_PHONE}\", \"to\": \"{BOT_NUMBER}\"}}'",
        emulator.control_url()
    );
    println!("  Ctrl-C or SIGTERM drains and stops it.");
    Ok(Running {
        bot,
        emulator: Some(emulator),
    })
}
