//! A WAV prompt file: bytes through `AudioClip::from_wav_bytes` (any RIFF layout, sample
//! format, channel count and rate), which must refuse or decode within its sample budget.

#![no_main]

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::format::MAX_CLIP_DURATION;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(clip) = AudioClip::from_wav_bytes(data, "fuzz.wav") {
        assert!(clip.duration() <= MAX_CLIP_DURATION + std::time::Duration::from_secs(1));
    }
});
