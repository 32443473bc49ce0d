//! Cluster-wide presence: each node keeps its connections in a hash per app and its liveness in
//! the app's sorted set of live nodes; a node that stops refreshing is buried by a live one,
//! which announces its connections' departures on the bus.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use redis::{AsyncCommands, RedisResult};
use tokio::sync::mpsc;

use super::topology::Conn;
use super::{keys, scripts, unavailable, Cluster};
use crate::presence::{ConnectionInfo, PresenceEvent, PresenceKind};
use crate::store::StoreError;

/// An app's connections on this node: id → `ConnectionInfo` as JSON, as its hash holds them.
type Local = HashMap<String, String>;

impl Cluster {
    /// Records a local connection's arrival or departure for the other nodes.
    pub(crate) fn presence_changed(&self, app: &str, event: PresenceEvent) {
        let _ = self.presence.send((app.to_string(), event));
    }

    /// The connections other live nodes hold.
    pub(crate) async fn remote_connections(&self, app: &str) -> Result<Vec<ConnectionInfo>, StoreError> {
        let mut conn = self.conn.clone();
        let nodes = self.live_peers(&mut conn, app).await?;
        let ns = self.ns(app);
        let mut pipe = redis::pipe();
        for node in &nodes {
            pipe.hvals(keys::conns(&ns, node));
        }
        let lists: Vec<Vec<String>> = pipe.query_async(&mut conn).await.map_err(unavailable)?;
        Ok(lists.into_iter().flatten().filter_map(|json| serde_json::from_str(&json).ok()).collect())
    }

    /// Keeps this node's presence in Redis: applies comings and goings as they happen,
    /// refreshes the node's liveness, and rewrites everything after Redis was unreachable.
    /// One pipeline per app, since on Redis Cluster each app lives in its own slot.
    pub(super) async fn write_presence(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<(String, PresenceEvent)>,
        apps: Vec<String>,
    ) {
        let mut conn = self.conn.clone();
        let mut refresh = tokio::time::interval(self.presence_ttl / 3);
        let mut local: HashMap<String, Local> = apps.iter().map(|a| (a.clone(), Local::new())).collect();
        let mut stale: HashSet<String> = apps.iter().cloned().collect();
        loop {
            tokio::select! {
                change = rx.recv() => {
                    let Some((app, event)) = change else { return };
                    let ns = self.ns(&app).into_owned();
                    let id = event.connection.id.clone();
                    let json = serde_json::to_string(&event.connection).unwrap_or_default();
                    let conns = local.entry(app.clone()).or_default();
                    let mut pipe = redis::pipe();
                    match event.kind {
                        PresenceKind::Connect => {
                            conns.insert(id.clone(), json);
                            pipe.hset(keys::conns(&ns, &self.node), &id, &conns[&id]);
                        }
                        PresenceKind::Disconnect => {
                            conns.remove(&id);
                            pipe.hdel(keys::conns(&ns, &self.node), &id);
                        }
                    }
                    let line = format!("p {} {}", self.node, serde_json::to_string(&event).unwrap_or_default());
                    pipe.add_command(self.publish_cmd(keys::bus(&ns), line));
                    if pipe.query_async::<()>(&mut conn).await.is_err() {
                        stale.insert(app);
                    }
                }
                _ = refresh.tick() => {
                    if self.presence_resync.swap(false, Ordering::Relaxed) {
                        stale.extend(apps.iter().cloned());
                    }
                    let now = crate::message::now_ms();
                    for (app, conns) in &local {
                        if self.refresh(&mut conn, app, conns, stale.contains(app), now).await.is_err() {
                            stale.insert(app.clone());
                        } else {
                            stale.remove(app);
                            self.bury_dead_nodes(&mut conn, app, now).await;
                        }
                    }
                }
            }
        }
    }

