//! `check`: the regression guard of `bench/smoke`. Compares the metrics named in a baseline file
//! (`bench/baseline.json`) with report lines from one run, within a generous factor, because a
//! shared machine is noisy: what it should catch is a change that halves throughput.
//!
//! ```json
//! {"tolerance": 2.0, "metrics": {"burst.deliveries_per_s": 1500000, "burst.lost": 0}}
//! ```
//! A `higher` metric passes at or above baseline / tolerance, a `lower` one at or below
//! baseline × tolerance (so a baseline of 0, as for `lost`, allows exactly 0).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::report::Report;

#[derive(Debug, Serialize, Deserialize)]
pub struct Baseline {
    pub tolerance: f64,
    /// `scenario.metric` to its value on the reference machine.
    pub metrics: BTreeMap<String, f64>,
}

/// The verdict of each baseline metric, one line each, and whether all passed.
pub fn check(baseline: &Baseline, reports: &str) -> (String, bool) {
    let found = metrics(reports);
    let mut out = String::new();
    let mut all = true;
    for (key, &base) in &baseline.metrics {
        let line = match found.get(key) {
            None => {
                all = false;
                format!("MISSING {key}: not in this run's reports\n")
            }
            Some((value, better)) => {
                let t = baseline.tolerance;
                let ok = match better.as_str() {
                    "higher" => *value >= base / t,
                    "lower" => *value <= base * t,
                    _ => true,
                };
                all &= ok;
                let verdict = if ok { "ok  " } else { "FAIL" };
                format!("{verdict} {key}: {value:.3} ({better} is better; baseline {base}, tolerance {t}×)\n")
            }
        };
        out.push_str(&line);
    }
    (out, all)
}

/// The baseline's metrics with this run's values: how `bench/smoke --update` refreshes it.
pub fn updated(baseline: &Baseline, reports: &str) -> Baseline {
    let found = metrics(reports);
    let metrics = baseline.metrics.iter().map(|(k, &v)| (k.clone(), found.get(k).map_or(v, |f| f.0))).collect();
    Baseline { tolerance: baseline.tolerance, metrics }
}

/// `scenario.metric` to (value, better) from report JSON lines; a later report wins.
fn metrics(reports: &str) -> BTreeMap<String, (f64, String)> {
    let mut found = BTreeMap::new();
    for r in reports.lines().filter_map(|l| serde_json::from_str::<Report>(l).ok()) {
        for m in r.metrics {
            found.insert(format!("{}.{}", r.scenario, m.name), (m.value, m.better));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(throughput: f64, lost: f64) -> String {
        let mut r = Report::new("burst", "herald");
        r.add("deliveries_per_s", throughput, "1/s", "higher").add("lost", lost, "", "lower");
        serde_json::to_string(&r).unwrap()
    }

    #[test]
    fn passes_within_the_tolerance_and_fails_outside_it() {
        let metrics = [("burst.deliveries_per_s".to_string(), 1000.0), ("burst.lost".to_string(), 0.0)];
        let b = Baseline { tolerance: 2.0, metrics: metrics.into_iter().collect() };
        assert!(check(&b, &run(600.0, 0.0)).1);
        let (text, ok) = check(&b, &run(400.0, 0.0));
        assert!(!ok && text.contains("FAIL burst.deliveries_per_s"), "{text}");
        assert!(!check(&b, &run(1000.0, 1.0)).1, "any loss fails against a baseline of 0");
        let (text, ok) = check(&b, "");
        assert!(!ok && text.contains("MISSING burst.lost"), "{text}");
        assert_eq!(updated(&b, &run(1234.0, 0.0)).metrics["burst.deliveries_per_s"], 1234.0);
    }
}
