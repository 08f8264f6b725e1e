//! What a running application reports about its receivers, as data (feature `report`).
//!
//! Receivers' statistics live in the process that runs them. The dashboard
//! (`herald-axum`, `GET {dashboard}/api/receivers`) serializes a [`ReceiversReport`] of its
//! registry; `receivers --from URL` in `herald-cli` reads the same type back. One type on
//! both sides, so that a field renamed on one side is a compile error on the other, not a column
//! of blanks.
//!
//! The JSON is documented field by field in `herald-axum`'s `docs/dashboard-api.md`; fields are
//! only ever added (with `#[serde(default)]` on the reading side), so that a newer CLI reads an
//! older application and the other way round.

use std::time::Duration;

use herald_dispatch::{Signals, StatsSnapshot, Timing};
use serde::{Deserialize, Serialize};

/// Every receiver of a registry, with its statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReceiversReport {
    /// The registry's slow threshold, in µs.
    pub slow_threshold_us: f64,
    /// `"on"` or `"off"`: with timing off, calls and latencies are not recorded.
    pub timing: String,
    /// Upper bounds of the latency histograms' buckets, in µs; each receiver's `histogram` has
    /// one more count, for the calls above the last bound.
    #[serde(default)]
    pub bounds_us: Vec<f64>,
    /// The receivers, in the registry's order.
    pub receivers: Vec<ReceiverReport>,
}

/// One receiver and its statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ReceiverReport {
    /// Its id in the registry.
    pub id: u64,
    /// Its full name (a `#[receiver]` fn's path, or the name given at connect).
    pub name: String,
    /// The last segment of its name.
    pub short_name: String,
    /// The signal (`"pre_save"`, `"post_save"`, ..., or a custom signal's name).
    pub signal: String,
    /// The sender (a model's name, or `"*"` for every sender).
    pub sender: String,
    /// Where it runs: `"caller"`, `"in_transaction"`, `"on_commit"` or `"background"`.
    pub phase: String,
    /// Its source location, `file:line:column`.
    pub location: String,
    /// When it is called, if not on every write (`"on create"`, `"when price_cents changed"`).
    #[serde(default)]
    pub condition: Option<String>,
    /// Its priority (higher runs first).
    pub priority: i32,
    /// Whether it is an async receiver.
    pub is_async: bool,
    /// Timed calls (none while timing is off).
    pub calls: u64,
    /// Calls that returned an error or panicked.
    pub errors: u64,
    /// Calls that panicked (also counted in `errors`).
    pub panics: u64,
    /// Mean duration of the timed calls, in µs.
    pub mean_us: f64,
    /// Median, in µs (at most 12.5 % above the true value).
    pub p50_us: f64,
    /// 99th percentile, in µs (at most 12.5 % above the true value).
    pub p99_us: f64,
    /// The longest timed call, in µs.
    pub max_us: f64,
    /// Its 99th percentile is at or above the slow threshold.
    pub slow: bool,
    /// Calls per bucket (not cumulative): below `bounds_us[0]`, between consecutive bounds, and
    /// above the last.
    #[serde(default)]
    pub histogram: Vec<u64>,
}

impl ReceiversReport {
    /// The report of `signals` now, with latency histograms over `bounds` (increasing upper
    /// bounds of the buckets; empty for no histogram).
    pub fn of(signals: &Signals, bounds: &[Duration]) -> Self {
        let threshold = signals.slow_threshold();
        let receivers = signals
            .receivers()
            .into_iter()
            .map(|receiver| {
                let info = receiver.info();
                let stats = receiver.stats();
                ReceiverReport {
                    id: info.id().get(),
                    name: info.name().to_owned(),
                    short_name: info.short_name(),
                    signal: info.signal().to_owned(),
                    sender: info.sender().to_owned(),
                    phase: info.phase().as_str().to_owned(),
                    location: info.location().to_string(),
                    condition: info.condition().map(ToString::to_string),
                    priority: info.priority(),
                    is_async: info.is_async(),
                    calls: stats.calls,
                    errors: stats.errors,
                    panics: stats.panics,
                    mean_us: micros(stats.mean()),
                    p50_us: micros(stats.p50()),
                    p99_us: micros(stats.p99()),
                    max_us: micros(stats.max),
                    slow: stats.calls > 0 && stats.p99() >= threshold,
                    histogram: histogram(&stats, bounds),
                }
            })
            .collect();
        Self {
            slow_threshold_us: micros(threshold),
            timing: match signals.timing() {
                Timing::On => "on",
                Timing::Off => "off",
            }
            .to_owned(),
            bounds_us: bounds.iter().map(|b| micros(*b)).collect(),
            receivers,
        }
    }
}

/// A duration in µs, with the nanoseconds kept as a fraction.
pub fn micros(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e3
}

/// Calls per bucket between `bounds`, plus below the first and above the last (none at all when
/// there are no bounds).
fn histogram(stats: &StatsSnapshot, bounds: &[Duration]) -> Vec<u64> {
    if bounds.is_empty() {
        return Vec::new();
    }
    let mut counts = Vec::with_capacity(bounds.len() + 1);
    let mut previous = 0;
    for bound in bounds {
        let below = stats.count_below(*bound);
        counts.push(below.saturating_sub(previous));
        previous = below;
    }
    counts.push(stats.calls.saturating_sub(previous));
    counts
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

    use super::*;

    #[test]
    fn a_report_reads_back_as_it_was_written() {
        let signals = Signals::new();
        signals
            .post_save_any()
            .receiver(|_e: &herald_dispatch::PostSaveAny<'_>| Ok(()))
            .name("shop::audit")
            .connect()
            .keep();
        let report = ReceiversReport::of(
            &signals,
            &[Duration::from_micros(1), Duration::from_millis(1)],
        );
        assert_eq!(report.receivers.len(), 1);
        assert_eq!(report.receivers[0].short_name, "audit");
        assert_eq!(report.receivers[0].histogram, [0, 0, 0]);
        let json = serde_json::to_string(&report).unwrap();
        let back: ReceiversReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, report);
    }
}
