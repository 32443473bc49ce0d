//! Many nodes, one hub: Redis sequences, stores and fans out; each node delivers to its own
//! connections.
//!
//! # How a publish travels
//!
//! One Lua script (see `scripts`) takes the app's next sequence number, appends the message
//! to the app's history stream, stores durable copies per user, and PUBLISHes (SPUBLISHes) it
//! on the app's bus channel — atomically, so every node receives the bus in sequence order and nothing is
//! seen before it is stored. Every node, the publishing one included, applies bus messages to
//! its in-memory history and delivers them; the publishing node answers once its own copy has
//! been applied and the other live nodes reported their counts (or `delivery_report_ms` passed).
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
//! Each node keeps its connections in a hash per app and refreshes its entry in the app's
//! sorted set of live nodes; a node that stops refreshing (killed) drops out of every presence
//! answer after `presence_ttl_secs`, without a refresh per connection.
//!
//! # Topologies and failover
//!
//! `topology` hides whether Redis is one server, a Sentinel-managed primary or a Redis Cluster
//! behind one connection type; `subscribe` consumes the bus with classic or (on Redis Cluster)
//! sharded pub/sub. On Redis Cluster every key of an app shares a hash tag (`keys::space`), so
//! the publish script stays one atomic step on one shard. With `redis_min_replicas`, a publish
//! is answered only once replicas confirmed it (`WAIT`), so a failover loses nothing answered
//! 200; and ids stay unique across a failover that lost the last increments through a floor in
//! every publish, a fence after every reconnection and, as a last resort, a fork of the epoch
//! (docs/CLUSTER.md, "Failover: what is promised").

mod inbox;
mod keys;
mod presence;
mod scripts;
mod subscribe;
mod topology;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub(crate) use inbox::{Record, RedisInbox};
use topology::Conn;
pub(crate) use topology::Topology;

use crate::message::MercureFields;
use crate::message::Targets;
use crate::presence::{Kick, PresenceEvent};
use crate::store::{DurableFor, HistoryLimits, Opened, StoreError, StoredMessage};

/// How long a publish waits for `redis_min_replicas` replicas to confirm it (`WAIT`).
const REPLICA_WAIT_MS: u64 = 1000;
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

impl WireMessage {
    /// The message as history holds it, at position `seq`.
    fn stored(self, seq: u64) -> StoredMessage {
        StoredMessage {
            seq,
            time_ms: self.time_ms,
            targets: self.targets,
            event: self.event,
            data: self.data,
            durable: self.durable,
            mercure: self.mercure,
        }
    }
}

/// What the bus brings, in order.
pub(crate) enum BusEvent {
    /// A published message.
    Message {
        app: String,
        seq: u64,
        stream_id: String,
        epoch: String,
        unread: Vec<(String, u64)>,
        message: WireMessage,
    },
    /// Unread counts changed (acks, expiry).
    Unread { app: String, changes: Vec<(String, u64)> },
    /// A connection came or went on another node.
    Presence { app: String, event: PresenceEvent },
    /// Close connections on whichever node holds them.
    Kick { app: String, kick: Kick },
    /// Other nodes' delivery counts of messages this node published: `(seq, count)`.
    Reports { app: String, counts: Vec<(u64, usize)> },
    /// The consumer (re)subscribed to these apps' buses: anything published meanwhile must be
    /// read from the stream.
    Resubscribed { apps: Vec<String> },
    /// The consumer lost these apps' buses and is reconnecting.
    Unsubscribed { apps: Vec<String> },
}

