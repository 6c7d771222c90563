//! Playing prompts into a call, like Graph's `playPrompt`: decoded clips
//! ([`AudioClip`]) and streamed ones
//! ([`StreamedClip`]).
//!
//! [`PromptPlayer`] runs on the audio thread and produces one 20 ms frame per tick from a queue
//! of prompts; [`PromptQueue`] is its handle on any other thread: queue a prompt (once or
//! looped), cancel one or all (Graph's `cancelMediaProcessing`), and read one completion event
//! per prompt. Commands and events travel on bounded lock-free channels, the queue is
//! preallocated, and a prompt's samples are shared (`Arc`), so the tick neither blocks nor
//! allocates.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::clip::AudioClip;
use crate::frame::CORE_FRAME_SAMPLES;
use crate::stream::{FrameRead, StreamRead, StreamReader, StreamedClip};
use appmedia_media::codec::OpusPacket;
use appmedia_media::pipeline::PlayerFrame;

/// Identifies one queued prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PromptId(pub u64);

/// Play a prompt once, or loop it until it is cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayMode {
    /// Play once, then the next prompt.
    Once,
    /// Repeat until cancelled (hold music).
    Loop,
}

/// How a prompt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptOutcome {
    /// Played to the end.
    Completed,
    /// Cancelled before the end (by id or by cancel-all).
    Cancelled,
    /// Not queued: the player's queue was full.
    Rejected,
    /// A streamed prompt whose file could not be read to the end.
    Failed,
}

/// One prompt's completion, like Graph's `playPromptOperation` finishing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptEvent {
    /// The prompt.
    pub id: PromptId,
    /// How it ended.
    pub outcome: PromptOutcome,
}

/// Why [`PromptQueue::play`] refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayError {
    /// The decoder thread of a streamed prompt could not start.
    #[error("cannot start streaming the prompt: {0}")]
    StreamStart(String),
    /// Too many commands waiting for the next tick.
    #[error("prompt command queue full")]
    CommandQueueFull,
    /// The player (the call) is gone.
    #[error("the call's prompt player has ended")]
    PlayerGone,
}

enum Command {
    Play {
        id: PromptId,
        source: Source,
        mode: PlayMode,
    },
    Cancel(PromptId),
    CancelAll,
}

/// An event, plus the prompt that finished so that its memory (and a stream's ring) is released
/// on the thread reading events rather than on the audio thread.
struct EventMsg {
    event: PromptEvent,
    _source: Option<Source>,
}

/// Where a prompt's samples come from.
enum Source {
    /// Decoded up front; `pos` is the next sample.
    Clip { clip: AudioClip, pos: usize },
    /// An Ogg/Opus clip with packets, played in whole frames; `frame` is the next one.
    Frames { clip: AudioClip, frame: usize },
    /// Streamed by a decoder thread (which does the looping).
    Stream(StreamReader),
}

struct Active {
    id: PromptId,
    source: Source,
    mode: PlayMode,
}

/// Player counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayerCounters {
    /// Frames that carried prompt audio.
    pub frames_played: u64,
    /// Events lost because nobody read them and the event queue was full.
    pub events_dropped: u64,
    /// Frames that came up short because a streamed prompt's decoder was behind.
    pub stream_underruns: u64,
    /// Frames handed out with their Opus packet (an Ogg/Opus prompt that can pass through).
    pub packet_frames: u64,
}

/// The audio-thread end: one frame per tick.
pub struct PromptPlayer {
    commands: Receiver<Command>,
    events: Sender<EventMsg>,
    queue: VecDeque<Active>,
    counters: PlayerCounters,
}

/// The control end (cloneable, any thread).
#[derive(Clone)]
pub struct PromptQueue {
    commands: Sender<Command>,
    events: Receiver<EventMsg>,
    next_id: Arc<AtomicU64>,
}

