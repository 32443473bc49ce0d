//! What operators and benchmarks read at `GET /metrics` (Prometheus text format), and what an
//! embedding application reads in-process ([`Hub::metrics_snapshot`](crate::Hub::metrics_snapshot)).
//!
//! Built on the `prometheus` crate with one [`Registry`] per hub, never the process-wide
//! default one: a process may run several hubs (tests do), and each must count only its own.
//! Every series is labelled by `app`; an app's handles are resolved once when the hub starts
//! ([`AppMetrics`]), so the hot path bumps a plain atomic and never looks a label up. The
//! gauges that mirror live state (connections, users online, inbox size) are read from that
//! state when scraped rather than kept in step on every connect. The reference of every series
//! is docs/METRICS.md.

mod app;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use app::{AppMetrics, AppSnapshot, DropReason, Outcome, RedisOp, Target};

/// Latency buckets, in seconds: 50 µs to 10 s.
const LATENCY_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The metric families of one hub, and the registry they are exposed from.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: IntGaugeVec,
    users_online: IntGaugeVec,
    inbox_messages: IntGaugeVec,
    connects: IntCounterVec,
    disconnects: IntCounterVec,
    publishes: IntCounterVec,
    deliveries: IntCounterVec,
    bytes_written: IntCounterVec,
    slow_client_drops: IntCounterVec,
    drops: IntCounterVec,
    kicks: IntCounterVec,
    expired_tokens: IntCounterVec,
    resumes: IntCounterVec,
    resets: IntCounterVec,
    durable_commits: IntCounterVec,
    webhook_failures: IntCounterVec,
    store_errors: IntCounterVec,
    catch_ups: IntCounterVec,
    redis_errors: IntCounterVec,
    publish_seconds: HistogramVec,
    first_write_seconds: HistogramVec,
    store_commit_seconds: HistogramVec,
    redis_seconds: HistogramVec,
    webhook_seconds: HistogramVec,
    bus_lag_seconds: HistogramVec,
    /// Tasks alive in the runtime serving the hub, node-wide (no `app` label).
    pub(crate) runtime_tasks: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, registered in a registry of its own.
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["app"]).expect("a valid gauge");
            registry.register(Box::new(g.clone())).expect("a name registered once");
            g
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid counter");
            registry.register(Box::new(c.clone())).expect("a name registered once");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
            let h = HistogramVec::new(opts, labels).expect("a valid histogram");
            registry.register(Box::new(h.clone())).expect("a name registered once");
            h
        };
        let app = &["app"][..];
        let runtime_tasks = IntGauge::new(
            "herald_runtime_tasks",
            "Tasks alive in the runtime serving the hub (each stream holds one or two); a soak watches it for tasks that never end.",
        )
        .expect("a valid gauge");
        registry.register(Box::new(runtime_tasks.clone())).expect("a name registered once");
        Self {
            runtime_tasks,
            connections: gauge("herald_connections", "Open subscriber streams."),
            users_online: gauge("herald_users_online", "Distinct users with at least one open stream."),
            inbox_messages: gauge("herald_inbox_messages", "Unread, unexpired durable messages waiting in the store."),
            connects: counter("herald_connects_total", "Streams opened.", app),
            disconnects: counter("herald_disconnects_total", "Streams closed, for any reason.", app),
            publishes: counter(
                "herald_publishes_total",
                "Publish requests by target kind and outcome (ok, invalid, failed).",
                &["app", "target", "outcome"],
            ),
            deliveries: counter("herald_deliveries_total", "Messages handed to a connection's queue.", app),
            bytes_written: counter("herald_bytes_written_total", "Stream bytes handed to the socket writer.", app),
            slow_client_drops: counter(
                "herald_slow_client_drops_total",
                "Connections closed because their queue overflowed.",
                app,
            ),
            drops: counter(
                "herald_drops_total",
                "Things dropped instead of delivered, by reason (slow_client, webhook_queue_full, webhook_failed, presence_lagged).",
                &["app", "reason"],
            ),
            kicks: counter("herald_kicks_total", "Connections closed by a kick.", app),
            expired_tokens: counter("herald_expired_tokens_total", "Connections closed because their token expired.", app),
            resumes: counter("herald_resumes_total", "Streams and polls that resumed exactly from a Last-Event-ID.", app),
            resets: counter("herald_resets_total", "Streams and polls told herald.reset: their id could not be resumed.", app),
            durable_commits: counter("herald_durable_commits_total", "Durable messages committed to the store.", app),
            webhook_failures: counter(
                "herald_webhook_failures_total",
                "Webhooks given up on after every retry, or dropped on a full queue.",
                app,
            ),
            store_errors: counter("herald_store_errors_total", "Store operations that failed.", app),
            catch_ups: counter("herald_catch_ups_total", "Cluster: times this node caught up from the history stream.", app),
            redis_errors: counter("herald_redis_errors_total", "Cluster: Redis operations that failed, by operation.", &["app", "op"]),
            publish_seconds: histogram(
                "herald_publish_duration_seconds",
                "Publish latency, from the request to its answer (a batch counts once).",
                app,
            ),
            first_write_seconds: histogram(
                "herald_publish_to_write_seconds",
                "From a message's sequencing to its first write to a subscriber's socket.",
                app,
            ),
            store_commit_seconds: histogram("herald_store_commit_seconds", "Durable commits to the local store.", app),
            redis_seconds: histogram("herald_redis_duration_seconds", "Cluster: Redis round trips, by operation.", &["app", "op"]),
            webhook_seconds: histogram("herald_webhook_duration_seconds", "Webhook deliveries, retries included.", app),
            bus_lag_seconds: histogram(
                "herald_bus_lag_seconds",
                "Cluster: from a message's publish on any node to its delivery from the bus on this one.",
                app,
            ),
            registry,
        }
    }

    /// The handles of one app, resolved once.
    pub fn app(&self, app: &str) -> AppMetrics {
        AppMetrics::resolve(self, app)
    }

    /// The exposition of every family, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("encoding to memory succeeds");
        String::from_utf8(out).expect("the text format is UTF-8")
    }

    /// The registry, for an application that adds its own collectors to Herald's exposition.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
