//! Prompt files: every common WAV layout converts to mono 48 kHz; every bad file is a typed
//! error at open; a real prompt plays through the player to its completion event.

mod common;

use appmedia_audio_io::clip::AudioClip;
use appmedia_audio_io::format::OpenError;
use appmedia_audio_io::frame::CORE_FRAME_SAMPLES;
use appmedia_audio_io::playback::{PlayMode, PromptEvent, PromptOutcome, PromptPlayer};
use appmedia_audio_io::stream::StreamedClip;
use common::{fixture, media_sample, tone_power};

/// Power of a sine of amplitude `a` as `tone_power` measures it.
fn expected_power(a: f32) -> f32 {
    a * a / 4.0
}

#[test]
fn common_wav_layouts_become_mono_48k() {
    // (file, seconds, tone, amplitude after down-mix)
    let cases = [
        ("float32-stereo-22k05.wav", 0.5, 440.0, 0.5),
        ("pcm24-96k.wav", 0.25, 1000.0, 0.5),
        ("pcm8-8k.wav", 0.5, 1000.0, 0.5),
        ("pcm16-6ch-48k.wav", 0.25, 1000.0, 0.5),
    ];
    for (name, seconds, freq, amp) in cases {
        let clip = AudioClip::open(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            clip.samples().len(),
            (48_000.0 * seconds) as usize,
            "{name}"
        );
        let body = &clip.samples()[1000..clip.samples().len() - 1000];
        let p = tone_power(body, 48_000, freq);
        assert!(
            (p / expected_power(amp) - 1.0).abs() < 0.1,
            "{name}: power {p}"
        );
    }
}

#[test]
fn stereo_44k1_sample_is_down_mixed_and_resampled() {
    let clip = AudioClip::open(media_sample("stereo-440l-1000r-44k1.wav")).unwrap();
    let src = clip.source_format();
    assert_eq!(
        (src.sample_rate, src.channels, src.bits_per_sample),
        (44_100, 2, 16)
    );
    assert_eq!(clip.samples().len(), 96_000);
    let body = &clip.samples()[2000..94_000];
    // Each channel's tone is at half its level in the mono mix.
    for freq in [440.0, 1000.0] {
        let p = tone_power(body, 48_000, freq);
        assert!(
            (p / expected_power(0.25) - 1.0).abs() < 0.1,
            "{freq} Hz: {p}"
        );
    }
}

