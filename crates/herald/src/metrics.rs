//! Counters that operators and benchmarks read at `GET /metrics` (Prometheus text format).
//!
//! Plain relaxed atomics: each is bumped on a hot path and read rarely, so nothing is gained
//! from a registry or labels here.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident: $help:literal),* $(,)?) => {
        /// The hub's counters, all monotonic.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $help] pub $name: AtomicU64,)*
        }

        impl Metrics {
            /// Prometheus text exposition, with `connections` (a gauge) first.
            pub fn render(&self, connections: usize) -> String {
                let mut out = String::new();
                let _ = writeln!(out, "# HELP herald_connections Open subscriber streams.\n# TYPE herald_connections gauge\nherald_connections {connections}");
                $(
                    let _ = writeln!(
                        out,
                        "# HELP herald_{0} {1}\n# TYPE herald_{0} counter\nherald_{0} {2}",
                        stringify!($name), $help, self.$name.load(Ordering::Relaxed)
                    );
                )*
                out
            }
        }
    };
}

counters! {
    connects_total: "Streams opened.",
    disconnects_total: "Streams closed, for any reason.",
    publishes_total: "Messages published.",
    deliveries_total: "Messages handed to a connection's queue.",
    slow_client_drops_total: "Connections closed because their queue overflowed.",
    kicks_total: "Connections closed by a kick.",
    expired_tokens_total: "Connections closed because their token expired.",
    webhook_failures_total: "Webhooks given up on after every retry, or dropped on a full queue.",
    store_errors_total: "Store operations that failed.",
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
