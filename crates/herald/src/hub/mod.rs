//! The hub: apps, their connections, and every operation a backend or a subscriber performs.
//!
//! # Publishing, step by step
//!
//! 1. Validate; nothing happens to a publish that fails.
//! 2. Take the app's turn (an async lock, so waiting publishers yield their thread).
//! 3. Under the app's log lock, briefly: take the next sequence number, encode the frame once,
//!    enqueue it to the store, append it to history.
//! 4. Still in the turn, so each connection gets messages in id order: hand the shared frame to
//!    every matching connection, shard by shard, each shard under its own short lock. A full
//!    queue closes its connection; the publisher never waits for a subscriber. Steps 3 and 4 are
//!    what is serialised per app; a stream reading history takes the turn too, so it never sees
//!    a message that is appended but not yet delivered.
//! 5. Durable only: wait for the store's group commit, then tell users their unread count.

mod app;
mod body;
mod conn;
mod log;
mod outbox;
mod presence;
mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use app::SubscribeRequest;
pub use conn::ConnectionInfo;
pub use presence::{PresenceEvent, PresenceKind};

use app::{App, Backbone};
pub(crate) use body::StreamBody;
use log::Log;
use outbox::CloseReason;
use presence::Webhooks;
use registry::Registry;

use crate::auth::{key_digest, Verifier};
use crate::cluster::{BusEvent, Cluster, Kick};
use crate::config::{Config, StoreKind};
use crate::error::Error;
use crate::message::{now_ms, Message, Publish, Published};
use crate::metrics::{add, Metrics};
use crate::store::{
    Acked, HistoryLimits, Inbox, MemoryStore, MessageQuery, SqliteStore, Store, UnreadChange, UserMessage,
};
use crate::{id, sse};

/// A handle to a running hub; cheap to clone, and shared by the HTTP layer and in-process
/// callers.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    apps: HashMap<String, Arc<App>>,
    by_key: HashMap<[u8; 32], Arc<App>>,
    config: Config,
    metrics: Arc<Metrics>,
    /// Durable messages of every app (swept on the maintenance tick).
    inbox: Arc<dyn Inbox>,
    /// A single node's store, flushed at shutdown.
    store: Option<Arc<dyn Store>>,
    next_conn: AtomicU64,
    shutdown: CancellationToken,
}

/// One page of a listing; pass `next_cursor` back as `cursor` for the next one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The items.
    #[serde(flatten)]
    pub items: T,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// An online user and how many connections it holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OnlineUser {
    /// User id.
    pub id: String,
    /// Open connections.
    pub connections: usize,
}

/// Filters of a connection listing.
#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    /// Only this user's.
    pub user: Option<String>,
    /// Only this tenant's.
    pub tenant: Option<String>,
    /// Only those that joined this channel.
    pub channel: Option<String>,
}

/// A long-poll answer.
#[derive(Debug, Clone, Serialize)]
pub struct PollAnswer {
    /// Events in order, control events without `id`.
    pub events: Vec<PolledEvent>,
    /// The position to pass as `lastEventId` next time.
    #[serde(rename = "lastEventId")]
    pub last_event_id: String,
    /// Whether the given id could not be resumed from (the client must refetch its state).
    pub reset: bool,
}

/// One event of a long-poll answer.
#[derive(Debug, Clone, Serialize)]
pub struct PolledEvent {
    /// SSE id; absent on control events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Event name; absent when the publisher gave none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Payload text.
    pub data: String,
}

impl Hub {
    /// Starts a hub with the store its configuration names: Redis when `redis_url` is set
    /// (the node joins a cluster), else SQLite or memory.
    ///
    /// # Errors
    ///
    /// An invalid configuration, or a store that cannot be opened.
    pub async fn new(config: Config) -> Result<Self, crate::StartError> {
        config.validate()?;
        let node: Arc<str> = id::random_token(6).into();
        if let Some(url) = &config.redis_url {
            let apps = config.all_apps().map(|(_, a)| a.id.clone()).collect();
            let ttl = Duration::from_secs(config.presence_ttl_secs);
            let cluster = Cluster::connect(url, node.clone(), apps, ttl).await?;
            return Self::start(config, Persistence::Cluster(cluster), node).await;
        }
        let store: Arc<dyn Store> = match config.store {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Sqlite => Arc::new(SqliteStore::open(&config.store_path, config.store_sync)?),
        };
        Self::start(config, Persistence::Local(store), node).await
    }

