//! What the call hears of the bot, and what the emulator can listen to.
//!
//! Graph acts on the bot's side of a call in ways the bot's own media does not show: a server
//! mute drops the bot's audio (`call: mute`), a transfer takes the bot out while the parties go
//! on talking (`call: transfer`), `sendDtmfTones` plays keypad tones into the call in the bot's
//! name, and `recordResponse` records what the caller says. `BotVoice` is the first three
//! (applied on the tick, allocation-free), `Taps` the recordings the service makes of what
//! the bot and each party hear: both are parts of [`ConferenceMedia`],
//! driven through [`ConferenceControl`].

use std::time::Duration;

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::playback::{PlayMode, PromptId, PromptPlayer};
use appmedia_audio_io::record::{FrameDropped, RecordingSink, Track};

use crate::conference::Command;
use crate::{ConferenceControl, ConferenceError, ConferenceMedia};
use appmedia_media::dtmf::Tone;
use appmedia_media::frame::{Frame48, SILENT_FRAME_48};

/// Clips the bot's overlay holds at once (queued and playing): `sendDtmfTones` requests
/// beyond it are refused by the queue.
pub const OVERLAY_CAPACITY: usize = 16;

/// The bot's contribution to the call on one tick, beyond what it sends itself.
pub(crate) struct BotVoice {
    /// Clips played into the call as the bot (in-band DTMF); silence when idle.
    overlay: Box<PromptPlayer>,
    /// The overlay's frame of this tick (silence when it played nothing).
    overlay_frame: Box<Frame48>,
    /// Server-muted: the bot's audio reaches nobody.
    pub(crate) muted: bool,
    /// The bot left (transfer): its audio reaches nobody and nothing is sent to it.
    pub(crate) detached: bool,
}

impl BotVoice {
    pub(crate) fn new(overlay: PromptPlayer) -> Self {
        BotVoice {
            overlay: Box::new(overlay),
            overlay_frame: Box::new(SILENT_FRAME_48),
            muted: false,
            detached: false,
        }
    }

    /// Whether nothing of the bot may reach the parties.
    pub(crate) fn silenced(&self) -> bool {
        self.muted || self.detached
    }

    /// Plays the overlay's next frame (no allocation: the player's buffers are its own).
    pub(crate) fn next_overlay_frame(&mut self) {
        if !self.overlay.next_frame(&mut self.overlay_frame) {
            self.overlay_frame.fill(0.0);
        }
    }

    /// Writes into `out` what the parties hear of the bot this tick: `bot` plus the overlay,
    /// or silence when the bot is muted or gone (a detached bot's overlay stops too: nobody
    /// speaks in its name any more).
    pub(crate) fn heard_from_bot(&self, bot: &Frame48, out: &mut Frame48) {
        if self.silenced() {
            out.fill(0.0);
            return;
        }
        for ((o, b), v) in out
            .iter_mut()
            .zip(bot.iter())
            .zip(self.overlay_frame.iter())
        {
            *o = (b + v).clamp(-1.0, 1.0);
        }
    }
}

/// The bot's side, commanded from any thread (applied at the next tick).
impl ConferenceControl {
    /// Server-mutes (or unmutes) the bot from the next tick, as Graph's `call: mute` does:
    /// whatever the bot sends reaches no party (the echo parties and the recordings get
    /// silence too), and what it plays through [`play_over_bot`](Self::play_over_bot) as well.
    pub fn set_bot_muted(&self, muted: bool) -> Result<(), ConferenceError> {
        self.send(Command::BotMuted(muted))
    }
    /// The bot leaves the conference from the next tick (a transfer completed): its audio is
    /// silence for everyone, nothing more is sent to it, and the parties go on hearing each
    /// other. There is no way back.
    pub fn detach_bot(&self) -> Result<(), ConferenceError> {
        self.send(Command::DetachBot)
    }
    /// Records what the bot hears (every unmuted party, mixed) into `sink` as
    /// `Track::Mixed` from the next tick, the file starting there; `None` stops. A sink being
    /// replaced is dropped on the disposer.
    pub fn record_bot_ear(&self, sink: Option<RecordingSink>) -> Result<(), ConferenceError> {
        self.send(Command::BotEar(sink.map(Box::new)))
    }
    /// Plays `clip` into the call in the bot's name (Graph's `sendDtmfTones` as in-band
    /// audio): from the next tick it is added to whatever the bot says, behind clips already
    /// queued (at most [`OVERLAY_CAPACITY`]). Returns
    /// when the clip was queued; it lasts `clip.duration()`.
    pub fn play_over_bot(&self, clip: &AudioClip) -> Result<PromptId, ConferenceError> {
        // Nobody waits on these completions: taking them here (off the tick) keeps the
        // event queue from filling, so the player never drops a finished clip on the tick.
        while self.overlay.try_event().is_some() {}
        Ok(self.overlay.play(clip, PlayMode::Once)?)
    }
}

/// The bot's side, now (sans-IO use and tests).
impl ConferenceMedia {
    /// Records what each party hears (the bot and the other parties, never itself) as
    /// `Track::Speaker(party source id)` of `sink`, one frame per tick from the next tick on:
    /// the service's way to show what a caller heard (before and after a transfer, say).
    /// The recording must take 48 kHz frames.
    pub fn attach_heard_recording(&mut self, sink: RecordingSink) {
        self.taps.attach_heard(sink);
    }

    /// Server-mutes or unmutes the bot now (see [`ConferenceControl::set_bot_muted`]).
    pub fn set_bot_muted(&mut self, muted: bool) {
        self.voice.muted = muted;
    }

