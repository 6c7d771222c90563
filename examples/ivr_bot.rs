//! IVR bot: answers incoming calls, plays a menu, and acts on the caller's keys:
//! 1 → transfers the caller to an agent, 2 → records a message, 9 → hangs up.
//!
//! ```sh
//! cargo run --example ivr_bot           # on an embedded emulator; it prints how to ring the bot
//! ```

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use appmedia::bot::{AnswerMedia, Bot, BotError, Call, Event, MediaOptions, RecordOptions, Target};
use appmedia::model::Tone;
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let running = common::start("ivr_bot").await?;
    let ivr = Arc::new(Ivr::default());
    tokio::select! {
        served = run(&running.bot, ivr, None) => served?,
        _ = appmedia::bot::terminated() => {}
    }
    running.stop().await;
    Ok(())
}

/// What the IVR plays and where it sends callers.
#[derive(Clone, Debug)]
pub struct Ivr {
    /// The menu prompt (WAV or Ogg/Opus).
    pub menu: PathBuf,
    /// Whom key 1 transfers the caller to.
    pub agent: Target,
    /// Where key 2's messages are recorded.
    pub messages: PathBuf,
    /// How long a message may be.
    pub message_length: Duration,
}

impl Default for Ivr {
    fn default() -> Self {
        Ivr {
            menu: PathBuf::from("media-samples/ivr-menu.wav"),
            // The emulator's seed directory: its agent line.
            agent: Target::Phone("+12345678904".into()),
            messages: PathBuf::from("recordings"),
            message_length: Duration::from_secs(10),
        }
    }
}

/// How a call through the IVR ended.
#[derive(Clone, Debug, PartialEq)]
pub enum IvrOutcome {
    /// Key 1: the caller went to the agent.
    Transferred,
    /// Key 2: the caller's message, in this file.
    MessageRecorded(PathBuf),
    /// Key 9: the bot hung up.
    HungUp,
    /// The caller hung up (or the call failed) before choosing.
    CallerLeft,
}

/// Answers every incoming call and runs the menu on it; each call's outcome goes to `outcomes`.
pub async fn run(
    bot: &Bot,
    ivr: Arc<Ivr>,
    outcomes: Option<mpsc::UnboundedSender<(String, IvrOutcome)>>,
) -> Result<(), BotError> {
    while let Some(mut incoming) = bot.next_incoming().await {
        let call = match incoming
            .answer(AnswerMedia::App(MediaOptions::default()))
            .await
        {
            Ok(call) => call,
            Err(e) => {
                eprintln!("ivr_bot: cannot answer {}: {e}", incoming.id());
                continue;
            }
        };
        let (ivr, outcomes) = (ivr.clone(), outcomes.clone());
        tokio::spawn(async move {
            let id = call.id().to_owned();
            let outcome = serve(call, &ivr).await;
            println!("ivr_bot: call {id}: {outcome:?}");
            if let Some(tx) = outcomes {
                let _ = tx.send((id, outcome));
            }
        });
    }
    Ok(())
}

/// Plays the menu and acts on the first key that means something.
pub async fn serve(mut call: Call, ivr: &Ivr) -> IvrOutcome {
    let mut menu = None;
    while let Some(event) = call.next_event().await {
        match event {
            Event::MediaConnected => match call.play_file(&ivr.menu) {
                Ok(id) => menu = Some(id),
                Err(e) => eprintln!("ivr_bot: menu: {e}"),
            },
            Event::Tone { tone, .. } => {
                if let Some(id) = menu.take() {
                    let _ = call.cancel_prompt(id);
                }
                match tone {
                    Tone::Tone1 => match call.transfer(ivr.agent.clone()).await {
                        Ok(()) => return finish(call, IvrOutcome::Transferred).await,
                        Err(e) => eprintln!("ivr_bot: transfer failed: {e}"),
                    },
                    Tone::Tone2 => match record_message(&call, ivr).await {
                        Ok(path) => {
                            let _ = call.hang_up().await;
                            return IvrOutcome::MessageRecorded(path);
                        }
                        Err(e) => eprintln!("ivr_bot: message not recorded: {e}"),
                    },
                    Tone::Tone9 => {
                        let _ = call.hang_up().await;
                        return IvrOutcome::HungUp;
                    }
                    _ => {}
                }
            }
            Event::Ended(_) => return IvrOutcome::CallerLeft,
            _ => {}
        }
    }
    IvrOutcome::CallerLeft
}

/// Records what the caller says for the message length, with the bot's own recorder.
async fn record_message(call: &Call, ivr: &Ivr) -> Result<PathBuf, BotError> {
    call.start_recording(&RecordOptions {
        prefix: "message".into(),
        directory: Some(ivr.messages.clone()),
        ..RecordOptions::default()
    })?;
    tokio::time::sleep(ivr.message_length).await;
    let status = call.stop_recording().await.ok_or(BotError::CallEnded {
        call_id: call.id().to_owned(),
    })?;
    status
        .tracks
        .into_iter()
        .find(|t| t.track == appmedia::audio_io::record::Track::Mixed)
        .map(|t| t.path)
        .ok_or_else(|| BotError::Prompt("the message recording has no mixed track".into()))
}

/// Waits for the end of a call the bot has handed on.
async fn finish(mut call: Call, outcome: IvrOutcome) -> IvrOutcome {
    while let Some(event) = call.next_event().await {
        if let Event::Ended(_) = event {
            break;
        }
    }
    outcome
}
