//! `appmedia play` end to end: a stereo 48 kHz WAV played into a call on the embedded
//! emulator is what the emulator recorded of the bot; bad files are refused before any call.

mod common;

use std::path::Path;

use common::{TempDir, appmedia, audio_fixture, median_match, read_wav, samples, summary};

/// The first 3 s of John's 48 kHz file as a stereo WAV (the same voice on both channels):
/// the command must down-mix and resample it.
fn stereo_excerpt(dir: &Path) -> std::path::PathBuf {
    let mut reader = hound::WavReader::open(samples().join("john-speech-48k.wav")).unwrap();
    assert_eq!(reader.spec().sample_rate, 48_000);
    let path = dir.join("john-3s-stereo-48k.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for s in reader.samples::<i16>().take(3 * 48_000) {
        let s = s.unwrap();
        writer.write_sample(s).unwrap();
        writer.write_sample(s).unwrap();
    }
    writer.finalize().unwrap();
    path
}

#[test]
fn a_played_file_is_what_the_other_side_hears() {
    let dir = TempDir::new("play");
    let file = stereo_excerpt(dir.path());
    let recordings = dir.path().join("emulator");
    let output = appmedia()
        .args(["play", "--json"])
        .arg(&file)
        .arg("--emulator-recordings")
        .arg(&recordings)
        .output()
        .unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert_eq!(s["ok"], true);
    // The queue ran dry, so the bot hung up by itself.
    assert_eq!(s["stopped_by"], "done", "{s:#}");
    let events = s["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{s:#}");
    assert_eq!(events[0]["outcome"], "completed");
    assert_eq!(events[0]["prompt"], 1);
    let at = events[0]["at_ms"].as_u64().unwrap();
    // It cannot end before its 3 s have played in real time (a loaded machine may be late).
    assert!(at >= 2_900, "completed at {at} ms");
    assert!(
        s["prompts"][0]["format"]
            .as_str()
            .unwrap()
            .contains("48000 Hz, 2 ch")
    );

    let recorded = s["emulator_recorded_bot"]["path"].as_str().unwrap();
    let (rate, recorded) = read_wav(Path::new(recorded));
    let (_, john) = read_wav(&samples().join("john-speech.wav"));
    assert_eq!(rate, 16_000);
    let (r, matches) = median_match(&john, &recorded);
    eprintln!("the played file in the emulator's recording: median r = {r:.3} ({matches:?})");
    assert!(r > 0.7, "median r = {r:.2} ({matches:?})");
}

#[test]
fn an_ogg_opus_prompt_of_20_ms_mono_packets_is_passed_through() {
    let output = appmedia()
        .args(["play", "--json"])
        .arg(audio_fixture("prompt-16k.opus"))
        .output()
        .unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert_eq!(s["stopped_by"], "done", "{s:#}");
    // 5.2 s of 20 ms packets: every one sent as it is; the encoder ran only on the silence
    // around the prompt (and rests there).
    let media = &s["media"];
    let passed = media["passthrough_frames"].as_u64().unwrap();
    assert!((255..=270).contains(&passed), "{s:#}");
    assert!(
        media["frames_encoded"].as_u64().unwrap() < passed / 2,
        "{s:#}"
    );
}

#[test]
fn a_wav_and_an_ogg_opus_file_play_in_turn_with_plain_event_lines() {
    let opus = audio_fixture("stereo-440l-1000r.opus");
    let output = appmedia()
        .args(["play", "media-samples/tone-1khz-16k.wav"])
        .arg(&opus)
        .args(["--seconds", "10"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" Completed: "))
        .collect();
    assert_eq!(events.len(), 2, "{stdout}");
    assert!(
        events[0].ends_with("prompt 1 Completed: media-samples/tone-1khz-16k.wav"),
        "{stdout}"
    );
    assert!(
        events[1].contains("prompt 2 Completed: ") && events[1].ends_with("stereo-440l-1000r.opus"),
        "{stdout}"
    );
    // "   2.04 s  prompt 1 ...": the time the event came, on a plain line.
    let at = |line: &str| -> f64 { line.split_whitespace().next().unwrap().parse().unwrap() };
    // Lower bounds only (a loaded machine may deliver late, never early): a prompt cannot end
    // before its audio has played in real time.
    assert!(at(events[0]) >= 1.9, "{stdout}");
    assert!(at(events[1]) - at(events[0]) >= 0.9, "{stdout}");
    assert!(!stdout.contains('\r'));
    assert!(stdout.contains("appmedia play: OK"), "{stdout}");
    assert!(stdout.contains("stopped by done"), "{stdout}");
    assert!(
        stdout.contains("Ogg/Opus, 48000 Hz, 2 ch, 1.0 s"),
        "{stdout}"
    );
}

#[test]
fn bad_files_are_refused_before_any_call() {
    // Nothing listens on the Graph URL: an error about the file proves it came first.
    for (fixture, expect) in [
        ("not-a-wav.wav", "is not a WAV file"),
        ("truncated-data.wav", "is truncated"),
        ("truncated-header.wav", "is truncated"),
        ("alaw-8k.wav", "unsupported WAV encoding"),
        ("truncated.opus", "malformed"),
        ("vorbis.ogg", "unsupported"),
        ("missing.wav", "cannot read"),
    ] {
        let output = appmedia()
            .args(["play", "--graph-url", "http://127.0.0.1:9/v1.0"])
            .arg("media-samples/tone-1khz-16k.wav")
            .arg(audio_fixture(fixture))
            .output()
            .unwrap();
        assert!(!output.status.success(), "{fixture}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(fixture) && stderr.contains(expect),
            "{fixture}: {stderr}"
        );
    }
}