    /// Starts a single-node hub on a store of the caller's choosing.
    ///
    /// # Errors
    ///
    /// An invalid configuration, or a store that cannot open an app.
    pub async fn with_store(config: Config, store: Arc<dyn Store>) -> Result<Self, crate::StartError> {
        Self::start(config, Persistence::Local(store), id::random_token(6).into()).await
    }

    async fn start(config: Config, persistence: Persistence, node: Arc<str>) -> Result<Self, crate::StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let mut apps = HashMap::new();
        let mut by_key = HashMap::new();
        for (path, app_config) in config.all_apps() {
            let limits = HistoryLimits {
                max_len: app_config.limits.history_size,
                max_age_ms: app_config.limits.history_age_secs * 1000,
            };
            let (opened, stream_id, backbone, inbox) = match &persistence {
                Persistence::Local(store) => {
                    let opened = store.open_app(&app_config.id, limits).await?;
                    (opened, None, Backbone::Local(store.clone()), store.clone() as Arc<dyn Inbox>)
                }
                Persistence::Cluster(cluster) => {
                    let (opened, stream_id) = cluster.open_app(&app_config.id, limits).await?;
                    (opened, stream_id, Backbone::Cluster(cluster.clone()), cluster.inbox.clone() as Arc<dyn Inbox>)
                }
            };
            let history = opened
                .history
                .into_iter()
                .map(|m| Arc::new(Message::new(&opened.epoch, m.seq, m.time_ms, m.targets, m.event, m.data, m.durable)))
                .collect();
            let log = Log::new(opened.epoch, opened.head, opened.floor, history, limits);
            let webhooks = match (&app_config.webhook_url, &app_config.webhook_secret) {
                (Some(url), Some(secret)) => Some(Webhooks::start(url.clone(), secret.clone(), metrics.clone())),
                _ => None,
            };
            let app = Arc::new(App {
                id: app_config.id.clone(),
                verifier: Verifier::new(&path, app_config)?,
                config: app_config.clone(),
                registry: Registry::new(),
                head: watch::Sender::new(log.head),
                log: Mutex::new(log),
                turn: tokio::sync::Mutex::new(()),
                presence: broadcast::Sender::new(1024),
                webhooks,
                backbone,
                inbox,
                applied: Mutex::new(app::Applied { stream_id, ..Default::default() }),
                metrics: metrics.clone(),
                node: node.clone(),
                retry_ms: config.retry_ms,
                heartbeat_ms: config.heartbeat_secs * 1000,
            });
            if let Some(key) = &app_config.api_key {
                by_key.insert(key_digest(key), app.clone());
            }
            apps.insert(app.id.clone(), app);
        }
        let (inbox, store, cluster) = match persistence {
            Persistence::Local(store) => (store.clone() as Arc<dyn Inbox>, Some(store), None),
            Persistence::Cluster(cluster) => (cluster.inbox.clone() as Arc<dyn Inbox>, None, Some(cluster)),
        };
        let hub = Self {
            inner: Arc::new(Inner {
                apps,
                by_key,
                metrics,
                inbox,
                store,
                next_conn: AtomicU64::new(1),
                shutdown: CancellationToken::new(),
                config,
            }),
        };
        hub.spawn_maintenance();
        if let Some(cluster) = cluster {
            let bus = cluster.consume(hub.inner.apps.keys().cloned().collect());
            tokio::spawn(apply_bus(Arc::downgrade(&hub.inner), bus, cluster));
        }
        Ok(hub)
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The hub's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Open streams across all apps.
    pub fn connection_count(&self) -> usize {
        self.inner.apps.values().map(|a| a.registry.len()).sum()
    }

    fn app(&self, app: &str) -> Result<&Arc<App>, Error> {
        self.inner.apps.get(app).ok_or_else(|| Error::UnknownApp(app.to_string()))
    }

    /// The id of the app whose API key this is.
    pub fn app_for_key(&self, key: &str) -> Option<&str> {
        self.inner.by_key.get(&key_digest(key)).map(|a| a.id.as_str())
    }

