//! The real cpal + ALSA path on a machine without a sound card: the test writes an ALSA
//! configuration whose devices are `file` plugins over the `null` plugin — playback lands in a
//! raw stream, capture reads one — and points ALSA_CONFIG_PATH at it.
//!
//! The `null` plugin has no clock: it accepts and produces audio as fast as it is asked to. So
//! the files are FIFOs served by threads of this test at real-time pace; their blocking reads
//! and writes are the "device clock" that drives cpal's callback.
//!
//! Own `main` (harness = false): ALSA reads its configuration once per process from the
//! environment, so the variable is set before anything touches ALSA, and the scenarios run one
//! after another in this process, separate from every other test binary.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use appmedia_audio_io::device::{
    DeviceConfig, DeviceError, Direction, MicSource, Microphone, SpeakerFeed, Speakers,
    StreamFormat, list_devices, probe_format,
};
use appmedia_audio_io::frame::CORE_FRAME_SAMPLES;
use common::{TempDir, sine_at, tone_power};
use cpal::SampleFormat;

const OUT: &str = "appmedia_test_out";
const IN: &str = "appmedia_test_in";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        for name in SCENARIOS.iter().map(|(n, _)| n) {
            println!("{name}: test");
        }
        return;
    }
    let dir = TempDir::new("alsa");
    write_alsa_config(dir.path());
    let mut path = dir.path().join("asoundrc").display().to_string();
    // Keep the system's alsa.conf first when it exists: it defines the standard PCMs and plugin
    // aliases; ours adds the two test devices.
    for system in ["/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"] {
        if Path::new(system).exists() {
            path = format!("{system}:{path}");
            break;
        }
    }
    // SAFETY: nothing else runs yet; no thread exists that could read the environment.
    unsafe { std::env::set_var("ALSA_CONFIG_PATH", &path) };

    let mut failed = 0;
    for (name, scenario) in SCENARIOS {
        print!("test {name} ... ");
        let result = std::panic::catch_unwind(|| scenario(dir.path()));
        match result {
            Ok(()) => println!("ok"),
            Err(_) => {
                println!("FAILED");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!("{failed} ALSA scenario(s) failed");
        std::process::exit(1);
    }
}

type Scenario = fn(&Path);
const SCENARIOS: &[(&str, Scenario)] = &[
    ("lists_the_configured_devices", lists_the_configured_devices),
    (
        "an_unknown_device_is_a_clear_error",
        an_unknown_device_is_a_clear_error,
    ),
    (
        "no_default_device_is_a_clear_error",
        no_default_device_is_a_clear_error,
    ),
    (
        "call_audio_reaches_the_speakers",
        call_audio_reaches_the_speakers,
    ),
    (
        "the_microphone_feeds_the_call",
        the_microphone_feeds_the_call,
    ),
];

fn make_fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

fn write_alsa_config(dir: &Path) {
    let out = dir.join("speakers.raw");
    let infile = dir.join("microphone.raw");
    make_fifo(&out);
    make_fifo(&infile);
    // The default device points at a sound card that does not exist, as on a headless server
    // (and on every machine running this test, whatever its hardware).
    let config = format!(
        r#"
pcm.!default {{
    type hw
    card 99
}}
pcm.{OUT} {{
    type file
    slave.pcm "null"
    file "{out}"
    format "raw"
    hint {{ show on description "appmedia test speakers (raw file)" }}
}}
pcm.{IN} {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{infile}"
    format "raw"
    hint {{ show on description "appmedia test microphone (raw file)" }}
}}
"#,
        out = out.display(),
        infile = infile.display()
    );
    std::fs::write(dir.join("asoundrc"), config).expect("write asoundrc");
}

fn lists_the_configured_devices(_: &Path) {
    let devices = list_devices().expect("list devices");
    let out = devices
        .iter()
        .find(|d| d.name == OUT)
        .expect("test output listed");
    assert!(
        out.description.contains("appmedia test speakers"),
        "{out:?}"
    );
    assert!(devices.iter().any(|d| d.name == IN));
}

