//! The cluster bus on this node: messages from Redis applied in order, and catching up from the
//! history stream after the bus was lost.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

use super::app::App;
use super::outbox::CloseReason;
use super::Inner;
use crate::cluster::{BusEvent, Cluster, WireMessage};
use crate::message::Message;
use crate::store::UnreadChange;

/// How long a publisher waits for its own message to come back on the cluster bus.
pub(super) const BUS_ROUND_TRIP: Duration = Duration::from_secs(5);
/// Delivery counts kept for publishers waiting on the bus round trip.
const RECENT_COUNTS: usize = 4096;

/// The bus position of a cluster node, per app.
#[derive(Default)]
pub(crate) struct Applied {
    /// The last history-stream entry applied; a resync reads on from here.
    pub(crate) stream_id: Option<String>,
    /// `(seq, delivered)` of recent messages, for the publishers on this node.
    pub(crate) delivered: VecDeque<(u64, usize)>,
}

impl App {
    /// Applies a message from the cluster bus (or the stream, when catching up): history, then
    /// local delivery, then the head that waiting publishers and long-polls watch.
    pub(crate) async fn apply(&self, seq: u64, stream_id: Option<String>, m: WireMessage, unread: &[(String, u64)]) {
        let turn = self.turn.lock().await;
        let message = {
            let mut log = self.log.lock();
            if seq <= log.head {
                return;
            }
            let message = Arc::new(Message::new(&log.epoch, seq, m.time_ms, m.targets, m.event, m.data, m.durable));
            log.append(message.clone());
            message
        };
        let delivered = self.deliver(&message);
        drop(turn);
        {
            let mut applied = self.applied.lock();
            if stream_id.is_some() {
                applied.stream_id = stream_id;
            }
            applied.delivered.push_back((seq, delivered));
            if applied.delivered.len() > RECENT_COUNTS {
                applied.delivered.pop_front();
            }
        }
        self.head.send_replace(seq);
        let changes: Vec<UnreadChange> = unread
            .iter()
            .map(|(user, n)| UnreadChange { app: self.id.clone(), user: user.clone(), unread: *n })
            .collect();
        self.notify_unread(&changes);
    }

    /// Cluster only: applies what the bus missed, from the history stream. If Redis lost its
    /// data (a new epoch) or its stream no longer reaches back to this node's head, the node
    /// starts over at Redis's head and closes its streams, whose clients then reconnect and
    /// get `herald.reset`.
    pub(crate) async fn catch_up(&self, cluster: &Cluster) {
        if let Err(error) = self.try_catch_up(cluster).await {
            tracing::warn!(app = %self.id, %error, "Could not catch up from the cluster's history.");
        }
    }

    async fn try_catch_up(&self, cluster: &Cluster) -> Result<(), crate::store::StoreError> {
        let (epoch, _) = cluster.epoch_and_head(&self.id).await?;
        let local_epoch = self.log.lock().epoch.clone();
        if epoch.as_deref() != Some(local_epoch.as_str()) {
            let (opened, stream_id) = cluster.open_app(&self.id, self.history_limits()).await?;
            tracing::warn!(app = %self.id, "The cluster's history was lost; clients will be told to reset.");
            self.log.lock().restart(opened.epoch, opened.floor);
            self.applied.lock().stream_id = None;
            self.close_all(CloseReason::Resync);
            for m in opened.history {
                self.apply(m.seq, None, WireMessage::from(m), &[]).await;
            }
            self.applied.lock().stream_id = stream_id;
            return Ok(());
        }
        let after = self.applied.lock().stream_id.clone();
        let (entries, last) = cluster.read_stream(&self.id, after.as_deref()).await?;
        let head = self.log.lock().head;
        if let Some(first) = entries.iter().find(|m| m.seq > head) {
            if first.seq > head + 1 {
                tracing::warn!(app = %self.id, missed_from = head + 1, "Messages were trimmed before this node caught up; clients will be told to reset.");
                self.log.lock().restart(local_epoch, first.seq - 1);
                self.close_all(CloseReason::Resync);
            }
        }
        for m in entries {
            self.apply(m.seq, None, WireMessage::from(m), &[]).await;
        }
        if last.is_some() {
            self.applied.lock().stream_id = last;
        }
        Ok(())
    }
}

/// Applies the cluster bus to this node's apps, in order.
pub(super) async fn apply_bus(hub: Weak<Inner>, mut bus: mpsc::Receiver<BusEvent>, cluster: Arc<Cluster>) {
    while let Some(event) = bus.recv().await {
        let Some(inner) = hub.upgrade() else { return };
        match event {
            BusEvent::Message { app, seq, stream_id, unread, message } => {
                if let Some(app) = inner.apps.get(&app) {
                    if seq > app.log.lock().head + 1 {
                        app.catch_up(&cluster).await;
                    }
                    app.apply(seq, Some(stream_id), message, &unread).await;
                }
            }
            BusEvent::Unread { app, changes } => {
                if let Some(app) = inner.apps.get(&app) {
                    let changes: Vec<UnreadChange> = changes
                        .into_iter()
                        .map(|(user, unread)| UnreadChange { app: app.id.clone(), user, unread })
                        .collect();
                    app.notify_unread(&changes);
                }
            }
            BusEvent::Presence { app, event } => {
                if let Some(app) = inner.apps.get(&app) {
                    let _ = app.presence.send(event);
                }
            }
            BusEvent::Kick { app, kick } => {
                if let Some(app) = inner.apps.get(&app) {
                    app.kick_local(kick.user.as_deref(), kick.connection.as_deref(), kick.reason.as_deref());
                }
            }
            BusEvent::Resubscribed => {
                for app in inner.apps.values() {
                    app.catch_up(&cluster).await;
                }
            }
        }
    }
}