    /// The app's configuration.
    pub fn app_config(&self, app: &str) -> Result<&crate::config::AppConfig, Error> {
        self.app(app).map(|a| &a.config)
    }

    /// Publishes one message.
    ///
    /// # Errors
    ///
    /// Invalid input (nothing is sent), or for a durable message a store that could not keep it.
    pub async fn publish(&self, app: &str, publish: Publish) -> Result<Published, Error> {
        let app = self.app(app)?;
        app.validate(&publish)?;
        app.publish(publish).await
    }

    /// Publishes several messages in order. All are validated first: if any is invalid, none is
    /// sent and the error names its index.
    ///
    /// # Errors
    ///
    /// The first invalid item; per-item store failures are in the answers.
    pub async fn publish_batch(&self, app: &str, batch: Vec<Publish>) -> Result<Vec<Result<Published, Error>>, Error> {
        let app = self.app(app)?;
        let max = app.config.limits.max_batch;
        if batch.len() > max {
            return Err(Error::Invalid(format!(
                "the batch has {} items; at most {max} are allowed (`limits.max_batch`)",
                batch.len()
            )));
        }
        for (i, p) in batch.iter().enumerate() {
            app.validate(p).map_err(|e| Error::BatchItem(i, Box::new(e)))?;
        }
        Ok(app.publish_many(batch).await)
    }

    /// Opens a subscriber stream; `kill` closes the client's transport if it stops reading.
    ///
    /// # Errors
    ///
    /// The token, a channel or a connection limit refused it.
    pub(crate) async fn subscribe(
        &self,
        app: &str,
        req: SubscribeRequest,
        kill: Option<CancellationToken>,
    ) -> Result<StreamBody, Error> {
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let app = self.app(app)?;
        let id = self.inner.next_conn.fetch_add(1, Ordering::Relaxed);
        app.subscribe(req, id, kill).await
    }

    /// Verifies a subscriber's token and channels, and returns its claims.
    ///
    /// # Errors
    ///
    /// The token or a channel was refused.
    pub fn authenticate(&self, app: &str, req: &SubscribeRequest) -> Result<crate::auth::Claims, Error> {
        Ok(self.app(app)?.admit(req)?.claims)
    }

    /// Answers a long-poll: at once when something is due, else when something arrives, else
    /// empty after `timeout`.
    ///
    /// # Errors
    ///
    /// The token or a channel was refused.
    pub async fn poll(&self, app: &str, req: SubscribeRequest, timeout: Duration) -> Result<PollAnswer, Error> {
        let app = self.app(app)?;
        let admitted = app.admit(&req)?;
        let mut head = app.head.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let first_call = req.last_event_id.as_deref().is_none_or(str::is_empty);
        let mut last_event_id = req.last_event_id;
        loop {
            head.mark_unchanged();
            let start = app.start(&admitted.who, last_event_id.as_deref()).await;
            let reset = start.reset.is_some();
            let mut events = Vec::new();
            if let Some(reason) = start.reset {
                events.push(PolledEvent {
                    id: None,
                    event: Some("herald.reset".into()),
                    data: serde_json::json!({ "reason": reason }).to_string(),
                });
            }
            // Durable backlog only on a fresh start, or a poll loop would repeat it at once.
            if first_call || reset {
                events.extend(start.pending.iter().map(|m| PolledEvent {
                    id: Some(m.id.clone()),
                    event: m.event.clone(),
                    data: m.data.clone(),
                }));
            }
            events.extend(start.replay.iter().map(|m| PolledEvent {
                id: Some(m.id.clone()),
                event: m.event.clone(),
                data: m.data.clone(),
            }));
            // The replay holds everything for this client up to the head it was read at, so the
            // next call continues from there: a quiet client keeps up with a busy app instead of
            // falling behind the retained history and being told to reset.
            let position = start.head_id;
            if !events.is_empty() || first_call {
                return Ok(PollAnswer { events, last_event_id: position, reset });
            }
            last_event_id = Some(position);
            tokio::select! {
                changed = tokio::time::timeout_at(deadline, head.changed()) => {
                    if !matches!(changed, Ok(Ok(()))) {
                        return Ok(PollAnswer { events, last_event_id: last_event_id.unwrap_or_default(), reset: false });
                    }
                }
                () = self.inner.shutdown.cancelled() => {
                    return Ok(PollAnswer { events, last_event_id: last_event_id.unwrap_or_default(), reset: false });
                }
            }
        }
    }

