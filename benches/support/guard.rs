//! The bench guard: per-frame cost of each stage as a ratio to Opus decode +
//! encode, compared with `benches/baseline.json`.
//!
//! Ratios, not absolute times, so the baseline means the same on any x86-64
//! or aarch64 machine: a faster CPU speeds up the codec and the stage alike.
//! The stages run interleaved, in short batches, round after round, and each
//! round's ratio uses that round's own decode + encode time; the guard takes
//! the median ratio over the rounds. A host whose load drifts (a shared CI
//! machine, other builds) slows every stage of a round alike, so the ratios
//! hold where sequential criterion runs minutes apart would not.
//!
//! A stage regresses when its ratio exceeds `baseline × (1 + tolerance) +
//! slack`; the slack (a share of the codec cost) keeps stages that cost next
//! to nothing (RTP parse, a 2-source mix) from failing on timer noise.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Stage;

/// Rounds of interleaved batches.
const ROUNDS: usize = 40;
/// Wall time each stage's batch aims at.
const BATCH_TARGET: Duration = Duration::from_millis(3);
const DEFAULT_TOLERANCE: f64 = 0.25;
const DEFAULT_SLACK: f64 = 0.02;
/// Target (a) of docs/benchmarks.md: a whole 2-party frame within 10 % of the codec.
const TWO_PARTY_TARGET: f64 = 1.10;

/// Frames per batch so one batch takes about [`BATCH_TARGET`].
fn calibrate(stage: &mut Stage) -> u64 {
    // Warm up, then grow the batch until it is long enough to time.
    (stage.run)(2);
    let mut frames = 1u64;
    loop {
        let t = (stage.run)(frames);
        if t >= BATCH_TARGET / 4 || frames >= 1 << 20 {
            let per_frame = t.as_secs_f64() / frames as f64;
            return ((BATCH_TARGET.as_secs_f64() / per_frame.max(1e-9)) as u64).clamp(1, 1 << 20);
        }
        frames *= 4;
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Runs the guard over `stages` (the first two are decode and encode);
/// returns the process exit code.
pub fn run(mode: &str, stages: &mut [Stage], baseline_path: &Path) -> i32 {
    let (check, update) = match mode {
        "report" => (false, false),
        "check" => (true, false),
        "update" => (false, true),
        other => {
            eprintln!("bench-guard: unknown mode {other:?} (report, check or update)");
            return 2;
        }
    };
    if stages.len() < 2 || stages[0].name != "opus_decode" || stages[1].name != "opus_encode" {
        eprintln!("bench-guard: the first two stages must be opus_decode and opus_encode");
        return 2;
    }
    let batches: Vec<u64> = stages.iter_mut().map(calibrate).collect();
    // per_frame[stage][round], nanoseconds.
    let mut per_frame = vec![Vec::with_capacity(ROUNDS); stages.len()];
    for _ in 0..ROUNDS {
        for ((stage, &frames), times) in stages.iter_mut().zip(&batches).zip(&mut per_frame) {
            let t = (stage.run)(frames);
            times.push(t.as_nanos() as f64 / frames as f64);
        }
    }
    let reference: Vec<f64> = (0..ROUNDS)
        .map(|r| per_frame[0][r] + per_frame[1][r])
        .collect();
    let reference_ns = median(reference.clone());

    let baseline: Value = std::fs::read_to_string(baseline_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let tolerance = baseline["tolerance"].as_f64().unwrap_or(DEFAULT_TOLERANCE);
    let slack = baseline["slack"].as_f64().unwrap_or(DEFAULT_SLACK);

    println!(
        "bench-guard ({mode}): {ROUNDS} interleaved rounds; reference = opus_decode + opus_encode \
         = {:.1} us/frame (median); fail when ratio > baseline x {:.2} + {slack}",
        reference_ns / 1000.0,
        1.0 + tolerance
    );
    println!(
        "{:<26} {:>10} {:>8} {:>9} {:>8}  status",
        "stage", "us/frame", "ratio", "baseline", "allowed"
    );
    let mut failed = false;
    let mut ratios = serde_json::Map::new();
    let mut two_party = None;
    for (stage, times) in stages.iter().zip(&per_frame) {
        let ratio = median(times.iter().zip(&reference).map(|(t, r)| t / r).collect());
        let time_us = median(times.clone()) / 1000.0;
        ratios.insert(stage.name.to_string(), json!((ratio * 1e4).round() / 1e4));
        if stage.name == "call_2party_frame" {
            two_party = Some(ratio);
        }
        let (base_s, allowed_s, status) = match baseline["ratios"][stage.name].as_f64() {
            Some(b) => {
                let allowed = b * (1.0 + tolerance) + slack;
                let ok = ratio <= allowed;
                failed |= !ok;
                (
                    format!("{b:.4}"),
                    format!("{allowed:.4}"),
                    if ok { "ok" } else { "REGRESSED" },
                )
            }
            None => ("-".into(), "-".into(), "new"),
        };
        println!(
            "{:<26} {time_us:>10.2} {ratio:>8.4} {base_s:>9} {allowed_s:>8}  {status}",
            stage.name
        );
    }
    if let Some(obj) = baseline["ratios"].as_object() {
        for name in obj.keys().filter(|k| !ratios.contains_key(k.as_str())) {
            println!(
                "{name:<26} {:>10} {:>8} {:>9} {:>8}  MISSING",
                "-", "-", "-", "-"
            );
            failed = true;
        }
    }
    if let Some(r) = two_party {
        println!(
            "target (a): whole 2-party frame = {r:.3} x (decode+encode); target <= {TWO_PARTY_TARGET}: {}",
            if r <= TWO_PARTY_TARGET {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    if update {
        let doc = json!({
            "about": "Per-frame bench time of each stage divided by (opus_decode + opus_encode) \
                      in the same run; written by scripts/bench-guard --update.",
            "tolerance": tolerance,
            "slack": slack,
            "ratios": Value::Object(ratios),
        });
        let text = match serde_json::to_string_pretty(&doc) {
            Ok(t) => t + "\n",
            Err(e) => {
                eprintln!("bench-guard: cannot serialise the baseline: {e}");
                return 1;
            }
        };
        // Write a sibling file, then rename: a crash never leaves half a baseline.
        let tmp = baseline_path.with_extension("json.tmp");
        if let Err(e) =
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, baseline_path))
        {
            eprintln!("bench-guard: cannot write {}: {e}", baseline_path.display());
            return 1;
        }
        println!(
            "bench-guard: baseline written to {}",
            baseline_path.display()
        );
        return 0;
    }
    if failed && check {
        println!("bench-guard: REGRESSION (check mode fails)");
        return 1;
    }
    if failed {
        println!("bench-guard: regression found (report mode: not failing)");
    }
    0
}
