//! Per-receiver statistics, recorded as the receiver runs, with atomics only (no lock on the hot path).
//!
//! The latency histogram is log-linear: exact below 16 ns, then 8 buckets per power of two, so any
//! quantile it reports is at most 12.5 % above the true value. Values past ~550 s land in the last bucket.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

const LINEAR: usize = 16;
const SUB_BITS: u32 = 3;
const SUBS: usize = 1 << SUB_BITS;
const MAX_EXP: u32 = 39;
/// Number of histogram buckets.
pub(crate) const BUCKETS: usize = LINEAR + (MAX_EXP as usize - 3) * SUBS;

fn bucket_of(ns: u64) -> usize {
    if ns < LINEAR as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = ((ns >> (exp - SUB_BITS)) as usize) & (SUBS - 1);
    LINEAR + (exp as usize - 4) * SUBS + sub
}

/// The exclusive upper bound, in ns, of bucket `i`.
pub(crate) fn bucket_upper(i: usize) -> u64 {
    if i < LINEAR {
        return i as u64 + 1;
    }
    let exp = ((i - LINEAR) / SUBS) as u32 + 4;
    let sub = ((i - LINEAR) % SUBS) as u64;
    ((SUBS as u64 + sub) << (exp - SUB_BITS)) + (1 << (exp - SUB_BITS))
}

/// Live counters of one receiver. A timed call costs two locked adds (its bucket and the total) and,
/// only when it sets a new maximum, a compare-exchange; the call count is the histogram's total.
#[derive(Debug)]
pub(crate) struct Stats {
    errors: AtomicU64,
    panics: AtomicU64,
    total_ns: AtomicU64,
    max_ns: AtomicU64,
    buckets: Box<[AtomicU64]>,
}

impl Stats {
    pub(crate) fn new() -> Self {
        Self {
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            total_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    #[inline]
    pub(crate) fn record_time(&self, ns: u64) {
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.total_ns.fetch_add(ns, Relaxed);
        if ns > self.max_ns.load(Relaxed) {
            self.max_ns.fetch_max(ns, Relaxed);
        }
    }

    pub(crate) fn count_error(&self, panicked: bool) {
        self.errors.fetch_add(1, Relaxed);
        if panicked {
            self.panics.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        StatsSnapshot {
            calls: buckets.iter().sum(),
            errors: self.errors.load(Relaxed),
            panics: self.panics.load(Relaxed),
            total: Duration::from_nanos(self.total_ns.load(Relaxed)),
            max: Duration::from_nanos(self.max_ns.load(Relaxed)),
            buckets,
        }
    }
}

/// A receiver's statistics at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Calls made while timing was on, whether they succeeded or not (muted receivers are not
    /// called, so not counted). With [`Timing::Off`](crate::Timing::Off) calls are not recorded.
    pub calls: u64,
    /// Calls that returned an error or panicked (counted whether timing is on or off).
    pub errors: u64,
    /// Calls that panicked (also counted in `errors`).
    pub panics: u64,
    /// Total time of the recorded calls.
    pub total: Duration,
    /// The longest timed call.
    pub max: Duration,
    buckets: Vec<u64>,
}

impl StatsSnapshot {
    /// The `q` quantile (0.0..=1.0) of the recorded calls' durations, at most 12.5 % above the true
    /// value and never above [`max`](Self::max); zero when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.calls == 0 {
            return Duration::ZERO;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.calls as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos(bucket_upper(i) - 1).min(self.max);
            }
        }
        self.max
    }

    /// Median duration.
    pub fn p50(&self) -> Duration {
        self.quantile(0.50)
    }

    /// 99th percentile duration.
    pub fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// Mean duration of the recorded calls.
    pub fn mean(&self) -> Duration {
        match u32::try_from(self.calls) {
            Ok(0) => Duration::ZERO,
            Ok(n) => self.total / n,
            Err(_) => Duration::from_secs_f64(self.total.as_secs_f64() / self.calls as f64),
        }
    }

    /// The histogram's non-empty buckets, as (exclusive upper bound, count), in increasing order.
    pub fn buckets(&self) -> impl Iterator<Item = (Duration, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, &n)| (Duration::from_nanos(bucket_upper(i)), n))
    }

    /// How many recorded calls took less than `bound`: exact when `bound` is a bucket edge (every power
    /// of two nanoseconds is one), otherwise counted up to the nearest edge below it. This is what a
    /// Prometheus `le` bucket needs, to within one nanosecond.
    pub fn count_below(&self, bound: Duration) -> u64 {
        let bound = bound.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets
            .iter()
            .enumerate()
            .take_while(|(i, _)| bucket_upper(*i) <= bound)
            .map(|(_, &n)| n)
            .sum()
    }
}

/// A lock-free latency histogram (the one receivers use), for other things worth timing: tasks'
/// queue wait and run time, for instance.
#[derive(Debug)]
pub struct Latency(Stats);

impl Latency {
    /// An empty histogram.
    pub fn new() -> Self {
        Self(Stats::new())
    }

    /// Record one duration.
    pub fn record(&self, elapsed: Duration) {
        self.0
            .record_time(elapsed.as_nanos().min(u64::MAX as u128) as u64);
    }

    /// The histogram now (`calls` is the number of recorded durations).
    pub fn snapshot(&self) -> StatsSnapshot {
        self.0.snapshot()
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_increasing() {
        let mut prev_upper = 0;
        for i in 0..BUCKETS {
            let upper = bucket_upper(i);
            assert!(upper > prev_upper, "bucket {i}");
            assert_eq!(bucket_of(upper - 1), i, "last value of bucket {i}");
            assert_eq!(bucket_of(prev_upper), i, "first value of bucket {i}");
            prev_upper = upper;
        }
    }

    #[test]
    fn quantiles_are_within_an_eighth_above_the_truth() {
        let stats = Stats::new();
        for ns in 1..=10_000u64 {
            stats.record_time(ns * 1000);
        }
        let s = stats.snapshot();
        let p50 = s.p50().as_nanos() as f64;
        let p99 = s.p99().as_nanos() as f64;
        assert!(
            (5_000_000.0..=5_000_000.0 * 1.125).contains(&p50),
            "p50 {p50}"
        );
        assert!(
            (9_900_000.0..=9_900_000.0 * 1.125).contains(&p99),
            "p99 {p99}"
        );
        assert_eq!(s.max, Duration::from_millis(10));
        assert!(s.p99() <= s.max);
    }

    #[test]
    fn count_below_is_exact_at_powers_of_two() {
        let stats = Stats::new();
        for ns in [100, 1000, 1023, 1024, 5000] {
            stats.record_time(ns);
        }
        let s = stats.snapshot();
        assert_eq!(s.count_below(Duration::from_nanos(1024)), 3);
        assert_eq!(s.count_below(Duration::from_nanos(4096)), 4);
        assert_eq!(s.count_below(Duration::from_nanos(8192)), 5);
    }
}