fn an_unknown_device_is_a_clear_error(_: &Path) {
    match Speakers::open(&DeviceConfig::new(Some("no-such-speakers"))) {
        Err(DeviceError::NotFound {
            name,
            direction,
            available,
        }) => {
            assert_eq!(name, "no-such-speakers");
            assert_eq!(direction, Direction::Output);
            assert!(available.iter().any(|n| n == OUT));
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("opened a device that does not exist"),
    }
    let err = Microphone::open(&DeviceConfig::new(Some("no-such-mic")))
        .err()
        .expect("error");
    assert!(err.to_string().contains("no-such-mic"), "{err}");
}

fn no_default_device_is_a_clear_error(_: &Path) {
    for result in [
        Speakers::open(&DeviceConfig::new(None)).err(),
        Microphone::open(&DeviceConfig::new(None)).err(),
    ] {
        match result {
            Some(e @ DeviceError::NoDefault { .. }) => {
                let text = e.to_string();
                eprint!("[{text}] ");
                assert!(
                    text.contains("no default") && text.contains("appmedia devices"),
                    "{text}"
                );
            }
            Some(other) => panic!("wrong error: {other}"),
            None => panic!("opened a default device that cannot exist"),
        }
    }
}

/// Decodes interleaved raw samples of `format` into channel 0 as f32.
fn decode_raw(bytes: &[u8], format: StreamFormat) -> Vec<f32> {
    let channels = usize::from(format.channels);
    match format.sample_format {
        SampleFormat::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .step_by(channels)
            .collect(),
        SampleFormat::I16 => bytes
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .step_by(channels)
            .collect(),
        other => panic!("test decodes f32 and i16 only, device chose {other}"),
    }
}

/// Reads the speakers' FIFO at `bytes_per_second` (set once the format is known), like a
/// sound card consuming audio, until stopped. Each open by ALSA (a probe, then the stream) is
/// served in turn.
fn paced_sink(
    fifo: PathBuf,
    rate: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut all = Vec::new();
        let mut start = None;
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            // Blocks until ALSA opens the FIFO for writing (the test opens it itself to stop).
            let Ok(mut f) = std::fs::File::open(&fifo) else {
                break;
            };
            loop {
                let bytes_per_second = rate.load(Ordering::Relaxed);
                if bytes_per_second == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let start = *start.get_or_insert_with(Instant::now);
                let allowed = (start.elapsed().as_secs_f64() * bytes_per_second as f64) as usize;
                if all.len() >= allowed {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let want = buf
                    .len()
                    .min(allowed - all.len())
                    .min(bytes_per_second / 100)
                    .max(1);
                match f.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break, // writer closed
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
        }
        all
    })
}

/// Writes the audio (encoded, with its byte rate, given once the format is known) into the
/// microphone's FIFO in real time, like a sound card capturing, until stopped.
fn paced_source(
    fifo: PathBuf,
    audio: Arc<OnceLock<(Vec<u8>, usize)>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut pos = 0usize;
        while !stop.load(Ordering::Relaxed) {
            // Blocks until ALSA opens the FIFO for reading (the test opens it itself to stop).
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                break;
            };
            while audio.get().is_none() && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(5));
            }
            let Some((bytes, bytes_per_second)) = audio.get() else {
                break;
            };
            let (bytes_per_second, chunk) = (*bytes_per_second, bytes_per_second / 100);
            if pos >= bytes.len() {
                break;
            }
            let start = Instant::now();
            let mut sent = 0usize;
            while pos < bytes.len() && !stop.load(Ordering::Relaxed) {
                let allowed =
                    (start.elapsed().as_secs_f64() * bytes_per_second as f64) as usize + chunk;
                if sent >= allowed {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let end = (pos + chunk).min(bytes.len());
                if f.write_all(&bytes[pos..end]).is_err() {
                    break; // reader closed (a probe): serve the next open
                }
                sent += end - pos;
                pos = end;
            }
        }
    })
}

fn bytes_per_sample(format: StreamFormat) -> usize {
    match format.sample_format {
        SampleFormat::F32 => 4,
        SampleFormat::I16 => 2,
        other => panic!("test handles f32 and i16 only, device chose {other}"),
    }
}

