//! `appmedia demo --json` end to end, with an objective check of the audio: what the bot
//! recorded matches the file John spoke, and what the emulator recorded of the bot matches
//! the prompt, by normalized cross-correlation at the best lag (median over excerpts); and
//! John's mouth-to-ear latency is measured.

mod common;

use std::path::Path;

use common::{appmedia, median_match, read_wav, samples, states, summary};

#[test]
fn demo_records_both_directions_faithfully() {
    let samples = samples();
    let recordings = std::env::temp_dir().join(format!("appmedia-demo-{}", std::process::id()));
    let output = appmedia()
        .args(["demo", "--json", "--seconds", "5"])
        .arg("--recordings")
        .arg(&recordings)
        .arg("--media-samples")
        .arg(&samples)
        .output()
        .unwrap();
    let summary = summary(&output);
    assert!(output.status.success(), "{summary:#}");
    assert_eq!(summary["ok"], true);
    let states = states(&summary);
    assert!(
        states.iter().any(|s| s == "established")
            && states.last().is_some_and(|s| s == "terminated"),
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

    // Mouth-to-ear was measured (one clock: the emulator's mouth, the bot's ear) and is
    // plausible for loopback: at least a frame of packetization, well under a second.
    let m2e = summary["media"]["mouth_to_ear_latency_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("not measured: {}", summary["media"]["mouth_to_ear"]));
    assert!((20.0..1000.0).contains(&m2e), "mouth-to-ear {m2e} ms");
    assert!(
        summary["media"]["mouth_to_ear"]["correlation"]
            .as_f64()
            .unwrap()
            > 0.5
    );
    eprintln!("mouth-to-ear: {m2e} ms");
    let _ = std::fs::remove_dir_all(&recordings);
}

/// `cargo install --path crates/cli`, then `appmedia demo` in an empty folder: the binary is
/// copied out of the build tree and run from a folder with no media-samples/, so the default
/// audio comes from the binary itself (written once to the cache directory).
#[test]
fn an_installed_binary_runs_the_demo_from_an_empty_folder() {
    let tmp = common::TempDir::new("installed");
    let bin = tmp.path().join("bin");
    let work = tmp.path().join("work");
    let cache = tmp.path().join("cache");
    for dir in [&bin, &work] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let installed = bin.join("appmedia");
    std::fs::copy(env!("CARGO_BIN_EXE_appmedia"), &installed).unwrap();
    let output = std::process::Command::new(&installed)
        .args(["demo", "--json", "--seconds", "3"])
        .current_dir(&work)
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    let summary = summary(&output);
    assert!(output.status.success(), "{summary:#}");
    assert_eq!(summary["ok"], true, "{summary:#}");
    // The prompt and John's voice were the built-in ones, from the cache directory.
    let prompt = summary["sources"]["bot prompt"].as_str().unwrap();
    assert!(prompt.starts_with(cache.to_str().unwrap()), "{prompt}");
    let (_, cached) = read_wav(Path::new(prompt));
    let (_, original) = read_wav(&samples().join("prompt.wav"));
    assert_eq!(cached, original);
    // The recordings went where the user is.
    assert!(work.join("recordings").read_dir().unwrap().next().is_some());
}

/// `--plot FILE.svg` draws the call as the bot's media saw it; a bitmap name is refused
/// before any call is made.
#[test]
fn demo_plots_the_call_and_refuses_a_plot_it_cannot_write() {
    let tmp = common::TempDir::new("plot");
    let svg = tmp.path().join("call.svg");
    let output = appmedia()
        .args(["demo", "--json", "--seconds", "3", "--plot"])
        .arg(&svg)
        .arg("--recordings")
        .arg(tmp.path())
        .output()
        .unwrap();
    let report = summary(&output);
    assert!(output.status.success(), "{report:#}");
    assert_eq!(report["plot"], svg.display().to_string());
    let drawn = std::fs::read_to_string(&svg).unwrap();
    for text in [
        "level, dBov",
        "sent",
        "heard",
        "jitter buffer, ms",
        "concealed",
    ] {
        assert!(drawn.contains(text), "missing {text}");
    }
    // About 3 s of ticks: the level lines have ~150 points each.
    assert!(drawn.matches("<polyline").count() >= 5);

    let png = tmp.path().join("call.png");
    let output = appmedia()
        .args(["demo", "--json", "--seconds", "3", "--plot"])
        .arg(&png)
        .output()
        .unwrap();
    let refused = summary(&output);
    assert!(!output.status.success());
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or("")
            .contains("only .svg"),
        "{refused:#}"
    );
    assert!(
        refused.get("call_id").is_none(),
        "no call was made: {refused:#}"
    );
}
