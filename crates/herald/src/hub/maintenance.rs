//! One shared tick for heartbeats, token expiry and history age, rather than a timer per
//! connection; and the sweeper of expired durable messages.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::outbox::CloseReason;
use super::Hub;
use crate::message::now_ms;
use crate::sse;
use crate::store::Swept;

impl Hub {
    /// One shared tick for heartbeats, token expiry and history age, rather than a timer per
    /// connection.
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
                            app.metrics.expired_tokens.inc();
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
            }
        });
    }

    /// Sweeps expired durable messages and history past its bounds: on every heartbeat tick, and
    /// also the moment the earliest unread message expires (or one published since expires
    /// sooner), so that an unread badge drops when its message expires, not a tick later.
    pub(super) fn spawn_sweeper(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.config.heartbeat();
        let mut sooner = self.inner.next_expiry.subscribe();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                if inner.shutdown.is_cancelled() {
                    return;
                }
                // Publishes during the sweep lower this again with their own expiry.
                inner.next_expiry.send_replace(u64::MAX);
                let swept = inner.inbox.sweep(now_ms()).await;
                let next = match swept {
                    Ok(Swept { changes, next_expiry_ms }) => {
                        for change in changes {
                            if let Some(app) = inner.apps.get(&change.app) {
                                app.unread_changed(std::slice::from_ref(&change)).await;
                            }
                        }
                        next_expiry_ms
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Store sweep failed.");
                        None
                    }
                };
                expires_at(&inner.next_expiry, next.unwrap_or(u64::MAX));
                drop(inner);
                let tick = tokio::time::Instant::now() + period;
                loop {
                    let due = *sooner.borrow_and_update();
                    let wait = Duration::from_millis(due.saturating_sub(now_ms()));
                    let wake = tick.min(tokio::time::Instant::now() + wait);
                    tokio::select! {
                        () = tokio::time::sleep_until(wake) => break,
                        changed = sooner.changed() => if changed.is_err() { return },
                    }
                }
            }
        });
    }
}

/// Lowers the sweeper's next wake-up to `ms` when that is sooner.
pub(super) fn expires_at(next_expiry: &watch::Sender<u64>, ms: u64) {
    next_expiry.send_if_modified(|next| {
        let sooner = ms < *next;
        if sooner {
            *next = ms;
        }
        sooner
    });
}
