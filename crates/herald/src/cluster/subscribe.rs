//! The bus consumer: classic pub/sub on one server or a Sentinel-managed primary, sharded
//! pub/sub (`SSUBSCRIBE`) on the shard that owns each app's slot on Redis Cluster. Either way a
//! lost subscription is re-established — where the primary is *now* — and reported as
//! `Resubscribed`, after which the hub reads what it missed from the history stream.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{AsyncConnectionConfig, ErrorKind, PushKind, RedisError, Value};
use tokio::sync::mpsc;

use super::topology::{bounded, info, Topology, COMMAND_TIMEOUT};
use super::{keys, parse, BusEvent, Cluster, BUS_QUEUE, FIRST_BACKOFF};

/// How often a subscriber checks that it still listens to the right server: on Sentinel, that
/// the primary has not moved (a demoted primary keeps its subscribers); on Redis Cluster, that
/// the shard answers.
const CHECK_EVERY: Duration = Duration::from_secs(1);

fn lost(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::IoError, what))
}

impl Cluster {
    /// Consumes every app's bus, forever: subscribes, reports `Resubscribed`, forwards events
    /// in order, and on any failure reconnects with backoff. On Redis Cluster each app has its
    /// own subscriber (apps live on different shards), all feeding the one queue.
    pub(crate) fn consume(self: &Arc<Self>, apps: Vec<String>) -> mpsc::Receiver<BusEvent> {
        let (tx, rx) = mpsc::channel(BUS_QUEUE);
        let groups: Vec<Vec<String>> = match self.topology.sharded() {
            true => apps.into_iter().map(|a| vec![a]).collect(),
            false => vec![apps],
        };
        for apps in groups {
            let (cluster, tx) = (self.clone(), tx.clone());
            tokio::spawn(async move {
                let mut backoff = FIRST_BACKOFF;
                loop {
                    let life = match &cluster.topology {
                        Topology::Cluster { .. } => cluster.subscribe_sharded(&apps[0], &tx, &mut backoff).await,
                        _ => cluster.subscribe_classic(&apps, &tx, &mut backoff).await,
                    };
                    match life {
                        Ok(()) => return,
                        Err(error) => {
                            tracing::warn!(%error, "Lost the cluster bus; reconnecting.");
                            if tx.send(BusEvent::Unsubscribed { apps: apps.clone() }).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            });
        }
        rx
    }

    /// One classic subscription's life; `Ok` only when the hub is gone. Once subscribed, the
    /// backoff starts over, so a blip after a long outage is not waited out at the longest
    /// backoff.
    async fn subscribe_classic(
        &self,
        apps: &[String],
        tx: &mpsc::Sender<BusEvent>,
        backoff: &mut Duration,
    ) -> Result<(), RedisError> {
        let (client, sentinel) = match &self.topology {
            Topology::Single(client) => (client.clone(), None),
            Topology::Sentinel(sentinel) => (sentinel.primary().await?, Some(sentinel)),
            Topology::Cluster { .. } => unreachable!("Redis Cluster subscribes per shard"),
        };
        let subscribed_to = client.get_connection_info().addr.to_string();
        let mut pubsub = bounded(COMMAND_TIMEOUT, client.get_async_pubsub()).await?;
        for app in apps {
            let ns = self.ns(app);
            pubsub.subscribe(keys::bus(&ns)).await?;
            pubsub.subscribe(keys::reports(&ns, &self.node)).await?;
        }
        if tx.send(BusEvent::Resubscribed { apps: apps.to_vec() }).await.is_err() {
            return Ok(());
        }
        self.presence_resync.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!("Subscribed to the cluster bus.");
        *backoff = FIRST_BACKOFF;
        let mut messages = pubsub.into_on_message();
        let mut check = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                msg = messages.next() => {
                    let Some(msg) = msg else { return Err(lost("the bus connection closed")) };
                    if self.forward(msg.get_channel_name(), msg.get_payload_bytes(), tx).await.is_err() {
                        return Ok(());
                    }
                }
                _ = check.tick(), if sentinel.is_some() => {
                    // Sentinel moved the primary: the old one, demoted, would go on serving this
                    // subscription while missing what was published meanwhile.
                    let Some(sentinel) = sentinel else { continue };
                    if let Ok((host, port)) = sentinel.primary_address().await {
                        if info(host, port, None).addr.to_string() != subscribed_to {
                            // Requests follow too: a server that still calls itself primary
                            // would otherwise keep them until it is demoted.
                            sentinel.forget();
                            return Err(lost("Sentinel names a new primary"));
                        }
                    }
                }
            }
        }
    }

    /// One sharded subscription's life (Redis Cluster): finds the primary that owns the app's
    /// slot, `SSUBSCRIBE`s there (RESP3, messages arrive as pushes), and gives up — to find the
    /// owner again — when the connection breaks, the shard unsubscribes it (its slot moved),
    /// or it stops answering.
    async fn subscribe_sharded(
        &self,
        app: &str,
        tx: &mpsc::Sender<BusEvent>,
        backoff: &mut Duration,
    ) -> Result<(), RedisError> {
        let Topology::Cluster { password, .. } = &self.topology else { unreachable!("only on Redis Cluster") };
        let ns = self.ns(app);
        let (bus, reports) = (keys::bus(&ns), keys::reports(&ns, &self.node));
        let (host, port) = self.slot_owner(&bus).await?;
        let mut owner = info(host, port, password.clone());
        owner.redis.protocol = redis::ProtocolVersion::RESP3;
        let (push, mut pushes) = mpsc::unbounded_channel();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(COMMAND_TIMEOUT)
            .set_response_timeout(COMMAND_TIMEOUT)
            .set_push_sender(push);
        let client = redis::Client::open(owner)?;
        let mut conn = bounded(COMMAND_TIMEOUT, client.get_multiplexed_async_connection_with_config(&config)).await?;
        redis::cmd("SSUBSCRIBE").arg(&bus).arg(&reports).exec_async(&mut conn).await?;
        if tx.send(BusEvent::Resubscribed { apps: vec![app.to_string()] }).await.is_err() {
            return Ok(());
        }
        self.presence_resync.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(app, "Subscribed to the app's shard of the cluster bus.");
        *backoff = FIRST_BACKOFF;
        let mut check = tokio::time::interval(CHECK_EVERY);
        loop {
            tokio::select! {
                push = pushes.recv() => {
                    let Some(push) = push else { return Err(lost("the bus connection closed")) };
                    match push.kind {
                        PushKind::SMessage => {
                            let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                                (push.data.first(), push.data.get(1))
                            else {
                                continue;
                            };
                            let channel = String::from_utf8_lossy(channel);
                            if self.forward(&channel, payload, tx).await.is_err() {
                                return Ok(());
                            }
                        }
                        PushKind::SUnsubscribe => return Err(lost("the app's slot moved to another shard")),
                        PushKind::Disconnection => return Err(lost("the shard's connection closed")),
                        _ => {}
                    }
                }
                _ = check.tick() => {
                    redis::cmd("PING").exec_async(&mut conn).await?;
                }
            }
        }
    }

    /// The primary that owns `key`'s slot now, as the cluster tells it.
    async fn slot_owner(&self, key: &str) -> Result<(String, u16), RedisError> {
        let mut conn = self.conn.clone();
        let slot: i64 = redis::cmd("CLUSTER").arg("KEYSLOT").arg(key).query_async(&mut conn).await?;
        let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await?;
        for range in ranges {
            let Value::Array(parts) = range else { continue };
            let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
                (parts.first(), parts.get(1), parts.get(2))
            else {
                continue;
            };
            if (*start..=*end).contains(&slot) {
                if let (Some(host), Some(Value::Int(port))) = (primary.first(), primary.get(1)) {
                    let host: String = redis::from_redis_value(host)?;
                    return Ok((host, *port as u16));
                }
            }
        }
        Err(lost("no shard owns the app's slot"))
    }

    /// Hands one bus line to the hub; `Err` when the hub is gone.
    async fn forward(&self, channel: &str, payload: &[u8], tx: &mpsc::Sender<BusEvent>) -> Result<(), ()> {
        let Some(space) = keys::app_of_bus(channel).or_else(|| keys::app_of_reports(channel, &self.node)) else {
            return Ok(());
        };
        let Some(event) = parse(keys::app_of_space(space), payload, &self.node) else { return Ok(()) };
        tx.send(event).await.map_err(|_| ())
    }
}