    /// The connections other cluster nodes hold (none for a single node).
    async fn remote(&self, app: &App) -> Result<Vec<ConnectionInfo>, Error> {
        match &app.backbone {
            Backbone::Local(_) => Ok(Vec::new()),
            Backbone::Cluster(cluster) => Ok(cluster.remote_connections(&app.id).await?),
        }
    }

    /// Online users, ordered by id, `limit` at a time after `cursor`; cluster-wide.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn online_users(
        &self,
        app: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Vec<OnlineUser>>, Error> {
        let app = self.app(app)?;
        let mut users = app.registry.users();
        for remote in self.remote(app).await? {
            if let Some(user) = remote.user {
                *users.entry(user.into()).or_default() += 1;
            }
        }
        let mut items: Vec<OnlineUser> = users
            .range::<str, _>((
                cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded),
                std::ops::Bound::Unbounded,
            ))
            .take(limit + 1)
            .map(|(id, n)| OnlineUser { id: id.to_string(), connections: *n })
            .collect();
        let next_cursor = (items.len() > limit).then(|| {
            items.truncate(limit);
            items.last().map(|u| u.id.clone()).unwrap_or_default()
        });
        Ok(Page { items, next_cursor })
    }

    /// The connections of one user (empty when offline); cluster-wide.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn user_connections(&self, app: &str, user: &str) -> Result<Vec<ConnectionInfo>, Error> {
        let filter = ConnectionFilter { user: Some(user.to_string()), ..ConnectionFilter::default() };
        Ok(self.connections(app, &filter, usize::MAX - 1, None).await?.items)
    }

    /// Open connections matching `filter`, ordered by id, `limit` at a time after `cursor`;
    /// cluster-wide.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn connections(
        &self,
        app: &str,
        filter: &ConnectionFilter,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Vec<ConnectionInfo>>, Error> {
        let app = self.app(app)?;
        let local = match &filter.user {
            Some(user) => app.registry.of_user(user),
            None => app.registry.all(),
        };
        let mut conns: Vec<ConnectionInfo> = local.iter().map(|c| c.info()).chain(self.remote(app).await?).collect();
        conns.retain(|c| {
            cursor.is_none_or(|after| c.id.as_str() > after)
                && filter.user.as_ref().is_none_or(|u| c.user.as_ref() == Some(u))
                && filter.tenant.as_ref().is_none_or(|t| c.tenant.as_ref() == Some(t))
                && filter.channel.as_ref().is_none_or(|ch| c.channels.contains(ch))
        });
        conns.sort_by(|a, b| a.id.cmp(&b.id));
        let more = conns.len() > limit;
        conns.truncate(limit);
        let next_cursor = more.then(|| conns.last().map(|c| c.id.clone()).unwrap_or_default());
        Ok(Page { items: conns, next_cursor })
    }

    /// Closes every stream of a user, on every node, each after a `herald.kicked` event when
    /// `reason` is given; returns how many there were.
    ///
    /// # Errors
    ///
    /// An unknown app, or an unreachable cluster.
    pub async fn kick_user(&self, app: &str, user: &str, reason: Option<&str>) -> Result<usize, Error> {
        let app = self.app(app)?;
        let mut kicked = app.kick_local(Some(user), None, reason);
        if let Backbone::Cluster(cluster) = &app.backbone {
            kicked +=
                cluster.remote_connections(&app.id).await?.iter().filter(|c| c.user.as_deref() == Some(user)).count();
            let kick = Kick { user: Some(user.to_string()), connection: None, reason: reason.map(str::to_owned) };
            cluster.broadcast_kick(&app.id, &kick).await?;
        }
        Ok(kicked)
    }

    /// Closes one stream by its id, on whichever node holds it.
    ///
    /// # Errors
    ///
    /// An unknown app, no such connection, or an unreachable cluster.
    pub async fn kick_connection(&self, app: &str, connection: &str, reason: Option<&str>) -> Result<(), Error> {
        let app = self.app(app)?;
        if app.kick_local(None, Some(connection), reason) == 1 {
            return Ok(());
        }
        if let Backbone::Cluster(cluster) = &app.backbone {
            if cluster.remote_connections(&app.id).await?.iter().any(|c| c.id == connection) {
                let kick =
                    Kick { user: None, connection: Some(connection.to_string()), reason: reason.map(str::to_owned) };
                cluster.broadcast_kick(&app.id, &kick).await?;
                return Ok(());
            }
        }
        Err(Error::NotFound(format!("there is no open connection `{connection}`")))
    }

    /// Comings and goings of an app's connections, from now on.
    ///
    /// # Errors
    ///
    /// An unknown app.
    pub fn presence(&self, app: &str) -> Result<broadcast::Receiver<PresenceEvent>, Error> {
        Ok(self.app(app)?.presence.subscribe())
    }

    /// Acknowledges durable messages of `user`; ids of other users' messages change nothing.
    ///
    /// # Errors
    ///
    /// A malformed id, or a store failure.
    pub async fn ack(&self, app: &str, user: &str, ids: &[String]) -> Result<Acked, Error> {
        let app = self.app(app)?;
        let epoch = app.log.lock().epoch.clone();
        let mut seqs = Vec::with_capacity(ids.len());
        for raw in ids {
            let parsed = id::EventId::parse(raw)
                .ok_or_else(|| Error::Invalid(format!("`{raw}` is not an event id (`<epoch>-<seq>[-d]`)")))?;
            if parsed.epoch == epoch {
                seqs.push(parsed.seq);
            }
        }
        let acked = app.inbox.ack(&app.id, user, seqs).await?;
        if acked.acked > 0 {
            app.unread_changed(&[UnreadChange { app: app.id.clone(), user: user.to_string(), unread: acked.unread }])
                .await;
        }
        Ok(acked)
    }

    /// How many durable messages `user` has not acknowledged.
    ///
    /// # Errors
    ///
    /// A store failure.
    pub async fn unread(&self, app: &str, user: &str) -> Result<u64, Error> {
        let app = self.app(app)?;
        Ok(app.inbox.unread(&app.id, user).await?)
    }

    /// A page of `user`'s durable messages, newest first.
    ///
    /// # Errors
    ///
    /// A malformed cursor, or a store failure.
    pub async fn messages(
        &self,
        app: &str,
        user: &str,
        unread_only: bool,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Vec<UserMessage>>, Error> {
        let app = self.app(app)?;
        let before = match cursor {
            Some(c) => Some(
                id::EventId::parse(c)
                    .map(|i| i.seq)
                    .ok_or_else(|| Error::Invalid(format!("`cursor` `{c}` is not an event id")))?,
            ),
            None => None,
        };
        let mut items =
            app.inbox.messages(&app.id, user, MessageQuery { unread_only, limit: limit + 1, before }).await?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = more.then(|| items.last().map(|m| m.id.clone()).unwrap_or_default());
        Ok(Page { items, next_cursor })
    }

    /// Begins shutdown: new streams are refused, and every open stream gets a `retry:` hint and
    /// ends. In-flight publishes finish on their own.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
        for app in self.inner.apps.values() {
            app.close_all(CloseReason::Shutdown);
        }
    }

    /// Waits until everything the store has queued (history of recent publishes) is on disk.
    pub async fn flush(&self) {
        if let Some(store) = &self.inner.store {
            if let Err(error) = store.flush().await {
                tracing::error!(%error, "Could not flush the store.");
            }
        }
    }

    /// A future that resolves when shutdown begins.
    pub fn shutting_down(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.inner.shutdown.cancelled()
    }

    /// One shared tick for heartbeats, token expiry, history age and durable expiry, rather
    /// than a timer per connection.
    fn spawn_maintenance(&self) {
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
                        if conn.expires_at.is_some_and(|exp| exp * 1000 <= now) {
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

/// What a hub persists through.
enum Persistence {
    Local(Arc<dyn Store>),
    Cluster(Arc<Cluster>),
}

/// Applies the cluster bus to this node's apps, in order.
async fn apply_bus(hub: std::sync::Weak<Inner>, mut bus: tokio::sync::mpsc::Receiver<BusEvent>, cluster: Arc<Cluster>) {
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
