//! One app's live state, and what publishing and subscribing share: delivery to this node's
//! connections, closing them, and telling presence. Publishing is in `publish`, subscribing in
//! `subscribe`, the cluster bus in `bus`.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::{broadcast, watch};

use super::backbone::{Applied, Backbone};
use super::conn::{parse_public_id, Conn};
use super::held::Held;
use super::log::Log;
use super::outbox::CloseReason;
use super::registry::Registry;
use super::subscribe::unread_frame;
use super::webhooks::Webhooks;
use crate::auth::Verifier;
use crate::config::AppConfig;
use crate::message::Message;
use crate::metrics::{AppMetrics, DropReason};
use crate::presence::{PresenceEvent, PresenceKind};
use crate::sse;
use crate::store::{HistoryLimits, Inbox, UnreadChange};

/// One app: its configuration, its connections, its log and what persists it.
pub(crate) struct App {
    pub(crate) id: String,
    pub(crate) config: AppConfig,
    pub(crate) verifier: Verifier,
    pub(crate) registry: Registry,
    pub(crate) log: Mutex<Log>,
    /// Held from a message's append to the end of its delivery, and by a stream reading history:
    /// messages reach every connection in id order, and a reader never sees a message that is
    /// appended but not yet delivered (it would get it twice). Async, so that a publisher waiting
    /// behind a large fan-out yields its thread to the streams instead of blocking it.
    pub(crate) turn: tokio::sync::Mutex<()>,
    /// Messages sequenced on this node but waiting for a durable commit ahead of them.
    pub(crate) held: Mutex<Held>,
    /// Messages that may be delivered now, waiting for the turn: sequenced with nothing held
    /// ahead of them, or released from `held` by their commit. Whoever takes the turn next
    /// delivers them all (see [`App::deliver_ready`]), so publishers queued behind one fan-out
    /// are delivered together. In sequence order; every one comes before anything in `held`.
    pub(crate) ready: Mutex<Vec<Ready>>,
    /// The hub's next sweep, brought forward by a durable message that expires sooner.
    pub(crate) next_expiry: watch::Sender<u64>,
    /// The head sequence, watched by long-polls.
    pub(crate) head: watch::Sender<u64>,
    pub(crate) presence: broadcast::Sender<PresenceEvent>,
    pub(crate) webhooks: Option<Webhooks>,
    /// Who sequences and persists this app's messages.
    pub(crate) backbone: Arc<dyn Backbone>,
    /// Where durable messages wait for their users.
    pub(crate) inbox: Arc<dyn Inbox>,
    /// Cluster only: what this node has applied from the bus.
    pub(crate) applied: Mutex<Applied>,
    pub(crate) metrics: AppMetrics,
    pub(crate) node: Arc<str>,
    pub(crate) retry_ms: u64,
    pub(crate) heartbeat_ms: u64,
    /// The Mercure side, when the app turns it on.
    pub(crate) mercure: Option<super::mercure::MercureApp>,
}

/// A message waiting in [`App::ready`], and where its publisher learns how many connections
/// took it.
pub(crate) struct Ready {
    pub(crate) message: Arc<Message>,
    pub(crate) delivered: tokio::sync::oneshot::Sender<usize>,
}

impl App {
    pub(crate) fn history_limits(&self) -> HistoryLimits {
        HistoryLimits {
            max_len: self.config.limits.history_size,
            max_age_ms: self.config.limits.history_age_secs.saturating_mul(1000),
            max_bytes: self.config.limits.history_bytes,
        }
    }

    /// Hands a message to this node's matching connections.
    pub(crate) fn deliver(&self, message: &Arc<Message>) -> usize {
        self.deliver_run(std::slice::from_ref(message))
    }

