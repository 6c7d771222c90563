//! Echo bot: answers every incoming call with app-hosted media and sends back what it hears.
//!
//! ```sh
//! cargo run --example echo_bot          # on an embedded emulator; it prints how to ring the bot
//! APPMEDIA_GRAPH_URL=… APPMEDIA_APP_ID=… cargo run --example echo_bot   # on another service
//! APPMEDIA_BACKEND=acs APPMEDIA_ACS_CONNECTION_STRING=… cargo run --example echo_bot  # on ACS
//! ```
//!
//! The same code runs on every backend (`docs/acs.md`); `tests/examples.rs` runs it on the
//! emulator's Graph API and on its ACS API.

mod common;

use appmedia::bot::{AnswerMedia, Bot, BotError, Call, CallEnd, Event, MediaOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let running = common::start("echo_bot").await?;
    tokio::select! {
        served = run(&running.bot) => served?,
        _ = appmedia::bot::terminated() => {}
    }
    running.stop().await;
    Ok(())
}

/// Answers every incoming call and echoes it until the bot stops.
pub async fn run(bot: &Bot) -> Result<(), BotError> {
    while let Some(mut incoming) = bot.next_incoming().await {
        match incoming
            .answer(AnswerMedia::App(MediaOptions::default()))
            .await
        {
            Ok(call) => {
                tokio::spawn(echo(call));
            }
            Err(e) => eprintln!("echo_bot: cannot answer {}: {e}", incoming.id()),
        }
    }
    Ok(())
}

/// Sends every 20 ms frame the bot hears straight back, until the call ends.
pub async fn echo(mut call: Call) -> Option<Box<CallEnd>> {
    let audio = call.audio_socket()?;
    tokio::spawn(async move {
        while let Some(frame) = audio.recv().await {
            // A full send queue drops its oldest frame: never blocks, never grows.
            let _ = audio.send(&frame.mixed);
        }
    });
    while let Some(event) = call.next_event().await {
        if let Event::Ended(end) = event {
            return Some(end);
        }
    }
    None
}
