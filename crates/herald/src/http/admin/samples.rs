//! Once a second, what the overview charts draw: connections and the counters that rates are
//! made of, kept for the last few minutes in a ring that every dashboard shares.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::watch;

use super::session::Scope;
use crate::hub::{AppGauges, Hub};
use crate::message::now_ms;

/// How often a sample is taken.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// Samples kept: five minutes.
const KEPT: usize = 300;

/// The node's counters that rates are made of.
///
/// The one place that reads the hub's metrics, so that a new metrics registry is wired in here.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) publishes: u64,
    pub(crate) deliveries: u64,
    pub(crate) slow_client_drops: u64,
}

pub(crate) fn read_counters(hub: &Hub) -> Counters {
    hub.metrics_snapshot().iter().fold(Counters::default(), |sum, app| Counters {
        publishes: sum.publishes + app.publishes_ok,
        deliveries: sum.deliveries + app.deliveries,
        slow_client_drops: sum.slow_client_drops + app.slow_client_drops,
    })
}

/// One moment of the node.
#[derive(Debug, Clone)]
struct Sample {
    at_ms: u64,
    /// Per app, in the order of `Samples::apps`.
    apps: Vec<AppGauges>,
    counters: Counters,
}

/// One point of the charts, as a scope may see it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub(crate) struct Point {
    /// Milliseconds since the Unix epoch.
    pub(crate) t: u64,
    pub(crate) connections: usize,
    pub(crate) publishes_per_sec: f64,
    /// Counted per node, not per app: only the admin scope sees it.
    pub(crate) deliveries_per_sec: Option<f64>,
}

/// The ring of samples, and a signal that a new one arrived.
pub(crate) struct Samples {
    apps: Vec<String>,
    ring: Mutex<VecDeque<Sample>>,
    taken: watch::Sender<u64>,
}

impl Samples {
    pub(crate) fn new(apps: Vec<String>) -> Self {
        Self { apps, ring: Mutex::new(VecDeque::with_capacity(KEPT)), taken: watch::Sender::new(0) }
    }

    /// Samples `hub` every [`INTERVAL`] until it shuts down.
    pub(crate) async fn run(self: Arc<Self>, hub: Hub) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => self.take(&hub),
                () = hub.shutting_down() => return,
            }
        }
    }

    fn take(&self, hub: &Hub) {
        let apps = self.apps.iter().map(|app| hub.app_gauges(app).unwrap_or_default()).collect();
        let sample = Sample { at_ms: now_ms(), apps, counters: read_counters(hub) };
        {
            let mut ring = self.ring.lock();
            if ring.len() == KEPT {
                ring.pop_front();
            }
            ring.push_back(sample);
        }
        self.taken.send_modify(|n| *n += 1);
    }

    /// Resolves when the next sample is taken.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.taken.subscribe()
    }

    /// Every kept point of `app` (every app when `None`) as `scope` sees it, oldest first.
    pub(crate) fn points(&self, scope: &Scope, app: Option<&str>) -> Vec<Point> {
        let ring = self.ring.lock();
        ring.iter().zip(ring.iter().skip(1)).map(|(a, b)| self.point(scope, app, a, b)).collect()
    }

    /// The newest point, if two samples exist.
    pub(crate) fn last(&self, scope: &Scope, app: Option<&str>) -> Option<Point> {
        let ring = self.ring.lock();
        let n = ring.len();
        (n >= 2).then(|| self.point(scope, app, &ring[n - 2], &ring[n - 1]))
    }

    /// The average over the last `secs` seconds, for the nodes table.
    pub(crate) fn recent(&self, scope: &Scope, app: Option<&str>, secs: usize) -> Option<Point> {
        let ring = self.ring.lock();
        let n = ring.len();
        (n >= 2).then(|| self.point(scope, app, &ring[n.saturating_sub(secs + 1)], &ring[n - 1]))
    }

    fn point(&self, scope: &Scope, app: Option<&str>, a: &Sample, b: &Sample) -> Point {
        let secs = (b.at_ms.saturating_sub(a.at_ms) as f64 / 1000.0).max(0.001);
        let rate = |from: u64, to: u64| round(to.saturating_sub(from) as f64 / secs);
        let chosen: Vec<usize> = (0..self.apps.len()).filter(|&i| app.is_none_or(|x| self.apps[i] == x)).collect();
        let connections = chosen.iter().map(|&i| b.apps[i].connections).sum();
        match scope {
            Scope::Admin if app.is_none() => Point {
                t: b.at_ms,
                connections,
                publishes_per_sec: rate(a.counters.publishes, b.counters.publishes),
                deliveries_per_sec: Some(rate(a.counters.deliveries, b.counters.deliveries)),
            },
            _ => Point {
                t: b.at_ms,
                connections,
                publishes_per_sec: chosen.iter().map(|&i| rate(a.apps[i].head, b.apps[i].head)).sum(),
                deliveries_per_sec: None,
            },
        }
    }
}

fn round(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, apps: [(usize, u64); 2], publishes: u64, deliveries: u64) -> Sample {
        let apps = apps.map(|(connections, head)| AppGauges { connections, head }).to_vec();
        Sample { at_ms, apps, counters: Counters { publishes, deliveries, slow_client_drops: 0 } }
    }

    #[test]
    fn an_app_scope_sees_its_own_gauges_and_no_node_counters() {
        let samples = Samples::new(vec!["a".into(), "b".into()]);
        samples
            .ring
            .lock()
            .extend([sample(0, [(1, 10), (5, 0)], 100, 1000), sample(2000, [(2, 14), (7, 8)], 112, 1100)]);
        let all = samples.last(&Scope::Admin, None).unwrap();
        assert_eq!((all.connections, all.publishes_per_sec, all.deliveries_per_sec), (9, 6.0, Some(50.0)));
        let a = samples.last(&Scope::App("a".into()), Some("a")).unwrap();
        assert_eq!((a.connections, a.publishes_per_sec, a.deliveries_per_sec), (2, 2.0, None));
        let b = samples.last(&Scope::Admin, Some("b")).unwrap();
        assert_eq!((b.connections, b.publishes_per_sec, b.deliveries_per_sec), (7, 4.0, None));
        assert_eq!(samples.points(&Scope::Admin, None).len(), 1);
    }
}
