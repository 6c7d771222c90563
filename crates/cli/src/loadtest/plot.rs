//! `loadtest --plot FILE.svg`: the measured run second by second — call tick time (p99 and
//! max), late ticks, and the process's CPU — drawn with plotters as one SVG.

use std::path::Path;
use std::time::Duration;

use appmedia_media::scheduler::SchedulerStats;
use plotters::prelude::*;

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
        let mut all = appmedia_media::latency::HistogramSnapshot::default();
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

/// Why a plot was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Only SVG is written.
    #[error("--plot {0}: only .svg is written (convert it with rsvg-convert or a browser)")]
    NotSvg(String),
    /// No second was measured.
    #[error("--plot: the run has no whole second to draw")]
    Empty,
    /// Drawing or writing failed.
    #[error("--plot {path}: {reason}")]
    Draw {
        /// The file.
        path: String,
        /// What plotters said.
        reason: String,
    },
}

/// Checks `path` before a run, so a bad name fails at once.
pub fn check_path(path: &Path) -> Result<(), PlotError> {
    let svg = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    if svg {
        Ok(())
    } else {
        Err(PlotError::NotSvg(path.display().to_string()))
    }
}

/// Draws `samples` into `path` (SVG) under `title`. Written to a temporary file beside it
/// and renamed: a failed draw leaves no half-written plot.
pub fn draw(path: &Path, title: &str, samples: &[Sample]) -> Result<(), PlotError> {
    check_path(path)?;
    if samples.is_empty() {
        return Err(PlotError::Empty);
    }
    let draw_err = |e: String| PlotError::Draw {
        path: path.display().to_string(),
        reason: e,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 720)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(|e| draw_err(e.to_string()))?;
        let panels = root.split_evenly((3, 1));
        let end = samples.last().map_or(1.0, |s| s.at_s).max(1.0);
        let series: [(&str, f64, Vec<(&str, RGBColor, Vec<(f64, f64)>)>); 3] = [
            (
                "call tick, µs",
                samples.iter().map(|s| s.tick_max_us).fold(1.0, f64::max),
                vec![
                    ("p99", BLUE, points(samples, |s| s.tick_p99_us)),
                    ("max", RED, points(samples, |s| s.tick_max_us)),
                ],
            ),
            (
                "late ticks per second",
                samples
                    .iter()
                    .map(|s| s.late_ticks as f64)
                    .fold(1.0, f64::max),
                vec![("late", RED, points(samples, |s| s.late_ticks as f64))],
            ),
            (
                "CPU, % of one core",
                samples.iter().map(|s| s.cpu_pct).fold(1.0, f64::max),
                vec![("process", GREEN, points(samples, |s| s.cpu_pct))],
            ),
        ];
        for (panel, (label, top, lines)) in panels.iter().zip(series) {
            let mut chart = ChartBuilder::on(panel)
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..end, 0.0..top * 1.1)
                .map_err(|e| draw_err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(label)
                .draw()
                .map_err(|e| draw_err(e.to_string()))?;
            for (name, color, data) in lines {
                chart
                    .draw_series(LineSeries::new(data, color.stroke_width(2)))
                    .map_err(|e| draw_err(e.to_string()))?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| draw_err(e.to_string()))?;
        }
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    let partial = path.with_extension("svg.partial");
    std::fs::write(&partial, svg)
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&partial);
            draw_err(e.to_string())
        })
}

fn points(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Vec<(f64, f64)> {
    samples.iter().map(|s| (s.at_s, f(s))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Sample> {
        (1..=5u32)
            .map(|i| Sample {
                at_s: f64::from(i),
                tick_p99_us: 600.0,
                tick_max_us: 900.0 + f64::from(i),
                late_ticks: u64::from(i % 2),
                cpu_pct: 130.0,
            })
            .collect()
    }

    #[test]
    fn a_run_is_drawn_as_svg_with_its_three_panels() {
        let path = std::env::temp_dir().join(format!("appmedia-plot-{}.svg", std::process::id()));
        draw(&path, "loadtest: 5 calls", &samples()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "loadtest: 5 calls",
            "call tick, µs",
            "late ticks per second",
            "CPU, % of one core",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(svg.matches("<polyline").count() >= 4, "four lines");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn only_svg_and_only_a_run_with_seconds() {
        assert!(matches!(
            check_path(Path::new("run.png")),
            Err(PlotError::NotSvg(_))
        ));
        assert!(check_path(Path::new("run.SVG")).is_ok());
        assert!(matches!(
            draw(Path::new("/tmp/x.svg"), "t", &[]),
            Err(PlotError::Empty)
        ));
        // An unwritable place: a clear error, nothing left behind.
        let err = draw(Path::new("/proc/appmedia/x.svg"), "t", &samples()).unwrap_err();
        assert!(matches!(err, PlotError::Draw { .. }), "{err}");
    }
}