    /// Refreshes this node's liveness for `app`, and rewrites its connections whole when they
    /// are `stale`. A node that finds itself missing from the live set was buried by a peer
    /// after a silence longer than the TTL (or Redis lost the set): its peers deleted its
    /// connections and told the presence feed they left, so it rewrites them and announces them
    /// again.
    async fn refresh(&self, conn: &mut Conn, app: &str, conns: &Local, stale: bool, now: u64) -> RedisResult<()> {
        let ns = self.ns(app);
        let key = keys::conns(&ns, &self.node);
        let ttl = (self.presence_ttl.as_secs() * 2).max(2) as i64;
        let mut pipe = redis::pipe();
        pipe.zadd(keys::nodes(&ns), &*self.node, now);
        if stale {
            pipe.del(&key).ignore();
            for (id, json) in conns {
                pipe.hset(&key, id, json).ignore();
            }
        }
        pipe.expire(&key, ttl).ignore();
        let (added,): (u64,) = pipe.query_async(conn).await?;
        if added == 0 || conns.is_empty() {
            return Ok(());
        }
        tracing::warn!(app, "This node was missing from the live set; announcing its connections again.");
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let (prefix, suffix) = announcement(&self.node, PresenceKind::Connect, app, &at);
        let mut pipe = redis::pipe();
        pipe.del(&key).ignore();
        for (id, json) in conns {
            pipe.hset(&key, id, json).ignore();
            pipe.add_command(self.publish_cmd(keys::bus(&ns), format!("{prefix}{json}{suffix}"))).ignore();
        }
        pipe.expire(&key, ttl).ignore();
        pipe.query_async(conn).await
    }

    /// Buries the nodes that stopped refreshing (killed): takes each out of the live set,
    /// deletes its connections and announces their departure, in one script that first checks
    /// the node is still silent, so a node that refreshed meanwhile is never buried alive. The
    /// node whose script takes a dead node out does it, once. Their hashes outlive the liveness
    /// bound (twice the TTL), so they can still be read here.
    async fn bury_dead_nodes(&self, conn: &mut Conn, app: &str, now: u64) {
        let ns = self.ns(app);
        let silent_since = now.saturating_sub(self.presence_ttl.as_millis() as u64);
        let dead: Vec<String> = conn.zrangebyscore(keys::nodes(&ns), 0, silent_since).await.unwrap_or_default();
        let at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        for node in dead.into_iter().filter(|n| *n != *self.node) {
            // Sent in the dead node's name, so that every live node, this one too, takes it.
            let (prefix, suffix) = announcement(&node, PresenceKind::Disconnect, app, &at);
            let buried: RedisResult<u64> = scripts::bury()
                .key(keys::nodes(&ns))
                .key(keys::conns(&ns, &node))
                .arg(&node)
                .arg(silent_since)
                .arg(self.publish_verb())
                .arg(keys::bus(&ns))
                .arg(prefix)
                .arg(suffix)
                .invoke_async(conn)
                .await;
            match buried {
                Ok(1) => {
                    tracing::info!(node = %node, app, "A node stopped refreshing its presence; its connections are gone.")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "Could not bury a dead node."),
            }
        }
    }
}

/// The bus line of a presence event of `node`, around the connection's JSON (which Redis holds,
/// so that a script can announce connections it reads): `prefix + connection + suffix`.
fn announcement(node: &str, kind: PresenceKind, app: &str, at: &str) -> (String, &'static str) {
    let kind = serde_json::to_string(&kind).unwrap_or_default();
    let app = serde_json::to_string(app).unwrap_or_default();
    let at = serde_json::to_string(at).unwrap_or_default();
    (format!(r#"p {node} {{"type":{kind},"app":{app},"at":{at},"connection":"#), "}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{parse, BusEvent};

    #[test]
    fn an_announcement_around_a_stored_connection_is_a_presence_event() {
        let connection = ConnectionInfo {
            id: "c1".into(),
            user: Some("ann \"quoted\"".into()),
            tenant: None,
            session: Some("s1".into()),
            channels: vec!["news".into()],
            client_id: None,
            remote_addr: "127.0.0.1:5000".into(),
            user_agent: Some("test".into()),
            connected_at: "2026-11-30T05:59:00Z".into(),
            mercure: None,
        };
        let json = serde_json::to_string(&connection).unwrap();
        let (prefix, suffix) = announcement("dead-node", PresenceKind::Disconnect, "default", "2026-11-30T06:00:00Z");
        let line = format!("{prefix}{json}{suffix}");
        let Some(BusEvent::Presence { app, event }) = parse("default", line.as_bytes(), "live-node") else {
            panic!("not a presence event: {line}")
        };
        assert_eq!((app.as_str(), event.kind, event.connection), ("default", PresenceKind::Disconnect, connection));
        assert_eq!(event.at, "2026-11-30T06:00:00Z");
    }
}
