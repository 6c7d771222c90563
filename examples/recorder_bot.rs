//! Recorder bot, in the compliance-recording style: answers every incoming call, tells Graph it
//! records (`updateRecordingStatus`), then writes the mix and one WAV per speaker until the call
//! ends. A call whose recording status cannot be set is hung up unrecorded, as policy-based
//! recording requires.
//!
//! ```sh
//! cargo run --example recorder_bot      # on an embedded emulator; it prints how to ring the bot
//! ```

mod common;

use std::path::PathBuf;
use std::time::Duration;

use appmedia::bot::{
    AnswerMedia, Bot, BotError, Call, CallEnd, Event, MediaOptions, RecordOptions,
};
use appmedia::model::{CallState, RecordingStatus};
use tokio::sync::mpsc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let running = common::start("recorder_bot").await?;
    tokio::select! {
        served = run(&running.bot, None, None) => served?,
        _ = appmedia::bot::terminated() => {}
    }
    running.stop().await;
    Ok(())
}

/// A recorded call's id and how it ended.
pub type Recorded = (String, Result<Box<CallEnd>, BotError>);

/// Answers and records every incoming call into `dir` (`None`: the bot's
/// `recordings_dir`, `APPMEDIA_RECORDINGS_DIR`); each call's end goes to `ended`.
pub async fn run(
    bot: &Bot,
    dir: Option<PathBuf>,
    ended: Option<mpsc::UnboundedSender<Recorded>>,
) -> Result<(), BotError> {
    while let Some(mut incoming) = bot.next_incoming().await {
        // Unmixed audio: one file per speaker, named by source id.
        let media = AnswerMedia::App(MediaOptions::default().unmixed());
        let call = match incoming.answer(media).await {
            Ok(call) => call,
            Err(e) => {
                eprintln!("recorder_bot: cannot answer {}: {e}", incoming.id());
                continue;
            }
        };
        let (dir, ended) = (dir.clone(), ended.clone());
        tokio::spawn(async move {
            let id = call.id().to_owned();
            let end = record(call, dir.as_deref()).await;
            match &end {
                Ok(end) => println!(
                    "recorder_bot: call {id} ended ({}): {:?}",
                    end.result_info
                        .as_ref()
                        .and_then(|info| info.message.value().map(String::as_str))
                        .unwrap_or("no resultInfo"),
                    end.recording
                ),
                Err(e) => eprintln!("recorder_bot: call {id}: {e}"),
            }
            if let Some(tx) = ended {
                let _ = tx.send((id, end));
            }
        });
    }
    Ok(())
}

/// Records one call until it ends.
pub async fn record(
    mut call: Call,
    dir: Option<&std::path::Path>,
) -> Result<Box<CallEnd>, BotError> {
    if !call
        .wait_for_state(CallState::Established, Duration::from_secs(15))
        .await
    {
        if call.is_ended() {
            return Err(BotError::CallEnded {
                call_id: call.id().to_owned(),
            });
        }
        return Err(BotError::Timeout {
            what: "the call's establishment",
            seconds: 15,
        });
    }
    match call
        .update_recording_status(RecordingStatus::Recording)
        .await
    {
        Ok(_) => {}
        // ACS has no recording status to set (Graph's compliance-recording rule): on that
        // backend, telling the participants is the application's own business.
        Err(BotError::Unsupported { .. }) => {}
        Err(e) => {
            // Not allowed to record without telling the participants: leave.
            let _ = call.hang_up().await;
            return Err(e);
        }
    }
    call.start_recording(&RecordOptions {
        prefix: "compliance".into(),
        directory: dir.map(Into::into),
        ..RecordOptions::default()
    })?;
    println!("recorder_bot: recording call {}", call.id());
    while let Some(event) = call.next_event().await {
        if let Event::Ended(end) = event {
            return Ok(end);
        }
    }
    Err(BotError::CallEnded {
        call_id: call.id().to_owned(),
    })
}