    /// The bot leaves now (see [`ConferenceControl::detach_bot`]).
    pub fn detach_bot(&mut self) {
        self.voice.detached = true;
    }
}

/// Recordings of what the listeners of a call hear, fed on the tick.
#[derive(Default)]
pub(crate) struct Taps {
    /// What each party hears, as `Track::Speaker(party source id)`.
    heard: Option<RecordingSink>,
    /// What the bot hears (the parties' mix) as `Track::Mixed`, ticks counted from the tick
    /// it was attached on (`recordResponse` files start at their own beginning).
    bot_ear: Option<(Box<RecordingSink>, u64)>,
    /// Frames those recordings refused (queue full, stopped).
    pub(crate) dropped: u64,
}

impl Taps {
    pub(crate) fn attach_heard(&mut self, sink: RecordingSink) {
        self.heard = Some(sink);
    }

    /// Replaces the bot-ear recording, starting at `tick`; returns the previous one for the
    /// disposer (dropping a sink may free its queue).
    pub(crate) fn set_bot_ear(
        &mut self,
        sink: Option<Box<RecordingSink>>,
        tick: u64,
    ) -> Option<Box<RecordingSink>> {
        let old = self.bot_ear.take().map(|(s, _)| s);
        self.bot_ear = sink.map(|s| (s, tick));
        old
    }

    pub(crate) fn push_heard(&mut self, tick: u64, source_id: u32, frame: &Frame48) {
        if let Some(sink) = &self.heard {
            Self::count(
                &mut self.dropped,
                sink.push(tick, Track::Speaker(source_id), frame),
            );
        }
    }

    pub(crate) fn push_bot_ear(&mut self, tick: u64, frame: &Frame48) {
        if let Some((sink, start)) = &self.bot_ear {
            let r = sink.push(tick.saturating_sub(*start), Track::Mixed, frame);
            Self::count(&mut self.dropped, r);
        }
    }

    fn count(dropped: &mut u64, result: Result<(), FrameDropped>) {
        match result {
            Ok(()) | Err(FrameDropped::TrackDisabled) => {}
            Err(_) => *dropped += 1,
        }
    }
}

/// How long a key sounds in [`in_band_dtmf`]: Graph does not say; 100 ms is the common
/// telephone default (ITU-T Q.24 asks for at least 40 ms).
pub const IN_BAND_TONE: Duration = Duration::from_millis(100);

/// The (low, high) frequencies of a keypad key (ITU-T Q.23); `None` for flash, which is a
/// line signal, not a sound.
pub fn dtmf_frequencies(tone: Tone) -> Option<(f32, f32)> {
    const LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    let (row, col) = match tone {
        Tone::Tone1 => (0, 0),
        Tone::Tone2 => (0, 1),
        Tone::Tone3 => (0, 2),
        Tone::A => (0, 3),
        Tone::Tone4 => (1, 0),
        Tone::Tone5 => (1, 1),
        Tone::Tone6 => (1, 2),
        Tone::B => (1, 3),
        Tone::Tone7 => (2, 0),
        Tone::Tone8 => (2, 1),
        Tone::Tone9 => (2, 2),
        Tone::C => (2, 3),
        Tone::Star => (3, 0),
        Tone::Tone0 => (3, 1),
        Tone::Pound => (3, 2),
        Tone::D => (3, 3),
        Tone::Flash => return None,
    };
    Some((LOW[row], HIGH[col]))
}

/// The keys as in-band audio at 48 kHz: each key [`IN_BAND_TONE`] long (both frequencies at
/// -9 dBFS each), `gap` of silence after each but the last. `None` for no keys.
pub fn in_band_dtmf(tones: &[Tone], gap: Duration) -> Option<AudioClip> {
    const RATE: f64 = 48_000.0;
    let tone_samples = (IN_BAND_TONE.as_secs_f64() * RATE) as usize;
    let gap_samples = (gap.as_secs_f64() * RATE) as usize;
    let amplitude = 0.35_f64;
    let mut samples = Vec::with_capacity(tones.len() * (tone_samples + gap_samples));
    for (i, tone) in tones.iter().enumerate() {
        match dtmf_frequencies(*tone) {
            Some((low, high)) => samples.extend((0..tone_samples).map(|n| {
                let t = n as f64 / RATE;
                let w = std::f64::consts::TAU;
                (amplitude * ((w * f64::from(low) * t).sin() + (w * f64::from(high) * t).sin()))
                    as f32
            })),
            None => samples.extend(std::iter::repeat_n(0.0, tone_samples)),
        }
        if i + 1 < tones.len() {
            samples.extend(std::iter::repeat_n(0.0, gap_samples));
        }
    }
    AudioClip::from_samples(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sound_at_their_two_frequencies_for_their_length() {
        assert_eq!(dtmf_frequencies(Tone::Tone1), Some((697.0, 1209.0)));
        assert_eq!(dtmf_frequencies(Tone::Pound), Some((941.0, 1477.0)));
        assert_eq!(dtmf_frequencies(Tone::D), Some((941.0, 1633.0)));
        assert_eq!(dtmf_frequencies(Tone::Flash), None);
        let clip = in_band_dtmf(&[Tone::Tone1, Tone::Tone2], Duration::from_millis(50)).unwrap();
        assert_eq!(clip.duration(), Duration::from_millis(250));
        assert!(in_band_dtmf(&[], Duration::ZERO).is_none());
        let peak = clip.samples().iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak > 0.5 && peak <= 0.7, "{peak}");
        // The gap is silent.
        assert!(clip.samples()[4800..7200].iter().all(|&x| x == 0.0));
    }
}
