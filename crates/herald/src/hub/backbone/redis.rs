//! Many nodes over Redis: Redis sequences, stores and fans out (`crate::cluster` speaks to it);
//! each node applies the bus to its own connections, in order, and catches up from the history
//! stream after the bus was lost.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use super::Backbone;
use crate::cluster::{BusEvent, Cluster, Record, WireMessage};
use crate::error::Error;
use crate::hub::app::App;
use crate::hub::outbox::CloseReason;
use crate::hub::Inner;
use crate::message::{now_ms, Message, Publish, Published};
use crate::metrics::RedisOp;
use crate::presence::{ConnectionInfo, Kick, PresenceEvent};
use crate::store::{HistoryLimits, Inbox, Opened, StoreError, UnreadChange};

/// The backbone of a cluster node: Redis.
pub(crate) struct Redis {
    cluster: Arc<Cluster>,
    /// How long a publish waits for the other nodes' delivery counts (`delivery_report_ms`).
    report_wait: Duration,
    /// Apps whose bus this node does not hear yet (or lost): every app at first, emptied as
    /// each subscription is made and its catch-up read.
    deaf: Arc<Mutex<HashSet<String>>>,
}

impl Redis {
    pub(crate) fn new(cluster: Arc<Cluster>, report_wait: Duration, apps: Vec<String>) -> Self {
        Self { cluster, report_wait, deaf: Arc::new(Mutex::new(apps.into_iter().collect())) }
    }
}

impl Backbone for Redis {
    fn open_app(
        &self,
        app: &str,
        limits: HistoryLimits,
    ) -> BoxFuture<'static, Result<(Opened, Option<String>), StoreError>> {
        let (cluster, app) = (self.cluster.clone(), app.to_string());
        async move { cluster.open_app(&app, limits).await }.boxed()
    }

    fn publish<'a>(&'a self, app: &'a Arc<App>, batch: Vec<Publish>) -> BoxFuture<'a, Vec<Result<Published, Error>>> {
        async move {
            let mut answers = Vec::with_capacity(batch.len());
            for p in batch {
                answers.push(publish_one(app, &self.cluster, self.report_wait, p).await);
            }
            answers
        }
        .boxed()
    }

    fn inbox(&self) -> Arc<dyn Inbox> {
        self.cluster.inbox.clone()
    }

    fn remote_connections(&self, app: &str) -> BoxFuture<'static, Result<Vec<ConnectionInfo>, StoreError>> {
        let (cluster, app) = (self.cluster.clone(), app.to_string());
        async move { cluster.remote_connections(&app).await }.boxed()
    }

    fn shares_presence(&self) -> bool {
        true
    }

    fn presence_changed(&self, app: &str, event: &PresenceEvent) {
        self.cluster.presence_changed(app, event.clone());
    }

    fn kick_remote(&self, app: &str, kick: Kick) -> BoxFuture<'static, Result<(), StoreError>> {
        let (cluster, app) = (self.cluster.clone(), app.to_string());
        async move { cluster.broadcast_kick(&app, &kick).await }.boxed()
    }

    fn unread_changed<'a>(&'a self, app: &'a App, changes: &'a [UnreadChange]) -> BoxFuture<'a, ()> {
        async move {
            let pairs: Vec<(String, u64)> = changes.iter().map(|c| (c.user.clone(), c.unread)).collect();
            if let Err(error) = self.cluster.broadcast_unread(&app.id, &pairs).await {
                tracing::warn!(%error, "Could not announce unread counts to the cluster.");
            }
        }
        .boxed()
    }

    /// A client that moved nodes may have seen a message this node has not applied yet: wait
    /// for the bus to bring it rather than tell the client to reset.
    fn wait_for<'a>(&'a self, app: &'a App, seq: u64) -> BoxFuture<'a, ()> {
        async move {
            let mut head = app.head.subscribe();
            if seq > *head.borrow() {
                let _ = tokio::time::timeout(BUS_ROUND_TRIP, head.wait_for(|h| *h >= seq)).await;
            }
        }
        .boxed()
    }

    fn start(self: Arc<Self>, hub: Weak<Inner>) {
        let Some(inner) = hub.upgrade() else { return };
        let bus = self.cluster.consume(inner.apps.keys().cloned().collect());
        drop(inner);
        tokio::spawn(apply_bus(hub, bus, self.cluster.clone(), self.deaf.clone()));
    }

    fn listening(&self) -> bool {
        self.deaf.lock().is_empty()
    }

    /// Redis acknowledged every write before its publish answered: nothing is left to flush.
    fn flush(&self) -> BoxFuture<'static, Result<(), StoreError>> {
        futures_util::future::ready(Ok(())).boxed()
    }
}

