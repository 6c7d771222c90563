//! One call of `demo`, `record` or `play` on the bot SDK: the SDK's bot (and the emulator when
//! it runs in-process) started from the flags, the call placed and its media awaited, its
//! events noted until `--seconds`, Ctrl-C, its end or the command's own work is done, the
//! hang-up, and what the SDK says at the end.

use std::time::{Duration, Instant};

use appmedia_audio_io::record::RecordingStatus;
use appmedia_bot::{BotError, Call, Event, MediaOptions, MediaSnapshot};
use appmedia_emulator::Emulator;
use appmedia_transport::SessionStats;

use crate::bot::{CallArgs, ServiceArgs, bot_config, callback_bind, err, request, start_emulator};
use crate::summary::{CallLog, note_event};

/// How long a placed call's media may take to connect (ICE and DTLS) before the bot gives up.
const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the call's end (its recording finished) may take after the hang-up returned; the
/// SDK's hang-up already waits up to 10 s for `terminated`.
const END_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `--seconds` ran out.
    Deadline,
    /// Ctrl-C.
    Interrupted,
    /// The other side (or the service) ended the call.
    Terminated,
    /// The command's own work is done (the prompts played).
    Done,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Deadline => "seconds",
            StopReason::Interrupted => "ctrl-c",
            StopReason::Terminated => "terminated",
            StopReason::Done => "done",
        }
    }
}
/// The SDK's bot, and the emulator when it runs in-process.
pub struct Bot {
    sdk: appmedia_bot::Bot,
    emulator: Option<Emulator>,
    /// The calling service, for summaries: the emulator's root, or the configured Graph URL.
    service: String,
    start: Instant,
}

/// How a call went, once it is over.
pub struct CallEnd {
    pub call_id: String,
    pub stopped_by: StopReason,
    /// The media's last counters: packets, per-stream jitter and loss, heard ticks, prompts.
    pub media: MediaSnapshot,
    /// The transport's last counters (network jitter, RTCP round trip).
    pub transport: Option<SessionStats>,
    /// The recording's final state, when the call was recorded.
    pub recording: Option<RecordingStatus>,
    /// The hang-up failed (the call may still exist on the service).
    pub hang_up_error: Option<String>,
    /// When sample 0 of the recording was heard: the bot's media epoch + the call's first tick.
    pub heard_start: Option<Instant>,
    /// The in-process emulator's media timeline of the call, read before hanging up (when
    /// each party first spoke, for mouth-to-ear latency).
    pub party_media: Option<appmedia_emulator::CallMedia>,
}

/// When a connected call stops by itself.
pub struct CallPlan {
    /// Hang up after this long.
    pub deadline: Option<Duration>,
    /// Hang up on Ctrl-C.
    pub ctrl_c: bool,
}

/// What the bot leaves behind once stopped.
pub struct Finished {
    /// The calling service: the emulator's root, or the configured Graph URL.
    pub service: String,
    /// Notifications refused (bad or missing token).
    pub notifications_refused: u64,
}

impl Bot {
    /// Starts the embedded emulator (unless `--graph-url`), then the SDK's bot.
    pub async fn start(service: &ServiceArgs) -> Result<Bot, String> {
        let start = Instant::now();
        let bind = callback_bind(&service.callback_host);
        let listen = tokio::net::lookup_host(&bind)
            .await
            .map_err(|e| format!("--callback-host {bind}: {e}"))?
            .next()
            .ok_or_else(|| format!("--callback-host {bind}: no address"))?;
        let emulator = match &service.graph_url {
            None => Some(start_emulator(service).await?),
            Some(_) => None,
        };
        let config = bot_config(service, emulator.as_ref(), listen)?;
        let label = match (&emulator, &service.graph_url) {
            (Some(emulator), _) => emulator.base_url().to_owned(),
            (None, graph) => graph.clone().unwrap_or_default(),
        };
        let sdk = match appmedia_bot::Bot::start(config).await {
            Ok(sdk) => sdk,
            Err(e) => {
                if let Some(emulator) = emulator {
                    emulator.shutdown().await;
                }
                return Err(match e {
                    BotError::Listen { .. } => format!("--callback-host {bind}: {e}"),
                    e => e.to_string(),
                });
            }
        };
        Ok(Bot {
            sdk,
            emulator,
            service: label,
            start,
        })
    }

