//! Durable per-user messages in Redis: a hash of records and a hash of read marks per user,
//! and one expiry index per app.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::{BoxFuture, FutureExt};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::topology::Conn;
use super::{keys, scripts, unavailable};
use crate::message::now_ms;
use crate::store::{Acked, Inbox, MessageQuery, StoreError, Swept, UnreadChange, UserMessage};

/// One durable message as stored for each of its users.
/// Its id is derived from the app's epoch and the sequence it is stored under.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) event: Option<String>,
    pub(crate) data: String,
    pub(crate) created_ms: u64,
    pub(crate) expires_ms: u64,
}

/// The Redis side of [`Inbox`].
pub(crate) struct RedisInbox {
    pub(super) conn: Conn,
    pub(super) apps: Vec<String>,
    /// Redis Cluster: keys are named with the app in braces (see `keys::space`).
    pub(super) cluster: bool,
    /// Each app's epoch, which durable ids are made from.
    pub(super) epochs: parking_lot::Mutex<HashMap<String, String>>,
}

impl RedisInbox {
    fn ns(&self, app: &str) -> String {
        keys::space(app, self.cluster).into_owned()
    }

    fn epoch(&self, app: &str) -> String {
        self.epochs.lock().get(app).cloned().unwrap_or_default()
    }

    /// Every durable message of `user`, by sequence, with its read mark.
    async fn load(mut conn: Conn, space: &str, user: &str) -> Result<BTreeMap<u64, (Record, Option<u64>)>, StoreError> {
        let (records, reads): (HashMap<u64, String>, HashMap<u64, u64>) = redis::pipe()
            .hgetall(keys::inbox(space, user))
            .hgetall(keys::read(space, user))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(records
            .into_iter()
            .filter_map(|(seq, json)| {
                Some((seq, (serde_json::from_str::<Record>(&json).ok()?, reads.get(&seq).copied())))
            })
            .collect())
    }
}

fn view(epoch: &str, seq: u64, record: Record, read_ms: Option<u64>) -> UserMessage {
    let id = crate::id::format(epoch, seq, true);
    UserMessage {
        seq,
        id,
        event: record.event,
        data: record.data,
        created_ms: record.created_ms,
        expires_ms: record.expires_ms,
        read_ms,
    }
}

impl Inbox for RedisInbox {
    fn ack(&self, app: &str, user: &str, seqs: Vec<u64>) -> BoxFuture<'static, Result<Acked, StoreError>> {
        let mut conn = self.conn.clone();
        let ns = self.ns(app);
        let (inbox, read) = (keys::inbox(&ns, user), keys::read(&ns, user));
        async move {
            let script = scripts::ack();
            let mut call = script.prepare_invoke();
            call.key(inbox).key(read).arg(now_ms());
            for seq in seqs {
                call.arg(seq);
            }
            let (acked, unread): (u64, i64) = call.invoke_async(&mut conn).await.map_err(unavailable)?;
            Ok(Acked { acked, unread: unread.max(0) as u64 })
        }
        .boxed()
    }

    fn unread(&self, app: &str, user: &str) -> BoxFuture<'static, Result<u64, StoreError>> {
        let conn = self.conn.clone();
        let (ns, user) = (self.ns(app), user.to_string());
        async move {
            let now = now_ms();
            let all = Self::load(conn, &ns, &user).await?;
            Ok(all.values().filter(|(r, read)| read.is_none() && r.expires_ms > now).count() as u64)
        }
        .boxed()
    }

    fn pending(&self, app: &str, user: &str, up_to: u64) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>> {
        let conn = self.conn.clone();
        let epoch = self.epoch(app);
        let (ns, user) = (self.ns(app), user.to_string());
        async move {
            let now = now_ms();
            let all = Self::load(conn, &ns, &user).await?;
            Ok(all
                .into_iter()
                .filter(|(seq, (r, read))| *seq <= up_to && read.is_none() && r.expires_ms > now)
                .map(|(seq, (r, read))| view(&epoch, seq, r, read))
                .collect())
        }
        .boxed()
    }

    fn messages(
        &self,
        app: &str,
        user: &str,
        q: MessageQuery,
    ) -> BoxFuture<'static, Result<Vec<UserMessage>, StoreError>> {
        let conn = self.conn.clone();
        let epoch = self.epoch(app);
        let (ns, user) = (self.ns(app), user.to_string());
        async move {
            let now = now_ms();
            let all = Self::load(conn, &ns, &user).await?;
            Ok(all
                .into_iter()
                .rev()
                .filter(|(seq, (r, read))| {
                    q.before.is_none_or(|b| *seq < b) && r.expires_ms > now && (!q.unread_only || read.is_none())
                })
                .take(q.limit)
                .map(|(seq, (r, read))| view(&epoch, seq, r, read))
                .collect())
        }
        .boxed()
    }

    fn sweep(&self, now_ms: u64) -> BoxFuture<'static, Result<Swept, StoreError>> {
        let mut conn = self.conn.clone();
        let apps = self.apps.clone();
        let cluster = self.cluster;
        async move {
            let mut changes = Vec::new();
            let apps_after = apps.clone();
            for app in apps {
                let ns = keys::space(&app, cluster).into_owned();
                let expired: Vec<String> =
                    conn.zrangebyscore_limit(keys::expiry(&ns), 0, now_ms, 0, 1000).await.map_err(unavailable)?;
                let mut users = Vec::new();
                for member in &expired {
                    let Some((user, seq)) = member.split_once('\n') else { continue };
                    // Only the node whose ZREM removed the entry reports the change.
                    let removed: u64 = conn.zrem(keys::expiry(&ns), member).await.map_err(unavailable)?;
                    if removed == 1 {
                        let _: () = redis::pipe()
                            .hdel(keys::inbox(&ns, user), seq)
                            .hdel(keys::read(&ns, user), seq)
                            .query_async(&mut conn)
                            .await
                            .map_err(unavailable)?;
                        users.push(user.to_string());
                    }
                }
                users.sort();
                users.dedup();
                for user in users {
                    let (total, read): (i64, i64) = redis::pipe()
                        .hlen(keys::inbox(&ns, &user))
                        .hlen(keys::read(&ns, &user))
                        .query_async(&mut conn)
                        .await
                        .map_err(unavailable)?;
                    changes.push(UnreadChange { app: app.clone(), user, unread: (total - read).max(0) as u64 });
                }
            }
            let mut next_expiry_ms: Option<u64> = None;
            for app in &apps_after {
                let first: Vec<(String, u64)> = conn
                    .zrange_withscores(keys::expiry(&keys::space(app, cluster)), 0, 0)
                    .await
                    .map_err(unavailable)?;
                next_expiry_ms = first.into_iter().map(|(_, at)| at).chain(next_expiry_ms).min();
            }
            Ok(Swept { changes, next_expiry_ms })
        }
        .boxed()
    }
}
