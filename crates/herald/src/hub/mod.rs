//! The hub: apps, their connections, and every operation a backend or a subscriber performs.
//!
//! # Publishing, step by step
//!
//! 1. Validate; nothing happens to a publish that fails.
//! 2. Under the app's log lock, briefly: take the next sequence number, encode the frame once,
//!    enqueue it to the store, and put the message in the app's `ready` queue.
//! 3. Take the app's turn (an async lock, so waiting publishers yield their thread) and, in it,
//!    append to history and deliver everything `ready` holds, in id order: messages from
//!    publishers that queued behind the last fan-out go out together, and consecutive ones with
//!    the same addresses as one run (one push, one wakeup, one write per connection for all of
//!    them). A publisher may find its message already delivered by the turn's previous holder.
//! 4. Delivery hands the shared frame (or the run's joined frames) to every matching connection,
//!    shard by shard, each shard under its own short lock. A full queue closes its connection;
//!    the publisher never waits for a subscriber. Appending and delivering are what is
//!    serialised per app; a stream reading history takes the turn too, so it never sees a
//!    message that is appended but not yet delivered.
//! 5. Durable only (and whatever is sequenced behind a durable message still committing): the
//!    message is *held* instead of appended and delivered; once the store's group commit
//!    resolves, the messages that may go join `ready` behind what it holds (sequenced earlier)
//!    and steps 3 and 4 deliver them, so a durable publish answered with an error reached nobody
//!    (`held`). Then its users hear their unread count.

mod app;
mod backbone;
mod body;
mod conn;
mod directory;
mod durable;
mod held;
mod inspect;
pub(crate) mod log;
mod maintenance;
pub mod mercure;
mod observe;
mod outbox;
mod poll;
mod publish;
mod registry;
mod subscribe;
mod webhooks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use crate::presence::{ConnectionInfo, PresenceEvent, PresenceKind};
pub use directory::{ConnectionFilter, OnlineUser};
pub(crate) use inspect::AppGauges;
pub use mercure::{MercureError, MercurePublish, MercureStream, MercureSubscribe, SubscriptionsQuery};
pub use observe::NotReady;
pub use poll::{PollAnswer, PolledEvent};
pub use subscribe::SubscribeRequest;

use app::App;
use backbone::{Backbone, Local, Redis};
pub(crate) use body::StreamBody;
use log::Log;
use outbox::CloseReason;
use registry::Registry;
use webhooks::Webhooks;

use crate::auth::{key_digest, Verifier};
use crate::cluster::Cluster;
use crate::config::{Config, StoreKind};
use crate::error::Error;
use crate::id;
use crate::message::{Message, Publish, Published};
use crate::metrics::{Metrics, Outcome, Target};
use crate::store::{HistoryLimits, Inbox, MemoryStore, SqliteStore, Store};

/// A handle to a running hub; cheap to clone, and shared by the HTTP layer and in-process
/// callers.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    apps: HashMap<String, Arc<App>>,
    by_key: HashMap<[u8; 32], Arc<App>>,
    config: Config,
    metrics: Arc<Metrics>,
    /// Durable messages of every app (swept on the maintenance tick).
    inbox: Arc<dyn Inbox>,
    /// Who sequences, persists and fans out; flushed at shutdown.
    backbone: Arc<dyn Backbone>,
    next_conn: AtomicU64,
    /// When the sweeper should next run: the earliest known expiry of an unread message.
    next_expiry: watch::Sender<u64>,
    shutdown: CancellationToken,
}

