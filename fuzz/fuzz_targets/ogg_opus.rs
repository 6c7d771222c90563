//! An Ogg/Opus prompt file (a bot's prompt, a directory's media): bytes through
//! `AudioClip::from_ogg_opus_bytes`, which must refuse or decode within its sample budget.

#![no_main]

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::format::MAX_CLIP_DURATION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(clip) = AudioClip::from_ogg_opus_bytes(data, "fuzz.opus") {
        assert!(clip.duration() <= MAX_CLIP_DURATION + std::time::Duration::from_secs(1));
    }
});
