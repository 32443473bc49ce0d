//! What operators read of a running hub: the metrics exposition, a snapshot of the counters for
//! a dashboard, and readiness.

use std::time::Duration;

use super::Hub;
use crate::metrics::AppSnapshot;
use crate::store::StoreError;

/// How long the store (or Redis) may take to answer the readiness probe.
const READY_WITHIN: Duration = Duration::from_secs(2);

/// Why the hub is not ready to serve.
#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    /// Shutdown has begun: new streams are refused.
    #[error("the hub is shutting down")]
    ShuttingDown,
    /// The store (SQLite, memory) or the cluster's Redis did not answer in time.
    #[error("the store did not answer within {0:?}")]
    StoreTimeout(Duration),
    /// The store (or Redis) answered with an error.
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    /// A cluster node has not subscribed to every app's bus yet, or lost it and is reconnecting.
    #[error("this node does not hear the cluster bus yet (subscribing to Redis)")]
    BusUnsubscribed,
}

impl Hub {
    /// Sets the gauges that mirror live state: connections and users online, per app.
    fn refresh_gauges(&self) {
        for app in self.inner.apps.values() {
            app.metrics.connections.set(app.registry.len() as i64);
            app.metrics.users_online.set(app.registry.user_count() as i64);
        }
    }

    /// The Prometheus text exposition of every series (`GET /metrics`). Reads the live gauges
    /// first, the inbox sizes included (one store query per app).
    pub async fn render_metrics(&self) -> String {
        self.refresh_gauges();
        for app in self.inner.apps.values() {
            match self.inner.inbox.size(&app.id).await {
                Ok(Some(size)) => app.metrics.inbox_messages.set(size as i64),
                Ok(None) => {}
                Err(error) => {
                    app.metrics.store_errors.inc();
                    tracing::warn!(app = %app.id, %error, "Could not count the inbox for the metrics.");
                }
            }
        }
        // tokio counts live tasks without `tokio_unstable`.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.inner.metrics.runtime_tasks.set(runtime.metrics().num_alive_tasks() as i64);
        }
        self.inner.metrics.render()
    }

    /// This node's counters per app, ordered by app id: what a dashboard shows (two snapshots
    /// give the rates). Cheap: no store query, no rendering.
    pub fn metrics_snapshot(&self) -> Vec<AppSnapshot> {
        self.refresh_gauges();
        let mut apps: Vec<_> = self.inner.apps.values().map(|app| app.metrics.snapshot(&app.id)).collect();
        apps.sort_by(|a, b| a.app.cmp(&b.app));
        apps
    }

    /// Counts presence events a lagging reader of `app`'s feed missed.
    pub(crate) fn presence_lagged(&self, app: &str, missed: u64) {
        if let Some(app) = self.inner.apps.get(app) {
            app.metrics.dropped(crate::metrics::DropReason::PresenceLagged, missed);
        }
    }

    /// Whether the hub can serve: not shutting down, a cluster node hears every app's bus, and
    /// its store (or the cluster's Redis) answers a read within two seconds. `GET /readyz` is
    /// this.
    ///
    /// # Errors
    ///
    /// What is not ready.
    pub async fn ready(&self) -> Result<(), NotReady> {
        if self.inner.shutdown.is_cancelled() {
            return Err(NotReady::ShuttingDown);
        }
        let Some(app) = self.inner.apps.keys().next() else { return Ok(()) };
        // A read that goes through the store's writer thread, or to Redis and back.
        let probe = self.inner.inbox.unread(app, "");
        tokio::time::timeout(READY_WITHIN, probe).await.map_err(|_| NotReady::StoreTimeout(READY_WITHIN))??;
        // After the store: with Redis down, that is what to fix.
        if !self.inner.backbone.listening() {
            return Err(NotReady::BusUnsubscribed);
        }
        Ok(())
    }
}
