//! The simulated remote parties of an emulated call and what they do with their audio.

use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PlayMode, PromptOutcome, PromptPlayer, PromptQueue};
use appmedia_media::frame::{FRAME_DURATION, Frame48, SILENT_FRAME_48};
use appmedia_media::pipeline::{BotSender, CallPipeline};

/// Longest echo delay a party may have (the delay line is preallocated frame by frame).
pub const MAX_ECHO_DELAY: Duration = Duration::from_secs(2);

/// What kind of participant a party plays; Graph's identity decides it in the roster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyKind {
    /// A Teams user in a peer-to-peer or group call.
    User,
    /// A PSTN phone: band-limited to a telephone channel (8 kHz).
    Phone,
    /// A participant of a scheduled meeting.
    MeetingParticipant,
}

/// What a party does with its microphone.
#[derive(Debug, Clone)]
pub enum PartyAudio {
    /// Says nothing.
    Silence,
    /// Plays a clip (a media-samples WAV opened with [`AudioClip::open`]), once or looped,
    /// starting `start_after` after the party joins (or after the behaviour is set).
    Speak {
        /// The audio.
        clip: AudioClip,
        /// Starts over at its end (`false`: says it once).
        looped: bool,
        /// Silence before it starts.
        start_after: Duration,
    },
    /// Repeats what the bot says, `delay` later (rounded up to whole 20 ms frames, at least
    /// one). Only the bot is echoed, not the other parties: two echoing parties would
    /// otherwise feed each other forever.
    Echo {
        /// How long after the bot it repeats it.
        delay: Duration,
    },
    /// The microphone is a far end's RTP stream (a person on the emulator's softphone page),
    /// decoded by the media core, and what the party hears (everyone but itself) goes back
    /// to it as RTP. Only `add_network_party` adds such a party, as it hands back the
    /// [`NetworkLink`](crate::NetworkLink) those packets travel on.
    Network,
}

/// A party to add to a conference.
#[derive(Debug, Clone)]
pub struct PartySpec {
    /// The Graph participant id (the roster's `participant.id`).
    pub participant_id: String,
    /// The display name shown in the roster.
    pub display_name: String,
    /// A Teams user, a phone or a meeting participant.
    pub kind: PartyKind,
    /// The media source id: the roster's `mediaStreams[].sourceId` (as a decimal string) and
    /// the SSRC of this party's unmixed RTP stream. Non-zero, unique in the call.
    pub source_id: u32,
    /// What it says.
    pub audio: PartyAudio,
    /// Starts muted.
    pub muted: bool,
}

impl PartySpec {
    /// A user with the given behaviour, unmuted.
    pub fn new(
        participant_id: impl Into<String>,
        display_name: impl Into<String>,
        kind: PartyKind,
        source_id: u32,
        audio: PartyAudio,
    ) -> Self {
        PartySpec {
            participant_id: participant_id.into(),
            display_name: display_name.into(),
            kind,
            source_id,
            audio,
            muted: false,
        }
    }
}

/// Graph's `mediaStream.sourceId` for a source id (a decimal string, as the roster shows it).
pub fn graph_source_id(source_id: u32) -> String {
    source_id.to_string()
}

/// Reads Graph's `mediaStream.sourceId` back into the source id (the SSRC); `None` when the
/// string is not a decimal u32.
pub fn parse_graph_source_id(source_id: &str) -> Option<u32> {
    source_id.parse().ok()
}

/// A party's audio behaviour, built (and allocated) off the tick.
pub(crate) enum AudioSource {
    Silence,
    Speak {
        player: PromptPlayer,
        queue: PromptQueue,
        /// Ticks left before the clip starts.
        wait_ticks: u64,
    },
    Echo {
        /// Frames of the bot's audio in flight; `line[pos]` is the oldest.
        line: Box<[Frame48]>,
        pos: usize,
    },
    /// A far end on the network: its pipeline decodes what it says and encodes what it hears.
    Network {
        pipeline: Box<CallPipeline>,
        sender: BotSender,
    },
}

/// Why a behaviour could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AudioSourceError {
    #[error("echo delay {delay:?} is longer than the {max:?} allowed")]
    /// The echo delay is longer than the echo buffer holds.
    EchoTooLong {
        /// The delay asked for.
        delay: Duration,
        /// The longest allowed.
        max: Duration,
    },
    #[error("the clip could not be queued: {0}")]
    /// The clip's player refused it; why.
    Queue(String),
    #[error("a network party's audio comes from its link: add it with add_network_party")]
    /// `PartyAudio::Network` given where only `add_network_party` can build it.
    NetworkNeedsLink,
}

fn frames_in(d: Duration) -> u64 {
    let f = FRAME_DURATION.as_nanos();
    d.as_nanos().div_ceil(f) as u64
}

