//! Recording: files, alignment, error handling. (Crash safety under kill -9 is in crash_safety.rs.)

mod common;

use std::time::Duration;

use appmedia_audio_io::frame::{BOT_FRAME_SAMPLES, CORE_FRAME_SAMPLES};
use appmedia_audio_io::record::{
    CallRecorder, FrameDropped, RecordError, RecordingConfig, Track, TrackState,
};
use common::{TempDir, sine_at, tone_power};

fn read_wav(path: &std::path::Path) -> (Vec<i16>, hound::WavSpec) {
    let mut r = hound::WavReader::open(path).expect("open wav");
    let spec = r.spec();
    let s = r
        .samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .expect("read samples");
    (s, spec)
}

#[test]
fn mixed_and_speaker_files_are_16_bit_wav_at_the_chosen_rate() {
    let dir = TempDir::new("rec-basic");
    let (rec, sink) = CallRecorder::start(RecordingConfig::new(dir.path(), "call1")).unwrap();
    let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
    for tick in 0..100u64 {
        for (i, s) in frame.iter_mut().enumerate() {
            *s = sine_at(tick as usize * CORE_FRAME_SAMPLES + i, 440.0, 48_000, 0.5);
        }
        sink.push(tick, Track::Mixed, &frame).unwrap();
        sink.push(tick, Track::Speaker(42), &frame).unwrap();
    }
    let status = rec.finish();
    assert_eq!(status.tracks.len(), 2);
    for t in &status.tracks {
        assert_eq!(t.state, TrackState::Finished, "{t:?}");
        assert_eq!(t.samples_written, 32_000);
        assert_eq!(t.durable_samples, 32_000);
    }
    // What the bot's /metrics counts: the files' audio bytes, headers aside.
    let mut audio_bytes = 0;
    for name in ["call1-mixed.wav", "call1-speaker-42.wav"] {
        let path = dir.path().join(name);
        audio_bytes += std::fs::metadata(&path).unwrap().len() - 44;
        let (samples, spec) = read_wav(&path);
        assert_eq!(spec.sample_rate, 16_000);
        assert_eq!(spec.channels, 1);
        assert_eq!(spec.bits_per_sample, 16);
        assert_eq!(samples.len(), 32_000);
        let f: Vec<f32> = samples[1000..31_000]
            .iter()
            .map(|s| *s as f32 / 32768.0)
            .collect();
        // The 440 Hz tone survives the 48 → 16 kHz conversion at its level (0.5² / 4).
        assert!(tone_power(&f, 16_000, 440.0) > 0.05, "{name}");
    }
    assert_eq!(status.bytes_written(), audio_bytes);
    assert_eq!(audio_bytes, 2 * 32_000 * 2);
}

#[test]
fn bot_format_frames_are_written_bit_exact() {
    let dir = TempDir::new("rec-s16");
    let mut cfg = RecordingConfig::new(dir.path(), "bot");
    cfg.input_sample_rate = 16_000;
    cfg.output_sample_rate = 16_000;
    cfg.record_speakers = false;
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    let mut expected = Vec::new();
    for tick in 0..10u64 {
        let frame: Vec<i16> = (0..BOT_FRAME_SAMPLES)
            .map(|i| (i as i16).wrapping_mul(97).wrapping_add(tick as i16))
            .collect();
        expected.extend_from_slice(&frame);
        sink.push_s16(tick, Track::Mixed, &frame).unwrap();
    }
    assert_eq!(
        sink.push_s16(10, Track::Speaker(1), &expected[..BOT_FRAME_SAMPLES]),
        Err(FrameDropped::TrackDisabled)
    );
    rec.finish();
    let (samples, _) = read_wav(&dir.path().join("bot-mixed.wav"));
    assert_eq!(samples, expected);
}

#[test]
fn a_late_speaker_and_missed_ticks_are_padded_with_silence() {
    let dir = TempDir::new("rec-align");
    let mut cfg = RecordingConfig::new(dir.path(), "c");
    cfg.output_sample_rate = 48_000;
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    let loud = [0.5f32; CORE_FRAME_SAMPLES];
    // The recording starts at call tick 1000; speaker 9 talks on ticks 1020..1030 and 1040.
    for tick in 1000..1050u64 {
        sink.push(tick, Track::Mixed, &loud).unwrap();
        if (1020..1030).contains(&tick) || tick == 1040 {
            sink.push(tick, Track::Speaker(9), &loud).unwrap();
        }
    }
    // A frame for a tick already written is dropped and counted, not appended.
    sink.push(1040, Track::Speaker(9), &loud).unwrap();
    let status = rec.finish();
    let speaker = status
        .tracks
        .iter()
        .find(|t| t.track == Track::Speaker(9))
        .unwrap();
    assert_eq!(speaker.late_frames, 1);
    let (s, _) = read_wav(&speaker.path);
    assert_eq!(
        s.len(),
        41 * CORE_FRAME_SAMPLES,
        "ends at its last tick (1040)"
    );
    let tick_of = |t: usize| &s[t * CORE_FRAME_SAMPLES..(t + 1) * CORE_FRAME_SAMPLES];
    assert!(tick_of(19).iter().all(|x| *x == 0));
    assert!(tick_of(20).iter().all(|x| *x == 16_384));
    assert!(tick_of(29).iter().all(|x| *x == 16_384));
    assert!(tick_of(30).iter().all(|x| *x == 0));
    assert!(tick_of(40).iter().all(|x| *x == 16_384));
}