/// Publishes one message through Redis, waits for this node's own copy from the bus, then for
/// the other live nodes' delivery counts, at most `report_wait`.
async fn publish_one(app: &App, cluster: &Cluster, report_wait: Duration, p: Publish) -> Result<Published, Error> {
    let durable = match p.durable {
        true => {
            let started = Instant::now();
            let remote = cluster.remote_connections(&app.id).await;
            app.metrics.redis(RedisOp::Presence, started.elapsed(), &remote);
            let remote = remote.inspect_err(|_| app.metrics.store_errors.inc())?;
            Some(app.durable_recipients(&p, remote))
        }
        false => None,
    };
    let time_ms = now_ms();
    let record = durable.as_ref().map(|d| Record {
        event: p.event.clone(),
        data: p.data.clone(),
        created_ms: time_ms,
        expires_ms: d.expires_ms,
    });
    let origin = Some(cluster.node.to_string());
    let wire = WireMessage {
        origin,
        time_ms,
        targets: p.to,
        event: p.event,
        data: p.data,
        durable: p.durable,
        mercure: p.mercure,
    };
    let mut head = app.head.subscribe();
    // Who should report is read beside the publish, on the same multiplexed connection: no
    // extra round trip.
    // Above everything this node has applied, even if Redis lost increments in a failover.
    let floor = app.log.lock().head;
    let started = Instant::now();
    let (peers, seq) = tokio::join!(
        cluster.peers(&app.id),
        cluster.publish(&app.id, &wire, durable.as_ref().zip(record), app.history_limits(), floor)
    );
    app.metrics.redis(RedisOp::Publish, started.elapsed(), &seq);
    let seq = seq.inspect_err(|_| app.metrics.store_errors.inc())?;
    if wire.durable {
        app.metrics.durable_commits.inc();
    }
    // Not knowing who is live, the answer cannot claim to be complete.
    let known = peers.is_ok();
    let peers = peers.unwrap_or(0);
    // The message comes back on the bus to every node, this one included.
    let _ = tokio::time::timeout(BUS_ROUND_TRIP, head.wait_for(|h| *h >= seq)).await;
    let here = app.applied.lock().delivered.iter().find(|(s, _)| *s == seq).map_or(0, |(_, n)| *n);
    let (there, reported) = reports(app, seq, peers, report_wait).await;
    let epoch = app.log.lock().epoch.clone();
    let unreported_nodes = peers.saturating_sub(reported);
    Ok(Published {
        id: crate::message::wire_id(&epoch, seq, wire.durable, wire.mercure.and_then(|m| m.id)),
        delivered: here + there,
        complete: known && unreported_nodes == 0,
        unreported_nodes,
    })
}

/// The other nodes' delivery counts of `seq` once `peers` nodes reported, or what arrived by
/// the end of `wait`: `(connections, nodes)`.
async fn reports(app: &App, seq: u64, peers: usize, wait: Duration) -> (usize, usize) {
    let arrived = app.applied.lock().report_arrived.clone();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Registered before the count is read, so a report in between still wakes this task.
        let notified = arrived.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let so_far = app.applied.lock().reports.get(&seq).copied().unwrap_or_default();
        if so_far.1 >= peers || tokio::time::timeout_at(deadline, notified).await.is_err() {
            return app.applied.lock().reports.get(&seq).copied().unwrap_or_default();
        }
    }
}

/// How long a publisher waits for its own message to come back on the cluster bus.
const BUS_ROUND_TRIP: Duration = Duration::from_secs(5);
/// Delivery counts kept for publishers waiting on the bus round trip.
const RECENT_COUNTS: usize = 4096;

/// The bus position of a cluster node, per app.
#[derive(Default)]
pub(crate) struct Applied {
    /// The last history-stream entry applied; a resync reads on from here.
    pub(crate) stream_id: Option<String>,
    /// `(seq, delivered)` of recent messages, for the publishers on this node.
    pub(crate) delivered: VecDeque<(u64, usize)>,
    /// Other nodes' counts of recent messages this node published: seq → (connections, nodes).
    reports: BTreeMap<u64, (usize, usize)>,
    /// Wakes publishers waiting for reports.
    report_arrived: Arc<Notify>,
}

impl Applied {
    /// Nothing applied yet after the history-stream entry `stream_id`.
    pub(crate) fn at(stream_id: Option<String>) -> Self {
        Self { stream_id, ..Self::default() }
    }

    /// Whether the stream entry `id` comes after the last one applied. A message whose
    /// sequence this node has applied but whose entry is newer was given a sequence number a
    /// second time (a failover lost increments): its id would repeat.
    fn is_after_applied(&self, id: &str) -> bool {
        fn parse(id: &str) -> Option<(u64, u64)> {
            let (ms, n) = id.split_once('-')?;
            Some((ms.parse().ok()?, n.parse().ok()?))
        }
        match (self.stream_id.as_deref().and_then(parse), parse(id)) {
            (Some(applied), Some(id)) => id > applied,
            _ => false,
        }
    }

