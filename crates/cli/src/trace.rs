//! `demo --plot FILE.svg`: the call as the bot's media saw it, tick by tick — the level of
//! what it sent and of what it heard, the jitter buffer's delay, and packets lost and
//! concealed — drawn once the call is over.
//!
//! The [`CallTrace`] tap runs on the media worker: it writes into a queue made before the
//! call (sized for the call's length), so the tick neither allocates nor locks; a call longer
//! than that keeps its last part (the queue drops its oldest points).

use std::path::Path;

use appmedia_bot::MediaTap;
use appmedia_media::frame::level_dbov;
use appmedia_media::pipeline::CallPipeline;
use appmedia_media::queue::{self, Consumer, Producer};
use plotters::style::{BLUE, GREEN, MAGENTA, RED};

use crate::plot::{Line, Panel, PlotError};

/// What one tick looked like.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TracePoint {
    /// The call's frame number (20 ms each).
    pub tick: u64,
    /// Level of the frame the bot sent, dBov (-127: nothing sent).
    pub sent_dbov: f32,
    /// Level of the mix the bot heard, dBov.
    pub heard_dbov: f32,
    /// The first remote stream's jitter-buffer delay, milliseconds.
    pub jitter_delay_ms: f32,
    /// Its packets lost so far.
    pub lost: u64,
    /// Its frames concealed so far.
    pub concealed: u64,
}

/// The media-worker end: a [`MediaTap`] to add to the call's media options.
pub struct CallTrace {
    points: Producer<TracePoint>,
}

/// The other end, read after the call.
pub struct TraceReader {
    points: Consumer<TracePoint>,
}

/// A trace with room for `seconds` of ticks (plus a margin).
pub fn call_trace(seconds: u64) -> (CallTrace, TraceReader) {
    let capacity =
        usize::try_from(seconds.saturating_add(30).saturating_mul(50)).unwrap_or(usize::MAX);
    let (points, reader) = queue::bounded(capacity);
    (CallTrace { points }, TraceReader { points: reader })
}

impl MediaTap for CallTrace {
    fn on_tick(&mut self, tick: u64, pipeline: &CallPipeline) {
        let stream = pipeline.stream_stats().next();
        let point = TracePoint {
            tick,
            sent_dbov: pipeline.stats().sent_level_dbov,
            heard_dbov: level_dbov(pipeline.bot_frame_48k()),
            jitter_delay_ms: stream.map_or(0.0, |s| s.jitter.current_delay.as_secs_f32() * 1000.0),
            lost: stream.map_or(0, |s| s.jitter.lost),
            concealed: stream.map_or(0, |s| s.jitter.concealed),
        };
        // Full: the oldest point goes; the tick goes on either way.
        let _ = self.points.push(point);
    }
}

impl TraceReader {
    /// Every point recorded, in order.
    pub fn drain(&self) -> Vec<TracePoint> {
        std::iter::from_fn(|| self.points.pop()).collect()
    }
}

/// Draws a call's trace into `path`.
pub fn draw(path: &Path, title: &str, points: &[TracePoint]) -> Result<(), PlotError> {
    let series = |f: fn(&TracePoint) -> f64| -> Vec<(f64, f64)> {
        points
            .iter()
            .map(|p| (p.tick as f64 * 0.02, f(p)))
            .collect()
    };
    let panels = [
        Panel {
            y_label: "level, dBov",
            lines: vec![
                Line {
                    name: "sent",
                    color: BLUE,
                    points: series(|p| f64::from(p.sent_dbov.max(-90.0))),
                },
                Line {
                    name: "heard",
                    color: GREEN,
                    points: series(|p| f64::from(p.heard_dbov.max(-90.0))),
                },
            ],
        },
        Panel {
            y_label: "jitter buffer, ms",
            lines: vec![Line {
                name: "delay",
                color: MAGENTA,
                points: series(|p| f64::from(p.jitter_delay_ms)),
            }],
        },
        Panel {
            y_label: "packets",
            lines: vec![
                Line {
                    name: "lost",
                    color: RED,
                    points: series(|p| p.lost as f64),
                },
                Line {
                    name: "concealed",
                    color: MAGENTA,
                    points: series(|p| p.concealed as f64),
                },
            ],
        },
    ];
    crate::plot::draw(path, title, &panels)
}
