//! Delivery accounting shared by workers and the coordinator: latency histograms (sent between
//! processes as value/count pairs, which needs no serialization feature of `hdrhistogram`),
//! counters, and the set of message numbers each stream has seen.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, up to one minute.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

pub fn summarize(h: &Histogram<u64>) -> Summary {
    let ms = |us: u64| us as f64 / 1000.0;
    Summary {
        count: h.len(),
        p50_ms: ms(h.value_at_quantile(0.5)),
        p90_ms: ms(h.value_at_quantile(0.9)),
        p99_ms: ms(h.value_at_quantile(0.99)),
        p999_ms: ms(h.value_at_quantile(0.999)),
        max_ms: ms(h.max()),
    }
}

/// What a set of subscribers received; additive across workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Events carrying a bench message, duplicates included.
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Unix nanos of the first and last bench message received (0 when none).
    pub first_ns: u64,
    pub last_ns: u64,
    /// Streams that ended or failed without being asked to.
    pub broken: u64,
    /// What the first duplicate was, to tell the hub's bugs from the bench's.
    pub first_duplicate: Option<String>,
    /// Latency histogram as (value µs, count) pairs.
    pub latency: Vec<(u64, u64)>,
}

impl Tally {
    pub fn merge(&mut self, other: &Tally) {
        self.received += other.received;
        self.unique += other.unique;
        self.duplicates += other.duplicates;
        self.broken += other.broken;
        if other.first_ns != 0 && (self.first_ns == 0 || other.first_ns < self.first_ns) {
            self.first_ns = other.first_ns;
        }
        self.last_ns = self.last_ns.max(other.last_ns);
        if self.first_duplicate.is_none() {
            self.first_duplicate.clone_from(&other.first_duplicate);
        }
        self.latency.extend_from_slice(&other.latency);
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for &(v, c) in &self.latency {
            h.saturating_record_n(v, c);
        }
        h
    }
}

pub fn histogram_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

/// Message numbers seen on one stream. Numbers run per stream (per channel or per user) from 0,
/// so a bitset is exact whatever the order of arrival and costs one bit per message.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    bits: Vec<u64>,
}

/// Numbers beyond this are not ours: they count as duplicates instead of growing the set.
const MAX_N: u64 = 1 << 24;

impl Seen {
    /// True when `n` is seen for the first time.
    pub fn first_time(&mut self, n: u64) -> bool {
        if n >= MAX_N {
            return false;
        }
        let (word, bit) = ((n / 64) as usize, 1u64 << (n % 64));
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let new = self.bits[word] & bit == 0;
        self.bits[word] |= bit;
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut h = new_histogram();
        for us in 1..=1000 {
            h.record(us * 1000).unwrap(); // 1 ms .. 1000 ms
        }
        let s = summarize(&h);
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p90_ms - 900.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.0, "{s:?}");
        assert!((s.p999_ms - 999.0).abs() < 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.0, "{s:?}");
    }

    #[test]
    fn histogram_survives_the_trip_between_processes() {
        let mut h = new_histogram();
        h.record_n(120, 7).unwrap();
        h.record(90_000).unwrap();
        let a = Tally { latency: histogram_pairs(&h), ..Tally::default() };
        let mut sum = Tally::default();
        sum.merge(&a);
        sum.merge(&a);
        let back = sum.histogram();
        assert_eq!(back.len(), 16);
        assert_eq!(summarize(&back).p50_ms, summarize(&h).p50_ms);
        assert!((summarize(&back).max_ms - 90.0).abs() < 0.1);
    }

    #[test]
    fn merge_keeps_earliest_first_and_latest_last() {
        let mut t = Tally { first_ns: 0, last_ns: 0, ..Tally::default() };
        t.merge(&Tally { first_ns: 50, last_ns: 60, unique: 2, ..Tally::default() });
        t.merge(&Tally { first_ns: 40, last_ns: 55, unique: 3, ..Tally::default() });
        assert_eq!((t.first_ns, t.last_ns, t.unique), (40, 60, 5));
    }

    #[test]
    fn seen_set() {
        let mut w = Seen::default();
        assert!(w.first_time(0));
        assert!(w.first_time(200));
        assert!(w.first_time(1)); // late, not a duplicate
        assert!(!w.first_time(1));
        assert!(!w.first_time(200));
        assert!(!w.first_time(MAX_N));
    }
}
