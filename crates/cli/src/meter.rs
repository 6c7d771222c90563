//! A live level meter for what the bot hears: the 20 ms tick publishes each frame's RMS
//! through atomics (no lock, no allocation, nothing written to the terminal from the tick), and
//! a display task reads and resets the levels at its own pace — redrawn in place on a terminal
//! at most ten times a second, or one plain line a second when the output is not a terminal.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use appmedia_bot::MediaTap;
use appmedia_media::pipeline::CallPipeline;

/// Speakers shown besides the mix (Graph hands a bot the top four).
pub const METER_SPEAKERS: usize = 4;

/// Levels shared between the tick (writer) and the display (reader).
///
/// Levels are RMS in 0..=1 stored as `f32` bits: for non-negative floats the bit patterns order
/// like the values, so `fetch_max` on the bits keeps the loudest frame since the last read.
#[derive(Debug, Default)]
pub struct LevelMeter {
    ticks: AtomicU64,
    mixed: AtomicU32,
    /// Source id of each slot (0: free) and its level.
    speakers: [(AtomicU32, AtomicU32); METER_SPEAKERS],
}

/// One reading: the loudest frame of each since the previous reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Levels {
    /// Ticks seen so far (50 a second).
    pub ticks: u64,
    /// RMS of the mix, 0..=1.
    pub mixed: f32,
    /// (source id, RMS) of the speakers seen, in order of first appearance.
    pub speakers: [(u32, f32); METER_SPEAKERS],
}

/// RMS of a frame.
pub fn rms(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    let sum: f32 = frame.iter().map(|s| s * s).sum();
    (sum / frame.len() as f32).sqrt()
}

/// A level (RMS, 0..=1) in dBFS, floored at −90 (digital silence).
pub fn dbfs(level: f32) -> f32 {
    if level <= 0.0 {
        -90.0
    } else {
        (20.0 * level.log10()).max(-90.0)
    }
}

impl LevelMeter {
    /// Called by the tick: the mix and the unmixed speakers of one frame. Lock-free; the
    /// speaker slots are written by this (single) caller only.
    pub fn observe<'a>(
        &self,
        ticks: u64,
        mixed: &[f32],
        speakers: impl Iterator<Item = (u32, &'a [f32])>,
    ) {
        self.mixed
            .fetch_max(rms(mixed).to_bits(), Ordering::Relaxed);
        for (source, pcm) in speakers {
            let slot = self
                .speakers
                .iter()
                .find(|(id, _)| id.load(Ordering::Relaxed) == source)
                .or_else(|| {
                    self.speakers
                        .iter()
                        .find(|(id, _)| id.load(Ordering::Relaxed) == 0)
                });
            if let Some((id, level)) = slot {
                id.store(source, Ordering::Relaxed);
                level.fetch_max(rms(pcm).to_bits(), Ordering::Relaxed);
            }
        }
        self.ticks.store(ticks, Ordering::Relaxed);
    }

    /// Called by the display: the loudest levels since the previous call, which are reset.
    pub fn take(&self) -> Levels {
        let mut speakers = [(0, 0.0); METER_SPEAKERS];
        for (out, (id, level)) in speakers.iter_mut().zip(&self.speakers) {
            *out = (
                id.load(Ordering::Relaxed),
                f32::from_bits(level.swap(0, Ordering::Relaxed)),
            );
        }
        Levels {
            ticks: self.ticks.load(Ordering::Relaxed),
            mixed: f32::from_bits(self.mixed.swap(0, Ordering::Relaxed)),
            speakers,
        }
    }
}

/// The meter as a tap on the call's media: each tick's mix and unmixed speakers.
pub struct MeterTap(pub Arc<LevelMeter>);

impl MediaTap for MeterTap {
    fn on_tick(&mut self, tick: u64, pipeline: &CallPipeline) {
        self.0.observe(
            tick + 1,
            pipeline.bot_frame_48k(),
            pipeline.unmixed().map(|u| (u.source_id, &u.pcm48[..])),
        );
    }
}

/// A bar of `width` cells for −60..0 dBFS.
pub fn bar(db: f32, width: usize) -> String {
    let filled = (((db + 60.0) / 60.0).clamp(0.0, 1.0) * width as f32).round() as usize;
    format!("{}{}", "#".repeat(filled), "-".repeat(width - filled))
}

fn elapsed(ticks: u64) -> String {
    let secs = ticks / 50;
    format!("{:02}:{:02}.{}", secs / 60, secs % 60, (ticks % 50) / 5)
}

/// One line for a reading: elapsed time, the mix with a bar (on a terminal), the speakers.
pub fn format_levels(levels: &Levels, with_bar: bool) -> String {
    let db = dbfs(levels.mixed);
    let mut line = format!("{}  mixed {db:6.1} dBFS", elapsed(levels.ticks));
    if with_bar {
        line = format!(
            "{}  mixed [{}] {db:6.1} dBFS",
            elapsed(levels.ticks),
            bar(db, 30)
        );
    }
    for (id, level) in levels.speakers.iter().filter(|(id, _)| *id != 0) {
        line.push_str(&format!("  speaker {id} {:6.1}", dbfs(*level)));
    }
    line
}

/// Shows the meter on stderr until the task is dropped: redrawn in place with `\r` every
/// 100 ms on a terminal, a plain line every second otherwise.
pub async fn display(meter: Arc<LevelMeter>, terminal: bool) {
    let period = if terminal {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(1)
    };
    let mut interval = tokio::time::interval(period);
    interval.tick().await;
    loop {
        interval.tick().await;
        let line = format_levels(&meter.take(), terminal);
        let mut err = std::io::stderr().lock();
        // The meter is a convenience: a closed stderr must not end the recording.
        let _ = if terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_keeps_the_loudest_frame_until_read() {
        let meter = LevelMeter::default();
        let loud = [0.5f32; 960];
        let quiet = [0.01f32; 960];
        meter.observe(1, &loud, [(7u32, &quiet[..])].into_iter());
        meter.observe(2, &quiet, [(7u32, &loud[..]), (9, &quiet[..])].into_iter());
        let l = meter.take();
        assert_eq!(l.ticks, 2);
        assert!((l.mixed - 0.5).abs() < 1e-6);
        assert_eq!(l.speakers[0].0, 7);
        assert!((l.speakers[0].1 - 0.5).abs() < 1e-6);
        assert_eq!(l.speakers[1].0, 9);
        let l = meter.take();
        assert_eq!(l.mixed, 0.0);
        assert_eq!(l.speakers[0], (7, 0.0));
    }

    #[test]
    fn levels_format_as_dbfs() {
        assert_eq!(dbfs(0.0), -90.0);
        assert!((dbfs(1.0)).abs() < 1e-6);
        assert!((dbfs(0.1) + 20.0).abs() < 1e-4);
        assert_eq!(bar(0.0, 10), "##########");
        assert_eq!(bar(-30.0, 10), "#####-----");
        assert_eq!(bar(-90.0, 10), "----------");
        let levels = Levels {
            ticks: 175,
            mixed: 0.1,
            speakers: [(2, 0.1), (0, 0.0), (0, 0.0), (0, 0.0)],
        };
        assert_eq!(
            format_levels(&levels, false),
            "00:03.5  mixed  -20.0 dBFS  speaker 2  -20.0"
        );
        assert!(format_levels(&levels, true).contains("[####################----------]"));
    }
}
