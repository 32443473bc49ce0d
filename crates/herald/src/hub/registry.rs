//! The connections of one app, sharded so that publishing never takes a global lock.
//!
//! A connection lives in the shard of its user (anonymous ones in the shard of their id), so
//! everything about one user — its connection count, a publish to it, a kick — touches one
//! shard. Each shard indexes its connections by user, session, tenant and channel; a publish to
//! a tenant or channel visits every shard, each under its own short lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use super::conn::Conn;
use crate::message::{Message, Targets};

const SHARDS: usize = 32;

/// Connections by one attribute. The lists hold the connections themselves, so a publish goes
/// from an address to its recipients without a lookup per recipient.
type Index = HashMap<Arc<str>, Vec<Arc<Conn>>>;

#[derive(Default)]
struct Shard {
    conns: HashMap<u64, Arc<Conn>>,
    users: Index,
    /// The keys of `users` in order, so that a page of `GET /api/users` reads `limit` users
    /// after its cursor instead of sorting everybody online.
    online: BTreeSet<Arc<str>>,
    sessions: Index,
    tenants: Index,
    channels: Index,
}

impl Shard {
    fn index(&mut self, conn: &Arc<Conn>) {
        let who = &conn.who;
        for (index, key) in
            [(&mut self.users, &who.user), (&mut self.sessions, &who.session), (&mut self.tenants, &who.tenant)]
        {
            if let Some(key) = key {
                index.entry(key.clone()).or_default().push(conn.clone());
            }
        }
        for channel in &who.channels {
            self.channels.entry(channel.clone()).or_default().push(conn.clone());
        }
        if let Some(user) = &who.user {
            if self.users.get(user).map_or(0, Vec::len) == 1 {
                self.online.insert(user.clone());
            }
        }
    }

    fn unindex(&mut self, conn: &Conn) {
        fn drop_from(index: &mut Index, key: &Arc<str>, id: u64) {
            if let Some(conns) = index.get_mut(key) {
                conns.retain(|c| c.id != id);
                if conns.is_empty() {
                    index.remove(key);
                }
            }
        }
        let who = &conn.who;
        for (index, key) in
            [(&mut self.users, &who.user), (&mut self.sessions, &who.session), (&mut self.tenants, &who.tenant)]
        {
            if let Some(key) = key {
                drop_from(index, key, conn.id);
            }
        }
        for channel in &who.channels {
            drop_from(&mut self.channels, channel, conn.id);
        }
        if let Some(user) = &who.user {
            if !self.users.contains_key(user) {
                self.online.remove(user);
            }
        }
    }