impl PromptPlayer {
    /// A player holding up to `capacity` prompts (queued and playing).
    pub fn new(capacity: usize) -> (PromptPlayer, PromptQueue) {
        let capacity = capacity.max(1);
        let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(capacity);
        // Room for an event per queued prompt plus a full queue's worth of rejections.
        let (ev_tx, ev_rx) = crossbeam_channel::bounded(capacity * 2 + 1);
        (
            PromptPlayer {
                commands: cmd_rx,
                events: ev_tx,
                queue: VecDeque::with_capacity(capacity),
                counters: PlayerCounters::default(),
            },
            PromptQueue {
                commands: cmd_tx,
                events: ev_rx,
                next_id: Arc::new(AtomicU64::new(1)),
            },
        )
    }

    /// Writes the next 20 ms (960 samples at 48 kHz) into `out`: prompt audio, then silence when
    /// the queue runs dry. Returns whether any prompt audio was written. Prompts follow each
    /// other without a gap, even inside one frame, except that an Ogg/Opus prompt whose
    /// packets can pass through starts on a frame's first sample (after a prompt that ended
    /// inside a frame, the rest of that frame is silence). The packets are left out: see
    /// [`next_player_frame`](Self::next_player_frame).
    pub fn next_frame(&mut self, out: &mut [f32; CORE_FRAME_SAMPLES]) -> bool {
        let mut packet = None;
        self.next_into(out, &mut packet)
    }

    /// Like [`next_frame`](Self::next_frame), and when the frame is exactly the decoding of one
    /// Opus packet of the prompt, `out.packet` is that packet (else `None`): what a call's
    /// player queue takes ([`PlayerSender::send_frame`](appmedia_media::pipeline::PlayerSender::send_frame)).
    pub fn next_player_frame(&mut self, out: &mut PlayerFrame) -> bool {
        self.next_into(&mut out.pcm, &mut out.packet)
    }

    fn next_into(
        &mut self,
        out: &mut [f32; CORE_FRAME_SAMPLES],
        packet: &mut Option<OpusPacket>,
    ) -> bool {
        self.apply_commands();
        *packet = None;
        let mut filled = 0;
        while filled < out.len() {
            let Some(active) = self.queue.front_mut() else {
                break;
            };
            let framed = match &active.source {
                Source::Frames { .. } => true,
                Source::Stream(reader) => reader.is_framed(),
                Source::Clip { .. } => false,
            };
            if framed && filled > 0 {
                // Frames start on a frame's first sample.
                break;
            }
            let ended = match &mut active.source {
                Source::Frames { clip, frame } => {
                    let all = clip.all_samples();
                    let at = *frame * CORE_FRAME_SAMPLES;
                    out.copy_from_slice(&all[at..at + CORE_FRAME_SAMPLES]);
                    *packet = clip
                        .packets()
                        .and_then(|p| p.get(*frame))
                        .and_then(|b| OpusPacket::new(b).ok());
                    filled = CORE_FRAME_SAMPLES;
                    *frame += 1;
                    match (*frame * CORE_FRAME_SAMPLES >= all.len(), active.mode) {
                        (true, PlayMode::Loop) => {
                            *frame = 0;
                            None
                        }
                        (true, PlayMode::Once) => Some(PromptOutcome::Completed),
                        (false, _) => None,
                    }
                }
                Source::Stream(reader) if reader.is_framed() => {
                    let mut frame = PlayerFrame::SILENT;
                    match reader.read_frame(&mut frame) {
                        FrameRead::Frame => {
                            out.copy_from_slice(&frame.pcm);
                            *packet = frame.packet;
                            filled = CORE_FRAME_SAMPLES;
                            None
                        }
                        FrameRead::Behind => {
                            self.counters.stream_underruns += 1;
                            break;
                        }
                        FrameRead::Ended { failed } => Some(if failed {
                            PromptOutcome::Failed
                        } else {
                            PromptOutcome::Completed
                        }),
                    }
                }
                Source::Clip { clip, pos } => {
                    let samples = clip.samples();
                    let n = (samples.len() - *pos).min(out.len() - filled);
                    out[filled..filled + n].copy_from_slice(&samples[*pos..*pos + n]);
                    filled += n;
                    *pos += n;
                    match (*pos == samples.len(), active.mode) {
                        (true, PlayMode::Loop) => {
                            *pos = 0;
                            None
                        }
                        (true, PlayMode::Once) => Some(PromptOutcome::Completed),
                        (false, _) => None,
                    }
                }
                Source::Stream(reader) => match reader.read(&mut out[filled..]) {
                    StreamRead::More(n) => {
                        filled += n;
                        if filled < out.len() {
                            // The decoder is behind: the rest of this frame is silence and the
                            // prompt resumes next tick (the queue does not skip ahead).
                            self.counters.stream_underruns += 1;
                            break;
                        }
                        None
                    }
                    StreamRead::Ended { n, failed } => {
                        filled += n;
                        Some(if failed {
                            PromptOutcome::Failed
                        } else {
                            PromptOutcome::Completed
                        })
                    }
                },
            };
            if let Some(outcome) = ended
                && let Some(done) = self.queue.pop_front()
            {
                self.emit(done, outcome);
            }
        }
        out[filled..].fill(0.0);
        if filled > 0 {
            self.counters.frames_played += 1;
        }
        if packet.is_some() {
            self.counters.packet_frames += 1;
        }
        filled > 0
    }

