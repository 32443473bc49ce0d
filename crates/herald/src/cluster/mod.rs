//! Many nodes, one hub: Redis sequences, stores and fans out; each node delivers to its own
//! connections.
//!
//! # How a publish travels
//!
//! One Lua script (see `scripts`) takes the app's next sequence number, appends the message
//! to the app's history stream, stores durable copies per user, and PUBLISHes it on the app's
//! bus channel — atomically, so every node receives the bus in sequence order and nothing is
//! seen before it is stored. Every node, the publishing one included, applies bus messages to
//! its in-memory history and delivers them; the publishing node answers once its own copy has
//! been applied, so `delivered` counts the connections on that node.
//!
//! # When Redis goes away
//!
//! Pub/sub is at-most-once. The bus consumer reconnects with backoff and, once resubscribed,
//! reads the history stream from the last entry it applied, so a node that was cut off catches
//! up before delivering anything new; if the stream no longer reaches back that far, the node's
//! clients are sent to `herald.reset`. Publishing needs Redis: while it is unreachable, every
//! publish fails fast with 503 and nothing is half-sent.
//!
//! # Presence
//!
//! Each node keeps its connections in a hash per app and refreshes its entry in a sorted set
//! of live nodes; a node that stops refreshing (killed) drops out of every presence answer
//! after `presence_ttl_secs`, without a refresh per connection.

mod inbox;
mod keys;
mod scripts;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub(crate) use inbox::{Record, RedisInbox};

use crate::message::MercureFields;
use crate::message::Targets;
use crate::presence::{ConnectionInfo, Kick, PresenceEvent, PresenceKind};
use crate::store::{DurableFor, HistoryLimits, Opened, StoreError, StoredMessage};

/// How long a command may take before Redis counts as unreachable.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The first wait before resubscribing to the bus; it doubles up to 5 s while Redis stays away.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Bus events waiting for the hub to apply them; a full queue slows the consumer, and Redis
/// disconnects a subscriber that falls too far behind, which triggers a resync.
const BUS_QUEUE: usize = 65_536;
/// Delivery reports waiting to be sent; more are dropped (their publishers answer incomplete).
const REPORT_QUEUE: usize = 65_536;

pub(crate) fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A message as it travels on the bus and sits in the history stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireMessage {
    /// The node that took the publish: the others report their delivery count to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) origin: Option<String>,
    pub(crate) time_ms: u64,
    pub(crate) targets: Targets,
    pub(crate) event: Option<String>,
    pub(crate) data: String,
    pub(crate) durable: bool,
    /// Mercure's extras; absent from native messages and from those of older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) mercure: Option<MercureFields>,
}

impl From<StoredMessage> for WireMessage {
    fn from(m: StoredMessage) -> Self {
        Self {
            origin: None,
            time_ms: m.time_ms,
            targets: m.targets,
            event: m.event,
            data: m.data,
            durable: m.durable,
            mercure: m.mercure,
        }
    }
}

/// What the bus brings, in order.
pub(crate) enum BusEvent {
    /// A published message.
    Message { app: String, seq: u64, stream_id: String, unread: Vec<(String, u64)>, message: WireMessage },
    /// Unread counts changed (acks, expiry).
    Unread { app: String, changes: Vec<(String, u64)> },
    /// A connection came or went on another node.
    Presence { app: String, event: PresenceEvent },
    /// Close connections on whichever node holds them.
    Kick { app: String, kick: Kick },
    /// Other nodes' delivery counts of messages this node published: `(seq, count)`.
    Reports { app: String, counts: Vec<(u64, usize)> },
    /// The consumer (re)subscribed: anything published meanwhile must be read from the stream.
    Resubscribed,
}

/// A handle on the cluster's Redis.
pub(crate) struct Cluster {
    pub(crate) node: Arc<str>,
    client: redis::Client,
    conn: ConnectionManager,
    presence_ttl: Duration,
    presence: mpsc::UnboundedSender<(String, PresenceEvent)>,
    /// Delivery counts on their way to the nodes that published the messages.
    reports: mpsc::Sender<Report>,
    pub(crate) inbox: Arc<RedisInbox>,
}