    /// Milliseconds since the bot started.
    pub fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Creates an app-hosted call to `target` with `media` and waits until its media is
    /// connected; a call whose media does not connect is hung up.
    pub async fn place_call(
        &self,
        target: &CallArgs,
        media: MediaOptions,
        log: &mut CallLog,
    ) -> Result<Call, String> {
        let request = request(target, self.sdk.callback_uri(), &self.sdk.config().tenant)?;
        let mut call = self.sdk.call(request, media).await.map_err(err)?;
        log.transitions
            .push(serde_json::json!({"state": "created", "at_ms": self.ms()}));
        let connected = tokio::time::timeout(MEDIA_CONNECT_TIMEOUT, async {
            loop {
                match call.next_event().await {
                    Some(Event::MediaConnected) => return Ok(()),
                    Some(Event::MediaEnded(reason)) => {
                        return Err(format!("media session ended: {reason}"));
                    }
                    Some(Event::Ended(_)) | None => {
                        return Err("the call ended before its media connected".to_owned());
                    }
                    Some(event) => note_event(&event, self.ms(), log),
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "media did not connect within {} s",
                MEDIA_CONNECT_TIMEOUT.as_secs()
            ))
        });
        match connected {
            Ok(()) => {
                log.transitions
                    .push(serde_json::json!({"state": "media connected", "at_ms": self.ms()}));
                Ok(call)
            }
            Err(e) => {
                // Do not leave a call behind on the service.
                let _ = call.hang_up().await;
                Err(e)
            }
        }
    }

    /// Runs a connected call: notes its events until the plan's deadline, Ctrl-C, the call's
    /// end, or `work` (shown every event) says the command is done — `Some(tail)`: hang up
    /// `tail` later; then hangs up and waits for the call's end (recording finished).
    pub async fn run_call(
        &self,
        mut call: Call,
        plan: CallPlan,
        mut work: impl FnMut(&Event) -> Option<Duration>,
        log: &mut CallLog,
    ) -> Result<CallEnd, String> {
        let mut ended = None;
        let stopped_by = {
            let until = async {
                match plan.deadline {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let interrupt = async {
                if !plan.ctrl_c || tokio::signal::ctrl_c().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::pin!(until, interrupt);
            let mut done_at: Option<tokio::time::Instant> = None;
            loop {
                let done = async {
                    match done_at {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = &mut until => break StopReason::Deadline,
                    () = &mut interrupt => break StopReason::Interrupted,
                    () = done => break StopReason::Done,
                    event = call.next_event() => match event {
                        Some(Event::Ended(end)) => {
                            ended = Some(end);
                            break StopReason::Terminated;
                        }
                        Some(event) => {
                            note_event(&event, self.ms(), log);
                            if let Some(tail) = work(&event) {
                                done_at.get_or_insert(tokio::time::Instant::now() + tail);
                            }
                            if log.terminated {
                                break StopReason::Terminated;
                            }
                        }
                        None => break StopReason::Terminated,
                    },
                }
            }
        };
        let call_id = call.id().to_owned();
        let party_media = self.emulator.as_ref().and_then(|e| {
            e.call_media(&call_id)
                .or_else(|| e.acs_call_media(&call_id))
        });
        let mut hang_up_error = None;
        if ended.is_none() {
            if stopped_by != StopReason::Terminated
                && let Err(e) = call.hang_up().await
            {
                hang_up_error = Some(e.to_string());
            }
            ended = loop {
                match call.next_event_within(END_TIMEOUT).await {
                    Some(Event::Ended(end)) => break Some(end),
                    Some(event) => note_event(&event, self.ms(), log),
                    None => break None,
                }
            };
        }
        let (media, transport, recording) = match ended {
            Some(end) => (end.media, end.transport, end.recording),
            None => {
                // The service never ended the call (the hang-up failed, or it stays silent):
                // the counters of a second ago, and the recording finished here.
                hang_up_error.get_or_insert_with(|| {
                    format!(
                        "the call did not end within {} s of the hang-up",
                        END_TIMEOUT.as_secs()
                    )
                });
                (call.media_stats(), None, call.stop_recording().await)
            }
        };
        let media = media.unwrap_or_default();
        Ok(CallEnd {
            call_id,
            stopped_by,
            heard_start: media.first_tick.map(|t| self.sdk.media_epoch() + t),
            media,
            transport,
            recording,
            hang_up_error,
            party_media,
        })
    }

    /// Stops the SDK's bot (any call left is hung up), then the in-process emulator, after
    /// giving its media a last pump and its recorder the time to finish the files.
    pub async fn shutdown(self) -> Finished {
        let stats = self.sdk.shutdown(None).await;
        if let Some(emulator) = self.emulator {
            tokio::time::sleep(Duration::from_millis(250)).await;
            emulator.shutdown().await;
        }
        Finished {
            service: self.service,
            notifications_refused: stats.notifications_refused,
        }
    }
}