    /// Whether a prompt is playing or queued.
    pub fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Counters.
    pub fn counters(&self) -> PlayerCounters {
        self.counters
    }

    fn apply_commands(&mut self) {
        // Bounded by the channel's capacity, so the tick's work is bounded too.
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Play { id, source, mode } => {
                    if self.queue.len() < self.queue.capacity() {
                        self.queue.push_back(Active { id, source, mode });
                    } else {
                        self.send_event(
                            PromptEvent {
                                id,
                                outcome: PromptOutcome::Rejected,
                            },
                            Some(source),
                        );
                    }
                }
                Command::Cancel(id) => {
                    if let Some(i) = self.queue.iter().position(|a| a.id == id)
                        && let Some(a) = self.queue.remove(i)
                    {
                        self.emit(a, PromptOutcome::Cancelled);
                    }
                }
                Command::CancelAll => {
                    while let Some(a) = self.queue.pop_front() {
                        self.emit(a, PromptOutcome::Cancelled);
                    }
                }
            }
        }
    }

    fn emit(&mut self, done: Active, outcome: PromptOutcome) {
        self.send_event(
            PromptEvent {
                id: done.id,
                outcome,
            },
            Some(done.source),
        );
    }

    fn send_event(&mut self, event: PromptEvent, source: Option<Source>) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.events.try_send(EventMsg {
                event,
                _source: source,
            })
        {
            self.counters.events_dropped += 1;
        }
    }
}

impl PromptQueue {
    /// Queues a prompt behind the ones already queued; its event comes when it ends.
    pub fn play(&self, clip: &AudioClip, mode: PlayMode) -> Result<PromptId, PlayError> {
        let source = if clip.packets().is_some() {
            Source::Frames {
                clip: clip.clone(),
                frame: 0,
            }
        } else {
            Source::Clip {
                clip: clip.clone(),
                pos: 0,
            }
        };
        self.queue_source(source, mode)
    }

    /// Queues a prompt streamed from disk: starts its decoder thread (and waits for it to
    /// buffer a few frames) on the calling thread, never on the audio thread.
    pub fn play_streamed(
        &self,
        clip: &StreamedClip,
        mode: PlayMode,
    ) -> Result<PromptId, PlayError> {
        let reader = clip
            .start(mode == PlayMode::Loop)
            .map_err(|e| PlayError::StreamStart(e.to_string()))?;
        self.queue_source(Source::Stream(reader), mode)
    }

