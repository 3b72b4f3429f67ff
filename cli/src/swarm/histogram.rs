//! A latency histogram with bounded memory and ≤ 6 % relative error: buckets grow
//! geometrically (16 per doubling) from 1 µs, so a load test of any length keeps a few hundred
//! counters, and percentiles are read from them.

use serde_json::{Value, json};

/// Buckets per doubling of the latency.
const PER_OCTAVE: f64 = 16.0;
/// Buckets in all: 1 µs up to 2^40 µs (12 days) and above.
const BUCKETS: usize = 40 * PER_OCTAVE as usize + 1;

/// Counts of latencies, in microseconds.
#[derive(Debug, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

fn bucket(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    (((us as f64).log2() * PER_OCTAVE).ceil() as usize).min(BUCKETS - 1)
}

/// The largest latency bucket `i` holds.
fn upper_us(i: usize) -> u64 {
    (2f64).powf(i as f64 / PER_OCTAVE).floor() as u64
}

impl Histogram {
    /// Counts one latency.
    pub(crate) fn record(&mut self, us: u64) {
        self.counts[bucket(us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// The latency below which `p` (0–1) of them fall: the upper bound of its bucket, never
    /// above the largest seen. `None` when empty.
    pub(crate) fn percentile(&self, p: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_us(i).min(self.max_us));
            }
        }
        Some(self.max_us)
    }

    /// Percentiles and the non-empty buckets as `[upper bound µs, count]`, in ms where named so.
    pub(crate) fn to_json(&self) -> Value {
        let ms = |p: f64| self.percentile(p).map(|us| us as f64 / 1000.0);
        let buckets: Vec<Value> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| json!([upper_us(i), c]))
            .collect();
        json!({
            "count": self.total,
            "p50_ms": ms(0.50),
            "p90_ms": ms(0.90),
            "p99_ms": ms(0.99),
            "max_ms": (self.total > 0).then(|| self.max_us as f64 / 1000.0),
            "buckets_us": buckets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_fall_within_the_bucket_error() {
        let mut h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record(us);
        }
        for (p, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.99, 9_900.0)] {
            let got = h.percentile(p).unwrap() as f64;
            assert!(
                (got - exact).abs() / exact <= 0.05,
                "p{p}: {got} against {exact}"
            );
        }
        assert_eq!(h.percentile(1.0), Some(10_000));
    }

    #[test]
    fn empty_has_no_percentiles_and_the_largest_is_exact() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(0.5), None);
        assert_eq!(h.to_json()["max_ms"], Value::Null);
        h.record(100);
        h.record(3_000_000);
        assert_eq!(h.percentile(1.0), Some(3_000_000));
        assert!(h.percentile(0.5).unwrap() <= 105);
        assert_eq!(h.to_json()["count"], 2);
    }
}
