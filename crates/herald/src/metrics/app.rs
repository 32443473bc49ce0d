//! One app's metric handles, resolved once when the hub starts: bumping one is an atomic add,
//! with no label lookup or allocation on the hot path.

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntGauge};
use serde::Serialize;

use super::Metrics;
use crate::message::Targets;

/// What a publish addressed, as the `target` label of `herald_publishes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Only `users`.
    Users,
    /// Only `sessions`.
    Sessions,
    /// Only `tenants`.
    Tenants,
    /// Only `channels`.
    Channels,
    /// `all`.
    All,
    /// More than one kind, or none.
    Mixed,
}

impl Target {
    const ALL: [Self; 6] = [Self::Users, Self::Sessions, Self::Tenants, Self::Channels, Self::All, Self::Mixed];

    fn label(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::Sessions => "sessions",
            Self::Tenants => "tenants",
            Self::Channels => "channels",
            Self::All => "all",
            Self::Mixed => "mixed",
        }
    }

    /// The kind of `to`.
    pub fn of(to: &Targets) -> Self {
        let kinds = [
            (!to.users.is_empty(), Self::Users),
            (!to.sessions.is_empty(), Self::Sessions),
            (!to.tenants.is_empty(), Self::Tenants),
            (!to.channels.is_empty(), Self::Channels),
            (to.all, Self::All),
        ];
        let mut set = kinds.iter().filter(|(on, _)| *on).map(|(_, kind)| *kind);
        match (set.next(), set.next()) {
            (Some(kind), None) => kind,
            _ => Self::Mixed,
        }
    }
}

/// How a publish ended, as the `outcome` label of `herald_publishes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Sequenced and delivered (and committed, when durable).
    Ok,
    /// Refused before anything happened (a 4xx).
    Invalid,
    /// Accepted but not carried out: the store or Redis failed.
    Failed,
}

impl Outcome {
    const ALL: [Self; 3] = [Self::Ok, Self::Invalid, Self::Failed];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Invalid => "invalid",
            Self::Failed => "failed",
        }
    }
}

/// Why something was dropped instead of delivered, as the `reason` label of `herald_drops_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// A connection whose queue overflowed was closed, with what it had queued.
    SlowClient,
    /// A webhook found its queue full.
    WebhookQueueFull,
    /// A webhook was given up on after every retry.
    WebhookFailed,
    /// A reader of the presence feed fell behind and missed events.
    PresenceLagged,
}

impl DropReason {
    const ALL: [Self; 4] = [Self::SlowClient, Self::WebhookQueueFull, Self::WebhookFailed, Self::PresenceLagged];

    fn label(self) -> &'static str {
        match self {
            Self::SlowClient => "slow_client",
            Self::WebhookQueueFull => "webhook_queue_full",
            Self::WebhookFailed => "webhook_failed",
            Self::PresenceLagged => "presence_lagged",
        }
    }
}

/// A Redis operation, as the `op` label of the cluster's Redis series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOp {
    /// The publish script (sequence, history, inbox, fan-out).
    Publish,
    /// Reading the other nodes' connections.
    Presence,
    /// Catching up from the history stream.
    CatchUp,
}

impl RedisOp {
    const ALL: [Self; 3] = [Self::Publish, Self::Presence, Self::CatchUp];

    fn label(self) -> &'static str {
        match self {
            Self::Publish => "publish",
            Self::Presence => "presence",
            Self::CatchUp => "catch_up",
        }
    }
}

/// The handles of one app. Cheap to clone (each handle is an `Arc`).
#[derive(Debug, Clone)]
pub struct AppMetrics {
    pub(crate) connections: IntGauge,
    pub(crate) users_online: IntGauge,
    pub(crate) inbox_messages: IntGauge,
    pub(crate) connects: IntCounter,
    pub(crate) disconnects: IntCounter,
    publishes: [[IntCounter; 3]; 6],
    pub(crate) deliveries: IntCounter,
    pub(crate) bytes_written: IntCounter,
    pub(crate) slow_client_drops: IntCounter,
    drops: [IntCounter; 4],
    pub(crate) kicks: IntCounter,
    pub(crate) expired_tokens: IntCounter,
    pub(crate) resumes: IntCounter,
    pub(crate) resets: IntCounter,
    pub(crate) durable_commits: IntCounter,
    pub(crate) webhook_failures: IntCounter,
    pub(crate) store_errors: IntCounter,
    pub(crate) catch_ups: IntCounter,
    redis_errors: [IntCounter; 3],
    pub(crate) publish_seconds: Histogram,
    pub(crate) first_write_seconds: Histogram,
    pub(crate) store_commit_seconds: Histogram,
    redis_seconds: [Histogram; 3],
    pub(crate) webhook_seconds: Histogram,
    pub(crate) bus_lag_seconds: Histogram,
}