impl AudioSource {
    pub(crate) fn build(audio: &PartyAudio) -> Result<AudioSource, AudioSourceError> {
        Ok(match audio {
            PartyAudio::Silence => AudioSource::Silence,
            PartyAudio::Speak {
                clip,
                looped,
                start_after,
            } => {
                let (player, queue) = PromptPlayer::new(1);
                let mode = if *looped {
                    PlayMode::Loop
                } else {
                    PlayMode::Once
                };
                queue
                    .play(clip, mode)
                    .map_err(|e| AudioSourceError::Queue(e.to_string()))?;
                AudioSource::Speak {
                    player,
                    queue,
                    wait_ticks: frames_in(*start_after),
                }
            }
            PartyAudio::Echo { delay } => {
                if *delay > MAX_ECHO_DELAY {
                    return Err(AudioSourceError::EchoTooLong {
                        delay: *delay,
                        max: MAX_ECHO_DELAY,
                    });
                }
                let frames = frames_in(*delay).max(1) as usize;
                AudioSource::Echo {
                    line: vec![SILENT_FRAME_48; frames].into_boxed_slice(),
                    pos: 0,
                }
            }
            PartyAudio::Network => return Err(AudioSourceError::NetworkNeedsLink),
        })
    }

    /// Writes this tick's microphone frame. Returns (audio written, clip finished this tick).
    pub(crate) fn next_frame(&mut self, out: &mut Frame48) -> (bool, bool) {
        match self {
            AudioSource::Silence => {
                out.fill(0.0);
                (false, false)
            }
            AudioSource::Speak {
                player,
                queue,
                wait_ticks,
            } => {
                if *wait_ticks > 0 {
                    *wait_ticks -= 1;
                    out.fill(0.0);
                    return (false, false);
                }
                let played = player.next_frame(out);
                let mut finished = false;
                while let Some(ev) = queue.try_event() {
                    finished |= ev.outcome == PromptOutcome::Completed;
                }
                (played, finished)
            }
            AudioSource::Echo { line, pos } => {
                out.copy_from_slice(&line[*pos]);
                (out.iter().any(|&s| s != 0.0), false)
            }
            // What the far end said, decoded on the last tick (see `hear`).
            AudioSource::Network { pipeline, .. } => {
                out.copy_from_slice(pipeline.bot_frame_48k());
                (out.iter().any(|&s| s != 0.0), false)
            }
        }
    }

    /// Hands what the party hears this tick to a network party: encoded and sent at once,
    /// while the far end's packets are decoded for the next tick's microphone frame.
    pub(crate) fn hear(&mut self, hears: &Frame48, now: Duration) {
        if let AudioSource::Network { pipeline, sender } = self {
            // The queue holds two frames and is drained by the tick just below: never full.
            let _ = sender.send_48k(hears);
            pipeline.tick(now);
        }
    }

    /// The network stream's counters: (packets received from the far end, packets sent to it).
    pub(crate) fn network_counters(&self) -> Option<(u64, u64)> {
        match self {
            AudioSource::Network { pipeline, .. } => {
                let stats = pipeline.stats();
                Some((stats.inbound_queue.pushed, stats.packets_sent))
            }
            _ => None,
        }
    }

    /// Hands the bot's frame of this tick to an echo (it comes back `delay` later).
    pub(crate) fn hear_bot(&mut self, bot: &Frame48) {
        if let AudioSource::Echo { line, pos } = self {
            line[*pos].copy_from_slice(bot);
            *pos = (*pos + 1) % line.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ids_round_trip_as_graph_strings() {
        assert_eq!(graph_source_id(10), "10");
        assert_eq!(parse_graph_source_id("4294967295"), Some(u32::MAX));
        assert_eq!(parse_graph_source_id("-1"), None);
        assert_eq!(parse_graph_source_id("abc"), None);
    }

    #[test]
    fn echo_returns_the_bot_after_its_delay() {
        let mut echo = AudioSource::build(&PartyAudio::Echo {
            delay: Duration::from_millis(50), // 3 frames
        })
        .unwrap();
        let mut out = SILENT_FRAME_48;
        let bot = [0.25f32; 960];
        for k in 0..6 {
            let (audio, _) = echo.next_frame(&mut out);
            assert_eq!(audio, k == 3, "tick {k}");
            echo.hear_bot(if k == 0 { &bot } else { &SILENT_FRAME_48 });
            if k == 3 {
                assert_eq!(out, bot);
            }
        }
        assert!(matches!(
            AudioSource::build(&PartyAudio::Echo {
                delay: Duration::from_secs(3)
            }),
            Err(AudioSourceError::EchoTooLong { .. })
        ));
    }

    #[test]
    fn speaking_waits_then_plays_once_and_reports_the_end() {
        let clip = AudioClip::from_samples(vec![0.5; 960 * 2]).unwrap();
        let mut s = AudioSource::build(&PartyAudio::Speak {
            clip,
            looped: false,
            start_after: Duration::from_millis(40),
        })
        .unwrap();
        let mut out = SILENT_FRAME_48;
        let got: Vec<_> = (0..5).map(|_| s.next_frame(&mut out)).collect();
        assert_eq!(
            got,
            vec![
                (false, false),
                (false, false),
                (true, false),
                (true, true),
                (false, false)
            ]
        );
    }
}