/// One node's delivery count of one message, for the node that published it.
struct Report {
    app: String,
    origin: String,
    seq: u64,
    delivered: usize,
}

impl Cluster {
    /// Connects, and starts the presence writer. `apps` are the app ids this node serves.
    pub(crate) async fn connect(
        url: &str,
        node: Arc<str>,
        apps: Vec<String>,
        presence_ttl: Duration,
    ) -> Result<Arc<Self>, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Failed(format!("`redis_url`: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT)
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(COMMAND_TIMEOUT * 2, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer from Redis at `{url}`")))?
            .map_err(unavailable)?;
        let (presence, rx) = mpsc::unbounded_channel();
        let (reports, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let cluster = Arc::new(Self {
            node,
            client,
            inbox: Arc::new(RedisInbox { conn: conn.clone(), apps: apps.clone(), epochs: Default::default() }),
            conn,
            presence_ttl,
            presence,
            reports,
        });
        tokio::spawn(cluster.clone().write_presence(rx, apps));
        tokio::spawn(cluster.clone().send_reports(reports_rx));
        Ok(cluster)
    }

    /// The app's epoch (created on first use), its head, and its history from the stream.
    pub(crate) async fn open_app(
        &self,
        app: &str,
        limits: HistoryLimits,
    ) -> Result<(Opened, Option<String>), StoreError> {
        let mut conn = self.conn.clone();
        let _: bool = conn.set_nx(keys::epoch(app), crate::id::random_token(6)).await.map_err(unavailable)?;
        let (epoch, head): (String, Option<u64>) = redis::pipe()
            .get(keys::epoch(app))
            .get(keys::seq(app))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        let head = head.unwrap_or(0);
        self.inbox.epochs.lock().insert(app.to_string(), epoch.clone());
        let oldest = crate::message::now_ms().saturating_sub(limits.max_age_ms);
        let (entries, last_id) = self.read_stream(app, None).await?;
        let history: Vec<StoredMessage> = entries.into_iter().filter(|m| m.time_ms >= oldest).collect();
        let floor = history.first().map_or(head, |m| m.seq - 1);
        Ok((Opened { epoch, head, floor, history }, last_id))
    }

    /// The app's current epoch and head, to detect a Redis that lost its data.
    pub(crate) async fn epoch_and_head(&self, app: &str) -> Result<(Option<String>, u64), StoreError> {
        let (epoch, head): (Option<String>, Option<u64>) = redis::pipe()
            .get(keys::epoch(app))
            .get(keys::seq(app))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((epoch, head.unwrap_or(0)))
    }

    /// Stream entries after `after` (exclusive; the whole stream when `None`), and the id of
    /// the last one read.
    pub(crate) async fn read_stream(
        &self,
        app: &str,
        after: Option<&str>,
    ) -> Result<(Vec<StoredMessage>, Option<String>), StoreError> {
        let mut conn = self.conn.clone();
        let mut start = after.map_or("-".to_string(), |id| format!("({id}"));
        let mut out = Vec::new();
        let mut last = after.map(str::to_owned);
        loop {
            let reply: redis::streams::StreamRangeReply =
                conn.xrange_count(keys::stream(app), &start, "+", 1000).await.map_err(unavailable)?;
            let n = reply.ids.len();
            for entry in reply.ids {
                let seq: Option<u64> = entry.get("seq");
                let json: Option<String> = entry.get("m");
                if let (Some(seq), Some(Ok(m))) = (seq, json.map(|j| serde_json::from_str::<WireMessage>(&j))) {
                    out.push(StoredMessage {
                        seq,
                        time_ms: m.time_ms,
                        targets: m.targets,
                        event: m.event,
                        data: m.data,
                        durable: m.durable,
                        mercure: m.mercure,
                    });
                }
                start = format!("({}", entry.id);
                last = Some(entry.id);
            }
            if n < 1000 {
                return Ok((out, last));
            }
        }
    }

    /// Runs the publish script; returns the message's sequence number.
    pub(crate) async fn publish(
        &self,
        app: &str,
        message: &WireMessage,
        durable: Option<(&DurableFor, Record)>,
        limits: HistoryLimits,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(message).map_err(|e| StoreError::Failed(e.to_string()))?;
        let script = scripts::publish();
        let mut call = script.prepare_invoke();
        call.key(keys::seq(app)).key(keys::stream(app)).key(keys::expiry(app));
        call.arg(json).arg(keys::bus(app)).arg(limits.max_len);
        match durable {
            Some((durable, record)) => {
                for user in &durable.users {
                    call.key(keys::inbox(app, user)).key(keys::read(app, user));
                }
                let record = serde_json::to_string(&record).map_err(|e| StoreError::Failed(e.to_string()))?;
                call.arg(record).arg(durable.expires_ms);
                for user in &durable.users {
                    call.arg(user);
                }
            }
            None => {
                call.arg("").arg(0);
            }
        }
        call.invoke_async(&mut conn).await.map_err(unavailable)
    }

    /// Tells every node's connections of these users their unread counts.
    pub(crate) async fn broadcast_unread(&self, app: &str, changes: &[(String, u64)]) -> Result<(), StoreError> {
        let payload = format!("u {}", serde_json::to_string(changes).unwrap_or_default());
        self.conn.clone().publish(keys::bus(app), payload).await.map_err(unavailable)
    }

    /// Asks every node to close the matching connections.
    pub(crate) async fn broadcast_kick(&self, app: &str, kick: &Kick) -> Result<(), StoreError> {
        let payload = format!("k {}", serde_json::to_string(kick).unwrap_or_default());
        self.conn.clone().publish(keys::bus(app), payload).await.map_err(unavailable)
    }

    /// Live nodes other than this one: how many delivery reports a publish waits for.
    pub(crate) async fn peers(&self) -> Result<usize, StoreError> {
        Ok(self.live_peers(&mut self.conn.clone()).await?.len())
    }

    /// The other nodes that refreshed their presence within the TTL.
    async fn live_peers(&self, conn: &mut ConnectionManager) -> Result<Vec<String>, StoreError> {
        let alive_since = crate::message::now_ms().saturating_sub(self.presence_ttl.as_millis() as u64);
        let mut nodes: Vec<String> = conn.zrangebyscore(keys::NODES, alive_since, "+inf").await.map_err(unavailable)?;
        nodes.retain(|n| **n != *self.node);
        Ok(nodes)
    }

    /// Tells the node that published message `seq` how many connections here got it. Never
    /// waits: reports go out from their own task, batched per node; while Redis is too slow to
    /// take them, they are dropped, and the publisher answers `complete: false`.
    pub(crate) fn report(&self, app: &str, origin: &str, seq: u64, delivered: usize) {
        let report = Report { app: app.to_string(), origin: origin.to_string(), seq, delivered };
        let _ = self.reports.try_send(report);
    }

    /// Sends queued reports: everything waiting at each wake-up, one line per report and one
    /// PUBLISH per (app, node), pipelined.
    async fn send_reports(self: Arc<Self>, mut rx: mpsc::Receiver<Report>) {
        let mut conn = self.conn.clone();
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 4096).await > 0 {
            let mut lines: HashMap<(String, String), String> = HashMap::new();
            for r in batch.drain(..) {
                let line = lines.entry((r.app, r.origin)).or_default();
                line.push_str(&format!("{} {}\n", r.seq, r.delivered));
            }
            let mut pipe = redis::pipe();
            for ((app, origin), text) in lines {
                pipe.publish(keys::reports(&app, &origin), format!("r {text}"));
            }
            if let Err(error) = pipe.query_async::<()>(&mut conn).await {
                tracing::debug!(%error, "Could not send delivery reports.");
            }
        }
    }

    /// Records a local connection's arrival or departure for the other nodes.
    pub(crate) fn presence_changed(&self, app: &str, event: PresenceEvent) {
        let _ = self.presence.send((app.to_string(), event));
    }

    /// The connections other live nodes hold.
    pub(crate) async fn remote_connections(&self, app: &str) -> Result<Vec<ConnectionInfo>, StoreError> {
        let mut conn = self.conn.clone();
        let nodes = self.live_peers(&mut conn).await?;
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.hvals(keys::conns(app, node));
        }
        let lists: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(lists.into_iter().flatten().filter_map(|json| serde_json::from_str(&json).ok()).collect())
    }

    /// Keeps this node's presence in Redis: applies comings and goings as they happen,
    /// refreshes the node's liveness, and rewrites everything after Redis was unreachable.
    async fn write_presence(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<(String, PresenceEvent)>,
        apps: Vec<String>,
    ) {
        let mut conn = self.conn.clone();
        let mut refresh = tokio::time::interval(self.presence_ttl / 3);
        let mut local: HashMap<String, HashMap<String, String>> =
            apps.iter().map(|a| (a.clone(), HashMap::new())).collect();
        let mut stale = true;
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some((app, event)) = change else { return };
                    let id = event.connection.id.clone();
                    let json = serde_json::to_string(&event.connection).unwrap_or_default();
                    let conns = local.entry(app.clone()).or_default();
                    let mut pipe = redis::pipe();
                    match event.kind {
                        PresenceKind::Connect => {
                            conns.insert(id.clone(), json);
                            pipe.hset(keys::conns(&app, &self.node), &id, &conns[&id]);
                        }
                        PresenceKind::Disconnect => {
                            conns.remove(&id);
                            pipe.hdel(keys::conns(&app, &self.node), &id);
                        }
                    }
                    let line = format!("p {} {}", self.node, serde_json::to_string(&event).unwrap_or_default());
                    pipe.publish(keys::bus(&app), line);
                    if pipe.query_async::<()>(&mut conn).await.is_err() {
                        stale = true;
                    }
                }
                _ = refresh.tick() => {
                    let now = crate::message::now_ms();
                    let ttl = (self.presence_ttl.as_secs() * 2).max(2) as i64;
                    let mut pipe = redis::pipe();
                    pipe.zadd(keys::NODES, &*self.node, now);
                    for (app, conns) in &local {
                        let key = keys::conns(app, &self.node);
                        if stale {
                            pipe.del(&key);
                            for (id, json) in conns {
                                pipe.hset(&key, id, json);
                            }
                        }
                        pipe.expire(&key, ttl);
                    }
                    stale = pipe.query_async::<()>(&mut conn).await.is_err();
                    if !stale {
                        self.bury_dead_nodes(&mut conn, &apps, now).await;
                    }
                }
            }
        }
    }

    /// Announces the departure of every connection of nodes that stopped refreshing (killed),
    /// once: the node whose ZREM takes a dead node out of the live set does it. Their hashes
    /// outlive the liveness bound (twice the TTL), so they can still be read here.
    async fn bury_dead_nodes(&self, conn: &mut ConnectionManager, apps: &[String], now: u64) {
        let silent_since = now.saturating_sub(self.presence_ttl.as_millis() as u64);
        let dead: Vec<String> = conn.zrangebyscore(keys::NODES, 0, silent_since).await.unwrap_or_default();
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        for node in dead.into_iter().filter(|n| *n != *self.node) {
            if conn.zrem::<_, _, u64>(keys::NODES, &node).await.unwrap_or(0) != 1 {
                continue;
            }
            for app in apps {
                let key = keys::conns(app, &node);
                let gone: Vec<String> = conn.hvals(&key).await.unwrap_or_default();
                let mut pipe = redis::pipe();
                for connection in gone.iter().filter_map(|json| serde_json::from_str::<ConnectionInfo>(json).ok()) {
                    let event =
                        PresenceEvent { kind: PresenceKind::Disconnect, app: app.clone(), connection, at: at.clone() };
                    // Sent in the dead node's name, so that every live node, this one too, takes it.
                    pipe.publish(
                        keys::bus(app),
                        format!("p {node} {}", serde_json::to_string(&event).unwrap_or_default()),
                    );
                }
                pipe.del(&key);
                if let Err(error) = pipe.query_async::<()>(conn).await {
                    tracing::warn!(%error, "Could not announce a dead node's departures.");
                }
            }
            tracing::info!(node = %node, "A node stopped refreshing its presence; its connections are gone.");
        }
    }

    /// Consumes every app's bus, forever: subscribes, reports `Resubscribed`, forwards events
    /// in order, and on any failure reconnects with backoff.
    pub(crate) fn consume(self: &Arc<Self>, apps: Vec<String>) -> mpsc::Receiver<BusEvent> {
        let (tx, rx) = mpsc::channel(BUS_QUEUE);
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                match cluster.subscribe(&apps, &tx, &mut backoff).await {
                    Ok(()) => return,
                    Err(error) => {
                        tracing::warn!(%error, "Lost the cluster bus; reconnecting.");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        rx
    }

    /// One subscription's life; `Ok` only when the hub is gone. Once subscribed, the backoff
    /// starts over, so a blip after a long outage is not waited out at the longest backoff.
    async fn subscribe(
        &self,
        apps: &[String],
        tx: &mpsc::Sender<BusEvent>,
        backoff: &mut Duration,
    ) -> Result<(), redis::RedisError> {
        let mut pubsub = tokio::time::timeout(COMMAND_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| redis::RedisError::from((redis::ErrorKind::IoError, "timed out connecting to Redis")))??;
        for app in apps {
            pubsub.subscribe(keys::bus(app)).await?;
            pubsub.subscribe(keys::reports(app, &self.node)).await?;
        }
        if tx.send(BusEvent::Resubscribed).await.is_err() {
            return Ok(());
        }
        tracing::info!("Subscribed to the cluster bus.");
        *backoff = FIRST_BACKOFF;
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let channel = msg.get_channel_name();
            let Some(app) = keys::app_of_bus(channel).or_else(|| keys::app_of_reports(channel, &self.node)) else {
                continue;
            };
            let Some(event) = parse(app, msg.get_payload_bytes(), &self.node) else { continue };
            if tx.send(event).await.is_err() {
                return Ok(());
            }
        }
        Err(redis::RedisError::from((redis::ErrorKind::IoError, "the bus connection closed")))
    }
}

