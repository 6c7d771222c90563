//! A fixed-size latency histogram for the real-time tick: one thread records,
//! any thread reads.
//!
//! Buckets are exact below 64 ns, then 32 sub-buckets per power of two (HDR
//! style), so any reported percentile is within ~3 % of the true value, from
//! nanoseconds up to about a minute. Recording is a few integer operations and
//! two relaxed atomic stores: no allocation, no lock, no read-modify-write.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const EXACT: usize = 64;
const SUB_BITS: u32 = 5;
const SUB: usize = 1 << SUB_BITS;
/// Highest power of two tracked (2^36 ns ≈ 69 s); larger values share the last bucket.
const MAX_POW: u32 = 36;
const BUCKETS: usize = EXACT + (MAX_POW as usize - 6 + 1) * SUB;

fn bucket_of(ns: u64) -> usize {
    if ns < EXACT as u64 {
        return ns as usize;
    }
    let pow = 63 - ns.leading_zeros();
    if pow > MAX_POW {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (pow - SUB_BITS)) as usize) & (SUB - 1);
    EXACT + (pow as usize - 6) * SUB + sub
}

/// Largest value that falls in `bucket` (what percentiles report: never an underestimate).
fn bucket_upper(bucket: usize) -> u64 {
    if bucket >= BUCKETS - 1 {
        // Also holds everything past the range; the exact max bounds it.
        return u64::MAX;
    }
    if bucket < EXACT {
        return bucket as u64;
    }
    let pow = ((bucket - EXACT) / SUB) as u32 + 6;
    let sub = ((bucket - EXACT) % SUB) as u64;
    let width = 1u64 << (pow - SUB_BITS);
    (1u64 << pow) + (sub + 1) * width - 1
}

/// Single-writer, many-reader histogram of durations.
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    max_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram (allocates its ~8 KiB of buckets here, once).
    pub fn new() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max_ns: AtomicU64::new(0),
        }
    }

    /// Records one duration. Must be called from one thread at a time (the
    /// owning worker); it uses load + store, not atomic read-modify-write.
    pub fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let c = &self.counts[bucket_of(ns)];
        c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.store(ns, Ordering::Relaxed);
        }
    }

    /// Empties the histogram. Like [`LatencyHistogram::record`], only the
    /// owning thread may call it.
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.max_ns.store(0, Ordering::Relaxed);
    }

    /// A copy of the counts, for percentiles and merging (allocates; not for the tick).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            max_ns: self.max_ns.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().summary().fmt(f)
    }
}

/// A point-in-time copy of a [`LatencyHistogram`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    counts: Vec<u64>,
    max_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            max_ns: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Number of recorded durations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The exact largest duration recorded.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The `q`-quantile (`0.0..=1.0`), as the upper edge of its bucket and
    /// never above the exact maximum; zero when empty.
    pub fn quantile(&self, q: f64) -> Duration {
        let total = self.count();
        if total == 0 {
            return Duration::ZERO;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(bucket).min(self.max_ns));
            }
        }
        self.max()
    }

    /// Adds another snapshot's counts into this one (e.g. all workers).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram taken before this
    /// one), e.g. one second of a run. Its maximum is the upper edge of the highest bucket
    /// in the difference (bounded by this snapshot's exact maximum).
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let counts: Vec<u64> = (self.counts.iter().zip(&earlier.counts))
            .map(|(now, then)| now.saturating_sub(*then))
            .collect();
        let max_ns = counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0, |b| bucket_upper(b).min(self.max_ns));
        HistogramSnapshot { counts, max_ns }
    }

    /// p50, p99 and max.
    pub fn summary(&self) -> LatencySummary {
        LatencySummary {
            count: self.count(),
            p50: self.quantile(0.50),
            p99: self.quantile(0.99),
            max: self.max(),
        }
    }
}

/// The usual three numbers of a latency distribution.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// How many durations were recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_difference_of_snapshots_is_what_came_between() {
        let h = LatencyHistogram::new();
        for _ in 0..100 {
            h.record(Duration::from_micros(10));
        }
        let first = h.snapshot();
        for _ in 0..10 {
            h.record(Duration::from_millis(5));
        }
        let second = h.snapshot().since(&first);
        assert_eq!(second.count(), 10);
        let p50 = second.quantile(0.5);
        assert!(
            p50 >= Duration::from_millis(5) && p50 < Duration::from_micros(5200),
            "{p50:?}"
        );
        assert_eq!(second.max(), Duration::from_millis(5));
        assert_eq!(h.snapshot().since(&h.snapshot()).count(), 0);
    }

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut prev = 0;
        for ns in 0..200_000u64 {
            let b = bucket_of(ns);
            assert!(b >= prev, "bucket order broken at {ns}");
            prev = b;
        }
        for ns in (0..200_000u64).chain((1..40).map(|p| 1u64 << p)) {
            let b = bucket_of(ns);
            assert!(b < BUCKETS);
            assert!(bucket_upper(b) >= ns, "upper edge below value at {ns}");
            if ns >= 64 && b < BUCKETS - 1 {
                // Relative error of the reported edge is at most 1/32.
                assert!((bucket_upper(b) - ns) as f64 <= ns as f64 / 32.0 + 1.0);
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = LatencyHistogram::new();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot().summary();
        assert_eq!(s.count, 100);
        assert_eq!(s.max, Duration::from_micros(100));
        let p50 = s.p50.as_nanos() as f64;
        assert!((50_000.0..=50_000.0 * 1.04).contains(&p50), "{p50}");
        let p99 = s.p99.as_nanos() as f64;
        assert!((99_000.0..=100_000.0).contains(&p99), "{p99}");
    }

    #[test]
    fn empty_and_merged_snapshots() {
        let empty = HistogramSnapshot::default();
        assert_eq!(empty.quantile(0.5), Duration::ZERO);
        let a = LatencyHistogram::new();
        let b = LatencyHistogram::new();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(1000));
        let mut m = a.snapshot();
        m.merge(&b.snapshot());
        assert_eq!(m.count(), 2);
        assert_eq!(m.max(), Duration::from_micros(1000));
        assert!(m.quantile(0.5) <= Duration::from_nanos(10_400));
        assert_eq!(m.quantile(f64::NAN), Duration::from_micros(1000));
        a.reset();
        assert_eq!(a.snapshot(), HistogramSnapshot::default());
    }
}