    /// The connections `targets` reaches, each once.
    fn matching(&self, targets: &Targets) -> Vec<&Arc<Conn>> {
        if targets.all {
            return self.conns.values().collect();
        }
        let mut found = Vec::new();
        let mut lists = 0;
        for (index, keys) in [
            (&self.users, &targets.users),
            (&self.sessions, &targets.sessions),
            (&self.tenants, &targets.tenants),
            (&self.channels, &targets.channels),
        ] {
            for key in keys {
                if let Some(conns) = index.get(key.as_str()) {
                    found.extend(conns);
                    lists += 1;
                }
            }
        }
        // A connection can be in two lists (its user and its channel, say): it gets one copy.
        if lists > 1 {
            found.sort_unstable_by_key(|c| c.id);
            found.dedup_by_key(|c| c.id);
        }
        found
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    UserLimit(usize),
    AddressLimit(usize),
}

/// The sharded connection registry of one app.
pub(crate) struct Registry {
    shards: Box<[Mutex<Shard>]>,
    /// Open connections per remote address; touched on connect and disconnect only.
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::default()).collect(), per_address: Mutex::default() }
    }

    fn shard_of(&self, user: Option<&str>, id: u64) -> &Mutex<Shard> {
        let hash = match user {
            Some(user) => BuildHasherDefault::<DefaultHasher>::default().hash_one(user),
            None => id,
        };
        &self.shards[(hash % SHARDS as u64) as usize]
    }

    fn shard_of_conn(&self, conn: &Conn) -> &Mutex<Shard> {
        self.shard_of(conn.who.user.as_deref(), conn.id)
    }

    /// Admits `conn` unless its user or its address is at its limit.
    pub(crate) fn insert(&self, conn: Arc<Conn>, per_user: usize, per_address: usize) -> Result<(), Refused> {
        {
            let mut counts = self.per_address.lock();
            let count = counts.entry(conn.meta.remote_addr.ip()).or_default();
            if *count >= per_address {
                return Err(Refused::AddressLimit(per_address));
            }
            *count += 1;
        }
        let mut shard = self.shard_of_conn(&conn).lock();
        if let Some(user) = &conn.who.user {
            if shard.users.get(user).map_or(0, Vec::len) >= per_user {
                drop(shard);
                self.release_address(conn.meta.remote_addr.ip());
                return Err(Refused::UserLimit(per_user));
            }
        }
        shard.index(&conn);
        shard.conns.insert(conn.id, conn);
        Ok(())
    }

    /// Removes a connection; `None` when it was already gone.
    pub(crate) fn remove(&self, conn: &Conn) -> Option<Arc<Conn>> {
        let removed = {
            let mut shard = self.shard_of_conn(conn).lock();
            let removed = shard.conns.remove(&conn.id)?;
            shard.unindex(&removed);
            removed
        };
        self.release_address(removed.meta.remote_addr.ip());
        Some(removed)
    }

    fn release_address(&self, ip: IpAddr) {
        let mut counts = self.per_address.lock();
        if let Some(count) = counts.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&ip);
            }
        }
    }

    /// Hands `message` to every matching connection; returns how many took it, and the
    /// connections whose queue overflowed (already closed; the caller unregisters them).
    pub(crate) fn deliver(&self, message: &Message) -> (usize, Vec<Arc<Conn>>) {
        let targets = &message.targets;
        let mut delivered = 0;
        let mut overflowed = Vec::new();
        let mut visit = |shard: &Mutex<Shard>| {
            let shard = shard.lock();
            for conn in shard.matching(targets) {
                match conn.outbox.push(Some(message.seq), message.frame.clone()) {
                    Ok(true) => delivered += 1,
                    Ok(false) => {}
                    Err(()) => overflowed.push(conn.clone()),
                }
            }
        };
        let only_users =
            !targets.all && targets.sessions.is_empty() && targets.tenants.is_empty() && targets.channels.is_empty();
        if only_users {
            let mut shards: Vec<usize> = targets.users.iter().map(|u| self.shard_index(u)).collect();
            shards.sort_unstable();
            shards.dedup();
            shards.into_iter().for_each(|i| visit(&self.shards[i]));
        } else {
            self.shards.iter().for_each(visit);
        }
        (delivered, overflowed)
    }

    fn shard_index(&self, user: &str) -> usize {
        (BuildHasherDefault::<DefaultHasher>::default().hash_one(user) % SHARDS as u64) as usize
    }

    /// The connections of one user.
    pub(crate) fn of_user(&self, user: &str) -> Vec<Arc<Conn>> {
        let shard = self.shard_of(Some(user), 0).lock();
        shard.users.get(user).cloned().unwrap_or_default()
    }

    /// Every connection that `targets` reaches (used to resolve durable recipients).
    pub(crate) fn matching(&self, targets: &Targets) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().matching(targets).into_iter().cloned());
        }
        out
    }

    /// Every connection, in no particular order.
    pub(crate) fn all(&self) -> Vec<Arc<Conn>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(shard.lock().conns.values().cloned());
        }
        out
    }

    /// The first `limit` online users after `cursor` (from the first without one) and their
    /// connection counts, ordered by user id. Each shard's ordered index is read from the cursor
    /// only while it can still improve the page, so a page costs the same however many users are
    /// online.
    pub(crate) fn users_after(&self, cursor: Option<&str>, limit: usize) -> BTreeMap<Arc<str>, usize> {
        let after = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut out: BTreeMap<Arc<str>, usize> = BTreeMap::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            for user in shard.online.range::<str, _>((after, std::ops::Bound::Unbounded)) {
                if out.len() >= limit && out.last_key_value().is_some_and(|(last, _)| user >= last) {
                    break;
                }
                out.insert(user.clone(), shard.users.get(user).map_or(0, Vec::len));
                if out.len() > limit {
                    out.pop_last();
                }
            }
        }
        out
    }

    /// Finds one connection by its number.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<Conn>> {
        self.shards.iter().find_map(|shard| shard.lock().conns.get(&id).cloned())
    }

    /// How many connections are open.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().conns.len()).sum()
    }
}
