//! The bench guard: per-frame cost of each stage as a ratio to Opus decode +
//! encode in the same run, compared with `benches/baseline.json`.
//!
//! Ratios, not absolute times, so the baseline means the same on any x86-64
//! or aarch64 machine: a faster CPU speeds up the codec and the stage alike.
//! A stage regresses when its ratio exceeds `baseline × (1 + tolerance) +
//! slack`; the slack (a share of the codec cost) keeps stages that cost next
//! to nothing (RTP parse, a 2-source mix) from failing on timer noise.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

/// Every stage the guard knows, in report order. The reference is the sum
/// of the first two.
const STAGES: &[&str] = &[
    "opus_decode",
    "opus_encode",
    "rtp_parse",
    "jitter_push_pop",
    "mix/2",
    "mix/5",
    "mix/10",
    "mix/50",
    "call_2party_frame",
    "call_2party_frame_pcm16k",
    "conference_5party_frame",
];

const DEFAULT_TOLERANCE: f64 = 0.25;
const DEFAULT_SLACK: f64 = 0.02;
/// Target (a) of docs/benchmarks.md: a whole 2-party frame within 10 % of the codec.
const TWO_PARTY_TARGET: f64 = 1.10;

/// Median time of one bench in nanoseconds, from criterion's estimates file.
fn median_ns(dir: &Path, stage: &str) -> Option<f64> {
    let path = dir.join(stage).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// Runs the guard; returns the process exit code.
pub fn run(mode: &str, criterion_dir: &Path, baseline_path: &Path) -> i32 {
    let (check, update) = match mode {
        "report" => (false, false),
        "check" => (true, false),
        "update" => (false, true),
        other => {
            eprintln!("bench-guard: unknown mode {other:?} (report, check or update)");
            return 2;
        }
    };
    let times: BTreeMap<&str, f64> = STAGES
        .iter()
        .filter_map(|s| median_ns(criterion_dir, s).map(|t| (*s, t)))
        .collect();
    let (Some(dec), Some(enc)) = (times.get("opus_decode"), times.get("opus_encode")) else {
        eprintln!(
            "bench-guard: no opus_decode/opus_encode results under {}; run the benches first",
            criterion_dir.display()
        );
        return if check { 1 } else { 0 };
    };
    let reference = dec + enc;
    let baseline: Value = std::fs::read_to_string(baseline_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let tolerance = baseline["tolerance"].as_f64().unwrap_or(DEFAULT_TOLERANCE);
    let slack = baseline["slack"].as_f64().unwrap_or(DEFAULT_SLACK);

    println!(
        "bench-guard ({mode}): reference = opus_decode + opus_encode = {:.1} us/frame; \
         fail when ratio > baseline x {:.2} + {slack}",
        reference / 1000.0,
        1.0 + tolerance
    );
    println!(
        "{:<26} {:>10} {:>8} {:>9} {:>8}  status",
        "stage", "us/frame", "ratio", "baseline", "allowed"
    );
    let mut failed = false;
    let mut ratios = serde_json::Map::new();
    for stage in STAGES {
        let base = baseline["ratios"][*stage].as_f64();
        let Some(t) = times.get(stage) else {
            let status = if base.is_some() { "MISSING" } else { "-" };
            failed |= base.is_some();
            println!(
                "{stage:<26} {:>10} {:>8} {:>9} {:>8}  {status}",
                "-", "-", "-", "-"
            );
            continue;
        };
        let ratio = t / reference;
        ratios.insert((*stage).to_string(), json!((ratio * 1e4).round() / 1e4));
        let (base_s, allowed_s, status) = match base {
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
            "{stage:<26} {:>10.2} {ratio:>8.4} {base_s:>9} {allowed_s:>8}  {status}",
            t / 1000.0
        );
    }
    if let Some(t) = times.get("call_2party_frame") {
        let r = t / reference;
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
