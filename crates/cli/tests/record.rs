//! `appmedia record` end to end: against the in-process emulator, against a separately running
//! `appmedia emulator` whose John hangs up, and stopped with Ctrl-C. The WAV files must be
//! valid, last as long as the call, and the mix must carry John's speech.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{TempDir, appmedia, median_match, read_wav, rms_dbfs, samples, states, summary};
use serde_json::Value;

/// Checks every file of a record summary: valid WAV at `rate`, `seconds` ± 0.5 s long; and
/// returns the mixed track's path.
fn check_files(summary: &Value, rate: u32, seconds: f64) -> String {
    let tracks = summary["recordings"].as_array().expect("recordings");
    assert!(tracks.iter().any(|t| t["track"] == "mixed"), "{summary:#}");
    assert!(
        tracks
            .iter()
            .any(|t| t["track"].as_str().unwrap().starts_with("speaker ")),
        "one file per speaker: {summary:#}"
    );
    for t in tracks {
        let path = Path::new(t["path"].as_str().unwrap());
        let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let spec = reader.spec();
        assert_eq!(
            (spec.sample_rate, spec.channels, spec.bits_per_sample),
            (rate, 1, 16),
            "{path:?}"
        );
        let duration = f64::from(reader.duration()) / f64::from(rate);
        // Speaker files start when the speaker is first heard; the mix spans the call.
        if t["track"] == "mixed" {
            assert!(
                (duration - seconds).abs() <= 0.5,
                "{path:?} lasts {duration:.2} s, expected {seconds:.2} ± 0.5"
            );
        } else {
            assert!(
                duration > 0.5 && duration <= seconds + 0.5,
                "{path:?}: {duration:.2} s"
            );
        }
    }
    tracks.iter().find(|t| t["track"] == "mixed").unwrap()["path"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The mix carries John: loud enough, and his speech is found in it.
fn check_john_in(mixed: &str) {
    let (rate, heard) = read_wav(Path::new(mixed));
    let heard: Vec<f32> = if rate == 48_000 {
        // Every third sample: John's file is band-limited speech at 16 kHz.
        heard.iter().step_by(3).copied().collect()
    } else {
        heard
    };
    let level = rms_dbfs(&heard);
    assert!(level > -40.0, "{mixed}: mix at {level:.1} dBFS");
    let (_, john) = read_wav(&samples().join("john-speech.wav"));
    let (r, matches) = median_match(&john, &heard);
    eprintln!("John in {mixed}: {level:.1} dBFS, median r = {r:.3} ({matches:?})");
    assert!(
        r > 0.6,
        "John's speech in the mix: median r = {r:.2} ({matches:?})"
    );
}

#[test]
fn records_a_call_on_the_embedded_emulator() {
    let out = TempDir::new("record-embedded");
    let output = appmedia()
        .args(["record", "--seconds", "3", "--json", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert_eq!(s["ok"], true);
    assert_eq!(s["stopped_by"], "seconds");
    let states = states(&s);
    assert!(
        states.iter().any(|s| s == "established")
            && states.last().is_some_and(|s| s == "terminated"),
        "{states:?}"
    );
    let mixed = check_files(&s, 16_000, 3.0);
    assert!(mixed.starts_with(out.path().to_str().unwrap()), "{mixed}");
    check_john_in(&mixed);

    // Not a terminal: the meter is plain lines, one a second, never redrawn with \r.
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains('\r'), "{stderr:?}");
    let meter: Vec<&str> = stderr.lines().filter(|l| l.contains("mixed")).collect();
    assert!(
        (2..=4).contains(&meter.len()) && meter.iter().all(|l| l.contains("dBFS")),
        "{stderr}"
    );
}

/// `appmedia emulator` on a free port, with John speaking and hanging up after `hang_up_ms`.
fn spawn_emulator(dir: &Path, hang_up_ms: u64) -> (Child, String) {
    let seed = appmedia()
        .args(["emulator", "--print-directory"])
        .output()
        .unwrap();
    let seed = String::from_utf8(seed.stdout).unwrap();
    let mut lines: Vec<String> = seed.lines().map(str::to_owned).collect();
    let at = lines
        .iter()
        .position(|l| l.contains(r#"display_name = "John""#))
        .expect("John in the seed directory");
    let behaviour = lines[at..]
        .iter()
        .position(|l| l.starts_with("behaviour = "))
        .expect("John's behaviour line")
        + at;
    lines[behaviour] = format!(
        r#"behaviour = {{ answer = "answer", ring_delay_ms = 300, hang_up_after_ms = {hang_up_ms}, media = {{ speak = "john-speech.wav" }} }}"#
    );
    let directory = dir.join("directory.toml");
    std::fs::write(&directory, lines.join("\n")).unwrap();
    let mut child = appmedia()
        .args(["emulator", "--bind", "127.0.0.1:0", "--directory"])
        .arg(&directory)
        .arg("--media-samples")
        .arg(samples())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let graph = loop {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "emulator exited");
        if let Some(url) = line.trim().strip_prefix("Graph API:") {
            break url.trim().to_owned();
        }
    };
    // Keep draining its stdout so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).is_ok_and(|n| n > 0) {
            sink.clear();
        }
    });
    (child, graph)
}

#[test]
fn records_from_a_separate_emulator_until_the_other_side_hangs_up() {
    let dir = TempDir::new("record-separate");
    let (mut emulator, graph) = spawn_emulator(dir.path(), 2_500);
    let output = appmedia()
        .args(["record", "--json", "--rate", "48000", "--seconds", "20"])
        .args(["--graph-url", &graph])
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let _ = emulator.kill();
    let _ = emulator.wait();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert_eq!(s["stopped_by"], "terminated", "{s:#}");
    assert_eq!(s["service"].as_str(), Some(graph.as_str()));
    let seconds = s["seconds"].as_f64().unwrap();
    assert!((1.5..=4.0).contains(&seconds), "{seconds}");
    let mixed = check_files(&s, 48_000, seconds);
    check_john_in(&mixed);
}

#[test]
fn ctrl_c_hangs_up_and_finishes_the_files() {
    let out = TempDir::new("record-ctrl-c");
    let mut child = appmedia()
        .args(["record", "--json", "--out"])
        .arg(out.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the meter has shown two seconds of the call, then press Ctrl-C.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let mut log = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "record ended: {log}"
        );
        log.push_str(&line);
        if line.starts_with("00:02") {
            break;
        }
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    std::thread::sleep(Duration::from_millis(10));
    let output = child.wait_with_output().unwrap();
    let s = summary(&output);
    assert!(output.status.success(), "{s:#}");
    assert_eq!(s["stopped_by"], "ctrl-c");
    let states = states(&s);
    assert!(
        states.last().is_some_and(|s| s == "terminated"),
        "hung up cleanly: {states:?}"
    );
    check_files(&s, 16_000, s["seconds"].as_f64().unwrap());
}

/// `appmedia record` against a Graph URL where nothing listens: an error about anything else
/// proves it came before the call was created.
fn record_without_a_service() -> std::process::Command {
    let mut cmd = appmedia();
    cmd.args([
        "record",
        "--seconds",
        "1",
        "--graph-url",
        "http://127.0.0.1:9/v1.0",
    ]);
    cmd
}

#[test]
fn an_unwritable_output_path_is_refused_before_any_call() {
    let dir = TempDir::new("record-unwritable");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let output = record_without_a_service()
        .arg("--out")
        .arg(file.join("recordings"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot create the output directory") && stderr.contains("a-file"),
        "{stderr}"
    );
}

#[test]
fn a_missing_device_is_refused_before_any_call() {
    let output = record_without_a_service()
        .args(["--out", &std::env::temp_dir().display().to_string()])
        .args(["--mic", "no-such-microphone"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--mic") && stderr.contains("no-such-microphone"),
        "{stderr}"
    );
}
