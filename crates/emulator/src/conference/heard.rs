//! A call's recordings, when `EmulatorConfig::recordings_dir` is set: the call as the
//! conference mixed it (`{call}-mixed.wav`, `{call}-speaker-1.wav` for the bot), and what each
//! party heard (`{call}-heard-by-speaker-{source id}.wav`, [`heard_recording_path`]).
//!
//! The second set is how a test, or a person debugging a bot, learns what a caller heard: the
//! bot before a transfer and the transfer target after it, keypad tones the bot sent, the
//! silence of a server-muted bot. Both are audio-io `CallRecorder`s (crash-safe WAV, 16 kHz,
//! headers rewritten every 500 ms, so a file can be read while the call goes on).

use std::path::{Path, PathBuf};

use appmedia_audio_io::record::{CallRecorder, RecordError, RecordingConfig, Track};
use appmedia_emulator_media::ConferenceMedia;

/// The recording name of what the parties of `call_id` hear.
fn heard_name(call_id: &str) -> String {
    format!("{call_id}-heard-by")
}

/// Where what party `source_id` (its roster `mediaStreams[].sourceId`) heard in call `call_id`
/// is recorded, when recording to `dir`: everyone but itself, the bot included while it is in
/// the call.
pub fn heard_recording_path(dir: &Path, call_id: &str, source_id: u32) -> PathBuf {
    RecordingConfig::new(dir, heard_name(call_id)).path_of(Track::Speaker(source_id))
}

/// The recorders of one conference; finished when the conference stops.
#[derive(Default)]
pub(crate) struct Recorders(Vec<CallRecorder>);

impl Recorders {
    /// With `config` (the call's recording, named after the call id): records the call into it
    /// and what each party hears beside it. Without: records nothing.
    pub(crate) fn start(
        config: Option<RecordingConfig>,
        conference: &mut ConferenceMedia,
    ) -> Result<Recorders, RecordError> {
        let Some(config) = config else {
            return Ok(Recorders::default());
        };
        let heard = RecordingConfig {
            name: heard_name(&config.name),
            record_mixed: false,
            ..config.clone()
        };
        let (call, sink) = CallRecorder::start(config)?;
        conference.attach_recording(sink);
        let (parties, sink) = CallRecorder::start(heard)?;
        conference.attach_heard_recording(sink);
        Ok(Recorders(vec![call, parties]))
    }

    /// Finishes every file (joins the writer threads, off the async workers).
    pub(crate) async fn finish(self) {
        for recorder in self.0 {
            let status = tokio::task::spawn_blocking(move || recorder.finish()).await;
            tracing::info!(?status, "emulator recording finished");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heard_files_are_named_after_the_call_and_the_listener() {
        let path = heard_recording_path(Path::new("/rec"), "call-1", 12);
        assert_eq!(path, Path::new("/rec/call-1-heard-by-speaker-12.wav"));
    }
}
