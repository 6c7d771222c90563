//! A recording survives `kill -9`: a child process records a call; the test SIGKILLs it in the
//! middle and opens the files with hound. Each must be a valid WAV holding at least the audio
//! the child reported as covered by a header rewrite before it died.
//!
//! Own `main` (harness = false): the same binary is the child when run with `--child DIR`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use appmedia_audio_io::frame::CORE_FRAME_SAMPLES;
use appmedia_audio_io::record::{CallRecorder, RecordingConfig, Track};

mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        println!("kill_9_mid_call_leaves_playable_files: test");
        return;
    }
    print!("test kill_9_mid_call_leaves_playable_files ... ");
    kill_9_mid_call_leaves_playable_files();
    println!("ok");
}

fn kill_9_mid_call_leaves_playable_files() {
    let dir = common::TempDir::new("kill9");
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .arg("--child")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut mixed_durable, mut speaker_durable, mut rewrites) = (0u64, 0u64, 0u32);
    // Kill once two header rewrites have covered at least a second of audio: mid-call, with
    // frames queued and written after the last rewrite.
    while mixed_durable < 16_000 || rewrites < 2 {
        assert!(Instant::now() < deadline, "child made no progress");
        let line = match lines.next() {
            Some(Ok(l)) => l,
            other => {
                let _ = child.kill();
                panic!("child ended early: {other:?}");
            }
        };
        let mut parts = line.split_whitespace();
        if parts.next() == Some("durable") {
            mixed_durable = parts
                .next()
                .and_then(|v| v.parse().ok())
                .expect("mixed count");
            speaker_durable = parts
                .next()
                .and_then(|v| v.parse().ok())
                .expect("speaker count");
            rewrites += 1;
        }
    }
    child.kill().expect("SIGKILL the child"); // std's kill() is SIGKILL on Unix
    let exit = child.wait().expect("reap child");
    assert!(
        !exit.success(),
        "child must have died from the signal: {exit:?}"
    );

    for (name, durable) in [
        ("crash-mixed.wav", mixed_durable),
        ("crash-speaker-5.wav", speaker_durable),
    ] {
        let path = dir.path().join(name);
        let mut reader = hound::WavReader::open(&path)
            .unwrap_or_else(|e| panic!("{name} is not a valid WAV after kill -9: {e}"));
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.bits_per_sample, spec.sample_rate),
            (1, 16, 16_000)
        );
        assert!(
            u64::from(reader.duration()) >= durable,
            "{name}: {} samples in the header, {durable} were reported durable",
            reader.duration()
        );
        let samples = reader
            .samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| {
                panic!("{name}: cannot read all the samples the header promises: {e}")
            });
        let loud = samples.iter().filter(|s| s.unsigned_abs() > 1000).count();
        assert!(
            loud > samples.len() / 4,
            "{name}: holds the tone, not zeros"
        );
    }
}

/// The child: a call that records a tone on the mixed track and speaker 5, twice as fast as
/// real time, and prints `durable MIXED SPEAKER` after each header rewrite. It runs until killed
/// (at most a minute, so a lost child does not linger).
fn child(dir: &str) {
    let mut cfg = RecordingConfig::new(dir, "crash");
    cfg.header_interval = Duration::from_millis(100);
    let (recorder, sink) = CallRecorder::start(cfg).expect("start recording");
    let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
    let mut last = (0, 0);
    let start = Instant::now();
    let mut out = std::io::stdout().lock();
    for tick in 0u64.. {
        if start.elapsed() > Duration::from_secs(60) {
            break;
        }
        for (i, s) in frame.iter_mut().enumerate() {
            *s = common::sine_at(tick as usize * CORE_FRAME_SAMPLES + i, 300.0, 48_000, 0.5);
        }
        let _ = sink.push(tick, Track::Mixed, &frame);
        let _ = sink.push(tick, Track::Speaker(5), &frame);
        std::thread::sleep(Duration::from_millis(10));
        let status = recorder.status();
        let durable = |t: Track| {
            status
                .tracks
                .iter()
                .find(|s| s.track == t)
                .map_or(0, |s| s.durable_samples)
        };
        let now = (durable(Track::Mixed), durable(Track::Speaker(5)));
        if now != last && now.0 > 0 && now.1 > 0 {
            // Written after the rewrite completed, so the parent never over-counts.
            let _ = writeln!(out, "durable {} {}", now.0, now.1);
            let _ = out.flush();
            last = now;
        }
    }
}