    fn queue_source(&self, source: Source, mode: PlayMode) -> Result<PromptId, PlayError> {
        let id = PromptId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let cmd = Command::Play { id, source, mode };
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(id),
            Err(TrySendError::Full(_)) => Err(PlayError::CommandQueueFull),
            Err(TrySendError::Disconnected(_)) => Err(PlayError::PlayerGone),
        }
    }

    /// Cancels one prompt (playing or queued); it ends with [`PromptOutcome::Cancelled`].
    pub fn cancel(&self, id: PromptId) -> Result<(), PlayError> {
        self.send(Command::Cancel(id))
    }

    /// Cancels every prompt, like Graph's `cancelMediaProcessing`.
    pub fn cancel_all(&self) -> Result<(), PlayError> {
        self.send(Command::CancelAll)
    }

    /// The next completion event, if one is waiting.
    pub fn try_event(&self) -> Option<PromptEvent> {
        self.events.try_recv().ok().map(|m| m.event)
    }

    /// Waits up to `timeout` for the next completion event.
    pub fn recv_event_timeout(&self, timeout: Duration) -> Option<PromptEvent> {
        self.events.recv_timeout(timeout).ok().map(|m| m.event)
    }

    fn send(&self, cmd: Command) -> Result<(), PlayError> {
        match self.commands.try_send(cmd) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(PlayError::CommandQueueFull),
            Err(TrySendError::Disconnected(_)) => Err(PlayError::PlayerGone),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(len: usize) -> AudioClip {
        AudioClip::from_samples((0..len).map(|i| i as f32 / len as f32).collect()).unwrap()
    }

    #[test]
    fn prompts_play_back_to_back_and_report_completion() {
        let (mut player, queue) = PromptPlayer::new(4);
        let a = queue.play(&ramp(1500), PlayMode::Once).unwrap();
        let b = queue.play(&ramp(600), PlayMode::Once).unwrap();
        let mut frame = [0.0; CORE_FRAME_SAMPLES];
        assert!(player.next_frame(&mut frame));
        assert_eq!(frame[959], 959.0 / 1500.0);
        assert_eq!(queue.try_event(), None);
        assert!(player.next_frame(&mut frame));
        // Clip a ends at sample 540 of this frame; clip b starts right after, no gap.
        assert_eq!(frame[539], 1499.0 / 1500.0);
        assert_eq!(frame[540], 0.0);
        assert_eq!(frame[541], 1.0 / 600.0);
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id: a,
                outcome: PromptOutcome::Completed
            })
        );
        assert!(player.next_frame(&mut frame)); // b's last 180 samples
        assert_eq!(frame[179], 599.0 / 600.0);
        assert!(frame[180..].iter().all(|s| *s == 0.0));
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id: b,
                outcome: PromptOutcome::Completed
            })
        );
        assert!(!player.next_frame(&mut frame));
        assert!(frame.iter().all(|s| *s == 0.0));
    }

    #[test]
    fn a_looped_prompt_repeats_until_cancelled() {
        let (mut player, queue) = PromptPlayer::new(4);
        let id = queue.play(&ramp(100), PlayMode::Loop).unwrap();
        let mut frame = [0.0; CORE_FRAME_SAMPLES];
        for k in 0..10 {
            assert!(player.next_frame(&mut frame));
            for (i, s) in frame.iter().enumerate() {
                assert_eq!(*s, ((k * CORE_FRAME_SAMPLES + i) % 100) as f32 / 100.0);
            }
        }
        assert_eq!(queue.try_event(), None);
        queue.cancel(id).unwrap();
        assert!(!player.next_frame(&mut frame));
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id,
                outcome: PromptOutcome::Cancelled
            })
        );
    }

    #[test]
    fn cancel_all_ends_every_prompt_and_a_full_queue_rejects() {
        let (mut player, queue) = PromptPlayer::new(2);
        let ids: Vec<_> = (0..2)
            .map(|_| queue.play(&ramp(5000), PlayMode::Once).unwrap())
            .collect();
        // The command channel holds 2 too: the third waits for the next tick.
        assert_eq!(
            queue.play(&ramp(10), PlayMode::Once),
            Err(PlayError::CommandQueueFull)
        );
        let mut frame = [0.0; CORE_FRAME_SAMPLES];
        player.next_frame(&mut frame);
        let third = queue.play(&ramp(10), PlayMode::Once).unwrap();
        player.next_frame(&mut frame);
        assert_eq!(
            queue.try_event(),
            Some(PromptEvent {
                id: third,
                outcome: PromptOutcome::Rejected
            })
        );
        queue.cancel_all().unwrap();
        player.next_frame(&mut frame);
        for id in ids {
            assert_eq!(
                queue.try_event(),
                Some(PromptEvent {
                    id,
                    outcome: PromptOutcome::Cancelled
                })
            );
        }
        assert!(!player.is_playing());
        drop(player);
        assert_eq!(
            queue.play(&ramp(10), PlayMode::Once),
            Err(PlayError::PlayerGone)
        );
    }
}