    /// Appends and delivers, in order, every message sequenced on this node that waits for its
    /// turn (see [`App::ready`]), and tells each publisher how many connections took it. Runs
    /// of consecutive messages with the same addresses reach each connection together: one
    /// push, one wakeup and one write for the run. Called with the turn held.
    pub(crate) fn deliver_ready(&self) {
        let ready = std::mem::take(&mut *self.ready.lock());
        let Some(last) = ready.last().map(|r| r.message.seq) else { return };
        let (messages, publishers): (Vec<Arc<Message>>, Vec<_>) =
            ready.into_iter().map(|r| (r.message, r.delivered)).unzip();
        let mut publishers = publishers.into_iter();
        let mut rest = &messages[..];
        while let Some(first) = rest.first() {
            let len = rest
                .iter()
                .take_while(|m| m.targets == first.targets && m.needs_mercure_grant() == first.needs_mercure_grant())
                .count();
            let (run, after) = rest.split_at(len);
            {
                let mut log = self.log.lock();
                for message in run {
                    log.append(message.clone());
                }
            }
            let delivered = self.deliver_run(run);
            for publisher in publishers.by_ref().take(len) {
                let _ = publisher.send(delivered);
            }
            rest = after;
        }
        self.head.send_replace(last);
    }

    /// Hands consecutive messages with the same addresses to this node's matching connections;
    /// returns how many took them.
    fn deliver_run(&self, run: &[Arc<Message>]) -> usize {
        let (delivered, overflowed) = self.registry.deliver_run(run);
        self.metrics.deliveries.inc_by((delivered * run.len()) as u64);
        for conn in overflowed {
            self.metrics.slow_client_drops.inc();
            self.metrics.dropped(DropReason::SlowClient, 1);
            tracing::info!(connection = %conn.public_id(), "Dropped a connection whose client stopped reading.");
            self.unregister(&conn);
        }
        delivered
    }

    /// Tells each user's open connections their new unread count.
    pub(crate) fn notify_unread(&self, changes: &[UnreadChange]) {
        for change in changes {
            // Mercure streams carry Mercure updates only.
            let conns = self.registry.of_user(&change.user);
            let mut conns = conns.iter().filter(|c| c.mercure.is_none()).peekable();
            // Most durable messages are for users who are offline: no frame for nobody.
            if conns.peek().is_none() {
                continue;
            }
            let frame = unread_frame(change.unread);
            for conn in conns {
                let _ = conn.outbox.push(None, frame.clone());
            }
        }
    }

    /// Removes a connection (idempotent) and tells presence it left.
    pub(crate) fn unregister(&self, conn: &Conn) {
        if let Some(conn) = self.registry.remove(conn) {
            self.metrics.disconnects.inc();
            self.announce(PresenceKind::Disconnect, &conn);
            self.subscription_events(&conn, false);
        }
    }

    /// Closes this node's streams of `user`, or the stream `connection`, each after a
    /// `herald.kicked` event when there is a reason; returns how many it closed.
    pub(crate) fn kick_local(&self, user: Option<&str>, connection: Option<&str>, reason: Option<&str>) -> usize {
        let mut conns = user.map(|u| self.registry.of_user(u)).unwrap_or_default();
        if let Some((node, n)) = connection.and_then(parse_public_id) {
            conns.extend(self.registry.get(n).filter(|_| *self.node == *node));
        }
        let last =
            reason.map(|reason| sse::event(None, Some("herald.kicked"), &json!({ "reason": reason }).to_string()));
        for conn in &conns {
            self.close(conn, last.clone(), CloseReason::Kicked);
        }
        self.metrics.kicks.inc_by(conns.len() as u64);
        conns.len()
    }

    /// Ends every stream of this app on this node with a `retry:` hint.
    pub(crate) fn close_all(&self, reason: CloseReason) {
        let hint = sse::retry(self.retry_ms);
        for conn in self.registry.all() {
            self.close(&conn, Some(hint.clone()), reason);
        }
    }

    /// Ends a stream from the hub's side, with an optional last frame.
    pub(crate) fn close(&self, conn: &Conn, last: Option<Bytes>, reason: CloseReason) {
        conn.outbox.finish(last, reason);
        self.unregister(conn);
    }

    pub(crate) fn announce(&self, kind: PresenceKind, conn: &Conn) {
        // Building the event costs allocations on every connect; skip it when nobody listens.
        let feed = self.presence.receiver_count() > 0;
        if !feed && self.webhooks.is_none() && !self.backbone.shares_presence() {
            return;
        }
        let event = PresenceEvent {
            kind,
            app: self.id.clone(),
            connection: conn.info(),
            at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        };
        self.backbone.presence_changed(&self.id, &event);
        if let Some(webhooks) = &self.webhooks {
            if let Ok(body) = serde_json::to_vec(&event) {
                webhooks.send(body.into());
            }
        }
        if feed {
            let _ = self.presence.send(event);
        }
    }
}