#[test]
fn every_frame_is_either_queued_or_counted_as_dropped() {
    let dir = TempDir::new("rec-drops");
    let mut cfg = RecordingConfig::new(dir.path(), "q");
    cfg.queue_frames = 1;
    cfg.output_sample_rate = 48_000;
    cfg.record_speakers = false;
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    let frame = [0.25f32; CORE_FRAME_SAMPLES];
    let mut refused = 0u64;
    for tick in 0..2000u64 {
        if sink.push(tick, Track::Mixed, &frame).is_err() {
            refused += 1;
        }
    }
    // Make sure the last tick lands, so the file's length is known.
    let mut attempts = 2000u64;
    loop {
        attempts += 1;
        match sink.push(2000, Track::Mixed, &frame) {
            Err(FrameDropped::QueueFull) => refused += 1,
            Ok(()) => break,
            Err(other) => panic!("{other}"),
        }
        std::thread::yield_now();
    }
    let status = rec.finish();
    let c = status.counters;
    assert_eq!(c.dropped_queue_full, refused);
    assert_eq!(c.queued + c.dropped_queue_full, attempts);
    // Dropped ticks were filled with silence: the file still spans every tick.
    assert_eq!(
        status.tracks[0].samples_written,
        2001 * CORE_FRAME_SAMPLES as u64
    );
}

#[test]
fn wrong_frame_length_is_rejected_and_counted() {
    let dir = TempDir::new("rec-len");
    let (rec, sink) = CallRecorder::start(RecordingConfig::new(dir.path(), "l")).unwrap();
    assert_eq!(
        sink.push(0, Track::Mixed, &[0.0; 100]),
        Err(FrameDropped::WrongLength {
            expected: CORE_FRAME_SAMPLES,
            got: 100
        })
    );
    assert_eq!(sink.counters().rejected, 1);
    drop(rec);
    // After the recording ended, the call can keep pushing: it is told, never blocked.
    assert_eq!(
        sink.push(1, Track::Mixed, &[0.0; CORE_FRAME_SAMPLES]),
        Err(FrameDropped::Stopped)
    );
}

#[test]
fn unwritable_output_path_fails_before_the_call() {
    let dir = TempDir::new("rec-bad");
    let missing = dir.path().join("no-such-dir");
    let err = CallRecorder::start(RecordingConfig::new(&missing, "x"))
        .err()
        .unwrap();
    assert!(
        matches!(err, RecordError::Unwritable { ref path, .. } if path.starts_with(&missing)),
        "{err}"
    );
    assert!(err.to_string().contains("no-such-dir"), "{err}");

    // A regular file where the directory should be; speakers only, so the probe catches it.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let mut cfg = RecordingConfig::new(&file, "x");
    cfg.record_mixed = false;
    assert!(matches!(
        CallRecorder::start(cfg),
        Err(RecordError::Unwritable { .. })
    ));

    let bad_name = RecordingConfig::new(dir.path(), "../escape");
    assert!(matches!(
        CallRecorder::start(bad_name),
        Err(RecordError::InvalidName(_))
    ));

    let mut bad_rate = RecordingConfig::new(dir.path(), "r");
    bad_rate.output_sample_rate = 11_025;
    assert!(matches!(
        CallRecorder::start(bad_rate),
        Err(RecordError::UnsupportedRate {
            which: "output",
            rate: 11_025
        })
    ));
}

