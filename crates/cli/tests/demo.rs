//! `appmedia demo --json` end to end, with an objective check of the audio: what the bot
//! recorded matches the file John spoke, and what the emulator recorded of the bot matches
//! the prompt, by normalized cross-correlation at the best lag (median over excerpts).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(spec.channels, 1, "{}", path.display());
    let samples = reader
        .into_samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32768.0)
        .collect();
    (spec.sample_rate, samples)
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += f64::from(x) * f64::from(y);
        aa += f64::from(x) * f64::from(x);
        bb += f64::from(y) * f64::from(y);
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// Envelope: mean |x| over blocks of 16 samples (16 kHz → 1 kHz).
fn envelope(x: &[f32]) -> Vec<f32> {
    x.chunks(16)
        .map(|c| c.iter().map(|s| s.abs()).sum::<f32>() / c.len() as f32)
        .collect()
}

/// Pearson correlation (means removed): envelopes are all positive, so the plain
/// normalized correlation would be high at every lag.
fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let mean = |x: &[f32]| x[..n].iter().map(|&v| f64::from(v)).sum::<f64>() / n.max(1) as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a[..n].iter().zip(&b[..n]) {
        let (x, y) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt().max(1e-12)
}

/// The best normalized correlation of `excerpt` (from the source) inside `recording`:
/// a coarse search on envelopes, then a fine one on samples around the best lag.
fn best_match(excerpt: &[f32], recording: &[f32]) -> (usize, f64) {
    let (ee, er) = (envelope(excerpt), envelope(recording));
    let coarse = (0..er.len().saturating_sub(ee.len()))
        .map(|lag| (lag, pearson(&ee, &er[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(lag, _)| lag * 16);
    let from = coarse.saturating_sub(320);
    let to = (coarse + 320).min(recording.len().saturating_sub(excerpt.len()));
    (from..=to)
        .map(|lag| (lag, correlation(excerpt, &recording[lag..])))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0))
}

/// The median, over four half-second excerpts of `source` (from 0.5 s in), of each excerpt's
/// best match in `recording`. An adaptive jitter buffer re-times playout between talk spurts
/// (it stretches or shortens silences), so one long excerpt at one lag under-reads a faithful
/// recording; each excerpt finds its own lag, and the median ignores one excerpt that straddles
/// such a re-timing.
fn median_match(source: &[f32], recording: &[f32]) -> (f64, Vec<(usize, f64)>) {
    let mut matches: Vec<(usize, f64)> = (1..=4)
        .map(|k| best_match(&source[k * 8_000..(k + 1) * 8_000], recording))
        .collect();
    let mut rs: Vec<f64> = matches.iter().map(|m| m.1).collect();
    rs.sort_by(f64::total_cmp);
    matches.sort_by_key(|m| m.0);
    ((rs[1] + rs[2]) / 2.0, matches)
}

#[test]
fn demo_records_both_directions_faithfully() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let samples = root.join("media-samples");
    let recordings = std::env::temp_dir().join(format!("appmedia-demo-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_appmedia"))
        .args(["demo", "--json", "--seconds", "5"])
        .arg("--recordings")
        .arg(&recordings)
        .arg("--media-samples")
        .arg(&samples)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{summary:#}");
    assert_eq!(summary["ok"], true);
    let states: Vec<&str> = summary["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["state"].as_str())
        .collect();
    assert!(
        states.contains(&"established") && states.ends_with(&["terminated"]),
        "{states:?}"
    );
    assert_eq!(
        summary["roster"],
        serde_json::json!(["Calling Bot", "John"])
    );

    // The bot heard John: 1 s of his file, from 0.5 s in, is in the bot's mixed recording.
    let bot_heard = summary["recordings"]["bot_heard"][0]["path"]
        .as_str()
        .unwrap();
    let (rate, heard) = read_wav(Path::new(bot_heard));
    let (john_rate, john) = read_wav(&samples.join("john-speech.wav"));
    assert_eq!((rate, john_rate), (16_000, 16_000));
    let (r, matches) = median_match(&john, &heard);
    assert!(
        r > 0.7,
        "bot's recording vs John's file: median r = {r:.2} ({matches:?})"
    );
    eprintln!("John in the bot's recording: median r = {r:.3} ({matches:?})");

    // The emulator heard the bot's prompt.
    let recorded = summary["recordings"]["emulator_recorded_bot"]["path"]
        .as_str()
        .unwrap();
    let (rate, recorded) = read_wav(Path::new(recorded));
    let (prompt_rate, prompt) = read_wav(&samples.join("prompt.wav"));
    assert_eq!((rate, prompt_rate), (16_000, 16_000));
    let (r, matches) = median_match(&prompt, &recorded);
    assert!(
        r > 0.7,
        "emulator's recording vs the prompt: median r = {r:.2} ({matches:?})"
    );
    eprintln!("prompt in the emulator's recording: median r = {r:.3} ({matches:?})");

    // And the measure tells files apart: John is not what the emulator recorded.
    let (r, matches) = median_match(&john, &recorded);
    assert!(
        r < 0.5,
        "John's file matches the bot's audio too well: median r = {r:.2} ({matches:?})"
    );
    let _ = std::fs::remove_dir_all(&recordings);
}
