//! `appmedia demo --mic --speakers` through the real cpal + ALSA path on a machine without a
//! sound card (the approach of crates/audio-io/tests/alsa_devices.rs): the test writes an ALSA
//! configuration whose two devices are `file` plugins over `null`, behind `plug` so that the
//! files have a fixed format (S16_LE, 48 kHz), and gives it to the binary in ALSA_CONFIG_PATH.
//! The files are FIFOs served at real-time pace by this test — `null` has no clock, so these
//! paced reads and writes are the devices' clocks. A 1 kHz tone goes into the microphone and
//! must be in what the emulator recorded of the bot; John's voice must come out of the speakers.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{TempDir, appmedia, read_wav, samples, summary};

const RATE: usize = 48_000;
const SPEAKER_CHANNELS: usize = 2;

fn make_fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The ALSA configuration: the system's alsa.conf (standard PCMs and plugins), then ours.
fn alsa_config(dir: &Path, speakers: &Path, microphone: &Path) -> String {
    let config = format!(
        r#"
pcm.!default {{
    type hw
    card 99
}}
pcm.test_speakers_file {{
    type file
    slave.pcm "null"
    file "{speakers}"
    format "raw"
}}
pcm.test_speakers {{
    type plug
    slave {{ pcm "test_speakers_file" format S16_LE rate {RATE} channels {SPEAKER_CHANNELS} }}
    hint {{ show on description "appmedia test speakers" }}
}}
pcm.test_microphone_file {{
    type file
    slave.pcm "null"
    file "/dev/null"
    infile "{microphone}"
    format "raw"
}}
pcm.test_microphone {{
    type plug
    slave {{ pcm "test_microphone_file" format S16_LE rate {RATE} channels 1 }}
    hint {{ show on description "appmedia test microphone" }}
}}
"#,
        speakers = speakers.display(),
        microphone = microphone.display()
    );
    let path = dir.join("asoundrc");
    std::fs::write(&path, config).unwrap();
    let mut value = path.display().to_string();
    for system in ["/usr/share/alsa/alsa.conf", "/etc/alsa/alsa.conf"] {
        if Path::new(system).exists() {
            value = format!("{system}:{value}");
            break;
        }
    }
    value
}

/// Reads the speakers' FIFO at the device's byte rate, each time ALSA opens it, until stopped.
fn paced_sink(fifo: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let bytes_per_second = RATE * SPEAKER_CHANNELS * 2;
        let mut all = Vec::new();
        let mut buf = vec![0u8; bytes_per_second / 50];
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut f) = std::fs::File::open(&fifo) else {
                break;
            };
            let start = Instant::now();
            let mut taken = 0usize;
            loop {
                let allowed = (start.elapsed().as_secs_f64() * bytes_per_second as f64) as usize;
                if taken >= allowed {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let want = buf.len().min(allowed - taken);
                match f.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        taken += n;
                        all.extend_from_slice(&buf[..n]);
                    }
                }
            }
        }
        all
    })
}

/// Writes a 1 kHz tone (S16_LE mono) into the microphone's FIFO in real time, each time ALSA
/// opens it, until stopped.
fn paced_tone(fifo: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let chunk = RATE / 100;
        let mut n = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                break;
            };
            let start = Instant::now();
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let allowed = (start.elapsed().as_secs_f64() * RATE as f64) as usize + chunk;
                if sent >= allowed {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let mut bytes = Vec::with_capacity(chunk * 2);
                for _ in 0..chunk {
                    let phase = 2.0 * std::f64::consts::PI * 1000.0 * n as f64 / RATE as f64;
                    bytes.extend_from_slice(&((phase.sin() * 0.5 * 32767.0) as i16).to_le_bytes());
                    n += 1;
                }
                if f.write_all(&bytes).is_err() {
                    break; // the reader closed (a probe): serve the next open
                }
                sent += chunk;
            }
        }
    })
}

/// Power of `freq` in `x` (the test kit's Goertzel), normalized so a sine of amplitude A
/// gives A²/4.
fn tone_power(x: &[f32], rate: u32, freq: f32) -> f64 {
    appmedia_testkit::audio::goertzel(x, freq, rate as f32) / x.len().max(1) as f64
}

#[test]
fn the_demo_takes_the_microphone_and_plays_to_the_speakers() {
    let dir = TempDir::new("demo-devices");
    let (speakers, microphone) = (dir.path().join("speakers.raw"), dir.path().join("mic.raw"));
    make_fifo(&speakers);
    make_fifo(&microphone);
    let config = alsa_config(dir.path(), &speakers, &microphone);
    let stop = Arc::new(AtomicBool::new(false));
    let sink = paced_sink(speakers.clone(), Arc::clone(&stop));
    let tone = paced_tone(microphone.clone(), Arc::clone(&stop));

    let recordings = dir.path().join("recordings");
    let output = appmedia()
        .env("ALSA_CONFIG_PATH", &config)
        .args(["demo", "--json", "--seconds", "4"])
        .args(["--mic", "test_microphone", "--speakers", "test_speakers"])
        .arg("--recordings")
        .arg(&recordings)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    // Unblock the threads if they wait in open().
    let _ = std::fs::OpenOptions::new().write(true).open(&speakers);
    let _ = std::fs::File::open(&microphone);
    let played = sink.join().unwrap();
    tone.join().unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert!(
        s["devices"]["mic"]["callbacks"].as_u64().unwrap() > 0,
        "{s:#}"
    );
    assert!(
        s["devices"]["speakers"]["callbacks"].as_u64().unwrap() > 0,
        "{s:#}"
    );

    // The microphone's tone is in what the emulator recorded of the bot.
    let recorded = s["recordings"]["emulator_recorded_bot"]["path"]
        .as_str()
        .unwrap();
    let (rate, bot) = read_wav(Path::new(recorded));
    let toned = bot
        .chunks_exact(rate as usize / 50)
        .filter(|w| tone_power(w, rate, 1000.0) > 0.25 * 0.25 * 0.25)
        .count();
    eprintln!("{toned} windows of 1 kHz in {recorded}");
    assert!(
        toned >= 50,
        "the microphone's tone in the call: {toned} windows of 20 ms"
    );

    // John's voice came out of the speakers: channel 0 of the S16 stream.
    let left: Vec<f32> = played
        .chunks_exact(2 * SPEAKER_CHANNELS)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    let voiced = left
        .chunks_exact(RATE / 50)
        .filter(|w| common::rms_dbfs(w) > -40.0)
        .count();
    let (_, john) = read_wav(&samples().join("john-speech.wav"));
    eprintln!(
        "{voiced} voiced windows of {} in the speakers' stream (John's file: {:.1} dBFS)",
        left.len() / (RATE / 50),
        common::rms_dbfs(&john)
    );
    assert!(
        voiced >= 50,
        "John on the speakers: {voiced} voiced windows of 20 ms"
    );
}
