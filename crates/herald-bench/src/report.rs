//! Scenario results: a table for people and one JSON line for `bench/compare`, which
//! `summarize` turns into medians and ratios (Herald/Nchan there, one node/three in `bench/cluster`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::Summary;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// "higher", "lower" or "" when neither is better.
    pub better: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, target: &str) -> Self {
        Report { scenario: scenario.into(), target: target.into(), metrics: Vec::new(), notes: Vec::new() }
    }

    pub fn add(&mut self, name: &str, value: f64, unit: &str, better: &str) -> &mut Self {
        self.metrics.push(Metric { name: name.into(), value, unit: unit.into(), better: better.into() });
        self
    }

    pub fn note(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    pub fn latency(&mut self, s: &Summary) -> &mut Self {
        self.add("latency_p50", s.p50_ms, "ms", "lower")
            .add("latency_p90", s.p90_ms, "ms", "lower")
            .add("latency_p99", s.p99_ms, "ms", "lower")
            .add("latency_p999", s.p999_ms, "ms", "lower")
            .add("latency_max", s.max_ms, "ms", "lower")
    }

    /// The table, then the JSON line last.
    pub fn print(&self) {
        println!("{} against {}", self.scenario, self.target);
        for m in &self.metrics {
            println!("  {:<28} {:>16} {}", m.name, fmt_value(m.value), m.unit);
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
        println!("{}", serde_json::to_string(self).expect("reports serialize"));
    }
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

pub fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// Markdown table of medians per scenario and metric, one column per target (as named in the
/// reports' `target`), and the ratio of the first target's median to the second's.
pub fn summarize(text: &str, targets: &[&str]) -> String {
    type Key = (String, String);
    let mut order: Vec<Key> = Vec::new();
    let mut units: BTreeMap<Key, (String, String)> = BTreeMap::new();
    let mut values: BTreeMap<(Key, String), Vec<f64>> = BTreeMap::new();
    let mut notes: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with('{')) {
        let Ok(r) = serde_json::from_str::<Report>(line) else {
            continue;
        };
        for m in &r.metrics {
            let key = (r.scenario.clone(), m.name.clone());
            if !units.contains_key(&key) {
                order.push(key.clone());
                units.insert(key.clone(), (m.unit.clone(), m.better.clone()));
            }
            values.entry((key, r.target.clone())).or_default().push(m.value);
        }
        let seen = notes.entry((r.scenario.clone(), r.target.clone())).or_default();
        for n in r.notes {
            if !seen.contains(&n) {
                seen.push(n);
            }
        }
    }
    let labels: Vec<String> = targets.iter().map(|t| capitalized(t)).collect();
    let ratio_head = match &labels[..] {
        [a, b, ..] => format!(" {a}/{b} |"),
        _ => String::new(),
    };
    let mut out = format!("| scenario | metric | unit | better | {} |{ratio_head}\n", labels.join(" | "));
    out.push_str(&format!("|---|---|---|---|{}\n", "---:|".repeat(labels.len() + usize::from(labels.len() > 1))));
    for key in &order {
        let (unit, better) = &units[key];
        let get = |t: &str| {
            let mut v = values.get(&(key.clone(), t.to_string())).cloned().unwrap_or_default();
            median(&mut v).map(|m| (m, v.len()))
        };
        let medians: Vec<_> = targets.iter().map(|t| get(t)).collect();
        let cells: Vec<String> = medians
            .iter()
            .map(|x| match x {
                Some((m, runs)) => format!("{} ({runs}×)", fmt_value(*m)),
                None => "—".into(),
            })
            .collect();
        let ratio = match &medians[..] {
            [Some((a, _)), Some((b, _)), ..] if *b != 0.0 => format!(" {:.2} |", a / b),
            [_, _, ..] => " — |".into(),
            _ => String::new(),
        };
        out.push_str(&format!("| {} | {} | {unit} | {better} | {} |{ratio}\n", key.0, key.1, cells.join(" | ")));
    }
    for ((scenario, target), ns) in notes {
        for n in ns {
            out.push_str(&format!("\n- {scenario} / {target}: {n}"));
        }
    }
    out.push('\n');
    out
}

/// One curve from reports named `<curve>@<x>`: a row per x (ascending), a column per metric,
/// each cell the median over runs. Markdown, or with `plain` space-separated for gnuplot.
pub fn curve(text: &str, curve: &str, metrics: &[&str], plain: bool) -> String {
    let mut cells: BTreeMap<(u64, usize), Vec<f64>> = BTreeMap::new();
    let mut units = vec![String::new(); metrics.len()];
    let prefix = format!("{curve}@");
    for r in text.lines().filter_map(|l| serde_json::from_str::<Report>(l).ok()) {
        let Some(x) = r.scenario.strip_prefix(&prefix).and_then(|x| x.parse::<u64>().ok()) else {
            continue;
        };
        for m in r.metrics {
            if let Some(i) = metrics.iter().position(|n| *n == m.name) {
                cells.entry((x, i)).or_default().push(m.value);
                units[i] = m.unit;
            }
        }
    }
    let xs: std::collections::BTreeSet<u64> = cells.keys().map(|k| k.0).collect();
    let mut out = String::new();
    if !plain {
        let heads: Vec<String> = metrics
            .iter()
            .zip(&units)
            .map(|(m, u)| if u.is_empty() { m.to_string() } else { format!("{m} ({u})") })
            .collect();
        out.push_str(&format!("| {curve} | {} |\n|---:|{}\n", heads.join(" | "), "---:|".repeat(metrics.len())));
    }
    for x in xs {
        let row: Vec<String> = (0..metrics.len())
            .map(|i| {
                let mut v = cells.get(&(x, i)).cloned().unwrap_or_default();
                match (median(&mut v), plain) {
                    (Some(m), true) => format!("{m}"),
                    (Some(m), false) => fmt_value(m),
                    (None, true) => "NaN".into(),
                    (None, false) => "—".into(),
                }
            })
            .collect();
        if plain {
            out.push_str(&format!("{x} {}\n", row.join(" ")));
        } else {
            out.push_str(&format!("| {x} | {} |\n", row.join(" | ")));
        }
    }
    out
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn summary_table_has_ratio_of_medians() {
        let mut lines = String::from("noise\n");
        for (t, v) in [("herald", 10.0), ("herald", 30.0), ("herald", 20.0), ("nchan", 10.0)] {
            let mut r = Report::new("burst", t);
            r.add("deliveries_per_s", v, "1/s", "higher");
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        }
        let mut r = Report::new("durable", "nchan");
        r.note("not supported by Nchan");
        lines.push_str(&serde_json::to_string(&r).unwrap());
        let table = summarize(&lines, &["herald", "nchan"]);
        assert!(table.contains("| burst | deliveries_per_s | 1/s | higher | 20 (3×) | 10 (1×) | 2.00 |"), "{table}");
        assert!(table.contains("durable / nchan: not supported by Nchan"), "{table}");
        assert!(table.starts_with(
            "| scenario | metric | unit | better | Herald | Nchan | Herald/Nchan |\n|---|---|---|---|---:|---:|---:|\n"
        ));
    }

    #[test]
    fn curve_rows_by_x_with_medians() {
        let mut lines = String::new();
        for (name, v) in [("idle@5000", 3.0), ("idle@1000", 2.0), ("idle@5000", 5.0), ("burst@1", 9.0)] {
            let mut r = Report::new(name, "herald");
            r.add("rss_per_connection", v, "KiB", "lower");
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        }
        let table = curve(&lines, "idle", &["rss_per_connection", "absent"], false);
        assert_eq!(
            table,
            "| idle | rss_per_connection (KiB) | absent |\n|---:|---:|---:|\n| 1000 | 2 | — |\n| 5000 | 4 | — |\n"
        );
        assert_eq!(curve(&lines, "idle", &["rss_per_connection"], true), "1000 2\n5000 4\n");
    }

    #[test]
    fn summary_of_named_targets() {
        let mut lines = String::new();
        for (t, v) in [("cluster-1", 30.0), ("cluster-3", 20.0), ("memory", 40.0)] {
            let mut r = Report::new("burst", t);
            r.add("deliveries_per_s", v, "1/s", "higher");
            lines.push_str(&serde_json::to_string(&r).unwrap());
            lines.push('\n');
        }
        let table = summarize(&lines, &["cluster-1", "cluster-3", "memory"]);
        assert!(table.starts_with("| scenario | metric | unit | better | Cluster-1 | Cluster-3 | Memory | Cluster-1/Cluster-3 |\n|---|---|---|---|---:|---:|---:|---:|\n"), "{table}");
        assert!(
            table.contains("| burst | deliveries_per_s | 1/s | higher | 30 (1×) | 20 (1×) | 40 (1×) | 1.50 |"),
            "{table}"
        );
    }
}
