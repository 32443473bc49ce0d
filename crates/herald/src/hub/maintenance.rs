//! One shared tick for heartbeats, token expiry, history age and durable expiry, rather than a
//! timer per connection.

use std::sync::Arc;

use super::outbox::CloseReason;
use super::Hub;
use crate::message::now_ms;
use crate::metrics::add;
use crate::sse;

impl Hub {
    /// One shared tick for heartbeats, token expiry, history age and durable expiry, rather
    /// than a timer per connection.
    pub(super) fn spawn_maintenance(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.config.heartbeat();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            let comment = sse::comment("hb");
            let ping = sse::event(None, Some("herald.ping"), "{}");
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutdown.is_cancelled() {
                    return;
                }
                let now = now_ms();
                for app in inner.apps.values() {
                    app.log.lock().trim(now);
                    for conn in app.registry.all() {
                        if conn.expires_at.is_some_and(|exp| exp.saturating_mul(1000) <= now) {
                            add(&inner.metrics.expired_tokens_total, 1);
                            app.close(&conn, None, CloseReason::Expired);
                        } else if conn.ping_events {
                            // Visible to EventSource, so clients can tell a live stream from a
                            // buffering proxy even when no event they listen to arrives.
                            let _ = conn.outbox.push(None, ping.clone());
                        } else {
                            conn.outbox.keep_alive(comment.clone());
                        }
                    }
                }
                match inner.inbox.sweep(now).await {
                    Ok(changes) => {
                        for change in changes {
                            if let Some(app) = inner.apps.get(&change.app) {
                                app.unread_changed(std::slice::from_ref(&change)).await;
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "Store sweep failed."),
                }
            }
        });
    }
}