/// One page of a listing; pass `next_cursor` back as `cursor` for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: T,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
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
            let apps: Vec<String> = config.all_apps().map(|(_, a)| a.id.clone()).collect();
            let ttl = Duration::from_secs(config.presence_ttl_secs);
            let cluster = Cluster::connect(url, node.clone(), apps.clone(), ttl, config.redis_min_replicas).await?;
            let report_wait = Duration::from_millis(config.delivery_report_ms);
            return Self::start(config, Arc::new(Redis::new(cluster, report_wait, apps)), node).await;
        }
        let store: Arc<dyn Store> = match config.store {
            StoreKind::Memory => Arc::new(MemoryStore::new()),
            StoreKind::Sqlite => {
                Arc::new(SqliteStore::open(&config.store_path, config.store_sync, config.store_max_bytes)?)
            }
        };
        Self::start(config, Arc::new(Local::new(store)), node).await
    }

    /// Starts a single-node hub on a store of the caller's choosing.
    ///
    /// # Errors
    ///
    /// An invalid configuration, or a store that cannot open an app.
    pub async fn with_store(config: Config, store: Arc<dyn Store>) -> Result<Self, crate::StartError> {
        Self::start(config, Arc::new(Local::new(store)), id::random_token(6).into()).await
    }

    async fn start(config: Config, backbone: Arc<dyn Backbone>, node: Arc<str>) -> Result<Self, crate::StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::default());
        let mut apps = HashMap::new();
        let mut by_key = HashMap::new();
        let next_expiry = watch::Sender::new(u64::MAX);
        for (path, app_config) in config.all_apps() {
            let limits = HistoryLimits {
                max_len: app_config.limits.history_size,
                max_age_ms: app_config.limits.history_age_secs.saturating_mul(1000),
                max_bytes: app_config.limits.history_bytes,
            };
            let (opened, stream_id) = backbone.open_app(&app_config.id, limits).await?;
            let history = opened
                .history
                .into_iter()
                .map(|m| {
                    Arc::new(Message::with_mercure(
                        &opened.epoch,
                        m.seq,
                        m.time_ms,
                        m.targets,
                        m.event,
                        m.data,
                        m.durable,
                        m.mercure,
                    ))
                })
                .collect();
            let log = Log::new(opened.epoch, opened.head, opened.floor, history, limits);
            let webhooks = match (&app_config.webhook_url, &app_config.webhook_secret) {
                (Some(url), Some(secret)) => {
                    Some(Webhooks::start(url.clone(), secret.clone(), metrics.app(&app_config.id)))
                }
                _ => None,
            };
            let mut mercure = mercure::MercureApp::new(&path, app_config)?;
            let verifier = Verifier::new(&path, app_config)?;
            let app = Arc::new_cyclic(|weak| App {
                mercure: mercure.take().map(|mut m| {
                    m.start_events(weak.clone(), app_config.mercure.subscriptions);
                    m
                }),
                id: app_config.id.clone(),
                verifier,
                config: app_config.clone(),
                registry: Registry::new(),
                head: watch::Sender::new(log.head),
                log: Mutex::new(log),
                turn: tokio::sync::Mutex::new(()),
                held: Mutex::default(),
                ready: Mutex::default(),
                next_expiry: next_expiry.clone(),
                presence: broadcast::Sender::new(1024),
                webhooks,
                backbone: backbone.clone(),
                inbox: backbone.inbox(),
                applied: Mutex::new(backbone::Applied::at(stream_id)),
                metrics: metrics.app(&app_config.id),
                node: node.clone(),
                retry_ms: config.retry_ms,
                heartbeat_ms: config.heartbeat_secs.saturating_mul(1000),
            });
            if let Some(key) = &app_config.api_key {
                by_key.insert(key_digest(key), app.clone());
            }
            apps.insert(app.id.clone(), app);
        }
        let hub = Self {
            inner: Arc::new(Inner {
                apps,
                by_key,
                metrics,
                inbox: backbone.inbox(),
                backbone: backbone.clone(),
                next_conn: AtomicU64::new(1),
                next_expiry,
                shutdown: CancellationToken::new(),
                config,
            }),
        };
        hub.spawn_maintenance();
        hub.spawn_sweeper();
        backbone.start(Arc::downgrade(&hub.inner));
        Ok(hub)
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The hub's metric families (see [`Hub::render_metrics`] for the exposition).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Open streams across all apps.
    pub fn connection_count(&self) -> usize {
        self.inner.apps.values().map(|a| a.registry.len()).sum()
    }

    pub(crate) fn app(&self, app: &str) -> Result<&Arc<App>, Error> {
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
        let (started, target) = (std::time::Instant::now(), Target::of(&publish.to));
        if let Err(e) = app.validate(&publish) {
            app.metrics.published(target, Outcome::Invalid);
            return Err(e);
        }
        let answer = app.publish(publish).await;
        app.metrics.published(target, if answer.is_ok() { Outcome::Ok } else { Outcome::Failed });
        app.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        answer
    }

    /// Publishes several messages in order. All are validated first: if any is invalid, none is
    /// sent and the error names its index.
    ///
    /// # Errors
    ///
    /// The first invalid item; per-item store failures are in the answers.
    pub async fn publish_batch(&self, app: &str, batch: Vec<Publish>) -> Result<Vec<Result<Published, Error>>, Error> {
        let app = self.app(app)?;
        let started = std::time::Instant::now();
        let targets: Vec<Target> = batch.iter().map(|p| Target::of(&p.to)).collect();
        let refused = |targets: &[Target]| targets.iter().for_each(|t| app.metrics.published(*t, Outcome::Invalid));
        let max = app.config.limits.max_batch;
        if batch.len() > max {
            refused(&targets);
            return Err(Error::Invalid(format!(
                "the batch has {} items; at most {max} are allowed (`limits.max_batch`)",
                batch.len()
            )));
        }
        for (i, p) in batch.iter().enumerate() {
            app.validate(p).map_err(|e| Error::BatchItem(i, Box::new(e))).inspect_err(|_| refused(&targets))?;
        }
        let answers = app.publish_many(batch).await;
        for (answer, target) in answers.iter().zip(targets) {
            app.metrics.published(target, if answer.is_ok() { Outcome::Ok } else { Outcome::Failed });
        }
        app.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        Ok(answers)
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
        if let Err(error) = self.inner.backbone.flush().await {
            tracing::error!(%error, "Could not flush the store.");
        }
    }

    /// A future that resolves when shutdown begins.
    pub fn shutting_down(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.inner.shutdown.cancelled()
    }
}
