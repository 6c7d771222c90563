//! Charts as SVG (plotters): stacked panels of lines over time, for `loadtest --plot` and
//! `demo --plot`. Text is SVG text, so no font stack is needed; a bitmap format would need
//! one, so only `.svg` is written.

use std::path::Path;

use plotters::prelude::*;

/// One line of a panel.
pub struct Line {
    /// Its legend.
    pub name: &'static str,
    /// Its colour.
    pub color: RGBColor,
    /// (x, y) points, x ascending.
    pub points: Vec<(f64, f64)>,
}

/// One panel: lines sharing a y axis.
pub struct Panel {
    /// The y axis' description.
    pub y_label: &'static str,
    /// The lines.
    pub lines: Vec<Line>,
}

/// Why a plot was not written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// Only SVG is written.
    #[error("--plot {0}: only .svg is written (convert it with rsvg-convert or a browser)")]
    NotSvg(String),
    /// Nothing to draw.
    #[error("--plot: nothing was measured to draw")]
    Empty,
    /// Drawing or writing failed.
    #[error("--plot {path}: {reason}")]
    Draw {
        /// The file.
        path: String,
        /// What went wrong.
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

/// Draws `panels` one above the other into `path` (SVG) under `title`, x in seconds. Written
/// to a temporary file beside it and renamed: a failed draw leaves no half-written plot.
pub fn draw(path: &Path, title: &str, panels: &[Panel]) -> Result<(), PlotError> {
    check_path(path)?;
    let all = || panels.iter().flat_map(|p| &p.lines).flat_map(|l| &l.points);
    if all().next().is_none() {
        return Err(PlotError::Empty);
    }
    let draw_err = |e: String| PlotError::Draw {
        path: path.display().to_string(),
        reason: e,
    };
    let (start, end) = all().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let end = if end > start { end } else { start + 1.0 };
    let mut svg = String::new();
    {
        let height = 240 * u32::try_from(panels.len()).unwrap_or(1).max(1);
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| draw_err(e.to_string()))?;
        let root = root
            .titled(title, ("sans-serif", 18))
            .map_err(|e| draw_err(e.to_string()))?;
        let areas = root.split_evenly((panels.len(), 1));
        for (area, panel) in areas.iter().zip(panels) {
            let points = || panel.lines.iter().flat_map(|l| &l.points).map(|p| p.1);
            let low = points().fold(0.0, f64::min);
            let high = points().fold(1.0, f64::max);
            let pad = (high - low) * 0.05;
            let mut chart = ChartBuilder::on(area)
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(60)
                .build_cartesian_2d(start..end, (low - pad)..(high + pad))
                .map_err(|e| draw_err(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("seconds")
                .y_desc(panel.y_label)
                .draw()
                .map_err(|e| draw_err(e.to_string()))?;
            for line in &panel.lines {
                let color = line.color;
                chart
                    .draw_series(LineSeries::new(
                        line.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| draw_err(e.to_string()))?
                    .label(line.name)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn panels() -> Vec<Panel> {
        let line = |name, color, k: f64| Line {
            name,
            color,
            points: (1..=5).map(|i| (f64::from(i), k * f64::from(i))).collect(),
        };
        vec![
            Panel {
                y_label: "call tick, µs",
                lines: vec![line("p99", BLUE, 100.0), line("max", RED, 200.0)],
            },
            Panel {
                y_label: "level, dBov",
                lines: vec![line("sent", GREEN, -10.0)],
            },
        ]
    }

    #[test]
    fn panels_are_drawn_as_svg_with_their_labels_and_lines() {
        let path = std::env::temp_dir().join(format!("appmedia-plot-{}.svg", std::process::id()));
        draw(&path, "a title", &panels()).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        for text in [
            "a title",
            "call tick, µs",
            "level, dBov",
            "p99",
            "max",
            "sent",
        ] {
            assert!(svg.contains(text), "missing {text}");
        }
        assert!(svg.matches("<polyline").count() >= 3, "three lines");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn only_svg_only_something_and_only_somewhere_writable() {
        assert!(matches!(
            check_path(Path::new("run.png")),
            Err(PlotError::NotSvg(_))
        ));
        assert!(check_path(Path::new("run.SVG")).is_ok());
        let empty = [Panel {
            y_label: "x",
            lines: vec![],
        }];
        assert!(matches!(
            draw(Path::new("/tmp/x.svg"), "t", &empty),
            Err(PlotError::Empty)
        ));
        // An unwritable place: a clear error, nothing left behind.
        let err = draw(Path::new("/proc/appmedia/x.svg"), "t", &panels()).unwrap_err();
        assert!(matches!(err, PlotError::Draw { .. }), "{err}");
    }
}