/// A handle on the cluster's Redis.
pub(crate) struct Cluster {
    pub(crate) node: Arc<str>,
    topology: Topology,
    conn: Conn,
    /// Replicas that must confirm a publish before it is answered (`redis_min_replicas`).
    min_replicas: usize,
    presence_ttl: Duration,
    presence: mpsc::UnboundedSender<(String, PresenceEvent)>,
    /// Set when the bus was (re)subscribed: Redis may have failed over to a replica that missed
    /// the last presence writes, so the next refresh rewrites this node's presence whole.
    presence_resync: std::sync::atomic::AtomicBool,
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
        min_replicas: usize,
    ) -> Result<Arc<Self>, StoreError> {
        // Not quoted: a URL may carry a password.
        let topology = Topology::parse(url).map_err(|e| StoreError::Failed(format!("`redis_url` {e}")))?;
        let conn =
            topology.connect().await.map_err(|e| StoreError::Unavailable(format!("no answer from Redis: {e}")))?;
        let (presence, rx) = mpsc::unbounded_channel();
        let (reports, reports_rx) = mpsc::channel(REPORT_QUEUE);
        let cluster_mode = topology.sharded();
        let cluster = Arc::new(Self {
            node,
            inbox: Arc::new(RedisInbox {
                conn: conn.clone(),
                apps: apps.clone(),
                epochs: Default::default(),
                cluster: cluster_mode,
            }),
            topology,
            conn,
            min_replicas,
            presence_ttl,
            presence,
            presence_resync: Default::default(),
            reports,
        });
        tokio::spawn(cluster.clone().write_presence(rx, apps));
        tokio::spawn(cluster.clone().send_reports(reports_rx));
        Ok(cluster)
    }

    /// The app's name in its keys (see [`keys::space`]).
    fn ns<'a>(&self, app: &'a str) -> std::borrow::Cow<'a, str> {
        keys::space(app, self.topology.sharded())
    }

    /// How this topology publishes on an app's channel: sharded on Redis Cluster.
    fn publish_verb(&self) -> &'static str {
        if self.topology.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    /// A command that publishes on an app's channel.
    fn publish_cmd(&self, channel: String, payload: String) -> redis::Cmd {
        let mut cmd = redis::cmd(self.publish_verb());
        cmd.arg(channel).arg(payload);
        cmd
    }

    /// The app's epoch (created on first use), its head, and its history from the stream.
    pub(crate) async fn open_app(
        &self,
        app: &str,
        limits: HistoryLimits,
    ) -> Result<(Opened, Option<String>), StoreError> {
        let mut conn = self.conn.clone();
        let ns = self.ns(app);
        let _: bool = conn.set_nx(keys::epoch(&ns), crate::id::random_token(6)).await.map_err(unavailable)?;
        let (epoch, head): (String, Option<u64>) = redis::pipe()
            .get(keys::epoch(&ns))
            .get(keys::seq(&ns))
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
        let ns = self.ns(app);
        let (epoch, head): (Option<String>, Option<u64>) = redis::pipe()
            .get(keys::epoch(&ns))
            .get(keys::seq(&ns))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((epoch, head.unwrap_or(0)))
    }

    /// Raises the app's sequence to at least `head` (see `scripts::fence`); returns what it was.
    pub(crate) async fn fence(&self, app: &str, head: u64) -> Result<u64, StoreError> {
        let script = scripts::fence();
        let mut call = script.prepare_invoke();
        call.key(keys::seq(&self.ns(app))).arg(head);
        call.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
    }

    /// Starts a new history for every node if the epoch is still `epoch` (see `scripts::fork`).
    pub(crate) async fn fork(&self, app: &str, epoch: &str) -> Result<(), StoreError> {
        let script = scripts::fork();
        let mut call = script.prepare_invoke();
        call.key(keys::epoch(&self.ns(app))).arg(epoch).arg(crate::id::random_token(6));
        call.invoke_async::<i64>(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(())
    }

    /// Stream entries after `after` (exclusive; the whole stream when `None`), and the id of
    /// the last one read.
    pub(crate) async fn read_stream(
        &self,
        app: &str,
        after: Option<&str>,
    ) -> Result<(Vec<StoredMessage>, Option<String>), StoreError> {
        let mut conn = self.conn.clone();
        let stream = keys::stream(&self.ns(app));
        let mut start = after.map_or("-".to_string(), |id| format!("({id}"));
        let mut out = Vec::new();
        let mut last = after.map(str::to_owned);
        loop {
            let reply: redis::streams::StreamRangeReply =
                conn.xrange_count(&stream, &start, "+", 1000).await.map_err(unavailable)?;
            let n = reply.ids.len();
            for entry in reply.ids {
                let seq: Option<u64> = entry.get("seq");
                let json: Option<String> = entry.get("m");
                if let (Some(seq), Some(Ok(m))) = (seq, json.map(|j| serde_json::from_str::<WireMessage>(&j))) {
                    out.push(m.stored(seq));
                }
                start = format!("({}", entry.id);
                last = Some(entry.id);
            }
            if n < 1000 {
                return Ok((out, last));
            }
        }
    }

    /// Runs the publish script; returns the message's sequence number. `floor` is the highest
    /// sequence this node has applied: the new one is above it even if Redis lost increments.
    ///
    /// With `redis_min_replicas` set, `WAIT` follows the script in the same pipeline (on Redis
    /// Cluster it goes where the script went), so the answer means "on that many replicas";
    /// when fewer confirm within [`REPLICA_WAIT_MS`], the publish fails and says so. The
    /// message then may still have been delivered (it ran on the primary), as when the answer
    /// of a script is lost.
    pub(crate) async fn publish(
        &self,
        app: &str,
        message: &WireMessage,
        durable: Option<(&DurableFor, Record)>,
        limits: HistoryLimits,
        floor: u64,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let ns = self.ns(app);
        let json = serde_json::to_string(message).map_err(|e| StoreError::Failed(e.to_string()))?;
        let script = scripts::publish();
        let mut keys = vec![keys::seq(&ns), keys::stream(&ns), keys::expiry(&ns), keys::epoch(&ns)];
        let mut call = redis::cmd("EVALSHA");
        let (record, expires_ms, users) = match durable {
            Some((durable, record)) => {
                for user in &durable.users {
                    keys.push(keys::inbox(&ns, user));
                    keys.push(keys::read(&ns, user));
                }
                let record = serde_json::to_string(&record).map_err(|e| StoreError::Failed(e.to_string()))?;
                (record, durable.expires_ms, &durable.users[..])
            }
            None => (String::new(), 0, &[][..]),
        };
        call.arg(script.get_hash()).arg(keys.len()).arg(&keys);
        call.arg(json)
            .arg(keys::bus(&ns))
            .arg(limits.max_len)
            .arg(record)
            .arg(expires_ms)
            .arg(self.publish_verb())
            .arg(floor);
        call.arg(users);
        // The script, then (with `redis_min_replicas`) WAIT, in one pipeline: on Redis Cluster
        // the pipeline goes where its keys are, so WAIT asks the primary that ran the script. A
        // primary that does not know the script yet (a fresh one, after a failover) loads it,
        // then the pipeline runs again.
        let mut pipe = redis::pipe();
        pipe.add_command(call);
        if self.min_replicas > 0 {
            pipe.cmd("WAIT").arg(self.min_replicas).arg(REPLICA_WAIT_MS);
        }
        for attempt in 0..2 {
            let answer = match self.min_replicas {
                0 => pipe.query_async::<(u64,)>(&mut conn).await.map(|(seq,)| (seq, 0)),
                _ => pipe.query_async::<(u64, usize)>(&mut conn).await,
            };
            match answer {
                Ok((seq, confirmed)) if confirmed >= self.min_replicas => return Ok(seq),
                Ok((_, confirmed)) => {
                    return Err(StoreError::Unavailable(format!(
                        "only {confirmed} of the {} Redis replicas required by `redis_min_replicas` confirmed the \
                         message within {REPLICA_WAIT_MS} ms; it may still have been delivered",
                        self.min_replicas
                    )))
                }
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError && attempt == 0 => {
                    script.prepare_invoke().load_async(&mut conn).await.map_err(unavailable)?;
                }
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(StoreError::Unavailable("Redis does not keep the publish script".into()))
    }

    /// Tells every node's connections of these users their unread counts.
    pub(crate) async fn broadcast_unread(&self, app: &str, changes: &[(String, u64)]) -> Result<(), StoreError> {
        let payload = format!("u {}", serde_json::to_string(changes).unwrap_or_default());
        let cmd = self.publish_cmd(keys::bus(&self.ns(app)), payload);
        cmd.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }

    /// Asks every node to close the matching connections.
    pub(crate) async fn broadcast_kick(&self, app: &str, kick: &Kick) -> Result<(), StoreError> {
        let payload = format!("k {}", serde_json::to_string(kick).unwrap_or_default());
        let cmd = self.publish_cmd(keys::bus(&self.ns(app)), payload);
        cmd.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }

    /// Live nodes other than this one serving `app`: how many delivery reports a publish waits for.
    pub(crate) async fn peers(&self, app: &str) -> Result<usize, StoreError> {
        Ok(self.live_peers(&mut self.conn.clone(), app).await?.len())
    }

    /// The other nodes that refreshed their presence for `app` within the TTL.
    async fn live_peers(&self, conn: &mut Conn, app: &str) -> Result<Vec<String>, StoreError> {
        let alive_since = crate::message::now_ms().saturating_sub(self.presence_ttl.as_millis() as u64);
        let mut nodes: Vec<String> =
            conn.zrangebyscore(keys::nodes(&self.ns(app)), alive_since, "+inf").await.map_err(unavailable)?;
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
    /// PUBLISH per (app, node), pipelined per app (an app's channels share its slot).
    async fn send_reports(self: Arc<Self>, mut rx: mpsc::Receiver<Report>) {
        let mut conn = self.conn.clone();
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 4096).await > 0 {
            let mut lines: HashMap<String, HashMap<String, String>> = HashMap::new();
            for r in batch.drain(..) {
                let line = lines.entry(r.app).or_default().entry(r.origin).or_default();
                line.push_str(&format!("{} {}\n", r.seq, r.delivered));
            }
            for (app, origins) in lines {
                let mut pipe = redis::pipe();
                for (origin, text) in origins {
                    pipe.add_command(self.publish_cmd(keys::reports(&self.ns(&app), &origin), format!("r {text}")));
                }
                if let Err(error) = pipe.query_async::<()>(&mut conn).await {
                    tracing::debug!(%error, "Could not send delivery reports.");
                }
            }
        }
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
            let mut parts = head.splitn(4, ' ');
            let seq = parts.next()?.parse().ok()?;
            let stream_id = parts.next()?.to_string();
            let epoch = parts.next()?.to_string();
            let flat: Vec<serde_json::Value> = serde_json::from_str(parts.next()?).ok()?;
            let unread =
                flat.chunks(2).filter_map(|p| Some((p.first()?.as_str()?.to_string(), p.get(1)?.as_u64()?))).collect();
            Some(BusEvent::Message { app, seq, stream_id, epoch, unread, message: serde_json::from_str(json).ok()? })
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