#[test]
fn bad_files_are_typed_errors_at_open() {
    match AudioClip::open(fixture("not-a-wav.wav")) {
        Err(OpenError::NotWav { path, .. }) => assert!(path.ends_with("not-a-wav.wav")),
        other => panic!("{other:?}"),
    }
    match AudioClip::open(fixture("truncated-data.wav")) {
        Err(OpenError::TruncatedData {
            expected, found, ..
        }) => {
            assert_eq!((expected, found), (16_000, 4_000));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        AudioClip::open(fixture("truncated-header.wav")),
        Err(OpenError::TruncatedHeader { .. })
    ));
    match AudioClip::open(fixture("alaw-8k.wav")) {
        Err(e @ OpenError::UnsupportedFormat { .. }) => {
            assert!(e.to_string().contains("A-law"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        AudioClip::open(fixture("empty.wav")),
        Err(OpenError::Empty { .. })
    ));
    assert!(matches!(
        AudioClip::open(fixture("no-such-file.wav")),
        Err(OpenError::Io { .. })
    ));
    // A file past the size cap is refused from its metadata, never read (a sparse 2 GiB file:
    // reading it would take two gigabytes of memory).
    let huge = std::env::temp_dir().join(format!("appmedia-huge-{}.wav", std::process::id()));
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(2 << 30))
        .unwrap();
    let opened = AudioClip::open(&huge);
    let _ = std::fs::remove_file(&huge);
    match opened {
        Err(OpenError::TooLarge { bytes, .. }) => assert_eq!(bytes, 2 << 30),
        other => panic!("{other:?}"),
    }
}

/// A WAVE_FORMAT_EXTENSIBLE file of 16-bit containers claiming `valid_bits` valid bits.
fn extensible_wav(valid_bits: u16) -> Vec<u8> {
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&0xFFFEu16.to_le_bytes()); // WAVE_FORMAT_EXTENSIBLE
    fmt.extend_from_slice(&1u16.to_le_bytes()); // mono
    fmt.extend_from_slice(&16_000u32.to_le_bytes());
    fmt.extend_from_slice(&32_000u32.to_le_bytes());
    fmt.extend_from_slice(&2u16.to_le_bytes()); // block align
    fmt.extend_from_slice(&16u16.to_le_bytes()); // container bits
    fmt.extend_from_slice(&22u16.to_le_bytes()); // cbSize
    fmt.extend_from_slice(&valid_bits.to_le_bytes());
    fmt.extend_from_slice(&4u32.to_le_bytes()); // front centre
    fmt.extend_from_slice(&[
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B,
        0x71,
    ]); // KSDATAFORMAT_SUBTYPE_PCM
    let data = [0u8, 0x10, 0, 0xF0];
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    wav.extend_from_slice(&fmt);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

#[test]
fn an_extensible_wav_with_absurd_valid_bits_is_an_error_not_a_panic() {
    assert!(AudioClip::from_wav_bytes(&extensible_wav(16), "ok.wav").is_ok());
    // 0: hound reads the container size instead; either way, no panic.
    let _ = AudioClip::from_wav_bytes(&extensible_wav(0), "zero.wav");
    for bits in [33u16, 64, 200, u16::MAX] {
        assert!(
            AudioClip::from_wav_bytes(&extensible_wav(bits), "odd.wav").is_err(),
            "{bits} valid bits"
        );
    }
}

#[test]
fn random_bytes_never_panic() {
    // A fixed pseudo-random sequence (xorshift) so a failure reproduces.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let header = std::fs::read(fixture("pcm8-8k.wav")).unwrap();
    for round in 0..500 {
        let len = (next() % 200) as usize;
        let mut bytes: Vec<u8> = if round % 2 == 0 {
            // A real header with random corruption: reaches deeper parsing paths.
            header[..header.len().min(len + 44)].to_vec()
        } else {
            Vec::new()
        };
        for _ in 0..len {
            let b = next() as u8;
            if round % 2 == 0 && !bytes.is_empty() {
                let i = (next() as usize) % bytes.len();
                bytes[i] = b;
            } else {
                bytes.push(b);
            }
        }
        let _ = AudioClip::from_wav_bytes(&bytes, "random");
    }
}

#[test]
fn a_speech_prompt_plays_to_its_completion_event() {
    let clip = AudioClip::open(media_sample("prompt.wav")).unwrap();
    let expected_frames = clip.samples().len().div_ceil(CORE_FRAME_SAMPLES);
    let (mut player, queue) = PromptPlayer::new(8);
    let id = queue.play(&clip, PlayMode::Once).unwrap();
    let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
    let mut frames = 0;
    let mut energy = 0.0f64;
    while player.next_frame(&mut frame) {
        frames += 1;
        energy += frame.iter().map(|s| f64::from(s * s)).sum::<f64>();
        assert!(frames <= expected_frames, "prompt did not end");
    }
    assert_eq!(frames, expected_frames);
    assert!(energy > 100.0, "speech, not silence: {energy}");
    assert_eq!(
        queue.try_event(),
        Some(PromptEvent {
            id,
            outcome: PromptOutcome::Completed
        })
    );
}

#[test]
fn streamed_and_decoded_prompts_share_the_queue() {
    let hold_music = StreamedClip::open(media_sample("tone-1khz-16k.wav")).unwrap();
    let speech = StreamedClip::open(media_sample("jane-speech.wav")).unwrap();
    let beep = AudioClip::from_samples(vec![0.5; 4800]).unwrap();
    let (mut player, queue) = PromptPlayer::new(8);
    let looped = queue.play_streamed(&hold_music, PlayMode::Loop).unwrap();
    let spoken = queue.play_streamed(&speech, PlayMode::Once).unwrap();
    let beeped = queue.play(&beep, PlayMode::Once).unwrap();
    let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
    // Hold music for a second (looping, it would never end by itself), then cancel it.
    for _ in 0..50 {
        player.next_frame(&mut frame);
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    queue.cancel(looped).unwrap();
    let mut events = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while events.len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "prompts never ended: {events:?}"
        );
        player.next_frame(&mut frame);
        while let Some(e) = queue.try_event() {
            events.push(e);
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    assert_eq!(
        events,
        vec![
            PromptEvent {
                id: looped,
                outcome: PromptOutcome::Cancelled
            },
            PromptEvent {
                id: spoken,
                outcome: PromptOutcome::Completed
            },
            PromptEvent {
                id: beeped,
                outcome: PromptOutcome::Completed
            },
        ]
    );
    assert!(!player.is_playing());
}

#[test]
fn ogg_opus_files_decode_to_mono_48k() {
    use appmedia_audio_io::format::Encoding;
    let clip = AudioClip::open(fixture("stereo-440l-1000r.opus")).unwrap();
    let src = clip.source_format();
    assert_eq!((src.channels, src.encoding), (2, Encoding::Opus));
    // End-trimmed by the last granule and pre-skip removed: exactly the one second encoded.
    assert_eq!(clip.samples().len(), 48_000);
    let body = &clip.samples()[2000..46_000];
    for freq in [440.0, 1000.0] {
        let p = tone_power(body, 48_000, freq);
        assert!(
            (p / expected_power(0.25) - 1.0).abs() < 0.2,
            "{freq} Hz: {p}"
        );
    }

    // The speech prompt, encoded by opusenc from media-samples/prompt.wav: same length as the
    // WAV, and about the same loudness (Opus is lossy, so not the same samples).
    let opus = AudioClip::open(fixture("prompt-16k.opus")).unwrap();
    let wav = AudioClip::open(media_sample("prompt.wav")).unwrap();
    assert_eq!(opus.samples().len(), wav.samples().len());
    let energy = |s: &[f32]| s.iter().map(|x| f64::from(x * x)).sum::<f64>();
    let ratio = energy(opus.samples()) / energy(wav.samples());
    assert!((0.8..1.25).contains(&ratio), "energy ratio {ratio}");
}

#[test]
fn bad_ogg_files_are_typed_errors_at_open() {
    match AudioClip::open(fixture("truncated.opus")) {
        Err(e @ OpenError::Malformed { .. }) => assert!(e.to_string().contains("truncated"), "{e}"),
        other => panic!("{other:?}"),
    }
    match AudioClip::open(fixture("vorbis.ogg")) {
        Err(e @ OpenError::UnsupportedFormat { .. }) => {
            assert!(e.to_string().contains("Vorbis"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // One flipped byte in the middle of a page: the page CRC catches it.
    let mut damaged = std::fs::read(fixture("prompt-16k.opus")).unwrap();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    match AudioClip::from_ogg_opus_bytes(&damaged, "damaged.opus") {
        Err(e @ OpenError::Malformed { .. }) => assert!(e.to_string().contains("checksum"), "{e}"),
        other => panic!("{other:?}"),
    }
    // Streaming checks the whole file at open too (it decodes it once, keeping nothing).
    let on_disk =
        std::env::temp_dir().join(format!("appmedia-damaged-{}.opus", std::process::id()));
    std::fs::write(&on_disk, &damaged).unwrap();
    let streamed = StreamedClip::open(&on_disk);
    std::fs::remove_file(&on_disk).unwrap();
    match streamed {
        Err(e @ OpenError::Malformed { .. }) => assert!(e.to_string().contains("checksum"), "{e}"),
        other => panic!("{other:?}"),
    }
}

/// The DTMF sample holds the digits its name says (ITU-T Q.23 row and column tones), so
/// tests elsewhere can rely on it.
#[test]
fn dtmf_sample_holds_its_digits() {
    let clip = AudioClip::open(media_sample("dtmf-123456789star0hash-8k.wav")).unwrap();
    let rows = [697.0, 770.0, 852.0, 941.0];
    let cols = [1209.0, 1336.0, 1477.0];
    let keypad = ["123", "456", "789", "*0#"];
    let strongest = |w: &[f32], freqs: &[f32]| {
        freqs
            .iter()
            .enumerate()
            .map(|(i, f)| (i, tone_power(w, 48_000, *f)))
            .fold((0, 0.0f32), |m, x| if x.1 > m.1 { x } else { m })
    };
    let mut heard = String::new();
    for i in 0..12 {
        // Each digit: 100 ms of tone then 100 ms of silence; look inside the tone.
        let start = i * 9600 + 480;
        let tone = &clip.samples()[start..start + 3840];
        let (r, rp) = strongest(tone, &rows);
        let (c, cp) = strongest(tone, &cols);
        assert!(rp > 0.01 && cp > 0.01, "digit {i}: no tone ({rp}, {cp})");
        heard.push(keypad[r].as_bytes()[c] as char);
        let gap = &clip.samples()[start + 5280..start + 8640];
        assert!(
            gap.iter().all(|s| s.abs() < 0.01),
            "digit {i}: no silence after it"
        );
    }
    assert_eq!(heard, "123456789*0#");
}