/// Decodes one bus line; events a node sent about itself are skipped.
pub(crate) fn parse(app: &str, payload: &[u8], own_node: &str) -> Option<BusEvent> {
    let text = std::str::from_utf8(payload).ok()?;
    let (kind, rest) = text.split_once(' ')?;
    let app = app.to_string();
    match kind {
        "m" => {
            let (head, json) = rest.split_once('\n')?;
            let mut parts = head.splitn(3, ' ');
            let seq = parts.next()?.parse().ok()?;
            let stream_id = parts.next()?.to_string();
            let flat: Vec<serde_json::Value> = serde_json::from_str(parts.next()?).ok()?;
            let unread =
                flat.chunks(2).filter_map(|p| Some((p.first()?.as_str()?.to_string(), p.get(1)?.as_u64()?))).collect();
            Some(BusEvent::Message { app, seq, stream_id, unread, message: serde_json::from_str(json).ok()? })
        }
        "u" => Some(BusEvent::Unread { app, changes: serde_json::from_str(rest).ok()? }),
        "p" => {
            let (node, json) = rest.split_once(' ')?;
            (node != own_node)
                .then(|| serde_json::from_str(json).ok().map(|event| BusEvent::Presence { app, event }))?
        }
        "k" => Some(BusEvent::Kick { app, kick: serde_json::from_str(rest).ok()? }),
        "r" => {
            let counts = rest
                .lines()
                .filter_map(|line| {
                    let (seq, n) = line.split_once(' ')?;
                    Some((seq.parse().ok()?, n.parse().ok()?))
                })
                .collect();
            Some(BusEvent::Reports { app, counts })
        }
        _ => None,
    }
}