fn call_audio_reaches_the_speakers(dir: &Path) {
    let fifo = dir.join("speakers.raw");
    let stop = Arc::new(AtomicBool::new(false));
    let rate = Arc::new(AtomicUsize::new(0));
    let sink = paced_sink(fifo.clone(), Arc::clone(&rate), Arc::clone(&stop));
    let format = probe_format(Some(OUT), Direction::Output).expect("probe test speakers");
    let bps = format.sample_rate as usize * usize::from(format.channels) * bytes_per_sample(format);
    rate.store(bps, Ordering::Relaxed);

    let (speakers, mut feed): (Speakers, SpeakerFeed) =
        Speakers::open(&DeviceConfig::new(Some(OUT))).expect("open test speakers");
    assert_eq!(speakers.format(), format);
    // One second of a 440 Hz tone at the tick's pace, then half a second of silence to drain.
    let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
    let start = Instant::now();
    for tick in 0..75usize {
        for (i, s) in frame.iter_mut().enumerate() {
            *s = if tick < 50 {
                sine_at(tick * CORE_FRAME_SAMPLES + i, 440.0, 48_000, 0.5)
            } else {
                0.0
            };
        }
        feed.push_frame(&frame);
        let due = start + Duration::from_millis(20 * (tick as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let counters = speakers.counters();
    drop(speakers);
    stop.store(true, Ordering::Relaxed);
    // Unblock the sink if it waits in open().
    let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    let raw = sink.join().expect("sink thread");
    assert!(
        counters.callbacks > 0,
        "the cpal callback ran: {counters:?}"
    );

    let samples = decode_raw(&raw, format);
    let rate = format.sample_rate;
    // The tone is there: count 20 ms windows that carry 440 Hz at about its level.
    let window = (rate / 50) as usize;
    let toned = samples
        .chunks_exact(window)
        .filter(|w| tone_power(w, rate, 440.0) > 0.5 * 0.25 * 0.25)
        .count();
    eprint!(
        "[{toned} toned windows, {} samples, {format:?}, {counters:?}] ",
        samples.len()
    );
    // 50 expected; a loaded machine may stall the tick past the 60 ms ring (counted as
    // underruns), so ask for most of them, not all.
    assert!(
        toned >= 35,
        "expected ~50 windows of 440 Hz, found {toned} in {} samples ({format:?}, {counters:?})",
        samples.len()
    );
    // Paced like a real device: about 1.5 s of audio, not a flood.
    assert!(
        samples.len() < 3 * rate as usize,
        "{} samples",
        samples.len()
    );
}

fn the_microphone_feeds_the_call(dir: &Path) {
    let fifo = dir.join("microphone.raw");
    let stop = Arc::new(AtomicBool::new(false));
    let audio = Arc::new(OnceLock::new());
    let source_thread = paced_source(fifo.clone(), Arc::clone(&audio), Arc::clone(&stop));
    let format = probe_format(Some(IN), Direction::Input).expect("probe test microphone");
    // Two seconds of 1 kHz in the device's format, for the file plugin to "capture".
    let rate = format.sample_rate;
    let channels = usize::from(format.channels);
    let mut raw = Vec::new();
    for i in 0..(2 * rate as usize) {
        let s = sine_at(i, 1000.0, rate, 0.5);
        for _ in 0..channels {
            match format.sample_format {
                SampleFormat::F32 => raw.extend_from_slice(&s.to_le_bytes()),
                SampleFormat::I16 => raw.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes()),
                other => panic!("test encodes f32 and i16 only, device chose {other}"),
            }
        }
    }
    let bps = rate as usize * channels * bytes_per_sample(format);
    let _ = audio.set((raw, bps));

    let (mic, mut source): (Microphone, MicSource) =
        Microphone::open(&DeviceConfig::new(Some(IN))).expect("open test microphone");
    assert_eq!(mic.format(), format);
    let mut frame = [0.0f32; CORE_FRAME_SAMPLES];
    let mut captured = Vec::new();
    let start = Instant::now();
    for tick in 0..75u64 {
        if source.pull_frame(&mut frame) {
            captured.extend_from_slice(&frame);
        }
        let due = start + Duration::from_millis(20 * (tick + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    let counters = mic.counters();
    drop(mic);
    stop.store(true, Ordering::Relaxed);
    // Unblock the source if it waits in open().
    let _ = std::fs::File::open(&fifo);
    source_thread.join().expect("source thread");
    assert!(counters.callbacks > 0, "{counters:?}");
    let toned = captured
        .chunks_exact(CORE_FRAME_SAMPLES)
        .filter(|w| tone_power(w, 48_000, 1000.0) > 0.5 * 0.25 * 0.25)
        .count();
    eprint!(
        "[{toned} toned frames of {}, {format:?}, {counters:?}] ",
        captured.len() / CORE_FRAME_SAMPLES
    );
    assert!(
        toned >= 20,
        "expected frames of 1 kHz from the microphone, found {toned} of {} ({format:?}, {counters:?})",
        captured.len() / CORE_FRAME_SAMPLES
    );
}
