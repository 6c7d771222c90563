//! What the far end reports about the audio we send, and the encoder's response to it.
//!
//! RTCP receiver reports (RFC 3550 §6.4) carry, for each stream the peer receives, the
//! fraction of packets lost since its previous report. The transport stores the latest one
//! in a [`LossReports`] cell (lock-free: the network side writes, the media tick reads) and
//! the pipeline's [`AdaptiveFec`] turns the reports into Opus's in-band FEC settings, as
//! libwebrtc does: on a clean path no FEC at all — every bit goes to the audio itself (at
//! 32 kb/s, FEC for an assumed 10 % loss costs ~0.25 PESQ-WB on speech) — and when loss is
//! reported, FEC with the expected loss rounded up to a few steps, so the encoder spends as
//! much redundancy as the loss calls for. Loss pushes the setting up at the next report; it
//! comes down only after the path has been clean for a while, so a burst does not toggle it.

use std::sync::atomic::{AtomicU64, Ordering};

/// The latest receiver report about our stream: lock-free, written by the network side,
/// read by the media tick.
#[derive(Debug, Default)]
pub struct LossReports(AtomicU64);

impl LossReports {
    /// A new empty cell.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes one report block: `fraction_lost` is RFC 3550's 8-bit fraction (lost / 256).
    pub fn report(&self, fraction_lost: u8) {
        // Bits 8.. count reports, the low byte is the latest fraction: one atomic word, so a
        // reader never pairs a count with another report's fraction.
        let _ = self
            .0
            .fetch_update(Ordering::Release, Ordering::Acquire, |v| {
                Some(((v >> 8).wrapping_add(1) << 8) | u64::from(fraction_lost))
            });
    }

    /// How many reports arrived so far, and the latest fraction lost (0 before any).
    pub fn latest(&self) -> (u64, u8) {
        let v = self.0.load(Ordering::Acquire);
        (v >> 8, (v & 0xff) as u8)
    }
}

/// The expected-loss steps the encoder is told (percent). Few steps: each change costs the
/// encoder nothing, but a setting that follows every report would make the audio quality
/// flicker.
pub const EXPECTED_LOSS_STEPS: [u8; 6] = [0, 1, 5, 10, 20, 30];

/// Loss (percent, smoothed) a step is left for the one below only under this share of it.
const STEP_DOWN_RATIO: f32 = 0.6;

/// Turns receiver reports into the encoder's expected loss (0: no FEC).
#[derive(Debug, Clone, Default)]
pub struct AdaptiveFec {
    /// Smoothed loss, percent.
    smoothed: f32,
    /// The step in force.
    expected: u8,
}

impl AdaptiveFec {
    /// Starts clean: no FEC until loss is reported.
    pub fn new() -> Self {
        Self::default()
    }

    /// The expected loss in force, percent (0: FEC off).
    pub fn expected_loss_pct(&self) -> u8 {
        self.expected
    }

    /// The smoothed reported loss, percent.
    pub fn smoothed_loss_pct(&self) -> f32 {
        self.smoothed
    }

    /// Takes one report (RFC 3550 fraction lost, /256) and returns the expected loss to use.
    /// Loss is followed quickly (half-way at each report) and a clean path slowly (a fifth
    /// of the way), so FEC comes on at the first lossy report and goes off after about ten
    /// clean ones (reports come every second or so).
    pub fn on_report(&mut self, fraction_lost: u8) -> u8 {
        let loss = f32::from(fraction_lost) * 100.0 / 256.0;
        let gain = if loss > self.smoothed { 0.5 } else { 0.2 };
        self.smoothed += gain * (loss - self.smoothed);
        let up = EXPECTED_LOSS_STEPS
            .iter()
            .copied()
            .rfind(|&s| f32::from(s) <= self.smoothed)
            .unwrap_or(0);
        if up > self.expected {
            self.expected = up;
        } else if self.smoothed < STEP_DOWN_RATIO * f32::from(self.expected) {
            // Down to the highest step the smoothed loss still clears by the same margin.
            self.expected = EXPECTED_LOSS_STEPS
                .iter()
                .copied()
                .rfind(|&s| STEP_DOWN_RATIO * f32::from(s) <= self.smoothed)
                .unwrap_or(0);
        }
        self.expected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 3550's fraction for `pct` percent.
    fn fraction(pct: f32) -> u8 {
        (pct * 256.0 / 100.0).round() as u8
    }

    #[test]
    fn a_clean_path_has_no_fec() {
        let mut fec = AdaptiveFec::new();
        for _ in 0..30 {
            assert_eq!(fec.on_report(0), 0);
        }
    }

    #[test]
    fn loss_turns_fec_on_at_once_and_a_clean_period_turns_it_off() {
        let mut fec = AdaptiveFec::new();
        // 10 % loss: FEC at the first report, at the matching step by the third.
        assert!(fec.on_report(fraction(10.0)) >= 1);
        fec.on_report(fraction(10.0));
        assert_eq!(fec.on_report(fraction(10.0)), 5);
        for _ in 0..6 {
            fec.on_report(fraction(10.0));
        }
        assert_eq!(
            fec.expected_loss_pct(),
            10,
            "{} % smoothed",
            fec.smoothed_loss_pct()
        );
        // A single clean report does not turn it off.
        assert!(fec.on_report(0) > 0);
        // About ten clean reports do.
        let clean = (1..=30).find(|_| fec.on_report(0) == 0).expect("off");
        assert!(
            (5..=20).contains(&clean),
            "off after {clean} more clean reports"
        );
        // And it comes back with the next loss.
        assert!(fec.on_report(fraction(5.0)) > 0);
    }

    #[test]
    fn heavy_loss_reaches_the_top_step_and_steps_down_as_it_eases() {
        let mut fec = AdaptiveFec::new();
        for _ in 0..10 {
            fec.on_report(fraction(40.0));
        }
        assert_eq!(fec.expected_loss_pct(), 30);
        let mut seen = vec![30];
        for _ in 0..40 {
            let e = fec.on_report(fraction(2.0));
            if seen.last() != Some(&e) {
                seen.push(e);
            }
        }
        assert!(seen.windows(2).all(|w| w[1] < w[0]), "{seen:?}");
        assert_eq!(
            seen.last(),
            Some(&1),
            "2 % loss keeps the 1 % step: {seen:?}"
        );
    }

    #[test]
    fn the_cell_pairs_each_count_with_its_fraction() {
        let cell = LossReports::new();
        assert_eq!(cell.latest(), (0, 0));
        cell.report(25);
        cell.report(3);
        assert_eq!(cell.latest(), (2, 3));
    }
}
