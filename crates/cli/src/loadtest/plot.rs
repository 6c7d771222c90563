//! `loadtest --plot FILE.svg`: the measured run second by second — call tick time (p99 and
//! max), late ticks, and the process's CPU.

use std::path::Path;
use std::time::Duration;

use appmedia_media::latency::HistogramSnapshot;
use appmedia_media::scheduler::SchedulerStats;
use plotters::style::{BLUE, GREEN, RED};

use crate::plot::{Line, Panel, PlotError};

/// One second of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Seconds since the measurement started (end of this second).
    pub at_s: f64,
    /// Call tick time in this second, microseconds.
    pub tick_p99_us: f64,
    /// The longest call tick in this second, microseconds.
    pub tick_max_us: f64,
    /// Late call ticks in this second.
    pub late_ticks: u64,
    /// The process's CPU in this second, percent of one core.
    pub cpu_pct: f64,
}

/// Turns consecutive scheduler stats (and process CPU times) into one [`Sample`].
pub fn sample(
    at: Duration,
    before: &SchedulerStats,
    after: &SchedulerStats,
    cpu: (Option<Duration>, Option<Duration>),
    wall: Duration,
) -> Sample {
    let merged = |s: &SchedulerStats| {
        let mut all = HistogramSnapshot::default();
        for w in &s.workers {
            all.merge(&w.tick_time);
        }
        all
    };
    let ticks = merged(after).since(&merged(before));
    let cpu_pct = match cpu {
        (Some(a), Some(b)) if !wall.is_zero() => {
            b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64() * 100.0
        }
        _ => 0.0,
    };
    Sample {
        at_s: at.as_secs_f64(),
        tick_p99_us: ticks.quantile(0.99).as_secs_f64() * 1e6,
        tick_max_us: ticks.max().as_secs_f64() * 1e6,
        late_ticks: after.late_ticks().saturating_sub(before.late_ticks()),
        cpu_pct,
    }
}

/// Draws a run's samples into `path`.
pub fn draw(path: &Path, title: &str, samples: &[Sample]) -> Result<(), PlotError> {
    let points = |f: fn(&Sample) -> f64| samples.iter().map(|s| (s.at_s, f(s))).collect();
    let panels = [
        Panel {
            y_label: "call tick, µs",
            lines: vec![
                Line {
                    name: "p99",
                    color: BLUE,
                    points: points(|s| s.tick_p99_us),
                },
                Line {
                    name: "max",
                    color: RED,
                    points: points(|s| s.tick_max_us),
                },
            ],
        },
        Panel {
            y_label: "late ticks per second",
            lines: vec![Line {
                name: "late",
                color: RED,
                points: points(|s| s.late_ticks as f64),
            }],
        },
        Panel {
            y_label: "CPU, % of one core",
            lines: vec![Line {
                name: "process",
                color: GREEN,
                points: points(|s| s.cpu_pct),
            }],
        },
    ];
    crate::plot::draw(path, title, &panels)
}