impl AppMetrics {
    pub(super) fn resolve(m: &Metrics, app: &str) -> Self {
        let one = |vec: &prometheus::IntCounterVec| vec.with_label_values(&[app]);
        let hist = |vec: &prometheus::HistogramVec| vec.with_label_values(&[app]);
        Self {
            connections: m.connections.with_label_values(&[app]),
            users_online: m.users_online.with_label_values(&[app]),
            inbox_messages: m.inbox_messages.with_label_values(&[app]),
            connects: one(&m.connects),
            disconnects: one(&m.disconnects),
            publishes: Target::ALL
                .map(|t| Outcome::ALL.map(|o| m.publishes.with_label_values(&[app, t.label(), o.label()]))),
            deliveries: one(&m.deliveries),
            bytes_written: one(&m.bytes_written),
            slow_client_drops: one(&m.slow_client_drops),
            drops: DropReason::ALL.map(|r| m.drops.with_label_values(&[app, r.label()])),
            kicks: one(&m.kicks),
            expired_tokens: one(&m.expired_tokens),
            resumes: one(&m.resumes),
            resets: one(&m.resets),
            durable_commits: one(&m.durable_commits),
            webhook_failures: one(&m.webhook_failures),
            store_errors: one(&m.store_errors),
            catch_ups: one(&m.catch_ups),
            redis_errors: RedisOp::ALL.map(|op| m.redis_errors.with_label_values(&[app, op.label()])),
            publish_seconds: hist(&m.publish_seconds),
            first_write_seconds: hist(&m.first_write_seconds),
            store_commit_seconds: hist(&m.store_commit_seconds),
            redis_seconds: RedisOp::ALL.map(|op| m.redis_seconds.with_label_values(&[app, op.label()])),
            webhook_seconds: hist(&m.webhook_seconds),
            bus_lag_seconds: hist(&m.bus_lag_seconds),
        }
    }

    /// Counts one publish.
    pub(crate) fn published(&self, target: Target, outcome: Outcome) {
        self.publishes[target as usize][outcome as usize].inc();
    }

    /// Counts a drop.
    pub(crate) fn dropped(&self, reason: DropReason, n: u64) {
        self.drops[reason as usize].inc_by(n);
    }

    /// Times one Redis round trip, and counts it when it failed.
    pub(crate) fn redis<T, E>(&self, op: RedisOp, took: Duration, outcome: &Result<T, E>) {
        self.redis_seconds[op as usize].observe(took.as_secs_f64());
        if outcome.is_err() {
            self.redis_errors[op as usize].inc();
        }
    }

    /// The counters an operator watches, as they stand; the gauges as last set.
    pub(crate) fn snapshot(&self, app: &str) -> AppSnapshot {
        let publishes = self.publishes.iter().flatten().map(IntCounter::get).sum();
        AppSnapshot {
            app: app.to_string(),
            connections: self.connections.get().max(0) as u64,
            users_online: self.users_online.get().max(0) as u64,
            publishes,
            publishes_ok: self.publishes.iter().map(|by_outcome| by_outcome[Outcome::Ok as usize].get()).sum(),
            deliveries: self.deliveries.get(),
            bytes_written: self.bytes_written.get(),
            drops: self.drops.iter().map(IntCounter::get).sum(),
            slow_client_drops: self.slow_client_drops.get(),
            kicks: self.kicks.get(),
            connects: self.connects.get(),
            disconnects: self.disconnects.get(),
            store_errors: self.store_errors.get(),
        }
    }
}

/// One app's counters on this node at one moment, for a dashboard: two snapshots a second
/// apart give the rates (publishes/s, deliveries/s). Counters only grow while the hub runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AppSnapshot {
    /// The app's id.
    pub app: String,
    /// Open streams now.
    pub connections: u64,
    /// Distinct users with an open stream now.
    pub users_online: u64,
    /// Publish requests, whatever their outcome.
    pub publishes: u64,
    /// Publish requests that succeeded.
    pub publishes_ok: u64,
    /// Messages handed to connections.
    pub deliveries: u64,
    /// Stream bytes handed to sockets.
    pub bytes_written: u64,
    /// Everything dropped, all reasons together.
    pub drops: u64,
    /// Connections closed for overflowing their queue.
    pub slow_client_drops: u64,
    /// Connections closed by a kick.
    pub kicks: u64,
    /// Streams opened.
    pub connects: u64,
    /// Streams closed.
    pub disconnects: u64,
    /// Store operations that failed.
    pub store_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(users: &[&str], channels: &[&str], all: bool) -> Targets {
        Targets {
            users: users.iter().map(|s| s.to_string()).collect(),
            channels: channels.iter().map(|s| s.to_string()).collect(),
            all,
            ..Targets::default()
        }
    }

    #[test]
    fn a_publish_is_labelled_by_its_one_kind_of_address_or_mixed() {
        assert_eq!(Target::of(&to(&["1", "2"], &[], false)), Target::Users);
        assert_eq!(Target::of(&to(&[], &["news"], false)), Target::Channels);
        assert_eq!(Target::of(&to(&[], &[], true)), Target::All);
        assert_eq!(Target::of(&to(&["1"], &["news"], false)), Target::Mixed);
        assert_eq!(Target::of(&to(&[], &[], false)), Target::Mixed);
    }

    #[test]
    fn handles_of_one_app_bump_only_that_apps_series() {
        let metrics = Metrics::new();
        let (a, b) = (metrics.app("a"), metrics.app("b"));
        a.published(Target::Tenants, Outcome::Failed);
        a.deliveries.inc_by(3);
        let text = metrics.render();
        assert!(text.contains(r#"herald_publishes_total{app="a",outcome="failed",target="tenants"} 1"#), "{text}");
        assert!(text.contains(r#"herald_deliveries_total{app="b"} 0"#), "{text}");
        assert_eq!((a.snapshot("a").deliveries, b.snapshot("b").deliveries), (3, 0));
    }
}