    fn add_reports(&mut self, counts: &[(u64, usize)]) {
        for &(seq, delivered) in counts {
            let entry = self.reports.entry(seq).or_default();
            entry.0 += delivered;
            entry.1 += 1;
        }
        while self.reports.len() > RECENT_COUNTS {
            self.reports.pop_first();
        }
        self.report_arrived.notify_waiters();
    }
}

impl App {
    /// Applies a message from the cluster bus (or the stream, when catching up): history, then
    /// local delivery, then the head that waiting publishers and long-polls watch.
    /// Returns how many connections got it (`None`: applied before).
    pub(crate) async fn apply(
        &self,
        seq: u64,
        stream_id: Option<String>,
        m: WireMessage,
        unread: &[(String, u64)],
    ) -> Option<usize> {
        let turn = self.turn.lock().await;
        let message = {
            let mut log = self.log.lock();
            if seq <= log.head {
                return None;
            }
            let message = Arc::new(Message::with_mercure(
                &log.epoch, seq, m.time_ms, m.targets, m.event, m.data, m.durable, m.mercure,
            ));
            log.append(message.clone());
            message
        };
        let delivered = self.deliver(&message);
        drop(turn);
        if stream_id.is_some() {
            // Live from the bus, not a catch-up: how far behind the publishing node it came.
            let lag_ms = crate::message::now_ms().saturating_sub(message.time_ms);
            self.metrics.bus_lag_seconds.observe(lag_ms as f64 / 1000.0);
        }
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
        Some(delivered)
    }

    /// Cluster only: applies what the bus missed, from the history stream. If Redis lost its
    /// data (a new epoch) or its stream no longer reaches back to this node's head, the node
    /// starts over at Redis's head and closes its streams, whose clients then reconnect and
    /// get `herald.reset`.
    pub(crate) async fn catch_up(&self, cluster: &Cluster) {
        self.metrics.catch_ups.inc();
        let started = Instant::now();
        let outcome = self.try_catch_up(cluster).await;
        self.metrics.redis(RedisOp::CatchUp, started.elapsed(), &outcome);
        if let Err(error) = outcome {
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
        // After a failover the new primary may lack the last increments this node applied:
        // raise its sequence above them before anything else is published through this node.
        let head = self.log.lock().head;
        let was = cluster.fence(&self.id, head).await?;
        if was < head {
            tracing::warn!(app = %self.id, lost = head - was, "Redis lost the last sequence increments (a failover?); the sequence continues above this node's head.");
        }
        let after = self.applied.lock().stream_id.clone();
        let (entries, last) = cluster.read_stream(&self.id, after.as_deref()).await?;
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
async fn apply_bus(
    hub: Weak<Inner>,
    mut bus: mpsc::Receiver<BusEvent>,
    cluster: Arc<Cluster>,
    deaf: Arc<Mutex<HashSet<String>>>,
) {
    while let Some(event) = bus.recv().await {
        let Some(inner) = hub.upgrade() else { return };
        match event {
            BusEvent::Message { app, seq, stream_id, epoch, unread, message } => {
                if let Some(app) = inner.apps.get(&app) {
                    // Another node started a new history (see below): reset to it.
                    if epoch != app.log.lock().epoch {
                        app.catch_up(&cluster).await;
                    }
                    let head = app.log.lock().head;
                    if seq <= head && app.applied.lock().is_after_applied(&stream_id) {
                        // Delivering it would repeat an id: start a new history everywhere.
                        tracing::warn!(app = %app.id, seq, "A sequence number was issued twice after a failover; clients will be told to reset.");
                        let epoch = app.log.lock().epoch.clone();
                        if let Err(error) = cluster.fork(&app.id, &epoch).await {
                            tracing::warn!(%error, "Could not start a new history.");
                        }
                        app.catch_up(&cluster).await;
                    } else if seq > head + 1 {
                        app.catch_up(&cluster).await;
                    }
                    let origin = message.origin.clone();
                    let delivered = app.apply(seq, Some(stream_id), message, &unread).await;
                    // The publishing node counts its own; the others report theirs to it.
                    if let (Some(origin), Some(delivered)) = (origin, delivered) {
                        if *origin != *cluster.node {
                            cluster.report(&app.id, &origin, seq, delivered);
                        }
                    }
                }
            }
            BusEvent::Reports { app, counts } => {
                if let Some(app) = inner.apps.get(&app) {
                    app.applied.lock().add_reports(&counts);
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
            BusEvent::Resubscribed { apps } => {
                for app in apps.iter().filter_map(|app| inner.apps.get(app)) {
                    app.catch_up(&cluster).await;
                }
                let mut deaf = deaf.lock();
                for app in &apps {
                    deaf.remove(app);
                }
            }
            BusEvent::Unsubscribed { apps } => {
                deaf.lock().extend(apps);
            }
        }
    }
}