/// A full disk: the speaker's file is a link to /dev/full, where every write fails with ENOSPC.
/// That file stops with an error; the mixed file and the call (the producer) carry on.
#[cfg(unix)]
#[test]
fn a_full_disk_stops_that_file_and_the_call_goes_on() {
    let dir = TempDir::new("rec-full");
    let mut cfg = RecordingConfig::new(dir.path(), "f");
    cfg.header_interval = Duration::from_millis(20);
    // The link is this test's own way to a full device: followed on purpose.
    cfg.follow_symlinks = true;
    std::os::unix::fs::symlink("/dev/full", cfg.path_of(Track::Speaker(3))).unwrap();
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    let frame = [0.1f32; CORE_FRAME_SAMPLES];
    for tick in 0..200u64 {
        // The producer is never blocked; on this shared machine the writer may lag, and a
        // refused frame is counted (and becomes silence), which is not what this test is about.
        let _ = sink.push(tick, Track::Mixed, &frame);
        let _ = sink.push(tick, Track::Speaker(3), &frame);
        if tick % 10 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    while sink.push(200, Track::Mixed, &frame) == Err(FrameDropped::QueueFull) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let status = rec.finish();
    let speaker = status
        .tracks
        .iter()
        .find(|t| t.track == Track::Speaker(3))
        .unwrap();
    assert_eq!(speaker.state, TrackState::Failed);
    let error = speaker.error.as_deref().unwrap();
    assert!(
        error.contains("No space left") || error.contains("space"),
        "{error}"
    );
    let mixed = status
        .tracks
        .iter()
        .find(|t| t.track == Track::Mixed)
        .unwrap();
    assert_eq!(mixed.state, TrackState::Finished);
    assert_eq!(mixed.samples_written, 201 * 320);
    assert_eq!(read_wav(&mixed.path).0.len(), 201 * 320);
}

#[test]
fn headers_are_rewritten_while_recording() {
    let dir = TempDir::new("rec-hdr");
    let mut cfg = RecordingConfig::new(dir.path(), "h");
    // Long enough that the poll below sees the rewrite covering the frames before the next
    // one (which resets the level meter for the new interval).
    cfg.header_interval = Duration::from_millis(300);
    // At the input rate, so no resampler holds samples back.
    cfg.output_sample_rate = 48_000;
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    let frame = [0.1f32; CORE_FRAME_SAMPLES];
    for tick in 0..10u64 {
        sink.push(tick, Track::Mixed, &frame).unwrap();
    }
    // Wait (bounded) for a rewrite that covers all ten frames, then read the file while the
    // recording is still open: it is already a valid WAV of that length.
    let mut status = rec.status().tracks[0].clone();
    for _ in 0..500 {
        status = rec.status().tracks[0].clone();
        if status.durable_samples == 9600 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(status.durable_samples, 9600);
    // The level meter saw the frames (0.1 = -20 dBFS) in the interval that wrote them.
    assert!((status.peak - 0.1).abs() < 1e-6, "{}", status.peak);
    assert!((status.peak_dbfs() + 20.0).abs() < 0.01);
    let (samples, _) = read_wav(&dir.path().join("h-mixed.wav"));
    assert_eq!(samples.len(), 9600);
    assert!(rec.status().header_rewrites >= 1);
    drop(sink);
    rec.finish();
}

#[test]
fn bot_frames_can_be_recorded_at_48k() {
    let dir = TempDir::new("rec-up");
    let mut cfg = RecordingConfig::new(dir.path(), "up");
    cfg.input_sample_rate = 16_000;
    cfg.output_sample_rate = 48_000;
    cfg.record_speakers = false;
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    for tick in 0..50usize {
        let frame: Vec<i16> = (0..BOT_FRAME_SAMPLES)
            .map(|i| (sine_at(tick * BOT_FRAME_SAMPLES + i, 1000.0, 16_000, 0.5) * 32767.0) as i16)
            .collect();
        sink.push_s16(tick as u64, Track::Mixed, &frame).unwrap();
    }
    let status = rec.finish();
    assert_eq!(status.tracks[0].samples_written, 48_000);
    let (samples, spec) = read_wav(&status.tracks[0].path);
    assert_eq!((spec.sample_rate, samples.len()), (48_000, 48_000));
    let f: Vec<f32> = samples[2000..46_000]
        .iter()
        .map(|s| *s as f32 / 32768.0)
        .collect();
    let on = tone_power(&f, 48_000, 1000.0);
    assert!(on > 0.05, "{on}");
    // No image of the 16 kHz source left around 15 kHz (16 kHz - 1 kHz).
    assert!(tone_power(&f, 48_000, 15_000.0) < on / 1000.0);
}

/// Whoever can write to the recordings directory plants a link under the next recording's
/// name, pointing at a file the bot may write: the recorder refuses the link (O_NOFOLLOW)
/// instead of truncating and overwriting its target — for the mixed file (an error before the
/// call) and for a speaker's (that track fails, the call goes on).
#[cfg(unix)]
#[test]
fn a_planted_symlink_is_refused_and_its_target_untouched() {
    let dir = TempDir::new("rec-link");
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();

    let cfg = RecordingConfig::new(dir.path(), "m");
    std::os::unix::fs::symlink(&victim, cfg.path_of(Track::Mixed)).unwrap();
    match CallRecorder::start(cfg) {
        Err(RecordError::Unwritable { source, .. }) => {
            assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}")
        }
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("a recording was started through the link"),
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    let mut cfg = RecordingConfig::new(dir.path(), "s");
    cfg.header_interval = Duration::from_millis(20);
    std::os::unix::fs::symlink(&victim, cfg.path_of(Track::Speaker(7))).unwrap();
    let (rec, sink) = CallRecorder::start(cfg).unwrap();
    let frame = [0.1f32; CORE_FRAME_SAMPLES];
    for tick in 0..20u64 {
        let _ = sink.push(tick, Track::Mixed, &frame);
        let _ = sink.push(tick, Track::Speaker(7), &frame);
    }
    let status = rec.finish();
    let speaker = status
        .tracks
        .iter()
        .find(|t| t.track == Track::Speaker(7))
        .unwrap();
    assert_eq!(speaker.state, TrackState::Failed);
    let mixed = status
        .tracks
        .iter()
        .find(|t| t.track == Track::Mixed)
        .unwrap();
    assert_eq!(mixed.state, TrackState::Finished);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}
